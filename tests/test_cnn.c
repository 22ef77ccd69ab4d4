/* test_cnn.c: convolutional classifiers (natgrad/cnn.h) against the float64 reference of tests/cnn_ref.h:
 * the forward pass (conv with stride and padding, max / average pooling, activations, batch norm
 * over channels and over dense units, dense layers, the 1x1 whitening convolution, softmax +
 * cross-entropy) written again from the definitions, and its gradient by central finite
 * differences in float64; the whitening reparametrisation keeps the function (float tolerance) and
 * whitens the layer's input (identity covariance up to eps on the sample it was estimated on);
 * chunked batches equal one batch; spec parsing and bad input; the CPU against the (emulated)
 * CUDA backend. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends.h"
#include "cnn_ref.h"
#include "harness.h"
#include "natgrad/backend.h"
#include "natgrad/cnn.h"
#include "natgrad/data.h"
#include "natgrad/rng.h"

static ng_backend *g_cpu, *g_cuda;
static char g_cuda_reason[512];

/* ---- fixtures ----------------------------------------------------------------------------- */

typedef struct fix {
    ng_cnn_config cfg;
    ng_model *m;
    ng_backend *be;
    ng_tensor xd; /* device batch (rows, m) */
    float *x32;
    double *x64;
    int ncase, rows;
    ref r;
} fix;

static void fix_free(fix *f) {
    int l;
    if (f->xd.ptr) ng_free(f->be, f->xd.ptr);
    ng_cnn_free(f->m);
    free(f->x32);
    free(f->x64);
    for (l = 0; l <= NG_CNN_MAX_LAYERS; l++) free(f->r.UT[l]), free(f->r.mu[l]);
    memset(f, 0, sizeof *f);
}

static ng_status fix_init(fix *f, ng_backend *be, int c, int h, int w, const char *spec, int m, int chunk, uint64_t seed) {
    int b, i;
    const uint64_t key = ng_rng_stream_key(seed, NG_RNG_TEST);
    memset(f, 0, sizeof *f);
    ng_cnn_config_default(&f->cfg);
    f->cfg.c = c, f->cfg.h = h, f->cfg.w = w;
    f->cfg.chunk = chunk;
    f->cfg.seed = seed;
    NG_TRY(ng_cnn_parse_spec(spec, &f->cfg));
    f->be = be;
    NG_TRY(ng_cnn_create(be, &f->cfg, &f->m));
    f->rows = ng_cnn_batch_rows(f->m);
    f->ncase = m;
    f->x32 = (float *)malloc((size_t)f->rows * m * sizeof(float));
    f->x64 = (double *)malloc((size_t)f->rows * m * sizeof(double));
    {
        const int s0 = c * h * w, C = ng_cnn_classes(&f->cfg);
        for (b = 0; b < m; b++) {
            int cls = (int)(ng_rng_uniform(key, 1, (uint64_t)b) * C) % C;
            for (i = 0; i < s0; i++) f->x32[i + (size_t)f->rows * b] = (float)(2.0 * ng_rng_uniform(key, 0, i + (uint64_t)s0 * b) - 1.0);
            for (i = 0; i < C; i++) f->x32[s0 + i + (size_t)f->rows * b] = i == cls ? 1.0f : 0.0f;
        }
    }
    for (i = 0; i < f->rows * m; i++) f->x64[i] = f->x32[i];
    NG_TRY(ng_alloc(be, (size_t)f->rows * m * sizeof(float), &f->xd.ptr));
    f->xd = ng_tensor_matrix(f->xd.data, f->rows, m, f->rows);
    NG_TRY(ng_tensor_set(be, &f->xd, f->x32));
    /* the reference */
    ref_bind(&f->r, &f->cfg, f->m, m, f->rows, f->x64);
    return NG_OK;
}

/* The whitening state of the model into the reference (after ng_cnn_whiten). */
static ng_status fix_load_whiten(fix *f) { return ref_load_whiten(&f->r, f->be, f->m); }

static double *host_params(fix *f) {
    const size_t np = ng_model_size(f->m);
    float *p = (float *)malloc(np * sizeof(float));
    double *d = (double *)malloc(np * sizeof(double));
    size_t i;
    if (ng_tensor_get(f->be, &f->m->param_flat, p) != NG_OK) {
        free(p);
        free(d);
        return NULL;
    }
    for (i = 0; i < np; i++) d[i] = p[i];
    free(p);
    return d;
}

/* ---- tests -------------------------------------------------------------------------------- */

/* Networks covering every layer kind: conv (padding, stride), both poolings, the activations,
 * batch norm over channels and over dense units, whitening, dense layers. Input 2 x 7 x 7. */
static const char *const nets[] = {
    "c3k3-bn-relu-mp2-c4k2p0-tanh-ap2-d5-logistic-bn-d3",
    "c3k3s2p1-w-c4k2p0-relu-mp2s1-d3",
    "c2k5p2-linear-w-d6-tanh-d4",
    "c3k3-bn-relu-w-c4k2p0-bn-relu-mp2s1-d3",
};

/* Objective and gradient of the model against the float64 reference and its central differences
 * (h = 1e-5 in float64: truncation ~1e-10, rounding ~1e-11). The model runs in float32: objective
 * to 1e-5 relative, gradient to 2e-4 max|g| + 1e-3 |g| (float32 sums over up to a few hundred
 * terms). For whitening nets, a whitening of the batch first makes U and mu non-trivial. */
static int grad_check(ng_backend *be, const char *spec, int chunk) {
    fix f;
    double *theta, obj, miss, want, gmax = 0.0, worst = 0.0;
    float *g;
    size_t np, i, worst_i = 0;
    int l, has_w = 0;
    NGT_OK(fix_init(&f, be, 2, 7, 7, spec, 6, chunk, 5));
    for (l = 0; l < f.cfg.n_layers; l++) has_w |= f.cfg.layer[l].kind == NG_CNN_WHITEN;
    if (has_w) NGT_OK(ng_cnn_whiten(f.m, &f.xd, 6));
    NGT_OK(fix_load_whiten(&f));
    NGT_OK(ng_model_gradient(f.m, &f.xd, NULL));
    NGT_OK(ng_cnn_batch_loss(f.m, &obj, &miss));
    theta = host_params(&f);
    NGT_CHECK(theta != NULL, "parameters");
    want = ref_objective_run(&f.r, theta, NULL);
    NGT_CHECK(fabs(obj - want) <= 1e-5 * fabs(want) + 1e-6, "%s: objective %.9g, float64 reference %.9g", spec, obj, want);
    NGT_CHECK(miss >= 0.0 && miss <= 1.0, "misclassification %g", miss);
    np = ng_model_size(f.m);
    g = (float *)malloc(np * sizeof(float));
    NGT_OK(ng_tensor_get(be, &f.m->grad_flat, g));
    {
        double *fd = (double *)malloc(np * sizeof(double));
        for (i = 0; i < np; i++) {
            const double t0 = theta[i], hh = 1e-5;
            double up, dn;
            theta[i] = t0 + hh;
            up = ref_objective_run(&f.r, theta, NULL);
            theta[i] = t0 - hh;
            dn = ref_objective_run(&f.r, theta, NULL);
            theta[i] = t0;
            fd[i] = (up - dn) / (2.0 * hh);
            if (fabs(fd[i]) > gmax) gmax = fabs(fd[i]);
        }
        for (i = 0; i < np; i++) {
            double err = fabs((double)g[i] - fd[i]) - 1e-3 * fabs(fd[i]);
            if (err > worst) worst = err, worst_i = i;
        }
        if (!(worst <= 2e-4 * gmax))
            printf("  %s: gradient[%zu] = %.9g, central difference %.9g (max |g| %.3g)\n", spec, worst_i, (double)g[worst_i],
                   fd[worst_i], gmax);
        free(fd);
    }
    printf("  %s (%s, chunk %d): %zu parameters, objective %.7f, worst gradient excess %.2g of max |g| %.3g\n", spec,
           be->iface->name, chunk, np, obj, worst, gmax);
    free(g);
    free(theta);
    fix_free(&f);
    NGT_CHECK(worst <= 2e-4 * gmax, "%s: gradient off by %.3g (tolerance %.3g)", spec, worst, 2e-4 * gmax);
    NGT_CHECK(gmax > 1e-4, "%s: gradient vanishes (max %.3g): the check would be empty", spec, gmax);
    return NGT_PASS;
}

static int test_gradient_cpu(void) {
    int i;
    for (i = 0; i < (int)(sizeof nets / sizeof nets[0]); i++)
        if (grad_check(g_cpu, nets[i], 64) != NGT_PASS) return NGT_FAIL;
    return NGT_PASS;
}

static int test_gradient_cuda(void) {
    int i;
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    for (i = 0; i < (int)(sizeof nets / sizeof nets[0]); i++)
        if (grad_check(g_cuda, nets[i], 64) != NGT_PASS) return NGT_FAIL;
    return NGT_PASS;
}

/* Chunked (chunk 2 of 6 cases) equals one chunk when the net has no batch norm (batch norm is
 * per chunk by definition): objective and gradient to float rounding. */
static int test_chunks(void) {
    fix a, b;
    size_t np, i;
    float *ga, *gb;
    double oa, ob, ma, mb, worst = 0.0, big = 0.0;
    NGT_OK(fix_init(&a, g_cpu, 2, 7, 7, nets[1], 6, 64, 8));
    NGT_OK(fix_init(&b, g_cpu, 2, 7, 7, nets[1], 6, 2, 8));
    NGT_OK(ng_model_gradient(a.m, &a.xd, NULL));
    NGT_OK(ng_model_gradient(b.m, &b.xd, NULL));
    NGT_OK(ng_cnn_batch_loss(a.m, &oa, &ma));
    NGT_OK(ng_cnn_batch_loss(b.m, &ob, &mb));
    np = ng_model_size(a.m);
    ga = (float *)malloc(np * sizeof(float));
    gb = (float *)malloc(np * sizeof(float));
    NGT_OK(ng_tensor_get(g_cpu, &a.m->grad_flat, ga));
    NGT_OK(ng_tensor_get(g_cpu, &b.m->grad_flat, gb));
    for (i = 0; i < np; i++) {
        if (fabs(ga[i] - gb[i]) > worst) worst = fabs(ga[i] - gb[i]);
        if (fabs(ga[i]) > big) big = fabs(ga[i]);
    }
    free(ga);
    free(gb);
    fix_free(&a);
    fix_free(&b);
    NGT_CHECK(fabs(oa - ob) <= 1e-6 * fabs(oa) && ma == mb, "objective %.9g vs %.9g, misclass %g vs %g", oa, ob, ma, mb);
    NGT_CHECK(worst <= 1e-5 * big, "chunked gradient differs by %.3g (max |g| %.3g)", worst, big);
    return NGT_PASS;
}

/* Whitening (PRONG section 4.3): after ng_cnn_whiten the network computes the same outputs (float
 * tolerance, on fresh data too), and the whitened maps of the estimation sample have identity
 * covariance up to eps (eps 1e-6 here: diagonal >= 1 - 1e-3, off-diagonal <= 1e-3 in magnitude);
 * a second whitening from the new state keeps the function again. */
static int whiten_check(ng_backend *be) {
    fix f;
    const int C = 3, m = 6;
    float *y0, *y1, *y2;
    ng_tensor y;
    double worst = 0.0;
    int i, rep;
    NGT_OK(fix_init(&f, be, 2, 7, 7, nets[1], m, 64, 21));
    f.cfg.whiten_eps = 1e-6f;
    ng_cnn_free(f.m);
    NGT_OK(ng_cnn_create(be, &f.cfg, &f.m));
    /* a non-trivial first layer output: train a few plain steps' worth of random weights is not
     * needed, the initial weights already give correlated maps */
    NGT_OK(ng_alloc(be, (size_t)C * m * sizeof(float), &y.ptr));
    y = ng_tensor_matrix(y.data, C, m, C);
    y0 = (float *)malloc((size_t)3 * C * m * sizeof(float));
    y1 = y0 + C * m;
    y2 = y1 + C * m;
    NGT_OK(ng_cnn_predict(f.m, &f.xd, &y));
    NGT_OK(ng_tensor_get(be, &y, y0));
    for (rep = 0; rep < 2; rep++) {
        NGT_OK(ng_cnn_whiten(f.m, &f.xd, m));
        NGT_OK(ng_cnn_predict(f.m, &f.xd, &y));
        NGT_OK(ng_tensor_get(be, &y, rep ? y2 : y1));
    }
    for (i = 0; i < C * m; i++) {
        if (fabs(y1[i] - y0[i]) > worst) worst = fabs(y1[i] - y0[i]);
        if (fabs(y2[i] - y0[i]) > worst) worst = fabs(y2[i] - y0[i]);
    }
    NGT_CHECK(worst <= 2e-5, "whitening changed the outputs by %.3g (probabilities)", worst);
    /* covariance of the whitened maps (layer 2's output) over every pixel of every image */
    {
        ng_tensor a2;
        const int d = f.r.c[2], hw = f.r.h[2] * f.r.w[2];
        float *h = (float *)malloc((size_t)d * hw * m * sizeof(float));
        double mean[8] = {0}, cov[64] = {0};
        int b, p, j, k;
        NGT_OK(ng_model_gradient(f.m, &f.xd, NULL));
        NGT_OK(ng_model_statistic(f.m, "a2", &a2));
        NGT_OK(ng_tensor_get(be, &a2, h));
        for (b = 0; b < m; b++)
            for (j = 0; j < d; j++)
                for (p = 0; p < hw; p++) mean[j] += h[p + (size_t)hw * (j + (size_t)d * b)];
        for (j = 0; j < d; j++) mean[j] /= (double)m * hw;
        for (b = 0; b < m; b++)
            for (p = 0; p < hw; p++)
                for (j = 0; j < d; j++)
                    for (k = 0; k < d; k++)
                        cov[j + 8 * k] += (h[p + (size_t)hw * (j + (size_t)d * b)] - mean[j]) *
                                          (h[p + (size_t)hw * (k + (size_t)d * b)] - mean[k]) / ((double)m * hw);
        free(h);
        for (j = 0; j < d; j++) {
            NGT_CHECK(fabs(mean[j]) <= 1e-4, "whitened mean[%d] = %.3g", j, mean[j]);
            for (k = 0; k < d; k++)
                NGT_CHECK(fabs(cov[j + 8 * k] - (j == k)) <= 1e-3, "whitened covariance[%d,%d] = %.6f", j, k, cov[j + 8 * k]);
        }
    }
    free(y0);
    ng_free(be, y.ptr);
    fix_free(&f);
    return NGT_PASS;
}

/* PRONG+ (whitening between batch-norm layers): the reparametrisation keeps the inference-mode
 * outputs (the running averages are untouched by the statistics passes). */
static int test_whiten_bn(void) {
    fix f;
    const int C = 3, m = 6;
    float y0[18], y1[18];
    ng_tensor y;
    double worst = 0.0;
    int i;
    NGT_OK(fix_init(&f, g_cpu, 2, 7, 7, nets[3], m, 64, 23));
    NGT_OK(ng_model_gradient(f.m, &f.xd, NULL)); /* running averages away from (0, 1) */
    NGT_OK(ng_alloc(g_cpu, (size_t)C * m * sizeof(float), &y.ptr));
    y = ng_tensor_matrix(y.data, C, m, C);
    NGT_OK(ng_cnn_predict(f.m, &f.xd, &y));
    NGT_OK(ng_tensor_get(g_cpu, &y, y0));
    NGT_OK(ng_cnn_whiten(f.m, &f.xd, m));
    NGT_OK(ng_cnn_predict(f.m, &f.xd, &y));
    NGT_OK(ng_tensor_get(g_cpu, &y, y1));
    for (i = 0; i < C * m; i++)
        if (fabs(y1[i] - y0[i]) > worst) worst = fabs(y1[i] - y0[i]);
    ng_free(g_cpu, y.ptr);
    fix_free(&f);
    NGT_CHECK(worst <= 2e-5, "whitening between batch-norm layers changed the outputs by %.3g", worst);
    return NGT_PASS;
}

static int test_whiten_cpu(void) { return whiten_check(g_cpu); }
static int test_whiten_cuda(void) {
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    return whiten_check(g_cuda);
}

/* Inference mode: ng_cnn_evaluate = the float64 reference with batch norm on the running averages
 * (read back as statistics after one gradient; they must have moved from the initial (0, 1)), and
 * the misclassification rate = the reference's argmax count. */
static int test_evaluate(void) {
    fix f;
    double *theta, obj, miss, want, moved = 0.0;
    double *run[NG_CNN_MAX_LAYERS + 1] = {0};
    int l, i;
    NGT_OK(fix_init(&f, g_cpu, 2, 7, 7, nets[0], 6, 64, 13));
    NGT_OK(ng_model_gradient(f.m, &f.xd, NULL));
    theta = host_params(&f);
    for (l = 1; l <= f.cfg.n_layers; l++)
        if (f.cfg.layer[l - 1].kind == NG_CNN_BN) {
            const int ci = f.r.c[l - 1];
            char a[32], b[32];
            ng_tensor tm, tr;
            float *h = (float *)malloc((size_t)2 * ci * sizeof(float));
            snprintf(a, sizeof a, "running_mean%d", l);
            snprintf(b, sizeof b, "running_rstd%d", l);
            NGT_OK(ng_model_statistic(f.m, a, &tm));
            NGT_OK(ng_model_statistic(f.m, b, &tr));
            NGT_OK(ng_tensor_get(g_cpu, &tm, h));
            NGT_OK(ng_tensor_get(g_cpu, &tr, h + ci));
            run[l] = (double *)calloc((size_t)2 * ci, sizeof(double));
            for (i = 0; i < 2 * ci; i++) {
                run[l][i] = h[i];
                moved += fabs(h[i] - (i < ci ? 0.0 : 1.0));
            }
            free(h);
        }
    NGT_CHECK(moved > 1e-3, "running averages did not move (%g)", moved);
    NGT_OK(ng_cnn_evaluate(f.m, &f.xd, &obj, &miss));
    want = ref_objective_run(&f.r, theta, run);
    NGT_CHECK(fabs(obj - want) <= 1e-5 * fabs(want) + 1e-6, "evaluate objective %.9g, float64 reference %.9g", obj, want);
    NGT_CHECK(miss >= 0.0 && miss <= 1.0 && fabs(miss * 6 - floor(miss * 6 + 0.5)) < 1e-9, "misclassification %g of 6 cases",
              miss);
    for (l = 0; l <= NG_CNN_MAX_LAYERS; l++) free(run[l]);
    free(theta);
    fix_free(&f);
    return NGT_PASS;
}

static int test_spec(void) {
    ng_cnn_config c;
    char buf[256];
    ng_cnn_config_default(&c);
    NGT_OK(ng_cnn_parse_spec("c32-bn-relu-mp2-c64k5s2p1-ap3s2-tanh-w-d10", &c));
    NGT_CHECK(c.n_layers == 9, "%d layers", c.n_layers);
    NGT_CHECK(c.layer[0].kind == NG_CNN_CONV && c.layer[0].out == 32 && c.layer[0].k == 3 && c.layer[0].pad == 1 &&
                  c.layer[0].stride == 1, "c32");
    NGT_CHECK(c.layer[4].k == 5 && c.layer[4].stride == 2 && c.layer[4].pad == 1, "c64k5s2p1");
    NGT_CHECK(c.layer[5].kind == NG_CNN_POOL_AVG && c.layer[5].k == 3 && c.layer[5].stride == 2, "ap3s2");
    NGT_CHECK(strcmp(ng_cnn_spec_string(&c, buf, sizeof buf), "c32k3s1p1-bn-relu-mp2s2-c64k5s2p1-ap3s2-tanh-w-d10") == 0, "%s",
              buf);
    {
        ng_cnn_config d;
        ng_cnn_config_default(&d);
        NGT_OK(ng_cnn_parse_spec(buf, &d));
        NGT_CHECK(memcmp(&c.layer, &d.layer, sizeof c.layer) == 0, "spec string does not parse back");
    }
    /* w before a dense layer is fine; the check of 28x28: c32 -> 28, mp2 -> 14, c64k5s2p1 -> 6, ap3s2 -> 2 */
    NGT_OK(ng_cnn_config_check(&c));
    {
        static const char *const bad[] = {"c", "cx3", "c3k", "c3q2", "mp", "mp2x", "d", "softmax", "foo", "c3-", ""};
        int i;
        for (i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
            ng_cnn_config d;
            ng_status s;
            ng_cnn_config_default(&d);
            s = ng_cnn_parse_spec(bad[i], &d);
            if (s == NG_OK) s = ng_cnn_config_check(&d);
            NGT_CHECK(s == NG_ERR_INVALID_ARG, "spec '%s' accepted", bad[i]);
        }
    }
    {
        static const char *const bad_cfg[] = {"c8-relu", "c8k9p0-d10", "c8k3p3-d10", "w-c8-d10", "c4-w-relu-d10", "d10-d1"};
        int i;
        for (i = 0; i < (int)(sizeof bad_cfg / sizeof bad_cfg[0]); i++) {
            ng_cnn_config d;
            ng_cnn_config_default(&d);
            d.h = d.w = 8;
            NGT_OK(ng_cnn_parse_spec(bad_cfg[i], &d));
            NGT_CHECK(ng_cnn_config_check(&d) == NG_ERR_INVALID_ARG, "config '%s' accepted", bad_cfg[i]);
        }
    }
    return NGT_PASS;
}

static int test_bad_input(void) {
    fix f;
    ng_tensor small;
    double o, e;
    NGT_OK(fix_init(&f, g_cpu, 2, 7, 7, nets[1], 6, 64, 3));
    small = ng_tensor_matrix(f.xd.data, f.rows - 1, 6, f.rows);
    NGT_CHECK(ng_model_gradient(f.m, &small, NULL) == NG_ERR_INVALID_ARG, "short batch accepted");
    NGT_CHECK(strstr(ng_last_error(), "rows") != NULL, "message: %s", ng_last_error());
    NGT_CHECK(ng_cnn_evaluate(f.m, &small, &o, &e) == NG_ERR_INVALID_ARG, "short evaluation batch accepted");
    NGT_CHECK(ng_cnn_batch_loss(f.m, &o, &e) == NG_ERR_INVALID_ARG, "loss before any gradient");
    NGT_CHECK(ng_cnn_whiten(f.m, &f.xd, 0) == NG_ERR_INVALID_ARG, "n_s = 0 accepted");
    fix_free(&f);
    NGT_OK(fix_init(&f, g_cpu, 2, 7, 7, nets[0], 6, 64, 3));
    NGT_CHECK(ng_cnn_whiten(f.m, &f.xd, 6) == NG_ERR_INVALID_ARG, "whitening a net without whitening layers");
    fix_free(&f);
    return NGT_PASS;
}

/* CIFAR-10 binary files: a valid file loads (labels, pixels scaled by 1/255 in N,C,H,W order, two
 * files concatenated); then 300 fuzzed files (random lengths, truncations of a valid file, random
 * label bytes, random garbage) load exactly when their length is a positive multiple of 3073 and
 * every label byte is below 10, and otherwise fail with NG_ERR_FORMAT naming the file. */
static int write_file(const char *path, const unsigned char *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    if (n && fwrite(b, 1, n, f) != n) {
        fclose(f);
        return 0;
    }
    return fclose(f) == 0;
}

static int test_cifar_loader(void) {
    char dir[] = "/tmp/natgrad_cifar_XXXXXX", p1[64], p2[64];
    const int R = 3073;
    unsigned char *buf = (unsigned char *)malloc((size_t)R * 6 + 10);
    const uint64_t key = ng_rng_stream_key(77, NG_RNG_TEST);
    ng_dataset d;
    int i, k, it;
    NGT_CHECK(buf && mkdtemp(dir) != NULL, "temporary directory");
    snprintf(p1, sizeof p1, "%s/a.bin", dir);
    snprintf(p2, sizeof p2, "%s/b.bin", dir);
    for (k = 0; k < 4; k++) {
        buf[(size_t)k * R] = (unsigned char)(k * 3 % 10);
        for (i = 0; i < 3072; i++) buf[(size_t)k * R + 1 + i] = (unsigned char)((i * 7 + k * 31) & 255);
    }
    NGT_CHECK(write_file(p1, buf, (size_t)R * 4) && write_file(p2, buf, (size_t)R * 2), "writing %s", p1);
    {
        const char *files[2] = {p1, p2};
        NGT_OK(ng_dataset_load_cifar10(files, 2, &d));
        NGT_CHECK(d.n == 6 && d.dim == 3072 && d.height == 32 && d.width == 32, "n %d dim %d %dx%d", d.n, d.dim, d.height, d.width);
        for (k = 0; k < 6; k++) {
            const int src = k < 4 ? k : k - 4;
            NGT_CHECK(d.labels[k] == src * 3 % 10, "label %d = %d", k, d.labels[k]);
            for (i = 0; i < 3072; i += 97)
                NGT_CHECK(d.x[(size_t)k * 3072 + i] == (float)((i * 7 + src * 31) & 255) / 255.0f, "pixel %d of image %d", i, k);
        }
        ng_dataset_free(&d);
    }
    for (it = 0; it < 300; it++) {
        const int kind = it % 4;
        size_t len = 0;
        int want_ok, bad_label = 0;
        ng_status st;
        if (kind == 0) { /* truncation of 2 valid records */
            for (k = 0; k < 2; k++) buf[(size_t)k * R] = (unsigned char)k;
            len = (size_t)(ng_rng_uniform(key, (uint64_t)it, 0) * (2 * R + 1));
        } else if (kind == 1) { /* whole records, one random label byte */
            len = (size_t)R * (1 + (size_t)(ng_rng_uniform(key, (uint64_t)it, 1) * 3));
            for (k = 0; k < (int)(len / R); k++) buf[(size_t)k * R] = (unsigned char)(ng_rng_uniform(key, (uint64_t)it, 2 + k) * 12);
        } else { /* garbage of random length (kind 3: near a multiple of the record) */
            len = kind == 2 ? (size_t)(ng_rng_uniform(key, (uint64_t)it, 1) * 3 * R) : (size_t)R * 2 + (it % 3) - 1;
            for (i = 0; i < (int)len; i++) buf[i] = (unsigned char)(ng_rng_uniform(key, (uint64_t)it, 10 + (uint64_t)i) * 256);
        }
        for (k = 0; k < (int)(len / R); k++) bad_label |= buf[(size_t)k * R] > 9;
        want_ok = len > 0 && len % R == 0 && !bad_label;
        NGT_CHECK(write_file(p1, buf, len), "writing %s", p1);
        {
            const char *files[1] = {p1};
            st = ng_dataset_load_cifar10(files, 1, &d);
        }
        if (want_ok) {
            NGT_CHECK(st == NG_OK && d.n == (int)(len / R), "fuzz %d: %zu bytes refused: %s", it, len, ng_last_error());
            ng_dataset_free(&d);
        } else {
            NGT_CHECK(st == NG_ERR_FORMAT, "fuzz %d (kind %d): %zu bytes, bad label %d: status %d, want a format error", it, kind, len,
                      bad_label, (int)st);
            NGT_CHECK(strstr(ng_last_error(), p1) != NULL, "fuzz %d: message does not name the file: %s", it, ng_last_error());
            NGT_CHECK(d.x == NULL && d.labels == NULL, "fuzz %d: a failed load left data behind", it);
        }
    }
    {
        const char *files[1] = {"/nonexistent/natgrad/data_batch_1.bin"};
        NGT_CHECK(ng_dataset_load_cifar10(files, 1, &d) == NG_ERR_IO && strstr(ng_last_error(), "data_batch_1.bin"), "missing file");
    }
    unlink(p1);
    unlink(p2);
    rmdir(dir);
    free(buf);
    return NGT_PASS;
}

int main(void) {
    if (ngt_open_backends(&g_cpu, &g_cuda, g_cuda_reason, sizeof g_cuda_reason)) return 1;
    NGT_RUN(test_spec);
    NGT_RUN(test_gradient_cpu);
    NGT_RUN(test_chunks);
    NGT_RUN(test_whiten_cpu);
    NGT_RUN(test_whiten_bn);
    NGT_RUN(test_evaluate);
    NGT_RUN(test_bad_input);
    NGT_RUN(test_cifar_loader);
    NGT_RUN(test_gradient_cuda);
    NGT_RUN(test_whiten_cuda);
    ng_backend_free(g_cuda);
    ng_backend_free(g_cpu);
    return ngt_finish();
}
