/* test_simt_device.cpp: the SIMT emulator's device language, with kernels written for the test.
 * Checks block-shared memory with __syncthreads (tree reduction), warp shuffles and ballots,
 * dynamic shared memory (fresh NaN bytes per block), 3-D indices, atomics, launch-configuration
 * errors reported by cudaGetLastError (the kernel must not run), and the cuRAND device subset
 * against the project's Philox (kernels/ng_math.h) bit for bit. Planted bugs (a missing
 * __syncthreads, a grid one block short) must make the comparison with the reference FAIL: that is
 * what shows the emulator exposes them. Sums are compared exactly where the test replays the
 * kernel's own summation order on the host, else with the tolerance stated at the check. */
#include "ng_cuda.cuh"

#include <stdint.h>
#include <stdlib.h>
#include <vector>

#include "harness.h"

#define CHECK_CUDA(call)                                                                           \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        NGT_CHECK(e_ == cudaSuccess, "%s -> %s", #call, cudaGetErrorName(e_));                     \
    } while (0)

enum { RED_BLOCK = 256 };

/* ---- kernels --------------------------------------------------------------------------------- */

/* out[b] = sum of x over block b's RED_BLOCK elements: shared-memory tree with barriers. */
static __global__ void tree_sum_kernel(const float *x, float *out, int n) {
    __shared__ float s[RED_BLOCK];
    const int t = (int)threadIdx.x;
    const int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    s[t] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (int h = RED_BLOCK / 2; h > 0; h >>= 1) {
        if (t < h) s[t] += s[t + h];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = s[0];
}

/* The same with the barrier inside the loop forgotten (planted bug). */
static __global__ void tree_sum_nosync_kernel(const float *x, float *out, int n) {
    __shared__ float s[RED_BLOCK];
    const int t = (int)threadIdx.x;
    const int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    s[t] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (int h = RED_BLOCK / 2; h > 0; h >>= 1) {
        if (t < h) s[t] += s[t + h];
    }
    if (t == 0) out[blockIdx.x] = s[0];
}

/* Per-warp sums by a xor butterfly (every lane gets the sum) and by shfl_down (lane 0 gets it),
 * block sum through shared memory; also a shfl_up inclusive scan, a broadcast and a ballot. */
static __global__ void warp_kernel(const float *x, float *warp_xor, float *warp_down, float *scan,
                                   float *bcast, unsigned *ballot, float *block_sum) {
    __shared__ float part[32];
    const unsigned t = threadIdx.x, lane = t % 32u, w = t / 32u;
    const unsigned i = blockIdx.x * blockDim.x + t;
    float v = x[i], a = v, d = v, sc = v;
    for (int m = 16; m > 0; m >>= 1) a += __shfl_xor_sync(0xffffffffu, a, m);
    for (unsigned o = 16; o > 0; o >>= 1) d += __shfl_down_sync(0xffffffffu, d, o);
    for (unsigned o = 1; o < 32u; o <<= 1) {
        float u = __shfl_up_sync(0xffffffffu, sc, o);
        if (lane >= o) sc += u;
    }
    warp_xor[i] = a;
    if (lane == 0) warp_down[blockIdx.x * (blockDim.x / 32u) + w] = d;
    scan[i] = sc;
    bcast[i] = __shfl_sync(0xffffffffu, v, 7);
    unsigned b = __ballot_sync(0xffffffffu, v > 0.5f);
    if (lane == 0) ballot[blockIdx.x * (blockDim.x / 32u) + w] = b;
    if (lane == 0) part[w] = d;
    __syncthreads();
    if (w == 0) {
        float p = lane < blockDim.x / 32u ? part[lane] : 0.0f;
        for (int m = 16; m > 0; m >>= 1) p += __shfl_xor_sync(0xffffffffu, p, m);
        if (lane == 0) block_sum[blockIdx.x] = p;
    }
}

/* Reverse each block's slice through dynamic shared memory; first[i] = what the thread read from
 * its shared slot before anyone wrote it (must be NaN: fresh dynamic shared memory). */
static __global__ void dyn_reverse_kernel(const float *x, float *y, float *first) {
    NG_DYN_SHARED(float, buf);
    const unsigned t = threadIdx.x, n = blockDim.x;
    const unsigned i = blockIdx.x * n + t;
    first[i] = buf[n + t]; /* second half: never written by this kernel */
    buf[t] = x[i];
    __syncthreads();
    y[i] = buf[n - 1u - t];
}

/* out[linear thread id] = packed (thread, block) coordinates of a 3-D launch. */
static __global__ void index_kernel(unsigned *out) {
    unsigned tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    unsigned bid = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    unsigned nt = blockDim.x * blockDim.y * blockDim.z;
    out[bid * nt + tid] = threadIdx.x | threadIdx.y << 4 | threadIdx.z << 8 | blockIdx.x << 12 |
                          blockIdx.y << 16 | blockIdx.z << 20;
}

static __global__ void atomic_kernel(int *count, float *fsum, const float *x, int n) {
    int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < n) {
        atomicAdd(count, 1);
        atomicAdd(fsum, x[i]);
        atomicMax(count + 1, i);
    }
}

/* y[i] = 2 x[i], one element per thread, no grid-stride loop. */
static __global__ void twice_kernel(const float *x, float *y, int n) {
    int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < n) y[i] = 2.0f * x[i];
}

static __global__ void mark_kernel(int *flag) { *flag = 1; }

/* Word and uniform of element i of stream (key, step), one thread per element. */
static __global__ void curand_word_kernel(uint64_t key, uint64_t step, uint64_t first, int n,
                                          unsigned *word, float *unif) {
    int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= n) return;
    curandStatePhilox4_32_10_t st;
    curand_init(key, step, first + (uint64_t)i, &st);
    word[i] = curand(&st);
    curand_init(key, step, first + (uint64_t)i, &st);
    unif[i] = curand_uniform(&st);
}

/* Thread 0 draws `n` words sequentially from offset `first` (crossing Philox blocks), then four
 * with curand4 and four uniforms with curand_uniform4, then normals. */
static __global__ void curand_seq_kernel(uint64_t key, uint64_t step, uint64_t first, int n,
                                         unsigned *word, unsigned *w4, float *u4, float *normal) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    curandStatePhilox4_32_10_t st;
    curand_init(key, step, first, &st);
    for (int j = 0; j < n; j++) word[j] = curand(&st);
    uint4 q = curand4(&st);
    w4[0] = q.x;
    w4[1] = q.y;
    w4[2] = q.z;
    w4[3] = q.w;
    float4 u = curand_uniform4(&st);
    u4[0] = u.x;
    u4[1] = u.y;
    u4[2] = u.z;
    u4[3] = u.w;
    curand_init(key, step, first, &st);
    for (int j = 0; j < 4; j++) normal[j] = curand_normal(&st);
}

/* ---- helpers --------------------------------------------------------------------------------- */

template <class T> static T *dev_alloc(size_t n) {
    void *p = NULL;
    if (cudaMalloc(&p, n * sizeof(T)) != cudaSuccess) return NULL;
    return (T *)p;
}

template <class T> static int to_dev(T *d, const std::vector<T> &h) {
    return cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess;
}

template <class T> static int to_host(std::vector<T> &h, const T *d) {
    return cudaMemcpy(h.data(), d, h.size() * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess;
}

static std::vector<float> random_floats(size_t n, unsigned seed) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; i++) v[i] = ng_uniform_at(seed, 99, i) - 0.25f;
    return v;
}

/* The kernel's tree order replayed on the host: exact reference for tree_sum_kernel. */
static std::vector<float> tree_sums(const std::vector<float> &x, int blocks) {
    std::vector<float> out(blocks);
    for (int b = 0; b < blocks; b++) {
        float s[RED_BLOCK];
        for (int t = 0; t < RED_BLOCK; t++) {
            size_t i = (size_t)b * RED_BLOCK + t;
            s[t] = i < x.size() ? x[i] : 0.0f;
        }
        for (int h = RED_BLOCK / 2; h > 0; h >>= 1)
            for (int t = 0; t < h; t++) s[t] += s[t + h];
        out[b] = s[0];
    }
    return out;
}

/* ---- tests ----------------------------------------------------------------------------------- */

/* Grids of 8192 threads or more are shared among the emulator's OS threads; the sizes below make
 * the reductions and atomics run that way. */
static int test_tree_reduction(void) {
    const int n = 40000, blocks = (n + RED_BLOCK - 1) / RED_BLOCK;
    std::vector<float> x = random_floats(n, 1), got(blocks);
    float *dx = dev_alloc<float>(n), *dout = dev_alloc<float>(blocks);
    NGT_CHECK(dx && dout, "cudaMalloc failed");
    NGT_CHECK(to_dev(dx, x), "copy in");
    NG_LAUNCH(tree_sum_kernel, blocks, RED_BLOCK, 0, 0)(dx, dout, n);
    CHECK_CUDA(cudaGetLastError());
    NGT_CHECK(to_host(got, dout), "copy out");
    std::vector<float> want = tree_sums(x, blocks);
    /* exact: same additions in the same order */
    NGT_CHECK(ngt_compare("tree sums", got.data(), want.data(), blocks, 0.0, 0.0) == 0,
              "block sums differ from the host replay of the tree");
    double total = 0.0, gs = 0.0;
    for (float v : x) total += v;
    for (float v : got) gs += v;
    /* tree rounding: <= 8 levels x 6e-8 x |block sum| (~64) per block, ~5e-3 over 157 blocks */
    NGT_CLOSE(gs, total, 1e-6 * n, "grand total of the block sums vs a double sum");
    cudaFree(dx);
    cudaFree(dout);
    return NGT_PASS;
}

static int test_missing_syncthreads_is_caught(void) {
    const int n = 16384, blocks = n / RED_BLOCK;
    std::vector<float> x = random_floats(n, 2), got(blocks);
    float *dx = dev_alloc<float>(n), *dout = dev_alloc<float>(blocks);
    NGT_CHECK(dx && dout, "cudaMalloc failed");
    NGT_CHECK(to_dev(dx, x), "copy in");
    NG_LAUNCH(tree_sum_nosync_kernel, blocks, RED_BLOCK, 0, 0)(dx, dout, n);
    CHECK_CUDA(cudaGetLastError());
    NGT_CHECK(to_host(got, dout), "copy out");
    std::vector<float> want = tree_sums(x, blocks);
    printf("  (planted bug: the mismatches below are expected)\n");
    int differs = ngt_compare("nosync sums", got.data(), want.data(), blocks, 1e-4, 1e-4);
    NGT_CHECK(differs, "a reduction without its loop barrier matched the reference: the emulator "
                       "did not expose the race");
    cudaFree(dx);
    cudaFree(dout);
    return NGT_PASS;
}

static int test_warp_shuffles(void) {
    const int blocks = 3, threads = 128, n = blocks * threads, warps = n / 32;
    std::vector<float> x = random_floats(n, 3);
    std::vector<float> axor(n), adown(warps), scan(n), bcast(n), bsum(blocks);
    std::vector<unsigned> ballot(warps);
    float *dx = dev_alloc<float>(n), *dxor = dev_alloc<float>(n), *ddown = dev_alloc<float>(warps);
    float *dscan = dev_alloc<float>(n), *dbc = dev_alloc<float>(n), *dbs = dev_alloc<float>(blocks);
    unsigned *dbal = dev_alloc<unsigned>(warps);
    NGT_CHECK(dx && dxor && ddown && dscan && dbc && dbs && dbal, "cudaMalloc failed");
    NGT_CHECK(to_dev(dx, x), "copy in");
    NG_LAUNCH(warp_kernel, blocks, threads, 0, 0)(dx, dxor, ddown, dscan, dbc, dbal, dbs);
    CHECK_CUDA(cudaGetLastError());
    NGT_CHECK(to_host(axor, dxor) && to_host(adown, ddown) && to_host(scan, dscan) &&
                  to_host(bcast, dbc) && to_host(bsum, dbs) && to_host(ballot, dbal),
              "copy out");
    for (int w = 0; w < warps; w++) {
        const float *v = &x[(size_t)w * 32];
        /* exact replays of the butterfly and of the shfl_down tree */
        float bf[32], dn[32], sc[32];
        for (int l = 0; l < 32; l++) bf[l] = dn[l] = sc[l] = v[l];
        for (int m = 16; m > 0; m >>= 1) {
            float nb[32];
            for (int l = 0; l < 32; l++) nb[l] = bf[l] + bf[l ^ m];
            for (int l = 0; l < 32; l++) bf[l] = nb[l];
        }
        for (int o = 16; o > 0; o >>= 1) {
            float nd[32];
            for (int l = 0; l < 32; l++) nd[l] = dn[l] + (l + o < 32 ? dn[l + o] : dn[l]);
            for (int l = 0; l < 32; l++) dn[l] = nd[l];
        }
        for (int o = 1; o < 32; o <<= 1) {
            float ns[32];
            for (int l = 0; l < 32; l++) ns[l] = sc[l] + (l >= o ? sc[l - o] : 0.0f);
            for (int l = 0; l < 32; l++) sc[l] = ns[l];
        }
        unsigned bal = 0;
        for (int l = 0; l < 32; l++) bal |= (v[l] > 0.5f ? 1u : 0u) << l;
        for (int l = 0; l < 32; l++) {
            NGT_CHECK(axor[(size_t)w * 32 + l] == bf[l], "xor butterfly warp %d lane %d: %g vs %g",
                      w, l, axor[(size_t)w * 32 + l], bf[l]);
            NGT_CHECK(scan[(size_t)w * 32 + l] == sc[l], "shfl_up scan warp %d lane %d: %g vs %g",
                      w, l, scan[(size_t)w * 32 + l], sc[l]);
            NGT_CHECK(bcast[(size_t)w * 32 + l] == v[7], "broadcast warp %d lane %d", w, l);
        }
        NGT_CHECK(adown[w] == dn[0], "shfl_down sum warp %d: %g vs %g", w, adown[w], dn[0]);
        NGT_CHECK(ballot[w] == bal, "ballot warp %d: %08x vs %08x", w, ballot[w], bal);
    }
    for (int b = 0; b < blocks; b++) {
        double s = 0.0;
        for (int i = 0; i < threads; i++) s += x[(size_t)b * threads + i];
        NGT_CLOSE(bsum[b], s, 1e-4, "block sum of 128 values in (-0.25, 0.75] (float rounding)");
    }
    cudaFree(dx);
    cudaFree(dxor);
    cudaFree(ddown);
    cudaFree(dscan);
    cudaFree(dbc);
    cudaFree(dbs);
    cudaFree(dbal);
    return NGT_PASS;
}

static int test_dynamic_shared(void) {
    const int blocks = 4, threads = 96, n = blocks * threads;
    std::vector<float> x = random_floats(n, 4), y(n), first(n);
    float *dx = dev_alloc<float>(n), *dy = dev_alloc<float>(n), *df = dev_alloc<float>(n);
    NGT_CHECK(dx && dy && df, "cudaMalloc failed");
    NGT_CHECK(to_dev(dx, x), "copy in");
    NG_LAUNCH(dyn_reverse_kernel, blocks, threads, 2 * threads * sizeof(float), 0)(dx, dy, df);
    CHECK_CUDA(cudaGetLastError());
    NGT_CHECK(to_host(y, dy) && to_host(first, df), "copy out");
    for (int b = 0; b < blocks; b++)
        for (int t = 0; t < threads; t++) {
            int i = b * threads + t;
            NGT_CHECK(y[i] == x[b * threads + threads - 1 - t], "reverse: block %d thread %d", b,
                      t);
            NGT_CHECK(first[i] != first[i], "unwritten dynamic shared memory read %g, not NaN",
                      first[i]);
        }
    cudaFree(dx);
    cudaFree(dy);
    cudaFree(df);
    return NGT_PASS;
}

static int test_indices_3d(void) {
    const dim3 grid(3, 2, 2), block(4, 3, 2);
    const size_t n = 3 * 2 * 2 * 4 * 3 * 2;
    std::vector<unsigned> got(n);
    unsigned *d = dev_alloc<unsigned>(n);
    NGT_CHECK(d != NULL, "cudaMalloc failed");
    NG_LAUNCH(index_kernel, grid, block, 0, 0)(d);
    CHECK_CUDA(cudaGetLastError());
    NGT_CHECK(to_host(got, d), "copy out");
    for (unsigned bz = 0; bz < 2; bz++)
        for (unsigned by = 0; by < 2; by++)
            for (unsigned bx = 0; bx < 3; bx++)
                for (unsigned tz = 0; tz < 2; tz++)
                    for (unsigned ty = 0; ty < 3; ty++)
                        for (unsigned tx = 0; tx < 4; tx++) {
                            unsigned bid = bx + 3 * (by + 2 * bz), tid = tx + 4 * (ty + 3 * tz);
                            unsigned want = tx | ty << 4 | tz << 8 | bx << 12 | by << 16 | bz << 20;
                            NGT_CHECK(got[bid * 24 + tid] == want,
                                      "thread (%u,%u,%u) block (%u,%u,%u)", tx, ty, tz, bx, by, bz);
                        }
    cudaFree(d);
    return NGT_PASS;
}

static int test_atomics(void) {
    const int n = 16000;
    std::vector<float> x(n, 0.5f);
    std::vector<int> cnt(2, 0);
    std::vector<float> fs(1, 0.0f);
    int *dc = dev_alloc<int>(2);
    float *dx = dev_alloc<float>(n), *dfs = dev_alloc<float>(1);
    NGT_CHECK(dc && dx && dfs, "cudaMalloc failed");
    NGT_CHECK(to_dev(dx, x) && to_dev(dc, cnt) && to_dev(dfs, fs), "copy in");
    NG_LAUNCH(atomic_kernel, 64, 256, 0, 0)(dc, dfs, dx, n);
    CHECK_CUDA(cudaGetLastError());
    NGT_CHECK(to_host(cnt, dc) && to_host(fs, dfs), "copy out");
    NGT_CHECK(cnt[0] == n && cnt[1] == n - 1, "atomicAdd count %d (want %d), atomicMax %d", cnt[0],
              n, cnt[1]);
    NGT_CLOSE(fs[0], 8000.0, 0.0, "atomicAdd of 16000 halves (exact in float, in any order)");
    cudaFree(dc);
    cudaFree(dx);
    cudaFree(dfs);
    return NGT_PASS;
}

static int test_grid_one_block_short_is_caught(void) {
    const int n = 1000, threads = 128, blocks_needed = (n + threads - 1) / threads;
    std::vector<float> x = random_floats(n, 5), y(n), want(n);
    float *dx = dev_alloc<float>(n), *dy = dev_alloc<float>(n);
    NGT_CHECK(dx && dy, "cudaMalloc failed");
    NGT_CHECK(to_dev(dx, x), "copy in");
    for (int i = 0; i < n; i++) want[i] = 2.0f * x[i];
    NG_LAUNCH(twice_kernel, blocks_needed, threads, 0, 0)(dx, dy, n);
    CHECK_CUDA(cudaGetLastError());
    NGT_CHECK(to_host(y, dy), "copy out");
    NGT_CHECK(ngt_compare("full grid", y.data(), want.data(), n, 0.0, 0.0) == 0,
              "the correct launch must match");
    cudaFree(dy);
    dy = dev_alloc<float>(n); /* fresh: NaN until written */
    NG_LAUNCH(twice_kernel, blocks_needed - 1, threads, 0, 0)(dx, dy, n);
    CHECK_CUDA(cudaGetLastError());
    NGT_CHECK(to_host(y, dy), "copy out");
    printf("  (planted bug: the mismatches below are expected)\n");
    NGT_CHECK(ngt_compare("short grid", y.data(), want.data(), n, 1e-6, 1e-6) != 0,
              "a grid one block short matched the reference: unwritten outputs went unnoticed");
    NGT_CHECK(y[n - 1] != y[n - 1], "the unwritten tail should read as NaN, got %g", y[n - 1]);
    cudaFree(dx);
    cudaFree(dy);
    return NGT_PASS;
}

/* Launch mark_kernel with a configuration; expect `want` from cudaGetLastError and no run when it
 * is an error. */
static int bad_launch(const char *what, dim3 grid, dim3 block, size_t shmem, cudaStream_t stream,
                      cudaError_t want) {
    int *flag = dev_alloc<int>(1);
    std::vector<int> h(1, 0);
    NGT_CHECK(flag && to_dev(flag, h), "setup");
    NG_LAUNCH(mark_kernel, grid, block, shmem, stream)(flag);
    cudaError_t peek = cudaPeekAtLastError();
    cudaError_t got = cudaGetLastError();
    NGT_CHECK(peek == want && got == want,
              "%s: cudaPeekAtLastError %s, cudaGetLastError %s, want %s", what,
              cudaGetErrorName(peek), cudaGetErrorName(got), cudaGetErrorName(want));
    NGT_CHECK(cudaGetLastError() == cudaSuccess, "%s: the error was not cleared", what);
    NGT_CHECK(to_host(h, flag), "copy out");
    NGT_CHECK(h[0] == (want == cudaSuccess ? 1 : 0), "%s: kernel %s", what,
              want == cudaSuccess ? "did not run" : "ran despite the error");
    cudaFree(flag);
    return NGT_PASS;
}

static int test_launch_configuration_errors(void) {
    cudaStream_t s = NULL, dead = NULL;
    int r;
    if ((r = bad_launch("1024 threads", 1, 1024, 0, 0, cudaSuccess)) != NGT_PASS) return r;
    if ((r = bad_launch("1025 threads", 1, 1025, 0, 0, cudaErrorInvalidConfiguration)) != NGT_PASS)
        return r;
    if ((r = bad_launch("0 threads", 1, 0, 0, 0, cudaErrorInvalidConfiguration)) != NGT_PASS)
        return r;
    if ((r = bad_launch("block (32,32,2)", 1, dim3(32, 32, 2), 0, 0,
                        cudaErrorInvalidConfiguration)) != NGT_PASS)
        return r;
    if ((r = bad_launch("block z 65", 1, dim3(1, 1, 65), 0, 0, cudaErrorInvalidConfiguration)) !=
        NGT_PASS)
        return r;
    if ((r = bad_launch("0 blocks", 0, 32, 0, 0, cudaErrorInvalidConfiguration)) != NGT_PASS)
        return r;
    if ((r = bad_launch("grid y 65536", dim3(1, 65536, 1), 32, 0, 0,
                        cudaErrorInvalidConfiguration)) != NGT_PASS)
        return r;
    if ((r = bad_launch("48 KiB shared", 1, 32, 48 * 1024, 0, cudaSuccess)) != NGT_PASS) return r;
    if ((r = bad_launch("48 KiB + 1 shared", 1, 32, 48 * 1024 + 1, 0, cudaErrorInvalidValue)) !=
        NGT_PASS)
        return r;
    CHECK_CUDA(cudaStreamCreate(&s));
    if ((r = bad_launch("created stream", 1, 32, 0, s, cudaSuccess)) != NGT_PASS) return r;
    CHECK_CUDA(cudaStreamCreate(&dead));
    CHECK_CUDA(cudaStreamDestroy(dead));
    if ((r = bad_launch("destroyed stream", 1, 32, 0, dead, cudaErrorInvalidResourceHandle)) !=
        NGT_PASS)
        return r;
    CHECK_CUDA(cudaStreamDestroy(s));
    return NGT_PASS;
}

static int test_shared_memory_opt_in(void) {
    int r;
    if ((r = bad_launch("64 KiB before opt-in", 1, 32, 64 * 1024, 0, cudaErrorInvalidValue)) !=
        NGT_PASS)
        return r;
    CHECK_CUDA(cudaFuncSetAttribute((const void *)mark_kernel,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024));
    if ((r = bad_launch("64 KiB after opt-in", 1, 32, 64 * 1024, 0, cudaSuccess)) != NGT_PASS)
        return r;
    NGT_CHECK(cudaFuncSetAttribute((const void *)mark_kernel,
                                   cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   300 * 1024) == cudaErrorInvalidValue,
              "an opt-in above the device's 227 KiB must fail");
    cudaGetLastError();
    return NGT_PASS;
}

static int test_curand_matches_ng_philox(void) {
    const int n = 1000;
    /* (key, step, first offset): plain, a step with high bits, offsets past 2^32 blocks */
    const uint64_t cases[][3] = {{0x1234567890abcdefull, 0, 0},
                                 {ng_rng_key(7, 3), 0x100000005ull, 3},
                                 {ng_rng_key(1, 1), 17, (1ull << 34) - 5},
                                 {~0ull, ~0ull - 1, (1ull << 40) + 1}};
    std::vector<unsigned> word(n);
    std::vector<float> unif(n);
    unsigned *dw = dev_alloc<unsigned>(n);
    float *du = dev_alloc<float>(n);
    NGT_CHECK(dw && du, "cudaMalloc failed");
    for (const auto &c : cases) {
        NG_LAUNCH(curand_word_kernel, (n + 127) / 128, 128, 0, 0)(c[0], c[1], c[2], n, dw, du);
        CHECK_CUDA(cudaGetLastError());
        NGT_CHECK(to_host(word, dw) && to_host(unif, du), "copy out");
        for (int i = 0; i < n; i++) {
            uint64_t idx = c[2] + (uint64_t)i;
            NGT_CHECK(
                word[i] == ng_philox_word(c[0], c[1], idx),
                "curand word %d of key %016llx step %llu offset %llu: %08x vs ng_philox_word %08x",
                i, (unsigned long long)c[0], (unsigned long long)c[1], (unsigned long long)idx,
                word[i], ng_philox_word(c[0], c[1], idx));
            NGT_CHECK(unif[i] == ng_uniform_at(c[0], c[1], idx), "curand_uniform %d: %.9g vs %.9g",
                      i, unif[i], ng_uniform_at(c[0], c[1], idx));
        }
    }
    cudaFree(dw);
    cudaFree(du);
    return NGT_PASS;
}

/* Box-Muller as cuRAND's host path computes it, from two stream words. */
static void box_muller_ref(uint32_t a, uint32_t b, float *x, float *y) {
    const float c = 2.3283064e-10f * 6.2831855f;
    float u = (float)a * 2.3283064e-10f + 2.3283064e-10f / 2.0f;
    float v = (float)b * c + c / 2.0f;
    float s = sqrtf(-2.0f * logf(u));
    *x = sinf(v) * s;
    *y = cosf(v) * s;
}

static int test_curand_sequences(void) {
    const uint64_t key = ng_rng_key(42, 9), step = 5;
    const uint64_t firsts[] = {0, 1, 2, 3, 6, (1ull << 32) * 4 - 2};
    const int n = 11;
    unsigned *dw = dev_alloc<unsigned>(n), *dw4 = dev_alloc<unsigned>(4);
    float *du4 = dev_alloc<float>(4), *dn = dev_alloc<float>(4);
    std::vector<unsigned> w(n), w4(4);
    std::vector<float> u4(4), nrm(4);
    NGT_CHECK(dw && dw4 && du4 && dn, "cudaMalloc failed");
    for (uint64_t f : firsts) {
        NG_LAUNCH(curand_seq_kernel, 1, 32, 0, 0)(key, step, f, n, dw, dw4, du4, dn);
        CHECK_CUDA(cudaGetLastError());
        NGT_CHECK(to_host(w, dw) && to_host(w4, dw4) && to_host(u4, du4) && to_host(nrm, dn),
                  "copy out");
        for (int j = 0; j < n; j++)
            NGT_CHECK(w[j] == ng_philox_word(key, step, f + (uint64_t)j),
                      "sequential curand word %d from offset %llu", j, (unsigned long long)f);
        for (int j = 0; j < 4; j++) {
            NGT_CHECK(w4[j] == ng_philox_word(key, step, f + (uint64_t)n + (uint64_t)j),
                      "curand4 word %d from offset %llu", j, (unsigned long long)(f + n));
            NGT_CHECK(u4[j] == ng_uniform_at(key, step, f + (uint64_t)n + 4u + (uint64_t)j),
                      "curand_uniform4 value %d from offset %llu", j,
                      (unsigned long long)(f + n + 4));
        }
        float a, b, c, d;
        box_muller_ref(ng_philox_word(key, step, f), ng_philox_word(key, step, f + 1), &a, &b);
        box_muller_ref(ng_philox_word(key, step, f + 2), ng_philox_word(key, step, f + 3), &c, &d);
        NGT_CHECK(nrm[0] == a && nrm[1] == b && nrm[2] == c && nrm[3] == d,
                  "curand_normal from offset %llu: %g %g %g %g vs %g %g %g %g",
                  (unsigned long long)f, nrm[0], nrm[1], nrm[2], nrm[3], a, b, c, d);
    }
    cudaFree(dw);
    cudaFree(dw4);
    cudaFree(du4);
    cudaFree(dn);
    return NGT_PASS;
}

int main(void) {
    NGT_RUN(test_tree_reduction);
    NGT_RUN(test_missing_syncthreads_is_caught);
    NGT_RUN(test_warp_shuffles);
    NGT_RUN(test_dynamic_shared);
    NGT_RUN(test_indices_3d);
    NGT_RUN(test_atomics);
    NGT_RUN(test_grid_one_block_short_is_caught);
    NGT_RUN(test_launch_configuration_errors);
    NGT_RUN(test_shared_memory_opt_in);
    NGT_RUN(test_curand_matches_ng_philox);
    NGT_RUN(test_curand_sequences);
    return ngt_finish();
}
