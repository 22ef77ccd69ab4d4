/* ng_philox.cuh: the Philox group loop shared by every random kernel (gibbs.cu, fill.cu). Include
 * after ng_cuda.cuh. Group g of an op with n logical elements holds the elements 4g .. 4g+3; one
 * curand_init(key, step, 4g) + curand_uniform4 gives their four uniforms, the words that
 * ng_uniform4_at computes on the CPU. The element index alone selects a word, so any launch shape
 * draws the same numbers. */
#ifndef NG_PHILOX_CUH
#define NG_PHILOX_CUH

#include "ng_cuda.cuh"
#ifndef NG_SIMT
#include <curand_kernel.h>
#endif

/* Uniform k (0..3) of a group. */
static __device__ __forceinline__ float ng_u4(const float4 &u, int k) {
    return k == 0 ? u.x : k == 1 ? u.y : k == 2 ? u.z : u.w;
}

/* Grid-stride over the groups; group(i0, u, count) gets the first index, the four uniforms and
 * how many of the four elements exist (1..4). */
template <typename F>
static __device__ __forceinline__ void ng_philox_groups(uint64_t n, uint64_t key, uint64_t step,
                                                        F group) {
    const uint64_t groups = (n + 3u) >> 2;
    const uint64_t stride = (uint64_t)blockDim.x * (uint64_t)gridDim.x;
    uint64_t g;
    for (g = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += stride) {
        const uint64_t i0 = g << 2;
        curandStatePhilox4_32_10_t st;
        float4 u;
        curand_init(key, step, i0, &st);
        u = curand_uniform4(&st);
        group(i0, u, n - i0 < 4u ? (int)(n - i0) : 4);
    }
}

/* The elements first .. first + n - 1 of a larger op (a data-parallel rank's part of the chains):
 * grid-stride over the global groups that touch them; elem(i, u) gets the local index i (global
 * index - first) and that global index's uniform, so the draws are the whole op's. */
template <typename F>
static __device__ __forceinline__ void ng_philox_elems_at(uint64_t n, uint64_t first, uint64_t key,
                                                          uint64_t step, F elem) {
    const uint64_t g0 = first >> 2, g1 = (first + n + 3u) >> 2;
    const uint64_t stride = (uint64_t)blockDim.x * (uint64_t)gridDim.x;
    uint64_t g;
    for (g = g0 + (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; g < g1; g += stride) {
        curandStatePhilox4_32_10_t st;
        float4 u;
        int k;
        curand_init(key, step, g << 2, &st);
        u = curand_uniform4(&st);
        for (k = 0; k < 4; k++) {
            const uint64_t gi = (g << 2) + (uint64_t)k;
            if (gi >= first && gi < first + n) elem(gi - first, ng_u4(u, k));
        }
    }
}


#endif
