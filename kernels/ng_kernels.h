/* ng_kernels.h: the extern "C" launchers of kernels/<family>.cu, callable from C
 * (host/backend/cuda.c). Each launcher queues one kernel on `stream` (a cudaStream_t passed as
 * void *, so no CUDA type appears here), opens an NVTX range named after the kernel and returns the
 * launch error, if any, as an ng_status. Launchers do not synchronize and do not validate shapes:
 * the checked wrappers of host/backend/backend.c have done that. Matrices are column-major with
 * explicit leading dimensions; semantics (= overwrite, += accumulate, beta = 0 ignores the output)
 * are those of the slot of the same name in natgrad/backend.h. */
#ifndef NG_KERNELS_H
#define NG_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "natgrad/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- gibbs.cu ----------------------------------------------------------------------------- */

/* Fused Gibbs step, pre/prob/sample (rows, cols) with leading dimensions ldp/ldq/lds:
 * prob = sigmoid(beta (pre + bias) + (1 - beta) base)  (=, skipped when prob is NULL),
 * sample = [u(key, step, r + rows c) <= prob]           (=, skipped when sample is NULL).
 * bias and base may be NULL (= 0). pre may alias prob or sample (same pointer and ld). */
ng_status ng_cuda_gibbs_sample(int rows, int cols, const float *pre, int ldp, const float *bias,
                               float beta, const float *base, float *prob, int ldq, float *sample,
                               int lds, uint64_t key, uint64_t step, void *stream);
/* out(n) = [u(key, step, i) <= p[i]]  (=); p and out may alias. */
ng_status ng_cuda_bernoulli(size_t n, const float *p, float *out, uint64_t key, uint64_t step,
                            void *stream);

/* ---- reduce.cu ---------------------------------------------------------------------------- */

/* y(cols) = alpha * sum_r softplus(beta (pre[r,c] + bias[r])) + gamma * y  (gamma = 0 ignores y);
 * bias may be NULL (= 0). One block per column, fixed-order tree: reproducible run to run. */
ng_status ng_cuda_softplus_sum(int rows, int cols, const float *pre, int ldp, const float *bias,
                               float beta, float alpha, float gamma, float *y, void *stream);

/* ---- fill.cu ------------------------------------------------------------------------------ */

/* out(n) = value  (=) */
ng_status ng_cuda_fill(size_t n, float value, float *out, void *stream);
/* out(n) = uniform in (0, 1] of (key, step, i)  (=) */
ng_status ng_cuda_fill_uniform(size_t n, float *out, uint64_t key, uint64_t step, void *stream);
/* out(nbits, count)[b, c] = bit b of (first + c)  (=); nbits <= 64 */
ng_status ng_cuda_binary_states(int nbits, uint64_t first, int count, float *out, int ldo,
                                void *stream);
/* y(n) = (double) x  (=) */
ng_status ng_cuda_to_double(size_t n, const float *x, double *y, void *stream);
/* y(n) = (float) x  (=, round to nearest) */
ng_status ng_cuda_to_float(size_t n, const double *x, float *y, void *stream);
/* y(n) = alpha x + beta y  (beta = 0 ignores y); x and y may alias. */
ng_status ng_cuda_axpby(size_t n, float alpha, const float *x, float beta, float *y,
                        void *stream);
/* y(n) = ca (a_num / a_den) x + cb (b_num / b_den) y, the four scalars read from device memory
 * (NULL = 1); cb = 0 ignores y; x and y may alias. */
ng_status ng_cuda_axpby_dev(size_t n, float ca, const float *a_num, const float *a_den,
                            const float *x, float cb, const float *b_num, const float *b_den,
                            float *y, void *stream);
/* C(m,n) = beta C  (beta = 0 writes 0 without reading C); lower != 0: only the lower triangle
 * (r >= c) is touched. The C = beta C case of gemm/syrk when alpha = 0 or k = 0. */
ng_status ng_cuda_scale_matrix(int m, int n, float beta, float *C, int ldc, int lower,
                               void *stream);

/* ---- fang.cu ------------------------------------------------------------------------------ */

/* A(n,n): strict upper triangle = transpose of the strict lower one, diagonal += shift (=). */
ng_status ng_cuda_symmetrize_lower(int n, float *A, int lda, float shift, void *stream);
/* One thread per pair (j, i): FANG eq. 11-12 (ng_fang_regress_pair) from the (nh,nv) moment
 * matrices (ld ldm) and the unary moment vectors; beta_v, beta_h, sigma2 (nh,nv) ld ldo (=). */
ng_status ng_cuda_fang_regress(int nh, int nv, const float *Evh, const float *Ev2h,
                               const float *Evh2, const float *Ev2h2, int ldm, const float *mu_v,
                               const float *mu_h, const float *Ev2, const float *Eh2,
                               float lambda, float *beta_v, float *beta_h, float *sigma2,
                               int ldo, void *stream);
/* Elementwise over (nh,nv) (ng_fang_residual_elem), in place in G:
 * G[j,i] = (G[j,i] - beta_v[j,i] ga[i] - beta_h[j,i] gb[j]) / sigma2[j,i],
 * pv = beta_v .* G, ph = beta_h .* G  (=). */
ng_status ng_cuda_fang_residual(int nh, int nv, float *G, int ldg, const float *ga,
                                const float *gb, const float *beta_v, const float *beta_h,
                                const float *sigma2, int ldb, float *pv, float *ph, int ldp,
                                void *stream);

/* ---- optim.cu ----------------------------------------------------------------------------- */

/* The fused Adam / RMSprop step over n elements (ng_adam_elem): m = b1 m + c1 g (skipped when m is
 * NULL), v = b2 v + c2 g^2, s = -lr (m / bc1) / (sqrt(v / bc2) + eps), param += s, step = s (=,
 * skipped when step is NULL). */
ng_status ng_cuda_adam(size_t n, float *param, const float *grad, float *m, float *v, float *step,
                       float b1, float c1, float b2, float c2, double bc1, double bc2, float lr,
                       float eps, void *stream);

#ifdef __cplusplus
}
#endif
#endif
