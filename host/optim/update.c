/* update.c: what every update rule shares (host/optim/update_common.h) and the rule-independent
 * accessors of natgrad/update.h (ng_update_theta, ng_update_average). The other wrappers
 * (penalize, step, lr, save, load, free) live in sgd.c. */
#include "optim/update_common.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

ng_status ng_upd_weight_decay(ng_backend *be, ng_model *m, float wd) {
    int i;
    if (wd == 0.0f) return NG_OK;
    /* L2 penalty on the weights: it enters the gradient before the preconditioner, so every rule
     * (centred or natural) follows the penalised objective. The decayed tensors' segments of the
     * flat parameter and gradient vectors (same offsets: the two arenas share the layout) go to one
     * NG_OP_AXPBY_SEGMENTS per NG_SEGMENTS_MAX tensors (one launch instead of one per tensor; the
     * same axpby body, so the same bits). */
    ng_op_args o;
    memset(&o, 0, sizeof o);
    o.op = NG_OP_AXPBY_SEGMENTS;
    o.axpby_segments.alpha = wd;
    o.axpby_segments.x = m->param_flat.data;
    o.axpby_segments.beta = 1.0f;
    o.axpby_segments.y = m->grad_flat.data;
    for (i = 0; i < m->params.count; i++) {
        const ng_tensor *w = ng_arena_view(&m->params, i), *g = ng_arena_view(&m->grads, i);
        const size_t off = (size_t)(w->data - m->param_flat.data);
        if (!m->decay[i]) continue;
        if ((size_t)(g->data - m->grad_flat.data) != off)
            return ng_error(NG_ERR_INVALID_ARG, "weight decay: parameter %d of the model lies at element %zu of its "
                            "arena, its gradient at %zu (the arenas must share one layout)", i, off,
                            (size_t)(g->data - m->grad_flat.data));
        o.axpby_segments.off[o.axpby_segments.count] = off;
        o.axpby_segments.len[o.axpby_segments.count++] = ng_tensor_count(w);
        if (o.axpby_segments.count == NG_SEGMENTS_MAX) {
            NG_TRY(ng_run_op(be, &o));
            o.axpby_segments.count = 0;
        }
    }
    return o.axpby_segments.count ? ng_run_op(be, &o) : NG_OK;
}

ng_status ng_upd_check_positive(const char *option, float v) {
    if (!(v > 0.0f) || !isfinite(v))
        return ng_error(NG_ERR_INVALID_ARG, "%s %g: must be a positive finite number", option, (double)v);
    return NG_OK;
}

ng_status ng_upd_check_nonneg(const char *option, float v) {
    if (!(v >= 0.0f) || !isfinite(v))
        return ng_error(NG_ERR_INVALID_ARG, "%s %g: must be a finite number >= 0", option, (double)v);
    return NG_OK;
}

ng_status ng_upd_check_unit(const char *option, float v) {
    if (!(v >= 0.0f && v < 1.0f))
        return ng_error(NG_ERR_INVALID_ARG, "%s %g: must be in [0, 1)", option, (double)v);
    return NG_OK;
}

/* ---- iterate averaging ----------------------------------------------------------------------- */

ng_status ng_upd_avg_reserve(ng_upd_avg *a, ng_arena *state, const ng_model *m, float xi) {
    int dims[1];
    memset(a, 0, sizeof *a);
    a->xi = xi;
    if (xi <= 0.0f) return NG_OK;
    dims[0] = (int)ng_model_size(m);
    return ng_arena_reserve_nd(state, "average", NG_F32, 1, dims, &a->avg);
}

ng_status ng_upd_avg_start(ng_upd_avg *a, ng_backend *be, const ng_model *m) {
    if (a->xi <= 0.0f) return NG_OK;
    return ng_copy(be, a->avg.data, m->param_flat.data, ng_model_size(m) * sizeof(float));
}

ng_status ng_upd_avg_step(ng_upd_avg *a, ng_backend *be, const ng_model *m, const float *x,
                          float coef) {
    const size_t n = ng_model_size(m);
    const float w = (float)(1.0 - (double)a->xi);
    if (a->xi <= 0.0f) return NG_OK;
    NG_TRY(ng_axpby(be, n, w, m->param_flat.data, a->xi, a->avg.data));
    if (x && coef != 0.0f)
        NG_TRY(ng_axpby(be, n, (float)((1.0 - (double)a->xi) * (double)coef), x, 1.0f, a->avg.data));
    return NG_OK;
}

ng_status ng_upd_momentum(ng_upd_avg *avg, ng_backend *be, const ng_model *m, float *v, float a, float mu, float c,
                          int nesterov, float coef) {
    ng_op_args o;
    memset(&o, 0, sizeof o);
    o.op = NG_OP_MOMENTUM;
    o.momentum.n = ng_model_size(m);
    o.momentum.d = m->grad_flat.data;
    o.momentum.v = v;
    o.momentum.p = m->param_flat.data;
    o.momentum.a = a;
    o.momentum.mu = mu;
    o.momentum.c = c;
    o.momentum.nesterov = nesterov;
    if (avg->xi > 0.0f) { /* the two axpby of ng_upd_avg_step, with the same coefficients */
        o.momentum.bar = avg->avg.data;
        o.momentum.xi = avg->xi;
        o.momentum.w = (float)(1.0 - (double)avg->xi);
        o.momentum.wc = nesterov && coef != 0.0f ? (float)((1.0 - (double)avg->xi) * (double)coef) : 0.0f;
    }
    return ng_run_op(be, &o);
}

ng_status ng_upd_avg_save(const ng_upd_avg *a, ng_ckpt *c, const char *rule) {
    char key[96];
    if (a->xi <= 0.0f) return NG_OK;
    snprintf(key, sizeof key, "%s.average_decay", rule);
    return ng_ckpt_set_f32(c, key, a->xi);
}

ng_status ng_upd_avg_load(const ng_upd_avg *a, const ng_ckpt *c, const char *rule) {
    char key[96];
    snprintf(key, sizeof key, "%s.average_decay", rule);
    if (!ng_ckpt_has(c, key)) {
        if (a->xi <= 0.0f) return NG_OK;
        return ng_error(NG_ERR_FORMAT,
                        "checkpoint %s: field %s is absent (written without iterate averaging), this "
                        "run averages with %g",
                        ng_ckpt_path(c), key, (double)a->xi);
    }
    return ng_upd_expect_f32(c, key, 0.0, 1.0 - 0x1p-24, a->xi);
}

/* ---- resume checks --------------------------------------------------------------------------- */

ng_status ng_upd_expect_f32(const ng_ckpt *c, const char *key, double lo, double hi, float mine) {
    float v;
    NG_TRY(ng_ckpt_get_float(c, key, lo, hi, &v));
    if (v != mine)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: field %s is %.9g, this run uses %.9g",
                        ng_ckpt_path(c), key, (double)v, (double)mine);
    return NG_OK;
}

ng_status ng_upd_expect_u64(const ng_ckpt *c, const char *key, uint64_t mine) {
    uint64_t v;
    NG_TRY(ng_ckpt_get_u64(c, key, &v));
    if (v != mine)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: field %s is %llu, this run uses %llu",
                        ng_ckpt_path(c), key, (unsigned long long)v, (unsigned long long)mine);
    return NG_OK;
}

/* ---- rule-independent accessors -------------------------------------------------------------- */

ng_status ng_update_theta(ng_update *u, ng_model *m, uint64_t t, ng_tensor *out) {
    const size_t n = ng_model_size(m);
    if (!out || !out->data || out->dtype != NG_F32 || ng_tensor_count(out) != n || out->ld != out->rows)
        return ng_error(NG_ERR_INVALID_ARG,
                        "update %s: theta needs a contiguous float32 tensor of %zu elements",
                        u->iface->name, n);
    if (u->iface->theta) return u->iface->theta(u, m, t, out->data);
    if (out->data == m->param_flat.data) return NG_OK;
    return ng_copy(u->be, out->data, m->param_flat.data, n * sizeof(float));
}

ng_status ng_update_average(ng_update *u, ng_tensor *out) {
    const ng_tensor *a = ng_arena_find(&u->state, "average");
    if (!a)
        return ng_error(NG_ERR_UNSUPPORTED,
                        "update %s: iterate averaging is off (set average = xi in (0, 1), e.g. 0.99)",
                        u->iface->name);
    *out = *a;
    return NG_OK;
}
