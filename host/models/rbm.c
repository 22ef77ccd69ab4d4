/* rbm.c: binary RBM parameters, free energies and the PCD/CD trainer with SGD and centering.
 * Shapes: W (n_hidden, n_visible), a (n_visible), b (n_hidden), batches are columns.
 * The gradient estimate is the uncentered difference of data and model statistics
 *   dW = <h v^T>_data - <h v^T>_model,  da = <v>_data - <v>_model,  db = <h>_data - <h>_model,
 * with Rao-Blackwellised hidden statistics p(h | v). Update rules live at the end of this file
 * (SGD, centering) and in host/optim/fang.c (FANG). A training step allocates nothing. */
#include "natgrad/rbm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "natgrad/rng.h"
#include "optim/fang.h"

ng_status ng_rbm_init(ng_backend *be, int n_visible, int n_hidden, ng_rbm *out) {
    memset(out, 0, sizeof *out);
    if (n_visible < 1 || n_hidden < 1)
        return ng_error(NG_ERR_INVALID_ARG, "rbm: sizes must be >= 1 (got %d visible, %d hidden)",
                        n_visible, n_hidden);
    if ((double)n_visible * (double)n_hidden > 2e9)
        return ng_error(NG_ERR_INVALID_ARG, "rbm: %d x %d weights is too large", n_hidden, n_visible);
    out->be = be;
    out->n_visible = n_visible;
    out->n_hidden = n_hidden;
    ng_arena_begin(&out->arena, be, "rbm parameters");
    NG_TRY(ng_arena_reserve(&out->arena, "W", n_hidden, n_visible, &out->W));
    NG_TRY(ng_arena_reserve(&out->arena, "a", n_visible, 1, &out->a));
    NG_TRY(ng_arena_reserve(&out->arena, "b", n_hidden, 1, &out->b));
    return ng_arena_commit(&out->arena);
}

void ng_rbm_free(ng_rbm *rbm) {
    if (rbm) ng_arena_free(&rbm->arena);
}

ng_status ng_rbm_init_params(ng_rbm *rbm, uint64_t seed, float init_std,
                             const float *visible_mean_host) {
    size_t nw = ng_tensor_count(&rbm->W);
    float *w = (float *)malloc(nw * sizeof(float));
    float *a = (float *)calloc((size_t)rbm->n_visible, sizeof(float));
    ng_status s;
    int i;
    if (!w || !a) {
        free(w);
        free(a);
        return ng_error(NG_ERR_OOM, "rbm init: out of host memory");
    }
    ng_rng_fill_normal(w, nw, 0.0f, init_std, ng_rng_stream_key(seed, NG_RNG_INIT_WEIGHTS), 0);
    if (visible_mean_host)
        for (i = 0; i < rbm->n_visible; i++) {
            float p = visible_mean_host[i];
            p = p < 1e-3f ? 1e-3f : p > 1.0f - 1e-3f ? 1.0f - 1e-3f : p;
            a[i] = logf(p / (1.0f - p));
        }
    s = ng_rbm_set_params(rbm, w, a, NULL);
    if (s == NG_OK) s = ng_memset0(rbm->be, rbm->b.data, (size_t)rbm->n_hidden * sizeof(float));
    free(w);
    free(a);
    return s;
}

ng_status ng_rbm_get_params(const ng_rbm *rbm, float *W, float *a, float *b) {
    if (W) NG_TRY(ng_tensor_get(rbm->be, &rbm->W, W));
    if (a) NG_TRY(ng_tensor_get(rbm->be, &rbm->a, a));
    if (b) NG_TRY(ng_tensor_get(rbm->be, &rbm->b, b));
    return NG_OK;
}

ng_status ng_rbm_set_params(ng_rbm *rbm, const float *W, const float *a, const float *b) {
    if (W) NG_TRY(ng_tensor_set(rbm->be, &rbm->W, W));
    if (a) NG_TRY(ng_tensor_set(rbm->be, &rbm->a, a));
    if (b) NG_TRY(ng_tensor_set(rbm->be, &rbm->b, b));
    return NG_OK;
}

ng_status ng_rbm_free_energy(ng_rbm *rbm, const float *v_host, int n, double *F_out) {
    enum { CHUNK = 1024 };
    ng_backend *be = rbm->be;
    int nv = rbm->n_visible, nh = rbm->n_hidden, c0;
    ng_arena ws;
    ng_tensor V, P, f1, f2;
    float *h1 = NULL, *h2 = NULL;
    ng_status s;
    if (n <= 0) return NG_OK;
    ng_arena_begin(&ws, be, "free-energy workspace");
    NG_TRY(ng_arena_reserve(&ws, "V", nv, CHUNK, &V));
    NG_TRY(ng_arena_reserve(&ws, "P", nh, CHUNK, &P));
    NG_TRY(ng_arena_reserve(&ws, "lin", CHUNK, 1, &f1));
    NG_TRY(ng_arena_reserve(&ws, "sp", CHUNK, 1, &f2));
    NG_TRY(ng_arena_commit(&ws));
    h1 = (float *)malloc(CHUNK * sizeof(float));
    h2 = (float *)malloc(CHUNK * sizeof(float));
    s = (h1 && h2) ? NG_OK : ng_error(NG_ERR_OOM, "free energy: out of host memory");
    for (c0 = 0; s == NG_OK && c0 < n; c0 += CHUNK) {
        int m = n - c0 < CHUNK ? n - c0 : CHUNK, j;
        s = ng_set(be, V.data, v_host + (size_t)c0 * nv, (size_t)m * nv * sizeof(float));
        if (s == NG_OK) s = ng_gemm(be, 0, 0, nh, m, nv, 1.0f, rbm->W.data, nh, V.data, nv, 0.0f, P.data, nh);
        if (s == NG_OK) s = ng_softplus_sum(be, nh, m, P.data, nh, rbm->b.data, 1.0f, 1.0f, 0.0f, f2.data);
        if (s == NG_OK) s = ng_gemv(be, 1, nv, m, 1.0f, V.data, nv, rbm->a.data, 0.0f, f1.data);
        if (s == NG_OK) s = ng_get(be, h1, f1.data, (size_t)m * sizeof(float));
        if (s == NG_OK) s = ng_get(be, h2, f2.data, (size_t)m * sizeof(float));
        for (j = 0; s == NG_OK && j < m; j++) F_out[c0 + j] = -(double)h1[j] - (double)h2[j];
    }
    free(h1);
    free(h2);
    ng_arena_free(&ws);
    return s;
}

/* ---- configuration ------------------------------------------------------------------------ */

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
}

const char *ng_rbm_optimizer_name(ng_rbm_optimizer o) {
    return o == NG_RBM_OPT_SGD ? "sgd" : o == NG_RBM_OPT_CENTERING ? "centering" : "fang";
}

ng_status ng_rbm_optimizer_parse(const char *s, ng_rbm_optimizer *out) {
    if (s && strcasecmp(s, "sgd") == 0) *out = NG_RBM_OPT_SGD;
    else if (s && strcasecmp(s, "centering") == 0) *out = NG_RBM_OPT_CENTERING;
    else if (s && strcasecmp(s, "fang") == 0) *out = NG_RBM_OPT_FANG;
    else return ng_error(NG_ERR_INVALID_ARG, "--optimizer '%s': unknown (use sgd, centering or fang)", s ? s : "");
    return NG_OK;
}

/* ---- trainer ------------------------------------------------------------------------------ */

static ng_status check_config(const ng_rbm_config *c, int n_train) {
    if (c->batch < 1) return ng_error(NG_ERR_INVALID_ARG, "--batch %d: must be >= 1", c->batch);
    if (c->batch > n_train)
        return ng_error(NG_ERR_INVALID_ARG, "--batch %d: larger than the training set (%d examples)",
                        c->batch, n_train);
    if (c->estimator == NG_RBM_PCD && c->particles < 1)
        return ng_error(NG_ERR_INVALID_ARG, "--particles %d: must be >= 1", c->particles);
    if (c->k < 1) return ng_error(NG_ERR_INVALID_ARG, "--k %d: must be >= 1", c->k);
    if (!(c->lr > 0.0f) || !isfinite(c->lr))
        return ng_error(NG_ERR_INVALID_ARG, "--lr %g: must be a positive finite number", c->lr);
    if (!(c->lr_gamma >= 0.0f) || !isfinite(c->lr_gamma))
        return ng_error(NG_ERR_INVALID_ARG, "--lr-gamma %g: must be >= 0", c->lr_gamma);
    if (!(c->momentum >= 0.0f && c->momentum < 1.0f))
        return ng_error(NG_ERR_INVALID_ARG, "--momentum %g: must be in [0, 1)", c->momentum);
    if (!(c->weight_decay >= 0.0f) || !isfinite(c->weight_decay))
        return ng_error(NG_ERR_INVALID_ARG, "--weight-decay %g: must be >= 0", c->weight_decay);
    if (!(c->center_rate > 0.0f && c->center_rate <= 1.0f))
        return ng_error(NG_ERR_INVALID_ARG, "--center-rate %g: must be in (0, 1]", c->center_rate);
    if (!(c->init_std >= 0.0f) || !isfinite(c->init_std))
        return ng_error(NG_ERR_INVALID_ARG, "--init-std %g: must be >= 0", c->init_std);
    if (c->optimizer == NG_RBM_OPT_FANG) {
        if (c->fang_refit_every < 1)
            return ng_error(NG_ERR_INVALID_ARG, "--fang-refit-every %d: must be >= 1", c->fang_refit_every);
        if (!(c->fang_tau >= 1.0f))
            return ng_error(NG_ERR_INVALID_ARG, "--fang-tau %g: must be >= 1", c->fang_tau);
        if (!(c->fang_lambda > 0.0f) || !isfinite(c->fang_lambda))
            return ng_error(NG_ERR_INVALID_ARG, "--fang-lambda %g: must be > 0", c->fang_lambda);
    }
    return NG_OK;
}

/* Upload the training set in the order of epoch `epoch`'s permutation. */
static ng_status load_epoch(ng_rbm_trainer *tr, int epoch) {
    int nv = tr->rbm->n_visible, i;
    ng_rng_permutation(tr->perm, tr->n_train, ng_rng_stream_key(tr->cfg.seed, NG_RNG_SHUFFLE),
                       (uint64_t)epoch);
    for (i = 0; i < tr->n_train; i++)
        memcpy(tr->host_perm_data + (size_t)i * nv, tr->host_data + (size_t)tr->perm[i] * nv,
               (size_t)nv * sizeof(float));
    tr->epoch = epoch;
    return ng_tensor_set(tr->be, &tr->data, tr->host_perm_data);
}

ng_status ng_rbm_trainer_init(ng_rbm_trainer *tr, ng_rbm *rbm, const ng_rbm_config *cfg,
                              const float *train_host, int n_train) {
    ng_backend *be = rbm->be;
    int nv = rbm->n_visible, nh = rbm->n_hidden, m, M, i;
    size_t nx;
    float *pm = NULL;
    ng_status s;
    memset(tr, 0, sizeof *tr);
    if (n_train < 1) return ng_error(NG_ERR_INVALID_ARG, "rbm trainer: empty training set");
    NG_TRY(check_config(cfg, n_train));
    nx = (size_t)nv * (size_t)n_train;
    {
        size_t j;
        for (j = 0; j < nx; j++)
            if (!(train_host[j] >= 0.0f && train_host[j] <= 1.0f))
                return ng_error(NG_ERR_INVALID_ARG,
                                "training data: value %g at example %zu, pixel %zu is outside [0, 1] (NaN?)",
                                (double)train_host[j], j / (size_t)nv, j % (size_t)nv);
    }
    tr->rbm = rbm;
    tr->cfg = *cfg;
    tr->be = be;
    tr->n_train = n_train;
    m = cfg->batch;
    M = cfg->estimator == NG_RBM_PCD ? cfg->particles : cfg->batch;
    tr->cfg.particles = M;
    tr->host_data = (float *)malloc(nx * sizeof(float));
    tr->host_perm_data = (float *)malloc(nx * sizeof(float));
    tr->perm = (int *)malloc((size_t)n_train * sizeof(int));
    if (!tr->host_data || !tr->host_perm_data || !tr->perm) {
        ng_rbm_trainer_free(tr);
        return ng_error(NG_ERR_OOM, "rbm trainer: out of host memory for %d examples", n_train);
    }
    memcpy(tr->host_data, train_host, nx * sizeof(float));

    ng_arena_begin(&tr->data_arena, be, "training set");
    ng_arena_begin(&tr->state, be, "optimizer state");
    ng_arena_begin(&tr->work, be, "workspace");
    s = ng_arena_reserve(&tr->data_arena, "data", nv, n_train, &tr->data);
    if (s == NG_OK) s = ng_arena_reserve(&tr->state, "particles", nv, M, &tr->particles);
    if (s == NG_OK) s = ng_arena_reserve(&tr->state, "vel_W", nh, nv, &tr->vel_W);
    if (s == NG_OK) s = ng_arena_reserve(&tr->state, "vel_a", nv, 1, &tr->vel_a);
    if (s == NG_OK) s = ng_arena_reserve(&tr->state, "vel_b", nh, 1, &tr->vel_b);
    if (s == NG_OK) s = ng_arena_reserve(&tr->state, "mu_v", nv, 1, &tr->mu_v);
    if (s == NG_OK) s = ng_arena_reserve(&tr->state, "mu_h", nh, 1, &tr->mu_h);
    if (s == NG_OK) s = ng_arena_reserve(&tr->work, "vd", nv, m, &tr->vd);
    if (s == NG_OK) s = ng_arena_reserve(&tr->work, "hd", nh, m, &tr->hd);
    if (s == NG_OK) s = ng_arena_reserve(&tr->work, "vm", nv, M, &tr->vm);
    if (s == NG_OK) s = ng_arena_reserve(&tr->work, "hm", nh, M, &tr->hm);
    if (s == NG_OK) s = ng_arena_reserve(&tr->work, "hs", nh, m > M ? m : M, &tr->hs);
    if (s == NG_OK) s = ng_arena_reserve(&tr->work, "vr", nv, m, &tr->vr);
    if (s == NG_OK) s = ng_arena_reserve(&tr->work, "dW", nh, nv, &tr->dW);
    if (s == NG_OK) s = ng_arena_reserve(&tr->work, "da", nv, 1, &tr->da);
    if (s == NG_OK) s = ng_arena_reserve(&tr->work, "db", nh, 1, &tr->db);
    if (s == NG_OK) s = ng_arena_reserve(&tr->work, "mv_d", nv, 1, &tr->mv_d);
    if (s == NG_OK) s = ng_arena_reserve(&tr->work, "mh_d", nh, 1, &tr->mh_d);
    if (s == NG_OK) s = ng_arena_reserve(&tr->work, "mv_m", nv, 1, &tr->mv_m);
    if (s == NG_OK) s = ng_arena_reserve(&tr->work, "mh_m", nh, 1, &tr->mh_m);
    if (s == NG_OK) s = ng_arena_commit(&tr->data_arena);
    if (s == NG_OK) s = ng_arena_commit(&tr->state);
    if (s == NG_OK) s = ng_arena_commit(&tr->work);
    if (s == NG_OK) s = load_epoch(tr, 0);
    /* Offsets start at the data mean (visible) and 0.5 (hidden); particles start as Bernoulli
     * draws from the data mean, the base-rate model of the data. */
    if (s == NG_OK) {
        size_t j;
        int c;
        pm = (float *)calloc((size_t)nv, sizeof(float));
        if (!pm) s = ng_error(NG_ERR_OOM, "rbm trainer: out of host memory");
        for (c = 0; s == NG_OK && c < n_train; c++)
            for (j = 0; j < (size_t)nv; j++) pm[j] += train_host[(size_t)c * nv + j];
        for (j = 0; s == NG_OK && j < (size_t)nv; j++) pm[j] /= (float)n_train;
    }
    if (s == NG_OK) s = ng_tensor_set(be, &tr->mu_v, pm);
    if (s == NG_OK) s = ng_fill(be, (size_t)nh, 0.5f, tr->mu_h.data);
    for (i = 0; s == NG_OK && i < M; i++)
        s = ng_set(be, tr->particles.data + (size_t)i * nv, pm, (size_t)nv * sizeof(float));
    if (s == NG_OK)
        s = ng_bernoulli(be, (size_t)nv * M, tr->particles.data, tr->particles.data,
                         ng_rng_stream_key(cfg->seed, NG_RNG_PARTICLES), 0);
    free(pm);
    if (s == NG_OK && cfg->optimizer == NG_RBM_OPT_FANG) s = ng_fang_init(tr);
    if (s != NG_OK) ng_rbm_trainer_free(tr);
    return s;
}

void ng_rbm_trainer_free(ng_rbm_trainer *tr) {
    if (!tr) return;
    if (tr->fang) ng_fang_free(tr);
    ng_arena_free(&tr->data_arena);
    ng_arena_free(&tr->state);
    ng_arena_free(&tr->work);
    free(tr->host_data);
    free(tr->host_perm_data);
    free(tr->perm);
    tr->host_data = tr->host_perm_data = NULL;
    tr->perm = NULL;
}

ng_status ng_rbm_trainer_seek(ng_rbm_trainer *tr, int epoch, int pos) {
    if (epoch < 0 || pos < 0 || pos > tr->n_train)
        return ng_error(NG_ERR_INVALID_ARG, "rbm trainer: cannot seek to epoch %d, column %d of %d",
                        epoch, pos, tr->n_train);
    NG_TRY(load_epoch(tr, epoch));
    tr->pos = pos;
    return NG_OK;
}

double ng_rbm_trainer_lr(const ng_rbm_trainer *tr) {
    double g = tr->cfg.lr_gamma;
    return g > 0.0 ? (double)tr->cfg.lr * g / (g + (double)tr->t) : (double)tr->cfg.lr;
}

static uint64_t gibbs_key(const ng_rbm_trainer *tr) {
    return ng_rng_stream_key(tr->cfg.seed, NG_RNG_GIBBS);
}

/* Positive and negative phases: fills vd, hd, vm, hm, the batch means and dW, da, db. */
ng_status ng_rbm_trainer_gradient(ng_rbm_trainer *tr) {
    ng_backend *be = tr->be;
    ng_rbm *r = tr->rbm;
    int nv = r->n_visible, nh = r->n_hidden, m = tr->cfg.batch, M = tr->cfg.particles, step;
    uint64_t key = gibbs_key(tr);
    ng_tensor batch;

    if (tr->pos + m > tr->n_train) {
        NG_TRY(load_epoch(tr, tr->epoch + 1));
        tr->pos = 0;
    }
    batch = ng_tensor_cols(&tr->data, tr->pos, m);
    tr->pos += m;

    ng_range_push("positive phase");
    if (tr->cfg.binarize_train)
        NG_TRY(ng_bernoulli(be, (size_t)nv * m, batch.data, tr->vd.data,
                            ng_rng_stream_key(tr->cfg.seed, NG_RNG_BINARIZE), tr->rng_step++));
    else
        NG_TRY(ng_copy(be, tr->vd.data, batch.data, (size_t)nv * m * sizeof(float)));
    /* hd = p(h | vd) = sigmoid(W vd + b) */
    NG_TRY(ng_gemm(be, 0, 0, nh, m, nv, 1.0f, r->W.data, nh, tr->vd.data, nv, 0.0f, tr->hd.data, nh));
    NG_TRY(ng_gibbs_sample(be, nh, m, tr->hd.data, nh, r->b.data, 1.0f, NULL, tr->hd.data, nh,
                           NULL, nh, key, tr->rng_step++));
    ng_range_pop();

    ng_range_push("negative phase");
    /* chain start: persistent particles (PCD) or the data (CD) */
    if (tr->cfg.estimator == NG_RBM_PCD)
        NG_TRY(ng_copy(be, tr->vm.data, tr->particles.data, (size_t)nv * M * sizeof(float)));
    else
        NG_TRY(ng_copy(be, tr->vm.data, tr->vd.data, (size_t)nv * M * sizeof(float)));
    for (step = 0; step < tr->cfg.k; step++) {
        /* h ~ p(h | v), then v ~ p(v | h): gemm + one fused kernel each */
        NG_TRY(ng_gemm(be, 0, 0, nh, M, nv, 1.0f, r->W.data, nh, tr->vm.data, nv, 0.0f, tr->hs.data, nh));
        NG_TRY(ng_gibbs_sample(be, nh, M, tr->hs.data, nh, r->b.data, 1.0f, NULL, NULL, nh,
                               tr->hs.data, nh, key, tr->rng_step++));
        NG_TRY(ng_gemm(be, 1, 0, nv, M, nh, 1.0f, r->W.data, nh, tr->hs.data, nh, 0.0f, tr->vm.data, nv));
        NG_TRY(ng_gibbs_sample(be, nv, M, tr->vm.data, nv, r->a.data, 1.0f, NULL, NULL, nv,
                               tr->vm.data, nv, key, tr->rng_step++));
    }
    if (tr->cfg.estimator == NG_RBM_PCD)
        NG_TRY(ng_copy(be, tr->particles.data, tr->vm.data, (size_t)nv * M * sizeof(float)));
    /* hm = p(h | vm) (Rao-Blackwellised negative statistics) */
    NG_TRY(ng_gemm(be, 0, 0, nh, M, nv, 1.0f, r->W.data, nh, tr->vm.data, nv, 0.0f, tr->hm.data, nh));
    NG_TRY(ng_gibbs_sample(be, nh, M, tr->hm.data, nh, r->b.data, 1.0f, NULL, tr->hm.data, nh,
                           NULL, nh, key, tr->rng_step++));
    ng_range_pop();

    ng_range_push("gradient");
    /* dW = hd vd^T / m - hm vm^T / M */
    NG_TRY(ng_gemm(be, 0, 1, nh, nv, m, 1.0f / (float)m, tr->hd.data, nh, tr->vd.data, nv, 0.0f,
                   tr->dW.data, nh));
    NG_TRY(ng_gemm(be, 0, 1, nh, nv, M, -1.0f / (float)M, tr->hm.data, nh, tr->vm.data, nv, 1.0f,
                   tr->dW.data, nh));
    NG_TRY(ng_sum_cols(be, nv, m, 1.0f / (float)m, tr->vd.data, nv, 0.0f, tr->mv_d.data));
    NG_TRY(ng_sum_cols(be, nh, m, 1.0f / (float)m, tr->hd.data, nh, 0.0f, tr->mh_d.data));
    NG_TRY(ng_sum_cols(be, nv, M, 1.0f / (float)M, tr->vm.data, nv, 0.0f, tr->mv_m.data));
    NG_TRY(ng_sum_cols(be, nh, M, 1.0f / (float)M, tr->hm.data, nh, 0.0f, tr->mh_m.data));
    NG_TRY(ng_copy(be, tr->da.data, tr->mv_d.data, (size_t)nv * sizeof(float)));
    NG_TRY(ng_axpby(be, (size_t)nv, -1.0f, tr->mv_m.data, 1.0f, tr->da.data));
    NG_TRY(ng_copy(be, tr->db.data, tr->mh_d.data, (size_t)nh * sizeof(float)));
    NG_TRY(ng_axpby(be, (size_t)nh, -1.0f, tr->mh_m.data, 1.0f, tr->db.data));
    ng_range_pop();
    return NG_OK;
}

/* Turn the gradient (dW, da, db) in place into the ascent direction of the chosen rule (before
 * the learning rate), then apply eta += lr * direction with momentum and weight decay. */
static ng_status apply_update(ng_rbm_trainer *tr, double lr) {
    ng_backend *be = tr->be;
    ng_rbm *r = tr->rbm;
    int nv = r->n_visible, nh = r->n_hidden;
    size_t nw = (size_t)nv * nh;
    float mom = tr->cfg.momentum;

    /* L2 penalty on W enters the gradient before the rule's transformation, so every rule
     * (centered or natural) follows the penalised objective */
    if (tr->cfg.weight_decay > 0.0f)
        NG_TRY(ng_axpby(be, nw, -tr->cfg.weight_decay, r->W.data, 1.0f, tr->dW.data));
    if (tr->cfg.optimizer == NG_RBM_OPT_CENTERING) {
        /* Offsets track the data means by a moving average (rate nu). */
        float nu = tr->cfg.center_rate;
        NG_TRY(ng_axpby(be, (size_t)nv, nu, tr->mv_d.data, 1.0f - nu, tr->mu_v.data));
        NG_TRY(ng_axpby(be, (size_t)nh, nu, tr->mh_d.data, 1.0f - nu, tr->mu_h.data));
        /* Centered gradient (FANG eq. 17-20): dW~ = dW - db mu_v^T - mu_h da^T (the mu mu^T
         * terms cancel between data and model), da~ = da, db~ = db. SGD on the centered
         * parameters a~ = a + W^T mu_h, b~ = b + W mu_v, W~ = W, mapped back to (a, b, W):
         *   delta W = dW~,  delta a = da - dW~^T mu_h,  delta b = db - dW~ mu_v. */
        NG_TRY(ng_gemm(be, 0, 1, nh, nv, 1, -1.0f, tr->db.data, nh, tr->mu_v.data, nv, 1.0f, tr->dW.data, nh));
        NG_TRY(ng_gemm(be, 0, 1, nh, nv, 1, -1.0f, tr->mu_h.data, nh, tr->da.data, nv, 1.0f, tr->dW.data, nh));
        NG_TRY(ng_gemv(be, 1, nh, nv, -1.0f, tr->dW.data, nh, tr->mu_h.data, 1.0f, tr->da.data));
        NG_TRY(ng_gemv(be, 0, nh, nv, -1.0f, tr->dW.data, nh, tr->mu_v.data, 1.0f, tr->db.data));
    } else if (tr->cfg.optimizer == NG_RBM_OPT_FANG) {
        NG_TRY(ng_fang_direction(tr));
    }
    /* velocity = momentum * velocity + lr * direction;  theta += velocity */
    NG_TRY(ng_axpby(be, nw, (float)lr, tr->dW.data, mom, tr->vel_W.data));
    NG_TRY(ng_axpby(be, (size_t)nv, (float)lr, tr->da.data, mom, tr->vel_a.data));
    NG_TRY(ng_axpby(be, (size_t)nh, (float)lr, tr->db.data, mom, tr->vel_b.data));
    NG_TRY(ng_axpby(be, nw, 1.0f, tr->vel_W.data, 1.0f, r->W.data));
    NG_TRY(ng_axpby(be, (size_t)nv, 1.0f, tr->vel_a.data, 1.0f, r->a.data));
    NG_TRY(ng_axpby(be, (size_t)nh, 1.0f, tr->vel_b.data, 1.0f, r->b.data));
    return NG_OK;
}

ng_status ng_rbm_trainer_step(ng_rbm_trainer *tr, ng_rbm_stats *stats) {
    ng_backend *be = tr->be;
    ng_rbm *r = tr->rbm;
    int nv = r->n_visible, nh = r->n_hidden, m = tr->cfg.batch;
    double lr = ng_rbm_trainer_lr(tr);
    float g = 0.0f, u = 0.0f;

    ng_range_push("rbm step");
    NG_TRY(ng_rbm_trainer_gradient(tr));
    if (stats) {
        float e = 0.0f;
        NG_TRY(ng_nrm2(be, (size_t)nv * nh, tr->dW.data, &g));
        /* reconstruction: vr = p(v | h ~ p(h | vd)); hd holds p(h | vd), draw into hs */
        /* monitor draws come from their own stream indexed by t, so logging more or less often
         * does not change the training trajectory (resume stays bit-exact) */
        uint64_t mkey = ng_rng_stream_key(tr->cfg.seed, NG_RNG_MONITOR);
        NG_TRY(ng_bernoulli(be, (size_t)nh * m, tr->hd.data, tr->hs.data, mkey, 2 * tr->t));
        NG_TRY(ng_gemm(be, 1, 0, nv, m, nh, 1.0f, r->W.data, nh, tr->hs.data, nh, 0.0f, tr->vr.data, nv));
        NG_TRY(ng_gibbs_sample(be, nv, m, tr->vr.data, nv, r->a.data, 1.0f, NULL, tr->vr.data, nv,
                               NULL, nv, mkey, 2 * tr->t + 1));
        NG_TRY(ng_axpby(be, (size_t)nv * m, 1.0f, tr->vd.data, -1.0f, tr->vr.data));
        NG_TRY(ng_nrm2(be, (size_t)nv * m, tr->vr.data, &e));
        stats->recon_error = (double)e * (double)e / (double)m;
        stats->grad_norm = g;
        stats->lr = lr;
    }
    ng_range_push("update");
    NG_TRY(apply_update(tr, lr));
    ng_range_pop();
    if (stats) {
        NG_TRY(ng_nrm2(be, (size_t)nv * nh, tr->vel_W.data, &u));
        stats->update_norm = u;
        if (!isfinite(stats->recon_error) || !isfinite(u) || !isfinite(g)) {
            ng_range_pop();
            return ng_error(NG_ERR_NUMERIC,
                            "rbm step %llu: non-finite statistics (|grad| %g, |update| %g): lower --lr",
                            (unsigned long long)tr->t, (double)g, (double)u);
        }
    }
    tr->t++;
    ng_range_pop();
    return NG_OK;
}
