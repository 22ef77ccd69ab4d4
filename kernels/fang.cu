/* fang.cu: the FANG kernels (host/optim/fang.c through the backend slots symmetrize_lower,
 * fang_regress, fang_residual). Matrices are column-major with explicit leading
 * dimensions; the (nh, nv) pairwise matrices are laid out like the RBM's W, element (j, i) for
 * visible i and hidden j. Every kernel is a grid-stride loop over the logical element index
 * (r + rows * c), so any launch shape computes the same thing, and each element's body is the
 * ng_math.h function the CPU backend also calls. No reductions here (the row/column sums of the
 * FANG direction are sum_rows/sum_cols), so no atomics. Launch shape: the "fang" entry of launch.cu's
 * table. Must not: allocate, synchronize, or use
 * device functions the tests/simt emulator lacks. */
#include "ng_cuda.cuh"

#include "ng_kernels.h"

/* A[r, c] for r <= c: strict upper = A[c, r] (transpose of strict lower), diagonal += shift.
 * Reads only the lower triangle and writes only the upper one (and the diagonal, read and
 * written by the same thread), so threads never race. */
static __global__ void symmetrize_lower_kernel(int n, float *A, int lda, float shift) {
    const uint64_t total = (uint64_t)n * (uint64_t)n;
    const uint64_t stride = (uint64_t)blockDim.x * (uint64_t)gridDim.x;
    uint64_t e;
    for (e = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        const int c = (int)(e / (uint64_t)n);
        const int r = (int)(e - (uint64_t)c * (uint64_t)n);
        if (r > c) continue;
        A[(size_t)r + (size_t)lda * (size_t)c] =
            ng_sym_lower_elem(r, c, A[(size_t)c + (size_t)lda * (size_t)r], shift);
    }
}

/* One thread per pair (j, i), e = j + nh * i: the closed-form 2x2 regression of FANG eq. 11-12. */
static __global__ void fang_regress_kernel(int nh, int nv, const float *__restrict__ Evh,
                                           const float *__restrict__ Ev2h,
                                           const float *__restrict__ Evh2,
                                           const float *__restrict__ Ev2h2, int ldm,
                                           const float *__restrict__ mu_v,
                                           const float *__restrict__ mu_h,
                                           const float *__restrict__ Ev2,
                                           const float *__restrict__ Eh2, float lambda,
                                           float *__restrict__ beta_v,
                                           float *__restrict__ beta_h,
                                           float *__restrict__ sigma2, int ldo) {
    const uint64_t total = (uint64_t)nh * (uint64_t)nv;
    const uint64_t stride = (uint64_t)blockDim.x * (uint64_t)gridDim.x;
    uint64_t e;
    for (e = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        const int i = (int)(e / (uint64_t)nh);
        const int j = (int)(e - (uint64_t)i * (uint64_t)nh);
        const size_t m = (size_t)j + (size_t)ldm * (size_t)i;
        const size_t o = (size_t)j + (size_t)ldo * (size_t)i;
        float bv, bh, s2;
        ng_fang_regress_pair(Evh[m], Ev2h[m], Evh2[m], Ev2h2[m], mu_v[i], mu_h[j], Ev2[i], Eh2[j],
                             lambda, &bv, &bh, &s2);
        beta_v[o] = bv;
        beta_h[o] = bh;
        sigma2[o] = s2;
    }
}

/* Element (j, i): q = (G - beta_v ga[i] - beta_h gb[j]) / sigma2 into G; pv, ph. G is read and
 * written by the same thread. */
static __global__ void fang_residual_kernel(int nh, int nv, float *G, int ldg,
                                            const float *__restrict__ ga,
                                            const float *__restrict__ gb,
                                            const float *__restrict__ beta_v,
                                            const float *__restrict__ beta_h,
                                            const float *__restrict__ sigma2, int ldb,
                                            float *__restrict__ pv, float *__restrict__ ph,
                                            int ldp) {
    const uint64_t total = (uint64_t)nh * (uint64_t)nv;
    const uint64_t stride = (uint64_t)blockDim.x * (uint64_t)gridDim.x;
    uint64_t e;
    for (e = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        const int i = (int)(e / (uint64_t)nh);
        const int j = (int)(e - (uint64_t)i * (uint64_t)nh);
        const size_t g = (size_t)j + (size_t)ldg * (size_t)i;
        const size_t b = (size_t)j + (size_t)ldb * (size_t)i;
        const size_t p = (size_t)j + (size_t)ldp * (size_t)i;
        float q, a, h;
        ng_fang_residual_elem(G[g], ga[i], gb[j], beta_v[b], beta_h[b], sigma2[b], &q, &a, &h);
        G[g] = q;
        pv[p] = a;
        ph[p] = h;
    }
}

extern "C" ng_status ng_cuda_symmetrize_lower(int n, float *A, int lda, float shift,
                                              void *stream) {
    NG_NVTX_PUSH("symmetrize_lower");
    NG_LAUNCH(symmetrize_lower_kernel, ng_cuda_grid(NG_KFAM_FANG, (size_t)n * (size_t)n),
              (unsigned int)ng_cuda_block(NG_KFAM_FANG),
              0, (cudaStream_t)stream)(n, A, lda, shift);
    NG_LAUNCH_CHECK("symmetrize_lower");
    return NG_OK;
}

extern "C" ng_status ng_cuda_fang_regress(int nh, int nv, const float *Evh, const float *Ev2h,
                                          const float *Evh2, const float *Ev2h2, int ldm,
                                          const float *mu_v, const float *mu_h, const float *Ev2,
                                          const float *Eh2, float lambda, float *beta_v,
                                          float *beta_h, float *sigma2, int ldo, void *stream) {
    NG_NVTX_PUSH("fang_regress");
    NG_LAUNCH(fang_regress_kernel, ng_cuda_grid(NG_KFAM_FANG, (size_t)nh * (size_t)nv),
              (unsigned int)ng_cuda_block(NG_KFAM_FANG),
              0, (cudaStream_t)stream)(nh, nv, Evh, Ev2h, Evh2, Ev2h2, ldm, mu_v, mu_h, Ev2, Eh2,
                                       lambda, beta_v, beta_h, sigma2, ldo);
    NG_LAUNCH_CHECK("fang_regress");
    return NG_OK;
}

extern "C" ng_status ng_cuda_fang_residual(int nh, int nv, float *G, int ldg, const float *ga,
                                           const float *gb, const float *beta_v,
                                           const float *beta_h, const float *sigma2, int ldb,
                                           float *pv, float *ph, int ldp, void *stream) {
    NG_NVTX_PUSH("fang_residual");
    NG_LAUNCH(fang_residual_kernel, ng_cuda_grid(NG_KFAM_FANG, (size_t)nh * (size_t)nv),
              (unsigned int)ng_cuda_block(NG_KFAM_FANG),
              0, (cudaStream_t)stream)(nh, nv, G, ldg, ga, gb, beta_v, beta_h, sigma2, ldb, pv,
                                       ph, ldp);
    NG_LAUNCH_CHECK("fang_residual");
    return NG_OK;
}

/* launch.cu's limit for the "fang" family (ng_kernels_max_threads). */
extern "C" int ng_cuda_max_threads_fang(ng_kfam family, int threads) {
    const void *const k[] = {(const void *)symmetrize_lower_kernel, (const void *)fang_regress_kernel, (const void *)fang_residual_kernel};
    (void)family;
    (void)threads;
    return ng_kernels_max_threads(k, 3);
}
