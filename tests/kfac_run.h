/* kfac_run.h: the K-FAC training run tests/test_kfac.c (CPU against emulated CUDA, chunks, the
 * asynchronous refreshes) and tests/test_kfac_ranks.c (owned refreshes on several ranks) both make:
 * a 6-5-3:linear-5-6 autoencoder (tanh, logistic output, Bernoulli loss, Gaussian initial weights of
 * scale 0.5) on 96 cases of 6 from a fixed LCG in batches of 32, a plain step (lr 1, weight decay
 * 1e-5) through K-FAC with T1 2, T2 8, T3 4 and lambda0 10. Include after harness.h. */
#ifndef NG_TESTS_KFAC_RUN_H
#define NG_TESTS_KFAC_RUN_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "natgrad/comm.h"
#include "natgrad/data.h"
#include "natgrad/kfac.h"
#include "natgrad/log.h"
#include "natgrad/net.h"
#include "natgrad/train.h"
#include "natgrad/update.h"

typedef struct kfac_run {
    int approx;    /* NG_KFAC_BLOCKDIAG or NG_KFAC_TRIDIAG */
    int steps;     /* updates */
    int async_lag; /* ng_kfac_config.async_lag (-1: synchronous) */
    int inverse;   /* ng_kfac_config.inverse; < 0: the default's */
    int chunk;     /* > 0: the network's chunk; 0: the default (one chunk a batch) */
    double tau;    /* > 0: tau1 = tau2 = tau; 0: the defaults */
    ng_comm *comm; /* NULL: one process; otherwise this rank's shards, the communicator on more than one rank */
} kfac_run;

/* the network's configuration: 6-5-3:linear-5-6, tanh, logistic output, Bernoulli loss, Gaussian 0.5 */
static inline ng_status kfac_run_net_config(ng_net_config *nc) {
    ng_net_config_default(nc);
    nc->loss = NG_LOSS_BERNOULLI;
    nc->init = NG_INIT_GAUSSIAN;
    nc->init_scale = 0.5f;
    return ng_net_parse_spec("6-5-3:linear-5-6", NG_ACT_TANH, NG_ACT_LOGISTIC, nc);
}

/* The run o on be; theta (room for max floats) gets the parameters, *np their number. */
static inline ng_status kfac_run_steps(ng_backend *be, const kfac_run *o, float *theta, size_t max, size_t *np) {
    enum { N = 96, DIM = 6, BATCH = 32 };
    ng_net_config nc;
    ng_model *net = NULL;
    ng_precond *pc = NULL;
    ng_update *upd = NULL;
    ng_batches b;
    ng_trainer tr;
    ng_kfac_config kc;
    ng_sgd_config sc;
    float *x = (float *)malloc(sizeof(float) * N * DIM);
    int i, have_b = 0, have_tr = 0;
    ng_status s;
    uint64_t st = 99;
    if (!x) return ng_error(NG_ERR_OOM, "host memory");
    for (i = 0; i < N * DIM; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((st >> 40) & 0xffff) / 65535.0f;
    }
    s = kfac_run_net_config(&nc);
    if (o->chunk > 0) nc.chunk = o->chunk;
    if (s == NG_OK) s = ng_net_create(be, &nc, &net);
    ng_kfac_config_default(&kc);
    kc.approx = o->approx;
    if (o->inverse >= 0) kc.inverse = o->inverse;
    kc.timing = 0;
    if (o->tau > 0.0) kc.tau1 = kc.tau2 = o->tau;
    kc.T1 = 2;
    kc.T2 = 8;
    kc.T3 = 4;
    kc.async_lag = o->async_lag;
    kc.lambda0 = 10.0;
    memset(&sc, 0, sizeof sc);
    sc.lr = 1.0f;
    sc.weight_decay = 1e-5f;
    if (s == NG_OK) s = ng_precond_kfac_init(be, net, &kc, &pc);
    if (s == NG_OK) s = ng_update_sgd_init(be, net, &sc, &upd);
    if (s == NG_OK)
        s = ng_batches_init(&b, be, x, DIM, N, BATCH, 7, o->comm ? o->comm->rank : 0, o->comm ? o->comm->world : 1),
        have_b = s == NG_OK;
    if (s == NG_OK) s = ng_trainer_init(&tr, net, pc, upd, &b, 7, NULL), have_tr = s == NG_OK;
    if (s == NG_OK && o->comm && o->comm->world > 1) s = ng_trainer_set_comm(&tr, o->comm);
    for (i = 0; s == NG_OK && i < o->steps; i++) s = ng_trainer_step(&tr, NULL);
    if (s == NG_OK) {
        *np = ng_model_size(net);
        s = *np <= max ? ng_tensor_get(be, &net->param_flat, theta) : ng_error(NG_ERR_INVALID_ARG, "%zu parameters", *np);
    }
    if (have_tr) ng_trainer_release(&tr);
    if (have_b) ng_batches_free(&b);
    ng_update_free(upd);
    ng_precond_free(pc);
    ng_net_free(net);
    free(x);
    return s;
}
#endif
