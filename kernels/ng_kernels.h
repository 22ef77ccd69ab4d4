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

#include "natgrad/backend.h"
#include "natgrad/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- launch.cu: launch shapes of the custom kernel families ---------------------------------- */

/* The families whose launchers read the table (their names for ng_cuda_set_block in quotes). */
typedef enum ng_kfam {
    NG_KFAM_UNIFORM = 0, /* "uniform": fill_uniform (fill.cu) */
    NG_KFAM_GIBBS,       /* "gibbs": gibbs_sample (gibbs.cu) */
    NG_KFAM_BERNOULLI,   /* "bernoulli": bernoulli (gibbs.cu) */
    NG_KFAM_FANG,        /* "fang": symmetrize_lower, fang_regress, fang_residual (fang.cu) */
    NG_KFAM_FACTOR,      /* "factor": factor_update (factor.cu), square tiles of sqrt(threads) */
    NG_KFAM_CONV,        /* "conv": conv_gather, whiten1x1 (conv.cu) */
    NG_KFAM_OPTIM,       /* "optim": adam, momentum, outer_scale (optim.cu) */
    NG_KFAM_REDUCE,      /* "reduce": softplus_sum (reduce.cu), a shared-memory tree */
    NG_KFAM_COUNT
} ng_kfam;
#define NG_BLOCK_MAX 1024 /* threads per block, every family */

/* Threads per block of a family from now on (process-wide; 0 restores the default, 256 for every
 * family). Refused with NG_ERR_INVALID_ARG and a message naming the family and the rule: outside
 * 32..1024; not a multiple of 32 (elementwise families); not a power of two ("reduce"); not 64, 256
 * or 1024 ("factor": 8x8, 16x16, 32x32 tiles); an unknown family name. Set between launches, from
 * one thread; a captured CUDA graph keeps the shape of its capture. */
ng_status ng_cuda_set_block(const char *family, int threads);
/* At most `blocks` blocks per launch of a family (0: no cap, the default); its grid-stride loops
 * cover the rest. Refused for "factor" (one block per output tile) and for blocks < 0. */
ng_status ng_cuda_set_grid_cap(const char *family, int blocks);
int ng_cuda_block(ng_kfam family);         /* threads per block now */
int ng_cuda_block_default(ng_kfam family); /* the default */
int ng_cuda_grid_cap(ng_kfam family);      /* 0: none */
const char *ng_cuda_family_name(ng_kfam family);
/* Blocks of ng_cuda_block(family) threads covering `items` (ng_grid_1d), within the family's cap. */
unsigned int ng_cuda_grid(ng_kfam family, size_t items);

/* ---- gibbs.cu ----------------------------------------------------------------------------- */

/* Fused Gibbs step, pre/prob/sample (rows, cols) with leading dimensions ldp/ldq/lds:
 * prob = sigmoid(beta (pre + bias) + (1 - beta) base)  (=, skipped when prob is NULL),
 * sample = [u(key, step, first + r + rows c) <= prob]   (=, skipped when sample is NULL).
 * bias and base may be NULL (= 0). pre may alias prob or sample (same pointer and ld).
 * step_dev non-NULL: the step is step_dev[0] + step, and the last block sets step_dev[0] += advance
 * (step_dev[1]: its ticket, 0 between launches). */
ng_status ng_cuda_gibbs_sample(int rows, int cols, const float *pre, int ldp, const float *bias,
                               float beta, const float *base, float *prob, int ldq, float *sample,
                               int lds, uint64_t key, uint64_t step, uint64_t first, uint64_t *step_dev,
                               uint64_t advance, void *stream);
/* out(n) = [u(key, step, first + i) <= p[i]]  (=); p and out may alias. step_dev as gibbs_sample's. */
ng_status ng_cuda_bernoulli(size_t n, const float *p, float *out, uint64_t key, uint64_t step,
                            uint64_t first, uint64_t *step_dev, uint64_t advance, void *stream);

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
/* y = alpha x + beta y on count (<= NG_SEGMENTS_MAX) disjoint segments [off[s], off[s] + len[s]) in
 * one launch (ng_axpby_elem; beta = 0 ignores y). */
ng_status ng_cuda_axpby_segments(int count, const size_t *off, const size_t *len, float alpha, const float *x,
                                 float beta, float *y, void *stream);
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
/* count non-NULL (device, 2 doubles): bc1, bc2 from the step count t = count[0] (m NULL: 1), and
 * count[0] = t + 1 by the last block to finish (count[1]: its ticket, 0 between launches). */
ng_status ng_cuda_adam(size_t n, float *param, const float *grad, float *m, float *v, float *step,
                       float b1, float c1, float b2, float c2, double bc1, double bc2, float lr,
                       float eps, double *count, void *stream);
/* Heavy-ball SGD / NAG in one pass (ng_momentum_elem, NG_OP_MOMENTUM). */
ng_status ng_cuda_momentum(size_t n, const float *d, float *v, float *p, float *bar, float a, float mu,
                           float c, int nesterov, float xi, float w, float wc, void *stream);
/* K-FAC's factor accumulation (NG_OP_FACTOR_UPDATE): one launch for the count entries. */
ng_status ng_cuda_factor_update(int count, int k, float beta, const ng_factor_entry *entries, void *stream);
/* K-FAC's and HF's scalings (ng_outer_scale_elem): out[r,c] = x[r,c] phi; out may alias x. */
ng_status ng_cuda_outer_scale(int rows, int cols, int mode, const float *x, int ldx, const float *u,
                              const float *v, float floor_, float power, float *out, int ldo, void *stream);
/* ---- net.cu ------------------------------------------------------------------------------- */

/* The network-layer ops of natgrad/backend.h (ng_op_args members of the same names); codes in
 * natgrad/nn_types.h. Elementwise ops run one thread per element, per-column ops (softmax, loss,
 * loss_hvp, categorical sampling) one thread per column, per-row ops one thread per row, each
 * calling the ng_math.h body the CPU backend calls. */
/* a = f(scale[r] z + bias[r])  (=; scale, bias NULL = 1, 0); softmax per column; z may alias a. */
ng_status ng_cuda_act_forward(int rows, int cols, int act, const float *z, int ldz,
                              const float *scale, const float *bias, float *a, int lda,
                              void *stream);
/* out = g f'(a) + h r f''(a)  (=; h, r NULL = 0; not softmax); out may alias g. */
ng_status ng_cuda_act_backward(int rows, int cols, int act, const float *a, int lda,
                               const float *g, int ldg, const float *h, int ldh, const float *r,
                               int ldr, float *out, int ldo, void *stream);
/* Per column (ng_loss_col): d = scale (y - t) (=), obj[c], err[c]; each skipped when NULL. */
/* acc non-NULL: also the batch sums acc[0..1] (ng_loss_lane, ng_loss_sums_finish) in the same
 * launch, one block (the columns, then 32 lanes, then one thread). */
ng_status ng_cuda_loss(int loss, int rows, int cols, const float *z, int ldz, const float *y,
                       int ldy, const float *t, int ldt, float scale, float *d, int ldd,
                       float *obj, float *err, float *acc, float acc_beta, int miss, void *stream);
/* Per column (ng_loss_hvp_col): out = scale H_L(y) v, or scale y (y^T v) for NG_LOSS_OUTER (=);
 * out may alias v. */
ng_status ng_cuda_loss_hvp(int loss, int rows, int cols, const float *y, int ldy, const float *v,
                           int ldv, float scale, float *out, int ldo, void *stream);
/* t ~ p(t | y) with the Philox uniforms of (key, step): element i = r + rows c uses uniform i
 * (Bernoulli) or 2i, 2i+1 (Gaussian), with i = r + rows (col0 + c); categorical column c uses
 * uniform col0 + c (=); t may alias y. step_dev as gibbs_sample's. */
ng_status ng_cuda_sample_targets(int loss, int rows, int cols, const float *y, int ldy, float *t,
                                 int ldt, uint64_t key, uint64_t step, uint64_t col0, uint64_t *step_dev,
                                 uint64_t advance, void *stream);
/* mean[r], rstd[r] = 1 / sqrt(var + eps) over the cols columns of row r  (=). */
ng_status ng_cuda_row_moments(int rows, int cols, const float *x, int ldx, float eps, float *mean,
                              float *rstd, void *stream);
/* One step of synchronised batch norm's merge, one thread per row (ng_bn_merge_row; natgrad/backend.h bn_merge). */
ng_status ng_cuda_bn_merge(int mode, int rows, int cols, double cnt, float eps, float alpha, int scaled, float *mean,
                           float *rstd, double *acc, double *acc2, double *tot, const float *x, int ldx, float *out, int ldo,
                           void *stream);
/* xhat = (x - mean[r]) rstd[r]  (=); xhat may alias x. */
ng_status ng_cuda_bn_normalize(int rows, int cols, const float *x, int ldx, const float *mean,
                               const float *rstd, float *xhat, int ldh, void *stream);
/* Per row (ng_bn_project_row): out = s1 s2 (g - mean_c g - xhat mean_c(g xhat)) + beta out
 * (s1, s2 NULL = 1; beta = 0 ignores out); out may alias g. */
ng_status ng_cuda_bn_project(int rows, int cols, const float *g, int ldg, const float *xhat,
                             int ldx, const float *s1, const float *s2, float beta, float *out,
                             int ldo, void *stream);

/* ---- solver.cu ---------------------------------------------------------------------------- */

/* MINRES-QLP's scalar recurrence (NG_OP_MINRESQLP_STEP, ng_mqlp_run): one thread per system. */
ng_status ng_cuda_minresqlp_step(int count, double *state, float *sc, int init, int max_iter,
                                 double rtol, double maxxnorm, double trancond, double singtol,
                                 void *stream);

/* ---- conv.cu ------------------------------------------------------------------------------ */

/* conv_gather (natgrad/backend.h, modes in natgrad/nn_types.h): one thread per output element
 * running ng_conv_gather_elem  (=). */
ng_status ng_cuda_conv_gather(int mode, const ng_conv_shape *s, const float *x, const float *g, float *out, int flip,
                              uint64_t key, uint64_t step, uint64_t b0, uint64_t *step_dev, uint64_t advance,
                              void *stream);
/* The 1x1 whitening convolution y[b, i, q] = sum_j op(U)[i, j] (x[b, j, q] - mean[j])  (=). */
ng_status ng_cuda_whiten1x1(int n, int c, int cout, int p, int trans, const float *x, const float *mean,
                            const float *U, int ldu, float *y, void *stream);

#ifdef __cplusplus
}
#endif
#endif
