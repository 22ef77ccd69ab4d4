/* test_cnn_rop.c: the curvature products of convolutional classifiers (natgrad/cnn.h: J v, G v, F v)
 * against the float64 reference of tests/cnn_ref.h: the forward pass to the logits (conv with stride and
 * padding, max / average pooling, activations, batch norm over channels in training mode, dense,
 * the 1x1 whitening convolution) written again from the definitions; J v against its central
 * differences along v; G v against (1/m) sum_i J_i^T H_i J_i v with J assembled column by column
 * from central differences and H_i = diag(y_i) - y_i y_i^T from the reference's softmax; the
 * empirical and sampled Fisher against the same sum with d_i d_i^T (d = y - t) for the batch's
 * targets and for the targets the sampler draws; u^T G v = v^T G u and v^T G v >= 0; chunked
 * batches equal one chunk; bad input; the CPU against the (emulated) CUDA backend. Each layer kind
 * is checked alone (after a conv, so that a perturbation reaches it) and in stacks. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends.h"
#include "cnn_ref.h"
#include "harness.h"
#include "natgrad/backend.h"
#include "natgrad/cnn.h"
#include "natgrad/net.h"
#include "natgrad/precond.h"
#include "natgrad/rng.h"
#include "natgrad/tnewton.h"

static ng_backend *g_cpu, *g_cuda;
static char g_cuda_reason[512];

/* ---- the float64 reference ---------------------------------------------------------------- */

static void ref_logits(const ref *r, const double *theta, double *zout) { ref_logits_run(r, theta, NULL, zout); }

/* Central difference of the logits along direction v (h = 1e-5 in float64: truncation ~h^2 = 1e-10
 * relative, rounding ~1e-16 / h = 1e-11). */
static void ref_jvp(const ref *r, const double *theta, const double *v, size_t np, double *out) {
    const double h = 1e-5;
    const size_t nz = (size_t)r->classes * r->m;
    double *t = (double *)calloc(np, sizeof(double)), *up = (double *)calloc(nz, sizeof(double));
    size_t i;
    for (i = 0; i < np; i++) t[i] = theta[i] + h * v[i];
    ref_logits(r, t, up);
    for (i = 0; i < np; i++) t[i] = theta[i] - h * v[i];
    ref_logits(r, t, out);
    for (i = 0; i < nz; i++) out[i] = (up[i] - out[i]) / (2.0 * h);
    free(t);
    free(up);
}

/* J (classes m, np) column by column: column j = the central difference along e_j. */
static double *ref_jacobian(const ref *r, const double *theta, size_t np) {
    const size_t nz = (size_t)r->classes * r->m;
    double *J = (double *)malloc(nz * np * sizeof(double)), *e = (double *)calloc(np, sizeof(double));
    size_t j;
    for (j = 0; j < np; j++) {
        e[j] = 1.0;
        ref_jvp(r, theta, e, np, J + nz * j);
        e[j] = 0.0;
    }
    free(e);
    return J;
}

/* out = (1/m) sum_i J_i^T M_i J_i v with M_i = diag(y_i) - y_i y_i^T (t == NULL: the Gauss-Newton
 * matrix) or M_i = d_i d_i^T, d_i = y_i - t_i (the Fisher with targets t (classes, m), ld ldt). */
static void ref_curv(const ref *r, const double *theta, const double *J, size_t np, const double *t, int ldt, const double *v,
                     double *out) {
    const int C = r->classes, m = r->m;
    const size_t nz = (size_t)C * m;
    double *z = (double *)malloc(nz * sizeof(double)), *jv = (double *)calloc(nz, sizeof(double));
    double *hjv = (double *)calloc(nz, sizeof(double));
    size_t i, j;
    int b, k;
    ref_logits(r, theta, z);
    for (j = 0; j < np; j++)
        for (i = 0; i < nz; i++) jv[i] += J[i + nz * j] * v[j];
    for (b = 0; b < m; b++) {
        double y[16], mx = z[(size_t)C * b], s = 0.0, dot = 0.0;
        for (k = 0; k < C; k++) mx = z[k + (size_t)C * b] > mx ? z[k + (size_t)C * b] : mx;
        for (k = 0; k < C; k++) s += (y[k] = exp(z[k + (size_t)C * b] - mx));
        for (k = 0; k < C; k++) y[k] /= s;
        if (!t) {
            for (k = 0; k < C; k++) dot += y[k] * jv[k + (size_t)C * b];
            for (k = 0; k < C; k++) hjv[k + (size_t)C * b] = y[k] * (jv[k + (size_t)C * b] - dot);
        } else {
            for (k = 0; k < C; k++) dot += (y[k] - t[k + (size_t)ldt * b]) * jv[k + (size_t)C * b];
            for (k = 0; k < C; k++) hjv[k + (size_t)C * b] = (y[k] - t[k + (size_t)ldt * b]) * dot;
        }
    }
    for (j = 0; j < np; j++) {
        double acc = 0.0;
        for (i = 0; i < nz; i++) acc += J[i + nz * j] * hjv[i];
        out[j] = acc / m;
    }
    free(z);
    free(jv);
    free(hjv);
}

static double ref_objective(const ref *r, const double *theta) { return ref_objective_run(r, theta, NULL); }

/* H v by central differences of the float64 gradient along v, the gradient itself by central
 * differences of the objective: (g(theta + h v) - g(theta - h v)) / 2h with g_i = (f(. + h2 e_i) -
 * f(. - h2 e_i)) / 2 h2, h = h2 = 1e-5: truncation ~1e-10, rounding ~1e-16 / (h h2) = 1e-6. The steps
 * are also small enough that no relu or max-pooling kink lies within them for these nets and seeds
 * (with 1e-4 one relu / argmax switch fell inside on the last stack, and the difference of gradients
 * there is not the Hessian). */
static void ref_hvp(const ref *r, const double *theta, const double *v, size_t np, double *out) {
    const double h = 1e-5, h2 = 1e-5;
    double *t = (double *)calloc(np, sizeof(double));
    size_t i, j;
    int sgn;
    for (j = 0; j < np; j++) out[j] = 0.0;
    for (sgn = -1; sgn <= 1; sgn += 2) {
        for (i = 0; i < np; i++) t[i] = theta[i] + sgn * h * v[i];
        for (j = 0; j < np; j++) {
            const double t0 = t[j];
            double up, dn;
            t[j] = t0 + h2;
            up = ref_objective(r, t);
            t[j] = t0 - h2;
            dn = ref_objective(r, t);
            t[j] = t0;
            out[j] += sgn * (up - dn) / (2.0 * h2) / (2.0 * h);
        }
    }
    free(t);
}

/* ---- fixtures ----------------------------------------------------------------------------- */

typedef struct fix {
    ng_cnn_config cfg;
    ng_model *m;
    ng_backend *be;
    ng_tensor xd;            /* device batch (rows, m) */
    ng_tensor v, u, o1, o2;  /* device vectors (np), and (classes, m) in jv */
    ng_tensor jv;
    float *x32;
    double *x64, *theta;
    size_t np;
    int ncase, rows;
    ref r;
} fix;

static void fix_free(fix *f) {
    int l;
    if (f->xd.ptr) ng_free(f->be, f->xd.ptr); /* the vectors share its allocation */
    ng_cnn_free(f->m);
    free(f->x32);
    free(f->x64);
    free(f->theta);
    for (l = 0; l <= NG_CNN_MAX_LAYERS; l++) free(f->r.UT[l]), free(f->r.mu[l]);
    memset(f, 0, sizeof *f);
}

/* The model of spec on 2 x 7 x 7 inputs, m random cases with one-hot targets; for whitening nets a
 * whitening of the batch first (U, mu non-trivial, copied into the reference); then one gradient
 * (the current batch of the products). Device vectors: v, u, o1, o2 (np each) and jv (classes, m). */
static ng_status fix_init(fix *f, ng_backend *be, const char *spec, int m, int chunk, uint64_t seed) {
    int l, b, i, has_w = 0;
    const uint64_t key = ng_rng_stream_key(seed, NG_RNG_TEST);
    memset(f, 0, sizeof *f);
    ng_cnn_config_default(&f->cfg);
    f->cfg.c = 2, f->cfg.h = 7, f->cfg.w = 7;
    f->cfg.chunk = chunk;
    f->cfg.seed = seed;
    NG_TRY(ng_cnn_parse_spec(spec, &f->cfg));
    f->be = be;
    NG_TRY(ng_cnn_create(be, &f->cfg, &f->m));
    f->rows = ng_cnn_batch_rows(f->m);
    f->ncase = m;
    f->np = ng_model_size(f->m);
    f->x32 = (float *)malloc((size_t)f->rows * m * sizeof(float));
    f->x64 = (double *)malloc((size_t)f->rows * m * sizeof(double));
    {
        const int s0 = 2 * 7 * 7, C = ng_cnn_classes(&f->cfg);
        for (b = 0; b < m; b++) {
            int cls = (int)(ng_rng_uniform(key, 1, (uint64_t)b) * C) % C;
            for (i = 0; i < s0; i++) f->x32[i + (size_t)f->rows * b] = (float)(2.0 * ng_rng_uniform(key, 0, i + (uint64_t)s0 * b) - 1.0);
            for (i = 0; i < C; i++) f->x32[s0 + i + (size_t)f->rows * b] = i == cls ? 1.0f : 0.0f;
        }
    }
    for (i = 0; i < f->rows * m; i++) f->x64[i] = f->x32[i];
    {
        const size_t C = (size_t)ng_cnn_classes(&f->cfg);
        float *base;
        NG_TRY(ng_alloc(be, ((size_t)f->rows * m + 4 * f->np + C * m) * sizeof(float), &f->xd.ptr));
        base = f->xd.data;
        f->xd = ng_tensor_matrix(base, f->rows, m, f->rows);
        f->v = ng_tensor_matrix(base + (size_t)f->rows * m, (int)f->np, 1, (int)f->np);
        f->u = ng_tensor_matrix(f->v.data + f->np, (int)f->np, 1, (int)f->np);
        f->o1 = ng_tensor_matrix(f->u.data + f->np, (int)f->np, 1, (int)f->np);
        f->o2 = ng_tensor_matrix(f->o1.data + f->np, (int)f->np, 1, (int)f->np);
        f->jv = ng_tensor_matrix(f->o2.data + f->np, (int)C, m, (int)C);
    }
    NG_TRY(ng_tensor_set(be, &f->xd, f->x32));
    ref_bind(&f->r, &f->cfg, f->m, m, f->rows, f->x64);
    for (l = 1; l <= f->cfg.n_layers; l++) has_w |= f->cfg.layer[l - 1].kind == NG_CNN_WHITEN;
    if (has_w) NG_TRY(ng_cnn_whiten(f->m, &f->xd, m));
    NG_TRY(ref_load_whiten(&f->r, be, f->m));
    NG_TRY(ng_model_gradient(f->m, &f->xd, NULL));
    {
        float *p = (float *)malloc(f->np * sizeof(float));
        size_t j;
        NG_TRY(ng_tensor_get(be, &f->m->param_flat, p));
        f->theta = (double *)malloc(f->np * sizeof(double));
        for (j = 0; j < f->np; j++) f->theta[j] = p[j];
        free(p);
    }
    return NG_OK;
}

/* A random direction (uniform in [-1, 1], seed) into host h (float, exactly representable) and the
 * device vector t. */
static ng_status rand_vec(fix *f, uint64_t seed, float *h, ng_tensor *t) {
    const uint64_t key = ng_rng_stream_key(seed, NG_RNG_TEST);
    size_t j;
    for (j = 0; j < f->np; j++) h[j] = (float)(2.0 * ng_rng_uniform(key, 7, j) - 1.0);
    return ng_tensor_set(f->be, t, h);
}

/* max |a - b| - rel |b| over n, with the index of the worst and max |b| */
static double excess(const float *a, const double *b, size_t n, double rel, size_t *at, double *bmax) {
    double worst = 0.0;
    size_t i;
    *at = 0;
    *bmax = 0.0;
    for (i = 0; i < n; i++) {
        const double e = fabs((double)a[i] - b[i]) - rel * fabs(b[i]);
        if (fabs(b[i]) > *bmax) *bmax = fabs(b[i]);
        if (e > worst) worst = e, *at = i;
    }
    return worst;
}

/* max |a - b| / max |b| (what the printed lines report) */
static double relerr(const float *a, const double *b, size_t n) {
    double d = 0.0, big = 0.0;
    size_t i;
    for (i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        big = fmax(big, fabs(b[i]));
    }
    return big > 0.0 ? d / big : d;
}

/* ---- tests -------------------------------------------------------------------------------- */

/* Each layer kind alone (after a conv, so that R{x} is not zero where it acts; batch norm also
 * first, where only its own parameters move) and stacks of every kind. */
static const char *const layer_nets[] = {
    "c3k3s2p1-d3",   /* conv: stride 2, padding 1 */
    "c3k2p0-d3",     /* conv: even window, no padding */
    "c3k3-mp2-d3",   /* max pooling */
    "c3k3-mp3s2-d3", /* overlapping max pooling windows */
    "c3k3-ap2-d3",   /* average pooling */
    "c3k3-relu-d3", "c3k3-tanh-d3", "c3k3-logistic-d3",
    "c3k3-bn-d3",    /* batch norm over channels: R of the batch mean and variance */
    "bn-d3",         /* batch norm on the input: only gamma, beta move */
    "c3k3-w-d3",     /* whitening (U, mu from the batch) */
    "d5-bn-d3",      /* batch norm over dense units */
    "d3",            /* dense alone */
};
static const char *const stacks[] = {
    "c3k3-bn-relu-mp2-c4k2p0-tanh-ap2-d5-logistic-bn-d3",
    "c3k3s2p1-w-c4k2p0-relu-mp2s1-d3",
    "c3k3-bn-relu-w-c4k2p0-bn-relu-mp2s1-d3",
};

/* J v of the model (float32) against the central differences of the float64 logits along v:
 * |Jv - fd| <= 1e-5 max |fd| + 1e-5 |fd| (float32 rounding of sums over up to a few hundred terms,
 * amplified by batch norm's rstd: measured <= 8e-7 of the maximum; the differences are accurate to
 * ~1e-10). Two directions. */
static int jvp_check(ng_backend *be, const char *spec, int chunk, double *worst_out) {
    fix f;
    const int m = 5;
    float *hv, *jv;
    double *want;
    double worst = 0.0;
    int rep;
    NGT_OK(fix_init(&f, be, spec, m, chunk, 11));
    hv = (float *)malloc(f.np * sizeof(float));
    jv = (float *)malloc((size_t)f.r.classes * m * sizeof(float));
    want = (double *)malloc((size_t)f.r.classes * m * sizeof(double));
    for (rep = 0; rep < 2; rep++) {
        double dv[4096], bmax, e;
        size_t j, at;
        NGT_CHECK(f.np <= 4096, "%zu parameters", f.np);
        NGT_OK(rand_vec(&f, 100 + (uint64_t)rep, hv, &f.v));
        for (j = 0; j < f.np; j++) dv[j] = hv[j];
        NGT_OK(ng_cnn_jvp(f.m, &f.v, &f.jv));
        NGT_OK(ng_tensor_get(be, &f.jv, jv));
        ref_jvp(&f.r, f.theta, dv, f.np, want);
        e = excess(jv, want, (size_t)f.r.classes * m, 1e-5, &at, &bmax);
        NGT_CHECK(bmax > 1e-3, "%s: J v vanishes (max %.3g): the check would be empty", spec, bmax);
        worst = fmax(worst, relerr(jv, want, (size_t)f.r.classes * m));
        NGT_CHECK(e <= 1e-5 * bmax, "%s (%s): J v[%zu] = %.9g, central difference %.9g (max %.3g)", spec, be->iface->name, at,
                  (double)jv[at], want[at], bmax);
    }
    free(hv);
    free(jv);
    free(want);
    fix_free(&f);
    *worst_out = worst;
    return NGT_PASS;
}

static int jvp_all(ng_backend *be) {
    int i;
    for (i = 0; i < (int)(sizeof layer_nets / sizeof layer_nets[0]); i++) {
        double w;
        if (jvp_check(be, layer_nets[i], 64, &w) != NGT_PASS) return NGT_FAIL;
        printf("  J v %-18s (%s): max |J v - central difference| = %.2g of max |J v|\n", layer_nets[i], be->iface->name, w);
    }
    for (i = 0; i < (int)(sizeof stacks / sizeof stacks[0]); i++) {
        double w;
        if (jvp_check(be, stacks[i], 64, &w) != NGT_PASS) return NGT_FAIL;
        printf("  J v %s (%s): max |J v - central difference| = %.2g of max |J v|\n", stacks[i], be->iface->name, w);
    }
    return NGT_PASS;
}

static int test_jvp_cpu(void) { return jvp_all(g_cpu); }

/* G v against (1/m) sum_i J_i^T H_i J_i v (float64, J from central differences column by column),
 * F v exact = G v exactly (the same computation), the empirical Fisher against (1/m) sum_i J_i^T
 * d_i d_i^T J_i v with the batch's targets; tolerance 2e-5 max |ref| + 1e-4 |ref| (float32 through the
 * R-forward and backward passes: measured <= 1.2e-6 of the maximum). */
static int gvp_check(ng_backend *be, const char *spec) {
    fix f;
    const int m = 5;
    float *hv, *g, *g2;
    double *dv, *want, *J, *t, bmax, e;
    size_t j, at;
    int b, k;
    NGT_OK(fix_init(&f, be, spec, m, 64, 12));
    hv = (float *)malloc(f.np * sizeof(float));
    g = (float *)malloc(f.np * sizeof(float));
    g2 = (float *)malloc(f.np * sizeof(float));
    dv = (double *)malloc(f.np * sizeof(double));
    want = (double *)malloc(f.np * sizeof(double));
    t = (double *)malloc((size_t)f.r.classes * m * sizeof(double));
    J = ref_jacobian(&f.r, f.theta, f.np);
    NGT_OK(rand_vec(&f, 200, hv, &f.v));
    for (j = 0; j < f.np; j++) dv[j] = hv[j];
    NGT_OK(ng_cnn_gvp(f.m, &f.v, &f.o1));
    NGT_OK(ng_tensor_get(be, &f.o1, g));
    ref_curv(&f.r, f.theta, J, f.np, NULL, 0, dv, want);
    e = excess(g, want, f.np, 1e-4, &at, &bmax);
    NGT_CHECK(bmax > 1e-4, "%s: G v vanishes (max %.3g)", spec, bmax);
    NGT_CHECK(e <= 2e-5 * bmax, "%s (%s): G v[%zu] = %.9g, J^T H J v %.9g (max %.3g)", spec, be->iface->name, at, (double)g[at],
              want[at], bmax);
    printf("  G v %s (%s): %zu parameters, max |G v - J^T H J v| = %.2g of max %.3g\n", spec, be->iface->name, f.np,
           relerr(g, want, f.np), bmax);
    /* the model slot and the exact Fisher are G v */
    NGT_OK(ng_model_fvp(f.m, &f.v, &f.o2));
    NGT_OK(ng_tensor_get(be, &f.o2, g2));
    NGT_CHECK(memcmp(g, g2, f.np * sizeof(float)) == 0, "%s: exact F v differs from G v", spec);
    NGT_OK(ng_model_gnvp(f.m, &f.v, &f.o2));
    NGT_OK(ng_tensor_get(be, &f.o2, g2));
    NGT_CHECK(memcmp(g, g2, f.np * sizeof(float)) == 0, "%s: the gnvp slot differs from ng_cnn_gvp", spec);
    /* empirical Fisher */
    for (b = 0; b < m; b++)
        for (k = 0; k < f.r.classes; k++) t[k + (size_t)f.r.classes * b] = f.x64[2 * 7 * 7 + k + (size_t)f.rows * b];
    NGT_OK(ng_cnn_fvp(f.m, NG_FISHER_EMPIRICAL, 1, 0, 0, &f.v, &f.o1));
    NGT_OK(ng_tensor_get(be, &f.o1, g));
    ref_curv(&f.r, f.theta, J, f.np, t, f.r.classes, dv, want);
    e = excess(g, want, f.np, 1e-4, &at, &bmax);
    NGT_CHECK(bmax > 1e-4, "%s: empirical F v vanishes (max %.3g)", spec, bmax);
    NGT_CHECK(e <= 2e-5 * bmax, "%s (%s): empirical F v[%zu] = %.9g, float64 %.9g (max %.3g)", spec, be->iface->name, at,
              (double)g[at], want[at], bmax);
    free(hv);
    free(g);
    free(g2);
    free(dv);
    free(want);
    free(t);
    free(J);
    fix_free(&f);
    return NGT_PASS;
}

static int test_gvp_cpu(void) {
    static const char *const nets[] = {"c3k3s2p1-d3", "c3k3-mp2-d3", "c3k3-bn-d3", "c3k3-w-d3"};
    int i;
    for (i = 0; i < (int)(sizeof nets / sizeof nets[0]); i++)
        if (gvp_check(g_cpu, nets[i]) != NGT_PASS) return NGT_FAIL;
    for (i = 0; i < (int)(sizeof stacks / sizeof stacks[0]); i++)
        if (gvp_check(g_cpu, stacks[i]) != NGT_PASS) return NGT_FAIL;
    return NGT_PASS;
}

/* The sampled Fisher: with S = 3 draws per case, F v = (1/(m S)) sum J_i^T d_i d_i^T J_i v for the
 * targets the sampler draws; the test draws the same targets with the sample_targets op (same
 * stream, step + s, Philox index = the case) from the model's outputs (a net without batch norm,
 * so ng_cnn_predict's inference-mode outputs are the training-mode ones), reads them back, checks
 * they are one-hot, and forms the float64 sum. */
static int test_fvp_sampled(void) {
    fix f;
    const int m = 5, S = 3, C = 3;
    const uint64_t key = ng_rng_stream_key(3, NG_RNG_FISHER_TARGETS), step = 40;
    float *hv, *g, *th;
    double *dv, *want, *acc, *J, *t, bmax, e;
    ng_tensor y, tt;
    size_t j, at;
    int s, b, k;
    NGT_OK(fix_init(&f, g_cpu, stacks[1], m, 64, 13));
    hv = (float *)malloc(f.np * sizeof(float));
    g = (float *)malloc(f.np * sizeof(float));
    th = (float *)malloc((size_t)C * m * sizeof(float));
    dv = (double *)malloc(f.np * sizeof(double));
    want = (double *)malloc(f.np * sizeof(double));
    acc = (double *)calloc(f.np, sizeof(double));
    t = (double *)malloc((size_t)C * m * sizeof(double));
    J = ref_jacobian(&f.r, f.theta, f.np);
    NGT_OK(ng_alloc(g_cpu, (size_t)2 * C * m * sizeof(float), &y.ptr));
    y = ng_tensor_matrix(y.data, C, m, C);
    tt = ng_tensor_matrix(y.data + (size_t)C * m, C, m, C);
    NGT_OK(ng_cnn_predict(f.m, &f.xd, &y));
    NGT_OK(rand_vec(&f, 300, hv, &f.v));
    for (j = 0; j < f.np; j++) dv[j] = hv[j];
    for (s = 0; s < S; s++) {
        ng_op_args a = {.op = NG_OP_SAMPLE_TARGETS};
        a.sample_targets.rows = C, a.sample_targets.cols = m, a.sample_targets.loss = NG_LOSS_CATEGORICAL;
        a.sample_targets.y = y.data, a.sample_targets.ldy = C, a.sample_targets.t = tt.data, a.sample_targets.ldt = C;
        a.sample_targets.key = key, a.sample_targets.step = step + (uint64_t)s;
        NGT_OK(ng_run_op(g_cpu, &a));
        NGT_OK(ng_tensor_get(g_cpu, &tt, th));
        for (b = 0; b < m; b++) {
            double sum = 0.0;
            for (k = 0; k < C; k++) {
                const float x = th[k + C * b];
                NGT_CHECK(x == 0.0f || x == 1.0f, "sampled target %g", (double)x);
                sum += x;
                t[k + (size_t)C * b] = x;
            }
            NGT_CHECK(sum == 1.0, "sampled target of case %d is not one-hot", b);
        }
        ref_curv(&f.r, f.theta, J, f.np, t, C, dv, want);
        for (j = 0; j < f.np; j++) acc[j] += want[j] / S;
    }
    NGT_OK(ng_cnn_fvp(f.m, NG_FISHER_SAMPLED, S, key, step, &f.v, &f.o1));
    NGT_OK(ng_tensor_get(g_cpu, &f.o1, g));
    e = excess(g, acc, f.np, 1e-4, &at, &bmax);
    NGT_CHECK(bmax > 1e-5, "sampled F v vanishes (max %.3g)", bmax);
    NGT_CHECK(e <= 2e-5 * bmax, "sampled F v[%zu] = %.9g, float64 %.9g (max %.3g)", at, (double)g[at], acc[at], bmax);
    printf("  sampled F v (S = %d): max |F v - float64| = %.2g of max %.3g\n", S, relerr(g, acc, f.np), bmax);
    ng_free(g_cpu, y.ptr);
    free(hv);
    free(g);
    free(th);
    free(dv);
    free(want);
    free(acc);
    free(t);
    free(J);
    fix_free(&f);
    return NGT_PASS;
}

/* The Fisher gram (K-FAC's quadratic model): gram[i, j] = v_i^T G v_j for three directions against
 * the dots of ng_cnn_gvp's products (the same products reached two ways: to 1e-5 of sqrt(gram_ii
 * gram_jj)), symmetric and positive semi-definite on the diagonal; a work buffer too small is refused. */
static int test_fisher_gram(void) {
    fix f;
    ng_tensor vs[3], work;
    const ng_tensor *vp[3];
    float *h, *gv;
    double gram[9];
    int i, j;
    size_t k;
    NGT_OK(fix_init(&f, g_cpu, stacks[0], 5, 64, 19));
    h = (float *)malloc(4 * f.np * sizeof(float));
    gv = h + 3 * f.np;
    vs[0] = f.v, vs[1] = f.u, vs[2] = f.o2;
    for (i = 0; i < 3; i++) {
        NGT_OK(rand_vec(&f, 700 + (uint64_t)i, h + (size_t)i * f.np, &vs[i]));
        vp[i] = &vs[i];
    }
    NGT_OK(ng_alloc(g_cpu, (size_t)f.r.classes * 5 * 4 * sizeof(float), &work.ptr));
    work = ng_tensor_matrix(work.data, f.r.classes * 5 * 4, 1, f.r.classes * 5 * 4);
    {
        ng_tensor small = ng_tensor_matrix(work.data, f.r.classes * 5 * 4 - 1, 1, f.r.classes * 5 * 4 - 1);
        NGT_CHECK(ng_cnn_fisher_gram(f.m, 3, vp, &small, gram) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "work"),
                  "small work: %s", ng_last_error());
    }
    NGT_OK(ng_cnn_fisher_gram(f.m, 3, vp, &work, gram));
    for (j = 0; j < 3; j++) {
        NGT_OK(ng_cnn_gvp(f.m, vp[j], &f.o1));
        NGT_OK(ng_tensor_get(g_cpu, &f.o1, gv));
        for (i = 0; i < 3; i++) {
            double d = 0.0;
            for (k = 0; k < f.np; k++) d += (double)h[(size_t)i * f.np + k] * gv[k];
            NGT_CHECK(gram[i + 3 * j] == gram[j + 3 * i], "gram not symmetric");
            NGT_CHECK(fabs(gram[i + 3 * j] - d) <= 1e-5 * sqrt(fabs(gram[i * 4]) * fabs(gram[j * 4])) + 1e-12,
                      "gram[%d,%d] = %.9g, v_i^T G v_j = %.9g", i, j, gram[i + 3 * j], d);
        }
        NGT_CHECK(gram[j * 4] > 0.0, "gram[%d,%d] = %g", j, j, gram[j * 4]);
    }
    ng_free(g_cpu, work.ptr);
    free(h);
    fix_free(&f);
    return NGT_PASS;
}

/* u^T G v = v^T G u (to 1e-5 of |u| |G v| + |v| |G u|: float32 rounding) and v^T G v >= 0, for
 * the stacks, with batch norm; the model's gradient is left as it was. */
static int test_symmetry(void) {
    int i;
    for (i = 0; i < (int)(sizeof stacks / sizeof stacks[0]); i++) {
        fix f;
        float *hu, *hv, *gv, *gu, *g0, *g1;
        double ugv = 0.0, vgu = 0.0, vgv = 0.0, nu = 0.0, nv = 0.0, ngv = 0.0, ngu = 0.0, tol;
        size_t j;
        NGT_OK(fix_init(&f, g_cpu, stacks[i], 6, 64, 14));
        hu = (float *)malloc(6 * f.np * sizeof(float));
        hv = hu + f.np, gv = hv + f.np, gu = gv + f.np, g0 = gu + f.np, g1 = g0 + f.np;
        NGT_OK(ng_tensor_get(g_cpu, &f.m->grad_flat, g0));
        NGT_OK(rand_vec(&f, 400, hu, &f.u));
        NGT_OK(rand_vec(&f, 401, hv, &f.v));
        NGT_OK(ng_cnn_gvp(f.m, &f.v, &f.o1));
        NGT_OK(ng_cnn_gvp(f.m, &f.u, &f.o2));
        NGT_OK(ng_tensor_get(g_cpu, &f.o1, gv));
        NGT_OK(ng_tensor_get(g_cpu, &f.o2, gu));
        NGT_OK(ng_tensor_get(g_cpu, &f.m->grad_flat, g1));
        for (j = 0; j < f.np; j++) {
            ugv += (double)hu[j] * gv[j];
            vgu += (double)hv[j] * gu[j];
            vgv += (double)hv[j] * gv[j];
            nu += (double)hu[j] * hu[j];
            nv += (double)hv[j] * hv[j];
            ngv += (double)gv[j] * gv[j];
            ngu += (double)gu[j] * gu[j];
        }
        tol = 1e-5 * (sqrt(nu * ngv) + sqrt(nv * ngu));
        printf("  %s: u^T G v = %.9g, v^T G u = %.9g, v^T G v = %.6g\n", stacks[i], ugv, vgu, vgv);
        NGT_CHECK(fabs(ugv - vgu) <= tol, "%s: u^T G v %.9g != v^T G u %.9g (tolerance %.3g)", stacks[i], ugv, vgu, tol);
        NGT_CHECK(vgv >= -tol, "%s: v^T G v = %.3g < 0", stacks[i], vgv);
        NGT_CHECK(memcmp(g0, g1, f.np * sizeof(float)) == 0, "%s: a curvature product changed the gradient", stacks[i]);
        free(hu);
        fix_free(&f);
    }
    return NGT_PASS;
}

/* A batch of 6 cases in chunks of 2 gives the products of one chunk (nets without batch norm, which
 * is per chunk by definition): J v, G v and the sampled F v (each case's draw depends on its place in
 * the batch, not on the chunking) to float rounding (1e-5 of the largest entry); and ng_cnn_set_batch
 * on another model reproduces the gradient's batch. */
static int test_chunks(void) {
    static const char *const nets[] = {"c3k3s2p1-w-c4k2p0-relu-mp2s1-d3", "c3k3-ap2-tanh-d5-logistic-d3"};
    int i;
    for (i = 0; i < 2; i++) {
        fix a, b;
        float *ja, *jb, *ga, *gb, *hv;
        double wj = 0.0, bj = 0.0, wg = 0.0, bg = 0.0, wf = 0.0, bf = 0.0;
        size_t j, nz;
        NGT_OK(fix_init(&a, g_cpu, nets[i], 6, 64, 15));
        NGT_OK(fix_init(&b, g_cpu, nets[i], 6, 2, 15));
        nz = (size_t)a.r.classes * 6;
        ja = (float *)malloc((2 * nz + 3 * a.np) * sizeof(float));
        jb = ja + nz, ga = jb + nz, gb = ga + a.np, hv = gb + a.np;
        NGT_OK(rand_vec(&a, 500, hv, &a.v));
        NGT_OK(rand_vec(&b, 500, hv, &b.v));
        NGT_OK(ng_cnn_set_batch(b.m, &b.xd, NULL));
        NGT_OK(ng_cnn_jvp(a.m, &a.v, &a.jv));
        NGT_OK(ng_cnn_jvp(b.m, &b.v, &b.jv));
        NGT_OK(ng_cnn_gvp(a.m, &a.v, &a.o1));
        NGT_OK(ng_cnn_gvp(b.m, &b.v, &b.o1));
        NGT_OK(ng_tensor_get(g_cpu, &a.jv, ja));
        NGT_OK(ng_tensor_get(g_cpu, &b.jv, jb));
        NGT_OK(ng_tensor_get(g_cpu, &a.o1, ga));
        NGT_OK(ng_tensor_get(g_cpu, &b.o1, gb));
        for (j = 0; j < nz; j++) {
            wj = fmax(wj, fabs(ja[j] - jb[j]));
            bj = fmax(bj, fabs(ja[j]));
        }
        for (j = 0; j < a.np; j++) {
            wg = fmax(wg, fabs(ga[j] - gb[j]));
            bg = fmax(bg, fabs(ga[j]));
        }
        NGT_OK(ng_cnn_fvp(a.m, NG_FISHER_SAMPLED, 2, 77, 3, &a.v, &a.o1));
        NGT_OK(ng_cnn_fvp(b.m, NG_FISHER_SAMPLED, 2, 77, 3, &b.v, &b.o1));
        NGT_OK(ng_tensor_get(g_cpu, &a.o1, ga));
        NGT_OK(ng_tensor_get(g_cpu, &b.o1, gb));
        for (j = 0; j < a.np; j++) {
            wf = fmax(wf, fabs(ga[j] - gb[j]));
            bf = fmax(bf, fabs(ga[j]));
        }
        free(ja);
        fix_free(&a);
        fix_free(&b);
        NGT_CHECK(wj <= 1e-5 * bj && bj > 0, "%s: chunked J v differs by %.3g (max %.3g)", nets[i], wj, bj);
        NGT_CHECK(wg <= 1e-5 * bg && bg > 0, "%s: chunked G v differs by %.3g (max %.3g)", nets[i], wg, bg);
        NGT_CHECK(wf <= 1e-5 * bf && bf > 0, "%s: chunked sampled F v differs by %.3g (max %.3g)", nets[i], wf, bf);
    }
    return NGT_PASS;
}

/* The CUDA backend (a device or the emulator) against the CPU: J v, G v, and sampled F v of the
 * stacks to 1e-5 of the largest entry (float32, different summation orders in the gemms). */
static int test_cuda_vs_cpu(void) {
    int i;
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    for (i = 0; i < (int)(sizeof stacks / sizeof stacks[0]); i++) {
        fix a, b;
        float *ja, *jb, *ga, *gb, *hv;
        size_t j, nz;
        int what;
        NGT_OK(fix_init(&a, g_cpu, stacks[i], 5, 64, 16));
        NGT_OK(fix_init(&b, g_cuda, stacks[i], 5, 64, 16));
        nz = (size_t)a.r.classes * 5;
        ja = (float *)malloc((2 * nz + 3 * a.np) * sizeof(float));
        jb = ja + nz, ga = jb + nz, gb = ga + a.np, hv = gb + a.np;
        NGT_OK(rand_vec(&a, 600, hv, &a.v));
        NGT_OK(rand_vec(&b, 600, hv, &b.v));
        NGT_OK(ng_cnn_jvp(a.m, &a.v, &a.jv));
        NGT_OK(ng_cnn_jvp(b.m, &b.v, &b.jv));
        NGT_OK(ng_tensor_get(g_cpu, &a.jv, ja));
        NGT_OK(ng_tensor_get(g_cuda, &b.jv, jb));
        for (what = 0; what < 3; what++) {
            double w = 0.0, big = 0.0;
            const float *x = what ? ga : ja, *y = what ? gb : jb;
            const size_t n = what ? a.np : nz;
            if (what) {
                const int mode = what == 1 ? NG_FISHER_EXACT : NG_FISHER_SAMPLED;
                NGT_OK(ng_cnn_fvp(a.m, mode, 2, 99, 5, &a.v, &a.o1));
                NGT_OK(ng_cnn_fvp(b.m, mode, 2, 99, 5, &b.v, &b.o1));
                NGT_OK(ng_tensor_get(g_cpu, &a.o1, ga));
                NGT_OK(ng_tensor_get(g_cuda, &b.o1, gb));
            }
            for (j = 0; j < n; j++) {
                w = fmax(w, fabs(x[j] - y[j]));
                big = fmax(big, fabs(x[j]));
            }
            NGT_CHECK(big > 0 && w <= 1e-5 * big, "%s: %s differs between CPU and CUDA by %.3g (max %.3g)", stacks[i],
                      what == 0 ? "J v" : what == 1 ? "G v" : "sampled F v", w, big);
        }
        free(ja);
        fix_free(&a);
        fix_free(&b);
    }
    return NGT_PASS;
}

/* J v on the CUDA backend against the float64 differences: the layers with their own ops (max
 * pooling's argmax gather, batch norm, whitening) and the stacks. */
static int test_jvp_cuda(void) {
    static const char *const nets[] = {"c3k3-mp3s2-d3", "c3k3-bn-d3", "c3k3-w-d3"};
    int i;
    double w;
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    for (i = 0; i < 3; i++)
        if (jvp_check(g_cuda, nets[i], 64, &w) != NGT_PASS) return NGT_FAIL;
    for (i = 0; i < (int)(sizeof stacks / sizeof stacks[0]); i++)
        if (jvp_check(g_cuda, stacks[i], 64, &w) != NGT_PASS) return NGT_FAIL;
    return NGT_PASS;
}

/* Bad input: products before any batch, wrong shapes, aliasing, unknown mode, a non-cnn model. */
static int test_bad_input(void) {
    fix f;
    ng_model *fresh;
    ng_tensor shortv, wrong;
    NGT_OK(fix_init(&f, g_cpu, "c3k3-d3", 4, 64, 17));
    NGT_OK(ng_cnn_create(g_cpu, &f.cfg, &fresh));
    NGT_CHECK(ng_cnn_jvp(fresh, &f.v, &f.jv) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "no batch"), "J v before a batch: %s",
              ng_last_error());
    NGT_CHECK(ng_cnn_gvp(fresh, &f.v, &f.o1) == NG_ERR_INVALID_ARG, "G v before a batch");
    ng_cnn_free(fresh);
    shortv = ng_tensor_matrix(f.v.data, (int)f.np - 1, 1, (int)f.np - 1);
    NGT_CHECK(ng_cnn_gvp(f.m, &shortv, &f.o1) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "parameters"), "short v: %s",
              ng_last_error());
    wrong = ng_tensor_matrix(f.jv.data, f.jv.rows, f.jv.cols - 1, f.jv.rows);
    NGT_CHECK(ng_cnn_jvp(f.m, &f.v, &wrong) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "classes x cases"), "J v shape: %s",
              ng_last_error());
    NGT_CHECK(ng_cnn_fvp(f.m, NG_FISHER_EXACT, 1, 0, 0, &f.v, &f.v) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "alias"),
              "aliasing: %s", ng_last_error());
    NGT_CHECK(ng_cnn_fvp(f.m, 7, 1, 0, 0, &f.v, &f.o1) == NG_ERR_INVALID_ARG, "unknown Fisher mode accepted");
    NGT_CHECK(ng_cnn_fvp(f.m, NG_FISHER_SAMPLED, 0, 0, 0, &f.v, &f.o1) == NG_ERR_INVALID_ARG, "0 samples accepted");
    {
        ng_net_config nc;
        ng_model *net;
        ng_net_config_default(&nc);
        NGT_OK(ng_net_parse_spec("4-3:softmax", NG_ACT_RELU, NG_ACT_SOFTMAX, &nc));
        nc.loss = NG_LOSS_CATEGORICAL;
        nc.target = NG_NET_TARGET_ROWS;
        NGT_OK(ng_net_create(g_cpu, &nc, &net));
        NGT_CHECK(ng_cnn_set_batch(net, &f.xd, NULL) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "not a cnn"), "net accepted: %s",
                  ng_last_error());
        ng_net_free(net);
    }
    fix_free(&f);
    return NGT_PASS;
}

/* Truncated Newton (natgrad/tnewton.h) accepts a cnn and refuses, naming the reason, what a cnn
 * cannot give it: HF's diagonal preconditioner (no per-case
 * statistics), augmentation (the searches compare objectives on the batch as given). One ngd update
 * through the trainer's calls (gradient, observe, apply) leaves -lr n in the gradient arena with
 * (G + lambda I) n = g, checked with the model's own G v: max |(G + lambda I) n - g| <= 1e-3 max |g|
 * (CG stops at a relative residual of 1e-4 in the 2-norm, <= 1e-4 sqrt(141) max |g| in the max-norm;
 * at most 50 iterations on 141 parameters). */
/* (HF on the Hessian runs one update on a cnn.) */
static int tnewton_check(ng_backend *be) {
    fix f;
    ng_tn_config tc;
    ng_precond *p = NULL;
    float *g, *d, *gd;
    double worst = 0.0, big = 0.0;
    size_t j;
    NGT_OK(fix_init(&f, be, "c3k3-mp2-d3", 5, 64, 18));
    ng_tn_config_default(&tc);
    tc.curvature = NG_TN_CURV_HESSIAN;
    tc.method = NG_TN_HF;
    tc.hf_precond = 0;
    {
        ng_cnn_config c = f.cfg;
        ng_model *bn;
        NGT_OK(ng_cnn_parse_spec("c3k3-bn-d3", &c));
        NGT_OK(ng_cnn_create(be, &c, &bn));
        NGT_OK(ng_precond_tn_init(be, bn, &tc, NULL, 0, &p)); /* H v through batch norm exists */
        ng_precond_free(p);
        p = NULL;
        ng_cnn_free(bn);
    }
    /* HF on the Hessian runs: one update, a finite direction */
    NGT_OK(ng_precond_tn_init(be, f.m, &tc, NULL, 0, &p));
    NGT_OK(ng_precond_observe(p, f.m, 0));
    NGT_OK(ng_precond_apply(p, f.m, 0));
    {
        float nrm;
        NGT_OK(ng_nrm2(be, f.np, f.m->grad_flat.data, &nrm));
        NGT_CHECK(isfinite(nrm) && nrm > 0.0f, "HF (Hessian) direction norm %g", (double)nrm);
    }
    ng_precond_free(p);
    p = NULL;
    NGT_OK(ng_model_gradient(f.m, &f.xd, NULL)); /* the gradient again for the checks below */
    ng_tn_config_default(&tc);
    tc.method = NG_TN_HF;
    NGT_CHECK(ng_precond_tn_init(be, f.m, &tc, NULL, 0, &p) == NG_ERR_UNSUPPORTED && strstr(ng_last_error(), "preconditioner"),
              "HF's diagonal on a cnn: %s", ng_last_error());
    {
        ng_cnn_config c = f.cfg;
        ng_model *aug;
        c.augment_pad = 1;
        NGT_OK(ng_cnn_create(be, &c, &aug));
        ng_tn_config_default(&tc);
        NGT_CHECK(ng_precond_tn_init(be, aug, &tc, NULL, 0, &p) == NG_ERR_UNSUPPORTED && strstr(ng_last_error(), "augmentation"),
                  "augmentation: %s", ng_last_error());
        ng_cnn_free(aug);
    }
    ng_tn_config_default(&tc);
    tc.max_iter = 50;
    tc.lr = 0.5;
    tc.lambda0 = 0.1;
    NGT_OK(ng_precond_tn_init(be, f.m, &tc, NULL, 0, &p));
    g = (float *)malloc(3 * f.np * sizeof(float));
    d = g + f.np, gd = d + f.np;
    NGT_OK(ng_tensor_get(be, &f.m->grad_flat, g));
    NGT_OK(ng_precond_observe(p, f.m, 0));
    NGT_OK(ng_precond_apply(p, f.m, 0));
    NGT_OK(ng_tensor_get(be, &f.m->grad_flat, d)); /* -delta = lr n */
    /* (G + lambda I) (d / lr) against g */
    for (j = 0; j < f.np; j++) d[j] /= 0.5f;
    NGT_OK(ng_tensor_set(be, &f.v, d));
    NGT_OK(ng_cnn_gvp(f.m, &f.v, &f.o1));
    NGT_OK(ng_tensor_get(be, &f.o1, gd));
    for (j = 0; j < f.np; j++) {
        worst = fmax(worst, fabs((double)gd[j] + 0.1 * d[j] - g[j]));
        big = fmax(big, fabs((double)g[j]));
    }
    printf("  ngd on a cnn (%s): max |(G + lambda I) n - g| = %.2g of max |g| %.3g\n", be->iface->name, worst / big, big);
    NGT_CHECK(big > 1e-4 && worst <= 1e-3 * big, "(G + lambda I) n differs from g by %.3g (max |g| %.3g)", worst, big);
    free(g);
    ng_precond_free(p);
    fix_free(&f);
    return NGT_PASS;
}

static int test_tnewton(void) { return tnewton_check(g_cpu); }
static int test_tnewton_cuda(void) {
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    return tnewton_check(g_cuda);
}

/* The halves that CUDA-graph segments capture equal the whole calls bit for bit on each backend:
 * ng_cnn_objective_dev + _read against ng_cnn_objective (the batch-norm stack, 5 cases in chunks of
 * 2 (the last one partial) and in one chunk; the whitened stack with 9 cases in chunks of 1 (batch
 * norm over one case's dense units would make every case's objective ln 3): the read goes in two
 * pieces of its host scratch, (2 classes + 1) chunk = 7 floats), and ng_cnn_fvp_dev with the sampled targets' step in
 * device memory against ng_cnn_fvp with it by value (S = 2), the device step only read. */
static int seg_halves_check(ng_backend *be) {
    const uint64_t key = ng_rng_stream_key(5, NG_RNG_FISHER_TARGETS);
    int k;
    for (k = 0; k < 3; k++) {
        const int m = k == 2 ? 9 : 5, chunk = k == 0 ? 2 : k == 1 ? 64 : 1;
        fix f;
        float *objs, *h, *p1, *p2;
        double o1, o2;
        uint64_t st[2] = {40, 0}, back[2];
        void *sd;
        NGT_OK(fix_init(&f, be, stacks[k == 2 ? 1 : 0], m, chunk, 21));
        NGT_OK(ng_alloc(be, (size_t)m * sizeof(float), (void **)&objs));
        NGT_OK(ng_alloc(be, sizeof st, &sd));
        NGT_OK(ng_set(be, sd, st, sizeof st));
        NGT_OK(ng_cnn_objective(f.m, &f.xd, &o1));
        NGT_OK(ng_cnn_objective_dev(f.m, &f.xd, objs));
        NGT_OK(ng_cnn_objective_read(f.m, m, objs, &o2));
        NGT_CHECK(isfinite(o1) && memcmp(&o1, &o2, sizeof o1) == 0, "chunk %d (%s): objective %.17g, dev + read %.17g",
                  f.cfg.chunk, be->iface->name, o1, o2);
        h = (float *)malloc(3 * f.np * sizeof(float));
        p1 = h + f.np, p2 = p1 + f.np;
        NGT_OK(rand_vec(&f, 310, h, &f.v));
        NGT_OK(ng_cnn_fvp(f.m, NG_FISHER_SAMPLED, 2, key, 40, &f.v, &f.o1));
        NGT_OK(ng_cnn_fvp_dev(f.m, NG_FISHER_SAMPLED, 2, key, (uint64_t *)sd, &f.v, &f.o2));
        NGT_OK(ng_tensor_get(be, &f.o1, p1));
        NGT_OK(ng_tensor_get(be, &f.o2, p2));
        NGT_OK(ng_get(be, back, sd, sizeof back));
        NGT_CHECK(memcmp(p1, p2, f.np * sizeof(float)) == 0, "chunk %d (%s): sampled F v with the step on the device differs",
                  f.cfg.chunk, be->iface->name);
        NGT_CHECK(back[0] == 40, "the device step moved to %llu (read only)", (unsigned long long)back[0]);
        printf("  %s, chunk %d: objective dev + read = %.9g and sampled F v (device step) bit for bit\n", be->iface->name,
               f.cfg.chunk, o1);
        free(h);
        ng_free(be, objs);
        ng_free(be, sd);
        fix_free(&f);
    }
    return NGT_PASS;
}
static int test_seg_halves(void) { return seg_halves_check(g_cpu); }
static int test_seg_halves_cuda(void) {
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    return seg_halves_check(g_cuda);
}

/* H v (Pearlmutter's R{backprop}) against central differences of the float64 gradient, for each
 * parameterised or nonlinear layer kind, batch norm included (over channels, on the input, over
 * dense units), and five stacks: |Hv - fd| <= 2e-5 max |fd| + 1e-4 |fd| (the differences carry ~1e-6
 * of rounding; measured <= 5.8e-6 of the maximum); u^T H v = v^T H u on the stacks. */
static int hvp_check(ng_backend *be, const char *spec, int check_sym) {
    fix f;
    float *hv, *h, *hu;
    double *dv, *want, e, bmax;
    size_t j, at;
    NGT_OK(fix_init(&f, be, spec, 4, 64, 20));
    hv = (float *)malloc(3 * f.np * sizeof(float));
    h = hv + f.np, hu = h + f.np;
    dv = (double *)malloc(2 * f.np * sizeof(double));
    want = dv + f.np;
    NGT_OK(rand_vec(&f, 800, h, &f.v));
    for (j = 0; j < f.np; j++) dv[j] = h[j];
    NGT_OK(ng_cnn_hvp(f.m, &f.v, &f.o1));
    NGT_OK(ng_tensor_get(be, &f.o1, hv));
    ref_hvp(&f.r, f.theta, dv, f.np, want);
    e = excess(hv, want, f.np, 1e-4, &at, &bmax);
    printf("  H v %s (%s): %zu parameters, max |H v - difference of gradients| = %.2g of max %.3g\n", spec, be->iface->name, f.np,
           relerr(hv, want, f.np), bmax);
    NGT_CHECK(bmax > 1e-3, "%s: H v vanishes (max %.3g)", spec, bmax);
    NGT_CHECK(e <= 2e-5 * bmax, "%s: H v[%zu] = %.9g, central difference %.9g (max %.3g)", spec, at, (double)hv[at], want[at], bmax);
    if (check_sym) { /* u^T H v = v^T H u; hu = H u, u in u32 */
        float *u32 = (float *)malloc(f.np * sizeof(float));
        double uhv = 0.0, vhu = 0.0, nu = 0.0, nhv = 0.0;
        NGT_OK(rand_vec(&f, 801, u32, &f.u));
        NGT_OK(ng_cnn_hvp(f.m, &f.u, &f.o2));
        NGT_OK(ng_tensor_get(be, &f.o2, hu));
        for (j = 0; j < f.np; j++) {
            uhv += (double)u32[j] * hv[j];
            vhu += (double)h[j] * hu[j];
            nu += (double)u32[j] * u32[j];
            nhv += (double)hv[j] * hv[j];
        }
        free(u32);
        printf("  %s: u^T H v = %.9g, v^T H u = %.9g\n", spec, uhv, vhu);
        NGT_CHECK(fabs(uhv - vhu) <= 2e-5 * sqrt(nu * nhv) + 1e-9, "%s: u^T H v %.9g != v^T H u %.9g", spec, uhv, vhu);
    }
    free(hv);
    free(dv);
    fix_free(&f);
    return NGT_PASS;
}

static int test_hvp(void) {
    static const char *const nets[] = {"c3k3s2p1-d3", "c3k3-mp2-d3", "c3k3-ap2-d3", "c3k3-tanh-d3", "c3k3-logistic-d3",
                                       "c3k3-relu-d3", "c3k3-w-d3", "d4-tanh-d3"};
    int i;
    for (i = 0; i < (int)(sizeof nets / sizeof nets[0]); i++)
        if (hvp_check(g_cpu, nets[i], 0) != NGT_PASS) return NGT_FAIL;
    if (hvp_check(g_cpu, stacks[1], 1) != NGT_PASS) return NGT_FAIL;
    if (hvp_check(g_cpu, "c3k3-tanh-mp2-c4k2p0-logistic-ap2-d5-tanh-d3", 1) != NGT_PASS) return NGT_FAIL;
    for (i = 0; i < 3; i++) /* batch norm: over channels, on the input (only gamma, beta move), over dense units */
        if (hvp_check(g_cpu, i == 0 ? "c3k3-bn-d3" : i == 1 ? "bn-tanh-d3" : "d5-bn-tanh-d3", 0) != NGT_PASS) return NGT_FAIL;
    if (hvp_check(g_cpu, stacks[0], 1) != NGT_PASS) return NGT_FAIL;
    if (hvp_check(g_cpu, "c3k3-bn-tanh-w-c4k2p0-bn-tanh-ap2s1-d3", 1) != NGT_PASS) return NGT_FAIL;
    return hvp_check(g_cpu, stacks[2], 1);
}

static int test_hvp_cuda(void) {
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    if (hvp_check(g_cuda, "c3k3-tanh-mp2-c4k2p0-logistic-ap2-d5-tanh-d3", 1) != NGT_PASS) return NGT_FAIL;
    if (hvp_check(g_cuda, stacks[0], 1) != NGT_PASS) return NGT_FAIL;
    return hvp_check(g_cuda, stacks[1], 1);
}

int main(void) {
    if (ngt_open_backends(&g_cpu, &g_cuda, g_cuda_reason, sizeof g_cuda_reason)) return 1;
    NGT_RUN(test_jvp_cpu);
    NGT_RUN(test_gvp_cpu);
    NGT_RUN(test_fvp_sampled);
    NGT_RUN(test_symmetry);
    NGT_RUN(test_fisher_gram);
    NGT_RUN(test_hvp);
    NGT_RUN(test_chunks);
    NGT_RUN(test_bad_input);
    NGT_RUN(test_tnewton);
    NGT_RUN(test_seg_halves);
    NGT_RUN(test_jvp_cuda);
    NGT_RUN(test_cuda_vs_cpu);
    NGT_RUN(test_tnewton_cuda);
    NGT_RUN(test_hvp_cuda);
    NGT_RUN(test_seg_halves_cuda);
    ng_backend_free(g_cuda);
    ng_backend_free(g_cpu);
    return ngt_finish();
}
