/* test_eig_batched.c: the batched symmetric eigendecomposition ng_syevd_batched (natgrad/backend.h)
 * and the batched whitening ng_whiten_compute_batch (natgrad/whiten.h) built on it.
 *   - CPU: every problem of a batched call (mixed sizes, padded leading dimensions, an empty one)
 *     is bit-identical to its own ng_syevd / ng_syevd_d call, with one and with two threads, and
 *     with a backend that leaves the batched slot NULL (the wrapper's one-at-a-time fallback);
 *   - every backend (CPU, emulated CUDA, whose batched path packs equal small sizes into one
 *     cusolverDnXsyevBatched call): eigenvalues against LAPACK dsyevd in float64 on the same
 *     matrix, the reconstruction V diag(w) V^T = S, V^T V = I, padding rows untouched, and the
 *     per-problem eigenvalues of the same backend; CUDA against the CPU;
 *   - ng_whiten_compute_batch equals ng_whiten_compute per whitener (bit for bit on the CPU);
 *   - bad input: count, NULL list, a bad leading dimension, overlapping problems, NaN in one problem
 *     (CPU), a whitener listed twice; each message names the culprit.
 * Tolerances: a backward-stable eigensolver gives |S V - V diag(w)| and |V^T V - I| of a few n eps
 * (times ||S|| for the first); we accept 4 (n + 2) eps ||S||_inf and 4 (n + 2) eps, and the same for
 * the eigenvalues against float64 (Weyl: they move by at most the backward error). */
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends.h"
#include "harness.h"
#include "natgrad/backend.h"
#include "natgrad/whiten.h"

void ng_cpu_set_threads(int n); /* host/backend/cpu_blas.c */

static ng_backend *g_cpu, *g_cuda;
static char g_cuda_reason[512];

#define SENT (-12345.5)
#define NP 11
/* sizes and leading dimensions: three of n = 7 and two of n = 20 with lda = n (grouped by the
 * CUDA backend), one n = 20 with a padded lda (not grouped), sizes above the CUDA grouping limit,
 * n = 1 and an empty problem */
static const int g_n[NP] = {64, 7, 7, 33, 1, 0, 20, 20, 7, 5, 20};
static const int g_lda[NP] = {64, 7, 7, 35, 1, 1, 20, 21, 7, 8, 20};

static uint64_t g_state = 977;
static size_t at1(int n) { return n > 0 ? (size_t)n : 1; } /* allocation length of n >= 0 items */
static double urand(void) {
    g_state = g_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_state >> 11) / 9007199254740992.0;
}

/* One problem on the host in float64: S (lda, n) symmetric with SENT in the padding rows. */
typedef struct hprob {
    int n, lda;
    double *S;
} hprob;

static void make_problems(hprob *h, int dbl) {
    int k, i, j;
    for (k = 0; k < NP; k++) {
        int n = g_n[k], lda = g_lda[k];
        h[k].n = n;
        h[k].lda = lda;
        h[k].S = (double *)malloc(((size_t)lda * at1(n)) * sizeof(double));
        for (j = 0; j < n; j++)
            for (i = 0; i < lda; i++) h[k].S[i + (size_t)lda * j] = i >= n ? SENT : 0.0;
        for (j = 0; j < n; j++)
            for (i = j; i < n; i++) {
                double v = 2.0 * urand() - 1.0 + (i == j ? 0.1 * k : 0.0);
                if (!dbl) v = (double)(float)v;
                h[k].S[i + (size_t)lda * j] = h[k].S[j + (size_t)lda * i] = v;
            }
    }
}

static void free_problems(hprob *h) {
    int k;
    for (k = 0; k < NP; k++) free(h[k].S);
}

/* Device copies of the problems on be: A from S with NaN in the strict upper triangle (only the
 * lower one may be read), w NaN. */
typedef struct dprob {
    ng_eig_problem p[NP];
    void *A[NP], *w[NP];
} dprob;

static ng_status upload(ng_backend *be, const hprob *h, int dbl, dprob *d) {
    int k, i, j;
    size_t es = dbl ? sizeof(double) : sizeof(float);
    memset(d, 0, sizeof *d);
    for (k = 0; k < NP; k++) {
        int n = h[k].n, lda = h[k].lda;
        size_t na = (size_t)lda * at1(n), nw = n ? (size_t)n : 1;
        unsigned char *ha = (unsigned char *)malloc(na * es), *hw = (unsigned char *)malloc(nw * es);
        for (j = 0; j < (n ? n : 1); j++)
            for (i = 0; i < lda; i++) {
                double v = n && i < j ? NAN : (n ? h[k].S[i + (size_t)lda * j] : SENT);
                if (dbl) ((double *)ha)[i + (size_t)lda * j] = v;
                else ((float *)ha)[i + (size_t)lda * j] = (float)v;
            }
        for (i = 0; i < (int)nw; i++) {
            if (dbl) ((double *)hw)[i] = NAN;
            else ((float *)hw)[i] = NAN;
        }
        NG_TRY(ng_alloc(be, na * es, &d->A[k]));
        NG_TRY(ng_alloc(be, nw * es, &d->w[k]));
        NG_TRY(ng_set(be, d->A[k], ha, na * es));
        NG_TRY(ng_set(be, d->w[k], hw, nw * es));
        free(ha);
        free(hw);
        d->p[k].n = n;
        d->p[k].lda = lda;
        d->p[k].A = d->A[k];
        d->p[k].w = d->w[k];
        d->p[k].info = -99;
    }
    return NG_OK;
}

static void release(ng_backend *be, dprob *d) {
    int k;
    for (k = 0; k < NP; k++) {
        ng_free(be, d->A[k]);
        ng_free(be, d->w[k]);
    }
}

/* Problem k's results back on the host as float64: V (lda, n) and w (n). */
static ng_status fetch(ng_backend *be, const dprob *d, int k, int dbl, double *V, double *w) {
    int n = d->p[k].n, lda = d->p[k].lda, i;
    size_t na = (size_t)lda * n, es = dbl ? sizeof(double) : sizeof(float);
    void *ha = malloc(na * es + 1), *hw = malloc((size_t)n * es + 1);
    ng_status s = NG_OK;
    if (n == 0) goto done;
    if ((s = ng_get(be, ha, d->A[k], na * es)) != NG_OK || (s = ng_get(be, hw, d->w[k], (size_t)n * es)) != NG_OK) goto done;
    for (i = 0; i < (int)na; i++) V[i] = dbl ? ((double *)ha)[i] : (double)((float *)ha)[i];
    for (i = 0; i < n; i++) w[i] = dbl ? ((double *)hw)[i] : (double)((float *)hw)[i];
done:
    free(ha);
    free(hw);
    return s;
}

/* Raw bytes of problem k's A and w (for bit-for-bit comparisons). */
static ng_status fetch_raw(ng_backend *be, const dprob *d, int k, int dbl, unsigned char *out) {
    size_t es = dbl ? sizeof(double) : sizeof(float);
    size_t na = (size_t)d->p[k].lda * d->p[k].n * es;
    if (!d->p[k].n) return NG_OK;
    NG_TRY(ng_get(be, out, d->A[k], na));
    return ng_get(be, out + na, d->w[k], (size_t)d->p[k].n * es);
}

static double sym_norm_inf(const hprob *h) {
    double m = 0.0;
    int i, j;
    for (i = 0; i < h->n; i++) {
        double r = 0.0;
        for (j = 0; j < h->n; j++) r += fabs(h->S[i + (size_t)h->lda * j]);
        if (r > m) m = r;
    }
    return m;
}

/* Problem k's results against its definition and a float64 LAPACK reference. */
static int check_problem(const char *tag, const hprob *h, const double *V, const double *w, int dbl) {
    int n = h->n, lda = h->lda, i, j, l;
    double eps = dbl ? DBL_EPSILON : (double)FLT_EPSILON, snorm = sym_norm_inf(h);
    double tol = 4.0 * (n + 2) * eps * (snorm > 1.0 ? snorm : 1.0), worst = 0.0;
    double *R, *wr;
    if (!n) return NGT_PASS;
    for (j = 0; j < n; j++)
        for (i = n; i < lda; i++)
            NGT_CHECK(V[i + (size_t)lda * j] == SENT, "%s n=%d: padding row %d of column %d changed to %g", tag, n, i, j, V[i + (size_t)lda * j]);
    for (i = 0; i + 1 < n; i++) NGT_CHECK(w[i] <= w[i + 1], "%s n=%d: eigenvalues not ascending at %d", tag, n, i);
    /* reconstruction V diag(w) V^T = S */
    for (j = 0; j < n; j++)
        for (i = 0; i < n; i++) {
            double s = 0.0, d;
            for (l = 0; l < n; l++) s += V[i + (size_t)lda * l] * w[l] * V[j + (size_t)lda * l];
            d = fabs(s - h->S[i + (size_t)lda * j]);
            if (!(d <= worst)) worst = d;
        }
    NGT_CHECK(worst <= tol, "%s n=%d: max |V diag(w) V^T - S| = %.3g > tol %.3g", tag, n, worst, tol);
    worst = 0.0;
    for (j = 0; j < n; j++)
        for (i = 0; i < n; i++) {
            double s = 0.0, d;
            for (l = 0; l < n; l++) s += V[l + (size_t)lda * i] * V[l + (size_t)lda * j];
            d = fabs(s - (i == j ? 1.0 : 0.0));
            if (!(d <= worst)) worst = d;
        }
    NGT_CHECK(worst <= 4.0 * (n + 2) * eps, "%s n=%d: max |V^T V - I| = %.3g > tol %.3g", tag, n, worst, 4.0 * (n + 2) * eps);
    /* eigenvalues against LAPACK dsyevd in float64 on the same (rounded) matrix */
    R = (double *)malloc(at1(n) * at1(n) * sizeof(double));
    wr = (double *)malloc(at1(n) * sizeof(double));
    for (j = 0; j < n; j++)
        for (i = 0; i < n; i++) R[i + (size_t)n * j] = h->S[i + (size_t)lda * j];
    l = LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'N', 'L', n, R, n, wr);
    worst = 0.0;
    for (i = 0; i < n && l == 0; i++)
        if (!(fabs(w[i] - wr[i]) <= worst)) worst = fabs(w[i] - wr[i]);
    free(R);
    free(wr);
    NGT_CHECK(l == 0, "%s: reference dsyevd failed (info %d)", tag, l);
    NGT_CHECK(worst <= tol, "%s n=%d: eigenvalues differ from float64 LAPACK by %.3g > tol %.3g", tag, n, worst, tol);
    return NGT_PASS;
}

/* Batched on be: each problem checked, and against ng_syevd per problem on the same backend
 * (bit for bit when exact, else eigenvalues within the tolerance). */
static int run_case(ng_backend *be, int dbl, int exact, const char *tag) {
    hprob h[NP];
    dprob a, b;
    size_t es = dbl ? sizeof(double) : sizeof(float);
    int k, fail = NGT_PASS;
    make_problems(h, dbl);
    NGT_OK(upload(be, h, dbl, &a));
    NGT_OK(upload(be, h, dbl, &b));
    NGT_OK(ng_syevd_batched(be, dbl ? NG_F64 : NG_F32, NP, a.p));
    for (k = 0; k < NP; k++) {
        int info = -1;
        NGT_CHECK(a.p[k].info == 0, "%s: problem %d: info %d", tag, k, a.p[k].info);
        if (dbl) NGT_OK(ng_syevd_d(be, b.p[k].n, (double *)b.A[k], b.p[k].lda, (double *)b.w[k], &info));
        else NGT_OK(ng_syevd(be, b.p[k].n, (float *)b.A[k], b.p[k].lda, (float *)b.w[k], &info));
        NGT_CHECK(info == 0, "%s: problem %d alone: info %d", tag, k, info);
    }
    for (k = 0; k < NP && fail == NGT_PASS; k++) {
        int n = h[k].n, lda = h[k].lda;
        double *V = (double *)malloc((size_t)lda * at1(n) * sizeof(double)), *w = (double *)malloc(at1(n) * sizeof(double));
        double *V1 = (double *)malloc((size_t)lda * at1(n) * sizeof(double)), *w1 = (double *)malloc(at1(n) * sizeof(double));
        char what[160];
        snprintf(what, sizeof what, "%s problem %d", tag, k);
        if (fetch(be, &a, k, dbl, V, w) != NG_OK || fetch(be, &b, k, dbl, V1, w1) != NG_OK) fail = NGT_FAIL;
        if (fail == NGT_PASS) fail = check_problem(what, &h[k], V, w, dbl);
        if (fail == NGT_PASS && exact && n) {
            size_t bytes = ((size_t)lda * n + n) * es;
            unsigned char *ra = (unsigned char *)malloc(bytes), *rb = (unsigned char *)malloc(bytes);
            if (fetch_raw(be, &a, k, dbl, ra) != NG_OK || fetch_raw(be, &b, k, dbl, rb) != NG_OK) fail = NGT_FAIL;
            else if (memcmp(ra, rb, bytes) != 0) {
                printf("  %s: batched result differs from the one-at-a-time ng_syevd (not bit-identical)\n", what);
                fail = NGT_FAIL;
            }
            free(ra);
            free(rb);
        } else if (fail == NGT_PASS && n) {
            double eps = dbl ? DBL_EPSILON : (double)FLT_EPSILON, tol = 4.0 * (n + 2) * eps * (sym_norm_inf(&h[k]) > 1 ? sym_norm_inf(&h[k]) : 1);
            int i;
            for (i = 0; i < n && fail == NGT_PASS; i++)
                if (!(fabs(w[i] - w1[i]) <= tol)) {
                    printf("  %s: eigenvalue %d batched %.9g, alone %.9g (tol %.3g)\n", what, i, w[i], w1[i], tol);
                    fail = NGT_FAIL;
                }
        }
        free(V);
        free(w);
        free(V1);
        free(w1);
    }
    release(be, &a);
    release(be, &b);
    free_problems(h);
    return fail;
}

static int test_cpu_bitexact(void) {
    int dbl, threads;
    for (threads = 1; threads <= 2; threads++) {
        ng_cpu_set_threads(threads);
        for (dbl = 0; dbl < 2; dbl++) {
            char tag[64];
            snprintf(tag, sizeof tag, "cpu %s, %d thread%s", dbl ? "f64" : "f32", threads, threads > 1 ? "s" : "");
            if (run_case(g_cpu, dbl, 1, tag) != NGT_PASS) return NGT_FAIL;
        }
    }
    return NGT_PASS;
}

/* A backend whose table leaves syevd_batched NULL: the wrapper runs the problems one at a time,
 * bit-identical to the CPU's batched slot. */
static int test_fallback(void) {
    struct ng_backend_i fi = *g_cpu->iface;
    ng_backend fake = *g_cpu;
    hprob h[NP];
    dprob a, b;
    int k;
    fi.syevd_batched = NULL;
    fake.iface = &fi;
    make_problems(h, 0);
    NGT_OK(upload(g_cpu, h, 0, &a));
    NGT_OK(upload(g_cpu, h, 0, &b));
    NGT_OK(ng_syevd_batched(&fake, NG_F32, NP, a.p));
    NGT_OK(ng_syevd_batched(g_cpu, NG_F32, NP, b.p));
    for (k = 0; k < NP; k++) {
        size_t bytes = ((size_t)h[k].lda * h[k].n + h[k].n) * sizeof(float) + 1;
        unsigned char *ra = (unsigned char *)calloc(1, bytes), *rb = (unsigned char *)calloc(1, bytes);
        NGT_OK(fetch_raw(g_cpu, &a, k, 0, ra));
        NGT_OK(fetch_raw(g_cpu, &b, k, 0, rb));
        NGT_CHECK(a.p[k].info == 0 && memcmp(ra, rb, bytes) == 0, "problem %d: the one-at-a-time fallback differs from the batched slot", k);
        free(ra);
        free(rb);
    }
    release(g_cpu, &a);
    release(g_cpu, &b);
    free_problems(h);
    return NGT_PASS;
}

static int test_cuda(void) {
    int dbl;
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    for (dbl = 0; dbl < 2; dbl++)
        if (run_case(g_cuda, dbl, 0, dbl ? "cuda f64" : "cuda f32") != NGT_PASS) return NGT_FAIL;
    return NGT_PASS;
}

/* CUDA's batched eigenvalues against the CPU's (each within tol of the exact ones: 2 tol apart). */
static int test_cpu_vs_cuda(void) {
    hprob h[NP];
    dprob a, b;
    int k, i;
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    make_problems(h, 0);
    NGT_OK(upload(g_cpu, h, 0, &a));
    NGT_OK(upload(g_cuda, h, 0, &b));
    NGT_OK(ng_syevd_batched(g_cpu, NG_F32, NP, a.p));
    NGT_OK(ng_syevd_batched(g_cuda, NG_F32, NP, b.p));
    for (k = 0; k < NP; k++) {
        int n = h[k].n;
        double tol = 8.0 * (n + 2) * (double)FLT_EPSILON * (sym_norm_inf(&h[k]) > 1 ? sym_norm_inf(&h[k]) : 1);
        double *V = (double *)malloc(((size_t)h[k].lda * at1(n) + 1) * sizeof(double)), *wa = (double *)malloc((at1(n) + 1) * sizeof(double)),
               *wb = (double *)malloc((at1(n) + 1) * sizeof(double));
        NGT_OK(fetch(g_cpu, &a, k, 0, V, wa));
        NGT_OK(fetch(g_cuda, &b, k, 0, V, wb));
        for (i = 0; i < n; i++) NGT_CLOSE(wb[i], wa[i], tol, "cuda vs cpu eigenvalue");
        free(V);
        free(wa);
        free(wb);
    }
    release(g_cpu, &a);
    release(g_cuda, &b);
    free_problems(h);
    return NGT_PASS;
}

#define EXPECT_BAD(expr, word)                                                                              \
    do {                                                                                                    \
        ng_status s_ = (expr);                                                                              \
        NGT_CHECK(s_ == NG_ERR_INVALID_ARG, "%s gave %s", #expr, ng_status_name(s_));                      \
        NGT_CHECK(strstr(ng_last_error(), "syevd_batched") && strstr(ng_last_error(), word),               \
                  "message of %s should name syevd_batched and '%s': \"%s\"", #expr, word, ng_last_error()); \
    } while (0)

static int test_bad_input(void) {
    ng_eig_problem p[3];
    float *buf;
    NGT_OK(ng_alloc(g_cpu, 64 * sizeof(float), (void **)&buf));
    memset(p, 0, sizeof p);
    p[0].n = 4, p[0].lda = 4, p[0].A = buf, p[0].w = buf + 16;
    p[1].n = 2, p[1].lda = 2, p[1].A = buf + 20, p[1].w = buf + 24;
    p[2].n = 3, p[2].lda = 3, p[2].A = buf + 30, p[2].w = buf + 40;
    EXPECT_BAD(ng_syevd_batched(g_cpu, NG_F32, -1, p), "count");
    EXPECT_BAD(ng_syevd_batched(g_cpu, NG_F32, NG_EIG_BATCH_MAX + 1, p), "count");
    EXPECT_BAD(ng_syevd_batched(g_cpu, NG_F32, 2, NULL), "NULL");
    p[2].lda = 2;
    EXPECT_BAD(ng_syevd_batched(g_cpu, NG_F32, 3, p), "problem 2");
    p[2].lda = 3;
    p[2].A = NULL;
    EXPECT_BAD(ng_syevd_batched(g_cpu, NG_F32, 3, p), "problem 2");
    p[2].A = buf + 14; /* overlaps problem 0's A (elements 0..15) */
    EXPECT_BAD(ng_syevd_batched(g_cpu, NG_F32, 3, p), "overlap");
    p[2].A = buf + 30;
    p[2].w = buf + 22; /* overlaps problem 1's A (20..23) */
    EXPECT_BAD(ng_syevd_batched(g_cpu, NG_F32, 3, p), "overlap");
    p[2].w = buf + 40;
    p[1].w = buf + 21; /* problem 1's own w inside its A */
    EXPECT_BAD(ng_syevd_batched(g_cpu, NG_F32, 3, p), "overlap");
    p[1].w = buf + 24;
    EXPECT_BAD(ng_syevd_batched(g_cpu, (ng_dtype)99, 3, p), "dtype");
    NGT_OK(ng_syevd_batched(g_cpu, NG_F32, 0, NULL)); /* nothing to do */
    {
        /* NaN in problem 1: LAPACKE refuses it; the CPU's message names the problem */
        float h[16];
        ng_status st;
        int i;
        for (i = 0; i < 16; i++) h[i] = i % 5 == 0 ? 2.0f : 0.25f;
        NGT_OK(ng_set(g_cpu, buf, h, 16 * sizeof(float)));
        NGT_OK(ng_set(g_cpu, buf + 20, h, 4 * sizeof(float)));
        NGT_OK(ng_set(g_cpu, buf + 30, h, 9 * sizeof(float)));
        h[0] = NAN;
        NGT_OK(ng_set(g_cpu, buf + 20, h, sizeof(float)));
        st = ng_syevd_batched(g_cpu, NG_F32, 3, p);
        NGT_CHECK(st == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "batched problem 1"), "NaN in problem 1: %s: %s",
                  ng_status_name(st), ng_last_error());
    }
    ng_free(g_cpu, buf);
    return NGT_PASS;
}

/* ng_whiten_compute_batch against ng_whiten_compute per whitener: UT, lambda and U c bit for bit
 * on the CPU, within float tolerance on CUDA (where the batched path may take another solver). */
static int whiten_case(ng_backend *be, int exact) {
    enum { W = 4, N = 300 };
    const int dims[W] = {9, 5, 5, 30};
    ng_whiten a[W], b[W];
    ng_whiten *la[W], *lb[W];
    int k, i, j;
    for (k = 0; k < W; k++) {
        int d = dims[k];
        float *X = (float *)malloc((size_t)d * N * sizeof(float));
        float *dx;
        for (j = 0; j < N; j++) {
            double z = 2.0 * urand() - 1.0;
            for (i = 0; i < d; i++) X[i + (size_t)d * j] = (float)(1.0 + i + z * (i % 3) + 0.5 * (2.0 * urand() - 1.0));
        }
        NGT_OK(ng_alloc(be, (size_t)d * N * sizeof(float), (void **)&dx));
        NGT_OK(ng_set(be, dx, X, (size_t)d * N * sizeof(float)));
        NGT_OK(ng_whiten_init(be, d, N, &a[k]));
        NGT_OK(ng_whiten_init(be, d, N, &b[k]));
        NGT_OK(ng_whiten_add(&a[k], dx, d, N, 0));
        NGT_OK(ng_whiten_add(&b[k], dx, d, N, 0));
        ng_free(be, dx);
        free(X);
        la[k] = &a[k];
        lb[k] = &b[k];
    }
    NGT_OK(ng_whiten_compute_batch(la, W, 1e-3f));
    for (k = 0; k < W; k++) NGT_OK(ng_whiten_compute(lb[k], 1e-3f));
    for (k = 0; k < W; k++) {
        int d = dims[k];
        float *ha = (float *)malloc(((size_t)d * d + 2 * d) * sizeof(float)), *hb = (float *)malloc(((size_t)d * d + 2 * d) * sizeof(float));
        float *ta = (float *)malloc((size_t)d * d * sizeof(float)), *tb = (float *)malloc((size_t)d * d * sizeof(float));
        NGT_OK(ng_get(be, ha, a[k].UT.data, (size_t)d * d * sizeof(float)));
        NGT_OK(ng_get(be, ha + (size_t)d * d, a[k].lambda.data, (size_t)d * sizeof(float)));
        NGT_OK(ng_get(be, ha + (size_t)d * d + d, a[k].uc.data, (size_t)d * sizeof(float)));
        NGT_OK(ng_get(be, hb, b[k].UT.data, (size_t)d * d * sizeof(float)));
        NGT_OK(ng_get(be, hb + (size_t)d * d, b[k].lambda.data, (size_t)d * sizeof(float)));
        NGT_OK(ng_get(be, hb + (size_t)d * d + d, b[k].uc.data, (size_t)d * sizeof(float)));
        if (exact) {
            NGT_CHECK(memcmp(ha, hb, ((size_t)d * d + 2 * d) * sizeof(float)) == 0, "whitener %d (d = %d): batched compute differs from ng_whiten_compute", k, d);
        } else {
            /* eigenvectors may differ in sign: compare lambda and U^T U = (Sigma + eps I)^-1 (sign-free) */
            int l;
            NGT_CHECK(ngt_compare("lambda", ha + (size_t)d * d, hb + (size_t)d * d, d, 1e-4, 1e-4) == 0, "whitener %d: eigenvalues differ", k);
            for (i = 0; i < d; i++)
                for (j = 0; j < d; j++) {
                    double sa = 0.0, sb = 0.0;
                    for (l = 0; l < d; l++) {
                        sa += (double)ha[i + (size_t)d * l] * ha[j + (size_t)d * l];
                        sb += (double)hb[i + (size_t)d * l] * hb[j + (size_t)d * l];
                    }
                    ta[i + (size_t)d * j] = (float)sa;
                    tb[i + (size_t)d * j] = (float)sb;
                }
            NGT_CHECK(ngt_compare("U^T U", ta, tb, (size_t)d * d, 1e-3, 1e-3) == 0, "whitener %d: U^T U differs", k);
        }
        free(ha);
        free(hb);
        free(ta);
        free(tb);
    }
    /* bad input: a whitener listed twice, no whiteners, mixed backends */
    la[1] = la[0];
    NGT_CHECK(ng_whiten_compute_batch(la, 2, 1e-3f) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "twice"), "duplicate: %s", ng_last_error());
    NGT_CHECK(ng_whiten_compute_batch(la, 0, 1e-3f) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "whiteners"), "count 0: %s", ng_last_error());
    for (k = 0; k < W; k++) {
        ng_whiten_free(&a[k]);
        ng_whiten_free(&b[k]);
    }
    return NGT_PASS;
}

static int test_whiten_batch_cpu(void) { return whiten_case(g_cpu, 1); }

static int test_whiten_batch_cuda(void) {
    ng_whiten wc, wg;
    ng_whiten *l[2];
    if (!g_cuda) return ngt_skip(g_cuda_reason);
    if (whiten_case(g_cuda, 0) != NGT_PASS) return NGT_FAIL;
    NGT_OK(ng_whiten_init(g_cpu, 3, 4, &wc));
    NGT_OK(ng_whiten_init(g_cuda, 3, 4, &wg));
    l[0] = &wc;
    l[1] = &wg;
    NGT_CHECK(ng_whiten_compute_batch(l, 2, 1e-3f) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "backends"), "mixed backends: %s", ng_last_error());
    ng_whiten_free(&wc);
    ng_whiten_free(&wg);
    return NGT_PASS;
}

int main(void) {
    if (ngt_open_backends(&g_cpu, &g_cuda, g_cuda_reason, sizeof g_cuda_reason)) return 1;
    NGT_RUN(test_cpu_bitexact);
    NGT_RUN(test_fallback);
    NGT_RUN(test_cuda);
    NGT_RUN(test_cpu_vs_cuda);
    NGT_RUN(test_bad_input);
    NGT_RUN(test_whiten_batch_cpu);
    NGT_RUN(test_whiten_batch_cuda);
    ng_backend_free(g_cpu);
    if (g_cuda) ng_backend_free(g_cuda);
    return ngt_finish();
}
