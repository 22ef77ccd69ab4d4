/* kfac.c: K-FAC (Martens & Grosse, ICML 2015), natgrad/kfac.h, on the networks of natgrad/net.h.
 *
 * Layout: layer l = 1..L has the packed gradient block V_l = [dW_l db_l], (d_l, d_{l-1} + 1)
 * column-major, at the arena offset of W_l (net.c packs b_l right after W_l). Factors (state
 * arena, full symmetric matrices):
 *   A[i] = A-bar_{i,i}     (d_i + 1)^2        i = 0..L-1
 *   G[i] = G_{i,i}         d_i^2              i = 1..L
 *   AC[l] = A-bar_{l-1,l}  (d_{l-1}+1, d_l+1) l = 1..L-1 (tridiagonal only)
 *   GC[l] = G_{l,l+1}      (d_l, d_{l+1})     l = 1..L-1 (tridiagonal only)
 * Inverse sets (set 0 in the state arena; sets 1, 2 scratch for the gamma candidates):
 *   block-diagonal, and layer L of the tridiagonal one: AI[l] = (A[l-1] + pi_l gamma I)^-1,
 *   GI[l] = (G[l] + gamma / pi_l I)^-1;
 *   tridiagonal, l < L: PAT[l] = Psi^A_{l-1,l}^T = (A[l] + pi_{l+1} gamma I)^-1 AC[l]^T,
 *   PGT[l] = Psi^G_{l,l+1}^T = (G[l+1] + gamma / pi_{l+1} I)^-1 GC[l]^T, and Sigma_{l|l+1}^-1 as
 *   K1[l], K2[l], s1[l], s2[l] of appendix B: Sigma = A (x) B - C (x) D with A, B the damped
 *   A[l-1], G[l]; C = AC PAT, D = GC PGT; with the Cholesky root A = L L^T (appendix B uses the
 *   symmetric root; any root gives the same Sigma^-1), L^-1 C L^-T = E1 diag(s1) E1^T,
 *   K1 = L^-T E1, likewise K2, s2; Sigma^-1 vec(V) = vec(K2 [(K2^T V K1) / (1 - s2 s1^T)] K1^T).
 * F-hat^-1 = Xi^T Lambda Xi (section 4.3): (Xi v)_l = V_l - Psi^G_{l,l+1} V_{l+1} Psi^A_{l-1,l}^T,
 * (Xi^T v)_l = V_l - Psi^G_{l-1,l}^T V_{l-1} Psi^A_{l-2,l-1}.
 * Must not: read the network's private fields (only natgrad/net.h and the model interface), or
 * allocate after init. */
#include "natgrad/kfac.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>

#include "natgrad/comm.h"
#include "natgrad/graph.h"
#include "natgrad/log.h"
#include "natgrad/net.h"
#include "natgrad/rng.h"

#define LMAX NG_NET_MAX_LAYERS
#define NSETS 3

typedef struct invset {
    ng_tensor AI[LMAX + 1], GI[LMAX + 1];
    ng_tensor PAT[LMAX + 1], PGT[LMAX + 1], K1[LMAX + 1], K2[LMAX + 1], s1[LMAX + 1], s2[LMAX + 1];
} invset;

/* the factors a refresh reads (the live ones, or a snapshot for an asynchronous refresh) */
typedef struct facs {
    ng_tensor A[LMAX + 1], G[LMAX + 1], AC[LMAX + 1], GC[LMAX + 1];
} facs;

/* the temporaries of a refresh (one per thread that refreshes) and its counters */
typedef struct rws {
    ng_tensor X, Xd, T1, T2, T3, T4, w1, w2, wd;
    int retries;
    ng_dtype precision;
} rws;

typedef struct kfac {
    ng_kfac_config cfg;
    int L, d[LMAX + 1], tri;
    size_t n;               /* parameters */
    size_t off[LMAX + 1];   /* element offset of V_l in the flat arena */
    facs fac;               /* the running factors (state) */
    invset set[NSETS + 1];  /* 0 current (state), 1-2 gamma candidates, 3 asynchronous candidate 0 */
    ng_tensor delta0;       /* the previous update (state) */
    /* natural parameter space (cfg.phi_every > 0): per layer A^(1/2), A^(-1/2), G^(1/2), G^(-1/2) of
     * the damped factors of the last refresh (state) */
    ng_tensor SA[LMAX + 1], SAi[LMAX + 1], SG[LMAX + 1], SGi[LMAX + 1];
    int phi_ready;
    uint64_t phi_tdev;      /* phi mode: the update whose targets' Philox step sstep holds (UINT64_MAX: unknown) */
    int graphed;            /* kfac_graph_key's last answer: this update is captured or replayed (phase_end
                             * neither synchronises nor times it) */
    ng_arena scratch;
    ng_tensor Delta[NSETS], Y, Z, backup, work;
    ng_tensor qdots; /* (QDOTS) the quadratic model's dots on the device (quad_model) */
    float *sums;     /* rho's h(theta + delta): the per-chunk sums on the device (ng_net_evaluate_dev),
                      * grown with the batch outside the segment (objective_seg) */
    size_t sums_cap; /* its floats */
    ng_tensor sstep; /* (2) float64 storage of two uint64: the sampled targets' Philox step (stats_seg)
                      * and its ticket (sample_targets' step_dev, read with advance 0) */
    rws ws;                 /* the main thread's temporaries (apply uses T1, T2) */
    int maxn;
    /* asynchronous refreshes (cfg.async_lag >= 0) */
    facs snap;              /* the factors the worker reads */
    rws aws;                /* the worker's temporaries */
    ng_backend *abe;        /* the worker's backend (same device, own stream) */
    int pending;            /* a worker was launched ... */
    uint64_t launch_k;      /* ... at update launch_k */
    int pend_cand;          /* with this many gamma candidates */
    double pend_gam[NSETS]; /* their gammas (the worker writes those it used) */
    double launch_gam[NSETS];
    int relaunch;           /* a resumed run recomputes the refresh in flight at its checkpoint */
    int async_me;           /* on several ranks the rank whose layers the worker computes (-1: every layer) */
    int pend_tried[NSETS];  /* per candidate the try of the ladder the worker's layers succeeded at */
    int async_rank;         /* this rank (0 on one process) */
    int inj_rank, inj_tries;/* NG_KFAC_ASYNC_FAIL=R:N (tests): rank R's layers fail tries < N; N = -1: its worker errs */
    pthread_t thread;       /* the worker, while pending == 1 */
    ng_status worker_status;
    char worker_msg[1024];
    /* scalars (checkpointed) */
    double lambda, gamma, alpha, mu, rho, qmodel;
    int have_delta0;
    /* per update, not checkpointed */
    int nsets;
    double stats_s, inverse_s, apply_s, quad_s;
    double h0;
    ng_tensor bx, by;       /* the update's whole batch S' (by.ptr NULL: targets in bx) */
    /* data parallelism: the preconditioner's shard (natgrad/precond.h), and with several ranks the
     * rank that computes each layer's part of a synchronous inverse refresh (assign_owners) */
    const ng_precond_dist *dist;
    int owner[LMAX + 1];
    int redundant_noted;    /* NG_KFAC_REDUNDANT=1 was reported (refresh) */
} kfac;

static kfac *K(const ng_precond *p) { return (kfac *)p->impl; }

/* ---- configuration --------------------------------------------------------------------------- */

void ng_kfac_config_default(ng_kfac_config *c) {
    memset(c, 0, sizeof *c);
    c->approx = NG_KFAC_BLOCKDIAG;
    c->lambda0 = 150.0;
    c->gamma0 = 0.0;
    c->eta = 1e-5;
    c->tau1 = 1.0 / 8.0;
    c->tau2 = 1.0 / 4.0;
    c->T1 = 5;
    c->T2 = 20;
    c->T3 = 20;
    c->omega1 = 0.0;
    c->omega2 = 0.0;
    c->eps_max = 0.95;
    c->momentum = 1;
    c->rescale = 1;
    c->adapt_lambda = 1;
    c->adapt_gamma = 1;
    c->pi_mode = NG_KFAC_PI_TRACE;
    c->inverse = NG_KFAC_INV_TIKHONOV;
    c->precision = NG_F32;
    c->timing = 1;
    c->async_lag = -1;
    c->seed = 1;
}

#define FINITE(x) ((x) - (x) == 0.0)

ng_status ng_kfac_config_check(const ng_kfac_config *c) {
    if (c->approx != NG_KFAC_BLOCKDIAG && c->approx != NG_KFAC_TRIDIAG)
        return ng_error(NG_ERR_INVALID_ARG, "--kfac-approx: unknown approximation %d (blockdiag, tridiag)", c->approx);
    if (!(c->lambda0 > 0.0) || !FINITE(c->lambda0)) return ng_error(NG_ERR_INVALID_ARG, "--lambda0 %g: must be finite and > 0", c->lambda0);
    if (!(c->gamma0 >= 0.0) || !FINITE(c->gamma0)) return ng_error(NG_ERR_INVALID_ARG, "--gamma0 %g: must be finite and >= 0 (0: sqrt(lambda0 + eta))", c->gamma0);
    if (!(c->eta >= 0.0) || !FINITE(c->eta)) return ng_error(NG_ERR_INVALID_ARG, "--weight-decay %g: must be finite and >= 0", c->eta);
    if (!(c->tau1 > 0.0 && c->tau1 <= 1.0)) return ng_error(NG_ERR_INVALID_ARG, "--tau1 %g: must be in (0, 1]", c->tau1);
    if (!(c->tau2 > 0.0 && c->tau2 <= 1.0)) return ng_error(NG_ERR_INVALID_ARG, "--tau2 %g: must be in (0, 1]", c->tau2);
    if (c->T1 < 1 || c->T2 < 1 || c->T3 < 1) return ng_error(NG_ERR_INVALID_ARG, "--T1 %d, --T2 %d, --T3 %d: periods must be >= 1", c->T1, c->T2, c->T3);
    if (c->T2 % c->T3 != 0)
        return ng_error(NG_ERR_INVALID_ARG, "--T2 %d must be a multiple of --T3 %d (gamma is chosen when the inverses are recomputed)", c->T2, c->T3);
    if (!(c->omega1 >= 0.0 && c->omega1 < 1.0)) return ng_error(NG_ERR_INVALID_ARG, "--omega1 %g: must be in (0, 1) (0: (19/20)^T1)", c->omega1);
    if (!(c->omega2 >= 0.0 && c->omega2 < 1.0)) return ng_error(NG_ERR_INVALID_ARG, "--omega2 %g: must be in (0, 1) (0: sqrt(19/20)^T2)", c->omega2);
    if (!(c->eps_max >= 0.0 && c->eps_max < 1.0)) return ng_error(NG_ERR_INVALID_ARG, "--kfac-eps-max %g: must be in [0, 1)", c->eps_max);
    if (c->pi_mode != NG_KFAC_PI_TRACE && c->pi_mode != NG_KFAC_PI_ONE) return ng_error(NG_ERR_INVALID_ARG, "--kfac-pi: trace or one");
    if (c->precision != NG_F32 && c->precision != NG_F64) return ng_error(NG_ERR_INVALID_ARG, "--kfac-precision: f32 or f64");
    if (c->inverse != NG_KFAC_INV_TIKHONOV && c->inverse != NG_KFAC_INV_REGULARIZED)
        return ng_error(NG_ERR_INVALID_ARG, "--kfac-inverse: tikhonov or regularized");
    if (c->async_lag < -1 || c->async_lag >= c->T3)
        return ng_error(NG_ERR_INVALID_ARG, "--kfac-async %d: must be -1 (off) or 0 .. --T3 - 1 = %d", c->async_lag, c->T3 - 1);
    if (c->phi_every < 0) return ng_error(NG_ERR_INVALID_ARG, "--phi-every %d: must be >= 0 (0: off)", c->phi_every);
    if (c->phi_every > 0 && c->approx != NG_KFAC_BLOCKDIAG)
        return ng_error(NG_ERR_INVALID_ARG, "--phi-every with K-FAC factors: only --kfac-approx blockdiag (phi = (A (x) G)^(1/2) theta per layer)");
    if (c->phi_every > 0 && c->async_lag >= 0)
        return ng_error(NG_ERR_INVALID_ARG, "--phi-every with K-FAC factors: --kfac-async is not supported (the factors are refreshed in the update)");
    if (c->phi_every > 0 && c->inverse != NG_KFAC_INV_TIKHONOV)
        return ng_error(NG_ERR_INVALID_ARG, "--phi-every with K-FAC factors: --kfac-inverse regularized has no square root to map with; use tikhonov");
    return NG_OK;
}

const char *ng_kfac_approx_name(int a) { return a == NG_KFAC_TRIDIAG ? "tridiag" : a == NG_KFAC_BLOCKDIAG ? "blockdiag" : "?"; }

int ng_kfac_approx_parse(const char *s) {
    if (!s) return -1;
    if (!strcmp(s, "blockdiag") || !strcmp(s, "block-diagonal") || !strcmp(s, "diag")) return NG_KFAC_BLOCKDIAG;
    if (!strcmp(s, "tridiag") || !strcmp(s, "block-tridiagonal") || !strcmp(s, "tri")) return NG_KFAC_TRIDIAG;
    return -1;
}

static double omega1_of(const ng_kfac_config *c) { return c->omega1 > 0.0 ? c->omega1 : pow(19.0 / 20.0, c->T1); }
static double omega2_of(const ng_kfac_config *c) { return c->omega2 > 0.0 ? c->omega2 : pow(sqrt(19.0 / 20.0), c->T2); }

/* ---- scalar rules ---------------------------------------------------------------------------- */

double ng_kfac_solve2(double q00, double q01, double q11, double b0, double b1, int momentum, double *alpha,
                      double *mu) {
    double det = q00 * q11 - q01 * q01;
    if (momentum && q00 > 0.0 && q11 > 0.0 && det > 1e-14 * q00 * q11 && FINITE(det)) {
        double a = -(q11 * b0 - q01 * b1) / det, m = -(q00 * b1 - q01 * b0) / det;
        *alpha = a;
        *mu = m;
        return 0.5 * (a * b0 + m * b1); /* at the minimum: 1/2 x^T Q x + b^T x = 1/2 b^T x */
    }
    *mu = 0.0;
    if (!(q00 > 0.0) || !FINITE(q00)) {
        *alpha = 0.0;
        return 0.0;
    }
    *alpha = -b0 / q00;
    return 0.5 * *alpha * b0;
}

double ng_kfac_lm_update(double lambda, double rho, double omega1) {
    if (!FINITE(rho) || rho < 0.25) return lambda / omega1;
    if (rho > 0.75) return lambda * omega1;
    return lambda;
}

double ng_kfac_ema_weight(uint64_t k, double eps_max) {
    double e = k <= 1 ? 0.0 : 1.0 - 1.0 / (double)k;
    return e < eps_max ? e : eps_max;
}


/* ---- small helpers --------------------------------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static ng_status phase_end(ng_precond *p, double t0, double *acc) {
    if (!K(p)->cfg.timing || K(p)->graphed) return NG_OK;
    NG_TRY(ng_synchronize(p->be));
    *acc += now_s() - t0;
    return NG_OK;
}

static float *blk(const kfac *k, const ng_tensor *v, int l) { return v->data + k->off[l]; }
static int na(const kfac *k, int l) { return k->d[l] + 1; } /* rows of A[l] */

static ng_status outer_scale(ng_backend *be, int rows, int cols, int mode, const float *x, int ldx,
                             const float *u, const float *v, float floor_, float *out, int ldo) {
    ng_op_args o = {.op = NG_OP_OUTER_SCALE};
    o.outer_scale.rows = rows;
    o.outer_scale.cols = cols;
    o.outer_scale.mode = mode;
    o.outer_scale.x = x;
    o.outer_scale.ldx = ldx;
    o.outer_scale.u = u;
    o.outer_scale.v = v;
    o.outer_scale.floor = floor_;
    o.outer_scale.out = out;
    o.outer_scale.ldo = ldo;
    return ng_run_op(be, &o);
}

/* tr(M) of an n x n device matrix (host; waits): the diagonal gathered by a strided batch of 1 x 1
 * products with a one, then a dot product with ones. */
static ng_status trace(rws *w, ng_backend *be, const float *M, int n, double *out) {
    float d;
    NG_TRY(ng_fill(be, (size_t)n, 1.0f, w->w2.data));
    NG_TRY(ng_gemm_strided_batched(be, 0, 0, 1, 1, 1, 1.0f, M, 1, (long long)n + 1, w->w2.data, 1, 0, 0.0f,
                                   w->w1.data, 1, 1, n));
    NG_TRY(ng_dot(be, (size_t)n, w->w1.data, w->w2.data, &d));
    *out = d;
    return NG_OK;
}

/* pi_l of section 6.3 for layer l (1..L) */
static ng_status pi_of(kfac *k, rws *w, const facs *F, ng_backend *be, int l, double *pi) {
    double ta, tg;
    NG_TRY(trace(w, be, F->A[l - 1].data, na(k, l - 1), &ta));
    NG_TRY(trace(w, be, F->G[l].data, k->d[l], &tg));
    if (!FINITE(ta) || !FINITE(tg))
        return ng_error(NG_ERR_NUMERIC, "K-FAC: the statistics of layer %d are not finite (trace of A %g, of G %g): "
                        "the network diverged or the data hold NaN/Inf", l, ta, tg);
    ta /= (double)na(k, l - 1);
    tg /= (double)k->d[l];
    if (k->cfg.pi_mode == NG_KFAC_PI_ONE) {
        *pi = 1.0;
        return NG_OK;
    }
    *pi = ta > 0.0 && tg > 0.0 && FINITE(ta / tg) ? sqrt(ta / tg) : 1.0;
    return NG_OK;
}

/* out (n x n) = (F + shift I) for a full symmetric factor F */
static ng_status damped(ng_backend *be, const float *F, int n, double shift, float *out) {
    NG_TRY(ng_copy(be, out, F, (size_t)n * (size_t)n * sizeof(float)));
    return ng_symmetrize_lower(be, n, out, n, (float)shift);
}

/* out = (F + shift I)^-1 by Cholesky (float32, or float64 when asked or after a failure).
 * *fail = 1 when both failed. */
static ng_status chol_inverse(rws *w, ng_backend *be, const float *F, int n, double shift, float *out, int *fail) {
    int info = 0;
    size_t nn = (size_t)n * (size_t)n;
    *fail = 0;
    NG_TRY(damped(be, F, n, shift, out));
    if (w->precision == NG_F32) {
        NG_TRY(ng_potrf(be, n, out, n, &info));
        if (!info) NG_TRY(ng_potri(be, n, out, n, &info));
        if (!info) return ng_symmetrize_lower(be, n, out, n, 0.0f);
        w->retries++;
        NG_TRY(damped(be, F, n, shift, out));
    }
    NG_TRY(ng_to_double(be, nn, out, w->Xd.data_d));
    NG_TRY(ng_potrf_d(be, n, w->Xd.data_d, n, &info));
    if (!info) NG_TRY(ng_potri_d(be, n, w->Xd.data_d, n, &info));
    if (info) {
        *fail = 1;
        return NG_OK;
    }
    NG_TRY(ng_to_float(be, nn, w->Xd.data_d, out));
    return ng_symmetrize_lower(be, n, out, n, 0.0f);
}

/* Symmetric eigendecomposition in place: M (n x n) -> eigenvectors, w (n) eigenvalues ascending.
 * Float64 when asked or after a float32 failure; *fail when both fail. */
static ng_status sym_eig(rws *w, ng_backend *be, float *M, int n, float *ev, int *fail) {
    int info = 0;
    size_t nn = (size_t)n * (size_t)n;
    *fail = 0;
    if (w->precision == NG_F32) {
        NG_TRY(ng_copy(be, w->T4.data, M, nn * sizeof(float)));
        NG_TRY(ng_syevd(be, n, M, n, ev, &info));
        if (!info) return NG_OK;
        w->retries++;
        NG_TRY(ng_copy(be, M, w->T4.data, nn * sizeof(float)));
    }
    NG_TRY(ng_to_double(be, nn, M, w->Xd.data_d));
    NG_TRY(ng_syevd_d(be, n, w->Xd.data_d, n, w->wd.data_d, &info));
    if (info) {
        *fail = 1;
        return NG_OK;
    }
    NG_TRY(ng_to_float(be, nn, w->Xd.data_d, M));
    return ng_to_float(be, (size_t)n, w->wd.data_d, ev);
}


/* out = (F^T F + d^2 I)^-1 F^T = E diag(l / (l^2 + d^2)) E^T for symmetric F = E diag(l) E^T:
 * Sohl-Dickstein's regularised inverse (his eq. 35) in place of (F + d I)^-1. Uses X, T3, T4, w1,
 * w2 (sym_eig: T4, Xd, wd). *fail when the eigendecomposition failed in both precisions. */
static ng_status reg_from_eig(rws *w, ng_backend *be, int n, double d, float *out);
static ng_status reg_inverse(rws *w, ng_backend *be, const float *F, int n, double d, float *out, int *fail) {
    NG_TRY(damped(be, F, n, 0.0, w->X.data));
    NG_TRY(sym_eig(w, be, w->X.data, n, w->w1.data, fail));
    if (*fail) return NG_OK;
    return reg_from_eig(w, be, n, d, out);
}

/* reg_inverse after the eigendecomposition: eigenvectors in X, eigenvalues in w1. */
static ng_status reg_from_eig(rws *w, ng_backend *be, int n, double d, float *out) {
    ng_op_args o;
    /* w2 = l / (l^2 + d^2): T3 (first n) = l^2 + d^2, then w2 = l * max(T3, tiny)^-1 */
    NG_TRY(outer_scale(be, n, 1, NG_OSCALE_SQUARE, w->w1.data, n, NULL, NULL, 0.0f, w->T3.data, n));
    NG_TRY(ng_fill(be, (size_t)n, (float)(d * d), w->w2.data));
    NG_TRY(ng_axpby(be, (size_t)n, 1.0f, w->w2.data, 1.0f, w->T3.data));
    memset(&o, 0, sizeof o);
    o.op = NG_OP_OUTER_SCALE;
    o.outer_scale.mode = NG_OSCALE_POW;
    o.outer_scale.rows = 1;
    o.outer_scale.cols = n;
    o.outer_scale.x = w->w1.data;
    o.outer_scale.ldx = 1;
    o.outer_scale.v = w->T3.data;
    o.outer_scale.floor = 1e-30f;
    o.outer_scale.power = -1.0f;
    o.outer_scale.out = w->w2.data;
    o.outer_scale.ldo = 1;
    NG_TRY(ng_run_op(be, &o));
    /* out = (E diag(w2)) E^T */
    NG_TRY(outer_scale(be, n, n, NG_OSCALE_MUL, w->X.data, n, NULL, w->w2.data, 0.0f, w->T4.data, n));
    NG_TRY(ng_gemm(be, 0, 1, n, n, n, 1.0f, w->T4.data, n, w->X.data, n, 0.0f, out, n));
    return ng_symmetrize_lower(be, n, out, n, 0.0f);
}

/* oh = (F + shift I)^(1/2), oih = (F + shift I)^(-1/2) from the symmetric eigendecomposition,
 * eigenvalues floored at shift (F is positive semi-definite: the floor only absorbs rounding).
 * Uses X, T4, w1, w2 (sym_eig: T4, Xd, wd). *fail when the eigendecomposition failed in both
 * precisions. */
static ng_status sqrt_from_eig(rws *w, ng_backend *be, int n, double shift, float *oh, float *oih);
static ng_status sqrt_pair(rws *w, ng_backend *be, const float *F, int n, double shift, float *oh, float *oih, int *fail) {
    NG_TRY(damped(be, F, n, shift, w->X.data));
    NG_TRY(sym_eig(w, be, w->X.data, n, w->w1.data, fail));
    if (*fail) return NG_OK;
    return sqrt_from_eig(w, be, n, shift, oh, oih);
}

/* sqrt_pair after the eigendecomposition: eigenvectors in X, eigenvalues in w1. */
static ng_status sqrt_from_eig(rws *w, ng_backend *be, int n, double shift, float *oh, float *oih) {
    ng_op_args o;
    int side;
    for (side = 0; side < 2; side++) {
        float *out = side ? oih : oh;
        /* w2 = max(l, shift)^(+-1/2) */
        NG_TRY(ng_fill(be, (size_t)n, 1.0f, w->w2.data));
        memset(&o, 0, sizeof o);
        o.op = NG_OP_OUTER_SCALE;
        o.outer_scale.mode = NG_OSCALE_POW;
        o.outer_scale.rows = 1;
        o.outer_scale.cols = n;
        o.outer_scale.x = w->w2.data;
        o.outer_scale.ldx = 1;
        o.outer_scale.v = w->w1.data;
        o.outer_scale.floor = shift > 1e-30 ? (float)shift : 1e-30f;
        o.outer_scale.power = side ? -0.5f : 0.5f;
        o.outer_scale.out = w->w2.data;
        o.outer_scale.ldo = 1;
        NG_TRY(ng_run_op(be, &o));
        /* out = (E diag(w2)) E^T */
        NG_TRY(outer_scale(be, n, n, NG_OSCALE_MUL, w->X.data, n, NULL, w->w2.data, 0.0f, w->T4.data, n));
        NG_TRY(ng_gemm(be, 0, 1, n, n, n, 1.0f, w->T4.data, n, w->X.data, n, 0.0f, out, n));
        NG_TRY(ng_symmetrize_lower(be, n, out, n, 0.0f));
    }
    return NG_OK;
}

/* Lower Cholesky factor of (F + shift I) into out (n x n; float32, float64 when asked or after a
 * failure); *fail when both fail. */
static ng_status chol_factor(rws *w, ng_backend *be, const float *F, int n, double shift, float *out, int *fail) {
    int info = 0;
    size_t nn = (size_t)n * (size_t)n;
    *fail = 0;
    NG_TRY(damped(be, F, n, shift, out));
    if (w->precision == NG_F32) {
        NG_TRY(ng_potrf(be, n, out, n, &info));
        if (!info) return NG_OK;
        w->retries++;
        NG_TRY(damped(be, F, n, shift, out));
    }
    NG_TRY(ng_to_double(be, nn, out, w->Xd.data_d));
    NG_TRY(ng_potrf_d(be, n, w->Xd.data_d, n, &info));
    if (info) {
        *fail = 1;
        return NG_OK;
    }
    return ng_to_float(be, nn, w->Xd.data_d, out);
}

/* The appendix-B factors of Sigma = A (x) B - C (x) D on one side: with A = F + shift I = L L^T
 * (any square root serves appendix B; the Cholesky factor costs a potrf where the symmetric root
 * costs an eigendecomposition), L^-1 C L^-T = E diag(s) E^T and K = L^-T E, so that
 * A^-1 = K K^T and C = L E diag(s) E^T L^T. C (nA x nA) in Cm; results K (nA x nA), s (nA). Uses
 * X, T3 (and T4 through sym_eig). */
/* stein_side's first half: L (lower Cholesky factor of F + shift I) into T3 and M = L^-1 C L^-T
 * (symmetrised) into M (nA x nA). */
static ng_status stein_prep(rws *w, ng_backend *be, const float *F, int nA, double shift, const float *Cm, float *M,
                            int *fail) {
    size_t nn = (size_t)nA * (size_t)nA;
    NG_TRY(chol_factor(w, be, F, nA, shift, w->T3.data, fail));
    if (*fail) return NG_OK;
    NG_TRY(ng_copy(be, M, Cm, nn * sizeof(float)));
    NG_TRY(ng_trsm(be, 0, 1, 0, 0, nA, nA, 1.0f, w->T3.data, nA, M, nA));
    NG_TRY(ng_trsm(be, 1, 1, 1, 0, nA, nA, 1.0f, w->T3.data, nA, M, nA));
    return ng_symmetrize_lower(be, nA, M, nA, 0.0f);
}

static ng_status stein_side(rws *w, ng_backend *be, const float *F, int nA, double shift, const float *Cm, float *Kout,
                            float *s, int *fail) {
    size_t nn = (size_t)nA * (size_t)nA;
    NG_TRY(stein_prep(w, be, F, nA, shift, Cm, w->X.data, fail));
    if (*fail) return NG_OK;
    NG_TRY(sym_eig(w, be, w->X.data, nA, s, fail));
    if (*fail) return NG_OK;
    /* K = L^-T E */
    NG_TRY(ng_trsm(be, 0, 1, 1, 0, nA, nA, 1.0f, w->T3.data, nA, w->X.data, nA));
    return ng_copy(be, Kout, w->X.data, nn * sizeof(float));
}

/* The block-tridiagonal coupling of layer l with l + 1 on one side (0: A, 1: G): PAT = (A[l] + pi_{l+1}
 * gamma I)^-1 AC^T into S (regularised: (A^2 + (pi gamma)^2 I)^-1 A in place of the inverse) and
 * C = AC PAT into T1; side 1 the same with G[l+1], GC, PGT and D = GC PGT. Uses T2 and what
 * chol_inverse / reg_inverse use. */
static ng_status tri_coupling(kfac *k, rws *w, const facs *F, ng_backend *be, invset *S, int l, const double *pi,
                              double gamma, int side, int *fail) {
    int n1 = na(k, l - 1), n2 = k->d[l], n3 = na(k, l), n4 = k->d[l + 1];
    if (!side) {
        if (k->cfg.inverse == NG_KFAC_INV_REGULARIZED)
            NG_TRY(reg_inverse(w, be, F->A[l].data, n3, pi[l + 1] * gamma, w->T2.data, fail));
        else
            NG_TRY(chol_inverse(w, be, F->A[l].data, n3, pi[l + 1] * gamma, w->T2.data, fail));
        if (*fail) return NG_OK;
        NG_TRY(ng_gemm(be, 0, 1, n3, n1, n3, 1.0f, w->T2.data, n3, F->AC[l].data, n1, 0.0f, S->PAT[l].data, n3));
        NG_TRY(ng_gemm(be, 0, 0, n1, n1, n3, 1.0f, F->AC[l].data, n1, S->PAT[l].data, n3, 0.0f, w->T1.data, n1));
        return ng_symmetrize_lower(be, n1, w->T1.data, n1, 0.0f);
    }
    if (k->cfg.inverse == NG_KFAC_INV_REGULARIZED)
        NG_TRY(reg_inverse(w, be, F->G[l + 1].data, n4, gamma / pi[l + 1], w->T2.data, fail));
    else
        NG_TRY(chol_inverse(w, be, F->G[l + 1].data, n4, gamma / pi[l + 1], w->T2.data, fail));
    if (*fail) return NG_OK;
    NG_TRY(ng_gemm(be, 0, 1, n4, n2, n4, 1.0f, w->T2.data, n4, F->GC[l].data, n2, 0.0f, S->PGT[l].data, n4));
    NG_TRY(ng_gemm(be, 0, 0, n2, n2, n4, 1.0f, F->GC[l].data, n2, S->PGT[l].data, n4, 0.0f, w->T1.data, n2));
    return ng_symmetrize_lower(be, n2, w->T1.data, n2, 0.0f);
}

/* Sigma positive definite needs max s1 * max s2 < 1 (eigenvalues ascending): *fail otherwise */
static ng_status tri_check(ng_backend *be, invset *S, int l, int n1, int n2, int *fail) {
    float s1max, s2max;
    NG_TRY(ng_get(be, &s1max, S->s1[l].data + n1 - 1, sizeof s1max));
    NG_TRY(ng_get(be, &s2max, S->s2[l].data + n2 - 1, sizeof s2max));
    if (!((double)s1max * (double)s2max < 1.0 - 1e-6) || !isfinite(s1max) || !isfinite(s2max)) *fail = 1;
    return NG_OK;
}

/* The appendix-B factors of layers 1 .. L-1 of the block-tridiagonal inverse (float32) with their
 * 2 (L - 1) eigendecompositions in one ng_syevd_batched call: per layer and side the coupling C
 * (tri_coupling) and M = L^-1 C L^-T (stein_prep) are formed in K1 / K2 and decomposed there,
 * eigenvalues into s1 / s2; then L is factored again (the same potrf on the same matrix: the same
 * factor) and K = L^-T E. Every result is what stein_side gives (bit-identical on the CPU); a problem
 * whose float32 eigendecomposition failed goes through stein_side itself (its float64 retry). */
static ng_status tri_batched(kfac *k, rws *w, const facs *F, ng_backend *be, invset *S, const double *pi, double gamma,
                             int me, int *fail) {
    ng_eig_problem p[2 * LMAX];
    int lay[2 * LMAX]; /* the layer of each problem (on several ranks only those this rank owns) */
    int l, j, i, cnt = 0, L = k->L;
    for (l = 1; l < L && !*fail; l++)
        for (j = 0; j < 2 && !*fail && (me < 0 || k->owner[l] == me); j++) {
            int n = j ? k->d[l] : na(k, l - 1);
            double shift = j ? gamma / pi[l] : pi[l] * gamma;
            float *Kout = (j ? S->K2 : S->K1)[l].data;
            NG_TRY(tri_coupling(k, w, F, be, S, l, pi, gamma, j, fail));
            if (*fail) break;
            NG_TRY(stein_prep(w, be, (j ? F->G[l] : F->A[l - 1]).data, n, shift, w->T1.data, Kout, fail));
            p[cnt].n = n;
            p[cnt].lda = n;
            p[cnt].A = Kout;
            p[cnt].w = (j ? S->s2 : S->s1)[l].data;
            lay[cnt] = l;
            cnt++;
        }
    if (*fail || !cnt) return NG_OK;
    NG_TRY(ng_syevd_batched(be, NG_F32, cnt, p));
    for (i = 0; i < cnt && !*fail; i++) {
        int n = p[i].n, retries;
        const float *Fs;
        double shift;
        l = lay[i];
        j = i % 2;
        Fs = (j ? F->G[l] : F->A[l - 1]).data;
        shift = j ? gamma / pi[l] : pi[l] * gamma;
        if (p[i].info) {
            int n1 = na(k, l - 1), n2 = k->d[l], m = j ? n2 : n1;
            /* C again from the stored PAT / PGT, then stein_side with its float64 retry */
            if (!j) NG_TRY(ng_gemm(be, 0, 0, n1, n1, na(k, l), 1.0f, F->AC[l].data, n1, S->PAT[l].data, na(k, l), 0.0f, w->T1.data, n1));
            else NG_TRY(ng_gemm(be, 0, 0, n2, n2, k->d[l + 1], 1.0f, F->GC[l].data, n2, S->PGT[l].data, k->d[l + 1], 0.0f, w->T1.data, n2));
            NG_TRY(ng_symmetrize_lower(be, m, w->T1.data, m, 0.0f));
            NG_TRY(stein_side(w, be, Fs, n, shift, w->T1.data, (float *)p[i].A, (float *)p[i].w, fail));
            continue;
        }
        /* the factor of stein_prep once more (its retries were counted then) */
        retries = w->retries;
        NG_TRY(chol_factor(w, be, Fs, n, shift, w->T3.data, fail));
        w->retries = retries;
        if (*fail) break;
        NG_TRY(ng_trsm(be, 0, 1, 1, 0, n, n, 1.0f, w->T3.data, n, (float *)p[i].A, n));
    }
    for (l = 1; l < L && !*fail; l++)
        if (me < 0 || k->owner[l] == me) NG_TRY(tri_check(be, S, l, na(k, l - 1), k->d[l], fail));
    return NG_OK;
}

/* The regularised inverses of the block-diagonal layers (every layer, or layer L of the tridiagonal
 * approximation; on several ranks the layers this rank owns, me >= 0) in float32 with their
 * eigendecompositions in one ng_syevd_batched call: each factor is decomposed in its own output (AI,
 * GI), the eigenvalues go to T1 one after another; then per factor E and the eigenvalues go to X and
 * w1 and reg_inverse's second half runs, so every result is what reg_inverse gives (bit-identical
 * on the CPU). A failed float32 problem goes through reg_inverse itself (its float64 retry). */
static ng_status reg_batched(kfac *k, rws *w, const facs *F, ng_backend *be, invset *S, const double *pi, double gamma,
                             int me, int *fail) {
    ng_eig_problem p[2 * LMAX];
    double d[2 * LMAX];
    size_t off = 0;
    int l, j, i, cnt = 0;
    for (l = 1; l <= k->L; l++) {
        if ((k->tri && l < k->L) || (me >= 0 && k->owner[l] != me)) continue;
        for (j = 0; j < 2; j++) {
            int n = j ? k->d[l] : na(k, l - 1);
            p[cnt].n = n;
            p[cnt].lda = n;
            p[cnt].A = (j ? S->GI : S->AI)[l].data;
            p[cnt].w = w->T1.data + off;
            d[cnt] = j ? gamma / pi[l] : pi[l] * gamma;
            off += (size_t)n;
            NG_TRY(damped(be, (j ? F->G[l] : F->A[l - 1]).data, n, 0.0, (float *)p[cnt].A));
            cnt++;
        }
    }
    if (!cnt) return NG_OK;
    NG_TRY(ng_syevd_batched(be, NG_F32, cnt, p));
    for (i = 0; i < cnt && !*fail; i++) {
        int n = p[i].n;
        if (p[i].info) {
            /* the factor again from F: find it by its output */
            for (l = 1; l <= k->L; l++)
                for (j = 0; j < 2; j++)
                    if ((j ? S->GI : S->AI)[l].data == p[i].A)
                        NG_TRY(reg_inverse(w, be, (j ? F->G[l] : F->A[l - 1]).data, n, d[i], (float *)p[i].A, fail));
            continue;
        }
        NG_TRY(ng_copy(be, w->X.data, p[i].A, (size_t)n * (size_t)n * sizeof(float)));
        NG_TRY(ng_copy(be, w->w1.data, p[i].w, (size_t)n * sizeof(float)));
        NG_TRY(reg_from_eig(w, be, n, d[i], (float *)p[i].A));
    }
    return NG_OK;
}

/* Inverses of set `si` from the factors with damping gamma. *fail when a factorisation failed in
 * both precisions. */
static ng_status refresh_once(kfac *k, rws *w, const facs *F, ng_backend *be, int si, double gamma, int *fail,
                              int me) {
    invset *S = &k->set[si];
    double pi[LMAX + 2];
    int l, L = k->L;
    /* the tridiagonal couplings' eigendecompositions batched (float32; the float64 pass stays one at a time) */
    int batched = k->tri && w->precision == NG_F32 && 2 * (L - 1) <= NG_EIG_BATCH_MAX && ng_syevd_batched_supported(be);
    /* the regularised block-diagonal inverses batched too (float32; the eigenvalues fit in T1) */
    int reg_b = k->cfg.inverse == NG_KFAC_INV_REGULARIZED && w->precision == NG_F32 && 2 * L <= NG_EIG_BATCH_MAX &&
                ng_syevd_batched_supported(be);
    size_t nev = 0;
    for (l = 1; l <= L; l++) nev += (size_t)na(k, l - 1) + (size_t)k->d[l];
    if (nev > ng_tensor_count(&w->T1)) reg_b = 0;
    *fail = 0;
    for (l = 1; l <= L; l++) NG_TRY(pi_of(k, w, F, be, l, &pi[l]));
    if (batched) NG_TRY(tri_batched(k, w, F, be, S, pi, gamma, me, fail));
    if (reg_b && !*fail) NG_TRY(reg_batched(k, w, F, be, S, pi, gamma, me, fail));
    for (l = 1; l <= L && !*fail; l++) {
        int n1 = na(k, l - 1), n2 = k->d[l];
        if (me >= 0 && k->owner[l] != me) continue; /* another rank inverts this layer */
        if (batched && l < L) continue;           /* done by tri_batched */
        if ((!k->tri || l == L) && k->cfg.inverse == NG_KFAC_INV_REGULARIZED) {
            if (reg_b) continue; /* done by reg_batched */
            NG_TRY(reg_inverse(w, be, F->A[l - 1].data, n1, pi[l] * gamma, S->AI[l].data, fail));
            if (!*fail) NG_TRY(reg_inverse(w, be, F->G[l].data, n2, gamma / pi[l], S->GI[l].data, fail));
            continue;
        }
        if (!k->tri || l == L) {
            NG_TRY(chol_inverse(w, be, F->A[l - 1].data, n1, pi[l] * gamma, S->AI[l].data, fail));
            if (!*fail) NG_TRY(chol_inverse(w, be, F->G[l].data, n2, gamma / pi[l], S->GI[l].data, fail));
            continue;
        }
        NG_TRY(tri_coupling(k, w, F, be, S, l, pi, gamma, 0, fail));
        if (*fail) break;
        NG_TRY(stein_side(w, be, F->A[l - 1].data, n1, pi[l] * gamma, w->T1.data, S->K1[l].data, S->s1[l].data, fail));
        if (*fail) break;
        NG_TRY(tri_coupling(k, w, F, be, S, l, pi, gamma, 1, fail));
        if (*fail) break;
        NG_TRY(stein_side(w, be, F->G[l].data, n2, gamma / pi[l], w->T1.data, S->K2[l].data, S->s2[l].data, fail));
        if (*fail) break;
        NG_TRY(tri_check(be, S, l, n1, n2, fail));
    }
    return NG_OK;
}

/* After each rank computed its layers of set `si` (refresh_once with me = its rank; with `skip`
 * this rank's results are already there): every rank learns whether any layer failed (then all
 * retry alike), else each layer's results come from their owner: the block-diagonal inverses AI, GI
 * (every layer, or layer L of the tridiagonal approximation), for the other tridiagonal layers what
 * the application reads, the couplings PAT, PGT and the appendix-B factors K1, s1, K2, s2 (the
 * tensors this set holds for the layer: the others are not allocated). The collectives run on the
 * main thread's backend `cbe`; `be` (the computing backend) finishes first when it is another one. */
static ng_status share_set(kfac *k, ng_backend *be, ng_backend *cbe, int si, int *fail) {
    invset *S = &k->set[si];
    double f = *fail ? 1.0 : 0.0;
    int l;
    if (be != cbe) NG_TRY(ng_synchronize(be));
    NG_TRY(ng_comm_allreduce_host(k->dist->comm, &f, 1, "the K-FAC inverse status"));
    *fail = f > 0.0;
    for (l = 1; l <= k->L && !*fail; l++) {
        ng_tensor *t[] = {&S->AI[l], &S->GI[l], &S->PAT[l], &S->PGT[l], &S->K1[l], &S->s1[l], &S->K2[l], &S->s2[l]};
        int j;
        for (j = 0; j < 8; j++)
            if (t[j]->data)
                NG_TRY(ng_comm_bcast(k->dist->comm, cbe, NG_F32, t[j]->data, ng_tensor_count(t[j]), k->owner[l],
                                     "the K-FAC inverses"));
    }
    return NG_OK;
}

/* Owners of the layers' inversions on `world` ranks, balanced by cost: the largest layers first,
 * each to the rank with the least work so far (ties: lowest rank). Cost (d_{l-1} + 1)^3 + d_l^3, the
 * two factors' inverses; a tridiagonal layer l < L adds (d_l + 1)^3 + d_{l+1}^3, the inverses of its
 * coupling terms (its two eigendecompositions are of the first two sizes). */
static void assign_owners(kfac *k, int world) {
    double load[64] = {0};
    int done[LMAX + 1] = {0}, i, l, r;
    if (world > 64) world = 64;
    for (i = 1; i <= k->L; i++) {
        int best = 0;
        double bc = -1.0;
        for (l = 1; l <= k->L; l++) {
            double c = pow((double)na(k, l - 1), 3.0) + pow((double)k->d[l], 3.0);
            if (k->tri && l < k->L) c += pow((double)na(k, l), 3.0) + pow((double)k->d[l + 1], 3.0);
            if (!done[l] && c > bc) bc = c, best = l;
        }
        done[best] = 1;
        for (r = 1, k->owner[best] = 0; r < world; r++)
            if (load[r] < load[k->owner[best]]) k->owner[best] = r;
        load[k->owner[best]] += bc;
    }
}

/* The recovery path of a refresh is a ladder of tries: try 0 in the configured precision with the
 * requested gamma; each failed try moves float32 to float64, then multiplies gamma by 10. A refresh
 * fails after NTRIES tries. ladder_step gives try s's precision and gamma. */
#define NTRIES 8
static void ladder_step(ng_dtype p0, double gamma, int s, ng_dtype *prec, double *gam) {
    int i;
    *prec = p0;
    *gam = gamma;
    for (i = 0; i < s; i++) {
        if (*prec == NG_F32) *prec = NG_F64;
        else *gam *= 10.0;
    }
}

/* NG_KFAC_ASYNC_FAIL=R:N, a switch for tests/test_dist.sh (several ranks, --kfac-async): in the
 * asynchronous refreshes the layers that rank R owns fail tries 0 .. N-1 of the ladder (8: every
 * try), wherever they are computed (their owner, or every rank with NG_KFAC_REDUNDANT=1); R:error
 * makes rank R's worker fail outright. Does this refresh (rank `me`'s layers, or every layer when
 * me < 0) hold a layer that fails so? */
static int injected_layers(const kfac *k, int me) {
    int l;
    if (k->inj_rank < 0 || (me >= 0 && me != k->inj_rank)) return 0;
    for (l = 1; l <= k->L; l++)
        if (k->owner[l] == k->inj_rank) return 1;
    return 0;
}

/* Tries s0, s0 + 1, ... of the ladder until one succeeds (*tried: its index, NTRIES when all failed).
 * me < 0: every layer here; me >= 0: the layers rank `me` owns, and with `share` every rank decides
 * each try together and receives the other layers from their owners (share_set, on backend cbe);
 * try `skip` is not computed (this rank's results of it are in the set already). */
static ng_status refresh_tries(kfac *k, rws *w, const facs *F, ng_backend *be, ng_backend *cbe, int si, double gamma,
                               int me, int share, int s0, int skip, int *tried) {
    ng_dtype saved = w->precision;
    int s, fail = 1;
    double g;
    for (s = s0; s < NTRIES; s++) {
        ladder_step(saved, gamma, s, &w->precision, &g);
        fail = 0;
        if (s != skip) {
            ng_status st = refresh_once(k, w, F, be, si, g, &fail, me);
            if (st != NG_OK) {
                w->precision = saved;
                return st;
            }
            if (w == &k->aws && s < k->inj_tries && injected_layers(k, me)) fail = 1;
        }
        if (share) {
            ng_status st = share_set(k, be, cbe, si, &fail);
            if (st != NG_OK) {
                w->precision = saved;
                return st;
            }
        }
        if (!fail) break;
        w->retries++;
    }
    w->precision = saved;
    *tried = s;
    return NG_OK;
}

static ng_status refresh_failed(ng_dtype p0, double gamma) {
    double g;
    ng_dtype p;
    ladder_step(p0, gamma, NTRIES - 1, &p, &g);
    return ng_error(NG_ERR_NUMERIC, "K-FAC: the damped Kronecker factors could not be inverted even with gamma = %g "
                    "(diverged network or non-finite statistics: lower --lambda0 / check the data)", g);
}

/* NG_KFAC_REDUNDANT=1 in the environment (several ranks): every rank computes every layer's
 * refresh, synchronous or asynchronous (for tests/test_dist.sh, which checks that both give the
 * same bits). Noted once, by rank 0. Main thread only. */
static int redundant_env(kfac *k) {
    const char *red = getenv("NG_KFAC_REDUNDANT");
    if (!(red && !strcmp(red, "1") && k->dist->comm && k->dist->comm->world > 1)) return 0;
    if (!k->redundant_noted) {
        k->redundant_noted = 1;
        if (k->dist->comm->rank == 0)
            ng_log(NG_LOG_WARN, "kfac", "NG_KFAC_REDUNDANT=1: every rank computes every layer's inverse refresh");
    }
    return 1;
}

/* A synchronous refresh (main thread, workspace ws) with the recovery path. *used_gamma gets the
 * damping that succeeded. On several ranks each rank computes the per-layer results of the layers
 * it owns (block-diagonal inverses; for the tridiagonal approximation a layer's couplings with the
 * next layer and its appendix-B factors, from the all-reduced factors every rank holds) and
 * broadcasts them (refresh_tries with share). The asynchronous worker runs refresh_tries itself. */
static ng_status refresh(kfac *k, rws *w, const facs *F, ng_backend *be, int si, double gamma, double *used_gamma) {
    int shared = k->dist->comm && k->dist->comm->world > 1 && !redundant_env(k), tried;
    ng_dtype p;
    if (shared) assign_owners(k, k->dist->comm->world);
    NG_TRY(refresh_tries(k, w, F, be, be, si, gamma, shared ? k->dist->comm->rank : -1, shared, 0, -1, &tried));
    if (tried >= NTRIES) return refresh_failed(w->precision, gamma);
    ladder_step(w->precision, gamma, tried, &p, used_gamma);
    return NG_OK;
}

/* out = sign F^-1 v with set si, sign = +-1 (v, out flat, distinct; uses Y, Z, T1, T2). The sign
 * rides on the alpha of the last gemm that writes each block (Lambda's, the map being linear), so
 * -F^-1 v is exactly the negation of F^-1 v, without a pass of its own. */
static ng_status apply_set(kfac *k, ng_backend *be, int si, float sign, const ng_tensor *v, ng_tensor *out) {
    invset *S = &k->set[si];
    int l, L = k->L;
    if (!k->tri) {
        for (l = 1; l <= L; l++) {
            int n1 = na(k, l - 1), n2 = k->d[l];
            NG_TRY(ng_gemm(be, 0, 0, n2, n1, n2, 1.0f, S->GI[l].data, n2, blk(k, v, l), n2, 0.0f, k->ws.T1.data, n2));
            NG_TRY(ng_gemm(be, 0, 0, n2, n1, n1, sign, k->ws.T1.data, n2, S->AI[l].data, n1, 0.0f, blk(k, out, l), n2));
        }
        return NG_OK;
    }
    /* Y = Xi v */
    for (l = 1; l <= L; l++) {
        int n1 = na(k, l - 1), n2 = k->d[l];
        NG_TRY(ng_copy(be, blk(k, &k->Y, l), blk(k, v, l), (size_t)n1 * (size_t)n2 * sizeof(float)));
        if (l < L) {
            int n3 = na(k, l), n4 = k->d[l + 1];
            NG_TRY(ng_gemm(be, 1, 0, n2, n3, n4, 1.0f, S->PGT[l].data, n4, blk(k, v, l + 1), n4, 0.0f, k->ws.T1.data, n2));
            NG_TRY(ng_gemm(be, 0, 0, n2, n1, n3, -1.0f, k->ws.T1.data, n2, S->PAT[l].data, n3, 1.0f, blk(k, &k->Y, l), n2));
        }
    }
    /* Z = Lambda Y */
    for (l = 1; l <= L; l++) {
        int n1 = na(k, l - 1), n2 = k->d[l];
        float *y = blk(k, &k->Y, l), *z = blk(k, &k->Z, l);
        if (l == L) {
            NG_TRY(ng_gemm(be, 0, 0, n2, n1, n2, 1.0f, S->GI[l].data, n2, y, n2, 0.0f, k->ws.T1.data, n2));
            NG_TRY(ng_gemm(be, 0, 0, n2, n1, n1, sign, k->ws.T1.data, n2, S->AI[l].data, n1, 0.0f, z, n2));
            continue;
        }
        NG_TRY(ng_gemm(be, 1, 0, n2, n1, n2, 1.0f, S->K2[l].data, n2, y, n2, 0.0f, k->ws.T1.data, n2));
        NG_TRY(ng_gemm(be, 0, 0, n2, n1, n1, 1.0f, k->ws.T1.data, n2, S->K1[l].data, n1, 0.0f, k->ws.T2.data, n2));
        NG_TRY(outer_scale(be, n2, n1, NG_OSCALE_STEIN, k->ws.T2.data, n2, S->s2[l].data, S->s1[l].data, 1e-6f,
                           k->ws.T2.data, n2));
        NG_TRY(ng_gemm(be, 0, 1, n2, n1, n1, 1.0f, k->ws.T2.data, n2, S->K1[l].data, n1, 0.0f, k->ws.T1.data, n2));
        NG_TRY(ng_gemm(be, 0, 0, n2, n1, n2, sign, S->K2[l].data, n2, k->ws.T1.data, n2, 0.0f, z, n2));
    }
    /* out = Xi^T Z */
    for (l = 1; l <= L; l++) {
        int n1 = na(k, l - 1), n2 = k->d[l];
        NG_TRY(ng_copy(be, blk(k, out, l), blk(k, &k->Z, l), (size_t)n1 * (size_t)n2 * sizeof(float)));
        if (l > 1) {
            int p1 = na(k, l - 2), p2 = k->d[l - 1]; /* Z_{l-1} is (p2, p1) */
            NG_TRY(ng_gemm(be, 0, 0, n2, p1, p2, 1.0f, k->set[si].PGT[l - 1].data, n2, blk(k, &k->Z, l - 1), p2, 0.0f,
                           k->ws.T1.data, n2));
            NG_TRY(ng_gemm(be, 0, 1, n2, n1, p1, -1.0f, k->ws.T1.data, n2, S->PAT[l - 1].data, n1, 1.0f, blk(k, out, l), n2));
        }
    }
    return NG_OK;
}

/* ---- statistics ------------------------------------------------------------------------------ */

/* Fold the statistics of the current batch (cols cases) into the factors: F = beta F + alpha X Y^T
 * for every factor, through the Kronecker-factor accumulation op (one launch per 32 factors on
 * CUDA; symmetric factors come out exactly symmetric). */
static ng_status fold(kfac *k, ng_backend *be, ng_model *m, int cols, float alpha, float beta) {
    int l, L = k->L;
    ng_tensor a[LMAX + 1], g[LMAX + 2];
    ng_op_args o;
    char name[16];
    for (l = 0; l < L; l++) {
        snprintf(name, sizeof name, "a%d", l);
        NG_TRY(ng_model_statistic(m, name, &a[l]));
    }
    for (l = 1; l <= L; l++) {
        snprintf(name, sizeof name, "g%d", l);
        NG_TRY(ng_model_statistic(m, name, &g[l]));
    }
    memset(&o, 0, sizeof o);
    o.op = NG_OP_FACTOR_UPDATE;
    o.factor_update.k = cols;
    o.factor_update.beta = beta;
#define ADD(rows_, cols_, X_, ldx_, Y_, ldy_, C_)                                                       \
    do {                                                                                           \
        ng_factor_entry *e_ = &o.factor_update.e[o.factor_update.count++];                        \
        e_->rows = (rows_), e_->cols = (cols_), e_->X = (X_), e_->ldx = (ldx_), e_->Y = (Y_);      \
        e_->ldy = (ldy_), e_->alpha = alpha, e_->C = (C_), e_->ldc = (rows_);                      \
        if (o.factor_update.count == NG_FACTOR_UPDATE_MAX) {                                       \
            NG_TRY(ng_run_op(be, &o));                                                             \
            o.factor_update.count = 0;                                                             \
        }                                                                                          \
    } while (0)
    for (l = 0; l < L; l++) ADD(na(k, l), na(k, l), a[l].data, a[l].ld, a[l].data, a[l].ld, k->fac.A[l].data);
    for (l = 1; l <= L; l++) ADD(k->d[l], k->d[l], g[l].data, g[l].ld, g[l].data, g[l].ld, k->fac.G[l].data);
    if (k->tri)
        for (l = 1; l < L; l++) {
            ADD(na(k, l - 1), na(k, l), a[l - 1].data, a[l - 1].ld, a[l].data, a[l].ld, k->fac.AC[l].data);
            ADD(k->d[l], k->d[l + 1], g[l].data, g[l].ld, g[l + 1].data, g[l + 1].ld, k->fac.GC[l].data);
        }
#undef ADD
    if (o.factor_update.count) NG_TRY(ng_run_op(be, &o));
    return NG_OK;
}

/* The factor tensors (A, G and the tridiagonal off-diagonal blocks), for scaling and reduction. */
static int factor_list(kfac *k, ng_tensor **out) {
    int l, n = 0;
    for (l = 0; l < k->L; l++) out[n++] = &k->fac.A[l];
    for (l = 1; l <= k->L; l++) out[n++] = &k->fac.G[l];
    if (k->tri)
        for (l = 1; l < k->L; l++) out[n++] = &k->fac.AC[l], out[n++] = &k->fac.GC[l];
    return n;
}

/* Fold the statistics of the first `cols` cases of the model's batch into the factors:
 * F = beta0 F + (1 - eps) / total sum_cases (...). The batch's case c is case col0 + c of the update's
 * global batch (a data-parallel shard; 0 on one process): the sampled targets and the chunks of a
 * batch larger than the network's chunk are those one process holding the whole batch would use
 * (chunk j of the global batch: stream step + j, targets indexed from the chunk's start).
 * cols = 0 only scales (a rank holding none of the statistics prefix). */
static ng_status accumulate(ng_precond *p, ng_model *m, int cols, int total, double eps, float beta0, uint64_t key,
                            uint64_t step, int col0) {
    kfac *k = K(p);
    ng_backend *be = p->be;
    ng_tensor x, y, xv, yv;
    int g, ch = ng_net_config_of(m)->chunk;
    float alpha = (float)((1.0 - eps) / (double)total);
    NG_TRY(ng_net_current_batch(m, &x, &y));
    if (cols < 0 || cols > x.cols || (cols == 0 && col0 == 0))
        return ng_error(NG_ERR_INVALID_ARG, "K-FAC statistics: %d cases of a batch of %d", cols, x.cols);
    if (cols == 0) {
        ng_tensor *f[4 * LMAX + 4];
        int i, nf = factor_list(k, f);
        for (i = 0; i < nf; i++) NG_TRY(ng_scal(be, ng_tensor_count(f[i]), beta0, f[i]->data));
        return NG_OK;
    }
    if (col0 / ch == (col0 + cols - 1) / ch) {
        /* within one chunk: a prefix of the batch, its forward pass reused when it is in the buffers */
        NG_TRY(ng_net_batch_prefix(m, cols));
        NG_TRY(ng_net_backward_sampled_at(m, key, step + (uint64_t)(col0 / ch), (uint64_t)(col0 % ch)));
        NG_TRY_RANGE(NG_CAT_STATS, "kfac factors", fold(k, be, m, cols, alpha, beta0));
    } else {
        for (g = col0; g < col0 + cols;) {
            int end = (g / ch + 1) * ch, c0 = g - col0, nc;
            if (end > col0 + cols) end = col0 + cols;
            nc = end - g;
            xv = ng_tensor_matrix(x.data + (size_t)c0 * (size_t)x.ld, x.rows, nc, x.ld);
            if (y.ptr) yv = ng_tensor_matrix(y.data + (size_t)c0 * (size_t)y.ld, y.rows, nc, y.ld);
            NG_TRY(ng_net_set_batch(m, &xv, y.ptr ? &yv : NULL));
            NG_TRY(ng_net_backward_sampled_at(m, key, step + (uint64_t)(g / ch), (uint64_t)(g % ch)));
            NG_TRY_RANGE(NG_CAT_STATS, "kfac factors", fold(k, be, m, nc, alpha, g == col0 ? beta0 : 1.0f));
            g = end;
        }
        /* the whole batch again (several chunks: nothing is recomputed) */
        NG_TRY(ng_net_set_batch(m, &x, y.ptr ? &y : NULL));
    }
    return NG_OK;
}

ng_status ng_kfac_accumulate(ng_precond *p, ng_model *m, int cols, double eps, uint64_t key, uint64_t step) {
    if (cols < 1) return ng_error(NG_ERR_INVALID_ARG, "K-FAC statistics: %d cases (>= 1)", cols);
    return accumulate(p, m, cols, cols, eps, (float)eps, key, step, 0);
}

/* ---- data parallelism ------------------------------------------------------------------------
 * A statistic that one process takes on the first `want` cases of the global batch (tau1 m for the
 * factors, tau2 m for the exact-Fisher products) is taken by each rank on its cases among them: the
 * shards are consecutive columns of the global batch, so rank r holds cases [lo, hi) and takes
 * [lo, min(hi, want)), possibly none. Sums over those cases are all-reduced, so every rank holds
 * what one process would compute, up to the order of the float32 sums. */
static int dist_on(const ng_precond *p) { return p->dist.comm && p->dist.comm->world > 1; }

/* the global batch size (one process: the model's batch, of x_cols cases) */
static int global_batch(const ng_precond *p, int x_cols) { return dist_on(p) ? p->dist.batch : x_cols; }

/* this rank's number of the first `want` cases of the global batch */
static int prefix_share(const ng_precond *p, int want) {
    int n;
    if (!dist_on(p)) return want;
    n = (want < p->dist.hi ? want : p->dist.hi) - p->dist.lo;
    return n > 0 ? n : 0;
}

static ng_status reduce_factors(ng_precond *p) {
    kfac *k = K(p);
    ng_tensor *f[4 * LMAX + 4];
    int i, nf = factor_list(k, f);
    for (i = 0; i < nf; i++)
        NG_TRY(ng_comm_allreduce(p->dist.comm, p->be, NG_F32, f[i]->data, ng_tensor_count(f[i]), "the K-FAC factors"));
    return NG_OK;
}

/* The public entries below run under an FP32 guard (natgrad/backend.h): inversions and the
 * application of the inverse never use TF32, whoever calls them (the run driver guards every
 * preconditioner already). */
ng_status ng_kfac_refresh(ng_precond *p, double gamma) {
    double used;
    int saved;
    ng_status s, e;
    K(p)->ws.retries = 0;
    NG_TRY(ng_fp32_begin(p->be, &saved));
    s = refresh(K(p), &K(p)->ws, &K(p)->fac, p->be, 0, gamma, &used);
    e = ng_fp32_end(p->be, saved);
    NG_TRY(s);
    NG_TRY(e);
    K(p)->gamma = used;
    return NG_OK;
}

ng_status ng_kfac_apply_inverse(ng_precond *p, const ng_tensor *v, ng_tensor *out) {
    kfac *k = K(p);
    int saved;
    ng_status s, e;
    if (!v || !out || ng_tensor_count(v) != k->n || ng_tensor_count(out) != k->n || v->ptr == out->ptr)
        return ng_error(NG_ERR_INVALID_ARG, "K-FAC apply: v and out must be distinct vectors of %zu elements", k->n);
    NG_TRY(ng_fp32_begin(p->be, &saved));
    s = apply_set(k, p->be, 0, 1.0f, v, out);
    e = ng_fp32_end(p->be, saved);
    return s != NG_OK ? s : e;
}

ng_status ng_kfac_factor(const ng_precond *p, char which, int i, int j, ng_tensor *out) {
    const kfac *k = K(p);
    if (which == 'A' && i >= 0 && i < k->L && j == i) *out = k->fac.A[i];
    else if (which == 'A' && k->tri && i >= 0 && i < k->L - 1 && j == i + 1) *out = k->fac.AC[i + 1];
    else if (which == 'G' && i >= 1 && i <= k->L && j == i) *out = k->fac.G[i];
    else if (which == 'G' && k->tri && i >= 1 && i < k->L && j == i + 1) *out = k->fac.GC[i];
    else return ng_error(NG_ERR_INVALID_ARG, "K-FAC: no factor %c_{%d,%d} in this %s approximation", which, i, j,
                         ng_kfac_approx_name(k->cfg.approx));
    return NG_OK;
}

ng_status ng_kfac_get_config(const ng_precond *p, ng_kfac_config *cfg) {
    if (!p || !cfg || strcmp(p->iface->name, "kfac") != 0)
        return ng_error(NG_ERR_INVALID_ARG, "K-FAC configuration: not a K-FAC preconditioner");
    *cfg = K(p)->cfg;
    return NG_OK;
}

ng_status ng_kfac_get_state(const ng_precond *p, ng_kfac_state *s) {
    const kfac *k = K(p);
    memset(s, 0, sizeof *s);
    s->lambda = k->lambda;
    s->gamma = k->gamma;
    s->alpha = k->alpha;
    s->mu = k->mu;
    s->rho = k->rho;
    s->qmodel = k->qmodel;
    s->inv_retries = k->ws.retries;
    s->stats_s = k->stats_s;
    s->inverse_s = k->inverse_s;
    s->apply_s = k->apply_s;
    s->quad_s = k->quad_s;
    return NG_OK;
}

/* ---- the preconditioner ---------------------------------------------------------------------- */

/* The factor statistics of the first total <= chunk cases of the global batch as a CUDA-graph segment
 * (natgrad/graph.h; eager without --cuda-graph): what accumulate does for one chunk, with the sampled
 * targets' Philox step read on the device from sstep (written before), so one graph replays every
 * update whose weights eps, (1 - eps) / total are those of its capture (from k = 1 / (1 - eps_max) on
 * they are constant). This rank takes cols of them from global column col0 (one process: all, from 0;
 * a rank may hold none: it only scales by beta0) and, on several ranks (reduce), the factors'
 * all-reduces are in the segment too (a replay sums them again). The same targets and factors as
 * ng_kfac_accumulate / accumulate + reduce_factors, which run instead when segments are off (no step
 * to write). */
typedef struct stats_ctx {
    ng_model *m; /* first: ng_model_seg_state_get */
    ng_precond *p;
    int cols, col0, reduce;
    float alpha, beta0;
    uint64_t key;
} stats_ctx;
static ng_status stats_body(void *user) {
    stats_ctx *c = (stats_ctx *)user;
    kfac *k = K(c->p);
    if (c->cols > 0) {
        NG_TRY(ng_net_batch_prefix(c->m, c->cols));
        NG_TRY(ng_net_backward_sampled_dev(c->m, c->key, (uint64_t *)k->sstep.ptr, 0, (uint64_t)c->col0));
        NG_TRY_RANGE(NG_CAT_STATS, "kfac factors", fold(k, c->p->be, c->m, c->cols, c->alpha, c->beta0));
    } else {
        ng_tensor *f[4 * LMAX + 4];
        int i, nf = factor_list(k, f);
        for (i = 0; i < nf; i++) NG_TRY(ng_scal(c->p->be, ng_tensor_count(f[i]), c->beta0, f[i]->data));
    }
    return c->reduce ? reduce_factors(c->p) : NG_OK;
}
static ng_status stats_seg(ng_precond *p, ng_model *m, int cols, int total, double eps, float beta0, uint64_t key,
                           uint64_t step, int col0) {
    static const ng_graph_seg seg = {"kfac statistics", stats_body, ng_model_seg_state_get, ng_model_seg_state_set};
    kfac *k = K(p);
    stats_ctx c;
    uint64_t kw[7];
    uint32_t ab[2];
    ng_status s;
    const int reduce = dist_on(p);
    if (!p->segs || !p->segs->on) { /* eager: the step by value */
        if (!reduce) return ng_kfac_accumulate(p, m, cols, eps, key, step);
        NG_TRY(accumulate(p, m, cols, total, eps, beta0, key, step, col0));
        NG_RANGE_CAT(NG_CAT_COMM, "kfac factor all-reduce", s, reduce_factors(p));
        return s;
    }
    if (total < 1 || cols < 0 || cols > total || (cols == 0 && col0 == 0))
        return ng_error(NG_ERR_INVALID_ARG, "K-FAC statistics: %d of %d cases from column %d", cols, total, col0);
    c.p = p;
    c.m = m;
    c.cols = cols;
    c.col0 = col0;
    c.reduce = reduce;
    c.alpha = (float)((1.0 - eps) / (double)total);
    c.beta0 = beta0;
    c.key = key;
    {
        const uint64_t st[2] = {step, 0}; /* the step, its ticket 0 */
        NG_TRY(ng_set(p->be, k->sstep.ptr, st, sizeof st));
    }
    memcpy(&ab[0], &c.alpha, sizeof ab[0]);
    memcpy(&ab[1], &c.beta0, sizeof ab[1]);
    kw[0] = (uint64_t)(uint32_t)cols << 32 | (uint32_t)k->tri;
    kw[1] = (uint64_t)ab[0] << 32 | ab[1];
    kw[2] = key;
    kw[3] = ng_graph_key_ptr(k->sstep.ptr);
    kw[4] = ng_graph_key_ptr(k->fac.A[0].ptr);
    /* several ranks: this rank's first column and the global batch (a new global batch: new keys on
     * every rank at once, since the shards follow from it) */
    kw[5] = (uint64_t)(uint32_t)col0 << 1 | (uint64_t)reduce;
    kw[6] = reduce ? (uint64_t)(uint32_t)p->dist.batch : 0;
    NG_TRY(ng_graph_seg_run(p->segs, &seg, &c, kw, 7));
    /* the segment's all-reduces, within --comm-timeout (as the eager ones wait) */
    return reduce ? ng_comm_wait_device(p->dist.comm, p->be, "the K-FAC factors (in their graph segment)") : NG_OK;
}

/* Phi mode, one chunk: the factor statistics of the first total cases of the global batch, with the
 * targets' Philox step t << 16 read on the device from sstep and advanced there by one update, so the
 * statistics of a whole-step CUDA graph (kfac_graph_key) replay every update with the same weights;
 * eager the same kernels, sstep written only when the device count is not at t (the first update, a
 * resume). This rank takes cols of them from global column col0 (one process: all, from 0) and folds
 * them with beta0 (several ranks: eps on rank 0, 0 elsewhere, as accumulate); a rank holding none
 * only scales, and advances its count by an empty draw, so every rank's count stays at the update
 * (their graph decisions agree). Several ranks: the factors' all-reduces follow on the stream (in
 * the capture of a whole step, its NCCL all-reduces are recorded there and summed again by a
 * replay). */
static ng_status phi_stats(ng_precond *p, ng_model *m, uint64_t t, int cols, int total, float beta0, int col0) {
    kfac *k = K(p);
    const double eps = ng_kfac_ema_weight(t + 1, k->cfg.eps_max);
    const uint64_t key = ng_rng_stream_key(k->cfg.seed, NG_RNG_KFAC_TARGETS);
    if (k->phi_tdev != t) {
        const uint64_t st[2] = {t << 16, 0};
        ng_status s = ng_set(p->be, k->sstep.ptr, st, sizeof st);
        if (s != NG_OK)
            return ng_error_wrap(s, "K-FAC: setting the device Philox step of update %llu (not possible inside a CUDA "
                                 "graph capture): ", (unsigned long long)t);
        k->phi_tdev = t;
    }
    if (cols > 0) {
        NG_TRY(ng_net_batch_prefix(m, cols));
        NG_TRY(ng_net_backward_sampled_dev(m, key, (uint64_t *)k->sstep.ptr, (uint64_t)1 << 16, (uint64_t)col0));
        k->phi_tdev = t + 1;
        NG_TRY_RANGE(NG_CAT_STATS, "kfac factors", fold(k, p->be, m, cols, (float)((1.0 - eps) / (double)total), beta0));
    } else {
        ng_op_args o = {.op = NG_OP_SAMPLE_TARGETS}; /* no targets: the count's advance only */
        ng_tensor *f[4 * LMAX + 4];
        int i, nf = factor_list(k, f);
        o.sample_targets.loss = ng_net_config_of(m)->loss;
        o.sample_targets.ldy = o.sample_targets.ldt = 1;
        o.sample_targets.key = key;
        o.sample_targets.step_dev = (uint64_t *)k->sstep.ptr;
        o.sample_targets.advance = (uint64_t)1 << 16;
        NG_TRY(ng_run_op(p->be, &o));
        k->phi_tdev = t + 1;
        for (i = 0; i < nf; i++) NG_TRY(ng_scal(p->be, ng_tensor_count(f[i]), beta0, f[i]->data));
    }
    if (dist_on(p)) {
        ng_status s;
        NG_RANGE_CAT(NG_CAT_COMM, "kfac factor all-reduce", s, reduce_factors(p));
        return s;
    }
    return NG_OK;
}

static ng_status kfac_observe(ng_precond *p, ng_model *m, uint64_t t) {
    kfac *k = K(p);
    ng_tensor x;
    double t0 = now_s(), err;
    int cols;
    k->stats_s = k->inverse_s = k->apply_s = k->quad_s = 0.0;
    k->ws.retries = 0;
    /* h(theta) for Levenberg-Marquardt (not needed in the natural parameter space) */
    if (k->cfg.phi_every == 0) NG_TRY(ng_net_batch_loss(m, &k->h0, &err));
    NG_TRY(ng_net_current_batch(m, &k->bx, &k->by));
    x = k->bx;
    cols = (int)floor(k->cfg.tau1 * (double)global_batch(p, x.cols) + 0.5);
    if (cols < 1) cols = 1;
    if (k->cfg.phi_every > 0 && cols <= ng_net_config_of(m)->chunk) {
        /* several ranks: rank 0 keeps eps F, every rank adds its share of the first cols cases */
        const double eps = ng_kfac_ema_weight(t + 1, k->cfg.eps_max);
        NG_TRY(phi_stats(p, m, t, prefix_share(p, cols), cols, !dist_on(p) || p->dist.comm->rank == 0 ? (float)eps : 0.0f,
                         dist_on(p) ? p->dist.lo : 0));
    } else if (!dist_on(p) && cols <= ng_net_config_of(m)->chunk) {
        const double eps = ng_kfac_ema_weight(t + 1, k->cfg.eps_max);
        NG_TRY(stats_seg(p, m, cols, cols, eps, (float)eps, ng_rng_stream_key(k->cfg.seed, NG_RNG_KFAC_TARGETS), t << 16, 0));
    } else if (dist_on(p) && cols <= ng_net_config_of(m)->chunk) {
        /* several ranks, the first cols cases in chunk 0 of the global batch (so the same on every rank:
         * all ranks run it as a segment or none): rank 0 keeps eps F, every rank adds its cases' share */
        const double eps = ng_kfac_ema_weight(t + 1, k->cfg.eps_max);
        NG_TRY(stats_seg(p, m, prefix_share(p, cols), cols, eps, p->dist.comm->rank == 0 ? (float)eps : 0.0f,
                         ng_rng_stream_key(k->cfg.seed, NG_RNG_KFAC_TARGETS), t << 16, p->dist.lo));
    } else if (!dist_on(p)) {
        NG_TRY(ng_kfac_accumulate(p, m, cols, ng_kfac_ema_weight(t + 1, k->cfg.eps_max),
                                  ng_rng_stream_key(k->cfg.seed, NG_RNG_KFAC_TARGETS), t << 16));
    } else {
        /* rank 0 keeps eps F, every rank adds its cases' share of (1 - eps) X X^T / cols, the sum
         * over the ranks is the update of one process */
        double eps = ng_kfac_ema_weight(t + 1, k->cfg.eps_max);
        NG_TRY(accumulate(p, m, prefix_share(p, cols), cols, eps, p->dist.comm->rank == 0 ? (float)eps : 0.0f,
                          ng_rng_stream_key(k->cfg.seed, NG_RNG_KFAC_TARGETS), t << 16, p->dist.lo));
        NG_TRY_RANGE(NG_CAT_COMM, "kfac factor all-reduce", reduce_factors(p));
    }
    return phase_end(p, t0, &k->stats_s);
}

/* 1/2 ||theta||^2 over the parameters that take weight decay, of the flat vector th */
static ng_status decay_norm2(ng_model *m, const float *th, double *out) {
    int i;
    double s = 0.0;
    for (i = 0; i < ng_arena_count(&m->params); i++) {
        const ng_tensor *pt = ng_arena_view(&m->params, i);
        float r;
        size_t off = (size_t)(pt->data - m->param_flat.data);
        if (!m->decay[i]) continue;
        NG_TRY(ng_nrm2(m->be, ng_tensor_count(pt), th + off, &r));
        s += 0.5 * (double)r * (double)r;
    }
    *out = s;
    return NG_OK;
}

/* ---- asynchronous refreshes ------------------------------------------------------------------ */

/* copy the inverses of set `from` into set `to` */
static ng_status copy_set(kfac *k, ng_backend *be, int from, int to) {
    invset *S = &k->set[from], *D = &k->set[to];
    int l, j;
    for (l = 1; l <= k->L; l++) {
        const ng_tensor *src[] = {&S->AI[l], &S->GI[l], &S->PAT[l], &S->PGT[l], &S->K1[l], &S->K2[l], &S->s1[l], &S->s2[l]};
        ng_tensor *dst[] = {&D->AI[l], &D->GI[l], &D->PAT[l], &D->PGT[l], &D->K1[l], &D->K2[l], &D->s1[l], &D->s2[l]};
        for (j = 0; j < 8; j++)
            if (src[j]->ptr && dst[j]->ptr) NG_TRY(ng_copy(be, dst[j]->ptr, src[j]->ptr, ng_tensor_count(src[j]) * sizeof(float)));
    }
    return NG_OK;
}

/* set index of candidate c in an asynchronous refresh (candidate 0 must not overwrite set 0,
 * which updates keep using meanwhile) */
static int async_set(int c) { return c == 0 ? NSETS : c; }

/* The worker: each candidate's refresh from the snapshot on its own backend and workspace, with the
 * recovery ladder, without the communicator (no collective runs off the main thread). On several
 * ranks it computes the layers its rank owns (async_me >= 0) and records per candidate the try
 * they succeeded at; async_arrive, on the main thread, agrees on the try with the other ranks and
 * broadcasts. One process (or NG_KFAC_REDUNDANT=1): every layer, the used gammas in pend_gam. */
static void *refresh_worker(void *arg) {
    kfac *k = (kfac *)arg;
    ng_status s = NG_OK;
    int c, tried;
    ng_dtype prec;
    k->aws.retries = 0;
    for (c = 0; c < NSETS; c++) k->pend_tried[c] = NTRIES;
    if (k->inj_tries < 0 && k->async_rank == k->inj_rank)
        s = ng_error(NG_ERR_NUMERIC, "NG_KFAC_ASYNC_FAIL=%d:error: the failure of rank %d's asynchronous refresh (a test)",
                     k->inj_rank, k->inj_rank);
    for (c = 0; c < k->pend_cand && s == NG_OK; c++) {
        NG_RANGE_CAT(NG_CAT_INVERSE, "kfac inverses (async)", s,
                     refresh_tries(k, &k->aws, &k->snap, k->abe, k->abe, async_set(c), k->pend_gam[c], k->async_me, 0, 0,
                                   -1, &tried));
        if (s != NG_OK) break;
        k->pend_tried[c] = tried;
        if (tried >= NTRIES) {
            /* owned: every rank learns it in async_arrive (the refresh fails on every rank) */
            if (k->async_me < 0) s = refresh_failed(k->aws.precision, k->pend_gam[c]);
            break;
        }
        ladder_step(k->aws.precision, k->pend_gam[c], tried, &prec, &k->pend_gam[c]);
    }
    if (s == NG_OK) s = ng_synchronize(k->abe);
    k->worker_status = s;
    k->worker_msg[0] = 0;
    if (s != NG_OK) snprintf(k->worker_msg, sizeof k->worker_msg, "%s", ng_last_error());
    return NULL;
}

/* start the worker on the snapshot (pending = 1); on several ranks on this rank's layers (the
 * owners of the synchronous refresh) unless NG_KFAC_REDUNDANT=1 */
static ng_status launch_worker(kfac *k) {
    const char *inj = getenv("NG_KFAC_ASYNC_FAIL");
    k->worker_status = NG_OK;
    k->async_me = k->inj_rank = -1;
    k->async_rank = 0;
    k->inj_tries = 0;
    if (k->dist->comm && k->dist->comm->world > 1) {
        assign_owners(k, k->dist->comm->world);
        k->async_rank = k->dist->comm->rank;
        if (!redundant_env(k)) k->async_me = k->async_rank;
        if (inj && *inj) {
            char tail[8] = "";
            if (sscanf(inj, "%d:%d", &k->inj_rank, &k->inj_tries) == 2 && k->inj_rank >= 0 && k->inj_tries >= 1 &&
                k->inj_tries <= NTRIES) {
            } else if (sscanf(inj, "%d:%7s", &k->inj_rank, tail) == 2 && !strcmp(tail, "error") && k->inj_rank >= 0) {
                k->inj_tries = -1;
            } else {
                return ng_error(NG_ERR_INVALID_ARG, "NG_KFAC_ASYNC_FAIL=%s: want RANK:TRIES (TRIES 1 .. %d) or RANK:error", inj, NTRIES);
            }
        }
    }
    if (pthread_create(&k->thread, NULL, refresh_worker, k) != 0)
        return ng_error(NG_ERR_OOM, "K-FAC: cannot start the asynchronous refresh thread");
    k->pending = 1;
    return NG_OK;
}

/* wait for the worker (pending becomes 2: results in the sets). Its error is reported where the
 * results are used (async_arrive, on every rank); a checkpoint written meanwhile records the
 * refresh as in flight, and a resumed run recomputes it. */
static ng_status join_worker(kfac *k) {
    if (k->pending != 1) return NG_OK;
    pthread_join(k->thread, NULL);
    k->pending = 2;
    return NG_OK;
}

/* The main thread's side of an arrived refresh (the worker joined). One process: the worker's
 * error. Several ranks: the ranks agree first, so an error on any rank stops every rank (the rank
 * that failed reports its message, the others name it). Owned (async_me >= 0): per candidate the
 * first try of the ladder that succeeded on every rank is the highest of the ranks' tries (each
 * rank's layers failed at every try below its own), which is the try every rank computing every
 * layer stops at; a rank whose layers succeeded at a lower try recomputes them at that one (on the
 * worker's backend, idle now), the ranks agree again (a recomputed layer may fail: next try) and the
 * owners broadcast each layer's results (share_set, from this thread): the sets every rank would
 * compute redundantly, bit for bit. */
static ng_status async_arrive(ng_precond *p, kfac *k) {
    int c, r, world, me, tried, stride = 1 + NSETS, bad = -1;
    double *v;
    ng_status s;
    if (!dist_on(p)) {
        if (k->worker_status != NG_OK)
            return ng_error(k->worker_status, "%s (asynchronous K-FAC refresh launched at update %llu)", k->worker_msg,
                            (unsigned long long)k->launch_k);
        return NG_OK;
    }
    world = p->dist.comm->world;
    me = p->dist.comm->rank;
    v = calloc((size_t)world * (size_t)stride, sizeof *v);
    if (!v) return ng_error(NG_ERR_OOM, "K-FAC: no memory for the asynchronous refresh status of %d ranks", world);
    v[me * stride] = (double)k->worker_status;
    for (c = 0; c < NSETS; c++) v[me * stride + 1 + c] = (double)k->pend_tried[c];
    s = ng_comm_allreduce_host(p->dist.comm, v, (size_t)world * (size_t)stride, "the asynchronous K-FAC refresh status");
    for (r = 0; s == NG_OK && r < world && bad < 0; r++)
        if (v[r * stride] != 0.0) bad = r;
    if (s == NG_OK && bad >= 0) {
        if (k->worker_status != NG_OK)
            s = ng_error(k->worker_status, "%s (asynchronous K-FAC refresh launched at update %llu)", k->worker_msg,
                         (unsigned long long)k->launch_k);
        else
            s = ng_error((ng_status)(int)v[bad * stride], "the asynchronous K-FAC refresh launched at update %llu failed on rank %d "
                         "(its message is in that rank's output)", (unsigned long long)k->launch_k, bad);
    }
    for (c = 0; s == NG_OK && k->async_me >= 0 && c < k->pend_cand; c++) {
        int hi = 0;
        ng_dtype prec;
        for (r = 0; r < world; r++)
            if (v[r * stride + 1 + c] > hi) hi = (int)v[r * stride + 1 + c];
        /* the tries between this rank's and hi failed elsewhere: counted as every rank counts them */
        if (k->pend_tried[c] < hi) k->aws.retries += hi - k->pend_tried[c];
        if (hi < NTRIES)
            s = refresh_tries(k, &k->aws, &k->snap, k->abe, p->be, async_set(c), k->launch_gam[c], me, 1, hi,
                              k->pend_tried[c] == hi ? hi : -1, &tried);
        if (s == NG_OK && (hi >= NTRIES || tried >= NTRIES)) s = refresh_failed(k->aws.precision, k->launch_gam[c]);
        if (s == NG_OK) ladder_step(k->aws.precision, k->launch_gam[c], tried, &prec, &k->pend_gam[c]);
    }
    free(v);
    return s;
}

/* snapshot the factors for the worker (the main stream finishes the copies first) */
static ng_status snapshot(kfac *k, ng_backend *be) {
    int l;
    for (l = 0; l <= k->L; l++) {
        const ng_tensor *src[] = {&k->fac.A[l], &k->fac.G[l], &k->fac.AC[l], &k->fac.GC[l]};
        ng_tensor *dst[] = {&k->snap.A[l], &k->snap.G[l], &k->snap.AC[l], &k->snap.GC[l]};
        int j;
        for (j = 0; j < 4; j++)
            if (src[j]->ptr && dst[j]->ptr) NG_TRY(ng_copy(be, dst[j]->ptr, src[j]->ptr, ng_tensor_count(src[j]) * sizeof(float)));
    }
    return ng_synchronize(be);
}

/* ---- natural parameter space ---------------------------------------------------------------- */

/* phi_refresh with the eigendecompositions of the layers this rank computes (me < 0: all) in one
 * ng_syevd_batched call (float32): each damped factor is written into its inverse root's buffer
 * (SAi, SGi) and decomposed there, the eigenvalues into the first n elements of its root's buffer
 * (SA, SG); then, per factor, E and the eigenvalues go to X and w1 and sqrt_pair's second half runs
 * as before, so every result is what sqrt_pair gives (bit-identical on the CPU, whose batched
 * problems are each a one-thread ssyevd). A factor whose float32 eigendecomposition failed goes
 * through sqrt_pair itself (its float64 retry); *bad = the layer that failed there too (0: none). */
static ng_status phi_refresh_batched(kfac *k, ng_backend *be, int me, int *bad) {
    ng_eig_problem p[2 * LMAX];
    double shift[2 * LMAX];
    int lay[2 * LMAX], l, j, i, np = 0, fail = 0, L = k->L;
    rws *w = &k->ws;
    for (l = 1; l <= L; l++) {
        double pi;
        if (me >= 0 && k->owner[l] != me) continue;
        NG_TRY(pi_of(k, w, &k->fac, be, l, &pi));
        for (j = 0; j < 2; j++, np++) {
            ng_eig_problem *q = &p[np];
            int n = j ? k->d[l] : na(k, l - 1);
            lay[np] = l;
            shift[np] = j ? k->gamma / pi : pi * k->gamma;
            q->n = n;
            q->lda = n;
            q->A = (j ? k->SGi : k->SAi)[l].data;
            q->w = (j ? k->SG : k->SA)[l].data;
            NG_TRY(damped(be, (j ? k->fac.G[l] : k->fac.A[l - 1]).data, n, shift[np], (float *)q->A));
        }
    }
    *bad = 0;
    if (np) NG_TRY(ng_syevd_batched(be, NG_F32, np, p));
    for (i = 0; i < np && !fail; i++) {
        ng_eig_problem *q = &p[i];
        int side = i & 1; /* problems come in pairs per layer: A, then G */
        float *oh = (side ? k->SG : k->SA)[lay[i]].data, *oih = (side ? k->SGi : k->SAi)[lay[i]].data;
        if (q->info) {
            NG_TRY(sqrt_pair(w, be, (side ? k->fac.G[lay[i]] : k->fac.A[lay[i] - 1]).data, q->n, shift[i], oh, oih, &fail));
            if (fail) *bad = lay[i];
            continue;
        }
        NG_TRY(ng_copy(be, w->X.data, q->A, (size_t)q->n * (size_t)q->n * sizeof(float)));
        NG_TRY(ng_copy(be, w->w1.data, q->w, (size_t)q->n * sizeof(float)));
        NG_TRY(sqrt_from_eig(w, be, q->n, shift[i], oh, oih));
    }
    return NG_OK;
}

/* the square roots of the damped factors (gamma fixed), float64 retried inside sym_eig; in float32
 * batched over the layers (phi_refresh_batched). On several ranks each layer's four roots are
 * computed by its owner (assign_owners, as K-FAC's inverse refreshes: the factors are all-reduced, so
 * every rank would compute the same) and broadcast; NG_KFAC_REDUNDANT=1 makes every rank compute every
 * layer (tests/test_dist.sh checks both give the same bits). */
static ng_status phi_refresh(kfac *k, ng_backend *be) {
    const char *red = getenv("NG_KFAC_REDUNDANT");
    int l, fail = 0, bad = 0, me = -1;
    double pi;
    if (k->dist->comm && k->dist->comm->world > 1 && !(red && !strcmp(red, "1"))) {
        assign_owners(k, k->dist->comm->world);
        me = k->dist->comm->rank;
    } else if (k->dist->comm && k->dist->comm->world > 1 && !k->redundant_noted) {
        k->redundant_noted = 1;
        if (k->dist->comm->rank == 0)
            ng_log(NG_LOG_WARN, "kfac", "NG_KFAC_REDUNDANT=1: every rank computes every layer's phi square roots");
    }
    if (k->ws.precision == NG_F32 && 2 * k->L <= NG_EIG_BATCH_MAX && ng_syevd_batched_supported(be)) {
        NG_TRY(phi_refresh_batched(k, be, me, &bad));
    } else {
        for (l = 1; l <= k->L && !bad; l++) {
            int n1 = na(k, l - 1), n2 = k->d[l];
            if (me >= 0 && k->owner[l] != me) continue;
            NG_TRY(pi_of(k, &k->ws, &k->fac, be, l, &pi));
            NG_TRY(sqrt_pair(&k->ws, be, k->fac.A[l - 1].data, n1, pi * k->gamma, k->SA[l].data, k->SAi[l].data, &fail));
            if (!fail) NG_TRY(sqrt_pair(&k->ws, be, k->fac.G[l].data, n2, k->gamma / pi, k->SG[l].data, k->SGi[l].data, &fail));
            if (fail) bad = l;
        }
    }
    if (me >= 0) {
        /* every rank learns whether a layer failed (all stop alike), else each layer's roots come
         * from its owner */
        double f = bad;
        NG_TRY(ng_comm_allreduce_host(k->dist->comm, &f, 1, "the K-FAC phi status"));
        if (f > 0.0 && !bad)
            return ng_error(NG_ERR_NUMERIC, "K-FAC natural parameter space: the eigendecomposition of a layer's damped factors "
                            "failed on the rank that owns it (see its message)");
        for (l = 1; l <= k->L && f == 0.0; l++) {
            ng_tensor *t[] = {&k->SA[l], &k->SAi[l], &k->SG[l], &k->SGi[l]};
            int j;
            for (j = 0; j < 4; j++)
                NG_TRY(ng_comm_bcast(k->dist->comm, be, NG_F32, t[j]->data, ng_tensor_count(t[j]), k->owner[l],
                                     "the K-FAC phi square roots"));
        }
    }
    if (bad)
        return ng_error(NG_ERR_NUMERIC, "K-FAC natural parameter space: the eigendecomposition of layer %d's damped factors "
                        "failed in float32 and float64 (non-finite statistics? the network diverged or the data hold NaN/Inf)", bad);
    k->phi_ready = 1;
    return NG_OK;
}

/* x_l <- SG x_l SA (to_phi) or SGi x_l SAi, per layer, in place (T1 holds the intermediate) */
static ng_status phi_map(kfac *k, ng_backend *be, float *x, int to_phi) {
    int l;
    for (l = 1; l <= k->L; l++) {
        int n1 = na(k, l - 1), n2 = k->d[l];
        float *v = x + k->off[l];
        NG_TRY(ng_gemm(be, 0, 0, n2, n1, n2, 1.0f, (to_phi ? k->SG : k->SGi)[l].data, n2, v, n2, 0.0f, k->ws.T1.data, n2));
        NG_TRY(ng_gemm(be, 0, 0, n2, n1, n1, 1.0f, k->ws.T1.data, n2, (to_phi ? k->SA : k->SAi)[l].data, n1, 0.0f, v, n2));
    }
    return NG_OK;
}

ng_status ng_kfac_phi_map(ng_precond *p, float *x, int to_phi) {
    kfac *k;
    if (!p || !x || strcmp(p->iface->name, "kfac") != 0)
        return ng_error(NG_ERR_INVALID_ARG, "natural parameter space: not a K-FAC preconditioner or NULL vector");
    k = K(p);
    if (k->cfg.phi_every <= 0)
        return ng_error(NG_ERR_INVALID_ARG, "natural parameter space: this K-FAC preconditioner was made without --phi-every K");
    if (!k->phi_ready)
        return ng_error(NG_ERR_NUMERIC, "natural parameter space: the K-FAC factors' square roots are not computed yet (no update applied)");
    return phi_map(k, p->be, x, to_phi);
}

/* the gradient in phi, S^-1 g, refreshing S at t = 0, K, 2K, ... */
static ng_status phi_apply(ng_precond *p, ng_model *m, uint64_t t) {
    kfac *k = K(p);
    double t0 = now_s();
    if (t % (uint64_t)k->cfg.phi_every == 0 || !k->phi_ready) {
        NG_TRY_RANGE(NG_CAT_INVERSE, "kfac phi square roots", phi_refresh(k, p->be));
        NG_TRY(phase_end(p, t0, &k->inverse_s));
    }
    t0 = now_s();
    NG_TRY_RANGE(NG_CAT_UPDATE, "kfac phi gradient", phi_map(k, p->be, m->grad_flat.data, 0));
    NG_TRY(phase_end(p, t0, &k->apply_s));
    k->graphed = 0; /* the capture (if any) has recorded this update's phases */
    return NG_OK;
}

/* The vector products of the quadratic model (host, double): for each candidate c, gg = grad . Delta_c,
 * dd = Delta_c . Delta_c and (with momentum) dd0 = Delta_c . delta0; gd0 = grad . delta0 and
 * d0d0 = delta0 . delta0 (0 without momentum). */
static ng_status model_dots(kfac *k, ng_backend *be, const ng_tensor *g, int cand, int use_mom, double *gg, double *dd,
                            double *dd0, double *gd0, double *d0d0) {
    int c;
    float f;
    for (c = 0; c < cand; c++) {
        NG_TRY(ng_dot(be, k->n, g->data, k->Delta[c].data, &f));
        gg[c] = f;
        NG_TRY(ng_dot(be, k->n, k->Delta[c].data, k->Delta[c].data, &f));
        dd[c] = f;
        dd0[c] = 0.0;
        if (use_mom) {
            NG_TRY(ng_dot(be, k->n, k->Delta[c].data, k->delta0.data, &f));
            dd0[c] = f;
        }
    }
    *gd0 = *d0d0 = 0.0;
    if (use_mom) {
        NG_TRY(ng_dot(be, k->n, g->data, k->delta0.data, &f));
        *gd0 = f;
        NG_TRY(ng_dot(be, k->n, k->delta0.data, k->delta0.data, &f));
        *d0d0 = f;
    }
    return NG_OK;
}

/* h at the parameters in the arena on the batch x as the CUDA-graph segment "kfac objective"
 * (ng_net_evaluate_seg; eager without --cuda-graph). theta + delta is formed eagerly before, so one
 * graph serves every rho of a batch buffer. */
static ng_status objective_seg(ng_precond *p, ng_model *m, const ng_tensor *x, double *h) {
    kfac *k = K(p);
    return ng_net_evaluate_seg(p->segs, "kfac objective", m, x, &k->sums, &k->sums_cap, h);
}

/* Levenberg-Marquardt (section 6.5): rho = (h(theta + delta) - h(theta)) / (M(delta) - M(0)) on the
 * whole batch x (one forward pass at theta + delta, a segment: objective_seg; the parameters
 * restored bit-exactly from a copy), then lambda adjusted. delta is in delta0, M(delta) - M(0) in
 * qmodel, h(theta) in h0. */
static ng_status lm_adjust(ng_precond *p, ng_model *m, const ng_tensor *x) {
    kfac *k = K(p);
    ng_backend *be = p->be;
    double h1, r0, r1;
    NG_TRY(decay_norm2(m, m->param_flat.data, &r0));
    NG_TRY(ng_copy(be, k->backup.data, m->param_flat.data, k->n * sizeof(float)));
    NG_TRY(ng_axpby(be, k->n, 1.0f, k->delta0.data, 1.0f, m->param_flat.data));
    NG_TRY(decay_norm2(m, m->param_flat.data, &r1));
    NG_TRY(objective_seg(p, m, x, &h1));
    NG_TRY(ng_copy(be, m->param_flat.data, k->backup.data, k->n * sizeof(float)));
    if (dist_on(p)) {
        /* h(theta) and h(theta + delta) on the global batch: shard means weighted by share */
        double w = (double)(p->dist.hi - p->dist.lo) / (double)p->dist.batch, hv[2];
        hv[0] = w * k->h0;
        hv[1] = w * h1;
        NG_TRY_RANGE(NG_CAT_COMM, "kfac rho all-reduce", ng_comm_allreduce_host(p->dist.comm, hv, 2, "the K-FAC objective values"));
        k->h0 = hv[0];
        h1 = hv[1];
    }
    k->rho = ((h1 + k->cfg.eta * r1) - (k->h0 + k->cfg.eta * r0)) / k->qmodel;
    k->lambda = ng_kfac_lm_update(k->lambda, k->rho, omega1_of(&k->cfg));
    return NG_OK;
}

/* Delta = -F^-1 g with set si as a CUDA-graph segment (natgrad/graph.h; eager without
 * --cuda-graph): gemms on fixed buffers, so one graph per (set, g, out) replays between refreshes,
 * which change the inverses' values, not their addresses */
typedef struct inv_ctx {
    ng_precond *p;
    int si;
    const ng_tensor *v;
    ng_tensor *out;
} inv_ctx;
static ng_status inv_body(void *user) {
    inv_ctx *c = (inv_ctx *)user;
    return apply_set(K(c->p), c->p->be, c->si, -1.0f, c->v, c->out);
}
static ng_status apply_set_seg(ng_precond *p, int si, const ng_tensor *v, ng_tensor *out) {
    static const ng_graph_seg seg = {"kfac F^-1 product", inv_body, NULL, NULL};
    inv_ctx c;
    uint64_t key[4];
    c.p = p;
    c.si = si;
    c.v = v;
    c.out = out;
    key[0] = (uint64_t)(uint32_t)si << 32 | (uint32_t)K(p)->tri;
    key[1] = ng_graph_key_ptr(v->ptr);
    key[2] = ng_graph_key_ptr(out->ptr);
    key[3] = (uint64_t)K(p)->n;
    return ng_graph_seg_run(p->segs, &seg, &c, key, 4);
}

/* The quadratic model's scalars on S2 = the first s2 <= chunk cases (one process): the Fisher gram
 * of the vectors and the dots of model_dots, every one computed into qdots on the device as one
 * CUDA-graph segment (natgrad/graph.h; eager without --cuda-graph), then one read. The same
 * floats as ng_net_fisher_gram + model_dots (a dot's float is the same whether the host or the
 * device receives it), summed the same way in double. */
#define QDOTS 48 /* 36 gram dots (nv <= 8) + 3 per candidate + 2 */
typedef struct quad_ctx {
    ng_model *m; /* first: ng_model_seg_state_get */
    ng_precond *p;
    int s2, nv, cand, use_mom;
    const ng_tensor *const *vecs;
} quad_ctx;
static ng_status quad_body(void *user) {
    quad_ctx *c = (quad_ctx *)user;
    kfac *k = K(c->p);
    ng_backend *be = c->p->be;
    float *q = k->qdots.data, *g = c->m->grad_flat.data;
    int i, o = 36;
    NG_TRY(ng_net_batch_prefix(c->m, c->s2));
    NG_TRY(ng_net_fisher_gram_dots(c->m, c->nv, c->vecs, &k->work, q));
    for (i = 0; i < c->cand; i++) {
        NG_TRY(ng_dot_dev(be, k->n, g, k->Delta[i].data, q + o++));
        NG_TRY(ng_dot_dev(be, k->n, k->Delta[i].data, k->Delta[i].data, q + o++));
        if (c->use_mom) NG_TRY(ng_dot_dev(be, k->n, k->Delta[i].data, k->delta0.data, q + o++));
    }
    if (c->use_mom) {
        NG_TRY(ng_dot_dev(be, k->n, g, k->delta0.data, q + o++));
        NG_TRY(ng_dot_dev(be, k->n, k->delta0.data, k->delta0.data, q + o++));
    }
    return NG_OK;
}
static ng_status quad_model(ng_precond *p, ng_model *m, int s2, int nv, const ng_tensor *const *vecs, int cand, int use_mom,
                            double *gram, double *gg, double *dd, double *dd0, double *gd0, double *d0d0) {
    static const ng_graph_seg seg = {"kfac quadratic model", quad_body, ng_model_seg_state_get, ng_model_seg_state_set};
    kfac *k = K(p);
    quad_ctx c;
    uint64_t key[4 + NSETS + 1];
    float q[QDOTS];
    int i, j, o = 36;
    c.p = p;
    c.m = m;
    c.s2 = s2;
    c.nv = nv;
    c.cand = cand;
    c.use_mom = use_mom;
    c.vecs = vecs;
    key[0] = (uint64_t)(uint32_t)s2 << 32 | (uint32_t)nv;
    key[1] = (uint64_t)(uint32_t)cand << 32 | (uint32_t)use_mom;
    key[2] = ng_graph_key_ptr(m->grad_flat.data);
    key[3] = ng_graph_key_ptr(k->work.data);
    for (i = 0; i < nv; i++) key[4 + i] = ng_graph_key_ptr(vecs[i]->ptr);
    NG_TRY(ng_graph_seg_run(p->segs, &seg, &c, key, 4 + nv));
    NG_TRY(ng_get(p->be, q, k->qdots.data, sizeof q));
    for (i = 0; i < nv; i++)
        for (j = 0; j <= i; j++) gram[j + nv * i] = gram[i + nv * j] = (double)q[i * (i + 1) / 2 + j] / (double)s2;
    for (i = 0; i < cand; i++) {
        gg[i] = q[o++];
        dd[i] = q[o++];
        dd0[i] = use_mom ? q[o++] : 0.0;
    }
    *gd0 = *d0d0 = 0.0;
    if (use_mom) {
        *gd0 = q[o++];
        *d0d0 = q[o++];
    }
    return NG_OK;
}

static ng_status kfac_apply(ng_precond *p, ng_model *m, uint64_t t) {
    kfac *k = K(p);
    if (k->cfg.phi_every > 0) return phi_apply(p, m, t);
    ng_backend *be = p->be;
    uint64_t kk = t + 1;
    int refresh_now = kk <= 3 || kk % (uint64_t)k->cfg.T3 == 0;
    int cand = k->cfg.adapt_gamma && kk % (uint64_t)k->cfg.T2 == 0 ? 3 : 1;
    int use_mom = k->cfg.momentum && k->have_delta0;
    double w2 = omega2_of(&k->cfg), gam[NSETS], Mv[NSETS], al[NSETS], mu[NSETS], gram[16];
    double gg[NSETS], gd0 = 0.0, dd[NSETS], d0d0 = 0.0, dd0[NSETS], damp = k->lambda + k->cfg.eta;
    const ng_tensor *vecs[NSETS + 1];
    ng_tensor x, *g = &m->grad_flat;
    int c, best = 0, nv, s2, sets[NSETS] = {0, 1, 2}, arrived = 0;
    double t0 = now_s();
    gam[0] = k->gamma;
    gam[1] = k->gamma * w2;
    gam[2] = k->gamma / w2;
    if (k->relaunch) {
        k->relaunch = 0;
        NG_TRY(launch_worker(k));
    }
    if (k->cfg.async_lag >= 0 && kk > 3) {
        /* asynchronous: launch at a refresh point, use the results async_lag updates later */
        if (refresh_now) {
            double t1 = now_s();
            NG_TRY(join_worker(k));
            NG_TRY(snapshot(k, be));
            k->pend_cand = cand;
            for (c = 0; c < NSETS; c++) k->pend_gam[c] = k->launch_gam[c] = gam[c];
            k->launch_k = kk;
            NG_TRY(launch_worker(k));
            NG_TRY(phase_end(p, t1, &k->inverse_s));
        }
        if (k->pending && kk == k->launch_k + (uint64_t)k->cfg.async_lag) {
            double t1 = now_s();
            NG_TRY(join_worker(k));
            NG_TRY(async_arrive(p, k));
            NG_TRY(phase_end(p, t1, &k->inverse_s));
            arrived = 1;
            k->pending = 0;
            k->ws.retries += k->aws.retries;
            cand = k->pend_cand;
            for (c = 0; c < cand; c++) gam[c] = k->pend_gam[c], sets[c] = async_set(c);
        } else {
            cand = 1;
        }
        refresh_now = 0;
    }
    /* inverses and proposals Delta_c = -F^-1 grad */
    for (c = 0; c < cand; c++) {
        if (refresh_now) {
            double t1 = now_s();
            NG_TRY_RANGE(NG_CAT_INVERSE, "kfac inverses", refresh(k, &k->ws, &k->fac, be, c, gam[c], &gam[c]));
            NG_TRY(phase_end(p, t1, &k->inverse_s));
        }
        NG_TRY_RANGE(NG_CAT_UPDATE, "kfac F^-1 products", apply_set_seg(p, sets[c], g, &k->Delta[c]));
    }
    NG_TRY(phase_end(p, t0, &k->apply_s));
    k->apply_s -= k->inverse_s;
    /* the quadratic model on S2 (exact Fisher products, appendix C) */
    t0 = now_s();
    x = k->bx;
    s2 = (int)floor(k->cfg.tau2 * (double)global_batch(p, x.cols) + 0.5);
    if (s2 < 1) s2 = 1;
    nv = 0;
    for (c = 0; c < cand; c++) vecs[nv++] = &k->Delta[c];
    if (use_mom) vecs[nv++] = &k->delta0;
    if (!dist_on(p) && s2 <= ng_net_config_of(m)->chunk) {
        NG_TRY_RANGE(NG_CAT_SOLVER, "kfac quadratic model",
                     quad_model(p, m, s2, nv, vecs, cand, use_mom, gram, gg, dd, dd0, &gd0, &d0d0));
    } else if (!dist_on(p)) {
        NG_TRY(ng_net_batch_prefix(m, s2));
        NG_TRY_RANGE(NG_CAT_SOLVER, "kfac quadratic model", ng_net_fisher_gram(m, nv, vecs, &k->work, gram));
    } else {
        /* the gram of this rank's cases of S2 weighted by their share, summed over the ranks (the
         * gradient terms below come from the all-reduced gradient and the identical Delta, delta0:
         * equal on every rank without a reduction) */
        int mine = prefix_share(p, s2), i;
        for (i = 0; i < nv * nv; i++) gram[i] = 0.0;
        if (mine > 0) {
            NG_TRY(ng_net_batch_prefix(m, mine));
            NG_TRY_RANGE(NG_CAT_SOLVER, "kfac quadratic model", ng_net_fisher_gram(m, nv, vecs, &k->work, gram));
            for (i = 0; i < nv * nv; i++) gram[i] *= (double)mine / (double)s2;
        }
        NG_TRY_RANGE(NG_CAT_COMM, "kfac gram all-reduce",
                     ng_comm_allreduce_host(p->dist.comm, gram, (size_t)(nv * nv), "the K-FAC quadratic model"));
    }
    if (dist_on(p) || s2 > ng_net_config_of(m)->chunk)
        NG_TRY_RANGE(NG_CAT_SOLVER, "kfac model scalars", model_dots(k, be, g, cand, use_mom, gg, dd, dd0, &gd0, &d0d0));
    for (c = 0; c < cand; c++) {
        double q00 = gram[c + nv * c] + damp * dd[c];
        if (!k->cfg.rescale) {
            al[c] = 1.0;
            mu[c] = 0.0;
            Mv[c] = 0.5 * q00 + gg[c];
        } else if (use_mom) {
            double q01 = gram[c + nv * (nv - 1)] + damp * dd0[c], q11 = gram[(nv - 1) + nv * (nv - 1)] + damp * d0d0;
            Mv[c] = ng_kfac_solve2(q00, q01, q11, gg[c], gd0, 1, &al[c], &mu[c]);
        } else {
            Mv[c] = ng_kfac_solve2(q00, 0.0, 1.0, gg[c], 0.0, 0, &al[c], &mu[c]);
        }
        if (Mv[c] < Mv[best] || !FINITE(Mv[best])) best = c;
    }
    /* delta = alpha Delta + mu delta0 -> delta0; the gradient arena gets -delta */
    k->alpha = al[best];
    k->mu = mu[best];
    k->qmodel = Mv[best];
    k->gamma = gam[best];
    if (!FINITE(k->alpha) || !FINITE(k->mu))
        return ng_error(NG_ERR_NUMERIC, "K-FAC update %llu: step sizes alpha = %g, mu = %g are not finite (diverged network?)",
                        (unsigned long long)t, k->alpha, k->mu);
    NG_TRY(ng_axpby(be, k->n, (float)k->alpha, k->Delta[best].data, use_mom ? (float)k->mu : 0.0f, k->delta0.data));
    k->have_delta0 = 1;
    NG_TRY(ng_axpby(be, k->n, -1.0f, k->delta0.data, 0.0f, g->data));
    /* the chosen candidate's inverses become the current set */
    if ((refresh_now || arrived) && sets[best] != 0) NG_TRY(copy_set(k, be, sets[best], 0));
    /* Levenberg-Marquardt every T1 updates: rho on the whole batch S' */
    if (k->cfg.adapt_lambda && kk % (uint64_t)k->cfg.T1 == 0) NG_TRY_RANGE(NG_CAT_SOLVER, "kfac rho", lm_adjust(p, m, &x));
    return phase_end(p, t0, &k->quad_s);
}

static const char *const kfac_columns[] = {"lambda", "gamma", "alpha", "mu", "rho", "qmodel", "inv_retries",
                                           "stats_s", "inverse_s", "apply_s", "quad_s", NULL};

static ng_status kfac_log_values(ng_precond *p, double *v) {
    kfac *k = K(p);
    v[0] = k->lambda;
    v[1] = k->gamma;
    v[2] = k->alpha;
    v[3] = k->mu;
    v[4] = k->rho;
    v[5] = k->qmodel;
    v[6] = k->ws.retries;
    v[7] = k->stats_s;
    v[8] = k->inverse_s;
    v[9] = k->apply_s;
    v[10] = k->quad_s;
    return NG_OK;
}

/* ---- checkpoints ----------------------------------------------------------------------------- */

/* configuration entries (every field: a resume rebuilds the same preconditioner) */
static ng_status save_config(const ng_kfac_config *k, ng_ckpt *c) {
    NG_TRY(ng_ckpt_set_str(c, "kfac.approx", ng_kfac_approx_name(k->approx)));
    NG_TRY(ng_ckpt_set_f64(c, "kfac.lambda0", k->lambda0));
    NG_TRY(ng_ckpt_set_f64(c, "kfac.gamma0", k->gamma0));
    NG_TRY(ng_ckpt_set_f64(c, "kfac.eta", k->eta));
    NG_TRY(ng_ckpt_set_f64(c, "kfac.tau1", k->tau1));
    NG_TRY(ng_ckpt_set_f64(c, "kfac.tau2", k->tau2));
    NG_TRY(ng_ckpt_set_i64(c, "kfac.T1", k->T1));
    NG_TRY(ng_ckpt_set_i64(c, "kfac.T2", k->T2));
    NG_TRY(ng_ckpt_set_i64(c, "kfac.T3", k->T3));
    NG_TRY(ng_ckpt_set_f64(c, "kfac.omega1", k->omega1));
    NG_TRY(ng_ckpt_set_f64(c, "kfac.omega2", k->omega2));
    NG_TRY(ng_ckpt_set_f64(c, "kfac.eps_max", k->eps_max));
    NG_TRY(ng_ckpt_set_i64(c, "kfac.momentum", k->momentum));
    NG_TRY(ng_ckpt_set_i64(c, "kfac.rescale", k->rescale));
    NG_TRY(ng_ckpt_set_i64(c, "kfac.adapt_lambda", k->adapt_lambda));
    NG_TRY(ng_ckpt_set_i64(c, "kfac.adapt_gamma", k->adapt_gamma));
    NG_TRY(ng_ckpt_set_i64(c, "kfac.pi", k->pi_mode));
    NG_TRY(ng_ckpt_set_i64(c, "kfac.precision64", k->precision == NG_F64));
    NG_TRY(ng_ckpt_set_i64(c, "kfac.async_lag", k->async_lag));
    if (k->inverse != NG_KFAC_INV_TIKHONOV) NG_TRY(ng_ckpt_set_i64(c, "kfac.inverse", k->inverse));
    if (k->phi_every > 0) NG_TRY(ng_ckpt_set_i64(c, "kfac.phi_every", k->phi_every));
    return ng_ckpt_set_u64(c, "kfac.seed", k->seed);
}

ng_status ng_kfac_config_from_ckpt(const ng_ckpt *c, ng_kfac_config *k) {
    const char *ap;
    int64_t v;
    ng_kfac_config_default(k);
    NG_TRY(ng_ckpt_get_str(c, "kfac.approx", &ap));
    k->approx = ng_kfac_approx_parse(ap);
    if (k->approx < 0) return ng_error(NG_ERR_FORMAT, "checkpoint %s: kfac.approx '%s' is unknown", ng_ckpt_path(c), ap);
    NG_TRY(ng_ckpt_get_f64(c, "kfac.lambda0", &k->lambda0));
    NG_TRY(ng_ckpt_get_f64(c, "kfac.gamma0", &k->gamma0));
    NG_TRY(ng_ckpt_get_f64(c, "kfac.eta", &k->eta));
    NG_TRY(ng_ckpt_get_f64(c, "kfac.tau1", &k->tau1));
    NG_TRY(ng_ckpt_get_f64(c, "kfac.tau2", &k->tau2));
    NG_TRY(ng_ckpt_get_int(c, "kfac.T1", 1, 1 << 30, &v));
    k->T1 = (int)v;
    NG_TRY(ng_ckpt_get_int(c, "kfac.T2", 1, 1 << 30, &v));
    k->T2 = (int)v;
    NG_TRY(ng_ckpt_get_int(c, "kfac.T3", 1, 1 << 30, &v));
    k->T3 = (int)v;
    NG_TRY(ng_ckpt_get_f64(c, "kfac.omega1", &k->omega1));
    NG_TRY(ng_ckpt_get_f64(c, "kfac.omega2", &k->omega2));
    NG_TRY(ng_ckpt_get_f64(c, "kfac.eps_max", &k->eps_max));
    NG_TRY(ng_ckpt_get_int(c, "kfac.momentum", 0, 1, &v));
    k->momentum = (int)v;
    NG_TRY(ng_ckpt_get_int(c, "kfac.rescale", 0, 1, &v));
    k->rescale = (int)v;
    NG_TRY(ng_ckpt_get_int(c, "kfac.adapt_lambda", 0, 1, &v));
    k->adapt_lambda = (int)v;
    NG_TRY(ng_ckpt_get_int(c, "kfac.adapt_gamma", 0, 1, &v));
    k->adapt_gamma = (int)v;
    NG_TRY(ng_ckpt_get_int(c, "kfac.pi", 0, 1, &v));
    k->pi_mode = (int)v;
    NG_TRY(ng_ckpt_get_int(c, "kfac.precision64", 0, 1, &v));
    k->precision = v ? NG_F64 : NG_F32;
    NG_TRY(ng_ckpt_get_int(c, "kfac.async_lag", -1, 1 << 30, &v));
    k->async_lag = (int)v;
    /* absent in checkpoints written before the option: Tikhonov */
    k->inverse = NG_KFAC_INV_TIKHONOV;
    if (ng_ckpt_has(c, "kfac.inverse")) {
        NG_TRY(ng_ckpt_get_int(c, "kfac.inverse", 0, 1, &v));
        k->inverse = (int)v;
    }
    /* absent: not in the natural parameter space */
    k->phi_every = 0;
    if (ng_ckpt_has(c, "kfac.phi_every")) {
        NG_TRY(ng_ckpt_get_int(c, "kfac.phi_every", 1, 1 << 30, &v));
        k->phi_every = (int)v;
    }
    NG_TRY(ng_ckpt_get_u64(c, "kfac.seed", &k->seed));
    if (ng_kfac_config_check(k) != NG_OK)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: K-FAC settings out of range: %s", ng_ckpt_path(c), ng_last_error());
    return NG_OK;
}

static ng_status kfac_save(ng_precond *p, ng_ckpt *c) {
    kfac *k = K(p);
    NG_TRY(save_config(&k->cfg, c));
    NG_TRY(ng_ckpt_set_f64(c, "kfac.lambda", k->lambda));
    NG_TRY(ng_ckpt_set_f64(c, "kfac.gamma", k->gamma));
    NG_TRY(ng_ckpt_set_f64(c, "kfac.alpha", k->alpha));
    NG_TRY(ng_ckpt_set_f64(c, "kfac.mu", k->mu));
    /* rho is NaN until the first Levenberg-Marquardt check (update T1): then the key is absent */
    if (FINITE(k->rho)) NG_TRY(ng_ckpt_set_f64(c, "kfac.rho", k->rho));
    NG_TRY(ng_ckpt_set_f64(c, "kfac.qmodel", k->qmodel));
    if (k->cfg.async_lag >= 0) {
        /* a refresh in flight: its snapshot (state arena) and launch; a resume recomputes it */
        int j;
        char key[32];
        NG_TRY(join_worker(k));
        NG_TRY(ng_ckpt_set_i64(c, "kfac.async_pending", k->pending != 0 || k->relaunch));
        NG_TRY(ng_ckpt_set_u64(c, "kfac.async_launch_k", k->launch_k));
        NG_TRY(ng_ckpt_set_i64(c, "kfac.async_cand", k->pend_cand));
        for (j = 0; j < NSETS; j++) {
            snprintf(key, sizeof key, "kfac.async_gamma%d", j);
            NG_TRY(ng_ckpt_set_f64(c, key, k->launch_gam[j]));
        }
    }
    return ng_ckpt_set_i64(c, "kfac.have_delta0", k->have_delta0);
}

static ng_status expect_f64(const ng_ckpt *c, const char *key, double want) {
    double v;
    NG_TRY(ng_ckpt_get_f64(c, key, &v));
    if (v != want)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: %s is %.17g, this run uses %.17g: resume with the options that wrote it",
                        ng_ckpt_path(c), key, v, want);
    return NG_OK;
}

static ng_status expect_i64(const ng_ckpt *c, const char *key, int64_t want) {
    int64_t v;
    NG_TRY(ng_ckpt_get_i64(c, key, &v));
    if (v != want)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: %s is %lld, this run uses %lld: resume with the options that wrote it",
                        ng_ckpt_path(c), key, (long long)v, (long long)want);
    return NG_OK;
}

static ng_status kfac_load(ng_precond *p, const ng_ckpt *c, int apply) {
    kfac *k = K(p);
    ng_kfac_config cc;
    int64_t hd;
    double lam, gam, al, mu, rho, qm;
    NG_TRY(ng_kfac_config_from_ckpt(c, &cc));
    {
        uint64_t seed;
        if (cc.approx != k->cfg.approx)
            return ng_error(NG_ERR_FORMAT, "checkpoint %s: kfac.approx is %s, this run uses %s", ng_ckpt_path(c),
                            ng_kfac_approx_name(cc.approx), ng_kfac_approx_name(k->cfg.approx));
        NG_TRY(expect_f64(c, "kfac.lambda0", k->cfg.lambda0));
        NG_TRY(expect_f64(c, "kfac.gamma0", k->cfg.gamma0));
        NG_TRY(expect_f64(c, "kfac.eta", k->cfg.eta));
        NG_TRY(expect_f64(c, "kfac.tau1", k->cfg.tau1));
        NG_TRY(expect_f64(c, "kfac.tau2", k->cfg.tau2));
        NG_TRY(expect_i64(c, "kfac.T1", k->cfg.T1));
        NG_TRY(expect_i64(c, "kfac.T2", k->cfg.T2));
        NG_TRY(expect_i64(c, "kfac.T3", k->cfg.T3));
        NG_TRY(expect_f64(c, "kfac.omega1", k->cfg.omega1));
        NG_TRY(expect_f64(c, "kfac.omega2", k->cfg.omega2));
        NG_TRY(expect_f64(c, "kfac.eps_max", k->cfg.eps_max));
        NG_TRY(expect_i64(c, "kfac.momentum", k->cfg.momentum));
        NG_TRY(expect_i64(c, "kfac.rescale", k->cfg.rescale));
        NG_TRY(expect_i64(c, "kfac.adapt_lambda", k->cfg.adapt_lambda));
        NG_TRY(expect_i64(c, "kfac.adapt_gamma", k->cfg.adapt_gamma));
        NG_TRY(expect_i64(c, "kfac.pi", k->cfg.pi_mode));
        NG_TRY(expect_i64(c, "kfac.precision64", k->cfg.precision == NG_F64));
        NG_TRY(expect_i64(c, "kfac.async_lag", k->cfg.async_lag));
        {
            int64_t inv = NG_KFAC_INV_TIKHONOV;
            if (ng_ckpt_has(c, "kfac.inverse")) NG_TRY(ng_ckpt_get_int(c, "kfac.inverse", 0, 1, &inv));
            if (inv != k->cfg.inverse)
                return ng_error(NG_ERR_FORMAT, "checkpoint %s: kfac.inverse is %s, this run uses %s", ng_ckpt_path(c),
                                inv ? "regularized" : "tikhonov", k->cfg.inverse ? "regularized" : "tikhonov");
        }
        if (cc.phi_every != k->cfg.phi_every)
            return ng_error(NG_ERR_FORMAT, "checkpoint %s: kfac.phi_every is %d, this run uses %d (0: not in phi space)", ng_ckpt_path(c),
                            cc.phi_every, k->cfg.phi_every);
        NG_TRY(ng_ckpt_get_u64(c, "kfac.seed", &seed));
        if (seed != k->cfg.seed)
            return ng_error(NG_ERR_FORMAT, "checkpoint %s: kfac.seed is %llu, this run uses %llu", ng_ckpt_path(c),
                            (unsigned long long)seed, (unsigned long long)k->cfg.seed);
    }
    NG_TRY(ng_ckpt_get_f64(c, "kfac.lambda", &lam));
    NG_TRY(ng_ckpt_get_f64(c, "kfac.gamma", &gam));
    NG_TRY(ng_ckpt_get_f64(c, "kfac.alpha", &al));
    NG_TRY(ng_ckpt_get_f64(c, "kfac.mu", &mu));
    rho = NAN;
    if (ng_ckpt_has(c, "kfac.rho")) NG_TRY(ng_ckpt_get_f64(c, "kfac.rho", &rho));
    NG_TRY(ng_ckpt_get_f64(c, "kfac.qmodel", &qm));
    NG_TRY(ng_ckpt_get_i64(c, "kfac.have_delta0", &hd));
    if (!(lam > 0.0) || !FINITE(lam) || !(gam > 0.0) || !FINITE(gam))
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: kfac.lambda %g / kfac.gamma %g must be finite and > 0", ng_ckpt_path(c),
                        lam, gam);
    if (k->cfg.async_lag >= 0) {
        int64_t pend, cand;
        uint64_t lk;
        double lg[NSETS];
        int j;
        char key[32];
        NG_TRY(ng_ckpt_get_int(c, "kfac.async_pending", 0, 1, &pend));
        NG_TRY(ng_ckpt_get_u64(c, "kfac.async_launch_k", &lk));
        NG_TRY(ng_ckpt_get_int(c, "kfac.async_cand", 0, NSETS, &cand));
        for (j = 0; j < NSETS; j++) {
            snprintf(key, sizeof key, "kfac.async_gamma%d", j);
            NG_TRY(ng_ckpt_get_f64(c, key, &lg[j]));
        }
        if (apply) {
            NG_TRY(join_worker(k));
            k->pending = 0;
            k->relaunch = (int)pend;
            k->launch_k = lk;
            k->pend_cand = (int)cand;
            for (j = 0; j < NSETS; j++) k->pend_gam[j] = k->launch_gam[j] = lg[j];
        }
    }
    if (!apply) return NG_OK;
    k->lambda = lam;
    k->gamma = gam;
    k->alpha = al;
    k->mu = mu;
    k->rho = rho;
    k->qmodel = qm;
    k->have_delta0 = hd != 0;
    /* the square roots are in the state arena, loaded by the caller after this */
    if (k->cfg.phi_every > 0) k->phi_ready = 1;
    k->phi_tdev = UINT64_MAX; /* sstep is not the loaded run's */
    return NG_OK;
}

static void kfac_destroy(ng_precond *p) {
    kfac *k = K(p);
    if (!k) return;
    if (k->pending == 1) {
        join_worker(k);
        ng_clear_error();
    }
    if (k->sums) ng_free(p->be, k->sums);
    ng_arena_free(&k->scratch);
    if (k->abe) ng_backend_free(k->abe);
    free(k);
}

/* CUDA graphs (natgrad/train.h): only in the natural parameter space (--optimizer kfac runs in graph
 * segments, graph_seg.c). There an update between two refreshes is the factor statistics (phi_stats:
 * the targets' step on the device; on several ranks the factors' NCCL all-reduces on the stream) and
 * the map S^-1 g with the roots at fixed addresses, device work whose host values are the statistics'
 * cases and weights (eps; a rank's share and first column follow from the batch in the trainer's key);
 * the refreshes (t = 0, K, 2K, ...: host eigenvalue checks, allocation-free but reading info; on
 * several ranks each layer's roots computed by its owner and broadcast), an update whose sstep must be
 * written and a batch whose statistics span several chunks (the targets' step per chunk by value) run
 * eagerly. Every input of the decision is the same on every rank (the counts advance on all of them). The answer is kept in `graphed` (a host mirror the
 * const interface lets through K()): a graph update skips --kfac-timing's synchronisations. */
static int kfac_graph_key(const ng_precond *p, const ng_model *m, uint64_t t, int cols, double *key, int max) {
    kfac *k = K(p);
    int n;
    k->graphed = 0;
    if (k->cfg.phi_every <= 0 || max < 1) return -1;
    if (!k->phi_ready || t % (uint64_t)k->cfg.phi_every == 0 || k->phi_tdev != t) return -1;
    /* several ranks: the statistics' cases are a prefix of the global batch (the trainer set the
     * shards of this update's batch before asking), so every rank decides alike */
    n = (int)floor(k->cfg.tau1 * (double)global_batch(p, cols) + 0.5);
    if (n < 1) n = 1;
    if (n > ng_net_config_of(m)->chunk) return -1;
    k->graphed = 1; /* captured or replayed: --kfac-timing's phases are not timed (logged updates run eagerly) */
    /* the statistics' cases n follow from the batch's columns (in the trainer's key), their weights
     * (1 - eps) / n and eps from eps */
    key[0] = ng_kfac_ema_weight(t + 1, k->cfg.eps_max);
    return 1;
}
static void kfac_graph_replayed(ng_precond *p, uint64_t t) {
    K(p)->phi_tdev = t + 1;
    K(p)->graphed = 0;
}
static void kfac_graph_discarded(ng_precond *p, uint64_t t) {
    K(p)->phi_tdev = t;
    K(p)->graphed = 0;
}

static const struct ng_precond_i kfac_iface = {
    .name = "kfac",
    .observe = kfac_observe,
    .apply = kfac_apply,
    .columns = kfac_columns,
    .log_values = kfac_log_values,
    .save = kfac_save,
    .load = kfac_load,
    .destroy = kfac_destroy,
    .data_parallel = 1,
    .graph_key = kfac_graph_key,
    .graph_replayed = kfac_graph_replayed,
    .graph_discarded = kfac_graph_discarded,
};

/* ---- construction ---------------------------------------------------------------------------- */

static ng_status reserve(ng_arena *a, const char *fmt, int l, int rows, int cols, ng_tensor *t) {
    char name[64];
    snprintf(name, sizeof name, fmt, l);
    return ng_arena_reserve(a, name, rows, cols, t);
}

static ng_status reserve_set(kfac *k, ng_arena *a, int si, invset *S) {
    int l, L = k->L;
    char pre[16];
    char fmt[64];
    snprintf(pre, sizeof pre, si ? "cand%d_" : "", si);
    for (l = 1; l <= L; l++) {
        int n1 = na(k, l - 1), n2 = k->d[l];
        if (!k->tri || l == L) {
            snprintf(fmt, sizeof fmt, "%sAinv%%d", pre);
            NG_TRY(reserve(a, fmt, l, n1, n1, &S->AI[l]));
            snprintf(fmt, sizeof fmt, "%sGinv%%d", pre);
            NG_TRY(reserve(a, fmt, l, n2, n2, &S->GI[l]));
        } else {
            int n3 = na(k, l), n4 = k->d[l + 1];
            snprintf(fmt, sizeof fmt, "%sPsiAT%%d", pre);
            NG_TRY(reserve(a, fmt, l, n3, n1, &S->PAT[l]));
            snprintf(fmt, sizeof fmt, "%sPsiGT%%d", pre);
            NG_TRY(reserve(a, fmt, l, n4, n2, &S->PGT[l]));
            snprintf(fmt, sizeof fmt, "%sK1_%%d", pre);
            NG_TRY(reserve(a, fmt, l, n1, n1, &S->K1[l]));
            snprintf(fmt, sizeof fmt, "%sK2_%%d", pre);
            NG_TRY(reserve(a, fmt, l, n2, n2, &S->K2[l]));
            snprintf(fmt, sizeof fmt, "%ss1_%%d", pre);
            NG_TRY(reserve(a, fmt, l, n1, 1, &S->s1[l]));
            snprintf(fmt, sizeof fmt, "%ss2_%%d", pre);
            NG_TRY(reserve(a, fmt, l, n2, 1, &S->s2[l]));
        }
    }
    return NG_OK;
}

ng_status ng_precond_kfac_init(ng_backend *be, ng_model *m, const ng_kfac_config *cfg, ng_precond **out) {
    const ng_net_config *nc;
    ng_precond *p;
    kfac *k;
    ng_status s = NG_OK;
    int l, i, c, maxn = 1, nsets;
    size_t work;
    *out = NULL;
    NG_TRY(ng_kfac_config_check(cfg));
    if (!m || strcmp(m->iface->kind, "net") != 0)
        return ng_error(NG_ERR_INVALID_ARG, "K-FAC needs a network model (natgrad net), not %s", m ? m->iface->kind : "NULL");
    nc = ng_net_config_of(m);
    for (l = 0; l < nc->n_layers; l++)
        if (nc->bn[l])
            return ng_error(NG_ERR_UNSUPPORTED, "K-FAC: layer %d uses batch normalisation, which the K-FAC paper's "
                            "Kronecker factors do not cover: drop +bn from --layers", l + 1);
    p = (ng_precond *)calloc(1, sizeof *p);
    k = (kfac *)calloc(1, sizeof *k);
    if (!p || !k) {
        free(p);
        free(k);
        return ng_error(NG_ERR_OOM, "kfac: out of host memory");
    }
    p->iface = &kfac_iface;
    p->be = be;
    k->phi_tdev = UINT64_MAX;
    p->impl = k;
    k->dist = &p->dist;
    ng_arena_begin(&p->state, be, "kfac");
    ng_arena_begin(&k->scratch, be, "kfac scratch");
    k->cfg = *cfg;
    k->tri = cfg->approx == NG_KFAC_TRIDIAG;
    k->L = nc->n_layers;
    for (l = 0; l <= k->L; l++) {
        k->d[l] = nc->dims[l];
        if (k->d[l] + 1 > maxn) maxn = k->d[l] + 1;
    }
    k->maxn = maxn;
    k->ws.precision = k->aws.precision = cfg->precision;
    k->n = ng_model_size(m);
    /* the arena offset of each layer's W (net.c: parameters W1 b1 W2 b2 ...) */
    for (l = 1, i = 0; l <= k->L; l++) {
        const ng_tensor *W = ng_arena_view(&m->params, i);
        k->off[l] = (size_t)(W->data - m->param_flat.data);
        if (W->rows != k->d[l] || W->cols != k->d[l - 1]) {
            s = ng_error(NG_ERR_INVALID_ARG, "K-FAC: parameter %d is %d x %d, expected layer %d's W (%d x %d)", i, W->rows,
                         W->cols, l, k->d[l], k->d[l - 1]);
            break;
        }
        i += 2;
    }
    k->lambda = cfg->lambda0;
    k->gamma = cfg->gamma0 > 0.0 ? cfg->gamma0 : sqrt(cfg->lambda0 + cfg->eta);
    k->rho = NAN;
    nsets = cfg->adapt_gamma && cfg->phi_every == 0 ? NSETS : 1;
    k->nsets = nsets;
    for (l = 0; s == NG_OK && l < k->L; l++) s = reserve(&p->state, "A%d", l, na(k, l), na(k, l), &k->fac.A[l]);
    for (l = 1; s == NG_OK && l <= k->L; l++) s = reserve(&p->state, "G%d", l, k->d[l], k->d[l], &k->fac.G[l]);
    for (l = 1; s == NG_OK && k->tri && l < k->L; l++) {
        s = reserve(&p->state, "A%d_next", l, na(k, l - 1), na(k, l), &k->fac.AC[l]);
        if (s == NG_OK) s = reserve(&p->state, "G%d_next", l, k->d[l], k->d[l + 1], &k->fac.GC[l]);
    }
    if (s == NG_OK) s = reserve_set(k, &p->state, 0, &k->set[0]);
    if (s == NG_OK) s = ng_arena_reserve(&p->state, "delta0", (int)k->n, 1, &k->delta0);
    for (l = 1; s == NG_OK && cfg->phi_every > 0 && l <= k->L; l++) {
        s = reserve(&p->state, "phiA%d", l, na(k, l - 1), na(k, l - 1), &k->SA[l]);
        if (s == NG_OK) s = reserve(&p->state, "phiAinv%d", l, na(k, l - 1), na(k, l - 1), &k->SAi[l]);
        if (s == NG_OK) s = reserve(&p->state, "phiG%d", l, k->d[l], k->d[l], &k->SG[l]);
        if (s == NG_OK) s = reserve(&p->state, "phiGinv%d", l, k->d[l], k->d[l], &k->SGi[l]);
    }
    if (cfg->async_lag >= 0) {
        for (l = 0; s == NG_OK && l < k->L; l++) s = reserve(&p->state, "snap_A%d", l, na(k, l), na(k, l), &k->snap.A[l]);
        for (l = 1; s == NG_OK && l <= k->L; l++) s = reserve(&p->state, "snap_G%d", l, k->d[l], k->d[l], &k->snap.G[l]);
        for (l = 1; s == NG_OK && k->tri && l < k->L; l++) {
            s = reserve(&p->state, "snap_A%d_next", l, na(k, l - 1), na(k, l), &k->snap.AC[l]);
            if (s == NG_OK) s = reserve(&p->state, "snap_G%d_next", l, k->d[l], k->d[l + 1], &k->snap.GC[l]);
        }
    }
    if (s == NG_OK) s = ng_arena_commit(&p->state);
    for (c = 1; s == NG_OK && c < nsets; c++) s = reserve_set(k, &k->scratch, c, &k->set[c]);
    if (s == NG_OK && cfg->async_lag >= 0) {
        int dd[1];
        s = reserve_set(k, &k->scratch, NSETS, &k->set[NSETS]);
        if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "async_X", maxn, maxn, &k->aws.X);
        if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "async_T1", maxn, maxn, &k->aws.T1);
        if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "async_T2", maxn, maxn, &k->aws.T2);
        if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "async_T3", maxn, maxn, &k->aws.T3);
        if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "async_T4", maxn, maxn, &k->aws.T4);
        if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "async_w1", maxn, 1, &k->aws.w1);
        if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "async_w2", maxn, 1, &k->aws.w2);
        dd[0] = maxn * maxn;
        if (s == NG_OK) s = ng_arena_reserve_nd(&k->scratch, "async_Xd", NG_F64, 1, dd, &k->aws.Xd);
        dd[0] = maxn;
        if (s == NG_OK) s = ng_arena_reserve_nd(&k->scratch, "async_wd", NG_F64, 1, dd, &k->aws.wd);
        /* the worker's own backend on the same device: its own stream (CUDA) or calling thread (CPU) */
        if (s == NG_OK) s = ng_backend_init(be->kind, be->device_index, &k->abe, NULL, 0);
    }
    for (c = 0; s == NG_OK && c < nsets; c++) s = reserve(&k->scratch, "Delta%d", c, (int)k->n, 1, &k->Delta[c]);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "Y", (int)k->n, 1, &k->Y);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "Z", (int)k->n, 1, &k->Z);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "backup", (int)k->n, 1, &k->backup);
    work = (size_t)nc->dims[k->L] * (size_t)nc->chunk * (size_t)(NSETS + 2);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "work", (int)work, 1, &k->work);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "qdots", QDOTS, 1, &k->qdots);
    if (s == NG_OK) {
        int two[1] = {2};
        s = ng_arena_reserve_nd(&k->scratch, "stats_step", NG_F64, 1, two, &k->sstep);
    }
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "X", maxn, maxn, &k->ws.X);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "T1", maxn, maxn, &k->ws.T1);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "T2", maxn, maxn, &k->ws.T2);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "T3", maxn, maxn, &k->ws.T3);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "T4", maxn, maxn, &k->ws.T4);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "w1", maxn, 1, &k->ws.w1);
    if (s == NG_OK) s = ng_arena_reserve(&k->scratch, "w2", maxn, 1, &k->ws.w2);
    if (s == NG_OK) {
        /* float64 scratch of the factorisations */
        int dd[1];
        dd[0] = maxn * maxn;
        s = ng_arena_reserve_nd(&k->scratch, "Xd", NG_F64, 1, dd, &k->ws.Xd);
        dd[0] = maxn;
        if (s == NG_OK) s = ng_arena_reserve_nd(&k->scratch, "wd", NG_F64, 1, dd, &k->ws.wd);
    }
    if (s == NG_OK) s = ng_arena_commit(&k->scratch);
    if (s != NG_OK) {
        ng_precond_free(p);
        return s;
    }
    *out = p;
    return NG_OK;
}
