/* adam.c: Adam (Kingma & Ba 2015, Algorithm 1, with bias correction) and RMSprop (Tieleman &
 * Hinton 2012, lecture 6e), natgrad/update.h. One fused elementwise op per update (NG_OP_ADAM,
 * body ng_adam_elem in kernels/ng_math.h) on the model's flat vectors:
 *   adam     m = beta1 m + (1 - beta1) d,  v = beta2 v + (1 - beta2) d^2,
 *            theta += s = -lr (m / (1 - beta1^(t+1))) / (sqrt(v / (1 - beta2^(t+1))) + eps)
 *            (update t is the paper's step t + 1; the bias corrections are computed here in double
 *            from t alone, so a resumed run is bit-exact)
 *   rmsprop  r = rho r + (1 - rho) d^2,  theta += s = -lr d / (sqrt(r) + eps)   (r_0 = 0)
 * The op also writes the step s into a workspace (not checkpointed) whose norm is the update_norm
 * column. Averaging and weight decay: update_common.h. Nothing is allocated after init. */
#include "natgrad/update.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim/update_common.h"

typedef struct adam {
    int rmsprop;        /* 1: RMSprop (no first moment, no bias correction) */
    ng_adam_config cfg; /* rmsprop: beta1 = 0, beta2 = rho */
    ng_tensor m, v;     /* (n) state: first moment (adam only), second moment / mean square */
    ng_arena work;      /* not checkpointed */
    ng_tensor step;     /* (n) the last step s */
    ng_upd_avg avg;
} adam;

void ng_adam_config_default(ng_adam_config *c) {
    memset(c, 0, sizeof *c);
    c->lr = 1e-3f;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
}

void ng_rmsprop_config_default(ng_rmsprop_config *c) {
    memset(c, 0, sizeof *c);
    c->lr = 1e-3f;
    c->rho = 0.9f;
    c->eps = 1e-8f;
}

ng_status ng_adam_config_check(const ng_adam_config *c) {
    NG_TRY(ng_upd_check_positive("--lr", c->lr));
    NG_TRY(ng_upd_check_unit("--beta1", c->beta1));
    NG_TRY(ng_upd_check_unit("--beta2", c->beta2));
    NG_TRY(ng_upd_check_positive("--eps", c->eps));
    NG_TRY(ng_upd_check_nonneg("--weight-decay", c->weight_decay));
    return ng_upd_check_unit("--average", c->average);
}

ng_status ng_rmsprop_config_check(const ng_rmsprop_config *c) {
    NG_TRY(ng_upd_check_positive("--lr", c->lr));
    NG_TRY(ng_upd_check_unit("--rho", c->rho));
    NG_TRY(ng_upd_check_positive("--eps", c->eps));
    NG_TRY(ng_upd_check_nonneg("--weight-decay", c->weight_decay));
    return ng_upd_check_unit("--average", c->average);
}

static double adam_lr(const ng_update *u, uint64_t t) {
    (void)t;
    return (double)((const adam *)u->impl)->cfg.lr;
}

static ng_status adam_penalize(ng_update *u, ng_model *m, uint64_t t) {
    (void)t;
    return ng_upd_weight_decay(u->be, m, ((const adam *)u->impl)->cfg.weight_decay);
}

/* 1 - beta^(t+1) in double (0 < result <= 1 for beta in [0, 1)). */
static double bias_correction(float beta, uint64_t t) {
    return 1.0 - pow((double)beta, (double)t + 1.0);
}

static ng_status adam_step(ng_update *u, ng_model *m, uint64_t t) {
    adam *s = (adam *)u->impl;
    ng_op_args a;
    if (t == 0) NG_TRY(ng_upd_avg_start(&s->avg, u->be, m));
    memset(&a, 0, sizeof a);
    a.op = NG_OP_ADAM;
    a.adam.n = ng_model_size(m);
    a.adam.param = m->param_flat.data;
    a.adam.grad = m->grad_flat.data;
    a.adam.v = s->v.data;
    a.adam.step = s->step.data;
    a.adam.b2 = s->cfg.beta2;
    a.adam.c2 = (float)(1.0 - (double)s->cfg.beta2);
    a.adam.lr = s->cfg.lr;
    a.adam.eps = s->cfg.eps;
    if (s->rmsprop) {
        a.adam.bc1 = 1.0;
        a.adam.bc2 = 1.0;
    } else {
        a.adam.m = s->m.data;
        a.adam.b1 = s->cfg.beta1;
        a.adam.c1 = (float)(1.0 - (double)s->cfg.beta1);
        a.adam.bc1 = bias_correction(s->cfg.beta1, t);
        a.adam.bc2 = bias_correction(s->cfg.beta2, t);
    }
    NG_TRY(ng_run_op(u->be, &a));
    return ng_upd_avg_step(&s->avg, u->be, m, NULL, 0.0f);
}

/* Adam's bias corrections change every update, so each update is a new key (re-captured);
 * RMSprop has none. */
static int adam_graph_key(const ng_update *u, uint64_t t, double *key, int max) {
    const adam *s = (const adam *)u->impl;
    if (max < 2) return -1;
    key[0] = s->rmsprop ? 1.0 : bias_correction(s->cfg.beta1, t);
    key[1] = s->rmsprop ? 1.0 : bias_correction(s->cfg.beta2, t);
    return 2;
}

static const char *const adam_columns[] = {"update_norm", NULL};

static ng_status adam_log_values(ng_update *u, ng_model *m, double *values) {
    const adam *s = (const adam *)u->impl;
    float r = 0.0f;
    NG_TRY(ng_nrm2(u->be, ng_model_size(m), s->step.data, &r));
    values[0] = r;
    return NG_OK;
}

static ng_status adam_save(ng_update *u, ng_ckpt *c) {
    const adam *s = (const adam *)u->impl;
    const char *r = u->iface->name;
    char key[64];
#define KEY(field) (snprintf(key, sizeof key, "%s.%s", r, field), key)
    NG_TRY(ng_ckpt_set_f32(c, KEY("lr"), s->cfg.lr));
    if (s->rmsprop) {
        NG_TRY(ng_ckpt_set_f32(c, KEY("rho"), s->cfg.beta2));
    } else {
        NG_TRY(ng_ckpt_set_f32(c, KEY("beta1"), s->cfg.beta1));
        NG_TRY(ng_ckpt_set_f32(c, KEY("beta2"), s->cfg.beta2));
    }
    NG_TRY(ng_ckpt_set_f32(c, KEY("eps"), s->cfg.eps));
    NG_TRY(ng_ckpt_set_f32(c, KEY("weight_decay"), s->cfg.weight_decay));
    return ng_upd_avg_save(&s->avg, c, r);
}

/* Every field must be this run's (the moments were accumulated with them). */
static ng_status adam_load(ng_update *u, const ng_ckpt *c, int apply) {
    const adam *s = (const adam *)u->impl;
    const char *r = u->iface->name;
    const double below1 = 1.0 - 0x1p-24;
    char key[64];
    (void)apply;
    NG_TRY(ng_upd_expect_f32(c, KEY("lr"), 1e-30, 1e30, s->cfg.lr));
    if (s->rmsprop) {
        NG_TRY(ng_upd_expect_f32(c, KEY("rho"), 0.0, below1, s->cfg.beta2));
    } else {
        NG_TRY(ng_upd_expect_f32(c, KEY("beta1"), 0.0, below1, s->cfg.beta1));
        NG_TRY(ng_upd_expect_f32(c, KEY("beta2"), 0.0, below1, s->cfg.beta2));
    }
    NG_TRY(ng_upd_expect_f32(c, KEY("eps"), 1e-45, 1e30, s->cfg.eps));
    NG_TRY(ng_upd_expect_f32(c, KEY("weight_decay"), 0.0, 1e30, s->cfg.weight_decay));
#undef KEY
    return ng_upd_avg_load(&s->avg, c, r);
}

static void adam_destroy(ng_update *u) {
    adam *s = (adam *)u->impl;
    if (!s) return;
    ng_arena_free(&s->work);
    free(s);
}

static const struct ng_update_i adam_iface = {
    .name = "adam",
    .penalize = adam_penalize,
    .step = adam_step,
    .lr = adam_lr,
    .columns = adam_columns,
    .log_values = adam_log_values,
    .save = adam_save,
    .load = adam_load,
    .destroy = adam_destroy,
    .graph_key = adam_graph_key,
};

static const struct ng_update_i rmsprop_iface = {
    .name = "rmsprop",
    .penalize = adam_penalize,
    .step = adam_step,
    .lr = adam_lr,
    .columns = adam_columns,
    .log_values = adam_log_values,
    .save = adam_save,
    .load = adam_load,
    .destroy = adam_destroy,
    .graph_key = adam_graph_key,
};

static ng_status adam_create(ng_backend *be, ng_model *m, const ng_adam_config *cfg, int rmsprop,
                             ng_update **out) {
    ng_update *u;
    adam *s;
    ng_status st;
    int dims[1];
    const char *name = rmsprop ? "rmsprop" : "adam";
    u = (ng_update *)calloc(1, sizeof *u);
    s = (adam *)calloc(1, sizeof *s);
    if (!u || !s) {
        free(u);
        free(s);
        return ng_error(NG_ERR_OOM, "%s: out of host memory", name);
    }
    u->iface = rmsprop ? &rmsprop_iface : &adam_iface;
    u->be = be;
    u->impl = s;
    s->rmsprop = rmsprop;
    s->cfg = *cfg;
    dims[0] = (int)ng_model_size(m);
    ng_arena_begin(&u->state, be, name);
    ng_arena_begin(&s->work, be, rmsprop ? "rmsprop workspace" : "adam workspace");
    st = rmsprop ? NG_OK : ng_arena_reserve_nd(&u->state, "m", NG_F32, 1, dims, &s->m);
    if (st == NG_OK) st = ng_arena_reserve_nd(&u->state, rmsprop ? "ms" : "v", NG_F32, 1, dims, &s->v);
    if (st == NG_OK) st = ng_upd_avg_reserve(&s->avg, &u->state, m, cfg->average);
    if (st == NG_OK) st = ng_arena_commit(&u->state);
    if (st == NG_OK) st = ng_arena_reserve_nd(&s->work, "step", NG_F32, 1, dims, &s->step);
    if (st == NG_OK) st = ng_arena_commit(&s->work);
    if (st == NG_OK) st = ng_upd_avg_start(&s->avg, be, m);
    if (st != NG_OK) {
        ng_update_free(u);
        return st;
    }
    *out = u;
    return NG_OK;
}

ng_status ng_update_adam_init(ng_backend *be, ng_model *m, const ng_adam_config *cfg, ng_update **out) {
    *out = NULL;
    NG_TRY(ng_adam_config_check(cfg));
    return adam_create(be, m, cfg, 0, out);
}

ng_status ng_update_rmsprop_init(ng_backend *be, ng_model *m, const ng_rmsprop_config *cfg,
                                 ng_update **out) {
    ng_adam_config a;
    *out = NULL;
    NG_TRY(ng_rmsprop_config_check(cfg));
    memset(&a, 0, sizeof a);
    a.lr = cfg->lr;
    a.beta2 = cfg->rho;
    a.eps = cfg->eps;
    a.weight_decay = cfg->weight_decay;
    a.average = cfg->average;
    return adam_create(be, m, &a, 1, out);
}
