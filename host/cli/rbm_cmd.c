/* rbm_cmd.c: `natgrad rbm train` and `natgrad rbm eval`.
 * train: loads a data set, trains a binary RBM with PCD/CD and SGD, centering or FANG, logs a CSV
 * row every --log-every updates, prints progress with ETA, writes checkpoints atomically, and
 * resumes bit for bit from --resume. eval: loads a checkpoint and estimates log Z (AIS, and exactly
 * when the smaller layer has at most 20 units) and the average log-likelihood of stochastically
 * binarised data (FANG footnote 4). */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "natgrad/data.h"
#include "natgrad/eval.h"
#include "natgrad/rbm.h"
#include "natgrad/rng.h"
#include "optim/fang.h" /* FANG diagnostics columns */

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static int is_path(const char *s) {
    return strchr(s, '/') || strstr(s, ".idx") || strstr(s, "ubyte") || strstr(s, ".gz");
}

/* Load NAME (mnist, fashion-mnist, bars-stripes) or an IDX images path. */
static int load_data(const char *what, const char *name, const char *data_dir, const char *split,
                     int limit, ng_dataset *out) {
    ng_status s = is_path(name) ? ng_dataset_load_idx(name, NULL, out)
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

static const char *TRAIN_SUMMARY =
    "Train a binary RBM (E = -a'v - b'h - h'Wv) with PCD-k or CD-k.\n"
    "Optimizers: sgd (plain SGD), centering (SGD on the centered parameterisation, FANG sec. 5.1),\n"
    "fang (factorized natural gradient, FANG Algorithm 1). Learning rate alpha*gamma/(gamma+t).\n"
    "--data is mnist, fashion-mnist, bars-stripes, or a path to an IDX images file (raw or .gz).\n"
    "Writes OUT/train.csv, OUT/rbm.ckpt (every --checkpoint-every updates and at the end);\n"
    "--resume CKPT continues a run exactly (same data; --steps is the new total).";

int rbm_train(int argc, char **argv) {
    ng_rbm_config cfg;
    const char *data = "mnist", *test_data = NULL, *data_dir = "data", *out = "runs/rbm",
               *device = "auto", *resume = NULL, *estimator = "pcd", *optimizer = "centering",
               *csv_path = NULL, *ckpt_path = NULL;
    int hidden = 500, steps = 1000, log_every = 50, ckpt_every = 500, limit = 0, monitor_n = 500;
    float minutes = 0.0f, snapshot_s = 0.0f;
    int rc, i;
    ng_backend *be = NULL;
    ng_dataset train = {0}, test = {0};
    ng_rbm rbm;
    ng_rbm_trainer tr;
    FILE *csv = NULL, *snaplog = NULL;
    double t0, fe_train = NAN, fe_test = NAN;
    ng_status s = NG_OK;
    char extra[256];
    int nv_ck = 0, nh_ck = 0;
    uint64_t t_ck = 0;
    ng_rbm_config_default(&cfg);
    {
        ng_opt opts[] = {
            {"data", OPT_STR, &data, "NAME|PATH", "training data", 0},
            {"test-data", OPT_STR, &test_data, "NAME|PATH", "held-out data for the free-energy gap (default: the test split of a named set)", 0},
            {"data-dir", OPT_STR, &data_dir, "DIR", "where named data sets live", 0},
            {"limit", OPT_INT, &limit, "N", "use only the first N training examples (0 = all)", 0},
            {"hidden", OPT_INT, &hidden, "N", "hidden units", 0},
            {"estimator", OPT_STR, &estimator, "pcd|cd", "gradient estimator", 0},
            {"k", OPT_INT, &cfg.k, "K", "Gibbs steps per update", 0},
            {"particles", OPT_INT, &cfg.particles, "M", "PCD fantasy particles (FANG: 2000)", 0},
            {"batch", OPT_INT, &cfg.batch, "M", "mini-batch size (FANG: 2000)", 0},
            {"optimizer", OPT_STR, &optimizer, "sgd|centering|fang", "update rule", 0},
            {"lr", OPT_FLOAT, &cfg.lr, "ALPHA", "learning rate alpha", 0},
            {"lr-gamma", OPT_FLOAT, &cfg.lr_gamma, "GAMMA", "schedule alpha*gamma/(gamma+t); 0 = constant (FANG: 1000)", 0},
            {"momentum", OPT_FLOAT, &cfg.momentum, "MU", "heavy-ball momentum", 0},
            {"weight-decay", OPT_FLOAT, &cfg.weight_decay, "L2", "L2 penalty on W", 0},
            {"center-rate", OPT_FLOAT, &cfg.center_rate, "NU", "moving-average rate of the centering offsets", 0},
            {"init-std", OPT_FLOAT, &cfg.init_std, "S", "std of the initial weights", 0},
            {"binarize-train", OPT_FLAG, &cfg.binarize_train, NULL, "train on Bernoulli samples of the pixels (default: intensities, FANG fn. 4)", 0},
            {"fang-refit-every", OPT_INT, &cfg.fang_refit_every, "T", "FANG: refit the factorization every T updates", 0},
            {"fang-tau", OPT_FLOAT, &cfg.fang_tau, "TAU", "FANG: timescale of the moving averages", 0},
            {"fang-lambda", OPT_FLOAT, &cfg.fang_lambda, "LAMBDA", "FANG: damping added to every covariance", 0},
            {"seed", OPT_U64, &cfg.seed, "S", "random seed (all streams derive from it)", 0},
            {"steps", OPT_INT, &steps, "N", "total parameter updates", 0},
            {"minutes", OPT_FLOAT, &minutes, "M", "stop after M minutes of wall clock (0 = no limit)", 0},
            {"log-every", OPT_INT, &log_every, "N", "CSV row and progress line every N updates", 0},
            {"monitor-n", OPT_INT, &monitor_n, "N", "examples used for the free-energy gap", 0},
            {"checkpoint-every", OPT_INT, &ckpt_every, "N", "checkpoint every N updates (0 = only at the end)", 0},
            {"snapshot-every-s", OPT_FLOAT, &snapshot_s, "S", "also keep OUT/snap-<update>.ckpt every S seconds spent in updates, listed in OUT/snapshots.csv (log-likelihood vs time curves; 0 = off)", 0},
            {"out", OPT_STR, &out, "DIR", "output directory", 0},
            {"csv", OPT_STR, &csv_path, "PATH", "CSV log (default OUT/train.csv)", 0},
            {"checkpoint", OPT_STR, &ckpt_path, "PATH", "checkpoint file (default OUT/rbm.ckpt)", 0},
            {"resume", OPT_STR, &resume, "CKPT", "continue the run saved in CKPT (its settings are used)", 0},
            {"device", OPT_STR, &device, "auto|cpu|cuda", "compute device", 0},
            {NULL, OPT_FLAG, NULL, NULL, NULL, 0}};
        rc = ng_cli_parse("rbm train", TRAIN_SUMMARY, opts, argc, argv);
        if (rc < 0) return NG_EXIT_OK;
        if (rc) return rc;
        if (resume) {
            /* the checkpoint's settings win; refuse explicit conflicting model options */
            static const char *fixed[] = {"hidden", "estimator", "k", "particles", "batch", "optimizer",
                                          "lr", "lr-gamma", "momentum", "weight-decay", "center-rate",
                                          "init-std", "binarize-train", "seed", "fang-refit-every",
                                          "fang-tau", "fang-lambda", NULL};
            for (i = 0; fixed[i]; i++)
                if (ng_cli_find(opts, fixed[i])->seen) {
                    fprintf(stderr, "natgrad rbm train: --%s cannot be combined with --resume (the checkpoint's value is used)\n", fixed[i]);
                    return NG_EXIT_USAGE;
                }
            if (ng_rbm_checkpoint_peek(resume, &nv_ck, &nh_ck, &cfg, &t_ck) != NG_OK) {
                fprintf(stderr, "natgrad rbm train: --resume: %s\n", ng_last_error());
                return NG_EXIT_FAIL;
            }
            hidden = nh_ck;
        } else {
            ng_rbm_estimator est;
            if (strcmp(estimator, "pcd") == 0) est = NG_RBM_PCD;
            else if (strcmp(estimator, "cd") == 0) est = NG_RBM_CD;
            else {
                fprintf(stderr, "natgrad rbm train: --estimator '%s': use pcd or cd\n", estimator);
                return NG_EXIT_USAGE;
            }
            cfg.estimator = est;
            if (ng_rbm_optimizer_parse(optimizer, &cfg.optimizer) != NG_OK) {
                fprintf(stderr, "natgrad rbm train: %s\n", ng_last_error());
                return NG_EXIT_USAGE;
            }
        }
    }
    if (hidden < 1 || steps < 0 || log_every < 1 || ckpt_every < 0 || limit < 0 || monitor_n < 0 ||
        minutes < 0.0f || snapshot_s < 0.0f) {
        fprintf(stderr, "natgrad rbm train: --hidden and --log-every must be >= 1; --steps, --limit, "
                        "--monitor-n, --checkpoint-every and --minutes must be >= 0\n");
        return NG_EXIT_USAGE;
    }
    if ((rc = load_data("training", data, data_dir, "train", limit, &train))) return rc;
    if (resume && train.dim != nv_ck) {
        fprintf(stderr, "natgrad rbm train: --resume %s has %d visible units but --data %s has dimension %d\n",
                resume, nv_ck, data, train.dim);
        ng_dataset_free(&train);
        return NG_EXIT_USAGE;
    }
    if (test_data || !is_path(data)) {
        const char *tn = test_data ? test_data : data;
        if (load_data("test", tn, data_dir, "test", 0, &test)) {
            fprintf(stderr, "natgrad rbm train: continuing without a free-energy gap monitor\n");
            memset(&test, 0, sizeof test);
        } else if (test.dim != train.dim) {
            fprintf(stderr, "natgrad rbm train: --test-data dimension %d differs from --data dimension %d\n",
                    test.dim, train.dim);
            ng_dataset_free(&train);
            ng_dataset_free(&test);
            return NG_EXIT_USAGE;
        }
    }
    if (ng_mkdirs(out) != 0) {
        fprintf(stderr, "natgrad rbm train: cannot create output directory %s\n", out);
        ng_dataset_free(&train);
        ng_dataset_free(&test);
        return NG_EXIT_FAIL;
    }
    {
        static char csvbuf[4096], ckbuf[4096];
        if (!csv_path) snprintf(csvbuf, sizeof csvbuf, "%s/train.csv", out), csv_path = csvbuf;
        if (!ckpt_path) snprintf(ckbuf, sizeof ckbuf, "%s/rbm.ckpt", out), ckpt_path = ckbuf;
    }
    if ((rc = ng_cli_backend(device, &be))) goto done_data;
    fprintf(stderr, "natgrad: data %s: %d training examples of dimension %d (%dx%d)%s%s\n", train.name,
            train.n, train.dim, train.height, train.width, test.n ? ", test set " : "",
            test.n ? test.name : "");
    fprintf(stderr, "natgrad: RBM %d visible x %d hidden, %s-%d, %d particles, batch %d, optimizer %s, "
                    "lr %g gamma %g momentum %g weight decay %g, seed %llu\n",
            train.dim, hidden, cfg.estimator == NG_RBM_PCD ? "PCD" : "CD", cfg.k, cfg.particles, cfg.batch,
            ng_rbm_optimizer_name(cfg.optimizer), (double)cfg.lr, (double)cfg.lr_gamma,
            (double)cfg.momentum, (double)cfg.weight_decay, (unsigned long long)cfg.seed);

    s = ng_rbm_init(be, train.dim, hidden, &rbm);
    if (s == NG_OK) {
        float *mean = (float *)calloc((size_t)train.dim, sizeof(float));
        int c, j;
        if (!mean) s = ng_error(NG_ERR_OOM, "out of memory");
        for (c = 0; s == NG_OK && c < train.n; c++)
            for (j = 0; j < train.dim; j++) mean[j] += train.x[(size_t)c * train.dim + j] / (float)train.n;
        if (s == NG_OK) s = ng_rbm_init_params(&rbm, cfg.seed, cfg.init_std, mean);
        free(mean);
    }
    if (s == NG_OK) s = ng_rbm_trainer_init(&tr, &rbm, &cfg, train.x, train.n);
    if (s != NG_OK) {
        fprintf(stderr, "natgrad rbm train: %s\n", ng_last_error());
        rc = (s == NG_ERR_INVALID_ARG) ? NG_EXIT_USAGE : NG_EXIT_FAIL;
        goto done_backend;
    }
    if (resume) {
        if (ng_rbm_checkpoint_load(&tr, resume) != NG_OK) {
            fprintf(stderr, "natgrad rbm train: --resume: %s\n", ng_last_error());
            rc = NG_EXIT_FAIL;
            goto done_trainer;
        }
        fprintf(stderr, "natgrad: resumed %s at update %llu\n", resume, (unsigned long long)tr.t);
    }
    {
        struct stat st;
        int exists = stat(csv_path, &st) == 0 && st.st_size > 0;
        csv = fopen(csv_path, resume && exists ? "a" : "w");
        if (!csv) {
            fprintf(stderr, "natgrad rbm train: cannot write CSV log %s\n", csv_path);
            rc = NG_EXIT_FAIL;
            goto done_trainer;
        }
        if (!(resume && exists))
            fprintf(csv, "step,epoch,time_s,lr,recon_error,grad_norm,update_norm,fe_train,fe_test,fe_gap%s\n",
                    tr.fang ? ",fang_cond,fang_min_sigma2,fang_refit_s" : ""); /* FANG columns */
        fflush(csv);
    }
    if (snapshot_s > 0.0f) {
        char sp[4200];
        snprintf(sp, sizeof sp, "%s/snapshots.csv", out);
        snaplog = fopen(sp, resume ? "a" : "w");
        if (!snaplog) {
            fprintf(stderr, "natgrad rbm train: cannot write %s\n", sp);
            rc = NG_EXIT_FAIL;
            fclose(csv);
            goto done_trainer;
        }
        if (!resume) fprintf(snaplog, "step,time_s,train_s,checkpoint\n");
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    if (monitor_n > train.n) monitor_n = train.n;
    t0 = ng_now();
    {
        uint64_t start = tr.t, total = (uint64_t)steps;
        double next_snap = snapshot_s, train_s = 0.0; /* train_s: time inside updates only */
        while (tr.t < total && !g_stop) {
            ng_rbm_stats st;
            int logging = ((tr.t + 1) % (uint64_t)log_every == 0) || tr.t + 1 == total;
            double el;
            double ts = ng_now();
            s = ng_rbm_trainer_step(&tr, logging ? &st : NULL);
            if (s == NG_OK && snapshot_s > 0.0f) s = ng_synchronize(be);
            if (s != NG_OK) break;
            train_s += ng_now() - ts;
            el = ng_now() - t0;
            if (logging) {
                if (monitor_n > 0) {
                    fe_train = mean_free_energy(&rbm, &train, monitor_n, &s);
                    if (s == NG_OK && test.n)
                        fe_test = mean_free_energy(&rbm, &test, monitor_n < test.n ? monitor_n : test.n, &s);
                    if (s != NG_OK) break;
                }
                fprintf(csv, "%llu,%d,%.3f,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g",
                        (unsigned long long)tr.t, tr.epoch, el, st.lr, st.recon_error, st.grad_norm,
                        st.update_norm, fe_train, fe_test, fe_test - fe_train);
                /* ---- FANG diagnostics columns (host/optim/fang.h) ---- */
                if (tr.fang) {
                    ng_fang_diag fd;
                    if ((s = ng_fang_diagnostics(&tr, &fd)) != NG_OK) break;
                    fprintf(csv, ",%.6g,%.6g,%.4f", fd.cond, fd.min_sigma2, fd.refit_s);
                }
                /* ---- end FANG ---- */
                fputc('\n', csv);
                fflush(csv);
                snprintf(extra, sizeof extra, "recon %.2f  |dW| %.3g  FE gap %.2f", st.recon_error,
                         st.grad_norm, fe_test - fe_train);
                {
                    /* with --minutes the run ends at the time budget: estimate the total from the
                     * current rate so the ETA counts down to whichever limit comes first */
                    uint64_t shown = total - start;
                    if (minutes > 0.0f && el > 0.0) {
                        double by_time = (double)(tr.t - start) / el * 60.0 * minutes;
                        if (by_time < (double)shown) shown = (uint64_t)by_time + 1;
                    }
                    ng_progress(tr.t - start, shown, el, extra, 0);
                }
            }
            if (ckpt_every > 0 && tr.t % (uint64_t)ckpt_every == 0) {
                s = ng_rbm_checkpoint_save(&tr, ckpt_path);
                if (s != NG_OK) break;
            }
            if (snapshot_s > 0.0f && train_s >= next_snap) {
                char snap[4200];
                snprintf(snap, sizeof snap, "%s/snap-%08llu.ckpt", out, (unsigned long long)tr.t);
                s = ng_rbm_checkpoint_save(&tr, snap);
                if (s != NG_OK) break;
                fprintf(snaplog, "%llu,%.3f,%.3f,%s\n", (unsigned long long)tr.t, el, train_s, snap);
                fflush(snaplog);
                while (next_snap <= train_s) next_snap += snapshot_s;
            }
            if (minutes > 0.0f && el > 60.0 * minutes) {
                fprintf(stderr, "\nnatgrad: --minutes %g reached at update %llu\n", (double)minutes,
                        (unsigned long long)tr.t);
                break;
            }
        }
        if (s == NG_OK) {
            fputc('\n', stderr);
            s = ng_rbm_checkpoint_save(&tr, ckpt_path);
        }
        if (s != NG_OK) {
            fprintf(stderr, "\nnatgrad rbm train: update %llu: %s\n", (unsigned long long)tr.t, ng_last_error());
            fprintf(stderr, "natgrad: the last good checkpoint is %s\n", ckpt_path);
            rc = NG_EXIT_FAIL;
        } else {
            double el = ng_now() - t0;
            fprintf(stderr, "natgrad: %s after %llu updates in %.1f s (%.2f updates/s); checkpoint %s, log %s\n",
                    g_stop ? "interrupted" : "done", (unsigned long long)tr.t, el,
                    el > 0 ? (double)(tr.t - start) / el : 0.0, ckpt_path, csv_path);
            rc = g_stop ? NG_EXIT_FAIL : NG_EXIT_OK;
        }
    }
    fclose(csv);
    if (snaplog) fclose(snaplog);
done_trainer:
    ng_rbm_trainer_free(&tr);
    ng_rbm_free(&rbm);
done_backend:
    ng_backend_free(be);
done_data:
    ng_dataset_free(&train);
    ng_dataset_free(&test);
    return rc;
}

static const char *EVAL_SUMMARY =
    "Evaluate a trained RBM: log Z by AIS from the base-rate model (Salakhutdinov & Murray 2008)\n"
    "with its 3-sigma interval, exactly when the smaller layer has at most 20 units, and the average\n"
    "log-likelihood (nats) of the data after stochastic binarisation with a fixed seed.";

int rbm_eval(int argc, char **argv) {
    const char *ckpt = NULL, *data = "mnist", *data_dir = "data", *split = "test", *device = "auto",
               *train_data = NULL, *csv_path = NULL;
    ng_ais_config ais;
    int limit = 0, exact = -1, rc, chains, betas, raise_n = 0, raise_betas = 1000, raise_chains = 10;
    uint64_t seed = 1;
    ng_backend *be = NULL;
    ng_dataset ds = {0}, tds = {0};
    ng_rbm rbm;
    ng_rbm_config cfg;
    int nv, nh;
    float *abase = NULL, *bin = NULL;
    ng_status s;
    ng_ais_result res;
    double logz_exact = NAN, ll = NAN, ll_exact = NAN, t0;
    ng_ais_config_default(&ais);
    chains = ais.n_chains;
    betas = ais.n_betas;
    {
        ng_opt opts[] = {
            {"checkpoint", OPT_STR, &ckpt, "CKPT", "checkpoint written by natgrad rbm train (required)", 0},
            {"data", OPT_STR, &data, "NAME|PATH", "data to evaluate (named set or IDX images path)", 0},
            {"split", OPT_STR, &split, "train|test", "split of a named data set", 0},
            {"train-data", OPT_STR, &train_data, "NAME|PATH", "data for the base-rate model (default: train split of --data)", 0},
            {"data-dir", OPT_STR, &data_dir, "DIR", "where named data sets live", 0},
            {"limit", OPT_INT, &limit, "N", "evaluate only the first N examples (0 = all)", 0},
            {"ais-betas", OPT_INT, &betas, "K", "AIS intermediate distributions (FANG used 50000)", 0},
            {"ais-chains", OPT_INT, &chains, "M", "AIS chains", 0},
            {"raise-n", OPT_INT, &raise_n, "N", "also estimate the log-likelihood of the first N examples by RAISE (reverse AIS; 0 = off)", 0},
            {"raise-betas", OPT_INT, &raise_betas, "K", "RAISE intermediate distributions", 0},
            {"raise-chains", OPT_INT, &raise_chains, "R", "RAISE chains per example", 0},
            {"exact", OPT_INT, &exact, "0|1", "exact log Z by enumeration (-1: when the smaller layer <= 20)", 0},
            {"seed", OPT_U64, &seed, "S", "seed of the AIS chains and the binarisation", 0},
            {"csv", OPT_STR, &csv_path, "PATH", "append a result row to this CSV", 0},
            {"device", OPT_STR, &device, "auto|cpu|cuda", "compute device", 0},
            {NULL, OPT_FLAG, NULL, NULL, NULL, 0}};
        rc = ng_cli_parse("rbm eval", EVAL_SUMMARY, opts, argc, argv);
        if (rc < 0) return NG_EXIT_OK;
        if (rc) return rc;
    }
    if (!ckpt) {
        fprintf(stderr, "natgrad rbm eval: --checkpoint CKPT is required (see --help)\n");
        return NG_EXIT_USAGE;
    }
    if (betas < 2 || chains < 2 || limit < 0 || exact < -1 || exact > 1 || raise_n < 0 ||
        raise_betas < 1 || raise_chains < 1 ||
        (strcmp(split, "train") != 0 && strcmp(split, "test") != 0)) {
        fprintf(stderr, "natgrad rbm eval: need --ais-betas >= 2, --ais-chains >= 2, --limit >= 0, "
                        "--exact -1|0|1, --split train|test, --raise-n >= 0, --raise-betas/--raise-chains >= 1\n");
        return NG_EXIT_USAGE;
    }
    ais.n_betas = betas;
    ais.n_chains = chains;
    ais.seed = seed;
    if (ng_rbm_checkpoint_peek(ckpt, &nv, &nh, &cfg, NULL) != NG_OK) {
        fprintf(stderr, "natgrad rbm eval: %s\n", ng_last_error());
        return NG_EXIT_FAIL;
    }
    if ((rc = load_data("evaluation", data, data_dir, split, limit, &ds))) return rc;
    if ((rc = load_data("base-rate", train_data ? train_data : data, data_dir, "train", 0, &tds))) goto out;
    if (ds.dim != nv || tds.dim != nv) {
        fprintf(stderr, "natgrad rbm eval: checkpoint %s has %d visible units, data has dimension %d\n",
                ckpt, nv, ds.dim);
        rc = NG_EXIT_USAGE;
        goto out;
    }
    if ((rc = ng_cli_backend(device, &be))) goto out;
    s = ng_rbm_init(be, nv, nh, &rbm);
    if (s != NG_OK) goto fail;
    s = ng_rbm_checkpoint_load_params(&rbm, ckpt);
    if (s != NG_OK) goto fail;
    t0 = ng_now();
    abase = (float *)malloc((size_t)nv * sizeof(float));
    bin = (float *)malloc((size_t)nv * ds.n * sizeof(float));
    if (!abase || !bin) {
        s = ng_error(NG_ERR_OOM, "out of memory");
        goto fail;
    }
    ng_rbm_base_rate_bias(tds.x, nv, tds.n, abase);
    {
        size_t j, n = (size_t)nv * ds.n;
        uint64_t key = ng_rng_stream_key(seed, NG_RNG_EVAL_BINARIZE);
        for (j = 0; j < n; j++) bin[j] = ng_rng_uniform(key, 0, j) <= ds.x[j] ? 1.0f : 0.0f;
    }
    fprintf(stderr, "natgrad: AIS with %d betas x %d chains on %d x %d RBM ...\n", betas, chains, nv, nh);
    s = ng_rbm_ais(&rbm, abase, &ais, &res);
    if (s != NG_OK) goto fail;
    s = ng_rbm_mean_log_prob(&rbm, bin, ds.n, res.log_z, &ll);
    if (s != NG_OK) goto fail;
    if (exact == 1 || (exact == -1 && (nv < nh ? nv : nh) <= 20)) {
        s = ng_rbm_log_z_exact(&rbm, &logz_exact);
        if (s == NG_OK) s = ng_rbm_mean_log_prob(&rbm, bin, ds.n, logz_exact, &ll_exact);
        if (s != NG_OK) goto fail;
    }
    printf("checkpoint: %s (%d visible x %d hidden, optimizer %s)\n", ckpt, nv, nh,
           ng_rbm_optimizer_name(cfg.optimizer));
    printf("data: %s %s, %d examples, stochastically binarised (seed %llu)\n", ds.name, split, ds.n,
           (unsigned long long)seed);
    printf("AIS: log Z = %.4f  3-sigma interval [%.4f, %.4f]  (log Z_base %.4f, ESS %.1f of %d chains, %d betas)\n",
           res.log_z, res.log_z_lo, res.log_z_hi, res.log_z_base, res.ess, chains, betas);
    if (!isnan(logz_exact)) printf("exact: log Z = %.4f\n", logz_exact);
    printf("average log-likelihood: %.4f nats (AIS log Z; interval [%.4f, %.4f])\n", ll,
           ll - (res.log_z_hi - res.log_z), ll + (res.log_z - res.log_z_lo));
    if (!isnan(ll_exact)) printf("average log-likelihood with exact log Z: %.4f nats\n", ll_exact);
    if (raise_n > 0) {
        ng_ais_config rc_cfg = ais;
        ng_raise_result rr;
        double ll_sub = NAN;
        int nr = raise_n < ds.n ? raise_n : ds.n;
        rc_cfg.n_betas = raise_betas;
        rc_cfg.n_chains = raise_chains;
        fprintf(stderr, "natgrad: RAISE on %d examples, %d betas x %d chains each ...\n", nr, raise_betas, raise_chains);
        s = ng_rbm_raise(&rbm, abase, bin, nr, &rc_cfg, &rr, NULL);
        if (s == NG_OK) s = ng_rbm_mean_log_prob(&rbm, bin, nr, res.log_z, &ll_sub);
        if (s != NG_OK) goto fail;
        printf("RAISE: average log-likelihood of the first %d examples: %.4f nats, 3-SE interval [%.4f, %.4f] "
               "(AIS on the same examples: %.4f)\n", nr, rr.mean_log_prob, rr.lo, rr.hi, ll_sub);
    }
    printf("time: %.1f s\n", ng_now() - t0);
    if (csv_path) {
        struct stat st;
        int exists = stat(csv_path, &st) == 0 && st.st_size > 0;
        FILE *f = fopen(csv_path, "a");
        if (!f) {
            s = ng_error(NG_ERR_IO, "cannot append to %s", csv_path);
            goto fail;
        }
        if (!exists) fprintf(f, "checkpoint,data,split,n,betas,chains,log_z,log_z_lo,log_z_hi,log_z_exact,avg_ll,avg_ll_exact\n");
        fprintf(f, "%s,%s,%s,%d,%d,%d,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f\n", ckpt, ds.name, split, ds.n, betas,
                chains, res.log_z, res.log_z_lo, res.log_z_hi, logz_exact, ll, ll_exact);
        fclose(f);
    }
    rc = NG_EXIT_OK;
    goto out_rbm;
fail:
    fprintf(stderr, "natgrad rbm eval: %s\n", ng_last_error());
    rc = NG_EXIT_FAIL;
out_rbm:
    ng_rbm_free(&rbm);
    ng_backend_free(be);
out:
    free(abase);
    free(bin);
    ng_dataset_free(&ds);
    ng_dataset_free(&tds);
    return rc;
}

int ng_cmd_rbm(int argc, char **argv) {
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        FILE *f = argc < 1 ? stderr : stdout;
        fprintf(f, "usage: natgrad rbm <train|eval> [options]   (natgrad rbm train --help)\n");
        return argc < 1 ? NG_EXIT_USAGE : NG_EXIT_OK;
    }
    if (strcmp(argv[0], "train") == 0) return rbm_train(argc - 1, argv + 1);
    if (strcmp(argv[0], "eval") == 0) return rbm_eval(argc - 1, argv + 1);
    fprintf(stderr, "natgrad rbm: unknown subcommand '%s' (use train or eval)\n", argv[0]);
    return NG_EXIT_USAGE;
}
