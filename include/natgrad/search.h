/* natgrad/search.h: derivative-free searches over one or two scalars (host/optim/search.c), for
 * the step-size choices of the natural conjugate gradient methods (Pascanu & Bengio, ICLR 2014):
 * a 1-D line search phi(t) = L(theta + t d) and a 2-D minimiser of
 * g(alpha, beta) = L(theta + alpha natgrad + beta d_prev) (NCG-L; the paper used scipy's COBYLA).
 *
 * Pure host code on doubles: the objective is a callback, and the caller owns whatever it moves
 * (typically it writes theta + t d into the model's parameters on the device and runs a forward
 * pass over a data set). One evaluation may be a full pass over a data set, so both searches run
 * within an explicit evaluation budget and count every call.
 *
 * The objective: f(user, x, &fx) with x[0] = t (line search) or x[0] = a, x[1] = b (2-D). A
 * status other than NG_OK stops the search and is returned (its message prefixed with the point).
 * A non-finite fx (NaN, +-Inf: a step that diverged) is treated as +Inf: a bad point, not an error.
 * Neither search ever returns a point worse than its start; the last point evaluated is not
 * necessarily the one returned, so the caller sets the result itself afterwards. Must not: call
 * a backend, allocate, or print. */
#ifndef NATGRAD_SEARCH_H
#define NATGRAD_SEARCH_H

#include "natgrad/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* fx = objective at x (1 or 2 doubles, see above). */
typedef ng_status (*ng_objective_fn)(void *user, const double *x, double *fx);

/* ---- 1-D line search -----------------------------------------------------------------------
 * Minimises phi(t) over t > 0 given phi(0) and, optionally, the slope phi'(0) (NAN: unknown).
 *   slope   known and >= 0: d is not a descent direction; returns t = 0 at once, no evaluation
 *           (status NG_LS_NOT_DESCENT).
 *   bracket phi(t0) < phi(0): expand while phi keeps decreasing; the first rise gives a bracket
 *           (t_prev, t, t_next) with phi(t) below both ends. The next trial is the minimiser of
 *           the parabola through the last three points (through phi(0), phi'(0), phi(t0) at first
 *           when the slope is known) when it is convex, kept within [t + s / 10, t + 100 s]
 *           (s: the last step; Numerical Recipes' mnbrak), else t <- grow t; on a quadratic the
 *           expansion jumps to the minimiser and one step beyond it.
 *           phi(t0) >= phi(0) (including +Inf): shrink towards 0 until phi(t) < phi(0), to the
 *           minimiser of the quadratic through phi(0), phi'(0), phi(t) when the slope is known
 *           (Nocedal & Wright eq. 3.58), else of the parabola through phi(0) and the last two
 *           trials when that is convex, else t <- shrink t; always within [t / 10, t / 2]. The
 *           bracket is (0, t, t_prev). Shrinking gives up (no decrease) below 1e-12 t0.
 *   refine  Brent's method (Brent 1973, ch. 5, localmin: parabolic interpolation through the three
 *           best points, golden section when the parabola is not trusted) inside the bracket,
 *           seeded with the bracket's three points so that the first step may already be
 *           parabolic (a quadratic phi is then minimised exactly after the bracket). It stops
 *           when the bracket is narrower than about 2 tol, tol = rtol t + 1e-12 t0; when the
 *           parabola puts the minimum within tol of the best point (it evaluates that minimiser,
 *           unless it is the best point up to rounding, and stops: Brent would spend two more
 *           evaluations confirming it); or when the budget is spent.
 * The result is the best point evaluated when it is strictly below phi(0) (NG_LS_DECREASE), else
 * t = 0 and phi(0) (NG_LS_NO_DECREASE). */
enum {
    NG_LS_DECREASE = 0,     /* t > 0 and phi(t) < phi(0) */
    NG_LS_NO_DECREASE = 1,  /* no evaluated point was below phi(0): t = 0 */
    NG_LS_NOT_DESCENT = 2   /* the given slope was >= 0: t = 0, nothing evaluated */
};
const char *ng_line_search_status_name(int status); /* "decrease", "no_decrease", "not_descent" */

typedef struct ng_line_search_opts {
    double t0;      /* first trial step, finite and > 0 (default 1) */
    int max_evals;  /* evaluations of phi at most, >= 1 (default 12); phi(0) is given, not counted */
    double grow;    /* expansion factor, > 1 (default 2) */
    double shrink;  /* contraction without a slope, in (0, 1) (default 0.5) */
    double rtol;    /* relative tolerance on t of the refinement, >= 0 (default 1e-3) */
} ng_line_search_opts;
void ng_line_search_opts_default(ng_line_search_opts *o);

typedef struct ng_line_search_result {
    double t;    /* the step found (0 unless status is NG_LS_DECREASE) */
    double phi;  /* phi(t) (= phi(0) when t = 0) */
    int evals;   /* evaluations made (<= max_evals) */
    int status;  /* NG_LS_* */
} ng_line_search_result;

/* phi0 = phi(0), finite; slope0 = phi'(0) or NAN; opts NULL: defaults. On an error from f, *res
 * holds the best point found before it. Bad arguments (f or res NULL, phi0 not finite, slope0
 * infinite, an option out of range) give NG_ERR_INVALID_ARG naming the argument. */
ng_status ng_line_search(ng_objective_fn f, void *user, double phi0, double slope0,
                         const ng_line_search_opts *opts, ng_line_search_result *res);

/* ---- 2-D minimiser ---------------------------------------------------------------------------
 * Powell's conjugate-direction method (Powell 1964; with the direction-discarding rule of
 * Numerical Recipes 10.7) in two dimensions, each line minimisation done by the bracket + Brent
 * machinery above, searching both signs of the step:
 *   directions  u1 = (scale[0], 0), u2 = (0, scale[1]) at first, each with a trial step h = 1.
 *   iteration   from p, minimise along u1 then u2 (a line search tries p + h u; when that is not
 *               lower, p - h u; when neither is, the bracket is (-h, 0, h)); then evaluate the
 *               extrapolation p_e = 2 p - p_start; when it is promising (NR's test), minimise along
 *               p - p_start (from the known value at p_e) and let that direction replace the one
 *               of largest decrease. A direction's next trial step is the length of its last move
 *               (a quarter of the trial step when it did not move). On a quadratic the directions
 *               become conjugate after two iterations, and each line minimisation is exact.
 *   stop        an iteration lowered g by at most ftol (|g_start| + |g_end|) / 2 (both finite), or
 *               moved p by at most xtol in every coordinate measured in units of scale[i], or
 *               the budget is spent.
 * The start value g(x0) may be given (f0, finite or +Inf) or NAN, in which case it is evaluated
 * (counted in the budget). The result is the best point evaluated (the start when none is
 * lower). */
enum {
    NG_MIN2D_FTOL = 0,    /* converged: decrease over an iteration below ftol */
    NG_MIN2D_XTOL = 1,    /* converged: move over an iteration below xtol */
    NG_MIN2D_BUDGET = 2   /* max_evals evaluations made */
};
const char *ng_min2d_stop_name(int stop); /* "ftol", "xtol", "budget" */

typedef struct ng_min2d_opts {
    double scale[2];  /* initial step per coordinate, finite and > 0 (default 1, 1) */
    int max_evals;    /* evaluations of g at most, >= 1 (default 30) */
    double ftol;      /* relative decrease per iteration that counts as converged, >= 0 (1e-9) */
    double xtol;      /* move per iteration, in units of scale, that counts as converged, >= 0 (1e-9) */
} ng_min2d_opts;
void ng_min2d_opts_default(ng_min2d_opts *o);

typedef struct ng_min2d_result {
    double x[2];  /* the best point */
    double fx;    /* g there (+Inf only when every point, the start included, was non-finite) */
    int evals;    /* evaluations made (<= max_evals) */
    int iters;    /* Powell iterations begun */
    int stop;     /* NG_MIN2D_* */
} ng_min2d_result;

/* x0: the start (finite); f0 = g(x0) or NAN; opts NULL: defaults. On an error from f, *res holds
 * the best point found before it. Bad arguments give NG_ERR_INVALID_ARG naming the argument. */
ng_status ng_min2d(ng_objective_fn f, void *user, const double x0[2], double f0,
                   const ng_min2d_opts *opts, ng_min2d_result *res);

#ifdef __cplusplus
}
#endif
#endif
