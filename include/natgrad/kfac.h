/* natgrad/kfac.h: Kronecker-factored approximate curvature (Martens & Grosse, ICML 2015) for the
 * networks of natgrad/net.h, as a preconditioner (natgrad/precond.h) that leaves the paper's whole
 * update in the gradient arena (host/optim/kfac.c).
 *
 * Per update k = t + 1 (the paper counts from 1), on the mini-batch S' of m cases whose gradient
 * (with the L2 term eta theta of the update rule's weight decay) is in the gradient arena:
 *   statistics  on S1 = the first tau1 m cases of S' (the batch is a random draw, so is S1): the
 *               forward pass's a-bar_l (homogeneous row included) and a backward pass with targets
 *               sampled from the model's predictive distribution (g_l, per case); running
 *               estimates A_{i,j} = E[a-bar_i a-bar_j^T], G_{i,j} = E[g_i g_j^T] blended with
 *               eps_k = min(1 - 1/k, eps_max) (the first update takes the batch estimate). The
 *               block-diagonal approximation keeps i = j, the block-tridiagonal one also j = i + 1.
 *   inverses    at k <= 3 and every T3 updates, from the damped factors
 *               A_{l-1,l-1} + pi_l gamma I and G_{l,l} + (gamma / pi_l) I (factored Tikhonov,
 *               section 6.3; pi_l = sqrt((tr A / (d_{l-1} + 1)) / (tr G / d_l)), or 1):
 *               block-diagonal: Cholesky inverses (potrf + potri); block-tridiagonal: the
 *               directed Gaussian graphical model of section 4.3 (Psi factors, conditional
 *               covariances Sigma_{i|i+1} = A (x) B - C (x) D inverted by appendix B's
 *               eigendecompositions). Float32 by default; a failed factorisation is retried in
 *               float64, then with gamma multiplied by 10 (up to 7 times), and every retry is
 *               counted in the log (column inv_retries).
 *   proposal    Delta = -F^-1 grad h (F-breve or F-hat, damped as above).
 *   step        delta = alpha Delta + mu delta0 (delta0: the previous update; mu = 0 without
 *               momentum) minimising the quadratic model
 *                 M(delta) = 1/2 delta^T (F + (lambda + eta) I) delta + grad h^T delta
 *               with F the exact Fisher (= Gauss-Newton) on S2 = the first tau2 m cases, its
 *               products taken as (J u)^T F_R (J v) (appendix C): a 2x2 (or 1x1) solve.
 *   gamma       every T2 updates (at an inverse refresh) the update is computed for gamma,
 *               omega2 gamma and gamma / omega2 and the one with the lowest M(delta) kept.
 *   lambda      every T1 updates: rho = (h(theta + delta) - h(theta)) / (M(delta) - M(0)) on S'
 *               (one more forward pass); rho > 3/4: lambda *= omega1; rho < 1/4: lambda /= omega1.
 * The direction left in the gradient arena is -delta; the update rule (sgd with lr 1, momentum 0,
 * the same weight decay eta, optional averaging) then takes theta + delta.
 *
 * Columns: lambda, gamma, alpha, mu, rho (of the last LM adjustment), qmodel (M(delta) - M(0)),
 * inv_retries, stats_s, inverse_s, apply_s, quad_s (seconds per phase, this update; the device is
 * synchronised between phases only when timing is on: timing on by default, --kfac-timing 0 off).
 * Data parallelism (p->dist set by the trainer, natgrad/precond.h): the tau1 m / tau2 m prefixes are
 * those of the global batch, each rank taking its cases among them (shards are consecutive
 * columns; sampled targets indexed by global case); the factor updates, the Fisher gram and h are
 * all-reduced, the inverses (and tridiagonal coupling factors) are computed per layer by one owning
 * rank and broadcast, with --kfac-async too (each rank's worker computes its layers, the main thread
 * broadcasts them when it uses them), so every rank holds the same state (README "Several processes
 * and GPUs").
 * Checkpoint: kfac.* configuration (refused on mismatch), counters and scalars, the factors, the
 * inverses (so a resume between refreshes is bit-exact) and delta0; with --kfac-async, the snapshot
 * of a refresh still in flight, which a resume recomputes (bit-exact too). */
#ifndef NATGRAD_KFAC_H
#define NATGRAD_KFAC_H

#include <stdint.h>

#include "natgrad/dtype.h"
#include "natgrad/precond.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { NG_KFAC_BLOCKDIAG = 0, NG_KFAC_TRIDIAG = 1 };
enum { NG_KFAC_PI_TRACE = 0, NG_KFAC_PI_ONE = 1 };
/* How a damped factor F is inverted: Tikhonov (F + d I)^-1 (the paper), or Sohl-Dickstein's
 * regularised inverse (F^T F + d^2 I)^-1 F^T (his eq. 35), with d the same factored damping
 * pi gamma (A) or gamma / pi (G): eigenvalues well above d are inverted alike, those below are
 * damped towards 0 instead of to 1 / d. Block-diagonal: every factor inverse. Block-tridiagonal:
 * the inverses of layer L's factors and those inside the regressions Psi^A = AC (A + d I)^-1,
 * Psi^G = GC (G + d I)^-1; the conditional covariances Sigma_{l|l+1} = A (x) B - C (x) D keep
 * the Tikhonov-damped A, B of appendix B (their inverse is exact, through the Cholesky roots and
 * eigendecompositions of L^-1 C L^-T, which eq. 35 has no Kronecker form for). */
enum { NG_KFAC_INV_TIKHONOV = 0, NG_KFAC_INV_REGULARIZED = 1 };

typedef struct ng_kfac_config {
    int approx;          /* --kfac-approx blockdiag | tridiag (default blockdiag) */
    double lambda0;      /* --lambda0: initial Levenberg-Marquardt lambda (150) */
    double gamma0;       /* --gamma0: initial factored damping gamma (0: sqrt(lambda0 + eta)) */
    double eta;          /* the L2 coefficient (set from the update rule's --weight-decay, 1e-5) */
    double tau1, tau2;   /* --tau1 1/8 (statistics), --tau2 1/4 (exact-Fisher products) */
    int T1, T2, T3;      /* --T1 5 (lambda), --T2 20 (gamma; a multiple of T3), --T3 20 (inverses) */
    double omega1;       /* --omega1 (0: (19/20)^T1) */
    double omega2;       /* --omega2 (0: sqrt(19/20)^T2) */
    double eps_max;      /* --kfac-eps-max 0.95: cap of the moving-average weight */
    int momentum;        /* --kfac-momentum 1 | 0 */
    int rescale;         /* --kfac-rescale 1 | 0 (0: delta = Delta, no quadratic model; for the
                          * paper's figure 7 only) */
    int adapt_lambda;    /* --adapt-lambda 1 | 0 */
    int adapt_gamma;     /* --adapt-gamma 1 | 0 */
    int pi_mode;         /* --kfac-pi trace | one */
    ng_dtype precision;  /* --kfac-precision f32 | f64: the factorisations (products stay float32) */
    int inverse;         /* --kfac-inverse tikhonov | regularized (NG_KFAC_INV_*) */
    int timing;          /* --kfac-timing 1 | 0: per-phase seconds in the log */
    int async_lag;       /* --kfac-async S: -1 (default) refresh in the update that needs it; S >= 0:
                          * refreshes after the third run on a second backend (own CUDA stream, or a
                          * second thread on the CPU) from a snapshot of the factors while updates go
                          * on with the previous inverses, and are used S updates after their launch
                          * (gamma candidates judged then); S = 0 equals the synchronous result
                          * exactly. S < T3. Beyond the paper (its section 8 suggests it). */
    uint64_t seed;       /* sampled targets: stream (seed, NG_RNG_KFAC_TARGETS, step t) */
    int phi_every;       /* --phi-every K with --precond kfac: 0 = off (the paper's K-FAC); K >= 1: the
                          * natural parameter space of Sohl-Dickstein's note (eq. 37) with the
                          * block-diagonal Kronecker factors (below, "Natural parameter space") */
} ng_kfac_config;

void ng_kfac_config_default(ng_kfac_config *cfg);
/* Every field in range (tau in (0, 1], T2 a multiple of T3, ...), naming the option. */
ng_status ng_kfac_config_check(const ng_kfac_config *cfg);
/* Every setting stored by a K-FAC checkpoint (kfac.*) into cfg (timing: default), validated. */
ng_status ng_kfac_config_from_ckpt(const ng_ckpt *c, ng_kfac_config *cfg);
const char *ng_kfac_approx_name(int approx); /* "blockdiag", "tridiag" */
int ng_kfac_approx_parse(const char *s);     /* NG_KFAC_* or -1 */

/* Natural parameter space (phi_every = K > 0; blockdiag, synchronous, Tikhonov only). The
 * preconditioner then only keeps the factors (observe: the statistics and moving average above,
 * every update) and, at updates t = 0, K, 2K, ..., eigendecomposes the damped factors
 * A-bar_{l-1} + pi_l gamma I = E diag(a) E^T and G_l + (gamma / pi_l) I = F diag(g) F^T (gamma fixed at
 * --gamma0, or sqrt(lambda0 + eta); eigenvalues floored at the damping, the factors being PSD)
 * into S_A = A^(1/2), S_A^-1, S_G = G^(1/2), S_G^-1 (state arena, held fixed until the next
 * refresh). Per layer the packed block V_l = [W_l b_l] (d_l x (d_{l-1}+1), column-major) maps as
 *   phi_l = S_G V_l S_A   (vec: (S_A (x) S_G) vec V = (A (x) G)^(1/2) vec V),
 *   theta_l = S_G^-1 phi_l S_A^-1,   gradient in phi: S_G^-1 grad_l S_A^-1,
 * and apply leaves the gradient in phi in the gradient arena for an update rule wrapped by
 * ng_update_phi_init (natgrad/recipes.h). SGD on phi with a fixed factor set is then the
 * block-diagonal natural step theta -= lr (A^-1 (x) G^-1) grad. No Levenberg-Marquardt, no gamma
 * adaptation, no quadratic model, no K-FAC momentum (T1, T2, T3, --kfac-momentum are unused). */
/* In place on a flat vector x (device, the model's size): to_phi = 1: phi = S x; 0: theta = S^-1 x.
 * NG_ERR_INVALID_ARG unless phi_every > 0; NG_ERR_NUMERIC before the first refresh. */
ng_status ng_kfac_phi_map(ng_precond *p, float *x, int to_phi);

/* A K-FAC preconditioner for the network m (natgrad/net.h; no batch normalisation). */
ng_status ng_precond_kfac_init(ng_backend *be, ng_model *m, const ng_kfac_config *cfg, ng_precond **out);

/* ---- introspection and the pieces, for tests and the figure reproductions ------------------ */

typedef struct ng_kfac_state {
    uint64_t k;               /* updates observed */
    double lambda, gamma;
    double alpha, mu, rho;    /* of the last update (rho of the last adjustment, NaN before) */
    double qmodel;            /* M(delta) - M(0) of the last update */
    int inv_retries;          /* retries of the last refresh */
    double stats_s, inverse_s, apply_s, quad_s; /* seconds of the last update's phases */
} ng_kfac_state;
ng_status ng_kfac_get_state(const ng_precond *p, ng_kfac_state *s);
/* The configuration p was made with (NG_ERR_INVALID_ARG when p is not a K-FAC preconditioner). */
ng_status ng_kfac_get_config(const ng_precond *p, ng_kfac_config *cfg);
/* Views of the running factors: which = 'A': A_{i,j} (i = 0..L-1, j in {i, i+1} for tridiag),
 * 'G': G_{i,j} (i = 1..L). */
ng_status ng_kfac_factor(const ng_precond *p, char which, int i, int j, ng_tensor *out);
/* Fold in the statistics of the model's current batch (its first `cols` cases; the model must
 * hold a forward pass or batch, see ng_net_set_batch) with weight eps: F = eps F + (1 - eps) new.
 * Used by observe; exposed for tests. */
ng_status ng_kfac_accumulate(ng_precond *p, ng_model *m, int cols, double eps, uint64_t key, uint64_t step);
/* Recompute the inverses from the factors with damping gamma. */
ng_status ng_kfac_refresh(ng_precond *p, double gamma);
/* out = F-breve^-1 v or F-hat^-1 v (damped, as of the last refresh); v, out flat like the
 * parameter arena, distinct. */
ng_status ng_kfac_apply_inverse(ng_precond *p, const ng_tensor *v, ng_tensor *out);

/* The paper's small scalar rules, on the host (pure functions). */
/* Minimise 1/2 [a m]^T Q [a m] + [a m]^T b over (a, m): Q = [[q00 q01] [q01 q11]], b = (b0, b1)
 * (Q positive definite; when it is not, or momentum is off, m = 0 and a = -b0 / q00). Returns the
 * model's value at the minimum. */
double ng_kfac_solve2(double q00, double q01, double q11, double b0, double b1, int momentum,
                      double *alpha, double *mu);
/* Levenberg-Marquardt: lambda * omega1 when rho > 3/4, lambda / omega1 when rho < 1/4 (and when rho
 * is not finite), else lambda. */
double ng_kfac_lm_update(double lambda, double rho, double omega1);
/* eps_k = min(1 - 1/k, eps_max) for update k >= 1. */
double ng_kfac_ema_weight(uint64_t k, double eps_max);

#ifdef __cplusplus
}
#endif
#endif
