/* test_simt_graph.cpp: the emulator's stream capture and CUDA graphs (simt_graph.cpp).
 * A captured kernel, async copy, memset and cuBLAS call do not run until the graph is launched;
 * each launch replays them in order with the arguments of the capture (a kernel's scalar and a
 * host-mode cuBLAS alpha by value, device memory read at replay); the refusals follow CUDA's rules
 * (default stream, double begin, end without begin, end from another thread, synchronous and
 * allocating calls during capture, host-result reductions) with the documented error codes, and a
 * capture invalidated by them ends with cudaErrorStreamCaptureInvalidated and a NULL graph. Fork /
 * join through events: a stream joins a capture by waiting for an event recorded in it, and must be
 * joined back before the capture ends (cudaErrorStreamCaptureUnjoined). The capture modes (CUDA's
 * documented rule): an allocation in another thread invalidates a Global capture but neither a
 * ThreadLocal nor a Relaxed one; one in the capturing thread invalidates Global and ThreadLocal
 * captures, not a Relaxed one; a thread that set its interaction mode to ThreadLocal or Relaxed
 * (cudaThreadExchangeStreamCaptureMode) may allocate during another thread's Global capture. */
#include "ng_cuda.cuh"

#include <cublas_v2.h>
#include <math.h>
#include <string.h>

#include <thread>
#include <vector>

#include "harness.h"

extern "C" void simt_graph_counts(unsigned long long *launches, unsigned long long *nodes);

#define CHECK_CUDA(call, want)                                                                     \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        NGT_CHECK(e_ == (want), "%s -> %s, want %s", #call, cudaGetErrorName(e_),                  \
                  cudaGetErrorName(want));                                                         \
    } while (0)

/* y[i] = a * y[i] + b */
static __global__ void affine_kernel(float *y, float a, float b, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * y[i] + b;
}

static int test_capture_and_replay(void) {
    const int n = 100;
    cudaStream_t s;
    float *y = NULL, *x = NULL, *pin = NULL;
    cublasHandle_t h;
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    cudaStreamCaptureStatus cs;
    unsigned long long l0, n0, l1, n1;
    std::vector<float> host(n);
    CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    CHECK_CUDA(cudaMalloc((void **)&y, n * sizeof(float)), cudaSuccess);
    CHECK_CUDA(cudaMalloc((void **)&x, n * sizeof(float)), cudaSuccess);
    CHECK_CUDA(cudaMallocHost((void **)&pin, n * sizeof(float)), cudaSuccess);
    NGT_CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS && cublasSetStream(h, s) == CUBLAS_STATUS_SUCCESS, "cublas");
    for (int i = 0; i < n; i++) pin[i] = (float)i;
    CHECK_CUDA(cudaMemset(y, 0, n * sizeof(float)), cudaSuccess);
    simt_graph_counts(&l0, &n0);

    CHECK_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
    CHECK_CUDA(cudaStreamIsCapturing(s, &cs), cudaSuccess);
    NGT_CHECK(cs == cudaStreamCaptureStatusActive, "capture status %d", (int)cs);
    /* x <- pinned host data (read at replay), y <- 2 y + 1, y += alpha x with alpha = 3 (by value) */
    CHECK_CUDA(cudaMemcpyAsync(x, pin, n * sizeof(float), cudaMemcpyHostToDevice, s), cudaSuccess);
    NG_LAUNCH(affine_kernel, 1, 128, 0, s)(y, 2.0f, 1.0f, n);
    CHECK_CUDA(cudaGetLastError(), cudaSuccess);
    {
        float alpha = 3.0f;
        NGT_CHECK(cublasSaxpy(h, n, &alpha, x, 1, y, 1) == CUBLAS_STATUS_SUCCESS, "saxpy captured");
        alpha = 100.0f; /* too late: captured by value */
    }
    CHECK_CUDA(cudaStreamEndCapture(s, &g), cudaSuccess);
    NGT_CHECK(g != NULL, "no graph");
    host.assign(n, -1.0f);
    CHECK_CUDA(cudaMemcpy(host.data(), y, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    NGT_CHECK(host[5] == 0.0f, "captured work ran at capture time: y[5] = %g", (double)host[5]);
    CHECK_CUDA(cudaGraphInstantiate(&ge, g, 0), cudaSuccess);
    CHECK_CUDA(cudaGraphDestroy(g), cudaSuccess); /* the executable graph keeps its copy */
    CHECK_CUDA(cudaGraphLaunch(ge, s), cudaSuccess);
    for (int i = 0; i < n; i++) pin[i] = (float)(2 * i); /* the next replay copies these */
    CHECK_CUDA(cudaGraphLaunch(ge, s), cudaSuccess);
    CHECK_CUDA(cudaStreamSynchronize(s), cudaSuccess);
    CHECK_CUDA(cudaMemcpy(host.data(), y, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    for (int i = 0; i < n; i++) {
        /* first: y = 2*0 + 1 + 3 i; second: y = 2 y + 1 + 3 (2 i) */
        float want = 2.0f * (1.0f + 3.0f * (float)i) + 1.0f + 3.0f * (float)(2 * i);
        NGT_CHECK(host[i] == want, "y[%d] = %g after two replays, want %g", i, (double)host[i], (double)want);
    }
    simt_graph_counts(&l1, &n1);
    NGT_CHECK(l1 - l0 == 2 && n1 - n0 == 6, "%llu graph launches, %llu nodes replayed (want 2, 6)", l1 - l0, n1 - n0);
    CHECK_CUDA(cudaGraphExecDestroy(ge), cudaSuccess);
    CHECK_CUDA(cudaGraphExecDestroy(ge), cudaErrorInvalidValue);
    cublasDestroy(h);
    CHECK_CUDA(cudaFree(x), cudaSuccess);
    CHECK_CUDA(cudaFree(y), cudaSuccess);
    CHECK_CUDA(cudaFreeHost(pin), cudaSuccess);
    CHECK_CUDA(cudaStreamDestroy(s), cudaSuccess);
    return NGT_PASS;
}

/* begin, an illegal call (which must fail with `want`), end: invalidated, NULL graph */
template <class F>
static int invalidated_by(cudaStream_t s, const char *what, cudaError_t want, F call,
                          cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal) {
    cudaGraph_t g = (cudaGraph_t)1;
    cudaStreamCaptureStatus cs;
    CHECK_CUDA(cudaStreamBeginCapture(s, mode), cudaSuccess);
    cudaError_t e = call();
    CHECK_CUDA(cudaStreamIsCapturing(s, &cs), cudaSuccess);
    cudaError_t end = cudaStreamEndCapture(s, &g);
    NGT_CHECK(e == want, "%s during capture -> %s, want %s", what, cudaGetErrorName(e), cudaGetErrorName(want));
    NGT_CHECK(cs == cudaStreamCaptureStatusInvalidated, "%s: capture status %d, want invalidated", what, (int)cs);
    NGT_CHECK(end == cudaErrorStreamCaptureInvalidated && g == NULL, "%s: end -> %s, graph %p", what,
              cudaGetErrorName(end), (void *)g);
    (void)cudaGetLastError();
    return NGT_PASS;
}

static int test_capture_rules(void) {
    cudaStream_t s;
    cudaGraph_t g = NULL;
    float *y = NULL, r = 0.0f, host[4];
    cublasHandle_t h;
    CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    CHECK_CUDA(cudaMalloc((void **)&y, 4 * sizeof(float)), cudaSuccess);
    CHECK_CUDA(cudaMemset(y, 0, 4 * sizeof(float)), cudaSuccess);
    NGT_CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS && cublasSetStream(h, s) == CUBLAS_STATUS_SUCCESS, "cublas");
    /* state errors */
    CHECK_CUDA(cudaStreamBeginCapture(0, cudaStreamCaptureModeGlobal), cudaErrorStreamCaptureUnsupported);
    CHECK_CUDA(cudaStreamEndCapture(s, &g), cudaErrorIllegalState);
    CHECK_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
    CHECK_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaErrorIllegalState);
    {
        cudaError_t other = cudaSuccess;
        std::thread t([&] { other = cudaStreamEndCapture(s, &g); });
        t.join();
        CHECK_CUDA(other, cudaErrorStreamCaptureWrongThread);
    }
    CHECK_CUDA(cudaStreamEndCapture(s, &g), cudaSuccess); /* an empty graph */
    CHECK_CUDA(cudaGraphDestroy(g), cudaSuccess);
    (void)cudaGetLastError();
    /* calls that wait for the device or allocate */
    if (invalidated_by(s, "cudaStreamSynchronize", cudaErrorStreamCaptureUnsupported,
                       [&] { return cudaStreamSynchronize(s); }) != NGT_PASS)
        return NGT_FAIL;
    if (invalidated_by(s, "cudaMemcpy", cudaErrorStreamCaptureUnsupported,
                       [&] { return cudaMemcpy(host, y, sizeof host, cudaMemcpyDeviceToHost); }) != NGT_PASS)
        return NGT_FAIL;
    if (invalidated_by(s, "cudaMalloc", cudaErrorStreamCaptureUnsupported, [&] {
            void *p = NULL;
            return cudaMalloc(&p, 16);
        }) != NGT_PASS)
        return NGT_FAIL;
    if (invalidated_by(s, "cudaDeviceSynchronize", cudaErrorStreamCaptureUnsupported,
                       [&] { return cudaDeviceSynchronize(); }) != NGT_PASS)
        return NGT_FAIL;
    /* a host-result reduction; then work queued on the invalidated capture is refused too */
    if (invalidated_by(s, "cublasSnrm2 (host result)", cudaErrorStreamCaptureInvalidated, [&] {
            cublasStatus_t st = cublasSnrm2(h, 4, y, 1, &r);
            if (st != CUBLAS_STATUS_NOT_SUPPORTED) return cudaErrorUnknown;
            return cudaMemsetAsync(y, 0, 4 * sizeof(float), s);
        }) != NGT_PASS)
        return NGT_FAIL;
    /* a bad launch configuration during capture: its error, and the capture invalidated */
    if (invalidated_by(s, "a launch of 0 threads", cudaErrorInvalidConfiguration, [&] {
            NG_LAUNCH(affine_kernel, 1, 0, 0, s)(y, 1.0f, 0.0f, 4);
            return cudaGetLastError();
        }) != NGT_PASS)
        return NGT_FAIL;
    /* everything works again afterwards */
    NG_LAUNCH(affine_kernel, 1, 32, 0, s)(y, 1.0f, 5.0f, 4);
    CHECK_CUDA(cudaGetLastError(), cudaSuccess);
    CHECK_CUDA(cudaStreamSynchronize(s), cudaSuccess);
    CHECK_CUDA(cudaMemcpy(host, y, sizeof host, cudaMemcpyDeviceToHost), cudaSuccess);
    NGT_CHECK(host[3] == 5.0f, "after the refused captures y[3] = %g (want 5)", (double)host[3]);
    cublasDestroy(h);
    CHECK_CUDA(cudaFree(y), cudaSuccess);
    CHECK_CUDA(cudaStreamDestroy(s), cudaSuccess);
    return NGT_PASS;
}

/* Fork / join through events (CUDA's cross-stream capture): a stream that waits for an event
 * recorded in a capture joins it, its work becomes part of the graph, and the origin must wait for an
 * event recorded after that work before the capture ends (else cudaErrorStreamCaptureUnjoined). The
 * replay runs the nodes in the order they were issued: y = 2 y + 1 (origin), then y = 3 y (joined),
 * then y = y + 4 (origin, after the join): from 1, 2 * 1 + 1 = 3, 9, 13 on launch 1, then 27, 81, 85. */
static int test_fork_join(void) {
    const int n = 8;
    cudaStream_t a, b;
    cudaEvent_t fork, join;
    float *y = NULL, host[8];
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    cudaStreamCaptureStatus cs;
    CHECK_CUDA(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking), cudaSuccess);
    CHECK_CUDA(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking), cudaSuccess);
    CHECK_CUDA(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming), cudaSuccess);
    CHECK_CUDA(cudaEventCreateWithFlags(&join, cudaEventDisableTiming), cudaSuccess);
    CHECK_CUDA(cudaMalloc((void **)&y, n * sizeof(float)), cudaSuccess);
    CHECK_CUDA(cudaMemset(y, 0, n * sizeof(float)), cudaSuccess);
    NG_LAUNCH(affine_kernel, 1, 32, 0, a)(y, 1.0f, 1.0f, n);
    CHECK_CUDA(cudaStreamSynchronize(a), cudaSuccess);
    CHECK_CUDA(cudaStreamBeginCapture(a, cudaStreamCaptureModeGlobal), cudaSuccess);
    NG_LAUNCH(affine_kernel, 1, 32, 0, a)(y, 2.0f, 1.0f, n);
    CHECK_CUDA(cudaEventRecord(fork, a), cudaSuccess);
    CHECK_CUDA(cudaStreamIsCapturing(b, &cs), cudaSuccess);
    NGT_CHECK(cs == cudaStreamCaptureStatusNone, "b captures before the fork");
    CHECK_CUDA(cudaStreamWaitEvent(b, fork, 0), cudaSuccess);
    CHECK_CUDA(cudaStreamIsCapturing(b, &cs), cudaSuccess);
    NGT_CHECK(cs == cudaStreamCaptureStatusActive, "b joined the capture: status %d", (int)cs);
    NG_LAUNCH(affine_kernel, 1, 32, 0, b)(y, 3.0f, 0.0f, n);
    CHECK_CUDA(cudaEventRecord(join, b), cudaSuccess);
    CHECK_CUDA(cudaStreamWaitEvent(a, join, 0), cudaSuccess);
    NG_LAUNCH(affine_kernel, 1, 32, 0, a)(y, 1.0f, 4.0f, n);
    CHECK_CUDA(cudaStreamEndCapture(a, &g), cudaSuccess);
    CHECK_CUDA(cudaStreamIsCapturing(b, &cs), cudaSuccess);
    NGT_CHECK(cs == cudaStreamCaptureStatusNone, "b left capture mode with a: status %d", (int)cs);
    CHECK_CUDA(cudaMemcpy(host, y, sizeof host, cudaMemcpyDeviceToHost), cudaSuccess);
    NGT_CHECK(host[0] == 1.0f, "the capture ran: y = %g", (double)host[0]);
    CHECK_CUDA(cudaGraphInstantiate(&ge, g, 0), cudaSuccess);
    CHECK_CUDA(cudaGraphLaunch(ge, a), cudaSuccess);
    CHECK_CUDA(cudaStreamSynchronize(a), cudaSuccess);
    CHECK_CUDA(cudaMemcpy(host, y, sizeof host, cudaMemcpyDeviceToHost), cudaSuccess);
    NGT_CHECK(host[n - 1] == 13.0f, "launch 1: y = %g (want 13)", (double)host[n - 1]);
    CHECK_CUDA(cudaGraphLaunch(ge, a), cudaSuccess);
    CHECK_CUDA(cudaStreamSynchronize(a), cudaSuccess);
    CHECK_CUDA(cudaMemcpy(host, y, sizeof host, cudaMemcpyDeviceToHost), cudaSuccess);
    NGT_CHECK(host[0] == 85.0f, "launch 2: y = %g (want 85)", (double)host[0]);
    CHECK_CUDA(cudaGraphExecDestroy(ge), cudaSuccess);
    CHECK_CUDA(cudaGraphDestroy(g), cudaSuccess);
    /* a joined stream with work after its last join: the capture is refused, both streams leave it */
    CHECK_CUDA(cudaStreamBeginCapture(a, cudaStreamCaptureModeGlobal), cudaSuccess);
    CHECK_CUDA(cudaEventRecord(fork, a), cudaSuccess);
    CHECK_CUDA(cudaStreamWaitEvent(b, fork, 0), cudaSuccess);
    NG_LAUNCH(affine_kernel, 1, 32, 0, b)(y, 3.0f, 0.0f, n);
    CHECK_CUDA(cudaEventRecord(join, b), cudaSuccess);
    CHECK_CUDA(cudaStreamWaitEvent(a, join, 0), cudaSuccess);
    NG_LAUNCH(affine_kernel, 1, 32, 0, b)(y, 5.0f, 0.0f, n); /* never joined back */
    g = NULL;
    CHECK_CUDA(cudaStreamEndCapture(a, &g), cudaErrorStreamCaptureUnjoined);
    NGT_CHECK(g == NULL, "an unjoined capture gave a graph");
    CHECK_CUDA(cudaGetLastError(), cudaErrorStreamCaptureUnjoined);
    CHECK_CUDA(cudaStreamIsCapturing(b, &cs), cudaSuccess);
    NGT_CHECK(cs == cudaStreamCaptureStatusNone, "b left capture mode: status %d", (int)cs);
    /* ending the capture on the joined stream is refused */
    CHECK_CUDA(cudaStreamBeginCapture(a, cudaStreamCaptureModeGlobal), cudaSuccess);
    CHECK_CUDA(cudaEventRecord(fork, a), cudaSuccess);
    CHECK_CUDA(cudaStreamWaitEvent(b, fork, 0), cudaSuccess);
    CHECK_CUDA(cudaEventRecord(join, b), cudaSuccess);
    CHECK_CUDA(cudaStreamWaitEvent(a, join, 0), cudaSuccess);
    CHECK_CUDA(cudaStreamEndCapture(b, &g), cudaErrorStreamCaptureUnmatched);
    CHECK_CUDA(cudaGetLastError(), cudaErrorStreamCaptureUnmatched);
    CHECK_CUDA(cudaStreamEndCapture(a, &g), cudaSuccess);
    CHECK_CUDA(cudaGraphDestroy(g), cudaSuccess);
    /* eager again: b's work runs at once */
    CHECK_CUDA(cudaMemset(y, 0, n * sizeof(float)), cudaSuccess);
    NG_LAUNCH(affine_kernel, 1, 32, 0, b)(y, 1.0f, 2.0f, n);
    CHECK_CUDA(cudaStreamSynchronize(b), cudaSuccess);
    CHECK_CUDA(cudaMemcpy(host, y, sizeof host, cudaMemcpyDeviceToHost), cudaSuccess);
    NGT_CHECK(host[0] == 2.0f, "eager after the captures: y = %g", (double)host[0]);
    CHECK_CUDA(cudaFree(y), cudaSuccess);
    cudaEventDestroy(fork);
    cudaEventDestroy(join);
    cudaStreamDestroy(a);
    cudaStreamDestroy(b);
    return NGT_PASS;
}

/* One capture of y <- 2 y + 1 in `mode` while `during` runs (an allocation, a blocking copy and a
 * synchronisation of another stream, from another thread or this one): it must leave the capture
 * valid (the graph replays y = 1 from 0) when `survives`, else fail with
 * cudaErrorStreamCaptureUnsupported and end the capture invalidated. */
template <class F>
static int capture_with(const char *what, cudaStreamCaptureMode mode, bool survives, F during) {
    const int n = 8;
    cudaStream_t s;
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    cudaStreamCaptureStatus cs;
    float *y = NULL, host[n];
    CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    CHECK_CUDA(cudaMalloc((void **)&y, n * sizeof(float)), cudaSuccess);
    CHECK_CUDA(cudaMemset(y, 0, n * sizeof(float)), cudaSuccess);
    CHECK_CUDA(cudaStreamBeginCapture(s, mode), cudaSuccess);
    NG_LAUNCH(affine_kernel, 1, 32, 0, s)(y, 2.0f, 1.0f, n);
    cudaError_t e = during(y);
    CHECK_CUDA(cudaStreamIsCapturing(s, &cs), cudaSuccess);
    cudaError_t end = cudaStreamEndCapture(s, &g);
    (void)cudaGetLastError();
    if (survives) {
        NGT_CHECK(e == cudaSuccess, "%s: -> %s, want cudaSuccess", what, cudaGetErrorName(e));
        NGT_CHECK(cs == cudaStreamCaptureStatusActive && end == cudaSuccess && g != NULL,
                  "%s: capture status %d, end %s", what, (int)cs, cudaGetErrorName(end));
        CHECK_CUDA(cudaGraphInstantiate(&ge, g, 0), cudaSuccess);
        CHECK_CUDA(cudaGraphLaunch(ge, s), cudaSuccess);
        CHECK_CUDA(cudaStreamSynchronize(s), cudaSuccess);
        CHECK_CUDA(cudaMemcpy(host, y, sizeof host, cudaMemcpyDeviceToHost), cudaSuccess);
        for (int i = 0; i < n; i++) NGT_CHECK(host[i] == 1.0f, "%s: replayed y[%d] = %g, want 1", what, i, (double)host[i]);
        CHECK_CUDA(cudaGraphExecDestroy(ge), cudaSuccess);
        CHECK_CUDA(cudaGraphDestroy(g), cudaSuccess);
    } else {
        NGT_CHECK(e == cudaErrorStreamCaptureUnsupported, "%s: -> %s, want cudaErrorStreamCaptureUnsupported", what,
                  cudaGetErrorName(e));
        NGT_CHECK(cs == cudaStreamCaptureStatusInvalidated && end == cudaErrorStreamCaptureInvalidated && g == NULL,
                  "%s: capture status %d, end %s, graph %p", what, (int)cs, cudaGetErrorName(end), (void *)g);
    }
    CHECK_CUDA(cudaFree(y), cudaSuccess);
    CHECK_CUDA(cudaStreamDestroy(s), cudaSuccess);
    return NGT_PASS;
}

/* what a worker thread does (K-FAC's asynchronous refresh): an allocation, a blocking copy, a
 * synchronisation of its own stream; the first error (in order) or cudaSuccess. thread_mode: the
 * worker's interaction mode (cudaThreadExchangeStreamCaptureMode), Global by default. */
static cudaError_t worker_calls(float *y, cudaStreamCaptureMode thread_mode) {
    cudaError_t first = cudaSuccess;
    std::thread t([&] {
        cudaStreamCaptureMode m = thread_mode;
        float *p = NULL, h = 0.0f;
        cudaStream_t w;
        cudaError_t e[5];
        e[0] = cudaThreadExchangeStreamCaptureMode(&m);
        e[1] = cudaStreamCreateWithFlags(&w, cudaStreamNonBlocking);
        e[2] = cudaMalloc((void **)&p, 64);
        e[3] = cudaMemcpy(&h, y, sizeof h, cudaMemcpyDeviceToHost);
        e[4] = cudaStreamSynchronize(w);
        if (p) (void)cudaFree(p);
        (void)cudaStreamDestroy(w);
        for (int i = 0; i < 5; i++)
            if (first == cudaSuccess) first = e[i];
        (void)cudaGetLastError();
    });
    t.join();
    return first;
}

static int test_capture_modes(void) {
    const cudaStreamCaptureMode G = cudaStreamCaptureModeGlobal, T = cudaStreamCaptureModeThreadLocal,
                                R = cudaStreamCaptureModeRelaxed;
    cudaStreamCaptureMode m = (cudaStreamCaptureMode)7;
    auto mine = [](float *) {
        float *p = NULL;
        cudaError_t e = cudaMalloc((void **)&p, 64);
        if (p) (void)cudaFree(p);
        return e;
    };
    /* another thread (Global interaction mode, the default) */
    if (capture_with("another thread's malloc, Global capture", G, false, [](float *y) { return worker_calls(y, G); }) != NGT_PASS ||
        capture_with("another thread's malloc, ThreadLocal capture", T, true, [](float *y) { return worker_calls(y, G); }) != NGT_PASS ||
        capture_with("another thread's malloc, Relaxed capture", R, true, [](float *y) { return worker_calls(y, G); }) != NGT_PASS)
        return NGT_FAIL;
    /* another thread that opted out of Global: a Global capture survives it */
    if (capture_with("a ThreadLocal thread's malloc, Global capture", G, true, [](float *y) { return worker_calls(y, T); }) != NGT_PASS ||
        capture_with("a Relaxed thread's malloc, Global capture", G, true, [](float *y) { return worker_calls(y, R); }) != NGT_PASS)
        return NGT_FAIL;
    /* the capturing thread itself */
    if (capture_with("this thread's malloc, ThreadLocal capture", T, false, mine) != NGT_PASS ||
        capture_with("this thread's malloc, Relaxed capture", R, true, mine) != NGT_PASS)
        return NGT_FAIL;
    /* synchronising the capturing stream conflicts in every mode */
    {
        cudaStream_t s;
        CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
        if (invalidated_by(s, "cudaStreamSynchronize (Relaxed)", cudaErrorStreamCaptureUnsupported,
                           [&] { return cudaStreamSynchronize(s); }, R) != NGT_PASS)
            return NGT_FAIL;
        CHECK_CUDA(cudaStreamDestroy(s), cudaSuccess);
    }
    CHECK_CUDA(cudaThreadExchangeStreamCaptureMode(&m), cudaErrorInvalidValue);
    (void)cudaGetLastError();
    return NGT_PASS;
}

int main(void) {
    NGT_RUN(test_capture_and_replay);
    NGT_RUN(test_capture_rules);
    NGT_RUN(test_fork_join);
    NGT_RUN(test_capture_modes);
    return ngt_finish();
}
