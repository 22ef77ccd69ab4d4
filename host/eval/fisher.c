/* fisher.c: exact Fisher matrices of small binary RBMs and the dense covariance of FANG's
 * graphical model, in float64 on the host (references for tests and analysis, never a training
 * path). Statistic order: a (nv), b (nh), W (nh, nv) column-major; see natgrad/fisher.h.
 * The hidden layer is enumerated (FANG eq. 6-7) and the visible layer summed out in closed form:
 * given h, v_i ~ Bernoulli(pi_i) independently with pi_i = sigmoid(a_i + sum_j W_ji h_j), so
 *   E[g | h] = (pi, h, pi_i h_j),
 *   Cov[g | h]: Var(v_i) = pi_i (1 - pi_i) =: s_i, Cov(v_i, m_ij) = s_i h_j,
 *               Cov(m_ij, m_il) = s_i h_j h_l, everything else 0 (h is fixed, v_i independent).
 * Parameters come from the device once (ng_rbm_get_params). ng_rbm_fisher_exact runs entirely on the
 * host; ng_rbm_fisher_exact_backend (for 196 x 20 and the like) hands its one O(2^nh D^2) product to
 * the backend's syrk, chunk by chunk, and keeps every sum across chunks in float64 on the host. */
#include "natgrad/fisher.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "natgrad/log.h"
#include "ng_math.h"

enum { FISHER_MAX_HIDDEN = 20 };


typedef struct host_params {
    int nv, nh;
    double *W, *a, *b; /* (nh, nv), (nv), (nh) */
} host_params;

static void params_free(host_params *p) {
    free(p->W);
    free(p->a);
    free(p->b);
}

static ng_status params_get(ng_rbm *rbm, host_params *p, const char *op) {
    int nv = rbm->n_visible, nh = rbm->n_hidden, k;
    size_t nw = (size_t)nv * nh;
    float *tmp;
    ng_status s;
    memset(p, 0, sizeof *p);
    if (nh > FISHER_MAX_HIDDEN)
        return ng_error(NG_ERR_INVALID_ARG, "%s: %d hidden units; at most %d are enumerated", op, nh,
                        FISHER_MAX_HIDDEN);
    p->nv = nv;
    p->nh = nh;
    p->W = (double *)malloc(nw * sizeof(double));
    p->a = (double *)malloc((size_t)nv * sizeof(double));
    p->b = (double *)malloc((size_t)nh * sizeof(double));
    tmp = (float *)malloc((nw + (size_t)nv + (size_t)nh) * sizeof(float));
    if (!p->W || !p->a || !p->b || !tmp) {
        free(tmp);
        params_free(p);
        return ng_error(NG_ERR_OOM, "%s: out of host memory", op);
    }
    s = ng_rbm_get_params(rbm, tmp, tmp + nw, tmp + nw + nv);
    for (k = 0; s == NG_OK && k < (int)nw; k++) p->W[k] = tmp[k];
    for (k = 0; s == NG_OK && k < nv; k++) p->a[k] = tmp[nw + k];
    for (k = 0; s == NG_OK && k < nh; k++) p->b[k] = tmp[nw + nv + k];
    free(tmp);
    if (s != NG_OK) params_free(p);
    return s;
}

/* pi (nv) for hidden state sh; returns log p*(h) = b^T h + sum_i softplus(a_i + W_:i^T h). */
static double hidden_state(const host_params *p, uint64_t sh, double *pi) {
    double lp = 0.0;
    int i, j;
    for (j = 0; j < p->nh; j++)
        if (sh >> j & 1) lp += p->b[j];
    for (i = 0; i < p->nv; i++) {
        double x = p->a[i];
        for (j = 0; j < p->nh; j++)
            if (sh >> j & 1) x += p->W[j + (size_t)i * p->nh];
        lp += ng_softplus_d(x);
        pi[i] = ng_sigmoid_d(x);
    }
    return lp;
}

/* x = E[g | h] */
static void cond_mean(const host_params *p, uint64_t sh, const double *pi, double *x) {
    int nv = p->nv, nh = p->nh, i, j;
    for (i = 0; i < nv; i++) x[i] = pi[i];
    for (j = 0; j < nh; j++) x[nv + j] = (double)(sh >> j & 1);
    for (i = 0; i < nv; i++)
        for (j = 0; j < nh; j++) x[ng_fisher_index_w(nv, nh, i, j)] = pi[i] * x[nv + j];
}

ng_status ng_rbm_fisher_exact(ng_rbm *rbm, double *mean, double *G) {
    host_params p;
    int nv, nh, D, i, j, l, r, c;
    uint64_t ns, sh;
    double *w = NULL, *pi = NULL, *x = NULL, *mu = NULL, mx = -INFINITY, z = 0.0;
    ng_status s;
    if (!rbm) return ng_error(NG_ERR_INVALID_ARG, "exact Fisher: NULL RBM");
    NG_TRY(params_get(rbm, &p, "exact Fisher"));
    nv = p.nv;
    nh = p.nh;
    D = ng_fisher_dim(nv, nh);
    ns = (uint64_t)1 << nh;
    w = (double *)malloc((size_t)ns * sizeof(double));
    pi = (double *)malloc((size_t)nv * sizeof(double));
    x = (double *)malloc((size_t)D * sizeof(double));
    mu = (double *)calloc((size_t)D, sizeof(double));
    if (!w || !pi || !x || !mu) {
        s = ng_error(NG_ERR_OOM, "exact Fisher: out of host memory (D = %d)", D);
        goto done;
    }
    /* p(h) for every hidden state, normalised with a log-sum-exp */
    for (sh = 0; sh < ns; sh++) {
        w[sh] = hidden_state(&p, sh, pi);
        if (w[sh] > mx) mx = w[sh];
    }
    for (sh = 0; sh < ns; sh++) z += (w[sh] = exp(w[sh] - mx));
    for (sh = 0; sh < ns; sh++) w[sh] /= z;
    /* pass 1: E[g] = sum_h p(h) E[g | h]  (eq. 6) */
    for (sh = 0; sh < ns; sh++) {
        hidden_state(&p, sh, pi);
        cond_mean(&p, sh, pi, x);
        for (r = 0; r < D; r++) mu[r] += w[sh] * x[r];
    }
    if (mean) memcpy(mean, mu, (size_t)D * sizeof(double));
    if (G) {
        /* pass 2: G = sum_h p(h) [(E[g|h] - mu)(E[g|h] - mu)^T + Cov[g | h]]  (eq. 7, centred) */
        memset(G, 0, (size_t)D * D * sizeof(double));
        for (sh = 0; sh < ns; sh++) {
            double ws = w[sh];
            if ((sh & 1023) == 0 && (s = ng_check_interrupt("exact Fisher")) != NG_OK) goto done;
            hidden_state(&p, sh, pi);
            cond_mean(&p, sh, pi, x);
            for (r = 0; r < D; r++) x[r] -= mu[r];
            for (c = 0; c < D; c++) {
                double xc = ws * x[c];
                double *Gc = G + (size_t)c * D;
                for (r = c; r < D; r++) Gc[r] += xc * x[r];
            }
            for (i = 0; i < nv; i++) {
                double si = ws * pi[i] * (1.0 - pi[i]);
                G[i + (size_t)i * D] += si;
                for (j = 0; j < nh; j++) {
                    int a = ng_fisher_index_w(nv, nh, i, j);
                    if (!(sh >> j & 1)) continue;
                    G[a + (size_t)i * D] += si; /* Cov(v_i, m_ij) = s_i h_j, lower triangle */
                    for (l = 0; l <= j; l++)
                        if (sh >> l & 1) G[a + (size_t)ng_fisher_index_w(nv, nh, i, l) * D] += si;
                }
            }
        }
        for (c = 0; c < D; c++)
            for (r = c + 1; r < D; r++) G[c + (size_t)r * D] = G[r + (size_t)c * D];
    }
    s = NG_OK;
done:
    free(w);
    free(pi);
    free(x);
    free(mu);
    params_free(&p);
    return s;
}

/* ---- the backend path (ng_rbm_fisher_exact_backend) ------------------------------------------ */

enum { FISHER_CHUNK_DEFAULT = 4096 };
#define FISHER_DROP_BELOW 1e-20 /* states with p(h) < this * max p leave the float32 term */

/* pre(:, c) = a + W^T h for the hidden states h = first + c, c < count  (=); pre is (nv, count),
 * Wt = W^T is (nv, nh). Summed in the order of hidden_state (a, then j ascending). */
static void states_pre(const host_params *p, const double *Wt, uint64_t first, int count,
                       double *pre) {
    int nv = p->nv, nh = p->nh, c;
#pragma omp parallel for schedule(static)
    for (c = 0; c < count; c++) {
        uint64_t sh = first + (uint64_t)c;
        double *x = pre + (size_t)c * nv;
        int i, j;
        for (i = 0; i < nv; i++) x[i] = p->a[i];
        for (j = 0; j < nh; j++)
            if (sh >> j & 1) {
                const double *wj = Wt + (size_t)j * nv;
                for (i = 0; i < nv; i++) x[i] += wj[i];
            }
    }
}

typedef struct fisher_work {
    int nv, nh, D, chunk;
    uint64_t ns;
    double *Wt;  /* (nv, nh) W^T */
    double *w;   /* (2^nh) p(h) */
    double *pre; /* (nv, chunk) pre-activations, then pi = sigmoid(pre) */
    double *T;   /* (nh + 1, nh + 1, nv) lower triangles of sum_h p(h) s_i(h) [1; h][1; h]^T */
    float *Xh;   /* (D, chunk) host staging of the centred, scaled conditional means */
    float *Ch;   /* (D, D) host copy of one chunk's syrk */
    float *Xd, *Cd; /* backend buffers of the same shapes */
} fisher_work;

static void fisher_work_free(ng_backend *be, fisher_work *fw) {
    free(fw->Wt);
    free(fw->w);
    free(fw->pre);
    free(fw->T);
    free(fw->Xh);
    free(fw->Ch);
    ng_free(be, fw->Xd);
    ng_free(be, fw->Cd);
}

/* pass 1: w = p(h) for every hidden state (normalised with a log-sum-exp); returns max p */
static double fisher_weights(const host_params *p, fisher_work *fw) {
    uint64_t first, sh;
    double mx = -INFINITY, z = 0.0;
    for (first = 0; first < fw->ns; first += (uint64_t)fw->chunk) {
        int count = (int)(fw->ns - first < (uint64_t)fw->chunk ? fw->ns - first : (uint64_t)fw->chunk);
        int c;
        states_pre(p, fw->Wt, first, count, fw->pre);
#pragma omp parallel for schedule(static)
        for (c = 0; c < count; c++) {
            uint64_t s = first + (uint64_t)c;
            const double *x = fw->pre + (size_t)c * fw->nv;
            double lp = 0.0;
            int i, j;
            for (j = 0; j < fw->nh; j++)
                if (s >> j & 1) lp += p->b[j];
            for (i = 0; i < fw->nv; i++) lp += ng_softplus_d(x[i]);
            fw->w[s] = lp;
        }
    }
    for (sh = 0; sh < fw->ns; sh++)
        if (fw->w[sh] > mx) mx = fw->w[sh];
    for (sh = 0; sh < fw->ns; sh++) z += (fw->w[sh] = exp(fw->w[sh] - mx));
    for (sh = 0; sh < fw->ns; sh++) fw->w[sh] /= z;
    return 1.0 / z;
}

/* pi = sigmoid(pre) of one chunk, in place */
static void chunk_pi(fisher_work *fw, uint64_t first, int count, const host_params *p) {
    size_t k, n = (size_t)fw->nv * count;
    states_pre(p, fw->Wt, first, count, fw->pre);
#pragma omp parallel for schedule(static)
    for (k = 0; k < n; k++) fw->pre[k] = ng_sigmoid_d(fw->pre[k]);
}

ng_status ng_rbm_fisher_exact_backend(ng_rbm *rbm, int chunk, double *mean, double *G) {
    host_params p;
    fisher_work fw;
    ng_backend *be;
    int nv, nh, D, n1, i, j;
    uint64_t first;
    double *mu = NULL, wmax;
    ng_status s = NG_OK;
    if (!rbm) return ng_error(NG_ERR_INVALID_ARG, "exact Fisher (backend): NULL RBM");
    NG_TRY(params_get(rbm, &p, "exact Fisher (backend)"));
    be = rbm->be;
    memset(&fw, 0, sizeof fw);
    nv = fw.nv = p.nv;
    nh = fw.nh = p.nh;
    D = fw.D = ng_fisher_dim(nv, nh);
    n1 = nh + 1;
    fw.ns = (uint64_t)1 << nh;
    fw.chunk = chunk > 0 ? chunk : FISHER_CHUNK_DEFAULT;
    if ((uint64_t)fw.chunk > fw.ns) fw.chunk = (int)fw.ns;
    fw.Wt = (double *)malloc((size_t)nv * nh * sizeof(double));
    fw.w = (double *)malloc((size_t)fw.ns * sizeof(double));
    fw.pre = (double *)malloc((size_t)nv * fw.chunk * sizeof(double));
    mu = (double *)calloc((size_t)D, sizeof(double));
    if (!fw.Wt || !fw.w || !fw.pre || !mu) {
        s = ng_error(NG_ERR_OOM, "exact Fisher (backend): out of host memory (D = %d)", D);
        goto done;
    }
    for (i = 0; i < nv; i++)
        for (j = 0; j < nh; j++) fw.Wt[i + (size_t)j * nv] = p.W[j + (size_t)i * nh];
    wmax = fisher_weights(&p, &fw);

    /* pass 2: E[g] = sum_h p(h) E[g | h]  (eq. 6) */
    for (first = 0; first < fw.ns; first += (uint64_t)fw.chunk) {
        int count = (int)(fw.ns - first < (uint64_t)fw.chunk ? fw.ns - first : (uint64_t)fw.chunk);
        int c;
        chunk_pi(&fw, first, count, &p);
#pragma omp parallel for schedule(static)
        for (i = 0; i < nv; i++) {
            double sv = 0.0;
            int cc, jj;
            for (cc = 0; cc < count; cc++) {
                uint64_t sh = first + (uint64_t)cc;
                double wpi = fw.w[sh] * fw.pre[i + (size_t)cc * nv];
                sv += wpi;
                for (jj = 0; jj < nh; jj++)
                    if (sh >> jj & 1) mu[ng_fisher_index_w(nv, nh, i, jj)] += wpi;
            }
            mu[i] += sv;
        }
        for (c = 0; c < count; c++)
            for (j = 0; j < nh; j++)
                if ((first + (uint64_t)c) >> j & 1) mu[nv + j] += fw.w[first + (uint64_t)c];
    }
    if (mean) memcpy(mean, mu, (size_t)D * sizeof(double));
    if (!G) goto done;

    /* pass 3: G = X diag(p) X^T (backend, per chunk) + E_h[Cov(g | h)] (host)  (eq. 7) */
    fw.T = (double *)calloc((size_t)n1 * n1 * nv, sizeof(double));
    fw.Xh = (float *)malloc((size_t)D * fw.chunk * sizeof(float));
    fw.Ch = (float *)malloc((size_t)D * D * sizeof(float));
    if (!fw.T || !fw.Xh || !fw.Ch) {
        s = ng_error(NG_ERR_OOM, "exact Fisher (backend): out of host memory (D = %d, chunk %d)", D,
                     fw.chunk);
        goto done;
    }
    s = ng_alloc(be, (size_t)D * fw.chunk * sizeof(float), (void **)&fw.Xd);
    if (s == NG_OK) s = ng_alloc(be, (size_t)D * D * sizeof(float), (void **)&fw.Cd);
    if (s != NG_OK) {
        s = ng_error_wrap(s, "exact Fisher (backend): D = %d, chunk %d: ", D, fw.chunk);
        goto done;
    }
    memset(G, 0, (size_t)D * D * sizeof(double));
    for (first = 0; first < fw.ns && s == NG_OK; first += (uint64_t)fw.chunk) {
        int count = (int)(fw.ns - first < (uint64_t)fw.chunk ? fw.ns - first : (uint64_t)fw.chunk);
        int c;
        chunk_pi(&fw, first, count, &p);
        /* X(:, c) = sqrt(p(h) / max p) (E[g | h] - E[g])  (=), rounded to float32 */
#pragma omp parallel for schedule(static)
        for (c = 0; c < count; c++) {
            uint64_t sh = first + (uint64_t)c;
            const double *pi = fw.pre + (size_t)c * nv;
            float *x = fw.Xh + (size_t)c * D;
            double r = fw.w[sh] / wmax, sw = r >= FISHER_DROP_BELOW ? sqrt(r) : 0.0;
            int ii, jj;
            for (ii = 0; ii < nv; ii++) x[ii] = (float)(sw * (pi[ii] - mu[ii]));
            for (jj = 0; jj < nh; jj++) x[nv + jj] = (float)(sw * ((double)(sh >> jj & 1) - mu[nv + jj]));
            for (ii = 0; ii < nv; ii++)
                for (jj = 0; jj < nh; jj++) {
                    int a = ng_fisher_index_w(nv, nh, ii, jj);
                    x[a] = (float)(sw * ((sh >> jj & 1) ? pi[ii] - mu[a] : -mu[a]));
                }
        }
        s = ng_check_interrupt("exact Fisher");
        if (s == NG_OK) s = ng_set(be, fw.Xd, fw.Xh, (size_t)D * count * sizeof(float));
        if (s == NG_OK) s = ng_syrk(be, 0, D, count, 1.0f, fw.Xd, D, 0.0f, fw.Cd, D);
        if (s == NG_OK) s = ng_get(be, fw.Ch, fw.Cd, (size_t)D * D * sizeof(float));
        if (s != NG_OK) break;
        /* G += max p * X X^T  (lower triangle, float64) */
#pragma omp parallel for schedule(dynamic, 16)
        for (c = 0; c < D; c++) {
            double *Gc = G + (size_t)c * D;
            const float *Cc = fw.Ch + (size_t)c * D;
            int r;
            for (r = c; r < D; r++) Gc[r] += wmax * (double)Cc[r];
        }
        /* T_i += sum_h p(h) s_i(h) [1; h][1; h]^T  (lower triangles, float64) */
#pragma omp parallel for schedule(static)
        for (i = 0; i < nv; i++) {
            double *Ti = fw.T + (size_t)i * n1 * n1;
            int cc, bits[FISHER_MAX_HIDDEN], nb, q, r;
            for (cc = 0; cc < count; cc++) {
                uint64_t sh = first + (uint64_t)cc;
                double pi = fw.pre[i + (size_t)cc * nv], wi = fw.w[sh] * pi * (1.0 - pi);
                for (nb = 0, q = 0; q < nh; q++)
                    if (sh >> q & 1) bits[nb++] = q + 1;
                Ti[0] += wi;
                for (q = 0; q < nb; q++) {
                    double *Tq = Ti + (size_t)bits[q] * n1;
                    Ti[bits[q]] += wi;
                    for (r = q; r < nb; r++) Tq[bits[r]] += wi;
                }
            }
        }
    }
    if (s != NG_OK) goto done;
    /* scatter T: Var(v_i), Cov(v_i, m_ij) = s_i h_j, Cov(m_ij, m_il) = s_i h_j h_l (lower) */
    for (i = 0; i < nv; i++) {
        const double *Ti = fw.T + (size_t)i * n1 * n1;
        int l;
        G[i + (size_t)i * D] += Ti[0];
        for (j = 0; j < nh; j++) {
            int a = ng_fisher_index_w(nv, nh, i, j);
            G[a + (size_t)i * D] += Ti[j + 1];
            for (l = j; l < nh; l++)
                G[ng_fisher_index_w(nv, nh, i, l) + (size_t)a * D] += Ti[(l + 1) + (size_t)(j + 1) * n1];
        }
    }
    for (i = 0; i < D; i++) {
        int r;
        for (r = i + 1; r < D; r++) G[i + (size_t)r * D] = G[r + (size_t)i * D];
    }
done:
    fisher_work_free(be, &fw);
    free(mu);
    params_free(&p);
    return s;
}

ng_status ng_rbm_loglik_grad_exact(ng_rbm *rbm, const float *v_host, int n, double *grad) {
    host_params p;
    int nv, nh, D, c, i, j;
    double *ph = NULL, *mu = NULL;
    ng_status s;
    if (!rbm || !v_host || !grad || n < 1)
        return ng_error(NG_ERR_INVALID_ARG, "exact log-likelihood gradient: bad arguments (n = %d)", n);
    nv = rbm->n_visible;
    nh = rbm->n_hidden;
    D = ng_fisher_dim(nv, nh);
    mu = (double *)malloc((size_t)D * sizeof(double));
    if (!mu) return ng_error(NG_ERR_OOM, "exact log-likelihood gradient: out of host memory");
    s = ng_rbm_fisher_exact(rbm, mu, NULL);
    if (s != NG_OK) {
        free(mu);
        return s;
    }
    s = params_get(rbm, &p, "exact log-likelihood gradient");
    if (s != NG_OK) {
        free(mu);
        return s;
    }
    ph = (double *)malloc((size_t)nh * sizeof(double));
    if (!ph) {
        s = ng_error(NG_ERR_OOM, "exact log-likelihood gradient: out of host memory");
        goto done;
    }
    memset(grad, 0, (size_t)D * sizeof(double));
    for (c = 0; c < n; c++) {
        const float *v = v_host + (size_t)c * nv;
        for (j = 0; j < nh; j++) {
            double x = p.b[j];
            for (i = 0; i < nv; i++) x += p.W[j + (size_t)i * nh] * (double)v[i];
            ph[j] = ng_sigmoid_d(x);
        }
        for (i = 0; i < nv; i++) grad[i] += v[i];
        for (j = 0; j < nh; j++) grad[nv + j] += ph[j];
        for (i = 0; i < nv; i++)
            for (j = 0; j < nh; j++) grad[ng_fisher_index_w(nv, nh, i, j)] += (double)v[i] * ph[j];
    }
    for (i = 0; i < D; i++) grad[i] = grad[i] / (double)n - mu[i];
    s = NG_OK;
done:
    free(ph);
    free(mu);
    params_free(&p);
    return s;
}

void ng_fang_gfac_dense(int nv, int nh, const double *sigma_un, const double *beta_v,
                        const double *beta_h, const double *sigma2, double *G) {
    int n = nv + nh, D = ng_fisher_dim(nv, nh), r, c, ip, jp, iq, jq, k;
#define SU(x, y) sigma_un[(x) + (size_t)(y) * n]
    for (c = 0; c < n; c++)
        for (r = 0; r < n; r++) G[r + (size_t)c * D] = SU(r, c);
    /* Cov(m_p, u_k) = beta_v,p Sigma[i_p, k] + beta_h,p Sigma[nv + j_p, k] */
    for (ip = 0; ip < nv; ip++)
        for (jp = 0; jp < nh; jp++) {
            int p = ng_fisher_index_w(nv, nh, ip, jp);
            size_t e = jp + (size_t)ip * nh;
            for (k = 0; k < n; k++) {
                double v = beta_v[e] * SU(ip, k) + beta_h[e] * SU(nv + jp, k);
                G[p + (size_t)k * D] = v;
                G[k + (size_t)p * D] = v;
            }
        }
    /* Cov(m_p, m_q) = b_p^T Sigma_{pa(p), pa(q)} b_q + delta_pq sigma2_p */
    for (ip = 0; ip < nv; ip++)
        for (jp = 0; jp < nh; jp++) {
            int p = ng_fisher_index_w(nv, nh, ip, jp);
            size_t ep = jp + (size_t)ip * nh;
            for (iq = 0; iq < nv; iq++)
                for (jq = 0; jq < nh; jq++) {
                    int q = ng_fisher_index_w(nv, nh, iq, jq);
                    size_t eq = jq + (size_t)iq * nh;
                    double v = beta_v[ep] * beta_v[eq] * SU(ip, iq) +
                               beta_v[ep] * beta_h[eq] * SU(ip, nv + jq) +
                               beta_h[ep] * beta_v[eq] * SU(nv + jp, iq) +
                               beta_h[ep] * beta_h[eq] * SU(nv + jp, nv + jq);
                    if (p == q) v += sigma2[ep];
                    G[p + (size_t)q * D] = v;
                }
        }
#undef SU
}
