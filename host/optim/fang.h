/* fang.h: FANG (Grosse & Salakhutdinov 2015, Algorithm 1) as an RBM update rule. Internal to the
 * library: the RBM trainer (host/models/rbm.c) calls these hooks when optimizer == fang; tests and
 * the CLI's CSV log use the stages and the diagnostics.
 *
 * Notation: u = (v, h) are the unary statistics (n = nv + nh of them), m_ij = v_i h_j the pairwise
 * ones; pairwise matrices are (nh, nv) like the RBM's W (element (j, i)). The Fisher matrix is
 * approximated by the covariance G_fac of a Gaussian DAG: a full clique over u (covariance
 * Sigma_un) and, for every pair, m_ij = beta_v,ij v_i + beta_h,ij h_j + noise(sigma2_ij)
 * (eq. 10-12). Its precision G_fac^-1 = [[Lambda_un + B^T S^-1 B, -B^T S^-1], [-S^-1 B, S^-1]]
 * (B: the regression coefficients, S = diag(sigma2)) gives the direction r = G_fac^-1 grad as
 *   q = (dW - beta_v .* da[i] - beta_h .* db[j]) ./ sigma2               (r_W = q)
 *   r_a = [Lambda_un grad_un]_v - sum_j beta_v .* q,  r_b = [Lambda_un grad_un]_h - sum_i beta_h .* q.
 * Every statistic is estimated from the PCD particles by an exponential moving average (timescale
 * tau) and lambda I is added to every covariance. All state lives on the backend; a direction
 * allocates nothing. */
#ifndef NG_OPTIM_FANG_H
#define NG_OPTIM_FANG_H

#include "natgrad/rbm.h"

/* Diagnostics of the last refit (and totals), for logs. */
typedef struct ng_fang_diag {
    double cond;          /* (max_k L_kk / min_k L_kk)^2 of the Cholesky factor L of Sigma_un +
                           * damping I: a cheap lower bound on its condition number (0 before the
                           * first refit) */
    double min_sigma2;    /* smallest conditional variance sigma2_ij */
    double damping;       /* damping added to Sigma_un (lambda unless it had to be raised) */
    double refit_s;       /* wall-clock seconds spent in refits, summed */
    double refits;        /* number of refits */
    double float64_refits;/* refits whose Cholesky needed float64 */
    double damping_raises;/* total number of x10 damping increases */
    double floored;       /* pairs whose sigma2 sat at the floor lambda at the last refit */
} ng_fang_diag;
#define NG_FANG_DIAG_N 8 /* doubles in ng_fang_diag, stored as floats in the diag tensor */

struct ng_fang {
    int nv, nh, n, K;     /* n = nv + nh unary statistics, K particles */
    /* state (checkpointed, in this order) */
    ng_arena state;
    ng_tensor mom;        /* (2nv+2nh, 1) EMA of [E v.^2; E v; E h; E h.^2] */
    ng_tensor S_un;       /* (n, n) EMA of E[u u^T], lower triangle; its (h, v) block E[h v^T]
                           * is also every pairwise moment (binary statistics, see fang.c) */
    ng_tensor Lambda;     /* (n, n) (Sigma_un + damping I)^-1, both triangles */
    ng_tensor beta_v;     /* (nh, nv) regression weight of m_ij on v_i */
    ng_tensor beta_h;     /* (nh, nv) regression weight of m_ij on h_j */
    ng_tensor sigma2;     /* (nh, nv) conditional variance of m_ij */
    ng_tensor diag;       /* (NG_FANG_DIAG_N, 1) ng_fang_diag as floats */
    /* workspace */
    ng_arena work;
    ng_tensor hs;         /* (nh, K) hidden samples h ~ p(h | vm) */
    ng_tensor A;          /* (n, n) Sigma_un + damping I, then its factor / inverse */
    ng_tensor Ad;         /* (n, 2n) floats = (n, n) doubles: the float64 fallback */
    ng_tensor g_un;       /* (n, 1) [da; db] */
    ng_tensor r_un;       /* (n, 1) Lambda_un [da; db] */
    ng_tensor pv, ph;     /* (nh, nv) beta_v .* q, beta_h .* q */
    ng_tensor dvec;       /* (n, 1) diagonal of the Cholesky factor */
    float *host_sigma2;   /* (nh * nv) host copy for min sigma2 at refit time */
    float *host_dvec;     /* (n) */
};

/* Allocate FANG's state for the trainer's shapes (moving averages, factors, workspaces). */
ng_status ng_fang_init(ng_rbm_trainer *tr);
void ng_fang_free(ng_rbm_trainer *tr);
/* Algorithm 1 for one mini-batch: ng_fang_update_stats, then ng_fang_refit when
 * tr->t % fang_refit_every == 0 (so at the first update, and on a schedule that depends only on
 * tr->t), then ng_fang_apply: (dW, da, db) are replaced in place by the FANG direction r. */
ng_status ng_fang_direction(ng_rbm_trainer *tr);

/* The stages of ng_fang_direction (exposed for tests). */
/* Draw h ~ p(h | vm) from tr->hm (stream (seed, NG_RNG_FANG), step tr->t) and fold the particle
 * statistics into the moving averages (initialised to the batch values when tr->t == 0). */
ng_status ng_fang_update_stats(ng_rbm_trainer *tr);
/* Refit the graphical model: Lambda_un = (Sigma_un + lambda I)^-1 (float32 Cholesky, then
 * float64, then damping x10 up to 10^6 lambda; the previous Lambda_un is kept, with a warning,
 * when all fail after a successful refit, NG_ERR_NUMERIC at the first) and the regressions
 * beta_v, beta_h, sigma2 (eq. 11-12). */
ng_status ng_fang_refit(ng_rbm_trainer *tr);
/* Replace (dW, da, db) by r = G_fac^-1 (dW, da, db) for the current parameters. */
ng_status ng_fang_apply(ng_rbm_trainer *tr);

/* The state tensors a checkpoint must hold to resume FANG exactly (moving averages and the
 * fitted factors); writes up to max pointers and returns how many there are. */
int ng_fang_state_tensors(ng_rbm_trainer *tr, ng_tensor **out, int max);

/* Diagnostics of the trainer's FANG state (zeros when FANG is not in use). */
ng_status ng_fang_diagnostics(const ng_rbm_trainer *tr, ng_fang_diag *out);

#endif
