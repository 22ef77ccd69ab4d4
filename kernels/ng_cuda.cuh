/* ng_cuda.cuh: launch and check helpers shared by every kernels/<family>.cu.
 * Kernels launch only through NG_LAUNCH so that tests/simt can run them on the CPU unmodified:
 * under nvcc it is a real triple-chevron launch; with NG_SIMT defined (host compiler + tests/simt/simt.h)
 * it is the emulator's grid loop. Launchers return ng_status and check cudaGetLastError. */
#ifndef NG_CUDA_CUH
#define NG_CUDA_CUH

#if defined(NG_SIMT)
/* tests/simt/simt.h: the device language on the host C++ compiler (it includes the real
 * <cuda_runtime.h> for types and host prototypes), NG_LAUNCH, NG_DYN_SHARED and the cuRAND device
 * subset. It comes first so that ng_math.h sees its __host__/__device__/__forceinline__. */
#include "simt.h"
#else
#include <cuda_runtime.h>
#endif
#include <stdint.h>

#include "natgrad/profile.h"
#include "natgrad/status.h"
#include "ng_cuda_check.h"
#include "ng_kernels.h"
#include "ng_math.h"

/* Every launch is counted in the profile's device-call counters (natgrad/profile.h,
 * NG_DEV_KERNEL) before it is made: a flag test when the profile is off. The comma expression keeps
 * NG_LAUNCH(...)(args) one expression statement (usable as the body of an if or else). */
#if !defined(NG_SIMT)
#define NG_LAUNCH(kernel, grid, block, shmem, stream) ng_profile_device_call(NG_DEV_KERNEL), kernel<<<(grid), (block), (shmem), (cudaStream_t)(stream)>>>
#define NG_DYN_SHARED(type, name) extern __shared__ type name[]
#else
#undef NG_LAUNCH
#define NG_LAUNCH(kernel, grid, block, shmem, stream)                                              \
    ng_profile_device_call(NG_DEV_KERNEL), NG_SIMT_LAUNCH(kernel, grid, block, shmem, stream)
#endif

/* Every launcher is a range of the `natgrad` domain in the kernel category (natgrad/profile.h):
 * an NVTX range on CUDA builds, and a row of natgrad's own profile (also under the emulator). */
#define NG_NVTX_PUSH(name) ng_range_push_cat(NG_CAT_KERNEL, name)
#define NG_NVTX_POP() ng_range_pop()

/* After a launch: report a launch-configuration error with the kernel's name; closes the NVTX
 * range on every path. */
#define NG_LAUNCH_CHECK(name)                                                                   \
    do {                                                                                        \
        cudaError_t ng_e_ = cudaGetLastError();                                                 \
        NG_NVTX_POP();                                                                          \
        if (ng_e_ != cudaSuccess)                                                               \
            return ng_error(NG_ERR_BACKEND, "kernel %s launch failed: %s (%s:%d)", name,        \
                            cudaGetErrorString(ng_e_), __FILE__, __LINE__);                     \
    } while (0)

/* Call from every thread of a block at the end of a kernel: 1 in thread 0 of the block that
 * finishes last (it took the last ticket of *ticket, an integer counter that is 0 between launches;
 * the caller resets it), 0 elsewhere. Lets a kernel update a device-resident counter that every
 * block read at its start (adam's step count, the RBM's Philox step) in the same launch. */
static __device__ __forceinline__ int ng_last_block(unsigned int *ticket) {
    __syncthreads();
    if (threadIdx.x != 0) return 0;
    __threadfence();
    return atomicAdd(ticket, 1u) == gridDim.x - 1u;
}

/* A Philox step counted in device memory (the step_dev of gibbs_sample, bernoulli, sample_targets
 * and conv_gather: a captured CUDA graph replays with the current count): every thread reads it
 * before its block takes a ticket, and the last block (ng_last_block; every thread of every block
 * must call ng_step_dev_advance) writes base + advance, so every block draws from the same step and
 * the next launch on the stream sees the new count. step_dev[1] is the ticket. NULL: 0, nothing to
 * advance. */
static __device__ __forceinline__ uint64_t ng_step_dev_read(const uint64_t *step_dev) {
    return step_dev != NULL ? *(const volatile uint64_t *)step_dev : 0u;
}
static __device__ __forceinline__ void ng_step_dev_advance(uint64_t *step_dev, uint64_t base, uint64_t advance) {
    if (step_dev != NULL) {
        unsigned int *ticket = (unsigned int *)(void *)(step_dev + 1);
        if (ng_last_block(ticket)) {
            step_dev[0] = base + advance;
            *ticket = 0u;
            __threadfence();
        }
    }
}

/* Number of blocks of `block` threads covering n items, capped so the grid stays legal; kernels
 * use grid-stride loops so any cap is correct. */
static inline unsigned int ng_grid_1d(size_t n, unsigned int block) {
    size_t g = (n + block - 1) / block;
    if (g < 1) g = 1;
    if (g > 65535u * 16u) g = 65535u * 16u;
    return (unsigned int)g;
}

/* Per family file: the most threads per block its kernels of `family` allow at `threads` (the
 * shape asked for: factor.cu's tile instantiation), for ng_cuda_set_block (launch.cu). */
#ifdef __cplusplus
extern "C" {
#endif
int ng_cuda_max_threads_gibbs(ng_kfam family, int threads);
int ng_cuda_max_threads_fill(ng_kfam family, int threads);
int ng_cuda_max_threads_fang(ng_kfam family, int threads);
int ng_cuda_max_threads_factor(ng_kfam family, int threads);
int ng_cuda_max_threads_conv(ng_kfam family, int threads);
int ng_cuda_max_threads_optim(ng_kfam family, int threads);
int ng_cuda_max_threads_reduce(ng_kfam family, int threads);
#ifdef __cplusplus
}
#endif

/* The most threads per block that every kernel in fns[0..n) can be launched with on the current
 * device, as this build compiled them (registers and static shared memory: cudaFuncGetAttributes),
 * at most NG_BLOCK_MAX; a kernel whose attributes cannot be read (no device yet) does not limit.
 * The emulator has no register file: NG_BLOCK_MAX. Used by ng_cuda_set_block (launch.cu). */
static inline int ng_kernels_max_threads(const void *const *fns, int n) {
    int m = NG_BLOCK_MAX;
#if !defined(NG_SIMT)
    int i;
    for (i = 0; i < n; i++) {
        cudaFuncAttributes a;
        if (cudaFuncGetAttributes(&a, fns[i]) == cudaSuccess) {
            if (a.maxThreadsPerBlock < m) m = a.maxThreadsPerBlock;
        } else {
            (void)cudaGetLastError();
        }
    }
#else
    (void)fns;
    (void)n;
#endif
    return m;
}

#endif
