/* simt_graph.cpp: stream capture and CUDA graphs in the SIMT emulator (test-only).
 *
 * cudaStreamBeginCapture puts a created stream in capture mode. While it captures, the work queued
 * on it is recorded, not run: kernel launches (with their arguments converted and copied by value at
 * the launch, as a real launch captures them), cudaMemcpyAsync / cudaMemsetAsync (the bytes are
 * read at replay, as a graph's memcpy node reads its source when it runs), cudaEventRecord and
 * cudaStreamWaitEvent, and the cuBLAS computing calls (shim_cublas.cpp: host-mode scalars alpha and
 * beta are copied at the call, device-mode ones read at replay, the handle's pointer and math modes
 * frozen). cudaStreamEndCapture returns the recorded graph; cudaGraphInstantiate copies it into an
 * executable graph; cudaGraphLaunch replays its nodes in order on the current device (work is
 * synchronous here, so the graph has finished when the call returns).
 *
 * CUDA's rules, as the emulator applies them (the three capture modes; natgrad captures ThreadLocal):
 *   - calls that would synchronise with, or allocate under, a capture (cudaMalloc, cudaFree,
 *     cudaMallocHost, cudaFreeHost, cudaMemcpy, cudaMemset, cudaDeviceSynchronize,
 *     cudaStreamSynchronize, cudaStreamQuery, cudaEventSynchronize, cudaEventQuery) made while a
 *     capture is active on the device return cudaErrorStreamCaptureUnsupported and invalidate it
 *     when the calling thread is prohibited from them: its interaction mode
 *     (cudaThreadExchangeStreamCaptureMode, Global by default) is Global and it began a capture not
 *     Relaxed or another thread began one Global; ThreadLocal and it began one not Relaxed; never when
 *     Relaxed. Synchronising or querying a capturing stream itself invalidates its capture in any mode;
 *     so do cuBLAS reductions with a host result (CUBLAS_STATUS_NOT_SUPPORTED here), cuSOLVER and
 *     cuRAND computing calls on a capturing stream (not captured by the emulator: natgrad's
 *     capturable steps make none);
 *   - work queued on an invalidated capture returns cudaErrorStreamCaptureInvalidated, and
 *     cudaStreamEndCapture then returns it with a NULL graph (the stream leaves capture mode);
 *   - cudaStreamBeginCapture of the legacy / per-thread default stream is
 *     cudaErrorStreamCaptureUnsupported, of a stream already capturing cudaErrorIllegalState;
 *     cudaStreamEndCapture of a stream not capturing is cudaErrorIllegalState, from another thread
 *     than the one that began it cudaErrorStreamCaptureWrongThread (unless begun Relaxed);
 *   - a launch with a bad configuration during capture returns its error and invalidates the capture.
 * Every refusal prints a "simt:" line naming the call. cudaGraphLaunch returns the first error of a
 * replayed node (a "simt:" line names it) and stops there.
 * Fork / join through events: a stream that waits (cudaStreamWaitEvent) for an event recorded in an
 * active capture joins it and records its work into the same graph, in issue order; ending the
 * origin's capture ends the joined streams' too, and a joined stream with work after the last event
 * of it the capture waited for is cudaErrorStreamCaptureUnjoined (ending on a joined stream:
 * cudaErrorStreamCaptureUnmatched).
 * NCCL collectives issued on a capturing stream are recorded too (shim_nccl.cpp): a replayed one
 * starts its non-blocking MPI call and stays in flight on the launch stream (replay_stream) until the
 * next node runs, which waits for it; after the last node it is in flight like an eager collective
 * (a query or synchronize of the launch stream finishes it). */
#include "simt_internal.h"

#include <cuda_runtime_api.h>

#include <stdio.h>
#include <string.h>

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

struct CUgraph_st {
    std::vector<ng_simt::graph_node> nodes;
};
struct CUgraphExec_st {
    std::vector<ng_simt::graph_node> nodes;
    int device;
};

namespace ng_simt {
namespace {

struct capture_state {
    std::thread::id owner;
    cudaStreamCaptureMode mode; /* the mode cudaStreamBeginCapture was given */
    int device;
    bool invalidated;
    const char *why; /* the call that invalidated it */
    CUgraph_st *graph;
    cudaStream_t origin;                  /* the stream cudaStreamBeginCapture was called on */
    std::map<cudaStream_t, size_t> last;  /* per stream in the capture: nodes recorded on it so far */
    std::map<cudaStream_t, size_t> joined; /* per joined stream: its nodes the origin's side has waited for */
};
typedef std::shared_ptr<capture_state> capture_ptr;
/* an event recorded during a capture: on which stream, after how many of its nodes */
struct captured_record {
    capture_ptr cap;
    cudaStream_t stream;
    size_t upto;
};

std::mutex gmu;
/* streams in capture mode: the origin and the streams that joined it share one state */
std::map<cudaStream_t, capture_ptr> captures;
std::map<cudaEvent_t, captured_record> captured_events;
std::set<cudaGraph_t> graphs;
std::set<cudaGraphExec_t> execs;
/* the calling thread's capture interaction mode (cudaThreadExchangeStreamCaptureMode) */
thread_local cudaStreamCaptureMode tls_mode = cudaStreamCaptureModeGlobal;
unsigned long long n_graph_launches, n_nodes_replayed;

bool is_default_stream(cudaStream_t s) {
    return s == NULL || s == cudaStreamLegacy || s == cudaStreamPerThread;
}

} /* namespace */

bool capturing(cudaStream_t s) {
    if (is_default_stream(s)) return false;
    std::lock_guard<std::mutex> lock(gmu);
    return captures.count(s) != 0;
}

cudaError_t capture_node(cudaStream_t s, const char *what, node_fn fn) {
    std::lock_guard<std::mutex> lock(gmu);
    auto it = captures.find(s);
    if (it == captures.end()) return cudaErrorIllegalState;
    capture_state &c = *it->second;
    if (c.invalidated) {
        note("%s on stream %p: the capture was invalidated by %s", what, (void *)s, c.why);
        return cudaErrorStreamCaptureInvalidated;
    }
    graph_node n;
    n.what = what;
    n.fn = std::move(fn);
    c.graph->nodes.push_back(std::move(n));
    c.last[s]++;
    return cudaSuccess;
}

/* CUDA's rule (cudaStreamBeginCapture / cudaThreadExchangeStreamCaptureMode): a potentially unsafe
 * call is prohibited for a thread whose interaction mode is Global when it has an ongoing capture not
 * begun Relaxed, or another thread has one begun Global; ThreadLocal: only its own non-Relaxed
 * captures count; Relaxed: none. A call on a capturing stream itself (synchronising or querying it)
 * conflicts with that capture in every mode. The conflicting captures are invalidated. */
cudaError_t capture_forbid(const char *call, cudaStream_t s) {
    std::lock_guard<std::mutex> lock(gmu);
    int dev = current_device();
    std::thread::id me = std::this_thread::get_id();
    bool hit = false, own = s != NULL && !is_default_stream(s);
    const char *mode = "";
    for (auto &c : captures) {
        capture_state &k = *c.second;
        if (own && c.first != s) continue;
        if (k.device != dev) continue;
        if (!own) {
            bool local = k.owner == me && k.mode != cudaStreamCaptureModeRelaxed;
            bool other = k.owner != me && k.mode == cudaStreamCaptureModeGlobal;
            if (tls_mode == cudaStreamCaptureModeRelaxed) continue;
            if (!local && !(other && tls_mode == cudaStreamCaptureModeGlobal)) continue;
            mode = local ? "begun by this thread" : "begun by another thread with cudaStreamCaptureModeGlobal";
        } else {
            mode = "on that stream";
        }
        if (!k.invalidated) {
            k.invalidated = true;
            k.why = call;
        }
        hit = true;
    }
    if (!hit) return cudaSuccess;
    note("%s: not permitted while a stream capture is active (%s); the capture is invalidated", call, mode);
    return cudaErrorStreamCaptureUnsupported;
}

namespace {
thread_local cudaStream_t tls_replay_stream;
}
cudaStream_t replay_stream(void) { return tls_replay_stream; }

void capture_invalidate(cudaStream_t s, const char *why) {
    std::lock_guard<std::mutex> lock(gmu);
    auto it = captures.find(s);
    if (it != captures.end() && !it->second->invalidated) {
        it->second->invalidated = true;
        it->second->why = why;
    }
}

void capture_event_recorded(cudaStream_t s, cudaEvent_t e) {
    std::lock_guard<std::mutex> lock(gmu);
    auto it = captures.find(s);
    if (it == captures.end()) return;
    captured_record r;
    r.cap = it->second;
    r.stream = s;
    r.upto = it->second->last[s];
    captured_events[e] = r;
}

void capture_event_forget(cudaEvent_t e) {
    std::lock_guard<std::mutex> lock(gmu);
    captured_events.erase(e);
}

bool capture_wait_event(cudaStream_t s, cudaEvent_t e) {
    std::lock_guard<std::mutex> lock(gmu);
    auto ev = captured_events.find(e);
    capture_ptr rec = ev != captured_events.end() ? ev->second.cap : capture_ptr();
    auto it = is_default_stream(s) ? captures.end() : captures.find(s);
    if (rec && (rec->graph == NULL || rec->invalidated)) rec.reset(); /* that capture ended */
    if (it == captures.end()) {
        /* a stream outside any capture waits for an event of an active one: it joins that capture */
        if (!rec || is_default_stream(s) || stream_device(s) != rec->device) return false;
        captures[s] = rec;
        rec->last[s] = 0;
        rec->joined[s] = 0;
        it = captures.find(s);
    }
    /* the waiting stream now follows the recording stream's nodes up to the record */
    if (rec && rec == it->second && ev->second.stream != s) {
        cudaStream_t from = ev->second.stream;
        if (from != rec->origin) {
            size_t &j = rec->joined[from];
            if (ev->second.upto > j) j = ev->second.upto;
        }
    }
    return true;
}

} /* namespace ng_simt */

using namespace ng_simt;

extern "C" {

/* test-only: graph launches and replayed nodes so far (C linkage) */
void simt_graph_counts(unsigned long long *launches, unsigned long long *nodes) {
    std::lock_guard<std::mutex> lock(gmu);
    if (launches) *launches = n_graph_launches;
    if (nodes) *nodes = n_nodes_replayed;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode) {
    if (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal &&
        mode != cudaStreamCaptureModeRelaxed)
        return set_error(cudaErrorInvalidValue);
    if (is_default_stream(stream)) {
        note("cudaStreamBeginCapture: the default stream cannot be captured");
        return set_error(cudaErrorStreamCaptureUnsupported);
    }
    cudaError_t e = stream_check_current("cudaStreamBeginCapture", stream);
    if (e != cudaSuccess) return set_error(e);
    std::lock_guard<std::mutex> lock(gmu);
    if (captures.count(stream)) {
        note("cudaStreamBeginCapture: stream %p is already capturing", (void *)stream);
        return set_error(cudaErrorIllegalState);
    }
    capture_ptr c = std::make_shared<capture_state>();
    c->owner = std::this_thread::get_id();
    c->mode = mode;
    c->device = current_device();
    c->invalidated = false;
    c->why = NULL;
    c->graph = new CUgraph_st();
    c->origin = stream;
    c->last[stream] = 0;
    captures[stream] = c;
    return cudaSuccess;
}

cudaError_t cudaThreadExchangeStreamCaptureMode(enum cudaStreamCaptureMode *mode) {
    if (mode == NULL || (*mode != cudaStreamCaptureModeGlobal && *mode != cudaStreamCaptureModeThreadLocal &&
                         *mode != cudaStreamCaptureModeRelaxed))
        return set_error(cudaErrorInvalidValue);
    cudaStreamCaptureMode old = tls_mode;
    tls_mode = *mode;
    *mode = old;
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *pGraph) {
    if (pGraph == NULL) return set_error(cudaErrorInvalidValue);
    *pGraph = NULL;
    std::lock_guard<std::mutex> lock(gmu);
    auto it = captures.find(stream);
    if (it == captures.end()) {
        note("cudaStreamEndCapture: stream %p is not capturing", (void *)stream);
        return set_error(cudaErrorIllegalState);
    }
    if (it->second->owner != std::this_thread::get_id() && it->second->mode != cudaStreamCaptureModeRelaxed) {
        note("cudaStreamEndCapture: the capture of stream %p was begun by another thread", (void *)stream);
        return set_error(cudaErrorStreamCaptureWrongThread);
    }
    capture_ptr c = it->second;
    if (c->origin != stream) {
        note("cudaStreamEndCapture: stream %p joined the capture of stream %p; end it there", (void *)stream,
             (void *)c->origin);
        return set_error(cudaErrorStreamCaptureUnmatched);
    }
    /* every stream that joined leaves capture mode with the origin */
    const char *unjoined = NULL;
    cudaStream_t which = NULL;
    for (auto j = c->joined.begin(); j != c->joined.end(); ++j)
        if (c->last[j->first] > j->second && !unjoined) {
            unjoined = "work queued on it after the last event the capturing stream waited for";
            which = j->first;
        }
    for (auto i = captures.begin(); i != captures.end();) {
        if (i->second == c) i = captures.erase(i);
        else ++i;
    }
    for (auto i = captured_events.begin(); i != captured_events.end();) {
        if (i->second.cap == c) i = captured_events.erase(i);
        else ++i;
    }
    CUgraph_st *g = c->graph;
    c->graph = NULL;
    if (c->invalidated) {
        delete g;
        note("cudaStreamEndCapture: the capture of stream %p was invalidated by %s", (void *)stream, c->why);
        return set_error(cudaErrorStreamCaptureInvalidated);
    }
    if (unjoined) {
        delete g;
        note("cudaStreamEndCapture: stream %p joined the capture of stream %p but was not joined back (%s)",
             (void *)which, (void *)stream, unjoined);
        return set_error(cudaErrorStreamCaptureUnjoined);
    }
    graphs.insert(g);
    *pGraph = g;
    return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, enum cudaStreamCaptureStatus *pCaptureStatus) {
    if (pCaptureStatus == NULL) return set_error(cudaErrorInvalidValue);
    if (!stream_valid(stream)) return set_error(cudaErrorInvalidResourceHandle);
    std::lock_guard<std::mutex> lock(gmu);
    auto it = is_default_stream(stream) ? captures.end() : captures.find(stream);
    *pCaptureStatus = it == captures.end()       ? cudaStreamCaptureStatusNone
                      : it->second->invalidated ? cudaStreamCaptureStatusInvalidated
                                               : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *pGraphExec, cudaGraph_t graph,
                                 unsigned long long flags) {
    if (pGraphExec == NULL || flags != 0) return set_error(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> lock(gmu);
    if (graph == NULL || graphs.count(graph) == 0) return set_error(cudaErrorInvalidValue);
    cudaGraphExec_t x = new CUgraphExec_st();
    x->nodes = graph->nodes;
    x->device = current_device();
    execs.insert(x);
    *pGraphExec = x;
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
    std::lock_guard<std::mutex> lock(gmu);
    if (graph == NULL || graphs.erase(graph) == 0) return set_error(cudaErrorInvalidValue);
    delete graph;
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t graphExec) {
    std::lock_guard<std::mutex> lock(gmu);
    if (graphExec == NULL || execs.erase(graphExec) == 0) return set_error(cudaErrorInvalidValue);
    delete graphExec;
    return cudaSuccess;
}

/* Replay the nodes in order on the calling thread (the current device must be the graph's). */
cudaError_t cudaGraphLaunch(cudaGraphExec_t graphExec, cudaStream_t stream) {
    std::vector<graph_node> nodes;
    {
        std::lock_guard<std::mutex> lock(gmu);
        if (graphExec == NULL || execs.count(graphExec) == 0) return set_error(cudaErrorInvalidValue);
        if (!is_default_stream(stream) && captures.count(stream)) {
            note("cudaGraphLaunch: launching a graph into a capturing stream is not emulated");
            return set_error(cudaErrorStreamCaptureUnsupported);
        }
        nodes = graphExec->nodes;
        if (graphExec->device != current_device()) {
            note("cudaGraphLaunch: the graph was instantiated on device %d but device %d is current",
                 graphExec->device, current_device());
            return set_error(cudaErrorInvalidResourceHandle);
        }
    }
    cudaError_t e = stream_check_current("cudaGraphLaunch", stream);
    if (e != cudaSuccess) return set_error(e);
    cudaError_t before = take_error(); /* a replayed node's error must not be confused with it */
    for (size_t i = 0; i < nodes.size(); i++) {
        /* the previous nodes' work in flight (a collective) finishes before this node runs */
        if (i > 0) stream_check_current("cudaGraphLaunch", stream);
        tls_replay_stream = stream;
        e = nodes[i].fn();
        tls_replay_stream = NULL;
        if (e == cudaSuccess) e = take_error();
        if (e != cudaSuccess) {
            note("cudaGraphLaunch: node %zu of %zu (%s) failed: %s", i, nodes.size(), nodes[i].what,
                 cudaGetErrorName(e));
            return set_error(e);
        }
    }
    set_error(before);
    std::lock_guard<std::mutex> lock(gmu);
    n_graph_launches++;
    n_nodes_replayed += nodes.size();
    return cudaSuccess;
}

} /* extern "C" */
