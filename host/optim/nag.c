/* nag.c: Nesterov's accelerated gradient as Sutskever, Martens, Dahl & Hinton (2013) use it (the
 * baseline of the K-FAC paper, section 13), natgrad/update.h:
 *   v_{t+1} = mu_t v_t - eps g(theta_t + mu_t v_t),   theta_{t+1} = theta_t + v_{t+1},   v_0 = 0,
 *   mu_t = min(1 - 2^(-1 - log2(floor(t / 250) + 1)), mu_max) = min(1 - 1 / (2 (floor(t/250) + 1)), mu_max)
 * (and, in the optional final phase t >= total_steps - final_steps, mu_t = min(mu_t, final_mu)).
 *
 * The parameter arena holds the look-ahead point phi_t = theta_t + mu_t v_t, where the gradient
 * is evaluated, so the model needs no second copy of its parameters and no evaluation at a
 * shifted point. The recursion in phi:
 *   phi_{t+1} = theta_{t+1} + mu_{t+1} v_{t+1} = theta_t + (1 + mu_{t+1}) v_{t+1}
 *             = phi_t - mu_t v_t + (1 + mu_{t+1}) v_{t+1}
 * and mu_t v_t = v_{t+1} + eps g(phi_t), so
 *   phi_{t+1} = phi_t + mu_{t+1} v_{t+1} - eps g(phi_t).
 * With phi_0 = theta_0 (v_0 = 0) this is Sutskever et al.'s iteration exactly (in real
 * arithmetic); theta_t = phi_t - mu_t v_t is recovered on demand (ng_update_theta). Update t:
 *   v   = mu_t v - eps d                 (d: the direction in the gradient arena, at phi_t)
 *   phi = phi + mu_{t+1} v - eps d
 *   theta_bar = xi theta_bar + (1 - xi) (phi - mu_{t+1} v)   [averaging: of theta, not phi]
 * One fused op (NG_OP_MOMENTUM: the three axpby of before, five with averaging, in one pass,
 * rounded as they were), nothing allocated after init. mu depends on t and the
 * configuration only, so a resumed run is bit-exact. */
#include "natgrad/update.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim/update_common.h"

typedef struct nag {
    ng_nag_config cfg;
    ng_tensor velocity; /* (n) v, laid out like the parameters */
    ng_upd_avg avg;
    double last_mu;     /* mu_t of the last update (log column only) */
} nag;

void ng_nag_config_default(ng_nag_config *c) {
    memset(c, 0, sizeof *c);
    c->lr = 0.01f;
    c->mu_max = 0.99f;
    c->final_mu = 0.9f;
}

ng_status ng_nag_config_check(const ng_nag_config *c) {
    NG_TRY(ng_upd_check_positive("--lr", c->lr));
    NG_TRY(ng_upd_check_unit("--mu-max", c->mu_max));
    NG_TRY(ng_upd_check_unit("--final-mu", c->final_mu));
    NG_TRY(ng_upd_check_nonneg("--weight-decay", c->weight_decay));
    NG_TRY(ng_upd_check_unit("--average", c->average));
    if (c->final_steps > 0 && c->final_steps > c->total_steps)
        return ng_error(NG_ERR_INVALID_ARG,
                        "--final-steps %llu: must be at most the run's total updates (--steps %llu)",
                        (unsigned long long)c->final_steps, (unsigned long long)c->total_steps);
    return NG_OK;
}

double ng_nag_momentum(const ng_nag_config *c, uint64_t t) {
    /* 1 - 2^(-1 - log2(k + 1)) = 1 - 1 / (2 (k + 1)), k = floor(t / 250): exact in double */
    const double k = (double)(t / 250u);
    double mu = 1.0 - 0.5 / (k + 1.0);
    if (mu > (double)c->mu_max) mu = (double)c->mu_max;
    if (c->final_steps > 0 && t >= c->total_steps - c->final_steps && mu > (double)c->final_mu)
        mu = (double)c->final_mu;
    return mu;
}

static double nag_lr(const ng_update *u, uint64_t t) {
    (void)t;
    return (double)((const nag *)u->impl)->cfg.lr;
}

static ng_status nag_penalize(ng_update *u, ng_model *m, uint64_t t) {
    (void)t;
    return ng_upd_weight_decay(u->be, m, ((const nag *)u->impl)->cfg.weight_decay);
}

static ng_status nag_step(ng_update *u, ng_model *m, uint64_t t) {
    nag *s = (nag *)u->impl;
    const float mu = (float)ng_nag_momentum(&s->cfg, t), mu1 = (float)ng_nag_momentum(&s->cfg, t + 1);
    const float eps = s->cfg.lr;
    if (t == 0) NG_TRY(ng_upd_avg_start(&s->avg, u->be, m)); /* theta_0 = phi_0 (v_0 = 0) */
    s->last_mu = (double)mu;
    /* v = mu_t v - eps d;  phi += mu_{t+1} v;  phi -= eps d;  theta_{t+1} = phi_{t+1} - mu_{t+1} v_{t+1}
     * enters the average: one fused op (the three or five axpby of before, rounded alike) */
    return ng_upd_momentum(&s->avg, u->be, m, s->velocity.data, -eps, mu, mu1, 1, -mu1);
}

/* theta_t = phi_t - mu_t v_t */
static ng_status nag_theta(ng_update *u, ng_model *m, uint64_t t, float *out) {
    const nag *s = (const nag *)u->impl;
    const size_t n = ng_model_size(m);
    const float mu = (float)ng_nag_momentum(&s->cfg, t);
    if (out != m->param_flat.data) NG_TRY(ng_copy(u->be, out, m->param_flat.data, n * sizeof(float)));
    return ng_axpby(u->be, n, -mu, s->velocity.data, 1.0f, out);
}

/* mu_t and mu_{t+1} change every 250 updates (and at the final phase); eps is constant. nag_step
 * also sets last_mu on the host, which only the logged steps read (they run eagerly). */
static int nag_graph_key(const ng_update *u, uint64_t t, double *key, int max) {
    const nag *s = (const nag *)u->impl;
    if (max < 2) return -1;
    key[0] = (double)(float)ng_nag_momentum(&s->cfg, t);
    key[1] = (double)(float)ng_nag_momentum(&s->cfg, t + 1);
    return 2;
}

static const char *const nag_columns[] = {"momentum", "update_norm", NULL};

static ng_status nag_log_values(ng_update *u, ng_model *m, double *values) {
    const nag *s = (const nag *)u->impl;
    float r = 0.0f;
    NG_TRY(ng_nrm2(u->be, ng_model_size(m), s->velocity.data, &r));
    values[0] = s->last_mu;
    values[1] = r;
    return NG_OK;
}

static ng_status nag_save(ng_update *u, ng_ckpt *c) {
    const nag *s = (const nag *)u->impl;
    NG_TRY(ng_ckpt_set_f32(c, "nag.lr", s->cfg.lr));
    NG_TRY(ng_ckpt_set_f32(c, "nag.mu_max", s->cfg.mu_max));
    NG_TRY(ng_ckpt_set_u64(c, "nag.final_steps", s->cfg.final_steps));
    if (s->cfg.final_steps > 0) {
        NG_TRY(ng_ckpt_set_u64(c, "nag.total_steps", s->cfg.total_steps));
        NG_TRY(ng_ckpt_set_f32(c, "nag.final_mu", s->cfg.final_mu));
    }
    NG_TRY(ng_ckpt_set_f32(c, "nag.weight_decay", s->cfg.weight_decay));
    return ng_upd_avg_save(&s->avg, c, "nag");
}

/* Every field must be this run's: the velocity and the look-ahead point in the parameter arena
 * were built with them (phi_t = theta_t + mu_t v_t needs the same mu_t to be undone). */
static ng_status nag_load(ng_update *u, const ng_ckpt *c, int apply) {
    const nag *s = (const nag *)u->impl;
    (void)apply;
    NG_TRY(ng_upd_expect_f32(c, "nag.lr", 1e-30, 1e30, s->cfg.lr));
    NG_TRY(ng_upd_expect_f32(c, "nag.mu_max", 0.0, 1.0 - 0x1p-24, s->cfg.mu_max));
    NG_TRY(ng_upd_expect_u64(c, "nag.final_steps", s->cfg.final_steps));
    if (s->cfg.final_steps > 0) {
        NG_TRY(ng_upd_expect_u64(c, "nag.total_steps", s->cfg.total_steps));
        NG_TRY(ng_upd_expect_f32(c, "nag.final_mu", 0.0, 1.0 - 0x1p-24, s->cfg.final_mu));
    }
    NG_TRY(ng_upd_expect_f32(c, "nag.weight_decay", 0.0, 1e30, s->cfg.weight_decay));
    return ng_upd_avg_load(&s->avg, c, "nag");
}

static void nag_destroy(ng_update *u) { free(u->impl); }

static const struct ng_update_i nag_iface = {
    .name = "nag",
    .penalize = nag_penalize,
    .step = nag_step,
    .lr = nag_lr,
    .columns = nag_columns,
    .log_values = nag_log_values,
    .save = nag_save,
    .load = nag_load,
    .destroy = nag_destroy,
    .theta = nag_theta,
    .graph_key = nag_graph_key,
};

ng_status ng_update_nag_init(ng_backend *be, ng_model *m, const ng_nag_config *cfg, ng_update **out) {
    ng_update *u;
    nag *s;
    ng_status st;
    int dims[1];
    *out = NULL;
    NG_TRY(ng_nag_config_check(cfg));
    u = (ng_update *)calloc(1, sizeof *u);
    s = (nag *)calloc(1, sizeof *s);
    if (!u || !s) {
        free(u);
        free(s);
        return ng_error(NG_ERR_OOM, "nag: out of host memory");
    }
    u->iface = &nag_iface;
    u->be = be;
    u->impl = s;
    s->cfg = *cfg;
    s->last_mu = ng_nag_momentum(cfg, 0);
    ng_arena_begin(&u->state, be, "nag");
    dims[0] = (int)ng_model_size(m);
    st = ng_arena_reserve_nd(&u->state, "velocity", NG_F32, 1, dims, &s->velocity);
    if (st == NG_OK) st = ng_upd_avg_reserve(&s->avg, &u->state, m, cfg->average);
    if (st == NG_OK) st = ng_arena_commit(&u->state);
    if (st == NG_OK) st = ng_upd_avg_start(&s->avg, be, m);
    if (st != NG_OK) {
        ng_update_free(u);
        return st;
    }
    *out = u;
    return NG_OK;
}
