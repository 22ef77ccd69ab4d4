/* cuda.c: the CUDA backend (struct ng_backend_i on one NVIDIA GPU). Memory through cudart on one
 * stream, BLAS through cuBLAS, LAPACK through cuSOLVER (dense), elementwise families through the
 * launchers of kernels/ (ng_kernels.h). Column-major everywhere, so natgrad's (rows, cols, ld)
 * maps onto cuBLAS/cuSOLVER arguments unchanged; every op is queued on the backend's stream, and
 * only get/set, dot/nrm2 and the LAPACK slots (which return info to the host) wait for it.
 * Workspaces (cuSOLVER work, the vector of ones for row/column sums) are allocated on first use
 * and grow to the largest size asked for, so a training step allocates nothing after warm-up.
 * Must not: terminate the process, dereference device pointers, or use a cudart/cuBLAS/cuSOLVER
 * function that the emulator's shims (tests/simt) do not implement.
 * Without NG_HAVE_CUDA this file only reports that CUDA is not compiled in. */
#include "natgrad/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef NG_HAVE_CUDA

ng_status ng_backend_cuda_init(ng_backend **out) {
    if (out != NULL) *out = NULL;
    return ng_error(NG_ERR_NO_DEVICE, "built without CUDA (NG_CUDA=0)");
}

int ng_cuda_compiled(void) { return 0; }

#else /* NG_HAVE_CUDA */

#include <math.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include "ng_kernels.h"

/* ---- checks: a failing call becomes an ng_status naming the statement, file and line -------- */

static const char *cublas_status_str(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_?";
    }
}

static const char *cusolver_status_str(cusolverStatus_t s) {
    switch (s) {
    case CUSOLVER_STATUS_SUCCESS: return "CUSOLVER_STATUS_SUCCESS";
    case CUSOLVER_STATUS_NOT_INITIALIZED: return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED: return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE: return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH: return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_MAPPING_ERROR: return "CUSOLVER_STATUS_MAPPING_ERROR";
    case CUSOLVER_STATUS_EXECUTION_FAILED: return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR: return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED:
        return "CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED";
    case CUSOLVER_STATUS_NOT_SUPPORTED: return "CUSOLVER_STATUS_NOT_SUPPORTED";
    case CUSOLVER_STATUS_INVALID_WORKSPACE: return "CUSOLVER_STATUS_INVALID_WORKSPACE";
    default: return "CUSOLVER_STATUS_?";
    }
}

/* Allocation failures are NG_ERR_OOM, rejected arguments NG_ERR_INVALID_ARG, the rest
 * NG_ERR_BACKEND. */
static ng_status cublas_status_code(cublasStatus_t s) {
    if (s == CUBLAS_STATUS_ALLOC_FAILED) return NG_ERR_OOM;
    if (s == CUBLAS_STATUS_INVALID_VALUE) return NG_ERR_INVALID_ARG;
    return NG_ERR_BACKEND;
}

static ng_status cusolver_status_code(cusolverStatus_t s) {
    if (s == CUSOLVER_STATUS_ALLOC_FAILED) return NG_ERR_OOM;
    if (s == CUSOLVER_STATUS_INVALID_VALUE) return NG_ERR_INVALID_ARG;
    return NG_ERR_BACKEND;
}

/* The cudart check also clears the runtime's last-error slot, so that a non-sticky failure here
 * is not reported again by the next launcher's cudaGetLastError. */
#define NG_CUDA_CHECK(call)                                                                     \
    do {                                                                                        \
        cudaError_t ng_e_ = (call);                                                             \
        if (ng_e_ != cudaSuccess) {                                                             \
            (void)cudaGetLastError();                                                           \
            return ng_error(NG_ERR_BACKEND, "%s failed: %s (%s:%d)", #call,                    \
                            cudaGetErrorString(ng_e_), __FILE__, __LINE__);                     \
        }                                                                                       \
    } while (0)

#define NG_CUBLAS_CHECK(call)                                                                   \
    do {                                                                                        \
        cublasStatus_t ng_b_ = (call);                                                          \
        if (ng_b_ != CUBLAS_STATUS_SUCCESS)                                                     \
            return ng_error(cublas_status_code(ng_b_), "%s failed: %s (%d) (%s:%d)", #call,    \
                            cublas_status_str(ng_b_), (int)ng_b_, __FILE__, __LINE__);         \
    } while (0)

#define NG_CUSOLVER_CHECK(call)                                                                 \
    do {                                                                                        \
        cusolverStatus_t ng_s_ = (call);                                                        \
        if (ng_s_ != CUSOLVER_STATUS_SUCCESS)                                                   \
            return ng_error(cusolver_status_code(ng_s_), "%s failed: %s (%d) (%s:%d)", #call,  \
                            cusolver_status_str(ng_s_), (int)ng_s_, __FILE__, __LINE__);       \
    } while (0)

/* ---- context ------------------------------------------------------------------------------ */

typedef struct cuda_ctx {
    int device;
    cudaStream_t stream;       /* every op is queued here; be->stream is the same */
    cublasHandle_t blas;       /* bound to stream, host pointer mode, default (FP32) math */
    cusolverDnHandle_t solver; /* bound to stream */
    int *dev_info;             /* (1) cuSOLVER's devInfo, copied to *info_host */
    void *work;                /* (work_bytes) cuSOLVER workspace; grows, never shrinks */
    size_t work_bytes;
    float *ones;               /* (ones_n) all 1.0f: x of the gemv behind sum_cols/sum_rows */
    size_t ones_n;
} cuda_ctx;

static cuda_ctx *ctx_of(ng_backend *be) { return (cuda_ctx *)be->ctx; }

/* cudaMalloc with an NG_ERR_OOM message that names what was being allocated. */
static ng_status cuda_malloc(void **ptr, size_t bytes, const char *what) {
    cudaError_t e;
    *ptr = NULL;
    e = cudaMalloc(ptr, bytes == 0 ? 1 : bytes);
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        (void)cudaGetLastError();
        *ptr = NULL;
        if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) (void)cudaGetLastError();
        return ng_error(e == cudaErrorMemoryAllocation ? NG_ERR_OOM : NG_ERR_BACKEND,
                        "cuda: cudaMalloc of %zu bytes for %s failed: %s (%zu of %zu MiB free)",
                        bytes, what, cudaGetErrorString(e), free_b >> 20, total_b >> 20);
    }
    return NG_OK;
}

/* Free a workspace that queued work may still use: wait for the stream first. */
static void cuda_release(cuda_ctx *c, void *p) {
    if (p == NULL) return;
    if (c->stream != NULL && cudaStreamSynchronize(c->stream) != cudaSuccess)
        (void)cudaGetLastError();
    if (cudaFree(p) != cudaSuccess) (void)cudaGetLastError();
}

/* Make the cuSOLVER workspace at least `bytes` long (grow only; keep the largest). */
static ng_status cuda_workspace(cuda_ctx *c, size_t bytes) {
    void *p;
    if (bytes <= c->work_bytes && c->work != NULL) return NG_OK;
    if (bytes < ((size_t)1 << 16)) bytes = (size_t)1 << 16;
    NG_TRY(cuda_malloc(&p, bytes, "cuSOLVER workspace"));
    cuda_release(c, c->work);
    c->work = p;
    c->work_bytes = bytes;
    return NG_OK;
}

/* Make the vector of ones at least n long (grow only), filled on the stream. */
static ng_status cuda_ones(cuda_ctx *c, size_t n) {
    void *p;
    if (n <= c->ones_n && c->ones != NULL) return NG_OK;
    if (n < 1024) n = 1024;
    NG_TRY(cuda_malloc(&p, n * sizeof(float), "vector of ones"));
    cuda_release(c, c->ones);
    c->ones = (float *)p;
    c->ones_n = n;
    if (ng_cuda_fill(n, 1.0f, c->ones, c->stream) != NG_OK) {
        c->ones_n = 0; /* not filled: refill (and reallocate) on the next use */
        return NG_ERR_BACKEND;
    }
    return NG_OK;
}

/* Copy cuSOLVER's devInfo to the host (waits for the stream). info < 0 is a bad argument, which
 * the wrappers should have caught, so it is an error; info > 0 is LAPACK's numerical report and
 * is returned to the caller to act on. */
static ng_status cuda_read_info(cuda_ctx *c, const char *op, int *info_host) {
    int info = 0;
    NG_CUDA_CHECK(cudaMemcpyAsync(&info, c->dev_info, sizeof(int), cudaMemcpyDeviceToHost,
                                  c->stream));
    NG_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    *info_host = info;
    if (info < 0)
        return ng_error(NG_ERR_INVALID_ARG, "cuda: %s: argument %d had an illegal value", op,
                        -info);
    return NG_OK;
}

/* ---- memory ------------------------------------------------------------------------------- */

static ng_status cuda_alloc(ng_backend *be, size_t bytes, void **ptr) {
    (void)be;
    return cuda_malloc(ptr, bytes, "a tensor");
}

static void cuda_free(ng_backend *be, void *ptr) { cuda_release(ctx_of(be), ptr); }

/* dst (device) = src_host; returns once src_host may be reused. */
static ng_status cuda_set(ng_backend *be, void *dst, const void *src_host, size_t bytes) {
    cuda_ctx *c = ctx_of(be);
    if (bytes == 0) return NG_OK;
    NG_CUDA_CHECK(cudaMemcpyAsync(dst, src_host, bytes, cudaMemcpyHostToDevice, c->stream));
    NG_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return NG_OK;
}

/* dst_host = src (device), after all queued work; returns once dst_host holds the data. */
static ng_status cuda_get(ng_backend *be, void *dst_host, const void *src, size_t bytes) {
    cuda_ctx *c = ctx_of(be);
    if (bytes == 0) return NG_OK;
    NG_CUDA_CHECK(cudaMemcpyAsync(dst_host, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    NG_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return NG_OK;
}

static ng_status cuda_memset0(ng_backend *be, void *dst, size_t bytes) {
    if (bytes == 0) return NG_OK;
    NG_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, ctx_of(be)->stream));
    return NG_OK;
}

static ng_status cuda_copy(ng_backend *be, void *dst, const void *src, size_t bytes) {
    if (bytes == 0 || dst == src) return NG_OK;
    NG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx_of(be)->stream));
    return NG_OK;
}

static ng_status cuda_synchronize(ng_backend *be) {
    NG_CUDA_CHECK(cudaStreamSynchronize(ctx_of(be)->stream));
    return NG_OK;
}

/* ---- BLAS --------------------------------------------------------------------------------- */

static cublasOperation_t cuda_op(int trans) { return trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

/* C(m,n) = alpha op(A) op(B) + beta C. With alpha = 0 or k = 0, BLAS reads neither A nor B
 * (a NaN there must not leak into C): that case is C = beta C by a kernel. */
static ng_status cuda_gemm(ng_backend *be, int ta, int tb, int m, int n, int k, float alpha,
                           const float *A, int lda, const float *B, int ldb, float beta, float *C,
                           int ldc) {
    if (m == 0 || n == 0) return NG_OK;
    if (k == 0 || alpha == 0.0f) {
        if (beta == 1.0f) return NG_OK;
        return ng_cuda_scale_matrix(m, n, beta, C, ldc, 0, be->stream);
    }
    NG_CUBLAS_CHECK(cublasSgemm(ctx_of(be)->blas, cuda_op(ta), cuda_op(tb), m, n, k, &alpha, A,
                                lda, B, ldb, &beta, C, ldc));
    return NG_OK;
}

/* lower triangle of C(n,n) = alpha op(A) op(A)^T + beta C; op(A) is (n,k). alpha = 0 or k = 0:
 * lower triangle of C = beta C, A not read. */
static ng_status cuda_syrk(ng_backend *be, int trans, int n, int k, float alpha, const float *A,
                           int lda, float beta, float *C, int ldc) {
    if (n == 0) return NG_OK;
    if (k == 0 || alpha == 0.0f) {
        if (beta == 1.0f) return NG_OK;
        return ng_cuda_scale_matrix(n, n, beta, C, ldc, 1, be->stream);
    }
    NG_CUBLAS_CHECK(cublasSsyrk(ctx_of(be)->blas, CUBLAS_FILL_MODE_LOWER, cuda_op(trans), n, k,
                                &alpha, A, lda, &beta, C, ldc));
    return NG_OK;
}

/* y(len) = beta y (beta = 0 writes 0 without reading y): what alpha = 0 or a sum over an empty
 * dimension leaves. BLAS gemv would skip the scaling when the inner dimension is empty. */
static ng_status cuda_scale_only(ng_backend *be, int len, float beta, float *y) {
    if (len <= 0 || beta == 1.0f) return NG_OK;
    return ng_cuda_scale_matrix(len, 1, beta, y, len, 0, be->stream);
}

/* y = alpha op(A) x + beta y, A is (m,n); alpha = 0 or an empty inner dimension: y = beta y */
static ng_status cuda_gemv(ng_backend *be, int trans, int m, int n, float alpha, const float *A,
                           int lda, const float *x, float beta, float *y) {
    if ((trans ? n : m) == 0) return NG_OK;
    if (alpha == 0.0f || (trans ? m : n) == 0) return cuda_scale_only(be, trans ? n : m, beta, y);
    NG_CUBLAS_CHECK(cublasSgemv(ctx_of(be)->blas, cuda_op(trans), m, n, &alpha, A, lda, x, 1,
                                &beta, y, 1));
    return NG_OK;
}

/* y(n) = alpha x + beta y (one kernel; beta = 0 ignores y) */
static ng_status cuda_axpby(ng_backend *be, size_t n, float alpha, const float *x, float beta,
                            float *y) {
    if (n == 0) return NG_OK;
    return ng_cuda_axpby(n, alpha, x, beta, y, be->stream);
}

/* cuBLAS level-1 counts are int: longer vectors go in chunks of CUDA_CHUNK elements. */
#define CUDA_CHUNK ((size_t)1 << 30)

/* x(n) = alpha x */
static ng_status cuda_scal(ng_backend *be, size_t n, float alpha, float *x) {
    size_t off;
    for (off = 0; off < n; off += CUDA_CHUNK) {
        size_t len = n - off < CUDA_CHUNK ? n - off : CUDA_CHUNK;
        NG_CUBLAS_CHECK(cublasSscal(ctx_of(be)->blas, (int)len, &alpha, x + off, 1));
    }
    return NG_OK;
}

/* *result_host = x . y (waits for the result: host pointer mode) */
static ng_status cuda_dot(ng_backend *be, size_t n, const float *x, const float *y,
                          float *result_host) {
    double acc = 0.0;
    size_t off;
    for (off = 0; off < n; off += CUDA_CHUNK) {
        size_t len = n - off < CUDA_CHUNK ? n - off : CUDA_CHUNK;
        float part = 0.0f;
        NG_CUBLAS_CHECK(
            cublasSdot(ctx_of(be)->blas, (int)len, x + off, 1, y + off, 1, &part));
        acc += (double)part;
    }
    *result_host = (float)acc;
    return NG_OK;
}

/* *result_host = ||x||_2 (waits for the result) */
static ng_status cuda_nrm2(ng_backend *be, size_t n, const float *x, float *result_host) {
    double sumsq = 0.0;
    size_t off;
    if (n <= CUDA_CHUNK) {
        float r = 0.0f;
        if (n > 0) NG_CUBLAS_CHECK(cublasSnrm2(ctx_of(be)->blas, (int)n, x, 1, &r));
        *result_host = r;
        return NG_OK;
    }
    for (off = 0; off < n; off += CUDA_CHUNK) {
        size_t len = n - off < CUDA_CHUNK ? n - off : CUDA_CHUNK;
        float part = 0.0f;
        NG_CUBLAS_CHECK(cublasSnrm2(ctx_of(be)->blas, (int)len, x + off, 1, &part));
        sumsq += (double)part * (double)part;
    }
    *result_host = (float)sqrt(sumsq);
    return NG_OK;
}

/* y(rows) = alpha * A(rows,cols) 1(cols) + beta y: gemv N against the ones vector */
static ng_status cuda_sum_cols(ng_backend *be, int rows, int cols, float alpha, const float *A,
                               int lda, float beta, float *y) {
    cuda_ctx *c = ctx_of(be);
    if (rows == 0) return NG_OK;
    if (cols == 0) return cuda_scale_only(be, rows, beta, y);
    NG_TRY(cuda_ones(c, (size_t)cols));
    NG_CUBLAS_CHECK(cublasSgemv(c->blas, CUBLAS_OP_N, rows, cols, &alpha, A, lda, c->ones, 1,
                                &beta, y, 1));
    return NG_OK;
}

/* y(cols) = alpha * A(rows,cols)^T 1(rows) + beta y: gemv T against the ones vector */
static ng_status cuda_sum_rows(ng_backend *be, int rows, int cols, float alpha, const float *A,
                               int lda, float beta, float *y) {
    cuda_ctx *c = ctx_of(be);
    if (cols == 0) return NG_OK;
    if (rows == 0) return cuda_scale_only(be, cols, beta, y);
    NG_TRY(cuda_ones(c, (size_t)rows));
    NG_CUBLAS_CHECK(cublasSgemv(c->blas, CUBLAS_OP_T, rows, cols, &alpha, A, lda, c->ones, 1,
                                &beta, y, 1));
    return NG_OK;
}

/* ---- elementwise families (kernels/) ------------------------------------------------------- */

static ng_status cuda_gibbs_sample(ng_backend *be, int rows, int cols, const float *pre, int ldp,
                                   const float *bias, float beta, const float *base, float *prob,
                                   int ldq, float *sample, int lds, uint64_t key, uint64_t step) {
    if (rows == 0 || cols == 0) return NG_OK;
    return ng_cuda_gibbs_sample(rows, cols, pre, ldp, bias, beta, base, prob, ldq, sample, lds,
                                key, step, be->stream);
}

static ng_status cuda_bernoulli(ng_backend *be, size_t n, const float *p, float *out,
                                uint64_t key, uint64_t step) {
    if (n == 0) return NG_OK;
    return ng_cuda_bernoulli(n, p, out, key, step, be->stream);
}

static ng_status cuda_softplus_sum(ng_backend *be, int rows, int cols, const float *pre, int ldp,
                                   const float *bias, float beta, float alpha, float gamma,
                                   float *y) {
    if (cols == 0) return NG_OK;
    return ng_cuda_softplus_sum(rows, cols, pre, ldp, bias, beta, alpha, gamma, y, be->stream);
}

static ng_status cuda_binary_states(ng_backend *be, int nbits, uint64_t first, int count,
                                    float *out, int ldo) {
    if (nbits == 0 || count == 0) return NG_OK;
    return ng_cuda_binary_states(nbits, first, count, out, ldo, be->stream);
}

static ng_status cuda_fill_uniform(ng_backend *be, size_t n, float *out, uint64_t key,
                                   uint64_t step) {
    if (n == 0) return NG_OK;
    return ng_cuda_fill_uniform(n, out, key, step, be->stream);
}

static ng_status cuda_fill(ng_backend *be, size_t n, float value, float *out) {
    if (n == 0) return NG_OK;
    return ng_cuda_fill(n, value, out, be->stream);
}

static ng_status cuda_to_double(ng_backend *be, size_t n, const float *x, double *y) {
    if (n == 0) return NG_OK;
    return ng_cuda_to_double(n, x, y, be->stream);
}

static ng_status cuda_to_float(ng_backend *be, size_t n, const double *x, float *y) {
    if (n == 0) return NG_OK;
    return ng_cuda_to_float(n, x, y, be->stream);
}

/* ---- LAPACK (cuSOLVER dense), lower triangle, column-major (n,n) --------------------------- */

/* A = L with L L^T = A (lower triangle overwritten; the strict upper triangle is not touched) */
static ng_status cuda_potrf(ng_backend *be, int n, float *A, int lda, int *info_host) {
    cuda_ctx *c = ctx_of(be);
    int lwork = 0;
    *info_host = 0;
    if (n == 0) return NG_OK;
    NG_CUSOLVER_CHECK(
        cusolverDnSpotrf_bufferSize(c->solver, CUBLAS_FILL_MODE_LOWER, n, A, lda, &lwork));
    NG_TRY(cuda_workspace(c, (size_t)lwork * sizeof(float)));
    NG_CUSOLVER_CHECK(cusolverDnSpotrf(c->solver, CUBLAS_FILL_MODE_LOWER, n, A, lda,
                                       (float *)c->work, lwork, c->dev_info));
    return cuda_read_info(c, "cusolverDnSpotrf", info_host);
}

/* lower triangle of A = (L L^T)^-1, L the lower Cholesky factor held in A */
static ng_status cuda_potri(ng_backend *be, int n, float *A, int lda, int *info_host) {
    cuda_ctx *c = ctx_of(be);
    int lwork = 0;
    *info_host = 0;
    if (n == 0) return NG_OK;
    NG_CUSOLVER_CHECK(
        cusolverDnSpotri_bufferSize(c->solver, CUBLAS_FILL_MODE_LOWER, n, A, lda, &lwork));
    NG_TRY(cuda_workspace(c, (size_t)lwork * sizeof(float)));
    NG_CUSOLVER_CHECK(cusolverDnSpotri(c->solver, CUBLAS_FILL_MODE_LOWER, n, A, lda,
                                       (float *)c->work, lwork, c->dev_info));
    return cuda_read_info(c, "cusolverDnSpotri", info_host);
}

/* w(n) = eigenvalues ascending, columns of A = eigenvectors (lower triangle read) */
static ng_status cuda_syevd(ng_backend *be, int n, float *A, int lda, float *w, int *info_host) {
    cuda_ctx *c = ctx_of(be);
    int lwork = 0;
    *info_host = 0;
    if (n == 0) return NG_OK;
    NG_CUSOLVER_CHECK(cusolverDnSsyevd_bufferSize(c->solver, CUSOLVER_EIG_MODE_VECTOR,
                                                  CUBLAS_FILL_MODE_LOWER, n, A, lda, w, &lwork));
    NG_TRY(cuda_workspace(c, (size_t)lwork * sizeof(float)));
    NG_CUSOLVER_CHECK(cusolverDnSsyevd(c->solver, CUSOLVER_EIG_MODE_VECTOR,
                                       CUBLAS_FILL_MODE_LOWER, n, A, lda, w, (float *)c->work,
                                       lwork, c->dev_info));
    return cuda_read_info(c, "cusolverDnSsyevd", info_host);
}

static ng_status cuda_potrf_d(ng_backend *be, int n, double *A, int lda, int *info_host) {
    cuda_ctx *c = ctx_of(be);
    int lwork = 0;
    *info_host = 0;
    if (n == 0) return NG_OK;
    NG_CUSOLVER_CHECK(
        cusolverDnDpotrf_bufferSize(c->solver, CUBLAS_FILL_MODE_LOWER, n, A, lda, &lwork));
    NG_TRY(cuda_workspace(c, (size_t)lwork * sizeof(double)));
    NG_CUSOLVER_CHECK(cusolverDnDpotrf(c->solver, CUBLAS_FILL_MODE_LOWER, n, A, lda,
                                       (double *)c->work, lwork, c->dev_info));
    return cuda_read_info(c, "cusolverDnDpotrf", info_host);
}

static ng_status cuda_potri_d(ng_backend *be, int n, double *A, int lda, int *info_host) {
    cuda_ctx *c = ctx_of(be);
    int lwork = 0;
    *info_host = 0;
    if (n == 0) return NG_OK;
    NG_CUSOLVER_CHECK(
        cusolverDnDpotri_bufferSize(c->solver, CUBLAS_FILL_MODE_LOWER, n, A, lda, &lwork));
    NG_TRY(cuda_workspace(c, (size_t)lwork * sizeof(double)));
    NG_CUSOLVER_CHECK(cusolverDnDpotri(c->solver, CUBLAS_FILL_MODE_LOWER, n, A, lda,
                                       (double *)c->work, lwork, c->dev_info));
    return cuda_read_info(c, "cusolverDnDpotri", info_host);
}

static ng_status cuda_syevd_d(ng_backend *be, int n, double *A, int lda, double *w,
                              int *info_host) {
    cuda_ctx *c = ctx_of(be);
    int lwork = 0;
    *info_host = 0;
    if (n == 0) return NG_OK;
    NG_CUSOLVER_CHECK(cusolverDnDsyevd_bufferSize(c->solver, CUSOLVER_EIG_MODE_VECTOR,
                                                  CUBLAS_FILL_MODE_LOWER, n, A, lda, w, &lwork));
    NG_TRY(cuda_workspace(c, (size_t)lwork * sizeof(double)));
    NG_CUSOLVER_CHECK(cusolverDnDsyevd(c->solver, CUSOLVER_EIG_MODE_VECTOR,
                                       CUBLAS_FILL_MODE_LOWER, n, A, lda, w, (double *)c->work,
                                       lwork, c->dev_info));
    return cuda_read_info(c, "cusolverDnDsyevd", info_host);
}

/* ---- lifetime ----------------------------------------------------------------------------- */

/* Releases everything a (possibly half-built) backend holds, then the backend object itself.
 * Errors are ignored: there is nothing left to report them to. */
static void cuda_destroy(ng_backend *be) {
    cuda_ctx *c;
    if (be == NULL) return;
    c = ctx_of(be);
    if (c != NULL) {
        if (c->stream != NULL && cudaStreamSynchronize(c->stream) != cudaSuccess)
            (void)cudaGetLastError();
        if (c->solver != NULL) (void)cusolverDnDestroy(c->solver);
        if (c->blas != NULL) (void)cublasDestroy(c->blas);
        if (c->work != NULL) (void)cudaFree(c->work);
        if (c->ones != NULL) (void)cudaFree(c->ones);
        if (c->dev_info != NULL) (void)cudaFree(c->dev_info);
        if (c->stream != NULL) (void)cudaStreamDestroy(c->stream);
        (void)cudaGetLastError();
        free(c);
    }
    free(be);
}

/* ---- FANG slots (kernels/fang.cu) --------------------------------------------------------- */

static ng_status cuda_symmetrize_lower(ng_backend *be, int n, float *A, int lda, float shift) {
    if (n == 0) return NG_OK;
    return ng_cuda_symmetrize_lower(n, A, lda, shift, be->stream);
}

static ng_status cuda_fang_regress(ng_backend *be, int nh, int nv, const float *Evh,
                                   const float *Ev2h, const float *Evh2, const float *Ev2h2,
                                   int ldm, const float *mu_v, const float *mu_h,
                                   const float *Ev2, const float *Eh2, float lambda,
                                   float *beta_v, float *beta_h, float *sigma2, int ldo) {
    if (nh == 0 || nv == 0) return NG_OK;
    return ng_cuda_fang_regress(nh, nv, Evh, Ev2h, Evh2, Ev2h2, ldm, mu_v, mu_h, Ev2, Eh2, lambda,
                                beta_v, beta_h, sigma2, ldo, be->stream);
}

static ng_status cuda_fang_residual(ng_backend *be, int nh, int nv, float *G, int ldg,
                                    const float *ga, const float *gb, const float *beta_v,
                                    const float *beta_h, const float *sigma2, int ldb, float *pv,
                                    float *ph, int ldp) {
    if (nh == 0 || nv == 0) return NG_OK;
    return ng_cuda_fang_residual(nh, nv, G, ldg, ga, gb, beta_v, beta_h, sigma2, ldb, pv, ph,
                                 ldp, be->stream);
}

static const struct ng_backend_i cuda_iface = {
    .name = "cuda",
    .destroy = cuda_destroy,

    .alloc = cuda_alloc,
    .free = cuda_free,
    .set = cuda_set,
    .get = cuda_get,
    .memset0 = cuda_memset0,
    .copy = cuda_copy,
    .synchronize = cuda_synchronize,

    .gemm = cuda_gemm,
    .syrk = cuda_syrk,
    .gemv = cuda_gemv,
    .axpby = cuda_axpby,
    .scal = cuda_scal,
    .dot = cuda_dot,
    .nrm2 = cuda_nrm2,
    .sum_cols = cuda_sum_cols,
    .sum_rows = cuda_sum_rows,

    .gibbs_sample = cuda_gibbs_sample,
    .bernoulli = cuda_bernoulli,
    .softplus_sum = cuda_softplus_sum,
    .binary_states = cuda_binary_states,
    .fill_uniform = cuda_fill_uniform,
    .fill = cuda_fill,

    .potrf = cuda_potrf,
    .potri = cuda_potri,
    .syevd = cuda_syevd,
    .potrf_d = cuda_potrf_d,
    .potri_d = cuda_potri_d,
    .syevd_d = cuda_syevd_d,
    .to_double = cuda_to_double,
    .to_float = cuda_to_float,

    .symmetrize_lower = cuda_symmetrize_lower,
    .fang_regress = cuda_fang_regress,
    .fang_residual = cuda_fang_residual,
};

/* Device, stream, library handles, devInfo; the banner line. A device that cannot be selected
 * or described is NG_ERR_NO_DEVICE (so --device auto falls back to the CPU). */
static ng_status cuda_open(ng_backend *be, cuda_ctx *c) {
    struct cudaDeviceProp prop;
    cudaError_t e;
    int blas_ver = 0;

    e = cudaGetDevice(&c->device);
    if (e == cudaSuccess) e = cudaSetDevice(c->device);
    if (e == cudaSuccess) e = cudaGetDeviceProperties(&prop, c->device);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return ng_error(NG_ERR_NO_DEVICE, "cuda: cannot use device %d: %s", c->device,
                        cudaGetErrorString(e));
    }

    NG_CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    be->stream = c->stream;
    NG_CUBLAS_CHECK(cublasCreate(&c->blas));
    NG_CUBLAS_CHECK(cublasSetStream(c->blas, c->stream));
    NG_CUBLAS_CHECK(cublasSetPointerMode(c->blas, CUBLAS_POINTER_MODE_HOST));
    NG_CUBLAS_CHECK(cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH));
    NG_CUBLAS_CHECK(cublasGetVersion(c->blas, &blas_ver));
    NG_CUSOLVER_CHECK(cusolverDnCreate(&c->solver));
    NG_CUSOLVER_CHECK(cusolverDnSetStream(c->solver, c->stream));
    {
        void *p;
        NG_TRY(cuda_malloc(&p, sizeof(int), "cuSOLVER devInfo"));
        c->dev_info = (int *)p;
    }

    snprintf(be->description, sizeof be->description,
             "cuda: %.120s, sm_%d%d, %.1f GiB, cuBLAS %d.%d.%d", prop.name, prop.major,
             prop.minor, (double)prop.totalGlobalMem / (double)(1ull << 30), blas_ver / 10000,
             (blas_ver / 100) % 100, blas_ver % 100);
    return NG_OK;
}

ng_status ng_backend_cuda_init(ng_backend **out) {
    ng_backend *be;
    cuda_ctx *c;
    ng_status s;
    cudaError_t e;
    int count = 0;

    if (out == NULL) return ng_error(NG_ERR_INVALID_ARG, "ng_backend_cuda_init: out is NULL");
    *out = NULL;
    e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        int driver = 0;
        (void)cudaGetLastError();
        if (cudaDriverGetVersion(&driver) != cudaSuccess) (void)cudaGetLastError();
        return ng_error(NG_ERR_NO_DEVICE, "no usable CUDA device: cudaGetDeviceCount: %s%s",
                        cudaGetErrorString(e), driver == 0 ? " (no NVIDIA driver loaded)" : "");
    }
    if (count < 1) return ng_error(NG_ERR_NO_DEVICE, "no CUDA device found (device count 0)");

    be = (ng_backend *)calloc(1, sizeof *be);
    c = (cuda_ctx *)calloc(1, sizeof *c);
    if (be == NULL || c == NULL) {
        free(be);
        free(c);
        return ng_error(NG_ERR_OOM, "cuda backend: out of host memory");
    }
    be->iface = &cuda_iface;
    be->kind = NG_DEVICE_CUDA;
    be->ctx = c;
    s = cuda_open(be, c);
    if (s != NG_OK) {
        cuda_destroy(be);
        return s;
    }
    *out = be;
    return NG_OK;
}

int ng_cuda_compiled(void) { return 1; }

#endif /* NG_HAVE_CUDA */
