/* bench_profile.c: the cost of natgrad's profiling ranges (natgrad/profile.h), off and on.
 * Times N push/pop pairs of one registered range and N flop-counter calls with the profile off
 * (the state of every run without --profile), then N pairs with the profile measuring on the CPU
 * backend. Prints one markdown row per case and appends CSV rows to --csv.
 * usage: bench_profile [--n N] [--csv PATH] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_args.h"
#include "natgrad/backend.h"
#include "natgrad/log.h"
#include "natgrad/profile.h"

static double pairs(long n) {
    long i;
    double t0 = ng_time_s();
    for (i = 0; i < n; i++) {
        ng_range_push_cat(NG_CAT_UPDATE, "bench range");
        ng_range_pop();
    }
    return (ng_time_s() - t0) / (double)n;
}

static double counts(long n) {
    long i;
    double t0 = ng_time_s();
    for (i = 0; i < n; i++) ng_profile_count(2.0 * (double)i, 1);
    return (ng_time_s() - t0) / (double)n;
}

/* the best of 5 rounds (the machine is shared: the minimum is the least disturbed) */
static double best(double (*f)(long), long n) {
    double b = 1e30;
    int r;
    for (r = 0; r < 5; r++) {
        double t = f(n);
        if (t < b) b = t;
    }
    return b;
}

int main(int argc, char **argv) {
    long n = 2000000;
    const char *csv = "bench/results/bench_profile.csv";
    ng_backend *be = NULL;
    ng_profile_config cfg;
    double off, cnt, on;
    FILE *f;
    const char *build = ng_cuda_compiled() ? "CUDA build (NVTX calls compiled in; no tool attached)" : "CPU-only build (no NVTX)";
    {
        const ba_opt opts[] = {
            BA_L("--n", &n, 1, LONG_MAX, "N", "push/pop pairs (and counter calls) timed per case"),
            BA_S("--csv", &csv, "PATH", "CSV file rows are appended to"),
            BA_END};
        const int rc = ba_parse("bench_profile", "The cost of natgrad's profiling ranges, off and on (make bench-profile).",
                                opts, argc, argv);
        if (rc != BA_RUN) return rc;
    }
    off = best(pairs, n);
    cnt = best(counts, n);
    if (ng_backend_cpu_init(&be) != NG_OK) return fprintf(stderr, "bench_profile: %s\n", ng_last_error()), 1;
    memset(&cfg, 0, sizeof cfg);
    cfg.measure = 1;
    cfg.max_trace = 16; /* the trace fills at once: the rest is the table's cost only */
    if (ng_profile_start(be, &cfg) != NG_OK) return fprintf(stderr, "bench_profile: %s\n", ng_last_error()), 1;
    on = best(pairs, n / 4 > 0 ? n / 4 : 1);
    ng_profile_finish();
    ng_backend_free(be);
    printf("| %s | range push + pop, profile off | %.1f ns |\n", build, 1e9 * off);
    printf("| %s | flop counter (backend wrappers), profile off | %.2f ns |\n", build, 1e9 * cnt);
    printf("| %s | range push + pop, --profile on (CPU clock) | %.1f ns |\n", build, 1e9 * on);
    f = fopen(csv, "a");
    if (!f) return fprintf(stderr, "bench_profile: cannot write %s\n", csv), 1;
    fprintf(f, "\"%s\",pair_off_ns,%.3f\n\"%s\",count_off_ns,%.3f\n\"%s\",pair_on_ns,%.3f\n", build, 1e9 * off, build,
            1e9 * cnt, build, 1e9 * on);
    fclose(f);
    return 0;
}
