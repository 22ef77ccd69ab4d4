/* rbm_train.c: the RBM training set-up of the natgrad command (natgrad/rbm.h): configuration,
 * the trainer built from an RBM, a batch stream, the preconditioner of --optimizer and SGD, and
 * reading that configuration back from a checkpoint. It composes parts through their public
 * headers only (natgrad/precond.h, natgrad/fang.h, natgrad/update.h, natgrad/train.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "natgrad/fang.h"
#include "natgrad/rbm.h"
#include "natgrad/recipes.h"

void ng_rbm_config_default(ng_rbm_config *c) {
    memset(c, 0, sizeof *c);
    c->batch = 2000;         /* FANG section 6.2 */
    c->particles = 2000;     /* FANG section 6.2 */
    c->k = 1;
    c->estimator = NG_RBM_PCD;
    c->optimizer = NG_RBM_OPT_CENTERING;
    c->lr = 0.05f;
    c->lr_gamma = 1000.0f;   /* FANG footnote 4: alpha gamma / (gamma + t), gamma = 1000 */
    c->momentum = 0.0f;
    c->weight_decay = 0.0f;
    c->center_rate = 0.01f;
    c->init_std = 0.01f;     /* Hinton's practical guide */
    c->binarize_train = 0;   /* FANG footnote 4: continuous values during training */
    c->seed = 1;
    c->fang_refit_every = 100;
    c->fang_tau = 100.0f;
    c->fang_lambda = 0.01f;
    c->diag_metric = NG_DIAG_ENERGY;
    c->diag_lambda = 1e-4f;
    c->diag_power = 1.0f;
    c->diag_beta = 0.95f;
    c->rank = 0;
    c->world = 1;
}

static const char *const optimizer_names[] = {"sgd", "centering", "fang", "diag"};
/* the preconditioner behind each optimizer, as stored in checkpoints (precond.kind) */
static const char *const precond_names[] = {"identity", "centering", "fang", "diag"};
#define N_OPTIMIZERS 4

const char *ng_rbm_optimizer_name(ng_rbm_optimizer o) {
    return (unsigned)o < N_OPTIMIZERS ? optimizer_names[o] : "?";
}

static void diag_config(const ng_rbm_config *c, ng_diag_config *d) {
    ng_diag_config_default(d);
    d->metric = c->diag_metric;
    d->lambda = c->diag_lambda;
    d->power = c->diag_power;
    d->beta = c->diag_beta;
    d->seed = c->seed;
    d->max_batch = c->batch;
}

ng_status ng_rbm_optimizer_parse(const char *s, ng_rbm_optimizer *out) {
    int i;
    for (i = 0; i < N_OPTIMIZERS; i++)
        if (s && strcasecmp(s, optimizer_names[i]) == 0) {
            *out = (ng_rbm_optimizer)i;
            return NG_OK;
        }
    return ng_error(NG_ERR_INVALID_ARG, "--optimizer '%s': unknown (use sgd, centering, fang or diag)", s ? s : "");
}

static void split_config(const ng_rbm_config *c, ng_rbm_estimator_config *e, ng_sgd_config *u,
                         ng_fang_config *f) {
    memset(e, 0, sizeof *e);
    e->estimator = c->estimator;
    e->k = c->k;
    e->particles = c->particles;
    e->batch = c->batch;
    e->binarize_train = c->binarize_train;
    e->seed = c->seed;
    e->rank = c->rank;
    e->world = c->world;
    memset(u, 0, sizeof *u);
    u->lr = c->lr;
    u->lr_gamma = c->lr_gamma;
    u->momentum = c->momentum;
    u->weight_decay = c->weight_decay;
    u->norm_param = "W"; /* update_norm: ||step of W||_F */
    f->refit_every = c->fang_refit_every;
    f->tau = c->fang_tau;
    f->lambda = c->fang_lambda;
    f->inverse = c->fang_inverse;
    f->seed = c->seed;
}

ng_status ng_rbm_config_check(const ng_rbm_config *c, int n_train) {
    ng_rbm_estimator_config e;
    ng_sgd_config u;
    ng_fang_config f;
    if ((unsigned)c->optimizer > NG_RBM_OPT_DIAG)
        return ng_error(NG_ERR_INVALID_ARG, "--optimizer: unknown optimizer %d", (int)c->optimizer);
    split_config(c, &e, &u, &f);
    NG_TRY(ng_rbm_estimator_check(&e, n_train));
    NG_TRY(ng_sgd_config_check(&u));
    if (c->optimizer == NG_RBM_OPT_CENTERING && !(c->center_rate > 0.0f && c->center_rate <= 1.0f))
        return ng_error(NG_ERR_INVALID_ARG, "--center-rate %g: must be in (0, 1]", (double)c->center_rate);
    if (!(c->init_std >= 0.0f) || !isfinite(c->init_std))
        return ng_error(NG_ERR_INVALID_ARG, "--init-std %g: must be >= 0", (double)c->init_std);
    if (c->optimizer == NG_RBM_OPT_FANG) NG_TRY(ng_fang_config_check(&f));
    if (c->optimizer == NG_RBM_OPT_DIAG) {
        ng_diag_config d;
        diag_config(c, &d);
        if (d.metric != NG_DIAG_ENERGY && d.metric != NG_DIAG_FISHER)
            return ng_error(NG_ERR_INVALID_ARG, "--diag-metric %s: RBMs use energy or fisher", ng_diag_metric_name(d.metric));
        NG_TRY(ng_diag_config_check(&d));
    }
    return NG_OK;
}

void ng_rbm_trainer_free(ng_rbm_trainer *rt) {
    if (!rt) return;
    ng_trainer_release(&rt->tr); /* CUDA graphs of the steps (--cuda-graph) */
    ng_precond_free(rt->pc);
    ng_update_free(rt->upd);
    ng_batches_free(&rt->data);
    if (rt->rbm) ng_rbm_estimator_free(rt->rbm);
    rt->pc = NULL;
    rt->upd = NULL;
    rt->rbm = NULL;
}

ng_status ng_rbm_trainer_init(ng_rbm_trainer *rt, ng_rbm *rbm, const ng_rbm_config *cfg,
                              const float *train_host, int n_train,
                              const char *const *monitor_columns) {
    ng_rbm_estimator_config e;
    ng_sgd_config u;
    ng_fang_config f;
    ng_backend *be = rbm->be;
    ng_model *m = ng_rbm_model(rbm);
    ng_status s;
    memset(rt, 0, sizeof *rt);
    if (n_train < 1 || !train_host) return ng_error(NG_ERR_INVALID_ARG, "rbm trainer: empty training set");
    NG_TRY(ng_rbm_config_check(cfg, n_train));
    rt->cfg = *cfg;
    split_config(cfg, &e, &u, &f);
    s = ng_rbm_estimator_init(rbm, &e, train_host, n_train);
    if (s == NG_OK) {
        rt->rbm = rbm; /* from here on the trainer owns the estimator (freed with it) */
        rt->cfg.particles = e.estimator == NG_RBM_PCD ? e.particles : e.batch;
        s = ng_batches_init(&rt->data, be, train_host, rbm->n_visible, n_train, cfg->batch, cfg->seed,
                           cfg->world > 1 ? cfg->rank : 0, cfg->world > 1 ? cfg->world : 1);
    }
    if (s == NG_OK) {
        if (cfg->optimizer == NG_RBM_OPT_CENTERING) s = ng_precond_centering_init(be, m, cfg->center_rate, &rt->pc);
        else if (cfg->optimizer == NG_RBM_OPT_FANG) s = ng_precond_fang_init(be, m, &f, &rt->pc);
        else if (cfg->optimizer == NG_RBM_OPT_DIAG) {
            ng_diag_config d;
            diag_config(cfg, &d);
            s = ng_precond_diag_init(be, m, &d, &rt->pc);
        }
        else s = ng_precond_identity_init(be, &rt->pc);
    }
    if (s == NG_OK) s = ng_update_sgd_init(be, m, &u, &rt->upd);
    if (s == NG_OK) s = ng_trainer_init(&rt->tr, m, rt->pc, rt->upd, &rt->data, cfg->seed, monitor_columns);
    if (s != NG_OK) ng_rbm_trainer_free(rt);
    return s;
}

ng_status ng_rbm_checkpoint_config(const ng_ckpt *c, int *n_visible, int *n_hidden,
                                   ng_rbm_config *cfg, int *n_train) {
    static const char *const est_names[] = {"pcd", "cd"};
    const char *kind;
    int64_t nv, nh, k, M, batch, bin, n;
    int est, opt;
    ng_status s;
    NG_TRY(ng_ckpt_get_str(c, "model.kind", &kind));
    if (strcmp(kind, "rbm") != 0)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: field model.kind is '%s', not an RBM", ng_ckpt_path(c), kind);
    ng_rbm_config_default(cfg);
    NG_TRY(ng_ckpt_get_int(c, "rbm.n_visible", 1, 1 << 30, &nv));
    NG_TRY(ng_ckpt_get_int(c, "rbm.n_hidden", 1, 1 << 30, &nh));
    if ((double)nv * (double)nh > 2e9)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: fields rbm.n_visible x rbm.n_hidden = %lld x %lld is too large",
                        ng_ckpt_path(c), (long long)nv, (long long)nh);
    NG_TRY(ng_ckpt_get_enum(c, "rbm.estimator", est_names, 2, &est));
    NG_TRY(ng_ckpt_get_int(c, "rbm.k", 1, 100000, &k));
    NG_TRY(ng_ckpt_get_int(c, "rbm.particles", 1, 1 << 30, &M));
    NG_TRY(ng_ckpt_get_int(c, "data.n", 1, 2147483647, &n));
    NG_TRY(ng_ckpt_get_int(c, "rbm.batch", 1, n, &batch));
    NG_TRY(ng_ckpt_get_int(c, "rbm.binarize_train", 0, 1, &bin));
    NG_TRY(ng_ckpt_get_u64(c, "rbm.seed", &cfg->seed));
    NG_TRY(ng_ckpt_get_enum(c, "precond.kind", precond_names, N_OPTIMIZERS, &opt));
    cfg->estimator = (ng_rbm_estimator)est;
    cfg->k = (int)k;
    cfg->particles = (int)M;
    cfg->batch = (int)batch;
    cfg->binarize_train = (int)bin;
    cfg->optimizer = (ng_rbm_optimizer)opt;
    NG_TRY(ng_ckpt_get_float(c, "sgd.lr", 1e-30, 1e30, &cfg->lr));
    NG_TRY(ng_ckpt_get_float(c, "sgd.lr_gamma", 0.0, 1e30, &cfg->lr_gamma));
    NG_TRY(ng_ckpt_get_float(c, "sgd.momentum", 0.0, 0.999999, &cfg->momentum));
    NG_TRY(ng_ckpt_get_float(c, "sgd.weight_decay", 0.0, 1e30, &cfg->weight_decay));
    if (cfg->optimizer == NG_RBM_OPT_CENTERING)
        NG_TRY(ng_ckpt_get_float(c, "centering.rate", 1e-30, 1.0, &cfg->center_rate));
    if (cfg->optimizer == NG_RBM_OPT_FANG) {
        int64_t T;
        NG_TRY(ng_ckpt_get_int(c, "fang.refit_every", 1, 1000000000, &T));
        cfg->fang_refit_every = (int)T;
        NG_TRY(ng_ckpt_get_float(c, "fang.tau", 1.0, 1e30, &cfg->fang_tau));
        NG_TRY(ng_ckpt_get_float(c, "fang.lambda", 1e-30, 1e30, &cfg->fang_lambda));
        cfg->fang_inverse = NG_FANG_INV_TIKHONOV; /* absent before --fang-inverse */
        if (ng_ckpt_has(c, "fang.inverse")) {
            int64_t inv;
            NG_TRY(ng_ckpt_get_int(c, "fang.inverse", 0, 1, &inv));
            cfg->fang_inverse = (int)inv;
        }
    }
    if (cfg->optimizer == NG_RBM_OPT_DIAG) {
        ng_diag_config d;
        diag_config(cfg, &d);
        NG_TRY(ng_diag_config_from_ckpt(c, &d));
        cfg->diag_metric = d.metric;
        cfg->diag_lambda = (float)d.lambda;
        cfg->diag_power = (float)d.power;
        cfg->diag_beta = (float)d.beta;
    }
    s = ng_rbm_config_check(cfg, (int)n);
    if (s != NG_OK) return ng_error_wrap(NG_ERR_FORMAT, "checkpoint %s: inconsistent settings: ", ng_ckpt_path(c));
    if (n_visible) *n_visible = (int)nv;
    if (n_hidden) *n_hidden = (int)nh;
    if (n_train) *n_train = (int)n;
    return NG_OK;
}

ng_status ng_rbm_load_params(ng_rbm *rbm, const char *path) {
    ng_ckpt *c = NULL;
    ng_status s;
    NG_TRY(ng_rbm_checkpoint_read(path, NG_CKPT_READ_ALL, &c));
    s = ng_model_load(ng_rbm_model(rbm), c, 1);
    ng_ckpt_free(c);
    return s;
}

ng_status ng_rbm_trainer_step(ng_rbm_trainer *rt, double *row) { return ng_trainer_step(&rt->tr, row); }

ng_status ng_rbm_trainer_gradient(ng_rbm_trainer *rt) {
    ng_tensor x;
    NG_TRY(ng_batches_next(&rt->data, &x));
    return ng_model_gradient(ng_rbm_model(rt->rbm), &x, NULL);
}

double ng_rbm_trainer_lr(const ng_rbm_trainer *rt) { return ng_update_lr(rt->upd, rt->tr.t); }

ng_status ng_rbm_trainer_save(ng_rbm_trainer *rt, const char *path) {
    return ng_trainer_save(&rt->tr, path, NG_SAVE_ALL);
}

ng_status ng_rbm_trainer_load(ng_rbm_trainer *rt, const char *path) {
    ng_ckpt *c = NULL;
    ng_status s;
    NG_TRY(ng_rbm_checkpoint_read(path, NG_CKPT_READ_ALL, &c));
    s = ng_trainer_load(&rt->tr, c, NG_SAVE_ALL);
    ng_ckpt_free(c);
    return s;
}
