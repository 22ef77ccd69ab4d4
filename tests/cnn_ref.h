/* cnn_ref.h: the float64 reference of a convolutional classifier (natgrad/cnn.h) that
 * tests/test_cnn.c and tests/test_cnn_rop.c check the engine against: the forward pass to the
 * logits (conv with stride and padding, max / average pooling, activations, batch norm over
 * channels or dense units in training mode or on running averages, dense layers, the 1x1
 * whitening convolution) written again from the definitions, and the mean cross-entropy; ref_bind
 * and ref_load_whiten take the layout and the whitening state from an engine model. */
#ifndef NG_TESTS_CNN_REF_H
#define NG_TESTS_CNN_REF_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natgrad/cnn.h"
#include "natgrad/model.h"
#include "natgrad/tensor.h"

typedef struct ref {
    const ng_cnn_config *cfg;
    int c[NG_CNN_MAX_LAYERS + 1], h[NG_CNN_MAX_LAYERS + 1], w[NG_CNN_MAX_LAYERS + 1];
    size_t off_W[NG_CNN_MAX_LAYERS + 1], off_b[NG_CNN_MAX_LAYERS + 1]; /* in the flat parameter vector */
    double *UT[NG_CNN_MAX_LAYERS + 1], *mu[NG_CNN_MAX_LAYERS + 1];    /* whitening state */
    double eps;
    int m, rows, classes;
    const double *x; /* (rows, m): input then one-hot targets */
} ref;

static size_t sz(const ref *r, int l) { return (size_t)r->c[l] * r->h[l] * r->w[l]; }

/* Logits z (classes, m) of the batch for parameters theta (flat layout): batch norm on the batch's
 * statistics (training mode, biased variance) when run is NULL, else on the running (mean, rstd)
 * pairs given in run[l]. */
static void ref_logits_run(const ref *r, const double *theta, double *const *run, double *zout) {
    const ng_cnn_config *cfg = r->cfg;
    const int m = r->m, L = cfg->n_layers;
    double *a = (double *)malloc(sz(r, 0) * m * sizeof(double)), *o = NULL;
    int l, b, i;
    for (b = 0; b < m; b++)
        for (i = 0; i < (int)sz(r, 0); i++) a[i + sz(r, 0) * b] = r->x[i + (size_t)r->rows * b];
    for (l = 1; l <= L; l++) {
        const ng_cnn_layer *y = &cfg->layer[l - 1];
        const int ci = r->c[l - 1], hi = r->h[l - 1], wi = r->w[l - 1], co = r->c[l], ho = r->h[l], wo = r->w[l];
        const size_t si = sz(r, l - 1), so = sz(r, l);
        const double *W = theta + r->off_W[l], *bb = theta + r->off_b[l];
        int oc, oh, ow, ii, jj, cc;
        o = (double *)calloc(so * m, sizeof(double));
        for (b = 0; b < m; b++) {
            const double *x = a + si * b;
            double *z = o + so * b;
            switch (y->kind) {
            case NG_CNN_CONV:
                for (oc = 0; oc < co; oc++)
                    for (oh = 0; oh < ho; oh++)
                        for (ow = 0; ow < wo; ow++) {
                            double s = bb[oc];
                            for (cc = 0; cc < ci; cc++)
                                for (ii = 0; ii < y->k; ii++)
                                    for (jj = 0; jj < y->k; jj++) {
                                        int ih = oh * y->stride - y->pad + ii, iw = ow * y->stride - y->pad + jj;
                                        if (ih < 0 || ih >= hi || iw < 0 || iw >= wi) continue;
                                        s += W[oc + (size_t)co * ((cc * y->k + ii) * y->k + jj)] * x[(cc * hi + ih) * wi + iw];
                                    }
                            z[(oc * ho + oh) * wo + ow] = s;
                        }
                break;
            case NG_CNN_POOL_MAX:
            case NG_CNN_POOL_AVG:
                for (cc = 0; cc < ci; cc++)
                    for (oh = 0; oh < ho; oh++)
                        for (ow = 0; ow < wo; ow++) {
                            double best = -INFINITY, s = 0.0;
                            for (ii = 0; ii < y->k; ii++)
                                for (jj = 0; jj < y->k; jj++) {
                                    double v = x[(cc * hi + oh * y->stride + ii) * wi + ow * y->stride + jj];
                                    if (v > best) best = v;
                                    s += v;
                                }
                            z[(cc * ho + oh) * wo + ow] = y->kind == NG_CNN_POOL_MAX ? best : s / (y->k * y->k);
                        }
                break;
            case NG_CNN_ACT:
                for (i = 0; i < (int)so; i++) {
                    double v = x[i];
                    z[i] = y->act == NG_ACT_RELU ? (v > 0 ? v : 0) : y->act == NG_ACT_TANH ? tanh(v)
                           : y->act == NG_ACT_LOGISTIC ? 1.0 / (1.0 + exp(-v)) : v;
                }
                break;
            case NG_CNN_DENSE:
                for (oc = 0; oc < co; oc++) {
                    double s = bb[oc];
                    for (i = 0; i < (int)si; i++) s += W[oc + (size_t)co * i] * x[i];
                    z[oc] = s;
                }
                break;
            case NG_CNN_WHITEN:
                for (oc = 0; oc < ci; oc++)
                    for (i = 0; i < hi * wi; i++) {
                        double s = 0.0;
                        for (cc = 0; cc < ci; cc++) s += r->UT[l][cc + (size_t)ci * oc] * (x[cc * hi * wi + i] - r->mu[l][cc]);
                        z[oc * hi * wi + i] = s;
                    }
                break;
            default: break;
            }
        }
        if (y->kind == NG_CNN_BN) {
            const int hw = hi * wi;
            for (cc = 0; cc < ci; cc++) {
                double mean = 0.0, var = 0.0, rs;
                if (run) {
                    mean = run[l][cc];
                    rs = run[l][ci + cc];
                } else {
                    for (b = 0; b < m; b++)
                        for (i = 0; i < hw; i++) mean += a[si * b + (size_t)cc * hw + i];
                    mean /= (double)m * hw;
                    for (b = 0; b < m; b++)
                        for (i = 0; i < hw; i++) {
                            double d = a[si * b + (size_t)cc * hw + i] - mean;
                            var += d * d;
                        }
                    rs = 1.0 / sqrt(var / ((double)m * hw) + r->eps);
                }
                for (b = 0; b < m; b++)
                    for (i = 0; i < hw; i++) {
                        size_t at = si * b + (size_t)cc * hw + i;
                        o[at] = W[cc] * (a[at] - mean) * rs + bb[cc];
                    }
            }
        }
        free(a);
        a = o;
    }
    memcpy(zout, a, (size_t)r->classes * m * sizeof(double));
    free(a);
}

/* Mean cross-entropy of the batch for parameters theta (run as in ref_logits_run) against the
 * batch's one-hot targets. */
static double ref_objective_run(const ref *r, const double *theta, double *const *run) {
    const int C = r->classes;
    double *z = (double *)malloc((size_t)C * r->m * sizeof(double)), obj = 0.0;
    int b, k;
    ref_logits_run(r, theta, run, z);
    for (b = 0; b < r->m; b++) {
        const double *zb = z + (size_t)C * b, *t = r->x + (size_t)r->rows * b + sz(r, 0);
        double mx = zb[0], lse = 0.0;
        for (k = 1; k < C; k++) mx = zb[k] > mx ? zb[k] : mx;
        for (k = 0; k < C; k++) lse += exp(zb[k] - mx);
        lse = mx + log(lse);
        for (k = 0; k < C; k++) obj += t[k] * (lse - zb[k]);
    }
    free(z);
    return obj / r->m;
}

/* Offset of parameter `name` in the model's flat parameter vector ((size_t)-1: none). */
static size_t ref_off_of(ng_model *m, const char *name) {
    ng_tensor v, g;
    if (ng_model_param(m, name, &v, &g) != NG_OK) return (size_t)-1;
    return (size_t)(v.data - m->param_flat.data);
}

/* The reference of model m (built from cfg) for a batch of `batch` cases x (rows, batch; float64):
 * layer shapes, where each layer's parameters lie in the flat vector, eps, the class count. */
static void ref_bind(ref *r, const ng_cnn_config *cfg, ng_model *m, int batch, int rows, const double *x) {
    int l;
    r->cfg = cfg;
    for (l = 0; l <= cfg->n_layers; l++) ng_cnn_layer_shape(cfg, l, &r->c[l], &r->h[l], &r->w[l]);
    for (l = 1; l <= cfg->n_layers; l++) {
        const int k = cfg->layer[l - 1].kind;
        char a[32], bn[32];
        if (k == NG_CNN_CONV || k == NG_CNN_DENSE || k == NG_CNN_BN) {
            snprintf(a, sizeof a, k == NG_CNN_BN ? "gamma%d" : "W%d", l);
            snprintf(bn, sizeof bn, k == NG_CNN_BN ? "beta%d" : "b%d", l);
            r->off_W[l] = ref_off_of(m, a);
            r->off_b[l] = ref_off_of(m, bn);
        }
    }
    r->eps = cfg->bn_eps;
    r->m = batch;
    r->rows = rows;
    r->classes = ng_cnn_classes(cfg);
    r->x = x;
}

/* The model's whitening state (after ng_cnn_whiten) into the reference: U^T and the mean of every
 * whitening layer, replacing what it held. */
static ng_status ref_load_whiten(ref *r, ng_backend *be, ng_model *m) {
    int l;
    for (l = 1; l <= r->cfg->n_layers; l++)
        if (r->cfg->layer[l - 1].kind == NG_CNN_WHITEN) {
            char nu[32], nm[32];
            ng_tensor tu, tm;
            const int d = r->c[l];
            float *hu = (float *)malloc((size_t)d * d * sizeof(float)), *hm = (float *)malloc((size_t)d * sizeof(float));
            int i;
            ng_status s;
            snprintf(nu, sizeof nu, "whiten_UT%d", l);
            snprintf(nm, sizeof nm, "whiten_mu%d", l);
            s = ng_model_statistic(m, nu, &tu);
            if (s == NG_OK) s = ng_model_statistic(m, nm, &tm);
            if (s == NG_OK) s = ng_tensor_get(be, &tu, hu);
            if (s == NG_OK) s = ng_tensor_get(be, &tm, hm);
            if (s == NG_OK) {
                free(r->UT[l]);
                free(r->mu[l]);
                r->UT[l] = (double *)malloc((size_t)d * d * sizeof(double));
                r->mu[l] = (double *)malloc((size_t)d * sizeof(double));
                for (i = 0; i < d * d; i++) r->UT[l][i] = hu[i];
                for (i = 0; i < d; i++) r->mu[l][i] = hm[i];
            }
            free(hu);
            free(hm);
            NG_TRY(s);
        }
    return NG_OK;
}

#endif
