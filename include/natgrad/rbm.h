/* natgrad/rbm.h: binary-binary restricted Boltzmann machines and their PCD/CD trainer.
 *   E(v, h) = -a^T v - b^T h - h^T W v,  W: (n_hidden, n_visible), a: (n_visible), b: (n_hidden)
 * All parameters, fantasy particles, optimizer state and the training set live on the backend's
 * device; a training step allocates nothing and moves no data to the host (statistics for the log
 * are fetched only when asked for). Batches are columns: v is (n_visible, m). */
#ifndef NATGRAD_RBM_H
#define NATGRAD_RBM_H

#include <stdint.h>

#include "natgrad/backend.h"
#include "natgrad/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ng_rbm {
    ng_backend *be;
    int n_visible, n_hidden;
    ng_arena arena; /* parameters: one allocation */
    ng_tensor W;    /* (n_hidden, n_visible) */
    ng_tensor a;    /* (n_visible, 1) visible biases */
    ng_tensor b;    /* (n_hidden, 1) hidden biases */
} ng_rbm;

ng_status ng_rbm_init(ng_backend *be, int n_visible, int n_hidden, ng_rbm *out);
void ng_rbm_free(ng_rbm *rbm);
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

typedef enum ng_rbm_estimator { NG_RBM_PCD = 0, NG_RBM_CD } ng_rbm_estimator;
typedef enum ng_rbm_optimizer {
    NG_RBM_OPT_SGD = 0,    /* plain SGD (+ momentum, weight decay) */
    NG_RBM_OPT_CENTERING,  /* centering trick: SGD on the centered parameterisation (FANG 5.1) */
    NG_RBM_OPT_FANG        /* factorized natural gradient (FANG Algorithm 1) */
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
} ng_rbm_config;

void ng_rbm_config_default(ng_rbm_config *cfg);
const char *ng_rbm_optimizer_name(ng_rbm_optimizer o);
ng_status ng_rbm_optimizer_parse(const char *s, ng_rbm_optimizer *out);

/* Statistics of one update, filled only when requested (costs a device sync and extra work). */
typedef struct ng_rbm_stats {
    double recon_error;  /* mean over the batch of ||v - p(v | h ~ p(h | v))||^2 */
    double grad_norm;    /* ||dW||_F of the (uncentered) gradient estimate */
    double update_norm;  /* ||delta W||_F actually applied */
    double lr;           /* learning rate used */
} ng_rbm_stats;

struct ng_fang; /* host/optim/fang.c */

typedef struct ng_rbm_trainer {
    ng_rbm *rbm;
    ng_rbm_config cfg;
    ng_backend *be;
    int n_train;            /* examples in the training set */
    /* training set on the device, permuted once per epoch */
    ng_arena data_arena;
    ng_tensor data;         /* (n_visible, n_train) */
    float *host_data;       /* host copy (n_visible, n_train), owned */
    float *host_perm_data;  /* permuted host copy staged for upload, owned */
    int *perm;              /* (n_train) */
    /* optimizer state (checkpointed) */
    ng_arena state;
    ng_tensor particles;    /* (n_visible, M) persistent fantasy particles */
    ng_tensor vel_W;        /* (n_hidden, n_visible) momentum buffers */
    ng_tensor vel_a;        /* (n_visible, 1) */
    ng_tensor vel_b;        /* (n_hidden, 1) */
    ng_tensor mu_v;         /* (n_visible, 1) centering offsets */
    ng_tensor mu_h;         /* (n_hidden, 1) */
    /* workspace (not checkpointed) */
    ng_arena work;
    ng_tensor vd;           /* (n_visible, m) batch (possibly binarised) */
    ng_tensor hd;           /* (n_hidden, m) p(h | vd) */
    ng_tensor vm;           /* (n_visible, M) negative-phase visible states */
    ng_tensor hm;           /* (n_hidden, M) p(h | vm) (after the chain) */
    ng_tensor hs;           /* (n_hidden, max(m, M)) hidden samples inside the chain */
    ng_tensor vr;           /* (n_visible, m) reconstruction probabilities (stats only) */
    ng_tensor dW;           /* (n_hidden, n_visible) gradient estimate (data - model) */
    ng_tensor da;           /* (n_visible, 1) */
    ng_tensor db;           /* (n_hidden, 1) */
    ng_tensor mv_d, mh_d;   /* (n_visible,1), (n_hidden,1) data means of this batch */
    ng_tensor mv_m, mh_m;   /* model (particle) means */
    /* counters (checkpointed) */
    uint64_t t;             /* updates done */
    uint64_t rng_step;      /* next Philox step index */
    int epoch;              /* current epoch (permutation index) */
    int pos;                /* next column of the permuted set */
    struct ng_fang *fang;   /* FANG state when optimizer == NG_RBM_OPT_FANG */
} ng_rbm_trainer;

/* train_host: (n_visible, n_train) column-major intensities in [0, 1]; copied. */
ng_status ng_rbm_trainer_init(ng_rbm_trainer *tr, ng_rbm *rbm, const ng_rbm_config *cfg,
                              const float *train_host, int n_train);
void ng_rbm_trainer_free(ng_rbm_trainer *tr);
/* One parameter update. stats may be NULL. */
ng_status ng_rbm_trainer_step(ng_rbm_trainer *tr, ng_rbm_stats *stats);
/* The gradient estimate of the next update without applying it (dW, da, db filled; for tests). */
ng_status ng_rbm_trainer_gradient(ng_rbm_trainer *tr);
double ng_rbm_trainer_lr(const ng_rbm_trainer *tr);
/* Position the data stream at column `pos` of epoch `epoch`'s permutation (used on resume). */
ng_status ng_rbm_trainer_seek(ng_rbm_trainer *tr, int epoch, int pos);

/* Checkpoints: header, shapes, config, counters, parameters, optimizer state, particles, CRC32.
 * Written to path.tmp, flushed, fsync'ed, renamed; a failed write leaves the old file intact. */
ng_status ng_rbm_checkpoint_save(const ng_rbm_trainer *tr, const char *path);
/* Load into an initialised trainer of the same shapes; refuses corrupt/truncated/mismatched files
 * with NG_ERR_FORMAT and leaves the trainer unchanged on failure. */
ng_status ng_rbm_checkpoint_load(ng_rbm_trainer *tr, const char *path);
/* Load only the parameters (W, a, b) of a checkpoint into an RBM of the same shape. */
ng_status ng_rbm_checkpoint_load_params(ng_rbm *rbm, const char *path);
/* Read only the shapes and config from a checkpoint (to build the trainer before loading). */
ng_status ng_rbm_checkpoint_peek(const char *path, int *n_visible, int *n_hidden,
                                 ng_rbm_config *cfg, uint64_t *t);

#ifdef __cplusplus
}
#endif
#endif
