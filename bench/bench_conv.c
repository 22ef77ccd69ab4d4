/* bench_conv.c: im2col + gemm (what natgrad's conv layers run) against a direct convolution on the
 * CPU, for the conv shapes of the Fashion-MNIST conv experiment (bench/conv_fashion.sh: a chunk of 64
 * images, c16 on 1 x 28 x 28 with padding 1, c32k3p0 on 16 x 14 x 14), forward and the two backward
 * products (make bench-conv). Variants, each checked against a float64 direct loop written here:
 *   im2col + gemm   the CPU backend's conv_gather IM2COL op and one strided batched gemm
 *                   (A_b (P, c') = col_b (P, K) W^T, W shared), the bias a rank-1 batched gemm:
 *                   exactly host/models/cnn.c's forward; backward dW by one gemm per image on the
 *                   im2col matrix, dx by a batched gemm and COL2IM
 *   direct          a straightforward direct kernel: OpenMP over (image, output map), the window's
 *                   taps outermost and the output row innermost (unit stride for stride 1, so the
 *                   compiler vectorises it), padding handled by clipping the row range; backward
 *                   dx by the same loops transposed (over (image, input map)), dW over (map, tap)
 * GFLOP/s = 2 n c' P K / time; the sgemm rate of the same process (the backend's gemm on 1024^3)
 * is printed next to them. A second table times the conv engine's curvature products on the
 * experiment's nets (natgrad/cnn.h: J v, G v, H v against a gradient on the same batch of 64 images).
 * Prints markdown tables; writes --csv.
 * usage: bench_conv [--reps N] [--csv PATH] */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_args.h"
#include "natgrad/backend.h"
#include "natgrad/cnn.h"
#include "natgrad/log.h"
#include "natgrad/nn_types.h"

static int reps = 5;
static FILE *csv;

typedef struct shape {
    const char *name;
    int n, c, h, w, co, k, stride, pad;
} shape;

static int odim(int in, int k, int s, int p) { return (in + 2 * p - k) / s + 1; }

/* ---- float64 reference -------------------------------------------------------------------- */
static void ref_forward(const shape *s, const float *x, const float *W, const float *b, double *y) {
    const int ho = odim(s->h, s->k, s->stride, s->pad), wo = odim(s->w, s->k, s->stride, s->pad);
    int n, o, c, i, j, oh, ow;
    for (n = 0; n < s->n; n++)
        for (o = 0; o < s->co; o++)
            for (oh = 0; oh < ho; oh++)
                for (ow = 0; ow < wo; ow++) {
                    double acc = b[o];
                    for (c = 0; c < s->c; c++)
                        for (i = 0; i < s->k; i++)
                            for (j = 0; j < s->k; j++) {
                                const int ih = oh * s->stride - s->pad + i, iw = ow * s->stride - s->pad + j;
                                if (ih < 0 || ih >= s->h || iw < 0 || iw >= s->w) continue;
                                acc += (double)W[o + (size_t)s->co * ((c * s->k + i) * s->k + j)] *
                                       x[(((size_t)n * s->c + c) * s->h + ih) * s->w + iw];
                            }
                    y[(((size_t)n * s->co + o) * ho + oh) * wo + ow] = acc;
                }
}

/* dx (n, c, h, w) = W^T dy summed over windows; dW (co, K) = sum dy x */
static void ref_backward(const shape *s, const float *x, const float *W, const float *dy, double *dx, double *dW) {
    const int ho = odim(s->h, s->k, s->stride, s->pad), wo = odim(s->w, s->k, s->stride, s->pad);
    const size_t K = (size_t)s->c * s->k * s->k;
    int n, o, c, i, j, oh, ow;
    memset(dx, 0, (size_t)s->n * s->c * s->h * s->w * sizeof(double));
    memset(dW, 0, (size_t)s->co * K * sizeof(double));
    for (n = 0; n < s->n; n++)
        for (o = 0; o < s->co; o++)
            for (oh = 0; oh < ho; oh++)
                for (ow = 0; ow < wo; ow++) {
                    const double g = dy[(((size_t)n * s->co + o) * ho + oh) * wo + ow];
                    for (c = 0; c < s->c; c++)
                        for (i = 0; i < s->k; i++)
                            for (j = 0; j < s->k; j++) {
                                const int ih = oh * s->stride - s->pad + i, iw = ow * s->stride - s->pad + j;
                                const size_t kk = (size_t)(c * s->k + i) * s->k + j, px = (((size_t)n * s->c + c) * s->h + ih) * s->w + iw;
                                if (ih < 0 || ih >= s->h || iw < 0 || iw >= s->w) continue;
                                dx[px] += (double)W[o + (size_t)s->co * kk] * g;
                                dW[o + (size_t)s->co * kk] += (double)x[px] * g;
                            }
                }
}

/* ---- direct kernels ------------------------------------------------------------------------ */

/* Output columns ow whose input column ow s - p + j lies in [0, w): [*lo, *hi). */
static void clip(int wo, int w, int s, int p, int j, int *lo, int *hi) {
    int a = 0, b = wo;
    while (a < b && a * s - p + j < 0) a++;
    while (b > a && (b - 1) * s - p + j >= w) b--;
    *lo = a, *hi = b;
}

static void direct_forward(const shape *s, const float *x, const float *W, const float *b, float *y) {
    const int ho = odim(s->h, s->k, s->stride, s->pad), wo = odim(s->w, s->k, s->stride, s->pad);
    const int N = s->n * s->co, st = s->stride;
    int t;
#pragma omp parallel for schedule(static)
    for (t = 0; t < N; t++) {
        const int n = t / s->co, o = t % s->co;
        float *yo = y + (size_t)t * ho * wo;
        int c, i, j, oh, ow, q;
        for (q = 0; q < ho * wo; q++) yo[q] = b[o];
        for (c = 0; c < s->c; c++) {
            const float *xc = x + ((size_t)n * s->c + c) * s->h * s->w;
            for (i = 0; i < s->k; i++)
                for (j = 0; j < s->k; j++) {
                    const float wv = W[o + (size_t)s->co * ((c * s->k + i) * s->k + j)];
                    int lo, hi;
                    clip(wo, s->w, st, s->pad, j, &lo, &hi);
                    for (oh = 0; oh < ho; oh++) {
                        const int ih = oh * st - s->pad + i;
                        const float *xr;
                        float *yr = yo + (size_t)oh * wo;
                        if (ih < 0 || ih >= s->h) continue;
                        xr = xc + (size_t)ih * s->w - s->pad + j;
                        if (st == 1)
                            for (ow = lo; ow < hi; ow++) yr[ow] += wv * xr[ow];
                        else
                            for (ow = lo; ow < hi; ow++) yr[ow] += wv * xr[ow * st];
                    }
                }
        }
    }
}

static void direct_backward(const shape *s, const float *x, const float *W, const float *dy, float *dx, float *dW) {
    const int ho = odim(s->h, s->k, s->stride, s->pad), wo = odim(s->w, s->k, s->stride, s->pad);
    const int st = s->stride, K = s->c * s->k * s->k;
    int t;
    /* dx: parallel over (image, input map); taps outer, rows inner (scatter within one map only) */
#pragma omp parallel for schedule(static)
    for (t = 0; t < s->n * s->c; t++) {
        const int n = t / s->c, c = t % s->c;
        float *dxc = dx + (size_t)t * s->h * s->w;
        int o, i, j, oh, ow;
        memset(dxc, 0, (size_t)s->h * s->w * sizeof(float));
        for (o = 0; o < s->co; o++) {
            const float *dyo = dy + ((size_t)n * s->co + o) * ho * wo;
            for (i = 0; i < s->k; i++)
                for (j = 0; j < s->k; j++) {
                    const float wv = W[o + (size_t)s->co * ((c * s->k + i) * s->k + j)];
                    int lo, hi;
                    clip(wo, s->w, st, s->pad, j, &lo, &hi);
                    for (oh = 0; oh < ho; oh++) {
                        const int ih = oh * st - s->pad + i;
                        float *xr;
                        const float *gr = dyo + (size_t)oh * wo;
                        if (ih < 0 || ih >= s->h) continue;
                        xr = dxc + (size_t)ih * s->w - s->pad + j;
                        if (st == 1)
                            for (ow = lo; ow < hi; ow++) xr[ow] += wv * gr[ow];
                        else
                            for (ow = lo; ow < hi; ow++) xr[ow * st] += wv * gr[ow];
                    }
                }
        }
    }
    /* dW: parallel over (output map, tap): sum over images and output pixels */
#pragma omp parallel for schedule(static)
    for (t = 0; t < s->co * K; t++) {
        const int o = t % s->co, kk = t / s->co, c = kk / (s->k * s->k), i = (kk / s->k) % s->k, j = kk % s->k;
        int n, oh, ow, lo, hi;
        float acc = 0.0f;
        clip(wo, s->w, st, s->pad, j, &lo, &hi);
        for (n = 0; n < s->n; n++) {
            const float *xc = x + ((size_t)n * s->c + c) * s->h * s->w, *dyo = dy + ((size_t)n * s->co + o) * ho * wo;
            for (oh = 0; oh < ho; oh++) {
                const int ih = oh * st - s->pad + i;
                const float *xr, *gr = dyo + (size_t)oh * wo;
                if (ih < 0 || ih >= s->h) continue;
                xr = xc + (size_t)ih * s->w - s->pad + j;
                if (st == 1)
                    for (ow = lo; ow < hi; ow++) acc += gr[ow] * xr[ow];
                else
                    for (ow = lo; ow < hi; ow++) acc += gr[ow] * xr[ow * st];
            }
        }
        dW[o + (size_t)s->co * kk] = acc;
    }
}

/* ---- im2col + gemm through the backend (host/models/cnn.c's calls) -------------------------- */
typedef struct bufs {
    ng_backend *be;
    const shape *s;
    float *x, *W, *b, *y, *col, *ones, *dy, *dx, *dW;
} bufs;

static ng_status gather(bufs *u, int mode, const float *x, const float *g, float *out) {
    ng_op_args a = {.op = NG_OP_CONV_GATHER};
    a.conv_gather.mode = mode;
    a.conv_gather.s.n = u->s->n, a.conv_gather.s.c = u->s->c, a.conv_gather.s.h = u->s->h, a.conv_gather.s.w = u->s->w;
    a.conv_gather.s.kh = a.conv_gather.s.kw = u->s->k, a.conv_gather.s.stride = u->s->stride, a.conv_gather.s.pad = u->s->pad;
    a.conv_gather.x = x, a.conv_gather.g = g, a.conv_gather.out = out;
    return ng_run_op(u->be, &a);
}

/* the gemms of the forward pass alone (col already holds the im2col matrices) */
static ng_status gemm_only(bufs *u) {
    const shape *s = u->s;
    const int P = odim(s->h, s->k, s->stride, s->pad) * odim(s->w, s->k, s->stride, s->pad), K = s->c * s->k * s->k;
    NG_TRY(ng_gemm_strided_batched(u->be, 0, 1, P, s->co, K, 1.0f, u->col, P, (long long)P * K, u->W, s->co, 0, 0.0f, u->y, P,
                                   (long long)P * s->co, s->n));
    return ng_gemm_strided_batched(u->be, 0, 0, P, s->co, 1, 1.0f, u->ones, P, 0, u->b, 1, 0, 1.0f, u->y, P, (long long)P * s->co,
                                   s->n);
}

static ng_status gemm_forward(bufs *u) {
    NG_TRY(gather(u, NG_CONV_IM2COL, u->x, NULL, u->col));
    return gemm_only(u);
}

static ng_status gemm_backward(bufs *u) {
    const shape *s = u->s;
    const int P = odim(s->h, s->k, s->stride, s->pad) * odim(s->w, s->k, s->stride, s->pad), K = s->c * s->k * s->k;
    int b;
    NG_TRY(gather(u, NG_CONV_IM2COL, u->x, NULL, u->col));
    for (b = 0; b < s->n; b++)
        NG_TRY(ng_gemm(u->be, 1, 0, s->co, K, P, 1.0f, u->dy + (size_t)b * P * s->co, P, u->col + (size_t)b * P * K, P,
                       b ? 1.0f : 0.0f, u->dW, s->co));
    NG_TRY(ng_gemm_strided_batched(u->be, 0, 0, P, K, s->co, 1.0f, u->dy, P, (long long)P * s->co, u->W, s->co, 0, 0.0f, u->col,
                                   P, (long long)P * K, s->n));
    return gather(u, NG_CONV_COL2IM, NULL, u->col, u->dx);
}

/* ---- timing and checks --------------------------------------------------------------------- */
typedef ng_status (*run_fn)(void *);
static ng_status run_gemm_fwd(void *p) { return gemm_forward((bufs *)p); }
static ng_status run_gemm_bwd(void *p) { return gemm_backward((bufs *)p); }
static ng_status run_im2col(void *p) {
    bufs *u = (bufs *)p;
    return gather(u, NG_CONV_IM2COL, u->x, NULL, u->col);
}
static ng_status run_gemm_only(void *p) { return gemm_only((bufs *)p); }
static ng_status run_direct_fwd(void *p) {
    bufs *u = (bufs *)p;
    direct_forward(u->s, u->x, u->W, u->b, u->y);
    return NG_OK;
}
static ng_status run_direct_bwd(void *p) {
    bufs *u = (bufs *)p;
    direct_backward(u->s, u->x, u->W, u->dy, u->dx, u->dW);
    return NG_OK;
}

static double timeit(run_fn f, void *ctx, ng_backend *be) {
    double best = 1e30;
    int r;
    if (f(ctx) != NG_OK) return NAN; /* warm-up */
    for (r = 0; r < reps; r++) {
        double t0 = ng_time_s(), t;
        if (f(ctx) != NG_OK) return NAN;
        ng_synchronize(be);
        t = ng_time_s() - t0;
        if (t < best) best = t;
    }
    return 1e3 * best;
}

/* max |a - r| / max |r| */
static double rel(const float *a, const double *r, size_t n) {
    double d = 0.0, big = 0.0;
    size_t i;
    for (i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - r[i]));
        big = fmax(big, fabs(r[i]));
    }
    return big > 0.0 ? d / big : d;
}

static int bad = 0;
/* flops 0: a part without arithmetic (the IM2COL copy): no rate */
static void row(const shape *s, const char *pass, const char *variant, double err, double ms, double flops, double sgemm) {
    const double gf = flops / (ms * 1e-3) * 1e-9;
    const int ok = err <= 1e-4; /* float32 sums of up to 50,000 terms (dW of conv1) */
    bad |= !ok;
    if (flops <= 0.0)
        printf("| %s | %s | %s | %s | %.3f | - | - | %.1f |\n", s->name, pass, variant, err == 0.0 ? "copy (exact)" : "?", ms, sgemm);
    else
        printf("| %s | %s | %s | %.1e%s | %.3f | %.2f | %.0f %% | %.1f |\n", s->name, pass, variant, err, ok ? "" : " DIFFERS", ms, gf,
               100.0 * gf / sgemm, sgemm);
    if (csv) fprintf(csv, "%s,%s,%s,%.3e,%.6f,%.4f,%.4f\n", s->name, pass, variant, err, ms, gf, sgemm);
}

static float frand(unsigned *st) {
    *st = *st * 1664525u + 1013904223u;
    return (float)((*st >> 8) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

/* GFLOP/s of the backend's sgemm on 1024^3, best of reps after a warm-up (0 on failure) */
static double sgemm_rate(ng_backend *be) {
    const int n = 1024;
    float *a, *b, *c;
    double best = 1e30;
    int r;
    unsigned st = 7;
    size_t k;
    if (ng_alloc(be, (size_t)3 * n * n * sizeof(float), (void **)&a) != NG_OK) return 0.0;
    b = a + (size_t)n * n, c = b + (size_t)n * n;
    for (k = 0; k < (size_t)2 * n * n; k++) a[k] = frand(&st);
    for (r = 0; r <= reps; r++) {
        double t0 = ng_time_s(), t;
        if (ng_gemm(be, 0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n) != NG_OK) return 0.0;
        ng_synchronize(be);
        t = ng_time_s() - t0;
        if (r && t < best) best = t;
    }
    ng_free(be, a);
    return 2.0 * n * n * n / best * 1e-9;
}

int main(int argc, char **argv) {
    static const shape shapes[] = {
        {"conv1: 64 x 1x28x28 -> 16 maps, 3x3, pad 1", 64, 1, 28, 28, 16, 3, 1, 1},
        {"conv2: 64 x 16x14x14 -> 32 maps, 3x3, pad 0", 64, 16, 14, 14, 32, 3, 1, 0},
    };
    const char *csv_path = "bench/results/bench_conv.csv";
    ng_backend *be;
    double sgemm;
    int i;
    ng_cpu_blas_reexec(argc, argv);
    {
        const ba_opt opts[] = {
            BA_I("--reps", &reps, 1, INT_MAX, "N", "timed repetitions of each method (the best counts)"),
            BA_S("--csv", &csv_path, "PATH", "CSV file written"),
            BA_END};
        const int rc = ba_parse("bench_conv", "im2col + gemm against a direct convolution on the CPU at the Fashion-MNIST "
                                              "conv shapes (make bench-conv).", opts, argc, argv);
        if (rc != BA_RUN) return rc;
    }
    if (ng_backend_cpu_init(&be) != NG_OK) return fprintf(stderr, "bench_conv: %s\n", ng_last_error()), 1;
    csv = fopen(csv_path, "w");
    if (!csv) return fprintf(stderr, "bench_conv: cannot write %s\n", csv_path), 1;
    fprintf(csv, "shape,pass,variant,max_rel_err,ms,gflops,sgemm_gflops\n");
    /* the sgemm rate of this process (the backend's gemm on 1024 x 1024 x 1024, best of reps),
     * measured again before each shape: on a shared machine the rate moves */
    printf("CPU backend: %s; OpenMP threads %d; sgemm: the backend's gemm on 1024^3, best of %d, measured just before each "
           "shape's rows\n\n", be->description, omp_get_max_threads(), reps);
    printf("| shape (chunk of images) | pass | variant | max rel. error vs float64 | ms (best of %d) | GFLOP/s | of sgemm | sgemm GFLOP/s |\n",
           reps);
    printf("|---|---|---|---|---|---|---|---|\n");
    for (i = 0; i < (int)(sizeof shapes / sizeof shapes[0]); i++) {
        const shape *s = &shapes[i];
        const int ho = odim(s->h, s->k, s->stride, s->pad), wo = odim(s->w, s->k, s->stride, s->pad);
        const size_t P = (size_t)ho * wo, K = (size_t)s->c * s->k * s->k, nx = (size_t)s->n * s->c * s->h * s->w;
        const size_t ny = (size_t)s->n * s->co * P, nw = (size_t)s->co * K;
        const double flops = 2.0 * s->n * s->co * (double)P * K;
        double *ry = malloc(ny * sizeof(double)), *rdx = malloc(nx * sizeof(double)), *rdw = malloc(nw * sizeof(double));
        bufs u = {.be = be, .s = s};
        float *mem;
        unsigned st = 11 + (unsigned)i;
        size_t k;
        const size_t total = nx + nw + (size_t)s->co + ny + (size_t)s->n * P * K + P + ny + nx + nw;
        if (!ry || !rdx || !rdw || ng_alloc(be, total * sizeof(float), (void **)&mem) != NG_OK) return 1;
        if ((sgemm = sgemm_rate(be)) <= 0.0) return fprintf(stderr, "bench_conv: sgemm failed: %s\n", ng_last_error()), 1;
        u.x = mem, u.W = u.x + nx, u.b = u.W + nw, u.y = u.b + s->co, u.col = u.y + ny, u.ones = u.col + (size_t)s->n * P * K;
        u.dy = u.ones + P, u.dx = u.dy + ny, u.dW = u.dx + nx;
        for (k = 0; k < nx; k++) u.x[k] = frand(&st);
        for (k = 0; k < nw; k++) u.W[k] = 0.3f * frand(&st);
        for (k = 0; k < (size_t)s->co; k++) u.b[k] = 0.1f * frand(&st);
        for (k = 0; k < P; k++) u.ones[k] = 1.0f;
        for (k = 0; k < ny; k++) u.dy[k] = frand(&st);
        ref_forward(s, u.x, u.W, u.b, ry);
        ref_backward(s, u.x, u.W, u.dy, rdx, rdw);
        {
            double ms = timeit(run_gemm_fwd, &u, be);
            row(s, "forward", "im2col + gemm (natgrad)", rel(u.y, ry, ny), ms, flops, sgemm);
            ms = timeit(run_im2col, &u, be);
            row(s, "forward", "... of which the IM2COL op", 0.0, ms, 0.0, sgemm);
            ms = timeit(run_gemm_only, &u, be);
            row(s, "forward", "... of which the gemms (weights, bias)", rel(u.y, ry, ny), ms, flops, sgemm);
            memset(u.y, 0, ny * sizeof(float));
            ms = timeit(run_direct_fwd, &u, be);
            row(s, "forward", "direct", rel(u.y, ry, ny), ms, flops, sgemm);
            ms = timeit(run_gemm_bwd, &u, be);
            row(s, "backward (dW + dx)", "im2col + gemm (natgrad)", fmax(rel(u.dx, rdx, nx), rel(u.dW, rdw, nw)), ms,
                2.0 * flops, sgemm);
            memset(u.dx, 0, nx * sizeof(float));
            memset(u.dW, 0, nw * sizeof(float));
            ms = timeit(run_direct_bwd, &u, be);
            row(s, "backward (dW + dx)", "direct", fmax(rel(u.dx, rdx, nx), rel(u.dW, rdw, nw)), ms, 2.0 * flops, sgemm);
        }
        ng_free(be, mem);
        free(ry);
        free(rdx);
        free(rdw);
    }
    /* the curvature products of the conv engine against its gradient, on the experiment's nets */
    {
        static const char *const specs[] = {"c16-relu-mp2-c32k3p0-relu-mp2-d64-relu-d10",
                                            "c16-bn-relu-mp2-c32k3p0-bn-relu-mp2-d64-relu-d10"};
        const int m = 64;
        printf("\n| net (batch of %d 1x28x28 images, one chunk) | gradient ms | J v ms | G v ms | H v ms | J v / gradient | G v / gradient | H v / gradient |\n",
               m);
        printf("|---|---|---|---|---|---|---|---|\n");
        for (i = 0; i < 2; i++) {
            ng_cnn_config cfg;
            ng_model *net;
            float *x, *h;
            ng_tensor xd, v, o, jv;
            size_t np, k, rows;
            unsigned st = 5;
            double tg = 1e30, tj = 1e30, tv = 1e30, th = 1e30;
            int r;
            ng_cnn_config_default(&cfg);
            cfg.chunk = m;
            if (ng_cnn_parse_spec(specs[i], &cfg) != NG_OK || ng_cnn_create(be, &cfg, &net) != NG_OK)
                return fprintf(stderr, "bench_conv: %s\n", ng_last_error()), 1;
            np = ng_model_size(net);
            rows = (size_t)ng_cnn_batch_rows(net);
            if (ng_alloc(be, (rows * m + 3 * np + 10 * (size_t)m) * sizeof(float), (void **)&x) != NG_OK) return 1;
            xd = ng_tensor_matrix(x, (int)rows, m, (int)rows);
            v = ng_tensor_matrix(x + rows * m, (int)np, 1, (int)np);
            o = ng_tensor_matrix(v.data + np, (int)np, 1, (int)np);
            jv = ng_tensor_matrix(o.data + 2 * np, 10, m, 10);
            h = (float *)malloc((rows * m + np) * sizeof(float));
            for (k = 0; k < rows * (size_t)m; k++) h[k] = (k % rows) < 784 ? 0.5f * (frand(&st) + 1.0f) : ((k % rows) - 784 == (k / rows) % 10);
            if (ng_tensor_set(be, &xd, h) != NG_OK) return 1;
            for (k = 0; k < np; k++) h[k] = frand(&st);
            if (ng_tensor_set(be, &v, h) != NG_OK) return 1;
            for (r = 0; r <= reps; r++) {
                double t0 = ng_time_s(), t1, t2, t3, t4;
                ng_tensor o2 = ng_tensor_matrix(o.data + np, (int)np, 1, (int)np);
                if (ng_model_gradient(net, &xd, NULL) != NG_OK) return fprintf(stderr, "bench_conv: %s\n", ng_last_error()), 1;
                ng_synchronize(be);
                t1 = ng_time_s();
                if (ng_cnn_jvp(net, &v, &jv) != NG_OK) return fprintf(stderr, "bench_conv: %s\n", ng_last_error()), 1;
                ng_synchronize(be);
                t2 = ng_time_s();
                if (ng_cnn_gvp(net, &v, &o) != NG_OK) return fprintf(stderr, "bench_conv: %s\n", ng_last_error()), 1;
                ng_synchronize(be);
                t3 = ng_time_s();
                if (ng_cnn_hvp(net, &v, &o2) != NG_OK) return fprintf(stderr, "bench_conv: %s\n", ng_last_error()), 1;
                ng_synchronize(be);
                t4 = ng_time_s();
                if (r) { /* r = 0 warms up (and allocates H v's buffers) */
                    tg = fmin(tg, t1 - t0);
                    tj = fmin(tj, t2 - t1);
                    tv = fmin(tv, t3 - t2);
                    th = fmin(th, t4 - t3);
                }
            }
            printf("| %s | %.3f | %.3f | %.3f | %.3f | %.2f | %.2f | %.2f |\n", specs[i], 1e3 * tg, 1e3 * tj, 1e3 * tv, 1e3 * th,
                   tj / tg, tv / tg, th / tg);
            if (csv) fprintf(csv, "%s,products,gradient/jvp/gvp/hvp,0,%.6f,%.6f,%.6f,%.6f\n", specs[i], 1e3 * tg, 1e3 * tj, 1e3 * tv, 1e3 * th);
            free(h);
            ng_free(be, x);
            ng_cnn_free(net);
        }
    }
    fclose(csv);
    ng_backend_free(be);
    return bad ? 1 : 0;
}
