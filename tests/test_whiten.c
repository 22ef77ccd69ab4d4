/* test_whiten.c: the whitening statistics of natgrad/whiten.h (PRONG eq. 7) against float64
 * references computed here:
 *   - the mean and covariance merged over batches of different sizes (samples in columns and in
 *     rows) equal the float64 mean and covariance of all samples;
 *   - U Sigma U^T = diag(lambda / (lambda + eps)), i.e. the whitened samples have identity
 *     covariance up to eps, checked on the very samples the statistics came from (ng_whiten_apply);
 *   - U^-1 U = I, U^T U = (Sigma + eps I)^-1 (sign-free, so comparable across backends);
 *   - bad input refused with a message; NaN samples give NG_ERR_NUMERIC;
 *   - the CPU and the (emulated) CUDA backend agree. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends.h"
#include "harness.h"
#include "natgrad/backend.h"
#include "natgrad/tensor.h"
#include "natgrad/whiten.h"

static ng_backend *g_cpu, *g_cuda;
static char g_cuda_reason[512];

static uint64_t g_state = 4242;
static double urand(void) {
    g_state = g_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_state >> 11) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2.0 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()); }

enum { D = 12, N = 700 };

/* samples x = mu + A z with z ~ N(0, I): correlated, with means far from 0 (as logistic units) */
static void make_samples(float *X, int d, int n) {
    double A[D * D], mu[D], z[D];
    int i, j, c;
    for (i = 0; i < d; i++) {
        mu[i] = 3.0 + 0.5 * i;
        for (j = 0; j < d; j++) A[i + d * j] = (i == j ? 1.0 : 0.0) + 0.12 * nrand();
    }
    for (c = 0; c < n; c++) {
        for (j = 0; j < d; j++) z[j] = nrand();
        for (i = 0; i < d; i++) {
            double v = mu[i];
            for (j = 0; j < d; j++) v += A[i + d * j] * z[j];
            X[i + (size_t)d * c] = (float)v;
        }
    }
}

static void ref_stats(const float *X, int d, int n, double *mu, double *S) {
    int i, j, c;
    for (i = 0; i < d; i++) {
        mu[i] = 0.0;
        for (c = 0; c < n; c++) mu[i] += X[i + (size_t)d * c];
        mu[i] /= n;
    }
    for (i = 0; i < d; i++)
        for (j = 0; j < d; j++) {
            double s = 0.0;
            for (c = 0; c < n; c++) s += (X[i + (size_t)d * c] - mu[i]) * (X[j + (size_t)d * c] - mu[j]);
            S[i + d * j] = s / n;
        }
}

typedef struct result {
    float mean[D], M[D * D], UT[D * D], Uinv[D * D], Y[D * N];
    float lambda[D];
} result;

/* Add X in three batches (columns, rows, columns), compute with eps, whiten all samples. */
static ng_status run_case(ng_backend *be, const float *X, float eps, result *r) {
    ng_whiten w;
    float *dX, *dXt, *dY, *dUi, *Xt;
    int i, c;
    Xt = (float *)malloc(sizeof(float) * D * N);
    for (c = 0; c < N; c++)
        for (i = 0; i < D; i++) Xt[c + (size_t)N * i] = X[i + (size_t)D * c];
    NG_TRY(ng_whiten_init(be, D, N, &w));
    NG_TRY(ng_alloc(be, sizeof(float) * (3 * D * N + D * D), (void **)&dX));
    dXt = dX + D * N;
    dY = dXt + D * N;
    dUi = dY + D * N;
    NG_TRY(ng_set(be, dX, X, sizeof(float) * D * N));
    NG_TRY(ng_set(be, dXt, Xt, sizeof(float) * D * N));
    /* batches: columns [0, 100), rows [100, 350) of the transposed copy, columns [350, N) */
    NG_TRY(ng_whiten_add(&w, dX, D, 100, 0));
    NG_TRY(ng_whiten_add(&w, dXt + 100, N, 250, 1));
    NG_TRY(ng_whiten_add(&w, dX + (size_t)D * 350, D, N - 350, 0));
    NG_TRY(ng_whiten_compute(&w, eps));
    NG_TRY(ng_whiten_uinv(&w, dUi, D));
    NG_TRY(ng_whiten_apply(&w, dX, D, N, dY, D));
    NG_TRY(ng_get(be, r->mean, w.mean.data, sizeof r->mean));
    NG_TRY(ng_get(be, r->M, w.M.data, sizeof r->M));
    NG_TRY(ng_get(be, r->UT, w.UT.data, sizeof r->UT));
    NG_TRY(ng_get(be, r->lambda, w.lambda.data, sizeof r->lambda));
    NG_TRY(ng_get(be, r->Uinv, dUi, sizeof r->Uinv));
    NG_TRY(ng_get(be, r->Y, dY, sizeof r->Y));
    ng_free(be, dX);
    ng_whiten_free(&w);
    free(Xt);
    return NG_OK;
}

static int check_case(ng_backend *be) {
    static float X[D * N];
    static result r;
    double mu[D], S[D * D], C[D * D], ymu[D];
    float eps = 1e-3f;
    int i, j, k;
    g_state = 4242;
    make_samples(X, D, N);
    ref_stats(X, D, N, mu, S);
    NGT_OK(run_case(be, X, eps, &r));
    /* mean and covariance (lower triangle of M / n): float32 sums of 700 samples of size ~10 */
    for (i = 0; i < D; i++) NGT_CLOSE(r.mean[i], mu[i], 1e-4 * (1.0 + fabs(mu[i])), "mean");
    for (j = 0; j < D; j++)
        for (i = j; i < D; i++) NGT_CLOSE(r.M[i + D * j] / (double)N, S[i + D * j], 2e-4, "covariance (lower triangle)");
    /* U Sigma U^T = diag(lambda / (lambda + eps)) with U = UT^T */
    for (i = 0; i < D; i++)
        for (j = 0; j < D; j++) {
            double s = 0.0;
            int a, b;
            for (a = 0; a < D; a++)
                for (b = 0; b < D; b++) s += (double)r.UT[a + D * i] * S[a + D * b] * (double)r.UT[b + D * j];
            C[i + D * j] = s;
        }
    for (i = 0; i < D; i++) {
        double l = r.lambda[i] > 0 ? r.lambda[i] : 0.0, want = l / (l + eps);
        NGT_CHECK(r.lambda[i] > 0.05, "eigenvalue %d is %g: the test data should be well conditioned", i, (double)r.lambda[i]);
        for (j = 0; j < D; j++) NGT_CLOSE(C[i + D * j], i == j ? want : 0.0, 2e-4, "U Sigma U^T");
        /* identity up to eps */
        NGT_CLOSE(C[i + D * i], 1.0, eps / r.lambda[i] + 2e-4, "whitened variance");
    }
    /* the whitened samples themselves: mean 0, covariance diag(lambda / (lambda + eps)) */
    for (i = 0; i < D; i++) {
        ymu[i] = 0.0;
        for (k = 0; k < N; k++) ymu[i] += r.Y[i + D * k];
        ymu[i] /= N;
        NGT_CLOSE(ymu[i], 0.0, 1e-4, "mean of the whitened samples");
    }
    for (i = 0; i < D; i++)
        for (j = 0; j < D; j++) {
            double s = 0.0;
            for (k = 0; k < N; k++) s += (r.Y[i + D * k] - ymu[i]) * (r.Y[j + D * k] - ymu[j]);
            NGT_CLOSE(s / N, C[i + D * j], 5e-4, "covariance of the whitened samples");
        }
    /* U^-1 U = I */
    for (i = 0; i < D; i++)
        for (j = 0; j < D; j++) {
            double s = 0.0;
            for (k = 0; k < D; k++) s += (double)r.Uinv[i + D * k] * (double)r.UT[j + D * k];
            NGT_CLOSE(s, i == j ? 1.0 : 0.0, 1e-5, "U^-1 U");
        }
    return NGT_PASS;
}

static int test_whiten_cpu(void) { return check_case(g_cpu); }

static int test_whiten_cuda(void) {
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    return check_case(g_cuda);
}

/* U^T U = (Sigma + eps I)^-1 and the whitened samples agree on both backends up to eigenvector
 * signs: compare U^T U and Y^T Y (sign-free). */
static int test_cpu_vs_cuda(void) {
    static float X[D * N];
    static result a, b;
    float P[2][D * D];
    int i, j, k, e;
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    g_state = 99;
    make_samples(X, D, N);
    NGT_OK(run_case(g_cpu, X, 1e-2f, &a));
    NGT_OK(run_case(g_cuda, X, 1e-2f, &b));
    NGT_CHECK(ngt_compare("mean", b.mean, a.mean, D, 1e-5, 1e-5) == 0, "means differ");
    NGT_CHECK(ngt_compare("lambda", b.lambda, a.lambda, D, 1e-4, 1e-4) == 0, "eigenvalues differ");
    for (e = 0; e < 2; e++) {
        const result *r = e ? &b : &a;
        for (i = 0; i < D; i++)
            for (j = 0; j < D; j++) {
                double s = 0.0;
                for (k = 0; k < D; k++) s += (double)r->UT[i + D * k] * r->UT[j + D * k];
                P[e][i + D * j] = (float)s;
            }
    }
    NGT_CHECK(ngt_compare("U^T U", P[1], P[0], D * D, 1e-3, 1e-3) == 0, "U^T U differs between backends");
    return NGT_PASS;
}

static int test_bad_input(void) {
    ng_whiten w;
    float *dX;
    float h[D * 4];
    int i;
    NGT_CHECK(ng_whiten_init(g_cpu, 0, 10, &w) == NG_ERR_INVALID_ARG, "dimension 0 accepted");
    NGT_CHECK(strstr(ng_last_error(), "dimension") != NULL, "message: %s", ng_last_error());
    NGT_CHECK(ng_whiten_init(g_cpu, 4, 0, &w) == NG_ERR_INVALID_ARG, "chunk 0 accepted");
    NGT_OK(ng_whiten_init(g_cpu, D, 4, &w));
    NGT_CHECK(ng_whiten_compute(&w, 1e-3f) == NG_ERR_INVALID_ARG, "compute without samples accepted");
    NGT_CHECK(strstr(ng_last_error(), "no samples") != NULL, "message: %s", ng_last_error());
    NGT_OK(ng_alloc(g_cpu, sizeof h, (void **)&dX));
    for (i = 0; i < D * 4; i++) h[i] = (float)i;
    NGT_OK(ng_set(g_cpu, dX, h, sizeof h));
    NGT_CHECK(ng_whiten_add(&w, dX, D - 1, 4, 0) == NG_ERR_INVALID_ARG, "ld below the dimension accepted");
    NGT_CHECK(ng_whiten_add(&w, dX, D, 4, 2) == NG_ERR_INVALID_ARG, "trans 2 accepted");
    NGT_OK(ng_whiten_add(&w, dX, D, 4, 0));
    NGT_CHECK(ng_whiten_compute(&w, 0.0f) == NG_ERR_INVALID_ARG, "eps 0 accepted");
    NGT_CHECK(ng_whiten_compute(&w, NAN) == NG_ERR_INVALID_ARG, "eps NaN accepted");
    NGT_CHECK(ng_whiten_apply(&w, dX, D, 5, dX, D) == NG_ERR_INVALID_ARG, "apply beyond the chunk accepted");
    h[7] = NAN;
    NGT_OK(ng_set(g_cpu, dX, h, sizeof h));
    ng_whiten_reset(&w);
    NGT_OK(ng_whiten_add(&w, dX, D, 4, 0));
    NGT_CHECK(ng_whiten_compute(&w, 1e-3f) == NG_ERR_NUMERIC, "NaN samples gave no numeric error");
    ng_clear_error();
    ng_free(g_cpu, dX);
    ng_whiten_free(&w);
    ng_whiten_free(&w);
    return NGT_PASS;
}

int main(void) {
    if (ngt_open_backends(&g_cpu, &g_cuda, g_cuda_reason, sizeof g_cuda_reason)) return 1;
    NGT_RUN(test_whiten_cpu);
    NGT_RUN(test_whiten_cuda);
    NGT_RUN(test_cpu_vs_cuda);
    NGT_RUN(test_bad_input);
    ng_backend_free(g_cuda);
    ng_backend_free(g_cpu);
    return ngt_finish();
}
