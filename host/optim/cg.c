/* cg.c: preconditioned linear conjugate gradient on (A + lambda I) x = b with A given as products
 * (natgrad/solver.h), every vector and scalar on the device.
 *
 * Iteration i (1-based) with the scalars of row i of ws->sc (rz, pAp, rr, xb, xr):
 *   Ap = (A + lambda I) p                      pAp_i = p . Ap
 *   x += (rz_{i-1} / pAp_i) p                  r -= (rz_{i-1} / pAp_i) Ap      (axpby_dev)
 *   z = minv * r                               rz_i = r . z,  rr_i = r . r
 *   p = z + (rz_i / rz_{i-1}) p                (axpby_dev)
 *   [xb_i = x . b, xr_i = x . r: phi_i = -1/2 (xb_i + xr_i) for the progress rule and kept iterates]
 * then row i goes to pinned memory (get_async) and the host reads row i - 1 (one iteration late,
 * see solver.h). Row 0 (the initial residual, ||b||) is read synchronously before iteration 1: one
 * wait per solve, none per iteration unless check_curvature asks for it. The device rows alternate
 * (iteration i writes row i mod 2 and reads row (i - 1) mod 2; the host copy keeps every row), so
 * every iteration works on the same addresses but for its parity: with cfg->segs its vector work
 * after the product is one CUDA-graph segment (natgrad/graph.h) that replays across iterations and
 * solves. */
#include "natgrad/solver.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "natgrad/graph.h"
#include "natgrad/status.h"

enum { S_RZ = 0, S_PAP, S_RR, S_XB, S_XR, S_BB };

const char *ng_solve_stop_name(int stop) {
    switch (stop) {
    case NG_SOLVE_MAXITER: return "maxiter";
    case NG_SOLVE_RTOL: return "rtol";
    case NG_SOLVE_PROGRESS: return "progress";
    case NG_SOLVE_NEGCURV: return "negcurv";
    case NG_SOLVE_SINGULAR: return "singular";
    default: return "?";
    }
}

void ng_cg_config_default(ng_cg_config *c) {
    memset(c, 0, sizeof *c);
    c->max_iter = 20;
    c->rtol = 1e-4;
    c->lambda = 0.0;
    c->progress = 0;
    c->progress_eps = 5e-4;
    c->progress_min = 10;
    c->max_keep = 0;
    c->keep_factor = 1.3;
    c->check_curvature = 0;
}

ng_status ng_cg_config_check(const ng_cg_config *c) {
    if (!c) return ng_error(NG_ERR_INVALID_ARG, "cg: NULL configuration");
    if (c->max_iter < 1 || c->max_iter > 1000000)
        return ng_error(NG_ERR_INVALID_ARG, "cg: max_iter = %d must be in 1 .. 1000000", c->max_iter);
    if (!(c->rtol >= 0.0) || !isfinite(c->rtol) || c->rtol >= 1.0)
        return ng_error(NG_ERR_INVALID_ARG, "cg: rtol = %g must be in [0, 1)", c->rtol);
    if (!(c->lambda >= 0.0) || !isfinite(c->lambda))
        return ng_error(NG_ERR_INVALID_ARG, "cg: damping lambda = %g must be finite and >= 0", c->lambda);
    if (c->progress != 0 && c->progress != 1)
        return ng_error(NG_ERR_INVALID_ARG, "cg: progress = %d must be 0 or 1", c->progress);
    if (c->progress && (!(c->progress_eps > 0.0) || !isfinite(c->progress_eps) || c->progress_min < 1))
        return ng_error(NG_ERR_INVALID_ARG, "cg: progress rule needs progress_eps > 0 (got %g) and progress_min >= 1 (got %d)",
                        c->progress_eps, c->progress_min);
    if (c->max_keep < 0 || c->max_keep > NG_CG_MAX_KEEP)
        return ng_error(NG_ERR_INVALID_ARG, "cg: max_keep = %d must be in 0 .. %d", c->max_keep, NG_CG_MAX_KEEP);
    if (c->max_keep > 0 && (!(c->keep_factor > 1.0) || !isfinite(c->keep_factor)))
        return ng_error(NG_ERR_INVALID_ARG, "cg: keep_factor = %g must be > 1", c->keep_factor);
    if (c->check_curvature != 0 && c->check_curvature != 1)
        return ng_error(NG_ERR_INVALID_ARG, "cg: check_curvature = %d must be 0 or 1", c->check_curvature);
    return NG_OK;
}

ng_status ng_cg_ws_init(ng_cg_ws *ws, ng_backend *be, size_t n, int max_iter, int max_keep) {
    size_t rows, bytes;
    ng_status s;
    memset(ws, 0, sizeof *ws);
    if (!be || n == 0 || max_iter < 1 || max_keep < 0 || max_keep > NG_CG_MAX_KEEP)
        return ng_error(NG_ERR_INVALID_ARG, "cg workspace: need a backend, n >= 1 (got %zu), max_iter >= 1 (got %d), max_keep in 0 .. %d (got %d)",
                        n, max_iter, NG_CG_MAX_KEEP, max_keep);
    ws->be = be;
    ws->n = n;
    ws->max_iter = max_iter;
    ws->max_keep = max_keep;
    rows = (size_t)max_iter + 1;
    bytes = (4 + (size_t)max_keep) * n * sizeof(float) + rows * NG_CG_NS * sizeof(float);
    if ((s = ng_alloc(be, bytes, &ws->mem)) != NG_OK) return s;
    ws->r = (float *)ws->mem;
    ws->z = ws->r + n;
    ws->p = ws->z + n;
    ws->Ap = ws->p + n;
    ws->kept = ws->Ap + n;
    ws->sc = ws->kept + (size_t)max_keep * n;
    if ((s = ng_memset0(be, ws->sc, rows * NG_CG_NS * sizeof(float))) != NG_OK ||
        (s = ng_alloc_host(be, rows * NG_CG_NS * sizeof(float), (void **)&ws->sc_host)) != NG_OK ||
        (s = ng_event_create(be, &ws->ev[0])) != NG_OK || (s = ng_event_create(be, &ws->ev[1])) != NG_OK) {
        ng_cg_ws_free(ws);
        return s;
    }
    ws->phi_host = (double *)calloc(rows, sizeof(double));
    if (!ws->phi_host) {
        ng_cg_ws_free(ws);
        return ng_error(NG_ERR_OOM, "cg workspace: %zu bytes of host memory", rows * sizeof(double));
    }
    return NG_OK;
}

void ng_cg_ws_free(ng_cg_ws *ws) {
    if (!ws || !ws->be) return;
    if (ws->ev[0]) ng_event_destroy(ws->be, ws->ev[0]);
    if (ws->ev[1]) ng_event_destroy(ws->be, ws->ev[1]);
    if (ws->sc_host) ng_free_host(ws->be, ws->sc_host);
    if (ws->mem) ng_free(ws->be, ws->mem);
    free(ws->phi_host);
    memset(ws, 0, sizeof *ws);
}

/* y = ca (num / den) x + cb (bnum / bden) y on the device */
static ng_status axpby_dev(ng_backend *be, size_t n, float ca, const float *an, const float *ad, const float *x,
                           float cb, const float *bn, const float *bd, float *y) {
    ng_op_args a;
    memset(&a, 0, sizeof a);
    a.op = NG_OP_AXPBY_DEV;
    a.axpby_dev.n = n;
    a.axpby_dev.ca = ca;
    a.axpby_dev.a_num = an;
    a.axpby_dev.a_den = ad;
    a.axpby_dev.x = x;
    a.axpby_dev.cb = cb;
    a.axpby_dev.b_num = bn;
    a.axpby_dev.b_den = bd;
    a.axpby_dev.y = y;
    return ng_run_op(be, &a);
}

/* z = minv * r elementwise (an (n, 1) matrix scaled by rows) */
static ng_status precondition(ng_backend *be, size_t n, const float *minv, const float *r, float *z) {
    ng_op_args a;
    if (n > 2147483647u) return ng_error(NG_ERR_UNSUPPORTED, "cg: preconditioner on %zu > 2^31 - 1 unknowns", n);
    memset(&a, 0, sizeof a);
    a.op = NG_OP_OUTER_SCALE;
    a.outer_scale.rows = (int)n;
    a.outer_scale.cols = 1;
    a.outer_scale.mode = NG_OSCALE_MUL;
    a.outer_scale.x = r;
    a.outer_scale.ldx = (int)n;
    a.outer_scale.u = minv;
    a.outer_scale.out = z;
    a.outer_scale.ldo = (int)n;
    return ng_run_op(be, &a);
}

/* y = (A + lambda I) x */
static ng_status damped_product(ng_backend *be, const ng_linop *A, double lambda, const float *x, float *y) {
    ng_status s = A->apply(A->user, x, y);
    if (s != NG_OK) return s;
    if (lambda != 0.0) return ng_axpby(be, A->n, (float)lambda, x, 1.0f, y);
    return NG_OK;
}

/* the device work of one iteration: row and prev are device rows */
typedef struct cg_iter {
    ng_backend *be;
    size_t n;
    const float *b, *minv;
    float *x, *r, *z, *p, *Ap, *row, *prev;
    int need_phi;
} cg_iter;
/* after Ap = (A + lambda I) p: pAp, then x, r, z, p and the dots (only device scalars) */
static ng_status cg_pap(const cg_iter *c) { return ng_dot_dev(c->be, c->n, c->p, c->Ap, &c->row[S_PAP]); }
static ng_status cg_update(const cg_iter *c) {
    ng_backend *be = c->be;
    size_t n = c->n;
    NG_TRY(axpby_dev(be, n, 1.0f, &c->prev[S_RZ], &c->row[S_PAP], c->p, 1.0f, NULL, NULL, c->x));
    NG_TRY(axpby_dev(be, n, -1.0f, &c->prev[S_RZ], &c->row[S_PAP], c->Ap, 1.0f, NULL, NULL, c->r));
    if (c->minv) NG_TRY(precondition(be, n, c->minv, c->r, c->z));
    NG_TRY(ng_dot_dev(be, n, c->r, c->z, &c->row[S_RZ]));
    NG_TRY(ng_dot_dev(be, n, c->r, c->r, &c->row[S_RR]));
    NG_TRY(axpby_dev(be, n, 1.0f, NULL, NULL, c->z, 1.0f, &c->row[S_RZ], &c->prev[S_RZ], c->p));
    if (c->need_phi) {
        NG_TRY(ng_dot_dev(be, n, c->x, c->b, &c->row[S_XB]));
        NG_TRY(ng_dot_dev(be, n, c->x, c->r, &c->row[S_XR]));
    }
    return NG_OK;
}
static ng_status cg_step_body(void *user) {
    const cg_iter *c = (const cg_iter *)user;
    NG_TRY(cg_pap(c));
    return cg_update(c);
}
/* pAp and the updates: one segment (segs) or eager; keyed by every buffer and the row parity */
static ng_status cg_step(const cg_iter *c, struct ng_graph_segs *segs) {
    static const ng_graph_seg seg = {"cg step", cg_step_body, NULL, NULL};
    uint64_t key[10];
    if (!segs) return cg_step_body((void *)c);
    key[0] = (uint64_t)c->n << 1 | (uint64_t)(c->need_phi != 0);
    key[1] = ng_graph_key_ptr(c->b);
    key[2] = ng_graph_key_ptr(c->minv);
    key[3] = ng_graph_key_ptr(c->x);
    key[4] = ng_graph_key_ptr(c->r);
    key[5] = ng_graph_key_ptr(c->z);
    key[6] = ng_graph_key_ptr(c->p);
    key[7] = ng_graph_key_ptr(c->Ap);
    key[8] = ng_graph_key_ptr(c->row);
    key[9] = ng_graph_key_ptr(c->prev);
    return ng_graph_seg_run(segs, &seg, (void *)c, key, 10);
}

static double row_phi(const float *row) { return -0.5 * ((double)row[S_XB] + (double)row[S_XR]); }

/* Martens' relative-progress rule at iteration j with phi history ph[0..j] */
static int progress_stop(const ng_cg_config *c, const double *ph, int j) {
    int k = (int)floor(0.1 * j);
    if (k < c->progress_min) k = c->progress_min;
    if (j <= k || !(ph[j] < 0.0)) return 0;
    return (ph[j] - ph[j - k]) / ph[j] < (double)k * c->progress_eps;
}

ng_status ng_cg_solve(ng_cg_ws *ws, const ng_linop *A, const float *b, float *x, const float *minv,
                      const ng_cg_config *cfg, ng_cg_result *res) {
    ng_backend *be;
    size_t n;
    float *r, *z, *p, *Ap, *sc, *h, xnorm = 0.0f;
    int need_phi, i, stop = -1, iters = 0, next_keep_j = 1, next_keep = 1;
    ng_status s;
    if (!ws || !ws->be || !A || !A->apply || !b || !x || !cfg || !res)
        return ng_error(NG_ERR_INVALID_ARG, "cg: NULL workspace, operator, b, x, configuration or result");
    NG_TRY(ng_cg_config_check(cfg));
    if (A->n != ws->n)
        return ng_error(NG_ERR_INVALID_ARG, "cg: operator of %zu unknowns, workspace of %zu", A->n, ws->n);
    if (cfg->max_iter > ws->max_iter || cfg->max_keep > ws->max_keep)
        return ng_error(NG_ERR_INVALID_ARG, "cg: max_iter %d / max_keep %d exceed the workspace's %d / %d", cfg->max_iter,
                        cfg->max_keep, ws->max_iter, ws->max_keep);
    be = ws->be;
    n = ws->n;
    r = ws->r;
    z = minv ? ws->z : ws->r;
    p = ws->p;
    Ap = ws->Ap;
    sc = ws->sc;
    h = ws->sc_host;
    need_phi = cfg->progress || cfg->max_keep > 0;
    memset(res, 0, sizeof *res);

    /* r = b - (A + lambda I) x (skipped for a cold start), z, p, row 0 */
    NG_TRY(ng_nrm2(be, n, x, &xnorm));
    if (!isfinite(xnorm)) return ng_error(NG_ERR_NUMERIC, "cg: the starting point has non-finite entries");
    if (xnorm > 0.0f) {
        NG_TRY_RANGE(NG_CAT_SOLVER, "curvature product", damped_product(be, A, cfg->lambda, x, Ap));
        NG_TRY(ng_copy(be, r, b, n * sizeof(float)));
        NG_TRY(ng_axpby(be, n, -1.0f, Ap, 1.0f, r));
    } else {
        NG_TRY(ng_copy(be, r, b, n * sizeof(float)));
    }
    if (minv) NG_TRY(precondition(be, n, minv, r, z));
    NG_TRY(ng_copy(be, p, z, n * sizeof(float)));
    NG_TRY(ng_dot_dev(be, n, r, z, &sc[S_RZ]));
    NG_TRY(ng_dot_dev(be, n, r, r, &sc[S_RR]));
    NG_TRY(ng_dot_dev(be, n, b, b, &sc[S_BB]));
    if (need_phi) {
        NG_TRY(ng_dot_dev(be, n, x, b, &sc[S_XB]));
        NG_TRY(ng_dot_dev(be, n, x, r, &sc[S_XR]));
    }
    NG_TRY(ng_get(be, h, sc, NG_CG_NS * sizeof(float)));
    {
        const double bb = h[S_BB], rr = h[S_RR];
        if (!isfinite(bb) || !isfinite(rr) || !isfinite((double)h[S_RZ]))
            return ng_error(NG_ERR_NUMERIC, "cg: the right-hand side or the initial residual is not finite (||b||^2 = %g, ||r||^2 = %g)", bb, rr);
        if (minv && !(h[S_RZ] >= 0.0f))
            return ng_error(NG_ERR_NUMERIC, "cg: r . M^-1 r = %g < 0: the preconditioner is not positive", (double)h[S_RZ]);
        ws->phi_host[0] = need_phi ? row_phi(h) : 0.0;
        if (rr <= cfg->rtol * cfg->rtol * bb) stop = NG_SOLVE_RTOL;
    }

    for (i = 1; stop < 0 && i <= cfg->max_iter; i++) {
        float *row = sc + (size_t)(i & 1) * NG_CG_NS, *prev = sc + (size_t)((i - 1) & 1) * NG_CG_NS;
        cg_iter it;
        it.be = be;
        it.n = n;
        it.b = b;
        it.minv = minv;
        it.x = x;
        it.r = r;
        it.z = z;
        it.p = p;
        it.Ap = Ap;
        it.row = row;
        it.prev = prev;
        it.need_phi = need_phi;
        NG_TRY_RANGE(NG_CAT_SOLVER, "curvature product", damped_product(be, A, cfg->lambda, p, Ap));
        if (cfg->check_curvature) {
            float pap;
            NG_TRY(cg_pap(&it));
            NG_TRY(ng_get(be, &pap, &row[S_PAP], sizeof pap));
            if (!(pap > 0.0f)) {
                stop = NG_SOLVE_NEGCURV;
                break;
            }
            NG_TRY(cg_update(&it));
        } else {
            NG_TRY(cg_step(&it, cfg->segs));
        }
        iters = i;
        /* iterates kept at ceil(keep_factor^j) (the last slot is reserved for the final x) */
        if (cfg->max_keep > 1 && i == next_keep && res->n_kept < cfg->max_keep - 1) {
            NG_TRY(ng_copy(be, ws->kept + (size_t)res->n_kept * n, x, n * sizeof(float)));
            res->kept_iter[res->n_kept++] = i;
        }
        while (next_keep <= i) next_keep = (int)ceil(pow(cfg->keep_factor, (double)next_keep_j++) - 1e-9);
        NG_TRY(ng_get_async(be, h + (size_t)i * NG_CG_NS, row, NG_CG_NS * sizeof(float)));
        NG_TRY(ng_event_record(be, ws->ev[i & 1]));
        /* the host looks at iteration i - 1 while iteration i is queued */
        if (i >= 2) {
            const float *hr = h + (size_t)(i - 1) * NG_CG_NS;
            NG_TRY(ng_event_synchronize(be, ws->ev[(i - 1) & 1]));
            if (!isfinite(hr[S_RR]) || !isfinite(hr[S_PAP]))
                return ng_error(NG_ERR_NUMERIC, "cg: iteration %d produced a non-finite residual or curvature (p.Ap = %g)", i - 1,
                                (double)hr[S_PAP]);
            ws->phi_host[i - 1] = need_phi ? row_phi(hr) : 0.0;
            if ((double)hr[S_RR] <= cfg->rtol * cfg->rtol * (double)h[S_BB]) stop = NG_SOLVE_RTOL;
            else if (cfg->progress && progress_stop(cfg, ws->phi_host, i - 1)) stop = NG_SOLVE_PROGRESS;
        }
    }
    if (stop < 0) stop = NG_SOLVE_MAXITER;

    /* the final row */
    if ((s = ng_synchronize(be)) != NG_OK) return s;
    {
        const float *hr = h + (size_t)iters * NG_CG_NS;
        if (iters > 0 && (!isfinite(hr[S_RR]) || !isfinite(hr[S_PAP])))
            return ng_error(NG_ERR_NUMERIC, "cg: iteration %d produced a non-finite residual or curvature (p.Ap = %g)", iters,
                            (double)hr[S_PAP]);
        if (need_phi) ws->phi_host[iters] = row_phi(hr);
        res->iters = iters;
        res->stop = stop;
        res->rel_res = h[S_BB] > 0.0f ? sqrt((double)hr[S_RR] / (double)h[S_BB]) : sqrt((double)hr[S_RR]);
        res->phi = need_phi ? ws->phi_host[iters] : NAN;
    }
    if (cfg->max_keep > 0) {
        int j;
        if (res->n_kept == 0 || res->kept_iter[res->n_kept - 1] != iters) {
            NG_TRY(ng_copy(be, ws->kept + (size_t)res->n_kept * n, x, n * sizeof(float)));
            res->kept_iter[res->n_kept++] = iters;
        }
        for (j = 0; j < res->n_kept; j++) res->kept_phi[j] = ws->phi_host[res->kept_iter[j]];
    }
    return NG_OK;
}
