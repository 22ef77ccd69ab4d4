/* ais_coverage.c: how often does the AIS interval cover the exact log Z? (bench/ais_coverage.sh)
 * A 784 x 20 RBM (weights N(0, w_std^2), visible biases N(-1, 0.5^2), hidden biases N(-1, 0.5^2),
 * from a fixed test stream) has its log Z computed exactly by enumerating the 2^20 hidden states
 * (ng_rbm_log_z_exact). AIS from a base-rate model (pixel rate 0.3) then runs with seeds
 * 1..SEEDS, and for each seed we record whether the reported 95 % bootstrap interval over runs
 * and chains contains the exact value, and whether natgrad 0.1's 3-sigma interval (kept in
 * ng_ais_result.sigma3_lo/hi) does. Prints one CSV row per seed and a summary line.
 * usage: ais_coverage SEEDS BETAS CHAINS RUNS W_STD [linear|sm08]   (--help: their ranges) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_args.h"
#include "natgrad/backend.h"
#include "natgrad/eval.h"
#include "natgrad/log.h"
#include "natgrad/rng.h"

int main(int argc, char **argv) {
    int seeds = 0, betas = 0, chains = 0, runs = 0, nv = 784, nh = 20, i, cov = 0, cov3 = 0, sd;
    float w_std = 0.0f, *W, *a, *b, *abase, *data;
    ng_backend *be = NULL;
    ng_rbm rbm;
    double exact, sum_err = 0.0, sum_err2 = 0.0, sum_w = 0.0, sum_ess = 0.0, t0;
    uint64_t key;
    ng_ais_config cfg;
    char note[256];
    const char *schedule = "linear";
    {
        const ba_opt opts[] = {
            {"SEEDS", BA_INT, &seeds, 1, INT_MAX, BA_REQUIRED, NULL, "AIS seeds 1..SEEDS, one CSV row each", NULL, 0},
            {"BETAS", BA_INT, &betas, 1, INT_MAX, BA_REQUIRED, NULL, "inverse temperatures of the linear schedule", NULL, 0},
            {"CHAINS", BA_INT, &chains, 1, INT_MAX, BA_REQUIRED, NULL, "chains per run", NULL, 0},
            {"RUNS", BA_INT, &runs, 1, NG_AIS_MAX_RUNS, BA_REQUIRED, NULL, "independent runs (the bootstrap's)", NULL, 0},
            {"W_STD", BA_FLOAT, &w_std, 0, HUGE_VAL, BA_REQUIRED, NULL, "standard deviation of the weights", NULL, 0},
            {"SCHEDULE", BA_CHOICE, &schedule, 0, 0, 0, "linear|sm08", "the beta schedule (sm08: Salakhutdinov & Murray's, BETAS unused)", NULL, 0},
            BA_END};
        const int rc = ba_parse("ais_coverage", "How often the AIS interval covers the exact log Z of a 784 x 20 RBM (one CSV "
                                                "row per seed on stdout, a summary line on stderr; bench/ais_coverage.sh).",
                                opts, argc, argv);
        if (rc != BA_RUN) return rc;
    }
    if (ng_backend_init(NG_DEVICE_CPU, -1, &be, note, sizeof note) != NG_OK) {
        fprintf(stderr, "ais_coverage: %s\n", ng_last_error());
        return 1;
    }
    W = malloc(sizeof(float) * nv * nh);
    a = malloc(sizeof(float) * nv);
    b = malloc(sizeof(float) * nh);
    abase = malloc(sizeof(float) * nv);
    data = malloc(sizeof(float) * nv * 100);
    key = ng_rng_stream_key(2026, NG_RNG_TEST);
    ng_rng_fill_normal(W, (size_t)nv * nh, 0.0f, w_std, key, 0);
    ng_rng_fill_normal(a, (size_t)nv, -1.0f, 0.5f, key, 1);
    ng_rng_fill_normal(b, (size_t)nh, -1.0f, 0.5f, key, 2);
    for (i = 0; i < nv * 100; i++) data[i] = ng_rng_uniform(key, 3, (uint64_t)i) < 0.3f ? 1.0f : 0.0f;
    ng_rbm_base_rate_bias(data, nv, 100, abase);
    if (ng_rbm_init(be, nv, nh, &rbm) != NG_OK || ng_rbm_set_params(&rbm, W, a, b) != NG_OK ||
        ng_rbm_log_z_exact(&rbm, &exact) != NG_OK) {
        fprintf(stderr, "ais_coverage: %s\n", ng_last_error());
        return 1;
    }
    ng_ais_config_default(&cfg);
    cfg.n_betas = betas;
    cfg.n_chains = chains;
    cfg.n_runs = runs;
    if (strcmp(schedule, "sm08") == 0) cfg.schedule = NG_AIS_SM08;
    printf("seed,log_z,lo,hi,sigma3_lo,sigma3_hi,exact,ess,min_run_ess,covered,covered_sigma3\n");
    t0 = ng_time_s();
    for (sd = 1; sd <= seeds; sd++) {
        ng_ais_result r;
        int c, c3;
        cfg.seed = (uint64_t)sd;
        if (ng_rbm_ais(&rbm, abase, &cfg, &r) != NG_OK) {
            fprintf(stderr, "ais_coverage: %s\n", ng_last_error());
            return 1;
        }
        c = r.log_z_lo <= exact && exact <= r.log_z_hi;
        c3 = r.sigma3_lo <= exact && exact <= r.sigma3_hi;
        cov += c;
        cov3 += c3;
        sum_err += r.log_z - exact;
        sum_err2 += (r.log_z - exact) * (r.log_z - exact);
        sum_w += r.log_z_hi - r.log_z_lo;
        sum_ess += r.ess;
        printf("%d,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.2f,%.2f,%d,%d\n", sd, r.log_z, r.log_z_lo, r.log_z_hi,
               r.sigma3_lo, r.sigma3_hi, exact, r.ess, r.min_run_ess, c, c3);
    }
    fprintf(stderr,
            "# 784x20 w_std %g, %d betas (%s) x %d chains x %d runs, %d seeds: exact %.4f; mean error %+.4f, "
            "rms %.4f; mean 95%% width %.4f; mean ESS %.1f; covered %d/%d (95%% bootstrap), %d/%d (old 3-sigma); "
            "%.1f s\n",
            (double)w_std, betas, cfg.schedule == NG_AIS_SM08 ? "sm08" : "linear", chains, runs, seeds, exact,
            sum_err / seeds, sqrt(sum_err2 / seeds), sum_w / seeds, sum_ess / seeds, cov, seeds, cov3, seeds,
            ng_time_s() - t0);
    ng_rbm_free(&rbm);
    ng_backend_free(be);
    return 0;
}
