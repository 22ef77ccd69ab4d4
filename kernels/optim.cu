/* optim.cu: the fused elementwise steps of the optimizers (host/optim/): NG_OP_ADAM, Adam and
 * RMSprop on the model's flat parameter vector (with its step count optionally on the device),
 * NG_OP_MOMENTUM, heavy-ball SGD and NAG in one pass, and NG_OP_OUTER_SCALE, the row / column / Stein
 * scalings of K-FAC's inverses (host/optim/kfac.c). A grid-stride loop around ng_adam_elem (the body
 * the CPU backend calls too); the element index depends only on the logical index, never on the
 * launch shape (the "optim" entry of launch.cu's table). Must not: allocate, use float atomics
 * (adam's device step count takes an integer ticket), or synchronize the host. */
#include "ng_cuda.cuh"

#include "ng_kernels.h"

/* Adam / RMSprop: m (may be NULL) and v updated in place, param += s, step = s when non-NULL.
 * count non-NULL: thread 0 of each block reads the step count t = count[0] and computes the bias
 * corrections (ng_adam_bias_correction, the host's formula) into shared memory; when the block is
 * done it takes a ticket (atomicAdd on count[1], an integer counter); the last block sets count[0] =
 * t + 1 and the ticket back to 0. Every block reads t before taking its ticket, so all of them see
 * the same t; the next launch on the stream sees t + 1. No float atomics: the ticket is an integer. */
static __global__ void adam_kernel(uint64_t n, float *param, const float *grad, float *m,
                                   float *v, float *step, float b1, float c1, float b2, float c2,
                                   double bc1, double bc2, float lr, float eps, double *count) {
    const uint64_t stride = (uint64_t)blockDim.x * (uint64_t)gridDim.x;
    __shared__ double bc[2];
    double t = 0.0; /* thread 0's read of count[0] */
    uint64_t i;
    if (count) {
        if (threadIdx.x == 0) {
            t = *(volatile double *)count;
            bc[0] = m ? ng_adam_bias_correction(b1, t) : 1.0;
            bc[1] = m ? ng_adam_bias_correction(b2, t) : 1.0;
        }
        __syncthreads();
        bc1 = bc[0];
        bc2 = bc[1];
    }
    for (i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float s = ng_adam_elem(grad[i], &param[i], m ? &m[i] : (float *)0, &v[i], b1, c1,
                                     b2, c2, bc1, bc2, lr, eps);
        if (step) step[i] = s;
    }
    if (count) {
        unsigned int *ticket = (unsigned int *)(void *)(count + 1);
        if (ng_last_block(ticket)) { /* the last block: every block has read t */
            count[0] = t + 1.0;
            *ticket = 0u;
            __threadfence();
        }
    }
}

extern "C" ng_status ng_cuda_adam(size_t n, float *param, const float *grad, float *m, float *v,
                                  float *step, float b1, float c1, float b2, float c2, double bc1,
                                  double bc2, float lr, float eps, double *count, void *stream) {
    NG_NVTX_PUSH("adam");
    NG_LAUNCH(adam_kernel, ng_cuda_grid(NG_KFAM_OPTIM, n), (unsigned int)ng_cuda_block(NG_KFAM_OPTIM), 0,
              (cudaStream_t)stream)(
        (uint64_t)n, param, grad, m, v, step, b1, c1, b2, c2, bc1, bc2, lr, eps, count);
    NG_LAUNCH_CHECK("adam");
    return NG_OK;
}

/* Heavy-ball SGD / NAG: the axpby chain of ng_momentum_elem per element, one launch. */
static __global__ void momentum_kernel(uint64_t n, const float *d, float *v, float *p, float *bar,
                                       float a, float mu, float c, int nesterov, float xi, float w,
                                       float wc) {
    const uint64_t stride = (uint64_t)blockDim.x * (uint64_t)gridDim.x;
    uint64_t i;
    for (i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        ng_momentum_elem(d[i], &v[i], &p[i], bar ? &bar[i] : (float *)0, a, mu, c, nesterov, xi, w, wc);
}

extern "C" ng_status ng_cuda_momentum(size_t n, const float *d, float *v, float *p, float *bar, float a,
                                      float mu, float c, int nesterov, float xi, float w, float wc,
                                      void *stream) {
    NG_NVTX_PUSH("momentum");
    NG_LAUNCH(momentum_kernel, ng_cuda_grid(NG_KFAM_OPTIM, n), (unsigned int)ng_cuda_block(NG_KFAM_OPTIM), 0,
              (cudaStream_t)stream)(
        (uint64_t)n, d, v, p, bar, a, mu, c, nesterov, xi, w, wc);
    NG_LAUNCH_CHECK("momentum");
    return NG_OK;
}

/* out[r,c] = x[r,c] phi(u[r], v[c]) (ng_outer_scale_phi), one thread per element; out may alias x. */
static __global__ void outer_scale_kernel(int rows, int cols, int mode, const float *x, int ldx,
                                          const float *u, const float *v, float floor_, float power,
                                          float *out, int ldo) {
    const uint64_t n = (uint64_t)rows * (uint64_t)cols;
    const uint64_t stride = (uint64_t)blockDim.x * (uint64_t)gridDim.x;
    uint64_t e;
    for (e = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += stride) {
        const int c = (int)(e / (uint64_t)rows);
        const int r = (int)(e - (uint64_t)c * (uint64_t)rows);
        out[(size_t)r + (size_t)c * (size_t)ldo] =
            ng_outer_scale_elem(mode, x[(size_t)r + (size_t)c * (size_t)ldx], u, v, r, c, floor_, power);
    }
}

extern "C" ng_status ng_cuda_outer_scale(int rows, int cols, int mode, const float *x, int ldx,
                                         const float *u, const float *v, float floor_, float power,
                                         float *out, int ldo, void *stream) {
    NG_NVTX_PUSH("outer_scale");
    NG_LAUNCH(outer_scale_kernel, ng_cuda_grid(NG_KFAM_OPTIM, (size_t)rows * (size_t)cols),
              (unsigned int)ng_cuda_block(NG_KFAM_OPTIM), 0, (cudaStream_t)stream)(rows, cols, mode, x, ldx, u, v, floor_, power, out, ldo);
    NG_LAUNCH_CHECK("outer_scale");
    return NG_OK;
}

/* launch.cu's limit for the "optim" family (ng_kernels_max_threads). */
extern "C" int ng_cuda_max_threads_optim(ng_kfam family, int threads) {
    const void *const k[] = {(const void *)adam_kernel, (const void *)momentum_kernel, (const void *)outer_scale_kernel};
    (void)family;
    (void)threads;
    return ng_kernels_max_threads(k, 3);
}
