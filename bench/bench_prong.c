/* bench_prong.c: PRONG's cost per update relative to SGD's on the MNIST autoencoder
 * (784-1000-500-250-30-250-500-1000-784, sparse initialisation, Bernoulli outputs), both measured in
 * ONE process, interleaved, so that the load other processes put on a shared machine falls on both
 * alike (make bench-prong; bench/bench_prong.sh).
 *
 * Two networks on the CPU backend (or --device cuda): a plain one trained by SGD with momentum, a
 * whitened one trained by PRONG (natgrad/prong.h: SGD with momentum on V, d and a reparametrisation
 * every T updates). After the whitened initialisation (PRONG's update 0, timed apart), R rounds
 * each run a block of T SGD updates and then a block of T PRONG updates (updates kT+1 .. (k+1)T, so
 * each PRONG block holds exactly one reparametrisation). An update is what the trainer does: the
 * next batch, the gradient, the preconditioner's observe and apply, the update step. Reported:
 * seconds per update of each (the sum over the rounds), their ratio and the median of the rounds'
 * ratios, the ratio of the CPU time this process used in the PRONG blocks to the SGD blocks' (less
 * sensitive to other processes than wall time; equal to the work ratio on one thread), PRONG's seconds in the statistics and in the reparametrisation (eigendecompositions and
 * projections; the preconditioner's prong_stats_s, prong_reparam_s) as % of its time, the
 * whitened initialisation, and the CPU share other processes took (from /proc/stat less this
 * process's rusage, in % of all cores) with the load average.
 * Usage: bench_prong [--batch 128] [--T 100] [--ns 1000] [--eps 0.1] [--rounds 3] [--threads 0]
 *                    [--device cpu] [--data-dir data] [--csv FILE] [--form canonical|whitened]
 *                    (bench_prong --help lists them with their ranges)
 * --form: PRONG's canonical form (cfg.whiten = 2, natgrad's default) or the whitened coordinates
 * (cfg.whiten = 1).
 * Prints one markdown row and appends one CSV row (header when the file is new).
 *        bench_prong --syevd N: LAPACK's ssyevd of an N x N covariance (of 2N random samples) three
 * times on one OpenBLAS thread and three times on two, as a markdown table (the CPU backend's
 * syevd runs on one thread: host/backend/cpu.c says why). */
#include <cblas.h>
#include <lapacke.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench_args.h"
#include "natgrad/data.h"
#include "natgrad/log.h"
#include "natgrad/net.h"
#include "natgrad/prong.h"
#include "natgrad/update.h"

#define MAX_ROUNDS 100

static int die(const char *what) {
    fprintf(stderr, "bench_prong: %s: %s\n", what, ng_last_error());
    return 1;
}

/* CPU seconds the whole machine was busy and this process used (as bench_net.c) */
static void cpu_seconds(double *machine, double *self) {
    unsigned long long v[10] = {0};
    struct rusage ru;
    FILE *f = fopen("/proc/stat", "r");
    double hz = (double)sysconf(_SC_CLK_TCK);
    *machine = 0.0;
    if (f) {
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                   &v[6], &v[7]) == 8)
            *machine = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / hz;
        fclose(f);
    }
    getrusage(RUSAGE_SELF, &ru);
    *self = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static double loadavg1(void) {
    double l = 0.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = 0.0;
        fclose(f);
    }
    return l;
}

/* ssyevd of an n x n covariance on 1 and 2 OpenBLAS threads, 3 runs each */
static int bench_syevd(int n) {
    float *X = malloc(sizeof(float) * (size_t)n * 2 * n), *A = malloc(sizeof(float) * (size_t)n * n),
          *B = malloc(sizeof(float) * (size_t)n * n), *w = malloc(sizeof(float) * (size_t)n);
    uint64_t z = 88172645463325252ull;
    size_t i;
    int th, r;
    if (!X || !A || !B || !w) return 1;
    for (i = 0; i < (size_t)n * 2 * n; i++) { /* xorshift64, uniform in [0, 1) */
        z ^= z << 13;
        z ^= z >> 7;
        z ^= z << 17;
        X[i] = (float)((z >> 40) * (1.0 / 16777216.0));
    }
    cblas_ssyrk(CblasColMajor, CblasLower, CblasNoTrans, n, 2 * n, 1.0f / (float)(2 * n), X, n, 0.0f, A, n);
    printf("| OpenBLAS threads | ssyevd %d x %d, 3 runs (s) | load average (1 min) before |\n|---|---|---|\n", n, n);
    for (th = 1; th <= 2; th++) {
        double l = loadavg1();
        openblas_set_num_threads(th);
        printf("| %d |", th);
        for (r = 0; r < 3; r++) {
            double t0;
            int info;
            memcpy(B, A, sizeof(float) * (size_t)n * n);
            t0 = ng_time_s();
            info = LAPACKE_ssyevd(LAPACK_COL_MAJOR, 'V', 'L', n, B, n, w);
            printf(" %.3f%s", ng_time_s() - t0, info ? " (failed)" : "");
        }
        printf(" | %.2f |\n", l);
    }
    free(X);
    free(A);
    free(B);
    free(w);
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* one trainer update t of model m */
static ng_status update(ng_batches *b, ng_model *m, ng_precond *p, ng_update *u, uint64_t t) {
    ng_tensor x;
    NG_TRY(ng_batches_next(b, &x));
    NG_TRY(ng_model_gradient(m, &x, NULL));
    NG_TRY(ng_update_penalize(u, m, t));
    NG_TRY(ng_precond_observe(p, m, t));
    NG_TRY(ng_precond_apply(p, m, t));
    return ng_update_step(u, m, t);
}

static ng_status prong_times(ng_precond *p, double *stats, double *reparam) {
    double v[3];
    NG_TRY(p->iface->log_values(p, v));
    *stats = v[1];
    *reparam = v[2];
    return NG_OK;
}

int main(int argc, char **argv) {
    int batch = 128, T = 100, ns = 1000, rounds = 3, threads = 0, form = 2, r, k;
    float eps = 0.1f;
    const char *device = "cpu", *data_dir = "data", *csv = NULL;
    ng_backend *be;
    ng_dataset ds = {0};
    ng_net_config cfg, wcfg;
    ng_model *sgd_net, *prong_net;
    ng_update *u_sgd, *u_prong;
    ng_precond *p_id, *p_prong;
    ng_prong_config pcfg;
    ng_sgd_config scfg = {0};
    ng_batches b_sgd, b_prong;
    double t0, t_sgd = 0, t_prong = 0, t_init, ratio[MAX_ROUNDS], st0, rp0, st1, rp1, st_init, rp_init;
    double mach0, self0, mach1, self1, other, la[3] = {0, 0, 0}, cpu_sgd = 0, cpu_prong = 0, m_, c0_, c1_;
    uint64_t tp = 0, ts = 0;
    ng_cpu_blas_reexec(argc, argv);
    {
        const char *form_s = "canonical";
        int syevd = 0;
        const ba_opt opts[] = {
            BA_I("--batch", &batch, 1, INT_MAX, "M", "mini-batch size"),
            BA_I("--T", &T, 1, INT_MAX, "T", "updates between PRONG's reparametrisations (one block)"),
            BA_I("--ns", &ns, 2, INT_MAX, "N", "samples of PRONG's statistics (at most the training cases)"),
            BA_F_GT("--eps", &eps, 0, HUGE_VAL, "E", "PRONG's damping epsilon"),
            BA_I("--rounds", &rounds, 1, MAX_ROUNDS, "R", "rounds of one SGD block and one PRONG block"),
            BA_I("--threads", &threads, 0, INT_MAX, "N", "CPU threads (0: OpenMP's default)"),
            BA_CHOOSE("--device", &device, "cpu|cuda", "backend"),
            BA_S("--data-dir", &data_dir, "DIR", "where MNIST is"),
            BA_S("--csv", &csv, "FILE", "CSV file a row is appended to"),
            BA_CHOOSE("--form", &form_s, "canonical|whitened", "PRONG's canonical form (natgrad's default) or the whitened coordinates"),
            BA_I("--syevd", &syevd, 0, INT_MAX, "N", "instead: time LAPACK's ssyevd of an N x N covariance on 1 and 2 threads (0: off)"),
            BA_END};
        const int rc = ba_parse("bench_prong", "PRONG's cost per update relative to SGD's on the MNIST autoencoder, both in one "
                                               "process, interleaved (make bench-prong).", opts, argc, argv);
        if (rc != BA_RUN) return rc;
        if (syevd > 0) return bench_syevd(syevd);
        form = !strcmp(form_s, "canonical") ? 2 : 1;
    }
    if (strcmp(device, "cpu") == 0) {
        if (ng_backend_cpu_init(&be) != NG_OK) return die("cpu backend");
        if (threads) ng_cpu_set_threads(threads);
    } else if (strcmp(device, "cuda") == 0) {
        if (ng_backend_cuda_init(0, &be) != NG_OK) return die("cuda backend");
    } else {
        fprintf(stderr, "bench_prong: --device %s (cpu or cuda)\n", device);
        return 2;
    }
    if (ng_dataset_load_named("mnist", data_dir, "train", &ds) != NG_OK) return die("MNIST (make data-mnist)");
    if (ns > ds.n) {
        fprintf(stderr, "bench_prong: --ns %d exceeds the %d training cases\n", ns, ds.n);
        return 2;
    }
    ng_net_config_default(&cfg);
    if (ng_net_preset("mnist-autoencoder", &cfg) != NG_OK) return die("preset");
    cfg.seed = 1;
    cfg.chunk = batch > ns ? batch : ns;
    wcfg = cfg;
    wcfg.whiten = form;
    ng_prong_config_default(&pcfg);
    pcfg.eps = eps;
    pcfg.T = T;
    pcfg.ns = ns;
    scfg.lr = 0.01f;
    scfg.momentum = 0.9f;
    if (ng_net_create(be, &cfg, &sgd_net) != NG_OK || ng_net_create(be, &wcfg, &prong_net) != NG_OK) return die("networks");
    if (ng_update_sgd_init(be, sgd_net, &scfg, &u_sgd) != NG_OK || ng_update_sgd_init(be, prong_net, &scfg, &u_prong) != NG_OK)
        return die("update rules");
    if (ng_precond_identity_init(be, &p_id) != NG_OK ||
        ng_precond_prong_init(be, prong_net, &pcfg, ds.x, ds.n, u_prong, &p_prong) != NG_OK)
        return die("preconditioners");
    if (ng_batches_init(&b_sgd, be, ds.x, ds.dim, ds.n, batch, 1, 0, 1) != NG_OK ||
        ng_batches_init(&b_prong, be, ds.x, ds.dim, ds.n, batch, 1, 0, 1) != NG_OK)
        return die("batches");
    /* warm-up: one SGD update; PRONG's update 0 is the whitened initialisation (timed apart) */
    if (update(&b_sgd, sgd_net, p_id, u_sgd, ts++) != NG_OK) return die("SGD update");
    t0 = ng_time_s();
    if (update(&b_prong, prong_net, p_prong, u_prong, tp++) != NG_OK || ng_synchronize(be) != NG_OK) return die("PRONG update 0");
    t_init = ng_time_s() - t0;
    if (prong_times(p_prong, &st_init, &rp_init) != NG_OK) return die("PRONG times");
    st0 = st_init;
    rp0 = rp_init;
    cpu_seconds(&mach0, &self0);
    for (r = 0; r < rounds; r++) {
        double a, c;
        cpu_seconds(&m_, &c0_);
        t0 = ng_time_s();
        for (k = 0; k < T; k++)
            if (update(&b_sgd, sgd_net, p_id, u_sgd, ts++) != NG_OK) return die("SGD update");
        if (ng_synchronize(be) != NG_OK) return die("sync");
        a = ng_time_s() - t0;
        cpu_seconds(&m_, &c1_);
        cpu_sgd += c1_ - c0_;
        t0 = ng_time_s();
        for (k = 0; k < T; k++)
            if (update(&b_prong, prong_net, p_prong, u_prong, tp++) != NG_OK) return die("PRONG update");
        if (ng_synchronize(be) != NG_OK) return die("sync");
        c = ng_time_s() - t0;
        cpu_seconds(&m_, &c0_);
        cpu_prong += c0_ - c1_;
        t_sgd += a;
        t_prong += c;
        ratio[r] = c / a;
        fprintf(stderr, "bench_prong: round %d/%d: SGD %.1f ms, PRONG %.1f ms per update (x%.2f)\n", r + 1, rounds,
                1e3 * a / T, 1e3 * c / T, c / a);
    }
    cpu_seconds(&mach1, &self1);
    if (prong_times(p_prong, &st1, &rp1) != NG_OK) return die("PRONG times");
    {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        double wall = t_sgd + t_prong;
        FILE *f = fopen("/proc/loadavg", "r");
        if (f) {
            if (fscanf(f, "%lf %lf %lf", &la[0], &la[1], &la[2]) != 3) la[0] = la[1] = la[2] = 0;
            fclose(f);
        }
        other = 100.0 * ((mach1 - mach0) - (self1 - self0)) / ((double)(nc > 0 ? nc : 1) * wall);
        if (other < 0) other = 0;
    }
    qsort(ratio, (size_t)rounds, sizeof *ratio, cmp_double);
    {
        int n = rounds * T;
        double sgd_ms = 1e3 * t_sgd / n, pr_ms = 1e3 * t_prong / n, st = st1 - st0, rp = rp1 - rp0;
        double med = rounds % 2 ? ratio[rounds / 2] : 0.5 * (ratio[rounds / 2 - 1] + ratio[rounds / 2]);
        printf("| %s | %s | %d | %d | %d | %d | %.1f | %.1f | **%.2f** | %.2f | %.2f | %.1f | %.1f %% | %.1f %% | %.2f s | %.0f %% | %.1f %.1f %.1f |\n",
               device, form == 2 ? "canonical" : "whitened", batch, T, ns, rounds, sgd_ms, pr_ms, t_prong / t_sgd, med, cpu_prong / cpu_sgd, 1e3 * (t_prong - st - rp) / n, 100 * st / t_prong,
               100 * rp / t_prong, t_init, other, la[0], la[1], la[2]);
        if (csv) {
            FILE *f = fopen(csv, "r");
            int fresh = !f;
            if (f) fclose(f);
            f = fopen(csv, "a");
            if (!f) {
                fprintf(stderr, "bench_prong: cannot write %s\n", csv);
                return 1;
            }
            if (fresh)
                fprintf(f, "device,form,batch,T,ns,rounds,sgd_ms,prong_ms,ratio,median_round_ratio,cpu_time_ratio,prong_ms_between_refreshes,"
                           "stats_pct,reparam_pct,init_s,init_stats_s,init_reparam_s,other_cpu_pct,load1,load5,load15\n");
            fprintf(f, "%s,%s,%d,%d,%d,%d,%.3f,%.3f,%.4f,%.4f,%.4f,%.3f,%.2f,%.2f,%.3f,%.3f,%.3f,%.1f,%.2f,%.2f,%.2f\n", device, form == 2 ? "canonical" : "whitened", batch, T, ns,
                    rounds, sgd_ms, pr_ms, t_prong / t_sgd, med, cpu_prong / cpu_sgd, 1e3 * (t_prong - st - rp) / n, 100 * st / t_prong, 100 * rp / t_prong,
                    t_init, st_init, rp_init, other, la[0], la[1], la[2]);
            fclose(f);
        }
    }
    ng_batches_free(&b_sgd);
    ng_batches_free(&b_prong);
    ng_precond_free(p_id);
    ng_precond_free(p_prong);
    ng_update_free(u_sgd);
    ng_update_free(u_prong);
    ng_net_free(sgd_net);
    ng_net_free(prong_net);
    ng_dataset_free(&ds);
    ng_backend_free(be);
    return 0;
}
