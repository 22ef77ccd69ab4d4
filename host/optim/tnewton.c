/* tnewton.c: the truncated-Newton family (natgrad/tnewton.h): natural gradient descent by
 * truncated Newton (Pascanu & Bengio 2014, Algorithm 2), natural conjugate gradient (their
 * section 9, NCG-L and NCG-F) and Hessian-free (Martens 2010), as one preconditioner that leaves
 * -delta in the gradient arena.
 *
 * One update (apply), g = the gradient (and eta theta) in the gradient arena:
 *   1. h0 = h(theta) on the gradient batch (from the gradient pass), g saved in `grad`.
 *   2. hf: the diagonal preconditioner from the gradient pass's per-case statistics.
 *   3. the metric batch becomes the current batch of the curvature products (same: nothing to do).
 *   4. the solve: n = (C + (lambda + eta) I)^-1 g (ngd, ncg) or p = -(...)^-1 g (hf).
 *   5. the step: fixed, line search, 2-D search, Polak-Ribiere + line search, or backtracking,
 *      each evaluation h(theta + delta) a pass over the gradient batch at a trial point written
 *      into the parameter arena and undone from a copy (bit-exact).
 *   6. Levenberg-Marquardt on rho.
 * The model is a network (natgrad/net.h) or a convolutional classifier (natgrad/cnn.h: its
 * products; no per-case statistics, so no HF diagonal preconditioner); the m_* helpers and
 * curvature_local are the only calls that differ. */
#include "natgrad/tnewton.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "natgrad/cnn.h"
#include "natgrad/comm.h"
#include "natgrad/data.h"
#include "natgrad/graph.h"
#include "natgrad/net.h"
#include "natgrad/rng.h"
#include "natgrad/search.h"
#include "natgrad/solver.h"
#include "natgrad/status.h"

#define FINITE(x) (isfinite(x))
#define HF_KEEP 32

static const char *const method_names[] = {"ngd", "ngd-l", "ncg-l", "ncg-f", "hf"};
static const char *const metric_names[] = {"same", "separate", "unlabeled"};

const char *ng_tn_method_name(int m) { return m >= 0 && m < NG_TN_METHOD_COUNT ? method_names[m] : "?"; }
int ng_tn_method_parse(const char *s) {
    int i;
    for (i = 0; s && i < NG_TN_METHOD_COUNT; i++)
        if (strcmp(s, method_names[i]) == 0) return i;
    return -1;
}
static const char *const fisher_names[] = {"exact", "sampled", "empirical"};
const char *ng_tn_fisher_name(int f) { return f >= NG_FISHER_EXACT && f <= NG_FISHER_EMPIRICAL ? fisher_names[f] : "?"; }
uint64_t ng_tn_fisher_step(uint64_t t) { return t << 32; }
const char *ng_tn_metric_name(int m) { return m >= 0 && m <= NG_TN_METRIC_UNLABELED ? metric_names[m] : "?"; }

void ng_tn_config_default(ng_tn_config *c) {
    memset(c, 0, sizeof *c);
    c->method = NG_TN_NGD;
    c->solver = NG_TN_SOLVER_CG;
    c->curvature = NG_TN_CURV_GN;
    c->max_iter = 0;
    c->rtol = -1.0;
    c->lambda0 = 1.0;
    c->adapt_lambda = 1;
    c->rho_model = NG_TN_RHO_LINEAR;
    c->lambda_min = 1e-6;
    c->lr = 1.0;
    c->eta = 0.0;
    c->metric = NG_TN_METRIC_SAME;
    c->metric_batch = 0;
    c->fisher = NG_FISHER_EXACT;
    c->fisher_samples = 1;
    c->hf_decay = 0.95;
    c->hf_precond = 1;
    c->hf_power = 0.75;
    c->hf_backtrack = 1;
    c->line_evals = 10;
    c->search_evals = 30;
    c->timing = 0;
    c->seed = 1;
}

static int max_iter_of(const ng_tn_config *c) { return c->max_iter > 0 ? c->max_iter : (c->method == NG_TN_HF ? 250 : 20); }
static double rtol_of(const ng_tn_config *c) { return c->rtol >= 0.0 ? c->rtol : (c->method == NG_TN_HF ? 0.0 : 1e-4); }

ng_status ng_tn_config_check(const ng_tn_config *c) {
    if (!c) return ng_error(NG_ERR_INVALID_ARG, "truncated Newton: NULL configuration");
    if (c->method < 0 || c->method >= NG_TN_METHOD_COUNT)
        return ng_error(NG_ERR_INVALID_ARG, "--tn-method: %d is not one of ngd, ngd-l, ncg-l, ncg-f, hf", c->method);
    if (c->solver != NG_TN_SOLVER_CG && c->solver != NG_TN_SOLVER_MINRESQLP)
        return ng_error(NG_ERR_INVALID_ARG, "--tn-solver: %d is not cg or minres-qlp", c->solver);
    if (c->method == NG_TN_HF && c->solver != NG_TN_SOLVER_CG)
        return ng_error(NG_ERR_INVALID_ARG, "--tn-solver minres-qlp: Hessian-free runs CG (its backtracking and preconditioner are CG's); use --tn-solver cg");
    if (c->curvature != NG_TN_CURV_GN && c->curvature != NG_TN_CURV_HESSIAN)
        return ng_error(NG_ERR_INVALID_ARG, "--curvature: %d is not gn or hessian", c->curvature);
    if (c->curvature == NG_TN_CURV_HESSIAN && c->method != NG_TN_HF)
        return ng_error(NG_ERR_INVALID_ARG, "--curvature hessian: only with --tn-method hf (natural gradient uses the Fisher = Gauss-Newton matrix)");
    if (c->max_iter < 0 || c->max_iter > 100000) return ng_error(NG_ERR_INVALID_ARG, "--max-cg %d: must be in 0 .. 100000 (0: the method's default)", c->max_iter);
    if (!(c->rtol < 1.0) || !FINITE(c->rtol)) return ng_error(NG_ERR_INVALID_ARG, "--cg-rtol %g: must be < 1 (negative: the method's default)", c->rtol);
    if (!(c->lambda0 > 0.0) || !FINITE(c->lambda0)) return ng_error(NG_ERR_INVALID_ARG, "--lambda0 %g: must be finite and > 0", c->lambda0);
    if (c->adapt_lambda != 0 && c->adapt_lambda != 1) return ng_error(NG_ERR_INVALID_ARG, "--adapt-lambda %d: must be 0 or 1", c->adapt_lambda);
    if (c->rho_model != NG_TN_RHO_LINEAR && c->rho_model != NG_TN_RHO_QUADRATIC)
        return ng_error(NG_ERR_INVALID_ARG, "--tn-rho: %d is not linear or quadratic", c->rho_model);
    if (!(c->lambda_min >= 0.0) || !FINITE(c->lambda_min)) return ng_error(NG_ERR_INVALID_ARG, "--lambda-min %g: must be finite and >= 0", c->lambda_min);
    if (!(c->lr > 0.0) || !FINITE(c->lr)) return ng_error(NG_ERR_INVALID_ARG, "--lr %g: must be finite and > 0", c->lr);
    if (!(c->eta >= 0.0) || !FINITE(c->eta)) return ng_error(NG_ERR_INVALID_ARG, "--weight-decay %g: must be finite and >= 0", c->eta);
    if (c->metric < NG_TN_METRIC_SAME || c->metric > NG_TN_METRIC_UNLABELED)
        return ng_error(NG_ERR_INVALID_ARG, "--metric: %d is not same, separate or unlabeled", c->metric);
    if (c->fisher < NG_FISHER_EXACT || c->fisher > NG_FISHER_EMPIRICAL)
        return ng_error(NG_ERR_INVALID_ARG, "--tn-fisher: %d is not exact, sampled or empirical", c->fisher);
    if (c->fisher_samples < 1 || c->fisher_samples > 1000)
        return ng_error(NG_ERR_INVALID_ARG, "--tn-fisher-samples %d: must be in 1 .. 1000", c->fisher_samples);
    if (c->fisher != NG_FISHER_EXACT && c->curvature == NG_TN_CURV_HESSIAN)
        return ng_error(NG_ERR_INVALID_ARG, "--tn-fisher %s: a Fisher metric replaces the Gauss-Newton products; it cannot go with --curvature hessian",
                        ng_tn_fisher_name(c->fisher));
    if (c->fisher == NG_FISHER_EMPIRICAL && c->metric == NG_TN_METRIC_UNLABELED)
        return ng_error(NG_ERR_INVALID_ARG, "--tn-fisher empirical: the empirical Fisher needs the data's targets, which --metric unlabeled does not have (use sampled or exact)");
    if (c->metric_batch < 0) return ng_error(NG_ERR_INVALID_ARG, "--metric-batch %d: must be >= 0", c->metric_batch);
    if (!(c->hf_decay >= 0.0 && c->hf_decay <= 1.0)) return ng_error(NG_ERR_INVALID_ARG, "--hf-decay %g: must be in [0, 1]", c->hf_decay);
    if (c->hf_precond != 0 && c->hf_precond != 1) return ng_error(NG_ERR_INVALID_ARG, "--hf-precond %d: must be 0 or 1", c->hf_precond);
    if (!(c->hf_power > 0.0 && c->hf_power <= 1.0)) return ng_error(NG_ERR_INVALID_ARG, "--hf-power %g: must be in (0, 1]", c->hf_power);
    if (c->hf_backtrack != 0 && c->hf_backtrack != 1) return ng_error(NG_ERR_INVALID_ARG, "--hf-backtrack %d: must be 0 or 1", c->hf_backtrack);
    if (c->line_evals < 2 || c->line_evals > 1000) return ng_error(NG_ERR_INVALID_ARG, "--line-evals %d: must be in 2 .. 1000", c->line_evals);
    if (c->search_evals < 4 || c->search_evals > 10000) return ng_error(NG_ERR_INVALID_ARG, "--search-evals %d: must be in 4 .. 10000", c->search_evals);
    if (c->timing != 0 && c->timing != 1) return ng_error(NG_ERR_INVALID_ARG, "--tn-timing %d: must be 0 or 1", c->timing);
    return NG_OK;
}

double ng_tn_lm_update(double lambda, double rho, double lambda_min) {
    double l = lambda;
    if (!FINITE(rho) || rho < 0.25) l = lambda * 1.5;
    else if (rho > 0.75) l = lambda * (2.0 / 3.0);
    return l < lambda_min ? lambda_min : l;
}

double ng_tn_polak_ribiere(double n_g, double n_gp, double np_gp) {
    double b;
    if (np_gp == 0.0 || !FINITE(np_gp)) return 0.0;
    b = (n_g - n_gp) / np_gp;
    return FINITE(b) && b > 0.0 ? b : 0.0;
}

/* ---- the preconditioner's state --------------------------------------------------------------- */

typedef struct tn {
    ng_tn_config cfg;
    ng_model *net;
    int is_cnn; /* net is a cnn (natgrad/cnn.h) */
    size_t n;
    int maxit;
    double lambda, rho, step, beta, pred, h0, h1;
    int evals, chosen_iter, have_prev;
    uint64_t fisher_key, t_now; /* sampled Fisher: the stream key and this update's count */
    double last_a;          /* the step size of the last update (a; hf: 1 or 0) */
    double np_gp;           /* ncg-f: n_prev . g_prev */
    ng_cg_ws cg;
    ng_cg_config cgc;
    ng_cg_result cgr;
    ng_minresqlp_ws mq;
    ng_minresqlp_result mqr;
    int solver_iters, solver_stop;
    double rel_res;
    double solve_s, search_s;
    /* state arena */
    ng_tensor prev;         /* hf: previous solution; ncg-l: previous step; ncg-f: previous direction */
    ng_tensor gprev;        /* ncg-f: previous gradient */
    /* scratch */
    ng_arena scratch;
    ng_tensor grad, sol, backup, u, minv, diag, delta_tmp;
    ng_tensor fstep;        /* (2) float64 storage of two uint64: the sampled Fisher's stream step on the
                             * device and its ticket (sample_targets' step_dev, read with advance 0),
                             * used (fstep_dev = 1) while graph segments replay */
    int fstep_dev;
    void *sq;               /* hf: scratch of the diagonal, grown with the batch (not per update) */
    size_t sq_cap;          /* its floats */
    float *sums;            /* the objective at a trial point: a network's per-chunk sums on the device
                             * (ng_net_evaluate_dev), a cnn's per-case objectives (ng_cnn_objective_dev),
                             * grown with the batch outside the segments */
    size_t sums_cap;        /* its floats */
    /* the metric stream */
    int have_stream;
    ng_batches stream;
    ng_tensor bx, by;       /* the gradient batch */
    ng_precond *self;       /* the preconditioner (its data-parallel shard, natgrad/precond.h) */
} tn;

#define T(p) ((tn *)(p)->impl)

/* ---- data parallelism ---------------------------------------------------------------------------
 * Each rank's gradient batch is its shard (columns [lo, hi) of the global batch); the gradient is
 * already the global one. Every quantity taken over the batch is a shard mean weighted by the
 * shard's share and summed over the ranks: the curvature products C v (CG / MINRES-QLP), h at
 * every trial point of the searches, h(theta) and HF's diagonal. All else (the solver's scalars,
 * the searches' decisions, rho, lambda) is computed from those sums and the all-reduced gradient,
 * so it is bit-identical on every rank. The sampled Fisher draws each case's targets by its column
 * in the global batch (ng_net_fvp_at with col0 = lo), so the ranks draw what one process draws. A
 * separate metric stream (--metric separate | unlabeled)
 * is not sharded: every rank draws the same whole metric batch and its products need no sum. */
static int dist_on(const tn *k) { return k->self->dist.comm && k->self->dist.comm->world > 1; }

static double shard_weight(const tn *k) {
    return (double)(k->self->dist.hi - k->self->dist.lo) / (double)k->self->dist.batch;
}

/* a device vector of n floats: the shard-weighted sum over the ranks (in place) */
static ng_status reduce_vec(tn *k, float *x, const char *what) {
    ng_status s;
    if (!dist_on(k)) return NG_OK;
    NG_TRY(ng_scal(k->net->be, k->n, (float)shard_weight(k), x));
    NG_RANGE_CAT(NG_CAT_COMM, "tn all-reduce", s, ng_comm_allreduce(k->self->dist.comm, k->net->be, NG_F32, x, k->n, what));
    return s;
}

/* a host mean over the shard: the shard-weighted sum over the ranks */
static ng_status reduce_mean(tn *k, double *v, const char *what) {
    ng_status s;
    if (!dist_on(k)) return NG_OK;
    *v *= shard_weight(k);
    NG_RANGE_CAT(NG_CAT_COMM, "tn all-reduce", s, ng_comm_allreduce_host(k->self->dist.comm, v, 1, what));
    return s;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static ng_status vdot(ng_backend *be, size_t n, const float *x, const float *y, double *out) {
    float f;
    NG_TRY(ng_dot(be, n, x, y, &f));
    *out = f;
    return NG_OK;
}

/* 1/2 ||theta||^2 over the parameters that take weight decay */
static ng_status decay_norm2(ng_model *m, double *out) {
    int i;
    double s = 0.0;
    for (i = 0; i < ng_arena_count(&m->params); i++) {
        const ng_tensor *pt = ng_arena_view(&m->params, i);
        float r;
        if (!m->decay[i]) continue;
        NG_TRY(ng_nrm2(m->be, ng_tensor_count(pt), pt->data, &r));
        s += 0.5 * (double)r * (double)r;
    }
    *out = s;
    return NG_OK;
}

/* ---- the model's calls: a network or a cnn ------------------------------------------------------- */
static int model_is_cnn(const ng_model *m) { return m && strcmp(m->iface->kind, "cnn") == 0; }
/* a cnn's objective in training mode (batch norm on the batch's statistics, the function h0 and
 * the gradient come from) as the segment "tn objective" (ng_cnn_objective_seg: its per-case
 * objectives in k->sums); a network's: net_objective_seg */
static ng_status cnn_evaluate(tn *k, double *h) {
    return ng_cnn_objective_seg(k->self->segs, "tn objective", k->net, &k->bx, &k->sums, &k->sums_cap, h);
}
static ng_status m_batch_loss(tn *k, ng_model *m, double *h) {
    double e;
    return k->is_cnn ? ng_cnn_batch_loss(m, h, &e) : ng_net_batch_loss(m, h, &e);
}
static ng_status m_current_batch(tn *k, ng_model *m) {
    return k->is_cnn ? ng_cnn_current_batch(m, &k->bx, &k->by) : ng_net_current_batch(m, &k->bx, &k->by);
}
static ng_status m_set_batch(tn *k, ng_model *m, const ng_tensor *x) {
    return k->is_cnn ? ng_cnn_set_batch(m, x, NULL) : ng_net_set_batch(m, x, NULL);
}

/* a network's objective on the gradient batch at the parameters in the arena, as the CUDA-graph
 * segment "tn objective" (ng_net_evaluate_seg; eager without --cuda-graph). The trial point is formed
 * eagerly before (its step sizes change every evaluation), so one graph serves every evaluation of a
 * batch. */
static ng_status net_objective_seg(tn *k, double *h) {
    return ng_net_evaluate_seg(k->self->segs, "tn objective", k->net, &k->bx, &k->sums, &k->sums_cap, h);
}

/* h at the parameters now in the arena, on the gradient batch (a network's pass in inference mode,
 * a segment; a cnn's in training mode) */
static ng_status objective_here(tn *k, double *h) {
    double r = 0.0;
    if (k->is_cnn) NG_TRY(cnn_evaluate(k, h));
    else NG_TRY(net_objective_seg(k, h));
    NG_TRY(reduce_mean(k, h, "the objective at a trial point"));
    if (k->cfg.eta > 0.0) {
        NG_TRY(decay_norm2(k->net, &r));
        *h += k->cfg.eta * r;
    }
    k->evals++;
    if (!FINITE(*h)) *h = INFINITY;
    return NG_OK;
}

/* h(theta + a u + b v) (v may be NULL); theta is in k->backup, the arena is restored after */
static ng_status objective_at(tn *k, double a, const float *u, double b, const float *v, double *h) {
    ng_backend *be = k->net->be;
    float *th = k->net->param_flat.data;
    ng_status s;
    NG_TRY(ng_copy(be, th, k->backup.data, k->n * sizeof(float)));
    if (a != 0.0) NG_TRY(ng_axpby(be, k->n, (float)a, u, 1.0f, th));
    if (v && b != 0.0) NG_TRY(ng_axpby(be, k->n, (float)b, v, 1.0f, th));
    s = objective_here(k, h);
    NG_TRY(ng_copy(be, th, k->backup.data, k->n * sizeof(float)));
    return s;
}

/* ---- HF's diagonal preconditioner ------------------------------------------------------------- */

/* floats of scratch the diagonal needs for a batch of `cases`: the squares of one layer's a-bar and g */
static size_t hf_scratch_floats(const ng_net_config *nc, int cases) {
    size_t most = 0;
    int l;
    for (l = 1; l <= nc->n_layers; l++) {
        size_t need = ((size_t)nc->dims[l - 1] + 1 + (size_t)nc->dims[l]) * (size_t)cases;
        if (need > most) most = need;
    }
    return most;
}

/* the diagonal with caller-provided scratch (hf_scratch_floats of the batch) */
static ng_status hf_minv(ng_backend *be, size_t n, double lambda, double power, const float *diag, float *tmp, float *minv);

static ng_status hf_diagonal(ng_model *m, double lambda, double power, float *diag, float *tmp, float *minv, float *scratch) {
    const ng_net_config *nc;
    ng_backend *be;
    int l, L, pi = 0;
    if (!m || strcmp(m->iface->kind, "net") != 0) return ng_error(NG_ERR_INVALID_ARG, "HF preconditioner: needs a network");
    nc = ng_net_config_of(m);
    be = m->be;
    L = nc->n_layers;
    for (l = 0; l < L; l++)
        if (nc->bn[l])
            return ng_error(NG_ERR_UNSUPPORTED, "HF preconditioner: layer %d uses batch normalisation, whose per-case gradients are not "
                            "separable: use --hf-precond 0", l + 1);
    for (l = 1; l <= L; l++) {
        char an[16], gn[16];
        ng_tensor A, G, W;
        ng_op_args o;
        int m_cases, rows_a, rows_g;
        float *sqA, *sqG;
        ng_status s;
        snprintf(an, sizeof an, "a%d", l - 1);
        snprintf(gn, sizeof gn, "g%d", l);
        NG_TRY(ng_model_statistic(m, an, &A));
        NG_TRY(ng_model_statistic(m, gn, &G));
        W = *ng_arena_view(&m->params, pi);
        pi += 2;
        m_cases = A.cols;
        rows_a = A.rows;
        rows_g = G.rows;
        sqA = scratch;
        sqG = sqA + (size_t)rows_a * m_cases;
        memset(&o, 0, sizeof o);
        o.op = NG_OP_OUTER_SCALE;
        o.outer_scale.mode = NG_OSCALE_SQUARE;
        o.outer_scale.rows = rows_a;
        o.outer_scale.cols = m_cases;
        o.outer_scale.x = A.data;
        o.outer_scale.ldx = A.ld;
        o.outer_scale.out = sqA;
        o.outer_scale.ldo = rows_a;
        s = ng_run_op(be, &o);
        if (s == NG_OK) {
            o.outer_scale.rows = rows_g;
            o.outer_scale.x = G.data;
            o.outer_scale.ldx = G.ld;
            o.outer_scale.out = sqG;
            o.outer_scale.ldo = rows_g;
            s = ng_run_op(be, &o);
        }
        /* [W b] block (d_l x (d_{l-1} + 1)) = m (g o g)(a o a)^T: g = (1/m) dL_i/dz per case, so the
         * per-case gradient of h_i is m g_i a_i^T and the mean of its squares m sum_i g_i^2 a_i^2 */
        if (s == NG_OK)
            s = ng_gemm(be, 0, 1, rows_g, rows_a, m_cases, (float)m_cases, sqG, rows_g, sqA, rows_a, 0.0f,
                        diag + (W.data - m->param_flat.data), rows_g);
        NG_TRY(s);
    }
    return hf_minv(be, ng_model_size(m), lambda, power, diag, tmp, minv);
}

/* minv = (diag + lambda)^-power: tmp = lambda + diag, minv = 1 * max(tmp, tiny)^-power */
static ng_status hf_minv(ng_backend *be, size_t n, double lambda, double power, const float *diag, float *tmp, float *minv) {
    {
        ng_op_args o;
        if (n > 2147483647u) return ng_error(NG_ERR_UNSUPPORTED, "HF preconditioner: %zu parameters exceed 2^31 - 1", n);
        NG_TRY(ng_fill(be, n, (float)lambda, tmp));
        NG_TRY(ng_axpby(be, n, 1.0f, diag, 1.0f, tmp));
        NG_TRY(ng_fill(be, n, 1.0f, minv));
        memset(&o, 0, sizeof o);
        o.op = NG_OP_OUTER_SCALE;
        o.outer_scale.mode = NG_OSCALE_POW;
        o.outer_scale.rows = 1;
        o.outer_scale.cols = (int)n;
        o.outer_scale.x = minv;
        o.outer_scale.ldx = 1;
        o.outer_scale.v = tmp;
        o.outer_scale.floor = 1e-30f;
        o.outer_scale.power = (float)-power;
        o.outer_scale.out = minv;
        o.outer_scale.ldo = 1;
        return ng_run_op(be, &o);
    }
}

size_t ng_tn_hf_scratch_floats(const ng_model *m, int cases) {
    if (!m || strcmp(m->iface->kind, "net") != 0 || cases < 1) return 0;
    return hf_scratch_floats(ng_net_config_of(m), cases);
}

ng_status ng_tn_hf_diagonal_ws(ng_model *m, double lambda, double power, float *diag, float *tmp, float *minv, float *scratch) {
    return hf_diagonal(m, lambda, power, diag, tmp, minv, scratch);
}

ng_status ng_tn_hf_diagonal(ng_model *m, double lambda, double power, float *diag, float *tmp, float *minv) {
    ng_tensor a0;
    void *mem;
    ng_status s;
    if (!m || strcmp(m->iface->kind, "net") != 0) return ng_error(NG_ERR_INVALID_ARG, "HF preconditioner: needs a network");
    NG_TRY(ng_model_statistic(m, "a0", &a0));
    NG_TRY(ng_alloc(m->be, sizeof(float) * hf_scratch_floats(ng_net_config_of(m), a0.cols), &mem));
    s = hf_diagonal(m, lambda, power, diag, tmp, minv, (float *)mem);
    ng_free(m->be, mem);
    return s;
}

/* ---- the solve ----------------------------------------------------------------------------------- */

static ng_status curvature_local(tn *k, const float *x, float *y) {
    ng_tensor tx = ng_tensor_matrix((float *)x, (int)k->n, 1, (int)k->n), ty = ng_tensor_matrix(y, (int)k->n, 1, (int)k->n);
    if (k->is_cnn && k->cfg.curvature == NG_TN_CURV_HESSIAN) return ng_cnn_hvp(k->net, &tx, &ty);
    if (k->is_cnn && k->fstep_dev)
        return ng_cnn_fvp_dev(k->net, k->cfg.fisher, k->cfg.fisher_samples, k->fisher_key, (uint64_t *)k->fstep.ptr, &tx, &ty);
    if (k->is_cnn)
        return ng_cnn_fvp(k->net, k->cfg.fisher, k->cfg.fisher_samples, k->fisher_key, ng_tn_fisher_step(k->t_now), &tx, &ty);
    if (k->cfg.curvature == NG_TN_CURV_HESSIAN) return ng_net_hvp(k->net, &tx, &ty);
    if (k->cfg.fisher != NG_FISHER_EXACT) { /* sampled targets drawn by the case's column in the global batch */
        const uint64_t col0 = dist_on(k) && !k->have_stream ? (uint64_t)k->self->dist.lo : 0;
        if (k->fstep_dev) /* the step read from the device (advance 0), as graph segments replay it */
            return ng_net_fvp_dev(k->net, k->cfg.fisher, k->cfg.fisher_samples, k->fisher_key, (uint64_t *)k->fstep.ptr,
                                  col0, &tx, &ty);
        return ng_net_fvp_at(k->net, k->cfg.fisher, k->cfg.fisher_samples, k->fisher_key, ng_tn_fisher_step(k->t_now),
                             col0, &tx, &ty);
    }
    return ng_net_gvp(k->net, &tx, &ty);
}

/* the curvature product as a CUDA-graph segment (natgrad/graph.h; eager without --cuda-graph):
 * keyed by x, y, the product's kind (and for the sampled Fisher its stream key and where its step
 * is read: device memory under segments), with the network's pass state. On several ranks the
 * segment also holds the product's shard weighting and NCCL all-reduce (reduce_vec; not for a
 * separate metric stream, whole on every rank), so a replay reduces too: the weight and the shard's
 * first column (the sampled targets' global columns) are in the key. */
typedef struct curv_ctx {
    ng_model *m; /* first: ng_model_seg_state_get */
    tn *k;
    const float *x;
    float *y;
} curv_ctx;
static ng_status curv_body(void *user) {
    curv_ctx *c = (curv_ctx *)user;
    NG_TRY(curvature_local(c->k, c->x, c->y));
    return c->k->have_stream ? NG_OK : reduce_vec(c->k, c->y, "a curvature product");
}
static ng_status curvature_seg(tn *k, const float *x, float *y) {
    static const ng_graph_seg seg = {"tn curvature product", curv_body, ng_model_seg_state_get, ng_model_seg_state_set};
    curv_ctx c;
    uint64_t key[9];
    const int reduced = dist_on(k) && !k->have_stream;
    c.m = k->net;
    c.k = k;
    c.x = x;
    c.y = y;
    key[0] = ng_graph_key_ptr(x);
    key[1] = ng_graph_key_ptr(y);
    key[2] = (uint64_t)k->n;
    key[3] = (uint64_t)(uint32_t)k->cfg.curvature << 32 | (uint32_t)k->cfg.fisher;
    key[4] = (uint64_t)(uint32_t)k->cfg.fisher_samples;
    key[5] = reduced ? ng_graph_key_f64(shard_weight(k)) : 0;
    key[6] = reduced ? (uint64_t)k->self->dist.lo : 0;
    if (k->is_cnn && k->cfg.curvature == NG_TN_CURV_HESSIAN && k->self->segs)
        NG_TRY(ng_cnn_hvp_prepare(k->net)); /* its workspace, not allocated inside a capture */
    if (k->cfg.fisher != NG_FISHER_SAMPLED || k->cfg.curvature == NG_TN_CURV_HESSIAN)
        return ng_graph_seg_run(k->self->segs, &seg, &c, key, 7);
    /* the sampled targets' stream: its step on the device while segments replay (fstep_dev), else by
     * value (a new graph every update) */
    key[7] = k->fisher_key;
    key[8] = k->fstep_dev ? ng_graph_key_ptr(k->fstep.ptr) : ng_tn_fisher_step(k->t_now);
    return ng_graph_seg_run(k->self->segs, &seg, &c, key, 9);
}

static ng_status curvature_apply(void *user, const float *x, float *y) {
    tn *k = (tn *)user;
    NG_TRY(curvature_seg(k, x, y)); /* reduced over the ranks inside (but a separate metric stream's) */
    if (!dist_on(k) || k->have_stream) return NG_OK;
    /* the segment's all-reduce, within --comm-timeout (as the eager one waits) */
    return ng_comm_wait_device(k->self->dist.comm, k->net->be, "a curvature product (in its graph segment)");
}

/* sol = (C + damp I)^-1 rhs from the start in sol (CG) or 0 (MINRES-QLP) */
static ng_status solve(tn *k, const float *rhs, const float *minv, int keep) {
    ng_linop A;
    double damp = k->lambda + k->cfg.eta;
    A.n = k->n;
    A.apply = curvature_apply;
    A.user = k;
    if (k->cfg.solver == NG_TN_SOLVER_MINRESQLP) {
        ng_minresqlp_config mc;
        ng_minresqlp_config_default(&mc);
        mc.max_iter = k->maxit;
        mc.rtol = rtol_of(&k->cfg);
        mc.lambda = damp;
        NG_TRY(ng_minresqlp_solve(&k->mq, &A, rhs, k->sol.data, &mc, &k->mqr));
        k->solver_iters = k->mqr.iters;
        k->solver_stop = k->mqr.stop;
        k->rel_res = k->mqr.rel_res;
        return NG_OK;
    }
    k->cgc.lambda = damp;
    k->cgc.max_keep = keep ? HF_KEEP : 0;
    k->cgc.segs = k->self->segs && k->self->segs->on ? k->self->segs : NULL; /* no collective inside */
    NG_TRY(ng_cg_solve(&k->cg, &A, rhs, k->sol.data, minv, &k->cgc, &k->cgr));
    k->solver_iters = k->cgr.iters;
    k->solver_stop = k->cgr.stop;
    k->rel_res = k->cgr.rel_res;
    return NG_OK;
}

/* ---- searches ------------------------------------------------------------------------------------ */

typedef struct line_ctx {
    tn *k;
    const float *u, *v; /* h(theta + x0 u + x1 v) */
} line_ctx;

static ng_status line_f(void *user, const double *x, double *fx) {
    line_ctx *c = (line_ctx *)user;
    return objective_at(c->k, x[0], c->u, 0.0, NULL, fx);
}
static ng_status plane_f(void *user, const double *x, double *fx) {
    line_ctx *c = (line_ctx *)user;
    return objective_at(c->k, x[0], c->u, x[1], c->v, fx);
}

/* best a > 0 for h(theta + a d) from t0 (a = 0 when nothing decreases); slope = g . d */
static ng_status line_search(tn *k, const float *d, double slope, double t0, double *a, double *ha) {
    ng_line_search_opts o;
    ng_line_search_result r;
    line_ctx c = {k, d, NULL};
    ng_line_search_opts_default(&o);
    o.t0 = t0;
    o.max_evals = k->cfg.line_evals;
    NG_TRY(ng_line_search(line_f, &c, k->h0, slope, &o, &r));
    *a = r.t;
    *ha = r.phi;
    return NG_OK;
}

/* ---- the preconditioner ------------------------------------------------------------------------- */

static ng_status tn_observe(ng_precond *p, ng_model *m, uint64_t t) {
    tn *k = T(p);
    double r = 0.0;
    k->evals = 0;
    k->solve_s = k->search_s = 0.0;
    NG_TRY(m_batch_loss(k, m, &k->h0));
    NG_TRY(reduce_mean(k, &k->h0, "the objective"));
    if (k->cfg.eta > 0.0) {
        NG_TRY(decay_norm2(m, &r));
        k->h0 += k->cfg.eta * r;
    }
    return m_current_batch(k, m);
}

static ng_status phase_end(tn *k, double t0, double *acc) {
    if (k->cfg.timing) NG_TRY(ng_synchronize(k->net->be));
    *acc += now_s() - t0;
    return NG_OK;
}

static ng_status tn_apply(ng_precond *p, ng_model *m, uint64_t t) {
    tn *k = T(p);
    ng_backend *be = p->be;
    float *g = m->grad_flat.data, *delta = k->u.data;
    const float *minv = NULL;
    double t0 = now_s(), gd = 0.0, a = 0.0, b = 0.0, h1 = NAN;
    int method = k->cfg.method, have_h1 = 0;
    k->beta = 0.0;
    k->chosen_iter = 0;
    k->pred = NAN;
    k->t_now = t;
    /* under graph segments the sampled Fisher reads its stream step from the device (the same draws) */
    k->fstep_dev = k->self->segs && k->self->segs->on && k->cfg.fisher == NG_FISHER_SAMPLED &&
                   k->cfg.curvature != NG_TN_CURV_HESSIAN;
    if (k->fstep_dev) {
        const uint64_t st[2] = {ng_tn_fisher_step(t), 0}; /* the step, its ticket 0 */
        NG_TRY(ng_set(be, k->fstep.ptr, st, sizeof st));
    }
    NG_TRY(ng_copy(be, k->grad.data, g, k->n * sizeof(float)));
    NG_TRY(ng_copy(be, k->backup.data, m->param_flat.data, k->n * sizeof(float)));
    /* HF's preconditioner from the gradient pass's per-case statistics */
    if (method == NG_TN_HF && k->cfg.hf_precond) {
        ng_tensor a0;
        size_t need;
        NG_TRY(ng_model_statistic(m, "a0", &a0));
        need = hf_scratch_floats(ng_net_config_of(m), a0.cols);
        if (need > k->sq_cap) {
            if (k->sq) ng_free(be, k->sq);
            k->sq = NULL;
            k->sq_cap = 0;
            NG_TRY(ng_alloc(be, need * sizeof(float), &k->sq));
            k->sq_cap = need;
        }
        NG_TRY_RANGE(NG_CAT_STATS, "hf diagonal", hf_diagonal(m, k->lambda + k->cfg.eta, k->cfg.hf_power, k->diag.data, k->delta_tmp.data, k->minv.data, (float *)k->sq));
        if (dist_on(k)) {
            /* the diagonal of the whole batch, then its inverse power again */
            NG_TRY(reduce_vec(k, k->diag.data, "the HF diagonal"));
            NG_TRY(hf_minv(be, k->n, k->lambda + k->cfg.eta, k->cfg.hf_power, k->diag.data, k->delta_tmp.data, k->minv.data));
        }
        minv = k->minv.data;
    }
    /* the metric batch */
    if (k->have_stream) {
        ng_tensor xm;
        NG_TRY(ng_batches_next(&k->stream, &xm));
        NG_TRY(m_set_batch(k, m, &xm));
    }
    /* the solve */
    if (method == NG_TN_HF) {
        /* p = -(C + damp I)^-1 g from decay x the previous solution */
        NG_TRY(ng_axpby(be, k->n, 0.0f, k->prev.data, k->have_prev ? (float)k->cfg.hf_decay : 0.0f, k->prev.data));
        NG_TRY(ng_copy(be, k->sol.data, k->prev.data, k->n * sizeof(float)));
        NG_TRY(ng_axpby(be, k->n, -1.0f, k->grad.data, 0.0f, k->delta_tmp.data));
        NG_TRY_RANGE(NG_CAT_SOLVER, "tn solve", solve(k, k->delta_tmp.data, minv, k->cfg.hf_backtrack));
        NG_TRY(ng_copy(be, k->prev.data, k->sol.data, k->n * sizeof(float)));
        k->have_prev = 1;
    } else {
        NG_TRY(ng_memset0(be, k->sol.data, k->n * sizeof(float)));
        NG_TRY_RANGE(NG_CAT_SOLVER, "tn solve", solve(k, k->grad.data, NULL, 0));
    }
    NG_TRY(phase_end(k, t0, &k->solve_s));
    /* the step */
    t0 = now_s();
    switch (method) {
    case NG_TN_NGD: /* delta = -lr n */
        a = k->cfg.lr;
        NG_TRY(ng_axpby(be, k->n, (float)-a, k->sol.data, 0.0f, delta));
        break;
    case NG_TN_NGD_L: {
        double slope;
        NG_TRY(ng_axpby(be, k->n, -1.0f, k->sol.data, 0.0f, delta));
        NG_TRY(vdot(be, k->n, k->grad.data, delta, &slope));
        NG_TRY_RANGE(NG_CAT_SOLVER, "tn line search", line_search(k, delta, slope, k->step > 0.0 ? k->step : k->cfg.lr, &a, &h1));
        have_h1 = 1;
        NG_TRY(ng_scal(be, k->n, (float)a, delta));
        break;
    }
    case NG_TN_NCG_F: {
        /* d = -n + beta d_prev, beta = PR+ on natural gradients; delta = a d */
        double n_g, n_gp = 0.0, slope;
        NG_TRY(vdot(be, k->n, k->sol.data, k->grad.data, &n_g));
        if (k->have_prev) NG_TRY(vdot(be, k->n, k->sol.data, k->gprev.data, &n_gp));
        b = k->have_prev ? ng_tn_polak_ribiere(n_g, n_gp, k->np_gp) : 0.0;
        k->beta = b;
        NG_TRY(ng_axpby(be, k->n, -1.0f, k->sol.data, (float)b, k->prev.data)); /* prev = d */
        NG_TRY(vdot(be, k->n, k->grad.data, k->prev.data, &slope));
        if (!(slope < 0.0)) { /* not a descent direction: restart with -n */
            k->beta = b = 0.0;
            NG_TRY(ng_axpby(be, k->n, -1.0f, k->sol.data, 0.0f, k->prev.data));
            NG_TRY(vdot(be, k->n, k->grad.data, k->prev.data, &slope));
        }
        NG_TRY_RANGE(NG_CAT_SOLVER, "tn line search", line_search(k, k->prev.data, slope, k->step > 0.0 ? k->step : k->cfg.lr, &a, &h1));
        have_h1 = 1;
        NG_TRY(ng_axpby(be, k->n, (float)a, k->prev.data, 0.0f, delta));
        NG_TRY(ng_copy(be, k->gprev.data, k->grad.data, k->n * sizeof(float)));
        k->np_gp = n_g;
        k->have_prev = 1;
        break;
    }
    case NG_TN_NCG_L: {
        /* delta = -a n + b s_prev minimising h (eq. 21); the first update: a line search */
        double slope;
        NG_TRY(ng_axpby(be, k->n, -1.0f, k->sol.data, 0.0f, delta)); /* delta = -n for now */
        if (!k->have_prev) {
            NG_TRY(vdot(be, k->n, k->grad.data, delta, &slope));
            NG_TRY_RANGE(NG_CAT_SOLVER, "tn line search", line_search(k, delta, slope, k->step > 0.0 ? k->step : k->cfg.lr, &a, &h1));
            b = 0.0;
        } else {
            ng_min2d_opts o;
            ng_min2d_result r;
            line_ctx c = {k, delta, k->prev.data};
            double x0[2];
            ng_min2d_opts_default(&o);
            x0[0] = k->step > 0.0 ? k->step : k->cfg.lr;
            x0[1] = 0.0;
            o.scale[0] = 0.5 * x0[0];
            o.scale[1] = 0.5;
            o.max_evals = k->cfg.search_evals;
            NG_TRY(ng_min2d(plane_f, &c, x0, NAN, &o, &r));
            a = r.x[0];
            b = r.x[1];
            h1 = r.fx;
            if (!(h1 < k->h0)) a = b = 0.0, h1 = k->h0; /* never worse than standing still */
        }
        have_h1 = 1;
        k->beta = b;
        /* delta = a (-n) + b s_prev; s_prev = delta */
        NG_TRY(ng_axpby(be, k->n, (float)b, k->prev.data, (float)a, delta));
        NG_TRY(ng_copy(be, k->prev.data, delta, k->n * sizeof(float)));
        k->have_prev = 1;
        break;
    }
    case NG_TN_HF: {
        /* backtracking over the kept iterates (from the last backwards, while h decreases) */
        int j = k->cgr.n_kept - 1, best = j;
        double hb = INFINITY;
        if (k->cfg.hf_backtrack && k->cgr.n_kept > 0) {
            for (; j >= 0; j--) {
                double hj;
                NG_TRY(objective_at(k, 1.0, k->cg.kept + (size_t)j * k->n, 0.0, NULL, &hj));
                if (hj < hb) {
                    hb = hj;
                    best = j;
                } else {
                    break;
                }
            }
            NG_TRY(ng_copy(be, delta, k->cg.kept + (size_t)best * k->n, k->n * sizeof(float)));
            k->chosen_iter = k->cgr.kept_iter[best];
            k->pred = k->cgr.kept_phi[best];
        } else {
            NG_TRY(ng_copy(be, delta, k->sol.data, k->n * sizeof(float)));
            NG_TRY(objective_at(k, 1.0, delta, 0.0, NULL, &hb));
            k->chosen_iter = k->cgr.iters;
            k->pred = k->cgr.phi;
        }
        h1 = hb;
        have_h1 = 1;
        a = 1.0;
        /* the quadratic model without the damping: phi - 1/2 lambda ||p||^2 */
        {
            double pp;
            NG_TRY(vdot(be, k->n, delta, delta, &pp));
            if (!FINITE(k->pred)) {
                /* phi was not tracked (no kept iterates): 1/2 p^T C p + g^T p from one product */
                double pcp, gp;
                NG_TRY(curvature_apply(k, delta, k->delta_tmp.data));
                NG_TRY(vdot(be, k->n, delta, k->delta_tmp.data, &pcp));
                NG_TRY(vdot(be, k->n, k->grad.data, delta, &gp));
                k->pred = 0.5 * pcp + 0.5 * k->cfg.eta * pp + gp;
            } else {
                k->pred -= 0.5 * k->lambda * pp;
            }
        }
        if (!(h1 < k->h0)) {
            /* no kept iterate decreases h: reject the step (lambda grows through rho) */
            NG_TRY(ng_memset0(be, delta, k->n * sizeof(float)));
            a = 0.0;
        }
        break;
    }
    }
    /* rho and Levenberg-Marquardt */
    if (method != NG_TN_HF) {
        NG_TRY(vdot(be, k->n, k->grad.data, delta, &gd));
        k->pred = gd; /* Pascanu & Bengio eq. 32: the first-order prediction */
        if (k->cfg.rho_model == NG_TN_RHO_QUADRATIC && k->cfg.adapt_lambda) {
            /* Martens' model: + 1/2 delta^T (C + eta) delta on the metric batch */
            double dcd, dd;
            NG_TRY(curvature_apply(k, delta, k->delta_tmp.data));
            NG_TRY(vdot(be, k->n, delta, k->delta_tmp.data, &dcd));
            NG_TRY(vdot(be, k->n, delta, delta, &dd));
            k->pred = gd + 0.5 * (dcd + k->cfg.eta * dd);
        }
    }
    if (k->cfg.adapt_lambda) {
        if (!have_h1) NG_TRY(objective_at(k, 1.0, delta, 0.0, NULL, &h1));
        k->rho = (h1 - k->h0) / k->pred;
        if (method == NG_TN_HF && a == 0.0) k->rho = -INFINITY;
        k->lambda = ng_tn_lm_update(k->lambda, k->rho, k->cfg.lambda_min);
    } else {
        k->rho = NAN;
    }
    k->h1 = have_h1 || k->cfg.adapt_lambda ? h1 : NAN;
    k->step = a > 0.0 ? a : k->step;
    if (method == NG_TN_NGD) k->step = a;
    k->last_a = a;
    NG_TRY(phase_end(k, t0, &k->search_s));
    /* the gradient arena gets -delta (the update rule adds it back: theta - 1 * (-delta)) */
    return ng_axpby(be, k->n, -1.0f, delta, 0.0f, g);
}

static const char *const tn_columns[] = {"lambda", "rho", "alpha", "beta", "cg_iters", "cg_stop", "rel_res", "hf_iter", "evals",
                                         "solve_s", "search_s", NULL};

static ng_status tn_log_values(ng_precond *p, double *v) {
    tn *k = T(p);
    v[0] = k->lambda;
    v[1] = k->rho;
    v[2] = k->last_a;
    v[3] = k->beta;
    v[4] = k->solver_iters;
    v[5] = k->solver_stop;
    v[6] = k->rel_res;
    v[7] = k->cfg.method == NG_TN_HF ? (double)k->chosen_iter : NAN;
    v[8] = k->evals;
    v[9] = k->solve_s;
    v[10] = k->search_s;
    return NG_OK;
}

ng_status ng_tn_get_state(ng_precond *p, ng_tn_state *s) {
    tn *k;
    if (!p || !p->iface || strcmp(p->iface->name, "tn") != 0)
        return ng_error(NG_ERR_INVALID_ARG, "ng_tn_get_state: not a truncated-Newton preconditioner");
    k = T(p);
    s->lambda = k->lambda;
    s->rho = k->rho;
    s->step = k->last_a;
    s->beta = k->beta;
    s->pred = k->pred;
    s->h0 = k->h0;
    s->h1 = k->h1;
    s->rel_res = k->rel_res;
    s->cg_iters = k->solver_iters;
    s->cg_stop = k->solver_stop;
    s->evals = k->evals;
    s->chosen_iter = k->chosen_iter;
    return NG_OK;
}

ng_status ng_tn_get_kept(ng_precond *p, int j, int *count, int *iter, ng_tensor *x) {
    tn *k;
    if (!p || !p->iface || strcmp(p->iface->name, "tn") != 0)
        return ng_error(NG_ERR_INVALID_ARG, "ng_tn_get_kept: not a truncated-Newton preconditioner");
    k = T(p);
    if (count) *count = k->cfg.method == NG_TN_HF && k->cfg.hf_backtrack ? k->cgr.n_kept : 0;
    if (j < 0) return NG_OK;
    if (k->cfg.method != NG_TN_HF || !k->cfg.hf_backtrack || j >= k->cgr.n_kept)
        return ng_error(NG_ERR_INVALID_ARG, "ng_tn_get_kept: no kept iterate %d", j);
    *iter = k->cgr.kept_iter[j];
    *x = ng_tensor_matrix(k->cg.kept + (size_t)j * k->n, (int)k->n, 1, (int)k->n);
    return NG_OK;
}

/* ---- checkpoints --------------------------------------------------------------------------------- */

static ng_status save_config(const ng_tn_config *c, ng_ckpt *ck) {
    NG_TRY(ng_ckpt_set_str(ck, "tn.method", ng_tn_method_name(c->method)));
    NG_TRY(ng_ckpt_set_i64(ck, "tn.solver", c->solver));
    NG_TRY(ng_ckpt_set_i64(ck, "tn.curvature", c->curvature));
    NG_TRY(ng_ckpt_set_i64(ck, "tn.max_iter", c->max_iter));
    NG_TRY(ng_ckpt_set_f64(ck, "tn.rtol", c->rtol));
    NG_TRY(ng_ckpt_set_f64(ck, "tn.lambda0", c->lambda0));
    NG_TRY(ng_ckpt_set_i64(ck, "tn.adapt_lambda", c->adapt_lambda));
    NG_TRY(ng_ckpt_set_i64(ck, "tn.rho_model", c->rho_model));
    NG_TRY(ng_ckpt_set_f64(ck, "tn.lambda_min", c->lambda_min));
    NG_TRY(ng_ckpt_set_f64(ck, "tn.lr", c->lr));
    NG_TRY(ng_ckpt_set_f64(ck, "tn.eta", c->eta));
    NG_TRY(ng_ckpt_set_i64(ck, "tn.metric", c->metric));
    NG_TRY(ng_ckpt_set_i64(ck, "tn.metric_batch", c->metric_batch));
    NG_TRY(ng_ckpt_set_i64(ck, "tn.fisher", c->fisher));
    NG_TRY(ng_ckpt_set_i64(ck, "tn.fisher_samples", c->fisher_samples));
    NG_TRY(ng_ckpt_set_f64(ck, "tn.hf_decay", c->hf_decay));
    NG_TRY(ng_ckpt_set_i64(ck, "tn.hf_precond", c->hf_precond));
    NG_TRY(ng_ckpt_set_f64(ck, "tn.hf_power", c->hf_power));
    NG_TRY(ng_ckpt_set_i64(ck, "tn.hf_backtrack", c->hf_backtrack));
    NG_TRY(ng_ckpt_set_i64(ck, "tn.line_evals", c->line_evals));
    NG_TRY(ng_ckpt_set_i64(ck, "tn.search_evals", c->search_evals));
    return ng_ckpt_set_u64(ck, "tn.seed", c->seed);
}

ng_status ng_tn_config_from_ckpt(const ng_ckpt *ck, ng_tn_config *c) {
    const char *ms;
    int64_t v;
    ng_tn_config_default(c);
    NG_TRY(ng_ckpt_get_str(ck, "tn.method", &ms));
    c->method = ng_tn_method_parse(ms);
    if (c->method < 0) return ng_error(NG_ERR_FORMAT, "checkpoint %s: tn.method '%s' is unknown", ng_ckpt_path(ck), ms);
    NG_TRY(ng_ckpt_get_int(ck, "tn.solver", 0, 1, &v));
    c->solver = (int)v;
    NG_TRY(ng_ckpt_get_int(ck, "tn.curvature", 0, 1, &v));
    c->curvature = (int)v;
    NG_TRY(ng_ckpt_get_int(ck, "tn.max_iter", 0, 100000, &v));
    c->max_iter = (int)v;
    NG_TRY(ng_ckpt_get_f64(ck, "tn.rtol", &c->rtol));
    NG_TRY(ng_ckpt_get_f64(ck, "tn.lambda0", &c->lambda0));
    NG_TRY(ng_ckpt_get_int(ck, "tn.adapt_lambda", 0, 1, &v));
    c->adapt_lambda = (int)v;
    NG_TRY(ng_ckpt_get_int(ck, "tn.rho_model", 0, 1, &v));
    c->rho_model = (int)v;
    NG_TRY(ng_ckpt_get_f64(ck, "tn.lambda_min", &c->lambda_min));
    NG_TRY(ng_ckpt_get_f64(ck, "tn.lr", &c->lr));
    NG_TRY(ng_ckpt_get_f64(ck, "tn.eta", &c->eta));
    NG_TRY(ng_ckpt_get_int(ck, "tn.metric", 0, 2, &v));
    c->metric = (int)v;
    NG_TRY(ng_ckpt_get_int(ck, "tn.metric_batch", 0, 1 << 30, &v));
    c->metric_batch = (int)v;
    if (ng_ckpt_has(ck, "tn.fisher")) { /* checkpoints before the metric choice: exact */
        NG_TRY(ng_ckpt_get_int(ck, "tn.fisher", 0, 2, &v));
        c->fisher = (int)v;
        NG_TRY(ng_ckpt_get_int(ck, "tn.fisher_samples", 1, 1000, &v));
        c->fisher_samples = (int)v;
    }
    NG_TRY(ng_ckpt_get_f64(ck, "tn.hf_decay", &c->hf_decay));
    NG_TRY(ng_ckpt_get_int(ck, "tn.hf_precond", 0, 1, &v));
    c->hf_precond = (int)v;
    NG_TRY(ng_ckpt_get_f64(ck, "tn.hf_power", &c->hf_power));
    NG_TRY(ng_ckpt_get_int(ck, "tn.hf_backtrack", 0, 1, &v));
    c->hf_backtrack = (int)v;
    NG_TRY(ng_ckpt_get_int(ck, "tn.line_evals", 0, 1000, &v));
    c->line_evals = (int)v;
    NG_TRY(ng_ckpt_get_int(ck, "tn.search_evals", 0, 10000, &v));
    c->search_evals = (int)v;
    NG_TRY(ng_ckpt_get_u64(ck, "tn.seed", &c->seed));
    if (ng_tn_config_check(c) != NG_OK)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: truncated-Newton settings out of range: %s", ng_ckpt_path(ck), ng_last_error());
    return NG_OK;
}

static ng_status tn_save(ng_precond *p, ng_ckpt *c) {
    tn *k = T(p);
    NG_TRY(save_config(&k->cfg, c));
    NG_TRY(ng_ckpt_set_f64(c, "tn.lambda", k->lambda));
    NG_TRY(ng_ckpt_set_f64(c, "tn.step", k->step));
    NG_TRY(ng_ckpt_set_f64(c, "tn.np_gp", k->np_gp));
    NG_TRY(ng_ckpt_set_i64(c, "tn.have_prev", k->have_prev));
    if (k->have_stream) {
        NG_TRY(ng_ckpt_set_i64(c, "tn.metric_epoch", k->stream.epoch));
        NG_TRY(ng_ckpt_set_i64(c, "tn.metric_pos", k->stream.pos));
    }
    return NG_OK;
}

static ng_status tn_load(ng_precond *p, const ng_ckpt *c, int apply) {
    tn *k = T(p);
    ng_tn_config cc;
    double lam, step, npg;
    int64_t hp, ep = 0, pos = 0;
    NG_TRY(ng_tn_config_from_ckpt(c, &cc));
    if (cc.method != k->cfg.method || cc.solver != k->cfg.solver || cc.curvature != k->cfg.curvature ||
        cc.max_iter != k->cfg.max_iter || cc.rtol != k->cfg.rtol || cc.lambda0 != k->cfg.lambda0 ||
        cc.adapt_lambda != k->cfg.adapt_lambda || cc.rho_model != k->cfg.rho_model || cc.lambda_min != k->cfg.lambda_min || cc.lr != k->cfg.lr || cc.eta != k->cfg.eta ||
        cc.metric != k->cfg.metric || cc.metric_batch != k->cfg.metric_batch || cc.fisher != k->cfg.fisher ||
        cc.fisher_samples != k->cfg.fisher_samples || cc.hf_decay != k->cfg.hf_decay ||
        cc.hf_precond != k->cfg.hf_precond || cc.hf_power != k->cfg.hf_power || cc.hf_backtrack != k->cfg.hf_backtrack ||
        cc.line_evals != k->cfg.line_evals || cc.search_evals != k->cfg.search_evals || cc.seed != k->cfg.seed)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: its truncated-Newton settings (method %s, metric %s, fisher %s, ...) differ from this "
                        "run's (method %s, metric %s, fisher %s, ...): resume without changing --tn-* / --metric* / --lambda0 / --lr options",
                        ng_ckpt_path(c), ng_tn_method_name(cc.method), ng_tn_metric_name(cc.metric), ng_tn_fisher_name(cc.fisher),
                        ng_tn_method_name(k->cfg.method), ng_tn_metric_name(k->cfg.metric), ng_tn_fisher_name(k->cfg.fisher));
    NG_TRY(ng_ckpt_get_f64(c, "tn.lambda", &lam));
    NG_TRY(ng_ckpt_get_f64(c, "tn.step", &step));
    NG_TRY(ng_ckpt_get_f64(c, "tn.np_gp", &npg));
    NG_TRY(ng_ckpt_get_int(c, "tn.have_prev", 0, 1, &hp));
    if (!(lam > 0.0) || !FINITE(lam) || !(step >= 0.0) || !FINITE(step) || !FINITE(npg))
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: tn.lambda %g / tn.step %g / tn.np_gp %g out of range", ng_ckpt_path(c), lam,
                        step, npg);
    if (k->have_stream) {
        NG_TRY(ng_ckpt_get_int(c, "tn.metric_epoch", 0, 1 << 30, &ep));
        NG_TRY(ng_ckpt_get_int(c, "tn.metric_pos", 0, k->stream.n, &pos));
    }
    if (!apply) return NG_OK;
    k->lambda = lam;
    k->step = step;
    k->np_gp = npg;
    k->have_prev = (int)hp;
    if (k->have_stream) NG_TRY(ng_batches_seek(&k->stream, (int)ep, (int)pos));
    return NG_OK;
}

static void tn_destroy(ng_precond *p) {
    tn *k = T(p);
    if (!k) return;
    ng_cg_ws_free(&k->cg);
    ng_minresqlp_ws_free(&k->mq);
    if (k->sq) ng_free(p->be, k->sq);
    if (k->sums) ng_free(p->be, k->sums);
    if (k->have_stream) ng_batches_free(&k->stream);
    ng_arena_free(&k->scratch);
    free(k);
}

static const struct ng_precond_i tn_iface = {
    .name = "tn",
    .observe = tn_observe,
    .apply = tn_apply,
    .columns = tn_columns,
    .log_values = tn_log_values,
    .save = tn_save,
    .load = tn_load,
    .destroy = tn_destroy,
    .data_parallel = 1,
};

ng_status ng_precond_tn_init(ng_backend *be, ng_model *net, const ng_tn_config *cfg, const float *metric_x, int metric_n,
                             ng_precond **out) {
    ng_precond *p;
    tn *k;
    ng_status s = NG_OK;
    *out = NULL;
    NG_TRY(ng_tn_config_check(cfg));
    if (!net || (strcmp(net->iface->kind, "net") != 0 && !model_is_cnn(net)))
        return ng_error(NG_ERR_INVALID_ARG, "truncated Newton needs a network (natgrad net) or a cnn model, not %s",
                        net ? net->iface->kind : "NULL");
    if (model_is_cnn(net) && (ng_cnn_config_of(net)->augment_pad || ng_cnn_config_of(net)->augment_flip))
        return ng_error(NG_ERR_UNSUPPORTED, "truncated Newton on a cnn with augmentation: the searches and the damping compare "
                        "objectives on the batch as given, the gradient's batch would be augmented: turn augmentation off");
    if (model_is_cnn(net) && cfg->method == NG_TN_HF && cfg->hf_precond)
        return ng_error(NG_ERR_UNSUPPORTED, "hf on a cnn: the diagonal preconditioner needs per-case statistics of dense layers: "
                        "turn it off (hf_precond 0)");
    if (cfg->metric != NG_TN_METRIC_SAME) {
        if (!metric_x || metric_n < 1)
            return ng_error(NG_ERR_INVALID_ARG, "--metric %s: no pool of metric examples was given", ng_tn_metric_name(cfg->metric));
        if (cfg->metric_batch < 1 || cfg->metric_batch > metric_n)
            return ng_error(NG_ERR_INVALID_ARG, "--metric-batch %d: must be in 1 .. %d (the %s pool) with --metric %s", cfg->metric_batch,
                            metric_n, cfg->metric == NG_TN_METRIC_UNLABELED ? "unlabeled" : "training", ng_tn_metric_name(cfg->metric));
    }
    if (cfg->method == NG_TN_HF && cfg->hf_precond && !model_is_cnn(net)) {
        const ng_net_config *nc = ng_net_config_of(net);
        int l;
        for (l = 0; l < nc->n_layers; l++)
            if (nc->bn[l])
                return ng_error(NG_ERR_UNSUPPORTED, "hf: layer %d uses batch normalisation, whose per-case gradients the diagonal "
                                "preconditioner needs are not separable: use --hf-precond 0 or drop +bn", l + 1);
    }
    p = (ng_precond *)calloc(1, sizeof *p);
    k = (tn *)calloc(1, sizeof *k);
    if (!p || !k) {
        free(p);
        free(k);
        return ng_error(NG_ERR_OOM, "truncated Newton: out of host memory");
    }
    p->iface = &tn_iface;
    p->be = be;
    p->impl = k;
    k->self = p;
    ng_arena_begin(&p->state, be, "tn");
    ng_arena_begin(&k->scratch, be, "tn scratch");
    k->cfg = *cfg;
    k->net = net;
    k->is_cnn = model_is_cnn(net);
    k->fisher_key = ng_rng_stream_key(cfg->seed, NG_RNG_TN_TARGETS);
    k->n = ng_model_size(net);
    k->maxit = max_iter_of(cfg);
    k->lambda = cfg->lambda0;
    k->rho = NAN;
    k->step = 0.0;
    ng_cg_config_default(&k->cgc);
    k->cgc.max_iter = k->maxit;
    k->cgc.rtol = rtol_of(cfg);
    if (cfg->method == NG_TN_HF) {
        k->cgc.progress = 1;
        k->cgc.check_curvature = cfg->curvature == NG_TN_CURV_HESSIAN;
    }
    if (k->n > 2147483647u) s = ng_error(NG_ERR_UNSUPPORTED, "truncated Newton: %zu parameters exceed 2^31 - 1", k->n);
    if (s == NG_OK) s = ng_arena_reserve(&p->state, "prev", (int)k->n, 1, &k->prev);
    if (s == NG_OK && cfg->method == NG_TN_NCG_F) s = ng_arena_reserve(&p->state, "gprev", (int)k->n, 1, &k->gprev);
    if (s == NG_OK) s = ng_arena_commit(&p->state);
    if (s == NG_OK) s = ng_memset0(be, k->prev.data, k->n * sizeof(float));
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "grad", (int)k->n, 1, &k->grad);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "sol", (int)k->n, 1, &k->sol);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "backup", (int)k->n, 1, &k->backup);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "delta", (int)k->n, 1, &k->u);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "tmp", (int)k->n, 1, &k->delta_tmp);
    if (s == NG_OK) {
        int two[1] = {2};
        s = ng_arena_reserve_nd(&k->scratch, "fisher_step", NG_F64, 1, two, &k->fstep);
    }
    if (s == NG_OK && cfg->method == NG_TN_HF && cfg->hf_precond) {
        s = ng_arena_reserve(&k->scratch, "minv", (int)k->n, 1, &k->minv);
        if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "diag", (int)k->n, 1, &k->diag);
    }
    if (s == NG_OK) s = ng_arena_commit(&k->scratch);
    if (s == NG_OK) {
        if (cfg->solver == NG_TN_SOLVER_MINRESQLP) s = ng_minresqlp_ws_init(&k->mq, be, k->n, k->maxit);
        else s = ng_cg_ws_init(&k->cg, be, k->n, k->maxit, cfg->method == NG_TN_HF && cfg->hf_backtrack ? HF_KEEP : 0);
    }
    if (s == NG_OK && cfg->metric != NG_TN_METRIC_SAME) {
        s = ng_batches_init(&k->stream, be, metric_x, k->is_cnn ? ng_cnn_batch_rows(net) : ng_net_batch_rows(net), metric_n,
                            cfg->metric_batch,
                            cfg->seed ^ 0x6d657472696cull /* "metric" */, 0, 1);
        if (s == NG_OK) k->have_stream = 1;
    }
    if (s != NG_OK) {
        ng_precond_free(p);
        return s;
    }
    *out = p;
    return NG_OK;
}
