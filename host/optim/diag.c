/* diag.c: the diagonal preconditioner of Sohl-Dickstein's note (section 2.5, eq. 34), with the
 * metrics of sections 2.2-2.4 (natgrad/recipes.h). Vectors are laid out like the model's parameter
 * arena (n floats); for RBMs W is (nh, nv) column-major with leading dimension W.ld.
 * Buffers: diag.avg (state arena, checkpointed) accumulates (= beta avg + (1 - beta) d); d, tmp,
 * minv and the scratch are overwritten every update. The workspace grows on the first update
 * that needs more (the batch size is known only then) and is never reallocated afterwards for
 * the same batch size. Must not read a model except through ng_model_param / ng_model_statistic /
 * natgrad/net.h's public functions. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "natgrad/backend.h"
#include "natgrad/comm.h"
#include "natgrad/net.h"
#include "natgrad/recipes.h"
#include "natgrad/rng.h"
#include "natgrad/tnewton.h"

static const char *const metric_names[] = {"fisher", "empirical", "energy", NULL};

void ng_diag_config_default(ng_diag_config *c) {
    memset(c, 0, sizeof *c);
    c->metric = NG_DIAG_FISHER;
    c->lambda = 1e-4;
    c->power = 1.0;
    c->beta = 0.95;
    c->max_batch = 0;
    c->seed = 1;
}

const char *ng_diag_metric_name(int m) { return m >= 0 && m < NG_DIAG_METRIC_COUNT ? metric_names[m] : "?"; }

int ng_diag_metric_parse(const char *s) {
    int i;
    for (i = 0; s && metric_names[i]; i++)
        if (strcasecmp(s, metric_names[i]) == 0) return i;
    return -1;
}

ng_status ng_diag_config_check(const ng_diag_config *c) {
    if (!c) return ng_error(NG_ERR_INVALID_ARG, "diag: NULL configuration");
    if (c->metric < 0 || c->metric >= NG_DIAG_METRIC_COUNT)
        return ng_error(NG_ERR_INVALID_ARG, "--diag-metric %d: unknown (fisher, empirical, energy)", c->metric);
    if (!(c->lambda >= 0.0) || !isfinite(c->lambda))
        return ng_error(NG_ERR_INVALID_ARG, "--diag-lambda %g: must be finite and >= 0", c->lambda);
    if (!(c->power > 0.0 && c->power <= 1.0))
        return ng_error(NG_ERR_INVALID_ARG, "--diag-power %g: must be in (0, 1]", c->power);
    if (!(c->beta >= 0.0 && c->beta < 1.0))
        return ng_error(NG_ERR_INVALID_ARG, "--diag-beta %g: must be in [0, 1)", c->beta);
    if (c->max_batch < 0) return ng_error(NG_ERR_INVALID_ARG, "diag: max_batch %d is negative", c->max_batch);
    if (c->phi_every < 0) return ng_error(NG_ERR_INVALID_ARG, "--phi-every %d: must be >= 0 (0: off)", c->phi_every);
    return NG_OK;
}

typedef struct diag {
    ng_diag_config cfg;
    int is_net;
    size_t n;           /* parameters */
    ng_tensor avg;      /* (n) moving average of the batch diagonals (state) */
    ng_tensor scale, iscale; /* (n) phi mode: s = (dhat + lambda)^(power/2) and 1/s of the last refresh (state) */
    float *d, *tmp, *minv; /* (n) each: batch diagonal, scratch, the scaling (device) */
    float *scratch;     /* networks: hf_diagonal's per-case squares; RBMs: squares and means */
    size_t scratch_floats;
    void *mem;          /* d, tmp, minv */
    void *smem;         /* scratch */
    /* device words (dmem): step_dev[2] the Philox step of the Fisher's sampled targets counted on
     * the device (update t draws at step t; [1] the kernel's block ticket), then wsum, the weight
     * of avg (= beta wsum + (1 - beta), so 1 - beta^(t+1) after update t: the bias correction, on
     * the device so a captured CUDA graph replays it; checkpointed as diag.wsum), and one (1.0f) */
    void *dmem;
    uint64_t *step_dev;
    float *wsum, *one;
    uint64_t t_dev;     /* host mirror of step_dev[0] */
    /* RBMs: shapes and the offsets of W (ld ldw), a, b in the parameter arena */
    int nv, nh, ldw;
    size_t off_W, off_a, off_b;
    long long c_all;    /* several ranks: the columns of V over all ranks (learnt at the first apply) */
} diag;

static ng_status ensure_scratch(ng_backend *be, diag *k, size_t floats) {
    if (floats <= k->scratch_floats) return NG_OK;
    if (k->smem) ng_free(be, k->smem);
    k->smem = NULL;
    k->scratch_floats = 0;
    NG_TRY(ng_alloc(be, floats * sizeof(float), &k->smem));
    k->scratch = (float *)k->smem;
    k->scratch_floats = floats;
    return NG_OK;
}

/* rbm_diag's scratch over c columns: their squares, E and the two means */
static size_t rbm_scratch_floats(const diag *k, int c) {
    return (size_t)(k->nv + k->nh) * (size_t)c + (size_t)k->nh * k->nv + (size_t)k->nv + k->nh;
}

static ng_status square(ng_backend *be, int rows, int cols, const float *x, int ldx, float *out, int ldo) {
    ng_op_args o;
    memset(&o, 0, sizeof o);
    o.op = NG_OP_OUTER_SCALE;
    o.outer_scale.mode = NG_OSCALE_SQUARE;
    o.outer_scale.rows = rows;
    o.outer_scale.cols = cols;
    o.outer_scale.x = x;
    o.outer_scale.ldx = ldx;
    o.outer_scale.out = out;
    o.outer_scale.ldo = ldo;
    return ng_run_op(be, &o);
}

/* The device step count = t (its ticket 0): a blocking write, never inside a CUDA graph capture
 * (the trainer captures only updates whose count the mirror already holds). */
static ng_status sync_step_dev(ng_backend *be, diag *k, uint64_t t) {
    const uint64_t c[2] = {t, 0};
    ng_status s = ng_set(be, k->step_dev, c, sizeof c);
    if (s != NG_OK)
        return ng_error_wrap(s, "diag: setting the device Philox step to %llu (not possible inside a CUDA graph capture): ",
                             (unsigned long long)t);
    k->t_dev = t;
    return NG_OK;
}

/* Updates between two draws of the Fisher's targets: 1, or phi mode's refresh period (its draws
 * are at t = 0, K, 2K, ...), so the device count reaches the next draw's t by itself. */
static uint64_t draw_period(const diag *k) { return k->cfg.phi_every > 0 ? (uint64_t)k->cfg.phi_every : 1u; }

/* d for a network: mean squared per-case gradients (data targets, or targets sampled at step t,
 * which the draw reads from the device count). Several ranks: the model's batch is this rank's
 * shard, columns [lo, hi) of the global batch; the targets are drawn by global column (col0 = lo:
 * what one process draws for those cases) and the shard's mean, weighted by the shard's share, is
 * summed over the ranks (the global mean). */
static ng_status net_diag(ng_precond *p, diag *k, ng_model *m, uint64_t t) {
    ng_tensor a0;
    int cases, dist = p->dist.comm && p->dist.comm->world > 1;
    NG_TRY(ng_model_statistic(m, "a0", &a0));
    cases = a0.cols;
    NG_TRY(ensure_scratch(p->be, k, ng_tn_hf_scratch_floats(m, cases)));
    if (k->cfg.metric == NG_DIAG_FISHER) {
        if (k->t_dev != t) NG_TRY(sync_step_dev(p->be, k, t));
        NG_TRY(ng_net_backward_sampled_dev(m, ng_rng_stream_key(k->cfg.seed, NG_RNG_DIAG_TARGETS), k->step_dev,
                                           draw_period(k), dist ? (uint64_t)p->dist.lo : 0));
        k->t_dev = t + draw_period(k);
    }
    NG_TRY(ng_tn_hf_diagonal_ws(m, 1.0, 1.0, k->d, k->tmp, k->minv, k->scratch));
    /* the sampled backward pass leaves dL/dz unscaled by 1/m, so the diagonal came out m^2 times
     * the mean of the squares */
    if (k->cfg.metric == NG_DIAG_FISHER) NG_TRY(ng_scal(p->be, k->n, (float)(1.0 / ((double)cases * cases)), k->d));
    if (!dist) return NG_OK;
    NG_TRY(ng_scal(p->be, k->n, (float)((double)(p->dist.hi - p->dist.lo) / (double)p->dist.batch), k->d));
    return ng_comm_allreduce(p->dist.comm, p->be, NG_F32, k->d, k->n, "the diagonal metric");
}

/* d for an RBM over the columns of V (nv, c) and H = p(h | V) (nh, c): second moments of the
 * free-energy gradient (-h v^T, -v, -h), minus the squared means when `centred` (a variance) */
static ng_status rbm_diag(ng_precond *p, diag *k, const ng_tensor *V, const ng_tensor *H, int centred) {
    ng_backend *be = p->be;
    int nv = k->nv, nh = k->nh, c = V->cols;
    float inv, *sqV, *sqH, *E, *mv, *mh, *dW = k->d + k->off_W, *da = k->d + k->off_a, *db = k->d + k->off_b;
    if (c < 1 || H->cols != c || V->rows != nv || H->rows != nh)
        return ng_error(NG_ERR_INVALID_ARG, "diag: RBM statistics of shapes (%d, %d) and (%d, %d), want (%d, c) and (%d, c), c >= 1",
                        V->rows, V->cols, H->rows, H->cols, nv, nh);
    /* several ranks: V and H hold this rank's columns (of the batch or of the particles); every
     * moment below is its share of the global mean, summed over the ranks before it is squared */
    if (p->dist.comm && k->c_all == 0) {
        long long first;
        NG_TRY(ng_comm_shard_offset(p->dist.comm, c, &first, &k->c_all, "the diagonal metric's columns"));
    }
    inv = 1.0f / (float)(p->dist.comm ? k->c_all : c);
    NG_TRY(ensure_scratch(be, k, rbm_scratch_floats(k, c)));
    sqV = k->scratch;
    sqH = sqV + (size_t)nv * c;
    E = sqH + (size_t)nh * c;
    mv = E + (size_t)nh * nv;
    mh = mv + nv;
    NG_TRY(square(be, nv, c, V->data, V->ld, sqV, nv));
    NG_TRY(square(be, nh, c, H->data, H->ld, sqH, nh));
    /* second moments: dW = (1/c) (h o h)(v o v)^T, da = mean of v o v, db = mean of h o h */
    NG_TRY(ng_gemm(be, 0, 1, nh, nv, c, inv, sqH, nh, sqV, nv, 0.0f, dW, k->ldw));
    NG_TRY(ng_sum_cols(be, nv, c, inv, sqV, nv, 0.0f, da));
    NG_TRY(ng_sum_cols(be, nh, c, inv, sqH, nh, 0.0f, db));
    if (p->dist.comm) NG_TRY(ng_comm_allreduce(p->dist.comm, be, NG_F32, k->d, k->n, "the diagonal metric"));
    if (!centred) return NG_OK;
    /* minus the squared means: E = (1/c) H V^T, mv, mh the column means */
    NG_TRY(ng_gemm(be, 0, 1, nh, nv, c, inv, H->data, H->ld, V->data, V->ld, 0.0f, E, nh));
    NG_TRY(ng_sum_cols(be, nv, c, inv, V->data, V->ld, 0.0f, mv));
    NG_TRY(ng_sum_cols(be, nh, c, inv, H->data, H->ld, 0.0f, mh));
    if (p->dist.comm) /* E, mv, mh are contiguous */
        NG_TRY(ng_comm_allreduce(p->dist.comm, be, NG_F32, E, (size_t)nh * nv + nv + nh, "the diagonal metric's means"));
    NG_TRY(square(be, nh, nv, E, nh, E, nh));
    NG_TRY(square(be, nv, 1, mv, nv, mv, nv));
    NG_TRY(square(be, nh, 1, mh, nh, mh, nh));
    {
        int j;
        /* W may have a leading dimension larger than nh: subtract column by column when it does */
        if (k->ldw == nh) NG_TRY(ng_axpby(be, (size_t)nh * nv, -1.0f, E, 1.0f, dW));
        else
            for (j = 0; j < nv; j++) NG_TRY(ng_axpby(be, (size_t)nh, -1.0f, E + (size_t)j * nh, 1.0f, dW + (size_t)j * k->ldw));
    }
    NG_TRY(ng_axpby(be, (size_t)nv, -1.0f, mv, 1.0f, da));
    return ng_axpby(be, (size_t)nh, -1.0f, mh, 1.0f, db);
}

static ng_status pow_of(ng_backend *be, size_t n, const float *v, double power, float *out) {
    ng_op_args o;
    NG_TRY(ng_fill(be, n, 1.0f, out));
    memset(&o, 0, sizeof o);
    o.op = NG_OP_OUTER_SCALE;
    o.outer_scale.mode = NG_OSCALE_POW;
    o.outer_scale.rows = 1;
    o.outer_scale.cols = (int)n;
    o.outer_scale.x = out;
    o.outer_scale.ldx = 1;
    o.outer_scale.v = v;
    o.outer_scale.floor = 1e-30f;
    o.outer_scale.power = (float)power;
    o.outer_scale.out = out;
    o.outer_scale.ldo = 1;
    return ng_run_op(be, &o);
}

static ng_status scale_grad(ng_backend *be, size_t n, ng_model *m, const float *by) {
    ng_op_args o;
    memset(&o, 0, sizeof o);
    o.op = NG_OP_OUTER_SCALE;
    o.outer_scale.mode = NG_OSCALE_MUL;
    o.outer_scale.rows = (int)n;
    o.outer_scale.cols = 1;
    o.outer_scale.x = m->grad_flat.data;
    o.outer_scale.ldx = (int)n;
    o.outer_scale.u = by;
    o.outer_scale.out = m->grad_flat.data;
    o.outer_scale.ldo = (int)n;
    return ng_run_op(be, &o);
}

static ng_status diag_apply(ng_precond *p, ng_model *m, uint64_t t) {
    diag *k = (diag *)p->impl;
    ng_backend *be = p->be;
    const float beta = (float)k->cfg.beta, nbeta = (float)(1.0 - k->cfg.beta);
    ng_op_args o;
    if (k->cfg.phi_every > 0 && t % (uint64_t)k->cfg.phi_every != 0)
        return scale_grad(be, k->n, m, k->iscale.data); /* between refreshes: G^(-1/2) g with the fixed metric */
    if (k->is_net) NG_TRY(net_diag(p, k, m, t));
    else {
        ng_tensor V, H;
        int fisher = k->cfg.metric == NG_DIAG_FISHER;
        NG_TRY(ng_model_statistic(m, fisher ? "v_model" : "v_data", &V));
        NG_TRY(ng_model_statistic(m, fisher ? "h_model" : "h_data", &H));
        NG_TRY(rbm_diag(p, k, &V, &H, fisher));
    }
    /* avg = beta avg + (1 - beta) d; wsum = beta wsum + (1 - beta) = 1 - beta^(t+1) (the weight of
     * avg); tmp = lambda + avg / wsum (the bias-corrected average); minv = tmp^-power. No host scalar
     * depends on t. */
    NG_TRY(ng_axpby(be, k->n, nbeta, k->d, beta, k->avg.data));
    NG_TRY(ng_axpby(be, 1, nbeta, k->one, beta, k->wsum));
    NG_TRY(ng_fill(be, k->n, (float)k->cfg.lambda, k->tmp));
    memset(&o, 0, sizeof o);
    o.op = NG_OP_AXPBY_DEV;
    o.axpby_dev.n = k->n;
    o.axpby_dev.ca = 1.0f;
    o.axpby_dev.a_den = k->wsum;
    o.axpby_dev.x = k->avg.data;
    o.axpby_dev.cb = 1.0f;
    o.axpby_dev.y = k->tmp;
    NG_TRY(ng_run_op(be, &o));
    if (k->cfg.phi_every > 0) {
        /* refresh: s = tmp^(power/2), 1/s, and the direction g / s */
        NG_TRY(pow_of(be, k->n, k->tmp, 0.5 * k->cfg.power, k->scale.data));
        NG_TRY(pow_of(be, k->n, k->tmp, -0.5 * k->cfg.power, k->iscale.data));
        return scale_grad(be, k->n, m, k->iscale.data);
    }
    NG_TRY(ng_fill(be, k->n, 1.0f, k->minv));
    memset(&o, 0, sizeof o);
    o.op = NG_OP_OUTER_SCALE;
    o.outer_scale.mode = NG_OSCALE_POW;
    o.outer_scale.rows = 1;
    o.outer_scale.cols = (int)k->n;
    o.outer_scale.x = k->minv;
    o.outer_scale.ldx = 1;
    o.outer_scale.v = k->tmp;
    o.outer_scale.floor = 1e-30f;
    o.outer_scale.power = (float)-k->cfg.power;
    o.outer_scale.out = k->minv;
    o.outer_scale.ldo = 1;
    NG_TRY(ng_run_op(be, &o));
    /* the direction: g o minv, in place */
    memset(&o, 0, sizeof o);
    o.op = NG_OP_OUTER_SCALE;
    o.outer_scale.mode = NG_OSCALE_MUL;
    o.outer_scale.rows = (int)k->n;
    o.outer_scale.cols = 1;
    o.outer_scale.x = m->grad_flat.data;
    o.outer_scale.ldx = (int)k->n;
    o.outer_scale.u = k->minv;
    o.outer_scale.out = m->grad_flat.data;
    o.outer_scale.ldo = (int)k->n;
    return ng_run_op(be, &o);
}

static ng_status diag_save(ng_precond *p, ng_ckpt *ck) {
    diag *k = (diag *)p->impl;
    float w;
    NG_TRY(ng_get(p->be, &w, k->wsum, sizeof w));
    NG_TRY(ng_ckpt_set_f32(ck, "diag.wsum", w));
    NG_TRY(ng_ckpt_set_str(ck, "diag.metric", ng_diag_metric_name(k->cfg.metric)));
    NG_TRY(ng_ckpt_set_f64(ck, "diag.lambda", k->cfg.lambda));
    NG_TRY(ng_ckpt_set_f64(ck, "diag.power", k->cfg.power));
    NG_TRY(ng_ckpt_set_f64(ck, "diag.beta", k->cfg.beta));
    if (k->cfg.phi_every > 0) NG_TRY(ng_ckpt_set_i64(ck, "diag.phi_every", k->cfg.phi_every));
    return ng_ckpt_set_u64(ck, "diag.seed", k->cfg.seed);
}

static ng_status diag_load(ng_precond *p, const ng_ckpt *ck, int apply) {
    diag *k = (diag *)p->impl;
    const char *metric;
    double v[3], want[3] = {k->cfg.lambda, k->cfg.power, k->cfg.beta};
    static const char *const keys[3] = {"diag.lambda", "diag.power", "diag.beta"};
    uint64_t seed;
    int i;
    NG_TRY(ng_ckpt_get_str(ck, "diag.metric", &metric));
    if (strcmp(metric, ng_diag_metric_name(k->cfg.metric)) != 0)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: field diag.metric is '%s', this run uses '%s'", ng_ckpt_path(ck), metric,
                        ng_diag_metric_name(k->cfg.metric));
    for (i = 0; i < 3; i++) {
        NG_TRY(ng_ckpt_get_f64(ck, keys[i], &v[i]));
        if (v[i] != want[i])
            return ng_error(NG_ERR_FORMAT, "checkpoint %s: field %s is %g, this run uses %g", ng_ckpt_path(ck), keys[i], v[i], want[i]);
    }
    {
        int64_t pe = 0;
        if (ng_ckpt_has(ck, "diag.phi_every")) NG_TRY(ng_ckpt_get_int(ck, "diag.phi_every", 1, 1 << 30, &pe));
        if (pe != k->cfg.phi_every)
            return ng_error(NG_ERR_FORMAT, "checkpoint %s: field diag.phi_every is %lld, this run uses %d", ng_ckpt_path(ck),
                            (long long)pe, k->cfg.phi_every);
    }
    NG_TRY(ng_ckpt_get_u64(ck, "diag.seed", &seed));
    if (seed != k->cfg.seed)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: field diag.seed is %llu, this run uses %llu", ng_ckpt_path(ck),
                        (unsigned long long)seed, (unsigned long long)k->cfg.seed);
    {
        /* the weight of avg (a checkpoint without it, from before it existed: 1 - beta^n after the
         * n estimates of the first t updates) and the device step of the next draw (run.t, or phi
         * mode's next refresh), before any capture of the resumed run */
        uint64_t t = 0, n;
        float w;
        if (ng_ckpt_has(ck, "run.t")) NG_TRY(ng_ckpt_get_u64(ck, "run.t", &t));
        n = (t + draw_period(k) - 1) / draw_period(k);
        if (ng_ckpt_has(ck, "diag.wsum")) NG_TRY(ng_ckpt_get_float(ck, "diag.wsum", 0.0, 2.0, &w));
        else w = (float)(1.0 - pow(k->cfg.beta, (double)n));
        if (!apply) return NG_OK;
        NG_TRY(ng_set(p->be, k->wsum, &w, sizeof w));
        return sync_step_dev(p->be, k, n * draw_period(k));
    }
}

ng_status ng_diag_config_from_ckpt(const ng_ckpt *ck, ng_diag_config *cfg) {
    const char *metric;
    ng_diag_config c;
    ng_diag_config_default(&c);
    NG_TRY(ng_ckpt_get_str(ck, "diag.metric", &metric));
    c.metric = ng_diag_metric_parse(metric);
    if (c.metric < 0) return ng_error(NG_ERR_FORMAT, "checkpoint %s: field diag.metric '%s' is unknown", ng_ckpt_path(ck), metric);
    NG_TRY(ng_ckpt_get_f64(ck, "diag.lambda", &c.lambda));
    NG_TRY(ng_ckpt_get_f64(ck, "diag.power", &c.power));
    NG_TRY(ng_ckpt_get_f64(ck, "diag.beta", &c.beta));
    NG_TRY(ng_ckpt_get_u64(ck, "diag.seed", &c.seed));
    if (ng_ckpt_has(ck, "diag.phi_every")) {
        int64_t pe;
        NG_TRY(ng_ckpt_get_int(ck, "diag.phi_every", 1, 1 << 30, &pe));
        c.phi_every = (int)pe;
    }
    c.max_batch = cfg->max_batch;
    if (ng_diag_config_check(&c) != NG_OK)
        return ng_error_wrap(NG_ERR_FORMAT, "checkpoint %s: diag.*: ", ng_ckpt_path(ck));
    *cfg = c;
    return NG_OK;
}

static void diag_destroy(ng_precond *p) {
    diag *k = (diag *)p->impl;
    if (!k) return;
    if (k->mem) ng_free(p->be, k->mem);
    if (k->smem) ng_free(p->be, k->smem);
    if (k->dmem) ng_free(p->be, k->dmem);
    free(k);
}

/* CUDA graphs: every update is device work with fixed host scalars (the bias correction and the
 * Fisher's Philox step are on the device); an update whose batch needs a larger scratch than the
 * first one allocated (a growing batch) runs eagerly. Phi mode: the refreshes and the updates in
 * between are two captures. */
static int diag_graph_key(const ng_precond *p, const ng_model *m, uint64_t t, int cols, double *key, int max) {
    const diag *k = (const diag *)p->impl;
    size_t need;
    /* several ranks: a network's shard-weighted mean squares are one NCCL all-reduce on the backend's
     * stream (captured); the shard weight and the global batch (so the targets' first column lo) follow
     * from the trainer's key (the batch's columns and the shard weight). An RBM's metric counts its
     * columns over the ranks on the host once (rbm_diag: c_all): eager until it has; then its moments'
     * all-reduces are NCCL ones on the stream, captured. */
    if (p->dist.comm && !k->is_net && k->c_all == 0) return -1;
    if (k->is_net) need = ng_tn_hf_scratch_floats(m, cols);
    else if (k->cfg.metric == NG_DIAG_FISHER) need = k->scratch_floats ? k->scratch_floats : 1; /* the particles */
    else need = rbm_scratch_floats(k, cols);
    if (need > k->scratch_floats) return -1;
    if (k->cfg.phi_every <= 0) return 0;
    if (max < 1) return -1;
    key[0] = t % (uint64_t)k->cfg.phi_every == 0;
    return 1;
}

/* Whether update t draws the Fisher's targets (a network's Fisher metric; phi mode: at refreshes). */
static int draws_at(const diag *k, uint64_t t) {
    return k->is_net && k->cfg.metric == NG_DIAG_FISHER && t % draw_period(k) == 0;
}

/* A replay of update t that drew the targets at step t advanced the device count past them. */
static void diag_graph_replayed(ng_precond *p, uint64_t t) {
    diag *k = (diag *)p->impl;
    if (draws_at(k, t)) k->t_dev = t + draw_period(k);
}

/* A discarded capture never ran: the count is where update t started. */
static void diag_graph_discarded(ng_precond *p, uint64_t t) {
    diag *k = (diag *)p->impl;
    if (draws_at(k, t)) k->t_dev = t;
}

/* data_parallel: on several ranks rbm_diag all-reduces an RBM's moments and net_diag a network's
 * shard-weighted mean squares, so the metric (and avg, scale) is the same on every rank */
static const struct ng_precond_i diag_iface = {
    .name = "diag",
    .apply = diag_apply,
    .save = diag_save,
    .load = diag_load,
    .destroy = diag_destroy,
    .data_parallel = 1,
    .graph_key = diag_graph_key,
    .graph_replayed = diag_graph_replayed,
    .graph_discarded = diag_graph_discarded,
};
static int is_diag(const ng_precond *p) { return p && p->iface == &diag_iface; }

ng_status ng_precond_diag_init(ng_backend *be, ng_model *m, const ng_diag_config *cfg, ng_precond **out) {
    ng_precond *p;
    diag *k;
    ng_status s = NG_OK;
    int is_net;
    if (!out) return ng_error(NG_ERR_INVALID_ARG, "diag: NULL output");
    *out = NULL;
    if (!be || !m) return ng_error(NG_ERR_INVALID_ARG, "diag: NULL backend or model");
    NG_TRY(ng_diag_config_check(cfg));
    is_net = strcmp(m->iface->kind, "net") == 0;
    if (!is_net && strcmp(m->iface->kind, "rbm") != 0)
        return ng_error(NG_ERR_INVALID_ARG, "diag: model kind '%s' is neither a network nor an RBM", m->iface->kind);
    if (is_net && cfg->metric == NG_DIAG_ENERGY)
        return ng_error(NG_ERR_INVALID_ARG, "--diag-metric energy: the energy metric (eq. 33) is for RBMs; networks use fisher or empirical");
    if (!is_net && cfg->metric == NG_DIAG_EMPIRICAL)
        return ng_error(NG_ERR_INVALID_ARG, "--diag-metric empirical: RBMs have no targets; use energy (eq. 33, over the data) or fisher");
    if (is_net) {
        const ng_net_config *nc = ng_net_config_of(m);
        int l;
        for (l = 0; l < nc->n_layers; l++)
            if (nc->bn[l])
                return ng_error(NG_ERR_UNSUPPORTED, "diag: layer %d uses batch normalisation, whose per-case gradients are not separable", l + 1);
    }
    if (ng_model_size(m) > 2147483647u)
        return ng_error(NG_ERR_UNSUPPORTED, "diag: %zu parameters exceed 2^31 - 1", ng_model_size(m));
    p = (ng_precond *)calloc(1, sizeof *p);
    k = (diag *)calloc(1, sizeof *k);
    if (!p || !k) {
        free(p);
        free(k);
        return ng_error(NG_ERR_OOM, "diag: out of host memory");
    }
    p->iface = &diag_iface;
    p->be = be;
    p->impl = k;
    ng_arena_begin(&p->state, be, "diag");
    k->cfg = *cfg;
    k->is_net = is_net;
    k->n = ng_model_size(m);
    if (!is_net) {
        ng_tensor W, gW, ga, gb;
        s = ng_model_param(m, "W", &W, &gW);
        if (s == NG_OK) s = ng_model_param(m, "a", NULL, &ga);
        if (s == NG_OK) s = ng_model_param(m, "b", NULL, &gb);
        if (s == NG_OK) {
            k->nh = gW.rows;
            k->nv = gW.cols;
            k->ldw = gW.ld;
            k->off_W = (size_t)(gW.data - m->grad_flat.data);
            k->off_a = (size_t)(ga.data - m->grad_flat.data);
            k->off_b = (size_t)(gb.data - m->grad_flat.data);
        }
    }
    if (s == NG_OK) s = ng_arena_reserve(&p->state, "avg", (int)k->n, 1, &k->avg);
    if (s == NG_OK && cfg->phi_every > 0) s = ng_arena_reserve(&p->state, "scale", (int)k->n, 1, &k->scale);
    if (s == NG_OK && cfg->phi_every > 0) s = ng_arena_reserve(&p->state, "iscale", (int)k->n, 1, &k->iscale);
    if (s == NG_OK) s = ng_arena_commit(&p->state);
    if (s == NG_OK) s = ng_fill(be, k->n, 0.0f, k->avg.data);
    if (s == NG_OK && cfg->phi_every > 0) s = ng_fill(be, k->n, 1.0f, k->scale.data);
    if (s == NG_OK && cfg->phi_every > 0) s = ng_fill(be, k->n, 1.0f, k->iscale.data);
    if (s == NG_OK) s = ng_alloc(be, 3 * k->n * sizeof(float), &k->mem);
    if (s == NG_OK) {
        k->d = (float *)k->mem;
        k->tmp = k->d + k->n;
        k->minv = k->tmp + k->n;
        s = ng_fill(be, 3 * k->n, 0.0f, k->d);
    }
    if (s == NG_OK) s = ng_alloc(be, 2 * sizeof(uint64_t) + 2 * sizeof(float), &k->dmem);
    if (s == NG_OK) {
        const uint64_t z[2] = {0, 0};
        const float w[2] = {0.0f, 1.0f};
        k->step_dev = (uint64_t *)k->dmem;
        k->wsum = (float *)(void *)(k->step_dev + 2);
        k->one = k->wsum + 1;
        s = ng_set(be, k->step_dev, z, sizeof z);
        if (s == NG_OK) s = ng_set(be, k->wsum, w, sizeof w);
        k->t_dev = 0;
    }
    if (s == NG_OK && is_net && cfg->max_batch > 0) s = ensure_scratch(be, k, ng_tn_hf_scratch_floats(m, cfg->max_batch));
    if (s == NG_OK && !is_net && cfg->max_batch > 0) {
        /* RBMs: for the larger of the batch (energy) and the particles (fisher) */
        ng_tensor vm;
        int c = cfg->max_batch;
        if (ng_model_statistic(m, "v_model", &vm) == NG_OK && vm.cols > c) c = vm.cols;
        s = ensure_scratch(be, k, rbm_scratch_floats(k, c));
    }
    if (s != NG_OK) {
        ng_precond_free(p);
        return s;
    }
    *out = p;
    return NG_OK;
}

ng_status ng_diag_get(ng_precond *p, ng_tensor *batch_diag, ng_tensor *avg) {
    diag *k;
    if (!is_diag(p)) return ng_error(NG_ERR_INVALID_ARG, "ng_diag_get: not a diagonal preconditioner");
    k = (diag *)p->impl;
    if (batch_diag) *batch_diag = ng_tensor_matrix(k->d, (int)k->n, 1, (int)k->n);
    if (avg) *avg = k->avg;
    return NG_OK;
}

ng_status ng_diag_phi_scale(ng_precond *p, ng_tensor *scale, ng_tensor *inv_scale) {
    diag *k;
    if (!is_diag(p)) return ng_error(NG_ERR_INVALID_ARG, "natural parameter space: needs the diagonal preconditioner (--precond diag)");
    k = (diag *)p->impl;
    if (k->cfg.phi_every <= 0)
        return ng_error(NG_ERR_INVALID_ARG, "natural parameter space: the diagonal preconditioner is not in phi mode (--phi-every K)");
    if (scale) *scale = k->scale;
    if (inv_scale) *inv_scale = k->iscale;
    return NG_OK;
}
