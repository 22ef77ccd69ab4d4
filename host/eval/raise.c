/* raise.c: RAISE, the reverse AIS estimator of log p(v) (Burda, Grosse & Salakhutdinov 2015).
 * Path and transitions are those of ais.c: unnormalised tempered marginals
 *   log f_k(v) = a_base^T v + beta_k (a - a_base)^T v + sum_j softplus(beta_k (W_j v + b_j)),
 * with T_k the Gibbs sweep v -> h -> v at beta_k, reversible with respect to f_k. Starting at
 * v_K = v and drawing v_{k-1} ~ T_k(. | v_k) for k = K..1, detailed balance turns the importance
 * weight of the forward chain into
 *   log p_hat(v) = log f_K(v_K) + sum_{k=1..K} [log f_{k-1}(v_{k-1}) - log f_k(v_{k-1})] - log Z_0,
 * whose expectation (in p_hat) is the forward AIS model's p_fwd(v). Chains are columns
 * (example e, chain r) -> column e * chains + r, processed in blocks. Shapes: W (n_hidden,
 * n_visible). Evaluation code: allocates its workspace per call; no BLAS outside the wrappers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/anneal.h"
#include "natgrad/eval.h"
#include "natgrad/log.h"
#include "natgrad/rng.h"

enum { RAISE_FLUSH = 100, RAISE_BLOCK = 2000 };

ng_status ng_rbm_raise(ng_rbm *rbm, const float *a_base, const float *v_host, int n,
                       const ng_ais_config *cfg, ng_raise_result *out, double *per_example) {
    ng_backend *be;
    int nv, nh, R, K, e_per_block, e0, i;
    uint64_t key, step = 0;
    ng_anneal an;
    float *lw_host = NULL, *stage = NULL;
    double *acc = NULL, *est = NULL, *betas = NULL, sum = 0.0, sum2 = 0.0;
    int64_t done = 0, total;
    ng_status s = NG_OK;
    size_t j;
    if (!rbm || !a_base || !v_host || !cfg || !out)
        return ng_error(NG_ERR_INVALID_ARG, "RAISE: NULL argument");
    if (n < 1 || cfg->n_betas < 1 || cfg->n_chains < 1)
        return ng_error(NG_ERR_INVALID_ARG, "RAISE: need n >= 1, n_betas >= 1, n_chains >= 1 (got %d, %d, %d)",
                        n, cfg->n_betas, cfg->n_chains);
    be = rbm->be;
    nv = rbm->n_visible;
    nh = rbm->n_hidden;
    R = cfg->n_chains;
    for (j = 0; j < (size_t)nv * n; j++)
        if (v_host[j] != 0.0f && v_host[j] != 1.0f)
            return ng_error(NG_ERR_INVALID_ARG, "RAISE: example %zu, pixel %zu is %g; RAISE needs binary data",
                            j / nv, j % nv, (double)v_host[j]);
    e_per_block = RAISE_BLOCK / R > 0 ? RAISE_BLOCK / R : 1;
    if (e_per_block > n) e_per_block = n;
    NG_TRY(ng_ais_betas(cfg, &betas, &K));
    total = (int64_t)K * ((n + e_per_block - 1) / e_per_block);
    s = ng_anneal_init(rbm, a_base, e_per_block * R, "RAISE", &an);
    if (s != NG_OK) {
        free(betas);
        return s;
    }
    lw_host = (float *)malloc((size_t)e_per_block * R * sizeof(float));
    stage = (float *)malloc((size_t)nv * e_per_block * R * sizeof(float));
    acc = (double *)malloc((size_t)e_per_block * R * sizeof(double));
    est = (double *)malloc((size_t)n * sizeof(double));
    if (!lw_host || !stage || !acc || !est) s = ng_error(NG_ERR_OOM, "RAISE: out of host memory");
    key = ng_rng_stream_key(cfg->seed, NG_RNG_RAISE);
    ng_range_push_cat(NG_CAT_EVAL, "raise");
    for (e0 = 0; s == NG_OK && e0 < n; e0 += e_per_block) {
        int ne = n - e0 < e_per_block ? n - e0 : e_per_block, B = ne * R, e, r, k, c;
        /* v_K = the example, replicated over its chains */
        for (e = 0; e < ne; e++)
            for (r = 0; r < R; r++)
                memcpy(stage + (size_t)(e * R + r) * nv, v_host + (size_t)(e0 + e) * nv, (size_t)nv * sizeof(float));
        s = ng_set(be, an.V.data, stage, (size_t)nv * B * sizeof(float));
        for (c = 0; c < B; c++) acc[c] = 0.0;
        /* log f_K(v_K) = a^T v + sum_j softplus(W_j v + b_j), flushed at once (it is large) */
        if (s == NG_OK) s = ng_gemm(be, 0, 0, nh, B, nv, 1.0f, rbm->W.data, nh, an.V.data, nv, 0.0f, an.PH.data, nh);
        if (s == NG_OK) s = ng_softplus_sum(be, nh, B, an.PH.data, nh, rbm->b.data, 1.0f, 1.0f, 0.0f, an.lw.data);
        if (s == NG_OK) s = ng_gemv(be, 1, nv, B, 1.0f, an.V.data, nv, rbm->a.data, 1.0f, an.lw.data);
        if (s == NG_OK) s = ng_get(be, lw_host, an.lw.data, (size_t)B * sizeof(float));
        for (c = 0; s == NG_OK && c < B; c++) acc[c] = (double)lw_host[c];
        if (s == NG_OK) s = ng_fill(be, (size_t)B, 0.0f, an.lw.data);
        for (k = K; s == NG_OK && k >= 1; k--) {
            float beta = (float)betas[k], beta_prev = (float)betas[k - 1];
            /* v_{k-1} ~ T_k(. | v_k): h ~ sigmoid(beta (W v + b)), v ~ sigmoid(beta (W^T h + a) + (1 - beta) a_base) */
            s = ng_gibbs_sample(be, nh, B, an.PH.data, nh, rbm->b.data, beta, NULL, NULL, nh, an.H.data, nh, key, step++);
            if (s == NG_OK) s = ng_gemm(be, 1, 0, nv, B, nh, 1.0f, rbm->W.data, nh, an.H.data, nh, 0.0f, an.PV.data, nv);
            if (s == NG_OK)
                s = ng_gibbs_sample(be, nv, B, an.PV.data, nv, rbm->a.data, beta, an.ab.data, NULL, nv, an.V.data, nv, key, step++);
            if (s == NG_OK) s = ng_gemm(be, 0, 0, nh, B, nv, 1.0f, rbm->W.data, nh, an.V.data, nv, 0.0f, an.PH.data, nh);
            /* += log f_{k-1}(v_{k-1}) - log f_k(v_{k-1}) */
            if (s == NG_OK) s = ng_softplus_sum(be, nh, B, an.PH.data, nh, rbm->b.data, beta_prev, 1.0f, 1.0f, an.lw.data);
            if (s == NG_OK) s = ng_softplus_sum(be, nh, B, an.PH.data, nh, rbm->b.data, beta, -1.0f, 1.0f, an.lw.data);
            if (s == NG_OK)
                s = ng_gemv(be, 1, nv, B, (float)(betas[k - 1] - betas[k]), an.V.data, nv, an.d.data, 1.0f, an.lw.data);
            if (s == NG_OK && (k % RAISE_FLUSH == 0 || k == 1)) {
                s = ng_get(be, lw_host, an.lw.data, (size_t)B * sizeof(float));
                for (c = 0; s == NG_OK && c < B; c++) acc[c] += (double)lw_host[c];
                if (s == NG_OK) s = ng_fill(be, (size_t)B, 0.0f, an.lw.data);
                if (s == NG_OK) s = ng_check_interrupt("RAISE");
            }
            if (s == NG_OK && cfg->progress && ++done % RAISE_FLUSH == 0) cfg->progress(cfg->progress_user, "RAISE", done, total);
        }
        /* the k = 1 term holds all of log f_0(v_0) = a_base^T v_0 + n_h log 2 (its linear part
         * through the difference with log f_1, its softplus part as softplus(0) = log 2); the
         * final flush above has moved everything into acc, so only - log Z_0 remains */
        for (e = 0; s == NG_OK && e < ne; e++) {
            double mx = -INFINITY, m = 0.0;
            for (r = 0; r < R; r++) {
                c = e * R + r;
                acc[c] -= an.log_z_base;
                if (acc[c] > mx) mx = acc[c];
            }
            for (r = 0; r < R; r++) m += exp(acc[e * R + r] - mx);
            est[e0 + e] = mx + log(m / R);
            if (!isfinite(est[e0 + e]))
                s = ng_error(NG_ERR_NUMERIC, "RAISE: estimate for example %d is %g", e0 + e, est[e0 + e]);
        }
    }
    ng_range_pop();
    if (s == NG_OK) {
        for (i = 0; i < n; i++) sum += est[i];
        out->mean_log_prob = sum / n;
        for (i = 0; i < n; i++) sum2 += (est[i] - out->mean_log_prob) * (est[i] - out->mean_log_prob);
        out->std_error = n > 1 ? sqrt(sum2 / (n - 1) / n) : 0.0;
        out->lo = out->mean_log_prob - 3.0 * out->std_error;
        out->hi = out->mean_log_prob + 3.0 * out->std_error;
        out->n_examples = n;
        if (per_example) memcpy(per_example, est, (size_t)n * sizeof(double));
    }
    free(lw_host);
    free(stage);
    free(acc);
    free(est);
    free(betas);
    ng_anneal_free(&an);
    return s;
}

ng_status ng_raise_ais_paired(const double *raise_per_example, const double *free_energy, int n,
                              const ng_ais_result *ais, ng_paired_diff *out) {
    double m = 0.0, v = 0.0, se, z, h, lo_ais, hi_ais;
    int e;
    if (!raise_per_example || !free_energy || !ais || !out)
        return ng_error(NG_ERR_INVALID_ARG, "RAISE vs AIS: NULL argument");
    if (n < 2) return ng_error(NG_ERR_INVALID_ARG, "RAISE vs AIS: need >= 2 examples for a paired interval (got %d)", n);
    if (!(ais->level > 0.0 && ais->level < 1.0))
        return ng_error(NG_ERR_INVALID_ARG, "RAISE vs AIS: AIS interval level %g", ais->level);
    memset(out, 0, sizeof *out);
    /* x_e = r_e + F_e: RAISE's estimate of -log Z from example e */
    for (e = 0; e < n; e++) {
        double x = raise_per_example[e] + free_energy[e];
        if (!isfinite(x))
            return ng_error(NG_ERR_NUMERIC, "RAISE vs AIS: example %d: RAISE %g, free energy %g", e,
                            raise_per_example[e], free_energy[e]);
        m += x;
    }
    m /= n;
    for (e = 0; e < n; e++) {
        double d = raise_per_example[e] + free_energy[e] - m;
        v += d * d;
    }
    se = sqrt(v / (n - 1) / n);
    out->raise_mean = out->ais_mean = 0.0;
    for (e = 0; e < n; e++) {
        out->raise_mean += raise_per_example[e] / n;
        out->ais_mean += (-free_energy[e] - ais->log_z) / n;
    }
    out->diff = -ais->log_z - m;
    /* the normal quantile of the two-sided level, by bisection on erfc */
    {
        double a = 1.0 - ais->level, zl = 0.0, zh = 40.0;
        int it;
        for (it = 0; it < 200; it++) {
            z = 0.5 * (zl + zh);
            if (erfc(z / sqrt(2.0)) > a) zl = z;
            else zh = z;
        }
        z = 0.5 * (zl + zh);
    }
    h = z * se;
    /* D falls when log Z rises: D's lower side takes log Z's upper side and vice versa */
    hi_ais = ais->log_z - ais->log_z_lo;
    lo_ais = ais->log_z_hi - ais->log_z;
    out->lo = out->diff - sqrt(h * h + lo_ais * lo_ais);
    out->hi = out->diff + sqrt(h * h + hi_ais * hi_ais);
    out->level = ais->level;
    out->n = n;
    return NG_OK;
}
