/* cuda.c: the CUDA backend (struct ng_backend_i on one NVIDIA GPU). Memory through cudart on one
 * stream, BLAS through cuBLAS, LAPACK through cuSOLVER (dense), elementwise families (run_op) through
 * the launchers of kernels/ (ng_kernels.h). Several backends may coexist, one per device: the
 * wrappers call activate (cudaSetDevice) before every slot. Column-major everywhere, so natgrad's (rows, cols, ld)
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

ng_status ng_backend_cuda_init(int index, ng_backend **out) {
    (void)index;
    if (out != NULL) *out = NULL;
    return ng_error(NG_ERR_NO_DEVICE, "built without CUDA (NG_CUDA=0)");
}

int ng_cuda_compiled(void) { return 0; }
int ng_cuda_device_count(void) { return 0; }

#else /* NG_HAVE_CUDA */

#include <math.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include "natgrad/profile.h"
#include "ng_cuda_check.h"
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

/* Computing library calls and copies are counted in the profile's device-call counters
 * (natgrad/profile.h) before they are made; configuration calls (streams, modes) are not. */
#define NG_CUBLAS_CALL(call)                                                                    \
    do {                                                                                        \
        ng_profile_device_call(NG_DEV_BLAS);                                                    \
        NG_CUBLAS_CHECK(call);                                                                  \
    } while (0)
#define NG_CUSOLVER_CALL(call)                                                                  \
    do {                                                                                        \
        ng_profile_device_call(NG_DEV_SOLVER);                                                  \
        NG_CUSOLVER_CHECK(call);                                                                \
    } while (0)
#define NG_CUDA_COPY(call)                                                                      \
    do {                                                                                        \
        ng_profile_device_call(NG_DEV_COPY);                                                    \
        NG_CUDA_CHECK(call);                                                                    \
    } while (0)

/* ---- context ------------------------------------------------------------------------------ */

typedef struct cuda_ctx {
    int device;                /* ordinal; made current before every call (activate) */
    cudaStream_t stream;       /* every op is queued here; be->stream is the same */
    cublasHandle_t blas;       /* bound to stream, host pointer mode, default (FP32) math */
    cusolverDnHandle_t solver; /* bound to stream */
    int *dev_info;             /* (1) cuSOLVER's devInfo, copied to *info_host */
    void *work;                /* (work_bytes) cuSOLVER workspace; grows, never shrinks */
    size_t work_bytes;
    float *ones;               /* (ones_n) all 1.0f: x of the gemv behind sum_cols/sum_rows */
    size_t ones_n;
    cusolverDnParams_t params; /* of the 64-bit cuSOLVER API (batched syev), made on first use */
    void *hwork;               /* (hwork_bytes) host workspace of that API; grows, never shrinks */
    size_t hwork_bytes;
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
    NG_CUDA_COPY(cudaMemcpyAsync(&info, c->dev_info, sizeof(int), cudaMemcpyDeviceToHost,
                                  c->stream));
    NG_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    *info_host = info;
    if (info < 0)
        return ng_error(NG_ERR_INVALID_ARG, "cuda: %s: argument %d had an illegal value", op,
                        -info);
    return NG_OK;
}

/* ---- memory ------------------------------------------------------------------------------- */

static ng_status cuda_activate(ng_backend *be) {
    NG_CUDA_CHECK(cudaSetDevice(ctx_of(be)->device));
    return NG_OK;
}

static ng_status cuda_alloc(ng_backend *be, size_t bytes, void **ptr) {
    (void)be;
    return cuda_malloc(ptr, bytes, "a tensor");
}

static void cuda_free(ng_backend *be, void *ptr) { cuda_release(ctx_of(be), ptr); }

/* dst (device) = src_host; returns once src_host may be reused. */
static ng_status cuda_set(ng_backend *be, void *dst, const void *src_host, size_t bytes) {
    cuda_ctx *c = ctx_of(be);
    NG_CUDA_COPY(cudaMemcpyAsync(dst, src_host, bytes, cudaMemcpyHostToDevice, c->stream));
    NG_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return NG_OK;
}

/* dst_host = src (device), after all queued work; returns once dst_host holds the data. */
static ng_status cuda_get(ng_backend *be, void *dst_host, const void *src, size_t bytes) {
    cuda_ctx *c = ctx_of(be);
    NG_CUDA_COPY(cudaMemcpyAsync(dst_host, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    NG_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return NG_OK;
}

static ng_status cuda_memset0(ng_backend *be, void *dst, size_t bytes) {
    NG_CUDA_COPY(cudaMemsetAsync(dst, 0, bytes, ctx_of(be)->stream));
    return NG_OK;
}

static ng_status cuda_copy(ng_backend *be, void *dst, const void *src, size_t bytes) {
    NG_CUDA_COPY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx_of(be)->stream));
    return NG_OK;
}

static ng_status cuda_synchronize(ng_backend *be) {
    NG_CUDA_CHECK(cudaStreamSynchronize(ctx_of(be)->stream));
    return NG_OK;
}

/* Pinned host memory: transfers from it are truly asynchronous. */
static ng_status cuda_alloc_host(ng_backend *be, size_t bytes, void **ptr) {
    cudaError_t e = cudaMallocHost(ptr, bytes ? bytes : 1);
    (void)be;
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        *ptr = NULL;
        return ng_error(e == cudaErrorMemoryAllocation ? NG_ERR_OOM : NG_ERR_BACKEND,
                        "cuda: cudaMallocHost of %zu bytes failed: %s", bytes, cudaGetErrorString(e));
    }
    return NG_OK;
}

static void cuda_free_host(ng_backend *be, void *ptr) {
    cuda_ctx *c = ctx_of(be);
    if (c->stream != NULL && cudaStreamSynchronize(c->stream) != cudaSuccess) (void)cudaGetLastError();
    if (cudaFreeHost(ptr) != cudaSuccess) (void)cudaGetLastError();
}

/* Queued on the stream; the host buffer must stay untouched until a later event completes. */
static ng_status cuda_set_async(ng_backend *be, void *dst, const void *src_host, size_t bytes) {
    NG_CUDA_COPY(cudaMemcpyAsync(dst, src_host, bytes, cudaMemcpyHostToDevice, ctx_of(be)->stream));
    return NG_OK;
}

static ng_status cuda_get_async(ng_backend *be, void *dst_host, const void *src, size_t bytes) {
    NG_CUDA_COPY(cudaMemcpyAsync(dst_host, src, bytes, cudaMemcpyDeviceToHost, ctx_of(be)->stream));
    return NG_OK;
}

static ng_status cuda_event_create(ng_backend *be, void **ev) {
    cudaEvent_t e = NULL;
    (void)be;
    NG_CUDA_CHECK(cudaEventCreate(&e));
    *ev = (void *)e;
    return NG_OK;
}

static void cuda_event_destroy(ng_backend *be, void *ev) {
    (void)be;
    if (cudaEventDestroy((cudaEvent_t)ev) != cudaSuccess) (void)cudaGetLastError();
}

static ng_status cuda_event_record(ng_backend *be, void *ev) {
    NG_CUDA_CHECK(cudaEventRecord((cudaEvent_t)ev, ctx_of(be)->stream));
    return NG_OK;
}

static ng_status cuda_event_wait(ng_backend *be, void *ev) {
    NG_CUDA_CHECK(cudaStreamWaitEvent(ctx_of(be)->stream, (cudaEvent_t)ev, 0));
    return NG_OK;
}

static ng_status cuda_event_synchronize(ng_backend *be, void *ev) {
    (void)be;
    NG_CUDA_CHECK(cudaEventSynchronize((cudaEvent_t)ev));
    return NG_OK;
}

static ng_status cuda_event_elapsed(ng_backend *be, void *a, void *b, float *ms) {
    (void)be;
    NG_CUDA_CHECK(cudaEventElapsedTime(ms, (cudaEvent_t)a, (cudaEvent_t)b));
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
    NG_CUBLAS_CALL(cublasSgemm(ctx_of(be)->blas, cuda_op(ta), cuda_op(tb), m, n, k, &alpha, A,
                                lda, B, ldb, &beta, C, ldc));
    return NG_OK;
}

static ng_status cuda_gemm_strided_batched(ng_backend *be, int ta, int tb, int m, int n, int k,
                                           float alpha, const float *A, int lda, long long sa,
                                           const float *B, int ldb, long long sb, float beta,
                                           float *C, int ldc, long long sc, int count) {
    if (k == 0 || alpha == 0.0f) {
        int i;
        if (beta == 1.0f) return NG_OK;
        for (i = 0; i < count; i++)
            NG_TRY(ng_cuda_scale_matrix(m, n, beta, C + (size_t)i * (size_t)sc, ldc, 0, be->stream));
        return NG_OK;
    }
    NG_CUBLAS_CALL(cublasSgemmStridedBatched(ctx_of(be)->blas, cuda_op(ta), cuda_op(tb), m, n, k,
                                              &alpha, A, lda, sa, B, ldb, sb, &beta, C, ldc, sc,
                                              count));
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
    NG_CUBLAS_CALL(cublasSsyrk(ctx_of(be)->blas, CUBLAS_FILL_MODE_LOWER, cuda_op(trans), n, k,
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
    NG_CUBLAS_CALL(cublasSgemv(ctx_of(be)->blas, cuda_op(trans), m, n, &alpha, A, lda, x, 1,
                                &beta, y, 1));
    return NG_OK;
}

static ng_status cuda_trsm(ng_backend *be, int right, int lower, int trans, int unit, int m, int n,
                           float alpha, const float *A, int lda, float *B, int ldb) {
    NG_CUBLAS_CALL(cublasStrsm(ctx_of(be)->blas, right ? CUBLAS_SIDE_RIGHT : CUBLAS_SIDE_LEFT,
                                lower ? CUBLAS_FILL_MODE_LOWER : CUBLAS_FILL_MODE_UPPER,
                                cuda_op(trans), unit ? CUBLAS_DIAG_UNIT : CUBLAS_DIAG_NON_UNIT, m, n,
                                &alpha, A, lda, B, ldb));
    return NG_OK;
}

/* cuBLAS level-1 counts are int: longer vectors go in chunks of CUDA_CHUNK elements. */
#define CUDA_CHUNK ((size_t)1 << 30)

/* x(n) = alpha x */
static ng_status cuda_scal(ng_backend *be, size_t n, float alpha, float *x) {
    size_t off;
    for (off = 0; off < n; off += CUDA_CHUNK) {
        size_t len = n - off < CUDA_CHUNK ? n - off : CUDA_CHUNK;
        NG_CUBLAS_CALL(cublasSscal(ctx_of(be)->blas, (int)len, &alpha, x + off, 1));
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
        NG_CUBLAS_CALL(cublasSdot(ctx_of(be)->blas, (int)len, x + off, 1, y + off, 1, &part));
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
        NG_CUBLAS_CALL(cublasSnrm2(ctx_of(be)->blas, (int)n, x, 1, &r));
        *result_host = r;
        return NG_OK;
    }
    for (off = 0; off < n; off += CUDA_CHUNK) {
        size_t len = n - off < CUDA_CHUNK ? n - off : CUDA_CHUNK;
        float part = 0.0f;
        NG_CUBLAS_CALL(cublasSnrm2(ctx_of(be)->blas, (int)len, x + off, 1, &part));
        sumsq += (double)part * (double)part;
    }
    *result_host = (float)sqrt(sumsq);
    return NG_OK;
}

/* Device-pointer-mode reductions: the result is written to device memory by the stream, nothing
 * waits. The handle goes back to host pointer mode before returning, whatever happened. */
static ng_status cuda_device_mode_done(cuda_ctx *c, cublasStatus_t st, const char *what) {
    cublasStatus_t back = cublasSetPointerMode(c->blas, CUBLAS_POINTER_MODE_HOST);
    if (st != CUBLAS_STATUS_SUCCESS)
        return ng_error(cublas_status_code(st), "%s failed: %s (%d)", what, cublas_status_str(st), (int)st);
    if (back != CUBLAS_STATUS_SUCCESS)
        return ng_error(cublas_status_code(back), "cublasSetPointerMode(HOST) failed: %s", cublas_status_str(back));
    return NG_OK;
}

static ng_status cuda_dot_dev(ng_backend *be, size_t n, const float *x, const float *y, float *r) {
    cuda_ctx *c = ctx_of(be);
    if (n > (size_t)2147483647)
        return ng_error(NG_ERR_UNSUPPORTED, "dot_dev: %zu elements exceed cuBLAS's int count", n);
    if (n == 0) return ng_cuda_fill(1, 0.0f, r, c->stream);
    NG_CUBLAS_CHECK(cublasSetPointerMode(c->blas, CUBLAS_POINTER_MODE_DEVICE));
    ng_profile_device_call(NG_DEV_BLAS);
    return cuda_device_mode_done(c, cublasSdot(c->blas, (int)n, x, 1, y, 1, r), "cublasSdot (device result)");
}

static ng_status cuda_nrm2_dev(ng_backend *be, size_t n, const float *x, float *r) {
    cuda_ctx *c = ctx_of(be);
    if (n > (size_t)2147483647)
        return ng_error(NG_ERR_UNSUPPORTED, "nrm2_dev: %zu elements exceed cuBLAS's int count", n);
    if (n == 0) return ng_cuda_fill(1, 0.0f, r, c->stream);
    NG_CUBLAS_CHECK(cublasSetPointerMode(c->blas, CUBLAS_POINTER_MODE_DEVICE));
    ng_profile_device_call(NG_DEV_BLAS);
    return cuda_device_mode_done(c, cublasSnrm2(c->blas, (int)n, x, 1, r), "cublasSnrm2 (device result)");
}

/* y(rows) = alpha * A(rows,cols) 1(cols) + beta y: gemv N against the ones vector */
static ng_status cuda_sum_cols(ng_backend *be, int rows, int cols, float alpha, const float *A,
                               int lda, float beta, float *y) {
    cuda_ctx *c = ctx_of(be);
    if (cols == 0) return cuda_scale_only(be, rows, beta, y);
    NG_TRY(cuda_ones(c, (size_t)cols));
    NG_CUBLAS_CALL(cublasSgemv(c->blas, CUBLAS_OP_N, rows, cols, &alpha, A, lda, c->ones, 1,
                                &beta, y, 1));
    return NG_OK;
}

/* y(cols) = alpha * A(rows,cols)^T 1(rows) + beta y: gemv T against the ones vector */
static ng_status cuda_sum_rows(ng_backend *be, int rows, int cols, float alpha, const float *A,
                               int lda, float beta, float *y) {
    cuda_ctx *c = ctx_of(be);
    if (rows == 0) return cuda_scale_only(be, cols, beta, y);
    NG_TRY(cuda_ones(c, (size_t)rows));
    NG_CUBLAS_CALL(cublasSgemv(c->blas, CUBLAS_OP_T, rows, cols, &alpha, A, lda, c->ones, 1,
                                &beta, y, 1));
    return NG_OK;
}

/* ---- elementwise families (kernels/), one case per ng_op ------------------------------------ */

/* 1 exactly for the ops cuda_run_op has a case for (an op added to the enum without a kernel
 * answers 0, and the wrappers report it as unsupported instead of reaching the default case). */
static int cuda_supports_op(ng_backend *be, ng_op op) {
    (void)be;
    switch (op) {
    case NG_OP_FILL:
    case NG_OP_FILL_UNIFORM:
    case NG_OP_BERNOULLI:
    case NG_OP_AXPBY:
    case NG_OP_AXPBY_DEV:
    case NG_OP_CONVERT:
    case NG_OP_GIBBS_SAMPLE:
    case NG_OP_SOFTPLUS_SUM:
    case NG_OP_BINARY_STATES:
    case NG_OP_SYMMETRIZE_LOWER:
    case NG_OP_FANG_REGRESS:
    case NG_OP_FANG_RESIDUAL:
    case NG_OP_ADAM:
    case NG_OP_OUTER_SCALE:
    case NG_OP_FACTOR_UPDATE:
    case NG_OP_ACT_FORWARD:
    case NG_OP_ACT_BACKWARD:
    case NG_OP_LOSS:
    case NG_OP_LOSS_HVP:
    case NG_OP_SAMPLE_TARGETS:
    case NG_OP_ROW_MOMENTS:
    case NG_OP_BN_NORMALIZE:
    case NG_OP_BN_MERGE:
    case NG_OP_BN_PROJECT:
    case NG_OP_MINRESQLP_STEP:
    case NG_OP_CONV_GATHER:
    case NG_OP_WHITEN1X1:
    case NG_OP_MOMENTUM:
    case NG_OP_AXPBY_SEGMENTS: return 1;
    default: return 0;
    }
}

static ng_status cuda_run_op(ng_backend *be, const ng_op_args *a) {
    void *st = be->stream;
    switch (a->op) {
    case NG_OP_FILL: return ng_cuda_fill(a->fill.n, a->fill.value, a->fill.out, st);
    case NG_OP_FILL_UNIFORM:
        return ng_cuda_fill_uniform(a->fill_uniform.n, a->fill_uniform.out, a->fill_uniform.key,
                                    a->fill_uniform.step, st);
    case NG_OP_BERNOULLI:
        return ng_cuda_bernoulli(a->bernoulli.n, a->bernoulli.p, a->bernoulli.out, a->bernoulli.key,
                                 a->bernoulli.step, a->bernoulli.first, a->bernoulli.step_dev, a->bernoulli.advance, st);
    case NG_OP_AXPBY:
        return ng_cuda_axpby(a->axpby.n, a->axpby.alpha, a->axpby.x, a->axpby.beta, a->axpby.y, st);
    case NG_OP_AXPBY_DEV:
        return ng_cuda_axpby_dev(a->axpby_dev.n, a->axpby_dev.ca, a->axpby_dev.a_num,
                                 a->axpby_dev.a_den, a->axpby_dev.x, a->axpby_dev.cb,
                                 a->axpby_dev.b_num, a->axpby_dev.b_den, a->axpby_dev.y, st);
    case NG_OP_CONVERT:
        if (a->convert.from == a->convert.to) {
            if (a->convert.x == a->convert.y) return NG_OK;
            NG_CUDA_COPY(cudaMemcpyAsync(a->convert.y, a->convert.x,
                                          a->convert.n * ng_dtype_size(a->convert.from),
                                          cudaMemcpyDeviceToDevice, ctx_of(be)->stream));
            return NG_OK;
        }
        if (a->convert.from == NG_F32)
            return ng_cuda_to_double(a->convert.n, (const float *)a->convert.x, (double *)a->convert.y, st);
        return ng_cuda_to_float(a->convert.n, (const double *)a->convert.x, (float *)a->convert.y, st);
    case NG_OP_GIBBS_SAMPLE:
        return ng_cuda_gibbs_sample(a->gibbs_sample.rows, a->gibbs_sample.cols, a->gibbs_sample.pre,
                                    a->gibbs_sample.ldp, a->gibbs_sample.bias, a->gibbs_sample.beta,
                                    a->gibbs_sample.base, a->gibbs_sample.prob, a->gibbs_sample.ldq,
                                    a->gibbs_sample.sample, a->gibbs_sample.lds, a->gibbs_sample.key,
                                    a->gibbs_sample.step, a->gibbs_sample.first, a->gibbs_sample.step_dev,
                                    a->gibbs_sample.advance, st);
    case NG_OP_SOFTPLUS_SUM:
        return ng_cuda_softplus_sum(a->softplus_sum.rows, a->softplus_sum.cols, a->softplus_sum.pre,
                                    a->softplus_sum.ldp, a->softplus_sum.bias, a->softplus_sum.beta,
                                    a->softplus_sum.alpha, a->softplus_sum.gamma, a->softplus_sum.y, st);
    case NG_OP_BINARY_STATES:
        return ng_cuda_binary_states(a->binary_states.nbits, a->binary_states.first,
                                     a->binary_states.count, a->binary_states.out,
                                     a->binary_states.ldo, st);
    case NG_OP_SYMMETRIZE_LOWER:
        return ng_cuda_symmetrize_lower(a->symmetrize_lower.n, a->symmetrize_lower.A,
                                        a->symmetrize_lower.lda, a->symmetrize_lower.shift, st);
    case NG_OP_FANG_REGRESS:
        return ng_cuda_fang_regress(a->fang_regress.nh, a->fang_regress.nv, a->fang_regress.Evh,
                                    a->fang_regress.Ev2h, a->fang_regress.Evh2, a->fang_regress.Ev2h2,
                                    a->fang_regress.ldm, a->fang_regress.mu_v, a->fang_regress.mu_h,
                                    a->fang_regress.Ev2, a->fang_regress.Eh2, a->fang_regress.lambda,
                                    a->fang_regress.beta_v, a->fang_regress.beta_h,
                                    a->fang_regress.sigma2, a->fang_regress.ldo, st);
    case NG_OP_FANG_RESIDUAL:
        return ng_cuda_fang_residual(a->fang_residual.nh, a->fang_residual.nv, a->fang_residual.G,
                                     a->fang_residual.ldg, a->fang_residual.ga, a->fang_residual.gb,
                                     a->fang_residual.beta_v, a->fang_residual.beta_h,
                                     a->fang_residual.sigma2, a->fang_residual.ldb,
                                     a->fang_residual.pv, a->fang_residual.ph, a->fang_residual.ldp, st);
    case NG_OP_ADAM:
        return ng_cuda_adam(a->adam.n, a->adam.param, a->adam.grad, a->adam.m, a->adam.v, a->adam.step,
                            a->adam.b1, a->adam.c1, a->adam.b2, a->adam.c2, a->adam.bc1, a->adam.bc2,
                            a->adam.lr, a->adam.eps, a->adam.count, st);
    case NG_OP_AXPBY_SEGMENTS:
        return ng_cuda_axpby_segments(a->axpby_segments.count, a->axpby_segments.off, a->axpby_segments.len,
                                      a->axpby_segments.alpha, a->axpby_segments.x, a->axpby_segments.beta,
                                      a->axpby_segments.y, st);
    case NG_OP_MOMENTUM:
        return ng_cuda_momentum(a->momentum.n, a->momentum.d, a->momentum.v, a->momentum.p, a->momentum.bar,
                                a->momentum.a, a->momentum.mu, a->momentum.c, a->momentum.nesterov, a->momentum.xi,
                                a->momentum.w, a->momentum.wc, st);
    case NG_OP_FACTOR_UPDATE:
        return ng_cuda_factor_update(a->factor_update.count, a->factor_update.k, a->factor_update.beta, a->factor_update.e,
                                     st);
    case NG_OP_OUTER_SCALE:
        return ng_cuda_outer_scale(a->outer_scale.rows, a->outer_scale.cols, a->outer_scale.mode,
                                   a->outer_scale.x, a->outer_scale.ldx, a->outer_scale.u, a->outer_scale.v,
                                   a->outer_scale.floor, a->outer_scale.power, a->outer_scale.out, a->outer_scale.ldo, st);
    case NG_OP_ACT_FORWARD:
        return ng_cuda_act_forward(a->act_forward.rows, a->act_forward.cols, a->act_forward.act,
                                   a->act_forward.z, a->act_forward.ldz, a->act_forward.scale,
                                   a->act_forward.bias, a->act_forward.a, a->act_forward.lda, st);
    case NG_OP_ACT_BACKWARD:
        return ng_cuda_act_backward(a->act_backward.rows, a->act_backward.cols, a->act_backward.act,
                                    a->act_backward.a, a->act_backward.lda, a->act_backward.g,
                                    a->act_backward.ldg, a->act_backward.h, a->act_backward.ldh,
                                    a->act_backward.r, a->act_backward.ldr, a->act_backward.out,
                                    a->act_backward.ldo, st);
    case NG_OP_LOSS:
        return ng_cuda_loss(a->loss.loss, a->loss.rows, a->loss.cols, a->loss.z, a->loss.ldz,
                            a->loss.y, a->loss.ldy, a->loss.t, a->loss.ldt, a->loss.scale,
                            a->loss.d, a->loss.ldd, a->loss.obj, a->loss.err, a->loss.acc, a->loss.acc_beta,
                            a->loss.err_miss, st);
    case NG_OP_LOSS_HVP:
        return ng_cuda_loss_hvp(a->loss_hvp.loss, a->loss_hvp.rows, a->loss_hvp.cols, a->loss_hvp.y,
                                a->loss_hvp.ldy, a->loss_hvp.v, a->loss_hvp.ldv, a->loss_hvp.scale,
                                a->loss_hvp.out, a->loss_hvp.ldo, st);
    case NG_OP_SAMPLE_TARGETS:
        return ng_cuda_sample_targets(a->sample_targets.loss, a->sample_targets.rows,
                                      a->sample_targets.cols, a->sample_targets.y,
                                      a->sample_targets.ldy, a->sample_targets.t,
                                      a->sample_targets.ldt, a->sample_targets.key,
                                      a->sample_targets.step, a->sample_targets.col0,
                                      a->sample_targets.step_dev, a->sample_targets.advance, st);
    case NG_OP_ROW_MOMENTS:
        return ng_cuda_row_moments(a->row_moments.rows, a->row_moments.cols, a->row_moments.x,
                                   a->row_moments.ldx, a->row_moments.eps, a->row_moments.mean,
                                   a->row_moments.rstd, st);
    case NG_OP_BN_MERGE:
        return ng_cuda_bn_merge(a->bn_merge.mode, a->bn_merge.rows, a->bn_merge.cols, a->bn_merge.cnt, a->bn_merge.eps,
                                a->bn_merge.alpha, a->bn_merge.scaled, a->bn_merge.mean, a->bn_merge.rstd, a->bn_merge.acc,
                                a->bn_merge.acc2, a->bn_merge.tot, a->bn_merge.x, a->bn_merge.ldx, a->bn_merge.out,
                                a->bn_merge.ldo, st);
    case NG_OP_BN_NORMALIZE:
        return ng_cuda_bn_normalize(a->bn_normalize.rows, a->bn_normalize.cols, a->bn_normalize.x,
                                    a->bn_normalize.ldx, a->bn_normalize.mean, a->bn_normalize.rstd,
                                    a->bn_normalize.xhat, a->bn_normalize.ldh, st);
    case NG_OP_BN_PROJECT:
        return ng_cuda_bn_project(a->bn_project.rows, a->bn_project.cols, a->bn_project.g,
                                  a->bn_project.ldg, a->bn_project.xhat, a->bn_project.ldx,
                                  a->bn_project.s1, a->bn_project.s2, a->bn_project.beta,
                                  a->bn_project.out, a->bn_project.ldo, st);
    case NG_OP_MINRESQLP_STEP:
        return ng_cuda_minresqlp_step(a->minresqlp_step.count, a->minresqlp_step.state,
                                      a->minresqlp_step.sc, a->minresqlp_step.init,
                                      a->minresqlp_step.max_iter, a->minresqlp_step.rtol,
                                      a->minresqlp_step.maxxnorm, a->minresqlp_step.trancond,
                                      a->minresqlp_step.singtol, st);
    case NG_OP_CONV_GATHER:
        return ng_cuda_conv_gather(a->conv_gather.mode, &a->conv_gather.s, a->conv_gather.x, a->conv_gather.g,
                                   a->conv_gather.out, a->conv_gather.flip, a->conv_gather.key, a->conv_gather.step, a->conv_gather.b0,
                                   a->conv_gather.step_dev, a->conv_gather.advance, st);
    case NG_OP_WHITEN1X1:
        return ng_cuda_whiten1x1(a->whiten1x1.n, a->whiten1x1.c, a->whiten1x1.cout, a->whiten1x1.p, a->whiten1x1.trans,
                                 a->whiten1x1.x, a->whiten1x1.mean, a->whiten1x1.U, a->whiten1x1.ldu, a->whiten1x1.y,
                                 st);
    default: return ng_error(NG_ERR_UNSUPPORTED, "cuda: op %d is not implemented", (int)a->op);
    }
}

/* ---- LAPACK (cuSOLVER dense), lower triangle, column-major (n,n), float32 or float64 --------- */

/* A = L with L L^T = A (lower triangle overwritten; the strict upper triangle is not touched) */
static ng_status cuda_potrf(ng_backend *be, ng_dtype dt, int n, void *A, int lda, int *info_host) {
    cuda_ctx *c = ctx_of(be);
    int lwork = 0;
    *info_host = 0;
    if (n == 0) return NG_OK;
    if (dt == NG_F64) {
        NG_CUSOLVER_CHECK(cusolverDnDpotrf_bufferSize(c->solver, CUBLAS_FILL_MODE_LOWER, n,
                                                      (double *)A, lda, &lwork));
        NG_TRY(cuda_workspace(c, (size_t)lwork * sizeof(double)));
        NG_CUSOLVER_CALL(cusolverDnDpotrf(c->solver, CUBLAS_FILL_MODE_LOWER, n, (double *)A, lda,
                                           (double *)c->work, lwork, c->dev_info));
    } else {
        NG_CUSOLVER_CHECK(cusolverDnSpotrf_bufferSize(c->solver, CUBLAS_FILL_MODE_LOWER, n,
                                                      (float *)A, lda, &lwork));
        NG_TRY(cuda_workspace(c, (size_t)lwork * sizeof(float)));
        NG_CUSOLVER_CALL(cusolverDnSpotrf(c->solver, CUBLAS_FILL_MODE_LOWER, n, (float *)A, lda,
                                           (float *)c->work, lwork, c->dev_info));
    }
    return cuda_read_info(c, "cusolverDn?potrf", info_host);
}

/* lower triangle of A = (L L^T)^-1, L the lower Cholesky factor held in A */
static ng_status cuda_potri(ng_backend *be, ng_dtype dt, int n, void *A, int lda, int *info_host) {
    cuda_ctx *c = ctx_of(be);
    int lwork = 0;
    *info_host = 0;
    if (n == 0) return NG_OK;
    if (dt == NG_F64) {
        NG_CUSOLVER_CHECK(cusolverDnDpotri_bufferSize(c->solver, CUBLAS_FILL_MODE_LOWER, n,
                                                      (double *)A, lda, &lwork));
        NG_TRY(cuda_workspace(c, (size_t)lwork * sizeof(double)));
        NG_CUSOLVER_CALL(cusolverDnDpotri(c->solver, CUBLAS_FILL_MODE_LOWER, n, (double *)A, lda,
                                           (double *)c->work, lwork, c->dev_info));
    } else {
        NG_CUSOLVER_CHECK(cusolverDnSpotri_bufferSize(c->solver, CUBLAS_FILL_MODE_LOWER, n,
                                                      (float *)A, lda, &lwork));
        NG_TRY(cuda_workspace(c, (size_t)lwork * sizeof(float)));
        NG_CUSOLVER_CALL(cusolverDnSpotri(c->solver, CUBLAS_FILL_MODE_LOWER, n, (float *)A, lda,
                                           (float *)c->work, lwork, c->dev_info));
    }
    return cuda_read_info(c, "cusolverDn?potri", info_host);
}

/* B = (L L^T)^-1 B with the lower Cholesky factor L in A (no workspace) */
static ng_status cuda_potrs(ng_backend *be, ng_dtype dt, int n, int nrhs, const void *A, int lda,
                            void *B, int ldb, int *info_host) {
    cuda_ctx *c = ctx_of(be);
    *info_host = 0;
    if (n == 0 || nrhs == 0) return NG_OK;
    if (dt == NG_F64)
        NG_CUSOLVER_CALL(cusolverDnDpotrs(c->solver, CUBLAS_FILL_MODE_LOWER, n, nrhs, (const double *)A,
                                           lda, (double *)B, ldb, c->dev_info));
    else
        NG_CUSOLVER_CALL(cusolverDnSpotrs(c->solver, CUBLAS_FILL_MODE_LOWER, n, nrhs, (const float *)A,
                                           lda, (float *)B, ldb, c->dev_info));
    return cuda_read_info(c, "cusolverDn?potrs", info_host);
}

/* w(n) = eigenvalues ascending, columns of A = eigenvectors (lower triangle read) */
static ng_status cuda_syevd(ng_backend *be, ng_dtype dt, int n, void *A, int lda, void *w,
                            int *info_host) {
    cuda_ctx *c = ctx_of(be);
    int lwork = 0;
    *info_host = 0;
    if (n == 0) return NG_OK;
    if (dt == NG_F64) {
        NG_CUSOLVER_CHECK(cusolverDnDsyevd_bufferSize(c->solver, CUSOLVER_EIG_MODE_VECTOR,
                                                      CUBLAS_FILL_MODE_LOWER, n, (double *)A, lda,
                                                      (double *)w, &lwork));
        NG_TRY(cuda_workspace(c, (size_t)lwork * sizeof(double)));
        NG_CUSOLVER_CALL(cusolverDnDsyevd(c->solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER,
                                           n, (double *)A, lda, (double *)w, (double *)c->work, lwork,
                                           c->dev_info));
    } else {
        NG_CUSOLVER_CHECK(cusolverDnSsyevd_bufferSize(c->solver, CUSOLVER_EIG_MODE_VECTOR,
                                                      CUBLAS_FILL_MODE_LOWER, n, (float *)A, lda,
                                                      (float *)w, &lwork));
        NG_TRY(cuda_workspace(c, (size_t)lwork * sizeof(float)));
        NG_CUSOLVER_CALL(cusolverDnSsyevd(c->solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER,
                                           n, (float *)A, lda, (float *)w, (float *)c->work, lwork,
                                           c->dev_info));
    }
    return cuda_read_info(c, "cusolverDn?syevd", info_host);
}

/* One group of g >= 2 problems of equal n with lda = n (grp: their indices in p): packed one after
 * another into the workspace, decomposed by one cusolverDnXsyevBatched call, copied back.
 * Workspace: [A_0 .. A_g-1 | W_0 .. W_g-1 | info (g) | cuSOLVER's device workspace], each part
 * 256-byte aligned. */
static size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

static ng_status syevd_group(cuda_ctx *c, ng_dtype dt, int n, int g, const int *grp, ng_eig_problem *p) {
    const cudaDataType ty = dt == NG_F64 ? CUDA_R_64F : CUDA_R_32F;
    const size_t es = dt == NG_F64 ? sizeof(double) : sizeof(float), mat = (size_t)n * (size_t)n * es;
    size_t off_w = align256((size_t)g * mat), off_i = off_w + align256((size_t)g * n * es);
    size_t off_k = off_i + align256((size_t)g * sizeof(int)), dev_bytes = 0, host_bytes = 0;
    int infos[NG_EIG_BATCH_MAX], j;
    char *base;
    if (c->params == NULL) NG_CUSOLVER_CHECK(cusolverDnCreateParams(&c->params));
    NG_CUSOLVER_CHECK(cusolverDnXsyevBatched_bufferSize(c->solver, c->params, CUSOLVER_EIG_MODE_VECTOR,
                                                        CUBLAS_FILL_MODE_LOWER, n, ty, c->work, n, ty, c->work,
                                                        ty, &dev_bytes, &host_bytes, g));
    NG_TRY(cuda_workspace(c, off_k + (dev_bytes ? dev_bytes : 1)));
    if (host_bytes > c->hwork_bytes) {
        void *h = malloc(host_bytes);
        if (h == NULL) return ng_error(NG_ERR_OOM, "cuda: no host memory for cuSOLVER's batched syev workspace (%zu bytes)", host_bytes);
        free(c->hwork);
        c->hwork = h;
        c->hwork_bytes = host_bytes;
    }
    base = (char *)c->work;
    for (j = 0; j < g; j++)
        NG_CUDA_COPY(cudaMemcpyAsync(base + (size_t)j * mat, p[grp[j]].A, mat, cudaMemcpyDeviceToDevice, c->stream));
    NG_CUSOLVER_CALL(cusolverDnXsyevBatched(c->solver, c->params, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, ty,
                                             base, n, ty, base + off_w, ty, base + off_k, dev_bytes,
                                             host_bytes ? c->hwork : NULL, host_bytes, (int *)(base + off_i), g));
    for (j = 0; j < g; j++) {
        NG_CUDA_COPY(cudaMemcpyAsync(p[grp[j]].A, base + (size_t)j * mat, mat, cudaMemcpyDeviceToDevice, c->stream));
        NG_CUDA_COPY(cudaMemcpyAsync(p[grp[j]].w, base + off_w + (size_t)j * n * es, (size_t)n * es,
                                     cudaMemcpyDeviceToDevice, c->stream));
    }
    NG_CUDA_COPY(cudaMemcpyAsync(infos, base + off_i, (size_t)g * sizeof(int), cudaMemcpyDeviceToHost, c->stream));
    NG_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    for (j = 0; j < g; j++) {
        if (infos[j] < 0)
            return ng_error(NG_ERR_INVALID_ARG, "cuda: cusolverDnXsyevBatched: argument %d had an illegal value", -infos[j]);
        p[grp[j]].info = infos[j];
    }
    return NG_OK;
}

/* Problems of equal n <= NG_CUDA_EIG_BATCH_N with lda = n, when at least two share the size, go
 * through one batched call per size (small matrices leave most of the GPU idle one at a time);
 * the others through cuda_syevd in turn (cuSOLVER's syevd of a large matrix fills the device by
 * itself). */
static ng_status cuda_syevd_batched(ng_backend *be, ng_dtype dt, int count, ng_eig_problem *p) {
    cuda_ctx *c = ctx_of(be);
    unsigned char done[NG_EIG_BATCH_MAX];
    int grp[NG_EIG_BATCH_MAX], i, j, g, n;
    memset(done, 0, sizeof done);
    for (i = 0; i < count; i++) {
        if (done[i]) continue;
        n = p[i].n;
        g = 0;
        if (n > 0 && n <= NG_CUDA_EIG_BATCH_N && p[i].lda == n)
            for (j = i; j < count; j++)
                if (!done[j] && p[j].n == n && p[j].lda == n) grp[g++] = j;
        if (g < 2) {
            done[i] = 1;
            NG_TRY(cuda_syevd(be, dt, n, p[i].A, p[i].lda, p[i].w, &p[i].info));
            continue;
        }
        NG_TRY(syevd_group(c, dt, n, g, grp, p));
        for (j = 0; j < g; j++) done[grp[j]] = 1;
    }
    return NG_OK;
}

/* ---- lifetime ----------------------------------------------------------------------------- */

/* Releases everything a (possibly half-built) backend holds, then the backend object itself.
 * Errors are ignored: there is nothing left to report them to. */
static void cuda_destroy(ng_backend *be) {
    cuda_ctx *c;
    if (be == NULL) return;
    c = ctx_of(be);
    if (c != NULL) {
        if (cudaSetDevice(c->device) != cudaSuccess) (void)cudaGetLastError();
        if (c->stream != NULL && cudaStreamSynchronize(c->stream) != cudaSuccess)
            (void)cudaGetLastError();
        if (c->params != NULL) (void)cusolverDnDestroyParams(c->params);
        free(c->hwork);
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

static ng_status cuda_set_tf32(ng_backend *be, int on) {
    NG_CUBLAS_CHECK(cublasSetMathMode(ctx_of(be)->blas, on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    return NG_OK;
}

/* ---- CUDA graphs: stream capture of the backend's stream ------------------------------------ */

/* Thread-local capture mode: only this thread's unsafe calls (allocations, blocking copies,
 * synchronisations) invalidate the capture, so K-FAC's --kfac-async worker, which makes them on its
 * own backend and stream while the main thread captures, does not (under the global mode it would). */

static ng_status cuda_graph_begin(ng_backend *be) {
    NG_CUDA_CHECK(cudaStreamBeginCapture(ctx_of(be)->stream, cudaStreamCaptureModeThreadLocal));
    return NG_OK;
}

static ng_status cuda_graph_end(ng_backend *be, void **exec) {
    cudaGraph_t g = NULL;
    cudaGraphExec_t x = NULL;
    cudaError_t e = cudaStreamEndCapture(ctx_of(be)->stream, &g);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        if (g != NULL) (void)cudaGraphDestroy(g);
        return ng_error(NG_ERR_BACKEND,
                        "cudaStreamEndCapture failed: %s (%s): an op made during the capture is not capturable "
                        "(a host synchronisation, an allocation or a blocking copy)", cudaGetErrorName(e),
                        cudaGetErrorString(e));
    }
    e = cudaGraphInstantiate(&x, g, 0);
    (void)cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return ng_error(NG_ERR_BACKEND, "cudaGraphInstantiate failed: %s", cudaGetErrorString(e));
    }
    *exec = (void *)x;
    return NG_OK;
}

static ng_status cuda_graph_launch(ng_backend *be, void *exec) {
    ng_profile_device_call(NG_DEV_GRAPH);
    NG_CUDA_CHECK(cudaGraphLaunch((cudaGraphExec_t)exec, ctx_of(be)->stream));
    return NG_OK;
}

static void cuda_graph_free(ng_backend *be, void *exec) {
    (void)be;
    if (cudaGraphExecDestroy((cudaGraphExec_t)exec) != cudaSuccess) (void)cudaGetLastError();
}

static const struct ng_backend_i cuda_iface = {
    .name = "cuda",
    .destroy = cuda_destroy,
    .activate = cuda_activate,

    .alloc = cuda_alloc,
    .free = cuda_free,
    .set = cuda_set,
    .get = cuda_get,
    .memset0 = cuda_memset0,
    .copy = cuda_copy,
    .synchronize = cuda_synchronize,
    .alloc_host = cuda_alloc_host,
    .free_host = cuda_free_host,
    .set_async = cuda_set_async,
    .get_async = cuda_get_async,
    .event_create = cuda_event_create,
    .event_destroy = cuda_event_destroy,
    .event_record = cuda_event_record,
    .event_wait = cuda_event_wait,
    .event_synchronize = cuda_event_synchronize,
    .event_elapsed = cuda_event_elapsed,

    .gemm = cuda_gemm,
    .set_tf32 = cuda_set_tf32,
    .graph_begin = cuda_graph_begin,
    .graph_end = cuda_graph_end,
    .graph_launch = cuda_graph_launch,
    .graph_free = cuda_graph_free,
    .gemm_strided_batched = cuda_gemm_strided_batched,
    .syrk = cuda_syrk,
    .gemv = cuda_gemv,
    .trsm = cuda_trsm,
    .scal = cuda_scal,
    .dot = cuda_dot,
    .nrm2 = cuda_nrm2,
    .dot_dev = cuda_dot_dev,
    .nrm2_dev = cuda_nrm2_dev,
    .sum_cols = cuda_sum_cols,
    .sum_rows = cuda_sum_rows,

    .potrf = cuda_potrf,
    .potri = cuda_potri,
    .potrs = cuda_potrs,
    .syevd = cuda_syevd,
    .syevd_batched = cuda_syevd_batched,

    .supports_op = cuda_supports_op,
    .run_op = cuda_run_op,
};

/* Stream, library handles, devInfo and the banner line on device c->device (already current).
 * A device that cannot be described is NG_ERR_NO_DEVICE (so --device auto falls back to the CPU). */
static ng_status cuda_open(ng_backend *be, cuda_ctx *c) {
    struct cudaDeviceProp prop;
    cudaError_t e;
    int blas_ver = 0;

    e = cudaGetDeviceProperties(&prop, c->device);
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
             "cuda:%d: %.120s, sm_%d%d, %.1f GiB, cuBLAS %d.%d.%d", c->device, prop.name, prop.major,
             prop.minor, (double)prop.totalGlobalMem / (double)(1ull << 30), blas_ver / 10000,
             (blas_ver / 100) % 100, blas_ver % 100);
    return NG_OK;
}

int ng_cuda_device_count(void) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return count;
}

ng_status ng_backend_cuda_init(int index, ng_backend **out) {
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
    if (index < 0) index = 0;
    if (index >= count)
        return ng_error(NG_ERR_NO_DEVICE, "cuda:%d: no such device (this machine has %d: cuda:0 .. cuda:%d)",
                        index, count, count - 1);
    e = cudaSetDevice(index);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return ng_error(NG_ERR_NO_DEVICE, "cuda:%d: cudaSetDevice failed: %s", index, cudaGetErrorString(e));
    }

    be = (ng_backend *)calloc(1, sizeof *be);
    c = (cuda_ctx *)calloc(1, sizeof *c);
    if (be == NULL || c == NULL) {
        free(be);
        free(c);
        return ng_error(NG_ERR_OOM, "cuda backend: out of host memory");
    }
    be->iface = &cuda_iface;
    be->kind = NG_DEVICE_CUDA;
    be->device_index = index;
    be->ctx = c;
    c->device = index;
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
