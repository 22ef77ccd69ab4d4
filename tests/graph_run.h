/* graph_run.h: the fixture tests/test_graph.c and tests/test_graph_ranks.c train, eagerly and as CUDA
 * graphs: a 6-5-4-6 autoencoder (logistic units, Bernoulli loss on its input, Gaussian initial
 * weights of scale 0.5, seed 17) with sgd (lr 0.3, momentum 0.5, weight decay 1e-3), nag (lr 0.05) or
 * adam (lr 0.01), its trainer and data (struct run), and the xorshift data both draw; for the conv
 * nets of the graph tests (test_graph*.c, test_seg_ranks.c) their run (struct cnn_run, built by each
 * file's cnn_run_init) and labelled images. Include after harness.h. */
#ifndef NG_TESTS_GRAPH_RUN_H
#define NG_TESTS_GRAPH_RUN_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "natgrad/cnn.h"
#include "natgrad/data.h"
#include "natgrad/net.h"
#include "natgrad/precond.h"
#include "natgrad/train.h"
#include "natgrad/update.h"

typedef struct run {
    ng_model *net;
    ng_update *upd;
    ng_precond *pc;
    ng_batches data;
    int data_ready;
    ng_trainer tr;
} run;

enum { AE_SGD, AE_NAG, AE_ADAM };

/* the autoencoder's configuration but its layers (the caller parses the spec) */
static inline void ae_config(ng_net_config *cfg) {
    ng_net_config_default(cfg);
    cfg->loss = NG_LOSS_BERNOULLI;
    cfg->target = NG_NET_TARGET_INPUT;
    cfg->init = NG_INIT_GAUSSIAN;
    cfg->init_scale = 0.5f;
    cfg->seed = 17;
}

/* the update rule (AE_*) of the fixture for net; sgd's learning rate decays with sgd_lr_gamma */
static inline ng_status ae_update(ng_backend *be, ng_model *net, int rule, float sgd_lr_gamma, ng_update **upd) {
    if (rule == AE_SGD) {
        ng_sgd_config c;
        memset(&c, 0, sizeof c);
        c.lr = 0.3f;
        c.momentum = 0.5f;
        c.lr_gamma = sgd_lr_gamma;
        c.weight_decay = 1e-3f;
        return ng_update_sgd_init(be, net, &c, upd);
    } else if (rule == AE_NAG) {
        ng_nag_config c;
        ng_nag_config_default(&c);
        c.lr = 0.05f;
        return ng_update_nag_init(be, net, &c, upd);
    } else {
        ng_adam_config c;
        ng_adam_config_default(&c);
        c.lr = 0.01f;
        return ng_update_adam_init(be, net, &c, upd);
    }
}

static inline void run_free(run *r) {
    ng_trainer_release(&r->tr);
    ng_update_free(r->upd);
    ng_precond_free(r->pc);
    if (r->data_ready) ng_batches_free(&r->data);
    ng_net_free(r->net);
    memset(r, 0, sizeof *r);
}

/* the two runs' parameters on be, bit for bit; the first difference printed (what: the case) */
static inline int same_params_on(ng_backend *be, const char *what, run *a, run *b, uint64_t t) {
    size_t n = ng_model_size(a->net), i;
    float *pa = (float *)malloc(n * sizeof(float)), *pb = (float *)malloc(n * sizeof(float));
    int ok;
    NGT_CHECK(pa && pb, "out of memory");
    NGT_OK(ng_tensor_get(be, &a->net->param_flat, pa));
    NGT_OK(ng_tensor_get(be, &b->net->param_flat, pb));
    ok = memcmp(pa, pb, n * sizeof(float)) == 0;
    if (!ok) {
        for (i = 0; i < n && pa[i] == pb[i]; i++) {
        }
        printf("  %s: after update %llu parameter %zu is %.9g eager, %.9g graph\n", what, (unsigned long long)t, i,
               (double)pa[i], (double)pb[i]);
    }
    free(pa);
    free(pb);
    return ok ? NGT_PASS : NGT_FAIL;
}

/* a conv net's training run (each test file has its own cnn_run_init) */
typedef struct cnn_run {
    ng_model *m;
    ng_update *upd;
    ng_precond *pc;
    ng_batches data;
    int data_ready;
    ng_trainer tr;
} cnn_run;

static inline void cnn_run_free(cnn_run *r) {
    ng_trainer_release(&r->tr);
    ng_update_free(r->upd);
    ng_precond_free(r->pc);
    if (r->data_ready) ng_batches_free(&r->data);
    ng_cnn_free(r->m);
    memset(r, 0, sizeof *r);
}

/* n values in [0, 1) from the xorshift state *z (advanced) */
static inline void xorshift_fill(float *x, size_t n, uint64_t *z) {
    size_t i;
    for (i = 0; i < n; i++) {
        *z ^= *z << 13;
        *z ^= *z >> 7;
        *z ^= *z << 17;
        x[i] = (float)((*z >> 40) & 0xFFFF) / 65536.0f;
    }
}

/* n labelled images for the conv nets of the graph tests, column i at x + ld i (ld >= 39): a 6x6
 * image of pixels in [0, 1) drawn from *z (advanced), then a one-hot label of 3 classes, (7 i) mod 3 */
static inline void fill_images(float *x, int n, int ld, uint64_t *z) {
    int i, k;
    for (i = 0; i < n; i++) {
        xorshift_fill(x + (size_t)ld * i, 36, z);
        for (k = 0; k < 3; k++) x[36 + k + (size_t)ld * i] = k == (i * 7) % 3 ? 1.0f : 0.0f;
    }
}
/* The driver every graph-vs-eager test shares: updates from .. to-1 of an eager trainer a and a graph
 * trainer b, the same log row passed to both on every log_every-th update (0: none); after each
 * update same(pr, t) compares the two runs (NULL: no comparison). NGT_FAIL at the first difference. */
typedef struct pair {
    const char *what;
    void *a, *b;    /* the two runs (run, rbm_run, cnn_run or prong_run) */
    uint64_t steps; /* the last update + 1 (graph_vs_eager compares it) */
} pair;
typedef int (*same_fn)(const pair *pr, uint64_t t);

static inline int step_both(ng_trainer *a, ng_trainer *b, uint64_t from, uint64_t to, int log_every, same_fn same,
                                   const pair *pr) {
    double row[NG_TRAIN_MAX_COLUMNS];
    uint64_t t;
    for (t = from; t < to; t++) {
        double *rw = log_every && t % (uint64_t)log_every == 0 ? row : NULL;
        NGT_OK(ng_trainer_step(a, rw));
        NGT_OK(ng_trainer_step(b, rw));
        if (same && same(pr, t) != NGT_PASS) return NGT_FAIL;
    }
    return NGT_PASS;
}

#endif
