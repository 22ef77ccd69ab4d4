/* shim_cublas.cpp: the cuBLAS subset of the SIMT emulator (test-only), defined against the real
 * <cublas_v2.h> prototypes (so the *_v2 symbols) and computed with OpenBLAS on the emulated device
 * memory. Column-major, as cuBLAS. Validation follows the cuBLAS documentation: a NULL or destroyed
 * handle is CUBLAS_STATUS_NOT_INITIALIZED; negative sizes, unknown operations and leading
 * dimensions below max(1, rows) are CUBLAS_STATUS_INVALID_VALUE. Beyond the documentation (a GPU
 * would fault instead) matrices and vectors must be device ranges inside one allocation, and
 * scalars must live where the pointer mode says: those give CUBLAS_STATUS_INVALID_VALUE and a
 * "simt:" line on stderr. A handle belongs to the device current at cublasCreate: a computing call
 * made while another device is current, or with an operand (matrix, vector, device-mode scalar) in
 * another device's memory, gives CUBLAS_STATUS_EXECUTION_FAILED and a "simt:" line naming both
 * devices. beta = 0 means the output is not read (a NaN there is ignored); so does alpha = 0 for
 * trsm's B. Must not: touch device memory except through its device view (dv). */
#include "simt_internal.h"

#include <cblas.h>
#include <cublas_v2.h>

#include <stdint.h>
#include <string.h>

#include <mutex>
#include <set>
#include <vector>

struct cublasContext {
    int device; /* current device at cublasCreate */
    cudaStream_t stream;
    cublasPointerMode_t pointer_mode;
    cublasMath_t math_mode;
};

namespace ng_simt {
namespace {

std::mutex mu;
std::set<cublasHandle_t> handles;
/* Set while a call on a capturing stream is validated (run_or_capture): the computing functions
 * check their arguments and return before touching memory. */
thread_local bool dry_run;

bool handle_ok(cublasHandle_t h) {
    std::lock_guard<std::mutex> lock(mu);
    return h != NULL && handles.count(h) != 0;
}

/* The handle of a computing call: CUBLAS_STATUS_NOT_INITIALIZED when NULL or destroyed,
 * CUBLAS_STATUS_EXECUTION_FAILED (with a note) when it belongs to another device than the
 * current one. */
cublasStatus_t handle_check(cublasHandle_t h, const char *fn) {
    if (!handle_ok(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!handle_on_current(fn, "handle", h, h->device)) return CUBLAS_STATUS_EXECUTION_FAILED;
    return CUBLAS_STATUS_SUCCESS;
}

/* Return from the enclosing function with the status of `call` unless it succeeded. */
#define BLAS_TRY(call)                                                                             \
    do {                                                                                           \
        cublasStatus_t st_ = (call);                                                               \
        if (st_ != CUBLAS_STATUS_SUCCESS) return st_;                                              \
    } while (0)

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

/* An operand of the handle's call: device memory of the handle's device, else
 * CUBLAS_STATUS_EXECUTION_FAILED with a note. */
cublasStatus_t on_handle_device(cublasHandle_t h, const char *fn, const char *name, const void *p) {
    return dev_on(fn, name, p, h->device, "handle") ? CUBLAS_STATUS_SUCCESS
                                                    : CUBLAS_STATUS_EXECUTION_FAILED;
}

/* (rows, cols) column-major with leading dimension ld: a device range of the handle's device?
 * CUBLAS_STATUS_INVALID_VALUE (not a device range) or CUBLAS_STATUS_EXECUTION_FAILED (another
 * device's memory), with a note. */
cublasStatus_t mat_ok(cublasHandle_t h, const char *fn, const char *name, const void *p, int rows,
                      int cols, int ld, size_t elem) {
    if (rows <= 0 || cols <= 0) return CUBLAS_STATUS_SUCCESS;
    size_t bytes = ((size_t)(cols - 1) * (size_t)ld + (size_t)rows) * elem;
    if (dev_range(p, bytes)) return on_handle_device(h, fn, name, p);
    if (!dev_pointer(p))
        note("%s: %s (%p) is not device memory", fn, name, p);
    else
        note("%s: %s (%p, %d x %d, ld %d) runs past the end of its device allocation", fn, name, p,
             rows, cols, ld);
    return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t vec_ok(cublasHandle_t h, const char *fn, const char *name, const void *p, int n,
                      int inc, size_t elem) {
    if (n <= 0) return CUBLAS_STATUS_SUCCESS;
    size_t step = (size_t)(inc < 0 ? -(long)inc : (long)inc);
    size_t bytes = ((size_t)(n - 1) * step + 1u) * elem;
    if (dev_range(p, bytes)) return on_handle_device(h, fn, name, p);
    note("%s: %s (%p, n %d, inc %d) is not a device range", fn, name, p, n, inc);
    return CUBLAS_STATUS_INVALID_VALUE;
}

/* Read a scalar argument where the handle's pointer mode says it is. */
template <class T>
cublasStatus_t scalar_in(cublasHandle_t h, const char *fn, const char *name, const T *p, T *out) {
    if (p == NULL) return CUBLAS_STATUS_INVALID_VALUE;
    if (h->pointer_mode == CUBLAS_POINTER_MODE_DEVICE) {
        if (!dev_range(p, sizeof(T))) {
            note("%s: %s (%p) must be device memory in CUBLAS_POINTER_MODE_DEVICE", fn, name,
                 (const void *)p);
            return CUBLAS_STATUS_INVALID_VALUE;
        }
        BLAS_TRY(on_handle_device(h, fn, name, p));
        *out = *dv(p);
        return CUBLAS_STATUS_SUCCESS;
    }
    if (dev_pointer(p)) {
        note("%s: %s (%p) is device memory but the pointer mode is CUBLAS_POINTER_MODE_HOST", fn,
             name, (const void *)p);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    *out = *p;
    return CUBLAS_STATUS_SUCCESS;
}

template <class T> cublasStatus_t scalar_out_ok(cublasHandle_t h, const char *fn, T *p) {
    if (p == NULL) return CUBLAS_STATUS_INVALID_VALUE;
    if (h->pointer_mode == CUBLAS_POINTER_MODE_DEVICE) {
        if (dev_range(p, sizeof(T))) return on_handle_device(h, fn, "result", p);
        note("%s: result (%p) must be device memory in CUBLAS_POINTER_MODE_DEVICE", fn, (void *)p);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (!dev_pointer(p)) return CUBLAS_STATUS_SUCCESS;
    note("%s: result (%p) is device memory but the pointer mode is CUBLAS_POINTER_MODE_HOST", fn,
         (void *)p);
    return CUBLAS_STATUS_INVALID_VALUE;
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
void trsm_x(CBLAS_SIDE sd, CBLAS_UPLO u, CBLAS_TRANSPOSE t, CBLAS_DIAG dg, int m, int n, float a,
            const float *A, int lda, float *B, int ldb) {
    cblas_strsm(CblasColMajor, sd, u, t, dg, m, n, a, A, lda, B, ldb);
}
void trsm_x(CBLAS_SIDE sd, CBLAS_UPLO u, CBLAS_TRANSPOSE t, CBLAS_DIAG dg, int m, int n, double a,
            const double *A, int lda, double *B, int ldb) {
    cblas_dtrsm(CblasColMajor, sd, u, t, dg, m, n, a, A, lda, B, ldb);
}
void gemv_x(CBLAS_TRANSPOSE t, int m, int n, float a, const float *A, int lda, const float *x,
            int incx, float b, float *y, int incy) {
    cblas_sgemv(CblasColMajor, t, m, n, a, A, lda, x, incx, b, y, incy);
}
void gemv_x(CBLAS_TRANSPOSE t, int m, int n, double a, const double *A, int lda, const double *x,
            int incx, double b, double *y, int incy) {
    cblas_dgemv(CblasColMajor, t, m, n, a, A, lda, x, incx, b, y, incy);
}
void axpy_x(int n, float a, const float *x, int incx, float *y, int incy) {
    cblas_saxpy(n, a, x, incx, y, incy);
}
void axpy_x(int n, double a, const double *x, int incx, double *y, int incy) {
    cblas_daxpy(n, a, x, incx, y, incy);
}
void copy_x(int n, const float *x, int incx, float *y, int incy) {
    cblas_scopy(n, x, incx, y, incy);
}
void copy_x(int n, const double *x, int incx, double *y, int incy) {
    cblas_dcopy(n, x, incx, y, incy);
}
float dot_x(int n, const float *x, int incx, const float *y, int incy) {
    return cblas_sdot(n, x, incx, y, incy);
}
double dot_x(int n, const double *x, int incx, const double *y, int incy) {
    return cblas_ddot(n, x, incx, y, incy);
}
float nrm2_x(int n, const float *x, int incx) { return cblas_snrm2(n, x, incx); }
double nrm2_x(int n, const double *x, int incx) { return cblas_dnrm2(n, x, incx); }

/* TF32 emulation. With the handle's math mode CUBLAS_TF32_TENSOR_OP_MATH, a single-precision gemm
 * (cublasSgemm, cublasSgemmStridedBatched) multiplies operands rounded to TF32 — the float's 23-bit
 * mantissa cut to 10 bits, rounded to nearest with ties to even — and accumulates in float, as the
 * tensor cores do; double gemms, syrk, trsm and the solvers are never affected. Tests use it to bound
 * what --tf32 changes. Non-finite values pass unchanged; a value that rounds past FLT_MAX becomes inf. */
float tf32_round(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7f800000u) == 0x7f800000u) return x;
    u += 0x0fffu + ((u >> 13) & 1u);
    u &= ~0x1fffu;
    memcpy(&x, &u, sizeof x);
    return x;
}

bool tf32_on(cublasHandle_t h) {
    unsigned base = (unsigned)h->math_mode & ~(unsigned)CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION;
    return base == (unsigned)CUBLAS_TF32_TENSOR_OP_MATH;
}

/* A rounded copy of the rows x cols matrix M (leading dimension ld) for a float gemm in TF32 mode;
 * any other type or mode leaves `buf` empty and returns M itself. */
template <class T>
const T *tf32_operand(cublasHandle_t, const T *M, int, int, int, std::vector<T> &) {
    return M;
}
template <>
const float *tf32_operand<float>(cublasHandle_t h, const float *M, int rows, int cols, int ld,
                                 std::vector<float> &buf) {
    if (!tf32_on(h)) return M;
    buf.assign((size_t)ld * (size_t)(cols - 1) + (size_t)rows, 0.0f);
    for (int j = 0; j < cols; j++)
        for (int i = 0; i < rows; i++)
            buf[(size_t)i + (size_t)ld * j] = tf32_round(M[(size_t)i + (size_t)ld * j]);
    return buf.data();
}

template <class T>
cublasStatus_t gemm_batched(const char *fn, cublasHandle_t h, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const T *alpha,
                            const T *A, int lda, long long strideA, const T *B, int ldb,
                            long long strideB, const T *beta, T *C, int ldc, long long strideC,
                            int batch) {
    T a, b;
    BLAS_TRY(handle_check(h, fn));
    int arows = transa == CUBLAS_OP_N ? m : k, acols = transa == CUBLAS_OP_N ? k : m;
    int brows = transb == CUBLAS_OP_N ? k : n, bcols = transb == CUBLAS_OP_N ? n : k;
    if (!op_ok(transa) || !op_ok(transb) || m < 0 || n < 0 || k < 0 || batch < 0 ||
        lda < imax1(arows) || ldb < imax1(brows) || ldc < imax1(m))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
    BLAS_TRY(scalar_in(h, fn, "alpha", alpha, &a));
    BLAS_TRY(scalar_in(h, fn, "beta", beta, &b));
    for (int i = 0; i < batch; i++) {
        BLAS_TRY(mat_ok(h, fn, "C", C + (ptrdiff_t)i * strideC, m, n, ldc, sizeof(T)));
        if (k > 0) {
            BLAS_TRY(mat_ok(h, fn, "A", A + (ptrdiff_t)i * strideA, arows, acols, lda, sizeof(T)));
            BLAS_TRY(mat_ok(h, fn, "B", B + (ptrdiff_t)i * strideB, brows, bcols, ldb, sizeof(T)));
        }
    }
    if (dry_run) return CUBLAS_STATUS_SUCCESS;
    for (int i = 0; i < batch; i++) {
        T *Ci = dv(C + (ptrdiff_t)i * strideC);
        if (b == (T)0) zero_mat(Ci, m, n, ldc, 'F');
        std::vector<T> ra, rb;
        const T *Ai = k > 0 ? tf32_operand(h, (const T *)dv(A + (ptrdiff_t)i * strideA), arows,
                                           acols, lda, ra)
                            : A;
        const T *Bi = k > 0 ? tf32_operand(h, (const T *)dv(B + (ptrdiff_t)i * strideB), brows,
                                           bcols, ldb, rb)
                            : B;
        gemm_x(cb_op(transa), cb_op(transb), m, n, k, a, Ai, lda, Bi, ldb, b, Ci, ldc);
    }
    return CUBLAS_STATUS_SUCCESS;
}

template <class T>
cublasStatus_t syrk_t(const char *fn, cublasHandle_t h, cublasFillMode_t uplo,
                      cublasOperation_t trans, int n, int k, const T *alpha, const T *A, int lda,
                      const T *beta, T *C, int ldc) {
    T a, b;
    BLAS_TRY(handle_check(h, fn));
    int arows = trans == CUBLAS_OP_N ? n : k, acols = trans == CUBLAS_OP_N ? k : n;
    if (!uplo_ok(uplo) || !op_ok(trans) || n < 0 || k < 0 || lda < imax1(arows) || ldc < imax1(n))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (n == 0) return CUBLAS_STATUS_SUCCESS;
    BLAS_TRY(scalar_in(h, fn, "alpha", alpha, &a));
    BLAS_TRY(scalar_in(h, fn, "beta", beta, &b));
    BLAS_TRY(mat_ok(h, fn, "C", C, n, n, ldc, sizeof(T)));
    if (k > 0) BLAS_TRY(mat_ok(h, fn, "A", A, arows, acols, lda, sizeof(T)));
    if (dry_run) return CUBLAS_STATUS_SUCCESS;
    char tri = uplo == CUBLAS_FILL_MODE_LOWER ? 'L' : 'U';
    T *dC = dv(C);
    if (b == (T)0) zero_mat(dC, n, n, ldc, tri);
    syrk_x(tri == 'L' ? CblasLower : CblasUpper, cb_op(trans), n, k, a, k > 0 ? dv(A) : A, lda, b,
           dC, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

/* op(A) X = alpha B (left) or X op(A) = alpha B (right), X overwriting B (m, n); A is triangular,
 * (m, m) on the left and (n, n) on the right, only its `uplo` triangle read (not its diagonal when
 * diag is unit). alpha = 0 sets B to zero without reading it or A. */
template <class T>
cublasStatus_t trsm_t(const char *fn, cublasHandle_t h, cublasSideMode_t side,
                      cublasFillMode_t uplo, cublasOperation_t trans, cublasDiagType_t diag, int m,
                      int n, const T *alpha, const T *A, int lda, T *B, int ldb) {
    T a;
    BLAS_TRY(handle_check(h, fn));
    bool left = side == CUBLAS_SIDE_LEFT;
    int ka = left ? m : n;
    if ((side != CUBLAS_SIDE_LEFT && side != CUBLAS_SIDE_RIGHT) || !uplo_ok(uplo) ||
        !op_ok(trans) || (diag != CUBLAS_DIAG_NON_UNIT && diag != CUBLAS_DIAG_UNIT) || m < 0 ||
        n < 0 || lda < imax1(ka) || ldb < imax1(m) || alpha == NULL)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    BLAS_TRY(scalar_in(h, fn, "alpha", alpha, &a));
    BLAS_TRY(mat_ok(h, fn, "B", B, m, n, ldb, sizeof(T)));
    BLAS_TRY(mat_ok(h, fn, "A", A, ka, ka, lda, sizeof(T)));
    if (dry_run) return CUBLAS_STATUS_SUCCESS;
    T *dB = dv(B);
    if (a == (T)0) {
        zero_mat(dB, m, n, ldb, 'F');
        return CUBLAS_STATUS_SUCCESS;
    }
    trsm_x(left ? CblasLeft : CblasRight, uplo == CUBLAS_FILL_MODE_LOWER ? CblasLower : CblasUpper,
           cb_op(trans), diag == CUBLAS_DIAG_UNIT ? CblasUnit : CblasNonUnit, m, n, a, dv(A), lda,
           dB, ldb);
    return CUBLAS_STATUS_SUCCESS;
}

template <class T>
cublasStatus_t gemv_t(const char *fn, cublasHandle_t h, cublasOperation_t trans, int m, int n,
                      const T *alpha, const T *A, int lda, const T *x, int incx, const T *beta,
                      T *y, int incy) {
    T a, b;
    BLAS_TRY(handle_check(h, fn));
    if (!op_ok(trans) || m < 0 || n < 0 || lda < imax1(m) || incx == 0 || incy == 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    BLAS_TRY(scalar_in(h, fn, "alpha", alpha, &a));
    BLAS_TRY(scalar_in(h, fn, "beta", beta, &b));
    int lx = trans == CUBLAS_OP_N ? n : m, ly = trans == CUBLAS_OP_N ? m : n;
    BLAS_TRY(mat_ok(h, fn, "A", A, m, n, lda, sizeof(T)));
    BLAS_TRY(vec_ok(h, fn, "x", x, lx, incx, sizeof(T)));
    BLAS_TRY(vec_ok(h, fn, "y", y, ly, incy, sizeof(T)));
    if (dry_run) return CUBLAS_STATUS_SUCCESS;
    T *dy = dv(y);
    if (b == (T)0) {
        size_t step = (size_t)(incy < 0 ? -(long)incy : (long)incy);
        for (int i = 0; i < ly; i++) dy[(size_t)i * step] = (T)0;
    }
    gemv_x(cb_op(trans), m, n, a, dv(A), lda, dv(x), incx, b, dy, incy);
    return CUBLAS_STATUS_SUCCESS;
}

template <class T>
cublasStatus_t axpy_t(const char *fn, cublasHandle_t h, int n, const T *alpha, const T *x,
                      int incx, T *y, int incy) {
    T a;
    BLAS_TRY(handle_check(h, fn));
    if (n <= 0) return CUBLAS_STATUS_SUCCESS;
    BLAS_TRY(scalar_in(h, fn, "alpha", alpha, &a));
    BLAS_TRY(vec_ok(h, fn, "x", x, n, incx, sizeof(T)));
    BLAS_TRY(vec_ok(h, fn, "y", y, n, incy, sizeof(T)));
    if (dry_run) return CUBLAS_STATUS_SUCCESS;
    axpy_x(n, a, dv(x), incx, dv(y), incy);
    return CUBLAS_STATUS_SUCCESS;
}

template <class T>
cublasStatus_t scal_t(const char *fn, cublasHandle_t h, int n, const T *alpha, T *x, int incx) {
    T a;
    BLAS_TRY(handle_check(h, fn));
    if (n <= 0 || incx <= 0) return CUBLAS_STATUS_SUCCESS;
    BLAS_TRY(scalar_in(h, fn, "alpha", alpha, &a));
    BLAS_TRY(vec_ok(h, fn, "x", x, n, incx, sizeof(T)));
    if (dry_run) return CUBLAS_STATUS_SUCCESS;
    T *dx = dv(x);
    for (int i = 0; i < n; i++) dx[(size_t)i * (size_t)incx] *= a; /* NaN * 0 stays NaN */
    return CUBLAS_STATUS_SUCCESS;
}

template <class T>
cublasStatus_t copy_t(const char *fn, cublasHandle_t h, int n, const T *x, int incx, T *y,
                      int incy) {
    BLAS_TRY(handle_check(h, fn));
    if (n <= 0) return CUBLAS_STATUS_SUCCESS;
    BLAS_TRY(vec_ok(h, fn, "x", x, n, incx, sizeof(T)));
    BLAS_TRY(vec_ok(h, fn, "y", y, n, incy, sizeof(T)));
    if (dry_run) return CUBLAS_STATUS_SUCCESS;
    copy_x(n, dv(x), incx, dv(y), incy);
    return CUBLAS_STATUS_SUCCESS;
}

template <class T>
cublasStatus_t dot_t(const char *fn, cublasHandle_t h, int n, const T *x, int incx, const T *y,
                     int incy, T *result) {
    BLAS_TRY(handle_check(h, fn));
    BLAS_TRY(scalar_out_ok(h, fn, result));
    T r = (T)0;
    if (n > 0) {
        BLAS_TRY(vec_ok(h, fn, "x", x, n, incx, sizeof(T)));
        BLAS_TRY(vec_ok(h, fn, "y", y, n, incy, sizeof(T)));
    }
    if (dry_run) return CUBLAS_STATUS_SUCCESS;
    if (n > 0) {
        r = dot_x(n, dv(x), incx, dv(y), incy);
    }
    scalar_out(h, result, r);
    return CUBLAS_STATUS_SUCCESS;
}

template <class T>
cublasStatus_t nrm2_t(const char *fn, cublasHandle_t h, int n, const T *x, int incx, T *result) {
    BLAS_TRY(handle_check(h, fn));
    BLAS_TRY(scalar_out_ok(h, fn, result));
    T r = (T)0;
    if (n > 0 && incx > 0) {
        BLAS_TRY(vec_ok(h, fn, "x", x, n, incx, sizeof(T)));
    }
    if (dry_run) return CUBLAS_STATUS_SUCCESS;
    if (n > 0 && incx > 0) {
        r = nrm2_x(n, dv(x), incx);
    }
    scalar_out(h, result, r);
    return CUBLAS_STATUS_SUCCESS;
}

const char *status_name(cublasStatus_t s);

/* A computing call: run it now, or, when the handle's stream is capturing, validate it now (dry
 * run) and record it as a graph node. Host-mode scalars (alpha, beta) are copied now, as cuBLAS
 * reads them when the call is made; device-mode ones are read at replay. The pointer and math
 * modes of the call are frozen into the node. A reduction whose result goes to host memory cannot
 * be captured (its result would be needed before the graph runs): CUBLAS_STATUS_NOT_SUPPORTED, and
 * the capture is invalidated. `call(alpha, beta)` runs the function on the given scalars. */
template <class T, class F>
cublasStatus_t run_or_capture(const char *fn, cublasHandle_t h, const T *alpha, const T *beta,
                              bool host_result, F call) {
    if (!handle_ok(h) || !capturing(h->stream)) return call(alpha, beta);
    const bool host = h->pointer_mode == CUBLAS_POINTER_MODE_HOST;
    if (host_result && host) {
        note("%s: a result in host memory (CUBLAS_POINTER_MODE_HOST) during stream capture; the "
             "capture is invalidated",
             fn);
        capture_invalidate(h->stream, fn);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    dry_run = true;
    cublasStatus_t st = call(alpha, beta);
    dry_run = false;
    if (st != CUBLAS_STATUS_SUCCESS) {
        capture_invalidate(h->stream, fn);
        return st;
    }
    const T av = host && alpha ? *alpha : T(0), bv = host && beta ? *beta : T(0);
    const bool has_a = alpha != NULL, has_b = beta != NULL;
    const cublasPointerMode_t pm = h->pointer_mode;
    const cublasMath_t mm = h->math_mode;
    cudaError_t e = capture_node(h->stream, fn, [=]() -> cudaError_t {
        if (!handle_ok(h)) {
            note("%s (graph replay): the cuBLAS handle %p was destroyed", fn, (void *)h);
            return cudaErrorInvalidResourceHandle;
        }
        const cublasPointerMode_t pm0 = h->pointer_mode;
        const cublasMath_t mm0 = h->math_mode;
        h->pointer_mode = pm;
        h->math_mode = mm;
        T a2 = av, b2 = bv;
        cublasStatus_t r = call(host ? (has_a ? &a2 : NULL) : alpha, host ? (has_b ? &b2 : NULL) : beta);
        h->pointer_mode = pm0;
        h->math_mode = mm0;
        if (r == CUBLAS_STATUS_SUCCESS) return cudaSuccess;
        note("%s (graph replay): %s", fn, status_name(r));
        return cudaErrorLaunchFailure;
    });
    return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
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
    h->device = current_device();
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

/* The stream must belong to the handle's device (NULL: the default stream of the device current
 * at each call, which must be the handle's). */
cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t streamId) {
    if (!handle_ok(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!stream_valid(streamId)) return CUBLAS_STATUS_INVALID_VALUE;
    if (streamId != NULL && streamId != cudaStreamLegacy && streamId != cudaStreamPerThread &&
        stream_device(streamId) != handle->device) {
        note("cublasSetStream: stream %p belongs to device %d but the handle %p to device %d",
             (void *)streamId, stream_device(streamId), (void *)handle, handle->device);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
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
    return run_or_capture<float>("cublasSgemm", handle, alpha, beta, false,
                               [=](const float *a_, const float *b_) {
                                   (void)a_;
                                   (void)b_;
                                   return gemm_batched<float>("cublasSgemm", handle, transa, transb, m, n, k, a_, A, lda, 0, B,
                               ldb, 0, b_, C, ldc, 0, 1);
                               });
}

cublasStatus_t cublasDgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                              cublasOperation_t transb, int m, int n, int k, const double *alpha,
                              const double *A, int lda, const double *B, int ldb,
                              const double *beta, double *C, int ldc) {
    return run_or_capture<double>("cublasDgemm", handle, alpha, beta, false,
                               [=](const double *a_, const double *b_) {
                                   (void)a_;
                                   (void)b_;
                                   return gemm_batched<double>("cublasDgemm", handle, transa, transb, m, n, k, a_, A, lda, 0, B,
                                ldb, 0, b_, C, ldc, 0, 1);
                               });
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k,
                                         const float *alpha, const float *A, int lda,
                                         long long int strideA, const float *B, int ldb,
                                         long long int strideB, const float *beta, float *C,
                                         int ldc, long long int strideC, int batchCount) {
    return run_or_capture<float>("cublasSgemmStridedBatched", handle, alpha, beta, false,
                               [=](const float *a_, const float *b_) {
                                   (void)a_;
                                   (void)b_;
                                   return gemm_batched<float>("cublasSgemmStridedBatched", handle, transa, transb, m, n, k, a_,
                               A, lda, strideA, B, ldb, strideB, b_, C, ldc, strideC, batchCount);
                               });
}

cublasStatus_t cublasSsyrk_v2(cublasHandle_t handle, cublasFillMode_t uplo, cublasOperation_t trans,
                              int n, int k, const float *alpha, const float *A, int lda,
                              const float *beta, float *C, int ldc) {
    return run_or_capture<float>("cublasSsyrk", handle, alpha, beta, false,
                               [=](const float *a_, const float *b_) {
                                   (void)a_;
                                   (void)b_;
                                   return syrk_t<float>("cublasSsyrk", handle, uplo, trans, n, k, a_, A, lda, b_, C, ldc);
                               });
}

cublasStatus_t cublasDsyrk_v2(cublasHandle_t handle, cublasFillMode_t uplo, cublasOperation_t trans,
                              int n, int k, const double *alpha, const double *A, int lda,
                              const double *beta, double *C, int ldc) {
    return run_or_capture<double>("cublasDsyrk", handle, alpha, beta, false,
                               [=](const double *a_, const double *b_) {
                                   (void)a_;
                                   (void)b_;
                                   return syrk_t<double>("cublasDsyrk", handle, uplo, trans, n, k, a_, A, lda, b_, C, ldc);
                               });
}

cublasStatus_t cublasStrsm_v2(cublasHandle_t handle, cublasSideMode_t side, cublasFillMode_t uplo,
                              cublasOperation_t trans, cublasDiagType_t diag, int m, int n,
                              const float *alpha, const float *A, int lda, float *B, int ldb) {
    return run_or_capture<float>("cublasStrsm", handle, alpha, (const float *)NULL, false,
                               [=](const float *a_, const float *b_) {
                                   (void)a_;
                                   (void)b_;
                                   return trsm_t<float>("cublasStrsm", handle, side, uplo, trans, diag, m, n, a_, A, lda, B,
                         ldb);
                               });
}

cublasStatus_t cublasDtrsm_v2(cublasHandle_t handle, cublasSideMode_t side, cublasFillMode_t uplo,
                              cublasOperation_t trans, cublasDiagType_t diag, int m, int n,
                              const double *alpha, const double *A, int lda, double *B, int ldb) {
    return run_or_capture<double>("cublasDtrsm", handle, alpha, (const double *)NULL, false,
                               [=](const double *a_, const double *b_) {
                                   (void)a_;
                                   (void)b_;
                                   return trsm_t<double>("cublasDtrsm", handle, side, uplo, trans, diag, m, n, a_, A, lda, B,
                          ldb);
                               });
}

/* ---- level 2 ------------------------------------------------------------------------------ */
cublasStatus_t cublasSgemv_v2(cublasHandle_t handle, cublasOperation_t trans, int m, int n,
                              const float *alpha, const float *A, int lda, const float *x, int incx,
                              const float *beta, float *y, int incy) {
    return run_or_capture<float>("cublasSgemv", handle, alpha, beta, false,
                               [=](const float *a_, const float *b_) {
                                   (void)a_;
                                   (void)b_;
                                   return gemv_t<float>("cublasSgemv", handle, trans, m, n, a_, A, lda, x, incx, b_, y, incy);
                               });
}

cublasStatus_t cublasDgemv_v2(cublasHandle_t handle, cublasOperation_t trans, int m, int n,
                              const double *alpha, const double *A, int lda, const double *x,
                              int incx, const double *beta, double *y, int incy) {
    return run_or_capture<double>("cublasDgemv", handle, alpha, beta, false,
                               [=](const double *a_, const double *b_) {
                                   (void)a_;
                                   (void)b_;
                                   return gemv_t<double>("cublasDgemv", handle, trans, m, n, a_, A, lda, x, incx, b_, y,
                          incy);
                               });
}

/* ---- level 1 ------------------------------------------------------------------------------ */
cublasStatus_t cublasSaxpy_v2(cublasHandle_t handle, int n, const float *alpha, const float *x,
                              int incx, float *y, int incy) {
    return run_or_capture<float>("cublasSaxpy", handle, alpha, (const float *)NULL, false,
                               [=](const float *a_, const float *b_) {
                                   (void)a_;
                                   (void)b_;
                                   return axpy_t<float>("cublasSaxpy", handle, n, a_, x, incx, y, incy);
                               });
}

cublasStatus_t cublasDaxpy_v2(cublasHandle_t handle, int n, const double *alpha, const double *x,
                              int incx, double *y, int incy) {
    return run_or_capture<double>("cublasDaxpy", handle, alpha, (const double *)NULL, false,
                               [=](const double *a_, const double *b_) {
                                   (void)a_;
                                   (void)b_;
                                   return axpy_t<double>("cublasDaxpy", handle, n, a_, x, incx, y, incy);
                               });
}

cublasStatus_t cublasSscal_v2(cublasHandle_t handle, int n, const float *alpha, float *x,
                              int incx) {
    return run_or_capture<float>("cublasSscal", handle, alpha, (const float *)NULL, false,
                               [=](const float *a_, const float *b_) {
                                   (void)a_;
                                   (void)b_;
                                   return scal_t<float>("cublasSscal", handle, n, a_, x, incx);
                               });
}

cublasStatus_t cublasDscal_v2(cublasHandle_t handle, int n, const double *alpha, double *x,
                              int incx) {
    return run_or_capture<double>("cublasDscal", handle, alpha, (const double *)NULL, false,
                               [=](const double *a_, const double *b_) {
                                   (void)a_;
                                   (void)b_;
                                   return scal_t<double>("cublasDscal", handle, n, a_, x, incx);
                               });
}

cublasStatus_t cublasScopy_v2(cublasHandle_t handle, int n, const float *x, int incx, float *y,
                              int incy) {
    return run_or_capture<float>("cublasScopy", handle, (const float *)NULL, (const float *)NULL, false,
                               [=](const float *a_, const float *b_) {
                                   (void)a_;
                                   (void)b_;
                                   return copy_t<float>("cublasScopy", handle, n, x, incx, y, incy);
                               });
}

cublasStatus_t cublasDcopy_v2(cublasHandle_t handle, int n, const double *x, int incx, double *y,
                              int incy) {
    return run_or_capture<double>("cublasDcopy", handle, (const double *)NULL, (const double *)NULL, false,
                               [=](const double *a_, const double *b_) {
                                   (void)a_;
                                   (void)b_;
                                   return copy_t<double>("cublasDcopy", handle, n, x, incx, y, incy);
                               });
}

cublasStatus_t cublasSdot_v2(cublasHandle_t handle, int n, const float *x, int incx, const float *y,
                             int incy, float *result) {
    return run_or_capture<float>("cublasSdot", handle, (const float *)NULL, (const float *)NULL, true,
                               [=](const float *a_, const float *b_) {
                                   (void)a_;
                                   (void)b_;
                                   return dot_t<float>("cublasSdot", handle, n, x, incx, y, incy, result);
                               });
}

cublasStatus_t cublasDdot_v2(cublasHandle_t handle, int n, const double *x, int incx,
                             const double *y, int incy, double *result) {
    return run_or_capture<double>("cublasDdot", handle, (const double *)NULL, (const double *)NULL, true,
                               [=](const double *a_, const double *b_) {
                                   (void)a_;
                                   (void)b_;
                                   return dot_t<double>("cublasDdot", handle, n, x, incx, y, incy, result);
                               });
}

cublasStatus_t cublasSnrm2_v2(cublasHandle_t handle, int n, const float *x, int incx,
                              float *result) {
    return run_or_capture<float>("cublasSnrm2", handle, (const float *)NULL, (const float *)NULL, true,
                               [=](const float *a_, const float *b_) {
                                   (void)a_;
                                   (void)b_;
                                   return nrm2_t<float>("cublasSnrm2", handle, n, x, incx, result);
                               });
}

cublasStatus_t cublasDnrm2_v2(cublasHandle_t handle, int n, const double *x, int incx,
                              double *result) {
    return run_or_capture<double>("cublasDnrm2", handle, (const double *)NULL, (const double *)NULL, true,
                               [=](const double *a_, const double *b_) {
                                   (void)a_;
                                   (void)b_;
                                   return nrm2_t<double>("cublasDnrm2", handle, n, x, incx, result);
                               });
}

} /* extern "C" */
