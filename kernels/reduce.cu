/* reduce.cu: column reductions that cuBLAS does not provide, used through the backend slot
 * softplus_sum (free energies of RBMs: host/models/rbm.c, host/eval/ais.c). pre is column-major
 * (rows, cols) with leading dimension ldp; y has one entry per column.
 * One block per column (grid-stride over columns), B threads: thread t sums rows t, t + B, ... in
 * that order, then a shared-memory tree halves the partial sums in a fixed pattern. B is the
 * "reduce" entry of launch.cu's table (a power of two, 256 by default), so for a given B the
 * summation order, and the result, are the same on every run and every GPU; another B sums in
 * another order. Sums are kept in double, as the CPU backend does, so all of them agree to float
 * rounding. Must not: use float atomics (order would vary), or launch with a block size that is
 * not a power of two <= NG_BLOCK_MAX (the tree and the shared array).
 * sum_cols / sum_rows are cublasSgemv against a vector of ones in host/backend/cuda.c. */
#include "ng_cuda.cuh"

#include "ng_kernels.h"

#define SOFTPLUS_MAX_GRID 65535u

/* y[c] = alpha * sum_r softplus(beta (pre[r,c] + bias[r])) + gamma * y[c]  (gamma = 0 ignores y) */
static __global__ void softplus_sum_kernel(int rows, int cols, const float *pre, int ldp,
                                           const float *bias, float beta, float alpha,
                                           float gamma, float *y) {
    __shared__ double part[NG_BLOCK_MAX];
    const int t = (int)threadIdx.x, nt = (int)blockDim.x;
    int c;
    for (c = (int)blockIdx.x; c < cols; c += (int)gridDim.x) {
        const float *col = pre + (size_t)ldp * (size_t)c;
        double acc = 0.0;
        int r, half;
        for (r = t; r < rows; r += nt)
            acc += (double)ng_softplus_term(col[r], bias != NULL ? bias[r] : 0.0f, beta);
        part[t] = acc;
        __syncthreads();
        for (half = nt / 2; half > 0; half >>= 1) {
            if (t < half) part[t] += part[t + half];
            __syncthreads();
        }
        if (t == 0) {
            float yc = gamma != 0.0f ? y[c] : 0.0f; /* never read y when gamma = 0 */
            y[c] = ng_sum_combine(part[0], alpha, gamma, yc);
        }
        /* part[0] is read above before any thread refills part for the next column */
        __syncthreads();
    }
}

extern "C" ng_status ng_cuda_softplus_sum(int rows, int cols, const float *pre, int ldp,
                                          const float *bias, float beta, float alpha, float gamma,
                                          float *y, void *stream) {
    unsigned int grid = cols < 1 ? 1u : (unsigned int)cols;
    const int cap = ng_cuda_grid_cap(NG_KFAM_REDUCE);
    if (grid > SOFTPLUS_MAX_GRID) grid = SOFTPLUS_MAX_GRID;
    if (cap > 0 && grid > (unsigned int)cap) grid = (unsigned int)cap;
    NG_NVTX_PUSH("softplus_sum");
    NG_LAUNCH(softplus_sum_kernel, grid, (unsigned int)ng_cuda_block(NG_KFAM_REDUCE), 0, (cudaStream_t)stream)(
        rows, cols, pre, ldp, bias, beta, alpha, gamma, y);
    NG_LAUNCH_CHECK("softplus_sum");
    return NG_OK;
}

/* launch.cu's limit for the "reduce" family (ng_kernels_max_threads). */
extern "C" int ng_cuda_max_threads_reduce(ng_kfam family, int threads) {
    const void *const k[] = {(const void *)softplus_sum_kernel};
    (void)family;
    (void)threads;
    return ng_kernels_max_threads(k, 1);
}
