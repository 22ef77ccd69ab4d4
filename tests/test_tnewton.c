/* test_tnewton.c: the truncated-Newton family (host/optim/tnewton.c) on a tiny network against
 * dense float64 references:
 *   - the NGD direction = (G + lambda I)^-1 g with G the dense Gauss-Newton matrix (columns from
 *     G e_i), with CG and with MINRES-QLP; with a separate metric batch, G of that batch
 *   - --tn-fisher: each metric's product F e_j equals its definition (1/m) sum_i E_t[g_i g_i^T] from
 *     per-case gradients in float64: exact = all 64 binary targets of the Bernoulli output weighted
 *     by their probability, sampled = the targets update 0 draws, empirical = the data's; and the
 *     NGD direction with each metric = (F + lambda I)^-1 g
 *   - NCG with beta = 0 equals NGD: the first update of ncg-f and ncg-l (no previous direction)
 *     equals ngd-l's bit for bit
 *   - Levenberg-Marquardt and Polak-Ribiere on scripted values
 *   - HF: backtracking chooses the best kept CG iterate by the rule (from the last backwards while h
 *     decreases), the step is that iterate; the diagonal preconditioner = (mean of squared per-case
 *     gradients, each from a one-case gradient, + lambda)^-0.75
 *   - CPU and emulated CUDA agree over several updates (each method on G; NGD on the sampled and the
 *     empirical Fisher). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends.h"
#include "harness.h"
#include "natgrad/backend.h"
#include "natgrad/net.h"
#include "natgrad/rng.h"
#include "natgrad/solver.h"
#include "natgrad/tensor.h"
#include "natgrad/tnewton.h"

static ng_backend *g_cpu, *g_cuda;
static char g_cuda_reason[512];

static uint64_t g_state = 99;
static double urand(void) {
    g_state = g_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_state >> 11) / 9007199254740992.0;
}

typedef struct fix {
    ng_backend *be;
    ng_model *net;
    ng_precond *pc;
    ng_tensor x, x2, v, out;
    float *hx2;
    void *mem;
    int m, m2, rows;
    size_t np;
} fix;

static void fix_free(fix *f) {
    ng_precond_free(f->pc);
    if (f->mem) ng_free(f->be, f->mem);
    ng_net_free(f->net);
    free(f->hx2);
    memset(f, 0, sizeof *f);
}

/* a 6-4-3-4-6 autoencoder (tanh, linear code, logistic output), batch x of m cases, pool x2 */
static ng_status fix_init(fix *f, ng_backend *be, int m, int m2) {
    ng_net_config cfg;
    float *hx;
    int c;
    memset(f, 0, sizeof *f);
    f->be = be;
    ng_net_config_default(&cfg);
    cfg.loss = NG_LOSS_BERNOULLI;
    cfg.target = NG_NET_TARGET_INPUT;
    cfg.init = NG_INIT_GAUSSIAN;
    cfg.init_scale = 0.8f;
    cfg.seed = 11;
    NG_TRY(ng_net_parse_spec("6-4-3:linear-4-6", NG_ACT_TANH, NG_ACT_LOGISTIC, &cfg));
    NG_TRY(ng_net_create(be, &cfg, &f->net));
    f->np = ng_model_size(f->net);
    f->m = m;
    f->m2 = m2;
    f->rows = ng_net_batch_rows(f->net);
    g_state = 99;
    hx = (float *)malloc(sizeof(float) * (size_t)f->rows * (size_t)m);
    f->hx2 = (float *)malloc(sizeof(float) * (size_t)f->rows * (size_t)m2);
    for (c = 0; c < f->rows * m; c++) hx[c] = (float)urand();
    for (c = 0; c < f->rows * m2; c++) f->hx2[c] = (float)urand();
    NG_TRY(ng_alloc(be, sizeof(float) * ((size_t)f->rows * (m + m2) + 2 * f->np), &f->mem));
    f->x = ng_tensor_matrix((float *)f->mem, f->rows, m, f->rows);
    f->x2 = ng_tensor_matrix(f->x.data + (size_t)f->rows * m, f->rows, m2, f->rows);
    f->v = ng_tensor_matrix(f->x2.data + (size_t)f->rows * m2, (int)f->np, 1, (int)f->np);
    f->out = ng_tensor_matrix(f->v.data + f->np, (int)f->np, 1, (int)f->np);
    NG_TRY(ng_tensor_set(be, &f->x, hx));
    NG_TRY(ng_tensor_set(be, &f->x2, f->hx2));
    free(hx);
    return NG_OK;
}

static double *get_vec(ng_backend *be, const float *p, size_t n) {
    float *h = (float *)malloc(n * sizeof(float));
    double *d = (double *)malloc(n * sizeof(double));
    size_t i;
    if (ng_get(be, h, p, n * sizeof(float)) != NG_OK) {
        free(h);
        free(d);
        return NULL;
    }
    for (i = 0; i < n; i++) d[i] = h[i];
    free(h);
    return d;
}

/* dense G (np x np, double) of the current batch from G e_i */
static int dense_G(fix *f, double *G) {
    size_t i, j;
    float *e = (float *)calloc(f->np, sizeof(float));
    for (j = 0; j < f->np; j++) {
        double *col;
        memset(e, 0, f->np * sizeof(float));
        e[j] = 1.0f;
        if (ng_tensor_set(f->be, &f->v, e) != NG_OK || ng_net_gvp(f->net, &f->v, &f->out) != NG_OK) {
            free(e);
            return -1;
        }
        col = get_vec(f->be, f->out.data, f->np);
        for (i = 0; i < f->np; i++) G[i + f->np * j] = col[i];
        free(col);
    }
    free(e);
    return 0;
}

/* x = (A + lambda I)^-1 b (Gaussian elimination, partial pivoting) */
static int dsolve(size_t n, const double *A, double lambda, const double *b, double *x) {
    double *M = (double *)malloc(sizeof(double) * n * (n + 1));
    size_t i, j, k;
    for (i = 0; i < n; i++) {
        for (j = 0; j < n; j++) M[i * (n + 1) + j] = A[i + n * j] + (i == j ? lambda : 0.0);
        M[i * (n + 1) + n] = b[i];
    }
    for (k = 0; k < n; k++) {
        size_t piv = k;
        for (i = k + 1; i < n; i++)
            if (fabs(M[i * (n + 1) + k]) > fabs(M[piv * (n + 1) + k])) piv = i;
        if (M[piv * (n + 1) + k] == 0.0) {
            free(M);
            return -1;
        }
        for (j = 0; j <= n && piv != k; j++) {
            double t = M[k * (n + 1) + j];
            M[k * (n + 1) + j] = M[piv * (n + 1) + j];
            M[piv * (n + 1) + j] = t;
        }
        for (i = k + 1; i < n; i++) {
            double q = M[i * (n + 1) + k] / M[k * (n + 1) + k];
            for (j = k; j <= n; j++) M[i * (n + 1) + j] -= q * M[k * (n + 1) + j];
        }
    }
    for (i = n; i-- > 0;) {
        double s = M[i * (n + 1) + n];
        for (j = i + 1; j < n; j++) s -= M[i * (n + 1) + j] * x[j];
        x[i] = s / M[i * (n + 1) + i];
    }
    free(M);
    return 0;
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

static void base_config(ng_tn_config *c, int method) {
    ng_tn_config_default(c);
    c->method = method;
    c->lambda0 = 0.1;
    c->adapt_lambda = 0;
    c->lr = 1.0;
    c->max_iter = 400;
    c->rtol = 1e-6;
}

/* one update's -delta (the gradient arena after apply) for a fresh preconditioner */
static ng_status one_update(fix *f, const ng_tn_config *c, double **g_out, double **mdelta) {
    NG_TRY(ng_precond_tn_init(f->be, f->net, c, f->hx2, f->m2, &f->pc));
    NG_TRY(ng_model_gradient(f->net, &f->x, NULL));
    if (g_out) *g_out = get_vec(f->be, f->net->grad_flat.data, f->np);
    NG_TRY(ng_precond_observe(f->pc, f->net, 0));
    NG_TRY(ng_precond_apply(f->pc, f->net, 0));
    *mdelta = get_vec(f->be, f->net->grad_flat.data, f->np);
    return NG_OK;
}

/* ---- the NGD direction vs the dense solve -------------------------------------------------------- */
static int ngd_case(int solver, int metric) {
    fix f;
    ng_tn_config c;
    double *G, *g = NULL, *nd = NULL, *ref;
    NGT_OK(fix_init(&f, g_cpu, 8, 5));
    G = (double *)malloc(sizeof(double) * f.np * f.np);
    ref = (double *)malloc(sizeof(double) * f.np);
    /* G of the metric batch: the gradient's, or the whole pool x2 (a metric batch of the pool's size is a
     * permutation of it, and G is a mean over cases) */
    if (metric == NG_TN_METRIC_SEPARATE) NGT_OK(ng_net_set_batch(f.net, &f.x2, NULL));
    else NGT_OK(ng_net_set_batch(f.net, &f.x, NULL));
    NGT_CHECK(dense_G(&f, G) == 0, "dense G");
    base_config(&c, NG_TN_NGD);
    c.solver = solver;
    c.metric = metric;
    c.metric_batch = metric == NG_TN_METRIC_SEPARATE ? f.m2 : 0;
    NGT_OK(one_update(&f, &c, &g, &nd));
    NGT_CHECK(dsolve(f.np, G, c.lambda0, g, ref) == 0, "reference solve");
    /* -delta = lr n = n */
    NGT_CHECK(rel_diff(nd, ref, f.np) < 2e-3, "%s, metric %s: NGD direction vs dense (G + lambda I)^-1 g: rel diff %g",
              solver ? "minres-qlp" : "cg", ng_tn_metric_name(metric), rel_diff(nd, ref, f.np));
    {
        ng_tn_state st;
        NGT_OK(ng_tn_get_state(f.pc, &st));
        printf("  %s, metric %s: %d iterations, rel_res %.2g, rel diff %.2g\n", solver ? "minres-qlp" : "cg", ng_tn_metric_name(metric),
               st.cg_iters, st.rel_res, rel_diff(nd, ref, f.np));
    }
    free(G);
    free(g);
    free(nd);
    free(ref);
    fix_free(&f);
    return NGT_PASS;
}

static int test_ngd_direction(void) {
    int r = ngd_case(NG_TN_SOLVER_CG, NG_TN_METRIC_SAME);
    if (r == NGT_PASS) r = ngd_case(NG_TN_SOLVER_CG, NG_TN_METRIC_SEPARATE);
    if (r == NGT_PASS) r = ngd_case(NG_TN_SOLVER_MINRESQLP, NG_TN_METRIC_SAME);
    return r;
}


/* ---- the metric choice (--tn-fisher) against its dense definition --------------------------------- */
/* (1/m) sum_i w_i g_i g_i^T accumulated into F (np x np) for the per-case gradient g_i of case i of
 * f->x with the targets t (d_L floats, host) */
static int add_outer(fix *f, int i, const float *t, double w, double *F, void *tdev) {
    int dl = f->rows;
    ng_tensor xi = ng_tensor_matrix(f->x.data + (size_t)f->rows * i, f->rows, 1, f->rows), yi = ng_tensor_matrix((float *)tdev, dl, 1, dl);
    double *g;
    size_t a, b;
    if (ng_tensor_set(f->be, &yi, t) != NG_OK || ng_model_gradient(f->net, &xi, &yi) != NG_OK) return -1;
    g = get_vec(f->be, f->net->grad_flat.data, f->np);
    if (!g) return -1;
    for (b = 0; b < f->np; b++)
        for (a = 0; a < f->np; a++) F[a + f->np * b] += w * g[a] * g[b];
    free(g);
    return 0;
}

/* F of the batch x by its definition: exact = sum over all 2^6 binary targets of the Bernoulli
 * output, weighted by their probability; sampled = the targets the tn stream draws in update 0
 * (read back from a sampled backward pass: t = y - dL/dz_L); empirical = the data's targets (the
 * input: an autoencoder) */
static int dense_fisher(fix *f, int mode, const ng_tn_config *c, double *F) {
    int m = f->m, d = f->rows, i, k, r = 0;
    float *y = (float *)malloc(sizeof(float) * (size_t)d * m), *gl = (float *)malloc(sizeof(float) * (size_t)d * m);
    float *hx = (float *)malloc(sizeof(float) * (size_t)d * m), t[16];
    void *tdev = NULL;
    ng_tensor ys, gs;
    memset(F, 0, sizeof(double) * f->np * f->np);
    if (ng_alloc(f->be, sizeof(float) * (size_t)d, &tdev) != NG_OK || ng_tensor_get(f->be, &f->x, hx) != NG_OK) r = -1;
    if (!r && mode == NG_FISHER_SAMPLED) {
        if (ng_net_set_batch(f->net, &f->x, NULL) != NG_OK ||
            ng_net_backward_sampled(f->net, ng_rng_stream_key(c->seed, NG_RNG_TN_TARGETS), ng_tn_fisher_step(0)) != NG_OK ||
            ng_model_statistic(f->net, "y", &ys) != NG_OK || ng_tensor_get(f->be, &ys, y) != NG_OK ||
            ng_model_statistic(f->net, "g4", &gs) != NG_OK || ng_tensor_get(f->be, &gs, gl) != NG_OK)
            r = -1;
    } else if (!r && mode == NG_FISHER_EXACT) {
        if (ng_net_set_batch(f->net, &f->x, NULL) != NG_OK || ng_model_statistic(f->net, "y", &ys) != NG_OK ||
            ng_tensor_get(f->be, &ys, y) != NG_OK)
            r = -1;
    }
    for (i = 0; !r && i < m; i++) {
        if (mode == NG_FISHER_EMPIRICAL) {
            r = add_outer(f, i, hx + (size_t)d * i, 1.0 / m, F, tdev);
        } else if (mode == NG_FISHER_SAMPLED) {
            for (k = 0; k < d; k++) {
                t[k] = y[k + d * i] - gl[k + d * i];
                if (fabs(t[k] - floorf(t[k] + 0.5f)) > 1e-5 || t[k] < -0.5f || t[k] > 1.5f) r = -2; /* a draw must be 0 or 1 */
                t[k] = floorf(t[k] + 0.5f);
            }
            if (!r) r = add_outer(f, i, t, 1.0 / m, F, tdev);
        } else {
            int bits;
            for (bits = 0; !r && bits < (1 << d); bits++) {
                double p = 1.0;
                for (k = 0; k < d; k++) {
                    t[k] = (float)((bits >> k) & 1);
                    p *= t[k] > 0.5f ? y[k + d * i] : 1.0 - y[k + d * i];
                }
                r = add_outer(f, i, t, p / m, F, tdev);
            }
        }
    }
    if (tdev) ng_free(f->be, tdev);
    free(y);
    free(gl);
    free(hx);
    return r;
}

static int test_fisher_metrics(void) {
    static const int modes[] = {NG_FISHER_EXACT, NG_FISHER_SAMPLED, NG_FISHER_EMPIRICAL};
    int mi;
    for (mi = 0; mi < 3; mi++) {
        fix f;
        ng_tn_config c;
        double *F, *g = NULL, *nd = NULL, *ref, *prod, worst = 0.0;
        float *e;
        size_t j, i;
        int r;
        NGT_OK(fix_init(&f, g_cpu, 4, 3));
        F = (double *)malloc(sizeof(double) * f.np * f.np);
        ref = (double *)malloc(sizeof(double) * f.np);
        e = (float *)calloc(f.np, sizeof(float));
        base_config(&c, NG_TN_NGD);
        c.fisher = modes[mi];
        r = dense_fisher(&f, modes[mi], &c, F);
        NGT_CHECK(r == 0, "%s: dense Fisher by definition failed (%d: -2 = a sampled target not in {0, 1}) %s", ng_tn_fisher_name(modes[mi]), r,
                  ng_last_error());
        /* the product, column by column, on the batch (update 0's draws) */
        NGT_OK(ng_net_set_batch(f.net, &f.x, NULL));
        for (j = 0; j < f.np; j++) {
            double num = 0.0, den = 0.0;
            memset(e, 0, f.np * sizeof(float));
            e[j] = 1.0f;
            NGT_OK(ng_tensor_set(f.be, &f.v, e));
            NGT_OK(ng_net_fvp(f.net, modes[mi], 1, ng_rng_stream_key(c.seed, NG_RNG_TN_TARGETS), ng_tn_fisher_step(0), &f.v, &f.out));
            prod = get_vec(f.be, f.out.data, f.np);
            for (i = 0; i < f.np; i++) {
                num += (prod[i] - F[i + f.np * j]) * (prod[i] - F[i + f.np * j]);
                den += F[i + f.np * j] * F[i + f.np * j];
            }
            if (den > 0.0 && sqrt(num / den) > worst) worst = sqrt(num / den);
            if (den == 0.0 && sqrt(num) > worst) worst = sqrt(num);
            free(prod);
        }
        NGT_CHECK(worst < 1e-4, "%s: F e_j vs the dense definition: worst column rel diff %g", ng_tn_fisher_name(modes[mi]), worst);
        /* the NGD direction with this metric = (F + lambda I)^-1 g */
        NGT_OK(one_update(&f, &c, &g, &nd));
        NGT_CHECK(dsolve(f.np, F, c.lambda0, g, ref) == 0, "reference solve");
        NGT_CHECK(rel_diff(nd, ref, f.np) < 2e-3, "%s: NGD direction vs dense (F + lambda I)^-1 g: rel diff %g", ng_tn_fisher_name(modes[mi]),
                  rel_diff(nd, ref, f.np));
        printf("  --tn-fisher %s: worst F e_j column rel diff %.2g, NGD direction rel diff %.2g\n", ng_tn_fisher_name(modes[mi]), worst,
               rel_diff(nd, ref, f.np));
        free(F);
        free(ref);
        free(e);
        free(g);
        free(nd);
        fix_free(&f);
    }
    return NGT_PASS;
}

/* ---- NCG with beta = 0 is NGD with a line search ------------------------------------------------ */
static int test_ncg_first_step_is_ngd(void) {
    static const int methods[] = {NG_TN_NGD_L, NG_TN_NCG_F, NG_TN_NCG_L};
    double *d[3];
    int i;
    for (i = 0; i < 3; i++) {
        fix f;
        ng_tn_config c;
        ng_tn_state st;
        NGT_OK(fix_init(&f, g_cpu, 8, 5));
        base_config(&c, methods[i]);
        c.max_iter = 20;
        c.rtol = 1e-4;
        NGT_OK(one_update(&f, &c, NULL, &d[i]));
        NGT_OK(ng_tn_get_state(f.pc, &st));
        NGT_CHECK(st.beta == 0.0 && st.step > 0.0 && st.h1 < st.h0, "%s: beta %g, step %g, h %g -> %g", ng_tn_method_name(methods[i]),
                  st.beta, st.step, st.h0, st.h1);
        fix_free(&f);
    }
    for (i = 1; i < 3; i++)
        NGT_CHECK(memcmp(d[i], d[0], sizeof(double) * 89) == 0, "%s's first update differs from ngd-l's", ng_tn_method_name(methods[i]));
    for (i = 0; i < 3; i++) free(d[i]);
    return NGT_PASS;
}

/* ---- rho's prediction: g^T delta (eq. 32) or g^T delta + 1/2 delta^T G delta (Martens) ------------- */
static int test_rho_models(void) {
    int model;
    for (model = NG_TN_RHO_LINEAR; model <= NG_TN_RHO_QUADRATIC; model++) {
        fix f;
        ng_tn_config c;
        ng_tn_state st;
        double *G, *g = NULL, *nd = NULL, gd = 0.0, dgd = 0.0, want;
        size_t i, j;
        NGT_OK(fix_init(&f, g_cpu, 8, 5));
        G = (double *)malloc(sizeof(double) * f.np * f.np);
        NGT_OK(ng_net_set_batch(f.net, &f.x, NULL));
        NGT_CHECK(dense_G(&f, G) == 0, "dense G");
        base_config(&c, NG_TN_NGD);
        c.adapt_lambda = 1;
        c.rho_model = model;
        c.lr = 0.7;
        NGT_OK(one_update(&f, &c, &g, &nd));
        NGT_OK(ng_tn_get_state(f.pc, &st));
        /* delta = -nd */
        for (i = 0; i < f.np; i++) {
            gd -= g[i] * nd[i];
            for (j = 0; j < f.np; j++) dgd += nd[i] * G[i + f.np * j] * nd[j];
        }
        want = model == NG_TN_RHO_LINEAR ? gd : gd + 0.5 * dgd;
        NGT_CHECK(fabs(st.pred - want) < 1e-4 * fabs(want), "%s model: pred %.8g, want %.8g", model ? "quadratic" : "linear", st.pred, want);
        NGT_CHECK(fabs(st.rho - (st.h1 - st.h0) / want) < 1e-3 * fabs(st.rho) + 1e-9, "rho %g vs (h1 - h0) / pred %g", st.rho,
                  (st.h1 - st.h0) / want);
        printf("  %s model: pred %.5g, rho %.4f\n", model ? "quadratic" : "linear", st.pred, st.rho);
        free(G);
        free(g);
        free(nd);
        fix_free(&f);
    }
    return NGT_PASS;
}

/* ---- scalar rules ----------------------------------------------------------------------------------- */
static int test_scalar_rules(void) {
    NGT_CHECK(ng_tn_lm_update(2.0, 0.1, 1e-6) == 3.0, "rho 0.1: %g", ng_tn_lm_update(2.0, 0.1, 1e-6));
    NGT_CHECK(ng_tn_lm_update(2.0, -5.0, 1e-6) == 3.0, "rho < 0");
    NGT_CHECK(ng_tn_lm_update(2.0, NAN, 1e-6) == 3.0, "rho NaN");
    NGT_CHECK(ng_tn_lm_update(2.0, 0.5, 1e-6) == 2.0, "rho 0.5");
    NGT_CHECK(ng_tn_lm_update(2.0, 0.25, 1e-6) == 2.0 && ng_tn_lm_update(2.0, 0.75, 1e-6) == 2.0, "the boundaries keep lambda");
    NGT_CHECK(fabs(ng_tn_lm_update(3.0, 0.9, 1e-6) - 2.0) < 1e-15, "rho 0.9: %g", ng_tn_lm_update(3.0, 0.9, 1e-6));
    NGT_CHECK(ng_tn_lm_update(1e-6, 0.9, 1e-6) == 1e-6, "the floor");
    /* Polak-Ribiere+: n.(g - gp) / (np.gp) */
    NGT_CHECK(fabs(ng_tn_polak_ribiere(3.0, 1.0, 4.0) - 0.5) < 1e-15, "PR (3 - 1) / 4 = %g", ng_tn_polak_ribiere(3.0, 1.0, 4.0));
    NGT_CHECK(ng_tn_polak_ribiere(1.0, 3.0, 4.0) == 0.0, "PR+ clips negative values");
    NGT_CHECK(ng_tn_polak_ribiere(1.0, 0.0, 0.0) == 0.0, "zero denominator");
    return NGT_PASS;
}

/* ---- HF: backtracking and the diagonal preconditioner ---------------------------------------------- */
static int hf_backtracking_case(double lambda0, int max_iter) {
    fix f;
    ng_tn_config c;
    ng_tn_state st;
    double *nd, *theta, h[64], e;
    int count = 0, j, best;
    NGT_OK(fix_init(&f, g_cpu, 8, 5));
    base_config(&c, NG_TN_HF);
    c.lambda0 = lambda0;
    c.max_iter = max_iter;
    c.rtol = 0.0;
    NGT_OK(ng_precond_tn_init(f.be, f.net, &c, NULL, 0, &f.pc));
    theta = get_vec(f.be, f.net->param_flat.data, f.np);
    NGT_OK(ng_model_gradient(f.net, &f.x, NULL));
    NGT_OK(ng_precond_observe(f.pc, f.net, 0));
    NGT_OK(ng_precond_apply(f.pc, f.net, 0));
    nd = get_vec(f.be, f.net->grad_flat.data, f.np);
    NGT_OK(ng_tn_get_state(f.pc, &st));
    NGT_OK(ng_tn_get_kept(f.pc, -1, &count, NULL, NULL));
    NGT_CHECK(count >= 3 && count <= 64, "%d kept iterates", count);
    /* h at every kept iterate, each evaluated here: theta + p_j */
    {
        float *save = (float *)malloc(f.np * sizeof(float));
        NGT_OK(ng_get(f.be, save, f.net->param_flat.data, f.np * sizeof(float)));
        for (j = 0; j < count; j++) {
            ng_tensor p;
            int it;
            NGT_OK(ng_tn_get_kept(f.pc, j, NULL, &it, &p));
            NGT_OK(ng_axpby(f.be, f.np, 1.0f, p.data, 1.0f, f.net->param_flat.data));
            NGT_OK(ng_net_evaluate(f.net, &f.x, &h[j], &e));
            NGT_OK(ng_set(f.be, f.net->param_flat.data, save, f.np * sizeof(float)));
        }
        free(save);
    }
    /* the rule: from the last backwards while h keeps decreasing */
    best = count - 1;
    for (j = count - 2; j >= 0 && h[j] < h[best]; j--) best = j;
    {
        int it;
        ng_tensor p;
        double *pv;
        size_t i;
        NGT_OK(ng_tn_get_kept(f.pc, best, NULL, &it, &p));
        NGT_CHECK(st.chosen_iter == it, "chose iteration %d, the rule picks kept %d = iteration %d (h %g)", st.chosen_iter, best, it, h[best]);
        pv = get_vec(f.be, p.data, f.np);
        if (h[best] < st.h0) {
            NGT_CHECK(st.h1 == h[best], "h1 %.17g vs h at the chosen iterate %.17g", st.h1, h[best]);
            for (i = 0; i < f.np; i++) NGT_CHECK(nd[i] == -pv[i], "step %zu: %g is not the chosen iterate's %g", i, -nd[i], pv[i]);
        } else {
            for (i = 0; i < f.np; i++) NGT_CHECK(nd[i] == 0.0, "no decrease, yet step %zu = %g", i, -nd[i]);
        }
        printf("  %d kept iterates, chose iteration %d of %d (h %.6g -> %.6g), stop %s\n", count, it, st.cg_iters, st.h0, h[best],
               ng_solve_stop_name(st.cg_stop));
        free(pv);
    }
    free(theta);
    free(nd);
    fix_free(&f);
    return NGT_PASS;
}

static int test_hf_preconditioner(void) {
    fix f;
    double lambda = 0.3, *diag, *minv, *ref;
    void *mem;
    float *d_diag, *d_tmp, *d_minv;
    size_t i;
    int c;
    NGT_OK(fix_init(&f, g_cpu, 8, 5));
    NGT_OK(ng_alloc(f.be, 3 * f.np * sizeof(float), &mem));
    d_diag = (float *)mem;
    d_tmp = d_diag + f.np;
    d_minv = d_tmp + f.np;
    NGT_OK(ng_model_gradient(f.net, &f.x, NULL));
    NGT_OK(ng_tn_hf_diagonal(f.net, lambda, 0.75, d_diag, d_tmp, d_minv));
    diag = get_vec(f.be, d_diag, f.np);
    minv = get_vec(f.be, d_minv, f.np);
    /* the reference: each case's own gradient (a batch of one case), squared, averaged */
    ref = (double *)calloc(f.np, sizeof(double));
    for (c = 0; c < f.m; c++) {
        ng_tensor xc = ng_tensor_matrix(f.x.data + (size_t)c * f.rows, f.rows, 1, f.rows);
        double *gc;
        NGT_OK(ng_model_gradient(f.net, &xc, NULL));
        gc = get_vec(f.be, f.net->grad_flat.data, f.np);
        for (i = 0; i < f.np; i++) ref[i] += gc[i] * gc[i] / f.m;
        free(gc);
    }
    NGT_CHECK(rel_diff(diag, ref, f.np) < 1e-5, "diagonal vs mean squared per-case gradients: rel diff %g", rel_diff(diag, ref, f.np));
    for (i = 0; i < f.np; i++) {
        double want = pow(ref[i] + lambda, -0.75);
        NGT_CHECK(fabs(minv[i] - want) < 1e-5 * want, "minv[%zu] = %g, (diag + lambda)^-0.75 = %g", i, minv[i], want);
    }
    free(diag);
    free(minv);
    free(ref);
    ng_free(f.be, mem);
    fix_free(&f);
    return NGT_PASS;
}

static int test_hf_backtracking(void) {
    int r = hf_backtracking_case(0.02, 40); /* the last iterate is the best: a step */
    if (r == NGT_PASS) r = hf_backtracking_case(1e-4, 80); /* barely damped: backtracks, and rejects */
    return r;
}

/* HF on Hessian products: with the preconditioner and backtracking off and a damping that keeps
 * H + lambda I positive definite, the step is -(H + lambda I)^-1 g (dense H from H e_i) */
static int test_hf_hessian(void) {
    fix f;
    ng_tn_config c;
    ng_tn_state st;
    double *H, *g, *nd, *ref;
    size_t i, j;
    float *e;
    NGT_OK(fix_init(&f, g_cpu, 8, 5));
    H = (double *)malloc(sizeof(double) * f.np * f.np);
    ref = (double *)malloc(sizeof(double) * f.np);
    e = (float *)calloc(f.np, sizeof(float));
    NGT_OK(ng_model_gradient(f.net, &f.x, NULL));
    for (j = 0; j < f.np; j++) {
        double *col;
        memset(e, 0, f.np * sizeof(float));
        e[j] = 1.0f;
        NGT_OK(ng_tensor_set(f.be, &f.v, e));
        NGT_OK(ng_net_hvp(f.net, &f.v, &f.out));
        col = get_vec(f.be, f.out.data, f.np);
        for (i = 0; i < f.np; i++) H[i + f.np * j] = col[i];
        free(col);
    }
    base_config(&c, NG_TN_HF);
    c.curvature = NG_TN_CURV_HESSIAN;
    c.hf_precond = 0;
    c.hf_backtrack = 0;
    c.hf_decay = 0.0;
    c.lambda0 = 5.0;
    c.max_iter = 60;
    c.rtol = 1e-6;
    NGT_OK(one_update(&f, &c, &g, &nd));
    NGT_OK(ng_tn_get_state(f.pc, &st));
    NGT_CHECK(dsolve(f.np, H, c.lambda0, g, ref) == 0, "reference");
    NGT_CHECK(st.cg_stop == NG_SOLVE_RTOL, "stop %s after %d", ng_solve_stop_name(st.cg_stop), st.cg_iters);
    if (st.h1 < st.h0) NGT_CHECK(rel_diff(nd, ref, f.np) < 2e-3, "HF Hessian step vs dense: rel diff %g", rel_diff(nd, ref, f.np));
    else for (i = 0; i < f.np; i++) NGT_CHECK(nd[i] == 0.0, "rejected step not zero");
    printf("  Hessian: %d CG iterations, rel diff %.2g, h %.6g -> %.6g\n", st.cg_iters, rel_diff(nd, ref, f.np), st.h0, st.h1);
    free(H);
    free(g);
    free(nd);
    free(ref);
    free(e);
    fix_free(&f);
    return NGT_PASS;
}

/* ---- bad configurations ---------------------------------------------------------------------------- */
static int test_bad_config(void) {
    static const char *const names[] = {"--cg-rtol", "--lambda0", "--hf-decay", "--hf-power", "--line-evals", "--curvature hessian",
                                        "minres-qlp", "--tn-fisher sampled", "--tn-fisher empirical", "--tn-fisher-samples"};
    ng_tn_config c[10];
    int i;
    for (i = 0; i < 10; i++) ng_tn_config_default(&c[i]);
    c[0].rtol = 1.5;
    c[1].lambda0 = 0.0;
    c[2].hf_decay = -0.1;
    c[3].hf_power = 0.0;
    c[4].line_evals = 1;
    c[5].curvature = NG_TN_CURV_HESSIAN;
    c[6].method = NG_TN_HF, c[6].solver = NG_TN_SOLVER_MINRESQLP;
    c[7].method = NG_TN_HF, c[7].curvature = NG_TN_CURV_HESSIAN, c[7].fisher = NG_FISHER_SAMPLED; /* a Fisher with the Hessian */
    c[8].metric = NG_TN_METRIC_UNLABELED, c[8].fisher = NG_FISHER_EMPIRICAL;                     /* no targets */
    c[9].fisher = NG_FISHER_SAMPLED, c[9].fisher_samples = 0;
    for (i = 0; i < 10; i++) {
        NGT_CHECK(ng_tn_config_check(&c[i]) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), names[i]), "bad %s: %s", names[i],
                  ng_last_error());
        ng_clear_error();
    }
    return NGT_PASS;
}

/* ---- CPU vs emulated CUDA -------------------------------------------------------------------------- */
static ng_status run_updates(ng_backend *be, int method, int fisher, int steps, double **theta) {
    fix f;
    ng_tn_config c;
    int t;
    ng_status s;
    NG_TRY(fix_init(&f, be, 8, 5));
    base_config(&c, method);
    c.adapt_lambda = 1;
    c.max_iter = 10;
    c.rtol = 1e-4;
    c.lambda0 = 1.0;
    if (method == NG_TN_HF) c.max_iter = 30;
    c.metric = NG_TN_METRIC_SEPARATE;
    c.metric_batch = 3;
    c.fisher = fisher;
    c.fisher_samples = 2;
    s = ng_precond_tn_init(be, f.net, &c, f.hx2, f.m2, &f.pc);
    for (t = 0; s == NG_OK && t < steps; t++) {
        s = ng_model_gradient(f.net, &f.x, NULL);
        if (s == NG_OK) s = ng_precond_observe(f.pc, f.net, (uint64_t)t);
        if (s == NG_OK) s = ng_precond_apply(f.pc, f.net, (uint64_t)t);
        if (s == NG_OK) s = ng_axpby(be, f.np, -1.0f, f.net->grad_flat.data, 1.0f, f.net->param_flat.data);
    }
    if (s == NG_OK) *theta = get_vec(be, f.net->param_flat.data, f.np);
    fix_free(&f);
    return s;
}

static int test_cpu_vs_cuda(void) {
    /* the three methods on G, then NGD on the sampled and the empirical Fisher (--tn-fisher) */
    static const int methods[] = {NG_TN_NGD, NG_TN_NCG_F, NG_TN_HF, NG_TN_NGD, NG_TN_NGD};
    static const int fishers[] = {NG_FISHER_EXACT, NG_FISHER_EXACT, NG_FISHER_EXACT, NG_FISHER_SAMPLED, NG_FISHER_EMPIRICAL};
    int i;
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    for (i = 0; i < 5; i++) {
        double *a = NULL, *b = NULL;
        NGT_OK(run_updates(g_cpu, methods[i], fishers[i], 4, &a));
        NGT_OK(run_updates(g_cuda, methods[i], fishers[i], 4, &b));
        NGT_CHECK(rel_diff(b, a, 89) < 1e-3, "%s, fisher %s: cpu vs cuda parameters after 4 updates: rel diff %g", ng_tn_method_name(methods[i]),
                  ng_tn_fisher_name(fishers[i]), rel_diff(b, a, 89));
        free(a);
        free(b);
    }
    return NGT_PASS;
}

int main(void) {
    if (ngt_open_backends(&g_cpu, &g_cuda, g_cuda_reason, sizeof g_cuda_reason)) return 1;
    NGT_RUN(test_scalar_rules);
    NGT_RUN(test_bad_config);
    NGT_RUN(test_ngd_direction);
    NGT_RUN(test_fisher_metrics);
    NGT_RUN(test_ncg_first_step_is_ngd);
    NGT_RUN(test_rho_models);
    NGT_RUN(test_hf_preconditioner);
    NGT_RUN(test_hf_backtracking);
    NGT_RUN(test_hf_hessian);
    NGT_RUN(test_cpu_vs_cuda);
    ng_backend_free(g_cuda);
    ng_backend_free(g_cpu);
    return ngt_finish();
}
