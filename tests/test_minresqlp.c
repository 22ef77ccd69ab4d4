/* test_minresqlp.c: MINRES-QLP (host/optim/minresqlp.c) against dense float64 references built
 * from a known eigendecomposition A = Q diag(lam) Q^T (Q orthogonal from LAPACKE_dsyev of a random
 * symmetric matrix): SPD, indefinite, singular consistent (minimum-length solution) and
 * inconsistent (minimum-length least-squares solution) systems, damping, the stopping rules (rtol
 * with the true residual, max_iter against the exact Krylov minimiser, the freeze of the iterate),
 * b = 0, n = 1, an ill-conditioned system, the MINRES-to-QLP transfer, bad configurations, and the
 * emulated CUDA backend against the CPU. A is applied as a dense float gemv on the backend. */
#include <lapacke.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends.h"
#include "harness.h"
#include "natgrad/backend.h"
#include "natgrad/solver.h"
#include "natgrad/status.h"

static ng_backend *g_cpu, *g_cuda;
static char g_cuda_reason[400];

/* ---- dense float64 helpers --------------------------------------------------------------- */

static double urand(uint64_t *s) { /* splitmix64 -> [0, 1) */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1p-53;
}

static double dnrm(const double *x, int n) {
    double s = 0.0;
    int i;
    for (i = 0; i < n; i++) s += x[i] * x[i];
    return sqrt(s);
}

static const char *stop_name(int s) {
    static const char *const names[] = {"maxiter", "rtol", "progress", "negcurv", "singular"};
    return s >= 0 && s < 5 ? names[s] : "?";
}

/* A test system: A = Q diag(lam) Q^T (double) and its float copy on a backend. */
typedef struct sys {
    int n;
    double *Q, *lam, *A; /* (n, n), (n), (n, n) */
    float *Af;           /* host float copy of A */
    ng_backend *be;
    float *dA;           /* device copy */
} sys;

static ng_status sys_apply(void *user, const float *x, float *y) {
    sys *s = (sys *)user;
    return ng_gemv(s->be, 0, s->n, s->n, 1.0f, s->dA, s->n, x, 0.0f, y);
}

static void sys_free(sys *s) {
    if (s->be && s->dA) ng_free(s->be, s->dA);
    free(s->Q);
    free(s->lam);
    free(s->A);
    free(s->Af);
    memset(s, 0, sizeof *s);
}

/* A random orthogonal Q (eigenvectors of a random symmetric matrix) and the given eigenvalues. */
static int sys_make(sys *s, int n, const double *lam, uint64_t seed) {
    double *w;
    int i, j, k;
    memset(s, 0, sizeof *s);
    s->n = n;
    s->Q = calloc((size_t)n * n, sizeof(double));
    s->lam = calloc((size_t)n, sizeof(double));
    s->A = calloc((size_t)n * n, sizeof(double));
    s->Af = calloc((size_t)n * n, sizeof(float));
    w = calloc((size_t)n, sizeof(double));
    if (!s->Q || !s->lam || !s->A || !s->Af || !w) {
        free(w);
        return 0;
    }
    for (j = 0; j < n; j++)
        for (i = j; i < n; i++) s->Q[i + (size_t)j * n] = s->Q[j + (size_t)i * n] = urand(&seed) - 0.5;
    if (LAPACKE_dsyev(LAPACK_COL_MAJOR, 'V', 'L', n, s->Q, n, w) != 0) {
        free(w);
        return 0;
    }
    free(w);
    memcpy(s->lam, lam, (size_t)n * sizeof(double));
    for (j = 0; j < n; j++)
        for (i = 0; i < n; i++) {
            double a = 0.0;
            for (k = 0; k < n; k++) a += s->Q[i + (size_t)k * n] * lam[k] * s->Q[j + (size_t)k * n];
            s->A[i + (size_t)j * n] = a;
        }
    for (j = 0; j < n; j++) /* exactly symmetric in float */
        for (i = j; i < n; i++)
            s->Af[i + (size_t)j * n] = s->Af[j + (size_t)i * n] = (float)s->A[i + (size_t)j * n];
    return 1;
}

static ng_status sys_upload(sys *s, ng_backend *be) {
    size_t bytes = (size_t)s->n * s->n * sizeof(float);
    if (s->be && s->dA) ng_free(s->be, s->dA);
    s->be = be;
    s->dA = NULL;
    NG_TRY(ng_alloc(be, bytes, (void **)&s->dA));
    return ng_set(be, s->dA, s->Af, bytes);
}

/* x = sum over |lam_i + lambda| > thr of (q_i . b) / (lam_i + lambda) q_i: the minimum-length
 * least-squares solution of (A + lambda I) x = b with eigenvalues up to thr counted as zero. */
static void pinv_solve(const sys *s, double lambda, double thr, const double *b, double *x) {
    int i, k, n = s->n;
    memset(x, 0, (size_t)n * sizeof(double));
    for (k = 0; k < n; k++) {
        double l = s->lam[k] + lambda, c = 0.0;
        if (fabs(l) <= thr) continue;
        for (i = 0; i < n; i++) c += s->Q[i + (size_t)k * n] * b[i];
        for (i = 0; i < n; i++) x[i] += c / l * s->Q[i + (size_t)k * n];
    }
}

/* r = b - (Af + lambda I) x in double (the float matrix the solver saw) */
static void residual(const sys *s, double lambda, const double *b, const float *x, double *r) {
    int i, j, n = s->n;
    for (i = 0; i < n; i++) r[i] = b[i] - lambda * (double)x[i];
    for (j = 0; j < n; j++)
        for (i = 0; i < n; i++) r[i] -= (double)s->Af[i + (size_t)j * n] * (double)x[j];
}

/* |x . q_k| over the eigenvectors with |lam_k + lambda| <= thr (the null-space part), as a norm */
static double null_part(const sys *s, double lambda, double thr, const float *x) {
    double t = 0.0;
    int i, k, n = s->n;
    for (k = 0; k < n; k++) {
        double c = 0.0;
        if (fabs(s->lam[k] + lambda) > thr) continue;
        for (i = 0; i < n; i++) c += s->Q[i + (size_t)k * n] * (double)x[i];
        t += c * c;
    }
    return sqrt(t);
}

static double rel_err(const float *x, const double *ref, int n) {
    double d = 0.0, r = 0.0;
    int i;
    for (i = 0; i < n; i++) {
        d += ((double)x[i] - ref[i]) * ((double)x[i] - ref[i]);
        r += ref[i] * ref[i];
    }
    return r > 0.0 ? sqrt(d / r) : sqrt(d);
}

/* Solve on be with b (double, rounded to float), x to the host. */
static int run_solve(ng_backend *be, sys *s, const double *b, const ng_minresqlp_config *cfg, float *x,
                     ng_minresqlp_result *res) {
    ng_minresqlp_ws ws;
    ng_linop op;
    float *bf = malloc((size_t)s->n * sizeof(float)), *db = NULL, *dx = NULL;
    size_t bytes = (size_t)s->n * sizeof(float);
    ng_status st = NG_OK;
    int i;
    if (!bf) return NGT_FAIL;
    for (i = 0; i < s->n; i++) bf[i] = (float)b[i];
    if (s->be != be && sys_upload(s, be) != NG_OK) {
        printf("  upload: %s\n", ng_last_error());
        free(bf);
        return NGT_FAIL;
    }
    op.n = (size_t)s->n;
    op.apply = sys_apply;
    op.user = s;
    memset(&ws, 0, sizeof ws);
    if ((st = ng_minresqlp_ws_init(&ws, be, (size_t)s->n, cfg->max_iter)) == NG_OK &&
        (st = ng_alloc(be, bytes, (void **)&db)) == NG_OK && (st = ng_alloc(be, bytes, (void **)&dx)) == NG_OK &&
        (st = ng_set(be, db, bf, bytes)) == NG_OK && (st = ng_fill(be, (size_t)s->n, 123.0f, dx)) == NG_OK &&
        (st = ng_minresqlp_solve(&ws, &op, db, dx, cfg, res)) == NG_OK)
        st = ng_get(be, x, dx, bytes);
    if (st == NG_OK) { /* b is not modified */
        float *b2 = malloc(bytes);
        if (b2 && ng_get(be, b2, db, bytes) == NG_OK && memcmp(b2, bf, bytes) != 0) {
            printf("  %s: the solver modified b\n", be->iface->name);
            st = NG_ERR_NUMERIC;
        }
        free(b2);
    } else
        printf("  %s: %s: %s\n", be->iface->name, ng_status_name(st), ng_last_error());
    ng_minresqlp_ws_free(&ws);
    if (db) ng_free(be, db);
    if (dx) ng_free(be, dx);
    free(bf);
    return st == NG_OK ? NGT_PASS : NGT_FAIL;
}

/* ---- tests ------------------------------------------------------------------------------- */

#define NMAX 200

/* eigenvalues: spread evenly in [lo, hi] with sign pattern: every third negative when indef */
static void spread(double *lam, int n, double lo, double hi, int indef) {
    int i;
    for (i = 0; i < n; i++) {
        double t = n > 1 ? (double)i / (n - 1) : 0.0;
        lam[i] = lo + (hi - lo) * t;
        if (indef && i % 3 == 1) lam[i] = -lam[i];
    }
}

static void rand_vec(double *b, int n, uint64_t seed) {
    int i;
    for (i = 0; i < n; i++) b[i] = urand(&seed) * 2.0 - 1.0;
}

/* Solve (A + lambda I) x = b with nonsingular A + lambda I; x agrees with the dense solve to rel
 * tol xtol, the reported relative residual with the true one. */
static int check_nonsingular(const char *what, int n, const double *lam, double lambda, double rtol,
                             double xtol, uint64_t seed) {
    sys s;
    double b[NMAX], xr[NMAX], r[NMAX];
    float x[NMAX];
    ng_minresqlp_config cfg;
    ng_minresqlp_result res;
    double err, tres;
    NGT_CHECK(sys_make(&s, n, lam, seed), "%s: dsyev failed", what);
    rand_vec(b, n, seed + 1);
    ng_minresqlp_config_default(&cfg);
    cfg.rtol = rtol;
    cfg.lambda = lambda;
    cfg.max_iter = 4 * n;
    if (run_solve(g_cpu, &s, b, &cfg, x, &res) != NGT_PASS) {
        sys_free(&s);
        return NGT_FAIL;
    }
    pinv_solve(&s, lambda, 0.0, b, xr);
    residual(&s, lambda, b, x, r);
    err = rel_err(x, xr, n);
    tres = dnrm(r, n) / dnrm(b, n);
    printf("  %s: n=%d iters=%d stop=%s rel_res=%.3g (true %.3g) rel err %.3g acond %.3g\n", what, n,
           res.iters, stop_name(res.stop), res.rel_res, tres, err, res.acond);
    sys_free(&s);
    NGT_CHECK(res.stop == NG_SOLVE_RTOL, "%s: stopped by %s", what, stop_name(res.stop));
    NGT_CHECK(res.rel_res <= rtol, "%s: reported %g > rtol %g", what, res.rel_res, rtol);
    /* the recurrence's residual tracks the true one down to float rounding (~1e-6 here) */
    NGT_CLOSE(tres, res.rel_res, 0.1 * rtol + 2e-6, "true vs reported relative residual");
    NGT_CHECK(err <= xtol, "%s: relative error %g > %g", what, err, xtol);
    return NGT_PASS;
}

/* SPD: eigenvalues in [1, 100]; x to 1e-4 (cond 100 times the float residual ~1e-6). */
static int test_spd(void) {
    double lam[NMAX];
    spread(lam, 150, 1.0, 100.0, 0);
    return check_nonsingular("spd", 150, lam, 0.0, 1e-6, 1e-4, 11);
}

/* Symmetric indefinite, eigenvalues +-[0.5, 20]. */
static int test_indefinite(void) {
    double lam[NMAX];
    spread(lam, 120, 0.5, 20.0, 1);
    return check_nonsingular("indefinite", 120, lam, 0.0, 1e-6, 2e-4, 12);
}

/* Damping: lambda = 2 on eigenvalues in [-1, 50] (not positive definite) makes it SPD; lambda =
 * -0.25 on [0.5, 10] shifts some eigenvalues negative (an indefinite damped system). */
static int test_lambda(void) {
    double lam[NMAX];
    int i;
    for (i = 0; i < 80; i++) lam[i] = -1.0 + 51.0 * i / 79.0;
    lam[10] = -0.5; /* keep lam + 2 away from 0 */
    if (check_nonsingular("lambda=2", 80, lam, 2.0, 1e-6, 1e-4, 13) != NGT_PASS) return NGT_FAIL;
    spread(lam, 80, 0.1, 10.0, 0);
    lam[0] = 0.1, lam[1] = 0.15, lam[2] = 0.6;
    return check_nonsingular("lambda=-0.35", 80, lam, -0.35, 1e-6, 1e-3, 14);
}

/* Singular, consistent: rank 60 of 100, b = A y; x is the minimum-length solution A^+ b (no
 * component in the null space, relative to ||x||). */
static int test_singular_consistent(void) {
    sys s;
    double lam[NMAX], y[NMAX], b[NMAX], xr[NMAX], r[NMAX];
    float x[NMAX];
    ng_minresqlp_config cfg;
    ng_minresqlp_result res;
    int i, j, n = 100;
    double err, nul, tres;
    spread(lam, n, 1.0, 10.0, 1);
    for (i = 60; i < n; i++) lam[i] = 0.0;
    NGT_CHECK(sys_make(&s, n, lam, 21), "dsyev failed");
    rand_vec(y, n, 22);
    for (i = 0; i < n; i++) {
        b[i] = 0.0;
        for (j = 0; j < n; j++) b[i] += s.A[i + (size_t)j * n] * y[j];
    }
    ng_minresqlp_config_default(&cfg);
    cfg.rtol = 1e-6;
    cfg.max_iter = 300;
    if (run_solve(g_cpu, &s, b, &cfg, x, &res) != NGT_PASS) {
        sys_free(&s);
        return NGT_FAIL;
    }
    pinv_solve(&s, 0.0, 1e-3, b, xr);
    residual(&s, 0.0, b, x, r);
    err = rel_err(x, xr, n);
    nul = null_part(&s, 0.0, 1e-3, x);
    tres = dnrm(r, n) / dnrm(b, n);
    printf("  singular consistent: iters=%d stop=%s rel_res=%.3g (true %.3g) err vs A^+ b %.3g null part %.3g ||x|| %.3g\n",
           res.iters, stop_name(res.stop), res.rel_res, tres, err, nul, dnrm(xr, n));
    sys_free(&s);
    NGT_CHECK(res.stop == NG_SOLVE_RTOL, "stopped by %s", stop_name(res.stop));
    NGT_CHECK(tres <= 1e-5, "true relative residual %g", tres);
    NGT_CHECK(nul <= 1e-5 * dnrm(xr, n), "null-space part %g of ||x|| = %g", nul, dnrm(xr, n));
    NGT_CHECK(err <= 1e-4, "relative error against A^+ b: %g", err);
    return NGT_PASS;
}

/* Singular, inconsistent: b has a null-space part; x is the minimum-length least-squares
 * solution A^+ b, and the solver says the system is singular. Run with the default trancond
 * (MINRES steps until the singularity shows), with QLP steps throughout, and with a transfer
 * after a few iterations. */
static int test_singular_inconsistent(void) {
    static const double trancond[3] = {1e7, 1.0, 3.0};
    sys s;
    double lam[NMAX], b[NMAX], xr[NMAX], r[NMAX], ar[NMAX];
    float x[NMAX];
    ng_minresqlp_config cfg;
    ng_minresqlp_result res;
    int i, j, t, n = 60;
    for (i = 0; i < n; i++) lam[i] = (i % 12 == 11) ? 0.0 : 1.0 + (i % 6); /* 6 distinct values, 5 zeros */
    NGT_CHECK(sys_make(&s, n, lam, 31), "dsyev failed");
    rand_vec(b, n, 32);
    pinv_solve(&s, 0.0, 1e-3, b, xr);
    for (t = 0; t < 3; t++) {
        double err, nul, rn, arn;
        ng_minresqlp_config_default(&cfg);
        cfg.max_iter = 100;
        cfg.trancond = trancond[t];
        if (run_solve(g_cpu, &s, b, &cfg, x, &res) != NGT_PASS) {
            sys_free(&s);
            return NGT_FAIL;
        }
        residual(&s, 0.0, b, x, r);
        for (i = 0; i < n; i++) {
            ar[i] = 0.0;
            for (j = 0; j < n; j++) ar[i] += s.A[i + (size_t)j * n] * r[j];
        }
        err = rel_err(x, xr, n);
        nul = null_part(&s, 0.0, 1e-3, x);
        rn = dnrm(r, n);
        arn = dnrm(ar, n);
        printf("  singular inconsistent (trancond %g): iters=%d stop=%s rel_res=%.4g (true %.4g) rel_ares=%.3g (true %.3g) err %.3g null %.3g\n",
               trancond[t], res.iters, stop_name(res.stop), res.rel_res, rn / dnrm(b, n), res.rel_ares,
               arn / (6.0 * rn), err, nul);
        if (res.stop != NG_SOLVE_SINGULAR || err > 1e-4 || nul > 1e-5 * dnrm(xr, n)) {
            sys_free(&s);
            NGT_CHECK(res.stop == NG_SOLVE_SINGULAR, "stopped by %s", stop_name(res.stop));
            NGT_CHECK(err <= 1e-4, "relative error against A^+ b: %g", err);
            NGT_CHECK(nul <= 1e-5 * dnrm(xr, n), "null-space part %g", nul);
        }
        /* the least-squares residual is the part of b in the null space */
        if (fabs(rn / dnrm(b, n) - res.rel_res) > 1e-4 * res.rel_res + 1e-6) {
            sys_free(&s);
            NGT_CLOSE(rn / dnrm(b, n), res.rel_res, 1e-4 * res.rel_res + 1e-6, "true vs reported ||r|| / ||b||");
        }
    }
    sys_free(&s);
    return NGT_PASS;
}

/* The stopping rules. rtol: the reported relative residual is <= rtol and matches the true one;
 * the device froze x at the iteration where the rule fired, so a run with rtol = 0 and max_iter =
 * that iteration gives the same x bit for bit (stopped by max_iter). max_iter: x_k minimises
 * ||b - A x|| over the Krylov subspace K_k(A, b) (the exact minimiser from a float64 basis). */
static int test_stopping_rules(void) {
    sys s;
    double lam[NMAX], b[NMAX], r[NMAX], K[NMAX * 8], AK[NMAX * 8], bb[NMAX];
    float x[NMAX], x2[NMAX];
    ng_minresqlp_config cfg;
    ng_minresqlp_result res, res2;
    int i, j, c, n = 90, kmax = 8;
    double tres, rmin;
    spread(lam, n, 0.2, 5.0, 1);
    NGT_CHECK(sys_make(&s, n, lam, 41), "dsyev failed");
    rand_vec(b, n, 42);
    ng_minresqlp_config_default(&cfg);
    cfg.rtol = 1e-3;
    if (run_solve(g_cpu, &s, b, &cfg, x, &res) != NGT_PASS) goto fail;
    residual(&s, 0.0, b, x, r);
    tres = dnrm(r, n) / dnrm(b, n);
    printf("  rtol 1e-3: iters=%d stop=%s rel_res=%.4g true %.4g\n", res.iters, stop_name(res.stop), res.rel_res, tres);
    if (res.stop != NG_SOLVE_RTOL || !(res.rel_res <= 1e-3) || fabs(tres - res.rel_res) > 1e-2 * res.rel_res + 2e-6) {
        printf("  rtol stop: stop %s, reported %g, true %g\n", stop_name(res.stop), res.rel_res, tres);
        goto fail;
    }
    cfg.rtol = 0.0;
    cfg.max_iter = res.iters;
    if (run_solve(g_cpu, &s, b, &cfg, x2, &res2) != NGT_PASS) goto fail;
    if (res2.stop != NG_SOLVE_MAXITER || res2.iters != res.iters || memcmp(x, x2, (size_t)n * sizeof(float)) != 0 ||
        res2.rel_res != res.rel_res) {
        printf("  frozen iterate: rtol run %d iters, max_iter run %d iters stop %s, x %s, rel_res %g vs %g\n", res.iters,
               res2.iters, stop_name(res2.stop), memcmp(x, x2, (size_t)n * sizeof(float)) ? "differs" : "same",
               res.rel_res, res2.rel_res);
        goto fail;
    }
    /* max_iter = kmax against the exact minimiser over K_kmax (orthonormal basis, dgels) */
    cfg.max_iter = kmax;
    if (run_solve(g_cpu, &s, b, &cfg, x, &res) != NGT_PASS) goto fail;
    for (c = 0; c < kmax; c++) {
        double *q = K + (size_t)c * n;
        if (c == 0) memcpy(q, b, (size_t)n * sizeof(double));
        else
            for (i = 0; i < n; i++) {
                q[i] = 0.0;
                for (j = 0; j < n; j++) q[i] += s.A[i + (size_t)j * n] * K[(size_t)(c - 1) * n + j];
            }
        for (j = 0; j < 2 * c; j++) { /* Gram-Schmidt twice */
            const double *p = K + (size_t)(j % c) * n;
            double d = 0.0;
            for (i = 0; i < n; i++) d += p[i] * q[i];
            for (i = 0; i < n; i++) q[i] -= d * p[i];
        }
        {
            double nq = dnrm(q, n);
            for (i = 0; i < n; i++) q[i] /= nq;
        }
    }
    for (c = 0; c < kmax; c++)
        for (i = 0; i < n; i++) {
            AK[i + (size_t)c * n] = 0.0;
            for (j = 0; j < n; j++) AK[i + (size_t)c * n] += s.A[i + (size_t)j * n] * K[j + (size_t)c * n];
        }
    memcpy(bb, b, (size_t)n * sizeof(double));
    if (LAPACKE_dgels(LAPACK_COL_MAJOR, 'N', n, kmax, 1, AK, n, bb, n) != 0) goto fail;
    rmin = dnrm(bb + kmax, n - kmax) / dnrm(b, n);
    residual(&s, 0.0, b, x, r);
    tres = dnrm(r, n) / dnrm(b, n);
    printf("  max_iter %d: iters=%d stop=%s rel_res=%.6g true %.6g, min over K_%d %.6g\n", kmax, res.iters,
           stop_name(res.stop), res.rel_res, tres, kmax, rmin);
    if (res.stop != NG_SOLVE_MAXITER || res.iters != kmax || fabs(tres - rmin) > 1e-4 * rmin ||
        fabs(res.rel_res - rmin) > 1e-4 * rmin)
        goto fail;
    sys_free(&s);
    return NGT_PASS;
fail:
    sys_free(&s);
    return NGT_FAIL;
}

/* b = 0: x = 0 at once (whatever x held), no iteration. n = 1: x = b / a, and a = 0 gives the
 * minimum-length least-squares solution x = 0 (singular). */
static int test_trivial(void) {
    sys s;
    double lam[NMAX], b[NMAX];
    float x[NMAX];
    ng_minresqlp_config cfg;
    ng_minresqlp_result res;
    static const double a1[3] = {3.0, -4.0, 0.0}, b1[3] = {2.0, 1.0, 1.0}, want[3] = {2.0 / 3.0, -0.25, 0.0};
    int i, t;
    spread(lam, 20, 1.0, 3.0, 0);
    NGT_CHECK(sys_make(&s, 20, lam, 51), "dsyev failed");
    memset(b, 0, sizeof b);
    ng_minresqlp_config_default(&cfg);
    if (run_solve(g_cpu, &s, b, &cfg, x, &res) != NGT_PASS) {
        sys_free(&s);
        return NGT_FAIL;
    }
    sys_free(&s);
    for (i = 0; i < 20; i++) NGT_CHECK(x[i] == 0.0f, "b = 0: x[%d] = %g", i, (double)x[i]);
    NGT_CHECK(res.iters == 0 && res.stop == NG_SOLVE_RTOL && res.rel_res == 0.0, "b = 0: iters %d stop %s rel_res %g",
              res.iters, stop_name(res.stop), res.rel_res);
    for (t = 0; t < 3; t++) {
        NGT_CHECK(sys_make(&s, 1, &a1[t], 52), "dsyev failed");
        b[0] = b1[t];
        if (run_solve(g_cpu, &s, b, &cfg, x, &res) != NGT_PASS) {
            sys_free(&s);
            return NGT_FAIL;
        }
        sys_free(&s);
        printf("  n = 1, a = %g, b = %g: x = %.9g iters %d stop %s rel_res %g\n", a1[t], b1[t], (double)x[0], res.iters,
               stop_name(res.stop), res.rel_res);
        NGT_CLOSE(x[0], want[t], 1e-7, "n = 1: x");
        NGT_CHECK(res.iters == 1, "n = 1: %d iterations", res.iters);
        NGT_CHECK(res.stop == (a1[t] != 0.0 ? NG_SOLVE_RTOL : NG_SOLVE_SINGULAR), "n = 1, a = %g: stop %s", a1[t],
                  stop_name(res.stop));
    }
    return NGT_PASS;
}

/* Condition 1e6 (eigenvalues in +-[0.1, 1] and a tail down to 1e-6), b = A x_true: the float solver reaches the
 * residual rtol asks for (or says the system is numerically singular at that level), the reported
 * residual is the true one, x is right on the eigenvalues >= 1e-2 (where float32 can resolve
 * it), and ||x|| does not blow up. */
static int test_ill_conditioned(void) {
    sys s;
    double lam[NMAX], xt[NMAX], b[NMAX], r[NMAX];
    float x[NMAX];
    ng_minresqlp_config cfg;
    ng_minresqlp_result res;
    int i, j, k, n = 100;
    double tres, nb, e = 0.0, en = 0.0, xn = 0.0;
    for (i = 0; i < n; i++) /* 88 in +-[0.1, 1], 12 log-spaced down to 1e-6 */
        lam[i] = (i < 88 ? 0.1 + 0.9 * i / 87.0 : pow(10.0, -2.0 - 4.0 * (i - 88) / 11.0)) * (i % 2 ? -1.0 : 1.0);
    NGT_CHECK(sys_make(&s, n, lam, 61), "dsyev failed");
    rand_vec(xt, n, 62);
    for (i = 0; i < n; i++) {
        b[i] = 0.0;
        for (j = 0; j < n; j++) b[i] += s.A[i + (size_t)j * n] * xt[j];
    }
    nb = dnrm(b, n);
    ng_minresqlp_config_default(&cfg);
    cfg.rtol = 1e-4;
    cfg.max_iter = 400;
    if (run_solve(g_cpu, &s, b, &cfg, x, &res) != NGT_PASS) {
        sys_free(&s);
        return NGT_FAIL;
    }
    residual(&s, 0.0, b, x, r);
    tres = dnrm(r, n) / nb;
    for (k = 0; k < n; k++) { /* error on the well-resolved eigenvectors */
        double cx = 0.0, ct = 0.0;
        for (i = 0; i < n; i++) {
            cx += s.Q[i + (size_t)k * n] * (double)x[i];
            ct += s.Q[i + (size_t)k * n] * xt[i];
        }
        if (fabs(lam[k]) < 1e-2) continue;
        e += (cx - ct) * (cx - ct);
        en += ct * ct;
    }
    for (i = 0; i < n; i++) xn += (double)x[i] * x[i];
    printf("  cond 1e6: iters=%d stop=%s rel_res=%.4g true %.4g acond %.3g, err on |lam| >= 1e-2 %.3g, ||x|| %.4g (x_true %.4g)\n",
           res.iters, stop_name(res.stop), res.rel_res, tres, res.acond, sqrt(e / en), sqrt(xn), dnrm(xt, n));
    sys_free(&s);
    NGT_CHECK(res.stop == NG_SOLVE_RTOL || res.stop == NG_SOLVE_SINGULAR, "stopped by %s", stop_name(res.stop));
    NGT_CHECK(tres <= 2e-4, "true relative residual %g", tres);
    NGT_CLOSE(tres, res.rel_res, 0.05 * tres + 2e-6, "true vs reported relative residual");
    NGT_CHECK(sqrt(e / en) <= 1e-2, "relative error on the large eigenvalues %g", sqrt(e / en));
    NGT_CHECK(sqrt(xn) <= 2.0 * dnrm(xt, n), "||x|| = %g blew up (x_true %g)", sqrt(xn), dnrm(xt, n));
    return NGT_PASS;
}

/* MINRES steps, QLP steps throughout (trancond = 1) and a switch in the middle (trancond = 20 on a
 * system of condition 400, so the estimate crosses it after a few iterations: the transfer of
 * section 6.1) give the same iterates on a nonsingular system. */
static int test_transfer(void) {
    static const double tc[3] = {1e7, 1.0, 20.0};
    sys s;
    double lam[NMAX], b[NMAX], xr[NMAX];
    float x[3][NMAX];
    ng_minresqlp_config cfg;
    ng_minresqlp_result res[3];
    int t, n = 70;
    spread(lam, n, 0.05, 20.0, 1);
    NGT_CHECK(sys_make(&s, n, lam, 71), "dsyev failed");
    rand_vec(b, n, 72);
    pinv_solve(&s, 0.0, 0.0, b, xr);
    for (t = 0; t < 3; t++) {
        ng_minresqlp_config_default(&cfg);
        cfg.rtol = 1e-6;
        cfg.max_iter = 300;
        cfg.trancond = tc[t];
        if (run_solve(g_cpu, &s, b, &cfg, x[t], &res[t]) != NGT_PASS) {
            sys_free(&s);
            return NGT_FAIL;
        }
        printf("  trancond %g: iters=%d (%d QLP) stop=%s rel_res=%.3g acond %.3g err %.3g\n", tc[t], res[t].iters,
               res[t].qlp_iters, stop_name(res[t].stop), res[t].rel_res, res[t].acond, rel_err(x[t], xr, n));
    }
    sys_free(&s);
    for (t = 0; t < 3; t++) {
        NGT_CHECK(res[t].stop == NG_SOLVE_RTOL, "trancond %g: stop %s", tc[t], stop_name(res[t].stop));
        NGT_CHECK(rel_err(x[t], xr, n) <= 1e-4, "trancond %g: relative error %g", tc[t], rel_err(x[t], xr, n));
        NGT_CHECK(abs(res[t].iters - res[0].iters) <= 2, "trancond %g: %d iterations, MINRES %d", tc[t], res[t].iters,
                  res[0].iters);
    }
    NGT_CHECK(res[0].qlp_iters == 0 && res[1].qlp_iters == res[1].iters, "QLP steps: %d of %d (MINRES), %d of %d (QLP)",
              res[0].qlp_iters, res[0].iters, res[1].qlp_iters, res[1].iters);
    NGT_CHECK(res[2].qlp_iters > 0 && res[2].qlp_iters < res[2].iters - 2, "trancond 20: %d QLP steps of %d: no transfer",
              res[2].qlp_iters, res[2].iters);
    return NGT_PASS;
}

/* Configurations out of range are rejected with the field named; so are a workspace of another
 * size, x aliasing b and NULL arguments. */
static int test_bad_config(void) {
    static const struct {
        const char *field;
        int max_iter;
        double rtol, lambda, maxxnorm, trancond;
    } bad[] = {{"max_iter", 0, 1e-4, 0, 1e7, 1e7},      {"rtol", 10, -1e-3, 0, 1e7, 1e7},
               {"rtol", 10, NAN, 0, 1e7, 1e7},          {"rtol", 10, 1.5, 0, 1e7, 1e7},
               {"lambda", 10, 1e-4, INFINITY, 1e7, 1e7}, {"maxxnorm", 10, 1e-4, 0, 0.0, 1e7},
               {"maxxnorm", 10, 1e-4, 0, NAN, 1e7},     {"trancond", 10, 1e-4, 0, 1e7, 0.5}};
    ng_minresqlp_config cfg;
    ng_minresqlp_ws ws;
    ng_minresqlp_result res;
    ng_linop op = {4, NULL, NULL};
    size_t i;
    ng_minresqlp_config_default(&cfg);
    NGT_CHECK(cfg.max_iter == 250 && cfg.rtol == 1e-4 && cfg.lambda == 0.0 && cfg.maxxnorm == 1e7 && cfg.trancond == 1e7,
              "defaults %d %g %g %g %g", cfg.max_iter, cfg.rtol, cfg.lambda, cfg.maxxnorm, cfg.trancond);
    NGT_OK(ng_minresqlp_config_check(&cfg));
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ng_status st;
        ng_minresqlp_config_default(&cfg);
        cfg.max_iter = bad[i].max_iter;
        cfg.rtol = bad[i].rtol;
        cfg.lambda = bad[i].lambda;
        cfg.maxxnorm = bad[i].maxxnorm;
        cfg.trancond = bad[i].trancond;
        ng_clear_error();
        st = ng_minresqlp_config_check(&cfg);
        NGT_CHECK(st == NG_ERR_INVALID_ARG && strstr(ng_last_error(), bad[i].field),
                  "case %zu: %s, message \"%s\" should name %s", i, ng_status_name(st), ng_last_error(), bad[i].field);
    }
    NGT_CHECK(ng_minresqlp_ws_init(&ws, g_cpu, 0, 10) == NG_ERR_INVALID_ARG, "workspace of n = 0 accepted");
    NGT_OK(ng_minresqlp_ws_init(&ws, g_cpu, 5, 10));
    ng_minresqlp_config_default(&cfg);
    cfg.max_iter = 0;
    NGT_CHECK(ng_minresqlp_solve(&ws, &op, ws.vecs, ws.vecs, &cfg, &res) == NG_ERR_INVALID_ARG, "NULL apply accepted");
    op.apply = sys_apply;
    NGT_CHECK(ng_minresqlp_solve(&ws, &op, ws.vecs, ws.vecs, &cfg, &res) == NG_ERR_INVALID_ARG &&
                  strstr(ng_last_error(), "max_iter"),
              "max_iter = 0 accepted by solve: %s", ng_last_error());
    cfg.max_iter = 10;
    NGT_CHECK(ng_minresqlp_solve(&ws, &op, ws.vecs, ws.vecs, &cfg, &res) == NG_ERR_INVALID_ARG &&
                  strstr(ng_last_error(), "unknowns"),
              "an operator of 4 unknowns on a workspace of 5 accepted: %s", ng_last_error());
    op.n = 5;
    NGT_CHECK(ng_minresqlp_solve(&ws, &op, ws.vecs, ws.vecs, &cfg, &res) == NG_ERR_INVALID_ARG &&
                  strstr(ng_last_error(), "aliases"),
              "x aliasing b accepted: %s", ng_last_error());
    ng_minresqlp_ws_free(&ws);
    ng_minresqlp_ws_free(&ws); /* twice is harmless */
    ng_clear_error();
    return NGT_PASS;
}

/* A NaN from the operator is NG_ERR_NUMERIC, not a silent result. */
static ng_status nan_apply(void *user, const float *x, float *y) {
    sys *s = (sys *)user;
    return ng_fill(s->be, (size_t)s->n, NAN, y);
}
static int test_nan_operator(void) {
    sys s;
    double lam[4] = {1, 2, 3, 4}, b[4] = {1, 1, 1, 1};
    float bf[4] = {1, 1, 1, 1}, *db = NULL, *dx = NULL;
    ng_minresqlp_ws ws;
    ng_minresqlp_config cfg;
    ng_minresqlp_result res;
    ng_linop op;
    ng_status st;
    (void)b;
    NGT_CHECK(sys_make(&s, 4, lam, 81), "dsyev failed");
    s.be = g_cpu;
    op.n = 4;
    op.apply = nan_apply;
    op.user = &s;
    ng_minresqlp_config_default(&cfg);
    NGT_OK(ng_minresqlp_ws_init(&ws, g_cpu, 4, cfg.max_iter));
    NGT_OK(ng_alloc(g_cpu, sizeof bf, (void **)&db));
    NGT_OK(ng_alloc(g_cpu, sizeof bf, (void **)&dx));
    NGT_OK(ng_set(g_cpu, db, bf, sizeof bf));
    st = ng_minresqlp_solve(&ws, &op, db, dx, &cfg, &res);
    ng_minresqlp_ws_free(&ws);
    ng_free(g_cpu, db);
    ng_free(g_cpu, dx);
    s.be = NULL;
    sys_free(&s);
    NGT_CHECK(st == NG_ERR_NUMERIC && strstr(ng_last_error(), "non-finite"), "NaN operator: %s (%s)", ng_status_name(st),
              ng_last_error());
    ng_clear_error();
    return NGT_PASS;
}

/* The emulated (or real) CUDA backend against the CPU on small systems (SPD, indefinite with a
 * switch to QLP, singular inconsistent): the same stop, iteration counts within one (the backends'
 * dot products round differently), x to float tolerance. */
static int test_cpu_vs_cuda(void) {
    sys s;
    double lam[NMAX], b[NMAX];
    float xc[NMAX], xg[NMAX];
    ng_minresqlp_config cfg;
    ng_minresqlp_result rc, rg;
    int t, i, n = 24;
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    for (t = 0; t < 3; t++) {
        double xn = 0.0, d = 0.0;
        ng_minresqlp_config_default(&cfg);
        cfg.rtol = 1e-5;
        if (t == 0) spread(lam, n, 1.0, 10.0, 0);
        if (t == 1) {
            spread(lam, n, 0.1, 10.0, 1);
            cfg.trancond = 5.0;
        }
        if (t == 2)
            for (i = 0; i < n; i++) lam[i] = i % 5 == 4 ? 0.0 : 1.0 + i % 3;
        NGT_CHECK(sys_make(&s, n, lam, 91 + (uint64_t)t), "dsyev failed");
        rand_vec(b, n, 95 + (uint64_t)t);
        if (run_solve(g_cpu, &s, b, &cfg, xc, &rc) != NGT_PASS || run_solve(g_cuda, &s, b, &cfg, xg, &rg) != NGT_PASS) {
            sys_free(&s);
            return NGT_FAIL;
        }
        sys_free(&s);
        for (i = 0; i < n; i++) {
            xn += (double)xc[i] * xc[i];
            d += ((double)xc[i] - xg[i]) * ((double)xc[i] - xg[i]);
        }
        printf("  case %d: cpu %d iters %s rel_res %.3g, cuda %d iters %s rel_res %.3g, |x_cpu - x_cuda| / |x| = %.3g\n", t,
               rc.iters, stop_name(rc.stop), rc.rel_res, rg.iters, stop_name(rg.stop), rg.rel_res, sqrt(d / xn));
        NGT_CHECK(rc.stop == rg.stop, "case %d: stop %s vs %s", t, stop_name(rc.stop), stop_name(rg.stop));
        NGT_CHECK(abs(rc.iters - rg.iters) <= 1, "case %d: iterations %d vs %d", t, rc.iters, rg.iters);
        NGT_CHECK(sqrt(d / xn) <= 2e-5, "case %d: x differs by %g relative", t, sqrt(d / xn));
    }
    return NGT_PASS;
}

int main(void) {
    if (ngt_open_backends(&g_cpu, &g_cuda, g_cuda_reason, sizeof g_cuda_reason)) return 1;
    NGT_RUN(test_spd);
    NGT_RUN(test_indefinite);
    NGT_RUN(test_lambda);
    NGT_RUN(test_singular_consistent);
    NGT_RUN(test_singular_inconsistent);
    NGT_RUN(test_stopping_rules);
    NGT_RUN(test_trivial);
    NGT_RUN(test_ill_conditioned);
    NGT_RUN(test_transfer);
    NGT_RUN(test_bad_config);
    NGT_RUN(test_nan_operator);
    NGT_RUN(test_cpu_vs_cuda);
    ng_backend_free(g_cuda);
    ng_backend_free(g_cpu);
    return ngt_finish();
}
