/* natgrad/model.h: the model interface, the first of natgrad's three interfaces (model,
 * preconditioner, update rule; see README "Architecture"). Every method of the five papers is a
 * model, a preconditioner that turns its gradient into a direction, and an update rule that turns
 * the direction into a step.
 *
 * A model owns two packed arenas with the same names and layout: its parameters and their
 * gradient, each also one flat vector (param_flat, grad_flat), so an update rule, a norm or a
 * collective covers every parameter in one call. The gradient is always that of an objective to
 * MINIMISE (for an RBM, the negative log-likelihood, estimated by PCD/CD); a step is
 * theta <- theta - lr * direction.
 *
 * What a preconditioner may read, it reads through this header: parameters and gradients by name
 * (ng_model_param) and the statistics of the last gradient by name (ng_model_statistic: an RBM's
 * data and fantasy-particle states, a network's per-layer activations and back-propagated
 * derivatives). No preconditioner or update rule reads a model's private fields.
 *
 * Curvature products (J v, Gauss-Newton G v, Fisher F v, Hessian H v) and the sampler of targets
 * from the predictive distribution are slots that networks fill and RBMs leave NULL; the wrappers
 * answer NG_ERR_UNSUPPORTED naming the model kind. */
#ifndef NATGRAD_MODEL_H
#define NATGRAD_MODEL_H

#include <stdint.h>

#include "natgrad/backend.h"
#include "natgrad/checkpoint.h"
#include "natgrad/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ng_model ng_model;

#define NG_MODEL_MAX_COLUMNS 8

struct ng_model_i {
    const char *kind; /* "rbm", "net": stored in checkpoints as model.kind */
    /* Gradient of the objective on the batch x (columns are examples; y: targets or NULL) into the
     * gradient arena (=). Rolls back its own counters and state and returns NG_ERR_INTERRUPTED
     * when interrupted. */
    ng_status (*gradient)(ng_model *m, const ng_tensor *x, const ng_tensor *y);
    /* A named statistic of the last gradient (a view, valid until the next gradient). */
    ng_status (*statistic)(ng_model *m, const char *name, ng_tensor *out);
    /* CSV columns the model logs and their values for update t, computed after the gradient and
     * before the update (a NULL-terminated list of names). */
    const char *const *columns;
    ng_status (*log_values)(ng_model *m, uint64_t t, double *values);
    /* Curvature products on flat vectors of the parameter layout (networks; NULL for RBMs). */
    ng_status (*jvp)(ng_model *m, const ng_tensor *v, ng_tensor *out);
    ng_status (*gnvp)(ng_model *m, const ng_tensor *v, ng_tensor *out);
    ng_status (*fvp)(ng_model *m, const ng_tensor *v, ng_tensor *out);
    ng_status (*hvp)(ng_model *m, const ng_tensor *v, ng_tensor *out);
    ng_status (*sample_targets)(ng_model *m, uint64_t key, uint64_t step, ng_tensor *y);
    /* Configuration and state other than the parameters (which ng_model_save writes) as
     * checkpoint entries, and back: load validates every field it reads against this model, and
     * modifies nothing unless apply is 1 (the trainer validates every part before it changes any). */
    ng_status (*save)(ng_model *m, ng_ckpt *c);
    ng_status (*load)(ng_model *m, const ng_ckpt *c, int apply);
    /* Free what the implementation owns (not the arenas, not the model struct). */
    void (*destroy)(ng_model *m);
    /* The host-side check of the gradient just computed (a network: its objective is finite;
     * one small read, so the host waits for the device). gradient runs it itself unless the
     * model's defer_check is set: the CUDA-graph step (natgrad/train.h) captures the gradient
     * without it and calls this after the graph. NULL: the model has no such check. */
    ng_status (*check_gradient)(ng_model *m);
    /* CUDA graphs (natgrad/train.h): NG_OK when a captured gradient replays correctly (no host
     * read mid-gradient, no per-gradient host scalar a replay would reuse), else
     * NG_ERR_UNSUPPORTED naming the cause. NULL: the model is not captured (refused by name). */
    ng_status (*graph_check)(const ng_model *m);
    /* 1 when the next gradient must run eagerly (it reads the host: a cnn's whitening
     * reparametrisation every T gradients); the trainer then runs that update without a graph.
     * NULL: never. */
    int (*graph_eager)(const ng_model *m);
    /* After a replay of a captured gradient on the batch x (which ran the kernels without calling
     * gradient): bring host mirrors of device state and the host's record of the last gradient up
     * to date (an RBM: its Philox step; a cnn: its gradient count and current batch). NULL: nothing. */
    void (*graph_replayed)(ng_model *m, const ng_tensor *x);
    /* A capture that called gradient failed and was discarded (nothing it recorded ran): undo what
     * that gradient advanced on the host (an RBM: its Philox step). NULL: nothing. */
    void (*graph_discarded)(ng_model *m);
    /* CUDA-graph segments (natgrad/graph.h): the host state of the model's passes that a
     * captured segment's control flow reads and leaves behind (a network: its batch views and
     * which forward pass the buffers hold). get writes at most cap words and returns how many
     * (-1: not describable: segments run eagerly); set restores them. NULL: no segments. */
    int (*graph_state_get)(const ng_model *m, uint64_t *st, int cap);
    void (*graph_state_set)(ng_model *m, const uint64_t *st, int n);
    /* Data parallelism (natgrad/train.h). data_parallel = 1: the model runs on several ranks by
     * itself: with m->dist.comm set, gradient draws what one process would draw for its shard and
     * all-reduces its gradient and batch statistics before it returns (the trainer does not reduce
     * the gradient again). gather (NULL: nothing to do): every rank calls it before a checkpoint of
     * a multi-rank run, so that state sharded over the ranks (an RBM's persistent particles) is
     * whole on rank 0, which saves the model. */
    int data_parallel;
    ng_status (*gather)(ng_model *m);
};

/* Set by the trainer on a model with data_parallel = 1 when the run has several ranks: before each
 * gradient, the batch is this rank's columns [lo, hi) of a global batch of `batch` cases. comm
 * NULL: one process. */
typedef struct ng_model_dist {
    struct ng_comm *comm;
    int lo, hi, batch;
} ng_model_dist;

struct ng_model {
    const struct ng_model_i *iface;
    ng_backend *be;
    ng_arena params;       /* packed: every parameter */
    ng_arena grads;        /* packed: the gradient, same names and layout */
    ng_tensor param_flat;  /* (n) the parameter arena as one vector */
    ng_tensor grad_flat;   /* (n) the gradient arena as one vector */
    unsigned char *decay;  /* (n_params) 1: parameter i takes weight decay (weights, not biases) */
    int defer_check;       /* 1: gradient skips iface->check_gradient (the caller runs it later) */
    ng_model_dist dist;    /* data parallelism (see ng_model_dist) */
    /* Set by a caller that consumes the gradient while it is computed (the trainer's overlapped
     * all-reduce, natgrad/train.h), NULL otherwise. During gradient, a model that knows the order of
     * its backward pass calls ng_model_grad_ready when elements [a, b) of the gradient arena are
     * final for this batch (after the last chunk's writes are queued), before it queues further
     * work; a model that never calls it is still correct (the caller takes the rest afterwards). */
    ng_status (*grad_ready)(void *user, size_t a, size_t b);
    void *grad_user;
};

/* The gradient of [a, b) (elements of grad_flat) is final: tell the caller that asked (no-op when
 * none did). */
static inline ng_status ng_model_grad_ready(ng_model *m, size_t a, size_t b) {
    return m->grad_ready ? m->grad_ready(m->grad_user, a, b) : NG_OK;
}

/* Build-time helpers for implementations: set up the arenas, add parameters (value and gradient
 * views of the same shape; fastest dim first), then commit. */
void ng_model_begin(ng_model *m, const struct ng_model_i *iface, ng_backend *be);
ng_status ng_model_add_param(ng_model *m, const char *name, int ndim, const int *dims, int decay,
                             ng_tensor *value, ng_tensor *grad);
ng_status ng_model_commit(ng_model *m);
/* Release the arenas (and call iface->destroy); safe on a zeroed or half-built model. */
void ng_model_release(ng_model *m);

/* Parameter (and gradient) view by name; NG_ERR_INVALID_ARG naming the model kind when absent. */
ng_status ng_model_param(const ng_model *m, const char *name, ng_tensor *value, ng_tensor *grad);
static inline int ng_model_n_params(const ng_model *m) { return m->params.count; }
static inline size_t ng_model_size(const ng_model *m) { return ng_tensor_count(&m->param_flat); }

ng_status ng_model_gradient(ng_model *m, const ng_tensor *x, const ng_tensor *y);
ng_status ng_model_statistic(ng_model *m, const char *name, ng_tensor *out);
ng_status ng_model_gnvp(ng_model *m, const ng_tensor *v, ng_tensor *out);
ng_status ng_model_fvp(ng_model *m, const ng_tensor *v, ng_tensor *out);
/* The state callbacks (ng_graph_seg.state_get / state_set, natgrad/graph.h) of a graph segment
 * whose user context begins with the model (its first member an ng_model *): the model's pass
 * state, ng_model_i.graph_state_get / set (-1 where the model has none: the segment runs eagerly). */
int ng_model_seg_state_get(void *user, uint64_t *st, int cap);
void ng_model_seg_state_set(void *user, const uint64_t *st, int n);

/* Checkpoint entries: model.kind, the implementation's save, and every parameter as tensor
 * "model.<name>" (dims as natgrad stores them, fastest first). */
ng_status ng_model_save(ng_model *m, ng_ckpt *c);
/* The inverse: model.kind must match, every parameter must be present with its exact shape and
 * finite values; apply = 0 only validates; nothing is modified unless everything validates. */
ng_status ng_model_load(ng_model *m, const ng_ckpt *c, int apply);

/* Adds the tensors of an arena as "<prefix><name>" (fetched from the device at write time). */
ng_status ng_ckpt_add_arena(ng_ckpt *c, const char *prefix, const ng_arena *a);
/* Validates that every tensor of the arena is present as "<prefix><name>" with its exact dtype,
 * shape and finite values (all of them before any is copied), then copies them to the device. */
ng_status ng_ckpt_load_arena(const ng_ckpt *c, const char *prefix, ng_arena *a);
/* The validation alone. */
ng_status ng_ckpt_check_arena(const ng_ckpt *c, const char *prefix, const ng_arena *a);

#ifdef __cplusplus
}
#endif
#endif
