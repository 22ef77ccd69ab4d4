/* bench_factors.c: K-FAC's Kronecker-factor accumulation (make bench-factors). For the factors of
 * the MNIST autoencoder 784-1000-500-250-30-250-500-1000-784 (A-bar factors of size d_l + 1, G
 * factors of size d_l; with --tridiag also the off-diagonal cross factors) and k cases, the moving
 * average F = eps F + (1 - eps) / k X X^T of every factor is timed two ways on one backend:
 *   fused   one NG_OP_FACTOR_UPDATE call per 32 factors (what host/optim/kfac.c does): CUDA: one
 *           launch, scale + blend + symmetric mirror in one pass; CPU: ssyrk with beta + mirror;
 *   plain   per factor syrk into a temporary, axpby blend into the factor, symmetrisation (the
 *           sequence without a fused op: two more passes over every factor).
 * Next to the sgemm GFLOP/s of the same process at the largest factor's shape (1001 x 1001 x k).
 * Flops counted as the symmetric rank-k update: n (n + 1) k per symmetric factor, 2 r c k per
 * cross factor. Prints one markdown row per k and appends CSV rows.
 * usage: bench_factors [--device cpu|cuda] [--k 125,250,1000] [--reps N] [--tridiag] [--csv PATH] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_args.h"
#include "natgrad/backend.h"
#include "natgrad/log.h"

#define now ng_time_s
#define NF 64

static const int dims[] = {784, 1000, 500, 250, 30, 250, 500, 1000, 784};
#define L 8

static int die(const char *what) {
    fprintf(stderr, "bench_factors: %s: %s\n", what, ng_last_error());
    return 1;
}

int main(int argc, char **argv) {
    const char *device = "cpu", *csv = "bench/results/bench_factors.csv", *klist = "125,250,1000";
    int reps = 10, tri = 0, i, nf = 0;
    ng_device dev;
    int dev_index;
    ng_backend *be;
    int rows[NF], cols[NF], xi[NF], yi[NF];
    float *C[NF], *X[L + 1], *G[L + 1], *tmp;
    size_t need = 0;
    void *mem;
    char kbuf[256], *tok;
    FILE *f;
    ng_cpu_blas_reexec(argc, argv);
    {
        const ba_opt opts[] = {
            BA_DEV("--device", &device, "backend (cuda:N: that GPU)"),
            BA_INT_LIST("--k", &klist, 1, INT_MAX, 0, "K1,K2,...", "sizes k timed, one row each"),
            BA_I("--reps", &reps, 1, INT_MAX, "N", "timed repetitions"),
            BA_SWITCH("--tridiag", &tri, "also the off-diagonal factors of the block-tridiagonal inverse"),
            BA_S("--csv", &csv, "PATH", "CSV file rows are appended to"),
            BA_END};
        const int rc = ba_parse("bench_factors", "The fused K-FAC factor update against plain gemms, on the MNIST "
                                                 "autoencoder's factors (make bench-factors).", opts, argc, argv);
        if (rc != BA_RUN) return rc;
    }
    if (ng_device_parse(device, &dev, &dev_index) != NG_OK) return die("--device");
    if (ng_backend_init(dev, dev_index, &be, NULL, 0) != NG_OK) return die("backend");
    /* the factors: A_l (d_l + 1) for l = 0..L-1 on statistics a_l, G_l (d_l) for l = 1..L on g_l */
    for (i = 0; i < L; i++) rows[nf] = cols[nf] = dims[i] + 1, xi[nf] = yi[nf] = i, nf++;
    for (i = 1; i <= L; i++) rows[nf] = cols[nf] = dims[i], xi[nf] = yi[nf] = 100 + i, nf++;
    if (tri)
        for (i = 1; i < L; i++) {
            rows[nf] = dims[i - 1] + 1, cols[nf] = dims[i] + 1, xi[nf] = i - 1, yi[nf] = i, nf++;
            rows[nf] = dims[i], cols[nf] = dims[i + 1], xi[nf] = 100 + i, yi[nf] = 100 + i + 1, nf++;
        }
    snprintf(kbuf, sizeof kbuf, "%s", klist);
    f = fopen(csv, "a");
    if (f && ftell(f) == 0)
        fprintf(f, "backend,factors,k,fused_ms,plain_ms,plain_over_fused,fused_gflops,plain_gflops,sgemm_gflops\n");
    printf("| backend | factors | k | fused ms | plain ms | plain / fused | fused GFLOP/s | plain GFLOP/s | sgemm GFLOP/s (same process) |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    for (tok = strtok(kbuf, ","); tok; tok = strtok(NULL, ",")) {
        int k = atoi(tok), r, maxn = 0;
        double flops = 0.0, t0, t_fused, t_plain, t_gemm;
        float eps = 0.95f, alpha;
        float *p;
        ng_op_args o;
        if (k < 1) continue;
        need = 0;
        for (i = 0; i < nf; i++) {
            need += (size_t)rows[i] * cols[i];
            flops += rows[i] == cols[i] && xi[i] == yi[i] ? (double)rows[i] * (rows[i] + 1) * k : 2.0 * rows[i] * cols[i] * k;
            if (rows[i] > maxn) maxn = rows[i];
        }
        for (i = 0; i <= L; i++) need += (size_t)(dims[i] + 1) * k * 2;
        need += (size_t)maxn * maxn * 2 + (size_t)maxn * k;
        if (ng_alloc(be, need * sizeof(float), &mem) != NG_OK) return die("alloc");
        p = (float *)mem;
        for (i = 0; i < nf; i++) C[i] = p, p += (size_t)rows[i] * cols[i];
        for (i = 0; i <= L; i++) X[i] = p, p += (size_t)(dims[i] + 1) * k, G[i] = p, p += (size_t)(dims[i] + 1) * k;
        tmp = p;
        if (ng_fill_uniform(be, need, (float *)mem, 7, (uint64_t)k) != NG_OK) return die("fill");
        alpha = (1.0f - eps) / (float)k;
        /* fused */
        memset(&o, 0, sizeof o);
        o.op = NG_OP_FACTOR_UPDATE;
        o.factor_update.k = k;
        o.factor_update.beta = eps;
        t_fused = 0.0;
        for (r = -1; r < reps; r++) {
            int j;
            if (ng_synchronize(be) != NG_OK) return die("sync");
            t0 = now();
            o.factor_update.count = 0;
            for (j = 0; j < nf; j++) {
                ng_factor_entry *e = &o.factor_update.e[o.factor_update.count++];
                const float *xa = xi[j] >= 100 ? G[xi[j] - 100] : X[xi[j]], *ya = yi[j] >= 100 ? G[yi[j] - 100] : X[yi[j]];
                e->rows = rows[j], e->cols = cols[j], e->X = xa, e->ldx = rows[j], e->Y = ya, e->ldy = cols[j];
                e->alpha = alpha, e->C = C[j], e->ldc = rows[j];
                if (o.factor_update.count == NG_FACTOR_UPDATE_MAX || j == nf - 1) {
                    if (ng_run_op(be, &o) != NG_OK) return die("factor_update");
                    o.factor_update.count = 0;
                }
            }
            if (ng_synchronize(be) != NG_OK) return die("sync");
            if (r >= 0) t_fused += now() - t0;
        }
        t_fused /= reps;
        /* plain: syrk / gemm into tmp, axpby blend, symmetrise */
        t_plain = 0.0;
        for (r = -1; r < reps; r++) {
            int j;
            if (ng_synchronize(be) != NG_OK) return die("sync");
            t0 = now();
            for (j = 0; j < nf; j++) {
                const float *xa = xi[j] >= 100 ? G[xi[j] - 100] : X[xi[j]], *ya = yi[j] >= 100 ? G[yi[j] - 100] : X[yi[j]];
                size_t n = (size_t)rows[j] * cols[j];
                if (xa == ya && rows[j] == cols[j]) {
                    if (ng_syrk(be, 0, rows[j], k, 1.0f / (float)k, xa, rows[j], 0.0f, tmp, rows[j]) != NG_OK) return die("syrk");
                    if (ng_symmetrize_lower(be, rows[j], tmp, rows[j], 0.0f) != NG_OK) return die("symmetrize");
                } else if (ng_gemm(be, 0, 1, rows[j], cols[j], k, 1.0f / (float)k, xa, rows[j], ya, cols[j], 0.0f, tmp, rows[j]) != NG_OK)
                    return die("gemm");
                if (ng_axpby(be, n, 1.0f - eps, tmp, eps, C[j]) != NG_OK) return die("axpby");
            }
            if (ng_synchronize(be) != NG_OK) return die("sync");
            if (r >= 0) t_plain += now() - t0;
        }
        t_plain /= reps;
        /* sgemm at the largest factor's shape */
        t_gemm = 0.0;
        for (r = -1; r < reps; r++) {
            if (ng_synchronize(be) != NG_OK) return die("sync");
            t0 = now();
            if (ng_gemm(be, 0, 1, maxn, maxn, k, 1.0f, X[1], maxn, G[1], maxn, 0.0f, tmp, maxn) != NG_OK) return die("gemm");
            if (ng_synchronize(be) != NG_OK) return die("sync");
            if (r >= 0) t_gemm += now() - t0;
        }
        t_gemm /= reps;
        {
            double gf = flops / t_fused * 1e-9, gp = flops / t_plain * 1e-9, gs = 2.0 * maxn * maxn * k / t_gemm * 1e-9;
            printf("| %s | %d%s | %d | %.2f | %.2f | %.2f | %.1f | %.1f | %.1f |\n", be->iface->name, nf, tri ? " (tridiag)" : "", k,
                   t_fused * 1e3, t_plain * 1e3, t_plain / t_fused, gf, gp, gs);
            if (f)
                fprintf(f, "%s,%d,%d,%.4f,%.4f,%.4f,%.2f,%.2f,%.2f\n", be->iface->name, nf, k, t_fused * 1e3, t_plain * 1e3,
                        t_plain / t_fused, gf, gp, gs);
        }
        ng_free(be, mem);
    }
    if (f) fclose(f);
    ng_backend_free(be);
    return 0;
}
