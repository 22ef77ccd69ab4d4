/* bench_whiten.c: the cost of PRONG's statistics and eigendecompositions on one backend (CPU by default,
 * --device cuda on a GPU): for d = 250, 500, 1000 and n = 1000 samples, the median over 5 rounds of
 *   add   ng_whiten_add (centre on the batch mean, syrk of the lower triangle, merge)
 *   gemm  one full gemm X X^T of the same samples (the alternative to syrk: both triangles)
 *   eig   ng_whiten_compute (syevd of Sigma, U^T, U c)
 * and the sgemm GFLOP/s of this process, as a markdown table on stdout.
 *
 * bench_whiten --refresh [--threads N] [--device cpu|cuda] [--data-dir data] [--rounds R]: one PRONG
 * reparametrisation of the MNIST autoencoder (784-1000-500-250-30-250-500-1000-784, the net of the
 * paper's Figure 3; N_s = 1000 MNIST digits, eps 0.1), in both forms (canonical: new U, c, K per layer;
 * whitened: also V, d projected), with the eight eigendecompositions batched (ng_syevd_batched: on the
 * CPU concurrent on the threads) against one after another (the same backend with its batched slot
 * removed, so the wrapper runs the problems in turn: the path before batching). The two networks are
 * identical; their refreshes alternate, R rounds, so a changing load falls on both alike; medians of
 * the reparametrisation seconds (ng_net_whiten_refresh's times[1]: eigendecompositions, U^T, U c,
 * projections) and of the statistics pass (times[0]), and whether the batched network's state ends
 * bit-identical to the sequential one's, and the share of the cores other processes used meanwhile (from
 * /proc/stat less this process's rusage). One markdown row per form. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench_args.h"
#include "natgrad/backend.h"
#include "natgrad/data.h"
#include "natgrad/log.h"
#include "natgrad/net.h"
#include "natgrad/whiten.h"

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define MAX_ROUNDS 64

static int die(const char *what) {
    fprintf(stderr, "bench_whiten: %s: %s\n", what, ng_last_error());
    return 1;
}

/* CPU seconds used by the whole machine (busy time of all cores, /proc/stat) and by this process. */
static void cpu_seconds(double *machine, double *self) {
    unsigned long long v[8] = {0};
    struct rusage ru;
    FILE *f = fopen("/proc/stat", "r");
    double hz = (double)sysconf(_SC_CLK_TCK);
    *machine = 0.0;
    if (f) {
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) == 8)
            *machine = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / hz;
        fclose(f);
    }
    getrusage(RUSAGE_SELF, &ru);
    *self = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* The network's parameters and whitening state as bytes on the host (for the bit-identity check). */
static ng_status net_bytes(ng_model *m, int L, unsigned char **out, size_t *len) {
    size_t np = ng_model_size(m) * sizeof(float), off;
    int l;
    *len = np;
    for (l = 1; l <= L; l++) {
        ng_tensor u, c;
        NG_TRY(ng_net_whiten_state(m, l, &u, &c));
        *len += (ng_tensor_count(&u) + ng_tensor_count(&c)) * sizeof(float);
    }
    *out = (unsigned char *)malloc(*len);
    if (!*out) return ng_error(NG_ERR_OOM, "bench_whiten: host memory");
    NG_TRY(ng_get(m->be, *out, m->param_flat.data, np));
    for (l = 1, off = np; l <= L; l++) {
        ng_tensor u, c;
        NG_TRY(ng_net_whiten_state(m, l, &u, &c));
        NG_TRY(ng_get(m->be, *out + off, u.data, ng_tensor_count(&u) * sizeof(float)));
        off += ng_tensor_count(&u) * sizeof(float);
        NG_TRY(ng_get(m->be, *out + off, c.data, ng_tensor_count(&c) * sizeof(float)));
        off += ng_tensor_count(&c) * sizeof(float);
    }
    return NG_OK;
}

static int bench_refresh(const char *device, const char *data_dir, int threads, int rounds) {
    int r, form, ns = 1000;
    const float eps = 0.1f;
    ng_backend *be, seq;
    struct ng_backend_i seq_iface;
    ng_dataset ds = {0};
    float *x;
    if (!strcmp(device, "cpu")) {
        if (ng_backend_cpu_init(&be) != NG_OK) return die("cpu backend");
        if (threads) ng_cpu_set_threads(threads);
    } else if (!strcmp(device, "cuda")) {
        if (ng_backend_cuda_init(0, &be) != NG_OK) return die("cuda backend");
    } else {
        fprintf(stderr, "bench_whiten: --device %s (cpu or cuda)\n", device);
        return 2;
    }
    /* the sequential path: the same backend (same device, stream and context) without the batched slot */
    seq_iface = *be->iface;
    seq_iface.syevd_batched = NULL;
    seq = *be;
    seq.iface = &seq_iface;
    if (ng_dataset_load_named("mnist", data_dir, "train", &ds) != NG_OK) return die("MNIST (make data-mnist)");
    if (ds.n < ns) return fprintf(stderr, "bench_whiten: %d MNIST cases, %d needed\n", ds.n, ns), 1;
    if (ng_alloc(be, (size_t)ds.dim * ns * sizeof(float), (void **)&x) != NG_OK ||
        ng_set(be, x, ds.x, (size_t)ds.dim * ns * sizeof(float)) != NG_OK)
        return die("samples");
    printf("backend: %s\n\n", be->description);
    printf("| form | threads | reparametrisation, sequential s | batched s | sequential / batched | statistics s (batched run) | state bit-identical | other processes, %% of the cores |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    for (form = 2; form >= 1; form--) {
        ng_net_config cfg;
        ng_model *net_b, *net_s;
        ng_tensor xs = ng_tensor_matrix(x, ds.dim, ns, ds.dim);
        double tb[MAX_ROUNDS], tsq[MAX_ROUNDS], st[MAX_ROUNDS];
        unsigned char *bb, *bs;
        size_t lb, ls;
        int same;
        double m0, s0, m1, s1, t0, wall;
        ng_net_config_default(&cfg);
        if (ng_net_preset("mnist-autoencoder", &cfg) != NG_OK) return die("preset");
        cfg.seed = 1;
        cfg.chunk = ns;
        cfg.whiten = form;
        if (ng_net_create(be, &cfg, &net_b) != NG_OK || ng_net_create(&seq, &cfg, &net_s) != NG_OK) return die("networks");
        /* the whitened initialisation (layer by layer, not batched), then timed refreshes */
        if (ng_net_whiten_refresh(net_b, &xs, eps, 0, NULL) != NG_OK || ng_net_whiten_refresh(net_s, &xs, eps, 0, NULL) != NG_OK)
            return die("whitened initialisation");
        cpu_seconds(&m0, &s0);
        t0 = ng_time_s();
        for (r = 0; r < rounds; r++) {
            double tm_b[2] = {0, 0}, tm_s[2] = {0, 0};
            if (r % 2 == 0) {
                if (ng_net_whiten_refresh(net_s, &xs, eps, 1, tm_s) != NG_OK) return die("sequential refresh");
                if (ng_net_whiten_refresh(net_b, &xs, eps, 1, tm_b) != NG_OK) return die("batched refresh");
            } else {
                if (ng_net_whiten_refresh(net_b, &xs, eps, 1, tm_b) != NG_OK) return die("batched refresh");
                if (ng_net_whiten_refresh(net_s, &xs, eps, 1, tm_s) != NG_OK) return die("sequential refresh");
            }
            tb[r] = tm_b[1];
            tsq[r] = tm_s[1];
            st[r] = tm_b[0];
            fprintf(stderr, "bench_whiten: %s form, round %d/%d: reparametrisation %.3f s sequential, %.3f s batched\n",
                    form == 2 ? "canonical" : "whitened", r + 1, rounds, tsq[r], tb[r]);
        }
        wall = ng_time_s() - t0;
        cpu_seconds(&m1, &s1);
        if (net_bytes(net_b, cfg.n_layers, &bb, &lb) != NG_OK || net_bytes(net_s, cfg.n_layers, &bs, &ls) != NG_OK) return die("state");
        same = lb == ls && memcmp(bb, bs, lb) == 0;
        qsort(tb, (size_t)rounds, sizeof(double), cmpd);
        qsort(tsq, (size_t)rounds, sizeof(double), cmpd);
        qsort(st, (size_t)rounds, sizeof(double), cmpd);
        {
            long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
            double other = 100.0 * ((m1 - m0) - (s1 - s0)) / (wall * (double)(ncpu > 0 ? ncpu : 1));
            printf("| %s | %d | %.3f | %.3f | %.2f | %.3f | %s | %.0f |\n", form == 2 ? "canonical" : "whitened",
                   !strcmp(device, "cpu") ? omp_get_max_threads() : 0, tsq[rounds / 2], tb[rounds / 2], tsq[rounds / 2] / tb[rounds / 2],
                   st[rounds / 2], same ? "yes" : "NO", other < 0.0 ? 0.0 : other);
        }
        free(bb);
        free(bs);
        ng_net_free(net_b);
        ng_net_free(net_s);
    }
    ng_free(be, x);
    ng_dataset_free(&ds);
    ng_backend_free(be);
    return 0;
}

int main(int argc, char **argv) {
    ng_backend *be;
    ng_device dev = NG_DEVICE_CPU;
    int idx = -1, di, r, n = 1000;
    static const int ds[] = {250, 500, 1000};
    {
        const char *device = "cpu", *data_dir = "data";
        int refresh = 0, threads = 0, rounds = 5, threads_given = 0, rounds_given = 0, dir_given = 0;
        const ba_opt opts[] = {
            BA_DEV("--device", &device, "backend (--refresh: cpu or cuda)"),
            BA_SWITCH("--refresh", &refresh, "instead: one PRONG reparametrisation of the MNIST autoencoder, batched "
                                             "eigendecompositions against sequential ones"),
            {"--threads", BA_INT, &threads, 0, INT_MAX, 0, "N", "--refresh: CPU threads (0: OpenMP's default)", &threads_given, 0},
            {"--data-dir", BA_STR, &data_dir, 0, 0, 0, "DIR", "--refresh: where MNIST is", &dir_given, 0},
            {"--rounds", BA_INT, &rounds, 1, MAX_ROUNDS, 0, "R", "--refresh: alternating rounds (medians)", &rounds_given, 0},
            BA_END};
        const int rc = ba_parse("bench_whiten", "The cost of PRONG's statistics and eigendecompositions on one backend, for "
                                                "d = 250, 500, 1000 and n = 1000 samples; with --refresh, of PRONG's "
                                                "reparametrisation.", opts, argc, argv);
        if (rc != BA_RUN) return rc;
        if (!refresh && (threads_given || rounds_given || dir_given)) {
            fprintf(stderr, "bench_whiten: %s: only with --refresh\n", threads_given ? "--threads" : rounds_given ? "--rounds" : "--data-dir");
            return 2;
        }
        if (refresh && strcmp(device, "cpu") && strcmp(device, "cuda")) {
            fprintf(stderr, "bench_whiten: --device %s: not with --refresh; allowed: cpu or cuda\n", device);
            return 2;
        }
        if (refresh) return bench_refresh(device, data_dir, threads, rounds);
        if (ng_device_parse(device, &dev, &idx) != NG_OK) return 2;
    }
    if (ng_backend_init(dev, idx, &be, NULL, 0) != NG_OK) return fprintf(stderr, "bench_whiten: %s\n", ng_last_error()), 1;
    printf("backend: %s\n\n| d | n | add (syrk) ms | full gemm X X^T ms | add / gemm | eigendecomposition ms | sgemm GFLOP/s (d x d x n) |\n|---|---|---|---|---|---|---|\n",
           be->description);
    for (di = 0; di < 3; di++) {
        int d = ds[di];
        ng_whiten w;
        float *X, *C, *h;
        double ta[5], tg[5], te[5];
        size_t i;
        if (ng_whiten_init(be, d, n, &w) != NG_OK) return fprintf(stderr, "%s\n", ng_last_error()), 1;
        if (ng_alloc(be, sizeof(float) * ((size_t)d * n + (size_t)d * d), (void **)&X) != NG_OK) return 1;
        C = X + (size_t)d * n;
        h = (float *)malloc(sizeof(float) * (size_t)d * n);
        for (i = 0; i < (size_t)d * n; i++) h[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
        ng_set(be, X, h, sizeof(float) * (size_t)d * n);
        for (r = 0; r < 5; r++) {
            double t0;
            ng_whiten_reset(&w);
            ng_synchronize(be);
            t0 = ng_time_s();
            if (ng_whiten_add(&w, X, d, n, 0) != NG_OK) return 1;
            ng_synchronize(be);
            ta[r] = ng_time_s() - t0;
            t0 = ng_time_s();
            if (ng_gemm(be, 0, 1, d, d, n, 1.0f, X, d, X, d, 0.0f, C, d) != NG_OK) return 1;
            ng_synchronize(be);
            tg[r] = ng_time_s() - t0;
            t0 = ng_time_s();
            if (ng_whiten_compute(&w, 0.1f) != NG_OK) return fprintf(stderr, "%s\n", ng_last_error()), 1;
            ng_synchronize(be);
            te[r] = ng_time_s() - t0;
        }
        qsort(ta, 5, sizeof(double), cmpd);
        qsort(tg, 5, sizeof(double), cmpd);
        qsort(te, 5, sizeof(double), cmpd);
        printf("| %d | %d | %.2f | %.2f | %.2f | %.1f | %.1f |\n", d, n, 1e3 * ta[2], 1e3 * tg[2], ta[2] / tg[2], 1e3 * te[2],
               2.0 * d * d * n / tg[2] / 1e9);
        ng_free(be, X);
        free(h);
        ng_whiten_free(&w);
    }
    ng_backend_free(be);
    return 0;
}
