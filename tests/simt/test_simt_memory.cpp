/* test_simt_memory.cpp: the SIMT emulator's device memory and cudart shim.
 * Checks that a host access to a device pointer faults (caught here with a SIGSEGV handler and
 * sigsetjmp, so the test shows the detection works), that fresh device memory reads as NaN, that
 * cudaMemcpy/cudaMemset/cudaFree reject what the runtime rejects (and host pointers where device
 * ones are required), pinned memory, streams, events and device queries, and that a device pointer
 * a launch cannot translate (inside a struct argument) still works. Memory errors inside
 * kernels abort the process with a "simt:" report, as a GPU would stop with an illegal address:
 * those cases run in a forked child and the test checks that the child aborted with the expected
 * report (out-of-bounds writes past the end and before the start, a host pointer or a freed buffer
 * passed to a kernel, a fiber stack overflow, divergent warp operations). */
#include "ng_cuda.cuh"

#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "harness.h"

#define CHECK_CUDA(call)                                                                           \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        NGT_CHECK(e_ == cudaSuccess, "%s -> %s", #call, cudaGetErrorName(e_));                     \
    } while (0)

#define CHECK_ERR(call, want)                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        NGT_CHECK(e_ == (want), "%s -> %s, want %s", #call, cudaGetErrorName(e_),                  \
                  cudaGetErrorName(want));                                                         \
        NGT_CHECK(cudaGetLastError() == (want), "%s did not set the last error", #call);           \
    } while (0)

/* ---- kernels --------------------------------------------------------------------------------- */

static __global__ void store_kernel(float *y, int i, float v) { y[i] = v; }

static __global__ void copy_kernel(const float *x, float *y, int n) {
    int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < n) y[i] = x[i];
}

/* A device pointer inside a struct argument is not translated by the launch: the kernel reaches
 * the host view, which the emulator opens on the fault for the rest of the launch. */
struct vec_ref {
    float *p;
    int n;
};
static __global__ void struct_arg_kernel(vec_ref v, float add) {
    int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < v.n) v.p[i] += add;
}

/* Recursion far deeper than a 64 KiB fiber stack; frames of ~1 KiB cannot skip the guard page. */
static __device__ float deep(int n) {
    volatile float pad[256];
    pad[0] = (float)n;
    if (n == 0) return pad[0];
    return deep(n - 1) + pad[0];
}

static __global__ void big_stack_kernel(float *y) { y[threadIdx.x] = deep(100000); }

static __global__ void divergent_warp_kernel(float *y) {
    float v = (float)threadIdx.x;
    if (threadIdx.x < 16)
        v = __shfl_xor_sync(0xffffffffu, v, 1);
    else
        v = __shfl_down_sync(0xffffffffu, v, 1);
    y[threadIdx.x] = v;
}

/* ---- host access detection ------------------------------------------------------------------- */

static sigjmp_buf fault_jmp;
static void on_segv(int sig) { siglongjmp(fault_jmp, 1); }

/* 1 when reading (write = 0) or writing *p faults. */
static int faults(volatile float *p, int write) {
    struct sigaction sa, old;
    volatile int caught = 0;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_segv;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old);
    if (sigsetjmp(fault_jmp, 1) == 0) {
        if (write)
            *p = 1.0f;
        else {
            volatile float v = *p;
            (void)v;
        }
    } else {
        caught = 1;
    }
    sigaction(SIGSEGV, &old, NULL);
    return caught;
}

static int test_host_access_is_detected(void) {
    float *d = NULL, host_buf[4] = {0, 0, 0, 0};
    std::vector<float> h(1000, 3.0f);
    CHECK_CUDA(cudaMalloc((void **)&d, 1000 * sizeof(float)));
    NGT_CHECK(!faults(host_buf, 0) && !faults(host_buf, 1), "control: host memory must not fault");
    NGT_CHECK(faults(d, 0), "a host read of device memory was not detected");
    NGT_CHECK(faults(d + 500, 1), "a host write of device memory was not detected");
    CHECK_CUDA(cudaMemcpy(d, h.data(), 1000 * sizeof(float), cudaMemcpyHostToDevice));
    NGT_CHECK(faults(d + 999, 0), "device memory readable by the host after a cudaMemcpy");
    NG_LAUNCH(copy_kernel, 8, 128, 0, 0)(d, d, 1000);
    CHECK_CUDA(cudaGetLastError());
    NGT_CHECK(faults(d, 1), "device memory writable by the host after a launch");
    CHECK_CUDA(cudaFree(d));
    NGT_CHECK(faults(d, 0), "a host read of freed device memory was not detected");
    return NGT_PASS;
}

static int test_pointer_in_struct_argument(void) {
    std::vector<float> h(300, 1.0f);
    vec_ref v;
    CHECK_CUDA(cudaMalloc((void **)&v.p, h.size() * sizeof(float)));
    v.n = (int)h.size();
    CHECK_CUDA(cudaMemcpy(v.p, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice));
    NG_LAUNCH(struct_arg_kernel, 3, 128, 0, 0)(v, 2.5f);
    CHECK_CUDA(cudaGetLastError());
    NGT_CHECK(faults(v.p, 0), "the host view stayed open after the launch");
    CHECK_CUDA(cudaMemcpy(h.data(), v.p, h.size() * sizeof(float), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < h.size(); i++) NGT_CHECK(h[i] == 3.5f, "element %zu is %g", i, h[i]);
    CHECK_CUDA(cudaFree(v.p));
    return NGT_PASS;
}

static int test_fresh_memory_is_nan(void) {
    float *df = NULL;
    double *dd = NULL;
    int *di = NULL;
    std::vector<float> f(333);
    std::vector<double> d(77);
    std::vector<int> iv(5);
    CHECK_CUDA(cudaMalloc((void **)&df, f.size() * sizeof(float)));
    CHECK_CUDA(cudaMalloc((void **)&dd, d.size() * sizeof(double)));
    CHECK_CUDA(cudaMalloc((void **)&di, iv.size() * sizeof(int)));
    CHECK_CUDA(cudaMemcpy(f.data(), df, f.size() * sizeof(float), cudaMemcpyDeviceToHost));
    CHECK_CUDA(cudaMemcpy(d.data(), dd, d.size() * sizeof(double), cudaMemcpyDeviceToHost));
    CHECK_CUDA(cudaMemcpy(iv.data(), di, iv.size() * sizeof(int), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < f.size(); i++)
        NGT_CHECK(f[i] != f[i], "float %zu is %g, not NaN", i, f[i]);
    for (size_t i = 0; i < d.size(); i++)
        NGT_CHECK(d[i] != d[i], "double %zu is %g, not NaN", i, d[i]);
    for (size_t i = 0; i < iv.size(); i++) NGT_CHECK(iv[i] == -1, "int %zu is %d", i, iv[i]);
    /* an uninitialised input flows through a kernel into the result */
    float *dy = NULL;
    std::vector<float> y(333);
    CHECK_CUDA(cudaMalloc((void **)&dy, y.size() * sizeof(float)));
    CHECK_CUDA(cudaMemset(dy, 0, y.size() * sizeof(float)));
    NG_LAUNCH(copy_kernel, 3, 128, 0, 0)(df, dy, 333);
    CHECK_CUDA(cudaGetLastError());
    CHECK_CUDA(cudaMemcpy(y.data(), dy, y.size() * sizeof(float), cudaMemcpyDeviceToHost));
    NGT_CHECK(y[100] != y[100], "copy of uninitialised data gave %g, not NaN", y[100]);
    cudaFree(df);
    cudaFree(dd);
    cudaFree(di);
    cudaFree(dy);
    return NGT_PASS;
}

static int test_memcpy_validation(void) {
    float *d = NULL, *d2 = NULL, h[16] = {0};
    CHECK_CUDA(cudaMalloc((void **)&d, 16 * sizeof(float)));
    CHECK_CUDA(cudaMalloc((void **)&d2, 16 * sizeof(float)));
    CHECK_CUDA(cudaMemcpy(d, h, sizeof h, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(d2, d, sizeof h, cudaMemcpyDeviceToDevice));
    CHECK_CUDA(cudaMemcpy(h, d2, sizeof h, cudaMemcpyDefault));
    CHECK_CUDA(cudaMemcpy(d + 4, d2, 12 * sizeof(float), cudaMemcpyDeviceToDevice));
    CHECK_ERR(cudaMemcpy(h, d, sizeof h, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
    CHECK_ERR(cudaMemcpy(d, h, sizeof h, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
    CHECK_ERR(cudaMemcpy(d, h, sizeof h, cudaMemcpyHostToHost), cudaErrorInvalidValue);
    CHECK_ERR(cudaMemcpy(d, d2, sizeof h, (cudaMemcpyKind)7), cudaErrorInvalidMemcpyDirection);
    CHECK_ERR(cudaMemcpy(d + 1, h, sizeof h, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
    CHECK_ERR(cudaMemcpy(NULL, d, sizeof h, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
    CHECK_ERR(cudaMemcpyAsync(d, h, sizeof h, cudaMemcpyHostToDevice, (cudaStream_t)0x1234),
              cudaErrorInvalidResourceHandle);
    CHECK_ERR(cudaMemset(h, 0, sizeof h), cudaErrorInvalidValue);
    CHECK_ERR(cudaMemset(d, 0, sizeof h + 1), cudaErrorInvalidValue);
    CHECK_CUDA(cudaMemsetAsync(d, 0, sizeof h, 0));
    CHECK_CUDA(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
    NGT_CHECK(h[15] == 0.0f, "cudaMemsetAsync did not clear");
    CHECK_ERR(cudaFree(h), cudaErrorInvalidValue);
    CHECK_ERR(cudaFree(d + 1), cudaErrorInvalidValue);
    CHECK_CUDA(cudaFree(d));
    CHECK_ERR(cudaFree(d), cudaErrorInvalidValue);
    CHECK_CUDA(cudaFree(d2));
    CHECK_CUDA(cudaFree(NULL));
    return NGT_PASS;
}

static int test_device_queries(void) {
    int n = 0, dev = -1, v = 0;
    size_t fr0, fr1, total;
    float *d = NULL;
    cudaDeviceProp p;
    const char *want_env = getenv("NG_SIMT_DEVICES");
    int want_n = want_env && *want_env ? atoi(want_env) : 2; /* NG_SIMT_DEVICES, default 2 */
    CHECK_CUDA(cudaGetDeviceCount(&n));
    NGT_CHECK(n == want_n, "device count %d, want %d", n, want_n);
    CHECK_CUDA(cudaSetDevice(0));
    CHECK_ERR(cudaSetDevice(n), cudaErrorInvalidDevice);
    CHECK_CUDA(cudaGetDevice(&dev));
    NGT_CHECK(dev == 0, "device %d", dev);
    CHECK_CUDA(cudaGetDeviceProperties(&p, 0));
    NGT_CHECK(p.warpSize == 32 && p.maxThreadsPerBlock == 1024 && p.sharedMemPerBlock == 48 * 1024,
              "properties: warp %d, threads %d, shared %zu", p.warpSize, p.maxThreadsPerBlock,
              p.sharedMemPerBlock);
    CHECK_CUDA(cudaDriverGetVersion(&v));
    NGT_CHECK(v >= 13000, "driver version %d", v);
    CHECK_CUDA(cudaRuntimeGetVersion(&v));
    NGT_CHECK(v == CUDART_VERSION, "runtime version %d", v);
    CHECK_CUDA(cudaMemGetInfo(&fr0, &total));
    CHECK_CUDA(cudaMalloc((void **)&d, 1 << 20));
    CHECK_CUDA(cudaMemGetInfo(&fr1, &total));
    NGT_CHECK(fr0 - fr1 == (size_t)1 << 20 && fr0 <= total, "free %zu -> %zu of %zu", fr0, fr1,
              total);
    CHECK_CUDA(cudaFree(d));
    CHECK_ERR(cudaMalloc((void **)&d, total + 1), cudaErrorMemoryAllocation);
    NGT_CHECK(strcmp(cudaGetErrorName(cudaErrorInvalidConfiguration),
                     "cudaErrorInvalidConfiguration") == 0,
              "error name");
    NGT_CHECK(strlen(cudaGetErrorString(cudaErrorMemoryAllocation)) > 0, "error string");
    return NGT_PASS;
}

static int test_streams_events_pinned(void) {
    cudaStream_t s;
    cudaEvent_t a, b, c;
    float ms = -1.0f, *pin = NULL, *d = NULL;
    CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CHECK_CUDA(cudaEventCreate(&a));
    CHECK_CUDA(cudaEventCreate(&b));
    CHECK_CUDA(cudaEventCreate(&c));
    CHECK_ERR(cudaEventElapsedTime(&ms, a, b), cudaErrorInvalidResourceHandle);
    CHECK_CUDA(cudaEventRecord(a, s));
    CHECK_CUDA(cudaMallocHost((void **)&pin, 64 * sizeof(float)));
    CHECK_CUDA(cudaMalloc((void **)&d, 64 * sizeof(float)));
    for (int i = 0; i < 64; i++) pin[i] = (float)i;
    CHECK_CUDA(cudaMemcpyAsync(d, pin, 64 * sizeof(float), cudaMemcpyHostToDevice, s));
    NG_LAUNCH(copy_kernel, 1, 64, 0, s)(d, pin, 64); /* pinned memory is a valid kernel argument */
    CHECK_CUDA(cudaGetLastError());
    CHECK_CUDA(cudaEventRecord(b, s));
    CHECK_CUDA(cudaStreamSynchronize(s));
    CHECK_CUDA(cudaEventSynchronize(b));
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    NGT_CHECK(ms >= 0.0f, "elapsed %g ms", ms);
    NGT_CHECK(pin[63] == 63.0f, "pinned round trip %g", pin[63]);
    CHECK_ERR(cudaEventElapsedTime(&ms, a, c), cudaErrorInvalidResourceHandle);
    CHECK_CUDA(cudaEventDestroy(a));
    CHECK_CUDA(cudaEventDestroy(b));
    CHECK_CUDA(cudaEventDestroy(c));
    CHECK_ERR(cudaEventRecord(a, s), cudaErrorInvalidResourceHandle);
    CHECK_CUDA(cudaStreamDestroy(s));
    CHECK_ERR(cudaStreamSynchronize(s), cudaErrorInvalidResourceHandle);
    CHECK_CUDA(cudaDeviceSynchronize());
    CHECK_CUDA(cudaFreeHost(pin));
    CHECK_CUDA(cudaFree(d));
    return NGT_PASS;
}

/* ---- errors inside kernels: the process must abort with a report ---------------------------- */

/* Run fn in a child; pass when it aborts and its stderr contains `needle`. */
static int expect_abort(const char *what, void (*fn)(void), const char *needle) {
    int fd[2];
    std::string err;
    char buf[512];
    ssize_t got;
    int status = 0;
    NGT_CHECK(pipe(fd) == 0, "pipe");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    NGT_CHECK(pid >= 0, "fork");
    if (pid == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        fn();
        _exit(0);
    }
    close(fd[1]);
    while ((got = read(fd[0], buf, sizeof buf)) > 0) err.append(buf, (size_t)got);
    close(fd[0]);
    waitpid(pid, &status, 0);
    printf("  %s: child reported: %s", what, err.empty() ? "(nothing)\n" : err.c_str());
    NGT_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
              "%s: the child was not aborted (status 0x%x)", what, status);
    NGT_CHECK(err.find(needle) != std::string::npos, "%s: report lacks \"%s\"", what, needle);
    return NGT_PASS;
}

static void write_past_end_aligned(void) {
    float *d;
    cudaMalloc((void **)&d, 64 * sizeof(float));
    NG_LAUNCH(store_kernel, 1, 1, 0, 0)(d, 64, 1.0f); /* first byte after: the guard page */
}

static void write_past_end_unaligned(void) {
    float *d;
    cudaMalloc((void **)&d, 10 * sizeof(float));
    NG_LAUNCH(store_kernel, 1, 1, 0, 0)(d, 10, 1.0f); /* in the alignment slack: a canary */
}

static void write_before_start(void) {
    float *d;
    cudaMalloc((void **)&d, 10 * sizeof(float));
    NG_LAUNCH(store_kernel, 1, 1, 0, 0)(d, -1, 1.0f);
}

static void host_pointer_argument(void) {
    static float host[4];
    NG_LAUNCH(store_kernel, 1, 1, 0, 0)(host, 0, 1.0f);
}

static void use_after_free(void) {
    float *d;
    cudaMalloc((void **)&d, 64 * sizeof(float));
    cudaFree(d);
    NG_LAUNCH(store_kernel, 1, 1, 0, 0)(d, 0, 1.0f);
}

static void stack_overflow(void) {
    float *d;
    cudaMalloc((void **)&d, 64 * sizeof(float));
    NG_LAUNCH(big_stack_kernel, 1, 1, 0, 0)(d);
}

static void divergent_warp(void) {
    float *d;
    cudaMalloc((void **)&d, 32 * sizeof(float));
    NG_LAUNCH(divergent_warp_kernel, 1, 32, 0, 0)(d);
}

static int test_kernel_memory_errors_abort(void) {
    int r;
    if ((r = expect_abort("write one past the end", write_past_end_aligned,
                          "which has 256 bytes")) != NGT_PASS)
        return r;
    if ((r = expect_abort("write into the alignment slack", write_past_end_unaligned,
                          "wrote past the end of device allocation")) != NGT_PASS)
        return r;
    if ((r = expect_abort("write before the start", write_before_start, "before the start")) !=
        NGT_PASS)
        return r;
    if ((r = expect_abort("host pointer argument", host_pointer_argument,
                          "is not device memory")) != NGT_PASS)
        return r;
    if ((r = expect_abort("use after free", use_after_free, "already freed")) != NGT_PASS) return r;
    if ((r = expect_abort("fiber stack overflow", stack_overflow, "stack overflow")) != NGT_PASS)
        return r;
    if ((r = expect_abort("divergent warp operations", divergent_warp, "divergent warp")) !=
        NGT_PASS)
        return r;
    return NGT_PASS;
}

int main(void) {
    NGT_RUN(test_host_access_is_detected);
    NGT_RUN(test_pointer_in_struct_argument);
    NGT_RUN(test_fresh_memory_is_nan);
    NGT_RUN(test_memcpy_validation);
    NGT_RUN(test_device_queries);
    NGT_RUN(test_streams_events_pinned);
    NGT_RUN(test_kernel_memory_errors_abort);
    return ngt_finish();
}
