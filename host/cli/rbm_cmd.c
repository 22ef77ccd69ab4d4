/* rbm_cmd.c: `natgrad rbm train`, `natgrad rbm eval` and `natgrad rbm sample`.
 * train: loads a data set, builds an RBM, its PCD/CD estimator, the preconditioner of
 * --optimizer (sgd = identity, centering, fang) and SGD, and hands them to the run driver
 * (natgrad/train.h): CSV log, progress with ETA, checkpoints, snapshots, SIGINT, exact resume.
 * eval: loads a checkpoint (current or 0.1 format) and estimates log Z (AIS, and exactly when the
 * smaller layer has at most 20 units) and the average log-likelihood of stochastically binarised
 * data (FANG footnote 4). Public headers only. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "natgrad/data.h"
#include "natgrad/eval.h"
#include "natgrad/log.h"
#include "natgrad/png.h"
#include "natgrad/rbm.h"
#include "natgrad/recipes.h"
#include "natgrad/rng.h"

/* Load NAME (mnist, fashion-mnist, bars-stripes, curves-like) or an IDX images path. */
static int load_data(const char *what, const char *name, const char *data_dir, const char *split,
                     int limit, ng_dataset *out) {
    ng_status s = ng_cli_is_path(name) ? ng_dataset_load_idx(name, NULL, out)
                                : ng_dataset_load_named(name, data_dir, split, out);
    if (s != NG_OK) {
        fprintf(stderr, "natgrad: loading %s data '%s': %s\n", what, name, ng_last_error());
        return NG_EXIT_FAIL;
    }
    if (limit > 0 && limit < out->n) {
        ng_dataset sub;
        if (ng_dataset_subset(out, 0, limit, &sub) != NG_OK) {
            fprintf(stderr, "natgrad: %s\n", ng_last_error());
            return NG_EXIT_FAIL;
        }
        ng_dataset_free(out);
        *out = sub;
    }
    return 0;
}

/* ---- train --------------------------------------------------------------------------------- */

typedef struct train_ctx {
    ng_rbm *rbm;
    const ng_dataset *train, *test;
    int monitor_n;
    int col_recon, col_grad, col_gap; /* trainer columns shown on the progress line */
} train_ctx;

static double mean_free_energy(ng_rbm *rbm, const ng_dataset *d, int n, ng_status *s) {
    double *F = (double *)malloc((size_t)n * sizeof(double)), m = 0.0;
    int i;
    if (!F) {
        *s = ng_error(NG_ERR_OOM, "free energy: out of memory");
        return NAN;
    }
    *s = ng_rbm_free_energy(rbm, d->x, n, F);
    for (i = 0; *s == NG_OK && i < n; i++) m += F[i];
    free(F);
    return m / n;
}

static const char *const monitor_columns[] = {"fe_train", "fe_test", "fe_gap", NULL};

/* fe_train, fe_test (mean free energies of the first monitor_n examples) and their gap; under
 * mpirun on rank 0 only, which writes the log (every rank holds the same parameters) */
static ng_status rbm_monitor(void *user, ng_trainer *tr, double *v) {
    train_ctx *c = (train_ctx *)user;
    ng_status s = NG_OK;
    v[0] = v[1] = v[2] = NAN;
    if (c->monitor_n <= 0 || !ng_trainer_lead(tr)) return NG_OK;
    v[0] = mean_free_energy(c->rbm, c->train, c->monitor_n, &s);
    if (s == NG_OK && c->test->n)
        v[1] = mean_free_energy(c->rbm, c->test, c->monitor_n < c->test->n ? c->monitor_n : c->test->n, &s);
    v[2] = v[1] - v[0];
    return s;
}

static void rbm_progress(void *user, const ng_run_progress *p) {
    train_ctx *c = (train_ctx *)user;
    char extra[160] = "";
    if (!p->final && p->row)
        snprintf(extra, sizeof extra, "recon %.2f  |dW| %.3g  FE gap %.2f", p->row[c->col_recon],
                 p->row[c->col_grad], p->row[c->col_gap]);
    ng_progress(p->t - p->start, p->total - p->start, p->elapsed_s, p->eta_s, extra, p->final);
}

static int column_index(const ng_trainer *tr, const char *name) {
    int i;
    for (i = 0; i < tr->n_columns; i++)
        if (strcmp(tr->columns[i], name) == 0) return i;
    return 0;
}

static const char *TRAIN_SUMMARY =
    "Train a binary RBM (E = -a'v - b'h - h'Wv) with PCD-k or CD-k.\n"
    "Optimizers: sgd (plain SGD), centering (SGD on the centered parameterisation, FANG sec. 5.1),\n"
    "fang (factorized natural gradient, FANG Algorithm 1). Learning rate alpha*gamma/(gamma+t).\n"
    "--data is mnist, fashion-mnist, bars-stripes, curves-like (generated; a substitute for CURVES),\n"
    "or a path to an IDX images file (raw or .gz).\n"
    "Writes OUT/train.csv, OUT/rbm.ckpt (every --checkpoint-every updates, at the end, on Ctrl-C);\n"
    "--resume CKPT continues a run exactly (same data; --steps is the new total). A run refuses to\n"
    "overwrite another run in --out unless --force is given.\n"
    "Under mpirun -np N the run is data-parallel: each rank takes its shard of every --batch and of the\n"
    "--particles, drawn as one process draws them; rank 0 writes the log and OUT/rbm.ckpt (with all the\n"
    "particles), rank r OUT/rbm.ckpt.rank<r>; --resume on another N re-shards the particles (README\n"
    "\"Several processes and GPUs\"). --snapshot-every-s is refused on several ranks.";

static int rbm_train(int argc, char **argv) {
    ng_rbm_config cfg;
    ng_common_opts co;
    const char *test_data = NULL, *resume = NULL, *csv_path = NULL, *ckpt_path = NULL;
    int hidden = 500, steps = 1000, log_every = 50, ckpt_every = 500, limit = 0, monitor_n = 500, cuda_graph = 0;
    int est_i = 0, opt_i = 1, diag_metric_i = 0;
    float minutes = 0.0f, snapshot_s = 0.0f;
    int rc;
    ng_backend *be = NULL;
    ng_dataset train = {0}, test = {0};
    ng_rbm rbm;
    ng_rbm_trainer rt;
    ng_ckpt *ck = NULL;
    ng_status s = NG_OK;
    int nv_ck = 0, nh_ck = 0, n_ck = 0, append = 0, rbm_ready = 0, rt_ready = 0, batch_given = 0, particles_given = 0;
    train_ctx tc;
    ng_run_config run;
    ng_run_result res;
    static char csvbuf[4200], ckbuf[4200];

    ng_cli_dist_allow(); /* data-parallel under mpirun */
    ng_rbm_config_default(&cfg);
    cfg.lr = 0.2f; /* the best alpha of sgd and centering in the bench-fang-figure3 sweep */
    ng_common_defaults(&co);
    co.out = "runs/rbm";
    memset(&rbm, 0, sizeof rbm);
    {
        ng_opt opts[] = {
            NG_OPT_DATA(&co, "training data"),
            {"test-data", OPT_STR, &test_data, "NAME|PATH", "held-out data for the free-energy gap (default: the test split of a named set)", 0, 0},
            {"limit", OPT_INT, &limit, "N", "use only the first N training examples (0 = all)", 0, 0},
            {"hidden", OPT_INT, &hidden, "N", "hidden units", OPT_FIXED, 0},
            {"estimator", OPT_ENUM, &est_i, "pcd|cd", "gradient estimator", OPT_FIXED, 0},
            {"k", OPT_INT, &cfg.k, "K", "Gibbs steps per update", OPT_FIXED, 0},
            {"particles", OPT_INT, &cfg.particles, "M", "PCD fantasy particles (FANG: 2000)", OPT_FIXED, 0},
            {"batch", OPT_INT, &cfg.batch, "M", "mini-batch size (FANG: 2000)", OPT_FIXED, 0},
            {"optimizer", OPT_ENUM, &opt_i, "sgd|centering|fang|diag", "update rule (preconditioner of SGD; diag: Sohl-Dickstein's diagonal metric, eq. 33 / 34)", OPT_FIXED, 0},
            {"lr", OPT_FLOAT, &cfg.lr, "ALPHA", "learning rate alpha (fang: 0.02 unless given; the best of each optimizer's grid in bench-fang-figure3)", OPT_FIXED, 0},
            {"lr-gamma", OPT_FLOAT, &cfg.lr_gamma, "GAMMA", "schedule alpha*gamma/(gamma+t); 0 = constant (FANG: 1000)", OPT_FIXED, 0},
            {"momentum", OPT_FLOAT, &cfg.momentum, "MU", "heavy-ball momentum", OPT_FIXED, 0},
            {"weight-decay", OPT_FLOAT, &cfg.weight_decay, "L2", "L2 penalty on W", OPT_FIXED, 0},
            {"center-rate", OPT_FLOAT, &cfg.center_rate, "NU", "moving-average rate of the centering offsets", OPT_FIXED, 0},
            {"init-std", OPT_FLOAT, &cfg.init_std, "S", "std of the initial weights", OPT_FIXED, 0},
            {"binarize-train", OPT_FLAG, &cfg.binarize_train, NULL, "train on Bernoulli samples of the pixels (default: intensities, FANG fn. 4)", OPT_FIXED, 0},
            {"fang-refit-every", OPT_INT, &cfg.fang_refit_every, "T", "FANG: refit the factorization every T updates", OPT_FIXED, 0},
            {"fang-tau", OPT_FLOAT, &cfg.fang_tau, "TAU", "FANG: timescale of the moving averages", OPT_FIXED, 0},
            {"fang-lambda", OPT_FLOAT, &cfg.fang_lambda, "LAMBDA", "FANG: damping added to every covariance", OPT_FIXED, 0},
            {"fang-inverse", OPT_ENUM, &cfg.fang_inverse, "tikhonov|regularized", "FANG: invert the unary covariance as (Sigma + lambda I)^-1, or as Sohl-Dickstein's regularised inverse (Sigma^T Sigma + lambda^2 I)^-1 Sigma^T (eq. 35)", OPT_FIXED, 0},
            {"diag-metric", OPT_ENUM, &diag_metric_i, "energy|fisher", "diag: second moments of the free-energy gradients over the data (eq. 33, log Z ignored), or their variances over the fantasy particles (the model Fisher's diagonal, eq. 34)", OPT_FIXED, 0},
            {"diag-lambda", OPT_FLOAT, &cfg.diag_lambda, "L", "diag: added to the diagonal", OPT_FIXED, 0},
            {"diag-power", OPT_FLOAT, &cfg.diag_power, "P", "diag: the gradient is divided by (diagonal + L)^P, P in (0, 1]", OPT_FIXED, 0},
            {"diag-beta", OPT_FLOAT, &cfg.diag_beta, "B", "diag: moving average of the diagonal over updates (bias-corrected)", OPT_FIXED, 0},
            NG_OPT_SEED(&co, OPT_FIXED),
            {"steps", OPT_INT, &steps, "N", "total parameter updates", 0, 0},
            {"minutes", OPT_FLOAT, &minutes, "M", "stop after M minutes of wall clock (0 = no limit)", 0, 0},
            {"log-every", OPT_INT, &log_every, "N", "CSV row and progress line every N updates", 0, 0},
            {"monitor-n", OPT_INT, &monitor_n, "N", "examples used for the free-energy gap", 0, 0},
            {"checkpoint-every", OPT_INT, &ckpt_every, "N", "checkpoint every N updates (0 = only at the end)", 0, 0},
            {"snapshot-every-s", OPT_FLOAT, &snapshot_s, "S", "also keep OUT/snap-<update>.ckpt every S seconds spent in updates, listed in OUT/snapshots.csv (log-likelihood vs time curves; 0 = off)", 0, 0},
            NG_OPT_OUT(&co),
            NG_OPT_PROFILE(&co),
            {"csv", OPT_STR, &csv_path, "PATH", "CSV log (default OUT/train.csv)", 0, 0},
            {"checkpoint", OPT_STR, &ckpt_path, "PATH", "checkpoint file (default OUT/rbm.ckpt)", 0, 0},
            {"resume", OPT_STR, &resume, "CKPT", "continue the run saved in CKPT (its settings are used)", 0, 0},
            {"cuda-graph", OPT_INT, &cuda_graph, "0|1", "CUDA: 1 = capture the unlogged steady-state update (both Gibbs phases, statistics, SGD step; the Philox step counted on the device) in a CUDA graph and replay it, one graph launch per update; re-captured when the batch shape or the learning rate changes (--lr-gamma: every update). --optimizer sgd, centering, fang (its refit updates run eagerly: they read the host) or diag, with or without --binarize-train (its draw at the device count's step too); under mpirun with NCCL too (the RBM's all-reduces of gW and the means in the graph, FANG's moments too). Results are bit-identical to 0 (the default). Ignored on the CPU backend", 0, 0},
            NG_OPT_DEVICE(&co),
            NG_OPT_THREADS(&co),
            NG_OPT_END};
        const ng_opt *fixed;
        rc = ng_cli_parse("rbm train", TRAIN_SUMMARY, opts, argc, argv);
        if (rc < 0) return NG_EXIT_OK;
        if (rc) return rc;
        if (resume && (fixed = ng_cli_fixed_given(opts)) != NULL) {
            fprintf(stderr, "natgrad rbm train: --%s cannot be combined with --resume (the checkpoint's value is used)\n",
                    fixed->name);
            return NG_EXIT_USAGE;
        }
        cfg.estimator = (ng_rbm_estimator)est_i;
        cfg.optimizer = (ng_rbm_optimizer)opt_i;
        cfg.diag_metric = diag_metric_i ? NG_DIAG_FISHER : NG_DIAG_ENERGY;
        cfg.seed = co.seed;
        if (!ng_cli_find(opts, "lr")->seen && cfg.optimizer == NG_RBM_OPT_FANG) cfg.lr = 0.02f;
        if (ng_cli_find(opts, "fang-inverse")->seen && cfg.optimizer != NG_RBM_OPT_FANG) {
            fprintf(stderr, "natgrad rbm train: --fang-inverse is an option of --optimizer fang\n");
            return NG_EXIT_USAGE;
        }
        batch_given = ng_cli_find(opts, "batch")->seen;
        particles_given = ng_cli_find(opts, "particles")->seen;
    }
    /* usage errors first, each naming its option, before the backend starts or data load */
#define TRAIN_BAD(cond, opt, fmt, val, want)                                                        \
    if (cond) {                                                                                     \
        fprintf(stderr, "natgrad rbm train: --%s " fmt ": %s\n", opt, val, want);                   \
        return NG_EXIT_USAGE;                                                                       \
    }
    TRAIN_BAD(hidden < 1, "hidden", "%d", hidden, "must be >= 1")
    TRAIN_BAD(steps < 0, "steps", "%d", steps, "must be >= 0")
    TRAIN_BAD(log_every < 1, "log-every", "%d", log_every, "must be >= 1")
    TRAIN_BAD(ckpt_every < 0, "checkpoint-every", "%d", ckpt_every, "must be >= 0")
    TRAIN_BAD(limit < 0, "limit", "%d", limit, "must be >= 0")
    TRAIN_BAD(monitor_n < 0, "monitor-n", "%d", monitor_n, "must be >= 0")
    TRAIN_BAD(minutes < 0.0f, "minutes", "%g", (double)minutes, "must be >= 0")
    TRAIN_BAD(snapshot_s < 0.0f, "snapshot-every-s", "%g", (double)snapshot_s, "must be >= 0")
    TRAIN_BAD(co.threads < 0, "threads", "%d", co.threads, "must be >= 0")
    if (!resume) {
        TRAIN_BAD(cfg.batch < 1, "batch", "%d", cfg.batch, "must be >= 1")
        TRAIN_BAD(cfg.particles < 1, "particles", "%d", cfg.particles, "must be >= 1")
        TRAIN_BAD(cfg.k < 1, "k", "%d", cfg.k, "must be >= 1")
        TRAIN_BAD(!(cfg.lr > 0.0f), "lr", "%g", (double)cfg.lr, "must be > 0")
        TRAIN_BAD(cfg.lr_gamma < 0.0f, "lr-gamma", "%g", (double)cfg.lr_gamma, "must be >= 0")
        TRAIN_BAD(cfg.momentum < 0.0f || cfg.momentum >= 1.0f, "momentum", "%g", (double)cfg.momentum,
                  "must lie in [0, 1)")
        TRAIN_BAD(cfg.weight_decay < 0.0f, "weight-decay", "%g", (double)cfg.weight_decay, "must be >= 0")
        TRAIN_BAD(!(cfg.center_rate > 0.0f && cfg.center_rate <= 1.0f), "center-rate", "%g", (double)cfg.center_rate,
                  "must lie in (0, 1]")
        TRAIN_BAD(cfg.init_std < 0.0f, "init-std", "%g", (double)cfg.init_std, "must be >= 0")
        TRAIN_BAD(cfg.fang_refit_every < 1, "fang-refit-every", "%d", cfg.fang_refit_every, "must be >= 1")
        TRAIN_BAD(!(cfg.fang_tau >= 1.0f), "fang-tau", "%g", (double)cfg.fang_tau, "must be >= 1")
        TRAIN_BAD(!(cfg.fang_lambda > 0.0f), "fang-lambda", "%g", (double)cfg.fang_lambda, "must be > 0")
    }
#undef TRAIN_BAD
    {
        ng_device dev;
        int idx;
        if (ng_device_parse(co.device, &dev, &idx) != NG_OK) {
            fprintf(stderr, "natgrad rbm train: %s\n", ng_last_error());
            return NG_EXIT_USAGE;
        }
    }
    if (resume) {
        uint64_t t_ck = 0;
        if (ng_rbm_checkpoint_read(resume, NG_CKPT_READ_ALL, &ck) != NG_OK ||
            ng_rbm_checkpoint_config(ck, &nv_ck, &nh_ck, &cfg, &n_ck) != NG_OK ||
            ng_ckpt_get_u64(ck, "run.t", &t_ck) != NG_OK) {
            fprintf(stderr, "natgrad rbm train: --resume: %s\n", ng_last_error());
            ng_ckpt_free(ck);
            return NG_EXIT_FAIL;
        }
        if ((uint64_t)steps < t_ck) {
            fprintf(stderr, "natgrad rbm train: --steps %d is below the %llu updates %s already holds; --steps is "
                            "the new total (e.g. --steps %llu for %d more)\n",
                    steps, (unsigned long long)t_ck, resume, (unsigned long long)t_ck + (uint64_t)steps, steps);
            ng_ckpt_free(ck);
            return NG_EXIT_USAGE;
        }
        if ((uint64_t)steps == t_ck)
            fprintf(stderr, "natgrad: %s already holds %llu updates = --steps: nothing to train (--steps is the new "
                            "total)\n", resume, (unsigned long long)t_ck);
        hidden = nh_ck;
    }
    if ((rc = load_data("training", co.data, co.data_dir, "train", limit, &train))) goto done;
    /* the defaults (FANG's 2000) adapt to a smaller data set such as bars-stripes (30 examples);
     * values given explicitly are kept and checked by the trainer */
    if (!resume && !batch_given && cfg.batch > train.n) {
        fprintf(stderr, "natgrad: note: --batch defaults to %d, the size of %s (the default %d is larger)\n",
                train.n, train.name, cfg.batch);
        cfg.batch = train.n;
        if (!particles_given && cfg.particles > train.n) cfg.particles = train.n;
    }
    if (resume && (train.dim != nv_ck || train.n != n_ck)) {
        fprintf(stderr, "natgrad rbm train: --resume %s was trained on %d examples of dimension %d, but --data %s "
                        "has %d of dimension %d (use the same data and --limit)\n",
                resume, n_ck, nv_ck, co.data, train.n, train.dim);
        rc = NG_EXIT_USAGE;
        goto done;
    }
    if (test_data || !ng_cli_is_path(co.data)) {
        const char *tn = test_data ? test_data : co.data;
        if (load_data("test", tn, co.data_dir, "test", 0, &test)) {
            fprintf(stderr, "natgrad rbm train: continuing without a free-energy gap monitor\n");
            memset(&test, 0, sizeof test);
        } else if (test.dim != train.dim) {
            fprintf(stderr, "natgrad rbm train: --test-data dimension %d differs from --data dimension %d\n",
                    test.dim, train.dim);
            rc = NG_EXIT_USAGE;
            goto done;
        }
    }
    if (ng_mkdirs(co.out) != 0) {
        fprintf(stderr, "natgrad rbm train: cannot create output directory %s: %s\n", co.out, strerror(errno));
        rc = NG_EXIT_FAIL;
        goto done;
    }
    if (!csv_path) snprintf(csvbuf, sizeof csvbuf, "%s/train.csv", co.out), csv_path = csvbuf;
    if (!ckpt_path) snprintf(ckbuf, sizeof ckbuf, "%s/rbm.ckpt", co.out), ckpt_path = ckbuf;
    /* a run directory holds one run: continue it (resume of its own checkpoint), or refuse to
     * overwrite it unless --force */
    append = resume && ng_cli_same_file(resume, ckpt_path);
    if (!append && !co.force && (ng_cli_file_exists(ckpt_path, 0) || ng_cli_file_exists(csv_path, 1))) {
        fprintf(stderr,
                "natgrad rbm train: %s already holds a run (%s%s%s); continue it with --resume %s, "
                "choose another --out, or overwrite it with --force\n",
                co.out, ng_cli_file_exists(ckpt_path, 0) ? ckpt_path : "", ng_cli_file_exists(ckpt_path, 0) && ng_cli_file_exists(csv_path, 1) ? ", " : "",
                ng_cli_file_exists(csv_path, 1) ? csv_path : "", ckpt_path);
        rc = NG_EXIT_USAGE;
        goto done;
    }
    if ((rc = ng_cli_backend(&co, &be))) goto done;
    if (ng_cli_world() > 1 && snapshot_s > 0.0f) {
        /* each rank measures its own time in updates, so the ranks would not agree when to save */
        fprintf(stderr, "natgrad rbm train: --snapshot-every-s %g is not supported with %d ranks (the ranks would not agree "
                        "on when to save); use --checkpoint-every N, or run as one process\n", (double)snapshot_s, ng_cli_world());
        rc = NG_EXIT_USAGE;
        goto done;
    }
    cfg.rank = ng_cli_rank();
    cfg.world = ng_cli_world();
    fprintf(stderr, "natgrad: data %s: %d training examples of dimension %d (%dx%d)%s%s\n", train.name,
            train.n, train.dim, train.height, train.width, test.n ? ", test set " : "", test.n ? test.name : "");
    fprintf(stderr, "natgrad: RBM %d visible x %d hidden, %s-%d, %d particles, batch %d, optimizer %s, "
                    "lr %g gamma %g momentum %g weight decay %g, seed %llu\n",
            train.dim, hidden, cfg.estimator == NG_RBM_PCD ? "PCD" : "CD", cfg.k, cfg.particles, cfg.batch,
            ng_rbm_optimizer_name(cfg.optimizer), (double)cfg.lr, (double)cfg.lr_gamma, (double)cfg.momentum,
            (double)cfg.weight_decay, (unsigned long long)cfg.seed);
    if (cfg.optimizer == NG_RBM_OPT_DIAG)
        fprintf(stderr, "natgrad: diagonal metric (Sohl-Dickstein 2012): %s, lambda %g, power %g, beta %g\n",
                cfg.diag_metric == NG_DIAG_ENERGY ? "energy (eq. 33, over the data)" : "model Fisher (eq. 34, over the particles)",
                (double)cfg.diag_lambda, (double)cfg.diag_power, (double)cfg.diag_beta);

    s = ng_rbm_init(be, train.dim, hidden, &rbm);
    if (s == NG_OK) {
        rbm_ready = 1;
        if (!resume) {
            float *mean = (float *)calloc((size_t)train.dim, sizeof(float));
            int c, j;
            if (!mean) s = ng_error(NG_ERR_OOM, "out of memory");
            for (c = 0; s == NG_OK && c < train.n; c++)
                for (j = 0; j < train.dim; j++) mean[j] += train.x[(size_t)c * train.dim + j] / (float)train.n;
            if (s == NG_OK) s = ng_rbm_init_params(&rbm, cfg.seed, cfg.init_std, mean);
            free(mean);
        }
    }
    if (s == NG_OK) s = ng_rbm_trainer_init(&rt, &rbm, &cfg, train.x, train.n, monitor_columns);
    if (s == NG_OK) {
        rt_ready = 1;
        s = ng_trainer_set_comm(&rt.tr, ng_cli_comm()); /* data parallelism under mpirun */
    }
    if (s != NG_OK) {
        fprintf(stderr, "natgrad rbm train: %s\n", ng_last_error());
        rc = (s == NG_ERR_INVALID_ARG) ? NG_EXIT_USAGE : NG_EXIT_FAIL;
        goto done;
    }
    if (cuda_graph != 0 && cuda_graph != 1) {
        fprintf(stderr, "natgrad rbm train: --cuda-graph %d: must be 0 or 1\n", cuda_graph);
        rc = NG_EXIT_USAGE;
        goto done;
    }
    if (cuda_graph && !ng_graph_supported(rbm.be))
        fprintf(stderr, "natgrad: note: --cuda-graph is ignored on the %s backend (no CUDA graphs)\n", rbm.be->iface->name);
    else if (cuda_graph && ng_trainer_set_cuda_graph(&rt.tr, 1) != NG_OK) {
        fprintf(stderr, "natgrad rbm train: %s\n", ng_last_error());
        rc = NG_EXIT_USAGE;
        goto done;
    }
    if (resume) {
        /* the same number of ranks: bit for bit; another: the model file (particles re-sharded) */
        if (ng_trainer_resume(&rt.tr, ck) != NG_OK) {
            fprintf(stderr, "natgrad rbm train: --resume: %s\n", ng_last_error());
            rc = NG_EXIT_FAIL;
            goto done;
        }
        fprintf(stderr, "natgrad: resumed %s at update %llu\n", resume, (unsigned long long)rt.tr.t);
    }
    ng_ckpt_free(ck);
    ck = NULL;

    if (monitor_n > train.n) monitor_n = train.n;
    tc.rbm = &rbm;
    tc.train = &train;
    tc.test = &test;
    tc.monitor_n = monitor_n;
    tc.col_recon = column_index(&rt.tr, "recon_error");
    tc.col_grad = column_index(&rt.tr, "grad_norm");
    tc.col_gap = column_index(&rt.tr, "fe_gap");
    memset(&run, 0, sizeof run);
    run.steps = (uint64_t)steps;
    run.minutes = minutes;
    run.log_every = log_every;
    run.ckpt_every = ckpt_every;
    run.snapshot_s = snapshot_s;
    run.out_dir = co.out;
    run.csv_path = csv_path;
    run.ckpt_path = ckpt_path;
    run.append = append;
    run.monitor = rbm_monitor;
    run.progress = rbm_progress;
    run.user = &tc;
    s = ng_run(&rt.tr, &run, &res);
    if (s != NG_OK) {
        fprintf(stderr, "\nnatgrad rbm train: update %llu: %s\n", (unsigned long long)rt.tr.t, ng_last_error());
        if (res.saved)
            fprintf(stderr, "natgrad: the checkpoint of update %llu is %s\n", (unsigned long long)res.end, ckpt_path);
        else if (ng_cli_file_exists(ckpt_path, 1) && (append || res.start > 0 || ckpt_every > 0))
            fprintf(stderr, "natgrad: the last good checkpoint is %s\n", ckpt_path);
        rc = NG_EXIT_FAIL;
    } else {
        if (res.time_limit)
            fprintf(stderr, "natgrad: --minutes %g reached at update %llu\n", (double)minutes, (unsigned long long)res.end);
        if (res.start > 0)
            fprintf(stderr, "natgrad: %s at update %llu in all: %llu updates in %.1f s since the resume at update %llu "
                            "(%.2f updates/s); the log's time continues from %.1f s; checkpoint %s, log %s\n",
                    res.interrupted ? "interrupted" : "done", (unsigned long long)res.end,
                    (unsigned long long)(res.end - res.start), res.seconds, (unsigned long long)res.start,
                    res.seconds > 0 ? (double)(res.end - res.start) / res.seconds : 0.0, res.time_offset_s, ckpt_path,
                    csv_path);
        else
            fprintf(stderr, "natgrad: %s after %llu updates in %.1f s (%.2f updates/s); checkpoint %s, log %s\n",
                    res.interrupted ? "interrupted" : "done", (unsigned long long)res.end, res.seconds,
                    res.seconds > 0 ? (double)(res.end - res.start) / res.seconds : 0.0, ckpt_path, csv_path);
        rc = res.interrupted ? NG_EXIT_FAIL : NG_EXIT_OK;
        if (ng_cli_profile_report(&co) && rc == NG_EXIT_OK) rc = NG_EXIT_FAIL;
    }
    if (rt.tr.graph.on)
        fprintf(stderr, "natgrad: CUDA graphs: %llu updates captured, %llu replayed, %llu eager (update 0 and logged updates)\n",
                (unsigned long long)rt.tr.graph.captures, (unsigned long long)rt.tr.graph.replays,
                (unsigned long long)rt.tr.graph.eager);
done:
    ng_ckpt_free(ck);
    if (rt_ready) ng_rbm_trainer_free(&rt);
    if (rbm_ready) ng_rbm_free(&rbm);
    ng_backend_free(be);
    ng_dataset_free(&train);
    ng_dataset_free(&test);
    return rc;
}

/* ---- eval ---------------------------------------------------------------------------------- */

static const char *EVAL_SUMMARY =
    "Evaluate a trained RBM: log Z by AIS from the base-rate model (Salakhutdinov & Murray 2008),\n"
    "pooling --ais-runs independent runs of --ais-chains chains, with a 95% bootstrap interval over\n"
    "runs and chains and each run's estimate and effective sample size (ESS); exactly when the\n"
    "smaller layer has at most 20 units; and the average log-likelihood (nats) of the data after\n"
    "stochastic binarisation with a fixed seed. AIS errs high (its log Z is a stochastic lower bound);\n"
    "--raise-n N runs RAISE (reverse AIS, errs low) on the first N examples and reports the paired\n"
    "difference of the two on those examples. Reads checkpoints of this version and of natgrad 0.1.";

typedef struct eval_progress {
    double t0;
    int64_t last_done;
} eval_progress;

/* progress line with ETA, at most about once a second */
static void eval_progress_fn(void *user, const char *what, int64_t done, int64_t total) {
    eval_progress *p = (eval_progress *)user;
    double el;
    if (done < p->last_done) p->t0 = ng_time_s(); /* a new phase */
    p->last_done = done;
    el = ng_time_s() - p->t0;
    if (done < total && done % 1000 != 0) return;
    ng_progress((uint64_t)done, (uint64_t)total, el, done > 0 ? el * (double)(total - done) / (double)done : NAN,
                what, 0);
    if (done >= total) ng_progress((uint64_t)done, (uint64_t)total, el, 0.0, what, 1);
}

/* "natgrad rbm eval: --NAME VALUE: must be ..." */
static int bad_opt(const char *name, long long v, const char *want) {
    fprintf(stderr, "natgrad rbm eval: --%s %lld: %s\n", name, v, want);
    return NG_EXIT_USAGE;
}

static int rbm_eval(int argc, char **argv) {
    ng_common_opts co;
    const char *ckpt = NULL, *split = "test", *train_data = NULL, *csv_path = NULL, *opt_name = "?";
    ng_ais_config ais;
    int limit = 0, exact = -1, rc, chains, betas, runs, sched_i = 0, raise_n = 0, raise_betas = 1000,
        raise_chains = 10;
    ng_backend *be = NULL;
    ng_dataset ds = {0}, tds = {0};
    ng_rbm rbm;
    ng_ckpt *ck = NULL;
    int64_t nv64, nh64;
    int nv, nh, rbm_ready = 0, r;
    float *abase = NULL, *bin = NULL;
    ng_status s;
    ng_ais_result res;
    double logz_exact = NAN, ll = NAN, ll_exact = NAN, t0;
    eval_progress prog = {0, 0};
    ng_device dev;
    int dev_index;
    ng_ais_config_default(&ais);
    ng_common_defaults(&co);
    chains = ais.n_chains;
    betas = ais.n_betas;
    runs = ais.n_runs;
    memset(&rbm, 0, sizeof rbm);
    {
        ng_opt opts[] = {
            {"checkpoint", OPT_STR, &ckpt, "CKPT", "checkpoint written by natgrad rbm train (required)", 0, 0},
            NG_OPT_DATA(&co, "data to evaluate (named set or IDX images path)"),
            {"split", OPT_STR, &split, "train|test", "split of a named data set", 0, 0},
            {"train-data", OPT_STR, &train_data, "NAME|PATH", "data for the base-rate model (default: train split of --data)", 0, 0},
            {"limit", OPT_INT, &limit, "N", "evaluate only the first N examples (0 = all)", 0, 0},
            {"ais-betas", OPT_INT, &betas, "K", "AIS intermediate distributions of the linear schedule (FANG used 50000)", 0, 0},
            {"ais-schedule", OPT_ENUM, &sched_i, "linear|sm08", "betas: linear (--ais-betas of them) or Salakhutdinov & Murray 2008's 14,500 (1e-3 steps to 0.5, 1e-4 to 0.9, 1e-5 to 1)", 0, 0},
            {"ais-chains", OPT_INT, &chains, "M", "AIS chains per run", 0, 0},
            {"ais-runs", OPT_INT, &runs, "R", "independent AIS runs, pooled; their spread widens the bootstrap interval (1..64)", 0, 0},
            {"raise-n", OPT_INT, &raise_n, "N", "also estimate the log-likelihood of the first N examples by RAISE (reverse AIS; 0 = off)", 0, 0},
            {"raise-betas", OPT_INT, &raise_betas, "K", "RAISE intermediate distributions (linear; sm08 with --ais-schedule sm08)", 0, 0},
            {"raise-chains", OPT_INT, &raise_chains, "R", "RAISE chains per example", 0, 0},
            {"exact", OPT_INT, &exact, "-1|0|1", "exact log Z by enumeration (-1: when the smaller layer <= 20)", 0, 0},
            {"seed", OPT_U64, &co.seed, "S", "seed of the AIS chains and the binarisation", 0, 0},
            {"csv", OPT_STR, &csv_path, "PATH", "append a result row to this CSV", 0, 0},
            NG_OPT_DEVICE(&co),
            NG_OPT_THREADS(&co),
            NG_OPT_END};
        rc = ng_cli_parse("rbm eval", EVAL_SUMMARY, opts, argc, argv);
        if (rc < 0) return NG_EXIT_OK;
        if (rc) return rc;
    }
    /* usage errors first, each naming its option, before any file is read */
    if (!ckpt) {
        fprintf(stderr, "natgrad rbm eval: --checkpoint CKPT is required (see --help)\n");
        return NG_EXIT_USAGE;
    }
    if (betas < 2) return bad_opt("ais-betas", betas, "must be >= 2");
    if (chains < 2) return bad_opt("ais-chains", chains, "must be >= 2");
    if (runs < 1 || runs > NG_AIS_MAX_RUNS) return bad_opt("ais-runs", runs, "must be in 1..64");
    if ((long long)runs * chains > (1 << 24)) return bad_opt("ais-chains", chains, "times --ais-runs exceeds 2^24 chains");
    if (limit < 0) return bad_opt("limit", limit, "must be >= 0");
    if (exact < -1 || exact > 1) return bad_opt("exact", exact, "must be -1, 0 or 1");
    if (raise_n < 0) return bad_opt("raise-n", raise_n, "must be >= 0");
    if (raise_betas < 1) return bad_opt("raise-betas", raise_betas, "must be >= 1");
    if (raise_chains < 1) return bad_opt("raise-chains", raise_chains, "must be >= 1");
    if (raise_n == 1) return bad_opt("raise-n", raise_n, "must be 0 (off) or >= 2 (the paired interval needs two examples)");
    if (co.threads < 0) return bad_opt("threads", co.threads, "must be >= 0");
    if (strcmp(split, "train") != 0 && strcmp(split, "test") != 0) {
        fprintf(stderr, "natgrad rbm eval: --split '%s': use train or test\n", split);
        return NG_EXIT_USAGE;
    }
    if (ng_device_parse(co.device, &dev, &dev_index) != NG_OK) {
        fprintf(stderr, "natgrad rbm eval: %s\n", ng_last_error());
        return NG_EXIT_USAGE;
    }
    ais.n_betas = betas;
    ais.n_chains = chains;
    ais.n_runs = runs;
    ais.schedule = (ng_ais_schedule)sched_i;
    ais.seed = co.seed;
    ais.progress = eval_progress_fn;
    ais.progress_user = &prog;
    if (ng_rbm_checkpoint_read(ckpt, NG_CKPT_READ_ALL, &ck) != NG_OK ||
        ng_ckpt_get_int(ck, "rbm.n_visible", 1, 1 << 30, &nv64) != NG_OK ||
        ng_ckpt_get_int(ck, "rbm.n_hidden", 1, 1 << 30, &nh64) != NG_OK) {
        fprintf(stderr, "natgrad rbm eval: %s\n", ng_last_error());
        ng_ckpt_free(ck);
        return NG_EXIT_FAIL;
    }
    nv = (int)nv64;
    nh = (int)nh64;
    if (exact == 1 && (nv < nh ? nv : nh) > 20) {
        fprintf(stderr, "natgrad rbm eval: --exact 1: %s is a %d x %d RBM; enumeration needs a layer of at most 20 "
                        "units (use --exact -1 or 0 and AIS)\n", ckpt, nv, nh);
        ng_ckpt_free(ck);
        return NG_EXIT_USAGE;
    }
    if (ng_ckpt_has(ck, "precond.kind")) {
        const char *k = NULL;
        ng_ckpt_get_str(ck, "precond.kind", &k);
        opt_name = strcmp(k, "identity") == 0 ? "sgd" : k;
    }
    if ((rc = load_data("evaluation", co.data, co.data_dir, split, limit, &ds))) goto out;
    if ((rc = load_data("base-rate", train_data ? train_data : co.data, co.data_dir, "train", 0, &tds))) goto out;
    if (ds.dim != nv || tds.dim != nv) {
        fprintf(stderr, "natgrad rbm eval: checkpoint %s has %d visible units, data has dimension %d\n", ckpt, nv,
                ds.dim != nv ? ds.dim : tds.dim);
        rc = NG_EXIT_USAGE;
        goto out;
    }
    if ((rc = ng_cli_backend(&co, &be))) goto out;
    s = ng_rbm_init(be, nv, nh, &rbm);
    if (s != NG_OK) goto fail;
    rbm_ready = 1;
    s = ng_model_load(ng_rbm_model(&rbm), ck, 1);
    if (s != NG_OK) goto fail;
    t0 = ng_time_s();
    abase = (float *)malloc((size_t)nv * sizeof(float));
    bin = (float *)malloc((size_t)nv * ds.n * sizeof(float));
    if (!abase || !bin) {
        s = ng_error(NG_ERR_OOM, "out of memory");
        goto fail;
    }
    ng_rbm_base_rate_bias(tds.x, nv, tds.n, abase);
    {
        size_t j, n = (size_t)nv * ds.n;
        uint64_t key = ng_rng_stream_key(co.seed, NG_RNG_EVAL_BINARIZE);
        for (j = 0; j < n; j++) bin[j] = ng_rng_uniform(key, 0, j) <= ds.x[j] ? 1.0f : 0.0f;
    }
    fprintf(stderr, "natgrad: AIS: %d runs x %d chains, %s schedule (%d betas), on a %d x %d RBM ...\n", runs,
            chains, sched_i ? "S&M 2008" : "linear", sched_i ? 14500 : betas, nv, nh);
    prog.t0 = ng_time_s();
    s = ng_rbm_ais(&rbm, abase, &ais, &res);
    if (s != NG_OK) goto fail;
    s = ng_rbm_mean_log_prob(&rbm, bin, ds.n, res.log_z, &ll);
    if (s != NG_OK) goto fail;
    if (exact == 1 || (exact == -1 && (nv < nh ? nv : nh) <= 20)) {
        s = ng_rbm_log_z_exact(&rbm, &logz_exact);
        if (s == NG_OK) s = ng_rbm_mean_log_prob(&rbm, bin, ds.n, logz_exact, &ll_exact);
        if (s != NG_OK) goto fail;
    }
    printf("checkpoint: %s (%d visible x %d hidden, optimizer %s)\n", ckpt, nv, nh, opt_name);
    printf("data: %s %s, %d examples, stochastically binarised (seed %llu)\n", ds.name, split, ds.n,
           (unsigned long long)co.seed);
    printf("AIS: log Z = %.4f  95%% bootstrap interval [%.4f, %.4f]  (%d runs x %d chains, %d betas, "
           "log Z_base %.4f, pooled ESS %.1f of %d)\n",
           res.log_z, res.log_z_lo, res.log_z_hi, runs, chains, res.n_betas, res.log_z_base, res.ess, runs * chains);
    printf("AIS runs (log Z, ESS of %d):", chains);
    for (r = 0; r < runs; r++) printf("%s %.4f (%.1f)", r ? "," : "", res.run_log_z[r], res.run_ess[r]);
    printf("; spread (sd) %.4f\n", res.run_sd);
    /* a quarter: on bars-stripes, 2 betas leave run ESS of 18-24 % and an estimate 0.4 nats low
     * whose interval misses the exact value (tests/test_cli.sh eval_low_ess_warning) */
    if (res.min_run_ess < 0.25 * chains)
        fprintf(stderr, "natgrad: warning: AIS weights are degenerate: a run's ESS is %.1f of its %d chains (< 25%%), "
                        "so the estimate is likely too low and its interval too narrow; increase --ais-betas first "
                        "(or --ais-schedule sm08), then --ais-chains and --ais-runs\n", res.min_run_ess, chains);
    if (!isnan(logz_exact)) printf("exact: log Z = %.4f\n", logz_exact);
    printf("average log-likelihood: %.4f nats (AIS log Z; 95%% interval [%.4f, %.4f]; AIS errs high)\n", ll,
           ll - (res.log_z_hi - res.log_z), ll + (res.log_z - res.log_z_lo));
    if (!isnan(ll_exact)) printf("average log-likelihood with exact log Z: %.4f nats\n", ll_exact);
    if (raise_n > 0) {
        ng_ais_config rc_cfg = ais;
        ng_raise_result rr;
        ng_paired_diff pd;
        int nr = raise_n < ds.n ? raise_n : ds.n;
        double *per = (double *)malloc((size_t)nr * sizeof(double)), *F = (double *)malloc((size_t)nr * sizeof(double));
        rc_cfg.n_betas = raise_betas;
        rc_cfg.n_chains = raise_chains;
        prog.last_done = 0;
        prog.t0 = ng_time_s();
        fprintf(stderr, "natgrad: RAISE on %d examples, %d betas x %d chains each ...\n", nr,
                sched_i ? 14500 : raise_betas, raise_chains);
        s = (!per || !F) ? ng_error(NG_ERR_OOM, "out of memory") : NG_OK;
        if (s == NG_OK && nr < 2) s = ng_error(NG_ERR_INVALID_ARG, "RAISE needs >= 2 examples, the data have %d", nr);
        if (s == NG_OK) s = ng_rbm_raise(&rbm, abase, bin, nr, &rc_cfg, &rr, per);
        if (s == NG_OK) s = ng_rbm_free_energy(&rbm, bin, nr, F);
        if (s == NG_OK) s = ng_raise_ais_paired(per, F, nr, &res, &pd);
        free(per);
        free(F);
        if (s != NG_OK) goto fail;
        printf("RAISE: average log-likelihood of the first %d examples: %.4f nats (errs low; spread over examples: "
               "3-SE [%.4f, %.4f])\n", nr, rr.mean_log_prob, rr.lo, rr.hi);
        printf("AIS on the same %d examples: %.4f nats (errs high)\n", nr, pd.ais_mean);
        printf("AIS - RAISE, paired on those examples: %.4f nats, 95%% interval [%.4f, %.4f]: %s\n", pd.diff, pd.lo,
               pd.hi,
               pd.lo > 0.0 ? "the true value lies between them, up to their noise; the gap bounds the error"
               : pd.hi < 0.0 ? "RAISE above AIS beyond the noise: the paths are too short for either to be trusted; "
                               "increase --ais-betas and --raise-betas"
                             : "the two agree within the noise");
    }
    printf("time: %.1f s\n", ng_time_s() - t0);
    if (csv_path) {
        struct stat st;
        int exists = stat(csv_path, &st) == 0 && st.st_size > 0, bad = 0;
        FILE *f = fopen(csv_path, "a");
        if (!f) {
            s = ng_error(NG_ERR_IO, "cannot append to %s: %s", csv_path, strerror(errno));
            goto fail;
        }
        if (!exists && fprintf(f, "checkpoint,data,split,n,betas,chains,log_z,log_z_lo,log_z_hi,log_z_exact,avg_ll,"
                                  "avg_ll_exact,runs,schedule,ess,min_run_ess,run_sd\n") < 0)
            bad = 1;
        if (fprintf(f, "%s,%s,%s,%d,%d,%d,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%d,%s,%.3f,%.3f,%.6f\n", ckpt, ds.name, split,
                    ds.n, res.n_betas, chains, res.log_z, res.log_z_lo, res.log_z_hi, logz_exact, ll, ll_exact, runs,
                    sched_i ? "sm08" : "linear", res.ess, res.min_run_ess, res.run_sd) < 0)
            bad = 1;
        if (fflush(f) != 0) bad = 1;
        if (fclose(f) != 0) bad = 1;
        if (bad) {
            s = ng_error(NG_ERR_IO, "writing %s failed: %s", csv_path, strerror(errno));
            goto fail;
        }
    }
    rc = NG_EXIT_OK;
    goto out;
fail:
    fprintf(stderr, "\nnatgrad rbm eval: %s\n", ng_last_error());
    rc = NG_EXIT_FAIL;
out:
    if (rbm_ready) ng_rbm_free(&rbm);
    ng_backend_free(be);
    ng_ckpt_free(ck);
    free(abase);
    free(bin);
    ng_dataset_free(&ds);
    ng_dataset_free(&tds);
    return rc;
}

static double mean_pixel(const ng_dataset *d) {
    double m = 0.0;
    size_t q, n = (size_t)d->dim * d->n;
    for (q = 0; q < n; q++) m += d->x[q];
    return n ? m / (double)n : 0.0;
}

/* ---- sample -------------------------------------------------------------------------------- */

/* A float32 array as NumPy .npy (version 1.0, little-endian, C order) of shape (d0, d1). */
static ng_status write_npy(const char *path, const float *x, int d0, int d1) {
    char hdr[128];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", d0, d1);
    int total = 10 + n + 1, pad = (64 - total % 64) % 64, i, bad = 0;
    unsigned short hl = (unsigned short)(n + 1 + pad);
    FILE *f = fopen(path, "wb");
    if (!f) return ng_error(NG_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    if (fwrite("\x93NUMPY\x01\x00", 1, 8, f) != 8) bad = 1;
    if (fputc(hl & 0xff, f) == EOF || fputc(hl >> 8, f) == EOF) bad = 1;
    if (fwrite(hdr, 1, (size_t)n, f) != (size_t)n) bad = 1;
    for (i = 0; i < pad; i++)
        if (fputc(' ', f) == EOF) bad = 1;
    if (fputc('\n', f) == EOF) bad = 1;
    if (fwrite(x, sizeof(float), (size_t)d0 * d1, f) != (size_t)d0 * d1) bad = 1;
    if (fclose(f) != 0) bad = 1;
    return bad ? ng_error(NG_ERR_IO, "writing %s failed: %s", path, strerror(errno)) : NG_OK;
}

static const char *SAMPLE_SUMMARY =
    "Draw samples from a trained RBM and show its filters. --n chains start from the base-rate model\n"
    "of --data's training split and run --sweeps block Gibbs sweeps (h | v, v | h); writes\n"
    "OUT/samples.png (the last sweep's visible probabilities, as images), OUT/samples.npy (those\n"
    "probabilities) and OUT/samples_binary.npy (the binary samples), both (n, n_visible) float32;\n"
    "OUT/filters.png (the first --filters rows of W, each scaled to gray 0.5 +- 0.5 w / max|w|) and\n"
    "OUT/filters.npy (all of W, (n_hidden, n_visible)). Image shape from --data.";

static int rbm_sample(int argc, char **argv) {
    ng_common_opts co;
    const char *ckpt = NULL;
    int n = 100, sweeps = 1000, filters = 100, rc, nv, nh, rbm_ready = 0, i, j, cols;
    ng_ckpt *ck = NULL;
    ng_dataset tds = {0};
    ng_backend *be = NULL;
    ng_rbm rbm;
    ng_status s = NG_OK;
    int64_t nv64, nh64;
    float *abase = NULL, *prob = NULL, *smp = NULL, *W = NULL, *fimg = NULL, *t = NULL;
    char path[4300];
    eval_progress prog = {0, 0};
    ng_ais_config pcfg;
    ng_device dev;
    int dev_index;
    ng_common_defaults(&co);
    co.out = "samples";
    memset(&rbm, 0, sizeof rbm);
    {
        ng_opt opts[] = {
            {"checkpoint", OPT_STR, &ckpt, "CKPT", "checkpoint written by natgrad rbm train (required)", 0, 0},
            NG_OPT_DATA(&co, "data set: image shape and the base-rate start of the chains"),
            {"n", OPT_INT, &n, "N", "samples (independent chains)", 0, 0},
            {"sweeps", OPT_INT, &sweeps, "K", "Gibbs sweeps per chain", 0, 0},
            {"filters", OPT_INT, &filters, "F", "filters shown in filters.png (at most n_hidden)", 0, 0},
            {"seed", OPT_U64, &co.seed, "S", "seed of the chains", 0, 0},
            {"out", OPT_STR, &co.out, "DIR", "output directory", 0, 0},
            NG_OPT_DEVICE(&co),
            NG_OPT_THREADS(&co),
            NG_OPT_END};
        rc = ng_cli_parse("rbm sample", SAMPLE_SUMMARY, opts, argc, argv);
        if (rc < 0) return NG_EXIT_OK;
        if (rc) return rc;
    }
    if (!ckpt) {
        fprintf(stderr, "natgrad rbm sample: --checkpoint CKPT is required (see --help)\n");
        return NG_EXIT_USAGE;
    }
    if (n < 1 || n > 100000) {
        fprintf(stderr, "natgrad rbm sample: --n %d: must be in 1..100000\n", n);
        return NG_EXIT_USAGE;
    }
    if (sweeps < 1) {
        fprintf(stderr, "natgrad rbm sample: --sweeps %d: must be >= 1\n", sweeps);
        return NG_EXIT_USAGE;
    }
    if (filters < 1) {
        fprintf(stderr, "natgrad rbm sample: --filters %d: must be >= 1\n", filters);
        return NG_EXIT_USAGE;
    }
    if (co.threads < 0) {
        fprintf(stderr, "natgrad rbm sample: --threads %d: must be >= 0\n", co.threads);
        return NG_EXIT_USAGE;
    }
    if (ng_device_parse(co.device, &dev, &dev_index) != NG_OK) {
        fprintf(stderr, "natgrad rbm sample: %s\n", ng_last_error());
        return NG_EXIT_USAGE;
    }
    if (ng_rbm_checkpoint_read(ckpt, NG_CKPT_READ_ALL, &ck) != NG_OK ||
        ng_ckpt_get_int(ck, "rbm.n_visible", 1, 1 << 30, &nv64) != NG_OK ||
        ng_ckpt_get_int(ck, "rbm.n_hidden", 1, 1 << 30, &nh64) != NG_OK) {
        fprintf(stderr, "natgrad rbm sample: %s\n", ng_last_error());
        ng_ckpt_free(ck);
        return NG_EXIT_FAIL;
    }
    nv = (int)nv64;
    nh = (int)nh64;
    if (filters > nh) filters = nh;
    if ((rc = load_data("base-rate", co.data, co.data_dir, "train", 0, &tds))) goto out;
    if (tds.dim != nv) {
        fprintf(stderr, "natgrad rbm sample: checkpoint %s has %d visible units, --data %s has dimension %d\n", ckpt,
                nv, co.data, tds.dim);
        rc = NG_EXIT_USAGE;
        goto out;
    }
    if (ng_mkdirs(co.out) != 0) {
        fprintf(stderr, "natgrad rbm sample: cannot create output directory %s: %s\n", co.out, strerror(errno));
        rc = NG_EXIT_FAIL;
        goto out;
    }
    if ((rc = ng_cli_backend(&co, &be))) goto out;
    s = ng_rbm_init(be, nv, nh, &rbm);
    if (s == NG_OK) rbm_ready = 1;
    if (s == NG_OK) s = ng_model_load(ng_rbm_model(&rbm), ck, 1);
    abase = (float *)malloc((size_t)nv * sizeof(float));
    prob = (float *)malloc((size_t)nv * n * sizeof(float));
    smp = (float *)malloc((size_t)nv * n * sizeof(float));
    W = (float *)malloc((size_t)nv * nh * sizeof(float));
    fimg = (float *)malloc((size_t)nv * nh * sizeof(float));
    t = (float *)malloc((size_t)nv * nh * sizeof(float));
    if (s == NG_OK && (!abase || !prob || !smp || !W || !fimg || !t)) s = ng_error(NG_ERR_OOM, "out of memory");
    if (s != NG_OK) goto fail;
    ng_rbm_base_rate_bias(tds.x, nv, tds.n, abase);
    ng_ais_config_default(&pcfg);
    pcfg.progress = eval_progress_fn;
    pcfg.progress_user = &prog;
    prog.t0 = ng_time_s();
    fprintf(stderr, "natgrad: %d chains x %d Gibbs sweeps on a %d x %d RBM ...\n", n, sweeps, nv, nh);
    s = ng_rbm_sample(&rbm, abase, n, sweeps, co.seed, &pcfg, prob, smp);
    if (s == NG_OK) s = ng_rbm_get_params(&rbm, W, NULL, NULL);
    if (s != NG_OK) goto fail;
    /* images: n columns of nv; .npy rows are samples, so the column-major (nv, n) buffer is already
     * the C-order (n, nv) array */
    cols = (int)ceil(sqrt((double)n));
    snprintf(path, sizeof path, "%s/samples.png", co.out);
    s = ng_png_write_image_grid(path, prob, tds.height, tds.width, n, cols, 1);
    snprintf(path, sizeof path, "%s/samples.npy", co.out);
    if (s == NG_OK) s = write_npy(path, prob, n, nv);
    snprintf(path, sizeof path, "%s/samples_binary.npy", co.out);
    if (s == NG_OK) s = write_npy(path, smp, n, nv);
    /* filters: W is (nh, nv) column-major; filter j = row j. fimg column j = row j scaled */
    for (j = 0; s == NG_OK && j < nh; j++) {
        float mx = 0.0f;
        for (i = 0; i < nv; i++) {
            float w = W[j + (size_t)i * nh];
            if (!isfinite(w)) s = ng_error(NG_ERR_NUMERIC, "W[%d, %d] is %g", j, i, (double)w);
            if (fabsf(w) > mx) mx = fabsf(w);
            t[(size_t)j * nv + i] = w; /* C-order (nh, nv) for filters.npy */
        }
        for (i = 0; i < nv; i++) fimg[(size_t)j * nv + i] = mx > 0.0f ? 0.5f + 0.5f * W[j + (size_t)i * nh] / mx : 0.5f;
    }
    snprintf(path, sizeof path, "%s/filters.png", co.out);
    if (s == NG_OK) s = ng_png_write_image_grid(path, fimg, tds.height, tds.width, filters, (int)ceil(sqrt((double)filters)), 1);
    snprintf(path, sizeof path, "%s/filters.npy", co.out);
    if (s == NG_OK) s = write_npy(path, t, nh, nv);
    if (s != NG_OK) goto fail;
    {
        double m = 0.0;
        size_t q;
        for (q = 0; q < (size_t)nv * n; q++) m += prob[q];
        printf("samples: %s/samples.png (%d chains after %d sweeps; mean pixel probability %.4f, training data %.4f), "
               "%s/samples.npy, %s/samples_binary.npy\n", co.out, n, sweeps, m / ((double)nv * n),
               mean_pixel(&tds), co.out, co.out);
        printf("filters: %s/filters.png (%d of %d), %s/filters.npy\n", co.out, filters, nh, co.out);
    }
    rc = NG_EXIT_OK;
    goto out;
fail:
    fprintf(stderr, "\nnatgrad rbm sample: %s\n", ng_last_error());
    rc = NG_EXIT_FAIL;
out:
    if (rbm_ready) ng_rbm_free(&rbm);
    ng_backend_free(be);
    ng_ckpt_free(ck);
    ng_dataset_free(&tds);
    free(abase);
    free(prob);
    free(smp);
    free(W);
    free(fimg);
    free(t);
    return rc;
}

int ng_cmd_rbm(int argc, char **argv) {
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        FILE *f = argc < 1 ? stderr : stdout;
        fprintf(f, "usage: natgrad rbm <train|eval|sample> [options]   (natgrad rbm train --help)\n");
        return argc < 1 ? NG_EXIT_USAGE : NG_EXIT_OK;
    }
    if (strcmp(argv[0], "train") == 0) return rbm_train(argc - 1, argv + 1);
    if (strcmp(argv[0], "eval") == 0) return rbm_eval(argc - 1, argv + 1);
    if (strcmp(argv[0], "sample") == 0) return rbm_sample(argc - 1, argv + 1);
    fprintf(stderr, "natgrad rbm: unknown subcommand '%s' (use train, eval or sample)\n", argv[0]);
    return NG_EXIT_USAGE;
}
