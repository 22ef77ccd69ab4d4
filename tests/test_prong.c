/* test_prong.c: whitened networks and PRONG (Desjardins et al. 2015) beyond the products (those are
 * in test_net.c against a whitened float64 reference):
 *   - the reparametrisation of Algorithm 1 keeps the network's function (training-mode objective,
 *     inference outputs, canonical parameters) for every activation, with and without batch norm;
 *   - after it, every layer's whitened input has zero mean and identity covariance up to eps on the
 *     samples it was estimated on (also after the layer-by-layer whitened initialisation);
 *   - section 3's claim on a tiny MLP: the exact Fisher's block of a middle layer, assembled densely
 *     from G v products, is better conditioned after whitening;
 *   - the whitening state survives a checkpoint round trip bit for bit;
 *   - PRONG's canonical form (whiten = 2: W trained with the whitened SGD step mapped to W) follows
 *     the whitened coordinates (whiten = 1) step for step: same canonical network after the whitened
 *     initialisation, after SGD steps, and after reparametrisations (every activation, batch norm);
 *     its curvature products are refused;
 *   - a refresh with its eigendecompositions batched (ng_syevd_batched) leaves the network bit-identical
 *     to one that runs them one at a time, on the CPU with two threads;
 *   - bad input refused; CPU and (emulated) CUDA agree. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lapacke.h>
#include <omp.h>

#include "backends.h"
#include "harness.h"
#include "natgrad/backend.h"
#include "natgrad/checkpoint.h"
#include "natgrad/net.h"
#include "natgrad/tensor.h"

static ng_backend *g_cpu, *g_cuda;
static char g_cuda_reason[512];

static uint64_t g_state = 31337;
static int g_whiten = 1; /* the form fix_init builds */
static double urand(void) {
    g_state = g_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_state >> 11) / 9007199254740992.0;
}

typedef struct fix {
    ng_net_config cfg;
    ng_model *net;
    ng_tensor x, xs, y, th;
    void *mem;
    int m, ns, rows;
} fix;

static void fix_free(fix *f) {
    if (f->net) {
        if (f->mem) ng_free(f->net->be, f->mem);
        ng_net_free(f->net);
    }
    memset(f, 0, sizeof *f);
}

/* inputs: correlated, non-centred (a few latent factors mixed, squashed into (0, 1)) */
static void make_inputs(float *x, int d, int rows, int m) {
    int c, i;
    for (c = 0; c < m; c++) {
        double z1 = urand() - 0.5, z2 = urand() - 0.5;
        for (i = 0; i < rows; i++) {
            double v = 0.5 + 0.6 * z1 * cos(i) + 0.4 * z2 * sin(2.0 * i) + 0.3 * (urand() - 0.5);
            x[i + (size_t)rows * c] = i < d ? (float)v : (float)(urand() < 0.5);
        }
    }
}

static ng_status fix_init(fix *f, ng_backend *be, const char *spec, int hidden, int m, int ns, uint64_t seed) {
    float *h;
    size_t np, n;
    memset(f, 0, sizeof *f);
    ng_net_config_default(&f->cfg);
    f->cfg.loss = NG_LOSS_BERNOULLI;
    f->cfg.target = NG_NET_TARGET_INPUT;
    f->cfg.init = NG_INIT_GAUSSIAN;
    f->cfg.init_scale = 0.5f;
    f->cfg.seed = seed;
    f->cfg.whiten = g_whiten;
    NG_TRY(ng_net_parse_spec(spec, hidden, NG_ACT_LOGISTIC, &f->cfg));
    NG_TRY(ng_net_create(be, &f->cfg, &f->net));
    f->rows = ng_net_batch_rows(f->net);
    f->m = m;
    f->ns = ns;
    np = ng_model_size(f->net);
    n = (size_t)f->rows * (m + ns);
    NG_TRY(ng_alloc(be, (n + np + (size_t)f->cfg.dims[f->cfg.n_layers] * m) * sizeof(float), &f->mem));
    f->x = ng_tensor_matrix((float *)f->mem, f->rows, m, f->rows);
    f->xs = ng_tensor_matrix(f->x.data + (size_t)f->rows * m, f->rows, ns, f->rows);
    f->th = ng_tensor_matrix(f->xs.data + (size_t)f->rows * ns, (int)np, 1, (int)np);
    f->y = ng_tensor_matrix(f->th.data + np, f->cfg.dims[f->cfg.n_layers], m, f->cfg.dims[f->cfg.n_layers]);
    h = (float *)malloc(n * sizeof(float));
    make_inputs(h, f->cfg.dims[0], f->rows, m + ns);
    NG_TRY(ng_set(be, f->mem, h, n * sizeof(float)));
    free(h);
    return NG_OK;
}

/* objective (training mode), inference outputs and canonical parameters */
typedef struct snap {
    double obj, err;
    float *y, *th;
} snap;

/* grad: 1 = take the training-mode objective first (it moves the running batch-norm averages),
 * 2 = after the outputs, 0 = not at all */
static ng_status take(fix *f, snap *s, int grad) {
    size_t ny = ng_tensor_count(&f->y), np = ng_model_size(f->net);
    s->y = (float *)malloc(ny * sizeof(float));
    s->th = (float *)malloc(np * sizeof(float));
    if (grad == 1) NG_TRY(ng_model_gradient(f->net, &f->x, NULL));
    if (grad == 1) NG_TRY(ng_net_batch_loss(f->net, &s->obj, &s->err));
    NG_TRY(ng_net_predict(f->net, &f->x, &f->y));
    if (grad == 2) NG_TRY(ng_model_gradient(f->net, &f->x, NULL));
    if (grad == 2) NG_TRY(ng_net_batch_loss(f->net, &s->obj, &s->err));
    NG_TRY(ng_tensor_get(f->net->be, &f->y, s->y));
    NG_TRY(ng_net_canonical(f->net, &f->th));
    return ng_tensor_get(f->net->be, &f->th, s->th);
}
static void snap_free(snap *s) { free(s->y), free(s->th); }

static int preserve_case(ng_backend *be, const char *spec, int hidden) {
    fix f;
    snap a, b;
    int fail = 0, k;
    ng_tensor xs2;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    NGT_OK(fix_init(&f, be, spec, hidden, 40, 60, 3));
    /* move the running batch-norm averages away from their start, and U away from I */
    NGT_OK(ng_model_gradient(f.net, &f.x, NULL));
    NGT_OK(ng_net_whiten_refresh(f.net, &f.xs, 1e-2f, 1, NULL));
    for (k = 0; k < 2 && !fail; k++) {
        /* a: objective (running averages updated), outputs with those averages; b: outputs first
         * (the running mean moved by the reparametrisation), then the objective */
        NGT_OK(take(&f, &a, 1));
        /* fresh statistics on other samples (the last 30 and the batch): the function must stay */
        xs2 = k ? f.x : ng_tensor_cols(&f.xs, 30, 30);
        NGT_OK(ng_net_whiten_refresh(f.net, &xs2, k ? 1e-3f : 0.1f, 1, NULL));
        NGT_OK(take(&f, &b, 2));
        if (fabs(a.obj - b.obj) > 2e-5 * (1.0 + fabs(a.obj))) {
            printf("  %s %s: objective %.9g before, %.9g after the reparametrisation\n", spec, ng_act_name(hidden), a.obj, b.obj);
            fail = 1;
        }
        fail |= ngt_compare("inference outputs", b.y, a.y, ng_tensor_count(&f.y), 2e-5, 2e-4);
        fail |= ngt_compare("canonical parameters", b.th, a.th, ng_model_size(f.net), 5e-5, 5e-4);
        snap_free(&a);
        snap_free(&b);
    }
    fix_free(&f);
    if (fail) printf("  [%s %s %s]\n", be->iface->name, spec, ng_act_name(hidden));
    return fail ? NGT_FAIL : NGT_PASS;
}

static int preserve_all(ng_backend *be) {
    static const int acts[] = {NG_ACT_LOGISTIC, NG_ACT_TANH, NG_ACT_RELU, NG_ACT_LINEAR};
    int a, fail = 0;
    for (a = 0; a < 4; a++) {
        fail |= preserve_case(be, "7-6-5-7", acts[a]) != NGT_PASS;
        fail |= preserve_case(be, "7-6+bn-5+bn-7", acts[a]) != NGT_PASS;
    }
    return fail ? NGT_FAIL : NGT_PASS;
}
static int test_function_preserved_cpu(void) { return preserve_all(g_cpu); }
static int test_function_preserved_cuda(void) {
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    return preserve_all(g_cuda);
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Rows 0..d-1 of A (d + 1, m) are U (a - c): zero mean, covariance diag(lambda / (lambda + eps))
 * (float64), lambda the eigenvalues of the covariance of a = U^-1 (row) + c, here rebuilt from U
 * and c in float64 and decomposed by LAPACK. */
static int check_white(const float *A, int d, int m, const float *UhT, const float *cv, double eps, const char *what) {
    double mu[16], C, U[256], Ui[256], Sig[256], lam[16], diag[16], raw[16];
    lapack_int ipiv[16];
    int i, j, c, k;
    for (i = 0; i < d; i++)
        for (j = 0; j < d; j++) U[i + d * j] = UhT[j + (d + 1) * i], Ui[i + d * j] = U[i + d * j];
    {
        /* Ui = U^-1 by LU */
        double Id[256];
        for (i = 0; i < d * d; i++) Id[i] = 0;
        for (i = 0; i < d; i++) Id[i + d * i] = 1;
        if (LAPACKE_dgesv(LAPACK_COL_MAJOR, d, d, Ui, d, ipiv, Id, d) != 0) return 1;
        memcpy(Ui, Id, sizeof(double) * d * d);
    }
    for (i = 0; i < d * d; i++) Sig[i] = 0;
    for (i = 0; i < d; i++) mu[i] = 0;
    for (c = 0; c < m; c++) {
        for (i = 0; i < d; i++) {
            raw[i] = cv[i];
            for (k = 0; k < d; k++) raw[i] += Ui[i + d * k] * A[k + (size_t)(d + 1) * c];
        }
        for (i = 0; i < d; i++) {
            mu[i] += raw[i] / m;
            for (j = 0; j < d; j++) Sig[i + d * j] += raw[i] * raw[j] / m;
        }
    }
    for (i = 0; i < d; i++)
        for (j = 0; j < d; j++) Sig[i + d * j] -= mu[i] * mu[j];
    if (LAPACKE_dsyev(LAPACK_COL_MAJOR, 'N', 'L', d, Sig, d, lam) != 0) return 1;
    for (i = 0; i < d; i++) lam[i] = lam[i] / (lam[i] + eps);
    for (i = 0; i < d; i++) {
        mu[i] = 0;
        for (c = 0; c < m; c++) mu[i] += A[i + (size_t)(d + 1) * c];
        mu[i] /= m;
        if (fabs(mu[i]) > 1e-4) {
            printf("  %s: mean of whitened unit %d is %g\n", what, i, mu[i]);
            return 1;
        }
    }
    for (i = 0; i < d; i++)
        for (j = 0; j < d; j++) {
            C = 0;
            for (c = 0; c < m; c++) C += (A[i + (size_t)(d + 1) * c] - mu[i]) * (A[j + (size_t)(d + 1) * c] - mu[j]);
            C /= m;
            if (i == j) diag[i] = C;
            else if (fabs(C) > 2e-4) {
                printf("  %s: whitened covariance (%d, %d) = %.6g (0 wanted)\n", what, i, j, C);
                return 1;
            }
        }
    qsort(diag, (size_t)d, sizeof(double), cmp_dbl);
    for (i = 0; i < d; i++)
        if (fabs(diag[i] - lam[i]) > 1e-3 || diag[i] > 1.0 + 1e-4) {
            printf("  %s: whitened variance %.6g, lambda / (lambda + eps) = %.6g\n", what, diag[i], lam[i]);
            return 1;
        }
    return 0;
}

static int white_case(ng_backend *be, int keep) {
    fix f;
    int l, fail = 0;
    float eps = 1e-4f;
    NGT_OK(fix_init(&f, be, "7-6-5-7", NG_ACT_TANH, 200, 1, 11));
    NGT_OK(ng_net_whiten_refresh(f.net, &f.x, eps, keep, NULL));
    NGT_OK(ng_model_gradient(f.net, &f.x, NULL));
    for (l = 0; l < f.cfg.n_layers && !fail; l++) {
        char name[16], what[64];
        ng_tensor a;
        int d = f.cfg.dims[l];
        float *h = (float *)malloc(sizeof(float) * (size_t)(d + 1) * f.m), Uh[16 * 16], cv[16];
        ng_tensor tU, tc;
        snprintf(name, sizeof name, "a%d", l);
        NGT_OK(ng_model_statistic(f.net, name, &a));
        NGT_OK(ng_tensor_get(be, &a, h));
        NGT_OK(ng_net_whiten_state(f.net, l + 1, &tU, &tc));
        NGT_OK(ng_tensor_get(be, &tU, Uh));
        NGT_OK(ng_tensor_get(be, &tc, cv));
        snprintf(what, sizeof what, "%s, %s, input of layer %d", be->iface->name, keep ? "projection" : "whitened init", l + 1);
        fail = check_white(h, d, f.m, Uh, cv, eps, what);
        free(h);
    }
    fix_free(&f);
    return fail ? NGT_FAIL : NGT_PASS;
}
static int test_whitened_identity_cpu(void) { return white_case(g_cpu, 1) || white_case(g_cpu, 0) ? NGT_FAIL : NGT_PASS; }
static int test_whitened_identity_cuda(void) {
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    return white_case(g_cuda, 1) || white_case(g_cuda, 0) ? NGT_FAIL : NGT_PASS;
}

/* The exact Fisher (= Gauss-Newton for the matching loss) block of layer l's [V d], assembled from
 * G v products on unit vectors; its condition number in float64. */
static ng_status fisher_block_cond(fix *f, int l, double *cond, double *offdiag) {
    ng_backend *be = f->net->be;
    size_t np = ng_model_size(f->net), off = 0, i, j;
    int k, dl = f->cfg.dims[l], nb = dl * (f->cfg.dims[l - 1] + 1);
    float *e = (float *)calloc(np, sizeof(float)), *g = (float *)malloc(np * sizeof(float));
    double *F = (double *)malloc(sizeof(double) * nb * nb), *w = (double *)malloc(sizeof(double) * nb), fro = 0, dg = 0;
    ng_tensor v, out;
    void *mem;
    for (k = 1; k < l; k++) off += (size_t)f->cfg.dims[k] * (f->cfg.dims[k - 1] + 1);
    NG_TRY(ng_alloc(be, 2 * np * sizeof(float), &mem));
    v = ng_tensor_matrix((float *)mem, (int)np, 1, (int)np);
    out = ng_tensor_matrix((float *)mem + np, (int)np, 1, (int)np);
    NG_TRY(ng_net_set_batch(f->net, &f->x, NULL));
    for (i = 0; i < (size_t)nb; i++) {
        memset(e, 0, np * sizeof(float));
        e[off + i] = 1.0f;
        NG_TRY(ng_tensor_set(be, &v, e));
        NG_TRY(ng_net_gvp(f->net, &v, &out));
        NG_TRY(ng_tensor_get(be, &out, g));
        for (j = 0; j < (size_t)nb; j++) F[j + nb * i] = g[off + j];
    }
    for (i = 0; i < (size_t)nb; i++)
        for (j = 0; j < (size_t)nb; j++) {
            double s = 0.5 * (F[i + nb * j] + F[j + nb * i]);
            fro += s * s;
            if (i == j) dg += s * s;
        }
    for (i = 0; i < (size_t)nb; i++)
        for (j = 0; j < i; j++) F[i + nb * j] = F[j + nb * i] = 0.5 * (F[i + nb * j] + F[j + nb * i]);
    if (LAPACKE_dsyev(LAPACK_COL_MAJOR, 'N', 'L', nb, F, nb, w) != 0) return ng_error(NG_ERR_NUMERIC, "dsyev failed");
    *cond = w[nb - 1] / (w[0] > 0 ? w[0] : 1e-300);
    *offdiag = sqrt((fro - dg) / fro);
    ng_free(be, mem);
    free(e), free(g), free(F), free(w);
    return NG_OK;
}

/* Section 3: whitening the activations makes the Fisher's layer blocks better conditioned. */
static int test_fisher_conditioning(void) {
    fix f;
    double c0[3], c1[3], o0[3], o1[3];
    int l;
    NGT_OK(fix_init(&f, g_cpu, "7-6-5-7", NG_ACT_TANH, 300, 1, 5));
    for (l = 1; l <= 3; l++) NGT_OK(fisher_block_cond(&f, l, &c0[l - 1], &o0[l - 1]));
    NGT_OK(ng_net_whiten_refresh(f.net, &f.x, 1e-3f, 1, NULL));
    for (l = 1; l <= 3; l++) {
        NGT_OK(fisher_block_cond(&f, l, &c1[l - 1], &o1[l - 1]));
        printf("  layer %d block of the exact Fisher: condition number %.4g before whitening, %.4g after; off-diagonal "
               "share of its Frobenius norm %.3f before, %.3f after\n", l, c0[l - 1], c1[l - 1], o0[l - 1], o1[l - 1]);
    }
    for (l = 1; l <= 3; l++) NGT_CHECK(c1[l - 1] < c0[l - 1], "layer %d: condition number %g after whitening, %g before", l, c1[l - 1], c0[l - 1]);
    /* the hidden layers (inputs whitened across tanh units) gain at least a factor 10 */
    NGT_CHECK(c1[1] < 0.1 * c0[1], "layer 2: condition number only fell from %g to %g", c0[1], c1[1]);
    fix_free(&f);
    return NGT_PASS;
}

static int test_checkpoint_roundtrip(void) {
    fix a, b;
    ng_ckpt *c = NULL, *r = NULL;
    snap sa, sb;
    char path[] = "/tmp/natgrad_test_prong_XXXXXX";
    int fd = mkstemp(path), fail;
    NGT_CHECK(fd >= 0, "no temporary file");
    close(fd);
    NGT_OK(fix_init(&a, g_cpu, "7-6+bn-5-7", NG_ACT_TANH, 30, 50, 2));
    NGT_OK(fix_init(&b, g_cpu, "7-6+bn-5-7", NG_ACT_TANH, 30, 50, 9));
    NGT_OK(ng_model_gradient(a.net, &a.x, NULL));
    NGT_OK(ng_net_whiten_refresh(a.net, &a.xs, 1e-2f, 1, NULL));
    NGT_OK(ng_ckpt_new(&c));
    NGT_OK(ng_ckpt_set_str(c, "model.kind", "net"));
    NGT_OK(ng_model_save(a.net, c));
    NGT_OK(ng_ckpt_write(c, path));
    NGT_OK(ng_ckpt_read(path, 0, &r));
    NGT_OK(ng_model_load(b.net, r, 1));
    NGT_OK(ng_copy(g_cpu, b.x.data, a.x.data, ng_tensor_count(&a.x) * sizeof(float)));
    NGT_OK(take(&a, &sa, 1));
    NGT_OK(take(&b, &sb, 1));
    fail = sa.obj != sb.obj || memcmp(sa.y, sb.y, ng_tensor_count(&a.y) * sizeof(float)) != 0;
    snap_free(&sa), snap_free(&sb);
    NGT_CHECK(!fail, "the reloaded whitened network computes something else");
    /* a checkpoint of an unwhitened network is refused by a whitened one, naming the field */
    {
        ng_net_config cfg = a.cfg;
        ng_model *plain;
        ng_ckpt *c2 = NULL;
        cfg.whiten = 0;
        NGT_OK(ng_net_create(g_cpu, &cfg, &plain));
        NGT_OK(ng_ckpt_new(&c2));
        NGT_OK(ng_model_save(plain, c2));
        NGT_CHECK(ng_model_load(a.net, c2, 0) == NG_ERR_FORMAT && strstr(ng_last_error(), "net.whiten"), "message: %s", ng_last_error());
        ng_ckpt_free(c2);
        ng_net_free(plain);
    }
    ng_ckpt_free(c), ng_ckpt_free(r);
    unlink(path);
    fix_free(&a), fix_free(&b);
    return NGT_PASS;
}

static int test_bad_input(void) {
    fix f;
    ng_net_config cfg;
    ng_model *plain;
    ng_tensor U, c;
    NGT_OK(fix_init(&f, g_cpu, "7-6-7", NG_ACT_TANH, 10, 10, 1));
    NGT_CHECK(ng_net_whiten_refresh(f.net, &f.xs, 0.0f, 1, NULL) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "eps"), "eps 0: %s", ng_last_error());
    NGT_CHECK(ng_net_whiten_state(f.net, 3, &U, &c) == NG_ERR_INVALID_ARG, "layer 3 of 2 accepted");
    cfg = f.cfg;
    cfg.whiten = 0;
    NGT_OK(ng_net_create(g_cpu, &cfg, &plain));
    NGT_CHECK(ng_net_whiten_refresh(plain, &f.xs, 1e-2f, 1, NULL) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "no whitened"), "%s", ng_last_error());
    ng_net_free(plain);
    cfg.whiten = 3;
    NGT_CHECK(ng_net_config_check(&cfg) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "whiten"), "whiten 3: %s", ng_last_error());
    {
        /* NaN in the samples: a numeric error, never a NaN whitening matrix */
        float nan = NAN;
        NGT_OK(ng_set(g_cpu, f.xs.data + 3, &nan, sizeof nan));
        NGT_CHECK(ng_net_whiten_refresh(f.net, &f.xs, 1e-2f, 1, NULL) == NG_ERR_NUMERIC, "NaN samples: %s", ng_last_error());
    }
    ng_clear_error();
    fix_free(&f);
    return NGT_PASS;
}

static int cpu_vs_cuda(int form) {
    fix a, b;
    snap sa, sb;
    int fail;
    g_whiten = form;
    g_state = 555; /* the same data for both */
    NGT_OK(fix_init(&a, g_cpu, "7-6+bn-5-7", NG_ACT_LOGISTIC, 30, 50, 4));
    g_state = 555;
    NGT_OK(fix_init(&b, g_cuda, "7-6+bn-5-7", NG_ACT_LOGISTIC, 30, 50, 4));
    g_whiten = 1;
    NGT_OK(ng_net_whiten_refresh(a.net, &a.xs, 1e-2f, 1, NULL));
    NGT_OK(ng_net_whiten_refresh(b.net, &b.xs, 1e-2f, 1, NULL));
    NGT_OK(take(&a, &sa, 1));
    NGT_OK(take(&b, &sb, 1));
    fail = fabs(sa.obj - sb.obj) > 1e-5 * (1 + fabs(sa.obj));
    fail |= ngt_compare("outputs cpu vs cuda", sb.y, sa.y, ng_tensor_count(&a.y), 1e-5, 1e-4);
    fail |= ngt_compare("canonical parameters cpu vs cuda", sb.th, sa.th, ng_model_size(a.net), 1e-4, 1e-3);
    if (form == 2 && !fail) {
        /* the canonical form's "gradient" (the whitened step mapped to W) */
        size_t np = ng_model_size(a.net);
        float *ga = (float *)malloc(np * sizeof(float)), *gb = (float *)malloc(np * sizeof(float));
        NGT_OK(ng_tensor_get(g_cpu, &a.net->grad_flat, ga));
        NGT_OK(ng_tensor_get(g_cuda, &b.net->grad_flat, gb));
        fail |= ngt_compare("canonical-form step cpu vs cuda", gb, ga, np, 1e-4, 1e-3);
        free(ga), free(gb);
    }
    snap_free(&sa), snap_free(&sb);
    fix_free(&a), fix_free(&b);
    NGT_CHECK(!fail, "CPU and CUDA whitened networks differ (form %d)", form);
    return NGT_PASS;
}
static int test_cpu_vs_cuda(void) {
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    return cpu_vs_cuda(1) || cpu_vs_cuda(2) ? NGT_FAIL : NGT_PASS;
}

/* The canonical form's whitened initialisation: W_l = W0_l U_l and b_l = b0_l - W_l c_l for every
 * layer (U_l, c_l its state afterwards; V = W0, d = b0 kept), checked in float64 on the host. (Not
 * against the whitened coordinates' own initialisation: with V kept, the function depends on the
 * eigenvectors chosen inside nearly degenerate eigenspaces, which rounding differences change.) */
static int canonical_init_case(ng_backend *be, const char *spec, int hidden) {
    fix f;
    int fail = 0, l, i, j, k;
    size_t np;
    float *t0, *t1;
    g_state = 99;
    g_whiten = 2;
    NGT_OK(fix_init(&f, be, spec, hidden, 40, 60, 8));
    g_whiten = 1;
    np = ng_model_size(f.net);
    t0 = (float *)malloc(np * sizeof(float));
    t1 = (float *)malloc(np * sizeof(float));
    NGT_OK(ng_tensor_get(be, &f.net->param_flat, t0));
    NGT_OK(ng_net_whiten_refresh(f.net, &f.xs, 1e-2f, 0, NULL));
    NGT_OK(ng_tensor_get(be, &f.net->param_flat, t1));
    for (l = 1, k = 0; l <= f.cfg.n_layers; l++) {
        int d = f.cfg.dims[l - 1], dl = f.cfg.dims[l], bn = f.cfg.bn[l - 1];
        ng_tensor tU, tc;
        float *Uh = (float *)malloc(sizeof(float) * (size_t)(d + 1) * d), *cv = (float *)malloc(sizeof(float) * d);
        NGT_OK(ng_net_whiten_state(f.net, l, &tU, &tc));
        NGT_OK(ng_tensor_get(be, &tU, Uh));
        NGT_OK(ng_tensor_get(be, &tc, cv));
        for (i = 0; i < dl; i++) {
            double bsum = 0.0;
            for (j = 0; j < d; j++) {
                double w = 0.0;
                int q;
                for (q = 0; q < d; q++) w += (double)t0[k + i + (size_t)dl * q] * Uh[j + (size_t)(d + 1) * q]; /* W0 U: U[q][j] = UhT[j][q]... */
                if (fabs(w - t1[k + i + (size_t)dl * j]) > 1e-4 * (1.0 + fabs(w))) {
                    if (fail < 3) printf("  %s: layer %d W[%d][%d] = %.7g, W0 U = %.7g\n", spec, l, i, j, t1[k + i + (size_t)dl * j], w);
                    fail++;
                }
                bsum += (double)t1[k + i + (size_t)dl * j] * cv[j];
            }
            if (!bn && fabs(t0[k + (size_t)dl * d + i] - bsum - t1[k + (size_t)dl * d + i]) > 1e-4 * (1.0 + fabs(bsum))) {
                if (fail < 3) printf("  %s: layer %d b[%d] = %.7g, b0 - W c = %.7g\n", spec, l, i, t1[k + (size_t)dl * d + i], t0[k + (size_t)dl * d + i] - bsum);
                fail++;
            }
        }
        k += dl * (d + (bn ? 0 : 1)) + (bn ? 2 * dl : 0);
        free(Uh), free(cv);
    }
    if ((size_t)k != np) printf("  %s: parameter layout: %d of %zu counted\n", spec, k, np), fail++;
    free(t0), free(t1);
    fix_free(&f);
    return fail ? NGT_FAIL : NGT_PASS;
}

/* The canonical form against the whitened coordinates: both from the same network and samples,
 * a projection refresh, then rounds of (gradient, SGD step theta -= lr g) and a projection
 * refresh every second round. SGD on V with U fixed moves W = V U by -lr g_V U = -lr D (a - c)^T U^T U, which is the
 * canonical form's step; a refresh keeps both functions. Compared: canonical parameters (and the
 * training-mode objective, and without batch norm the inference outputs) after each stage. */
static int canonical_case(ng_backend *be, const char *spec, int hidden) {
    fix a, b;
    snap sa, sb;
    int fail = 0, k, bn = strchr(spec, '+') != NULL;
    size_t np;
    const float lr = 0.05f;
    memset(&sa, 0, sizeof sa);
    memset(&sb, 0, sizeof sb);
    g_state = 777;
    g_whiten = 1;
    NGT_OK(fix_init(&a, be, spec, hidden, 40, 60, 6));
    g_state = 777;
    g_whiten = 2;
    NGT_OK(fix_init(&b, be, spec, hidden, 40, 60, 6));
    g_whiten = 1;
    np = ng_model_size(a.net);
    NGT_OK(ng_net_whiten_refresh(a.net, &a.xs, 1e-2f, 1, NULL));
    NGT_OK(ng_net_whiten_refresh(b.net, &b.xs, 1e-2f, 1, NULL));
    for (k = 0; k < 4 && !fail; k++) {
        char what[96];
        NGT_OK(take(&a, &sa, 1));
        NGT_OK(take(&b, &sb, 1));
        snprintf(what, sizeof what, "%s %s stage %d: canonical parameters", spec, ng_act_name(hidden), k);
        fail |= ngt_compare(what, sb.th, sa.th, np, 2e-4, 2e-3);
        if (!bn) {
            snprintf(what, sizeof what, "%s %s stage %d: inference outputs", spec, ng_act_name(hidden), k);
            fail |= ngt_compare(what, sb.y, sa.y, ng_tensor_count(&a.y), 2e-5, 2e-4);
        }
        if (fabs(sa.obj - sb.obj) > 2e-5 * (1.0 + fabs(sa.obj))) {
            printf("  %s %s stage %d: objective %.9g (whitened coordinates), %.9g (canonical)\n", spec, ng_act_name(hidden), k, sa.obj, sb.obj);
            fail = 1;
        }
        snap_free(&sa);
        snap_free(&sb);
        /* take() left each network's gradient of the batch: one SGD step */
        NGT_OK(ng_axpby(be, np, -lr, a.net->grad_flat.data, 1.0f, a.net->param_flat.data));
        NGT_OK(ng_axpby(be, np, -lr, b.net->grad_flat.data, 1.0f, b.net->param_flat.data));
        if (k % 2 == 1) {
            ng_tensor xs2 = ng_tensor_cols(&a.xs, 10, 50), xs2b = ng_tensor_cols(&b.xs, 10, 50);
            NGT_OK(ng_net_whiten_refresh(a.net, &xs2, 1e-3f, 1, NULL));
            NGT_OK(ng_net_whiten_refresh(b.net, &xs2b, 1e-3f, 1, NULL));
        }
    }
    {
        /* the canonical form has no curvature products, and its whitened initialisation needs a new network */
        ng_tensor v = ng_tensor_matrix(b.th.data, (int)np, 1, (int)np);
        NGT_OK(ng_model_gradient(b.net, &b.x, NULL));
        fail |= ng_net_gvp(b.net, &v, &v) != NG_ERR_INVALID_ARG || !strstr(ng_last_error(), "canonical form");
        fail |= ng_net_hvp(b.net, &v, &v) != NG_ERR_INVALID_ARG;
        fail |= ng_net_whiten_refresh(b.net, &b.xs, 1e-2f, 0, NULL) != NG_ERR_INVALID_ARG;
        ng_clear_error();
    }
    fix_free(&a), fix_free(&b);
    if (fail) printf("  [%s %s %s]\n", be->iface->name, spec, ng_act_name(hidden));
    return fail ? NGT_FAIL : NGT_PASS;
}
static int canonical_all(ng_backend *be) {
    static const int acts[] = {NG_ACT_LOGISTIC, NG_ACT_TANH, NG_ACT_RELU};
    int i, fail = 0;
    for (i = 0; i < 3; i++) {
        fail |= canonical_case(be, "7-6-5-7", acts[i]) != NGT_PASS;
        fail |= canonical_case(be, "7-6+bn-5-7", acts[i]) != NGT_PASS;
        fail |= canonical_init_case(be, "7-6-5-7", acts[i]) != NGT_PASS;
        fail |= canonical_init_case(be, "7-6+bn-5-7", acts[i]) != NGT_PASS;
    }
    return fail ? NGT_FAIL : NGT_PASS;
}
/* A refresh sends every layer's eigendecomposition to ng_syevd_batched. On the CPU that must leave
 * the network bit-identical to the one-at-a-time path: the same network on a copy of the CPU backend
 * whose table lacks the batched slot (the wrapper then runs the problems in turn), both forms, two
 * threads (so the batched problems really run concurrently), a refresh after the whitened
 * initialisation and a second one on other samples. */
static int batched_case(int form) {
    struct ng_backend_i fi = *g_cpu->iface;
    ng_backend seq = *g_cpu;
    fix a, b;
    snap sa, sb;
    ng_tensor xa, xb;
    int fail, l, L;
    fi.syevd_batched = NULL;
    seq.iface = &fi;
    g_whiten = form;
    g_state = 777;
    NGT_OK(fix_init(&a, g_cpu, "9-8-7-6-9", NG_ACT_LOGISTIC, 30, 60, 5));
    g_state = 777;
    NGT_OK(fix_init(&b, &seq, "9-8-7-6-9", NG_ACT_LOGISTIC, 30, 60, 5));
    g_whiten = 1;
    NGT_OK(ng_net_whiten_refresh(a.net, &a.xs, 1e-2f, 0, NULL));
    NGT_OK(ng_net_whiten_refresh(b.net, &b.xs, 1e-2f, 0, NULL));
    NGT_OK(ng_net_whiten_refresh(a.net, &a.xs, 1e-2f, 1, NULL));
    NGT_OK(ng_net_whiten_refresh(b.net, &b.xs, 1e-2f, 1, NULL));
    xa = ng_tensor_matrix(a.xs.data, a.rows, 30, a.rows); /* the first 30 samples only */
    xb = ng_tensor_matrix(b.xs.data, b.rows, 30, b.rows);
    NGT_OK(ng_net_whiten_refresh(a.net, &xa, 1e-3f, 1, NULL));
    NGT_OK(ng_net_whiten_refresh(b.net, &xb, 1e-3f, 1, NULL));
    NGT_OK(take(&a, &sa, 0));
    NGT_OK(take(&b, &sb, 0));
    fail = memcmp(sa.th, sb.th, ng_model_size(a.net) * sizeof(float)) != 0;
    fail |= memcmp(sa.y, sb.y, ng_tensor_count(&a.y) * sizeof(float)) != 0;
    L = a.cfg.n_layers;
    for (l = 1; l <= L && !fail; l++) {
        ng_tensor ua, ca, ub, cb;
        size_t nu, nc;
        float *h;
        NGT_OK(ng_net_whiten_state(a.net, l, &ua, &ca));
        NGT_OK(ng_net_whiten_state(b.net, l, &ub, &cb));
        nu = ng_tensor_count(&ua);
        nc = ng_tensor_count(&ca);
        h = (float *)malloc(2 * (nu + nc) * sizeof(float));
        NGT_OK(ng_tensor_get(g_cpu, &ua, h));
        NGT_OK(ng_tensor_get(g_cpu, &ca, h + nu));
        NGT_OK(ng_tensor_get(g_cpu, &ub, h + nu + nc));
        NGT_OK(ng_tensor_get(g_cpu, &cb, h + 2 * nu + nc));
        fail |= memcmp(h, h + nu + nc, (nu + nc) * sizeof(float)) != 0;
        if (fail) printf("  form %d: layer %d's whitening state differs between the batched and the one-at-a-time refresh\n", form, l);
        free(h);
    }
    if (fail) printf("  form %d: the batched refresh is not bit-identical to the one-at-a-time refresh\n", form);
    snap_free(&sa);
    snap_free(&sb);
    fix_free(&a);
    fix_free(&b);
    return fail ? NGT_FAIL : NGT_PASS;
}

static int test_batched_refresh_cpu(void) {
    int r, before = omp_get_max_threads();
    ng_cpu_set_threads(2);
    r = batched_case(1) || batched_case(2) ? NGT_FAIL : NGT_PASS;
    ng_cpu_set_threads(before);
    return r;
}

static int test_canonical_form_cpu(void) { return canonical_all(g_cpu); }
static int test_canonical_form_cuda(void) {
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    return canonical_all(g_cuda);
}

int main(void) {
    if (ngt_open_backends(&g_cpu, &g_cuda, g_cuda_reason, sizeof g_cuda_reason)) return 1;
    NGT_RUN(test_function_preserved_cpu);
    NGT_RUN(test_function_preserved_cuda);
    NGT_RUN(test_whitened_identity_cpu);
    NGT_RUN(test_whitened_identity_cuda);
    NGT_RUN(test_fisher_conditioning);
    NGT_RUN(test_checkpoint_roundtrip);
    NGT_RUN(test_canonical_form_cpu);
    NGT_RUN(test_batched_refresh_cpu);
    NGT_RUN(test_canonical_form_cuda);
    NGT_RUN(test_bad_input);
    NGT_RUN(test_cpu_vs_cuda);
    ng_backend_free(g_cuda);
    ng_backend_free(g_cpu);
    return ngt_finish();
}
