/* cnn_cmd.c: `natgrad cnn train`: convolutional classifiers (natgrad/cnn.h) on Fashion-MNIST, MNIST,
 * IDX files or CIFAR-10 binary files, trained by SGD with momentum (and waterfall annealing), with
 * PRONG's whitening layers reparametrised every T updates (section 4.3), batch norm (PRONG+ is
 * both), and data augmentation (random crops with padding, mirrors); or by the truncated-Newton
 * family (natgrad/tnewton.h: NGD, NCG, HF on the cnn's Gauss-Newton / Fisher products). The run driver
 * (natgrad/train.h) gives the CSV log, progress with ETA, checkpoints and bit-exact resume; the
 * monitor adds the objective and misclassification rate on training and test cases. Public
 * headers only. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "natgrad/cnn.h"
#include "natgrad/comm.h"
#include "natgrad/data.h"
#include "natgrad/log.h"
#include "natgrad/net.h"
#include "natgrad/tnewton.h"
#include "natgrad/train.h"
#include "natgrad/update.h"

static const char *TRAIN_SUMMARY =
    "Train a convolutional classifier (softmax + cross-entropy) by SGD with momentum, or with\n"
    "--optimizer ngd|ngd-l|ncg-l|ncg-f|hf by truncated Newton on the network's Gauss-Newton (= Fisher)\n"
    "products, or hf on the Hessian (Pascanu & Bengio 2014, Martens 2010; CG, Levenberg-Marquardt\n"
    "damping, no augmentation).\n"
    "Layers (--layers, '-' separated): c<maps>[k<window>][s<stride>][p<pad>] convolution (default 3x3,\n"
    "stride 1, pad window/2), mp<k>[s<stride>] / ap<k> max / average pooling, relu tanh logistic linear,\n"
    "bn (batch norm over channels), w (PRONG's 1x1 whitening convolution; the next layer must be a conv\n"
    "with p0 or dense), d<units> (dense; the last one gives the classes). With w layers,\n"
    "--whiten-every T re-estimates the whitening on --whiten-samples cases of the batch every T updates\n"
    "and reparametrises the next layer so that the network computes the same function (Desjardins et al.\n"
    "2015, Algorithm 1; update 0 whitens the initialisation). PRONG+ adds bn. Data: fashion-mnist\n"
    "(default), mnist, IMAGES.idx,LABELS.idx, or CIFAR-10's binary files (a directory holding\n"
    "data_batch_1.bin .. data_batch_5.bin and test_batch.bin, or one .bin file).\n"
    "CSV columns: objective and train_misclass of the batch, test_objective / test_misclass and\n"
    "eval_misclass (training cases) of the iterate on logged steps.\n"
    "Under mpirun -np N each rank takes its shard of every batch (data-parallel: the gradient\n"
    "all-reduced, batch norm synchronised over the global batch, augmentation drawn by the case's\n"
    "index in the global batch, the whitening statistics merged and its eigendecompositions owned\n"
    "per layer); with bn layers each rank's shard must fit one --chunk, and the run equals one\n"
    "process with --chunk >= --batch up to the reordering of sums. Truncated Newton reduces its\n"
    "curvature products and objectives across the ranks; with bn layers every batch sum inside them\n"
    "(G v, H v of --curvature hessian, the empirical and sampled Fisher) is all-reduced too, and the\n"
    "sampled Fisher draws each case's targets by its index in the global batch.";

typedef struct cnn_opts {
    ng_common_opts co;
    const char *test_data, *layers, *csv_path, *ckpt_path, *resume;
    int limit, test_limit, batch, chunk, steps, log_every, ckpt_every, eval_n;
    int whiten_every, whiten_samples, augment_pad, flip, lr_drop_every;
    int optimizer, tn_iters, tn_fisher, tn_fsamples, tn_curv; /* optimizer: 0 sgd, 1 + NG_TN_* */
    int cuda_graph; /* --cuda-graph: replay the steady-state step as a CUDA graph */
    float tn_lambda;
    float lr, momentum, weight_decay, whiten_eps, lr_drop, minutes;
} cnn_opts;

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* NAME, IMAGES[,LABELS] (IDX), a CIFAR-10 directory or .bin file. split: "train" / "test". */
static ng_status load(const char *name, const char *data_dir, const char *split, int limit, ng_dataset *out) {
    const char *comma = strchr(name, ',');
    size_t len = strlen(name);
    memset(out, 0, sizeof *out);
    if (is_dir(name)) {
        char paths[5][4200];
        const char *files[5];
        int i, k = strcmp(split, "train") == 0 ? 5 : 1;
        for (i = 0; i < k; i++) {
            if (k == 5) snprintf(paths[i], sizeof paths[i], "%s/data_batch_%d.bin", name, i + 1);
            else snprintf(paths[i], sizeof paths[i], "%s/test_batch.bin", name);
            files[i] = paths[i];
        }
        NG_TRY(ng_dataset_load_cifar10(files, k, out));
    } else if (len > 4 && strcmp(name + len - 4, ".bin") == 0) {
        NG_TRY(ng_dataset_load_cifar10(&name, 1, out));
    } else if (comma) {
        char path[4096];
        snprintf(path, sizeof path, "%.*s", (int)(comma - name), name);
        NG_TRY(ng_dataset_load_idx(path, comma + 1, out));
    } else {
        NG_TRY(ng_dataset_load_named(name, data_dir, split, out));
    }
    if (!out->labels) {
        ng_dataset_free(out);
        return ng_error(NG_ERR_INVALID_ARG, "data '%s' has no labels (give IMAGES,LABELS)", name);
    }
    if (limit > 0 && limit < out->n) {
        ng_dataset sub;
        NG_TRY(ng_dataset_subset(out, 0, limit, &sub));
        ng_dataset_free(out);
        *out = sub;
    }
    return NG_OK;
}

/* (dim + classes, n): images over one-hot labels */
static float *batch_matrix(const ng_dataset *d, int classes, int *rows) {
    size_t r = (size_t)d->dim + (size_t)classes, c;
    float *x = (float *)malloc(r * (size_t)d->n * sizeof(float));
    if (!x) return NULL;
    for (c = 0; c < (size_t)d->n; c++) {
        int k;
        memcpy(x + c * r, d->x + c * (size_t)d->dim, (size_t)d->dim * sizeof(float));
        for (k = 0; k < classes; k++) x[c * r + (size_t)d->dim + (size_t)k] = d->labels[c] == k ? 1.0f : 0.0f;
    }
    *rows = (int)r;
    return x;
}

typedef struct mon {
    ng_model *m;
    ng_update *upd;
    ng_tensor train_x, test_x;
    int have_test, batch, col_test;
    double t_start, monitor_s;
} mon;

static const char *const monitor_columns[] = {"cases", "train_s", "eval_objective", "eval_misclass",
                                              "test_objective", "test_misclass", NULL};

static ng_status cnn_monitor(void *user, ng_trainer *tr, double *v) {
    mon *c = (mon *)user;
    double t0 = ng_time_s();
    v[0] = (double)tr->t * c->batch;
    v[1] = t0 - c->t_start - c->monitor_s;
    NG_TRY(ng_cnn_evaluate(c->m, &c->train_x, &v[2], &v[3]));
    v[4] = v[5] = NAN;
    if (c->have_test) NG_TRY(ng_cnn_evaluate(c->m, &c->test_x, &v[4], &v[5]));
    c->monitor_s += ng_time_s() - t0;
    return NG_OK;
}

static void cnn_progress(void *user, const ng_run_progress *p) {
    mon *c = (mon *)user;
    char extra[160] = "";
    if (!p->final && p->row) snprintf(extra, sizeof extra, "test misclass %.4f", p->row[c->col_test]);
    ng_progress(p->t - p->start, p->total - p->start, p->elapsed_s, p->eta_s, extra, p->final);
}

static int max_label(const ng_dataset *d) {
    int i, m = 0;
    for (i = 0; i < d->n; i++) m = d->labels[i] > m ? d->labels[i] : m;
    return m;
}

static int cnn_train(int argc, char **argv) {
    cnn_opts o;
    ng_cnn_config cfg;
    ng_backend *be = NULL;
    ng_dataset train = {0}, test = {0};
    ng_tn_config tc;
    ng_model *net = NULL;
    ng_precond *pc = NULL;
    ng_update *upd = NULL;
    ng_batches batches;
    ng_ckpt *ck = NULL;
    ng_trainer tr;
    ng_run_config run;
    ng_run_result res;
    mon mc;
    float *xtrain = NULL, *xtest = NULL;
    void *evmem = NULL;
    int rows = 0, classes, rc = 0, batches_ready = 0, append, eval_n, chans, lr_given = 0;
    ng_status s = NG_OK;
    static char csvbuf[4200], ckbuf[4200];

    memset(&o, 0, sizeof o);
    memset(&mc, 0, sizeof mc);
    memset(&tr, 0, sizeof tr);
    ng_common_defaults(&o.co);
    o.co.out = "runs/cnn";
    o.co.data = "fashion-mnist";
    o.layers = "c16-bn-relu-c16-bn-relu-mp2-c32-bn-relu-mp2-d64-relu-d10";
    o.batch = 128;
    o.chunk = 64;
    o.steps = 1000;
    o.log_every = 100;
    o.ckpt_every = 500;
    o.eval_n = 2000;
    o.lr = 0.05f;
    o.momentum = 0.9f;
    o.whiten_samples = 128;
    o.whiten_eps = 0.1f;
    o.lr_drop = 0.5f;
    o.tn_lambda = 1.0f;
    o.tn_fsamples = 1;
    ng_cnn_config_default(&cfg);
    ng_tn_config_default(&tc);
    {
        ng_opt opts[] = {
            NG_OPT_DATA(&o.co, "training data: fashion-mnist, mnist, IMAGES.idx,LABELS.idx, or CIFAR-10 binary (DIR or FILE.bin)"),
            {"test-data", OPT_STR, &o.test_data, "NAME|PATH", "held-out data (default: the test split of --data)", 0, 0},
            {"limit", OPT_INT, &o.limit, "N", "use only the first N training cases (0 = all)", 0, 0},
            {"test-limit", OPT_INT, &o.test_limit, "N", "use only the first N test cases (0 = all)", 0, 0},
            {"layers", OPT_STR, &o.layers, "SPEC", "layer list (see above)", OPT_FIXED, 0},
            {"optimizer", OPT_ENUM, &o.optimizer, "sgd|ngd|ngd-l|ncg-l|ncg-f|hf", "SGD + momentum, or truncated Newton: natural gradient with a fixed --lr (ngd) or a line search (ngd-l), natural conjugate gradient (ncg-l, ncg-f), Hessian-free (hf, Gauss-Newton products, no diagonal preconditioner)", OPT_FIXED, 0},
            {"lr", OPT_FLOAT, &o.lr, "EPS", "learning rate of SGD; ngd: its fixed step, the searches: their first trial step (truncated Newton's default: 1)", OPT_FIXED, 0},
            {"tn-iters", OPT_INT, &o.tn_iters, "N", "truncated Newton: CG iterations per update (0 = the method's default: 20, hf 250)", OPT_FIXED, 0},
            {"tn-lambda", OPT_FLOAT, &o.tn_lambda, "L", "truncated Newton: initial damping, adapted by Levenberg-Marquardt", OPT_FIXED, 0},
            {"tn-fisher", OPT_ENUM, &o.tn_fisher, "exact|sampled|empirical", "truncated Newton: the metric: Gauss-Newton (= exact Fisher), the Fisher with targets drawn from the model once per update, or the empirical Fisher", OPT_FIXED, 0},
            {"tn-fisher-samples", OPT_INT, &o.tn_fsamples, "S", "truncated Newton, --tn-fisher sampled: target draws per case", OPT_FIXED, 0},
            {"curvature", OPT_ENUM, &o.tn_curv, "gn|hessian", "hf: Gauss-Newton products, or the Hessian (CG stops at negative curvature)", OPT_FIXED, 0},
            {"momentum", OPT_FLOAT, &o.momentum, "MU", "heavy-ball momentum", OPT_FIXED, 0},
            {"weight-decay", OPT_FLOAT, &o.weight_decay, "ETA", "L2 penalty on the weights", OPT_FIXED, 0},
            {"lr-drop-every", OPT_INT, &o.lr_drop_every, "N", "waterfall annealing: multiply lr by --lr-drop every N updates (0 = off)", OPT_FIXED, 0},
            {"lr-drop", OPT_FLOAT, &o.lr_drop, "F", "waterfall factor (0.5)", OPT_FIXED, 0},
            {"whiten-every", OPT_INT, &o.whiten_every, "T", "PRONG: whitening + reparametrisation every T updates (0 = never; needs w layers)", OPT_FIXED, 0},
            {"whiten-samples", OPT_INT, &o.whiten_samples, "N", "PRONG: cases of the batch whose pixels estimate the whitening (128)", OPT_FIXED, 0},
            {"whiten-eps", OPT_FLOAT, &o.whiten_eps, "E", "PRONG: eigenvalue regulariser epsilon (0.1)", OPT_FIXED, 0},
            {"augment-pad", OPT_INT, &o.augment_pad, "P", "random crops of the training images padded by P pixels (0 = off)", OPT_FIXED, 0},
            {"flip", OPT_INT, &o.flip, "0|1", "random left-right mirrors of the training images", OPT_FIXED, 0},
            {"batch", OPT_INT, &o.batch, "M", "mini-batch size", OPT_FIXED, 0},
            {"chunk", OPT_INT, &o.chunk, "C", "images per pass (bounds device memory; batch norm is per chunk)", OPT_FIXED, 0},
            NG_OPT_SEED(&o.co, OPT_FIXED),
            {"steps", OPT_INT, &o.steps, "N", "total parameter updates", 0, 0},
            {"minutes", OPT_FLOAT, &o.minutes, "M", "stop after M minutes of wall clock (0 = no limit)", 0, 0},
            {"log-every", OPT_INT, &o.log_every, "N", "CSV row (with training and test misclassification) every N updates", 0, 0},
            {"eval-n", OPT_INT, &o.eval_n, "N", "training cases evaluated on logged steps (2000; 0 = all)", 0, 0},
            {"checkpoint-every", OPT_INT, &o.ckpt_every, "N", "checkpoint every N updates (0 = only at the end)", 0, 0},
            NG_OPT_OUT(&o.co),
            NG_OPT_PROFILE(&o.co),
            {"csv", OPT_STR, &o.csv_path, "PATH", "CSV log (default OUT/train.csv)", 0, 0},
            {"checkpoint", OPT_STR, &o.ckpt_path, "PATH", "checkpoint file (default OUT/cnn.ckpt)", 0, 0},
            {"resume", OPT_STR, &o.resume, "CKPT", "continue the run saved in CKPT (its settings are used)", 0, 0},
            NG_OPT_DEVICE(&o.co),
            NG_OPT_THREADS(&o.co),
            NG_OPT_COMM_OVERLAP(&o.co),
            {"cuda-graph", OPT_INT, &o.cuda_graph, "0|1", "CUDA: 1 = capture the unlogged steady-state update (gradient with augmentation and batch norm, weight decay, SGD step; the objective and misclassification summed on the device, the augmentation's step counted there) in a CUDA graph and replay it, one graph launch per update; re-captured when the batch shape or the learning rate changes (--lr-drop-every). Updates that re-whiten (--whiten-every) run eagerly. --optimizer ngd, ngd-l, ncg-l, ncg-f, hf (they read the host mid-update): graph segments instead, each piece between host reads captured once and replayed (the gradient, every curvature product and the vector work of each CG iteration, each objective evaluation of the searches, rho and HF's backtracking). Under mpirun with NCCL the gradient's all-reduce and batch norm's merge (on the device) are in the whole-step graph (--optimizer sgd) or the segments (the curvature products' all-reduces too). Results are bit-identical to 0 (the default). Ignored on the CPU backend", 0, 0},
            NG_OPT_END};
        const ng_opt *fixed;
        rc = ng_cli_parse("cnn train", TRAIN_SUMMARY, opts, argc, argv);
        if (rc < 0) return NG_EXIT_OK;
        if (rc) return rc;
        if (o.resume && (fixed = ng_cli_fixed_given(opts)) != NULL) {
            fprintf(stderr, "natgrad cnn train: --%s cannot be combined with --resume (the checkpoint's value is used)\n", fixed->name);
            return NG_EXIT_USAGE;
        }
        {
            /* options of the other family: SGD's (truncated Newton compares objectives on the batch as
             * given, so no augmentation; no momentum or lr drops) or truncated Newton's */
            static const char *const sgd_only[] = {"momentum", "lr-drop-every", "lr-drop", "augment-pad", "flip", NULL};
            static const char *const tn_only[] = {"tn-iters", "tn-lambda", "tn-fisher", "tn-fisher-samples", "curvature", NULL};
            const char *const *l = o.optimizer ? sgd_only : tn_only;
            lr_given = ng_cli_find(opts, "lr")->seen;
            for (; *l; l++)
                if (ng_cli_find(opts, *l)->seen) {
                    fprintf(stderr, "natgrad cnn train: --%s is %s's option, not --optimizer %s's%s\n", *l, o.optimizer ? "sgd" : "truncated Newton",
                            o.optimizer ? ng_tn_method_name(o.optimizer - 1) : "sgd",
                            o.optimizer && (!strcmp(*l, "augment-pad") || !strcmp(*l, "flip"))
                                ? " (its searches and damping compare objectives on the batch as given: no augmentation)"
                                : "");
                    return NG_EXIT_USAGE;
                }
        }
    }
    if (o.batch < 1 || o.chunk < 1 || o.steps < 0 || o.log_every < 1 || o.ckpt_every < 0 || o.limit < 0 || o.test_limit < 0 || o.eval_n < 0 ||
        !(o.minutes >= 0.0f)) {
        fprintf(stderr, "natgrad cnn train: --batch, --chunk and --log-every must be >= 1; --steps, --limit, --eval-n, "
                        "--test-limit, --checkpoint-every and --minutes >= 0\n");
        return NG_EXIT_USAGE;
    }
    if (o.optimizer && !o.resume) {
        /* truncated Newton: its searches and Levenberg-Marquardt's rho compare objectives on the batch
         * as given, so the gradient's batch must not be augmented; momentum and annealing belong to SGD */
        if (o.tn_curv == NG_TN_CURV_HESSIAN && o.optimizer - 1 != NG_TN_HF) {
            fprintf(stderr, "natgrad cnn train: --curvature hessian: only with --optimizer hf (natural gradient uses the Fisher = "
                            "Gauss-Newton matrix)\n");
            return NG_EXIT_USAGE;
        }
        tc.method = o.optimizer - 1;
        tc.max_iter = o.tn_iters;
        tc.lambda0 = o.tn_lambda;
        if (lr_given) tc.lr = o.lr; /* else truncated Newton's default step 1 */
        tc.eta = o.weight_decay;
        tc.fisher = o.tn_fisher;
        tc.fisher_samples = o.tn_fsamples;
        tc.curvature = o.tn_curv;
        tc.hf_precond = 0;
        tc.seed = o.co.seed;
        if (ng_tn_config_check(&tc) != NG_OK) {
            fprintf(stderr, "natgrad cnn train: %s\n", ng_last_error());
            return NG_EXIT_USAGE;
        }
    }
    if ((s = load(o.co.data, o.co.data_dir, "train", o.limit, &train)) != NG_OK) {
        fprintf(stderr, "natgrad cnn train: training data '%s': %s\n", o.co.data, ng_last_error());
        return s == NG_ERR_INVALID_ARG ? NG_EXIT_USAGE : NG_EXIT_FAIL;
    }
    {
        const char *tn = o.test_data ? o.test_data : (is_dir(o.co.data) || !ng_cli_is_path(o.co.data)) ? o.co.data : NULL;
        if (tn && (s = load(tn, o.co.data_dir, "test", o.test_limit, &test)) != NG_OK) {
            fprintf(stderr, "natgrad cnn train: test data '%s': %s\n", tn, ng_last_error());
            rc = s == NG_ERR_INVALID_ARG ? NG_EXIT_USAGE : NG_EXIT_FAIL;
            goto done;
        }
        if (test.n && test.dim != train.dim) {
            fprintf(stderr, "natgrad cnn train: test data has dimension %d, training data %d\n", test.dim, train.dim);
            rc = NG_EXIT_USAGE;
            goto done;
        }
    }
    chans = train.height * train.width > 0 && train.dim % (train.height * train.width) == 0 ? train.dim / (train.height * train.width) : 0;
    if (chans < 1 || train.width < 2) {
        fprintf(stderr, "natgrad cnn train: data '%s' is not a set of images (%d values, %dx%d)\n", o.co.data, train.dim, train.height,
                train.width);
        rc = NG_EXIT_USAGE;
        goto done;
    }
    classes = max_label(&train) + 1;
    if (test.n && max_label(&test) + 1 > classes) classes = max_label(&test) + 1;
    if (o.resume) {
        int64_t v;
        if (ng_ckpt_read(o.resume, NG_CKPT_READ_ALL, &ck) != NG_OK || ng_cnn_config_from_ckpt(ck, &cfg) != NG_OK ||
            ng_ckpt_get_int(ck, "data.batch", 1, 1 << 30, &v) != NG_OK || ng_ckpt_get_u64(ck, "run.seed", &cfg.seed) != NG_OK ||
            ng_ckpt_get_float(ck, "sgd.lr", 1e-30, 1e30, &o.lr) != NG_OK ||
            ng_ckpt_get_float(ck, "sgd.momentum", 0.0, 0.999999, &o.momentum) != NG_OK ||
            ng_ckpt_get_float(ck, "sgd.weight_decay", 0.0, 1e30, &o.weight_decay) != NG_OK) {
            fprintf(stderr, "natgrad cnn train: --resume: %s\n", ng_last_error());
            rc = NG_EXIT_FAIL;
            goto done;
        }
        o.batch = (int)v;
        o.chunk = cfg.chunk;
        {
            const char *pk = NULL;
            if (ng_ckpt_get_str(ck, "precond.kind", &pk) == NG_OK && strcmp(pk, "tn") == 0) {
                if (ng_tn_config_from_ckpt(ck, &tc) != NG_OK) {
                    fprintf(stderr, "natgrad cnn train: --resume: %s\n", ng_last_error());
                    rc = NG_EXIT_FAIL;
                    goto done;
                }
                o.optimizer = 1 + tc.method;
            }
        }
        if (ng_ckpt_has(ck, "sgd.lr_drop_every")) {
            int64_t e;
            if (ng_ckpt_get_int(ck, "sgd.lr_drop_every", 1, 1 << 30, &e) != NG_OK ||
                ng_ckpt_get_float(ck, "sgd.lr_drop", 1e-30, 1.0, &o.lr_drop) != NG_OK) {
                fprintf(stderr, "natgrad cnn train: --resume: %s\n", ng_last_error());
                rc = NG_EXIT_FAIL;
                goto done;
            }
            o.lr_drop_every = (int)e;
        }
    } else {
        cfg.c = chans, cfg.h = train.height, cfg.w = train.width;
        cfg.chunk = o.chunk;
        cfg.seed = o.co.seed;
        cfg.whiten_every = o.whiten_every;
        cfg.whiten_samples = o.whiten_samples;
        cfg.whiten_eps = o.whiten_eps;
        cfg.augment_pad = o.augment_pad;
        cfg.augment_flip = o.flip;
        if (ng_cnn_parse_spec(o.layers, &cfg) != NG_OK || ng_cnn_config_check(&cfg) != NG_OK) {
            fprintf(stderr, "natgrad cnn train: --layers: %s\n", ng_last_error());
            rc = NG_EXIT_USAGE;
            goto done;
        }
    }
    if (cfg.c * cfg.h * cfg.w != train.dim) {
        fprintf(stderr, "natgrad cnn train: the network takes %dx%dx%d inputs, the data holds %d values per image\n", cfg.c, cfg.h,
                cfg.w, train.dim);
        rc = NG_EXIT_USAGE;
        goto done;
    }
    if (ng_cnn_classes(&cfg) != classes) {
        fprintf(stderr, "natgrad cnn train: the last layer (d%d) has %d units but the labels have %d classes\n", ng_cnn_classes(&cfg),
                ng_cnn_classes(&cfg), classes);
        rc = NG_EXIT_USAGE;
        goto done;
    }
    if (o.batch > train.n) {
        fprintf(stderr, "natgrad cnn train: --batch %d is larger than the %d training cases\n", o.batch, train.n);
        rc = NG_EXIT_USAGE;
        goto done;
    }
    if (ng_mkdirs(o.co.out) != 0) {
        fprintf(stderr, "natgrad cnn train: cannot create output directory %s: %s\n", o.co.out, strerror(errno));
        rc = NG_EXIT_FAIL;
        goto done;
    }
    if (!o.csv_path) snprintf(csvbuf, sizeof csvbuf, "%s/train.csv", o.co.out), o.csv_path = csvbuf;
    if (!o.ckpt_path) snprintf(ckbuf, sizeof ckbuf, "%s/cnn.ckpt", o.co.out), o.ckpt_path = ckbuf;
    append = o.resume && ng_cli_same_file(o.resume, o.ckpt_path);
    if (!append && !o.co.force && (ng_cli_file_exists(o.ckpt_path, 0) || ng_cli_file_exists(o.csv_path, 1))) {
        fprintf(stderr, "natgrad cnn train: %s already holds a run; continue it with --resume %s, choose another --out, or overwrite it "
                        "with --force\n", o.co.out, o.ckpt_path);
        rc = NG_EXIT_USAGE;
        goto done;
    }
    ng_cli_dist_allow(); /* data-parallel under mpirun */
    if ((rc = ng_cli_backend(&o.co, &be))) goto done;
    if (ng_cli_world() > 1 && o.batch < ng_cli_world()) {
        fprintf(stderr, "natgrad cnn train: --batch %d on %d ranks: every rank needs a case of each batch (--batch >= %d)\n", o.batch,
                ng_cli_world(), ng_cli_world());
        rc = NG_EXIT_USAGE;
        goto done;
    }
    {
        char spec[1024];
        ng_sgd_config sc;
        fprintf(stderr, "natgrad: data %s: %d training images %dx%dx%d, %d classes%s%s\n", train.name, train.n, cfg.c, cfg.h, cfg.w,
                classes, test.n ? ", test set " : "", test.n ? test.name : "");
        s = ng_cnn_create(be, &cfg, &net);
        if (s == NG_OK && !o.optimizer)
            fprintf(stderr, "natgrad: cnn %s, %zu parameters; sgd lr %g momentum %g, L2 %g, batch %d, seed %llu%s%s\n",
                    ng_cnn_spec_string(&cfg, spec, sizeof spec), ng_model_size(net), (double)o.lr, (double)o.momentum,
                    (double)o.weight_decay, o.batch, (unsigned long long)cfg.seed, cfg.whiten_every ? ", PRONG whitening" : "",
                    cfg.augment_pad || cfg.augment_flip ? ", augmentation" : "");
        if (s == NG_OK && o.optimizer)
            fprintf(stderr, "natgrad: cnn %s, %zu parameters; %s (truncated Newton, CG on %s products, at most %d iterations), "
                            "lambda0 %g (Levenberg-Marquardt), lr %g, L2 %g, batch %d, seed %llu%s\n",
                    ng_cnn_spec_string(&cfg, spec, sizeof spec), ng_model_size(net), ng_tn_method_name(tc.method),
                    tc.curvature == NG_TN_CURV_HESSIAN  ? "Hessian"
                    : tc.fisher == NG_FISHER_EXACT     ? "Gauss-Newton (= Fisher)"
                    : tc.fisher == NG_FISHER_SAMPLED   ? "sampled-Fisher"
                                                       : "empirical-Fisher",
                    tc.max_iter > 0 ? tc.max_iter : (tc.method == NG_TN_HF ? 250 : 20), tc.lambda0, tc.lr, tc.eta, o.batch,
                    (unsigned long long)cfg.seed, cfg.whiten_every ? ", PRONG whitening" : "");
        if (s == NG_OK) s = o.optimizer ? ng_precond_tn_init(be, net, &tc, NULL, 0, &pc) : ng_precond_identity_init(be, &pc);
        memset(&sc, 0, sizeof sc);
        /* truncated Newton leaves its whole update (-delta) in the gradient arena: steps of size 1 */
        sc.lr = o.optimizer ? 1.0f : o.lr;
        sc.momentum = o.optimizer ? 0.0f : o.momentum;
        sc.weight_decay = o.weight_decay;
        sc.lr_drop = o.lr_drop;
        sc.lr_drop_every = o.lr_drop_every;
        if (s == NG_OK) s = ng_sgd_config_check(&sc);
        if (s == NG_OK) s = ng_update_sgd_init(be, net, &sc, &upd);
    }
    if (s == NG_OK) {
        xtrain = batch_matrix(&train, classes, &rows);
        xtest = test.n ? batch_matrix(&test, classes, &rows) : NULL;
        if (!xtrain || (test.n && !xtest)) s = ng_error(NG_ERR_OOM, "out of host memory for the data");
    }
    if (s == NG_OK) {
        s = ng_batches_init(&batches, be, xtrain, rows, train.n, o.batch, cfg.seed, ng_cli_rank(), ng_cli_world());
        batches_ready = s == NG_OK;
    }
    if (s == NG_OK) s = ng_trainer_init(&tr, net, pc, upd, &batches, cfg.seed, monitor_columns);
    if (s == NG_OK) s = ng_trainer_set_comm_overlap(&tr, o.co.comm_overlap, o.co.comm_bucket_mb);
    if (s == NG_OK) s = ng_trainer_set_comm(&tr, ng_cli_comm()); /* data parallelism under mpirun */
    if (s == NG_OK && ng_cli_world() > 1) s = ng_cnn_set_dist(net, ng_cli_comm(), batches.lo, batches.batch);
    if (s == NG_OK && ng_cli_world() > 1 && batches.hi - batches.lo > cfg.chunk) {
        int l, bn = 0;
        for (l = 0; l < cfg.n_layers; l++) bn |= cfg.layer[l].kind == NG_CNN_BN;
        if (bn)
            s = ng_error(NG_ERR_INVALID_ARG, "batch norm on %d ranks normalises over the whole global batch, one pass per rank, but "
                         "this rank's shard of %d cases exceeds --chunk %d: raise --chunk to >= %d (the run then equals one process "
                         "with --chunk >= --batch)", ng_cli_world(), batches.hi - batches.lo, cfg.chunk, batches.hi - batches.lo);
    }
    if (s == NG_OK && o.cuda_graph != 0 && o.cuda_graph != 1) {
        fprintf(stderr, "natgrad cnn train: --cuda-graph %d: must be 0 or 1\n", o.cuda_graph);
        rc = NG_EXIT_USAGE;
        goto done;
    }
    if (s == NG_OK && o.cuda_graph && !ng_graph_supported(be))
        fprintf(stderr, "natgrad: note: --cuda-graph is ignored on the %s backend (no CUDA graphs)\n", be->iface->name);
    else if (s == NG_OK && o.cuda_graph && ng_trainer_set_cuda_graph(&tr, 1) != NG_OK) {
        fprintf(stderr, "natgrad cnn train: %s\n", ng_last_error());
        rc = NG_EXIT_USAGE;
        goto done;
    }
    if (s == NG_OK && o.resume) {
        s = ng_trainer_resume(&tr, ck);
        if (s == NG_OK) fprintf(stderr, "natgrad: resumed %s at update %llu\n", o.resume, (unsigned long long)tr.t);
    }
    eval_n = o.eval_n > 0 && o.eval_n < train.n ? o.eval_n : train.n;
    if (s == NG_OK) s = ng_alloc(be, (size_t)rows * ((size_t)eval_n + (size_t)test.n) * sizeof(float), &evmem);
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
        fprintf(stderr, "natgrad cnn train: %s\n", ng_last_error());
        rc = s == NG_ERR_INVALID_ARG ? NG_EXIT_USAGE : NG_EXIT_FAIL;
        goto done;
    }
    ng_ckpt_free(ck);
    ck = NULL;
    mc.m = net;
    mc.upd = upd;
    mc.batch = o.batch;
    {
        int i;
        for (i = 0; i < tr.n_columns; i++)
            if (strcmp(tr.columns[i], "test_misclass") == 0) mc.col_test = i;
    }
    memset(&run, 0, sizeof run);
    run.steps = (uint64_t)o.steps;
    run.minutes = o.minutes;
    run.log_every = o.log_every;
    run.ckpt_every = o.ckpt_every;
    run.out_dir = o.co.out;
    run.csv_path = o.csv_path;
    run.ckpt_path = o.ckpt_path;
    run.append = append;
    run.monitor = cnn_monitor;
    run.progress = cnn_progress;
    run.user = &mc;
    mc.t_start = ng_time_s();
    s = ng_run(&tr, &run, &res);
    if (s != NG_OK) {
        fprintf(stderr, "\nnatgrad cnn train: update %llu: %s\n", (unsigned long long)tr.t, ng_last_error());
        rc = NG_EXIT_FAIL;
    } else {
        fprintf(stderr, "natgrad: %s after %llu updates in %.1f s (%.2f updates/s); checkpoint %s, log %s\n",
                res.interrupted ? "interrupted" : "done", (unsigned long long)res.end, res.seconds,
                res.seconds > 0 ? (double)(res.end - res.start) / res.seconds : 0.0, o.ckpt_path, o.csv_path);
        rc = res.interrupted ? NG_EXIT_FAIL : NG_EXIT_OK;
        if (ng_cli_profile_report(&o.co) && rc == NG_EXIT_OK) rc = NG_EXIT_FAIL;
    }
done:
    ng_trainer_release(&tr); /* its CUDA graphs, before the backend */
    ng_ckpt_free(ck);
    if (evmem) ng_free(be, evmem);
    if (batches_ready) ng_batches_free(&batches);
    ng_update_free(upd);
    ng_precond_free(pc);
    ng_cnn_free(net);
    ng_backend_free(be);
    free(xtrain);
    free(xtest);
    ng_dataset_free(&train);
    ng_dataset_free(&test);
    return rc;
}

int ng_cmd_cnn(int argc, char **argv) {
    if (argc >= 1 && strcmp(argv[0], "train") == 0) return cnn_train(argc - 1, argv + 1);
    if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        printf("usage: natgrad cnn train [options]   (natgrad cnn train --help for the options)\n");
        return NG_EXIT_OK;
    }
    fprintf(stderr, "natgrad cnn: unknown or missing subcommand%s%s (use: natgrad cnn train --help)\n", argc ? " " : "",
            argc ? argv[0] : "");
    return NG_EXIT_USAGE;
}
