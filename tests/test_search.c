/* test_search.c: the line search and the 2-D minimiser of natgrad/search.h (host/optim/search.c)
 * on functions whose minimisers are known in closed form:
 *   - line search: quadratics (the minimiser found to rounding after the bracket, whether the first
 *     step expands or must shrink, with and without the slope), a smooth non-quadratic (to its
 *     tolerance), ascent directions (t = 0, said so), NaN / +-Inf beyond some step (a bad point,
 *     never returned), the evaluation budget (calls counted), an error from the objective;
 *   - min2d: rotated, badly conditioned quadratics within the default budget of 30, Rosenbrock from
 *     (-1.2, 1) with a larger budget, never worse than the start, the budget, NaN regions, the
 *     given start value, an error from the objective;
 *   - bad arguments of both, each named in the message. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "natgrad/search.h"

/* ---- objectives ---------------------------------------------------------------------------------- */

/* every objective records its calls here and checks them against a budget of its own */
typedef struct probe {
    int calls;
    int fail_at;      /* return NG_ERR_NUMERIC on this call (1-based; 0: never) */
    double last_x[2];
    int kind;
    double p[8];      /* parameters of the function */
} probe;

/* 1-D functions of t, selected by kind */
enum { F1_QUAD, F1_EXPLIN, F1_LINEAR, F1_NAN_BEYOND, F1_INF_BEYOND, F1_MINF_BEYOND, F1_WALL };

static double fun1(const probe *q, double t) {
    switch (q->kind) {
    case F1_QUAD:       /* p0 (t - p1)^2 + p2 */
        return q->p[0] * (t - q->p[1]) * (t - q->p[1]) + q->p[2];
    case F1_EXPLIN:     /* e^t - 2 t: minimum at ln 2 */
        return exp(t) - 2.0 * t;
    case F1_LINEAR:     /* p0 t: ascent for p0 > 0 */
        return q->p[0] * t;
    case F1_NAN_BEYOND: /* (t - p1)^2, NaN from t >= p3 on (a diverged step) */
        return t >= q->p[3] ? NAN : (t - q->p[1]) * (t - q->p[1]);
    case F1_INF_BEYOND:
        return t >= q->p[3] ? INFINITY : (t - q->p[1]) * (t - q->p[1]);
    case F1_MINF_BEYOND: /* -Inf is non-finite too: a bad point, not a very good one */
        return t >= q->p[3] ? -INFINITY : (t - q->p[1]) * (t - q->p[1]);
    case F1_WALL:       /* (t - p1)^2 - p1^2 + 1e3 max(0, t - 2 p1)^2: steep beyond 2 p1 */
        return (t - q->p[1]) * (t - q->p[1]) - q->p[1] * q->p[1] +
               (t > 2.0 * q->p[1] ? 1e3 * (t - 2.0 * q->p[1]) * (t - 2.0 * q->p[1]) : 0.0);
    }
    return NAN;
}

static ng_status obj1(void *user, const double *x, double *fx) {
    probe *q = (probe *)user;
    q->calls++;
    q->last_x[0] = x[0];
    if (q->fail_at && q->calls == q->fail_at)
        return ng_error(NG_ERR_NUMERIC, "forward pass produced garbage");
    *fx = fun1(q, x[0]);
    return NG_OK;
}

/* 2-D functions of (a, b) */
enum { F2_QUAD, F2_ROSEN, F2_QUAD_NAN, F2_BUMPY };

/* 1/2 (x - c)^T H (x - c), H = R(theta) diag(1, kappa) R(theta)^T, c = (p0, p1), theta = p2,
 * kappa = p3 */
static double quad2(const probe *q, double a, double b) {
    double c = cos(q->p[2]), s = sin(q->p[2]);
    double da = a - q->p[0], db = b - q->p[1];
    double y0 = c * da + s * db, y1 = -s * da + c * db;
    return 0.5 * (y0 * y0 + q->p[3] * y1 * y1);
}

static double fun2(const probe *q, double a, double b) {
    switch (q->kind) {
    case F2_QUAD:
        return quad2(q, a, b);
    case F2_ROSEN:
        return 100.0 * (b - a * a) * (b - a * a) + (1.0 - a) * (1.0 - a);
    case F2_QUAD_NAN: /* the quadratic, NaN where a + b > p4 (too long a step diverges) */
        return a + b > q->p[4] ? NAN : quad2(q, a, b);
    case F2_BUMPY:    /* many local minima and NaN / Inf patches */
    {
        double v = sin(3.0 * a) * cos(2.0 * b) + 0.1 * (a * a + b * b);
        if (sin(5.0 * a + 7.0 * b) > 0.8) return NAN;
        if (cos(4.0 * a - 3.0 * b) > 0.9) return INFINITY;
        return v;
    }
    }
    return NAN;
}

static ng_status obj2(void *user, const double *x, double *fx) {
    probe *q = (probe *)user;
    q->calls++;
    q->last_x[0] = x[0];
    q->last_x[1] = x[1];
    if (q->fail_at && q->calls == q->fail_at)
        return ng_error(NG_ERR_NUMERIC, "forward pass produced garbage");
    *fx = fun2(q, x[0], x[1]);
    return NG_OK;
}

static probe make1(int kind, double p0, double p1, double p2, double p3) {
    probe q;
    memset(&q, 0, sizeof q);
    q.kind = kind;
    q.p[0] = p0;
    q.p[1] = p1;
    q.p[2] = p2;
    q.p[3] = p3;
    return q;
}

/* ---- line search ----------------------------------------------------------------------------- */

/* Quadratics: the bracket's parabola is the function, so the minimiser is found to rounding (tol
 * 1e-9 relative) whether t* is beyond t0 (expansion) or before it (shrinking), with the slope or
 * without; the value reported is phi at the t reported, and the calls match evals. */
static int test_ls_quadratic(void) {
    const double tstar[] = {3.0, 0.3, 37.0, 1.0, 0.01, 1.7e-3, 5.5};
    size_t i;
    int withslope;
    for (withslope = 0; withslope < 2; withslope++) {
        for (i = 0; i < sizeof tstar / sizeof tstar[0]; i++) {
            probe q = make1(F1_QUAD, 2.5, tstar[i], -1.0, 0.0);
            double phi0 = fun1(&q, 0.0), slope = withslope ? -2.0 * 2.5 * tstar[i] : NAN;
            ng_line_search_result r;
            NGT_OK(ng_line_search(obj1, &q, phi0, slope, NULL, &r));
            NGT_CHECK(r.status == NG_LS_DECREASE, "t* = %g slope %d: status %s", tstar[i], withslope,
                      ng_line_search_status_name(r.status));
            NGT_CLOSE(r.t, tstar[i], 1e-9 * tstar[i], "minimiser of a quadratic");
            NGT_CLOSE(r.phi, fun1(&q, r.t), 0.0, "phi reported = phi(t)");
            NGT_CHECK(r.evals == q.calls && r.evals <= 12, "evals %d calls %d (budget 12)", r.evals,
                      q.calls);
            printf("  quadratic t* = %-7g slope %-5s: %2d evaluations, t = %.12g\n", tstar[i],
                   withslope ? "known" : "NAN", r.evals, r.t);
        }
    }
    return NGT_PASS;
}

/* phi(t0) > phi(0): a steep wall beyond 2 t* = 0.02 (t0 = 1 is far inside it) must be shrunk
 * through, and the decrease found; with the slope the quadratic backtracking lands on t* quicker. */
static int test_ls_shrink(void) {
    int withslope;
    for (withslope = 0; withslope < 2; withslope++) {
        probe q = make1(F1_WALL, 0.0, 0.01, 0.0, 0.0);
        double phi0 = fun1(&q, 0.0);
        ng_line_search_result r;
        NGT_CHECK(fun1(&q, 1.0) > phi0, "the setup: phi(t0) > phi(0)");
        NGT_OK(ng_line_search(obj1, &q, phi0, withslope ? -0.02 : NAN, NULL, &r));
        NGT_CHECK(r.status == NG_LS_DECREASE && r.t > 0.0 && r.phi < phi0,
                  "slope %d: status %s t %g phi %g phi0 %g", withslope,
                  ng_line_search_status_name(r.status), r.t, r.phi, phi0);
        /* phi(t) - phi(t*) = (t - t*)^2 inside the wall: 10% of t* is a loss gap of 1e-6 */
        NGT_CLOSE(r.t, 0.01, 1e-3, "minimiser behind the wall");
        NGT_CHECK(r.evals == q.calls && r.evals <= 12, "evals %d calls %d", r.evals, q.calls);
        printf("  wall, slope %-5s: %d evaluations, t = %.9g\n", withslope ? "known" : "NAN",
               r.evals, r.t);
    }
    return NGT_PASS;
}

/* e^t - 2t (minimum at ln 2): Brent reaches the requested tolerance; the default (rtol 1e-3,
 * 12 evaluations) gets within a few tolerances, a tight one (1e-8, 40) within 1e-7. */
static int test_ls_smooth(void) {
    probe q = make1(F1_EXPLIN, 0, 0, 0, 0);
    ng_line_search_opts o;
    ng_line_search_result r;
    NGT_OK(ng_line_search(obj1, &q, 1.0, -1.0, NULL, &r));
    NGT_CHECK(r.status == NG_LS_DECREASE, "status %s", ng_line_search_status_name(r.status));
    NGT_CLOSE(r.t, log(2.0), 3e-3 * log(2.0), "e^t - 2t, default tolerance");
    printf("  e^t - 2t, defaults: %d evaluations, t = %.9g (ln 2 = %.9g)\n", r.evals, r.t, log(2.0));
    ng_line_search_opts_default(&o);
    o.rtol = 1e-8;
    o.max_evals = 40;
    q.calls = 0;
    NGT_OK(ng_line_search(obj1, &q, 1.0, NAN, &o, &r));
    NGT_CLOSE(r.t, log(2.0), 1e-7, "e^t - 2t, rtol 1e-8");
    NGT_CHECK(r.evals == q.calls && r.evals < 40, "evals %d calls %d: stopped by the tolerance",
              r.evals, q.calls);
    printf("  e^t - 2t, rtol 1e-8: %d evaluations, t = %.12g\n", r.evals, r.t);
    return NGT_PASS;
}

/* An ascent direction: with the slope, t = 0 at once (NOT_DESCENT, no call); without it the search
 * shrinks through the whole budget, finds nothing lower and returns t = 0, phi(0). With a large
 * budget the shrinking stops by itself (below 1e-12 t0). */
static int test_ls_ascent(void) {
    probe q = make1(F1_LINEAR, 3.0, 0, 0, 0);
    ng_line_search_opts o;
    ng_line_search_result r;
    NGT_OK(ng_line_search(obj1, &q, 0.0, 3.0, NULL, &r));
    NGT_CHECK(r.status == NG_LS_NOT_DESCENT && r.t == 0.0 && r.phi == 0.0 && r.evals == 0 &&
                  q.calls == 0,
              "known slope: status %s t %g evals %d calls %d",
              ng_line_search_status_name(r.status), r.t, r.evals, q.calls);
    NGT_OK(ng_line_search(obj1, &q, 0.0, 0.0, NULL, &r));
    NGT_CHECK(r.status == NG_LS_NOT_DESCENT && q.calls == 0, "zero slope: status %s",
              ng_line_search_status_name(r.status));
    NGT_OK(ng_line_search(obj1, &q, 0.0, NAN, NULL, &r));
    NGT_CHECK(r.status == NG_LS_NO_DECREASE && r.t == 0.0 && r.phi == 0.0,
              "unknown slope: status %s t %g phi %g", ng_line_search_status_name(r.status), r.t,
              r.phi);
    NGT_CHECK(r.evals == 12 && q.calls == 12, "evals %d calls %d", r.evals, q.calls);
    ng_line_search_opts_default(&o);
    o.max_evals = 1000;
    q.calls = 0;
    NGT_OK(ng_line_search(obj1, &q, 0.0, NAN, &o, &r));
    NGT_CHECK(r.status == NG_LS_NO_DECREASE && r.t == 0.0 && r.evals == q.calls && r.evals < 50,
              "large budget: status %s evals %d", ng_line_search_status_name(r.status), r.evals);
    return NGT_PASS;
}

/* NaN, +Inf or -Inf from some step on: the non-finite points are +Inf (bad points), the search
 * neither crashes nor returns one, and still finds the minimiser t* = 2.2 before the cut at 2.5 —
 * both when the expansion runs into the cut and when t0 = 10 starts beyond it. */
static int test_ls_nonfinite(void) {
    const int kinds[] = {F1_NAN_BEYOND, F1_INF_BEYOND, F1_MINF_BEYOND};
    const double t0s[] = {1.0, 10.0, 0.7};
    size_t i, j;
    for (i = 0; i < 3; i++) {
        for (j = 0; j < 3; j++) {
            probe q = make1(kinds[i], 0.0, 2.2, 0.0, 2.5);
            ng_line_search_opts o;
            ng_line_search_result r;
            ng_line_search_opts_default(&o);
            o.t0 = t0s[j];
            NGT_OK(ng_line_search(obj1, &q, fun1(&q, 0.0), NAN, &o, &r));
            NGT_CHECK(r.status == NG_LS_DECREASE && isfinite(r.phi) && r.t < 2.5,
                      "kind %d t0 %g: status %s t %g phi %g", kinds[i], t0s[j],
                      ng_line_search_status_name(r.status), r.t, r.phi);
            NGT_CLOSE(r.phi, fun1(&q, r.t), 0.0, "phi reported = phi(t)");
            /* golden steps move the bracket's end inside the cut; the parabola through three
             * finite points is then exact (1e-9: rounding) */
            NGT_CLOSE(r.t, 2.2, 1e-9, "minimiser before the cut");
            printf("  cut at 2.5, kind %d, t0 %-4g: %2d evaluations, t = %.9g\n", kinds[i], t0s[j],
                   r.evals, r.t);
        }
    }
    return NGT_PASS;
}

/* The budget: for every max_evals in 1..15 and several functions, the calls equal evals, never
 * exceed the budget, and the answer is never worse than phi(0) and is phi at the t returned. */
static int test_ls_budget(void) {
    probe fs[5];
    int k, n;
    fs[0] = make1(F1_QUAD, 1.0, 40.0, 0.0, 0.0);
    fs[1] = make1(F1_WALL, 0.0, 1e-4, 0.0, 0.0);
    fs[2] = make1(F1_LINEAR, 1.0, 0, 0, 0);
    fs[3] = make1(F1_NAN_BEYOND, 0.0, 2.2, 0.0, 2.5);
    fs[4] = make1(F1_EXPLIN, 0, 0, 0, 0);
    for (k = 0; k < 5; k++) {
        for (n = 1; n <= 15; n++) {
            probe q = fs[k];
            ng_line_search_opts o;
            ng_line_search_result r;
            double phi0 = fun1(&q, 0.0);
            ng_line_search_opts_default(&o);
            o.max_evals = n;
            o.rtol = 0.0;
            NGT_OK(ng_line_search(obj1, &q, phi0, NAN, &o, &r));
            NGT_CHECK(q.calls == r.evals && r.evals <= n, "f%d budget %d: calls %d evals %d", k, n,
                      q.calls, r.evals);
            NGT_CHECK(r.phi <= phi0 && (r.t == 0.0 ? r.phi == phi0 : r.phi == fun1(&q, r.t)),
                      "f%d budget %d: t %g phi %g phi0 %g", k, n, r.t, r.phi, phi0);
            NGT_CHECK((r.status == NG_LS_DECREASE) == (r.t > 0.0 && r.phi < phi0),
                      "f%d budget %d: status %s t %g", k, n, ng_line_search_status_name(r.status), r.t);
        }
    }
    return NGT_PASS;
}

/* An error from the objective stops the search and comes back with its message, prefixed with the
 * step; evals counts the failed call and *res holds the best point before it. */
static int test_ls_error(void) {
    probe q = make1(F1_QUAD, 1.0, 40.0, 0.0, 0.0);
    ng_line_search_result r;
    ng_status s;
    q.fail_at = 3; /* t = 1, 2 succeed (both lower), t = 4 fails */
    s = ng_line_search(obj1, &q, fun1(&q, 0.0), NAN, NULL, &r);
    NGT_CHECK(s == NG_ERR_NUMERIC, "status %s", ng_status_name(s));
    NGT_CHECK(strstr(ng_last_error(), "forward pass produced garbage") &&
                  strstr(ng_last_error(), "t = 4"),
              "message: %s", ng_last_error());
    NGT_CHECK(r.evals == 3 && r.t == 2.0 && r.phi == fun1(&q, 2.0) && r.status == NG_LS_DECREASE,
              "evals %d t %g phi %g", r.evals, r.t, r.phi);
    q.calls = 0;
    q.fail_at = 1;
    s = ng_line_search(obj1, &q, fun1(&q, 0.0), NAN, NULL, &r);
    NGT_CHECK(s == NG_ERR_NUMERIC && r.evals == 1 && r.t == 0.0 && r.status == NG_LS_NO_DECREASE,
              "first call fails: status %s evals %d t %g", ng_status_name(s), r.evals, r.t);
    return NGT_PASS;
}

#define EXPECT_BAD(call, name)                                                                    \
    do {                                                                                          \
        ng_status s_;                                                                             \
        ng_clear_error();                                                                         \
        s_ = (call);                                                                              \
        NGT_CHECK(s_ == NG_ERR_INVALID_ARG, "%s: got %s", #call, ng_status_name(s_));            \
        NGT_CHECK(strstr(ng_last_error(), name) != NULL, "message '%s' does not name %s",         \
                  ng_last_error(), name);                                                         \
    } while (0)

static int test_ls_bad_args(void) {
    probe q = make1(F1_QUAD, 1.0, 3.0, 0.0, 0.0);
    ng_line_search_opts o;
    ng_line_search_result r;
    EXPECT_BAD(ng_line_search(NULL, &q, 9.0, NAN, NULL, &r), "f");
    EXPECT_BAD(ng_line_search(obj1, &q, 9.0, NAN, NULL, NULL), "res");
    EXPECT_BAD(ng_line_search(obj1, &q, NAN, NAN, NULL, &r), "phi0");
    EXPECT_BAD(ng_line_search(obj1, &q, INFINITY, NAN, NULL, &r), "phi0");
    EXPECT_BAD(ng_line_search(obj1, &q, 9.0, -INFINITY, NULL, &r), "slope0");
    ng_line_search_opts_default(&o);
    o.t0 = 0.0;
    EXPECT_BAD(ng_line_search(obj1, &q, 9.0, NAN, &o, &r), "t0");
    o.t0 = -1.0;
    EXPECT_BAD(ng_line_search(obj1, &q, 9.0, NAN, &o, &r), "t0");
    o.t0 = NAN;
    EXPECT_BAD(ng_line_search(obj1, &q, 9.0, NAN, &o, &r), "t0");
    ng_line_search_opts_default(&o);
    o.max_evals = 0;
    EXPECT_BAD(ng_line_search(obj1, &q, 9.0, NAN, &o, &r), "max_evals");
    o.max_evals = -3;
    EXPECT_BAD(ng_line_search(obj1, &q, 9.0, NAN, &o, &r), "max_evals");
    ng_line_search_opts_default(&o);
    o.grow = 1.0;
    EXPECT_BAD(ng_line_search(obj1, &q, 9.0, NAN, &o, &r), "grow");
    ng_line_search_opts_default(&o);
    o.shrink = 1.0;
    EXPECT_BAD(ng_line_search(obj1, &q, 9.0, NAN, &o, &r), "shrink");
    ng_line_search_opts_default(&o);
    o.rtol = -1e-3;
    EXPECT_BAD(ng_line_search(obj1, &q, 9.0, NAN, &o, &r), "rtol");
    NGT_CHECK(q.calls == 0, "a bad call evaluated the objective %d times", q.calls);
    return NGT_PASS;
}

/* ---- 2-D minimiser ----------------------------------------------------------------------------- */

static probe make2(int kind, double c0, double c1, double theta, double kappa) {
    probe q = make1(kind, c0, c1, theta, kappa);
    return q;
}

/* Rotated quadratics with condition numbers 1 to 1e4, minimum at (1.5, -0.7), from (0, 0) with
 * unit scales and the default budget of 30: Powell's directions become conjugate, so g is within
 * 1e-8 of its initial gap (g(x0) - g* is ~1 to 1e4 here) and the point within 1e-4 (scaled by
 * the curvature) of the minimiser. */
static int test_min2d_quadratic(void) {
    const double angles[] = {0.0, 0.5236, 1.0, 2.0, -0.7};
    const double kappas[] = {1.0, 100.0, 1e4};
    size_t i, j;
    int worst = 0;
    for (i = 0; i < sizeof angles / sizeof angles[0]; i++) {
        for (j = 0; j < sizeof kappas / sizeof kappas[0]; j++) {
            probe q = make2(F2_QUAD, 1.5, -0.7, angles[i], kappas[j]);
            const double x0[2] = {0.0, 0.0};
            double g0 = fun2(&q, 0.0, 0.0);
            ng_min2d_result r;
            NGT_OK(ng_min2d(obj2, &q, x0, NAN, NULL, &r));
            NGT_CHECK(r.evals == q.calls && r.evals <= 30, "evals %d calls %d", r.evals, q.calls);
            NGT_CHECK(r.fx <= 1e-8 * g0, "angle %g kappa %g: g %.3g (start %.3g) at (%.9g, %.9g) "
                      "after %d evaluations, stop %s", angles[i], kappas[j], r.fx, g0, r.x[0],
                      r.x[1], r.evals, ng_min2d_stop_name(r.stop));
            NGT_CLOSE(r.fx, fun2(&q, r.x[0], r.x[1]), 0.0, "fx = g(x)");
            if (r.evals > worst) worst = r.evals;
        }
    }
    printf("  rotated quadratics: at most %d evaluations\n", worst);
    return NGT_PASS;
}

/* Rosenbrock from (-1.2, 1) with scales 0.5 and 400 evaluations: within 1e-3 of (1, 1). */
static int test_min2d_rosenbrock(void) {
    probe q = make2(F2_ROSEN, 0, 0, 0, 0);
    const double x0[2] = {-1.2, 1.0};
    ng_min2d_opts o;
    ng_min2d_result r;
    ng_min2d_opts_default(&o);
    o.scale[0] = o.scale[1] = 0.5;
    o.max_evals = 400;
    o.ftol = 1e-14;
    NGT_OK(ng_min2d(obj2, &q, x0, NAN, &o, &r));
    printf("  Rosenbrock: (%.9g, %.9g) g %.3g after %d evaluations, %d iterations, stop %s\n",
           r.x[0], r.x[1], r.fx, r.evals, r.iters, ng_min2d_stop_name(r.stop));
    NGT_CHECK(r.evals == q.calls && r.evals <= 400, "evals %d calls %d", r.evals, q.calls);
    NGT_CLOSE(r.x[0], 1.0, 1e-3, "Rosenbrock a");
    NGT_CLOSE(r.x[1], 1.0, 2e-3, "Rosenbrock b");
    NGT_CHECK(r.fx < 1e-6, "g %g", r.fx);
    return NGT_PASS;
}

/* Never worse than the start, budget respected, fx = g(x): a bumpy function with NaN and Inf
 * patches from 20 starts, budgets 1 to 40; with the start value given, x0 itself is never
 * evaluated. */
static int test_min2d_never_worse(void) {
    int k, n, given;
    for (given = 0; given < 2; given++) {
        for (k = 0; k < 20; k++) {
            for (n = 1; n <= 40; n += (n < 10 ? 1 : 7)) {
                probe q = make2(F2_BUMPY, 0, 0, 0, 0);
                double x0[2] = {-2.0 + 0.21 * k, 1.3 - 0.17 * k}, g0 = fun2(&q, x0[0], x0[1]);
                ng_min2d_opts o;
                ng_min2d_result r;
                if (!isfinite(g0)) g0 = INFINITY;
                ng_min2d_opts_default(&o);
                o.max_evals = n;
                o.scale[0] = 0.3;
                o.scale[1] = 0.7;
                NGT_OK(ng_min2d(obj2, &q, x0, given ? g0 : NAN, &o, &r));
                NGT_CHECK(q.calls == r.evals && r.evals <= n, "start %d budget %d: calls %d evals %d",
                          k, n, q.calls, r.evals);
                NGT_CHECK(r.fx <= g0, "start %d budget %d: %g worse than the start %g", k, n, r.fx,
                          g0);
                if (r.x[0] != x0[0] || r.x[1] != x0[1]) {
                    NGT_CHECK(r.fx < g0 && r.fx == fun2(&q, r.x[0], r.x[1]),
                              "start %d budget %d: fx %g g(x) %g", k, n, r.fx,
                              fun2(&q, r.x[0], r.x[1]));
                }
                NGT_CHECK(isfinite(r.fx) || !isfinite(g0), "start %d budget %d: fx %g", k, n, r.fx);
            }
        }
    }
    return NGT_PASS;
}

/* NaN regions: the quadratic's minimum (1.5, -0.7) is inside the region a + b <= 2 where g is
 * finite (found as without the cut), and the minimum (3, 2) of another lies beyond the cut
 * a + b <= 2: the answer is finite, inside, and far below the start. */
static int test_min2d_nan_region(void) {
    probe q = make2(F2_QUAD_NAN, 1.5, -0.7, 0.5236, 100.0);
    const double x0[2] = {0.0, 0.0};
    ng_min2d_opts o;
    ng_min2d_result r;
    double g0;
    q.p[4] = 2.0;
    g0 = fun2(&q, 0.0, 0.0);
    ng_min2d_opts_default(&o);
    o.scale[0] = o.scale[1] = 2.0; /* the first trial steps land in the NaN region */
    NGT_OK(ng_min2d(obj2, &q, x0, NAN, &o, &r));
    printf("  NaN region, minimum inside: g %.3g at (%.9g, %.9g), %d evaluations\n", r.fx, r.x[0],
           r.x[1], r.evals);
    NGT_CHECK(r.fx <= 1e-6 * g0, "g %.3g (start %.3g) at (%g, %g)", r.fx, g0, r.x[0], r.x[1]);
    q = make2(F2_QUAD_NAN, 3.0, 2.0, 0.3, 10.0);
    q.p[4] = 2.0;
    g0 = fun2(&q, 0.0, 0.0);
    o.max_evals = 60;
    NGT_OK(ng_min2d(obj2, &q, x0, NAN, &o, &r));
    printf("  NaN region, minimum outside: g %.6g (start %.6g) at (%.9g, %.9g), %d evaluations\n",
           r.fx, g0, r.x[0], r.x[1], r.evals);
    NGT_CHECK(isfinite(r.fx) && r.x[0] + r.x[1] <= 2.0 && r.fx == fun2(&q, r.x[0], r.x[1]),
              "fx %g at (%g, %g)", r.fx, r.x[0], r.x[1]);
    NGT_CHECK(r.fx < 0.5 * g0, "fx %g start %g", r.fx, g0);
    return NGT_PASS;
}

/* The given start value saves the first evaluation and changes nothing else; an error from the
 * objective comes back with its message and the point, *res holding the best before it. */
static int test_min2d_f0_and_error(void) {
    probe q = make2(F2_QUAD, 1.5, -0.7, 0.5236, 100.0);
    const double x0[2] = {0.0, 0.0};
    ng_min2d_opts o;
    ng_min2d_result r1, r2;
    ng_status s;
    ng_min2d_opts_default(&o);
    o.max_evals = 17;
    NGT_OK(ng_min2d(obj2, &q, x0, NAN, &o, &r1));
    q.calls = 0;
    o.max_evals = 16;
    NGT_OK(ng_min2d(obj2, &q, x0, fun2(&q, 0.0, 0.0), &o, &r2));
    NGT_CHECK(r2.evals == r1.evals - 1 && r2.x[0] == r1.x[0] && r2.x[1] == r1.x[1] && r2.fx == r1.fx,
              "given f0: evals %d vs %d, x (%g, %g) vs (%g, %g)", r2.evals, r1.evals, r2.x[0],
              r2.x[1], r1.x[0], r1.x[1]);
    q.calls = 0;
    q.fail_at = 5;
    s = ng_min2d(obj2, &q, x0, NAN, NULL, &r1);
    NGT_CHECK(s == NG_ERR_NUMERIC, "status %s", ng_status_name(s));
    NGT_CHECK(strstr(ng_last_error(), "forward pass produced garbage") &&
                  strstr(ng_last_error(), "min2d: objective at ("),
              "message: %s", ng_last_error());
    NGT_CHECK(r1.evals == 5 && r1.fx < fun2(&q, 0.0, 0.0) && r1.fx == fun2(&q, r1.x[0], r1.x[1]),
              "evals %d fx %g", r1.evals, r1.fx);
    return NGT_PASS;
}

static int test_min2d_bad_args(void) {
    probe q = make2(F2_QUAD, 1.5, -0.7, 0.5, 10.0);
    const double x0[2] = {0.0, 0.0}, xnan[2] = {0.0, NAN};
    ng_min2d_opts o;
    ng_min2d_result r;
    EXPECT_BAD(ng_min2d(NULL, &q, x0, NAN, NULL, &r), "f");
    EXPECT_BAD(ng_min2d(obj2, &q, x0, NAN, NULL, NULL), "res");
    EXPECT_BAD(ng_min2d(obj2, &q, NULL, NAN, NULL, &r), "x0");
    EXPECT_BAD(ng_min2d(obj2, &q, xnan, NAN, NULL, &r), "x0[1]");
    EXPECT_BAD(ng_min2d(obj2, &q, x0, -INFINITY, NULL, &r), "f0");
    ng_min2d_opts_default(&o);
    o.scale[0] = 0.0;
    EXPECT_BAD(ng_min2d(obj2, &q, x0, NAN, &o, &r), "scale[0]");
    ng_min2d_opts_default(&o);
    o.scale[1] = -2.0;
    EXPECT_BAD(ng_min2d(obj2, &q, x0, NAN, &o, &r), "scale[1]");
    ng_min2d_opts_default(&o);
    o.scale[1] = INFINITY;
    EXPECT_BAD(ng_min2d(obj2, &q, x0, NAN, &o, &r), "scale[1]");
    ng_min2d_opts_default(&o);
    o.max_evals = 0;
    EXPECT_BAD(ng_min2d(obj2, &q, x0, NAN, &o, &r), "max_evals");
    ng_min2d_opts_default(&o);
    o.ftol = -1.0;
    EXPECT_BAD(ng_min2d(obj2, &q, x0, NAN, &o, &r), "ftol");
    ng_min2d_opts_default(&o);
    o.xtol = NAN;
    EXPECT_BAD(ng_min2d(obj2, &q, x0, NAN, &o, &r), "xtol");
    NGT_CHECK(q.calls == 0, "a bad call evaluated the objective %d times", q.calls);
    return NGT_PASS;
}

int main(void) {
    NGT_RUN(test_ls_quadratic);
    NGT_RUN(test_ls_shrink);
    NGT_RUN(test_ls_smooth);
    NGT_RUN(test_ls_ascent);
    NGT_RUN(test_ls_nonfinite);
    NGT_RUN(test_ls_budget);
    NGT_RUN(test_ls_error);
    NGT_RUN(test_ls_bad_args);
    NGT_RUN(test_min2d_quadratic);
    NGT_RUN(test_min2d_rosenbrock);
    NGT_RUN(test_min2d_never_worse);
    NGT_RUN(test_min2d_nan_region);
    NGT_RUN(test_min2d_f0_and_error);
    NGT_RUN(test_min2d_bad_args);
    return ngt_finish();
}
