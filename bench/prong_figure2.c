/* prong_figure2.c: Figure 2 of Desjardins et al. (2015), "Natural Neural Networks": the exact Fisher of
 * the middle layer of a small 3-layer tanh MLP on 10x10 MNIST (a) before and (b) after PRONG's first
 * whitening reparametrisation, as images of |F|, and (c) the condition number of that Fisher block during
 * training, as a percentage of its initial value, for SGD, RMSprop, batch norm and PRONG.
 *
 * Network 100-20-20-10 (tanh hidden units, softmax output), trained with natgrad's library on the CPU
 * backend from one initialisation (the same seed for every method, so the initial conditioning is the
 * same; batch norm adds gamma, beta and drops the bias of its hidden layers). The Fisher block is that of
 * layer 2's parameters (W_2 and b_2, or V_2 and d_2 for PRONG, or W_2, gamma_2, beta_2 with batch norm),
 * the others held fixed, assembled column by column from natgrad's exact Fisher products (G v = F v for
 * softmax + cross-entropy) on the first --fisher-n training digits, symmetrised, its eigenvalues by
 * LAPACK in float64; condition number = largest / smallest eigenvalue (batch norm: the smallest after the
 * 20 exact zeros its scale invariance puts in the block). PRONG is also measured one update after
 * each reparametrisation (the update counts in the CSV). For PRONG "initial" is before its
 * first reparametrisation (the projection at update 0, --prong-fanin style, so the function is the same
 * as the other methods' at update 0). Output: PREFIX.md (stdout), PREFIX.csv, PREFIX_fisher.png. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lapacke.h>

#include "bench_args.h"
#include "natgrad/backend.h"
#include "natgrad/data.h"
#include "natgrad/log.h"
#include "natgrad/net.h"
#include "natgrad/png.h"
#include "natgrad/precond.h"
#include "natgrad/prong.h"
#include "natgrad/train.h"
#include "natgrad/update.h"

static int die(const char *what) {
    fprintf(stderr, "prong_figure2: %s: %s\n", what, ng_last_error());
    return 1;
}

enum { M_SGD, M_RMSPROP, M_BN, M_PRONG, M_COUNT };
static const char *const mname[M_COUNT] = {"sgd", "rmsprop", "batchnorm", "prong"};

typedef struct opts {
    const char *data_dir, *out;
    int iters, every, n, fisher_n, T;
    double lr_sgd, lr_rms, eps;
} opts;

/* (100 + 10, n) rows: pixels over one-hot labels */
static float *batch_rows(const ng_dataset *d) {
    int rows = d->dim + 10, j;
    float *x = (float *)calloc((size_t)rows * d->n, sizeof(float));
    if (!x) return NULL;
    for (j = 0; j < d->n; j++) {
        memcpy(x + (size_t)j * rows, d->x + (size_t)j * d->dim, (size_t)d->dim * sizeof(float));
        x[(size_t)j * rows + d->dim + d->labels[j]] = 1.0f;
    }
    return x;
}

/* The Fisher block of layer 2 (offset off, nb parameters) on the batch fx, into F (nb, nb), float64. */
static ng_status fisher_block(ng_model *net, const ng_tensor *fx, size_t off, int nb, double *F) {
    ng_backend *be = net->be;
    size_t np = ng_model_size(net), j;
    int i;
    float *e = (float *)calloc(np, sizeof(float)), *g = (float *)malloc(np * sizeof(float));
    void *mem;
    ng_tensor v, out;
    if (!e || !g) return ng_error(NG_ERR_OOM, "no memory");
    NG_TRY(ng_alloc(be, 2 * np * sizeof(float), &mem));
    v = ng_tensor_matrix((float *)mem, (int)np, 1, (int)np);
    out = ng_tensor_matrix((float *)mem + np, (int)np, 1, (int)np);
    NG_TRY(ng_net_set_batch(net, fx, NULL));
    for (i = 0; i < nb; i++) {
        memset(e, 0, np * sizeof(float));
        e[off + (size_t)i] = 1.0f;
        NG_TRY(ng_tensor_set(be, &v, e));
        NG_TRY(ng_net_gvp(net, &v, &out));
        NG_TRY(ng_tensor_get(be, &out, g));
        for (j = 0; j < (size_t)nb; j++) F[j + (size_t)nb * i] = g[off + j];
    }
    for (i = 0; i < nb; i++)
        for (j = 0; j < (size_t)i; j++) F[i + (size_t)nb * j] = F[j + (size_t)nb * i] = 0.5 * (F[i + (size_t)nb * j] + F[j + (size_t)nb * i]);
    ng_free(be, mem);
    free(e), free(g);
    return NG_OK;
}

/* largest / smallest eigenvalue; skip: eigenvalues known to be exactly 0 (batch norm makes the block
 * singular: each row of W can be scaled without changing the output, one null direction per unit) */
static double condition(const double *F, int nb, int skip, double *lmin, double *lmax) {
    double *A = (double *)malloc(sizeof(double) * nb * nb), *w = (double *)malloc(sizeof(double) * nb), c;
    memcpy(A, F, sizeof(double) * nb * nb);
    if (LAPACKE_dsyev(LAPACK_COL_MAJOR, 'N', 'L', nb, A, nb, w) != 0) c = NAN;
    else {
        *lmin = w[skip];
        *lmax = w[nb - 1];
        c = w[skip] > 0 ? w[nb - 1] / w[skip] : INFINITY;
    }
    free(A), free(w);
    return c;
}

/* |F| as gray levels (white = large), scaled by its 99th percentile of |entries| */
static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static void draw(unsigned char *img, int W, int x0, const double *F, int nb) {
    size_t nn = (size_t)nb * nb, i;
    double *s = (double *)malloc(nn * sizeof(double)), q;
    int r, c;
    for (i = 0; i < nn; i++) s[i] = fabs(F[i]);
    qsort(s, nn, sizeof(double), cmp_d);
    q = s[(size_t)(0.99 * (nn - 1))];
    for (r = 0; r < nb; r++)
        for (c = 0; c < nb; c++) {
            double v = fabs(F[r + (size_t)nb * c]) / (q > 0 ? q : 1);
            img[(size_t)r * W + x0 + c] = (unsigned char)(255.0 * (v > 1 ? 1 : v));
        }
    free(s);
}

int main(int argc, char **argv) {
    opts o = {"data", "bench/results/prong_figure2", 300, 100, 2000, 300, 100, 0.05, 1e-3, 1e-2};
    ng_dataset raw, train;
    ng_backend *be;
    float *xrows;
    ng_tensor fx;
    void *fmem;
    int i, meth, rows;
    double cond0[M_COUNT], *F = NULL, *Fimg[2] = {NULL, NULL};
    int nbimg = 0;
    char path[512];
    FILE *csv;
    {
        const ba_opt opts[] = {
            BA_S("--data-dir", &o.data_dir, "D", "where MNIST is"),
            BA_S("--out", &o.out, "PREFIX", "writes PREFIX.csv and PREFIX_fisher.png"),
            BA_I("--iters", &o.iters, 1, INT_MAX, "N", "training updates of each method"),
            BA_I("--every", &o.every, 1, INT_MAX, "K", "updates between condition numbers"),
            BA_I("--n", &o.n, 100, INT_MAX, "N", "training digits used"),
            BA_I("--fisher-n", &o.fisher_n, 10, INT_MAX, "M", "digits of the exact Fisher (at most --n)"),
            BA_I("--T", &o.T, 1, INT_MAX, "T", "updates between PRONG's reparametrisations"),
            BA_D_GT("--eps", &o.eps, 0, HUGE_VAL, "E", "PRONG's damping epsilon"),
            BA_D_GT("--lr", &o.lr_sgd, 0, HUGE_VAL, "LR", "SGD's learning rate"),
            BA_END};
        const int rc = ba_parse("prong_figure2", "Figure 2 of Desjardins et al. (2015): the exact Fisher of the middle layer of "
                                                 "a small MLP before and after PRONG's first reparametrisation, and its condition "
                                                 "number during training for SGD, RMSprop, batch norm and PRONG (make prong-figure2).",
                                opts, argc, argv);
        if (rc != BA_RUN) return rc;
        if (o.fisher_n > o.n) {
            fprintf(stderr, "prong_figure2: --fisher-n %d: more than --n %d; allowed: 10..%d\n", o.fisher_n, o.n, o.n);
            return 2;
        }
    }
    if (ng_backend_cpu_init(&be) != NG_OK) return die("cpu backend");
    if (ng_dataset_load_named("mnist", o.data_dir, "train", &raw) != NG_OK) return die("MNIST training set");
    {
        ng_dataset sub;
        if (ng_dataset_subset(&raw, 0, o.n < raw.n ? o.n : raw.n, &sub) != NG_OK) return die("subset");
        if (ng_dataset_resample_area(&sub, 10, 10, &train) != NG_OK) return die("10x10 resampling");
        ng_dataset_free(&sub);
    }
    rows = train.dim + 10;
    if (!(xrows = batch_rows(&train))) return fprintf(stderr, "prong_figure2: out of memory\n"), 1;
    if (ng_alloc(be, (size_t)rows * o.fisher_n * sizeof(float), &fmem) != NG_OK) return die("alloc");
    fx = ng_tensor_matrix((float *)fmem, rows, o.fisher_n, rows);
    if (ng_tensor_set(be, &fx, xrows) != NG_OK) return die("upload");
    snprintf(path, sizeof path, "%s.csv", o.out);
    if (!(csv = fopen(path, "w"))) return fprintf(stderr, "prong_figure2: cannot write %s\n", path), 1;
    fprintf(csv, "method,update,condition,condition_pct,lambda_min,lambda_max,train_loss\n");
    fprintf(stderr, "data: %d training digits resampled to 10x10 by area averaging; Fisher on the first %d\n", train.n, o.fisher_n);
    for (meth = 0; meth < M_COUNT; meth++) {
        ng_net_config cfg;
        ng_model *net;
        ng_update *upd;
        ng_precond *pc;
        ng_batches batches;
        ng_trainer tr;
        size_t off;
        int nb, it, skip;
        double t0 = ng_time_s();
        ng_net_config_default(&cfg);
        if (ng_net_parse_spec(meth == M_BN ? "100-20+bn-20+bn-10" : "100-20-20-10", NG_ACT_TANH, NG_ACT_SOFTMAX, &cfg) != NG_OK) return die("spec");
        cfg.loss = NG_LOSS_CATEGORICAL;
        cfg.target = NG_NET_TARGET_ROWS;
        cfg.init = NG_INIT_GLOROT;
        cfg.chunk = o.fisher_n > 100 ? o.fisher_n : 100;
        cfg.seed = 3;
        cfg.whiten = meth == M_PRONG;
        if (ng_net_create(be, &cfg, &net) != NG_OK) return die("network");
        if (meth == M_RMSPROP) {
            ng_rmsprop_config rc;
            ng_rmsprop_config_default(&rc);
            rc.lr = (float)o.lr_rms;
            if (ng_update_rmsprop_init(be, net, &rc, &upd) != NG_OK) return die("rmsprop");
        } else {
            ng_sgd_config sc = {0};
            sc.lr = (float)o.lr_sgd;
            sc.momentum = 0.9f;
            if (ng_update_sgd_init(be, net, &sc, &upd) != NG_OK) return die("sgd");
        }
        if (meth == M_PRONG) {
            ng_prong_config pcfg;
            ng_prong_config_default(&pcfg);
            pcfg.eps = (float)o.eps;
            pcfg.T = o.T;
            pcfg.ns = train.n < 1000 ? train.n : 1000;
            pcfg.whitened_init = 0; /* the projection: the same function as the others at update 0 */
            if (ng_precond_prong_init(be, net, &pcfg, xrows, train.n, upd, &pc) != NG_OK) return die("prong");
        } else if (ng_precond_identity_init(be, &pc) != NG_OK) return die("identity");
        if (ng_batches_init(&batches, be, xrows, rows, train.n, 100, 7, 0, 1) != NG_OK) return die("batches");
        if (ng_trainer_init(&tr, net, pc, upd, &batches, 7, NULL) != NG_OK) return die("trainer");
        off = (size_t)(ng_arena_view(&net->params, cfg.bn[0] ? 3 : 2)->data - net->param_flat.data);
        nb = (int)((size_t)(ng_arena_view(&net->params, cfg.bn[0] ? 6 : 4)->data - net->param_flat.data) - off);
        skip = cfg.bn[1] ? cfg.dims[2] : 0;
        if (!F) F = (double *)malloc(sizeof(double) * (size_t)nb * (nb + 64));
        for (it = 0; it <= o.iters; it++) {
            if (it % o.every == 0 || (meth == M_PRONG && it > 1 && (it - 1) % o.T == 0)) {
                double lmin = 0, lmax = 0, c, obj, err;
                if (fisher_block(net, &fx, off, nb, F) != NG_OK) return die("Fisher block");
                if (ng_net_batch_loss(net, &obj, &err) != NG_OK) obj = NAN;
                c = condition(F, nb, skip, &lmin, &lmax);
                if (it == 0) cond0[meth] = c;
                fprintf(csv, "%s,%d,%.6g,%.6g,%.6g,%.6g,%.6g\n", mname[meth], it, c, 100.0 * c / cond0[meth], lmin, lmax, obj);
                fprintf(stderr, "  %-9s update %4d: condition %.4g (%.2f%% of initial), training loss on the Fisher batch %.4f\n", mname[meth], it,
                        c, 100.0 * c / cond0[meth], obj);
                if (meth == M_PRONG && it == 0) {
                    /* (a) before and (b) right after the first reparametrisation, on the Fisher's own cases
                     * (PRONG's refresh at update 0 then re-estimates on its own sample: same function) */
                    Fimg[0] = (double *)malloc(sizeof(double) * nb * nb);
                    memcpy(Fimg[0], F, sizeof(double) * nb * nb);
                    if (ng_net_whiten_refresh(net, &fx, (float)o.eps, 1, NULL) != NG_OK) return die("whitening");
                    if (fisher_block(net, &fx, off, nb, F) != NG_OK) return die("Fisher block");
                    Fimg[1] = (double *)malloc(sizeof(double) * nb * nb);
                    memcpy(Fimg[1], F, sizeof(double) * nb * nb);
                    nbimg = 2;
                    c = condition(F, nb, skip, &lmin, &lmax);
                    fprintf(csv, "%s,%d,%.6g,%.6g,%.6g,%.6g,%.6g\n", "prong_after_first_reparam", it, c, 100.0 * c / cond0[meth], lmin, lmax, obj);
                    fprintf(stderr, "  %-9s update %4d: condition %.4g (%.2f%% of initial) right after the first reparametrisation\n", mname[meth],
                            it, c, 100.0 * c / cond0[meth]);
                }
            }
            if (it == o.iters) break;
            if (ng_trainer_step(&tr, NULL) != NG_OK) return die("training step");
        }
        fprintf(stderr, "  %s: %.1f s\n", mname[meth], ng_time_s() - t0);
        ng_batches_free(&batches);
        ng_update_free(upd);
        ng_precond_free(pc);
        ng_net_free(net);
        if (meth == M_PRONG && nbimg == 2) {
            int W = 2 * nb + 8;
            unsigned char *img = (unsigned char *)calloc((size_t)W * nb, 1);
            for (i = 0; i < W * nb; i++) img[i] = 64;
            draw(img, W, 0, Fimg[0], nb);
            draw(img, W, nb + 8, Fimg[1], nb);
            snprintf(path, sizeof path, "%s_fisher.png", o.out);
            if (ng_png_write_gray(path, W, nb, img) != NG_OK) return die("png");
            free(img);
        }
    }
    fclose(csv);
    ng_dataset_free(&raw);
    ng_dataset_free(&train);
    ng_free(be, fmem);
    free(xrows), free(F), free(Fimg[0]), free(Fimg[1]);
    ng_backend_free(be);
    return 0;
}
