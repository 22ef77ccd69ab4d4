/* fang.h: FANG (Grosse & Salakhutdinov 2015, Algorithm 1) as an RBM update rule. Internal to the
 * library: the RBM trainer (host/models/rbm.c) calls these hooks when optimizer == fang. */
#ifndef NG_OPTIM_FANG_H
#define NG_OPTIM_FANG_H

#include "natgrad/rbm.h"

/* Allocate FANG's state for the trainer's shapes (moving averages, factors, workspaces). */
ng_status ng_fang_init(ng_rbm_trainer *tr);
void ng_fang_free(ng_rbm_trainer *tr);
/* Update the statistics from the trainer's particles (vm, hm), refit every T mini-batches, and
 * replace the gradient (dW, da, db) in place by the FANG direction r of Algorithm 1. */
ng_status ng_fang_direction(ng_rbm_trainer *tr);

/* The state tensors a checkpoint must hold to resume FANG exactly (moving averages and the
 * fitted factors); writes up to max pointers and returns how many there are. */
int ng_fang_state_tensors(ng_rbm_trainer *tr, ng_tensor **out, int max);

#endif
