/* test_rbm.c: the RBM as a natgrad model (host/models/rbm.c) and its training set-up
 * (host/models/rbm_train.c: ng_rbm_trainer = the model's PCD/CD estimator, the batch stream of
 * host/data/batches.c, the identity or centering preconditioner of host/optim/precond.c and the SGD
 * update rule of host/optim/sgd.c under the generic trainer of host/core/train.c), against exact
 * references computed here. Everything is read through the public interfaces: the gradient in the
 * model's gradient arena (rbm.gW, ga, gb: the gradient of the NEGATIVE log-likelihood, model minus
 * data), the estimator's buffers through ng_model_statistic ("v_data", "h_data", "v_model",
 * "h_model", "h_chain", "particles"), the SGD velocity and the centering offsets as tensors of the
 * update rule's and the preconditioner's state arenas ("velocity", packed like the parameters
 * [W, a, b]; "mu_v", "mu_h"), and the data cursor of the batch stream (rt.data: perm, pos, epoch).
 * Small RBMs (6 visible x 4 hidden) are enumerated in float64: all 2^10 joint states give the
 * model moments, all 2^6 visible states give p(v) and the exact Gibbs transition matrix (so the
 * expectation of a CD-k estimate and the distance of a chain from equilibrium are exact too), and
 * central finite differences of the enumerated log-likelihood confirm the gradient formula.
 * Statistical checks allow 5 standard errors computed from the samples themselves, with the error
 * taken over independent units only (PCD: per-particle time averages, since a particle's successive
 * states are correlated; CD: whole calls, since each call restarts from the data). Deterministic
 * checks use float32 bounds stated at each site. Every test runs on the CPU backend and, when
 * ng_backend_cuda_init(0, ...) succeeds (a GPU, or the tests/simt emulator), on the CUDA backend; on
 * the emulator or with NG_TEST_SMALL set the sample counts shrink.
 * Deterministic: every random choice comes from a fixed Philox stream. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends.h"
#include "harness.h"
#include "natgrad/data.h"
#include "natgrad/eval.h"
#include "natgrad/rbm.h"
#include "natgrad/rng.h"

static ng_backend *g_cpu, *g_cuda;
static char g_cuda_reason[300];

/* Fewer samples on the emulated device (the emulator names itself in the backend description; the
 * C test files are not built with NG_SIMT) or when NG_TEST_SMALL is set. */
static int small_mode(const ng_backend *be) {
#ifdef NG_SIMT
    (void)be;
    return 1;
#else
    return getenv("NG_TEST_SMALL") != NULL || (be && strstr(be->description, "SIMT") != NULL);
#endif
}

/* ---- exact small-RBM references (float64) ----------------------------------------------------- */

#define MAXV 8
#define MAXH 8
#define MAXVS (1 << MAXV)

/* Parameters as uploaded (float) and the same values in double for the references. */
typedef struct small_rbm {
    int nv, nh;
    float Wf[MAXV * MAXH], af[MAXV], bf[MAXH]; /* W (nh, nv) column-major */
    double W[MAXV * MAXH], a[MAXV], b[MAXH];
} small_rbm;

typedef struct moments {
    double v[MAXV], h[MAXH];
    double vh[MAXV * MAXH]; /* E[h_j v_i] at [j + i*nh], laid out like W */
} moments;

static void small_rbm_sync(small_rbm *r) {
    int i;
    for (i = 0; i < r->nv * r->nh; i++) r->W[i] = r->Wf[i];
    for (i = 0; i < r->nv; i++) r->a[i] = r->af[i];
    for (i = 0; i < r->nh; i++) r->b[i] = r->bf[i];
}

static void small_rbm_random(small_rbm *r, int nv, int nh, uint64_t seed, float w_std,
                             float bias_std) {
    uint64_t key = ng_rng_stream_key(seed, NG_RNG_TEST);
    memset(r, 0, sizeof *r);
    r->nv = nv;
    r->nh = nh;
    ng_rng_fill_normal(r->Wf, (size_t)nv * nh, 0.0f, w_std, key, 0);
    ng_rng_fill_normal(r->af, (size_t)nv, 0.0f, bias_std, key, 1);
    ng_rng_fill_normal(r->bf, (size_t)nh, 0.0f, bias_std, key, 2);
    small_rbm_sync(r);
}

static double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }
static double softplus(double x) { return x > 30.0 ? x + log1p(exp(-x)) : log1p(exp(x)); }
static int bit(unsigned s, int i) { return (int)(s >> i & 1u); }

/* Pre-activation of hidden unit j for a visible vector v (floats, not necessarily binary). */
static double hid_pre(const double *W, const double *b, int nv, int nh, int j, const float *v) {
    double x = b[j];
    int i;
    for (i = 0; i < nv; i++) x += W[j + (size_t)i * nh] * (double)v[i];
    return x;
}

/* E[v], E[h], E[h v^T] under the model, from all 2^(nv+nh) joint states. */
static void exact_moments(const small_rbm *r, moments *out) {
    int nv = r->nv, nh = r->nh, i, j;
    unsigned ns = 1u << (nv + nh), s;
    double *lw = (double *)malloc(ns * sizeof(double)), mx = -INFINITY, z = 0.0;
    memset(out, 0, sizeof *out);
    for (s = 0; s < ns; s++) {
        double x = 0.0;
        for (i = 0; i < nv; i++) x += r->a[i] * bit(s, i);
        for (j = 0; j < nh; j++) {
            if (!bit(s, nv + j)) continue;
            x += r->b[j];
            for (i = 0; i < nv; i++) x += r->W[j + i * nh] * bit(s, i);
        }
        lw[s] = x;
        if (x > mx) mx = x;
    }
    for (s = 0; s < ns; s++) z += exp(lw[s] - mx);
    for (s = 0; s < ns; s++) {
        double p = exp(lw[s] - mx) / z;
        for (i = 0; i < nv; i++) out->v[i] += p * bit(s, i);
        for (j = 0; j < nh; j++) out->h[j] += p * bit(s, nv + j);
        for (j = 0; j < nh; j++)
            for (i = 0; i < nv; i++) out->vh[j + i * nh] += p * bit(s, nv + j) * bit(s, i);
    }
    free(lw);
}

/* Unnormalised log p(v) = a'v + sum_j softplus(W_j v + b_j) of a binary state s. */
static double log_pv_unnorm(const double *W, const double *a, const double *b, int nv, int nh,
                            unsigned s) {
    double x = 0.0;
    int i, j;
    for (i = 0; i < nv; i++) x += a[i] * bit(s, i);
    for (j = 0; j < nh; j++) {
        double pre = b[j];
        for (i = 0; i < nv; i++) pre += W[j + i * nh] * bit(s, i);
        x += softplus(pre);
    }
    return x;
}

/* p(v) of every visible state (2^nv of them). */
static void exact_pv(const small_rbm *r, double *pv) {
    unsigned nvs = 1u << r->nv, s;
    double mx = -INFINITY, z = 0.0;
    for (s = 0; s < nvs; s++) {
        pv[s] = log_pv_unnorm(r->W, r->a, r->b, r->nv, r->nh, s);
        if (pv[s] > mx) mx = pv[s];
    }
    for (s = 0; s < nvs; s++) z += (pv[s] = exp(pv[s] - mx));
    for (s = 0; s < nvs; s++) pv[s] /= z;
}

/* Average log p(v) over n binary columns of x (nv, n), parameters in double. */
static double exact_mean_ll(const double *W, const double *a, const double *b, int nv, int nh,
                            const float *x, int n) {
    unsigned nvs = 1u << nv, s;
    double mx = -INFINITY, z = 0.0, ll = 0.0, lz;
    double lp[MAXVS];
    int c, i;
    for (s = 0; s < nvs; s++) {
        lp[s] = log_pv_unnorm(W, a, b, nv, nh, s);
        if (lp[s] > mx) mx = lp[s];
    }
    for (s = 0; s < nvs; s++) z += exp(lp[s] - mx);
    lz = mx + log(z);
    for (c = 0; c < n; c++) {
        unsigned sv = 0;
        for (i = 0; i < nv; i++)
            if (x[(size_t)c * nv + i] > 0.5f) sv |= 1u << i;
        ll += lp[sv] - lz;
    }
    return ll / n;
}

/* The visible-to-visible transition matrix of one Gibbs sweep v -> h ~ p(h|v) -> v' ~ p(v'|h):
 * T[v + nvs*v'] = sum_h p(h|v) p(v'|h). */
static void exact_transition(const small_rbm *r, double *T) {
    int nv = r->nv, nh = r->nh, i, j;
    unsigned nvs = 1u << nv, nhs = 1u << nh, v, h, v2;
    double *pvh = (double *)malloc((size_t)nhs * nvs * sizeof(double)); /* p(v'|h) at [h + nhs*v'] */
    for (h = 0; h < nhs; h++) {
        double pi[MAXV];
        for (i = 0; i < nv; i++) {
            double x = r->a[i];
            for (j = 0; j < nh; j++) x += r->W[j + i * nh] * bit(h, j);
            pi[i] = sigm(x);
        }
        for (v2 = 0; v2 < nvs; v2++) {
            double p = 1.0;
            for (i = 0; i < nv; i++) p *= bit(v2, i) ? pi[i] : 1.0 - pi[i];
            pvh[h + nhs * v2] = p;
        }
    }
    for (v = 0; v < nvs; v++) {
        double pj[MAXH];
        for (j = 0; j < nh; j++) {
            double x = r->b[j];
            for (i = 0; i < nv; i++) x += r->W[j + i * nh] * bit(v, i);
            pj[j] = sigm(x);
        }
        for (v2 = 0; v2 < nvs; v2++) T[v + nvs * v2] = 0.0;
        for (h = 0; h < nhs; h++) {
            double ph = 1.0;
            for (j = 0; j < nh; j++) ph *= bit(h, j) ? pj[j] : 1.0 - pj[j];
            for (v2 = 0; v2 < nvs; v2++) T[v + nvs * v2] += ph * pvh[h + nhs * v2];
        }
    }
    free(pvh);
}

/* q <- q T (one sweep applied to a distribution over visible states). */
static void apply_transition(const double *T, unsigned nvs, double *q) {
    double out[MAXVS];
    unsigned v, v2;
    for (v2 = 0; v2 < nvs; v2++) {
        double s = 0.0;
        for (v = 0; v < nvs; v++) s += q[v] * T[v + nvs * v2];
        out[v2] = s;
    }
    memcpy(q, out, nvs * sizeof(double));
}

static unsigned state_of(const float *v, int nv) {
    unsigned s = 0;
    int i;
    for (i = 0; i < nv; i++)
        if (v[i] > 0.5f) s |= 1u << i;
    return s;
}

/* Binary data: pixel i of example c is on with probability 0.2 + 0.6 * i / (nv - 1). */
static void random_binary_data(float *x, int nv, int n, uint64_t seed) {
    uint64_t key = ng_rng_stream_key(seed, NG_RNG_TEST);
    int c, i;
    for (c = 0; c < n; c++)
        for (i = 0; i < nv; i++) {
            float p = 0.2f + 0.6f * (float)i / (float)(nv > 1 ? nv - 1 : 1);
            x[(size_t)c * nv + i] = ng_rng_uniform(key, 3, (uint64_t)c * nv + i) <= p ? 1.0f : 0.0f;
        }
}

/* Mean and standard error of n independent values. */
static void mean_se(const double *x, int n, size_t stride, double *mean, double *se) {
    double m = 0.0, v = 0.0;
    int i;
    for (i = 0; i < n; i++) m += x[(size_t)i * stride];
    m /= n;
    for (i = 0; i < n; i++) v += (x[(size_t)i * stride] - m) * (x[(size_t)i * stride] - m);
    *mean = m;
    *se = sqrt(v / (n - 1) / n);
}

/* Worst-case error of a float32 mean of n products of values in [0, 1]: n unit roundoffs
 * (the classical gamma_n bound of recursive summation) plus one for the scaling. */
static double f32_mean_bound(int n) { return (double)(n + 2) * ldexp(1.0, -24); }

/* ---- fixture ---------------------------------------------------------------------------------- */

/* Everything a test allocates, freed in one place whether the test passes or fails. */
typedef struct fixture {
    ng_rbm rbm;
    ng_rbm_trainer tr;
    int have_rbm, have_tr;
    float *data;                      /* (nv, n) host training set (borrowed by the trainer) */
    float *vd, *hd, *vm, *hm, *hs;    /* host copies of the estimator's statistics */
    float *gW, *ga, *gb;              /* host copy of the gradient (negative log-likelihood) */
    double *acc;                      /* accumulators */
} fixture;

static void fixture_free(fixture *f) {
    if (f->have_tr) ng_rbm_trainer_free(&f->tr);
    if (f->have_rbm) ng_rbm_free(&f->rbm);
    free(f->data);
    free(f->vd);
    free(f->hd);
    free(f->vm);
    free(f->hm);
    free(f->hs);
    free(f->gW);
    free(f->ga);
    free(f->gb);
    free(f->acc);
    memset(f, 0, sizeof *f);
}

/* Allocate the host copies for an (nv, nh) RBM with batch m and M chains. */
static ng_status fixture_buffers(fixture *f, int nv, int nh, int m, int M) {
    int mm = m > M ? m : M;
    f->vd = (float *)malloc((size_t)nv * m * sizeof(float));
    f->hd = (float *)malloc((size_t)nh * m * sizeof(float));
    f->vm = (float *)malloc((size_t)nv * M * sizeof(float));
    f->hm = (float *)malloc((size_t)nh * M * sizeof(float));
    f->hs = (float *)malloc((size_t)nh * mm * sizeof(float));
    f->gW = (float *)malloc((size_t)nv * nh * sizeof(float));
    f->ga = (float *)malloc((size_t)nv * sizeof(float));
    f->gb = (float *)malloc((size_t)nh * sizeof(float));
    if (!f->vd || !f->hd || !f->vm || !f->hm || !f->hs || !f->gW || !f->ga || !f->gb)
        return ng_error(NG_ERR_OOM, "test: out of memory");
    return NG_OK;
}

/* RBM with r's parameters on be and a trainer over f->data (n examples). */
static ng_status fixture_trainer(fixture *f, ng_backend *be, const small_rbm *r,
                                 const ng_rbm_config *cfg, int n) {
    NG_TRY(ng_rbm_init(be, r->nv, r->nh, &f->rbm));
    f->have_rbm = 1;
    NG_TRY(ng_rbm_set_params(&f->rbm, r->Wf, r->af, r->bf));
    NG_TRY(ng_rbm_trainer_init(&f->tr, &f->rbm, cfg, f->data, n, NULL));
    f->have_tr = 1;
    return NG_OK;
}

/* The model statistic `name` (a view valid until the next gradient), which must be (rows, cols). */
static ng_status statistic(ng_rbm *rbm, const char *name, int rows, int cols, ng_tensor *out) {
    NG_TRY(ng_model_statistic(ng_rbm_model(rbm), name, out));
    if (out->rows != rows || out->cols != cols)
        return ng_error(NG_ERR_INVALID_ARG, "test: statistic %s is (%d, %d), expected (%d, %d)", name,
                        out->rows, out->cols, rows, cols);
    return NG_OK;
}

/* Host copy of the model statistic `name` of shape (rows, cols). */
static ng_status get_statistic(ng_rbm *rbm, const char *name, int rows, int cols, float *host) {
    ng_tensor t;
    NG_TRY(statistic(rbm, name, rows, cols, &t));
    return ng_tensor_get(rbm->be, &t, host);
}

/* A tensor of an optimizer part's state arena (the preconditioner's or the update rule's). */
static ng_status state_tensor(const ng_arena *a, const char *name, size_t count, ng_tensor *out) {
    const ng_tensor *t = ng_arena_find(a, name);
    if (!t) return ng_error(NG_ERR_INVALID_ARG, "test: state arena %s has no tensor %s", a->role, name);
    if (ng_tensor_count(t) != count)
        return ng_error(NG_ERR_INVALID_ARG, "test: state tensor %s.%s has %zu elements, expected %zu",
                        a->role, name, ng_tensor_count(t), count);
    *out = *t;
    return NG_OK;
}

/* The SGD velocity, one flat vector packed like the parameters: [W (nh*nv), a (nv), b (nh)]. The
 * packing is checked against the model's own parameter views, so the slices below are W, a, b. */
static ng_status velocity_tensor(fixture *f, ng_tensor *out) {
    ng_rbm *r = &f->rbm;
    size_t nw = (size_t)r->n_visible * r->n_hidden;
    const float *base = r->base.param_flat.data;
    if (r->W.data != base || r->a.data != base + nw || r->b.data != base + nw + r->n_visible ||
        ng_model_size(&r->base) != nw + r->n_visible + r->n_hidden)
        return ng_error(NG_ERR_INVALID_ARG, "test: the parameters are not packed as [W, a, b]");
    return state_tensor(&f->tr.upd->state, "velocity", nw + r->n_visible + r->n_hidden, out);
}

/* Host copies of everything the gradient left: the statistics and the gradient itself. */
static ng_status fetch_buffers(fixture *f) {
    ng_rbm *r = &f->rbm;
    int nv = r->n_visible, nh = r->n_hidden, m = f->tr.cfg.batch, M = f->tr.cfg.particles;
    NG_TRY(get_statistic(r, "v_data", nv, m, f->vd));
    NG_TRY(get_statistic(r, "h_data", nh, m, f->hd));
    NG_TRY(get_statistic(r, "v_model", nv, M, f->vm));
    NG_TRY(get_statistic(r, "h_model", nh, M, f->hm));
    NG_TRY(get_statistic(r, "h_chain", nh, m > M ? m : M, f->hs));
    NG_TRY(ng_tensor_get(r->be, &r->gW, f->gW));
    NG_TRY(ng_tensor_get(r->be, &r->ga, f->ga));
    return ng_tensor_get(r->be, &r->gb, f->gb);
}

/* Checks shared by every gradient call: vd holds the batch the data stream says it should, hd is
 * p(h | vd), and (gW, ga, gb) is the model-minus-data difference of the buffers (the gradient of
 * the negative log-likelihood). Returns 0 when they hold. `data_vh`, `data_v`, `data_h` receive
 * the data term computed in float64 from vd. */
static int check_gradient_buffers(fixture *f, const small_rbm *r, double *data_vh, double *data_v,
                                  double *data_h) {
    ng_rbm_trainer *tr = &f->tr;
    int nv = r->nv, nh = r->nh, m = tr->cfg.batch, M = tr->cfg.particles, c, p, i, j;
    int first = tr->data.pos - m;
    double maxd = 0.0, bound;
    /* vd: the batch columns of this epoch's permutation, copied bit for bit (intensities kept) */
    NGT_CHECK(first >= 0, "position %d after a batch of %d", tr->data.pos, m);
    NGT_CHECK(tr->data.perm_epoch == tr->data.epoch, "the permutation is epoch %d's, the cursor is in epoch %d",
              tr->data.perm_epoch, tr->data.epoch);
    for (c = 0; c < m; c++) {
        const float *want = f->data + (size_t)tr->data.perm[first + c] * nv;
        NGT_CHECK(memcmp(f->vd + (size_t)c * nv, want, (size_t)nv * sizeof(float)) == 0,
                  "vd column %d is not training example %d (epoch %d, column %d)", c,
                  tr->data.perm[first + c], tr->data.epoch, first + c);
    }
    /* hd = sigmoid(W vd + b): a 6-term float32 dot product and a float32 sigmoid, both within a
     * few ulps, so 1e-6 absolute. */
    memset(data_vh, 0, (size_t)nv * nh * sizeof(double));
    memset(data_v, 0, (size_t)nv * sizeof(double));
    memset(data_h, 0, (size_t)nh * sizeof(double));
    for (c = 0; c < m; c++) {
        const float *v = f->vd + (size_t)c * nv;
        for (j = 0; j < nh; j++) {
            double ph = sigm(hid_pre(r->W, r->b, nv, nh, j, v));
            double d = fabs(ph - (double)f->hd[j + (size_t)c * nh]);
            if (d > maxd) maxd = d;
            data_h[j] += ph / m;
            for (i = 0; i < nv; i++) data_vh[j + i * nh] += ph * v[i] / m;
        }
        for (i = 0; i < nv; i++) data_v[i] += (double)v[i] / m;
    }
    NGT_CHECK(maxd <= 1e-6, "hd differs from p(h | vd) by up to %.3g", maxd);
    /* gW = hm vm^T / M - hd vd^T / m from the float buffers; bound: float32 means of m and M
     * products of values in [0, 1] */
    bound = f32_mean_bound(m) + f32_mean_bound(M);
    for (j = 0; j < nh; j++)
        for (i = 0; i < nv; i++) {
            double ref = 0.0, pos = 0.0;
            for (p = 0; p < M; p++) ref += (double)f->hm[j + (size_t)p * nh] * f->vm[i + (size_t)p * nv];
            for (c = 0; c < m; c++) pos += (double)f->hd[j + (size_t)c * nh] * f->vd[i + (size_t)c * nv];
            ref = ref / M - pos / m;
            NGT_CLOSE(f->gW[j + i * nh], ref, bound, "gW against hm vm'/M - hd vd'/m");
        }
    for (i = 0; i < nv; i++) {
        double ref = 0.0, pos = 0.0;
        for (p = 0; p < M; p++) ref += f->vm[i + (size_t)p * nv];
        for (c = 0; c < m; c++) pos += f->vd[i + (size_t)c * nv];
        NGT_CLOSE(f->ga[i], ref / M - pos / m, bound, "ga against mean(vm) - mean(vd)");
    }
    for (j = 0; j < nh; j++) {
        double ref = 0.0, pos = 0.0;
        for (p = 0; p < M; p++) ref += f->hm[j + (size_t)p * nh];
        for (c = 0; c < m; c++) pos += f->hd[j + (size_t)c * nh];
        NGT_CLOSE(f->gb[j], ref / M - pos / m, bound, "gb against mean(hm) - mean(hd)");
    }
    /* the chain's states are binary and hm = p(h | vm) */
    for (p = 0; p < M; p++) {
        const float *v = f->vm + (size_t)p * nv;
        for (i = 0; i < nv; i++)
            NGT_CHECK(v[i] == 0.0f || v[i] == 1.0f, "vm[%d, %d] = %g is not binary", i, p, v[i]);
        for (j = 0; j < nh; j++)
            NGT_CLOSE(f->hm[j + (size_t)p * nh], sigm(hid_pre(r->W, r->b, nv, nh, j, v)), 1e-6,
                      "hm against p(h | vm)");
    }
    return 0;
}

/* ---- the exact gradient reference checks itself ----------------------------------------------- */

/* The formula <h v'>_data - <h v'>_model (with Rao-Blackwellised hidden units) against central
 * finite differences of the enumerated average log-likelihood, all in float64 (the model's gradient,
 * of the negative log-likelihood, is its negation: the tests below compare against model - data). Step 1e-5: the
 * truncation error is ~h^2 |f'''| ~ 1e-10 and the rounding error ~1e-16 |f| / h ~ 1e-10, so 1e-7
 * is a safe tolerance that a wrong sign or a missing term would exceed by orders of magnitude. */
static int test_exact_gradient_reference(void) {
    small_rbm r;
    moments ex;
    float x[6 * 16];
    double W[MAXV * MAXH], a[MAXV], b[MAXH], g;
    const double h = 1e-5;
    int nv = 6, nh = 4, n = 16, i, j, c;
    small_rbm_random(&r, nv, nh, 11, 1.0f, 0.5f);
    random_binary_data(x, nv, n, 12);
    exact_moments(&r, &ex);
    memcpy(W, r.W, sizeof W);
    memcpy(a, r.a, sizeof a);
    memcpy(b, r.b, sizeof b);
    for (j = 0; j < nh; j++)
        for (i = 0; i < nv; i++) {
            double dat = 0.0, save = W[j + i * nh], lp, lm;
            for (c = 0; c < n; c++)
                dat += sigm(hid_pre(r.W, r.b, nv, nh, j, x + c * nv)) * x[c * nv + i] / n;
            g = dat - ex.vh[j + i * nh];
            W[j + i * nh] = save + h;
            lp = exact_mean_ll(W, a, b, nv, nh, x, n);
            W[j + i * nh] = save - h;
            lm = exact_mean_ll(W, a, b, nv, nh, x, n);
            W[j + i * nh] = save;
            NGT_CLOSE(g, (lp - lm) / (2 * h), 1e-7, "dLL/dW: formula vs finite differences");
        }
    for (i = 0; i < nv; i++) {
        double dat = 0.0, save = a[i], lp, lm;
        for (c = 0; c < n; c++) dat += x[c * nv + i] / (double)n;
        a[i] = save + h;
        lp = exact_mean_ll(W, a, b, nv, nh, x, n);
        a[i] = save - h;
        lm = exact_mean_ll(W, a, b, nv, nh, x, n);
        a[i] = save;
        NGT_CLOSE(dat - ex.v[i], (lp - lm) / (2 * h), 1e-7, "dLL/da: formula vs finite differences");
    }
    for (j = 0; j < nh; j++) {
        double dat = 0.0, save = b[j], lp, lm;
        for (c = 0; c < n; c++) dat += sigm(hid_pre(r.W, r.b, nv, nh, j, x + c * nv)) / n;
        b[j] = save + h;
        lp = exact_mean_ll(W, a, b, nv, nh, x, n);
        b[j] = save - h;
        lm = exact_mean_ll(W, a, b, nv, nh, x, n);
        b[j] = save;
        NGT_CLOSE(dat - ex.h[j], (lp - lm) / (2 * h), 1e-7, "dLL/db: formula vs finite differences");
    }
    return NGT_PASS;
}

/* ---- PCD gradient in expectation -------------------------------------------------------------- */

/* Particles drawn exactly from p(v) (inverse CDF over the enumerated states) are already at
 * equilibrium, and PCD-k keeps them there, so each gradient call's model term is an unbiased
 * estimate of the exact model expectation and the average gradient estimates the exact
 * log-likelihood gradient of the batch (here the whole training set, so the data term is fixed).
 * The standard error comes from per-particle time averages, which are independent across
 * particles; 5 of them plus the float32 bound of the gradient itself is the tolerance. */
static int pcd_gradient_body(ng_backend *be, fixture *f, int k) {
    const int nv = 6, nh = 4, n = 16;
    int M = small_mode(be) ? 256 : 1000, C = small_mode(be) ? 40 : 200, nst = nv * nh + nv + nh;
    small_rbm r;
    moments ex;
    ng_rbm_config cfg;
    double pv[MAXVS], cdf[MAXVS], data_vh[MAXV * MAXH], data_v[MAXV], data_h[MAXH];
    double sum_gW[MAXV * MAXH] = {0}, sum_ga[MAXV] = {0}, sum_gb[MAXH] = {0};
    double sum_data_vh[MAXV * MAXH] = {0}, sum_data_v[MAXV] = {0}, sum_data_h[MAXH] = {0};
    float *part, W1[MAXV * MAXH], a1[MAXV], b1[MAXH];
    ng_tensor particles;
    uint64_t key = ng_rng_stream_key(21, NG_RNG_TEST);
    unsigned nvs = 1u << nv, s;
    int call, p, i, j, worst_idx = -1;
    double worst = 0.0;

    small_rbm_random(&r, nv, nh, 20, 1.0f, 0.5f);
    exact_moments(&r, &ex);
    exact_pv(&r, pv);
    f->data = (float *)malloc((size_t)nv * n * sizeof(float));
    f->acc = (double *)calloc((size_t)M * nst, sizeof(double));
    NGT_CHECK(f->data && f->acc, "out of memory");
    random_binary_data(f->data, nv, n, 22);
    ng_rbm_config_default(&cfg);
    cfg.estimator = NG_RBM_PCD;
    cfg.optimizer = NG_RBM_OPT_SGD;
    cfg.batch = n;
    cfg.particles = M;
    cfg.k = k;
    cfg.seed = 23;
    NGT_OK(fixture_trainer(f, be, &r, &cfg, n));
    NGT_OK(fixture_buffers(f, nv, nh, n, M));

    /* equilibrium particles by exact sampling */
    for (s = 0; s < nvs; s++) cdf[s] = pv[s] + (s ? cdf[s - 1] : 0.0);
    part = f->vm; /* (nv, M) scratch */
    for (p = 0; p < M; p++) {
        double u = ng_rng_uniform(key, 4, (uint64_t)p) * cdf[nvs - 1];
        for (s = 0; s < nvs - 1 && cdf[s] < u; s++) {}
        for (i = 0; i < nv; i++) part[(size_t)p * nv + i] = (float)bit(s, i);
    }
    NGT_OK(statistic(&f->rbm, "particles", nv, M, &particles));
    NGT_OK(ng_tensor_set(be, &particles, part));

    for (call = 0; call < C; call++) {
        NGT_OK(ng_rbm_trainer_gradient(&f->tr));
        NGT_OK(fetch_buffers(f));
        if (check_gradient_buffers(f, &r, data_vh, data_v, data_h)) {
            printf("  (gradient call %d, PCD-%d)\n", call, k);
            return NGT_FAIL;
        }
        for (i = 0; i < nv * nh; i++) sum_gW[i] += f->gW[i], sum_data_vh[i] += data_vh[i];
        for (i = 0; i < nv; i++) sum_ga[i] += f->ga[i], sum_data_v[i] += data_v[i];
        for (j = 0; j < nh; j++) sum_gb[j] += f->gb[j], sum_data_h[j] += data_h[j];
        for (p = 0; p < M; p++) {
            double *acc = f->acc + (size_t)p * nst;
            const float *v = f->vm + (size_t)p * nv, *h = f->hm + (size_t)p * nh;
            for (j = 0; j < nh; j++)
                for (i = 0; i < nv; i++) acc[j + i * nh] += (double)h[j] * v[i] / C;
            for (i = 0; i < nv; i++) acc[nv * nh + i] += (double)v[i] / C;
            for (j = 0; j < nh; j++) acc[nv * nh + nv + j] += (double)h[j] / C;
        }
    }
    /* gradient calls leave the parameters alone */
    NGT_OK(ng_rbm_get_params(&f->rbm, W1, a1, b1));
    NGT_CHECK(memcmp(W1, r.Wf, (size_t)nv * nh * sizeof(float)) == 0 &&
                  memcmp(a1, r.af, (size_t)nv * sizeof(float)) == 0 &&
                  memcmp(b1, r.bf, (size_t)nh * sizeof(float)) == 0,
              "ng_rbm_trainer_gradient changed the parameters");

    /* model statistics and the average gradient against the exact values (the gradient of the
     * negative log-likelihood: exact model term minus the data term) */
    for (i = 0; i < nst; i++) {
        double mean, se, exact, g_exact, g_avg, tol, z;
        mean_se(f->acc + i, M, (size_t)nst, &mean, &se);
        if (i < nv * nh) {
            exact = ex.vh[i];
            g_exact = exact - sum_data_vh[i] / C;
            g_avg = sum_gW[i] / C;
        } else if (i < nv * nh + nv) {
            exact = ex.v[i - nv * nh];
            g_exact = exact - sum_data_v[i - nv * nh] / C;
            g_avg = sum_ga[i - nv * nh] / C;
        } else {
            exact = ex.h[i - nv * nh - nv];
            g_exact = exact - sum_data_h[i - nv * nh - nv] / C;
            g_avg = sum_gb[i - nv * nh - nv] / C;
        }
        NGT_CHECK(se > 0.0, "statistic %d has zero spread over particles: the chains do not move", i);
        z = fabs(mean - exact) / se;
        if (z > worst) worst = z, worst_idx = i;
        NGT_CHECK(fabs(mean - exact) <= 5.0 * se,
                  "PCD-%d model statistic %d: sample %.6f vs exact %.6f, %.2f standard errors (se %.2g)",
                  k, i, mean, exact, z, se);
        tol = 5.0 * se + f32_mean_bound(n) + f32_mean_bound(M);
        NGT_CHECK(fabs(g_avg - g_exact) <= tol,
                  "PCD-%d average gradient %d: %.6f vs exact negative log-likelihood gradient %.6f (tol %.3g)",
                  k, i, g_avg, g_exact, tol);
    }
    printf("  PCD-%d: %d particles x %d calls, largest deviation %.2f standard errors (statistic %d)\n",
           k, M, C, worst, worst_idx);
    return NGT_PASS;
}

/* ---- CD-k gradient in expectation ------------------------------------------------------------- */

/* CD-k is biased, so its reference is its own exact expectation: the chains start at the batch
 * and after k sweeps are distributed as e_{v0} T^k, with T the exact transition matrix. The batch
 * is the whole (binary) training set, so every call has the same expectation and the calls are
 * independent (each restarts from the data with fresh random numbers): the standard error is the
 * spread of the per-call values over sqrt(calls). Also shows the CD bias is real (the exact CD-k
 * expectation differs from the exact model expectation) so the test could tell the two apart. */
static int cd_gradient_body(ng_backend *be, fixture *f, int k) {
    const int nv = 6, nh = 4, n = 32;
    int C = small_mode(be) ? 500 : 3000, nst = nv * nh + nv + nh, call, c, i, j, kk;
    unsigned nvs = 1u << nv, s;
    small_rbm r;
    moments ex;
    ng_rbm_config cfg;
    double *T, q[MAXVS], qsum[MAXVS] = {0}, ref[MAXV * MAXH + MAXV + MAXH] = {0};
    double data_vh[MAXV * MAXH], data_v[MAXV], data_h[MAXH], bias = 0.0, bias_z = 0.0, worst = 0.0;

    small_rbm_random(&r, nv, nh, 30, 1.5f, 0.5f);
    exact_moments(&r, &ex);
    f->data = (float *)malloc((size_t)nv * n * sizeof(float));
    f->acc = (double *)calloc((size_t)C * nst, sizeof(double));
    T = (double *)malloc((size_t)nvs * nvs * sizeof(double));
    if (!f->data || !f->acc || !T) {
        free(T);
        NGT_CHECK(0, "out of memory");
    }
    random_binary_data(f->data, nv, n, 31);
    exact_transition(&r, T);
    /* the batch's distribution after k sweeps, averaged over its columns */
    for (c = 0; c < n; c++) {
        memset(q, 0, sizeof q);
        q[state_of(f->data + (size_t)c * nv, nv)] = 1.0;
        for (kk = 0; kk < k; kk++) apply_transition(T, nvs, q);
        for (s = 0; s < nvs; s++) qsum[s] += q[s] / n;
    }
    free(T);
    for (s = 0; s < nvs; s++) {
        float v[MAXV];
        for (i = 0; i < nv; i++) v[i] = (float)bit(s, i);
        for (j = 0; j < nh; j++) {
            double ph = sigm(hid_pre(r.W, r.b, nv, nh, j, v));
            for (i = 0; i < nv; i++) ref[j + i * nh] += qsum[s] * ph * v[i];
            ref[nv * nh + nv + j] += qsum[s] * ph;
        }
        for (i = 0; i < nv; i++) ref[nv * nh + i] += qsum[s] * v[i];
    }

    ng_rbm_config_default(&cfg);
    cfg.estimator = NG_RBM_CD;
    cfg.optimizer = NG_RBM_OPT_SGD;
    cfg.batch = n;
    cfg.k = k;
    cfg.seed = 32;
    NGT_OK(fixture_trainer(f, be, &r, &cfg, n));
    NGT_CHECK(f->tr.cfg.particles == n, "CD should run one chain per batch column, has %d",
              f->tr.cfg.particles);
    NGT_OK(fixture_buffers(f, nv, nh, n, n));
    for (call = 0; call < C; call++) {
        double *acc = f->acc + (size_t)call * nst;
        NGT_OK(ng_rbm_trainer_gradient(&f->tr));
        NGT_OK(fetch_buffers(f));
        if (check_gradient_buffers(f, &r, data_vh, data_v, data_h)) {
            printf("  (gradient call %d, CD-%d)\n", call, k);
            return NGT_FAIL;
        }
        /* the model term of this call, recovered from the gradient (model - data) and the exact
         * data term */
        for (i = 0; i < nv * nh; i++) acc[i] = data_vh[i] + f->gW[i];
        for (i = 0; i < nv; i++) acc[nv * nh + i] = data_v[i] + f->ga[i];
        for (j = 0; j < nh; j++) acc[nv * nh + nv + j] = data_h[j] + f->gb[j];
    }
    for (i = 0; i < nst; i++) {
        double mean, se, tol, model = i < nv * nh ? ex.vh[i] : i < nv * nh + nv ? ex.v[i - nv * nh]
                                                                                : ex.h[i - nv * nh - nv];
        mean_se(f->acc + i, C, (size_t)nst, &mean, &se);
        NGT_CHECK(se > 0.0, "CD-%d model term %d does not vary between calls", k, i);
        tol = 5.0 * se + f32_mean_bound(n) * 2;
        bias = fmax(bias, fabs(ref[i] - model));
        bias_z = fmax(bias_z, fabs(ref[i] - model) / se);
        if (fabs(mean - ref[i]) / se > worst) worst = fabs(mean - ref[i]) / se;
        NGT_CHECK(fabs(mean - ref[i]) <= tol,
                  "CD-%d model term %d: average %.6f vs exact CD-%d expectation %.6f (tol %.3g, se %.2g)",
                  k, i, mean, k, ref[i], tol, se);
    }
    printf("  CD-%d: %d calls x %d chains, largest deviation %.2f standard errors; CD bias vs the exact "
           "model term up to %.3f (%.0f standard errors)\n", k, C, n, worst, bias, bias_z);
    NGT_CHECK(bias_z > 10.0, "test RBM too easy: the CD-%d bias (%.3g, %.1f standard errors) is too small "
              "to tell the CD expectation from the model expectation", k, bias, bias_z);
    return NGT_PASS;
}

/* ---- PCD chains reproduce the exact marginals ------------------------------------------------- */

/* The trainer's own particles (Bernoulli draws from the data mean) are run by repeated gradient
 * calls. The burn-in is justified exactly: the particles' initial distribution is pushed through
 * the exact transition matrix and its total-variation distance from p(v) after the burn-in must be
 * negligible. Then the raw joint samples (vm, hs) of the chain's last sweep, which are draws from
 * p(v, h) at equilibrium, give E[v], E[h], E[v h'] by per-particle time averages. */
static int pcd_marginals_body(ng_backend *be, fixture *f) {
    const int nv = 6, nh = 4, n = 8, k = 1;
    int M = small_mode(be) ? 200 : 500, C = small_mode(be) ? 60 : 300, B = 100;
    int nst = nv * nh + nv + nh, call, p, i, j, c;
    unsigned nvs = 1u << nv, s;
    small_rbm r;
    moments ex;
    ng_rbm_config cfg;
    double pv[MAXVS], q[MAXVS], *T, tv = 0.0, worst = 0.0;
    float mean[MAXV] = {0};

    small_rbm_random(&r, nv, nh, 40, 1.5f, 0.5f);
    exact_moments(&r, &ex);
    exact_pv(&r, pv);
    f->data = (float *)malloc((size_t)nv * n * sizeof(float));
    f->acc = (double *)calloc((size_t)M * nst, sizeof(double));
    T = (double *)malloc((size_t)nvs * nvs * sizeof(double));
    if (!f->data || !f->acc || !T) {
        free(T);
        NGT_CHECK(0, "out of memory");
    }
    random_binary_data(f->data, nv, n, 41);
    for (c = 0; c < n; c++)
        for (i = 0; i < nv; i++) mean[i] += f->data[(size_t)c * nv + i] / (float)n;
    exact_transition(&r, T);
    for (s = 0; s < nvs; s++) {
        q[s] = 1.0;
        for (i = 0; i < nv; i++) q[s] *= bit(s, i) ? mean[i] : 1.0 - mean[i];
    }
    for (c = 0; c < B * k; c++) apply_transition(T, nvs, q);
    free(T);
    for (s = 0; s < nvs; s++) tv += 0.5 * fabs(q[s] - pv[s]);
    NGT_CHECK(tv < 1e-6, "burn-in of %d sweeps leaves total-variation distance %.3g from p(v)", B * k, tv);

    ng_rbm_config_default(&cfg);
    cfg.estimator = NG_RBM_PCD;
    cfg.optimizer = NG_RBM_OPT_SGD;
    cfg.batch = n;
    cfg.particles = M;
    cfg.k = k;
    cfg.seed = 42;
    NGT_OK(fixture_trainer(f, be, &r, &cfg, n));
    NGT_OK(fixture_buffers(f, nv, nh, n, M));
    for (call = 0; call < B; call++) NGT_OK(ng_rbm_trainer_gradient(&f->tr));
    for (call = 0; call < C; call++) {
        NGT_OK(ng_rbm_trainer_gradient(&f->tr));
        NGT_OK(get_statistic(&f->rbm, "v_model", nv, M, f->vm));
        NGT_OK(get_statistic(&f->rbm, "h_chain", nh, M > n ? M : n, f->hs));
        for (p = 0; p < M; p++) {
            double *acc = f->acc + (size_t)p * nst;
            const float *v = f->vm + (size_t)p * nv, *h = f->hs + (size_t)p * nh;
            for (j = 0; j < nh; j++) {
                NGT_CHECK(h[j] == 0.0f || h[j] == 1.0f, "hidden sample %g is not binary", h[j]);
                for (i = 0; i < nv; i++) acc[j + i * nh] += (double)h[j] * v[i] / C;
            }
            for (i = 0; i < nv; i++) acc[nv * nh + i] += (double)v[i] / C;
            for (j = 0; j < nh; j++) acc[nv * nh + nv + j] += (double)h[j] / C;
        }
    }
    for (i = 0; i < nst; i++) {
        double m_, se, exact = i < nv * nh ? ex.vh[i] : i < nv * nh + nv ? ex.v[i - nv * nh]
                                                                          : ex.h[i - nv * nh - nv];
        const char *what = i < nv * nh ? "E[h_j v_i]" : i < nv * nh + nv ? "E[v_i]" : "E[h_j]";
        mean_se(f->acc + i, M, (size_t)nst, &m_, &se);
        NGT_CHECK(se > 0.0, "%s (statistic %d) has zero spread over particles", what, i);
        if (fabs(m_ - exact) / se > worst) worst = fabs(m_ - exact) / se;
        NGT_CHECK(fabs(m_ - exact) <= 5.0 * se + 2.0 * tv,
                  "%s (statistic %d): chains give %.6f, exact %.6f: %.2f standard errors (se %.2g)", what,
                  i, m_, exact, fabs(m_ - exact) / se, se);
    }
    printf("  %d particles x %d sweeps after %d of burn-in (TV %.2g): largest deviation %.2f standard errors\n",
           M, C, B, tv, worst);
    return NGT_PASS;
}

/* ---- update rules ----------------------------------------------------------------------------- */

/* Centering (FANG section 5.1, eq. 17): the trainer's update (centering preconditioner + SGD) must
 * equal plain SGD on the centered parameters a~ = a + W' mu_h, b~ = b + W mu_v, W~ = W with the
 * centered statistics
 *   dW~ = <(h - mu_h)(v - mu_v)'>_data - <(h - mu_h)(v - mu_v)'>_model, da~ = da, db~ = db,
 * (an ascent step theta~ += lr d~, i.e. a descent step on the negative log-likelihood) mapped back
 * with the same offsets. The offsets it uses are the ones after the preconditioner's moving-average
 * update (rate nu) with this batch's data means, which the test recomputes from vd and hd. The
 * centered statistics are computed here directly from the hd/vd/hm/vm statistics in float64, not by
 * the preconditioner's algebraic rearrangement. Tolerance 2e-5: lr (0.5) times the float32 bound of the
 * gradient entries (~(m + M) u = 7e-6 each, for the statistics and their offset corrections) plus
 * a few ulps of the O(1) parameters. The test also confirms that both the stale offsets and the
 * uncentered update would be rejected, so it discriminates. */
static int centering_body(ng_backend *be, fixture *f) {
    const int nv = 6, nh = 4, n = 20, m = 10, M = 50, steps = 3;
    const float nu = 0.25f;
    small_rbm r;
    ng_rbm_config cfg;
    uint64_t key = ng_rng_stream_key(50, NG_RNG_TEST);
    float muv0[MAXV], muh0[MAXH], W0[MAXV * MAXH], a0[MAXV], b0[MAXH], W1[MAXV * MAXH], a1[MAXV],
        b1[MAXH], muv1[MAXV], muh1[MAXH];
    int step, i, j, c, p;
    double stale_gap = 0.0, plain_gap = 0.0;
    ng_tensor mu_v, mu_h;

    small_rbm_random(&r, nv, nh, 51, 0.8f, 0.5f);
    f->data = (float *)malloc((size_t)nv * n * sizeof(float));
    NGT_CHECK(f->data != NULL, "out of memory");
    for (i = 0; i < nv * n; i++) f->data[i] = ng_rng_uniform(key, 5, (uint64_t)i); /* intensities */
    f->data[3] = 0.0f;
    f->data[4] = 1.0f;
    ng_rbm_config_default(&cfg);
    cfg.estimator = NG_RBM_PCD;
    cfg.optimizer = NG_RBM_OPT_CENTERING;
    cfg.batch = m;
    cfg.particles = M;
    cfg.k = 1;
    cfg.lr = 0.5f;
    cfg.lr_gamma = 10.0f;
    cfg.momentum = 0.0f;
    cfg.weight_decay = 0.0f;
    cfg.center_rate = nu;
    cfg.seed = 52;
    NGT_OK(fixture_trainer(f, be, &r, &cfg, n));
    NGT_OK(fixture_buffers(f, nv, nh, m, M));
    for (i = 0; i < nv; i++) muv0[i] = 0.1f + 0.8f * ng_rng_uniform(key, 6, (uint64_t)i);
    for (j = 0; j < nh; j++) muh0[j] = 0.1f + 0.8f * ng_rng_uniform(key, 7, (uint64_t)j);
    NGT_OK(state_tensor(&f->tr.pc->state, "mu_v", (size_t)nv, &mu_v));
    NGT_OK(state_tensor(&f->tr.pc->state, "mu_h", (size_t)nh, &mu_h));
    NGT_OK(ng_tensor_set(be, &mu_v, muv0));
    NGT_OK(ng_tensor_set(be, &mu_h, muh0));

    for (step = 0; step < steps; step++) {
        double lr = ng_rbm_trainer_lr(&f->tr), muv[MAXV], muh[MAXH], mvd[MAXV] = {0}, mhd[MAXH] = {0};
        double dWc[MAXV * MAXH], dac[MAXV], dbc[MAXH], Wn[MAXV * MAXH], an[MAXV], bn[MAXH];
        double want_lr = 0.5 * 10.0 / (10.0 + step);
        NGT_CLOSE(lr, want_lr, 1e-7 * want_lr, "learning-rate schedule alpha gamma / (gamma + t)");
        NGT_OK(ng_rbm_get_params(&f->rbm, W0, a0, b0));
        NGT_OK(ng_tensor_get(be, &mu_v, muv0));
        NGT_OK(ng_tensor_get(be, &mu_h, muh0));
        NGT_OK(ng_rbm_trainer_step(&f->tr, NULL));
        NGT_OK(get_statistic(&f->rbm, "v_data", nv, m, f->vd));
        NGT_OK(get_statistic(&f->rbm, "h_data", nh, m, f->hd));
        NGT_OK(get_statistic(&f->rbm, "v_model", nv, M, f->vm));
        NGT_OK(get_statistic(&f->rbm, "h_model", nh, M, f->hm));
        NGT_OK(ng_rbm_get_params(&f->rbm, W1, a1, b1));
        NGT_OK(ng_tensor_get(be, &mu_v, muv1));
        NGT_OK(ng_tensor_get(be, &mu_h, muh1));
        /* the offsets the update used: moving average with this batch's data means */
        for (c = 0; c < m; c++) {
            for (i = 0; i < nv; i++) mvd[i] += (double)f->vd[i + (size_t)c * nv] / m;
            for (j = 0; j < nh; j++) mhd[j] += (double)f->hd[j + (size_t)c * nh] / m;
        }
        for (i = 0; i < nv; i++) muv[i] = nu * mvd[i] + (1.0 - nu) * muv0[i];
        for (j = 0; j < nh; j++) muh[j] = nu * mhd[j] + (1.0 - nu) * muh0[j];
        for (i = 0; i < nv; i++) NGT_CLOSE(muv1[i], muv[i], 1e-6, "mu_v moving average");
        for (j = 0; j < nh; j++) NGT_CLOSE(muh1[j], muh[j], 1e-6, "mu_h moving average");
        /* the reference, for the offsets (muv, muh), then for the stale ones and for none */
        {
            int variant;
            for (variant = 0; variant < 3; variant++) {
                double ov[MAXV], oh[MAXH], dmax = 0.0;
                for (i = 0; i < nv; i++) ov[i] = variant == 0 ? muv[i] : variant == 1 ? muv0[i] : 0.0;
                for (j = 0; j < nh; j++) oh[j] = variant == 0 ? muh[j] : variant == 1 ? muh0[j] : 0.0;
                for (j = 0; j < nh; j++)
                    for (i = 0; i < nv; i++) {
                        double pos = 0.0, neg = 0.0;
                        for (c = 0; c < m; c++)
                            pos += ((double)f->hd[j + (size_t)c * nh] - oh[j]) *
                                   ((double)f->vd[i + (size_t)c * nv] - ov[i]);
                        for (p = 0; p < M; p++)
                            neg += ((double)f->hm[j + (size_t)p * nh] - oh[j]) *
                                   ((double)f->vm[i + (size_t)p * nv] - ov[i]);
                        dWc[j + i * nh] = pos / m - neg / M;
                    }
                for (i = 0; i < nv; i++) {
                    double pos = 0.0, neg = 0.0;
                    for (c = 0; c < m; c++) pos += f->vd[i + (size_t)c * nv];
                    for (p = 0; p < M; p++) neg += f->vm[i + (size_t)p * nv];
                    dac[i] = pos / m - neg / M;
                }
                for (j = 0; j < nh; j++) {
                    double pos = 0.0, neg = 0.0;
                    for (c = 0; c < m; c++) pos += f->hd[j + (size_t)c * nh];
                    for (p = 0; p < M; p++) neg += f->hm[j + (size_t)p * nh];
                    dbc[j] = pos / m - neg / M;
                }
                /* centered parameters, one SGD step, back to (W, a, b) */
                for (i = 0; i < nv * nh; i++) Wn[i] = (double)W0[i] + lr * dWc[i];
                for (i = 0; i < nv; i++) {
                    double at = a0[i];
                    for (j = 0; j < nh; j++) at += (double)W0[j + i * nh] * oh[j];
                    at += lr * dac[i];
                    for (j = 0; j < nh; j++) at -= Wn[j + i * nh] * oh[j];
                    an[i] = at;
                }
                for (j = 0; j < nh; j++) {
                    double bt = b0[j];
                    for (i = 0; i < nv; i++) bt += (double)W0[j + i * nh] * ov[i];
                    bt += lr * dbc[j];
                    for (i = 0; i < nv; i++) bt -= Wn[j + i * nh] * ov[i];
                    bn[j] = bt;
                }
                for (i = 0; i < nv * nh; i++) dmax = fmax(dmax, fabs(W1[i] - Wn[i]));
                for (i = 0; i < nv; i++) dmax = fmax(dmax, fabs(a1[i] - an[i]));
                for (j = 0; j < nh; j++) dmax = fmax(dmax, fabs(b1[j] - bn[j]));
                if (variant == 0) {
                    for (i = 0; i < nv * nh; i++) NGT_CLOSE(W1[i], Wn[i], 2e-5, "W after a centered step");
                    for (i = 0; i < nv; i++) NGT_CLOSE(a1[i], an[i], 2e-5, "a after a centered step");
                    for (j = 0; j < nh; j++) NGT_CLOSE(b1[j], bn[j], 2e-5, "b after a centered step");
                } else if (variant == 1) {
                    stale_gap = fmax(stale_gap, dmax);
                } else {
                    plain_gap = fmax(plain_gap, dmax);
                }
            }
        }
    }
    printf("  centered update matches; the stale-offset update would differ by %.3g, plain SGD by %.3g\n",
           stale_gap, plain_gap);
    NGT_CHECK(stale_gap > 1e-3 && plain_gap > 1e-3,
              "the check does not discriminate (stale offsets %.3g, no centering %.3g)", stale_gap, plain_gap);
    return NGT_PASS;
}

/* Plain SGD with heavy-ball momentum, weight decay on W and the schedule alpha gamma / (gamma + t)
 * (identity preconditioner + the SGD update rule):
 *   v = mu v - lr_t (g + wd [W]),  theta += v,
 * with g = model - data, the gradient of the negative log-likelihood, recomputed in float64 from
 * the step's statistics, and v the update rule's velocity (one vector packed like the parameters).
 * Tolerance 1e-5: lr times the float32 gradient bound plus ulps of the O(1) velocities and
 * parameters. */
static int sgd_body(ng_backend *be, fixture *f) {
    const int nv = 6, nh = 4, n = 24, m = 8, M = 40, steps = 4;
    const float mom = 0.6f, wd = 0.05f;
    small_rbm r;
    ng_rbm_config cfg;
    float W0[MAXV * MAXH], a0[MAXV], b0[MAXH], W1[MAXV * MAXH], a1[MAXV], b1[MAXH];
    float vel0[MAXV * MAXH + MAXV + MAXH], vel1[MAXV * MAXH + MAXV + MAXH];
    const float *vW0 = vel0, *va0 = vel0 + nv * nh, *vb0 = vel0 + nv * nh + nv;
    const float *vW1 = vel1, *va1 = vel1 + nv * nh, *vb1 = vel1 + nv * nh + nv;
    ng_tensor vel;
    int step, i, j, c, p;

    small_rbm_random(&r, nv, nh, 60, 0.8f, 0.5f);
    f->data = (float *)malloc((size_t)nv * n * sizeof(float));
    NGT_CHECK(f->data != NULL, "out of memory");
    random_binary_data(f->data, nv, n, 61);
    ng_rbm_config_default(&cfg);
    cfg.estimator = NG_RBM_PCD;
    cfg.optimizer = NG_RBM_OPT_SGD;
    cfg.batch = m;
    cfg.particles = M;
    cfg.lr = 0.3f;
    cfg.lr_gamma = 5.0f;
    cfg.momentum = mom;
    cfg.weight_decay = wd;
    cfg.seed = 62;
    NGT_OK(fixture_trainer(f, be, &r, &cfg, n));
    NGT_OK(fixture_buffers(f, nv, nh, m, M));
    NGT_OK(velocity_tensor(f, &vel));
    for (step = 0; step < steps; step++) {
        double lr = ng_rbm_trainer_lr(&f->tr), want_lr = 0.3 * 5.0 / (5.0 + step);
        NGT_CLOSE(lr, want_lr, 1e-7 * want_lr, "learning-rate schedule");
        NGT_OK(ng_rbm_get_params(&f->rbm, W0, a0, b0));
        NGT_OK(ng_tensor_get(be, &vel, vel0));
        NGT_OK(ng_rbm_trainer_step(&f->tr, NULL));
        NGT_OK(get_statistic(&f->rbm, "v_data", nv, m, f->vd));
        NGT_OK(get_statistic(&f->rbm, "h_data", nh, m, f->hd));
        NGT_OK(get_statistic(&f->rbm, "v_model", nv, M, f->vm));
        NGT_OK(get_statistic(&f->rbm, "h_model", nh, M, f->hm));
        NGT_OK(ng_rbm_get_params(&f->rbm, W1, a1, b1));
        NGT_OK(ng_tensor_get(be, &vel, vel1));
        for (j = 0; j < nh; j++)
            for (i = 0; i < nv; i++) {
                double pos = 0.0, neg = 0.0, g, v;
                for (c = 0; c < m; c++) pos += (double)f->hd[j + (size_t)c * nh] * f->vd[i + (size_t)c * nv];
                for (p = 0; p < M; p++) neg += (double)f->hm[j + (size_t)p * nh] * f->vm[i + (size_t)p * nv];
                g = neg / M - pos / m + wd * (double)W0[j + i * nh];
                v = mom * (double)vW0[j + i * nh] - lr * g;
                NGT_CLOSE(vW1[j + i * nh], v, 1e-5, "velocity of W");
                NGT_CLOSE(W1[j + i * nh], (double)W0[j + i * nh] + v, 1e-5, "W after an SGD step");
            }
        for (i = 0; i < nv; i++) {
            double pos = 0.0, neg = 0.0, v;
            for (c = 0; c < m; c++) pos += f->vd[i + (size_t)c * nv];
            for (p = 0; p < M; p++) neg += f->vm[i + (size_t)p * nv];
            v = mom * (double)va0[i] - lr * (neg / M - pos / m);
            NGT_CLOSE(va1[i], v, 1e-5, "velocity of a (no weight decay on biases)");
            NGT_CLOSE(a1[i], (double)a0[i] + v, 1e-5, "a after an SGD step");
        }
        for (j = 0; j < nh; j++) {
            double pos = 0.0, neg = 0.0, v;
            for (c = 0; c < m; c++) pos += f->hd[j + (size_t)c * nh];
            for (p = 0; p < M; p++) neg += f->hm[j + (size_t)p * nh];
            v = mom * (double)vb0[j] - lr * (neg / M - pos / m);
            NGT_CLOSE(vb1[j], v, 1e-5, "velocity of b");
            NGT_CLOSE(b1[j], (double)b0[j] + v, 1e-5, "b after an SGD step");
        }
        NGT_CHECK(f->tr.tr.t == (uint64_t)step + 1, "update counter %llu after %d steps",
                  (unsigned long long)f->tr.tr.t, step + 1);
    }
    return NGT_PASS;
}

/* ---- determinism ------------------------------------------------------------------------------ */

typedef struct snapshot {
    float *buf;
    size_t n;
} snapshot;

/* Append a device tensor to a growing host buffer. */
static ng_status snapshot_add(ng_backend *be, const ng_tensor *t, snapshot *s) {
    size_t n = ng_tensor_count(t);
    float *buf = (float *)realloc(s->buf, (s->n + n) * sizeof(float));
    if (!buf) return ng_error(NG_ERR_OOM, "test: out of memory");
    s->buf = buf;
    NG_TRY(ng_tensor_get(be, t, s->buf + s->n));
    s->n += n;
    return NG_OK;
}

/* All parameters and training state, concatenated: the parameters (W, a, b as one packed vector),
 * the persistent particles, every tensor of the update rule's state (the SGD velocity) and of the
 * preconditioner's state (the centering offsets mu_v, mu_h; none for the identity). */
static ng_status take_snapshot(ng_rbm_trainer *rt, snapshot *s) {
    ng_backend *be = rt->rbm->be;
    ng_tensor part;
    int i;
    s->buf = NULL;
    s->n = 0;
    NG_TRY(snapshot_add(be, &rt->rbm->base.param_flat, s));
    NG_TRY(ng_model_statistic(ng_rbm_model(rt->rbm), "particles", &part));
    NG_TRY(snapshot_add(be, &part, s));
    for (i = 0; i < ng_arena_count(&rt->upd->state); i++)
        NG_TRY(snapshot_add(be, ng_arena_view(&rt->upd->state, i), s));
    for (i = 0; i < ng_arena_count(&rt->pc->state); i++)
        NG_TRY(snapshot_add(be, ng_arena_view(&rt->pc->state, i), s));
    return NG_OK;
}

/* The value of the logged column `name` of a row of ng_rbm_trainer_step (NaN when absent). */
static double row_value(const ng_rbm_trainer *rt, const double *row, const char *name) {
    int i;
    for (i = 0; i < rt->tr.n_columns; i++)
        if (strcmp(rt->tr.columns[i], name) == 0) return row[i];
    return NAN;
}

/* Train a fresh 16 x 10 RBM on bars and stripes for `steps` updates and snapshot it. Every
 * stats_every-th step asks for the logged columns, whose trainer-computed values (recon_error,
 * grad_norm, update_norm) must then be present and finite. */
static ng_status train_snapshot(ng_backend *be, const ng_rbm_config *cfg, int steps, int stats_every,
                                snapshot *out) {
    static const char *const logged[] = {"recon_error", "grad_norm", "update_norm"};
    ng_dataset ds;
    ng_rbm rbm;
    ng_rbm_trainer tr;
    ng_status s;
    int t;
    memset(out, 0, sizeof *out);
    NG_TRY(ng_dataset_make_bars_stripes(4, 0, &ds));
    s = ng_rbm_init(be, ds.dim, 10, &rbm);
    if (s != NG_OK) {
        ng_dataset_free(&ds);
        return s;
    }
    s = ng_rbm_init_params(&rbm, cfg->seed, 0.1f, NULL);
    if (s == NG_OK) s = ng_rbm_trainer_init(&tr, &rbm, cfg, ds.x, ds.n, NULL);
    if (s == NG_OK) {
        for (t = 0; s == NG_OK && t < steps; t++) {
            double row[NG_TRAIN_MAX_COLUMNS];
            int want = stats_every && t % stats_every == 0, c, k;
            for (c = 0; c < NG_TRAIN_MAX_COLUMNS; c++) row[c] = NAN;
            s = ng_rbm_trainer_step(&tr, want ? row : NULL);
            for (k = 0; s == NG_OK && want && k < 3; k++)
                if (!isfinite(row_value(&tr, row, logged[k])))
                    s = ng_error(NG_ERR_NUMERIC, "test: step %d logged %s = %g", t, logged[k],
                                 row_value(&tr, row, logged[k]));
        }
        if (s == NG_OK) s = take_snapshot(&tr, out);
        ng_rbm_trainer_free(&tr);
    }
    ng_rbm_free(&rbm);
    ng_dataset_free(&ds);
    return s;
}

/* Same seed -> bit-identical parameters, particles and optimizer state after N steps (including
 * epoch changes and, with binarisation, the binarisation stream); asking for statistics on some
 * steps must not change the trajectory; a different seed must give a different one. */
static int determinism_body(ng_backend *be, fixture *f) {
    int variant;
    (void)f;
    for (variant = 0; variant < 2; variant++) {
        ng_rbm_config cfg;
        snapshot s1, s2, s3, s4;
        int same12, same13, same14, steps = small_mode(be) ? 12 : 40;
        ng_rbm_config_default(&cfg);
        cfg.batch = 12;
        cfg.particles = 20;
        cfg.k = 2;
        cfg.lr = 0.05f;
        cfg.momentum = 0.5f;
        cfg.seed = 77;
        cfg.estimator = variant == 0 ? NG_RBM_PCD : NG_RBM_CD;
        cfg.optimizer = variant == 0 ? NG_RBM_OPT_CENTERING : NG_RBM_OPT_SGD;
        cfg.binarize_train = variant;
        NGT_OK(train_snapshot(be, &cfg, steps, 0, &s1));
        NGT_OK(train_snapshot(be, &cfg, steps, 3, &s2));
        NGT_OK(train_snapshot(be, &cfg, steps, 0, &s3));
        cfg.seed = 78;
        NGT_OK(train_snapshot(be, &cfg, steps, 0, &s4));
        same12 = s1.n == s2.n && memcmp(s1.buf, s2.buf, s1.n * sizeof(float)) == 0;
        same13 = s1.n == s3.n && memcmp(s1.buf, s3.buf, s1.n * sizeof(float)) == 0;
        same14 = s1.n == s4.n && memcmp(s1.buf, s4.buf, s1.n * sizeof(float)) == 0;
        if (!same13) ngt_compare("same seed, second run", s3.buf, s1.buf, s1.n, 0.0, 0.0);
        if (!same12) ngt_compare("same seed, with statistics", s2.buf, s1.buf, s1.n, 0.0, 0.0);
        free(s1.buf);
        free(s2.buf);
        free(s3.buf);
        free(s4.buf);
        NGT_CHECK(same13, "%s: two runs with seed 77 differ", variant ? "CD + binarize" : "PCD centering");
        NGT_CHECK(same12, "%s: requesting statistics changed the trajectory", variant ? "CD" : "PCD");
        NGT_CHECK(!same14, "%s: seeds 77 and 78 gave identical states", variant ? "CD" : "PCD");
    }
    return NGT_PASS;
}

/* --tf32: the Gibbs phases' gemms in TF32 (emulated: operands rounded to a 10-bit mantissa). On
 * the CPU the opt-in changes nothing, bit for bit; on CUDA the trajectory differs from FP32 but,
 * over 6 CD-1 SGD updates at lr 0.05 with batch 12, by at most 0.05 in any parameter (a flipped
 * hidden or visible sample moves one weight by lr / batch = 0.004; the bound allows a dozen flips
 * per entry, where a wrong sign or a broken scope would move weights by O(lr) everywhere). */
static int tf32_body(ng_backend *be, fixture *f) {
    ng_rbm_config cfg;
    snapshot s1, s2;
    size_t i;
    double maxdiff = 0.0;
    int same;
    (void)f;
    ng_rbm_config_default(&cfg);
    cfg.batch = 12;
    cfg.particles = 12;
    cfg.k = 1;
    cfg.lr = 0.05f;
    cfg.seed = 91;
    cfg.estimator = NG_RBM_CD;
    cfg.optimizer = NG_RBM_OPT_SGD;
    NGT_OK(train_snapshot(be, &cfg, 6, 0, &s1));
    ng_backend_allow_tf32(be, 1);
    {
        ng_status st = train_snapshot(be, &cfg, 6, 0, &s2);
        ng_backend_allow_tf32(be, 0);
        NGT_OK(st);
    }
    NGT_CHECK(s1.n == s2.n && s1.n > 0, "snapshot sizes %zu vs %zu", s1.n, s2.n);
    same = memcmp(s1.buf, s2.buf, s1.n * sizeof(float)) == 0;
    for (i = 0; i < s1.n; i++)
        if (isfinite(s1.buf[i]) && isfinite(s2.buf[i]))
            maxdiff = fmax(maxdiff, fabs((double)s1.buf[i] - s2.buf[i]));
    free(s1.buf);
    free(s2.buf);
    if (!be->iface->set_tf32) {
        NGT_CHECK(same, "--tf32 changed a run on the %s backend", be->iface->name);
    } else {
        NGT_CHECK(!same, "--tf32 left the CUDA run bit-identical (the scope did not reach the gemms)");
        NGT_CHECK(maxdiff <= 0.05, "--tf32 moved a parameter by %g > 0.05", maxdiff);
        printf("  tf32 vs fp32: max parameter difference %.3g after 6 updates\n", maxdiff);
    }
    return NGT_PASS;
}

/* ---- training sanity -------------------------------------------------------------------------- */

/* Centering PCD on the 30 bars-and-stripes patterns (16 visible, 12 hidden) must raise the exact
 * average log-likelihood from about -16 log 2 = -11.1 (near-uniform start) towards the optimum
 * log(1/30) = -3.40, in 1000 updates (batch 10, 100 particles, lr 0.2 * 200 / (200 + t), momentum
 * 0.5; about -4.3 is reached, and -4.0 .. -4.9 over other seeds). The margin asserted (+4 nats) is
 * far below that and far above what a broken sign or a non-moving chain would give. */
static int training_body(ng_backend *be, fixture *f) {
    ng_dataset ds;
    ng_rbm_config cfg;
    double lz0, ll0, lz1, ll1;
    int t, steps = 1000;
    float *mean;
    NGT_OK(ng_dataset_make_bars_stripes(4, 0, &ds));
    f->data = ds.x; /* freed with the fixture */
    mean = (float *)calloc((size_t)ds.dim, sizeof(float));
    NGT_CHECK(mean != NULL, "out of memory");
    for (t = 0; t < ds.dim * ds.n; t++) mean[t % ds.dim] += ds.x[t] / (float)ds.n;
    ng_rbm_config_default(&cfg);
    cfg.batch = 10;
    cfg.particles = 100;
    cfg.lr = 0.2f;
    cfg.lr_gamma = 200.0f;
    cfg.momentum = 0.5f;
    cfg.optimizer = NG_RBM_OPT_CENTERING;
    cfg.seed = 3;
    {
        ng_status s = ng_rbm_init(be, ds.dim, 12, &f->rbm);
        f->have_rbm = s == NG_OK;
        if (s == NG_OK) s = ng_rbm_init_params(&f->rbm, cfg.seed, 0.01f, mean);
        free(mean);
        NGT_OK(s);
    }
    NGT_OK(ng_rbm_trainer_init(&f->tr, &f->rbm, &cfg, ds.x, ds.n, NULL));
    f->have_tr = 1;
    NGT_OK(ng_rbm_log_z_exact(&f->rbm, &lz0));
    NGT_OK(ng_rbm_mean_log_prob(&f->rbm, ds.x, ds.n, lz0, &ll0));
    for (t = 0; t < steps; t++) NGT_OK(ng_rbm_trainer_step(&f->tr, NULL));
    NGT_OK(ng_rbm_log_z_exact(&f->rbm, &lz1));
    NGT_OK(ng_rbm_mean_log_prob(&f->rbm, ds.x, ds.n, lz1, &ll1));
    printf("  bars-and-stripes 16x12: average log-likelihood %.3f -> %.3f after %d updates (optimum %.3f)\n",
           ll0, ll1, steps, log(1.0 / 30.0));
    NGT_CHECK(ll0 < -10.0, "initial log-likelihood %.3f: the start is not near-uniform", ll0);
    NGT_CHECK(ll1 > ll0 + 4.0, "training raised the log-likelihood only from %.3f to %.3f", ll0, ll1);
    NGT_CHECK(ll1 <= log(1.0 / 30.0) + 1e-6, "log-likelihood %.3f exceeds the optimum", ll1);
    return NGT_PASS;
}

/* ---- bad input -------------------------------------------------------------------------------- */

static int expect_invalid(ng_backend *be, const ng_rbm_config *cfg, const float *data, int n,
                          const char *what, const char *must_mention) {
    ng_rbm rbm;
    ng_rbm_trainer tr;
    ng_status s;
    NGT_OK(ng_rbm_init(be, 4, 3, &rbm));
    ng_clear_error();
    s = ng_rbm_trainer_init(&tr, &rbm, cfg, data, n, NULL);
    ng_rbm_trainer_free(&tr); /* a refused init leaves a trainer that is safe to free */
    ng_rbm_free(&rbm);
    NGT_CHECK(s == NG_ERR_INVALID_ARG, "%s: got %s (%s), want NG_ERR_INVALID_ARG", what,
              ng_status_name(s), ng_last_error());
    NGT_CHECK(ng_last_error()[0] != '\0', "%s: no message", what);
    NGT_CHECK(!must_mention || strstr(ng_last_error(), must_mention),
              "%s: message '%s' does not mention '%s'", what, ng_last_error(), must_mention);
    return NGT_PASS;
}

static int bad_input_body(ng_backend *be, fixture *f) {
    float x[4 * 10];
    ng_rbm_config base, cfg;
    int i;
    (void)f;
    for (i = 0; i < 4 * 10; i++) x[i] = (float)((i * 7) % 3) / 2.0f;
    ng_rbm_config_default(&base);
    base.batch = 5;
    base.particles = 7;
#define BAD(field, value, mention)                                                                \
    do {                                                                                          \
        cfg = base;                                                                               \
        cfg.field = value;                                                                        \
        if (expect_invalid(be, &cfg, x, 10, #field " = " #value, mention) != NGT_PASS) return NGT_FAIL; \
    } while (0)
    BAD(batch, 11, "--batch");
    BAD(batch, 0, "--batch");
    BAD(k, 0, "--k");
    BAD(lr, 0.0f, "--lr");
    BAD(lr, -1.0f, "--lr");
    BAD(lr, NAN, "--lr");
    BAD(lr, INFINITY, "--lr");
    BAD(momentum, 1.0f, "--momentum");
    BAD(momentum, 1.5f, "--momentum");
    BAD(momentum, -0.1f, "--momentum");
    BAD(particles, 0, "--particles");
    BAD(center_rate, 0.0f, "--center-rate");
    BAD(weight_decay, -1.0f, "--weight-decay");
#undef BAD
    /* data: NaN at pixel 2 of example 3, then values outside [0, 1] */
    cfg = base;
    x[3 * 4 + 2] = NAN;
    if (expect_invalid(be, &cfg, x, 10, "NaN pixel", "example 3, pixel 2") != NGT_PASS) return NGT_FAIL;
    x[3 * 4 + 2] = 1.5f;
    if (expect_invalid(be, &cfg, x, 10, "pixel 1.5", "example 3, pixel 2") != NGT_PASS) return NGT_FAIL;
    x[3 * 4 + 2] = -0.25f;
    if (expect_invalid(be, &cfg, x, 10, "pixel -0.25", "outside [0, 1]") != NGT_PASS) return NGT_FAIL;
    x[3 * 4 + 2] = INFINITY;
    if (expect_invalid(be, &cfg, x, 10, "pixel inf", "outside [0, 1]") != NGT_PASS) return NGT_FAIL;
    x[3 * 4 + 2] = 0.5f;
    if (expect_invalid(be, &cfg, x, 0, "empty training set", NULL) != NGT_PASS) return NGT_FAIL;
    /* and the good configuration is accepted, so the refusals above are about the one field */
    {
        ng_rbm rbm;
        ng_rbm_trainer tr;
        NGT_OK(ng_rbm_init(be, 4, 3, &rbm));
        cfg = base;
        if (ng_rbm_trainer_init(&tr, &rbm, &cfg, x, 10, NULL) != NG_OK) {
            printf("  valid configuration refused: %s\n", ng_last_error());
            ng_rbm_free(&rbm);
            return NGT_FAIL;
        }
        ng_rbm_trainer_free(&tr);
        ng_rbm_free(&rbm);
    }
    return NGT_PASS;
}

/* ---- data-parallel shards ---------------------------------------------------------------------
 * An estimator set up as rank r of N holds particles [r M / N, (r + 1) M / N) and draws them with
 * their global column as the Philox offset, so its initial particles, and its particles after a
 * PCD-2 gradient (one process: no communicator), are exactly those columns of the one-process
 * estimator's: bit for bit (the same uniforms; each column's gemm depends on that column alone).
 * nv = 13 and M = 11 make the offsets r M / N * nv not multiples of 4 (Philox groups straddle). */
static int shards_body(ng_backend *be, fixture *f) {
    enum { NV = 13, NH = 5, M = 11, MB = 7, NT = 20 };
    static const int worlds[2] = {2, 3};
    ng_rbm_estimator_config ec;
    float whole0[NV * M], whole2[NV * M], part[NV * M];
    void *xd = NULL;
    ng_tensor t, xt;
    int w, r, i;
    f->data = (float *)malloc((size_t)NV * NT * sizeof(float));
    NGT_CHECK(f->data != NULL, "out of memory");
    for (i = 0; i < NV * NT; i++) f->data[i] = ng_rng_uniform(ng_rng_stream_key(5, NG_RNG_TEST), 0, (uint64_t)i);
    memset(&ec, 0, sizeof ec);
    ec.estimator = NG_RBM_PCD;
    ec.k = 2;
    ec.particles = M;
    ec.batch = MB;
    ec.seed = 31;
    ec.world = 1;
    NGT_OK(ng_alloc(be, (size_t)NV * MB * sizeof(float), &xd));
    xt = ng_tensor_matrix((float *)xd, NV, MB, NV);
    for (w = -1; w < 2; w++)
        for (r = 0; r < (w < 0 ? 1 : worlds[w]); r++) {
            int world = w < 0 ? 1 : worlds[w], lo = r * M / world, hi = (r + 1) * M / world;
            ng_status s;
            ec.rank = r;
            ec.world = world;
            s = ng_rbm_init(be, NV, NH, &f->rbm);
            f->have_rbm = s == NG_OK;
            if (s == NG_OK) s = ng_rbm_init_params(&f->rbm, 9, 0.5f, NULL);
            if (s == NG_OK) s = ng_rbm_estimator_init(&f->rbm, &ec, f->data, NT);
            if (s == NG_OK) s = ng_model_statistic(ng_rbm_model(&f->rbm), "particles", &t);
            if (s == NG_OK) s = ng_tensor_get(be, &t, w < 0 ? whole0 : part);
            if (s != NG_OK) ng_free(be, xd);
            NGT_OK(s);
            NGT_CHECK(t.cols == hi - lo, "rank %d of %d holds %d particles, want %d", r, world, t.cols, hi - lo);
            if (w >= 0 && ngt_compare("initial particles", part, whole0 + (size_t)lo * NV, (size_t)NV * (hi - lo), 0.0, 0.0)) {
                ng_free(be, xd);
                NGT_CHECK(0, "rank %d of %d: its initial particles are not columns %d..%d of one process'", r, world, lo, hi);
            }
            /* a PCD-2 gradient on the first MB training cases: the chains advance by the draws of their columns */
            s = ng_set(be, xd, f->data, (size_t)NV * MB * sizeof(float));
            if (s == NG_OK) s = ng_model_gradient(ng_rbm_model(&f->rbm), &xt, NULL);
            if (s == NG_OK) s = ng_model_statistic(ng_rbm_model(&f->rbm), "particles", &t);
            if (s == NG_OK) s = ng_tensor_get(be, &t, w < 0 ? whole2 : part);
            if (s != NG_OK) ng_free(be, xd);
            NGT_OK(s);
            if (w >= 0 && ngt_compare("particles after PCD-2", part, whole2 + (size_t)lo * NV, (size_t)NV * (hi - lo), 0.0, 0.0)) {
                ng_free(be, xd);
                NGT_CHECK(0, "rank %d of %d: its particles after a gradient are not columns %d..%d of one process'", r, world, lo, hi);
            }
            ng_rbm_free(&f->rbm);
            f->have_rbm = 0;
        }
    ng_free(be, xd);
    NGT_CHECK(memcmp(whole0, whole2, sizeof whole0) != 0, "the gradient did not move the particles");
    return NGT_PASS;
}

/* Column blocks of the Gibbs phases (ng_rbm_set_col_block): any block size gives the bits of one
 * block. Two PCD-2 / CD-2 / PCD-1 gradients per block size; the gradient (gW, ga, gb), the particles, the
 * chain's last hidden samples, h_model and the Philox counter must equal those of one block, bit for
 * bit (tolerance 0: the draws are indexed by element, and BLAS computes each column of a large
 * gemm on its own, whatever the number of columns). Block sizes: automatic (one block for these
 * models; at the benchmark's 2000 chains, 3 blocks of 666-667), 3, 7, 64, 400 (2 x 225 columns).
 * Also: a negative block size and a missing estimator are refused. */
static int col_blocks_body(ng_backend *be, fixture *f) {
    static const struct { int nv, nh, M, mb; } sh[] = {{40, 13, 90, 70}, {784, 500, 450, 450}};
    static const int blocks[] = {0, 3, 7, 64, 400};
    static const char *const stats[] = {"particles", "h_chain", "h_model"};
    int si, e, bi;
    ng_rbm bare;
    NGT_OK(ng_rbm_init(be, 5, 3, &bare));
    NGT_CHECK(ng_rbm_set_col_block(&bare, 4) == NG_ERR_INVALID_ARG, "a column block without an estimator was accepted");
    ng_clear_error();
    ng_rbm_free(&bare);
    for (si = 0; si < 2; si++)
        for (e = 0; e < 3; e++) { /* PCD-2, CD-2, PCD-1 (its particles are copied block by block) */
            const int nv = sh[si].nv, nh = sh[si].nh, M = e != 1 ? sh[si].M : sh[si].mb, mb = sh[si].mb;
            const size_t np = (size_t)nh * nv + (size_t)nv + (size_t)nh, nst = (size_t)nv * M + 2 * (size_t)nh * M;
            float *want = (float *)malloc((np + nst) * sizeof(float)), *got = (float *)malloc((np + nst) * sizeof(float));
            void *xd = NULL;
            ng_rbm_estimator_config ec;
            ng_tensor xt;
            uint64_t want_step = 0;
            int i;
            NGT_CHECK(want && got, "out of memory");
            f->data = (float *)malloc((size_t)nv * mb * sizeof(float));
            NGT_CHECK(f->data != NULL, "out of memory");
            for (i = 0; i < nv * mb; i++) f->data[i] = ng_rng_uniform(ng_rng_stream_key(6, NG_RNG_TEST), 0, (uint64_t)i);
            memset(&ec, 0, sizeof ec);
            ec.estimator = e != 1 ? NG_RBM_PCD : NG_RBM_CD;
            ec.k = e == 2 ? 1 : 2;
            ec.particles = M;
            ec.batch = mb;
            ec.seed = 41;
            ec.world = 1;
            NGT_OK(ng_alloc(be, (size_t)nv * mb * sizeof(float), &xd));
            xt = ng_tensor_matrix((float *)xd, nv, mb, nv);
            for (bi = -1; bi < (int)(sizeof blocks / sizeof blocks[0]); bi++) {
                const int B = bi < 0 ? M : blocks[bi];
                size_t at = 0;
                int g, k;
                ng_status st;
                ng_tensor t;
                if (bi >= 0 && blocks[bi] == 400 && si == 0) continue;
                st = ng_rbm_init(be, nv, nh, &f->rbm);
                f->have_rbm = st == NG_OK;
                if (st == NG_OK) st = ng_rbm_init_params(&f->rbm, 9, 0.3f, NULL);
                if (st == NG_OK) st = ng_rbm_estimator_init(&f->rbm, &ec, f->data, mb);
                if (st == NG_OK && bi < 0) {
                    NGT_CHECK(ng_rbm_set_col_block(&f->rbm, -1) == NG_ERR_INVALID_ARG, "column block -1 was accepted");
                    ng_clear_error();
                }
                if (st == NG_OK) st = ng_rbm_set_col_block(&f->rbm, B);
                if (st == NG_OK) st = ng_set(be, xd, f->data, (size_t)nv * mb * sizeof(float));
                for (g = 0; g < 2 && st == NG_OK; g++) st = ng_model_gradient(ng_rbm_model(&f->rbm), &xt, NULL);
                if (st == NG_OK) {
                    ng_tensor gt = ng_rbm_model(&f->rbm)->grad_flat;
                    NGT_CHECK((size_t)gt.rows * gt.cols == np, "gradient of %d x %d, want %zu", gt.rows, gt.cols, np);
                    st = ng_tensor_get(be, &gt, got);
                    at = np;
                }
                for (k = 0; k < 3 && st == NG_OK; k++) {
                    st = ng_model_statistic(ng_rbm_model(&f->rbm), stats[k], &t);
                    if (st == NG_OK && t.cols > M) t = ng_tensor_cols(&t, 0, M); /* h_chain: (nh, max(m, M)) */
                    if (st == NG_OK) st = ng_tensor_get(be, &t, got + at);
                    at += (size_t)t.rows * t.cols;
                }
                if (st != NG_OK) ng_free(be, xd);
                NGT_OK(st);
                if (bi < 0) {
                    memcpy(want, got, (np + nst) * sizeof(float));
                    want_step = ng_rbm_rng_step(&f->rbm);
                } else {
                    int bad = ngt_compare("gradient and chain states", got, want, np + nst, 0.0, 0.0);
                    uint64_t step = ng_rbm_rng_step(&f->rbm);
                    ng_rbm_free(&f->rbm);
                    f->have_rbm = 0;
                    if (bad) ng_free(be, xd);
                    NGT_CHECK(!bad, "%dx%d %s-%d, %d chains: blocks of %d columns differ from one block (above)", nv, nh,
                              e == 1 ? "CD" : "PCD", ec.k, M, B);
                    NGT_CHECK(step == want_step, "blocks of %d: Philox counter %llu, one block %llu", B,
                              (unsigned long long)step, (unsigned long long)want_step);
                    continue;
                }
                ng_rbm_free(&f->rbm);
                f->have_rbm = 0;
            }
            ng_free(be, xd);
            free(f->data);
            f->data = NULL;
            free(want);
            free(got);
        }
    return NGT_PASS;
}

/* ---- backends --------------------------------------------------------------------------------- */

static int run_on(ng_backend *be, int (*body)(ng_backend *, fixture *)) {
    fixture f;
    int r;
    if (!be) return ngt_skip(g_cuda_reason);
    memset(&f, 0, sizeof f);
    r = body(be, &f);
    fixture_free(&f);
    return r;
}

static int pcd_k1(ng_backend *be, fixture *f) { return pcd_gradient_body(be, f, 1); }
static int pcd_k3(ng_backend *be, fixture *f) { return pcd_gradient_body(be, f, 3); }
static int cd_k1(ng_backend *be, fixture *f) { return cd_gradient_body(be, f, 1); }
static int cd_k2(ng_backend *be, fixture *f) { return cd_gradient_body(be, f, 2); }

#define BOTH(name, body)                                                  \
    static int test_##name##_cpu(void) { return run_on(g_cpu, body); }   \
    static int test_##name##_cuda(void) { return run_on(g_cuda, body); }
BOTH(pcd1_gradient_expectation, pcd_k1)
BOTH(pcd3_gradient_expectation, pcd_k3)
BOTH(cd1_gradient_expectation, cd_k1)
BOTH(cd2_gradient_expectation, cd_k2)
BOTH(pcd_chain_marginals, pcd_marginals_body)
BOTH(centering_update, centering_body)
BOTH(sgd_momentum_decay_update, sgd_body)
BOTH(determinism, determinism_body)
BOTH(training_bars_stripes, training_body)
BOTH(bad_input, bad_input_body)
BOTH(tf32, tf32_body)
BOTH(particle_shards, shards_body)
BOTH(col_blocks, col_blocks_body)

int main(void) {
    if (ngt_open_backends(&g_cpu, &g_cuda, g_cuda_reason, sizeof g_cuda_reason)) return 1;
    NGT_RUN(test_exact_gradient_reference);
    NGT_RUN(test_pcd1_gradient_expectation_cpu);
    NGT_RUN(test_pcd3_gradient_expectation_cpu);
    NGT_RUN(test_cd1_gradient_expectation_cpu);
    NGT_RUN(test_cd2_gradient_expectation_cpu);
    NGT_RUN(test_pcd_chain_marginals_cpu);
    NGT_RUN(test_centering_update_cpu);
    NGT_RUN(test_sgd_momentum_decay_update_cpu);
    NGT_RUN(test_determinism_cpu);
    NGT_RUN(test_training_bars_stripes_cpu);
    NGT_RUN(test_bad_input_cpu);
    NGT_RUN(test_tf32_cpu);
    NGT_RUN(test_particle_shards_cpu);
    NGT_RUN(test_col_blocks_cpu);
    NGT_RUN(test_pcd1_gradient_expectation_cuda);
    NGT_RUN(test_pcd3_gradient_expectation_cuda);
    NGT_RUN(test_cd1_gradient_expectation_cuda);
    NGT_RUN(test_cd2_gradient_expectation_cuda);
    NGT_RUN(test_pcd_chain_marginals_cuda);
    NGT_RUN(test_centering_update_cuda);
    NGT_RUN(test_sgd_momentum_decay_update_cuda);
    NGT_RUN(test_determinism_cuda);
    NGT_RUN(test_training_bars_stripes_cuda);
    NGT_RUN(test_bad_input_cuda);
    NGT_RUN(test_tf32_cuda);
    NGT_RUN(test_particle_shards_cuda);
    NGT_RUN(test_col_blocks_cuda);
    ng_backend_free(g_cuda);
    ng_backend_free(g_cpu);
    return ngt_finish();
}
