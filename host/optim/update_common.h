/* update_common.h (internal): what every update rule of host/optim/ shares (natgrad/update.h):
 * the L2 penalty, exponentially decayed iterate averaging (the K-FAC paper, section 13), and the
 * checks of configuration fields on resume. All device work goes through backend ops. */
#ifndef NG_OPTIM_UPDATE_COMMON_H
#define NG_OPTIM_UPDATE_COMMON_H

#include <stdint.h>

#include "natgrad/update.h"

/* grad += wd * theta on every parameter the model marks for decay (m->decay); wd = 0: nothing. */
ng_status ng_upd_weight_decay(ng_backend *be, ng_model *m, float wd);

/* Checks shared by every config check: "<option> <value>: must be ..." naming the option. */
ng_status ng_upd_check_positive(const char *option, float v);    /* finite, > 0 */
ng_status ng_upd_check_nonneg(const char *option, float v);      /* finite, >= 0 */
ng_status ng_upd_check_unit(const char *option, float v);        /* in [0, 1) */

/* Iterate averaging: theta_bar <- xi theta_bar + (1 - xi) theta after each step. */
typedef struct ng_upd_avg {
    float xi;      /* 0: off */
    ng_tensor avg; /* (n) "average" in the rule's state arena, laid out like m->param_flat */
} ng_upd_avg;

/* Reserve "average" in the (not yet committed) state arena when xi > 0. */
ng_status ng_upd_avg_reserve(ng_upd_avg *a, ng_arena *state, const ng_model *m, float xi);
/* theta_bar = the parameters (after commit, and before update 0: theta_0). */
ng_status ng_upd_avg_start(ng_upd_avg *a, ng_backend *be, const ng_model *m);
/* After a step: theta = param_flat + coef * x (x NULL: theta = param_flat; nag passes its
 * velocity and -mu_{t+1}), theta_bar = xi theta_bar + (1 - xi) theta. */
ng_status ng_upd_avg_step(ng_upd_avg *a, ng_backend *be, const ng_model *m, const float *x,
                          float coef);
/* Heavy-ball / Nesterov step of sgd and nag in one op (NG_OP_MOMENTUM, one launch on CUDA), the
 * iterate average included; bit-identical to the axpby ops it replaces:
 *   v = a d + mu v;  p = c v + p;  p = a d + p (nesterov);  then ng_upd_avg_step(a, be, m, v, coef)
 *   with nesterov (the average of theta = p + coef v), or with x = NULL otherwise.
 * d = m->grad_flat, p = m->param_flat. */
ng_status ng_upd_momentum(ng_upd_avg *avg, ng_backend *be, const ng_model *m, float *v, float a, float mu, float c,
                          int nesterov, float coef);
/* "<rule>.average_decay" = xi when averaging is on (nothing otherwise), and the check on resume:
 * the checkpoint's value (absent = 0) must equal this run's. */
ng_status ng_upd_avg_save(const ng_upd_avg *a, ng_ckpt *c, const char *rule);
ng_status ng_upd_avg_load(const ng_upd_avg *a, const ng_ckpt *c, const char *rule);

/* Resume checks: the field must be present, valid (finite, in [lo, hi]) and equal to this run's
 * value; otherwise NG_ERR_FORMAT naming the file, the field and both values. */
ng_status ng_upd_expect_f32(const ng_ckpt *c, const char *key, double lo, double hi, float mine);
ng_status ng_upd_expect_u64(const ng_ckpt *c, const char *key, uint64_t mine);

#endif
