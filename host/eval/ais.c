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
    memset(cfg, 0, sizeof *cfg);
    cfg->n_betas = 10000; /* linear schedule; FANG used 50,000 linearly spaced betas */
    cfg->n_chains = 20;   /* per run: 5 x 20 = the 100 chains of S&M 2008 (and of natgrad 0.1) */
    cfg->n_runs = 5;      /* pooled; their spread feeds the bootstrap interval */
    cfg->schedule = NG_AIS_LINEAR;
    cfg->n_boot = 2000;
    cfg->level = 0.95;    /* FANG's 95 % bootstrap interval */
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

ng_status ng_ais_betas(const ng_ais_config *cfg, double **betas, int *K) {
    double *b;
    int k, n;
    if (!cfg || !betas || !K) return ng_error(NG_ERR_INVALID_ARG, "AIS betas: NULL argument");
    if (cfg->schedule == NG_AIS_SM08) {
        n = 500 + 4000 + 10000;
    } else if (cfg->schedule == NG_AIS_LINEAR) {
        if (cfg->n_betas < 1)
            return ng_error(NG_ERR_INVALID_ARG, "AIS: n_betas %d: must be >= 1", cfg->n_betas);
        n = cfg->n_betas;
    } else {
        return ng_error(NG_ERR_INVALID_ARG, "AIS: unknown schedule %d", (int)cfg->schedule);
    }
    b = (double *)malloc((size_t)(n + 1) * sizeof(double));
    if (!b) return ng_error(NG_ERR_OOM, "AIS: out of host memory for %d betas", n + 1);
    for (k = 0; k <= n; k++) {
        if (cfg->schedule == NG_AIS_LINEAR) b[k] = (double)k / (double)n;
        else if (k <= 500) b[k] = 1e-3 * k;                  /* 0 .. 0.5 by 1e-3 */
        else if (k <= 4500) b[k] = 0.5 + 1e-4 * (k - 500);   /* .. 0.9 by 1e-4 */
        else b[k] = 0.9 + 1e-5 * (k - 4500);                 /* .. 1 by 1e-5 */
    }
    b[n] = 1.0;
    *betas = b;
    *K = n;
    return NG_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* log mean exp(lw) of n values, and their ESS (sum w)^2 / sum w^2 */
static double log_mean_exp(const double *lw, int n, double *ess) {
    double mx = -INFINITY, sum = 0.0, sum2 = 0.0;
    int c;
    for (c = 0; c < n; c++)
        if (lw[c] > mx) mx = lw[c];
    for (c = 0; c < n; c++) {
        double r = exp(lw[c] - mx);
        sum += r;
        sum2 += r * r;
    }
    if (ess) *ess = sum * sum / sum2;
    return mx + log(sum / n);
}

ng_status ng_ais_combine(const double *lw, int R, int M, double log_z_base, int n_boot, double level,
                         uint64_t seed, ng_ais_result *out) {
    double mx = -INFINITY, sum = 0.0, mean, var = 0.0, half, t, *rep, *w;
    int r, c, b, N;
    uint64_t key;
    if (!lw || !out) return ng_error(NG_ERR_INVALID_ARG, "AIS combine: NULL argument");
    if (R < 1 || R > NG_AIS_MAX_RUNS)
        return ng_error(NG_ERR_INVALID_ARG, "AIS: n_runs %d: must be in 1..%d", R, NG_AIS_MAX_RUNS);
    if (M < 1) return ng_error(NG_ERR_INVALID_ARG, "AIS: n_chains %d: must be >= 1", M);
    if (n_boot < 100) return ng_error(NG_ERR_INVALID_ARG, "AIS: n_boot %d: must be >= 100", n_boot);
    if (!(level > 0.0 && level < 1.0))
        return ng_error(NG_ERR_INVALID_ARG, "AIS: interval level %g: must lie in (0, 1)", level);
    N = R * M;
    for (c = 0; c < N; c++) {
        if (!isfinite(lw[c]))
            return ng_error(NG_ERR_NUMERIC,
                            "AIS: log importance weight of chain %d of run %d is %g (NaN/Inf in the "
                            "RBM parameters?)",
                            c % M, c / M, lw[c]);
        if (lw[c] > mx) mx = lw[c];
    }
    w = (double *)malloc((size_t)N * sizeof(double));
    rep = (double *)malloc((size_t)n_boot * sizeof(double));
    if (!w || !rep) {
        free(w);
        free(rep);
        return ng_error(NG_ERR_OOM, "AIS: out of host memory for the bootstrap");
    }
    for (c = 0; c < N; c++) sum += (w[c] = exp(lw[c] - mx)); /* weights relative to the largest */
    mean = sum / N;
    for (c = 0; N > 1 && c < N; c++) var += (w[c] - mean) * (w[c] - mean);
    if (N > 1) var /= (double)(N - 1);
    half = 3.0 * sqrt(var) / sqrt((double)N);
    memset(out, 0, sizeof *out);
    out->n_runs = R;
    out->n_chains = M;
    out->level = level;
    out->log_z_base = log_z_base;
    t = mx + log(mean);
    out->log_z = log_z_base + t;
    out->sigma3_hi = log_z_base + mx + log(mean + half);
    out->sigma3_lo = mean - half > 0.0 ? log_z_base + mx + log(mean - half) : -INFINITY;
    log_mean_exp(lw, N, &out->ess);
    out->min_run_ess = INFINITY;
    for (r = 0; r < R; r++) {
        out->run_log_z[r] = log_z_base + log_mean_exp(lw + (size_t)r * M, M, &out->run_ess[r]);
        if (out->run_ess[r] < out->min_run_ess) out->min_run_ess = out->run_ess[r];
    }
    if (R > 1) {
        double m = 0.0, v = 0.0;
        for (r = 0; r < R; r++) m += out->run_log_z[r] / R;
        for (r = 0; r < R; r++) v += (out->run_log_z[r] - m) * (out->run_log_z[r] - m);
        out->run_sd = sqrt(v / (R - 1));
    }
    /* two-stage bootstrap: R runs drawn with replacement, then M chains from each drawn run;
     * the streams are those of AIS (NG_RNG_AIS) at step numbers no AIS run reaches */
    key = ng_rng_stream_key(seed, NG_RNG_AIS);
    for (b = 0; b < n_boot; b++) {
        uint64_t step = UINT64_MAX - (uint64_t)b, i = 0;
        double s = 0.0;
        for (r = 0; r < R; r++) {
            int rr = (int)(ng_rng_uniform(key, step, i++) * R);
            if (rr >= R) rr = R - 1;
            for (c = 0; c < M; c++) {
                int cc = (int)(ng_rng_uniform(key, step, i++) * M);
                if (cc >= M) cc = M - 1;
                s += w[(size_t)rr * M + cc];
            }
        }
        rep[b] = s > 0.0 ? mx + log(s / N) : -INFINITY;
    }
    qsort(rep, (size_t)n_boot, sizeof(double), cmp_double);
    {
        double a = 0.5 * (1.0 - level), pos_lo = a * (n_boot - 1), pos_hi = (1.0 - a) * (n_boot - 1);
        int il = (int)floor(pos_lo), ih = (int)ceil(pos_hi);
        double q_lo = rep[il], q_hi = rep[ih < n_boot ? ih : n_boot - 1];
        /* basic bootstrap interval, reflected about the estimate t */
        out->log_z_lo = log_z_base + 2.0 * t - q_hi;
        out->log_z_hi = isfinite(q_lo) ? log_z_base + 2.0 * t - q_lo : INFINITY;
    }
    free(w);
    free(rep);
    return NG_OK;
}

ng_status ng_rbm_ais(ng_rbm *rbm, const float *a_base, const ng_ais_config *cfg,
                     ng_ais_result *out) {
    ng_backend *be;
    int nv, nh, M, R, N, K, k, i;
    uint64_t key, step = 0;
    ng_anneal an;
    float *lw_host = NULL;
    double *lw_acc = NULL, *betas = NULL;
    ng_status s = NG_OK;

    if (!rbm || !a_base || !cfg || !out) return ng_error(NG_ERR_INVALID_ARG, "AIS: NULL argument");
    if (cfg->n_chains < 1)
        return ng_error(NG_ERR_INVALID_ARG, "AIS: n_chains %d: must be >= 1", cfg->n_chains);
    if (cfg->n_runs < 1 || cfg->n_runs > NG_AIS_MAX_RUNS)
        return ng_error(NG_ERR_INVALID_ARG, "AIS: n_runs %d: must be in 1..%d", cfg->n_runs, NG_AIS_MAX_RUNS);
    if (cfg->n_boot < 100) return ng_error(NG_ERR_INVALID_ARG, "AIS: n_boot %d: must be >= 100", cfg->n_boot);
    if (!(cfg->level > 0.0 && cfg->level < 1.0))
        return ng_error(NG_ERR_INVALID_ARG, "AIS: interval level %g: must lie in (0, 1)", cfg->level);
    if ((int64_t)cfg->n_chains * cfg->n_runs > (1 << 24))
        return ng_error(NG_ERR_INVALID_ARG, "AIS: %d runs x %d chains: more than 2^24 chains", cfg->n_runs,
                        cfg->n_chains);
    NG_TRY(ng_ais_betas(cfg, &betas, &K));
    be = rbm->be;
    nv = rbm->n_visible;
    nh = rbm->n_hidden;
    M = cfg->n_chains;
    R = cfg->n_runs;
    N = M * R; /* run r is columns r*M .. r*M + M - 1; every chain is independent of the others */
    key = ng_rng_stream_key(cfg->seed, NG_RNG_AIS);
    s = ng_anneal_init(rbm, a_base, N, "AIS", &an);
    if (s != NG_OK) {
        free(betas);
        return s;
    }

    ng_range_push_cat(NG_CAT_EVAL, "ais");
    lw_host = (float *)malloc((size_t)N * sizeof(float));
    lw_acc = (double *)calloc((size_t)N, sizeof(double));
    if (!lw_host || !lw_acc) s = ng_error(NG_ERR_OOM, "AIS: out of host memory");
    if (s == NG_OK) s = ng_fill(be, (size_t)N, 0.0f, an.lw.data);
    /* v_1 ~ p_A exactly: beta = 0 leaves sigmoid(a_base) (PV is zeroed so 0 * pre stays 0) */
    if (s == NG_OK) s = ng_fill(be, (size_t)nv * N, 0.0f, an.PV.data);
    if (s == NG_OK)
        s = ng_gibbs_sample(be, nv, N, an.PV.data, nv, NULL, 0.0f, an.ab.data, NULL, nv, an.V.data, nv, key,
                            step++);

    for (k = 1; s == NG_OK && k <= K; k++) {
        float beta = (float)betas[k], beta_prev = (float)betas[k - 1];
        double dbeta = betas[k] - betas[k - 1];
        /* log w += log p*_k(v) - log p*_{k-1}(v)   (S&M 2008's AIS weight update)
         *        = dbeta (a - a_base)^T v + sum_j [softplus(b_k x_j) - softplus(b_{k-1} x_j)],
         * x = W v + b. PH = W v is reused by the hidden draw below. */
        s = ng_gemm(be, 0, 0, nh, N, nv, 1.0f, rbm->W.data, nh, an.V.data, nv, 0.0f, an.PH.data, nh);
        if (s == NG_OK)
            s = ng_softplus_sum(be, nh, N, an.PH.data, nh, rbm->b.data, beta, 1.0f, 1.0f, an.lw.data);
        if (s == NG_OK)
            s = ng_softplus_sum(be, nh, N, an.PH.data, nh, rbm->b.data, beta_prev, -1.0f, 1.0f, an.lw.data);
        if (s == NG_OK) s = ng_gemv(be, 1, nv, N, (float)dbeta, an.V.data, nv, an.d.data, 1.0f, an.lw.data);
        if (s == NG_OK && (k % FLUSH_EVERY == 0 || k == K)) {
            s = ng_get(be, lw_host, an.lw.data, (size_t)N * sizeof(float));
            for (i = 0; s == NG_OK && i < N; i++) lw_acc[i] += (double)lw_host[i];
            if (s == NG_OK) s = ng_fill(be, (size_t)N, 0.0f, an.lw.data);
            if (s == NG_OK) s = ng_check_interrupt("AIS");
            if (s == NG_OK && cfg->progress) cfg->progress(cfg->progress_user, "AIS", k, K);
        }
        if (k == K) break;
        /* One Gibbs sweep leaving p_k invariant:
         *   h ~ sigmoid(beta_k (W v + b)),  v ~ sigmoid(beta_k (W^T h + a) + (1 - beta_k) a_base) */
        if (s == NG_OK)
            s = ng_gibbs_sample(be, nh, N, an.PH.data, nh, rbm->b.data, beta, NULL, NULL, nh, an.H.data,
                                nh, key, step++);
        if (s == NG_OK)
            s = ng_gemm(be, 1, 0, nv, N, nh, 1.0f, rbm->W.data, nh, an.H.data, nh, 0.0f, an.PV.data, nv);
        if (s == NG_OK)
            s = ng_gibbs_sample(be, nv, N, an.PV.data, nv, rbm->a.data, beta, an.ab.data, NULL, nv,
                                an.V.data, nv, key, step++);
    }

    if (s == NG_OK) s = ng_ais_combine(lw_acc, R, M, an.log_z_base, cfg->n_boot, cfg->level, cfg->seed, out);
    if (s == NG_OK) out->n_betas = K;
    ng_range_pop();

    free(lw_host);
    free(lw_acc);
    free(betas);
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
