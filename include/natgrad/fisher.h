/* natgrad/fisher.h: exact Fisher-matrix tools for small binary RBMs, the references that FANG and
 * the other natural-gradient approximations are checked against.
 *
 * The sufficient statistics g = (v, h, vec(W-shaped v h^T)) and natural parameters
 * eta = (a, b, vec(W)) are ordered as
 *   index of a_i = i,  of b_j = nv + j,  of W_ji (pair (i, j)) = nv + nh + j + nh * i
 * (W is (nh, nv) column-major), D = nv + nh + nv * nh in all. Dense matrices are (D, D)
 * column-major float64 host arrays. Everything here is float64 host code: these are references,
 * not training paths. */
#ifndef NATGRAD_FISHER_H
#define NATGRAD_FISHER_H

#include "natgrad/rbm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* D = nv + nh + nv * nh */
static inline int ng_fisher_dim(int nv, int nh) { return nv + nh + nv * nh; }
static inline int ng_fisher_index_w(int nv, int nh, int i, int j) { return nv + nh + j + nh * i; }

/* Exact model moments mean = E[g] (D) and Fisher matrix G = Cov(g) (D, D) of the RBM, by
 * enumerating the hidden layer (FANG eq. 6-7): for each of the 2^nh hidden states, p(v | h)
 * factorises, so E[g | h] and Cov[g | h] are closed form (v_i ~ Bernoulli(sigmoid(a_i + W_:i^T h))
 * independently). The parameters are read from the device once; the sums run on the host in
 * float64 (two passes: the mean, then centred second moments). Either output may be NULL.
 * n_hidden <= 20. Cost O(2^nh D^2). */
ng_status ng_rbm_fisher_exact(ng_rbm *rbm, double *mean, double *G);

/* The same mean and G as ng_rbm_fisher_exact, with the O(2^nh D^2) part on the RBM's backend, for
 * the sizes where the host loop is too slow (FANG section 4.1: 196 x 20, D = 4136). Regrouped as
 *   G = Cov_h(E[g | h]) + E_h[Cov(g | h)]:
 * the first term is X diag(p) X^T over the 2^nh hidden states, X(:, h) = E[g | h] - E[g]. It is
 * built `chunk` states at a time on the host in float64 (centred, scaled by sqrt(p(h) / max p)),
 * rounded to float32, multiplied on the backend by one syrk per chunk, and each chunk's product is
 * added into G in float64 on the host, so float32 accumulation spans one chunk only. States with
 * p(h) < 1e-20 max p are left out of this term (together they weigh less than 1e-20 * 2^nh * max p,
 * and sparing float32 their subnormal products keeps the CPU's syrk fast). The second term is block-diagonal per visible unit i, the sum over h of
 * p(h) s_i(h) [1; h][1; h]^T over (v_i, m_i1 .. m_i,nh), and is summed in float64 on the host.
 * Cost: 2^nh D^2 flops on the backend (syrk), O(2^nh (nv nh + nv nh^2 / 8 + D)) on the host (OpenMP),
 * 2^nh D floats moved to the backend and 2^nh D^2 / chunk back. Device memory: D (D + chunk)
 * floats. chunk <= 0 picks 4096. Either output may be NULL. n_hidden <= 20. Agrees with
 * ng_rbm_fisher_exact to a few 1e-7 of max |G| (the float32 products); the mean is float64. */
ng_status ng_rbm_fisher_exact_backend(ng_rbm *rbm, int chunk, double *mean, double *G);

/* Exact gradient of the average log-likelihood of the binary columns of v_host (nv, n):
 * grad = (1/n) sum_c E[g | v_c] - E_model[g]  (D), with E[h | v] = sigmoid(W v + b).
 * n_hidden <= 20. */
ng_status ng_rbm_loglik_grad_exact(ng_rbm *rbm, const float *v_host, int n, double *grad);

/* Dense covariance G_fac (D, D) of FANG's Gaussian graphical model (eq. 10): the unary
 * statistics u = (v, h) have covariance Sigma_un (n, n), n = nv + nh, column-major, both
 * triangles; each m_ij = beta_v[j,i] v_i + beta_h[j,i] h_j + e_ij with independent
 * e_ij ~ N(0, sigma2[j,i]) (beta_v, beta_h, sigma2: (nh, nv) column-major). Then
 *   Cov(u) = Sigma_un, Cov(m, u) = B Sigma_un, Cov(m) = B Sigma_un B^T + diag(sigma2),
 * B the (nv nh, n) matrix of regression weights. The means (and the regression offsets) do not
 * enter a covariance. */
void ng_fang_gfac_dense(int nv, int nh, const double *sigma_un, const double *beta_v,
                        const double *beta_h, const double *sigma2, double *G);

#ifdef __cplusplus
}
#endif
#endif
