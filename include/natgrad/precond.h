/* natgrad/precond.h: the preconditioner interface, the second of the three (natgrad/model.h): it
 * turns the model's gradient into a direction, in place in the model's gradient arena. Identity,
 * centering and FANG exist today (host/optim/); K-FAC, PRONG, the diagonal / energy metrics of the
 * recipes and the matrix-free solvers (CG, MINRES-QLP on curvature products) are later additions of
 * the same shape. A preconditioner may keep state (in its own arena, checkpointed), refit
 * periodically from the model's statistics, and log its own CSV columns.
 *
 * Per update t the trainer calls observe (statistics hook: read what the model's last gradient
 * left, update moving averages, refit on schedule) and then apply. Both read the model only
 * through ng_model_param and ng_model_statistic. */
#ifndef NATGRAD_PRECOND_H
#define NATGRAD_PRECOND_H

#include <stdint.h>

#include "natgrad/checkpoint.h"
#include "natgrad/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ng_precond ng_precond;

struct ng_precond_i {
    const char *name; /* "identity", "centering", "fang": stored as precond.kind */
    ng_status (*observe)(ng_precond *p, ng_model *m, uint64_t t);
    ng_status (*apply)(ng_precond *p, ng_model *m, uint64_t t);
    const char *const *columns; /* NULL-terminated CSV column names (NULL: none) */
    ng_status (*log_values)(ng_precond *p, double *values);
    /* configuration (as checkpoint entries) and state beyond the `state` arena, and back */
    ng_status (*save)(ng_precond *p, ng_ckpt *c);
    ng_status (*load)(ng_precond *p, const ng_ckpt *c, int apply); /* as the model's */
    void (*destroy)(ng_precond *p);
    /* 1: the preconditioner reduces its own batch statistics across the ranks of p->dist.comm, so
     * its state stays identical on every rank of a data-parallel run (K-FAC, truncated Newton, PRONG,
     * the diagonal metric, the full Fisher, centering, FANG) */
    int data_parallel;
    /* CUDA graphs (natgrad/train.h, --cuda-graph): whether observe + apply of update t (t >= 1),
     * on a batch of at most `cols` columns, may be captured and replayed, and the host values the
     * captured launches bake in. Returns n >= 0 with those values in key[0 .. n) (n <= max): a
     * capture is replayed only for an update with the same key (with the model's and the update
     * rule's); -1: update t runs eagerly (it reads the host, as a FANG refit or a PRONG reparametrisation does, or must
     * allocate; what such an eager update rewrites must stay at the addresses the graphs read).
     * Device state advanced by the kernels themselves (running averages, Philox steps counted on
     * the device) is not part of the key. NULL: the preconditioner is never captured. */
    int (*graph_key)(const ng_precond *p, const ng_model *m, uint64_t t, int cols, double *key, int max);
    /* After the trainer replayed a captured step as update t: bring host mirrors of device state up
     * to date (FANG: its device Philox step is now t + 1). NULL: nothing to do. */
    void (*graph_replayed)(ng_precond *p, uint64_t t);
    /* A capture of update t was discarded (nothing it recorded ran): host mirrors go back to the
     * device state before update t. NULL: nothing to do. */
    void (*graph_discarded)(ng_precond *p, uint64_t t);
};

/* Data parallelism (natgrad/train.h): set by the trainer before each observe when the run has
 * several ranks. The model's batch is this rank's shard, columns [lo, hi) of the global batch of
 * `batch` cases; the gradient arena already holds the global (all-reduced) gradient. comm NULL:
 * one process (lo = 0, hi = batch = the model's batch). */
typedef struct ng_precond_dist {
    struct ng_comm *comm;
    int lo, hi, batch;
} ng_precond_dist;

struct ng_precond {
    const struct ng_precond_i *iface;
    ng_backend *be;
    ng_arena state; /* checkpointed as "<name>.<tensor>" */
    void *impl;
    ng_precond_dist dist;
    /* CUDA-graph segments of the update (natgrad/graph.h), set by the trainer under --cuda-graph;
     * NULL: everything eager */
    struct ng_graph_segs *segs;
};

/* The identity: the direction is the gradient. */
ng_status ng_precond_identity_init(ng_backend *be, ng_precond **out);
/* Centering (Montavon & Mueller; FANG section 5.1) for RBMs: offsets mu_v, mu_h track the data
 * means with a moving average of rate `rate`, starting at the training-set mean and 0.5, and the
 * direction is SGD's on the centred parameterisation mapped back (FANG eq. 17-20). */
ng_status ng_precond_centering_init(ng_backend *be, ng_model *rbm, float rate, ng_precond **out);

ng_status ng_precond_observe(ng_precond *p, ng_model *m, uint64_t t);
ng_status ng_precond_apply(ng_precond *p, ng_model *m, uint64_t t);
/* precond.kind, the implementation's entries and its state arena */
ng_status ng_precond_save(ng_precond *p, ng_ckpt *c);
ng_status ng_precond_load(ng_precond *p, const ng_ckpt *c, int apply);
void ng_precond_free(ng_precond *p); /* NULL ok */

#ifdef __cplusplus
}
#endif
#endif
