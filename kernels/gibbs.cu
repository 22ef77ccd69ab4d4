/* gibbs.cu: the RBM sampling kernels, used through the backend slots gibbs_sample and bernoulli
 * (host/models/rbm.c, host/eval/ais.c). Layers are column-major (units, particles) with explicit
 * leading dimensions; element (r, c) has logical index r + rows * c, and that index alone (never
 * a thread or block id) selects its Philox word, so any launch shape gives the same samples and
 * the CPU backend, which calls the same ng_math.h bodies, draws the same bits.
 * Each thread takes a group of 4 consecutive logical indices, which share one Philox4x32-10 block
 * (ng_philox_groups), so one Philox evaluation serves 4 elements. Launch shapes: the "gibbs" and
 * "bernoulli" entries of launch.cu's table (ng_cuda_set_block). The step may be counted in device
 * memory (gibbs_sample's and bernoulli's step_dev: a captured CUDA graph replays with the current count; the last
 * block advances it, ng_last_block). Must not: use float atomics, allocate, or synchronize the host. */
#include "ng_cuda.cuh"
#include "ng_philox.cuh"

#include "ng_kernels.h"

/* Element (r, c) of the Gibbs step with uniform u: prob and/or sample (both =). */
static __device__ __forceinline__ void gibbs_one(int r, int c, float u, const float *pre, int ldp,
                                                 const float *bias, float beta,
                                                 const float *base, float *prob, int ldq,
                                                 float *sample, int lds) {
    float p, s;
    float b = bias != NULL ? bias[r] : 0.0f;
    float b0 = base != NULL ? base[r] : 0.0f;
    ng_gibbs_unit(pre[(size_t)r + (size_t)ldp * (size_t)c], b, beta, b0, u, &p, &s);
    if (prob != NULL) prob[(size_t)r + (size_t)ldq * (size_t)c] = p;
    if (sample != NULL) sample[(size_t)r + (size_t)lds * (size_t)c] = s;
}

/* Groups of logical indices 4g .. 4g+3 (< rows * cols). No __restrict__: pre may alias prob or
 * sample; each element is read before it is written, by one thread. */
static __global__ void gibbs_sample_kernel(int rows, int cols, const float *pre, int ldp,
                                           const float *bias, float beta, const float *base,
                                           float *prob, int ldq, float *sample, int lds,
                                           uint64_t key, uint64_t step, uint64_t *step_dev,
                                           uint64_t advance) {
    const uint64_t n = (uint64_t)rows * (uint64_t)cols;
    const uint64_t step_base = ng_step_dev_read(step_dev);
    step += step_base;
    ng_philox_groups(n, key, step, [&](uint64_t i0, float4 u, int count) {
        int c = (int)(i0 / (uint64_t)rows);
        int r = (int)(i0 - (uint64_t)c * (uint64_t)rows);
        int k;
        for (k = 0; k < count; k++) {
            gibbs_one(r, c, ng_u4(u, k), pre, ldp, bias, beta, base, prob, ldq, sample, lds);
            if (++r == rows) {
                r = 0;
                c++;
            }
        }
    });
    ng_step_dev_advance(step_dev, step_base, advance);
}

/* The same for the elements first .. of a larger chain array (first > 0: a data-parallel shard). */
static __global__ void gibbs_sample_at_kernel(int rows, int cols, const float *pre, int ldp,
                                              const float *bias, float beta, const float *base,
                                              float *prob, int ldq, float *sample, int lds,
                                              uint64_t key, uint64_t step, uint64_t first,
                                              uint64_t *step_dev, uint64_t advance) {
    const uint64_t n = (uint64_t)rows * (uint64_t)cols;
    const uint64_t step_base = ng_step_dev_read(step_dev);
    step += step_base;
    ng_philox_elems_at(n, first, key, step, [&](uint64_t i, float u) {
        int c = (int)(i / (uint64_t)rows);
        int r = (int)(i - (uint64_t)c * (uint64_t)rows);
        gibbs_one(r, c, u, pre, ldp, bias, beta, base, prob, ldq, sample, lds);
    });
    ng_step_dev_advance(step_dev, step_base, advance);
}

/* out[i] = [u(key, step, i) <= p[i]] over groups of 4 indices; p may alias out. */
static __global__ void bernoulli_kernel(uint64_t n, const float *p, float *out, uint64_t key,
                                        uint64_t step, uint64_t *step_dev, uint64_t advance) {
    const uint64_t step_base = ng_step_dev_read(step_dev);
    step += step_base;
    ng_philox_groups(n, key, step, [&](uint64_t i0, float4 u, int count) {
        int k;
        for (k = 0; k < count; k++) out[i0 + k] = ng_bernoulli_draw(p[i0 + k], ng_u4(u, k));
    });
    ng_step_dev_advance(step_dev, step_base, advance);
}

static __global__ void bernoulli_at_kernel(uint64_t n, const float *p, float *out, uint64_t key,
                                           uint64_t step, uint64_t first, uint64_t *step_dev, uint64_t advance) {
    const uint64_t step_base = ng_step_dev_read(step_dev);
    step += step_base;
    ng_philox_elems_at(n, first, key, step, [&](uint64_t i, float u) { out[i] = ng_bernoulli_draw(p[i], u); });
    ng_step_dev_advance(step_dev, step_base, advance);
}

/* Groups touched by the elements first .. first + n - 1. */
static size_t groups_at(size_t n, uint64_t first) {
    return (size_t)(((uint64_t)first + (uint64_t)n + 3u) / 4u - (uint64_t)first / 4u);
}

extern "C" ng_status ng_cuda_gibbs_sample(int rows, int cols, const float *pre, int ldp,
                                          const float *bias, float beta, const float *base,
                                          float *prob, int ldq, float *sample, int lds,
                                          uint64_t key, uint64_t step, uint64_t first,
                                          uint64_t *step_dev, uint64_t advance, void *stream) {
    size_t groups = ((size_t)rows * (size_t)cols + 3u) / 4u;
    const unsigned int block = (unsigned int)ng_cuda_block(NG_KFAM_GIBBS);
    NG_NVTX_PUSH("gibbs_sample");
    if (first == 0)
        NG_LAUNCH(gibbs_sample_kernel, ng_cuda_grid(NG_KFAM_GIBBS, groups), block, 0,
                  (cudaStream_t)stream)(rows, cols, pre, ldp, bias, beta, base, prob, ldq, sample,
                                        lds, key, step, step_dev, advance);
    else
        NG_LAUNCH(gibbs_sample_at_kernel, ng_cuda_grid(NG_KFAM_GIBBS, groups_at((size_t)rows * (size_t)cols, first)),
                  block, 0, (cudaStream_t)stream)(rows, cols, pre, ldp, bias, beta, base, prob, ldq,
                                                  sample, lds, key, step, first, step_dev, advance);
    NG_LAUNCH_CHECK("gibbs_sample");
    return NG_OK;
}

extern "C" ng_status ng_cuda_bernoulli(size_t n, const float *p, float *out, uint64_t key,
                                       uint64_t step, uint64_t first, uint64_t *step_dev, uint64_t advance,
                                       void *stream) {
    const unsigned int block = (unsigned int)ng_cuda_block(NG_KFAM_BERNOULLI);
    NG_NVTX_PUSH("bernoulli");
    if (first == 0)
        NG_LAUNCH(bernoulli_kernel, ng_cuda_grid(NG_KFAM_BERNOULLI, (n + 3u) / 4u), block, 0,
                  (cudaStream_t)stream)((uint64_t)n, p, out, key, step, step_dev, advance);
    else
        NG_LAUNCH(bernoulli_at_kernel, ng_cuda_grid(NG_KFAM_BERNOULLI, groups_at(n, first)), block, 0,
                  (cudaStream_t)stream)((uint64_t)n, p, out, key, step, first, step_dev, advance);
    NG_LAUNCH_CHECK("bernoulli");
    return NG_OK;
}

/* launch.cu's limit for the "gibbs" / "bernoulli" families (ng_kernels_max_threads). */
extern "C" int ng_cuda_max_threads_gibbs(ng_kfam family, int threads) {
    const void *const g[] = {(const void *)gibbs_sample_kernel, (const void *)gibbs_sample_at_kernel};
    const void *const b[] = {(const void *)bernoulli_kernel, (const void *)bernoulli_at_kernel};
    (void)threads;
    return ng_kernels_max_threads(family == NG_KFAM_BERNOULLI ? b : g, 2);
}
