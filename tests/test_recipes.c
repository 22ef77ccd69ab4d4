/* test_recipes.c: the recipes of Sohl-Dickstein's note (natgrad/recipes.h) against references
 * written here:
 *   - the diagonal preconditioner (eq. 34) on a tiny network: the empirical metric (eq. 31) against
 *     the mean of squared one-case gradients (each from a batch of one case), the direction
 *     g / (d + lambda); the model Fisher with sampled targets, averaged over many draws, against the
 *     diagonal of the dense Gauss-Newton matrix (columns G e_k) within its Monte-Carlo error
 *   - on an RBM: the energy metric (eq. 33) and the model Fisher's diagonal against float64
 *     free-energy gradients per example, computed here from the parameters and the visible units
 *   - the moving average and its bias correction over several updates, power 1/2
 *   - bad configurations, metrics that do not apply to a model
 *   - natural parameter space (eq. 37) with the diagonal metric: the scale s^2 = d + lambda, the
 *     round trip theta -> phi -> theta, plain SGD in phi = the natural-gradient step
 *     theta -= lr g / (d + lambda) with the metric held fixed between refreshes, Adam in phi (its
 *     first step -lr sign(g) / s), averaging refused
 *   - natural parameter space with K-FAC's block-diagonal Kronecker factors: the map applied twice
 *     is (G + d_G I) V (A + d_A I) (float64, from the factors read back), its inverse twice
 *     (G + d_G I)^-1 V (A + d_A I)^-1, the round trip theta -> phi -> theta to float32 rounding,
 *     plain SGD in phi = the block-diagonal natural step (A^-1 (x) G^-1) g with the factors of the
 *     last refresh (float64 solves), refusals (tridiag, async, regularized, no --phi-every)
 *   - natural parameter space with the full, dense Fisher (G e_k columns by ng_net_gvp, float64
 *     here): S S x = (G + lambda I) x, S^-1 S^-1 x = (G + lambda I)^-1 x, the round trip, SGD in
 *     phi = theta - lr (G + lambda I)^-1 g with G of the last refresh, the parameter-count limit
 *   - CPU and emulated CUDA agree. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends.h"
#include "harness.h"
#include "natgrad/backend.h"
#include "natgrad/kfac.h"
#include "natgrad/net.h"
#include "natgrad/rbm.h"
#include "natgrad/recipes.h"
#include "natgrad/tensor.h"
#include "natgrad/update.h"

static ng_backend *g_cpu, *g_cuda;
static char g_cuda_reason[512];

static uint64_t g_state = 99;
static double urand(void) {
    g_state = g_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_state >> 11) / 9007199254740992.0;
}

static double *get_vec(ng_backend *be, const float *p, size_t n) {
    float *h = (float *)malloc(n * sizeof(float));
    double *d = (double *)malloc(n * sizeof(double));
    size_t i;
    if (!h || !d || ng_get(be, h, p, n * sizeof(float)) != NG_OK) {
        free(h);
        free(d);
        return NULL;
    }
    for (i = 0; i < n; i++) d[i] = h[i];
    free(h);
    return d;
}

static double rel_diff(const double *a, const double *b, size_t n) {
    double num = 0.0, den = 0.0;
    size_t i;
    for (i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return sqrt(num / (den > 0.0 ? den : 1.0));
}

/* ---- a tiny network ------------------------------------------------------------------------- */

typedef struct netfix {
    ng_backend *be;
    ng_model *net;
    ng_tensor x, v, out;
    void *mem;
    int m, rows;
    size_t np;
} netfix;

static void netfix_free(netfix *f) {
    if (f->mem) ng_free(f->be, f->mem);
    ng_net_free(f->net);
    memset(f, 0, sizeof *f);
}

/* a 5-4-3 classifier-like net with logistic outputs (tanh hidden), m cases of random inputs and
 * binary targets */
static ng_status netfix_init(netfix *f, ng_backend *be, int m) {
    ng_net_config cfg;
    float *hx;
    int c, r;
    memset(f, 0, sizeof *f);
    f->be = be;
    ng_net_config_default(&cfg);
    cfg.loss = NG_LOSS_BERNOULLI;
    cfg.target = NG_NET_TARGET_ROWS;
    cfg.init = NG_INIT_GAUSSIAN;
    cfg.init_scale = 0.9f;
    cfg.seed = 5;
    NG_TRY(ng_net_parse_spec("5-4-3", NG_ACT_TANH, NG_ACT_LOGISTIC, &cfg));
    NG_TRY(ng_net_create(be, &cfg, &f->net));
    f->np = ng_model_size(f->net);
    f->m = m;
    f->rows = ng_net_batch_rows(f->net);
    g_state = 77;
    hx = (float *)malloc(sizeof(float) * (size_t)f->rows * (size_t)m);
    if (!hx) return ng_error(NG_ERR_OOM, "test: host memory");
    for (c = 0; c < m; c++)
        for (r = 0; r < f->rows; r++) hx[(size_t)c * f->rows + r] = r < 5 ? (float)(2.0 * urand() - 1.0) : (float)(urand() < 0.4);
    NG_TRY(ng_alloc(be, sizeof(float) * ((size_t)f->rows * m + 2 * f->np), &f->mem));
    f->x = ng_tensor_matrix((float *)f->mem, f->rows, m, f->rows);
    f->v = ng_tensor_matrix(f->x.data + (size_t)f->rows * m, (int)f->np, 1, (int)f->np);
    f->out = ng_tensor_matrix(f->v.data + f->np, (int)f->np, 1, (int)f->np);
    NG_TRY(ng_tensor_set(be, &f->x, hx));
    free(hx);
    return NG_OK;
}

/* the mean over cases of each case's own squared gradient */
static int per_case_squares(netfix *f, double *ref) {
    size_t i;
    int c;
    for (i = 0; i < f->np; i++) ref[i] = 0.0;
    for (c = 0; c < f->m; c++) {
        ng_tensor xc = ng_tensor_matrix(f->x.data + (size_t)c * f->rows, f->rows, 1, f->rows);
        double *gc;
        if (ng_model_gradient(f->net, &xc, NULL) != NG_OK) return -1;
        gc = get_vec(f->be, f->net->grad_flat.data, f->np);
        if (!gc) return -1;
        for (i = 0; i < f->np; i++) ref[i] += gc[i] * gc[i] / f->m;
        free(gc);
    }
    return 0;
}

static int test_diag_net_empirical(void) {
    netfix f;
    ng_diag_config cfg;
    ng_precond *p = NULL;
    ng_tensor bd;
    double *ref, *g, *d, *dir;
    size_t i;
    NGT_OK(netfix_init(&f, g_cpu, 9));
    ref = (double *)malloc(f.np * sizeof(double));
    NGT_CHECK(ref && per_case_squares(&f, ref) == 0, "reference: %s", ng_last_error());
    ng_diag_config_default(&cfg);
    cfg.metric = NG_DIAG_EMPIRICAL;
    cfg.lambda = 0.01;
    cfg.beta = 0.9;
    cfg.max_batch = 9;
    NGT_OK(ng_precond_diag_init(f.be, f.net, &cfg, &p));
    NGT_OK(ng_model_gradient(f.net, &f.x, NULL));
    g = get_vec(f.be, f.net->grad_flat.data, f.np);
    NGT_OK(ng_precond_apply(p, f.net, 0));
    NGT_OK(ng_diag_get(p, &bd, NULL));
    d = get_vec(f.be, bd.data, f.np);
    dir = get_vec(f.be, f.net->grad_flat.data, f.np);
    /* float32 gemms over 9 cases: 1e-5 relative */
    NGT_CHECK(rel_diff(d, ref, f.np) < 1e-5, "empirical diagonal vs one-case gradients squared: rel diff %g", rel_diff(d, ref, f.np));
    /* first update: the bias correction makes dhat = d */
    for (i = 0; i < f.np; i++) {
        double want = g[i] / (ref[i] + cfg.lambda);
        NGT_CHECK(fabs(dir[i] - want) <= 1e-4 * fabs(want) + 1e-7, "direction[%zu] = %g, g / (d + lambda) = %g", i, dir[i], want);
    }
    free(ref);
    free(g);
    free(d);
    free(dir);
    ng_precond_free(p);
    netfix_free(&f);
    return NGT_PASS;
}

/* E over sampled targets of the sampled diagonal = diag(G) (matching loss: Cov(t) = H_L) */
static int test_diag_net_fisher_sampled(void) {
    netfix f;
    ng_diag_config cfg;
    ng_precond *p = NULL;
    ng_tensor bd;
    double *acc, *Gd, *emp;
    size_t i;
    int t, S = 1500;
    float *e;
    NGT_OK(netfix_init(&f, g_cpu, 6));
    acc = (double *)calloc(f.np, sizeof(double));
    Gd = (double *)calloc(f.np, sizeof(double));
    emp = (double *)calloc(f.np, sizeof(double));
    e = (float *)calloc(f.np, sizeof(float));
    NGT_CHECK(acc && Gd && emp && e, "host memory");
    NGT_CHECK(per_case_squares(&f, emp) == 0, "reference: %s", ng_last_error());
    NGT_OK(ng_model_gradient(f.net, &f.x, NULL));
    /* the dense reference: diag(G) from G e_k */
    for (i = 0; i < f.np; i++) {
        double *col;
        memset(e, 0, f.np * sizeof(float));
        e[i] = 1.0f;
        NGT_OK(ng_tensor_set(f.be, &f.v, e));
        NGT_OK(ng_net_gvp(f.net, &f.v, &f.out));
        col = get_vec(f.be, f.out.data, f.np);
        Gd[i] = col[i];
        free(col);
    }
    ng_diag_config_default(&cfg);
    cfg.metric = NG_DIAG_FISHER;
    cfg.beta = 0.0;
    cfg.seed = 3;
    NGT_OK(ng_precond_diag_init(f.be, f.net, &cfg, &p));
    for (t = 0; t < S; t++) {
        double *d;
        NGT_OK(ng_precond_apply(p, f.net, (uint64_t)t));
        NGT_OK(ng_diag_get(p, &bd, NULL));
        d = get_vec(f.be, bd.data, f.np);
        for (i = 0; i < f.np; i++) acc[i] += d[i] / S;
        free(d);
    }
    /* Monte-Carlo error of a mean of S * 6 squared Bernoulli residuals: a few percent; the
     * empirical diagonal (data targets) is far off, so the check can tell the two apart */
    printf("  sampled mean vs diag(G): rel diff %.4f; empirical vs diag(G): %.4f\n", rel_diff(acc, Gd, f.np), rel_diff(emp, Gd, f.np));
    NGT_CHECK(rel_diff(acc, Gd, f.np) < 0.05, "mean of %d sampled diagonals vs diag(G): rel diff %g", S, rel_diff(acc, Gd, f.np));
    NGT_CHECK(rel_diff(emp, Gd, f.np) > 0.1, "the empirical diagonal should differ from diag(G): rel diff %g", rel_diff(emp, Gd, f.np));
    free(acc);
    free(Gd);
    free(emp);
    free(e);
    ng_precond_free(p);
    netfix_free(&f);
    return NGT_PASS;
}

/* three updates with beta = 0.5 and power 1/2 against the recurrence written again */
static int test_diag_average_and_power(void) {
    netfix f;
    ng_diag_config cfg;
    ng_precond *p = NULL;
    ng_tensor bd, avg;
    double *ds[3], *g, *dir, *a;
    size_t i;
    int t;
    NGT_OK(netfix_init(&f, g_cpu, 7));
    ng_diag_config_default(&cfg);
    cfg.metric = NG_DIAG_FISHER;
    cfg.beta = 0.5;
    cfg.power = 0.5;
    cfg.lambda = 1e-3;
    NGT_OK(ng_precond_diag_init(f.be, f.net, &cfg, &p));
    for (t = 0; t < 3; t++) {
        NGT_OK(ng_model_gradient(f.net, &f.x, NULL));
        g = get_vec(f.be, f.net->grad_flat.data, f.np);
        NGT_OK(ng_precond_apply(p, f.net, (uint64_t)t));
        NGT_OK(ng_diag_get(p, &bd, &avg));
        ds[t] = get_vec(f.be, bd.data, f.np);
        dir = get_vec(f.be, f.net->grad_flat.data, f.np);
        a = get_vec(f.be, avg.data, f.np);
        for (i = 0; i < f.np; i++) {
            double want_avg = 0.0, dhat, want;
            int j;
            for (j = 0; j <= t; j++) want_avg = 0.5 * want_avg + 0.5 * ds[j][i];
            dhat = want_avg / (1.0 - pow(0.5, t + 1));
            want = g[i] / sqrt(dhat + 1e-3);
            NGT_CHECK(fabs(a[i] - want_avg) <= 1e-6 * want_avg + 1e-12, "avg[%zu] after %d updates: %g vs %g", i, t + 1, a[i], want_avg);
            NGT_CHECK(fabs(dir[i] - want) <= 1e-4 * fabs(want) + 1e-7, "direction[%zu] after %d updates: %g vs %g", i, t + 1, dir[i], want);
        }
        /* the sampled targets change with t */
        if (t > 0) NGT_CHECK(rel_diff(ds[t], ds[t - 1], f.np) > 1e-3, "update %d drew the same targets as update %d", t, t - 1);
        free(g);
        free(dir);
        free(a);
    }
    for (t = 0; t < 3; t++) free(ds[t]);
    ng_precond_free(p);
    netfix_free(&f);
    return NGT_PASS;
}

/* ---- RBMs ------------------------------------------------------------------------------------ */

typedef struct rbmfix {
    ng_rbm rbm;
    ng_tensor x;
    void *mem;
    float *data;
    int nv, nh, m, M;
} rbmfix;

static void rbmfix_free(rbmfix *f) {
    if (f->mem) ng_free(f->rbm.be, f->mem);
    ng_rbm_estimator_free(&f->rbm);
    ng_rbm_free(&f->rbm);
    free(f->data);
    memset(f, 0, sizeof *f);
}

static ng_status rbmfix_init(rbmfix *f, ng_backend *be) {
    ng_rbm_estimator_config ec;
    int i;
    memset(f, 0, sizeof *f);
    f->nv = 7;
    f->nh = 5;
    f->m = 12;
    f->M = 20;
    f->data = (float *)malloc(sizeof(float) * (size_t)f->nv * f->m);
    if (!f->data) return ng_error(NG_ERR_OOM, "test: host memory");
    g_state = 31;
    for (i = 0; i < f->nv * f->m; i++) f->data[i] = (float)urand();
    NG_TRY(ng_rbm_init(be, f->nv, f->nh, &f->rbm));
    NG_TRY(ng_rbm_init_params(&f->rbm, 9, 0.5f, NULL));
    memset(&ec, 0, sizeof ec);
    ec.estimator = NG_RBM_PCD;
    ec.k = 1;
    ec.particles = f->M;
    ec.batch = f->m;
    ec.binarize_train = 0;
    ec.seed = 4;
    NG_TRY(ng_rbm_estimator_init(&f->rbm, &ec, f->data, f->m));
    NG_TRY(ng_alloc(be, sizeof(float) * (size_t)f->nv * f->m, &f->mem));
    f->x = ng_tensor_matrix((float *)f->mem, f->nv, f->m, f->nv);
    return ng_tensor_set(be, &f->x, f->data);
}

/* float64 reference over the columns of V (nv, c): second moments (and variances) of the
 * free-energy gradient, laid out like the parameter arena (offsets of W, a, b given) */
static void rbm_reference(const rbmfix *f, const float *W, const float *a, const float *b, const float *V, int c, int centred,
                          size_t oW, size_t oa, size_t ob, int ldw, double *out) {
    int nv = f->nv, nh = f->nh, i, j, k;
    double *h = (double *)malloc(sizeof(double) * nh * c);
    (void)a; /* dF/da = -v does not involve a */
    for (k = 0; k < c; k++)
        for (j = 0; j < nh; j++) {
            double z = b[j];
            for (i = 0; i < nv; i++) z += (double)W[j + (size_t)i * nh] * V[(size_t)k * nv + i];
            h[(size_t)k * nh + j] = 1.0 / (1.0 + exp(-z));
        }
    for (j = 0; j < nh; j++)
        for (i = 0; i < nv; i++) {
            double s2 = 0.0, s1 = 0.0;
            for (k = 0; k < c; k++) {
                double gij = -h[(size_t)k * nh + j] * V[(size_t)k * nv + i]; /* dF / dW_ji */
                s2 += gij * gij;
                s1 += gij;
            }
            out[oW + j + (size_t)i * ldw] = s2 / c - (centred ? (s1 / c) * (s1 / c) : 0.0);
        }
    for (i = 0; i < nv; i++) {
        double s2 = 0.0, s1 = 0.0;
        for (k = 0; k < c; k++) {
            double gi = -V[(size_t)k * nv + i]; /* dF / da_i */
            s2 += gi * gi;
            s1 += gi;
        }
        out[oa + i] = s2 / c - (centred ? (s1 / c) * (s1 / c) : 0.0);
    }
    for (j = 0; j < nh; j++) {
        double s2 = 0.0, s1 = 0.0;
        for (k = 0; k < c; k++) {
            double gj = -h[(size_t)k * nh + j]; /* dF / db_j */
            s2 += gj * gj;
            s1 += gj;
        }
        out[ob + j] = s2 / c - (centred ? (s1 / c) * (s1 / c) : 0.0);
    }
    free(h);
}

static int rbm_case(int metric) {
    rbmfix f;
    ng_diag_config cfg;
    ng_precond *p = NULL;
    ng_model *m;
    ng_tensor bd, V, gW, ga, gb;
    float *W, *a, *b, *Vh;
    double *d, *ref;
    size_t np;
    int c;
    NGT_OK(rbmfix_init(&f, g_cpu));
    m = ng_rbm_model(&f.rbm);
    np = ng_model_size(m);
    ng_diag_config_default(&cfg);
    cfg.metric = metric;
    NGT_OK(ng_precond_diag_init(g_cpu, m, &cfg, &p));
    NGT_OK(ng_model_gradient(m, &f.x, NULL));
    NGT_OK(ng_precond_apply(p, m, 0));
    NGT_OK(ng_diag_get(p, &bd, NULL));
    d = get_vec(g_cpu, bd.data, np);
    NGT_OK(ng_model_statistic(m, metric == NG_DIAG_FISHER ? "v_model" : "v_data", &V));
    c = V.cols;
    W = (float *)malloc(sizeof(float) * f.nv * f.nh);
    a = (float *)malloc(sizeof(float) * f.nv);
    b = (float *)malloc(sizeof(float) * f.nh);
    Vh = (float *)malloc(sizeof(float) * (size_t)f.nv * c);
    ref = (double *)calloc(np, sizeof(double));
    NGT_OK(ng_rbm_get_params(&f.rbm, W, a, b));
    NGT_OK(ng_get(g_cpu, Vh, V.data, sizeof(float) * (size_t)f.nv * c));
    NGT_OK(ng_model_param(m, "W", NULL, &gW));
    NGT_OK(ng_model_param(m, "a", NULL, &ga));
    NGT_OK(ng_model_param(m, "b", NULL, &gb));
    NGT_CHECK(c == (metric == NG_DIAG_FISHER ? f.M : f.m), "statistic columns %d", c);
    rbm_reference(&f, W, a, b, Vh, c, metric == NG_DIAG_FISHER, (size_t)(gW.data - m->grad_flat.data),
                  (size_t)(ga.data - m->grad_flat.data), (size_t)(gb.data - m->grad_flat.data), gW.ld, ref);
    /* float32 sigmoid and sums over <= 20 columns; the variances subtract: 1e-5 of the norm */
    NGT_CHECK(rel_diff(d, ref, np) < 1e-5, "%s diagonal vs float64 free-energy gradients: rel diff %g", ng_diag_metric_name(metric),
              rel_diff(d, ref, np));
    free(W);
    free(a);
    free(b);
    free(Vh);
    free(d);
    free(ref);
    ng_precond_free(p);
    rbmfix_free(&f);
    return NGT_PASS;
}

static int test_diag_rbm_energy(void) { return rbm_case(NG_DIAG_ENERGY); }
static int test_diag_rbm_fisher(void) { return rbm_case(NG_DIAG_FISHER); }

static int test_diag_bad_config(void) {
    ng_diag_config c;
    netfix f;
    rbmfix r;
    ng_precond *p = NULL;
    ng_diag_config_default(&c);
    NGT_OK(ng_diag_config_check(&c));
    c.power = 0.0;
    NGT_CHECK(ng_diag_config_check(&c) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "--diag-power"), "power 0: %s", ng_last_error());
    c.power = 1.5;
    NGT_CHECK(ng_diag_config_check(&c) == NG_ERR_INVALID_ARG, "power 1.5");
    ng_diag_config_default(&c);
    c.beta = 1.0;
    NGT_CHECK(ng_diag_config_check(&c) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "--diag-beta"), "beta 1: %s", ng_last_error());
    ng_diag_config_default(&c);
    c.lambda = -1.0;
    NGT_CHECK(ng_diag_config_check(&c) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "--diag-lambda"), "lambda < 0");
    c.lambda = NAN;
    NGT_CHECK(ng_diag_config_check(&c) == NG_ERR_INVALID_ARG, "lambda NaN");
    ng_diag_config_default(&c);
    c.metric = 7;
    NGT_CHECK(ng_diag_config_check(&c) == NG_ERR_INVALID_ARG, "metric 7");
    NGT_CHECK(ng_diag_metric_parse("energy") == NG_DIAG_ENERGY && ng_diag_metric_parse("EMPIRICAL") == NG_DIAG_EMPIRICAL &&
                  ng_diag_metric_parse("x") == -1,
              "metric names");
    NGT_OK(netfix_init(&f, g_cpu, 3));
    ng_diag_config_default(&c);
    c.metric = NG_DIAG_ENERGY;
    NGT_CHECK(ng_precond_diag_init(g_cpu, f.net, &c, &p) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "RBMs"),
              "energy on a network: %s", ng_last_error());
    NGT_CHECK(p == NULL, "no preconditioner on failure");
    netfix_free(&f);
    NGT_OK(rbmfix_init(&r, g_cpu));
    c.metric = NG_DIAG_EMPIRICAL;
    NGT_CHECK(ng_precond_diag_init(g_cpu, ng_rbm_model(&r.rbm), &c, &p) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "targets"),
              "empirical on an RBM: %s", ng_last_error());
    rbmfix_free(&r);
    return NGT_PASS;
}


/* ---- natural parameter space ------------------------------------------------------------------ */

/* the first-order rule of the phi-space tests (0: SGD, lr 0.05, no momentum; 1: Adam at adam_lr)
 * wrapped to run in the natural parameter space of p */
static ng_status phi_rule(ng_backend *be, ng_model *net, int rule, float adam_lr, ng_precond *p, ng_update **u) {
    ng_update *inner = NULL;
    ng_status s;
    if (rule == 0) {
        ng_sgd_config c;
        memset(&c, 0, sizeof c);
        c.lr = 0.05f;
        s = ng_update_sgd_init(be, net, &c, &inner);
    } else {
        ng_adam_config c;
        ng_adam_config_default(&c);
        c.lr = adam_lr;
        s = ng_update_adam_init(be, net, &c, &inner);
    }
    if (s == NG_OK) s = ng_update_phi_init(be, net, inner, p, u);
    if (s != NG_OK) ng_update_free(inner);
    return s;
}

static ng_status phi_setup(netfix *f, ng_backend *be, int rule, ng_precond **p, ng_update **u) {
    ng_diag_config cfg;
    NG_TRY(netfix_init(f, be, 8));
    ng_diag_config_default(&cfg);
    cfg.metric = NG_DIAG_EMPIRICAL;
    cfg.beta = 0.0;
    cfg.lambda = 1e-3;
    cfg.phi_every = 3;
    NG_TRY(ng_precond_diag_init(be, f->net, &cfg, p));
    return phi_rule(be, f->net, rule, 1e-3f, *p, u);
}

static int test_phi_sgd_is_natural_step(void) {
    netfix f;
    ng_precond *p = NULL;
    ng_update *u = NULL;
    ng_tensor sc, isc;
    double *ref, *th, *g, *th1, *sv, *d0 = NULL;
    size_t i;
    int t;
    NGT_OK(phi_setup(&f, g_cpu, 0, &p, &u));
    ref = (double *)malloc(f.np * sizeof(double));
    for (t = 0; t < 4; t++) {
        NGT_CHECK(per_case_squares(&f, ref) == 0, "reference: %s", ng_last_error());
        NGT_OK(ng_model_gradient(f.net, &f.x, NULL));
        th = get_vec(f.be, f.net->param_flat.data, f.np);
        g = get_vec(f.be, f.net->grad_flat.data, f.np);
        NGT_OK(ng_update_penalize(u, f.net, (uint64_t)t));
        NGT_OK(ng_precond_apply(p, f.net, (uint64_t)t));
        NGT_OK(ng_update_step(u, f.net, (uint64_t)t));
        th1 = get_vec(f.be, f.net->param_flat.data, f.np);
        NGT_OK(ng_diag_phi_scale(p, &sc, &isc));
        sv = get_vec(f.be, sc.data, f.np);
        /* refreshes at t = 0 and 3: the metric of that batch; t = 1, 2 keep t = 0's */
        if (t % 3 == 0) {
            free(d0);
            d0 = (double *)malloc(f.np * sizeof(double));
            for (i = 0; i < f.np; i++) d0[i] = ref[i] + 1e-3;
        }
        for (i = 0; i < f.np; i++) {
            double want = th[i] - 0.05 * g[i] / d0[i];
            NGT_CHECK(fabs(sv[i] * sv[i] - d0[i]) <= 1e-5 * d0[i], "t %d: s[%zu]^2 = %g, d + lambda = %g", t, i, sv[i] * sv[i], d0[i]);
            NGT_CHECK(fabs(th1[i] - want) <= 1e-5 * (fabs(want) + fabs(th[i])) + 1e-7,
                      "t %d: SGD in phi moved theta[%zu] to %.9g, the natural step gives %.9g", t, i, th1[i], want);
        }
        free(th), free(g), free(th1), free(sv);
    }
    /* the round trip theta -> phi -> theta: a step with a zero direction leaves theta (to rounding) */
    th = get_vec(f.be, f.net->param_flat.data, f.np);
    NGT_OK(ng_fill(f.be, f.np, 0.0f, f.net->grad_flat.data));
    NGT_OK(ng_update_step(u, f.net, 4));
    th1 = get_vec(f.be, f.net->param_flat.data, f.np);
    for (i = 0; i < f.np; i++)
        NGT_CHECK(fabs(th1[i] - th[i]) <= 2.5e-7 * fabs(th[i]), "round trip: theta[%zu] %.9g -> %.9g", i, th[i], th1[i]);
    free(th), free(th1), free(ref), free(d0);
    ng_update_free(u);
    ng_precond_free(p);
    netfix_free(&f);
    return NGT_PASS;
}

/* Adam in phi: its first step is -lr m / (sqrt(v) + eps) = -lr sign(g_phi) (1 - O(eps / |g_phi|)) in
 * phi, so theta moves by -lr sign(g) / s: the metric sets the step per parameter, unlike plain Adam */
static int test_phi_adam(void) {
    netfix f;
    ng_precond *p = NULL;
    ng_update *u = NULL;
    ng_tensor sc;
    double *th, *g, *th1, *sv;
    size_t i, checked = 0;
    NGT_OK(phi_setup(&f, g_cpu, 1, &p, &u));
    NGT_OK(ng_model_gradient(f.net, &f.x, NULL));
    th = get_vec(f.be, f.net->param_flat.data, f.np);
    g = get_vec(f.be, f.net->grad_flat.data, f.np);
    NGT_OK(ng_precond_apply(p, f.net, 0));
    NGT_OK(ng_update_step(u, f.net, 0));
    th1 = get_vec(f.be, f.net->param_flat.data, f.np);
    NGT_OK(ng_diag_phi_scale(p, &sc, NULL));
    sv = get_vec(f.be, sc.data, f.np);
    for (i = 0; i < f.np; i++) {
        double gp = g[i] / sv[i], want;
        if (fabs(gp) < 1e-4) continue; /* eps = 1e-8 matters only for tiny gradients */
        want = th[i] - 1e-3 * (gp > 0 ? 1.0 : -1.0) / sv[i];
        NGT_CHECK(fabs(th1[i] - want) <= 1e-4 * 1e-3 / sv[i] + 1e-6 * fabs(th[i]), "theta[%zu] = %.9g, want %.9g", i, th1[i], want);
        checked++;
    }
    NGT_CHECK(checked > f.np / 2, "only %zu of %zu parameters had a usable gradient", checked, f.np);
    free(th), free(g), free(th1), free(sv);
    ng_update_free(u);
    ng_precond_free(p);
    netfix_free(&f);
    return NGT_PASS;
}

static int test_phi_refusals(void) {
    netfix f;
    ng_diag_config cfg;
    ng_precond *p = NULL;
    ng_update *inner = NULL, *u = NULL;
    ng_sgd_config c;
    NGT_OK(netfix_init(&f, g_cpu, 4));
    ng_diag_config_default(&cfg);
    NGT_OK(ng_precond_diag_init(g_cpu, f.net, &cfg, &p));
    memset(&c, 0, sizeof c);
    c.lr = 0.1f;
    NGT_OK(ng_update_sgd_init(g_cpu, f.net, &c, &inner));
    NGT_CHECK(ng_update_phi_init(g_cpu, f.net, inner, p, &u) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "--phi-every"),
              "phi wrapper over a diag preconditioner without phi mode: %s", ng_last_error());
    ng_update_free(inner);
    ng_precond_free(p);
    cfg.phi_every = 2;
    NGT_OK(ng_precond_diag_init(g_cpu, f.net, &cfg, &p));
    c.average = 0.9f;
    NGT_OK(ng_update_sgd_init(g_cpu, f.net, &c, &inner));
    NGT_CHECK(ng_update_phi_init(g_cpu, f.net, inner, p, &u) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "--average"),
              "averaging refused: %s", ng_last_error());
    ng_update_free(inner);
    ng_precond_free(p);
    cfg.phi_every = -1;
    NGT_CHECK(ng_diag_config_check(&cfg) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "--phi-every"), "negative K");
    netfix_free(&f);
    return NGT_PASS;
}

static ng_status phi_run(ng_backend *be, double **theta) {
    netfix f;
    ng_precond *p = NULL;
    ng_update *u = NULL;
    ng_status s;
    int t;
    s = phi_setup(&f, be, 1, &p, &u);
    for (t = 0; s == NG_OK && t < 5; t++) {
        s = ng_model_gradient(f.net, &f.x, NULL);
        if (s == NG_OK) s = ng_precond_apply(p, f.net, (uint64_t)t);
        if (s == NG_OK) s = ng_update_step(u, f.net, (uint64_t)t);
    }
    if (s == NG_OK) *theta = get_vec(be, f.net->param_flat.data, f.np);
    ng_update_free(u);
    ng_precond_free(p);
    netfix_free(&f);
    return s;
}


/* ---- natural parameter space with K-FAC's Kronecker factors ------------------------------------ */

/* float64 solve of the SPD system M X = B (n x n, nrhs columns, column-major) by Gaussian
 * elimination with partial pivoting; M and B are overwritten (B by X) */
static void dsolve(double *M, double *B, int n, int nrhs) {
    int i, j, k, c;
    for (k = 0; k < n; k++) {
        int pv = k;
        for (i = k + 1; i < n; i++)
            if (fabs(M[i + (size_t)k * n]) > fabs(M[pv + (size_t)k * n])) pv = i;
        if (pv != k) {
            for (j = 0; j < n; j++) {
                double t = M[k + (size_t)j * n];
                M[k + (size_t)j * n] = M[pv + (size_t)j * n], M[pv + (size_t)j * n] = t;
            }
            for (c = 0; c < nrhs; c++) {
                double t = B[k + (size_t)c * n];
                B[k + (size_t)c * n] = B[pv + (size_t)c * n], B[pv + (size_t)c * n] = t;
            }
        }
        for (i = k + 1; i < n; i++) {
            double f = M[i + (size_t)k * n] / M[k + (size_t)k * n];
            for (j = k; j < n; j++) M[i + (size_t)j * n] -= f * M[k + (size_t)j * n];
            for (c = 0; c < nrhs; c++) B[i + (size_t)c * n] -= f * B[k + (size_t)c * n];
        }
    }
    for (c = 0; c < nrhs; c++)
        for (k = n - 1; k >= 0; k--) {
            double v = B[k + (size_t)c * n];
            for (j = k + 1; j < n; j++) v -= M[k + (size_t)j * n] * B[j + (size_t)c * n];
            B[k + (size_t)c * n] = v / M[k + (size_t)k * n];
        }
}

#define KL 2 /* layers of the 5-4-3 net */

/* the damped factors of the last refresh, float64: Ad[l] ((d_{l-1}+1)^2), Gd[l] (d_l^2), with pi by
 * the trace rule, and the block layout */
typedef struct kref {
    int L, d[KL + 1];
    size_t off[KL + 1];
    double *Ad[KL + 1], *Gd[KL + 1];
} kref;

static void kref_free(kref *r) {
    int l;
    for (l = 1; l <= r->L; l++) free(r->Ad[l]), free(r->Gd[l]);
    memset(r, 0, sizeof *r);
}

static int kref_read(kref *r, ng_precond *p, netfix *f, double gamma) {
    int l, i;
    memset(r, 0, sizeof *r);
    r->L = KL;
    r->d[0] = 5, r->d[1] = 4, r->d[2] = 3;
    for (l = 1; l <= KL; l++) {
        const ng_tensor *W = ng_arena_view(&f->net->params, 2 * (l - 1));
        ng_tensor ta, tg;
        int n1 = r->d[l - 1] + 1, n2 = r->d[l];
        double tra = 0.0, trg = 0.0, pi;
        r->off[l] = (size_t)(W->data - f->net->param_flat.data);
        if (ng_kfac_factor(p, 'A', l - 1, l - 1, &ta) != NG_OK || ng_kfac_factor(p, 'G', l, l, &tg) != NG_OK) return -1;
        r->Ad[l] = get_vec(f->be, ta.data, (size_t)n1 * n1);
        r->Gd[l] = get_vec(f->be, tg.data, (size_t)n2 * n2);
        if (!r->Ad[l] || !r->Gd[l]) return -1;
        for (i = 0; i < n1; i++) tra += r->Ad[l][i + (size_t)i * n1];
        for (i = 0; i < n2; i++) trg += r->Gd[l][i + (size_t)i * n2];
        pi = sqrt((tra / n1) / (trg / n2));
        for (i = 0; i < n1; i++) r->Ad[l][i + (size_t)i * n1] += pi * gamma;
        for (i = 0; i < n2; i++) r->Gd[l][i + (size_t)i * n2] += gamma / pi;
    }
    return 0;
}

/* out_l = M_G V_l M_A per layer with M = the damped factor (inv = 0) or its inverse (inv = 1) */
static void kref_apply(const kref *r, const double *v, double *out, size_t np, int inv) {
    int l, i, j, c;
    memcpy(out, v, np * sizeof(double));
    for (l = 1; l <= r->L; l++) {
        int n1 = r->d[l - 1] + 1, n2 = r->d[l];
        double *V = (double *)malloc(sizeof(double) * n1 * n2), *T = (double *)malloc(sizeof(double) * n1 * n2);
        double *M = (double *)malloc(sizeof(double) * n1 * n1);
        memcpy(V, v + r->off[l], sizeof(double) * n1 * n2);
        if (inv) {
            /* T = G^-1 V; out = T A^-1 = (A^-1 T^T)^T (A symmetric) */
            memcpy(M, r->Gd[l], sizeof(double) * n2 * n2);
            dsolve(M, V, n2, n1);
            for (i = 0; i < n2; i++)
                for (j = 0; j < n1; j++) T[j + (size_t)i * n1] = V[i + (size_t)j * n2];
            memcpy(M, r->Ad[l], sizeof(double) * n1 * n1);
            dsolve(M, T, n1, n2);
            for (i = 0; i < n2; i++)
                for (j = 0; j < n1; j++) out[r->off[l] + i + (size_t)j * n2] = T[j + (size_t)i * n1];
        } else {
            for (i = 0; i < n2; i++)
                for (j = 0; j < n1; j++) {
                    double a = 0.0;
                    for (c = 0; c < n2; c++) a += r->Gd[l][i + (size_t)c * n2] * V[c + (size_t)j * n2];
                    T[i + (size_t)j * n2] = a;
                }
            for (i = 0; i < n2; i++)
                for (j = 0; j < n1; j++) {
                    double a = 0.0;
                    for (c = 0; c < n1; c++) a += T[i + (size_t)c * n2] * r->Ad[l][c + (size_t)j * n1];
                    out[r->off[l] + i + (size_t)j * n2] = a;
                }
        }
        free(V), free(T), free(M);
    }
}

static ng_status kphi_setup(netfix *f, ng_backend *be, int rule, int every, ng_precond **p, ng_update **u) {
    ng_kfac_config kc;
    NG_TRY(netfix_init(f, be, 8));
    ng_kfac_config_default(&kc);
    kc.phi_every = every;
    kc.gamma0 = 0.1;
    kc.tau1 = 1.0;
    kc.timing = 0;
    NG_TRY(ng_precond_kfac_init(be, f->net, &kc, p));
    return phi_rule(be, f->net, rule, 1e-2f, *p, u);
}

static ng_status kphi_update(netfix *f, ng_precond *p, ng_update *u, uint64_t t) {
    NG_TRY(ng_model_gradient(f->net, &f->x, NULL));
    NG_TRY(ng_update_penalize(u, f->net, t));
    NG_TRY(ng_precond_observe(p, f->net, t));
    NG_TRY(ng_precond_apply(p, f->net, t));
    return ng_update_step(u, f->net, t);
}

static double max_abs(const double *a, size_t n) {
    double m = 0.0;
    size_t i;
    for (i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

static int test_phi_kfac_map_and_step(void) {
    netfix f;
    ng_precond *p = NULL;
    ng_update *u = NULL;
    kref r;
    double *th, *g, *th1, *want, *x, *y, *yref;
    size_t i;
    int t, have = 0;
    NGT_OK(kphi_setup(&f, g_cpu, 0, 2, &p, &u));
    want = (double *)malloc(f.np * sizeof(double));
    yref = (double *)malloc(f.np * sizeof(double));
    memset(&r, 0, sizeof r);
    for (t = 0; t < 5; t++) {
        NGT_OK(ng_model_gradient(f.net, &f.x, NULL));
        th = get_vec(f.be, f.net->param_flat.data, f.np);
        g = get_vec(f.be, f.net->grad_flat.data, f.np);
        NGT_OK(ng_precond_observe(p, f.net, (uint64_t)t));
        if (t % 2 == 0) {
            /* the refresh of this update reads the factors as observe left them */
            kref_free(&r);
            NGT_CHECK(kref_read(&r, p, &f, 0.1) == 0, "factors: %s", ng_last_error());
            have = 1;
        }
        NGT_OK(ng_precond_apply(p, f.net, (uint64_t)t));
        NGT_OK(ng_update_step(u, f.net, (uint64_t)t));
        th1 = get_vec(f.be, f.net->param_flat.data, f.np);
        NGT_CHECK(have, "no refresh");
        /* SGD in phi: theta - lr (A^-1 (x) G^-1) g with the factors of the last refresh */
        kref_apply(&r, g, want, f.np, 1);
        {
            double e = 0.0, sc = max_abs(want, f.np);
            for (i = 0; i < f.np; i++) e = fmax(e, fabs(th1[i] - (th[i] - 0.05 * want[i])));
            NGT_CHECK(sc > 1e-3, "t %d: natural step too small to test (%g)", t, sc);
            NGT_CHECK(e <= 2e-4 * 0.05 * sc + 1e-6 * max_abs(th, f.np),
                      "t %d: SGD in phi vs the K-FAC natural step: max error %g (step scale %g)", t, e, 0.05 * sc);
        }
        free(th), free(g), free(th1);
    }
    /* the map: twice forward is (G + dI) V (A + dI), twice back the inverses; the round trip */
    x = (double *)malloc(f.np * sizeof(double));
    {
        float *hx = (float *)malloc(f.np * sizeof(float));
        for (i = 0; i < f.np; i++) hx[i] = (float)(2.0 * urand() - 1.0), x[i] = hx[i];
        NGT_OK(ng_set(f.be, f.out.data, hx, f.np * sizeof(float)));
        NGT_OK(ng_kfac_phi_map(p, f.out.data, 1));
        NGT_OK(ng_kfac_phi_map(p, f.out.data, 1));
        y = get_vec(f.be, f.out.data, f.np);
        kref_apply(&r, x, yref, f.np, 0);
        NGT_CHECK(rel_diff(y, yref, f.np) < 1e-5, "S S x vs (G + dI) V (A + dI): rel diff %g", rel_diff(y, yref, f.np));
        free(y);
        NGT_OK(ng_set(f.be, f.out.data, hx, f.np * sizeof(float)));
        NGT_OK(ng_kfac_phi_map(p, f.out.data, 0));
        NGT_OK(ng_kfac_phi_map(p, f.out.data, 0));
        y = get_vec(f.be, f.out.data, f.np);
        kref_apply(&r, x, yref, f.np, 1);
        NGT_CHECK(rel_diff(y, yref, f.np) < 1e-4, "S^-1 S^-1 x vs (G + dI)^-1 V (A + dI)^-1: rel diff %g", rel_diff(y, yref, f.np));
        free(y);
        /* round trip: float32 rounding of two small products each way */
        NGT_OK(ng_set(f.be, f.out.data, hx, f.np * sizeof(float)));
        NGT_OK(ng_kfac_phi_map(p, f.out.data, 1));
        NGT_OK(ng_kfac_phi_map(p, f.out.data, 0));
        y = get_vec(f.be, f.out.data, f.np);
        for (i = 0; i < f.np; i++)
            NGT_CHECK(fabs(y[i] - x[i]) <= 2e-6 * max_abs(x, f.np), "round trip: x[%zu] %.9g -> %.9g", i, x[i], y[i]);
        free(y);
        free(hx);
    }
    /* a zero direction leaves theta to rounding; ng_update_theta leaves the parameters bit-exact */
    th = get_vec(f.be, f.net->param_flat.data, f.np);
    NGT_OK(ng_fill(f.be, f.np, 0.0f, f.net->grad_flat.data));
    NGT_OK(ng_update_step(u, f.net, 5));
    th1 = get_vec(f.be, f.net->param_flat.data, f.np);
    for (i = 0; i < f.np; i++)
        NGT_CHECK(fabs(th1[i] - th[i]) <= 2e-6 * max_abs(th, f.np), "step with zero direction: theta[%zu] %.9g -> %.9g", i, th[i], th1[i]);
    free(th);
    NGT_OK(ng_update_theta(u, f.net, 6, &f.v));
    th = get_vec(f.be, f.net->param_flat.data, f.np);
    y = get_vec(f.be, f.v.data, f.np);
    for (i = 0; i < f.np; i++) {
        NGT_CHECK(th[i] == th1[i], "ng_update_theta changed parameter %zu: %.9g -> %.9g", i, th1[i], th[i]);
        NGT_CHECK(fabs(y[i] - th[i]) <= 2e-6 * max_abs(th, f.np), "theta of SGD in phi: [%zu] %.9g vs %.9g", i, y[i], th[i]);
    }
    free(th), free(th1), free(y), free(x), free(want), free(yref);
    kref_free(&r);
    ng_update_free(u);
    ng_precond_free(p);
    netfix_free(&f);
    return NGT_PASS;
}

/* K-FAC's phi-mode refresh sends its 2L eigendecompositions to ng_syevd_batched: on the CPU (two
 * threads, so the problems run concurrently) the parameters after five updates (refreshes at 0, 2, 4)
 * and the maps S x, S^-1 x are bit-identical to those of the same run on a copy of the CPU backend
 * without the batched slot, where K-FAC keeps its one-at-a-time path (sqrt_pair per factor). */
static int test_phi_kfac_batched_bitexact(void) {
    struct ng_backend_i fi = *g_cpu->iface;
    ng_backend seq = *g_cpu;
    netfix f[2];
    ng_precond *p[2];
    ng_update *u[2];
    float *hx, *out[2][3];
    int t, j, k, before = omp_get_max_threads(), fail = 0;
    fi.syevd_batched = NULL;
    seq.iface = &fi;
    ng_cpu_set_threads(2);
    for (k = 0; k < 2; k++) {
        NGT_OK(kphi_setup(&f[k], k ? &seq : g_cpu, 0, 2, &p[k], &u[k]));
        for (t = 0; t < 5; t++) NGT_OK(kphi_update(&f[k], p[k], u[k], (uint64_t)t));
    }
    hx = (float *)malloc(f[0].np * sizeof(float));
    for (j = 0; j < (int)f[0].np; j++) hx[j] = (float)(2.0 * urand() - 1.0);
    for (k = 0; k < 2; k++) {
        for (j = 0; j < 3; j++) out[k][j] = (float *)malloc(f[k].np * sizeof(float));
        NGT_OK(ng_get(f[k].be, out[k][0], f[k].net->param_flat.data, f[k].np * sizeof(float)));
        for (j = 1; j < 3; j++) {
            NGT_OK(ng_set(f[k].be, f[k].out.data, hx, f[k].np * sizeof(float)));
            NGT_OK(ng_kfac_phi_map(p[k], f[k].out.data, j == 1));
            NGT_OK(ng_get(f[k].be, out[k][j], f[k].out.data, f[k].np * sizeof(float)));
        }
    }
    ng_cpu_set_threads(before);
    for (j = 0; j < 3; j++) {
        if (memcmp(out[0][j], out[1][j], f[0].np * sizeof(float)) != 0) {
            printf("  %s: batched and one-at-a-time refreshes differ\n", j == 0 ? "parameters" : j == 1 ? "S x" : "S^-1 x");
            fail = 1;
        }
        free(out[0][j]);
        free(out[1][j]);
    }
    free(hx);
    for (k = 0; k < 2; k++) {
        ng_update_free(u[k]);
        ng_precond_free(p[k]);
        netfix_free(&f[k]);
    }
    return fail ? NGT_FAIL : NGT_PASS;
}

static int test_phi_kfac_refusals(void) {
    netfix f;
    ng_kfac_config kc;
    ng_precond *p = NULL;
    ng_update *inner = NULL, *u = NULL;
    ng_sgd_config c;
    float *dummy;
    NGT_OK(netfix_init(&f, g_cpu, 4));
    ng_kfac_config_default(&kc);
    kc.phi_every = 3;
    kc.approx = NG_KFAC_TRIDIAG;
    NGT_CHECK(ng_kfac_config_check(&kc) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "blockdiag"), "tridiag: %s", ng_last_error());
    kc.approx = NG_KFAC_BLOCKDIAG;
    kc.async_lag = 0;
    NGT_CHECK(ng_kfac_config_check(&kc) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "--kfac-async"), "async: %s", ng_last_error());
    kc.async_lag = -1;
    kc.inverse = NG_KFAC_INV_REGULARIZED;
    NGT_CHECK(ng_kfac_config_check(&kc) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "regularized"), "regularized: %s", ng_last_error());
    kc.inverse = NG_KFAC_INV_TIKHONOV;
    kc.phi_every = -2;
    NGT_CHECK(ng_kfac_config_check(&kc) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "--phi-every"), "negative K: %s", ng_last_error());
    /* a K-FAC preconditioner without phi mode cannot define phi */
    kc.phi_every = 0;
    NGT_OK(ng_precond_kfac_init(g_cpu, f.net, &kc, &p));
    memset(&c, 0, sizeof c);
    c.lr = 0.1f;
    NGT_OK(ng_update_sgd_init(g_cpu, f.net, &c, &inner));
    NGT_CHECK(ng_update_phi_init(g_cpu, f.net, inner, p, &u) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "--phi-every"),
              "kfac without phi mode: %s", ng_last_error());
    dummy = f.out.data;
    NGT_CHECK(ng_kfac_phi_map(p, dummy, 1) == NG_ERR_INVALID_ARG, "map without phi mode");
    ng_precond_free(p);
    /* phi mode, but no update yet: no square roots */
    kc.phi_every = 2;
    NGT_OK(ng_precond_kfac_init(g_cpu, f.net, &kc, &p));
    NGT_CHECK(ng_kfac_phi_map(p, dummy, 1) == NG_ERR_NUMERIC && strstr(ng_last_error(), "not computed"), "map before refresh: %s",
              ng_last_error());
    ng_precond_free(p);
    /* the identity cannot apply G^(1/2) */
    NGT_OK(ng_precond_identity_init(g_cpu, &p));
    NGT_CHECK(ng_update_phi_init(g_cpu, f.net, inner, p, &u) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "identity"),
              "identity: %s", ng_last_error());
    ng_precond_free(p);
    ng_update_free(inner);
    netfix_free(&f);
    return NGT_PASS;
}

static ng_status kphi_run(ng_backend *be, double **theta, size_t *np) {
    netfix f;
    ng_precond *p = NULL;
    ng_update *u = NULL;
    ng_status s;
    int t;
    s = kphi_setup(&f, be, 1, 3, &p, &u);
    for (t = 0; s == NG_OK && t < 7; t++) s = kphi_update(&f, p, u, (uint64_t)t);
    if (s == NG_OK) *theta = get_vec(be, f.net->param_flat.data, f.np), *np = f.np;
    ng_update_free(u);
    ng_precond_free(p);
    netfix_free(&f);
    return s;
}

static int test_phi_kfac_cpu_vs_cuda(void) {
    double *a = NULL, *b = NULL, *t0;
    size_t na = 0, nb = 0, i;
    netfix f;
    double moved = 0.0;
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    NGT_OK(kphi_run(g_cpu, &a, &na));
    NGT_OK(kphi_run(g_cuda, &b, &nb));
    NGT_OK(netfix_init(&f, g_cpu, 8));
    t0 = get_vec(g_cpu, f.net->param_flat.data, f.np);
    for (i = 0; i < na; i++) moved = fmax(moved, fabs(a[i] - t0[i]));
    netfix_free(&f);
    NGT_CHECK(moved > 1e-3, "Adam in K-FAC phi did not move the parameters (%g)", moved);
    NGT_CHECK(na == nb && rel_diff(b, a, na) < 1e-5, "Adam in K-FAC phi, 7 updates (refresh every 3): cpu vs cuda rel diff %g",
              rel_diff(b, a, na));
    free(a), free(b), free(t0);
    return NGT_PASS;
}

/* ---- natural parameter space with the full Fisher ------------------------------------------------ */

/* (G + lambda I), float64, n x n, from Gauss-Newton products with the unit vectors on the current batch */
static int dense_G(netfix *f, double lambda, double *G) {
    size_t j, i, n = f->np;
    float *e = (float *)calloc(n, sizeof(float));
    for (j = 0; j < n; j++) {
        double *c;
        e[j] = 1.0f;
        if (ng_set(f->be, f->v.data, e, n * sizeof(float)) != NG_OK || ng_net_gvp(f->net, &f->v, &f->out) != NG_OK) return -1;
        e[j] = 0.0f;
        c = get_vec(f->be, f->out.data, n);
        for (i = 0; i < n; i++) G[i + j * n] = c[i];
        free(c);
    }
    for (j = 0; j < n; j++)
        for (i = 0; i < j; i++) G[i + j * n] = G[j + i * n] = 0.5 * (G[i + j * n] + G[j + i * n]);
    for (j = 0; j < n; j++) G[j + j * n] += lambda;
    free(e);
    return 0;
}

/* how fphi_setup's full Fisher is inverted (test_phi_full_regularized switches it) */
static int g_full_inverse = NG_FULL_INV_TIKHONOV;

static ng_status fphi_setup(netfix *f, ng_backend *be, int rule, int every, ng_precond **p, ng_update **u) {
    ng_full_config fc;
    NG_TRY(netfix_init(f, be, 8));
    ng_full_config_default(&fc);
    fc.lambda = 1e-2;
    fc.phi_every = every;
    fc.inverse = g_full_inverse;
    NG_TRY(ng_precond_full_init(be, f->net, &fc, p));
    return phi_rule(be, f->net, rule, 1e-2f, *p, u);
}

static int test_phi_full_map_and_step(void) {
    netfix f;
    ng_precond *p = NULL;
    ng_update *u = NULL;
    double *G = NULL, *M, *th, *g, *th1, *want, *x, *y, *yref;
    float *hx;
    size_t i, j, n;
    int t;
    NGT_OK(fphi_setup(&f, g_cpu, 0, 2, &p, &u));
    n = f.np;
    G = (double *)malloc(n * n * sizeof(double));
    M = (double *)malloc(n * n * sizeof(double));
    want = (double *)malloc(n * sizeof(double));
    yref = (double *)malloc(n * sizeof(double));
    for (t = 0; t < 4; t++) {
        NGT_OK(ng_model_gradient(f.net, &f.x, NULL));
        th = get_vec(f.be, f.net->param_flat.data, n);
        g = get_vec(f.be, f.net->grad_flat.data, n);
        if (t % 2 == 0) NGT_CHECK(dense_G(&f, 1e-2, G) == 0, "dense G: %s", ng_last_error());
        NGT_OK(ng_precond_apply(p, f.net, (uint64_t)t));
        NGT_OK(ng_update_step(u, f.net, (uint64_t)t));
        th1 = get_vec(f.be, f.net->param_flat.data, n);
        memcpy(M, G, n * n * sizeof(double));
        memcpy(want, g, n * sizeof(double));
        dsolve(M, want, (int)n, 1);
        {
            double e = 0.0, sc = max_abs(want, n);
            for (i = 0; i < n; i++) e = fmax(e, fabs(th1[i] - (th[i] - 0.05 * want[i])));
            NGT_CHECK(sc > 1e-3, "t %d: natural step too small to test (%g)", t, sc);
            NGT_CHECK(e <= 5e-4 * 0.05 * sc + 1e-6 * max_abs(th, n),
                      "t %d: SGD in phi vs theta - lr (G + lambda I)^-1 g: max error %g (step scale %g)", t, e, 0.05 * sc);
        }
        free(th), free(g), free(th1);
    }
    /* the map against G of the last refresh (t = 2) */
    x = (double *)malloc(n * sizeof(double));
    hx = (float *)malloc(n * sizeof(float));
    for (i = 0; i < n; i++) hx[i] = (float)(2.0 * urand() - 1.0), x[i] = hx[i];
    NGT_OK(ng_set(f.be, f.out.data, hx, n * sizeof(float)));
    NGT_OK(ng_full_phi_map(p, f.out.data, 1));
    NGT_OK(ng_full_phi_map(p, f.out.data, 1));
    y = get_vec(f.be, f.out.data, n);
    for (i = 0; i < n; i++) {
        yref[i] = 0.0;
        for (j = 0; j < n; j++) yref[i] += G[i + j * n] * x[j];
    }
    NGT_CHECK(rel_diff(y, yref, n) < 1e-5, "S S x vs (G + lambda I) x: rel diff %g", rel_diff(y, yref, n));
    free(y);
    NGT_OK(ng_set(f.be, f.out.data, hx, n * sizeof(float)));
    NGT_OK(ng_full_phi_map(p, f.out.data, 0));
    NGT_OK(ng_full_phi_map(p, f.out.data, 0));
    y = get_vec(f.be, f.out.data, n);
    memcpy(M, G, n * n * sizeof(double));
    memcpy(yref, x, n * sizeof(double));
    dsolve(M, yref, (int)n, 1);
    NGT_CHECK(rel_diff(y, yref, n) < 1e-3, "S^-1 S^-1 x vs (G + lambda I)^-1 x: rel diff %g", rel_diff(y, yref, n));
    free(y);
    NGT_OK(ng_set(f.be, f.out.data, hx, n * sizeof(float)));
    NGT_OK(ng_full_phi_map(p, f.out.data, 1));
    NGT_OK(ng_full_phi_map(p, f.out.data, 0));
    y = get_vec(f.be, f.out.data, n);
    for (i = 0; i < n; i++) NGT_CHECK(fabs(y[i] - x[i]) <= 1e-5 * max_abs(x, n), "round trip: x[%zu] %.9g -> %.9g", i, x[i], y[i]);
    free(y), free(hx), free(x), free(G), free(M), free(want), free(yref);
    ng_update_free(u);
    ng_precond_free(p);
    netfix_free(&f);
    return NGT_PASS;
}

static int test_phi_full_refusals(void) {
    netfix f;
    ng_full_config fc;
    ng_precond *p = NULL;
    ng_model *big = NULL;
    ng_net_config cfg;
    ng_full_config_default(&fc);
    fc.lambda = 0.0;
    NGT_CHECK(ng_full_config_check(&fc) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "--full-lambda"), "lambda 0: %s", ng_last_error());
    fc.lambda = 1e-3;
    fc.phi_every = 0;
    NGT_CHECK(ng_full_config_check(&fc) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "--phi-every"), "K 0: %s", ng_last_error());
    fc.phi_every = 1;
    /* 64-40-64: 5224 parameters, above the limit */
    ng_net_config_default(&cfg);
    NGT_OK(ng_net_parse_spec("64-40-64", NG_ACT_LOGISTIC, NG_ACT_LOGISTIC, &cfg));
    NGT_OK(ng_net_create(g_cpu, &cfg, &big));
    NGT_CHECK(ng_precond_full_init(g_cpu, big, &fc, &p) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "5224 parameters") &&
                  strstr(ng_last_error(), "--precond kfac"),
              "above the limit: %s", ng_last_error());
    NGT_CHECK(p == NULL, "no preconditioner on failure");
    ng_net_free(big);
    /* map before any update */
    NGT_OK(netfix_init(&f, g_cpu, 4));
    NGT_OK(ng_precond_full_init(g_cpu, f.net, &fc, &p));
    NGT_CHECK(ng_full_phi_map(p, f.out.data, 1) == NG_ERR_NUMERIC, "map before refresh");
    ng_precond_free(p);
    netfix_free(&f);
    return NGT_PASS;
}

static ng_status fphi_run(ng_backend *be, double **theta, size_t *np) {
    netfix f;
    ng_precond *p = NULL;
    ng_update *u = NULL;
    ng_status s;
    int t;
    s = fphi_setup(&f, be, 1, 3, &p, &u);
    for (t = 0; s == NG_OK && t < 7; t++) {
        s = ng_model_gradient(f.net, &f.x, NULL);
        if (s == NG_OK) s = ng_precond_apply(p, f.net, (uint64_t)t);
        if (s == NG_OK) s = ng_update_step(u, f.net, (uint64_t)t);
    }
    if (s == NG_OK) *theta = get_vec(be, f.net->param_flat.data, f.np), *np = f.np;
    ng_update_free(u);
    ng_precond_free(p);
    netfix_free(&f);
    return s;
}

static int test_phi_full_cpu_vs_cuda(void) {
    int inv;
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    for (inv = 0; inv < 2; inv++) {
        double *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        ng_status sa, sb;
        g_full_inverse = inv;
        sa = fphi_run(g_cpu, &a, &na);
        sb = fphi_run(g_cuda, &b, &nb);
        g_full_inverse = NG_FULL_INV_TIKHONOV;
        NGT_OK(sa);
        NGT_OK(sb);
        /* 1e-4: the difference depends on OpenBLAS's kernel choice. Measured on one AVX-512 Xeon:
         * OPENBLAS_CORETYPE=Haswell 2e-7 (tikhonov) and 0 (regularized); the default SkylakeX kernel
         * 2e-7 and 1.7e-5. The regularised inverse's small eigenvalues and Adam's per-coordinate
         * normalisation amplify float32 rounding over 7 updates; a wrong map or inverse differs by O(1). */
        NGT_CHECK(na == nb && rel_diff(b, a, na) < 1e-4, "Adam in full-Fisher phi (%s), 7 updates: cpu vs cuda rel diff %g",
                  inv ? "regularized" : "tikhonov", rel_diff(b, a, na));
        free(a), free(b);
    }
    return NGT_PASS;
}

/* M = G G + lam^2 I (n x n, float64) */
static void reg_matrix(const double *G, size_t n, double lam, double *M) {
    size_t i, j, q;
    for (j = 0; j < n; j++)
        for (i = 0; i < n; i++) {
            double acc = 0.0;
            for (q = 0; q < n; q++) acc += G[i + q * n] * G[q + j * n];
            M[i + j * n] = acc + (i == j ? lam * lam : 0.0);
        }
}

/* --full-inverse regularized (Sohl-Dickstein eq. 35): SGD in phi takes theta - lr (G^2 + lambda^2 I)^-1 G g
 * with G the dense float64 Gauss-Newton matrix of the last refresh (no + lambda I), and the inverse map
 * twice is (G^2 + lambda^2 I)^-1 G. A Tikhonov step (G + lambda I)^-1 g would fail both checks: the
 * lambda here (1e-2) is of the order of G's small eigenvalues, where the two differ most. */
static int test_phi_full_regularized(void) {
    netfix f;
    ng_precond *p = NULL;
    ng_update *u = NULL;
    double *G = NULL, *M, *th, *g, *th1, *want, *x, *y, *yref, lam = 1e-2, tik_err = 0.0;
    float *hx;
    size_t i, j, n;
    int t;
    ng_status s;
    g_full_inverse = NG_FULL_INV_REGULARIZED;
    s = fphi_setup(&f, g_cpu, 0, 2, &p, &u);
    g_full_inverse = NG_FULL_INV_TIKHONOV;
    NGT_OK(s);
    n = f.np;
    G = (double *)malloc(n * n * sizeof(double));
    M = (double *)malloc(n * n * sizeof(double));
    want = (double *)malloc(n * sizeof(double));
    yref = (double *)malloc(n * sizeof(double));
    for (t = 0; t < 4; t++) {
        double e = 0.0, sc;
        NGT_OK(ng_model_gradient(f.net, &f.x, NULL));
        th = get_vec(f.be, f.net->param_flat.data, n);
        g = get_vec(f.be, f.net->grad_flat.data, n);
        if (t % 2 == 0) NGT_CHECK(dense_G(&f, 0.0, G) == 0, "dense G: %s", ng_last_error());
        NGT_OK(ng_precond_apply(p, f.net, (uint64_t)t));
        NGT_OK(ng_update_step(u, f.net, (uint64_t)t));
        th1 = get_vec(f.be, f.net->param_flat.data, n);
        /* want = (G^2 + lam^2 I)^-1 G g */
        for (i = 0; i < n; i++) {
            want[i] = 0.0;
            for (j = 0; j < n; j++) want[i] += G[i + j * n] * g[j];
        }
        reg_matrix(G, n, lam, M);
        dsolve(M, want, (int)n, 1);
        sc = max_abs(want, n);
        for (i = 0; i < n; i++) e = fmax(e, fabs(th1[i] - (th[i] - 0.05 * want[i])));
        NGT_CHECK(sc > 1e-3, "t %d: regularised step too small to test (%g)", t, sc);
        NGT_CHECK(e <= 5e-4 * 0.05 * sc + 1e-6 * max_abs(th, n),
                  "t %d: SGD in phi vs theta - lr (G^2 + lambda^2 I)^-1 G g: max error %g (step scale %g)", t, e, 0.05 * sc);
        /* the Tikhonov step, for contrast: it must be measurably different */
        for (j = 0; j < n; j++)
            for (i = 0; i < n; i++) M[i + j * n] = G[i + j * n] + (i == j ? lam : 0.0);
        memcpy(yref, g, n * sizeof(double));
        dsolve(M, yref, (int)n, 1);
        for (i = 0; i < n; i++) tik_err = fmax(tik_err, fabs(yref[i] - want[i]) / sc);
        free(th), free(g), free(th1);
    }
    NGT_CHECK(tik_err > 1e-2, "control: the Tikhonov step is within %g of the regularised one (the test could not tell them apart)", tik_err);
    /* S^-1 S^-1 x against (G^2 + lambda^2 I)^-1 G x for G of the last refresh (t = 2) */
    x = (double *)malloc(n * sizeof(double));
    hx = (float *)malloc(n * sizeof(float));
    for (i = 0; i < n; i++) hx[i] = (float)(2.0 * urand() - 1.0), x[i] = hx[i];
    NGT_OK(ng_set(f.be, f.out.data, hx, n * sizeof(float)));
    NGT_OK(ng_full_phi_map(p, f.out.data, 0));
    NGT_OK(ng_full_phi_map(p, f.out.data, 0));
    y = get_vec(f.be, f.out.data, n);
    for (i = 0; i < n; i++) {
        yref[i] = 0.0;
        for (j = 0; j < n; j++) yref[i] += G[i + j * n] * x[j];
    }
    reg_matrix(G, n, lam, M);
    dsolve(M, yref, (int)n, 1);
    NGT_CHECK(rel_diff(y, yref, n) < 1e-3, "S^-1 S^-1 x vs (G^2 + lambda^2 I)^-1 G x: rel diff %g", rel_diff(y, yref, n));
    free(y), free(hx), free(x), free(G), free(M), free(want), free(yref);
    ng_update_free(u);
    ng_precond_free(p);
    netfix_free(&f);
    return NGT_PASS;
}

/* the same updates on the CPU and on (emulated) CUDA */
static ng_status net_run(ng_backend *be, int metric, double **dir) {
    netfix f;
    ng_diag_config cfg;
    ng_precond *p = NULL;
    ng_status s;
    int t;
    NG_TRY(netfix_init(&f, be, 8));
    ng_diag_config_default(&cfg);
    cfg.metric = metric;
    cfg.max_batch = 8;
    s = ng_precond_diag_init(be, f.net, &cfg, &p);
    for (t = 0; s == NG_OK && t < 3; t++) {
        s = ng_model_gradient(f.net, &f.x, NULL);
        if (s == NG_OK) s = ng_precond_apply(p, f.net, (uint64_t)t);
        if (s == NG_OK) s = ng_axpby(be, f.np, -0.1f, f.net->grad_flat.data, 1.0f, f.net->param_flat.data);
    }
    if (s == NG_OK) *dir = get_vec(be, f.net->grad_flat.data, f.np);
    ng_precond_free(p);
    netfix_free(&f);
    return s;
}

static ng_status rbm_run(ng_backend *be, double **dir, size_t *np) {
    rbmfix f;
    ng_diag_config cfg;
    ng_precond *p = NULL;
    ng_status s;
    ng_model *m;
    NG_TRY(rbmfix_init(&f, be));
    m = ng_rbm_model(&f.rbm);
    ng_diag_config_default(&cfg);
    cfg.metric = NG_DIAG_ENERGY;
    s = ng_precond_diag_init(be, m, &cfg, &p);
    if (s == NG_OK) s = ng_model_gradient(m, &f.x, NULL);
    if (s == NG_OK) s = ng_precond_apply(p, m, 0);
    if (s == NG_OK) {
        ng_tensor bd;
        *np = ng_model_size(m);
        s = ng_diag_get(p, &bd, NULL);
        if (s == NG_OK) *dir = get_vec(be, bd.data, *np);
    }
    ng_precond_free(p);
    rbmfix_free(&f);
    return s;
}

static int test_diag_cpu_vs_cuda(void) {
    int metrics[2] = {NG_DIAG_FISHER, NG_DIAG_EMPIRICAL}, i;
    double *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    for (i = 0; i < 2; i++) {
        netfix f;
        size_t np;
        NGT_OK(netfix_init(&f, g_cpu, 1));
        np = f.np;
        netfix_free(&f);
        NGT_OK(net_run(g_cpu, metrics[i], &a));
        NGT_OK(net_run(g_cuda, metrics[i], &b));
        /* float32 on both, different summation orders: 1e-4 after three updates */
        NGT_CHECK(rel_diff(b, a, np) < 1e-4, "%s: cpu vs cuda directions: rel diff %g", ng_diag_metric_name(metrics[i]), rel_diff(b, a, np));
        free(a);
        free(b);
    }
    {
        netfix f;
        size_t np;
        NGT_OK(netfix_init(&f, g_cpu, 1));
        np = f.np;
        netfix_free(&f);
        NGT_OK(phi_run(g_cpu, &a));
        NGT_OK(phi_run(g_cuda, &b));
        NGT_CHECK(rel_diff(b, a, np) < 1e-5, "Adam in phi, 5 updates: cpu vs cuda parameters rel diff %g", rel_diff(b, a, np));
        free(a);
        free(b);
    }
    NGT_OK(rbm_run(g_cpu, &a, &na));
    NGT_OK(rbm_run(g_cuda, &b, &nb));
    NGT_CHECK(na == nb && rel_diff(b, a, na) < 1e-5, "rbm energy diagonal: cpu vs cuda rel diff %g", rel_diff(b, a, na));
    free(a);
    free(b);
    return NGT_PASS;
}

int main(void) {
    if (ngt_open_backends(&g_cpu, &g_cuda, g_cuda_reason, sizeof g_cuda_reason)) return 1;
    NGT_RUN(test_diag_net_empirical);
    NGT_RUN(test_diag_net_fisher_sampled);
    NGT_RUN(test_diag_average_and_power);
    NGT_RUN(test_diag_rbm_energy);
    NGT_RUN(test_diag_rbm_fisher);
    NGT_RUN(test_diag_bad_config);
    NGT_RUN(test_phi_sgd_is_natural_step);
    NGT_RUN(test_phi_adam);
    NGT_RUN(test_phi_refusals);
    NGT_RUN(test_phi_kfac_map_and_step);
    NGT_RUN(test_phi_kfac_refusals);
    NGT_RUN(test_phi_kfac_batched_bitexact);
    NGT_RUN(test_phi_kfac_cpu_vs_cuda);
    NGT_RUN(test_phi_full_map_and_step);
    NGT_RUN(test_phi_full_refusals);
    NGT_RUN(test_phi_full_cpu_vs_cuda);
    NGT_RUN(test_phi_full_regularized);
    NGT_RUN(test_diag_cpu_vs_cuda);
    ng_backend_free(g_cuda);
    ng_backend_free(g_cpu);
    return ngt_finish();
}
