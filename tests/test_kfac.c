/* test_kfac.c: K-FAC (host/optim/kfac.c) against float64 references built from the definitions of
 * Martens & Grosse 2015 on tiny networks:
 *   - the factors A-bar_{i,j}, G_{i,j} equal the per-example averages of the statistics they were
 *     built from (moving average included); the sampled-target G factor matches its expectation
 *     E_x[J^T F_R J] (closed form for the top two layers) within Monte-Carlo error;
 *   - block-diagonal: F-breve^-1 v equals a dense solve with the damped Kronecker blocks;
 *   - block-tridiagonal: F-hat^-1 v equals Xi^T Lambda Xi v built densely from section 4.3, and
 *     F-hat agrees with F-tilde on the tridiagonal blocks; with the regularised inverse (eq. 35)
 *     of layer L's factors and of those inside Psi, against the same construction;
 *   - the 2x2 step (alpha, mu) minimises the quadratic model (brute force); the appendix-C forms
 *     equal v^T G u from the Gauss-Newton products; LM and schedule rules;
 *   - invariance (section 10): with negligible damping the update is unchanged by invertible
 *     affine transformations of the activations and pre-activations;
 *   - recovery of failed inversions; CPU and (emulated) CUDA agree on whole K-FAC steps;
 *   - refreshes with their eigendecompositions batched (ng_syevd_batched: block-tridiagonal,
 *     regularised inverses) are bit-identical to the one-at-a-time path (CPU, two threads). */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends.h"
#include "harness.h"
#include "kfac_run.h"
#include "natgrad/backend.h"
#include "natgrad/data.h"
#include "natgrad/kfac.h"
#include "natgrad/net.h"
#include "natgrad/profile.h"
#include "natgrad/rng.h"
#include "natgrad/tensor.h"
#include "natgrad/train.h"

static ng_backend *g_cpu, *g_cuda;
static char g_cuda_reason[512];

static uint64_t g_state = 777;
static double urand(void) {
    g_state = g_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_state >> 11) / 9007199254740992.0;
}

/* ---- a tiny network with a batch ---------------------------------------------------------------- */

typedef struct fix {
    ng_net_config cfg;
    ng_model *net;
    ng_precond *pc;
    ng_tensor x, v, out;
    void *mem;
    int m, L, d[NG_NET_MAX_LAYERS + 1];
    size_t np, off[NG_NET_MAX_LAYERS + 1];
} fix;

static void fix_free(fix *f) {
    if (f->net) {
        if (f->mem) ng_free(f->net->be, f->mem);
        ng_precond_free(f->pc);
        ng_net_free(f->net);
    }
    memset(f, 0, sizeof *f);
}

/* how fix_init's and run_steps's K-FAC inverts its factors (test_regularized_inverse switches it) */
static int g_inverse = NG_KFAC_INV_TIKHONOV;

static ng_status fix_init(fix *f, ng_backend *be, const char *spec, int approx, int m, double gamma0) {
    ng_kfac_config kc;
    int rows, c, i, l;
    float *hx;
    memset(f, 0, sizeof *f);
    ng_net_config_default(&f->cfg);
    f->cfg.loss = NG_LOSS_BERNOULLI;
    f->cfg.target = NG_NET_TARGET_INPUT;
    f->cfg.init = NG_INIT_GAUSSIAN;
    f->cfg.init_scale = 0.8f;
    f->cfg.seed = 5;
    NG_TRY(ng_net_parse_spec(spec, NG_ACT_TANH, NG_ACT_LOGISTIC, &f->cfg));
    NG_TRY(ng_net_create(be, &f->cfg, &f->net));
    f->L = f->cfg.n_layers;
    for (l = 0; l <= f->L; l++) f->d[l] = f->cfg.dims[l];
    f->np = ng_model_size(f->net);
    for (l = 1, i = 0; l <= f->L; l++, i += 2) f->off[l] = (size_t)(ng_arena_view(&f->net->params, i)->data - f->net->param_flat.data);
    f->m = m;
    rows = ng_net_batch_rows(f->net);
    hx = (float *)malloc((size_t)rows * m * sizeof(float));
    for (c = 0; c < rows * m; c++) hx[c] = (float)urand();
    NG_TRY(ng_alloc(be, ((size_t)rows * m + 2 * f->np) * sizeof(float), &f->mem));
    f->x = ng_tensor_matrix((float *)f->mem, rows, m, rows);
    f->v = ng_tensor_matrix(f->x.data + (size_t)rows * m, (int)f->np, 1, (int)f->np);
    f->out = ng_tensor_matrix(f->v.data + f->np, (int)f->np, 1, (int)f->np);
    NG_TRY(ng_tensor_set(be, &f->x, hx));
    free(hx);
    ng_kfac_config_default(&kc);
    kc.approx = approx;
    kc.gamma0 = gamma0;
    kc.timing = 0;
    kc.inverse = g_inverse;
    NG_TRY(ng_precond_kfac_init(be, f->net, &kc, &f->pc));
    return ng_net_set_batch(f->net, &f->x, NULL);
}

static double *get_mat(ng_backend *be, const ng_tensor *t) {
    size_t n = ng_tensor_count(t), i;
    float *h = (float *)malloc(n * sizeof(float));
    double *d = (double *)malloc(n * sizeof(double));
    if (ng_tensor_get(be, t, h) != NG_OK) {
        free(h);
        free(d);
        return NULL;
    }
    for (i = 0; i < n; i++) d[i] = h[i];
    free(h);
    return d;
}

static ng_status put_vec(ng_backend *be, ng_tensor *t, const double *v) {
    size_t n = ng_tensor_count(t), i;
    float *h = (float *)malloc(n * sizeof(float));
    ng_status s;
    for (i = 0; i < n; i++) h[i] = (float)v[i];
    s = ng_tensor_set(be, t, h);
    free(h);
    return s;
}

/* ---- dense float64 helpers ---------------------------------------------------------------------- */

/* In-place inverse of an n x n column-major matrix (Gauss-Jordan, partial pivoting); 0 on success. */
static int dinv(double *A, int n) {
    int *piv = (int *)malloc((size_t)n * sizeof(int)), i, j, k;
    double *B = (double *)calloc((size_t)n * n, sizeof(double));
    for (i = 0; i < n; i++) B[i + (size_t)n * i] = 1.0;
    for (k = 0; k < n; k++) {
        int p = k;
        double best = fabs(A[k + (size_t)n * k]);
        for (i = k + 1; i < n; i++)
            if (fabs(A[i + (size_t)n * k]) > best) best = fabs(A[i + (size_t)n * k]), p = i;
        if (best == 0.0) {
            free(piv), free(B);
            return 1;
        }
        if (p != k)
            for (j = 0; j < n; j++) {
                double t = A[k + (size_t)n * j];
                A[k + (size_t)n * j] = A[p + (size_t)n * j], A[p + (size_t)n * j] = t;
                t = B[k + (size_t)n * j];
                B[k + (size_t)n * j] = B[p + (size_t)n * j], B[p + (size_t)n * j] = t;
            }
        {
            double d = A[k + (size_t)n * k];
            for (j = 0; j < n; j++) A[k + (size_t)n * j] /= d, B[k + (size_t)n * j] /= d;
        }
        for (i = 0; i < n; i++)
            if (i != k) {
                double f = A[i + (size_t)n * k];
                if (f != 0.0)
                    for (j = 0; j < n; j++) A[i + (size_t)n * j] -= f * A[k + (size_t)n * j], B[i + (size_t)n * j] -= f * B[k + (size_t)n * j];
            }
    }
    memcpy(A, B, (size_t)n * n * sizeof(double));
    free(piv), free(B);
    return 0;
}

/* C (m x n) = A (m x k) B (k x n), column-major; ta/tb transpose A/B (as stored). */
static void dgemm_(int ta, int tb, int m, int n, int k, const double *A, int lda, const double *B, int ldb, double *C, int ldc) {
    int i, j, p;
    for (j = 0; j < n; j++)
        for (i = 0; i < m; i++) {
            double s = 0.0;
            for (p = 0; p < k; p++) s += (ta ? A[p + (size_t)lda * i] : A[i + (size_t)lda * p]) * (tb ? B[j + (size_t)ldb * p] : B[p + (size_t)ldb * j]);
            C[i + (size_t)ldc * j] = s;
        }
}

/* Block (rows of layer i, cols of layer j) of a dense N x N matrix: the Kronecker product
 * A (na_i x na_j) (x) B (d_i x d_j) in vec order (G side fastest). */
static void put_kron(double *M, size_t N, size_t ri, size_t cj, const double *A, int ai, int aj, const double *B, int bi, int bj) {
    int a, b, c, e;
    for (c = 0; c < aj; c++)
        for (e = 0; e < bj; e++)
            for (a = 0; a < ai; a++)
                for (b = 0; b < bi; b++)
                    M[(ri + (size_t)b + (size_t)bi * a) + N * (cj + (size_t)e + (size_t)bj * c)] = A[a + (size_t)ai * c] * B[b + (size_t)bi * e];
}

static double relerr(const double *a, const double *b, size_t n) {
    double num = 0.0, den = 0.0;
    size_t i;
    for (i = 0; i < n; i++) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
    return sqrt(num / (den > 0.0 ? den : 1.0));
}

/* ---- statistics of one batch, all pairs, in float64 --------------------------------------------- */

typedef struct stats {
    double *a[NG_NET_MAX_LAYERS + 1], *g[NG_NET_MAX_LAYERS + 1]; /* (d+1, m), (d, m) */
} stats;

static int get_stats(fix *f, stats *s) {
    int l;
    char name[16];
    ng_tensor t;
    memset(s, 0, sizeof *s);
    for (l = 0; l < f->L; l++) {
        snprintf(name, sizeof name, "a%d", l);
        if (ng_model_statistic(f->net, name, &t) != NG_OK) return 1;
        s->a[l] = get_mat(f->net->be, &t);
    }
    for (l = 1; l <= f->L; l++) {
        snprintf(name, sizeof name, "g%d", l);
        if (ng_model_statistic(f->net, name, &t) != NG_OK) return 1;
        s->g[l] = get_mat(f->net->be, &t);
    }
    return 0;
}

static void free_stats(fix *f, stats *s) {
    int l;
    for (l = 0; l <= f->L; l++) free(s->a[l]), free(s->g[l]);
}

/* E[x_i x_j^T] of two statistics (ri x m), (rj x m) */
static double *moment(const double *X, int ri, const double *Y, int rj, int m) {
    double *M = (double *)calloc((size_t)ri * rj, sizeof(double));
    int a, b, c;
    for (c = 0; c < m; c++)
        for (b = 0; b < rj; b++)
            for (a = 0; a < ri; a++) M[a + (size_t)ri * b] += X[a + (size_t)ri * c] * Y[b + (size_t)rj * c] / m;
    return M;
}

static const uint64_t KEY = 0x5eed;

/* Fold the batch's sampled statistics into the factors (eps), then redo the same sampled backward
 * pass (same stream) so the statistics can be read. */
static ng_status fold_and_read(fix *f, double eps, uint64_t step, stats *s) {
    NG_TRY(ng_kfac_accumulate(f->pc, f->net, f->m, eps, KEY, step));
    NG_TRY(ng_net_backward_sampled(f->net, KEY, step));
    if (get_stats(f, s)) return ng_error(NG_ERR_INVALID_ARG, "statistics unavailable");
    return NG_OK;
}

static int test_factors_definition(void) {
    const int approx[2] = {NG_KFAC_BLOCKDIAG, NG_KFAC_TRIDIAG};
    int ai;
    for (ai = 0; ai < 2; ai++) {
        fix f;
        stats s1, s2;
        int l;
        const double eps = 0.7;
        NGT_OK(fix_init(&f, g_cpu, "4-3-4-3-4", approx[ai], 30, 0.0));
        NGT_OK(fold_and_read(&f, 0.0, 1, &s1));
        NGT_OK(fold_and_read(&f, eps, 2, &s2));
        /* factor = eps * batch1 + (1 - eps) * batch2 */
        for (l = 0; l < f.L; l++) {
            int r = f.d[l] + 1, j;
            ng_tensor t;
            double *A, *M1, *M2;
            NGT_OK(ng_kfac_factor(f.pc, 'A', l, l, &t));
            A = get_mat(g_cpu, &t);
            M1 = moment(s1.a[l], r, s1.a[l], r, f.m);
            M2 = moment(s2.a[l], r, s2.a[l], r, f.m);
            for (j = 0; j < r * r; j++) M1[j] = eps * M1[j] + (1.0 - eps) * M2[j];
            NGT_CHECK(relerr(A, M1, (size_t)r * r) < 1e-5, "%s A_{%d,%d} rel err %g", ng_kfac_approx_name(approx[ai]), l, l,
                      relerr(A, M1, (size_t)r * r));
            for (j = 0; j < r; j++) {
                int i2;
                for (i2 = 0; i2 < r; i2++)
                    NGT_CHECK(A[i2 + r * j] == A[j + r * i2], "A_{%d,%d} not exactly symmetric", l, l);
            }
            free(A), free(M1), free(M2);
            if (approx[ai] == NG_KFAC_TRIDIAG && l + 1 < f.L) {
                int r2 = f.d[l + 1] + 1;
                NGT_OK(ng_kfac_factor(f.pc, 'A', l, l + 1, &t));
                A = get_mat(g_cpu, &t);
                M1 = moment(s1.a[l], r, s1.a[l + 1], r2, f.m);
                M2 = moment(s2.a[l], r, s2.a[l + 1], r2, f.m);
                for (j = 0; j < r * r2; j++) M1[j] = eps * M1[j] + (1.0 - eps) * M2[j];
                NGT_CHECK(relerr(A, M1, (size_t)r * r2) < 1e-5, "A_{%d,%d} rel err %g", l, l + 1, relerr(A, M1, (size_t)r * r2));
                free(A), free(M1), free(M2);
            }
        }
        for (l = 1; l <= f.L; l++) {
            int r = f.d[l], j;
            ng_tensor t;
            double *G, *M1, *M2;
            NGT_OK(ng_kfac_factor(f.pc, 'G', l, l, &t));
            G = get_mat(g_cpu, &t);
            M1 = moment(s1.g[l], r, s1.g[l], r, f.m);
            M2 = moment(s2.g[l], r, s2.g[l], r, f.m);
            for (j = 0; j < r * r; j++) M1[j] = eps * M1[j] + (1.0 - eps) * M2[j];
            NGT_CHECK(relerr(G, M1, (size_t)r * r) < 1e-5, "G_{%d,%d} rel err %g", l, l, relerr(G, M1, (size_t)r * r));
            free(G), free(M1), free(M2);
            if (approx[ai] == NG_KFAC_TRIDIAG && l < f.L) {
                int r2 = f.d[l + 1];
                NGT_OK(ng_kfac_factor(f.pc, 'G', l, l + 1, &t));
                G = get_mat(g_cpu, &t);
                M1 = moment(s1.g[l], r, s1.g[l + 1], r2, f.m);
                M2 = moment(s2.g[l], r, s2.g[l + 1], r2, f.m);
                for (j = 0; j < r * r2; j++) M1[j] = eps * M1[j] + (1.0 - eps) * M2[j];
                NGT_CHECK(relerr(G, M1, (size_t)r * r2) < 1e-5, "G_{%d,%d} rel err %g", l, l + 1, relerr(G, M1, (size_t)r * r2));
                free(G), free(M1), free(M2);
            }
        }
        {
            ng_tensor t;
            ng_status st = ng_kfac_factor(f.pc, 'G', 1, 3, &t);
            NGT_CHECK(st == NG_ERR_INVALID_ARG, "G_{1,3} is not a factor of either approximation");
            ng_clear_error();
        }
        free_stats(&f, &s1);
        free_stats(&f, &s2);
        fix_free(&f);
    }
    return NGT_PASS;
}

/* The sampled G factors against their expectation over the model's predictive distribution: for
 * the Bernoulli output, E[g_L g_L^T] = mean_x diag(y (1 - y)), and g_{L-1} = f'(z_{L-1}) W_L^T g_L
 * gives E[g_{L-1} g_{L-1}^T] = mean_x D W^T diag(y(1-y)) W D. K draws averaged with weights
 * eps_k = 1 - 1/k (an exact running mean); the tolerance is 4 standard errors of the mean per
 * element, estimated from the draws themselves. */
static int test_factor_expectation(void) {
    fix f;
    int L, dL, dp, k, K = 300, c, i, j;
    double *y, *ap, *W, *EL, *EP, *sumL, *sum2L, *sumP, *sum2P;
    ng_tensor t;
    NGT_OK(fix_init(&f, g_cpu, "6-4-6", NG_KFAC_BLOCKDIAG, 40, 0.0));
    L = f.L;
    dL = f.d[L];
    dp = f.d[L - 1];
    NGT_OK(ng_model_statistic(f.net, "y", &t));
    y = get_mat(g_cpu, &t);
    NGT_OK(ng_model_statistic(f.net, "a1", &t));
    ap = get_mat(g_cpu, &t);
    W = get_mat(g_cpu, ng_arena_view(&f.net->params, 2 * (L - 1)));
    EL = (double *)calloc((size_t)dL * dL, sizeof(double));
    EP = (double *)calloc((size_t)dp * dp, sizeof(double));
    for (c = 0; c < f.m; c++) {
        double *q = (double *)calloc((size_t)dp * dL, sizeof(double)); /* D W^T sqrt(F_R) */
        for (i = 0; i < dL; i++) {
            double yy = y[i + dL * c], fr = yy * (1.0 - yy);
            EL[i + dL * i] += fr / f.m;
            for (j = 0; j < dp; j++) {
                double a = ap[j + (dp + 1) * c]; /* tanh: f' = 1 - a^2 */
                q[j + dp * i] = (1.0 - a * a) * W[i + dL * j] * sqrt(fr);
            }
        }
        for (i = 0; i < dp; i++)
            for (j = 0; j < dp; j++) {
                double s = 0.0;
                int r;
                for (r = 0; r < dL; r++) s += q[i + dp * r] * q[j + dp * r];
                EP[i + dp * j] += s / f.m;
            }
        free(q);
    }
    sumL = (double *)calloc((size_t)dL * dL, sizeof(double));
    sum2L = (double *)calloc((size_t)dL * dL, sizeof(double));
    sumP = (double *)calloc((size_t)dp * dp, sizeof(double));
    sum2P = (double *)calloc((size_t)dp * dp, sizeof(double));
    for (k = 1; k <= K; k++) {
        double *G;
        NGT_OK(ng_kfac_accumulate(f.pc, f.net, f.m, 1.0 - 1.0 / k, KEY, 1000 + (uint64_t)k));
        NGT_OK(ng_net_backward_sampled(f.net, KEY, 1000 + (uint64_t)k));
        {
            stats s;
            memset(&s, 0, sizeof s);
            NGT_CHECK(get_stats(&f, &s) == 0, "stats");
            G = moment(s.g[L], dL, s.g[L], dL, f.m);
            for (i = 0; i < dL * dL; i++) sumL[i] += G[i], sum2L[i] += G[i] * G[i];
            free(G);
            G = moment(s.g[L - 1], dp, s.g[L - 1], dp, f.m);
            for (i = 0; i < dp * dp; i++) sumP[i] += G[i], sum2P[i] += G[i] * G[i];
            free(G);
            free_stats(&f, &s);
        }
    }
    {
        double *GL, *GP;
        double dist = 0.0, distwrong = 0.0;
        NGT_OK(ng_kfac_factor(f.pc, 'G', L, L, &t));
        GL = get_mat(g_cpu, &t);
        NGT_OK(ng_kfac_factor(f.pc, 'G', L - 1, L - 1, &t));
        GP = get_mat(g_cpu, &t);
        for (i = 0; i < dL * dL; i++) {
            double mean = sumL[i] / K, se = sqrt(fmax(sum2L[i] / K - mean * mean, 0.0) / K);
            NGT_CHECK(fabs(GL[i] - mean) < 1e-5 * (1.0 + fabs(mean)), "G_LL[%d] %g is not the running mean %g of the draws", i,
                      GL[i], mean);
            NGT_CHECK(fabs(GL[i] - EL[i]) < 4.0 * se + 1e-6, "G_LL[%d] = %g, expectation %g, standard error %g", i, GL[i], EL[i], se);
        }
        for (i = 0; i < dp * dp; i++) {
            double mean = sumP[i] / K, se = sqrt(fmax(sum2P[i] / K - mean * mean, 0.0) / K);
            NGT_CHECK(fabs(GP[i] - EP[i]) < 4.0 * se + 1e-6, "G_{L-1} [%d] = %g, expectation %g, standard error %g", i, GP[i],
                      EP[i], se);
            dist += (GP[i] - EP[i]) * (GP[i] - EP[i]);
            /* a wrong expectation (without the output Hessian's weights) is far outside */
            distwrong += (GP[i] - EP[i] * 4.0) * (GP[i] - EP[i] * 4.0);
        }
        NGT_CHECK(dist < 0.05 * distwrong, "the check cannot tell a 4x wrong expectation apart (%g vs %g)", dist, distwrong);
        free(GL), free(GP);
    }
    free(y), free(ap), free(W), free(EL), free(EP), free(sumL), free(sum2L), free(sumP), free(sum2P);
    fix_free(&f);
    return NGT_PASS;
}

/* ---- the inverses against dense matrices ------------------------------------------------------- */

/* damped diagonal factors and pi_l, as the paper defines them, from the library's factors */
typedef struct dense_ctx {
    double *A[NG_NET_MAX_LAYERS + 1], *G[NG_NET_MAX_LAYERS + 1], *AC[NG_NET_MAX_LAYERS + 1], *GC[NG_NET_MAX_LAYERS + 1];
    double pi[NG_NET_MAX_LAYERS + 1];
    size_t boff[NG_NET_MAX_LAYERS + 2], N;
} dense_ctx;

static int dense_load(fix *f, dense_ctx *D, double gamma, int tri) {
    int l;
    ng_tensor t;
    memset(D, 0, sizeof *D);
    D->N = 0;
    for (l = 1; l <= f->L; l++) {
        int na = f->d[l - 1] + 1, ng = f->d[l], i;
        double ta = 0.0, tg = 0.0;
        if (ng_kfac_factor(f->pc, 'A', l - 1, l - 1, &t) != NG_OK) return 1;
        D->A[l] = get_mat(g_cpu == f->net->be ? g_cpu : f->net->be, &t);
        if (ng_kfac_factor(f->pc, 'G', l, l, &t) != NG_OK) return 1;
        D->G[l] = get_mat(f->net->be, &t);
        for (i = 0; i < na; i++) ta += D->A[l][i + na * i];
        for (i = 0; i < ng; i++) tg += D->G[l][i + ng * i];
        D->pi[l] = sqrt((ta / na) / (tg / ng));
        for (i = 0; i < na; i++) D->A[l][i + na * i] += D->pi[l] * gamma;
        for (i = 0; i < ng; i++) D->G[l][i + ng * i] += gamma / D->pi[l];
        D->boff[l] = D->N;
        D->N += (size_t)na * ng;
        if (tri && l < f->L) {
            if (ng_kfac_factor(f->pc, 'A', l - 1, l, &t) != NG_OK) return 1;
            D->AC[l] = get_mat(f->net->be, &t);
            if (ng_kfac_factor(f->pc, 'G', l, l + 1, &t) != NG_OK) return 1;
            D->GC[l] = get_mat(f->net->be, &t);
        }
    }
    return 0;
}

static void dense_free(dense_ctx *D) {
    int l;
    for (l = 0; l <= NG_NET_MAX_LAYERS; l++) free(D->A[l]), free(D->G[l]), free(D->AC[l]), free(D->GC[l]);
}

static int test_blockdiag_inverse(void) {
    fix f;
    dense_ctx D;
    double gamma = 0.3, *v, *M, *want, *got;
    size_t N, i, j;
    int l;
    NGT_OK(fix_init(&f, g_cpu, "4-3-4-3-4", NG_KFAC_BLOCKDIAG, 30, 0.0));
    NGT_OK(ng_kfac_accumulate(f.pc, f.net, f.m, 0.0, KEY, 1));
    NGT_OK(ng_kfac_refresh(f.pc, gamma));
    NGT_CHECK(dense_load(&f, &D, gamma, 0) == 0, "factors");
    N = D.N;
    NGT_CHECK(N == f.np, "blocks cover %zu of %zu parameters", N, f.np);
    M = (double *)calloc(N * N, sizeof(double));
    for (l = 1; l <= f.L; l++)
        put_kron(M, N, D.boff[l], D.boff[l], D.A[l], f.d[l - 1] + 1, f.d[l - 1] + 1, D.G[l], f.d[l], f.d[l]);
    NGT_CHECK(dinv(M, (int)N) == 0, "singular");
    v = (double *)malloc(N * sizeof(double));
    want = (double *)calloc(N, sizeof(double));
    for (i = 0; i < N; i++) v[i] = urand() - 0.5;
    for (j = 0; j < N; j++)
        for (i = 0; i < N; i++) want[i] += M[i + N * j] * v[j];
    NGT_OK(put_vec(g_cpu, &f.v, v));
    NGT_OK(ng_kfac_apply_inverse(f.pc, &f.v, &f.out));
    got = get_mat(g_cpu, &f.out);
    NGT_CHECK(relerr(got, want, N) < 2e-4, "F-breve^-1 v: relative error %g against the dense solve", relerr(got, want, N));
    free(M), free(v), free(want), free(got);
    dense_free(&D);
    fix_free(&f);
    return NGT_PASS;
}

/* Sohl-Dickstein's regularised inverse (eq. 35) of each factor: F-breve^-1 v against the dense
 * Kronecker product of (A^2 + (pi gamma)^2 I)^-1 A and (G^2 + (gamma / pi)^2 I)^-1 G, each formed in
 * float64 by a Gauss-Jordan inverse (not the library's eigendecomposition). */
static double *dense_reg_inverse(const double *F, int n, double d) {
    double *S = (double *)calloc((size_t)n * n, sizeof(double)), *R = (double *)calloc((size_t)n * n, sizeof(double));
    int i;
    dgemm_(0, 0, n, n, n, F, n, F, n, S, n);
    for (i = 0; i < n; i++) S[i + (size_t)n * i] += d * d;
    if (dinv(S, n)) {
        free(S), free(R);
        return NULL;
    }
    dgemm_(0, 0, n, n, n, S, n, F, n, R, n);
    free(S);
    return R;
}

static int test_regularized_inverse(void) {
    fix f;
    dense_ctx D;
    double gamma = 0.3, *v, *M, *want, *got, *tik;
    size_t N, i, j;
    int l;
    g_inverse = NG_KFAC_INV_REGULARIZED;
    NGT_OK(fix_init(&f, g_cpu, "4-3-4-3-4", NG_KFAC_BLOCKDIAG, 30, 0.0));
    g_inverse = NG_KFAC_INV_TIKHONOV;
    NGT_OK(ng_kfac_accumulate(f.pc, f.net, f.m, 0.0, KEY, 1));
    NGT_OK(ng_kfac_refresh(f.pc, gamma));
    NGT_CHECK(dense_load(&f, &D, gamma, 0) == 0, "factors");
    N = D.N;
    M = (double *)calloc(N * N, sizeof(double));
    for (l = 1; l <= f.L; l++) {
        int na = f.d[l - 1] + 1, ng = f.d[l];
        double *RA, *RG;
        /* dense_load damped the diagonals: undo, then the regularised inverses */
        for (i = 0; i < (size_t)na; i++) D.A[l][i + na * i] -= D.pi[l] * gamma;
        for (i = 0; i < (size_t)ng; i++) D.G[l][i + ng * i] -= gamma / D.pi[l];
        RA = dense_reg_inverse(D.A[l], na, D.pi[l] * gamma);
        RG = dense_reg_inverse(D.G[l], ng, gamma / D.pi[l]);
        NGT_CHECK(RA && RG, "singular A^2 + d^2 I");
        put_kron(M, N, D.boff[l], D.boff[l], RA, na, na, RG, ng, ng);
        free(RA), free(RG);
    }
    v = (double *)malloc(N * sizeof(double));
    want = (double *)calloc(N, sizeof(double));
    for (i = 0; i < N; i++) v[i] = urand() - 0.5;
    for (j = 0; j < N; j++)
        for (i = 0; i < N; i++) want[i] += M[i + N * j] * v[j];
    NGT_OK(put_vec(g_cpu, &f.v, v));
    NGT_OK(ng_kfac_apply_inverse(f.pc, &f.v, &f.out));
    got = get_mat(g_cpu, &f.out);
    /* float32 eigendecompositions of factors with eigenvalues down to ~1e-3 of the largest */
    NGT_CHECK(relerr(got, want, N) < 1e-4, "regularised F-breve^-1 v: relative error %g against the dense formula", relerr(got, want, N));
    fix_free(&f);
    /* and it is not the Tikhonov inverse: the same factors with Tikhonov damping give another vector */
    NGT_OK(fix_init(&f, g_cpu, "4-3-4-3-4", NG_KFAC_BLOCKDIAG, 30, 0.0));
    NGT_OK(ng_kfac_accumulate(f.pc, f.net, f.m, 0.0, KEY, 1));
    NGT_OK(ng_kfac_refresh(f.pc, gamma));
    NGT_OK(put_vec(g_cpu, &f.v, v));
    NGT_OK(ng_kfac_apply_inverse(f.pc, &f.v, &f.out));
    tik = get_mat(g_cpu, &f.out);
    NGT_CHECK(relerr(tik, want, N) > 0.05, "Tikhonov and regularised inverses should differ: %g", relerr(tik, want, N));
    printf("  regularised vs dense: %.2e; Tikhonov vs the regularised formula: %.3f\n", relerr(got, want, N), relerr(tik, want, N));
    {
        ng_kfac_config c;
        ng_kfac_config_default(&c);
        c.inverse = NG_KFAC_INV_REGULARIZED;
        c.approx = NG_KFAC_TRIDIAG;
        NGT_OK(ng_kfac_config_check(&c));
        c.inverse = 5;
        c.approx = NG_KFAC_BLOCKDIAG;
        NGT_CHECK(ng_kfac_config_check(&c) == NG_ERR_INVALID_ARG, "unknown inverse refused");
    }
    free(M), free(v), free(want), free(got), free(tik);
    dense_free(&D);
    fix_free(&f);
    return NGT_PASS;
}

/* The block-tridiagonal inverse with the regularised inverse (eq. 35): F-hat^-1 = Xi^T Lambda Xi
 * with Psi_{l,l+1} = F_{l,l+1} R_{l+1} (R = RA (x) RG, RA = (A^2 + d_A^2 I)^-1 A of the undamped
 * factors, likewise RG), Lambda_l = (F_ll - Psi F_{l+1,l}) ^-1 with F_ll Tikhonov-damped, and
 * Lambda_L = R_L; everything dense in float64 (Gauss-Jordan), against ng_kfac_apply_inverse. */
static int test_tridiag_regularized(void) {
    fix f;
    dense_ctx D;
    double gamma = 0.3, *v, *want, *got, *tik, *Fd, *Fo, *R, *P, *Q, *Xi, *Lam, *T, *Fhi;
    size_t N, i, j, bs[NG_NET_MAX_LAYERS + 2];
    int l, L;
    g_inverse = NG_KFAC_INV_REGULARIZED;
    NGT_OK(fix_init(&f, g_cpu, "4-3-4-3-4", NG_KFAC_TRIDIAG, 30, 0.0));
    g_inverse = NG_KFAC_INV_TIKHONOV;
    NGT_OK(ng_kfac_accumulate(f.pc, f.net, f.m, 0.0, KEY, 1));
    NGT_OK(ng_kfac_refresh(f.pc, gamma));
    NGT_CHECK(dense_load(&f, &D, gamma, 1) == 0, "factors");
    N = D.N;
    L = f.L;
    Fd = (double *)calloc(N * N, sizeof(double));
    Fo = (double *)calloc(N * N, sizeof(double));
    R = (double *)calloc(N * N, sizeof(double));
    for (l = 1; l <= L; l++) {
        int na = f.d[l - 1] + 1, ng = f.d[l];
        double *RA, *RG, *Au = (double *)malloc((size_t)na * na * sizeof(double)), *Gu = (double *)malloc((size_t)ng * ng * sizeof(double));
        bs[l] = (size_t)na * ng;
        put_kron(Fd, N, D.boff[l], D.boff[l], D.A[l], na, na, D.G[l], ng, ng);
        memcpy(Au, D.A[l], (size_t)na * na * sizeof(double));
        memcpy(Gu, D.G[l], (size_t)ng * ng * sizeof(double));
        for (i = 0; i < (size_t)na; i++) Au[i + na * i] -= D.pi[l] * gamma;
        for (i = 0; i < (size_t)ng; i++) Gu[i + ng * i] -= gamma / D.pi[l];
        RA = dense_reg_inverse(Au, na, D.pi[l] * gamma);
        RG = dense_reg_inverse(Gu, ng, gamma / D.pi[l]);
        NGT_CHECK(RA && RG, "singular F^2 + d^2 I");
        put_kron(R, N, D.boff[l], D.boff[l], RA, na, na, RG, ng, ng);
        free(RA), free(RG), free(Au), free(Gu);
        if (l < L) put_kron(Fo, N, D.boff[l], D.boff[l + 1], D.AC[l], na, f.d[l] + 1, D.GC[l], ng, f.d[l + 1]);
    }
    /* P = Fo R: block (l, l+1) = Psi_{l,l+1}; Q = P Fo^T: block (l, l) = Psi F_{l+1,l} */
    P = (double *)calloc(N * N, sizeof(double));
    Q = (double *)calloc(N * N, sizeof(double));
    dgemm_(0, 0, (int)N, (int)N, (int)N, Fo, (int)N, R, (int)N, P, (int)N);
    dgemm_(0, 1, (int)N, (int)N, (int)N, P, (int)N, Fo, (int)N, Q, (int)N);
    Xi = (double *)calloc(N * N, sizeof(double));
    Lam = (double *)calloc(N * N, sizeof(double));
    for (j = 0; j < N; j++)
        for (i = 0; i < N; i++) Xi[i + N * j] = (i == j) - P[i + N * j];
    for (l = 1; l <= L; l++) {
        size_t a, b, n1 = bs[l];
        double *S = (double *)malloc(n1 * n1 * sizeof(double));
        for (b = 0; b < n1; b++)
            for (a = 0; a < n1; a++) {
                size_t ix = (D.boff[l] + a) + N * (D.boff[l] + b);
                S[a + n1 * b] = l == L ? R[ix] : Fd[ix] - Q[ix];
            }
        if (l < L) NGT_CHECK(dinv(S, (int)n1) == 0, "Sigma_%d singular", l);
        for (b = 0; b < n1; b++)
            for (a = 0; a < n1; a++) Lam[(D.boff[l] + a) + N * (D.boff[l] + b)] = S[a + n1 * b];
        free(S);
    }
    T = (double *)malloc(N * N * sizeof(double));
    Fhi = (double *)malloc(N * N * sizeof(double));
    dgemm_(0, 0, (int)N, (int)N, (int)N, Lam, (int)N, Xi, (int)N, T, (int)N);
    dgemm_(1, 0, (int)N, (int)N, (int)N, Xi, (int)N, T, (int)N, Fhi, (int)N);
    v = (double *)malloc(N * sizeof(double));
    want = (double *)calloc(N, sizeof(double));
    for (i = 0; i < N; i++) v[i] = urand() - 0.5;
    for (j = 0; j < N; j++)
        for (i = 0; i < N; i++) want[i] += Fhi[i + N * j] * v[j];
    NGT_OK(put_vec(g_cpu, &f.v, v));
    NGT_OK(ng_kfac_apply_inverse(f.pc, &f.v, &f.out));
    got = get_mat(g_cpu, &f.out);
    NGT_CHECK(relerr(got, want, N) < 1e-3, "regularised F-hat^-1 v: relative error %g against the dense Xi^T Lambda Xi v",
              relerr(got, want, N));
    fix_free(&f);
    /* the Tikhonov tridiagonal inverse of the same factors is another vector */
    NGT_OK(fix_init(&f, g_cpu, "4-3-4-3-4", NG_KFAC_TRIDIAG, 30, 0.0));
    NGT_OK(ng_kfac_accumulate(f.pc, f.net, f.m, 0.0, KEY, 1));
    NGT_OK(ng_kfac_refresh(f.pc, gamma));
    NGT_OK(put_vec(g_cpu, &f.v, v));
    NGT_OK(ng_kfac_apply_inverse(f.pc, &f.v, &f.out));
    tik = get_mat(g_cpu, &f.out);
    NGT_CHECK(relerr(tik, want, N) > 0.05, "Tikhonov and regularised tridiagonal inverses should differ: %g", relerr(tik, want, N));
    printf("  tridiagonal, regularised vs dense: %.2e; Tikhonov vs the regularised formula: %.3f\n", relerr(got, want, N),
           relerr(tik, want, N));
    free(Fd), free(Fo), free(R), free(P), free(Q), free(Xi), free(Lam), free(T), free(Fhi), free(v), free(want), free(got), free(tik);
    dense_free(&D);
    fix_free(&f);
    return NGT_PASS;
}

/* F-tilde (damped diagonal blocks) from the statistics of one batch; F-hat^-1 = Xi^T Lambda Xi
 * from section 4.3 with dense blocks. */
static int test_tridiag_inverse(void) {
    fix f;
    dense_ctx D;
    stats s;
    double gamma = 0.3, *Ft, *Fhi, *v, *want, *got, *Fh;
    size_t N, i, j;
    int l, L;
    NGT_OK(fix_init(&f, g_cpu, "4-3-4-3-4", NG_KFAC_TRIDIAG, 30, 0.0));
    NGT_OK(fold_and_read(&f, 0.0, 1, &s));
    NGT_OK(ng_kfac_refresh(f.pc, gamma));
    NGT_CHECK(dense_load(&f, &D, gamma, 1) == 0, "factors");
    N = D.N;
    L = f.L;
    /* F-tilde: block (i, j) = A-bar_{i-1,j-1} (x) G_{i,j} from the batch; the diagonal damped */
    Ft = (double *)calloc(N * N, sizeof(double));
    for (l = 1; l <= L; l++) {
        int k2;
        for (k2 = 1; k2 <= L; k2++) {
            int ni = f.d[l - 1] + 1, nj = f.d[k2 - 1] + 1;
            double *A, *G;
            if (l == k2) {
                put_kron(Ft, N, D.boff[l], D.boff[l], D.A[l], ni, ni, D.G[l], f.d[l], f.d[l]);
                continue;
            }
            A = moment(s.a[l - 1], ni, s.a[k2 - 1], nj, f.m);
            G = moment(s.g[l], f.d[l], s.g[k2], f.d[k2], f.m);
            put_kron(Ft, N, D.boff[l], D.boff[k2], A, ni, nj, G, f.d[l], f.d[k2]);
            free(A), free(G);
        }
    }
    /* Xi, Lambda dense */
    {
        double *Xi = (double *)calloc(N * N, sizeof(double)), *Lam = (double *)calloc(N * N, sizeof(double)), *T;
        size_t bs[NG_NET_MAX_LAYERS + 2];
        for (l = 1; l <= L; l++) bs[l] = (size_t)(f.d[l - 1] + 1) * f.d[l];
        for (i = 0; i < N; i++) Xi[i + N * i] = 1.0;
        for (l = L; l >= 1; l--) {
            /* Sigma_l = F_ll - Psi F_{l+1,l+1} Psi^T, Psi = F_{l,l+1} F_{l+1,l+1}^-1 */
            double *S = (double *)malloc(bs[l] * bs[l] * sizeof(double));
            size_t a, b;
            for (b = 0; b < bs[l]; b++)
                for (a = 0; a < bs[l]; a++) S[a + bs[l] * b] = Ft[(D.boff[l] + a) + N * (D.boff[l] + b)];
            if (l < L) {
                size_t n1 = bs[l], n2 = bs[l + 1];
                double *F12 = (double *)malloc(n1 * n2 * sizeof(double)), *F22i = (double *)malloc(n2 * n2 * sizeof(double));
                double *Psi = (double *)malloc(n1 * n2 * sizeof(double)), *Q = (double *)malloc(n1 * n1 * sizeof(double));
                for (b = 0; b < n2; b++)
                    for (a = 0; a < n1; a++) F12[a + n1 * b] = Ft[(D.boff[l] + a) + N * (D.boff[l + 1] + b)];
                for (b = 0; b < n2; b++)
                    for (a = 0; a < n2; a++) F22i[a + n2 * b] = Ft[(D.boff[l + 1] + a) + N * (D.boff[l + 1] + b)];
                dinv(F22i, (int)n2);
                dgemm_(0, 0, (int)n1, (int)n2, (int)n2, F12, (int)n1, F22i, (int)n2, Psi, (int)n1);
                dgemm_(0, 1, (int)n1, (int)n1, (int)n2, Psi, (int)n1, F12, (int)n1, Q, (int)n1); /* Psi F22 Psi^T = Psi F21 */
                for (a = 0; a < n1 * n1; a++) S[a] -= Q[a];
                for (b = 0; b < n2; b++)
                    for (a = 0; a < n1; a++) Xi[(D.boff[l] + a) + N * (D.boff[l + 1] + b)] = -Psi[a + n1 * b];
                free(F12), free(F22i), free(Psi), free(Q);
            }
            dinv(S, (int)bs[l]);
            for (b = 0; b < bs[l]; b++)
                for (a = 0; a < bs[l]; a++) Lam[(D.boff[l] + a) + N * (D.boff[l] + b)] = S[a + bs[l] * b];
            free(S);
        }
        T = (double *)malloc(N * N * sizeof(double));
        Fhi = (double *)malloc(N * N * sizeof(double));
        dgemm_(0, 0, (int)N, (int)N, (int)N, Lam, (int)N, Xi, (int)N, T, (int)N);
        dgemm_(1, 0, (int)N, (int)N, (int)N, Xi, (int)N, T, (int)N, Fhi, (int)N);
        free(Xi), free(Lam), free(T);
    }
    /* F-hat = (F-hat^-1)^-1 agrees with F-tilde on the tridiagonal blocks */
    Fh = (double *)malloc(N * N * sizeof(double));
    memcpy(Fh, Fhi, N * N * sizeof(double));
    NGT_CHECK(dinv(Fh, (int)N) == 0, "F-hat^-1 singular");
    {
        double maxd = 0.0, maxf = 0.0, offd = 0.0;
        int bi, bj;
        for (bi = 1; bi <= L; bi++)
            for (bj = 1; bj <= L; bj++) {
                size_t ni = (size_t)(f.d[bi - 1] + 1) * f.d[bi], nj = (size_t)(f.d[bj - 1] + 1) * f.d[bj], a, b;
                for (b = 0; b < nj; b++)
                    for (a = 0; a < ni; a++) {
                        size_t ix = (D.boff[bi] + a) + N * (D.boff[bj] + b);
                        double dd = fabs(Fh[ix] - Ft[ix]);
                        if (abs(bi - bj) <= 1) maxd = fmax(maxd, dd);
                        else offd = fmax(offd, dd);
                        maxf = fmax(maxf, fabs(Ft[ix]));
                    }
            }
        NGT_CHECK(maxd < 1e-9 * maxf, "F-hat differs from F-tilde on the tridiagonal blocks by %g (scale %g)", maxd, maxf);
        NGT_CHECK(offd > 1e-6 * maxf, "F-hat equals F-tilde beyond the tridiagonal (%g): the test network is too simple", offd);
    }
    v = (double *)malloc(N * sizeof(double));
    want = (double *)calloc(N, sizeof(double));
    for (i = 0; i < N; i++) v[i] = urand() - 0.5;
    for (j = 0; j < N; j++)
        for (i = 0; i < N; i++) want[i] += Fhi[i + N * j] * v[j];
    NGT_OK(put_vec(g_cpu, &f.v, v));
    NGT_OK(ng_kfac_apply_inverse(f.pc, &f.v, &f.out));
    got = get_mat(g_cpu, &f.out);
    NGT_CHECK(relerr(got, want, N) < 1e-3, "F-hat^-1 v: relative error %g against the dense Xi^T Lambda Xi v", relerr(got, want, N));
    free(Ft), free(Fhi), free(Fh), free(v), free(want), free(got);
    free_stats(&f, &s);
    dense_free(&D);
    fix_free(&f);
    return NGT_PASS;
}

/* ---- the scalar rules --------------------------------------------------------------------------- */

static int test_scalar_rules(void) {
    int trial;
    for (trial = 0; trial < 20; trial++) {
        double q00 = 0.5 + 3 * urand(), q11 = 0.5 + 3 * urand(), q01 = (urand() - 0.5) * sqrt(q00 * q11) * 1.8;
        double b0 = urand() - 0.5, b1 = urand() - 0.5, a, m, M, best = 1e300, ga = 0, gm = 0;
        int i, j;
        M = ng_kfac_solve2(q00, q01, q11, b0, b1, 1, &a, &m);
        /* brute force on a grid around the answer, then check nothing beats it */
        for (i = -200; i <= 200; i++)
            for (j = -200; j <= 200; j++) {
                double x = a + i * 0.01, y = m + j * 0.01;
                double v = 0.5 * (q00 * x * x + 2 * q01 * x * y + q11 * y * y) + b0 * x + b1 * y;
                if (v < best) best = v, ga = x, gm = y;
            }
        NGT_CHECK(fabs(ga - a) < 0.011 && fabs(gm - m) < 0.011, "grid minimum (%g, %g), solve2 (%g, %g)", ga, gm, a, m);
        NGT_CHECK(M <= best + 1e-12, "M %g above the grid's %g", M, best);
        M = ng_kfac_solve2(q00, q01, q11, b0, b1, 0, &a, &m);
        NGT_CHECK(m == 0.0 && fabs(a + b0 / q00) < 1e-15 && fabs(M + 0.5 * b0 * b0 / q00) < 1e-15, "1-D step");
    }
    {
        double w = pow(19.0 / 20.0, 5);
        NGT_CHECK(ng_kfac_lm_update(10.0, 0.9, w) == 10.0 * w, "rho > 3/4 shrinks lambda");
        NGT_CHECK(ng_kfac_lm_update(10.0, 0.1, w) == 10.0 / w, "rho < 1/4 grows lambda");
        NGT_CHECK(ng_kfac_lm_update(10.0, 0.5, w) == 10.0, "rho in [1/4, 3/4] keeps lambda");
        NGT_CHECK(ng_kfac_lm_update(10.0, NAN, w) == 10.0 / w, "a non-finite rho grows lambda");
        NGT_CHECK(ng_kfac_ema_weight(1, 0.95) == 0.0 && ng_kfac_ema_weight(2, 0.95) == 0.5 &&
                      ng_kfac_ema_weight(100, 0.95) == 0.95, "eps_k = min(1 - 1/k, 0.95)");
        NGT_CHECK(ng_batch_schedule_exp(1, 1000, 500, 60000) == 1000 && ng_batch_schedule_exp(500, 1000, 500, 60000) == 60000 &&
                      ng_batch_schedule_exp(900, 1000, 500, 60000) == 60000, "m_1 = 1000, m_500 = |S|");
        {
            int m250 = ng_batch_schedule_exp(250, 1000, 500, 60000);
            NGT_CHECK(abs(m250 - (int)(1000 * sqrt(60.0) * exp(-0.5 / (499 / log(60.0))) + 0.5)) <= 1, "m_250 = %d", m250);
        }
    }
    return NGT_PASS;
}

/* v^T F u by appendix C equals v^T (G u) from the Gauss-Newton product of the engine */
static int test_fisher_gram(void) {
    fix f;
    ng_tensor work, *vv[3], vecs[3];
    double gram[9];
    void *mem;
    int i, j;
    NGT_OK(fix_init(&f, g_cpu, "5-4-3-5", NG_KFAC_BLOCKDIAG, 25, 0.0));
    NGT_OK(ng_alloc(g_cpu, (3 * f.np + (size_t)f.d[f.L] * f.m * 4) * sizeof(float), &mem));
    for (i = 0; i < 3; i++) {
        double *h = (double *)malloc(f.np * sizeof(double));
        size_t k;
        vecs[i] = ng_tensor_matrix((float *)mem + (size_t)i * f.np, (int)f.np, 1, (int)f.np);
        for (k = 0; k < f.np; k++) h[k] = urand() - 0.5;
        NGT_OK(put_vec(g_cpu, &vecs[i], h));
        free(h);
        vv[i] = &vecs[i];
    }
    work = ng_tensor_matrix((float *)mem + 3 * f.np, f.d[f.L] * f.m * 4, 1, f.d[f.L] * f.m * 4);
    NGT_OK(ng_net_fisher_gram(f.net, 3, (const ng_tensor *const *)vv, &work, gram));
    for (i = 0; i < 3; i++) {
        NGT_OK(ng_net_gvp(f.net, &vecs[i], &f.out));
        for (j = 0; j < 3; j++) {
            float d;
            NGT_OK(ng_dot(g_cpu, f.np, vecs[j].data, f.out.data, &d));
            NGT_CHECK(fabs(gram[j + 3 * i] - d) < 1e-4 * (fabs(d) + 1e-3), "gram[%d,%d] = %g, v^T G u = %g", j, i, gram[j + 3 * i], (double)d);
        }
    }
    /* a prefix of the batch whose forward pass is reused equals the prefix set afresh */
    {
        double g1[9], g2[9];
        ng_tensor xv = ng_tensor_matrix(f.x.data, f.x.rows, 9, f.x.ld);
        NGT_OK(ng_model_gradient(f.net, &f.x, NULL));
        NGT_OK(ng_net_batch_prefix(f.net, 9));
        NGT_OK(ng_net_fisher_gram(f.net, 3, (const ng_tensor *const *)vv, &work, g1));
        NGT_OK(ng_net_set_batch(f.net, &xv, NULL));
        NGT_OK(ng_net_fisher_gram(f.net, 3, (const ng_tensor *const *)vv, &work, g2));
        for (i = 0; i < 9; i++) NGT_CHECK(fabs(g1[i] - g2[i]) <= 1e-6 * (fabs(g2[i]) + 1e-6), "prefix gram[%d] %g vs %g", i, g1[i], g2[i]);
        NGT_CHECK(ng_net_batch_prefix(f.net, f.m + 1) == NG_ERR_INVALID_ARG, "a prefix longer than the batch is refused");
        ng_clear_error();
    }
    ng_free(g_cpu, mem);
    fix_free(&f);
    return NGT_PASS;
}

/* ---- invariance (section 10) -------------------------------------------------------------------- */

/* Transform the factors as a network with a-bar'_i = Omega_i a-bar_i (homogeneous row kept) and
 * s'_i = Phi_i^-1 s_i would produce them, transform the gradient likewise, apply, map back: the
 * update must be the original one (damping gamma = 1e-6, negligible). */
static int invariance(int approx) {
    fix f;
    ng_tensor t;
    double *grad, *d0, *d1, *Om[NG_NET_MAX_LAYERS + 1], *Ph[NG_NET_MAX_LAYERS + 1], *Phi_inv[NG_NET_MAX_LAYERS + 1];
    int l, L, i, j;
    size_t k;
    NGT_OK(fix_init(&f, g_cpu, "4-3-5-4", approx, 60, 0.0));
    L = f.L;
    NGT_OK(ng_kfac_accumulate(f.pc, f.net, f.m, 0.0, KEY, 1));
    NGT_OK(ng_kfac_refresh(f.pc, 1e-6));
    grad = (double *)malloc(f.np * sizeof(double));
    for (k = 0; k < f.np; k++) grad[k] = urand() - 0.5;
    NGT_OK(put_vec(g_cpu, &f.v, grad));
    NGT_OK(ng_kfac_apply_inverse(f.pc, &f.v, &f.out));
    d0 = get_mat(g_cpu, &f.out);
    /* random transforms */
    for (l = 0; l <= L; l++) {
        int n = f.d[l] + 1, d = f.d[l];
        Om[l] = (double *)calloc((size_t)n * n, sizeof(double));
        for (j = 0; j < n; j++)
            for (i = 0; i < n - 1; i++) Om[l][i + n * j] = (i == j ? 1.0 : 0.0) + 0.4 * (urand() - 0.5);
        Om[l][(n - 1) + n * (n - 1)] = 1.0; /* the homogeneous coordinate stays 1 */
        Ph[l] = (double *)calloc((size_t)d * d, sizeof(double));
        for (j = 0; j < d; j++)
            for (i = 0; i < d; i++) Ph[l][i + d * j] = (i == j ? 1.0 : 0.0) + 0.4 * (urand() - 0.5);
        Phi_inv[l] = (double *)malloc((size_t)d * d * sizeof(double));
        memcpy(Phi_inv[l], Ph[l], (size_t)d * d * sizeof(double));
        NGT_CHECK(dinv(Phi_inv[l], d) == 0, "singular Phi");
    }
    /* factors: A' = Om A Om^T, G' = Ph^T G Ph; cross: A'_{l-1,l} = Om_{l-1} A Om_l^T, G'_{l,l+1} = Ph_l^T G Ph_{l+1} */
    for (l = 0; l < L; l++) {
        int n = f.d[l] + 1;
        double *A, *T = (double *)malloc((size_t)n * n * sizeof(double)), *R = (double *)malloc((size_t)n * n * sizeof(double));
        NGT_OK(ng_kfac_factor(f.pc, 'A', l, l, &t));
        A = get_mat(g_cpu, &t);
        dgemm_(0, 0, n, n, n, Om[l], n, A, n, T, n);
        dgemm_(0, 1, n, n, n, T, n, Om[l], n, R, n);
        NGT_OK(put_vec(g_cpu, &t, R));
        free(A), free(T), free(R);
        if (approx == NG_KFAC_TRIDIAG && l + 1 < L) {
            int n2 = f.d[l + 1] + 1;
            NGT_OK(ng_kfac_factor(f.pc, 'A', l, l + 1, &t));
            A = get_mat(g_cpu, &t);
            T = (double *)malloc((size_t)n * n2 * sizeof(double));
            R = (double *)malloc((size_t)n * n2 * sizeof(double));
            dgemm_(0, 0, n, n2, n, Om[l], n, A, n, T, n);
            dgemm_(0, 1, n, n2, n2, T, n, Om[l + 1], n2, R, n);
            NGT_OK(put_vec(g_cpu, &t, R));
            free(A), free(T), free(R);
        }
    }
    for (l = 1; l <= L; l++) {
        int d = f.d[l];
        double *G, *T = (double *)malloc((size_t)d * d * sizeof(double)), *R = (double *)malloc((size_t)d * d * sizeof(double));
        NGT_OK(ng_kfac_factor(f.pc, 'G', l, l, &t));
        G = get_mat(g_cpu, &t);
        dgemm_(1, 0, d, d, d, Ph[l], d, G, d, T, d);
        dgemm_(0, 0, d, d, d, T, d, Ph[l], d, R, d);
        NGT_OK(put_vec(g_cpu, &t, R));
        free(G), free(T), free(R);
        if (approx == NG_KFAC_TRIDIAG && l < L) {
            int d2 = f.d[l + 1];
            NGT_OK(ng_kfac_factor(f.pc, 'G', l, l + 1, &t));
            G = get_mat(g_cpu, &t);
            T = (double *)malloc((size_t)d * d2 * sizeof(double));
            R = (double *)malloc((size_t)d * d2 * sizeof(double));
            dgemm_(1, 0, d, d2, d, Ph[l], d, G, d, T, d);
            dgemm_(0, 0, d, d2, d2, T, d, Ph[l + 1], d2, R, d);
            NGT_OK(put_vec(g_cpu, &t, R));
            free(G), free(T), free(R);
        }
    }
    NGT_OK(ng_kfac_refresh(f.pc, 1e-6));
    /* gradient of W' = Ph^-1 W Om^-1: dW' = Ph^T dW Om^T; the update maps back as dW = Ph dW' Om */
    {
        double *gt = (double *)malloc(f.np * sizeof(double));
        for (l = 1; l <= L; l++) {
            int r = f.d[l], c = f.d[l - 1] + 1;
            double *T = (double *)malloc((size_t)r * c * sizeof(double));
            dgemm_(1, 0, r, c, r, Ph[l], r, grad + f.off[l], r, T, r);
            dgemm_(0, 1, r, c, c, T, r, Om[l - 1], c, gt + f.off[l], r);
            free(T);
        }
        NGT_OK(put_vec(g_cpu, &f.v, gt));
        NGT_OK(ng_kfac_apply_inverse(f.pc, &f.v, &f.out));
        d1 = get_mat(g_cpu, &f.out);
        for (l = 1; l <= L; l++) {
            int r = f.d[l], c = f.d[l - 1] + 1;
            double *T = (double *)malloc((size_t)r * c * sizeof(double));
            dgemm_(0, 0, r, c, r, Ph[l], r, d1 + f.off[l], r, T, r);
            dgemm_(0, 0, r, c, c, T, r, Om[l - 1], c, gt + f.off[l], r);
            free(T);
        }
        NGT_CHECK(relerr(gt, d0, f.np) < 2e-2, "%s: the update of the transformed network, mapped back, differs by %g (relative)",
                  ng_kfac_approx_name(approx), relerr(gt, d0, f.np));
        free(gt);
    }
    for (l = 0; l <= L; l++) free(Om[l]), free(Ph[l]), free(Phi_inv[l]);
    free(grad), free(d0), free(d1);
    fix_free(&f);
    return NGT_PASS;
}

static int test_invariance(void) {
    int r = invariance(NG_KFAC_BLOCKDIAG);
    if (r != NGT_PASS) return r;
    return invariance(NG_KFAC_TRIDIAG);
}

/* ---- failures ----------------------------------------------------------------------------------- */

static int test_inverse_recovery(void) {
    fix f;
    ng_tensor t;
    ng_kfac_state st;
    ng_status s;
    double *G;
    int i, d;
    NGT_OK(fix_init(&f, g_cpu, "4-3-4", NG_KFAC_BLOCKDIAG, 30, 0.0));
    NGT_OK(ng_kfac_accumulate(f.pc, f.net, f.m, 0.0, KEY, 1));
    /* G_2 = -I: indefinite until gamma / pi > 1, reached by the recovery path (x 10 steps) */
    NGT_OK(ng_kfac_factor(f.pc, 'G', 2, 2, &t));
    d = t.rows;
    G = (double *)calloc((size_t)d * d, sizeof(double));
    for (i = 0; i < d; i++) G[i + d * i] = -1.0;
    NGT_OK(put_vec(g_cpu, &t, G));
    NGT_OK(ng_kfac_refresh(f.pc, 1e-3));
    NGT_OK(ng_kfac_get_state(f.pc, &st));
    NGT_CHECK(st.inv_retries >= 2 && st.gamma > 1e-3, "recovered with %d retries, gamma %g", st.inv_retries, st.gamma);
    /* NaN statistics: an error naming the cause, never NaN directions */
    for (i = 0; i < d * d; i++) G[i] = NAN;
    NGT_OK(put_vec(g_cpu, &t, G));
    s = ng_kfac_refresh(f.pc, 1e-3);
    NGT_CHECK(s == NG_ERR_NUMERIC && strstr(ng_last_error(), "not finite"), "NaN factor: status %d, '%s'", (int)s,
              ng_last_error());
    ng_clear_error();
    free(G);
    fix_free(&f);
    return NGT_PASS;
}

static int test_bad_config(void) {
    ng_kfac_config c;
    ng_kfac_config_default(&c);
    c.T2 = 30;
    NGT_CHECK(ng_kfac_config_check(&c) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "--T2"), "T2 not a multiple of T3");
    ng_clear_error();
    ng_kfac_config_default(&c);
    c.tau1 = 0.0;
    NGT_CHECK(ng_kfac_config_check(&c) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "--tau1"), "tau1 = 0");
    ng_clear_error();
    ng_kfac_config_default(&c);
    c.lambda0 = NAN;
    NGT_CHECK(ng_kfac_config_check(&c) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "--lambda0"), "lambda0 NaN");
    ng_clear_error();
    {
        /* batch normalisation is refused with a way out */
        ng_net_config nc;
        ng_model *net = NULL;
        ng_precond *p = NULL;
        ng_status s;
        ng_net_config_default(&nc);
        nc.loss = NG_LOSS_BERNOULLI;
        NGT_OK(ng_net_parse_spec("4-3+bn-4", NG_ACT_TANH, NG_ACT_LOGISTIC, &nc));
        NGT_OK(ng_net_create(g_cpu, &nc, &net));
        ng_kfac_config_default(&c);
        s = ng_precond_kfac_init(g_cpu, net, &c, &p);
        NGT_CHECK(s == NG_ERR_UNSUPPORTED && strstr(ng_last_error(), "+bn"), "batch norm: %d %s", (int)s, ng_last_error());
        ng_clear_error();
        ng_net_free(net);
    }
    return NGT_PASS;
}

/* ---- whole steps: CPU vs emulated CUDA ---------------------------------------------------------- */

/* the network's chunk in run_steps (0: the default, larger than its batch of 32) */
static int g_chunk = 0;

/* kfac_run.h's run: steps updates on be with g_chunk and g_inverse; theta (256 floats) gets the parameters */
static ng_status run_steps(ng_backend *be, int approx, int steps, float *theta, size_t *np, int async_lag) {
    kfac_run o;
    memset(&o, 0, sizeof o);
    o.approx = approx;
    o.steps = steps;
    o.async_lag = async_lag;
    o.inverse = g_inverse;
    o.chunk = g_chunk;
    return kfac_run_steps(be, &o, theta, 256, np);
}

static int test_cpu_vs_cuda(void) {
    float a[256], b[256];
    size_t na = 0, nb = 0, i;
    int approx;
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    for (approx = 0; approx < 4; approx++) {
        double num = 0, den = 0;
        /* approx 2, 3: block-diagonal, block-tridiagonal with the regularised inverse */
        g_inverse = approx >= 2 ? NG_KFAC_INV_REGULARIZED : NG_KFAC_INV_TIKHONOV;
        NGT_OK(run_steps(g_cpu, approx % 2, 8, a, &na, -1));
        NGT_OK(run_steps(g_cuda, approx % 2, 8, b, &nb, -1));
        g_inverse = NG_KFAC_INV_TIKHONOV;
        NGT_CHECK(na == nb && na <= 256, "sizes");
        for (i = 0; i < na; i++) num += (a[i] - b[i]) * (a[i] - b[i]), den += a[i] * a[i];
        NGT_CHECK(sqrt(num / den) < 1e-3, "%s%s: 8 K-FAC steps on cpu and cuda differ by %g (relative)", ng_kfac_approx_name(approx % 2),
                  approx >= 2 ? " (regularised inverse)" : "", sqrt(num / den));
    }
    return NGT_PASS;
}

/* gamma after a T2 update is one of the three candidates {omega2 gamma, gamma, gamma / omega2}
 * (section 6.6), and lambda moved by the LM rule's factor omega1 (or stayed) at T1 updates. */
static int test_gamma_lambda_rules(void) {
    ng_net_config nc;
    ng_model *net = NULL;
    ng_precond *pc = NULL;
    ng_update *upd = NULL;
    ng_batches b;
    ng_trainer tr;
    ng_kfac_config kc;
    ng_sgd_config sc;
    ng_kfac_state st;
    float *x;
    int n = 96, dim = 6, i, moved = 0;
    double w1 = pow(19.0 / 20.0, 2), w2 = pow(sqrt(19.0 / 20.0), 4), g0, l0;
    NGT_OK(kfac_run_net_config(&nc)); /* kfac_run.h's network */
    NGT_OK(ng_net_create(g_cpu, &nc, &net));
    x = (float *)malloc((size_t)n * dim * sizeof(float));
    for (i = 0; i < n * dim; i++) x[i] = (float)urand();
    ng_kfac_config_default(&kc);
    kc.timing = 0;
    kc.T1 = 2;
    kc.T2 = 4;
    kc.T3 = 2;
    memset(&sc, 0, sizeof sc);
    sc.lr = 1.0f;
    NGT_OK(ng_precond_kfac_init(g_cpu, net, &kc, &pc));
    NGT_OK(ng_update_sgd_init(g_cpu, net, &sc, &upd));
    NGT_OK(ng_batches_init(&b, g_cpu, x, dim, n, 32, 7, 0, 1));
    NGT_OK(ng_trainer_init(&tr, net, pc, upd, &b, 7, NULL));
    NGT_OK(ng_kfac_get_state(pc, &st));
    g0 = st.gamma;
    l0 = st.lambda;
    NGT_CHECK(fabs(g0 - sqrt(150.0 + 1e-5)) < 1e-12 && l0 == 150.0, "initial gamma %g (sqrt(lambda0 + eta)), lambda %g", g0, l0);
    for (i = 1; i <= 12; i++) {
        NGT_OK(ng_trainer_step(&tr, NULL));
        NGT_OK(ng_kfac_get_state(pc, &st));
        if (i % 4 == 0) {
            double r[3] = {st.gamma / g0, w2, 1.0 / w2};
            NGT_CHECK(fabs(r[0] - 1.0) < 1e-12 || fabs(r[0] - r[1]) < 1e-12 || fabs(r[0] - r[2]) < 1e-12,
                      "update %d: gamma %g is not a candidate of %g", i, st.gamma, g0);
            moved += fabs(r[0] - 1.0) > 1e-12;
        } else {
            NGT_CHECK(st.gamma == g0, "update %d: gamma changed outside a T2 update", i);
        }
        if (i % 2 == 0) {
            double want = ng_kfac_lm_update(l0, st.rho, w1);
            NGT_CHECK(fabs(st.lambda - want) <= 1e-12 * want, "update %d: lambda %g, the LM rule on rho %g gives %g", i, st.lambda,
                      st.rho, want);
        } else {
            NGT_CHECK(st.lambda == l0, "update %d: lambda changed outside a T1 update", i);
        }
        g0 = st.gamma;
        l0 = st.lambda;
    }
    (void)moved;
    ng_batches_free(&b);
    ng_update_free(upd);
    ng_precond_free(pc);
    ng_net_free(net);
    free(x);
    return NGT_PASS;
}

/* the same steps twice on one backend: identical (deterministic) */
static int test_deterministic(void) {
    float a[256], b[256];
    size_t na = 0, nb = 0;
    NGT_OK(run_steps(g_cpu, NG_KFAC_TRIDIAG, 6, a, &na, -1));
    NGT_OK(run_steps(g_cpu, NG_KFAC_TRIDIAG, 6, b, &nb, -1));
    NGT_CHECK(na == nb && memcmp(a, b, na * sizeof(float)) == 0, "two identical K-FAC runs differ");
    return NGT_PASS;
}

/* A batch of several chunks (32 cases, chunk 5): the gradient runs chunk 0 last and leaves its
 * forward pass in the buffers, so the statistics (tau1 m = 4 cases) and the Fisher gram (tau2 m = 8:
 * chunk 0 and 3 cases of chunk 1) reuse it. Counted with the profiler over 4 updates (rho at updates
 * 2 and 4, T1 = 2): per update 7 forward passes of the gradient (chunks of 5, ..., 5, 2), 1 for the
 * gram's second chunk, and 7 for each rho evaluation: 4 (7 + 1) + 2 7 = 46 (without the reuse 54).
 * The trajectory equals the one-chunk run's up to the order of the float32 sums over chunks
 * (gradient, objective, gram): 8 updates agree to 1e-5 relative (observed ~1e-7). */
static int test_chunked_reuse(void) {
    float a[256], b[256];
    size_t na = 0, nb = 0, i;
    double num = 0.0, den = 0.0;
    ng_profile_config pc;
    ng_profile_row rows[64];
    int nr, r;
    uint64_t forwards = 0;
    memset(&pc, 0, sizeof pc);
    pc.measure = 1;
    NGT_OK(ng_profile_start(g_cpu, &pc));
    g_chunk = 5;
    {
        ng_status s = run_steps(g_cpu, NG_KFAC_BLOCKDIAG, 4, a, &na, -1);
        NGT_OK(ng_profile_finish());
        NGT_OK(s);
    }
    nr = ng_profile_rows(rows, 64);
    for (r = 0; r < nr && r < 64; r++)
        if (strcmp(rows[r].name, "net forward") == 0) forwards += rows[r].calls;
    ng_profile_reset();
    NGT_CHECK(forwards == 46, "%llu forward passes in 4 chunked K-FAC updates (want 46: the prefixes reuse chunk 0's)",
              (unsigned long long)forwards);
    NGT_OK(run_steps(g_cpu, NG_KFAC_BLOCKDIAG, 8, a, &na, -1));
    g_chunk = 0;
    NGT_OK(run_steps(g_cpu, NG_KFAC_BLOCKDIAG, 8, b, &nb, -1));
    NGT_CHECK(na == nb, "sizes");
    for (i = 0; i < na; i++) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
    printf("  chunk 5 vs one chunk after 8 K-FAC updates: relative difference %.3g\n", sqrt(num / den));
    NGT_CHECK(sqrt(num / den) < 1e-5, "8 K-FAC updates with chunk 5 and with one chunk differ by %g (relative)", sqrt(num / den));
    return NGT_PASS;
}

/* Refreshes on a second backend and thread: with zero staleness exactly the synchronous result
 * (across refreshes with gamma candidates: T3 4, T2 8, 17 updates); with staleness 3 a different,
 * finite trajectory. */
static int test_async(void) {
    float a[256], b[256], c3[256];
    size_t na = 0, nb = 0, nc = 0, i;
    int approx;
    for (approx = 0; approx < 2; approx++) {
        NGT_OK(run_steps(g_cpu, approx, 17, a, &na, -1));
        NGT_OK(run_steps(g_cpu, approx, 17, b, &nb, 0));
        NGT_CHECK(na == nb && memcmp(a, b, na * sizeof(float)) == 0, "%s: asynchronous refreshes with staleness 0 differ from synchronous ones",
                  ng_kfac_approx_name(approx));
        NGT_OK(run_steps(g_cpu, approx, 17, c3, &nc, 3));
        for (i = 0; i < nc; i++) NGT_CHECK(isfinite(c3[i]), "staleness 3: parameter %zu is %g", i, (double)c3[i]);
        NGT_CHECK(memcmp(a, c3, na * sizeof(float)) != 0, "staleness 3 gave the synchronous result (the lag is not applied)");
    }
    return NGT_PASS;
}

/* The block-tridiagonal refresh sends its appendix-B eigendecompositions, and the regularised
 * inverse its factors' eigendecompositions, to ng_syevd_batched: on the CPU (two threads, so the
 * problems run concurrently) 17 updates (refreshes with gamma candidates) end bit-identical to the
 * same run on a copy of the CPU backend without the batched slot, where K-FAC keeps its one-at-a-time
 * path (ng_syevd_batched_supported = 0): block-tridiagonal with Tikhonov damping and with the
 * regularised inverse, block-diagonal with the regularised inverse. */
static int test_batched_bitexact(void) {
    struct ng_backend_i fi = *g_cpu->iface;
    ng_backend seq = *g_cpu;
    float a[256], b[256];
    size_t na = 0, nb = 0;
    int inv, before = omp_get_max_threads(), fail = 0;
    fi.syevd_batched = NULL;
    seq.iface = &fi;
    ng_cpu_set_threads(2);
    for (inv = 0; inv < 3 && !fail; inv++) {
        /* 0, 1: block-tridiagonal with Tikhonov damping / the regularised inverse; 2: block-diagonal regularised */
        int approx = inv < 2 ? NG_KFAC_TRIDIAG : NG_KFAC_BLOCKDIAG;
        g_inverse = inv ? NG_KFAC_INV_REGULARIZED : NG_KFAC_INV_TIKHONOV;
        if (run_steps(g_cpu, approx, 17, a, &na, -1) != NG_OK || run_steps(&seq, approx, 17, b, &nb, -1) != NG_OK) {
            printf("  %s\n", ng_last_error());
            fail = 1;
        } else if (na != nb || memcmp(a, b, na * sizeof(float)) != 0) {
            printf("  %s%s: the batched refreshes differ from the one-at-a-time ones\n", ng_kfac_approx_name(approx),
                   inv ? " (regularised)" : "");
            fail = 1;
        }
    }
    g_inverse = NG_KFAC_INV_TIKHONOV;
    ng_cpu_set_threads(before);
    return fail ? NGT_FAIL : NGT_PASS;
}

int main(void) {
    if (ngt_open_backends(&g_cpu, &g_cuda, g_cuda_reason, sizeof g_cuda_reason)) return 1;
    NGT_RUN(test_scalar_rules);
    NGT_RUN(test_bad_config);
    NGT_RUN(test_factors_definition);
    NGT_RUN(test_factor_expectation);
    NGT_RUN(test_blockdiag_inverse);
    NGT_RUN(test_regularized_inverse);
    NGT_RUN(test_tridiag_regularized);
    NGT_RUN(test_tridiag_inverse);
    NGT_RUN(test_fisher_gram);
    NGT_RUN(test_invariance);
    NGT_RUN(test_inverse_recovery);
    NGT_RUN(test_gamma_lambda_rules);
    NGT_RUN(test_deterministic);
    NGT_RUN(test_async);
    NGT_RUN(test_chunked_reuse);
    NGT_RUN(test_batched_bitexact);
    NGT_RUN(test_cpu_vs_cuda);
    ng_backend_free(g_cuda);
    ng_backend_free(g_cpu);
    return ngt_finish();
}
