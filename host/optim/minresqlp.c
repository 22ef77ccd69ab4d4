/* minresqlp.c: MINRES-QLP (Choi, Paige & Saunders 2011) on (A + lambda I) x = b with A symmetric
 * (possibly indefinite or singular) given as products (natgrad/solver.h), from x0 = 0, every vector
 * and scalar on the device.
 *
 * Iteration k (1-based), all queued without a wait:
 *   p = (A + lambda I) v_k - beta_k v_{k-1}      alpha_k = v_k . p      p -= alpha_k v_k
 *   beta_{k+1} = ||p||                            (dot_dev / nrm2_dev into ws->state's float scalars)
 *   NG_OP_MINRESQLP_STEP: the left reflectors (QR of T_{k+1,k}), the right reflectors (QLP), the
 *       estimates of ||x||, ||A||, cond(A), ||r||, ||A r||, the switch from MINRES to QLP steps,
 *       the stopping flags, and the coefficients of the vector updates (ng_mqlp_step, ng_math.h)
 *   xl2, (w_{k-1}, w_k), x updated by fixed NG_OP_AXPBY_DEV sequences whose coefficients the step
 *       wrote: the same queue for a MINRES step, the transfer to QLP, a QLP step and a frozen one
 *   v_{k+1} = p / beta_{k+1}
 * then the double state goes to pinned memory (get_async + event) and the host reads iteration
 * k - 1's copy (one iteration late, see solver.h). Once a rule has fired the device freezes the
 * system: x is exactly the iterate of the iteration at which the rule fired (not one later), and
 * res->iters is that iteration; the one iteration queued after it costs a product with v = 0.
 *
 * Stopping (minresqlp.m's flags, mapped to NG_SOLVE_*): ||r|| <= rtol ||b|| (flags 1, 3; b = 0:
 * flag 0) -> NG_SOLVE_RTOL; ||A r|| <= rtol ||A|| ||r|| (2, 4), the last diagonal of L negligible
 * (9: |gamma| <= singtol ||A||, the float analogue of minresqlp.m's realmin test), ||x|| would
 * exceed maxxnorm (6), ||A|| ||x|| eps >= ||b|| (5) -> NG_SOLVE_SINGULAR; max_iter (8) ->
 * NG_SOLVE_MAXITER. A non-finite alpha or beta (the operator gave NaN or Inf) is NG_ERR_NUMERIC,
 * and x is then unspecified. */
#include "natgrad/solver.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "natgrad/status.h"
#include "ng_math.h"

/* |gamma_k| <= NG_MINRESQLP_SINGTOL ||A|| counts as zero. The Lanczos scalars come from float
 * vectors, so an exactly singular system leaves gamma_k at a few float ulps of ||A||, never at 0;
 * this treats anything within ~8 ulps (cond(A) > 1e6) on the Krylov subspace as singular. */
#define NG_MINRESQLP_SINGTOL 1e-6

enum { V_V = 0, V_VP, V_P, V_WL, V_W, V_S, V_XL2, V_COUNT }; /* the solver's device vectors */

void ng_minresqlp_config_default(ng_minresqlp_config *c) {
    memset(c, 0, sizeof *c);
    c->max_iter = 250;
    c->rtol = 1e-4;
    c->lambda = 0.0;
    c->maxxnorm = 1e7;
    c->trancond = 1e7;
}

ng_status ng_minresqlp_config_check(const ng_minresqlp_config *c) {
    if (!c) return ng_error(NG_ERR_INVALID_ARG, "minresqlp: NULL configuration");
    if (c->max_iter < 1 || c->max_iter > 1000000)
        return ng_error(NG_ERR_INVALID_ARG, "minresqlp: max_iter = %d must be in 1 .. 1000000", c->max_iter);
    if (!(c->rtol >= 0.0) || !isfinite(c->rtol) || c->rtol >= 1.0)
        return ng_error(NG_ERR_INVALID_ARG, "minresqlp: rtol = %g must be in [0, 1)", c->rtol);
    if (!isfinite(c->lambda))
        return ng_error(NG_ERR_INVALID_ARG, "minresqlp: damping lambda = %g must be finite", c->lambda);
    if (!(c->maxxnorm > 0.0))
        return ng_error(NG_ERR_INVALID_ARG, "minresqlp: maxxnorm = %g must be > 0", c->maxxnorm);
    if (!(c->trancond >= 1.0))
        return ng_error(NG_ERR_INVALID_ARG, "minresqlp: trancond = %g must be >= 1 (1: QLP steps throughout)",
                        c->trancond);
    return NG_OK;
}

/* Device block: the state (NG_MQLP_NSTATE doubles), its float scalars (NG_MQLP_NSC), then the
 * V_COUNT vectors of n floats. Pinned: two copies of the state (iterations k and k - 1 in flight). */
ng_status ng_minresqlp_ws_init(ng_minresqlp_ws *ws, ng_backend *be, size_t n, int max_iter) {
    const size_t head = NG_MQLP_NSTATE * sizeof(double) + NG_MQLP_NSC * sizeof(float);
    ng_status s;
    memset(ws, 0, sizeof *ws);
    if (!be || n == 0 || max_iter < 1)
        return ng_error(NG_ERR_INVALID_ARG, "minresqlp workspace: need a backend, n >= 1 (got %zu) and max_iter >= 1 (got %d)",
                        n, max_iter);
    if (n > (SIZE_MAX - head) / (V_COUNT * sizeof(float)))
        return ng_error(NG_ERR_INVALID_ARG, "minresqlp workspace: n = %zu is too large", n);
    ws->be = be;
    ws->n = n;
    ws->max_iter = max_iter;
    if ((s = ng_alloc(be, head + V_COUNT * n * sizeof(float), &ws->mem)) != NG_OK) {
        memset(ws, 0, sizeof *ws);
        return s;
    }
    ws->state = ws->mem;
    ws->vecs = (float *)((char *)ws->mem + NG_MQLP_NSTATE * sizeof(double)) + NG_MQLP_NSC;
    if ((s = ng_alloc_host(be, 2 * NG_MQLP_NSTATE * sizeof(double), &ws->state_host)) != NG_OK ||
        (s = ng_event_create(be, &ws->ev[0])) != NG_OK || (s = ng_event_create(be, &ws->ev[1])) != NG_OK) {
        ng_minresqlp_ws_free(ws);
        return s;
    }
    return NG_OK;
}

void ng_minresqlp_ws_free(ng_minresqlp_ws *ws) {
    if (!ws || !ws->be) return;
    if (ws->ev[0]) ng_event_destroy(ws->be, ws->ev[0]);
    if (ws->ev[1]) ng_event_destroy(ws->be, ws->ev[1]);
    if (ws->state_host) ng_free_host(ws->be, ws->state_host);
    if (ws->mem) ng_free(ws->be, ws->mem);
    memset(ws, 0, sizeof *ws);
}

/* y = ca a x + cb b y with a, b device scalars (NULL = 1); cb = 0 ignores y */
static ng_status axpby_dev(ng_backend *be, size_t n, float ca, const float *a, const float *x, float cb,
                           const float *b, float *y) {
    ng_op_args o;
    memset(&o, 0, sizeof o);
    o.op = NG_OP_AXPBY_DEV;
    o.axpby_dev.n = n;
    o.axpby_dev.ca = ca;
    o.axpby_dev.a_num = a;
    o.axpby_dev.x = x;
    o.axpby_dev.cb = cb;
    o.axpby_dev.b_num = b;
    o.axpby_dev.y = y;
    return ng_run_op(be, &o);
}

static ng_status step(ng_backend *be, double *state, float *sc, int init, const ng_minresqlp_config *c) {
    ng_op_args o;
    memset(&o, 0, sizeof o);
    o.op = NG_OP_MINRESQLP_STEP;
    o.minresqlp_step.count = 1;
    o.minresqlp_step.init = init;
    o.minresqlp_step.max_iter = c->max_iter;
    o.minresqlp_step.rtol = c->rtol;
    o.minresqlp_step.maxxnorm = c->maxxnorm;
    o.minresqlp_step.trancond = c->trancond;
    o.minresqlp_step.singtol = NG_MINRESQLP_SINGTOL;
    o.minresqlp_step.state = state;
    o.minresqlp_step.sc = sc;
    return ng_run_op(be, &o);
}

static int flag_to_stop(int flag) {
    switch (flag) {
    case 0:
    case 1:
    case 3: return NG_SOLVE_RTOL;
    case 8: return NG_SOLVE_MAXITER;
    default: return NG_SOLVE_SINGULAR; /* 2, 4, 5, 6, 9 */
    }
}

ng_status ng_minresqlp_solve(ng_minresqlp_ws *ws, const ng_linop *A, const float *b, float *x,
                             const ng_minresqlp_config *cfg, ng_minresqlp_result *res) {
    ng_backend *be;
    size_t n, bytes;
    double *state, *host, *last;
    float *sc, *vec[V_COUNT], *t;
    int k, i, flag;
    if (!ws || !ws->be || !A || !A->apply || !b || !x || !cfg || !res)
        return ng_error(NG_ERR_INVALID_ARG, "minresqlp: NULL workspace, operator, b, x, configuration or result");
    NG_TRY(ng_minresqlp_config_check(cfg));
    if (A->n != ws->n)
        return ng_error(NG_ERR_INVALID_ARG, "minresqlp: operator of %zu unknowns, workspace of %zu", A->n, ws->n);
    if (x == b) return ng_error(NG_ERR_INVALID_ARG, "minresqlp: x aliases b (b is read-only, x is overwritten)");
    be = ws->be;
    n = ws->n;
    bytes = n * sizeof(float);
    state = (double *)ws->state;
    sc = (float *)(state + NG_MQLP_NSTATE);
    host = (double *)ws->state_host;
    for (i = 0; i < V_COUNT; i++) vec[i] = ws->vecs + (size_t)i * n;
    memset(res, 0, sizeof *res);

    /* v_1 = b / ||b||, x = 0, the other vectors 0; state 0 */
    NG_TRY(ng_memset0(be, ws->vecs, V_COUNT * bytes));
    NG_TRY(ng_nrm2_dev(be, n, b, &sc[NG_MQLP_SC_BETAN]));
    NG_TRY_RANGE(NG_CAT_SOLVER, "minresqlp scalars", step(be, state, sc, 1, cfg));
    NG_TRY(axpby_dev(be, n, 1.0f, &sc[NG_MQLP_SC_VSCALE], b, 0.0f, NULL, vec[V_V]));
    NG_TRY(ng_memset0(be, x, bytes));
    NG_TRY(ng_get_async(be, host, state, NG_MQLP_NSTATE * sizeof(double)));
    NG_TRY(ng_event_record(be, ws->ev[0]));
    last = host;

    for (k = 1; k <= cfg->max_iter; k++) {
        const float *E = &sc[NG_MQLP_SC_E0], *Ac = &sc[NG_MQLP_SC_A1], *B = &sc[NG_MQLP_SC_B1];
        const float *F = &sc[NG_MQLP_SC_F0];
        double *prev;
        /* Lanczos: p = (A + lambda I) v_k - beta_k v_{k-1} - alpha_k v_k */
        NG_TRY(A->apply(A->user, vec[V_V], vec[V_P]));
        if (cfg->lambda != 0.0) NG_TRY(ng_axpby(be, n, (float)cfg->lambda, vec[V_V], 1.0f, vec[V_P]));
        NG_TRY(axpby_dev(be, n, -1.0f, &sc[NG_MQLP_SC_LBETA], vec[V_VP], 1.0f, NULL, vec[V_P]));
        NG_TRY(ng_dot_dev(be, n, vec[V_V], vec[V_P], &sc[NG_MQLP_SC_ALPHA]));
        NG_TRY(axpby_dev(be, n, -1.0f, &sc[NG_MQLP_SC_ALPHA], vec[V_V], 1.0f, NULL, vec[V_P]));
        NG_TRY(ng_nrm2_dev(be, n, vec[V_P], &sc[NG_MQLP_SC_BETAN]));
        NG_TRY_RANGE(NG_CAT_SOLVER, "minresqlp scalars", step(be, state, sc, 0, cfg));
        /* xl2 = E0 x + E1 xl2 + E2 wl + E3 w + E4 v */
        NG_TRY(axpby_dev(be, n, 1.0f, &E[0], x, 1.0f, &E[1], vec[V_XL2]));
        NG_TRY(axpby_dev(be, n, 1.0f, &E[2], vec[V_WL], 1.0f, NULL, vec[V_XL2]));
        NG_TRY(axpby_dev(be, n, 1.0f, &E[3], vec[V_W], 1.0f, NULL, vec[V_XL2]));
        NG_TRY(axpby_dev(be, n, 1.0f, &E[4], vec[V_V], 1.0f, NULL, vec[V_XL2]));
        /* w' = B1 wl + B2 w + B3 v (into the spare s), then wl' = A1 wl + A2 w + A3 v in place */
        NG_TRY(axpby_dev(be, n, 1.0f, &B[2], vec[V_V], 0.0f, NULL, vec[V_S]));
        NG_TRY(axpby_dev(be, n, 1.0f, &B[0], vec[V_WL], 1.0f, NULL, vec[V_S]));
        NG_TRY(axpby_dev(be, n, 1.0f, &B[1], vec[V_W], 1.0f, NULL, vec[V_S]));
        NG_TRY(axpby_dev(be, n, 1.0f, &Ac[1], vec[V_W], 1.0f, &Ac[0], vec[V_WL]));
        NG_TRY(axpby_dev(be, n, 1.0f, &Ac[2], vec[V_V], 1.0f, NULL, vec[V_WL]));
        /* x = F0 x + F1 xl2 + F2 wl' + F3 w' */
        NG_TRY(axpby_dev(be, n, 1.0f, &F[1], vec[V_XL2], 1.0f, &F[0], x));
        NG_TRY(axpby_dev(be, n, 1.0f, &F[2], vec[V_WL], 1.0f, NULL, x));
        NG_TRY(axpby_dev(be, n, 1.0f, &F[3], vec[V_S], 1.0f, NULL, x));
        /* v_{k+1} = p / beta_{k+1} into v_{k-1}'s place; w' lives in s */
        NG_TRY(axpby_dev(be, n, 1.0f, &sc[NG_MQLP_SC_VSCALE], vec[V_P], 0.0f, NULL, vec[V_VP]));
        t = vec[V_V], vec[V_V] = vec[V_VP], vec[V_VP] = t;
        t = vec[V_W], vec[V_W] = vec[V_S], vec[V_S] = t;
        NG_TRY(ng_get_async(be, host + (size_t)(k & 1) * NG_MQLP_NSTATE, state, NG_MQLP_NSTATE * sizeof(double)));
        NG_TRY(ng_event_record(be, ws->ev[k & 1]));
        /* the host looks at iteration k - 1 while iteration k is queued */
        prev = host + (size_t)((k - 1) & 1) * NG_MQLP_NSTATE;
        NG_TRY(ng_event_synchronize(be, ws->ev[(k - 1) & 1]));
        last = host + (size_t)(k & 1) * NG_MQLP_NSTATE;
        if ((int)prev[NG_MQLP_FLAG] != NG_MQLP_RUNNING) break;
    }
    /* the state of the last iteration queued: a stopped system keeps its final numbers */
    NG_TRY(ng_synchronize(be));
    flag = (int)last[NG_MQLP_FLAG];
    res->iters = (int)last[NG_MQLP_ITER];
    if (flag == NG_MQLP_NONFINITE)
        return ng_error(NG_ERR_NUMERIC, "minresqlp: iteration %d: the operator produced a non-finite value (b or A v)",
                        res->iters + 1);
    res->stop = flag_to_stop(flag);
    res->qlp_iters = (int)last[NG_MQLP_QLPITER];
    res->rel_res = last[NG_MQLP_RELRES];
    res->rel_ares = last[NG_MQLP_RELARES];
    res->anorm = last[NG_MQLP_ANORM];
    res->acond = last[NG_MQLP_ACOND];
    res->xnorm = last[NG_MQLP_XNORM];
    return NG_OK;
}
