/* net_cmd.c: `natgrad net train` and `natgrad net eval`.
 * train: loads a data set (autoencoder: the images are inputs and targets; classify: inputs
 * stacked over one-hot labels), builds the network of --preset or --layers, an update rule
 * (--optimizer) and hands them to the run driver (natgrad/train.h): CSV per log step, progress with
 * ETA, checkpoints, exact resume, and at the end PNG plots of the errors against time and cases
 * (gnuplot) and, for autoencoders, a picture of test reconstructions.
 * eval: loads a checkpoint and reports the objective and error on a data set. Public headers only. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "natgrad/data.h"
#include "natgrad/kfac.h"
#include "natgrad/tnewton.h"
#include "natgrad/prong.h"
#include "natgrad/log.h"
#include "natgrad/net.h"
#include "natgrad/png.h"
#include "natgrad/recipes.h"
#include "natgrad/rng.h"

/* NAME (mnist, fashion-mnist, curves-like) or PATH[,LABELS] */
static int load_data(const char *cmd, const char *what, const char *name, const char *data_dir, const char *split,
                     int need_labels, int limit, ng_dataset *out) {
    ng_status s;
    char path[4096];
    const char *comma = strchr(name, ',');
    if (comma || ng_cli_is_path(name)) {
        if (comma) {
            snprintf(path, sizeof path, "%.*s", (int)(comma - name), name);
            s = ng_dataset_load_idx(path, comma + 1, out);
        } else {
            s = ng_dataset_load_idx(name, NULL, out);
        }
    } else {
        s = ng_dataset_load_named(name, data_dir, split, out);
    }
    if (s != NG_OK) {
        fprintf(stderr, "natgrad %s: loading %s data '%s': %s\n", cmd, what, name, ng_last_error());
        return NG_EXIT_FAIL;
    }
    if (need_labels && !out->labels) {
        fprintf(stderr, "natgrad %s: --task classify needs labels, and %s data '%s' has none (give IMAGES,LABELS paths)\n",
                cmd, what, name);
        return NG_EXIT_USAGE;
    }
    if (limit > 0 && limit < out->n) {
        ng_dataset sub;
        if (ng_dataset_subset(out, 0, limit, &sub) != NG_OK) {
            fprintf(stderr, "natgrad %s: %s\n", cmd, ng_last_error());
            return NG_EXIT_FAIL;
        }
        ng_dataset_free(out);
        *out = sub;
    }
    return 0;
}

/* The batch matrix of a data set for the network: (d0, n) inputs, or (d0 + K, n) inputs over
 * one-hot labels (classify). Host memory, freed by the caller. */
static float *batch_matrix(const ng_dataset *d, int classes, int *rows) {
    size_t n = (size_t)d->n, r = (size_t)d->dim + (size_t)classes, c;
    float *x = (float *)malloc(r * n * sizeof(float));
    if (!x) return NULL;
    for (c = 0; c < n; c++) {
        memcpy(x + c * r, d->x + c * (size_t)d->dim, (size_t)d->dim * sizeof(float));
        if (classes) {
            int k;
            for (k = 0; k < classes; k++) x[c * r + (size_t)d->dim + (size_t)k] = d->labels[c] == k ? 1.0f : 0.0f;
        }
    }
    *rows = (int)r;
    return x;
}

static int max_label(const ng_dataset *d) {
    int c, m = 0;
    for (c = 0; c < d->n; c++)
        if (d->labels[c] > m) m = d->labels[c];
    return m;
}

/* ---- train ---------------------------------------------------------------------------------- */

/* The pool of the truncated-Newton methods' metric batches (rows as the training batches): the
 * training cases (--metric separate), or the inputs of the training cases beyond --limit with the
 * target rows zeroed (--metric unlabeled: the Gauss-Newton products read no targets). */
static ng_status metric_pool(const char *data, const char *data_dir, int metric, int limit, int task, int classes,
                             const ng_dataset *train, float **pool, int *n) {
    int rows = 0;
    *pool = NULL;
    *n = 0;
    if (metric == NG_TN_METRIC_SEPARATE) {
        *pool = batch_matrix(train, classes, &rows);
        *n = train->n;
    } else {
        ng_dataset full = {0}, rest = {0};
        ng_status s;
        size_t c;
        if (limit < 1) return ng_error(NG_ERR_INVALID_ARG, "--metric unlabeled: give --limit N (the labelled cases; the rest are the unlabeled pool)");
        if (load_data("net train", "unlabeled", data, data_dir, "train", task == 1, 0, &full) != 0)
            return ng_error(NG_ERR_IO, "--metric unlabeled: the training data could not be loaded again");
        if (full.n <= limit) {
            ng_dataset_free(&full);
            return ng_error(NG_ERR_INVALID_ARG, "--metric unlabeled: --limit %d leaves no training cases for the unlabeled pool (the data has %d)",
                            limit, full.n);
        }
        s = ng_dataset_subset(&full, limit, full.n - limit, &rest);
        ng_dataset_free(&full);
        NG_TRY(s);
        *pool = batch_matrix(&rest, classes, &rows);
        *n = rest.n;
        if (*pool && classes)
            for (c = 0; c < (size_t)rest.n; c++) memset(*pool + c * (size_t)rows + rest.dim, 0, sizeof(float) * (size_t)classes);
        ng_dataset_free(&rest);
    }
    if (!*pool) return ng_error(NG_ERR_OOM, "out of host memory for the metric pool");
    return NG_OK;
}

typedef struct monitor_ctx {
    double t_start;            /* ng_time_s() when the run started */
    void *backup;              /* device copy of the parameters during an evaluation */
    ng_model *net;
    ng_update *upd;
    ng_tensor train_x, test_x; /* device copies (train: its first eval_n cases) */
    int have_test, batch;
    int sched_m1, sched_full, n_train; /* growing batches (0: fixed --batch) */
    double monitor_s;          /* wall clock spent in monitors (excluded from train_s) */
    double c_start, monitor_cpu; /* the same in CPU seconds of the process (train_cpu_s) */
    int col_err, col_obj, col_test, col_trs;
    /* classification: misclassification rates (argmax of the outputs vs the labels) */
    int classes;
    const unsigned char *train_labels, *test_labels;
    ng_tensor pred;            /* (classes, max(eval_n, test n)) device */
    float *pred_host;
} monitor_ctx;

/* percentage of the n cases of x whose largest output is not the label */
static ng_status misclass(monitor_ctx *c, const ng_tensor *x, const unsigned char *labels, double *pct) {
    ng_tensor y = ng_tensor_matrix(c->pred.data, c->classes, x->cols, c->classes);
    int i, k, wrong = 0;
    NG_TRY(ng_net_predict(c->net, x, &y));
    NG_TRY(ng_get(c->net->be, c->pred_host, y.data, sizeof(float) * (size_t)c->classes * (size_t)x->cols));
    for (i = 0; i < x->cols; i++) {
        const float *o = c->pred_host + (size_t)i * c->classes;
        int best = 0;
        for (k = 1; k < c->classes; k++)
            if (o[k] > o[best]) best = k;
        wrong += best != (int)labels[i];
    }
    *pct = x->cols ? 100.0 * wrong / x->cols : NAN;
    return NG_OK;
}

typedef struct progress_ctx {
    monitor_ctx *mc;
    int col_err, col_test;
} progress_ctx;

static const char *const monitor_columns[] = {"cases", "train_s", "train_error", "train_error_avg", "train_error_best",
                                              "train_objective", "test_error", "test_objective", "train_misclass",
                                              "test_misclass", "train_cpu_s", NULL};

/* CPU seconds of the process (all its threads) */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Errors of the iterate theta (not NAG's look-ahead point) and of the iterate average: the
 * parameters are saved in c->backup, replaced by each point in turn, and put back. */
static ng_status net_monitor(void *user, ng_trainer *tr, double *v) {
    monitor_ctx *c = ((progress_ctx *)user)->mc;
    ng_model *m = c->net;
    size_t bytes = ng_model_size(m) * sizeof(float);
    double t0 = ng_time_s(), c0 = cpu_s(), el, o2;
    ng_tensor avg;
    ng_status s;
    if (c->sched_m1 > 0) {
        uint64_t j;
        v[0] = 0.0;
        for (j = 1; j <= tr->t; j++) v[0] += ng_batch_schedule_exp(j, c->sched_m1, c->sched_full, c->n_train);
    } else {
        v[0] = (double)tr->t * (double)c->batch;
    }
    v[1] = t0 - c->t_start - c->monitor_s; /* seconds of training in this invocation */
    v[10] = c0 - c->c_start - c->monitor_cpu; /* the same in CPU seconds (other jobs inflate them less) */
    v[3] = v[6] = v[7] = v[8] = v[9] = NAN;
    NG_TRY(ng_copy(m->be, c->backup, m->param_flat.data, bytes));
    s = ng_update_theta(c->upd, m, tr->t, &m->param_flat);
    if (s == NG_OK) s = ng_net_evaluate(m, &c->train_x, &v[5], &v[2]);
    if (s == NG_OK && c->have_test) s = ng_net_evaluate(m, &c->test_x, &v[7], &v[6]);
    if (s == NG_OK && c->classes) s = misclass(c, &c->train_x, c->train_labels, &v[8]);
    if (s == NG_OK && c->classes && c->have_test) s = misclass(c, &c->test_x, c->test_labels, &v[9]);
    if (s == NG_OK && ng_update_average(c->upd, &avg) == NG_OK) {
        s = ng_copy(m->be, m->param_flat.data, avg.data, bytes);
        if (s == NG_OK) s = ng_net_evaluate(m, &c->train_x, &o2, &v[3]);
    } else {
        ng_clear_error();
    }
    v[4] = isnan(v[3]) || v[2] <= v[3] ? v[2] : v[3];
    {
        ng_status r = ng_copy(m->be, m->param_flat.data, c->backup, bytes);
        if (s == NG_OK) s = r;
    }
    el = ng_time_s() - t0;
    c->monitor_s += el;
    c->monitor_cpu += cpu_s() - c0;
    return s;
}

static void net_progress(void *user, const ng_run_progress *p) {
    progress_ctx *c = (progress_ctx *)user;
    char extra[160] = "";
    if (!p->final && p->row)
        snprintf(extra, sizeof extra, "train error %.3f  test error %.3f", p->row[c->col_err], p->row[c->col_test]);
    ng_progress(p->t - p->start, p->total - p->start, p->elapsed_s, p->eta_s, extra, p->final);
}

static int column_index(const ng_trainer *tr, const char *name) {
    int i;
    for (i = 0; i < tr->n_columns; i++)
        if (strcmp(tr->columns[i], name) == 0) return i;
    return 0;
}

/* Plots of a finished run: errors against training seconds and against cases (gnuplot). */
static void write_plots(const char *out, const char *csv, const char *title) {
    char gp[4300], cmd[4400], png1[4300], png2[4300];
    FILE *f;
    int rc;
    {
        /* a curve needs two logged rows */
        FILE *c = fopen(csv, "r");
        int lines = 0, ch;
        while (c && (ch = fgetc(c)) != EOF) lines += ch == '\n';
        if (c) fclose(c);
        if (lines < 3) {
            fprintf(stderr, "natgrad: fewer than two logged rows in %s: no plots\n", csv);
            return;
        }
    }
    snprintf(gp, sizeof gp, "%s/plots.gp", out);
    snprintf(png1, sizeof png1, "%s/error_vs_time.png", out);
    snprintf(png2, sizeof png2, "%s/error_vs_cases.png", out);
    f = fopen(gp, "w");
    if (!f) {
        fprintf(stderr, "natgrad: cannot write %s: %s (no plots)\n", gp, strerror(errno));
        return;
    }
    fprintf(f,
            "set datafile separator ','\nset terminal pngcairo size 900,500 noenhanced\nset key top right\n"
            "set logscale y\nset grid\nset ylabel 'error per case: sum (y - t)^2'\nset title '%s'\n"
            "set output '%s'\nset xlabel 'training time (s)'\n"
            "plot '%s' using (column('train_s')):(column('train_error')) with lines lw 2 title 'train', "
            "'' using (column('train_s')):(column('test_error')) with lines lw 2 title 'test'\n"
            "set output '%s'\nset xlabel 'training cases processed'\n"
            "plot '%s' using (column('cases')):(column('train_error')) with lines lw 2 title 'train', "
            "'' using (column('cases')):(column('test_error')) with lines lw 2 title 'test'\n",
            title, png1, csv, png2, csv);
    if (fclose(f) != 0) {
        fprintf(stderr, "natgrad: cannot write %s: %s (no plots)\n", gp, strerror(errno));
        return;
    }
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        fprintf(stderr, "natgrad: gnuplot not found (apt-get install gnuplot-nox): plot script left in %s\n", gp);
        return;
    }
    snprintf(cmd, sizeof cmd, "gnuplot '%s' 2>&1", gp);
    rc = system(cmd);
    if (rc == 0) fprintf(stderr, "natgrad: plots %s, %s\n", png1, png2);
    else fprintf(stderr, "natgrad: gnuplot failed on %s (exit %d)\n", gp, rc);
}

/* 8 test images over their reconstructions, as one PNG. */
static void write_reconstructions(ng_model *net, const ng_dataset *d, const ng_tensor *x, const char *path) {
    int n = d->n < 8 ? d->n : 8, dim = d->dim;
    ng_tensor xin, y;
    void *mem = NULL;
    float *host = NULL;
    ng_status s;
    if (n < 1 || d->height * d->width != dim) return;
    host = (float *)malloc((size_t)dim * 2 * n * sizeof(float));
    s = host ? ng_alloc(net->be, (size_t)dim * n * sizeof(float), &mem) : ng_error(NG_ERR_OOM, "out of memory");
    if (s == NG_OK) {
        xin = ng_tensor_cols(x, 0, n);
        y = ng_tensor_matrix((float *)mem, dim, n, dim);
        s = ng_net_predict(net, &xin, &y);
    }
    if (s == NG_OK) s = ng_tensor_get(net->be, &y, host + (size_t)dim * n);
    if (s == NG_OK) {
        int c, i;
        for (c = 0; c < n; c++)
            for (i = 0; i < dim; i++) host[(size_t)c * dim + i] = d->x[(size_t)c * dim + i];
        for (i = 0; i < dim * n; i++) {
            float *v = &host[(size_t)dim * n + i];
            *v = *v < 0.0f ? 0.0f : *v > 1.0f ? 1.0f : *v;
        }
        s = ng_png_write_image_grid(path, host, d->height, d->width, 2 * n, n, 2);
    }
    if (s == NG_OK) fprintf(stderr, "natgrad: test images (top) and reconstructions (bottom): %s\n", path);
    else fprintf(stderr, "natgrad: reconstructions not written: %s\n", ng_last_error());
    if (mem) ng_free(net->be, mem);
    free(host);
}

static const char *TRAIN_SUMMARY =
    "Train a feed-forward network (deep autoencoder or classifier) with a first-order rule, K-FAC, or a\n"
    "truncated-Newton method (NGD, NCG, Hessian-free); --precond diag puts Sohl-Dickstein's diagonal\n"
    "Fisher under a first-order rule (--phi-every K: the rule runs in phi = G^(1/2) theta); --precond kfac\n"
    "--phi-every K runs the rule in phi = (A (x) G)^(1/2) theta of K-FAC's Kronecker factors, --precond full\n"
    "--phi-every K in phi = (G + lambda I)^(1/2) theta of the dense Fisher (tiny networks).\n"
    "--preset mnist-autoencoder | curves-autoencoder | faces-autoencoder (Hinton & Salakhutdinov 2006),\n"
    "or --layers SPEC, e.g. 784-1000-500-250-30:linear-250-500-1000-784 (sizes separated by '-', an\n"
    "optional :act per layer, +bn for batch normalisation). --data mnist | fashion-mnist | curves-like\n"
    "(a generated substitute for CURVES, see data/README.md) | IMAGES.idx[,LABELS.idx]. FACES is not\n"
    "obtainable here: convert your own copy to IDX (data/README.md). Reported error: sum over outputs\n"
    "of (y - t)^2 per case (no 1/2), as in the papers; the objective is the loss of the output units.\n"
    "Writes OUT/train.csv, OUT/net.ckpt, plots and reconstructions; --resume CKPT continues exactly.";

typedef struct net_train_opts {
    ng_common_opts co;
    const char *preset, *layers, *test_data, *resume, *csv_path, *ckpt_path;
    int task, hidden_act, loss, init, optimizer;
    int batch, chunk, steps, log_every, ckpt_every, limit, eval_n;
    float lr, momentum, weight_decay, init_scale, minutes;
    float mu_max, final_mu, average, beta1, beta2, eps, rho;
    int final_steps;
    /* kfac */
    ng_kfac_config kf;
    int kf_approx, kf_pi, kf_prec, kf_T1, kf_T2, kf_T3, kf_mom, kf_rescale, kf_alam, kf_agam, kf_timing, kf_async;
    float kf_lambda0, kf_gamma0, kf_tau1, kf_tau2, kf_omega1, kf_omega2, kf_epsmax;
    int schedule, m1, m_full;
    int cuda_graph; /* --cuda-graph: replay the steady-state step as a CUDA graph */
    /* truncated Newton (ngd, ngd-l, ncg-l, ncg-f, hf) */
    ng_tn_config tc;
    int tn_iters, tn_solver, tn_curv, tn_metric, tn_mbatch, tn_hfpre, tn_hfbt, tn_line, tn_search, tn_timing, tn_rho, tn_fisher, tn_fsamples;
    float tn_rtol, tn_decay, tn_lmin;
    /* Sohl-Dickstein's diagonal preconditioner under a first-order rule (--precond diag) */
    int precond, dg_metric, kf_inv, dg_phi, fl_inv;
    float dg_lambda, dg_power, dg_beta, fl_lambda;
    ng_diag_config dg;
    ng_full_config fl; /* --precond full */
    /* prong: SGD + momentum on whitened layers, reparametrised every --prong-T updates */
    ng_prong_config pg;
    int pg_fanin;
    int pg_form; /* 0: canonical form (cfg.whiten = 2), 1: whitened coordinates (cfg.whiten = 1) */
} net_train_opts;

static const char *const optimizer_names[] = {"nag", "sgd", "adam", "rmsprop", "kfac", "ngd", "ngd-l", "ncg-l", "ncg-f", "hf", "prong"};
enum { OPT_KFAC = 4, OPT_TN = 5 /* OPT_TN + NG_TN_* */, OPT_PRONG = 10 };
#define IS_TN(opt) ((opt) >= OPT_TN && (opt) < OPT_TN + NG_TN_METHOD_COUNT)

/* The update rule of o->optimizer with o's settings. */
static ng_status make_update(ng_backend *be, ng_model *net, const net_train_opts *o, ng_update **upd) {
    switch (o->optimizer) {
    case 0: {
        ng_nag_config c;
        ng_nag_config_default(&c);
        c.lr = o->lr;
        c.mu_max = o->mu_max;
        c.final_steps = (uint64_t)o->final_steps;
        c.final_mu = o->final_mu;
        c.total_steps = (uint64_t)o->steps;
        c.weight_decay = o->weight_decay;
        c.average = o->average;
        NG_TRY(ng_nag_config_check(&c));
        return ng_update_nag_init(be, net, &c, upd);
    }
    case 1:
    case OPT_PRONG: {
        ng_sgd_config c;
        memset(&c, 0, sizeof c);
        c.lr = o->lr;
        c.momentum = o->momentum;
        c.weight_decay = o->weight_decay;
        c.average = o->average;
        NG_TRY(ng_sgd_config_check(&c));
        return ng_update_sgd_init(be, net, &c, upd);
    }
    case 2: {
        ng_adam_config c;
        ng_adam_config_default(&c);
        c.lr = o->lr;
        c.beta1 = o->beta1;
        c.beta2 = o->beta2;
        c.eps = o->eps;
        c.weight_decay = o->weight_decay;
        c.average = o->average;
        NG_TRY(ng_adam_config_check(&c));
        return ng_update_adam_init(be, net, &c, upd);
    }
    case OPT_KFAC:
    case OPT_TN + NG_TN_NGD:
    case OPT_TN + NG_TN_NGD_L:
    case OPT_TN + NG_TN_NCG_L:
    case OPT_TN + NG_TN_NCG_F:
    case OPT_TN + NG_TN_HF: {
        /* K-FAC and the truncated-Newton methods leave their whole update (-delta) in the gradient
         * arena: plain steps of size 1 with the weight decay and averaging of the run */
        ng_sgd_config c;
        memset(&c, 0, sizeof c);
        c.lr = 1.0f;
        c.momentum = 0.0f;
        c.weight_decay = o->weight_decay;
        c.average = o->average;
        NG_TRY(ng_sgd_config_check(&c));
        return ng_update_sgd_init(be, net, &c, upd);
    }
    default: {
        ng_rmsprop_config c;
        ng_rmsprop_config_default(&c);
        c.lr = o->lr;
        c.rho = o->rho;
        c.eps = o->eps;
        c.weight_decay = o->weight_decay;
        c.average = o->average;
        NG_TRY(ng_rmsprop_config_check(&c));
        return ng_update_rmsprop_init(be, net, &c, upd);
    }
    }
}

/* The update rule's settings stored in a checkpoint (a resume rebuilds the same rule). */
static ng_status update_from_ckpt(const ng_ckpt *c, net_train_opts *o) {
    const char *kind = NULL;
    char key[64];
    int i;
#define F2(name, field)                                                   \
    snprintf(key, sizeof key, "sgd." name);                               \
    NG_TRY(ng_ckpt_get_float(c, key, 0.0, 3.5e38, &o->field));
    NG_TRY(ng_ckpt_get_str(c, "update.kind", &kind));
    for (i = 0; i < 4; i++)
        if (strcmp(kind, optimizer_names[i]) == 0) break;
    {
        const char *pk = NULL;
        if (ng_ckpt_get_str(c, "precond.kind", &pk) == NG_OK && (strcmp(pk, "kfac") == 0 || strcmp(pk, "tn") == 0) && i == 1 &&
            !ng_ckpt_has(c, "kfac.phi_every")) {
            if (strcmp(pk, "kfac") == 0) {
                o->optimizer = OPT_KFAC;
                NG_TRY(ng_kfac_config_from_ckpt(c, &o->kf));
            } else {
                NG_TRY(ng_tn_config_from_ckpt(c, &o->tc));
                o->optimizer = OPT_TN + o->tc.method;
            }
            F2("lr", lr)
            F2("weight_decay", weight_decay)
            snprintf(key, sizeof key, "sgd.average_decay");
            o->average = 0.0f;
            if (ng_ckpt_has(c, key)) NG_TRY(ng_ckpt_get_float(c, key, 0.0, 1.0, &o->average));
            return NG_OK;
        }
        ng_clear_error();
    }
    if (i == 4) return ng_error(NG_ERR_FORMAT, "checkpoint %s: update rule '%s' is not one net train knows", ng_ckpt_path(c), kind);
    o->optimizer = i;
#define F(name, field, lo, hi)                                            \
    snprintf(key, sizeof key, "%s." name, kind);                          \
    NG_TRY(ng_ckpt_get_float(c, key, lo, hi, &o->field));
    F("lr", lr, 0.0, 3.5e38)
    F("weight_decay", weight_decay, 0.0, 3.5e38)
    snprintf(key, sizeof key, "%s.average_decay", kind);
    o->average = 0.0f;
    if (ng_ckpt_has(c, key)) NG_TRY(ng_ckpt_get_float(c, key, 0.0, 1.0, &o->average));
    if (i == 0) {
        uint64_t fs;
        F("mu_max", mu_max, 0.0, 1.0)
        NG_TRY(ng_ckpt_get_u64(c, "nag.final_steps", &fs));
        o->final_steps = (int)fs;
        if (fs) {
            F("final_mu", final_mu, 0.0, 1.0)
        }
    } else if (i == 1) {
        const char *pk = NULL;
        F("momentum", momentum, 0.0, 1.0)
        if (ng_ckpt_get_str(c, "precond.kind", &pk) == NG_OK && strcmp(pk, "prong") == 0) {
            int64_t v;
            o->optimizer = OPT_PRONG;
            NG_TRY(ng_ckpt_get_float(c, "prong.eps", 1e-30, 1e30, &o->pg.eps));
            NG_TRY(ng_ckpt_get_int(c, "prong.T", 1, 2147483647, &v));
            o->pg.T = (int)v;
            NG_TRY(ng_ckpt_get_int(c, "prong.ns", 2, 2147483647, &v));
            o->pg.ns = (int)v;
            NG_TRY(ng_ckpt_get_int(c, "prong.whitened_init", 0, 1, &v));
            o->pg.whitened_init = (int)v;
            NG_TRY(ng_ckpt_get_u64(c, "prong.seed", &o->pg.seed));
        }
        ng_clear_error();
    } else if (i == 2) {
        F("beta1", beta1, 0.0, 1.0)
        F("beta2", beta2, 0.0, 1.0)
        F("eps", eps, 0.0, 3.5e38)
    } else {
        F("rho", rho, 0.0, 1.0)
        F("eps", eps, 0.0, 3.5e38)
    }
#undef F
#undef F2
    {
        /* the recipes' diagonal preconditioner under the first-order rule */
        const char *pk = NULL;
        o->precond = 0;
        if (ng_ckpt_get_str(c, "precond.kind", &pk) == NG_OK) o->precond = strcmp(pk, "diag") == 0 ? 1 : strcmp(pk, "kfac") == 0 ? 2 : strcmp(pk, "full") == 0 ? 3 : 0;
        ng_clear_error();
        if (o->precond == 1) NG_TRY(ng_diag_config_from_ckpt(c, &o->dg));
        /* K-FAC's factors defining phi (the first-order rule runs in phi) */
        if (o->precond == 2) NG_TRY(ng_kfac_config_from_ckpt(c, &o->kf));
        if (o->precond == 3) NG_TRY(ng_full_config_from_ckpt(c, &o->fl));
        if (o->precond == 2 && o->kf.phi_every <= 0)
            return ng_error(NG_ERR_FORMAT, "checkpoint %s: a K-FAC preconditioner under %s without kfac.phi_every", ng_ckpt_path(c), kind);
    }
    return NG_OK;
}

static int net_train(int argc, char **argv) {
    net_train_opts o;
    ng_net_config cfg;
    ng_backend *be = NULL;
    ng_dataset train = {0}, test = {0};
    ng_model *net = NULL;
    ng_precond *pc = NULL;
    ng_update *upd = NULL;
    ng_batches batches;
    int batches_ready = 0, rows = 0, classes = 0, rc = 0, append = 0, eval_n;
    float *xtrain = NULL, *xtest = NULL, *mpool = NULL;
    int mpool_n = 0;
    void *evmem = NULL;
    ng_ckpt *ck = NULL;
    ng_trainer tr;
    ng_status s = NG_OK;
    monitor_ctx mc;
    progress_ctx pcx;
    ng_run_config run;
    ng_run_result res;
    static char csvbuf[4200], ckbuf[4200], pngbuf[4200];
    static const char *const act_choices = "linear|logistic|tanh|relu";

    memset(&o, 0, sizeof o);
    memset(&mc, 0, sizeof mc);
    memset(&tr, 0, sizeof tr);
    ng_common_defaults(&o.co);
    o.co.out = "runs/net";
    o.co.data = "mnist";
    o.preset = NULL;
    o.hidden_act = NG_ACT_LOGISTIC;
    o.loss = NG_LOSS_BERNOULLI;
    o.batch = 500;
    o.chunk = 1000;
    o.steps = 1000;
    o.log_every = 50;
    o.ckpt_every = 500;
    o.eval_n = 0;
    o.lr = 0.01f;
    o.momentum = 0.9f;
    o.weight_decay = 1e-5f;
    o.mu_max = 0.99f;
    o.final_mu = 0.9f;
    o.beta1 = 0.9f;
    o.beta2 = 0.999f;
    o.eps = 1e-8f;
    o.rho = 0.9f;
    o.init_scale = 0.01f;
    ng_kfac_config_default(&o.kf);
    o.kf_lambda0 = (float)o.kf.lambda0;
    o.kf_tau1 = (float)o.kf.tau1;
    o.kf_tau2 = (float)o.kf.tau2;
    o.kf_T1 = o.kf.T1;
    o.kf_T2 = o.kf.T2;
    o.kf_T3 = o.kf.T3;
    o.kf_epsmax = (float)o.kf.eps_max;
    o.kf_mom = o.kf_rescale = o.kf_alam = o.kf_agam = o.kf_timing = 1;
    o.m1 = 1000;
    o.m_full = 500;
    o.kf_async = -1;
    o.kf_lambda0 = 0.0f; /* the optimizer's default */
    o.lr = 0.0f;         /* the optimizer's default */
    ng_diag_config_default(&o.dg);
    o.dg_lambda = (float)o.dg.lambda;
    o.fl_lambda = 1e-3f;
    o.dg_power = (float)o.dg.power;
    o.dg_beta = (float)o.dg.beta;
    ng_tn_config_default(&o.tc);
    o.tn_rtol = -1.0f;
    o.tn_decay = (float)o.tc.hf_decay;
    o.tn_lmin = (float)o.tc.lambda_min;
    o.tn_hfpre = o.tn_hfbt = 1;
    o.tn_line = o.tc.line_evals;
    o.tn_search = o.tc.search_evals;
    o.tn_fisher = o.tc.fisher;
    o.tn_fsamples = o.tc.fisher_samples;
    ng_prong_config_default(&o.pg);
    ng_net_config_default(&cfg);
    {
        ng_opt opts[] = {
            NG_OPT_DATA(&o.co, "training data: mnist, fashion-mnist, curves-like, or IMAGES.idx[,LABELS.idx]"),
            {"test-data", OPT_STR, &o.test_data, "NAME|PATH", "held-out data (default: the test split of a named set)", 0, 0},
            {"limit", OPT_INT, &o.limit, "N", "use only the first N training cases (0 = all)", 0, 0},
            {"task", OPT_ENUM, &o.task, "autoencoder|classify", "targets: the inputs, or one-hot labels (softmax output)", OPT_FIXED, 0},
            {"preset", OPT_STR, &o.preset, "NAME", "mnist-autoencoder, curves-autoencoder, faces-autoencoder", OPT_FIXED, 0},
            {"layers", OPT_STR, &o.layers, "SPEC", "layer sizes, e.g. 784-500-10 (instead of --preset)", OPT_FIXED, 0},
            {"hidden-act", OPT_ENUM, &o.hidden_act, act_choices, "nonlinearity of hidden layers without :act in --layers", OPT_FIXED, 0},
            {"loss", OPT_ENUM, &o.loss, "squared|bernoulli|categorical", "output loss with --layers (classify: categorical)", OPT_FIXED, 0},
            {"init", OPT_ENUM, &o.init, "sparse|gaussian|glorot", "initialisation (sparse: 15 incoming N(0,1) weights per unit, Martens 2010)", OPT_FIXED, 0},
            {"init-scale", OPT_FLOAT, &o.init_scale, "S", "std of --init gaussian", OPT_FIXED, 0},
            {"optimizer", OPT_ENUM, &o.optimizer, "nag|sgd|adam|rmsprop|kfac|ngd|ngd-l|ncg-l|ncg-f|hf|prong", "update rule: Nesterov (Sutskever et al. 2013, the K-FAC paper's baseline), SGD + momentum, Adam, RMSprop, K-FAC (Martens & Grosse 2015: its own damping, rescaling and momentum; --lr is not used), natural gradient by truncated Newton with a fixed --lr (ngd) or a line search (ngd-l), natural conjugate gradient with the 2-D search (ncg-l) or Polak-Ribiere (ncg-f) (Pascanu & Bengio 2014), Hessian-free (hf, Martens 2010), PRONG (Desjardins et al. 2015: SGD + --momentum on whitened layers, reparametrised every --prong-T updates; with +bn layers: PRONG+). Under mpirun -np N every rule runs data-parallel (kfac, ngd..hf and --precond diag, kfac, full reduce their curvature statistics across ranks, sampled targets drawn by the case's global column, prong its whitening statistics; not kfac with +bn layers; +bn layers are synchronised across ranks, each rank's shard within one --chunk)", OPT_FIXED, 0},
            {"precond", OPT_ENUM, &o.precond, "identity|diag|kfac|full", "nag, sgd, adam, rmsprop: the gradient as is, or divided elementwise by (diag(metric) + --diag-lambda)^--diag-power (Sohl-Dickstein 2012 eq. 34), or (kfac, with --phi-every K) the rule runs in phi = (A (x) G)^(1/2) theta of K-FAC's block-diagonal Kronecker factors (damping --gamma0, statistics --tau1, --kfac-eps-max, --kfac-pi), or (full, with --phi-every K) in phi = (G + --full-lambda I)^(1/2) theta of the dense Fisher of the batch (networks of at most 2048 parameters)", OPT_FIXED, 0},
            {"full-lambda", OPT_FLOAT, &o.fl_lambda, "L", "--precond full: added to the dense Fisher (> 0), or the eps of --full-inverse regularized", OPT_FIXED, 0},
            {"full-inverse", OPT_ENUM, &o.fl_inv, "tikhonov|regularized", "--precond full: the metric's root from G + lambda I, or Sohl-Dickstein's regularised inverse (eq. 35): SGD in phi then steps by (G^2 + lambda^2 I)^-1 G grad", OPT_FIXED, 0},
            {"diag-metric", OPT_ENUM, &o.dg_metric, "fisher|empirical", "--precond diag: squared per-case gradients with targets sampled from the model (eq. 30) or the data's (eq. 31)", OPT_FIXED, 0},
            {"diag-lambda", OPT_FLOAT, &o.dg_lambda, "L", "--precond diag: added to the diagonal", OPT_FIXED, 0},
            {"diag-power", OPT_FLOAT, &o.dg_power, "P", "--precond diag: exponent in (0, 1] (1: the diagonal natural gradient; 0.5: RMSprop-like)", OPT_FIXED, 0},
            {"diag-beta", OPT_FLOAT, &o.dg_beta, "B", "--precond diag: moving average of the diagonal over updates, bias-corrected", OPT_FIXED, 0},
            {"phi-every", OPT_INT, &o.dg_phi, "K", "--precond diag|kfac|full: 0, or run --optimizer in the natural parameter space phi = G^(1/2) theta (Sohl-Dickstein eq. 37) with G (the diagonal, K-FAC's factors or the dense Fisher) re-estimated every K updates and fixed in between (kfac, full: required)", OPT_FIXED, 0},
            {"prong-eps", OPT_FLOAT, &o.pg.eps, "E", "prong: eigenvalue regulariser, U = diag(lambda + E)^-1/2 E^T (0.1)", OPT_FIXED, 0},
            {"prong-T", OPT_INT, &o.pg.T, "T", "prong: updates between reparametrisations (100)", OPT_FIXED, 0},
            {"cuda-graph", OPT_INT, &o.cuda_graph, "0|1", "CUDA: 1 = capture the unlogged steady-state update (gradient, weight decay, update step) in a CUDA graph and replay it, one graph launch per update instead of every kernel and cuBLAS call; re-captured when the batch shape or the rule's per-update scalars change (sgd's decaying lr, nag's momentum every 250 updates; adam keeps its step count on the device and replays one graph). sgd, nag, adam, rmsprop with --precond identity or diag (its bias correction and sampled targets' step on the device) or --precond kfac|full --phi-every K (the refreshes every K updates run eagerly, in place; K-FAC's statistics read their targets' step on the device), and prong (its reparametrisations every --prong-T updates run eagerly, in place); the finite-objective check then follows the update. kfac, ngd, ngd-l, ncg-l, ncg-f, hf (they read the host mid-update): graph segments instead, each piece between host reads captured once and replayed (the gradient; every curvature product of CG / MINRES-QLP and the vector work of each CG iteration; K-FAC's factor statistics, F^-1 products, quadratic model and rho evaluation), the host reads, searches and inverse refreshes eager; --kfac-async too (its worker thread's calls do not disturb the captures, which are thread-local). Under mpirun (NCCL; --precond identity, diag, full or kfac --phi-every K, and prong; +bn layers too, merged on the device) the gradient's all-reduce (or its --comm-overlap buckets) is inside the whole-step graph, with diag's metric all-reduce, K-FAC's factor all-reduces and batch norm's; the graph segments of kfac and the truncated-Newton methods hold the gradient's, each curvature product's and K-FAC's factor all-reduces (every rank's segment decisions checked once per update). Results are bit-identical to 0 (the default). Ignored on the CPU backend", 0, 0},
            {"prong-ns", OPT_INT, &o.pg.ns, "N", "prong: training cases per estimate of the means and covariances (1000)", OPT_FIXED, 0},
            {"prong-form", OPT_ENUM, &o.pg_form, "canonical|whitened", "prong: canonical = train W = V U with the whitened SGD step mapped to W (one product by U^T U per layer and update; the default, fastest), whitened = train V, d with the input whitened in every pass (curvature products available; two products by U per layer)", OPT_FIXED, 0},
            {"prong-fanin", OPT_INT, &o.pg_fanin, "0|1", "prong: 1 = keep the --init network at update 0 (projection), 0 = section 4.1's whitened initialisation", OPT_FIXED, 0},
            {"kfac-approx", OPT_ENUM, &o.kf_approx, "blockdiag|tridiag", "kfac: inverse approximation (section 4.2 / 4.3)", OPT_FIXED, 0},
            {"kfac-inverse", OPT_ENUM, &o.kf_inv, "tikhonov|regularized", "kfac: invert each damped factor as (F + d I)^-1, or as Sohl-Dickstein's regularised inverse (F^2 + d^2 I)^-1 F (eq. 35; tridiag: layer L's factors and those inside Psi, Sigma_{l|l+1} stays Tikhonov-damped)", OPT_FIXED, 0},
            {"kfac-momentum", OPT_INT, &o.kf_mom, "0|1", "kfac: momentum of section 7 (mu from the quadratic model)", OPT_FIXED, 0},
            {"lambda0", OPT_FLOAT, &o.kf_lambda0, "L", "kfac, ngd..hf: initial Levenberg-Marquardt damping (0: the default, kfac 150, the truncated-Newton methods 1; Pascanu & Bengio's CURVES runs: 3)", OPT_FIXED, 0},
            {"gamma0", OPT_FLOAT, &o.kf_gamma0, "G", "kfac: initial factored damping (0: sqrt(lambda0 + eta)); --precond kfac: the fixed damping of phi's factors (0: sqrt(150 + eta))", OPT_FIXED, 0},
            {"tau1", OPT_FLOAT, &o.kf_tau1, "F", "kfac: share of the batch for the factor statistics (1/8)", OPT_FIXED, 0},
            {"tau2", OPT_FLOAT, &o.kf_tau2, "F", "kfac: share of the batch for the exact-Fisher products (1/4)", OPT_FIXED, 0},
            {"T1", OPT_INT, &o.kf_T1, "N", "kfac: lambda adapted every N updates (5)", OPT_FIXED, 0},
            {"T2", OPT_INT, &o.kf_T2, "N", "kfac: gamma adapted every N updates (20, a multiple of --T3)", OPT_FIXED, 0},
            {"T3", OPT_INT, &o.kf_T3, "N", "kfac: inverses recomputed every N updates and at the first three (20)", OPT_FIXED, 0},
            {"omega1", OPT_FLOAT, &o.kf_omega1, "W", "kfac: lambda factor (0: (19/20)^T1)", OPT_FIXED, 0},
            {"omega2", OPT_FLOAT, &o.kf_omega2, "W", "kfac: gamma factor (0: sqrt(19/20)^T2)", OPT_FIXED, 0},
            {"kfac-eps-max", OPT_FLOAT, &o.kf_epsmax, "E", "kfac: cap of the factor moving average min(1 - 1/k, E) (0.95)", OPT_FIXED, 0},
            {"kfac-rescale", OPT_INT, &o.kf_rescale, "0|1", "kfac: rescale by the exact-Fisher quadratic model (section 6.4; 0: raw proposal)", OPT_FIXED, 0},
            {"adapt-lambda", OPT_INT, &o.kf_alam, "0|1", "kfac, ngd..hf: Levenberg-Marquardt adaptation of lambda (K-FAC 6.5; Martens 2010 4.1)", OPT_FIXED, 0},
            {"tn-rho", OPT_ENUM, &o.tn_rho, "linear|quadratic", "ngd..ncg: the prediction in Levenberg-Marquardt's rho: first-order g^T delta (Pascanu & Bengio eq. 32) or Martens' quadratic model (one more product per update; hf always uses it)", OPT_FIXED, 0},
            {"cg-iters", OPT_INT, &o.tn_iters, "N", "ngd..hf: at most N solver iterations (0: 20 for the natural-gradient methods, as Pascanu & Bengio's Algorithm 2; 250 for hf)", OPT_FIXED, 0},
            {"cg-rtol", OPT_FLOAT, &o.tn_rtol, "R", "ngd..hf: stop the solver at relative residual R (negative: 1e-4, hf 0 = Martens' progress rule only)", OPT_FIXED, 0},
            {"tn-solver", OPT_ENUM, &o.tn_solver, "cg|minres-qlp", "ngd..ncg: linear CG or MINRES-QLP (Choi, Paige & Saunders 2011) for singular / ill-conditioned metrics", OPT_FIXED, 0},
            {"curvature", OPT_ENUM, &o.tn_curv, "gn|hessian", "hf: Gauss-Newton products, or the Hessian (CG stops at negative curvature)", OPT_FIXED, 0},
            {"metric", OPT_ENUM, &o.tn_metric, "same|separate|unlabeled", "ngd..hf: the curvature's mini-batch: the gradient's, an independent draw of --metric-batch training cases, or inputs from the training cases beyond --limit (no targets needed; Pascanu & Bengio section 7)", OPT_FIXED, 0},
            {"tn-fisher", OPT_ENUM, &o.tn_fisher, "exact|sampled|empirical", "ngd..hf: the metric of the products: the Gauss-Newton matrix G (= the exact Fisher for matching losses), the Fisher over the model's distribution with targets drawn once per update, or the empirical Fisher (1/m) sum_i g_i g_i^T of the data's targets (Sohl-Dickstein 2012 eq. 31; not with --metric unlabeled)", OPT_FIXED, 0},
            {"tn-fisher-samples", OPT_INT, &o.tn_fsamples, "S", "ngd..hf, --tn-fisher sampled: target draws per case", OPT_FIXED, 0},
            {"metric-batch", OPT_INT, &o.tn_mbatch, "M", "ngd..hf: cases of a separate / unlabeled metric batch", OPT_FIXED, 0},
            {"lambda-min", OPT_FLOAT, &o.tn_lmin, "L", "ngd..hf: floor of the adapted damping (1e-6)", OPT_FIXED, 0},
            {"hf-decay", OPT_FLOAT, &o.tn_decay, "D", "hf: CG starts from D times the previous solution (0.95)", OPT_FIXED, 0},
            {"hf-precond", OPT_INT, &o.tn_hfpre, "0|1", "hf: diagonal preconditioner (diag(mean squared per-case gradients) + lambda)^0.75", OPT_FIXED, 0},
            {"hf-backtrack", OPT_INT, &o.tn_hfbt, "0|1", "hf: CG backtracking over iterates kept at ceil(1.3^j)", OPT_FIXED, 0},
            {"line-evals", OPT_INT, &o.tn_line, "N", "ngd-l, ncg-f, ncg-l: objective evaluations per line search (10)", OPT_FIXED, 0},
            {"search-evals", OPT_INT, &o.tn_search, "N", "ncg-l: evaluations of the 2-D search over (learning rate, conjugation) (30)", OPT_FIXED, 0},
            {"tn-timing", OPT_INT, &o.tn_timing, "0|1", "ngd..hf: synchronise the device between phases for the solve_s / search_s columns", 0, 0},
            {"adapt-gamma", OPT_INT, &o.kf_agam, "0|1", "kfac: greedy choice of gamma among 3 candidates (section 6.6)", OPT_FIXED, 0},
            {"kfac-pi", OPT_ENUM, &o.kf_pi, "trace|one", "kfac: pi of the factored damping (trace norms, or 1)", OPT_FIXED, 0},
            {"kfac-precision", OPT_ENUM, &o.kf_prec, "f32|f64", "kfac: precision of the factorisations (f32 retries failures in f64)", OPT_FIXED, 0},
            {"kfac-async", OPT_INT, &o.kf_async, "S", "kfac: -1 = off; S >= 0: inverses refreshed on a second stream/thread from a snapshot of the factors while updates go on, used S updates after the refresh point (0 = the synchronous result; S < T3)", OPT_FIXED, 0},
            {"kfac-timing", OPT_INT, &o.kf_timing, "0|1", "kfac: per-phase seconds in the log (synchronises the device between phases)", 0, 0},
            {"batch-schedule", OPT_ENUM, &o.schedule, "fixed|exp", "mini-batch sizes: --batch, or m_k = min(M1 exp((k-1)/b), |S|) reaching |S| at update --m-full (K-FAC section 13)", OPT_FIXED, 0},
            {"m1", OPT_INT, &o.m1, "M", "exp schedule: first batch size (1000)", OPT_FIXED, 0},
            {"m-full", OPT_INT, &o.m_full, "K", "exp schedule: the update whose batch is the whole training set (500)", OPT_FIXED, 0},
            {"lr", OPT_FLOAT, &o.lr, "EPS", "learning rate (0: the default, 0.01, and 1.0 for ngd..hf; Sutskever et al. pick it from 0.05 .. 0.0001; Adam, RMSprop: 1e-3; ngd: the fixed step, ngd-l..ncg-l: the searches' first trial step)", OPT_FIXED, 0},
            {"mu-max", OPT_FLOAT, &o.mu_max, "MU", "nag: cap of mu_t = min(1 - 2^(-1 - log2(floor(t/250) + 1)), MU)", OPT_FIXED, 0},
            {"final-steps", OPT_INT, &o.final_steps, "N", "nag: the last N updates of --steps use --final-mu (0 = off)", OPT_FIXED, 0},
            {"final-mu", OPT_FLOAT, &o.final_mu, "MU", "nag: momentum cap of the final phase", OPT_FIXED, 0},
            {"momentum", OPT_FLOAT, &o.momentum, "MU", "sgd: heavy-ball momentum", OPT_FIXED, 0},
            {"beta1", OPT_FLOAT, &o.beta1, "B", "adam: first-moment decay", OPT_FIXED, 0},
            {"beta2", OPT_FLOAT, &o.beta2, "B", "adam: second-moment decay", OPT_FIXED, 0},
            {"rho", OPT_FLOAT, &o.rho, "RHO", "rmsprop: decay of the mean square", OPT_FIXED, 0},
            {"eps", OPT_FLOAT, &o.eps, "E", "adam, rmsprop: added to the root mean square", OPT_FIXED, 0},
            {"weight-decay", OPT_FLOAT, &o.weight_decay, "ETA", "L2 penalty eta/2 |theta|^2 on every parameter (K-FAC: 1e-5)", OPT_FIXED, 0},
            {"average", OPT_FLOAT, &o.average, "XI", "iterate averaging theta_bar = XI theta_bar + (1 - XI) theta (K-FAC: 0.99; 0 = off); the log reports min(error at theta, at theta_bar)", OPT_FIXED, 0},
            {"batch", OPT_INT, &o.batch, "M", "mini-batch size", OPT_FIXED, 0},
            {"chunk", OPT_INT, &o.chunk, "C", "cases per pass (bounds device memory; results do not depend on it, except that +bn layers normalise each pass on its own statistics)", 0, 0},
            NG_OPT_SEED(&o.co, OPT_FIXED),
            {"steps", OPT_INT, &o.steps, "N", "total parameter updates", 0, 0},
            {"minutes", OPT_FLOAT, &o.minutes, "M", "stop after M minutes of wall clock (0 = no limit)", 0, 0},
            {"log-every", OPT_INT, &o.log_every, "N", "CSV row (with full training and test errors) every N updates", 0, 0},
            {"eval-n", OPT_INT, &o.eval_n, "N", "training cases used for train_error (0 = all)", 0, 0},
            {"checkpoint-every", OPT_INT, &o.ckpt_every, "N", "checkpoint every N updates (0 = only at the end)", 0, 0},
            NG_OPT_OUT(&o.co),
            NG_OPT_PROFILE(&o.co),
            {"csv", OPT_STR, &o.csv_path, "PATH", "CSV log (default OUT/train.csv)", 0, 0},
            {"checkpoint", OPT_STR, &o.ckpt_path, "PATH", "checkpoint file (default OUT/net.ckpt)", 0, 0},
            {"resume", OPT_STR, &o.resume, "CKPT", "continue the run saved in CKPT (its settings are used)", 0, 0},
            NG_OPT_DEVICE(&o.co),
            NG_OPT_THREADS(&o.co),
            NG_OPT_COMM(&o.co),
            NG_OPT_COMM_OVERLAP(&o.co),
            NG_OPT_END};
        const ng_opt *fixed;
        rc = ng_cli_parse("net train", TRAIN_SUMMARY, opts, argc, argv);
        if (rc < 0) return NG_EXIT_OK;
        if (rc) return rc;
        if (o.resume && (fixed = ng_cli_fixed_given(opts)) != NULL) {
            fprintf(stderr, "natgrad net train: --%s cannot be combined with --resume (the checkpoint's value is used)\n",
                    fixed->name);
            return NG_EXIT_USAGE;
        }
    }
    if (o.batch < 1 || o.chunk < 1 || o.steps < 0 || o.log_every < 1 || o.ckpt_every < 0 || o.limit < 0 ||
        o.eval_n < 0 || !(o.minutes >= 0.0f)) {
        fprintf(stderr, "natgrad net train: --batch, --chunk and --log-every must be >= 1; --steps, --limit, --eval-n, "
                        "--checkpoint-every and --minutes must be >= 0\n");
        return NG_EXIT_USAGE;
    }
    if (o.preset && o.layers) {
        fprintf(stderr, "natgrad net train: give --preset or --layers, not both\n");
        return NG_EXIT_USAGE;
    }
    cfg.chunk = o.chunk;
    cfg.seed = o.co.seed;
    cfg.init = o.init;
    cfg.init_scale = o.init_scale;
    if (o.resume) {
        /* the architecture and the run settings come from the checkpoint */
        int64_t v;
        if (ng_ckpt_read(o.resume, NG_CKPT_READ_ALL, &ck) != NG_OK || ng_net_config_from_ckpt(ck, &cfg) != NG_OK) {
            fprintf(stderr, "natgrad net train: --resume: %s\n", ng_last_error());
            ng_ckpt_free(ck);
            return NG_EXIT_FAIL;
        }
        if (ng_ckpt_get_int(ck, "data.batch", 1, 1 << 30, &v) != NG_OK || ng_ckpt_get_u64(ck, "run.seed", &cfg.seed) != NG_OK ||
            update_from_ckpt(ck, &o) != NG_OK) {
            fprintf(stderr, "natgrad net train: --resume: %s\n", ng_last_error());
            rc = NG_EXIT_FAIL;
            goto done;
        }
        o.batch = (int)v;
        o.task = cfg.target == NG_NET_TARGET_ROWS;
        o.schedule = 0;
        if (ng_ckpt_has(ck, "data.schedule_m1")) {
            int64_t a = 0, b = 0;
            if (ng_ckpt_get_int(ck, "data.schedule_m1", 1, 1 << 30, &a) != NG_OK ||
                ng_ckpt_get_int(ck, "data.schedule_full", 1, 1 << 30, &b) != NG_OK) {
                fprintf(stderr, "natgrad net train: --resume: %s\n", ng_last_error());
                rc = NG_EXIT_FAIL;
                goto done;
            }
            o.schedule = 1;
            o.m1 = (int)a;
            o.m_full = (int)b;
        }
    } else {
        if (o.lr == 0.0f) o.lr = IS_TN(o.optimizer) ? 1.0f : 0.01f;
        /* K-FAC's settings from the options */
        o.kf.approx = o.kf_approx;
        o.kf.lambda0 = o.kf_lambda0 != 0.0f ? o.kf_lambda0 : o.kf.lambda0;
        o.kf.gamma0 = o.kf_gamma0;
        o.kf.tau1 = o.kf_tau1;
        o.kf.tau2 = o.kf_tau2;
        o.kf.T1 = o.kf_T1;
        o.kf.T2 = o.kf_T2;
        o.kf.T3 = o.kf_T3;
        o.kf.omega1 = o.kf_omega1;
        o.kf.omega2 = o.kf_omega2;
        o.kf.eps_max = o.kf_epsmax;
        o.kf.momentum = o.kf_mom != 0;
        o.kf.rescale = o.kf_rescale != 0;
        o.kf.adapt_lambda = o.kf_alam != 0;
        o.kf.adapt_gamma = o.kf_agam != 0;
        o.kf.pi_mode = o.kf_pi;
        o.kf.precision = o.kf_prec ? NG_F64 : NG_F32;
        o.kf.async_lag = o.kf_async;
        o.kf.inverse = o.kf_inv;
        o.kf.eta = o.weight_decay;
        o.kf.seed = cfg.seed;
        if (o.optimizer == OPT_KFAC && ng_kfac_config_check(&o.kf) != NG_OK) {
            fprintf(stderr, "natgrad net train: %s\n", ng_last_error());
            return NG_EXIT_USAGE;
        }
        /* the truncated-Newton settings */
        if (IS_TN(o.optimizer)) o.tc.method = o.optimizer - OPT_TN;
        o.tc.solver = o.tn_solver;
        o.tc.curvature = o.tn_curv;
        o.tc.max_iter = o.tn_iters;
        o.tc.rtol = o.tn_rtol;
        o.tc.lambda0 = o.kf_lambda0 != 0.0f ? o.kf_lambda0 : o.tc.lambda0;
        o.tc.adapt_lambda = o.kf_alam != 0;
        o.tc.rho_model = o.tn_rho;
        o.tc.lambda_min = o.tn_lmin;
        o.tc.lr = o.lr;
        o.tc.eta = o.weight_decay;
        o.tc.metric = o.tn_metric;
        o.tc.metric_batch = o.tn_mbatch;
        o.tc.fisher = o.tn_fisher;
        o.tc.fisher_samples = o.tn_fsamples;
        o.tc.hf_decay = o.tn_decay;
        o.tc.hf_precond = o.tn_hfpre;
        o.tc.hf_backtrack = o.tn_hfbt;
        o.tc.line_evals = o.tn_line;
        o.tc.search_evals = o.tn_search;
        o.tc.seed = cfg.seed;
        if (IS_TN(o.optimizer) && ng_tn_config_check(&o.tc) != NG_OK) {
            fprintf(stderr, "natgrad net train: %s\n", ng_last_error());
            return NG_EXIT_USAGE;
        }
        if (IS_TN(o.optimizer) && o.tc.metric != NG_TN_METRIC_SAME && o.tc.metric_batch < 1) {
            fprintf(stderr, "natgrad net train: --metric %s needs --metric-batch M (Pascanu & Bengio: 384 beside a gradient batch of 256)\n",
                    ng_tn_metric_name(o.tc.metric));
            return NG_EXIT_USAGE;
        }
        if (IS_TN(o.optimizer) && o.tc.metric == NG_TN_METRIC_UNLABELED && o.limit == 0) {
            fprintf(stderr, "natgrad net train: --metric unlabeled draws from the training cases beyond --limit N: give --limit "
                            "(the labelled cases; the rest act as the unlabeled pool)\n");
            return NG_EXIT_USAGE;
        }
        if (IS_TN(o.optimizer) && o.schedule) {
            fprintf(stderr, "natgrad net train: --batch-schedule exp is K-FAC's; the truncated-Newton methods use --batch\n");
            return NG_EXIT_USAGE;
        }
        if (!IS_TN(o.optimizer) && o.optimizer != OPT_KFAC && o.kf_lambda0 != 0.0f) {
            fprintf(stderr, "natgrad net train: --lambda0 is an option of kfac, ngd, ngd-l, ncg-l, ncg-f and hf, not of %s\n",
                    optimizer_names[o.optimizer]);
            return NG_EXIT_USAGE;
        }
        ng_diag_config_default(&o.dg);
        o.dg.metric = o.dg_metric;
        o.dg.lambda = o.dg_lambda;
        o.dg.power = o.dg_power;
        o.dg.beta = o.dg_beta;
        o.dg.phi_every = o.dg_phi;
        o.dg.seed = cfg.seed;
        if (o.dg_phi && !o.precond) {
            fprintf(stderr, "natgrad net train: --phi-every needs --precond diag or kfac (the metric whose square root defines phi)\n");
            return NG_EXIT_USAGE;
        }
        if (o.precond && (IS_TN(o.optimizer) || o.optimizer == OPT_KFAC || o.optimizer == OPT_PRONG)) {
            fprintf(stderr, "natgrad net train: --precond %s goes under a first-order rule (nag, sgd, adam, rmsprop), not %s\n",
                    o.precond == 3 ? "full" : o.precond == 2 ? "kfac" : "diag", optimizer_names[o.optimizer]);
            return NG_EXIT_USAGE;
        }
        if (o.precond == 2) {
            /* K-FAC's factors as the metric of the natural parameter space */
            if (o.dg_phi <= 0) {
                fprintf(stderr, "natgrad net train: --precond kfac needs --phi-every K (the rule runs in phi = (A (x) G)^(1/2) theta; "
                                "K-FAC's own update is --optimizer kfac)\n");
                return NG_EXIT_USAGE;
            }
            o.kf.phi_every = o.dg_phi;
            if (ng_kfac_config_check(&o.kf) != NG_OK) {
                fprintf(stderr, "natgrad net train: %s\n", ng_last_error());
                return NG_EXIT_USAGE;
            }
        }
        if (o.precond == 3) {
            /* the dense Fisher as the metric of the natural parameter space */
            ng_full_config_default(&o.fl);
            o.fl.lambda = o.fl_lambda;
            o.fl.inverse = o.fl_inv;
            o.fl.phi_every = o.dg_phi;
            if (o.dg_phi <= 0) {
                fprintf(stderr, "natgrad net train: --precond full needs --phi-every K (the rule runs in phi = (G + lambda I)^(1/2) theta)\n");
                return NG_EXIT_USAGE;
            }
            if (ng_full_config_check(&o.fl) != NG_OK) {
                fprintf(stderr, "natgrad net train: %s\n", ng_last_error());
                return NG_EXIT_USAGE;
            }
        }
        if (o.precond == 1 && ng_diag_config_check(&o.dg) != NG_OK) {
            fprintf(stderr, "natgrad net train: %s\n", ng_last_error());
            return NG_EXIT_USAGE;
        }
        if (o.schedule && (o.m1 < 1 || o.m_full < 2)) {
            fprintf(stderr, "natgrad net train: --m1 must be >= 1 and --m-full >= 2\n");
            return NG_EXIT_USAGE;
        }
    }
    if ((rc = load_data("net train", "training", o.co.data, o.co.data_dir, "train", o.task == 1, o.limit, &train))) goto done;
    if (o.test_data || !ng_cli_is_path(o.co.data)) {
        const char *tn = o.test_data ? o.test_data : o.co.data;
        if ((rc = load_data("net train", "test", tn, o.co.data_dir, "test", o.task == 1, 0, &test))) goto done;
        if (test.dim != train.dim) {
            fprintf(stderr, "natgrad net train: test data has dimension %d, training data %d\n", test.dim, train.dim);
            rc = NG_EXIT_USAGE;
            goto done;
        }
    }
    if (o.task == 1) {
        classes = max_label(&train) + 1;
        if (test.n && max_label(&test) + 1 > classes) classes = max_label(&test) + 1;
        if (classes < 2) {
            fprintf(stderr, "natgrad net train: --task classify needs at least 2 classes, the labels hold %d\n", classes);
            rc = NG_EXIT_USAGE;
            goto done;
        }
    }
    if (!o.resume) {
        s = NG_OK;
        if (o.preset) {
            s = ng_net_preset(o.preset, &cfg);
        } else if (o.layers) {
            cfg.loss = o.task == 1 ? NG_LOSS_CATEGORICAL : o.loss;
            s = ng_net_parse_spec(o.layers, o.hidden_act,
                                  cfg.loss == NG_LOSS_SQUARED ? NG_ACT_LINEAR : cfg.loss == NG_LOSS_BERNOULLI ? NG_ACT_LOGISTIC : NG_ACT_SOFTMAX,
                                  &cfg);
        } else {
            char spec[64];
            if (o.task == 1) {
                snprintf(spec, sizeof spec, "%d-500-%d", train.dim, classes);
                cfg.loss = NG_LOSS_CATEGORICAL;
                s = ng_net_parse_spec(spec, o.hidden_act, NG_ACT_SOFTMAX, &cfg);
            } else {
                s = ng_net_preset(train.dim == 625 ? "faces-autoencoder" : "mnist-autoencoder", &cfg);
            }
        }
        cfg.target = o.task == 1 ? NG_NET_TARGET_ROWS : NG_NET_TARGET_INPUT;
        cfg.whiten = o.optimizer == OPT_PRONG ? (o.pg_form ? 1 : 2) : 0;
        o.pg.whitened_init = !o.pg_fanin;
        o.pg.seed = cfg.seed;
        if (s == NG_OK && o.optimizer == OPT_PRONG) s = ng_prong_config_check(&o.pg);
        if (s == NG_OK && o.optimizer == OPT_PRONG && o.pg.ns > train.n)
            s = ng_error(NG_ERR_INVALID_ARG, "--prong-ns %d exceeds the %d training cases", o.pg.ns, train.n);
        if (s != NG_OK) {
            fprintf(stderr, "natgrad net train: %s\n", ng_last_error());
            rc = NG_EXIT_USAGE;
            goto done;
        }
    }
    /* the data must fit the network: name the layer that does not */
    if (cfg.dims[0] != train.dim) {
        fprintf(stderr, "natgrad net train: the input layer (layer 0) has %d units but the data has dimension %d (%dx%d images)\n",
                cfg.dims[0], train.dim, train.height, train.width);
        rc = NG_EXIT_USAGE;
        goto done;
    }
    if (o.task == 1 && cfg.dims[cfg.n_layers] != classes) {
        fprintf(stderr, "natgrad net train: the output layer (layer %d) has %d units but the labels have %d classes\n",
                cfg.n_layers, cfg.dims[cfg.n_layers], classes);
        rc = NG_EXIT_USAGE;
        goto done;
    }
    if (ng_net_config_check(&cfg) != NG_OK) {
        fprintf(stderr, "natgrad net train: %s\n", ng_last_error());
        rc = NG_EXIT_USAGE;
        goto done;
    }
    if (o.schedule && !o.resume) o.batch = train.n; /* the buffers hold the largest batch */
    if (o.batch > train.n) {
        fprintf(stderr, "natgrad net train: --batch %d is larger than the %d training cases\n", o.batch, train.n);
        rc = NG_EXIT_USAGE;
        goto done;
    }
    if (ng_mkdirs(o.co.out) != 0) {
        fprintf(stderr, "natgrad net train: cannot create output directory %s: %s\n", o.co.out, strerror(errno));
        rc = NG_EXIT_FAIL;
        goto done;
    }
    if (!o.csv_path) snprintf(csvbuf, sizeof csvbuf, "%s/train.csv", o.co.out), o.csv_path = csvbuf;
    if (!o.ckpt_path) snprintf(ckbuf, sizeof ckbuf, "%s/net.ckpt", o.co.out), o.ckpt_path = ckbuf;
    append = o.resume && ng_cli_same_file(o.resume, o.ckpt_path);
    if (!append && !o.co.force && (ng_cli_file_exists(o.ckpt_path, 0) || ng_cli_file_exists(o.csv_path, 1))) {
        fprintf(stderr, "natgrad net train: %s already holds a run; continue it with --resume %s, choose another --out, "
                        "or overwrite it with --force\n", o.co.out, o.ckpt_path);
        rc = NG_EXIT_USAGE;
        goto done;
    }
    ng_cli_dist_allow(); /* data-parallel under mpirun */
    if ((rc = ng_cli_backend(&o.co, &be))) goto done;
    {
        char spec[1024];
        fprintf(stderr, "natgrad: data %s: %d training cases of dimension %d%s%s%s\n", train.name, train.n, train.dim,
                test.n ? ", test set " : "", test.n ? test.name : "", classes ? " (classification)" : "");
        s = ng_net_create(be, &cfg, &net);
        if (s == NG_OK)
            fprintf(stderr, "natgrad: network %s, loss %s, init %s, %zu parameters; %s lr %g, L2 %g, averaging %g, batch %d, seed %llu\n",
                    ng_net_spec_string(&cfg, spec, sizeof spec), ng_loss_name(cfg.loss),
                    cfg.init == NG_INIT_SPARSE ? "sparse" : cfg.init == NG_INIT_GAUSSIAN ? "gaussian" : "glorot",
                    ng_model_size(net), optimizer_names[o.optimizer], o.optimizer == OPT_KFAC || IS_TN(o.optimizer) ? 1.0 : (double)o.lr, (double)o.weight_decay,
                    (double)o.average, o.batch, (unsigned long long)cfg.seed);
    }
    if (s == NG_OK && ng_cli_world() > 1) {
        /* batch norm over the global batch: synchronised across ranks, one pass per rank */
        int l, bn = 0, W = ng_cli_world(), shard = (o.batch + W - 1) / W, ns = (o.pg.ns + W - 1) / W;
        for (l = 0; l < cfg.n_layers; l++) bn |= cfg.bn[l];
        if (bn && o.optimizer == OPT_KFAC)
            s = ng_error(NG_ERR_INVALID_ARG, "--optimizer kfac with batch-normalised layers (+bn) does not run on %d ranks: "
                         "K-FAC's Kronecker factors do not cover batch normalisation (one process refuses it too); drop +bn, "
                         "or use sgd, nag, adam, rmsprop, prong or ngd..hf with +bn", W);
        else if (bn && shard > cfg.chunk)
            s = ng_error(NG_ERR_INVALID_ARG, "--chunk %d: batch norm on %d ranks normalises over the whole global batch in one "
                         "pass per rank, and a shard of --batch %d is %d cases: raise --chunk to >= %d", cfg.chunk, W, o.batch,
                         shard, shard);
        else if (bn && o.optimizer == OPT_PRONG && ns > cfg.chunk)
            s = ng_error(NG_ERR_INVALID_ARG, "--chunk %d: PRONG+'s statistics on %d ranks take %d of the --prong-ns %d cases "
                         "in one pass per rank (batch norm over all of them): raise --chunk to >= %d", cfg.chunk, W, ns,
                         o.pg.ns, ns);
        if (s == NG_OK) s = ng_net_set_comm(net, ng_cli_comm());
    }
    if (s == NG_OK && o.optimizer == OPT_KFAC) {
        o.kf.timing = o.kf_timing != 0;
        fprintf(stderr, "natgrad: K-FAC %s, lambda0 %g, gamma0 %g, tau1 %g, tau2 %g, T1 %d, T2 %d, T3 %d, momentum %s, %s%s\n",
                ng_kfac_approx_name(o.kf.approx), o.kf.lambda0, o.kf.gamma0 > 0 ? o.kf.gamma0 : sqrt(o.kf.lambda0 + o.kf.eta),
                o.kf.tau1, o.kf.tau2, o.kf.T1, o.kf.T2, o.kf.T3, o.kf.momentum ? "on" : "off",
                o.schedule ? "growing batches" : "fixed batches", o.kf.async_lag >= 0 ? ", asynchronous refreshes" : "");
        s = ng_precond_kfac_init(be, net, &o.kf, &pc);
    } else if (s == NG_OK && IS_TN(o.optimizer)) {
        o.tc.timing = o.tn_timing != 0;
        fprintf(stderr, "natgrad: %s (truncated Newton, %s on %s%s products, at most %d iterations, rtol %g), lambda0 %g%s, lr %g, metric %s%s\n",
                ng_tn_method_name(o.tc.method), o.tc.solver ? "MINRES-QLP" : "CG",
                o.tc.curvature ? "Hessian" : o.tc.fisher == NG_FISHER_EXACT ? "Gauss-Newton (= Fisher)" :
                o.tc.fisher == NG_FISHER_SAMPLED ? "sampled-Fisher" : "empirical-Fisher",
                o.tc.fisher == NG_FISHER_SAMPLED ? " (targets drawn per update)" : "",
                o.tc.max_iter > 0 ? o.tc.max_iter : (o.tc.method == NG_TN_HF ? 250 : 20),
                o.tc.rtol >= 0 ? o.tc.rtol : (o.tc.method == NG_TN_HF ? 0.0 : 1e-4), o.tc.lambda0,
                o.tc.adapt_lambda ? " (Levenberg-Marquardt)" : " (fixed)", o.tc.lr, ng_tn_metric_name(o.tc.metric),
                o.tc.metric == NG_TN_METRIC_SAME ? " (the gradient's batch)" : "");
        if (o.tc.metric != NG_TN_METRIC_SAME) {
            s = metric_pool(o.co.data, o.co.data_dir, o.tc.metric, o.limit, o.task, classes, &train, &mpool, &mpool_n);
            if (s == NG_OK)
                fprintf(stderr, "natgrad: metric batches of %d cases from %d %s\n", o.tc.metric_batch, mpool_n,
                        o.tc.metric == NG_TN_METRIC_UNLABELED ? "unlabeled inputs (training cases beyond --limit)" : "training cases");
        }
        if (s == NG_OK) s = ng_precond_tn_init(be, net, &o.tc, mpool, mpool_n, &pc);
    } else if (s == NG_OK && o.optimizer == OPT_PRONG) {
        /* created below, once the update rule and the training matrix exist */
        int l, plus = 0;
        for (l = 0; l < cfg.n_layers; l++) plus |= cfg.bn[l];
        fprintf(stderr, "natgrad: PRONG%s: eps %g, reparametrisation every %d updates on %d cases, %s at update 0, SGD momentum %g\n",
                plus ? "+ (batch norm)" : "", (double)o.pg.eps, o.pg.T, o.pg.ns,
                o.pg.whitened_init ? "whitened initialisation" : "projection of the initial network", (double)o.momentum);
        if (ng_cli_world() > 1 && o.pg.ns < ng_cli_world())
            s = ng_error(NG_ERR_INVALID_ARG, "--prong-ns %d: on %d ranks every rank needs a sample (--prong-ns >= %d)", o.pg.ns,
                         ng_cli_world(), ng_cli_world());
    } else if (s == NG_OK && o.precond == 2) {
        o.kf.timing = o.kf_timing != 0;
        fprintf(stderr, "natgrad: natural parameter space of K-FAC's block-diagonal factors (Sohl-Dickstein eq. 37): phi = (A (x) G)^(1/2) theta "
                        "per layer, damping %g (pi %s), factors from %g of each batch, refreshed every %d updates\n",
                o.kf.gamma0 > 0 ? o.kf.gamma0 : sqrt(o.kf.lambda0 + o.kf.eta), o.kf.pi_mode == NG_KFAC_PI_ONE ? "1" : "by traces",
                o.kf.tau1, o.kf.phi_every);
        s = ng_precond_kfac_init(be, net, &o.kf, &pc);
    } else if (s == NG_OK && o.precond == 3) {
        fprintf(stderr, "natgrad: natural parameter space of the dense Fisher (Sohl-Dickstein eq. 37): phi = (G + %g I)^(1/2) theta, "
                        "G from %zu Gauss-Newton products on the batch, recomputed every %d updates\n",
                o.fl.lambda, ng_model_size(net), o.fl.phi_every);
        s = ng_precond_full_init(be, net, &o.fl, &pc);
    } else if (s == NG_OK && o.precond) {
        o.dg.max_batch = o.batch;
        fprintf(stderr, "natgrad: diagonal preconditioner (Sohl-Dickstein eq. 34): metric %s, lambda %g, power %g, beta %g%s\n",
                ng_diag_metric_name(o.dg.metric), o.dg.lambda, o.dg.power, o.dg.beta,
                o.dg.phi_every > 0 ? "; the update rule steps in phi = G^(1/2) theta (eq. 37)" : "");
        if (o.dg.phi_every > 0) fprintf(stderr, "natgrad: natural parameter space: G re-estimated every %d updates\n", o.dg.phi_every);
        s = ng_precond_diag_init(be, net, &o.dg, &pc);
    } else if (s == NG_OK) {
        s = ng_precond_identity_init(be, &pc);
    }
    if (s == NG_OK && o.schedule)
        fprintf(stderr, "natgrad: batch schedule m_k = min(%d exp((k - 1) / b), %d), m_%d = %d\n", o.m1, train.n, o.m_full, train.n);
    if (s == NG_OK) s = make_update(be, net, &o, &upd);
    if (s == NG_OK && ((o.precond == 1 && o.dg.phi_every > 0) || o.precond == 2 || o.precond == 3)) {
        /* natural parameter space: the rule runs on phi = G^(1/2) theta */
        ng_update *inner = upd;
        upd = NULL;
        s = ng_update_phi_init(be, net, inner, pc, &upd);
        if (s != NG_OK) ng_update_free(inner);
    }
    if (s == NG_OK) {
        xtrain = batch_matrix(&train, classes, &rows);
        xtest = test.n ? batch_matrix(&test, classes, &rows) : NULL;
        if (!xtrain || (test.n && !xtest)) s = ng_error(NG_ERR_OOM, "out of host memory for the data");
    }
    if (s == NG_OK && o.optimizer == OPT_PRONG) s = ng_precond_prong_init(be, net, &o.pg, xtrain, train.n, upd, &pc);
    if (s == NG_OK) {
        s = ng_batches_init(&batches, be, xtrain, rows, train.n, o.batch, cfg.seed, ng_cli_rank(), ng_cli_world());
        batches_ready = s == NG_OK;
    }
    if (s == NG_OK) {
        s = ng_trainer_init(&tr, net, pc, upd, &batches, cfg.seed, monitor_columns);
        if (s == NG_OK) s = ng_trainer_set_comm_overlap(&tr, o.co.comm_overlap, o.co.comm_bucket_mb);
        if (s == NG_OK) s = ng_trainer_set_comm(&tr, ng_cli_comm()); /* data parallelism under mpirun */
        if (s == NG_OK && o.schedule) {
            tr.sched_m1 = o.m1;
            tr.sched_full = o.m_full;
        }
    }
    if (s != NG_OK) {
        fprintf(stderr, "natgrad net train: %s\n", ng_last_error());
        rc = s == NG_ERR_INVALID_ARG ? NG_EXIT_USAGE : NG_EXIT_FAIL;
        goto done;
    }
    if (o.cuda_graph != 0 && o.cuda_graph != 1) {
        fprintf(stderr, "natgrad net train: --cuda-graph %d: must be 0 or 1\n", o.cuda_graph);
        rc = NG_EXIT_USAGE;
        goto done;
    }
    if (o.cuda_graph && !ng_graph_supported(be))
        fprintf(stderr, "natgrad: note: --cuda-graph is ignored on the %s backend (no CUDA graphs)\n", be->iface->name);
    else if (o.cuda_graph && ng_trainer_set_cuda_graph(&tr, 1) != NG_OK) {
        fprintf(stderr, "natgrad net train: %s\n", ng_last_error());
        rc = NG_EXIT_USAGE;
        goto done;
    }
    if (o.resume) {
        if (ng_trainer_resume(&tr, ck) != NG_OK) {
            fprintf(stderr, "natgrad net train: --resume: %s\n", ng_last_error());
            rc = NG_EXIT_FAIL;
            goto done;
        }
        fprintf(stderr, "natgrad: resumed %s at update %llu\n", o.resume, (unsigned long long)tr.t);
    }
    ng_ckpt_free(ck);
    ck = NULL;
    /* evaluation sets on the device, once */
    eval_n = o.eval_n > 0 && o.eval_n < train.n ? o.eval_n : train.n;
    memset(&mc, 0, sizeof mc);
    s = ng_alloc(be, (size_t)rows * ((size_t)eval_n + (size_t)test.n) * sizeof(float), &evmem);
    if (s == NG_OK) {
        mc.train_x = ng_tensor_matrix((float *)evmem, rows, eval_n, rows);
        s = ng_tensor_set(be, &mc.train_x, xtrain);
    }
    if (s == NG_OK && test.n) {
        mc.test_x = ng_tensor_matrix((float *)evmem + (size_t)rows * eval_n, rows, test.n, rows);
        s = ng_tensor_set(be, &mc.test_x, xtest);
        mc.have_test = 1;
    }
    if (s != NG_OK) {
        fprintf(stderr, "natgrad net train: %s\n", ng_last_error());
        rc = NG_EXIT_FAIL;
        goto done;
    }
    s = ng_alloc(be, ng_model_size(net) * sizeof(float), &mc.backup);
    if (s != NG_OK) {
        fprintf(stderr, "natgrad net train: %s\n", ng_last_error());
        rc = NG_EXIT_FAIL;
        goto done;
    }
    mc.net = net;
    if (classes) {
        /* misclassification rates: a device buffer for the outputs and the labels on the host */
        int most = eval_n > test.n ? eval_n : test.n;
        mc.classes = classes;
        mc.train_labels = train.labels;
        mc.test_labels = test.n ? test.labels : NULL;
        s = ng_alloc(be, sizeof(float) * (size_t)classes * (size_t)most, &mc.pred.ptr);
        mc.pred_host = (float *)malloc(sizeof(float) * (size_t)classes * (size_t)most);
        if (s == NG_OK && !mc.pred_host) s = ng_error(NG_ERR_OOM, "out of host memory for the predictions");
        if (s != NG_OK) {
            fprintf(stderr, "natgrad net train: %s\n", ng_last_error());
            rc = NG_EXIT_FAIL;
            goto done;
        }
    }
    mc.upd = upd;
    mc.batch = o.batch;
    if (o.schedule) {
        mc.sched_m1 = o.m1;
        mc.sched_full = o.m_full;
        mc.n_train = train.n;
    }
    pcx.mc = &mc;
    pcx.col_err = column_index(&tr, "train_error_best");
    pcx.col_test = column_index(&tr, "test_error");
    memset(&run, 0, sizeof run);
    run.steps = (uint64_t)o.steps;
    run.minutes = o.minutes;
    run.log_every = o.log_every;
    run.ckpt_every = o.ckpt_every;
    run.out_dir = o.co.out;
    run.csv_path = o.csv_path;
    run.ckpt_path = o.ckpt_path;
    run.append = append;
    run.monitor = net_monitor;
    run.progress = net_progress;
    run.user = &pcx;
    mc.t_start = ng_time_s();
    mc.c_start = cpu_s();
    s = ng_run(&tr, &run, &res);
    if (s != NG_OK) {
        fprintf(stderr, "\nnatgrad net train: update %llu: %s\n", (unsigned long long)tr.t, ng_last_error());
        if (res.saved)
            fprintf(stderr, "natgrad: the checkpoint of update %llu is %s\n", (unsigned long long)res.end, o.ckpt_path);
        else if (ng_cli_file_exists(o.ckpt_path, 1))
            fprintf(stderr, "natgrad: the last good checkpoint is %s\n", o.ckpt_path);
        rc = NG_EXIT_FAIL;
    } else {
        fprintf(stderr, "natgrad: %s after %llu updates in %.1f s (%.2f updates/s); checkpoint %s, log %s\n",
                res.interrupted ? "interrupted" : "done", (unsigned long long)res.end, res.seconds,
                res.seconds > 0 ? (double)(res.end - res.start) / res.seconds : 0.0, o.ckpt_path, o.csv_path);
        if (ng_cli_rank() == 0) write_plots(o.co.out, o.csv_path, train.name);
        if (!classes && test.n && ng_cli_rank() == 0) {
            snprintf(pngbuf, sizeof pngbuf, "%s/reconstructions.png", o.co.out);
            write_reconstructions(net, &test, &mc.test_x, pngbuf);
        }
        rc = res.interrupted ? NG_EXIT_FAIL : NG_EXIT_OK;
        if (ng_cli_profile_report(&o.co) && rc == NG_EXIT_OK) rc = NG_EXIT_FAIL;
    }
    if (tr.graph.on)
        fprintf(stderr, "natgrad: CUDA graphs: %llu updates captured, %llu replayed, %llu eager (update 0 and logged updates)\n",
                (unsigned long long)tr.graph.captures, (unsigned long long)tr.graph.replays,
                (unsigned long long)tr.graph.eager);
done:
    ng_trainer_release(&tr);
    ng_ckpt_free(ck);
    if (evmem) ng_free(be, evmem);
    if (mc.backup) ng_free(be, mc.backup);
    if (mc.pred.ptr) ng_free(be, mc.pred.ptr);
    free(mc.pred_host);
    if (batches_ready) ng_batches_free(&batches);
    ng_update_free(upd);
    ng_precond_free(pc);
    ng_net_free(net);
    ng_backend_free(be);
    free(xtrain);
    free(xtest);
    free(mpool);
    ng_dataset_free(&train);
    ng_dataset_free(&test);
    return rc;
}

/* ---- eval ----------------------------------------------------------------------------------- */

static const char *EVAL_SUMMARY =
    "Objective and error (sum over outputs of (y - t)^2 per case) of a network checkpoint on a data\n"
    "set, batch normalisation in inference mode, at the iterate theta of a training checkpoint (for\n"
    "NAG not the stored look-ahead point theta + mu v) or with --average at the iterate average;\n"
    "--recon PNG also writes test images over their reconstructions (autoencoders).";

static int net_eval(int argc, char **argv) {
    ng_common_opts co;
    const char *ckpt = NULL, *recon = NULL;
    int split_i = 1, limit = 0, chunk = 1000, rc, rows = 0, classes = 0, use_avg = 0;
    ng_update *upd = NULL;
    const char *point = "parameters as stored";
    ng_net_config cfg;
    ng_ckpt *ck = NULL;
    ng_backend *be = NULL;
    ng_model *net = NULL;
    ng_dataset ds = {0};
    float *x = NULL;
    void *mem = NULL;
    ng_tensor xt;
    double obj, err;
    ng_status s;
    ng_common_defaults(&co);
    co.data = "mnist";
    {
        ng_opt opts[] = {
            {"checkpoint", OPT_STR, &ckpt, "CKPT", "network checkpoint (net train's OUT/net.ckpt)", 0, 0},
            NG_OPT_DATA(&co, "data: mnist, fashion-mnist, curves-like, or IMAGES.idx[,LABELS.idx]"),
            {"split", OPT_ENUM, &split_i, "train|test", "split of a named data set", 0, 0},
            {"limit", OPT_INT, &limit, "N", "evaluate only the first N cases (0 = all)", 0, 0},
            {"chunk", OPT_INT, &chunk, "C", "cases per pass", 0, 0},
            {"recon", OPT_STR, &recon, "PNG", "write 8 images over their reconstructions", 0, 0},
            {"average", OPT_FLAG, &use_avg, NULL, "evaluate the iterate average theta_bar (runs with --average)", 0, 0},
            NG_OPT_DEVICE(&co),
            NG_OPT_THREADS(&co),
            NG_OPT_END};
        rc = ng_cli_parse("net eval", EVAL_SUMMARY, opts, argc, argv);
        if (rc < 0) return NG_EXIT_OK;
        if (rc) return rc;
    }
    if (!ckpt) {
        fprintf(stderr, "natgrad net eval: --checkpoint CKPT is required (see --help)\n");
        return NG_EXIT_USAGE;
    }
    if (limit < 0 || chunk < 1) {
        fprintf(stderr, "natgrad net eval: --limit must be >= 0 and --chunk >= 1\n");
        return NG_EXIT_USAGE;
    }
    ng_net_config_default(&cfg);
    cfg.chunk = chunk;
    if (ng_ckpt_read(ckpt, NG_CKPT_READ_ALL, &ck) != NG_OK || ng_net_config_from_ckpt(ck, &cfg) != NG_OK) {
        fprintf(stderr, "natgrad net eval: %s\n", ng_last_error());
        ng_ckpt_free(ck);
        return NG_EXIT_FAIL;
    }
    rc = load_data("net eval", "evaluation", co.data, co.data_dir, split_i ? "test" : "train", cfg.target == NG_NET_TARGET_ROWS,
                   limit, &ds);
    if (rc) goto out;
    if (ds.dim != cfg.dims[0]) {
        fprintf(stderr, "natgrad net eval: the network's input layer (layer 0) has %d units, the data dimension %d\n", cfg.dims[0],
                ds.dim);
        rc = NG_EXIT_USAGE;
        goto out;
    }
    if (cfg.target == NG_NET_TARGET_ROWS) {
        classes = cfg.dims[cfg.n_layers];
        if (max_label(&ds) >= classes) {
            fprintf(stderr, "natgrad net eval: label %d does not fit the output layer (layer %d) of %d classes\n", max_label(&ds),
                    cfg.n_layers, classes);
            rc = NG_EXIT_USAGE;
            goto out;
        }
    }
    if ((rc = ng_cli_backend(&co, &be))) goto out;
    s = ng_net_create(be, &cfg, &net);
    if (s == NG_OK) s = ng_model_load(net, ck, 0);
    if (s == NG_OK) s = ng_model_load(net, ck, 1);
    if (s == NG_OK && ng_ckpt_has(ck, "update.kind")) {
        /* rebuild the update rule to recover the iterate (NAG stores its look-ahead point) */
        net_train_opts uo;
        uint64_t t = 0;
        memset(&uo, 0, sizeof uo);
        s = update_from_ckpt(ck, &uo);
        if (s == NG_OK) s = ng_ckpt_get_u64(ck, "run.t", &t);
        if (s == NG_OK) {
            uo.steps = (int)t;
            s = make_update(be, net, &uo, &upd);
        }
        if (s == NG_OK) s = ng_update_load(upd, ck, 1);
        if (s == NG_OK && use_avg) {
            ng_tensor avg;
            s = ng_update_average(upd, &avg);
            if (s == NG_OK) s = ng_copy(be, net->param_flat.data, avg.data, ng_model_size(net) * sizeof(float));
            point = "the iterate average theta_bar";
        } else if (s == NG_OK) {
            s = ng_update_theta(upd, net, t, &net->param_flat);
            point = "the iterate theta";
        }
    } else if (s == NG_OK && use_avg) {
        s = ng_error(NG_ERR_INVALID_ARG, "--average: checkpoint %s holds no update rule", ckpt);
    }
    if (s == NG_OK) {
        x = batch_matrix(&ds, classes, &rows);
        s = x ? ng_alloc(be, (size_t)rows * ds.n * sizeof(float), &mem) : ng_error(NG_ERR_OOM, "out of host memory");
    }
    if (s == NG_OK) {
        xt = ng_tensor_matrix((float *)mem, rows, ds.n, rows);
        s = ng_tensor_set(be, &xt, x);
    }
    if (s == NG_OK) s = ng_net_evaluate(net, &xt, &obj, &err);
    if (s != NG_OK) {
        fprintf(stderr, "natgrad net eval: %s\n", ng_last_error());
        rc = NG_EXIT_FAIL;
        goto out;
    }
    printf("data %s: %d cases, evaluated at %s\nobjective %.6f per case (%s loss)\nerror %.6f per case (sum of squared output errors)\n",
           ds.name, ds.n, point, obj, ng_loss_name(cfg.loss), err);
    if (recon && !classes) write_reconstructions(net, &ds, &xt, recon);
    rc = NG_EXIT_OK;
out:
    ng_update_free(upd);
    if (mem) ng_free(be, mem);
    free(x);
    ng_net_free(net);
    ng_backend_free(be);
    ng_ckpt_free(ck);
    ng_dataset_free(&ds);
    return rc;
}

int ng_cmd_net(int argc, char **argv) {
    if (argc >= 1 && strcmp(argv[0], "train") == 0) return net_train(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "eval") == 0) return net_eval(argc - 1, argv + 1);
    fprintf(stderr, "usage: natgrad net train|eval [options]   (--help for each)\n");
    return (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) ? NG_EXIT_OK : NG_EXIT_USAGE;
}
