/* test_eval.c: RBM evaluation (host/eval/logz.c, host/eval/ais.c) against exact references.
 * References are computed here in float64 on the host: a brute-force sum over both layers for
 * tiny RBMs, an analytic marginalisation over one layer for ones too big for that, the closed
 * form of an RBM without weights. Every test runs on the CPU backend and, when
 * ng_backend_cuda_init succeeds (a GPU, or the tests/simt emulator), on the CUDA backend too;
 * under emulation (the tests/simt device) or with NG_TEST_SMALL set the 784 x 16 AIS case
 * shrinks to 64 x 10 so that the emulated kernels stay quick. Deterministic: all randomness
 * comes from fixed Philox streams. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "natgrad/eval.h"
#include "natgrad/log.h"
#include "natgrad/rng.h"

static ng_backend *g_cpu, *g_cuda;
static char g_cuda_reason[300];

/* Host parameters of a test RBM, column-major like the device copy. */
typedef struct host_rbm {
    int nv, nh;
    float *W, *a, *b; /* (nh, nv), (nv), (nh) */
} host_rbm;

static void host_rbm_free(host_rbm *h) {
    free(h->W);
    free(h->a);
    free(h->b);
}

/* W ~ N(0, w_std^2), a ~ N(a_mean, a_std^2), b ~ N(b_mean, b_std^2) from the test stream `seed`;
 * uploaded into a fresh ng_rbm on `be`. */
static ng_status make_rbm(ng_backend *be, int nv, int nh, uint64_t seed, float w_std, float a_mean,
                          float a_std, float b_mean, float b_std, ng_rbm *rbm, host_rbm *h) {
    uint64_t key = ng_rng_stream_key(seed, NG_RNG_TEST);
    h->nv = nv;
    h->nh = nh;
    h->W = (float *)malloc((size_t)nv * nh * sizeof(float));
    h->a = (float *)malloc((size_t)nv * sizeof(float));
    h->b = (float *)malloc((size_t)nh * sizeof(float));
    if (!h->W || !h->a || !h->b) return ng_error(NG_ERR_OOM, "test: out of memory");
    ng_rng_fill_normal(h->W, (size_t)nv * nh, 0.0f, w_std, key, 0);
    ng_rng_fill_normal(h->a, (size_t)nv, a_mean, a_std, key, 1);
    ng_rng_fill_normal(h->b, (size_t)nh, b_mean, b_std, key, 2);
    NG_TRY(ng_rbm_init(be, nv, nh, rbm));
    return ng_rbm_set_params(rbm, h->W, h->a, h->b);
}

static double softplus_d(double x) { return x > 30.0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

/* log sum_{v,h} exp(a'v + b'h + h'Wv): every joint state, float64 (nv + nh <= ~20). */
static double brute_log_z(const host_rbm *h) {
    uint64_t sv, sh, nvs = (uint64_t)1 << h->nv, nhs = (uint64_t)1 << h->nh;
    double mx = -INFINITY, sum = 0.0;
    double *e = (double *)malloc((size_t)(nvs * nhs) * sizeof(double));
    size_t n = 0, i;
    for (sv = 0; sv < nvs; sv++)
        for (sh = 0; sh < nhs; sh++) {
            double x = 0.0;
            int vi, hj;
            for (vi = 0; vi < h->nv; vi++)
                if (sv >> vi & 1) x += h->a[vi];
            for (hj = 0; hj < h->nh; hj++) {
                if (!(sh >> hj & 1)) continue;
                x += h->b[hj];
                for (vi = 0; vi < h->nv; vi++)
                    if (sv >> vi & 1) x += h->W[hj + (size_t)vi * h->nh];
            }
            e[n++] = x;
            if (x > mx) mx = x;
        }
    for (i = 0; i < n; i++) sum += exp(e[i] - mx);
    free(e);
    return mx + log(sum);
}

/* log sum_h exp(-E(v, h)) = a'v + sum_j softplus(W_j v + b_j) for a binary v, float64. */
static double log_pstar_v(const host_rbm *h, const float *v) {
    double x = 0.0;
    int i, j;
    for (i = 0; i < h->nv; i++) x += (double)h->a[i] * v[i];
    for (j = 0; j < h->nh; j++) {
        double pre = h->b[j];
        for (i = 0; i < h->nv; i++) pre += (double)h->W[j + (size_t)i * h->nh] * v[i];
        x += softplus_d(pre);
    }
    return x;
}

/* log Z by enumerating the hidden layer only and summing v out analytically, float64. */
static double marginal_log_z_hidden(const host_rbm *h) {
    uint64_t sh, nhs = (uint64_t)1 << h->nh;
    double mx = -INFINITY, sum = 0.0;
    for (sh = 0; sh < nhs; sh++) {
        double x = 0.0;
        int i, j;
        for (j = 0; j < h->nh; j++)
            if (sh >> j & 1) x += h->b[j];
        for (i = 0; i < h->nv; i++) {
            double pre = h->a[i];
            for (j = 0; j < h->nh; j++)
                if (sh >> j & 1) pre += h->W[j + (size_t)i * h->nh];
            x += softplus_d(pre);
        }
        if (x > mx) {
            sum = sum * exp(mx - x) + 1.0;
            mx = x;
        } else {
            sum += exp(x - mx);
        }
    }
    return mx + log(sum);
}

/* Same, enumerating the visible layer. */
static double marginal_log_z_visible(const host_rbm *h) {
    uint64_t sv, nvs = (uint64_t)1 << h->nv;
    double mx = -INFINITY, sum = 0.0;
    float *v = (float *)malloc((size_t)h->nv * sizeof(float));
    for (sv = 0; sv < nvs; sv++) {
        double x;
        int i;
        for (i = 0; i < h->nv; i++) v[i] = (float)(sv >> i & 1);
        x = log_pstar_v(h, v);
        if (x > mx) {
            sum = sum * exp(mx - x) + 1.0;
            mx = x;
        } else {
            sum += exp(x - mx);
        }
    }
    free(v);
    return mx + log(sum);
}

/* n binary columns of length nv, each unit on with probability p (test stream). */
static float *random_binary(int nv, int n, float p, uint64_t seed) {
    float *x = (float *)malloc((size_t)nv * n * sizeof(float));
    size_t i;
    uint64_t key = ng_rng_stream_key(seed, NG_RNG_TEST);
    for (i = 0; i < (size_t)nv * n; i++) x[i] = ng_rng_uniform(key, 7, i) <= p ? 1.0f : 0.0f;
    return x;
}

/* Emulated CUDA runs every kernel thread on the CPU: keep its shapes small. The emulated device
 * names itself in the backend description. */
static int small_shapes(const ng_backend *be) {
    if (getenv("NG_TEST_SMALL")) return 1;
#ifdef NG_SIMT
    if (be->kind == NG_DEVICE_CUDA) return 1;
#endif
    return be->kind == NG_DEVICE_CUDA && strstr(be->description, "SIMT emulator") != NULL;
}

/* ---- exact log Z --------------------------------------------------------------------------- */

/* Tolerance 1e-4 nats: the per-state values are float32 sums of at most ~10 terms of size
 * <= ~10, so each is off by < 1e-5, and a log-sum-exp is off by at most its worst term. */
static int check_log_z_brute(ng_backend *be) {
    static const int shapes[][2] = {{6, 4}, {5, 9}, {7, 7}, {1, 3}, {3, 1}, {10, 6}};
    size_t t;
    for (t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        ng_rbm rbm;
        host_rbm h;
        double got, want;
        NGT_OK(make_rbm(be, shapes[t][0], shapes[t][1], 100 + t, 1.0f, 0.0f, 0.5f, 0.0f, 0.5f,
                        &rbm, &h));
        NGT_OK(ng_rbm_log_z_exact(&rbm, &got));
        want = brute_log_z(&h);
        printf("  %s %dx%d: exact %.9f brute %.9f diff %.2e\n", be->iface->name, h.nv, h.nh, got,
               want, got - want);
        ng_rbm_free(&rbm);
        host_rbm_free(&h);
        NGT_CLOSE(got, want, 1e-4, "log Z vs brute force over both layers");
    }
    return NGT_PASS;
}

/* Several chunks of 4096 states, both branches, against a float64 marginalisation that
 * enumerates the OTHER layer (the larger one), so the two sums share no code path.
 * Tolerance 1e-3: per-state values are float32 sums of ~20-30 terms of size up to ~20. */
static int check_log_z_chunks(ng_backend *be) {
    static const int shapes[][2] = {{16, 14}, {13, 17}};
    size_t t;
    for (t = 0; t < 2; t++) {
        ng_rbm rbm;
        host_rbm h;
        double got, want;
        NGT_OK(make_rbm(be, shapes[t][0], shapes[t][1], 200 + t, 0.5f, -0.5f, 0.5f, 0.0f, 0.5f,
                        &rbm, &h));
        NGT_OK(ng_rbm_log_z_exact(&rbm, &got));
        want = h.nh <= h.nv ? marginal_log_z_visible(&h) : marginal_log_z_hidden(&h);
        printf("  %s %dx%d: exact %.9f reference %.9f diff %.2e\n", be->iface->name, h.nv, h.nh,
               got, want, got - want);
        ng_rbm_free(&rbm);
        host_rbm_free(&h);
        NGT_CLOSE(got, want, 1e-3, "chunked log Z vs float64 marginalisation");
    }
    return NGT_PASS;
}

/* W = 0: the layers are independent and log Z = sum softplus(a) + sum softplus(b) exactly.
 * Tolerance 1e-4 as above (the 30 x 13 case sums 30 softplus terms per state). */
static int check_log_z_independent(ng_backend *be) {
    static const int shapes[][2] = {{8, 3}, {3, 8}, {30, 13}};
    size_t t;
    for (t = 0; t < 3; t++) {
        ng_rbm rbm;
        host_rbm h;
        double got, want = 0.0;
        int i;
        NGT_OK(make_rbm(be, shapes[t][0], shapes[t][1], 300 + t, 0.0f, 0.0f, 1.0f, 0.0f, 1.0f,
                        &rbm, &h));
        NGT_OK(ng_rbm_log_z_exact(&rbm, &got));
        for (i = 0; i < h.nv; i++) want += softplus_d(h.a[i]);
        for (i = 0; i < h.nh; i++) want += softplus_d(h.b[i]);
        ng_rbm_free(&rbm);
        host_rbm_free(&h);
        NGT_CLOSE(got, want, 1e-4, "log Z with W = 0 vs closed form");
    }
    return NGT_PASS;
}

/* More than 2^20 states is refused with a message naming the sizes. */
static int check_log_z_too_large(ng_backend *be) {
    static const int shapes[][2] = {{21, 25}, {25, 21}};
    size_t t;
    for (t = 0; t < 2; t++) {
        ng_rbm rbm;
        double lz = 0.0;
        ng_status s;
        char want[64];
        NGT_OK(ng_rbm_init(be, shapes[t][0], shapes[t][1], &rbm));
        s = ng_rbm_log_z_exact(&rbm, &lz);
        ng_rbm_free(&rbm);
        NGT_CHECK(s == NG_ERR_INVALID_ARG, "got %s", ng_status_name(s));
        snprintf(want, sizeof want, "%d visible x %d hidden", shapes[t][0], shapes[t][1]);
        NGT_CHECK(strstr(ng_last_error(), want) != NULL, "message '%s' lacks '%s'", ng_last_error(),
                  want);
        ng_clear_error();
    }
    return NGT_PASS;
}

/* ---- base rate and mean log-probability --------------------------------------------------- */

static int test_base_rate_bias(void) {
    /* 3 units, 4 examples (columns): sums 4, 0, 2 -> p = 5/6, 1/6, 3/6 */
    static const float x[12] = {1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 0};
    static const double p[3] = {5.0 / 6.0, 1.0 / 6.0, 0.5};
    float a[3];
    int i;
    ng_rbm_base_rate_bias(x, 3, 4, a);
    for (i = 0; i < 3; i++) NGT_CLOSE(a[i], log(p[i] / (1.0 - p[i])), 1e-6, "base-rate bias");
    ng_rbm_base_rate_bias(NULL, 3, 0, a); /* no data: p = 1/2 */
    for (i = 0; i < 3; i++) NGT_CLOSE(a[i], 0.0, 0.0, "base-rate bias without data");
    return NGT_PASS;
}

/* mean log p(v) of 10 binary vectors under a 7 x 5 RBM vs float64 brute force (log Z from the
 * brute force too). Tolerance 1e-4: float32 free energies of ~12 terms. */
static int check_mean_log_prob(ng_backend *be) {
    ng_rbm rbm;
    host_rbm h;
    float *v = random_binary(7, 10, 0.4f, 400);
    double lz, got, want = 0.0;
    int c;
    NGT_OK(make_rbm(be, 7, 5, 401, 1.0f, 0.0f, 0.5f, 0.0f, 0.5f, &rbm, &h));
    lz = brute_log_z(&h);
    for (c = 0; c < 10; c++) want += log_pstar_v(&h, v + (size_t)c * 7) - lz;
    want /= 10.0;
    NGT_OK(ng_rbm_mean_log_prob(&rbm, v, 10, lz, &got));
    ng_rbm_free(&rbm);
    host_rbm_free(&h);
    free(v);
    NGT_CLOSE(got, want, 1e-4, "mean log p(v) vs brute force");
    return NGT_PASS;
}

/* ---- AIS ------------------------------------------------------------------------------------ */

/* Run AIS and compare with the exact log Z: |AIS - exact| <= tol and the 3-sigma interval
 * contains the exact value. */
static int ais_vs_exact(ng_backend *be, int nv, int nh, uint64_t seed, float w_std, float a_mean,
                        float b_mean, int n_betas, int n_chains, double tol) {
    ng_rbm rbm;
    host_rbm h;
    ng_ais_config cfg;
    ng_ais_result r;
    float *data = random_binary(nv, 50, 0.3f, seed + 1), *a_base;
    double exact;
    NGT_OK(make_rbm(be, nv, nh, seed, w_std, a_mean, 0.5f, b_mean, 0.5f, &rbm, &h));
    a_base = (float *)malloc((size_t)nv * sizeof(float));
    ng_rbm_base_rate_bias(data, nv, 50, a_base);
    NGT_OK(ng_rbm_log_z_exact(&rbm, &exact));
    ng_ais_config_default(&cfg);
    cfg.n_betas = n_betas;
    cfg.n_chains = n_chains / 4; /* 4 runs pooled: n_chains chains in all */
    cfg.n_runs = 4;
    cfg.seed = seed;
    NGT_OK(ng_rbm_ais(&rbm, a_base, &cfg, &r));
    printf("  %s %dx%d (%d betas, %d chains): exact %.4f AIS %.4f [%.4f, %.4f] diff %+.4f "
           "log Z_A %.4f ESS %.1f\n",
           be->iface->name, nv, nh, n_betas, n_chains, exact, r.log_z, r.log_z_lo, r.log_z_hi,
           r.log_z - exact, r.log_z_base, r.ess);
    ng_rbm_free(&rbm);
    host_rbm_free(&h);
    free(data);
    free(a_base);
    NGT_CLOSE(r.log_z, exact, tol, "AIS log Z vs exact");
    NGT_CHECK(r.log_z_lo <= exact && exact <= r.log_z_hi,
              "95%% interval [%.5f, %.5f] misses exact %.5f", r.log_z_lo, r.log_z_hi, exact);
    NGT_CHECK(r.n_runs == 4 && r.n_betas == n_betas && r.min_run_ess <= r.run_ess[3],
              "runs %d betas %d min run ESS %g", r.n_runs, r.n_betas, r.min_run_ess);
    NGT_CHECK(r.ess >= 1.0 && r.ess <= n_chains, "ESS %g outside [1, %d]", r.ess, n_chains);
    return NGT_PASS;
}

/* 12 x 8, weights N(0, 1): within 0.1 nats (observed error ~0.02; the 3-sigma interval is
 * about +-0.03). Emulated: 400 betas, 50 chains. */
static int check_ais_small(ng_backend *be) {
    if (small_shapes(be)) return ais_vs_exact(be, 12, 8, 500, 1.0f, 0.0f, 0.0f, 400, 50, 0.1);
    return ais_vs_exact(be, 12, 8, 500, 1.0f, 0.0f, 0.0f, 1000, 100, 0.1);
}

/* MNIST-sized 784 x 16, exact by enumerating the 2^16 hidden states. Weights N(0, 0.3^2) drive
 * each hidden unit with a pre-activation of std ~4, so log Z lies ~90 nats above that of the same
 * RBM without weights and ~70 above the base-rate model's: AIS has real work to do. Emulated
 * CUDA (or NG_TEST_SMALL) runs 64 x 10 with weights N(0, 0.6^2) (~15 nats from independence). */
static int check_ais_large(ng_backend *be) {
    if (small_shapes(be)) return ais_vs_exact(be, 64, 10, 600, 0.6f, -1.0f, -1.0f, 300, 50, 0.5);
    return ais_vs_exact(be, 784, 16, 600, 0.3f, -1.0f, -1.0f, 1000, 100, 0.5);
}

/* W = 0 and a_base = a: log p*_k(v) - log p*_{k-1}(v) = sum_j softplus(beta_k b_j) -
 * softplus(beta_{k-1} b_j) does not depend on v, so every chain carries the same weight, ESS = M,
 * and the telescoping sum gives log Z_A + sum_j softplus(b_j) - n_hidden log 2 = the exact log Z.
 * Tolerance 1e-3: 1000 float32 increments, each a difference of sums of size ~6 (ulp ~5e-7). */
static int check_ais_independent(ng_backend *be) {
    ng_rbm rbm;
    host_rbm h;
    ng_ais_config cfg;
    ng_ais_result r;
    double want = 0.0;
    int i;
    NGT_OK(make_rbm(be, 12, 8, 800, 0.0f, 0.0f, 1.0f, 0.0f, 1.0f, &rbm, &h));
    for (i = 0; i < h.nv; i++) want += softplus_d(h.a[i]);
    for (i = 0; i < h.nh; i++) want += softplus_d(h.b[i]);
    ng_ais_config_default(&cfg);
    cfg.n_betas = small_shapes(be) ? 300 : 1000;
    cfg.n_chains = 8;
    cfg.n_runs = 2;
    NGT_OK(ng_rbm_ais(&rbm, h.a, &cfg, &r));
    printf("  %s 12x8, W = 0: closed form %.6f AIS %.6f diff %+.2e ESS %.3f\n", be->iface->name,
           want, r.log_z, r.log_z - want, r.ess);
    ng_rbm_free(&rbm);
    host_rbm_free(&h);
    NGT_CLOSE(r.log_z, want, 1e-3, "AIS log Z with W = 0 vs closed form");
    NGT_CLOSE(r.ess, 16.0, 1e-9, "ESS of identical weights");
    NGT_CLOSE(r.run_ess[0], 8.0, 1e-9, "run 0 ESS of identical weights");
    NGT_CLOSE(r.run_ess[1], 8.0, 1e-9, "run 1 ESS of identical weights");
    NGT_CLOSE(r.log_z_hi, r.log_z, 1e-12, "interval of identical weights");
    NGT_CLOSE(r.log_z_lo, r.log_z, 1e-12, "interval of identical weights");
    NGT_CLOSE(r.run_sd, 0.0, 1e-12, "spread of identical runs");
    return NGT_PASS;
}

/* Same seed, same bits; another seed, another estimate. */
static int check_ais_deterministic(ng_backend *be) {
    ng_rbm rbm;
    host_rbm h;
    ng_ais_config cfg;
    ng_ais_result r1, r2, r3;
    float a_base[10] = {0};
    NGT_OK(make_rbm(be, 10, 6, 700, 1.0f, 0.0f, 0.5f, 0.0f, 0.5f, &rbm, &h));
    ng_ais_config_default(&cfg);
    cfg.n_betas = 150; /* one flush after 100 steps and a partial one at the end */
    cfg.n_chains = 8;
    cfg.seed = 42;
    NGT_OK(ng_rbm_ais(&rbm, a_base, &cfg, &r1));
    NGT_OK(ng_rbm_ais(&rbm, a_base, &cfg, &r2));
    cfg.seed = 43;
    NGT_OK(ng_rbm_ais(&rbm, a_base, &cfg, &r3));
    ng_rbm_free(&rbm);
    host_rbm_free(&h);
    NGT_CHECK(memcmp(&r1, &r2, sizeof r1) == 0, "two runs with seed 42 differ: %.17g vs %.17g",
              r1.log_z, r2.log_z);
    NGT_CHECK(r1.log_z != r3.log_z, "seeds 42 and 43 gave the same estimate %.17g", r1.log_z);
    return NGT_PASS;
}

static int check_ais_bad_args(ng_backend *be) {
    ng_rbm rbm;
    ng_ais_config cfg;
    ng_ais_result r;
    float a_base[4] = {0, 0, 0, 0};
    ng_status s;
    NGT_OK(ng_rbm_init(be, 4, 3, &rbm));
    ng_ais_config_default(&cfg);
    cfg.n_betas = 0;
    s = ng_rbm_ais(&rbm, a_base, &cfg, &r);
    NGT_CHECK(s == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "n_betas"), "n_betas 0: %s: %s",
              ng_status_name(s), ng_last_error());
    cfg.n_betas = 10;
    cfg.n_chains = 0;
    s = ng_rbm_ais(&rbm, a_base, &cfg, &r);
    NGT_CHECK(s == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "n_chains"), "n_chains 0: %s: %s",
              ng_status_name(s), ng_last_error());
    cfg.n_chains = 5;
    cfg.n_runs = 0;
    s = ng_rbm_ais(&rbm, a_base, &cfg, &r);
    NGT_CHECK(s == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "n_runs"), "n_runs 0: %s: %s",
              ng_status_name(s), ng_last_error());
    cfg.n_runs = NG_AIS_MAX_RUNS + 1;
    s = ng_rbm_ais(&rbm, a_base, &cfg, &r);
    NGT_CHECK(s == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "n_runs"), "n_runs 65: %s: %s",
              ng_status_name(s), ng_last_error());
    cfg.n_runs = 2;
    cfg.level = 1.0;
    s = ng_rbm_ais(&rbm, a_base, &cfg, &r);
    NGT_CHECK(s == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "level"), "level 1: %s: %s",
              ng_status_name(s), ng_last_error());
    cfg.level = 0.95;
    a_base[2] = NAN;
    s = ng_rbm_ais(&rbm, a_base, &cfg, &r);
    NGT_CHECK(s == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "a_base[2]"), "NaN bias: %s: %s",
              ng_status_name(s), ng_last_error());
    ng_rbm_free(&rbm);
    ng_clear_error();
    return NGT_PASS;
}

/* The two schedules: linear k/K, and S&M 2008's 14,500 betas (1e-3 steps to 0.5, 1e-4 to 0.9,
 * 1e-5 to 1), increasing from exactly 0 to exactly 1. */
static int test_ais_betas(void) {
    ng_ais_config cfg;
    double *b = NULL;
    int K = 0, k;
    ng_ais_config_default(&cfg);
    cfg.n_betas = 8;
    NGT_OK(ng_ais_betas(&cfg, &b, &K));
    NGT_CHECK(K == 8, "linear K %d", K);
    for (k = 0; k <= K; k++) NGT_CLOSE(b[k], k / 8.0, 1e-15, "linear beta");
    free(b);
    cfg.schedule = NG_AIS_SM08;
    NGT_OK(ng_ais_betas(&cfg, &b, &K));
    NGT_CHECK(K == 14500, "S&M 2008 schedule has %d steps, want 14500", K);
    NGT_CHECK(b[0] == 0.0 && b[K] == 1.0, "ends %g %g", b[0], b[K]);
    NGT_CLOSE(b[500], 0.5, 1e-12, "beta_500");
    NGT_CLOSE(b[4500], 0.9, 1e-12, "beta_4500");
    NGT_CLOSE(b[1] - b[0], 1e-3, 1e-12, "first step");
    NGT_CLOSE(b[501] - b[500], 1e-4, 1e-12, "step after 0.5");
    NGT_CLOSE(b[K] - b[K - 1], 1e-5, 1e-12, "last step");
    for (k = 1; k <= K; k++) NGT_CHECK(b[k] > b[k - 1], "betas not increasing at %d", k);
    free(b);
    cfg.schedule = NG_AIS_LINEAR;
    cfg.n_betas = 0;
    NGT_CHECK(ng_ais_betas(&cfg, &b, &K) == NG_ERR_INVALID_ARG, "n_betas 0 accepted");
    ng_clear_error();
    return NGT_PASS;
}

/* ng_ais_combine on weights worked by hand: run 0 has w = 1, 2, 3, run 1 has w = e, e, e
 * (log Z_A = 10): the pooled estimate 10 + log((6 + 3e) / 6), run estimates 10 + log 2 and 11,
 * run ESS 36/14 and 3, pooled ESS (6 + 3e)^2 / (14 + 3e^2), run spread |log 2 - 1| / sqrt 2;
 * the bootstrap interval contains the estimate and lies within the range of the weights. A NaN
 * weight is named by chain and run. */
static int test_ais_combine(void) {
    double lw[6] = {0.0, log(2.0), log(3.0), 1.0, 1.0, 1.0}, e = exp(1.0);
    ng_ais_result r;
    ng_status s;
    NGT_OK(ng_ais_combine(lw, 2, 3, 10.0, 1000, 0.95, 7, &r));
    NGT_CLOSE(r.log_z, 10.0 + log((6.0 + 3.0 * e) / 6.0), 1e-12, "pooled estimate");
    NGT_CLOSE(r.run_log_z[0], 10.0 + log(2.0), 1e-12, "run 0");
    NGT_CLOSE(r.run_log_z[1], 11.0, 1e-12, "run 1");
    NGT_CLOSE(r.run_ess[0], 36.0 / 14.0, 1e-12, "run 0 ESS");
    NGT_CLOSE(r.run_ess[1], 3.0, 1e-12, "run 1 ESS");
    NGT_CLOSE(r.min_run_ess, 36.0 / 14.0, 1e-12, "smallest run ESS");
    NGT_CLOSE(r.ess, (6.0 + 3.0 * e) * (6.0 + 3.0 * e) / (14.0 + 3.0 * e * e), 1e-12, "pooled ESS");
    NGT_CLOSE(r.run_sd, fabs(log(2.0) - 1.0) / sqrt(2.0), 1e-12, "run spread");
    printf("  combine: log Z %.4f, 95%% interval [%.4f, %.4f], old 3-sigma [%.4f, %.4f]\n", r.log_z, r.log_z_lo,
           r.log_z_hi, r.sigma3_lo, r.sigma3_hi);
    NGT_CHECK(r.log_z_lo < r.log_z && r.log_z < r.log_z_hi, "interval [%g, %g] around %g", r.log_z_lo,
              r.log_z_hi, r.log_z);
    /* every replicate mean lies in [1, e]; reflected about t, the ends stay within 2t - [0, 1] */
    NGT_CHECK(r.log_z_lo >= 2.0 * r.log_z - 11.0 - 1e-12 && r.log_z_hi <= 2.0 * r.log_z - 10.0 + 1e-12,
              "interval [%g, %g] beyond the reflected range of the weights", r.log_z_lo, r.log_z_hi);
    lw[4] = NAN;
    s = ng_ais_combine(lw, 2, 3, 10.0, 1000, 0.95, 7, &r);
    NGT_CHECK(s == NG_ERR_NUMERIC && strstr(ng_last_error(), "chain 1 of run 1"), "NaN weight: %s: %s",
              ng_status_name(s), ng_last_error());
    lw[4] = 1.0;
    NGT_CHECK(ng_ais_combine(lw, 2, 3, 10.0, 10, 0.95, 7, &r) == NG_ERR_INVALID_ARG, "n_boot 10 accepted");
    ng_clear_error();
    return NGT_PASS;
}

/* The paired RAISE - AIS difference on numbers worked by hand: RAISE r = (-10, -12, -11), free
 * energies F = (8, 10, 9.5), AIS log Z = 2 with interval [1.9, 2.2]. r + F = (-2, -2, -1.5), mean
 * -11/6, standard error 1/6; D = -log Z - mean(r + F) = -1/6 = mean(-F - log Z) - mean(r); the
 * interval adds z_0.975 = 1.959964 SE in quadrature with the AIS interval's sides (D's low side
 * takes log Z's high side). Fewer than 2 examples are refused. */
static int test_raise_ais_paired(void) {
    double r[3] = {-10.0, -12.0, -11.0}, F[3] = {8.0, 10.0, 9.5}, h = 1.959963985 / 6.0;
    ng_ais_result a;
    ng_paired_diff d;
    memset(&a, 0, sizeof a);
    a.log_z = 2.0;
    a.log_z_lo = 1.9;
    a.log_z_hi = 2.2;
    a.level = 0.95;
    NGT_OK(ng_raise_ais_paired(r, F, 3, &a, &d));
    NGT_CLOSE(d.diff, -1.0 / 6.0, 1e-12, "D");
    NGT_CLOSE(d.ais_mean, -(8.0 + 10.0 + 9.5) / 3.0 - 2.0, 1e-12, "AIS mean");
    NGT_CLOSE(d.raise_mean, -11.0, 1e-12, "RAISE mean");
    NGT_CLOSE(d.ais_mean - d.raise_mean, d.diff, 1e-12, "D = AIS mean - RAISE mean");
    NGT_CLOSE(d.lo, -1.0 / 6.0 - sqrt(h * h + 0.2 * 0.2), 1e-8, "low end");
    NGT_CLOSE(d.hi, -1.0 / 6.0 + sqrt(h * h + 0.1 * 0.1), 1e-8, "high end");
    NGT_CHECK(d.n == 3 && d.level == 0.95, "n %d level %g", d.n, d.level);
    NGT_CHECK(ng_raise_ais_paired(r, F, 1, &a, &d) == NG_ERR_INVALID_ARG, "one example accepted");
    ng_clear_error();
    return NGT_PASS;
}

/* Runs are independent blocks of chains: run 0 of a 3-run AIS is the 1-run AIS with the same
 * seed, bit for bit, and the runs differ from each other. */
static int check_ais_runs(ng_backend *be) {
    ng_rbm rbm;
    host_rbm h;
    ng_ais_config cfg;
    ng_ais_result r1, r3;
    float a_base[10] = {0};
    NGT_OK(make_rbm(be, 10, 6, 710, 1.0f, 0.0f, 0.5f, 0.0f, 0.5f, &rbm, &h));
    ng_ais_config_default(&cfg);
    cfg.n_betas = 120;
    cfg.n_chains = 8;
    cfg.n_runs = 1;
    NGT_OK(ng_rbm_ais(&rbm, a_base, &cfg, &r1));
    cfg.n_runs = 3;
    NGT_OK(ng_rbm_ais(&rbm, a_base, &cfg, &r3));
    ng_rbm_free(&rbm);
    host_rbm_free(&h);
    NGT_CHECK(r1.run_log_z[0] == r3.run_log_z[0], "run 0 alone %.17g, among 3 %.17g", r1.run_log_z[0],
              r3.run_log_z[0]);
    NGT_CHECK(r3.run_log_z[0] != r3.run_log_z[1] && r3.run_log_z[1] != r3.run_log_z[2],
              "runs gave equal estimates %.17g %.17g %.17g", r3.run_log_z[0], r3.run_log_z[1], r3.run_log_z[2]);
    NGT_CHECK(r3.run_sd > 0.0, "run spread %g", r3.run_sd);
    return NGT_PASS;
}

/* Coverage, the test that could fail: a 784 x 20 RBM (weights N(0, 0.3^2), biases N(-1, 0.5^2))
 * whose log Z is exact by enumerating its 2^20 hidden states; AIS with 100 betas x 20 chains x
 * 5 runs (pooled ESS ~13 of 100: a hard but not hopeless case) for seeds 1..100. The 95 %
 * bootstrap interval must cover the exact value in 86..100 of them (binomial(100, 0.95) lies there
 * with probability > 0.99); the interval natgrad 0.1 printed (3 sigma of the pooled weights,
 * nominally 99.7 %) must cover it in at most 98 (an honest 99.7 % interval would do so with
 * probability 0.03), i.e. it is shown to claim more than it delivers. Measured here: 93 and 95
 * (bench/ais_coverage.sh counts more seeds and settings). About 10-20 s on one CPU core, most of
 * it the enumeration; one thread. */
static int test_ais_coverage_cpu(void) {
    enum { NV = 784, NH = 20, SEEDS = 100 };
    ng_rbm rbm;
    host_rbm h;
    ng_ais_config cfg;
    float *data, a_base[NV];
    double exact, t0 = ng_time_s(), w = 0.0;
    int sd, cov = 0, cov3 = 0, i, nthreads;
    uint64_t key = ng_rng_stream_key(2026, NG_RNG_TEST);
    if (!g_cpu) return ngt_skip("CPU backend failed to initialise");
    if (getenv("NG_TEST_SMALL")) return ngt_skip("NG_TEST_SMALL: the 784 x 20 enumeration takes ~10 s");
    /* a CPU-backend test: the plain test_eval binary runs it; the emulator build tests the CUDA path */
    if (g_cuda && small_shapes(g_cuda)) return ngt_skip("SIMT emulator build: the CPU coverage count runs in the plain test_eval");
    h.nv = NV;
    h.nh = NH;
    h.W = (float *)malloc((size_t)NV * NH * sizeof(float));
    h.a = (float *)malloc(NV * sizeof(float));
    h.b = (float *)malloc(NH * sizeof(float));
    data = (float *)malloc((size_t)NV * 100 * sizeof(float));
    ng_rng_fill_normal(h.W, (size_t)NV * NH, 0.0f, 0.3f, key, 0);
    ng_rng_fill_normal(h.a, NV, -1.0f, 0.5f, key, 1);
    ng_rng_fill_normal(h.b, NH, -1.0f, 0.5f, key, 2);
    for (i = 0; i < NV * 100; i++) data[i] = ng_rng_uniform(key, 3, (uint64_t)i) < 0.3f ? 1.0f : 0.0f;
    ng_rbm_base_rate_bias(data, NV, 100, a_base);
    /* one thread: the AIS steps are tiny (100 columns) and OpenMP's spinning costs several times
     * the work on a shared machine (measured: 87 s with 2 threads under load, ~25 s with 1) */
    nthreads = omp_get_max_threads();
    ng_cpu_set_threads(1);
    NGT_OK(ng_rbm_init(g_cpu, NV, NH, &rbm));
    NGT_OK(ng_rbm_set_params(&rbm, h.W, h.a, h.b));
    NGT_OK(ng_rbm_log_z_exact(&rbm, &exact));
    printf("  784x20 exact log Z by enumeration: %.1f s\n", ng_time_s() - t0);
    ng_ais_config_default(&cfg);
    cfg.n_betas = 100;
    cfg.n_chains = 20;
    cfg.n_runs = 5;
    for (sd = 1; sd <= SEEDS; sd++) {
        ng_ais_result r;
        cfg.seed = (uint64_t)sd;
        NGT_OK(ng_rbm_ais(&rbm, a_base, &cfg, &r));
        cov += r.log_z_lo <= exact && exact <= r.log_z_hi;
        cov3 += r.sigma3_lo <= exact && exact <= r.sigma3_hi;
        w += (r.log_z_hi - r.log_z_lo) / SEEDS;
    }
    ng_cpu_set_threads(nthreads);
    printf("  784x20 exact log Z %.4f: 95%% bootstrap interval covered %d/%d (mean width %.3f), old 3-sigma "
           "interval %d/%d; %.1f s\n", exact, cov, SEEDS, w, cov3, SEEDS, ng_time_s() - t0);
    ng_rbm_free(&rbm);
    host_rbm_free(&h);
    free(data);
    NGT_CHECK(cov >= 86, "95%% interval covered the exact log Z in only %d of %d seeds", cov, SEEDS);
    NGT_CHECK(cov3 <= 98, "old 3-sigma interval covered %d of %d seeds: no longer shown to undercover", cov3,
              SEEDS);
    NGT_CHECK(w < 3.0, "mean interval width %.3f nats: uselessly wide", w);
    return NGT_PASS;
}

/* Gibbs samples of a 5 x 3 RBM (weights N(0, 1)) after 30 sweeps from 20,000 chains: the
 * frequency of each of the 32 visible states matches its exact probability (from the brute-force
 * log Z) within 5 binomial standard errors + 0.002, and the returned probabilities are those of
 * the chain's last hidden draw (each in (0, 1), mean close to the samples' mean). */
static int check_sample(ng_backend *be) {
    enum { NV = 5, NH = 3 };
    int n = small_shapes(be) ? 4000 : 20000, c, i, st, count[1 << NV] = {0};
    ng_rbm rbm;
    host_rbm h;
    float a_base[NV] = {0}, *prob = (float *)malloc((size_t)NV * n * sizeof(float)),
          *smp = (float *)malloc((size_t)NV * n * sizeof(float));
    double lz, worst = 0.0, mp = 0.0, ms = 0.0;
    NGT_OK(make_rbm(be, NV, NH, 720, 1.0f, 0.0f, 0.5f, 0.0f, 0.5f, &rbm, &h));
    lz = brute_log_z(&h);
    NGT_OK(ng_rbm_sample(&rbm, a_base, n, 30, 5, NULL, prob, smp));
    for (c = 0; c < n; c++) {
        int code = 0;
        for (i = 0; i < NV; i++) {
            float v = smp[(size_t)c * NV + i], p = prob[(size_t)c * NV + i];
            NGT_CHECK(v == 0.0f || v == 1.0f, "sample %d unit %d is %g", c, i, (double)v);
            NGT_CHECK(p > 0.0f && p < 1.0f, "probability %g", (double)p);
            if (v == 1.0f) code |= 1 << i;
            mp += p / ((double)n * NV);
            ms += v / ((double)n * NV);
        }
        count[code]++;
    }
    for (st = 0; st < (1 << NV); st++) {
        float v[NV];
        double p, f = (double)count[st] / n, tol;
        for (i = 0; i < NV; i++) v[i] = (float)(st >> i & 1);
        p = exp(log_pstar_v(&h, v) - lz);
        tol = 5.0 * sqrt(p * (1.0 - p) / n) + 0.002;
        if (fabs(f - p) / tol > worst) worst = fabs(f - p) / tol;
        NGT_CHECK(fabs(f - p) <= tol, "state %d: frequency %.4f, exact probability %.4f", st, f, p);
    }
    printf("  %s sample 5x3: %d chains, worst |freq - p| / tolerance %.2f, mean prob %.4f, mean sample %.4f\n",
           be->iface->name, n, worst, mp, ms);
    NGT_CLOSE(mp, ms, 0.02, "mean probability vs mean sample");
    NGT_CHECK(ng_rbm_sample(&rbm, a_base, n, 0, 5, NULL, prob, smp) == NG_ERR_INVALID_ARG, "0 sweeps accepted");
    ng_clear_error();
    ng_rbm_free(&rbm);
    host_rbm_free(&h);
    free(prob);
    free(smp);
    return NGT_PASS;
}

/* ---- per-backend drivers ------------------------------------------------------------------- */

/* ---- RAISE ---------------------------------------------------------------------------------- */

/* RAISE on a 12 x 8 RBM (weights N(0,1)) against the exact log p(v) of 20 binary examples.
 * p_hat is unbiased for the forward-AIS marginal, which approaches p(v) as the path gets finer:
 * with 500 betas x 20 chains the per-example log estimates land within 0.1 nats here (0.03 with
 * 5000 betas; a double-counted base term once made them 1.7 nats low, which this catches); the
 * test allows 0.3 per example and 0.1 for the mean. Non-binary data are refused. */
static int check_raise(ng_backend *be) {
    enum { NV = 12, NH = 8, N = 20 };
    ng_rbm rbm;
    host_rbm h;
    ng_ais_config cfg;
    ng_raise_result r;
    float *v = random_binary(NV, N, 0.3f, 700), a_base[NV];
    double lz, est[N], exact_mean = 0.0, worst = 0.0;
    int c, small = small_shapes(be);
    NGT_OK(make_rbm(be, NV, NH, 701, 1.0f, 0.0f, 0.5f, 0.0f, 0.5f, &rbm, &h));
    lz = brute_log_z(&h);
    ng_rbm_base_rate_bias(v, NV, N, a_base);
    ng_ais_config_default(&cfg);
    cfg.n_betas = small ? 200 : 500;
    cfg.n_chains = small ? 10 : 20;
    cfg.seed = 3;
    NGT_OK(ng_rbm_raise(&rbm, a_base, v, N, &cfg, &r, est));
    for (c = 0; c < N; c++) {
        double ex = log_pstar_v(&h, v + (size_t)c * NV) - lz;
        exact_mean += ex / N;
        if (fabs(est[c] - ex) > worst) worst = fabs(est[c] - ex);
    }
    printf("  %s RAISE %dx%d: mean %.4f [%.4f, %.4f] exact %.4f, worst example |diff| %.4f\n",
           be->iface->name, NV, NH, r.mean_log_prob, r.lo, r.hi, exact_mean, worst);
    NGT_CHECK(worst <= 0.3, "per-example RAISE error %.4f > 0.3 nats", worst);
    NGT_CLOSE(r.mean_log_prob, exact_mean, 0.1, "RAISE mean log p vs exact");
    NGT_CHECK(r.lo <= r.mean_log_prob && r.mean_log_prob <= r.hi && r.n_examples == N,
              "interval [%g, %g] around %g, n %d", r.lo, r.hi, r.mean_log_prob, r.n_examples);
    v[3] = 0.5f;
    NGT_CHECK(ng_rbm_raise(&rbm, a_base, v, N, &cfg, &r, NULL) == NG_ERR_INVALID_ARG,
              "non-binary data accepted");
    ng_rbm_free(&rbm);
    host_rbm_free(&h);
    free(v);
    return NGT_PASS;
}

static int on_cpu(int (*fn)(ng_backend *)) {
    if (!g_cpu) return ngt_skip("CPU backend failed to initialise");
    return fn(g_cpu);
}
static int on_cuda(int (*fn)(ng_backend *)) {
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    return fn(g_cuda);
}
#define BOTH(name)                                                  \
    static int test_##name##_cpu(void) { return on_cpu(check_##name); }   \
    static int test_##name##_cuda(void) { return on_cuda(check_##name); }

BOTH(log_z_brute)
BOTH(log_z_chunks)
BOTH(log_z_independent)
BOTH(log_z_too_large)
BOTH(mean_log_prob)
BOTH(ais_small)
BOTH(ais_large)
BOTH(ais_independent)
BOTH(ais_deterministic)
BOTH(ais_bad_args)
BOTH(ais_runs)
BOTH(sample)
BOTH(raise)

int main(void) {
    ng_status s = ng_backend_cpu_init(&g_cpu);
    if (s != NG_OK) {
        printf("cpu backend: %s\n", ng_last_error());
        g_cpu = NULL;
    }
    s = ng_backend_cuda_init(0, &g_cuda);
    if (s != NG_OK) {
        snprintf(g_cuda_reason, sizeof g_cuda_reason, "no CUDA backend here: %s", ng_last_error());
        g_cuda = NULL;
        ng_clear_error();
    }
    NGT_RUN(test_base_rate_bias);
    NGT_RUN(test_log_z_brute_cpu);
    NGT_RUN(test_log_z_chunks_cpu);
    NGT_RUN(test_log_z_independent_cpu);
    NGT_RUN(test_log_z_too_large_cpu);
    NGT_RUN(test_mean_log_prob_cpu);
    NGT_RUN(test_ais_small_cpu);
    NGT_RUN(test_ais_large_cpu);
    NGT_RUN(test_ais_independent_cpu);
    NGT_RUN(test_ais_deterministic_cpu);
    NGT_RUN(test_ais_bad_args_cpu);
    NGT_RUN(test_ais_betas);
    NGT_RUN(test_ais_combine);
    NGT_RUN(test_raise_ais_paired);
    NGT_RUN(test_ais_runs_cpu);
    NGT_RUN(test_ais_coverage_cpu);
    NGT_RUN(test_sample_cpu);
    NGT_RUN(test_raise_cpu);
    NGT_RUN(test_log_z_brute_cuda);
    NGT_RUN(test_log_z_chunks_cuda);
    NGT_RUN(test_log_z_independent_cuda);
    NGT_RUN(test_log_z_too_large_cuda);
    NGT_RUN(test_mean_log_prob_cuda);
    NGT_RUN(test_ais_small_cuda);
    NGT_RUN(test_ais_large_cuda);
    NGT_RUN(test_ais_independent_cuda);
    NGT_RUN(test_ais_deterministic_cuda);
    NGT_RUN(test_ais_bad_args_cuda);
    NGT_RUN(test_ais_runs_cuda);
    NGT_RUN(test_sample_cuda);
    NGT_RUN(test_raise_cuda);
    ng_backend_free(g_cuda);
    ng_backend_free(g_cpu);
    return ngt_finish();
}
