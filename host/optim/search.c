/* search.c: the 1-D line search and the 2-D minimiser of natgrad/search.h (algorithms described
 * there). Both work on lines t -> x(t): x(t) = (t) for the line search, x(t) = p + t u for a line
 * of Powell's method, and share the evaluation counter, the record of the best point seen, the
 * expansion of a bracket and Brent's refinement inside it.
 * Must not: call a backend, allocate, print, or return a point worse than the start. */
#include "natgrad/search.h"

#include <math.h>
#include <stddef.h>

/* the search in progress: the objective, its budget and the best point evaluated */
typedef struct ctx {
    ng_objective_fn f;
    void *user;
    const char *who;    /* "line search" | "min2d", for error messages */
    int evals, max_evals;
    double best_x[2];   /* the lowest point seen (x[0] = t for the line search) */
    double best_f;
    int dim;            /* 1: x(t) = (t); 2: x(t) = p + t u */
    double p[2], u[2];  /* the current line (dim 2) */
    double atol;        /* absolute part of the refinement tolerance on t, > 0 */
    double rtol;        /* relative part */
} ctx;

static int budget_left(const ctx *c) { return c->max_evals - c->evals; }

/* fx = f(x), counted; non-finite values become +Inf; the best point is kept. */
static ng_status eval_x(ctx *c, const double x[2], double *fx) {
    double v = NAN;
    ng_status s = c->f(c->user, x, &v);
    c->evals++;
    if (s != NG_OK) {
        if (c->dim == 1) return ng_error_wrap(s, "%s: objective at t = %g: ", c->who, x[0]);
        return ng_error_wrap(s, "%s: objective at (%g, %g): ", c->who, x[0], x[1]);
    }
    if (!isfinite(v)) v = INFINITY;
    if (v < c->best_f) {
        c->best_f = v;
        c->best_x[0] = x[0];
        c->best_x[1] = x[1];
    }
    *fx = v;
    return NG_OK;
}

/* phi(t) = f(x(t)) on the current line. */
static ng_status eval_t(ctx *c, double t, double *ft) {
    double x[2];
    if (c->dim == 1) {
        x[0] = t;
        x[1] = 0.0;
    } else {
        x[0] = c->p[0] + t * c->u[0];
        x[1] = c->p[1] + t * c->u[1];
    }
    return eval_x(c, x, ft);
}

/* Brent's localmin (Brent 1973, ch. 5; netlib fmin) on [lo, hi], seeded with three known points:
 * x (the lowest, inside), w (second lowest) and v. e starts at the bracket width so that the first
 * step may be parabolic. Stops when the bracket is within 2 tol of x; when an accepted parabolic
 * step is shorter than tol (the model puts the minimum next to x: its minimiser is evaluated
 * unless it is x up to rounding, where Brent would step by tol twice to confirm x); or when the
 * budget is spent. *t_out, *f_out: the lowest of the points it knows. */
static ng_status brent(ctx *c, double lo, double hi, double x, double fx, double w, double fw,
                       double v, double fv, double *t_out, double *f_out) {
    const double cgold = 0.3819660112501051; /* (3 - sqrt 5) / 2 */
    double d = hi - lo, e = hi - lo;
    ng_status s = NG_OK;
    int last = 0;
    while (!last && budget_left(c) > 0) {
        double xm = 0.5 * (lo + hi);
        double tol1 = c->rtol * fabs(x) + c->atol, tol2 = 2.0 * tol1;
        double u, fu;
        int golden = 1;
        if (fabs(x - xm) <= tol2 - 0.5 * (hi - lo)) break;
        if (fabs(e) > tol1) {
            /* the parabola through (x, fx), (w, fw), (v, fv): its minimum is at x + pp / q */
            double r = (x - w) * (fx - fv), q = (x - v) * (fx - fw);
            double pp = (x - v) * q - (x - w) * r;
            q = 2.0 * (q - r);
            if (q > 0.0) pp = -pp;
            else q = -q;
            /* trusted when finite, inside the bracket, and shorter than half the step before last */
            if (isfinite(pp) && isfinite(q) && q > 0.0 && fabs(pp) < fabs(0.5 * q * e) &&
                pp > q * (lo - x) && pp < q * (hi - x)) {
                e = d;
                d = pp / q;
                golden = 0;
                if (fabs(d) < tol1) {
                    /* the model puts the minimum within tol of x: evaluate its minimiser unless
                     * that is x up to rounding, and stop */
                    if (fabs(d) <= 1e-6 * tol1) break;
                    last = 1;
                } else {
                    u = x + d;
                    if (u - lo < tol2 || hi - u < tol2) d = xm >= x ? tol1 : -tol1;
                }
            }
        }
        if (golden) {
            e = x >= xm ? lo - x : hi - x;
            d = cgold * e;
        }
        u = last ? x + d : x + (fabs(d) >= tol1 ? d : (d >= 0.0 ? tol1 : -tol1));
        s = eval_t(c, u, &fu);
        if (s != NG_OK) break;
        if (fu <= fx) {
            if (u >= x) lo = x;
            else hi = x;
            v = w;
            fv = fw;
            w = x;
            fw = fx;
            x = u;
            fx = fu;
        } else {
            if (u < x) lo = u;
            else hi = u;
            if (fu <= fw || w == x) {
                v = w;
                fv = fw;
                w = u;
                fw = fu;
            } else if (fu <= fv || v == x || v == w) {
                v = u;
                fv = fu;
            }
        }
    }
    *t_out = x;
    *f_out = fx;
    return s;
}

/* Expansion, from phi(0) = fa > phi(x) (x != 0 evaluated by the caller; slope: phi'(0) or NAN),
 * until phi rises; then Brent inside the bracket. The next trial point is the minimiser of the
 * parabola through the last three points (through phi(0), phi'(0), phi(x) at first, when the slope
 * is known) when that parabola is convex, kept between x + (x - a) / 10 and x + 100 (x - a)
 * (as Numerical Recipes' mnbrak does), else the distance from 0 times grow. On a quadratic the
 * expansion thus jumps to the minimiser and one step past it. */
static ng_status expand_refine(ctx *c, double a, double fa, double x, double fx, double slope,
                               double grow, double *t_out, double *f_out) {
    double b = 0.0, fb = INFINITY, a2 = 0.0, fa2 = 0.0;
    int bracketed = 0, have3 = 0;
    while (budget_left(c) > 0) {
        double step = x - a, u = NAN;
        if (have3) {
            /* parabola through (a2, fa2), (a, fa), (x, fx): u = x - num / den, convex when
             * the second divided difference is positive */
            double r = (x - a) * (fx - fa2), q = (x - a2) * (fx - fa);
            double num = (x - a2) * q - (x - a) * r, den = 2.0 * (q - r);
            double curv = ((fx - fa) / (x - a) - (fa - fa2) / (a - a2)) / (x - a2);
            if (curv > 0.0 && den != 0.0) u = x - num / den;
        } else if (!isnan(slope) && a == 0.0) {
            double k = (fx - fa - slope * x) / (x * x);
            if (k > 0.0) u = -slope / (2.0 * k);
        }
        if (isfinite(u) && (u - x) * step > 0.0) {
            /* clamp the jump to [x + step / 10, x + 100 step] on the side of the expansion */
            double lo = 0.1 * step, hi = 100.0 * step;
            double jump = u - x;
            if (fabs(jump) < fabs(lo)) jump = lo;
            if (fabs(jump) > fabs(hi)) jump = hi;
            b = x + jump;
        } else {
            b = grow * x;
        }
        NG_TRY(eval_t(c, b, &fb));
        if (fb >= fx) {
            bracketed = 1;
            break;
        }
        a2 = a;
        fa2 = fa;
        a = x;
        fa = fx;
        x = b;
        fx = fb;
        have3 = isfinite(fa2);
    }
    if (!bracketed) {
        *t_out = x;
        *f_out = fx;
        return NG_OK;
    }
    /* x lies between a and b; the lower end is the second-best point */
    if (fa <= fb)
        return brent(c, a < b ? a : b, a < b ? b : a, x, fx, a, fa, b, fb, t_out, f_out);
    return brent(c, a < b ? a : b, a < b ? b : a, x, fx, b, fb, a, fa, t_out, f_out);
}

/* ---- 1-D line search ------------------------------------------------------------------------- */

const char *ng_line_search_status_name(int status) {
    switch (status) {
    case NG_LS_DECREASE: return "decrease";
    case NG_LS_NO_DECREASE: return "no_decrease";
    case NG_LS_NOT_DESCENT: return "not_descent";
    default: return "unknown";
    }
}

void ng_line_search_opts_default(ng_line_search_opts *o) {
    o->t0 = 1.0;
    o->max_evals = 12;
    o->grow = 2.0;
    o->shrink = 0.5;
    o->rtol = 1e-3;
}

ng_status ng_line_search(ng_objective_fn f, void *user, double phi0, double slope0,
                         const ng_line_search_opts *opts, ng_line_search_result *res) {
    ng_line_search_opts o;
    ctx c = {0};
    ng_status s = NG_OK;
    double t, ft, tb, fb;
    if (res == NULL) return ng_error(NG_ERR_INVALID_ARG, "line search: res is NULL");
    res->t = 0.0;
    res->phi = phi0;
    res->evals = 0;
    res->status = NG_LS_NO_DECREASE;
    if (f == NULL) return ng_error(NG_ERR_INVALID_ARG, "line search: objective f is NULL");
    if (opts) o = *opts;
    else ng_line_search_opts_default(&o);
    if (!isfinite(phi0))
        return ng_error(NG_ERR_INVALID_ARG, "line search: phi0 = %g must be finite", phi0);
    if (isinf(slope0))
        return ng_error(NG_ERR_INVALID_ARG, "line search: slope0 = %g must be finite or NAN", slope0);
    if (!(isfinite(o.t0) && o.t0 > 0.0))
        return ng_error(NG_ERR_INVALID_ARG, "line search: t0 = %g must be finite and > 0", o.t0);
    if (o.max_evals < 1)
        return ng_error(NG_ERR_INVALID_ARG, "line search: max_evals = %d must be >= 1", o.max_evals);
    if (!(isfinite(o.grow) && o.grow > 1.0))
        return ng_error(NG_ERR_INVALID_ARG, "line search: grow = %g must be finite and > 1", o.grow);
    if (!(o.shrink > 0.0 && o.shrink < 1.0))
        return ng_error(NG_ERR_INVALID_ARG, "line search: shrink = %g must be in (0, 1)", o.shrink);
    if (!(isfinite(o.rtol) && o.rtol >= 0.0))
        return ng_error(NG_ERR_INVALID_ARG, "line search: rtol = %g must be finite and >= 0", o.rtol);
    if (!isnan(slope0) && slope0 >= 0.0) {
        res->status = NG_LS_NOT_DESCENT;
        return NG_OK;
    }

    c.f = f;
    c.user = user;
    c.who = "line search";
    c.max_evals = o.max_evals;
    c.best_f = phi0;
    c.dim = 1;
    c.rtol = o.rtol;
    c.atol = 1e-12 * o.t0;

    t = o.t0;
    s = eval_t(&c, t, &ft);
    if (s != NG_OK) goto done;
    if (ft < phi0) {
        s = expand_refine(&c, 0.0, phi0, t, ft, slope0, o.grow, &tb, &fb);
    } else {
        /* shrink until phi(t) < phi(0): the bracket is (0, t, hi) */
        double hi = t, fhi = ft, hi2 = 0.0, fhi2 = INFINITY;
        int found = 0;
        while (budget_left(&c) > 0) {
            double tq = NAN;
            if (!isnan(slope0) && isfinite(fhi)) {
                /* minimiser of q(t) = phi0 + slope0 t + k t^2 through (hi, fhi); k > 0 since
                 * fhi >= phi0 and slope0 < 0 (Nocedal & Wright eq. 3.58) */
                tq = -slope0 * hi * hi / (2.0 * (fhi - phi0 - slope0 * hi));
            } else if (isfinite(fhi) && isfinite(fhi2)) {
                /* minimiser of the parabola through phi(0), phi(hi), phi(hi2) when convex */
                double d1 = (fhi - phi0) / hi, d2 = (fhi2 - phi0) / hi2;
                double k = (d2 - d1) / (hi2 - hi);
                if (k > 0.0) tq = 0.5 * (hi - d1 / k);
            }
            if (!isnan(tq)) t = fmin(fmax(tq, 0.1 * hi), 0.5 * hi);
            else t = o.shrink * hi;
            if (t < 1e-12 * o.t0) break;
            s = eval_t(&c, t, &ft);
            if (s != NG_OK) goto done;
            if (ft < phi0) {
                found = 1;
                break;
            }
            hi2 = hi;
            fhi2 = fhi;
            hi = t;
            fhi = ft;
        }
        if (found) s = brent(&c, 0.0, hi, t, ft, 0.0, phi0, hi, fhi, &tb, &fb);
    }

done:
    /* the best point of the whole search (Brent's answer is the same point or an earlier one) */
    res->evals = c.evals;
    if (c.best_f < phi0) {
        res->t = c.best_x[0];
        res->phi = c.best_f;
        res->status = NG_LS_DECREASE;
    }
    return s;
}

/* ---- 2-D minimiser: Powell's method ------------------------------------------------------------ */

const char *ng_min2d_stop_name(int stop) {
    switch (stop) {
    case NG_MIN2D_FTOL: return "ftol";
    case NG_MIN2D_XTOL: return "xtol";
    case NG_MIN2D_BUDGET: return "budget";
    default: return "unknown";
    }
}

void ng_min2d_opts_default(ng_min2d_opts *o) {
    o->scale[0] = 1.0;
    o->scale[1] = 1.0;
    o->max_evals = 30;
    o->ftol = 1e-9;
    o->xtol = 1e-9;
}

/* relative and absolute tolerance (in units of the trial step h) of Powell's line refinements */
#define MIN2D_LINE_RTOL 1e-3
#define MIN2D_LINE_ATOL 1e-3

/* Minimise along p + t u from f0 = g(p), trying t = h first (its value fh when known, else NAN),
 * then t = -h. *t_out = 0 and *f_out = f0 when no point of the line is lower. */
static ng_status line_min(ctx *c, const double p[2], const double u[2], double f0, double h,
                          double fh, double *t_out, double *f_out) {
    double fm = INFINITY, tb = 0.0, fb = f0;
    ng_status s = NG_OK;
    c->p[0] = p[0];
    c->p[1] = p[1];
    c->u[0] = u[0];
    c->u[1] = u[1];
    c->atol = MIN2D_LINE_ATOL * h;
    c->rtol = MIN2D_LINE_RTOL;
    *t_out = 0.0;
    *f_out = f0;
    if (isnan(fh)) {
        if (budget_left(c) < 1) return NG_OK;
        NG_TRY(eval_t(c, h, &fh));
    }
    if (fh < f0) {
        s = expand_refine(c, 0.0, f0, h, fh, NAN, 2.0, &tb, &fb);
    } else {
        if (budget_left(c) < 1) return NG_OK;
        NG_TRY(eval_t(c, -h, &fm));
        if (fm < f0) s = expand_refine(c, 0.0, f0, -h, fm, NAN, 2.0, &tb, &fb);
        else if (fm <= fh) s = brent(c, -h, h, 0.0, f0, -h, fm, h, fh, &tb, &fb);
        else s = brent(c, -h, h, 0.0, f0, h, fh, -h, fm, &tb, &fb);
    }
    if (fb < f0) {
        *t_out = tb;
        *f_out = fb;
    }
    return s;
}

ng_status ng_min2d(ng_objective_fn f, void *user, const double x0[2], double f0,
                   const ng_min2d_opts *opts, ng_min2d_result *res) {
    ng_min2d_opts o;
    ctx c = {0};
    ng_status s = NG_OK;
    double p[2], fp, xi[2][2], h[2];
    int i;
    if (res == NULL) return ng_error(NG_ERR_INVALID_ARG, "min2d: res is NULL");
    res->evals = 0;
    res->iters = 0;
    res->stop = NG_MIN2D_BUDGET;
    res->fx = f0;
    if (x0) {
        res->x[0] = x0[0];
        res->x[1] = x0[1];
    }
    if (f == NULL) return ng_error(NG_ERR_INVALID_ARG, "min2d: objective f is NULL");
    if (x0 == NULL) return ng_error(NG_ERR_INVALID_ARG, "min2d: x0 is NULL");
    for (i = 0; i < 2; i++)
        if (!isfinite(x0[i]))
            return ng_error(NG_ERR_INVALID_ARG, "min2d: x0[%d] = %g must be finite", i, x0[i]);
    if (f0 == -INFINITY)
        return ng_error(NG_ERR_INVALID_ARG, "min2d: f0 = -inf (give g(x0), +inf, or NAN)");
    if (opts) o = *opts;
    else ng_min2d_opts_default(&o);
    for (i = 0; i < 2; i++)
        if (!(isfinite(o.scale[i]) && o.scale[i] > 0.0))
            return ng_error(NG_ERR_INVALID_ARG, "min2d: scale[%d] = %g must be finite and > 0", i,
                            o.scale[i]);
    if (o.max_evals < 1)
        return ng_error(NG_ERR_INVALID_ARG, "min2d: max_evals = %d must be >= 1", o.max_evals);
    if (!(isfinite(o.ftol) && o.ftol >= 0.0))
        return ng_error(NG_ERR_INVALID_ARG, "min2d: ftol = %g must be finite and >= 0", o.ftol);
    if (!(isfinite(o.xtol) && o.xtol >= 0.0))
        return ng_error(NG_ERR_INVALID_ARG, "min2d: xtol = %g must be finite and >= 0", o.xtol);

    c.f = f;
    c.user = user;
    c.who = "min2d";
    c.max_evals = o.max_evals;
    c.dim = 2;
    c.best_x[0] = p[0] = x0[0];
    c.best_x[1] = p[1] = x0[1];
    c.best_f = INFINITY;
    if (isnan(f0)) {
        s = eval_x(&c, p, &fp);
        if (s != NG_OK) goto done;
    } else {
        fp = f0;
    }
    c.best_f = fp;
    xi[0][0] = o.scale[0];
    xi[0][1] = 0.0;
    xi[1][0] = 0.0;
    xi[1][1] = o.scale[1];
    h[0] = h[1] = 1.0;

    while (budget_left(&c) > 0) {
        double pt[2] = {p[0], p[1]}, fpt = fp, del = 0.0, pe[2], fe, dir[2], move;
        int ibig = 0;
        res->iters++;
        /* one line minimisation per direction; remember the one that lowered g most */
        for (i = 0; i < 2; i++) {
            double fprev = fp, t, ft;
            s = line_min(&c, p, xi[i], fp, h[i], NAN, &t, &ft);
            if (s != NG_OK) goto done;
            if (t != 0.0) {
                p[0] += t * xi[i][0];
                p[1] += t * xi[i][1];
                fp = ft;
                h[i] = fabs(t);
            } else {
                h[i] *= 0.25;
            }
            if (fprev - fp > del) {
                del = fprev - fp;
                ibig = i;
            }
        }
        if (isfinite(fpt) && isfinite(fp) &&
            2.0 * (fpt - fp) <= o.ftol * (fabs(fpt) + fabs(fp)) + 1e-300) {
            res->stop = NG_MIN2D_FTOL;
            break;
        }
        dir[0] = p[0] - pt[0];
        dir[1] = p[1] - pt[1];
        move = fmax(fabs(dir[0]) / o.scale[0], fabs(dir[1]) / o.scale[1]);
        if (move <= o.xtol) {
            res->stop = NG_MIN2D_XTOL;
            break;
        }
        if (budget_left(&c) < 1) break;
        /* the extrapolated point p + (p - p_start) (NR 10.7) */
        pe[0] = p[0] + dir[0];
        pe[1] = p[1] + dir[1];
        s = eval_x(&c, pe, &fe);
        if (s != NG_OK) goto done;
        if (fe < fpt) {
            /* replace the direction of largest decrease by p - p_start when the decrease along it
             * is not mostly due to that single direction (Powell's / NR's criterion) */
            double a = fpt - fp - del, b = fpt - fe;
            double test = 2.0 * (fpt - 2.0 * fp + fe) * a * a - del * b * b;
            if (test < 0.0 || !isfinite(test)) {
                double t, ft;
                s = line_min(&c, p, dir, fp, 1.0, fe, &t, &ft);
                if (s != NG_OK) goto done;
                if (t != 0.0) {
                    p[0] += t * dir[0];
                    p[1] += t * dir[1];
                    fp = ft;
                    dir[0] *= t;
                    dir[1] *= t;
                }
                xi[ibig][0] = xi[1][0];
                xi[ibig][1] = xi[1][1];
                h[ibig] = h[1];
                xi[1][0] = dir[0];
                xi[1][1] = dir[1];
                h[1] = 1.0;
            }
        }
        /* the search goes on from the best point seen (the extrapolation may be it) */
        if (c.best_f < fp) {
            p[0] = c.best_x[0];
            p[1] = c.best_x[1];
            fp = c.best_f;
        }
    }

done:
    res->evals = c.evals;
    res->x[0] = c.best_x[0];
    res->x[1] = c.best_x[1];
    res->fx = c.best_f;
    return s;
}
