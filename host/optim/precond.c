/* precond.c: the preconditioner wrappers (natgrad/precond.h) and the two simplest ones: the
 * identity and RBM centering. Centering (FANG section 5.1, eq. 17-20), on the gradient of the
 * negative log-likelihood g = (gW, ga, gb), shapes W (nh, nv):
 *   offsets   mu_v <- (1 - nu) mu_v + nu <v>_data,  mu_h <- (1 - nu) mu_h + nu <h>_data  (observe)
 *   direction gW~ = gW - gb mu_v^T - mu_h ga^T (the mu mu^T terms cancel between data and model),
 *             ga' = ga - gW~^T mu_h,  gb' = gb - gW~ mu_v  (apply, in place)
 * which is SGD on the centred parameters a~ = a + W^T mu_h, b~ = b + W mu_v mapped back to
 * (W, a, b). Must not: allocate after init, or read the RBM except through ng_model_param and
 * ng_model_statistic. */
#include "natgrad/precond.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

ng_status ng_precond_observe(ng_precond *p, ng_model *m, uint64_t t) {
    return p->iface->observe ? p->iface->observe(p, m, t) : NG_OK;
}

ng_status ng_precond_apply(ng_precond *p, ng_model *m, uint64_t t) {
    return p->iface->apply ? p->iface->apply(p, m, t) : NG_OK;
}

ng_status ng_precond_save(ng_precond *p, ng_ckpt *c) {
    char prefix[80];
    NG_TRY(ng_ckpt_set_str(c, "precond.kind", p->iface->name));
    if (p->iface->save) NG_TRY(p->iface->save(p, c));
    snprintf(prefix, sizeof prefix, "%s.", p->iface->name);
    return ng_ckpt_add_arena(c, prefix, &p->state);
}

ng_status ng_precond_load(ng_precond *p, const ng_ckpt *c, int apply) {
    const char *kind = NULL;
    char prefix[80];
    NG_TRY(ng_ckpt_get_str(c, "precond.kind", &kind));
    if (strcmp(kind, p->iface->name) != 0)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: field precond.kind is '%s', this run uses '%s'",
                        ng_ckpt_path(c), kind, p->iface->name);
    snprintf(prefix, sizeof prefix, "%s.", p->iface->name);
    NG_TRY(ng_ckpt_check_arena(c, prefix, &p->state));
    if (p->iface->load) NG_TRY(p->iface->load(p, c, 0));
    if (!apply) return NG_OK;
    if (p->iface->load) NG_TRY(p->iface->load(p, c, 1));
    return ng_ckpt_load_arena(c, prefix, &p->state);
}

void ng_precond_free(ng_precond *p) {
    if (!p) return;
    if (p->iface->destroy) p->iface->destroy(p);
    ng_arena_free(&p->state);
    free(p);
}

static ng_status precond_new(ng_backend *be, const struct ng_precond_i *iface, ng_precond **out) {
    ng_precond *p = (ng_precond *)calloc(1, sizeof *p);
    *out = NULL;
    if (!p) return ng_error(NG_ERR_OOM, "%s: out of host memory", iface->name);
    p->iface = iface;
    p->be = be;
    ng_arena_begin(&p->state, be, iface->name);
    *out = p;
    return NG_OK;
}

/* ---- identity ------------------------------------------------------------------------------ */

/* CUDA graphs: no host state at all (identity); centering's rate is fixed and its offsets are
 * device moving averages, so every update t >= 1 replays one capture. */
static int no_graph_key(const ng_precond *p, const ng_model *m, uint64_t t, int cols, double *key, int max) {
    (void)p;
    (void)m;
    (void)t;
    (void)cols;
    (void)key;
    (void)max;
    return 0;
}

static const struct ng_precond_i identity_iface = {
    .name = "identity",
    .graph_key = no_graph_key,
};

ng_status ng_precond_identity_init(ng_backend *be, ng_precond **out) {
    return precond_new(be, &identity_iface, out);
}

/* ---- centering ----------------------------------------------------------------------------- */

typedef struct centering {
    float rate;       /* nu */
    int nv, nh;
    ng_tensor mu_v;   /* (nv, 1) offsets (state) */
    ng_tensor mu_h;   /* (nh, 1) */
    ng_tensor W, gW, ga, gb; /* the model's views */
} centering;

static ng_status centering_observe(ng_precond *p, ng_model *m, uint64_t t) {
    centering *c = (centering *)p->impl;
    float nu = c->rate;
    ng_tensor mv, mh;
    (void)t;
    NG_TRY(ng_model_statistic(m, "v_data_mean", &mv));
    NG_TRY(ng_model_statistic(m, "h_data_mean", &mh));
    NG_TRY(ng_axpby(p->be, (size_t)c->nv, nu, mv.data, 1.0f - nu, c->mu_v.data));
    return ng_axpby(p->be, (size_t)c->nh, nu, mh.data, 1.0f - nu, c->mu_h.data);
}

static ng_status centering_apply(ng_precond *p, ng_model *m, uint64_t t) {
    centering *c = (centering *)p->impl;
    ng_backend *be = p->be;
    int nv = c->nv, nh = c->nh;
    (void)m;
    (void)t;
    /* FANG eq. 17-20, see the top of this file */
    NG_TRY(ng_gemm(be, 0, 1, nh, nv, 1, -1.0f, c->gb.data, nh, c->mu_v.data, nv, 1.0f, c->gW.data, c->gW.ld));
    NG_TRY(ng_gemm(be, 0, 1, nh, nv, 1, -1.0f, c->mu_h.data, nh, c->ga.data, nv, 1.0f, c->gW.data, c->gW.ld));
    NG_TRY(ng_gemv(be, 1, nh, nv, -1.0f, c->gW.data, c->gW.ld, c->mu_h.data, 1.0f, c->ga.data));
    return ng_gemv(be, 0, nh, nv, -1.0f, c->gW.data, c->gW.ld, c->mu_v.data, 1.0f, c->gb.data);
}

static ng_status centering_save(ng_precond *p, ng_ckpt *ck) {
    return ng_ckpt_set_f32(ck, "centering.rate", ((centering *)p->impl)->rate);
}

static ng_status centering_load(ng_precond *p, const ng_ckpt *ck, int apply) {
    float rate;
    (void)apply;
    NG_TRY(ng_ckpt_get_float(ck, "centering.rate", 0.0, 1.0, &rate));
    if (rate != ((centering *)p->impl)->rate)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: field centering.rate is %g, this run uses %g",
                        ng_ckpt_path(ck), (double)rate, (double)((centering *)p->impl)->rate);
    return NG_OK;
}

static void centering_destroy(ng_precond *p) { free(p->impl); }

static const struct ng_precond_i centering_iface = {
    .name = "centering",
    .observe = centering_observe,
    .apply = centering_apply,
    .save = centering_save,
    .load = centering_load,
    .destroy = centering_destroy,
    .data_parallel = 1, /* its statistics are the model's global data means (an RBM all-reduces them) */
    .graph_key = no_graph_key,
};

ng_status ng_precond_centering_init(ng_backend *be, ng_model *m, float rate, ng_precond **out) {
    ng_precond *p;
    centering *c;
    ng_tensor mean;
    ng_status s;
    *out = NULL;
    if (!(rate > 0.0f && rate <= 1.0f))
        return ng_error(NG_ERR_INVALID_ARG, "--center-rate %g: must be in (0, 1]", (double)rate);
    NG_TRY(precond_new(be, &centering_iface, &p));
    c = (centering *)calloc(1, sizeof *c);
    if (!c) {
        ng_precond_free(p);
        return ng_error(NG_ERR_OOM, "centering: out of host memory");
    }
    p->impl = c;
    c->rate = rate;
    s = ng_model_param(m, "W", &c->W, &c->gW);
    if (s == NG_OK) s = ng_model_param(m, "a", NULL, &c->ga);
    if (s == NG_OK) s = ng_model_param(m, "b", NULL, &c->gb);
    if (s == NG_OK) s = ng_model_statistic(m, "v_train_mean", &mean);
    if (s == NG_OK) {
        c->nh = c->W.rows;
        c->nv = c->W.cols;
        ng_arena_reserve(&p->state, "mu_v", c->nv, 1, &c->mu_v);
        ng_arena_reserve(&p->state, "mu_h", c->nh, 1, &c->mu_h);
        s = ng_arena_commit(&p->state);
    }
    /* offsets start at the training-set mean (visible) and 0.5 (hidden) */
    if (s == NG_OK) s = ng_copy(be, c->mu_v.data, mean.data, (size_t)c->nv * sizeof(float));
    if (s == NG_OK) s = ng_fill(be, (size_t)c->nh, 0.5f, c->mu_h.data);
    if (s != NG_OK) {
        ng_precond_free(p);
        return s;
    }
    *out = p;
    return NG_OK;
}
