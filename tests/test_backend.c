/* test_backend.c: backend conformance, after ggml's test-backend-ops. Every op of the backend table
 * runs on each available backend and is compared with a reference:
 *   cpu-vs-naive  the CPU backend against naive double-precision loops written here;
 *   cuda-vs-cpu   the CUDA backend (a real GPU, or the tests/simt emulator, which links this same
 *                 file against its shim libraries) against the CPU backend. Skipped, with the reason,
 *                 when ng_backend_cuda_init fails.
 * Each op is a function op_<name>(tctx *) that runs its cases on t->be and compares them with t->ref
 * (another backend) or, when t->ref is NULL, with the naive reference.
 * Matrices are column-major with leading dimensions larger than the row count wherever the op takes
 * one; padding rows are filled with a sentinel and must come back unchanged. Every device buffer has
 * GUARD sentinel elements before and after it, checked after each op, to catch out-of-bounds writes;
 * inputs must come back bit for bit unchanged.
 * Shapes stay modest (gemm at most 100x100x100) because the emulator is slow; NG_TEST_SMALL=1
 * shrinks them further. Must not: depend on timing, or use a seed that is not fixed. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "natgrad/backend.h"
#include "ng_math.h"

#define GUARD 16            /* sentinel elements before and after every device buffer */
#define SENT (-12345.5)     /* sentinel value: exact in float and double, never a result here */
#define SENT_F (-12345.5f)
#define EPS_F ((double)FLT_EPSILON) /* 2^-23: twice the unit roundoff of float */
#define EPS_D DBL_EPSILON

/* ---- per-case context: backends and the allocations to release -------------------------------- */

typedef struct talloc {
    ng_backend *be; /* NULL: host memory (free) */
    void *p;
} talloc;

typedef struct tctx {
    ng_backend *be;  /* backend under test */
    ng_backend *ref; /* reference backend, or NULL for the naive loops of this file */
    int big;         /* largest matrix dimension: 100, or 24 under NG_TEST_SMALL=1 */
    int small;
    talloc *mem;
    int nmem, capmem;
} tctx;

static void t_track(tctx *t, ng_backend *be, void *p) {
    if (t->nmem == t->capmem) {
        int cap = t->capmem ? 2 * t->capmem : 64;
        talloc *m = (talloc *)realloc(t->mem, (size_t)cap * sizeof *m);
        if (!m) {
            printf("  test_backend: out of host memory\n");
            exit(1);
        }
        t->mem = m;
        t->capmem = cap;
    }
    t->mem[t->nmem].be = be;
    t->mem[t->nmem].p = p;
    t->nmem++;
}

/* Free everything allocated since `mark` (a value of t->nmem taken earlier). */
static void t_release(tctx *t, int mark) {
    while (t->nmem > mark) {
        talloc *a = &t->mem[--t->nmem];
        if (a->be) ng_free(a->be, a->p);
        else free(a->p);
    }
}

static void *h_alloc(tctx *t, size_t bytes) {
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) {
        printf("  test_backend: out of host memory (%zu bytes)\n", bytes);
        exit(1);
    }
    t_track(t, NULL, p);
    return p;
}

static float *h_floats(tctx *t, size_t n) { return (float *)h_alloc(t, n * sizeof(float)); }
static double *h_doubles(tctx *t, size_t n) { return (double *)h_alloc(t, n * sizeof(double)); }
static float *h_dup(tctx *t, const float *x, size_t n) {
    float *y = h_floats(t, n);
    memcpy(y, x, n * sizeof *y);
    return y;
}

/* Deterministic input data, independent of the Philox streams under test. */
static double rnd(uint64_t seed, uint64_t i, double lo, double hi) {
    uint64_t z = ng_mix64(seed * 0x9E3779B97F4A7C15ull + i);
    return lo + (hi - lo) * ((double)(z >> 40) / 16777216.0);
}

/* Host (ld, cols) float matrix: interior uniform in [lo, hi), padding rows SENT. */
static float *h_mat(tctx *t, int rows, int cols, int ld, uint64_t seed, double lo, double hi) {
    size_t n = (size_t)ld * (size_t)cols;
    float *a = h_floats(t, n ? n : 1);
    int r, c;
    for (c = 0; c < cols; c++)
        for (r = 0; r < ld; r++)
            a[r + (size_t)c * ld] =
                r < rows ? (float)rnd(seed, r + (size_t)c * ld, lo, hi) : SENT_F;
    return a;
}

static void set_interior(float *a, int rows, int cols, int ld, float v) {
    int r, c;
    for (c = 0; c < cols; c++)
        for (r = 0; r < rows; r++) a[r + (size_t)c * ld] = v;
}

static int max_i(int a, int b) { return a > b ? a : b; }

#define TRY(expr)                                  \
    do {                                           \
        int try_r_ = (expr);                       \
        if (try_r_ != NGT_PASS) return try_r_;     \
    } while (0)

/* ---- device buffers with guard zones ------------------------------------------------------- */

typedef struct dbuf {
    ng_backend *be;
    unsigned char *base; /* GUARD + n + GUARD elements */
    size_t n, esz;
} dbuf;

static void *d_ptr(const dbuf *b) { return b->base + GUARD * b->esz; }
static float *d_f(const dbuf *b) { return (float *)d_ptr(b); }
static double *d_d(const dbuf *b) { return (double *)d_ptr(b); }

static void fill_sentinel(unsigned char *p, size_t count, size_t esz) {
    size_t i;
    for (i = 0; i < count; i++) {
        if (esz == sizeof(float)) {
            float v = SENT_F;
            memcpy(p + i * esz, &v, esz);
        } else if (esz == sizeof(double)) {
            double v = SENT;
            memcpy(p + i * esz, &v, esz);
        } else {
            memset(p + i * esz, 0xA5, esz);
        }
    }
}

/* Allocate n elements of esz bytes on be with guards; the interior is init (or SENT when NULL). */
static int d_new(tctx *t, ng_backend *be, dbuf *b, size_t n, size_t esz, const void *init) {
    size_t tot = n + 2 * GUARD;
    unsigned char *stage = (unsigned char *)malloc(tot * esz);
    void *p = NULL;
    ng_status s;
    if (!stage) {
        printf("  test_backend: out of host memory\n");
        exit(1);
    }
    fill_sentinel(stage, tot, esz);
    if (init && n) memcpy(stage + GUARD * esz, init, n * esz);
    s = ng_alloc(be, tot * esz, &p);
    if (s == NG_OK) {
        t_track(t, be, p);
        s = ng_set(be, p, stage, tot * esz);
    }
    free(stage);
    if (s != NG_OK) {
        printf("  %s: allocating/setting %zu bytes failed: %s: %s\n", be->iface->name, tot * esz,
               ng_status_name(s), ng_last_error());
        return NGT_FAIL;
    }
    b->be = be;
    b->base = (unsigned char *)p;
    b->n = n;
    b->esz = esz;
    return NGT_PASS;
}

#define D_NEW(t, be, b, n, esz, init) TRY(d_new(t, be, b, n, esz, init))

/* Copy the interior of b to host (when non-NULL) after checking that both guards are intact. */
static int d_fetch(const dbuf *b, void *host, const char *what) {
    size_t tot = b->n + 2 * GUARD, i;
    unsigned char *stage = (unsigned char *)malloc(tot * b->esz);
    unsigned char sent[8];
    ng_status s;
    int bad = 0;
    if (!stage) {
        printf("  test_backend: out of host memory\n");
        exit(1);
    }
    s = ng_get(b->be, stage, b->base, tot * b->esz);
    if (s != NG_OK) {
        printf("  %s: get failed: %s: %s\n", what, ng_status_name(s), ng_last_error());
        free(stage);
        return NGT_FAIL;
    }
    fill_sentinel(sent, 1, b->esz);
    for (i = 0; i < tot; i++) {
        if (i == GUARD) i = GUARD + b->n;
        if (i >= tot) break;
        if (memcmp(stage + i * b->esz, sent, b->esz) != 0) {
            if (bad < 3)
                printf("  %s: guard element %s[%ld] overwritten (out-of-bounds write)\n", what,
                       i < GUARD ? "before" : "after",
                       i < GUARD ? (long)i - GUARD : (long)(i - GUARD - b->n));
            bad++;
        }
    }
    if (!bad && host && b->n) memcpy(host, stage + GUARD * b->esz, b->n * b->esz);
    free(stage);
    return bad ? NGT_FAIL : NGT_PASS;
}

/* An input buffer must come back bit for bit as it was sent (guards included). */
static int d_unchanged(const dbuf *b, const void *host, const char *what) {
    unsigned char *now = (unsigned char *)malloc(b->n ? b->n * b->esz : 1);
    int r;
    char label[200];
    if (!now) {
        printf("  test_backend: out of host memory\n");
        exit(1);
    }
    snprintf(label, sizeof label, "%s (input)", what);
    r = d_fetch(b, now, label);
    if (r == NGT_PASS && b->n && memcmp(now, host, b->n * b->esz) != 0) {
        printf("  %s: input buffer was modified by the op\n", label);
        r = NGT_FAIL;
    }
    free(now);
    return r;
}

/* Padding rows rows..ld-1 of an output matrix must still hold SENT. */
static int check_pad(const char *what, const float *a, int rows, int cols, int ld) {
    int r, c;
    for (c = 0; c < cols; c++)
        for (r = rows; r < ld; r++)
            if (a[r + (size_t)c * ld] != SENT_F) {
                printf("  %s: padding row %d of column %d (ld %d) overwritten: %.9g\n", what, r, c,
                       ld, (double)a[r + (size_t)c * ld]);
                return NGT_FAIL;
            }
    return NGT_PASS;
}
static int check_pad_d(const char *what, const double *a, int rows, int cols, int ld) {
    int r, c;
    for (c = 0; c < cols; c++)
        for (r = rows; r < ld; r++)
            if (a[r + (size_t)c * ld] != SENT) {
                printf("  %s: padding row %d of column %d (ld %d) overwritten: %.17g\n", what, r,
                       c, ld, a[r + (size_t)c * ld]);
                return NGT_FAIL;
            }
    return NGT_PASS;
}

/* ngt_compare for doubles: |a-b| <= atol + rtol |b|, first mismatches and the largest difference. */
static int cmp_d(const char *what, const double *a, const double *b, size_t n, double atol,
                 double rtol) {
    size_t bad = 0, i, worst = 0;
    double maxd = 0.0;
    for (i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (!(d <= atol + rtol * fabs(b[i]))) {
            if (bad < 5) printf("  %s: [%zu] got %.17g want %.17g\n", what, i, a[i], b[i]);
            bad++;
        }
        if (d > maxd || d != d) {
            maxd = d;
            worst = i;
        }
    }
    if (bad)
        printf("  %s: %zu of %zu differ (atol %.3g rtol %.3g); largest |diff| %.3g at %zu\n", what,
               bad, n, atol, rtol, maxd, worst);
    return bad ? 1 : 0;
}

#define COMPARE(what, got, want, n, atol, rtol) \
    NGT_CHECK(!ngt_compare(what, got, want, n, atol, rtol), "%s", what)
#define COMPARE_D(what, got, want, n, atol, rtol) \
    NGT_CHECK(!cmp_d(what, got, want, n, atol, rtol), "%s", what)

/* ---- memory: alloc / set / get / copy / memset0 / synchronize ------------------------------- */

static int op_memory(tctx *t) {
    const size_t n = 1000;
    float *h = h_floats(t, n), *back = h_floats(t, n), *zero = h_floats(t, n);
    double *hd = h_doubles(t, 77), *backd = h_doubles(t, 77);
    float part[10];
    dbuf a, b, c, d;
    size_t i;
    for (i = 0; i < n; i++) h[i] = (float)rnd(1, i, -100.0, 100.0);
    h[3] = NAN;
    h[4] = -0.0f;
    h[5] = INFINITY;
    for (i = 0; i < 77; i++) hd[i] = rnd(2, i, -1.0, 1.0) * 1e200;
    /* set / get round trip, bit for bit (NaN, -0 and Inf included) */
    D_NEW(t, t->be, &a, n, sizeof(float), h);
    TRY(d_fetch(&a, back, "set/get"));
    NGT_CHECK(memcmp(back, h, n * sizeof(float)) == 0, "set then get changed the bits");
    D_NEW(t, t->be, &d, 77, sizeof(double), hd);
    TRY(d_fetch(&d, backd, "set/get double"));
    NGT_CHECK(memcmp(backd, hd, 77 * sizeof(double)) == 0, "double set/get changed the bits");
    /* set and get of a sub-range at an offset inside the allocation */
    for (i = 0; i < 10; i++) part[i] = (float)i + 0.25f;
    NGT_OK(ng_set(t->be, d_f(&a) + 100, part, sizeof part));
    memcpy(h + 100, part, sizeof part);
    TRY(d_fetch(&a, back, "set at offset"));
    NGT_CHECK(memcmp(back, h, n * sizeof(float)) == 0, "set of 10 floats at offset 100 wrong");
    memset(part, 0, sizeof part);
    NGT_OK(ng_get(t->be, part, d_f(&a) + 100, sizeof part));
    for (i = 0; i < 10; i++) NGT_CHECK(part[i] == (float)i + 0.25f, "get at offset: [%zu]", i);
    /* copy into a fresh buffer, and a partial copy between offsets */
    D_NEW(t, t->be, &b, n, sizeof(float), NULL);
    NGT_OK(ng_copy(t->be, d_f(&b), d_f(&a), n * sizeof(float)));
    TRY(d_fetch(&b, back, "copy"));
    NGT_CHECK(memcmp(back, h, n * sizeof(float)) == 0, "copy differs from its source");
    NGT_OK(ng_copy(t->be, d_f(&b) + 500, d_f(&a) + 10, 20 * sizeof(float)));
    memcpy(zero, h, n * sizeof(float));
    memcpy(zero + 500, h + 10, 20 * sizeof(float));
    TRY(d_fetch(&b, back, "copy at offsets"));
    NGT_CHECK(memcmp(back, zero, n * sizeof(float)) == 0, "copy of 20 floats at offsets wrong");
    NGT_OK(ng_copy(t->be, d_f(&b), d_f(&b), n * sizeof(float))); /* dst == src: no-op */
    NGT_OK(ng_copy(t->be, d_f(&b), d_f(&a), 0));                 /* zero bytes: no-op */
    TRY(d_fetch(&b, back, "no-op copies"));
    NGT_CHECK(memcmp(back, zero, n * sizeof(float)) == 0, "a no-op copy changed the buffer");
    /* memset0: whole interior, then a middle range of another buffer */
    NGT_OK(ng_memset0(t->be, d_f(&b), n * sizeof(float)));
    TRY(d_fetch(&b, back, "memset0"));
    memset(zero, 0, n * sizeof(float));
    NGT_CHECK(memcmp(back, zero, n * sizeof(float)) == 0, "memset0 left non-zero bytes");
    D_NEW(t, t->be, &c, n, sizeof(float), h);
    NGT_OK(ng_memset0(t->be, d_f(&c) + 7, 13 * sizeof(float)));
    memset(h + 7, 0, 13 * sizeof(float));
    TRY(d_fetch(&c, back, "memset0 of a range"));
    NGT_CHECK(memcmp(back, h, n * sizeof(float)) == 0, "memset0 of 13 floats at 7 wrong");
    NGT_OK(ng_memset0(t->be, d_f(&c), 0));
    NGT_OK(ng_synchronize(t->be));
    return NGT_PASS;
}

/* ---- gemm ---------------------------------------------------------------------------------- */

typedef struct gemm_args {
    int ta, tb, m, n, k, lda, ldb, ldc;
    float alpha, beta;
} gemm_args;

static int run_gemm(tctx *t, ng_backend *be, const gemm_args *g, const float *A, const float *B,
                    float *C) {
    int mark = t->nmem;
    size_t na = (size_t)g->lda * (g->ta ? g->m : g->k), nb = (size_t)g->ldb * (g->tb ? g->k : g->n);
    size_t nc = (size_t)g->ldc * g->n;
    dbuf dA, dB, dC;
    D_NEW(t, be, &dA, na, sizeof(float), A);
    D_NEW(t, be, &dB, nb, sizeof(float), B);
    D_NEW(t, be, &dC, nc, sizeof(float), C);
    NGT_OK(ng_gemm(be, g->ta, g->tb, g->m, g->n, g->k, g->alpha, d_f(&dA), g->lda, d_f(&dB), g->ldb,
                   g->beta, d_f(&dC), g->ldc));
    TRY(d_fetch(&dC, C, "gemm C"));
    TRY(d_unchanged(&dA, A, "gemm A"));
    TRY(d_unchanged(&dB, B, "gemm B"));
    t_release(t, mark);
    return NGT_PASS;
}

/* Tolerance: a float dot product of k terms is within gamma_k sum|a_l b_l| of the exact value
 * (gamma_k ~ k u); plus one rounding each for alpha and beta. So atol = (k + 2) * FLT_EPSILON *
 * max over C of (|alpha| sum_l |a_il b_lj| + |beta c_ij|); doubled when both sides are float
 * backends with their own rounding (cuda-vs-cpu). */
static int gemm_case(tctx *t, int ta, int tb, int m, int n, int k, float alpha, float beta, int pad,
                     int nan_c) {
    int mark = t->nmem, i, j, l;
    gemm_args g;
    int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    float *A, *B, *C0, *got, *want;
    double mag = 0.0, tol;
    char what[200];
    g.ta = ta; g.tb = tb; g.m = m; g.n = n; g.k = k; g.alpha = alpha; g.beta = beta;
    g.lda = max_i(1, ar + pad);
    g.ldb = max_i(1, br + pad + 1);
    g.ldc = max_i(1, m + pad);
    A = h_mat(t, ar, ac, g.lda, 11 + (uint64_t)m, -1.0, 1.0);
    B = h_mat(t, br, bc, g.ldb, 12 + (uint64_t)n, -1.0, 1.0);
    C0 = h_mat(t, m, n, g.ldc, 13 + (uint64_t)k, -1.0, 1.0);
    if (nan_c) set_interior(C0, m, n, g.ldc, NAN); /* beta = 0 must ignore C, even NaN */
    got = h_dup(t, C0, (size_t)g.ldc * n);
    want = h_dup(t, C0, (size_t)g.ldc * n);
    TRY(run_gemm(t, t->be, &g, A, B, got));
    for (j = 0; j < n; j++)
        for (i = 0; i < m; i++) {
            double s = 0.0, sa = 0.0, c0 = C0[i + (size_t)j * g.ldc];
            for (l = 0; l < k; l++) {
                double a = ta ? A[l + (size_t)i * g.lda] : A[i + (size_t)l * g.lda];
                double b = tb ? B[j + (size_t)l * g.ldb] : B[l + (size_t)j * g.ldb];
                s += a * b;
                sa += fabs(a * b);
            }
            if (!t->ref)
                want[i + (size_t)j * g.ldc] =
                    (float)((double)alpha * s + (beta == 0.0f ? 0.0 : (double)beta * c0));
            sa = fabs((double)alpha) * sa + (beta == 0.0f ? 0.0 : fabs((double)beta * c0));
            if (sa > mag) mag = sa;
        }
    tol = (k + 2) * EPS_F * mag;
    if (t->ref) {
        TRY(run_gemm(t, t->ref, &g, A, B, want));
        tol *= 2.0;
    }
    snprintf(what, sizeof what, "gemm ta=%d tb=%d m=%d n=%d k=%d lda=%d ldb=%d ldc=%d alpha=%g beta=%g%s",
             ta, tb, m, n, k, g.lda, g.ldb, g.ldc, (double)alpha, (double)beta,
             nan_c ? " (NaN in C)" : "");
    COMPARE(what, got, want, (size_t)g.ldc * n, tol, 0.0);
    TRY(check_pad(what, got, m, n, g.ldc));
    t_release(t, mark);
    return NGT_PASS;
}

static int op_gemm(tctx *t) {
    const int B = t->big;
    const int shapes[][3] = {{1, 1, 1}, {7, 33, B},   {33, 7, 1},  {B, B, 33},
                             {1, B, 7}, {33, 33, 33}, {B, 1, B},   {7, 7, 0}};
    static const float ab[][2] = {{1.0f, 1.0f}, {0.5f, -1.5f}, {0.0f, 0.75f}, {-2.0f, 0.0f},
                                  {0.0f, 0.0f}};
    size_t s, v;
    int ta, tb;
    for (ta = 0; ta < 2; ta++)
        for (tb = 0; tb < 2; tb++) {
            for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                TRY(gemm_case(t, ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 1.25f, 0.0f, 3,
                              1));
            for (v = 0; v < sizeof ab / sizeof ab[0]; v++)
                TRY(gemm_case(t, ta, tb, 33, 7, B, ab[v][0], ab[v][1], 2, ab[v][1] == 0.0f));
            /* k = 0: C = beta C (or 0 for beta = 0, ignoring NaN) */
            TRY(gemm_case(t, ta, tb, 7, 33, 0, 1.0f, 0.5f, 1, 0));
            TRY(gemm_case(t, ta, tb, 7, 33, 0, 1.0f, 0.0f, 1, 1));
            /* leading dimensions equal to the row counts */
            TRY(gemm_case(t, ta, tb, 7, 33, 33, 1.0f, 1.0f, 0, 0));
        }
    return NGT_PASS;
}

/* ---- syrk ---------------------------------------------------------------------------------- */

typedef struct syrk_args {
    int trans, n, k, lda, ldc;
    float alpha, beta;
} syrk_args;

static int run_syrk(tctx *t, ng_backend *be, const syrk_args *g, const float *A, float *C) {
    int mark = t->nmem;
    size_t na = (size_t)g->lda * (g->trans ? g->n : g->k), nc = (size_t)g->ldc * g->n;
    dbuf dA, dC;
    D_NEW(t, be, &dA, na, sizeof(float), A);
    D_NEW(t, be, &dC, nc, sizeof(float), C);
    NGT_OK(ng_syrk(be, g->trans, g->n, g->k, g->alpha, d_f(&dA), g->lda, g->beta, d_f(&dC),
                   g->ldc));
    TRY(d_fetch(&dC, C, "syrk C"));
    TRY(d_unchanged(&dA, A, "syrk A"));
    t_release(t, mark);
    return NGT_PASS;
}

/* Tolerance as for gemm: (k + 2) * FLT_EPSILON * max(|alpha| sum |a a| + |beta c|), doubled for
 * cuda-vs-cpu. The strict upper triangle holds SENT and must come back bit for bit. */
static int syrk_case(tctx *t, int trans, int n, int k, float alpha, float beta, int nan_c) {
    int mark = t->nmem, i, j, l;
    syrk_args g;
    int ar = trans ? k : n, ac = trans ? n : k;
    float *A, *C0, *got, *want;
    double mag = 0.0, tol;
    char what[200];
    g.trans = trans; g.n = n; g.k = k; g.alpha = alpha; g.beta = beta;
    g.lda = max_i(1, ar + 2);
    g.ldc = max_i(1, n + 3);
    A = h_mat(t, ar, ac, g.lda, 21 + (uint64_t)n, -1.0, 1.0);
    C0 = h_mat(t, n, n, g.ldc, 22 + (uint64_t)k, -1.0, 1.0);
    for (j = 0; j < n; j++)
        for (i = 0; i < n; i++)
            if (i < j) C0[i + (size_t)j * g.ldc] = SENT_F;
            else if (nan_c) C0[i + (size_t)j * g.ldc] = NAN;
    got = h_dup(t, C0, (size_t)g.ldc * n);
    want = h_dup(t, C0, (size_t)g.ldc * n);
    TRY(run_syrk(t, t->be, &g, A, got));
    for (j = 0; j < n; j++)
        for (i = j; i < n; i++) {
            double s = 0.0, sa = 0.0, c0 = C0[i + (size_t)j * g.ldc];
            for (l = 0; l < k; l++) {
                double a = trans ? A[l + (size_t)i * g.lda] : A[i + (size_t)l * g.lda];
                double b = trans ? A[l + (size_t)j * g.lda] : A[j + (size_t)l * g.lda];
                s += a * b;
                sa += fabs(a * b);
            }
            if (!t->ref)
                want[i + (size_t)j * g.ldc] =
                    (float)((double)alpha * s + (beta == 0.0f ? 0.0 : (double)beta * c0));
            sa = fabs((double)alpha) * sa + (beta == 0.0f ? 0.0 : fabs((double)beta * c0));
            if (sa > mag) mag = sa;
        }
    tol = (k + 2) * EPS_F * mag;
    if (t->ref) {
        TRY(run_syrk(t, t->ref, &g, A, want));
        tol *= 2.0;
    }
    snprintf(what, sizeof what, "syrk trans=%d n=%d k=%d lda=%d ldc=%d alpha=%g beta=%g%s", trans,
             n, k, g.lda, g.ldc, (double)alpha, (double)beta, nan_c ? " (NaN in C)" : "");
    for (j = 0; j < n; j++)
        for (i = 0; i < j; i++)
            NGT_CHECK(got[i + (size_t)j * g.ldc] == SENT_F,
                      "%s: strict upper C[%d,%d] touched: %.9g", what, i, j,
                      (double)got[i + (size_t)j * g.ldc]);
    COMPARE(what, got, want, (size_t)g.ldc * n, tol, 0.0);
    TRY(check_pad(what, got, n, n, g.ldc));
    t_release(t, mark);
    return NGT_PASS;
}

static int op_syrk(tctx *t) {
    const int ns[] = {1, 7, 33, t->big}, ks[] = {1, 33, t->big};
    size_t a, b;
    int tr;
    for (tr = 0; tr < 2; tr++) {
        for (a = 0; a < sizeof ns / sizeof ns[0]; a++)
            for (b = 0; b < sizeof ks / sizeof ks[0]; b++) {
                TRY(syrk_case(t, tr, ns[a], ks[b], 1.0f, 0.0f, 1));
                TRY(syrk_case(t, tr, ns[a], ks[b], -0.5f, 1.5f, 0));
            }
        TRY(syrk_case(t, tr, 33, 7, 0.0f, 0.25f, 0)); /* alpha = 0: C = beta C */
        TRY(syrk_case(t, tr, 7, 0, 1.0f, 0.0f, 1));   /* k = 0, beta = 0: lower C = 0 */
        TRY(syrk_case(t, tr, 7, 0, 1.0f, 0.5f, 0));   /* k = 0: lower C = beta C */
    }
    return NGT_PASS;
}

/* ---- gemv ---------------------------------------------------------------------------------- */

typedef struct gemv_args {
    int trans, m, n, lda;
    float alpha, beta;
} gemv_args;

static int run_gemv(tctx *t, ng_backend *be, const gemv_args *g, const float *A, const float *x,
                    float *y) {
    int mark = t->nmem;
    size_t xl = (size_t)(g->trans ? g->m : g->n), yl = (size_t)(g->trans ? g->n : g->m);
    dbuf dA, dx, dy;
    D_NEW(t, be, &dA, (size_t)g->lda * g->n, sizeof(float), A);
    D_NEW(t, be, &dx, xl, sizeof(float), x);
    D_NEW(t, be, &dy, yl, sizeof(float), y);
    NGT_OK(ng_gemv(be, g->trans, g->m, g->n, g->alpha, d_f(&dA), g->lda, d_f(&dx), g->beta,
                   d_f(&dy)));
    TRY(d_fetch(&dy, y, "gemv y"));
    TRY(d_unchanged(&dA, A, "gemv A"));
    TRY(d_unchanged(&dx, x, "gemv x"));
    t_release(t, mark);
    return NGT_PASS;
}

/* Tolerance: (terms + 2) * FLT_EPSILON * max(|alpha| sum |a x| + |beta y|), doubled for cuda. */
static int gemv_case(tctx *t, int trans, int m, int n, float alpha, float beta, int nan_y) {
    int mark = t->nmem, i, l;
    gemv_args g;
    int xl = trans ? m : n, yl = trans ? n : m;
    float *A, *x, *y0, *got, *want;
    double mag = 0.0, tol;
    char what[160];
    g.trans = trans; g.m = m; g.n = n; g.alpha = alpha; g.beta = beta;
    g.lda = max_i(1, m + 5);
    A = h_mat(t, m, n, g.lda, 31 + (uint64_t)m, -1.0, 1.0);
    x = h_mat(t, xl, 1, max_i(1, xl), 32, -1.0, 1.0);
    y0 = h_mat(t, yl, 1, max_i(1, yl), 33, -1.0, 1.0);
    if (nan_y) set_interior(y0, yl, 1, max_i(1, yl), NAN);
    got = h_dup(t, y0, (size_t)max_i(1, yl));
    want = h_dup(t, y0, (size_t)max_i(1, yl));
    TRY(run_gemv(t, t->be, &g, A, x, got));
    for (i = 0; i < yl; i++) {
        double s = 0.0, sa = 0.0, y = y0[i];
        for (l = 0; l < xl; l++) {
            double a = trans ? A[l + (size_t)i * g.lda] : A[i + (size_t)l * g.lda];
            s += a * x[l];
            sa += fabs(a * x[l]);
        }
        if (!t->ref) want[i] = (float)((double)alpha * s + (beta == 0.0f ? 0.0 : (double)beta * y));
        sa = fabs((double)alpha) * sa + (beta == 0.0f ? 0.0 : fabs((double)beta * y));
        if (sa > mag) mag = sa;
    }
    tol = (xl + 2) * EPS_F * mag;
    if (t->ref) {
        TRY(run_gemv(t, t->ref, &g, A, x, want));
        tol *= 2.0;
    }
    snprintf(what, sizeof what, "gemv trans=%d m=%d n=%d lda=%d alpha=%g beta=%g%s", trans, m, n,
             g.lda, (double)alpha, (double)beta, nan_y ? " (NaN in y)" : "");
    COMPARE(what, got, want, (size_t)yl, tol, 0.0);
    t_release(t, mark);
    return NGT_PASS;
}

static int op_gemv(tctx *t) {
    const int B = t->big;
    const int shapes[][2] = {{1, 1}, {7, 33}, {B, 7}, {33, B}, {B, B}};
    size_t s;
    int tr;
    for (tr = 0; tr < 2; tr++) {
        for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            TRY(gemv_case(t, tr, shapes[s][0], shapes[s][1], 1.0f, 0.0f, 1));
            TRY(gemv_case(t, tr, shapes[s][0], shapes[s][1], 0.5f, -1.0f, 0));
            TRY(gemv_case(t, tr, shapes[s][0], shapes[s][1], -1.5f, 1.0f, 0));
        }
        /* empty inner dimension: y = beta y */
        TRY(gemv_case(t, tr, tr ? 0 : 7, tr ? 7 : 0, 1.0f, 0.5f, 0));
        TRY(gemv_case(t, tr, tr ? 0 : 7, tr ? 7 : 0, 1.0f, 0.0f, 1));
    }
    return NGT_PASS;
}

/* ---- axpby, scal, dot, nrm2 ---------------------------------------------------------------- */

static int run_axpby(tctx *t, ng_backend *be, size_t n, float alpha, const float *x, float beta,
                     float *y, int scal) {
    int mark = t->nmem;
    dbuf dx, dy;
    D_NEW(t, be, &dx, n, sizeof(float), x);
    D_NEW(t, be, &dy, n, sizeof(float), y);
    if (scal) NGT_OK(ng_scal(be, n, alpha, d_f(&dy)));
    else NGT_OK(ng_axpby(be, n, alpha, d_f(&dx), beta, d_f(&dy)));
    TRY(d_fetch(&dy, y, scal ? "scal x" : "axpby y"));
    TRY(d_unchanged(&dx, x, "axpby x"));
    t_release(t, mark);
    return NGT_PASS;
}

/* axpby tolerance: two products and a sum, so within 1.5 ulp of max(|alpha x| + |beta y|):
 * atol = 2 * FLT_EPSILON * that magnitude (doubled for cuda). scal is one correctly rounded
 * product, so it is exact against double (a float x float product is exact in double). */
static int vec_case(tctx *t, size_t n, float alpha, float beta, int nan_y, int scal) {
    int mark = t->nmem;
    float *x = h_mat(t, (int)n, 1, (int)n, 41 + n, -2.0, 2.0);
    float *y0 = h_mat(t, (int)n, 1, (int)n, 42 + n, -2.0, 2.0);
    float *got, *want;
    double mag = 0.0, tol;
    char what[160];
    size_t i;
    if (nan_y) set_interior(y0, (int)n, 1, (int)n, NAN);
    got = h_dup(t, y0, n);
    want = h_dup(t, y0, n);
    TRY(run_axpby(t, t->be, n, alpha, x, beta, got, scal));
    for (i = 0; i < n; i++) {
        double yb = beta == 0.0f ? 0.0 : (double)beta * y0[i];
        double r = scal ? (double)alpha * y0[i] : (double)alpha * x[i] + yb;
        double a = scal ? 0.0 : fabs((double)alpha * x[i]) + fabs(yb);
        if (!t->ref) want[i] = (float)r;
        if (a > mag) mag = a;
    }
    tol = 2.0 * EPS_F * mag;
    if (t->ref) {
        TRY(run_axpby(t, t->ref, n, alpha, x, beta, want, scal));
        tol *= 2.0;
    }
    snprintf(what, sizeof what, "%s n=%zu alpha=%g beta=%g%s", scal ? "scal" : "axpby", n,
             (double)alpha, (double)beta, nan_y ? " (NaN in y)" : "");
    COMPARE(what, got, want, n, tol, 0.0);
    t_release(t, mark);
    return NGT_PASS;
}

static int op_axpby_scal(tctx *t) {
    const size_t ns[] = {1, 7, 1000, t->small ? 2000 : 70000}; /* 70000: parallel path */
    size_t a;
    for (a = 0; a < sizeof ns / sizeof ns[0]; a++) {
        TRY(vec_case(t, ns[a], 2.0f, 0.0f, 1, 0));
        TRY(vec_case(t, ns[a], 0.5f, -1.25f, 0, 0));
        TRY(vec_case(t, ns[a], 0.0f, 1.0f, 0, 0));
        TRY(vec_case(t, ns[a], -0.5f, 0.0f, 0, 1));
        TRY(vec_case(t, ns[a], 0.0f, 0.0f, 0, 1));
        TRY(vec_case(t, ns[a], 3.0f, 0.0f, 0, 1));
    }
    return NGT_PASS;
}

static int run_dot_nrm2(tctx *t, ng_backend *be, size_t n, const float *x, const float *y,
                        float *dot, float *nrm) {
    int mark = t->nmem;
    dbuf dx, dy;
    D_NEW(t, be, &dx, n, sizeof(float), x);
    D_NEW(t, be, &dy, n, sizeof(float), y);
    NGT_OK(ng_dot(be, n, d_f(&dx), d_f(&dy), dot));
    NGT_OK(ng_nrm2(be, n, d_f(&dx), nrm));
    TRY(d_unchanged(&dx, x, "dot/nrm2 x"));
    TRY(d_unchanged(&dy, y, "dot y"));
    t_release(t, mark);
    return NGT_PASS;
}

/* dot of n terms accumulated in float: within (n + 1) * FLT_EPSILON * sum |x y|. nrm2: the sum of
 * squares has relative error n * eps and the square root halves it: rtol (n + 2) * FLT_EPSILON.
 * scale multiplies x so that the squares overflow (1e25) or underflow (1e-25) in float: nrm2 must
 * still be accurate (BLAS scales). Doubled for cuda-vs-cpu. */
static int dot_case(tctx *t, size_t n, double scale) {
    int mark = t->nmem;
    float *x = h_mat(t, (int)n, 1, (int)n, 51 + n, -1.0, 1.0);
    float *y = h_mat(t, (int)n, 1, (int)n, 52 + n, -1.0, 1.0);
    double s = 0.0, sa = 0.0, ss = 0.0, wdot, wnrm, f = t->ref ? 2.0 : 1.0;
    float gdot = NAN, gnrm = NAN, rdot, rnrm;
    char what[120];
    size_t i;
    for (i = 0; i < n; i++) {
        x[i] = (float)(x[i] * scale);
        s += (double)x[i] * y[i];
        sa += fabs((double)x[i] * y[i]);
        ss += ((double)x[i] / scale) * ((double)x[i] / scale);
    }
    wdot = s;
    wnrm = sqrt(ss) * scale;
    TRY(run_dot_nrm2(t, t->be, n, x, y, &gdot, &gnrm));
    if (t->ref) {
        TRY(run_dot_nrm2(t, t->ref, n, x, y, &rdot, &rnrm));
        wdot = rdot;
        wnrm = rnrm;
    }
    snprintf(what, sizeof what, "dot n=%zu scale=%g", n, scale);
    NGT_CLOSE(gdot, wdot, f * (n + 1) * EPS_F * sa + 1e-30 * scale, what);
    snprintf(what, sizeof what, "nrm2 n=%zu scale=%g", n, scale);
    NGT_CLOSE(gnrm, wnrm, f * (n + 2) * EPS_F * sqrt(ss) * scale, what);
    t_release(t, mark);
    return NGT_PASS;
}

static int op_dot_nrm2(tctx *t) {
    const size_t ns[] = {1, 7, 1000, t->small ? 2000 : 70000};
    size_t a;
    for (a = 0; a < sizeof ns / sizeof ns[0]; a++) TRY(dot_case(t, ns[a], 1.0));
    TRY(dot_case(t, 100, 1e25));
    TRY(dot_case(t, 100, 1e-25));
    return NGT_PASS;
}

/* ---- sum_cols / sum_rows ------------------------------------------------------------------- */

static int run_sums(tctx *t, ng_backend *be, int rows_op, int rows, int cols, float alpha,
                    const float *A, int lda, float beta, float *y) {
    int mark = t->nmem;
    size_t yl = (size_t)(rows_op ? cols : rows);
    dbuf dA, dy;
    D_NEW(t, be, &dA, (size_t)lda * cols, sizeof(float), A);
    D_NEW(t, be, &dy, yl, sizeof(float), y);
    if (rows_op) NGT_OK(ng_sum_rows(be, rows, cols, alpha, d_f(&dA), lda, beta, d_f(&dy)));
    else NGT_OK(ng_sum_cols(be, rows, cols, alpha, d_f(&dA), lda, beta, d_f(&dy)));
    TRY(d_fetch(&dy, y, rows_op ? "sum_rows y" : "sum_cols y"));
    TRY(d_unchanged(&dA, A, "sum A"));
    t_release(t, mark);
    return NGT_PASS;
}

/* Tolerance: (terms + 2) * FLT_EPSILON * max(|alpha| sum |a| + |beta y|), doubled for cuda. */
static int sums_case(tctx *t, int rows_op, int rows, int cols, float alpha, float beta, int nan_y) {
    int mark = t->nmem, lda = rows + 3, yl = rows_op ? cols : rows, terms = rows_op ? rows : cols;
    int i, l;
    float *A = h_mat(t, rows, cols, lda, 61 + (uint64_t)rows, -1.0, 1.0);
    float *y0 = h_mat(t, yl, 1, yl, 62, -1.0, 1.0), *got, *want;
    double mag = 0.0, tol;
    char what[160];
    if (nan_y) set_interior(y0, yl, 1, yl, NAN);
    got = h_dup(t, y0, (size_t)yl);
    want = h_dup(t, y0, (size_t)yl);
    TRY(run_sums(t, t->be, rows_op, rows, cols, alpha, A, lda, beta, got));
    for (i = 0; i < yl; i++) {
        double s = 0.0, sa = 0.0, yb = beta == 0.0f ? 0.0 : (double)beta * y0[i];
        for (l = 0; l < terms; l++) {
            double a = rows_op ? A[l + (size_t)i * lda] : A[i + (size_t)l * lda];
            s += a;
            sa += fabs(a);
        }
        if (!t->ref) want[i] = (float)((double)alpha * s + yb);
        sa = fabs((double)alpha) * sa + fabs(yb);
        if (sa > mag) mag = sa;
    }
    tol = (terms + 2) * EPS_F * mag;
    if (t->ref) {
        TRY(run_sums(t, t->ref, rows_op, rows, cols, alpha, A, lda, beta, want));
        tol *= 2.0;
    }
    snprintf(what, sizeof what, "%s rows=%d cols=%d lda=%d alpha=%g beta=%g%s",
             rows_op ? "sum_rows" : "sum_cols", rows, cols, lda, (double)alpha, (double)beta,
             nan_y ? " (NaN in y)" : "");
    COMPARE(what, got, want, (size_t)yl, tol, 0.0);
    t_release(t, mark);
    return NGT_PASS;
}

static int op_sums(tctx *t) {
    const int B = t->big;
    const int shapes[][2] = {{1, 1}, {7, 33}, {33, 7}, {B, B}, {1, B}, {B, 1}};
    size_t s;
    int op;
    for (op = 0; op < 2; op++)
        for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            TRY(sums_case(t, op, shapes[s][0], shapes[s][1], 1.0f, 0.0f, 1));
            TRY(sums_case(t, op, shapes[s][0], shapes[s][1], 0.5f, 2.0f, 0));
            TRY(sums_case(t, op, shapes[s][0], shapes[s][1], -1.0f / 3.0f, 1.0f, 0));
        }
    return NGT_PASS;
}

/* ---- gibbs_sample --------------------------------------------------------------------------- */

typedef struct gibbs_args {
    int rows, cols, ldp, ldq, lds;
    int alias;      /* 0: none; 1: prob is pre's buffer (ldq = ldp); 2: sample is pre's buffer */
    int has_bias, has_base, has_prob, has_sample;
    float beta;
    uint64_t key, step;
} gibbs_args;

/* prob (ldq, cols) and sample (lds, cols) hold the initial output contents and receive the result. */
static int run_gibbs(tctx *t, ng_backend *be, const gibbs_args *g, const float *pre,
                     const float *bias, const float *base, float *prob, float *sample) {
    int mark = t->nmem;
    dbuf dpre, dbias, dbase, dprob, dsample;
    float *pq = NULL, *ps = NULL;
    D_NEW(t, be, &dpre, (size_t)g->ldp * g->cols, sizeof(float), pre);
    D_NEW(t, be, &dbias, (size_t)g->rows, sizeof(float), bias);
    D_NEW(t, be, &dbase, (size_t)g->rows, sizeof(float), base);
    D_NEW(t, be, &dprob, (size_t)g->ldq * g->cols, sizeof(float), prob);
    D_NEW(t, be, &dsample, (size_t)g->lds * g->cols, sizeof(float), sample);
    if (g->has_prob) pq = g->alias == 1 ? d_f(&dpre) : d_f(&dprob);
    if (g->has_sample) ps = g->alias == 2 ? d_f(&dpre) : d_f(&dsample);
    NGT_OK(ng_gibbs_sample(be, g->rows, g->cols, d_f(&dpre), g->ldp,
                           g->has_bias ? d_f(&dbias) : NULL, g->beta,
                           g->has_base ? d_f(&dbase) : NULL, pq, g->ldq, ps, g->lds, g->key,
                           g->step));
    TRY(d_fetch(g->alias == 1 ? &dpre : &dprob, prob, "gibbs prob"));
    TRY(d_fetch(g->alias == 2 ? &dpre : &dsample, sample, "gibbs sample"));
    if (!g->alias) TRY(d_unchanged(&dpre, pre, "gibbs pre"));
    TRY(d_unchanged(&dbias, bias, "gibbs bias"));
    TRY(d_unchanged(&dbase, base, "gibbs base"));
    t_release(t, mark);
    return NGT_PASS;
}

static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }

/* cpu-vs-naive: prob must equal ng_sigmoid of the tempered input computed in float as the contract
 * writes it (the CPU runs that very body, so exactly), and lie within 1e-6 of the double sigmoid
 * (input rounding ~3 ulp of |x| <= 8 times slope 1/4, plus float sigmoid error). sample must be
 * exactly [u <= p] with u = ng_uniform_at(key, step, r + rows c).
 * cuda-vs-cpu: prob within 1e-6 of the CPU (GPU expf is within 2 ulp); samples bit for bit equal
 * (same Philox stream, same map to (0,1]) and consistent with the backend's own prob. */
static int gibbs_case(tctx *t, const gibbs_args *g) {
    int mark = t->nmem, r, c;
    const int rows = g->rows, cols = g->cols;
    float *pre = h_mat(t, rows, cols, g->ldp, 71 + (uint64_t)rows, -4.0, 4.0);
    float *bias = h_mat(t, rows, 1, rows, 72, -1.0, 1.0);
    float *base = h_mat(t, rows, 1, rows, 73, -2.0, 2.0);
    float *prob0, *sample0, *gp, *gs, *wp, *ws;
    char what[200];
    snprintf(what, sizeof what,
             "gibbs_sample rows=%d cols=%d ldp=%d ldq=%d lds=%d alias=%d bias=%d base=%d "
             "prob=%d sample=%d beta=%g",
             rows, cols, g->ldp, g->ldq, g->lds, g->alias, g->has_bias, g->has_base, g->has_prob,
             g->has_sample, (double)g->beta);
    /* outputs start as NaN (interior) and SENT (padding) so a missed element shows */
    prob0 = g->alias == 1 ? h_dup(t, pre, (size_t)g->ldp * cols)
                          : h_mat(t, rows, cols, g->ldq, 74, 0.0, 1.0);
    sample0 = g->alias == 2 ? h_dup(t, pre, (size_t)g->ldp * cols)
                            : h_mat(t, rows, cols, g->lds, 75, 0.0, 1.0);
    if (g->alias != 1) set_interior(prob0, rows, cols, g->ldq, NAN);
    if (g->alias != 2) set_interior(sample0, rows, cols, g->lds, NAN);
    gp = h_dup(t, prob0, (size_t)g->ldq * cols);
    gs = h_dup(t, sample0, (size_t)g->lds * cols);
    wp = h_dup(t, prob0, (size_t)g->ldq * cols);
    ws = h_dup(t, sample0, (size_t)g->lds * cols);
    TRY(run_gibbs(t, t->be, g, pre, bias, base, gp, gs));
    if (t->ref) TRY(run_gibbs(t, t->ref, g, pre, bias, base, wp, ws));
    for (c = 0; c < cols; c++)
        for (r = 0; r < rows; r++) {
            float pv = pre[r + (size_t)c * g->ldp], bv = g->has_bias ? bias[r] : 0.0f;
            float basev = g->has_base ? base[r] : 0.0f;
            float x = ng_gibbs_input(pv, bv, g->beta, basev); /* the shared body, so the CPU check is exact */
            float p = ng_sigmoid(x);
            double pd = sigmoid_d((double)g->beta * ((double)pv + bv) + (1.0 - g->beta) * basev);
            float u = ng_uniform_at(g->key, g->step, (uint64_t)r + (uint64_t)rows * c);
            float *gq = &gp[r + (size_t)c * g->ldq], *gsv = &gs[r + (size_t)c * g->lds];
            if (g->has_prob) {
                NGT_CHECK(fabs((double)*gq - pd) <= 1e-6, "%s: prob[%d,%d] = %.9g, sigmoid %.9g",
                          what, r, c, (double)*gq, pd);
                if (!t->ref) wp[r + (size_t)c * g->ldq] = p;
            }
            if (g->has_sample) {
                /* with prob output, the draw must match the backend's own probability */
                float pown = g->has_prob ? *gq : p;
                NGT_CHECK(*gsv == (u <= pown ? 1.0f : 0.0f),
                          "%s: sample[%d,%d] = %g but u = %.9g, p = %.9g", what, r, c,
                          (double)*gsv, (double)u, (double)pown);
                if (!t->ref) ws[r + (size_t)c * g->lds] = u <= p ? 1.0f : 0.0f;
            }
        }
    if (g->has_prob) {
        char w2[240];
        snprintf(w2, sizeof w2, "%s prob", what);
        COMPARE(w2, gp, wp, (size_t)g->ldq * cols, t->ref ? 1e-6 : 0.0, 0.0);
        TRY(check_pad(w2, gp, rows, cols, g->ldq));
    } else if (g->alias != 1) {
        NGT_CHECK(memcmp(gp, prob0, (size_t)g->ldq * cols * sizeof(float)) == 0,
                  "%s: prob buffer written although prob is NULL", what);
    }
    if (g->has_sample) {
        char w2[240];
        snprintf(w2, sizeof w2, "%s sample", what);
        COMPARE(w2, gs, ws, (size_t)g->lds * cols, 0.0, 0.0);
        TRY(check_pad(w2, gs, rows, cols, g->lds));
    } else if (g->alias != 2) {
        NGT_CHECK(memcmp(gs, sample0, (size_t)g->lds * cols * sizeof(float)) == 0,
                  "%s: sample buffer written although sample is NULL", what);
    }
    t_release(t, mark);
    return NGT_PASS;
}

/* The mean of the samples estimates the mean of the probabilities: with N independent Bernoulli
 * draws the standard error is sqrt(sum p (1 - p)) / N; accept 5 sigma. */
static int gibbs_statistics(tctx *t, int rows, int cols) {
    int mark = t->nmem, i, n = rows * cols;
    gibbs_args g;
    float *pre = h_mat(t, rows, cols, rows, 76, -4.0, 4.0), *p, *s, *bias, *base;
    double sp = 0.0, ss = 0.0, var = 0.0, sigma;
    memset(&g, 0, sizeof g);
    g.rows = rows; g.cols = cols; g.ldp = g.ldq = g.lds = rows;
    g.has_prob = g.has_sample = 1;
    g.beta = 1.0f;
    g.key = ng_rng_key(77, 3);
    g.step = 12;
    p = h_mat(t, rows, cols, rows, 1, 0.0, 1.0);
    s = h_mat(t, rows, cols, rows, 2, 0.0, 1.0);
    bias = h_mat(t, rows, 1, rows, 3, 0.0, 1.0);
    base = h_mat(t, rows, 1, rows, 4, 0.0, 1.0);
    TRY(run_gibbs(t, t->be, &g, pre, bias, base, p, s));
    for (i = 0; i < n; i++) {
        sp += p[i];
        ss += s[i];
        var += (double)p[i] * (1.0 - p[i]);
    }
    sigma = sqrt(var) / n;
    NGT_CLOSE(ss / n, sp / n, 5.0 * sigma, "gibbs_sample: mean of samples vs mean of probs (5 sigma)");
    t_release(t, mark);
    return NGT_PASS;
}

static int op_gibbs_sample(tctx *t) {
    gibbs_args g;
    const uint64_t key = ng_rng_key(2015, 3);
    memset(&g, 0, sizeof g);
    g.rows = 33; g.cols = 9; g.ldp = 35; g.ldq = 36; g.lds = 34;
    g.has_bias = 1; g.has_prob = 1; g.has_sample = 1;
    g.beta = 1.0f; g.key = key; g.step = 0x100000003ull;
    TRY(gibbs_case(t, &g));                      /* base NULL, beta 1 */
    g.has_base = 1; g.beta = 0.3f;
    TRY(gibbs_case(t, &g));                      /* tempered: beta 0.3 with base */
    g.has_prob = 0;
    TRY(gibbs_case(t, &g));                      /* prob NULL */
    g.has_prob = 1; g.has_sample = 0;
    TRY(gibbs_case(t, &g));                      /* sample NULL */
    g.has_sample = 1; g.has_bias = 0; g.beta = 0.0f;
    TRY(gibbs_case(t, &g));                      /* bias NULL, beta 0: base only */
    g.has_bias = 1; g.beta = 0.3f; g.alias = 1; g.ldq = g.ldp;
    TRY(gibbs_case(t, &g));                      /* prob aliases pre */
    g.alias = 2; g.ldq = 36; g.lds = g.ldp;
    TRY(gibbs_case(t, &g));                      /* sample aliases pre */
    g.alias = 0; g.rows = 7; g.cols = 5; g.ldp = g.ldq = g.lds = 7; g.step = 0;
    TRY(gibbs_case(t, &g));                      /* packed (ld = rows) */
    g.rows = 1; g.cols = 1; g.ldp = 2; g.ldq = 1; g.lds = 3; g.key = ~0ull; g.step = ~0ull;
    TRY(gibbs_case(t, &g));                      /* a single unit; all-ones key and step */
    g.rows = 4; g.cols = 1; g.ldp = g.ldq = g.lds = 4; g.step = 5;
    TRY(gibbs_case(t, &g));                      /* exactly one Philox block */
    TRY(gibbs_statistics(t, t->small ? 40 : 100, t->small ? 40 : 100));
    return NGT_PASS;
}

/* ---- bernoulli ------------------------------------------------------------------------------- */

static int run_bernoulli(tctx *t, ng_backend *be, size_t n, const float *p, float *out, int alias,
                         uint64_t key, uint64_t step) {
    int mark = t->nmem;
    dbuf dp, dout;
    D_NEW(t, be, &dp, n, sizeof(float), p);
    D_NEW(t, be, &dout, n, sizeof(float), out);
    NGT_OK(ng_bernoulli(be, n, d_f(&dp), alias ? d_f(&dp) : d_f(&dout), key, step));
    TRY(d_fetch(alias ? &dp : &dout, out, "bernoulli out"));
    if (!alias) TRY(d_unchanged(&dp, p, "bernoulli p"));
    t_release(t, mark);
    return NGT_PASS;
}

/* Exact on both comparisons: out[i] = [u(key, step, i) <= p[i]] with the shared stream. */
static int bernoulli_case(tctx *t, size_t n, int alias, uint64_t key, uint64_t step) {
    int mark = t->nmem;
    float *p = h_mat(t, (int)n, 1, (int)n, 81 + n, 0.0, 1.0), *got, *want;
    size_t i;
    char what[120];
    if (n > 1) p[1] = 0.0f; /* u > 0 always: never drawn */
    if (n > 2) p[2] = 1.0f; /* u <= 1 always: always drawn */
    got = h_mat(t, (int)n, 1, (int)n, 82, 5.0, 6.0);
    want = h_dup(t, got, n);
    TRY(run_bernoulli(t, t->be, n, p, got, alias, key, step));
    if (t->ref) TRY(run_bernoulli(t, t->ref, n, p, want, alias, key, step));
    else
        for (i = 0; i < n; i++) want[i] = ng_uniform_at(key, step, i) <= p[i] ? 1.0f : 0.0f;
    snprintf(what, sizeof what, "bernoulli n=%zu alias=%d", n, alias);
    COMPARE(what, got, want, n, 0.0, 0.0);
    if (n > 2) NGT_CHECK(got[1] == 0.0f && got[2] == 1.0f, "%s: p = 0 or p = 1 drawn wrongly", what);
    t_release(t, mark);
    return NGT_PASS;
}

static int op_bernoulli(tctx *t) {
    TRY(bernoulli_case(t, 1, 0, ng_rng_key(1, 2), 0));
    TRY(bernoulli_case(t, 6, 0, ng_rng_key(1, 2), 3));
    TRY(bernoulli_case(t, 1001, 0, ng_rng_key(9, 2), 0x700000001ull));
    TRY(bernoulli_case(t, 1001, 1, ng_rng_key(9, 2), 0x700000001ull));
    return NGT_PASS;
}

/* ---- softplus_sum ---------------------------------------------------------------------------- */

static int run_softplus(tctx *t, ng_backend *be, int rows, int cols, const float *pre, int ldp,
                        const float *bias, float beta, float alpha, float gamma, float *y) {
    int mark = t->nmem;
    dbuf dpre, dbias, dy;
    D_NEW(t, be, &dpre, (size_t)ldp * cols, sizeof(float), pre);
    D_NEW(t, be, &dbias, (size_t)rows, sizeof(float), bias);
    D_NEW(t, be, &dy, (size_t)cols, sizeof(float), y);
    NGT_OK(ng_softplus_sum(be, rows, cols, d_f(&dpre), ldp, bias ? d_f(&dbias) : NULL, beta, alpha,
                           gamma, d_f(&dy)));
    TRY(d_fetch(&dy, y, "softplus_sum y"));
    TRY(d_unchanged(&dpre, pre, "softplus_sum pre"));
    t_release(t, mark);
    return NGT_PASS;
}

static double softplus_ref(double x) { return x > 0.0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

/* Tolerance per column: the float input x = beta (pre + bias) carries relative error <= eps, which
 * moves softplus by <= eps (softplus(x) + 0.37) (slope sigmoid(x); |x| sigmoid(x) <= 1/e for x < 0);
 * each float softplus and each of the `rows` additions adds ~eps of the running magnitude. So
 * atol = FLT_EPSILON * max_c(|alpha| ((rows + 4) sum_r softplus + 0.5 rows) + |gamma y|), doubled
 * for cuda-vs-cpu. */
static int softplus_case(tctx *t, int rows, int cols, int ldp, int has_bias, float beta,
                         float alpha, float gamma, int nan_y, const float *pre_in) {
    int mark = t->nmem, r, c;
    float *pre = pre_in ? h_dup(t, pre_in, (size_t)ldp * cols)
                        : h_mat(t, rows, cols, ldp, 91 + (uint64_t)rows, -6.0, 6.0);
    float *bias = h_mat(t, rows, 1, max_i(rows, 1), 92, -1.0, 1.0);
    float *y0 = h_mat(t, cols, 1, cols, 93, -3.0, 3.0), *got, *want;
    double mag = 0.0, tol;
    char what[160];
    if (nan_y) set_interior(y0, cols, 1, cols, NAN);
    got = h_dup(t, y0, (size_t)cols);
    want = h_dup(t, y0, (size_t)cols);
    TRY(run_softplus(t, t->be, rows, cols, pre, ldp, has_bias ? bias : NULL, beta, alpha, gamma,
                     got));
    for (c = 0; c < cols; c++) {
        double s = 0.0, yb = gamma == 0.0f ? 0.0 : (double)gamma * y0[c], m;
        for (r = 0; r < rows; r++)
            s += softplus_ref((double)beta *
                              ((double)pre[r + (size_t)c * ldp] + (has_bias ? bias[r] : 0.0)));
        if (!t->ref) want[c] = (float)((double)alpha * s + yb);
        m = fabs((double)alpha) * ((rows + 4) * s + 0.5 * rows) + fabs(yb);
        if (m > mag) mag = m;
    }
    tol = EPS_F * mag;
    if (t->ref) {
        TRY(run_softplus(t, t->ref, rows, cols, pre, ldp, has_bias ? bias : NULL, beta, alpha,
                         gamma, want));
        tol *= 2.0;
    }
    snprintf(what, sizeof what, "softplus_sum rows=%d cols=%d ldp=%d bias=%d beta=%g alpha=%g gamma=%g%s",
             rows, cols, ldp, has_bias, (double)beta, (double)alpha, (double)gamma,
             nan_y ? " (NaN in y)" : "");
    for (c = 0; c < cols; c++)
        NGT_CHECK(isfinite(got[c]), "%s: y[%d] = %g is not finite", what, c, (double)got[c]);
    COMPARE(what, got, want, (size_t)cols, tol, 0.0);
    t_release(t, mark);
    return NGT_PASS;
}

static int op_softplus_sum(tctx *t) {
    /* large |x|: exp overflows float beyond 88.7, so a naive log(1 + exp(x)) gives Inf */
    static const float big[] = {30.0f, -30.0f, 88.8f, -88.8f, 100.0f, -100.0f,
                                1e4f,  -1e4f,  1e30f, -1e30f, 20.5f,  -20.5f};
    float pre[6 * 3];
    int i;
    for (i = 0; i < 18; i++) pre[i] = big[i % 12] * (i >= 12 ? 0.5f : 1.0f);
    TRY(softplus_case(t, 33, 7, 35, 1, 1.0f, 1.0f, 0.0f, 1, NULL));
    TRY(softplus_case(t, 33, 7, 33, 0, 0.3f, -0.5f, 1.5f, 0, NULL));
    TRY(softplus_case(t, 1, 1, 1, 1, 1.0f, 2.0f, 1.0f, 0, NULL));
    TRY(softplus_case(t, t->big, t->big, t->big + 1, 1, 0.7f, 1.0f, 0.0f, 0, NULL));
    TRY(softplus_case(t, 0, 5, 1, 1, 1.0f, 1.0f, 0.5f, 0, NULL)); /* no rows: y = gamma y */
    TRY(softplus_case(t, 6, 3, 6, 0, 1.0f, 1.0f, 0.0f, 0, pre));
    TRY(softplus_case(t, 6, 3, 6, 0, -1.0f, 0.25f, 0.0f, 0, pre));
    return NGT_PASS;
}

/* ---- binary_states, fill_uniform, fill ------------------------------------------------------- */

static int run_binary(tctx *t, ng_backend *be, int nbits, uint64_t first, int count, int ldo,
                      float *out) {
    int mark = t->nmem;
    dbuf d;
    D_NEW(t, be, &d, (size_t)ldo * count, sizeof(float), out);
    NGT_OK(ng_binary_states(be, nbits, first, count, d_f(&d), ldo));
    TRY(d_fetch(&d, out, "binary_states out"));
    t_release(t, mark);
    return NGT_PASS;
}

/* Exact: bits are 0 or 1. */
static int binary_case(tctx *t, int nbits, uint64_t first, int count, int ldo) {
    int mark = t->nmem, b, c;
    float *got = h_mat(t, nbits, count, ldo, 101, 5.0, 6.0), *want = h_dup(t, got, (size_t)ldo * count);
    char what[120];
    TRY(run_binary(t, t->be, nbits, first, count, ldo, got));
    if (t->ref) TRY(run_binary(t, t->ref, nbits, first, count, ldo, want));
    else
        for (c = 0; c < count; c++)
            for (b = 0; b < nbits; b++)
                want[b + (size_t)c * ldo] = (float)(((first + (uint64_t)c) >> b) & 1u);
    snprintf(what, sizeof what, "binary_states nbits=%d first=%llu count=%d ldo=%d", nbits,
             (unsigned long long)first, count, ldo);
    COMPARE(what, got, want, (size_t)ldo * count, 0.0, 0.0);
    TRY(check_pad(what, got, nbits, count, ldo));
    t_release(t, mark);
    return NGT_PASS;
}

static int op_binary_states(tctx *t) {
    TRY(binary_case(t, 1, 0, 2, 1));
    TRY(binary_case(t, 10, 0x3F0, 37, 13));
    TRY(binary_case(t, 45, (1ull << 40) - 3, 9, 45));
    TRY(binary_case(t, 62, (1ull << 62) - 5, 5, 64));
    return NGT_PASS;
}

static int run_fill(tctx *t, ng_backend *be, size_t n, int uniform, float value, uint64_t key,
                    uint64_t step, float *out) {
    int mark = t->nmem;
    dbuf d;
    D_NEW(t, be, &d, n, sizeof(float), out);
    if (uniform) NGT_OK(ng_fill_uniform(be, n, d_f(&d), key, step));
    else NGT_OK(ng_fill(be, n, value, d_f(&d)));
    TRY(d_fetch(&d, out, uniform ? "fill_uniform out" : "fill out"));
    t_release(t, mark);
    return NGT_PASS;
}

/* Exact: fill_uniform is ng_uniform_at(key, step, i), the same stream on every backend. */
static int fill_case(tctx *t, size_t n, int uniform, float value, uint64_t key, uint64_t step) {
    int mark = t->nmem;
    float *got = h_floats(t, n), *want = h_floats(t, n);
    size_t i;
    char what[120];
    for (i = 0; i < n; i++) got[i] = want[i] = NAN;
    TRY(run_fill(t, t->be, n, uniform, value, key, step, got));
    if (t->ref) TRY(run_fill(t, t->ref, n, uniform, value, key, step, want));
    else
        for (i = 0; i < n; i++) want[i] = uniform ? ng_uniform_at(key, step, i) : value;
    snprintf(what, sizeof what, "%s n=%zu", uniform ? "fill_uniform" : "fill", n);
    COMPARE(what, got, want, n, 0.0, 0.0);
    if (uniform)
        for (i = 0; i < n; i++)
            NGT_CHECK(got[i] > 0.0f && got[i] <= 1.0f, "%s: [%zu] = %.9g outside (0,1]", what, i,
                      (double)got[i]);
    t_release(t, mark);
    return NGT_PASS;
}

static int op_fill(tctx *t) {
    TRY(fill_case(t, 1, 1, 0.0f, ng_rng_key(5, 6), 0));
    TRY(fill_case(t, 7, 1, 0.0f, ng_rng_key(5, 6), 1));
    TRY(fill_case(t, 1003, 1, 0.0f, ng_rng_key(5, 6), 0x300000002ull));
    TRY(fill_case(t, t->small ? 5000 : 70000, 1, 0.0f, ng_rng_key(7, 6), 9));
    TRY(fill_case(t, 1, 0, -3.25f, 0, 0));
    TRY(fill_case(t, 1003, 0, 1e-30f, 0, 0));
    TRY(fill_case(t, 1003, 0, -0.0f, 0, 0));
    return NGT_PASS;
}

/* ---- LAPACK-like: potrf, potri, syevd and their float64 variants -------------------------------
 * Host data is double; float variants upload the values rounded to float (so the reference uses
 * the exact input) and read them back widened. */

static int d_new_conv(tctx *t, ng_backend *be, dbuf *b, size_t n, int dbl, const double *init) {
    float *f;
    size_t i;
    int r;
    if (dbl) return d_new(t, be, b, n, sizeof(double), init);
    f = (float *)malloc(n ? n * sizeof(float) : 1);
    if (!f) {
        printf("  test_backend: out of host memory\n");
        exit(1);
    }
    for (i = 0; i < n; i++) f[i] = (float)init[i];
    r = d_new(t, be, b, n, sizeof(float), f);
    free(f);
    return r;
}

static int d_fetch_conv(const dbuf *b, int dbl, double *out, const char *what) {
    float *f;
    size_t i;
    int r;
    if (dbl) return d_fetch(b, out, what);
    f = (float *)malloc(b->n ? b->n * sizeof(float) : 1);
    if (!f) {
        printf("  test_backend: out of host memory\n");
        exit(1);
    }
    r = d_fetch(b, f, what);
    if (r == NGT_PASS)
        for (i = 0; i < b->n; i++) out[i] = f[i];
    free(f);
    return r;
}

/* Symmetric positive definite A = B B^T / n + I / 2, B uniform in [-1, 1): eigenvalues in
 * [0.5, ~2], so cond(A) <= ~4 and float results are accurate to a few n eps. */
static void make_spd(double *A, int n, int lda, int dbl, uint64_t seed) {
    int i, j, l;
    for (j = 0; j < n; j++)
        for (i = 0; i < lda; i++) {
            double s = 0.0;
            if (i >= n) {
                A[i + (size_t)j * lda] = SENT;
                continue;
            }
            for (l = 0; l < n; l++)
                s += rnd(seed, (uint64_t)i * n + l, -1.0, 1.0) * rnd(seed, (uint64_t)j * n + l, -1.0, 1.0);
            s = s / n + (i == j ? 0.5 : 0.0);
            A[i + (size_t)j * lda] = dbl ? s : (double)(float)s;
        }
}

static ng_status call_potrf(ng_backend *be, int dbl, int n, void *A, int lda, int *info) {
    return dbl ? ng_potrf_d(be, n, (double *)A, lda, info) : ng_potrf(be, n, (float *)A, lda, info);
}
static ng_status call_potri(ng_backend *be, int dbl, int n, void *A, int lda, int *info) {
    return dbl ? ng_potri_d(be, n, (double *)A, lda, info) : ng_potri(be, n, (float *)A, lda, info);
}

/* Runs potrf (inv = 0) or potri (inv = 1) on A (lda, n) in place; info_out receives info. */
static int run_chol(tctx *t, ng_backend *be, int dbl, int inv, int n, int lda, double *A,
                    int *info_out) {
    int mark = t->nmem, info = -12345;
    dbuf d;
    TRY(d_new_conv(t, be, &d, (size_t)lda * n, dbl, A));
    if (inv) NGT_OK(call_potri(be, dbl, n, d_ptr(&d), lda, &info));
    else NGT_OK(call_potrf(be, dbl, n, d_ptr(&d), lda, &info));
    TRY(d_fetch_conv(&d, dbl, A, inv ? "potri A" : "potrf A"));
    *info_out = info;
    t_release(t, mark);
    return NGT_PASS;
}

static double lower_absmax(const double *A, int n, int lda) {
    double m = 0.0;
    int i, j;
    for (j = 0; j < n; j++)
        for (i = j; i < n; i++)
            if (fabs(A[i + (size_t)j * lda]) > m) m = fabs(A[i + (size_t)j * lda]);
    return m;
}

/* infinity norm of the symmetric matrix whose lower triangle is stored */
static double sym_norm_inf(const double *A, int n, int lda) {
    double m = 0.0;
    int i, j;
    for (i = 0; i < n; i++) {
        double s = 0.0;
        for (j = 0; j < n; j++) s += fabs(i >= j ? A[i + (size_t)j * lda] : A[j + (size_t)i * lda]);
        if (s > m) m = s;
    }
    return m;
}

/* Lower triangles of two (lda, n) matrices compared, the rest ignored. */
static int cmp_lower(const char *what, const double *a, const double *b, int n, int lda,
                     double atol, int strict_lower_only) {
    int i, j, bad = 0;
    double maxd = 0.0;
    for (j = 0; j < n; j++)
        for (i = j + (strict_lower_only ? 1 : 0); i < n; i++) {
            double d = fabs(a[i + (size_t)j * lda] - b[i + (size_t)j * lda]);
            if (!(d <= atol)) {
                if (bad < 5)
                    printf("  %s: [%d,%d] got %.17g want %.17g\n", what, i, j, a[i + (size_t)j * lda],
                           b[i + (size_t)j * lda]);
                bad++;
            }
            if (d > maxd || d != d) maxd = d;
        }
    if (bad) printf("  %s: %d differ (atol %.3g); largest |diff| %.3g\n", what, bad, atol, maxd);
    return bad;
}

/* potrf: backward error |A - L L^T| <= (n + 1) u |L| |L^T|, and |L||L^T| <= max|A| n-ish for an
 * SPD A; we accept 4 (n + 2) eps max|A|. potri: the residual A X - I of a computed inverse is
 * about n eps cond(A); we accept 4 (n + 2) eps ||A||_inf ||X||_inf. cuda-vs-cpu also compares L
 * and X with the CPU's: with cond(A) <= 4, forward errors are within 16 (n + 2) eps of max|L|
 * (resp. ||X||_inf max|X|). */
static int chol_case(tctx *t, int n, int dbl) {
    int mark = t->nmem, lda = n + 2, info = -1, i, j, l;
    double eps = dbl ? EPS_D : EPS_F, amax, tol, anorm, xnorm, worst = 0.0;
    double *A = h_doubles(t, (size_t)lda * n), *L = h_doubles(t, (size_t)lda * n);
    double *X, *R;
    char what[120];
    make_spd(A, n, lda, dbl, 111 + (uint64_t)n);
    memcpy(L, A, (size_t)lda * n * sizeof(double));
    snprintf(what, sizeof what, "potrf%s n=%d lda=%d", dbl ? "_d" : "", n, lda);
    TRY(run_chol(t, t->be, dbl, 0, n, lda, L, &info));
    NGT_CHECK(info == 0, "%s: info = %d on an SPD matrix", what, info);
    TRY(check_pad_d(what, L, n, n, lda));
    amax = lower_absmax(A, n, lda);
    tol = 4.0 * (n + 2) * eps * amax;
    for (j = 0; j < n; j++)
        for (i = j; i < n; i++) {
            double s = 0.0, d;
            for (l = 0; l <= j; l++) s += L[i + (size_t)l * lda] * L[j + (size_t)l * lda];
            d = fabs(s - A[i + (size_t)j * lda]);
            if (!(d <= worst)) worst = d;
        }
    NGT_CHECK(worst <= tol, "%s: max |L L^T - A| = %.3g > tol %.3g", what, worst, tol);
    if (t->ref) {
        double *Lr = h_doubles(t, (size_t)lda * n);
        memcpy(Lr, A, (size_t)lda * n * sizeof(double));
        TRY(run_chol(t, t->ref, dbl, 0, n, lda, Lr, &info));
        NGT_CHECK(!cmp_lower(what, L, Lr, n, lda, 16.0 * (n + 2) * eps * lower_absmax(Lr, n, lda), 0),
                  "%s: factor differs from the reference backend's", what);
    }
    /* potri from this backend's factor */
    X = h_doubles(t, (size_t)lda * n);
    memcpy(X, L, (size_t)lda * n * sizeof(double));
    snprintf(what, sizeof what, "potri%s n=%d lda=%d", dbl ? "_d" : "", n, lda);
    TRY(run_chol(t, t->be, dbl, 1, n, lda, X, &info));
    NGT_CHECK(info == 0, "%s: info = %d", what, info);
    TRY(check_pad_d(what, X, n, n, lda));
    anorm = sym_norm_inf(A, n, lda);
    xnorm = sym_norm_inf(X, n, lda);
    tol = 4.0 * (n + 2) * eps * anorm * xnorm;
    R = h_doubles(t, (size_t)n * n);
    worst = 0.0;
    for (j = 0; j < n; j++)
        for (i = 0; i < n; i++) {
            double s = 0.0;
            for (l = 0; l < n; l++) {
                double a = i >= l ? A[i + (size_t)l * lda] : A[l + (size_t)i * lda];
                double x = l >= j ? X[l + (size_t)j * lda] : X[j + (size_t)l * lda];
                s += a * x;
            }
            R[i + (size_t)j * n] = s - (i == j ? 1.0 : 0.0);
            if (!(fabs(R[i + (size_t)j * n]) <= worst)) worst = fabs(R[i + (size_t)j * n]);
        }
    NGT_CHECK(worst <= tol, "%s: max |A inv(A) - I| = %.3g > tol %.3g", what, worst, tol);
    if (t->ref) {
        double *Xr = h_doubles(t, (size_t)lda * n);
        memcpy(Xr, L, (size_t)lda * n * sizeof(double));
        TRY(run_chol(t, t->ref, dbl, 1, n, lda, Xr, &info));
        NGT_CHECK(!cmp_lower(what, X, Xr, n, lda,
                             16.0 * (n + 2) * eps * xnorm * lower_absmax(Xr, n, lda), 0),
                  "%s: inverse differs from the reference backend's", what);
    }
    t_release(t, mark);
    return NGT_PASS;
}

/* A symmetric matrix that is not positive definite: identity with A[2,2] = -1, so the leading
 * minor of order 3 fails. The op returns NG_OK with info > 0 (LAPACK's convention). */
static int chol_fail_case(tctx *t, int dbl) {
    int mark = t->nmem, n = 6, lda = 7, info = 0, rinfo, i, j;
    double *A = h_doubles(t, (size_t)lda * n);
    for (j = 0; j < n; j++)
        for (i = 0; i < lda; i++)
            A[i + (size_t)j * lda] = i >= n ? SENT : i == j ? (i == 2 ? -1.0 : 1.0) : 0.0;
    TRY(run_chol(t, t->be, dbl, 0, n, lda, A, &info));
    NGT_CHECK(info > 0, "potrf%s of a non-SPD matrix: info = %d, want > 0", dbl ? "_d" : "", info);
    if (t->ref) {
        for (j = 0; j < n; j++)
            for (i = 0; i < lda; i++)
                A[i + (size_t)j * lda] = i >= n ? SENT : i == j ? (i == 2 ? -1.0 : 1.0) : 0.0;
        TRY(run_chol(t, t->ref, dbl, 0, n, lda, A, &rinfo));
        NGT_CHECK(info == rinfo, "potrf%s non-SPD: info %d, reference backend %d",
                  dbl ? "_d" : "", info, rinfo);
    }
    t_release(t, mark);
    return NGT_PASS;
}

static int run_syevd(tctx *t, ng_backend *be, int dbl, int n, int lda, double *A, double *w,
                     int *info_out) {
    int mark = t->nmem, info = -12345;
    dbuf dA, dw;
    ng_status s;
    TRY(d_new_conv(t, be, &dA, (size_t)lda * n, dbl, A));
    TRY(d_new_conv(t, be, &dw, (size_t)n, dbl, w));
    s = dbl ? ng_syevd_d(be, n, d_d(&dA), lda, d_d(&dw), &info)
            : ng_syevd(be, n, d_f(&dA), lda, d_f(&dw), &info);
    NGT_OK(s);
    TRY(d_fetch_conv(&dA, dbl, A, "syevd A"));
    TRY(d_fetch_conv(&dw, dbl, w, "syevd w"));
    *info_out = info;
    t_release(t, mark);
    return NGT_PASS;
}

/* syevd: a backward-stable solver gives residuals |S v - lambda v| and |V^T V - I| of a few n eps
 * (times ||S|| for the first); we accept 4 (n + 2) eps ||S||_inf and 4 (n + 2) eps. Eigenvalues
 * are well conditioned (Weyl): cuda-vs-cpu compares them within 4 (n + 2) eps ||S||_inf.
 * The strict upper triangle holds NaN on input: only the lower triangle may be read. */
static int eig_case(tctx *t, int n, int dbl) {
    int mark = t->nmem, lda = n + 1, info = -1, i, j, l;
    double eps = dbl ? EPS_D : EPS_F, snorm, tol, worst = 0.0;
    double *S = h_doubles(t, (size_t)lda * n), *V = h_doubles(t, (size_t)lda * n);
    double *w = h_doubles(t, (size_t)n + 1);
    char what[120];
    for (j = 0; j < n; j++)
        for (i = 0; i < lda; i++) {
            double v = 0.5 * (rnd(121, (uint64_t)i * n + j, -1.0, 1.0) +
                              rnd(121, (uint64_t)j * n + i, -1.0, 1.0));
            S[i + (size_t)j * lda] = i >= n ? SENT : dbl ? v : (double)(float)v;
        }
    for (j = 0; j < n; j++)
        for (i = 0; i < n; i++) /* symmetric copy in S, NaN above the diagonal in V */
            if (i < j) S[i + (size_t)j * lda] = S[j + (size_t)i * lda];
    memcpy(V, S, (size_t)lda * n * sizeof(double));
    for (j = 0; j < n; j++)
        for (i = 0; i < j; i++) V[i + (size_t)j * lda] = NAN;
    for (i = 0; i < n; i++) w[i] = NAN;
    snprintf(what, sizeof what, "syevd%s n=%d lda=%d", dbl ? "_d" : "", n, lda);
    TRY(run_syevd(t, t->be, dbl, n, lda, V, w, &info));
    NGT_CHECK(info == 0, "%s: info = %d", what, info);
    TRY(check_pad_d(what, V, n, n, lda));
    for (i = 0; i + 1 < n; i++)
        NGT_CHECK(w[i] <= w[i + 1], "%s: eigenvalues not ascending: w[%d] = %.9g > w[%d] = %.9g",
                  what, i, w[i], i + 1, w[i + 1]);
    snorm = sym_norm_inf(S, n, lda);
    tol = 4.0 * (n + 2) * eps * snorm;
    for (j = 0; j < n; j++)
        for (i = 0; i < n; i++) {
            double s = 0.0, d;
            for (l = 0; l < n; l++) s += S[i + (size_t)l * lda] * V[l + (size_t)j * lda];
            d = fabs(s - w[j] * V[i + (size_t)j * lda]);
            if (!(d <= worst)) worst = d;
        }
    NGT_CHECK(worst <= tol, "%s: max |S v - lambda v| = %.3g > tol %.3g", what, worst, tol);
    worst = 0.0;
    for (j = 0; j < n; j++)
        for (i = 0; i < n; i++) {
            double s = 0.0, d;
            for (l = 0; l < n; l++) s += V[l + (size_t)i * lda] * V[l + (size_t)j * lda];
            d = fabs(s - (i == j ? 1.0 : 0.0));
            if (!(d <= worst)) worst = d;
        }
    NGT_CHECK(worst <= 4.0 * (n + 2) * eps, "%s: max |V^T V - I| = %.3g > tol %.3g", what, worst,
              4.0 * (n + 2) * eps);
    if (t->ref) {
        double *Vr = h_doubles(t, (size_t)lda * n), *wr = h_doubles(t, (size_t)n + 1);
        memcpy(Vr, S, (size_t)lda * n * sizeof(double));
        for (i = 0; i < n; i++) wr[i] = NAN;
        TRY(run_syevd(t, t->ref, dbl, n, lda, Vr, wr, &info));
        COMPARE_D(what, w, wr, (size_t)n, tol, 0.0);
    }
    t_release(t, mark);
    return NGT_PASS;
}

static int op_lapack(tctx *t) {
    const int ns[] = {1, 2, 7, 33, t->small ? 20 : 64};
    size_t a;
    int dbl;
    for (dbl = 0; dbl < 2; dbl++) {
        for (a = 0; a < sizeof ns / sizeof ns[0]; a++) {
            TRY(chol_case(t, ns[a], dbl));
            TRY(eig_case(t, ns[a], dbl));
        }
        TRY(chol_fail_case(t, dbl));
    }
    return NGT_PASS;
}

/* ---- to_double / to_float ---------------------------------------------------------------------- */

/* Exact: widening is exact and narrowing rounds to nearest even, on every backend. */
static int op_convert(tctx *t) {
    const size_t n = 1000;
    float *x = h_floats(t, n), *y = h_floats(t, n), *wy = h_floats(t, n);
    double *xd = h_doubles(t, n), *gd = h_doubles(t, n), *wd = h_doubles(t, n);
    dbuf dx, dd, dy;
    size_t i;
    for (i = 0; i < n; i++) {
        x[i] = (float)rnd(131, i, -1e3, 1e3);
        xd[i] = rnd(132, i, -1.0, 1.0) * pow(10.0, (double)(i % 60) - 30.0);
    }
    x[0] = -0.0f;
    x[1] = 1e30f;
    x[2] = 1e-30f;
    x[3] = 1.0f / 3.0f;
    xd[0] = 1.0 / 3.0;
    xd[1] = 1.0 + ldexp(1.0, -24);                    /* tie: rounds to even (1.0f) */
    xd[2] = 1.0 + ldexp(1.0, -24) + ldexp(1.0, -40);  /* just above the tie: rounds up */
    xd[3] = -(1.0 + 3.0 * ldexp(1.0, -24));           /* tie: rounds to even, away */
    xd[4] = 3.0e38;
    xd[5] = -0.0;
    D_NEW(t, t->be, &dx, n, sizeof(float), x);
    D_NEW(t, t->be, &dd, n, sizeof(double), NULL);
    NGT_OK(ng_to_double(t->be, n, d_f(&dx), d_d(&dd)));
    TRY(d_fetch(&dd, gd, "to_double y"));
    TRY(d_unchanged(&dx, x, "to_double x"));
    for (i = 0; i < n; i++) wd[i] = (double)x[i];
    COMPARE_D("to_double", gd, wd, n, 0.0, 0.0);
    NGT_CHECK(memcmp(gd, wd, n * sizeof(double)) == 0, "to_double: bits differ (signed zero?)");
    D_NEW(t, t->be, &dd, n, sizeof(double), xd);
    D_NEW(t, t->be, &dy, n, sizeof(float), NULL);
    NGT_OK(ng_to_float(t->be, n, d_d(&dd), d_f(&dy)));
    TRY(d_fetch(&dy, y, "to_float y"));
    TRY(d_unchanged(&dd, xd, "to_float x"));
    for (i = 0; i < n; i++) wy[i] = (float)xd[i];
    COMPARE("to_float", y, wy, n, 0.0, 0.0);
    NGT_CHECK(memcmp(y, wy, n * sizeof(float)) == 0, "to_float: bits differ (signed zero?)");
    NGT_CHECK(y[1] == 1.0f && y[3] == -(1.0f + ldexpf(1.0f, -22)),
              "to_float: ties not rounded to even: %.9g %.9g", (double)y[1], (double)y[3]);
    return NGT_PASS;
}

/* ---- wrapper validation (backend independent; run once on the CPU backend) ------------------------ */

enum {
    OP_ALLOC, OP_SET, OP_GET, OP_MEMSET0, OP_COPY, OP_SYNC, OP_GEMM, OP_SYRK, OP_GEMV, OP_AXPBY,
    OP_SCAL, OP_DOT, OP_NRM2, OP_SUM_COLS, OP_SUM_ROWS, OP_GIBBS, OP_BERNOULLI, OP_SOFTPLUS,
    OP_BINARY, OP_FILL_UNIFORM, OP_FILL, OP_POTRF, OP_POTRI, OP_SYEVD, OP_POTRF_D, OP_POTRI_D,
    OP_SYEVD_D, OP_TO_DOUBLE, OP_TO_FLOAT, OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
    "alloc", "set", "get", "memset0", "copy", "synchronize", "gemm", "syrk", "gemv", "axpby",
    "scal", "dot", "nrm2", "sum_cols", "sum_rows", "gibbs_sample", "bernoulli", "softplus_sum",
    "binary_states", "fill_uniform", "fill", "potrf", "potri", "syevd", "potrf_d", "potri_d",
    "syevd_d", "to_double", "to_float"};

static void null_slot(struct ng_backend_i *f, int op) {
    switch (op) {
    case OP_ALLOC: f->alloc = NULL; break;
    case OP_SET: f->set = NULL; break;
    case OP_GET: f->get = NULL; break;
    case OP_MEMSET0: f->memset0 = NULL; break;
    case OP_COPY: f->copy = NULL; break;
    case OP_SYNC: f->synchronize = NULL; break;
    case OP_GEMM: f->gemm = NULL; break;
    case OP_SYRK: f->syrk = NULL; break;
    case OP_GEMV: f->gemv = NULL; break;
    case OP_AXPBY: f->axpby = NULL; break;
    case OP_SCAL: f->scal = NULL; break;
    case OP_DOT: f->dot = NULL; break;
    case OP_NRM2: f->nrm2 = NULL; break;
    case OP_SUM_COLS: f->sum_cols = NULL; break;
    case OP_SUM_ROWS: f->sum_rows = NULL; break;
    case OP_GIBBS: f->gibbs_sample = NULL; break;
    case OP_BERNOULLI: f->bernoulli = NULL; break;
    case OP_SOFTPLUS: f->softplus_sum = NULL; break;
    case OP_BINARY: f->binary_states = NULL; break;
    case OP_FILL_UNIFORM: f->fill_uniform = NULL; break;
    case OP_FILL: f->fill = NULL; break;
    case OP_POTRF: f->potrf = NULL; break;
    case OP_POTRI: f->potri = NULL; break;
    case OP_SYEVD: f->syevd = NULL; break;
    case OP_POTRF_D: f->potrf_d = NULL; break;
    case OP_POTRI_D: f->potri_d = NULL; break;
    case OP_SYEVD_D: f->syevd_d = NULL; break;
    case OP_TO_DOUBLE: f->to_double = NULL; break;
    case OP_TO_FLOAT: f->to_float = NULL; break;
    default: break;
    }
}

/* Call op with valid arguments on 4x4 matrices in f (64 floats) and d (64 doubles). */
static ng_status call_valid(ng_backend *be, int op, float *f, double *d) {
    float r;
    int info;
    void *p;
    switch (op) {
    case OP_ALLOC: return ng_alloc(be, 16, &p);
    case OP_SET: return ng_set(be, f, f + 32, 16);
    case OP_GET: return ng_get(be, f, f + 32, 16);
    case OP_MEMSET0: return ng_memset0(be, f, 16);
    case OP_COPY: return ng_copy(be, f, f + 32, 16);
    case OP_SYNC: return ng_synchronize(be);
    case OP_GEMM: return ng_gemm(be, 0, 0, 4, 4, 4, 1.0f, f, 4, f + 16, 4, 0.0f, f + 32, 4);
    case OP_SYRK: return ng_syrk(be, 0, 4, 4, 1.0f, f, 4, 0.0f, f + 32, 4);
    case OP_GEMV: return ng_gemv(be, 0, 4, 4, 1.0f, f, 4, f + 16, 0.0f, f + 32);
    case OP_AXPBY: return ng_axpby(be, 4, 1.0f, f, 1.0f, f + 16);
    case OP_SCAL: return ng_scal(be, 4, 2.0f, f);
    case OP_DOT: return ng_dot(be, 4, f, f + 16, &r);
    case OP_NRM2: return ng_nrm2(be, 4, f, &r);
    case OP_SUM_COLS: return ng_sum_cols(be, 4, 4, 1.0f, f, 4, 0.0f, f + 32);
    case OP_SUM_ROWS: return ng_sum_rows(be, 4, 4, 1.0f, f, 4, 0.0f, f + 32);
    case OP_GIBBS:
        return ng_gibbs_sample(be, 4, 4, f, 4, NULL, 1.0f, NULL, f + 16, 4, f + 32, 4, 1, 0);
    case OP_BERNOULLI: return ng_bernoulli(be, 4, f, f + 16, 1, 0);
    case OP_SOFTPLUS: return ng_softplus_sum(be, 4, 4, f, 4, NULL, 1.0f, 1.0f, 0.0f, f + 32);
    case OP_BINARY: return ng_binary_states(be, 4, 0, 4, f, 4);
    case OP_FILL_UNIFORM: return ng_fill_uniform(be, 4, f, 1, 0);
    case OP_FILL: return ng_fill(be, 4, 1.0f, f);
    case OP_POTRF: return ng_potrf(be, 4, f, 4, &info);
    case OP_POTRI: return ng_potri(be, 4, f, 4, &info);
    case OP_SYEVD: return ng_syevd(be, 4, f, 4, f + 32, &info);
    case OP_POTRF_D: return ng_potrf_d(be, 4, d, 4, &info);
    case OP_POTRI_D: return ng_potri_d(be, 4, d, 4, &info);
    case OP_SYEVD_D: return ng_syevd_d(be, 4, d, 4, d + 32, &info);
    case OP_TO_DOUBLE: return ng_to_double(be, 4, f, d);
    case OP_TO_FLOAT: return ng_to_float(be, 4, d, f);
    default: return NG_ERR_INVALID_ARG;
    }
}

/* Fail unless expr returns `want` with a message naming the op and `word` (the parameter). */
#define EXPECT_STATUS(expr, want, op, word)                                                    \
    do {                                                                                       \
        ng_status s_;                                                                          \
        const char *m_;                                                                        \
        ng_clear_error();                                                                      \
        s_ = (expr);                                                                           \
        m_ = ng_last_error();                                                                  \
        NGT_CHECK(s_ == (want), "%s returned %s (\"%s\"), want %s", #expr, ng_status_name(s_), \
                  m_, ng_status_name(want));                                                   \
        NGT_CHECK(strstr(m_, op) != NULL && strstr(m_, word) != NULL,                          \
                  "message of %s should name '%s' and '%s': \"%s\"", #expr, op, word, m_);     \
    } while (0)

static int wrapper_checks(ng_backend *cpu, float *f, double *d) {
    ng_backend fake;
    struct ng_backend_i fi;
    int info = 0, op;
    const ng_status bad = NG_ERR_INVALID_ARG;
    /* a leading dimension smaller than the rows: NG_ERR_INVALID_ARG, message names op and ld */
    EXPECT_STATUS(ng_gemm(cpu, 0, 0, 5, 2, 2, 1.0f, f, 4, f + 16, 2, 0.0f, f + 32, 5), bad, "gemm", "lda");
    EXPECT_STATUS(ng_gemm(cpu, 1, 0, 2, 2, 5, 1.0f, f, 4, f + 16, 5, 0.0f, f + 32, 2), bad, "gemm", "lda");
    EXPECT_STATUS(ng_gemm(cpu, 0, 0, 2, 2, 5, 1.0f, f, 2, f + 16, 4, 0.0f, f + 32, 2), bad, "gemm", "ldb");
    EXPECT_STATUS(ng_gemm(cpu, 0, 1, 2, 5, 2, 1.0f, f, 2, f + 16, 4, 0.0f, f + 32, 2), bad, "gemm", "ldb");
    EXPECT_STATUS(ng_gemm(cpu, 0, 0, 5, 2, 2, 1.0f, f, 5, f + 16, 2, 0.0f, f + 32, 4), bad, "gemm", "ldc");
    EXPECT_STATUS(ng_gemm(cpu, 0, 0, -1, 2, 2, 1.0f, f, 5, f + 16, 2, 0.0f, f + 32, 4), bad, "gemm", "negative");
    EXPECT_STATUS(ng_syrk(cpu, 0, 5, 2, 1.0f, f, 4, 0.0f, f + 32, 5), bad, "syrk", "lda");
    EXPECT_STATUS(ng_syrk(cpu, 1, 2, 5, 1.0f, f, 4, 0.0f, f + 32, 2), bad, "syrk", "lda");
    EXPECT_STATUS(ng_syrk(cpu, 0, 5, 2, 1.0f, f, 5, 0.0f, f + 32, 4), bad, "syrk", "ldc");
    EXPECT_STATUS(ng_gemv(cpu, 0, 5, 2, 1.0f, f, 4, f + 16, 0.0f, f + 32), bad, "gemv", "lda");
    EXPECT_STATUS(ng_gemv(cpu, 1, 5, 2, 1.0f, f, 4, f + 16, 0.0f, f + 32), bad, "gemv", "lda");
    EXPECT_STATUS(ng_sum_cols(cpu, 5, 2, 1.0f, f, 4, 0.0f, f + 32), bad, "sum_cols", "lda");
    EXPECT_STATUS(ng_sum_rows(cpu, 5, 2, 1.0f, f, 4, 0.0f, f + 32), bad, "sum_rows", "lda");
    EXPECT_STATUS(ng_gibbs_sample(cpu, 5, 2, f, 4, NULL, 1.0f, NULL, f + 16, 5, f + 32, 5, 1, 0),
                  bad, "gibbs_sample", "ldp");
    EXPECT_STATUS(ng_gibbs_sample(cpu, 5, 2, f, 5, NULL, 1.0f, NULL, f + 16, 4, f + 32, 5, 1, 0),
                  bad, "gibbs_sample", "ldq");
    EXPECT_STATUS(ng_gibbs_sample(cpu, 5, 2, f, 5, NULL, 1.0f, NULL, f + 16, 5, f + 32, 4, 1, 0),
                  bad, "gibbs_sample", "lds");
    EXPECT_STATUS(ng_softplus_sum(cpu, 5, 2, f, 4, NULL, 1.0f, 1.0f, 0.0f, f + 32), bad,
                  "softplus_sum", "ldp");
    EXPECT_STATUS(ng_binary_states(cpu, 5, 0, 2, f, 4), bad, "binary_states", "ldo");
    EXPECT_STATUS(ng_potrf(cpu, 5, f, 4, &info), bad, "potrf", "lda");
    EXPECT_STATUS(ng_potri(cpu, 5, f, 4, &info), bad, "potri", "lda");
    EXPECT_STATUS(ng_syevd(cpu, 5, f, 4, f + 32, &info), bad, "syevd", "lda");
    EXPECT_STATUS(ng_potrf_d(cpu, 5, d, 4, &info), bad, "potrf_d", "lda");
    EXPECT_STATUS(ng_potri_d(cpu, 5, d, 4, &info), bad, "potri_d", "lda");
    EXPECT_STATUS(ng_syevd_d(cpu, 5, d, 4, d + 32, &info), bad, "syevd_d", "lda");
    EXPECT_STATUS(ng_dot(cpu, 4, f, f + 16, NULL), bad, "dot", "NULL");
    /* every slot: a backend that leaves it NULL gives NG_ERR_UNSUPPORTED naming the op */
    for (op = 0; op < OP_COUNT; op++) {
        fi = *cpu->iface;
        null_slot(&fi, op);
        fake = *cpu;
        fake.iface = &fi;
        EXPECT_STATUS(call_valid(&fake, op, f, d), NG_ERR_UNSUPPORTED, op_names[op], "cpu");
        /* and the complete table accepts the same call (so the arguments are valid); the
         * LAPACK calls are left out because the scratch matrix holds whatever earlier calls wrote,
         * and alloc because it would allocate */
        if (op != OP_POTRF && op != OP_POTRI && op != OP_SYEVD && op != OP_POTRF_D &&
            op != OP_POTRI_D && op != OP_SYEVD_D && op != OP_ALLOC)
            NGT_OK(call_valid(cpu, op, f, d));
    }
    return NGT_PASS;
}

static int test_wrapper_errors(void) {
    ng_backend *cpu = NULL;
    float *f = NULL;
    double *d = NULL;
    int r = NGT_FAIL;
    NGT_OK(ng_backend_cpu_init(&cpu));
    if (ng_alloc(cpu, 64 * sizeof(float), (void **)&f) == NG_OK &&
        ng_alloc(cpu, 64 * sizeof(double), (void **)&d) == NG_OK &&
        ng_memset0(cpu, f, 64 * sizeof(float)) == NG_OK &&
        ng_memset0(cpu, d, 64 * sizeof(double)) == NG_OK)
        r = wrapper_checks(cpu, f, d);
    else
        printf("  cpu alloc/memset0 failed: %s\n", ng_last_error());
    ng_free(cpu, f);
    ng_free(cpu, d);
    ng_backend_free(cpu);
    return r;
}

/* ---- suites ---------------------------------------------------------------------------------- */

typedef int (*op_fn)(tctx *t);
static const struct {
    const char *name;
    op_fn fn;
} ops[] = {
    {"memory", op_memory},       {"gemm", op_gemm},
    {"syrk", op_syrk},           {"gemv", op_gemv},
    {"axpby_scal", op_axpby_scal}, {"dot_nrm2", op_dot_nrm2},
    {"sum_cols_rows", op_sums},  {"gibbs_sample", op_gibbs_sample},
    {"bernoulli", op_bernoulli}, {"softplus_sum", op_softplus_sum},
    {"binary_states", op_binary_states}, {"fill", op_fill},
    {"potrf_potri_syevd", op_lapack}, {"convert", op_convert},
};

/* Count and print one result the way NGT_RUN does. */
static void record(const char *suite, const char *name, int r) {
    if (r == NGT_PASS) {
        ngt_passed++;
        printf("PASS %s/%s\n", suite, name);
    } else if (r == NGT_SKIP) {
        ngt_skipped++;
        printf("SKIP %s/%s: %s\n", suite, name, ngt_skip_reason);
    } else {
        ngt_failed++;
        printf("FAIL %s/%s\n", suite, name);
    }
    fflush(stdout);
}

static void run_suite(const char *suite, ng_backend *be, ng_backend *ref) {
    const char *sm = getenv("NG_TEST_SMALL");
    size_t i;
    printf("  %s: testing \"%s\" against %s\n", suite, be->description,
           ref ? ref->description : "naive double-precision loops");
    for (i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        tctx t;
        int r;
        memset(&t, 0, sizeof t);
        t.be = be;
        t.ref = ref;
        t.small = sm && *sm && strcmp(sm, "0") != 0;
        t.big = t.small ? 24 : 100;
        ngt_skip_reason[0] = 0;
        fflush(stdout);
        ng_clear_error();
        r = ops[i].fn(&t);
        t_release(&t, 0);
        free(t.mem);
        record(suite, ops[i].name, r);
    }
}

int main(void) {
    ng_backend *cpu = NULL, *cuda = NULL;
    ng_status s;
    NGT_RUN(test_wrapper_errors);
    s = ng_backend_cpu_init(&cpu);
    if (s != NG_OK) {
        printf("  cpu backend: %s: %s\n", ng_status_name(s), ng_last_error());
        record("cpu-vs-naive", "init", NGT_FAIL);
        return ngt_finish();
    }
    run_suite("cpu-vs-naive", cpu, NULL);
    s = ng_backend_cuda_init(&cuda);
    if (s != NG_OK) {
        char why[400];
        snprintf(why, sizeof why, "no CUDA device here: %s", ng_last_error());
        record("cuda-vs-cpu", "all", ngt_skip(why));
        ng_clear_error();
    } else {
        run_suite("cuda-vs-cpu", cuda, cpu);
        ng_backend_free(cuda);
    }
    ng_backend_free(cpu);
    return ngt_finish();
}
