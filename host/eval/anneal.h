/* anneal.h (internal): what AIS (ais.c) and RAISE (raise.c) share: the base-rate model A of
 * Salakhutdinov & Murray (W_A = 0, b_A = 0, visible biases a_base), log Z_A, and the device
 * workspace of `cols` parallel chains on the geometric path between A and the RBM. */
#ifndef NG_EVAL_ANNEAL_H
#define NG_EVAL_ANNEAL_H

#include "natgrad/rbm.h"

typedef struct ng_anneal {
    ng_arena ws;
    ng_tensor V;   /* (nv, cols) chain states */
    ng_tensor PV;  /* (nv, cols) W^T h */
    ng_tensor H;   /* (nh, cols) hidden samples */
    ng_tensor PH;  /* (nh, cols) W v */
    ng_tensor lw;  /* (cols) log-weight increments since the last flush */
    ng_tensor d;   /* (nv) a - a_base: the visible term of every weight increment */
    ng_tensor ab;  /* (nv) a_base */
    double log_z_base; /* log Z_A = sum_i softplus(a_base_i) + n_hidden log 2 */
} ng_anneal;

/* Validate a_base (finite), compute log Z_A, allocate and fill the workspace; `what` names the
 * caller in errors ("AIS", "RAISE"). On failure nothing is left allocated. */
ng_status ng_anneal_init(ng_rbm *rbm, const float *a_base, int cols, const char *what, ng_anneal *an);
void ng_anneal_free(ng_anneal *an);

#endif
