/* cpu.c: the CPU backend, the reference every other backend is checked against.
 * BLAS through OpenBLAS (cblas), LAPACK through LAPACKE, elementwise loops with OpenMP calling the
 * same ng_math.h bodies as the CUDA kernels. Device memory is ordinary host memory here.
 * Column-major; see include/natgrad/backend.h for each op's contract. Must not terminate the process. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu_blas.h"
#include "natgrad/backend.h"
#include "ng_math.h"

static ng_status cpu_alloc(ng_backend *be, size_t bytes, void **ptr) {
    size_t rounded = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
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

static ng_status cpu_axpby(ng_backend *be, size_t n, float alpha, const float *x, float beta,
                           float *y) {
    long i;
    if (beta == 0.0f) {
#pragma omp parallel for if (n > 65536) schedule(static)
        for (i = 0; i < (long)n; i++) y[i] = alpha * x[i];
    } else {
#pragma omp parallel for if (n > 65536) schedule(static)
        for (i = 0; i < (long)n; i++) y[i] = alpha * x[i] + beta * y[i];
    }
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

static ng_status cpu_sum_cols(ng_backend *be, int rows, int cols, float alpha, const float *A,
                              int lda, float beta, float *y) {
    int r;
#pragma omp parallel for if ((long)rows * cols > 65536) schedule(static)
    for (r = 0; r < rows; r++) {
        double s = 0.0;
        int c;
        for (c = 0; c < cols; c++) s += A[r + (size_t)c * lda];
        y[r] = (float)(alpha * s) + (beta == 0.0f ? 0.0f : beta * y[r]);
    }
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

/* Visit every logical element i = r + rows*c of a (rows, cols) matrix in blocks of 4 so that one
 * Philox evaluation serves 4 consecutive elements (word i & 3 of block i >> 2). */
static ng_status cpu_gibbs_sample(ng_backend *be, int rows, int cols, const float *pre, int ldp,
                                  const float *bias, float beta, const float *base, float *prob,
                                  int ldq, float *sample, int lds, uint64_t key, uint64_t step) {
    long n = (long)rows * cols, nblk = (n + 3) / 4, b;
    if (!sample) { /* probabilities only: no random words needed */
        int c;
#pragma omp parallel for if (n > 16384) schedule(static)
        for (c = 0; c < cols; c++) {
            int r;
            for (r = 0; r < rows; r++)
                prob[r + (size_t)c * ldq] =
                    ng_sigmoid(ng_gibbs_input(pre[r + (size_t)c * ldp], bias ? bias[r] : 0.0f, beta,
                                              base ? base[r] : 0.0f));
        }
        return NG_OK;
    }
#pragma omp parallel for if (n > 16384) schedule(static)
    for (b = 0; b < nblk; b++) {
        ng_u32x4 ctr, o;
        uint32_t words[4];
        int j;
        ctr.x = (uint32_t)b;
        ctr.y = (uint32_t)((uint64_t)b >> 32);
        ctr.z = (uint32_t)step;
        ctr.w = (uint32_t)(step >> 32);
        o = ng_philox4x32(ctr, (uint32_t)key, (uint32_t)(key >> 32), 10);
        words[0] = o.x;
        words[1] = o.y;
        words[2] = o.z;
        words[3] = o.w;
        for (j = 0; j < 4; j++) {
            long i = b * 4 + j;
            int r, c;
            float p, s;
            if (i >= n) break;
            r = (int)(i % rows);
            c = (int)(i / rows);
            ng_gibbs_unit(pre[r + (size_t)c * ldp], bias ? bias[r] : 0.0f, beta,
                          base ? base[r] : 0.0f, ng_u32_to_uniform(words[j]), &p, &s);
            if (prob) prob[r + (size_t)c * ldq] = p;
            if (sample) sample[r + (size_t)c * lds] = s;
        }
    }
    return NG_OK;
}

static ng_status cpu_bernoulli(ng_backend *be, size_t n, const float *p, float *out, uint64_t key,
                               uint64_t step) {
    long i;
#pragma omp parallel for if (n > 16384) schedule(static)
    for (i = 0; i < (long)n; i++) out[i] = ng_bernoulli_draw(p[i], ng_uniform_at(key, step, (uint64_t)i));
    return NG_OK;
}

static ng_status cpu_softplus_sum(ng_backend *be, int rows, int cols, const float *pre, int ldp,
                                  const float *bias, float beta, float alpha, float gamma,
                                  float *y) {
    int c;
#pragma omp parallel for if ((long)rows * cols > 16384) schedule(static)
    for (c = 0; c < cols; c++) {
        double s = 0.0;
        int r;
        for (r = 0; r < rows; r++)
            s += ng_softplus(beta * (pre[r + (size_t)c * ldp] + (bias ? bias[r] : 0.0f)));
        y[c] = (float)(alpha * s) + (gamma == 0.0f ? 0.0f : gamma * y[c]);
    }
    return NG_OK;
}

static ng_status cpu_binary_states(ng_backend *be, int nbits, uint64_t first, int count,
                                   float *out, int ldo) {
    int c;
#pragma omp parallel for if ((long)nbits * count > 65536) schedule(static)
    for (c = 0; c < count; c++) {
        int b;
        for (b = 0; b < nbits; b++) out[b + (size_t)c * ldo] = ng_state_bit(first + (uint64_t)c, b);
    }
    return NG_OK;
}

static ng_status cpu_fill_uniform(ng_backend *be, size_t n, float *out, uint64_t key,
                                  uint64_t step) {
    long i;
#pragma omp parallel for if (n > 16384) schedule(static)
    for (i = 0; i < (long)n; i++) out[i] = ng_uniform_at(key, step, (uint64_t)i);
    return NG_OK;
}

static ng_status cpu_fill(ng_backend *be, size_t n, float value, float *out) {
    size_t i;
    for (i = 0; i < n; i++) out[i] = value;
    return NG_OK;
}

static ng_status lapack_info(const char *what, int info, int *info_host) {
    if (info < 0) return ng_error(NG_ERR_INVALID_ARG, "%s: argument %d is invalid", what, -info);
    *info_host = info;
    return NG_OK;
}

static ng_status cpu_potrf(ng_backend *be, int n, float *A, int lda, int *info) {
    return lapack_info("spotrf", n ? LAPACKE_spotrf(LAPACK_COL_MAJOR, 'L', n, A, lda) : 0, info);
}
static ng_status cpu_potri(ng_backend *be, int n, float *A, int lda, int *info) {
    return lapack_info("spotri", n ? LAPACKE_spotri(LAPACK_COL_MAJOR, 'L', n, A, lda) : 0, info);
}
static ng_status cpu_syevd(ng_backend *be, int n, float *A, int lda, float *w, int *info) {
    return lapack_info("ssyevd", n ? LAPACKE_ssyevd(LAPACK_COL_MAJOR, 'V', 'L', n, A, lda, w) : 0,
                       info);
}
static ng_status cpu_potrf_d(ng_backend *be, int n, double *A, int lda, int *info) {
    return lapack_info("dpotrf", n ? LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', n, A, lda) : 0, info);
}
static ng_status cpu_potri_d(ng_backend *be, int n, double *A, int lda, int *info) {
    return lapack_info("dpotri", n ? LAPACKE_dpotri(LAPACK_COL_MAJOR, 'L', n, A, lda) : 0, info);
}
static ng_status cpu_syevd_d(ng_backend *be, int n, double *A, int lda, double *w, int *info) {
    return lapack_info("dsyevd", n ? LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'L', n, A, lda, w) : 0,
                       info);
}
static ng_status cpu_to_double(ng_backend *be, size_t n, const float *x, double *y) {
    size_t i;
    for (i = 0; i < n; i++) y[i] = (double)x[i];
    return NG_OK;
}
static ng_status cpu_to_float(ng_backend *be, size_t n, const double *x, float *y) {
    size_t i;
    for (i = 0; i < n; i++) y[i] = (float)x[i];
    return NG_OK;
}

static ng_status cpu_symmetrize_lower(ng_backend *be, int n, float *A, int lda, float shift) {
    int c;
#pragma omp parallel for if ((long)n * n > 65536) schedule(static)
    for (c = 0; c < n; c++) {
        int r;
        for (r = 0; r <= c; r++)
            A[r + (size_t)c * lda] = ng_sym_lower_elem(r, c, A[c + (size_t)r * lda], shift);
    }
    return NG_OK;
}

static ng_status cpu_fang_regress(ng_backend *be, int nh, int nv, const float *Evh,
                                  const float *Ev2h, const float *Evh2, const float *Ev2h2,
                                  int ldm, const float *mu_v, const float *mu_h, const float *Ev2,
                                  const float *Eh2, float lambda, float *beta_v, float *beta_h,
                                  float *sigma2, int ldo) {
    int i;
#pragma omp parallel for if ((long)nh * nv > 16384) schedule(static)
    for (i = 0; i < nv; i++) {
        int j;
        for (j = 0; j < nh; j++) {
            size_t m = j + (size_t)i * ldm, o = j + (size_t)i * ldo;
            ng_fang_regress_pair(Evh[m], Ev2h[m], Evh2[m], Ev2h2[m], mu_v[i], mu_h[j], Ev2[i],
                                 Eh2[j], lambda, &beta_v[o], &beta_h[o], &sigma2[o]);
        }
    }
    return NG_OK;
}

static ng_status cpu_fang_residual(ng_backend *be, int nh, int nv, float *G, int ldg,
                                   const float *ga, const float *gb, const float *beta_v,
                                   const float *beta_h, const float *sigma2, int ldb, float *pv,
                                   float *ph, int ldp) {
    int i;
#pragma omp parallel for if ((long)nh * nv > 65536) schedule(static)
    for (i = 0; i < nv; i++) {
        int j;
        for (j = 0; j < nh; j++) {
            size_t g = j + (size_t)i * ldg, b = j + (size_t)i * ldb, p = j + (size_t)i * ldp;
            ng_fang_residual_elem(G[g], ga[i], gb[j], beta_v[b], beta_h[b], sigma2[b], &G[g],
                                  &pv[p], &ph[p]);
        }
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
    .gemm = cpu_gemm,
    .syrk = cpu_syrk,
    .gemv = cpu_gemv,
    .axpby = cpu_axpby,
    .scal = cpu_scal,
    .dot = cpu_dot,
    .nrm2 = cpu_nrm2,
    .sum_cols = cpu_sum_cols,
    .sum_rows = cpu_sum_rows,
    .gibbs_sample = cpu_gibbs_sample,
    .bernoulli = cpu_bernoulli,
    .softplus_sum = cpu_softplus_sum,
    .binary_states = cpu_binary_states,
    .fill_uniform = cpu_fill_uniform,
    .fill = cpu_fill,
    .potrf = cpu_potrf,
    .potri = cpu_potri,
    .syevd = cpu_syevd,
    .potrf_d = cpu_potrf_d,
    .potri_d = cpu_potri_d,
    .syevd_d = cpu_syevd_d,
    .to_double = cpu_to_double,
    .to_float = cpu_to_float,
    .symmetrize_lower = cpu_symmetrize_lower,
    .fang_regress = cpu_fang_regress,
    .fang_residual = cpu_fang_residual,
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
