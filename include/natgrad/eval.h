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

/* Schedules of inverse temperatures 0 = beta_0 < beta_1 < ... < beta_K = 1. */
typedef enum ng_ais_schedule {
    NG_AIS_LINEAR = 0, /* beta_k = k / n_betas */
    NG_AIS_SM08 = 1    /* Salakhutdinov & Murray 2008: steps of 1e-3 up to 0.5, 1e-4 up to 0.9,
                        * 1e-5 up to 1 (14,500 betas; n_betas is ignored) */
} ng_ais_schedule;

/* Progress of a long evaluation: `done` of `total` annealing steps (over all blocks and runs). */
typedef void (*ng_eval_progress_fn)(void *user, const char *what, int64_t done, int64_t total);

enum { NG_AIS_MAX_RUNS = 64 };

typedef struct ng_ais_config {
    int n_betas;      /* intermediate distributions of the linear schedule */
    int n_chains;     /* chains per run (RAISE: chains per example) */
    int n_runs;       /* independent AIS runs of n_chains chains, pooled (1..NG_AIS_MAX_RUNS) */
    ng_ais_schedule schedule;
    int n_boot;       /* bootstrap replicates of the interval (>= 100) */
    double level;     /* nominal coverage of the interval, in (0, 1) */
    uint64_t seed;
    ng_eval_progress_fn progress; /* optional; called every 100 annealing steps */
    void *progress_user;
} ng_ais_config;

/* The AIS estimate pools every chain of every run: log Z = log Z_A + log mean w. Its interval is
 * a two-stage bootstrap (resample the runs, then the chains within each drawn run) of that
 * statistic, taken as the basic ("reverse percentile") interval [2 t - q_hi, 2 t - q_lo]: the
 * bootstrap distribution of log mean w has its long tail on the low side (replicates that lose
 * the rare large weights), while the estimate itself errs low (E log mean w <= log E w), so the
 * reflected interval puts the longer side above the estimate, where the truth tends to be.
 * tests/test_eval.c counts its coverage against exact log Z over many seeds. */
typedef struct ng_ais_result {
    double log_z;        /* log Z_B estimate from all n_runs * n_chains chains */
    double log_z_lo;     /* bootstrap interval at `level` */
    double log_z_hi;
    double level;
    double log_z_base;   /* log Z_A of the base-rate model */
    double ess;          /* effective sample size of all the importance weights pooled */
    int n_runs, n_chains, n_betas; /* n_betas: steps of the schedule actually used */
    double run_log_z[NG_AIS_MAX_RUNS]; /* each run's own estimate */
    double run_ess[NG_AIS_MAX_RUNS];   /* each run's ESS (of n_chains) */
    double run_sd;       /* standard deviation of run_log_z (0 with one run) */
    double min_run_ess;  /* smallest run_ess */
    /* the interval natgrad 0.1 printed, kept for comparison (tests, bench/ais_coverage):
     * log(mean w -/+ 3 sd(w) / sqrt(N)) over the pooled weights (-inf when the bound is <= 0) */
    double sigma3_lo, sigma3_hi;
} ng_ais_result;

void ng_ais_config_default(ng_ais_config *cfg);
/* Inverse temperatures of cfg's schedule: *betas (malloc'd, K + 1 values, betas[0] = 0,
 * betas[K] = 1; the caller frees it) and *K. */
ng_status ng_ais_betas(const ng_ais_config *cfg, double **betas, int *K);
/* AIS from the base-rate model with visible biases a_base (n_visible, host) to the RBM. */
ng_status ng_rbm_ais(ng_rbm *rbm, const float *a_base, const ng_ais_config *cfg,
                     ng_ais_result *out);
/* The bootstrap interval of log mean w over R runs of M log-weights each (lw[r * M + c]) into
 * out->log_z_lo / log_z_hi (and every other field of out that depends only on the weights;
 * log_z_base is added to each). Exposed for tests; ng_rbm_ais calls it. */
ng_status ng_ais_combine(const double *lw, int R, int M, double log_z_base, int n_boot, double level,
                         uint64_t seed, ng_ais_result *out);

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

/* RAISE against AIS on the same n examples, paired: with F_e the free energy of example e,
 * AIS says log p(v_e) = -F_e - log Z_AIS and RAISE says r_e, so the difference of the averages,
 *   D = mean_e(-F_e - log Z_AIS) - mean_e(r_e) = -log Z_AIS - mean_e(r_e + F_e),
 * cancels the spread between examples (r_e + F_e estimates -log Z for every e). Its interval at
 * ais->level combines, in quadrature on each side, the normal interval of mean_e(r_e + F_e)
 * (between-example and RAISE-chain noise) with the AIS interval of log Z. AIS errs high (its log Z
 * is a stochastic lower bound), RAISE errs low, so D > 0 up to noise, and D is the width of the
 * bracket around the true average log-likelihood. */
typedef struct ng_paired_diff {
    double ais_mean, raise_mean; /* the two averages over the same examples, nats */
    double diff, lo, hi;         /* D = ais_mean - raise_mean and its interval */
    double level;
    int n;
} ng_paired_diff;
ng_status ng_raise_ais_paired(const double *raise_per_example, const double *free_energy, int n,
                              const ng_ais_result *ais, ng_paired_diff *out);

/* n samples of the RBM by block Gibbs sampling: chains start at v ~ sigmoid(a_base) (the
 * base-rate model, n_visible host biases) and run `sweeps` full sweeps h | v, v | h; returns the
 * last sweep's visible probabilities sigmoid(W^T h + a) (prob_host) and binary samples
 * (sample_host), both (n_visible, n) column-major host matrices (either may be NULL). Streams:
 * (seed, NG_RNG_GIBBS). progress: optional, only its progress / progress_user are used. */
ng_status ng_rbm_sample(ng_rbm *rbm, const float *a_base, int n, int sweeps, uint64_t seed,
                        const ng_ais_config *progress, float *prob_host, float *sample_host);

/* Average log p(v) over the columns of a binary host (n_visible, n) matrix given log Z. */
ng_status ng_rbm_mean_log_prob(ng_rbm *rbm, const float *v_host, int n, double log_z,
                               double *mean_log_prob);

#ifdef __cplusplus
}
#endif
#endif
