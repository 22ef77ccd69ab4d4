/* test_net.c: the network engine (natgrad/net.h) against an independent float64 reference written
 * here: objective, gradient, J v, G v, F v (exact, sampled, empirical) and H v for every activation
 * and loss (and batch normalisation), on tiny networks, against
 *   - a float64 forward pass and back-propagation written again in this file,
 *   - central finite differences in float64 (gradient, J v, H v as differences of gradients),
 *   - the dense Gauss-Newton matrix J^T H_L J assembled column by column;
 * plus chunked batches equal to one batch (the sampled F v too: its draws go by the case's column),
 * the sampled Fisher within its Monte-Carlo error of G v, H v symmetry, the sparse initialisation, presets and specs, bad input, and the CPU against the
 * (emulated) CUDA backend. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends.h"
#include "harness.h"
#include "natgrad/backend.h"
#include "natgrad/net.h"
#include "natgrad/rng.h"

static ng_backend *g_cpu, *g_cuda;
static char g_cuda_reason[512];

/* ---- the float64 reference ------------------------------------------------------------------ */

typedef struct ref {
    int L, d[NG_NET_MAX_LAYERS + 1], act[NG_NET_MAX_LAYERS], bn[NG_NET_MAX_LAYERS], loss, target;
    double eps;
    int m, rows;      /* cases, rows of a batch column */
    const double *x;  /* (rows, m) */
    int whiten;       /* whitened layers: layer l reads U[l] (a - c[l]) (PRONG eq. 6) */
    double U[NG_NET_MAX_LAYERS + 1][64], c[NG_NET_MAX_LAYERS + 1][8]; /* U (d_{l-1}, d_{l-1}) */
} ref;

static void ref_from(ref *r, const ng_net_config *c, const double *x, int m) {
    int l;
    memset(r, 0, sizeof *r);
    r->L = c->n_layers;
    for (l = 0; l <= r->L; l++) r->d[l] = c->dims[l];
    for (l = 0; l < r->L; l++) r->act[l] = c->act[l], r->bn[l] = c->bn[l];
    r->loss = c->loss;
    r->target = c->target;
    r->eps = c->bn_eps;
    r->m = m;
    r->rows = c->target == NG_NET_TARGET_INPUT ? c->dims[0] : c->dims[0] + c->dims[r->L];
    r->x = x;
}

static size_t ref_np(const ref *r) {
    size_t n = 0;
    int l;
    for (l = 1; l <= r->L; l++) n += (size_t)r->d[l] * r->d[l - 1] + (size_t)r->d[l] * (r->bn[l - 1] ? 2 : 1);
    return n;
}

static double ref_f(int act, double z) {
    switch (act) {
    case NG_ACT_LOGISTIC: return 1.0 / (1.0 + exp(-z));
    case NG_ACT_TANH: return tanh(z);
    case NG_ACT_RELU: return z > 0 ? z : 0;
    default: return z;
    }
}
static double ref_fp(int act, double z) {
    double s;
    switch (act) {
    case NG_ACT_LOGISTIC: s = 1.0 / (1.0 + exp(-z)); return s * (1 - s);
    case NG_ACT_TANH: s = tanh(z); return 1 - s * s;
    case NG_ACT_RELU: return z > 0 ? 1 : 0;
    default: return 1;
    }
}

static double ref_target(const ref *r, int i, int c) {
    return r->target == NG_NET_TARGET_INPUT ? r->x[i + (size_t)c * r->rows] : r->x[r->d[0] + i + (size_t)c * r->rows];
}

/* Forward pass: returns the mean objective; fills z (pre-activations, per layer, (d_l, m) each,
 * the BN-normalised-and-affine u for bn layers), a (activations) when non-NULL, the outputs y and
 * output pre-activations zL (d_L, m) when non-NULL, and the mean error. */
#define RMAXU 64
static double ref_forward(const ref *r, const double *th, double *zL, double *yout, double *err,
                          double *zs /* [L+1][RMAXU*m] */, double *as) {
    int m = r->m, l, i, c, L = r->L;
    double a[RMAXU * 64], z[RMAXU * 64], obj = 0, e = 0;
    const double *p = th;
    for (c = 0; c < m; c++)
        for (i = 0; i < r->d[0]; i++) a[i + c * RMAXU] = r->x[i + (size_t)c * r->rows];
    if (as) memcpy(as, a, sizeof a);
    for (l = 1; l <= L; l++) {
        int dl = r->d[l], dp = r->d[l - 1];
        const double *W = p, *b;
        p += (size_t)dl * dp;
        if (r->whiten) {
            double t[RMAXU];
            for (c = 0; c < m; c++) {
                for (i = 0; i < dp; i++) {
                    double s = 0;
                    int j;
                    for (j = 0; j < dp; j++) s += r->U[l][i + dp * j] * (a[j + c * RMAXU] - r->c[l][j]);
                    t[i] = s;
                }
                for (i = 0; i < dp; i++) a[i + c * RMAXU] = t[i];
            }
        }
        for (c = 0; c < m; c++)
            for (i = 0; i < dl; i++) {
                double s = 0;
                int j;
                for (j = 0; j < dp; j++) s += W[i + j * dl] * a[j + c * RMAXU];
                z[i + c * RMAXU] = s;
            }
        if (r->bn[l - 1]) {
            const double *g = p, *bt = p + dl;
            p += 2 * dl;
            for (i = 0; i < dl; i++) {
                double mu = 0, v = 0;
                for (c = 0; c < m; c++) mu += z[i + c * RMAXU];
                mu /= m;
                for (c = 0; c < m; c++) v += (z[i + c * RMAXU] - mu) * (z[i + c * RMAXU] - mu);
                v /= m;
                for (c = 0; c < m; c++) z[i + c * RMAXU] = g[i] * (z[i + c * RMAXU] - mu) / sqrt(v + r->eps) + bt[i];
            }
        } else {
            b = p;
            p += dl;
            for (c = 0; c < m; c++)
                for (i = 0; i < dl; i++) z[i + c * RMAXU] += b[i];
        }
        if (zs) memcpy(zs + (size_t)l * RMAXU * 64, z, sizeof z);
        if (l < L || r->loss != NG_LOSS_CATEGORICAL) {
            for (c = 0; c < m; c++)
                for (i = 0; i < dl; i++) a[i + c * RMAXU] = ref_f(r->act[l - 1], z[i + c * RMAXU]);
        } else {
            for (c = 0; c < m; c++) {
                double mx = -1e300, s = 0;
                for (i = 0; i < dl; i++) mx = z[i + c * RMAXU] > mx ? z[i + c * RMAXU] : mx;
                for (i = 0; i < dl; i++) s += exp(z[i + c * RMAXU] - mx);
                for (i = 0; i < dl; i++) a[i + c * RMAXU] = exp(z[i + c * RMAXU] - mx) / s;
            }
        }
        if (as) memcpy(as + (size_t)l * RMAXU * 64, a, sizeof a);
    }
    for (c = 0; c < m; c++) {
        double lse = 0, mx = -1e300;
        for (i = 0; i < r->d[L]; i++) mx = z[i + c * RMAXU] > mx ? z[i + c * RMAXU] : mx;
        for (i = 0; i < r->d[L]; i++) lse += exp(z[i + c * RMAXU] - mx);
        lse = mx + log(lse);
        for (i = 0; i < r->d[L]; i++) {
            double zz = z[i + c * RMAXU], y = a[i + c * RMAXU], t = ref_target(r, i, c);
            if (r->loss == NG_LOSS_SQUARED) obj += 0.5 * (y - t) * (y - t);
            else if (r->loss == NG_LOSS_BERNOULLI) obj += log1p(exp(-fabs(zz))) + (zz > 0 ? zz : 0) - t * zz;
            else obj += t * (lse - zz);
            e += (y - t) * (y - t);
            if (zL) zL[i + c * r->d[L]] = zz;
            if (yout) yout[i + c * r->d[L]] = y;
        }
    }
    if (err) *err = e / m;
    return obj / m;
}

/* Analytic gradient by back-propagation in float64 (networks without batch norm). */
static void ref_grad(const ref *r, const double *th, double *g) {
    static double zs[(NG_NET_MAX_LAYERS + 1) * RMAXU * 64], as[(NG_NET_MAX_LAYERS + 1) * RMAXU * 64];
    double D[RMAXU * 64], Dn[RMAXU * 64];
    size_t off[NG_NET_MAX_LAYERS + 1], o = 0;
    int l, i, j, c, m = r->m, L = r->L;
    ref_forward(r, th, NULL, NULL, NULL, zs, as);
    for (l = 1; l <= L; l++) {
        off[l] = o;
        o += (size_t)r->d[l] * r->d[l - 1] + r->d[l];
    }
    for (c = 0; c < m; c++)
        for (i = 0; i < r->d[L]; i++)
            D[i + c * RMAXU] = (as[(size_t)L * RMAXU * 64 + i + c * RMAXU] - ref_target(r, i, c)) / m;
    for (l = L; l >= 1; l--) {
        int dl = r->d[l], dp = r->d[l - 1];
        const double *W = th + off[l];
        const double *ap = as + (size_t)(l - 1) * RMAXU * 64;
        double *gW = g + off[l], *gb = gW + (size_t)dl * dp;
        for (i = 0; i < dl; i++) {
            double sb = 0;
            for (c = 0; c < m; c++) sb += D[i + c * RMAXU];
            gb[i] = sb;
            for (j = 0; j < dp; j++) {
                double s = 0;
                for (c = 0; c < m; c++) s += D[i + c * RMAXU] * ap[j + c * RMAXU];
                gW[i + j * dl] = s;
            }
        }
        if (l > 1) {
            const double *zp = zs + (size_t)(l - 1) * RMAXU * 64;
            for (c = 0; c < m; c++)
                for (j = 0; j < dp; j++) {
                    double s = 0;
                    for (i = 0; i < dl; i++) s += W[i + j * dl] * D[i + c * RMAXU];
                    Dn[j + c * RMAXU] = s * ref_fp(r->act[l - 2], zp[j + c * RMAXU]);
                }
            memcpy(D, Dn, sizeof D);
        }
    }
}

static double *dalloc(size_t n) { return (double *)calloc(n ? n : 1, sizeof(double)); }

/* d/dh f(th + h v) at 0 by central differences (f vector-valued: out of size nout). */
typedef void (*vecfn)(const ref *r, const double *th, double *out);
static void fn_zL(const ref *r, const double *th, double *out) { ref_forward(r, th, out, NULL, NULL, NULL, NULL); }
static void fn_obj(const ref *r, const double *th, double *out) { out[0] = ref_forward(r, th, NULL, NULL, NULL, NULL, NULL); }
static void fn_grad(const ref *r, const double *th, double *out) { ref_grad(r, th, out); }
/* the gradient by central differences of the float64 objective (networks with batch norm) */
static void fn_grad_fd(const ref *r, const double *th, double *out) {
    size_t np = ref_np(r), i;
    double *t = (double *)malloc(np * sizeof(double)), h = 1e-6;
    memcpy(t, th, np * sizeof(double));
    for (i = 0; i < np; i++) {
        double fp, fm;
        t[i] = th[i] + h;
        fp = ref_forward(r, t, NULL, NULL, NULL, NULL, NULL);
        t[i] = th[i] - h;
        fm = ref_forward(r, t, NULL, NULL, NULL, NULL, NULL);
        t[i] = th[i];
        out[i] = (fp - fm) / (2 * h);
    }
    free(t);
}

static void fd_dir(const ref *r, vecfn f, const double *th, const double *v, size_t np, size_t nout, double h,
                   double *out) {
    double *tp = dalloc(np), *tm = dalloc(np), *fp = dalloc(nout), *fm = dalloc(nout);
    size_t i;
    for (i = 0; i < np; i++) tp[i] = th[i] + h * v[i], tm[i] = th[i] - h * v[i];
    f(r, tp, fp);
    f(r, tm, fm);
    for (i = 0; i < nout; i++) out[i] = (fp[i] - fm[i]) / (2 * h);
    free(tp), free(tm), free(fp), free(fm);
}

/* Loss Hessian in z of one case (closed form at y), times u. */
static void ref_hl(int loss, int d, const double *y, const double *u, double *out) {
    int i;
    double s = 0;
    for (i = 0; i < d; i++) s += y[i] * u[i];
    for (i = 0; i < d; i++)
        out[i] = loss == NG_LOSS_SQUARED ? u[i] : loss == NG_LOSS_BERNOULLI ? y[i] * (1 - y[i]) * u[i] : y[i] * (u[i] - s);
}

/* ---- helpers ------------------------------------------------------------------------------ */

static int rel_close(const char *what, const float *got, const double *want, size_t n, double rtol) {
    double nd = 0, nw = 0, mx = 0;
    size_t i, bad = 0;
    for (i = 0; i < n; i++) {
        nd += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        nw += want[i] * want[i];
        if (fabs(want[i]) > mx) mx = fabs(want[i]);
    }
    for (i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= rtol * (mx + 1e-3))) {
            if (bad < 4) printf("  %s[%zu]: got %.9g want %.9g\n", what, i, (double)got[i], want[i]);
            bad++;
        }
    if (!(sqrt(nd) <= rtol * (sqrt(nw) + 1e-3)) || bad) {
        printf("  %s: relative error %.3g (tol %.3g), %zu of %zu elements off\n", what, sqrt(nd) / (sqrt(nw) + 1e-30), rtol, bad, n);
        return 1;
    }
    return 0;
}

static uint64_t g_state = 12345;
/* 1: fixtures build whitened networks (cfg.whiten) and check_products whitens them on their batch */
static int g_whiten;
static float g_whiten_eps = 1e-2f;
static double urand(void) {
    g_state = g_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_state >> 11) / 9007199254740992.0;
}

typedef struct fixture {
    ng_net_config cfg;
    ng_model *net;
    ref r;
    double *x64, *th;
    float *x32;
    ng_tensor xdev, vdev, odev, v2dev, jdev;
    void *mem;
    size_t np;
    int m;
} fixture;

static void fixture_free(fixture *f) {
    if (f->net) {
        ng_backend *be = f->net->be;
        if (f->mem) ng_free(be, f->mem);
        ng_net_free(f->net);
    }
    free(f->x64), free(f->th), free(f->x32);
    memset(f, 0, sizeof *f);
}

/* Build a network from spec on backend be, a batch of m cases (targets in [0,1], or one-hot for
 * categorical), and upload. */
static ng_status fixture_init(fixture *f, ng_backend *be, const char *spec, int hidden, int loss, int m, int chunk,
                              int init, uint64_t seed) {
    int rows, c, i, L, target = loss == NG_LOSS_CATEGORICAL ? NG_NET_TARGET_ROWS : NG_NET_TARGET_INPUT;
    size_t bytes;
    float *th32;
    memset(f, 0, sizeof *f);
    ng_net_config_default(&f->cfg);
    f->cfg.loss = loss;
    f->cfg.target = target;
    f->cfg.chunk = chunk;
    f->cfg.init = init;
    f->cfg.init_scale = 0.7f;
    f->cfg.seed = seed;
    f->cfg.bn_eps = 1e-3f;
    f->cfg.whiten = g_whiten;
    NG_TRY(ng_net_parse_spec(spec, hidden, loss == NG_LOSS_SQUARED ? NG_ACT_LINEAR : loss == NG_LOSS_BERNOULLI ? NG_ACT_LOGISTIC : NG_ACT_SOFTMAX, &f->cfg));
    NG_TRY(ng_net_create(be, &f->cfg, &f->net));
    L = f->cfg.n_layers;
    rows = ng_net_batch_rows(f->net);
    f->m = m;
    f->x64 = dalloc((size_t)rows * m);
    f->x32 = (float *)calloc((size_t)rows * m, sizeof(float));
    for (c = 0; c < m; c++) {
        for (i = 0; i < f->cfg.dims[0]; i++) f->x64[i + (size_t)c * rows] = (float)urand();
        if (target == NG_NET_TARGET_ROWS) {
            int k = (int)(urand() * f->cfg.dims[L]);
            for (i = 0; i < f->cfg.dims[L]; i++) f->x64[f->cfg.dims[0] + i + (size_t)c * rows] = i == k;
        }
    }
    for (i = 0; i < rows * m; i++) f->x32[i] = (float)f->x64[i];
    ref_from(&f->r, &f->cfg, f->x64, m);
    f->r.whiten = g_whiten;
    if (g_whiten)
        for (L = 1; L <= f->cfg.n_layers; L++)
            for (i = 0; i < f->cfg.dims[L - 1]; i++) f->r.U[L][i + f->cfg.dims[L - 1] * i] = 1.0;
    L = f->cfg.n_layers;
    f->np = ng_model_size(f->net);
    if (f->np != ref_np(&f->r)) return ng_error(NG_ERR_INVALID_ARG, "parameter count %zu vs reference %zu", f->np, ref_np(&f->r));
    f->th = dalloc(f->np);
    th32 = (float *)malloc(f->np * sizeof(float));
    NG_TRY(ng_tensor_get(be, &f->net->param_flat, th32));
    /* biases (and gamma, beta) away from 0 too, so no ReLU sits exactly on its kink */
    if (init == NG_INIT_GAUSSIAN)
        for (i = 0; i < (int)f->np; i++)
            if (th32[i] == 0.0f) th32[i] = (float)(urand() - 0.5);
    NG_TRY(ng_tensor_set(be, &f->net->param_flat, th32));
    for (i = 0; i < (int)f->np; i++) f->th[i] = th32[i];
    free(th32);
    bytes = ((size_t)rows * m + 3 * f->np + (size_t)f->cfg.dims[L] * m) * sizeof(float);
    NG_TRY(ng_alloc(be, bytes, &f->mem));
    f->xdev = ng_tensor_matrix((float *)f->mem, rows, m, rows);
    f->vdev = ng_tensor_matrix(f->xdev.data + (size_t)rows * m, (int)f->np, 1, (int)f->np);
    f->odev = ng_tensor_matrix(f->vdev.data + f->np, (int)f->np, 1, (int)f->np);
    f->v2dev = ng_tensor_matrix(f->odev.data + f->np, (int)f->np, 1, (int)f->np);
    f->jdev = ng_tensor_matrix(f->v2dev.data + f->np, f->cfg.dims[L], m, f->cfg.dims[L]);
    NG_TRY(ng_tensor_set(be, &f->xdev, f->x32));
    return NG_OK;
}

static ng_status upload_vec(ng_backend *be, ng_tensor *t, const double *v, size_t n) {
    float *h = (float *)malloc(n * sizeof(float));
    size_t i;
    ng_status s;
    for (i = 0; i < n; i++) h[i] = (float)v[i];
    s = ng_tensor_set(be, t, h);
    free(h);
    return s;
}

static const char *const act_list[] = {"logistic", "tanh", "relu", "linear"};

/* ---- every product against the reference ----------------------------------------------------- */

static int check_products(ng_backend *be, const char *spec, int hidden, int loss, int m, int chunk) {
    fixture f;
    size_t np, i, nout;
    double *v, *u, *want, *want2, *J, *gfd, obj, err, robj, rerr;
    float *got, *got2;
    int L, c, k, bn = strstr(spec, "+bn") != NULL, fail = 0;
    char what[160];
    if (fixture_init(&f, be, spec, hidden, loss, m, chunk, NG_INIT_GAUSSIAN, 7) != NG_OK) {
        printf("  %s: %s\n", spec, ng_last_error());
        fixture_free(&f);
        return NGT_FAIL;
    }
    np = f.np;
    L = f.cfg.n_layers;
    nout = (size_t)f.cfg.dims[L] * m;
    v = dalloc(np), u = dalloc(np), want = dalloc(np), want2 = dalloc(np), gfd = dalloc(np);
    J = dalloc(nout * np);
    got = (float *)calloc(np > nout ? np : nout, sizeof(float));
    got2 = (float *)calloc(np, sizeof(float));
    for (i = 0; i < np; i++) v[i] = urand() * 2 - 1, u[i] = urand() * 2 - 1;
    snprintf(what, sizeof what, "%s %s hidden=%s loss=%s m=%d chunk=%d%s", be->iface->name, spec, ng_act_name(hidden),
             ng_loss_name(loss), m, chunk, g_whiten ? " whitened" : "");
#define FAILIF(cond, ...)                                                \
    do {                                                                 \
        if (cond) {                                                      \
            printf("  [%s] ", what);                                     \
            printf(__VA_ARGS__);                                         \
            printf("\n");                                                \
            fail = 1;                                                    \
            goto done;                                                   \
        }                                                                \
    } while (0)
#define TRYS(expr) FAILIF((expr) != NG_OK, "%s: %s", #expr, ng_last_error())

    if (g_whiten) {
        /* whiten on the batch itself (U != I, c != 0), then read V, d, U and c back */
        float *h = (float *)malloc(np * sizeof(float));
        int l, a2, b2;
        TRYS(ng_net_whiten_refresh(f.net, &f.xdev, g_whiten_eps, 1, NULL));
        TRYS(ng_tensor_get(be, &f.net->param_flat, h));
        for (i = 0; i < np; i++) f.th[i] = h[i];
        for (l = 1; l <= L; l++) {
            ng_tensor UhT, cv;
            int d = f.cfg.dims[l - 1];
            float Uh[72], cc[8];
            TRYS(ng_net_whiten_state(f.net, l, &UhT, &cv));
            TRYS(ng_tensor_get(be, &UhT, Uh));
            TRYS(ng_tensor_get(be, &cv, cc));
            for (a2 = 0; a2 < d; a2++) {
                f.r.c[l][a2] = cc[a2];
                for (b2 = 0; b2 < d; b2++) f.r.U[l][a2 + d * b2] = Uh[b2 + (d + 1) * a2];
            }
        }
        free(h);
        /* the refresh changed U: it must not be the identity any more */
        FAILIF(fabs(f.r.U[1][0] - 1.0) < 1e-3 && fabs(f.r.U[1][1]) < 1e-3, "whitening left U_1 at the identity");
    }

    /* objective, error and gradient */
    TRYS(ng_model_gradient(f.net, &f.xdev, NULL));
    TRYS(ng_net_batch_loss(f.net, &obj, &err));
    robj = ref_forward(&f.r, f.th, NULL, NULL, &rerr, NULL, NULL);
    FAILIF(fabs(obj - robj) > 1e-5 * (1 + fabs(robj)), "objective %.9g vs reference %.9g", obj, robj);
    FAILIF(fabs(err - rerr) > 1e-5 * (1 + fabs(rerr)), "error %.9g vs reference %.9g", err, rerr);
    TRYS(ng_tensor_get(be, &f.net->grad_flat, got));
    for (i = 0; i < np; i++) {
        double e1[1];
        double *ei = dalloc(np);
        ei[i] = 1;
        fd_dir(&f.r, fn_obj, f.th, ei, np, 1, 1e-6, e1);
        gfd[i] = e1[0];
        free(ei);
    }
    FAILIF(rel_close("gradient vs finite differences", got, gfd, np, 2e-4), "gradient vs float64 central differences");
    if (!bn && !g_whiten) {
        ref_grad(&f.r, f.th, want);
        FAILIF(rel_close("gradient vs float64 backprop", got, want, np, 1e-4), "gradient vs float64 back-propagation");
    }

    /* J v against finite differences of z_L */
    TRYS(upload_vec(be, &f.vdev, v, np));
    TRYS(ng_net_jvp(f.net, &f.vdev, &f.jdev));
    TRYS(ng_tensor_get(be, &f.jdev, got));
    fd_dir(&f.r, fn_zL, f.th, v, np, nout, 1e-6, want);
    FAILIF(rel_close("J v", got, want, nout, 2e-4), "J v vs finite differences");

    /* the dense J, column by column; G v = (1/m) sum_c J_c^T H_c J_c v */
    {
        double *ei = dalloc(np), *y = dalloc(nout), *Jv = dalloc(nout), *HJv = dalloc(nout);
        int d = f.cfg.dims[L];
        for (i = 0; i < np; i++) {
            memset(ei, 0, np * sizeof(double));
            ei[i] = 1;
            fd_dir(&f.r, fn_zL, f.th, ei, np, nout, 1e-6, J + i * nout);
        }
        ref_forward(&f.r, f.th, NULL, y, NULL, NULL, NULL);
        for (k = 0; k < (int)nout; k++) {
            double s = 0;
            for (i = 0; i < np; i++) s += J[k + i * nout] * v[i];
            Jv[k] = s;
        }
        for (c = 0; c < m; c++) ref_hl(loss, d, y + (size_t)c * d, Jv + (size_t)c * d, HJv + (size_t)c * d);
        for (i = 0; i < np; i++) {
            double s = 0;
            for (k = 0; k < (int)nout; k++) s += J[k + i * nout] * HJv[k];
            want[i] = s / m;
        }
        /* empirical Fisher: (1/m) sum_c J_c^T d_c d_c^T J_c v, d = y - t */
        for (c = 0; c < m; c++) {
            double s = 0;
            int r;
            for (r = 0; r < d; r++) s += (y[r + c * d] - ref_target(&f.r, r, c)) * Jv[r + c * d];
            for (r = 0; r < d; r++) HJv[r + c * d] = (y[r + c * d] - ref_target(&f.r, r, c)) * s;
        }
        for (i = 0; i < np; i++) {
            double s = 0;
            for (k = 0; k < (int)nout; k++) s += J[k + i * nout] * HJv[k];
            want2[i] = s / m;
        }
        free(ei), free(y), free(Jv), free(HJv);
    }
    TRYS(ng_net_gvp(f.net, &f.vdev, &f.odev));
    TRYS(ng_tensor_get(be, &f.odev, got));
    FAILIF(rel_close("G v", got, want, np, 2e-4), "G v vs dense J^T H_L J");
    TRYS(ng_model_fvp(f.net, &f.vdev, &f.odev)); /* config: exact Fisher */
    TRYS(ng_tensor_get(be, &f.odev, got2));
    for (i = 0; i < np; i++) FAILIF(got2[i] != got[i], "exact F v differs from G v at %zu: %.9g vs %.9g", i, got2[i], got[i]);
    TRYS(ng_net_fvp(f.net, NG_FISHER_EMPIRICAL, 1, 0, 0, &f.vdev, &f.odev));
    TRYS(ng_tensor_get(be, &f.odev, got));
    FAILIF(rel_close("empirical F v", got, want2, np, 2e-4), "empirical F v vs dense reference");

    /* H v: differences of float64 gradients (analytic, or themselves differences with batch
     * norm); symmetry u^T H v = v^T H u */
    {
        double uhv = 0, vhu = 0, sc = 0;
        int fdg = bn || g_whiten;
        fd_dir(&f.r, fdg ? fn_grad_fd : fn_grad, f.th, v, np, np, fdg ? 1e-4 : 1e-6, want);
        TRYS(ng_net_hvp(f.net, &f.vdev, &f.odev));
        TRYS(ng_tensor_get(be, &f.odev, got));
        FAILIF(rel_close("H v", got, want, np, fdg ? 1e-3 : 2e-4), "H v vs finite differences of gradients");
        TRYS(upload_vec(be, &f.v2dev, u, np));
        TRYS(ng_net_hvp(f.net, &f.v2dev, &f.odev));
        TRYS(ng_tensor_get(be, &f.odev, got2));
        for (i = 0; i < np; i++) {
            uhv += (double)u[i] * got[i];
            vhu += (double)v[i] * got2[i];
            sc += fabs(u[i] * got[i]) + fabs(v[i] * got2[i]);
        }
        FAILIF(fabs(uhv - vhu) > 1e-5 * sc, "H not symmetric: u^T H v = %.9g, v^T H u = %.9g", uhv, vhu);
    }
done:
#undef FAILIF
#undef TRYS
    free(v), free(u), free(want), free(want2), free(gfd), free(J), free(got), free(got2);
    fixture_free(&f);
    return fail ? NGT_FAIL : NGT_PASS;
}

static int products_all(ng_backend *be) {
    int a, fail = 0;
    for (a = 0; a < 4; a++) {
        fail |= check_products(be, "5-4-3-5", ng_act_parse(act_list[a]), NG_LOSS_SQUARED, 6, 1000) != NGT_PASS;
        fail |= check_products(be, "5-4-3-5", ng_act_parse(act_list[a]), NG_LOSS_BERNOULLI, 6, 1000) != NGT_PASS;
        fail |= check_products(be, "5-4-3:tanh-4", ng_act_parse(act_list[a]), NG_LOSS_CATEGORICAL, 6, 1000) != NGT_PASS;
    }
    /* a linear code layer as in the autoencoders, and batch normalisation (G v, F v, gradient) */
    fail |= check_products(be, "6-5-2:linear-5-6", NG_ACT_LOGISTIC, NG_LOSS_BERNOULLI, 5, 1000) != NGT_PASS;
    fail |= check_products(be, "5-4+bn-3:tanh+bn-5", NG_ACT_RELU, NG_LOSS_SQUARED, 7, 1000) != NGT_PASS;
    fail |= check_products(be, "5-4:logistic+bn-3", NG_ACT_LOGISTIC, NG_LOSS_CATEGORICAL, 6, 1000) != NGT_PASS;
    /* chunked: several passes accumulate (no batch norm: its statistics are per chunk) */
    fail |= check_products(be, "5-4-3-5", NG_ACT_TANH, NG_LOSS_BERNOULLI, 7, 3) != NGT_PASS;
    fail |= check_products(be, "5-4-3:relu-4", NG_ACT_LOGISTIC, NG_LOSS_CATEGORICAL, 7, 2) != NGT_PASS;
    return fail ? NGT_FAIL : NGT_PASS;
}

static int test_products_cpu(void) { return products_all(g_cpu); }

/* Every product of whitened networks (PRONG eq. 6, after a reparametrisation on the batch: U != I,
 * c != 0) against the whitened float64 reference. */
static int products_whitened(ng_backend *be) {
    int a, fail = 0;
    g_whiten = 1;
    for (a = 0; a < 4; a++) {
        fail |= check_products(be, "5-4-3-5", ng_act_parse(act_list[a]), NG_LOSS_BERNOULLI, 8, 1000) != NGT_PASS;
        fail |= check_products(be, "5-4-3:tanh-4", ng_act_parse(act_list[a]), NG_LOSS_CATEGORICAL, 8, 1000) != NGT_PASS;
    }
    fail |= check_products(be, "5-4-3-5", NG_ACT_TANH, NG_LOSS_SQUARED, 8, 1000) != NGT_PASS;
    fail |= check_products(be, "5-4+bn-3:tanh+bn-5", NG_ACT_RELU, NG_LOSS_SQUARED, 8, 1000) != NGT_PASS;
    fail |= check_products(be, "5-4-3-5", NG_ACT_TANH, NG_LOSS_BERNOULLI, 8, 3) != NGT_PASS;
    g_whiten = 0;
    return fail ? NGT_FAIL : NGT_PASS;
}
static int test_products_whitened_cpu(void) { return products_whitened(g_cpu); }
static int test_products_whitened_cuda(void) {
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    return products_whitened(g_cuda);
}
static int test_products_cuda(void) {
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    return products_all(g_cuda);
}

/* Gradient, G v, H v and a Fisher product (mode fmode) of two fixtures holding the same network,
 * batch and v (already uploaded and differentiated), compared elementwise. 1 on a mismatch, -1 on
 * an error (printed). */
static int compare_products(fixture *a, fixture *b, int fmode, double atol, double rtol) {
    const char *name[] = {"gradient", "G v", "H v", "F v"};
    size_t np = a->np;
    float *ga = (float *)calloc(np, 4), *gb = (float *)calloc(np, 4);
    ng_backend *ba = a->net->be, *bb = b->net->be;
    int which, fail = 0;
    ng_status s = NG_OK;
    for (which = 0; which < 4 && !fail && s == NG_OK; which++) {
        ng_tensor *oa = which ? &a->odev : &a->net->grad_flat, *ob = which ? &b->odev : &b->net->grad_flat;
        if (which == 1) {
            s = ng_net_gvp(a->net, &a->vdev, &a->odev);
            if (s == NG_OK) s = ng_net_gvp(b->net, &b->vdev, &b->odev);
        } else if (which == 2) {
            s = ng_net_hvp(a->net, &a->vdev, &a->odev);
            if (s == NG_OK) s = ng_net_hvp(b->net, &b->vdev, &b->odev);
        } else if (which == 3) {
            s = ng_net_fvp(a->net, fmode, 3, 77, 0, &a->vdev, &a->odev);
            if (s == NG_OK) s = ng_net_fvp(b->net, fmode, 3, 77, 0, &b->vdev, &b->odev);
        }
        if (s == NG_OK) s = ng_tensor_get(ba, oa, ga);
        if (s == NG_OK) s = ng_tensor_get(bb, ob, gb);
        if (s == NG_OK) fail |= ngt_compare(name[which], gb, ga, np, atol, rtol);
    }
    if (s != NG_OK) printf("  compare_products: %s\n", ng_last_error());
    free(ga), free(gb);
    return s != NG_OK ? -1 : fail;
}

/* ---- chunked = one batch, to float tolerance --------------------------------------------------- */

static int test_chunked_equal(void) {
    fixture a, b;
    float *ga, *gb;
    size_t np, i;
    double *v;
    int fail = 0;
    NGT_OK(fixture_init(&a, g_cpu, "9-7-4-9", NG_ACT_LOGISTIC, NG_LOSS_BERNOULLI, 23, 1000, NG_INIT_GAUSSIAN, 3));
    NGT_OK(fixture_init(&b, g_cpu, "9-7-4-9", NG_ACT_LOGISTIC, NG_LOSS_BERNOULLI, 23, 5, NG_INIT_GAUSSIAN, 3));
    np = a.np;
    ga = (float *)calloc(np, sizeof(float));
    gb = (float *)calloc(np, sizeof(float));
    v = dalloc(np);
    for (i = 0; i < np; i++) v[i] = urand() - 0.5;
    NGT_OK(ng_tensor_set(g_cpu, &b.xdev, a.x32));
    NGT_OK(ng_tensor_get(g_cpu, &a.net->param_flat, ga));
    NGT_OK(ng_tensor_set(g_cpu, &b.net->param_flat, ga));
    NGT_OK(ng_model_gradient(a.net, &a.xdev, NULL));
    NGT_OK(ng_model_gradient(b.net, &b.xdev, NULL));
    NGT_OK(upload_vec(g_cpu, &a.vdev, v, np));
    NGT_OK(upload_vec(g_cpu, &b.vdev, v, np));
    fail = compare_products(&a, &b, NG_FISHER_EMPIRICAL, 1e-6, 1e-4) != 0;
    /* the sampled F v draws each case's targets by its column in the batch, not by chunk: 5 chunks
     * draw what one pass draws (Bernoulli targets, 3 draws per case), so the products agree to the
     * reassociation of the chunk sums (the tolerance of the exact products above) */
    if (!fail) {
        NGT_OK(ng_net_fvp(a.net, NG_FISHER_SAMPLED, 3, 77, 5, &a.vdev, &a.odev));
        NGT_OK(ng_net_fvp(b.net, NG_FISHER_SAMPLED, 3, 77, 5, &b.vdev, &b.odev));
        NGT_OK(ng_tensor_get(g_cpu, &a.odev, ga));
        NGT_OK(ng_tensor_get(g_cpu, &b.odev, gb));
        fail = ngt_compare("sampled F v, 5 chunks vs 1", gb, ga, np, 1e-6, 1e-4);
    }
    {
        double o1, e1, o2, e2;
        NGT_OK(ng_net_batch_loss(a.net, &o1, &e1));
        NGT_OK(ng_net_batch_loss(b.net, &o2, &e2));
        NGT_CLOSE(o2, o1, 1e-5 * o1, "objective, 5 chunks vs 1");
        NGT_OK(ng_net_evaluate(b.net, &b.xdev, &o2, &e2));
        NGT_CLOSE(o2, o1, 1e-5 * o1, "evaluate vs gradient objective");
        NGT_CLOSE(e2, e1, 1e-5 * e1, "evaluate vs gradient error");
    }
    free(ga), free(gb), free(v);
    fixture_free(&a);
    fixture_free(&b);
    return fail ? NGT_FAIL : NGT_PASS;
}

/* ---- the sampled Fisher: its mean over many draws is G v (checked against the Monte-Carlo
 * standard error of independent replicates) ----------------------------------------------------- */

static int sampled_fisher(int loss, const char *spec) {
    fixture f;
    enum { R = 24, S = 64 };
    size_t np, i;
    float *g, *rep;
    double *v, worst = 0;
    int k;
    NGT_OK(fixture_init(&f, g_cpu, spec, NG_ACT_TANH, loss, 5, 1000, NG_INIT_GAUSSIAN, 11));
    np = f.np;
    g = (float *)calloc(np, sizeof(float));
    rep = (float *)calloc(np * R, sizeof(float));
    v = dalloc(np);
    for (i = 0; i < np; i++) v[i] = urand() - 0.5;
    NGT_OK(ng_model_gradient(f.net, &f.xdev, NULL));
    NGT_OK(upload_vec(g_cpu, &f.vdev, v, np));
    NGT_OK(ng_net_gvp(f.net, &f.vdev, &f.odev));
    NGT_OK(ng_tensor_get(g_cpu, &f.odev, g));
    for (k = 0; k < R; k++) {
        NGT_OK(ng_net_fvp(f.net, NG_FISHER_SAMPLED, S, ng_rng_stream_key(5, NG_RNG_TEST), (uint64_t)k * 100000, &f.vdev,
                          &f.odev));
        NGT_OK(ng_tensor_get(g_cpu, &f.odev, rep + (size_t)k * np));
    }
    for (i = 0; i < np; i++) {
        double mu = 0, var = 0, se, z;
        for (k = 0; k < R; k++) mu += rep[i + (size_t)k * np];
        mu /= R;
        for (k = 0; k < R; k++) var += (rep[i + (size_t)k * np] - mu) * (rep[i + (size_t)k * np] - mu);
        var /= R - 1;
        se = sqrt(var / R);
        z = fabs(mu - g[i]) / (se + 1e-7 * (fabs(g[i]) + 1e-6));
        if (z > worst) worst = z;
    }
    /* np ~ 60 components, each |z| ~ t(23): P(max |z| > 6) is far below 1e-4 */
    NGT_CHECK(worst < 6.0, "sampled F v (%d x %d draws) vs G v: worst |z| = %.2f", R, S, worst);
    free(g), free(rep), free(v);
    fixture_free(&f);
    return NGT_PASS;
}

static int test_fisher_sampled(void) {
    if (sampled_fisher(NG_LOSS_BERNOULLI, "4-5-4") != NGT_PASS) return NGT_FAIL;
    if (sampled_fisher(NG_LOSS_SQUARED, "4-5-4") != NGT_PASS) return NGT_FAIL;
    return sampled_fisher(NG_LOSS_CATEGORICAL, "4-5-3");
}

/* ---- per-case derivatives with sampled targets (what K-FAC's G factors average) ---------------- */

static int test_backward_sampled(void) {
    fixture f;
    ng_tensor g1, a0, y;
    float *hg, *hy;
    int L, d, m = 6, c, r;
    NGT_OK(fixture_init(&f, g_cpu, "5-4-5", NG_ACT_LOGISTIC, NG_LOSS_BERNOULLI, m, 1000, NG_INIT_GAUSSIAN, 2));
    L = f.cfg.n_layers;
    d = f.cfg.dims[L];
    NGT_OK(ng_model_gradient(f.net, &f.xdev, NULL));
    NGT_OK(ng_net_backward_sampled(f.net, ng_rng_stream_key(3, NG_RNG_TEST), 0));
    NGT_OK(ng_model_statistic(f.net, "g2", &g1));
    NGT_OK(ng_model_statistic(f.net, "y", &y));
    NGT_OK(ng_model_statistic(f.net, "a0", &a0));
    NGT_CHECK(a0.rows == 6 && a0.cols == m, "a0 is %d x %d", a0.rows, a0.cols);
    hg = (float *)calloc((size_t)d * m, sizeof(float));
    hy = (float *)calloc((size_t)d * m, sizeof(float));
    NGT_OK(ng_tensor_get(g_cpu, &g1, hg));
    NGT_OK(ng_tensor_get(g_cpu, &y, hy));
    /* Bernoulli: dL/dz = y - t with t in {0, 1} sampled: y - g is 0 or 1 */
    for (c = 0; c < m; c++)
        for (r = 0; r < d; r++) {
            float t = hy[r + c * d] - hg[r + c * d];
            NGT_CHECK(fabsf(t) < 1e-6f || fabsf(t - 1.0f) < 1e-6f, "sampled target %g not 0/1", (double)t);
        }
    {
        float *h1 = (float *)calloc(6 * (size_t)m, sizeof(float));
        NGT_OK(ng_tensor_get(g_cpu, &a0, h1));
        for (c = 0; c < m; c++) NGT_CHECK(h1[5 + 6 * c] == 1.0f, "a-bar_0 homogeneous row is %g", (double)h1[5 + 6 * c]);
        free(h1);
    }
    free(hg), free(hy);
    fixture_free(&f);
    return NGT_PASS;
}

/* A data-parallel rank holding cases [c0, m) of a batch draws, with ng_net_backward_sampled_at(col0 =
 * c0), the targets one process draws for those cases of the whole batch: the sampled targets
 * t = y - g (Bernoulli: 0 or 1, so exact) of the sub-batch equal the whole batch's columns c0..;
 * with col0 = 0 they are the draws of the first cases instead (some differ). */
static int test_backward_sampled_at(void) {
    fixture f;
    ng_tensor g, y, xv;
    float *hg, *hy, *sg, *sy;
    int L, d, m = 6, c0 = 2, k = 4, c, r, differ = 0, pass;
    uint64_t key = ng_rng_stream_key(5, NG_RNG_TEST);
    NGT_OK(fixture_init(&f, g_cpu, "5-4-5", NG_ACT_LOGISTIC, NG_LOSS_BERNOULLI, m, 1000, NG_INIT_GAUSSIAN, 2));
    L = f.cfg.n_layers;
    d = f.cfg.dims[L];
    hg = (float *)calloc((size_t)d * m, sizeof(float));
    hy = (float *)calloc((size_t)d * m, sizeof(float));
    sg = (float *)calloc((size_t)d * m, sizeof(float));
    sy = (float *)calloc((size_t)d * m, sizeof(float));
    NGT_OK(ng_net_set_batch(f.net, &f.xdev, NULL));
    NGT_OK(ng_net_backward_sampled(f.net, key, 7));
    NGT_OK(ng_model_statistic(f.net, "g2", &g));
    NGT_OK(ng_model_statistic(f.net, "y", &y));
    NGT_OK(ng_tensor_get(g_cpu, &g, hg));
    NGT_OK(ng_tensor_get(g_cpu, &y, hy));
    xv = ng_tensor_matrix(f.xdev.data + (size_t)c0 * (size_t)f.xdev.ld, f.xdev.rows, k, f.xdev.ld);
    for (pass = 0; pass < 2; pass++) {
        NGT_OK(ng_net_set_batch(f.net, &xv, NULL));
        NGT_OK(ng_net_backward_sampled_at(f.net, key, 7, pass == 0 ? (uint64_t)c0 : 0));
        NGT_OK(ng_model_statistic(f.net, "g2", &g));
        NGT_OK(ng_model_statistic(f.net, "y", &y));
        NGT_CHECK(g.cols == k && y.cols == k, "sub-batch statistics have %d / %d columns, want %d", g.cols, y.cols, k);
        NGT_OK(ng_tensor_get(g_cpu, &g, sg));
        NGT_OK(ng_tensor_get(g_cpu, &y, sy));
        for (c = 0; c < k; c++)
            for (r = 0; r < d; r++) {
                float tw = hy[r + (c0 + c) * d] - hg[r + (c0 + c) * d], ts = sy[r + c * d] - sg[r + c * d];
                long iw = lroundf(tw), is = lroundf(ts);
                NGT_CHECK(fabsf(tw - (float)iw) < 1e-5f && fabsf(ts - (float)is) < 1e-5f, "targets %g, %g not 0/1", (double)tw, (double)ts);
                if (pass == 0)
                    NGT_CHECK(iw == is, "case %d unit %d: target %ld with col0 = %d, the whole batch drew %ld", c0 + c, r, is, c0, iw);
                else
                    differ += iw != is;
            }
    }
    NGT_CHECK(differ > 0, "col0 = 0 drew the same %d targets as col0 = %d (the offset is not used)", k * d, c0);
    free(hg), free(hy), free(sg), free(sy);
    fixture_free(&f);
    return NGT_PASS;
}

/* ---- sparse initialisation ---------------------------------------------------------------------- */

static int test_sparse_init(void) {
    ng_net_config c;
    ng_model *a = NULL, *b = NULL, *x = NULL;
    float *pa, *pb, *px;
    size_t np, i;
    int r, j, nz_total = 0;
    double s = 0, q = 0;
    ng_net_config_default(&c);
    c.loss = NG_LOSS_SQUARED;
    NGT_OK(ng_net_parse_spec("100-200-8-100", NG_ACT_LOGISTIC, NG_ACT_LINEAR, &c));
    c.seed = 42;
    NGT_OK(ng_net_create(g_cpu, &c, &a));
    NGT_OK(ng_net_create(g_cpu, &c, &b));
    c.seed = 43;
    NGT_OK(ng_net_create(g_cpu, &c, &x));
    np = ng_model_size(a);
    pa = (float *)malloc(np * 4), pb = (float *)malloc(np * 4), px = (float *)malloc(np * 4);
    NGT_OK(ng_tensor_get(g_cpu, &a->param_flat, pa));
    NGT_OK(ng_tensor_get(g_cpu, &b->param_flat, pb));
    NGT_OK(ng_tensor_get(g_cpu, &x->param_flat, px));
    NGT_CHECK(memcmp(pa, pb, np * 4) == 0, "same seed, different parameters");
    NGT_CHECK(memcmp(pa, px, np * 4) != 0, "different seeds, same parameters");
    /* layer 1: W (200, 100), every row exactly 15 non-zeros; b = 0 */
    for (r = 0; r < 200; r++) {
        int nz = 0;
        for (j = 0; j < 100; j++) {
            float w = pa[r + (size_t)j * 200];
            if (w != 0.0f) {
                nz++;
                s += w;
                q += (double)w * w;
            }
        }
        NGT_CHECK(nz == 15, "unit %d of layer 1 has %d non-zero incoming weights", r, nz);
        nz_total += nz;
    }
    for (i = 0; i < 200; i++) NGT_CHECK(pa[200 * 100 + i] == 0.0f, "bias %zu = %g", i, (double)pa[200 * 100 + i]);
    /* 3000 draws of N(0,1): mean within 4 sigma, variance within 4 sigma (sd of s^2 ~ sqrt(2/n)) */
    s /= nz_total;
    q = q / nz_total - s * s;
    NGT_CHECK(fabs(s) < 4.0 / sqrt(nz_total), "mean of sparse weights %.4f", s);
    NGT_CHECK(fabs(q - 1.0) < 4.0 * sqrt(2.0 / nz_total), "variance of sparse weights %.4f", q);
    /* layer 2: W (8, 200): 15 per row; layer 3: W (100, 8): fewer inputs than 15 -> all 8 */
    {
        size_t off3 = 200 * 100 + 200 + 8 * 200 + 8;
        for (r = 0; r < 100; r++) {
            int nz = 0;
            for (j = 0; j < 8; j++) nz += pa[off3 + r + (size_t)j * 100] != 0.0f;
            NGT_CHECK(nz == 8, "unit %d of layer 3 (8 inputs) has %d non-zeros", r, nz);
        }
    }
    if (g_cuda) {
        ng_model *gcu = NULL;
        float *pg = (float *)malloc(np * 4);
        c.seed = 42;
        NGT_OK(ng_net_create(g_cuda, &c, &gcu));
        NGT_OK(ng_tensor_get(g_cuda, &gcu->param_flat, pg));
        NGT_CHECK(memcmp(pa, pg, np * 4) == 0, "CUDA and CPU initialisations differ");
        ng_net_free(gcu);
        free(pg);
    }
    free(pa), free(pb), free(px);
    ng_net_free(a), ng_net_free(b), ng_net_free(x);
    return NGT_PASS;
}

/* ---- CPU vs CUDA on one network ------------------------------------------------------------------ */

static int test_cpu_vs_cuda(void) {
    fixture a, b;
    float *ga, *gb;
    double *v;
    size_t np, i;
    int fail = 0;
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    NGT_OK(fixture_init(&a, g_cpu, "30-20-6:linear-20-30", NG_ACT_LOGISTIC, NG_LOSS_BERNOULLI, 40, 16, NG_INIT_SPARSE, 9));
    NGT_OK(fixture_init(&b, g_cuda, "30-20-6:linear-20-30", NG_ACT_LOGISTIC, NG_LOSS_BERNOULLI, 40, 16, NG_INIT_SPARSE, 9));
    np = a.np;
    ga = (float *)calloc(np, 4), gb = (float *)calloc(np, 4), v = dalloc(np);
    for (i = 0; i < np; i++) v[i] = urand() - 0.5;
    NGT_OK(ng_tensor_set(g_cuda, &b.xdev, a.x32));
    NGT_OK(upload_vec(g_cpu, &a.vdev, v, np));
    NGT_OK(upload_vec(g_cuda, &b.vdev, v, np));
    NGT_OK(ng_model_gradient(a.net, &a.xdev, NULL));
    NGT_OK(ng_model_gradient(b.net, &b.xdev, NULL));
    fail = compare_products(&a, &b, NG_FISHER_SAMPLED, 1e-5, 1e-3) != 0;
    free(ga), free(gb), free(v);
    fixture_free(&a);
    fixture_free(&b);
    return fail ? NGT_FAIL : NGT_PASS;
}

/* ---- specs, presets and bad input ---------------------------------------------------------------- */

static int expect_err(ng_status s, ng_status want, const char *word) {
    const char *m = ng_last_error();
    int ok = s == want && strstr(m, word) != NULL;
    if (!ok) printf("  expected %s naming '%s', got %s: \"%s\"\n", ng_status_name(want), word, ng_status_name(s), m);
    ng_clear_error();
    return ok;
}

static int test_specs_and_presets(void) {
    ng_net_config c;
    char buf[512];
    ng_net_config_default(&c);
    NGT_OK(ng_net_preset("mnist-autoencoder", &c));
    NGT_CHECK(c.n_layers == 8 && c.dims[0] == 784 && c.dims[4] == 30 && c.dims[8] == 784, "mnist preset dims");
    NGT_CHECK(c.act[3] == NG_ACT_LINEAR && c.act[0] == NG_ACT_LOGISTIC && c.act[7] == NG_ACT_LOGISTIC, "mnist preset acts");
    NGT_OK(ng_net_config_check(&c));
    NGT_CHECK(strcmp(ng_net_spec_string(&c, buf, sizeof buf),
                     "784-1000:logistic-500:logistic-250:logistic-30:linear-250:logistic-500:logistic-1000:logistic-784:logistic") == 0,
              "spec string %s", buf);
    NGT_OK(ng_net_preset("curves-autoencoder", &c));
    NGT_CHECK(c.n_layers == 12 && c.dims[6] == 6 && c.act[5] == NG_ACT_LINEAR, "curves preset");
    NGT_OK(ng_net_config_check(&c));
    NGT_OK(ng_net_preset("faces-autoencoder", &c));
    NGT_CHECK(c.n_layers == 8 && c.dims[0] == 625 && c.loss == NG_LOSS_SQUARED && c.act[7] == NG_ACT_LINEAR, "faces preset");
    NGT_OK(ng_net_config_check(&c));
    NGT_CHECK(expect_err(ng_net_preset("cifar", &c), NG_ERR_INVALID_ARG, "cifar"), "unknown preset");
    NGT_CHECK(expect_err(ng_net_parse_spec("784-abc-10", 1, 1, &c), NG_ERR_INVALID_ARG, "abc"), "bad size");
    NGT_CHECK(expect_err(ng_net_parse_spec("784-100:swish-10", 1, 1, &c), NG_ERR_INVALID_ARG, "swish"), "bad act");
    NGT_CHECK(expect_err(ng_net_parse_spec("784", 1, 1, &c), NG_ERR_INVALID_ARG, "at least"), "one layer");
    NGT_CHECK(expect_err(ng_net_parse_spec("784:relu-10", 1, 1, &c), NG_ERR_INVALID_ARG, "input layer"), "input act");
    NGT_CHECK(expect_err(ng_net_parse_spec("784-0-10", 1, 1, &c), NG_ERR_INVALID_ARG, "'0'"), "zero units");
    ng_net_config_default(&c);
    c.loss = NG_LOSS_SQUARED;
    NGT_OK(ng_net_parse_spec("10-5-10:logistic", NG_ACT_TANH, NG_ACT_LINEAR, &c));
    NGT_CHECK(expect_err(ng_net_config_check(&c), NG_ERR_INVALID_ARG, "matching"), "loss/act mismatch");
    NGT_OK(ng_net_parse_spec("10-5:softmax-10", NG_ACT_TANH, NG_ACT_LINEAR, &c));
    NGT_CHECK(expect_err(ng_net_config_check(&c), NG_ERR_INVALID_ARG, "hidden layer 1"), "softmax hidden");
    NGT_OK(ng_net_parse_spec("10-5-9", NG_ACT_TANH, NG_ACT_LINEAR, &c));
    NGT_CHECK(expect_err(ng_net_config_check(&c), NG_ERR_INVALID_ARG, "autoencoder"), "autoencoder dims");
    NGT_OK(ng_net_parse_spec("10-5-10+bn", NG_ACT_TANH, NG_ACT_LINEAR, &c));
    NGT_CHECK(expect_err(ng_net_config_check(&c), NG_ERR_INVALID_ARG, "output layer"), "bn at output");
    return NGT_PASS;
}

static int test_bad_batches(void) {
    fixture f;
    ng_tensor bad;
    NGT_OK(fixture_init(&f, g_cpu, "5-4-3", NG_ACT_LOGISTIC, NG_LOSS_CATEGORICAL, 4, 1000, NG_INIT_GAUSSIAN, 1));
    bad = ng_tensor_matrix(f.xdev.data, 5, 4, 8);
    NGT_CHECK(expect_err(ng_model_gradient(f.net, &bad, NULL), NG_ERR_INVALID_ARG, "5 inputs + 3 targets"), "rows");
    NGT_CHECK(expect_err(ng_net_gvp(f.net, &f.vdev, &f.odev), NG_ERR_INVALID_ARG, "no batch"), "gvp before batch");
    NGT_OK(ng_model_gradient(f.net, &f.xdev, NULL));
    bad = ng_tensor_matrix(f.vdev.data, 3, 1, 3);
    NGT_CHECK(expect_err(ng_net_gvp(f.net, &bad, &f.odev), NG_ERR_INVALID_ARG, "parameter layout"), "short v");
    NGT_CHECK(expect_err(ng_net_gvp(f.net, &f.vdev, &f.vdev), NG_ERR_INVALID_ARG, "alias"), "aliasing");
    NGT_CHECK(expect_err(ng_model_statistic(f.net, "a7", &bad), NG_ERR_INVALID_ARG, "a0..a1"), "statistic name");
    fixture_free(&f);
    return NGT_PASS;
}

int main(void) {
    if (ngt_open_backends(&g_cpu, &g_cuda, g_cuda_reason, sizeof g_cuda_reason)) return 1;
    NGT_RUN(test_specs_and_presets);
    NGT_RUN(test_products_cpu);
    NGT_RUN(test_products_cuda);
    NGT_RUN(test_products_whitened_cpu);
    NGT_RUN(test_products_whitened_cuda);
    NGT_RUN(test_chunked_equal);
    NGT_RUN(test_fisher_sampled);
    NGT_RUN(test_backward_sampled);
    NGT_RUN(test_backward_sampled_at);
    NGT_RUN(test_sparse_init);
    NGT_RUN(test_cpu_vs_cuda);
    NGT_RUN(test_bad_batches);
    ng_backend_free(g_cuda);
    ng_backend_free(g_cpu);
    return ngt_finish();
}
