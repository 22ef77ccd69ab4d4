/* sgd.c: the update-rule wrappers (natgrad/update.h) and SGD with heavy-ball momentum, weight
 * decay and the learning-rate schedule lr_t = lr gamma / (gamma + t) of FANG footnote 4.
 * On the model's flat vectors (param_flat, grad_flat = the direction d):
 *   penalize: d += wd * theta on the parameters that take decay (before the preconditioner)
 *   step:     v = momentum v - lr_t d  (=),  theta += v  [, theta_bar = xi theta_bar + (1-xi) theta]
 * State: the velocity v, packed like the parameters (and theta_bar when averaging). Must not:
 * allocate after init. */
#include "natgrad/update.h"

#include "optim/update_common.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

ng_status ng_update_penalize(ng_update *u, ng_model *m, uint64_t t) {
    return u->iface->penalize ? u->iface->penalize(u, m, t) : NG_OK;
}

ng_status ng_update_step(ng_update *u, ng_model *m, uint64_t t) { return u->iface->step(u, m, t); }

double ng_update_lr(const ng_update *u, uint64_t t) { return u->iface->lr ? u->iface->lr(u, t) : 0.0; }

ng_status ng_update_save(ng_update *u, ng_ckpt *c) {
    char prefix[80];
    NG_TRY(ng_ckpt_set_str(c, "update.kind", u->iface->name));
    if (u->iface->save) NG_TRY(u->iface->save(u, c));
    snprintf(prefix, sizeof prefix, "%s.", u->iface->name);
    return ng_ckpt_add_arena(c, prefix, &u->state);
}

ng_status ng_update_load(ng_update *u, const ng_ckpt *c, int apply) {
    const char *kind = NULL;
    char prefix[80];
    NG_TRY(ng_ckpt_get_str(c, "update.kind", &kind));
    if (strcmp(kind, u->iface->name) != 0)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: field update.kind is '%s', this run uses '%s'",
                        ng_ckpt_path(c), kind, u->iface->name);
    snprintf(prefix, sizeof prefix, "%s.", u->iface->name);
    NG_TRY(ng_ckpt_check_arena(c, prefix, &u->state));
    if (u->iface->load) NG_TRY(u->iface->load(u, c, 0));
    if (!apply) return NG_OK;
    if (u->iface->load) NG_TRY(u->iface->load(u, c, 1));
    return ng_ckpt_load_arena(c, prefix, &u->state);
}

void ng_update_free(ng_update *u) {
    if (!u) return;
    if (u->iface->destroy) u->iface->destroy(u);
    ng_arena_free(&u->state);
    free(u);
}

/* ---- SGD ----------------------------------------------------------------------------------- */

typedef struct sgd {
    ng_sgd_config cfg;
    char norm_param[64];  /* "" = all parameters */
    ng_tensor velocity;   /* (n) flat, packed like the parameters */
    ng_tensor norm_view;  /* the part of velocity whose norm is logged */
    ng_upd_avg avg;       /* iterate averaging (off when cfg.average = 0) */
} sgd;

ng_status ng_sgd_config_check(const ng_sgd_config *c) {
    if (!(c->lr > 0.0f) || !isfinite(c->lr))
        return ng_error(NG_ERR_INVALID_ARG, "--lr %g: must be a positive finite number", (double)c->lr);
    if (!(c->lr_gamma >= 0.0f) || !isfinite(c->lr_gamma))
        return ng_error(NG_ERR_INVALID_ARG, "--lr-gamma %g: must be >= 0", (double)c->lr_gamma);
    if (!(c->momentum >= 0.0f && c->momentum < 1.0f))
        return ng_error(NG_ERR_INVALID_ARG, "--momentum %g: must be in [0, 1)", (double)c->momentum);
    if (c->lr_drop_every < 0 || (c->lr_drop_every > 0 && !(c->lr_drop > 0.0f && c->lr_drop <= 1.0f)))
        return ng_error(NG_ERR_INVALID_ARG, "--lr-drop %g every %d updates: need a factor in (0, 1] and a count >= 0",
                        (double)c->lr_drop, c->lr_drop_every);
    if (!(c->weight_decay >= 0.0f) || !isfinite(c->weight_decay))
        return ng_error(NG_ERR_INVALID_ARG, "--weight-decay %g: must be >= 0", (double)c->weight_decay);
    return ng_upd_check_unit("--average", c->average);
}

static double sgd_lr(const ng_update *u, uint64_t t) {
    const sgd *s = (const sgd *)u->impl;
    double g = s->cfg.lr_gamma;
    double lr = g > 0.0 ? (double)s->cfg.lr * g / (g + (double)t) : (double)s->cfg.lr;
    if (s->cfg.lr_drop_every > 0) lr *= pow((double)s->cfg.lr_drop, (double)(t / (uint64_t)s->cfg.lr_drop_every));
    return lr;
}

static ng_status sgd_penalize(ng_update *u, ng_model *m, uint64_t t) {
    const sgd *s = (const sgd *)u->impl;
    (void)t;
    return ng_upd_weight_decay(u->be, m, s->cfg.weight_decay);
}

static ng_status sgd_step(ng_update *u, ng_model *m, uint64_t t) {
    sgd *s = (sgd *)u->impl;
    double lr = sgd_lr(u, t);
    if (t == 0) NG_TRY(ng_upd_avg_start(&s->avg, u->be, m)); /* theta_bar_0 = theta_0 */
    /* v = momentum v - lr d;  theta += v;  the average: one fused op */
    return ng_upd_momentum(&s->avg, u->be, m, s->velocity.data, (float)-lr, s->cfg.momentum, 1.0f, 0, 0.0f);
}

/* lr_t is the only per-update scalar (momentum and weight decay are constants) */
static int sgd_graph_key(const ng_update *u, uint64_t t, double *key, int max) {
    if (max < 1) return -1;
    key[0] = (double)(float)sgd_lr(u, t);
    return 1;
}

static const char *const sgd_columns[] = {"update_norm", NULL};

static ng_status sgd_log_values(ng_update *u, ng_model *m, double *values) {
    const sgd *s = (const sgd *)u->impl;
    float r = 0.0f;
    (void)m;
    NG_TRY(ng_nrm2(u->be, ng_tensor_count(&s->norm_view), s->norm_view.data, &r));
    values[0] = r;
    return NG_OK;
}

static ng_status sgd_save(ng_update *u, ng_ckpt *c) {
    const sgd *s = (const sgd *)u->impl;
    NG_TRY(ng_ckpt_set_f32(c, "sgd.lr", s->cfg.lr));
    NG_TRY(ng_ckpt_set_f32(c, "sgd.lr_gamma", s->cfg.lr_gamma));
    NG_TRY(ng_ckpt_set_f32(c, "sgd.momentum", s->cfg.momentum));
    NG_TRY(ng_ckpt_set_f32(c, "sgd.weight_decay", s->cfg.weight_decay));
    if (s->cfg.lr_drop_every > 0) {
        NG_TRY(ng_ckpt_set_f32(c, "sgd.lr_drop", s->cfg.lr_drop));
        NG_TRY(ng_ckpt_set_i64(c, "sgd.lr_drop_every", s->cfg.lr_drop_every));
    }
    return ng_upd_avg_save(&s->avg, c, "sgd");
}

/* The schedule (lr, lr_gamma) continues from the checkpoint; momentum, weight decay and averaging
 * must be those of this run (they change the meaning of the saved state). */
static ng_status sgd_load(ng_update *u, const ng_ckpt *c, int apply) {
    sgd *s = (sgd *)u->impl;
    float lr, gamma, mom, wd;
    NG_TRY(ng_ckpt_get_float(c, "sgd.lr", 1e-30, 1e30, &lr));
    NG_TRY(ng_ckpt_get_float(c, "sgd.lr_gamma", 0.0, 1e30, &gamma));
    NG_TRY(ng_ckpt_get_float(c, "sgd.momentum", 0.0, 0.999999, &mom));
    NG_TRY(ng_ckpt_get_float(c, "sgd.weight_decay", 0.0, 1e30, &wd));
    if (mom != s->cfg.momentum || wd != s->cfg.weight_decay)
        return ng_error(NG_ERR_FORMAT,
                        "checkpoint %s: fields sgd.momentum %g / sgd.weight_decay %g differ from this "
                        "run's %g / %g",
                        ng_ckpt_path(c), (double)mom, (double)wd, (double)s->cfg.momentum,
                        (double)s->cfg.weight_decay);
    NG_TRY(ng_upd_avg_load(&s->avg, c, "sgd"));
    if (ng_ckpt_has(c, "sgd.lr_drop_every")) {
        int64_t every;
        float drop;
        NG_TRY(ng_ckpt_get_int(c, "sgd.lr_drop_every", 1, 1 << 30, &every));
        NG_TRY(ng_ckpt_get_float(c, "sgd.lr_drop", 1e-30, 1.0, &drop));
        if (apply) s->cfg.lr_drop = drop, s->cfg.lr_drop_every = (int)every;
    } else if (apply) {
        s->cfg.lr_drop_every = 0;
    }
    if (apply) {
        s->cfg.lr = lr;
        s->cfg.lr_gamma = gamma;
    }
    return NG_OK;
}

static void sgd_destroy(ng_update *u) { free(u->impl); }

static const struct ng_update_i sgd_iface = {
    .name = "sgd",
    .penalize = sgd_penalize,
    .step = sgd_step,
    .lr = sgd_lr,
    .columns = sgd_columns,
    .log_values = sgd_log_values,
    .save = sgd_save,
    .load = sgd_load,
    .destroy = sgd_destroy,
    .graph_key = sgd_graph_key,
};

ng_status ng_update_sgd_init(ng_backend *be, ng_model *m, const ng_sgd_config *cfg, ng_update **out) {
    ng_update *u;
    sgd *s;
    ng_status st;
    int dims[1];
    *out = NULL;
    NG_TRY(ng_sgd_config_check(cfg));
    u = (ng_update *)calloc(1, sizeof *u);
    s = (sgd *)calloc(1, sizeof *s);
    if (!u || !s) {
        free(u);
        free(s);
        return ng_error(NG_ERR_OOM, "sgd: out of host memory");
    }
    u->iface = &sgd_iface;
    u->be = be;
    u->impl = s;
    s->cfg = *cfg;
    if (cfg->norm_param) snprintf(s->norm_param, sizeof s->norm_param, "%s", cfg->norm_param);
    s->cfg.norm_param = s->norm_param;
    ng_arena_begin(&u->state, be, "sgd");
    dims[0] = (int)ng_tensor_count(&m->param_flat);
    st = ng_arena_reserve_nd(&u->state, "velocity", NG_F32, 1, dims, &s->velocity);
    if (st == NG_OK) st = ng_upd_avg_reserve(&s->avg, &u->state, m, cfg->average);
    if (st == NG_OK) st = ng_arena_commit(&u->state);
    if (st == NG_OK) st = ng_upd_avg_start(&s->avg, be, m);
    s->norm_view = s->velocity;
    if (st == NG_OK && s->norm_param[0]) {
        /* the slice of the velocity that holds norm_param: same offset as in the packed arena */
        int i;
        st = ng_error(NG_ERR_INVALID_ARG, "sgd: the model has no parameter %s to log", s->norm_param);
        for (i = 0; i < m->params.count; i++)
            if (strcmp(ng_arena_name(&m->params, i), s->norm_param) == 0) {
                const ng_tensor *p = ng_arena_view(&m->params, i);
                int n = (int)ng_tensor_count(p);
                s->norm_view.data = s->velocity.data + (p->data - m->param_flat.data);
                s->norm_view.rows = s->norm_view.dims[0] = n;
                st = NG_OK;
                ng_clear_error();
                break;
            }
    }
    if (st != NG_OK) {
        ng_update_free(u);
        return st;
    }
    *out = u;
    return NG_OK;
}
