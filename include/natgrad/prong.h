/* natgrad/prong.h: Projected Natural Gradient Descent (Desjardins, Simonyan, Pascanu & Kavukcuoglu,
 * "Natural Neural Networks", NIPS 2015, Algorithm 1) as a preconditioner of natgrad/precond.h, for
 * networks built with cfg.whiten = 1 (whitened coordinates) or 2 (the canonical form, natgrad's
 * default: see natgrad/net.h; cheaper per update, the same steps between refreshes). The whitened
 * network's parameters (V, d; or W = V U, b in the canonical form) are
 * trained by the update rule (SGD in the paper); every T updates this preconditioner draws N_s
 * training cases (its own stream, checkpointed), re-estimates every layer's mean and covariance,
 * and reparametrises (ng_net_whiten_refresh: U from the eigendecomposition of Sigma + eps I, V and d
 * projected so the network computes the same function). The reparametrisation happens in observe,
 * after the trainer computed the gradient of the update's batch; that gradient is then recomputed in
 * the new parameters (and the update rule's weight decay added again), so the update that follows
 * is an SGD step in the fresh whitened coordinates, as line 13 of Algorithm 1. At update 0 the
 * network is whitened either by the projection (the "fan-in" start of Figure 3b) or by section
 * 4.1's whitened initialisation (V and d kept, each layer whitened on the whitened layers below).
 * PRONG+ is the same with batch-normalised hidden layers (+bn in the layer spec).
 *
 * The update rule's state (momentum) is kept as it is across a reparametrisation (a step of V with
 * whiten = 1, of W with whiten = 2). apply leaves the gradient as it is (the whitening is in the
 * parametrisation). */
#ifndef NATGRAD_PRONG_H
#define NATGRAD_PRONG_H

#include <stdint.h>

#include "natgrad/precond.h"
#include "natgrad/update.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ng_prong_config {
    float eps;         /* eigenvalue regulariser: U = diag(lambda + eps)^(-1/2) E^T (0.1) */
    int T;             /* updates between reparametrisations (100) */
    int ns;            /* N_s: training cases per estimate of the statistics (1000) */
    int whitened_init; /* 1: section 4.1's whitened initialisation at update 0; 0: projection (1) */
    uint64_t seed;     /* of the samples' stream */
} ng_prong_config;

void ng_prong_config_default(ng_prong_config *cfg);
ng_status ng_prong_config_check(const ng_prong_config *cfg);

/* PRONG on the whitened network `net`, drawing N_s samples per reparametrisation from the pool
 * x_host (rows as ng_net_batch_rows(net), pool_n columns; borrowed, must outlive the
 * preconditioner). upd: the update rule whose weight decay is added again after the recomputed
 * gradient (NULL: none). Columns: prong_refreshes, prong_stats_s, prong_reparam_s (seconds in the
 * statistics and in eigendecompositions + projections, summed since this process started: clocks
 * are not checkpointed, so a resumed run's checkpoints stay byte-identical to an uninterrupted one's). */
ng_status ng_precond_prong_init(ng_backend *be, ng_model *net, const ng_prong_config *cfg, const float *x_host, int pool_n,
                                ng_update *upd, ng_precond **out);

#ifdef __cplusplus
}
#endif
#endif
