/* adam.c: Adam (Kingma & Ba 2015, Algorithm 1, with bias correction) and RMSprop (Tieleman &
 * Hinton 2012, lecture 6e), natgrad/update.h. One fused elementwise op per update (NG_OP_ADAM,
 * body ng_adam_elem in kernels/ng_math.h) on the model's flat vectors:
 *   adam     m = beta1 m + (1 - beta1) d,  v = beta2 v + (1 - beta2) d^2,
 *            theta += s = -lr (m / (1 - beta1^(t+1))) / (sqrt(v / (1 - beta2^(t+1))) + eps)
 *            (update t is the paper's step t + 1; the bias corrections are computed here in double
 *            from t alone, so a resumed run is bit-exact)
 *            The step count t lives on the device (the work arena's "count", NG_OP_ADAM's count):
 *            the op computes both corrections from it with the same formula and advances it, so a
 *            captured CUDA graph replays every update without re-capture or host writes. The host
 *            keeps a mirror (t_dev) of what the device holds and writes t only when it differs
 *            (after a resume, or a caller that skips updates): never inside a capture.
 *   rmsprop  r = rho r + (1 - rho) d^2,  theta += s = -lr d / (sqrt(r) + eps)   (r_0 = 0; no
 *            per-update scalar at all)
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
    ng_tensor count;    /* (2) float64, adam only: [0] the update index the device step count holds,
                         * [1] the CUDA kernel's block ticket (0 between launches) */
    uint64_t t_dev;     /* host mirror of count[0]; T_UNKNOWN after a load */
    ng_upd_avg avg;
} adam;

#define T_UNKNOWN UINT64_MAX

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

/* The device step count = t (the counter's ticket stays 0): eager only, a blocking write. */
static ng_status set_count(ng_update *u, adam *s, uint64_t t) {
    const double c[2] = {(double)t, 0.0};
    ng_status st = ng_set(u->be, s->count.data, c, sizeof c);
    if (st != NG_OK)
        return ng_error_wrap(st, "adam: setting the device step count to update %llu (not possible inside a CUDA "
                             "graph capture: a captured step must follow the update the device counted last): ",
                             (unsigned long long)t);
    s->t_dev = t;
    return NG_OK;
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
        /* bc1 = ng_adam_bias_correction(beta1, t), bc2 likewise: from the device count */
        a.adam.count = (double *)s->count.data;
        if (s->t_dev != t) NG_TRY(set_count(u, s, t));
    }
    NG_TRY(ng_run_op(u->be, &a));
    if (!s->rmsprop) s->t_dev = t + 1;
    return ng_upd_avg_step(&s->avg, u->be, m, NULL, 0.0f);
}

/* No host scalar reaches the kernels: Adam's bias corrections come from the device step count,
 * RMSprop has none. One key for every update. */
static int adam_graph_key(const ng_update *u, uint64_t t, double *key, int max) {
    (void)u;
    (void)t;
    (void)key;
    (void)max;
    return 0;
}

/* A graph replay of update t advanced the device count to t + 1, as adam_step would have. */
static void adam_graph_replayed(ng_update *u, uint64_t t) {
    adam *s = (adam *)u->impl;
    if (!s->rmsprop) s->t_dev = t + 1;
}

/* A discarded capture of update t never ran: the device count still holds t. */
static void adam_graph_discarded(ng_update *u, uint64_t t) {
    adam *s = (adam *)u->impl;
    if (!s->rmsprop) s->t_dev = t;
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
    NG_TRY(ng_upd_avg_load(&s->avg, c, r));
    if (apply && !s->rmsprop) {
        /* the device count of the resumed update (run.t, validated by the trainer); without it the
         * first update writes its own t */
        uint64_t t;
        ((adam *)u->impl)->t_dev = T_UNKNOWN;
        if (ng_ckpt_has(c, "run.t") && ng_ckpt_get_u64(c, "run.t", &t) == NG_OK && t <= (uint64_t)1 << 53)
            NG_TRY(set_count(u, (adam *)u->impl, t));
    }
    return NG_OK;
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
    .graph_replayed = adam_graph_replayed,
    .graph_discarded = adam_graph_discarded,
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
    .graph_replayed = adam_graph_replayed,
    .graph_discarded = adam_graph_discarded,
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
    if (st == NG_OK && !rmsprop) {
        int two[1] = {2};
        st = ng_arena_reserve_nd(&s->work, "count", NG_F64, 1, two, &s->count);
    }
    if (st == NG_OK) st = ng_arena_commit(&s->work);
    if (st == NG_OK && !rmsprop) st = set_count(u, s, 0);
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
