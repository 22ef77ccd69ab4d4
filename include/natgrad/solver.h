/* natgrad/solver.h: matrix-free linear solvers for the curvature systems of second-order methods
 * (host/optim/cg.c, host/optim/minresqlp.c): linear conjugate gradient and MINRES-QLP on
 * (A + lambda I) x = b with A given only as products y = A x (a network's Gauss-Newton / Fisher /
 * Hessian products, a dense test matrix, ...).
 *
 * Everything stays on the device: the vectors (n floats each, in the solver's workspace) and the
 * scalars (dot products land in device memory, the steps x += alpha p use them through
 * NG_OP_AXPBY_DEV; MINRES-QLP's scalar recurrence runs as a one-thread device op). The host only
 * decides when to stop, and it does so one iteration late: after queuing iteration i it reads the
 * scalars of iteration i - 1 (copied asynchronously into pinned memory), so the device always has
 * the next iteration queued while the host looks. Consequently, in CG, a stopping test that fires
 * on iteration i - 1 returns the iterate of iteration i (one more than the test needed: a slightly
 * better solution, never a worse one), except at max_iter; MINRES-QLP instead freezes x on the
 * device when a rule fires, so it returns exactly that iterate. The rules are the same on every
 * backend, so CPU and CUDA stop at the same iteration. A zero denominator in a device ratio gives 0 (a
 * solver that has converged exactly keeps x instead of producing 0/0).
 *
 * Vectors and scalars are float32; the dot products are the backend's (accumulated in double on
 * the CPU, cuBLAS sdot on CUDA). */
#ifndef NATGRAD_SOLVER_H
#define NATGRAD_SOLVER_H

#include <stddef.h>

#include "natgrad/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y = A x for device vectors of n floats (x and y never alias). */
typedef ng_status (*ng_matvec_fn)(void *user, const float *x, float *y);
typedef struct ng_linop {
    size_t n;
    ng_matvec_fn apply;
    void *user;
} ng_linop;

/* why a solver stopped */
enum {
    NG_SOLVE_MAXITER = 0,  /* max_iter iterations done */
    NG_SOLVE_RTOL,         /* ||b - (A + lambda I) x|| <= rtol ||b|| (b = 0: x = 0 at once) */
    NG_SOLVE_PROGRESS,     /* Martens' (2010) relative-progress rule on the quadratic */
    NG_SOLVE_NEGCURV,      /* CG met p^T (A + lambda I) p <= 0 (indefinite A): x is the last iterate
                            * before that direction */
    NG_SOLVE_SINGULAR      /* MINRES-QLP: the system is singular and x is the minimum-length
                            * least-squares solution found */
};
const char *ng_solve_stop_name(int stop); /* "maxiter", "rtol", "progress", "negcurv", "singular" */

/* ---- linear conjugate gradient ---------------------------------------------------------------
 * Preconditioned CG (Hestenes & Stiefel; Shewchuk 1994, B2) on (A + lambda I) x = b from the x
 * given (warm start; zero it for a cold start), with an optional diagonal preconditioner
 * M^-1 = diag(minv): z = minv * r.
 * Stopping rules (any that fires): iteration count; relative residual; Martens' relative-progress
 * rule (HF section 4.4): with the quadratic phi(x) = 1/2 x^T (A + lambda I) x - b^T x (computed
 * as -1/2 x^T (b + r), no extra product), stop at iteration i when i > k, phi_i < 0 and
 * (phi_i - phi_{i-k}) / phi_i < k eps, k = max(progress_min, floor(0.1 i)).
 * Iterates kept for HF's backtracking (section 4.6): x at iterations ceil(keep_factor^j), j = 1,
 * 2, ... (and always the last), up to max_keep of them, in the workspace.
 * Negative curvature: check_curvature = 1 synchronises every iteration on p^T (A + lambda I) p
 * (for indefinite A, e.g. Hessian products) and stops before taking a step along a direction of
 * non-positive curvature; 0 (default) never waits inside an iteration. */
typedef struct ng_cg_config {
    int max_iter;          /* >= 1 (Pascanu & Bengio: 20; Martens: 250) */
    double rtol;           /* >= 0 (1e-4; 0: off) */
    double lambda;         /* >= 0 damping added to A */
    int progress;          /* 1: Martens' relative-progress rule */
    double progress_eps;   /* 5e-4 */
    int progress_min;      /* 10 */
    int max_keep;          /* iterates kept for backtracking (0: none) */
    double keep_factor;    /* > 1 (1.3) */
    int check_curvature;   /* 0 | 1 */
    /* CUDA-graph segments (natgrad/graph.h; NULL: eager): without check_curvature, the vector
     * work of each iteration after its product (p . Ap, the updates of x, r, z, p and the dots) is
     * one segment "cg step", keyed by its buffers and the row parity (the product is the operator's
     * own business: tn makes it a segment too) */
    struct ng_graph_segs *segs;
} ng_cg_config;
void ng_cg_config_default(ng_cg_config *cfg); /* 20, 1e-4, 0, off, 5e-4, 10, 0, 1.3, 0 */
ng_status ng_cg_config_check(const ng_cg_config *cfg); /* names the field */

#define NG_CG_MAX_KEEP 64
typedef struct ng_cg_result {
    int iters;            /* iterations done (products of A, beyond the initial residual's) */
    int stop;             /* NG_SOLVE_* */
    double rel_res;       /* ||r|| / ||b|| of the returned x (recursively updated residual) */
    double phi;           /* phi(x) of the returned x */
    int n_kept;           /* iterates kept (the last is always the returned x) */
    int kept_iter[NG_CG_MAX_KEEP];
    double kept_phi[NG_CG_MAX_KEEP];
} ng_cg_result;

/* Workspace for systems of n unknowns: r, z, p, Ap, the kept iterates, the device scalars of
 * max_iter iterations and their pinned host copy, two events. */
typedef struct ng_cg_ws {
    ng_backend *be;
    size_t n;
    int max_iter, max_keep;
    void *mem;          /* device block */
    float *r, *z, *p, *Ap, *kept; /* kept: (n, max_keep) */
    float *sc;          /* device scalars, NG_CG_NS per iteration row */
    float *sc_host;     /* pinned copy */
    double *phi_host;   /* (max_iter + 1) phi of every iteration (host) */
    void *ev[2];
} ng_cg_ws;
#define NG_CG_NS 8
ng_status ng_cg_ws_init(ng_cg_ws *ws, ng_backend *be, size_t n, int max_iter, int max_keep);
void ng_cg_ws_free(ng_cg_ws *ws);
/* Solve. b, x, minv (NULL: no preconditioner): device vectors of n floats; x holds the start and
 * receives the solution; b is not modified. cfg->max_iter and max_keep must fit the workspace.
 * The kept iterates are ws->kept + j n for j < res->n_kept. */
ng_status ng_cg_solve(ng_cg_ws *ws, const ng_linop *A, const float *b, float *x, const float *minv,
                      const ng_cg_config *cfg, ng_cg_result *res);

/* ---- MINRES-QLP (Choi, Paige & Saunders 2011) ------------------------------------------------
 * For symmetric (possibly singular or indefinite) A + lambda I: minimises ||b - (A + lambda I) x||
 * over the Krylov subspace, switching from MINRES to the QLP steps when the system turns
 * ill-conditioned; on a singular consistent system it returns the minimum-length solution (from
 * x0 = 0). Starts from x0 = 0 (x's input is ignored). Stopping: max_iter, the relative residual
 * rtol, and ||A r|| / (||A|| ||r||) <= rtol for incompatible systems (NG_SOLVE_SINGULAR; also
 * when the last diagonal of L is negligible, |gamma| <= 1e-6 ||A||, or ||x|| would exceed
 * maxxnorm: the component is dropped, which gives the minimum-length solution). The scalar
 * recurrence runs on the device (NG_OP_MINRESQLP_STEP, state layout in kernels/ng_math.h), the
 * vector updates through NG_OP_AXPBY_DEV with coefficients read from the device state. The host
 * tests one iteration late as above, but the device freezes x as soon as a rule fires, so x is
 * exactly the iterate of iteration res->iters, the one at which the rule fired. A non-finite value
 * from the operator returns NG_ERR_NUMERIC (x unspecified). */
typedef struct ng_minresqlp_config {
    int max_iter;      /* >= 1 (Pascanu & Bengio: 50 for TFD, 250 for CURVES) */
    double rtol;       /* >= 0 (1e-4) */
    double lambda;     /* damping added to A (any sign; the system must stay symmetric) */
    double maxxnorm;   /* stop when ||x|| would exceed it (1e7) */
    double trancond;   /* switch to QLP steps when the condition estimate exceeds it (1e7) */
} ng_minresqlp_config;
void ng_minresqlp_config_default(ng_minresqlp_config *cfg);
ng_status ng_minresqlp_config_check(const ng_minresqlp_config *cfg);

typedef struct ng_minresqlp_result {
    int iters, stop;
    int qlp_iters;     /* of iters, the QLP steps (0: MINRES throughout) */
    double rel_res;    /* ||r|| / ||b|| estimate of the recurrence */
    double rel_ares;   /* ||A r|| / (||A|| ||r||) estimate */
    double anorm, acond, xnorm;
} ng_minresqlp_result;

typedef struct ng_minresqlp_ws {
    ng_backend *be;
    size_t n;
    int max_iter;
    void *mem;
    float *vecs;        /* the solver's device vectors (7 of n floats) */
    void *state;        /* device scalar state (doubles, then floats: kernels/ng_math.h) */
    void *state_host;   /* pinned copies of the double state (two: iterations k and k - 1) */
    void *ev[2];
} ng_minresqlp_ws;
/* Workspace for systems of n unknowns; its size does not depend on max_iter (recorded only). */
ng_status ng_minresqlp_ws_init(ng_minresqlp_ws *ws, ng_backend *be, size_t n, int max_iter);
void ng_minresqlp_ws_free(ng_minresqlp_ws *ws);
/* b, x: device vectors of n floats (x must not alias b; b is not modified). */
ng_status ng_minresqlp_solve(ng_minresqlp_ws *ws, const ng_linop *A, const float *b, float *x,
                             const ng_minresqlp_config *cfg, ng_minresqlp_result *res);

#ifdef __cplusplus
}
#endif
#endif
