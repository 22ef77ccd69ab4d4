/* bench_rbm.c: PCD training speed of a binary RBM next to the sgemm speed of the same backend,
 * measured in the same run (make bench-rbm). Shapes default to FANG's MNIST setting: 784 x 500,
 * 2000 particles, mini-batch 2000, PCD-1. The figure of merit is the ratio of the GFLOP/s a PCD
 * update achieves (counting its gemms) to the measured sgemm GFLOP/s: how close the trainer runs
 * to the machine's matrix-multiply speed. The two are measured interleaved, update by update (one
 * update, then as many sgemm flops at the trainer's shape as the update's gemms do), so that other
 * jobs on a shared machine slow both alike. Writes a CSV row and prints a markdown line.
 * The training data are random binary images: speed does not depend on pixel values.
 * --b2b PATH: then the same ratio with the updates back to back, as training runs them: `iters`
 * more updates in blocks of 5, each block followed by a block of the matching sgemms (alternating
 * every ~0.5 s, so that load still hits both alike, while no foreign sgemm evicts the update's
 * data between two of its updates); one CSV row appended to PATH.
 * --profile PATH: then `iters` more updates under natgrad's profile (its ranges: each gemm and
 * Gibbs op of the update, with the gemms' GFLOP/s), the table written to PATH. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_args.h"
#include "natgrad/fang.h"
#include "natgrad/log.h"
#include "natgrad/profile.h"
#include "natgrad/rbm.h"
#include "natgrad/rng.h"

#define now ng_time_s

static int die(const char *what) {
    fprintf(stderr, "bench_rbm: %s: %s\n", what, ng_last_error());
    return 1;
}

int main(int argc, char **argv) {
    int nv = 784, nh = 500, m = 2000, M = 2000, iters = 20, i;
    const char *device = "cpu", *csv = "bench/results/bench_rbm.csv", *opt = "centering", *profile = NULL, *b2b = NULL;
    ng_device dev;
    int dev_index;
    ng_backend *be;
    ng_rbm rbm;
    ng_rbm_trainer tr;
    ng_rbm_config cfg;
    float *x, *A, *B;
    void *dA, *dB, *dC;
    double t0, t_pcd, t_gemm, gflop_pcd, gflop_gemm;
    int n_train = 8000, reps = 6, n_refits = 0, iters_set = 0;
    double refit_frac = 0.0;
    ng_fang_diag fd0;
    char note[256];
    FILE *f;
    ng_cpu_blas_reexec(argc, argv);
    {
        const ba_opt opts[] = {
            {"--iters", BA_INT, &iters, 1, INT_MAX, 0, "N", "timed PCD updates (and sgemm blocks) per measurement", &iters_set, 0},
            BA_DEV("--device", &device, "backend (cuda:N: that GPU)"),
            BA_S("--optimizer", &opt, "sgd|centering|fang|diag", "the update rule timed"),
            BA_I("--hidden", &nh, 1, INT_MAX, "N", "hidden units (784 visible)"),
            BA_I("--batch", &m, 1, INT_MAX, "M", "mini-batch size = PCD particles"),
            BA_S("--csv", &csv, "PATH", "CSV file a row is appended to"),
            BA_S("--b2b", &b2b, "PATH", "also time the updates back to back; CSV row appended to PATH"),
            BA_S("--profile", &profile, "PATH", "also profile `iters` updates; table written to PATH"),
            BA_END};
        const int rc = ba_parse("bench_rbm", "PCD training speed of a binary RBM against the sgemm speed of the same backend, "
                                             "measured interleaved in one run (make bench-rbm).", opts, argc, argv);
        if (rc != BA_RUN) return rc;
        M = m;
    }
    if (ng_device_parse(device, &dev, &dev_index) != NG_OK) return die("--device");
    if (ng_backend_init(dev, dev_index, &be, note, sizeof note) != NG_OK) return die("backend");
    if (note[0]) fprintf(stderr, "note: %s\n", note);
    fprintf(stderr, "backend: %s\n", be->description);

    /* sgemm peak at the shapes the trainer uses: (nh x m) = W (nh x nv) * V (nv x m) */
    x = (float *)malloc((size_t)nv * n_train * sizeof(float));
    A = (float *)malloc((size_t)nh * nv * sizeof(float));
    B = (float *)malloc((size_t)nv * m * sizeof(float));
    if (!x || !A || !B) return fprintf(stderr, "bench_rbm: out of memory\n"), 1;
    ng_rng_fill_normal(A, (size_t)nh * nv, 0.0f, 0.01f, 1, 0);
    for (i = 0; i < nv * m; i++) B[i] = (float)(ng_rng_uniform(2, 0, (uint64_t)i) < 0.5f);
    for (i = 0; i < nv * n_train; i++) x[i] = (float)(ng_rng_uniform(3, 0, (uint64_t)i) < 0.2f);
    if (ng_alloc(be, (size_t)nh * nv * 4, &dA) || ng_alloc(be, (size_t)nv * m * 4, &dB) ||
        ng_alloc(be, (size_t)nh * m * 4, &dC))
        return die("alloc");
    ng_set(be, dA, A, (size_t)nh * nv * 4);
    ng_set(be, dB, B, (size_t)nv * m * 4);
    ng_gemm(be, 0, 0, nh, m, nv, 1.0f, dA, nh, dB, nv, 0.0f, dC, nh); /* warm-up */
    ng_synchronize(be);

    ng_rbm_config_default(&cfg);
    cfg.batch = m;
    cfg.particles = M;
    if (ng_rbm_optimizer_parse(opt, &cfg.optimizer) != NG_OK) return die("--optimizer");
    /* FANG refits every T = 100 updates: time exactly T updates so one refit is amortised;
     * a small lr keeps the random-data run finite (speed does not depend on it) */
    if (cfg.optimizer == NG_RBM_OPT_FANG) {
        if (!iters_set) iters = cfg.fang_refit_every;
        cfg.lr = 0.001f;
    }
    if (ng_rbm_init(be, nv, nh, &rbm) || ng_rbm_init_params(&rbm, 1, 0.01f, NULL)) return die("rbm");
    if (ng_rbm_trainer_init(&tr, &rbm, &cfg, x, n_train, NULL)) return die("trainer");
    if (ng_rbm_trainer_step(&tr, NULL)) return die("step"); /* warm-up (FANG's first refit) */
    ng_synchronize(be);
    if (cfg.optimizer == NG_RBM_OPT_FANG) ng_fang_diagnostics(tr.pc, &fd0);
    /* interleaved: update i, then the sgemm reference of round i (reps = 6 products of the
     * trainer's (nh x m x nv) shape: the flops of the update's six gemms when m = M) */
    t_pcd = t_gemm = 0.0;
    for (i = 0; i < iters; i++) {
        int j;
        t0 = now();
        if (ng_rbm_trainer_step(&tr, NULL)) return die("step");
        ng_synchronize(be);
        t_pcd += now() - t0;
        t0 = now();
        for (j = 0; j < reps; j++)
            if (ng_gemm(be, 0, 0, nh, m, nv, 1.0f, dA, nh, dB, nv, 0.0f, dC, nh)) return die("gemm");
        ng_synchronize(be);
        t_gemm += now() - t0;
    }
    t_pcd /= iters;
    t_gemm /= (double)iters * reps;
    gflop_gemm = 2.0 * nh * m * nv / t_gemm * 1e-9;
    if (cfg.optimizer == NG_RBM_OPT_FANG) {
        ng_fang_diag fd1;
        ng_fang_diagnostics(tr.pc, &fd1);
        refit_frac = (fd1.refit_s - fd0.refit_s) / (t_pcd * iters);
        n_refits = (int)(fd1.refits - fd0.refits);
    }
    /* gemm flops of one PCD-1 update: W vd, W vm, W^T h, W vm (final), two outer products */
    gflop_pcd = 2.0 * nh * nv * (m + M + M + M + m + M) / t_pcd * 1e-9;

    printf("| %s | %s | %dx%d | %d | %d | %d | %.3f | %.2f | %.1f | %.1f | %.2f | %s |\n", be->description,
           ng_rbm_optimizer_name(cfg.optimizer), nv, nh, M, m, iters, t_pcd * 1e3, 1.0 / t_pcd, gflop_pcd,
           gflop_gemm, gflop_pcd / gflop_gemm, cfg.optimizer == NG_RBM_OPT_FANG ? "" : "-");
    if (cfg.optimizer == NG_RBM_OPT_FANG) printf("<!-- fang refits in timed window: %d, refit fraction %.4f -->\n", n_refits, refit_frac);
    f = fopen(csv, "a");
    if (f) {
        fseek(f, 0, SEEK_END);
        if (ftell(f) == 0)
            fprintf(f, "backend,optimizer,n_visible,n_hidden,particles,batch,timed_updates,ms_per_update,updates_per_s,pcd_gflops,sgemm_gflops,ratio,fang_refit_fraction\n");
        fprintf(f, "\"%s\",%s,%d,%d,%d,%d,%d,%.4f,%.4f,%.2f,%.2f,%.4f,%.4f\n", be->description,
                ng_rbm_optimizer_name(cfg.optimizer), nv, nh, M, m, iters, t_pcd * 1e3, 1.0 / t_pcd,
                gflop_pcd, gflop_gemm, gflop_pcd / gflop_gemm, refit_frac);
        fclose(f);
    }
    if (b2b) { /* updates back to back in blocks of `blk`, each block then its sgemms */
        const int blk = 5;
        int done = 0, k;
        double tb_pcd = 0.0, tb_gemm = 0.0, gb_pcd, gb_gemm;
        while (done < iters) {
            const int n = iters - done < blk ? iters - done : blk;
            t0 = now();
            for (k = 0; k < n; k++)
                if (ng_rbm_trainer_step(&tr, NULL)) return die("step");
            ng_synchronize(be);
            tb_pcd += now() - t0;
            t0 = now();
            for (k = 0; k < n * reps; k++)
                if (ng_gemm(be, 0, 0, nh, m, nv, 1.0f, dA, nh, dB, nv, 0.0f, dC, nh)) return die("gemm");
            ng_synchronize(be);
            tb_gemm += now() - t0;
            done += n;
        }
        tb_pcd /= iters;
        tb_gemm /= (double)iters * reps;
        gb_gemm = 2.0 * nh * m * nv / tb_gemm * 1e-9;
        gb_pcd = 2.0 * nh * nv * (m + M + M + M + m + M) / tb_pcd * 1e-9;
        f = fopen(b2b, "a");
        if (!f) return fprintf(stderr, "bench_rbm: cannot write %s\n", b2b), 1;
        fseek(f, 0, SEEK_END);
        if (ftell(f) == 0) fprintf(f, "optimizer,timed_updates,block,ms_per_update,pcd_gflops,sgemm_gflops,ratio\n");
        fprintf(f, "%s,%d,%d,%.4f,%.2f,%.2f,%.4f\n", ng_rbm_optimizer_name(cfg.optimizer), iters, blk, tb_pcd * 1e3,
                gb_pcd, gb_gemm, gb_pcd / gb_gemm);
        fclose(f);
    }
    if (profile) { /* after the timed loop, so that the ranges' clock reads do not touch its figures */
        ng_profile_config pc;
        char *table = NULL;
        memset(&pc, 0, sizeof pc);
        pc.measure = 1;
        if (ng_profile_start(be, &pc)) return die("profile");
        for (i = 0; i < iters; i++) {
            ng_profile_update((uint64_t)i + 1, 1);
            if (ng_rbm_trainer_step(&tr, NULL)) return die("step");
            ng_profile_update((uint64_t)i + 1, 0);
        }
        ng_synchronize(be);
        if (ng_profile_finish() || ng_profile_table(&table)) return die("profile");
        f = fopen(profile, "w");
        if (!f) return fprintf(stderr, "bench_rbm: cannot write %s\n", profile), 1;
        fputs(table, f);
        fclose(f);
        free(table);
    }
    ng_rbm_trainer_free(&tr);
    ng_rbm_free(&rbm);
    ng_free(be, dA);
    ng_free(be, dB);
    ng_free(be, dC);
    ng_backend_free(be);
    free(x);
    free(A);
    free(B);
    return 0;
}
