/* test_simt_devices.cpp: several emulated devices in one process (NG_SIMT_DEVICES, default 2).
 * Checks device selection (a current device per host thread, cudaSetDevice out of range,
 * per-device properties and memory budgets, the NG_SIMT_DEVICES setting itself through a re-run of
 * this binary), allocations and kernel launches on two devices with their results, and that every
 * cross-device misuse is caught with a "simt:" note naming the call and both devices: launches,
 * async copies and memsets, event records and stream waits on another device's stream
 * (cudaErrorInvalidResourceHandle, the kernel does not run), async copies touching another
 * device's memory, cuBLAS / cuSOLVER / cuRAND calls with a handle or an operand of another device
 * (execution-failure statuses), and a kernel pointer argument in another device's memory (the
 * process aborts with a report: run in a forked child, as test_simt_memory does). Notes are
 * captured from stderr to check their wording. With fewer than 2 devices the two-device tests
 * skip. */
#include "ng_cuda.cuh"

#include <cublas_v2.h>
#include <curand.h>
#include <cusolverDn.h>

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "harness.h"

#define CHECK_CUDA(call)                                                                           \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        NGT_CHECK(e_ == cudaSuccess, "%s -> %s", #call, cudaGetErrorName(e_));                     \
    } while (0)

/* The call fails with `want`, and cudaGetLastError reports the same. */
#define CHECK_ERR(call, want)                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        NGT_CHECK(e_ == (want), "%s -> %s, want %s", #call, cudaGetErrorName(e_),                  \
                  cudaGetErrorName(want));                                                         \
        NGT_CHECK(cudaGetLastError() == (want), "%s did not set the last error", #call);           \
    } while (0)

/* The text `note` (captured stderr) contains each of the given fragments. */
#define CHECK_NOTE(note, ...)                                                                      \
    do {                                                                                           \
        const char *frags_[] = {__VA_ARGS__};                                                      \
        for (const char *f_ : frags_)                                                              \
            NGT_CHECK((note).find(f_) != std::string::npos, "note \"%s\" lacks \"%s\"",            \
                      (note).c_str(), f_);                                                         \
    } while (0)

/* ---- kernels --------------------------------------------------------------------------------- */

static __global__ void affine_kernel(const float *x, float *y, float a, float b, int n) {
    int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < n) y[i] = a * x[i] + b;
}

static __global__ void store_kernel(float *y, int i, float v) { y[i] = v; }

/* ---- helpers --------------------------------------------------------------------------------- */

/* Run fn with stderr sent to a temporary file; return what it wrote (also echoed to stderr). */
template <class F> static std::string capture_stderr(F fn) {
    std::string out;
    char buf[512];
    size_t got;
    fflush(stderr);
    FILE *tmp = tmpfile();
    int saved = dup(2);
    if (tmp == NULL || saved < 0) {
        fn();
        return "(stderr not captured)";
    }
    dup2(fileno(tmp), 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    while ((got = fread(buf, 1, sizeof buf, tmp)) > 0) out.append(buf, got);
    fclose(tmp);
    fputs(out.c_str(), stderr);
    return out;
}

static int device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

#define NEED_TWO_DEVICES()                                                                         \
    do {                                                                                           \
        if (device_count() < 2)                                                                    \
            return ngt_skip("needs 2 emulated devices (NG_SIMT_DEVICES >= 2)");                    \
    } while (0)

static float *dev_floats(const std::vector<float> &h) {
    void *p = NULL;
    if (cudaMalloc(&p, h.size() * sizeof(float)) != cudaSuccess) return NULL;
    if (cudaMemcpy(p, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess)
        return NULL;
    return (float *)p;
}

static std::vector<float> host_floats(const float *d, size_t n) {
    std::vector<float> h(n);
    if (cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess)
        h.clear();
    return h;
}

/* Run fn in a child; pass when it aborts and its stderr contains every fragment of `needles`. */
static int expect_abort(const char *what, void (*fn)(void), std::vector<const char *> needles) {
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
    for (const char *n : needles)
        NGT_CHECK(err.find(n) != std::string::npos, "%s: report lacks \"%s\"", what, n);
    return NGT_PASS;
}

/* This binary's path (resolved in main: exec of /proc/self/exe itself fails under valgrind). */
static char self_path[4096];

/* Re-run this binary with `probe` as its argument and the environment changed as given (name,
 * value; NULL value: unset); return its stdout + stderr and exit status. */
static std::string rerun(const char *probe, std::vector<std::pair<const char *, const char *>> env,
                         int *status) {
    int fd[2];
    std::string out;
    char buf[512];
    ssize_t got;
    *status = -1;
    if (pipe(fd) != 0) return "pipe failed";
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return "fork failed";
    if (pid == 0) {
        dup2(fd[1], 1);
        dup2(fd[1], 2);
        close(fd[0]);
        for (auto &kv : env) {
            if (kv.second)
                setenv(kv.first, kv.second, 1);
            else
                unsetenv(kv.first);
        }
        char *argv[] = {self_path, (char *)probe, NULL};
        execv(self_path, argv);
        _exit(127);
    }
    close(fd[1]);
    while ((got = read(fd[0], buf, sizeof buf)) > 0) out.append(buf, (size_t)got);
    close(fd[0]);
    waitpid(pid, status, 0);
    return out;
}

/* --probe-count: "count=N" from cudaGetDeviceCount, then "set<d>=<error name>" for d = 0..N. */
static int probe_count(void) {
    int n = -1;
    cudaError_t e = cudaGetDeviceCount(&n);
    printf("count=%d %s\n", n, cudaGetErrorName(e));
    for (int d = 0; d <= n; d++) printf("set%d=%s\n", d, cudaGetErrorName(cudaSetDevice(d)));
    return 0;
}

/* --probe-budget (with NG_SIMT_DEVICE_MEM=8M): 6 MiB fit once on each device, not twice on one. */
static int probe_budget(void) {
    void *p[3] = {NULL, NULL, NULL};
    cudaError_t e0, e1, e2;
    cudaSetDevice(0);
    e0 = cudaMalloc(&p[0], 6 << 20);
    cudaSetDevice(1);
    e1 = cudaMalloc(&p[1], 6 << 20);
    cudaSetDevice(0);
    e2 = cudaMalloc(&p[2], 6 << 20);
    printf("dev0=%s dev1=%s dev0again=%s\n", cudaGetErrorName(e0), cudaGetErrorName(e1),
           cudaGetErrorName(e2));
    return 0;
}

/* ---- selection and properties ---------------------------------------------------------------- */

static int test_device_count_and_selection(void) {
    const char *env = getenv("NG_SIMT_DEVICES");
    int want = env && *env ? atoi(env) : 2, n = 0, dev = -1, v = 0;
    CHECK_CUDA(cudaGetDeviceCount(&n));
    NGT_CHECK(n == want, "cudaGetDeviceCount gave %d, want %d", n, want);
    CHECK_CUDA(cudaGetDevice(&dev));
    NGT_CHECK(dev == 0, "the current device starts as %d, want 0", dev);
    CHECK_ERR(cudaSetDevice(n), cudaErrorInvalidDevice);
    CHECK_ERR(cudaSetDevice(-1), cudaErrorInvalidDevice);
    CHECK_ERR(cudaSetDevice(8), cudaErrorInvalidDevice);
    CHECK_CUDA(cudaGetDevice(&dev));
    NGT_CHECK(dev == 0, "a rejected cudaSetDevice changed the current device to %d", dev);
    for (int d = 0; d < n; d++) {
        cudaDeviceProp p;
        char want_name[64];
        CHECK_CUDA(cudaSetDevice(d));
        CHECK_CUDA(cudaGetDevice(&dev));
        NGT_CHECK(dev == d, "cudaGetDevice gave %d after cudaSetDevice(%d)", dev, d);
        CHECK_CUDA(cudaGetDeviceProperties(&p, d));
        snprintf(want_name, sizeof want_name, "emulated device %d", d);
        NGT_CHECK(strstr(p.name, want_name) != NULL && strstr(p.name, "SIMT emulator") != NULL,
                  "device %d is named \"%s\"", d, p.name);
        NGT_CHECK(p.warpSize == 32 && p.major == 9, "device %d: warp %d, sm_%d%d", d, p.warpSize,
                  p.major, p.minor);
        CHECK_CUDA(cudaDeviceGetAttribute(&v, cudaDevAttrWarpSize, d));
        NGT_CHECK(v == 32, "attribute of device %d: %d", d, v);
    }
    {
        cudaDeviceProp p;
        CHECK_ERR(cudaGetDeviceProperties(&p, n), cudaErrorInvalidDevice);
        CHECK_ERR(cudaDeviceGetAttribute(&v, cudaDevAttrWarpSize, n), cudaErrorInvalidDevice);
        CHECK_ERR(cudaDeviceGetAttribute(&v, cudaDevAttrWarpSize, -1), cudaErrorInvalidDevice);
    }
    CHECK_CUDA(cudaSetDevice(0));
    return NGT_PASS;
}

static int test_current_device_is_per_thread(void) {
    NEED_TWO_DEVICES();
    int seen = -1, after = -1, main_dev = -1;
    CHECK_CUDA(cudaSetDevice(1));
    std::thread t([&] {
        cudaGetDevice(&seen); /* a new thread starts on device 0 */
        cudaSetDevice(0);
        cudaGetDevice(&after);
    });
    t.join();
    CHECK_CUDA(cudaGetDevice(&main_dev));
    NGT_CHECK(seen == 0 && after == 0, "new thread: device %d, then %d", seen, after);
    NGT_CHECK(main_dev == 1, "another thread's cudaSetDevice changed this thread's device to %d",
              main_dev);
    CHECK_CUDA(cudaSetDevice(0));
    return NGT_PASS;
}

static int test_device_count_setting(void) {
    int st;
    std::string out =
        rerun("--probe-count", {{"NG_SIMT_DEVICES", "3"}, {"NG_SIMT_NO_DEVICE", NULL}}, &st);
    NGT_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "probe with 3 devices: status 0x%x: %s", st,
              out.c_str());
    CHECK_NOTE(out, "count=3 cudaSuccess", "set2=cudaSuccess", "set3=cudaErrorInvalidDevice");
    out = rerun("--probe-count", {{"NG_SIMT_DEVICES", "1"}, {"NG_SIMT_NO_DEVICE", NULL}}, &st);
    CHECK_NOTE(out, "count=1 cudaSuccess", "set0=cudaSuccess", "set1=cudaErrorInvalidDevice");
    out = rerun("--probe-count", {{"NG_SIMT_DEVICES", NULL}, {"NG_SIMT_NO_DEVICE", NULL}}, &st);
    CHECK_NOTE(out, "count=2 cudaSuccess", "set1=cudaSuccess", "set2=cudaErrorInvalidDevice");
    out = rerun("--probe-count", {{"NG_SIMT_DEVICES", "3"}, {"NG_SIMT_NO_DEVICE", "1"}}, &st);
    CHECK_NOTE(out, "count=0 cudaErrorNoDevice", "set0=cudaErrorNoDevice");
    const char *bad[] = {"0", "9", "2x", "-1"};
    for (const char *b : bad) {
        out = rerun("--probe-count", {{"NG_SIMT_DEVICES", b}, {"NG_SIMT_NO_DEVICE", NULL}}, &st);
        printf("  NG_SIMT_DEVICES=%s: %s", b, out.c_str());
        NGT_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT,
                  "NG_SIMT_DEVICES=%s was not refused (status 0x%x)", b, st);
        CHECK_NOTE(out, "simt: NG_SIMT_DEVICES=", "from 1 to 8");
    }
    out = rerun("--probe-budget",
                {{"NG_SIMT_DEVICES", "2"},
                 {"NG_SIMT_NO_DEVICE", NULL},
                 {"NG_SIMT_DEVICE_MEM", "8M"}},
                &st);
    CHECK_NOTE(out, "dev0=cudaSuccess dev1=cudaSuccess dev0again=cudaErrorMemoryAllocation");
    return NGT_PASS;
}

static int test_memory_info_per_device(void) {
    NEED_TWO_DEVICES();
    size_t f0, t0, f1, t1, f0b, f1b;
    void *p = NULL;
    CHECK_CUDA(cudaSetDevice(0));
    CHECK_CUDA(cudaMemGetInfo(&f0, &t0));
    CHECK_CUDA(cudaSetDevice(1));
    CHECK_CUDA(cudaMemGetInfo(&f1, &t1));
    CHECK_CUDA(cudaMalloc(&p, 3 << 20));
    CHECK_CUDA(cudaMemGetInfo(&f1b, &t1));
    NGT_CHECK(f1 - f1b == (size_t)3 << 20, "device 1: free %zu -> %zu", f1, f1b);
    CHECK_CUDA(cudaSetDevice(0));
    CHECK_CUDA(cudaMemGetInfo(&f0b, &t0));
    NGT_CHECK(f0b == f0, "device 0's free memory changed (%zu -> %zu) by a device 1 allocation", f0,
              f0b);
    CHECK_CUDA(cudaFree(p)); /* freeing another device's memory is allowed (UVA) */
    CHECK_CUDA(cudaSetDevice(1));
    CHECK_CUDA(cudaMemGetInfo(&f1b, &t1));
    NGT_CHECK(f1b == f1, "device 1: free %zu after cudaFree, want %zu", f1b, f1);
    CHECK_CUDA(cudaSetDevice(0));
    return NGT_PASS;
}

/* ---- work on two devices ------------------------------------------------------------------- */

static int test_kernels_on_two_devices(void) {
    NEED_TWO_DEVICES();
    const int n = 1000;
    std::vector<float> x(n);
    for (int i = 0; i < n; i++) x[i] = (float)i * 0.5f - 100.0f;
    float *dx[2], *dy[2];
    cudaStream_t s[2];
    for (int d = 0; d < 2; d++) {
        CHECK_CUDA(cudaSetDevice(d));
        CHECK_CUDA(cudaStreamCreateWithFlags(&s[d], cudaStreamNonBlocking));
        dx[d] = dev_floats(x);
        NGT_CHECK(dx[d] != NULL, "device %d copy", d);
        CHECK_CUDA(cudaMalloc((void **)&dy[d], n * sizeof(float)));
    }
    /* each device: y = (d + 2) x + d, on its own stream and then on its default stream */
    for (int d = 0; d < 2; d++) {
        CHECK_CUDA(cudaSetDevice(d));
        NG_LAUNCH(affine_kernel, (n + 127) / 128, 128, 0, s[d])(dx[d], dy[d], (float)(d + 2),
                                                                 (float)d, n);
        CHECK_CUDA(cudaGetLastError());
        CHECK_CUDA(cudaStreamSynchronize(s[d]));
    }
    for (int d = 0; d < 2; d++) {
        std::vector<float> y = host_floats(dy[d], n); /* from device 1: synchronous copies of any */
        NGT_CHECK(!y.empty(), "copy out");
        for (int i = 0; i < n; i++)
            NGT_CHECK(y[i] == (float)(d + 2) * x[i] + (float)d, "device %d: y[%d] = %g", d, i,
                      y[i]);
    }
    CHECK_CUDA(cudaSetDevice(1));
    NG_LAUNCH(affine_kernel, (n + 127) / 128, 128, 0, 0)(dy[1], dy[1], 2.0f, 0.0f, n);
    CHECK_CUDA(cudaGetLastError());
    CHECK_CUDA(cudaDeviceSynchronize());
    /* synchronous device-to-device copy between the two devices (allowed: UVA) */
    CHECK_CUDA(cudaMemcpy(dy[0], dy[1], n * sizeof(float), cudaMemcpyDeviceToDevice));
    CHECK_CUDA(cudaMemcpy(dy[0], dy[1], n * sizeof(float), cudaMemcpyDefault));
    std::vector<float> y0 = host_floats(dy[0], n);
    NGT_CHECK(!y0.empty(), "copy out");
    for (int i = 0; i < n; i++)
        NGT_CHECK(y0[i] == 2.0f * (3.0f * x[i] + 1.0f), "peer copy: y[%d] = %g", i, y0[i]);
    for (int d = 0; d < 2; d++) {
        CHECK_CUDA(cudaSetDevice(d));
        CHECK_CUDA(cudaFree(dx[d]));
        CHECK_CUDA(cudaFree(dy[d]));
        CHECK_CUDA(cudaStreamDestroy(s[d]));
    }
    CHECK_CUDA(cudaSetDevice(0));
    return NGT_PASS;
}

/* ---- misuse: streams of another device ------------------------------------------------------- */

static int test_stream_of_other_device_is_rejected(void) {
    NEED_TWO_DEVICES();
    const int n = 64;
    std::vector<float> h(n, 5.0f);
    cudaStream_t s0, s1;
    cudaEvent_t e0, e1;
    float *d0, *y0;
    cudaError_t r = cudaSuccess;
    std::string note;
    CHECK_CUDA(cudaSetDevice(1));
    CHECK_CUDA(cudaStreamCreate(&s1));
    CHECK_CUDA(cudaEventCreate(&e1));
    CHECK_CUDA(cudaSetDevice(0));
    CHECK_CUDA(cudaStreamCreate(&s0));
    CHECK_CUDA(cudaEventCreate(&e0));
    d0 = dev_floats(h);
    y0 = dev_floats(h);
    NGT_CHECK(d0 && y0, "device copies");

    /* a launch on device 1's stream while device 0 is current: an error, the kernel does not run */
    note = capture_stderr(
        [&] { NG_LAUNCH(affine_kernel, 1, n, 0, s1)(d0, y0, 0.0f, 1.0f, n); });
    r = cudaGetLastError();
    NGT_CHECK(r == cudaErrorInvalidResourceHandle, "launch on another device's stream: %s",
              cudaGetErrorName(r));
    CHECK_NOTE(note, "launch of kernel affine_kernel",
               "belongs to device 1 but device 0 is current");
    std::vector<float> y = host_floats(y0, n);
    NGT_CHECK(!y.empty() && y[0] == 5.0f && y[n - 1] == 5.0f, "the rejected kernel ran");

    note = capture_stderr([&] {
        r = cudaMemcpyAsync(d0, h.data(), n * sizeof(float), cudaMemcpyHostToDevice, s1);
    });
    NGT_CHECK(r == cudaErrorInvalidResourceHandle && cudaGetLastError() == r,
              "cudaMemcpyAsync on another device's stream: %s", cudaGetErrorName(r));
    CHECK_NOTE(note, "cudaMemcpyAsync", "belongs to device 1 but device 0 is current");

    note = capture_stderr([&] { r = cudaMemsetAsync(d0, 0, n * sizeof(float), s1); });
    NGT_CHECK(r == cudaErrorInvalidResourceHandle && cudaGetLastError() == r,
              "cudaMemsetAsync on another device's stream: %s", cudaGetErrorName(r));
    CHECK_NOTE(note, "cudaMemsetAsync", "belongs to device 1 but device 0 is current");
    y = host_floats(d0, n);
    NGT_CHECK(!y.empty() && y[3] == 5.0f, "the rejected memset ran");

    note = capture_stderr([&] { r = cudaEventRecord(e1, s1); });
    NGT_CHECK(r == cudaErrorInvalidResourceHandle && cudaGetLastError() == r,
              "cudaEventRecord on another device's stream: %s", cudaGetErrorName(r));
    CHECK_NOTE(note, "cudaEventRecord", "belongs to device 1 but device 0 is current");

    note = capture_stderr([&] { r = cudaStreamWaitEvent(s1, e0, 0); });
    NGT_CHECK(r == cudaErrorInvalidResourceHandle && cudaGetLastError() == r,
              "cudaStreamWaitEvent on another device's stream: %s", cudaGetErrorName(r));
    CHECK_NOTE(note, "cudaStreamWaitEvent", "belongs to device 1 but device 0 is current");

    /* an event of device 1 recorded on device 0's stream */
    note = capture_stderr([&] { r = cudaEventRecord(e1, s0); });
    NGT_CHECK(r == cudaErrorInvalidResourceHandle && cudaGetLastError() == r,
              "cudaEventRecord of another device's event: %s", cudaGetErrorName(r));
    CHECK_NOTE(note, "cudaEventRecord", "belongs to device 1", "to device 0");

    /* allowed: waiting on another device's event, synchronising another device's stream, the
     * NULL stream (the current device's) */
    CHECK_CUDA(cudaEventRecord(e0, s0));
    CHECK_CUDA(cudaSetDevice(1));
    CHECK_CUDA(cudaEventRecord(e1, s1));
    CHECK_CUDA(cudaStreamWaitEvent(s1, e0, 0));
    CHECK_CUDA(cudaStreamWaitEvent(0, e0, 0));
    CHECK_CUDA(cudaStreamSynchronize(s0));
    float ms = 0.0f;
    note = capture_stderr([&] { r = cudaEventElapsedTime(&ms, e0, e1); });
    NGT_CHECK(r == cudaErrorInvalidResourceHandle && cudaGetLastError() == r,
              "cudaEventElapsedTime across devices: %s", cudaGetErrorName(r));
    CHECK_NOTE(note, "cudaEventElapsedTime", "device 0", "device 1");
    CHECK_CUDA(cudaSetDevice(0));
    CHECK_CUDA(cudaMemsetAsync(d0, 0, n * sizeof(float), 0));
    NG_LAUNCH(affine_kernel, 1, n, 0, s0)(d0, y0, 1.0f, 2.0f, n);
    CHECK_CUDA(cudaGetLastError());
    y = host_floats(y0, n);
    NGT_CHECK(!y.empty() && y[7] == 2.0f, "launch on the own stream: %g", y.empty() ? -1.0 : y[7]);

    CHECK_CUDA(cudaFree(d0));
    CHECK_CUDA(cudaFree(y0));
    CHECK_CUDA(cudaStreamDestroy(s0));
    CHECK_CUDA(cudaStreamDestroy(s1)); /* destroying another device's stream is allowed */
    CHECK_CUDA(cudaEventDestroy(e0));
    CHECK_CUDA(cudaEventDestroy(e1));
    return NGT_PASS;
}

static int test_async_copies_stay_on_their_device(void) {
    NEED_TWO_DEVICES();
    const int n = 32;
    std::vector<float> h(n, 1.0f);
    float *d1, *d0;
    cudaError_t r = cudaSuccess;
    std::string note;
    CHECK_CUDA(cudaSetDevice(1));
    d1 = dev_floats(h);
    CHECK_CUDA(cudaSetDevice(0));
    d0 = dev_floats(h);
    NGT_CHECK(d0 && d1, "device copies");
    note = capture_stderr([&] {
        r = cudaMemcpyAsync(d1, h.data(), n * sizeof(float), cudaMemcpyHostToDevice, 0);
    });
    NGT_CHECK(r == cudaErrorInvalidValue && cudaGetLastError() == r,
              "host-to-device copy into device 1 memory on device 0's stream: %s",
              cudaGetErrorName(r));
    CHECK_NOTE(note, "cudaMemcpyAsync", "stream of device 0", "memory of device 1");
    note = capture_stderr([&] {
        r = cudaMemcpyAsync(h.data(), d1, n * sizeof(float), cudaMemcpyDeviceToHost, 0);
    });
    NGT_CHECK(r == cudaErrorInvalidValue && cudaGetLastError() == r,
              "device-to-host copy from device 1 memory on device 0's stream: %s",
              cudaGetErrorName(r));
    CHECK_NOTE(note, "cudaMemcpyAsync", "stream of device 0", "memory of device 1");
    note = capture_stderr([&] { r = cudaMemsetAsync(d1, 0, n * sizeof(float), 0); });
    NGT_CHECK(r == cudaErrorInvalidValue && cudaGetLastError() == r,
              "memset of device 1 memory on device 0's stream: %s", cudaGetErrorName(r));
    CHECK_NOTE(note, "cudaMemsetAsync", "memory of device 1", "belongs to device 0");
    /* allowed: a peer copy (one side on the stream's device), synchronous copies and memsets */
    CHECK_CUDA(cudaMemcpyAsync(d0, d1, n * sizeof(float), cudaMemcpyDeviceToDevice, 0));
    CHECK_CUDA(cudaMemcpyAsync(d1, d0, n * sizeof(float), cudaMemcpyDefault, 0));
    CHECK_CUDA(cudaMemcpy(d1, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemset(d1, 0, n * sizeof(float)));
    std::vector<float> y = host_floats(d1, n);
    NGT_CHECK(!y.empty() && y[5] == 0.0f, "cudaMemset of device 1 memory from device 0");
    CHECK_CUDA(cudaFree(d0));
    CHECK_CUDA(cudaFree(d1));
    return NGT_PASS;
}

/* ---- misuse: kernel arguments of another device (abort) ------------------------------------- */

static void launch_with_pointer_of_device_1(void) {
    float *d1;
    cudaSetDevice(1);
    cudaMalloc((void **)&d1, 64 * sizeof(float));
    cudaSetDevice(0);
    NG_LAUNCH(store_kernel, 1, 1, 0, 0)(d1, 0, 1.0f);
}

static void launch_on_device_1_with_pointer_of_device_0(void) {
    float *x0, *y1;
    cudaSetDevice(0);
    cudaMalloc((void **)&x0, 64 * sizeof(float));
    cudaSetDevice(1);
    cudaMalloc((void **)&y1, 64 * sizeof(float));
    NG_LAUNCH(affine_kernel, 1, 64, 0, 0)(y1, y1, 1.0f, 0.0f, 64); /* fine */
    NG_LAUNCH(affine_kernel, 1, 64, 0, 0)(y1, x0, 1.0f, 0.0f, 64);
}

static int test_kernel_pointer_of_other_device_aborts(void) {
    NEED_TWO_DEVICES();
    int r;
    if ((r = expect_abort("device 1 memory in a launch on device 0",
                          launch_with_pointer_of_device_1,
                          {"kernel store_kernel launched on device 0: pointer argument 0",
                           "is memory of device 1"})) != NGT_PASS)
        return r;
    return expect_abort("device 0 memory in a launch on device 1",
                        launch_on_device_1_with_pointer_of_device_0,
                        {"kernel affine_kernel launched on device 1: pointer argument 1",
                         "is memory of device 0"});
}

/* ---- misuse: library handles and operands ---------------------------------------------------- */

static int test_cublas_device_misuse(void) {
    NEED_TWO_DEVICES();
    const int m = 6, n = 5, k = 4;
    std::vector<float> A(m * k), B(k * n), C(m * n, 0.0f);
    for (size_t i = 0; i < A.size(); i++) A[i] = (float)(i % 7) - 3.0f;
    for (size_t i = 0; i < B.size(); i++) B[i] = (float)(i % 5) * 0.5f;
    cublasHandle_t h[2];
    cudaStream_t s0;
    float *dA[2], *dB[2], *dC[2], *dalpha0, alpha = 1.0f, beta = 0.0f, r = 0.0f;
    cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
    std::string note;
    for (int d = 0; d < 2; d++) {
        CHECK_CUDA(cudaSetDevice(d));
        NGT_CHECK(cublasCreate(&h[d]) == CUBLAS_STATUS_SUCCESS, "cublasCreate on device %d", d);
        dA[d] = dev_floats(A);
        dB[d] = dev_floats(B);
        dC[d] = dev_floats(C);
        NGT_CHECK(dA[d] && dB[d] && dC[d], "device copies");
        NGT_CHECK(cublasSgemm(h[d], CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, dA[d], m, dB[d], k,
                              &beta, dC[d], m) == CUBLAS_STATUS_SUCCESS,
                  "sgemm on device %d", d);
    }
    std::vector<float> c0 = host_floats(dC[0], C.size()), c1 = host_floats(dC[1], C.size());
    NGT_CHECK(!c0.empty() && c0 == c1, "sgemm results differ between the devices");
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float want = 0.0f; /* small integers and halves: exact in float */
            for (int l = 0; l < k; l++) want += A[i + m * l] * B[l + k * j];
            NGT_CHECK(c0[i + m * j] == want, "sgemm C(%d,%d) = %g, want %g", i, j, c0[i + m * j],
                      want);
        }

    /* device 1 current, device 0's handle */
    CHECK_CUDA(cudaSetDevice(1));
    note = capture_stderr([&] {
        st = cublasSgemm(h[0], CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, dA[0], m, dB[0], k, &beta,
                         dC[0], m);
    });
    NGT_CHECK(st == CUBLAS_STATUS_EXECUTION_FAILED, "sgemm with another device's handle: %s",
              cublasGetStatusName(st));
    CHECK_NOTE(note, "cublasSgemm: handle", "belongs to device 0 but device 1 is current");
    note = capture_stderr([&] {
        st = cublasStrsm(h[0], CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N,
                         CUBLAS_DIAG_UNIT, k, n, &alpha, dA[0], m, dB[0], k);
    });
    NGT_CHECK(st == CUBLAS_STATUS_EXECUTION_FAILED, "strsm with another device's handle: %s",
              cublasGetStatusName(st));
    CHECK_NOTE(note, "cublasStrsm: handle", "belongs to device 0 but device 1 is current");
    note = capture_stderr([&] { st = cublasSdot(h[0], m, dA[0], 1, dA[0], 1, &r); });
    NGT_CHECK(st == CUBLAS_STATUS_EXECUTION_FAILED, "sdot with another device's handle: %s",
              cublasGetStatusName(st));
    CHECK_NOTE(note, "cublasSdot: handle", "belongs to device 0 but device 1 is current");

    /* device 1's handle, operands of device 0 */
    note = capture_stderr([&] {
        st = cublasSgemm(h[1], CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, dA[0], m, dB[1], k, &beta,
                         dC[1], m);
    });
    NGT_CHECK(st == CUBLAS_STATUS_EXECUTION_FAILED, "sgemm with A of another device: %s",
              cublasGetStatusName(st));
    CHECK_NOTE(note, "cublasSgemm: A", "is memory of device 0 but the handle belongs to device 1");
    note = capture_stderr([&] {
        st = cublasSgemm(h[1], CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, dA[1], m, dB[1], k, &beta,
                         dC[0], m);
    });
    NGT_CHECK(st == CUBLAS_STATUS_EXECUTION_FAILED, "sgemm with C of another device: %s",
              cublasGetStatusName(st));
    CHECK_NOTE(note, "cublasSgemm: C", "is memory of device 0 but the handle belongs to device 1");
    note = capture_stderr([&] { st = cublasSaxpy(h[1], m, &alpha, dA[1], 1, dA[0], 1); });
    NGT_CHECK(st == CUBLAS_STATUS_EXECUTION_FAILED, "saxpy with y of another device: %s",
              cublasGetStatusName(st));
    CHECK_NOTE(note, "cublasSaxpy: y", "is memory of device 0 but the handle belongs to device 1");
    /* a device-mode scalar of the other device */
    CHECK_CUDA(cudaSetDevice(0));
    dalpha0 = dev_floats(std::vector<float>(1, 1.0f));
    NGT_CHECK(dalpha0 != NULL, "device copy");
    CHECK_CUDA(cudaSetDevice(1));
    NGT_CHECK(cublasSetPointerMode(h[1], CUBLAS_POINTER_MODE_DEVICE) == CUBLAS_STATUS_SUCCESS,
              "pointer mode");
    note = capture_stderr([&] { st = cublasSscal(h[1], m, dalpha0, dA[1], 1); });
    NGT_CHECK(st == CUBLAS_STATUS_EXECUTION_FAILED, "sscal with alpha of another device: %s",
              cublasGetStatusName(st));
    CHECK_NOTE(note, "cublasSscal: alpha",
               "is memory of device 0 but the handle belongs to device 1");
    NGT_CHECK(cublasSetPointerMode(h[1], CUBLAS_POINTER_MODE_HOST) == CUBLAS_STATUS_SUCCESS,
              "pointer mode");
    std::vector<float> after = host_floats(dC[1], C.size());
    NGT_CHECK(after == c1, "a rejected call wrote C on device 1");
    after = host_floats(dA[1], A.size());
    NGT_CHECK(after == A, "a rejected call wrote A on device 1");

    /* a stream of device 0 for device 1's handle */
    CHECK_CUDA(cudaSetDevice(0));
    CHECK_CUDA(cudaStreamCreate(&s0));
    note = capture_stderr([&] { st = cublasSetStream(h[1], s0); });
    NGT_CHECK(st == CUBLAS_STATUS_INVALID_VALUE, "cublasSetStream with another device's stream: %s",
              cublasGetStatusName(st));
    CHECK_NOTE(note, "cublasSetStream", "belongs to device 0", "to device 1");
    NGT_CHECK(cublasSetStream(h[0], s0) == CUBLAS_STATUS_SUCCESS, "own stream");

    for (int d = 0; d < 2; d++) {
        CHECK_CUDA(cudaSetDevice(d));
        NGT_CHECK(cublasDestroy(h[d]) == CUBLAS_STATUS_SUCCESS, "destroy");
        cudaFree(dA[d]);
        cudaFree(dB[d]);
        cudaFree(dC[d]);
    }
    cudaFree(dalpha0);
    CHECK_CUDA(cudaStreamDestroy(s0));
    CHECK_CUDA(cudaSetDevice(0));
    return NGT_PASS;
}

static int test_cusolver_device_misuse(void) {
    NEED_TWO_DEVICES();
    const int n = 4;
    std::vector<float> A(n * n, 0.0f);
    for (int i = 0; i < n; i++) A[i + n * i] = 4.0f;
    cusolverDnHandle_t h0, h1;
    cudaStream_t s0;
    float *dA0, *dA1, *w1;
    int *info0, *info1, lwork = 0, info = -1;
    cusolverStatus_t st = CUSOLVER_STATUS_SUCCESS;
    std::string note;
    CHECK_CUDA(cudaSetDevice(0));
    NGT_CHECK(cusolverDnCreate(&h0) == CUSOLVER_STATUS_SUCCESS, "create on device 0");
    CHECK_CUDA(cudaStreamCreate(&s0));
    dA0 = dev_floats(A);
    CHECK_CUDA(cudaMalloc((void **)&info0, sizeof(int)));
    CHECK_CUDA(cudaSetDevice(1));
    NGT_CHECK(cusolverDnCreate(&h1) == CUSOLVER_STATUS_SUCCESS, "create on device 1");
    dA1 = dev_floats(A);
    CHECK_CUDA(cudaMalloc((void **)&info1, sizeof(int)));
    NGT_CHECK(dA0 && dA1, "device copies");
    /* a size query touches no memory: answered from any device */
    NGT_CHECK(cusolverDnSpotrf_bufferSize(h0, CUBLAS_FILL_MODE_LOWER, n, dA0, n, &lwork) ==
                  CUSOLVER_STATUS_SUCCESS,
              "bufferSize");
    CHECK_CUDA(cudaMalloc((void **)&w1, (size_t)lwork * sizeof(float)));
    NGT_CHECK(cusolverDnSpotrf(h1, CUBLAS_FILL_MODE_LOWER, n, dA1, n, w1, lwork, info1) ==
                  CUSOLVER_STATUS_SUCCESS,
              "potrf on device 1");
    CHECK_CUDA(cudaMemcpy(&info, info1, sizeof(int), cudaMemcpyDeviceToHost));
    std::vector<float> L = host_floats(dA1, A.size());
    NGT_CHECK(info == 0 && !L.empty() && L[0] == 2.0f, "potrf on device 1: info %d, L00 %g", info,
              L.empty() ? -1.0 : L[0]);

    note = capture_stderr([&] {
        st = cusolverDnSpotrf(h0, CUBLAS_FILL_MODE_LOWER, n, dA0, n, w1, lwork, info0);
    });
    NGT_CHECK(st == CUSOLVER_STATUS_EXECUTION_FAILED, "potrf with another device's handle: %d",
              (int)st);
    CHECK_NOTE(note, "cusolverDnSpotrf: handle", "belongs to device 0 but device 1 is current");
    note = capture_stderr([&] {
        st = cusolverDnSpotrf(h1, CUBLAS_FILL_MODE_LOWER, n, dA0, n, w1, lwork, info1);
    });
    NGT_CHECK(st == CUSOLVER_STATUS_EXECUTION_FAILED, "potrf with A of another device: %d",
              (int)st);
    CHECK_NOTE(note, "cusolverDnSpotrf: A",
               "is memory of device 0 but the handle belongs to device 1");
    note = capture_stderr([&] {
        st = cusolverDnSpotrf(h1, CUBLAS_FILL_MODE_LOWER, n, dA1, n, w1, lwork, info0);
    });
    NGT_CHECK(st == CUSOLVER_STATUS_EXECUTION_FAILED, "potrf with devInfo of another device: %d",
              (int)st);
    CHECK_NOTE(note, "cusolverDnSpotrf: devInfo", "is memory of device 0");
    note = capture_stderr([&] { st = cusolverDnSetStream(h1, s0); });
    NGT_CHECK(st == CUSOLVER_STATUS_INVALID_VALUE, "cusolverDnSetStream with another device's "
                                                   "stream: %d",
              (int)st);
    CHECK_NOTE(note, "cusolverDnSetStream", "belongs to device 0", "to device 1");
    std::vector<float> after = host_floats(dA0, A.size());
    NGT_CHECK(after == A, "a rejected potrf wrote device 0's A");

    NGT_CHECK(cusolverDnDestroy(h1) == CUSOLVER_STATUS_SUCCESS, "destroy");
    CHECK_CUDA(cudaSetDevice(0));
    NGT_CHECK(cusolverDnDestroy(h0) == CUSOLVER_STATUS_SUCCESS, "destroy");
    cudaFree(dA0);
    cudaFree(dA1);
    cudaFree(w1);
    cudaFree(info0);
    cudaFree(info1);
    CHECK_CUDA(cudaStreamDestroy(s0));
    return NGT_PASS;
}

static int test_curand_device_misuse(void) {
    NEED_TWO_DEVICES();
    const size_t n = 100;
    curandGenerator_t g0, g1;
    float *u0, *u1;
    curandStatus_t st = CURAND_STATUS_SUCCESS;
    std::string note;
    CHECK_CUDA(cudaSetDevice(0));
    NGT_CHECK(curandCreateGenerator(&g0, CURAND_RNG_PSEUDO_PHILOX4_32_10) == CURAND_STATUS_SUCCESS,
              "create on device 0");
    CHECK_CUDA(cudaMalloc((void **)&u0, n * sizeof(float)));
    CHECK_CUDA(cudaSetDevice(1));
    NGT_CHECK(curandCreateGenerator(&g1, CURAND_RNG_PSEUDO_PHILOX4_32_10) == CURAND_STATUS_SUCCESS,
              "create on device 1");
    CHECK_CUDA(cudaMalloc((void **)&u1, n * sizeof(float)));
    NGT_CHECK(curandSetPseudoRandomGeneratorSeed(g0, 77) == CURAND_STATUS_SUCCESS &&
                  curandSetPseudoRandomGeneratorSeed(g1, 77) == CURAND_STATUS_SUCCESS,
              "seeds");
    note = capture_stderr([&] { st = curandGenerateUniform(g0, u0, n); });
    NGT_CHECK(st == CURAND_STATUS_LAUNCH_FAILURE, "generate with another device's generator: %d",
              (int)st);
    CHECK_NOTE(note, "curandGenerateUniform: generator",
               "belongs to device 0 but device 1 is current");
    note = capture_stderr([&] { st = curandGenerateUniform(g1, u0, n); });
    NGT_CHECK(st == CURAND_STATUS_LAUNCH_FAILURE, "generate into another device's memory: %d",
              (int)st);
    CHECK_NOTE(note, "curandGenerateUniform: output",
               "is memory of device 0 but the generator belongs to device 1");
    NGT_CHECK(curandGenerateUniform(g1, u1, n) == CURAND_STATUS_SUCCESS, "generate on device 1");
    CHECK_CUDA(cudaSetDevice(0));
    NGT_CHECK(curandGenerateUniform(g0, u0, n) == CURAND_STATUS_SUCCESS, "generate on device 0");
    std::vector<float> a = host_floats(u0, n), b = host_floats(u1, n);
    NGT_CHECK(!a.empty() && a == b, "same seed, different streams on the two devices");
    NGT_CHECK(curandDestroyGenerator(g0) == CURAND_STATUS_SUCCESS &&
                  curandDestroyGenerator(g1) == CURAND_STATUS_SUCCESS,
              "destroy");
    cudaFree(u0);
    cudaFree(u1);
    return NGT_PASS;
}

int main(int argc, char **argv) {
    ssize_t len = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (len > 0)
        self_path[len] = 0;
    else
        snprintf(self_path, sizeof self_path, "%s", argv[0]);
    if (argc > 1 && strcmp(argv[1], "--probe-count") == 0) return probe_count();
    if (argc > 1 && strcmp(argv[1], "--probe-budget") == 0) return probe_budget();
    NGT_RUN(test_device_count_and_selection);
    NGT_RUN(test_current_device_is_per_thread);
    NGT_RUN(test_device_count_setting);
    NGT_RUN(test_memory_info_per_device);
    NGT_RUN(test_kernels_on_two_devices);
    NGT_RUN(test_stream_of_other_device_is_rejected);
    NGT_RUN(test_async_copies_stay_on_their_device);
    NGT_RUN(test_kernel_pointer_of_other_device_aborts);
    NGT_RUN(test_cublas_device_misuse);
    NGT_RUN(test_cusolver_device_misuse);
    NGT_RUN(test_curand_device_misuse);
    return ngt_finish();
}
