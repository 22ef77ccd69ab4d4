/* prong.c: PRONG (natgrad/prong.h; Desjardins et al. 2015, Algorithm 1) as a preconditioner: every T
 * updates, N_s cases from its own batch stream, ng_net_whiten_refresh (lines 6-11), the gradient of
 * the current batch recomputed in the new parameters (and the update rule's weight decay added
 * again). apply is the identity: the SGD update of line 13 is taken in the whitened parameters.
 * Several ranks (p->dist): every rank draws the same N_s cases and feeds its share to the merged
 * statistics (ng_net_whiten_refresh_comm); the recomputed gradient is all-reduced again.
 * Must not: print, allocate after init, read the network except through natgrad/net.h. */
#include "natgrad/prong.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "natgrad/comm.h"
#include "natgrad/data.h"
#include "natgrad/net.h"

typedef struct prong {
    ng_prong_config cfg;
    ng_model *net;
    ng_update *upd;
    ng_batches stream;
    int have_stream;
    uint64_t refreshes;
    double times[2]; /* seconds: statistics, eigendecompositions + projections */
} prong;

static prong *P(ng_precond *p) { return (prong *)p->impl; }

void ng_prong_config_default(ng_prong_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->eps = 0.1f;
    cfg->T = 100;
    cfg->ns = 1000;
    cfg->whitened_init = 1;
    cfg->seed = 1;
}

ng_status ng_prong_config_check(const ng_prong_config *cfg) {
    if (!(cfg->eps > 0.0f) || !isfinite(cfg->eps)) return ng_error(NG_ERR_INVALID_ARG, "prong: --prong-eps %g must be positive and finite", (double)cfg->eps);
    if (cfg->T < 1) return ng_error(NG_ERR_INVALID_ARG, "prong: --prong-T %d must be >= 1", cfg->T);
    if (cfg->ns < 2) return ng_error(NG_ERR_INVALID_ARG, "prong: --prong-ns %d must be >= 2 (samples for a covariance)", cfg->ns);
    if (cfg->whitened_init != 0 && cfg->whitened_init != 1)
        return ng_error(NG_ERR_INVALID_ARG, "prong: --prong-init-whiten %d (0 or 1)", cfg->whitened_init);
    return NG_OK;
}

static int dist_on(const ng_precond *p) { return p->dist.comm && p->dist.comm->world > 1; }

static ng_status prong_observe(ng_precond *p, ng_model *m, uint64_t t) {
    prong *k = P(p);
    ng_tensor xs, x, y;
    ng_comm *comm = dist_on(p) ? p->dist.comm : NULL;
    if (t % (uint64_t)k->cfg.T != 0) return NG_OK;
    NG_TRY(ng_net_current_batch(m, &x, &y));
    NG_TRY(ng_batches_next(&k->stream, &xs));
    if (comm) {
        /* every rank draws the same N_s cases and takes its share of them: columns
         * [r N_s / N, (r + 1) N_s / N); the statistics are merged across the ranks */
        const int r = comm->rank, W = comm->world, ns = xs.cols;
        const int lo = (int)((long long)r * ns / W), hi = (int)((long long)(r + 1) * ns / W);
        if (ns < W)
            return ng_error(NG_ERR_INVALID_ARG, "prong: --prong-ns %d is smaller than the %d ranks (each rank needs a sample)", ns, W);
        xs = ng_tensor_cols(&xs, lo, hi - lo);
    }
    NG_TRY(ng_net_whiten_refresh_comm(m, &xs, k->cfg.eps, !(t == 0 && k->cfg.whitened_init), k->times, comm));
    k->refreshes++;
    /* the gradient of this update's batch in the new coordinates (Algorithm 1 line 13); on several
     * ranks the shard's mean weighted by its share of the global batch and summed, as the trainer
     * does with the first gradient */
    NG_TRY(ng_model_gradient(m, &x, y.ptr ? &y : NULL));
    if (comm) {
        NG_TRY(ng_scal(m->be, ng_model_size(m), (float)((double)(p->dist.hi - p->dist.lo) / (double)p->dist.batch), m->grad_flat.data));
        NG_TRY(ng_comm_allreduce(comm, m->be, NG_F32, m->grad_flat.data, ng_model_size(m), "the gradient (after the PRONG reparametrisation)"));
    }
    if (k->upd) NG_TRY(ng_update_penalize(k->upd, m, t));
    return NG_OK;
}

/* CUDA graphs: between reparametrisations observe returns at once and apply is the identity, so the
 * step is the whitened network's gradient + the update rule (captured). A reparametrisation reads the
 * host (eigendecompositions, a host sample stream) and runs eagerly; it rewrites U, c (K in the
 * canonical form) and V, d in the network's arenas in place, where the graphs read them. */
static int prong_graph_key(const ng_precond *p, const ng_model *m, uint64_t t, int cols, double *key, int max) {
    const prong *k = (const prong *)p->impl;
    (void)m, (void)cols, (void)key, (void)max;
    return t % (uint64_t)k->cfg.T == 0 ? -1 : 0;
}

static const char *const prong_columns[] = {"prong_refreshes", "prong_stats_s", "prong_reparam_s", NULL};

static ng_status prong_log_values(ng_precond *p, double *values) {
    prong *k = P(p);
    values[0] = (double)k->refreshes;
    values[1] = k->times[0];
    values[2] = k->times[1];
    return NG_OK;
}

static ng_status prong_save(ng_precond *p, ng_ckpt *c) {
    prong *k = P(p);
    NG_TRY(ng_ckpt_set_f32(c, "prong.eps", k->cfg.eps));
    NG_TRY(ng_ckpt_set_i64(c, "prong.T", k->cfg.T));
    NG_TRY(ng_ckpt_set_i64(c, "prong.ns", k->cfg.ns));
    NG_TRY(ng_ckpt_set_i64(c, "prong.whitened_init", k->cfg.whitened_init));
    NG_TRY(ng_ckpt_set_u64(c, "prong.seed", k->cfg.seed));
    NG_TRY(ng_ckpt_set_u64(c, "prong.refreshes", k->refreshes));
    NG_TRY(ng_ckpt_set_i64(c, "prong.sample_epoch", k->stream.epoch));
    return ng_ckpt_set_i64(c, "prong.sample_pos", k->stream.pos);
}

static ng_status prong_load(ng_precond *p, const ng_ckpt *c, int apply) {
    prong *k = P(p);
    float eps;
    int64_t T, ns, wi, ep, pos;
    uint64_t seed, refr;
    const char *path = ng_ckpt_path(c);
    NG_TRY(ng_ckpt_get_float(c, "prong.eps", 1e-30, 1e30, &eps));
    NG_TRY(ng_ckpt_get_int(c, "prong.T", 1, 2147483647, &T));
    NG_TRY(ng_ckpt_get_int(c, "prong.ns", 2, 2147483647, &ns));
    NG_TRY(ng_ckpt_get_int(c, "prong.whitened_init", 0, 1, &wi));
    NG_TRY(ng_ckpt_get_u64(c, "prong.seed", &seed));
    if (eps != k->cfg.eps || (int)T != k->cfg.T || (int)ns != k->cfg.ns || (int)wi != k->cfg.whitened_init || seed != k->cfg.seed)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: its PRONG settings (eps %g, T %lld, N_s %lld, whitened init %lld) differ from this run's "
                        "(eps %g, T %d, N_s %d, whitened init %d): resume without changing --prong-* options", path, (double)eps, (long long)T,
                        (long long)ns, (long long)wi, (double)k->cfg.eps, k->cfg.T, k->cfg.ns, k->cfg.whitened_init);
    NG_TRY(ng_ckpt_get_u64(c, "prong.refreshes", &refr));
    NG_TRY(ng_ckpt_get_int(c, "prong.sample_epoch", 0, 1 << 30, &ep));
    NG_TRY(ng_ckpt_get_int(c, "prong.sample_pos", 0, k->stream.n, &pos));
    if (!apply) return NG_OK;
    k->refreshes = refr;
    return ng_batches_seek(&k->stream, (int)ep, (int)pos);
}

static void prong_destroy(ng_precond *p) {
    prong *k = P(p);
    if (!k) return;
    if (k->have_stream) ng_batches_free(&k->stream);
    free(k);
}

static const struct ng_precond_i prong_iface = {
    .name = "prong",
    .observe = prong_observe,
    .columns = prong_columns,
    .log_values = prong_log_values,
    .save = prong_save,
    .load = prong_load,
    .destroy = prong_destroy,
    .data_parallel = 1,
    .graph_key = prong_graph_key,
};

ng_status ng_precond_prong_init(ng_backend *be, ng_model *net, const ng_prong_config *cfg, const float *x_host, int pool_n,
                                ng_update *upd, ng_precond **out) {
    ng_precond *p;
    prong *k;
    ng_status s;
    *out = NULL;
    NG_TRY(ng_prong_config_check(cfg));
    if (!net || strcmp(net->iface->kind, "net") != 0)
        return ng_error(NG_ERR_INVALID_ARG, "prong needs a network model (natgrad net), not %s", net ? net->iface->kind : "NULL");
    if (!ng_net_config_of(net)->whiten)
        return ng_error(NG_ERR_INVALID_ARG, "prong needs a network built with whitened layers (cfg.whiten = 1)");
    if (!x_host || pool_n < 2) return ng_error(NG_ERR_INVALID_ARG, "prong: no pool of training cases for the statistics");
    if (cfg->ns > pool_n)
        return ng_error(NG_ERR_INVALID_ARG, "prong: --prong-ns %d exceeds the %d training cases", cfg->ns, pool_n);
    p = (ng_precond *)calloc(1, sizeof *p);
    k = (prong *)calloc(1, sizeof *k);
    if (!p || !k) {
        free(p);
        free(k);
        return ng_error(NG_ERR_OOM, "prong: out of host memory");
    }
    p->iface = &prong_iface;
    p->be = be;
    p->impl = k;
    ng_arena_begin(&p->state, be, "prong");
    k->cfg = *cfg;
    k->net = net;
    k->upd = upd;
    s = ng_batches_init(&k->stream, be, x_host, ng_net_batch_rows(net), pool_n, cfg->ns, cfg->seed ^ 0x70726f6e67ull /* "prong" */, 0, 1);
    if (s == NG_OK) k->have_stream = 1;
    if (s != NG_OK) {
        ng_precond_free(p);
        return s;
    }
    *out = p;
    return NG_OK;
}
