/* natgrad/update.h: the update-rule interface, the third of the three (natgrad/model.h): it turns
 * the direction a preconditioner left in the model's gradient arena into a step of the
 * parameters. SGD with heavy-ball momentum and weight decay exists today (host/optim/sgd.c);
 * Nesterov, Adam, RMSprop, K-FAC's quadratic-model rescaling, Levenberg-Marquardt damping and line
 * searches are later additions of the same shape.
 *
 * Per update t the trainer calls penalize right after the gradient (so that every preconditioner,
 * centred or natural, follows the penalised objective), then, after the preconditioner, step. */
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
    const char *name; /* "sgd": stored as update.kind */
    /* add penalty gradients (weight decay) to the model's gradient (+=) */
    ng_status (*penalize)(ng_update *u, ng_model *m, uint64_t t);
    /* parameters -= step(direction in the gradient arena) */
    ng_status (*step)(ng_update *u, ng_model *m, uint64_t t);
    /* learning rate of update t */
    double (*lr)(const ng_update *u, uint64_t t);
    const char *const *columns; /* NULL-terminated CSV column names (NULL: none) */
    ng_status (*log_values)(ng_update *u, ng_model *m, double *values);
    ng_status (*save)(ng_update *u, ng_ckpt *c);
    ng_status (*load)(ng_update *u, const ng_ckpt *c, int apply); /* as the model's */
    void (*destroy)(ng_update *u);
};

struct ng_update {
    const struct ng_update_i *iface;
    ng_backend *be;
    ng_arena state; /* checkpointed as "<name>.<tensor>" */
    void *impl;
};

/* SGD: v <- momentum v - lr_t direction; theta <- theta + v, with lr_t = lr gamma / (gamma + t)
 * (gamma = 0: constant), weight decay wd * theta added to the gradient of the parameters that take
 * decay. norm_param names the parameter whose step norm is logged as update_norm (NULL: all). */
typedef struct ng_sgd_config {
    float lr, lr_gamma, momentum, weight_decay;
    const char *norm_param;
} ng_sgd_config;
ng_status ng_update_sgd_init(ng_backend *be, ng_model *m, const ng_sgd_config *cfg, ng_update **out);
/* Validates a configuration (positive finite lr, momentum in [0, 1), ...), naming the option. */
ng_status ng_sgd_config_check(const ng_sgd_config *cfg);

ng_status ng_update_penalize(ng_update *u, ng_model *m, uint64_t t);
ng_status ng_update_step(ng_update *u, ng_model *m, uint64_t t);
double ng_update_lr(const ng_update *u, uint64_t t);
ng_status ng_update_save(ng_update *u, ng_ckpt *c);
ng_status ng_update_load(ng_update *u, const ng_ckpt *c, int apply);
void ng_update_free(ng_update *u); /* NULL ok */

#ifdef __cplusplus
}
#endif
#endif
