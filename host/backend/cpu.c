/* cpu.c: the CPU backend, the reference every other backend is checked against.
 * BLAS through OpenBLAS (cblas), LAPACK through LAPACKE, elementwise loops with OpenMP calling the
 * same ng_math.h bodies as the CUDA kernels. Device memory is ordinary host memory here.
 * Column-major; see include/natgrad/backend.h for each op's contract. Must not terminate the process. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu_avx512.h"
#include "backend/cpu_blas.h"
#include "natgrad/backend.h"
#include "natgrad/log.h"
#include "ng_math.h"

/* The random and sigmoid loops (Gibbs, Bernoulli, uniforms, column sums) are compiled for
 * x86-64-v4 (AVX-512 with FMA), x86-64-v3 (AVX2 with FMA) and the baseline, chosen at load time
 * (GCC function multiversioning), so they vectorise with the widest registers the CPU has. Every
 * version gives the same bits: the Philox rounds are integer arithmetic, ng_expf and
 * ng_gibbs_input spell their fused multiply-adds as fma() calls (an instruction here, an exact
 * libm call in the baseline version), and no version reorders a sum. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define NG_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define NG_CPU_CLONES
#endif
#if defined(__GNUC__)
#define NG_CPU_INLINE static inline __attribute__((always_inline))
#else
#define NG_CPU_INLINE static inline
#endif

/* 256-byte aligned, like cudaMalloc, so arena views are aligned the same way on every backend */
static ng_status cpu_alloc(ng_backend *be, size_t bytes, void **ptr) {
    size_t rounded = (bytes + 255) / 256 * 256;
    void *p = aligned_alloc(256, rounded ? rounded : 256);
    if (!p) return ng_error(NG_ERR_OOM, "cpu: out of memory allocating %zu bytes", bytes);
    *ptr = p;
    return NG_OK;
}
static void cpu_free(ng_backend *be, void *ptr) { free(ptr); }
static ng_status cpu_set(ng_backend *be, void *dst, const void *src, size_t bytes) {
    memcpy(dst, src, bytes);
    return NG_OK;
}
static ng_status cpu_memset0(ng_backend *be, void *dst, size_t bytes) {
    memset(dst, 0, bytes);
    return NG_OK;
}
static ng_status cpu_copy(ng_backend *be, void *dst, const void *src, size_t bytes) {
    memmove(dst, src, bytes);
    return NG_OK;
}
static ng_status cpu_sync(ng_backend *be) { return NG_OK; }

/* Pinned memory is ordinary memory here, and transfers are plain copies (already complete when the
 * call returns, which satisfies the asynchronous contract). */
static ng_status cpu_alloc_host(ng_backend *be, size_t bytes, void **ptr) { return cpu_alloc(be, bytes, ptr); }

/* An event is the time it was recorded (everything before it has completed by then). */
typedef struct cpu_event {
    double t;
} cpu_event;
static ng_status cpu_event_create(ng_backend *be, void **ev) {
    cpu_event *e = (cpu_event *)calloc(1, sizeof *e);
    if (!e) return ng_error(NG_ERR_OOM, "cpu: out of memory for an event");
    *ev = e;
    return NG_OK;
}
static void cpu_event_destroy(ng_backend *be, void *ev) { free(ev); }
static ng_status cpu_event_record(ng_backend *be, void *ev) {
    ((cpu_event *)ev)->t = ng_time_s();
    return NG_OK;
}
static ng_status cpu_event_nop(ng_backend *be, void *ev) { return NG_OK; }
static ng_status cpu_event_elapsed(ng_backend *be, void *a, void *b, float *ms) {
    *ms = (float)(1e3 * (((cpu_event *)b)->t - ((cpu_event *)a)->t));
    return NG_OK;
}

static ng_status cpu_gemm(ng_backend *be, int ta, int tb, int m, int n, int k, float alpha,
                          const float *A, int lda, const float *B, int ldb, float beta, float *C,
                          int ldc) {
    if (m == 0 || n == 0) return NG_OK;
    if (k == 0 || alpha == 0.0f) { /* BLAS semantics without reading A, B */
        int i, j;
        for (j = 0; j < n; j++)
            for (i = 0; i < m; i++)
                C[i + (size_t)j * ldc] = beta == 0.0f ? 0.0f : beta * C[i + (size_t)j * ldc];
        return NG_OK;
    }
    cblas_sgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
                n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    return NG_OK;
}

static ng_status cpu_syrk(ng_backend *be, int trans, int n, int k, float alpha, const float *A,
                          int lda, float beta, float *C, int ldc) {
    if (n == 0) return NG_OK;
    if (beta == 0.0f) { /* BLAS may compute 0*NaN; enforce "beta = 0 ignores C" */
        int i, j;
        for (j = 0; j < n; j++)
            for (i = j; i < n; i++) C[i + (size_t)j * ldc] = 0.0f;
    }
    if (k == 0) { /* C = beta C on the lower triangle */
        int i, j;
        if (beta != 0.0f && beta != 1.0f)
            for (j = 0; j < n; j++)
                for (i = j; i < n; i++) C[i + (size_t)j * ldc] *= beta;
        return NG_OK;
    }
    cblas_ssyrk(CblasColMajor, CblasLower, trans ? CblasTrans : CblasNoTrans, n, k, alpha, A, lda,
                beta, C, ldc);
    return NG_OK;
}

static ng_status cpu_gemv(ng_backend *be, int trans, int m, int n, float alpha, const float *A,
                          int lda, const float *x, float beta, float *y) {
    int ylen = trans ? n : m, i;
    if (beta == 0.0f)
        for (i = 0; i < ylen; i++) y[i] = 0.0f;
    if (m == 0 || n == 0) { /* empty inner dimension: y = beta y */
        if (beta != 0.0f && beta != 1.0f)
            for (i = 0; i < ylen; i++) y[i] *= beta;
        return NG_OK;
    }
    cblas_sgemv(CblasColMajor, trans ? CblasTrans : CblasNoTrans, m, n, alpha, A, lda, x, 1, beta,
                y, 1);
    return NG_OK;
}

static ng_status cpu_scal(ng_backend *be, size_t n, float alpha, float *x) {
    long i;
#pragma omp parallel for if (n > 65536) schedule(static)
    for (i = 0; i < (long)n; i++) x[i] = alpha * x[i];
    return NG_OK;
}

static ng_status cpu_dot(ng_backend *be, size_t n, const float *x, const float *y, float *r) {
    double s = 0.0;
    size_t i;
    for (i = 0; i < n; i++) s += (double)x[i] * (double)y[i];
    *r = (float)s;
    return NG_OK;
}

static ng_status cpu_nrm2(ng_backend *be, size_t n, const float *x, float *r) {
    double s = 0.0;
    size_t i;
    for (i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
    *r = (float)sqrt(s);
    return NG_OK;
}

static ng_status cpu_dot_dev(ng_backend *be, size_t n, const float *x, const float *y, float *r) {
    return cpu_dot(be, n, x, y, r);
}
static ng_status cpu_nrm2_dev(ng_backend *be, size_t n, const float *x, float *r) {
    return cpu_nrm2(be, n, x, r);
}

static ng_status cpu_gemm_strided_batched(ng_backend *be, int ta, int tb, int m, int n, int k,
                                          float alpha, const float *A, int lda, long long sa,
                                          const float *B, int ldb, long long sb, float beta,
                                          float *C, int ldc, long long sc, int count) {
    int i;
    for (i = 0; i < count; i++)
        NG_TRY(cpu_gemm(be, ta, tb, m, n, k, alpha, A + (size_t)i * (size_t)sa, lda,
                        B + (size_t)i * (size_t)sb, ldb, beta, C + (size_t)i * (size_t)sc, ldc));
    return NG_OK;
}

static ng_status cpu_trsm(ng_backend *be, int right, int lower, int trans, int unit, int m, int n,
                          float alpha, const float *A, int lda, float *B, int ldb) {
    cblas_strsm(CblasColMajor, right ? CblasRight : CblasLeft, lower ? CblasLower : CblasUpper,
                trans ? CblasTrans : CblasNoTrans, unit ? CblasUnit : CblasNonUnit, m, n, alpha, A,
                lda, B, ldb);
    return NG_OK;
}

/* y[r] = alpha sum_c A[r, c] + beta y[r]: each row's sum adds its columns in order 0 .. cols-1 in
 * double. Blocks of rows (one per thread at a time) walk the columns, so every load is a
 * contiguous run of a column and the block's sums are one vector loop, instead of one strided
 * pass per row; the order of each row's additions, and so its bits, are those of a row-by-row loop. */
#define NG_SUM_ROWS 256
/* s[r] += A[r, c] for c = 0 .. cols-1 in order, rows r < n: four columns per pass over s, each
 * row's sum held in a register across them (the same additions in the same order). */
NG_CPU_INLINE void sum_cols_into(int n, int cols, const float *A, int lda, double *s) {
    int r, c = 0;
    for (; c + 4 <= cols; c += 4) {
        const float *c0 = A + (size_t)c * lda, *c1 = c0 + lda, *c2 = c1 + lda, *c3 = c2 + lda;
#pragma omp simd
        for (r = 0; r < n; r++) s[r] = (((s[r] + c0[r]) + c1[r]) + c2[r]) + c3[r];
    }
    for (; c < cols; c++) {
        const float *col = A + (size_t)c * lda;
#pragma omp simd
        for (r = 0; r < n; r++) s[r] += col[r];
    }
}
NG_CPU_CLONES static void cpu_sum_cols_blocks(int rows, int cols, float alpha, const float *A, int lda,
                                              float beta, float *y) {
    const int nb = (rows + NG_SUM_ROWS - 1) / NG_SUM_ROWS;
    int b;
#pragma omp parallel for if ((long)rows * cols > 65536) schedule(static)
    for (b = 0; b < nb; b++) {
        double s[NG_SUM_ROWS];
        const int r0 = b * NG_SUM_ROWS, n = rows - r0 < NG_SUM_ROWS ? rows - r0 : NG_SUM_ROWS;
        int r;
        for (r = 0; r < n; r++) s[r] = 0.0;
        sum_cols_into(n, cols, A + r0, lda, s);
        for (r = 0; r < n; r++) y[r0 + r] = (float)(alpha * s[r]) + (beta == 0.0f ? 0.0f : beta * y[r0 + r]);
    }
}
static ng_status cpu_sum_cols(ng_backend *be, int rows, int cols, float alpha, const float *A,
                              int lda, float beta, float *y) {
    cpu_sum_cols_blocks(rows, cols, alpha, A, lda, beta, y);
    return NG_OK;
}

/* The same row blocks over a part of the columns, the running sums kept in acc (double). */
NG_CPU_CLONES static void cpu_sum_cols_part_blocks(int rows, int cols, const float *A, int lda, double *acc, int first,
                                                   int last, float alpha, float beta, float *y) {
    const int nb = (rows + NG_SUM_ROWS - 1) / NG_SUM_ROWS;
    int b;
#pragma omp parallel for if ((long)rows * cols > 65536) schedule(static)
    for (b = 0; b < nb; b++) {
        const int r0 = b * NG_SUM_ROWS, n = rows - r0 < NG_SUM_ROWS ? rows - r0 : NG_SUM_ROWS;
        double *s = acc + r0;
        int r;
        if (first)
            for (r = 0; r < n; r++) s[r] = 0.0;
        sum_cols_into(n, cols, A + r0, lda, s);
        if (last)
            for (r = 0; r < n; r++) y[r0 + r] = (float)(alpha * s[r]) + (beta == 0.0f ? 0.0f : beta * y[r0 + r]);
    }
}
static ng_status cpu_sum_cols_part(ng_backend *be, int rows, int cols, const float *A, int lda, double *acc, int first,
                                   int last, float alpha, float beta, float *y) {
    cpu_sum_cols_part_blocks(rows, cols, A, lda, acc, first, last, alpha, beta, y);
    return NG_OK;
}

static ng_status cpu_sum_rows(ng_backend *be, int rows, int cols, float alpha, const float *A,
                              int lda, float beta, float *y) {
    int c;
#pragma omp parallel for if ((long)rows * cols > 65536) schedule(static)
    for (c = 0; c < cols; c++) {
        double s = 0.0;
        int r;
        for (r = 0; r < rows; r++) s += A[r + (size_t)c * lda];
        y[c] = (float)(alpha * s) + (beta == 0.0f ? 0.0f : beta * y[c]);
    }
    return NG_OK;
}

/* ---- elementwise families (run_op): one loop per op around its ng_math.h body ---------- */

/* Elements of a tile: the unit of work of the Philox-driven loops. Its uniforms, inputs and outputs
 * (4 x 8 KiB) stay in the first-level cache between the Philox pass and the pass that uses them. */
#define NG_TILE 2048
#define NG_TILE_RAW (NG_TILE + 4 * NG_PHILOX_LANES) /* floats of a tile's uniform buffer */

/* The uniforms of global elements g .. g + len - 1 (len <= NG_TILE) of stream (key, step): Philox
 * gives logical element i the word i & 3 of block i >> 2, exactly as the kernels do; the blocks
 * are computed 16 at a time (64 uniforms) by the vectorised ng_uniform4_block, which returns the
 * words of ng_uniform4_at, from the block that holds element g. raw holds NG_TILE_RAW floats; the
 * uniform of element g + j is the returned pointer's [j] (raw + g % 4). */
NG_CPU_INLINE const float *uniforms_span(uint64_t key, uint64_t step, uint64_t g, long len, float *raw, int v4) {
    const long n = len + (long)(g & 3u);
    long b;
    if (v4) ng_avx512_uniform4_blocks(key, step, g >> 2, (n + 4 * NG_PHILOX_LANES - 1) / (4 * NG_PHILOX_LANES), raw);
    else
        for (b = 0; b < n; b += 4 * NG_PHILOX_LANES) ng_uniform4_block(key, step, (g >> 2) + (uint64_t)(b >> 2), raw + b);
    return raw + (g & 3u);
}

static const float ng_cpu_zeros[NG_TILE]; /* a missing bias or base row, so the loops never branch */

/* n units of one column of gibbs_sample (n <= NG_TILE): the same ng_math.h bodies as the
 * kernel, as vector loops. pre may alias prob or sample (the same element, never another). */
NG_CPU_INLINE void gibbs_column(int n, const float *pre, const float *bias, float beta, const float *base,
                                const float *u, float *prob, float *smp, int v4) {
    int r;
    if (v4) ng_avx512_gibbs_column(n, pre, bias, beta, base, u, prob, smp);
    else if (!smp) {
#pragma omp simd
        for (r = 0; r < n; r++) prob[r] = ng_sigmoid(ng_gibbs_input(pre[r], bias[r], beta, base[r]));
    } else if (!prob) {
#pragma omp simd
        for (r = 0; r < n; r++) {
            float p, s;
            ng_gibbs_unit(pre[r], bias[r], beta, base[r], u[r], &p, &s);
            smp[r] = s;
        }
    } else {
#pragma omp simd
        for (r = 0; r < n; r++) {
            float p, s;
            ng_gibbs_unit(pre[r], bias[r], beta, base[r], u[r], &p, &s);
            prob[r] = p;
            smp[r] = s;
        }
    }
}

/* One pass over the matrix in tiles: runs of whole columns when a column is shorter than a tile,
 * else parts of one column; a tile's elements are consecutive in the logical (column-major) order,
 * so its uniforms come from one span. The tiles are independent (OpenMP over them), and the draws
 * depend only on the element's global index, never on the thread or the tiling. */
NG_CPU_CLONES static void cpu_gibbs_sample(const ng_op_args *a) {
    const int rows = a->gibbs_sample.rows, cols = a->gibbs_sample.cols;
    const float *pre = a->gibbs_sample.pre, *bias = a->gibbs_sample.bias, *base = a->gibbs_sample.base;
    const float beta = a->gibbs_sample.beta;
    float *prob = a->gibbs_sample.prob, *sample = a->gibbs_sample.sample;
    const int ldp = a->gibbs_sample.ldp, ldq = a->gibbs_sample.ldq, lds = a->gibbs_sample.lds;
    const uint64_t key = a->gibbs_sample.key, step = a->gibbs_sample.step, first = a->gibbs_sample.first;
    const long n = (long)rows * cols;
    const int rpt = rows < 1 ? 1 : rows < NG_TILE ? rows : NG_TILE;    /* rows of a tile */
    const int cpt = rows < 1 ? 1 : rows < NG_TILE ? NG_TILE / rows : 1; /* columns of a tile */
    const long tpc = (rows + rpt - 1) / rpt;             /* tiles down a column */
    const long ntiles = rows > 0 ? tpc * ((cols + cpt - 1) / cpt) : 0;
    const int v4 = ng_cpu_avx512_active();
    /* the fused column sums: in the tile loop when it runs on one thread (each row's additions
     * then go column by column, as sum_cols_part's), else in one pass after it */
    double *sum = a->gibbs_sample.sum;
    const float *out = prob ? prob : sample;
    const int ldo = prob ? ldq : lds, par = n > 16384 && omp_get_max_threads() > 1, fuse = sum && !par;
    long t;
    if (fuse && a->gibbs_sample.sum_first) memset(sum, 0, (size_t)rows * sizeof(double));
#pragma omp parallel for if (par) schedule(static)
    for (t = 0; t < ntiles; t++) {
        float raw[NG_TILE_RAW];
        const int c0 = (int)(t / tpc) * cpt, r0 = (int)(t % tpc) * rpt;
        const int c1 = cols - c0 < cpt ? cols : c0 + cpt, r1 = rows - r0 < rpt ? rows : r0 + rpt;
        const int len = r1 - r0;
        const float *u = sample ? uniforms_span(key, step, first + (uint64_t)c0 * (uint64_t)rows + (uint64_t)r0,
                                                (long)(c1 - c0) * len, raw, v4)
                                : NULL;
        int c;
        for (c = c0; c < c1; c++)
            gibbs_column(len, pre + r0 + (size_t)c * ldp, bias ? bias + r0 : ng_cpu_zeros, beta,
                         base ? base + r0 : ng_cpu_zeros, u ? u + (size_t)(c - c0) * len : NULL,
                         prob ? prob + r0 + (size_t)c * ldq : NULL, sample ? sample + r0 + (size_t)c * lds : NULL, v4);
        if (fuse) sum_cols_into(len, c1 - c0, out + r0 + (size_t)c0 * ldo, ldo, sum + r0);
    }
    if (sum && !fuse) cpu_sum_cols_part_blocks(rows, cols, out, ldo, sum, a->gibbs_sample.sum_first, 0, 0.0f, 0.0f, NULL);
}

/* The step counted in memory (step_dev): the op at step_dev[0] + step, then the count advanced. */
static void cpu_gibbs_sample_dev(const ng_op_args *a) {
    ng_op_args b = *a;
    uint64_t *sd = a->gibbs_sample.step_dev;
    if (sd) {
        b.gibbs_sample.step = sd[0] + a->gibbs_sample.step;
        b.gibbs_sample.step_dev = NULL;
    }
    if (a->gibbs_sample.rows > 0 && a->gibbs_sample.cols > 0) cpu_gibbs_sample(&b);
    if (sd) sd[0] += a->gibbs_sample.advance;
}

NG_CPU_CLONES static void cpu_bernoulli(const ng_op_args *a) {
    const long n = (long)a->bernoulli.n, ntiles = (n + NG_TILE - 1) / NG_TILE;
    const float *p = a->bernoulli.p;
    float *out = a->bernoulli.out;
    const int v4 = ng_cpu_avx512_active();
    long t;
#pragma omp parallel for if (n > 16384) schedule(static)
    for (t = 0; t < ntiles; t++) {
        float raw[NG_TILE_RAW];
        const long i0 = t * NG_TILE, len = n - i0 < NG_TILE ? n - i0 : NG_TILE;
        const float *u = uniforms_span(a->bernoulli.key, a->bernoulli.step, a->bernoulli.first + (uint64_t)i0, len, raw, v4);
        long j;
        if (v4) {
            ng_avx512_bernoulli(len, p + i0, u, out + i0);
            continue;
        }
#pragma omp simd
        for (j = 0; j < len; j++) out[i0 + j] = ng_bernoulli_draw(p[i0 + j], u[j]);
    }
}

/* The step counted in memory (bernoulli's step_dev), as cpu_gibbs_sample_dev. */
static void cpu_bernoulli_dev(const ng_op_args *a) {
    ng_op_args b = *a;
    uint64_t *sd = a->bernoulli.step_dev;
    if (sd) b.bernoulli.step = sd[0] + a->bernoulli.step;
    if (a->bernoulli.n > 0) cpu_bernoulli(&b);
    if (sd) sd[0] += a->bernoulli.advance;
}

NG_CPU_CLONES static void cpu_fill_uniform(const ng_op_args *a) {
    const long n = (long)a->fill_uniform.n, ntiles = (n + NG_TILE - 1) / NG_TILE;
    float *out = a->fill_uniform.out;
    const int v4 = ng_cpu_avx512_active();
    long t;
#pragma omp parallel for if (n > 16384) schedule(static)
    for (t = 0; t < ntiles; t++) {
        float raw[NG_TILE_RAW];
        const long i0 = t * NG_TILE, len = n - i0 < NG_TILE ? n - i0 : NG_TILE;
        memcpy(out + i0, uniforms_span(a->fill_uniform.key, a->fill_uniform.step, (uint64_t)i0, len, raw, v4),
               (size_t)len * sizeof(float));
    }
}

static void cpu_fill(const ng_op_args *a) {
    size_t i;
    for (i = 0; i < a->fill.n; i++) a->fill.out[i] = a->fill.value;
}

static void cpu_axpby(const ng_op_args *a) {
    const long n = (long)a->axpby.n;
    const float alpha = a->axpby.alpha, beta = a->axpby.beta, *x = a->axpby.x;
    float *y = a->axpby.y;
    long i;
    if (beta == 0.0f) {
#pragma omp parallel for if (n > 65536) schedule(static)
        for (i = 0; i < n; i++) y[i] = ng_axpby_elem(alpha, x[i], 0.0f, 0.0f);
    } else {
#pragma omp parallel for if (n > 65536) schedule(static)
        for (i = 0; i < n; i++) y[i] = ng_axpby_elem(alpha, x[i], beta, y[i]);
    }
}

static void cpu_axpby_segments(const ng_op_args *a) {
    const float alpha = a->axpby_segments.alpha, beta = a->axpby_segments.beta, *x = a->axpby_segments.x;
    float *y = a->axpby_segments.y;
    int s;
    for (s = 0; s < a->axpby_segments.count; s++) {
        const long n = (long)a->axpby_segments.len[s];
        const size_t o = a->axpby_segments.off[s];
        long i;
        if (beta == 0.0f) {
#pragma omp parallel for if (n > 65536) schedule(static)
            for (i = 0; i < n; i++) y[o + i] = ng_axpby_elem(alpha, x[o + i], 0.0f, 0.0f);
        } else {
#pragma omp parallel for if (n > 65536) schedule(static)
            for (i = 0; i < n; i++) y[o + i] = ng_axpby_elem(alpha, x[o + i], beta, y[o + i]);
        }
    }
}

static void cpu_axpby_dev(const ng_op_args *a) {
    const long n = (long)a->axpby_dev.n;
    const float ra = ng_ratio(a->axpby_dev.a_num, a->axpby_dev.a_den);
    const float rb = ng_ratio(a->axpby_dev.b_num, a->axpby_dev.b_den);
    const float ca = a->axpby_dev.ca, cb = a->axpby_dev.cb, *x = a->axpby_dev.x;
    float *y = a->axpby_dev.y;
    long i;
#pragma omp parallel for if (n > 65536) schedule(static)
    for (i = 0; i < n; i++) y[i] = ng_axpby_dev_elem(ca, ra, x[i], cb, rb, cb != 0.0f ? y[i] : 0.0f);
}

static void cpu_convert(const ng_op_args *a) {
    size_t i, n = a->convert.n;
    if (a->convert.from == a->convert.to) {
        memmove(a->convert.y, a->convert.x, n * ng_dtype_size(a->convert.from));
    } else if (a->convert.from == NG_F32) {
        const float *x = (const float *)a->convert.x;
        double *y = (double *)a->convert.y;
        for (i = 0; i < n; i++) y[i] = (double)x[i];
    } else {
        const double *x = (const double *)a->convert.x;
        float *y = (float *)a->convert.y;
        for (i = 0; i < n; i++) y[i] = (float)x[i];
    }
}

static void cpu_softplus_sum(const ng_op_args *a) {
    const int rows = a->softplus_sum.rows, cols = a->softplus_sum.cols, ldp = a->softplus_sum.ldp;
    const float *pre = a->softplus_sum.pre, *bias = a->softplus_sum.bias;
    const float beta = a->softplus_sum.beta, alpha = a->softplus_sum.alpha, gamma = a->softplus_sum.gamma;
    float *y = a->softplus_sum.y;
    int c;
#pragma omp parallel for if ((long)rows * cols > 16384) schedule(static)
    for (c = 0; c < cols; c++) {
        double s = 0.0;
        int r;
        for (r = 0; r < rows; r++)
            s += (double)ng_softplus_term(pre[r + (size_t)c * ldp], bias ? bias[r] : 0.0f, beta);
        y[c] = ng_sum_combine(s, alpha, gamma, gamma != 0.0f ? y[c] : 0.0f);
    }
}

static void cpu_binary_states(const ng_op_args *a) {
    const int nbits = a->binary_states.nbits, count = a->binary_states.count, ldo = a->binary_states.ldo;
    const uint64_t first = a->binary_states.first;
    float *out = a->binary_states.out;
    int c;
#pragma omp parallel for if ((long)nbits * count > 65536) schedule(static)
    for (c = 0; c < count; c++) {
        int b;
        for (b = 0; b < nbits; b++) out[b + (size_t)c * ldo] = ng_state_bit(first + (uint64_t)c, b);
    }
}

static void cpu_symmetrize_lower(const ng_op_args *a) {
    const int n = a->symmetrize_lower.n, lda = a->symmetrize_lower.lda;
    const float shift = a->symmetrize_lower.shift;
    float *A = a->symmetrize_lower.A;
    int c;
#pragma omp parallel for if ((long)n * n > 65536) schedule(static)
    for (c = 0; c < n; c++) {
        int r;
        for (r = 0; r <= c; r++)
            A[r + (size_t)c * lda] = ng_sym_lower_elem(r, c, A[c + (size_t)r * lda], shift);
    }
}

/* NG_OP_FACTOR_UPDATE: per entry ssyrk (symmetric) or sgemm (cross) with beta, then the mirror */
static void cpu_factor_update(const ng_op_args *a) {
    const int k = a->factor_update.k;
    const float beta = a->factor_update.beta;
    int i;
    for (i = 0; i < a->factor_update.count; i++) {
        const ng_factor_entry *e = &a->factor_update.e[i];
        int r, c;
        if (!e->rows || !e->cols) continue;
        if (e->Y == e->X && e->ldy == e->ldx && e->rows == e->cols) {
            cpu_syrk(NULL, 0, e->rows, k, e->alpha, e->X, e->ldx, beta, e->C, e->ldc);
#pragma omp parallel for if ((long)e->rows * e->rows > 65536) schedule(static)
            for (c = 0; c < e->rows; c++)
                for (r = 0; r < c; r++) e->C[r + (size_t)c * e->ldc] = e->C[c + (size_t)r * e->ldc];
        } else {
            if (beta == 0.0f)
                for (c = 0; c < e->cols; c++)
                    for (r = 0; r < e->rows; r++) e->C[r + (size_t)c * e->ldc] = 0.0f;
            cpu_gemm(NULL, 0, 1, e->rows, e->cols, k, e->alpha, e->X, e->ldx, e->Y, e->ldy, beta, e->C, e->ldc);
        }
    }
}

static void cpu_fang_regress(const ng_op_args *a) {
    const int nh = a->fang_regress.nh, nv = a->fang_regress.nv;
    const int ldm = a->fang_regress.ldm, ldo = a->fang_regress.ldo;
    int i;
#pragma omp parallel for if ((long)nh * nv > 16384) schedule(static)
    for (i = 0; i < nv; i++) {
        int j;
        for (j = 0; j < nh; j++) {
            size_t m = j + (size_t)i * ldm, o = j + (size_t)i * ldo;
            ng_fang_regress_pair(a->fang_regress.Evh[m], a->fang_regress.Ev2h[m], a->fang_regress.Evh2[m],
                                 a->fang_regress.Ev2h2[m], a->fang_regress.mu_v[i], a->fang_regress.mu_h[j],
                                 a->fang_regress.Ev2[i], a->fang_regress.Eh2[j], a->fang_regress.lambda,
                                 &a->fang_regress.beta_v[o], &a->fang_regress.beta_h[o],
                                 &a->fang_regress.sigma2[o]);
        }
    }
}

static void cpu_fang_residual(const ng_op_args *a) {
    const int nh = a->fang_residual.nh, nv = a->fang_residual.nv;
    const int ldg = a->fang_residual.ldg, ldb = a->fang_residual.ldb, ldp = a->fang_residual.ldp;
    float *G = a->fang_residual.G;
    int i;
#pragma omp parallel for if ((long)nh * nv > 65536) schedule(static)
    for (i = 0; i < nv; i++) {
        int j;
        for (j = 0; j < nh; j++) {
            size_t g = j + (size_t)i * ldg, b = j + (size_t)i * ldb, p = j + (size_t)i * ldp;
            ng_fang_residual_elem(G[g], a->fang_residual.ga[i], a->fang_residual.gb[j],
                                  a->fang_residual.beta_v[b], a->fang_residual.beta_h[b],
                                  a->fang_residual.sigma2[b], &G[g], &a->fang_residual.pv[p],
                                  &a->fang_residual.ph[p]);
        }
    }
}

/* ---- network layers ---- */

#define IDX(r, c, ld) ((size_t)(r) + (size_t)(c) * (size_t)(ld))

static void cpu_act_forward(const ng_op_args *a) {
    const int rows = a->act_forward.rows, cols = a->act_forward.cols, act = a->act_forward.act;
    const int ldz = a->act_forward.ldz, lda = a->act_forward.lda;
    const float *z = a->act_forward.z, *sc = a->act_forward.scale, *b = a->act_forward.bias;
    float *out = a->act_forward.a;
    int c;
#pragma omp parallel for if ((long)rows * cols > 16384) schedule(static)
    for (c = 0; c < cols; c++) {
        int r;
        for (r = 0; r < rows; r++) {
            float x = (sc ? sc[r] * z[IDX(r, c, ldz)] : z[IDX(r, c, ldz)]) + (b ? b[r] : 0.0f);
            out[IDX(r, c, lda)] = act == NG_ACT_SOFTMAX ? x : ng_act_elem(act, x);
        }
        if (act == NG_ACT_SOFTMAX) ng_softmax_col(rows, out + IDX(0, c, lda), NULL, out + IDX(0, c, lda));
    }
}

static void cpu_act_backward(const ng_op_args *a) {
    const int rows = a->act_backward.rows, cols = a->act_backward.cols, act = a->act_backward.act;
    const int lda = a->act_backward.lda, ldg = a->act_backward.ldg, ldh = a->act_backward.ldh;
    const int ldr = a->act_backward.ldr, ldo = a->act_backward.ldo;
    const float *A = a->act_backward.a, *g = a->act_backward.g, *h = a->act_backward.h, *rr = a->act_backward.r;
    float *out = a->act_backward.out;
    int c;
#pragma omp parallel for if ((long)rows * cols > 16384) schedule(static)
    for (c = 0; c < cols; c++) {
        int r;
        for (r = 0; r < rows; r++)
            out[IDX(r, c, ldo)] = ng_act_backward_elem(act, A[IDX(r, c, lda)], g[IDX(r, c, ldg)],
                                                       h ? h[IDX(r, c, ldh)] : 0.0f,
                                                       rr ? rr[IDX(r, c, ldr)] : 0.0f);
    }
}

static void cpu_loss(const ng_op_args *a) {
    const int rows = a->loss.rows, cols = a->loss.cols;
    int c;
#pragma omp parallel for if ((long)rows * cols > 16384) schedule(static)
    for (c = 0; c < cols; c++)
        ng_loss_col(a->loss.loss, rows, a->loss.z + IDX(0, c, a->loss.ldz), a->loss.y + IDX(0, c, a->loss.ldy),
                    a->loss.t + IDX(0, c, a->loss.ldt), a->loss.scale,
                    a->loss.d ? a->loss.d + IDX(0, c, a->loss.ldd) : NULL,
                    a->loss.obj ? a->loss.obj + c : NULL, a->loss.err ? a->loss.err + c : NULL, a->loss.err_miss);
    if (a->loss.acc) { /* the batch sums: the lanes of the CUDA kernel, one after another */
        double lo[NG_LOSS_LANES], le[NG_LOSS_LANES];
        int j;
        for (j = 0; j < NG_LOSS_LANES; j++) ng_loss_lane(cols, a->loss.obj, a->loss.err, j, &lo[j], &le[j]);
        ng_loss_sums_finish(lo, le, a->loss.acc_beta, a->loss.acc);
    }
}

static void cpu_loss_hvp(const ng_op_args *a) {
    const int rows = a->loss_hvp.rows, cols = a->loss_hvp.cols;
    int c;
#pragma omp parallel for if ((long)rows * cols > 16384) schedule(static)
    for (c = 0; c < cols; c++)
        ng_loss_hvp_col(a->loss_hvp.loss, rows, a->loss_hvp.y + IDX(0, c, a->loss_hvp.ldy),
                        a->loss_hvp.v + IDX(0, c, a->loss_hvp.ldv), a->loss_hvp.scale,
                        a->loss_hvp.out + IDX(0, c, a->loss_hvp.ldo));
}

static void cpu_sample_targets(const ng_op_args *a) {
    const int rows = a->sample_targets.rows, cols = a->sample_targets.cols, loss = a->sample_targets.loss;
    const int ldy = a->sample_targets.ldy, ldt = a->sample_targets.ldt;
    uint64_t *const sd = a->sample_targets.step_dev; /* the step counted in memory, then advanced */
    const uint64_t key = a->sample_targets.key, step = a->sample_targets.step + (sd ? sd[0] : 0);
    const uint64_t col0 = a->sample_targets.col0;
    int c;
#pragma omp parallel for if ((long)rows * cols > 16384) schedule(static)
    for (c = 0; c < cols; c++) {
        int r;
        if (loss == NG_LOSS_CATEGORICAL) {
            ng_sample_categorical_col(rows, a->sample_targets.y + IDX(0, c, ldy),
                                      ng_uniform_at(key, step, col0 + (uint64_t)c), a->sample_targets.t + IDX(0, c, ldt));
            continue;
        }
        for (r = 0; r < rows; r++) {
            uint64_t i = (uint64_t)r + (uint64_t)rows * (col0 + (uint64_t)c);
            float u1 = ng_uniform_at(key, step, loss == NG_LOSS_SQUARED ? 2 * i : i);
            float u2 = loss == NG_LOSS_SQUARED ? ng_uniform_at(key, step, 2 * i + 1) : 0.0f;
            a->sample_targets.t[IDX(r, c, ldt)] =
                ng_sample_target_elem(loss, a->sample_targets.y[IDX(r, c, ldy)], u1, u2);
        }
    }
    if (sd) sd[0] += a->sample_targets.advance;
}

static void cpu_row_moments(const ng_op_args *a) {
    const int rows = a->row_moments.rows, cols = a->row_moments.cols, ldx = a->row_moments.ldx;
    int r;
#pragma omp parallel for if ((long)rows * cols > 16384) schedule(static)
    for (r = 0; r < rows; r++)
        ng_row_moments(cols, a->row_moments.x + r, ldx, a->row_moments.eps, &a->row_moments.mean[r],
                       &a->row_moments.rstd[r]);
}

static void cpu_bn_merge(const ng_op_args *a) {
    int r;
    for (r = 0; r < a->bn_merge.rows; r++)
        ng_bn_merge_row(a->bn_merge.mode, r, a->bn_merge.rows, a->bn_merge.cols, a->bn_merge.cnt, a->bn_merge.eps,
                        a->bn_merge.alpha, a->bn_merge.scaled, a->bn_merge.mean, a->bn_merge.rstd, a->bn_merge.acc,
                        a->bn_merge.acc2, a->bn_merge.tot, a->bn_merge.x, a->bn_merge.ldx, a->bn_merge.out, a->bn_merge.ldo);
}

static void cpu_bn_normalize(const ng_op_args *a) {
    const int rows = a->bn_normalize.rows, cols = a->bn_normalize.cols;
    const int ldx = a->bn_normalize.ldx, ldh = a->bn_normalize.ldh;
    int c;
#pragma omp parallel for if ((long)rows * cols > 16384) schedule(static)
    for (c = 0; c < cols; c++) {
        int r;
        for (r = 0; r < rows; r++)
            a->bn_normalize.xhat[IDX(r, c, ldh)] =
                (a->bn_normalize.x[IDX(r, c, ldx)] - a->bn_normalize.mean[r]) * a->bn_normalize.rstd[r];
    }
}

static void cpu_outer_scale(const ng_op_args *a) {
    const int rows = a->outer_scale.rows, cols = a->outer_scale.cols, mode = a->outer_scale.mode;
    const int ldx = a->outer_scale.ldx, ldo = a->outer_scale.ldo;
    int c;
#pragma omp parallel for if ((long)rows * cols > 16384) schedule(static)
    for (c = 0; c < cols; c++) {
        int r;
        for (r = 0; r < rows; r++)
            a->outer_scale.out[IDX(r, c, ldo)] =
                ng_outer_scale_elem(mode, a->outer_scale.x[IDX(r, c, ldx)], a->outer_scale.u, a->outer_scale.v, r, c,
                                    a->outer_scale.floor, a->outer_scale.power);
    }
}

static void cpu_bn_project(const ng_op_args *a) {
    const int rows = a->bn_project.rows, cols = a->bn_project.cols;
    int r;
#pragma omp parallel for if ((long)rows * cols > 16384) schedule(static)
    for (r = 0; r < rows; r++) {
        float s = (a->bn_project.s1 ? a->bn_project.s1[r] : 1.0f) * (a->bn_project.s2 ? a->bn_project.s2[r] : 1.0f);
        ng_bn_project_row(cols, a->bn_project.g + r, a->bn_project.ldg, a->bn_project.xhat + r,
                          a->bn_project.ldx, s, a->bn_project.beta, a->bn_project.out + r, a->bn_project.ldo);
    }
}

static void cpu_adam(const ng_op_args *a) {
    const long n = (long)a->adam.n;
    const float *g = a->adam.grad;
    float *p = a->adam.param, *m = a->adam.m, *v = a->adam.v, *step = a->adam.step;
    const float b1 = a->adam.b1, c1 = a->adam.c1, b2 = a->adam.b2, c2 = a->adam.c2;
    const float lr = a->adam.lr, eps = a->adam.eps;
    double *count = a->adam.count;
    /* a device step count (host memory here): the corrections of update t = count[0], then t + 1 */
    const double bc1 = count ? (m ? ng_adam_bias_correction(b1, count[0]) : 1.0) : a->adam.bc1;
    const double bc2 = count ? (m ? ng_adam_bias_correction(b2, count[0]) : 1.0) : a->adam.bc2;
    long i;
#pragma omp parallel for if (n > 65536) schedule(static)
    for (i = 0; i < n; i++) {
        float s = ng_adam_elem(g[i], &p[i], m ? &m[i] : NULL, &v[i], b1, c1, b2, c2, bc1, bc2, lr, eps);
        if (step) step[i] = s;
    }
    if (count) count[0] += 1.0;
}

/* The plain step (no Nesterov term, no average: SGD with or without momentum) is its own loop, so
 * that the body's branches fold away and it vectorises (the same operations per element). */
NG_CPU_CLONES static void cpu_momentum(const ng_op_args *a) {
    const long n = (long)a->momentum.n;
    const float *d = a->momentum.d;
    float *v = a->momentum.v, *p = a->momentum.p, *bar = a->momentum.bar;
    const float aa = a->momentum.a, mu = a->momentum.mu, c = a->momentum.c;
    const float xi = a->momentum.xi, w = a->momentum.w, wc = a->momentum.wc;
    const int nest = a->momentum.nesterov;
    long i;
    if (!bar && !nest) {
#pragma omp parallel for simd if (n > 65536) schedule(static)
        for (i = 0; i < n; i++) ng_momentum_elem(d[i], &v[i], &p[i], NULL, aa, mu, c, 0, xi, w, wc);
        return;
    }
#pragma omp parallel for if (n > 65536) schedule(static)
    for (i = 0; i < n; i++) ng_momentum_elem(d[i], &v[i], &p[i], bar ? &bar[i] : NULL, aa, mu, c, nest, xi, w, wc);
}

/* One system after another: a few hundred flops each, no loop worth threading. */
static void cpu_minresqlp_step(const ng_op_args *a) {
    int j;
    for (j = 0; j < a->minresqlp_step.count; j++)
        ng_mqlp_run(a->minresqlp_step.state + (size_t)j * NG_MQLP_NSTATE,
                    a->minresqlp_step.sc + (size_t)j * NG_MQLP_NSC, a->minresqlp_step.init,
                    a->minresqlp_step.max_iter, a->minresqlp_step.rtol, a->minresqlp_step.maxxnorm,
                    a->minresqlp_step.trancond, a->minresqlp_step.singtol);
}

static void cpu_conv_gather_at(const ng_op_args *a);
/* AUGMENT with a device step count (step_dev): the draws of step step_dev[0] + step, then the count
 * advanced, as the CUDA kernel does */
static void cpu_conv_gather(const ng_op_args *a) {
    uint64_t *sd = a->conv_gather.step_dev;
    ng_op_args b = *a;
    if (!sd) {
        cpu_conv_gather_at(a);
        return;
    }
    b.conv_gather.step = sd[0] + a->conv_gather.step;
    b.conv_gather.step_dev = NULL;
    if (ng_conv_gather_count(a->conv_gather.mode, &a->conv_gather.s)) cpu_conv_gather_at(&b);
    sd[0] += a->conv_gather.advance;
}

static void cpu_conv_gather_at(const ng_op_args *a) {
    const size_t n = ng_conv_gather_count(a->conv_gather.mode, &a->conv_gather.s);
    long e;
    if (a->conv_gather.mode == NG_CONV_IM2COL) {
        /* row by row (ng_im2col_row: the same copies as the element body, without its divisions per
         * element, which made the op 95 % of a forward convolution; bench/bench_conv.c) */
        const ng_conv_shape *s = &a->conv_gather.s;
        const int ho = ng_conv_out_dim(s->h, s->kh, s->stride, s->pad), wo = ng_conv_out_dim(s->w, s->kw, s->stride, s->pad);
        const long K = (long)s->c * s->kh * s->kw, rows = (long)s->n * K * ho;
#pragma omp parallel for if (n > 16384) schedule(static)
        for (e = 0; e < rows; e++) {
            const long oh = e % ho, k = (e / ho) % K, b = e / (ho * K);
            ng_im2col_row(s, a->conv_gather.x, (size_t)b, (int)k, (int)oh, wo,
                          a->conv_gather.out + (size_t)oh * wo + (size_t)ho * wo * (size_t)(k + K * b));
        }
        return;
    }
    if (a->conv_gather.mode == NG_CONV_TO_NHWC || a->conv_gather.mode == NG_CONV_TO_NCHW) {
        /* the layouts are copies (the element body's values bit for bit): one (c, hw) <-> (hw, c)
         * transpose per image, without the body's divisions per element */
        const ng_conv_shape *s = &a->conv_gather.s;
        const long hw = (long)s->h * s->w, c = s->c, nhwc = a->conv_gather.mode == NG_CONV_TO_NHWC;
        const float *x = a->conv_gather.x;
        float *out = a->conv_gather.out;
#pragma omp parallel for if (n > 16384) schedule(static)
        for (e = 0; e < (long)s->n * c; e++) { /* map (image b, channel ci): its hw pixels */
            const long b = e / c, ci = e % c;
            const float *xs = x + (nhwc ? e * hw : ci + c * hw * b);
            float *os = out + (nhwc ? ci + c * hw * b : e * hw);
            long p;
            if (nhwc)
                for (p = 0; p < hw; p++) os[p * c] = xs[p];
            else
                for (p = 0; p < hw; p++) os[p] = xs[p * c];
        }
        return;
    }
    if ((a->conv_gather.mode == NG_CONV_POOL_MAX_BACK || a->conv_gather.mode == NG_CONV_POOL_AVG_BACK) &&
        a->conv_gather.s.stride >= a->conv_gather.s.kh && a->conv_gather.s.stride >= a->conv_gather.s.kw) {
        /* windows that do not overlap: a pixel gets at most one term, so routing each window's dy to
         * its maximum (or dy / (kh kw) to each of its pixels) gives the element body's values bit for
         * bit, with one window search per window instead of one per pixel it holds */
        const ng_conv_shape *s = &a->conv_gather.s;
        const int ho = ng_conv_out_dim(s->h, s->kh, s->stride, s->pad), wo = ng_conv_out_dim(s->w, s->kw, s->stride, s->pad);
        const long hw = (long)s->h * s->w, P = (long)ho * wo, avg = a->conv_gather.mode == NG_CONV_POOL_AVG_BACK;
        const float inv = (float)(s->kh * s->kw);
#pragma omp parallel for if (n > 16384) schedule(static)
        for (e = 0; e < (long)s->n * s->c; e++) { /* map e */
            const float *g = a->conv_gather.g + e * P, *x = avg ? NULL : a->conv_gather.x + e * hw;
            float *out = a->conv_gather.out + e * hw;
            long q;
            int oh, ow, i, j, at;
            for (q = 0; q < hw; q++) out[q] = 0.0f;
            for (oh = 0; oh < ho; oh++)
                for (ow = 0; ow < wo; ow++) {
                    const float d = g[(long)oh * wo + ow];
                    if (!avg) {
                        (void)ng_pool_max_window(s, x, oh, ow, &at);
                        if (at >= 0) out[at] = 0.0f + d;
                        continue;
                    }
                    for (i = 0; i < s->kh; i++) {
                        const int ih = oh * s->stride - s->pad + i;
                        if (ih < 0 || ih >= s->h) continue;
                        for (j = 0; j < s->kw; j++) {
                            const int iw = ow * s->stride - s->pad + j;
                            if (iw >= 0 && iw < s->w) out[(long)ih * s->w + iw] = (0.0f + d) / inv;
                        }
                    }
                }
        }
        return;
    }
#pragma omp parallel for if (n > 16384) schedule(static)
    for (e = 0; e < (long)n; e++)
        a->conv_gather.out[e] = ng_conv_gather_elem(a->conv_gather.mode, &a->conv_gather.s, a->conv_gather.x,
                                                    a->conv_gather.g, (size_t)e, a->conv_gather.flip,
                                                    a->conv_gather.key, a->conv_gather.step, a->conv_gather.b0);
}

static void cpu_whiten1x1(const ng_op_args *a) {
    const size_t n = (size_t)a->whiten1x1.n * a->whiten1x1.cout * a->whiten1x1.p;
    long e;
#pragma omp parallel for if (n * (size_t)a->whiten1x1.c > 65536) schedule(static)
    for (e = 0; e < (long)n; e++)
        a->whiten1x1.y[e] = ng_whiten1x1_elem(a->whiten1x1.c, a->whiten1x1.cout, a->whiten1x1.p, a->whiten1x1.trans,
                                              a->whiten1x1.x, a->whiten1x1.mean, a->whiten1x1.U, a->whiten1x1.ldu,
                                              (size_t)e);
}

static int cpu_supports_op(ng_backend *be, ng_op op) { return (unsigned)op < NG_OP_COUNT; }

static ng_status cpu_run_op(ng_backend *be, const ng_op_args *a) {
    switch (a->op) {
    case NG_OP_FILL: cpu_fill(a); break;
    case NG_OP_FILL_UNIFORM: cpu_fill_uniform(a); break;
    case NG_OP_BERNOULLI: cpu_bernoulli_dev(a); break;
    case NG_OP_AXPBY: cpu_axpby(a); break;
    case NG_OP_AXPBY_DEV: cpu_axpby_dev(a); break;
    case NG_OP_CONVERT: cpu_convert(a); break;
    case NG_OP_GIBBS_SAMPLE: cpu_gibbs_sample_dev(a); break;
    case NG_OP_SOFTPLUS_SUM: cpu_softplus_sum(a); break;
    case NG_OP_BINARY_STATES: cpu_binary_states(a); break;
    case NG_OP_SYMMETRIZE_LOWER: cpu_symmetrize_lower(a); break;
    case NG_OP_FANG_REGRESS: cpu_fang_regress(a); break;
    case NG_OP_FANG_RESIDUAL: cpu_fang_residual(a); break;
    case NG_OP_ACT_FORWARD: cpu_act_forward(a); break;
    case NG_OP_ACT_BACKWARD: cpu_act_backward(a); break;
    case NG_OP_LOSS: cpu_loss(a); break;
    case NG_OP_LOSS_HVP: cpu_loss_hvp(a); break;
    case NG_OP_SAMPLE_TARGETS: cpu_sample_targets(a); break;
    case NG_OP_ROW_MOMENTS: cpu_row_moments(a); break;
    case NG_OP_BN_NORMALIZE: cpu_bn_normalize(a); break;
    case NG_OP_BN_MERGE: cpu_bn_merge(a); break;
    case NG_OP_BN_PROJECT: cpu_bn_project(a); break;
    case NG_OP_ADAM: cpu_adam(a); break;
    case NG_OP_OUTER_SCALE: cpu_outer_scale(a); break;
    case NG_OP_FACTOR_UPDATE: cpu_factor_update(a); break;
    case NG_OP_MINRESQLP_STEP: cpu_minresqlp_step(a); break;
    case NG_OP_CONV_GATHER: cpu_conv_gather(a); break;
    case NG_OP_WHITEN1X1: cpu_whiten1x1(a); break;
    case NG_OP_MOMENTUM: cpu_momentum(a); break;
    case NG_OP_AXPBY_SEGMENTS: cpu_axpby_segments(a); break;
    default: return ng_error(NG_ERR_UNSUPPORTED, "cpu: op %d is not implemented", (int)a->op);
    }
    return NG_OK;
}

static ng_status lapack_info(const char *what, int info, int *info_host) {
    if (info < 0) return ng_error(NG_ERR_INVALID_ARG, "%s: argument %d is invalid", what, -info);
    *info_host = info;
    return NG_OK;
}

static ng_status cpu_potrf(ng_backend *be, ng_dtype dt, int n, void *A, int lda, int *info) {
    if (dt == NG_F64)
        return lapack_info("dpotrf", n ? LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', n, (double *)A, lda) : 0, info);
    return lapack_info("spotrf", n ? LAPACKE_spotrf(LAPACK_COL_MAJOR, 'L', n, (float *)A, lda) : 0, info);
}
static ng_status cpu_potri(ng_backend *be, ng_dtype dt, int n, void *A, int lda, int *info) {
    if (dt == NG_F64)
        return lapack_info("dpotri", n ? LAPACKE_dpotri(LAPACK_COL_MAJOR, 'L', n, (double *)A, lda) : 0, info);
    return lapack_info("spotri", n ? LAPACKE_spotri(LAPACK_COL_MAJOR, 'L', n, (float *)A, lda) : 0, info);
}
static ng_status cpu_potrs(ng_backend *be, ng_dtype dt, int n, int nrhs, const void *A, int lda,
                           void *B, int ldb, int *info) {
    if (!n || !nrhs) return lapack_info("potrs", 0, info);
    if (dt == NG_F64)
        return lapack_info("dpotrs", LAPACKE_dpotrs(LAPACK_COL_MAJOR, 'L', n, nrhs, (const double *)A, lda,
                                                    (double *)B, ldb), info);
    return lapack_info("spotrs", LAPACKE_spotrs(LAPACK_COL_MAJOR, 'L', n, nrhs, (const float *)A, lda,
                                                (float *)B, ldb), info);
}
/* The eigendecompositions run LAPACK on one thread. ssyevd spends most of its time in the
 * Householder tridiagonalisation, n level-2 BLAS calls (symv, syr2) of O(n^2) work each: with two
 * OpenMP threads every call is a parallel region and a barrier, and when other processes share the
 * cores a descheduled thread stalls each barrier. Measured on this 2-core machine at load average 8:
 * ssyevd of a 1000 x 1000 covariance 0.18 s on one thread, 2.1 to 11.9 s on two (`make bench-prong`
 * measures it again: bench/results/bench_prong.md). On an idle machine the second thread gains little (the level-2 calls are
 * bandwidth-bound). The thread counts of OpenBLAS and OpenMP are restored afterwards. */
static ng_status cpu_syevd(ng_backend *be, ng_dtype dt, int n, void *A, int lda, void *w, int *info) {
    int r, tb = openblas_get_num_threads(), to = omp_get_max_threads();
    if (tb > 1) openblas_set_num_threads(1);
    if (dt == NG_F64) r = n ? LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'L', n, (double *)A, lda, (double *)w) : 0;
    else r = n ? LAPACKE_ssyevd(LAPACK_COL_MAJOR, 'V', 'L', n, (float *)A, lda, (float *)w) : 0;
    if (tb > 1) {
        openblas_set_num_threads(tb);
        omp_set_num_threads(to);
    }
    return lapack_info(dt == NG_F64 ? "dsyevd" : "ssyevd", r, info);
}

/* The problems of one batched call run concurrently, one per OpenMP thread, each on one thread as
 * cpu_syevd runs it, so every problem's result is bit-identical to its own cpu_syevd call. The
 * largest go first and a thread takes the next problem when it is done (dynamic schedule), so the
 * longest problem does not start last. The thread counts are set outside the parallel region
 * (openblas_set_num_threads is not thread-safe) and restored afterwards. */
static ng_status cpu_syevd_batched(ng_backend *be, ng_dtype dt, int count, ng_eig_problem *p) {
    int order[NG_EIG_BATCH_MAX], res[NG_EIG_BATCH_MAX];
    int i, j, nt, tb = openblas_get_num_threads(), to = omp_get_max_threads();
    (void)be;
    for (i = 0; i < count; i++) { /* insertion sort by n, descending; ties keep the list order */
        int v = i;
        for (j = i; j > 0 && p[order[j - 1]].n < p[v].n; j--) order[j] = order[j - 1];
        order[j] = v;
    }
    nt = to < count ? to : count;
    if (nt < 1) nt = 1;
    if (tb > 1) openblas_set_num_threads(1);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (i = 0; i < count; i++) {
        ng_eig_problem *q = &p[order[i]];
        if (!q->n) res[order[i]] = 0;
        else if (dt == NG_F64) res[order[i]] = LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'L', q->n, (double *)q->A, q->lda, (double *)q->w);
        else res[order[i]] = LAPACKE_ssyevd(LAPACK_COL_MAJOR, 'V', 'L', q->n, (float *)q->A, q->lda, (float *)q->w);
    }
    if (tb > 1) openblas_set_num_threads(tb);
    omp_set_num_threads(to);
    for (i = 0; i < count; i++) {
        char what[48];
        snprintf(what, sizeof what, "%s (batched problem %d)", dt == NG_F64 ? "dsyevd" : "ssyevd", i);
        NG_TRY(lapack_info(what, res[i], &p[i].info));
    }
    return NG_OK;
}

static void cpu_destroy(ng_backend *be) { free(be); }

static const struct ng_backend_i cpu_iface = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .set = cpu_set,
    .get = cpu_set,
    .memset0 = cpu_memset0,
    .copy = cpu_copy,
    .synchronize = cpu_sync,
    .alloc_host = cpu_alloc_host,
    .free_host = cpu_free,
    .set_async = cpu_set,
    .get_async = cpu_set,
    .event_create = cpu_event_create,
    .event_destroy = cpu_event_destroy,
    .event_record = cpu_event_record,
    .event_wait = cpu_event_nop,
    .event_synchronize = cpu_event_nop,
    .event_elapsed = cpu_event_elapsed,
    .gemm = cpu_gemm,
    .gemm_strided_batched = cpu_gemm_strided_batched,
    .syrk = cpu_syrk,
    .gemv = cpu_gemv,
    .trsm = cpu_trsm,
    .scal = cpu_scal,
    .dot = cpu_dot,
    .nrm2 = cpu_nrm2,
    .dot_dev = cpu_dot_dev,
    .nrm2_dev = cpu_nrm2_dev,
    .sum_cols = cpu_sum_cols,
    .sum_cols_part = cpu_sum_cols_part,
    .sum_rows = cpu_sum_rows,
    .potrf = cpu_potrf,
    .potri = cpu_potri,
    .potrs = cpu_potrs,
    .syevd = cpu_syevd,
    .syevd_batched = cpu_syevd_batched,
    .supports_op = cpu_supports_op,
    .run_op = cpu_run_op,
};

ng_status ng_backend_cpu_init(ng_backend **out) {
    ng_backend *be = (ng_backend *)calloc(1, sizeof *be);
    char blas[160];
    if (!be) return ng_error(NG_ERR_OOM, "cpu backend: out of memory");
    be->iface = &cpu_iface;
    be->kind = NG_DEVICE_CPU;
    ng_cpu_blas_describe(blas, sizeof blas);
    snprintf(be->description, sizeof be->description, "cpu: %s", blas);
    *out = be;
    return NG_OK;
}
