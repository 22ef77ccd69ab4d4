/* bench_tn.c: the cost of the truncated-Newton pipeline on a network (make bench-tn):
 *   gradient   one forward + backward pass on a batch of m cases (ng_model_gradient)
 *   Gv         one Gauss-Newton product on the same batch (its forward pass cached)
 *   Hv         one Hessian product
 *   cg iter    one iteration of ng_cg_solve (a Gv plus the vector updates and dot products), the
 *              mean over a max_iter-iteration solve with rtol 0
 * each the mean of --reps repetitions after a warm-up, on the device chosen, and the ratios
 * Gv / gradient and CG iteration / gradient (Pascanu & Bengio: "the pipeline costs about 2"), plus
 * the sgemm rate of this process at the network's largest layer shape for scale. Prints one
 * markdown table row per batch size and appends CSV rows to --csv FILE. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_args.h"
#include "natgrad/backend.h"
#include "natgrad/net.h"
#include "natgrad/solver.h"
#include "natgrad/tensor.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct ctx {
    ng_model *net;
    size_t n;
} ctx;

static ng_status gv(void *user, const float *x, float *y) {
    ctx *c = (ctx *)user;
    ng_tensor tx = ng_tensor_matrix((float *)x, (int)c->n, 1, (int)c->n), ty = ng_tensor_matrix(y, (int)c->n, 1, (int)c->n);
    return ng_net_gvp(c->net, &tx, &ty);
}

#define CHECK(x)                                                                 \
    do {                                                                         \
        if ((x) != NG_OK) {                                                      \
            fprintf(stderr, "bench_tn: %s: %s\n", #x, ng_last_error());          \
            return 1;                                                            \
        }                                                                        \
    } while (0)

int main(int argc, char **argv) {
    const char *preset = "curves-autoencoder", *dev = "cpu", *csv = NULL, *batch_s = "1000,5000";
    int ms[8] = {1000, 5000}, nm = 2, reps = 5, iters = 10, i, k;
    ng_backend *be = NULL;
    ng_net_config cfg;
    ng_model *net = NULL;
    {
        const ba_opt opts[] = {
            BA_S("--preset", &preset, "NAME", "network preset (natgrad's net presets)"),
            BA_DEV("--device", &dev, "backend (cuda:N: that GPU)"),
            BA_INT_LIST("--batch", &batch_s, 1, INT_MAX, 8, "M1,M2", "batch sizes, one row each (at most 8)"),
            BA_I("--reps", &reps, 1, INT_MAX, "R", "repetitions each time is the mean of"),
            BA_I("--iters", &iters, 2, INT_MAX, "N", "iterations of the timed CG solve (its mean per iteration counts)"),
            BA_S("--csv", &csv, "FILE", "CSV file rows are appended to"),
            BA_END};
        const int rc = ba_parse("bench_tn", "The cost of the truncated-Newton pipeline (gradient, Gv, Hv, CG iteration) on a "
                                            "network (make bench-tn).", opts, argc, argv);
        char *s = (char *)batch_s, *e;
        if (rc != BA_RUN) return rc;
        nm = 0;
        while (*s && nm < 8) {
            ms[nm++] = (int)strtol(s, &e, 10);
            s = *e == ',' ? e + 1 : e;
        }
    }
    {
        ng_device d;
        int idx;
        CHECK(ng_device_parse(dev, &d, &idx));
        CHECK(ng_backend_init(d, idx, &be, NULL, 0));
    }
    ng_net_config_default(&cfg);
    CHECK(ng_net_preset(preset, &cfg));
    cfg.target = NG_NET_TARGET_INPUT;
    cfg.seed = 1;
    printf("| network | device | m | gradient s | Gv s | Hv s | CG iteration s | Gv / gradient | CG iteration / gradient | sgemm GFLOP/s |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    for (k = 0; k < nm; k++) {
        int m = ms[k], r;
        size_t n, rows;
        float *hx;
        void *mem;
        ng_tensor x, v, out;
        double t0, tg, tgv, thv, tcg, gf = 0.0;
        ctx c;
        ng_cg_ws ws;
        ng_cg_config cc;
        ng_cg_result cr;
        ng_linop A;
        cfg.chunk = m;
        CHECK(ng_net_create(be, &cfg, &net));
        n = ng_model_size(net);
        rows = (size_t)ng_net_batch_rows(net);
        hx = (float *)malloc(sizeof(float) * rows * (size_t)m);
        for (i = 0; i < (int)(rows * (size_t)m); i++) hx[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
        CHECK(ng_alloc(be, sizeof(float) * (rows * (size_t)m + 3 * n), &mem));
        x = ng_tensor_matrix((float *)mem, (int)rows, m, (int)rows);
        v = ng_tensor_matrix(x.data + rows * (size_t)m, (int)n, 1, (int)n);
        out = ng_tensor_matrix(v.data + n, (int)n, 1, (int)n);
        CHECK(ng_tensor_set(be, &x, hx));
        CHECK(ng_fill(be, n, 1e-3f, v.data));
        /* gradient */
        CHECK(ng_model_gradient(net, &x, NULL));
        CHECK(ng_synchronize(be));
        t0 = now_s();
        for (r = 0; r < reps; r++) CHECK(ng_model_gradient(net, &x, NULL));
        CHECK(ng_synchronize(be));
        tg = (now_s() - t0) / reps;
        /* Gv, Hv on the gradient's batch */
        CHECK(ng_net_gvp(net, &v, &out));
        CHECK(ng_synchronize(be));
        t0 = now_s();
        for (r = 0; r < reps; r++) CHECK(ng_net_gvp(net, &v, &out));
        CHECK(ng_synchronize(be));
        tgv = (now_s() - t0) / reps;
        CHECK(ng_net_hvp(net, &v, &out));
        CHECK(ng_synchronize(be));
        t0 = now_s();
        for (r = 0; r < reps; r++) CHECK(ng_net_hvp(net, &v, &out));
        CHECK(ng_synchronize(be));
        thv = (now_s() - t0) / reps;
        /* CG iterations */
        c.net = net;
        c.n = n;
        A.n = n;
        A.apply = gv;
        A.user = &c;
        CHECK(ng_cg_ws_init(&ws, be, n, iters, 0));
        ng_cg_config_default(&cc);
        cc.max_iter = iters;
        cc.rtol = 0.0;
        cc.lambda = 1.0;
        CHECK(ng_memset0(be, out.data, n * sizeof(float)));
        t0 = now_s();
        CHECK(ng_cg_solve(&ws, &A, net->grad_flat.data, out.data, NULL, &cc, &cr));
        CHECK(ng_synchronize(be));
        tcg = (now_s() - t0) / cr.iters;
        ng_cg_ws_free(&ws);
        /* sgemm of the first layer's shape (d1 x d0 x m) */
        {
            int d0 = cfg.dims[0], d1 = cfg.dims[1];
            void *gm;
            float *Aa, *Bb, *Cc;
            CHECK(ng_alloc(be, sizeof(float) * ((size_t)d1 * d0 + (size_t)d0 * m + (size_t)d1 * m), &gm));
            Aa = (float *)gm;
            Bb = Aa + (size_t)d1 * d0;
            Cc = Bb + (size_t)d0 * m;
            CHECK(ng_fill(be, (size_t)d1 * d0 + (size_t)d0 * m, 0.01f, Aa));
            CHECK(ng_gemm(be, 0, 0, d1, m, d0, 1.0f, Aa, d1, Bb, d0, 0.0f, Cc, d1));
            CHECK(ng_synchronize(be));
            t0 = now_s();
            for (r = 0; r < reps; r++) CHECK(ng_gemm(be, 0, 0, d1, m, d0, 1.0f, Aa, d1, Bb, d0, 0.0f, Cc, d1));
            CHECK(ng_synchronize(be));
            gf = 2.0 * d1 * d0 * (double)m * reps / (now_s() - t0) / 1e9;
            ng_free(be, gm);
        }
        printf("| %s (%zu parameters) | %s | %d | %.4f | %.4f | %.4f | %.4f | %.2f | %.2f | %.0f |\n", preset, n, dev, m, tg, tgv, thv, tcg,
               tgv / tg, tcg / tg, gf);
        if (csv) {
            FILE *f = fopen(csv, "a");
            if (f) {
                if (ftell(f) == 0) fprintf(f, "network,device,m,gradient_s,gv_s,hv_s,cg_iter_s,gv_over_gradient,cg_over_gradient,sgemm_gflops\n");
                fprintf(f, "%s,%s,%d,%.6f,%.6f,%.6f,%.6f,%.4f,%.4f,%.1f\n", preset, dev, m, tg, tgv, thv, tcg, tgv / tg, tcg / tg, gf);
                fclose(f);
            }
        }
        ng_free(be, mem);
        free(hx);
        ng_net_free(net);
        net = NULL;
    }
    ng_backend_free(be);
    return 0;
}
