/* natgrad/fang.h: FANG, the factorized natural gradient for binary RBMs (Grosse & Salakhutdinov
 * 2015, Algorithm 1), as a preconditioner (natgrad/precond.h) fed by the RBM's statistics hook:
 * it reads "v_model" and "h_model" (the PCD particles and p(h | particles)) after every gradient
 * and the gradient views of W, a and b, and replaces the gradient by G_fac^-1 grad.
 * The moving averages, the fitted factors and the diagnostics are its checkpointed state
 * (fang.<tensor>); host/optim/fang.h documents the algorithm and the state. */
#ifndef NATGRAD_FANG_H
#define NATGRAD_FANG_H

#include <stdint.h>

#include "natgrad/precond.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ng_fang_config {
    int refit_every; /* T: refit Lambda_un and the regressions every T updates (100) */
    float tau;       /* timescale of the moving averages (100) */
    float lambda;    /* damping added to every covariance (0.01) */
    uint64_t seed;   /* keys the hidden samples of the particles (NG_RNG_FANG) */
    int inverse;     /* NG_FANG_INV_*: how the unary covariance Sigma_un is inverted (--fang-inverse) */
} ng_fang_config;

/* Lambda_un from Sigma_un: Tikhonov (Sigma_un + lambda I)^-1 (the paper; Cholesky, raising the
 * damping x10 on failure), or Sohl-Dickstein's regularised inverse (his eq. 35 with eps = lambda^2)
 * (Sigma_un^T Sigma_un + lambda^2 I)^-1 Sigma_un^T = E diag(l / (l^2 + lambda^2)) E^T from the
 * float64 eigendecomposition Sigma_un = E diag(l) E^T: directions of variance well above lambda
 * are inverted alike, those below are damped towards 0 instead of to 1 / lambda, and an
 * indefinite estimate needs no damping raise. The pairwise regressions keep their lambda. */
enum { NG_FANG_INV_TIKHONOV = 0, NG_FANG_INV_REGULARIZED = 1 };

ng_status ng_fang_config_check(const ng_fang_config *cfg);
/* rbm: an RBM model with its estimator set up (ng_rbm_estimator_init). */
ng_status ng_precond_fang_init(ng_backend *be, ng_model *rbm, const ng_fang_config *cfg,
                               ng_precond **out);

/* Diagnostics of the last refit (and totals), the CSV columns fang_cond, fang_min_sigma2,
 * fang_refit_s come from here. */
typedef struct ng_fang_diag {
    double cond;          /* (max_k L_kk / min_k L_kk)^2 of the Cholesky factor L of Sigma_un +
                           * damping I: a cheap lower bound on its condition number (0 before the
                           * first refit) */
    double min_sigma2;    /* smallest conditional variance sigma2_ij */
    double damping;       /* damping added to Sigma_un (lambda unless it had to be raised) */
    double refit_s;       /* wall-clock seconds spent in refits, summed */
    double refits;        /* number of refits */
    double float64_refits;/* refits whose Cholesky needed float64 */
    double damping_raises;/* total number of x10 damping increases */
    double floored;       /* pairs whose sigma2 sat at the floor lambda at the last refit */
} ng_fang_diag;
#define NG_FANG_DIAG_N 8 /* doubles in ng_fang_diag */

/* Diagnostics of a FANG preconditioner (NG_ERR_INVALID_ARG when p is not one). */
ng_status ng_fang_diagnostics(ng_precond *p, ng_fang_diag *out);

/* The stages of one FANG direction (observe = update_stats, then refit when t % T == 0; apply),
 * exposed for tests. */
ng_status ng_fang_update_stats(ng_precond *p, ng_model *rbm, uint64_t t);
ng_status ng_fang_refit(ng_precond *p, ng_model *rbm, uint64_t t);
ng_status ng_fang_apply(ng_precond *p, ng_model *rbm);

#ifdef __cplusplus
}
#endif
#endif
