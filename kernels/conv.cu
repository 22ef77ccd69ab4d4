/* conv.cu: the convolutional-layer kernels (host/models/cnn.c through the ops conv_gather and
 * whiten1x1). Maps are N,C,H,W float32 tensors, the im2col matrix is (P, K) column-major per image
 * (natgrad/nn_types.h). Every kernel is one thread per output element, grid-stride, calling the
 * ng_math.h body the CPU backend (host/backend/cpu.c) also calls: each output element is a gather
 * in a fixed order (col2im and the pooling gradients visit the windows that hold a pixel, so no
 * atomics and the sums are reproducible, the same on both backends).
 * The 1x1 whitening convolution fuses the centering (x - mean) with the per-pixel channel mixing
 * by U (PRONG section 4.3), accumulating in double, j ascending, like the CPU.
 * The augmentation (random crops and mirrors) draws Philox uniforms indexed by image, as the CPU.
 * Launch shape: the "conv" entry of launch.cu's table (ng_cuda_set_block).
 * Must not: allocate, synchronize, use atomics, or use device functions the tests/simt emulator
 * lacks. */
#include "ng_cuda.cuh"

#include "ng_kernels.h"

/* step_dev (AUGMENT): the step is step_dev[0] + step, and the last block advances the count
 * (ng_step_dev_advance); every thread reaches the advance (no early return). */
static __global__ void conv_gather_kernel(int mode, ng_conv_shape s, const float *x, const float *g, float *out,
                                          uint64_t n, int flip, uint64_t key, uint64_t step, uint64_t b0,
                                          uint64_t *step_dev, uint64_t advance) {
    const uint64_t step_base = ng_step_dev_read(step_dev);
    step += step_base;
    for (uint64_t e = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x, st = (uint64_t)blockDim.x * gridDim.x; e < n;
         e += st)
        out[e] = ng_conv_gather_elem(mode, &s, x, g, (size_t)e, flip, key, step, b0);
    ng_step_dev_advance(step_dev, step_base, advance);
}

static __global__ void whiten1x1_kernel(int c, int cout, int p, int trans, const float *x, const float *mean,
                                        const float *U, int ldu, float *y, uint64_t n) {
    for (uint64_t e = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x, st = (uint64_t)blockDim.x * gridDim.x; e < n;
         e += st)
        y[e] = ng_whiten1x1_elem(c, cout, p, trans, x, mean, U, ldu, (size_t)e);
}

extern "C" ng_status ng_cuda_conv_gather(int mode, const ng_conv_shape *s, const float *x, const float *g, float *out,
                                         int flip, uint64_t key, uint64_t step, uint64_t b0, uint64_t *step_dev,
                                         uint64_t advance, void *stream) {
    const size_t n = ng_conv_gather_count(mode, s);
    NG_NVTX_PUSH("conv_gather");
    NG_LAUNCH(conv_gather_kernel, ng_cuda_grid(NG_KFAM_CONV, n), (unsigned int)ng_cuda_block(NG_KFAM_CONV), 0,
              (cudaStream_t)stream)(mode, *s, x, g, out, (uint64_t)n, flip, key, step, b0, step_dev, advance);
    NG_LAUNCH_CHECK("conv_gather");
    return NG_OK;
}

extern "C" ng_status ng_cuda_whiten1x1(int n, int c, int cout, int p, int trans, const float *x, const float *mean,
                                       const float *U, int ldu, float *y, void *stream) {
    const size_t count = (size_t)n * (size_t)cout * (size_t)p;
    NG_NVTX_PUSH("whiten1x1");
    NG_LAUNCH(whiten1x1_kernel, ng_cuda_grid(NG_KFAM_CONV, count), (unsigned int)ng_cuda_block(NG_KFAM_CONV), 0,
              (cudaStream_t)stream)(
        c, cout, p, trans, x, mean, U, ldu, y, (uint64_t)count);
    NG_LAUNCH_CHECK("whiten1x1");
    return NG_OK;
}

/* launch.cu's limit for the "conv" family (ng_kernels_max_threads). */
extern "C" int ng_cuda_max_threads_conv(ng_kfam family, int threads) {
    const void *const k[] = {(const void *)conv_gather_kernel, (const void *)whiten1x1_kernel};
    (void)family;
    (void)threads;
    return ng_kernels_max_threads(k, 2);
}
