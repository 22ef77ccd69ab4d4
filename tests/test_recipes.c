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
 *   - CPU and emulated CUDA agree. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends.h"
#include "harness.h"
#include "natgrad/backend.h"
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

static ng_status phi_setup(netfix *f, ng_backend *be, int rule, ng_precond **p, ng_update **u) {
    ng_diag_config cfg;
    ng_update *inner = NULL;
    ng_status s;
    NG_TRY(netfix_init(f, be, 8));
    ng_diag_config_default(&cfg);
    cfg.metric = NG_DIAG_EMPIRICAL;
    cfg.beta = 0.0;
    cfg.lambda = 1e-3;
    cfg.phi_every = 3;
    NG_TRY(ng_precond_diag_init(be, f->net, &cfg, p));
    if (rule == 0) {
        ng_sgd_config c;
        memset(&c, 0, sizeof c);
        c.lr = 0.05f;
        s = ng_update_sgd_init(be, f->net, &c, &inner);
    } else {
        ng_adam_config c;
        ng_adam_config_default(&c);
        c.lr = 1e-3f;
        s = ng_update_adam_init(be, f->net, &c, &inner);
    }
    if (s == NG_OK) s = ng_update_phi_init(be, f->net, inner, *p, u);
    if (s != NG_OK) ng_update_free(inner);
    return s;
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
    NGT_RUN(test_diag_cpu_vs_cuda);
    ng_backend_free(g_cuda);
    ng_backend_free(g_cpu);
    return ngt_finish();
}
