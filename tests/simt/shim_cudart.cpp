/* shim_cudart.cpp: the CUDA runtime subset of the SIMT emulator (test-only), defined against the
 * real <cuda_runtime_api.h> prototypes. NG_SIMT_DEVICES emulated devices (default 2; sm_90-class
 * parts of 16 GiB each unless NG_SIMT_DEVICE_MEM says otherwise; NG_SIMT_NO_DEVICE=1 makes
 * cudaGetDeviceCount report none). Each host thread has a current device (cudaSetDevice, default
 * 0); allocations, streams and events belong to the device current at their creation, and the
 * NULL stream is the current device's default stream.
 * All work is synchronous (a stream only has to be valid and belong to the current device, and an
 * event records the host clock) except work in flight that a library shim queues on a stream
 * (stream_add_pending: the NCCL shim's collectives), which queries, synchronizes, event waits and
 * later work on that stream test or finish. Arguments are checked as the runtime documents, and more strictly
 * where a GPU would fault later or natgrad would have a bug: a memcpy direction must match the
 * pointers (device pointers are those from cudaMalloc), device ranges must lie inside one
 * allocation, and an async copy or memset must touch memory of its stream's device only (one side
 * of a device-to-device copy may be another device's: a peer copy). Synchronous cudaMemcpy and
 * cudaMemset take memory of any device, as unified addressing allows on a GPU. Every failing call
 * also sets the error that cudaGetLastError returns.
 * Must not: touch device memory except through its device view (dv). */
#include "simt_internal.h"

#include <cuda_profiler_api.h>

#include <string.h>
#include <time.h>
#include <stdlib.h>
#include <unistd.h>

#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <vector>
#include <stdint.h>

struct CUstream_st {
    unsigned int flags;
    int device; /* current device at creation */
};
struct CUevent_st {
    unsigned int flags;
    int device; /* current device at creation */
    bool recorded;
    double ms; /* host clock at record, milliseconds */
    uintptr_t pkey;     /* the recording stream's queue of work in flight (0: none) */
    uint64_t pupto;     /* ... and how many of its ops had been queued at the record */
};

namespace ng_simt {
namespace {

std::mutex handle_mu;
std::set<cudaStream_t> streams;
std::set<cudaEvent_t> events;
thread_local int tls_device; /* this host thread's current device */

/* Work in flight per stream (stream_add_pending): the default stream of device d is key d + 1,
 * a created stream its address. */
struct pending_queue {
    int device;
    uint64_t queued, done;
    std::deque<pending_op> ops;
};
std::mutex pend_mu;
std::map<uintptr_t, pending_queue> pend;

/* Complete (wait) or test (test_only) the ops of queue key up to number upto; false when one still
 * runs (test_only). */
bool settle(uintptr_t key, uint64_t upto, bool test_only) {
    std::lock_guard<std::mutex> lock(pend_mu);
    auto it = pend.find(key);
    if (it == pend.end()) return true;
    pending_queue &q = it->second;
    while (q.done < upto && !q.ops.empty()) {
        pending_op op = q.ops.front();
        if (test_only) {
            if (!op.test(op.ctx)) return false;
        } else {
            op.wait(op.ctx);
        }
        q.ops.pop_front();
        q.done++;
    }
    return true;
}

bool event_valid(cudaEvent_t e) {
    std::lock_guard<std::mutex> lock(handle_mu);
    return e != NULL && events.count(e) != 0;
}

bool no_device() {
    const char *e = getenv("NG_SIMT_NO_DEVICE");
    return e && *e && strcmp(e, "0") != 0;
}

/* NG_SIMT_DEVICES, read once: 1..MAX_DEVICES, default 2. */
int configured_devices() {
    static const int n = [] {
        const char *e = getenv("NG_SIMT_DEVICES");
        if (e == NULL || *e == 0) return 2;
        char *end = NULL;
        long v = strtol(e, &end, 10);
        if (end == e || *end != 0 || v < 1 || v > MAX_DEVICES)
            fatal("NG_SIMT_DEVICES=%s: want a whole number of emulated devices from 1 to %d", e,
                  (int)MAX_DEVICES);
        return (int)v;
    }();
    return n;
}

double now_ms() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* Check a copy's pointers against its direction; cudaSuccess or the error to report. */
cudaError_t check_copy(void *dst, const void *src, size_t count, cudaMemcpyKind kind) {
    bool dd, sd;
    if (count == 0) return cudaSuccess;
    if (dst == NULL || src == NULL) return cudaErrorInvalidValue;
    dd = dev_pointer(dst);
    sd = dev_pointer(src);
    if (kind == cudaMemcpyDefault) {
        if (dd && !dev_range(dst, count)) return cudaErrorInvalidValue;
        if (sd && !dev_range(src, count)) return cudaErrorInvalidValue;
        return cudaSuccess;
    }
    if (kind != cudaMemcpyHostToHost && kind != cudaMemcpyHostToDevice &&
        kind != cudaMemcpyDeviceToHost && kind != cudaMemcpyDeviceToDevice)
        return cudaErrorInvalidMemcpyDirection;
    bool want_dd = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    bool want_sd = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (dd != want_dd || sd != want_sd) {
        note("cudaMemcpy: direction %d does not match the pointers (dst %p is %s, src %p is %s)",
             (int)kind, dst, dd ? "device memory" : "host memory", src,
             sd ? "device memory" : "host memory");
        return cudaErrorInvalidValue;
    }
    if ((dd && !dev_range(dst, count)) || (sd && !dev_range(src, count))) {
        note("cudaMemcpy: %zu bytes run past the end of a device allocation", count);
        return cudaErrorInvalidValue;
    }
    return cudaSuccess;
}

cudaError_t do_copy(void *dst, const void *src, size_t count, cudaMemcpyKind kind) {
    cudaError_t e = check_copy(dst, src, count, kind);
    if (e != cudaSuccess) return set_error(e);
    if (count) {
        void *d = dev_view(dst);
        const void *s = dev_view(src);
        memmove(d ? d : dst, s ? s : src, count);
    }
    return cudaSuccess;
}

/* An async copy on a stream of device sd: each device operand must be memory of device sd, except
 * that one side of a device-to-device copy may be another device's (a peer copy). */
cudaError_t check_copy_devices(void *dst, const void *src, size_t count, int sd) {
    if (count == 0) return cudaSuccess;
    int dd = dev_device(dst), ds = dev_device(src);
    bool ok = (dd >= 0 && ds >= 0) ? (dd == sd || ds == sd)
                                   : ((dd < 0 || dd == sd) && (ds < 0 || ds == sd));
    if (ok) return cudaSuccess;
    note("cudaMemcpyAsync: a copy on a stream of device %d touches memory of device %d (%s %p)",
         sd, dd >= 0 && dd != sd ? dd : ds, dd >= 0 && dd != sd ? "dst" : "src",
         dd >= 0 && dd != sd ? dst : src);
    return cudaErrorInvalidValue;
}

cudaError_t do_memset(void *dst, int value, size_t count) {
    if (count == 0) return cudaSuccess;
    if (!dev_range(dst, count)) {
        note("cudaMemset(%p, %d, %zu): not a device range", dst, value, count);
        return set_error(cudaErrorInvalidValue);
    }
    memset(dev_view(dst), value, count);
    return cudaSuccess;
}

struct err_entry {
    cudaError_t code;
    const char *name;
    const char *text;
};
const err_entry err_table[] = {
    {cudaSuccess, "cudaSuccess", "no error"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory"},
    {cudaErrorInitializationError, "cudaErrorInitializationError", "initialization error"},
    {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration",
     "invalid configuration argument"},
    {cudaErrorInvalidDevicePointer, "cudaErrorInvalidDevicePointer", "invalid device pointer"},
    {cudaErrorInvalidMemcpyDirection, "cudaErrorInvalidMemcpyDirection",
     "invalid copy direction for memcpy"},
    {cudaErrorInvalidDeviceFunction, "cudaErrorInvalidDeviceFunction", "invalid device function"},
    {cudaErrorNoDevice, "cudaErrorNoDevice", "no CUDA-capable device is detected"},
    {cudaErrorInvalidDevice, "cudaErrorInvalidDevice", "invalid device ordinal"},
    {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle", "invalid resource handle"},
    {cudaErrorNotReady, "cudaErrorNotReady", "device not ready"},
    {cudaErrorIllegalAddress, "cudaErrorIllegalAddress",
     "an illegal memory access was encountered"},
    {cudaErrorLaunchOutOfResources, "cudaErrorLaunchOutOfResources",
     "too many resources requested for launch"},
    {cudaErrorLaunchFailure, "cudaErrorLaunchFailure", "unspecified launch failure"},
    {cudaErrorNotSupported, "cudaErrorNotSupported", "operation not supported"},
    {cudaErrorUnknown, "cudaErrorUnknown", "unknown error"},
    {cudaErrorIllegalState, "cudaErrorIllegalState", "the operation cannot be performed in the present state"},
    {cudaErrorStreamCaptureUnsupported, "cudaErrorStreamCaptureUnsupported",
     "operation not permitted when stream is capturing"},
    {cudaErrorStreamCaptureInvalidated, "cudaErrorStreamCaptureInvalidated",
     "operation failed due to a previous error during capture"},
    {cudaErrorStreamCaptureWrongThread, "cudaErrorStreamCaptureWrongThread",
     "attempt to terminate a thread-local capture sequence from another thread"},
    {cudaErrorStreamCaptureUnmatched, "cudaErrorStreamCaptureUnmatched",
     "the capture was not initiated in this stream"},
    {cudaErrorStreamCaptureUnjoined, "cudaErrorStreamCaptureUnjoined",
     "the capture sequence contains a fork that was not joined to the primary stream"},
};

const err_entry *find_err(cudaError_t e) {
    for (const err_entry &x : err_table)
        if (x.code == e) return &x;
    return NULL;
}

} /* namespace */

bool stream_valid(cudaStream_t s) { return stream_device(s) >= 0; }

int stream_device(cudaStream_t s) {
    if (s == NULL || s == cudaStreamLegacy || s == cudaStreamPerThread) return tls_device;
    std::lock_guard<std::mutex> lock(handle_mu);
    return streams.count(s) != 0 ? s->device : -1;
}

static uintptr_t pend_key(cudaStream_t s, int d) {
    return (s == 0 || s == cudaStreamLegacy || s == cudaStreamPerThread) ? (uintptr_t)d + 1 : (uintptr_t)s;
}

cudaError_t stream_check_current(const char *call, cudaStream_t s) {
    int d = stream_device(s);
    if (d < 0) return cudaErrorInvalidResourceHandle;
    if (d != tls_device) {
        note("%s: stream %p belongs to device %d but device %d is current (cudaSetDevice)", call,
             (void *)s, d, tls_device);
        return cudaErrorInvalidResourceHandle;
    }
    /* work queued on s runs after the work in flight there (stream order) */
    if (strcmp(call, "cudaEventRecord") != 0 && strcmp(call, "cudaStreamWaitEvent") != 0)
        settle(pend_key(s, d), UINT64_MAX, false);
    return cudaSuccess;
}

void stream_add_pending(cudaStream_t s, pending_op op) {
    int d = stream_device(s);
    std::lock_guard<std::mutex> lock(pend_mu);
    pending_queue &q = pend[pend_key(s, d)];
    q.device = d;
    q.queued++;
    q.ops.push_back(op);
}

int device_count(void) { return no_device() ? 0 : configured_devices(); }

int current_device(void) { return tls_device; }

bool handle_on_current(const char *fn, const char *what, const void *h, int device) {
    if (device == tls_device) return true;
    note("%s: %s %p belongs to device %d but device %d is current (cudaSetDevice)", fn, what, h,
         device, tls_device);
    return false;
}

} /* namespace ng_simt */

using namespace ng_simt;

extern "C" {

/* ---- errors ------------------------------------------------------------------------------- */
cudaError_t cudaGetLastError(void) { return take_error(); }
cudaError_t cudaPeekAtLastError(void) { return peek_error(); }

const char *cudaGetErrorString(cudaError_t error) {
    const err_entry *e = find_err(error);
    return e ? e->text : "unrecognized error code";
}

const char *cudaGetErrorName(cudaError_t error) {
    const err_entry *e = find_err(error);
    return e ? e->name : "unrecognized error code";
}

/* ---- device ------------------------------------------------------------------------------- */
cudaError_t cudaGetDeviceCount(int *count) {
    if (count == NULL) return set_error(cudaErrorInvalidValue);
    if (no_device()) {
        *count = 0;
        return set_error(cudaErrorNoDevice);
    }
    *count = device_count();
    return cudaSuccess;
}

/* Selects the calling host thread's device; other threads keep theirs. */
cudaError_t cudaSetDevice(int device) {
    if (no_device()) return set_error(cudaErrorNoDevice);
    if (device < 0 || device >= device_count()) return set_error(cudaErrorInvalidDevice);
    tls_device = device;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device) {
    if (device == NULL) return set_error(cudaErrorInvalidValue);
    if (no_device()) return set_error(cudaErrorNoDevice);
    *device = tls_device;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device) {
    size_t free_b, total_b;
    if (prop == NULL) return set_error(cudaErrorInvalidValue);
    if (no_device()) return set_error(cudaErrorNoDevice);
    if (device < 0 || device >= device_count()) return set_error(cudaErrorInvalidDevice);
    dev_mem_info(device, &free_b, &total_b);
    memset(prop, 0, sizeof *prop);
    /* tests/test_eval.c recognises the emulator by "SIMT emulator" in the name */
    snprintf(prop->name, sizeof prop->name, "natgrad SIMT emulator (CPU), emulated device %d",
             device);
    prop->uuid.bytes[0] = (char)(device + 1);
    prop->pciBusID = device + 1;
    prop->totalGlobalMem = total_b;
    prop->sharedMemPerBlock = SHARED_PER_BLOCK;
    prop->sharedMemPerBlockOptin = SHARED_PER_BLOCK_OPTIN;
    prop->sharedMemPerMultiprocessor = 228 * 1024;
    prop->regsPerBlock = 65536;
    prop->regsPerMultiprocessor = 65536;
    prop->warpSize = 32;
    prop->memPitch = 2147483647;
    prop->maxThreadsPerBlock = MAX_THREADS_PER_BLOCK;
    prop->maxThreadsDim[0] = MAX_BLOCK_X;
    prop->maxThreadsDim[1] = MAX_BLOCK_Y;
    prop->maxThreadsDim[2] = MAX_BLOCK_Z;
    prop->maxGridSize[0] = (int)MAX_GRID_X;
    prop->maxGridSize[1] = MAX_GRID_YZ;
    prop->maxGridSize[2] = MAX_GRID_YZ;
    prop->totalConstMem = 65536;
    prop->major = 9;
    prop->minor = 0;
    prop->multiProcessorCount = (int)sysconf(_SC_NPROCESSORS_ONLN);
    prop->maxThreadsPerMultiProcessor = 2048;
    prop->maxBlocksPerMultiProcessor = 32;
    prop->l2CacheSize = 50 * 1024 * 1024;
    prop->memoryBusWidth = 5120;
    prop->concurrentKernels = 1;
    prop->unifiedAddressing = 1;
    prop->canMapHostMemory = 1;
    prop->asyncEngineCount = 2;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device) {
    if (value == NULL) return set_error(cudaErrorInvalidValue);
    if (no_device()) return set_error(cudaErrorNoDevice);
    if (device < 0 || device >= device_count()) return set_error(cudaErrorInvalidDevice);
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = MAX_THREADS_PER_BLOCK; break;
    case cudaDevAttrMaxBlockDimX: *value = MAX_BLOCK_X; break;
    case cudaDevAttrMaxBlockDimY: *value = MAX_BLOCK_Y; break;
    case cudaDevAttrMaxBlockDimZ: *value = MAX_BLOCK_Z; break;
    case cudaDevAttrMaxGridDimX: *value = (int)MAX_GRID_X; break;
    case cudaDevAttrMaxGridDimY: *value = MAX_GRID_YZ; break;
    case cudaDevAttrMaxGridDimZ: *value = MAX_GRID_YZ; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = SHARED_PER_BLOCK; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = SHARED_PER_BLOCK_OPTIN; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMultiProcessorCount: *value = (int)sysconf(_SC_NPROCESSORS_ONLN); break;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    default: return set_error(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int *version) {
    if (version == NULL) return set_error(cudaErrorInvalidValue);
    *version = CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int *version) {
    if (version == NULL) return set_error(cudaErrorInvalidValue);
    *version = CUDART_VERSION;
    return cudaSuccess;
}

/* Work is synchronous; a synchronisation point is where the canaries of every buffer of the
 * device synchronised (here the current one) are checked. */
cudaError_t cudaDeviceSynchronize(void) {
    if (cudaError_t ce_ = capture_forbid("cudaDeviceSynchronize", NULL)) return set_error(ce_);
    {
        std::vector<uintptr_t> keys;
        {
            std::lock_guard<std::mutex> lock(pend_mu);
            for (auto &kv : pend)
                if (kv.second.device == tls_device) keys.push_back(kv.first);
        }
        for (uintptr_t k : keys) settle(k, UINT64_MAX, false);
    }
    dev_check_canaries(tls_device, "a kernel");
    return cudaSuccess;
}

/* ---- profiler capture (cuda_profiler_api.h) -------------------------------------------------
 * The real calls start and stop a profiler's collection (nsys --capture-range=cudaProfilerApi);
 * both are legal at any time, and a start while collecting (or a stop while not) is a no-op.
 * Here they count, per process, so tests can check that a window opened and closed exactly once:
 * simt_profiler_counts (C linkage, test-only) reports starts, stops and whether collecting. */
static int prof_starts, prof_stops, prof_active;
cudaError_t cudaProfilerStart(void) {
    if (no_device()) return set_error(cudaErrorNoDevice);
    if (!prof_active) prof_starts++;
    prof_active = 1;
    return cudaSuccess;
}
cudaError_t cudaProfilerStop(void) {
    if (no_device()) return set_error(cudaErrorNoDevice);
    if (prof_active) prof_stops++;
    prof_active = 0;
    return cudaSuccess;
}
void simt_profiler_counts(int *starts, int *stops, int *active) {
    if (starts) *starts = prof_starts;
    if (stops) *stops = prof_stops;
    if (active) *active = prof_active;
}

cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value) {
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize)
        return set_error(kernel_set_dyn_smem_limit(func, value));
    if (func == NULL) return set_error(cudaErrorInvalidDeviceFunction);
    return cudaSuccess;
}

/* ---- memory ------------------------------------------------------------------------------- */
cudaError_t cudaMalloc(void **devPtr, size_t size) {
    if (cudaError_t ce_ = capture_forbid("cudaMalloc", NULL)) return set_error(ce_);
    if (devPtr == NULL) return set_error(cudaErrorInvalidValue);
    return set_error(dev_malloc(devPtr, size));
}

cudaError_t cudaFree(void *devPtr) {
    if (cudaError_t ce_ = capture_forbid("cudaFree", NULL)) return set_error(ce_);
    return set_error(dev_free(devPtr));
}

cudaError_t cudaMallocHost(void **ptr, size_t size) {
    if (cudaError_t ce_ = capture_forbid("cudaMallocHost", NULL)) return set_error(ce_);
    if (ptr == NULL) return set_error(cudaErrorInvalidValue);
    return set_error(host_pinned_alloc(ptr, size));
}

cudaError_t cudaFreeHost(void *ptr) {
    if (cudaError_t ce_ = capture_forbid("cudaFreeHost", NULL)) return set_error(ce_);
    return set_error(host_pinned_free(ptr));
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    if (free_bytes == NULL || total_bytes == NULL) return set_error(cudaErrorInvalidValue);
    dev_mem_info(tls_device, free_bytes, total_bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind) {
    if (cudaError_t ce_ = capture_forbid("cudaMemcpy", NULL)) return set_error(ce_);
    return do_copy(dst, src, count, kind);
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind,
                            cudaStream_t stream) {
    cudaError_t e = stream_check_current("cudaMemcpyAsync", stream);
    if (e == cudaSuccess) e = check_copy(dst, src, count, kind);
    if (e == cudaSuccess) e = check_copy_devices(dst, src, count, tls_device);
    if (e != cudaSuccess) return set_error(e);
    if (capturing(stream))
        return set_error(capture_node(stream, "cudaMemcpyAsync", [=]() -> cudaError_t {
            cudaError_t r = check_copy(dst, src, count, kind);
            return r != cudaSuccess ? r : do_copy(dst, src, count, kind);
        }));
    return do_copy(dst, src, count, kind);
}

cudaError_t cudaMemset(void *devPtr, int value, size_t count) {
    if (cudaError_t ce_ = capture_forbid("cudaMemset", NULL)) return set_error(ce_);
    return do_memset(devPtr, value, count);
}

cudaError_t cudaMemsetAsync(void *devPtr, int value, size_t count, cudaStream_t stream) {
    cudaError_t e = stream_check_current("cudaMemsetAsync", stream);
    if (e != cudaSuccess) return set_error(e);
    int d = dev_device(devPtr);
    if (count != 0 && d >= 0 && d != tls_device) {
        note("cudaMemsetAsync: %p is memory of device %d but the stream belongs to device %d",
             devPtr, d, tls_device);
        return set_error(cudaErrorInvalidValue);
    }
    if (capturing(stream))
        return set_error(capture_node(stream, "cudaMemsetAsync",
                                      [=]() -> cudaError_t { return do_memset(devPtr, value, count); }));
    return do_memset(devPtr, value, count);
}

/* ---- streams ------------------------------------------------------------------------------ */
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *pStream, unsigned int flags) {
    if (pStream == NULL || (flags & ~(unsigned int)cudaStreamNonBlocking) != 0u)
        return set_error(cudaErrorInvalidValue);
    cudaStream_t s = new CUstream_st();
    s->flags = flags;
    s->device = tls_device;
    std::lock_guard<std::mutex> lock(handle_mu);
    streams.insert(s);
    *pStream = s;
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *pStream) {
    return cudaStreamCreateWithFlags(pStream, 0);
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    if (stream != NULL && stream_valid(stream)) settle(pend_key(stream, stream_device(stream)), UINT64_MAX, false);
    std::lock_guard<std::mutex> lock(handle_mu);
    if (stream == NULL || streams.erase(stream) == 0)
        return set_error(cudaErrorInvalidResourceHandle);
    delete stream;
    return cudaSuccess;
}

/* Any thread may wait for a stream of any device; the canaries of that device are checked. */
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    int d = stream_device(stream);
    if (d < 0) return set_error(cudaErrorInvalidResourceHandle);
    if (cudaError_t ce_ = capture_forbid("cudaStreamSynchronize", stream)) return set_error(ce_);
    settle(pend_key(stream, d), UINT64_MAX, false);
    dev_check_canaries(d, "a kernel");
    return cudaSuccess;
}

cudaError_t cudaStreamQuery(cudaStream_t stream) {
    if (!stream_valid(stream)) return set_error(cudaErrorInvalidResourceHandle);
    if (cudaError_t ce_ = capture_forbid("cudaStreamQuery", stream)) return set_error(ce_);
    return settle(pend_key(stream, stream_device(stream)), UINT64_MAX, true) ? cudaSuccess : cudaErrorNotReady;
}

/* The stream must belong to the current device; the event may be another device's (that is how
 * devices wait for each other). */
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
    if (!event_valid(event)) return set_error(cudaErrorInvalidResourceHandle);
    cudaError_t e = stream_check_current("cudaStreamWaitEvent", stream);
    if (e == cudaSuccess && capture_wait_event(stream, event)) /* in a capture, or joining one */
        e = capture_node(stream, "cudaStreamWaitEvent", []() -> cudaError_t { return cudaSuccess; });
    else if (e == cudaSuccess && event->pkey) /* the stream's later work sees what the event covers */
        settle(event->pkey, event->pupto, false);
    return set_error(e);
}

/* ---- events ------------------------------------------------------------------------------- */
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags) {
    const unsigned int known =
        cudaEventBlockingSync | cudaEventDisableTiming | cudaEventInterprocess;
    if (event == NULL || (flags & ~known) != 0u) return set_error(cudaErrorInvalidValue);
    cudaEvent_t e = new CUevent_st();
    e->flags = flags;
    e->device = tls_device;
    e->recorded = false;
    e->pkey = 0;
    e->pupto = 0;
    std::lock_guard<std::mutex> lock(handle_mu);
    events.insert(e);
    *event = e;
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *event) { return cudaEventCreateWithFlags(event, 0); }

/* The stream must belong to the current device, and the event to the stream's device. */
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
    if (!event_valid(event)) return set_error(cudaErrorInvalidResourceHandle);
    cudaError_t e = stream_check_current("cudaEventRecord", stream);
    if (e != cudaSuccess) return set_error(e);
    if (event->device != tls_device) {
        note("cudaEventRecord: event %p belongs to device %d but stream %p to device %d",
             (void *)event, event->device, (void *)stream, tls_device);
        return set_error(cudaErrorInvalidResourceHandle);
    }
    if (capturing(stream)) {
        e = capture_node(stream, "cudaEventRecord", [event]() -> cudaError_t {
            if (!event_valid(event)) return cudaErrorInvalidResourceHandle;
            event->recorded = true;
            event->ms = now_ms();
            return cudaSuccess;
        });
        if (e == cudaSuccess) capture_event_recorded(stream, event);
        return set_error(e);
    }
    capture_event_forget(event);
    event->recorded = true;
    event->ms = now_ms();
    {
        std::lock_guard<std::mutex> lock(pend_mu);
        auto it = pend.find(pend_key(stream, tls_device));
        event->pkey = it == pend.end() || it->second.done == it->second.queued ? 0 : it->first;
        event->pupto = it == pend.end() ? 0 : it->second.queued;
    }
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
    if (!event_valid(event)) return set_error(cudaErrorInvalidResourceHandle);
    if (cudaError_t ce_ = capture_forbid("cudaEventSynchronize", NULL)) return set_error(ce_);
    if (event->pkey) settle(event->pkey, event->pupto, false);
    return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
    if (!event_valid(event)) return set_error(cudaErrorInvalidResourceHandle);
    if (cudaError_t ce_ = capture_forbid("cudaEventQuery", NULL)) return set_error(ce_);
    return !event->pkey || settle(event->pkey, event->pupto, true) ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
    if (ms == NULL) return set_error(cudaErrorInvalidValue);
    if (!event_valid(start) || !event_valid(end) || !start->recorded || !end->recorded ||
        ((start->flags | end->flags) & cudaEventDisableTiming) != 0u)
        return set_error(cudaErrorInvalidResourceHandle);
    if (start->device != end->device) {
        note("cudaEventElapsedTime: start event %p belongs to device %d, end event %p to device %d",
             (void *)start, start->device, (void *)end, end->device);
        return set_error(cudaErrorInvalidResourceHandle);
    }
    *ms = (float)(end->ms - start->ms);
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
    std::lock_guard<std::mutex> lock(handle_mu);
    if (event == NULL || events.erase(event) == 0) return set_error(cudaErrorInvalidResourceHandle);
    delete event;
    return cudaSuccess;
}

} /* extern "C" */
