/* shim_cusolver.cpp: the cuSOLVER dense subset of the SIMT emulator (test-only): potrf, potri,
 * potrs, syevd (S and D) with their _bufferSize queries, cusolverDnCreateParams / DestroyParams and
 * the batched cusolverDnXsyevBatched (real types) with its size query, defined against the real <cusolverDn.h>
 * prototypes and computed with LAPACK (the LAPACKE *_work entry points, which do not reject NaN
 * input, as cuSOLVER does not). Column-major; only the `uplo` triangle is read or written.
 * Validation as documented: a NULL or destroyed handle is CUSOLVER_STATUS_NOT_INITIALIZED;
 * n < 0, lda < max(1, n), an unknown uplo or jobz are CUSOLVER_STATUS_INVALID_VALUE. Stricter
 * (a GPU would fault or read garbage): A, W, the workspace and devInfo must be device ranges, and
 * a workspace smaller than the _bufferSize answer is rejected (devInfo = -(its position)).
 * A handle belongs to the device current at cusolverDnCreate: a computing call made while another
 * device is current, or with an operand in another device's memory, gives
 * CUSOLVER_STATUS_EXECUTION_FAILED and a "simt:" line naming both devices (_bufferSize queries
 * touch no memory and are answered from any device).
 * devInfo receives LAPACK's info in device memory; the workspace is left holding NaN bytes since
 * its content after a call is undefined. Must not: touch device memory except through its device
 * view (dv). */
#include "simt_internal.h"

#include <cusolverDn.h>
#include <lapacke.h>

#include <string.h>

#include <mutex>
#include <set>
#include <vector>

struct cusolverDnContext {
    int device; /* current device at cusolverDnCreate */
    cudaStream_t stream;
};

namespace ng_simt {
namespace {

std::mutex mu;
std::set<cusolverDnHandle_t> handles;

bool handle_ok(cusolverDnHandle_t h) {
    std::lock_guard<std::mutex> lock(mu);
    return h != NULL && handles.count(h) != 0;
}

int imax1(int a) { return a > 1 ? a : 1; }

char uplo_char(cublasFillMode_t u) {
    return u == CUBLAS_FILL_MODE_LOWER ? 'L' : (u == CUBLAS_FILL_MODE_UPPER ? 'U' : 0);
}

/* Common checks of a (n, n) operand; returns CUSOLVER_STATUS_SUCCESS when the call may go on. */
cusolverStatus_t check_square(cusolverDnHandle_t h, cublasFillMode_t uplo, int n, int lda) {
    if (!handle_ok(h)) return CUSOLVER_STATUS_NOT_INITIALIZED;
    if (uplo_char(uplo) == 0 || n < 0 || lda < imax1(n)) return CUSOLVER_STATUS_INVALID_VALUE;
    return CUSOLVER_STATUS_SUCCESS;
}

/* A computing call: the checks of check_square, then CUSOLVER_STATUS_EXECUTION_FAILED (with a
 * note) when the handle belongs to another device than the current one. */
cusolverStatus_t check_call(cusolverDnHandle_t h, const char *fn, cublasFillMode_t uplo, int n,
                            int lda) {
    cusolverStatus_t st = check_square(h, uplo, n, lda);
    if (st != CUSOLVER_STATUS_SUCCESS) return st;
    if (!handle_on_current(fn, "handle", h, h->device)) return CUSOLVER_STATUS_EXECUTION_FAILED;
    if (capturing(h->stream)) { /* not captured by the emulator (simt_graph.cpp) */
        note("%s: cuSOLVER calls are not captured by the emulator; the stream capture is invalidated", fn);
        capture_invalidate(h->stream, fn);
        return CUSOLVER_STATUS_NOT_SUPPORTED;
    }
    return CUSOLVER_STATUS_SUCCESS;
}

/* An operand of bytes bytes: CUSOLVER_STATUS_INVALID_VALUE when not a device range,
 * CUSOLVER_STATUS_EXECUTION_FAILED when memory of another device than the handle's (with a
 * note either way). */
cusolverStatus_t dev_ok(cusolverDnHandle_t h, const char *fn, const char *name, const void *p,
                        size_t bytes) {
    if (bytes == 0) return CUSOLVER_STATUS_SUCCESS;
    if (!dev_range(p, bytes)) {
        note("%s: %s (%p, %zu bytes) is not a device range", fn, name, p, bytes);
        return CUSOLVER_STATUS_INVALID_VALUE;
    }
    return dev_on(fn, name, p, h->device, "handle") ? CUSOLVER_STATUS_SUCCESS
                                                    : CUSOLVER_STATUS_EXECUTION_FAILED;
}

/* Return from the enclosing function with the status of `call` unless it succeeded. */
#define SOLVER_TRY(call)                                                                           \
    do {                                                                                           \
        cusolverStatus_t st_ = (call);                                                             \
        if (st_ != CUSOLVER_STATUS_SUCCESS) return st_;                                            \
    } while (0)

size_t mat_bytes(int n, int cols, int ld, size_t elem) {
    if (n <= 0 || cols <= 0) return 0;
    return ((size_t)(cols - 1) * (size_t)ld + (size_t)n) * elem;
}

void set_info(int *devInfo, int v) { *dv(devInfo) = v; }

/* Workspace sizes the emulator asks for (elements); real cuSOLVER answers differently. */
int potrf_lwork(int n) { return n > 0 ? 64 * n : 1; }
int potri_lwork(int n) { return n > 0 ? n * n : 1; }
int syevd_lwork(int n, cusolverEigMode_t jobz) {
    if (n <= 1) return 1;
    return jobz == CUSOLVER_EIG_MODE_VECTOR ? 1 + 6 * n + 2 * n * n : 2 * n + 1;
}

lapack_int potrf_x(char u, int n, float *A, int lda) {
    return LAPACKE_spotrf_work(LAPACK_COL_MAJOR, u, n, A, lda);
}
lapack_int potrf_x(char u, int n, double *A, int lda) {
    return LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, u, n, A, lda);
}
lapack_int potri_x(char u, int n, float *A, int lda) {
    return LAPACKE_spotri_work(LAPACK_COL_MAJOR, u, n, A, lda);
}
lapack_int potri_x(char u, int n, double *A, int lda) {
    return LAPACKE_dpotri_work(LAPACK_COL_MAJOR, u, n, A, lda);
}
lapack_int potrs_x(char u, int n, int nrhs, const float *A, int lda, float *B, int ldb) {
    return LAPACKE_spotrs_work(LAPACK_COL_MAJOR, u, n, nrhs, A, lda, B, ldb);
}
lapack_int potrs_x(char u, int n, int nrhs, const double *A, int lda, double *B, int ldb) {
    return LAPACKE_dpotrs_work(LAPACK_COL_MAJOR, u, n, nrhs, A, lda, B, ldb);
}
lapack_int syevd_x(char jobz, char u, int n, float *A, int lda, float *W) {
    float q;
    lapack_int iq, info;
    info = LAPACKE_ssyevd_work(LAPACK_COL_MAJOR, jobz, u, n, A, lda, W, &q, -1, &iq, -1);
    if (info != 0) return info;
    std::vector<float> work((size_t)q + 1);
    std::vector<lapack_int> iwork((size_t)iq + 1);
    return LAPACKE_ssyevd_work(LAPACK_COL_MAJOR, jobz, u, n, A, lda, W, work.data(),
                               (lapack_int)work.size(), iwork.data(), (lapack_int)iwork.size());
}
lapack_int syevd_x(char jobz, char u, int n, double *A, int lda, double *W) {
    double q;
    lapack_int iq, info;
    info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, jobz, u, n, A, lda, W, &q, -1, &iq, -1);
    if (info != 0) return info;
    std::vector<double> work((size_t)q + 1);
    std::vector<lapack_int> iwork((size_t)iq + 1);
    return LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, jobz, u, n, A, lda, W, work.data(),
                               (lapack_int)work.size(), iwork.data(), (lapack_int)iwork.size());
}

/* potrf and potri share their shape: (uplo, n, A, lda, work, lwork, devInfo). */
template <class T, class F>
cusolverStatus_t factor_call(const char *fn, cusolverDnHandle_t h, cublasFillMode_t uplo, int n,
                             T *A, int lda, T *work, int lwork, int need, int *devInfo, F op) {
    SOLVER_TRY(check_call(h, fn, uplo, n, lda));
    SOLVER_TRY(dev_ok(h, fn, "devInfo", devInfo, sizeof(int)));
    if (lwork < need) {
        note("%s: Lwork %d is smaller than the %d elements the _bufferSize call asks for", fn,
             lwork, need);
        set_info(devInfo, -6);
        return CUSOLVER_STATUS_INVALID_VALUE;
    }
    SOLVER_TRY(dev_ok(h, fn, "A", A, mat_bytes(n, n, lda, sizeof(T))));
    SOLVER_TRY(dev_ok(h, fn, "workspace", work, (size_t)lwork * sizeof(T)));
    set_info(devInfo, n > 0 ? (int)op(uplo_char(uplo), n, dv(A), lda) : 0);
    memset(dv(work), 0xFF, (size_t)lwork * sizeof(T));
    return CUSOLVER_STATUS_SUCCESS;
}

template <class T>
cusolverStatus_t size_query(cusolverDnHandle_t h, cublasFillMode_t uplo, int n, int lda, int *lwork,
                            int value) {
    cusolverStatus_t st = check_square(h, uplo, n, lda);
    if (st != CUSOLVER_STATUS_SUCCESS) return st;
    if (lwork == NULL) return CUSOLVER_STATUS_INVALID_VALUE;
    *lwork = value;
    return CUSOLVER_STATUS_SUCCESS;
}

template <class T>
cusolverStatus_t potrs_t(const char *fn, cusolverDnHandle_t h, cublasFillMode_t uplo, int n,
                         int nrhs, const T *A, int lda, T *B, int ldb, int *devInfo) {
    SOLVER_TRY(check_call(h, fn, uplo, n, lda));
    if (nrhs < 0 || ldb < imax1(n)) return CUSOLVER_STATUS_INVALID_VALUE;
    SOLVER_TRY(dev_ok(h, fn, "devInfo", devInfo, sizeof(int)));
    SOLVER_TRY(dev_ok(h, fn, "A", A, mat_bytes(n, n, lda, sizeof(T))));
    SOLVER_TRY(dev_ok(h, fn, "B", B, mat_bytes(n, nrhs, ldb, sizeof(T))));
    set_info(devInfo, (n > 0 && nrhs > 0)
                          ? (int)potrs_x(uplo_char(uplo), n, nrhs, dv(A), lda, dv(B), ldb)
                          : 0);
    return CUSOLVER_STATUS_SUCCESS;
}

template <class T>
cusolverStatus_t syevd_t(const char *fn, cusolverDnHandle_t h, cusolverEigMode_t jobz,
                         cublasFillMode_t uplo, int n, T *A, int lda, T *W, T *work, int lwork,
                         int *info) {
    SOLVER_TRY(check_call(h, fn, uplo, n, lda));
    if (jobz != CUSOLVER_EIG_MODE_NOVECTOR && jobz != CUSOLVER_EIG_MODE_VECTOR)
        return CUSOLVER_STATUS_INVALID_VALUE;
    SOLVER_TRY(dev_ok(h, fn, "info", info, sizeof(int)));
    int need = syevd_lwork(n, jobz);
    if (lwork < need) {
        note("%s: lwork %d is smaller than the %d elements the _bufferSize call asks for", fn,
             lwork, need);
        set_info(info, -8);
        return CUSOLVER_STATUS_INVALID_VALUE;
    }
    SOLVER_TRY(dev_ok(h, fn, "A", A, mat_bytes(n, n, lda, sizeof(T))));
    SOLVER_TRY(dev_ok(h, fn, "W", W, (size_t)(n > 0 ? n : 0) * sizeof(T)));
    SOLVER_TRY(dev_ok(h, fn, "work", work, (size_t)lwork * sizeof(T)));
    set_info(info, n > 0 ? (int)syevd_x(jobz == CUSOLVER_EIG_MODE_VECTOR ? 'V' : 'N',
                                        uplo_char(uplo), n, dv(A), lda, dv(W))
                         : 0);
    memset(dv(work), 0xFF, (size_t)lwork * sizeof(T));
    return CUSOLVER_STATUS_SUCCESS;
}

template <class T>
cusolverStatus_t syevd_size(cusolverDnHandle_t h, cusolverEigMode_t jobz, cublasFillMode_t uplo,
                            int n, int lda, int *lwork) {
    cusolverStatus_t st = check_square(h, uplo, n, lda);
    if (st != CUSOLVER_STATUS_SUCCESS) return st;
    if ((jobz != CUSOLVER_EIG_MODE_NOVECTOR && jobz != CUSOLVER_EIG_MODE_VECTOR) || lwork == NULL)
        return CUSOLVER_STATUS_INVALID_VALUE;
    *lwork = syevd_lwork(n, jobz);
    return CUSOLVER_STATUS_SUCCESS;
}

/* cusolverDnParams_t handles alive (cusolverDnCreateParams .. cusolverDnDestroyParams) */
std::set<cusolverDnParams_t> params_alive;

bool params_ok(cusolverDnParams_t p) {
    std::lock_guard<std::mutex> lock(mu);
    return p != NULL && params_alive.count(p) != 0;
}

/* The emulator's answers for cusolverDnXsyevBatched (bytes): the device workspace is one syevd
 * workspace per matrix, and a few host bytes are asked for so that callers exercise that buffer. */
size_t syev_batched_dev_bytes(int64_t n, cusolverEigMode_t jobz, size_t elem, int64_t batch) {
    return (size_t)syevd_lwork((int)n, jobz) * elem * (size_t)(batch > 0 ? batch : 1);
}
size_t syev_batched_host_bytes(int64_t batch) { return 8 * (size_t)(batch > 0 ? batch : 1); }

/* The checks shared by cusolverDnXsyevBatched and its size query: handle, params, jobz, uplo,
 * n, lda, batchSize, and the data types (A, W and compute all R_32F or all R_64F: the real
 * library also takes complex A with real W, which the emulator does not implement). */
cusolverStatus_t syev_batched_check(cusolverDnHandle_t h, cusolverDnParams_t params, cusolverEigMode_t jobz,
                                    cublasFillMode_t uplo, int64_t n, cudaDataType ta, int64_t lda, cudaDataType tw,
                                    cudaDataType tc, int64_t batch, size_t *elem) {
    if (!handle_ok(h)) return CUSOLVER_STATUS_NOT_INITIALIZED;
    if (!params_ok(params)) return CUSOLVER_STATUS_INVALID_VALUE;
    if ((jobz != CUSOLVER_EIG_MODE_NOVECTOR && jobz != CUSOLVER_EIG_MODE_VECTOR) || uplo_char(uplo) == 0 ||
        n < 0 || n > INT32_MAX || lda < (n > 1 ? n : 1) || lda > INT32_MAX || batch < 0)
        return CUSOLVER_STATUS_INVALID_VALUE;
    if (ta != tw || ta != tc || (ta != CUDA_R_32F && ta != CUDA_R_64F)) {
        note("cusolverDnXsyevBatched: data types %d/%d/%d (A/W/compute) are not implemented by the emulator "
             "(CUDA_R_32F or CUDA_R_64F throughout)", (int)ta, (int)tw, (int)tc);
        return CUSOLVER_STATUS_NOT_SUPPORTED;
    }
    *elem = ta == CUDA_R_64F ? sizeof(double) : sizeof(float);
    return CUSOLVER_STATUS_SUCCESS;
}

template <class T>
void syev_batched_run(char jobz, char u, int n, int lda, T *A, T *W, int *info, int64_t batch) {
    for (int64_t k = 0; k < batch; k++)
        info[k] = n > 0 ? (int)syevd_x(jobz, u, n, A + (size_t)k * (size_t)lda * (size_t)n, lda, W + (size_t)k * (size_t)n) : 0;
}

} /* namespace */
} /* namespace ng_simt */

using namespace ng_simt;

extern "C" {

cusolverStatus_t cusolverDnCreate(cusolverDnHandle_t *handle) {
    if (handle == NULL) return CUSOLVER_STATUS_INVALID_VALUE;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1) {
        cudaGetLastError();
        return CUSOLVER_STATUS_NOT_INITIALIZED;
    }
    cusolverDnHandle_t h = new cusolverDnContext();
    h->device = current_device();
    h->stream = NULL;
    std::lock_guard<std::mutex> lock(ng_simt::mu);
    handles.insert(h);
    *handle = h;
    return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnDestroy(cusolverDnHandle_t handle) {
    std::lock_guard<std::mutex> lock(ng_simt::mu);
    if (handle == NULL || handles.erase(handle) == 0) return CUSOLVER_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUSOLVER_STATUS_SUCCESS;
}

/* The stream must belong to the handle's device (NULL: the current device's default stream). */
cusolverStatus_t cusolverDnSetStream(cusolverDnHandle_t handle, cudaStream_t streamId) {
    if (!handle_ok(handle)) return CUSOLVER_STATUS_NOT_INITIALIZED;
    if (!stream_valid(streamId)) return CUSOLVER_STATUS_INVALID_VALUE;
    if (streamId != NULL && streamId != cudaStreamLegacy && streamId != cudaStreamPerThread &&
        stream_device(streamId) != handle->device) {
        note("cusolverDnSetStream: stream %p belongs to device %d but the handle %p to device %d",
             (void *)streamId, stream_device(streamId), (void *)handle, handle->device);
        return CUSOLVER_STATUS_INVALID_VALUE;
    }
    handle->stream = streamId;
    return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnGetStream(cusolverDnHandle_t handle, cudaStream_t *streamId) {
    if (!handle_ok(handle)) return CUSOLVER_STATUS_NOT_INITIALIZED;
    if (streamId == NULL) return CUSOLVER_STATUS_INVALID_VALUE;
    *streamId = handle->stream;
    return CUSOLVER_STATUS_SUCCESS;
}

/* ---- Cholesky ------------------------------------------------------------------------------ */
cusolverStatus_t cusolverDnSpotrf_bufferSize(cusolverDnHandle_t handle, cublasFillMode_t uplo,
                                             int n, float *A, int lda, int *Lwork) {
    return size_query<float>(handle, uplo, n, lda, Lwork, potrf_lwork(n));
}
cusolverStatus_t cusolverDnDpotrf_bufferSize(cusolverDnHandle_t handle, cublasFillMode_t uplo,
                                             int n, double *A, int lda, int *Lwork) {
    return size_query<double>(handle, uplo, n, lda, Lwork, potrf_lwork(n));
}

cusolverStatus_t cusolverDnSpotrf(cusolverDnHandle_t handle, cublasFillMode_t uplo, int n, float *A,
                                  int lda, float *Workspace, int Lwork, int *devInfo) {
    return factor_call<float>(
        "cusolverDnSpotrf", handle, uplo, n, A, lda, Workspace, Lwork, potrf_lwork(n), devInfo,
        [](char u, int nn, float *a, int ld) { return potrf_x(u, nn, a, ld); });
}
cusolverStatus_t cusolverDnDpotrf(cusolverDnHandle_t handle, cublasFillMode_t uplo, int n,
                                  double *A, int lda, double *Workspace, int Lwork, int *devInfo) {
    return factor_call<double>(
        "cusolverDnDpotrf", handle, uplo, n, A, lda, Workspace, Lwork, potrf_lwork(n), devInfo,
        [](char u, int nn, double *a, int ld) { return potrf_x(u, nn, a, ld); });
}

cusolverStatus_t cusolverDnSpotri_bufferSize(cusolverDnHandle_t handle, cublasFillMode_t uplo,
                                             int n, float *A, int lda, int *lwork) {
    return size_query<float>(handle, uplo, n, lda, lwork, potri_lwork(n));
}
cusolverStatus_t cusolverDnDpotri_bufferSize(cusolverDnHandle_t handle, cublasFillMode_t uplo,
                                             int n, double *A, int lda, int *lwork) {
    return size_query<double>(handle, uplo, n, lda, lwork, potri_lwork(n));
}

cusolverStatus_t cusolverDnSpotri(cusolverDnHandle_t handle, cublasFillMode_t uplo, int n, float *A,
                                  int lda, float *work, int lwork, int *devInfo) {
    return factor_call<float>(
        "cusolverDnSpotri", handle, uplo, n, A, lda, work, lwork, potri_lwork(n), devInfo,
        [](char u, int nn, float *a, int ld) { return potri_x(u, nn, a, ld); });
}
cusolverStatus_t cusolverDnDpotri(cusolverDnHandle_t handle, cublasFillMode_t uplo, int n,
                                  double *A, int lda, double *work, int lwork, int *devInfo) {
    return factor_call<double>(
        "cusolverDnDpotri", handle, uplo, n, A, lda, work, lwork, potri_lwork(n), devInfo,
        [](char u, int nn, double *a, int ld) { return potri_x(u, nn, a, ld); });
}

cusolverStatus_t cusolverDnSpotrs(cusolverDnHandle_t handle, cublasFillMode_t uplo, int n, int nrhs,
                                  const float *A, int lda, float *B, int ldb, int *devInfo) {
    return potrs_t<float>("cusolverDnSpotrs", handle, uplo, n, nrhs, A, lda, B, ldb, devInfo);
}
cusolverStatus_t cusolverDnDpotrs(cusolverDnHandle_t handle, cublasFillMode_t uplo, int n, int nrhs,
                                  const double *A, int lda, double *B, int ldb, int *devInfo) {
    return potrs_t<double>("cusolverDnDpotrs", handle, uplo, n, nrhs, A, lda, B, ldb, devInfo);
}

/* ---- symmetric eigensolver ---------------------------------------------------------------- */
cusolverStatus_t cusolverDnSsyevd_bufferSize(cusolverDnHandle_t handle, cusolverEigMode_t jobz,
                                             cublasFillMode_t uplo, int n, const float *A, int lda,
                                             const float *W, int *lwork) {
    return syevd_size<float>(handle, jobz, uplo, n, lda, lwork);
}
cusolverStatus_t cusolverDnDsyevd_bufferSize(cusolverDnHandle_t handle, cusolverEigMode_t jobz,
                                             cublasFillMode_t uplo, int n, const double *A, int lda,
                                             const double *W, int *lwork) {
    return syevd_size<double>(handle, jobz, uplo, n, lda, lwork);
}

cusolverStatus_t cusolverDnSsyevd(cusolverDnHandle_t handle, cusolverEigMode_t jobz,
                                  cublasFillMode_t uplo, int n, float *A, int lda, float *W,
                                  float *work, int lwork, int *info) {
    return syevd_t<float>("cusolverDnSsyevd", handle, jobz, uplo, n, A, lda, W, work, lwork, info);
}
cusolverStatus_t cusolverDnDsyevd(cusolverDnHandle_t handle, cusolverEigMode_t jobz,
                                  cublasFillMode_t uplo, int n, double *A, int lda, double *W,
                                  double *work, int lwork, int *info) {
    return syevd_t<double>("cusolverDnDsyevd", handle, jobz, uplo, n, A, lda, W, work, lwork, info);
}

/* ---- the 64-bit API: parameters and the batched symmetric eigensolver ---------------------- */
cusolverStatus_t cusolverDnCreateParams(cusolverDnParams_t *params) {
    if (params == NULL) return CUSOLVER_STATUS_INVALID_VALUE;
    /* an opaque non-NULL token: the emulator keeps no advanced options */
    cusolverDnParams_t p = reinterpret_cast<cusolverDnParams_t>(new char[1]);
    std::lock_guard<std::mutex> lock(ng_simt::mu);
    params_alive.insert(p);
    *params = p;
    return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnDestroyParams(cusolverDnParams_t params) {
    std::lock_guard<std::mutex> lock(ng_simt::mu);
    if (params == NULL || params_alive.erase(params) == 0) return CUSOLVER_STATUS_INVALID_VALUE;
    delete[] reinterpret_cast<char *>(params);
    return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnXsyevBatched_bufferSize(cusolverDnHandle_t handle, cusolverDnParams_t params,
                                                   cusolverEigMode_t jobz, cublasFillMode_t uplo, int64_t n,
                                                   cudaDataType dataTypeA, const void *A, int64_t lda,
                                                   cudaDataType dataTypeW, const void *W, cudaDataType computeType,
                                                   size_t *workspaceInBytesOnDevice, size_t *workspaceInBytesOnHost,
                                                   int64_t batchSize) {
    size_t elem = 0;
    SOLVER_TRY(syev_batched_check(handle, params, jobz, uplo, n, dataTypeA, lda, dataTypeW, computeType, batchSize, &elem));
    if (workspaceInBytesOnDevice == NULL || workspaceInBytesOnHost == NULL) return CUSOLVER_STATUS_INVALID_VALUE;
    *workspaceInBytesOnDevice = syev_batched_dev_bytes(n, jobz, elem, batchSize);
    *workspaceInBytesOnHost = syev_batched_host_bytes(batchSize);
    return CUSOLVER_STATUS_SUCCESS;
}

/* info (batchSize ints, device): LAPACK's info per matrix. Stricter than the library: A, W, info
 * and the device workspace must be device ranges of the handle's device, the host workspace must
 * be present, and workspaces smaller than the _bufferSize answer are rejected (info[0] = -(the
 * argument's position)). Computed per matrix with LAPACK's syevd (the library uses its own
 * algorithm: eigenvalues agree to rounding, eigenvectors up to sign). */
cusolverStatus_t cusolverDnXsyevBatched(cusolverDnHandle_t handle, cusolverDnParams_t params,
                                        cusolverEigMode_t jobz, cublasFillMode_t uplo, int64_t n,
                                        cudaDataType dataTypeA, void *A, int64_t lda, cudaDataType dataTypeW,
                                        void *W, cudaDataType computeType, void *bufferOnDevice,
                                        size_t workspaceInBytesOnDevice, void *bufferOnHost,
                                        size_t workspaceInBytesOnHost, int *info, int64_t batchSize) {
    const char *fn = "cusolverDnXsyevBatched";
    size_t elem = 0, need_dev, need_host;
    SOLVER_TRY(syev_batched_check(handle, params, jobz, uplo, n, dataTypeA, lda, dataTypeW, computeType, batchSize, &elem));
    SOLVER_TRY(check_call(handle, fn, uplo, (int)n, (int)lda));
    if (batchSize == 0) return CUSOLVER_STATUS_SUCCESS;
    SOLVER_TRY(dev_ok(handle, fn, "info", info, (size_t)batchSize * sizeof(int)));
    need_dev = syev_batched_dev_bytes(n, jobz, elem, batchSize);
    need_host = syev_batched_host_bytes(batchSize);
    if (workspaceInBytesOnDevice < need_dev || workspaceInBytesOnHost < need_host || (need_host && bufferOnHost == NULL)) {
        note("%s: workspaces of %zu (device) and %zu (host%s) bytes; the _bufferSize call asks for %zu and %zu", fn,
             workspaceInBytesOnDevice, workspaceInBytesOnHost, bufferOnHost ? "" : ", NULL", need_dev, need_host);
        set_info(info, workspaceInBytesOnDevice < need_dev ? -13 : -15);
        return CUSOLVER_STATUS_INVALID_VALUE;
    }
    SOLVER_TRY(dev_ok(handle, fn, "A", A, n > 0 ? ((size_t)(batchSize - 1) * (size_t)lda * (size_t)n) * elem + mat_bytes((int)n, (int)n, (int)lda, elem) : 0));
    SOLVER_TRY(dev_ok(handle, fn, "W", W, (size_t)n * (size_t)batchSize * elem));
    SOLVER_TRY(dev_ok(handle, fn, "bufferOnDevice", bufferOnDevice, workspaceInBytesOnDevice));
    const char jz = jobz == CUSOLVER_EIG_MODE_VECTOR ? 'V' : 'N', u = uplo_char(uplo);
    if (elem == sizeof(double))
        syev_batched_run<double>(jz, u, (int)n, (int)lda, dv((double *)A), dv((double *)W), dv(info), batchSize);
    else
        syev_batched_run<float>(jz, u, (int)n, (int)lda, dv((float *)A), dv((float *)W), dv(info), batchSize);
    memset(dv((char *)bufferOnDevice), 0xFF, workspaceInBytesOnDevice);
    memset(bufferOnHost, 0xFF, workspaceInBytesOnHost);
    return CUSOLVER_STATUS_SUCCESS;
}

} /* extern "C" */
