/* model.c: what every model shares (natgrad/model.h): the packed parameter and gradient arenas,
 * lookups by name, the checked calls of the interface's slots, and checkpoint entries of arenas.
 * Must not: know any concrete model (no rbm/net code here). */
#include "natgrad/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ng_model_begin(ng_model *m, const struct ng_model_i *iface, ng_backend *be) {
    memset(m, 0, sizeof *m);
    m->iface = iface;
    m->be = be;
    ng_arena_begin_packed(&m->params, be, "parameters");
    ng_arena_begin_packed(&m->grads, be, "gradients");
}

ng_status ng_model_add_param(ng_model *m, const char *name, int ndim, const int *dims, int decay,
                             ng_tensor *value, ng_tensor *grad) {
    unsigned char *d;
    NG_TRY(ng_arena_reserve_nd(&m->params, name, NG_F32, ndim, dims, value));
    NG_TRY(ng_arena_reserve_nd(&m->grads, name, NG_F32, ndim, dims, grad));
    d = (unsigned char *)realloc(m->decay, (size_t)m->params.count);
    if (!d) return ng_error(NG_ERR_OOM, "model %s: out of host memory", m->iface->kind);
    d[m->params.count - 1] = (unsigned char)(decay != 0);
    m->decay = d;
    return NG_OK;
}

ng_status ng_model_commit(ng_model *m) {
    NG_TRY(ng_arena_commit(&m->params));
    NG_TRY(ng_arena_commit(&m->grads));
    m->param_flat = ng_arena_flat(&m->params);
    m->grad_flat = ng_arena_flat(&m->grads);
    return NG_OK;
}

void ng_model_release(ng_model *m) {
    if (!m) return;
    if (m->iface && m->iface->destroy) m->iface->destroy(m);
    ng_arena_free(&m->params);
    ng_arena_free(&m->grads);
    free(m->decay);
    m->decay = NULL;
}

ng_status ng_model_param(const ng_model *m, const char *name, ng_tensor *value, ng_tensor *grad) {
    const ng_tensor *v = ng_arena_find(&m->params, name), *g = ng_arena_find(&m->grads, name);
    if (!v || !g)
        return ng_error(NG_ERR_INVALID_ARG, "model %s has no parameter named %s", m->iface->kind, name);
    if (value) *value = *v;
    if (grad) *grad = *g;
    return NG_OK;
}

ng_status ng_model_gradient(ng_model *m, const ng_tensor *x, const ng_tensor *y) {
    if (!m->iface->gradient)
        return ng_error(NG_ERR_UNSUPPORTED, "model %s: no gradient", m->iface->kind);
    return m->iface->gradient(m, x, y);
}

ng_status ng_model_statistic(ng_model *m, const char *name, ng_tensor *out) {
    if (!m->iface->statistic)
        return ng_error(NG_ERR_UNSUPPORTED, "model %s offers no statistics (asked for %s)", m->iface->kind, name);
    return m->iface->statistic(m, name, out);
}

ng_status ng_model_gnvp(ng_model *m, const ng_tensor *v, ng_tensor *out) {
    if (!m->iface->gnvp)
        return ng_error(NG_ERR_UNSUPPORTED, "model %s has no Gauss-Newton-vector product", m->iface->kind);
    return m->iface->gnvp(m, v, out);
}

ng_status ng_model_fvp(ng_model *m, const ng_tensor *v, ng_tensor *out) {
    if (!m->iface->fvp)
        return ng_error(NG_ERR_UNSUPPORTED, "model %s has no Fisher-vector product", m->iface->kind);
    return m->iface->fvp(m, v, out);
}

int ng_model_seg_state_get(void *user, uint64_t *st, int cap) {
    const ng_model *m = *(ng_model *const *)user;
    return m->iface->graph_state_get ? m->iface->graph_state_get(m, st, cap) : -1;
}

void ng_model_seg_state_set(void *user, const uint64_t *st, int n) {
    ng_model *m = *(ng_model **)user;
    if (m->iface->graph_state_set) m->iface->graph_state_set(m, st, n);
}

/* ---- checkpoint entries of arenas -------------------------------------------------------- */

static void dims_of(const ng_tensor *t, uint64_t *dims) {
    int i;
    for (i = 0; i < t->ndim; i++) dims[i] = (uint64_t)t->dims[i];
}

ng_status ng_ckpt_add_arena(ng_ckpt *c, const char *prefix, const ng_arena *a) {
    int i;
    for (i = 0; i < a->count; i++) {
        const ng_tensor *t = a->entries[i].view;
        char name[256];
        uint64_t dims[NG_MAX_DIMS];
        size_t bytes = ng_tensor_count(t) * ng_dtype_size(t->dtype);
        void *host;
        ng_status s;
        if (snprintf(name, sizeof name, "%s%s", prefix, a->entries[i].name) >= (int)sizeof name)
            return ng_error(NG_ERR_INVALID_ARG, "checkpoint: tensor name %s%s too long", prefix,
                            a->entries[i].name);
        dims_of(t, dims);
        /* a host copy now: the container owns it, so nothing here has to outlive this call */
        host = malloc(bytes ? bytes : 1);
        if (!host) return ng_error(NG_ERR_OOM, "checkpoint: out of host memory for %s (%zu bytes)", name, bytes);
        s = ng_tensor_get(a->be, t, host);
        if (s == NG_OK) s = ng_ckpt_add_tensor(c, name, t->dtype, t->ndim, dims, host);
        free(host);
        NG_TRY(s);
    }
    return NG_OK;
}

/* Every tensor of the arena as "<prefix><name>" with its dtype and shape (data[i] receives the
 * host payload when data is non-NULL). */
static ng_status check_arena(const ng_ckpt *c, const char *prefix, const ng_arena *a, const void **data) {
    int i;
    for (i = 0; i < a->count; i++) {
        const ng_tensor *t = a->entries[i].view;
        char name[256];
        uint64_t dims[NG_MAX_DIMS];
        const void *d = NULL;
        snprintf(name, sizeof name, "%s%s", prefix, a->entries[i].name);
        dims_of(t, dims);
        NG_TRY(ng_ckpt_expect(c, name, t->dtype, t->ndim, dims, &d));
        if (!d)
            return ng_error(NG_ERR_INVALID_ARG, "checkpoint %s: tensor %s was read without its data",
                            ng_ckpt_path(c), name);
        if (data) data[i] = d;
    }
    return NG_OK;
}

ng_status ng_ckpt_check_arena(const ng_ckpt *c, const char *prefix, const ng_arena *a) {
    return check_arena(c, prefix, a, NULL);
}

ng_status ng_ckpt_load_arena(const ng_ckpt *c, const char *prefix, ng_arena *a) {
    int i;
    const void **data = (const void **)calloc((size_t)(a->count ? a->count : 1), sizeof *data);
    ng_status s;
    if (!data) return ng_error(NG_ERR_OOM, "checkpoint: out of host memory");
    s = check_arena(c, prefix, a, data);
    for (i = 0; s == NG_OK && i < a->count; i++) s = ng_tensor_set(a->be, a->entries[i].view, data[i]);
    free(data);
    return s;
}

ng_status ng_model_save(ng_model *m, ng_ckpt *c) {
    NG_TRY(ng_ckpt_set_str(c, "model.kind", m->iface->kind));
    if (m->iface->save) NG_TRY(m->iface->save(m, c));
    return ng_ckpt_add_arena(c, "model.", &m->params);
}

ng_status ng_model_load(ng_model *m, const ng_ckpt *c, int apply) {
    const char *kind = NULL;
    NG_TRY(ng_ckpt_get_str(c, "model.kind", &kind));
    if (strcmp(kind, m->iface->kind) != 0)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: field model.kind is '%s', this model is '%s'",
                        ng_ckpt_path(c), kind, m->iface->kind);
    NG_TRY(ng_ckpt_check_arena(c, "model.", &m->params));
    if (m->iface->load) NG_TRY(m->iface->load(m, c, 0));
    if (!apply) return NG_OK;
    if (m->iface->load) NG_TRY(m->iface->load(m, c, 1));
    return ng_ckpt_load_arena(c, "model.", &m->params);
}
