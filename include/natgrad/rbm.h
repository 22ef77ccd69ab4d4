/* natgrad/rbm.h: binary-binary restricted Boltzmann machines as natgrad models.
 *   E(v, h) = -a^T v - b^T h - h^T W v,  W: (n_hidden, n_visible), a: (n_visible), b: (n_hidden)
 * An ng_rbm is an ng_model (its first member): parameters W, a, b in the packed parameter arena,
 * their gradient in the gradient arena. The gradient is that of the negative log-likelihood,
 * estimated by PCD-k or CD-k with Rao-Blackwellised hidden statistics:
 *   gW = <h v^T>_model - <h v^T>_data,  ga = <v>_model - <v>_data,  gb = <h>_model - <h>_data.
 * For training, ng_rbm_estimator_init adds the estimator's state (persistent particles, counters)
 * and workspaces; an RBM built only with ng_rbm_init serves evaluation (AIS, exact log Z, ...).
 * Statistics for preconditioners (ng_model_statistic), valid after a gradient:
 *   "v_data" (nv, m) the batch as trained on, "h_data" (nh, m) p(h | v_data),
 *   "v_model" (nv, M) the fantasy particles after the chain, "h_model" (nh, M) p(h | v_model),
 *   "v_data_mean", "h_data_mean", "v_model_mean", "h_model_mean" (column means),
 *   "v_train_mean" (nv) the mean of the whole training set (fixed), "h_chain" (nh, max(m, M)) the hidden
 *   samples of the last Gibbs sweep, "particles" (nv, M) the persistent chains (PCD state).
 * Data parallelism (natgrad/train.h, ng_model.dist): with several ranks, m and M are this rank's
 * shards of the batch and of the particles (the matrices above hold its columns), each drawn with
 * the global column index as the Philox offset; the gradient and the four means are global
 * (all-reduced) on return; a checkpoint holds the whole particle set (ng_model_i.gather), so any
 * number of ranks resumes from it.
 * All of it lives on the backend's device; a training step allocates nothing and moves no data to
 * the host (log columns are fetched only on logged steps). Batches are columns: v is (nv, m). */
#ifndef NATGRAD_RBM_H
#define NATGRAD_RBM_H

#include <stdint.h>

#include "natgrad/backend.h"
#include "natgrad/data.h"
#include "natgrad/model.h"
#include "natgrad/precond.h"
#include "natgrad/tensor.h"
#include "natgrad/train.h"
#include "natgrad/update.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ng_rbm_estimator { NG_RBM_PCD = 0, NG_RBM_CD } ng_rbm_estimator;

/* The gradient estimator (model configuration, checkpointed with the model). */
typedef struct ng_rbm_estimator_config {
    ng_rbm_estimator estimator;
    int k;              /* Gibbs steps per update (CD-k, PCD-k) */
    int particles;      /* PCD fantasy particles M; CD uses the batch */
    int batch;          /* largest mini-batch m the gradient will see */
    int binarize_train; /* 1: train on Bernoulli samples of the pixels; 0: on intensities (FANG) */
    uint64_t seed;      /* keys the Gibbs, binarisation, particle and monitor streams */
    /* data parallelism: this rank holds particles [rank M / world, (rank + 1) M / world) of the
     * global set (CD: of the batch), so each rank draws what one process draws for them; the
     * gradient all-reduces itself once the trainer attaches a communicator (ng_model.dist).
     * 0 and 1 (or 0 and 0): one process */
    int rank, world;
} ng_rbm_estimator_config;

typedef struct ng_rbm_est ng_rbm_est; /* estimator state (host/models/rbm.c) */

typedef struct ng_rbm {
    ng_model base;          /* must stay first: an ng_rbm * is an ng_model * */
    ng_backend *be;
    int n_visible, n_hidden;
    ng_tensor W, a, b;      /* (n_hidden, n_visible), (n_visible), (n_hidden) parameters */
    ng_tensor gW, ga, gb;   /* their gradient (same shapes) */
    ng_rbm_est *est;        /* NULL until ng_rbm_estimator_init */
} ng_rbm;

ng_status ng_rbm_init(ng_backend *be, int n_visible, int n_hidden, ng_rbm *out);
void ng_rbm_free(ng_rbm *rbm);
static inline ng_model *ng_rbm_model(ng_rbm *rbm) { return &rbm->base; }
/* The RBM behind a model, or NULL when the model is not an RBM. */
ng_rbm *ng_rbm_from_model(ng_model *m);

/* W ~ N(0, init_std^2) from (seed, NG_RNG_INIT_WEIGHTS); a = logit of the (clipped) data mean when
 * given (Hinton's guide), else 0; b = 0. */
ng_status ng_rbm_init_params(ng_rbm *rbm, uint64_t seed, float init_std,
                             const float *visible_mean_host);
/* Host copies of all parameters: W (n_hidden*n_visible, column-major), a, b. NULLs are skipped. */
ng_status ng_rbm_get_params(const ng_rbm *rbm, float *W, float *a, float *b);
ng_status ng_rbm_set_params(ng_rbm *rbm, const float *W, const float *a, const float *b);
/* Free energy F(v) = -a^T v - sum_j softplus(W_j v + b_j) of each column of a host (n_visible, n)
 * matrix, in float64 on return (computed in float32 on the device, chunked). */
ng_status ng_rbm_free_energy(ng_rbm *rbm, const float *v_host, int n, double *F_out);

/* Set up the PCD/CD estimator for training on the host set train_host (n_visible, n_train),
 * intensities in [0, 1] (checked; the mean becomes "v_train_mean", the particles start as
 * Bernoulli draws from it). */
ng_status ng_rbm_estimator_init(ng_rbm *rbm, const ng_rbm_estimator_config *cfg,
                                const float *train_host, int n_train);
ng_status ng_rbm_estimator_check(const ng_rbm_estimator_config *cfg, int n_train);
/* Release the estimator (the RBM keeps its parameters and can be set up again). */
void ng_rbm_estimator_free(ng_rbm *rbm);
const char *ng_rbm_estimator_name(ng_rbm_estimator e); /* "pcd", "cd" */
/* The counter of the Gibbs / binarisation streams (advances by 2k + 2 per PCD update). */
uint64_t ng_rbm_rng_step(const ng_rbm *rbm);
/* Columns per block of the Gibbs phases (each block's gemms and Gibbs ops, all k sweeps of its
 * chains, run before the next block's): 0 = automatic, the default (the CPU backend: blocks of
 * about 4 MiB of hidden and visible states, so each gemm's output is still in cache when its Gibbs
 * op reads it; other backends and small models: all columns at once). The draws
 * are indexed by element, and BLAS computes each column of a large gemm on its own, so blocks give
 * the bits of one block (test_rbm: blocks of 3 to 450 columns at 784 x 500 with OpenBLAS; blocks
 * of 1 or 2 columns there take OpenBLAS's small-matrix kernels, which round differently).
 * INVALID_ARG without an estimator or for cols < 0. */
ng_status ng_rbm_set_col_block(ng_rbm *rbm, int cols);

/* ---- the RBM training set-up of the natgrad command: model + preconditioner + update rule ---- */

typedef enum ng_rbm_optimizer {
    NG_RBM_OPT_SGD = 0,    /* plain SGD (+ momentum, weight decay): identity preconditioner */
    NG_RBM_OPT_CENTERING,  /* centering trick: SGD on the centered parameterisation (FANG 5.1) */
    NG_RBM_OPT_FANG,       /* factorized natural gradient (FANG Algorithm 1) */
    NG_RBM_OPT_DIAG        /* diagonal metric of Sohl-Dickstein's note: energy (eq. 33) or model Fisher (eq. 34), natgrad/recipes.h */
} ng_rbm_optimizer;

typedef struct ng_rbm_config {
    int batch;             /* mini-batch size m (FANG: 2000) */
    int particles;         /* PCD fantasy particles M (FANG: 2000); CD uses the batch */
    int k;                 /* Gibbs steps per update (CD-k, PCD-k) */
    ng_rbm_estimator estimator;
    ng_rbm_optimizer optimizer;
    float lr;              /* alpha */
    float lr_gamma;        /* schedule alpha * gamma / (gamma + t); 0 keeps alpha constant (FANG: 1000) */
    float momentum;        /* heavy-ball momentum on the parameter update */
    float weight_decay;    /* L2 penalty on W */
    float center_rate;     /* moving-average rate nu of the centering offsets */
    float init_std;        /* std of the initial weights */
    int binarize_train;    /* 1: train on Bernoulli samples of the pixels; 0: on intensities (FANG) */
    uint64_t seed;
    /* FANG (Algorithm 1) */
    int fang_refit_every;  /* T: refit Lambda_un and the regressions every T mini-batches (100) */
    float fang_tau;        /* timescale of the moving averages (100) */
    float fang_lambda;     /* damping lambda added to every covariance (0.01) */
    int fang_inverse;      /* NG_FANG_INV_TIKHONOV (0, default) or NG_FANG_INV_REGULARIZED (eq. 35) */
    /* the diagonal metric (natgrad/recipes.h) */
    int diag_metric;       /* NG_DIAG_ENERGY (default) or NG_DIAG_FISHER */
    float diag_lambda;     /* added to the diagonal (1e-4) */
    float diag_power;      /* exponent in (0, 1] (1) */
    float diag_beta;       /* moving average of the diagonal (0.95) */
    /* data parallelism (not checkpointed): this process is rank `rank` of `world` (0, 1: one
     * process); the batches and the particles are sharded accordingly, and the caller attaches
     * the communicator with ng_trainer_set_comm(&rt->tr, comm) */
    int rank, world;
} ng_rbm_config;

void ng_rbm_config_default(ng_rbm_config *cfg);
const char *ng_rbm_optimizer_name(ng_rbm_optimizer o);
ng_status ng_rbm_optimizer_parse(const char *s, ng_rbm_optimizer *out);
ng_status ng_rbm_config_check(const ng_rbm_config *cfg, int n_train);

/* A trainer for an RBM: the model's estimator, a batch stream over the host set, the
 * preconditioner of cfg->optimizer, SGD, and the generic trainer over them. */
typedef struct ng_rbm_trainer {
    ng_rbm *rbm;
    ng_rbm_config cfg;
    ng_batches data;
    ng_precond *pc;
    ng_update *upd;
    ng_trainer tr;
} ng_rbm_trainer;

/* train_host: (n_visible, n_train) intensities in [0, 1]; borrowed (must outlive the trainer).
 * monitor_columns: as for ng_trainer_init. The trainer sets up the RBM's estimator and
 * ng_rbm_trainer_free releases it, so one RBM can be trained by several trainers in turn. */
ng_status ng_rbm_trainer_init(ng_rbm_trainer *rt, ng_rbm *rbm, const ng_rbm_config *cfg,
                              const float *train_host, int n_train,
                              const char *const *monitor_columns);
void ng_rbm_trainer_free(ng_rbm_trainer *rt);
/* One update (ng_trainer_step). */
ng_status ng_rbm_trainer_step(ng_rbm_trainer *rt, double *row);
/* The gradient of the next batch without an update (the data cursor and the chains advance;
 * the parameters do not): for tests and analysis. */
ng_status ng_rbm_trainer_gradient(ng_rbm_trainer *rt);
/* Learning rate of the next update. */
double ng_rbm_trainer_lr(const ng_rbm_trainer *rt);
/* Save / resume the whole training state (ng_trainer_save / ng_trainer_load on a checkpoint of
 * either format). */
ng_status ng_rbm_trainer_save(ng_rbm_trainer *rt, const char *path);
ng_status ng_rbm_trainer_load(ng_rbm_trainer *rt, const char *path);
/* Read the configuration of an RBM training checkpoint (header only), validating every field:
 * shapes, estimator, optimizer, schedules, seed, training-set size. */
ng_status ng_rbm_checkpoint_config(const ng_ckpt *c, int *n_visible, int *n_hidden,
                                   ng_rbm_config *cfg, int *n_train);
/* Open a checkpoint of either format: the container (natgrad/checkpoint.h) or the 0.1 RBM format
 * "NGRBMCK1", converted in memory into the same entries. */
ng_status ng_rbm_checkpoint_read(const char *path, int flags, ng_ckpt **out);
/* Load only the parameters (W, a, b) of a checkpoint into an RBM of the same shape. */
ng_status ng_rbm_load_params(ng_rbm *rbm, const char *path);

#ifdef __cplusplus
}
#endif
#endif
