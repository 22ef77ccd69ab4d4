/* net.c: feed-forward networks of dense layers (natgrad/net.h): forward and backward passes, the
 * R-operator forward pass (J v), Gauss-Newton, Fisher and Hessian-vector products, evaluation,
 * initialisation and checkpoint entries. Everything runs on the model's backend through the op
 * table (natgrad/backend.h) and gemm; nothing here touches device memory from the host.
 *
 * Buffers (per chunk of at most `chunk` cases, allocated once):
 *   A[l]   (d_l + 1, chunk)  a-bar_l: activations with a last row of ones (A[0] = the input copy)
 *   Zo     (d_L, chunk)      output pre-activation z_L (the loss needs it)
 *   D[l]   (d_l, chunk)      dL/dz_l (dL/du_l for batch-normalised layers)
 *   RZ[l], RA[l]             R{z_l} (R{u_l} with batch norm) and R{a_l} (RA with a row of zeros)
 *   RD[l]                    R{dL/dz_l}
 *   T      (d_L, chunk)      targets (sampled or copied), and per-column objective / error
 * Batch-normalised layer l also keeps XH[l] (d_l, chunk) = xhat and per-row mean, rstd and their
 * running averages (the model's `bn` state arena).
 *
 * The parameter vector of layer l is [W_l b_l] (one (d_l, d_{l-1}+1) matrix, packed), or W_l,
 * gamma_l, beta_l with batch normalisation. A vector v of the same layout is cut into the same
 * views by offset (view_of). Must not: allocate after create, print. */
#include "natgrad/net.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natgrad/comm.h"
#include "natgrad/graph.h"
#include "natgrad/log.h"
#include "natgrad/rng.h"
#include "natgrad/whiten.h"

#include "bn_merge.h"

#define L_MAX NG_NET_MAX_LAYERS

typedef struct net {
    ng_model base;
    ng_net_config cfg;
    int L;
    int d[L_MAX + 1];
    /* parameters (value / gradient); W[l] is (d_l, d_{l-1}); b[l] follows it (no bn) */
    ng_tensor W[L_MAX + 1], b[L_MAX + 1], gamma[L_MAX + 1], beta[L_MAX + 1];
    ng_tensor gW[L_MAX + 1], gb[L_MAX + 1], ggamma[L_MAX + 1], gbeta[L_MAX + 1];
    int idxW[L_MAX + 1];  /* arena index of W_l (the others follow) */
    /* workspace */
    ng_arena ws;
    ng_tensor A[L_MAX + 1], D[L_MAX + 1], RZ[L_MAX + 1], RA[L_MAX + 1], RD[L_MAX + 1];
    ng_tensor XH[L_MAX + 1], mean[L_MAX + 1], rstd[L_MAX + 1], tmp[L_MAX + 1];
    /* batch norm, R-operator and H v: R{z} before normalisation, R{xhat}, two scratch matrices and
     * six per-row vectors */
    ng_tensor RZP[L_MAX + 1], RXH[L_MAX + 1], BX1[L_MAX + 1], BX2[L_MAX + 1], BV[L_MAX + 1];
    ng_tensor Zo, T, obj, err, acc; /* acc: (4) objective sum, error sum of the last gradient */
    ng_arena bn;                    /* running mean and rstd per batch-normalised layer */
    ng_tensor rmean[L_MAX + 1], rrstd[L_MAX + 1];
    /* whitened layers (cfg.whiten): state UhT[l] (d_{l-1} + 1, d_{l-1}) = [U^T; -(U c)^T] and
     * c[l] (d_{l-1}) of layer l's input; AW[l] (d_l + 1, chunk) = [U_{l+1} (a_l - c); 1], RAW[l] =
     * U R{a_l} (last row 0), DW[l] (d_l, chunk) scratch of the backward passes */
    ng_arena wst, wws;
    ng_tensor UhT[L_MAX + 1], wc[L_MAX + 1];
    /* canonical form (cfg.whiten = 2): K[l] (d_{l-1} + 1, d_{l-1} + 1) = U-tilde^T U-tilde with
     * U-tilde = [U, -U c; 0, 1]; the gradient of W reads AW[l-1] = K a-bar instead of a-bar.
     * w_identity: U = I, c = 0 everywhere (no refresh since creation) */
    ng_tensor K[L_MAX + 1];
    int w_identity;
    ng_tensor AW[L_MAX + 1], RAW[L_MAX + 1], DW[L_MAX + 1];
    ng_tensor S1, S2, S3, dc;       /* refresh scratch: (dmax, dmax) x 2, (dmax, dmax), (dmax) */
    ng_whiten *wh;                  /* [1..L]: statistics of layer l's input (d_{l-1}) */
    /* the current batch */
    ng_tensor x, y;
    ng_tensor x0, y0; /* the batch as set (x, y may be a prefix of it: ng_net_batch_prefix) */
    int have_y, have_batch, m;
    /* the training-mode forward pass of the fwd_cols cases whose first input column is at fwd_x
     * (a chunk of the batch) is in the buffers; NULL: none (invalidated by a new batch, an
     * evaluation, a parameter load or a whitening refresh) */
    const float *fwd_x;
    int fwd_cols;
    int d_valid;      /* D[] holds a backward pass of the batch in the buffers */
    double last_obj, last_err; /* host copies after ng_net_batch_loss */
    /* several ranks (ng_net_set_comm): training-mode batch norm over every rank's columns; the
     * merged count and this rank's share of it per layer, host scratch (dmax x 4) */
    struct ng_comm *comm;
    double bn_tot[L_MAX + 1], bn_w[L_MAX + 1];
    int dmax_bn;
    double *hbn;
    float *hbf;
    /* the NCCL communicator (bn_dev): the merge on the device (the bn_merge op), nothing read by the
     * host, so a CUDA graph holds it. bnd: float64 device scratch, the merged count of each layer's
     * last forward pass (L_MAX + 1), then acc (2 dmax + 1) and acc2 (dmax); bn_cnt: this rank's */
    double *bnd;
    int bn_cnt[L_MAX + 1];
    int bn_cols; /* the cases of the last synchronised forward pass (bn_cnt[l] of every batch-norm layer):
                  * graph pass state, as a replayed pass does not set bn_cnt on the host */
    int last_chunk;   /* the backward pass of the gradient's last chunk runs: report layers (grad_ready) */
} net;

static const struct ng_model_i net_iface;

static net *as_net(ng_model *m) { return (net *)(void *)m; }
static const net *as_cnet(const ng_model *m) { return (const net *)(const void *)m; }

/* ---- names, presets, specs --------------------------------------------------------------- */

static const char *const act_names[NG_ACT_COUNT] = {"linear", "logistic", "tanh", "relu", "softmax"};
static const char *const loss_names[NG_LOSS_COUNT] = {"squared", "bernoulli", "categorical"};

const char *ng_act_name(int act) { return act >= 0 && act < NG_ACT_COUNT ? act_names[act] : "?"; }
const char *ng_loss_name(int loss) { return loss >= 0 && loss < NG_LOSS_COUNT ? loss_names[loss] : "?"; }

int ng_act_parse(const char *s) {
    int i;
    for (i = 0; i < NG_ACT_COUNT; i++)
        if (strcmp(s, act_names[i]) == 0) return i;
    if (strcmp(s, "sigmoid") == 0) return NG_ACT_LOGISTIC;
    return -1;
}

int ng_loss_parse(const char *s) {
    int i;
    for (i = 0; i < NG_LOSS_COUNT; i++)
        if (strcmp(s, loss_names[i]) == 0) return i;
    if (strcmp(s, "mse") == 0 || strcmp(s, "gaussian") == 0) return NG_LOSS_SQUARED;
    if (strcmp(s, "cross-entropy") == 0 || strcmp(s, "logistic") == 0) return NG_LOSS_BERNOULLI;
    if (strcmp(s, "softmax-ce") == 0 || strcmp(s, "softmax") == 0) return NG_LOSS_CATEGORICAL;
    return -1;
}

/* the output nonlinearity of each matching loss */
static int loss_act(int loss) {
    return loss == NG_LOSS_SQUARED ? NG_ACT_LINEAR : loss == NG_LOSS_BERNOULLI ? NG_ACT_LOGISTIC : NG_ACT_SOFTMAX;
}

void ng_net_config_default(ng_net_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->loss = NG_LOSS_BERNOULLI;
    cfg->target = NG_NET_TARGET_INPUT;
    cfg->chunk = 1000;
    cfg->bn_eps = 1e-5f;
    cfg->bn_momentum = 0.1f;
    cfg->init = NG_INIT_SPARSE;
    cfg->sparse_count = 15;
    cfg->init_scale = 0.01f;
    cfg->seed = 1;
    cfg->fisher = NG_FISHER_EXACT;
    cfg->fisher_samples = 1;
}

ng_status ng_net_parse_spec(const char *spec, int hidden_act, int out_act, ng_net_config *cfg) {
    char buf[1024], *save = NULL, *tok;
    int n = 0, explicit_act[L_MAX + 1], i;
    if (!spec || !*spec) return ng_error(NG_ERR_INVALID_ARG, "layer spec is empty (example: 784-1000-500-250-30:linear-250-500-1000-784)");
    if (strlen(spec) >= sizeof buf) return ng_error(NG_ERR_INVALID_ARG, "layer spec is longer than %zu characters", sizeof buf - 1);
    strcpy(buf, spec);
    for (tok = strtok_r(buf, "-", &save); tok; tok = strtok_r(NULL, "-", &save)) {
        char *end, *colon, *plus;
        long v;
        int bn = 0, act = -1;
        if (n > L_MAX)
            return ng_error(NG_ERR_INVALID_ARG, "layer spec '%s': more than %d layers", spec, L_MAX);
        plus = strstr(tok, "+bn");
        if (plus) {
            if (strcmp(plus, "+bn") != 0)
                return ng_error(NG_ERR_INVALID_ARG, "layer spec '%s': '+bn' must end token '%s'", spec, tok);
            *plus = 0;
            bn = 1;
        }
        colon = strchr(tok, ':');
        if (colon) {
            *colon = 0;
            act = ng_act_parse(colon + 1);
            if (act < 0)
                return ng_error(NG_ERR_INVALID_ARG, "layer spec '%s': unknown activation '%s' (linear, logistic, tanh, relu, softmax)", spec, colon + 1);
        }
        v = strtol(tok, &end, 10);
        if (end == tok || *end || v < 1 || v > 1000000)
            return ng_error(NG_ERR_INVALID_ARG, "layer spec '%s': '%s' is not a layer size in 1..1000000", spec, tok);
        if (n == 0 && (act >= 0 || bn))
            return ng_error(NG_ERR_INVALID_ARG, "layer spec '%s': the input layer (%ld) takes no activation or batch norm", spec, v);
        cfg->dims[n] = (int)v;
        if (n > 0) {
            cfg->bn[n - 1] = bn;
            explicit_act[n - 1] = act;
        }
        n++;
    }
    if (n < 2) return ng_error(NG_ERR_INVALID_ARG, "layer spec '%s': needs at least an input and an output size", spec);
    cfg->n_layers = n - 1;
    for (i = 0; i < cfg->n_layers; i++)
        cfg->act[i] = explicit_act[i] >= 0 ? explicit_act[i] : (i == cfg->n_layers - 1 ? out_act : hidden_act);
    for (i = cfg->n_layers; i < L_MAX; i++) cfg->act[i] = 0, cfg->bn[i] = 0;
    return NG_OK;
}

const char *const ng_net_preset_names[] = {"mnist-autoencoder", "curves-autoencoder", "faces-autoencoder", NULL};

ng_status ng_net_preset(const char *name, ng_net_config *cfg) {
    /* Hinton & Salakhutdinov 2006, as used by Martens 2010 and the K-FAC paper: logistic hidden
     * units, a linear code layer, mirrored decoder */
    if (strcmp(name, "mnist-autoencoder") == 0) {
        cfg->loss = NG_LOSS_BERNOULLI;
        return ng_net_parse_spec("784-1000-500-250-30:linear-250-500-1000-784", NG_ACT_LOGISTIC, NG_ACT_LOGISTIC, cfg);
    }
    if (strcmp(name, "curves-autoencoder") == 0) {
        cfg->loss = NG_LOSS_BERNOULLI;
        return ng_net_parse_spec("784-400-200-100-50-25-6:linear-25-50-100-200-400-784", NG_ACT_LOGISTIC, NG_ACT_LOGISTIC, cfg);
    }
    if (strcmp(name, "faces-autoencoder") == 0) {
        cfg->loss = NG_LOSS_SQUARED;
        return ng_net_parse_spec("625-2000-1000-500-30:linear-500-1000-2000-625", NG_ACT_LOGISTIC, NG_ACT_LINEAR, cfg);
    }
    return ng_error(NG_ERR_INVALID_ARG, "unknown network preset '%s' (mnist-autoencoder, curves-autoencoder, faces-autoencoder)", name);
}

const char *ng_net_spec_string(const ng_net_config *cfg, char *buf, size_t len) {
    size_t o = 0;
    int l;
    if (!len) return buf;
    buf[0] = 0;
    o += (size_t)snprintf(buf, len, "%d", cfg->dims[0]);
    for (l = 1; l <= cfg->n_layers && o < len; l++)
        o += (size_t)snprintf(buf + o, len - o, "-%d:%s%s", cfg->dims[l], ng_act_name(cfg->act[l - 1]),
                              cfg->bn[l - 1] ? "+bn" : "");
    return buf;
}

ng_status ng_net_config_check(const ng_net_config *cfg) {
    int l, L = cfg->n_layers;
    if (L < 1 || L > L_MAX) return ng_error(NG_ERR_INVALID_ARG, "network: %d layers (1..%d)", L, L_MAX);
    for (l = 0; l <= L; l++)
        if (cfg->dims[l] < 1 || cfg->dims[l] > 1000000)
            return ng_error(NG_ERR_INVALID_ARG, "network: layer %d has %d units (1..1000000)", l, cfg->dims[l]);
    if (cfg->loss < 0 || cfg->loss >= NG_LOSS_COUNT) return ng_error(NG_ERR_INVALID_ARG, "network: unknown loss %d", cfg->loss);
    for (l = 0; l < L; l++) {
        if (cfg->act[l] < 0 || cfg->act[l] >= NG_ACT_COUNT)
            return ng_error(NG_ERR_INVALID_ARG, "network: layer %d has unknown activation %d", l + 1, cfg->act[l]);
        if (cfg->act[l] == NG_ACT_SOFTMAX && l != L - 1)
            return ng_error(NG_ERR_INVALID_ARG, "network: softmax in hidden layer %d (softmax is an output nonlinearity)", l + 1);
        if (cfg->bn[l] && l == L - 1)
            return ng_error(NG_ERR_INVALID_ARG, "network: batch normalisation in the output layer %d (hidden layers only)", l + 1);
    }
    if (cfg->act[L - 1] != loss_act(cfg->loss))
        return ng_error(NG_ERR_INVALID_ARG,
                        "network: output layer %d is %s but the %s loss needs %s outputs (matching loss pairs: linear + squared, logistic + bernoulli, softmax + categorical)",
                        L, ng_act_name(cfg->act[L - 1]), ng_loss_name(cfg->loss), ng_act_name(loss_act(cfg->loss)));
    if (cfg->loss == NG_LOSS_CATEGORICAL && cfg->dims[L] < 2)
        return ng_error(NG_ERR_INVALID_ARG, "network: a softmax output needs at least 2 classes, layer %d has %d", L, cfg->dims[L]);
    if (cfg->target == NG_NET_TARGET_INPUT && cfg->dims[L] != cfg->dims[0])
        return ng_error(NG_ERR_INVALID_ARG, "network: an autoencoder's output layer %d has %d units but its input has %d",
                        L, cfg->dims[L], cfg->dims[0]);
    if (cfg->target != NG_NET_TARGET_INPUT && cfg->target != NG_NET_TARGET_ROWS)
        return ng_error(NG_ERR_INVALID_ARG, "network: unknown target mode %d", cfg->target);
    if (cfg->chunk < 1 || cfg->chunk > (1 << 24)) return ng_error(NG_ERR_INVALID_ARG, "network: chunk %d (1..16777216)", cfg->chunk);
    if (!(cfg->bn_eps > 0.0f && cfg->bn_eps < 1.0f)) return ng_error(NG_ERR_INVALID_ARG, "network: bn-eps %g must be in (0, 1)", (double)cfg->bn_eps);
    if (!(cfg->bn_momentum > 0.0f && cfg->bn_momentum <= 1.0f))
        return ng_error(NG_ERR_INVALID_ARG, "network: bn-momentum %g must be in (0, 1]", (double)cfg->bn_momentum);
    if (cfg->init < NG_INIT_SPARSE || cfg->init > NG_INIT_GLOROT) return ng_error(NG_ERR_INVALID_ARG, "network: unknown init %d", cfg->init);
    if (cfg->sparse_count < 1) return ng_error(NG_ERR_INVALID_ARG, "network: sparse-count %d must be >= 1", cfg->sparse_count);
    if (!(cfg->init_scale > 0.0f && cfg->init_scale < 1e6f))
        return ng_error(NG_ERR_INVALID_ARG, "network: init-scale %g must be positive and finite", (double)cfg->init_scale);
    if (cfg->fisher < NG_FISHER_EXACT || cfg->fisher > NG_FISHER_EMPIRICAL)
        return ng_error(NG_ERR_INVALID_ARG, "network: unknown Fisher mode %d", cfg->fisher);
    if (cfg->whiten < 0 || cfg->whiten > 2)
        return ng_error(NG_ERR_INVALID_ARG, "network: whiten %d (0: plain, 1: whitened coordinates V, d; 2: PRONG's canonical form)", cfg->whiten);
    if (cfg->fisher_samples < 1 || cfg->fisher_samples > 100000)
        return ng_error(NG_ERR_INVALID_ARG, "network: fisher-samples %d (1..100000)", cfg->fisher_samples);
    return NG_OK;
}

/* ---- creation ----------------------------------------------------------------------------- */

static ng_status init_params(net *n) {
    const ng_net_config *c = &n->cfg;
    uint64_t key = ng_rng_stream_key(c->seed, NG_RNG_INIT_WEIGHTS);
    int l;
    for (l = 1; l <= n->L; l++) {
        int rows = n->d[l], cols = n->d[l - 1], bn = c->bn[l - 1];
        size_t count = (size_t)rows * cols, i;
        float *w = (float *)calloc(count + (size_t)rows, sizeof(float));
        int *perm = NULL;
        if (!w) return ng_error(NG_ERR_OOM, "network: no host memory to initialise layer %d", l);
        if (c->init == NG_INIT_SPARSE) {
            int k = c->sparse_count < cols ? c->sparse_count : cols, r;
            perm = (int *)malloc((size_t)cols * sizeof(int));
            if (!perm) {
                free(w);
                return ng_error(NG_ERR_OOM, "network: no host memory to initialise layer %d", l);
            }
            /* unit r: the first k entries of a permutation of its inputs (stream step 2 l - 1,
             * row r), weights N(0, 1) (step 2 l, element r * k + j) */
            for (r = 0; r < rows; r++) {
                int j;
                ng_rng_permutation(perm, cols, ng_rng_stream_key_rank(c->seed, NG_RNG_INIT_WEIGHTS, (uint32_t)(1000 + l)), (uint64_t)r);
                for (j = 0; j < k; j++)
                    w[(size_t)r + (size_t)perm[j] * rows] = (float)ng_rng_normal(key, (uint64_t)(2 * l), (uint64_t)r * (uint64_t)k + (uint64_t)j);
            }
        } else if (c->init == NG_INIT_GAUSSIAN) {
            ng_rng_fill_normal(w, count, 0.0f, c->init_scale, key, (uint64_t)(2 * l));
        } else {
            double lim = sqrt(6.0 / (double)(rows + cols));
            for (i = 0; i < count; i++)
                w[i] = (float)(lim * (2.0 * (double)ng_rng_uniform(key, (uint64_t)(2 * l), i) - 1.0));
        }
        free(perm);
        NG_TRY(ng_tensor_set(n->base.be, &n->W[l], w));
        if (bn) {
            for (i = 0; i < (size_t)rows; i++) w[i] = 1.0f;
            NG_TRY(ng_tensor_set(n->base.be, &n->gamma[l], w));
            NG_TRY(ng_fill(n->base.be, (size_t)rows, 0.0f, n->beta[l].data));
            NG_TRY(ng_fill(n->base.be, (size_t)rows, 0.0f, n->rmean[l].data));
            NG_TRY(ng_fill(n->base.be, (size_t)rows, 1.0f, n->rrstd[l].data));
        } else {
            NG_TRY(ng_fill(n->base.be, (size_t)rows, 0.0f, n->b[l].data));
        }
        free(w);
    }
    return NG_OK;
}

static ng_status reserve(ng_arena *a, const char *fmt, int l, int rows, int cols, ng_tensor *t) {
    char name[48];
    snprintf(name, sizeof name, fmt, l);
    return ng_arena_reserve(a, name, rows, cols, t);
}

/* State (U = I, c = 0: the canonical network), workspace and statistics of whitened layers. */
static ng_status whiten_create(net *n) {
    ng_backend *be = n->base.be;
    int l, L = n->L, ch = n->cfg.chunk, dmax = 1;
    ng_status s = NG_OK;
    for (l = 0; l <= L; l++) dmax = n->d[l] > dmax ? n->d[l] : dmax;
    ng_arena_begin(&n->wst, be, "whitening state");
    for (l = 1; l <= L && s == NG_OK; l++) {
        s = reserve(&n->wst, "whiten_UhT%d", l, n->d[l - 1] + 1, n->d[l - 1], &n->UhT[l]);
        if (s == NG_OK) s = reserve(&n->wst, "whiten_c%d", l, n->d[l - 1], 1, &n->wc[l]);
        if (s == NG_OK && n->cfg.whiten == 2) s = reserve(&n->wst, "whiten_K%d", l, n->d[l - 1] + 1, n->d[l - 1] + 1, &n->K[l]);
    }
    if (s == NG_OK) s = ng_arena_commit(&n->wst);
    ng_arena_begin(&n->wws, be, "whitening workspace");
    for (l = 0; l < L && s == NG_OK; l++) {
        s = reserve(&n->wws, "AW%d", l, n->d[l] + 1, ch, &n->AW[l]);
        if (s == NG_OK) s = reserve(&n->wws, "RAW%d", l, n->d[l] + 1, ch, &n->RAW[l]);
        if (s == NG_OK) s = reserve(&n->wws, "DW%d", l, n->d[l], ch, &n->DW[l]);
    }
    if (s == NG_OK) s = ng_arena_reserve(&n->wws, "S1", dmax, dmax, &n->S1);
    if (s == NG_OK) s = ng_arena_reserve(&n->wws, "S2", dmax, dmax, &n->S2);
    if (s == NG_OK) s = ng_arena_reserve(&n->wws, "S3", dmax, dmax, &n->S3);
    if (s == NG_OK) s = ng_arena_reserve(&n->wws, "dc", dmax, 1, &n->dc);
    if (s == NG_OK) s = ng_arena_commit(&n->wws);
    if (s != NG_OK) return s;
    n->wh = (ng_whiten *)calloc((size_t)L + 1, sizeof(ng_whiten));
    if (!n->wh) return ng_error(NG_ERR_OOM, "network: out of host memory for the whitening statistics");
    for (l = 1; l <= L; l++) {
        int d = n->d[l - 1], i;
        float *h = (float *)calloc((size_t)(d + 1) * (size_t)d, sizeof(float));
        if (!h) return ng_error(NG_ERR_OOM, "network: out of host memory for the whitening state");
        for (i = 0; i < d; i++) h[i + (size_t)(d + 1) * i] = 1.0f;
        s = ng_tensor_set(be, &n->UhT[l], h);
        free(h);
        if (s == NG_OK && n->cfg.whiten == 2) {
            /* K = I */
            float *k = (float *)calloc((size_t)(d + 1) * (size_t)(d + 1), sizeof(float));
            if (!k) return ng_error(NG_ERR_OOM, "network: out of host memory for the whitening state");
            for (i = 0; i <= d; i++) k[i + (size_t)(d + 1) * i] = 1.0f;
            s = ng_tensor_set(be, &n->K[l], k);
            free(k);
        }
        if (s == NG_OK) s = ng_fill(be, (size_t)d, 0.0f, n->wc[l].data);
        if (s == NG_OK) s = ng_whiten_init(be, d, ch, &n->wh[l]);
        if (s != NG_OK) return s;
    }
    n->w_identity = 1;
    return NG_OK;
}

ng_status ng_net_create(ng_backend *be, const ng_net_config *cfg, ng_model **out) {
    net *n;
    ng_status s = NG_OK;
    int l, L, ch;
    *out = NULL;
    NG_TRY(ng_net_config_check(cfg));
    n = (net *)calloc(1, sizeof *n);
    if (!n) return ng_error(NG_ERR_OOM, "network: out of host memory");
    n->cfg = *cfg;
    L = n->L = cfg->n_layers;
    for (l = 0; l <= L; l++) n->d[l] = cfg->dims[l];
    ch = cfg->chunk;
    ng_model_begin(&n->base, &net_iface, be);
    for (l = 1; l <= L && s == NG_OK; l++) {
        char name[32];
        int dw[2] = {n->d[l], n->d[l - 1]}, dv[1] = {n->d[l]};
        n->idxW[l] = n->base.params.count;
        snprintf(name, sizeof name, "W%d", l);
        s = ng_model_add_param(&n->base, name, 2, dw, 1, &n->W[l], &n->gW[l]);
        if (s != NG_OK) break;
        if (cfg->bn[l - 1]) {
            snprintf(name, sizeof name, "gamma%d", l);
            s = ng_model_add_param(&n->base, name, 1, dv, 1, &n->gamma[l], &n->ggamma[l]);
            snprintf(name, sizeof name, "beta%d", l);
            if (s == NG_OK) s = ng_model_add_param(&n->base, name, 1, dv, 1, &n->beta[l], &n->gbeta[l]);
        } else {
            snprintf(name, sizeof name, "b%d", l);
            s = ng_model_add_param(&n->base, name, 1, dv, 1, &n->b[l], &n->gb[l]);
        }
    }
    if (s == NG_OK) s = ng_model_commit(&n->base);
    /* workspace */
    ng_arena_begin(&n->ws, be, "network workspace");
    for (l = 0; l <= L && s == NG_OK; l++) {
        s = reserve(&n->ws, "A%d", l, n->d[l] + 1, ch, &n->A[l]);
        if (s == NG_OK) s = reserve(&n->ws, "D%d", l, n->d[l], ch, &n->D[l]);
        if (s == NG_OK) s = reserve(&n->ws, "RZ%d", l, n->d[l], ch, &n->RZ[l]);
        if (s == NG_OK) s = reserve(&n->ws, "RA%d", l, n->d[l] + 1, ch, &n->RA[l]);
        if (s == NG_OK) s = reserve(&n->ws, "RD%d", l, n->d[l], ch, &n->RD[l]);
        if (s == NG_OK && l >= 1 && cfg->bn[l - 1]) {
            s = reserve(&n->ws, "XH%d", l, n->d[l], ch, &n->XH[l]);
            if (s == NG_OK) s = reserve(&n->ws, "TMP%d", l, n->d[l], ch, &n->tmp[l]);
            if (s == NG_OK) s = reserve(&n->ws, "RZP%d", l, n->d[l], ch, &n->RZP[l]);
            if (s == NG_OK) s = reserve(&n->ws, "RXH%d", l, n->d[l], ch, &n->RXH[l]);
            if (s == NG_OK) s = reserve(&n->ws, "BX1%d", l, n->d[l], ch, &n->BX1[l]);
            if (s == NG_OK) s = reserve(&n->ws, "BX2%d", l, n->d[l], ch, &n->BX2[l]);
            if (s == NG_OK) s = reserve(&n->ws, "BV%d", l, n->d[l], 6, &n->BV[l]);
            if (s == NG_OK) s = reserve(&n->ws, "mean%d", l, n->d[l], 1, &n->mean[l]);
            if (s == NG_OK) s = reserve(&n->ws, "rstd%d", l, n->d[l], 1, &n->rstd[l]);
        }
    }
    if (s == NG_OK) s = ng_arena_reserve(&n->ws, "Zo", n->d[L], ch, &n->Zo);
    if (s == NG_OK) s = ng_arena_reserve(&n->ws, "T", n->d[L], ch, &n->T);
    if (s == NG_OK) s = ng_arena_reserve(&n->ws, "obj", ch, 1, &n->obj);
    if (s == NG_OK) s = ng_arena_reserve(&n->ws, "err", ch, 1, &n->err);
    if (s == NG_OK) s = ng_arena_reserve(&n->ws, "acc", 4, 1, &n->acc);
    if (s == NG_OK) s = ng_arena_commit(&n->ws);
    ng_arena_begin(&n->bn, be, "batch-norm statistics");
    for (l = 1; l <= L && s == NG_OK; l++)
        if (cfg->bn[l - 1]) {
            s = reserve(&n->bn, "running_mean%d", l, n->d[l], 1, &n->rmean[l]);
            if (s == NG_OK) s = reserve(&n->bn, "running_rstd%d", l, n->d[l], 1, &n->rrstd[l]);
        }
    if (s == NG_OK) s = ng_arena_commit(&n->bn);
    if (s == NG_OK && cfg->whiten) s = whiten_create(n);
    /* rows of ones under every activation buffer (the gemms never write them) */
    for (l = 0; l <= L && s == NG_OK; l++) {
        int k2;
        for (k2 = 0; k2 < (cfg->whiten && l < L ? 2 : 1) && s == NG_OK; k2++) {
            ng_tensor *tA = k2 ? &n->AW[l] : &n->A[l];
            ng_op_args a = {.op = NG_OP_ACT_FORWARD};
            a.act_forward.rows = 1;
            a.act_forward.cols = ch;
            a.act_forward.act = NG_ACT_LINEAR;
            a.act_forward.z = tA->data + n->d[l]; /* any finite values: scale 0 below */
            a.act_forward.ldz = tA->ld;
            a.act_forward.a = tA->data + n->d[l];
            a.act_forward.lda = tA->ld;
            {
                /* a = 0 * z + 1 via scale and bias vectors of one element held in acc */
                float one_zero[2] = {0.0f, 1.0f};
                s = ng_set(be, n->acc.data, one_zero, sizeof one_zero);
                a.act_forward.scale = n->acc.data;
                a.act_forward.bias = n->acc.data + 1;
            }
            if (s == NG_OK) s = ng_run_op(be, &a);
        }
    }
    if (s == NG_OK) s = ng_fill(be, 4, 0.0f, n->acc.data);
    if (s == NG_OK) s = init_params(n);
    if (s != NG_OK) {
        ng_net_free(&n->base);
        return s;
    }
    *out = &n->base;
    return NG_OK;
}

static void net_destroy(ng_model *m) {
    net *n = as_net(m);
    ng_arena_free(&n->ws);
    ng_arena_free(&n->bn);
    ng_arena_free(&n->wst);
    ng_arena_free(&n->wws);
    if (n->wh) {
        int l;
        for (l = 1; l <= n->L; l++) ng_whiten_free(&n->wh[l]);
        free(n->wh);
    }
    free(n->hbn);
    free(n->hbf);
    if (n->bnd) ng_free(n->base.be, n->bnd);
}

void ng_net_free(ng_model *m) {
    if (!m) return;
    ng_model_release(m);
    free(m);
}

const ng_net_config *ng_net_config_of(const ng_model *m) { return &as_cnet(m)->cfg; }

int ng_net_batch_rows(const ng_model *m) {
    const net *n = as_cnet(m);
    return n->cfg.target == NG_NET_TARGET_INPUT ? n->d[0] : n->d[0] + n->d[n->L];
}

/* ---- views ------------------------------------------------------------------------------- */

/* Pointer of parameter i of the arena layout inside the flat vector v. */
static float *view_ptr(const net *n, const ng_tensor *v, int i) {
    return (float *)((char *)v->ptr + n->base.params.entries[i].offset);
}
static int has_bn(const net *n, int l) { return n->cfg.bn[l - 1]; }

/* The input of layer l as its gemm reads it: a-bar_{l-1}, or [U (a_{l-1} - c); 1] when whitened;
 * and its R{} counterpart. */
static const ng_tensor *lin(const net *n, int l) { return n->cfg.whiten == 1 ? &n->AW[l - 1] : &n->A[l - 1]; }
static const ng_tensor *rlin(const net *n, int l) { return n->cfg.whiten == 1 ? &n->RAW[l - 1] : &n->RA[l - 1]; }
/* What the weight gradient of layer l multiplies: lin, or in the canonical form AW[l-1] = K a-bar
 * (computed here), so that the "gradient" is the SGD step of the whitened coordinates mapped to W. */
static ng_status gin(net *n, int l, int cols, const ng_tensor **out) {
    int d = n->d[l - 1];
    if (n->cfg.whiten != 2) {
        *out = lin(n, l);
        return NG_OK;
    }
    NG_TRY(ng_gemm(n->base.be, 0, 0, d + 1, cols, d + 1, 1.0f, n->K[l].data, d + 1, n->A[l - 1].data, n->A[l - 1].ld, 0.0f,
                   n->AW[l - 1].data, n->AW[l - 1].ld));
    *out = &n->AW[l - 1];
    return NG_OK;
}
/* The curvature products and statistics are for the whitened coordinates or plain networks only. */
static ng_status no_canonical(const net *n, const char *what) {
    if (n->cfg.whiten == 2)
        return ng_error(NG_ERR_INVALID_ARG, "network: %s is not available in PRONG's canonical form (whiten = 2: its gradient is "
                        "the whitened SGD direction mapped to W); build the network with whiten = 1 (--prong-form whitened)", what);
    return NG_OK;
}

/* AW[l-1] = [U_l^T; -(U_l c_l)^T]^T a-bar_{l-1} = U_l (a_{l-1} - c_l) (the row of ones stays) */
static ng_status whiten_in(net *n, int l, int cols) {
    int d = n->d[l - 1];
    return ng_gemm(n->base.be, 1, 0, d, cols, d + 1, 1.0f, n->UhT[l].data, d + 1, n->A[l - 1].data, n->A[l - 1].ld,
                   0.0f, n->AW[l - 1].data, n->AW[l - 1].ld);
}
/* RAW[l-1] = U_l R{a_{l-1}} (the centring is constant) */
static ng_status whiten_rin(net *n, int l, int cols) {
    int d = n->d[l - 1];
    return ng_gemm(n->base.be, 1, 0, d, cols, d, 1.0f, n->UhT[l].data, d + 1, n->RA[l - 1].data, n->RA[l - 1].ld,
                   0.0f, n->RAW[l - 1].data, n->RAW[l - 1].ld);
}
/* Back-propagation below layer l: out (d_{l-1}, cols) = W_l^T g, times U_l^T when whitened
 * (alpha2, the second term, adds alpha2 A2^T g2 first when A2 is non-NULL: H v's V^T dz). */
static ng_status back_in(net *n, int l, int cols, const float *g, int ldg, const float *A2, const float *g2, int ldg2,
                         float *out, int ldo) {
    ng_backend *be = n->base.be;
    int dl = n->d[l], dp = n->d[l - 1];
    float *t = n->cfg.whiten == 1 ? n->DW[l - 1].data : out;
    int ldt = n->cfg.whiten == 1 ? n->DW[l - 1].ld : ldo;
    NG_TRY(ng_gemm(be, 1, 0, dp, cols, dl, 1.0f, n->W[l].data, dl, g, ldg, 0.0f, t, ldt));
    if (A2) NG_TRY(ng_gemm(be, 1, 0, dp, cols, dl, 1.0f, A2, dl, g2, ldg2, 1.0f, t, ldt));
    if (n->cfg.whiten != 1) return NG_OK;
    return ng_gemm(be, 0, 0, dp, cols, dp, 1.0f, n->UhT[l].data, dp + 1, t, ldt, 0.0f, out, ldo);
}

static ng_status check_vec(const net *n, const ng_tensor *v, const char *what) {
    if (!v || !v->ptr || v->dtype != NG_F32 || ng_tensor_count(v) != ng_model_size(&n->base) ||
        v->ld != v->rows)
        return ng_error(NG_ERR_INVALID_ARG, "network %s: vector must be a packed float32 tensor of %zu elements (the parameter layout)",
                        what, ng_model_size(&n->base));
    return NG_OK;
}

/* ---- forward ---------------------------------------------------------------------------- */

static ng_status act_fwd(ng_backend *be, int rows, int cols, int act, const float *z, int ldz,
                         const float *scale, const float *bias, float *a, int lda) {
    ng_op_args o = {.op = NG_OP_ACT_FORWARD};
    o.act_forward.rows = rows;
    o.act_forward.cols = cols;
    o.act_forward.act = act;
    o.act_forward.z = z;
    o.act_forward.ldz = ldz;
    o.act_forward.scale = scale;
    o.act_forward.bias = bias;
    o.act_forward.a = a;
    o.act_forward.lda = lda;
    return ng_run_op(be, &o);
}

static ng_status act_bwd(ng_backend *be, int rows, int cols, int act, const float *a, int lda,
                         const float *g, int ldg, const float *h, int ldh, const float *r, int ldr,
                         float *out, int ldo) {
    ng_op_args o = {.op = NG_OP_ACT_BACKWARD};
    o.act_backward.rows = rows;
    o.act_backward.cols = cols;
    o.act_backward.act = act;
    o.act_backward.a = a;
    o.act_backward.lda = lda;
    o.act_backward.g = g;
    o.act_backward.ldg = ldg;
    o.act_backward.h = h;
    o.act_backward.ldh = h ? ldh : 1;
    o.act_backward.r = r;
    o.act_backward.ldr = r ? ldr : 1;
    o.act_backward.out = out;
    o.act_backward.ldo = ldo;
    return ng_run_op(be, &o);
}

/* bn_project: out = s1 s2 P(g) + beta out */
static ng_status bn_proj(ng_backend *be, int rows, int cols, const float *g, int ldg, const float *xh,
                         int ldx, const float *s1, const float *s2, float beta, float *out, int ldo) {
    ng_op_args o = {.op = NG_OP_BN_PROJECT};
    o.bn_project.rows = rows;
    o.bn_project.cols = cols;
    o.bn_project.g = g;
    o.bn_project.ldg = ldg;
    o.bn_project.xhat = xh;
    o.bn_project.ldx = ldx;
    o.bn_project.s1 = s1;
    o.bn_project.s2 = s2;
    o.bn_project.beta = beta;
    o.bn_project.out = out;
    o.bn_project.ldo = ldo;
    return ng_run_op(be, &o);
}

/* Forward pass of cols cases of x (rows d_0 at ld ldx) into A[], Zo (and XH/mean/rstd).
 * mode 0: training (batch statistics; update running averages when update_running);
 * mode 1: inference (running statistics). */
static ng_status forward_fp(net *n, const float *x, int ldx, int cols, int inference,
                            int update_running);
static ng_status forward_layer(net *n, int l, int cols, int inference, int update_running);
static int dist_bn(const net *n);
static int bn_dev(const net *n);
static ng_status bn_sync_moments(net *n, int l, int M);
static ng_status bn_sync_project(net *n, int l, int cols, const float *g, int ldg, int loss_scaled, float *out, int ldo);
static ng_status backward_fp(net *n, int cols, float *g_base, float beta);

/* The forward and backward passes run inside a TF32 scope: with --tf32 on a GPU their gemms use
 * tensor-core TF32 math. Curvature-vector products (ng_net_jvp, _gvp, _fvp, _hvp, _fisher_gram)
 * and everything a preconditioner does run under an FP32 guard (natgrad/backend.h), inside
 * which these scopes do nothing: the passes they make stay FP32. */
static ng_status forward(net *n, const float *x, int ldx, int cols, int inference, int update_running) {
    int saved;
    ng_status s, e;
    NG_TRY(ng_tf32_begin(n->base.be, &saved));
    s = forward_fp(n, x, ldx, cols, inference, update_running);
    e = ng_tf32_end(n->base.be, saved);
    return s != NG_OK ? s : e;
}

static ng_status backward(net *n, int cols, float *g_base, float beta) {
    int saved;
    ng_status s, e;
    NG_TRY(ng_tf32_begin(n->base.be, &saved));
    s = backward_fp(n, cols, g_base, beta);
    e = ng_tf32_end(n->base.be, saved);
    return s != NG_OK ? s : e;
}

static ng_status forward_fp(net *n, const float *x, int ldx, int cols, int inference,
                            int update_running) {
    int l, L = n->L;
    NG_TRY(act_fwd(n->base.be, n->d[0], cols, NG_ACT_LINEAR, x, ldx, NULL, NULL, n->A[0].data, n->A[0].ld));
    for (l = 1; l <= L; l++) NG_TRY(forward_layer(n, l, cols, inference, update_running));
    return NG_OK;
}

/* Layer l of the forward pass: A[l] (or Zo and A[L]) from A[l-1]. */
static ng_status forward_layer(net *n, int l, int cols, int inference, int update_running) {
    ng_backend *be = n->base.be;
    int L = n->L;
    {
        int dl = n->d[l], dp = n->d[l - 1];
        float *zout = l == L ? n->Zo.data : n->A[l].data;
        int ldz = l == L ? n->Zo.ld : n->A[l].ld;
        const ng_tensor *in = lin(n, l);
        if (n->cfg.whiten == 1) NG_TRY(whiten_in(n, l, cols));
        if (!has_bn(n, l)) {
            /* z = [W b] a-bar  (whitened: [V d] [U (a - c); 1], PRONG eq. 6) */
            NG_TRY(ng_gemm(be, 0, 0, dl, cols, dp + 1, 1.0f, n->W[l].data, dl, in->data, in->ld, 0.0f, zout, ldz));
            NG_TRY(act_fwd(be, dl, cols, n->cfg.act[l - 1], zout, ldz, NULL, NULL, n->A[l].data, n->A[l].ld));
        } else {
            ng_op_args o = {.op = NG_OP_BN_NORMALIZE};
            NG_TRY(ng_gemm(be, 0, 0, dl, cols, dp, 1.0f, n->W[l].data, dl, in->data, in->ld, 0.0f, n->XH[l].data,
                           n->XH[l].ld));
            if (!inference) {
                ng_op_args mo = {.op = NG_OP_ROW_MOMENTS};
                mo.row_moments.rows = dl;
                mo.row_moments.cols = cols;
                mo.row_moments.x = n->XH[l].data;
                mo.row_moments.ldx = n->XH[l].ld;
                mo.row_moments.eps = n->cfg.bn_eps;
                mo.row_moments.mean = n->mean[l].data;
                mo.row_moments.rstd = n->rstd[l].data;
                NG_TRY(ng_run_op(be, &mo));
                if (dist_bn(n)) NG_TRY(bn_sync_moments(n, l, cols)); /* over every rank's columns */
                if (update_running) {
                    float mom = n->cfg.bn_momentum;
                    NG_TRY(ng_axpby(be, (size_t)dl, mom, n->mean[l].data, 1.0f - mom, n->rmean[l].data));
                    NG_TRY(ng_axpby(be, (size_t)dl, mom, n->rstd[l].data, 1.0f - mom, n->rrstd[l].data));
                }
            }
            o.bn_normalize.rows = dl;
            o.bn_normalize.cols = cols;
            o.bn_normalize.x = n->XH[l].data;
            o.bn_normalize.ldx = n->XH[l].ld;
            o.bn_normalize.mean = inference ? n->rmean[l].data : n->mean[l].data;
            o.bn_normalize.rstd = inference ? n->rrstd[l].data : n->rstd[l].data;
            o.bn_normalize.xhat = n->XH[l].data;
            o.bn_normalize.ldh = n->XH[l].ld;
            NG_TRY(ng_run_op(be, &o));
            NG_TRY(act_fwd(be, dl, cols, n->cfg.act[l - 1], n->XH[l].data, n->XH[l].ld, n->gamma[l].data,
                           n->beta[l].data, n->A[l].data, n->A[l].ld));
        }
    }
    return NG_OK;
}

/* Targets of the cases [c0, c0 + cols) of the current batch: pointer and ld. */
static const float *targets_of(net *n, const float *x, int ldx, const ng_tensor *y, int c0, int *ld) {
    if (y) {
        *ld = y->ld;
        return y->data + (size_t)c0 * y->ld;
    }
    *ld = ldx;
    if (n->cfg.target == NG_NET_TARGET_INPUT) return x + (size_t)c0 * ldx;
    return x + (size_t)c0 * ldx + n->d[0];
}

/* The output layer's loss op on the chunk: d = scale (y - t) (when d is non-NULL), per-column
 * objective and error into obj and err and their sums into acc (acc_beta: 0 =, 1 +=) when sums is 1. */
static ng_status loss_op_args(net *n, const float *t, int ldt, int cols, float scale, float *d, int ldd, int sums,
                              float acc_beta, ng_op_args *po) {
    int L = n->L;
    ng_op_args o = {.op = NG_OP_LOSS};
    o.loss.rows = n->d[L];
    o.loss.cols = cols;
    o.loss.loss = n->cfg.loss;
    o.loss.z = n->Zo.data;
    o.loss.ldz = n->Zo.ld;
    o.loss.y = n->A[L].data;
    o.loss.ldy = n->A[L].ld;
    o.loss.t = t;
    o.loss.ldt = ldt;
    o.loss.scale = scale;
    o.loss.d = d;
    o.loss.ldd = d ? ldd : 1;
    o.loss.obj = sums ? n->obj.data : NULL;
    o.loss.err = sums ? n->err.data : NULL;
    o.loss.acc = sums ? n->acc.data : NULL;
    o.loss.acc_beta = acc_beta;
    *po = o;
    return NG_OK;
}
static ng_status loss_op(net *n, const float *t, int ldt, int cols, float scale, float *d, int ldd, int sums,
                         float acc_beta) {
    ng_op_args o;
    NG_TRY(loss_op_args(n, t, ldt, cols, scale, d, ldd, sums, acc_beta, &o));
    return ng_run_op(n->base.be, &o);
}

/* Output loss of the chunk: D[L] = scale (y - t), per-column objective and error, accumulated into
 * acc[0], acc[1] (beta: 0 starts the sums) by the same op, one launch on CUDA (the sums in double,
 * the fixed order of ng_loss_lane / ng_loss_sums_finish). */
static ng_status loss_chunk(net *n, const float *t, int ldt, int cols, float scale, float *d, int ldd,
                            float acc_beta) {
    return loss_op(n, t, ldt, cols, scale, d, ldd, 1, acc_beta);
}

/* ---- per-row vector helpers (batched 1 x 1 and 1 x cols products) -------------------------- */

/* out[r] = alpha x[r] y[r] + beta out[r], r < n */
static ng_status vmul(ng_backend *be, int n, float alpha, const float *x, const float *y, float beta, float *out) {
    return ng_gemm_strided_batched(be, 0, 0, 1, 1, 1, alpha, x, 1, 1, y, 1, 1, beta, out, 1, 1, n);
}
/* out(r, :) += s[r] X(r, :) */
static ng_status rowscale_acc(ng_backend *be, int rows, int cols, const float *s, const float *X, int ldx,
                              float *out, int ldo) {
    return ng_gemm_strided_batched(be, 0, 0, 1, cols, 1, 1.0f, s, 1, 1, X, ldx, 1, 1.0f, out, ldo, 1, rows);
}
/* out[r] = alpha sum_c X(r, c) Y(r, c) + beta out[r] */
static ng_status rowdot(ng_backend *be, int rows, int cols, float alpha, const float *X, int ldx, const float *Y,
                        int ldy, float beta, float *out) {
    return ng_gemm_strided_batched(be, 0, 1, 1, 1, cols, alpha, X, ldx, 1, Y, ldy, 1, beta, out, 1, 1, rows);
}

/* ---- synchronised batch norm (several ranks: ng_net_set_comm) ------------------------------ */

static int dist_bn(const net *n) {
    int l;
    if (!n->comm || n->comm->world < 2) return 0;
    for (l = 1; l <= n->L; l++)
        if (has_bn(n, l)) return 1;
    return 0;
}

/* The merge on the device: the communicator is NCCL (device buffers, all-reduced on the stream;
 * ng_net_set_comm allocated bnd). */
static int bn_dev(const net *n) { return dist_bn(n) && n->comm->kind == NG_COMM_NCCL && n->bnd; }

/* Layer l's view of the device merge buffers (bn_merge.h: tot at bnd + l, the scratch after L_MAX + 1). */
static ng_bn_dev bn_dev_layer(net *n, int l) {
    const ng_bn_dev d = {.be = n->base.be, .comm = n->comm, .cnt = (double)n->bn_cnt[l], .eps = n->cfg.bn_eps,
                         .mean = n->mean[l].data, .rstd = n->rstd[l].data, .tot = n->bnd + l,
                         .acc = n->bnd + L_MAX + 1, .rmax = (size_t)n->dmax_bn};
    return d;
}

/* Device merge of rows x cols sums x (ld ldx) into means at this rank's scale (see bn_sync_scaled):
 * ng_bn_dev_means; x and out may be the same vector (cols 1). */
static ng_status bn_dev_means(net *n, int l, int rows, int cols, const float *x, int ldx, int scaled, float alpha,
                              float *out, int ldo, const char *what) {
    const ng_bn_dev d = bn_dev_layer(n, l);
    return ng_bn_dev_means(&d, rows, cols, x, ldx, scaled, alpha, out, ldo, what);
}

/* Several ranks and batch norm: every training-mode pass is one chunk per rank, so that each
 * rank's pass meets the others' in the same collectives (and one process with --chunk >= the
 * global batch normalises over the same cases). */
static ng_status dist_one_chunk(const net *n, int cols, const char *what) {
    if (dist_bn(n) && cols > n->cfg.chunk)
        return ng_error(NG_ERR_INVALID_ARG, "network %s: batch norm on %d ranks normalises over the whole global batch, one pass "
                        "per rank, but this rank's %d cases exceed --chunk %d: raise --chunk to >= %d", what, n->comm->world, cols,
                        n->cfg.chunk, cols);
    return NG_OK;
}

/* Forward of batch-normalised layer l on several ranks: mean[l] and rstd[l] (this rank's, from
 * row_moments over its M >= 1 columns) become those of every rank's columns. Merged exactly as
 * the statistics of one process's batch: the global mean from the count-weighted means, then each
 * rank's scatter about it (Chan et al.: M (var_r + (mean_r - mean)^2)), both all-reduced in double.
 * Every rank gets the same mean and rstd, and so the same running averages. */
static ng_status bn_sync_moments(net *n, int l, int M) {
    ng_backend *be = n->base.be;
    const int dl = n->d[l];
    double *a = n->hbn, *b = n->hbn + dl + 1, tot;
    float *mr = n->hbf, *rr = n->hbf + dl;
    const double eps = (double)n->cfg.bn_eps;
    int i;
    if (bn_dev(n)) { /* the same merge in float64 on the device: its counts' and scatters' all-reduces on the stream */
        ng_bn_dev d;
        n->bn_cnt[l] = n->bn_cols = M;
        d = bn_dev_layer(n, l);
        return ng_bn_dev_moments(&d, dl);
    }
    NG_TRY(ng_get(be, mr, n->mean[l].data, (size_t)dl * sizeof(float)));
    NG_TRY(ng_get(be, rr, n->rstd[l].data, (size_t)dl * sizeof(float)));
    for (i = 0; i < dl; i++) a[i] = (double)M * (double)mr[i];
    a[dl] = (double)M;
    NG_TRY(ng_comm_allreduce_host(n->comm, a, (size_t)dl + 1, "the batch-norm means"));
    tot = a[dl];
    for (i = 0; i < dl; i++) {
        double mu = a[i] / tot, dm = (double)mr[i] - mu;
        a[i] = mu;
        b[i] = (double)M * (1.0 / ((double)rr[i] * (double)rr[i]) - eps + dm * dm);
    }
    NG_TRY(ng_comm_allreduce_host(n->comm, b, (size_t)dl, "the batch-norm variances"));
    for (i = 0; i < dl; i++) {
        double var = b[i] / tot;
        mr[i] = (float)a[i];
        rr[i] = (float)(1.0 / sqrt((var > 0.0 ? var : 0.0) + eps));
    }
    NG_TRY(ng_set(be, n->mean[l].data, mr, (size_t)dl * sizeof(float)));
    NG_TRY(ng_set(be, n->rstd[l].data, rr, (size_t)dl * sizeof(float)));
    n->bn_tot[l] = tot;
    n->bn_w[l] = (double)M / tot;
    return NG_OK;
}

/* The projection of batch-normalised layer l on several ranks (this rank's cols columns of g):
 *   out = s1 s2 (g - mean(g) - xhat mean(g xhat))   (s2 NULL: s1 alone; per-unit device vectors)
 * with both means over every rank's columns. A g that carries this rank's loss scale 1 / m_r (the
 * backward pass, g = dL/du: the trainer and the curvature products' reductions weight by m_r / m
 * afterwards) has its row sums weighted by w = m_r / m before the all-reduce and the means brought
 * back to this rank's scale; R{z} carries no scale (w = 1); scaled: w = m_r / m, else 1.
 * bn_sync_project: s1 s2 = rstd gamma (loss_scaled, the backward pass) or rstd (the R-forward pass).
 * BV[l]'s six columns: sum g, sum g xhat (swapped on the device, bn_dev), -mean(g xhat), -mean(g),
 * s1 s2, ones (the last kept for H v). */
static ng_status bn_sync_scaled(net *n, int l, int cols, const float *g, int ldg, int scaled, const float *s1,
                                const float *s2, float *out, int ldo) {
    ng_backend *be = n->base.be;
    const int dl = n->d[l], ldv = n->BV[l].ld;
    float *bv = n->BV[l].data, *hf = n->hbf;
    double *a = n->hbn, tot = n->bn_tot[l], w = scaled ? n->bn_w[l] : 1.0;
    int i;
    if (bn_dev(n)) { /* the same columns of BV[l] on the device; s1 s2 first (s1 may be a column of BV[l]) */
        if (s2) NG_TRY(vmul(be, dl, 1.0f, s1, s2, 0.0f, bv + 4 * (size_t)ldv));
        else if (s1 != bv + 4 * (size_t)ldv) NG_TRY(ng_copy(be, bv + 4 * (size_t)ldv, s1, (size_t)dl * sizeof(float)));
        /* the two sums in the other order (sum g xhat, sum g), so that their means land in columns 2, 3 */
        NG_TRY(rowdot(be, dl, cols, 1.0f, g, ldg, n->XH[l].data, n->XH[l].ld, 0.0f, bv));
        NG_TRY(ng_sum_cols(be, dl, cols, 1.0f, g, ldg, 0.0f, bv + ldv));
        NG_TRY(bn_dev_means(n, l, dl, 2, bv, ldv, scaled, -1.0f, bv + 2 * (size_t)ldv, ldv, "the batch-norm gradient sums"));
        NG_TRY(ng_fill(be, (size_t)dl, 1.0f, bv + 5 * (size_t)ldv));
    } else {
        /* the scale vectors first: s1 may live in BV[l] (H v's R{rstd}), which the sums overwrite */
        NG_TRY(ng_get(be, hf + 2 * dl, s1, (size_t)dl * sizeof(float)));
        if (s2) NG_TRY(ng_get(be, hf + 3 * dl, s2, (size_t)dl * sizeof(float)));
        NG_TRY(ng_sum_cols(be, dl, cols, 1.0f, g, ldg, 0.0f, bv));
        NG_TRY(rowdot(be, dl, cols, 1.0f, g, ldg, n->XH[l].data, n->XH[l].ld, 0.0f, bv + ldv));
        NG_TRY(ng_get(be, hf, bv, (size_t)dl * sizeof(float)));
        NG_TRY(ng_get(be, hf + dl, bv + ldv, (size_t)dl * sizeof(float)));
        for (i = 0; i < 2 * dl; i++) a[i] = w * (double)hf[i];
        NG_TRY(ng_comm_allreduce_host(n->comm, a, (size_t)2 * dl, "the batch-norm gradient sums"));
        for (i = 0; i < dl; i++) {
            float sc = s2 ? (float)((double)hf[2 * dl + i] * (double)hf[3 * dl + i]) : hf[2 * dl + i];
            hf[i] = (float)(-a[dl + i] / tot / w); /* -mean(g xhat), this rank's scale */
            hf[dl + i] = (float)(-a[i] / tot / w); /* -mean(g) */
            hf[2 * dl + i] = sc;
            hf[3 * dl + i] = 1.0f;
        }
        for (i = 0; i < 4; i++) NG_TRY(ng_set(be, bv + (size_t)(2 + i) * ldv, hf + (size_t)i * dl, (size_t)dl * sizeof(float)));
    }
    /* out = -mean(g xhat) xhat - mean(g); += g; *= s1 s2 */
    NG_TRY(act_fwd(be, dl, cols, NG_ACT_LINEAR, n->XH[l].data, n->XH[l].ld, bv + 2 * ldv, bv + 3 * ldv, out, ldo));
    NG_TRY(rowscale_acc(be, dl, cols, bv + 5 * ldv, g, ldg, out, ldo));
    return act_fwd(be, dl, cols, NG_ACT_LINEAR, out, ldo, bv + 4 * ldv, NULL, out, ldo);
}

static ng_status bn_sync_project(net *n, int l, int cols, const float *g, int ldg, int loss_scaled, float *out, int ldo) {
    return bn_sync_scaled(n, l, cols, g, ldg, loss_scaled, n->rstd[l].data, loss_scaled ? n->gamma[l].data : NULL, out,
                          ldo);
}

/* H v on several ranks: v (dl floats on the device) holds this rank's row sums over its columns;
 * it becomes the row means over every rank's columns, at this rank's scale (w as in
 * bn_sync_scaled: m_r / m for loss-scaled sums, 1 for the R-forward pass's) */
static ng_status bn_sync_mean(net *n, int l, float *v, int scaled) {
    ng_backend *be = n->base.be;
    const int dl = n->d[l];
    float *hf = n->hbf;
    double *a = n->hbn, w = scaled ? n->bn_w[l] : 1.0;
    int i;
    if (bn_dev(n)) return bn_dev_means(n, l, dl, 1, v, dl, scaled, 1.0f, v, dl, "the batch-norm R-backward sums");
    NG_TRY(ng_get(be, hf, v, (size_t)dl * sizeof(float)));
    for (i = 0; i < dl; i++) a[i] = w * (double)hf[i];
    NG_TRY(ng_comm_allreduce_host(n->comm, a, (size_t)dl, "the batch-norm R-backward sums"));
    for (i = 0; i < dl; i++) hf[i] = (float)(a[i] / n->bn_tot[l] / w);
    return ng_set(be, v, hf, (size_t)dl * sizeof(float));
}

ng_status ng_net_set_comm(ng_model *m, struct ng_comm *comm) {
    net *n = as_net(m);
    int l, dmax = 1;
    if (!m || m->iface != &net_iface) return ng_error(NG_ERR_INVALID_ARG, "ng_net_set_comm: not a network");
    n->comm = comm;
    if (!dist_bn(n)) return NG_OK;
    for (l = 1; l <= n->L; l++)
        if (n->d[l] > dmax) dmax = n->d[l];
    n->dmax_bn = dmax;
    if (!n->hbn) {
        n->hbn = (double *)calloc((size_t)2 * (size_t)dmax + 1, sizeof(double));
        n->hbf = (float *)calloc((size_t)4 * (size_t)dmax, sizeof(float));
        if (!n->hbn || !n->hbf) return ng_error(NG_ERR_OOM, "network: out of host memory for the batch-norm all-reduce");
    }
    if (comm->kind == NG_COMM_NCCL && !n->bnd) /* the device merge's scratch (bn_dev) */
        NG_TRY(ng_alloc(m->be, ((size_t)L_MAX + 1 + 3 * (size_t)dmax + 1) * sizeof(double), (void **)&n->bnd));
    return NG_OK;
}

/* ---- backward ----------------------------------------------------------------------------- */

/* Back-propagate D[L] (already set) through the chunk; when g is non-NULL write the parameter
 * gradient into the flat vector g (beta 0: =, 1: +=). */
static ng_status backward_fp(net *n, int cols, float *g_base, float beta) {
    ng_backend *be = n->base.be;
    int l, L = n->L;
    ng_tensor gv;
    if (g_base) gv = ng_tensor_matrix(g_base, (int)ng_model_size(&n->base), 1, (int)ng_model_size(&n->base));
    for (l = L; l >= 1; l--) {
        int dl = n->d[l], dp = n->d[l - 1];
        float *dz = n->D[l].data;
        int ldd = n->D[l].ld;
        if (has_bn(n, l)) {
            /* D[l] holds dL/du; parameter gradients of gamma (sum_c du xhat) and beta (sum_c du) */
            if (g_base) {
                float *gW = view_ptr(n, &gv, n->idxW[l]);
                const ng_tensor *in;
                float *gg = view_ptr(n, &gv, n->idxW[l] + 1), *gbt = view_ptr(n, &gv, n->idxW[l] + 2);
                /* row dots as dl batched 1x1 products: C_r = du(r,:) . xhat(r,:) */
                NG_TRY(rowdot(be, dl, cols, 1.0f, dz, ldd, n->XH[l].data, n->XH[l].ld, beta, gg));
                NG_TRY(ng_sum_cols(be, dl, cols, 1.0f, dz, ldd, beta, gbt));
                /* dL/dz = rstd gamma P(du), into tmp (P's means over every rank's columns) */
                if (dist_bn(n)) NG_TRY(bn_sync_project(n, l, cols, dz, ldd, 1, n->tmp[l].data, n->tmp[l].ld));
                else
                    NG_TRY(bn_proj(be, dl, cols, dz, ldd, n->XH[l].data, n->XH[l].ld, n->rstd[l].data,
                                   n->gamma[l].data, 0.0f, n->tmp[l].data, n->tmp[l].ld));
                NG_TRY(gin(n, l, cols, &in));
                NG_TRY(ng_gemm(be, 0, 1, dl, dp, cols, 1.0f, n->tmp[l].data, n->tmp[l].ld, in->data, in->ld, beta, gW, dl));
            } else if (dist_bn(n)) {
                NG_TRY(bn_sync_project(n, l, cols, dz, ldd, 1, n->tmp[l].data, n->tmp[l].ld));
            } else {
                NG_TRY(bn_proj(be, dl, cols, dz, ldd, n->XH[l].data, n->XH[l].ld, n->rstd[l].data,
                               n->gamma[l].data, 0.0f, n->tmp[l].data, n->tmp[l].ld));
            }
            dz = n->tmp[l].data;
            ldd = n->tmp[l].ld;
        } else if (g_base) {
            /* [gW gb] = D a-bar^T (canonical form: D (K a-bar)^T) */
            const ng_tensor *in;
            NG_TRY(gin(n, l, cols, &in));
            NG_TRY(ng_gemm(be, 0, 1, dl, dp + 1, cols, 1.0f, dz, ldd, in->data, in->ld, beta, view_ptr(n, &gv, n->idxW[l]), dl));
        }
        /* layer l's gradient is final: its all-reduce may start (not with batch norm merged on the
         * device: the layers below issue its all-reduces on the stream, which may not follow a bucket
         * started in a captured step; the whole gradient is then reduced after the backward pass) */
        if (g_base && n->last_chunk && !bn_dev(n))
            NG_TRY(ng_model_grad_ready(&n->base, n->base.grads.entries[n->idxW[l]].offset / sizeof(float),
                                       l == L ? ng_model_size(&n->base) : n->base.grads.entries[n->idxW[l + 1]].offset / sizeof(float)));
        if (l > 1) {
            NG_TRY(back_in(n, l, cols, dz, ldd, NULL, NULL, 0, n->D[l - 1].data, n->D[l - 1].ld));
            NG_TRY(act_bwd(be, dp, cols, n->cfg.act[l - 2], n->A[l - 1].data, n->A[l - 1].ld, n->D[l - 1].data,
                           n->D[l - 1].ld, NULL, 0, NULL, 0, n->D[l - 1].data, n->D[l - 1].ld));
        }
    }
    return NG_OK;
}

/* ---- the R-operator forward pass ---------------------------------------------------------- */

/* RZ[l] = R{z_l} (R{u_l} with batch norm) and RA[l] = R{a_l} for v (flat, parameter layout);
 * RZ[L] = J v of the chunk. Needs the forward pass of the chunk in the buffers. */
static ng_status rforward(net *n, const ng_tensor *v, int cols) {
    ng_backend *be = n->base.be;
    int l, L = n->L;
    for (l = 1; l <= L; l++) {
        int dl = n->d[l], dp = n->d[l - 1];
        const float *VW = view_ptr(n, v, n->idxW[l]);
        float *rz = has_bn(n, l) ? n->RZP[l].data : n->RZ[l].data;
        int ldr = has_bn(n, l) ? n->RZP[l].ld : n->RZ[l].ld;
        /* R{z} = V-bar a-bar + W R{a_{l-1}} (V-bar without its bias column with batch norm; whitened
         * layers read U (a - c) and U R{a}) */
        NG_TRY(ng_gemm(be, 0, 0, dl, cols, has_bn(n, l) ? dp : dp + 1, 1.0f, VW, dl, lin(n, l)->data, lin(n, l)->ld,
                       0.0f, rz, ldr));
        if (l > 1) {
            if (n->cfg.whiten == 1) NG_TRY(whiten_rin(n, l, cols));
            NG_TRY(ng_gemm(be, 0, 0, dl, cols, dp, 1.0f, n->W[l].data, dl, rlin(n, l)->data, rlin(n, l)->ld, 1.0f, rz,
                           ldr));
        }
        if (has_bn(n, l)) {
            const float *Vg = view_ptr(n, v, n->idxW[l] + 1), *Vb = view_ptr(n, v, n->idxW[l] + 2);
            /* R{u} = gamma rstd P(R{z}) + V_gamma xhat + V_beta */
            NG_TRY(act_fwd(be, dl, cols, NG_ACT_LINEAR, n->XH[l].data, n->XH[l].ld, Vg, Vb, n->RZ[l].data,
                           n->RZ[l].ld));
            if (dist_bn(n)) /* P's means over every rank's columns */
                NG_TRY(bn_sync_project(n, l, cols, rz, ldr, 0, n->RXH[l].data, n->RXH[l].ld));
            else
                NG_TRY(bn_proj(be, dl, cols, rz, ldr, n->XH[l].data, n->XH[l].ld, n->rstd[l].data, NULL, 0.0f,
                               n->RXH[l].data, n->RXH[l].ld));
            NG_TRY(rowscale_acc(be, dl, cols, n->gamma[l].data, n->RXH[l].data, n->RXH[l].ld, n->RZ[l].data, n->RZ[l].ld));
        }
        if (l < L)
            NG_TRY(act_bwd(be, dl, cols, n->cfg.act[l - 1], n->A[l].data, n->A[l].ld, n->RZ[l].data, n->RZ[l].ld,
                           NULL, 0, NULL, 0, n->RA[l].data, n->RA[l].ld));
    }
    return NG_OK;
}

/* ---- batches and chunks ------------------------------------------------------------------- */

static ng_status check_batch(net *n, const ng_tensor *x, const ng_tensor *y, const char *what) {
    int rows = ng_net_batch_rows(&n->base), L = n->L;
    if (!x || !x->ptr || x->dtype != NG_F32)
        return ng_error(NG_ERR_INVALID_ARG, "network %s: no float32 batch", what);
    if (x->cols < 1) return ng_error(NG_ERR_INVALID_ARG, "network %s: empty batch", what);
    if (y) {
        if (x->rows != n->d[0])
            return ng_error(NG_ERR_INVALID_ARG, "network %s: batch has %d rows, the input layer has %d units", what, x->rows, n->d[0]);
        if (y->rows != n->d[L] || y->cols != x->cols || y->dtype != NG_F32)
            return ng_error(NG_ERR_INVALID_ARG, "network %s: targets are %d x %d, the output layer %d needs %d x %d", what,
                            y->rows, y->cols, L, n->d[L], x->cols);
    } else if (x->rows != rows) {
        if (n->cfg.target == NG_NET_TARGET_INPUT)
            return ng_error(NG_ERR_INVALID_ARG, "network %s: batch has %d rows, the input layer has %d units", what, x->rows, n->d[0]);
        return ng_error(NG_ERR_INVALID_ARG, "network %s: batch has %d rows, needs %d inputs + %d targets = %d", what,
                        x->rows, n->d[0], n->d[L], rows);
    }
    return NG_OK;
}

static ng_status set_batch(net *n, const ng_tensor *x, const ng_tensor *y) {
    n->x = n->x0 = *x;
    n->have_y = y != NULL;
    if (y) n->y = n->y0 = *y;
    n->have_batch = 1;
    n->m = x->cols;
    n->fwd_x = NULL;
    n->d_valid = 0;
    return NG_OK;
}

static int n_chunks(const net *n) { return (n->m + n->cfg.chunk - 1) / n->cfg.chunk; }

static int any_bn(const net *n) {
    int l;
    for (l = 1; l <= n->L; l++)
        if (has_bn(n, l)) return 1;
    return 0;
}

/* The forward pass of the cols cases starting at input column x is in the buffers: the same
 * cases, or a prefix of them (not with batch normalisation, whose statistics are the chunk's). */
static int fwd_in_buffers(const net *n, const float *x, int cols) {
    return n->fwd_x && n->fwd_x == x && (cols == n->fwd_cols || (cols < n->fwd_cols && !any_bn(n)));
}

/* Make the forward pass of chunk k of the current batch available: reused when it is in the
 * buffers (the gradient leaves chunk 0 there), else computed. */
static ng_status chunk_forward(net *n, int k, int *c0, int *cols, int update_running) {
    int ch = n->cfg.chunk;
    const float *xk;
    *c0 = k * ch;
    *cols = n->m - *c0 < ch ? n->m - *c0 : ch;
    xk = n->x.data + (size_t)*c0 * n->x.ld;
    if (fwd_in_buffers(n, xk, *cols)) return NG_OK;
    n->fwd_x = NULL;
    NG_TRY_RANGE(NG_CAT_FORWARD, "net forward", forward(n, xk, n->x.ld, *cols, 0, update_running));
    n->fwd_x = xk;
    n->fwd_cols = *cols;
    n->d_valid = 0;
    return NG_OK;
}

static const float *chunk_targets(net *n, int c0, int *ld) {
    return targets_of(n, n->x.data, n->x.ld, n->have_y ? &n->y : NULL, c0, ld);
}

/* ---- the model interface -------------------------------------------------------------------- */

static ng_status net_check_gradient(ng_model *m) {
    net *n = as_net(m);
    float acc[2];
    NG_TRY(ng_get(m->be, acc, n->acc.data, sizeof acc));
    if (!isfinite(acc[0]) || !isfinite(acc[1]))
        return ng_error(NG_ERR_NUMERIC, "network objective on this batch is %g (diverged or non-finite data: lower --lr, check the data)",
                        (double)acc[0]);
    return NG_OK;
}

/* CUDA graphs: the gradient passes no per-gradient host scalar to the device and reads the host
 * only in net_check_gradient (deferred after the graph). */
static ng_status net_graph_check(const ng_model *m) {
    const net *n = as_cnet(m);
    /* several ranks: batch norm's merge runs on the device with NCCL (bn_dev: captured with its
     * all-reduces); over MPI (bn_sync_moments, bn_sync_scaled) it goes through the host */
    if (dist_bn(n) && !bn_dev(n))
        return ng_error(NG_ERR_UNSUPPORTED, "--cuda-graph 1 on %d ranks: the network's batch norm merges its statistics "
                        "across the ranks through the host over MPI (not captured); it is captured with the NCCL "
                        "communicator; run it with --cuda-graph 0", n->comm->world);
    return NG_OK;
}

/* CUDA-graph segments (natgrad/graph.h): the host state of the passes, which a segment's
 * control flow reads (is a chunk's forward pass in the buffers?) and leaves behind: the batch views,
 * the forward pass the buffers hold, whether D[] is valid and, on several ranks, the cases of the last
 * synchronised forward pass (bn_cols: the device merges' counts). 6 words per tensor, 5 more. */
#define NET_STATE_WORDS 29
static int net_graph_state_get(const ng_model *m, uint64_t *st, int cap) {
    const net *n = as_cnet(m);
    /* batch norm over several ranks through MPI reads the host (with NCCL it merges on the device) */
    if (cap < NET_STATE_WORDS || (dist_bn(n) && !bn_dev(n))) return -1;
    ng_graph_tensor_words(&n->x, st);
    ng_graph_tensor_words(&n->y, st + 6);
    ng_graph_tensor_words(&n->x0, st + 12);
    ng_graph_tensor_words(&n->y0, st + 18);
    st[24] = (uint64_t)(uint32_t)n->have_y << 32 | (uint32_t)n->have_batch;
    st[25] = (uint64_t)(uint32_t)n->m << 32 | (uint32_t)n->fwd_cols;
    st[26] = (uint64_t)(uintptr_t)n->fwd_x;
    st[27] = (uint64_t)(uint32_t)n->d_valid;
    st[28] = (uint64_t)(uint32_t)n->bn_cols;
    return NET_STATE_WORDS;
}
static void net_graph_state_set(ng_model *m, const uint64_t *st, int n_words) {
    net *n = as_net(m);
    if (n_words != NET_STATE_WORDS) return;
    ng_graph_words_tensor(st, &n->x);
    ng_graph_words_tensor(st + 6, &n->y);
    ng_graph_words_tensor(st + 12, &n->x0);
    ng_graph_words_tensor(st + 18, &n->y0);
    n->have_y = (int)(uint32_t)(st[24] >> 32);
    n->have_batch = (int)(uint32_t)st[24];
    n->m = (int)(uint32_t)(st[25] >> 32);
    n->fwd_cols = (int)(uint32_t)st[25];
    n->fwd_x = (const float *)(uintptr_t)st[26];
    n->d_valid = (int)(uint32_t)st[27];
    n->bn_cols = (int)(uint32_t)st[28];
    if (bn_dev(n)) { /* the merges' counts a replayed forward pass would have set (a later capture bakes them in) */
        int l;
        for (l = 1; l <= n->L; l++)
            if (has_bn(n, l)) n->bn_cnt[l] = n->bn_cols;
    }
}

static ng_status net_gradient(ng_model *m, const ng_tensor *x, const ng_tensor *y) {
    net *n = as_net(m);
    int i, K;
    float scale;
    ng_status s;
    NG_TRY(check_batch(n, x, y, "gradient"));
    NG_TRY(dist_one_chunk(n, x->cols, "gradient"));
    NG_TRY(set_batch(n, x, y));
    K = n_chunks(n);
    scale = 1.0f / (float)n->m;
    /* chunks 1, ..., K - 1, then 0: the forward pass of chunk 0 stays in the buffers for what works
     * on a prefix of the batch (K-FAC's statistics on tau1 m cases, its Fisher products on tau2 m) */
    for (i = 0; i < K; i++) {
        int k = (i + 1) % K, c0, cols, ldt;
        const float *t;
        NG_TRY(chunk_forward(n, k, &c0, &cols, 1));
        t = chunk_targets(n, c0, &ldt);
        NG_TRY(loss_chunk(n, t, ldt, cols, scale, n->D[n->L].data, n->D[n->L].ld, i ? 1.0f : 0.0f));
        n->last_chunk = i == K - 1; /* the last chunk processed (chunk 0 when K > 1) */
        NG_RANGE_CAT(NG_CAT_BACKWARD, "net backward", s, backward(n, cols, m->grad_flat.data, i ? 1.0f : 0.0f));
        n->last_chunk = 0;
        NG_TRY(s);
    }
    n->d_valid = K == 1;
    /* one small read per step: a diverged objective stops the run before its update (after it
     * under a CUDA graph, which cannot wait for the host mid-step: natgrad/train.h) */
    return m->defer_check ? NG_OK : net_check_gradient(m);
}

ng_status ng_net_set_batch(ng_model *m, const ng_tensor *x, const ng_tensor *y) {
    net *n = as_net(m);
    int c0, cols;
    if (m->iface != &net_iface) return ng_error(NG_ERR_INVALID_ARG, "ng_net_set_batch: model %s is not a network", m->iface->kind);
    NG_TRY(check_batch(n, x, y, "set_batch"));
    NG_TRY(dist_one_chunk(n, x->cols, "set_batch (the curvature products' batch)"));
    NG_TRY(set_batch(n, x, y));
    if (n_chunks(n) == 1) NG_TRY(chunk_forward(n, 0, &c0, &cols, 0));
    return NG_OK;
}

ng_status ng_net_batch_prefix(ng_model *m, int cols) {
    net *n = as_net(m);
    int c0, nc;
    if (m->iface != &net_iface) return ng_error(NG_ERR_INVALID_ARG, "ng_net_batch_prefix: model %s is not a network", m->iface->kind);
    if (!n->have_batch) return ng_error(NG_ERR_INVALID_ARG, "network batch prefix: no batch yet");
    if (cols < 1 || cols > n->x0.cols)
        return ng_error(NG_ERR_INVALID_ARG, "network batch prefix: %d cases of a batch of %d", cols, n->x0.cols);
    n->x = ng_tensor_matrix(n->x0.data, n->x0.rows, cols, n->x0.ld);
    if (n->have_y) n->y = ng_tensor_matrix(n->y0.data, n->y0.rows, cols, n->y0.ld);
    n->m = cols;
    n->d_valid = 0;
    /* a single-chunk prefix gets its forward pass, kept from the gradient's when chunk 0 of the
     * batch is in the buffers (the same parameters: nothing changes them in between) */
    if (n_chunks(n) == 1) NG_TRY(chunk_forward(n, 0, &c0, &nc, 0));
    return NG_OK;
}

/* On several ranks with batch norm the R-forward pass (J v, G v = the exact F v, the Fisher gram)
 * and the backward pass reduce their batch sums (bn_sync_project), so the empirical and the sampled
 * F v (per-case residuals of the data's targets or of targets drawn by global column, ng_net_fvp_at,
 * then that synchronised backward pass) are exact too; the sampled backward pass's per-case layer
 * statistics are not reduced, so it is refused. */
static ng_status no_dist_bn(const net *n, const char *what, const char *why) {
    if (dist_bn(n))
        return ng_error(NG_ERR_UNSUPPORTED, "network %s: not with batch-normalised layers on %d ranks (%s); drop +bn or run as "
                        "one process", what, n->comm->world, why);
    return NG_OK;
}

static ng_status need_batch(net *n, const char *what) {
    if (!n->have_batch)
        return ng_error(NG_ERR_INVALID_ARG, "network %s: no batch yet (compute a gradient or call ng_net_set_batch first)", what);
    return NG_OK;
}

static ng_status net_jvp_fp(ng_model *m, const ng_tensor *v, ng_tensor *out) {
    net *n = as_net(m);
    int k, K, L;
    NG_TRY(no_canonical(n, "J v"));
    NG_TRY(need_batch(n, "J v"));
    NG_TRY(check_vec(n, v, "J v"));
    L = n->L;
    if (!out || !out->ptr || out->rows != n->d[L] || out->cols != n->m)
        return ng_error(NG_ERR_INVALID_ARG, "network J v: output must be %d x %d (output units x cases)", n->d[L], n->m);
    K = n_chunks(n);
    for (k = 0; k < K; k++) {
        int c0, cols;
        NG_TRY(chunk_forward(n, k, &c0, &cols, 0));
        NG_TRY_RANGE(NG_CAT_FORWARD, "net R-forward", rforward(n, v, cols));
        NG_TRY(act_fwd(m->be, n->d[L], cols, NG_ACT_LINEAR, n->RZ[L].data, n->RZ[L].ld, NULL, NULL,
                       out->data + (size_t)c0 * out->ld, out->ld));
    }
    return NG_OK;
}

/* the public entry: a curvature-vector product, always FP32 (natgrad/backend.h ng_fp32_begin) */
ng_status ng_net_jvp(ng_model *m, const ng_tensor *v, ng_tensor *out) {
    int saved;
    ng_status s, e;
    NG_TRY(ng_fp32_begin(m->be, &saved));
    s = net_jvp_fp(m, v, out);
    e = ng_fp32_end(m->be, saved);
    return s != NG_OK ? s : e;
}

static ng_status loss_hvp(net *n, int loss, const float *y, int ldy, const float *v, int ldv, float scale,
                          float *out, int ldo, int cols) {
    ng_op_args o = {.op = NG_OP_LOSS_HVP};
    o.loss_hvp.rows = n->d[n->L];
    o.loss_hvp.cols = cols;
    o.loss_hvp.loss = loss;
    o.loss_hvp.y = y;
    o.loss_hvp.ldy = ldy;
    o.loss_hvp.v = v;
    o.loss_hvp.ldv = ldv;
    o.loss_hvp.scale = scale;
    o.loss_hvp.out = out;
    o.loss_hvp.ldo = ldo;
    return ng_run_op(n->base.be, &o);
}

static ng_status check_out_vec(net *n, const ng_tensor *v, ng_tensor *out, const char *what) {
    NG_TRY(need_batch(n, what));
    NG_TRY(check_vec(n, v, what));
    NG_TRY(check_vec(n, out, what));
    if (out->ptr == v->ptr) return ng_error(NG_ERR_INVALID_ARG, "network %s: out must not alias v", what);
    return NG_OK;
}

static ng_status net_gvp_fp(ng_model *m, const ng_tensor *v, ng_tensor *out) {
    net *n = as_net(m);
    int k, K, L;
    float scale;
    NG_TRY(no_canonical(n, "G v"));
    NG_TRY(check_out_vec(n, v, out, "G v"));
    L = n->L;
    K = n_chunks(n);
    scale = 1.0f / (float)n->m;
    for (k = 0; k < K; k++) {
        int c0, cols;
        NG_TRY(chunk_forward(n, k, &c0, &cols, 0));
        NG_TRY_RANGE(NG_CAT_FORWARD, "net R-forward", rforward(n, v, cols));
        NG_TRY(loss_hvp(n, n->cfg.loss, n->A[L].data, n->A[L].ld, n->RZ[L].data, n->RZ[L].ld, scale, n->D[L].data,
                        n->D[L].ld, cols));
        NG_TRY_RANGE(NG_CAT_BACKWARD, "net backward", backward(n, cols, out->data, k ? 1.0f : 0.0f));
    }
    n->d_valid = 0;
    return NG_OK;
}

/* the public entry: a curvature-vector product, always FP32 (natgrad/backend.h ng_fp32_begin) */
ng_status ng_net_gvp(ng_model *m, const ng_tensor *v, ng_tensor *out) {
    int saved;
    ng_status s, e;
    NG_TRY(ng_fp32_begin(m->be, &saved));
    s = net_gvp_fp(m, v, out);
    e = ng_fp32_end(m->be, saved);
    return s != NG_OK ? s : e;
}

ng_status ng_net_current_batch(const ng_model *m, ng_tensor *x, ng_tensor *y) {
    const net *n = as_cnet(m);
    if (m->iface != &net_iface) return ng_error(NG_ERR_INVALID_ARG, "ng_net_current_batch: model %s is not a network", m->iface->kind);
    if (!n->have_batch) return ng_error(NG_ERR_INVALID_ARG, "network: no batch yet (compute a gradient first)");
    *x = n->x;
    if (y) {
        if (n->have_y) *y = n->y;
        else memset(y, 0, sizeof *y);
    }
    return NG_OK;
}

static ng_status net_fisher_gram_fp(ng_model *m, int nv, const ng_tensor *const *v, ng_tensor *work, double *gram) {
    net *n = as_net(m);
    ng_backend *be = m->be;
    int k, K, L, i, j, ch;
    size_t slot;
    NG_TRY(no_canonical(n, "the Fisher gram"));
    NG_TRY(need_batch(n, "Fisher gram"));
    if (nv < 1 || nv > 8) return ng_error(NG_ERR_INVALID_ARG, "network Fisher gram: %d vectors (1..8)", nv);
    for (i = 0; i < nv; i++) NG_TRY(check_vec(n, v[i], "Fisher gram"));
    L = n->L;
    ch = n->m < n->cfg.chunk ? n->m : n->cfg.chunk;
    slot = (size_t)n->d[L] * (size_t)ch;
    if (!work || !work->ptr || work->dtype != NG_F32 || ng_tensor_count(work) < slot * (size_t)(nv + 1))
        return ng_error(NG_ERR_INVALID_ARG, "network Fisher gram: work needs %zu floats", slot * (size_t)(nv + 1));
    for (i = 0; i < nv * nv; i++) gram[i] = 0.0;
    K = n_chunks(n);
    for (k = 0; k < K; k++) {
        int c0, cols;
        float *hv = work->data + slot * (size_t)nv;
        NG_TRY(chunk_forward(n, k, &c0, &cols, 0));
        for (i = 0; i < nv; i++) {
            NG_TRY_RANGE(NG_CAT_FORWARD, "net R-forward", rforward(n, v[i], cols));
            NG_TRY(act_fwd(be, n->d[L], cols, NG_ACT_LINEAR, n->RZ[L].data, n->RZ[L].ld, NULL, NULL,
                           work->data + slot * (size_t)i, n->d[L]));
        }
        for (i = 0; i < nv; i++) {
            NG_TRY(loss_hvp(n, n->cfg.loss, n->A[L].data, n->A[L].ld, work->data + slot * (size_t)i, n->d[L], 1.0f,
                            hv, n->d[L], cols));
            for (j = 0; j <= i; j++) {
                float d;
                NG_TRY(ng_dot(be, (size_t)n->d[L] * (size_t)cols, work->data + slot * (size_t)j, hv, &d));
                gram[j + nv * i] += (double)d;
            }
        }
    }
    for (i = 0; i < nv; i++)
        for (j = 0; j <= i; j++) {
            gram[j + nv * i] /= (double)n->m;
            gram[i + nv * j] = gram[j + nv * i];
        }
    n->d_valid = 0;
    return NG_OK;
}

static ng_status net_fisher_gram_dots_fp(ng_model *m, int nv, const ng_tensor *const *v, ng_tensor *work, float *dots) {
    net *n = as_net(m);
    ng_backend *be = m->be;
    int L, i, j, c0, cols;
    size_t slot;
    float *hv;
    NG_TRY(no_canonical(n, "the Fisher gram"));
    NG_TRY(need_batch(n, "Fisher gram"));
    if (nv < 1 || nv > 8) return ng_error(NG_ERR_INVALID_ARG, "network Fisher gram: %d vectors (1..8)", nv);
    if (n_chunks(n) != 1)
        return ng_error(NG_ERR_UNSUPPORTED, "network Fisher gram on the device: %d cases are more than one chunk (%d)", n->m,
                        n->cfg.chunk);
    for (i = 0; i < nv; i++) NG_TRY(check_vec(n, v[i], "Fisher gram"));
    L = n->L;
    slot = (size_t)n->d[L] * (size_t)n->m;
    if (!work || !work->ptr || work->dtype != NG_F32 || ng_tensor_count(work) < slot * (size_t)(nv + 1))
        return ng_error(NG_ERR_INVALID_ARG, "network Fisher gram: work needs %zu floats", slot * (size_t)(nv + 1));
    hv = work->data + slot * (size_t)nv;
    NG_TRY(chunk_forward(n, 0, &c0, &cols, 0));
    for (i = 0; i < nv; i++) {
        NG_TRY_RANGE(NG_CAT_FORWARD, "net R-forward", rforward(n, v[i], cols));
        NG_TRY(act_fwd(be, n->d[L], cols, NG_ACT_LINEAR, n->RZ[L].data, n->RZ[L].ld, NULL, NULL, work->data + slot * (size_t)i,
                       n->d[L]));
    }
    for (i = 0; i < nv; i++) {
        NG_TRY(loss_hvp(n, n->cfg.loss, n->A[L].data, n->A[L].ld, work->data + slot * (size_t)i, n->d[L], 1.0f, hv, n->d[L],
                        cols));
        for (j = 0; j <= i; j++)
            NG_TRY(ng_dot_dev(be, (size_t)n->d[L] * (size_t)cols, work->data + slot * (size_t)j, hv, dots + i * (i + 1) / 2 + j));
    }
    n->d_valid = 0;
    return NG_OK;
}

ng_status ng_net_fisher_gram_dots(ng_model *m, int nv, const ng_tensor *const *v, ng_tensor *work, float *dots) {
    int saved;
    ng_status s, e;
    if (m->iface != &net_iface) return ng_error(NG_ERR_INVALID_ARG, "ng_net_fisher_gram_dots: model %s is not a network", m->iface->kind);
    NG_TRY(ng_fp32_begin(m->be, &saved));
    s = net_fisher_gram_dots_fp(m, nv, v, work, dots);
    e = ng_fp32_end(m->be, saved);
    return s != NG_OK ? s : e;
}

/* the public entry: a curvature-vector product, always FP32 (natgrad/backend.h ng_fp32_begin) */
ng_status ng_net_fisher_gram(ng_model *m, int nv, const ng_tensor *const *v, ng_tensor *work, double *gram) {
    int saved;
    ng_status s, e;
    NG_TRY(ng_fp32_begin(m->be, &saved));
    s = net_fisher_gram_fp(m, nv, v, work, gram);
    e = ng_fp32_end(m->be, saved);
    return s != NG_OK ? s : e;
}

static ng_status sample_targets_dev(net *n, int cols, uint64_t key, uint64_t step, uint64_t col0, uint64_t *step_dev,
                                    uint64_t advance) {
    ng_op_args o = {.op = NG_OP_SAMPLE_TARGETS};
    int L = n->L;
    o.sample_targets.rows = n->d[L];
    o.sample_targets.cols = cols;
    o.sample_targets.loss = n->cfg.loss;
    o.sample_targets.y = n->A[L].data;
    o.sample_targets.ldy = n->A[L].ld;
    o.sample_targets.t = n->T.data;
    o.sample_targets.ldt = n->T.ld;
    o.sample_targets.key = key;
    o.sample_targets.step = step;
    o.sample_targets.col0 = col0;
    o.sample_targets.step_dev = step_dev;
    o.sample_targets.advance = advance;
    return ng_run_op(n->base.be, &o);
}

/* D[L] = scale (y - t) for the targets t (no objective sums) */
static ng_status residual(net *n, const float *t, int ldt, int cols, float scale) {
    return loss_op(n, t, ldt, cols, scale, n->D[n->L].data, n->D[n->L].ld, 0, 0.0f);
}

static ng_status net_fvp_fp(ng_model *m, int mode, int samples, uint64_t key, uint64_t step, uint64_t col0,
                             uint64_t *step_dev, const ng_tensor *v, ng_tensor *out) {
    net *n = as_net(m);
    int k, K, L, s, S;
    float scale;
    NG_TRY(no_canonical(n, "F v"));
    if (mode == NG_FISHER_EXACT) return ng_net_gvp(m, v, out);
    if (mode != NG_FISHER_SAMPLED && mode != NG_FISHER_EMPIRICAL)
        return ng_error(NG_ERR_INVALID_ARG, "network F v: unknown Fisher mode %d", mode);
    if (samples < 1) return ng_error(NG_ERR_INVALID_ARG, "network F v: %d samples (>= 1)", samples);
    NG_TRY(check_out_vec(n, v, out, "F v"));
    L = n->L;
    K = n_chunks(n);
    S = mode == NG_FISHER_SAMPLED ? samples : 1;
    scale = 1.0f / ((float)n->m * (float)S);
    for (k = 0; k < K; k++) {
        int c0, cols;
        NG_TRY(chunk_forward(n, k, &c0, &cols, 0));
        NG_TRY_RANGE(NG_CAT_FORWARD, "net R-forward", rforward(n, v, cols));
        for (s = 0; s < S; s++) {
            const float *t;
            int ldt;
            if (mode == NG_FISHER_SAMPLED) {
                /* draw s of a case is uniform (step + s 1000003, col0 + its column): it depends on the
                 * case's position in the global batch, not on the chunking or the shard */
                NG_TRY(sample_targets_dev(n, cols, key, step + (uint64_t)s * 1000003u, col0 + (uint64_t)c0, step_dev, 0));
                t = n->T.data;
                ldt = n->T.ld;
            } else {
                t = chunk_targets(n, c0, &ldt);
            }
            /* D = scale d (d^T J v) per case, d = y - t */
            NG_TRY(residual(n, t, ldt, cols, 1.0f));
            NG_TRY(loss_hvp(n, NG_LOSS_OUTER, n->D[L].data, n->D[L].ld, n->RZ[L].data, n->RZ[L].ld, scale,
                            n->D[L].data, n->D[L].ld, cols));
            NG_TRY_RANGE(NG_CAT_BACKWARD, "net backward", backward(n, cols, out->data, (k || s) ? 1.0f : 0.0f));
        }
    }
    n->d_valid = 0;
    return NG_OK;
}

/* the public entry: a curvature-vector product, always FP32 (natgrad/backend.h ng_fp32_begin) */
ng_status ng_net_fvp(ng_model *m, int mode, int samples, uint64_t key, uint64_t step, const ng_tensor *v,
                     ng_tensor *out) {
    return ng_net_fvp_at(m, mode, samples, key, step, 0, v, out);
}

ng_status ng_net_fvp_at(ng_model *m, int mode, int samples, uint64_t key, uint64_t step, uint64_t col0, const ng_tensor *v,
                        ng_tensor *out) {
    int saved;
    ng_status s, e;
    NG_TRY(ng_fp32_begin(m->be, &saved));
    s = net_fvp_fp(m, mode, samples, key, step, col0, NULL, v, out);
    e = ng_fp32_end(m->be, saved);
    return s != NG_OK ? s : e;
}
ng_status ng_net_fvp_dev(ng_model *m, int mode, int samples, uint64_t key, uint64_t *step_dev, uint64_t col0,
                         const ng_tensor *v, ng_tensor *out) {
    int saved;
    ng_status s, e;
    if (!step_dev) return ng_error(NG_ERR_INVALID_ARG, "network F v: NULL device step");
    NG_TRY(ng_fp32_begin(m->be, &saved));
    s = net_fvp_fp(m, mode, samples, key, 0, col0, step_dev, v, out);
    e = ng_fp32_end(m->be, saved);
    return s != NG_OK ? s : e;
}

static ng_status net_fvp(ng_model *m, const ng_tensor *v, ng_tensor *out) {
    net *n = as_net(m);
    return ng_net_fvp(m, n->cfg.fisher, n->cfg.fisher_samples, ng_rng_stream_key(n->cfg.seed, NG_RNG_FISHER_TARGETS),
                      0, v, out);
}

static ng_status net_hvp_fp(ng_model *m, const ng_tensor *v, ng_tensor *out) {
    net *n = as_net(m);
    ng_backend *be = m->be;
    int k, K, L, l;
    float scale;
    ng_tensor ov;
    NG_TRY(no_canonical(n, "H v"));
    NG_TRY(check_out_vec(n, v, out, "H v"));
    L = n->L;
    K = n_chunks(n);
    scale = 1.0f / (float)n->m;
    ov = *out;
    for (k = 0; k < K; k++) {
        int c0, cols, ldt;
        const float *t;
        float beta = k ? 1.0f : 0.0f;
        NG_TRY(chunk_forward(n, k, &c0, &cols, 0));
        NG_TRY_RANGE(NG_CAT_FORWARD, "net R-forward", rforward(n, v, cols));
        t = chunk_targets(n, c0, &ldt);
        /* D_L = scale (y - t), R{D_L} = scale H_L R{z_L} */
        NG_TRY(residual(n, t, ldt, cols, scale));
        NG_TRY(loss_hvp(n, n->cfg.loss, n->A[L].data, n->A[L].ld, n->RZ[L].data, n->RZ[L].ld, scale, n->RD[L].data,
                        n->RD[L].ld, cols));
        for (l = L; l >= 1; l--) {
            int dl = n->d[l], dp = n->d[l - 1], bn = has_bn(n, l);
            float *o = view_ptr(n, &ov, n->idxW[l]);
            const float *VW = view_ptr(n, v, n->idxW[l]);
            float *dz = n->D[l].data, *rdz = n->RD[l].data;
            int ldz = n->D[l].ld, ldrz = n->RD[l].ld;
            if (bn) {
                /* D = dL/du, RD = R{dL/du} here; xhat = rstd (z - mean), u = gamma xhat + beta.
                 * dz = rstd gamma P(du) with P(g) = g - mean(g) - xhat mean(g xhat), and
                 * R{dz} = rstd P(R{dxhat}) + R{rstd} gamma P(du) - rstd gamma (R{xhat} mean(du xhat)
                 *         + xhat mean(du R{xhat})), R{dxhat} = gamma R{du} + V_gamma du,
                 * R{rstd} = -rstd^2 mean(xhat R{z}) */
                float *og = view_ptr(n, &ov, n->idxW[l] + 1), *ob = view_ptr(n, &ov, n->idxW[l] + 2);
                const float *Vg = view_ptr(n, v, n->idxW[l] + 1);
                float *q = n->BV[l].data, inv = 1.0f / (float)cols;
                int ldq = n->BV[l].ld, ldxh = n->XH[l].ld, dist = dist_bn(n);
                const float *xh = n->XH[l].data, *rxh = n->RXH[l].data, *g = n->gamma[l].data, *rs = n->rstd[l].data;
                /* several ranks: every batch mean over every rank's columns (bn_sync_scaled,
                 * bn_sync_mean), du and R{du} weighted by their loss scale, R{z} by 1 */
                NG_TRY(rowdot(be, dl, cols, 1.0f, rdz, ldrz, xh, ldxh, beta, og));
                NG_TRY(rowdot(be, dl, cols, 1.0f, dz, ldz, rxh, n->RXH[l].ld, 1.0f, og));
                NG_TRY(ng_sum_cols(be, dl, cols, 1.0f, rdz, ldrz, beta, ob));
                if (dist) NG_TRY(bn_sync_scaled(n, l, cols, dz, ldz, 1, rs, g, n->tmp[l].data, n->tmp[l].ld));
                else NG_TRY(bn_proj(be, dl, cols, dz, ldz, xh, ldxh, rs, g, 0.0f, n->tmp[l].data, n->tmp[l].ld));
                NG_TRY(act_fwd(be, dl, cols, NG_ACT_LINEAR, rdz, ldrz, g, NULL, n->BX1[l].data, n->BX1[l].ld));
                NG_TRY(rowscale_acc(be, dl, cols, Vg, dz, ldz, n->BX1[l].data, n->BX1[l].ld));
                if (dist) NG_TRY(bn_sync_scaled(n, l, cols, n->BX1[l].data, n->BX1[l].ld, 1, rs, NULL, n->BX2[l].data, n->BX2[l].ld));
                else
                    NG_TRY(bn_proj(be, dl, cols, n->BX1[l].data, n->BX1[l].ld, xh, ldxh, rs, NULL, 0.0f, n->BX2[l].data,
                                   n->BX2[l].ld));
                NG_TRY(rowdot(be, dl, cols, dist ? -1.0f : -inv, xh, ldxh, n->RZP[l].data, n->RZP[l].ld, 0.0f, q));
                if (dist) NG_TRY(bn_sync_mean(n, l, q, 0));
                NG_TRY(vmul(be, dl, 1.0f, rs, q, 0.0f, q + ldq));
                NG_TRY(vmul(be, dl, 1.0f, rs, q + ldq, 0.0f, q + 2 * ldq)); /* R{rstd} */
                if (dist) {
                    /* BX1 (read above) takes R{rstd} gamma P(du); BV[l]'s last column is then ones */
                    NG_TRY(bn_sync_scaled(n, l, cols, dz, ldz, 1, q + 2 * ldq, g, n->BX1[l].data, n->BX1[l].ld));
                    NG_TRY(rowscale_acc(be, dl, cols, q + 5 * ldq, n->BX1[l].data, n->BX1[l].ld, n->BX2[l].data, n->BX2[l].ld));
                } else
                    NG_TRY(bn_proj(be, dl, cols, dz, ldz, xh, ldxh, q + 2 * ldq, g, 1.0f, n->BX2[l].data, n->BX2[l].ld));
                NG_TRY(vmul(be, dl, -1.0f, rs, g, 0.0f, q + 3 * ldq)); /* -rstd gamma */
                NG_TRY(rowdot(be, dl, cols, dist ? 1.0f : inv, dz, ldz, xh, ldxh, 0.0f, q + 4 * ldq));
                if (dist) NG_TRY(bn_sync_mean(n, l, q + 4 * ldq, 1));
                NG_TRY(vmul(be, dl, 1.0f, q + 3 * ldq, q + 4 * ldq, 0.0f, q + 5 * ldq));
                NG_TRY(rowscale_acc(be, dl, cols, q + 5 * ldq, rxh, n->RXH[l].ld, n->BX2[l].data, n->BX2[l].ld));
                NG_TRY(rowdot(be, dl, cols, dist ? 1.0f : inv, dz, ldz, rxh, n->RXH[l].ld, 0.0f, q + 4 * ldq));
                if (dist) NG_TRY(bn_sync_mean(n, l, q + 4 * ldq, 1));
                NG_TRY(vmul(be, dl, 1.0f, q + 3 * ldq, q + 4 * ldq, 0.0f, q + 5 * ldq));
                NG_TRY(rowscale_acc(be, dl, cols, q + 5 * ldq, xh, ldxh, n->BX2[l].data, n->BX2[l].ld));
                dz = n->tmp[l].data;
                ldz = n->tmp[l].ld;
                rdz = n->BX2[l].data;
                ldrz = n->BX2[l].ld;
            }
            /* R{g_Wbar} = R{dz} a-bar^T + dz R{a-bar}^T (R of the row of ones is 0; no bias column
             * with batch norm) */
            NG_TRY(ng_gemm(be, 0, 1, dl, bn ? dp : dp + 1, cols, 1.0f, rdz, ldrz, lin(n, l)->data, lin(n, l)->ld, beta,
                           o, dl));
            if (l > 1) {
                /* RAW[l-1] still holds U R{a_{l-1}} of the R-forward pass */
                NG_TRY(ng_gemm(be, 0, 1, dl, dp, cols, 1.0f, dz, ldz, rlin(n, l)->data, rlin(n, l)->ld, 1.0f, o, dl));
                /* R{da} = W^T R{dz} + V^T dz  (into RD[l-1]);  da = W^T dz  (into D[l-1]); whitened
                 * layers multiply both by U^T */
                NG_TRY(back_in(n, l, cols, rdz, ldrz, VW, dz, ldz, n->RD[l - 1].data, n->RD[l - 1].ld));
                NG_TRY(back_in(n, l, cols, dz, ldz, NULL, NULL, 0, n->D[l - 1].data, n->D[l - 1].ld));
                /* R{D_{l-1}} = R{da} f'(a) + da R{u} f''(a);  D_{l-1} = da f'(a) */
                NG_TRY(act_bwd(be, dp, cols, n->cfg.act[l - 2], n->A[l - 1].data, n->A[l - 1].ld, n->RD[l - 1].data,
                               n->RD[l - 1].ld, n->D[l - 1].data, n->D[l - 1].ld, n->RZ[l - 1].data, n->RZ[l - 1].ld,
                               n->RD[l - 1].data, n->RD[l - 1].ld));
                NG_TRY(act_bwd(be, dp, cols, n->cfg.act[l - 2], n->A[l - 1].data, n->A[l - 1].ld, n->D[l - 1].data,
                               n->D[l - 1].ld, NULL, 0, NULL, 0, n->D[l - 1].data, n->D[l - 1].ld));
            }
        }
    }
    n->d_valid = 0;
    return NG_OK;
}

/* the public entry: a curvature-vector product, always FP32 (natgrad/backend.h ng_fp32_begin) */
ng_status ng_net_hvp(ng_model *m, const ng_tensor *v, ng_tensor *out) {
    int saved;
    ng_status s, e;
    NG_TRY(ng_fp32_begin(m->be, &saved));
    s = net_hvp_fp(m, v, out);
    e = ng_fp32_end(m->be, saved);
    return s != NG_OK ? s : e;
}

ng_status ng_net_backward_sampled(ng_model *m, uint64_t key, uint64_t step) {
    return ng_net_backward_sampled_at(m, key, step, 0);
}

static ng_status backward_sampled(ng_model *m, uint64_t key, uint64_t step, uint64_t col0, uint64_t *step_dev,
                                  uint64_t advance) {
    net *n = as_net(m);
    int c0, cols;
    NG_TRY(no_canonical(n, "the sampled backward pass"));
    NG_TRY(no_dist_bn(n, "the sampled backward pass", "the per-case statistics it feeds are not reduced across ranks"));
    NG_TRY(need_batch(n, "sampled backward"));
    if (n_chunks(n) != 1)
        return ng_error(NG_ERR_UNSUPPORTED, "network sampled backward: the batch (%d cases) is larger than one chunk (%d)",
                        n->m, n->cfg.chunk);
    NG_TRY(chunk_forward(n, 0, &c0, &cols, 0));
    NG_TRY(sample_targets_dev(n, cols, key, step, col0, step_dev, advance));
    NG_TRY(residual(n, n->T.data, n->T.ld, cols, 1.0f));
    NG_TRY_RANGE(NG_CAT_BACKWARD, "net backward", backward(n, cols, NULL, 0.0f));
    n->d_valid = 1;
    return NG_OK;
}

ng_status ng_net_backward_sampled_at(ng_model *m, uint64_t key, uint64_t step, uint64_t col0) {
    return backward_sampled(m, key, step, col0, NULL, 0);
}

ng_status ng_net_backward_sampled_dev(ng_model *m, uint64_t key, uint64_t *step_dev, uint64_t advance, uint64_t col0) {
    if (!step_dev) return ng_error(NG_ERR_INVALID_ARG, "network sampled backward: NULL device step");
    return backward_sampled(m, key, 0, col0, step_dev, advance);
}

static ng_status net_statistic(ng_model *m, const char *name, ng_tensor *out) {
    net *n = as_net(m);
    char *end;
    long l;
    NG_TRY(no_canonical(n, "a layer statistic"));
    NG_TRY(no_dist_bn(n, "a layer statistic", "its per-case batch-norm terms are not reduced across ranks"));
    if (!n->have_batch || n_chunks(n) != 1 || !fwd_in_buffers(n, n->x.data, n->m))
        return ng_error(NG_ERR_INVALID_ARG, "network statistic %s: needs a gradient of a batch of at most one chunk (%d cases) first",
                        name, n->cfg.chunk);
    if (strcmp(name, "y") == 0) {
        *out = ng_tensor_matrix(n->A[n->L].data, n->d[n->L], n->m, n->A[n->L].ld);
        return NG_OK;
    }
    if ((name[0] == 'a' || name[0] == 'g') && isdigit((unsigned char)name[1])) {
        l = strtol(name + 1, &end, 10);
        if (!*end && name[0] == 'a' && l >= 0 && l < n->L) {
            /* what layer l + 1 reads: whitened layers' statistics are those of their V */
            const ng_tensor *in = lin(n, (int)l + 1);
            *out = ng_tensor_matrix(in->data, n->d[l] + 1, n->m, in->ld);
            return NG_OK;
        }
        if (!*end && name[0] == 'g' && l >= 1 && l <= n->L) {
            if (!n->d_valid)
                return ng_error(NG_ERR_INVALID_ARG, "network statistic %s: no backward pass of the current batch", name);
            *out = ng_tensor_matrix(n->D[l].data, n->d[l], n->m, n->D[l].ld);
            return NG_OK;
        }
    }
    return ng_error(NG_ERR_INVALID_ARG, "network has no statistic named %s (a0..a%d, g1..g%d, y)", name, n->L - 1, n->L);
}

ng_status ng_net_batch_loss(ng_model *m, double *objective, double *error) {
    net *n = as_net(m);
    float acc[2];
    if (!n->have_batch) return ng_error(NG_ERR_INVALID_ARG, "network: no gradient computed yet");
    NG_TRY(ng_get(m->be, acc, n->acc.data, sizeof acc));
    *objective = (double)acc[0] / n->m;
    *error = (double)acc[1] / n->m;
    return NG_OK;
}

static const char *const net_columns[] = {"objective", "batch_error", "grad_norm", NULL};

static ng_status net_log_values(ng_model *m, uint64_t t, double *values) {
    float g;
    NG_TRY(ng_net_batch_loss(m, &values[0], &values[1]));
    NG_TRY(ng_nrm2(m->be, ng_model_size(m), m->grad_flat.data, &g));
    values[2] = g;
    return NG_OK;
}

/* ---- evaluation --------------------------------------------------------------------------- */

ng_status ng_net_evaluate(ng_model *m, const ng_tensor *x, double *objective, double *error) {
    net *n = as_net(m);
    int c0, N, ch = n->cfg.chunk;
    double so = 0.0, se = 0.0;
    float acc[2];
    NG_TRY(check_batch(n, x, NULL, "evaluate"));
    N = x->cols;
    n->fwd_x = NULL;
    n->d_valid = 0;
    for (c0 = 0; c0 < N; c0 += ch) {
        int cols = N - c0 < ch ? N - c0 : ch, ldt;
        const float *xc = x->data + (size_t)c0 * x->ld;
        const float *t = targets_of(n, xc, x->ld, NULL, 0, &ldt);
        NG_TRY_RANGE(NG_CAT_FORWARD, "net forward", forward(n, xc, x->ld, cols, 1, 0));
        NG_TRY(loss_chunk(n, t, ldt, cols, 1.0f, NULL, 1, 0.0f));
        /* sums per chunk on the host in double (one wait per chunk) */
        NG_TRY(ng_get(m->be, acc, n->acc.data + 0, sizeof acc));
        so += acc[0];
        se += acc[1];
    }
    *objective = so / N;
    *error = se / N;
    return NG_OK;
}

int ng_net_evaluate_chunks(const ng_model *m, int cases) {
    const net *n = as_cnet(m);
    return cases < 1 ? 0 : (cases + n->cfg.chunk - 1) / n->cfg.chunk;
}

/* ng_net_evaluate's device work: the same passes and loss ops, each chunk's sums written by the
 * loss op itself (acc_beta 0) into sums + 2 c instead of acc, so no host read and no extra launch */
ng_status ng_net_evaluate_dev(ng_model *m, const ng_tensor *x, float *sums) {
    net *n = as_net(m);
    int c0, N, ch = n->cfg.chunk;
    NG_TRY(check_batch(n, x, NULL, "evaluate"));
    if (!sums) return ng_error(NG_ERR_INVALID_ARG, "network evaluate: NULL device sums");
    N = x->cols;
    n->fwd_x = NULL;
    n->d_valid = 0;
    for (c0 = 0; c0 < N; c0 += ch) {
        int cols = N - c0 < ch ? N - c0 : ch, ldt;
        const float *xc = x->data + (size_t)c0 * x->ld;
        const float *t = targets_of(n, xc, x->ld, NULL, 0, &ldt);
        ng_op_args o;
        NG_TRY_RANGE(NG_CAT_FORWARD, "net forward", forward(n, xc, x->ld, cols, 1, 0));
        memset(&o, 0, sizeof o);
        NG_TRY(loss_op_args(n, t, ldt, cols, 1.0f, NULL, 1, 1, 0.0f, &o));
        o.loss.acc = sums + 2 * (size_t)(c0 / ch);
        NG_TRY(ng_run_op(n->base.be, &o));
    }
    return NG_OK;
}

ng_status ng_net_evaluate_read(ng_model *m, int cases, const float *sums, double *objective, double *error) {
    float h[64];
    double so = 0.0, se = 0.0;
    int K = ng_net_evaluate_chunks(m, cases), c, j;
    if (K < 1 || !sums) return ng_error(NG_ERR_INVALID_ARG, "network evaluate: %d cases, sums %p", cases, (const void *)sums);
    /* in pieces of 32 chunks, summed in double in chunk order as ng_net_evaluate sums them */
    for (c = 0; c < K; c += 32) {
        int k = K - c < 32 ? K - c : 32;
        NG_TRY(ng_get(m->be, h, sums + 2 * (size_t)c, 2 * (size_t)k * sizeof(float)));
        for (j = 0; j < k; j++) {
            so += h[2 * j];
            se += h[2 * j + 1];
        }
    }
    *objective = so / cases;
    *error = se / cases;
    return NG_OK;
}

typedef struct eval_ctx {
    ng_model *m; /* first: ng_model_seg_state_get */
    const ng_tensor *x;
    float *sums;
} eval_ctx;
static ng_status eval_body(void *user) {
    eval_ctx *c = (eval_ctx *)user;
    return ng_net_evaluate_dev(c->m, c->x, c->sums);
}

ng_status ng_net_evaluate_seg(struct ng_graph_segs *segs, const char *name, ng_model *m, const ng_tensor *x,
                              float **sums, size_t *cap, double *objective) {
    const ng_graph_seg seg = {name, eval_body, ng_model_seg_state_get, ng_model_seg_state_set};
    eval_ctx c;
    uint64_t key[5];
    double e;
    const size_t need = 2 * (size_t)ng_net_evaluate_chunks(m, x->cols);
    if (need > *cap) { /* outside the segment: a bigger batch than before */
        if (*sums) ng_free(m->be, *sums);
        *sums = NULL;
        *cap = 0;
        NG_TRY(ng_alloc(m->be, need * sizeof(float), (void **)sums));
        *cap = need;
    }
    c.m = m;
    c.x = x;
    c.sums = *sums;
    key[0] = ng_graph_key_ptr(x->ptr);
    key[1] = (uint64_t)(uint32_t)x->rows << 32 | (uint32_t)x->cols;
    key[2] = (uint64_t)(uint32_t)x->ld;
    key[3] = ng_graph_key_ptr(m->param_flat.data);
    key[4] = ng_graph_key_ptr(*sums);
    NG_TRY(ng_graph_seg_run(segs, &seg, &c, key, 5));
    return ng_net_evaluate_read(m, x->cols, *sums, objective, &e);
}

ng_status ng_net_predict(ng_model *m, const ng_tensor *x, ng_tensor *y) {
    net *n = as_net(m);
    int c0, N, ch = n->cfg.chunk, L = n->L;
    if (!x || !x->ptr || x->rows < n->d[0] || x->cols < 1)
        return ng_error(NG_ERR_INVALID_ARG, "network predict: inputs must have at least %d rows", n->d[0]);
    N = x->cols;
    if (!y || !y->ptr || y->rows != n->d[L] || y->cols != N)
        return ng_error(NG_ERR_INVALID_ARG, "network predict: outputs must be %d x %d", n->d[L], N);
    n->fwd_x = NULL;
    n->d_valid = 0;
    for (c0 = 0; c0 < N; c0 += ch) {
        int cols = N - c0 < ch ? N - c0 : ch;
        NG_TRY_RANGE(NG_CAT_FORWARD, "net forward", forward(n, x->data + (size_t)c0 * x->ld, x->ld, cols, 1, 0));
        NG_TRY(act_fwd(m->be, n->d[L], cols, NG_ACT_LINEAR, n->A[L].data, n->A[L].ld, NULL, NULL,
                       y->data + (size_t)c0 * y->ld, y->ld));
    }
    return NG_OK;
}

/* ---- whitened layers: the reparametrisation of PRONG (Algorithm 1) ------------------------ */

/* The forward pass up to layer last (A[0..last]) for the whitening statistics: training mode,
 * running batch-norm averages untouched, inside the TF32 scope like every forward pass. */
static ng_status stats_forward(net *n, const float *x, int ldx, int cols, int last) {
    int saved, l;
    ng_status s = NG_OK, e;
    NG_TRY(ng_tf32_begin(n->base.be, &saved));
    if (x) s = act_fwd(n->base.be, n->d[0], cols, NG_ACT_LINEAR, x, ldx, NULL, NULL, n->A[0].data, n->A[0].ld);
    for (l = x ? 1 : last; l <= last && s == NG_OK; l++) s = forward_layer(n, l, cols, 0, 0);
    e = ng_tf32_end(n->base.be, saved);
    return s != NG_OK ? s : e;
}

/* Statistics of the inputs of layers lo..hi over the samples x (forward passes chunk by chunk up
 * to layer hi - 1, the last one whose output they need). */
static ng_status whiten_stats(net *n, const ng_tensor *x, int lo, int hi, struct ng_comm *comm) {
    int c0, N = x->cols, ch = n->cfg.chunk, l;
    NG_TRY(dist_one_chunk(n, N, "PRONG statistics"));
    for (l = lo; l <= hi; l++) ng_whiten_reset(&n->wh[l]);
    for (c0 = 0; c0 < N; c0 += ch) {
        int cols = N - c0 < ch ? N - c0 : ch;
        NG_TRY(stats_forward(n, x->data + (size_t)c0 * x->ld, x->ld, cols, hi - 1));
        for (l = lo; l <= hi; l++) NG_TRY(ng_whiten_add(&n->wh[l], n->A[l - 1].data, n->A[l - 1].ld, cols, 0));
    }
    /* several ranks: each holds its share of the samples; merge them exactly */
    for (l = lo; l <= hi; l++) NG_TRY(ng_whiten_allreduce(&n->wh[l], comm));
    return NG_OK;
}

/* UhT[l] = [U^T; -(U c)^T] and c[l] = c from the statistics' last compute */
static ng_status whiten_store(net *n, int l) {
    ng_backend *be = n->base.be;
    ng_whiten *w = &n->wh[l];
    int d = n->d[l - 1];
    NG_TRY(act_fwd(be, d, d, NG_ACT_LINEAR, w->UT.data, d, NULL, NULL, n->UhT[l].data, d + 1));
    NG_TRY(ng_gemm(be, 0, 1, 1, d, 1, -1.0f, w->ones.data, 1, w->uc.data, d, 0.0f, n->UhT[l].data + d, d + 1));
    return ng_copy(be, n->wc[l].data, w->mean.data, (size_t)d * sizeof(float));
}

/* Canonical form: K[l] = U-tilde^T U-tilde = UhT UhT^T + e e^T (e the last unit vector) */
static ng_status canon_k(net *n, int l) {
    ng_backend *be = n->base.be;
    int d = n->d[l - 1];
    float *K = n->K[l].data;
    NG_TRY(ng_gemm(be, 0, 1, d + 1, d + 1, d, 1.0f, n->UhT[l].data, d + 1, n->UhT[l].data, d + 1, 0.0f, K, d + 1));
    return ng_axpby(be, 1, 1.0f, n->wh[l].ones.data, 1.0f, K + (size_t)d * (size_t)(d + 2));
}

/* Canonical form, whitened initialisation of layer l from U = I, c = 0 (V = W, d = b kept): W <- W U,
 * b <- b - W c (batch-normalised layers: the running mean moves by + W c instead, as the pre-
 * normalisation values do) */
static ng_status canon_init_layer(net *n, int l) {
    ng_backend *be = n->base.be;
    ng_whiten *w = &n->wh[l];
    int d = n->d[l - 1], dl = n->d[l];
    NG_TRY(ng_gemm(be, 0, 1, dl, d, d, 1.0f, n->W[l].data, dl, w->UT.data, d, 0.0f, n->S3.data, dl));
    NG_TRY(ng_copy(be, n->W[l].data, n->S3.data, (size_t)dl * (size_t)d * sizeof(float)));
    if (has_bn(n, l)) return ng_gemv(be, 0, dl, d, 1.0f, n->W[l].data, dl, w->mean.data, 1.0f, n->rmean[l].data);
    return ng_gemv(be, 0, dl, d, -1.0f, n->W[l].data, dl, w->mean.data, 1.0f, n->b[l].data);
}

/* add the seconds since *t0 to *acc (after the device is done), restart the clock */
static ng_status lap(ng_backend *be, double *acc, double *t0) {
    double t;
    if (!acc) return NG_OK;
    NG_TRY(ng_synchronize(be));
    t = ng_time_s();
    *acc += t - *t0;
    *t0 = t;
    return NG_OK;
}

/* Section 4.1's whitened initialisation: whiten layer by layer from the input up, keeping V and d.
 * Whitening layer l changes the outputs of layers l.. only, so when the samples fit one chunk a
 * single forward pass serves every layer: the statistics of layer l's input, then U_l, then layer
 * l's forward step on the kept A[l-1]. Longer sample sets take one pass per layer, up to l - 1. */
static ng_status whiten_layerwise(net *n, const ng_tensor *x, float eps, double *times, double *t0, struct ng_comm *comm) {
    ng_backend *be = n->base.be;
    int l, L = n->L, one = x->cols <= n->cfg.chunk;
    if (one) NG_TRY_RANGE(NG_CAT_STATS, "prong statistics", stats_forward(n, x->data, x->ld, x->cols, 0));
    for (l = 1; l <= L; l++) {
        if (one) {
            ng_whiten_reset(&n->wh[l]);
            if (l > 1) NG_TRY_RANGE(NG_CAT_STATS, "prong statistics", stats_forward(n, NULL, 0, x->cols, l - 1));
            NG_TRY_RANGE(NG_CAT_STATS, "prong statistics", ng_whiten_add(&n->wh[l], n->A[l - 1].data, n->A[l - 1].ld, x->cols, 0));
            NG_TRY_RANGE(NG_CAT_COMM, "prong statistics all-reduce", ng_whiten_allreduce(&n->wh[l], comm));
        } else {
            NG_TRY_RANGE(NG_CAT_STATS, "prong statistics", whiten_stats(n, x, l, l, comm));
        }
        NG_TRY(lap(be, times ? &times[0] : NULL, t0));
        {
            ng_whiten *one_w = &n->wh[l];
            NG_TRY_RANGE(NG_CAT_INVERSE, "prong eigendecomposition", ng_whiten_compute_shared(&one_w, 1, eps, comm));
        }
        if (n->cfg.whiten == 2) NG_TRY(canon_init_layer(n, l));
        NG_TRY(whiten_store(n, l));
        if (n->cfg.whiten == 2) NG_TRY(canon_k(n, l));
        NG_TRY(lap(be, times ? &times[1] : NULL, t0));
    }
    return NG_OK;
}

/* Algorithm 1 line 10 for layer l after its U_new (line 9: ng_whiten_compute_shared, batched): V, d
 * (or the running batch-norm mean) changed so that the layer computes the same function. */
static ng_status whiten_project(net *n, int l) {
    ng_backend *be = n->base.be;
    ng_whiten *w = &n->wh[l];
    int d = n->d[l - 1], dl = n->d[l];
    NG_TRY(ng_whiten_uinv(w, n->S1.data, d));
    /* t = U_old (c_new - c_old); d += V_old t (line 10's bias, = b + W c_new), or the running
     * batch-norm mean -= V_old t */
    NG_TRY(ng_copy(be, n->dc.data, w->mean.data, (size_t)d * sizeof(float)));
    NG_TRY(ng_axpby(be, (size_t)d, -1.0f, n->wc[l].data, 1.0f, n->dc.data));
    NG_TRY(ng_gemv(be, 1, d, d, 1.0f, n->UhT[l].data, d + 1, n->dc.data, 0.0f, n->S3.data));
    if (has_bn(n, l)) NG_TRY(ng_gemv(be, 0, dl, d, -1.0f, n->W[l].data, dl, n->S3.data, 1.0f, n->rmean[l].data));
    else NG_TRY(ng_gemv(be, 0, dl, d, 1.0f, n->W[l].data, dl, n->S3.data, 1.0f, n->b[l].data));
    /* V <- V_old U_old U_new^-1 (lines 7 and 10), in the cheaper order: (U_old U_new^-1) first
     * costs d^3 + dl d^2 multiply-adds, (V_old U_old) first 2 dl d^2 */
    if ((double)d * d * d + (double)dl * d * d <= 2.0 * dl * d * d) {
        NG_TRY(ng_gemm(be, 1, 0, d, d, d, 1.0f, n->UhT[l].data, d + 1, n->S1.data, d, 0.0f, n->S2.data, d));
        NG_TRY(ng_gemm(be, 0, 0, dl, d, d, 1.0f, n->W[l].data, dl, n->S2.data, d, 0.0f, n->S3.data, dl));
    } else {
        NG_TRY(ng_gemm(be, 0, 1, dl, d, d, 1.0f, n->W[l].data, dl, n->UhT[l].data, d + 1, 0.0f, n->S2.data, dl));
        NG_TRY(ng_gemm(be, 0, 0, dl, d, d, 1.0f, n->S2.data, dl, n->S1.data, d, 0.0f, n->S3.data, dl));
    }
    NG_TRY(ng_copy(be, n->W[l].data, n->S3.data, (size_t)dl * (size_t)d * sizeof(float)));
    return whiten_store(n, l);
}

ng_status ng_net_whiten_refresh(ng_model *m, const ng_tensor *x, float eps, int keep_function, double *times) {
    return ng_net_whiten_refresh_comm(m, x, eps, keep_function, times, NULL);
}

ng_status ng_net_whiten_refresh_comm(ng_model *m, const ng_tensor *x, float eps, int keep_function, double *times,
                                     struct ng_comm *comm) {
    net *n = as_net(m);
    ng_backend *be = m->be;
    ng_whiten *all[NG_NET_MAX_LAYERS + 1];
    int l, L;
    double t0 = ng_time_s();
    if (m->iface != &net_iface) return ng_error(NG_ERR_INVALID_ARG, "ng_net_whiten_refresh: model %s is not a network", m->iface->kind);
    if (!n->cfg.whiten) return ng_error(NG_ERR_INVALID_ARG, "network whitening refresh: this network has no whitened layers (cfg.whiten = 0)");
    if (!(eps > 0.0f) || !isfinite(eps)) return ng_error(NG_ERR_INVALID_ARG, "network whitening: eps %g must be positive and finite", (double)eps);
    if (!x || !x->ptr || x->dtype != NG_F32 || x->cols < 1 || x->rows < n->d[0])
        return ng_error(NG_ERR_INVALID_ARG, "network whitening: the samples must be a float32 matrix with at least %d rows and one column", n->d[0]);
    L = n->L;
    n->fwd_x = NULL;
    n->d_valid = 0;
    if (!keep_function) {
        if (n->cfg.whiten == 2 && !n->w_identity)
            return ng_error(NG_ERR_INVALID_ARG, "network whitening: the whitened initialisation (keep_function = 0) of the canonical form "
                            "needs the state of a new network (U = I, c = 0)");
        n->w_identity = 0;
        return whiten_layerwise(n, x, eps, times, &t0, comm);
    }
    /* the canonical network is unchanged by the projection, so one pass (up to layer L - 1) gives
     * every layer's statistics (line 8) */
    n->w_identity = 0;
    NG_TRY_RANGE(NG_CAT_STATS, "prong statistics", whiten_stats(n, x, 1, L, comm));
    NG_TRY(lap(be, times ? &times[0] : NULL, &t0));
    /* line 9 for every layer (on several ranks each eigendecomposition by its owner, broadcast) */
    for (l = 1; l <= L; l++) all[l - 1] = &n->wh[l];
    NG_TRY_RANGE(NG_CAT_INVERSE, "prong eigendecomposition", ng_whiten_compute_shared(all, L, eps, comm));
    for (l = 1; l <= L; l++) {
        if (n->cfg.whiten == 1) {
            NG_TRY_RANGE(NG_CAT_INVERSE, "prong projection", whiten_project(n, l));
            continue;
        }
        /* canonical form: W, b stay (the function is kept exactly); new U, c and K */
        NG_TRY(whiten_store(n, l));
        NG_TRY(canon_k(n, l));
    }
    return lap(be, times ? &times[1] : NULL, &t0);
}

ng_status ng_net_whiten_state(ng_model *m, int l, ng_tensor *UhT, ng_tensor *c) {
    net *n = as_net(m);
    if (m->iface != &net_iface || !n->cfg.whiten) return ng_error(NG_ERR_INVALID_ARG, "network whitening state: the network is not whitened");
    if (l < 1 || l > n->L) return ng_error(NG_ERR_INVALID_ARG, "network whitening state: layer %d (1..%d)", l, n->L);
    *UhT = n->UhT[l];
    *c = n->wc[l];
    return NG_OK;
}

ng_status ng_net_canonical(ng_model *m, ng_tensor *theta) {
    net *n = as_net(m);
    ng_backend *be = m->be;
    int l;
    if (m->iface != &net_iface) return ng_error(NG_ERR_INVALID_ARG, "ng_net_canonical: model %s is not a network", m->iface->kind);
    NG_TRY(check_vec(n, theta, "canonical parameters"));
    NG_TRY(ng_copy(be, theta->data, m->param_flat.data, ng_model_size(m) * sizeof(float)));
    if (n->cfg.whiten != 1) return NG_OK; /* the canonical form's parameters are W, b */
    for (l = 1; l <= n->L; l++) {
        int d = n->d[l - 1], dl = n->d[l];
        float *Wt = view_ptr(n, theta, n->idxW[l]);
        NG_TRY(ng_gemm(be, 0, 1, dl, d, d, 1.0f, n->W[l].data, dl, n->UhT[l].data, d + 1, 0.0f, Wt, dl));
        if (!has_bn(n, l)) NG_TRY(ng_gemv(be, 0, dl, d, -1.0f, Wt, dl, n->wc[l].data, 1.0f, view_ptr(n, theta, n->idxW[l] + 1)));
    }
    return NG_OK;
}

/* ---- checkpoints ---------------------------------------------------------------------------- */

static ng_status net_save(ng_model *m, ng_ckpt *c) {
    net *n = as_net(m);
    char spec[1024];
    float norm;
    /* a diverged network is never written over a good checkpoint */
    NG_TRY(ng_nrm2(m->be, ng_model_size(m), m->param_flat.data, &norm));
    if (!isfinite(norm))
        return ng_error(NG_ERR_NUMERIC, "network parameters hold NaN or Inf (diverged: lower --lr); not saved");
    NG_TRY(ng_ckpt_set_str(c, "net.spec", ng_net_spec_string(&n->cfg, spec, sizeof spec)));
    NG_TRY(ng_ckpt_set_str(c, "net.loss", ng_loss_name(n->cfg.loss)));
    NG_TRY(ng_ckpt_set_i64(c, "net.target", n->cfg.target));
    NG_TRY(ng_ckpt_set_f32(c, "net.bn_eps", n->cfg.bn_eps));
    NG_TRY(ng_ckpt_set_f32(c, "net.bn_momentum", n->cfg.bn_momentum));
    if (n->bn.count) NG_TRY(ng_ckpt_add_arena(c, "net.", &n->bn));
    NG_TRY(ng_ckpt_set_i64(c, "net.whiten", n->cfg.whiten));
    if (n->cfg.whiten) NG_TRY(ng_ckpt_add_arena(c, "net.", &n->wst));
    return NG_OK;
}

static ng_status net_load(ng_model *m, const ng_ckpt *c, int apply) {
    net *n = as_net(m);
    char spec[1024];
    const char *theirs = NULL, *loss = NULL;
    int64_t target;
    NG_TRY(ng_ckpt_get_str(c, "net.spec", &theirs));
    ng_net_spec_string(&n->cfg, spec, sizeof spec);
    if (strcmp(theirs, spec) != 0)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: network %s, this run builds %s", ng_ckpt_path(c), theirs, spec);
    NG_TRY(ng_ckpt_get_str(c, "net.loss", &loss));
    if (strcmp(loss, ng_loss_name(n->cfg.loss)) != 0)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: field net.loss is %s, this run uses %s", ng_ckpt_path(c), loss,
                        ng_loss_name(n->cfg.loss));
    NG_TRY(ng_ckpt_get_int(c, "net.target", 0, 1, &target));
    if ((int)target != n->cfg.target)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: field net.target is %lld, this run uses %d", ng_ckpt_path(c),
                        (long long)target, n->cfg.target);
    if (n->bn.count) {
        NG_TRY(ng_ckpt_check_arena(c, "net.", &n->bn));
        if (apply) NG_TRY(ng_ckpt_load_arena(c, "net.", &n->bn));
    }
    {
        int64_t w = 0;
        if (ng_ckpt_has(c, "net.whiten")) NG_TRY(ng_ckpt_get_int(c, "net.whiten", 0, 2, &w));
        if ((int)w != n->cfg.whiten)
            return ng_error(NG_ERR_FORMAT, "checkpoint %s: field net.whiten is %lld, this run's is %d (0: plain, 1: whitened coordinates, "
                            "2: PRONG's canonical form; --prong-form must match the checkpoint's)", ng_ckpt_path(c), (long long)w, n->cfg.whiten);
        if (w) {
            NG_TRY(ng_ckpt_check_arena(c, "net.", &n->wst));
            if (apply) NG_TRY(ng_ckpt_load_arena(c, "net.", &n->wst));
            if (apply) n->w_identity = 0;
        }
    }
    if (apply) n->fwd_x = NULL, n->d_valid = 0;
    return NG_OK;
}

ng_status ng_net_config_from_ckpt(const ng_ckpt *c, ng_net_config *cfg) {
    const char *spec = NULL, *loss = NULL, *kind = NULL;
    int64_t target;
    int lc;
    NG_TRY(ng_ckpt_get_str(c, "model.kind", &kind));
    if (strcmp(kind, "net") != 0)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s holds a model of kind '%s', not a network", ng_ckpt_path(c), kind);
    NG_TRY(ng_ckpt_get_str(c, "net.spec", &spec));
    NG_TRY(ng_ckpt_get_str(c, "net.loss", &loss));
    NG_TRY(ng_ckpt_get_int(c, "net.target", 0, 1, &target));
    lc = ng_loss_parse(loss);
    if (lc < 0) return ng_error(NG_ERR_FORMAT, "checkpoint %s: field net.loss '%s' is not a loss", ng_ckpt_path(c), loss);
    if (ng_net_parse_spec(spec, NG_ACT_LOGISTIC, NG_ACT_LOGISTIC, cfg) != NG_OK)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: field net.spec: %s", ng_ckpt_path(c), ng_last_error());
    cfg->loss = lc;
    cfg->target = (int)target;
    if (ng_ckpt_has(c, "net.whiten")) {
        int64_t w;
        NG_TRY(ng_ckpt_get_int(c, "net.whiten", 0, 2, &w));
        cfg->whiten = (int)w;
    }
    NG_TRY(ng_ckpt_get_float(c, "net.bn_eps", 1e-12, 0.999, &cfg->bn_eps));
    NG_TRY(ng_ckpt_get_float(c, "net.bn_momentum", 1e-9, 1.0, &cfg->bn_momentum));
    if (ng_net_config_check(cfg) != NG_OK)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: %s", ng_ckpt_path(c), ng_last_error());
    return NG_OK;
}

static const struct ng_model_i net_iface = {
    .kind = "net",
    .gradient = net_gradient,
    .statistic = net_statistic,
    .columns = net_columns,
    .log_values = net_log_values,
    .jvp = ng_net_jvp,
    .gnvp = ng_net_gvp,
    .fvp = net_fvp,
    .hvp = ng_net_hvp,
    .save = net_save,
    .load = net_load,
    .destroy = net_destroy,
    .check_gradient = net_check_gradient,
    .graph_check = net_graph_check,
    .graph_state_get = net_graph_state_get,
    .graph_state_set = net_graph_state_set,
};
