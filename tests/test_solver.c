/* test_solver.c: linear conjugate gradient (host/optim/cg.c) against dense float64 references.
 *   - SPD systems (with damping lambda, warm start, diagonal preconditioner) = dense Cholesky solve
 *   - semi-definite consistent systems: CG from 0 gives the minimum-length solution
 *   - indefinite systems: check_curvature stops before a direction of negative curvature
 *   - stopping: rtol (one iteration late, as solver.h says), max_iter, Martens' progress rule
 *     against its formula on the phi history, phi = the dense quadratic
 *   - kept iterates at ceil(1.3^j) equal the runs stopped at those iterations
 *   - b = 0, exact convergence (0 / 0 stays 0), bad configurations
 *   - CPU and (emulated) CUDA agree. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends.h"
#include "harness.h"
#include "natgrad/backend.h"
#include "natgrad/solver.h"

static ng_backend *g_cpu, *g_cuda;
static char g_cuda_reason[512];

static uint64_t g_state = 4242;
static double urand(void) {
    g_state = g_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_state >> 11) / 9007199254740992.0;
}
static double nrand(void) {
    double u = urand() + 1e-300, v = urand();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* A = Q diag(ev) Q^T with Q from Gram-Schmidt of a Gaussian matrix (column-major, n x n) */
static double *sym_from_eigs(int n, const double *ev, double *Qout) {
    double *Q = (double *)malloc(sizeof(double) * n * n), *A = (double *)calloc((size_t)n * n, sizeof(double));
    int i, j, k;
    for (i = 0; i < n * n; i++) Q[i] = nrand();
    for (j = 0; j < n; j++) {
        for (k = 0; k < j; k++) {
            double d = 0.0;
            for (i = 0; i < n; i++) d += Q[i + n * j] * Q[i + n * k];
            for (i = 0; i < n; i++) Q[i + n * j] -= d * Q[i + n * k];
        }
        {
            double s = 0.0;
            for (i = 0; i < n; i++) s += Q[i + n * j] * Q[i + n * j];
            s = sqrt(s);
            for (i = 0; i < n; i++) Q[i + n * j] /= s;
        }
    }
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) {
            double s = 0.0;
            for (k = 0; k < n; k++) s += Q[i + n * k] * ev[k] * Q[j + n * k];
            A[i + n * j] = s;
        }
    if (Qout) memcpy(Qout, Q, sizeof(double) * n * n);
    free(Q);
    return A;
}

/* x = (A + lambda I)^-1 b by Gaussian elimination with partial pivoting (double) */
static int dsolve(int n, const double *A, double lambda, const double *b, double *x) {
    double *M = (double *)malloc(sizeof(double) * n * (n + 1));
    int i, j, k;
    for (i = 0; i < n; i++) {
        for (j = 0; j < n; j++) M[i * (n + 1) + j] = A[i + n * j] + (i == j ? lambda : 0.0);
        M[i * (n + 1) + n] = b[i];
    }
    for (k = 0; k < n; k++) {
        int piv = k;
        for (i = k + 1; i < n; i++)
            if (fabs(M[i * (n + 1) + k]) > fabs(M[piv * (n + 1) + k])) piv = i;
        if (M[piv * (n + 1) + k] == 0.0) {
            free(M);
            return -1;
        }
        if (piv != k)
            for (j = 0; j <= n; j++) {
                double t = M[k * (n + 1) + j];
                M[k * (n + 1) + j] = M[piv * (n + 1) + j];
                M[piv * (n + 1) + j] = t;
            }
        for (i = k + 1; i < n; i++) {
            double f = M[i * (n + 1) + k] / M[k * (n + 1) + k];
            for (j = k; j <= n; j++) M[i * (n + 1) + j] -= f * M[k * (n + 1) + j];
        }
    }
    for (i = n - 1; i >= 0; i--) {
        double s = M[i * (n + 1) + n];
        for (j = i + 1; j < n; j++) s -= M[i * (n + 1) + j] * x[j];
        x[i] = s / M[i * (n + 1) + i];
    }
    free(M);
    return 0;
}

/* a dense system on a backend */
typedef struct sys {
    ng_backend *be;
    int n;
    double *A;   /* host, double */
    float *dA;   /* device (n x n) */
    float *db, *dx, *dm;
    ng_linop op;
    ng_cg_ws ws;
    int products;
} sys;

static ng_status dense_apply(void *user, const float *x, float *y) {
    sys *S = (sys *)user;
    S->products++;
    return ng_gemv(S->be, 0, S->n, S->n, 1.0f, S->dA, S->n, x, 0.0f, y);
}

static ng_status put(ng_backend *be, float *dst, const double *src, int n) {
    float *t = (float *)malloc(sizeof(float) * (size_t)n);
    ng_status s;
    int i;
    for (i = 0; i < n; i++) t[i] = (float)src[i];
    s = ng_set(be, dst, t, sizeof(float) * (size_t)n);
    free(t);
    return s;
}
static ng_status get(ng_backend *be, double *dst, const float *src, int n) {
    float *t = (float *)malloc(sizeof(float) * (size_t)n);
    ng_status s = ng_get(be, t, src, sizeof(float) * (size_t)n);
    int i;
    for (i = 0; i < n; i++) dst[i] = t[i];
    free(t);
    return s;
}

static ng_status sys_init(sys *S, ng_backend *be, int n, const double *A, const double *b, int max_iter, int keep) {
    ng_status s;
    void *mem;
    memset(S, 0, sizeof *S);
    S->be = be;
    S->n = n;
    S->A = (double *)malloc(sizeof(double) * n * n);
    memcpy(S->A, A, sizeof(double) * n * n);
    NG_TRY(ng_alloc(be, sizeof(float) * ((size_t)n * n + 3 * (size_t)n), &mem));
    S->dA = (float *)mem;
    S->db = S->dA + (size_t)n * n;
    S->dx = S->db + n;
    S->dm = S->dx + n;
    NG_TRY(put(be, S->dA, A, n * n));
    NG_TRY(put(be, S->db, b, n));
    NG_TRY(ng_memset0(be, S->dx, sizeof(float) * (size_t)n));
    S->op.n = (size_t)n;
    S->op.apply = dense_apply;
    S->op.user = S;
    s = ng_cg_ws_init(&S->ws, be, (size_t)n, max_iter, keep);
    return s;
}
static void sys_free(sys *S) {
    ng_cg_ws_free(&S->ws);
    if (S->dA) ng_free(S->be, S->dA);
    free(S->A);
    memset(S, 0, sizeof *S);
}

static double rel_diff(const double *a, const double *b, int n) {
    double num = 0.0, den = 0.0;
    int i;
    for (i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return sqrt(num / (den > 0.0 ? den : 1.0));
}
/* ||b - (A + lambda I) x|| / ||b|| in double */
static double true_rel_res(const double *A, int n, double lambda, const double *b, const double *x) {
    double num = 0.0, den = 0.0;
    int i, j;
    for (i = 0; i < n; i++) {
        double r = b[i] - lambda * x[i];
        for (j = 0; j < n; j++) r -= A[i + n * j] * x[j];
        num += r * r;
        den += b[i] * b[i];
    }
    return sqrt(num / den);
}
static double quad_phi(const double *A, int n, double lambda, const double *b, const double *x) {
    double q = 0.0;
    int i, j;
    for (i = 0; i < n; i++) {
        double Ax = lambda * x[i];
        for (j = 0; j < n; j++) Ax += A[i + n * j] * x[j];
        q += 0.5 * x[i] * Ax - b[i] * x[i];
    }
    return q;
}

static void geom_eigs(double *ev, int n, double lo, double hi) {
    int i;
    for (i = 0; i < n; i++) ev[i] = lo * pow(hi / lo, n > 1 ? (double)i / (n - 1) : 0.0);
}

/* ---- SPD systems: lambda, warm start, preconditioner ------------------------------------------ */

static int spd_case(ng_backend *be) {
    const int n = 60;
    double ev[60], b[60], xr[60], x[60], *A;
    ng_cg_config c;
    ng_cg_result r;
    sys S;
    int i;
    geom_eigs(ev, n, 1e-2, 10.0);
    A = sym_from_eigs(n, ev, NULL);
    for (i = 0; i < n; i++) b[i] = nrand();
    NGT_OK(sys_init(&S, be, n, A, b, 400, 0));
    ng_cg_config_default(&c);
    c.max_iter = 400;
    c.rtol = 1e-6;
    c.lambda = 0.05;
    NGT_OK(ng_cg_solve(&S.ws, &S.op, S.db, S.dx, NULL, &c, &r));
    NGT_CHECK(dsolve(n, A, c.lambda, b, xr) == 0, "reference solve");
    NGT_OK(get(be, x, S.dx, n));
    NGT_CHECK(r.stop == NG_SOLVE_RTOL, "stop %s after %d iterations (rel_res %g)", ng_solve_stop_name(r.stop), r.iters, r.rel_res);
    NGT_CHECK(rel_diff(x, xr, n) < 1e-4, "x vs dense solve: rel diff %g", rel_diff(x, xr, n));
    NGT_CHECK(fabs(true_rel_res(A, n, c.lambda, b, x) - r.rel_res) < 1e-5 + 0.1 * r.rel_res,
              "reported rel_res %g vs true %g", r.rel_res, true_rel_res(A, n, c.lambda, b, x));
    /* a warm start at the solution stops at once */
    {
        ng_cg_result r2;
        S.products = 0;
        c.rtol = 1e-4;
        NGT_OK(ng_cg_solve(&S.ws, &S.op, S.db, S.dx, NULL, &c, &r2));
        NGT_CHECK(r2.iters <= 1 && S.products <= 2, "warm start at the solution: %d iterations, %d products", r2.iters, S.products);
    }
    sys_free(&S);
    free(A);
    return NGT_PASS;
}

static int test_spd(void) {
    int r = spd_case(g_cpu);
    if (r != NGT_PASS || !g_cuda) return r;
    return spd_case(g_cuda);
}

/* a badly row-scaled SPD matrix: Jacobi-preconditioned CG needs far fewer iterations */
static int test_preconditioner(void) {
    const int n = 50;
    double ev[50], b[50], xr[50], x[50], *A0, *A, d[50], minv[50];
    ng_cg_config c;
    ng_cg_result r0, r1;
    sys S;
    int i, j;
    for (i = 0; i < n; i++) ev[i] = 1.0 + urand();
    A0 = sym_from_eigs(n, ev, NULL);
    A = (double *)malloc(sizeof(double) * n * n);
    for (i = 0; i < n; i++) d[i] = pow(10.0, 3.0 * urand());
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) A[i + n * j] = sqrt(d[i]) * A0[i + n * j] * sqrt(d[j]);
    for (i = 0; i < n; i++) {
        b[i] = nrand();
        minv[i] = 1.0 / A[i + n * i];
    }
    NGT_OK(sys_init(&S, g_cpu, n, A, b, 500, 0));
    NGT_OK(put(g_cpu, S.dm, minv, n));
    ng_cg_config_default(&c);
    c.max_iter = 500;
    c.rtol = 1e-5;
    NGT_OK(ng_cg_solve(&S.ws, &S.op, S.db, S.dx, NULL, &c, &r0));
    NGT_OK(ng_memset0(g_cpu, S.dx, sizeof(float) * n));
    NGT_OK(ng_cg_solve(&S.ws, &S.op, S.db, S.dx, S.dm, &c, &r1));
    NGT_CHECK(dsolve(n, A, 0.0, b, xr) == 0, "reference");
    NGT_OK(get(g_cpu, x, S.dx, n));
    NGT_CHECK(r1.stop == NG_SOLVE_RTOL && rel_diff(x, xr, n) < 1e-2, "preconditioned: stop %s, rel diff %g", ng_solve_stop_name(r1.stop),
              rel_diff(x, xr, n));
    NGT_CHECK(r1.iters * 2 < r0.iters || r0.stop != NG_SOLVE_RTOL, "Jacobi PCG took %d iterations, plain CG %d", r1.iters, r0.iters);
    NGT_CHECK(true_rel_res(A, n, 0.0, b, x) < 1e-4, "true residual %g", true_rel_res(A, n, 0.0, b, x));
    printf("  badly scaled SPD n=%d: CG %d iterations (%s), Jacobi PCG %d\n", n, r0.iters, ng_solve_stop_name(r0.stop), r1.iters);
    sys_free(&S);
    free(A0);
    free(A);
    return NGT_PASS;
}

/* ---- semi-definite consistent: minimum-length solution from 0 -------------------------------- */
static int test_semidefinite(void) {
    const int n = 40, rank = 25;
    double ev[40], Q[1600], b[40], y[40], x[40], xmin[40], *A;
    ng_cg_config c;
    ng_cg_result r;
    sys S;
    int i, k;
    for (i = 0; i < n; i++) ev[i] = i < rank ? 0.5 + 2.0 * urand() : 0.0;
    A = sym_from_eigs(n, ev, Q);
    /* b = A y is in the range; the minimum-length solution is Q_r diag(1/ev) Q_r^T b */
    for (i = 0; i < n; i++) y[i] = nrand();
    for (i = 0; i < n; i++) {
        double s = 0.0;
        for (k = 0; k < n; k++) s += A[i + n * k] * y[k];
        b[i] = s;
    }
    for (i = 0; i < n; i++) {
        double s = 0.0;
        for (k = 0; k < rank; k++) {
            double qb = 0.0;
            int j;
            for (j = 0; j < n; j++) qb += Q[j + n * k] * b[j];
            s += Q[i + n * k] * qb / ev[k];
        }
        xmin[i] = s;
    }
    NGT_OK(sys_init(&S, g_cpu, n, A, b, 200, 0));
    ng_cg_config_default(&c);
    c.max_iter = 200;
    c.rtol = 1e-6;
    NGT_OK(ng_cg_solve(&S.ws, &S.op, S.db, S.dx, NULL, &c, &r));
    NGT_OK(get(g_cpu, x, S.dx, n));
    NGT_CHECK(r.stop == NG_SOLVE_RTOL, "stop %s", ng_solve_stop_name(r.stop));
    NGT_CHECK(rel_diff(x, xmin, n) < 1e-4, "x vs minimum-length solution: rel diff %g", rel_diff(x, xmin, n));
    /* its null-space component is ~0 */
    for (k = rank; k < n; k++) {
        double qx = 0.0;
        int j;
        for (j = 0; j < n; j++) qx += Q[j + n * k] * x[j];
        NGT_CHECK(fabs(qx) < 1e-4, "null-space component %d of x: %g", k, qx);
    }
    sys_free(&S);
    free(A);
    return NGT_PASS;
}

/* ---- indefinite: check_curvature stops before the bad direction ------------------------------- */
static int test_negative_curvature(void) {
    const int n = 30;
    double ev[30], b[30], x[30], xprev[30], *A;
    ng_cg_config c;
    ng_cg_result r, r2;
    sys S;
    int i;
    for (i = 0; i < n; i++) ev[i] = i < 3 ? -1.0 - i : 1.0 + i;
    A = sym_from_eigs(n, ev, NULL);
    for (i = 0; i < n; i++) b[i] = nrand();
    NGT_OK(sys_init(&S, g_cpu, n, A, b, 100, 0));
    ng_cg_config_default(&c);
    c.max_iter = 100;
    c.rtol = 1e-8;
    c.check_curvature = 1;
    NGT_OK(ng_cg_solve(&S.ws, &S.op, S.db, S.dx, NULL, &c, &r));
    NGT_CHECK(r.stop == NG_SOLVE_NEGCURV, "stop %s after %d", ng_solve_stop_name(r.stop), r.iters);
    NGT_OK(get(g_cpu, x, S.dx, n));
    /* x is the iterate of iteration r.iters: the same as a run capped there */
    NGT_OK(ng_memset0(g_cpu, S.dx, sizeof(float) * n));
    c.check_curvature = 0;
    c.max_iter = r.iters > 0 ? r.iters : 1;
    if (r.iters > 0) {
        NGT_OK(ng_cg_solve(&S.ws, &S.op, S.db, S.dx, NULL, &c, &r2));
        NGT_OK(get(g_cpu, xprev, S.dx, n));
        NGT_CHECK(r2.iters == r.iters && rel_diff(x, xprev, n) == 0.0, "iterate at the stop differs from the capped run (%d vs %d)",
                  r.iters, r2.iters);
    } else {
        for (i = 0; i < n; i++) NGT_CHECK(x[i] == 0.0, "x moved before the first direction");
    }
    sys_free(&S);
    free(A);
    return NGT_PASS;
}

/* ---- stopping rules --------------------------------------------------------------------------- */
static int test_stopping(void) {
    const int n = 80;
    double ev[80], b[80], x[80], *A, hist[81], phi[81];
    ng_cg_config c;
    ng_cg_result r;
    sys S;
    int i, j, first = -1;
    const double rtol = 1e-2;
    geom_eigs(ev, n, 1e-3, 1.0);
    A = sym_from_eigs(n, ev, NULL);
    for (i = 0; i < n; i++) b[i] = nrand();
    NGT_OK(sys_init(&S, g_cpu, n, A, b, 80, 0));
    /* history of a run with every rule off (rtol 0) */
    ng_cg_config_default(&c);
    c.max_iter = 80;
    c.rtol = 0.0;
    c.max_keep = 0;
    NGT_OK(ng_cg_solve(&S.ws, &S.op, S.db, S.dx, NULL, &c, &r));
    NGT_CHECK(r.stop == NG_SOLVE_MAXITER && r.iters == 80, "rtol 0: stop %s after %d", ng_solve_stop_name(r.stop), r.iters);
    for (j = 0; j <= 80; j++) hist[j] = sqrt(S.ws.sc_host[j * NG_CG_NS + 2] / S.ws.sc_host[5]);
    for (j = 0; j <= 80 && first < 0; j++)
        if (hist[j] <= rtol) first = j;
    if (first < 0)
        for (j = 0; j <= 80; j += 8) printf("  history %d: %g\n", j, hist[j]);
    NGT_CHECK(first > 2 && first < 79, "residual history never reaches %g (first %d)", rtol, first);
    /* rtol: the rule fires on row `first`, read one iteration late -> first + 1 iterations */
    NGT_OK(ng_memset0(g_cpu, S.dx, sizeof(float) * n));
    c.rtol = rtol;
    NGT_OK(ng_cg_solve(&S.ws, &S.op, S.db, S.dx, NULL, &c, &r));
    NGT_CHECK(r.stop == NG_SOLVE_RTOL && r.iters == first + 1, "rtol %g: stop %s after %d, expected %d", rtol, ng_solve_stop_name(r.stop),
              r.iters, first + 1);
    NGT_OK(get(g_cpu, x, S.dx, n));
    NGT_CHECK(fabs(true_rel_res(A, n, 0.0, b, x) - r.rel_res) < 1e-3 * rtol + 0.05 * r.rel_res, "rel_res %g vs true %g", r.rel_res,
              true_rel_res(A, n, 0.0, b, x));
    /* max_iter */
    NGT_OK(ng_memset0(g_cpu, S.dx, sizeof(float) * n));
    c.max_iter = 7;
    NGT_OK(ng_cg_solve(&S.ws, &S.op, S.db, S.dx, NULL, &c, &r));
    NGT_CHECK(r.stop == NG_SOLVE_MAXITER && r.iters == 7, "max_iter 7: stop %s after %d", ng_solve_stop_name(r.stop), r.iters);
    NGT_CHECK(fabs(r.rel_res - hist[7]) < 1e-6 + 1e-5 * hist[7], "rel_res %g vs the history's %g", r.rel_res, hist[7]);
    /* Martens' progress rule: phi of each iteration = the dense quadratic; stop where the formula says */
    NGT_OK(ng_memset0(g_cpu, S.dx, sizeof(float) * n));
    c.max_iter = 80;
    c.rtol = 0.0;
    c.progress = 1;
    c.progress_eps = 5e-3;
    NGT_OK(ng_cg_solve(&S.ws, &S.op, S.db, S.dx, NULL, &c, &r));
    NGT_OK(get(g_cpu, x, S.dx, n));
    NGT_CHECK(fabs(r.phi - quad_phi(A, n, 0.0, b, x)) < 1e-4 * fabs(quad_phi(A, n, 0.0, b, x)), "phi %g vs dense %g", r.phi,
              quad_phi(A, n, 0.0, b, x));
    for (j = 0; j <= r.iters; j++) phi[j] = S.ws.phi_host[j];
    {
        int expect = -1;
        for (j = 1; j <= 80 && expect < 0; j++) {
            int k = (int)floor(0.1 * j);
            if (k < 10) k = 10;
            if (j > k && j <= r.iters && phi[j] < 0.0 && (phi[j] - phi[j - k]) / phi[j] < k * 5e-3) expect = j;
        }
        NGT_CHECK(r.stop == NG_SOLVE_PROGRESS && expect >= 0 && r.iters == expect + 1,
                  "progress rule: stop %s after %d, formula fires at %d", ng_solve_stop_name(r.stop), r.iters, expect);
    }
    sys_free(&S);
    free(A);
    return NGT_PASS;
}

/* ---- kept iterates ---------------------------------------------------------------------------- */
static int test_kept_iterates(void) {
    const int n = 40;
    double ev[40], b[40], *A;
    float x[40], y[40];
    ng_cg_config c;
    ng_cg_result r, r2;
    sys S;
    int i, j;
    const int want[] = {1, 2, 3, 4, 5, 7, 9, 11, 14, 18, 24, 30};
    geom_eigs(ev, n, 1e-3, 1.0);
    A = sym_from_eigs(n, ev, NULL);
    for (i = 0; i < n; i++) b[i] = nrand();
    NGT_OK(sys_init(&S, g_cpu, n, A, b, 30, 16));
    ng_cg_config_default(&c);
    c.max_iter = 30;
    c.rtol = 0.0;
    c.max_keep = 16;
    NGT_OK(ng_cg_solve(&S.ws, &S.op, S.db, S.dx, NULL, &c, &r));
    NGT_CHECK(r.n_kept == 12, "kept %d iterates", r.n_kept);
    for (j = 0; j < r.n_kept; j++) NGT_CHECK(r.kept_iter[j] == want[j], "kept[%d] = iteration %d, want %d", j, r.kept_iter[j], want[j]);
    NGT_CHECK(r.kept_phi[r.n_kept - 1] == r.phi, "last kept phi %g vs %g", r.kept_phi[r.n_kept - 1], r.phi);
    for (j = 1; j < r.n_kept; j++) NGT_CHECK(r.kept_phi[j] <= r.kept_phi[j - 1] + 1e-6, "phi not decreasing at kept %d", j);
    /* each kept iterate = the run capped at its iteration, bit for bit */
    for (j = 0; j < r.n_kept; j += 3) {
        ng_cg_config c2 = c;
        NGT_OK(ng_get(g_cpu, x, S.ws.kept + (size_t)j * n, sizeof x));
        NGT_OK(ng_memset0(g_cpu, S.dx, sizeof(float) * n));
        c2.max_keep = 0;
        c2.max_iter = r.kept_iter[j];
        NGT_OK(ng_cg_solve(&S.ws, &S.op, S.db, S.dx, NULL, &c2, &r2));
        NGT_OK(ng_get(g_cpu, y, S.dx, sizeof y));
        NGT_CHECK(memcmp(x, y, sizeof x) == 0, "kept iterate %d (iteration %d) differs from the capped run", j, r.kept_iter[j]);
    }
    sys_free(&S);
    free(A);
    return NGT_PASS;
}

/* ---- b = 0, exact convergence, bad configurations --------------------------------------------- */
static int test_edge_cases(void) {
    double A[9] = {2, 0, 0, 0, 3, 0, 0, 0, 5}, b[3] = {0, 0, 0}, x[3];
    ng_cg_config c;
    ng_cg_result r;
    sys S;
    int i;
    NGT_OK(sys_init(&S, g_cpu, 3, A, b, 10, 0));
    ng_cg_config_default(&c);
    c.max_iter = 10;
    NGT_OK(ng_cg_solve(&S.ws, &S.op, S.db, S.dx, NULL, &c, &r));
    NGT_CHECK(r.iters == 0 && r.stop == NG_SOLVE_RTOL, "b = 0: %d iterations, stop %s", r.iters, ng_solve_stop_name(r.stop));
    /* a 3x3 system converges exactly in 3 iterations; with rtol 0 the remaining ones stay finite */
    b[0] = 1;
    b[1] = -2;
    b[2] = 0.5;
    NGT_OK(put(g_cpu, S.db, b, 3));
    c.rtol = 0.0;
    NGT_OK(ng_cg_solve(&S.ws, &S.op, S.db, S.dx, NULL, &c, &r));
    NGT_OK(get(g_cpu, x, S.dx, 3));
    for (i = 0; i < 3; i++) NGT_CHECK(fabs(x[i] - b[i] / A[4 * i]) < 1e-6, "x[%d] = %g, want %g", i, x[i], b[i] / A[4 * i]);
    NGT_CHECK(r.iters == 10 && isfinite(r.rel_res), "after exact convergence: %d iterations, rel_res %g", r.iters, r.rel_res);
    /* a non-finite right-hand side is an error naming it */
    b[1] = NAN;
    NGT_OK(put(g_cpu, S.db, b, 3));
    NGT_OK(ng_memset0(g_cpu, S.dx, sizeof(float) * 3));
    NGT_CHECK(ng_cg_solve(&S.ws, &S.op, S.db, S.dx, NULL, &c, &r) == NG_ERR_NUMERIC && strstr(ng_last_error(), "right-hand side"),
              "NaN in b: %s", ng_last_error());
    ng_clear_error();
    /* bad configurations name the field */
    {
        static const char *const fields[] = {"max_iter", "rtol", "lambda", "max_keep", "keep_factor", "progress_eps"};
        ng_cg_config bad[6];
        int k;
        for (k = 0; k < 6; k++) ng_cg_config_default(&bad[k]);
        bad[0].max_iter = 0;
        bad[1].rtol = -1;
        bad[2].lambda = NAN;
        bad[3].max_keep = NG_CG_MAX_KEEP + 1;
        bad[4].max_keep = 3, bad[4].keep_factor = 1.0;
        bad[5].progress = 1, bad[5].progress_eps = 0;
        for (k = 0; k < 6; k++) {
            NGT_CHECK(ng_cg_config_check(&bad[k]) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), fields[k]), "bad %s: %s", fields[k],
                      ng_last_error());
            ng_clear_error();
        }
        c.max_iter = 11;
        NGT_CHECK(ng_cg_solve(&S.ws, &S.op, S.db, S.dx, NULL, &c, &r) == NG_ERR_INVALID_ARG, "max_iter beyond the workspace accepted");
        ng_clear_error();
    }
    sys_free(&S);
    return NGT_PASS;
}

/* ---- CPU vs emulated CUDA ---------------------------------------------------------------------- */
static int test_cpu_vs_cuda(void) {
    const int n = 48;
    double ev[48], b[48], x0[48], x1[48], *A, minv[48];
    ng_cg_config c;
    ng_cg_result r0, r1;
    sys S0, S1;
    int i;
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    geom_eigs(ev, n, 1e-2, 3.0);
    A = sym_from_eigs(n, ev, NULL);
    for (i = 0; i < n; i++) {
        b[i] = nrand();
        minv[i] = 1.0 / (A[i + n * i] + 0.1);
    }
    NGT_OK(sys_init(&S0, g_cpu, n, A, b, 60, 8));
    NGT_OK(sys_init(&S1, g_cuda, n, A, b, 60, 8));
    NGT_OK(put(g_cpu, S0.dm, minv, n));
    NGT_OK(put(g_cuda, S1.dm, minv, n));
    ng_cg_config_default(&c);
    c.max_iter = 60;
    c.rtol = 1e-4;
    c.lambda = 0.1;
    c.progress = 1;
    c.max_keep = 8;
    NGT_OK(ng_cg_solve(&S0.ws, &S0.op, S0.db, S0.dx, S0.dm, &c, &r0));
    NGT_OK(ng_cg_solve(&S1.ws, &S1.op, S1.db, S1.dx, S1.dm, &c, &r1));
    NGT_OK(get(g_cpu, x0, S0.dx, n));
    NGT_OK(get(g_cuda, x1, S1.dx, n));
    NGT_CHECK(r0.iters == r1.iters && r0.stop == r1.stop && r0.n_kept == r1.n_kept, "cpu %d (%s) vs cuda %d (%s) iterations", r0.iters,
              ng_solve_stop_name(r0.stop), r1.iters, ng_solve_stop_name(r1.stop));
    NGT_CHECK(rel_diff(x1, x0, n) < 1e-4, "cpu vs cuda x: rel diff %g", rel_diff(x1, x0, n));
    sys_free(&S0);
    sys_free(&S1);
    free(A);
    return NGT_PASS;
}

int main(void) {
    if (ngt_open_backends(&g_cpu, &g_cuda, g_cuda_reason, sizeof g_cuda_reason)) return 1;
    NGT_RUN(test_spd);
    NGT_RUN(test_preconditioner);
    NGT_RUN(test_semidefinite);
    NGT_RUN(test_negative_curvature);
    NGT_RUN(test_stopping);
    NGT_RUN(test_kept_iterates);
    NGT_RUN(test_edge_cases);
    NGT_RUN(test_cpu_vs_cuda);
    ng_backend_free(g_cuda);
    ng_backend_free(g_cpu);
    return ngt_finish();
}
