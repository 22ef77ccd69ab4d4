/* net.cu: the network-layer kernels (host/models/net.c through the ops act_forward, act_backward,
 * loss, loss_hvp, sample_targets, row_moments, bn_merge, bn_normalize, bn_project). Matrices are
 * column-major (units, cases) with explicit leading dimensions. Every kernel calls the ng_math.h
 * body the CPU backend (host/backend/cpu.c) also calls, on the same operands in the same order, so
 * the two backends compute the same thing:
 *   - elementwise ops: one thread per element, grid-stride over the logical index e = r + rows c;
 *   - per-column ops (softmax, loss, loss_hvp, categorical sampling): one thread per column running
 *     the column body (columns are cases, a few rows each; the bodies sum in double in a fixed
 *     sequential order, which a parallel tree would not reproduce); the loss with its batch sums
 *     runs as one block, so the sums follow in the same launch without atomics;
 *   - per-row ops (row_moments, bn_project): one thread per row running the row body (adjacent
 *     threads read adjacent rows of a column: coalesced).
 * Random numbers: element i = r + rows (col0 + c) of sample_targets uses the Philox uniform i (Bernoulli),
 * uniforms 2i and 2i+1 (Gaussian, one Philox block gives both) or uniform col0 + c (categorical),
  * as the CPU does; the index alone selects the word, so any launch shape draws the same targets.
 * The step may be counted on the device (step_dev, advanced by the last block: ng_step_dev_advance;
 * advance 0 reads it only, so a replayed graph draws at the step the host wrote there since).
 * Aliasing (z = a, out = g, out = v, t = y, xhat = x): each element, column or row is read and
 * written by one thread, reads first; hence no __restrict__ on those operands. Must not: allocate,
 * synchronize, use atomics (but the step_dev ticket's integer one), or use device functions the tests/simt emulator lacks. */
#include "ng_cuda.cuh"

#include "ng_kernels.h"

#define NET_BLOCK 256u     /* elementwise kernels */
#define NET_COL_BLOCK 128u /* one thread per column or per row */
#define NET_SUM_BLOCK 1024u /* the loss with its batch sums: one block, a thread per column (a chunk's
                             * columns in one round up to 1024), at least NG_LOSS_LANES threads */

#define NET_IDX(r, c, ld) ((size_t)(r) + (size_t)(c) * (size_t)(ld))

/* Grid-stride loop over e in [0, n). */
#define NET_FOR(e, n)                                                                         \
    for (uint64_t e = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x,                        \
                  e##_stride_ = (uint64_t)blockDim.x * (uint64_t)gridDim.x;                   \
         e < (n); e += e##_stride_)

/* The pre-activation s[r] z + bias[r] exactly as the CPU rounds it: the product (when s is given)
 * rounded on its own (__fmul_rn: nvcc must not fuse it with the add), then the add. */
static __device__ __forceinline__ float net_preact(float z, const float *scale, const float *bias,
                                                   int r) {
    return (scale != NULL ? __fmul_rn(scale[r], z) : z) + (bias != NULL ? bias[r] : 0.0f);
}

/* a = f(s z + bias) elementwise (not softmax); z may alias a. */
static __global__ void act_forward_kernel(int rows, int cols, int act, const float *z, int ldz,
                                          const float *scale, const float *bias, float *a,
                                          int lda) {
    const uint64_t n = (uint64_t)rows * (uint64_t)cols;
    NET_FOR(e, n) {
        const int c = (int)(e / (uint64_t)rows);
        const int r = (int)(e - (uint64_t)c * (uint64_t)rows);
        a[NET_IDX(r, c, lda)] = ng_act_elem(act, net_preact(z[NET_IDX(r, c, ldz)], scale, bias, r));
    }
}

/* Softmax act_forward, one thread per column: the pre-activations into a, then ng_softmax_col in
 * place (what the CPU does); z may alias a. */
static __global__ void softmax_forward_kernel(int rows, int cols, const float *z, int ldz,
                                              const float *scale, const float *bias, float *a,
                                              int lda) {
    NET_FOR(c, (uint64_t)cols) {
        float *col = a + NET_IDX(0, c, lda);
        const float *zc = z + NET_IDX(0, c, ldz);
        int r;
        for (r = 0; r < rows; r++) col[r] = net_preact(zc[r], scale, bias, r);
        ng_softmax_col(rows, col, NULL, col);
    }
}

/* out = g f'(a) + h r f''(a) elementwise (h, r NULL = 0); out may alias g. */
static __global__ void act_backward_kernel(int rows, int cols, int act, const float *A, int lda,
                                           const float *g, int ldg, const float *h, int ldh,
                                           const float *rr, int ldr, float *out, int ldo) {
    const uint64_t n = (uint64_t)rows * (uint64_t)cols;
    NET_FOR(e, n) {
        const int c = (int)(e / (uint64_t)rows);
        const int r = (int)(e - (uint64_t)c * (uint64_t)rows);
        out[NET_IDX(r, c, ldo)] =
            ng_act_backward_elem(act, A[NET_IDX(r, c, lda)], g[NET_IDX(r, c, ldg)],
                                 h != NULL ? h[NET_IDX(r, c, ldh)] : 0.0f,
                                 rr != NULL ? rr[NET_IDX(r, c, ldr)] : 0.0f);
    }
}

/* One thread per column: ng_loss_col (d, obj, err each skipped when NULL; d may alias y). */
static __global__ void loss_kernel(int loss, int rows, int cols, const float *z, int ldz,
                                   const float *y, int ldy, const float *t, int ldt, float scale,
                                   float *d, int ldd, float *obj, float *err, int miss) {
    NET_FOR(c, (uint64_t)cols) {
        ng_loss_col(loss, rows, z + NET_IDX(0, c, ldz), y + NET_IDX(0, c, ldy),
                    t + NET_IDX(0, c, ldt), scale, d != NULL ? d + NET_IDX(0, c, ldd) : NULL,
                    obj != NULL ? obj + c : NULL, err != NULL ? err + c : NULL, miss);
    }
}

/* The loss and its batch sums in one launch of one block: the columns (ng_loss_col) spread over
 * the block's threads, then 32 lanes (ng_loss_lane) and one thread (ng_loss_sums_finish) sum obj
 * and err in the order the CPU uses. obj and err are re-read after __syncthreads, which makes the
 * block's global writes visible to the block. __launch_bounds__: 1024 threads leave at most 64
 * registers each; the bound makes nvcc keep to them (or spill) rather than fail at launch. */
static __global__ void __launch_bounds__(NET_SUM_BLOCK) loss_sums_kernel(int loss, int rows, int cols, const float *z, int ldz,
                                        const float *y, int ldy, const float *t, int ldt,
                                        float scale, float *d, int ldd, float *obj, float *err,
                                        float *acc, float acc_beta, int miss) {
    __shared__ double lane_o[NG_LOSS_LANES], lane_e[NG_LOSS_LANES];
    int c;
    for (c = (int)threadIdx.x; c < cols; c += (int)blockDim.x)
        ng_loss_col(loss, rows, z + NET_IDX(0, c, ldz), y + NET_IDX(0, c, ldy),
                    t + NET_IDX(0, c, ldt), scale, d != NULL ? d + NET_IDX(0, c, ldd) : NULL,
                    obj + c, err + c, miss);
    __syncthreads();
    if (threadIdx.x < NG_LOSS_LANES)
        ng_loss_lane(cols, obj, err, (int)threadIdx.x, &lane_o[threadIdx.x], &lane_e[threadIdx.x]);
    __syncthreads();
    if (threadIdx.x == 0) ng_loss_sums_finish(lane_o, lane_e, acc_beta, acc);
}

/* One thread per column: ng_loss_hvp_col (out may alias v). */
static __global__ void loss_hvp_kernel(int loss, int rows, int cols, const float *y, int ldy,
                                       const float *v, int ldv, float scale, float *out, int ldo) {
    NET_FOR(c, (uint64_t)cols) {
        ng_loss_hvp_col(loss, rows, y + NET_IDX(0, c, ldy), v + NET_IDX(0, c, ldv), scale,
                        out + NET_IDX(0, c, ldo));
    }
}

/* Elementwise targets (squared, Bernoulli); t may alias y. Gaussian: uniforms 2i and 2i+1, the
 * words 2 (i & 1) and 2 (i & 1) + 1 of Philox block i >> 1 (one evaluation); Bernoulli: uniform
 * i. */
static __global__ void sample_targets_kernel(int loss, int rows, int cols, const float *y, int ldy,
                                             float *t, int ldt, uint64_t key, uint64_t step,
                                             uint64_t col0, uint64_t *step_dev, uint64_t advance) {
    const uint64_t n = (uint64_t)rows * (uint64_t)cols;
    const uint64_t step_base = ng_step_dev_read(step_dev);
    step += step_base;
    NET_FOR(e, n) {
        const int c = (int)(e / (uint64_t)rows);
        const int r = (int)(e - (uint64_t)c * (uint64_t)rows);
        const uint64_t i = e + (uint64_t)rows * col0; /* the element's global index */
        float u1, u2 = 0.0f;
        if (loss == NG_LOSS_SQUARED) {
            float u[4];
            ng_uniform4_at(key, step, i >> 1, u);
            u1 = (i & 1u) ? u[2] : u[0];
            u2 = (i & 1u) ? u[3] : u[1];
        } else {
            u1 = ng_uniform_at(key, step, i);
        }
        t[NET_IDX(r, c, ldt)] = ng_sample_target_elem(loss, y[NET_IDX(r, c, ldy)], u1, u2);
    }
    ng_step_dev_advance(step_dev, step_base, advance);
}

/* Categorical targets, one thread per column: a one-hot column from uniform c; t may alias y. */
static __global__ void sample_categorical_kernel(int rows, int cols, const float *y, int ldy,
                                                 float *t, int ldt, uint64_t key, uint64_t step,
                                                 uint64_t col0, uint64_t *step_dev, uint64_t advance) {
    const uint64_t step_base = ng_step_dev_read(step_dev);
    step += step_base;
    NET_FOR(c, (uint64_t)cols) {
        ng_sample_categorical_col(rows, y + NET_IDX(0, c, ldy), ng_uniform_at(key, step, col0 + c),
                                  t + NET_IDX(0, c, ldt));
    }
    ng_step_dev_advance(step_dev, step_base, advance);
}

/* One thread per row: mean[r], rstd[r] over the cols columns (ng_row_moments). */
static __global__ void row_moments_kernel(int rows, int cols, const float *x, int ldx, float eps,
                                          float *mean, float *rstd) {
    NET_FOR(r, (uint64_t)rows) {
        ng_row_moments(cols, x + r, ldx, eps, mean + r, rstd + r);
    }
}

/* One thread per row: a step of synchronised batch norm's merge (ng_bn_merge_row). */
static __global__ void bn_merge_kernel(int mode, int rows, int cols, double cnt, float eps, float alpha, int scaled,
                                       float *mean, float *rstd, double *acc, double *acc2, double *tot, const float *x,
                                       int ldx, float *out, int ldo) {
    NET_FOR(r, (uint64_t)rows) {
        ng_bn_merge_row(mode, (int)r, rows, cols, cnt, eps, alpha, scaled, mean, rstd, acc, acc2, tot, x, ldx, out, ldo);
    }
}

/* xhat = (x - mean[r]) rstd[r] elementwise; xhat may alias x. */
static __global__ void bn_normalize_kernel(int rows, int cols, const float *x, int ldx,
                                           const float *mean, const float *rstd, float *xhat,
                                           int ldh) {
    const uint64_t n = (uint64_t)rows * (uint64_t)cols;
    NET_FOR(e, n) {
        const int c = (int)(e / (uint64_t)rows);
        const int r = (int)(e - (uint64_t)c * (uint64_t)rows);
        xhat[NET_IDX(r, c, ldh)] = (x[NET_IDX(r, c, ldx)] - mean[r]) * rstd[r];
    }
}

/* One thread per row: ng_bn_project_row with s = s1[r] s2[r] (NULL = 1); out may alias g. */
static __global__ void bn_project_kernel(int rows, int cols, const float *g, int ldg,
                                         const float *xhat, int ldx, const float *s1,
                                         const float *s2, float beta, float *out, int ldo) {
    NET_FOR(r, (uint64_t)rows) {
        const float s = (s1 != NULL ? s1[r] : 1.0f) * (s2 != NULL ? s2[r] : 1.0f);
        ng_bn_project_row(cols, g + r, ldg, xhat + r, ldx, s, beta, out + r, ldo);
    }
}

/* ---- launchers ----------------------------------------------------------------------------- */

static inline size_t net_elems(int rows, int cols) { return (size_t)rows * (size_t)cols; }

extern "C" ng_status ng_cuda_act_forward(int rows, int cols, int act, const float *z, int ldz,
                                         const float *scale, const float *bias, float *a, int lda,
                                         void *stream) {
    NG_NVTX_PUSH("act_forward");
    if (act == NG_ACT_SOFTMAX)
        NG_LAUNCH(softmax_forward_kernel, ng_grid_1d((size_t)cols, NET_COL_BLOCK), NET_COL_BLOCK, 0,
                  (cudaStream_t)stream)(rows, cols, z, ldz, scale, bias, a, lda);
    else
        NG_LAUNCH(act_forward_kernel, ng_grid_1d(net_elems(rows, cols), NET_BLOCK), NET_BLOCK, 0,
                  (cudaStream_t)stream)(rows, cols, act, z, ldz, scale, bias, a, lda);
    NG_LAUNCH_CHECK("act_forward");
    return NG_OK;
}

extern "C" ng_status ng_cuda_act_backward(int rows, int cols, int act, const float *a, int lda,
                                          const float *g, int ldg, const float *h, int ldh,
                                          const float *r, int ldr, float *out, int ldo,
                                          void *stream) {
    NG_NVTX_PUSH("act_backward");
    NG_LAUNCH(act_backward_kernel, ng_grid_1d(net_elems(rows, cols), NET_BLOCK), NET_BLOCK, 0,
              (cudaStream_t)stream)(rows, cols, act, a, lda, g, ldg, h, ldh, r, ldr, out, ldo);
    NG_LAUNCH_CHECK("act_backward");
    return NG_OK;
}

extern "C" ng_status ng_cuda_loss(int loss, int rows, int cols, const float *z, int ldz,
                                  const float *y, int ldy, const float *t, int ldt, float scale,
                                  float *d, int ldd, float *obj, float *err, float *acc,
                                  float acc_beta, int miss, void *stream) {
    NG_NVTX_PUSH("loss");
    if (acc != NULL)
        NG_LAUNCH(loss_sums_kernel, 1, NET_SUM_BLOCK, 0, (cudaStream_t)stream)(
            loss, rows, cols, z, ldz, y, ldy, t, ldt, scale, d, ldd, obj, err, acc, acc_beta, miss);
    else
        NG_LAUNCH(loss_kernel, ng_grid_1d((size_t)cols, NET_COL_BLOCK), NET_COL_BLOCK, 0,
                  (cudaStream_t)stream)(loss, rows, cols, z, ldz, y, ldy, t, ldt, scale, d, ldd,
                                        obj, err, miss);
    NG_LAUNCH_CHECK("loss");
    return NG_OK;
}

extern "C" ng_status ng_cuda_loss_hvp(int loss, int rows, int cols, const float *y, int ldy,
                                      const float *v, int ldv, float scale, float *out, int ldo,
                                      void *stream) {
    NG_NVTX_PUSH("loss_hvp");
    NG_LAUNCH(loss_hvp_kernel, ng_grid_1d((size_t)cols, NET_COL_BLOCK), NET_COL_BLOCK, 0,
              (cudaStream_t)stream)(loss, rows, cols, y, ldy, v, ldv, scale, out, ldo);
    NG_LAUNCH_CHECK("loss_hvp");
    return NG_OK;
}

extern "C" ng_status ng_cuda_sample_targets(int loss, int rows, int cols, const float *y, int ldy,
                                            float *t, int ldt, uint64_t key, uint64_t step,
                                            uint64_t col0, uint64_t *step_dev, uint64_t advance, void *stream) {
    NG_NVTX_PUSH("sample_targets");
    if (loss == NG_LOSS_CATEGORICAL)
        NG_LAUNCH(sample_categorical_kernel, ng_grid_1d((size_t)cols, NET_COL_BLOCK), NET_COL_BLOCK,
                  0, (cudaStream_t)stream)(rows, cols, y, ldy, t, ldt, key, step, col0, step_dev, advance);
    else
        NG_LAUNCH(sample_targets_kernel, ng_grid_1d(net_elems(rows, cols), NET_BLOCK), NET_BLOCK, 0,
                  (cudaStream_t)stream)(loss, rows, cols, y, ldy, t, ldt, key, step, col0, step_dev, advance);
    NG_LAUNCH_CHECK("sample_targets");
    return NG_OK;
}

extern "C" ng_status ng_cuda_row_moments(int rows, int cols, const float *x, int ldx, float eps,
                                         float *mean, float *rstd, void *stream) {
    NG_NVTX_PUSH("row_moments");
    NG_LAUNCH(row_moments_kernel, ng_grid_1d((size_t)rows, NET_COL_BLOCK), NET_COL_BLOCK, 0,
              (cudaStream_t)stream)(rows, cols, x, ldx, eps, mean, rstd);
    NG_LAUNCH_CHECK("row_moments");
    return NG_OK;
}

extern "C" ng_status ng_cuda_bn_merge(int mode, int rows, int cols, double cnt, float eps, float alpha, int scaled,
                                      float *mean, float *rstd, double *acc, double *acc2, double *tot, const float *x,
                                      int ldx, float *out, int ldo, void *stream) {
    NG_NVTX_PUSH("bn_merge");
    NG_LAUNCH(bn_merge_kernel, ng_grid_1d((size_t)rows, NET_COL_BLOCK), NET_COL_BLOCK, 0,
              (cudaStream_t)stream)(mode, rows, cols, cnt, eps, alpha, scaled, mean, rstd, acc, acc2, tot, x, ldx, out, ldo);
    NG_LAUNCH_CHECK("bn_merge");
    return NG_OK;
}

extern "C" ng_status ng_cuda_bn_normalize(int rows, int cols, const float *x, int ldx,
                                          const float *mean, const float *rstd, float *xhat,
                                          int ldh, void *stream) {
    NG_NVTX_PUSH("bn_normalize");
    NG_LAUNCH(bn_normalize_kernel, ng_grid_1d(net_elems(rows, cols), NET_BLOCK), NET_BLOCK, 0,
              (cudaStream_t)stream)(rows, cols, x, ldx, mean, rstd, xhat, ldh);
    NG_LAUNCH_CHECK("bn_normalize");
    return NG_OK;
}

extern "C" ng_status ng_cuda_bn_project(int rows, int cols, const float *g, int ldg,
                                        const float *xhat, int ldx, const float *s1,
                                        const float *s2, float beta, float *out, int ldo,
                                        void *stream) {
    NG_NVTX_PUSH("bn_project");
    NG_LAUNCH(bn_project_kernel, ng_grid_1d((size_t)rows, NET_COL_BLOCK), NET_COL_BLOCK, 0,
              (cudaStream_t)stream)(rows, cols, g, ldg, xhat, ldx, s1, s2, beta, out, ldo);
    NG_LAUNCH_CHECK("bn_project");
    return NG_OK;
}
