/* test_fang.c: the FANG preconditioner (natgrad/fang.h: host/optim/fang.c, kernels/fang.cu) and
 * the exact Fisher tools (host/eval/fisher.c) against exact or independent float64 references:
 *   - the exact Fisher / gradient tools against brute-force enumeration and finite differences;
 *   - the batched 2x2 regression body and the NG_OP_FANG_REGRESS op (ng_run_op) against a float64
 *     3x3 precision-matrix solve, including singular and NaN blocks; NG_OP_FANG_RESIDUAL and
 *     NG_OP_SYMMETRIZE_LOWER against naive loops; the op checks and the FANG entry points refusing
 *     bad input (a preconditioner that is not FANG, an RBM without an estimator, bad settings);
 *   - FANG's direction (ng_fang_apply on the model's gradient arena) against a dense solve
 *     G_fac^-1 g with G_fac built from the same graphical-model parameters (5 x 4 RBM);
 *   - Theorem 1 (fully connected DAG => L^T D L = G^-1, direction = exact natural gradient);
 *   - the centering reduction (section 5.1) against the centering preconditioner + SGD;
 *   - invariance to flipping the pixels (FANG, centering: yes; SGD: no) on deterministic
 *     exact-statistics training runs;
 *   - the refit's recovery (float64 Cholesky, damping raises, keeping Lambda_un), checked through
 *     the diagnostics and the warnings it logs (ng_log_set);
 *   - the regularised inverse (Sohl-Dickstein eq. 35) of Sigma_un against (S^T S + lambda^2 I)^-1 S^T;
 *   - a short PCD training run (ng_rbm_trainer_*), checkpoint/resume exactness, CPU vs CUDA (when
 *     a CUDA backend initialises: a GPU or the tests/simt emulator; skipped otherwise, with the
 *     reason).
 * Sign convention: the model's gradient (rbm.gW, ga, gb) is that of the NEGATIVE log-likelihood,
 * g = -grad log p, and FANG's direction is r = G_fac^-1 g (the step is theta -= lr r); the host
 * references below (ng_rbm_loglik_grad_exact) are log-likelihood gradients and are negated where
 * they stand for the model's gradient.
 * Dense linear algebra here is the test's own float64 Cholesky, independent of the backends.
 * Deterministic: every random number comes from fixed Philox streams. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "natgrad/data.h"
#include "natgrad/eval.h"
#include "natgrad/fang.h"
#include "natgrad/fisher.h"
#include "natgrad/log.h"
#include "natgrad/precond.h"
#include "natgrad/rbm.h"
#include "natgrad/rng.h"
#include "natgrad/train.h"
#include "natgrad/update.h"
#include "ng_math.h"
#include "optim/fang.h"

static ng_backend *g_cpu, *g_cuda;
static char g_cuda_reason[300];

/* ---- the library's log (natgrad/log.h), captured for the tests that expect a warning ------- */

typedef struct log_capture {
    int warnings;        /* NG_LOG_WARN messages from "fang" since the last log_reset */
    int others;          /* every other message */
    char last[1024];     /* the last "fang" warning */
} log_capture;
static log_capture g_log;

static void capture_log(ng_log_level level, const char *where, const char *msg, void *user) {
    log_capture *c = (log_capture *)user;
    if (level == NG_LOG_WARN && where && strcmp(where, "fang") == 0) {
        c->warnings++;
        snprintf(c->last, sizeof c->last, "%s", msg);
    } else {
        c->others++;
    }
}
static void log_reset(void) { memset(&g_log, 0, sizeof g_log); }

/* ---- float64 dense helpers (column-major) ------------------------------------------------ */

/* In-place lower Cholesky factor of the SPD matrix A (n, n); 0 on success. */
static int chol_d(int n, double *A) {
    int i, j, k;
    for (j = 0; j < n; j++) {
        double d = A[j + (size_t)j * n];
        for (k = 0; k < j; k++) d -= A[j + (size_t)k * n] * A[j + (size_t)k * n];
        if (!(d > 0.0)) return -1;
        d = sqrt(d);
        A[j + (size_t)j * n] = d;
        for (i = j + 1; i < n; i++) {
            double s = A[i + (size_t)j * n];
            for (k = 0; k < j; k++) s -= A[i + (size_t)k * n] * A[j + (size_t)k * n];
            A[i + (size_t)j * n] = s / d;
        }
    }
    return 0;
}

/* x = (L L^T)^-1 x */
static void chol_solve_d(int n, const double *L, double *x) {
    int i, k;
    for (i = 0; i < n; i++) {
        double s = x[i];
        for (k = 0; k < i; k++) s -= L[i + (size_t)k * n] * x[k];
        x[i] = s / L[i + (size_t)i * n];
    }
    for (i = n - 1; i >= 0; i--) {
        double s = x[i];
        for (k = i + 1; k < n; k++) s -= L[k + (size_t)i * n] * x[k];
        x[i] = s / L[i + (size_t)i * n];
    }
}

/* x = A^-1 b for SPD A (not modified); 0 on success. */
static int spd_solve_d(int n, const double *A, const double *b, double *x) {
    double *L = (double *)malloc((size_t)n * n * sizeof(double));
    int r;
    memcpy(L, A, (size_t)n * n * sizeof(double));
    r = chol_d(n, L);
    if (r == 0) {
        memcpy(x, b, (size_t)n * sizeof(double));
        chol_solve_d(n, L, x);
    }
    free(L);
    return r;
}

static int spd_inverse_d(int n, const double *A, double *Ainv) {
    double *L = (double *)malloc((size_t)n * n * sizeof(double));
    int r, k;
    memcpy(L, A, (size_t)n * n * sizeof(double));
    r = chol_d(n, L);
    for (k = 0; r == 0 && k < n; k++) {
        double *col = Ainv + (size_t)k * n;
        memset(col, 0, (size_t)n * sizeof(double));
        col[k] = 1.0;
        chol_solve_d(n, L, col);
    }
    free(L);
    return r;
}

static double max_abs_d(const double *x, size_t n) {
    double m = 0.0;
    size_t i;
    for (i = 0; i < n; i++)
        if (fabs(x[i]) > m) m = fabs(x[i]);
    return m;
}

/* Largest |a - b| (NaN counts as infinite). */
static double max_diff_d(const double *a, const double *b, size_t n) {
    double m = 0.0;
    size_t i;
    for (i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (d != d) return INFINITY;
        if (d > m) m = d;
    }
    return m;
}

static double softplus_d(double x) { return x > 30.0 ? x + log1p(exp(-x)) : log1p(exp(x)); }
static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }

/* ---- host RBMs in float64 ---------------------------------------------------------------- */

typedef struct hrbm {
    int nv, nh;
    double *W, *a, *b; /* (nh, nv), (nv), (nh) */
} hrbm;

static void hrbm_alloc(hrbm *h, int nv, int nh) {
    h->nv = nv;
    h->nh = nh;
    h->W = (double *)calloc((size_t)nv * nh, sizeof(double));
    h->a = (double *)calloc((size_t)nv, sizeof(double));
    h->b = (double *)calloc((size_t)nh, sizeof(double));
}
static void hrbm_free(hrbm *h) {
    free(h->W);
    free(h->a);
    free(h->b);
}
static void hrbm_random(hrbm *h, uint64_t seed, double w_std, double bias_std) {
    uint64_t key = ng_rng_stream_key(seed, NG_RNG_TEST);
    size_t k;
    for (k = 0; k < (size_t)h->nv * h->nh; k++) h->W[k] = w_std * ng_rng_normal(key, 0, k);
    for (k = 0; k < (size_t)h->nv; k++) h->a[k] = bias_std * ng_rng_normal(key, 1, k);
    for (k = 0; k < (size_t)h->nh; k++) h->b[k] = bias_std * ng_rng_normal(key, 2, k);
}
/* Upload (rounded to float) into an ng_rbm. */
static ng_status hrbm_upload(const hrbm *h, ng_rbm *rbm) {
    size_t nw = (size_t)h->nv * h->nh, k;
    float *buf = (float *)malloc((nw + h->nv + h->nh) * sizeof(float));
    ng_status s;
    for (k = 0; k < nw; k++) buf[k] = (float)h->W[k];
    for (k = 0; k < (size_t)h->nv; k++) buf[nw + k] = (float)h->a[k];
    for (k = 0; k < (size_t)h->nh; k++) buf[nw + h->nv + k] = (float)h->b[k];
    s = ng_rbm_set_params(rbm, buf, buf + nw, buf + nw + h->nv);
    free(buf);
    return s;
}

/* h = the float parameters the device holds (read back, so no float round trip is written in
 * host code: GCC 12.2's SLP vectorizer drops `x[i] = (float)x[i]` on double arrays at -O2). */
static ng_status hrbm_from_device(hrbm *h, ng_rbm *rbm) {
    size_t nw = (size_t)h->nv * h->nh, k;
    float *buf = (float *)malloc((nw + h->nv + h->nh) * sizeof(float));
    ng_status s = ng_rbm_get_params(rbm, buf, buf + nw, buf + nw + h->nv);
    for (k = 0; k < nw; k++) h->W[k] = buf[k];
    for (k = 0; k < (size_t)h->nv; k++) h->a[k] = buf[nw + k];
    for (k = 0; k < (size_t)h->nh; k++) h->b[k] = buf[nw + h->nv + k];
    free(buf);
    return s;
}

/* Exact average log-likelihood in float64 (log Z by enumerating the hidden layer). */
static double hrbm_mean_ll(const hrbm *h, const float *x, int n) {
    uint64_t sh, ns = (uint64_t)1 << h->nh;
    double mx = -INFINITY, sum = 0.0, ll = 0.0, logz;
    int i, j, c;
    for (sh = 0; sh < ns; sh++) {
        double lp = 0.0;
        for (j = 0; j < h->nh; j++)
            if (sh >> j & 1) lp += h->b[j];
        for (i = 0; i < h->nv; i++) {
            double t = h->a[i];
            for (j = 0; j < h->nh; j++)
                if (sh >> j & 1) t += h->W[j + (size_t)i * h->nh];
            lp += softplus_d(t);
        }
        if (lp > mx) {
            sum = sum * exp(mx - lp) + 1.0;
            mx = lp;
        } else {
            sum += exp(lp - mx);
        }
    }
    logz = mx + log(sum);
    for (c = 0; c < n; c++) {
        const float *v = x + (size_t)c * h->nv;
        double lp = 0.0;
        for (i = 0; i < h->nv; i++) lp += h->a[i] * v[i];
        for (j = 0; j < h->nh; j++) {
            double t = h->b[j];
            for (i = 0; i < h->nv; i++) t += h->W[j + (size_t)i * h->nh] * v[i];
            lp += softplus_d(t);
        }
        ll += lp - logz;
    }
    return ll / n;
}

/* Random binary data (nv, n) from the test stream. */
static float *random_binary(int nv, int n, uint64_t seed) {
    float *x = (float *)malloc((size_t)nv * n * sizeof(float));
    uint64_t key = ng_rng_stream_key(seed, NG_RNG_TEST);
    size_t k;
    for (k = 0; k < (size_t)nv * n; k++) x[k] = ng_rng_uniform(key, 7, k) < 0.4f ? 1.0f : 0.0f;
    return x;
}

static void test_config(ng_rbm_config *cfg, ng_rbm_optimizer opt, int batch, int particles) {
    ng_rbm_config_default(cfg);
    cfg->optimizer = opt;
    cfg->batch = batch;
    cfg->particles = particles;
    cfg->lr_gamma = 0.0f;
    cfg->seed = 11;
}

/* Copy a host double vector into a device tensor (as floats). */
static ng_status set_tensor_d(ng_backend *be, ng_tensor *t, const double *x) {
    size_t n = ng_tensor_count(t), k;
    float *buf = (float *)malloc(n * sizeof(float));
    ng_status s;
    for (k = 0; k < n; k++) buf[k] = (float)x[k];
    s = ng_tensor_set(be, t, buf);
    free(buf);
    return s;
}
static ng_status get_tensor_d(ng_backend *be, const ng_tensor *t, double *x) {
    size_t n = ng_tensor_count(t), k;
    float *buf = (float *)malloc(n * sizeof(float));
    ng_status s = ng_tensor_get(be, t, buf);
    for (k = 0; k < n; k++) x[k] = buf[k];
    free(buf);
    return s;
}

/* The FANG state behind a trainer's preconditioner (NULL when it is not FANG). */
static struct ng_fang *fang_of(ng_rbm_trainer *rt) { return ng_fang_of(rt->pc); }

/* Load FANG's moving averages with the exact moments of the model (binary units: v^2 = v,
 * h^2 = h, so E[v^2] = E[v] and all four pairwise moment blocks equal E[h v^T], which FANG reads
 * from the (h, v) block of S_un = G_un + mu mu^T). */
static ng_status set_exact_moments(ng_rbm_trainer *rt, const double *mean, const double *G) {
    struct ng_fang *f = fang_of(rt);
    ng_backend *be = rt->rbm->be;
    int nv, nh, n, D, r, c, i, j;
    double *mom, *S;
    ng_status s;
    if (!f) return ng_error(NG_ERR_INVALID_ARG, "set_exact_moments: the trainer's preconditioner is not FANG");
    nv = f->nv, nh = f->nh, n = f->n, D = ng_fisher_dim(nv, nh);
    mom = (double *)malloc((size_t)(2 * nv + 2 * nh) * sizeof(double));
    S = (double *)malloc((size_t)n * n * sizeof(double));
    for (i = 0; i < nv; i++) mom[i] = mom[nv + i] = mean[i];
    for (j = 0; j < nh; j++) mom[2 * nv + j] = mom[2 * nv + nh + j] = mean[nv + j];
    for (c = 0; c < n; c++)
        for (r = 0; r < n; r++) S[r + (size_t)c * n] = G[r + (size_t)c * D] + mean[r] * mean[c];
    s = set_tensor_d(be, &f->mom, mom);
    if (s == NG_OK) s = set_tensor_d(be, &f->S_un, S);
    free(mom);
    free(S);
    return s;
}

/* The model's gradient arena (gW, ga, gb) = the dense vector g (a, b, W order), and back. */
static ng_status set_grad_d(ng_rbm *rbm, const double *g) {
    int nv = rbm->n_visible, nh = rbm->n_hidden;
    NG_TRY(set_tensor_d(rbm->be, &rbm->ga, g));
    NG_TRY(set_tensor_d(rbm->be, &rbm->gb, g + nv));
    return set_tensor_d(rbm->be, &rbm->gW, g + nv + nh);
}
static ng_status get_grad_d(ng_rbm *rbm, double *g) {
    int nv = rbm->n_visible, nh = rbm->n_hidden;
    NG_TRY(get_tensor_d(rbm->be, &rbm->ga, g));
    NG_TRY(get_tensor_d(rbm->be, &rbm->gb, g + nv));
    return get_tensor_d(rbm->be, &rbm->gW, g + nv + nh);
}

/* A named state tensor of a preconditioner or update rule (NULL when absent). */
static const ng_tensor *state_tensor(const ng_arena *a, const char *name) { return ng_arena_find(a, name); }

/* SGD's velocity (flat, packed like the model's parameters) as a dense vector (a, b, W order). */
static ng_status get_velocity_d(ng_rbm_trainer *rt, double *g) {
    static const char *const names[3] = {"a", "b", "W"};
    ng_model *m = ng_rbm_model(rt->rbm);
    const ng_tensor *vel = state_tensor(&rt->upd->state, "velocity");
    size_t n = ng_model_size(m), off = 0, k;
    float *buf;
    int p;
    if (!vel || ng_tensor_count(vel) != n)
        return ng_error(NG_ERR_INVALID_ARG, "get_velocity_d: the update rule has no velocity of %zu entries", n);
    buf = (float *)malloc(n * sizeof(float));
    for (p = 0; p < 3; p++) {
        ng_tensor v;
        size_t at, cnt;
        ng_status s = p == 0 ? ng_tensor_get(rt->rbm->be, vel, buf) : NG_OK;
        if (s == NG_OK) s = ng_model_param(m, names[p], &v, NULL);
        if (s != NG_OK) {
            free(buf);
            return s;
        }
        at = (size_t)(v.data - m->param_flat.data); /* same offset in the packed velocity */
        cnt = ng_tensor_count(&v);
        for (k = 0; k < cnt; k++) g[off + k] = buf[at + k];
        off += cnt;
    }
    free(buf);
    return NG_OK;
}

/* Op wrappers through ng_run_op (the argument order of the op structs in natgrad/backend.h). */
static ng_status run_fang_regress(ng_backend *be, int nh, int nv, const void *Evh, const void *Ev2h,
                                  const void *Evh2, const void *Ev2h2, int ldm, const void *mu_v,
                                  const void *mu_h, const void *Ev2, const void *Eh2, float lambda,
                                  void *beta_v, void *beta_h, void *sigma2, int ldo) {
    ng_op_args a;
    memset(&a, 0, sizeof a);
    a.op = NG_OP_FANG_REGRESS;
    a.fang_regress.nh = nh;
    a.fang_regress.nv = nv;
    a.fang_regress.Evh = (const float *)Evh;
    a.fang_regress.Ev2h = (const float *)Ev2h;
    a.fang_regress.Evh2 = (const float *)Evh2;
    a.fang_regress.Ev2h2 = (const float *)Ev2h2;
    a.fang_regress.ldm = ldm;
    a.fang_regress.mu_v = (const float *)mu_v;
    a.fang_regress.mu_h = (const float *)mu_h;
    a.fang_regress.Ev2 = (const float *)Ev2;
    a.fang_regress.Eh2 = (const float *)Eh2;
    a.fang_regress.lambda = lambda;
    a.fang_regress.beta_v = (float *)beta_v;
    a.fang_regress.beta_h = (float *)beta_h;
    a.fang_regress.sigma2 = (float *)sigma2;
    a.fang_regress.ldo = ldo;
    return ng_run_op(be, &a);
}

static ng_status run_fang_residual(ng_backend *be, int nh, int nv, void *G, int ldg, const void *ga,
                                   const void *gb, const void *beta_v, const void *beta_h,
                                   const void *sigma2, int ldb, void *pv, void *ph, int ldp) {
    ng_op_args a;
    memset(&a, 0, sizeof a);
    a.op = NG_OP_FANG_RESIDUAL;
    a.fang_residual.nh = nh;
    a.fang_residual.nv = nv;
    a.fang_residual.G = (float *)G;
    a.fang_residual.ldg = ldg;
    a.fang_residual.ga = (const float *)ga;
    a.fang_residual.gb = (const float *)gb;
    a.fang_residual.beta_v = (const float *)beta_v;
    a.fang_residual.beta_h = (const float *)beta_h;
    a.fang_residual.sigma2 = (const float *)sigma2;
    a.fang_residual.ldb = ldb;
    a.fang_residual.pv = (float *)pv;
    a.fang_residual.ph = (float *)ph;
    a.fang_residual.ldp = ldp;
    return ng_run_op(be, &a);
}

/* ---- 0. the exact Fisher tools ------------------------------------------------------------ */

/* ng_rbm_fisher_exact against a brute-force sum over every joint state (v, h) of g and g g^T
 * (3 x 3 RBM, 64 states, D = 15). Both are float64 sums of the same quantities in different
 * orders; tolerance 1e-12. */
static int test_fisher_exact_bruteforce(void) {
    const int nv = 3, nh = 3, D = ng_fisher_dim(nv, nh);
    hrbm h;
    ng_rbm rbm;
    double mean[15], G[225], bm[15], bG[225], g[15], logw[64], mx = -INFINITY, z = 0.0;
    uint64_t st;
    int r, c, i, j;
    hrbm_alloc(&h, nv, nh);
    hrbm_random(&h, 1, 1.0, 0.7);
    NGT_OK(ng_rbm_init(g_cpu, nv, nh, &rbm));
    NGT_OK(hrbm_upload(&h, &rbm));
    NGT_OK(hrbm_from_device(&h, &rbm)); /* exactly the float parameters the device holds */
    NGT_OK(ng_rbm_fisher_exact(&rbm, mean, G));
    for (st = 0; st < 64; st++) {
        double e = 0.0;
        for (i = 0; i < nv; i++) e += h.a[i] * (double)(st >> i & 1);
        for (j = 0; j < nh; j++) {
            if (!(st >> (nv + j) & 1)) continue;
            e += h.b[j];
            for (i = 0; i < nv; i++) e += h.W[j + i * nh] * (double)(st >> i & 1);
        }
        logw[st] = e;
        if (e > mx) mx = e;
    }
    for (st = 0; st < 64; st++) z += exp(logw[st] - mx);
    memset(bm, 0, sizeof bm);
    memset(bG, 0, sizeof bG);
    for (st = 0; st < 64; st++) {
        double p = exp(logw[st] - mx) / z;
        for (i = 0; i < nv; i++) g[i] = (double)(st >> i & 1);
        for (j = 0; j < nh; j++) g[nv + j] = (double)(st >> (nv + j) & 1);
        for (i = 0; i < nv; i++)
            for (j = 0; j < nh; j++) g[ng_fisher_index_w(nv, nh, i, j)] = g[i] * g[nv + j];
        for (r = 0; r < D; r++) {
            bm[r] += p * g[r];
            for (c = 0; c < D; c++) bG[r + c * D] += p * g[r] * g[c];
        }
    }
    for (r = 0; r < D; r++)
        for (c = 0; c < D; c++) bG[r + c * D] -= bm[r] * bm[c];
    NGT_CHECK(max_diff_d(mean, bm, D) < 1e-12, "mean differs by %g", max_diff_d(mean, bm, D));
    NGT_CHECK(max_diff_d(G, bG, (size_t)D * D) < 1e-12, "G differs by %g",
              max_diff_d(G, bG, (size_t)D * D));
    ng_rbm_free(&rbm);
    hrbm_free(&h);
    return NGT_PASS;
}

/* ng_rbm_loglik_grad_exact against central finite differences of the exact average
 * log-likelihood (float64, step 1e-5: truncation error ~1e-10 * third derivative, rounding
 * ~1e-16 / 1e-5; tolerance 1e-7). The parameters are perturbed on the host and the gradient is
 * taken at the float-rounded parameters the device holds. */
/* The chunked backend path (float32 syrk per chunk, float64 accumulation across chunks) against
 * the float64 host loop on a 12 x 9 RBM with chunks of 100 states (6 chunks): relative 1e-6 is
 * float32 rounding of one chunk's products, far below what a wrong block or weight would give. */
static int test_fisher_exact_backend(void) {
    const int nv = 12, nh = 9, D = ng_fisher_dim(nv, nh);
    hrbm h;
    ng_rbm rbm;
    double *m1 = (double *)malloc((size_t)D * sizeof(double)), *m2 = (double *)malloc((size_t)D * sizeof(double));
    double *G1 = (double *)malloc((size_t)D * D * sizeof(double)), *G2 = (double *)malloc((size_t)D * D * sizeof(double));
    double gmax = 0.0, dmax = 0.0, mdiff = 0.0;
    size_t k;
    hrbm_alloc(&h, nv, nh);
    hrbm_random(&h, 7, 1.0, 0.7);
    NGT_OK(ng_rbm_init(g_cpu, nv, nh, &rbm));
    NGT_OK(hrbm_upload(&h, &rbm));
    NGT_OK(ng_rbm_fisher_exact(&rbm, m1, G1));
    NGT_OK(ng_rbm_fisher_exact_backend(&rbm, 100, m2, G2));
    for (k = 0; k < (size_t)D * D; k++) {
        if (fabs(G1[k]) > gmax) gmax = fabs(G1[k]);
        if (fabs(G1[k] - G2[k]) > dmax) dmax = fabs(G1[k] - G2[k]);
    }
    for (k = 0; k < (size_t)D; k++)
        if (fabs(m1[k] - m2[k]) > mdiff) mdiff = fabs(m1[k] - m2[k]);
    printf("  backend exact G vs host loop: max|dG|/max|G| %.3g, max|d mean| %.3g\n", dmax / gmax, mdiff);
    ng_rbm_free(&rbm);
    hrbm_free(&h);
    free(m1);
    free(m2);
    free(G1);
    free(G2);
    NGT_CHECK(dmax <= 1e-6 * gmax, "backend G differs: %.3g relative", dmax / gmax);
    NGT_CHECK(mdiff <= 1e-12, "backend mean differs by %.3g", mdiff);
    return NGT_PASS;
}

static int test_loglik_grad_fd(void) {
    const int nv = 4, nh = 3, n = 9, D = ng_fisher_dim(nv, nh);
    hrbm h;
    ng_rbm rbm;
    float *x = random_binary(nv, n, 3);
    double grad[19], eps = 1e-5, worst = 0.0;
    int k;
    hrbm_alloc(&h, nv, nh);
    hrbm_random(&h, 2, 0.8, 0.5);
    NGT_OK(ng_rbm_init(g_cpu, nv, nh, &rbm));
    NGT_OK(hrbm_upload(&h, &rbm));
    NGT_OK(hrbm_from_device(&h, &rbm));
    NGT_OK(ng_rbm_loglik_grad_exact(&rbm, x, n, grad));
    for (k = 0; k < D; k++) {
        double *p = k < nv ? &h.a[k] : k < nv + nh ? &h.b[k - nv] : &h.W[k - nv - nh];
        double p0 = *p, lp, lm, fd;
        *p = p0 + eps;
        lp = hrbm_mean_ll(&h, x, n);
        *p = p0 - eps;
        lm = hrbm_mean_ll(&h, x, n);
        *p = p0;
        fd = (lp - lm) / (2.0 * eps);
        if (fabs(fd - grad[k]) > worst) worst = fabs(fd - grad[k]);
        NGT_CLOSE(grad[k], fd, 1e-7, "d log-lik / d eta_k");
    }
    printf("  exact gradient vs finite differences: max |diff| %.3g\n", worst);
    ng_rbm_free(&rbm);
    hrbm_free(&h);
    free(x);
    return NGT_PASS;
}

/* ---- 1. the batched regression ----------------------------------------------------------- */

/* Float64 reference: regression of x2 on (x0, x1) from the precision K = C^-1 of the 3x3
 * covariance C (adjugate / determinant): beta = -K[2,0:2] / K[2,2], sigma2 = 1 / K[2,2].
 * A different formula from the body's 2x2 solve. */
static void ref_regress3(const double C[9], double *bv, double *bh, double *s2) {
#define C_(r, c) C[(r) + 3 * (c)]
    double k20 = C_(1, 0) * C_(2, 1) - C_(1, 1) * C_(2, 0);
    double k21 = -(C_(0, 0) * C_(2, 1) - C_(0, 1) * C_(2, 0));
    double k22 = C_(0, 0) * C_(1, 1) - C_(0, 1) * C_(1, 0);
    double det = C_(0, 0) * (C_(1, 1) * C_(2, 2) - C_(1, 2) * C_(2, 1)) -
                 C_(0, 1) * (C_(1, 0) * C_(2, 2) - C_(1, 2) * C_(2, 0)) +
                 C_(0, 2) * (C_(1, 0) * C_(2, 1) - C_(1, 1) * C_(2, 0));
#undef C_
    /* K = adj(C) / det; K[2,0] = k20 / det etc. (adjugate of a symmetric matrix) */
    *bv = -k20 / k22;
    *bh = -k21 / k22;
    *s2 = det / k22;
}

/* Moments (as the body takes them, rounded to float) of a joint distribution with means mv, mh
 * and covariance C of (v, h, m); returns the covariance recomputed in float64 from the rounded
 * moments (what the body sees) in Cr. */
typedef struct moments { float evh, ev2h, evh2, ev2h2, mv, mh, ev2, eh2; } moments;
static moments moments_of(double mv, double mh, const double C[9], double Cr[9]) {
    moments m;
    double evh = C[3] + mv * mh;
    m.mv = (float)mv;
    m.mh = (float)mh;
    m.evh = (float)evh;
    m.ev2 = (float)(C[0] + mv * mv);
    m.eh2 = (float)(C[4] + mh * mh);
    m.ev2h = (float)(C[6] + mv * (double)m.evh);
    m.evh2 = (float)(C[7] + mh * (double)m.evh);
    m.ev2h2 = (float)(C[8] + (double)m.evh * (double)m.evh);
    if (Cr) {
        double Mv = m.mv, Mh = m.mh, Evh = m.evh;
        Cr[0] = m.ev2 - Mv * Mv;
        Cr[4] = m.eh2 - Mh * Mh;
        Cr[1] = Cr[3] = Evh - Mv * Mh;
        Cr[2] = Cr[6] = m.ev2h - Mv * Evh;
        Cr[5] = Cr[7] = m.evh2 - Mh * Evh;
        Cr[8] = m.ev2h2 - Evh * Evh;
    }
    return m;
}

/* The body on 2000 random SPD blocks (C = M M^T + 0.01 I, M ~ N(0, 0.5^2), lambda 0.01 or 0)
 * against ref_regress3 on the covariance the body sees plus lambda I. Both are float64 up to the
 * final rounding to float; tolerance 1e-5 relative (float rounding 6e-8 amplified by the
 * conditioning of the blocks, which stays below ~100 here). Then singular and degenerate
 * blocks: exactly collinear parents (lambda = 0: the prediction (beta_v + beta_h) v and sigma2
 * must equal the single-parent regression, which the pseudo-inverse gives), nearly collinear
 * ones (finite, lambda <= sigma2 <= Var(m)), a constant parent, and NaN moments (finite output,
 * sigma2 = lambda). */
static int test_regress_body(void) {
    uint64_t key = ng_rng_stream_key(21, NG_RNG_TEST);
    int t, k, worst_t = -1;
    double worst = 0.0;
    for (t = 0; t < 2000; t++) {
        double M[9], C[9], Cr[9], Cl[9], bv, bh, s2, mv, mh;
        float fbv, fbh, fs2, lambda = (t & 1) ? 0.01f : 0.0f;
        moments m;
        int r, c, l;
        for (k = 0; k < 9; k++) M[k] = 0.5 * ng_rng_normal(key, (uint64_t)t, (uint64_t)k);
        for (r = 0; r < 3; r++)
            for (c = 0; c < 3; c++) {
                double s = r == c ? 0.01 : 0.0;
                for (l = 0; l < 3; l++) s += M[r + 3 * l] * M[c + 3 * l];
                C[r + 3 * c] = s;
            }
        mv = ng_rng_uniform(key, (uint64_t)t, 9);
        mh = ng_rng_uniform(key, (uint64_t)t, 10);
        m = moments_of(mv, mh, C, Cr);
        memcpy(Cl, Cr, sizeof Cl);
        Cl[0] += lambda;
        Cl[4] += lambda;
        Cl[8] += lambda;
        ref_regress3(Cl, &bv, &bh, &s2);
        ng_fang_regress_pair(m.evh, m.ev2h, m.evh2, m.ev2h2, m.mv, m.mh, m.ev2, m.eh2, lambda, &fbv,
                             &fbh, &fs2);
        {
            double e = fabs(fbv - bv) / (1.0 + fabs(bv));
            if (fabs(fbh - bh) / (1.0 + fabs(bh)) > e) e = fabs(fbh - bh) / (1.0 + fabs(bh));
            if (fabs(fs2 - s2) / s2 > e) e = fabs(fs2 - s2) / s2;
            if (e > worst) {
                worst = e;
                worst_t = t;
            }
            if (!(e <= 1e-5)) {
                printf("  block %d: body beta (%.9g, %.9g) sigma2 %.9g; reference (%.9g, %.9g) %.9g\n",
                       t, fbv, fbh, fs2, bv, bh, s2);
                return NGT_FAIL;
            }
        }
    }
    printf("  random SPD blocks: largest relative error %.3g (block %d)\n", worst, worst_t);

    /* exactly collinear parents (h = v): 1 - rho^2 = 0 */
    {
        double s = 0.21, cm = 0.07, cmm = 0.09, C[9] = {s, s, cm, s, s, cm, cm, cm, cmm}, Cr[9];
        float fbv, fbh, fs2;
        moments m = moments_of(0.3, 0.3, C, Cr);
        double ref_b = Cr[2] / Cr[0], ref_s2 = Cr[8] - Cr[2] * Cr[2] / Cr[0];
        ng_fang_regress_pair(m.evh, m.ev2h, m.evh2, m.ev2h2, m.mv, m.mh, m.ev2, m.eh2, 0.0f, &fbv,
                             &fbh, &fs2);
        NGT_CLOSE((double)fbv + (double)fbh, ref_b, 1e-5, "collinear: total coefficient");
        NGT_CLOSE(fs2, ref_s2, 1e-6, "collinear: sigma2 = pseudo-inverse value");
    }
    /* nearly collinear: rho^2 = 1 - 1e-8 with tiny damping */
    {
        double sv = 0.2, sh = 0.15, rho = sqrt(1.0 - 1e-8), Cr[9];
        double C[9] = {sv, rho * sqrt(sv * sh), 0.05, rho * sqrt(sv * sh), sh, 0.04, 0.05, 0.04, 0.08};
        float fbv, fbh, fs2, lam = 1e-9f;
        moments m = moments_of(0.4, 0.6, C, Cr);
        ng_fang_regress_pair(m.evh, m.ev2h, m.evh2, m.ev2h2, m.mv, m.mh, m.ev2, m.eh2, lam, &fbv,
                             &fbh, &fs2);
        NGT_CHECK(isfinite(fbv) && isfinite(fbh) && isfinite(fs2), "non-finite output %g %g %g",
                  fbv, fbh, fs2);
        NGT_CHECK(fs2 >= lam && fs2 <= Cr[8] + lam + 1e-7, "sigma2 %g outside [lambda, Var(m)] = [%g, %g]",
                  fs2, lam, Cr[8]);
    }
    /* a constant visible unit (Var(v) = 0, lambda = 0): regress on h alone */
    {
        double C[9] = {0.0, 0.0, 0.0, 0.0, 0.2, 0.1, 0.0, 0.1, 0.2}, Cr[9];
        float fbv, fbh, fs2;
        moments m = moments_of(1.0, 0.5, C, Cr);
        ng_fang_regress_pair(m.evh, m.ev2h, m.evh2, m.ev2h2, m.mv, m.mh, m.ev2, m.eh2, 0.0f, &fbv,
                             &fbh, &fs2);
        NGT_CLOSE(fbv, 0.0, 0.0, "constant parent: beta_v");
        NGT_CLOSE(fbh, Cr[5] / Cr[4], 1e-6, "constant parent: beta_h");
        NGT_CLOSE(fs2, Cr[8] - Cr[5] * Cr[5] / Cr[4], 1e-6, "constant parent: sigma2");
    }
    /* NaN moments */
    {
        float fbv, fbh, fs2, nan = NAN;
        ng_fang_regress_pair(nan, 0.1f, 0.1f, 0.1f, 0.5f, nan, 0.5f, 0.5f, 0.01f, &fbv, &fbh, &fs2);
        NGT_CHECK(isfinite(fbv) && isfinite(fbh) && fs2 == 0.01f,
                  "NaN moments gave beta (%g, %g) sigma2 %g", fbv, fbh, fs2);
    }
    return NGT_PASS;
}

/* Per-pair moment matrices of K continuous samples (so v^2 != v and the four blocks differ). */
typedef struct pair_moments {
    int nv, nh, ldm;
    float *Evh, *Ev2h, *Evh2, *Ev2h2; /* (nh, nv), ld ldm */
    float *mu_v, *Ev2, *mu_h, *Eh2;
} pair_moments;

static void pair_moments_make(pair_moments *pm, int nv, int nh, int ldm, int K, uint64_t seed) {
    uint64_t key = ng_rng_stream_key(seed, NG_RNG_TEST);
    float *v = (float *)malloc((size_t)nv * K * sizeof(float));
    float *h = (float *)malloc((size_t)nh * K * sizeof(float));
    int i, j, c;
    pm->nv = nv;
    pm->nh = nh;
    pm->ldm = ldm;
    pm->Evh = (float *)calloc((size_t)ldm * nv, sizeof(float));
    pm->Ev2h = (float *)calloc((size_t)ldm * nv, sizeof(float));
    pm->Evh2 = (float *)calloc((size_t)ldm * nv, sizeof(float));
    pm->Ev2h2 = (float *)calloc((size_t)ldm * nv, sizeof(float));
    pm->mu_v = (float *)calloc((size_t)nv, sizeof(float));
    pm->Ev2 = (float *)calloc((size_t)nv, sizeof(float));
    pm->mu_h = (float *)calloc((size_t)nh, sizeof(float));
    pm->Eh2 = (float *)calloc((size_t)nh, sizeof(float));
    for (c = 0; c < K; c++) {
        float z = ng_rng_uniform(key, 1, (uint64_t)c); /* a shared factor correlates v and h */
        for (i = 0; i < nv; i++) v[i + c * nv] = 0.5f * z + 0.5f * ng_rng_uniform(key, 2, (uint64_t)(i + c * nv));
        for (j = 0; j < nh; j++) h[j + c * nh] = (j & 1 ? z : 1.0f - z) * ng_rng_uniform(key, 3, (uint64_t)(j + c * nh));
    }
    for (i = 0; i < nv; i++)
        for (j = 0; j < nh; j++) {
            double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
            for (c = 0; c < K; c++) {
                double a = v[i + c * nv], b = h[j + c * nh];
                s1 += a * b;
                s2 += a * a * b;
                s3 += a * b * b;
                s4 += a * a * b * b;
            }
            pm->Evh[j + i * ldm] = (float)(s1 / K);
            pm->Ev2h[j + i * ldm] = (float)(s2 / K);
            pm->Evh2[j + i * ldm] = (float)(s3 / K);
            pm->Ev2h2[j + i * ldm] = (float)(s4 / K);
        }
    for (i = 0; i < nv; i++) {
        double s1 = 0, s2 = 0;
        for (c = 0; c < K; c++) s1 += v[i + c * nv], s2 += (double)v[i + c * nv] * v[i + c * nv];
        pm->mu_v[i] = (float)(s1 / K);
        pm->Ev2[i] = (float)(s2 / K);
    }
    for (j = 0; j < nh; j++) {
        double s1 = 0, s2 = 0;
        for (c = 0; c < K; c++) s1 += h[j + c * nh], s2 += (double)h[j + c * nh] * h[j + c * nh];
        pm->mu_h[j] = (float)(s1 / K);
        pm->Eh2[j] = (float)(s2 / K);
    }
    free(v);
    free(h);
}

static void pair_moments_free(pair_moments *pm) {
    free(pm->Evh);
    free(pm->Ev2h);
    free(pm->Evh2);
    free(pm->Ev2h2);
    free(pm->mu_v);
    free(pm->Ev2);
    free(pm->mu_h);
    free(pm->Eh2);
}

/* Upload a host array into a fresh device buffer (freed by the caller with ng_free). */
static void *dev_copy(ng_backend *be, const void *host, size_t bytes) {
    void *p = NULL;
    if (ng_alloc(be, bytes, &p) != NG_OK) return NULL;
    if (ng_set(be, p, host, bytes) != NG_OK) {
        ng_free(be, p);
        return NULL;
    }
    return p;
}

/* The fang_regress slot on a backend (nh = 5, nv = 7, ldm = 9, ldo = 6) against the body on the
 * host per pair, and against the float64 3x3 reference. CPU: bit-identical to the body (same
 * code, same inputs). Other backends: 1e-6 relative (the device may contract products into
 * FMAs in its double arithmetic before the final float rounding). Padding rows of the outputs
 * (ld > nh) must be left untouched (guard value 7). */
static int check_regress_slot(ng_backend *be) {
    const int nv = 7, nh = 5, ldm = 9, ldo = 6;
    const float lambda = 0.01f;
    pair_moments pm;
    size_t mb = (size_t)ldm * nv * sizeof(float), ob = (size_t)ldo * nv * sizeof(float);
    float *out = (float *)malloc(3 * ob), guard[3 * 6 * 7];
    void *d[11];
    int i, j, k, exact = be->kind == NG_DEVICE_CPU;
    pair_moments_make(&pm, nv, nh, ldm, 200, 31);
    for (k = 0; k < 3 * ldo * nv; k++) guard[k] = 7.0f;
    d[0] = dev_copy(be, pm.Evh, mb);
    d[1] = dev_copy(be, pm.Ev2h, mb);
    d[2] = dev_copy(be, pm.Evh2, mb);
    d[3] = dev_copy(be, pm.Ev2h2, mb);
    d[4] = dev_copy(be, pm.mu_v, nv * sizeof(float));
    d[5] = dev_copy(be, pm.mu_h, nh * sizeof(float));
    d[6] = dev_copy(be, pm.Ev2, nv * sizeof(float));
    d[7] = dev_copy(be, pm.Eh2, nh * sizeof(float));
    d[8] = dev_copy(be, guard, ob);
    d[9] = dev_copy(be, guard, ob);
    d[10] = dev_copy(be, guard, ob);
    for (k = 0; k < 11; k++) NGT_CHECK(d[k] != NULL, "device buffer %d: %s", k, ng_last_error());
    NGT_OK(run_fang_regress(be, nh, nv, d[0], d[1], d[2], d[3], ldm, d[4], d[5], d[6], d[7], lambda,
                           d[8], d[9], d[10], ldo));
    NGT_OK(ng_get(be, out, d[8], ob));
    NGT_OK(ng_get(be, out + ldo * nv, d[9], ob));
    NGT_OK(ng_get(be, out + 2 * ldo * nv, d[10], ob));
    for (i = 0; i < nv; i++)
        for (j = 0; j < ldo; j++) {
            size_t m = j + (size_t)i * ldm, o = j + (size_t)i * ldo;
            float bv, bh, s2;
            double C[9], rbv, rbh, rs2, Mv, Mh, Evh;
            if (j >= nh) {
                NGT_CHECK(out[o] == 7.0f && out[ldo * nv + o] == 7.0f && out[2 * ldo * nv + o] == 7.0f,
                          "padding row %d col %d overwritten", j, i);
                continue;
            }
            Mv = pm.mu_v[i];
            Mh = pm.mu_h[j];
            ng_fang_regress_pair(pm.Evh[m], pm.Ev2h[m], pm.Evh2[m], pm.Ev2h2[m], pm.mu_v[i],
                                 pm.mu_h[j], pm.Ev2[i], pm.Eh2[j], lambda, &bv, &bh, &s2);
            if (exact) {
                NGT_CHECK(out[o] == bv && out[ldo * nv + o] == bh && out[2 * ldo * nv + o] == s2,
                          "pair (%d,%d): slot (%g %g %g) != body (%g %g %g)", i, j, out[o],
                          out[ldo * nv + o], out[2 * ldo * nv + o], bv, bh, s2);
            } else {
                NGT_CLOSE(out[o], bv, 1e-6 * (1 + fabs(bv)), "beta_v vs body");
                NGT_CLOSE(out[ldo * nv + o], bh, 1e-6 * (1 + fabs(bh)), "beta_h vs body");
                NGT_CLOSE(out[2 * ldo * nv + o], s2, 1e-6 * s2, "sigma2 vs body");
            }
            Evh = pm.Evh[m];
            C[0] = pm.Ev2[i] - Mv * Mv + lambda;
            C[4] = pm.Eh2[j] - Mh * Mh + lambda;
            C[1] = C[3] = Evh - Mv * Mh;
            C[2] = C[6] = pm.Ev2h[m] - Mv * Evh;
            C[5] = C[7] = pm.Evh2[m] - Mh * Evh;
            C[8] = pm.Ev2h2[m] - Evh * Evh + lambda;
            ref_regress3(C, &rbv, &rbh, &rs2);
            NGT_CLOSE(out[o], rbv, 1e-5 * (1 + fabs(rbv)), "beta_v vs float64 reference");
            NGT_CLOSE(out[ldo * nv + o], rbh, 1e-5 * (1 + fabs(rbh)), "beta_h vs float64 reference");
            NGT_CLOSE(out[2 * ldo * nv + o], rs2, 1e-5 * rs2, "sigma2 vs float64 reference");
        }
    for (k = 0; k < 11; k++) ng_free(be, d[k]);
    pair_moments_free(&pm);
    free(out);
    return NGT_PASS;
}

/* fang_residual and symmetrize_lower against naive loops on the host, with leading
 * dimensions larger than the row counts. Each output element is one float operation sequence of
 * the shared bodies: exact on the CPU, 1 ulp-level (1e-6 relative) elsewhere. */
static int check_other_slots(ng_backend *be) {
    const int nv = 6, nh = 4, n = 10, lda = 12;
    uint64_t key = ng_rng_stream_key(41, NG_RNG_TEST);
    float A[12 * 10], A0[12 * 10];
    float G[5 * 6], ga[6], gb[4], bv[5 * 6], bh[5 * 6], s2[5 * 6], q[5 * 6], pv[5 * 6], ph[5 * 6];
    void *dA, *dG, *dga, *dgb, *dbv, *dbh, *ds2, *dpv, *dph;
    int r, c, k;
    double tol = be->kind == NG_DEVICE_CPU ? 0.0 : 1e-6;
    for (k = 0; k < 12 * 10; k++) A0[k] = ng_rng_uniform(key, 2, k);
    for (k = 0; k < 5 * 6; k++) {
        G[k] = ng_rng_uniform(key, 3, k) - 0.5f;
        bv[k] = ng_rng_uniform(key, 4, k);
        bh[k] = ng_rng_uniform(key, 5, k);
        s2[k] = 0.01f + ng_rng_uniform(key, 6, k);
        pv[k] = ph[k] = -5.0f;
    }
    for (k = 0; k < 6; k++) ga[k] = ng_rng_uniform(key, 7, k) - 0.5f;
    for (k = 0; k < 4; k++) gb[k] = ng_rng_uniform(key, 8, k) - 0.5f;
    dA = dev_copy(be, A0, sizeof A0);
    dG = dev_copy(be, G, sizeof G);
    dga = dev_copy(be, ga, sizeof ga);
    dgb = dev_copy(be, gb, sizeof gb);
    dbv = dev_copy(be, bv, sizeof bv);
    dbh = dev_copy(be, bh, sizeof bh);
    ds2 = dev_copy(be, s2, sizeof s2);
    dpv = dev_copy(be, pv, sizeof pv);
    dph = dev_copy(be, ph, sizeof ph);
    NGT_CHECK(dA && dG && dga && dgb && dbv && dbh && ds2 && dpv && dph,
              "device buffers: %s", ng_last_error());
    /* symmetrize_lower with shift 0.25 (n = 10 of a 12-row buffer) */
    NGT_OK(ng_symmetrize_lower(be, n, dA, lda, 0.25f));
    NGT_OK(ng_get(be, A, dA, sizeof A));
    for (c = 0; c < n; c++)
        for (r = 0; r < lda; r++) {
            float want = r >= n ? A0[r + c * lda] : r > c ? A0[r + c * lda] : r == c ? A0[r + c * lda] + 0.25f : A0[c + r * lda];
            NGT_CHECK(A[r + c * lda] == want, "symmetrize A[%d,%d] = %g, want %g", r, c, A[r + c * lda], want);
        }
    /* fang_residual (nh = 4 of ld 5 for all matrices) */
    NGT_OK(run_fang_residual(be, nh, nv, dG, 5, dga, dgb, dbv, dbh, ds2, 5, dpv, dph, 5));
    NGT_OK(ng_get(be, q, dG, sizeof q));
    NGT_OK(ng_get(be, pv, dpv, sizeof pv));
    NGT_OK(ng_get(be, ph, dph, sizeof ph));
    for (c = 0; c < nv; c++)
        for (r = 0; r < 5; r++) {
            int e = r + c * 5;
            if (r >= nh) {
                NGT_CHECK(q[e] == G[e] && pv[e] == -5.0f && ph[e] == -5.0f, "residual padding touched");
                continue;
            }
            {
                double want = ((double)G[e] - (double)bv[e] * ga[c] - (double)bh[e] * gb[r]) / s2[e];
                NGT_CLOSE(q[e], want, 1e-6 * fabs(want) + 1e-12, "fang_residual q vs float64");
                float wpv = (float)((double)bv[e] * q[e]), wph = (float)((double)bh[e] * q[e]);
                NGT_CLOSE(pv[e], wpv, tol * fabs(wpv), "fang_residual pv = beta_v q (rounded)");
                NGT_CLOSE(ph[e], wph, tol * fabs(wph), "fang_residual ph = beta_h q (rounded)");
            }
        }
    ng_free(be, dA);
    ng_free(be, dG);
    ng_free(be, dga);
    ng_free(be, dgb);
    ng_free(be, dbv);
    ng_free(be, dbh);
    ng_free(be, ds2);
    ng_free(be, dpv);
    ng_free(be, dph);
    return NGT_PASS;
}

/* The op checks refuse bad shapes and values with NG_ERR_INVALID_ARG (ng_run_op with
 * NG_OP_FANG_REGRESS / NG_OP_FANG_RESIDUAL, ng_symmetrize_lower). FANG's entry points refuse a
 * preconditioner that is not FANG (here the identity; the old API's "trainer without FANG state"),
 * ng_precond_fang_init refuses an RBM without an estimator (it has no particle statistics), and
 * ng_fang_config_check refuses impossible settings. */
static int test_bad_input(void) {
    float dummy[64] = {0};
    void *d = dev_copy(g_cpu, dummy, sizeof dummy);
    ng_rbm rbm;
    ng_precond *id = NULL, *pf = NULL;
    ng_fang_diag diag;
    ng_fang_config fc = {100, 100.0f, 0.01f, 1, NG_FANG_INV_TIKHONOV}, bad;
    NGT_CHECK(run_fang_regress(g_cpu, 4, 2, d, d, d, d, 3, d, d, d, d, 0.01f, d, d, d, 4) ==
                  NG_ERR_INVALID_ARG, "ldm < nh accepted");
    NGT_CHECK(run_fang_regress(g_cpu, 4, 2, d, d, d, d, 4, d, d, d, d, NAN, d, d, d, 4) ==
                  NG_ERR_INVALID_ARG, "NaN lambda accepted");
    NGT_CHECK(run_fang_regress(g_cpu, 4, 2, d, NULL, d, d, 4, d, d, d, d, 0.01f, d, d, d, 4) ==
                  NG_ERR_INVALID_ARG, "NULL moment accepted");
    NGT_CHECK(run_fang_residual(g_cpu, 3, 2, d, 2, d, d, d, d, d, 3, d, d, 3) == NG_ERR_INVALID_ARG,
              "ldg < nh accepted");
    NGT_CHECK(ng_symmetrize_lower(g_cpu, 4, d, 3, 0.0f) == NG_ERR_INVALID_ARG, "lda < n accepted");
    NGT_CHECK(ng_symmetrize_lower(g_cpu, 4, d, 4, INFINITY) == NG_ERR_INVALID_ARG,
              "infinite shift accepted");
    /* FANG stages on a preconditioner that is not FANG */
    NGT_OK(ng_rbm_init(g_cpu, 3, 2, &rbm));
    NGT_OK(ng_precond_identity_init(g_cpu, &id));
    NGT_CHECK(ng_fang_of(id) == NULL, "ng_fang_of(identity) is not NULL");
    NGT_CHECK(ng_fang_update_stats(id, ng_rbm_model(&rbm), 0) == NG_ERR_INVALID_ARG,
              "statistics on a non-FANG preconditioner accepted");
    NGT_CHECK(ng_fang_refit(id, ng_rbm_model(&rbm), 0) == NG_ERR_INVALID_ARG,
              "refit on a non-FANG preconditioner accepted");
    NGT_CHECK(ng_fang_apply(id, ng_rbm_model(&rbm)) == NG_ERR_INVALID_ARG,
              "direction on a non-FANG preconditioner accepted");
    NGT_CHECK(ng_fang_diagnostics(id, &diag) == NG_ERR_INVALID_ARG,
              "diagnostics of a non-FANG preconditioner accepted");
    /* an RBM without its estimator has no particles to read */
    NGT_CHECK(ng_precond_fang_init(g_cpu, ng_rbm_model(&rbm), &fc, &pf) != NG_OK && pf == NULL,
              "FANG on an RBM without an estimator accepted");
    /* settings */
    NGT_OK(ng_fang_config_check(&fc));
    bad = fc, bad.refit_every = 0;
    NGT_CHECK(ng_fang_config_check(&bad) == NG_ERR_INVALID_ARG, "refit_every 0 accepted");
    bad = fc, bad.tau = 0.5f;
    NGT_CHECK(ng_fang_config_check(&bad) == NG_ERR_INVALID_ARG, "tau < 1 accepted");
    bad = fc, bad.lambda = 0.0f;
    NGT_CHECK(ng_fang_config_check(&bad) == NG_ERR_INVALID_ARG, "lambda 0 accepted");
    bad = fc, bad.lambda = NAN;
    NGT_CHECK(ng_fang_config_check(&bad) == NG_ERR_INVALID_ARG, "NaN lambda accepted");
    ng_clear_error();
    ng_precond_free(id);
    ng_rbm_free(&rbm);
    ng_free(g_cpu, d);
    return NGT_PASS;
}

/* ---- 2. FANG direction vs dense G_fac^-1 grad --------------------------------------------- */

/* A 5 x 4 RBM; FANG's moving averages are loaded with the exact model moments, the library
 * refits (float32 on the backend) and applies the direction to the model's gradient arena holding
 * the exact gradient of the negative log-likelihood, g = -grad log p (the model's sign).
 * Checks, each against float64 references:
 *  (a) Lambda_un against (G_un + lambda I)^-1 (tolerance 1e-4 relative to its largest entry:
 *      float32 moments, the float subtraction S - mu mu^T and the float inverse, condition ~30);
 *  (b) beta, sigma2 against the 3x3 regressions on the exact G plus lambda I (1e-4 abs + rel);
 *  (c) the direction r against x = G_fac^-1 g, G_fac = ng_fang_gfac_dense(G_un + lambda I,
 *      beta, sigma2) with the device's beta and sigma2, solved by Cholesky in float64
 *      (1e-4 relative to max |x|: the float32 path vs exact double parameters, as in (a)). */
static int test_direction_vs_dense(void) {
    const int nv = 5, nh = 4, n = nv + nh, D = ng_fisher_dim(nv, nh), ndata = 20;
    const double lambda = 0.01;
    hrbm h;
    ng_rbm rbm;
    ng_rbm_trainer tr;
    ng_rbm_config cfg;
    float *x = random_binary(nv, ndata, 5);
    double *mean = malloc(D * sizeof(double)), *G = malloc((size_t)D * D * sizeof(double));
    double *Gf = malloc((size_t)D * D * sizeof(double)), *grad = malloc(D * sizeof(double));
    double *r = malloc(D * sizeof(double)), *xs = malloc(D * sizeof(double));
    double Sun[81], Lref[81], Lam[81], bv[20], bh[20], s2[20], gradf[29];
    double worst_b = 0.0, scale;
    int i, j, k;
    hrbm_alloc(&h, nv, nh);
    hrbm_random(&h, 4, 0.7, 0.5);
    NGT_OK(ng_rbm_init(g_cpu, nv, nh, &rbm));
    NGT_OK(hrbm_upload(&h, &rbm));
    test_config(&cfg, NG_RBM_OPT_FANG, 10, 16);
    cfg.fang_lambda = (float)lambda;
    NGT_OK(ng_rbm_trainer_init(&tr, &rbm, &cfg, x, ndata, NULL));
    NGT_OK(ng_rbm_fisher_exact(&rbm, mean, G));
    NGT_CHECK(fang_of(&tr) != NULL, "the trainer's preconditioner is not FANG");
    NGT_OK(set_exact_moments(&tr, mean, G));
    NGT_OK(ng_fang_refit(tr.pc, ng_rbm_model(&rbm), 0));

    /* (a) */
    for (j = 0; j < n; j++)
        for (i = 0; i < n; i++) Sun[i + j * n] = G[i + (size_t)j * D] + (i == j ? lambda : 0.0);
    NGT_CHECK(spd_inverse_d(n, Sun, Lref) == 0, "Sigma_un not SPD");
    NGT_OK(get_tensor_d(g_cpu, &fang_of(&tr)->Lambda, Lam));
    scale = max_abs_d(Lref, n * n);
    NGT_CHECK(max_diff_d(Lam, Lref, n * n) <= 1e-4 * scale, "Lambda_un differs by %g (scale %g)",
              max_diff_d(Lam, Lref, n * n), scale);
    /* (b) */
    NGT_OK(get_tensor_d(g_cpu, &fang_of(&tr)->beta_v, bv));
    NGT_OK(get_tensor_d(g_cpu, &fang_of(&tr)->beta_h, bh));
    NGT_OK(get_tensor_d(g_cpu, &fang_of(&tr)->sigma2, s2));
    for (i = 0; i < nv; i++)
        for (j = 0; j < nh; j++) {
            int a = ng_fisher_index_w(nv, nh, i, j), idx[3] = {i, nv + j, a}, p, q;
            double C[9], rbv, rbh, rs2;
            for (p = 0; p < 3; p++)
                for (q = 0; q < 3; q++) C[p + 3 * q] = G[idx[p] + (size_t)idx[q] * D] + (p == q ? lambda : 0.0);
            ref_regress3(C, &rbv, &rbh, &rs2);
            k = j + i * nh;
            if (fabs(bv[k] - rbv) > worst_b) worst_b = fabs(bv[k] - rbv);
            NGT_CLOSE(bv[k], rbv, 1e-4 * (1 + fabs(rbv)), "beta_v vs exact regression");
            NGT_CLOSE(bh[k], rbh, 1e-4 * (1 + fabs(rbh)), "beta_h vs exact regression");
            NGT_CLOSE(s2[k], rs2, 1e-4 * rs2, "sigma2 vs exact regression");
        }
    /* (c) g = -grad log p, rounded to float as the gradient arena holds it */
    NGT_OK(ng_rbm_loglik_grad_exact(&rbm, x, ndata, grad));
    for (k = 0; k < D; k++) gradf[k] = (float)(-grad[k]);
    NGT_OK(set_grad_d(&rbm, gradf));
    NGT_OK(ng_fang_apply(tr.pc, ng_rbm_model(&rbm)));
    NGT_OK(get_grad_d(&rbm, r));
    ng_fang_gfac_dense(nv, nh, Sun, bv, bh, s2, Gf);
    NGT_CHECK(spd_solve_d(D, Gf, gradf, xs) == 0, "G_fac not SPD");
    scale = max_abs_d(xs, D);
    printf("  |r - G_fac^-1 g|_max = %.3g (max |x| %.3g); |beta - exact|_max = %.3g\n",
           max_diff_d(r, xs, D), scale, worst_b);
    for (k = 0; k < D; k++)
        NGT_CLOSE(r[k], xs[k], 1e-4 * scale, "FANG direction vs dense G_fac^-1 g");
    ng_rbm_trainer_free(&tr);
    ng_rbm_free(&rbm);
    hrbm_free(&h);
    free(x);
    free(mean);
    free(G);
    free(Gf);
    free(grad);
    free(r);
    free(xs);
    return NGT_PASS;
}

/* ---- 3. Theorem 1 ------------------------------------------------------------------------- */

/* Fit a Gaussian DAG on the covariance G (D, D) by regression: statistic a's parents are
 * pa[a][0 .. npa[a]-1] (earlier indices); beta (D, D) (row a: coefficients on its parents,
 * column-major beta[a + b D]) and d[a] = conditional variance. */
static int fit_dag(int D, const double *G, int *const *pa, const int *npa, double *beta, double *d) {
    int a, p, q;
    memset(beta, 0, (size_t)D * D * sizeof(double));
    for (a = 0; a < D; a++) {
        int m = npa[a];
        double *Gpp = malloc((size_t)(m ? m : 1) * (m ? m : 1) * sizeof(double));
        double *gpa = malloc((size_t)(m ? m : 1) * sizeof(double));
        double *b = malloc((size_t)(m ? m : 1) * sizeof(double)), s = G[a + (size_t)a * D];
        for (p = 0; p < m; p++) {
            gpa[p] = G[pa[a][p] + (size_t)a * D];
            for (q = 0; q < m; q++) Gpp[p + q * m] = G[pa[a][p] + (size_t)pa[a][q] * D];
        }
        if (m && spd_solve_d(m, Gpp, gpa, b) != 0) return -1;
        for (p = 0; p < m; p++) {
            beta[a + (size_t)pa[a][p] * D] = b[p];
            s -= gpa[p] * b[p];
        }
        d[a] = s;
        free(Gpp);
        free(gpa);
        free(b);
    }
    return 0;
}

/* r = sum_a (1/d_a) (e_a - beta_a)(e_a - beta_a)^T grad: Algorithm 1's update written for a
 * general DAG (U^T diag(1/d) U grad with U = I - beta). */
static void dag_direction(int D, const double *beta, const double *d, const double *grad, double *r) {
    int a, b;
    memset(r, 0, (size_t)D * sizeof(double));
    for (a = 0; a < D; a++) {
        double t = grad[a];
        for (b = 0; b < D; b++) t -= beta[a + (size_t)b * D] * grad[b];
        t /= d[a];
        r[a] += t;
        for (b = 0; b < D; b++) r[b] -= beta[a + (size_t)b * D] * t;
    }
}

/* Theorem 1 on the exact Fisher matrix of a 4 x 3 RBM (D = 19), all float64:
 *  (a) every earlier statistic as parent: U^T D^-1 U == G^-1 (U = I - beta, unit lower
 *      triangular), and the DAG direction equals G^-1 grad (tolerance 1e-8 relative to the
 *      largest entry: cond(G) ~ 1e4 times double rounding);
 *  (b) FANG's parent sets (unaries: all earlier unaries; m_ij: {v_i, h_j}) regressed on the same
 *      G give a DAG whose direction equals G_fac^-1 grad with G_fac from ng_fang_gfac_dense
 *      (Sigma_un = G_un, the regressions' beta and sigma2): the precision formula of Algorithm 1
 *      and the dense covariance builder agree (same tolerance). */
static int test_theorem1(void) {
    const int nv = 4, nh = 3, n = nv + nh, D = ng_fisher_dim(nv, nh), ndata = 11;
    hrbm h;
    ng_rbm rbm;
    float *x = random_binary(nv, ndata, 9);
    double *G = malloc((size_t)D * D * sizeof(double)), *Gi = malloc((size_t)D * D * sizeof(double));
    double *beta = malloc((size_t)D * D * sizeof(double)), *LDL = calloc((size_t)D * D, sizeof(double));
    double *Gf = malloc((size_t)D * D * sizeof(double)), d[19], grad[19], r[19], ng[19];
    double Sun[49], bv[12], bh[12], s2[12];
    int *pa[19], npa[19], a, b, c, i, j;
    double scale;
    hrbm_alloc(&h, nv, nh);
    hrbm_random(&h, 6, 0.9, 0.6);
    NGT_OK(ng_rbm_init(g_cpu, nv, nh, &rbm));
    NGT_OK(hrbm_upload(&h, &rbm));
    NGT_OK(ng_rbm_fisher_exact(&rbm, NULL, G));
    NGT_OK(ng_rbm_loglik_grad_exact(&rbm, x, ndata, grad));
    NGT_CHECK(spd_inverse_d(D, G, Gi) == 0, "exact G not SPD");
    scale = max_abs_d(Gi, (size_t)D * D);

    /* (a) fully connected */
    for (a = 0; a < D; a++) {
        pa[a] = malloc((size_t)(a ? a : 1) * sizeof(int));
        npa[a] = a;
        for (b = 0; b < a; b++) pa[a][b] = b;
    }
    NGT_CHECK(fit_dag(D, G, pa, npa, beta, d) == 0, "regression failed");
    /* LDL = U^T diag(1/d) U, U = I - beta */
    for (c = 0; c < D; c++)
        for (b = 0; b < D; b++) {
            double s = 0.0;
            for (a = 0; a < D; a++) {
                double ua_b = (a == b) - beta[a + (size_t)b * D], ua_c = (a == c) - beta[a + (size_t)c * D];
                s += ua_b * ua_c / d[a];
            }
            LDL[b + (size_t)c * D] = s;
        }
    NGT_CHECK(max_diff_d(LDL, Gi, (size_t)D * D) <= 1e-8 * scale,
              "U^T D^-1 U differs from G^-1 by %g (scale %g)", max_diff_d(LDL, Gi, (size_t)D * D), scale);
    dag_direction(D, beta, d, grad, r);
    NGT_CHECK(spd_solve_d(D, G, grad, ng) == 0, "G solve");
    NGT_CHECK(max_diff_d(r, ng, D) <= 1e-8 * max_abs_d(ng, D),
              "DAG direction differs from G^-1 grad by %g", max_diff_d(r, ng, D));
    printf("  fully connected DAG: |L^T D L - G^-1| = %.3g (scale %.3g), |r - G^-1 grad| = %.3g\n",
           max_diff_d(LDL, Gi, (size_t)D * D), scale, max_diff_d(r, ng, D));

    /* (b) FANG's parents */
    for (a = 0; a < D; a++) {
        if (a < n) continue; /* unaries keep all earlier unaries */
        i = (a - n) / nh;
        j = (a - n) % nh;
        npa[a] = 2;
        pa[a][0] = i;
        pa[a][1] = nv + j;
    }
    NGT_CHECK(fit_dag(D, G, pa, npa, beta, d) == 0, "regression failed");
    for (c = 0; c < n; c++)
        for (b = 0; b < n; b++) Sun[b + c * n] = G[b + (size_t)c * D];
    for (i = 0; i < nv; i++)
        for (j = 0; j < nh; j++) {
            a = ng_fisher_index_w(nv, nh, i, j);
            bv[j + i * nh] = beta[a + (size_t)i * D];
            bh[j + i * nh] = beta[a + (size_t)(nv + j) * D];
            s2[j + i * nh] = d[a];
        }
    ng_fang_gfac_dense(nv, nh, Sun, bv, bh, s2, Gf);
    dag_direction(D, beta, d, grad, r);
    NGT_CHECK(spd_solve_d(D, Gf, grad, ng) == 0, "G_fac solve");
    NGT_CHECK(max_diff_d(r, ng, D) <= 1e-8 * max_abs_d(ng, D),
              "FANG-structured DAG direction differs from G_fac^-1 grad by %g", max_diff_d(r, ng, D));
    /* and G_fac reproduces G on the blocks the model fits exactly: Sigma_un, Cov(m_ij, (v_i, h_j)), Var(m_ij) */
    for (i = 0; i < nv; i++)
        for (j = 0; j < nh; j++) {
            a = ng_fisher_index_w(nv, nh, i, j);
            NGT_CLOSE(Gf[a + (size_t)a * D], G[a + (size_t)a * D], 1e-12, "G_fac Var(m)");
            NGT_CLOSE(Gf[a + (size_t)i * D], G[a + (size_t)i * D], 1e-12, "G_fac Cov(m, v)");
            NGT_CLOSE(Gf[a + (size_t)(nv + j) * D], G[a + (size_t)(nv + j) * D], 1e-12, "G_fac Cov(m, h)");
        }
    for (a = 0; a < D; a++) free(pa[a]);
    ng_rbm_free(&rbm);
    hrbm_free(&h);
    free(x);
    free(G);
    free(Gi);
    free(beta);
    free(LDL);
    free(Gf);
    return NGT_PASS;
}

/* ---- 4. the centering reduction ----------------------------------------------------------- */

/* Section 5.1: centering is the whitening with Pa(m_ij) = {v_i, h_j}, beta_v,ij = mu_h,j,
 * beta_h,ij = mu_v,i, no parents and no rescaling for the unaries. In FANG's update that is
 * beta = the offsets, sigma2 = 1 and Lambda_un = I (the statistics' variances are not divided
 * out: centering is SGD in the centred coordinates, not in whitened ones). Compared:
 *  (a) two trainers with the same seed and data, one with the centering preconditioner (SGD,
 *      lr 0.1, momentum 0, so SGD's velocity is -lr * direction) and one with FANG; after one
 *      centering step, the FANG trainer's gradient (ng_rbm_trainer_gradient: the same draws)
 *      pushed through ng_fang_apply with beta = the centering preconditioner's offsets mu_v, mu_h
 *      (its state, after their update in that step), sigma2 = 1, Lambda_un = I equals
 *      -velocity / lr (tolerance 1e-6 relative: same float operations up to summation order);
 *  (b) with general sigma2 and a diagonal Lambda_un = diag(1/var) the FANG update is the
 *      centering update with per-statistic scaling: r_W = gW~ ./ sigma2,
 *      r_a = ga ./ var_v - (gW~ ./ sigma2)^T mu_h, r_b = gb ./ var_h - (gW~ ./ sigma2) mu_v,
 *      gW~ = gW - gb mu_v^T - mu_h ga^T (float64 host formula; tolerance 1e-5 relative). */
static int test_centering_reduction(void) {
    ng_dataset ds;
    const int nh = 5;
    int nv, n, i, j, k;
    hrbm h;
    ng_rbm rA, rB;
    ng_rbm_trainer A, B;
    ng_rbm_config cfg;
    double lr = 0.1;
    NGT_OK(ng_dataset_make_bars_stripes(3, 0, &ds));
    nv = ds.dim;
    n = ds.n;
    hrbm_alloc(&h, nv, nh);
    hrbm_random(&h, 8, 0.3, 0.3);
    NGT_OK(ng_rbm_init(g_cpu, nv, nh, &rA));
    NGT_OK(ng_rbm_init(g_cpu, nv, nh, &rB));
    NGT_OK(hrbm_upload(&h, &rA));
    NGT_OK(hrbm_upload(&h, &rB));
    test_config(&cfg, NG_RBM_OPT_CENTERING, 7, 20);
    cfg.lr = (float)lr;
    cfg.center_rate = 0.3f;
    NGT_OK(ng_rbm_trainer_init(&A, &rA, &cfg, ds.x, n, NULL));
    cfg.optimizer = NG_RBM_OPT_FANG;
    NGT_OK(ng_rbm_trainer_init(&B, &rB, &cfg, ds.x, n, NULL));
    NGT_OK(ng_rbm_trainer_step(&A, NULL));
    NGT_OK(ng_rbm_trainer_gradient(&B));
    {
        int D = ng_fisher_dim(nv, nh), nn = nv + nh;
        float *muv = malloc(nv * sizeof(float)), *muh = malloc(nh * sizeof(float));
        float *bv = malloc((size_t)nv * nh * sizeof(float)), *bh = malloc((size_t)nv * nh * sizeof(float));
        float *one = malloc((size_t)nv * nh * sizeof(float)), *I = calloc((size_t)nn * nn, sizeof(float));
        double *g = malloc(D * sizeof(double)), *r = malloc(D * sizeof(double)), *want = malloc(D * sizeof(double));
        double *var = malloc(nn * sizeof(double)), *s2 = malloc((size_t)nv * nh * sizeof(double));
        uint64_t key = ng_rng_stream_key(51, NG_RNG_TEST);
        double scale;
        struct ng_fang *f = fang_of(&B);
        const ng_tensor *tmv = state_tensor(&A.pc->state, "mu_v"), *tmh = state_tensor(&A.pc->state, "mu_h");
        NGT_CHECK(f != NULL, "trainer B's preconditioner is not FANG");
        NGT_CHECK(tmv && tmh, "the centering preconditioner has no mu_v / mu_h state");
        NGT_OK(ng_tensor_get(g_cpu, tmv, muv));
        NGT_OK(ng_tensor_get(g_cpu, tmh, muh));
        for (i = 0; i < nv; i++)
            for (j = 0; j < nh; j++) {
                bv[j + i * nh] = muh[j];
                bh[j + i * nh] = muv[i];
                one[j + i * nh] = 1.0f;
            }
        for (k = 0; k < nn; k++) I[k + k * nn] = 1.0f;
        NGT_OK(ng_tensor_set(g_cpu, &f->beta_v, bv));
        NGT_OK(ng_tensor_set(g_cpu, &f->beta_h, bh));
        NGT_OK(ng_tensor_set(g_cpu, &f->sigma2, one));
        NGT_OK(ng_tensor_set(g_cpu, &f->Lambda, I));
        NGT_OK(get_grad_d(&rB, g)); /* the raw gradient, for (b) */
        NGT_OK(ng_fang_apply(B.pc, ng_rbm_model(&rB)));
        NGT_OK(get_grad_d(&rB, r));
        NGT_OK(get_velocity_d(&A, want));
        for (k = 0; k < D; k++) want[k] /= -(double)(float)lr;
        scale = max_abs_d(want, D);
        printf("  (a) |FANG(centering parents) - trainer centering| = %.3g (scale %.3g)\n",
               max_diff_d(r, want, D), scale);
        for (k = 0; k < D; k++)
            NGT_CLOSE(r[k], want[k], 1e-6 * scale, "FANG with centering parameters vs centering step");

        /* (b) per-statistic scaling */
        for (k = 0; k < nn; k++) var[k] = 0.05 + 0.3 * ng_rng_uniform(key, 0, k);
        for (k = 0; k < nv * nh; k++) s2[k] = 0.02 + 0.2 * ng_rng_uniform(key, 1, k);
        for (k = 0; k < nn; k++) I[k + k * nn] = (float)(1.0 / var[k]);
        for (k = 0; k < nv * nh; k++) one[k] = (float)s2[k];
        for (k = 0; k < nn; k++) var[k] = 1.0 / (double)I[k + k * nn]; /* what the device holds */
        for (k = 0; k < nv * nh; k++) s2[k] = one[k];
        NGT_OK(ng_tensor_set(g_cpu, &f->sigma2, one));
        NGT_OK(ng_tensor_set(g_cpu, &f->Lambda, I));
        NGT_OK(set_grad_d(&rB, g));
        NGT_OK(ng_fang_apply(B.pc, ng_rbm_model(&rB)));
        NGT_OK(get_grad_d(&rB, r));
        for (i = 0; i < nv; i++) want[i] = g[i] / var[i];
        for (j = 0; j < nh; j++) want[nv + j] = g[nv + j] / var[nv + j];
        for (i = 0; i < nv; i++)
            for (j = 0; j < nh; j++) {
                int a = ng_fisher_index_w(nv, nh, i, j);
                double q = (g[a] - g[nv + j] * muv[i] - (double)muh[j] * g[i]) / s2[j + i * nh];
                want[a] = q;
                want[i] -= q * muh[j];
                want[nv + j] -= q * muv[i];
            }
        scale = max_abs_d(want, D);
        for (k = 0; k < D; k++)
            NGT_CLOSE(r[k], want[k], 1e-5 * scale, "FANG with diagonal Lambda_un vs scaled centering");
        free(muv);
        free(muh);
        free(bv);
        free(bh);
        free(one);
        free(I);
        free(g);
        free(r);
        free(want);
        free(var);
        free(s2);
    }
    ng_rbm_trainer_free(&A);
    ng_rbm_trainer_free(&B);
    ng_rbm_free(&rA);
    ng_rbm_free(&rB);
    hrbm_free(&h);
    ng_dataset_free(&ds);
    return NGT_PASS;
}

/* ---- 5. invariance to flipping the pixels ------------------------------------------------- */

enum { RULE_SGD = 0, RULE_CENTERING, RULE_FANG };
static const char *const rule_name[] = {"sgd", "centering", "fang"};

/* One deterministic ascent direction (dense, a b W order) of `rule` at the parameters h for the
 * data x: the exact log-likelihood gradient; centering with offsets mu_v = data mean, mu_h = data
 * mean of p(h | v) (float64 host formula of the centering preconditioner, precond.c); FANG from
 * the exact model moments through the library (refit + apply on the trainer's preconditioner,
 * float32) applied to the model's gradient g = -grad log p: dir = -r = -G_fac^-1 g. */
static ng_status rule_direction(int rule, const hrbm *h, const float *x, int n, ng_rbm *rbm,
                                ng_rbm_trainer *tr, double *dir) {
    int nv = h->nv, nh = h->nh, D = ng_fisher_dim(nv, nh), i, j, c;
    double *grad = malloc(D * sizeof(double));
    NG_TRY(hrbm_upload(h, rbm));
    NG_TRY(ng_rbm_loglik_grad_exact(rbm, x, n, grad));
    if (rule == RULE_SGD) {
        memcpy(dir, grad, D * sizeof(double));
    } else if (rule == RULE_CENTERING) {
        double *mv = calloc(nv, sizeof(double)), *mh = calloc(nh, sizeof(double));
        for (c = 0; c < n; c++)
            for (j = 0; j < nh; j++) {
                double t = h->b[j];
                for (i = 0; i < nv; i++) t += h->W[j + i * nh] * x[i + c * nv];
                mh[j] += sigmoid_d(t) / n;
            }
        for (c = 0; c < n; c++)
            for (i = 0; i < nv; i++) mv[i] += (double)x[i + c * nv] / n;
        memcpy(dir, grad, D * sizeof(double));
        for (i = 0; i < nv; i++)
            for (j = 0; j < nh; j++) {
                int a = ng_fisher_index_w(nv, nh, i, j);
                double wt = grad[a] - grad[nv + j] * mv[i] - mh[j] * grad[i];
                dir[a] = wt;
                dir[i] -= wt * mh[j];
                dir[nv + j] -= wt * mv[i];
            }
        free(mv);
        free(mh);
    } else {
        double *mean = malloc(D * sizeof(double)), *G = malloc((size_t)D * D * sizeof(double));
        ng_status s = ng_rbm_fisher_exact(rbm, mean, G);
        if (s == NG_OK) s = set_exact_moments(tr, mean, G);
        if (s == NG_OK) s = ng_fang_refit(tr->pc, ng_rbm_model(rbm), 0);
        for (i = 0; i < D; i++) grad[i] = -grad[i]; /* the model's sign: g = -grad log p */
        if (s == NG_OK) s = set_grad_d(rbm, grad);
        if (s == NG_OK) s = ng_fang_apply(tr->pc, ng_rbm_model(rbm));
        if (s == NG_OK) s = get_grad_d(rbm, dir);
        for (i = 0; i < D; i++) dir[i] = -dir[i]; /* ascent: -r */
        free(mean);
        free(G);
        if (s != NG_OK) {
            free(grad);
            return s;
        }
    }
    free(grad);
    return NG_OK;
}

/* eta' of the flipped model (v' = 1 - v): a' = -a, W' = -W, b' = b + W 1. The same affine map,
 * without the constant, takes an update of eta to the corresponding update of eta'. */
static void flip_params(const double *a, const double *b, const double *W, int nv, int nh,
                        double *a2, double *b2, double *W2) {
    int i, j;
    for (i = 0; i < nv; i++) a2[i] = -a[i];
    for (j = 0; j < nh; j++) {
        double s = b[j];
        for (i = 0; i < nv; i++) s += W[j + i * nh];
        b2[j] = s;
    }
    for (i = 0; i < nv * nh; i++) W2[i] = -W[i];
}

/* Bars and stripes (16 visible, 30 patterns), 8 hidden units, and its flipped copy 1 - x, from
 * corresponding initialisations (eta' = flip(eta)). Sampling can not be made exactly invariant
 * (a Gibbs draw u <= p becomes u <= 1 - p, not u > p), so the runs are deterministic: exact
 * gradients, exact model statistics for FANG, exact data offsets for centering.
 *  (a) One direction from identical statistics: flip(direction on x) == direction on 1 - x.
 *      Centering: float64 arithmetic, but the parameters pass through float32 on the device
 *      before the exact gradient is taken (relative perturbation 6e-8): 1e-6 relative.
 *      FANG with lambda = 1e-6: 1e-3 relative (float32 refit). The damping is not invariant:
 *      the flip maps (v, h, m) -> (-v, h, h - m), not an orthogonal map, so lambda I in the
 *      flipped coordinates is a different damping in the original ones; the deviation is
 *      O(lambda / sigma2). With the default lambda = 0.01 the one-step deviation must therefore
 *      be much larger (> 10x) than with 1e-6: it is the damping, not the construction, that
 *      breaks the invariance. SGD: must differ by more than 10% of the direction's size.
 *  (b) 25 steps of training each (FANG: lambda = 1e-6): the average log-likelihoods (exact,
 *      float64) on x and on 1 - x agree within 1e-5 (centering; float32 parameters) and 1e-4
 *      (FANG) and differ by more than 0.05 nats for SGD. The values are printed.
 *      ng_rbm_log_z_exact (the library, float32 sums) is checked against the float64 value at
 *      the end (1e-3). */
static int test_flip_invariance(void) {
    const int nh = 8, steps = 25;
    const double lr[4] = {0.5, 0.5, 0.05, 0.05};
    ng_dataset ds;
    float *xf;
    int nv, n, D, rule, k, t, i;
    double ll[3][2], dev[4];
    NGT_OK(ng_dataset_make_bars_stripes(4, 0, &ds));
    nv = ds.dim;
    n = ds.n;
    D = ng_fisher_dim(nv, nh);
    xf = malloc((size_t)nv * n * sizeof(float));
    for (k = 0; k < nv * n; k++) xf[k] = 1.0f - ds.x[k];
    for (rule = 0; rule < 4; rule++) {
        hrbm h[2];
        ng_rbm rbm[2];
        ng_rbm_trainer tr[2];
        ng_rbm_config cfg;
        double *dir[2], *mapped = malloc(D * sizeof(double)), scale, diff;
        const float *data[2];
        int nsteps = rule == 3 ? 1 : steps, kind = rule == 3 ? RULE_FANG : rule;
        data[0] = ds.x;
        data[1] = xf;
        test_config(&cfg, NG_RBM_OPT_FANG, n, 10);
        cfg.fang_lambda = rule == 3 ? 0.01f : 1e-6f;
        for (k = 0; k < 2; k++) {
            hrbm_alloc(&h[k], nv, nh);
            dir[k] = malloc(D * sizeof(double));
            NGT_OK(ng_rbm_init(g_cpu, nv, nh, &rbm[k]));
            NGT_OK(ng_rbm_trainer_init(&tr[k], &rbm[k], &cfg, data[k], n, NULL));
        }
        hrbm_random(&h[0], 12, 0.3, 0.3);
        flip_params(h[0].a, h[0].b, h[0].W, nv, nh, h[1].a, h[1].b, h[1].W);
        for (t = 0; t < nsteps; t++) {
            for (k = 0; k < 2; k++)
                NGT_OK(rule_direction(kind, &h[k], data[k], n, &rbm[k], &tr[k], dir[k]));
            /* map the original direction into the flipped coordinates (linear part only) */
            flip_params(dir[0], dir[0] + nv, dir[0] + nv + nh, nv, nh, mapped, mapped + nv,
                        mapped + nv + nh);
            if (t == 0) {
                scale = max_abs_d(dir[1], D);
                diff = max_diff_d(mapped, dir[1], D);
                dev[rule] = diff / scale;
                printf("  %-9s one-step: |flip(r) - r'| = %.3g (|r'| %.3g)%s\n", rule_name[kind], diff,
                       scale, kind == RULE_FANG ? (rule == 3 ? ", lambda 0.01" : ", lambda 1e-6") : "");
                if (rule == RULE_CENTERING) NGT_CHECK(diff <= 1e-6 * scale, "centering not invariant: %g", diff);
                if (rule == RULE_FANG) NGT_CHECK(diff <= 1e-3 * scale, "FANG not invariant: %g", diff);
                if (rule == RULE_SGD) NGT_CHECK(diff > 0.1 * scale, "SGD unexpectedly invariant: %g", diff);
            }
            for (k = 0; k < 2; k++) {
                for (i = 0; i < nv; i++) h[k].a[i] += lr[rule] * dir[k][i];
                for (i = 0; i < nh; i++) h[k].b[i] += lr[rule] * dir[k][nv + i];
                for (i = 0; i < nv * nh; i++) h[k].W[i] += lr[rule] * dir[k][nv + nh + i];
            }
        }
        if (rule == 3) goto next_rule;
        ll[rule][0] = hrbm_mean_ll(&h[0], ds.x, n);
        ll[rule][1] = hrbm_mean_ll(&h[1], xf, n);
        printf("  %-9s after %d steps: log-lik %.6f on x, %.6f on 1 - x (start %.4f)\n", rule_name[rule],
               steps, ll[rule][0], ll[rule][1], -(double)nv * log(2.0));
        if (rule == RULE_FANG) {
            double lz, lzd;
            NGT_OK(hrbm_upload(&h[0], &rbm[0]));
            NGT_OK(ng_rbm_log_z_exact(&rbm[0], &lz));
            {
                float *v1 = calloc(nv, sizeof(float));
                /* log Z in float64 from log p(v = 0) = -log Z + sum_j softplus(b_j) */
                double lp0 = hrbm_mean_ll(&h[0], v1, 1), sp = 0.0;
                for (i = 0; i < nh; i++) sp += softplus_d(h[0].b[i]);
                lzd = sp - lp0;
                free(v1);
            }
            NGT_CLOSE(lz, lzd, 1e-3, "ng_rbm_log_z_exact vs float64 log Z");
        }
    next_rule:
        for (k = 0; k < 2; k++) {
            ng_rbm_trainer_free(&tr[k]);
            ng_rbm_free(&rbm[k]);
            hrbm_free(&h[k]);
            free(dir[k]);
        }
        free(mapped);
    }
    NGT_CLOSE(ll[RULE_CENTERING][0], ll[RULE_CENTERING][1], 1e-5, "centering: log-lik on x vs 1 - x");
    NGT_CLOSE(ll[RULE_FANG][0], ll[RULE_FANG][1], 1e-4, "FANG: log-lik on x vs 1 - x");
    NGT_CHECK(dev[3] > 10.0 * dev[RULE_FANG], "FANG deviation with lambda 0.01 (%g) should exceed "
              "10x the one with lambda 1e-6 (%g)", dev[3], dev[RULE_FANG]);
    NGT_CHECK(fabs(ll[RULE_SGD][0] - ll[RULE_SGD][1]) > 0.05,
              "SGD: log-lik on x (%g) and 1 - x (%g) should differ", ll[RULE_SGD][0], ll[RULE_SGD][1]);
    free(xf);
    ng_dataset_free(&ds);
    return NGT_PASS;
}

/* A fresh RBM (nv, nh) with a FANG trainer on x (an RBM's estimator is set up once, by the first
 * trainer built on it, so every trainer here gets its own RBM). */
static ng_status fresh_fang_trainer(int nv, int nh, const ng_rbm_config *cfg, const float *x, int n,
                                    ng_rbm *rbm, ng_rbm_trainer *rt) {
    NG_TRY(ng_rbm_init(g_cpu, nv, nh, rbm));
    NG_TRY(ng_rbm_init_params(rbm, 1, 0.1f, NULL));
    NG_TRY(ng_rbm_trainer_init(rt, rbm, cfg, x, n, NULL));
    if (!fang_of(rt)) return ng_error(NG_ERR_INVALID_ARG, "the trainer's preconditioner is not FANG");
    return NG_OK;
}

/* Refit recovery (fang.c): with mu = 0 the unary covariance is S_un itself. Each recovery must be
 * reported by exactly one NG_LOG_WARN message from "fang" (captured with ng_log_set), naming what
 * was done; a refit that needs no recovery, or that fails, logs no warning.
 *  (a) S_un = I with the leading 2 x 2 block [[F31, F30], [F30, F29]] (Fibonacci numbers,
 *      exact in float; determinant F31 F29 - F30^2 = 1, condition ~3e12; lambda 1e-12 is lost
 *      in float): the last pivot, 1/F31 ~ 7e-7, is below float resolution, so the float32
 *      Cholesky fails (OpenBLAS computes -0.0625) and the float64 one succeeds:
 *      float64_refits = 1, no damping raise, and Lambda_un's block is the exact inverse
 *      [[F29, -F30], [-F30, F31]] (1e-3 relative to its largest entry, ~cond * 1e-16); the
 *      warning says "failed in float32; inverted in float64 with damping 1e-12".
 *  (b) S_un = -0.5 I (indefinite, lambda 0.01): the damping is raised x10 twice (0.01 -> 1) and
 *      Lambda_un = (0.5 I)^-1 = 2 I (1e-5); the warning says "inverted in float32 with damping 1".
 *  (c) after that refit, S_un = -1e6 I can not be repaired within 10^6 lambda: the previous
 *      Lambda_un is kept (the warning says "keeping the previous Lambda_un") and the refit still
 *      succeeds.
 *  (d) on a fresh trainer (no refit yet) the same is NG_ERR_NUMERIC (and no warning). */
static int test_refit_fallbacks(void) {
    const int nv = 6, nh = 4, n = nv + nh;
    float *x = random_binary(nv, 10, 13);
    ng_rbm rbm;
    ng_rbm_trainer tr;
    ng_rbm_config cfg;
    ng_fang_diag d;
    struct ng_fang *f;
    double H[100], Hi[100], Lam[100], zero[20] = {0};
    float Hf[100];
    const double F29 = 514229.0, F30 = 832040.0, F31 = 1346269.0;
    int i, j;
    test_config(&cfg, NG_RBM_OPT_FANG, 5, 8);
    cfg.fang_lambda = 1e-12f;
    NGT_OK(fresh_fang_trainer(nv, nh, &cfg, x, 10, &rbm, &tr));
    f = fang_of(&tr);
    /* (a) */
    for (j = 0; j < n; j++)
        for (i = 0; i < n; i++) H[i + j * n] = Hi[i + j * n] = i == j;
    H[0] = F31;
    H[1] = H[n] = F30;
    H[n + 1] = F29;
    Hi[0] = F29;
    Hi[1] = Hi[n] = -F30;
    Hi[n + 1] = F31;
    for (i = 0; i < n * n; i++) Hf[i] = (float)H[i];
    NGT_OK(set_tensor_d(g_cpu, &f->mom, zero));
    NGT_OK(ng_tensor_set(g_cpu, &f->S_un, Hf));
    log_reset();
    NGT_OK(ng_fang_refit(tr.pc, ng_rbm_model(&rbm), 0));
    NGT_OK(ng_fang_diagnostics(tr.pc, &d));
    printf("  ill-conditioned Sigma_un: float64 refits %g, damping raises %g, cond estimate %.3g\n",
           d.float64_refits, d.damping_raises, d.cond);
    printf("  warning: %s\n", g_log.last);
    NGT_CHECK(d.float64_refits == 1.0 && d.damping_raises == 0.0, "expected one float64 refit, got %g (raises %g)",
              d.float64_refits, d.damping_raises);
    NGT_CHECK(g_log.warnings == 1, "expected one fang warning, got %d (last: %s)", g_log.warnings, g_log.last);
    NGT_CHECK(strstr(g_log.last, "failed in float32") && strstr(g_log.last, "inverted in float64 with damping 1e-12"),
              "warning does not report the float64 recovery: %s", g_log.last);
    NGT_OK(get_tensor_d(g_cpu, &f->Lambda, Lam));
    NGT_CHECK(max_diff_d(Lam, Hi, n * n) <= 1e-3 * max_abs_d(Hi, n * n),
              "Lambda_un differs from the float64 inverse by %g (scale %g)", max_diff_d(Lam, Hi, n * n),
              max_abs_d(Hi, n * n));
    ng_rbm_trainer_free(&tr);
    ng_rbm_free(&rbm);
    /* (b) */
    cfg.fang_lambda = 0.01f;
    NGT_OK(fresh_fang_trainer(nv, nh, &cfg, x, 10, &rbm, &tr));
    f = fang_of(&tr);
    for (i = 0; i < n * n; i++) H[i] = (i % (n + 1) == 0) ? -0.5 : 0.0;
    NGT_OK(set_tensor_d(g_cpu, &f->mom, zero));
    NGT_OK(set_tensor_d(g_cpu, &f->S_un, H));
    log_reset();
    NGT_OK(ng_fang_refit(tr.pc, ng_rbm_model(&rbm), 0));
    NGT_OK(ng_fang_diagnostics(tr.pc, &d));
    printf("  warning: %s\n", g_log.last);
    NGT_CHECK(d.damping_raises == 2.0 && fabs(d.damping - 1.0) < 1e-6, "raises %g damping %g", d.damping_raises,
              d.damping);
    NGT_CHECK(g_log.warnings == 1, "expected one fang warning, got %d (last: %s)", g_log.warnings, g_log.last);
    {
        const char *w = strstr(g_log.last, "inverted in float32 with damping 1");
        NGT_CHECK(strstr(g_log.last, "failed in float32") && w && strcmp(w, "inverted in float32 with damping 1") == 0,
                  "warning does not report the damping raise to 1: %s", g_log.last);
    }
    NGT_OK(get_tensor_d(g_cpu, &f->Lambda, Lam));
    for (i = 0; i < n * n; i++) NGT_CLOSE(Lam[i], (i % (n + 1) == 0) ? 2.0 : 0.0, 1e-5, "Lambda_un = 2 I");
    /* (c) */
    for (i = 0; i < n * n; i++) H[i] = (i % (n + 1) == 0) ? -1e6 : 0.0;
    NGT_OK(set_tensor_d(g_cpu, &f->S_un, H));
    log_reset();
    NGT_OK(ng_fang_refit(tr.pc, ng_rbm_model(&rbm), 1));
    printf("  warning: %s\n", g_log.last);
    NGT_CHECK(g_log.warnings == 1 && strstr(g_log.last, "keeping the previous Lambda_un"),
              "expected one warning about keeping Lambda_un, got %d (last: %s)", g_log.warnings, g_log.last);
    NGT_OK(get_tensor_d(g_cpu, &f->Lambda, Lam));
    for (i = 0; i < n * n; i++) NGT_CLOSE(Lam[i], (i % (n + 1) == 0) ? 2.0 : 0.0, 1e-5, "kept Lambda_un");
    ng_rbm_trainer_free(&tr);
    ng_rbm_free(&rbm);
    /* (d) */
    NGT_OK(fresh_fang_trainer(nv, nh, &cfg, x, 10, &rbm, &tr));
    f = fang_of(&tr);
    NGT_OK(set_tensor_d(g_cpu, &f->S_un, H));
    log_reset();
    NGT_CHECK(ng_fang_refit(tr.pc, ng_rbm_model(&rbm), 0) == NG_ERR_NUMERIC, "unrepairable first refit not reported");
    printf("  first refit failure: %s\n", ng_last_error());
    NGT_CHECK(g_log.warnings == 0, "a failed first refit logged a warning: %s", g_log.last);
    ng_clear_error();
    ng_rbm_trainer_free(&tr);
    ng_rbm_free(&rbm);
    free(x);
    return NGT_PASS;
}

/* ---- 6. training, resume, backends ------------------------------------------------------- */

/* PCD + FANG on bars and stripes (16 x 8, batch 10, 100 particles, lr 0.05, T = 100, 1500
 * updates): the exact log-likelihood (ng_rbm_log_z_exact, ng_rbm_mean_log_prob) must improve by
 * more than 2 nats over the initial model (a trained model reaches about -6.6, the start is
 * about -11.1; SGD gets to about -10.8 in as many steps), every parameter must stay finite, and
 * the diagnostics must be sane (15 refits, min sigma2 >= lambda, cond >= 1). */
static int test_training_run(void) {
    ng_dataset ds;
    ng_rbm rbm;
    ng_rbm_trainer tr;
    ng_rbm_config cfg;
    ng_fang_diag d;
    double lz0, ll0, lz1, ll1, row[NG_TRAIN_MAX_COLUMNS];
    float *p;
    int nv, nh = 8, t, k;
    size_t np;
    NGT_OK(ng_dataset_make_bars_stripes(4, 0, &ds));
    nv = ds.dim;
    NGT_OK(ng_rbm_init(g_cpu, nv, nh, &rbm));
    NGT_OK(ng_rbm_init_params(&rbm, 3, 0.01f, NULL));
    test_config(&cfg, NG_RBM_OPT_FANG, 10, 100);
    cfg.lr = 0.05f;
    cfg.lr_gamma = 1000.0f;
    NGT_OK(ng_rbm_trainer_init(&tr, &rbm, &cfg, ds.x, ds.n, NULL));
    NGT_CHECK(fang_of(&tr) != NULL, "the trainer's preconditioner is not FANG");
    NGT_OK(ng_rbm_log_z_exact(&rbm, &lz0));
    NGT_OK(ng_rbm_mean_log_prob(&rbm, ds.x, ds.n, lz0, &ll0));
    /* every 100th update logs a CSV row (model, update-rule and FANG columns) */
    for (t = 0; t < 1500; t++) NGT_OK(ng_rbm_trainer_step(&tr, t % 100 == 99 ? row : NULL));
    NGT_CHECK(tr.tr.t == 1500, "update counter %llu after 1500 steps", (unsigned long long)tr.tr.t);
    NGT_OK(ng_rbm_log_z_exact(&rbm, &lz1));
    NGT_OK(ng_rbm_mean_log_prob(&rbm, ds.x, ds.n, lz1, &ll1));
    NGT_OK(ng_fang_diagnostics(tr.pc, &d));
    printf("  log-likelihood %.4f -> %.4f; refits %g (%.4f s), cond %.3g, min sigma2 %.3g, damping %g\n",
           ll0, ll1, d.refits, d.refit_s, d.cond, d.min_sigma2, d.damping);
    np = (size_t)nv * nh + nv + nh;
    p = malloc(np * sizeof(float));
    NGT_OK(ng_rbm_get_params(&rbm, p, p + (size_t)nv * nh, p + (size_t)nv * nh + nv));
    for (k = 0; k < (int)np; k++) NGT_CHECK(isfinite(p[k]), "parameter %d is %g", k, p[k]);
    NGT_CHECK(isfinite(ll1) && ll1 > ll0 + 2.0, "log-likelihood %g -> %g: no improvement", ll0, ll1);
    NGT_CHECK(d.refits == 15.0, "refits %g, expected 15", d.refits);
    NGT_CHECK(d.min_sigma2 >= cfg.fang_lambda && d.cond >= 1.0 && isfinite(d.cond),
              "diagnostics min sigma2 %g cond %g", d.min_sigma2, d.cond);
    NGT_CHECK(d.damping == cfg.fang_lambda, "damping %g was raised", d.damping);
    free(p);
    ng_rbm_trainer_free(&tr);
    ng_rbm_free(&rbm);
    ng_dataset_free(&ds);
    return NGT_PASS;
}

/* Checkpoint/resume: trainer A runs 13 updates (T = 5: refits at 0, 5, 10) saving a checkpoint
 * (ng_rbm_trainer_save) after 7; trainer B loads it (ng_rbm_trainer_load) and runs to 13.
 * Parameters and the FANG state (the preconditioner's state arena: mom, S_un, Lambda, beta_v,
 * beta_h, sigma2, diag) must be bit-identical: the state tensors are complete and the schedule
 * depends only on t. The diagnostics are compared except refit_s (wall time). */
static int test_resume_exact(void) {
    ng_dataset ds;
    ng_rbm rA, rB;
    ng_rbm_trainer A, B;
    ng_rbm_config cfg;
    char path[256];
    int nv, nh = 6, t, k;
    size_t np;
    float *pa, *pb;
    int na, nb;
    NGT_OK(ng_dataset_make_bars_stripes(3, 0, &ds));
    nv = ds.dim;
    snprintf(path, sizeof path, "/tmp/ng_test_fang_%d.ckpt", (int)getpid());
    test_config(&cfg, NG_RBM_OPT_FANG, 7, 30);
    cfg.fang_refit_every = 5;
    cfg.fang_tau = 3.0f;
    NGT_OK(ng_rbm_init(g_cpu, nv, nh, &rA));
    NGT_OK(ng_rbm_init(g_cpu, nv, nh, &rB));
    NGT_OK(ng_rbm_init_params(&rA, 5, 0.1f, NULL));
    NGT_OK(ng_rbm_trainer_init(&A, &rA, &cfg, ds.x, ds.n, NULL));
    NGT_OK(ng_rbm_trainer_init(&B, &rB, &cfg, ds.x, ds.n, NULL));
    NGT_CHECK(fang_of(&A) && fang_of(&B), "the trainers' preconditioners are not FANG");
    for (t = 0; t < 13; t++) {
        NGT_OK(ng_rbm_trainer_step(&A, NULL));
        if (A.tr.t == 7) NGT_OK(ng_rbm_trainer_save(&A, path));
    }
    NGT_OK(ng_rbm_trainer_load(&B, path));
    NGT_CHECK(B.tr.t == 7, "resumed at t = %llu", (unsigned long long)B.tr.t);
    while (B.tr.t < 13) NGT_OK(ng_rbm_trainer_step(&B, NULL));
    remove(path);
    np = (size_t)nv * nh + nv + nh;
    pa = malloc(np * sizeof(float));
    pb = malloc(np * sizeof(float));
    NGT_OK(ng_rbm_get_params(&rA, pa, pa + (size_t)nv * nh, pa + (size_t)nv * nh + nv));
    NGT_OK(ng_rbm_get_params(&rB, pb, pb + (size_t)nv * nh, pb + (size_t)nv * nh + nv));
    NGT_CHECK(memcmp(pa, pb, np * sizeof(float)) == 0, "parameters differ after resume");
    na = ng_arena_count(&A.pc->state);
    nb = ng_arena_count(&B.pc->state);
    NGT_CHECK(na == nb && na == 7, "state tensor counts %d %d", na, nb);
    NGT_CHECK(state_tensor(&A.pc->state, "diag") != NULL, "no diag state tensor");
    for (k = 0; k < na; k++) {
        const ng_tensor *ta = ng_arena_view(&A.pc->state, k), *tb = ng_arena_view(&B.pc->state, k);
        const char *name = ng_arena_name(&A.pc->state, k);
        size_t cnt = ng_tensor_count(ta);
        float *xa, *xb;
        NGT_CHECK(strcmp(name, ng_arena_name(&B.pc->state, k)) == 0 && cnt == ng_tensor_count(tb),
                  "state tensor %d: %s vs %s", k, name, ng_arena_name(&B.pc->state, k));
        xa = malloc(cnt * sizeof(float));
        xb = malloc(cnt * sizeof(float));
        NGT_OK(ng_tensor_get(g_cpu, ta, xa));
        NGT_OK(ng_tensor_get(g_cpu, tb, xb));
        if (strcmp(name, "diag") == 0) xa[3] = xb[3] = 0.0f; /* refit_s: wall time */
        NGT_CHECK(memcmp(xa, xb, cnt * sizeof(float)) == 0, "FANG state tensor %s differs after resume", name);
        free(xa);
        free(xb);
    }
    free(pa);
    free(pb);
    ng_rbm_trainer_free(&A);
    ng_rbm_trainer_free(&B);
    ng_rbm_free(&rA);
    ng_rbm_free(&rB);
    ng_dataset_free(&ds);
    return NGT_PASS;
}

static int copy_tensor(ng_backend *from, const ng_tensor *a, ng_backend *to, const ng_tensor *b) {
    size_t cnt = ng_tensor_count(a);
    float *buf = malloc(cnt * sizeof(float));
    ng_tensor dst = *b; /* a view: writing through a copy writes the same memory */
    int ok = cnt == ng_tensor_count(b) && ng_tensor_get(from, a, buf) == NG_OK &&
             ng_tensor_set(to, &dst, buf) == NG_OK;
    free(buf);
    return ok;
}

/* CPU vs CUDA: the CPU trainer runs 5 PCD-FANG updates (T = 5); its particles' statistics
 * ("v_model", "h_model"), the gradient (gW, ga, gb) and every FANG state tensor (the
 * preconditioner's state arena) are copied into a CUDA trainer; both then take one FANG direction
 * at the same t, ng_precond_observe then ng_precond_apply (hidden samples drawn from identical
 * p(h | v) with the same stream, the moving-average update, a refit, the direction). The
 * directions must agree to 1e-4 relative to their largest entry (float32 BLAS/LAPACK in different
 * orders; cond(Sigma_un) ~ 10-100). */
static int cpu_vs_cuda_case(int inverse) {
    ng_dataset ds;
    ng_rbm rc, rg;
    ng_rbm_trainer C, Gt;
    ng_rbm_config cfg;
    ng_model *mc, *mg;
    ng_tensor vmc, hmc, vmg, hmg;
    int nv, nh = 8, t, k, D, nc, ng;
    double *xc, *xg, scale;
    uint64_t tt;
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    NGT_OK(ng_dataset_make_bars_stripes(4, 0, &ds));
    nv = ds.dim;
    D = ng_fisher_dim(nv, nh);
    test_config(&cfg, NG_RBM_OPT_FANG, 10, 64);
    cfg.fang_refit_every = 5;
    cfg.fang_inverse = inverse;
    NGT_OK(ng_rbm_init(g_cpu, nv, nh, &rc));
    NGT_OK(ng_rbm_init(g_cuda, nv, nh, &rg));
    NGT_OK(ng_rbm_init_params(&rc, 5, 0.1f, NULL));
    NGT_OK(ng_rbm_trainer_init(&C, &rc, &cfg, ds.x, ds.n, NULL));
    NGT_OK(ng_rbm_trainer_init(&Gt, &rg, &cfg, ds.x, ds.n, NULL));
    NGT_CHECK(fang_of(&C) && fang_of(&Gt), "the trainers' preconditioners are not FANG");
    mc = ng_rbm_model(&rc);
    mg = ng_rbm_model(&rg);
    for (t = 0; t < 5; t++) NGT_OK(ng_rbm_trainer_step(&C, NULL));
    NGT_OK(ng_rbm_trainer_gradient(&C));
    NGT_OK(ng_model_statistic(mc, "v_model", &vmc));
    NGT_OK(ng_model_statistic(mc, "h_model", &hmc));
    NGT_OK(ng_model_statistic(mg, "v_model", &vmg));
    NGT_OK(ng_model_statistic(mg, "h_model", &hmg));
    NGT_CHECK(copy_tensor(g_cpu, &vmc, g_cuda, &vmg) && copy_tensor(g_cpu, &hmc, g_cuda, &hmg) &&
                  copy_tensor(g_cpu, &rc.gW, g_cuda, &rg.gW) && copy_tensor(g_cpu, &rc.ga, g_cuda, &rg.ga) &&
                  copy_tensor(g_cpu, &rc.gb, g_cuda, &rg.gb),
              "copying to the CUDA trainer: %s", ng_last_error());
    nc = ng_arena_count(&C.pc->state);
    ng = ng_arena_count(&Gt.pc->state);
    NGT_CHECK(nc == ng, "state tensor counts differ");
    for (k = 0; k < nc; k++) {
        NGT_CHECK(strcmp(ng_arena_name(&C.pc->state, k), ng_arena_name(&Gt.pc->state, k)) == 0,
                  "state tensor %d: %s vs %s", k, ng_arena_name(&C.pc->state, k), ng_arena_name(&Gt.pc->state, k));
        NGT_CHECK(copy_tensor(g_cpu, ng_arena_view(&C.pc->state, k), g_cuda, ng_arena_view(&Gt.pc->state, k)),
                  "state copy: %s", ng_last_error());
    }
    tt = C.tr.t;
    NGT_OK(ng_precond_observe(C.pc, mc, tt));
    NGT_OK(ng_precond_apply(C.pc, mc, tt));
    NGT_OK(ng_precond_observe(Gt.pc, mg, tt));
    NGT_OK(ng_precond_apply(Gt.pc, mg, tt));
    xc = malloc(D * sizeof(double));
    xg = malloc(D * sizeof(double));
    NGT_OK(get_grad_d(&rc, xc));
    NGT_OK(get_grad_d(&rg, xg));
    scale = max_abs_d(xc, D);
    printf("  CPU vs CUDA direction (%s inverse): max |diff| %.3g (scale %.3g)\n", inverse ? "regularized" : "tikhonov",
           max_diff_d(xc, xg, D), scale);
    NGT_CHECK(max_diff_d(xc, xg, D) <= 1e-4 * scale, "directions differ by %g", max_diff_d(xc, xg, D));
    free(xc);
    free(xg);
    ng_rbm_trainer_free(&C);
    ng_rbm_trainer_free(&Gt);
    ng_rbm_free(&rc);
    ng_rbm_free(&rg);
    ng_dataset_free(&ds);
    return NGT_PASS;
}

static int test_cpu_vs_cuda(void) {
    int r;
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    r = cpu_vs_cuda_case(NG_FANG_INV_TIKHONOV);
    return r != NGT_PASS ? r : cpu_vs_cuda_case(NG_FANG_INV_REGULARIZED);
}

/* Sohl-Dickstein's regularised inverse (eq. 35) for Lambda_un: with mu = 0 the unary covariance is
 * S_un itself; for a symmetric indefinite S (n = 10, eigenvalues spread over [-3, 5] with some
 * below lambda = 0.1) the refit must give (S^T S + lambda^2 I)^-1 S^T, computed here in float64 by
 * Cholesky solves (tolerance 1e-4 of its largest entry); a direction of large variance is inverted
 * like Tikhonov's, one below lambda is damped towards 0 (checked on S's eigenvectors e:
 * e^T Lambda e = l / (l^2 + lambda^2)); no damping raise, no warning; the settings refuse an
 * unknown --fang-inverse. */
static int test_regularized_inverse(void) {
    const int nv = 6, nh = 4, n = nv + nh;
    float *x = random_binary(nv, 10, 17);
    ng_rbm rbm;
    ng_rbm_trainer tr;
    ng_rbm_config cfg;
    ng_fang_config fc;
    ng_fang_diag d;
    struct ng_fang *f;
    double H[100], HH[100], Ref[100], Lam[100], zero[20] = {0}, Q[100], lam = 0.1, ev[10];
    int i, j, k;
    uint64_t key = ng_rng_stream_key(23, NG_RNG_TEST);
    /* H = Q diag(ev) Q^T with Q from Gram-Schmidt on Philox uniforms */
    for (k = 0; k < n * n; k++) Q[k] = ng_rng_uniform(key, 1, (uint64_t)k) - 0.5;
    for (j = 0; j < n; j++) {
        double nr = 0.0;
        for (k = 0; k < j; k++) {
            double dt = 0.0;
            for (i = 0; i < n; i++) dt += Q[i + j * n] * Q[i + k * n];
            for (i = 0; i < n; i++) Q[i + j * n] -= dt * Q[i + k * n];
        }
        for (i = 0; i < n; i++) nr += Q[i + j * n] * Q[i + j * n];
        for (i = 0; i < n; i++) Q[i + j * n] /= sqrt(nr);
    }
    for (k = 0; k < n; k++) ev[k] = -3.0 + 8.0 * k / (n - 1.0);
    ev[3] = 0.02;  /* below lambda */
    ev[4] = -0.05; /* below lambda, negative */
    for (j = 0; j < n; j++)
        for (i = 0; i < n; i++) {
            double a = 0.0;
            for (k = 0; k < n; k++) a += Q[i + k * n] * ev[k] * Q[j + k * n];
            H[i + j * n] = a;
        }
    for (j = 0; j < n; j++)
        for (i = 0; i < n; i++) {
            double a = 0.0;
            for (k = 0; k < n; k++) a += H[k + i * n] * H[k + j * n];
            HH[i + j * n] = a + (i == j ? lam * lam : 0.0);
        }
    for (j = 0; j < n; j++) {
        double col[10];
        for (i = 0; i < n; i++) col[i] = H[j + i * n]; /* column j of H^T */
        NGT_CHECK(spd_solve_d(n, HH, col, Ref + (size_t)j * n) == 0, "reference solve");
    }
    test_config(&cfg, NG_RBM_OPT_FANG, 5, 8);
    cfg.fang_lambda = (float)lam;
    cfg.fang_inverse = NG_FANG_INV_REGULARIZED;
    NGT_OK(fresh_fang_trainer(nv, nh, &cfg, x, 10, &rbm, &tr));
    f = fang_of(&tr);
    NGT_OK(set_tensor_d(g_cpu, &f->mom, zero));
    NGT_OK(set_tensor_d(g_cpu, &f->S_un, H));
    log_reset();
    NGT_OK(ng_fang_refit(tr.pc, ng_rbm_model(&rbm), 0));
    NGT_OK(ng_fang_diagnostics(tr.pc, &d));
    NGT_OK(get_tensor_d(g_cpu, &f->Lambda, Lam));
    printf("  regularised Lambda_un vs (S^T S + lambda^2 I)^-1 S^T: max |diff| %.3g (scale %.3g)\n", max_diff_d(Lam, Ref, n * n),
           max_abs_d(Ref, n * n));
    NGT_CHECK(max_diff_d(Lam, Ref, n * n) <= 1e-4 * max_abs_d(Ref, n * n), "Lambda_un differs from eq. 35 by %g (scale %g)",
              max_diff_d(Lam, Ref, n * n), max_abs_d(Ref, n * n));
    for (k = 0; k < n; k++) {
        double q = 0.0, want = ev[k] / (ev[k] * ev[k] + lam * lam);
        for (j = 0; j < n; j++)
            for (i = 0; i < n; i++) q += Q[i + k * n] * Lam[i + j * n] * Q[j + k * n];
        NGT_CHECK(fabs(q - want) <= 1e-3 * 10.0, "e_%d^T Lambda e_%d = %g, want l / (l^2 + lambda^2) = %g (l = %g)", k, k, q, want, ev[k]);
    }
    NGT_CHECK(d.damping_raises == 0.0 && g_log.warnings == 0, "raises %g, warnings %d", d.damping_raises, g_log.warnings);
    NGT_CHECK(fabs(d.cond - 5.0 / 0.02) < 1e-2 * 250.0, "cond = max |l| / min |l| = %g, want 250", d.cond);
    ng_rbm_trainer_free(&tr);
    ng_rbm_free(&rbm);
    memset(&fc, 0, sizeof fc);
    fc.refit_every = 1;
    fc.tau = 1.0f;
    fc.lambda = 0.1f;
    fc.inverse = 2;
    NGT_CHECK(ng_fang_config_check(&fc) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "--fang-inverse"), "unknown inverse: %s",
              ng_last_error());
    free(x);
    return NGT_PASS;
}

static int test_regress_slot_cpu(void) { return check_regress_slot(g_cpu); }
static int test_regress_slot_cuda(void) {
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    return check_regress_slot(g_cuda);
}
static int test_slots_cpu(void) { return check_other_slots(g_cpu); }
static int test_slots_cuda(void) {
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    return check_other_slots(g_cuda);
}

int main(void) {
    ng_status s = ng_backend_cpu_init(&g_cpu);
    if (s != NG_OK) {
        printf("cpu backend: %s\n", ng_last_error());
        return 1;
    }
    ng_log_set(capture_log, &g_log);
    s = ng_backend_cuda_init(0, &g_cuda);
    if (s != NG_OK) {
        snprintf(g_cuda_reason, sizeof g_cuda_reason, "no CUDA backend here: %s", ng_last_error());
        g_cuda = NULL;
        ng_clear_error();
    }
    NGT_RUN(test_fisher_exact_bruteforce);
    NGT_RUN(test_fisher_exact_backend);
    NGT_RUN(test_loglik_grad_fd);
    NGT_RUN(test_regress_body);
    NGT_RUN(test_regress_slot_cpu);
    NGT_RUN(test_regress_slot_cuda);
    NGT_RUN(test_slots_cpu);
    NGT_RUN(test_slots_cuda);
    NGT_RUN(test_bad_input);
    NGT_RUN(test_direction_vs_dense);
    NGT_RUN(test_theorem1);
    NGT_RUN(test_centering_reduction);
    NGT_RUN(test_flip_invariance);
    NGT_RUN(test_refit_fallbacks);
    NGT_RUN(test_regularized_inverse);
    NGT_RUN(test_training_run);
    NGT_RUN(test_resume_exact);
    NGT_RUN(test_cpu_vs_cuda);
    ng_backend_free(g_cuda);
    ng_backend_free(g_cpu);
    return ngt_finish();
}
