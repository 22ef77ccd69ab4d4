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
 * (MINRES steps until the singularity shows) and with QLP steps throughout. */
static int test_singular_inconsistent(void) {
    static const double trancond[2] = {1e7, 1.0};
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
    for (t = 0; t < 2; t++) {
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

int main(void) {
    ng_status s = ng_backend_cpu_init(&g_cpu);
    if (s != NG_OK) {
        printf("cpu backend: %s\n", ng_last_error());
        return 1;
    }
    s = ng_backend_cuda_init(0, &g_cuda);
    if (s != NG_OK) {
        snprintf(g_cuda_reason, sizeof g_cuda_reason, "no CUDA backend here: %s", ng_last_error());
        g_cuda = NULL;
        ng_clear_error();
    }
    NGT_RUN(test_spd);
    NGT_RUN(test_indefinite);
    NGT_RUN(test_lambda);
    NGT_RUN(test_singular_consistent);
    NGT_RUN(test_singular_inconsistent);
    ng_backend_free(g_cuda);
    ng_backend_free(g_cpu);
    return ngt_finish();
}
