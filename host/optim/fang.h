/* fang.h (internal): the state of the FANG preconditioner (natgrad/fang.h), exposed to tests.
 *
 * Notation: u = (v, h) are the unary statistics (n = nv + nh of them), m_ij = v_i h_j the pairwise
 * ones; pairwise matrices are (nh, nv) like the RBM's W (element (j, i)). The Fisher matrix is
 * approximated by the covariance G_fac of a Gaussian DAG: a full clique over u (covariance
 * Sigma_un) and, for every pair, m_ij = beta_v,ij v_i + beta_h,ij h_j + noise(sigma2_ij)
 * (eq. 10-12). Its precision G_fac^-1 = [[Lambda_un + B^T S^-1 B, -B^T S^-1], [-S^-1 B, S^-1]]
 * (B: the regression coefficients, S = diag(sigma2)) gives the direction r = G_fac^-1 grad as
 *   q = (gW - beta_v .* ga[i] - beta_h .* gb[j]) ./ sigma2               (r_W = q)
 *   r_a = [Lambda_un g_un]_v - sum_j beta_v .* q,  r_b = [Lambda_un g_un]_h - sum_i beta_h .* q.
 * The map is linear, so it serves the gradient of the negative log-likelihood as well as the
 * ascent direction of the paper. Every statistic is estimated from the PCD particles by an
 * exponential moving average (timescale tau) and lambda I is added to every covariance. All state
 * lives on the backend; a direction allocates nothing. */
#ifndef NG_OPTIM_FANG_H
#define NG_OPTIM_FANG_H

#include "natgrad/fang.h"
#include "natgrad/model.h"

struct ng_fang {
    ng_fang_config cfg;
    int nv, nh, n, K;     /* n = nv + nh unary statistics, K particles (several ranks: this rank's) */
    long long K_all, k0;  /* several ranks: the particles of all ranks, the global index of this
                           * rank's first (learnt at the first observe; K_all = 0 before) */
    ng_tensor W, gW, ga, gb; /* the model's parameter / gradient views */
    /* state (p->state, checkpointed as fang.<name>) */
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
    ng_tensor Ad;         /* (n, n) float64: the fallback factorisation */
    ng_tensor g_un;       /* (n, 1) [ga; gb] */
    ng_tensor r_un;       /* (n, 1) Lambda_un [ga; gb] */
    ng_tensor pv, ph;     /* (nh, nv) beta_v .* q, beta_h .* q */
    ng_tensor dvec;       /* (n, 1) diagonal of the Cholesky factor; regularised: eigenvalues */
    ng_tensor mb;         /* (2nv+2nh, 1) several ranks: this mini-batch's [E v; E h] (all-reduced) */
    ng_tensor B, wd;      /* regularised inverse only: (n, n) E diag(l / (l^2 + lambda^2)), (n) float64 */
    ng_tensor step_dev;   /* (2) 64-bit words in a float64 tensor: [0] the Philox step of the hidden
                           * samples counted on the device (update t draws at step t, so a captured
                           * CUDA graph replays with new draws), [1] the kernel's block ticket */
    uint64_t t_dev;       /* host mirror of step_dev[0] (UINT64_MAX: unknown, set before the next draw) */
    float *host_sigma2;   /* (nh * nv) host copy for min sigma2 at refit time */
    float *host_dvec;     /* (n) */
};

/* The FANG state behind a preconditioner, or NULL when p is not FANG. */
struct ng_fang *ng_fang_of(ng_precond *p);

#endif
