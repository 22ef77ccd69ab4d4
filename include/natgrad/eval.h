/* natgrad/eval.h: evaluation of RBMs: exact log Z of small models, annealed importance sampling
 * (AIS, Salakhutdinov & Murray 2008) and average test log-likelihood. All heavy work runs on the
 * RBM's backend; host code only combines per-chain / per-state scalars in float64. */
#ifndef NATGRAD_EVAL_H
#define NATGRAD_EVAL_H

#include <stdint.h>

#include "natgrad/rbm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Exact log Z by enumerating the smaller layer (at most 2^20 states; NG_ERR_INVALID_ARG beyond). */
ng_status ng_rbm_log_z_exact(ng_rbm *rbm, double *log_z);

/* Base-rate model of Salakhutdinov & Murray: visible biases log(p / (1 - p)) of the pixel means
 * of the training data, p clipped to [1/(n+2)... ] so no bias is infinite. x: (n_visible, n). */
void ng_rbm_base_rate_bias(const float *x_host, int n_visible, int n, float *a_base);

typedef struct ng_ais_config {
    int n_betas;      /* intermediate distributions (betas spaced linearly from 0 to 1) */
    int n_chains;     /* independent AIS runs */
    uint64_t seed;
} ng_ais_config;

typedef struct ng_ais_result {
    double log_z;        /* log Z_B estimate: log Z_A + log mean w */
    double log_z_lo;     /* log(mean w - 3 std(w)/sqrt(M)) + log Z_A (-inf when the bound is <= 0) */
    double log_z_hi;     /* log(mean w + 3 std(w)/sqrt(M)) + log Z_A */
    double log_z_base;   /* log Z_A of the base-rate model */
    double ess;          /* effective sample size of the importance weights */
} ng_ais_result;

void ng_ais_config_default(ng_ais_config *cfg);
/* AIS from the base-rate model with visible biases a_base (n_visible, host) to the RBM. */
ng_status ng_rbm_ais(ng_rbm *rbm, const float *a_base, const ng_ais_config *cfg,
                     ng_ais_result *out);

/* RAISE, the reverse AIS estimator (Burda, Grosse & Salakhutdinov 2015): for each example v it
 * starts a chain at v under the RBM, anneals back to the base-rate model along the same geometric
 * path as AIS (cfg->n_betas steps, cfg->n_chains chains per example) and returns an unbiased
 * estimate of p_fwd(v), the marginal of the forward AIS chain, which errs on the low side of the
 * model's log p(v) where AIS errs high. Reported: the mean over examples of log(mean over chains),
 * its standard error over examples, and the 3-SE interval. v: binary (n_visible, n) host matrix. */
typedef struct ng_raise_result {
    double mean_log_prob;   /* average over examples of log p_hat(v), nats */
    double lo, hi;          /* mean -/+ 3 standard errors over examples */
    double std_error;       /* standard error of the mean over examples */
    int n_examples;
} ng_raise_result;

ng_status ng_rbm_raise(ng_rbm *rbm, const float *a_base, const float *v_host, int n,
                       const ng_ais_config *cfg, ng_raise_result *out, double *per_example);

/* Average log p(v) over the columns of a binary host (n_visible, n) matrix given log Z. */
ng_status ng_rbm_mean_log_prob(ng_rbm *rbm, const float *v_host, int n, double log_z,
                               double *mean_log_prob);

#ifdef __cplusplus
}
#endif
#endif
