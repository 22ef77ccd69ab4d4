/* kernel_lab.c: the Philox-driven elementwise families, variant by variant, in llm.c's dev/cuda spirit
 * (make kernel-lab). Each family has numbered variants; every variant is checked against variant 1,
 * a plain scalar loop over the ng_math.h body written here (the reference), then timed over sizes.
 *   uniform (fill_uniform):  1 scalar ng_uniform4_at per group of 4, one thread
 *                            2 ng_uniform4_block (16 vectorised Philox lanes), one thread
 *                            3 the CPU backend's op (blocks of 16, OpenMP)
 *                            4 the CUDA backend's kernel (cuRAND Philox), when a GPU answers
 *   gibbs (gibbs_sample):    1 scalar: ng_gibbs_unit with ng_uniform_at per unit, one thread
 *                            2 the CPU backend's op;  3 the CUDA kernel, when a GPU answers
 *   bernoulli:               1 scalar;  2 the CPU backend's op;  3 the CUDA kernel
 * and one fusion (issue 13):
 *   momentum (NAG + average): 1 the five axpby ops nag.c / update.c issued before (reference);
 *                            2 NG_OP_MOMENTUM in one pass; on a GPU 3 the axpby kernels, 4 the fused one
 * CPU variants must equal the reference bit for bit; CUDA variants to within the device's expf
 * (probabilities within 2e-7 absolute, draws differing only where u is that close to p).
 * Prints a markdown table (variant, size, check, ms, G elements/s) and writes --csv.
 * usage: kernel_lab [--sizes 65536,1048576,4194304] [--reps N] [--csv PATH] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natgrad/backend.h"
#include "natgrad/log.h"
#include "ng_math.h"

static FILE *csv;
static int reps = 5;

/* best-of-reps time of f (ms); the backend is synchronised after each call */
typedef ng_status (*run_fn)(void *ctx);
static double timeit(run_fn f, void *ctx, ng_backend *be) {
    double best = 1e30;
    int r;
    for (r = 0; r < reps; r++) {
        double t0 = ng_time_s(), t;
        if (f(ctx) != NG_OK) return NAN;
        if (be) ng_synchronize(be);
        t = ng_time_s() - t0;
        if (t < best) best = t;
    }
    return 1e3 * best;
}

static void row(const char *family, const char *variant, size_t n, const char *check, double ms) {
    printf("| %s | %s | %zu | %s | %.3f | %.3f |\n", family, variant, n, check, ms, ms > 0 ? (double)n / (ms * 1e-3) * 1e-9 : 0.0);
    if (csv) fprintf(csv, "%s,\"%s\",%zu,%s,%.6f\n", family, variant, n, check, ms);
}

/* ---- uniform ------------------------------------------------------------------------------- */
typedef struct uctx { size_t n; float *out; ng_backend *be; float *dev; } uctx;
static const uint64_t KEY = 0x5EED5EEDull, STEP = 11;

static ng_status u_scalar(void *p) {
    uctx *c = (uctx *)p;
    size_t g, ng = (c->n + 3) / 4, j;
    for (g = 0; g < ng; g++) {
        float u[4];
        ng_uniform4_at(KEY, STEP, g, u);
        for (j = 0; j < 4 && 4 * g + j < c->n; j++) c->out[4 * g + j] = u[j];
    }
    return NG_OK;
}
static ng_status u_block(void *p) {
    uctx *c = (uctx *)p;
    size_t b, nb = (c->n + 63) / 64, j;
    for (b = 0; b < nb; b++) {
        float u[64];
        ng_uniform4_block(KEY, STEP, (uint64_t)b * NG_PHILOX_LANES, u);
        for (j = 0; j < 64 && 64 * b + j < c->n; j++) c->out[64 * b + j] = u[j];
    }
    return NG_OK;
}
static ng_status u_backend(void *p) {
    uctx *c = (uctx *)p;
    return ng_fill_uniform(c->be, c->n, c->dev, KEY, STEP);
}

/* ---- gibbs --------------------------------------------------------------------------------- */
typedef struct gctx {
    int rows, cols;
    float *pre, *bias, *prob, *smp;       /* host */
    ng_backend *be;
    float *dpre, *dbias, *dprob, *dsmp;   /* device of be */
} gctx;
static ng_status g_scalar(void *p) {
    gctx *c = (gctx *)p;
    long i, n = (long)c->rows * c->cols;
    for (i = 0; i < n; i++) {
        int r = (int)(i % c->rows);
        ng_gibbs_unit(c->pre[i], c->bias[r], 1.0f, 0.0f, ng_uniform_at(KEY, STEP, (uint64_t)i), &c->prob[i], &c->smp[i]);
    }
    return NG_OK;
}
static ng_status g_backend(void *p) {
    gctx *c = (gctx *)p;
    return ng_gibbs_sample(c->be, c->rows, c->cols, c->dpre, c->rows, c->dbias, 1.0f, NULL, c->dprob, c->rows, c->dsmp,
                           c->rows, KEY, STEP);
}

/* ---- bernoulli ----------------------------------------------------------------------------- */
typedef struct bctx { size_t n; float *p, *out; ng_backend *be; float *dp, *dout; } bctx;
static ng_status b_scalar(void *q) {
    bctx *c = (bctx *)q;
    size_t i;
    for (i = 0; i < c->n; i++) c->out[i] = ng_bernoulli_draw(c->p[i], ng_uniform_at(KEY, STEP, (uint64_t)i));
    return NG_OK;
}
static ng_status b_backend(void *q) {
    bctx *c = (bctx *)q;
    return ng_bernoulli(c->be, c->n, c->dp, c->dout, KEY, STEP);
}

/* ---- momentum: NAG's step with iterate averaging ------------------------------------------------
 * variant 1: the five axpby ops nag.c and update.c issued before NG_OP_MOMENTUM (v, p twice, the
 * average twice); variant 2: the fused op, one pass. Constants of update 300 of Sutskever et al.'s
 * schedule (mu_t = 0.75, mu_{t+1} = 0.75), lr 0.01, averaging xi = 0.99. */
typedef struct mctx { size_t n; ng_backend *be; float *d, *v, *p, *bar; } mctx;
static const float M_A = -0.01f, M_MU = 0.75f, M_C = 0.75f, M_XI = 0.99f;
static ng_status m_chain(void *q) {
    mctx *c = (mctx *)q;
    const float w = (float)(1.0 - (double)M_XI), wc = (float)((1.0 - (double)M_XI) * (double)-M_C);
    NG_TRY(ng_axpby(c->be, c->n, M_A, c->d, M_MU, c->v));
    NG_TRY(ng_axpby(c->be, c->n, M_C, c->v, 1.0f, c->p));
    NG_TRY(ng_axpby(c->be, c->n, M_A, c->d, 1.0f, c->p));
    NG_TRY(ng_axpby(c->be, c->n, w, c->p, M_XI, c->bar));
    return ng_axpby(c->be, c->n, wc, c->v, 1.0f, c->bar);
}
static ng_status m_fused(void *q) {
    mctx *c = (mctx *)q;
    ng_op_args o;
    memset(&o, 0, sizeof o);
    o.op = NG_OP_MOMENTUM;
    o.momentum.n = c->n;
    o.momentum.d = c->d;
    o.momentum.v = c->v;
    o.momentum.p = c->p;
    o.momentum.bar = c->bar;
    o.momentum.a = M_A;
    o.momentum.mu = M_MU;
    o.momentum.c = M_C;
    o.momentum.nesterov = 1;
    o.momentum.xi = M_XI;
    o.momentum.w = (float)(1.0 - (double)M_XI);
    o.momentum.wc = (float)((1.0 - (double)M_XI) * (double)-M_C);
    return ng_run_op(c->be, &o);
}
/* d, v, p, bar of be from the host array h (4 n floats), one step of f, the results into out (3 n) */
static ng_status m_once(run_fn f, mctx *c, const float *h, float *out) {
    NG_TRY(ng_set(c->be, c->d, h, c->n * 4));
    NG_TRY(ng_set(c->be, c->v, h + c->n, c->n * 4));
    NG_TRY(ng_set(c->be, c->p, h + 2 * c->n, c->n * 4));
    NG_TRY(ng_set(c->be, c->bar, h + 3 * c->n, c->n * 4));
    NG_TRY(f(c));
    NG_TRY(ng_get(c->be, out, c->v, c->n * 4));
    NG_TRY(ng_get(c->be, out + c->n, c->p, c->n * 4));
    return ng_get(c->be, out + 2 * c->n, c->bar, c->n * 4);
}

static const char *same_bits(const float *a, const float *b, size_t n) {
    return memcmp(a, b, n * sizeof(float)) == 0 ? "bit-identical" : "DIFFERS";
}
/* CUDA against the reference: probabilities within tol; draws may differ only where the uniform
 * lies within tol of the probability */
static const char *close_draws(const float *pr, const float *sr, const float *pc, const float *sc, size_t n, float tol,
                               char *buf, size_t len) {
    size_t i, bad = 0;
    double md = 0.0;
    for (i = 0; i < n; i++) {
        double d = pr ? fabs((double)pr[i] - (double)pc[i]) : 0.0;
        if (d > md) md = d;
        if (d > tol) bad++;
        if (sr[i] != sc[i]) {
            float u = ng_uniform_at(KEY, STEP, (uint64_t)i), p = pr ? pr[i] : 0.5f;
            if (!pr || fabsf(u - p) > tol) bad++;
        }
    }
    if (bad) snprintf(buf, len, "DIFFERS (%zu, max |dp| %.1e)", bad, md);
    else snprintf(buf, len, "ok (max |dp| %.1e)", md);
    return buf;
}

static int fail;
#define CHECKED(s) (strncmp((s), "DIFFERS", 7) == 0 ? (fail = 1, (s)) : (s))

int main(int argc, char **argv) {
    const char *sizes_s = "65536,1048576,4194304", *csv_path = "bench/results/kernel_lab.csv";
    ng_backend *cpu = NULL, *gpu = NULL;
    char buf[128];
    int i;
    ng_cpu_blas_reexec(argc, argv);
    for (i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--sizes")) sizes_s = argv[i + 1];
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--csv")) csv_path = argv[i + 1];
        else return fprintf(stderr, "usage: kernel_lab [--sizes N,N,...] [--reps N] [--csv PATH]\n"), 2;
    }
    if (i < argc || reps < 1) return fprintf(stderr, "usage: kernel_lab [--sizes N,N,...] [--reps N] [--csv PATH]\n"), 2;
    if (ng_backend_cpu_init(&cpu) != NG_OK) return fprintf(stderr, "kernel_lab: %s\n", ng_last_error()), 1;
    if (ng_backend_cuda_init(-1, &gpu) != NG_OK) {
        fprintf(stderr, "kernel_lab: no CUDA variants: %s\n", ng_last_error());
        gpu = NULL;
    }
    csv = fopen(csv_path, "w");
    if (!csv) return fprintf(stderr, "kernel_lab: cannot write %s\n", csv_path), 1;
    fprintf(csv, "family,variant,n,check,ms\n");
    printf("CPU backend: %s%s%s\n\n", cpu->description, gpu ? "; CUDA backend: " : "", gpu ? gpu->description : "");
    printf("| family | variant | elements | check against variant 1 | ms (best of %d) | G elements/s |\n", reps);
    printf("|---|---|---|---|---|---|\n");
    {
        const char *p = sizes_s;
        /* the CPU op on its hand-written AVX-512 loops (x86-64-v4 CPUs) and on the compiler's clones */
        const int avx512 = ng_cpu_use_avx512(1);
        int path;
        while (*p) {
            size_t n = (size_t)strtoull(p, (char **)&p, 10), k;
            int rows = 500, cols = (int)((n + 499) / 500);
            float *ref, *out, *ref2, *pr, *sr;
            if (*p == ',') p++;
            if (n < 1) break;
            n = (size_t)rows * cols; /* whole columns for the Gibbs family */
            ref = malloc(n * 4); out = malloc(n * 4); ref2 = malloc(n * 4); pr = malloc(n * 4); sr = malloc(n * 4);
            if (!ref || !out || !ref2 || !pr || !sr) return fprintf(stderr, "kernel_lab: out of memory\n"), 1;
            /* uniform */
            {
                uctx c = {n, ref, cpu, NULL};
                double ms = timeit(u_scalar, &c, NULL);
                row("uniform", "1 scalar ng_uniform4_at, 1 thread", n, "reference", ms);
                c.out = out;
                ms = timeit(u_block, &c, NULL);
                row("uniform", "2 ng_uniform4_block (16 lanes), 1 thread", n, CHECKED(same_bits(ref, out, n)), ms);
                if (ng_alloc(cpu, n * 4, (void **)&c.dev) != NG_OK) return 1;
                for (path = avx512; path >= 0; path--) {
                    ng_cpu_use_avx512(path);
                    ms = timeit(u_backend, &c, cpu);
                    ng_get(cpu, out, c.dev, n * 4);
                    row("uniform", path ? "3 CPU backend op (OpenMP), hand-written AVX-512" : "3c CPU backend op (OpenMP), compiler clones",
                        n, CHECKED(same_bits(ref, out, n)), ms);
                }
                ng_cpu_use_avx512(avx512);
                ng_free(cpu, c.dev);
                if (gpu) {
                    c.be = gpu;
                    if (ng_alloc(gpu, n * 4, (void **)&c.dev) != NG_OK) return 1;
                    ms = timeit(u_backend, &c, gpu);
                    ng_get(gpu, out, c.dev, n * 4);
                    row("uniform", "4 CUDA kernel", n, CHECKED(same_bits(ref, out, n)), ms);
                    ng_free(gpu, c.dev);
                }
            }
            /* gibbs */
            {
                gctx c;
                float *bias = malloc((size_t)rows * 4);
                double ms;
                ng_backend *bes[2] = {cpu, gpu};
                int b;
                memset(&c, 0, sizeof c);
                c.rows = rows;
                c.cols = cols;
                for (k = 0; k < n; k++) ref2[k] = 8.0f * ng_uniform_at(77, 1, k) - 4.0f; /* pre-activations */
                for (k = 0; k < (size_t)rows; k++) bias[k] = 0.002f * (float)k - 0.5f;
                c.pre = ref2; c.bias = bias; c.prob = pr; c.smp = sr;
                ms = timeit(g_scalar, &c, NULL);
                row("gibbs", "1 scalar ng_gibbs_unit + ng_uniform_at, 1 thread", n, "reference", ms);
                for (b = 0; b < 2; b++) {
                    ng_backend *be = bes[b];
                    if (!be) continue;
                    c.be = be;
                    if (ng_alloc(be, n * 4, (void **)&c.dpre) || ng_alloc(be, (size_t)rows * 4, (void **)&c.dbias) ||
                        ng_alloc(be, n * 4, (void **)&c.dprob) || ng_alloc(be, n * 4, (void **)&c.dsmp))
                        return fprintf(stderr, "kernel_lab: %s\n", ng_last_error()), 1;
                    ng_set(be, c.dpre, ref2, n * 4);
                    ng_set(be, c.dbias, bias, (size_t)rows * 4);
                    for (path = b == 0 ? avx512 : 0; path >= 0; path--) {
                        if (b == 0) ng_cpu_use_avx512(path);
                        ms = timeit(g_backend, &c, be);
                        ng_get(be, out, c.dprob, n * 4);
                        ng_get(be, ref, c.dsmp, n * 4);
                        if (b == 0)
                            row("gibbs", path ? "2 CPU backend op (OpenMP), hand-written AVX-512" : "2c CPU backend op (OpenMP), compiler clones (16-lane Philox)", n,
                                CHECKED(memcmp(out, pr, n * 4) == 0 && memcmp(ref, sr, n * 4) == 0 ? "bit-identical" : "DIFFERS"), ms);
                        else
                            row("gibbs", "3 CUDA kernel", n, CHECKED(close_draws(pr, sr, out, ref, n, 2e-7f, buf, sizeof buf)), ms);
                    }
                    ng_cpu_use_avx512(avx512);
                    ng_free(be, c.dpre); ng_free(be, c.dbias); ng_free(be, c.dprob); ng_free(be, c.dsmp);
                }
                free(bias);
            }
            /* bernoulli */
            {
                bctx c;
                double ms;
                ng_backend *bes[2] = {cpu, gpu};
                int b;
                for (k = 0; k < n; k++) ref2[k] = ng_uniform_at(78, 1, k); /* probabilities */
                c.n = n; c.p = ref2; c.out = sr;
                ms = timeit(b_scalar, &c, NULL);
                row("bernoulli", "1 scalar, 1 thread", n, "reference", ms);
                for (b = 0; b < 2; b++) {
                    ng_backend *be = bes[b];
                    if (!be) continue;
                    c.be = be;
                    if (ng_alloc(be, n * 4, (void **)&c.dp) || ng_alloc(be, n * 4, (void **)&c.dout)) return 1;
                    ng_set(be, c.dp, ref2, n * 4);
                    for (path = b == 0 ? avx512 : 0; path >= 0; path--) {
                        if (b == 0) ng_cpu_use_avx512(path);
                        ms = timeit(b_backend, &c, be);
                        ng_get(be, out, c.dout, n * 4);
                        row("bernoulli", b != 0 ? "3 CUDA kernel" : path ? "2 CPU backend op (OpenMP), hand-written AVX-512" : "2c CPU backend op (OpenMP), compiler clones (16-lane Philox)", n,
                            CHECKED(same_bits(sr, out, n)), ms);
                    }
                    ng_cpu_use_avx512(avx512);
                    ng_free(be, c.dp); ng_free(be, c.dout);
                }
            }
            /* momentum */
            {
                mctx c;
                ng_backend *bes[2] = {cpu, gpu};
                float *h = malloc(4 * n * 4), *want = malloc(3 * n * 4), *got = malloc(3 * n * 4);
                int b;
                if (!h || !want || !got) return fprintf(stderr, "kernel_lab: out of memory\n"), 1;
                for (k = 0; k < 4 * n; k++) h[k] = 2.0f * ng_uniform_at(79, 1, k) - 1.0f;
                for (b = 0; b < 2; b++) {
                    ng_backend *be = bes[b];
                    double ms1, ms2, md = 0.0;
                    if (!be) continue;
                    c.n = n;
                    c.be = be;
                    if (ng_alloc(be, n * 4, (void **)&c.d) || ng_alloc(be, n * 4, (void **)&c.v) ||
                        ng_alloc(be, n * 4, (void **)&c.p) || ng_alloc(be, n * 4, (void **)&c.bar))
                        return fprintf(stderr, "kernel_lab: %s\n", ng_last_error()), 1;
                    if (m_once(m_chain, &c, h, b == 0 ? want : got) != NG_OK) return 1;
                    ms1 = timeit(m_chain, &c, be);
                    if (m_once(m_fused, &c, h, got) != NG_OK) return 1;
                    ms2 = timeit(m_fused, &c, be);
                    if (b == 0) {
                        row("momentum", "1 NAG + average as 5 axpby ops (CPU backend, OpenMP)", n, "reference", ms1);
                        row("momentum", "2 NG_OP_MOMENTUM, one pass (CPU backend, OpenMP)", n,
                            CHECKED(same_bits(want, got, 3 * n)), ms2);
                    } else {
                        /* the GPU against the CPU's chain: nvcc may contract a product into an fma */
                        for (k = 0; k < 3 * n; k++) {
                            double d = fabs((double)want[k] - (double)got[k]);
                            if (d > md) md = d;
                        }
                        snprintf(buf, sizeof buf, md <= 1e-6 ? "ok (max |d| %.1e)" : "DIFFERS (max |d| %.1e)", md);
                        row("momentum", "3 the 5 axpby kernels (CUDA)", n, "timing only", ms1);
                        row("momentum", "4 the fused kernel (CUDA)", n, CHECKED(buf), ms2);
                    }
                    ng_free(be, c.d); ng_free(be, c.v); ng_free(be, c.p); ng_free(be, c.bar);
                }
                free(h); free(want); free(got);
            }
            free(ref); free(out); free(ref2); free(pr); free(sr);
        }
    }
    fclose(csv);
    ng_backend_free(gpu);
    ng_backend_free(cpu);
    if (fail) fprintf(stderr, "kernel_lab: a variant DIFFERS from its reference\n");
    return fail;
}
