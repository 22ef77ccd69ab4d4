/* natgrad/update.h: the update-rule interface, the third of the three (natgrad/model.h): it turns
 * the direction a preconditioner left in the model's gradient arena into a step of the
 * parameters. Rules today (host/optim/):
 *   sgd      SGD with heavy-ball momentum and FANG's lr schedule (sgd.c)
 *   nag      Nesterov's accelerated gradient as in Sutskever, Martens, Dahl & Hinton (2013), the
 *            baseline of the K-FAC paper (nag.c)
 *   adam     Adam (Kingma & Ba 2015) with bias correction (adam.c, fused op NG_OP_ADAM)
 *   rmsprop  RMSprop (Tieleman & Hinton 2012) (adam.c, the same fused op)
 * K-FAC's quadratic-model rescaling, Levenberg-Marquardt damping and line searches are later
 * additions of the same shape.
 *
 * Per update t (t = 0, 1, ...: the number of updates done before this one) the trainer calls
 * penalize right after the gradient (so that every preconditioner, centred or natural, follows the
 * penalised objective), then, after the preconditioner, step. A rule depends on t only through
 * the t argument (no hidden counters), so a run resumed from a checkpoint is bit-exact.
 *
 * Options every rule has (fields of each config struct, same meaning everywhere):
 *   weight_decay  eta >= 0 (default 0 = off): L2 penalty eta/2 ||theta||^2 added to the objective
 *                 for the parameters that take decay (m->decay: weights, not biases), i.e.
 *                 penalize adds eta * theta to their gradient (the K-FAC paper: eta = 1e-5). For
 *                 adam/rmsprop this is the L2 penalty of the papers, before the normalisation (not
 *                 AdamW's decoupled decay).
 *   average       xi in [0, 1) (default 0 = off): exponentially decayed iterate averaging (the
 *                 K-FAC paper, section 13, xi = 0.99, "loosely based on Polyak averaging"):
 *                 theta_bar <- xi theta_bar + (1 - xi) theta after every step, theta_bar = theta_0
 *                 at the start. theta_bar lives in the rule's state arena (checkpointed as
 *                 "<rule>.average"); ng_update_average gives a view. The K-FAC paper reports, at
 *                 each evaluation, min(error at theta, error at theta_bar): whoever evaluates (the
 *                 CLI's monitor) computes both (ng_update_theta, ng_update_average) and logs the
 *                 minimum; the rules do not evaluate anything.
 *
 * Checkpoints: update.kind, "<rule>.<field>" for every configuration field (average_decay only when
 * averaging is on) and the state arena as "<rule>.<tensor>". A resume must use the configuration
 * that wrote the checkpoint: every mismatching field is refused, naming it (sgd alone continues
 * its lr schedule from the checkpoint, see below). */
#ifndef NATGRAD_UPDATE_H
#define NATGRAD_UPDATE_H

#include <stdint.h>

#include "natgrad/checkpoint.h"
#include "natgrad/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ng_update ng_update;

struct ng_update_i {
    const char *name; /* "sgd", "nag", "adam", "rmsprop": stored as update.kind */
    /* add penalty gradients (weight decay) to the model's gradient (+=) */
    ng_status (*penalize)(ng_update *u, ng_model *m, uint64_t t);
    /* parameters -= step(direction in the gradient arena) */
    ng_status (*step)(ng_update *u, ng_model *m, uint64_t t);
    /* learning rate of update t */
    double (*lr)(const ng_update *u, uint64_t t);
    const char *const *columns; /* NULL-terminated CSV column names (NULL: none) */
    /* values of the columns for the update just taken */
    ng_status (*log_values)(ng_update *u, ng_model *m, double *values);
    ng_status (*save)(ng_update *u, ng_ckpt *c);
    ng_status (*load)(ng_update *u, const ng_ckpt *c, int apply); /* as the model's */
    void (*destroy)(ng_update *u);
    /* the iterate theta after t updates into out (n floats, device; may be the parameter arena
     * itself), for rules whose parameter arena holds another point (nag: the look-ahead point);
     * NULL: the parameters are the iterate */
    ng_status (*theta)(ng_update *u, ng_model *m, uint64_t t, float *out);
    /* CUDA graphs (natgrad/train.h, --cuda-graph): the host scalars that penalize + step of update
     * t (t >= 1) pass to the device by value (learning rate, momentum), into
     * key[0 .. n), n returned (<= max). A captured step is replayed only for an update whose key
     * equals the capture's; another key is re-captured. NULL: the rule is not capturable (it waits
     * for the host mid-step, or keeps host state that a replay would skip). */
    int (*graph_key)(const ng_update *u, uint64_t t, double *key, int max);
    /* After the trainer replayed a captured step as update t (a replay runs the captured kernels
     * without calling step): bring host mirrors of device state up to date (adam: its device step
     * count is now t + 1). NULL: nothing to do. */
    void (*graph_replayed)(ng_update *u, uint64_t t);
    /* A capture of update t failed and was discarded (nothing it recorded ran): the device state is
     * still that before update t (adam: its step count is t). NULL: nothing to do. */
    void (*graph_discarded)(ng_update *u, uint64_t t);
};

struct ng_update {
    const struct ng_update_i *iface;
    ng_backend *be;
    ng_arena state; /* checkpointed as "<name>.<tensor>" */
    void *impl;
};

/* ---- sgd --------------------------------------------------------------------------------------
 * v <- momentum v - lr_t direction; theta <- theta + v, with lr_t = lr gamma / (gamma + t)
 * (gamma = 0: constant). norm_param names the parameter whose step norm is logged as update_norm
 * (NULL: all). Columns: update_norm. State: sgd.velocity (+ sgd.average). On resume lr and
 * lr_gamma continue from the checkpoint; momentum, weight_decay and average must match. Checkpoint
 * fields: sgd.lr, sgd.lr_gamma, sgd.momentum, sgd.weight_decay [, sgd.average_decay]. */
typedef struct ng_sgd_config {
    float lr, lr_gamma, momentum, weight_decay;
    const char *norm_param;
    float average; /* xi, see the top of this file (0: off) */
    /* waterfall annealing (PRONG section 4.3's conv runs): lr_t is multiplied by lr_drop every
     * lr_drop_every updates (lr_drop_every = 0: off; lr_drop in (0, 1]) */
    float lr_drop;
    int lr_drop_every;
} ng_sgd_config;
ng_status ng_update_sgd_init(ng_backend *be, ng_model *m, const ng_sgd_config *cfg, ng_update **out);
/* Validates a configuration (positive finite lr, momentum in [0, 1), ...), naming the option. */
ng_status ng_sgd_config_check(const ng_sgd_config *cfg);

/* ---- nag: Nesterov's accelerated gradient (Sutskever, Martens, Dahl & Hinton 2013) -------------
 *   v_{t+1} = mu_t v_t - lr g(theta_t + mu_t v_t),   theta_{t+1} = theta_t + v_{t+1},   v_0 = 0,
 *   mu_t = min(1 - 2^(-1 - log2(floor(t / 250) + 1)), mu_max)   (= 1/2, 3/4, 5/6, ... per 250)
 * with a constant learning rate, and an optional final phase (Sutskever et al. end training with
 * about 1000 updates at mu = 0.9; their paper is not one of the five natgrad implements, so the
 * count is unverified here): for t >= total_steps - final_steps, mu_t = min(mu_t, final_mu).
 * Default: off.
 *
 * THE PARAMETER ARENA HOLDS THE LOOK-AHEAD POINT phi_t = theta_t + mu_t v_t, where the gradient
 * is evaluated (host/optim/nag.c derives phi_{t+1} = phi_t + mu_{t+1} v_{t+1} - lr g(phi_t)). So
 * everything computed from the model's parameters (the gradient, the model's log columns, a
 * checkpoint's model.* tensors) is at phi; theta_t = phi_t - mu_t v_t is what
 * ng_update_theta(u, m, t, out) returns and what an evaluation of the iterate should use (the
 * errors Sutskever et al. and the K-FAC paper report are at theta, and at theta_bar). At t = 0,
 * phi = theta (v = 0). Columns: momentum (mu_t of the update just taken), update_norm
 * (||v_{t+1}|| = ||theta_{t+1} - theta_t||). State: nag.velocity (+ nag.average, an average of
 * theta, not phi). Checkpoint fields: nag.lr, nag.mu_max, nag.final_steps (and nag.total_steps,
 * nag.final_mu when final_steps > 0), nag.weight_decay [, nag.average_decay]. */
typedef struct ng_nag_config {
    float lr;             /* --lr: constant learning rate > 0 (default 0.01; Sutskever et al. pick
                           * it per problem from 0.05 ... 0.0001) */
    float mu_max;         /* --mu-max: cap of the schedule, in [0, 1) (default 0.99; the papers use
                           * 0.999, 0.995, 0.99, 0.9); 0 gives plain SGD */
    uint64_t total_steps; /* --steps: updates in the whole run (read only when final_steps > 0) */
    uint64_t final_steps; /* --final-steps N: the last N updates use final_mu (default 0 = off;
                           * Sutskever et al.: 1000) */
    float final_mu;       /* --final-mu: momentum cap of the final phase, in [0, 1) (default 0.9) */
    float weight_decay;   /* --weight-decay eta (default 0; K-FAC: 1e-5) */
    float average;        /* --average xi (default 0 = off; K-FAC: 0.99) */
} ng_nag_config;
void ng_nag_config_default(ng_nag_config *cfg);
ng_status ng_nag_config_check(const ng_nag_config *cfg);
ng_status ng_update_nag_init(ng_backend *be, ng_model *m, const ng_nag_config *cfg, ng_update **out);
/* mu_t of the schedule (final phase included). */
double ng_nag_momentum(const ng_nag_config *cfg, uint64_t t);

/* ---- adam (Kingma & Ba 2015, Algorithm 1) ---------------------------------------------------
 * For update t (the paper's t + 1), with g the direction:
 *   m = beta1 m + (1 - beta1) g,  v = beta2 v + (1 - beta2) g^2,
 *   theta -= lr (m / (1 - beta1^(t+1))) / (sqrt(v / (1 - beta2^(t+1))) + eps)
 * (one fused op, NG_OP_ADAM). Columns: update_norm (||theta_{t+1} - theta_t||). State: adam.m,
 * adam.v (+ adam.average). Checkpoint fields: adam.lr, adam.beta1, adam.beta2, adam.eps,
 * adam.weight_decay [, adam.average_decay]. */
typedef struct ng_adam_config {
    float lr;           /* --lr alpha > 0 (default 1e-3) */
    float beta1;        /* --beta1 in [0, 1) (default 0.9) */
    float beta2;        /* --beta2 in [0, 1) (default 0.999) */
    float eps;          /* --eps > 0 (default 1e-8) */
    float weight_decay; /* --weight-decay eta (default 0) */
    float average;      /* --average xi (default 0 = off) */
} ng_adam_config;
void ng_adam_config_default(ng_adam_config *cfg);
ng_status ng_adam_config_check(const ng_adam_config *cfg);
ng_status ng_update_adam_init(ng_backend *be, ng_model *m, const ng_adam_config *cfg, ng_update **out);

/* ---- rmsprop (Tieleman & Hinton 2012, lecture 6e) ---------------------------------------------
 *   r = rho r + (1 - rho) g^2,  theta -= lr g / (sqrt(r) + eps),  r_0 = 0 (no bias correction)
 * (NG_OP_ADAM without a first moment). Columns: update_norm. State: rmsprop.ms (+ .average).
 * Checkpoint fields: rmsprop.lr, rmsprop.rho, rmsprop.eps, rmsprop.weight_decay
 * [, rmsprop.average_decay]. */
typedef struct ng_rmsprop_config {
    float lr;           /* --lr > 0 (default 1e-3: the lecture gives no value; a common default) */
    float rho;          /* --rho in [0, 1) (default 0.9, the lecture's) */
    float eps;          /* --eps > 0 (default 1e-8) */
    float weight_decay; /* --weight-decay eta (default 0) */
    float average;      /* --average xi (default 0 = off) */
} ng_rmsprop_config;
void ng_rmsprop_config_default(ng_rmsprop_config *cfg);
ng_status ng_rmsprop_config_check(const ng_rmsprop_config *cfg);
ng_status ng_update_rmsprop_init(ng_backend *be, ng_model *m, const ng_rmsprop_config *cfg,
                                 ng_update **out);

/* ---- every rule ------------------------------------------------------------------------------ */

ng_status ng_update_penalize(ng_update *u, ng_model *m, uint64_t t);
ng_status ng_update_step(ng_update *u, ng_model *m, uint64_t t);
double ng_update_lr(const ng_update *u, uint64_t t);
/* The iterate theta after t updates (t: the trainer's count of updates done) into out, a float32
 * device tensor of ng_model_size(m) elements laid out like m->param_flat. For nag it is
 * phi - mu_t v (the parameter arena holds phi); for the other rules a copy of the parameters. out
 * may be m->param_flat itself (in place): then save a copy of the parameters first and put it back
 * before the next update, as phi - mu v + mu v is not phi bit for bit. */
ng_status ng_update_theta(ng_update *u, ng_model *m, uint64_t t, ng_tensor *out);
/* A view (n, laid out like m->param_flat) of the averaged iterate theta_bar in the rule's state
 * (valid until ng_update_free; the rule updates it in every step); NG_ERR_UNSUPPORTED when the
 * rule runs without averaging. To evaluate at theta_bar, copy it into the parameter arena (after
 * saving the parameters) and restore them afterwards. */
ng_status ng_update_average(ng_update *u, ng_tensor *out);
ng_status ng_update_save(ng_update *u, ng_ckpt *c);
ng_status ng_update_load(ng_update *u, const ng_ckpt *c, int apply);
void ng_update_free(ng_update *u); /* NULL ok */

#ifdef __cplusplus
}
#endif
#endif
