/* shim_cublas.cpp: the cuBLAS subset of the SIMT emulator (test-only), defined against the real
 * <cublas_v2.h> prototypes (so the *_v2 symbols) and computed with OpenBLAS on the emulated device
 * memory. Column-major, as cuBLAS. Validation follows the cuBLAS documentation: a NULL or destroyed
 * handle is CUBLAS_STATUS_NOT_INITIALIZED; negative sizes, unknown operations and leading
 * dimensions below max(1, rows) are CUBLAS_STATUS_INVALID_VALUE. Beyond the documentation (a GPU
 * would fault instead) matrices and vectors must be device ranges inside one allocation, and
 * scalars must live where the pointer mode says: those give CUBLAS_STATUS_INVALID_VALUE and a
 * "simt:" line on stderr. beta = 0 means the output is not read (a NaN there is ignored).
 * Must not: touch device memory except through its device view (dv). */
#include "simt_internal.h"

#include <cblas.h>
#include <cublas_v2.h>

#include <string.h>

#include <mutex>
#include <set>

struct cublasContext {
    cudaStream_t stream;
    cublasPointerMode_t pointer_mode;
    cublasMath_t math_mode;
};

namespace ng_simt {
namespace {

std::mutex mu;
std::set<cublasHandle_t> handles;

bool handle_ok(cublasHandle_t h) {
    std::lock_guard<std::mutex> lock(mu);
    return h != NULL && handles.count(h) != 0;
}

int imax1(int a) { return a > 1 ? a : 1; }

bool op_ok(cublasOperation_t op) {
    return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C;
}

bool uplo_ok(cublasFillMode_t u) {
    return u == CUBLAS_FILL_MODE_LOWER || u == CUBLAS_FILL_MODE_UPPER;
}

CBLAS_TRANSPOSE cb_op(cublasOperation_t op) {
    return op == CUBLAS_OP_N ? CblasNoTrans : CblasTrans;
}

/* (rows, cols) column-major with leading dimension ld: a device range? */
bool mat_ok(const char *fn, const char *name, const void *p, int rows, int cols, int ld,
            size_t elem) {
    if (rows <= 0 || cols <= 0) return true;
    size_t bytes = ((size_t)(cols - 1) * (size_t)ld + (size_t)rows) * elem;
    if (dev_range(p, bytes)) return true;
    if (!dev_pointer(p))
        note("%s: %s (%p) is not device memory", fn, name, p);
    else
        note("%s: %s (%p, %d x %d, ld %d) runs past the end of its device allocation", fn, name, p,
             rows, cols, ld);
    return false;
}

bool vec_ok(const char *fn, const char *name, const void *p, int n, int inc, size_t elem) {
    if (n <= 0) return true;
    size_t step = (size_t)(inc < 0 ? -(long)inc : (long)inc);
    size_t bytes = ((size_t)(n - 1) * step + 1u) * elem;
    if (dev_range(p, bytes)) return true;
    note("%s: %s (%p, n %d, inc %d) is not a device range", fn, name, p, n, inc);
    return false;
}

/* Read a scalar argument where the handle's pointer mode says it is. */
template <class T>
bool scalar_in(cublasHandle_t h, const char *fn, const char *name, const T *p, T *out) {
    if (p == NULL) return false;
    if (h->pointer_mode == CUBLAS_POINTER_MODE_DEVICE) {
        if (!dev_range(p, sizeof(T))) {
            note("%s: %s (%p) must be device memory in CUBLAS_POINTER_MODE_DEVICE", fn, name,
                 (const void *)p);
            return false;
        }
        *out = *dv(p);
        return true;
    }
    if (dev_pointer(p)) {
        note("%s: %s (%p) is device memory but the pointer mode is CUBLAS_POINTER_MODE_HOST", fn,
             name, (const void *)p);
        return false;
    }
    *out = *p;
    return true;
}

template <class T> bool scalar_out_ok(cublasHandle_t h, const char *fn, T *p) {
    if (p == NULL) return false;
    if (h->pointer_mode == CUBLAS_POINTER_MODE_DEVICE) {
        if (dev_range(p, sizeof(T))) return true;
        note("%s: result (%p) must be device memory in CUBLAS_POINTER_MODE_DEVICE", fn, (void *)p);
        return false;
    }
    if (!dev_pointer(p)) return true;
    note("%s: result (%p) is device memory but the pointer mode is CUBLAS_POINTER_MODE_HOST", fn,
         (void *)p);
    return false;
}

template <class T> void scalar_out(cublasHandle_t h, T *p, T v) {
    if (h->pointer_mode == CUBLAS_POINTER_MODE_DEVICE)
        *dv(p) = v;
    else
        *p = v;
}

/* Zero (rows, cols) of C, or its lower/upper triangle when tri is 'L'/'U'. */
template <class T> void zero_mat(T *C, int rows, int cols, int ldc, char tri) {
    for (int j = 0; j < cols; j++) {
        int lo = tri == 'L' ? j : 0, hi = tri == 'U' ? (j + 1 < rows ? j + 1 : rows) : rows;
        for (int i = lo; i < hi; i++) C[(size_t)i + (size_t)ldc * (size_t)j] = (T)0;
    }
}

void gemm_x(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, float a, const float *A,
            int lda, const float *B, int ldb, float b, float *C, int ldc) {
    cblas_sgemm(CblasColMajor, ta, tb, m, n, k, a, A, lda, B, ldb, b, C, ldc);
}
void gemm_x(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, double a, const double *A,
            int lda, const double *B, int ldb, double b, double *C, int ldc) {
    cblas_dgemm(CblasColMajor, ta, tb, m, n, k, a, A, lda, B, ldb, b, C, ldc);
}
void syrk_x(CBLAS_UPLO u, CBLAS_TRANSPOSE t, int n, int k, float a, const float *A, int lda,
            float b, float *C, int ldc) {
    cblas_ssyrk(CblasColMajor, u, t, n, k, a, A, lda, b, C, ldc);
}
void syrk_x(CBLAS_UPLO u, CBLAS_TRANSPOSE t, int n, int k, double a, const double *A, int lda,
            double b, double *C, int ldc) {
    cblas_dsyrk(CblasColMajor, u, t, n, k, a, A, lda, b, C, ldc);
}

template <class T>
cublasStatus_t gemm_batched(const char *fn, cublasHandle_t h, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const T *alpha,
                            const T *A, int lda, long long strideA, const T *B, int ldb,
                            long long strideB, const T *beta, T *C, int ldc, long long strideC,
                            int batch) {
    T a, b;
    if (!handle_ok(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    int arows = transa == CUBLAS_OP_N ? m : k, acols = transa == CUBLAS_OP_N ? k : m;
    int brows = transb == CUBLAS_OP_N ? k : n, bcols = transb == CUBLAS_OP_N ? n : k;
    if (!op_ok(transa) || !op_ok(transb) || m < 0 || n < 0 || k < 0 || batch < 0 ||
        lda < imax1(arows) || ldb < imax1(brows) || ldc < imax1(m))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
    if (!scalar_in(h, fn, "alpha", alpha, &a) || !scalar_in(h, fn, "beta", beta, &b))
        return CUBLAS_STATUS_INVALID_VALUE;
    for (int i = 0; i < batch; i++) {
        if (!mat_ok(fn, "C", C + (ptrdiff_t)i * strideC, m, n, ldc, sizeof(T)) ||
            (k > 0 && !mat_ok(fn, "A", A + (ptrdiff_t)i * strideA, arows, acols, lda, sizeof(T))) ||
            (k > 0 && !mat_ok(fn, "B", B + (ptrdiff_t)i * strideB, brows, bcols, ldb, sizeof(T))))
            return CUBLAS_STATUS_INVALID_VALUE;
    }
    for (int i = 0; i < batch; i++) {
        T *Ci = dv(C + (ptrdiff_t)i * strideC);
        if (b == (T)0) zero_mat(Ci, m, n, ldc, 'F');
        gemm_x(cb_op(transa), cb_op(transb), m, n, k, a, k > 0 ? dv(A + (ptrdiff_t)i * strideA) : A,
               lda, k > 0 ? dv(B + (ptrdiff_t)i * strideB) : B, ldb, b, Ci, ldc);
    }
    return CUBLAS_STATUS_SUCCESS;
}

template <class T>
cublasStatus_t syrk_t(const char *fn, cublasHandle_t h, cublasFillMode_t uplo,
                      cublasOperation_t trans, int n, int k, const T *alpha, const T *A, int lda,
                      const T *beta, T *C, int ldc) {
    T a, b;
    if (!handle_ok(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    int arows = trans == CUBLAS_OP_N ? n : k, acols = trans == CUBLAS_OP_N ? k : n;
    if (!uplo_ok(uplo) || !op_ok(trans) || n < 0 || k < 0 || lda < imax1(arows) || ldc < imax1(n))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (n == 0) return CUBLAS_STATUS_SUCCESS;
    if (!scalar_in(h, fn, "alpha", alpha, &a) || !scalar_in(h, fn, "beta", beta, &b))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (!mat_ok(fn, "C", C, n, n, ldc, sizeof(T)) ||
        (k > 0 && !mat_ok(fn, "A", A, arows, acols, lda, sizeof(T))))
        return CUBLAS_STATUS_INVALID_VALUE;
    char tri = uplo == CUBLAS_FILL_MODE_LOWER ? 'L' : 'U';
    T *dC = dv(C);
    if (b == (T)0) zero_mat(dC, n, n, ldc, tri);
    syrk_x(tri == 'L' ? CblasLower : CblasUpper, cb_op(trans), n, k, a, k > 0 ? dv(A) : A, lda, b,
           dC, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

const char *status_name(cublasStatus_t s) {
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
    default: return "CUBLAS_STATUS_UNKNOWN";
    }
}

} /* namespace */
} /* namespace ng_simt */

using namespace ng_simt;

extern "C" {

/* ---- handle ------------------------------------------------------------------------------- */
cublasStatus_t cublasCreate_v2(cublasHandle_t *handle) {
    if (handle == NULL) return CUBLAS_STATUS_INVALID_VALUE;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1) {
        cudaGetLastError();
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    cublasHandle_t h = new cublasContext();
    h->stream = NULL;
    h->pointer_mode = CUBLAS_POINTER_MODE_HOST;
    h->math_mode = CUBLAS_DEFAULT_MATH;
    std::lock_guard<std::mutex> lock(ng_simt::mu);
    handles.insert(h);
    *handle = h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
    std::lock_guard<std::mutex> lock(ng_simt::mu);
    if (handle == NULL || handles.erase(handle) == 0) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetVersion_v2(cublasHandle_t handle, int *version) {
    if (!handle_ok(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (version == NULL) return CUBLAS_STATUS_INVALID_VALUE;
    *version = CUBLAS_VERSION;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t streamId) {
    if (!handle_ok(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!stream_valid(streamId)) return CUBLAS_STATUS_INVALID_VALUE;
    handle->stream = streamId;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream_v2(cublasHandle_t handle, cudaStream_t *streamId) {
    if (!handle_ok(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (streamId == NULL) return CUBLAS_STATUS_INVALID_VALUE;
    *streamId = handle->stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t mode) {
    if (!handle_ok(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode != CUBLAS_POINTER_MODE_HOST && mode != CUBLAS_POINTER_MODE_DEVICE)
        return CUBLAS_STATUS_INVALID_VALUE;
    handle->pointer_mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t *mode) {
    if (!handle_ok(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode == NULL) return CUBLAS_STATUS_INVALID_VALUE;
    *mode = handle->pointer_mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    if (!handle_ok(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    unsigned base = (unsigned)mode & ~(unsigned)CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION;
    if (base > 15u) return CUBLAS_STATUS_INVALID_VALUE;
    handle->math_mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t *mode) {
    if (!handle_ok(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode == NULL) return CUBLAS_STATUS_INVALID_VALUE;
    *mode = handle->math_mode;
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusName(cublasStatus_t status) { return status_name(status); }
const char *cublasGetStatusString(cublasStatus_t status) { return status_name(status); }

/* ---- level 3 ------------------------------------------------------------------------------ */
cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                              cublasOperation_t transb, int m, int n, int k, const float *alpha,
                              const float *A, int lda, const float *B, int ldb, const float *beta,
                              float *C, int ldc) {
    return gemm_batched<float>("cublasSgemm", handle, transa, transb, m, n, k, alpha, A, lda, 0, B,
                               ldb, 0, beta, C, ldc, 0, 1);
}

cublasStatus_t cublasDgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                              cublasOperation_t transb, int m, int n, int k, const double *alpha,
                              const double *A, int lda, const double *B, int ldb,
                              const double *beta, double *C, int ldc) {
    return gemm_batched<double>("cublasDgemm", handle, transa, transb, m, n, k, alpha, A, lda, 0, B,
                                ldb, 0, beta, C, ldc, 0, 1);
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k,
                                         const float *alpha, const float *A, int lda,
                                         long long int strideA, const float *B, int ldb,
                                         long long int strideB, const float *beta, float *C,
                                         int ldc, long long int strideC, int batchCount) {
    return gemm_batched<float>("cublasSgemmStridedBatched", handle, transa, transb, m, n, k, alpha,
                               A, lda, strideA, B, ldb, strideB, beta, C, ldc, strideC, batchCount);
}

cublasStatus_t cublasSsyrk_v2(cublasHandle_t handle, cublasFillMode_t uplo, cublasOperation_t trans,
                              int n, int k, const float *alpha, const float *A, int lda,
                              const float *beta, float *C, int ldc) {
    return syrk_t<float>("cublasSsyrk", handle, uplo, trans, n, k, alpha, A, lda, beta, C, ldc);
}

cublasStatus_t cublasDsyrk_v2(cublasHandle_t handle, cublasFillMode_t uplo, cublasOperation_t trans,
                              int n, int k, const double *alpha, const double *A, int lda,
                              const double *beta, double *C, int ldc) {
    return syrk_t<double>("cublasDsyrk", handle, uplo, trans, n, k, alpha, A, lda, beta, C, ldc);
}

/* ---- level 2 ------------------------------------------------------------------------------ */
cublasStatus_t cublasSgemv_v2(cublasHandle_t handle, cublasOperation_t trans, int m, int n,
                              const float *alpha, const float *A, int lda, const float *x, int incx,
                              const float *beta, float *y, int incy) {
    const char *fn = "cublasSgemv";
    float a, b;
    if (!handle_ok(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!op_ok(trans) || m < 0 || n < 0 || lda < imax1(m) || incx == 0 || incy == 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    if (!scalar_in(handle, fn, "alpha", alpha, &a) || !scalar_in(handle, fn, "beta", beta, &b))
        return CUBLAS_STATUS_INVALID_VALUE;
    int lx = trans == CUBLAS_OP_N ? n : m, ly = trans == CUBLAS_OP_N ? m : n;
    if (!mat_ok(fn, "A", A, m, n, lda, sizeof(float)) ||
        !vec_ok(fn, "x", x, lx, incx, sizeof(float)) ||
        !vec_ok(fn, "y", y, ly, incy, sizeof(float)))
        return CUBLAS_STATUS_INVALID_VALUE;
    float *dy = dv(y);
    if (b == 0.0f) {
        size_t step = (size_t)(incy < 0 ? -(long)incy : (long)incy);
        for (int i = 0; i < ly; i++) dy[(size_t)i * step] = 0.0f;
    }
    cblas_sgemv(CblasColMajor, cb_op(trans), m, n, a, dv(A), lda, dv(x), incx, b, dy, incy);
    return CUBLAS_STATUS_SUCCESS;
}

/* ---- level 1 ------------------------------------------------------------------------------ */
cublasStatus_t cublasSaxpy_v2(cublasHandle_t handle, int n, const float *alpha, const float *x,
                              int incx, float *y, int incy) {
    const char *fn = "cublasSaxpy";
    float a;
    if (!handle_ok(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (n <= 0) return CUBLAS_STATUS_SUCCESS;
    if (!scalar_in(handle, fn, "alpha", alpha, &a) || !vec_ok(fn, "x", x, n, incx, sizeof(float)) ||
        !vec_ok(fn, "y", y, n, incy, sizeof(float)))
        return CUBLAS_STATUS_INVALID_VALUE;
    cblas_saxpy(n, a, dv(x), incx, dv(y), incy);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSscal_v2(cublasHandle_t handle, int n, const float *alpha, float *x,
                              int incx) {
    const char *fn = "cublasSscal";
    float a;
    if (!handle_ok(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (n <= 0 || incx <= 0) return CUBLAS_STATUS_SUCCESS;
    if (!scalar_in(handle, fn, "alpha", alpha, &a) || !vec_ok(fn, "x", x, n, incx, sizeof(float)))
        return CUBLAS_STATUS_INVALID_VALUE;
    float *dx = dv(x);
    for (int i = 0; i < n; i++) dx[(size_t)i * (size_t)incx] *= a; /* NaN * 0 stays NaN */
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasScopy_v2(cublasHandle_t handle, int n, const float *x, int incx, float *y,
                              int incy) {
    const char *fn = "cublasScopy";
    if (!handle_ok(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (n <= 0) return CUBLAS_STATUS_SUCCESS;
    if (!vec_ok(fn, "x", x, n, incx, sizeof(float)) || !vec_ok(fn, "y", y, n, incy, sizeof(float)))
        return CUBLAS_STATUS_INVALID_VALUE;
    cblas_scopy(n, dv(x), incx, dv(y), incy);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSdot_v2(cublasHandle_t handle, int n, const float *x, int incx, const float *y,
                             int incy, float *result) {
    const char *fn = "cublasSdot";
    if (!handle_ok(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!scalar_out_ok(handle, fn, result)) return CUBLAS_STATUS_INVALID_VALUE;
    float r = 0.0f;
    if (n > 0) {
        if (!vec_ok(fn, "x", x, n, incx, sizeof(float)) ||
            !vec_ok(fn, "y", y, n, incy, sizeof(float)))
            return CUBLAS_STATUS_INVALID_VALUE;
        r = cblas_sdot(n, dv(x), incx, dv(y), incy);
    }
    scalar_out(handle, result, r);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSnrm2_v2(cublasHandle_t handle, int n, const float *x, int incx,
                              float *result) {
    const char *fn = "cublasSnrm2";
    if (!handle_ok(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!scalar_out_ok(handle, fn, result)) return CUBLAS_STATUS_INVALID_VALUE;
    float r = 0.0f;
    if (n > 0 && incx > 0) {
        if (!vec_ok(fn, "x", x, n, incx, sizeof(float))) return CUBLAS_STATUS_INVALID_VALUE;
        r = cblas_snrm2(n, dv(x), incx);
    }
    scalar_out(handle, result, r);
    return CUBLAS_STATUS_SUCCESS;
}

} /* extern "C" */
