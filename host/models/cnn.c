/* cnn.c: convolutional classifiers (natgrad/cnn.h), a model of natgrad/model.h.
 *
 * Buffers per chunk of `cols` images (workspace arena, allocated once):
 *   A[l]   (size_l, chunk)   output maps of layer l (N,C,H,W: one image per column); A[0] the
 *                            input copy; A[L] the logits z (the last layer is dense)
 *   D[l]   (size_l, chunk)   dL/dA[l] (D[L] = dL/dz = (y - t) / m)
 *   Y      (classes, chunk)  softmax(z)
 *   XH[l]  (c_l, chunk h w)  batch norm: xhat in channel-major (NHWC) layout, mean[l], rstd[l]
 *   col    (P K, chunk)      im2col of the current conv layer (the largest P K of the net)
 *   T1, T2                   NHWC scratch of batch norm (the largest map of the net)
 *   R[0], R[1] (max size_l, chunk)  R{A[l]} of the R-operator forward pass, ping-pong (layer l
 *                            reads R{A[l-1]} and writes R{A[l]}); TT (classes, chunk) sampled targets
 * A convolution is conv_gather IM2COL + one strided batched gemm (A_b (P, c') = col_b (P, K) W^T,
 * W (c', K) shared: stride 0) + the bias as a rank-1 batched gemm; its backward is a gemm per image
 * for dW (accumulated), a column sum for db, a batched gemm for dcol and COL2IM. Batch norm runs
 * the dense engine's row ops (row_moments, bn_normalize, bn_project) on the NHWC transpose, so
 * every pixel of a channel is a sample. Several ranks (ng_cnn_set_dist): batch norm synchronised
 * (the moments of the forward pass and the two sums of the backward pass all-reduced, host doubles),
 * augmentation by the case's global index, whitening statistics merged (natgrad/whiten.h), and the
 * curvature products' batch-norm sums all-reduced too (bn_sync_proj, bn_sync_mean: the R-forward
 * pass's sum R{x} and sum R{x} xhat, the backward pass's with any output derivative, every mean of
 * H v's R-backward pass), so each rank's J v and the share-weighted sums of the ranks' G v, F v
 * (exact, sampled, empirical) and H v are one process's over the global batch; the sampled F v draws
 * each case's targets by its global index.
 *
 * Curvature products (as the dense engine's, natgrad/net.h): J v by the R-operator forward pass
 * (rforward: conv and dense layers R{z} = V * a + V_b + W * R{a}, max pooling takes R{x} at the
 * window's argmax (conv_gather POOL_MAX_R), average pooling, activations and whitening are linear
 * maps of R{x}, batch norm in training mode differentiates through the batch mean and variance:
 * R{xhat} = rstd P(R{x}), P(g) = g - mean(g) - xhat mean(g xhat), R{y} = gamma R{xhat} + V_gamma
 * xhat + V_beta); G v = J^T H_L J v (the output Hessian of softmax + cross-entropy in closed form,
 * then the backward pass into the output vector); F v exact (= G v), sampled or empirical. They run
 * on the current batch (the last gradient's or ng_cnn_set_batch's) with batch norm on each chunk's
 * statistics and without augmentation; a single-chunk batch reuses its forward pass when the
 * buffers hold it (a gradient without augmentation, or set_batch).
 * Library code: never prints; a training step allocates nothing on the device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natgrad/cnn.h"
#include "natgrad/comm.h"
#include "natgrad/graph.h"
#include "natgrad/net.h"
#include "natgrad/profile.h"
#include "natgrad/rng.h"
#include "natgrad/whiten.h"

#include "bn_merge.h"

#define LMAX NG_CNN_MAX_LAYERS

typedef struct cnn {
    ng_model base;
    ng_cnn_config cfg;
    int L, classes;
    int c[LMAX + 1], h[LMAX + 1], w[LMAX + 1];
    size_t size[LMAX + 1];
    /* parameters: conv / dense W and b; batch norm gamma (in W) and beta (in b) */
    ng_tensor W[LMAX + 1], b[LMAX + 1], gW[LMAX + 1], gb[LMAX + 1];
    ng_arena ws;
    ng_tensor A[LMAX + 1], D[LMAX + 1], XH[LMAX + 1], mean[LMAX + 1], rstd[LMAX + 1];
    ng_tensor Y, col, T1, T2, vec, ones, obj;
    ng_tensor err;      /* (chunk) per-case misclassification of a gradient's chunk (0 / 1) */
    ng_tensor acc;      /* (4) [0] objective sum, [1] misclassified cases of the last gradient's batch,
                         * summed on the device by the loss op over the chunks (read by check_gradient
                         * and ng_cnn_batch_loss, never during the gradient) */
    ng_tensor aug_dev;  /* (2) 64-bit words in a float64 tensor: [0] the augmentation's Philox step
                         * (= gradients, advanced on the device by the last chunk's augmentation, so a
                         * captured CUDA graph replays with new crops), [1] the kernel's block ticket */
    ng_tensor R[2], TT; /* R-forward ping-pong (max size_l, chunk); sampled targets (classes, chunk) */
    ng_arena hws;       /* H v: RA[l] (size_l, chunk) = R{A[l]} of every layer, kept for R{backprop}
                         * (allocated at the first H v, once) */
    ng_tensor RA[LMAX + 1];
    const float *ra[LMAX + 1]; /* RA[l] or NULL where R{A[l]} = 0 (no parameter below layer l) */
    ng_tensor HB[5], HQ;       /* H v through batch norm: NHWC scratch (largest bn map, chunk) x 5,
                                * per-channel vectors (max c, 6) */
    ng_arena st; /* running batch-norm statistics and whitening state (checkpointed) */
    ng_tensor rmean[LMAX + 1], rrstd[LMAX + 1], UT[LMAX + 1], mu[LMAX + 1];
    ng_whiten wh[LMAX + 1]; /* statistics of each whitening layer's input (allocated at creation) */
    ng_tensor uinv;         /* (max c, max c) scratch: U^-1 of a new whitening */
    ng_tensor bnv;          /* (3 max c) scratch of synchronised batch norm */
    uint64_t img0;      /* stream index of the current chunk's first image (augmentation) */
    /* data parallelism (ng_cnn_set_dist): comm NULL or one rank = one process */
    ng_comm *comm;
    int dist_lo, dist_batch;   /* this rank's first case in the global batch, the global batch */
    double bn_total[LMAX + 1]; /* samples (pixels of every rank's images) of the last batch-norm pass */
    int cmax;
    double *hbn;               /* (6 cmax) host scratch of synchronised batch norm */
    float *hbf;                /* (4 cmax) */
    /* the NCCL communicator (bn_dev): the merge on the device (the bn_merge op), nothing read by the
     * host, so a CUDA graph holds it. bnd: float64 device scratch, each layer's merged samples of its
     * last forward pass (LMAX + 1), then acc (2 cmax + 1) and acc2 (cmax); bn_cnt: this rank's */
    double *bnd;
    int bn_cnt[LMAX + 1];
    int bn_cols; /* the cases of the last synchronised training-mode forward pass (bn_cnt[l] = bn_cols
                  * h[l-1] w[l-1] for batch norm l): graph state, a replayed pass does not set bn_cnt */
    uint64_t gradients; /* gradients computed (whitening schedule, augmentation stream) */
    int aug_ok;         /* 1: aug_dev[0] is known to equal gradients (0: rewritten before the next
                         * augmented gradient; never inside a CUDA graph capture) */
    int aug_advance;    /* the augmentation of the chunk being computed advances aug_dev (last chunk) */
    uint64_t g0;        /* gradients and aug_ok before the last gradient call (graph_discarded) */
    int aug_ok0;
    int last_chunk;     /* the gradient's last chunk runs backward: report each layer's gradient (grad_ready) */
    /* the batch of the curvature products: x (rows >= size_0), targets y or (have_cy 0) the rows
     * of x after the input; cached: A[], XH, mean, rstd hold its (single-chunk) forward pass */
    ng_tensor cx, cy;
    int have_cur, have_cy, cached;
    int cur_lo; /* its first case's position in the global batch (the sampled F v's draws): the
                 * gradient's shard starts at dist_lo; a batch of ng_cnn_set_batch at 0 */
    /* last gradient's batch */
    int have_batch, m;
    double obj_sum, miss;
    float *host; /* (2 classes chunk + chunk) */
    /* host scratch of ng_cnn_whiten's reparametrisation, sized at creation for the largest
     * whitening layer (d channels, next layer W (co, d T)): whd (3 d^2 + 2 d), whf (4 d^2 + 2 d +
     * co d T + co) */
    double *whd;
    float *whf;
} cnn;

static const struct ng_model_i cnn_iface;
static cnn *as_cnn(ng_model *m) { return (cnn *)m; }
static ng_status sync_aug(cnn *n);

/* ---- configuration ------------------------------------------------------------------------ */

void ng_cnn_config_default(ng_cnn_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->c = 1;
    cfg->h = 28;
    cfg->w = 28;
    cfg->chunk = 64;
    cfg->bn_eps = 1e-5f;
    cfg->bn_momentum = 0.1f;
    cfg->whiten_eps = 0.1f;
    cfg->whiten_samples = 1000;
    cfg->seed = 1;
}

/* "<prefix><int>" then optional "<letter><int>" suffixes from `letters`; -1 for absent ones. */
static int parse_num(const char **p, long *v) {
    char *end;
    if (**p < '0' || **p > '9') return 0;
    *v = strtol(*p, &end, 10);
    *p = end;
    return *v >= 1 && *v <= 100000;
}

ng_status ng_cnn_parse_spec(const char *spec, ng_cnn_config *cfg) {
    char buf[1024], *tok, *save = NULL;
    int n = 0;
    if (!spec || !*spec) return ng_error(NG_ERR_INVALID_ARG, "cnn spec is empty");
    if (strlen(spec) >= sizeof buf) return ng_error(NG_ERR_INVALID_ARG, "cnn spec longer than %zu characters", sizeof buf - 1);
    strcpy(buf, spec);
    for (tok = strtok_r(buf, "-", &save); tok; tok = strtok_r(NULL, "-", &save)) {
        ng_cnn_layer ly;
        const char *p = tok;
        long v;
        int act;
        memset(&ly, 0, sizeof ly);
        if (n == LMAX) return ng_error(NG_ERR_INVALID_ARG, "cnn spec '%s': more than %d layers", spec, LMAX);
        if ((act = ng_act_parse(tok)) >= 0 && act != NG_ACT_SOFTMAX) {
            ly.kind = NG_CNN_ACT;
            ly.act = act;
        } else if (strcmp(tok, "bn") == 0) {
            ly.kind = NG_CNN_BN;
        } else if (strcmp(tok, "w") == 0) {
            ly.kind = NG_CNN_WHITEN;
        } else if (tok[0] == 'c' || tok[0] == 'd') {
            ly.kind = tok[0] == 'c' ? NG_CNN_CONV : NG_CNN_DENSE;
            p++;
            if (!parse_num(&p, &v)) return ng_error(NG_ERR_INVALID_ARG, "cnn spec '%s': token '%s' needs a size (c32, d128)", spec, tok);
            ly.out = (int)v;
            ly.k = 3;
            ly.stride = 1;
            ly.pad = -1;
            while (ly.kind == NG_CNN_CONV && *p) {
                char l = *p++;
                if ((l != 'k' && l != 's' && l != 'p') || !(l == 'p' ? (*p >= '0' && *p <= '9' && (v = strtol(p, (char **)&p, 10), v >= 0 && v <= 1000)) : parse_num(&p, &v)))
                    return ng_error(NG_ERR_INVALID_ARG, "cnn spec '%s': bad conv token '%s' (c<maps>[k<window>][s<stride>][p<pad>])", spec, tok);
                if (l == 'k') ly.k = (int)v;
                else if (l == 's') ly.stride = (int)v;
                else ly.pad = (int)v;
            }
            if (*p) return ng_error(NG_ERR_INVALID_ARG, "cnn spec '%s': bad dense token '%s' (d<units>)", spec, tok);
            if (ly.kind == NG_CNN_CONV && ly.pad < 0) ly.pad = ly.k / 2;
            if (ly.kind == NG_CNN_DENSE) ly.k = ly.stride = 1, ly.pad = 0;
        } else if ((tok[0] == 'm' || tok[0] == 'a') && tok[1] == 'p') {
            ly.kind = tok[0] == 'm' ? NG_CNN_POOL_MAX : NG_CNN_POOL_AVG;
            p += 2;
            if (!parse_num(&p, &v)) return ng_error(NG_ERR_INVALID_ARG, "cnn spec '%s': token '%s' needs a window (mp2)", spec, tok);
            ly.k = ly.stride = (int)v;
            if (*p == 's') {
                p++;
                if (!parse_num(&p, &v)) return ng_error(NG_ERR_INVALID_ARG, "cnn spec '%s': bad stride in '%s'", spec, tok);
                ly.stride = (int)v;
            }
            if (*p) return ng_error(NG_ERR_INVALID_ARG, "cnn spec '%s': bad pooling token '%s' (mp<k>[s<stride>], ap<k>)", spec, tok);
        } else {
            return ng_error(NG_ERR_INVALID_ARG,
                            "cnn spec '%s': unknown token '%s' (c<maps>[k][s][p], mp<k>, ap<k>, relu, tanh, logistic, linear, bn, w, d<units>)",
                            spec, tok);
        }
        cfg->layer[n++] = ly;
    }
    cfg->n_layers = n;
    return NG_OK;
}

const char *ng_cnn_spec_string(const ng_cnn_config *cfg, char *buf, size_t len) {
    size_t at = 0;
    int l;
    buf[0] = 0;
    for (l = 0; l < cfg->n_layers && at < len; l++) {
        const ng_cnn_layer *y = &cfg->layer[l];
        const char *sep = l ? "-" : "";
        int k = 0;
        switch (y->kind) {
        case NG_CNN_CONV: k = snprintf(buf + at, len - at, "%sc%dk%ds%dp%d", sep, y->out, y->k, y->stride, y->pad); break;
        case NG_CNN_POOL_MAX:
        case NG_CNN_POOL_AVG:
            k = snprintf(buf + at, len - at, "%s%sp%ds%d", sep, y->kind == NG_CNN_POOL_MAX ? "m" : "a", y->k, y->stride);
            break;
        case NG_CNN_ACT: k = snprintf(buf + at, len - at, "%s%s", sep, ng_act_name(y->act)); break;
        case NG_CNN_BN: k = snprintf(buf + at, len - at, "%sbn", sep); break;
        case NG_CNN_WHITEN: k = snprintf(buf + at, len - at, "%sw", sep); break;
        default: k = snprintf(buf + at, len - at, "%sd%d", sep, y->out); break;
        }
        if (k < 0) break;
        at += (size_t)k;
    }
    return buf;
}

static int out_dim(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

/* Shapes after every layer; NG_OK or an error naming the layer. */
static ng_status shapes(const ng_cnn_config *cfg, int *c, int *h, int *w) {
    int l;
    c[0] = cfg->c, h[0] = cfg->h, w[0] = cfg->w;
    for (l = 1; l <= cfg->n_layers; l++) {
        const ng_cnn_layer *y = &cfg->layer[l - 1];
        c[l] = c[l - 1], h[l] = h[l - 1], w[l] = w[l - 1];
        if (y->kind == NG_CNN_CONV || y->kind == NG_CNN_POOL_MAX || y->kind == NG_CNN_POOL_AVG) {
            if (y->k < 1 || y->stride < 1 || y->pad < 0 || y->pad >= y->k)
                return ng_error(NG_ERR_INVALID_ARG, "cnn layer %d: window %d, stride %d, pad %d (need pad < window)", l, y->k,
                                y->stride, y->pad);
            if (h[l - 1] + 2 * y->pad < y->k || w[l - 1] + 2 * y->pad < y->k)
                return ng_error(NG_ERR_INVALID_ARG, "cnn layer %d: window %d larger than its %dx%d input maps (padded by %d)", l,
                                y->k, h[l - 1], w[l - 1], y->pad);
            h[l] = out_dim(h[l - 1], y->k, y->stride, y->pad);
            w[l] = out_dim(w[l - 1], y->k, y->stride, y->pad);
            if (y->kind == NG_CNN_CONV) c[l] = y->out;
        } else if (y->kind == NG_CNN_DENSE) {
            c[l] = y->out, h[l] = 1, w[l] = 1;
        }
    }
    return NG_OK;
}

ng_status ng_cnn_config_check(const ng_cnn_config *cfg) {
    int c[LMAX + 1], h[LMAX + 1], w[LMAX + 1], l;
    if (cfg->c < 1 || cfg->h < 1 || cfg->w < 1 || (double)cfg->c * cfg->h * cfg->w > 1e7)
        return ng_error(NG_ERR_INVALID_ARG, "cnn input %dx%dx%d: need channels, height and width >= 1", cfg->c, cfg->h, cfg->w);
    if (cfg->n_layers < 1 || cfg->n_layers > LMAX) return ng_error(NG_ERR_INVALID_ARG, "cnn: %d layers (1..%d)", cfg->n_layers, LMAX);
    if (cfg->layer[cfg->n_layers - 1].kind != NG_CNN_DENSE)
        return ng_error(NG_ERR_INVALID_ARG, "cnn: the last layer must be dense (d<classes>), softmax is implied");
    if (cfg->layer[cfg->n_layers - 1].out < 2) return ng_error(NG_ERR_INVALID_ARG, "cnn: the output layer needs >= 2 classes");
    if (cfg->chunk < 1 || cfg->chunk > 65536) return ng_error(NG_ERR_INVALID_ARG, "cnn: chunk %d (1..65536)", cfg->chunk);
    if (!(cfg->bn_eps > 0.0f && cfg->bn_eps < 1.0f)) return ng_error(NG_ERR_INVALID_ARG, "cnn: bn-eps %g must be in (0, 1)", (double)cfg->bn_eps);
    if (!(cfg->bn_momentum > 0.0f && cfg->bn_momentum <= 1.0f))
        return ng_error(NG_ERR_INVALID_ARG, "cnn: bn-momentum %g must be in (0, 1]", (double)cfg->bn_momentum);
    if (!(cfg->whiten_eps > 0.0f && cfg->whiten_eps < 1e6f))
        return ng_error(NG_ERR_INVALID_ARG, "cnn: whiten-eps %g must be > 0", (double)cfg->whiten_eps);
    if (cfg->whiten_every < 0 || cfg->whiten_samples < 1)
        return ng_error(NG_ERR_INVALID_ARG, "cnn: whiten-every %d must be >= 0 and whiten-samples %d >= 1", cfg->whiten_every,
                        cfg->whiten_samples);
    if (cfg->augment_pad < 0 || cfg->augment_pad > 64 || (cfg->augment_flip != 0 && cfg->augment_flip != 1))
        return ng_error(NG_ERR_INVALID_ARG, "cnn: augment-pad %d must be in 0..64 and flip %d 0 or 1", cfg->augment_pad,
                        cfg->augment_flip);
    NG_TRY(shapes(cfg, c, h, w));
    if (cfg->whiten_every > 0) {
        int any = 0;
        for (l = 0; l < cfg->n_layers; l++) any |= cfg->layer[l].kind == NG_CNN_WHITEN;
        if (!any) return ng_error(NG_ERR_INVALID_ARG, "cnn: whiten-every %d but the spec has no whitening layer (w)", cfg->whiten_every);
    }
    for (l = 1; l <= cfg->n_layers; l++) {
        const ng_cnn_layer *y = &cfg->layer[l - 1];
        if ((double)c[l] * h[l] * w[l] > 1e8) return ng_error(NG_ERR_INVALID_ARG, "cnn layer %d: output too large", l);
        if (y->kind == NG_CNN_CONV && (double)c[l - 1] * y->k * y->k * h[l] * w[l] > 1e8)
            return ng_error(NG_ERR_INVALID_ARG, "cnn layer %d: im2col matrix too large", l);
        if (y->kind == NG_CNN_WHITEN) {
            const ng_cnn_layer *nx = l < cfg->n_layers ? &cfg->layer[l] : NULL;
            if (!nx || !(nx->kind == NG_CNN_DENSE || (nx->kind == NG_CNN_CONV && nx->pad == 0)))
                return ng_error(NG_ERR_INVALID_ARG,
                                "cnn layer %d: a whitening layer must be followed by a conv with pad 0 (p0) or a dense layer "
                                "(the reparametrisation keeps the function only there)", l);
        }
    }
    return NG_OK;
}

void ng_cnn_layer_shape(const ng_cnn_config *cfg, int l, int *c, int *h, int *w) {
    int cc[LMAX + 1], hh[LMAX + 1], ww[LMAX + 1];
    if (shapes(cfg, cc, hh, ww) != NG_OK || l < 0 || l > cfg->n_layers) {
        *c = *h = *w = 0;
        return;
    }
    *c = cc[l], *h = hh[l], *w = ww[l];
}

int ng_cnn_classes(const ng_cnn_config *cfg) { return cfg->n_layers ? cfg->layer[cfg->n_layers - 1].out : 0; }

/* ---- creation ----------------------------------------------------------------------------- */

static ng_status reserve(ng_arena *a, const char *fmt, int l, size_t rows, int cols, ng_tensor *t) {
    char name[48];
    snprintf(name, sizeof name, fmt, l);
    if (rows > 2147483647u) return ng_error(NG_ERR_INVALID_ARG, "cnn: buffer %s too large", name);
    return ng_arena_reserve(a, name, (int)rows, cols, t);
}

static ng_status init_params(cnn *n) {
    const ng_cnn_config *c = &n->cfg;
    uint64_t key = ng_rng_stream_key(c->seed, NG_RNG_INIT_WEIGHTS);
    int l;
    for (l = 1; l <= n->L; l++) {
        const ng_cnn_layer *y = &c->layer[l - 1];
        if (y->kind == NG_CNN_CONV || y->kind == NG_CNN_DENSE) {
            const size_t rows = (size_t)n->W[l].rows, cols = (size_t)n->W[l].cols, count = rows * cols;
            const double fan_out = (double)rows * (y->kind == NG_CNN_CONV ? y->k * y->k : 1);
            const double lim = sqrt(6.0 / ((double)cols + fan_out));
            float *w = (float *)malloc(count * sizeof(float));
            size_t i;
            if (!w) return ng_error(NG_ERR_OOM, "cnn: no host memory to initialise layer %d", l);
            for (i = 0; i < count; i++) w[i] = (float)(lim * (2.0 * (double)ng_rng_uniform(key, (uint64_t)l, i) - 1.0));
            NG_TRY(ng_tensor_set(n->base.be, &n->W[l], w));
            free(w);
            NG_TRY(ng_fill(n->base.be, (size_t)n->c[l], 0.0f, n->b[l].data));
        } else if (y->kind == NG_CNN_BN) {
            NG_TRY(ng_fill(n->base.be, (size_t)n->c[l], 1.0f, n->W[l].data));
            NG_TRY(ng_fill(n->base.be, (size_t)n->c[l], 0.0f, n->b[l].data));
            NG_TRY(ng_fill(n->base.be, (size_t)n->c[l], 0.0f, n->rmean[l].data));
            NG_TRY(ng_fill(n->base.be, (size_t)n->c[l], 1.0f, n->rrstd[l].data));
        } else if (y->kind == NG_CNN_WHITEN) {
            const int d = n->c[l];
            float *u = (float *)calloc((size_t)d * d, sizeof(float));
            int i;
            if (!u) return ng_error(NG_ERR_OOM, "cnn: no host memory to initialise layer %d", l);
            for (i = 0; i < d; i++) u[(size_t)i * d + i] = 1.0f;
            NG_TRY(ng_tensor_set(n->base.be, &n->UT[l], u));
            free(u);
            NG_TRY(ng_fill(n->base.be, (size_t)d, 0.0f, n->mu[l].data));
        }
    }
    return NG_OK;
}

ng_status ng_cnn_create(ng_backend *be, const ng_cnn_config *cfg, ng_model **out) {
    cnn *n;
    ng_status s = NG_OK;
    int l, ch;
    size_t col = 1, tmax = 1, vmax = 1, omax = 1, wmax = 1, rmax = 1;
    *out = NULL;
    NG_TRY(ng_cnn_config_check(cfg));
    n = (cnn *)calloc(1, sizeof *n);
    if (!n) return ng_error(NG_ERR_OOM, "cnn: out of host memory");
    n->cfg = *cfg;
    n->L = cfg->n_layers;
    n->classes = ng_cnn_classes(cfg);
    ch = cfg->chunk;
    (void)shapes(cfg, n->c, n->h, n->w);
    for (l = 0; l <= n->L; l++) n->size[l] = (size_t)n->c[l] * n->h[l] * n->w[l];
    ng_model_begin(&n->base, &cnn_iface, be);
    for (l = 1; l <= n->L && s == NG_OK; l++) {
        const ng_cnn_layer *y = &cfg->layer[l - 1];
        char name[32];
        int dv[1] = {n->c[l]};
        if (y->kind == NG_CNN_CONV || y->kind == NG_CNN_DENSE) {
            int dw[2] = {n->c[l], y->kind == NG_CNN_CONV ? n->c[l - 1] * y->k * y->k : (int)n->size[l - 1]};
            snprintf(name, sizeof name, "W%d", l);
            s = ng_model_add_param(&n->base, name, 2, dw, 1, &n->W[l], &n->gW[l]);
            snprintf(name, sizeof name, "b%d", l);
            if (s == NG_OK) s = ng_model_add_param(&n->base, name, 1, dv, 0, &n->b[l], &n->gb[l]);
        } else if (y->kind == NG_CNN_BN) {
            snprintf(name, sizeof name, "gamma%d", l);
            s = ng_model_add_param(&n->base, name, 1, dv, 0, &n->W[l], &n->gW[l]);
            snprintf(name, sizeof name, "beta%d", l);
            if (s == NG_OK) s = ng_model_add_param(&n->base, name, 1, dv, 0, &n->b[l], &n->gb[l]);
        }
    }
    if (s == NG_OK) s = ng_model_commit(&n->base);
    for (l = 1; l <= n->L; l++) {
        const ng_cnn_layer *y = &cfg->layer[l - 1];
        size_t hw = (size_t)n->h[l] * n->w[l];
        if (y->kind == NG_CNN_CONV) {
            size_t pk = hw * (size_t)n->c[l - 1] * y->k * y->k;
            if (pk > col) col = pk;
            if ((size_t)n->c[l] * ch > vmax) vmax = (size_t)n->c[l] * ch;
            if (hw > omax) omax = hw;
        }
        if (y->kind == NG_CNN_BN && n->size[l] > tmax) tmax = n->size[l];
        if (n->size[l] > rmax) rmax = n->size[l];
        if (y->kind == NG_CNN_WHITEN && (size_t)n->c[l] > wmax) wmax = (size_t)n->c[l];
    }
    if ((size_t)ch > omax) omax = (size_t)ch;
    ng_arena_begin(&n->ws, be, "cnn workspace");
    for (l = 0; l <= n->L && s == NG_OK; l++) {
        s = reserve(&n->ws, "A%d", l, n->size[l], ch, &n->A[l]);
        if (s == NG_OK) s = reserve(&n->ws, "D%d", l, n->size[l], ch, &n->D[l]);
        if (s == NG_OK && l >= 1 && cfg->layer[l - 1].kind == NG_CNN_BN) {
            s = reserve(&n->ws, "XH%d", l, (size_t)n->c[l], ch * n->h[l] * n->w[l], &n->XH[l]);
            if (s == NG_OK) s = reserve(&n->ws, "mean%d", l, (size_t)n->c[l], 1, &n->mean[l]);
            if (s == NG_OK) s = reserve(&n->ws, "rstd%d", l, (size_t)n->c[l], 1, &n->rstd[l]);
        }
    }
    if (s == NG_OK) s = reserve(&n->ws, "Y%d", 0, (size_t)n->classes, ch, &n->Y);
    if (s == NG_OK) s = reserve(&n->ws, "col%d", 0, col, ch, &n->col);
    if (s == NG_OK) s = reserve(&n->ws, "T1%d", 0, tmax, ch, &n->T1);
    if (s == NG_OK) s = reserve(&n->ws, "T2%d", 0, tmax, ch, &n->T2);
    if (s == NG_OK) s = reserve(&n->ws, "vec%d", 0, vmax, 1, &n->vec);
    if (s == NG_OK) s = reserve(&n->ws, "ones%d", 0, omax, 1, &n->ones);
    if (s == NG_OK) s = reserve(&n->ws, "obj%d", 0, (size_t)ch, 1, &n->obj);
    if (s == NG_OK) s = reserve(&n->ws, "err%d", 0, (size_t)ch, 1, &n->err);
    if (s == NG_OK) s = reserve(&n->ws, "acc%d", 0, 4, 1, &n->acc);
    if (s == NG_OK) {
        int two[1] = {2};
        s = ng_arena_reserve_nd(&n->ws, "aug_dev", NG_F64, 1, two, &n->aug_dev);
    }
    if (s == NG_OK) s = reserve(&n->ws, "uinv%d", 0, wmax, (int)wmax, &n->uinv);
    for (l = 0; l <= n->L; l++) n->cmax = n->c[l] > n->cmax ? n->c[l] : n->cmax;
    if (s == NG_OK) s = reserve(&n->ws, "bnv%d", 0, (size_t)3 * n->cmax, 1, &n->bnv);
    if (s == NG_OK) s = reserve(&n->ws, "R%d", 0, rmax, ch, &n->R[0]);
    if (s == NG_OK) s = reserve(&n->ws, "R%d", 1, rmax, ch, &n->R[1]);
    if (s == NG_OK) s = reserve(&n->ws, "TT%d", 0, (size_t)n->classes, ch, &n->TT);
    if (s == NG_OK) s = ng_arena_commit(&n->ws);
    ng_arena_begin(&n->st, be, "cnn state");
    for (l = 1; l <= n->L && s == NG_OK; l++) {
        if (cfg->layer[l - 1].kind == NG_CNN_BN) {
            s = reserve(&n->st, "running_mean%d", l, (size_t)n->c[l], 1, &n->rmean[l]);
            if (s == NG_OK) s = reserve(&n->st, "running_rstd%d", l, (size_t)n->c[l], 1, &n->rrstd[l]);
        } else if (cfg->layer[l - 1].kind == NG_CNN_WHITEN) {
            s = reserve(&n->st, "whiten_UT%d", l, (size_t)n->c[l], n->c[l], &n->UT[l]);
            if (s == NG_OK) s = reserve(&n->st, "whiten_mu%d", l, (size_t)n->c[l], 1, &n->mu[l]);
        }
    }
    if (s == NG_OK) s = ng_arena_commit(&n->st);
    for (l = 1; l <= n->L && s == NG_OK; l++)
        if (cfg->layer[l - 1].kind == NG_CNN_WHITEN) s = ng_whiten_init(be, n->c[l], n->h[l] * n->w[l], &n->wh[l]);
    if (s == NG_OK) s = ng_fill(be, n->ones.rows, 1.0f, n->ones.data);
    if (s == NG_OK) s = ng_fill(be, 4, 0.0f, n->acc.data);
    if (s == NG_OK) s = sync_aug(n);
    if (s == NG_OK) {
        n->host = (float *)malloc(((size_t)2 * n->classes * ch + (size_t)ch) * sizeof(float));
        n->hbn = (double *)malloc((size_t)6 * n->cmax * sizeof(double));
        n->hbf = (float *)malloc((size_t)4 * n->cmax * sizeof(float));
        if (!n->host || !n->hbn || !n->hbf) s = ng_error(NG_ERR_OOM, "cnn: out of host memory");
    }
    if (s == NG_OK) {
        size_t nd = 0, nf = 0;
        for (l = 1; l <= n->L; l++)
            if (cfg->layer[l - 1].kind == NG_CNN_WHITEN) {
                size_t d = (size_t)n->c[l], co = (size_t)n->c[l + 1];
                size_t T = cfg->layer[l].kind == NG_CNN_CONV ? (size_t)cfg->layer[l].k * (size_t)cfg->layer[l].k
                                                             : (size_t)n->h[l] * (size_t)n->w[l];
                if (3 * d * d + 2 * d > nd) nd = 3 * d * d + 2 * d;
                if (4 * d * d + 2 * d + co * d * T + co > nf) nf = 4 * d * d + 2 * d + co * d * T + co;
            }
        if (nd) {
            n->whd = (double *)malloc(nd * sizeof(double));
            n->whf = (float *)malloc(nf * sizeof(float));
            if (!n->whd || !n->whf) s = ng_error(NG_ERR_OOM, "cnn: out of host memory for the whitening scratch (%zu doubles, %zu floats)", nd, nf);
        }
    }
    if (s == NG_OK) s = init_params(n);
    if (s != NG_OK) {
        ng_cnn_free(&n->base);
        return s;
    }
    *out = &n->base;
    return NG_OK;
}

static void cnn_destroy(ng_model *m) {
    cnn *n = as_cnn(m);
    int l;
    ng_arena_free(&n->ws);
    ng_arena_free(&n->st);
    ng_arena_free(&n->hws);
    for (l = 0; l <= LMAX; l++) ng_whiten_free(&n->wh[l]);
    free(n->host);
    free(n->hbn);
    free(n->hbf);
    if (n->bnd) ng_free(n->base.be, n->bnd);
    n->bnd = NULL;
    n->host = NULL;
    n->hbn = NULL;
    n->hbf = NULL;
    free(n->whd);
    free(n->whf);
    n->whd = NULL;
    n->whf = NULL;
}

void ng_cnn_free(ng_model *m) {
    if (!m) return;
    ng_model_release(m);
    free(m);
}

const ng_cnn_config *ng_cnn_config_of(const ng_model *m) { return &((const cnn *)m)->cfg; }
int ng_cnn_batch_rows(const ng_model *m) {
    const cnn *n = (const cnn *)m;
    return (int)n->size[0] + n->classes;
}

/* ---- op helpers --------------------------------------------------------------------------- */

static ng_status gather(ng_backend *be, int mode, int nimg, int c, int h, int w, int k, int stride, int pad,
                        const float *x, const float *g, float *out) {
    ng_op_args a = {.op = NG_OP_CONV_GATHER};
    a.conv_gather.mode = mode;
    a.conv_gather.s.n = nimg, a.conv_gather.s.c = c, a.conv_gather.s.h = h, a.conv_gather.s.w = w;
    a.conv_gather.s.kh = a.conv_gather.s.kw = k;
    a.conv_gather.s.stride = stride, a.conv_gather.s.pad = pad;
    a.conv_gather.x = x, a.conv_gather.g = g, a.conv_gather.out = out;
    return ng_run_op(be, &a);
}
static ng_status layout(ng_backend *be, int mode, int nimg, int c, int hw, const float *x, float *out) {
    return gather(be, mode, nimg, c, hw, 1, 1, 1, 0, x, NULL, out);
}
static ng_status act_fwd(ng_backend *be, int rows, int cols, int act, const float *z, int ldz, const float *scale,
                         const float *bias, float *a, int lda) {
    ng_op_args o = {.op = NG_OP_ACT_FORWARD};
    o.act_forward.rows = rows, o.act_forward.cols = cols, o.act_forward.act = act;
    o.act_forward.z = z, o.act_forward.ldz = ldz, o.act_forward.scale = scale, o.act_forward.bias = bias;
    o.act_forward.a = a, o.act_forward.lda = lda;
    return ng_run_op(be, &o);
}
static ng_status whiten_op(ng_backend *be, int nimg, int c, int p, int trans, const float *x, const float *mean,
                           const float *UT, float *y) {
    ng_op_args o = {.op = NG_OP_WHITEN1X1};
    o.whiten1x1.n = nimg, o.whiten1x1.c = c, o.whiten1x1.cout = c, o.whiten1x1.p = p, o.whiten1x1.trans = trans;
    o.whiten1x1.x = x, o.whiten1x1.mean = mean, o.whiten1x1.U = UT, o.whiten1x1.ldu = c, o.whiten1x1.y = y;
    return ng_run_op(be, &o);
}

/* ---- synchronised batch norm (several ranks) ---------------------------------------------- */

static int dist_on(const cnn *n) { return n->comm && n->comm->world > 1; }
/* The merge on the device: the communicator is NCCL (device buffers, all-reduced on the stream);
 * bnd is allocated by ng_cnn_set_dist when the network has batch norm. */
static int bn_dev(const cnn *n) { return dist_on(n) && n->comm->kind == NG_COMM_NCCL && n->bnd; }

/* Layer l's view of the device merge buffers (bn_merge.h: tot at bnd + l, the scratch after LMAX + 1). */
static ng_bn_dev bn_dev_layer(cnn *n, int l) {
    const ng_bn_dev d = {.be = n->base.be, .comm = n->comm, .cnt = (double)n->bn_cnt[l], .eps = n->cfg.bn_eps,
                         .mean = n->mean[l].data, .rstd = n->rstd[l].data, .tot = n->bnd + l,
                         .acc = n->bnd + LMAX + 1, .rmax = (size_t)n->cmax};
    return d;
}

/* Device merge of rows x cols sums x (packed) into means at this rank's scale (see bn_sync_proj):
 * ng_bn_dev_means; out may be x. */
static ng_status bn_dev_means(cnn *n, int l, int rows, int cols, const float *x, int scaled, float alpha, float *out,
                              const char *what) {
    const ng_bn_dev d = bn_dev_layer(n, l);
    return ng_bn_dev_means(&d, rows, cols, x, rows, scaled, alpha, out, rows, what);
}

/* Forward: mean[l] and rstd[l] of layer l's channels over the pixels of every rank's images
 * (this rank's M samples in T1, NHWC; M may be 0). Merged exactly as one process would see them:
 * each rank's mean and variance from row_moments (two passes in double), the global mean from the
 * count-weighted means, then each rank's scatter about it (Chan et al.), both all-reduced in
 * double. Every rank gets the same mean and rstd (and so the same running averages). */
static ng_status bn_sync_moments(cnn *n, int l, int M) {
    ng_backend *be = n->base.be;
    const int ci = n->c[l];
    double *a = n->hbn, *b = n->hbn + ci + 1, tot;
    float *mr = n->hbf, *rr = n->hbf + ci;
    const double eps = (double)n->cfg.bn_eps;
    int i;
    n->bn_cnt[l] = M; /* the backward passes' scale m_r / m */
    if (M > 0) {
        ng_op_args r = {.op = NG_OP_ROW_MOMENTS};
        r.row_moments.rows = ci, r.row_moments.cols = M, r.row_moments.x = n->T1.data, r.row_moments.ldx = ci;
        r.row_moments.eps = n->cfg.bn_eps, r.row_moments.mean = n->mean[l].data, r.row_moments.rstd = n->rstd[l].data;
        NG_TRY(ng_run_op(be, &r));
    }
    if (bn_dev(n)) { /* the same merge in float64 on the device: its counts' and scatters' all-reduces on the
                      * stream (ng_cnn_set_dist made sure every rank holds a case: no empty total) */
        const ng_bn_dev d = bn_dev_layer(n, l);
        return ng_bn_dev_moments(&d, ci);
    }
    if (M > 0) {
        NG_TRY(ng_get(be, mr, n->mean[l].data, (size_t)ci * sizeof(float)));
        NG_TRY(ng_get(be, rr, n->rstd[l].data, (size_t)ci * sizeof(float)));
    }
    for (i = 0; i < ci; i++) a[i] = M > 0 ? (double)M * (double)mr[i] : 0.0;
    a[ci] = (double)M;
    NG_TRY(ng_comm_allreduce_host(n->comm, a, (size_t)ci + 1, "the batch-norm means"));
    tot = a[ci];
    if (tot < 1.0) return ng_error(NG_ERR_INVALID_ARG, "cnn layer %d: batch norm over no sample on any rank", l);
    for (i = 0; i < ci; i++) {
        double mu = a[i] / tot, dm = M > 0 ? (double)mr[i] - mu : 0.0;
        a[i] = mu;
        b[i] = M > 0 ? (double)M * (1.0 / ((double)rr[i] * (double)rr[i]) - eps + dm * dm) : 0.0;
    }
    NG_TRY(ng_comm_allreduce_host(n->comm, b, (size_t)ci, "the batch-norm variances"));
    for (i = 0; i < ci; i++) {
        double var = b[i] / tot;
        mr[i] = (float)a[i];
        rr[i] = (float)(1.0 / sqrt((var > 0.0 ? var : 0.0) + eps));
    }
    NG_TRY(ng_set(be, n->mean[l].data, mr, (size_t)ci * sizeof(float)));
    NG_TRY(ng_set(be, n->rstd[l].data, rr, (size_t)ci * sizeof(float)));
    n->bn_total[l] = tot;
    return NG_OK;
}

/* out = s1 s2 P(g) (beta 0) or out + s1 s2 P(g) (beta 1) for this rank's g of layer l (NHWC, M
 * samples, ld c_l), P(g) = g - mean(g) - xhat mean(g xhat), both means over every rank's samples.
 * A g that carries this rank's loss scale 1 / m_r (the backward passes: the trainer and the
 * curvature products' reductions weight by m_r / m afterwards) has its two per-channel sums
 * weighted by w = m_r / m = M / (every rank's samples) before the all-reduce (one pass per rank:
 * check_shard) and the means brought back to this rank's scale; R{x} carries no scale (w = 1):
 * scaled 1 or 0. s2 NULL: s1 alone (per-channel device vectors; s1 may be H v's HQ scratch). tmp (c_l, M) scratch,
 * out itself when beta is 0. */
static ng_status bn_sync_proj(cnn *n, int l, int M, const float *g, int scaled, const float *s1, const float *s2,
                              float beta, float *tmp, float *out) {
    ng_backend *be = n->base.be;
    const int ci = n->c[l];
    float *sg = n->bnv.data, *sgx = sg + ci, *sc = sgx + ci, *hf = n->hbf;
    double *a = n->hbn, tot = n->bn_total[l], w = scaled ? (double)M / tot : 1.0;
    int i;
    if (bn_dev(n)) { /* sg, sgx, sc on the device: the sums in the other order (sum g xhat, sum g), so that
                      * their means land as -mean(g xhat), -mean(g) */
        if (s2) NG_TRY(ng_gemm_strided_batched(be, 0, 0, 1, 1, 1, 1.0f, s1, 1, 1, s2, 1, 1, 0.0f, sc, 1, 1, ci));
        else NG_TRY(ng_copy(be, sc, s1, (size_t)ci * sizeof(float)));
        NG_TRY(ng_gemm_strided_batched(be, 0, 1, 1, 1, M, 1.0f, g, ci, 1, n->XH[l].data, ci, 1, 0.0f, sg, 1, 1, ci));
        NG_TRY(ng_sum_cols(be, ci, M, 1.0f, g, ci, 0.0f, sgx));
        NG_TRY(bn_dev_means(n, l, ci, 2, sg, scaled, -1.0f, sg, "the batch-norm sums"));
    } else {
        NG_TRY(ng_get(be, hf + 2 * ci, s1, (size_t)ci * sizeof(float)));
        if (s2) NG_TRY(ng_get(be, hf + 3 * ci, s2, (size_t)ci * sizeof(float)));
        NG_TRY(ng_sum_cols(be, ci, M, 1.0f, g, ci, 0.0f, sg));
        NG_TRY(ng_gemm_strided_batched(be, 0, 1, 1, 1, M, 1.0f, g, ci, 1, n->XH[l].data, ci, 1, 0.0f, sgx, 1, 1, ci));
        NG_TRY(ng_get(be, hf, sg, (size_t)2 * ci * sizeof(float)));
        for (i = 0; i < 2 * ci; i++) a[i] = w * (double)hf[i];
        NG_TRY(ng_comm_allreduce_host(n->comm, a, (size_t)2 * ci, "the batch-norm sums"));
        for (i = 0; i < ci; i++) {
            const float s = s2 ? (float)((double)hf[2 * ci + i] * (double)hf[3 * ci + i]) : hf[2 * ci + i];
            hf[i] = (float)(-a[ci + i] / tot / w); /* -mean(g xhat), this rank's scale */
            hf[ci + i] = (float)(-a[i] / tot / w); /* -mean(g) */
            hf[2 * ci + i] = s;
        }
        NG_TRY(ng_set(be, sg, hf, (size_t)3 * ci * sizeof(float)));
    }
    /* tmp = -mean(g xhat) xhat - mean(g); += g; out (+)= s1 s2 tmp */
    NG_TRY(act_fwd(be, ci, M, NG_ACT_LINEAR, n->XH[l].data, ci, sg, sgx, tmp, ci));
    NG_TRY(ng_axpby(be, (size_t)ci * (size_t)M, 1.0f, g, 1.0f, tmp));
    if (beta == 0.0f) return act_fwd(be, ci, M, NG_ACT_LINEAR, tmp, ci, sc, NULL, out, ci);
    return ng_gemm_strided_batched(be, 0, 0, 1, M, 1, 1.0f, sc, 1, 1, tmp, ci, 1, 1.0f, out, ci, 1, ci);
}

/* H v on several ranks: v (c_l floats on the device) holds this rank's per-channel sums over its
 * samples; it becomes the means over every rank's samples at this rank's scale (w as in
 * bn_sync_proj: m_r / m for loss-scaled sums, 1 for those of R{x}). */
static ng_status bn_sync_mean(cnn *n, int l, float *v, int scaled) {
    ng_backend *be = n->base.be;
    const int ci = n->c[l];
    float *hf = n->hbf;
    double *a = n->hbn, w = scaled ? (double)n->bn_cnt[l] / n->bn_total[l] : 1.0;
    int i;
    if (bn_dev(n)) return bn_dev_means(n, l, ci, 1, v, scaled, 1.0f, v, "the batch-norm R-backward sums");
    NG_TRY(ng_get(be, hf, v, (size_t)ci * sizeof(float)));
    for (i = 0; i < ci; i++) a[i] = w * (double)hf[i];
    NG_TRY(ng_comm_allreduce_host(n->comm, a, (size_t)ci, "the batch-norm R-backward sums"));
    for (i = 0; i < ci; i++) hf[i] = (float)(a[i] / n->bn_total[l] / w);
    return ng_set(be, v, hf, (size_t)ci * sizeof(float));
}

/* ---- forward / backward ------------------------------------------------------------------- */

/* Forward pass of cols images x (rows >= size_0, ld ldx) through every layer; train 1: batch
 * norm on the chunk's statistics, running averages updated, training batches augmented; train 2:
 * the chunk's statistics, nothing updated or augmented (the whitening statistics see the maps
 * training sees); 0: the running averages. Y = softmax(A[L]). */
static ng_status forward(cnn *n, const float *x, int ldx, int cols, int train) {
    ng_backend *be = n->base.be;
    int l;
    n->cached = 0;
    if (train && dist_on(n)) n->bn_cols = cols;
    if (cols == 0) {
        /* a rank without samples in a synchronised pass: its part of the collectives only */
        for (l = 1; l <= n->L && train && dist_on(n); l++)
            if (n->cfg.layer[l - 1].kind == NG_CNN_BN) NG_TRY(bn_sync_moments(n, l, 0));
        return NG_OK;
    }
    NG_TRY(act_fwd(be, (int)n->size[0], cols, NG_ACT_LINEAR, x, ldx, NULL, NULL, n->A[0].data, (int)n->size[0]));
    if (train == 1 && (n->cfg.augment_pad > 0 || n->cfg.augment_flip)) {
        /* random crops / mirrors of the chunk's images (stream: seed, gradient count; the image's
         * index in the global batch, so every rank draws what one process draws), through D[0]
         * (free during the forward pass) */
        ng_op_args a = {.op = NG_OP_CONV_GATHER};
        a.conv_gather.mode = NG_CONV_AUGMENT;
        a.conv_gather.s.n = cols, a.conv_gather.s.c = n->c[0], a.conv_gather.s.h = n->h[0], a.conv_gather.s.w = n->w[0];
        a.conv_gather.s.pad = n->cfg.augment_pad;
        a.conv_gather.s.kh = a.conv_gather.s.kw = 2 * n->cfg.augment_pad + 1;
        a.conv_gather.s.stride = 1;
        a.conv_gather.flip = n->cfg.augment_flip;
        a.conv_gather.key = ng_rng_stream_key(n->cfg.seed, NG_RNG_AUGMENT);
        a.conv_gather.step = 0; /* the step is the device's count of gradients (aug_dev) */
        a.conv_gather.step_dev = (uint64_t *)(void *)n->aug_dev.data;
        a.conv_gather.advance = n->aug_advance ? 1 : 0;
        a.conv_gather.b0 = n->img0;
        a.conv_gather.x = n->A[0].data, a.conv_gather.out = n->D[0].data;
        NG_TRY(ng_run_op(be, &a));
        NG_TRY(ng_copy(be, n->A[0].data, n->D[0].data, n->size[0] * (size_t)cols * sizeof(float)));
    }
    for (l = 1; l <= n->L; l++) {
        const ng_cnn_layer *y = &n->cfg.layer[l - 1];
        const int ci = n->c[l - 1], co = n->c[l];
        const int P = n->h[l] * n->w[l], hw0 = n->h[l - 1] * n->w[l - 1];
        const float *in = n->A[l - 1].data;
        float *out = n->A[l].data;
        switch (y->kind) {
        case NG_CNN_CONV: {
            const int K = ci * y->k * y->k;
            NG_TRY(gather(be, NG_CONV_IM2COL, cols, ci, n->h[l - 1], n->w[l - 1], y->k, y->stride, y->pad, in, NULL,
                          n->col.data));
            NG_TRY(ng_gemm_strided_batched(be, 0, 1, P, co, K, 1.0f, n->col.data, P, (long long)P * K, n->W[l].data, co, 0,
                                           0.0f, out, P, (long long)P * co, cols));
            NG_TRY(ng_gemm_strided_batched(be, 0, 0, P, co, 1, 1.0f, n->ones.data, P, 0, n->b[l].data, 1, 0, 1.0f, out, P,
                                           (long long)P * co, cols));
            break;
        }
        case NG_CNN_POOL_MAX:
        case NG_CNN_POOL_AVG:
            NG_TRY(gather(be, y->kind == NG_CNN_POOL_MAX ? NG_CONV_POOL_MAX : NG_CONV_POOL_AVG, cols, ci, n->h[l - 1],
                          n->w[l - 1], y->k, y->stride, 0, in, NULL, out));
            break;
        case NG_CNN_ACT:
            NG_TRY(act_fwd(be, (int)n->size[l], cols, y->act, in, (int)n->size[l], NULL, NULL, out, (int)n->size[l]));
            break;
        case NG_CNN_BN: {
            const int M = cols * hw0;
            const float *mean = n->rmean[l].data, *rstd = n->rrstd[l].data;
            ng_op_args o = {.op = NG_OP_BN_NORMALIZE};
            NG_TRY(layout(be, NG_CONV_TO_NHWC, cols, ci, hw0, in, n->T1.data));
            if (train) {
                ng_op_args r = {.op = NG_OP_ROW_MOMENTS};
                const float mom = n->cfg.bn_momentum;
                r.row_moments.rows = ci, r.row_moments.cols = M, r.row_moments.x = n->T1.data, r.row_moments.ldx = ci;
                r.row_moments.eps = n->cfg.bn_eps, r.row_moments.mean = n->mean[l].data, r.row_moments.rstd = n->rstd[l].data;
                if (dist_on(n)) NG_TRY(bn_sync_moments(n, l, M)); /* over every rank's images */
                else NG_TRY(ng_run_op(be, &r));
                if (train == 1) {
                    NG_TRY(ng_axpby(be, (size_t)ci, mom, n->mean[l].data, 1.0f - mom, n->rmean[l].data));
                    NG_TRY(ng_axpby(be, (size_t)ci, mom, n->rstd[l].data, 1.0f - mom, n->rrstd[l].data));
                }
                mean = n->mean[l].data, rstd = n->rstd[l].data;
            } else {
                /* the backward pass of an inference-mode batch reads these */
                NG_TRY(ng_copy(be, n->mean[l].data, mean, (size_t)ci * sizeof(float)));
                NG_TRY(ng_copy(be, n->rstd[l].data, rstd, (size_t)ci * sizeof(float)));
            }
            o.bn_normalize.rows = ci, o.bn_normalize.cols = M, o.bn_normalize.x = n->T1.data, o.bn_normalize.ldx = ci;
            o.bn_normalize.mean = mean, o.bn_normalize.rstd = rstd, o.bn_normalize.xhat = n->XH[l].data, o.bn_normalize.ldh = ci;
            NG_TRY(ng_run_op(be, &o));
            NG_TRY(act_fwd(be, ci, M, NG_ACT_LINEAR, n->XH[l].data, ci, n->W[l].data, n->b[l].data, n->T2.data, ci));
            NG_TRY(layout(be, NG_CONV_TO_NCHW, cols, ci, hw0, n->T2.data, out));
            break;
        }
        case NG_CNN_DENSE: {
            const int din = (int)n->size[l - 1];
            NG_TRY(ng_gemm(be, 0, 0, co, cols, din, 1.0f, n->W[l].data, co, in, din, 0.0f, out, co));
            NG_TRY(ng_gemm(be, 0, 0, co, cols, 1, 1.0f, n->b[l].data, co, n->ones.data, 1, 1.0f, out, co));
            break;
        }
        case NG_CNN_WHITEN:
            NG_TRY(whiten_op(be, cols, ci, hw0, 1, in, n->mu[l].data, n->UT[l].data, out));
            break;
        }
    }
    return act_fwd(be, n->classes, cols, NG_ACT_SOFTMAX, n->A[n->L].data, n->classes, NULL, NULL, n->Y.data, n->classes);
}

/* dL/dz = scale (y - t) into D[L]; obj[c] per case. sums 1: also err[c] = the case's
 * misclassification and, in the same launch, acc[0] (objective) and acc[1] (misclassified cases)
 * summed on the device (acc_beta 0: =, 1: += over a batch's chunks). */
static ng_status loss_chunk(cnn *n, const float *t, int ldt, int cols, float scale, int sums, float acc_beta) {
    ng_op_args o = {.op = NG_OP_LOSS};
    o.loss.rows = n->classes, o.loss.cols = cols, o.loss.loss = NG_LOSS_CATEGORICAL;
    o.loss.z = n->A[n->L].data, o.loss.ldz = n->classes, o.loss.y = n->Y.data, o.loss.ldy = n->classes;
    o.loss.t = t, o.loss.ldt = ldt, o.loss.scale = scale, o.loss.d = n->D[n->L].data, o.loss.ldd = n->classes;
    o.loss.obj = n->obj.data;
    if (sums) {
        o.loss.err = n->err.data, o.loss.err_miss = 1;
        o.loss.acc = n->acc.data, o.loss.acc_beta = acc_beta;
    }
    return ng_run_op(n->base.be, &o);
}

/* Sum of the chunk's objectives and its misclassified cases (first maximum of y against the
 * first maximum of t), on the host. */
static ng_status chunk_score(cnn *n, const float *t, int ldt, int cols, double *obj, double *miss) {
    ng_backend *be = n->base.be;
    const int C = n->classes;
    float *y = n->host, *tt = n->host + (size_t)C * cols, *o = n->host + (size_t)2 * C * cols;
    int c, r;
    ng_tensor tv = ng_tensor_matrix((float *)t, C, cols, ldt), yv = ng_tensor_matrix(n->Y.data, C, cols, C);
    NG_TRY(ng_tensor_get(be, &yv, y));
    NG_TRY(ng_tensor_get(be, &tv, tt));
    NG_TRY(ng_get(be, o, n->obj.data, (size_t)cols * sizeof(float)));
    for (c = 0; c < cols; c++) {
        int ay = 0, at = 0;
        for (r = 1; r < C; r++) {
            if (y[r + (size_t)C * c] > y[ay + (size_t)C * c]) ay = r;
            if (tt[r + (size_t)C * c] > tt[at + (size_t)C * c]) at = r;
        }
        *miss += ay != at;
        *obj += o[c];
    }
    return NG_OK;
}

/* Pointer into the flat vector out (parameter layout) of the parameter whose gradient view is t. */
static float *at_of(const cnn *n, float *out, const ng_tensor *t) { return out + (t->data - n->base.grad_flat.data); }
static const float *cat_of(const cnn *n, const float *v, const ng_tensor *t) { return v + (t->data - n->base.grad_flat.data); }

/* Back-propagate D[L] through the chunk into the flat vector out (parameter layout: the gradient
 * arena, or a curvature product; beta 0: =, 1: +=). */
static ng_status backward(cnn *n, int cols, float beta, float *out) {
    ng_backend *be = n->base.be;
    size_t hi = ng_model_size(&n->base); /* the gradient arena above the layers done (grad_ready) */
    int l;
    for (l = n->L; l >= 1; l--) {
        /* the layer's gradient in out (layers without parameters have none) */
        float *gW = n->gW[l].data ? at_of(n, out, &n->gW[l]) : NULL;
        float *gb = n->gb[l].data ? at_of(n, out, &n->gb[l]) : NULL;
        const ng_cnn_layer *y = &n->cfg.layer[l - 1];
        const int ci = n->c[l - 1], co = n->c[l];
        const int P = n->h[l] * n->w[l], hw0 = n->h[l - 1] * n->w[l - 1];
        const float *in = n->A[l - 1].data, *d = n->D[l].data;
        float *dx = l > 1 ? n->D[l - 1].data : NULL;
        int b;
        switch (y->kind) {
        case NG_CNN_CONV: {
            const int K = ci * y->k * y->k;
            NG_TRY(gather(be, NG_CONV_IM2COL, cols, ci, n->h[l - 1], n->w[l - 1], y->k, y->stride, y->pad, in, NULL,
                          n->col.data));
            for (b = 0; b < cols; b++) /* dW (c', K) += D_b^T col_b */
                NG_TRY(ng_gemm(be, 1, 0, co, K, P, 1.0f, d + (size_t)b * P * co, P, n->col.data + (size_t)b * P * K, P,
                               b ? 1.0f : beta, gW, co));
            NG_TRY(ng_sum_rows(be, P, co * cols, 1.0f, d, P, 0.0f, n->vec.data));
            NG_TRY(ng_sum_cols(be, co, cols, 1.0f, n->vec.data, co, beta, gb));
            if (dx) {
                NG_TRY(ng_gemm_strided_batched(be, 0, 0, P, K, co, 1.0f, d, P, (long long)P * co, n->W[l].data, co, 0, 0.0f,
                                               n->col.data, P, (long long)P * K, cols));
                NG_TRY(gather(be, NG_CONV_COL2IM, cols, ci, n->h[l - 1], n->w[l - 1], y->k, y->stride, y->pad, NULL,
                              n->col.data, dx));
            }
            break;
        }
        case NG_CNN_POOL_MAX:
        case NG_CNN_POOL_AVG:
            if (dx)
                NG_TRY(gather(be, y->kind == NG_CNN_POOL_MAX ? NG_CONV_POOL_MAX_BACK : NG_CONV_POOL_AVG_BACK, cols, ci,
                              n->h[l - 1], n->w[l - 1], y->k, y->stride, 0, y->kind == NG_CNN_POOL_MAX ? in : NULL, d, dx));
            break;
        case NG_CNN_ACT:
            if (dx) {
                ng_op_args o = {.op = NG_OP_ACT_BACKWARD};
                o.act_backward.rows = (int)n->size[l], o.act_backward.cols = cols, o.act_backward.act = y->act;
                o.act_backward.a = n->A[l].data, o.act_backward.lda = (int)n->size[l];
                o.act_backward.g = d, o.act_backward.ldg = (int)n->size[l];
                o.act_backward.out = dx, o.act_backward.ldo = (int)n->size[l];
                NG_TRY(ng_run_op(be, &o));
            }
            break;
        case NG_CNN_BN: {
            const int M = cols * hw0;
            NG_TRY(layout(be, NG_CONV_TO_NHWC, cols, ci, hw0, d, n->T1.data));
            /* dgamma[c] = sum_m g[c,m] xhat[c,m] (row dots as batched 1x1 products), dbeta = row sums
             * (this rank's: reduced with the rest of the gradient) */
            NG_TRY(ng_gemm_strided_batched(be, 0, 1, 1, 1, M, 1.0f, n->T1.data, ci, 1, n->XH[l].data, ci, 1, beta,
                                           gW, 1, 1, ci));
            NG_TRY(ng_sum_cols(be, ci, M, 1.0f, n->T1.data, ci, beta, gb));
            if (dx && dist_on(n)) { /* dx = gamma rstd P(g), P's means over every rank's samples */
                NG_TRY(bn_sync_proj(n, l, M, n->T1.data, 1, n->rstd[l].data, n->W[l].data, 0.0f,
                                    n->T2.data, n->T2.data));
                NG_TRY(layout(be, NG_CONV_TO_NCHW, cols, ci, hw0, n->T2.data, dx));
            } else if (dx) {
                ng_op_args o = {.op = NG_OP_BN_PROJECT};
                o.bn_project.rows = ci, o.bn_project.cols = M, o.bn_project.g = n->T1.data, o.bn_project.ldg = ci;
                o.bn_project.xhat = n->XH[l].data, o.bn_project.ldx = ci;
                o.bn_project.s1 = n->rstd[l].data, o.bn_project.s2 = n->W[l].data, o.bn_project.beta = 0.0f;
                o.bn_project.out = n->T2.data, o.bn_project.ldo = ci;
                NG_TRY(ng_run_op(be, &o));
                NG_TRY(layout(be, NG_CONV_TO_NCHW, cols, ci, hw0, n->T2.data, dx));
            }
            break;
        }
        case NG_CNN_DENSE: {
            const int din = (int)n->size[l - 1];
            NG_TRY(ng_gemm(be, 0, 1, co, din, cols, 1.0f, d, co, in, din, beta, gW, co));
            NG_TRY(ng_sum_cols(be, co, cols, 1.0f, d, co, beta, gb));
            if (dx) NG_TRY(ng_gemm(be, 1, 0, din, cols, co, 1.0f, n->W[l].data, co, d, co, 0.0f, dx, din));
            break;
        }
        case NG_CNN_WHITEN:
            /* dx = U^T dz per pixel: op(UT) = UT */
            if (dx) NG_TRY(whiten_op(be, cols, ci, hw0, 0, d, NULL, n->UT[l].data, dx));
            break;
        }
        /* layer l's gradient is final: its all-reduce may start (not with batch norm merged on the device:
         * the layers below issue its all-reduces on the stream, which may not follow a bucket started in a
         * captured step; the whole gradient is then reduced after the backward pass) */
        if (gW && n->last_chunk && out == n->base.grad_flat.data && !bn_dev(n)) {
            NG_TRY(ng_model_grad_ready(&n->base, (size_t)(gW - out), hi));
            hi = (size_t)(gW - out);
        }
    }
    return NG_OK;
}

/* ---- the model interface ------------------------------------------------------------------ */

static ng_status check_batch(const cnn *n, const ng_tensor *x, const ng_tensor *y, const char *what) {
    const int rows = (int)n->size[0] + (y ? 0 : n->classes);
    if (!x || !x->ptr || x->dtype != NG_F32 || x->rows < rows || x->cols < 1)
        return ng_error(NG_ERR_INVALID_ARG, "cnn %s: batch must be float32 with at least %d rows (%d input + %d target) and >= 1 case",
                        what, rows, (int)n->size[0], y ? 0 : n->classes);
    if (y && (!y->ptr || y->dtype != NG_F32 || y->rows != n->classes || y->cols != x->cols))
        return ng_error(NG_ERR_INVALID_ARG, "cnn %s: targets must be float32 %d x %d", what, n->classes, x->cols);
    return NG_OK;
}

static int has_kind(const cnn *n, int kind) {
    int l;
    for (l = 0; l < n->cfg.n_layers; l++)
        if (n->cfg.layer[l].kind == kind) return 1;
    return 0;
}

/* Several ranks: this rank's batch is its shard, and a batch-normalised network's shard is one
 * chunk (batch norm is synchronised per pass, one pass per rank). */
static ng_status check_shard(const cnn *n, int N) {
    if (N < 1 || n->dist_lo + N > n->dist_batch)
        return ng_error(NG_ERR_INVALID_ARG, "cnn: a shard of %d cases at %d does not fit the global batch of %d", N, n->dist_lo,
                        n->dist_batch);
    if (N > n->cfg.chunk && has_kind(n, NG_CNN_BN))
        return ng_error(NG_ERR_INVALID_ARG, "cnn: batch norm on %d ranks normalises over the whole global batch, one pass per rank, "
                        "but this rank's shard of %d cases exceeds --chunk %d: raise --chunk to >= %d", n->comm->world, N,
                        n->cfg.chunk, N);
    return NG_OK;
}

ng_status ng_cnn_set_dist(ng_model *m, ng_comm *comm, int lo, int batch) {
    cnn *n = as_cnn(m);
    if (!m || m->iface != &cnn_iface) return ng_error(NG_ERR_INVALID_ARG, "ng_cnn_set_dist: not a cnn model");
    if (comm && comm->world > 1 && (batch < comm->world || lo < 0 || lo >= batch))
        return ng_error(NG_ERR_INVALID_ARG, "cnn: global batch %d on %d ranks (shard at %d): every rank needs a case", batch, comm->world, lo);
    n->comm = comm;
    n->dist_lo = comm ? lo : 0;
    n->dist_batch = batch;
    if (dist_on(n) && comm->kind == NG_COMM_NCCL && has_kind(n, NG_CNN_BN) && !n->bnd)
        NG_TRY(ng_alloc(m->be, ((size_t)LMAX + 1 + 3 * (size_t)n->cmax + 1) * sizeof(double), (void **)&n->bnd));
    return NG_OK;
}

static int augmenting(const cnn *n) { return n->cfg.augment_pad > 0 || n->cfg.augment_flip; }

/* The device's augmentation step := gradients (blocking: never inside a CUDA graph capture). */
static ng_status sync_aug(cnn *n) {
    const uint64_t c[2] = {n->gradients, 0};
    ng_status s = ng_set(n->base.be, n->aug_dev.data, c, sizeof c);
    if (s != NG_OK)
        return ng_error_wrap(s, "cnn: setting the device augmentation step to %llu (not possible inside a CUDA graph capture): ",
                             (unsigned long long)n->gradients);
    n->aug_ok = 1;
    return NG_OK;
}

/* What a gradient on x leaves on the host (also after a replayed CUDA graph of one). */
static void gradient_done(cnn *n, const ng_tensor *x, const ng_tensor *y) {
    const int N = x->cols;
    /* the batch of the curvature products; its forward pass stays in the buffers when it was one
     * chunk without augmentation (the products see the images as given) */
    n->m = N;
    n->cx = *x;
    n->have_cy = y != NULL;
    if (y) n->cy = *y;
    n->have_cur = 1;
    n->cur_lo = n->comm ? n->dist_lo : 0;
    n->cached = N <= n->cfg.chunk && !augmenting(n);
    n->have_batch = 1;
    n->gradients++;
}

/* The objective and misclassification sums of the last gradient (acc, summed on the device). */
static ng_status read_sums(cnn *n) {
    float acc[2];
    if (!n->have_batch) return ng_error(NG_ERR_INVALID_ARG, "cnn: no gradient computed yet");
    NG_TRY(ng_get(n->base.be, acc, n->acc.data, sizeof acc));
    n->obj_sum = acc[0];
    n->miss = acc[1];
    return NG_OK;
}

/* The host check of the gradient just computed (one read of acc): the objective is finite. Run by
 * the gradient itself unless defer_check is set (the trainer's CUDA-graph step runs it after the
 * graph). */
static ng_status cnn_check_gradient(ng_model *m) {
    cnn *n = as_cnn(m);
    NG_TRY(read_sums(n));
    if (!isfinite(n->obj_sum))
        return ng_error(NG_ERR_NUMERIC, "cnn objective on this batch is %g (diverged or non-finite data: lower --lr, check the data)",
                        n->obj_sum / n->m);
    return NG_OK;
}

static ng_status cnn_gradient(ng_model *m, const ng_tensor *x, const ng_tensor *y) {
    cnn *n = as_cnn(m);
    const int ch = n->cfg.chunk, N = x ? x->cols : 0;
    int c0, saved;
    ng_status s = NG_OK, e;
    n->g0 = n->gradients;
    n->aug_ok0 = n->aug_ok;
    NG_TRY(check_batch(n, x, y, "gradient"));
    if (dist_on(n)) NG_TRY(check_shard(n, N));
    if (n->cfg.whiten_every > 0 && n->gradients % (uint64_t)n->cfg.whiten_every == 0)
        NG_TRY(ng_cnn_whiten(m, x, n->cfg.whiten_samples)); /* PRONG Algorithm 1: every T updates */
    if (augmenting(n) && !n->aug_ok) NG_TRY(sync_aug(n));
    n->have_batch = 0;
    /* the training passes' gemms may use TF32 (--tf32 on a GPU); the whitening statistics above,
     * evaluations and everything the update does stay FP32 */
    NG_TRY(ng_tf32_begin(m->be, &saved));
    for (c0 = 0; s == NG_OK && c0 < N; c0 += ch) {
        const int cols = N - c0 < ch ? N - c0 : ch;
        const float *xc = x->data + (size_t)c0 * x->ld;
        const float *t = y ? y->data + (size_t)c0 * y->ld : xc + n->size[0];
        const int ldt = y ? y->ld : x->ld;
        n->img0 = (uint64_t)(n->comm ? n->dist_lo : 0) + (uint64_t)c0;
        n->last_chunk = c0 + cols >= N;
        n->aug_advance = n->last_chunk; /* the device's step moves on after the batch's last draws */
        s = forward(n, xc, x->ld, cols, 1);
        n->aug_advance = 0;
        /* objective and misclassifications summed on the device: no host read per chunk */
        if (s == NG_OK) s = loss_chunk(n, t, ldt, cols, 1.0f / (float)N, 1, c0 ? 1.0f : 0.0f);
        if (s == NG_OK) s = backward(n, cols, c0 ? 1.0f : 0.0f, m->grad_flat.data);
        n->last_chunk = 0;
    }
    e = ng_tf32_end(m->be, saved);
    if (s != NG_OK || e != NG_OK) n->aug_ok = 0; /* the device's step may or may not have moved on */
    NG_TRY(s);
    NG_TRY(e);
    gradient_done(n, x, y);
    return m->defer_check ? NG_OK : cnn_check_gradient(m);
}

uint64_t ng_cnn_gradients(const ng_model *m) { return ((const cnn *)m)->gradients; }

ng_status ng_cnn_batch_loss(ng_model *m, double *objective, double *misclass) {
    cnn *n = as_cnn(m);
    NG_TRY(read_sums(n));
    *objective = n->obj_sum / n->m;
    *misclass = n->miss / n->m;
    return NG_OK;
}

ng_status ng_cnn_evaluate(ng_model *m, const ng_tensor *x, double *objective, double *misclass) {
    cnn *n = as_cnn(m);
    const int ch = n->cfg.chunk;
    int c0, N;
    double so = 0.0, miss = 0.0;
    NG_TRY(check_batch(n, x, NULL, "evaluate"));
    N = x->cols;
    for (c0 = 0; c0 < N; c0 += ch) {
        const int cols = N - c0 < ch ? N - c0 : ch;
        const float *xc = x->data + (size_t)c0 * x->ld;
        NG_TRY(forward(n, xc, x->ld, cols, 0));
        NG_TRY(loss_chunk(n, xc + n->size[0], x->ld, cols, 1.0f, 0, 0.0f));
        NG_TRY(chunk_score(n, xc + n->size[0], x->ld, cols, &so, &miss));
    }
    *objective = so / N;
    *misclass = miss / N;
    return NG_OK;
}

ng_status ng_cnn_objective(ng_model *m, const ng_tensor *x, double *objective) {
    cnn *n = as_cnn(m);
    const int ch = n->cfg.chunk;
    int c0, N;
    double so = 0.0, miss = 0.0;
    if (m->iface != &cnn_iface) return ng_error(NG_ERR_INVALID_ARG, "ng_cnn_objective: model %s is not a cnn", m->iface->kind);
    NG_TRY(check_batch(n, x, NULL, "objective"));
    N = x->cols;
    for (c0 = 0; c0 < N; c0 += ch) {
        const int cols = N - c0 < ch ? N - c0 : ch;
        const float *xc = x->data + (size_t)c0 * x->ld;
        NG_TRY(forward(n, xc, x->ld, cols, 2));
        NG_TRY(loss_chunk(n, xc + n->size[0], x->ld, cols, 1.0f, 0, 0.0f));
        NG_TRY(chunk_score(n, xc + n->size[0], x->ld, cols, &so, &miss));
    }
    *objective = so / N;
    return NG_OK;
}

/* ng_cnn_objective's device half: its forward passes (training mode, nothing updated) and loss ops
 * with no host read, case c's objective into objs[c] (= what chunk_score reads from obj) */
ng_status ng_cnn_objective_dev(ng_model *m, const ng_tensor *x, float *objs) {
    cnn *n = as_cnn(m);
    const int ch = n->cfg.chunk;
    int c0, N;
    if (m->iface != &cnn_iface) return ng_error(NG_ERR_INVALID_ARG, "ng_cnn_objective_dev: model %s is not a cnn", m->iface->kind);
    NG_TRY(check_batch(n, x, NULL, "objective"));
    if (!objs) return ng_error(NG_ERR_INVALID_ARG, "cnn objective: NULL device buffer of per-case objectives");
    N = x->cols;
    for (c0 = 0; c0 < N; c0 += ch) {
        const int cols = N - c0 < ch ? N - c0 : ch;
        const float *xc = x->data + (size_t)c0 * x->ld;
        ng_op_args o = {.op = NG_OP_LOSS};
        NG_TRY(forward(n, xc, x->ld, cols, 2));
        o.loss.rows = n->classes, o.loss.cols = cols, o.loss.loss = NG_LOSS_CATEGORICAL;
        o.loss.z = n->A[n->L].data, o.loss.ldz = n->classes, o.loss.y = n->Y.data, o.loss.ldy = n->classes;
        o.loss.t = xc + n->size[0], o.loss.ldt = x->ld, o.loss.scale = 1.0f, o.loss.d = n->D[n->L].data;
        o.loss.ldd = n->classes, o.loss.obj = objs + c0;
        NG_TRY(ng_run_op(m->be, &o));
    }
    return NG_OK;
}

/* its host half: the mean of the cases' objectives, summed in double in case order (as
 * ng_cnn_objective sums them: the same value, bit for bit), read through the host scratch */
ng_status ng_cnn_objective_read(ng_model *m, int cases, const float *objs, double *objective) {
    cnn *n = as_cnn(m);
    double so = 0.0;
    int c0, c, piece;
    if (m->iface != &cnn_iface || cases < 1 || !objs)
        return ng_error(NG_ERR_INVALID_ARG, "ng_cnn_objective_read: a cnn, >= 1 case and the device buffer are required");
    piece = (2 * n->classes + 1) * n->cfg.chunk; /* the host scratch's floats */
    for (c0 = 0; c0 < cases; c0 += piece) {
        const int k = cases - c0 < piece ? cases - c0 : piece;
        NG_TRY(ng_get(m->be, n->host, objs + c0, (size_t)k * sizeof(float)));
        for (c = 0; c < k; c++) so += n->host[c];
    }
    *objective = so / cases;
    return NG_OK;
}

typedef struct obj_ctx {
    ng_model *m; /* first: ng_model_seg_state_get */
    const ng_tensor *x;
    float *objs;
} obj_ctx;
static ng_status obj_body(void *user) {
    obj_ctx *c = (obj_ctx *)user;
    return ng_cnn_objective_dev(c->m, c->x, c->objs);
}

ng_status ng_cnn_objective_seg(struct ng_graph_segs *segs, const char *name, ng_model *m, const ng_tensor *x, float **objs,
                               size_t *cap, double *objective) {
    const ng_graph_seg seg = {name, obj_body, ng_model_seg_state_get, ng_model_seg_state_set};
    obj_ctx c;
    uint64_t key[5];
    if (m->iface != &cnn_iface) return ng_error(NG_ERR_INVALID_ARG, "ng_cnn_objective_seg: model %s is not a cnn", m->iface->kind);
    NG_TRY(check_batch(as_cnn(m), x, NULL, "objective"));
    if ((size_t)x->cols > *cap) { /* outside the segment: a bigger batch than before */
        if (*objs) ng_free(m->be, *objs);
        *objs = NULL;
        *cap = 0;
        NG_TRY(ng_alloc(m->be, (size_t)x->cols * sizeof(float), (void **)objs));
        *cap = (size_t)x->cols;
    }
    c.m = m;
    c.x = x;
    c.objs = *objs;
    key[0] = ng_graph_key_ptr(x->ptr);
    key[1] = (uint64_t)(uint32_t)x->rows << 32 | (uint32_t)x->cols;
    key[2] = (uint64_t)(uint32_t)x->ld;
    key[3] = ng_graph_key_ptr(m->param_flat.data);
    key[4] = ng_graph_key_ptr(*objs);
    NG_TRY(ng_graph_seg_run(segs, &seg, &c, key, 5));
    return ng_cnn_objective_read(m, x->cols, *objs, objective);
}

ng_status ng_cnn_predict(ng_model *m, const ng_tensor *x, ng_tensor *y) {
    cnn *n = as_cnn(m);
    const int ch = n->cfg.chunk;
    int c0, N;
    if (!x || !x->ptr || x->rows < (int)n->size[0] || x->cols < 1)
        return ng_error(NG_ERR_INVALID_ARG, "cnn predict: inputs must have at least %d rows", (int)n->size[0]);
    N = x->cols;
    if (!y || !y->ptr || y->rows != n->classes || y->cols != N)
        return ng_error(NG_ERR_INVALID_ARG, "cnn predict: outputs must be %d x %d", n->classes, N);
    for (c0 = 0; c0 < N; c0 += ch) {
        const int cols = N - c0 < ch ? N - c0 : ch;
        NG_TRY(forward(n, x->data + (size_t)c0 * x->ld, x->ld, cols, 0));
        NG_TRY(act_fwd(m->be, n->classes, cols, NG_ACT_LINEAR, n->Y.data, n->classes, NULL, NULL,
                       y->data + (size_t)c0 * y->ld, y->ld));
    }
    return NG_OK;
}

static ng_status cnn_statistic(ng_model *m, const char *name, ng_tensor *out) {
    cnn *n = as_cnn(m);
    int l;
    char tail;
    if (sscanf(name, "whiten_UT%d%c", &l, &tail) == 1 && l >= 1 && l <= n->L && n->cfg.layer[l - 1].kind == NG_CNN_WHITEN) {
        *out = n->UT[l];
        return NG_OK;
    }
    if (sscanf(name, "whiten_mu%d%c", &l, &tail) == 1 && l >= 1 && l <= n->L && n->cfg.layer[l - 1].kind == NG_CNN_WHITEN) {
        *out = n->mu[l];
        return NG_OK;
    }
    if (sscanf(name, "running_mean%d%c", &l, &tail) == 1 && l >= 1 && l <= n->L && n->cfg.layer[l - 1].kind == NG_CNN_BN) {
        *out = n->rmean[l];
        return NG_OK;
    }
    if (sscanf(name, "running_rstd%d%c", &l, &tail) == 1 && l >= 1 && l <= n->L && n->cfg.layer[l - 1].kind == NG_CNN_BN) {
        *out = n->rrstd[l];
        return NG_OK;
    }
    if (!n->have_batch) return ng_error(NG_ERR_INVALID_ARG, "cnn: no gradient computed yet (statistic %s)", name);
    if (sscanf(name, "a%d%c", &l, &tail) == 1 && l >= 0 && l <= n->L) {
        *out = ng_tensor_matrix(n->A[l].data, (int)n->size[l], n->m < n->cfg.chunk ? n->m : n->cfg.chunk, (int)n->size[l]);
        return NG_OK;
    }
    return ng_error(NG_ERR_INVALID_ARG, "cnn: no statistic '%s' (a0 .. a%d: the last chunk's maps; whiten_UT<l>, whiten_mu<l>: U^T and mu of a whitening layer)", name, n->L);
}

static const char *const cnn_columns[] = {"objective", "train_misclass", "grad_norm", NULL};

static ng_status cnn_log_values(ng_model *m, uint64_t t, double *values) {
    float g;
    (void)t;
    NG_TRY(ng_cnn_batch_loss(m, &values[0], &values[1]));
    NG_TRY(ng_nrm2(m->be, ng_model_size(m), m->grad_flat.data, &g));
    values[2] = g;
    return NG_OK;
}

/* ---- curvature products: the R-operator forward pass, J v, G v, F v ------------------------ */

/* out(r, :) += s[r] X(r, :) for the rows of X (rows, cols) (batched 1 x cols products) */
static ng_status rowscale_acc(ng_backend *be, int rows, int cols, const float *s, const float *X, int ldx, float *out,
                              int ldo) {
    return ng_gemm_strided_batched(be, 0, 0, 1, cols, 1, 1.0f, s, 1, 1, X, ldx, 1, 1.0f, out, ldo, 1, rows);
}

/* out[r] = alpha sum_c X(r, c) Y(r, c) + beta out[r] (batched 1 x 1 products) */
static ng_status rowdot(ng_backend *be, int rows, int cols, float alpha, const float *X, int ldx, const float *Y, int ldy,
                        float beta, float *out) {
    return ng_gemm_strided_batched(be, 0, 1, 1, 1, cols, alpha, X, ldx, 1, Y, ldy, 1, beta, out, 1, 1, rows);
}
/* out[r] = alpha x[r] y[r] + beta out[r] */
static ng_status vmul(ng_backend *be, int n, float alpha, const float *x, const float *y, float beta, float *out) {
    return ng_gemm_strided_batched(be, 0, 0, 1, 1, 1, alpha, x, 1, 1, y, 1, 1, beta, out, 1, 1, n);
}
static ng_status bn_proj(ng_backend *be, int rows, int cols, const float *g, const float *xh, const float *s1, const float *s2,
                         float beta, float *out) {
    ng_op_args o = {.op = NG_OP_BN_PROJECT};
    o.bn_project.rows = rows, o.bn_project.cols = cols, o.bn_project.g = g, o.bn_project.ldg = rows;
    o.bn_project.xhat = xh, o.bn_project.ldx = rows, o.bn_project.s1 = s1, o.bn_project.s2 = s2;
    o.bn_project.beta = beta, o.bn_project.out = out, o.bn_project.ldo = rows;
    return ng_run_op(be, &o);
}

/* R{A[l]} for the direction v (flat, parameter layout) through the chunk whose forward pass is in
 * the buffers; *rz = R{z_L} (classes, cols), ld classes. R{A[0]} = 0: layers before the first
 * parameter pass no perturbation (rin NULL). */
static ng_status rforward_to(cnn *n, const float *v, int cols, const float **rz, int keep) {
    ng_backend *be = n->base.be;
    const float *rin = NULL;
    int l, pp = 0;
    if (keep) n->ra[0] = NULL;
    for (l = 1; l <= n->L; l++) {
        const ng_cnn_layer *y = &n->cfg.layer[l - 1];
        const int ci = n->c[l - 1], co = n->c[l];
        const int P = n->h[l] * n->w[l], hw0 = n->h[l - 1] * n->w[l - 1];
        const float *in = n->A[l - 1].data;
        float *rout = keep ? n->RA[l].data : n->R[pp].data;
        int wrote = 1;
        switch (y->kind) {
        case NG_CNN_CONV: {
            /* R{z} = V * a + V_b + W * R{a}: the forward convolution with the direction's weights,
             * then the layer's weights on R{a} (accumulated) */
            const int K = ci * y->k * y->k;
            const float *VW = cat_of(n, v, &n->gW[l]), *Vb = cat_of(n, v, &n->gb[l]);
            NG_TRY(gather(be, NG_CONV_IM2COL, cols, ci, n->h[l - 1], n->w[l - 1], y->k, y->stride, y->pad, in, NULL,
                          n->col.data));
            NG_TRY(ng_gemm_strided_batched(be, 0, 1, P, co, K, 1.0f, n->col.data, P, (long long)P * K, VW, co, 0, 0.0f, rout,
                                           P, (long long)P * co, cols));
            NG_TRY(ng_gemm_strided_batched(be, 0, 0, P, co, 1, 1.0f, n->ones.data, P, 0, Vb, 1, 0, 1.0f, rout, P,
                                           (long long)P * co, cols));
            if (rin) {
                NG_TRY(gather(be, NG_CONV_IM2COL, cols, ci, n->h[l - 1], n->w[l - 1], y->k, y->stride, y->pad, rin, NULL,
                              n->col.data));
                NG_TRY(ng_gemm_strided_batched(be, 0, 1, P, co, K, 1.0f, n->col.data, P, (long long)P * K, n->W[l].data, co,
                                               0, 1.0f, rout, P, (long long)P * co, cols));
            }
            break;
        }
        case NG_CNN_POOL_MAX:
        case NG_CNN_POOL_AVG:
            if (!rin) wrote = 0;
            else if (y->kind == NG_CNN_POOL_MAX) /* R{x} at each window's argmax of x */
                NG_TRY(gather(be, NG_CONV_POOL_MAX_R, cols, ci, n->h[l - 1], n->w[l - 1], y->k, y->stride, 0, in, rin, rout));
            else
                NG_TRY(gather(be, NG_CONV_POOL_AVG, cols, ci, n->h[l - 1], n->w[l - 1], y->k, y->stride, 0, rin, NULL, rout));
            break;
        case NG_CNN_ACT:
            if (!rin) {
                wrote = 0;
            } else { /* R{a} = f'(z) R{z}, f' from the output a */
                ng_op_args o = {.op = NG_OP_ACT_BACKWARD};
                o.act_backward.rows = (int)n->size[l], o.act_backward.cols = cols, o.act_backward.act = y->act;
                o.act_backward.a = n->A[l].data, o.act_backward.lda = (int)n->size[l];
                o.act_backward.g = rin, o.act_backward.ldg = (int)n->size[l];
                o.act_backward.out = rout, o.act_backward.ldo = (int)n->size[l];
                NG_TRY(ng_run_op(be, &o));
            }
            break;
        case NG_CNN_BN: {
            /* NHWC: R{y} = V_gamma xhat + V_beta (into T1) + gamma rstd P(R{x}) (P into T2) */
            const int M = cols * hw0;
            const float *Vg = cat_of(n, v, &n->gW[l]), *Vb = cat_of(n, v, &n->gb[l]);
            if (rin && dist_on(n)) { /* P's means over every rank's samples */
                NG_TRY(layout(be, NG_CONV_TO_NHWC, cols, ci, hw0, rin, n->T1.data));
                NG_TRY(bn_sync_proj(n, l, M, n->T1.data, 0, n->rstd[l].data, NULL, 0.0f, n->T2.data, n->T2.data));
            } else if (rin) {
                ng_op_args o = {.op = NG_OP_BN_PROJECT};
                NG_TRY(layout(be, NG_CONV_TO_NHWC, cols, ci, hw0, rin, n->T1.data));
                o.bn_project.rows = ci, o.bn_project.cols = M, o.bn_project.g = n->T1.data, o.bn_project.ldg = ci;
                o.bn_project.xhat = n->XH[l].data, o.bn_project.ldx = ci;
                o.bn_project.s1 = n->rstd[l].data, o.bn_project.s2 = NULL, o.bn_project.beta = 0.0f;
                o.bn_project.out = n->T2.data, o.bn_project.ldo = ci;
                NG_TRY(ng_run_op(be, &o));
            }
            NG_TRY(act_fwd(be, ci, M, NG_ACT_LINEAR, n->XH[l].data, ci, Vg, Vb, n->T1.data, ci));
            if (rin) NG_TRY(rowscale_acc(be, ci, M, n->W[l].data, n->T2.data, ci, n->T1.data, ci));
            NG_TRY(layout(be, NG_CONV_TO_NCHW, cols, ci, hw0, n->T1.data, rout));
            break;
        }
        case NG_CNN_DENSE: {
            const int din = (int)n->size[l - 1];
            const float *VW = cat_of(n, v, &n->gW[l]), *Vb = cat_of(n, v, &n->gb[l]);
            NG_TRY(ng_gemm(be, 0, 0, co, cols, din, 1.0f, VW, co, in, din, 0.0f, rout, co));
            NG_TRY(ng_gemm(be, 0, 0, co, cols, 1, 1.0f, Vb, co, n->ones.data, 1, 1.0f, rout, co));
            if (rin) NG_TRY(ng_gemm(be, 0, 0, co, cols, din, 1.0f, n->W[l].data, co, rin, din, 1.0f, rout, co));
            break;
        }
        case NG_CNN_WHITEN: /* R{y} = U R{x} per pixel (U, mu are state, not parameters) */
            if (!rin) wrote = 0;
            else NG_TRY(whiten_op(be, cols, ci, hw0, 1, rin, NULL, n->UT[l].data, rout));
            break;
        }
        if (wrote) {
            rin = rout;
            pp ^= 1;
        }
        if (keep) n->ra[l] = rin;
    }
    *rz = rin; /* the last layer is dense: never NULL */
    return NG_OK;
}

static ng_status rforward(cnn *n, const float *v, int cols, const float **rz) { return rforward_to(n, v, cols, rz, 0); }

static ng_status need_cur(const cnn *n, const char *what) {
    if (!n->have_cur)
        return ng_error(NG_ERR_INVALID_ARG, "cnn %s: no batch yet (compute a gradient or call ng_cnn_set_batch first)", what);
    return NG_OK;
}

static ng_status check_pvec(const cnn *n, const ng_tensor *v, const char *what, const char *name) {
    if (!v || !v->ptr || v->dtype != NG_F32 || ng_tensor_count(v) != ng_model_size(&n->base))
        return ng_error(NG_ERR_INVALID_ARG, "cnn %s: %s must be a float32 vector of the %zu parameters", what, name,
                        ng_model_size(&n->base));
    return NG_OK;
}

/* The forward pass of cases [c0, c0 + cols) of the current batch in the buffers (batch norm on
 * the chunk's statistics, nothing updated, no augmentation); kept for a single-chunk batch. */
static ng_status cur_forward(cnn *n, int c0, int cols) {
    if (n->cached && c0 == 0 && cols == n->cx.cols) return NG_OK;
    NG_TRY_RANGE(NG_CAT_FORWARD, "cnn forward", forward(n, n->cx.data + (size_t)c0 * n->cx.ld, n->cx.ld, cols, 2));
    n->cached = cols == n->cx.cols;
    return NG_OK;
}

static const float *cur_targets(const cnn *n, int c0, int *ld) {
    if (n->have_cy) {
        *ld = n->cy.ld;
        return n->cy.data + (size_t)c0 * n->cy.ld;
    }
    *ld = n->cx.ld;
    return n->cx.data + (size_t)c0 * n->cx.ld + n->size[0];
}

ng_status ng_cnn_set_batch(ng_model *m, const ng_tensor *x, const ng_tensor *y) {
    cnn *n = as_cnn(m);
    if (m->iface != &cnn_iface) return ng_error(NG_ERR_INVALID_ARG, "ng_cnn_set_batch: model %s is not a cnn", m->iface->kind);
    NG_TRY(check_batch(n, x, y, "set_batch"));
    if (dist_on(n) && x->cols > n->cfg.chunk && has_kind(n, NG_CNN_BN))
        return ng_error(NG_ERR_INVALID_ARG, "cnn set_batch (the curvature products' batch): batch norm on %d ranks normalises over "
                        "every rank's cases, one pass per rank, but this rank's %d cases exceed --chunk %d: raise --chunk to >= %d",
                        n->comm->world, x->cols, n->cfg.chunk, x->cols);
    n->cx = *x;
    n->have_cy = y != NULL;
    if (y) n->cy = *y;
    n->have_cur = 1;
    n->cur_lo = 0;
    n->cached = 0;
    if (x->cols <= n->cfg.chunk) NG_TRY(cur_forward(n, 0, x->cols));
    return NG_OK;
}

ng_status ng_cnn_current_batch(const ng_model *m, ng_tensor *x, ng_tensor *y) {
    const cnn *n = (const cnn *)m;
    if (m->iface != &cnn_iface) return ng_error(NG_ERR_INVALID_ARG, "ng_cnn_current_batch: model %s is not a cnn", m->iface->kind);
    NG_TRY(need_cur(n, "current batch"));
    *x = n->cx;
    if (y) {
        if (n->have_cy) *y = n->cy;
        else memset(y, 0, sizeof *y);
    }
    return NG_OK;
}

static ng_status cnn_jvp_fp(ng_model *m, const ng_tensor *v, ng_tensor *out) {
    cnn *n = as_cnn(m);
    const int ch = n->cfg.chunk;
    int c0, N;
    NG_TRY(need_cur(n, "J v"));
    NG_TRY(check_pvec(n, v, "J v", "v"));
    N = n->cx.cols;
    if (!out || !out->ptr || out->dtype != NG_F32 || out->rows != n->classes || out->cols != N)
        return ng_error(NG_ERR_INVALID_ARG, "cnn J v: output must be %d x %d (classes x cases)", n->classes, N);
    for (c0 = 0; c0 < N; c0 += ch) {
        const int cols = N - c0 < ch ? N - c0 : ch;
        const float *rz;
        NG_TRY(cur_forward(n, c0, cols));
        NG_TRY_RANGE(NG_CAT_FORWARD, "cnn R-forward", rforward(n, v->data, cols, &rz));
        NG_TRY(act_fwd(m->be, n->classes, cols, NG_ACT_LINEAR, rz, n->classes, NULL, NULL, out->data + (size_t)c0 * out->ld,
                       out->ld));
    }
    return NG_OK;
}

static ng_status loss_hvp_op(cnn *n, int loss, const float *y, const float *v, float scale, float *out, int cols) {
    ng_op_args o = {.op = NG_OP_LOSS_HVP};
    o.loss_hvp.rows = n->classes, o.loss_hvp.cols = cols, o.loss_hvp.loss = loss;
    o.loss_hvp.y = y, o.loss_hvp.ldy = n->classes, o.loss_hvp.v = v, o.loss_hvp.ldv = n->classes;
    o.loss_hvp.scale = scale, o.loss_hvp.out = out, o.loss_hvp.ldo = n->classes;
    return ng_run_op(n->base.be, &o);
}

/* F v (mode NG_FISHER_*; NG_FISHER_EXACT is G v: softmax + cross-entropy is a matching pair).
 * G v: D[L] = (1/m) H_L R{z_L}, H_L = diag(y) - y y^T. Sampled / empirical: D[L] = (1/(m S)) d
 * (d^T R{z_L}) per case with d = y - t (t drawn from the model, S draws; or the data's). Then the
 * backward pass of the chunk into out. */
static ng_status cnn_fvp_fp(ng_model *m, int mode, int samples, uint64_t key, uint64_t step, uint64_t *step_dev,
                            const ng_tensor *v, ng_tensor *out) {
    cnn *n = as_cnn(m);
    const int ch = n->cfg.chunk;
    int c0, N, s, S;
    float scale;
    NG_TRY(need_cur(n, "F v"));
    NG_TRY(check_pvec(n, v, "F v", "v"));
    NG_TRY(check_pvec(n, out, "F v", "out"));
    if (out->ptr == v->ptr) return ng_error(NG_ERR_INVALID_ARG, "cnn F v: out must not alias v");
    if (mode != NG_FISHER_EXACT && mode != NG_FISHER_SAMPLED && mode != NG_FISHER_EMPIRICAL)
        return ng_error(NG_ERR_INVALID_ARG, "cnn F v: unknown Fisher mode %d", mode);
    if (samples < 1) return ng_error(NG_ERR_INVALID_ARG, "cnn F v: %d samples (>= 1)", samples);
    N = n->cx.cols;
    S = mode == NG_FISHER_SAMPLED ? samples : 1;
    scale = 1.0f / ((float)N * (float)S);
    for (c0 = 0; c0 < N; c0 += ch) {
        const int cols = N - c0 < ch ? N - c0 : ch;
        const float *rz;
        NG_TRY(cur_forward(n, c0, cols));
        NG_TRY_RANGE(NG_CAT_FORWARD, "cnn R-forward", rforward(n, v->data, cols, &rz));
        for (s = 0; s < S; s++) {
            if (mode == NG_FISHER_EXACT) {
                NG_TRY(loss_hvp_op(n, NG_LOSS_CATEGORICAL, n->Y.data, rz, scale, n->D[n->L].data, cols));
            } else {
                ng_op_args o = {.op = NG_OP_LOSS};
                const float *t;
                int ldt;
                if (mode == NG_FISHER_SAMPLED) {
                    /* each case's draw depends on its index in the global batch (cur_lo + c0 + c),
                     * not on the chunking or the ranks */
                    ng_op_args a = {.op = NG_OP_SAMPLE_TARGETS};
                    a.sample_targets.rows = n->classes, a.sample_targets.cols = cols, a.sample_targets.loss = NG_LOSS_CATEGORICAL;
                    a.sample_targets.y = n->Y.data, a.sample_targets.ldy = n->classes;
                    a.sample_targets.t = n->TT.data, a.sample_targets.ldt = n->classes;
                    a.sample_targets.key = key, a.sample_targets.step = step + (uint64_t)s;
                    a.sample_targets.step_dev = step_dev; /* read only (advance 0): step_dev[0] + s */
                    a.sample_targets.col0 = (uint64_t)n->cur_lo + (uint64_t)c0;
                    NG_TRY(ng_run_op(m->be, &a));
                    t = n->TT.data;
                    ldt = n->classes;
                } else {
                    t = cur_targets(n, c0, &ldt);
                }
                o.loss.rows = n->classes, o.loss.cols = cols, o.loss.loss = NG_LOSS_CATEGORICAL;
                o.loss.z = n->A[n->L].data, o.loss.ldz = n->classes, o.loss.y = n->Y.data, o.loss.ldy = n->classes;
                o.loss.t = t, o.loss.ldt = ldt, o.loss.scale = 1.0f, o.loss.d = n->D[n->L].data, o.loss.ldd = n->classes;
                NG_TRY(ng_run_op(m->be, &o));
                NG_TRY(loss_hvp_op(n, NG_LOSS_OUTER, n->D[n->L].data, rz, scale, n->D[n->L].data, cols));
            }
            NG_TRY_RANGE(NG_CAT_BACKWARD, "cnn backward", backward(n, cols, (c0 || s) ? 1.0f : 0.0f, out->data));
        }
    }
    return NG_OK;
}

/* the public entries: curvature-vector products, always FP32 (natgrad/backend.h ng_fp32_begin) */
ng_status ng_cnn_jvp(ng_model *m, const ng_tensor *v, ng_tensor *out) {
    int saved;
    ng_status s, e;
    if (m->iface != &cnn_iface) return ng_error(NG_ERR_INVALID_ARG, "ng_cnn_jvp: model %s is not a cnn", m->iface->kind);
    NG_TRY(ng_fp32_begin(m->be, &saved));
    s = cnn_jvp_fp(m, v, out);
    e = ng_fp32_end(m->be, saved);
    return s != NG_OK ? s : e;
}

ng_status ng_cnn_fvp(ng_model *m, int mode, int samples, uint64_t key, uint64_t step, const ng_tensor *v, ng_tensor *out) {
    int saved;
    ng_status s, e;
    if (m->iface != &cnn_iface) return ng_error(NG_ERR_INVALID_ARG, "ng_cnn_fvp: model %s is not a cnn", m->iface->kind);
    NG_TRY(ng_fp32_begin(m->be, &saved));
    s = cnn_fvp_fp(m, mode, samples, key, step, NULL, v, out);
    e = ng_fp32_end(m->be, saved);
    return s != NG_OK ? s : e;
}

ng_status ng_cnn_fvp_dev(ng_model *m, int mode, int samples, uint64_t key, uint64_t *step_dev, const ng_tensor *v,
                         ng_tensor *out) {
    int saved;
    ng_status s, e;
    if (m->iface != &cnn_iface) return ng_error(NG_ERR_INVALID_ARG, "ng_cnn_fvp_dev: model %s is not a cnn", m->iface->kind);
    if (!step_dev) return ng_error(NG_ERR_INVALID_ARG, "cnn F v: NULL device step");
    NG_TRY(ng_fp32_begin(m->be, &saved));
    s = cnn_fvp_fp(m, mode, samples, key, 0, step_dev, v, out);
    e = ng_fp32_end(m->be, saved);
    return s != NG_OK ? s : e;
}

ng_status ng_cnn_gvp(ng_model *m, const ng_tensor *v, ng_tensor *out) { return ng_cnn_fvp(m, NG_FISHER_EXACT, 1, 0, 0, v, out); }

/* gram[i + nv j] = (1/m) sum_cases (J v_i)^T H_L (J v_j): one R-forward pass per vector into work
 * (classes x chunk slots), H_L applied to each, dots summed in double on the host. */
static ng_status cnn_fisher_gram_fp(ng_model *m, int nv, const ng_tensor *const *v, ng_tensor *work, double *gram) {
    cnn *n = as_cnn(m);
    const int ch = n->cfg.chunk;
    size_t slot;
    int c0, N, i, j;
    NG_TRY(need_cur(n, "Fisher gram"));
    if (nv < 1 || nv > 8) return ng_error(NG_ERR_INVALID_ARG, "cnn Fisher gram: %d vectors (1..8)", nv);
    for (i = 0; i < nv; i++) NG_TRY(check_pvec(n, v[i], "Fisher gram", "v"));
    N = n->cx.cols;
    slot = (size_t)n->classes * (size_t)(N < ch ? N : ch);
    if (!work || !work->ptr || work->dtype != NG_F32 || ng_tensor_count(work) < slot * (size_t)(nv + 1))
        return ng_error(NG_ERR_INVALID_ARG, "cnn Fisher gram: work needs %zu floats", slot * (size_t)(nv + 1));
    for (i = 0; i < nv * nv; i++) gram[i] = 0.0;
    for (c0 = 0; c0 < N; c0 += ch) {
        const int cols = N - c0 < ch ? N - c0 : ch;
        float *hv = work->data + slot * (size_t)nv;
        NG_TRY(cur_forward(n, c0, cols));
        for (i = 0; i < nv; i++) {
            const float *rz;
            NG_TRY_RANGE(NG_CAT_FORWARD, "cnn R-forward", rforward(n, v[i]->data, cols, &rz));
            NG_TRY(act_fwd(m->be, n->classes, cols, NG_ACT_LINEAR, rz, n->classes, NULL, NULL, work->data + slot * (size_t)i,
                           n->classes));
        }
        for (i = 0; i < nv; i++) {
            NG_TRY(loss_hvp_op(n, NG_LOSS_CATEGORICAL, n->Y.data, work->data + slot * (size_t)i, 1.0f, hv, cols));
            for (j = 0; j <= i; j++) {
                float d;
                NG_TRY(ng_dot(m->be, (size_t)n->classes * (size_t)cols, work->data + slot * (size_t)j, hv, &d));
                gram[j + nv * i] += (double)d;
            }
        }
    }
    for (i = 0; i < nv; i++)
        for (j = 0; j <= i; j++) {
            gram[j + nv * i] /= (double)N;
            gram[i + nv * j] = gram[j + nv * i];
        }
    return NG_OK;
}

ng_status ng_cnn_fisher_gram(ng_model *m, int nv, const ng_tensor *const *v, ng_tensor *work, double *gram) {
    int saved;
    ng_status s, e;
    if (m->iface != &cnn_iface) return ng_error(NG_ERR_INVALID_ARG, "ng_cnn_fisher_gram: model %s is not a cnn", m->iface->kind);
    NG_TRY(ng_fp32_begin(m->be, &saved));
    s = cnn_fisher_gram_fp(m, nv, v, work, gram);
    e = ng_fp32_end(m->be, saved);
    return s != NG_OK ? s : e;
}

/* ---- H v: Pearlmutter's R{backprop} ---------------------------------------------------------- */

static ng_status hv_workspace(cnn *n) {
    int l;
    ng_status s = NG_OK;
    size_t tmax = 0, cmax = 1;
    if (n->hws.count) return NG_OK;
    for (l = 1; l <= n->L; l++)
        if (n->cfg.layer[l - 1].kind == NG_CNN_BN) {
            if (n->size[l] > tmax) tmax = n->size[l];
            if ((size_t)n->c[l] > cmax) cmax = (size_t)n->c[l];
        }
    ng_arena_begin(&n->hws, n->base.be, "cnn H v workspace");
    for (l = 1; l <= n->L && s == NG_OK; l++) s = reserve(&n->hws, "RA%d", l, n->size[l], n->cfg.chunk, &n->RA[l]);
    for (l = 0; l < 5 && tmax && s == NG_OK; l++) s = reserve(&n->hws, "HB%d", l, tmax, n->cfg.chunk, &n->HB[l]);
    if (s == NG_OK && tmax) s = reserve(&n->hws, "HQ%d", 0, cmax, 6, &n->HQ);
    if (s == NG_OK) s = ng_arena_commit(&n->hws);
    if (s != NG_OK) ng_arena_free(&n->hws);
    return s;
}

/* R{backprop} of the chunk: D[L] = scale (y - t), RD = scale H_L R{z_L}, then layer by layer
 * (RD ping-pong in R[]; R{A} in RA[] from rforward_to(keep)):
 *   dense / conv  R{dW} = RD a^T + D R{a}^T (im2col for conv), R{db} = sums of RD,
 *                 R{dx} = W^T RD + V^T D, dx = W^T D (conv: batched gemms into col, COL2IM)
 *   pooling       R{dx} = the pooling gradient of RD (the argmax does not move under R)
 *   activation    R{dx} = f'(a) RD + f''(a) R{z} D, dx = f'(a) D
 *   whitening     R{dx} = U^T RD, dx = U^T D
 * into out (beta 0: =, 1: +=). */
static ng_status rbackward(cnn *n, const float *v, int cols, float beta, float *out) {
    ng_backend *be = n->base.be;
    float *rdc = n->R[0].data, *rdn = n->R[1].data; /* RD of the layer's output / input (RD[L] in R[0]) */
    int l;
    for (l = n->L; l >= 1; l--) {
        const ng_cnn_layer *y = &n->cfg.layer[l - 1];
        const int ci = n->c[l - 1], co = n->c[l];
        const int P = n->h[l] * n->w[l], hw0 = n->h[l - 1] * n->w[l - 1];
        const float *in = n->A[l - 1].data, *rin = n->ra[l - 1], *d = n->D[l].data;
        float *dx = l > 1 ? n->D[l - 1].data : NULL;
        float *gW = n->gW[l].data ? at_of(n, out, &n->gW[l]) : NULL;
        float *gb = n->gb[l].data ? at_of(n, out, &n->gb[l]) : NULL;
        int b;
        switch (y->kind) {
        case NG_CNN_CONV: {
            const int K = ci * y->k * y->k;
            const float *VW = cat_of(n, v, &n->gW[l]);
            NG_TRY(gather(be, NG_CONV_IM2COL, cols, ci, n->h[l - 1], n->w[l - 1], y->k, y->stride, y->pad, in, NULL,
                          n->col.data));
            for (b = 0; b < cols; b++) /* R{dW} (c', K) += RD_b^T col_b */
                NG_TRY(ng_gemm(be, 1, 0, co, K, P, 1.0f, rdc + (size_t)b * P * co, P, n->col.data + (size_t)b * P * K, P,
                               b ? 1.0f : beta, gW, co));
            if (rin) { /* += D_b^T col(R{a})_b */
                NG_TRY(gather(be, NG_CONV_IM2COL, cols, ci, n->h[l - 1], n->w[l - 1], y->k, y->stride, y->pad, rin, NULL,
                              n->col.data));
                for (b = 0; b < cols; b++)
                    NG_TRY(ng_gemm(be, 1, 0, co, K, P, 1.0f, d + (size_t)b * P * co, P, n->col.data + (size_t)b * P * K, P, 1.0f,
                                   gW, co));
            }
            NG_TRY(ng_sum_rows(be, P, co * cols, 1.0f, rdc, P, 0.0f, n->vec.data));
            NG_TRY(ng_sum_cols(be, co, cols, 1.0f, n->vec.data, co, beta, gb));
            if (dx) {
                NG_TRY(ng_gemm_strided_batched(be, 0, 0, P, K, co, 1.0f, rdc, P, (long long)P * co, n->W[l].data, co, 0, 0.0f,
                                               n->col.data, P, (long long)P * K, cols));
                NG_TRY(ng_gemm_strided_batched(be, 0, 0, P, K, co, 1.0f, d, P, (long long)P * co, VW, co, 0, 1.0f, n->col.data, P,
                                               (long long)P * K, cols));
                NG_TRY(gather(be, NG_CONV_COL2IM, cols, ci, n->h[l - 1], n->w[l - 1], y->k, y->stride, y->pad, NULL,
                              n->col.data, rdn));
                NG_TRY(ng_gemm_strided_batched(be, 0, 0, P, K, co, 1.0f, d, P, (long long)P * co, n->W[l].data, co, 0, 0.0f,
                                               n->col.data, P, (long long)P * K, cols));
                NG_TRY(gather(be, NG_CONV_COL2IM, cols, ci, n->h[l - 1], n->w[l - 1], y->k, y->stride, y->pad, NULL,
                              n->col.data, dx));
            }
            break;
        }
        case NG_CNN_DENSE: {
            const int din = (int)n->size[l - 1];
            const float *VW = cat_of(n, v, &n->gW[l]);
            NG_TRY(ng_gemm(be, 0, 1, co, din, cols, 1.0f, rdc, co, in, din, beta, gW, co));
            if (rin) NG_TRY(ng_gemm(be, 0, 1, co, din, cols, 1.0f, d, co, rin, din, 1.0f, gW, co));
            NG_TRY(ng_sum_cols(be, co, cols, 1.0f, rdc, co, beta, gb));
            if (dx) {
                NG_TRY(ng_gemm(be, 1, 0, din, cols, co, 1.0f, n->W[l].data, co, rdc, co, 0.0f, rdn, din));
                NG_TRY(ng_gemm(be, 1, 0, din, cols, co, 1.0f, VW, co, d, co, 1.0f, rdn, din));
                NG_TRY(ng_gemm(be, 1, 0, din, cols, co, 1.0f, n->W[l].data, co, d, co, 0.0f, dx, din));
            }
            break;
        }
        case NG_CNN_POOL_MAX:
        case NG_CNN_POOL_AVG:
            if (dx) {
                const int mode = y->kind == NG_CNN_POOL_MAX ? NG_CONV_POOL_MAX_BACK : NG_CONV_POOL_AVG_BACK;
                const float *x = y->kind == NG_CNN_POOL_MAX ? in : NULL;
                NG_TRY(gather(be, mode, cols, ci, n->h[l - 1], n->w[l - 1], y->k, y->stride, 0, x, rdc, rdn));
                NG_TRY(gather(be, mode, cols, ci, n->h[l - 1], n->w[l - 1], y->k, y->stride, 0, x, d, dx));
            }
            break;
        case NG_CNN_ACT:
            if (dx) {
                ng_op_args o = {.op = NG_OP_ACT_BACKWARD};
                o.act_backward.rows = (int)n->size[l], o.act_backward.cols = cols, o.act_backward.act = y->act;
                o.act_backward.a = n->A[l].data, o.act_backward.lda = (int)n->size[l];
                o.act_backward.g = rdc, o.act_backward.ldg = (int)n->size[l];
                o.act_backward.h = rin ? d : NULL, o.act_backward.ldh = (int)n->size[l];
                o.act_backward.r = rin, o.act_backward.ldr = (int)n->size[l];
                o.act_backward.out = rdn, o.act_backward.ldo = (int)n->size[l];
                NG_TRY(ng_run_op(be, &o));
                o.act_backward.g = d, o.act_backward.h = NULL, o.act_backward.r = NULL, o.act_backward.ldh = 1;
                o.act_backward.ldr = 1, o.act_backward.out = dx;
                NG_TRY(ng_run_op(be, &o));
            }
            break;
        case NG_CNN_WHITEN:
            if (dx) {
                NG_TRY(whiten_op(be, cols, ci, hw0, 0, rdc, NULL, n->UT[l].data, rdn));
                NG_TRY(whiten_op(be, cols, ci, hw0, 0, d, NULL, n->UT[l].data, dx));
            }
            break;
        case NG_CNN_BN: {
            /* NHWC, every pixel a sample (as net.c's batch-norm H v): with D = dL/dy, RD = R{D},
             * xhat, rstd, R{xhat} = rstd P(R{x}):
             *   R{dgamma} = sum RD xhat + D R{xhat},  R{dbeta} = sum RD,  dx = rstd gamma P(D),
             *   R{dx} = rstd P(gamma RD + V_gamma D) + R{rstd} gamma P(D)
             *           - rstd gamma (R{xhat} mean(D xhat) + xhat mean(D R{xhat})),
             *   R{rstd} = -rstd^2 mean(xhat R{x})
             * Several ranks: every mean over every rank's samples (bn_sync_proj, bn_sync_mean), the
             * sums of D and R{D} (this rank's loss scale) weighted by w = m_r / m, those of R{x} by 1;
             * R{dgamma}, R{dbeta} stay this rank's (the caller weights and sums the products). */
            const int M = cols * hw0, dist = dist_on(n);
            const float *Vg = cat_of(n, v, &n->gW[l]), *xh = n->XH[l].data, *rs = n->rstd[l].data, *gam = n->W[l].data;
            float *Dn = n->T1.data, *RDn = n->T2.data, *Rx = n->HB[0].data, *RXH = n->HB[1].data, *B1 = n->HB[2].data;
            float *B2 = n->HB[3].data, *B3 = n->HB[4].data, *q = n->HQ.data;
            const int ldq = n->HQ.rows;
            const float inv = dist ? 1.0f : 1.0f / (float)M; /* sums, made means by bn_sync_mean */
            NG_TRY(layout(be, NG_CONV_TO_NHWC, cols, ci, hw0, d, Dn));
            NG_TRY(layout(be, NG_CONV_TO_NHWC, cols, ci, hw0, rdc, RDn));
            if (rin) {
                NG_TRY(layout(be, NG_CONV_TO_NHWC, cols, ci, hw0, rin, Rx));
                if (dist) NG_TRY(bn_sync_proj(n, l, M, Rx, 0, rs, NULL, 0.0f, RXH, RXH));
                else NG_TRY(bn_proj(be, ci, M, Rx, xh, rs, NULL, 0.0f, RXH));
            } else {
                NG_TRY(ng_memset0(be, Rx, (size_t)ci * M * sizeof(float)));
                NG_TRY(ng_memset0(be, RXH, (size_t)ci * M * sizeof(float)));
            }
            NG_TRY(rowdot(be, ci, M, 1.0f, RDn, ci, xh, ci, beta, gW));
            NG_TRY(rowdot(be, ci, M, 1.0f, Dn, ci, RXH, ci, 1.0f, gW));
            NG_TRY(ng_sum_cols(be, ci, M, 1.0f, RDn, ci, beta, gb));
            if (dx) {
                NG_TRY(act_fwd(be, ci, M, NG_ACT_LINEAR, RDn, ci, gam, NULL, B1, ci)); /* gamma RD + V_gamma D */
                NG_TRY(rowscale_acc(be, ci, M, Vg, Dn, ci, B1, ci));
                if (dist) NG_TRY(bn_sync_proj(n, l, M, B1, 1, rs, NULL, 0.0f, B2, B2));
                else NG_TRY(bn_proj(be, ci, M, B1, xh, rs, NULL, 0.0f, B2));
                NG_TRY(rowdot(be, ci, M, -inv, xh, ci, Rx, ci, 0.0f, q));
                if (dist) NG_TRY(bn_sync_mean(n, l, q, 0));
                NG_TRY(vmul(be, ci, 1.0f, rs, q, 0.0f, q + ldq));
                NG_TRY(vmul(be, ci, 1.0f, rs, q + ldq, 0.0f, q + 2 * ldq)); /* R{rstd} */
                if (dist) NG_TRY(bn_sync_proj(n, l, M, Dn, 1, q + 2 * ldq, gam, 1.0f, B3, B2));
                else NG_TRY(bn_proj(be, ci, M, Dn, xh, q + 2 * ldq, gam, 1.0f, B2));
                NG_TRY(vmul(be, ci, -1.0f, rs, gam, 0.0f, q + 3 * ldq)); /* -rstd gamma */
                NG_TRY(rowdot(be, ci, M, inv, Dn, ci, xh, ci, 0.0f, q + 4 * ldq));
                if (dist) NG_TRY(bn_sync_mean(n, l, q + 4 * ldq, 1));
                NG_TRY(vmul(be, ci, 1.0f, q + 3 * ldq, q + 4 * ldq, 0.0f, q + 5 * ldq));
                NG_TRY(rowscale_acc(be, ci, M, q + 5 * ldq, RXH, ci, B2, ci));
                NG_TRY(rowdot(be, ci, M, inv, Dn, ci, RXH, ci, 0.0f, q + 4 * ldq));
                if (dist) NG_TRY(bn_sync_mean(n, l, q + 4 * ldq, 1));
                NG_TRY(vmul(be, ci, 1.0f, q + 3 * ldq, q + 4 * ldq, 0.0f, q + 5 * ldq));
                NG_TRY(rowscale_acc(be, ci, M, q + 5 * ldq, xh, ci, B2, ci));
                NG_TRY(layout(be, NG_CONV_TO_NCHW, cols, ci, hw0, B2, rdn));
                /* dx = rstd gamma P(D) */
                if (dist) NG_TRY(bn_sync_proj(n, l, M, Dn, 1, rs, gam, 0.0f, B1, B1));
                else NG_TRY(bn_proj(be, ci, M, Dn, xh, rs, gam, 0.0f, B1));
                NG_TRY(layout(be, NG_CONV_TO_NCHW, cols, ci, hw0, B1, dx));
            }
            break;
        }
        }
        {
            float *t = rdc;
            rdc = rdn;
            rdn = t;
        }
    }
    return NG_OK;
}

ng_status ng_cnn_hvp_prepare(ng_model *m) {
    if (m->iface != &cnn_iface) return ng_error(NG_ERR_INVALID_ARG, "ng_cnn_hvp_prepare: model %s is not a cnn", m->iface->kind);
    return hv_workspace(as_cnn(m));
}

static ng_status cnn_hvp_fp(ng_model *m, const ng_tensor *v, ng_tensor *out) {
    cnn *n = as_cnn(m);
    const int ch = n->cfg.chunk;
    int c0, N;
    NG_TRY(need_cur(n, "H v"));
    NG_TRY(check_pvec(n, v, "H v", "v"));
    NG_TRY(check_pvec(n, out, "H v", "out"));
    if (out->ptr == v->ptr) return ng_error(NG_ERR_INVALID_ARG, "cnn H v: out must not alias v");
    NG_TRY(hv_workspace(n));
    N = n->cx.cols;
    for (c0 = 0; c0 < N; c0 += ch) {
        const int cols = N - c0 < ch ? N - c0 : ch;
        const float *rz, *t;
        int ldt;
        ng_op_args o = {.op = NG_OP_LOSS};
        NG_TRY(cur_forward(n, c0, cols));
        NG_TRY_RANGE(NG_CAT_FORWARD, "cnn R-forward", rforward_to(n, v->data, cols, &rz, 1));
        /* D[L] = (y - t) / m, RD[L] = H_L R{z_L} / m (into R[0]) */
        t = cur_targets(n, c0, &ldt);
        o.loss.rows = n->classes, o.loss.cols = cols, o.loss.loss = NG_LOSS_CATEGORICAL;
        o.loss.z = n->A[n->L].data, o.loss.ldz = n->classes, o.loss.y = n->Y.data, o.loss.ldy = n->classes;
        o.loss.t = t, o.loss.ldt = ldt, o.loss.scale = 1.0f / (float)N, o.loss.d = n->D[n->L].data, o.loss.ldd = n->classes;
        NG_TRY(ng_run_op(m->be, &o));
        NG_TRY(loss_hvp_op(n, NG_LOSS_CATEGORICAL, n->Y.data, rz, 1.0f / (float)N, n->R[0].data, cols));
        NG_TRY_RANGE(NG_CAT_BACKWARD, "cnn R-backward", rbackward(n, v->data, cols, c0 ? 1.0f : 0.0f, out->data));
    }
    return NG_OK;
}

ng_status ng_cnn_hvp(ng_model *m, const ng_tensor *v, ng_tensor *out) {
    int saved;
    ng_status s, e;
    if (m->iface != &cnn_iface) return ng_error(NG_ERR_INVALID_ARG, "ng_cnn_hvp: model %s is not a cnn", m->iface->kind);
    NG_TRY(ng_fp32_begin(m->be, &saved));
    s = cnn_hvp_fp(m, v, out);
    e = ng_fp32_end(m->be, saved);
    return s != NG_OK ? s : e;
}

/* the model slots: the exact Fisher (= G v) */
static ng_status cnn_fvp_slot(ng_model *m, const ng_tensor *v, ng_tensor *out) { return ng_cnn_gvp(m, v, out); }

/* ---- whitening: statistics and the function-preserving reparametrisation ------------------ */

ng_status ng_cnn_whiten(ng_model *m, const ng_tensor *x, int n_s) {
    cnn *n = as_cnn(m);
    ng_backend *be = m->be;
    ng_whiten *wh = n->wh;
    const int ch = n->cfg.chunk;
    int l, c0, N, any = 0;
    ng_status s = NG_OK;
    if (!x || !x->ptr || x->dtype != NG_F32 || x->rows < (int)n->size[0] || x->cols < 1)
        return ng_error(NG_ERR_INVALID_ARG, "cnn whiten: samples must be float32 with at least %d rows and >= 1 case", (int)n->size[0]);
    if (n_s < 1) return ng_error(NG_ERR_INVALID_ARG, "cnn whiten: n_s %d must be >= 1", n_s);
    N = n_s < x->cols ? n_s : x->cols;
    if (dist_on(n)) {
        /* the first n_s cases of the global batch: this rank holds [lo, lo + cols) of it */
        const int tot = n_s < n->dist_batch ? n_s : n->dist_batch;
        N = tot - n->dist_lo;
        N = N < 0 ? 0 : N > x->cols ? x->cols : N;
    }
    for (l = 1; l <= n->L; l++)
        if (n->cfg.layer[l - 1].kind == NG_CNN_WHITEN) {
            ng_whiten_reset(&wh[l]);
            any = 1;
        }
    if (!any) return ng_error(NG_ERR_INVALID_ARG, "cnn whiten: the network has no whitening layer (w)");
    /* statistics of every whitening layer's input: the reparametrisation below keeps every later
     * layer's input unchanged, so one pass serves all of them */
    if (N == 0) s = forward(n, x->data, x->ld, 0, 2); /* a rank without samples: its part of the collectives */
    for (c0 = 0; c0 < N && s == NG_OK; c0 += ch) {
        const int cols = N - c0 < ch ? N - c0 : ch;
        int b;
        s = forward(n, x->data + (size_t)c0 * x->ld, x->ld, cols, 2);
        for (l = 1; l <= n->L && s == NG_OK; l++)
            if (n->cfg.layer[l - 1].kind == NG_CNN_WHITEN)
                for (b = 0; b < cols && s == NG_OK; b++) /* image b: pixels are the rows of (hw, c) */
                    s = ng_whiten_add(&wh[l], n->A[l - 1].data + (size_t)b * n->size[l - 1], n->h[l] * n->w[l],
                                      n->h[l] * n->w[l], 1);
    }
    /* several ranks: merge the statistics, each eigendecomposition by its owner (broadcast) */
    {
        ng_whiten *all[LMAX];
        int k = 0;
        for (l = 1; l <= n->L && s == NG_OK; l++)
            if (n->cfg.layer[l - 1].kind == NG_CNN_WHITEN) {
                s = ng_whiten_allreduce(&wh[l], n->comm);
                all[k++] = &wh[l];
            }
        if (s == NG_OK) s = ng_whiten_compute_shared(all, k, n->cfg.whiten_eps, n->comm);
    }
    for (l = 1; l <= n->L && s == NG_OK; l++) {
        const int d = n->c[l];
        const ng_cnn_layer *nx;
        double *Uo = n->whd, *Mx, *dm, *bias;
        float *f = n->whf, *W, *bb;
        size_t dd = (size_t)d * d, nW;
        int i, j, k, o, T, co;
        if (n->cfg.layer[l - 1].kind != NG_CNN_WHITEN) continue;
        nx = &n->cfg.layer[l];
        co = n->c[l + 1];
        T = nx->kind == NG_CNN_CONV ? nx->k * nx->k : n->h[l] * n->w[l]; /* taps per channel */
        nW = (size_t)co * d * T;
        Mx = Uo + dd;
        dm = Mx + dd;
        bias = dm + d;
        W = f + 4 * dd + 2 * (size_t)d;
        bb = W + nW;
        /* f: [0, dd) old U^T, [dd, 2dd) new U^T, [2dd, 3dd) new U^-1, [4dd, +d) old mu, [+d, +2d) new mu */
        if ((s = ng_get(be, f, n->UT[l].data, dd * sizeof(float))) != NG_OK ||
            (s = ng_get(be, f + dd, wh[l].UT.data, dd * sizeof(float))) != NG_OK ||
            (s = ng_get(be, f + 4 * dd, n->mu[l].data, (size_t)d * sizeof(float))) != NG_OK ||
            (s = ng_get(be, f + 4 * dd + d, wh[l].mean.data, (size_t)d * sizeof(float))) != NG_OK ||
            (s = ng_get(be, W, n->W[l + 1].data, nW * sizeof(float))) != NG_OK ||
            (s = ng_get(be, bb, n->b[l + 1].data, (size_t)co * sizeof(float))) != NG_OK)
            break;
        /* U^-1 of the new statistics into f[2dd ..] (via the device: the library's product) */
        if ((s = ng_whiten_uinv(&wh[l], n->uinv.data, d)) != NG_OK ||
            (s = ng_get(be, f + 2 * dd, n->uinv.data, dd * sizeof(float))) != NG_OK)
            break;
        /* Uo = old U (row i = column i of old U^T); Mx = Uo Uinv_new; dm = Uo (mu_new - mu_old) */
        for (i = 0; i < d; i++)
            for (j = 0; j < d; j++) Uo[i + (size_t)d * j] = f[j + (size_t)d * i];
        for (i = 0; i < d; i++) {
            double a = 0.0;
            for (j = 0; j < d; j++) {
                double acc = 0.0;
                for (k = 0; k < d; k++) acc += Uo[i + (size_t)d * k] * (double)f[2 * dd + k + (size_t)d * j];
                Mx[i + (size_t)d * j] = acc;
                a += Uo[i + (size_t)d * j] * ((double)f[4 * dd + d + j] - (double)f[4 * dd + j]);
            }
            dm[i] = a;
        }
        /* next layer: W (co, d T) with column (channel, tap) = c T + t; per tap W_t' = W_t Mx,
         * b' = b + sum_t W_t dm */
        for (o = 0; o < co; o++) {
            double bacc = (double)bb[o];
            int t;
            for (t = 0; t < T; t++) {
                for (i = 0; i < d; i++) bias[i] = (double)W[o + (size_t)co * ((size_t)i * T + t)];
                for (i = 0; i < d; i++) bacc += bias[i] * dm[i];
                for (j = 0; j < d; j++) {
                    double acc = 0.0;
                    for (i = 0; i < d; i++) acc += bias[i] * Mx[i + (size_t)d * j];
                    W[o + (size_t)co * ((size_t)j * T + t)] = (float)acc;
                }
            }
            bb[o] = (float)bacc;
        }
        if ((s = ng_set(be, n->W[l + 1].data, W, nW * sizeof(float))) == NG_OK &&
            (s = ng_set(be, n->b[l + 1].data, bb, (size_t)co * sizeof(float))) == NG_OK &&
            (s = ng_copy(be, n->UT[l].data, wh[l].UT.data, dd * sizeof(float))) == NG_OK)
            s = ng_copy(be, n->mu[l].data, wh[l].mean.data, (size_t)d * sizeof(float));
    }
    n->have_batch = 0;
    return s;
}

/* ---- checkpoints -------------------------------------------------------------------------- */

static ng_status cnn_save(ng_model *m, ng_ckpt *c) {
    cnn *n = as_cnn(m);
    char spec[1024];
    float norm;
    NG_TRY(ng_nrm2(m->be, ng_model_size(m), m->param_flat.data, &norm));
    if (!isfinite(norm)) return ng_error(NG_ERR_NUMERIC, "cnn parameters hold NaN or Inf (diverged: lower --lr); not saved");
    NG_TRY(ng_ckpt_set_str(c, "cnn.spec", ng_cnn_spec_string(&n->cfg, spec, sizeof spec)));
    NG_TRY(ng_ckpt_set_i64(c, "cnn.channels", n->cfg.c));
    NG_TRY(ng_ckpt_set_i64(c, "cnn.height", n->cfg.h));
    NG_TRY(ng_ckpt_set_i64(c, "cnn.width", n->cfg.w));
    NG_TRY(ng_ckpt_set_f32(c, "cnn.bn_eps", n->cfg.bn_eps));
    NG_TRY(ng_ckpt_set_f32(c, "cnn.bn_momentum", n->cfg.bn_momentum));
    NG_TRY(ng_ckpt_set_f32(c, "cnn.whiten_eps", n->cfg.whiten_eps));
    NG_TRY(ng_ckpt_set_i64(c, "cnn.chunk", n->cfg.chunk));
    NG_TRY(ng_ckpt_set_i64(c, "cnn.whiten_every", n->cfg.whiten_every));
    NG_TRY(ng_ckpt_set_i64(c, "cnn.whiten_samples", n->cfg.whiten_samples));
    NG_TRY(ng_ckpt_set_i64(c, "cnn.augment_pad", n->cfg.augment_pad));
    NG_TRY(ng_ckpt_set_i64(c, "cnn.augment_flip", n->cfg.augment_flip));
    NG_TRY(ng_ckpt_set_u64(c, "cnn.gradients", n->gradients));
    if (n->st.count) NG_TRY(ng_ckpt_add_arena(c, "cnn.", &n->st));
    return NG_OK;
}

ng_status ng_cnn_config_from_ckpt(const ng_ckpt *c, ng_cnn_config *cfg) {
    const char *spec = NULL, *kind = NULL;
    int64_t ci, h, w;
    NG_TRY(ng_ckpt_get_str(c, "model.kind", &kind));
    if (strcmp(kind, "cnn") != 0)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s holds a model of kind '%s', not a cnn", ng_ckpt_path(c), kind);
    NG_TRY(ng_ckpt_get_str(c, "cnn.spec", &spec));
    NG_TRY(ng_ckpt_get_int(c, "cnn.channels", 1, 100000, &ci));
    NG_TRY(ng_ckpt_get_int(c, "cnn.height", 1, 100000, &h));
    NG_TRY(ng_ckpt_get_int(c, "cnn.width", 1, 100000, &w));
    if (ng_cnn_parse_spec(spec, cfg) != NG_OK)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: field cnn.spec: %s", ng_ckpt_path(c), ng_last_error());
    cfg->c = (int)ci, cfg->h = (int)h, cfg->w = (int)w;
    NG_TRY(ng_ckpt_get_float(c, "cnn.bn_eps", 1e-12, 0.999, &cfg->bn_eps));
    NG_TRY(ng_ckpt_get_float(c, "cnn.bn_momentum", 1e-9, 1.0, &cfg->bn_momentum));
    NG_TRY(ng_ckpt_get_float(c, "cnn.whiten_eps", 1e-12, 1e6, &cfg->whiten_eps));
    {
        int64_t we, ws, ap, af, chk;
        NG_TRY(ng_ckpt_get_int(c, "cnn.chunk", 1, 65536, &chk));
        cfg->chunk = (int)chk;
        NG_TRY(ng_ckpt_get_int(c, "cnn.whiten_every", 0, 1 << 30, &we));
        NG_TRY(ng_ckpt_get_int(c, "cnn.whiten_samples", 1, 1 << 30, &ws));
        NG_TRY(ng_ckpt_get_int(c, "cnn.augment_pad", 0, 64, &ap));
        NG_TRY(ng_ckpt_get_int(c, "cnn.augment_flip", 0, 1, &af));
        cfg->whiten_every = (int)we, cfg->whiten_samples = (int)ws, cfg->augment_pad = (int)ap, cfg->augment_flip = (int)af;
    }
    if (ng_cnn_config_check(cfg) != NG_OK) return ng_error(NG_ERR_FORMAT, "checkpoint %s: %s", ng_ckpt_path(c), ng_last_error());
    return NG_OK;
}

static ng_status cnn_load(ng_model *m, const ng_ckpt *c, int apply) {
    cnn *n = as_cnn(m);
    ng_cnn_config theirs = n->cfg;
    char a[1024], b[1024];
    NG_TRY(ng_cnn_config_from_ckpt(c, &theirs));
    ng_cnn_spec_string(&theirs, a, sizeof a);
    ng_cnn_spec_string(&n->cfg, b, sizeof b);
    if (strcmp(a, b) != 0 || theirs.c != n->cfg.c || theirs.h != n->cfg.h || theirs.w != n->cfg.w)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: cnn %dx%dx%d %s, this run builds %dx%dx%d %s", ng_ckpt_path(c), theirs.c,
                        theirs.h, theirs.w, a, n->cfg.c, n->cfg.h, n->cfg.w, b);
    if (n->st.count) {
        NG_TRY(ng_ckpt_check_arena(c, "cnn.", &n->st));
        if (apply) NG_TRY(ng_ckpt_load_arena(c, "cnn.", &n->st));
    }
    {
        uint64_t g;
        NG_TRY(ng_ckpt_get_u64(c, "cnn.gradients", &g));
        if (apply) n->gradients = g;
    }
    if (apply) {
        n->have_batch = 0;
        NG_TRY(sync_aug(n)); /* before any CUDA graph capture */
    }
    return NG_OK;
}

/* CUDA graphs (natgrad/train.h): the gradient reads nothing on the host (the objective and the
 * misclassifications are summed on the device, the augmentation takes its step from aug_dev, at
 * this rank's images dist_lo.. on several ranks, where the trainer's all-reduce of the gradient is
 * in the graph). The reparametrisation of whitening layers (ng_cnn_whiten: host float64 algebra)
 * runs inside the gradient every whiten_every gradients: graph_eager makes those updates eager.
 * Batch norm on several ranks merges its statistics on the device with NCCL (bn_dev: captured with
 * its all-reduces), through the host over MPI (bn_sync_moments, bn_sync_proj: refused). */
static ng_status cnn_graph_check(const ng_model *m) {
    const cnn *n = (const cnn *)m;
    if (dist_on(n) && has_kind(n, NG_CNN_BN) && !bn_dev(n))
        return ng_error(NG_ERR_UNSUPPORTED, "--cuda-graph 1 on %d ranks: the cnn's batch norm merges its statistics across "
                        "the ranks through the host over MPI (not captured); it is captured with the NCCL communicator; "
                        "run it with --cuda-graph 0", n->comm->world);
    return NG_OK;
}
static int cnn_graph_eager(const ng_model *m) {
    const cnn *n = (const cnn *)m;
    return n->cfg.whiten_every > 0 && n->gradients % (uint64_t)n->cfg.whiten_every == 0;
}
static void cnn_graph_replayed(ng_model *m, const ng_tensor *x) {
    gradient_done(as_cnn(m), x, NULL); /* aug_dev moved on with gradients (aug_ok unchanged) */
}
static void cnn_graph_discarded(ng_model *m) {
    cnn *n = as_cnn(m);
    n->gradients = n->g0;
    n->aug_ok = n->aug_ok0; /* nothing recorded ran: the device's step is what it was */
    n->have_batch = 0;
    n->have_cur = 0;
    n->cached = 0;
}

/* CUDA-graph segments (natgrad/graph.h; truncated Newton's gradient, curvature products and
 * objective evaluations): the host state of the passes that a segment's control flow reads and
 * leaves behind: the curvature products' batch (cx, cy and its flags, cur_lo), whether the buffers
 * hold its forward pass (cached), the last gradient's batch (m, have_batch), whether the device's
 * augmentation step is known (aug_ok: a gradient rewrites it otherwise, a blocking copy), whether
 * H v's workspace exists (its first call allocates it) and, on several ranks, the cases of the last
 * synchronised forward pass (bn_cols: the device merges' counts bn_cnt, which a captured merge holds
 * as values and a later segment's merges read). Not here: the gradient count, which a gradient
 * advances and a key must not hold (the trainer's gradient segment repeats it through
 * graph_replayed, natgrad/train.h). None while a whitening reparametrisation is due (the next
 * gradient reads the host: every segment of that update runs eagerly) or on several ranks with
 * batch norm merged over MPI (bn_sync_moments, bn_sync_proj, bn_sync_mean read the host). On
 * several ranks with NCCL nothing else of the gradient, G v, F v (the sampled targets drawn at
 * cur_lo + column on the device), H v or the objective's device half reads the host: the
 * batch-norm merges are all-reduces on the stream, captured with the segment. */
#define CNN_STATE_WORDS (2 * NG_GRAPH_TENSOR_WORDS + 3)
static int cnn_graph_state_get(const ng_model *m, uint64_t *st, int cap) {
    const cnn *n = (const cnn *)m;
    static const ng_tensor none; /* the views of a batch not set */
    if (cap < CNN_STATE_WORDS || cnn_graph_eager(m) || (dist_on(n) && has_kind(n, NG_CNN_BN) && !bn_dev(n))) return -1;
    ng_graph_tensor_words(n->have_cur ? &n->cx : &none, st);
    ng_graph_tensor_words(n->have_cur && n->have_cy ? &n->cy : &none, st + NG_GRAPH_TENSOR_WORDS);
    st[2 * NG_GRAPH_TENSOR_WORDS] = (uint64_t)(n->have_cur != 0) | (uint64_t)(n->have_cy != 0) << 1 |
                                    (uint64_t)(n->cached != 0) << 2 | (uint64_t)(n->have_batch != 0) << 3 |
                                    (uint64_t)(n->aug_ok != 0) << 4 | (uint64_t)(n->hws.count != 0) << 5;
    st[2 * NG_GRAPH_TENSOR_WORDS + 1] = (uint64_t)(uint32_t)n->m << 32 | (uint32_t)n->cur_lo;
    st[2 * NG_GRAPH_TENSOR_WORDS + 2] = (uint64_t)(uint32_t)n->bn_cols;
    return CNN_STATE_WORDS;
}
static void cnn_graph_state_set(ng_model *m, const uint64_t *st, int n_words) {
    cnn *n = as_cnn(m);
    const uint64_t f = st[2 * NG_GRAPH_TENSOR_WORDS];
    int l;
    if (n_words != CNN_STATE_WORDS) return;
    ng_graph_words_tensor(st, &n->cx);
    ng_graph_words_tensor(st + NG_GRAPH_TENSOR_WORDS, &n->cy);
    n->have_cur = (int)(f & 1);
    n->have_cy = (int)(f >> 1 & 1);
    n->cached = (int)(f >> 2 & 1);
    n->have_batch = (int)(f >> 3 & 1);
    n->aug_ok = (int)(f >> 4 & 1);
    n->m = (int)(uint32_t)(st[2 * NG_GRAPH_TENSOR_WORDS + 1] >> 32);
    n->cur_lo = (int)(uint32_t)st[2 * NG_GRAPH_TENSOR_WORDS + 1];
    n->bn_cols = (int)(uint32_t)st[2 * NG_GRAPH_TENSOR_WORDS + 2];
    for (l = 1; l <= n->L; l++)
        if (n->cfg.layer[l - 1].kind == NG_CNN_BN) n->bn_cnt[l] = n->bn_cols * n->h[l - 1] * n->w[l - 1];
}

static const struct ng_model_i cnn_iface = {
    .kind = "cnn",
    .gradient = cnn_gradient,
    .statistic = cnn_statistic,
    .columns = cnn_columns,
    .log_values = cnn_log_values,
    .jvp = ng_cnn_jvp,
    .gnvp = ng_cnn_gvp,
    .fvp = cnn_fvp_slot,
    .hvp = ng_cnn_hvp,
    .save = cnn_save,
    .load = cnn_load,
    .destroy = cnn_destroy,
    .check_gradient = cnn_check_gradient,
    .graph_check = cnn_graph_check,
    .graph_eager = cnn_graph_eager,
    .graph_replayed = cnn_graph_replayed,
    .graph_discarded = cnn_graph_discarded,
    .graph_state_get = cnn_graph_state_get,
    .graph_state_set = cnn_graph_state_set,
};
