/* ais.c: annealed importance sampling estimate of an RBM's log Z (Salakhutdinov & Murray 2008,
 * "On the quantitative analysis of deep belief networks": the AIS run and its tempered RBMs
 * p*_k, annealed here from the base-rate model A: W_A = 0, b_A = 0, visible biases a_base), the
 * base-rate biases, and the average log-likelihood of a data set given log Z.
 * Shapes: W (n_hidden, n_visible); chains are columns: V (n_visible, M), pre-activations
 * W V (n_hidden, M). All per-step work runs on the RBM's backend through the checked wrappers;
 * the host sees only M log-weights every FLUSH_EVERY steps. Evaluation code: it allocates its
 * workspace per call. Must not call BLAS directly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/anneal.h"
#include "natgrad/eval.h"
#include "natgrad/log.h"
#include "natgrad/rng.h"

enum {
    /* Steps between transfers of the float32 device log-weights to the float64 host sum. Over
     * FLUSH_EVERY steps a chain's log-weight moves by O(FLUSH_EVERY / n_betas) of log Z - log Z_A,
     * so the float32 running sum keeps its rounding error at that scale, not at that of log Z. */
    FLUSH_EVERY = 100
};

void ng_ais_config_default(ng_ais_config *cfg) {
    cfg->n_betas = 10000; /* linear schedule; FANG used 50,000 linearly spaced betas */
    cfg->n_chains = 100;  /* S&M 2008 used 100 runs */
    cfg->seed = 1;
}

/* Base-rate model of S&M 2008: p_i = (sum_n x_in + 1) / (n + 2), i.e. the pixel
 * means with Laplace (add-one) smoothing, so p lies in [1/(n+2), (n+1)/(n+2)] and no bias is
 * infinite; a_base_i = log(p_i / (1 - p_i)). */
void ng_rbm_base_rate_bias(const float *x_host, int n_visible, int n, float *a_base) {
    int i, c;
    for (i = 0; i < n_visible; i++) {
        double sum = 0.0, p;
        for (c = 0; c < n; c++) sum += (double)x_host[i + (size_t)c * n_visible];
        p = (sum + 1.0) / ((double)n + 2.0);
        a_base[i] = (float)log(p / (1.0 - p));
    }
}

/* log Z and the 3-sigma interval of mean(w) from M log-weights, relative to the largest one so
 * that exp never overflows. std is the sample standard deviation (M - 1). */
static void ais_combine(const double *lw, int M, double log_z_base, ng_ais_result *out) {
    double mx = -INFINITY, sum = 0.0, sum2 = 0.0, mean, var = 0.0, half;
    int c;
    for (c = 0; c < M; c++)
        if (lw[c] > mx) mx = lw[c];
    for (c = 0; c < M; c++) {
        double r = exp(lw[c] - mx);
        sum += r;
        sum2 += r * r;
    }
    mean = sum / M;
    for (c = 0; M > 1 && c < M; c++) {
        double d = exp(lw[c] - mx) - mean;
        var += d * d;
    }
    if (M > 1) var /= (double)(M - 1);
    half = 3.0 * sqrt(var) / sqrt((double)M);
    out->log_z_base = log_z_base;
    out->log_z = log_z_base + mx + log(mean);
    out->log_z_hi = log_z_base + mx + log(mean + half);
    out->log_z_lo = mean - half > 0.0 ? log_z_base + mx + log(mean - half) : -INFINITY;
    out->ess = sum * sum / sum2;
}

ng_status ng_rbm_ais(ng_rbm *rbm, const float *a_base, const ng_ais_config *cfg,
                     ng_ais_result *out) {
    ng_backend *be;
    int nv, nh, M, K, k, i;
    uint64_t key, step = 0;
    ng_anneal an;
    float *lw_host = NULL;
    double *lw_acc = NULL, dbeta;
    ng_status s = NG_OK;

    if (!rbm || !a_base || !cfg || !out) return ng_error(NG_ERR_INVALID_ARG, "AIS: NULL argument");
    if (cfg->n_betas < 1)
        return ng_error(NG_ERR_INVALID_ARG, "AIS: n_betas %d: must be >= 1", cfg->n_betas);
    if (cfg->n_chains < 1)
        return ng_error(NG_ERR_INVALID_ARG, "AIS: n_chains %d: must be >= 1", cfg->n_chains);
    be = rbm->be;
    nv = rbm->n_visible;
    nh = rbm->n_hidden;
    M = cfg->n_chains;
    K = cfg->n_betas;
    dbeta = 1.0 / (double)K;
    key = ng_rng_stream_key(cfg->seed, NG_RNG_AIS);
    NG_TRY(ng_anneal_init(rbm, a_base, M, "AIS", &an));

    ng_range_push_cat(NG_CAT_EVAL, "ais");
    lw_host = (float *)malloc((size_t)M * sizeof(float));
    lw_acc = (double *)calloc((size_t)M, sizeof(double));
    if (!lw_host || !lw_acc) s = ng_error(NG_ERR_OOM, "AIS: out of host memory");
    if (s == NG_OK) s = ng_fill(be, (size_t)M, 0.0f, an.lw.data);
    /* v_1 ~ p_A exactly: beta = 0 leaves sigmoid(a_base) (PV is zeroed so 0 * pre stays 0) */
    if (s == NG_OK) s = ng_fill(be, (size_t)nv * M, 0.0f, an.PV.data);
    if (s == NG_OK)
        s = ng_gibbs_sample(be, nv, M, an.PV.data, nv, NULL, 0.0f, an.ab.data, NULL, nv, an.V.data, nv, key,
                            step++);

    for (k = 1; s == NG_OK && k <= K; k++) {
        float beta = (float)((double)k * dbeta), beta_prev = (float)((double)(k - 1) * dbeta);
        /* log w += log p*_k(v) - log p*_{k-1}(v)   (S&M 2008's AIS weight update)
         *        = dbeta (a - a_base)^T v + sum_j [softplus(b_k x_j) - softplus(b_{k-1} x_j)],
         * x = W v + b. PH = W v is reused by the hidden draw below. */
        s = ng_gemm(be, 0, 0, nh, M, nv, 1.0f, rbm->W.data, nh, an.V.data, nv, 0.0f, an.PH.data, nh);
        if (s == NG_OK)
            s = ng_softplus_sum(be, nh, M, an.PH.data, nh, rbm->b.data, beta, 1.0f, 1.0f, an.lw.data);
        if (s == NG_OK)
            s = ng_softplus_sum(be, nh, M, an.PH.data, nh, rbm->b.data, beta_prev, -1.0f, 1.0f, an.lw.data);
        if (s == NG_OK) s = ng_gemv(be, 1, nv, M, (float)dbeta, an.V.data, nv, an.d.data, 1.0f, an.lw.data);
        if (s == NG_OK && (k % FLUSH_EVERY == 0 || k == K)) {
            s = ng_get(be, lw_host, an.lw.data, (size_t)M * sizeof(float));
            for (i = 0; s == NG_OK && i < M; i++) lw_acc[i] += (double)lw_host[i];
            if (s == NG_OK) s = ng_fill(be, (size_t)M, 0.0f, an.lw.data);
            if (s == NG_OK) s = ng_check_interrupt("AIS");
        }
        if (k == K) break;
        /* One Gibbs sweep leaving p_k invariant:
         *   h ~ sigmoid(beta_k (W v + b)),  v ~ sigmoid(beta_k (W^T h + a) + (1 - beta_k) a_base) */
        if (s == NG_OK)
            s = ng_gibbs_sample(be, nh, M, an.PH.data, nh, rbm->b.data, beta, NULL, NULL, nh, an.H.data,
                                nh, key, step++);
        if (s == NG_OK)
            s = ng_gemm(be, 1, 0, nv, M, nh, 1.0f, rbm->W.data, nh, an.H.data, nh, 0.0f, an.PV.data, nv);
        if (s == NG_OK)
            s = ng_gibbs_sample(be, nv, M, an.PV.data, nv, rbm->a.data, beta, an.ab.data, NULL, nv,
                                an.V.data, nv, key, step++);
    }

    for (i = 0; s == NG_OK && i < M; i++)
        if (!isfinite(lw_acc[i]))
            s = ng_error(NG_ERR_NUMERIC,
                         "AIS: log importance weight of chain %d is %g (NaN/Inf in the RBM "
                         "parameters?)",
                         i, lw_acc[i]);
    if (s == NG_OK) ais_combine(lw_acc, M, an.log_z_base, out);
    ng_range_pop();

    free(lw_host);
    free(lw_acc);
    ng_anneal_free(&an);
    return s;
}

ng_status ng_rbm_mean_log_prob(ng_rbm *rbm, const float *v_host, int n, double log_z,
                               double *mean_log_prob) {
    double *F, sum = 0.0;
    int c;
    ng_status s;
    if (!rbm || !v_host || !mean_log_prob)
        return ng_error(NG_ERR_INVALID_ARG, "mean log-probability: NULL argument");
    if (n < 1) return ng_error(NG_ERR_INVALID_ARG, "mean log-probability: no examples (n = %d)", n);
    if (!isfinite(log_z))
        return ng_error(NG_ERR_INVALID_ARG, "mean log-probability: log Z is %g", log_z);
    F = (double *)malloc((size_t)n * sizeof(double));
    if (!F) return ng_error(NG_ERR_OOM, "mean log-probability: out of host memory");
    s = ng_rbm_free_energy(rbm, v_host, n, F);
    /* log p(v) = -F(v) - log Z */
    for (c = 0; s == NG_OK && c < n; c++) sum += -F[c] - log_z;
    if (s == NG_OK && !isfinite(sum))
        s = ng_error(NG_ERR_NUMERIC, "mean log-probability: non-finite free energy over %d examples",
                     n);
    if (s == NG_OK) *mean_log_prob = sum / (double)n;
    free(F);
    return s;
}
