/* natgrad/backend.h: the backend table (struct ng_backend_i) and the checked wrappers that
 * algorithm code calls. Column-major everywhere; all pointers passed to ops are device pointers
 * of the backend (host code never dereferences them), except where a parameter is named *_host.
 * No CUDA types here: a stream or an event is a void *.
 *
 * The table has three kinds of slots:
 *   - memory, transfers and events;
 *   - coarse BLAS / LAPACK slots (gemm, batched gemm, syrk, gemv, trsm, reductions with host or
 *     device-resident results; potrf / potri / potrs / syevd in float32 or float64);
 *   - one `run_op` slot for every elementwise family, dispatched on an ng_op value whose argument
 *     struct is a member of ng_op_args, with `supports_op` to ask first (ggml's op table). The
 *     element bodies live once in kernels/ng_math.h. Adding a family is: an ng_op value and its
 *     ng_op_args member (here), a descriptor with its checks (backend.c), a body (ng_math.h), a
 *     case in cpu.c and a kernel + case in cuda.c, and a test descriptor in tests/test_backend.c.
 *     No new slot, no new wrapper: callers may fill ng_op_args themselves and call ng_run_op.
 *
 * Accumulate/overwrite conventions are stated per op: "=" overwrites, "+=" accumulates, and
 * BLAS-style (alpha, beta) ops compute out = alpha * f(in) + beta * out (beta = 0 ignores out,
 * even when it holds NaN, as BLAS does).
 *
 * A backend may leave a slot NULL (or answer 0 to supports_op); the wrapper then returns
 * NG_ERR_UNSUPPORTED naming the op. Several backends may live in one process, each on its own
 * device; the wrappers make the backend's device current before every call. */
#ifndef NATGRAD_BACKEND_H
#define NATGRAD_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "natgrad/dtype.h"
#include "natgrad/nn_types.h"
#include "natgrad/profile.h"
#include "natgrad/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ng_device {
    NG_DEVICE_AUTO = 0, /* CUDA when compiled in and a device answers, else CPU */
    NG_DEVICE_CPU,
    NG_DEVICE_CUDA
} ng_device;

typedef struct ng_backend ng_backend;

/* ---- elementwise families ------------------------------------------------------------------ */

typedef enum ng_op {
    NG_OP_FILL = 0,         /* out(n) = value  (=) */
    NG_OP_FILL_UNIFORM,     /* out(n) = uniform in (0,1] of Philox (key, step, i)  (=) */
    NG_OP_BERNOULLI,        /* out(n) = [u(key, step, i) <= p[i]]  (=); p and out may alias */
    NG_OP_AXPBY,            /* y(n) = alpha x + beta y; x and y may alias */
    NG_OP_AXPBY_DEV,        /* y(n) = ca ra x + cb rb y with device scalars ra = a_num / a_den,
                             * rb = b_num / b_den (a NULL numerator or denominator counts as 1, a
                             * zero denominator makes the ratio 0): the scalar steps of iterative solvers without a host round trip */
    NG_OP_CONVERT,          /* y(n) = x(n) converted between float32 and float64  (=) */
    NG_OP_GIBBS_SAMPLE,     /* fused Gibbs step of a layer, see the struct below */
    NG_OP_SOFTPLUS_SUM,     /* y[c] = alpha sum_r softplus(beta (pre[r,c] + bias[r])) + gamma y[c] */
    NG_OP_BINARY_STATES,    /* out[b, c] = bit b of (first + c)  (=) */
    NG_OP_SYMMETRIZE_LOWER, /* A(n,n): strict upper = transpose of strict lower, diagonal += shift */
    NG_OP_FANG_REGRESS,     /* FANG eq. 11-12 for every pair (host/optim/fang.c) */
    NG_OP_FANG_RESIDUAL,    /* pairwise part of the FANG direction */
    /* network layers (host/models/net.c); activation and loss codes in natgrad/nn_types.h */
    NG_OP_ACT_FORWARD,      /* a = f(scale[r] z + bias[r]), softmax per column  (=) */
    NG_OP_ACT_BACKWARD,     /* out = g f'(a) + h r f''(a)  (=) */
    NG_OP_LOSS,             /* matching loss per column: d = scale (y - t), objective, error */
    NG_OP_LOSS_HVP,         /* out = scale H_L(y) v per column (or scale d d^T v)  (=) */
    NG_OP_SAMPLE_TARGETS,   /* t ~ the model's predictive distribution at y  (=) */
    NG_OP_ROW_MOMENTS,      /* batch-norm statistics of each row: mean, 1/sqrt(var + eps)  (=) */
    NG_OP_BN_NORMALIZE,     /* xhat = (x - mean[r]) rstd[r]  (=) */
    NG_OP_BN_PROJECT,       /* the batch-norm Jacobian (symmetric) applied row by row */
    NG_OP_ADAM,             /* fused Adam / RMSprop step of the update rules, see the struct below */
    NG_OP_OUTER_SCALE,      /* out[r,c] = x[r,c] phi(u[r], v[c]): scalings of K-FAC's inverses */
    NG_OP_FACTOR_UPDATE,    /* C_e = beta C_e + alpha_e X_e Y_e^T for many factors at once (K-FAC) */
    NG_OP_MINRESQLP_STEP,   /* one step of MINRES-QLP's scalar recurrence per system (one thread each) */
    NG_OP_CONV_GATHER,      /* im2col, col2im, pooling and its gradients, NCHW <-> NHWC  (=) */
    NG_OP_WHITEN1X1,        /* the 1x1 whitening convolution: y = U (x - mean) per pixel  (=) */
    NG_OP_MOMENTUM,         /* fused heavy-ball / Nesterov step of sgd and nag, see the struct below */
    NG_OP_AXPBY_SEGMENTS,   /* axpby on up to NG_SEGMENTS_MAX segments of two vectors in one launch */
    NG_OP_BN_MERGE,         /* one float64 step of synchronised batch norm's merge across ranks, see below */
    NG_OP_COUNT
} ng_op;

/* One factor of NG_OP_FACTOR_UPDATE: C (rows x cols, ld ldc) = beta C + alpha X Y^T with X (rows x k,
 * ld ldx), Y (cols x k, ld ldy). Y == X with ldy == ldx and rows == cols makes the entry symmetric:
 * only the lower triangle's products are formed, the old C is read on the lower triangle only, and
 * the upper triangle receives the mirror, so C comes out exactly symmetric. */
#define NG_FACTOR_UPDATE_MAX 32
#define NG_SEGMENTS_MAX 32 /* segments of one NG_OP_AXPBY_SEGMENTS */
typedef struct ng_factor_entry {
    int rows, cols;
    const float *X; int ldx;
    const float *Y; int ldy;
    float alpha;
    float *C; int ldc;
} ng_factor_entry;

/* Arguments of each family: the member named after the op. Shapes are column-major with explicit
 * leading dimensions; pointers are device pointers. */
typedef struct ng_op_args {
    ng_op op;
    union {
        struct { size_t n; float value; float *out; } fill;
        struct { size_t n; float *out; uint64_t key, step; } fill_uniform;
        /* out[i] = [u(key, step, first + i) <= p[i]]: first (0 unless set) is the global index of
         * element 0, so a data-parallel rank holding part of a larger array draws what one process
         * would draw for it. step_dev non-NULL (device memory, 2 words): the Philox step is
         * step_dev[0] + step, read on the device, and after the op step_dev[0] += advance
         * (step_dev[1]: the CUDA kernel's block ticket, 0 between launches), as gibbs_sample's */
        struct {
            size_t n; const float *p; float *out; uint64_t key, step, first;
            uint64_t *step_dev; uint64_t advance;
        } bernoulli;
        struct { size_t n; float alpha; const float *x; float beta; float *y; } axpby;
        struct {
            size_t n;
            float ca;
            const float *a_num, *a_den; /* (1) each, or NULL */
            const float *x;
            float cb;                   /* cb = 0 ignores y */
            const float *b_num, *b_den;
            float *y;
        } axpby_dev;
        struct { size_t n; ng_dtype from, to; const void *x; void *y; } convert;
        /* x = beta * (pre[r,c] + bias[r]) + (1 - beta) * base[r]   (bias, base may be NULL = 0)
         * prob[r,c] = sigmoid(x)  (=, skipped when NULL)
         * sample[r,c] = [u(key, step, first + r + rows*c) <= prob]  (=, skipped when NULL)
         * pre may alias prob or sample (same pointer and ld). first (0 unless set): the global
         * index of element (0, 0), e.g. rows * c0 for a rank holding columns c0.. of the chains.
         * step_dev non-NULL (device memory, 2 words): the Philox step is step_dev[0] + step, read
         * on the device (a captured CUDA graph replays with the current count), and after the op
         * step_dev[0] += advance; step_dev[1] is the CUDA kernel's block ticket (0 between
         * launches; create the pair as {first step, 0}).
         * sum non-NULL (rows doubles; only on a backend with sum_cols_part, see
         * ng_sum_cols_part_supported): also sum[r] += out[r,c] for c = 0 .. cols-1 in order, in
         * double, out = prob when requested, else sample (sum_first: sum zeroed first): the bits
         * of ng_sum_cols_part over out, fused so the result is summed while it is in cache. */
        struct {
            int rows, cols;
            const float *pre; int ldp;
            const float *bias;
            float beta;
            const float *base;
            float *prob; int ldq;
            float *sample; int lds;
            uint64_t key, step, first;
            uint64_t *step_dev;
            uint64_t advance;
            double *sum; int sum_first;
        } gibbs_sample;
        /* y[c] = alpha * sum_r softplus(beta * (pre[r,c] + bias[r])) + gamma * y[c] (bias may be
         * NULL = 0; gamma = 0 ignores y). Summation order is fixed (reproducible). */
        struct {
            int rows, cols;
            const float *pre; int ldp;
            const float *bias;
            float beta, alpha, gamma;
            float *y;
        } softplus_sum;
        struct { int nbits; uint64_t first; int count; float *out; int ldo; } binary_states;
        struct { int n; float *A; int lda; float shift; } symmetrize_lower;
        /* For every pair (j, i), j < nh, i < nv, the regression of m_ij = v_i h_j on (v_i, h_j)
         * (ng_fang_regress_pair) from the moment matrices Evh = E[h v^T], Ev2h = E[h (v.^2)^T],
         * Evh2 = E[h.^2 v^T], Ev2h2 = E[h.^2 (v.^2)^T] (all (nh,nv), ld ldm) and the vectors
         * mu_v = E[v], Ev2 = E[v.^2] (nv), mu_h = E[h], Eh2 = E[h.^2] (nh), with lambda I added to
         * the 3x3 covariance: beta_v, beta_h, sigma2 (nh,nv), ld ldo  (=). */
        struct {
            int nh, nv;
            const float *Evh, *Ev2h, *Evh2, *Ev2h2; int ldm;
            const float *mu_v, *mu_h, *Ev2, *Eh2;
            float lambda;
            float *beta_v, *beta_h, *sigma2; int ldo;
        } fang_regress;
        /* On (nh,nv) matrices (ng_fang_residual_elem):
         *   G[j,i] = q = (G[j,i] - beta_v[j,i] ga[i] - beta_h[j,i] gb[j]) / sigma2[j,i]  (=, in place)
         *   pv = beta_v .* q,  ph = beta_h .* q  (=); beta_v, beta_h, sigma2 share ldb; pv, ph ldp. */
        struct {
            int nh, nv;
            float *G; int ldg;
            const float *ga, *gb;
            const float *beta_v, *beta_h, *sigma2; int ldb;
            float *pv, *ph; int ldp;
        } fang_residual;
        /* a[r,c] = f(s[r] z[r,c] + bias[r]) for r < rows (s, bias may be NULL = 1, 0); act
         * NG_ACT_SOFTMAX normalises each column. z may alias a (same pointer and ld). */
        struct {
            int rows, cols, act;
            const float *z; int ldz;
            const float *scale, *bias;
            float *a; int lda;
        } act_forward;
        /* out = g f'(a) + h r f''(a) elementwise, f' and f'' written in terms of a = f(z)
         * (ng_act_d1, ng_act_d2); h and r NULL: out = g f'(a). Not for softmax. out may alias g. */
        struct {
            int rows, cols, act;
            const float *a; int lda;
            const float *g; int ldg;
            const float *h; int ldh;
            const float *r; int ldr;
            float *out; int ldo;
        } act_backward;
        /* Per column c of the output layer (ng_loss_col): d = scale (y - t) (=, when d is non-NULL;
         * may alias y), obj[c] = the case's loss, err[c] = sum_r (y - t)^2 (each skipped when
         * NULL). z: the pre-activation, y = f(z). acc non-NULL (needs obj and err): then also the
         * batch sums in the same launch, acc[0] = sum_c obj[c], acc[1] = sum_c err[c] (acc_beta = 0:
         *  =, otherwise +=; the order of ng_loss_lane / ng_loss_sums_finish). acc overlaps nothing.
         * err_miss = 1 (a classifier's error count): err[c] = 1 when the first maximum of y[:,c] is
         * not at the first maximum of t[:,c], else 0 (so acc[1] counts the misclassified cases). */
        struct {
            int rows, cols, loss;
            const float *z; int ldz;
            const float *y; int ldy;
            const float *t; int ldt;
            float scale;
            float *d; int ldd;
            float *obj, *err;
            float *acc; float acc_beta;
            int err_miss;
        } loss;
        /* out[:,c] = scale H_L(y[:,c]) v[:,c] (ng_loss_hvp_col); loss = NG_LOSS_OUTER:
         * out[:,c] = scale y[:,c] (y[:,c]^T v[:,c]). out may alias v. */
        struct {
            int rows, cols, loss;
            const float *y; int ldy;
            const float *v; int ldv;
            float scale;
            float *out; int ldo;
        } loss_hvp;
        /* t ~ p(t | y): squared: y + N(0,1) (Box-Muller on the uniforms of Philox elements 2i and
         * 2i+1 of (key, step), i = r + rows (col0 + c)); Bernoulli: [u_i <= y]; categorical: a
         * one-hot column by inverse CDF of uniform col0 + c. col0 (0 unless set) is the global
         * position of the first column, so a data-parallel rank holding columns col0.. of a
         * batch draws the same targets as one process holding the whole batch. t may alias y.
         * step_dev non-NULL: the step is step_dev[0] + step, read on the device, and after the op
         * step_dev[0] += advance, as gibbs_sample's (advance 0: read only, so a captured CUDA graph
         * replays with the value the host wrote there since: K-FAC's statistics, truncated Newton's
         * sampled F v). */
        struct {
            int rows, cols, loss;
            const float *y; int ldy;
            float *t; int ldt;
            uint64_t key, step;
            uint64_t col0;
            uint64_t *step_dev; uint64_t advance;
        } sample_targets;
        /* mean[r], rstd[r] = 1/sqrt(var[r] + eps) over the cols columns of row r (biased var). */
        struct {
            int rows, cols;
            const float *x; int ldx;
            float eps;
            float *mean, *rstd;
        } row_moments;
        /* Synchronised batch norm over the ranks (Chan et al.'s merge in float64; the caller
         * all-reduces acc / acc2 between the steps, so that no value goes through the host). Per row
         * r < rows, with cnt this rank's samples (>= 0), tot the samples of every rank:
         *   COUNTS   acc[r] = cnt mean[r] (0 when cnt = 0), acc[rows] = cnt             (=)
         *   SCATTER  (acc summed) acc[r] = mu = acc[r] / acc[rows],
         *            acc2[r] = cnt (1 / rstd[r]^2 - eps + (mean[r] - mu)^2) (0 when cnt = 0)  (=)
         *   FINISH   (acc2 summed) mean[r] = mu, rstd[r] = 1 / sqrt(max(acc2[r] / tot, 0) + eps),
         *            *tot = acc[rows]                                                    (=)
         *   WEIGHT   acc[r + rows c] = w x[r + ldx c] for c < cols, w = scaled ? cnt / *tot : 1  (=)
         *   MEANS    (acc summed) out[r + ldo c] = alpha acc[r + rows c] / *tot / w  (=, float) */
        struct {
            int mode, rows, cols;
            double cnt;
            float eps, alpha;
            int scaled;
            float *mean, *rstd;
            double *acc, *acc2, *tot;
            const float *x; int ldx;
            float *out; int ldo;
        } bn_merge;
        /* xhat = (x - mean[r]) rstd[r]; xhat may alias x. */
        struct {
            int rows, cols;
            const float *x; int ldx;
            const float *mean, *rstd;
            float *xhat; int ldh;
        } bn_normalize;
        /* out[r,c] = s1[r] s2[r] (g - mean_c g - xhat mean_c(g xhat))[r,c] + beta out[r,c]
         * (s1, s2 NULL = 1; beta = 0 ignores out; out may alias g). */
        struct {
            int rows, cols;
            const float *g; int ldg;
            const float *xhat; int ldx;
            const float *s1, *s2;
            float beta;
            float *out; int ldo;
        } bn_project;
        /* Adam (Kingma & Ba 2015, Algorithm 1) and RMSprop (Tieleman & Hinton 2012) on flat
         * vectors (ng_adam_elem), for every i with g = grad[i]:
         *   m = b1 m + c1 g                              (in place; m NULL: no first moment, and
         *                                                 m / bc1 below reads g)
         *   v = b2 v + c2 g^2                            (in place)
         *   s = -lr (m / bc1) / (sqrt(v / bc2) + eps)    (from the stored, rounded m and v)
         *   param += s;  step = s                        (step: =, skipped when NULL)
         * Adam: c1 = 1 - b1, c2 = 1 - b2, bc1 = 1 - b1^(t+1), bc2 = 1 - b2^(t+1) for update t
         * (bias correction); RMSprop: m NULL, b2 = rho, c2 = 1 - rho, bc2 = 1. Requires eps > 0,
         * bc1 > 0 (when m is given) and bc2 > 0. param, grad, m, v and step must not overlap.
         * count non-NULL (device memory, 2 doubles): the step count lives on the device, so a
         * captured CUDA graph replays correct bias corrections: count[0] holds t (an integer
         * < 2^53), bc1 and bc2 are ignored and computed from it (ng_adam_bias_correction of b1 and
         * b2; m NULL: both 1), and the op ends with count[0] = t + 1; count[1] is the CUDA kernel's block ticket
         * (0 between launches; zero both when creating the count). */
        struct {
            size_t n;
            float *param;
            const float *grad;
            float *m, *v, *step;
            float b1, c1, b2, c2;
            double bc1, bc2;
            float lr, eps;
            double *count;
        } adam;
        /* Heavy-ball SGD and NAG in one pass (ng_momentum_elem), for i < n:
         *   v = a d + mu v;  p = c v + p;  p = a d + p (nesterov = 1)
         *   bar = w p + xi bar;  bar = wc v + bar (wc != 0)      (bar NULL: skipped)
         * each line rounded as the axpby op rounds it (mu = 0 ignores the old v, as axpby's beta = 0
         * does). v, p, bar overlap nothing; d must not overlap them. */
        struct {
            size_t n;
            const float *d;
            float *v, *p, *bar;
            float a, mu, c;
            int nesterov;
            float xi, w, wc;
        } momentum;
        /* y[i] = alpha x[i] + beta y[i] (axpby's body, beta = 0 ignores y) for every i in
         * [off[s], off[s] + len[s]), s < count (<= NG_SEGMENTS_MAX); nothing else is touched. The
         * segments must not overlap one another; x and y may alias. Weight decay on the tensors
         * marked for it (host/optim/update.c): one launch instead of one per tensor. */
        struct {
            int count;
            float alpha;
            const float *x;
            float beta;
            float *y;
            size_t off[NG_SEGMENTS_MAX], len[NG_SEGMENTS_MAX];
        } axpby_segments;
        /* out[r,c] = x[r,c] * phi(u[r], v[c]) for r < rows, c < cols (ng_outer_scale_phi), mode:
         *   NG_OSCALE_MUL    phi = u[r] v[c]  (u or v NULL = 1): row / column scaling
         *   NG_OSCALE_RSQRT  phi = 1 / sqrt(max(v[c], floor))  (u must be NULL): a matrix of
         *                    eigenvectors times diag(w)^(-1/2) (inverse square roots, whitening)
         *   NG_OSCALE_STEIN  phi = 1 / max(1 - u[r] v[c], floor): the elementwise division of
         *                    appendix B of the K-FAC paper
         *   NG_OSCALE_SQUARE phi = x[r,c] u[r] v[c]  (u or v NULL = 1): squares (per-case squared
         *                    gradients of Hessian-free's diagonal preconditioner)
         *   NG_OSCALE_POW    phi = max(v[c], floor)^power  (u must be NULL): Hessian-free's
         *                    (diag + lambda)^-0.75
         * floor > 0 for RSQRT, STEIN and POW; power finite. out may alias x (same pointer and ld). */
        struct {
            int rows, cols, mode;
            const float *x; int ldx;
            const float *u, *v;
            float floor, power;
            float *out; int ldo;
        } outer_scale;
        /* Kronecker-factor accumulation (K-FAC's statistics): for e < count (<= NG_FACTOR_UPDATE_MAX),
         * entry e[i] is updated as ng_factor_entry says, all with the same k (cases) and beta (the
         * moving-average weight; beta = 0 ignores C, NaN included). One launch on CUDA for every
         * entry (scale, blend and the symmetric update fused: one pass over each factor); on the CPU
         * ssyrk / sgemm with beta, then the mirror. No C may overlap any X, Y or another C. */
        struct {
            int count, k;
            float beta;
            ng_factor_entry e[NG_FACTOR_UPDATE_MAX];
        } factor_update;
        /* The scalar recurrence of MINRES-QLP (host/optim/minresqlp.c) for count independent
         * systems, one thread each (ng_mqlp_run in ng_math.h, which documents both layouts):
         * system j owns the double state state[j * NG_MQLP_NSTATE ..] and the float scalars
         * sc[j * NG_MQLP_NSC ..] (Lanczos alpha and beta in, the coefficients of the solver's
         * NG_OP_AXPBY_DEV vector updates out), both updated in place. init = 1 starts each system
         * from beta1 = sc[NG_MQLP_SC_BETAN]; init = 0 runs one iteration with the stopping rules
         * max_iter (>= 1), rtol (>= 0), maxxnorm (> 0), the MINRES-to-QLP switch trancond (> 0)
         * and singtol (>= 0: |last diagonal of L| <= singtol ||A|| counts as 0). state and sc
         * must not overlap. */
        struct {
            int count, init, max_iter;
            double rtol, maxxnorm, trancond, singtol;
            double *state;
            float *sc;
        } minresqlp_step;
        /* Convolution layouts and pooling (ng_conv_gather_elem; modes and shapes in
         * natgrad/nn_types.h): out = the mode's gather of x (IM2COL, POOL_MAX, POOL_AVG, TO_NHWC,
         * TO_NCHW), of g = col (COL2IM), or of g = dy with x for the maxima (POOL_MAX_BACK),
         * g = dy (POOL_AVG_BACK), or the augmentation of x (AUGMENT: crops of s.pad, flips
         * when flip = 1, drawn from (key, step) for images b0, b0 + 1, ... of the stream;
         * s.kh = s.kw = 2 s.pad + 1), or of g (n,c,h,w) at the maxima of x (POOL_MAX_R: the
         * R-operator of max pooling)  (=, ng_conv_gather_count elements). out overlaps no input.
         * AUGMENT with step_dev non-NULL (device memory, 2 words, as gibbs_sample's): the Philox
         * step is step_dev[0] + step, read on the device (a captured CUDA graph replays with the
         * current count), and after the op step_dev[0] += advance (step_dev[1]: the CUDA kernel's
         * block ticket, 0 between launches). */
        struct {
            int mode;
            ng_conv_shape s;
            const float *x, *g;
            float *out;
            int flip;
            uint64_t key, step, b0;
            uint64_t *step_dev;
            uint64_t advance;
        } conv_gather;
        /* The 1x1 whitening convolution (PRONG section 4.3: the pixels of a map are samples),
         * centering and channel mixing fused (ng_whiten1x1_elem): on maps x (n, c, p pixels),
         *   y[b, i, q] = sum_j op(U)[i, j] (x[b, j, q] - mean[j])   i < cout  (=)
         * op(U) = U (cout x c, ld ldu) or, trans = 1, U^T (U is c x cout); mean NULL = 0.
         * y overlaps no input. */
        struct {
            int n, c, cout, p, trans;
            const float *x, *mean, *U; int ldu;
            float *y;
        } whiten1x1;
    };
} ng_op_args;

/* "gibbs_sample", ... ("?" outside the enum) */
const char *ng_op_name(ng_op op);

/* ---- the table ------------------------------------------------------------------------------ */

/* One problem of ng_syevd_batched: A (n, n) with leading dimension lda (lower triangle read) and
 * w (n), device memory of the call's dtype; the call overwrites A with the eigenvectors (columns)
 * and w with the eigenvalues (ascending), and sets info to LAPACK's info (0 = success, k > 0 = no
 * convergence). */
typedef struct ng_eig_problem {
    int n;
    int lda;
    void *A;  /* (n, n), ld lda */
    void *w;  /* (n) */
    int info; /* out */
} ng_eig_problem;
#define NG_EIG_BATCH_MAX 256 /* problems per ng_syevd_batched call */
#define NG_CUDA_EIG_BATCH_N 32 /* the largest n the CUDA backend groups into one batched call */

struct ng_backend_i {
    const char *name;
    void (*destroy)(ng_backend *be);
    /* make this backend's device current on the calling thread (NULL: nothing to do) */
    ng_status (*activate)(ng_backend *be);

    /* memory */
    ng_status (*alloc)(ng_backend *be, size_t bytes, void **ptr);
    void (*free)(ng_backend *be, void *ptr);
    ng_status (*set)(ng_backend *be, void *dst, const void *src_host, size_t bytes);
    ng_status (*get)(ng_backend *be, void *dst_host, const void *src, size_t bytes);
    ng_status (*memset0)(ng_backend *be, void *dst, size_t bytes);
    ng_status (*copy)(ng_backend *be, void *dst, const void *src, size_t bytes);
    ng_status (*synchronize)(ng_backend *be);
    /* pinned host memory and transfers queued on the backend's stream: the call returns at once;
     * the host buffer must stay untouched until an event recorded after it has completed (or
     * synchronize). */
    ng_status (*alloc_host)(ng_backend *be, size_t bytes, void **ptr_host);
    void (*free_host)(ng_backend *be, void *ptr_host);
    ng_status (*set_async)(ng_backend *be, void *dst, const void *src_host, size_t bytes);
    ng_status (*get_async)(ng_backend *be, void *dst_host, const void *src, size_t bytes);
    /* events on the backend's stream */
    ng_status (*event_create)(ng_backend *be, void **event);
    void (*event_destroy)(ng_backend *be, void *event);
    ng_status (*event_record)(ng_backend *be, void *event);      /* after all queued work */
    ng_status (*event_wait)(ng_backend *be, void *event);        /* the stream waits for it */
    ng_status (*event_synchronize)(ng_backend *be, void *event); /* the host waits for it */
    ng_status (*event_elapsed)(ng_backend *be, void *start, void *end, float *ms);

    /* BLAS-like, float32. trans flags: 0 = N, 1 = T. */
    /* C(m,n) = alpha op(A) op(B) + beta C */
    ng_status (*gemm)(ng_backend *be, int ta, int tb, int m, int n, int k, float alpha,
                      const float *A, int lda, const float *B, int ldb, float beta, float *C,
                      int ldc);
    /* the same for batch = 0 .. count-1 on A + batch * sa, B + batch * sb, C + batch * sc */
    ng_status (*gemm_strided_batched)(ng_backend *be, int ta, int tb, int m, int n, int k,
                                      float alpha, const float *A, int lda, long long sa,
                                      const float *B, int ldb, long long sb, float beta, float *C,
                                      int ldc, long long sc, int count);
    /* Lower triangle of C(n,n) = alpha op(A) op(A)^T + beta C; trans = 0: A is (n,k),
     * trans = 1: A is (k,n). The strict upper triangle is not touched. */
    ng_status (*syrk)(ng_backend *be, int trans, int n, int k, float alpha, const float *A,
                      int lda, float beta, float *C, int ldc);
    /* y = alpha op(A) x + beta y, A is (m,n) */
    ng_status (*gemv)(ng_backend *be, int trans, int m, int n, float alpha, const float *A,
                      int lda, const float *x, float beta, float *y);
    /* B(m,n) = alpha op(A)^-1 B (right = 0) or alpha B op(A)^-1 (right = 1), A triangular
     * (lower or upper; unit = 1: unit diagonal, not read) of order m or n */
    ng_status (*trsm)(ng_backend *be, int right, int lower, int trans, int unit, int m, int n,
                      float alpha, const float *A, int lda, float *B, int ldb);
    /* x(n) = alpha x */
    ng_status (*scal)(ng_backend *be, size_t n, float alpha, float *x);
    /* results on the host (the call waits for the device) */
    ng_status (*dot)(ng_backend *be, size_t n, const float *x, const float *y,
                     float *result_host);
    ng_status (*nrm2)(ng_backend *be, size_t n, const float *x, float *result_host);
    /* results stay on the device (result: one float of device memory); nothing waits */
    ng_status (*dot_dev)(ng_backend *be, size_t n, const float *x, const float *y, float *result);
    ng_status (*nrm2_dev)(ng_backend *be, size_t n, const float *x, float *result);
    /* y(rows) = alpha * (sum over columns of A(rows,cols)) + beta y */
    ng_status (*sum_cols)(ng_backend *be, int rows, int cols, float alpha, const float *A,
                          int lda, float beta, float *y);
    /* sum_cols over several calls (parts of the columns, in order): acc(rows, float64) += the
     * part's column sums (acc = 0 first when `first`), each row's additions in column order in
     * double; when `last`, y = alpha * acc + beta y rounded as sum_cols rounds, so the parts give
     * the bits of one sum_cols over all their columns. Optional (NULL: callers use sum_cols). */
    ng_status (*sum_cols_part)(ng_backend *be, int rows, int cols, const float *A, int lda, double *acc,
                               int first, int last, float alpha, float beta, float *y);
    /* y(cols) = alpha * (sum over rows of A(rows,cols)) + beta y */
    ng_status (*sum_rows)(ng_backend *be, int rows, int cols, float alpha, const float *A,
                          int lda, float beta, float *y);

    /* LAPACK-like on the lower triangle, column-major (n,n), dtype NG_F32 or NG_F64 (A, B, w of
     * that type). info_host receives LAPACK's info (0 = success, k > 0 = leading minor k not
     * positive definite / no convergence). */
    ng_status (*potrf)(ng_backend *be, ng_dtype dt, int n, void *A, int lda, int *info_host);
    /* A = inverse of the SPD matrix whose lower Cholesky factor is in A (lower triangle). */
    ng_status (*potri)(ng_backend *be, ng_dtype dt, int n, void *A, int lda, int *info_host);
    /* B(n, nrhs) = (L L^T)^-1 B with the lower Cholesky factor L in A */
    ng_status (*potrs)(ng_backend *be, ng_dtype dt, int n, int nrhs, const void *A, int lda,
                       void *B, int ldb, int *info_host);
    /* eigenvalues ascending in w(n), eigenvectors in the columns of A */
    ng_status (*syevd)(ng_backend *be, ng_dtype dt, int n, void *A, int lda, void *w,
                       int *info_host);
    /* syevd of count independent problems (ng_eig_problem, sizes may differ), each problem's info
     * in p[i].info. Optional: NULL runs the problems one after another through syevd. */
    ng_status (*syevd_batched)(ng_backend *be, ng_dtype dt, int count, ng_eig_problem *p);

    /* elementwise families */
    int (*supports_op)(ng_backend *be, ng_op op);
    ng_status (*run_op)(ng_backend *be, const ng_op_args *args);

    /* math of the single-precision gemms that follow: on != 0 lets them use TF32 tensor cores
     * (operands rounded to a 10-bit mantissa), 0 restores full FP32. NULL: the backend has no
     * such mode (the CPU), and the request is ignored. Callers go through ng_tf32_begin/end. */
    ng_status (*set_tf32)(ng_backend *be, int on);

    /* CUDA graphs (stream capture). NULL on the CPU: callers go through ng_graph_*, which report
     * NG_ERR_UNSUPPORTED. graph_begin puts the backend's stream in capture mode (global mode):
     * until graph_end, the ops queued on the stream are recorded, not run, and any op that needs
     * the host to wait (get, set, dot, nrm2, the LAPACK slots, synchronize, an allocation) fails
     * with the runtime's capture error. graph_end always leaves capture mode; it instantiates the
     * recorded work into *exec, or reports why the capture failed (*exec NULL). graph_launch
     * queues one run of exec on the stream; graph_free releases it. */
    ng_status (*graph_begin)(ng_backend *be);
    ng_status (*graph_end)(ng_backend *be, void **exec);
    ng_status (*graph_launch)(ng_backend *be, void *exec);
    void (*graph_free)(ng_backend *be, void *exec);
};

struct ng_backend {
    const struct ng_backend_i *iface;
    ng_device kind;
    int device_index;      /* CUDA device ordinal (0 on the CPU) */
    void *stream;          /* CUDA stream (NULL on the CPU) */
    void *ctx;             /* backend-private state */
    char description[256]; /* one line for the start-up banner: device, BLAS, kernel */
    int tf32_allowed;      /* user opt-in (--tf32), see ng_backend_allow_tf32 */
    int tf32_active;       /* inside an ng_tf32_begin / ng_tf32_end scope that switched it on */
    int fp32_depth;        /* nesting depth of ng_fp32_begin / ng_fp32_end guards (TF32 barred inside) */
};

/* CUDA graphs: the slots above through the usual checks. ng_graph_supported is 1 when the
 * backend has them (CUDA). See natgrad/train.h (--cuda-graph) for the trainer's use. */
int ng_graph_supported(const ng_backend *be);
ng_status ng_graph_begin(ng_backend *be);
ng_status ng_graph_end(ng_backend *be, void **exec);
ng_status ng_graph_launch(ng_backend *be, void *exec);
void ng_graph_free(ng_backend *be, void *exec);

/* TF32 opt-in. ng_backend_allow_tf32(be, 1) permits TF32 tensor-core math, but only inside
 * ng_tf32_begin / ng_tf32_end scopes, which wrap the gemms of forward passes, backward passes and
 * Gibbs steps; everything outside (factor inversions, curvature products and solves, their gemms)
 * stays FP32. Without the opt-in, or on a backend without the mode (the CPU), the scopes do
 * nothing. ng_tf32_begin stores in *saved whether TF32 was already on, for ng_tf32_end(be, saved)
 * to restore it (scopes nest). */
void ng_backend_allow_tf32(ng_backend *be, int allow);
ng_status ng_tf32_begin(ng_backend *be, int *saved);
ng_status ng_tf32_end(ng_backend *be, int saved);

/* FP32 guard: between ng_fp32_begin and ng_fp32_end every single-precision gemm is full FP32, even
 * when the caller is inside a TF32 scope, and TF32 scopes opened inside (the backward pass of a
 * Gauss-Newton product, the forward pass of a line search) do nothing. The run driver puts every
 * preconditioner's work under it (factor statistics, inversions, eigendecompositions, curvature
 * products and solves, rescaling), and the network's curvature-vector products (ng_net_jvp, _gvp,
 * _fvp, _hvp, _fisher_gram) guard themselves. *saved receives whether TF32 was on, for
 * ng_fp32_end(be, saved) to switch it back. Guards nest. */
ng_status ng_fp32_begin(ng_backend *be, int *saved);
ng_status ng_fp32_end(ng_backend *be, int saved);

/* Create a backend. index selects the CUDA device (-1: device 0). NG_DEVICE_AUTO falls back to
 * the CPU (and says why in *fallback_note when non-NULL, else "") when CUDA is not compiled in or
 * no device answers. */
ng_status ng_backend_init(ng_device want, int index, ng_backend **out, char *fallback_note,
                          size_t note_len);
void ng_backend_free(ng_backend *be);
/* "auto", "cpu", "cuda", "cuda:N" (also "gpu", "gpu:N"); *index = N or -1. */
ng_status ng_device_parse(const char *s, ng_device *out, int *index);
const char *ng_device_name(ng_device d);

/* Constructors of the concrete backends (used by ng_backend_init and by tests). */
ng_status ng_backend_cpu_init(ng_backend **out);
ng_status ng_backend_cuda_init(int index, ng_backend **out); /* NG_ERR_NO_DEVICE when not compiled in */
int ng_cuda_compiled(void);
/* Number of CUDA devices that answer (0 without CUDA or a driver). */
int ng_cuda_device_count(void);

/* The CPU backend's BLAS: "OpenBLAS 0.3.21 (openmp), kernel SkylakeX, 2 threads". */
void ng_cpu_blas_describe(char *buf, size_t len);
/* Set the threads of OpenBLAS and OpenMP (n >= 1). */
void ng_cpu_set_threads(int n);
/* When OpenBLAS picked a weaker kernel than this CPU supports (a Debian OpenBLAS 0.3.21 bug on
 * some AVX-512 CPUs), re-execute the program with OPENBLAS_CORETYPE set; returns only when nothing
 * was done. Call it first thing in main(). NG_NO_BLAS_REEXEC=1 disables it. */
void ng_cpu_blas_reexec(int argc, char **argv);
/* 1 when the OpenBLAS kernel actually running fits the CPU's vector features (what the re-exec
 * achieves), 0 when a faster one exists. */
int ng_cpu_blas_kernel_fits(void);
/* The CPU backend's hand-written AVX-512 loops (Philox uniforms, Gibbs and Bernoulli draws;
 * host/backend/cpu_avx512.c) run on x86-64-v4 CPUs; ng_cpu_use_avx512(0) selects the compiler's
 * clones instead, (1) allows them again. Both give the same bits (tests compare them). Returns
 * whether they ran before the call. Not thread-safe: set it between ops. */
int ng_cpu_use_avx512(int on);

/* ---- checked wrappers: validate shapes/pointers, activate the device, call the slot ---------- */

ng_status ng_alloc(ng_backend *be, size_t bytes, void **ptr);
void ng_free(ng_backend *be, void *ptr);
ng_status ng_set(ng_backend *be, void *dst, const void *src_host, size_t bytes);
ng_status ng_get(ng_backend *be, void *dst_host, const void *src, size_t bytes);
ng_status ng_memset0(ng_backend *be, void *dst, size_t bytes);
ng_status ng_copy(ng_backend *be, void *dst, const void *src, size_t bytes);
ng_status ng_synchronize(ng_backend *be);
ng_status ng_alloc_host(ng_backend *be, size_t bytes, void **ptr_host);
void ng_free_host(ng_backend *be, void *ptr_host);
ng_status ng_set_async(ng_backend *be, void *dst, const void *src_host, size_t bytes);
ng_status ng_get_async(ng_backend *be, void *dst_host, const void *src, size_t bytes);
ng_status ng_event_create(ng_backend *be, void **event);
void ng_event_destroy(ng_backend *be, void *event);
ng_status ng_event_record(ng_backend *be, void *event);
ng_status ng_event_wait(ng_backend *be, void *event);
ng_status ng_event_synchronize(ng_backend *be, void *event);
ng_status ng_event_elapsed(ng_backend *be, void *start, void *end, float *ms);

ng_status ng_gemm(ng_backend *be, int ta, int tb, int m, int n, int k, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
ng_status ng_gemm_strided_batched(ng_backend *be, int ta, int tb, int m, int n, int k, float alpha,
                                  const float *A, int lda, long long sa, const float *B, int ldb,
                                  long long sb, float beta, float *C, int ldc, long long sc,
                                  int count);
ng_status ng_syrk(ng_backend *be, int trans, int n, int k, float alpha, const float *A, int lda,
                  float beta, float *C, int ldc);
ng_status ng_gemv(ng_backend *be, int trans, int m, int n, float alpha, const float *A, int lda,
                  const float *x, float beta, float *y);
ng_status ng_trsm(ng_backend *be, int right, int lower, int trans, int unit, int m, int n,
                  float alpha, const float *A, int lda, float *B, int ldb);
ng_status ng_scal(ng_backend *be, size_t n, float alpha, float *x);
ng_status ng_dot(ng_backend *be, size_t n, const float *x, const float *y, float *result_host);
ng_status ng_nrm2(ng_backend *be, size_t n, const float *x, float *result_host);
ng_status ng_dot_dev(ng_backend *be, size_t n, const float *x, const float *y, float *result);
ng_status ng_nrm2_dev(ng_backend *be, size_t n, const float *x, float *result);
ng_status ng_sum_cols(ng_backend *be, int rows, int cols, float alpha, const float *A, int lda,
                      float beta, float *y);
ng_status ng_sum_cols_part(ng_backend *be, int rows, int cols, const float *A, int lda, double *acc, int first,
                           int last, float alpha, float beta, float *y);
int ng_sum_cols_part_supported(const ng_backend *be);
ng_status ng_sum_rows(ng_backend *be, int rows, int cols, float alpha, const float *A, int lda,
                      float beta, float *y);
ng_status ng_potrf(ng_backend *be, int n, float *A, int lda, int *info_host);
ng_status ng_potri(ng_backend *be, int n, float *A, int lda, int *info_host);
ng_status ng_potrs(ng_backend *be, int n, int nrhs, const float *A, int lda, float *B, int ldb,
                   int *info_host);
ng_status ng_syevd(ng_backend *be, int n, float *A, int lda, float *w, int *info_host);
ng_status ng_potrf_d(ng_backend *be, int n, double *A, int lda, int *info_host);
ng_status ng_potri_d(ng_backend *be, int n, double *A, int lda, int *info_host);
ng_status ng_potrs_d(ng_backend *be, int n, int nrhs, const double *A, int lda, double *B,
                     int ldb, int *info_host);
ng_status ng_syevd_d(ng_backend *be, int n, double *A, int lda, double *w, int *info_host);
/* Batched symmetric eigendecompositions: for each of the count problems (0 <= count <=
 * NG_EIG_BATCH_MAX; sizes may differ; no two may overlap in memory) what ng_syevd / ng_syevd_d
 * (dt NG_F32 / NG_F64) does to it, info in p[i].info. CPU: the problems run concurrently on the
 * OpenMP threads, largest first, each on one thread, bit-identical to one ng_syevd per problem.
 * CUDA: groups of at least two problems of equal n <= NG_CUDA_EIG_BATCH_N (lda = n) in one
 * cusolverDnXsyevBatched call, the others through cuSOLVER's syevd in turn. A failing problem
 * (info > 0) does not stop the others. */
ng_status ng_syevd_batched(ng_backend *be, ng_dtype dt, int count, ng_eig_problem *p);
/* 1 when the backend implements the batched slot itself (CPU, CUDA), 0 when ng_syevd_batched would
 * only run the problems one after another: callers that must restructure their work to batch
 * (K-FAC's refreshes) keep their one-at-a-time path then. */
int ng_syevd_batched_supported(const ng_backend *be);

/* Elementwise families: validate args against the op's descriptor, skip empty work, dispatch. */
int ng_supports_op(ng_backend *be, ng_op op);
ng_status ng_run_op(ng_backend *be, const ng_op_args *args);
/* Typed shorthands for ng_run_op (same semantics as the ng_op_args members). */
ng_status ng_fill(ng_backend *be, size_t n, float value, float *out);
ng_status ng_fill_uniform(ng_backend *be, size_t n, float *out, uint64_t key, uint64_t step);
ng_status ng_bernoulli(ng_backend *be, size_t n, const float *p, float *out, uint64_t key,
                       uint64_t step);
ng_status ng_axpby(ng_backend *be, size_t n, float alpha, const float *x, float beta, float *y);
ng_status ng_to_double(ng_backend *be, size_t n, const float *x, double *y);
ng_status ng_to_float(ng_backend *be, size_t n, const double *x, float *y);
ng_status ng_gibbs_sample(ng_backend *be, int rows, int cols, const float *pre, int ldp,
                          const float *bias, float beta, const float *base, float *prob, int ldq,
                          float *sample, int lds, uint64_t key, uint64_t step);
/* The same two with the draws of elements first .. first + n - 1 of the stream (a shard). */
ng_status ng_bernoulli_at(ng_backend *be, size_t n, const float *p, float *out, uint64_t key,
                          uint64_t step, uint64_t first);
ng_status ng_gibbs_sample_at(ng_backend *be, int rows, int cols, const float *pre, int ldp,
                             const float *bias, const float *base, float *prob, int ldq,
                             float *sample, int lds, uint64_t key, uint64_t step, uint64_t first);
/* ng_bernoulli at the Philox step counted on the device (step_dev[0]), which the op then advances
 * by one: a captured CUDA graph replays with new draws. */
ng_status ng_bernoulli_dev(ng_backend *be, size_t n, const float *p, float *out, uint64_t key, uint64_t *step_dev);
ng_status ng_softplus_sum(ng_backend *be, int rows, int cols, const float *pre, int ldp,
                          const float *bias, float beta, float alpha, float gamma, float *y);
ng_status ng_binary_states(ng_backend *be, int nbits, uint64_t first, int count, float *out,
                           int ldo);
ng_status ng_symmetrize_lower(ng_backend *be, int n, float *A, int lda, float shift);

/* Named ranges (NVTX, natgrad's profile): ng_range_push_cat / ng_range_pop / NG_RANGE_CAT in
 * natgrad/profile.h, included here. */

#ifdef __cplusplus
}
#endif
#endif
