/* simt_internal.h: what the SIMT emulator's runtime (simt_runtime.cpp, simt_memory.cpp) shares with
 * its library shims (shim_*.cpp). Test-only; never included by project code.
 *
 * Emulated device memory has two views of the same pages (a memfd mapped twice):
 *   - the host view is what cudaMalloc returns; it is PROT_NONE, so a host dereference faults;
 *   - the device view is what kernels and shims touch: launches translate every pointer argument to
 *     it, shims translate their operands with dv(). It has a PROT_NONE guard page before and after,
 *     and the buffer ends at the end of its last page (to the 16..256-byte alignment it keeps), so
 *     running off the end faults at once; the other bytes of those pages are 0xFF canaries, checked
 *     after launches, at synchronisation and at cudaFree.
 * New buffers are filled with 0xFF bytes (NaN as float or double).
 *
 * Several devices (NG_SIMT_DEVICES, default 2): each host thread has a current device
 * (cudaSetDevice, default 0). Allocations, streams, events and library handles belong to the device
 * that was current when they were made; work queued on a stream, and library calls, must come
 * from the thread whose current device owns the stream or handle, on memory of that device. */
#ifndef NG_SIMT_INTERNAL_H
#define NG_SIMT_INTERNAL_H

#include <cuda_runtime_api.h>

#include <stddef.h>
#include <stdint.h>

#include <functional>

namespace ng_simt {

/* ---- errors ----------------------------------------------------------------------------- */
/* Record err as the error cudaGetLastError returns next (cudaSuccess is ignored); returns err. */
cudaError_t set_error(cudaError_t err);
cudaError_t take_error(void); /* cudaGetLastError */
cudaError_t peek_error(void); /* cudaPeekAtLastError */
/* Print "simt: <message>" to stderr. */
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print "simt: <message>" and abort: a memory error a GPU would report as an illegal address. */
[[noreturn]] void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- devices ----------------------------------------------------------------------------- */
enum { MAX_DEVICES = 8 };
/* Emulated devices: NG_SIMT_DEVICES (1..MAX_DEVICES, default 2; any other value aborts with a
 * report), or 0 under NG_SIMT_NO_DEVICE=1. */
int device_count(void);
/* The calling host thread's current device (cudaSetDevice; 0 until set). */
int current_device(void);
/* For library calls (cuBLAS, cuSOLVER, cuRAND): true when `device`, the device the handle was
 * created on, is the current one; otherwise print "simt: <fn>: <what> <h> belongs to device X but
 * device Y is current" and return false. */
bool handle_on_current(const char *fn, const char *what, const void *h, int device);
/* For library calls: true unless p is device memory of another device than `device` (the
 * handle's); then print "simt: <fn>: <name> (<p>) is memory of device X but the <what> belongs to
 * device Y" and return false. Host memory and non-pointers pass (other checks reject them). */
bool dev_on(const char *fn, const char *name, const void *p, int device, const char *what);

/* ---- device memory ------------------------------------------------------------------------ */
/* Allocations belong to the calling thread's current device, whose budget (NG_SIMT_DEVICE_MEM,
 * per device) they use. */
cudaError_t dev_malloc(void **ptr, size_t size);
cudaError_t dev_free(void *ptr);
/* True when [p, p + bytes) lies inside one live device allocation (bytes may be 0). */
bool dev_range(const void *p, size_t bytes);
/* True when p points into (or one past the end of) a live device allocation. */
bool dev_pointer(const void *p);
/* Device that owns the live allocation holding p (or ending at p); -1 when p is not device
 * memory. */
int dev_device(const void *p);
/* Pinned host memory (cudaMallocHost): host-accessible and valid as a kernel argument. */
cudaError_t host_pinned_alloc(void **ptr, size_t size);
cudaError_t host_pinned_free(void *ptr);
bool host_pinned(const void *p);
/* Free and total bytes of one device's budget. */
void dev_mem_info(int device, size_t *free_bytes, size_t *total_bytes);
/* Check the canaries of every live allocation of `device` (-1: of every device); abort naming
 * `who` when one was overwritten. */
void dev_check_canaries(int device, const char *who);
/* Describe an address for a fault report (which allocation, guard page or freed block). */
void dev_describe(const void *addr, char *buf, size_t len);

/* Device-view address of p (a device pointer: inside, or one past the end of, a live allocation),
 * or NULL when p is not device memory. Shims use dv() on every operand after validating it. */
void *dev_view(const void *p);
template <class T> T *dv(T *p) { return static_cast<T *>(dev_view(p)); }
/* Canary check of the allocation holding p (device pointer), or of all live ones. */
void dev_check_canaries_of(const void *p, const char *who);
/* Called from the fault handler during a launch: when addr lies in the host view of a live
 * allocation (a kernel followed a device pointer that was not translated, e.g. one stored in a
 * struct or in device memory), open that view and return true so the access is retried;
 * dev_fault_close closes what was opened this way and checks those allocations' canaries. */
bool dev_fault_open(const void *addr);
void dev_fault_close(const char *who);

/* ---- streams ---------------------------------------------------------------------------- */
/* True for 0, cudaStreamLegacy, cudaStreamPerThread and streams from cudaStreamCreate*. */
bool stream_valid(cudaStream_t s);
/* The device a stream belongs to: the current device for 0, cudaStreamLegacy and
 * cudaStreamPerThread (its default stream), the device current at creation for the others;
 * -1 for an invalid stream. */
int stream_device(cudaStream_t s);
/* For calls that queue work on a stream (launches, async copies and memsets, event records and
 * waits): cudaSuccess when s is valid and belongs to the current device, else
 * cudaErrorInvalidResourceHandle; a stream of another device also prints "simt: <call>: stream
 * <s> belongs to device X but device Y is current". Sets no error (callers do). */
cudaError_t stream_check_current(const char *call, cudaStream_t s);
/* Work in flight on a stream (the NCCL shim's collectives, started as non-blocking MPI calls):
 * test() returns true once it has completed (and finished it), wait() blocks until it has. Ops of
 * one stream complete in order. A stream query tests them (cudaErrorNotReady while one runs); an
 * event records how many were queued and its query / synchronize, and a cudaStreamWaitEvent on it,
 * test or finish those; stream and device synchronize, stream destroy and every call that queues
 * work on the stream through stream_check_current (launches, async copies and memsets, captures,
 * graph launches; not event records or waits) finish them first. Nothing else waits for them: a
 * synchronous copy or a kernel on another stream sees the buffer as MPI has left it so far, as on
 * a GPU where a collective on one stream runs while another stream reads. */
struct pending_op {
    bool (*test)(void *ctx);
    void (*wait)(void *ctx);
    void *ctx;
};
void stream_add_pending(cudaStream_t s, pending_op op);

/* ---- stream capture and graphs (simt_graph.cpp) ------------------------------------------ */
/* A recorded operation: replayed by cudaGraphLaunch; returns its error (cudaSuccess when it ran). */
typedef std::function<cudaError_t()> node_fn;
struct graph_node {
    const char *what; /* for messages: the kernel's name or the call */
    node_fn fn;
};
/* True while stream s (a created stream) is in capture mode (active or invalidated). */
bool capturing(cudaStream_t s);
/* Record fn as the next node of s's capture: cudaSuccess, or cudaErrorStreamCaptureInvalidated
 * (with a note) when the capture was invalidated. */
cudaError_t capture_node(cudaStream_t s, const char *what, node_fn fn);
/* For a call not permitted during capture: when a capture is active on the current device (on
 * stream s only, when s is a created stream), invalidate it, note it and return
 * cudaErrorStreamCaptureUnsupported; otherwise cudaSuccess. */
cudaError_t capture_forbid(const char *call, cudaStream_t s);
/* Invalidate s's capture (if any), naming the reason. */
void capture_invalidate(cudaStream_t s, const char *why);
/* Cross-stream capture (CUDA's fork / join through events): cudaEventRecord on a capturing stream
 * calls capture_event_recorded; an eager record calls capture_event_forget. cudaStreamWaitEvent calls
 * capture_wait_event first: true when the wait belongs to a capture (s captures, or s joins the
 * active capture the event was recorded in, and then captures too), so the wait is recorded as a node;
 * it also notes how far the waiting side has joined the recording stream. cudaStreamEndCapture ends
 * the joined streams' capture mode with the origin's and refuses (cudaErrorStreamCaptureUnjoined) a
 * joined stream with nodes after the last event of it that a wait joined back. */
void capture_event_recorded(cudaStream_t s, cudaEvent_t e);
void capture_event_forget(cudaEvent_t e);
bool capture_wait_event(cudaStream_t s, cudaEvent_t e);
/* During cudaGraphLaunch: the stream the graph was launched into (a replayed node that leaves work
 * in flight, the NCCL shim's collectives, queues it there with stream_add_pending; the launch
 * finishes it before the next node runs, as stream order does on a GPU). Outside a replay: NULL. */
cudaStream_t replay_stream(void);

/* Limits of the emulated device (an sm_90-class part). */
enum {
    MAX_THREADS_PER_BLOCK = 1024,
    MAX_BLOCK_X = 1024,
    MAX_BLOCK_Y = 1024,
    MAX_BLOCK_Z = 64,
    MAX_GRID_YZ = 65535,
    SHARED_PER_BLOCK = 48 * 1024,       /* default static + dynamic limit */
    SHARED_PER_BLOCK_OPTIN = 227 * 1024 /* with cudaFuncAttributeMaxDynamicSharedMemorySize */
};
static const unsigned int MAX_GRID_X = 2147483647u;

/* Dynamic shared memory limit for a kernel (48 KiB unless raised with cudaFuncSetAttribute). */
size_t kernel_dyn_smem_limit(const void *func);
cudaError_t kernel_set_dyn_smem_limit(const void *func, int bytes);

} /* namespace ng_simt */

#endif
