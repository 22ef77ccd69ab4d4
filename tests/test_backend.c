/* test_backend.c: backend conformance suite for the ng_backend_i table, after ggml's
 * test-backend-ops. Every slot of the table, and every elementwise family behind run_op, runs on
 * each available backend and is compared with a reference:
 *   cpu-vs-naive  the CPU backend against naive double-precision loops written in this file;
 *   cuda-vs-cpu   the CUDA backend (a real GPU under `make test-gpu`, or the tests/simt emulator,
 *                 which links this same file against its shims, under `make test`) against the
 *                 CPU backend. Skipped, with the reason, when ng_backend_cuda_init fails.
 *
 * Coarse slots (memory, async transfers and events, gemm, gemm_strided_batched, syrk, gemv, trsm,
 * scal, dot/nrm2 and their device-result forms, sum_cols/rows, potrf/potri/potrs/syevd in f32 and
 * f64) each have a function op_<name>(tctx *) that runs its cases on t->be and compares them with
 * t->ref (another backend) or, when t->ref is NULL, with the naive reference.
 *
 * Elementwise families are driven by ONE DESCRIPTOR PER ng_op (op_tests[], indexed by the enum):
 * a name, a list of shapes, flags saying whether the op has an out-of-place and/or an in-place
 * form, a case generator, a naive reference and an optional extra check. A generic runner plays
 * every shape x mode x variant: it allocates each operand with guard zones, binds the device
 * pointers into ng_op_args, calls ng_run_op, and compares every output element with the reference
 * under a per-element tolerance (0 = bit for bit). test op_table fails when an ng_op value has no
 * descriptor or a backend does not answer supports_op for it, so adding an enum value without a
 * test fails the suite. Sizes cover every residue modulo the width the implementations work in
 * (Philox-driven ops draw in groups of 4 elements: n = 1..9 and n = 1024..1027 (and 65540..65543,
 * above the CPU's OpenMP thresholds); matrices rows 1..8 x cols 1..4 plus larger odd shapes).
 *
 * Conventions checked everywhere:
 *   - every device buffer has GUARD sentinel elements before and after it, checked after each op
 *     (out-of-bounds writes);
 *   - matrices have leading dimensions larger than their rows wherever the op takes one; padding
 *     rows hold a sentinel and must come back unchanged, as must every element an op does not
 *     define (strict upper triangles, gaps between batched matrices): the reference starts from
 *     the initial contents and writes only what the op defines, and undefined elements are
 *     compared bit for bit;
 *   - outputs start as NaN, so an element an op skips shows;
 *   - inputs must come back bit for bit unchanged (unless an output shares their memory).
 * Cross-backend tolerance is twice the naive one: each backend is within tol of the exact value,
 * so within 2 tol of each other; a tolerance of 0 means bit-for-bit equality on both suites.
 *
 * Shapes stay modest (gemm at most 100x100x100) because the emulator is slow; NG_TEST_SMALL=1
 * shrinks them and drops the shapes above the OpenMP thresholds. Must not: depend on timing
 * (event times are only checked to be >= 0), or use a seed that is not fixed. */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lapacke.h>
#include <omp.h>

#include "harness.h"
#include "natgrad/backend.h"
#include "ng_math.h"
#include "backend/cpu_avx512.h"

#define GUARD 16            /* sentinel elements before and after every device buffer */
#define SENT (-12345.5)     /* sentinel value: exact in float and double, never a result here */
#define SENT_F (-12345.5f)
#define EPS_F ((double)FLT_EPSILON) /* 2^-23: twice the unit roundoff u of float */
#define EPS_D DBL_EPSILON

/* ---- per-op context: backends and the allocations to release --------------------------------- */

enum { MEM_HOST, MEM_DEVICE, MEM_PINNED };

typedef struct talloc {
    ng_backend *be;
    int kind;
    void *p;
} talloc;

typedef struct tctx {
    ng_backend *be;  /* backend under test */
    ng_backend *ref; /* reference backend, or NULL for the naive loops of this file */
    int big;         /* largest matrix dimension: 100, or 24 under NG_TEST_SMALL=1 */
    int small;
    int ncases, ninplace; /* elementwise cases run by the current op (for the summary line) */
    talloc *mem;
    int nmem, capmem;
} tctx;

static void oom(void) {
    printf("  test_backend: out of host memory\n");
    exit(1);
}

static void t_track(tctx *t, ng_backend *be, int kind, void *p) {
    if (t->nmem == t->capmem) {
        int cap = t->capmem ? 2 * t->capmem : 64;
        talloc *m = (talloc *)realloc(t->mem, (size_t)cap * sizeof *m);
        if (!m) oom();
        t->mem = m;
        t->capmem = cap;
    }
    t->mem[t->nmem].be = be;
    t->mem[t->nmem].kind = kind;
    t->mem[t->nmem].p = p;
    t->nmem++;
}

/* Free everything allocated since `mark` (a value of t->nmem taken earlier). */
static void t_release(tctx *t, int mark) {
    while (t->nmem > mark) {
        talloc *a = &t->mem[--t->nmem];
        if (a->kind == MEM_DEVICE) ng_free(a->be, a->p);
        else if (a->kind == MEM_PINNED) ng_free_host(a->be, a->p);
        else free(a->p);
    }
}

static void *h_alloc(tctx *t, size_t bytes) {
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) oom();
    t_track(t, NULL, MEM_HOST, p);
    return p;
}

static float *h_floats(tctx *t, size_t n) { return (float *)h_alloc(t, n * sizeof(float)); }
static double *h_doubles(tctx *t, size_t n) { return (double *)h_alloc(t, n * sizeof(double)); }
static float *h_dup(tctx *t, const float *x, size_t n) {
    float *y = h_floats(t, n);
    if (n) memcpy(y, x, n * sizeof *y);
    return y;
}
static void *h_dupb(tctx *t, const void *x, size_t bytes) {
    void *y = h_alloc(t, bytes);
    if (bytes) memcpy(y, x, bytes);
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

/* Once an elementwise op has shown two failing cases in full, the runner sets `quiet` and lists
 * further failing cases one line each: QPRINTF and QCHECK (NGT_CHECK) respect it. */
static int quiet;
#define QPRINTF(...)                                                                 \
    do {                                                                             \
        if (!quiet) printf(__VA_ARGS__);                                             \
    } while (0)
#define QCHECK(cond, ...)                                                            \
    do {                                                                             \
        if (!(cond)) {                                                               \
            if (!quiet) {                                                            \
                printf("  %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);    \
                printf(__VA_ARGS__);                                                 \
                printf("\n");                                                        \
            }                                                                        \
            return NGT_FAIL;                                                         \
        }                                                                            \
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
    if (!stage) oom();
    fill_sentinel(stage, tot, esz);
    if (init && n) memcpy(stage + GUARD * esz, init, n * esz);
    s = ng_alloc(be, tot * esz, &p);
    if (s == NG_OK) {
        t_track(t, be, MEM_DEVICE, p);
        s = ng_set(be, p, stage, tot * esz);
    }
    free(stage);
    if (s != NG_OK) {
        QPRINTF("  %s: allocating/setting %zu bytes failed: %s: %s\n", be->iface->name, tot * esz,
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
    if (!stage) oom();
    s = ng_get(b->be, stage, b->base, tot * b->esz);
    if (s != NG_OK) {
        QPRINTF("  %s: get failed: %s: %s\n", what, ng_status_name(s), ng_last_error());
        free(stage);
        return NGT_FAIL;
    }
    fill_sentinel(sent, 1, b->esz);
    for (i = 0; i < tot; i++) {
        if (i == GUARD) i = GUARD + b->n;
        if (i >= tot) break;
        if (memcmp(stage + i * b->esz, sent, b->esz) != 0) {
            if (bad < 3)
                QPRINTF("  %s: guard element %s[%ld] overwritten (out-of-bounds write)\n", what,
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
    char label[300];
    if (!now) oom();
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

/* ngt_compare for doubles: |a-b| <= atol + rtol |b|; prints the first mismatches and the largest
 * difference. */
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

/* Fail unless a status is NG_OK; prints the op being run, the backend and the library's message. */
#define CALL_OK(be, what, expr)                                                                \
    do {                                                                                       \
        ng_status s_ = (expr);                                                                 \
        if (s_ != NG_OK) {                                                                     \
            printf("  %s: %s on %s returned %s: %s\n", what, #expr, (be)->iface->name,         \
                   ng_status_name(s_), ng_last_error());                                       \
            return NGT_FAIL;                                                                   \
        }                                                                                      \
    } while (0)

/* =============================================================================================
 * Coarse slots
 * ============================================================================================= */

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

/* ---- pinned host memory and queued transfers: alloc_host / set_async / get_async ------------
 * Bit for bit round trips through pinned buffers, completed by an event or by synchronize; a
 * transfer at an offset; and stream order: set_async, then a kernel (scal by 2, exact), then
 * get_async must see the scaled data. Guard zones around the device buffer as everywhere. */

static int async_case(tctx *t, size_t n) {
    int mark = t->nmem;
    size_t bytes = n * sizeof(float), i;
    float *src = NULL, *dst = NULL, *back = h_floats(t, n), *want = h_floats(t, n);
    void *ev = NULL;
    dbuf d;
    char what[80];
    snprintf(what, sizeof what, "async n=%zu", n);
    CALL_OK(t->be, what, ng_alloc_host(t->be, bytes, (void **)&src));
    t_track(t, t->be, MEM_PINNED, src);
    CALL_OK(t->be, what, ng_alloc_host(t->be, bytes, (void **)&dst));
    t_track(t, t->be, MEM_PINNED, dst);
    NGT_CHECK(src && dst, "%s: alloc_host returned NULL", what);
    for (i = 0; i < n; i++) {
        src[i] = (float)rnd(3, i, -10.0, 10.0);
        dst[i] = NAN;
    }
    if (n > 3) {
        src[1] = -0.0f;
        src[2] = NAN;
        src[3] = INFINITY;
    }
    memcpy(want, src, bytes);
    D_NEW(t, t->be, &d, n, sizeof(float), NULL);
    CALL_OK(t->be, what, ng_event_create(t->be, &ev));
    CALL_OK(t->be, what, ng_set_async(t->be, d_f(&d), src, bytes));
    CALL_OK(t->be, what, ng_event_record(t->be, ev));
    CALL_OK(t->be, what, ng_event_synchronize(t->be, ev));
    CALL_OK(t->be, what, ng_get_async(t->be, dst, d_f(&d), bytes));
    CALL_OK(t->be, what, ng_event_record(t->be, ev));
    CALL_OK(t->be, what, ng_event_synchronize(t->be, ev));
    NGT_CHECK(memcmp(dst, want, bytes) == 0, "%s: set_async/get_async round trip changed the bits",
              what);
    TRY(d_fetch(&d, back, what));
    NGT_CHECK(memcmp(back, want, bytes) == 0, "%s: device copy differs", what);
    /* offset transfer of min(n, 5) elements to element n/2 */
    {
        size_t k = n < 5 ? n : 5, at = n / 2 < n - k ? n / 2 : n - k;
        for (i = 0; i < k; i++) src[i] = 100.0f + (float)i;
        memcpy(want + at, src, k * sizeof(float));
        CALL_OK(t->be, what, ng_set_async(t->be, d_f(&d) + at, src, k * sizeof(float)));
        CALL_OK(t->be, what, ng_synchronize(t->be));
        TRY(d_fetch(&d, back, what));
        NGT_CHECK(memcmp(back, want, bytes) == 0, "%s: set_async of %zu floats at %zu wrong", what,
                  k, at);
    }
    /* stream order: upload, scale by 2 (exact), download, then one synchronize */
    for (i = 0; i < n; i++) {
        src[i] = (float)rnd(4, i, -1.0, 1.0);
        want[i] = 2.0f * src[i];
        dst[i] = NAN;
    }
    CALL_OK(t->be, what, ng_set_async(t->be, d_f(&d), src, bytes));
    CALL_OK(t->be, what, ng_scal(t->be, n, 2.0f, d_f(&d)));
    CALL_OK(t->be, what, ng_get_async(t->be, dst, d_f(&d), bytes));
    CALL_OK(t->be, what, ng_synchronize(t->be));
    NGT_CHECK(memcmp(dst, want, bytes) == 0,
              "%s: set_async -> scal -> get_async did not run in stream order", what);
    ng_event_destroy(t->be, ev);
    t_release(t, mark);
    return NGT_PASS;
}

static int op_async(tctx *t) {
    TRY(async_case(t, 1));
    TRY(async_case(t, 7));
    TRY(async_case(t, 1000));
    TRY(async_case(t, t->small ? 5000 : 70000));
    return NGT_PASS;
}

/* ---- events: create / record / wait / synchronize / elapsed / destroy -----------------------
 * Timing is not checked beyond elapsed >= 0 and finite (the emulator records the host clock). */
static int op_events(tctx *t) {
    int mark = t->nmem, rep;
    void *e0 = NULL, *e1 = NULL, *e2 = NULL;
    float ms = -1.0f, ms2 = -1.0f;
    float *A = h_mat(t, 64, 64, 64, 5, -1.0, 1.0), *C = h_floats(t, 64 * 64);
    dbuf dA, dC;
    D_NEW(t, t->be, &dA, 64 * 64, sizeof(float), A);
    D_NEW(t, t->be, &dC, 64 * 64, sizeof(float), NULL);
    CALL_OK(t->be, "events", ng_event_create(t->be, &e0));
    CALL_OK(t->be, "events", ng_event_create(t->be, &e1));
    CALL_OK(t->be, "events", ng_event_create(t->be, &e2));
    NGT_CHECK(e0 && e1 && e2 && e0 != e1 && e1 != e2, "event_create returned NULL or duplicates");
    for (rep = 0; rep < 2; rep++) { /* an event may be recorded again */
        CALL_OK(t->be, "events", ng_event_record(t->be, e0));
        CALL_OK(t->be, "events", ng_gemm(t->be, 0, 1, 64, 64, 64, 1.0f, d_f(&dA), 64, d_f(&dA), 64,
                                         0.0f, d_f(&dC), 64));
        CALL_OK(t->be, "events", ng_event_record(t->be, e1));
        CALL_OK(t->be, "events", ng_event_wait(t->be, e1)); /* the stream waits for its own event */
        CALL_OK(t->be, "events", ng_scal(t->be, 64 * 64, 0.5f, d_f(&dC)));
        CALL_OK(t->be, "events", ng_event_record(t->be, e2));
        CALL_OK(t->be, "events", ng_event_synchronize(t->be, e2));
        CALL_OK(t->be, "events", ng_event_elapsed(t->be, e0, e1, &ms));
        CALL_OK(t->be, "events", ng_event_elapsed(t->be, e0, e2, &ms2));
        NGT_CHECK(ms >= 0.0f && isfinite(ms) && ms2 >= 0.0f && isfinite(ms2),
                  "event_elapsed: %g ms and %g ms, want finite and >= 0", (double)ms, (double)ms2);
    }
    TRY(d_fetch(&dC, C, "events C"));
    NGT_CHECK(isfinite(C[0]) && C[0] > 0.0f, "events: gemm + scal result C[0] = %g", (double)C[0]);
    ng_event_destroy(t->be, e0);
    ng_event_destroy(t->be, e1);
    ng_event_destroy(t->be, e2);
    ng_event_destroy(t->be, NULL); /* ignored */
    t_release(t, mark);
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
    snprintf(what, sizeof what,
             "gemm ta=%d tb=%d m=%d n=%d k=%d lda=%d ldb=%d ldc=%d alpha=%g beta=%g%s", ta, tb, m,
             n, k, g.lda, g.ldb, g.ldc, (double)alpha, (double)beta, nan_c ? " (NaN in C)" : "");
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

/* ---- gemm_strided_batched -------------------------------------------------------------------
 * count matrices at A + b sa, B + b sb, C + b sc. Strides leave gaps between the matrices (and sa
 * = 0 broadcasts one A to every batch); the gaps and padding rows of C hold SENT and must come back
 * unchanged, and count = 0 must leave C alone. Tolerance per batch as for gemm. */

/* Host batch buffer: `count` (ld, cols) matrices `stride` apart (one when stride = 0), interior
 * uniform in [-1, 1), everything else SENT. Returns the element count in *len. */
static float *h_batch(tctx *t, int rows, int cols, int ld, long long stride, int count,
                      uint64_t seed, size_t *len) {
    size_t one = (size_t)ld * (size_t)cols, n, b;
    float *x;
    int r, c;
    n = count <= 0 ? one : (size_t)stride * (size_t)(count - 1) + one;
    x = h_floats(t, n ? n : 1);
    for (b = 0; b < n; b++) x[b] = SENT_F;
    for (b = 0; b < (size_t)(count > 0 ? count : 1); b++)
        for (c = 0; c < cols; c++)
            for (r = 0; r < rows; r++)
                x[b * (size_t)stride + r + (size_t)c * ld] =
                    (float)rnd(seed + b, r + (size_t)c * ld, -1.0, 1.0);
    *len = n;
    return x;
}

static int run_gemm_sb(tctx *t, ng_backend *be, const gemm_args *g, long long sa, long long sb,
                       long long sc, int count, const float *A, size_t na, const float *B,
                       size_t nb, float *C, size_t nc) {
    int mark = t->nmem;
    dbuf dA, dB, dC;
    D_NEW(t, be, &dA, na, sizeof(float), A);
    D_NEW(t, be, &dB, nb, sizeof(float), B);
    D_NEW(t, be, &dC, nc, sizeof(float), C);
    NGT_OK(ng_gemm_strided_batched(be, g->ta, g->tb, g->m, g->n, g->k, g->alpha, d_f(&dA), g->lda,
                                   sa, d_f(&dB), g->ldb, sb, g->beta, d_f(&dC), g->ldc, sc, count));
    TRY(d_fetch(&dC, C, "gemm_strided_batched C"));
    TRY(d_unchanged(&dA, A, "gemm_strided_batched A"));
    TRY(d_unchanged(&dB, B, "gemm_strided_batched B"));
    t_release(t, mark);
    return NGT_PASS;
}

static int gemm_sb_case(tctx *t, int ta, int tb, int m, int n, int k, float alpha, float beta,
                        int count, int bcast_a, int nan_c) {
    int mark = t->nmem, i, j, l, b;
    gemm_args g;
    int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    long long sa, sb, sc;
    size_t na, nb, nc;
    float *A, *B, *C0, *got, *want;
    double mag = 0.0, tol;
    char what[240];
    g.ta = ta; g.tb = tb; g.m = m; g.n = n; g.k = k; g.alpha = alpha; g.beta = beta;
    g.lda = max_i(1, ar + 1);
    g.ldb = max_i(1, br + 2);
    g.ldc = max_i(1, m + 1);
    sa = bcast_a ? 0 : (long long)g.lda * ac + 3;
    sb = (long long)g.ldb * bc + 1;
    sc = (long long)g.ldc * n + 2;
    A = h_batch(t, ar, ac, g.lda, sa, bcast_a ? 1 : count, 141 + (uint64_t)m, &na);
    B = h_batch(t, br, bc, g.ldb, sb, count, 142 + (uint64_t)n, &nb);
    C0 = h_batch(t, m, n, g.ldc, sc, count, 143 + (uint64_t)k, &nc);
    if (nan_c)
        for (b = 0; b < count; b++) set_interior(C0 + (size_t)b * sc, m, n, g.ldc, NAN);
    got = h_dup(t, C0, nc);
    want = h_dup(t, C0, nc);
    TRY(run_gemm_sb(t, t->be, &g, sa, sb, sc, count, A, na, B, nb, got, nc));
    for (b = 0; b < count; b++)
        for (j = 0; j < n; j++)
            for (i = 0; i < m; i++) {
                const float *Ab = A + (size_t)b * sa, *Bb = B + (size_t)b * sb;
                size_t at = (size_t)b * sc + i + (size_t)j * g.ldc;
                double s = 0.0, sabs = 0.0, c0 = C0[at];
                for (l = 0; l < k; l++) {
                    double x = ta ? Ab[l + (size_t)i * g.lda] : Ab[i + (size_t)l * g.lda];
                    double y = tb ? Bb[j + (size_t)l * g.ldb] : Bb[l + (size_t)j * g.ldb];
                    s += x * y;
                    sabs += fabs(x * y);
                }
                if (!t->ref)
                    want[at] =
                        (float)((double)alpha * s + (beta == 0.0f ? 0.0 : (double)beta * c0));
                sabs = fabs((double)alpha) * sabs + (beta == 0.0f ? 0.0 : fabs((double)beta * c0));
                if (sabs > mag) mag = sabs;
            }
    tol = (k + 2) * EPS_F * mag;
    if (t->ref) {
        TRY(run_gemm_sb(t, t->ref, &g, sa, sb, sc, count, A, na, B, nb, want, nc));
        tol *= 2.0;
    }
    snprintf(what, sizeof what,
             "gemm_strided_batched ta=%d tb=%d m=%d n=%d k=%d count=%d lda=%d ldb=%d ldc=%d "
             "sa=%lld sb=%lld sc=%lld alpha=%g beta=%g%s",
             ta, tb, m, n, k, count, g.lda, g.ldb, g.ldc, sa, sb, sc, (double)alpha, (double)beta,
             nan_c ? " (NaN in C)" : "");
    COMPARE(what, got, want, nc, tol, 0.0); /* gaps and padding: SENT on both sides */
    for (b = 0; b < count; b++) TRY(check_pad(what, got + (size_t)b * sc, m, n, g.ldc));
    t_release(t, mark);
    return NGT_PASS;
}

static int op_gemm_strided_batched(tctx *t) {
    int ta, tb;
    for (ta = 0; ta < 2; ta++)
        for (tb = 0; tb < 2; tb++) {
            TRY(gemm_sb_case(t, ta, tb, 1, 1, 1, 1.0f, 0.0f, 1, 0, 1));
            TRY(gemm_sb_case(t, ta, tb, 7, 5, 3, 0.5f, -1.0f, 3, 0, 0));
            TRY(gemm_sb_case(t, ta, tb, 33, 7, 9, 1.25f, 0.0f, 4, 0, 1));
            TRY(gemm_sb_case(t, ta, tb, 6, 33, 17, -1.0f, 0.5f, 2, 1, 0)); /* sa = 0: shared A */
            TRY(gemm_sb_case(t, ta, tb, 5, 6, 0, 1.0f, 0.5f, 3, 0, 0));    /* k = 0: C = beta C */
            TRY(gemm_sb_case(t, ta, tb, 5, 6, 4, 0.0f, 0.0f, 3, 0, 1));    /* alpha = beta = 0 */
            TRY(gemm_sb_case(t, ta, tb, 5, 6, 4, 1.0f, 1.0f, 0, 0, 0));    /* count = 0 */
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
            TRY(gemv_case(t, tr, shapes[s][0], shapes[s][1], 0.0f, 0.5f, 0)); /* y = beta y */
        }
        /* empty inner dimension: y = beta y */
        TRY(gemv_case(t, tr, tr ? 0 : 7, tr ? 7 : 0, 1.0f, 0.5f, 0));
        TRY(gemv_case(t, tr, tr ? 0 : 7, tr ? 7 : 0, 1.0f, 0.0f, 1));
    }
    return NGT_PASS;
}

/* ---- trsm: all 16 side/uplo/trans/diag combinations ----------------------------------------
 * A is triangular of order o (m on the left, n on the right) with |diagonal| in [1, 2] and the
 * off-diagonal entries of its triangle in [-0.5, 0.5] / o, so every row's off-diagonal sum is
 * below half the diagonal: ||op(A)^-1||_inf <= 2, ||op(A)||_inf <= 2.5, cond <= 5. The other
 * triangle holds NaN (never read), and so does the diagonal when unit = 1. The computed solution
 * of a triangular system has backward error gamma_o |A| (Higham, Thm 8.5), hence forward error
 * <= cond * gamma_o * |X| ~ 5 o u |X|; we accept 4 (o + 2) FLT_EPSILON max|X| (8 (o + 2) u, which
 * also covers the rounding of alpha B), doubled for cuda-vs-cpu. alpha = 0 must give B = 0
 * without reading B (BLAS; B holds NaN then). */

/* Element (i, j) of M = op(A) (tt = 0) or op(A)^T (tt = 1), with the unit diagonal and the zero
 * triangle made explicit. */
static double tri_at(const float *A, int lda, int lower, int trans, int unit, int tt, int i,
                     int j) {
    int t = trans ^ tt, r = t ? j : i, c = t ? i : j; /* element (r, c) of the stored A */
    if (r == c) return unit ? 1.0 : (double)A[r + (size_t)c * lda];
    if (lower ? r > c : r < c) return (double)A[r + (size_t)c * lda];
    return 0.0;
}

/* x(o) := M^-1 x by substitution in double, M as in tri_at. */
static void tri_solve(const float *A, int lda, int lower, int trans, int unit, int tt, int o,
                      double *x) {
    int m_lower = lower ^ trans ^ tt, i, k;
    if (m_lower) {
        for (i = 0; i < o; i++) {
            double s = x[i];
            for (k = 0; k < i; k++) s -= tri_at(A, lda, lower, trans, unit, tt, i, k) * x[k];
            x[i] = s / tri_at(A, lda, lower, trans, unit, tt, i, i);
        }
    } else {
        for (i = o - 1; i >= 0; i--) {
            double s = x[i];
            for (k = i + 1; k < o; k++) s -= tri_at(A, lda, lower, trans, unit, tt, i, k) * x[k];
            x[i] = s / tri_at(A, lda, lower, trans, unit, tt, i, i);
        }
    }
}

static int run_trsm(tctx *t, ng_backend *be, int right, int lower, int trans, int unit, int m,
                    int n, float alpha, const float *A, int lda, float *B, int ldb) {
    int mark = t->nmem, o = right ? n : m;
    dbuf dA, dB;
    D_NEW(t, be, &dA, (size_t)lda * o, sizeof(float), A);
    D_NEW(t, be, &dB, (size_t)ldb * n, sizeof(float), B);
    NGT_OK(ng_trsm(be, right, lower, trans, unit, m, n, alpha, d_f(&dA), lda, d_f(&dB), ldb));
    TRY(d_fetch(&dB, B, "trsm B"));
    TRY(d_unchanged(&dA, A, "trsm A"));
    t_release(t, mark);
    return NGT_PASS;
}

static int trsm_case(tctx *t, int right, int lower, int trans, int unit, int m, int n,
                     float alpha) {
    int mark = t->nmem, o = right ? n : m, lda = o + 2, ldb = m + 3, i, j;
    uint64_t seed =
        151 + (uint64_t)(m * 64 + n) * 16 + (uint64_t)(right * 8 + lower * 4 + trans * 2 + unit);
    float *A = h_floats(t, (size_t)lda * o), *B0, *got, *want;
    double *x = h_doubles(t, (size_t)(m > n ? m : n)), xmax = 0.0, tol;
    char what[200];
    for (j = 0; j < o; j++)
        for (i = 0; i < lda; i++) {
            float v;
            if (i >= o) v = SENT_F;
            else if (i == j)
                v = unit ? NAN : (float)((rnd(seed, (uint64_t)j, 0.0, 1.0) < 0.5 ? -1.0 : 1.0) *
                                         rnd(seed + 1, (uint64_t)j, 1.0, 2.0));
            else if (lower ? i > j : i < j)
                v = (float)(rnd(seed + 2, i + (size_t)j * lda, -0.5, 0.5) / o);
            else v = NAN; /* the other triangle: must not be read */
            A[i + (size_t)j * lda] = v;
        }
    B0 = h_mat(t, m, n, ldb, seed + 3, -1.0, 1.0);
    if (alpha == 0.0f) set_interior(B0, m, n, ldb, NAN); /* alpha = 0: B is not read */
    got = h_dup(t, B0, (size_t)ldb * n);
    want = h_dup(t, B0, (size_t)ldb * n);
    TRY(run_trsm(t, t->be, right, lower, trans, unit, m, n, alpha, A, lda, got, ldb));
    if (!right) { /* op(A) X = alpha B, column by column */
        for (j = 0; j < n; j++) {
            for (i = 0; i < m; i++)
                x[i] = alpha == 0.0f ? 0.0 : (double)alpha * B0[i + (size_t)j * ldb];
            if (alpha != 0.0f) tri_solve(A, lda, lower, trans, unit, 0, m, x);
            for (i = 0; i < m; i++) {
                if (!t->ref) want[i + (size_t)j * ldb] = (float)x[i];
                if (fabs(x[i]) > xmax) xmax = fabs(x[i]);
            }
        }
    } else { /* X op(A) = alpha B: op(A)^T x^T = alpha b^T, row by row */
        for (i = 0; i < m; i++) {
            for (j = 0; j < n; j++)
                x[j] = alpha == 0.0f ? 0.0 : (double)alpha * B0[i + (size_t)j * ldb];
            if (alpha != 0.0f) tri_solve(A, lda, lower, trans, unit, 1, n, x);
            for (j = 0; j < n; j++) {
                if (!t->ref) want[i + (size_t)j * ldb] = (float)x[j];
                if (fabs(x[j]) > xmax) xmax = fabs(x[j]);
            }
        }
    }
    tol = 4.0 * (o + 2) * EPS_F * xmax;
    if (alpha == 0.0f) tol = 1e-30; /* exactly zero; either sign */
    if (t->ref) {
        TRY(run_trsm(t, t->ref, right, lower, trans, unit, m, n, alpha, A, lda, want, ldb));
        tol *= 2.0;
    }
    snprintf(what, sizeof what,
             "trsm side=%s uplo=%s trans=%d diag=%s m=%d n=%d lda=%d ldb=%d alpha=%g",
             right ? "R" : "L", lower ? "L" : "U", trans, unit ? "U" : "N", m, n, lda, ldb,
             (double)alpha);
    COMPARE(what, got, want, (size_t)ldb * n, tol, 0.0);
    TRY(check_pad(what, got, m, n, ldb));
    t_release(t, mark);
    return NGT_PASS;
}

static int op_trsm(tctx *t) {
    const int shapes[][2] = {{1, 1}, {2, 3}, {3, 2}, {4, 5}, {5, 4}, {7, 33}, {33, 7}};
    int combo;
    size_t s;
    for (combo = 0; combo < 16; combo++) {
        int right = combo >> 3 & 1, lower = combo >> 2 & 1, trans = combo >> 1 & 1,
            unit = combo & 1;
        for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            TRY(trsm_case(t, right, lower, trans, unit, shapes[s][0], shapes[s][1], 1.0f));
            TRY(trsm_case(t, right, lower, trans, unit, shapes[s][0], shapes[s][1], -0.75f));
        }
        TRY(trsm_case(t, right, lower, trans, unit, t->big, t->small ? 9 : 40, 1.5f));
        TRY(trsm_case(t, right, lower, trans, unit, 5, 6, 0.0f));
    }
    return NGT_PASS;
}

/* ---- scal ------------------------------------------------------------------------------------ */

static int run_scal(tctx *t, ng_backend *be, size_t n, float alpha, float *x) {
    int mark = t->nmem;
    dbuf dx;
    D_NEW(t, be, &dx, n, sizeof(float), x);
    NGT_OK(ng_scal(be, n, alpha, d_f(&dx)));
    TRY(d_fetch(&dx, x, "scal x"));
    t_release(t, mark);
    return NGT_PASS;
}

/* Exact: one correctly rounded float product per element, and a float x float product is exact in
 * double, so (float)((double)alpha * x) is that product. (alpha = 0 gives +-0: compared by
 * value.) */
static int scal_case(tctx *t, size_t n, float alpha) {
    int mark = t->nmem;
    float *x0 = h_mat(t, (int)n, 1, (int)n, 41 + n, -2.0, 2.0), *got, *want;
    char what[80];
    size_t i;
    got = h_dup(t, x0, n);
    want = h_dup(t, x0, n);
    TRY(run_scal(t, t->be, n, alpha, got));
    if (t->ref) TRY(run_scal(t, t->ref, n, alpha, want));
    else
        for (i = 0; i < n; i++) want[i] = (float)((double)alpha * x0[i]);
    snprintf(what, sizeof what, "scal n=%zu alpha=%g", n, (double)alpha);
    COMPARE(what, got, want, n, 0.0, 0.0);
    t_release(t, mark);
    return NGT_PASS;
}

static int op_scal(tctx *t) {
    const size_t ns[] = {1, 2, 3, 4, 5, 7, 1000, t->small ? 2000 : 70000}; /* 70000: parallel */
    size_t a;
    for (a = 0; a < sizeof ns / sizeof ns[0]; a++) {
        TRY(scal_case(t, ns[a], -0.5f));
        TRY(scal_case(t, ns[a], 0.0f));
        TRY(scal_case(t, ns[a], 3.0f));
    }
    return NGT_PASS;
}

/* ---- dot, nrm2, and the device-result forms dot_dev, nrm2_dev -------------------------------- */

/* Runs dot and nrm2 (host results) and dot_dev and nrm2_dev (results in one-float device buffers
 * with guard zones, initialised to NaN so a missing write shows). */
static int run_dot_nrm2(tctx *t, ng_backend *be, size_t n, const float *x, const float *y,
                        float r[4]) {
    int mark = t->nmem;
    const float nan1 = NAN;
    dbuf dx, dy, dd, dn;
    D_NEW(t, be, &dx, n, sizeof(float), x);
    D_NEW(t, be, &dy, n, sizeof(float), y);
    D_NEW(t, be, &dd, 1, sizeof(float), &nan1);
    D_NEW(t, be, &dn, 1, sizeof(float), &nan1);
    r[0] = r[1] = r[2] = r[3] = NAN;
    NGT_OK(ng_dot(be, n, d_f(&dx), d_f(&dy), &r[0]));
    NGT_OK(ng_nrm2(be, n, d_f(&dx), &r[1]));
    NGT_OK(ng_dot_dev(be, n, d_f(&dx), d_f(&dy), d_f(&dd)));
    NGT_OK(ng_nrm2_dev(be, n, d_f(&dx), d_f(&dn)));
    TRY(d_fetch(&dd, &r[2], "dot_dev result"));
    TRY(d_fetch(&dn, &r[3], "nrm2_dev result"));
    /* a host-pointer-mode reduction after the device-mode ones still works */
    {
        float again = NAN;
        NGT_OK(ng_dot(be, n, d_f(&dx), d_f(&dy), &again));
        NGT_CHECK(memcmp(&again, &r[0], sizeof again) == 0,
                  "dot after dot_dev/nrm2_dev: %.9g, before %.9g", (double)again, (double)r[0]);
    }
    TRY(d_unchanged(&dx, x, "dot/nrm2 x"));
    TRY(d_unchanged(&dy, y, "dot y"));
    t_release(t, mark);
    return NGT_PASS;
}

/* dot of n terms accumulated in float: within (n + 1) * FLT_EPSILON * sum |x y|. nrm2: the sum of
 * squares has relative error n * eps and the square root halves it: rtol (n + 2) * FLT_EPSILON.
 * scale multiplies x so that the squares overflow (1e25) or underflow (1e-25) in float: nrm2 must
 * still be accurate (BLAS scales). Doubled for cuda-vs-cpu. The device-result forms obey the same
 * bounds. n = 0 gives exactly 0 (written to the device result too). */
static int dot_case(tctx *t, size_t n, double scale) {
    int mark = t->nmem, k;
    float *x = h_mat(t, (int)n, 1, (int)n, 51 + n, -1.0, 1.0);
    float *y = h_mat(t, (int)n, 1, (int)n, 52 + n, -1.0, 1.0);
    double s = 0.0, sa = 0.0, ss = 0.0, want[4], f = t->ref ? 2.0 : 1.0;
    float got[4], rw[4];
    static const char *const names[4] = {"dot", "nrm2", "dot_dev", "nrm2_dev"};
    char what[120];
    size_t i;
    for (i = 0; i < n; i++) {
        x[i] = (float)(x[i] * scale);
        s += (double)x[i] * y[i];
        sa += fabs((double)x[i] * y[i]);
        ss += ((double)x[i] / scale) * ((double)x[i] / scale);
    }
    want[0] = want[2] = s;
    want[1] = want[3] = sqrt(ss) * scale;
    TRY(run_dot_nrm2(t, t->be, n, x, y, got));
    if (t->ref) {
        TRY(run_dot_nrm2(t, t->ref, n, x, y, rw));
        for (k = 0; k < 4; k++) want[k] = rw[k];
    }
    for (k = 0; k < 4; k++) {
        double tol = (k & 1) ? f * (n + 2) * EPS_F * sqrt(ss) * scale
                             : f * (n + 1) * EPS_F * sa + 1e-30 * scale;
        snprintf(what, sizeof what, "%s n=%zu scale=%g", names[k], n, scale);
        if (n == 0) NGT_CHECK(got[k] == 0.0f, "%s: %g, want 0", what, (double)got[k]);
        NGT_CLOSE(got[k], want[k], tol, what);
    }
    t_release(t, mark);
    return NGT_PASS;
}

static int op_dot_nrm2(tctx *t) {
    const size_t ns[] = {0, 1, 2, 3, 4, 5, 7, 1000, t->small ? 2000 : 70000};
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
    float *y0 = h_mat(t, yl, 1, max_i(yl, 1), 62, -1.0, 1.0), *got, *want;
    double mag = 0.0, tol;
    char what[160];
    if (nan_y) set_interior(y0, yl, 1, max_i(yl, 1), NAN);
    got = h_dup(t, y0, (size_t)max_i(yl, 1));
    want = h_dup(t, y0, (size_t)max_i(yl, 1));
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
    const int shapes[][2] = {{1, 1}, {7, 33}, {33, 7}, {B, B}, {1, B}, {B, 1}, {5, 0}, {0, 5}};
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

/* ---- LAPACK-like: potrf, potri, potrs, syevd, float32 and float64 through the same slots -------
 * Host data is double; float variants upload the values rounded to float (so the reference uses
 * the exact input) and read them back widened. */

static int d_new_conv(tctx *t, ng_backend *be, dbuf *b, size_t n, int dbl, const double *init) {
    float *f;
    size_t i;
    int r;
    if (dbl) return d_new(t, be, b, n, sizeof(double), init);
    f = (float *)malloc(n ? n * sizeof(float) : 1);
    if (!f) oom();
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
    if (!f) oom();
    r = d_fetch(b, f, what);
    if (r == NGT_PASS)
        for (i = 0; i < b->n; i++) out[i] = f[i];
    free(f);
    return r;
}

/* Symmetric positive definite A = B B^T / n + I / 2, B uniform in [-1, 1): eigenvalues in
 * [0.5, ~1.9], so cond(A) <= ~4 and float results are accurate to a few n eps. */
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
                s += rnd(seed, (uint64_t)i * n + l, -1.0, 1.0) *
                     rnd(seed, (uint64_t)j * n + l, -1.0, 1.0);
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
                     double atol) {
    int i, j, bad = 0;
    double maxd = 0.0;
    for (j = 0; j < n; j++)
        for (i = j; i < n; i++) {
            double d = fabs(a[i + (size_t)j * lda] - b[i + (size_t)j * lda]);
            if (!(d <= atol)) {
                if (bad < 5)
                    printf("  %s: [%d,%d] got %.17g want %.17g\n", what, i, j,
                           a[i + (size_t)j * lda], b[i + (size_t)j * lda]);
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
        NGT_CHECK(!cmp_lower(what, L, Lr, n, lda, 16.0 * (n + 2) * eps * lower_absmax(Lr, n, lda)),
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
                             16.0 * (n + 2) * eps * xnorm * lower_absmax(Xr, n, lda)),
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

/* ---- potrs ------------------------------------------------------------------------------------
 * The factor L is the naive double Cholesky factor of make_spd's A, rounded to the working
 * precision (so the reference solves with exactly the factor the backend gets); its strict upper
 * triangle holds NaN (only the lower triangle may be read). Each of the two triangular solves has
 * forward error <= cond(L) gamma_n |X| with cond(L) = sqrt(cond(A)) <= 2, so we accept
 * 4 (n + 2) eps max|X|, doubled for cuda-vs-cpu. Padding rows of B must come back unchanged. */

static int run_potrs(tctx *t, ng_backend *be, int dbl, int n, int nrhs, const double *L, int lda,
                     double *B, int ldb, int *info_out) {
    int mark = t->nmem, info = -12345;
    dbuf dL, dB;
    ng_status s;
    TRY(d_new_conv(t, be, &dL, (size_t)lda * n, dbl, L));
    TRY(d_new_conv(t, be, &dB, (size_t)ldb * nrhs, dbl, B));
    s = dbl ? ng_potrs_d(be, n, nrhs, d_d(&dL), lda, d_d(&dB), ldb, &info)
            : ng_potrs(be, n, nrhs, d_f(&dL), lda, d_f(&dB), ldb, &info);
    NGT_OK(s);
    TRY(d_fetch_conv(&dB, dbl, B, "potrs B"));
    {
        double *back = (double *)malloc(((size_t)lda * n + 1) * sizeof(double));
        int r;
        if (!back) oom();
        r = d_fetch_conv(&dL, dbl, back, "potrs L (input)");
        if (r == NGT_PASS && memcmp(back, L, (size_t)lda * n * sizeof(double)) != 0 && n) {
            /* NaN compares by bits: memcmp is right for an unchanged input */
            printf("  potrs: the factor (input) was modified\n");
            r = NGT_FAIL;
        }
        free(back);
        TRY(r);
    }
    *info_out = info;
    t_release(t, mark);
    return NGT_PASS;
}

static int potrs_case(tctx *t, int n, int nrhs, int dbl) {
    int mark = t->nmem, lda = n + 1, ldb = n + 2, i, j, l, info = -1;
    double eps = dbl ? EPS_D : EPS_F, xmax = 0.0, tol;
    double *A = h_doubles(t, (size_t)lda * n + 1), *L = h_doubles(t, (size_t)lda * n + 1);
    double *B0 = h_doubles(t, (size_t)ldb * nrhs + 1), *got, *want,
           *x = h_doubles(t, (size_t)n + 1);
    char what[120];
    make_spd(A, n, lda, 1, 171 + (uint64_t)n);
    /* naive Cholesky in double, rounded to the working precision */
    for (j = 0; j < n; j++) {
        double d = A[j + (size_t)j * lda];
        for (l = 0; l < j; l++) d -= L[j + (size_t)l * lda] * L[j + (size_t)l * lda];
        d = sqrt(d);
        L[j + (size_t)j * lda] = d;
        for (i = j + 1; i < n; i++) {
            double s = A[i + (size_t)j * lda];
            for (l = 0; l < j; l++) s -= L[i + (size_t)l * lda] * L[j + (size_t)l * lda];
            L[i + (size_t)j * lda] = s / d;
        }
    }
    for (j = 0; j < n; j++)
        for (i = 0; i < lda; i++) {
            double *p = &L[i + (size_t)j * lda];
            if (i >= n) *p = SENT;
            else if (i < j) *p = NAN;
            else if (!dbl) *p = (double)(float)*p;
        }
    for (j = 0; j < nrhs; j++)
        for (i = 0; i < ldb; i++) {
            double v = i >= n ? SENT : rnd(172 + (uint64_t)n, i + (size_t)j * ldb, -1.0, 1.0);
            B0[i + (size_t)j * ldb] = dbl ? v : (double)(float)v;
        }
    got = (double *)h_dupb(t, B0, ((size_t)ldb * nrhs + 1) * sizeof(double));
    want = (double *)h_dupb(t, B0, ((size_t)ldb * nrhs + 1) * sizeof(double));
    snprintf(what, sizeof what, "potrs%s n=%d nrhs=%d lda=%d ldb=%d", dbl ? "_d" : "", n, nrhs,
             lda, ldb);
    TRY(run_potrs(t, t->be, dbl, n, nrhs, L, lda, got, ldb, &info));
    NGT_CHECK(info == 0, "%s: info = %d", what, info);
    for (j = 0; j < nrhs; j++) {
        for (i = 0; i < n; i++) x[i] = B0[i + (size_t)j * ldb];
        for (i = 0; i < n; i++) { /* L y = b */
            double s = x[i];
            for (l = 0; l < i; l++) s -= L[i + (size_t)l * lda] * x[l];
            x[i] = s / L[i + (size_t)i * lda];
        }
        for (i = n - 1; i >= 0; i--) { /* L^T x = y */
            double s = x[i];
            for (l = i + 1; l < n; l++) s -= L[l + (size_t)i * lda] * x[l];
            x[i] = s / L[i + (size_t)i * lda];
        }
        for (i = 0; i < n; i++) {
            want[i + (size_t)j * ldb] = dbl ? x[i] : (double)(float)x[i];
            if (fabs(x[i]) > xmax) xmax = fabs(x[i]);
        }
    }
    tol = 4.0 * (n + 2) * eps * xmax;
    if (t->ref) {
        memcpy(want, B0, (size_t)ldb * nrhs * sizeof(double));
        TRY(run_potrs(t, t->ref, dbl, n, nrhs, L, lda, want, ldb, &info));
        tol *= 2.0;
    }
    COMPARE_D(what, got, want, (size_t)ldb * nrhs, tol, 0.0);
    TRY(check_pad_d(what, got, n, nrhs, ldb));
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

static int op_potrs(tctx *t) {
    const int ns[] = {1, 2, 3, 4, 5, 7, 33, t->small ? 20 : 64};
    size_t a;
    int dbl;
    for (dbl = 0; dbl < 2; dbl++)
        for (a = 0; a < sizeof ns / sizeof ns[0]; a++) {
            TRY(potrs_case(t, ns[a], 1, dbl));
            TRY(potrs_case(t, ns[a], 3, dbl));
        }
    { /* nrhs = 0: nothing to do, info = 0, the factor untouched */
        int mark = t->nmem, info = -1;
        float L[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
        dbuf dL;
        D_NEW(t, t->be, &dL, 9, sizeof(float), L);
        NGT_OK(ng_potrs(t->be, 3, 0, d_f(&dL), 3, NULL, 3, &info));
        NGT_CHECK(info == 0, "potrs nrhs=0: info = %d", info);
        TRY(d_unchanged(&dL, L, "potrs nrhs=0 factor"));
        t_release(t, mark);
    }
    return NGT_PASS;
}

/* =============================================================================================
 * Elementwise families (run_op): one descriptor per ng_op
 * ============================================================================================= */

/* A case is an ng_op_args whose scalars the generator fills, plus up to MAXB operand buffers. Each
 * buffer records where its pointer goes in ng_op_args (offsetof of the member, 0 = nowhere: the op
 * field, at offset 0, is never a pointer), its shape (rows x cols interior of an (ld, cols)
 * array), its role, and its initial host contents (padding rows SENT). An in-place operand is a
 * buffer that aliases an earlier one: it shares that buffer's device memory and starts with the
 * same contents. A NULL operand is passed as NULL. */

#define MAXB 12
#define AOFF(member) offsetof(ng_op_args, member)

enum { R_IN, R_OUT, R_INOUT }; /* IN: must come back bit for bit; OUT/INOUT: compared */

typedef struct ebuf {
    const char *name;
    int role, dbl, is_null, alias; /* alias: index of the buffer whose memory this one shares */
    int rows, cols, ld;
    size_t n;   /* ld * cols elements */
    size_t off; /* offsetof the pointer member in ng_op_args (0: none) */
    void *init; /* initial contents (host) */
    void *want; /* reference: starts as init; the op's reference writes what the op defines */
    double *tol; /* per element; 0 = bit for bit */
} ebuf;

typedef struct ecase {
    ng_op_args a;
    char what[300];
    int nb;
    ebuf b[MAXB];
} ecase;

typedef struct tshape {
    int m, n; /* vector ops: m elements (n unused); matrix ops: m rows, n columns */
} tshape;

/* Modes an op supports (descriptor flags): an out-of-place form and/or an in-place form (an output
 * sharing an input's memory, or an op defined on its operand in place). */
#define OPF_OUT 1u
#define OPF_IN 2u

typedef struct op_test {
    ng_op op;
    const char *name;
    unsigned flags;
    const tshape *shapes;
    int nshapes;
    int nvariants; /* the generator is asked for variants 0 .. nvariants-1 of each shape and mode */
    /* Build case (shape, in place or not, variant) in c; 0 when that combination does not exist. */
    int (*gen)(tctx *t, const tshape *s, int inplace, int v, ecase *c);
    /* Naive reference: write want[] and tol[] of the output buffers from the initial contents. */
    void (*ref)(ecase *c);
    /* Extra invariants of one backend's outputs (got[i] = buffer i on the host); may be NULL. */
    int (*check)(const ecase *c, void *const got[]);
} op_test;

static size_t eb_esz(const ebuf *b) { return b->dbl ? sizeof(double) : sizeof(float); }

static double eb_val(const ebuf *b, const void *p, size_t k) {
    return b->dbl ? ((const double *)p)[k] : (double)((const float *)p)[k];
}
static void eb_put(const ebuf *b, void *p, size_t k, double v) {
    if (b->dbl) ((double *)p)[k] = v;
    else ((float *)p)[k] = (float)v;
}

/* The next free buffer slot of c, cleared. */
static ebuf *eb_next(ecase *c) {
    if (c->nb == MAXB) {
        printf("  test_backend: more than %d buffers in a case\n", MAXB);
        exit(1);
    }
    memset(&c->b[c->nb], 0, sizeof c->b[c->nb]);
    return &c->b[c->nb];
}

/* Add a buffer; the interior starts as NaN for pure outputs (so a skipped element shows) and 0
 * otherwise (the generator fills inputs), padding rows as SENT. */
static int eb_add(tctx *t, ecase *c, const char *name, int role, int dbl, int rows, int cols,
                  int ld, size_t off) {
    ebuf *b = eb_next(c);
    int r, k;
    b->name = name;
    b->role = role;
    b->dbl = dbl;
    b->alias = -1;
    b->rows = rows;
    b->cols = cols;
    b->ld = ld;
    b->off = off;
    b->n = (size_t)ld * (size_t)cols;
    b->init = h_alloc(t, b->n * eb_esz(b));
    for (k = 0; k < cols; k++)
        for (r = 0; r < ld; r++)
            eb_put(b, b->init, r + (size_t)k * ld, r >= rows ? SENT : role == R_OUT ? NAN : 0.0);
    return c->nb++;
}

static int eb_vec(tctx *t, ecase *c, const char *name, int role, int dbl, int n, size_t off) {
    return eb_add(t, c, name, role, dbl, n, 1, n, off);
}

/* An operand passed as NULL. */
static int eb_null(ecase *c, const char *name) {
    ebuf *b = eb_next(c);
    b->name = name;
    b->is_null = 1;
    b->alias = -1;
    return c->nb++;
}

/* An operand sharing buffer `of`'s memory (create it after `of` is filled). */
static int eb_alias(tctx *t, ecase *c, const char *name, int role, int of, size_t off) {
    ebuf *b = eb_next(c), *o = &c->b[of];
    *b = *o;
    b->name = name;
    b->role = role;
    b->alias = of;
    b->off = off;
    b->init = h_dupb(t, o->init, o->n * eb_esz(o));
    return c->nb++;
}

/* Interior of buffer i uniform in [lo, hi) (rounded to the buffer's type). */
static void eb_rand(ecase *c, int i, uint64_t seed, double lo, double hi) {
    ebuf *b = &c->b[i];
    int r, k;
    for (k = 0; k < b->cols; k++)
        for (r = 0; r < b->rows; r++) {
            size_t at = r + (size_t)k * b->ld;
            eb_put(b, b->init, at, rnd(seed, at, lo, hi));
        }
}
static void eb_fill(ecase *c, int i, double v) {
    ebuf *b = &c->b[i];
    int r, k;
    for (k = 0; k < b->cols; k++)
        for (r = 0; r < b->rows; r++) eb_put(b, b->init, r + (size_t)k * b->ld, v);
}

#define IF(c, i) ((float *)(c)->b[i].init)   /* initial contents of float buffer i */
#define ID(c, i) ((double *)(c)->b[i].init)
#define WF(c, i) ((float *)(c)->b[i].want)   /* reference of float output i */
#define TL(c, i) ((c)->b[i].tol)             /* its tolerance */
#define AT(c, i, r, col) ((size_t)(r) + (size_t)(col) * (size_t)(c)->b[i].ld)

static void what(ecase *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->what, sizeof c->what, fmt, ap);
    va_end(ap);
}

static int is_output(const ebuf *b) { return !b->is_null && b->role != R_IN; }

/* Is buffer i's memory written through some other (aliasing) output? */
static int shared_with_output(const ecase *c, int i) {
    int k;
    for (k = 0; k < c->nb; k++)
        if (c->b[k].alias == i && is_output(&c->b[k])) return 1;
    return 0;
}

/* Position of element k of b for messages: "[i]" for vectors, "[r,c]" (+ padding) for matrices. */
static void eb_pos(const ebuf *b, size_t k, char *buf, size_t len) {
    if (b->cols == 1 && b->ld == b->rows) snprintf(buf, len, "[%zu]", k);
    else
        snprintf(buf, len, "[%zu,%zu]%s", k % (size_t)b->ld, k / (size_t)b->ld,
                 (int)(k % (size_t)b->ld) >= b->rows ? " (padding row)" : "");
}

/* Compare got with b->want element by element: tol 0 means the same bits, else |got - want| <=
 * tol (NaN fails). Prints the first mismatches and the largest difference. */
static int cmp_buf(const char *label, const ebuf *b, const void *got) {
    size_t k, bad = 0, worst = 0, esz = eb_esz(b);
    double maxd = 0.0;
    int nan_seen = 0;
    char pos[64];
    for (k = 0; k < b->n; k++) {
        double g = eb_val(b, got, k), w = eb_val(b, b->want, k), tl = b->tol[k], d = fabs(g - w);
        int same = memcmp((const char *)got + k * esz, (const char *)b->want + k * esz, esz) == 0;
        if (!(tl == 0.0 ? same : d <= tl)) {
            if (bad < 5) {
                eb_pos(b, k, pos, sizeof pos);
                QPRINTF("  %s: %s%s got %.9g want %.9g (tol %.3g)\n", label, b->name, pos, g, w,
                        tl);
            }
            bad++;
        }
        if (!same && !nan_seen) { /* a NaN (where a number was expected) counts as largest */
            if (d != d) {
                nan_seen = 1;
                worst = k;
            } else if (d > maxd) {
                maxd = d;
                worst = k;
            }
        }
    }
    if (bad) {
        eb_pos(b, worst, pos, sizeof pos);
        if (nan_seen)
            QPRINTF("  %s: %s: %zu of %zu elements wrong; largest |diff| NaN at %s\n", label,
                    b->name, bad, b->n, pos);
        else
            QPRINTF("  %s: %s: %zu of %zu elements wrong; largest |diff| %.3g at %s\n", label,
                    b->name, bad, b->n, maxd, pos);
    }
    return bad != 0;
}

/* Allocate the operands of c on be (guard zones), and bind their pointers into *a. */
static int ecase_upload(tctx *t, ng_backend *be, const ecase *c, ng_op_args *a, dbuf db[],
                        void *dev[]) {
    int i;
    *a = c->a;
    for (i = 0; i < c->nb; i++) {
        const ebuf *b = &c->b[i];
        dev[i] = NULL;
        if (b->is_null) dev[i] = NULL;
        else if (b->alias >= 0) dev[i] = dev[b->alias];
        else {
            TRY(d_new(t, be, &db[i], b->n, eb_esz(b), b->init));
            dev[i] = d_ptr(&db[i]);
        }
        if (b->off) memcpy((char *)a + b->off, &dev[i], sizeof dev[i]);
    }
    return NGT_PASS;
}

/* Run c on be; got[i] receives buffer i (guards checked); inputs must come back bit for bit. */
static int ecase_exec(tctx *t, ng_backend *be, const ecase *c, void *got[]) {
    dbuf db[MAXB];
    void *dev[MAXB];
    ng_op_args a;
    ng_status s;
    char label[400];
    int i;
    TRY(ecase_upload(t, be, c, &a, db, dev));
    s = ng_run_op(be, &a);
    if (s != NG_OK) {
        QPRINTF("  %s on %s: ng_run_op returned %s: %s\n", c->what, be->iface->name,
                ng_status_name(s), ng_last_error());
        return NGT_FAIL;
    }
    for (i = 0; i < c->nb; i++) {
        const ebuf *b = &c->b[i];
        got[i] = NULL;
        if (b->is_null || b->alias >= 0) continue;
        got[i] = h_alloc(t, b->n * eb_esz(b));
        snprintf(label, sizeof label, "%s on %s: %s", c->what, be->iface->name, b->name);
        TRY(d_fetch(&db[i], got[i], label));
    }
    for (i = 0; i < c->nb; i++)
        if (c->b[i].alias >= 0) got[i] = got[c->b[i].alias];
    for (i = 0; i < c->nb; i++) {
        const ebuf *b = &c->b[i];
        size_t k, esz = eb_esz(b);
        if (b->is_null || b->alias >= 0 || b->role != R_IN || shared_with_output(c, i)) continue;
        for (k = 0; k < b->n; k++)
            if (memcmp((char *)got[i] + k * esz, (char *)b->init + k * esz, esz) != 0) {
                char pos[64];
                eb_pos(b, k, pos, sizeof pos);
                QPRINTF("  %s on %s: input %s was modified: %s%s is %.9g, was %.9g\n", c->what,
                        be->iface->name, b->name, b->name, pos, eb_val(b, got[i], k),
                        eb_val(b, b->init, k));
                return NGT_FAIL;
            }
    }
    return NGT_PASS;
}

/* One case: naive reference, run on the backend under test, and (cuda-vs-cpu) on the reference
 * backend, whose outputs then replace the naive ones with twice the tolerance; compare; check. */
static int ecase_check(tctx *t, const op_test *d, ecase *c) {
    void *got[MAXB], *rgot[MAXB];
    int i, bad = 0;
    char label[400];
    for (i = 0; i < c->nb; i++) {
        ebuf *b = &c->b[i];
        if (!is_output(b)) continue;
        b->want = h_dupb(t, b->init, b->n * eb_esz(b));
        b->tol = h_doubles(t, b->n ? b->n : 1);
    }
    d->ref(c);
    TRY(ecase_exec(t, t->be, c, got));
    if (t->ref) {
        TRY(ecase_exec(t, t->ref, c, rgot));
        for (i = 0; i < c->nb; i++) {
            ebuf *b = &c->b[i];
            size_t k;
            if (!is_output(b)) continue;
            memcpy(b->want, rgot[i], b->n * eb_esz(b));
            for (k = 0; k < b->n; k++) b->tol[k] *= 2.0;
        }
    }
    snprintf(label, sizeof label, "%s on %s", c->what, t->be->iface->name);
    for (i = 0; i < c->nb; i++)
        if (is_output(&c->b[i])) bad |= cmp_buf(label, &c->b[i], got[i]);
    if (bad) {
        QPRINTF("  %s: output differs from the %s\n", label,
                t->ref ? "reference backend" : "naive reference");
        return NGT_FAIL;
    }
    if (d->check) {
        int r = d->check(c, got);
        if (r != NGT_PASS) {
            QPRINTF("  %s: invariant violated\n", label);
            return r;
        }
    }
    return NGT_PASS;
}

/* Shapes larger than this many elements only run without NG_TEST_SMALL. */
#define SMALL_LIMIT 5000

/* Every shape x mode x variant of one op. A failing case does not stop the op: the first two,
 * and the first of each mode, are shown in full, later ones one line each (up to 20), then how
 * many failed. */
static int op_elementwise(tctx *t, const op_test *d) {
    int s, mode, v, nfail = 0, shown[2] = {0, 0};
    for (s = 0; s < d->nshapes; s++) {
        if (t->small && (long)d->shapes[s].m * (d->shapes[s].n ? d->shapes[s].n : 1) > SMALL_LIMIT)
            continue;
        for (mode = 0; mode < 2; mode++) {
            if (!(d->flags & (mode ? OPF_IN : OPF_OUT))) continue;
            for (v = 0; v < d->nvariants; v++) {
                int mark = t->nmem, r;
                ecase c;
                memset(&c, 0, sizeof c);
                c.a.op = d->op;
                if (!d->gen(t, &d->shapes[s], mode, v, &c)) continue;
                quiet = nfail >= 2 && shown[mode];
                r = ecase_check(t, d, &c);
                t->ncases++;
                t->ninplace += mode;
                if (r != NGT_PASS) {
                    if (quiet && ++nfail <= 22) printf("  also fails: %s\n", c.what);
                    if (!quiet) nfail++;
                    shown[mode] = 1;
                }
                quiet = 0;
                t_release(t, mark);
            }
        }
    }
    if (nfail) {
        printf("  %s: %d of %d cases failed\n", d->name, nfail, t->ncases);
        return NGT_FAIL;
    }
    return NGT_PASS;
}

/* ---- shapes -------------------------------------------------------------------------------- */

/* Vectors: empty, every n in 1..9, a few residues mod 4 across a block boundary (1024..1027:
 * 256 and 257 Philox groups of 4 for blocks of 256 threads), and 65540..65543, n = 0..3 mod 4
 * above every OpenMP threshold of the CPU backend (dropped by NG_TEST_SMALL). */
static const tshape vec_shapes[] = {
    {0, 1},    {1, 1},    {2, 1},    {3, 1},    {4, 1},    {5, 1},     {6, 1},
    {7, 1},    {8, 1},    {9, 1},    {1024, 1}, {1025, 1}, {1026, 1},  {1027, 1},
    {65540, 1}, {65541, 1}, {65542, 1}, {65543, 1}};

/* Matrices: rows 1..8 x cols 1..4 (every residue mod 4 of both, so the flat index r + rows c
 * starts Philox groups at every offset within a column), empty ones, larger odd shapes, and one
 * above the OpenMP thresholds. */
#define ROWS8(c) {1, c}, {2, c}, {3, c}, {4, c}, {5, c}, {6, c}, {7, c}, {8, c}
static const tshape mat_shapes[] = {ROWS8(1), ROWS8(2), ROWS8(3), ROWS8(4),
                                    {0, 3},   {3, 0},   {33, 9},  {64, 65}, {129, 131}, {300, 230}};

/* Square: n = 0..9, around 32 and 64, and one above the OpenMP threshold (n n > 65536). */
static const tshape sq_shapes[] = {{0, 0},   {1, 1},   {2, 2},   {3, 3},   {4, 4},
                                   {5, 5},   {6, 6},   {7, 7},   {8, 8},   {9, 9},
                                   {31, 31}, {32, 32}, {33, 33}, {64, 64}, {65, 65}, {300, 300}};

/* softplus_sum reduces each column in blocks of 256 threads: rows around 256 and 512, besides the
 * small residues; empty rows (y = gamma y) and empty columns. */
static const tshape softplus_shapes[] = {
    {0, 5},  {1, 1}, {2, 3},  {3, 2},    {4, 4},    {5, 1},    {6, 7},    {7, 5},   {8, 8},
    {9, 3},  {3, 0}, {33, 9}, {255, 4},  {256, 3},  {257, 2},  {513, 5},  {100, 300}};

/* binary_states: nbits 1..8 x count 1..4, wider states up to the 62-bit limit, a long run. */
static const tshape binary_shapes[] = {ROWS8(1), ROWS8(2), ROWS8(3), ROWS8(4), {3, 0},
                                       {31, 5},  {32, 6},  {33, 7},  {62, 9},  {10, 1000}};

#define NSHAPES(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- shared naive pieces ------------------------------------------------------------------- */

/* cuRAND's uniform map written out: word * 2^-32 + 2^-33 in float arithmetic, the word taken from
 * the per-element Philox stream ng_philox_word (element i is word i & 3 of block i >> 2: no
 * grouping, unlike the backends' ng_uniform4_at walk). Both constants are powers of two, so this
 * is the float nearest to w 2^-32 + 2^-33 after w is rounded to float: the same bits on every
 * backend, hence exact comparisons for every Philox-driven op. */
static float naive_uniform(uint64_t key, uint64_t step, uint64_t i) {
    return (float)ng_philox_word(key, step, i) * 0x1p-32f + 0x1p-33f;
}

static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }
static double softplus_d(double x) { return x > 0.0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

static const char *mode_name(int inplace) { return inplace ? "in-place" : "out-of-place"; }

/* ---- fill: out(n) = value ------------------------------------------------------------------
 * Exact: a store of the value's bits (-0 and Inf included). */
static const float fill_values[] = {-3.25f, -0.0f, INFINITY, 1e-30f};

static int gen_fill(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    (void)inplace;
    c->a.fill.n = (size_t)s->m;
    c->a.fill.value = fill_values[v];
    eb_vec(t, c, "out", R_OUT, 0, s->m, AOFF(fill.out));
    what(c, "fill n=%d value=%g", s->m, (double)fill_values[v]);
    return 1;
}
static void ref_fill(ecase *c) {
    size_t i;
    for (i = 0; i < c->a.fill.n; i++) WF(c, 0)[i] = c->a.fill.value;
}

/* ---- fill_uniform: out(n) = uniform (0, 1] of Philox (key, step, i) --------------------------
 * Exact (naive_uniform); the check also asserts the range. */
static const uint64_t rng_steps[] = {0, 0x300000002ull, ~0ull};

static int gen_fill_uniform(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    (void)inplace;
    c->a.fill_uniform.n = (size_t)s->m;
    c->a.fill_uniform.key = v == 2 ? ~0ull : ng_rng_key(5 + (uint64_t)v, 6);
    c->a.fill_uniform.step = rng_steps[v];
    eb_vec(t, c, "out", R_OUT, 0, s->m, AOFF(fill_uniform.out));
    what(c, "fill_uniform n=%d key=%#llx step=%#llx", s->m,
         (unsigned long long)c->a.fill_uniform.key, (unsigned long long)c->a.fill_uniform.step);
    return 1;
}
static void ref_fill_uniform(ecase *c) {
    size_t i;
    for (i = 0; i < c->a.fill_uniform.n; i++)
        WF(c, 0)[i] = naive_uniform(c->a.fill_uniform.key, c->a.fill_uniform.step, i);
}
/* Beyond bit equality with the reference (which shares the Philox function): the values lie in
 * (0, 1], and for n >= 1000 their mean is within 5 sigma = 5 sqrt(1/12 / n) of 1/2. */
static int check_fill_uniform(const ecase *c, void *const got[]) {
    const float *o = (const float *)got[0];
    const size_t n = c->a.fill_uniform.n;
    double sum = 0.0;
    size_t i;
    for (i = 0; i < n; i++) {
        QCHECK(o[i] > 0.0f && o[i] <= 1.0f, "%s: out[%zu] = %.9g outside (0, 1]", c->what, i,
               (double)o[i]);
        sum += o[i];
    }
    if (n >= 1000)
        QCHECK(fabs(sum / n - 0.5) <= 5.0 * sqrt(1.0 / 12.0 / n), "%s: mean %.6f, want 0.5 +- %.2g",
               c->what, sum / n, 5.0 * sqrt(1.0 / 12.0 / n));
    return NGT_PASS;
}

/* ---- bernoulli: out(n) = [u(key, step, first + i) <= p[i]], p and out may alias --------------
 * Exact: the same uniform bits and one comparison. Variants 1 and 3 draw from an offset first that is
 * not a multiple of 4 (a data-parallel shard of a larger array: its groups of four straddle). p[1] = 0 (never drawn: u > 0) and p[2] = 1
 * (always: u <= 1). In place, an element the op skips still holds its probability. Variants 2 and
 * 3 count the step on the device (buffer 2 "step_dev", {base, 0} in a float64 buffer, as
 * gibbs_sample's): they draw at base + step and must leave {base + advance, 0}, bit for bit, empty
 * arrays included (variant 2: base 41, advance 1; variant 3: a base above 2^32, advance 0). */
static const uint64_t dev_step_base[2] = {41, 0x2000000005ull}, dev_step_advance[2] = {1, 0};

/* A step_dev buffer {base, 0} for variant k (0, 1) of dev_step_base, and the advance */
static void eb_step_dev(tctx *t, ecase *c, int k, size_t off, uint64_t *advance) {
    const uint64_t w[2] = {dev_step_base[k], 0};
    int sd = eb_vec(t, c, "step_dev", R_INOUT, 1, 2, off);
    memcpy(c->b[sd].init, w, sizeof w);
    *advance = dev_step_advance[k];
}
/* The base of buffer b (a step_dev; 0 when the case has none), and its expected words after the op */
static uint64_t step_dev_ref(ecase *c, int b, uint64_t advance) {
    uint64_t w[2];
    if (c->nb <= b || c->b[b].is_null) return 0;
    memcpy(w, c->b[b].init, sizeof w);
    w[0] += advance;
    memcpy(c->b[b].want, w, sizeof w);
    return w[0] - advance;
}

static int gen_bernoulli(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    int p, n = s->m;
    c->a.bernoulli.n = (size_t)n;
    c->a.bernoulli.key = ng_rng_key(9 + (uint64_t)v, 2);
    c->a.bernoulli.step = v ? 0x700000001ull : 3;
    c->a.bernoulli.first = v % 2 ? 0x100000007ull : 0;
    p = eb_vec(t, c, "p", R_IN, 0, n, AOFF(bernoulli.p));
    eb_rand(c, p, 81 + (uint64_t)n + (uint64_t)v, 0.0, 1.0);
    if (n > 1) IF(c, p)[1] = 0.0f;
    if (n > 2) IF(c, p)[2] = 1.0f;
    if (inplace) eb_alias(t, c, "out (= p)", R_INOUT, p, AOFF(bernoulli.out));
    else eb_vec(t, c, "out", R_OUT, 0, n, AOFF(bernoulli.out));
    if (v >= 2) eb_step_dev(t, c, v - 2, AOFF(bernoulli.step_dev), &c->a.bernoulli.advance);
    what(c, "bernoulli n=%d %s step=%#llx first=%#llx%s", n, mode_name(inplace),
         (unsigned long long)c->a.bernoulli.step, (unsigned long long)c->a.bernoulli.first,
         v >= 2 ? " (step counted on the device)" : "");
    return 1;
}
static void ref_bernoulli(ecase *c) {
    const uint64_t step = c->a.bernoulli.step + step_dev_ref(c, 2, c->a.bernoulli.advance);
    size_t i;
    for (i = 0; i < c->a.bernoulli.n; i++)
        WF(c, 1)[i] = naive_uniform(c->a.bernoulli.key, step, c->a.bernoulli.first + i) <= IF(c, 0)[i] ? 1.0f : 0.0f;
}

/* ---- axpby: y(n) = alpha x + beta y, x and y may alias ----------------------------------------
 * Naive in double. The backend rounds alpha x, beta y and the sum (or fuses one product on a GPU):
 * <= u |alpha x| + u |beta y| + u |result|, plus u |result| for rounding the reference, and
 * |result| <= |alpha x| + |beta y|: tol = 2 FLT_EPSILON (|alpha x| + |beta y|) per element
 * (u = FLT_EPSILON / 2). beta = 0 must ignore y (NaN there, out of place). */
static const float axpby_ab[][2] = {{2.0f, 0.0f}, {0.5f, -1.25f}, {0.0f, 1.0f}, {-1.0f, 1.0f}};

static int gen_axpby(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    int x, y, n = s->m;
    c->a.axpby.n = (size_t)n;
    c->a.axpby.alpha = axpby_ab[v][0];
    c->a.axpby.beta = axpby_ab[v][1];
    x = eb_vec(t, c, "x", R_IN, 0, n, AOFF(axpby.x));
    eb_rand(c, x, 41 + (uint64_t)n, -2.0, 2.0);
    if (inplace) y = eb_alias(t, c, "y (= x)", R_INOUT, x, AOFF(axpby.y));
    else {
        y = eb_vec(t, c, "y", R_INOUT, 0, n, AOFF(axpby.y));
        if (c->a.axpby.beta == 0.0f) eb_fill(c, y, NAN);
        else eb_rand(c, y, 42 + (uint64_t)n, -2.0, 2.0);
    }
    what(c, "axpby n=%d %s alpha=%g beta=%g%s", n, mode_name(inplace), (double)c->a.axpby.alpha,
         (double)c->a.axpby.beta, !inplace && c->a.axpby.beta == 0.0f ? " (NaN in y)" : "");
    return 1;
}
static void ref_axpby(ecase *c) {
    const double al = c->a.axpby.alpha, be = c->a.axpby.beta;
    size_t i;
    for (i = 0; i < c->a.axpby.n; i++) {
        double ax = al * IF(c, 0)[i], by = be == 0.0 ? 0.0 : be * IF(c, 1)[i];
        WF(c, 1)[i] = (float)(ax + by);
        TL(c, 1)[i] = 2.0 * EPS_F * (fabs(ax) + fabs(by));
    }
}

/* ---- axpby_dev: y = ca ra x + cb rb y, ra = a_num / a_den, rb = b_num / b_den on the device -----
 * NULL numerators/denominators count as 1; a zero denominator makes the ratio 0; cb = 0 ignores y. Naive in double with the exact
 * ratios. The backend rounds each ratio, ca ra and cb rb, both products and the sum: <= 3u per
 * term magnitude + u |result|, plus u for the reference, i.e. <= 5u (|ca ra x| + |cb rb y|):
 * tol = 3 FLT_EPSILON (|ca ra x| + |cb rb y|). x and y may alias. */
#define AXD_ZERO -7777.0f /* stands for a scalar of value 0 (a converged solver's 0 / 0) */
static const struct {
    float ca, an, ad, cb, bn, bd; /* 0 in an/ad/bn/bd: NULL */
} axd_v[] = {{1.0f, 3.0f, 4.0f, 1.0f, -2.0f, 5.0f},   /* every scalar given */
             {-0.5f, 0.0f, 3.0f, 0.0f, 5.0f, 7.0f},  /* cb = 0 ignores y (and b) */
             {2.0f, 0.0f, 0.0f, -1.0f, 0.0f, 0.0f},  /* every scalar NULL */
             {1.0f, 0.7f, 0.0f, 1.5f, 0.0f, 1.3f},   /* numerator only / denominator only */
             {1.0f, 0.7f, 1.3f, 1.0f, 0.0f, 0.0f},   /* x += (rz / pAp) p */
             {1.0f, 0.0f, AXD_ZERO, 1.0f, AXD_ZERO, AXD_ZERO}}; /* zero denominators: ratio 0 */

static int eb_scalar(tctx *t, ecase *c, const char *name, float v, size_t off) {
    int i;
    if (v == 0.0f) return eb_null(c, name);
    i = eb_vec(t, c, name, R_IN, 0, 1, off);
    IF(c, i)[0] = v == AXD_ZERO ? 0.0f : v;
    return i;
}

static int gen_axpby_dev(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    int x, y, n = s->m;
    c->a.axpby_dev.n = (size_t)n;
    c->a.axpby_dev.ca = axd_v[v].ca;
    c->a.axpby_dev.cb = axd_v[v].cb;
    x = eb_vec(t, c, "x", R_IN, 0, n, AOFF(axpby_dev.x));
    eb_rand(c, x, 43 + (uint64_t)n, -2.0, 2.0);
    if (inplace) y = eb_alias(t, c, "y (= x)", R_INOUT, x, AOFF(axpby_dev.y));
    else {
        y = eb_vec(t, c, "y", R_INOUT, 0, n, AOFF(axpby_dev.y));
        if (axd_v[v].cb == 0.0f) eb_fill(c, y, NAN);
        else eb_rand(c, y, 44 + (uint64_t)n, -2.0, 2.0);
    }
    eb_scalar(t, c, "a_num", axd_v[v].an, AOFF(axpby_dev.a_num));
    eb_scalar(t, c, "a_den", axd_v[v].ad, AOFF(axpby_dev.a_den));
    eb_scalar(t, c, "b_num", axd_v[v].bn, AOFF(axpby_dev.b_num));
    eb_scalar(t, c, "b_den", axd_v[v].bd, AOFF(axpby_dev.b_den));
    what(c, "axpby_dev n=%d %s ca=%g a=%g/%g cb=%g b=%g/%g (0 = NULL)", n, mode_name(inplace),
         (double)axd_v[v].ca, (double)axd_v[v].an, (double)axd_v[v].ad, (double)axd_v[v].cb,
         (double)axd_v[v].bn, (double)axd_v[v].bd);
    return 1;
}
static double eb_scalar_val(const ecase *c, int i) {
    return c->b[i].is_null ? 1.0 : (double)((const float *)c->b[i].init)[0];
}
static double axd_ratio(double num, double den) { return den == 0.0 ? 0.0 : num / den; }
static void ref_axpby_dev(ecase *c) {
    const double ra = axd_ratio(eb_scalar_val(c, 2), eb_scalar_val(c, 3));
    const double rb = axd_ratio(eb_scalar_val(c, 4), eb_scalar_val(c, 5));
    const double ca = c->a.axpby_dev.ca, cb = c->a.axpby_dev.cb;
    size_t i;
    for (i = 0; i < c->a.axpby_dev.n; i++) {
        double ax = ca * ra * IF(c, 0)[i], by = cb == 0.0 ? 0.0 : cb * rb * IF(c, 1)[i];
        WF(c, 1)[i] = (float)(ax + by);
        TL(c, 1)[i] = 3.0 * EPS_F * (fabs(ax) + fabs(by));
    }
}

/* ---- convert: y(n) = x(n) converted between float32 and float64 -------------------------------
 * Exact: widening is exact, narrowing rounds to nearest even on every backend (ties, overflow to
 * Inf, subnormal results, -0 included). Same-type conversion is a copy and may run in place (then
 * NaN is included; between sizes NaN payloads are not compared). Variants: f32->f64, f64->f32,
 * f32->f32, f64->f64. */
static const ng_dtype conv_from[] = {NG_F32, NG_F64, NG_F32, NG_F64};
static const ng_dtype conv_to[] = {NG_F64, NG_F32, NG_F32, NG_F64};

static int gen_convert(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    int x, n = s->m, i;
    ng_dtype f = conv_from[v], to = conv_to[v];
    if (inplace && f != to) return 0;
    c->a.convert.n = (size_t)n;
    c->a.convert.from = f;
    c->a.convert.to = to;
    x = eb_vec(t, c, "x", R_IN, f == NG_F64, n, AOFF(convert.x));
    for (i = 0; i < n; i++)
        eb_put(&c->b[x], c->b[x].init, (size_t)i,
               rnd(131 + (uint64_t)v, (uint64_t)i, -1.0, 1.0) * pow(10.0, (double)(i % 60) - 30.0));
    if (f == NG_F32) {
        static const float sp[] = {-0.0f, INFINITY, -INFINITY, 1e-40f, 1.0f / 3.0f, FLT_MAX, NAN};
        for (i = 0; i < n && i < 7; i++)
            if (i < 6 || f == to) IF(c, x)[i] = sp[i];
    } else {
        const double sp[] = {1.0 + 0x1p-24,                 /* tie: rounds to even (1.0f) */
                             1.0 + 0x1p-24 + 0x1p-40,       /* just above the tie: up */
                             -(1.0 + 3.0 * 0x1p-24),        /* tie: to even, away from zero */
                             1e39,                          /* overflow: Inf */
                             -1e-50,                        /* underflow: -0 */
                             1e-40,                         /* float subnormal */
                             3.4028235677973366e38,         /* FLT_MAX + half ulp: tie to Inf */
                             NAN};
        for (i = 0; i < n && i < 8; i++)
            if (i < 7 || f == to) ID(c, x)[i] = sp[i];
    }
    if (inplace) eb_alias(t, c, "y (= x)", R_INOUT, x, AOFF(convert.y));
    else eb_vec(t, c, "y", R_OUT, to == NG_F64, n, AOFF(convert.y));
    what(c, "convert n=%d %s %s -> %s", n, mode_name(inplace), ng_dtype_name(f), ng_dtype_name(to));
    return 1;
}
static void ref_convert(ecase *c) {
    size_t i;
    ebuf *y = &c->b[1];
    for (i = 0; i < c->a.convert.n; i++) {
        if (c->a.convert.from == c->a.convert.to) /* a copy: the bits */
            memcpy((char *)y->want + i * eb_esz(y), (char *)c->b[0].init + i * eb_esz(y),
                   eb_esz(y));
        else if (c->a.convert.from == NG_F32)
            ((double *)y->want)[i] = (double)IF(c, 0)[i];
        else
            ((float *)y->want)[i] = (float)ID(c, 0)[i];
    }
}

/* ---- gibbs_sample -----------------------------------------------------------------------------
 * x = beta (pre + bias) + (1 - beta) base, prob = sigmoid(x), sample = [u(key, step, r + rows c)
 * <= prob]; bias, base, prob or sample may be NULL; pre may alias prob or sample (same ld).
 * Buffers: 0 pre, 1 bias, 2 base, 3 prob, 4 sample.
 * prob: naive sigmoid in double. The backend computes x in float (pre + bias, 1 - beta, the
 * product with base, one fma): |x_f - x| <= 3u M with M = |beta (pre + bias)| + |(1 - beta) base|;
 * the sigmoid's slope is <= 1/4, and the float sigmoid (expf within 2 ulp on a GPU, 1 + e, one
 * division) adds <= 4u: tol = FLT_EPSILON (0.5 M + 2.5) (the .5 for rounding the reference).
 * sample: [u <= prob_double], exact except where |u - prob| <= 2 tol (either draw is then right;
 * tol 1 there, and the check requires 0/1 values). The check also requires each sample to be
 * exactly [u <= the backend's own prob] whenever prob is written.
 * Variants (rows of gibbs_v): out of place, every combination of NULL bias / base / prob /
 * sample that the RBM and AIS use, tempered (beta 0.3, 0) and not, one packed (ld = rows); in
 * place, prob = pre or sample = pre, with and without the other output. Variant 2 draws with key
 * and step all ones; the others with ordinary keys and steps above 2^32. Odd variants draw elements
 * first + r + rows c with first = 5 (a data-parallel shard's columns; groups of four straddle).
 * Variants 5 and 6 (out of place) count the step on the device (buffer 5 "step_dev", two 64-bit
 * words {base, 0} in a float64 buffer): they draw at base + step and must leave
 * {base + advance, 0}, bit for bit (variant 5 also with first = 5; variant 6: advance 0, and a base
 * above 2^32). */
static const struct {
    int bias, base, prob, sample, alias; /* alias: 0 none, 1 prob = pre, 2 sample = pre */
    float beta;
} gibbs_v[2][7] = {
    /* out of place */
    {{1, 0, 1, 1, 0, 1.0f},
     {1, 1, 1, 1, 0, 0.3f},
     {1, 1, 0, 1, 0, 0.3f},
     {1, 0, 1, 0, 0, 1.0f},
     {0, 1, 1, 1, 0, 0.0f},
     {1, 0, 1, 1, 0, 1.0f},
     {1, 0, 0, 1, 0, 1.0f}},
    /* in place */
    {{1, 1, 1, 1, 1, 0.3f},
     {1, 0, 1, 1, 2, 1.0f},
     {1, 0, 0, 1, 2, 1.0f},
     {0, 1, 1, 0, 1, 0.7f},
     {0, 0, 0, 0, -1, 0.0f},
     {0, 0, 0, 0, -1, 0.0f},
     {0, 0, 0, 0, -1, 0.0f}}};
static const uint64_t gibbs_dev_base[2] = {41, 0x2000000005ull}, gibbs_dev_advance[2] = {5, 0};

/* The step the op draws at: step, plus the device count's base when it has one. */
static uint64_t gibbs_step_of(const ecase *c) {
    uint64_t base = 0;
    if (c->nb > 5 && !c->b[5].is_null) memcpy(&base, c->b[5].init, sizeof base);
    return c->a.gibbs_sample.step + base;
}

static int gen_gibbs(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    const int rows = s->m, cols = s->n;
    int pre, bias, base, ldp, ldq, lds;
    if (gibbs_v[inplace][v].alias < 0) return 0;
    ldp = max_i(1, rows + 1 + v % 2);
    ldq = max_i(1, rows + 3);
    lds = max_i(1, rows + 2);
    if (!inplace && v == 4) ldp = ldq = lds = max_i(1, rows); /* packed */
    if (gibbs_v[inplace][v].alias == 1) ldq = ldp;
    if (gibbs_v[inplace][v].alias == 2) lds = ldp;
    c->a.gibbs_sample.rows = rows;
    c->a.gibbs_sample.cols = cols;
    c->a.gibbs_sample.ldp = ldp;
    c->a.gibbs_sample.ldq = ldq;
    c->a.gibbs_sample.lds = lds;
    c->a.gibbs_sample.beta = gibbs_v[inplace][v].beta;
    c->a.gibbs_sample.key = v == 2 ? ~0ull : ng_rng_key(2015 + (uint64_t)v, 3); /* all ones */
    c->a.gibbs_sample.step = v == 2 ? ~0ull : v % 2 ? 7 : 0x100000003ull;
    c->a.gibbs_sample.first = v % 2 ? 5 : 0;
    pre = eb_add(t, c, "pre", R_IN, 0, rows, cols, ldp, AOFF(gibbs_sample.pre));
    eb_rand(c, pre, 71 + (uint64_t)rows, -4.0, 4.0);
    bias = gibbs_v[inplace][v].bias ? eb_vec(t, c, "bias", R_IN, 0, rows, AOFF(gibbs_sample.bias))
                                     : eb_null(c, "bias");
    if (!c->b[bias].is_null) eb_rand(c, bias, 72, -1.0, 1.0);
    base = gibbs_v[inplace][v].base ? eb_vec(t, c, "base", R_IN, 0, rows, AOFF(gibbs_sample.base))
                                     : eb_null(c, "base");
    if (!c->b[base].is_null) eb_rand(c, base, 73, -2.0, 2.0);
    if (!gibbs_v[inplace][v].prob) eb_null(c, "prob");
    else if (gibbs_v[inplace][v].alias == 1)
        eb_alias(t, c, "prob (= pre)", R_INOUT, pre, AOFF(gibbs_sample.prob));
    else eb_add(t, c, "prob", R_OUT, 0, rows, cols, ldq, AOFF(gibbs_sample.prob));
    if (!gibbs_v[inplace][v].sample) eb_null(c, "sample");
    else if (gibbs_v[inplace][v].alias == 2)
        eb_alias(t, c, "sample (= pre)", R_INOUT, pre, AOFF(gibbs_sample.sample));
    else eb_add(t, c, "sample", R_OUT, 0, rows, cols, lds, AOFF(gibbs_sample.sample));
    if (v >= 5) {
        const uint64_t w[2] = {gibbs_dev_base[v - 5], 0};
        int sd = eb_vec(t, c, "step_dev", R_INOUT, 1, 2, AOFF(gibbs_sample.step_dev));
        memcpy(c->b[sd].init, w, sizeof w);
        c->a.gibbs_sample.advance = gibbs_dev_advance[v - 5];
    } else
        eb_null(c, "step_dev");
    {
        const int al = gibbs_v[inplace][v].alias;
        const char *pw = !gibbs_v[inplace][v].prob ? "NULL" : al == 1 ? "pre" : "own";
        const char *sw = !gibbs_v[inplace][v].sample ? "NULL" : al == 2 ? "pre" : "own";
        what(c, "gibbs_sample rows=%d cols=%d %s ldp=%d ldq=%d lds=%d bias=%d base=%d prob=%s "
                "sample=%s beta=%g first=%llu%s",
             rows, cols, mode_name(inplace), ldp, ldq, lds, gibbs_v[inplace][v].bias,
             gibbs_v[inplace][v].base, pw, sw, (double)gibbs_v[inplace][v].beta,
             (unsigned long long)c->a.gibbs_sample.first, v >= 5 ? " (step counted on the device)" : "");
    }
    return 1;
}

/* Naive probability of unit (r, col) and its tolerance. */
static double gibbs_prob(const ecase *c, int r, int col, double *tol) {
    const double beta = c->a.gibbs_sample.beta;
    double pv = IF(c, 0)[AT(c, 0, r, col)];
    double b = c->b[1].is_null ? 0.0 : (double)((float *)c->b[1].init)[r];
    double b0 = c->b[2].is_null ? 0.0 : (double)((float *)c->b[2].init)[r];
    double m = fabs(beta * (pv + b)) + fabs((1.0 - beta) * b0);
    *tol = EPS_F * (0.5 * m + 2.5);
    return sigmoid_d(beta * (pv + b) + (1.0 - beta) * b0);
}

static void ref_gibbs(ecase *c) {
    const int rows = c->a.gibbs_sample.rows, cols = c->a.gibbs_sample.cols;
    const uint64_t step = gibbs_step_of(c);
    int r, col;
    if (!c->b[5].is_null) {
        uint64_t w[2];
        memcpy(w, c->b[5].init, sizeof w);
        w[0] += c->a.gibbs_sample.advance;
        memcpy(c->b[5].want, w, sizeof w);
    }
    for (col = 0; col < cols; col++)
        for (r = 0; r < rows; r++) {
            double tp, p = gibbs_prob(c, r, col, &tp);
            float u = naive_uniform(c->a.gibbs_sample.key, step,
                                    c->a.gibbs_sample.first + (uint64_t)r + (uint64_t)rows * (uint64_t)col);
            if (!c->b[3].is_null) {
                WF(c, 3)[AT(c, 3, r, col)] = (float)p;
                TL(c, 3)[AT(c, 3, r, col)] = tp;
            }
            if (!c->b[4].is_null) {
                WF(c, 4)[AT(c, 4, r, col)] = (double)u <= p ? 1.0f : 0.0f;
                TL(c, 4)[AT(c, 4, r, col)] = fabs((double)u - p) <= 2.0 * tp ? 1.0 : 0.0;
            }
        }
}
/* Samples are 0 or 1 and agree exactly with the op's own probabilities; with both written and at
 * least 1000 units, the mean of the samples estimates the mean of the probabilities: independent
 * Bernoulli draws have standard error sqrt(sum p (1 - p)) / N; accept 5 sigma. */
static int check_gibbs(const ecase *c, void *const got[]) {
    const int rows = c->a.gibbs_sample.rows, cols = c->a.gibbs_sample.cols;
    double sp = 0.0, ss = 0.0, var = 0.0;
    int r, col;
    if (c->b[4].is_null) return NGT_PASS;
    for (col = 0; col < cols; col++)
        for (r = 0; r < rows; r++) {
            float s = ((const float *)got[4])[AT(c, 4, r, col)];
            float u = naive_uniform(c->a.gibbs_sample.key, gibbs_step_of(c),
                                    c->a.gibbs_sample.first + (uint64_t)r + (uint64_t)rows * (uint64_t)col);
            QCHECK(s == 0.0f || s == 1.0f, "%s: sample[%d,%d] = %.9g is not 0 or 1", c->what, r,
                   col, (double)s);
            if (!c->b[3].is_null) {
                float p = ((const float *)got[3])[AT(c, 3, r, col)];
                QCHECK(s == (u <= p ? 1.0f : 0.0f),
                       "%s: sample[%d,%d] = %g but u = %.9g and the op's own prob = %.9g", c->what,
                       r, col, (double)s, (double)u, (double)p);
                sp += p;
                ss += s;
                var += (double)p * (1.0 - p);
            }
        }
    if (!c->b[3].is_null && (long)rows * cols >= 1000) {
        const double n = (double)rows * cols;
        QCHECK(fabs(ss / n - sp / n) <= 5.0 * sqrt(var) / n,
               "%s: mean of samples %.6f vs mean of probabilities %.6f (5 sigma %.2g)", c->what,
               ss / n, sp / n, 5.0 * sqrt(var) / n);
    }
    return NGT_PASS;
}

/* ---- softplus_sum: y[c] = alpha sum_r softplus(beta (pre[r,c] + bias[r])) + gamma y[c] ----------
 * Buffers: 0 pre, 1 bias, 2 y. Naive in double. Per term the backend's float x = beta (pre + bias)
 * has relative error <= 2u, which moves softplus by <= 2u |x| sigmoid(x) <= 2u (softplus(x) + 1/e)
 * (x sigmoid(x) <= softplus(x) for x >= 0, |x| e^x <= 1/e for x < 0); the float softplus adds
 * <= 2u softplus + 2u (expf's relative error through log1p). The sums are in double on every
 * backend (negligible); the final alpha s, gamma y and their sum round once each, and the
 * reference once more. So tol = FLT_EPSILON (|alpha| (3 S + 1.5 rows) + 2 |gamma y|), S the exact
 * sum. gamma = 0 must ignore y (NaN there). Large |x| (up to 1e30) must not overflow. */
static const struct {
    int bias, special;
    float beta, alpha, gamma;
} sp_v[] = {{1, 0, 1.0f, 1.0f, 0.0f},
            {0, 0, 0.3f, -0.5f, 1.5f},
            {1, 0, -1.0f, 0.25f, 1.0f},
            {0, 1, 1.0f, 1.0f, 0.0f}};
static const float sp_big[] = {30.0f, -30.0f, 88.8f, -88.8f, 100.0f, -100.0f,
                               1e4f,  -1e4f,  1e30f, -1e30f, 20.5f,  -20.5f};

static int gen_softplus(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    const int rows = s->m, cols = s->n, ldp = max_i(1, rows + 1 + v % 2);
    int pre, y, r, col;
    (void)inplace;
    c->a.softplus_sum.rows = rows;
    c->a.softplus_sum.cols = cols;
    c->a.softplus_sum.ldp = ldp;
    c->a.softplus_sum.beta = sp_v[v].beta;
    c->a.softplus_sum.alpha = sp_v[v].alpha;
    c->a.softplus_sum.gamma = sp_v[v].gamma;
    pre = eb_add(t, c, "pre", R_IN, 0, rows, cols, ldp, AOFF(softplus_sum.pre));
    if (sp_v[v].special) {
        float *P = IF(c, pre);
        for (col = 0; col < cols; col++)
            for (r = 0; r < rows; r++)
                P[AT(c, pre, r, col)] = sp_big[(r + 5 * col) % 12] * (col % 2 ? 0.5f : 1.0f);
    } else eb_rand(c, pre, 91 + (uint64_t)rows, -6.0, 6.0);
    if (sp_v[v].bias)
        eb_rand(c, eb_vec(t, c, "bias", R_IN, 0, rows, AOFF(softplus_sum.bias)), 92, -1.0, 1.0);
    else eb_null(c, "bias");
    y = eb_vec(t, c, "y", R_INOUT, 0, cols, AOFF(softplus_sum.y));
    if (sp_v[v].gamma == 0.0f) eb_fill(c, y, NAN);
    else eb_rand(c, y, 93, -3.0, 3.0);
    what(c, "softplus_sum rows=%d cols=%d ldp=%d bias=%d beta=%g alpha=%g gamma=%g%s", rows, cols,
         ldp, sp_v[v].bias, (double)sp_v[v].beta, (double)sp_v[v].alpha, (double)sp_v[v].gamma,
         sp_v[v].special ? " (|x| up to 1e30)" : sp_v[v].gamma == 0.0f ? " (NaN in y)" : "");
    return 1;
}
static void ref_softplus(ecase *c) {
    const int rows = c->a.softplus_sum.rows, cols = c->a.softplus_sum.cols;
    const double beta = c->a.softplus_sum.beta, al = c->a.softplus_sum.alpha,
                 ga = c->a.softplus_sum.gamma;
    int r, col;
    for (col = 0; col < cols; col++) {
        double sum = 0.0, gy = ga == 0.0 ? 0.0 : ga * IF(c, 2)[col];
        for (r = 0; r < rows; r++)
            sum += softplus_d(beta * ((double)IF(c, 0)[AT(c, 0, r, col)] +
                                      (c->b[1].is_null ? 0.0 : (double)IF(c, 1)[r])));
        WF(c, 2)[col] = (float)(al * sum + gy);
        TL(c, 2)[col] = EPS_F * (fabs(al) * (3.0 * sum + 1.5 * rows) + 2.0 * fabs(gy));
    }
}
static int check_softplus(const ecase *c, void *const got[]) {
    int col;
    for (col = 0; col < c->a.softplus_sum.cols; col++)
        QCHECK(isfinite(((const float *)got[2])[col]), "%s: y[%d] = %g is not finite", c->what, col,
               (double)((const float *)got[2])[col]);
    return NGT_PASS;
}

/* ---- binary_states: out[b, c] = bit b of (first + c) ------------------------------------------
 * Exact (0 or 1). nbits is limited to 1..62. */
static const uint64_t bin_first[] = {0, 0x3F0, (1ull << 40) - 3, (1ull << 62) - 5};

static int gen_binary(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    const int nbits = s->m, count = s->n, ldo = nbits + 1 + v % 3;
    (void)inplace;
    if (nbits < 1 || nbits > 62) return 0;
    c->a.binary_states.nbits = nbits;
    c->a.binary_states.first = bin_first[v];
    c->a.binary_states.count = count;
    c->a.binary_states.ldo = ldo;
    eb_add(t, c, "out", R_OUT, 0, nbits, count, ldo, AOFF(binary_states.out));
    what(c, "binary_states nbits=%d count=%d ldo=%d first=%#llx", nbits, count, ldo,
         (unsigned long long)bin_first[v]);
    return 1;
}
static void ref_binary(ecase *c) {
    int b, col;
    for (col = 0; col < c->a.binary_states.count; col++)
        for (b = 0; b < c->a.binary_states.nbits; b++)
            WF(c, 0)[AT(c, 0, b, col)] =
                (float)((c->a.binary_states.first + (uint64_t)col) >> b & 1u);
}

/* ---- symmetrize_lower: strict upper = transpose of strict lower, diagonal += shift ------------
 * In place by definition. The strict upper triangle starts as NaN (it must be overwritten), the
 * lower triangle and the padding rows must come back unchanged. Exact: copies, and one float add
 * per diagonal element, which the double reference rounded to float reproduces (53 >= 2 * 24 + 2,
 * so rounding the double sum to float is the correctly rounded float sum). Variants: shift 0.5 with
 * lda = n + 3, shift 0 with lda = n + 1, shift -1.25 packed (lda = n). */
static const struct {
    float shift;
    int pad;
} sym_v[] = {{0.5f, 3}, {0.0f, 1}, {-1.25f, 0}};

static int gen_symmetrize(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    const int n = s->m, lda = max_i(1, n + sym_v[v].pad);
    int A, r, col;
    (void)inplace;
    c->a.symmetrize_lower.n = n;
    c->a.symmetrize_lower.lda = lda;
    c->a.symmetrize_lower.shift = sym_v[v].shift;
    A = eb_add(t, c, "A", R_INOUT, 0, n, n, lda, AOFF(symmetrize_lower.A));
    eb_rand(c, A, 161 + (uint64_t)n, -1.0, 1.0);
    for (col = 0; col < n; col++)
        for (r = 0; r < col; r++) IF(c, A)[AT(c, A, r, col)] = NAN;
    what(c, "symmetrize_lower n=%d lda=%d %s shift=%g", n, lda, mode_name(1),
         (double)sym_v[v].shift);
    return 1;
}
static void ref_symmetrize(ecase *c) {
    const int n = c->a.symmetrize_lower.n;
    int r, col;
    for (col = 0; col < n; col++)
        for (r = 0; r <= col; r++)
            WF(c, 0)[AT(c, 0, r, col)] =
                r == col ? (float)((double)IF(c, 0)[AT(c, 0, r, r)] + c->a.symmetrize_lower.shift)
                         : IF(c, 0)[AT(c, 0, col, r)];
}

/* ---- fang_regress -----------------------------------------------------------------------------
 * Buffers: 0 Evh, 1 Ev2h, 2 Evh2, 3 Ev2h2 (nh, nv; ldm), 4 mu_v, 5 Ev2 (nv), 6 mu_h, 7 Eh2 (nh),
 * 8 beta_v, 9 beta_h, 10 sigma2 (nh, nv; ldo). The moments are those of a small sample (12 draws
 * of v and h), so the covariances are consistent; variant 1 uses binary units with a constant
 * visible unit (zero variance), a hidden unit equal to a visible one (collinear parents) and an
 * all-zero unit, exercising the single-parent and no-parent branches with lambda = 0.
 * Naive reference in double, written independently of ng_fang_regress_pair: it forms the 3x3
 * covariance (the header's formulas, with lambda on the diagonal), picks the parents by the same
 * rule (NG_FANG_SINGULAR), solves C_PP beta = C_Pm by Gaussian elimination with pivoting (the
 * backends use Cramer's rule), floors sigma2 = C_mm - C_mP beta at lambda (1e-30 for lambda = 0)
 * and zeroes non-finite betas. Both are double computations of the same quantity; for correlation
 * 1 - rho^2 > 1e-6 the scaled condition number is < 4e6, so they differ by < 4e6 * 2^-52 ~ 1e-9
 * relative to |beta_v| + |beta_h| (with margin: 1e-8), plus one float rounding
 * (FLT_EPSILON |want|).
 * sigma2 is a difference: tol = FLT_EPSILON |s2| + 1e-8 (|C_mm| + |beta_v C_vm| + |beta_h C_hm|).
 * The check asserts what the header promises: finite betas, sigma2 >= its floor, never NaN. */
#define FANG_S 12

static int gen_fang_regress(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    static const float lambdas[] = {1e-3f, 0.0f, 0.5f};
    const int nh = s->m, nv = s->n, ldm = nh + 2, ldo = nh + 1;
    double *vs = h_doubles(t, (size_t)FANG_S * (nv ? nv : 1)),
           *hs = h_doubles(t, (size_t)FANG_S * (nh ? nh : 1));
    int k, i, j, m[4], o;
    uint64_t seed = 181 + (uint64_t)v * 7 + (uint64_t)nh * 1000 + (uint64_t)nv;
    static const char *const mn[4] = {"Evh", "Ev2h", "Evh2", "Ev2h2"};
    static const size_t moff[4] = {AOFF(fang_regress.Evh), AOFF(fang_regress.Ev2h),
                                   AOFF(fang_regress.Evh2), AOFF(fang_regress.Ev2h2)};
    (void)inplace;
    c->a.fang_regress.nh = nh;
    c->a.fang_regress.nv = nv;
    c->a.fang_regress.ldm = ldm;
    c->a.fang_regress.ldo = ldo;
    c->a.fang_regress.lambda = lambdas[v];
    for (k = 0; k < FANG_S; k++) {
        for (i = 0; i < nv; i++)
            vs[k * nv + i] = v == 1
                                 ? (rnd(seed, (uint64_t)(k * nv + i), 0.0, 1.0) < 0.4 ? 1.0 : 0.0)
                                 : rnd(seed, (uint64_t)(k * nv + i), -1.0, 1.0) + 0.3;
        for (j = 0; j < nh; j++)
            hs[k * nh + j] =
                v == 1 ? (rnd(seed + 1, (uint64_t)(k * nh + j), 0.0, 1.0) < 0.6 ? 1.0 : 0.0)
                       : rnd(seed + 1, (uint64_t)(k * nh + j), -1.0, 1.0);
        if (v == 1) {
            vs[k * nv] = 1.0;                                  /* constant visible unit */
            if (nv > 2) vs[k * nv + nv - 1] = 0.0;             /* all-zero visible unit */
            if (nh > 1 && nv > 1) hs[k * nh + 1] = vs[k * nv + 1]; /* h_1 = v_1: collinear */
        }
    }
    for (k = 0; k < 4; k++) m[k] = eb_add(t, c, mn[k], R_IN, 0, nh, nv, ldm, moff[k]);
    o = eb_vec(t, c, "mu_v", R_IN, 0, nv, AOFF(fang_regress.mu_v));
    eb_vec(t, c, "Ev2", R_IN, 0, nv, AOFF(fang_regress.Ev2));
    eb_vec(t, c, "mu_h", R_IN, 0, nh, AOFF(fang_regress.mu_h));
    eb_vec(t, c, "Eh2", R_IN, 0, nh, AOFF(fang_regress.Eh2));
    for (i = 0; i < nv; i++) {
        double e1 = 0.0, e2 = 0.0;
        for (k = 0; k < FANG_S; k++) {
            e1 += vs[k * nv + i];
            e2 += vs[k * nv + i] * vs[k * nv + i];
        }
        IF(c, o)[i] = (float)(e1 / FANG_S);
        IF(c, o + 1)[i] = (float)(e2 / FANG_S);
        for (j = 0; j < nh; j++) {
            double a[4] = {0.0, 0.0, 0.0, 0.0};
            for (k = 0; k < FANG_S; k++) {
                double x = vs[k * nv + i], y = hs[k * nh + j];
                a[0] += x * y;
                a[1] += x * x * y;
                a[2] += x * y * y;
                a[3] += x * x * y * y;
            }
            for (k = 0; k < 4; k++) IF(c, m[k])[AT(c, m[k], j, i)] = (float)(a[k] / FANG_S);
        }
    }
    for (j = 0; j < nh; j++) {
        double e1 = 0.0, e2 = 0.0;
        for (k = 0; k < FANG_S; k++) {
            e1 += hs[k * nh + j];
            e2 += hs[k * nh + j] * hs[k * nh + j];
        }
        IF(c, o + 2)[j] = (float)(e1 / FANG_S);
        IF(c, o + 3)[j] = (float)(e2 / FANG_S);
    }
    eb_add(t, c, "beta_v", R_OUT, 0, nh, nv, ldo, AOFF(fang_regress.beta_v));
    eb_add(t, c, "beta_h", R_OUT, 0, nh, nv, ldo, AOFF(fang_regress.beta_h));
    eb_add(t, c, "sigma2", R_OUT, 0, nh, nv, ldo, AOFF(fang_regress.sigma2));
    what(c, "fang_regress nh=%d nv=%d ldm=%d ldo=%d lambda=%g %s", nh, nv, ldm, ldo,
         (double)lambdas[v], v == 1 ? "binary, degenerate units" : "continuous");
    return 1;
}

static void ref_fang_regress(ecase *c) {
    const int nh = c->a.fang_regress.nh, nv = c->a.fang_regress.nv;
    const double l = c->a.fang_regress.lambda;
    int i, j;
    for (i = 0; i < nv; i++)
        for (j = 0; j < nh; j++) {
            size_t at = AT(c, 0, j, i), o = AT(c, 8, j, i);
            double evh = IF(c, 0)[at], ev2h = IF(c, 1)[at], evh2 = IF(c, 2)[at],
                   ev2h2 = IF(c, 3)[at];
            double mv = IF(c, 4)[i], ev2 = IF(c, 5)[i], mh = IF(c, 6)[j], eh2 = IF(c, 7)[j];
            double C[3][3], beta[2] = {0.0, 0.0}, M[2][3], s2, fl = l > 0.0 ? l : 1e-30;
            int P[2], np = 0, p, q;
            C[0][0] = (ev2 - mv * mv) + l;
            C[1][1] = (eh2 - mh * mh) + l;
            C[0][1] = C[1][0] = evh - mv * mh;
            C[0][2] = C[2][0] = ev2h - mv * evh;
            C[1][2] = C[2][1] = evh2 - mh * evh;
            C[2][2] = (ev2h2 - evh * evh) + l;
            {
                double det = C[0][0] * C[1][1] - C[0][1] * C[0][1];
                if (C[0][0] > 0.0 && C[1][1] > 0.0 && det > NG_FANG_SINGULAR * C[0][0] * C[1][1]) {
                    P[0] = 0;
                    P[1] = 1;
                    np = 2;
                } else if (C[0][0] > 0.0 && !(C[1][1] > C[0][0])) {
                    P[0] = 0;
                    np = 1;
                } else if (C[1][1] > 0.0) {
                    P[0] = 1;
                    np = 1;
                }
            }
            /* Gaussian elimination with partial pivoting on [C_PP | C_Pm] */
            for (p = 0; p < np; p++) {
                for (q = 0; q < np; q++) M[p][q] = C[P[p]][P[q]];
                M[p][np] = C[P[p]][2];
            }
            if (np == 2 && fabs(M[1][0]) > fabs(M[0][0]))
                for (q = 0; q < 3; q++) {
                    double tmp = M[0][q];
                    M[0][q] = M[1][q];
                    M[1][q] = tmp;
                }
            if (np == 2) {
                double f = M[1][0] / M[0][0];
                M[1][1] -= f * M[0][1];
                M[1][2] -= f * M[0][2];
                beta[1] = M[1][2] / M[1][1];
                beta[0] = (M[0][2] - M[0][1] * beta[1]) / M[0][0];
            } else if (np == 1) {
                beta[0] = M[0][1] / M[0][0];
            }
            {
                double bv = 0.0, bh = 0.0;
                for (p = 0; p < np; p++) {
                    if (P[p] == 0) bv = beta[p];
                    else bh = beta[p];
                }
                if (!(bv - bv == 0.0) || !(bh - bh == 0.0)) bv = bh = 0.0;
                s2 = C[2][2] - (bv * C[0][2] + bh * C[1][2]);
                if (!(s2 >= fl)) s2 = fl;
                WF(c, 8)[o] = (float)bv;
                WF(c, 9)[o] = (float)bh;
                WF(c, 10)[o] = (float)s2;
                TL(c, 8)[o] = EPS_F * fabs(bv) + 1e-8 * (fabs(bv) + fabs(bh));
                TL(c, 9)[o] = EPS_F * fabs(bh) + 1e-8 * (fabs(bv) + fabs(bh));
                TL(c, 10)[o] = EPS_F * fabs(s2) +
                               1e-8 * (fabs(C[2][2]) + fabs(bv * C[0][2]) + fabs(bh * C[1][2]));
            }
        }
}
static int check_fang_regress(const ecase *c, void *const got[]) {
    const float floor_s2 = c->a.fang_regress.lambda > 0.0f ? c->a.fang_regress.lambda : 1e-30f;
    int i, j;
    for (i = 0; i < c->a.fang_regress.nv; i++)
        for (j = 0; j < c->a.fang_regress.nh; j++) {
            size_t o = AT(c, 8, j, i);
            float bv = ((const float *)got[8])[o], bh = ((const float *)got[9])[o];
            float s2 = ((const float *)got[10])[o];
            QCHECK(isfinite(bv) && isfinite(bh), "%s: beta[%d,%d] = (%g, %g) not finite", c->what,
                   j, i, (double)bv, (double)bh);
            QCHECK(isfinite(s2) && s2 >= floor_s2, "%s: sigma2[%d,%d] = %g below its floor %g",
                   c->what, j, i, (double)s2, (double)floor_s2);
        }
    return NGT_PASS;
}

/* ---- fang_residual ----------------------------------------------------------------------------
 * G = q = (G - beta_v ga[i] - beta_h gb[j]) / sigma2 in place, pv = beta_v q, ph = beta_h q.
 * Buffers: 0 G (ldg), 1 ga (nv), 2 gb (nh), 3 beta_v, 4 beta_h, 5 sigma2 (ldb), 6 pv, 7 ph (ldp).
 * Naive in double, associating the two products first (the backends subtract one at a time): the
 * double results differ by a few ulp of double (relative to |G| + |beta_v ga| + |beta_h gb|), so
 * the float q may differ by one rounding: tol = FLT_EPSILON |q| + 1e-12 (|G| + |bv ga| + |bh gb|)
 * / sigma2. pv and ph multiply the float q (exact in double) and round: a one-ulp change of q moves
 * them by <= FLT_EPSILON |beta q|, plus their own rounding: tol = 2 FLT_EPSILON |beta q|. */
static int gen_fang_residual(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    const int nh = s->m, nv = s->n;
    const int ldg = nh + (v ? 3 : 1), ldb = v ? max_i(1, nh) : nh + 2, ldp = nh + (v ? 1 : 3);
    uint64_t seed = 191 + (uint64_t)v + (uint64_t)nh * 1000 + (uint64_t)nv;
    (void)inplace;
    c->a.fang_residual.nh = nh;
    c->a.fang_residual.nv = nv;
    c->a.fang_residual.ldg = ldg;
    c->a.fang_residual.ldb = ldb;
    c->a.fang_residual.ldp = ldp;
    eb_rand(c, eb_add(t, c, "G", R_INOUT, 0, nh, nv, ldg, AOFF(fang_residual.G)), seed, -1.0, 1.0);
    eb_rand(c, eb_vec(t, c, "ga", R_IN, 0, nv, AOFF(fang_residual.ga)), seed + 1, -1.0, 1.0);
    eb_rand(c, eb_vec(t, c, "gb", R_IN, 0, nh, AOFF(fang_residual.gb)), seed + 2, -1.0, 1.0);
    eb_rand(c, eb_add(t, c, "beta_v", R_IN, 0, nh, nv, ldb, AOFF(fang_residual.beta_v)), seed + 3,
            -2.0, 2.0);
    eb_rand(c, eb_add(t, c, "beta_h", R_IN, 0, nh, nv, ldb, AOFF(fang_residual.beta_h)), seed + 4,
            -2.0, 2.0);
    eb_rand(c, eb_add(t, c, "sigma2", R_IN, 0, nh, nv, ldb, AOFF(fang_residual.sigma2)), seed + 5,
            0.1, 2.0);
    eb_add(t, c, "pv", R_OUT, 0, nh, nv, ldp, AOFF(fang_residual.pv));
    eb_add(t, c, "ph", R_OUT, 0, nh, nv, ldp, AOFF(fang_residual.ph));
    what(c, "fang_residual nh=%d nv=%d %s (G) ldg=%d ldb=%d ldp=%d", nh, nv, mode_name(1), ldg, ldb,
         ldp);
    return 1;
}
static void ref_fang_residual(ecase *c) {
    int i, j;
    for (i = 0; i < c->a.fang_residual.nv; i++)
        for (j = 0; j < c->a.fang_residual.nh; j++) {
            size_t g = AT(c, 0, j, i), b = AT(c, 3, j, i), p = AT(c, 6, j, i);
            double G = IF(c, 0)[g], ga = IF(c, 1)[i], gb = IF(c, 2)[j];
            double bv = IF(c, 3)[b], bh = IF(c, 4)[b], s2 = IF(c, 5)[b];
            double q = (G - (bv * ga + bh * gb)) / s2;
            float qf = (float)q;
            WF(c, 0)[g] = qf;
            TL(c, 0)[g] = EPS_F * fabs(q) + 1e-12 * (fabs(G) + fabs(bv * ga) + fabs(bh * gb)) / s2;
            WF(c, 6)[p] = (float)(bv * (double)qf);
            WF(c, 7)[p] = (float)(bh * (double)qf);
            TL(c, 6)[p] = 2.0 * EPS_F * fabs(bv * q) + 1e-40;
            TL(c, 7)[p] = 2.0 * EPS_F * fabs(bh * q) + 1e-40;
        }
}

/* ---- adam: fused Adam / RMSprop step ----------------------------------------------------------
 * Buffers: 0 param, 1 grad, 2 m (or NULL: RMSprop), 3 v, 4 step (or NULL); in place on param, m, v.
 * m = b1 m + c1 g, v = b2 v + c2 g^2, s = -lr (m / bc1) / (sqrt(v / bc2) + eps), param += s.
 * Naive in double: m and v exactly (b1 m, c1 g, b2 v and c2 g^2 need at most 72 bits; the sum is
 * then rounded once to float): tol EPS_F |m| (one rounding of float, either side of the
 * reference's). The step from the reference's rounded m, v: an ulp of m or v moves it by <= u |s|
 * + u/2 |s|, plus its own rounding and the reference's: tol 2 EPS_F |s| (= 4u). param = p + s
 * rounds once more and inherits s's error: tol EPS_F (|p| + |s|) + 2 EPS_F |s|. Variants: Adam at
 * update 0 (bc = 1 - beta: the largest correction) with the step, Adam at update 9 without it,
 * RMSprop with and without it, Adam with b1 = 0 (m = g). Elements with g = 0 and v = 0 give a
 * zero step (no 0/0: eps > 0). Device step count (buffer 5, two doubles {t, 0}; the host bc1 and
 * bc2 are NaN and must be ignored): Adam at t = 7 and t = 123456, RMSprop (bc = 1); the
 * reference takes bc = 1 - beta^(t+1) from t and wants the count {t + 1, 0} bit for bit (also
 * for n = 0: the count advances with an empty vector). */
static const struct {
    int has_m, has_step, t, dev;
    float beta1, beta2, lr, eps;
} adam_v[] = {{1, 1, 0, 0, 0.9f, 0.999f, 1e-3f, 1e-8f},
              {1, 0, 9, 0, 0.8f, 0.99f, 0.05f, 1e-6f},
              {0, 1, 0, 0, 0.0f, 0.9f, 1e-2f, 1e-8f},
              {0, 0, 0, 0, 0.0f, 0.5f, 1.0f, 1e-3f},
              {1, 1, 3, 0, 0.0f, 0.999f, 1e-3f, 1e-8f},
              {1, 1, 7, 1, 0.9f, 0.999f, 1e-3f, 1e-8f},
              {1, 0, 123456, 1, 0.8f, 0.99f, 0.05f, 1e-6f},
              {0, 1, 3, 1, 0.0f, 0.9f, 1e-2f, 1e-8f}};

static int gen_adam(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    const int n = s->m;
    const uint64_t seed = 211 + (uint64_t)v * 7 + (uint64_t)n;
    int p, g, vv, i;
    (void)inplace;
    c->a.adam.n = (size_t)n;
    c->a.adam.b1 = adam_v[v].beta1;
    c->a.adam.c1 = (float)(1.0 - (double)adam_v[v].beta1);
    c->a.adam.b2 = adam_v[v].beta2;
    c->a.adam.c2 = (float)(1.0 - (double)adam_v[v].beta2);
    c->a.adam.bc1 = adam_v[v].dev ? NAN : adam_v[v].has_m ? 1.0 - pow((double)adam_v[v].beta1, adam_v[v].t + 1) : 0.0;
    c->a.adam.bc2 = adam_v[v].dev ? NAN : adam_v[v].has_m ? 1.0 - pow((double)adam_v[v].beta2, adam_v[v].t + 1) : 1.0;
    c->a.adam.lr = adam_v[v].lr;
    c->a.adam.eps = adam_v[v].eps;
    p = eb_vec(t, c, "param", R_INOUT, 0, n, AOFF(adam.param));
    eb_rand(c, p, seed, -2.0, 2.0);
    g = eb_vec(t, c, "grad", R_IN, 0, n, AOFF(adam.grad));
    eb_rand(c, g, seed + 1, -3.0, 3.0);
    if (adam_v[v].has_m) eb_rand(c, eb_vec(t, c, "m", R_INOUT, 0, n, AOFF(adam.m)), seed + 2, -1.0, 1.0);
    else eb_null(c, "m");
    vv = eb_vec(t, c, "v", R_INOUT, 0, n, AOFF(adam.v));
    eb_rand(c, vv, seed + 3, 0.0, 2.0);
    for (i = 2; i < n; i += 5) { /* g = 0 on a zero second moment: a zero step */
        IF(c, g)[i] = 0.0f;
        IF(c, vv)[i] = 0.0f;
        if (adam_v[v].has_m) IF(c, 2)[i] = 0.0f;
    }
    if (adam_v[v].has_step) eb_vec(t, c, "step", R_OUT, 0, n, AOFF(adam.step));
    else eb_null(c, "step");
    if (adam_v[v].dev) {
        int cnt = eb_vec(t, c, "count", R_INOUT, 1, 2, AOFF(adam.count));
        ID(c, cnt)[0] = (double)adam_v[v].t;
        ID(c, cnt)[1] = 0.0;
    } else
        eb_null(c, "count");
    what(c, "adam n=%d %s%s t=%d%s beta1=%g beta2=%g lr=%g eps=%g", n,
         adam_v[v].has_m ? "adam" : "rmsprop", adam_v[v].has_step ? " +step" : "", adam_v[v].t,
         adam_v[v].dev ? " (device count)" : "",
         (double)adam_v[v].beta1, (double)adam_v[v].beta2, (double)adam_v[v].lr,
         (double)adam_v[v].eps);
    return 1;
}
static void ref_adam(ecase *c) {
    const double b1 = c->a.adam.b1, c1 = c->a.adam.c1, b2 = c->a.adam.b2, c2 = c->a.adam.c2;
    const int has_m = !c->b[2].is_null, has_step = !c->b[4].is_null, dev = !c->b[5].is_null;
    const double lr = c->a.adam.lr, eps = c->a.adam.eps;
    const double t = dev ? ID(c, 5)[0] : 0.0;
    const double bc1 = dev ? (has_m ? 1.0 - pow(b1, t + 1.0) : 1.0) : c->a.adam.bc1;
    const double bc2 = dev ? (has_m ? 1.0 - pow(b2, t + 1.0) : 1.0) : c->a.adam.bc2;
    size_t i;
    if (dev) {
        ((double *)c->b[5].want)[0] = t + 1.0;
        ((double *)c->b[5].want)[1] = 0.0;
    }
    for (i = 0; i < c->a.adam.n; i++) {
        const double g = IF(c, 1)[i], p = IF(c, 0)[i];
        double mh = g, vd, sd;
        float mf, vf;
        if (has_m) {
            double md = b1 * IF(c, 2)[i] + c1 * g;
            mf = (float)md;
            WF(c, 2)[i] = mf;
            TL(c, 2)[i] = EPS_F * fabs(md);
            mh = (double)mf / bc1;
        }
        vd = c2 * (g * g) + b2 * IF(c, 3)[i];
        vf = (float)vd;
        WF(c, 3)[i] = vf;
        TL(c, 3)[i] = EPS_F * fabs(vd);
        sd = -lr * mh / (sqrt((double)vf / bc2) + eps);
        if (has_step) {
            WF(c, 4)[i] = (float)sd;
            TL(c, 4)[i] = 2.0 * EPS_F * fabs(sd);
        }
        WF(c, 0)[i] = (float)(p + sd);
        TL(c, 0)[i] = EPS_F * (fabs(p) + fabs(sd)) + 2.0 * EPS_F * fabs(sd);
    }
}

/* ---- axpby_segments: y = alpha x + beta y on disjoint segments, nothing else touched ---------------
 * Buffers: 0 x, 1 y (or y = x in place). Naive in double per element of a segment, tol as axpby's:
 * 2 FLT_EPSILON (|alpha x| + |beta y|); elements outside the segments must come back bit for bit.
 * Variants: one segment over everything (weight decay of a single tensor: alpha 1e-3, beta 1);
 * three segments with gaps, in decreasing offset order (the W's of a network between its biases);
 * beta = 0 over two segments (y ignored there: NaN); NG_SEGMENTS_MAX segments of the tail. */
static int axs_layout(int v, size_t n, size_t *off, size_t *len) {
    int k = 0;
    size_t i;
    if (v == 0 && n) {
        off[0] = 0, len[0] = n;
        return 1;
    }
    if (v == 1 || v == 2) { /* [n/2 + 1, n), [n/4, n/2), [0, n/8): gaps between them */
        size_t b[3][2] = {{n / 2 + 1, n}, {n / 4, n / 2}, {0, n / 8}};
        for (i = 0; i < (size_t)(v == 1 ? 3 : 2); i++)
            if (b[i][1] > b[i][0]) off[k] = b[i][0], len[k++] = b[i][1] - b[i][0];
        return k;
    }
    for (i = 0; i < NG_SEGMENTS_MAX && 2 * i + 1 < n; i++) off[k] = n - 1 - 2 * i, len[k++] = 1; /* every other tail element */
    return k;
}
static const float axs_ab[4][2] = {{1e-3f, 1.0f}, {-0.75f, 0.5f}, {2.0f, 0.0f}, {0.5f, -1.25f}};

static int gen_axpby_segments(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    int x, y, n = s->m, i;
    c->a.axpby_segments.count = axs_layout(v, (size_t)n, c->a.axpby_segments.off, c->a.axpby_segments.len);
    c->a.axpby_segments.alpha = axs_ab[v][0];
    c->a.axpby_segments.beta = axs_ab[v][1];
    x = eb_vec(t, c, "x", R_IN, 0, n, AOFF(axpby_segments.x));
    eb_rand(c, x, 43 + (uint64_t)n, -2.0, 2.0);
    if (inplace) y = eb_alias(t, c, "y (= x)", R_INOUT, x, AOFF(axpby_segments.y));
    else {
        y = eb_vec(t, c, "y", R_INOUT, 0, n, AOFF(axpby_segments.y));
        eb_rand(c, y, 44 + (uint64_t)n, -2.0, 2.0);
        if (axs_ab[v][1] == 0.0f)
            for (i = 0; i < c->a.axpby_segments.count; i++) IF(c, y)[c->a.axpby_segments.off[i]] = NAN;
    }
    what(c, "axpby_segments n=%d %s %d segments alpha=%g beta=%g", n, mode_name(inplace), c->a.axpby_segments.count,
         (double)axs_ab[v][0], (double)axs_ab[v][1]);
    return 1;
}
static void ref_axpby_segments(ecase *c) {
    const double al = c->a.axpby_segments.alpha, be = c->a.axpby_segments.beta;
    int sgi;
    for (sgi = 0; sgi < c->a.axpby_segments.count; sgi++) {
        size_t i, o = c->a.axpby_segments.off[sgi];
        for (i = o; i < o + c->a.axpby_segments.len[sgi]; i++) {
            double ax = al * IF(c, 0)[i], by = be == 0.0 ? 0.0 : be * IF(c, 1)[i];
            WF(c, 1)[i] = (float)(ax + by);
            TL(c, 1)[i] = 2.0 * EPS_F * (fabs(ax) + fabs(by));
        }
    }
}

/* ---- momentum: heavy-ball SGD / NAG in one pass -------------------------------------------------
 * Buffers: 0 d, 1 v, 2 p, 3 bar (or NULL). v = a d + mu v, p = c v + p, p = a d + p (nesterov),
 * bar = w p + xi bar, bar = wc v + bar (wc != 0). Naive in double, line by line from the exact
 * values of the previous lines; each line is an axpby (two products and a sum, or one fused on a
 * GPU): its own error <= 2 FLT_EPSILON (|first term| + |second term|) as for axpby, plus its
 * inputs' errors times their coefficients (|c| tol_v into p, w tol_p and |wc| tol_v into bar).
 * Variants: sgd (c = 1) with momentum 0.5; momentum 0 (v ignored: NaN there); nag with mu 0.75,
 * mu_{t+1} 5/6; nag with the average (xi 0.9, wc = (1 - xi)(-mu_{t+1})); sgd with the average
 * (wc = 0). The bit-identity with the axpby ops this op replaces is tested in test_update. */
static const struct {
    float a, mu, c;
    int nesterov, avg;
    float xi;
} mom_v[] = {{-0.3f, 0.5f, 1.0f, 0, 0, 0.0f},
             {-0.25f, 0.0f, 1.0f, 0, 0, 0.0f},
             {-0.05f, 0.75f, 0.8333333f, 1, 0, 0.0f},
             {-0.05f, 0.75f, 0.8333333f, 1, 1, 0.9f},
             {-0.3f, 0.5f, 1.0f, 0, 1, 0.99f}};

static int gen_momentum(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    const int n = s->m;
    const uint64_t seed = 331 + (uint64_t)v * 7 + (uint64_t)n;
    int vv;
    (void)inplace;
    c->a.momentum.n = (size_t)n;
    c->a.momentum.a = mom_v[v].a;
    c->a.momentum.mu = mom_v[v].mu;
    c->a.momentum.c = mom_v[v].c;
    c->a.momentum.nesterov = mom_v[v].nesterov;
    eb_rand(c, eb_vec(t, c, "d", R_IN, 0, n, AOFF(momentum.d)), seed, -3.0, 3.0);
    vv = eb_vec(t, c, "v", R_INOUT, 0, n, AOFF(momentum.v));
    if (mom_v[v].mu == 0.0f) eb_fill(c, vv, NAN);
    else eb_rand(c, vv, seed + 1, -1.0, 1.0);
    eb_rand(c, eb_vec(t, c, "p", R_INOUT, 0, n, AOFF(momentum.p)), seed + 2, -2.0, 2.0);
    if (mom_v[v].avg) {
        eb_rand(c, eb_vec(t, c, "bar", R_INOUT, 0, n, AOFF(momentum.bar)), seed + 3, -2.0, 2.0);
        c->a.momentum.xi = mom_v[v].xi;
        c->a.momentum.w = (float)(1.0 - (double)mom_v[v].xi);
        c->a.momentum.wc = mom_v[v].nesterov ? (float)((1.0 - (double)mom_v[v].xi) * -(5.0 / 6.0)) : 0.0f;
    } else
        eb_null(c, "bar");
    what(c, "momentum n=%d a=%g mu=%g c=%g nesterov=%d%s", n, (double)mom_v[v].a, (double)mom_v[v].mu,
         (double)mom_v[v].c, mom_v[v].nesterov, mom_v[v].avg ? " +average" : "");
    return 1;
}
static void ref_momentum(ecase *c) {
    const double a = c->a.momentum.a, mu = c->a.momentum.mu, cc = c->a.momentum.c;
    const double xi = c->a.momentum.xi, w = c->a.momentum.w, wc = c->a.momentum.wc;
    const int avg = !c->b[3].is_null;
    size_t i;
    for (i = 0; i < c->a.momentum.n; i++) {
        const double d = IF(c, 0)[i], ad = a * d;
        const double mv = mu == 0.0 ? 0.0 : mu * IF(c, 1)[i];
        const double v = ad + mv, tv = 2.0 * EPS_F * (fabs(ad) + fabs(mv));
        double p = cc * v + IF(c, 2)[i], tp = fabs(cc) * tv + 2.0 * EPS_F * (fabs(cc * v) + fabs(IF(c, 2)[i]));
        WF(c, 1)[i] = (float)v;
        TL(c, 1)[i] = tv;
        if (c->a.momentum.nesterov) {
            tp += 2.0 * EPS_F * (fabs(ad) + fabs(p));
            p += ad;
        }
        WF(c, 2)[i] = (float)p;
        TL(c, 2)[i] = tp;
        if (avg) {
            const double b0 = IF(c, 3)[i];
            double b = w * p + xi * b0, tb = w * tp + 2.0 * EPS_F * (fabs(w * p) + fabs(xi * b0));
            if (wc != 0.0) {
                tb += fabs(wc) * tv + 2.0 * EPS_F * (fabs(wc * v) + fabs(b));
                b += wc * v;
            }
            WF(c, 3)[i] = (float)b;
            TL(c, 3)[i] = tb;
        }
    }
}

/* =============================================================================================
 * Network layers (natgrad/nn_types.h codes). References in double, written here from the
 * definitions in natgrad/backend.h and natgrad/nn_types.h (not from the ng_math.h bodies).
 * Tolerances follow the float error of the backends: u = FLT_EPSILON / 2 per rounding, expf and
 * tanhf within 2 ulp (CUDA's bounds; glibc is closer), double sums and libm negligible except
 * where cancellation makes them visible (then 1e-13 of the magnitudes involved). Each tolerance
 * adds 1e-37 so an exact zero is compared by value (+0 and -0 alike).
 * ============================================================================================= */

static const char *const act_names[NG_ACT_COUNT] = {"linear", "logistic", "tanh", "relu",
                                                    "softmax"};
static const char *const loss_names[NG_LOSS_COUNT + 1] = {"squared", "bernoulli", "categorical",
                                                          "outer"};
#define NET_TINY 1e-37

/* Saturating entries of a matrix buffer: +big at (0,0) and -big at the last element (when there
 * are at least 3 elements), so sigmoid/tanh reach 0 and 1 and softmax/logsumexp must shift. */
static void net_big(ecase *c, int i, float big) {
    ebuf *b = &c->b[i];
    if ((long)b->rows * b->cols < 3) return;
    IF(c, i)[AT(c, i, 0, 0)] = big;
    IF(c, i)[AT(c, i, b->rows - 1, b->cols - 1)] = -big;
}

/* Softmax of a double column into a float column (the consistent y of a categorical output). */
static void net_softmax_into(const double *x, int rows, float *y) {
    double mx = -INFINITY, s = 0.0;
    int r;
    for (r = 0; r < rows; r++)
        if (x[r] > mx) mx = x[r];
    for (r = 0; r < rows; r++) s += exp(x[r] - mx);
    for (r = 0; r < rows; r++) y[r] = (float)(exp(x[r] - mx) / s);
}

/* ---- act_forward: a = f(s[r] z + bias[r]), softmax per column; z may alias a -----------------
 * Buffers: 0 z, 1 scale, 2 bias (NULL or rows), 3 a. Naive in double from x = s z + b. The backend
 * rounds s z and the sum: |x_f - x| <= ex = FLT_EPSILON (|s z| + |b| / 2). Then per activation
 * (reference rounding included): linear and relu ex + FLT_EPSILON |a|; logistic a (1 - a) ex +
 * 4 FLT_EPSILON a (expf, 1 + e, the division); tanh (1 - a^2) ex + 3 FLT_EPSILON |a|; softmax: x
 * moves a_i by a_i (ex_i + sum_j a_j ex_j) <= 2 a_i max ex, the float x - max rounds (u |x - max|),
 * expf 2 ulp, the double sum is a weighted mean of those, the division rounds: a_i (2 max ex +
 * FLT_EPSILON (|x_i - max| / 2 + D / 2 + 5)), D the column's largest |x - max|.
 * Variants: every activation with scale and bias; each with one or both NULL; one packed (ld =
 * rows). Entries +-30 saturate; one z is 0 (relu at 0). In place: a = z. */
static const struct {
    int act, scale, bias;
} actf_v[] = {{NG_ACT_LINEAR, 1, 1},  {NG_ACT_LOGISTIC, 1, 1}, {NG_ACT_TANH, 1, 1},
              {NG_ACT_RELU, 1, 1},    {NG_ACT_SOFTMAX, 1, 1},  {NG_ACT_LINEAR, 0, 0},
              {NG_ACT_LOGISTIC, 0, 1}, {NG_ACT_TANH, 1, 0},    {NG_ACT_RELU, 0, 0},
              {NG_ACT_SOFTMAX, 0, 0},  {NG_ACT_SOFTMAX, 1, 0}};

static int gen_act_forward(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    const int rows = s->m, cols = s->n, packed = !inplace && v == 5;
    const int ldz = packed ? max_i(1, rows) : max_i(1, rows + 1 + v % 2);
    const int lda = inplace || packed ? ldz : max_i(1, rows + 3);
    const uint64_t seed = 211 + (uint64_t)v * 7 + (uint64_t)rows * 1000 + (uint64_t)cols;
    int z, k;
    c->a.act_forward.rows = rows;
    c->a.act_forward.cols = cols;
    c->a.act_forward.act = actf_v[v].act;
    c->a.act_forward.ldz = ldz;
    c->a.act_forward.lda = lda;
    z = eb_add(t, c, "z", R_IN, 0, rows, cols, ldz, AOFF(act_forward.z));
    eb_rand(c, z, seed, -4.0, 4.0);
    net_big(c, z, 30.0f);
    if ((long)rows * cols > 3) IF(c, z)[AT(c, z, rows > 2 ? 2 : 0, cols > 1 ? 1 : 0)] = 0.0f;
    k = actf_v[v].scale ? eb_vec(t, c, "scale", R_IN, 0, rows, AOFF(act_forward.scale))
                        : eb_null(c, "scale");
    if (!c->b[k].is_null) eb_rand(c, k, seed + 1, -1.5, 2.0);
    k = actf_v[v].bias ? eb_vec(t, c, "bias", R_IN, 0, rows, AOFF(act_forward.bias))
                       : eb_null(c, "bias");
    if (!c->b[k].is_null) eb_rand(c, k, seed + 2, -1.0, 1.0);
    if (inplace) eb_alias(t, c, "a (= z)", R_INOUT, z, AOFF(act_forward.a));
    else eb_add(t, c, "a", R_OUT, 0, rows, cols, lda, AOFF(act_forward.a));
    what(c, "act_forward %s rows=%d cols=%d %s ldz=%d lda=%d scale=%s bias=%s",
         act_names[actf_v[v].act], rows, cols, mode_name(inplace), ldz, lda,
         actf_v[v].scale ? "given" : "NULL", actf_v[v].bias ? "given" : "NULL");
    return 1;
}

/* x = s z + b of element (r, col) in double, and the bound ex on the backend's rounding of it. */
static double actf_x(const ecase *c, int r, int col, double *ex) {
    double z = IF(c, 0)[AT(c, 0, r, col)];
    double sc = c->b[1].is_null ? 1.0 : (double)IF(c, 1)[r];
    double b = c->b[2].is_null ? 0.0 : (double)IF(c, 2)[r];
    *ex = EPS_F * (fabs(sc * z) + 0.5 * fabs(b));
    return sc * z + b;
}

static void ref_act_forward(ecase *c) {
    const int rows = c->a.act_forward.rows, cols = c->a.act_forward.cols;
    const int act = c->a.act_forward.act;
    int r, col;
    for (col = 0; col < cols; col++) {
        if (act == NG_ACT_SOFTMAX) {
            double mx = -INFINITY, sum = 0.0, exmax = 0.0, dmax = 0.0, ex, x;
            for (r = 0; r < rows; r++) {
                x = actf_x(c, r, col, &ex);
                if (x > mx) mx = x;
                if (ex > exmax) exmax = ex;
            }
            for (r = 0; r < rows; r++) {
                x = actf_x(c, r, col, &ex);
                sum += exp(x - mx);
                if (mx - x > dmax) dmax = mx - x;
            }
            for (r = 0; r < rows; r++) {
                double a;
                x = actf_x(c, r, col, &ex);
                a = exp(x - mx) / sum;
                WF(c, 3)[AT(c, 3, r, col)] = (float)a;
                TL(c, 3)[AT(c, 3, r, col)] =
                    a * (2.0 * exmax + EPS_F * (0.5 * (mx - x) + 0.5 * dmax + 5.0)) + NET_TINY;
            }
            continue;
        }
        for (r = 0; r < rows; r++) {
            double ex, x = actf_x(c, r, col, &ex), a, tl;
            switch (act) {
            case NG_ACT_LOGISTIC:
                a = sigmoid_d(x);
                tl = a * (1.0 - a) * ex + 4.0 * EPS_F * a;
                break;
            case NG_ACT_TANH:
                a = tanh(x);
                tl = (1.0 - a * a) * ex + 3.0 * EPS_F * fabs(a);
                break;
            case NG_ACT_RELU:
                a = x > 0.0 ? x : 0.0;
                tl = ex + EPS_F * a;
                break;
            default:
                a = x;
                tl = ex + EPS_F * fabs(a);
                break;
            }
            WF(c, 3)[AT(c, 3, r, col)] = (float)a;
            TL(c, 3)[AT(c, 3, r, col)] = tl + NET_TINY;
        }
    }
}

/* ---- act_backward: out = g f'(a) + h r f''(a), derivatives in terms of a; out may alias g --------
 * Buffers: 0 a, 1 g, 2 h, 3 r (both NULL or both given), 4 out. Naive in double with
 * f' = 1, a (1 - a), 1 - a^2, [a > 0] and f'' = 0, a (1 - a)(1 - 2a), -2a (1 - a^2), 0 (linear,
 * logistic, tanh, relu). The backend's float f' is within FLT_EPSILON m1 of the exact one (m1 =
 * |f'|, plus a^2 for tanh: 1 - a a cancels), its f'' within 2.5 FLT_EPSILON m2 (m2 = |f''|, for tanh
 * |a| (a^2 + |1 - a^2|) + |f''|); the products and the sum round (or fuse on a GPU):
 * tol = 4 FLT_EPSILON (|g| m1 + |h r| m2) + FLT_EPSILON |out|. a lies in the activation's range
 * (0 and 1 included for logistic, zeros for relu); one h is 0 (the h r term is skipped).
 * Variants: each elementwise activation with and without h, r; one packed. In place: out = g. */
static const struct {
    int act, hr;
} actb_v[] = {{NG_ACT_LINEAR, 1}, {NG_ACT_LOGISTIC, 1}, {NG_ACT_TANH, 1}, {NG_ACT_RELU, 1},
              {NG_ACT_LINEAR, 0}, {NG_ACT_LOGISTIC, 0}, {NG_ACT_TANH, 0}, {NG_ACT_RELU, 0}};

static int gen_act_backward(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    const int rows = s->m, cols = s->n, act = actb_v[v].act, packed = !inplace && v == 5;
    const int lda = max_i(1, packed ? rows : rows + 1), ldg = max_i(1, packed ? rows : rows + 2);
    const int ldh = max_i(1, packed ? rows : rows + 3), ldr = max_i(1, packed ? rows : rows + 1);
    const int ldo = inplace ? ldg : max_i(1, packed ? rows : rows + 4);
    const uint64_t seed = 231 + (uint64_t)v * 7 + (uint64_t)rows * 1000 + (uint64_t)cols;
    int A, g, h, rr, r, col;
    c->a.act_backward.rows = rows;
    c->a.act_backward.cols = cols;
    c->a.act_backward.act = act;
    c->a.act_backward.lda = lda;
    c->a.act_backward.ldg = ldg;
    c->a.act_backward.ldo = ldo;
    A = eb_add(t, c, "a", R_IN, 0, rows, cols, lda, AOFF(act_backward.a));
    for (col = 0; col < cols; col++)
        for (r = 0; r < rows; r++) {
            double u = rnd(seed, AT(c, A, r, col), 0.0, 1.0);
            IF(c, A)[AT(c, A, r, col)] =
                (float)(act == NG_ACT_LOGISTIC ? u
                        : act == NG_ACT_TANH   ? 2.0 * u - 1.0
                        : act == NG_ACT_RELU   ? (u < 0.3 ? 0.0 : 3.0 * u - 0.9)
                                               : 6.0 * u - 3.0);
        }
    if (act == NG_ACT_LOGISTIC) net_big(c, A, 1.0f); /* a = 1 at (0,0); -1 fixed below */
    if (act == NG_ACT_LOGISTIC && (long)rows * cols >= 3) IF(c, A)[AT(c, A, rows - 1, cols - 1)] = 0.0f;
    g = eb_add(t, c, "g", R_IN, 0, rows, cols, ldg, AOFF(act_backward.g));
    eb_rand(c, g, seed + 1, -2.0, 2.0);
    if (actb_v[v].hr) {
        h = eb_add(t, c, "h", R_IN, 0, rows, cols, ldh, AOFF(act_backward.h));
        eb_rand(c, h, seed + 2, -2.0, 2.0);
        if ((long)rows * cols > 1) IF(c, h)[AT(c, h, rows > 1 ? 1 : 0, rows > 1 ? 0 : 1)] = 0.0f;
        rr = eb_add(t, c, "r", R_IN, 0, rows, cols, ldr, AOFF(act_backward.r));
        eb_rand(c, rr, seed + 3, -2.0, 2.0);
        c->a.act_backward.ldh = ldh;
        c->a.act_backward.ldr = ldr;
    } else {
        eb_null(c, "h");
        eb_null(c, "r");
    }
    if (inplace) eb_alias(t, c, "out (= g)", R_INOUT, g, AOFF(act_backward.out));
    else eb_add(t, c, "out", R_OUT, 0, rows, cols, ldo, AOFF(act_backward.out));
    what(c, "act_backward %s rows=%d cols=%d %s lda=%d ldg=%d ldo=%d h,r=%s",
         act_names[act], rows, cols, mode_name(inplace), lda, ldg, ldo,
         actb_v[v].hr ? "given" : "NULL");
    return 1;
}

static void ref_act_backward(ecase *c) {
    const int rows = c->a.act_backward.rows, cols = c->a.act_backward.cols;
    const int act = c->a.act_backward.act;
    int r, col;
    for (col = 0; col < cols; col++)
        for (r = 0; r < rows; r++) {
            double a = IF(c, 0)[AT(c, 0, r, col)], g = IF(c, 1)[AT(c, 1, r, col)];
            double hr = c->b[2].is_null
                            ? 0.0
                            : (double)IF(c, 2)[AT(c, 2, r, col)] * (double)IF(c, 3)[AT(c, 3, r, col)];
            double d1, d2, m1, m2, out;
            switch (act) {
            case NG_ACT_LOGISTIC:
                d1 = a * (1.0 - a);
                d2 = d1 * (1.0 - 2.0 * a);
                m1 = fabs(d1);
                m2 = fabs(d2);
                break;
            case NG_ACT_TANH:
                d1 = 1.0 - a * a;
                d2 = -2.0 * a * d1;
                m1 = fabs(d1) + a * a;
                m2 = fabs(a) * (a * a + fabs(d1)) + fabs(d2);
                break;
            case NG_ACT_RELU:
                d1 = a > 0.0 ? 1.0 : 0.0;
                d2 = m2 = 0.0;
                m1 = d1;
                break;
            default:
                d1 = m1 = 1.0;
                d2 = m2 = 0.0;
                break;
            }
            out = g * d1 + hr * d2;
            WF(c, 4)[AT(c, 4, r, col)] = (float)out;
            TL(c, 4)[AT(c, 4, r, col)] =
                4.0 * EPS_F * (fabs(g) * m1 + fabs(hr) * m2) + EPS_F * fabs(out) + NET_TINY;
        }
}

/* ---- loss: per column d = scale (y - t), obj = the loss, err = sum (y - t)^2 ----------------------
 * Buffers: 0 z, 1 y, 2 t, 3 d, 4 obj (cols), 5 err (cols); d, obj, err may be NULL (not all).
 * y = f(z) in double rounded to float: z itself (squared), sigmoid (Bernoulli), softmax
 * (categorical); t: any (squared), 0, 1 or a fraction (Bernoulli), one-hot or a random
 * distribution per column (categorical). Objectives per case, in double:
 *   squared 0.5 sum (y - t)^2, Bernoulli sum softplus(z) - t z, categorical sum t (lse(z) - z).
 * d: two float roundings and the reference's: tol 2 FLT_EPSILON |d|. obj and err: the backends sum
 * in double too; the sums differ by double roundings (and libm) of the terms, 1e-13 of S = the
 * sum of the terms' magnitudes (softplus(z) - t z cancels), then one float rounding each:
 * tol 2 FLT_EPSILON |obj| + 1e-13 S; err 2 FLT_EPSILON err. rows = 0 gives obj = err = 0.
 * Variants: each loss with outputs {d, obj, err}, {d}, {obj, err}, {err}; one packed; scale
 * -1.5 or 1/64. In place: d = y (variants with d). z holds +-25 entries.
 * Variants 12-17: {d, obj, err} and the batch sums acc (buffer 6, 2 floats) in the same op,
 * acc_beta 0 (acc starts NaN and must be ignored) or 1 (acc += the sums). The backends add the
 * float obj[c] (err[c]) in double and round once: tol = the sum of the columns' tolerances (each
 * column's own error carries into the sum) + FLT_EPSILON (|sum| + |acc|); an empty batch sums to 0. */
/* Variants 18 and 19: categorical with err_miss (err = the misclassification of each case), without
 * and with the batch sums (acc +=). */
static int gen_loss(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    const int miss = v >= 18, sums = v >= 12 && v != 18, vv = v == 18 ? 8 : v == 19 ? 5 : sums ? v - 12 : v;
    const int rows = s->m, cols = s->n, loss = vv % 3, outs = sums ? 0 : vv / 3, packed = !inplace && v == 5;
    const int ldz = max_i(1, packed ? rows : rows + 1), ldy = max_i(1, packed ? rows : rows + 2);
    const int ldt = max_i(1, packed ? rows : rows + 3);
    const int ldd = inplace ? ldy : max_i(1, packed ? rows : rows + 1);
    const uint64_t seed = 251 + (uint64_t)v * 7 + (uint64_t)rows * 1000 + (uint64_t)cols;
    double *col = h_doubles(t, (size_t)(rows ? rows : 1));
    int z, y, tt, r, k;
    if (inplace && outs > 1) return 0;
    c->a.loss.rows = rows;
    c->a.loss.cols = cols;
    c->a.loss.loss = loss;
    c->a.loss.ldz = ldz;
    c->a.loss.ldy = ldy;
    c->a.loss.ldt = ldt;
    c->a.loss.ldd = ldd;
    c->a.loss.scale = v % 2 ? 1.0f / 64.0f : -1.5f;
    c->a.loss.err_miss = miss;
    z = eb_add(t, c, "z", R_IN, 0, rows, cols, ldz, AOFF(loss.z));
    eb_rand(c, z, seed, loss == NG_LOSS_BERNOULLI ? -6.0 : -3.0,
            loss == NG_LOSS_BERNOULLI ? 6.0 : 3.0);
    if (loss != NG_LOSS_SQUARED) net_big(c, z, 25.0f);
    y = eb_add(t, c, "y", R_IN, 0, rows, cols, ldy, AOFF(loss.y));
    tt = eb_add(t, c, "t", R_IN, 0, rows, cols, ldt, AOFF(loss.t));
    for (k = 0; k < cols; k++) {
        double wsum = 0.0;
        for (r = 0; r < rows; r++) col[r] = IF(c, z)[AT(c, z, r, k)];
        if (loss == NG_LOSS_CATEGORICAL) net_softmax_into(col, rows, IF(c, y) + AT(c, y, 0, k));
        for (r = 0; r < rows; r++) {
            double u = rnd(seed + 1, AT(c, tt, r, k), 0.0, 1.0);
            if (loss == NG_LOSS_SQUARED) {
                IF(c, y)[AT(c, y, r, k)] = (float)col[r];
                IF(c, tt)[AT(c, tt, r, k)] = (float)(4.0 * u - 2.0);
            } else if (loss == NG_LOSS_BERNOULLI) {
                IF(c, y)[AT(c, y, r, k)] = (float)sigmoid_d(col[r]);
                IF(c, tt)[AT(c, tt, r, k)] =
                    u < 0.35 ? 0.0f : u < 0.7 ? 1.0f : (float)((u - 0.7) / 0.3);
            } else if (k % 2 == 0) {
                IF(c, tt)[AT(c, tt, r, k)] = r == (k * 7 + 3) % rows ? 1.0f : 0.0f;
            } else {
                col[r] = u;
                wsum += u;
            }
        }
        if (loss == NG_LOSS_CATEGORICAL && k % 2 == 1)
            for (r = 0; r < rows; r++) IF(c, tt)[AT(c, tt, r, k)] = (float)(col[r] / wsum);
    }
    if (outs == 0 || outs == 1) {
        if (inplace) eb_alias(t, c, "d (= y)", R_INOUT, y, AOFF(loss.d));
        else eb_add(t, c, "d", R_OUT, 0, rows, cols, ldd, AOFF(loss.d));
    } else
        eb_null(c, "d");
    if (outs == 0 || outs == 2) eb_vec(t, c, "obj", R_OUT, 0, cols, AOFF(loss.obj));
    else eb_null(c, "obj");
    if (outs != 1) eb_vec(t, c, "err", R_OUT, 0, cols, AOFF(loss.err));
    else eb_null(c, "err");
    if (sums) {
        int acc = eb_vec(t, c, "acc", R_INOUT, 0, 2, AOFF(loss.acc));
        c->a.loss.acc_beta = vv >= 3 ? 1.0f : 0.0f;
        if (vv >= 3) eb_rand(c, acc, seed + 2, -3.0, 3.0);
        else eb_fill(c, acc, NAN);
    } else
        eb_null(c, "acc");
    what(c, "loss %s rows=%d cols=%d %s ldz=%d ldy=%d ldt=%d ldd=%d scale=%g d=%s obj=%s err=%s%s",
         loss_names[loss], rows, cols, mode_name(inplace), ldz, ldy, ldt, ldd,
         (double)c->a.loss.scale, outs <= 1 ? (inplace ? "y" : "own") : "NULL",
         outs == 0 || outs == 2 ? "given" : "NULL", outs != 1 ? (miss ? "misclassification" : "given") : "NULL",
         sums ? (vv >= 3 ? " acc +=" : " acc =") : "");
    return 1;
}

static void ref_loss(ecase *c) {
    const int rows = c->a.loss.rows, cols = c->a.loss.cols, loss = c->a.loss.loss;
    const double scale = c->a.loss.scale;
    int r, k;
    for (k = 0; k < cols; k++) {
        double o = 0.0, e = 0.0, S = 0.0, lse = 0.0;
        if (loss == NG_LOSS_CATEGORICAL && rows > 0) {
            double mx = -INFINITY, s = 0.0;
            for (r = 0; r < rows; r++) mx = fmax(mx, (double)IF(c, 0)[AT(c, 0, r, k)]);
            for (r = 0; r < rows; r++) s += exp((double)IF(c, 0)[AT(c, 0, r, k)] - mx);
            lse = mx + log(s);
        }
        for (r = 0; r < rows; r++) {
            double z = IF(c, 0)[AT(c, 0, r, k)], y = IF(c, 1)[AT(c, 1, r, k)];
            double tv = IF(c, 2)[AT(c, 2, r, k)], diff = y - tv;
            e += diff * diff;
            if (loss == NG_LOSS_SQUARED) {
                o += 0.5 * diff * diff;
                S += 0.5 * diff * diff;
            } else if (loss == NG_LOSS_BERNOULLI) {
                o += softplus_d(z) - tv * z;
                S += softplus_d(z) + fabs(tv * z);
            } else {
                o += tv * (lse - z);
                S += fabs(tv) * (fabs(lse) + fabs(z));
            }
            if (!c->b[3].is_null) {
                WF(c, 3)[AT(c, 3, r, k)] = (float)(scale * diff);
                TL(c, 3)[AT(c, 3, r, k)] = 2.0 * EPS_F * fabs(scale * diff) + NET_TINY;
            }
        }
        if (!c->b[4].is_null) {
            WF(c, 4)[k] = (float)o;
            TL(c, 4)[k] = 2.0 * EPS_F * fabs(o) + 1e-13 * S + NET_TINY;
        }
        if (!c->b[5].is_null && c->a.loss.err_miss) { /* first maximum of y against first maximum of t: exact */
            int ay = 0, at = 0;
            for (r = 1; r < rows; r++) {
                if (IF(c, 1)[AT(c, 1, r, k)] > IF(c, 1)[AT(c, 1, ay, k)]) ay = r;
                if (IF(c, 2)[AT(c, 2, r, k)] > IF(c, 2)[AT(c, 2, at, k)]) at = r;
            }
            WF(c, 5)[k] = ay != at ? 1.0f : 0.0f;
            TL(c, 5)[k] = 0.0;
        } else if (!c->b[5].is_null) {
            WF(c, 5)[k] = (float)e;
            TL(c, 5)[k] = 2.0 * EPS_F * e + NET_TINY;
        }
    }
    if (!c->b[6].is_null) { /* the batch sums of the float per-column values */
        double so = 0.0, se = 0.0, to = 0.0, te = 0.0;
        const double a0 = c->a.loss.acc_beta != 0.0f ? IF(c, 6)[0] : 0.0;
        const double a1 = c->a.loss.acc_beta != 0.0f ? IF(c, 6)[1] : 0.0;
        for (k = 0; k < cols; k++) {
            so += (double)WF(c, 4)[k];
            se += (double)WF(c, 5)[k];
            to += TL(c, 4)[k];
            te += TL(c, 5)[k];
        }
        WF(c, 6)[0] = (float)(a0 + so);
        WF(c, 6)[1] = (float)(a1 + se);
        TL(c, 6)[0] = to + EPS_F * (fabs(so) + fabs(a0)) + NET_TINY;
        TL(c, 6)[1] = te + EPS_F * (fabs(se) + fabs(a1)) + NET_TINY;
    }
}

/* ---- loss_hvp: out = scale H v per column, H the loss Hessian at y; OUTER: scale y (y^T v) -------
 * Buffers: 0 y, 1 v, 2 out. Naive in double: H v = v (squared), y (1 - y) v (Bernoulli),
 * y .* v - y (y^T v) (categorical); outer: y (y^T v). Squared: one rounding (and the reference's):
 * tol FLT_EPSILON |out|; Bernoulli: 1 - y, two products, scale: 3 FLT_EPSILON |out|; categorical
 * and outer: y^T v in double, one float rounding of y (v - s) (or y s) and of the scale product:
 * 2 FLT_EPSILON |out| + 1e-13 |scale y| (|v| + sum |y v|). y is a probability (Bernoulli, with 0
 * and 1), a softmax column (categorical) or any vector (squared, outer).
 * Variants: each mode with scale 1 and -0.375; one packed. In place: out = v. */
static int gen_loss_hvp(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    const int rows = s->m, cols = s->n, loss = v % 4, packed = !inplace && v == 6;
    const int ldy = max_i(1, packed ? rows : rows + 1), ldv = max_i(1, packed ? rows : rows + 2);
    const int ldo = inplace ? ldv : max_i(1, packed ? rows : rows + 3);
    const uint64_t seed = 271 + (uint64_t)v * 7 + (uint64_t)rows * 1000 + (uint64_t)cols;
    double *col = h_doubles(t, (size_t)(rows ? rows : 1));
    int y, vv, r, k;
    c->a.loss_hvp.rows = rows;
    c->a.loss_hvp.cols = cols;
    c->a.loss_hvp.loss = loss;
    c->a.loss_hvp.ldy = ldy;
    c->a.loss_hvp.ldv = ldv;
    c->a.loss_hvp.ldo = ldo;
    c->a.loss_hvp.scale = v < 4 ? 1.0f : -0.375f;
    y = eb_add(t, c, "y", R_IN, 0, rows, cols, ldy, AOFF(loss_hvp.y));
    if (loss == NG_LOSS_CATEGORICAL) {
        for (k = 0; k < cols; k++) {
            for (r = 0; r < rows; r++) col[r] = rnd(seed, AT(c, y, r, k), -3.0, 3.0);
            net_softmax_into(col, rows, IF(c, y) + AT(c, y, 0, k));
        }
    } else if (loss == NG_LOSS_BERNOULLI) {
        eb_rand(c, y, seed, 0.0, 1.0);
        net_big(c, y, 1.0f);
        if ((long)rows * cols >= 3) IF(c, y)[AT(c, y, rows - 1, cols - 1)] = 0.0f;
    } else
        eb_rand(c, y, seed, -2.0, 2.0);
    vv = eb_add(t, c, "v", R_IN, 0, rows, cols, ldv, AOFF(loss_hvp.v));
    eb_rand(c, vv, seed + 1, -2.0, 2.0);
    if (inplace) eb_alias(t, c, "out (= v)", R_INOUT, vv, AOFF(loss_hvp.out));
    else eb_add(t, c, "out", R_OUT, 0, rows, cols, ldo, AOFF(loss_hvp.out));
    what(c, "loss_hvp %s rows=%d cols=%d %s ldy=%d ldv=%d ldo=%d scale=%g", loss_names[loss], rows,
         cols, mode_name(inplace), ldy, ldv, ldo, (double)c->a.loss_hvp.scale);
    return 1;
}

static void ref_loss_hvp(ecase *c) {
    const int rows = c->a.loss_hvp.rows, cols = c->a.loss_hvp.cols, loss = c->a.loss_hvp.loss;
    const double sc = c->a.loss_hvp.scale;
    int r, k;
    for (k = 0; k < cols; k++) {
        double dot = 0.0, dabs = 0.0;
        for (r = 0; r < rows; r++) {
            double p = (double)IF(c, 0)[AT(c, 0, r, k)] * (double)IF(c, 1)[AT(c, 1, r, k)];
            dot += p;
            dabs += fabs(p);
        }
        for (r = 0; r < rows; r++) {
            double y = IF(c, 0)[AT(c, 0, r, k)], vr = IF(c, 1)[AT(c, 1, r, k)], out, tl;
            switch (loss) {
            case NG_LOSS_SQUARED:
                out = sc * vr;
                tl = EPS_F * fabs(out);
                break;
            case NG_LOSS_BERNOULLI:
                out = sc * y * (1.0 - y) * vr;
                tl = 3.0 * EPS_F * fabs(out);
                break;
            case NG_LOSS_CATEGORICAL:
                out = sc * (y * vr - y * dot);
                tl = 2.0 * EPS_F * fabs(out) + 1e-13 * fabs(sc * y) * (fabs(vr) + dabs);
                break;
            default:
                out = sc * y * dot;
                tl = 2.0 * EPS_F * fabs(out) + 1e-13 * fabs(sc * y) * dabs;
                break;
            }
            WF(c, 2)[AT(c, 2, r, k)] = (float)out;
            TL(c, 2)[AT(c, 2, r, k)] = tl + NET_TINY;
        }
    }
}

/* ---- sample_targets: t ~ p(t | y) from the Philox uniforms of (key, step) -------------------------
 * Buffers: 0 y, 1 t. Element i = r + rows c. Gaussian (squared): t = y + sqrt(-2 ln u1)
 * cos(2 pi u2) with u1, u2 the uniforms 2i and 2i+1, in double: the backends round the normal
 * and the sum to float (libm differences of ~1e-16 absolute): tol FLT_EPSILON (|n| + |t|) +
 * 1e-12. Bernoulli: [u_i <= y], exact (y = 0 never fires, y = 1 always). Categorical: column c
 * is one-hot at the first class whose cumulative probability (in double) reaches u_c, the last
 * class when none does; exact. The uniforms are naive_uniform (the RNG under the op, not its
 * math). The check adds the statistics: values 0/1 (Bernoulli), one-hot columns (categorical),
 * and for at least 1000 draws the mean and variance of t - y (Gaussian: 0 and 1 within 5 sigma),
 * the count of ones against sum y (Bernoulli) and each class's count against its summed
 * probability (categorical, >= 1000 columns), within 5 sigma.
 * Variants: each loss with two (key, step) pairs, one of them all ones; one packed; the global
 * position col0 of column 0 is 0 (v 0, 4) or 5, 3 and 2^34 + 1 (element i = r + rows (col0 + k):
 * odd starts split Gaussian pairs across elements). In place: t = y. Variants 6, 7, 8 (each loss)
 * count the step on the device as bernoulli's variants 2, 3, 2 do (buffer 2 "step_dev"; 7 with
 * col0 = 5). */
static const tshape sample_shapes[] = {ROWS8(1), ROWS8(2),  ROWS8(3),    ROWS8(4),
                                       {0, 3},   {3, 0},    {33, 9},     {64, 65},
                                       {129, 131}, {2, 2400}, {10, 3000}, {300, 230}};

static int gen_sample_targets(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    const int rows = s->m, cols = s->n, loss = v % 3, packed = !inplace && v == 3;
    const int ldy = max_i(1, packed ? rows : rows + 1);
    const int ldt = inplace ? ldy : max_i(1, packed ? rows : rows + 2);
    const uint64_t seed = 291 + (uint64_t)v * 7 + (uint64_t)rows * 1000 + (uint64_t)cols;
    int y, r, k;
    c->a.sample_targets.rows = rows;
    c->a.sample_targets.cols = cols;
    c->a.sample_targets.loss = loss;
    c->a.sample_targets.ldy = ldy;
    c->a.sample_targets.ldt = ldt;
    c->a.sample_targets.key = v == 4 ? ~0ull : ng_rng_key(301 + (uint64_t)v, 7);
    c->a.sample_targets.step = v == 4 ? ~0ull : v < 3 ? 5 : 0x500000003ull;
    c->a.sample_targets.col0 = v == 3 || v == 7 ? 5 : v == 2 ? 3 : v == 1 ? (1ull << 34) + 1 : 0;
    y = eb_add(t, c, "y", R_IN, 0, rows, cols, ldy, AOFF(sample_targets.y));
    if (loss == NG_LOSS_SQUARED) {
        eb_rand(c, y, seed, -2.0, 2.0);
    } else if (loss == NG_LOSS_BERNOULLI) {
        eb_rand(c, y, seed, 0.0, 1.0);
        net_big(c, y, 1.0f);
        if ((long)rows * cols >= 3) IF(c, y)[AT(c, y, rows - 1, cols - 1)] = 0.0f;
    } else {
        for (k = 0; k < cols; k++) {
            double w = 0.0;
            for (r = 0; r < rows; r++) {
                double p = rows > 2 && r == k % rows ? 0.0 : rnd(seed, AT(c, y, r, k), 0.0, 1.0);
                IF(c, y)[AT(c, y, r, k)] = (float)p;
                w += p;
            }
            for (r = 0; r < rows; r++)
                IF(c, y)[AT(c, y, r, k)] = (float)((double)IF(c, y)[AT(c, y, r, k)] / w);
        }
    }
    if (inplace) eb_alias(t, c, "t (= y)", R_INOUT, y, AOFF(sample_targets.t));
    else eb_add(t, c, "t", R_OUT, 0, rows, cols, ldt, AOFF(sample_targets.t));
    if (v >= 6) eb_step_dev(t, c, v == 7, AOFF(sample_targets.step_dev), &c->a.sample_targets.advance);
    what(c, "sample_targets %s rows=%d cols=%d %s ldy=%d ldt=%d key=%#llx step=%#llx col0=%llu%s",
         loss_names[loss], rows, cols, mode_name(inplace), ldy, ldt,
         (unsigned long long)c->a.sample_targets.key, (unsigned long long)c->a.sample_targets.step,
         (unsigned long long)c->a.sample_targets.col0, v >= 6 ? " (step counted on the device)" : "");
    return 1;
}

static void ref_sample_targets(ecase *c) {
    const int rows = c->a.sample_targets.rows, cols = c->a.sample_targets.cols;
    const int loss = c->a.sample_targets.loss;
    const uint64_t key = c->a.sample_targets.key, col0 = c->a.sample_targets.col0;
    const uint64_t step = c->a.sample_targets.step + step_dev_ref(c, 2, c->a.sample_targets.advance);
    int r, k;
    for (k = 0; k < cols; k++) {
        if (loss == NG_LOSS_CATEGORICAL) {
            double u = naive_uniform(key, step, col0 + (uint64_t)k), cum = 0.0;
            int hit = rows - 1;
            for (r = 0; r < rows; r++) {
                cum += (double)IF(c, 0)[AT(c, 0, r, k)];
                if (u <= cum) {
                    hit = r;
                    break;
                }
            }
            for (r = 0; r < rows; r++) WF(c, 1)[AT(c, 1, r, k)] = r == hit ? 1.0f : 0.0f;
            continue;
        }
        for (r = 0; r < rows; r++) {
            const uint64_t i = (uint64_t)r + (uint64_t)rows * (col0 + (uint64_t)k);
            double y = IF(c, 0)[AT(c, 0, r, k)];
            if (loss == NG_LOSS_BERNOULLI) {
                WF(c, 1)[AT(c, 1, r, k)] = (double)naive_uniform(key, step, i) <= y ? 1.0f : 0.0f;
            } else {
                double u1 = naive_uniform(key, step, 2 * i), u2 = naive_uniform(key, step, 2 * i + 1);
                double n = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
                WF(c, 1)[AT(c, 1, r, k)] = (float)(y + n);
                TL(c, 1)[AT(c, 1, r, k)] = EPS_F * (fabs(n) + fabs(y + n)) + 1e-12;
            }
        }
    }
}

static int check_sample_targets(const ecase *c, void *const got[]) {
    const int rows = c->a.sample_targets.rows, cols = c->a.sample_targets.cols;
    const int loss = c->a.sample_targets.loss;
    const float *tt = (const float *)got[1];
    const double n = (double)rows * cols;
    double s1 = 0.0, s2 = 0.0, sy = 0.0, var = 0.0;
    int r, k;
    for (k = 0; k < cols; k++) {
        int ones = 0;
        for (r = 0; r < rows; r++) {
            double tv = tt[AT(c, 1, r, k)], y = IF(c, 0)[AT(c, 0, r, k)];
            if (loss == NG_LOSS_SQUARED) {
                QCHECK(isfinite(tv), "%s: t[%d,%d] = %g", c->what, r, k, tv);
                s1 += tv - y;
                s2 += (tv - y) * (tv - y);
            } else {
                QCHECK(tv == 0.0 || tv == 1.0, "%s: t[%d,%d] = %.9g is not 0 or 1", c->what, r, k,
                       tv);
                ones += tv == 1.0;
                s1 += tv;
                sy += y;
                var += y * (1.0 - y);
            }
        }
        if (loss == NG_LOSS_CATEGORICAL && rows > 0)
            QCHECK(ones == 1, "%s: column %d has %d ones, want one-hot", c->what, k, ones);
    }
    if (loss == NG_LOSS_SQUARED && n >= 1000) {
        QCHECK(fabs(s1 / n) <= 5.0 / sqrt(n), "%s: mean of t - y %.5f, want 0 +- %.3g", c->what,
               s1 / n, 5.0 / sqrt(n));
        QCHECK(fabs(s2 / n - 1.0) <= 5.0 * sqrt(2.0 / n),
               "%s: mean of (t - y)^2 %.5f, want 1 +- %.3g", c->what, s2 / n, 5.0 * sqrt(2.0 / n));
    }
    if (loss == NG_LOSS_BERNOULLI && n >= 1000)
        QCHECK(fabs(s1 - sy) <= 5.0 * sqrt(var) + 1e-9, "%s: %.0f ones, want %.1f +- %.3g", c->what,
               s1, sy, 5.0 * sqrt(var));
    if (loss == NG_LOSS_CATEGORICAL && cols >= 1000)
        for (r = 0; r < rows; r++) {
            double cnt = 0.0, p = 0.0, pv = 0.0;
            for (k = 0; k < cols; k++) {
                double y = IF(c, 0)[AT(c, 0, r, k)];
                cnt += tt[AT(c, 1, r, k)];
                p += y;
                pv += y * (1.0 - y);
            }
            QCHECK(fabs(cnt - p) <= 5.0 * sqrt(pv) + 0.5,
                   "%s: class %d drawn %.0f times, want %.1f +- %.3g", c->what, r, cnt, p,
                   5.0 * sqrt(pv));
        }
    return NGT_PASS;
}

/* ---- row_moments: mean[r], rstd[r] = 1 / sqrt(var + eps) over the columns (biased var) ---------
 * Buffers: 0 x, 1 mean, 2 rstd (rows). Naive in double with Welford's one-pass update (the
 * backends take two passes): both are accurate to ~1e-15 relative, far below one float rounding:
 * tol 2 FLT_EPSILON |mean| + 1e-13 max|x| and 2 FLT_EPSILON rstd. Variants: x in [-2, 2] with
 * eps 1e-5; x = 100 +- 0.01 (large mean, small spread) with eps 1e-8; a constant row (var 0,
 * rstd = 1/sqrt(eps)) with eps 0.01, packed. Rows with no columns are an error (not generated). */
static const float rm_eps[] = {1e-5f, 1e-8f, 0.01f};

static int gen_row_moments(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    const int rows = s->m, cols = s->n, ldx = max_i(1, v == 2 ? rows : rows + 1 + v);
    const uint64_t seed = 311 + (uint64_t)v * 7 + (uint64_t)rows * 1000 + (uint64_t)cols;
    int x, k;
    (void)inplace;
    if (cols == 0 && rows > 0) return 0;
    c->a.row_moments.rows = rows;
    c->a.row_moments.cols = cols;
    c->a.row_moments.ldx = ldx;
    c->a.row_moments.eps = rm_eps[v];
    x = eb_add(t, c, "x", R_IN, 0, rows, cols, ldx, AOFF(row_moments.x));
    if (v == 1) eb_rand(c, x, seed, 99.99, 100.01);
    else eb_rand(c, x, seed, -2.0, 2.0);
    if (v == 2 && rows > 0)
        for (k = 0; k < cols; k++) IF(c, x)[AT(c, x, 0, k)] = 0.7f;
    eb_vec(t, c, "mean", R_OUT, 0, rows, AOFF(row_moments.mean));
    eb_vec(t, c, "rstd", R_OUT, 0, rows, AOFF(row_moments.rstd));
    what(c, "row_moments rows=%d cols=%d ldx=%d eps=%g%s", rows, cols, ldx, (double)rm_eps[v],
         v == 1 ? " (mean 100)" : v == 2 ? " (row 0 constant)" : "");
    return 1;
}

static void ref_row_moments(ecase *c) {
    const int rows = c->a.row_moments.rows, cols = c->a.row_moments.cols;
    int r, k;
    for (r = 0; r < rows; r++) {
        double mu = 0.0, m2 = 0.0, big = 0.0, rs;
        for (k = 0; k < cols; k++) {
            double x = IF(c, 0)[AT(c, 0, r, k)], dlt = x - mu;
            mu += dlt / (k + 1);
            m2 += dlt * (x - mu);
            if (fabs(x) > big) big = fabs(x);
        }
        rs = 1.0 / sqrt(m2 / cols + (double)c->a.row_moments.eps);
        WF(c, 1)[r] = (float)mu;
        TL(c, 1)[r] = 2.0 * EPS_F * fabs(mu) + 1e-13 * big + NET_TINY;
        WF(c, 2)[r] = (float)rs;
        TL(c, 2)[r] = 2.0 * EPS_F * rs + NET_TINY;
    }
}

/* ---- bn_normalize: xhat = (x - mean[r]) rstd[r]; xhat may alias x --------------------------------
 * Buffers: 0 x, 1 mean, 2 rstd (rows), 3 xhat. Two float roundings and the reference's:
 * tol 2 FLT_EPSILON |xhat|. Variants: padded, packed. In place: xhat = x. */
static int gen_bn_normalize(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    const int rows = s->m, cols = s->n, ldx = max_i(1, v ? rows : rows + 1);
    const int ldh = inplace ? ldx : max_i(1, v ? rows : rows + 3);
    const uint64_t seed = 331 + (uint64_t)v * 7 + (uint64_t)rows * 1000 + (uint64_t)cols;
    int x;
    c->a.bn_normalize.rows = rows;
    c->a.bn_normalize.cols = cols;
    c->a.bn_normalize.ldx = ldx;
    c->a.bn_normalize.ldh = ldh;
    x = eb_add(t, c, "x", R_IN, 0, rows, cols, ldx, AOFF(bn_normalize.x));
    eb_rand(c, x, seed, -3.0, 3.0);
    eb_rand(c, eb_vec(t, c, "mean", R_IN, 0, rows, AOFF(bn_normalize.mean)), seed + 1, -1.0, 1.0);
    eb_rand(c, eb_vec(t, c, "rstd", R_IN, 0, rows, AOFF(bn_normalize.rstd)), seed + 2, 0.5, 3.0);
    if (inplace) eb_alias(t, c, "xhat (= x)", R_INOUT, x, AOFF(bn_normalize.xhat));
    else eb_add(t, c, "xhat", R_OUT, 0, rows, cols, ldh, AOFF(bn_normalize.xhat));
    what(c, "bn_normalize rows=%d cols=%d %s ldx=%d ldh=%d", rows, cols, mode_name(inplace), ldx,
         ldh);
    return 1;
}

static void ref_bn_normalize(ecase *c) {
    int r, k;
    for (k = 0; k < c->a.bn_normalize.cols; k++)
        for (r = 0; r < c->a.bn_normalize.rows; r++) {
            double xh = ((double)IF(c, 0)[AT(c, 0, r, k)] - (double)IF(c, 1)[r]) * (double)IF(c, 2)[r];
            WF(c, 3)[AT(c, 3, r, k)] = (float)xh;
            TL(c, 3)[AT(c, 3, r, k)] = 2.0 * EPS_F * fabs(xh) + NET_TINY;
        }
}

/* ---- bn_merge: one float64 step of synchronised batch norm's merge across ranks ---------------
 * Variants (mode, count, scaled, columns): counts (7), counts of an empty shard (0: its means may be
 * anything, NaN included, and contribute 0), scatter (5; 0), finish (some summed scatters slightly
 * negative: the variance floors at 0), weight (4, scaled, 2 columns), means (3, scaled, 2),
 * weight (unscaled, 1), means (unscaled, 1). Buffers by mode, see the generator. The reference
 * repeats the definition in double: tol a few double roundings of the magnitudes (a GPU may contract
 * to FMA), float outputs one float rounding more. */
static const int bnm_mode[] = {NG_BN_MERGE_COUNTS, NG_BN_MERGE_COUNTS,  NG_BN_MERGE_SCATTER,
                               NG_BN_MERGE_SCATTER, NG_BN_MERGE_FINISH, NG_BN_MERGE_WEIGHT,
                               NG_BN_MERGE_MEANS,   NG_BN_MERGE_WEIGHT, NG_BN_MERGE_MEANS};
static const double bnm_cnt[] = {7.0, 0.0, 5.0, 0.0, 6.0, 4.0, 3.0, 0.0, 2.0};
static const int bnm_scaled[] = {0, 0, 0, 0, 0, 1, 1, 0, 0};
static const int bnm_cols[] = {0, 0, 0, 0, 0, 2, 2, 1, 1};
#define BNM_TOT 13.0 /* every rank's samples (the sum of the counts) */

static int gen_bn_merge(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    const int rows = s->m, mode = bnm_mode[v], cols = bnm_cols[v];
    const uint64_t seed = 911 + (uint64_t)v * 13 + (uint64_t)rows * 1000;
    int b, r;
    (void)inplace;
    if (rows == 0 && cols == 0) return 0; /* the empty op: weight and means (no row to count) */
    c->a.bn_merge.mode = mode;
    c->a.bn_merge.rows = rows;
    c->a.bn_merge.cols = cols;
    c->a.bn_merge.cnt = bnm_cnt[v];
    c->a.bn_merge.eps = 1e-3f;
    c->a.bn_merge.alpha = -1.0f;
    c->a.bn_merge.scaled = bnm_scaled[v];
    if (mode == NG_BN_MERGE_COUNTS || mode == NG_BN_MERGE_SCATTER) { /* 0 mean, 1 rstd in; 2 acc; [3 acc2] */
        b = eb_vec(t, c, "mean", R_IN, 0, rows, AOFF(bn_merge.mean));
        eb_rand(c, b, seed, -2.0, 2.0);
        if (bnm_cnt[v] == 0.0) IF(c, b)[0] = NAN;
        eb_rand(c, eb_vec(t, c, "rstd", R_IN, 0, rows, AOFF(bn_merge.rstd)), seed + 1, 0.5, 3.0);
        if (mode == NG_BN_MERGE_COUNTS) {
            eb_vec(t, c, "acc", R_OUT, 1, rows + 1, AOFF(bn_merge.acc));
        } else {
            b = eb_vec(t, c, "acc", R_INOUT, 1, rows + 1, AOFF(bn_merge.acc));
            eb_rand(c, b, seed + 2, -20.0, 20.0);
            ID(c, b)[rows] = BNM_TOT;
            eb_vec(t, c, "acc2", R_OUT, 1, rows, AOFF(bn_merge.acc2));
        }
    } else if (mode == NG_BN_MERGE_FINISH) { /* 0 mean, 1 rstd out; 2 acc, 3 acc2 in; 4 tot out */
        eb_vec(t, c, "mean", R_OUT, 0, rows, AOFF(bn_merge.mean));
        eb_vec(t, c, "rstd", R_OUT, 0, rows, AOFF(bn_merge.rstd));
        b = eb_vec(t, c, "acc", R_IN, 1, rows + 1, AOFF(bn_merge.acc));
        eb_rand(c, b, seed + 2, -2.0, 2.0);
        ID(c, b)[rows] = BNM_TOT;
        b = eb_vec(t, c, "acc2", R_IN, 1, rows, AOFF(bn_merge.acc2));
        eb_rand(c, b, seed + 3, 0.0, 30.0);
        for (r = 0; r < rows; r += 3) ID(c, b)[r] = -1e-13 * (double)(r + 1); /* rounding below 0 */
        eb_vec(t, c, "tot", R_OUT, 1, 1, AOFF(bn_merge.tot));
    } else if (mode == NG_BN_MERGE_WEIGHT) { /* 0 x in (ldx rows + 1); 1 tot in; 2 acc out */
        c->a.bn_merge.ldx = rows + 1;
        eb_rand(c, eb_add(t, c, "x", R_IN, 0, rows, cols, rows + 1, AOFF(bn_merge.x)), seed, -3.0, 3.0);
        eb_fill(c, eb_vec(t, c, "tot", R_IN, 1, 1, AOFF(bn_merge.tot)), BNM_TOT);
        eb_vec(t, c, "acc", R_OUT, 1, rows * cols, AOFF(bn_merge.acc));
    } else { /* MEANS: 0 acc in; 1 tot in; 2 out (ldo rows + 2) */
        c->a.bn_merge.ldo = rows + 2;
        eb_rand(c, eb_vec(t, c, "acc", R_IN, 1, rows * cols, AOFF(bn_merge.acc)), seed, -5.0, 5.0);
        eb_fill(c, eb_vec(t, c, "tot", R_IN, 1, 1, AOFF(bn_merge.tot)), BNM_TOT);
        eb_add(t, c, "out", R_OUT, 0, rows, cols, rows + 2, AOFF(bn_merge.out));
    }
    what(c, "bn_merge mode=%d rows=%d cols=%d cnt=%g scaled=%d", mode, rows, cols, bnm_cnt[v], bnm_scaled[v]);
    return 1;
}

static void ref_bn_merge(ecase *c) {
    const int mode = c->a.bn_merge.mode, rows = c->a.bn_merge.rows, cols = c->a.bn_merge.cols;
    const double cnt = c->a.bn_merge.cnt, eps = (double)c->a.bn_merge.eps;
    int r, k;
    if (mode == NG_BN_MERGE_COUNTS) {
        for (r = 0; r < rows; r++) {
            const double v = cnt > 0.0 ? cnt * (double)IF(c, 0)[r] : 0.0;
            ((double *)c->b[2].want)[r] = v;
            TL(c, 2)[r] = 2.0 * EPS_D * fabs(v);
        }
        ((double *)c->b[2].want)[rows] = cnt;
        TL(c, 2)[rows] = 0.0;
    } else if (mode == NG_BN_MERGE_SCATTER) {
        const double tot = ID(c, 2)[rows];
        for (r = 0; r < rows; r++) {
            const double mu = ID(c, 2)[r] / tot, dm = cnt > 0.0 ? (double)IF(c, 0)[r] - mu : 0.0;
            const double rs = (double)IF(c, 1)[r], iv = 1.0 / (rs * rs);
            const double v = cnt > 0.0 ? cnt * (iv - eps + dm * dm) : 0.0;
            ((double *)c->b[2].want)[r] = mu;
            TL(c, 2)[r] = 2.0 * EPS_D * fabs(mu);
            ((double *)c->b[3].want)[r] = v;
            TL(c, 3)[r] = cnt > 0.0 ? 8.0 * EPS_D * cnt * (iv + eps + dm * dm + fabs((double)IF(c, 0)[r] * dm)) : 0.0;
        }
        ((double *)c->b[2].want)[rows] = tot;
        TL(c, 2)[rows] = 0.0;
    } else if (mode == NG_BN_MERGE_FINISH) {
        const double tot = ID(c, 2)[rows];
        for (r = 0; r < rows; r++) {
            const double var = ID(c, 3)[r] / tot, rs = 1.0 / sqrt((var > 0.0 ? var : 0.0) + eps);
            WF(c, 0)[r] = (float)ID(c, 2)[r];
            TL(c, 0)[r] = 0.0;
            WF(c, 1)[r] = (float)rs;
            TL(c, 1)[r] = EPS_F * rs;
        }
        ((double *)c->b[4].want)[0] = tot;
        TL(c, 4)[0] = 0.0;
    } else {
        const double w = c->a.bn_merge.scaled ? cnt / BNM_TOT : 1.0;
        for (k = 0; k < cols; k++)
            for (r = 0; r < rows; r++)
                if (mode == NG_BN_MERGE_WEIGHT) {
                    const double v = w * (double)IF(c, 0)[AT(c, 0, r, k)];
                    ((double *)c->b[2].want)[(size_t)r + (size_t)rows * k] = v;
                    TL(c, 2)[(size_t)r + (size_t)rows * k] = 2.0 * EPS_D * fabs(v);
                } else {
                    const double v = (double)c->a.bn_merge.alpha * ID(c, 0)[(size_t)r + (size_t)rows * k] / BNM_TOT / w;
                    WF(c, 2)[AT(c, 2, r, k)] = (float)v;
                    TL(c, 2)[AT(c, 2, r, k)] = EPS_F * fabs(v) + 1e-30;
                }
    }
}

/* ---- outer_scale: out[r,c] = x[r,c] phi(u[r], v[c]) (K-FAC's inverse scalings) ----------------
 * Buffers: 0 x, 1 u (rows or NULL), 2 v (cols or NULL), 3 out. Variants (mode, u, v): (mul, given,
 * given), (mul, NULL, given), (rsqrt, NULL, given, some v below the floor), (stein, given, given,
 * some 1 - u v below the floor), (square, given, NULL), (pow -0.75, NULL, given, some v below the floor).
 * phi is one or two float roundings (the sqrt and the division are
 * correctly rounded on both backends) and the product one more: tol 4 FLT_EPSILON |out|, plus for
 * stein the cancellation in 1 - u v: 2 FLT_EPSILON |u v| / (1 - u v) relative. In place:
 * out = x. */
static const struct {
    int mode, u, v;
} osc_v[] = {{NG_OSCALE_MUL, 1, 1}, {NG_OSCALE_MUL, 0, 1}, {NG_OSCALE_RSQRT, 0, 1}, {NG_OSCALE_STEIN, 1, 1},
             {NG_OSCALE_SQUARE, 1, 0}, {NG_OSCALE_POW, 0, 1}};

static int gen_outer_scale(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    const int rows = s->m, cols = s->n, mode = osc_v[v].mode;
    const int ldx = max_i(1, v & 1 ? rows : rows + 2), ldo = inplace ? ldx : max_i(1, v & 1 ? rows + 1 : rows);
    const uint64_t seed = 371 + (uint64_t)v * 7 + (uint64_t)rows * 1000 + (uint64_t)cols;
    int x, k;
    c->a.outer_scale.rows = rows;
    c->a.outer_scale.cols = cols;
    c->a.outer_scale.mode = mode;
    c->a.outer_scale.ldx = ldx;
    c->a.outer_scale.ldo = ldo;
    c->a.outer_scale.floor = mode == NG_OSCALE_MUL || mode == NG_OSCALE_SQUARE ? 0.0f : 0.05f;
    c->a.outer_scale.power = mode == NG_OSCALE_POW ? -0.75f : 0.0f;
    x = eb_add(t, c, "x", R_IN, 0, rows, cols, ldx, AOFF(outer_scale.x));
    eb_rand(c, x, seed, -2.0, 2.0);
    k = osc_v[v].u ? eb_vec(t, c, "u", R_IN, 0, rows, AOFF(outer_scale.u)) : eb_null(c, "u");
    if (!c->b[k].is_null) eb_rand(c, k, seed + 1, mode == NG_OSCALE_STEIN ? -1.0 : -2.0, 1.0);
    k = osc_v[v].v ? eb_vec(t, c, "v", R_IN, 0, cols, AOFF(outer_scale.v)) : eb_null(c, "v");
    if (!c->b[k].is_null)
        eb_rand(c, k, seed + 2, mode == NG_OSCALE_RSQRT || mode == NG_OSCALE_POW ? -0.2 : (mode == NG_OSCALE_STEIN ? -1.0 : -2.0), 1.0);
    if (inplace) eb_alias(t, c, "out (= x)", R_INOUT, x, AOFF(outer_scale.out));
    else eb_add(t, c, "out", R_OUT, 0, rows, cols, ldo, AOFF(outer_scale.out));
    what(c, "outer_scale rows=%d cols=%d %s mode=%d u=%s ldx=%d ldo=%d", rows, cols, mode_name(inplace),
         mode, osc_v[v].u ? "given" : "NULL", ldx, ldo);
    return 1;
}

static void ref_outer_scale(ecase *c) {
    const int mode = c->a.outer_scale.mode;
    const double fl = (double)c->a.outer_scale.floor;
    const float *u = c->b[1].is_null ? NULL : IF(c, 1), *v = c->b[2].is_null ? NULL : IF(c, 2);
    int r, k;
    for (k = 0; k < c->a.outer_scale.cols; k++)
        for (r = 0; r < c->a.outer_scale.rows; r++) {
            double phi, o, rel = 4.0 * EPS_F;
            if (mode == NG_OSCALE_RSQRT) phi = 1.0 / sqrt((double)v[k] > fl ? (double)v[k] : fl);
            else if (mode == NG_OSCALE_POW) {
                phi = pow((double)v[k] > fl ? (double)v[k] : fl, (double)c->a.outer_scale.power);
                rel += 4.0 * EPS_F; /* powf: a few ulp */
            } else if (mode == NG_OSCALE_SQUARE)
                phi = (double)IF(c, 0)[AT(c, 0, r, k)] * (u ? (double)u[r] : 1.0);
            else if (mode == NG_OSCALE_STEIN) {
                double uv = (double)u[r] * (double)v[k], d = 1.0 - uv;
                phi = 1.0 / (d > fl ? d : fl);
                rel += 2.0 * EPS_F * fabs(uv) / (d > fl ? d : fl); /* the float u v rounded, then 1 - u v */
            } else phi = (u ? (double)u[r] : 1.0) * (double)v[k];
            o = (double)IF(c, 0)[AT(c, 0, r, k)] * phi;
            WF(c, 3)[AT(c, 3, r, k)] = (float)o;
            TL(c, 3)[AT(c, 3, r, k)] = rel * fabs(o) + NET_TINY;
        }
}

/* ---- factor_update: C_e = beta C_e + alpha_e X_e Y_e^T for several factors in one call -----------
 * Shape (m, n): k = n cases. Variant 0: a symmetric m x m entry (X padded) and a cross entry
 * (m x (m/2 + 1), sharing X) with beta 0.75; variant 1: symmetric entries of m and m/2 + 1 and a cross
 * m x 3 entry with beta 0 (every C starts NaN). A symmetric entry's old C is read on its lower
 * triangle (the upper starts NaN in variant 0 to prove it). Reference in double; tolerance
 * (k + 4) FLT_EPSILON (|beta C| + |alpha| sum_k |x y|). check: symmetric entries exactly symmetric.
 * Buffers: variant 0: 0 X, 1 C1, 2 Y2, 3 C2; variant 1: 0 X1, 1 C1, 2 X2, 3 C2, 4 Y3, 5 C3. */
static int gen_factor_update(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    const int m = s->m, k = s->n, h = m ? m / 2 + 1 : 0, h1 = max_i(1, h), m1 = max_i(1, m), m2 = m + 1, m3 = m + 2;
    const uint64_t seed = 391 + (uint64_t)v * 7 + (uint64_t)m * 1000 + (uint64_t)k;
    int X, C1, Y, C2, r, col;
    (void)inplace;
    c->a.factor_update.k = k;
    c->a.factor_update.beta = v ? 0.0f : 0.75f;
    if (v == 0) {
        c->a.factor_update.count = 2;
        X = eb_add(t, c, "X", R_IN, 0, m, k, m2, AOFF(factor_update.e[0].X));
        eb_rand(c, X, seed, -1.0, 1.0);
        c->a.factor_update.e[0] = (ng_factor_entry){m, m, NULL, m2, NULL, m2, 0.5f, NULL, m3};
        C1 = eb_add(t, c, "C1", R_INOUT, 0, m, m, m3, AOFF(factor_update.e[0].C));
        eb_rand(c, C1, seed + 1, -1.0, 1.0);
        for (col = 0; col < m; col++)
            for (r = 0; r < col; r++) IF(c, C1)[AT(c, C1, r, col)] = NAN;
        eb_alias(t, c, "X (as Y of entry 0)", R_IN, X, AOFF(factor_update.e[0].Y));
        c->a.factor_update.e[1] = (ng_factor_entry){m, h, NULL, m2, NULL, h1, -0.25f, NULL, m1};
        eb_alias(t, c, "X (entry 1)", R_IN, X, AOFF(factor_update.e[1].X));
        Y = eb_add(t, c, "Y2", R_IN, 0, h, k, h1, AOFF(factor_update.e[1].Y));
        eb_rand(c, Y, seed + 2, -1.0, 1.0);
        C2 = eb_add(t, c, "C2", R_INOUT, 0, m, h, m1, AOFF(factor_update.e[1].C));
        eb_rand(c, C2, seed + 3, -1.0, 1.0);
    } else {
        int X2, C3, Y3;
        c->a.factor_update.count = 3;
        X = eb_add(t, c, "X1", R_IN, 0, m, k, m1, AOFF(factor_update.e[0].X));
        eb_rand(c, X, seed, -1.0, 1.0);
        eb_alias(t, c, "X1 (as Y)", R_IN, X, AOFF(factor_update.e[0].Y));
        c->a.factor_update.e[0] = (ng_factor_entry){m, m, NULL, m1, NULL, m1, 1.0f / (k ? k : 1), NULL, m1};
        C1 = eb_add(t, c, "C1", R_OUT, 0, m, m, m1, AOFF(factor_update.e[0].C));
        X2 = eb_add(t, c, "X2", R_IN, 0, h, k, h + 3, AOFF(factor_update.e[1].X));
        eb_rand(c, X2, seed + 1, -2.0, 2.0);
        eb_alias(t, c, "X2 (as Y)", R_IN, X2, AOFF(factor_update.e[1].Y));
        c->a.factor_update.e[1] = (ng_factor_entry){h, h, NULL, h + 3, NULL, h + 3, 2.0f, NULL, h + 1};
        C2 = eb_add(t, c, "C2", R_OUT, 0, h, h, h + 1, AOFF(factor_update.e[1].C));
        eb_alias(t, c, "X1 (entry 2)", R_IN, X, AOFF(factor_update.e[2].X));
        Y3 = eb_add(t, c, "Y3", R_IN, 0, 3, k, 3, AOFF(factor_update.e[2].Y));
        eb_rand(c, Y3, seed + 2, -1.0, 1.0);
        c->a.factor_update.e[2] = (ng_factor_entry){m, 3, NULL, m1, NULL, 3, 1.5f, NULL, m1};
        C3 = eb_add(t, c, "C3", R_OUT, 0, m, 3, m1, AOFF(factor_update.e[2].C));
        (void)C2, (void)C3;
    }
    what(c, "factor_update m=%d k=%d variant %d (beta %g)", m, k, v, (double)c->a.factor_update.beta);
    return 1;
}

/* reference of one entry: X, Y, C buffer indices */
static void ref_factor_entry(ecase *c, int e, int bx, int by, int bc) {
    const ng_factor_entry *E = &c->a.factor_update.e[e];
    const int k = c->a.factor_update.k, sym = bx == by;
    const double beta = c->a.factor_update.beta, alpha = E->alpha;
    int r, col, q;
    for (col = 0; col < E->cols; col++)
        for (r = 0; r < E->rows; r++) {
            double acc = 0.0, mag = 0.0, old = 0.0, v;
            for (q = 0; q < k; q++) {
                double p = (double)IF(c, bx)[AT(c, bx, r, q)] * (double)IF(c, by)[AT(c, by, col, q)];
                acc += p;
                mag += fabs(p);
            }
            if (beta != 0.0) old = sym && r < col ? IF(c, bc)[AT(c, bc, col, r)] : IF(c, bc)[AT(c, bc, r, col)];
            v = (beta != 0.0 ? beta * old : 0.0) + alpha * acc;
            WF(c, bc)[AT(c, bc, r, col)] = (float)v;
            TL(c, bc)[AT(c, bc, r, col)] = (k + 4) * EPS_F * (fabs(beta * old) + fabs(alpha) * mag) + NET_TINY;
        }
}

static void ref_factor_update(ecase *c) {
    if (c->a.factor_update.count == 2) {
        ref_factor_entry(c, 0, 0, 0, 1);
        ref_factor_entry(c, 1, 0, 4, 5);
    } else {
        ref_factor_entry(c, 0, 0, 0, 2);
        ref_factor_entry(c, 1, 3, 3, 5);
        ref_factor_entry(c, 2, 0, 7, 8);
    }
}

/* symmetric entries come out exactly symmetric */
static int check_factor_update(const ecase *c, void *const got[]) {
    int ent, nsym = c->a.factor_update.count == 2 ? 1 : 2;
    const int cb[2] = {c->a.factor_update.count == 2 ? 1 : 2, 5};
    for (ent = 0; ent < nsym; ent++) {
        const ng_factor_entry *E = &c->a.factor_update.e[ent];
        const float *C = (const float *)got[cb[ent]];
        int r, col, ld = c->b[cb[ent]].ld;
        for (col = 0; col < E->cols; col++)
            for (r = 0; r < col; r++)
                if (memcmp(&C[r + (size_t)col * ld], &C[col + (size_t)r * ld], sizeof(float)) != 0) {
                    printf("  factor_update: symmetric entry %d: C[%d,%d] = %.9g but C[%d,%d] = %.9g\n", ent, r, col,
                           (double)C[r + (size_t)col * ld], col, r, (double)C[col + (size_t)r * ld]);
                    return NGT_FAIL;
                }
    }
    return NGT_PASS;
}

/* ---- bn_project: out = s1 s2 (g - mean_c g - xhat mean_c(g xhat)) + beta out, row by row --------
 * Buffers: 0 g, 1 xhat, 2 s1, 3 s2 (rows or NULL), 4 out. Naive in double. The backend rounds
 * s1 s2, the projected value v and beta out and their sum (u each, the reference one more), and
 * its double means differ from these by ~1e-16 of the terms: tol 2 FLT_EPSILON (|v| +
 * |beta out|) + 1e-12 |s| (|g| + |mean g| + |xhat mean(g xhat)|). beta = 0 ignores out (NaN
 * there, out of place). Variants (s1, s2, beta): (given, given, 0), (given, NULL, 0.5), (NULL,
 * NULL, 0) packed, (NULL, given, -1). In place: out = g (beta then scales g). */
static const struct {
    int s1, s2;
    float beta;
} bnp_v[] = {{1, 1, 0.0f}, {1, 0, 0.5f}, {0, 0, 0.0f}, {0, 1, -1.0f}};

static int gen_bn_project(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    const int rows = s->m, cols = s->n, packed = !inplace && v == 2;
    const int ldg = max_i(1, packed ? rows : rows + 1), ldx = max_i(1, packed ? rows : rows + 2);
    const int ldo = inplace ? ldg : max_i(1, packed ? rows : rows + 3);
    const uint64_t seed = 351 + (uint64_t)v * 7 + (uint64_t)rows * 1000 + (uint64_t)cols;
    int g, k, o;
    c->a.bn_project.rows = rows;
    c->a.bn_project.cols = cols;
    c->a.bn_project.ldg = ldg;
    c->a.bn_project.ldx = ldx;
    c->a.bn_project.ldo = ldo;
    c->a.bn_project.beta = bnp_v[v].beta;
    g = eb_add(t, c, "g", R_IN, 0, rows, cols, ldg, AOFF(bn_project.g));
    eb_rand(c, g, seed, -1.0, 1.0);
    eb_rand(c, eb_add(t, c, "xhat", R_IN, 0, rows, cols, ldx, AOFF(bn_project.xhat)), seed + 1,
            -2.0, 2.0);
    k = bnp_v[v].s1 ? eb_vec(t, c, "s1", R_IN, 0, rows, AOFF(bn_project.s1)) : eb_null(c, "s1");
    if (!c->b[k].is_null) eb_rand(c, k, seed + 2, 0.5, 2.0);
    k = bnp_v[v].s2 ? eb_vec(t, c, "s2", R_IN, 0, rows, AOFF(bn_project.s2)) : eb_null(c, "s2");
    if (!c->b[k].is_null) eb_rand(c, k, seed + 3, -2.0, 2.0);
    if (inplace) eb_alias(t, c, "out (= g)", R_INOUT, g, AOFF(bn_project.out));
    else {
        o = eb_add(t, c, "out", R_INOUT, 0, rows, cols, ldo, AOFF(bn_project.out));
        if (bnp_v[v].beta == 0.0f) eb_fill(c, o, NAN);
        else eb_rand(c, o, seed + 4, -1.0, 1.0);
    }
    what(c, "bn_project rows=%d cols=%d %s ldg=%d ldx=%d ldo=%d s1=%s s2=%s beta=%g%s", rows, cols,
         mode_name(inplace), ldg, ldx, ldo, bnp_v[v].s1 ? "given" : "NULL",
         bnp_v[v].s2 ? "given" : "NULL", (double)bnp_v[v].beta,
         !inplace && bnp_v[v].beta == 0.0f ? " (NaN in out)" : "");
    return 1;
}

static void ref_bn_project(ecase *c) {
    const int rows = c->a.bn_project.rows, cols = c->a.bn_project.cols;
    const double beta = c->a.bn_project.beta;
    int r, k;
    for (r = 0; r < rows; r++) {
        double s = (c->b[2].is_null ? 1.0 : (double)IF(c, 2)[r]) *
                   (c->b[3].is_null ? 1.0 : (double)IF(c, 3)[r]);
        double mg = 0.0, mgx = 0.0;
        for (k = 0; k < cols; k++) {
            double gv = IF(c, 0)[AT(c, 0, r, k)];
            mg += gv;
            mgx += gv * (double)IF(c, 1)[AT(c, 1, r, k)];
        }
        mg /= cols;
        mgx /= cols;
        for (k = 0; k < cols; k++) {
            double gv = IF(c, 0)[AT(c, 0, r, k)], xh = IF(c, 1)[AT(c, 1, r, k)];
            double pv = s * (gv - mg - xh * mgx);
            double bo = beta == 0.0 ? 0.0 : beta * (double)IF(c, 4)[AT(c, 4, r, k)];
            WF(c, 4)[AT(c, 4, r, k)] = (float)(pv + bo);
            TL(c, 4)[AT(c, 4, r, k)] = 2.0 * EPS_F * (fabs(pv) + fabs(bo)) +
                                       1e-12 * fabs(s) * (fabs(gv) + fabs(mg) + fabs(xh * mgx)) +
                                       NET_TINY;
        }
    }
}

/* ---- minresqlp_step: MINRES-QLP's scalar recurrence, one system per thread ---------------------
 * Buffers: 0 state (double, NG_MQLP_NSTATE per system), 1 sc (float, NG_MQLP_NSC per system), both
 * in place, and 2 a history the op does not see (pointer nowhere): per system its iteration k,
 * the Lanczos scalars alpha_1..alpha_k, beta_1..beta_{k+1} (float values, from a float64 Lanczos
 * run on a diagonal matrix), and the coordinates in the Lanczos basis of x, xl2, wl, w before step
 * k, obtained by applying the coefficients of steps 1..k-1 (ng_mqlp_run on the host) to e_i.
 * Reference: the same body on the host (the CPU backend calls it: bit for bit up to 1e-12
 * relative, which leaves room for nvcc's FMA contraction). Naive check (both backends): the step's
 * coefficients applied to the coordinates give x_k = V_k y_k with y_k the minimum-length least-
 * squares solution of T_{k+1,k} y = beta_1 e_1 (LAPACKE_dgelsd in float64), ||r_k|| and ||x_k||
 * match it, a frozen system keeps x. Variants: init (beta_1 = 0 on some systems), MINRES steps on
 * SPD T, QLP steps throughout on indefinite T, a transfer (trancond 4), a singular incompatible T
 * (the minimum-length solution when the last diagonal of L vanishes, then frozen), max_iter = 3. */
#define MQ_K 10
#define MQ_H (2 + 2 * MQ_K + 2 + 4 * MQ_K) /* k, beta1, alpha[K], beta[K + 1] (+ pad), x, xl2, wl, w */
static const tshape mq_shapes[] = {{0, 1}, {1, 1}, {2, 1}, {3, 1}, {5, 1}, {9, 1}, {17, 1}, {100, 1}};
static const struct {
    int init, kind, max_iter;
    double trancond;
} mq_v[] = {{1, 0, 50, 1e7}, {0, 0, 50, 1e7}, {0, 1, 50, 1.0}, {0, 1, 50, 4.0}, {0, 2, 50, 1e7}, {0, 0, 3, 1e7}};
#define MQ_RTOL 1e-9
#define MQ_MAXX 1e7
#define MQ_SINGTOL 1e-6

static double mq_nrm(const double *x, int n) {
    double q = 0.0;
    int i;
    for (i = 0; i < n; i++) q += x[i] * x[i];
    return sqrt(q);
}

/* Lanczos in float64 on D = diag(d) (10 entries) from b; alpha[i], beta[i] (beta[0] = ||b||)
 * rounded to float; stops at an invariant subspace (later scalars 0: those steps are frozen). */
static void mq_lanczos(int kind, int j, double *alpha, double *beta) {
    double d[10], v[10], vp[10], p[10];
    int i, r;
    for (r = 0; r < 10; r++) {
        d[r] = kind == 0 ? 1.0 + r + 0.1 * (j % 7) : kind == 1 ? (r % 2 ? -1.0 : 1.0) * (0.5 + r) : (double)(r % 4);
        v[r] = 1.0 + 0.05 * ((r * 7 + j) % 5);
        vp[r] = 0.0;
    }
    beta[0] = (float)mq_nrm(v, 10);
    for (r = 0; r < 10; r++) v[r] /= beta[0];
    for (i = 0; i < MQ_K; i++) {
        double a = 0.0, bn;
        for (r = 0; r < 10; r++) p[r] = d[r] * v[r] - (i ? beta[i] : 0.0) * vp[r];
        for (r = 0; r < 10; r++) a += v[r] * p[r];
        for (r = 0; r < 10; r++) p[r] -= a * v[r];
        bn = mq_nrm(p, 10);
        alpha[i] = (float)a;
        beta[i + 1] = bn > 1e-10 ? (double)(float)bn : 0.0;
        if (beta[i + 1] == 0.0) {
            for (i = i + 1; i < MQ_K; i++) alpha[i] = beta[i + 1] = 0.0;
            return;
        }
        for (r = 0; r < 10; r++) {
            vp[r] = v[r];
            v[r] = p[r] / bn;
        }
    }
}

/* coordinates (x, xl2, wl, w) after the vector maps of coefficients sc with v = e_i (as minresqlp.c) */
static void mq_apply(const float *sc, double *co, int i) {
    double *x = co, *xl2 = co + MQ_K, *wl = co + 2 * MQ_K, *w = co + 3 * MQ_K;
    int r;
    for (r = 0; r < MQ_K; r++) {
        const double v = r == i ? 1.0 : 0.0;
        const double nw = sc[NG_MQLP_SC_B1] * wl[r] + sc[NG_MQLP_SC_B2] * w[r] + sc[NG_MQLP_SC_B3] * v;
        const double nwl = sc[NG_MQLP_SC_A1] * wl[r] + sc[NG_MQLP_SC_A2] * w[r] + sc[NG_MQLP_SC_A3] * v;
        xl2[r] = sc[NG_MQLP_SC_E0] * x[r] + sc[NG_MQLP_SC_E1] * xl2[r] + sc[NG_MQLP_SC_E2] * wl[r] +
                 sc[NG_MQLP_SC_E3] * w[r] + sc[NG_MQLP_SC_E4] * v;
        x[r] = sc[NG_MQLP_SC_F0] * x[r] + sc[NG_MQLP_SC_F1] * xl2[r] + sc[NG_MQLP_SC_F2] * nwl + sc[NG_MQLP_SC_F3] * nw;
        w[r] = nw;
        wl[r] = nwl;
    }
}

static int gen_minresqlp_step(tctx *t, const tshape *s, int inplace, int v, ecase *c) {
    const int count = s->m;
    int st, sc, hi, j;
    (void)inplace;
    c->a.minresqlp_step.count = count;
    c->a.minresqlp_step.init = mq_v[v].init;
    c->a.minresqlp_step.max_iter = mq_v[v].max_iter;
    c->a.minresqlp_step.rtol = MQ_RTOL;
    c->a.minresqlp_step.maxxnorm = MQ_MAXX;
    c->a.minresqlp_step.trancond = mq_v[v].trancond;
    c->a.minresqlp_step.singtol = MQ_SINGTOL;
    st = eb_vec(t, c, "state", R_INOUT, 1, count * NG_MQLP_NSTATE, AOFF(minresqlp_step.state));
    sc = eb_vec(t, c, "sc", R_INOUT, 0, count * NG_MQLP_NSC, AOFF(minresqlp_step.sc));
    hi = eb_vec(t, c, "history", R_IN, 1, count * MQ_H, 0);
    for (j = 0; j < count; j++) {
        double *S = ID(c, st) + (size_t)j * NG_MQLP_NSTATE, *H = ID(c, hi) + (size_t)j * MQ_H;
        double *al = H + 2, *be = al + MQ_K, *co = be + MQ_K + 2;
        float *C = IF(c, sc) + (size_t)j * NG_MQLP_NSC;
        const int k = mq_v[v].init ? 0 : 1 + j % (MQ_K - 1);
        int i;
        mq_lanczos(mq_v[v].kind, j, al, be);
        if (mq_v[v].init && j % 4 == 3) be[0] = 0.0; /* b = 0 */
        H[0] = k;
        H[1] = be[0];
        C[NG_MQLP_SC_BETAN] = (float)be[0];
        if (mq_v[v].init) continue;
        ng_mqlp_init(S, C);
        for (i = 1; i < k; i++) {
            C[NG_MQLP_SC_ALPHA] = (float)al[i - 1];
            C[NG_MQLP_SC_BETAN] = (float)be[i];
            ng_mqlp_step(S, C, mq_v[v].max_iter, MQ_RTOL, MQ_MAXX, mq_v[v].trancond, MQ_SINGTOL);
            mq_apply(C, co, i - 1);
        }
        C[NG_MQLP_SC_ALPHA] = (float)al[k - 1];
        C[NG_MQLP_SC_BETAN] = (float)be[k];
    }
    what(c, "minresqlp_step count=%d %s kind=%d max_iter=%d trancond=%g", count, mq_v[v].init ? "init" : "step",
         mq_v[v].kind, mq_v[v].max_iter, mq_v[v].trancond);
    return 1;
}

static void ref_minresqlp_step(ecase *c) {
    const int count = c->a.minresqlp_step.count;
    int j, i;
    for (j = 0; j < count; j++) {
        double *S = ID(c, 0) + (size_t)j * NG_MQLP_NSTATE, *want = (double *)c->b[0].want + (size_t)j * NG_MQLP_NSTATE;
        float *W = WF(c, 1) + (size_t)j * NG_MQLP_NSC;
        memcpy(want, S, NG_MQLP_NSTATE * sizeof(double));
        ng_mqlp_run(want, W, c->a.minresqlp_step.init, c->a.minresqlp_step.max_iter, c->a.minresqlp_step.rtol,
                    c->a.minresqlp_step.maxxnorm, c->a.minresqlp_step.trancond, c->a.minresqlp_step.singtol);
        for (i = 0; i < NG_MQLP_NSTATE; i++) TL(c, 0)[(size_t)j * NG_MQLP_NSTATE + i] = 1e-12 * (1.0 + fabs(want[i]));
        for (i = 0; i < NG_MQLP_NSC; i++) TL(c, 1)[(size_t)j * NG_MQLP_NSC + i] = 1e-6 * (1.0 + fabs((double)W[i]));
    }
}

/* The naive float64 check of one backend's outputs (see the block comment). */
static int check_minresqlp_step(const ecase *c, void *const got[]) {
    const int count = c->a.minresqlp_step.count;
    int j;
    if (c->a.minresqlp_step.init) return NGT_PASS;
    for (j = 0; j < count; j++) {
        const double *S0 = ID(c, 0) + (size_t)j * NG_MQLP_NSTATE;
        const double *S = (const double *)got[0] + (size_t)j * NG_MQLP_NSTATE;
        const float *C = (const float *)got[1] + (size_t)j * NG_MQLP_NSC;
        const double *H = ID(c, 2) + (size_t)j * MQ_H, *al = H + 2, *be = al + MQ_K;
        const int k = (int)H[0], flag = (int)S[NG_MQLP_FLAG];
        double co[4 * MQ_K], T[(MQ_K + 1) * MQ_K], rhs[MQ_K + 1], sv[MQ_K], yn = 0.0, d = 0.0, rn = 0.0;
        int i, rank;
        memcpy(co, be + MQ_K + 2, sizeof co);
        mq_apply(C, co, k - 1);
        if ((int)S0[NG_MQLP_FLAG] != NG_MQLP_RUNNING) { /* frozen: x as it was */
            for (i = 0; i < MQ_K; i++)
                if (co[i] != (be + MQ_K + 2)[i]) {
                    printf("  system %d (k = %d, stopped): x moved\n", j, k);
                    return NGT_FAIL;
                }
            continue;
        }
        memset(T, 0, sizeof T);
        for (i = 0; i < k; i++) {
            T[i + (size_t)i * (k + 1)] = al[i];
            T[i + 1 + (size_t)i * (k + 1)] = be[i + 1];
            if (i + 1 < k) T[i + (size_t)(i + 1) * (k + 1)] = be[i + 1];
        }
        memset(rhs, 0, sizeof rhs);
        rhs[0] = H[1];
        if (LAPACKE_dgelsd(LAPACK_COL_MAJOR, k + 1, k, 1, T, k + 1, rhs, k + 1, sv, MQ_SINGTOL, &rank) != 0) return NGT_FAIL;
        for (i = 0; i < k; i++) {
            yn += rhs[i] * rhs[i];
            d += (co[i] - rhs[i]) * (co[i] - rhs[i]);
        }
        for (i = 0; i < MQ_K; i++)
            if (i >= k) d += co[i] * co[i];
        yn = sqrt(yn);
        d = sqrt(d);
        /* ||r_k|| = ||beta1 e1 - T y||: rebuild T (dgelsd overwrote it) */
        for (i = 0; i <= k; i++) {
            double r = i == 0 ? H[1] : 0.0;
            if (i < k) r -= al[i] * rhs[i];
            if (i > 0) r -= be[i] * rhs[i - 1];
            if (i + 1 < k) r -= be[i + 1] * rhs[i + 1];
            rn += r * r;
        }
        rn = sqrt(rn);
        if (!(d <= 1e-5 * (1.0 + yn))) {
            printf("  system %d (k = %d, flag %d, rank %d): x coordinates off the minimum-length solution by %.3g (||y|| %.3g)\n",
                   j, k, flag, rank, d, yn);
            return NGT_FAIL;
        }
        if (flag != 2 && flag != 4 && flag != 6 && flag != 9 &&
            (!(fabs(S[NG_MQLP_RNORM] - rn) <= 1e-9 * H[1]) || !(fabs(S[NG_MQLP_XNORM] - yn) <= 1e-9 * (1.0 + yn)))) {
            printf("  system %d (k = %d, flag %d): ||r|| %.12g want %.12g, ||x|| %.12g want %.12g\n", j, k, flag,
                   S[NG_MQLP_RNORM], rn, S[NG_MQLP_XNORM], yn);
            return NGT_FAIL;
        }
        if (k < 4 && rank == k && c->a.minresqlp_step.trancond >= 1e7 && S[NG_MQLP_QLPITER] != 0.0) {
            printf("  system %d: QLP steps with trancond %g\n", j, c->a.minresqlp_step.trancond);
            return NGT_FAIL;
        }
    }
    return NGT_PASS;
}

/* ---- the table: one descriptor per ng_op ----------------------------------------------------- */

/* ---- conv_gather: im2col, col2im, pooling and its gradients, NCHW <-> NHWC ---------------------
 * Shapes index the geometries below (tshape.m; n unused); variants are the modes. Buffers: 0 x,
 * 1 g (col or dy; NULL where the mode reads none), 2 out. The references are written directly
 * from the definitions (natgrad/nn_types.h) in double: im2col and the layouts copy (bit for bit),
 * col2im and the pooling gradients scatter every window's entries onto the pixels (another
 * summation order than the op's gather: tol (terms + 1) FLT_EPSILON sum |terms|), max pooling
 * takes the first maximum (bit for bit), average pooling divides the window sum by kh kw; the
 * augmentation draws its shifts and mirrors from the Philox stream written out (bit for bit); the
 * R-operator of max pooling copies g at the first maximum of x (bit for bit). */
static const ng_conv_shape cg_geom[] = {
    {1, 1, 1, 1, 1, 1, 1, 0}, {2, 3, 5, 4, 3, 3, 1, 1}, {2, 2, 6, 6, 2, 2, 2, 0}, {1, 3, 7, 5, 3, 2, 2, 1},
    {3, 2, 8, 8, 3, 3, 2, 1}, {2, 4, 9, 7, 5, 5, 1, 2}, {1, 1, 4, 4, 4, 4, 1, 0}, {0, 2, 4, 4, 2, 2, 2, 0},
    {2, 16, 14, 14, 3, 3, 3, 2}, {4, 8, 28, 28, 3, 3, 1, 1}};
static const tshape cg_shapes[] = {{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 1}, {6, 1}, {7, 1}, {8, 1}, {9, 1}};
static const char *const cg_mode_name[] = {"im2col", "col2im", "pool_max", "pool_avg",
                                           "pool_max_back", "pool_avg_back", "to_nhwc", "to_nchw", "augment",
                                           "pool_max_r"};

/* (tshape.n = 0: the empty geometry, n = 0 images). Variant NG_CONV_MODE_COUNT is AUGMENT with the
 * step counted on the device (buffer 3 "step_dev", two 64-bit words {base, 0} in a float64 buffer,
 * base above 2^32): it draws at base + step and must leave {base + 1, 0}, bit for bit (an empty
 * op too). */
static int gen_conv_gather(tctx *t, const tshape *sh, int inplace, int v, ecase *c) {
    const int dev = v == NG_CONV_MODE_COUNT;
    ng_conv_shape sv = cg_geom[sh->n == 0 ? 7 : sh->m];
    const ng_conv_shape *s = &sv;
    const size_t nx = (size_t)s->n * s->c * s->h * s->w;
    size_t ncol, ny, ng;
    const uint64_t seed = 911 + (uint64_t)v * 13 + (uint64_t)sh->m * 1000;
    const int reads_x = v != NG_CONV_COL2IM && v != NG_CONV_POOL_AVG_BACK;
    (void)inplace;
    if (dev) v = NG_CONV_AUGMENT;
    if (v == NG_CONV_AUGMENT) { /* crops of 1..3 pixels and mirrors */
        sv.pad = 1 + sh->m % 3;
        sv.kh = sv.kw = 2 * sv.pad + 1;
        c->a.conv_gather.flip = 1;
        c->a.conv_gather.key = 0x5eed0000u + (uint64_t)sh->m;
        c->a.conv_gather.step = 7 + (uint64_t)sh->m;
        c->a.conv_gather.b0 = (uint64_t)sh->m * 5; /* images counted from b0 in the stream */
    }
    ncol = ng_conv_gather_count(NG_CONV_IM2COL, s);
    ny = ng_conv_gather_count(NG_CONV_POOL_MAX, s);
    ng = v == NG_CONV_COL2IM ? ncol : (v == NG_CONV_POOL_MAX_BACK || v == NG_CONV_POOL_AVG_BACK) ? ny
         : v == NG_CONV_POOL_MAX_R ? nx : 0;
    c->a.conv_gather.mode = v;
    c->a.conv_gather.s = *s;
    if (reads_x) eb_rand(c, eb_vec(t, c, "x", R_IN, 0, (int)nx, AOFF(conv_gather.x)), seed, -2.0, 2.0);
    else eb_null(c, "x");
    if (ng) eb_rand(c, eb_vec(t, c, "g", R_IN, 0, (int)ng, AOFF(conv_gather.g)), seed + 1, -1.0, 1.0);
    else eb_null(c, "g");
    eb_vec(t, c, "out", R_OUT, 0, (int)ng_conv_gather_count(v, s), AOFF(conv_gather.out));
    if (dev) {
        const uint64_t w[2] = {((uint64_t)5 << 32) + 3u * (uint64_t)sh->m, 0};
        int sd = eb_vec(t, c, "step_dev", R_INOUT, 1, 2, AOFF(conv_gather.step_dev));
        memcpy(c->b[sd].init, w, sizeof w);
        c->a.conv_gather.advance = 1;
    } else
        eb_null(c, "step_dev");
    what(c, "conv_gather %s n=%d c=%d h=%d w=%d window %dx%d stride %d pad %d%s", cg_mode_name[v], s->n, s->c, s->h,
         s->w, s->kh, s->kw, s->stride, s->pad, dev ? " (step counted on the device)" : "");
    return 1;
}

static void ref_conv_gather(ecase *c) {
    const ng_conv_shape *s = &c->a.conv_gather.s;
    const int mode = c->a.conv_gather.mode;
    const int ho = (s->h + 2 * s->pad - s->kh) / s->stride + 1, wo = (s->w + 2 * s->pad - s->kw) / s->stride + 1;
    const size_t P = (size_t)ho * wo, hw = (size_t)s->h * s->w, K = (size_t)s->c * s->kh * s->kw;
    const size_t nout = c->b[2].n;
    const float *x = IF(c, 0), *g = IF(c, 1);
    float *out = WF(c, 2);
    double *tol = TL(c, 2), *acc = calloc(nout + 1, sizeof *acc), *mag = calloc(nout + 1, sizeof *mag);
    int *terms = calloc(nout + 1, sizeof *terms);
    int b, ci, oh, ow, i, j;
    size_t e;
    uint64_t step_base = 0;
    if (c->nb > 3 && !c->b[3].is_null) { /* the device count: drawn at base + step, left at base + advance */
        uint64_t w[2];
        memcpy(w, c->b[3].init, sizeof w);
        step_base = w[0];
        w[0] += c->a.conv_gather.advance;
        memcpy(c->b[3].want, w, sizeof w);
    }
    for (e = 0; e < nout; e++) tol[e] = 0.0;
    for (b = 0; b < s->n; b++)
        for (ci = 0; ci < s->c; ci++) {
            const size_t m = (size_t)b * s->c + ci;
            if (mode == NG_CONV_AUGMENT) { /* the draws written out: float products as the body rounds them */
                const int span = 2 * s->pad + 1;
                const uint64_t key = c->a.conv_gather.key, step = step_base + c->a.conv_gather.step, bs = c->a.conv_gather.b0 + (uint64_t)b;
                int dy = (int)((float)naive_uniform(key, step, 3 * bs) * (float)span);
                int dx = (int)((float)naive_uniform(key, step, 3 * bs + 1) * (float)span);
                const int mir = (float)naive_uniform(key, step, 3 * bs + 2) < 0.5f;
                int y0, x0;
                dy = (dy < span ? dy : span - 1) - s->pad;
                dx = (dx < span ? dx : span - 1) - s->pad;
                for (y0 = 0; y0 < s->h; y0++)
                    for (x0 = 0; x0 < s->w; x0++) {
                        const int iy = y0 + dy, ix = (mir ? s->w - 1 - x0 : x0) + dx;
                        out[m * hw + (size_t)y0 * s->w + x0] =
                            iy < 0 || iy >= s->h || ix < 0 || ix >= s->w ? 0.0f : x[m * hw + (size_t)iy * s->w + ix];
                    }
                continue;
            }
            if (mode == NG_CONV_TO_NHWC || mode == NG_CONV_TO_NCHW) {
                size_t q;
                for (q = 0; q < hw; q++) {
                    const size_t nchw = m * hw + q, nhwc = ci + (size_t)s->c * (q + hw * b);
                    if (mode == NG_CONV_TO_NHWC) out[nhwc] = x[nchw];
                    else out[nchw] = x[nhwc];
                }
                continue;
            }
            for (oh = 0; oh < ho; oh++)
                for (ow = 0; ow < wo; ow++) {
                    const size_t yo = m * P + (size_t)oh * wo + ow;
                    double best = 0.0, sum = 0.0;
                    size_t best_at = (size_t)-1;
                    for (i = 0; i < s->kh; i++)
                        for (j = 0; j < s->kw; j++) {
                            const int ih = oh * s->stride - s->pad + i, iw = ow * s->stride - s->pad + j;
                            const size_t k = ((size_t)ci * s->kh + i) * s->kw + j;
                            const size_t co = (size_t)oh * wo + ow + P * (k + K * b);
                            const int in = ih >= 0 && ih < s->h && iw >= 0 && iw < s->w;
                            const size_t px = m * hw + (size_t)ih * s->w + iw;
                            if (mode == NG_CONV_IM2COL) out[co] = in ? x[px] : 0.0f;
                            if (!in) continue;
                            if (mode == NG_CONV_COL2IM) {
                                acc[px] += g[co];
                                mag[px] += fabs((double)g[co]);
                                terms[px]++;
                            }
                            if (x && (best_at == (size_t)-1 || (double)x[px] > best)) best = x[px], best_at = px;
                            if (x) sum += (double)x[px];
                            if (mode == NG_CONV_POOL_AVG_BACK) {
                                acc[px] += (double)g[yo] / (s->kh * s->kw);
                                mag[px] += fabs((double)g[yo]) / (s->kh * s->kw);
                                terms[px]++;
                            }
                        }
                    if (mode == NG_CONV_POOL_MAX) out[yo] = (float)best;
                    if (mode == NG_CONV_POOL_MAX_R) out[yo] = best_at == (size_t)-1 ? 0.0f : g[best_at];
                    if (mode == NG_CONV_POOL_AVG) {
                        out[yo] = (float)(sum / (s->kh * s->kw));
                        tol[yo] = (s->kh * s->kw + 2) * EPS_F * (fabs(sum) + 4.0 * s->kh * s->kw) / (s->kh * s->kw);
                    }
                    if (mode == NG_CONV_POOL_MAX_BACK) {
                        acc[best_at] += g[yo];
                        mag[best_at] += fabs((double)g[yo]);
                        terms[best_at]++;
                    }
                }
        }
    if (mode == NG_CONV_COL2IM || mode == NG_CONV_POOL_MAX_BACK || mode == NG_CONV_POOL_AVG_BACK)
        for (e = 0; e < nout; e++) {
            out[e] = (float)acc[e];
            tol[e] = (terms[e] + 1) * EPS_F * mag[e];
        }
    free(acc);
    free(mag);
    free(terms);
}

/* ---- whiten1x1: y[b, i, q] = sum_j op(U)[i, j] (x[b, j, q] - mean[j]) --------------------------
 * Shapes: (c, cout) pairs with n and p from the table; variants: (trans, mean given) in {0,1}^2.
 * Buffers: 0 x, 1 mean (c or NULL), 2 U (padded ld), 3 y. The op sums in double and rounds once:
 * tol FLT_EPSILON |y| + 1e-12 sum |terms| (the reference's own order). */
static const struct { int n, c, cout, p; } w1_geom[] = {
    {1, 1, 1, 1}, {2, 3, 3, 5}, {3, 4, 2, 7}, {2, 2, 5, 9}, {4, 16, 16, 49}, {2, 33, 17, 100}, {0, 3, 3, 4}};
static const tshape w1_shapes[] = {{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 1}, {6, 1}};

static int gen_whiten1x1(tctx *t, const tshape *sh, int inplace, int v, ecase *c) {
    const int g = sh->n == 0 ? 6 : sh->m; /* tshape.n = 0: the empty geometry */
    const int n = w1_geom[g].n, ch = w1_geom[g].c, co = w1_geom[g].cout, p = w1_geom[g].p;
    const int trans = v & 1, rows = trans ? ch : co, cols = trans ? co : ch;
    const uint64_t seed = 977 + (uint64_t)v * 13 + (uint64_t)sh->m * 1000;
    (void)inplace;
    c->a.whiten1x1.n = n;
    c->a.whiten1x1.c = ch;
    c->a.whiten1x1.cout = co;
    c->a.whiten1x1.p = p;
    c->a.whiten1x1.trans = trans;
    c->a.whiten1x1.ldu = rows + 2;
    eb_rand(c, eb_vec(t, c, "x", R_IN, 0, n * ch * p, AOFF(whiten1x1.x)), seed, -3.0, 5.0);
    if (v & 2) eb_rand(c, eb_vec(t, c, "mean", R_IN, 0, ch, AOFF(whiten1x1.mean)), seed + 1, 0.0, 2.0);
    else eb_null(c, "mean");
    eb_rand(c, eb_add(t, c, "U", R_IN, 0, rows, cols, rows + 2, AOFF(whiten1x1.U)), seed + 2, -1.0, 1.0);
    eb_vec(t, c, "y", R_OUT, 0, n * co * p, AOFF(whiten1x1.y));
    what(c, "whiten1x1 n=%d c=%d cout=%d p=%d trans=%d mean=%s", n, ch, co, p, trans, v & 2 ? "given" : "NULL");
    return 1;
}

static void ref_whiten1x1(ecase *c) {
    const int n = c->a.whiten1x1.n, ch = c->a.whiten1x1.c, co = c->a.whiten1x1.cout, p = c->a.whiten1x1.p;
    const int trans = c->a.whiten1x1.trans;
    int b, i, j, q;
    for (b = 0; b < n; b++)
        for (i = 0; i < co; i++)
            for (q = 0; q < p; q++) {
                double acc = 0.0, mag = 0.0;
                const size_t e = (size_t)q + (size_t)p * ((size_t)i + (size_t)co * b);
                for (j = 0; j < ch; j++) {
                    const double u = trans ? IF(c, 2)[AT(c, 2, j, i)] : IF(c, 2)[AT(c, 2, i, j)];
                    const double xm = (double)IF(c, 0)[(size_t)q + (size_t)p * ((size_t)j + (size_t)ch * b)] -
                                      (c->b[1].is_null ? 0.0 : (double)IF(c, 1)[j]);
                    acc += u * xm;
                    mag += fabs(u * xm);
                }
                WF(c, 3)[e] = (float)acc;
                TL(c, 3)[e] = EPS_F * fabs(acc) + 1e-12 * mag + 1e-30;
            }
}

static const op_test op_tests[NG_OP_COUNT] = {
    [NG_OP_FILL] = {NG_OP_FILL, "fill", OPF_OUT, vec_shapes, NSHAPES(vec_shapes), 4, gen_fill,
                    ref_fill, NULL},
    [NG_OP_FILL_UNIFORM] = {NG_OP_FILL_UNIFORM, "fill_uniform", OPF_OUT, vec_shapes,
                            NSHAPES(vec_shapes), 3, gen_fill_uniform, ref_fill_uniform,
                            check_fill_uniform},
    [NG_OP_BERNOULLI] = {NG_OP_BERNOULLI, "bernoulli", OPF_OUT | OPF_IN, vec_shapes,
                         NSHAPES(vec_shapes), 4, gen_bernoulli, ref_bernoulli, NULL},
    [NG_OP_AXPBY] = {NG_OP_AXPBY, "axpby", OPF_OUT | OPF_IN, vec_shapes, NSHAPES(vec_shapes), 4,
                     gen_axpby, ref_axpby, NULL},
    [NG_OP_AXPBY_DEV] = {NG_OP_AXPBY_DEV, "axpby_dev", OPF_OUT | OPF_IN, vec_shapes,
                         NSHAPES(vec_shapes), 6, gen_axpby_dev, ref_axpby_dev, NULL},
    [NG_OP_CONVERT] = {NG_OP_CONVERT, "convert", OPF_OUT | OPF_IN, vec_shapes, NSHAPES(vec_shapes),
                       4, gen_convert, ref_convert, NULL},
    [NG_OP_GIBBS_SAMPLE] = {NG_OP_GIBBS_SAMPLE, "gibbs_sample", OPF_OUT | OPF_IN, mat_shapes,
                            NSHAPES(mat_shapes), 7, gen_gibbs, ref_gibbs, check_gibbs},
    [NG_OP_SOFTPLUS_SUM] = {NG_OP_SOFTPLUS_SUM, "softplus_sum", OPF_OUT, softplus_shapes,
                            NSHAPES(softplus_shapes), 4, gen_softplus, ref_softplus,
                            check_softplus},
    [NG_OP_BINARY_STATES] = {NG_OP_BINARY_STATES, "binary_states", OPF_OUT, binary_shapes,
                             NSHAPES(binary_shapes), 4, gen_binary, ref_binary, NULL},
    [NG_OP_SYMMETRIZE_LOWER] = {NG_OP_SYMMETRIZE_LOWER, "symmetrize_lower", OPF_IN, sq_shapes,
                                NSHAPES(sq_shapes), 3, gen_symmetrize, ref_symmetrize, NULL},
    [NG_OP_FANG_REGRESS] = {NG_OP_FANG_REGRESS, "fang_regress", OPF_OUT, mat_shapes,
                            NSHAPES(mat_shapes), 3, gen_fang_regress, ref_fang_regress,
                            check_fang_regress},
    [NG_OP_FANG_RESIDUAL] = {NG_OP_FANG_RESIDUAL, "fang_residual", OPF_IN, mat_shapes,
                             NSHAPES(mat_shapes), 2, gen_fang_residual, ref_fang_residual, NULL},
    [NG_OP_ADAM] = {NG_OP_ADAM, "adam", OPF_IN, vec_shapes, NSHAPES(vec_shapes), NSHAPES(adam_v), gen_adam,
                    ref_adam, NULL},
    [NG_OP_OUTER_SCALE] = {NG_OP_OUTER_SCALE, "outer_scale", OPF_OUT | OPF_IN, mat_shapes,
                           NSHAPES(mat_shapes), NSHAPES(osc_v), gen_outer_scale, ref_outer_scale, NULL},
    [NG_OP_FACTOR_UPDATE] = {NG_OP_FACTOR_UPDATE, "factor_update", OPF_IN, mat_shapes, NSHAPES(mat_shapes), 2,
                             gen_factor_update, ref_factor_update, check_factor_update},
    [NG_OP_ACT_FORWARD] = {NG_OP_ACT_FORWARD, "act_forward", OPF_OUT | OPF_IN, mat_shapes,
                           NSHAPES(mat_shapes), NSHAPES(actf_v), gen_act_forward, ref_act_forward,
                           NULL},
    [NG_OP_ACT_BACKWARD] = {NG_OP_ACT_BACKWARD, "act_backward", OPF_OUT | OPF_IN, mat_shapes,
                            NSHAPES(mat_shapes), NSHAPES(actb_v), gen_act_backward,
                            ref_act_backward, NULL},
    [NG_OP_AXPBY_SEGMENTS] = {NG_OP_AXPBY_SEGMENTS, "axpby_segments", OPF_OUT | OPF_IN, vec_shapes,
                              NSHAPES(vec_shapes), 4, gen_axpby_segments, ref_axpby_segments, NULL},
    [NG_OP_MOMENTUM] = {NG_OP_MOMENTUM, "momentum", OPF_IN, vec_shapes, NSHAPES(vec_shapes), NSHAPES(mom_v),
                        gen_momentum, ref_momentum, NULL},
    [NG_OP_LOSS] = {NG_OP_LOSS, "loss", OPF_OUT | OPF_IN, mat_shapes, NSHAPES(mat_shapes), 20,
                    gen_loss, ref_loss, NULL},
    [NG_OP_LOSS_HVP] = {NG_OP_LOSS_HVP, "loss_hvp", OPF_OUT | OPF_IN, mat_shapes,
                        NSHAPES(mat_shapes), 8, gen_loss_hvp, ref_loss_hvp, NULL},
    [NG_OP_SAMPLE_TARGETS] = {NG_OP_SAMPLE_TARGETS, "sample_targets", OPF_OUT | OPF_IN,
                              sample_shapes, NSHAPES(sample_shapes), 9, gen_sample_targets,
                              ref_sample_targets, check_sample_targets},
    [NG_OP_ROW_MOMENTS] = {NG_OP_ROW_MOMENTS, "row_moments", OPF_OUT, mat_shapes,
                           NSHAPES(mat_shapes), NSHAPES(rm_eps), gen_row_moments, ref_row_moments,
                           NULL},
    [NG_OP_BN_NORMALIZE] = {NG_OP_BN_NORMALIZE, "bn_normalize", OPF_OUT | OPF_IN, mat_shapes,
                            NSHAPES(mat_shapes), 2, gen_bn_normalize, ref_bn_normalize, NULL},
    [NG_OP_BN_PROJECT] = {NG_OP_BN_PROJECT, "bn_project", OPF_OUT | OPF_IN, mat_shapes,
                          NSHAPES(mat_shapes), NSHAPES(bnp_v), gen_bn_project, ref_bn_project,
                          NULL},
    [NG_OP_MINRESQLP_STEP] = {NG_OP_MINRESQLP_STEP, "minresqlp_step", OPF_IN, mq_shapes, NSHAPES(mq_shapes),
                              NSHAPES(mq_v), gen_minresqlp_step, ref_minresqlp_step, check_minresqlp_step},
    [NG_OP_CONV_GATHER] = {NG_OP_CONV_GATHER, "conv_gather", OPF_OUT, cg_shapes, NSHAPES(cg_shapes),
                           NG_CONV_MODE_COUNT + 1, gen_conv_gather, ref_conv_gather, NULL},
    [NG_OP_WHITEN1X1] = {NG_OP_WHITEN1X1, "whiten1x1", OPF_OUT, w1_shapes, NSHAPES(w1_shapes), 4, gen_whiten1x1,
                         ref_whiten1x1, NULL},
    [NG_OP_BN_MERGE] = {NG_OP_BN_MERGE, "bn_merge", OPF_OUT, vec_shapes, NSHAPES(vec_shapes), NSHAPES(bnm_mode),
                        gen_bn_merge, ref_bn_merge, NULL},
};

/* Every ng_op has a complete descriptor naming it as the library does, and this backend answers
 * supports_op for it (an enum value added without a test, or a backend that leaves one out, fails
 * here). */
static int op_table(tctx *t) {
    int op, bad = 0;
    NGT_CHECK(t->be->iface->supports_op && t->be->iface->run_op,
              "%s backend: supports_op or run_op slot is NULL", t->be->iface->name);
    for (op = 0; op < NG_OP_COUNT; op++) {
        const op_test *d = &op_tests[op];
        if (!d->name || !d->gen || !d->ref || !d->shapes || d->nshapes < 1 || d->nvariants < 1 ||
            !(d->flags & (OPF_OUT | OPF_IN))) {
            printf("  op %d (%s) has no complete descriptor in op_tests[]: add one\n", op,
                   ng_op_name((ng_op)op));
            bad++;
            continue;
        }
        if ((int)d->op != op || strcmp(d->name, ng_op_name((ng_op)op)) != 0) {
            printf("  op_tests[%d] is \"%s\" (op %d), the library calls op %d \"%s\"\n", op,
                   d->name, (int)d->op, op, ng_op_name((ng_op)op));
            bad++;
        }
        if (!ng_supports_op(t->be, (ng_op)op)) {
            printf("  %s backend: supports_op(%s) = 0\n", t->be->iface->name, d->name);
            bad++;
        }
    }
    NGT_CHECK(strcmp(ng_op_name(NG_OP_COUNT), "?") == 0, "ng_op_name(NG_OP_COUNT) = \"%s\"",
              ng_op_name(NG_OP_COUNT));
    NGT_CHECK(!ng_supports_op(t->be, NG_OP_COUNT), "supports_op(NG_OP_COUNT) answered 1");
    return bad ? NGT_FAIL : NGT_PASS;
}

/* =============================================================================================
 * Wrapper validation (backend independent; run once on the CPU backend)
 * ============================================================================================= */

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

/* The coarse slots, each NULLed in turn in a copy of the CPU table. */
enum {
    S_ALLOC, S_SET, S_GET, S_MEMSET0, S_COPY, S_SYNC, S_ALLOC_HOST, S_SET_ASYNC, S_GET_ASYNC,
    S_EVENT_CREATE, S_EVENT_RECORD, S_EVENT_WAIT, S_EVENT_SYNC, S_EVENT_ELAPSED, S_GEMM, S_GEMM_SB,
    S_SYRK, S_GEMV, S_TRSM, S_SCAL, S_DOT, S_NRM2, S_DOT_DEV, S_NRM2_DEV, S_SUM_COLS, S_SUM_ROWS,
    S_POTRF, S_POTRI, S_POTRS, S_SYEVD, S_POTRF_D, S_POTRI_D, S_POTRS_D, S_SYEVD_D, S_COUNT
};

static const char *const slot_names[S_COUNT] = {
    "alloc", "set", "get", "memset0", "copy", "synchronize", "alloc_host", "set_async",
    "get_async", "event_create", "event_record", "event_wait", "event_synchronize",
    "event_elapsed", "gemm", "gemm_strided_batched", "syrk", "gemv", "trsm", "scal", "dot", "nrm2",
    "dot_dev", "nrm2_dev", "sum_cols", "sum_rows", "potrf", "potri", "potrs", "syevd", "potrf_d",
    "potri_d", "potrs_d", "syevd_d"};

static void null_slot(struct ng_backend_i *f, int s) {
    switch (s) {
    case S_ALLOC: f->alloc = NULL; break;
    case S_SET: f->set = NULL; break;
    case S_GET: f->get = NULL; break;
    case S_MEMSET0: f->memset0 = NULL; break;
    case S_COPY: f->copy = NULL; break;
    case S_SYNC: f->synchronize = NULL; break;
    case S_ALLOC_HOST: f->alloc_host = NULL; break;
    case S_SET_ASYNC: f->set_async = NULL; break;
    case S_GET_ASYNC: f->get_async = NULL; break;
    case S_EVENT_CREATE: f->event_create = NULL; break;
    case S_EVENT_RECORD: f->event_record = NULL; break;
    case S_EVENT_WAIT: f->event_wait = NULL; break;
    case S_EVENT_SYNC: f->event_synchronize = NULL; break;
    case S_EVENT_ELAPSED: f->event_elapsed = NULL; break;
    case S_GEMM: f->gemm = NULL; break;
    case S_GEMM_SB: f->gemm_strided_batched = NULL; break;
    case S_SYRK: f->syrk = NULL; break;
    case S_GEMV: f->gemv = NULL; break;
    case S_TRSM: f->trsm = NULL; break;
    case S_SCAL: f->scal = NULL; break;
    case S_DOT: f->dot = NULL; break;
    case S_NRM2: f->nrm2 = NULL; break;
    case S_DOT_DEV: f->dot_dev = NULL; break;
    case S_NRM2_DEV: f->nrm2_dev = NULL; break;
    case S_SUM_COLS: f->sum_cols = NULL; break;
    case S_SUM_ROWS: f->sum_rows = NULL; break;
    case S_POTRF: case S_POTRF_D: f->potrf = NULL; break;
    case S_POTRI: case S_POTRI_D: f->potri = NULL; break;
    case S_POTRS: case S_POTRS_D: f->potrs = NULL; break;
    case S_SYEVD: case S_SYEVD_D: f->syevd = NULL; break;
    default: break;
    }
}

/* Call slot s with valid arguments on 4x4 matrices in f (64 floats) and d (64 doubles); ev is an
 * event of the CPU backend. What it allocates is released at once. */
static ng_status call_valid(ng_backend *be, ng_backend *cpu, int s, float *f, double *d, void *ev) {
    float r, ms;
    int info;
    void *p = NULL;
    ng_status st;
    switch (s) {
    case S_ALLOC:
        st = ng_alloc(be, 16, &p);
        if (st == NG_OK) ng_free(cpu, p);
        return st;
    case S_SET: return ng_set(be, f, f + 32, 16);
    case S_GET: return ng_get(be, f, f + 32, 16);
    case S_MEMSET0: return ng_memset0(be, f, 16);
    case S_COPY: return ng_copy(be, f, f + 32, 16);
    case S_SYNC: return ng_synchronize(be);
    case S_ALLOC_HOST:
        st = ng_alloc_host(be, 16, &p);
        if (st == NG_OK) ng_free_host(cpu, p);
        return st;
    case S_SET_ASYNC: return ng_set_async(be, f, f + 32, 16);
    case S_GET_ASYNC: return ng_get_async(be, f, f + 32, 16);
    case S_EVENT_CREATE:
        st = ng_event_create(be, &p);
        if (st == NG_OK) ng_event_destroy(cpu, p);
        return st;
    case S_EVENT_RECORD: return ng_event_record(be, ev);
    case S_EVENT_WAIT: return ng_event_wait(be, ev);
    case S_EVENT_SYNC: return ng_event_synchronize(be, ev);
    case S_EVENT_ELAPSED: return ng_event_elapsed(be, ev, ev, &ms);
    case S_GEMM: return ng_gemm(be, 0, 0, 4, 4, 4, 1.0f, f, 4, f + 16, 4, 0.0f, f + 32, 4);
    case S_GEMM_SB:
        return ng_gemm_strided_batched(be, 0, 0, 2, 2, 2, 1.0f, f, 2, 4, f + 16, 2, 4, 0.0f, f + 32,
                                       2, 4, 2);
    case S_SYRK: return ng_syrk(be, 0, 4, 4, 1.0f, f, 4, 0.0f, f + 32, 4);
    case S_GEMV: return ng_gemv(be, 0, 4, 4, 1.0f, f, 4, f + 16, 0.0f, f + 32);
    case S_TRSM: return ng_trsm(be, 0, 1, 0, 1, 4, 4, 1.0f, f, 4, f + 32, 4);
    case S_SCAL: return ng_scal(be, 4, 2.0f, f);
    case S_DOT: return ng_dot(be, 4, f, f + 16, &r);
    case S_NRM2: return ng_nrm2(be, 4, f, &r);
    case S_DOT_DEV: return ng_dot_dev(be, 4, f, f + 16, f + 48);
    case S_NRM2_DEV: return ng_nrm2_dev(be, 4, f, f + 48);
    case S_SUM_COLS: return ng_sum_cols(be, 4, 4, 1.0f, f, 4, 0.0f, f + 32);
    case S_SUM_ROWS: return ng_sum_rows(be, 4, 4, 1.0f, f, 4, 0.0f, f + 32);
    case S_POTRF: return ng_potrf(be, 4, f, 4, &info);
    case S_POTRI: return ng_potri(be, 4, f, 4, &info);
    case S_POTRS: return ng_potrs(be, 4, 1, f, 4, f + 32, 4, &info);
    case S_SYEVD: return ng_syevd(be, 4, f, 4, f + 32, &info);
    case S_POTRF_D: return ng_potrf_d(be, 4, d, 4, &info);
    case S_POTRI_D: return ng_potri_d(be, 4, d, 4, &info);
    case S_POTRS_D: return ng_potrs_d(be, 4, 1, d, 4, d + 32, 4, &info);
    case S_SYEVD_D: return ng_syevd_d(be, 4, d, 4, d + 32, &info);
    default: return NG_ERR_INVALID_ARG;
    }
}

static int no_ops(ng_backend *be, ng_op op) {
    (void)be;
    (void)op;
    return 0;
}

static int wrapper_coarse(ng_backend *cpu, float *f, double *d, void *ev) {
    ng_backend fake;
    struct ng_backend_i fi;
    int info = 0, s;
    const ng_status bad = NG_ERR_INVALID_ARG;
    /* a leading dimension smaller than the rows: NG_ERR_INVALID_ARG, message names op and ld */
    EXPECT_STATUS(ng_gemm(cpu, 0, 0, 5, 2, 2, 1.0f, f, 4, f + 16, 2, 0.0f, f + 32, 5), bad, "gemm",
                  "lda");
    EXPECT_STATUS(ng_gemm(cpu, 1, 0, 2, 2, 5, 1.0f, f, 4, f + 16, 5, 0.0f, f + 32, 2), bad, "gemm",
                  "lda");
    EXPECT_STATUS(ng_gemm(cpu, 0, 0, 2, 2, 5, 1.0f, f, 2, f + 16, 4, 0.0f, f + 32, 2), bad, "gemm",
                  "ldb");
    EXPECT_STATUS(ng_gemm(cpu, 0, 1, 2, 5, 2, 1.0f, f, 2, f + 16, 4, 0.0f, f + 32, 2), bad, "gemm",
                  "ldb");
    EXPECT_STATUS(ng_gemm(cpu, 0, 0, 5, 2, 2, 1.0f, f, 5, f + 16, 2, 0.0f, f + 32, 4), bad, "gemm",
                  "ldc");
    EXPECT_STATUS(ng_gemm(cpu, 0, 0, -1, 2, 2, 1.0f, f, 5, f + 16, 2, 0.0f, f + 32, 4), bad, "gemm",
                  "negative");
    EXPECT_STATUS(ng_gemm_strided_batched(cpu, 0, 0, 5, 2, 2, 1.0f, f, 4, 10, f + 16, 2, 4, 0.0f,
                                          f + 32, 5, 10, 2),
                  bad, "gemm_strided_batched", "lda");
    EXPECT_STATUS(ng_gemm_strided_batched(cpu, 0, 0, 2, 2, 2, 1.0f, f, 2, 4, f + 16, 2, 4, 0.0f,
                                          f + 32, 2, 3, 2),
                  bad, "gemm_strided_batched", "overlap");
    EXPECT_STATUS(ng_gemm_strided_batched(cpu, 0, 0, 2, 2, 2, 1.0f, f, 2, -4, f + 16, 2, 4, 0.0f,
                                          f + 32, 2, 4, 2),
                  bad, "gemm_strided_batched", "negative stride");
    EXPECT_STATUS(ng_gemm_strided_batched(cpu, 0, 0, 2, 2, 2, 1.0f, f, 2, 4, f + 16, 2, 4, 0.0f,
                                          f + 32, 2, 4, -1),
                  bad, "gemm_strided_batched", "negative");
    EXPECT_STATUS(ng_syrk(cpu, 0, 5, 2, 1.0f, f, 4, 0.0f, f + 32, 5), bad, "syrk", "lda");
    EXPECT_STATUS(ng_syrk(cpu, 1, 2, 5, 1.0f, f, 4, 0.0f, f + 32, 2), bad, "syrk", "lda");
    EXPECT_STATUS(ng_syrk(cpu, 0, 5, 2, 1.0f, f, 5, 0.0f, f + 32, 4), bad, "syrk", "ldc");
    EXPECT_STATUS(ng_gemv(cpu, 0, 5, 2, 1.0f, f, 4, f + 16, 0.0f, f + 32), bad, "gemv", "lda");
    EXPECT_STATUS(ng_gemv(cpu, 1, 5, 2, 1.0f, f, 4, f + 16, 0.0f, f + 32), bad, "gemv", "lda");
    EXPECT_STATUS(ng_syrk(cpu, 0, 2, 2, 1.0f, NULL, 2, 0.0f, f + 32, 2), bad, "syrk", "NULL");
    EXPECT_STATUS(ng_syrk(cpu, 0, 2, 2, 1.0f, f, 2, 0.0f, NULL, 2), bad, "syrk", "NULL");
    EXPECT_STATUS(ng_gemv(cpu, 0, 2, 2, 1.0f, NULL, 2, f + 16, 0.0f, f + 32), bad, "gemv", "NULL");
    EXPECT_STATUS(ng_gemv(cpu, 0, 2, 2, 1.0f, f, 2, NULL, 0.0f, f + 32), bad, "gemv", "NULL");
    EXPECT_STATUS(ng_trsm(cpu, 0, 1, 0, 0, 5, 2, 1.0f, f, 4, f + 32, 5), bad, "trsm", "lda");
    EXPECT_STATUS(ng_trsm(cpu, 1, 1, 0, 0, 2, 5, 1.0f, f, 4, f + 32, 2), bad, "trsm", "lda");
    EXPECT_STATUS(ng_trsm(cpu, 1, 1, 0, 0, 5, 2, 1.0f, f, 5, f + 32, 4), bad, "trsm", "ldb");
    EXPECT_STATUS(ng_trsm(cpu, 0, 1, 0, 0, -1, 2, 1.0f, f, 4, f + 32, 4), bad, "trsm", "negative");
    EXPECT_STATUS(ng_sum_cols(cpu, 5, 2, 1.0f, f, 4, 0.0f, f + 32), bad, "sum_cols", "lda");
    EXPECT_STATUS(ng_sum_rows(cpu, 5, 2, 1.0f, f, 4, 0.0f, f + 32), bad, "sum_rows", "lda");
    EXPECT_STATUS(ng_potrf(cpu, 5, f, 4, &info), bad, "potrf", "lda");
    EXPECT_STATUS(ng_potri(cpu, 5, f, 4, &info), bad, "potri", "lda");
    EXPECT_STATUS(ng_potrs(cpu, 5, 1, f, 4, f + 32, 5, &info), bad, "potrs", "lda");
    EXPECT_STATUS(ng_potrs(cpu, 4, 1, f, 4, f + 32, 3, &info), bad, "potrs", "ldb");
    EXPECT_STATUS(ng_potrs(cpu, 4, -1, f, 4, f + 32, 4, &info), bad, "potrs", "nrhs");
    EXPECT_STATUS(ng_syevd(cpu, 5, f, 4, f + 32, &info), bad, "syevd", "lda");
    EXPECT_STATUS(ng_potrf_d(cpu, 5, d, 4, &info), bad, "potrf_d", "lda");
    EXPECT_STATUS(ng_potri_d(cpu, 5, d, 4, &info), bad, "potri_d", "lda");
    EXPECT_STATUS(ng_potrs_d(cpu, 4, 1, d, 4, d + 32, 3, &info), bad, "potrs_d", "ldb");
    EXPECT_STATUS(ng_syevd_d(cpu, 5, d, 4, d + 32, &info), bad, "syevd_d", "lda");
    EXPECT_STATUS(ng_potrf(cpu, 4, f, 4, NULL), bad, "potrf", "NULL");
    EXPECT_STATUS(ng_dot(cpu, 4, f, f + 16, NULL), bad, "dot", "NULL");
    EXPECT_STATUS(ng_dot_dev(cpu, 4, f, f + 16, NULL), bad, "dot_dev", "NULL");
    EXPECT_STATUS(ng_nrm2_dev(cpu, 4, NULL, f + 48), bad, "nrm2_dev", "NULL");
    EXPECT_STATUS(ng_alloc(cpu, 16, NULL), bad, "alloc", "NULL");
    EXPECT_STATUS(ng_alloc_host(cpu, 16, NULL), bad, "alloc_host", "NULL");
    EXPECT_STATUS(ng_set_async(cpu, NULL, f, 16), bad, "set_async", "NULL");
    EXPECT_STATUS(ng_event_create(cpu, NULL), bad, "event_create", "NULL");
    EXPECT_STATUS(ng_event_record(cpu, NULL), bad, "event_record", "NULL");
    EXPECT_STATUS(ng_event_wait(cpu, NULL), bad, "event_wait", "NULL");
    EXPECT_STATUS(ng_event_synchronize(cpu, NULL), bad, "event_synchronize", "NULL");
    EXPECT_STATUS(ng_event_elapsed(cpu, ev, ev, NULL), bad, "event_elapsed", "NULL");
    /* every slot: a backend that leaves it NULL gives NG_ERR_UNSUPPORTED naming the op and the
     * backend; the complete table accepts the same call (so the arguments are valid). The LAPACK
     * calls are not run on the complete table: the scratch matrix holds whatever earlier calls
     * wrote. */
    for (s = 0; s < S_COUNT; s++) {
        fi = *cpu->iface;
        null_slot(&fi, s);
        fake = *cpu;
        fake.iface = &fi;
        EXPECT_STATUS(call_valid(&fake, cpu, s, f, d, ev), NG_ERR_UNSUPPORTED, slot_names[s],
                      "cpu");
        if (s < S_POTRF) NGT_OK(call_valid(cpu, cpu, s, f, d, ev));
    }
    return NGT_PASS;
}

/* Argument checks of each op descriptor in backend.c, and the run_op dispatch: unknown ops,
 * backends without run_op or answering 0 to supports_op, empty work. */
static int wrapper_ops(tctx *t, ng_backend *cpu, float *f, double *d) {
    const ng_status bad = NG_ERR_INVALID_ARG;
    ng_op_args a;
    ng_backend fake;
    struct ng_backend_i fi;
    int op;
#define BAD_OP(setup, word)                                                                   \
    do {                                                                                      \
        memset(&a, 0, sizeof a);                                                              \
        setup;                                                                                \
        EXPECT_STATUS(ng_run_op(cpu, &a), bad, ng_op_name(a.op), word);                       \
    } while (0)
    BAD_OP((a.op = NG_OP_FILL, a.fill.n = 4), "NULL");
    BAD_OP((a.op = NG_OP_FILL_UNIFORM, a.fill_uniform.n = 4), "NULL");
    BAD_OP((a.op = NG_OP_BERNOULLI, a.bernoulli.n = 4, a.bernoulli.out = f), "NULL");
    BAD_OP((a.op = NG_OP_AXPBY, a.axpby.n = 4, a.axpby.x = f), "NULL");
    BAD_OP((a.op = NG_OP_AXPBY_DEV, a.axpby_dev.n = 4, a.axpby_dev.y = f), "NULL");
    BAD_OP((a.op = NG_OP_CONVERT, a.convert.n = 4, a.convert.from = NG_F16, a.convert.to = NG_F32,
            a.convert.x = f, a.convert.y = f + 16), "f16");
    BAD_OP((a.op = NG_OP_CONVERT, a.convert.n = 4, a.convert.from = NG_F32, a.convert.to = NG_F64,
            a.convert.x = f, a.convert.y = f), "in-place");
    BAD_OP((a.op = NG_OP_GIBBS_SAMPLE, a.gibbs_sample.rows = -1, a.gibbs_sample.cols = 2),
           "negative");
    BAD_OP((a.op = NG_OP_GIBBS_SAMPLE, a.gibbs_sample.rows = 5, a.gibbs_sample.cols = 2,
            a.gibbs_sample.pre = f, a.gibbs_sample.ldp = 4, a.gibbs_sample.prob = f + 16,
            a.gibbs_sample.ldq = 5), "ldp");
    BAD_OP((a.op = NG_OP_GIBBS_SAMPLE, a.gibbs_sample.rows = 5, a.gibbs_sample.cols = 2,
            a.gibbs_sample.pre = f, a.gibbs_sample.ldp = 5, a.gibbs_sample.prob = f + 16,
            a.gibbs_sample.ldq = 4), "ldq");
    BAD_OP((a.op = NG_OP_GIBBS_SAMPLE, a.gibbs_sample.rows = 5, a.gibbs_sample.cols = 2,
            a.gibbs_sample.pre = f, a.gibbs_sample.ldp = 5, a.gibbs_sample.sample = f + 16,
            a.gibbs_sample.lds = 4), "lds");
    BAD_OP((a.op = NG_OP_GIBBS_SAMPLE, a.gibbs_sample.rows = 5, a.gibbs_sample.cols = 2,
            a.gibbs_sample.pre = f, a.gibbs_sample.ldp = 5), "neither");
    BAD_OP((a.op = NG_OP_GIBBS_SAMPLE, a.gibbs_sample.rows = 5, a.gibbs_sample.cols = 2,
            a.gibbs_sample.ldp = 5, a.gibbs_sample.prob = f, a.gibbs_sample.ldq = 5),
           "pre-activation");
    BAD_OP((a.op = NG_OP_SOFTPLUS_SUM, a.softplus_sum.rows = 5, a.softplus_sum.cols = 2,
            a.softplus_sum.pre = f, a.softplus_sum.ldp = 4, a.softplus_sum.y = f + 32), "ldp");
    BAD_OP((a.op = NG_OP_SOFTPLUS_SUM, a.softplus_sum.rows = 5, a.softplus_sum.cols = 2,
            a.softplus_sum.pre = f, a.softplus_sum.ldp = 5), "NULL");
    BAD_OP((a.op = NG_OP_BINARY_STATES, a.binary_states.nbits = 0, a.binary_states.count = 2,
            a.binary_states.out = f, a.binary_states.ldo = 1), "nbits");
    BAD_OP((a.op = NG_OP_BINARY_STATES, a.binary_states.nbits = 63, a.binary_states.count = 2,
            a.binary_states.out = f, a.binary_states.ldo = 63), "nbits");
    BAD_OP((a.op = NG_OP_BINARY_STATES, a.binary_states.nbits = 5, a.binary_states.count = 2,
            a.binary_states.out = f, a.binary_states.ldo = 4), "ldo");
    BAD_OP((a.op = NG_OP_BINARY_STATES, a.binary_states.nbits = 5, a.binary_states.count = -1,
            a.binary_states.out = f, a.binary_states.ldo = 5), "negative");
    BAD_OP((a.op = NG_OP_SYMMETRIZE_LOWER, a.symmetrize_lower.n = 5, a.symmetrize_lower.A = f,
            a.symmetrize_lower.lda = 4), "lda");
    BAD_OP((a.op = NG_OP_SYMMETRIZE_LOWER, a.symmetrize_lower.n = 4, a.symmetrize_lower.A = f,
            a.symmetrize_lower.lda = 4, a.symmetrize_lower.shift = INFINITY), "finite");
    BAD_OP((a.op = NG_OP_SYMMETRIZE_LOWER, a.symmetrize_lower.n = 4, a.symmetrize_lower.A = f,
            a.symmetrize_lower.lda = 4, a.symmetrize_lower.shift = NAN), "finite");
    BAD_OP((a.op = NG_OP_FANG_REGRESS, a.fang_regress.nh = 5, a.fang_regress.nv = 2,
            a.fang_regress.ldm = 4, a.fang_regress.ldo = 5), "ldm");
    BAD_OP((a.op = NG_OP_FANG_REGRESS, a.fang_regress.nh = 5, a.fang_regress.nv = 2,
            a.fang_regress.ldm = 5, a.fang_regress.ldo = 4), "ldo");
    BAD_OP((a.op = NG_OP_FANG_REGRESS, a.fang_regress.nh = 5, a.fang_regress.nv = 2,
            a.fang_regress.ldm = 5, a.fang_regress.ldo = 5, a.fang_regress.lambda = -1.0f),
           "lambda");
    BAD_OP((a.op = NG_OP_FANG_REGRESS, a.fang_regress.nh = 5, a.fang_regress.nv = 2,
            a.fang_regress.ldm = 5, a.fang_regress.ldo = 5, a.fang_regress.lambda = NAN), "lambda");
    BAD_OP((a.op = NG_OP_FANG_REGRESS, a.fang_regress.nh = 5, a.fang_regress.nv = 2,
            a.fang_regress.ldm = 5, a.fang_regress.ldo = 5), "moment");
    BAD_OP((a.op = NG_OP_FANG_RESIDUAL, a.fang_residual.nh = 5, a.fang_residual.nv = 2,
            a.fang_residual.ldg = 4, a.fang_residual.ldb = 5, a.fang_residual.ldp = 5), "ldg");
    BAD_OP((a.op = NG_OP_FANG_RESIDUAL, a.fang_residual.nh = 5, a.fang_residual.nv = 2,
            a.fang_residual.ldg = 5, a.fang_residual.ldb = 4, a.fang_residual.ldp = 5), "ldb");
    BAD_OP((a.op = NG_OP_FANG_RESIDUAL, a.fang_residual.nh = 5, a.fang_residual.nv = 2,
            a.fang_residual.ldg = 5, a.fang_residual.ldb = 5, a.fang_residual.ldp = 4), "ldp");
    BAD_OP((a.op = NG_OP_FANG_RESIDUAL, a.fang_residual.nh = 5, a.fang_residual.nv = 2,
            a.fang_residual.ldg = 5, a.fang_residual.ldb = 5, a.fang_residual.ldp = 5), "NULL");
    BAD_OP((a.op = NG_OP_ADAM, a.adam.n = 4, a.adam.param = f, a.adam.grad = f + 4, a.adam.bc2 = 1.0,
            a.adam.eps = 1e-8f), "NULL");
    BAD_OP((a.op = NG_OP_ADAM, a.adam.n = 4, a.adam.param = f, a.adam.grad = f + 4, a.adam.v = f + 8,
            a.adam.bc2 = 1.0, a.adam.eps = 0.0f), "eps");
    BAD_OP((a.op = NG_OP_ADAM, a.adam.n = 4, a.adam.param = f, a.adam.grad = f + 4, a.adam.v = f + 8,
            a.adam.bc2 = 0.0, a.adam.eps = 1e-8f), "bc2");
    BAD_OP((a.op = NG_OP_ADAM, a.adam.n = 4, a.adam.param = f, a.adam.grad = f + 4, a.adam.v = f + 8,
            a.adam.m = f + 12, a.adam.bc1 = 0.0, a.adam.bc2 = 1.0, a.adam.eps = 1e-8f), "bc1");
    BAD_OP((a.op = NG_OP_ADAM, a.adam.n = 4, a.adam.param = f, a.adam.grad = f + 4, a.adam.v = f + 8,
            a.adam.bc2 = 1.0, a.adam.eps = 1e-8f, a.adam.lr = NAN), "lr");
    BAD_OP((a.op = NG_OP_ADAM, a.adam.n = 4, a.adam.param = f, a.adam.grad = f + 4, a.adam.v = f + 8,
            a.adam.m = f + 12, a.adam.b1 = 1.0f, a.adam.b2 = 0.9f, a.adam.eps = 1e-8f, a.adam.count = (double *)(f + 32)),
           "device step count");
    BAD_OP((a.op = NG_OP_GIBBS_SAMPLE, a.gibbs_sample.rows = 2, a.gibbs_sample.cols = 2, a.gibbs_sample.pre = f,
            a.gibbs_sample.ldp = 2, a.gibbs_sample.prob = f + 4, a.gibbs_sample.ldq = 2, a.gibbs_sample.advance = 3),
           "without a device step");
    BAD_OP((a.op = NG_OP_MOMENTUM, a.momentum.n = 4, a.momentum.d = f, a.momentum.v = f + 4), "NULL");
    BAD_OP((a.op = NG_OP_AXPBY_SEGMENTS, a.axpby_segments.count = 2, a.axpby_segments.x = f, a.axpby_segments.y = f + 16,
            a.axpby_segments.off[0] = 0, a.axpby_segments.len[0] = 4, a.axpby_segments.off[1] = 3,
            a.axpby_segments.len[1] = 2), "overlap");
    BAD_OP((a.op = NG_OP_AXPBY_SEGMENTS, a.axpby_segments.count = NG_SEGMENTS_MAX + 1, a.axpby_segments.x = f,
            a.axpby_segments.y = f), "count");
    BAD_OP((a.op = NG_OP_AXPBY_SEGMENTS, a.axpby_segments.count = 1, a.axpby_segments.len[0] = 4), "NULL");
    BAD_OP((a.op = NG_OP_MOMENTUM, a.momentum.n = 4, a.momentum.d = f, a.momentum.v = f + 2, a.momentum.p = f + 8),
           "overlap");
    BAD_OP((a.op = NG_OP_MOMENTUM, a.momentum.n = 4, a.momentum.d = f, a.momentum.v = f + 4, a.momentum.p = f + 8,
            a.momentum.mu = NAN), "mu");
    BAD_OP((a.op = NG_OP_MOMENTUM, a.momentum.n = 4, a.momentum.d = f, a.momentum.v = f + 4, a.momentum.p = f + 8,
            a.momentum.bar = f + 12), "xi");
    BAD_OP((a.op = NG_OP_LOSS, a.loss.rows = 2, a.loss.cols = 2, a.loss.ldz = 2, a.loss.ldy = 2, a.loss.ldt = 2,
            a.loss.z = f, a.loss.y = f, a.loss.t = f, a.loss.obj = f + 8, a.loss.acc = f + 12), "needs obj and err");
    BAD_OP((a.op = NG_OP_LOSS, a.loss.rows = 2, a.loss.cols = 2, a.loss.ldz = 2, a.loss.ldy = 2, a.loss.ldt = 2,
            a.loss.z = f, a.loss.y = f, a.loss.t = f, a.loss.obj = f + 8, a.loss.err = f + 10, a.loss.acc = f + 9),
           "acc overlaps");
    /* network layers: codes, leading dimensions, optional pairs, aliasing, eps */
#define ACTF(act_, ldz_, lda_, a_)                                                              \
    (a.op = NG_OP_ACT_FORWARD, a.act_forward.rows = 5, a.act_forward.cols = 2,                  \
     a.act_forward.act = (act_), a.act_forward.z = f, a.act_forward.ldz = (ldz_),              \
     a.act_forward.a = (a_), a.act_forward.lda = (lda_))
    BAD_OP(ACTF(NG_ACT_COUNT, 5, 5, f + 16), "activation");
    BAD_OP(ACTF(-1, 5, 5, f + 16), "activation");
    BAD_OP(ACTF(NG_ACT_TANH, 4, 5, f + 16), "ldz");
    BAD_OP(ACTF(NG_ACT_TANH, 5, 4, f + 16), "lda");
    BAD_OP(ACTF(NG_ACT_SOFTMAX, 5, 6, f), "aliases");
    BAD_OP((ACTF(NG_ACT_RELU, 5, 5, NULL)), "NULL");
#undef ACTF
#define ACTB(act_, h_, r_, ldo_)                                                                \
    (a.op = NG_OP_ACT_BACKWARD, a.act_backward.rows = 5, a.act_backward.cols = 2,               \
     a.act_backward.act = (act_), a.act_backward.a = f, a.act_backward.lda = 5,                \
     a.act_backward.g = f + 16, a.act_backward.ldg = 5, a.act_backward.h = (h_),               \
     a.act_backward.ldh = 5, a.act_backward.r = (r_), a.act_backward.ldr = 5,                  \
     a.act_backward.out = f + 32, a.act_backward.ldo = (ldo_))
    BAD_OP(ACTB(NG_ACT_SOFTMAX, NULL, NULL, 5), "softmax");
    BAD_OP(ACTB(NG_ACT_COUNT, NULL, NULL, 5), "activation");
    BAD_OP(ACTB(NG_ACT_TANH, f + 48, NULL, 5), "h and r");
    BAD_OP(ACTB(NG_ACT_TANH, NULL, f + 48, 5), "h and r");
    BAD_OP(ACTB(NG_ACT_LOGISTIC, NULL, NULL, 4), "ldo");
    BAD_OP((ACTB(NG_ACT_LOGISTIC, f + 48, f + 48, 5), a.act_backward.ldh = 4), "ldh");
#undef ACTB
#define LOSS(loss_, ldt_, d_, obj_, err_, scale_)                                               \
    (a.op = NG_OP_LOSS, a.loss.rows = 5, a.loss.cols = 2, a.loss.loss = (loss_), a.loss.z = f,  \
     a.loss.ldz = 5, a.loss.y = f + 16, a.loss.ldy = 5, a.loss.t = f + 32, a.loss.ldt = (ldt_), \
     a.loss.scale = (scale_), a.loss.d = (d_), a.loss.ldd = 5, a.loss.obj = (obj_),             \
     a.loss.err = (err_))
    BAD_OP(LOSS(NG_LOSS_COUNT, 5, f + 48, NULL, NULL, 1.0f), "unknown loss");
    BAD_OP(LOSS(-1, 5, f + 48, NULL, NULL, 1.0f), "unknown loss");
    BAD_OP(LOSS(NG_LOSS_SQUARED, 4, f + 48, NULL, NULL, 1.0f), "ldt");
    BAD_OP((LOSS(NG_LOSS_SQUARED, 5, f + 48, NULL, NULL, 1.0f), a.loss.ldd = 4), "ldd");
    BAD_OP(LOSS(NG_LOSS_BERNOULLI, 5, NULL, NULL, NULL, 1.0f), "no output");
    BAD_OP(LOSS(NG_LOSS_CATEGORICAL, 5, NULL, f + 48, NULL, NAN), "scale");
    BAD_OP(LOSS(NG_LOSS_CATEGORICAL, 5, NULL, NULL, f + 48, INFINITY), "scale");
    BAD_OP((LOSS(NG_LOSS_SQUARED, 5, f + 48, NULL, NULL, 1.0f), a.loss.t = NULL), "NULL");
#undef LOSS
#define HVP(loss_, ldv_, out_)                                                                  \
    (a.op = NG_OP_LOSS_HVP, a.loss_hvp.rows = 5, a.loss_hvp.cols = 2, a.loss_hvp.loss = (loss_), \
     a.loss_hvp.y = f, a.loss_hvp.ldy = 5, a.loss_hvp.v = f + 16, a.loss_hvp.ldv = (ldv_),     \
     a.loss_hvp.scale = 1.0f, a.loss_hvp.out = (out_), a.loss_hvp.ldo = 5)
    BAD_OP(HVP(NG_LOSS_OUTER + 1, 5, f + 32), "unknown loss");
    BAD_OP(HVP(-1, 5, f + 32), "unknown loss");
    BAD_OP(HVP(NG_LOSS_OUTER, 4, f + 32), "ldv");
    BAD_OP(HVP(NG_LOSS_BERNOULLI, 5, NULL), "NULL");
#undef HVP
#define SAMPLE(loss_, ldt_, t_)                                                                 \
    (a.op = NG_OP_SAMPLE_TARGETS, a.sample_targets.rows = 5, a.sample_targets.cols = 2,         \
     a.sample_targets.loss = (loss_), a.sample_targets.y = f, a.sample_targets.ldy = 5,        \
     a.sample_targets.t = (t_), a.sample_targets.ldt = (ldt_))
    BAD_OP(SAMPLE(NG_LOSS_OUTER, 5, f + 16), "unknown loss");
    BAD_OP(SAMPLE(NG_LOSS_SQUARED, 4, f + 16), "ldt");
    BAD_OP(SAMPLE(NG_LOSS_CATEGORICAL, 5, NULL), "NULL");
#undef SAMPLE
#define MOM(rows_, cols_, ldx_, eps_)                                                           \
    (a.op = NG_OP_ROW_MOMENTS, a.row_moments.rows = (rows_), a.row_moments.cols = (cols_),      \
     a.row_moments.x = f, a.row_moments.ldx = (ldx_), a.row_moments.eps = (eps_),              \
     a.row_moments.mean = f + 32, a.row_moments.rstd = f + 48)
    BAD_OP(MOM(5, 2, 5, 0.0f), "eps");
    BAD_OP(MOM(5, 2, 5, -1e-5f), "eps");
    BAD_OP(MOM(5, 2, 5, NAN), "eps");
    BAD_OP(MOM(5, 2, 5, INFINITY), "eps");
    BAD_OP(MOM(5, 2, 4, 1e-5f), "ldx");
    BAD_OP(MOM(5, 0, 5, 1e-5f), "no columns");
    BAD_OP((MOM(5, 2, 5, 1e-5f), a.row_moments.rstd = NULL), "NULL");
#undef MOM
#define BNN(ldx_, ldh_, xhat_)                                                                  \
    (a.op = NG_OP_BN_NORMALIZE, a.bn_normalize.rows = 5, a.bn_normalize.cols = 2,               \
     a.bn_normalize.x = f, a.bn_normalize.ldx = (ldx_), a.bn_normalize.mean = f + 32,          \
     a.bn_normalize.rstd = f + 40, a.bn_normalize.xhat = (xhat_), a.bn_normalize.ldh = (ldh_))
    BAD_OP(BNN(4, 5, f + 16), "ldx");
    BAD_OP(BNN(5, 4, f + 16), "ldh");
    BAD_OP(BNN(5, 5, NULL), "NULL");
#undef BNN
#define BNP(ldg_, ldo_, out_)                                                                   \
    (a.op = NG_OP_BN_PROJECT, a.bn_project.rows = 5, a.bn_project.cols = 2, a.bn_project.g = f, \
     a.bn_project.ldg = (ldg_), a.bn_project.xhat = f + 16, a.bn_project.ldx = 5,              \
     a.bn_project.out = (out_), a.bn_project.ldo = (ldo_))
    BAD_OP(BNP(4, 5, f + 32), "ldg");
    BAD_OP(BNP(5, 4, f + 32), "ldo");
    BAD_OP(BNP(5, 6, f), "aliases");
    BAD_OP((BNP(5, 5, f + 32), a.bn_project.xhat = NULL), "NULL");
#undef BNP
#define FU(count_, c_)                                                                          \
    (memset(&a, 0, sizeof a), a.op = NG_OP_FACTOR_UPDATE, a.factor_update.count = (count_),       \
     a.factor_update.k = 2, a.factor_update.beta = 0.5f,                                         \
     a.factor_update.e[0] = (ng_factor_entry){3, 3, f, 3, f, 3, 1.0f, (c_), 3})
    BAD_OP(FU(0, f + 16), "count");
    BAD_OP(FU(NG_FACTOR_UPDATE_MAX + 1, f + 16), "count");
    BAD_OP(FU(1, f + 2), "overlaps");
    BAD_OP(FU(1, NULL), "NULL");
    BAD_OP((FU(1, f + 16), a.factor_update.e[0].ldy = 4), "Y == X");
#undef FU
#define MQ(count_, st_, sc_)                                                                     \
    (a.op = NG_OP_MINRESQLP_STEP, a.minresqlp_step.count = (count_), a.minresqlp_step.max_iter = 5, \
     a.minresqlp_step.rtol = 1e-4, a.minresqlp_step.maxxnorm = 1e7, a.minresqlp_step.trancond = 1e7, \
     a.minresqlp_step.state = (st_), a.minresqlp_step.sc = (sc_))
    BAD_OP(MQ(-1, d, f), "count");
    BAD_OP(MQ(1, NULL, f), "NULL");
    BAD_OP(MQ(1, d, NULL), "NULL");
    BAD_OP(MQ(1, d, (float *)(d + 4)), "overlaps");
    BAD_OP((MQ(1, d, f), a.minresqlp_step.max_iter = 0), "max_iter");
    BAD_OP((MQ(1, d, f), a.minresqlp_step.rtol = -1.0), "rtol");
    BAD_OP((MQ(1, d, f), a.minresqlp_step.maxxnorm = 0.0), "maxxnorm");
    BAD_OP((MQ(1, d, f), a.minresqlp_step.trancond = 0.0), "trancond");
    BAD_OP((MQ(1, d, f), a.minresqlp_step.singtol = NAN), "singtol");
#undef MQ
#undef BAD_OP
    memset(&a, 0, sizeof a);
    a.op = NG_OP_COUNT;
    EXPECT_STATUS(ng_run_op(cpu, &a), bad, "ng_run_op", "unknown op");
    a.op = (ng_op)-1;
    EXPECT_STATUS(ng_run_op(cpu, &a), bad, "ng_run_op", "unknown op");
    EXPECT_STATUS(ng_run_op(cpu, NULL), bad, "ng_run_op", "NULL");
    (void)d;
    /* Per op: a valid case from its generator (4 x 4, or n = 4); a backend answering 0 to
     * supports_op, or without run_op, gives NG_ERR_UNSUPPORTED naming the op and the backend;
     * the CPU backend accepts it; the same op with no work succeeds even on the backend that
     * does not support it (empty work is skipped before dispatch). */
    for (op = 0; op < NG_OP_COUNT; op++) {
        const op_test *dsc = &op_tests[op];
        static const tshape four = {4, 4}, none[2] = {{0, 0}, {1, 0}};
        ecase c;
        dbuf db[MAXB];
        void *dev[MAXB];
        int mark = t->nmem, k;
        if (!dsc->gen) continue; /* reported by op_table */
        for (k = 0; k < 2; k++) {
            const tshape *sh = k ? &none[0] : &four;
            int mode = dsc->flags & OPF_OUT ? 0 : 1, ok = 0, v, e;
            for (e = 0; e < (k ? 2 : 1) && !ok; e++) /* empty: 0 x 0, else 1 x 0 */
                for (v = 0; v < dsc->nvariants && !ok; v++) {
                    sh = k ? &none[e] : &four;
                    memset(&c, 0, sizeof c);
                    c.a.op = (ng_op)op;
                    ok = dsc->gen(t, sh, mode, v, &c);
                }
            NGT_CHECK(ok, "%s: the generator makes no case of shape %dx%d", dsc->name, sh->m,
                      sh->n);
            TRY(ecase_upload(t, cpu, &c, &a, db, dev));
            fi = *cpu->iface;
            fi.supports_op = no_ops;
            fake = *cpu;
            fake.iface = &fi;
            if (k == 0) {
                EXPECT_STATUS(ng_run_op(&fake, &a), NG_ERR_UNSUPPORTED, dsc->name, "cpu");
                NGT_CHECK(!ng_supports_op(&fake, (ng_op)op), "%s: supports_op of the fake",
                          dsc->name);
                fi.supports_op = cpu->iface->supports_op;
                fi.run_op = NULL;
                EXPECT_STATUS(ng_run_op(&fake, &a), NG_ERR_UNSUPPORTED, dsc->name, "cpu");
                NGT_CHECK(!ng_supports_op(&fake, (ng_op)op), "%s: supports_op without run_op",
                          dsc->name);
                NGT_OK(ng_run_op(cpu, &a));
            } else {
                /* empty: NG_OK without reaching the backend (which supports nothing) */
                NGT_OK(ng_run_op(&fake, &a));
            }
        }
        t_release(t, mark);
    }
    return NGT_PASS;
}

static int test_wrapper_errors(void) {
    ng_backend *cpu = NULL;
    float *f = NULL;
    double *d = NULL;
    void *ev = NULL;
    int r = NGT_FAIL;
    tctx t;
    memset(&t, 0, sizeof t);
    NGT_OK(ng_backend_cpu_init(&cpu));
    t.be = cpu;
    if (ng_alloc(cpu, 64 * sizeof(float), (void **)&f) == NG_OK &&
        ng_alloc(cpu, 64 * sizeof(double), (void **)&d) == NG_OK &&
        ng_memset0(cpu, f, 64 * sizeof(float)) == NG_OK &&
        ng_memset0(cpu, d, 64 * sizeof(double)) == NG_OK && ng_event_create(cpu, &ev) == NG_OK &&
        ng_event_record(cpu, ev) == NG_OK) {
        r = wrapper_coarse(cpu, f, d, ev);
        if (r == NGT_PASS) r = wrapper_ops(&t, cpu, f, d);
    } else
        printf("  cpu alloc/memset0/event failed: %s\n", ng_last_error());
    t_release(&t, 0);
    free(t.mem);
    ng_event_destroy(cpu, ev);
    ng_free(cpu, f);
    ng_free(cpu, d);
    ng_backend_free(cpu);
    return r;
}

/* =============================================================================================
 * Suites
 * ============================================================================================= */

typedef int (*op_fn)(tctx *t);
static const struct {
    const char *name;
    op_fn fn;
} coarse_ops[] = {
    {"op_table", op_table},
    {"memory", op_memory},
    {"async", op_async},
    {"events", op_events},
    {"gemm", op_gemm},
    {"gemm_strided_batched", op_gemm_strided_batched},
    {"syrk", op_syrk},
    {"gemv", op_gemv},
    {"trsm", op_trsm},
    {"scal", op_scal},
    {"dot_nrm2", op_dot_nrm2},
    {"sum_cols_rows", op_sums},
    {"potrf_potri_syevd", op_lapack},
    {"potrs", op_potrs},
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

static void tctx_init(tctx *t, ng_backend *be, ng_backend *ref) {
    const char *sm = getenv("NG_TEST_SMALL");
    memset(t, 0, sizeof *t);
    t->be = be;
    t->ref = ref;
    t->small = sm && *sm && strcmp(sm, "0") != 0;
    t->big = t->small ? 24 : 100;
}

static void run_suite(const char *suite, ng_backend *be, ng_backend *ref) {
    size_t i;
    int op;
    printf("  %s: testing \"%s\" against %s\n", suite, be->description,
           ref ? ref->description : "naive double-precision loops");
    for (i = 0; i < sizeof coarse_ops / sizeof coarse_ops[0]; i++) {
        tctx t;
        int r;
        tctx_init(&t, be, ref);
        ngt_skip_reason[0] = 0;
        fflush(stdout);
        ng_clear_error();
        r = coarse_ops[i].fn(&t);
        t_release(&t, 0);
        free(t.mem);
        record(suite, coarse_ops[i].name, r);
    }
    for (op = 0; op < NG_OP_COUNT; op++) {
        const op_test *d = &op_tests[op];
        char name[64];
        tctx t;
        int r;
        snprintf(name, sizeof name, "run_op/%s", ng_op_name((ng_op)op));
        if (!d->gen) { /* op_table says which */
            record(suite, name, NGT_FAIL);
            continue;
        }
        tctx_init(&t, be, ref);
        ngt_skip_reason[0] = 0;
        fflush(stdout);
        ng_clear_error();
        r = op_elementwise(&t, d);
        if (r == NGT_PASS)
            printf("  %s/%s: %d cases (%d in place)\n", suite, name, t.ncases, t.ninplace);
        t_release(&t, 0);
        free(t.mem);
        record(suite, name, r);
    }
}

/* ---- TF32 opt-in scopes --------------------------------------------------------------------
 * Without ng_backend_allow_tf32 a scope changes nothing; with it, a gemm inside the scope on CUDA
 * (the emulator rounds operands to TF32, 10-bit mantissa, nearest-even) equals a float64 product of
 * TF32-rounded operands and differs from the FP32 product, while on the CPU it is bit-identical.
 * Scopes nest, and after the outer end the gemm is FP32 again, bit for bit. */
static float tf32_round_ref(float x) {
    int e;
    double ulp;
    if (!isfinite(x) || x == 0.0f) return x;
    frexp((double)x, &e);
    ulp = ldexp(1.0, e - 11);
    return (float)(rint((double)x / ulp) * ulp);
}

static int tf32_gemm(ng_backend *be, const float *dA, const float *dB, float *dC, float *out,
                     int m, int n, int k) {
    NGT_CHECK(ng_gemm(be, 0, 0, m, n, k, 1.0f, dA, m, dB, k, 0.0f, dC, m) == NG_OK, "gemm: %s",
              ng_last_error());
    NGT_CHECK(ng_get(be, out, dC, sizeof(float) * (size_t)m * n) == NG_OK, "get");
    return NGT_PASS;
}

static int test_tf32_scopes(ng_backend *be) {
    enum { M = 21, N = 17, K = 96 };
    static float A[M * K], B[K * N], c0[M * N], c1[M * N], c2[M * N], c3[M * N];
    float *dA = NULL, *dB = NULL, *dC = NULL;
    int saved = -1, saved2 = -1, i, j, l, tf32 = be->iface->set_tf32 != NULL;
    double maxdev = 0.0;
    uint32_t x = 12345u;
    for (i = 0; i < M * K; i++) A[i] = (float)((x = x * 1664525u + 1013904223u) >> 8) * 0x1p-23f - 1.0f;
    for (i = 0; i < K * N; i++) B[i] = (float)((x = x * 1664525u + 1013904223u) >> 8) * 0x1p-23f - 1.0f;
    NGT_CHECK(ng_alloc(be, sizeof A, (void **)&dA) == NG_OK &&
                  ng_alloc(be, sizeof B, (void **)&dB) == NG_OK &&
                  ng_alloc(be, sizeof c0, (void **)&dC) == NG_OK,
              "alloc");
    NGT_CHECK(ng_set(be, dA, A, sizeof A) == NG_OK && ng_set(be, dB, B, sizeof B) == NG_OK, "set");
    if (tf32_gemm(be, dA, dB, dC, c0, M, N, K) != NGT_PASS) return NGT_FAIL;
    /* a scope without the opt-in does nothing */
    NGT_CHECK(ng_tf32_begin(be, &saved) == NG_OK && saved == 0 && !be->tf32_active, "begin");
    if (tf32_gemm(be, dA, dB, dC, c1, M, N, K) != NGT_PASS) return NGT_FAIL;
    NGT_CHECK(ng_tf32_end(be, saved) == NG_OK, "end");
    NGT_CHECK(memcmp(c0, c1, sizeof c0) == 0, "a scope without --tf32 changed a gemm");
    /* opt-in: nested scopes */
    ng_backend_allow_tf32(be, 1);
    NGT_CHECK(ng_tf32_begin(be, &saved) == NG_OK && saved == 0, "begin (allowed)");
    NGT_CHECK(be->tf32_active == tf32, "active %d, expected %d", be->tf32_active, tf32);
    NGT_CHECK(ng_tf32_begin(be, &saved2) == NG_OK && saved2 == tf32, "nested begin");
    NGT_CHECK(ng_tf32_end(be, saved2) == NG_OK && be->tf32_active == tf32, "nested end kept it");
    if (tf32_gemm(be, dA, dB, dC, c2, M, N, K) != NGT_PASS) return NGT_FAIL;
    NGT_CHECK(ng_tf32_end(be, saved) == NG_OK && !be->tf32_active, "outer end");
    if (tf32_gemm(be, dA, dB, dC, c3, M, N, K) != NGT_PASS) return NGT_FAIL;
    ng_backend_allow_tf32(be, 0);
    NGT_CHECK(memcmp(c0, c3, sizeof c0) == 0, "FP32 gemm after the scope differs from before it");
    if (!tf32) {
        NGT_CHECK(memcmp(c0, c2, sizeof c0) == 0, "TF32 scope changed a gemm on %s", be->iface->name);
    } else {
        for (j = 0; j < N; j++)
            for (i = 0; i < M; i++) {
                double r = 0.0;
                for (l = 0; l < K; l++)
                    r += (double)tf32_round_ref(A[i + M * l]) * tf32_round_ref(B[l + K * j]);
                NGT_CLOSE(c2[i + M * j], r, 3e-5 + 3e-5 * fabs(r), "tf32 gemm");
                maxdev = fmax(maxdev, fabs((double)c2[i + M * j] - c0[i + M * j]));
            }
        /* K = 96 products of |.| <= 1, each off by <= ~2^-10 relative: a bound on the change */
        NGT_CHECK(maxdev > 1e-4 && maxdev < K * 0x1p-10, "TF32 change %g outside (1e-4, %g)", maxdev,
                  K * 0x1p-10);
    }
    ng_free(be, dA);
    ng_free(be, dB);
    ng_free(be, dC);
    return NGT_PASS;
}

/* ---- the CPU backend's vector loops against scalar loops over the same bodies, bit for bit ----
 * The generic runner checks the Philox-driven ops against double-precision references with a
 * tolerance; this checks that the CPU backend's vectorised, tiled loops compute exactly what a
 * scalar loop over the ng_math.h bodies computes (ng_gibbs_input, ng_sigmoid, ng_bernoulli_draw,
 * and ng_uniform_at element by element): columns taller than a tile (2048 units: split into
 * parts), runs of short columns in one tile, leading dimensions > rows, a shard's first (groups of
 * four straddling tiles), the variants the RBM and AIS use, in place; Bernoulli draws and uniforms
 * at lengths around a tile; and sum_cols (row blocks walking the columns) against a row-by-row
 * double sum. Tolerance 0: one differing bit fails. */
static int cpu_bits_gibbs(ng_backend *be, int rows, int cols, int ld, uint64_t first, int v) {
    /* variants: bias, base, beta, prob, sample, alias (1: prob = pre, 2: sample = pre) */
    static const struct { int bias, base; float beta; int prob, sample, alias; } gv[] = {
        {1, 0, 1.0f, 1, 1, 0}, {1, 1, 0.3f, 0, 1, 0}, {0, 1, 0.0f, 1, 0, 0}, {1, 0, 1.0f, 1, 0, 1}, {1, 0, 1.0f, 1, 1, 2}};
    const size_t n = (size_t)ld * cols;
    const uint64_t key = ng_rng_key(31 + (uint64_t)v, 3), step = 0x100000007ull;
    float *pre = (float *)malloc(n * sizeof(float)), *prob = (float *)malloc(n * sizeof(float));
    float *smp = (float *)malloc(n * sizeof(float)), *bias = (float *)malloc((size_t)rows * sizeof(float));
    float *base = (float *)malloc((size_t)rows * sizeof(float));
    float *dpre = NULL, *dprob = NULL, *dsmp = NULL, *dbias = NULL, *dbase = NULL;
    int r, c, ok = 1;
    size_t i;
    if (!pre || !prob || !smp || !bias || !base) ok = 0;
    for (i = 0; ok && i < n; i++) pre[i] = 12.0f * (ng_uniform_at(77, (uint64_t)v, i) - 0.5f);
    for (r = 0; ok && r < rows; r++)
        bias[r] = ng_uniform_at(78, 0, (uint64_t)r) - 0.5f, base[r] = 2.0f * ng_uniform_at(79, 0, (uint64_t)r) - 1.0f;
    if (ok && (ng_alloc(be, n * sizeof(float), (void **)&dpre) || ng_alloc(be, n * sizeof(float), (void **)&dprob) ||
               ng_alloc(be, n * sizeof(float), (void **)&dsmp) || ng_alloc(be, (size_t)rows * sizeof(float), (void **)&dbias) ||
               ng_alloc(be, (size_t)rows * sizeof(float), (void **)&dbase)))
        ok = 0;
    if (ok) {
        float *op = gv[v].alias == 1 ? dpre : gv[v].prob ? dprob : NULL;
        float *os = gv[v].alias == 2 ? dpre : gv[v].sample ? dsmp : NULL;
        ng_set(be, dpre, pre, n * sizeof(float));
        ng_set(be, dbias, bias, (size_t)rows * sizeof(float));
        ng_set(be, dbase, base, (size_t)rows * sizeof(float));
        for (i = 0; i < n; i++) prob[i] = smp[i] = -1.0f; /* padding rows must stay -1 */
        ng_set(be, dprob, prob, n * sizeof(float));
        ng_set(be, dsmp, smp, n * sizeof(float));
        if (gv[v].beta == 1.0f && !gv[v].base)
            ok = ng_gibbs_sample_at(be, rows, cols, dpre, ld, gv[v].bias ? dbias : NULL, NULL, op, ld, os, ld, key, step,
                                    first) == NG_OK;
        else /* tempered (first = 0: ng_gibbs_sample has no first) */
            ok = first == 0 && ng_gibbs_sample(be, rows, cols, dpre, ld, gv[v].bias ? dbias : NULL, gv[v].beta,
                                               gv[v].base ? dbase : NULL, op, ld, os, ld, key, step) == NG_OK;
        ng_get(be, prob, gv[v].alias == 1 ? dpre : dprob, n * sizeof(float));
        ng_get(be, smp, gv[v].alias == 2 ? dpre : dsmp, n * sizeof(float));
    }
    for (c = 0; ok && c < cols; c++)
        for (r = 0; ok && r < ld; r++) {
            const size_t e = (size_t)r + (size_t)c * ld;
            float p = -1.0f, sm = -1.0f;
            if (r < rows) {
                const float x = ng_gibbs_input(pre[e], gv[v].bias ? bias[r] : 0.0f, gv[v].beta, gv[v].base ? base[r] : 0.0f);
                const float u = ng_uniform_at(key, step, first + (uint64_t)r + (uint64_t)rows * (uint64_t)c);
                p = ng_sigmoid(x);
                sm = ng_bernoulli_draw(p, u);
            }
            if (gv[v].alias == 2 && r >= rows) sm = pre[e]; /* sample = pre: padding keeps pre */
            if (gv[v].alias == 1 && r >= rows) p = pre[e];
            if ((gv[v].prob || gv[v].alias == 1) && memcmp(&p, &prob[e], sizeof p) != 0) {
                printf("  gibbs %dx%d ld %d first %llu variant %d: prob(%d, %d) = %a, scalar loop %a\n", rows, cols, ld,
                       (unsigned long long)first, v, r, c, (double)prob[e], (double)p);
                ok = 0;
            }
            if ((gv[v].sample || gv[v].alias == 2) && memcmp(&sm, &smp[e], sizeof sm) != 0) {
                printf("  gibbs %dx%d ld %d first %llu variant %d: sample(%d, %d) = %g, scalar loop %g\n", rows, cols,
                       ld, (unsigned long long)first, v, r, c, (double)smp[e], (double)sm);
                ok = 0;
            }
        }
    ng_free(be, dpre);
    ng_free(be, dprob);
    ng_free(be, dsmp);
    ng_free(be, dbias);
    ng_free(be, dbase);
    free(pre);
    free(prob);
    free(smp);
    free(bias);
    free(base);
    return ok;
}

static int test_cpu_elementwise_bits(ng_backend *be) {
    static const int shapes[][3] = {{5000, 3, 5003}, {2049, 2, 2049}, {4096, 2, 4097}, {500, 9, 500},
                                    {13, 700, 16}, {1, 3000, 1}, {7, 5, 7}};
    static const uint64_t firsts[] = {0, 5, 0x100000003ull};
    static const size_t lens[] = {1, 63, 2047, 2048, 2049, 5000};
    size_t a, f;
    int v;
    for (a = 0; a < sizeof shapes / sizeof shapes[0]; a++)
        for (f = 0; f < sizeof firsts / sizeof firsts[0]; f++)
            for (v = 0; v < 5; v++) {
                if ((v == 1 || v == 2) && firsts[f] != 0) continue; /* tempered ops take no first */
                NGT_CHECK(cpu_bits_gibbs(be, shapes[a][0], shapes[a][1], shapes[a][2], firsts[f], v),
                          "gibbs_sample %dx%d (ld %d), first %llu, variant %d differs from the scalar loop (above)",
                          shapes[a][0], shapes[a][1], shapes[a][2], (unsigned long long)firsts[f], v);
            }
    for (a = 0; a < sizeof lens / sizeof lens[0]; a++)
        for (f = 0; f < sizeof firsts / sizeof firsts[0]; f++) {
            const size_t n = lens[a];
            float *p = (float *)malloc(n * sizeof(float)), *o = (float *)malloc(n * sizeof(float)), *dp = NULL, *dout = NULL;
            size_t i;
            NGT_CHECK(p && o && ng_alloc(be, n * sizeof(float), (void **)&dp) == NG_OK &&
                          ng_alloc(be, n * sizeof(float), (void **)&dout) == NG_OK,
                      "out of memory");
            for (i = 0; i < n; i++) p[i] = ng_uniform_at(80, 0, i);
            ng_set(be, dp, p, n * sizeof(float));
            NGT_OK(ng_bernoulli_at(be, n, dp, dout, 6, 9, firsts[f]));
            ng_get(be, o, dout, n * sizeof(float));
            for (i = 0; i < n; i++)
                NGT_CHECK(o[i] == ng_bernoulli_draw(p[i], ng_uniform_at(6, 9, firsts[f] + i)),
                          "bernoulli n %zu first %llu: element %zu is %g", n, (unsigned long long)firsts[f], i, (double)o[i]);
            if (f == 0) {
                NGT_OK(ng_fill_uniform(be, n, dout, 6, 9));
                ng_get(be, o, dout, n * sizeof(float));
                for (i = 0; i < n; i++) {
                    const float u = ng_uniform_at(6, 9, i);
                    NGT_CHECK(memcmp(&u, &o[i], sizeof u) == 0, "fill_uniform n %zu: element %zu is %a, ng_uniform_at %a",
                              n, i, (double)o[i], (double)u);
                }
            }
            ng_free(be, dp);
            ng_free(be, dout);
            free(p);
            free(o);
        }
    for (a = 0; a < sizeof shapes / sizeof shapes[0]; a++) {
        const int rows = shapes[a][0], cols = shapes[a][1], ld = shapes[a][2];
        float *A = (float *)malloc((size_t)ld * cols * sizeof(float)), *y = (float *)malloc((size_t)rows * sizeof(float));
        float *dA = NULL, *dy = NULL;
        size_t i;
        int r, c, k;
        NGT_CHECK(A && y && ng_alloc(be, (size_t)ld * cols * sizeof(float), (void **)&dA) == NG_OK &&
                      ng_alloc(be, (size_t)rows * sizeof(float), (void **)&dy) == NG_OK,
                  "out of memory");
        for (i = 0; i < (size_t)ld * cols; i++) A[i] = ng_uniform_at(81, 0, i) - 0.3f;
        for (r = 0; r < rows; r++) y[r] = ng_uniform_at(82, 0, (uint64_t)r);
        ng_set(be, dA, A, (size_t)ld * cols * sizeof(float));
        for (k = 0; k < 2; k++) { /* beta 0, then beta 2 on the first result */
            const float alpha = 1.0f / 3.0f, beta = k ? 2.0f : 0.0f;
            float *want = (float *)malloc((size_t)rows * sizeof(float));
            NGT_CHECK(want != NULL, "out of memory");
            for (r = 0; r < rows; r++) {
                double sum = 0.0;
                for (c = 0; c < cols; c++) sum += A[r + (size_t)c * ld];
                want[r] = ng_sum_combine(sum, alpha, beta, y[r]);
            }
            ng_set(be, dy, y, (size_t)rows * sizeof(float));
            NGT_OK(ng_sum_cols(be, rows, cols, alpha, dA, ld, beta, dy));
            ng_get(be, y, dy, (size_t)rows * sizeof(float));
            for (r = 0; r < rows; r++)
                NGT_CHECK(memcmp(&y[r], &want[r], sizeof(float)) == 0, "sum_cols %dx%d beta %g: row %d is %a, row loop %a",
                          rows, cols, (double)beta, r, (double)y[r], (double)want[r]);
            free(want);
        }
        ng_free(be, dA);
        ng_free(be, dy);
        free(A);
        free(y);
    }
    return NGT_PASS;
}

/* ng_sigmoid over the whole float line through gibbs_sample (prob and sample, beta 1, no bias):
 * every 1021st bit pattern (all signs and exponents, varied mantissas: about 4.2 million), then
 * the special values (zeros, infinities, NaNs with payloads, subnormals, FLT_MAX) and the floats
 * around ng_expf's clamp at -104, each against the scalar ng_math.h bodies, bit for bit (tolerance
 * 0). Run on both CPU paths (hand-written AVX-512 and the compiler's clones). */
static int test_cpu_sigmoid_line(ng_backend *be) {
    static const uint32_t special[] = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u,
                                       0x7fa00001u, 0xff812345u, 0x7fffffffu, 0x00000001u, 0x80000001u, 0x007fffffu,
                                       0x807fffffu, 0x00800000u, 0x80800000u, 0x7f7fffffu, 0xff7fffffu, 0x3f800000u,
                                       0xbf800000u, 0x42d00000u, 0xc2d00000u, 0x42cfffffu, 0xc2cfffffu, 0x42d00001u,
                                       0xc2d00001u, 0x42b17218u, 0xc2b17218u, 0x42ce8ed0u, 0xc2ce8ed0u, 0x42c80000u};
    const size_t nline = (size_t)(0x100000000ull / 1021u) + 1u, nsp = sizeof special / sizeof special[0];
    const int rows = 1000; /* columns of 1000: tails of 8 under the 16-lane loops */
    const size_t n = (nline + nsp + (size_t)rows - 1) / (size_t)rows * (size_t)rows;
    const uint64_t key = ng_rng_key(41, 3), step = 12;
    float *x = (float *)malloc(n * sizeof(float)), *p = (float *)malloc(n * sizeof(float));
    float *sm = (float *)malloc(n * sizeof(float)), *dx = NULL, *dp = NULL, *ds = NULL;
    size_t i, bad = 0;
    NGT_CHECK(x && p && sm && ng_alloc(be, n * sizeof(float), (void **)&dx) == NG_OK &&
                  ng_alloc(be, n * sizeof(float), (void **)&dp) == NG_OK && ng_alloc(be, n * sizeof(float), (void **)&ds) == NG_OK,
              "out of memory");
    for (i = 0; i < n; i++) {
        uint32_t b = i < nsp ? special[i] : i < nsp + nline ? (uint32_t)((i - nsp) * 1021u) : (uint32_t)i;
        memcpy(&x[i], &b, sizeof b);
    }
    ng_set(be, dx, x, n * sizeof(float));
    NGT_OK(ng_gibbs_sample_at(be, rows, (int)(n / rows), dx, rows, NULL, NULL, dp, rows, ds, rows, key, step, 0));
    ng_get(be, p, dp, n * sizeof(float));
    ng_get(be, sm, ds, n * sizeof(float));
    for (i = 0; i < n; i++) {
        const float want = ng_sigmoid(ng_gibbs_input(x[i], 0.0f, 1.0f, 0.0f));
        const float wsm = ng_bernoulli_draw(want, ng_uniform_at(key, step, i));
        if (memcmp(&want, &p[i], sizeof want) != 0 || memcmp(&wsm, &sm[i], sizeof wsm) != 0) {
            if (bad++ < 5)
                printf("  sigmoid(%a) = %a (sample %g), scalar body %a (sample %g)\n", (double)x[i], (double)p[i],
                       (double)sm[i], (double)want, (double)wsm);
        }
    }
    NGT_CHECK(bad == 0, "%zu of %zu sigmoids or draws differ from the scalar bodies (first above)", bad, n);
    ng_free(be, dx);
    ng_free(be, dp);
    ng_free(be, ds);
    free(x);
    free(p);
    free(sm);
    return NGT_PASS;
}

/* sum_cols_part (column sums in parts with a float64 running sum) against one sum_cols over all
 * the columns, bit for bit (tolerance 0: the same additions in the same order): parts of 1 column,
 * ragged parts, one part, leading dimensions > rows, beta 0 and 2; and its argument checks. */
static int test_sum_cols_part(ng_backend *be) {
    static const int shapes[][3] = {{500, 2000, 500}, {784, 450, 784}, {13, 700, 16}, {5000, 3, 5003}, {1, 9, 1}};
    static const int parts[][4] = {{1, 0, 0, 0}, {3, 0, 0, 0}, {0, 0, 0, 0}, {7, 100, 1, 0}}; /* 0 = the rest */
    size_t a, q;
    int k;
    if (!ng_sum_cols_part_supported(be)) return ngt_skip("this backend has no sum_cols_part (callers use sum_cols)");
    for (a = 0; a < sizeof shapes / sizeof shapes[0]; a++)
        for (q = 0; q < sizeof parts / sizeof parts[0]; q++)
            for (k = 0; k < 2; k++) {
                const int rows = shapes[a][0], cols = shapes[a][1], ld = shapes[a][2];
                const float alpha = 1.0f / 3.0f, beta = k ? 2.0f : 0.0f;
                float *A = (float *)malloc((size_t)ld * cols * sizeof(float)), *y = (float *)malloc((size_t)rows * sizeof(float));
                float *want = (float *)malloc((size_t)rows * sizeof(float)), *dA = NULL, *dy = NULL, *dw = NULL;
                double *acc = NULL;
                size_t i;
                int c0 = 0, p = 0, r;
                NGT_CHECK(A && y && want && ng_alloc(be, (size_t)ld * cols * sizeof(float), (void **)&dA) == NG_OK &&
                              ng_alloc(be, (size_t)rows * sizeof(float), (void **)&dy) == NG_OK &&
                              ng_alloc(be, (size_t)rows * sizeof(float), (void **)&dw) == NG_OK &&
                              ng_alloc(be, (size_t)rows * sizeof(double), (void **)&acc) == NG_OK,
                          "out of memory");
                for (i = 0; i < (size_t)ld * cols; i++) A[i] = ng_uniform_at(83, a, i) - 0.3f;
                for (r = 0; r < rows; r++) y[r] = ng_uniform_at(84, 0, (uint64_t)r);
                ng_set(be, dA, A, (size_t)ld * cols * sizeof(float));
                ng_set(be, dy, y, (size_t)rows * sizeof(float));
                ng_set(be, dw, y, (size_t)rows * sizeof(float));
                NGT_OK(ng_sum_cols(be, rows, cols, alpha, dA, ld, beta, dw));
                while (c0 < cols) {
                    int n = p < 4 && parts[q][p] > 0 ? parts[q][p] : cols - c0;
                    if (n > cols - c0) n = cols - c0;
                    NGT_OK(ng_sum_cols_part(be, rows, n, dA + (size_t)c0 * ld, ld, acc, c0 == 0, c0 + n == cols, alpha, beta, dy));
                    c0 += n;
                    if (p < 3) p++;
                }
                ng_get(be, y, dy, (size_t)rows * sizeof(float));
                ng_get(be, want, dw, (size_t)rows * sizeof(float));
                for (r = 0; r < rows; r++)
                    NGT_CHECK(memcmp(&y[r], &want[r], sizeof(float)) == 0,
                              "sum_cols_part %dx%d (ld %d) in parts of %d, %d, ... beta %g: row %d is %a, sum_cols %a", rows,
                              cols, ld, parts[q][0], parts[q][1], (double)beta, r, (double)y[r], (double)want[r]);
                NGT_CHECK(ng_sum_cols_part(be, rows, cols, dA, ld, NULL, 1, 1, alpha, beta, dy) == NG_ERR_INVALID_ARG,
                          "sum_cols_part without a running sum was accepted");
                ng_clear_error();
                NGT_CHECK(ng_sum_cols_part(be, rows, cols, dA, rows - 1, acc, 1, 1, alpha, beta, dy) == NG_ERR_INVALID_ARG,
                          "sum_cols_part with lda < rows was accepted");
                ng_clear_error();
                ng_free(be, dA);
                ng_free(be, dy);
                ng_free(be, dw);
                ng_free(be, acc);
                free(A);
                free(y);
                free(want);
            }
    return NGT_PASS;
}

/* Draws without the probability (gibbs_sample with prob NULL): the AVX-512 loop decides most lanes
 * from a cheap float exp and falls back to the exact sigmoid near u = sigmoid(x) (cpu_avx512.c,
 * decide16). The draws must be the scalar bodies' bits for every input: the whole float line (as
 * cpu_sigmoid_line) with Philox uniforms through the op, then uniforms placed at the exact
 * probability, one float step either side, and at distances around the fallback's margin (1e-5)
 * and the fast path's error (1e-6), with the tempered input (beta, base) too. The path counts
 * show that the placed uniforms reach the exact fallback and random ones almost never do. */
static int test_cpu_draws_only(ng_backend *be) {
    static const float offs[] = {0.0f, 1e-7f, -1e-7f, 1e-6f, -1e-6f, 2.5e-6f, -2.5e-6f, 4e-6f, -4e-6f, 5e-6f, -5e-6f,
                                 9e-6f, -9e-6f, 1e-5f, -1e-5f, 1.1e-5f, -1.1e-5f, 2e-5f, -2e-5f, 4e-5f, -4e-5f};
    const int no = (int)(sizeof offs / sizeof offs[0]) + 2, rows = 1000;
    const size_t nline = (size_t)(0x100000000ull / 1021u) + 1u, n = (nline + (size_t)rows - 1) / (size_t)rows * (size_t)rows;
    const uint64_t key = ng_rng_key(43, 3), step = 5;
    float *x = (float *)malloc(n * sizeof(float)), *sm = (float *)malloc(n * sizeof(float)), *dx = NULL, *ds = NULL;
    float *u = NULL, *xs = NULL, *bias = NULL, *base = NULL, *out = NULL;
    long fast0, exact0, fast1, exact1;
    size_t i, bad = 0, m;
    int v, o;
    NGT_CHECK(x && sm && ng_alloc(be, n * sizeof(float), (void **)&dx) == NG_OK && ng_alloc(be, n * sizeof(float), (void **)&ds) == NG_OK,
              "out of memory");
    /* 1. the float line through the op, Philox uniforms */
    for (i = 0; i < n; i++) {
        uint32_t b = (uint32_t)(i * 1021u);
        memcpy(&x[i], &b, sizeof b);
    }
    ng_set(be, dx, x, n * sizeof(float));
    NGT_OK(ng_gibbs_sample_at(be, rows, (int)(n / rows), dx, rows, NULL, NULL, NULL, rows, ds, rows, key, step, 0));
    ng_get(be, sm, ds, n * sizeof(float));
    for (i = 0; i < n; i++) {
        const float want = ng_bernoulli_draw(ng_sigmoid(ng_gibbs_input(x[i], 0.0f, 1.0f, 0.0f)), ng_uniform_at(key, step, i));
        if (memcmp(&want, &sm[i], sizeof want) != 0 && bad++ < 5)
            printf("  draw at x = %a is %g, scalar bodies %g\n", (double)x[i], (double)sm[i], (double)want);
    }
    NGT_CHECK(bad == 0, "%zu of %zu draws (prob NULL) differ from the scalar bodies (first above)", bad, n);
    ng_free(be, dx);
    ng_free(be, ds);
    free(x);
    free(sm);
    if (!ng_cpu_avx512_active()) return NGT_PASS; /* the clones compute the probability: nothing more to check */
    /* 2. placed uniforms: x on [-20, 20] in steps of 1/512 and the line's awkward values, each with
     * u = p + offs[o] (clamped to [0, 1]), the float steps beside p, beta 1 then 0.37 with a base */
    m = (size_t)(40 * 512 + 1 + 16) * (size_t)no;
    xs = (float *)malloc(m * sizeof(float));
    u = (float *)malloc(m * sizeof(float));
    bias = (float *)malloc(m * sizeof(float));
    base = (float *)malloc(m * sizeof(float));
    out = (float *)malloc(m * sizeof(float));
    NGT_CHECK(xs && u && bias && base && out, "out of memory");
    for (v = 0; v < 2; v++) {
        const float beta = v ? 0.37f : 1.0f;
        static const float odd[16] = {0.0f, -0.0f, 1e-45f, -1e-45f, 86.9f, -86.9f, 87.5f, -87.5f, 103.9f, -103.9f,
                                      104.5f, -104.5f, 1e30f, -1e30f, 15.9424f, -15.9424f};
        size_t j = 0, k;
        for (k = 0; k < (size_t)(40 * 512 + 1 + 16); k++) {
            const float xv = k < 40 * 512 + 1 ? -20.0f + (float)k / 512.0f : odd[k - (40 * 512 + 1)];
            for (o = 0; o < no; o++, j++) {
                float p, uu;
                xs[j] = xv;
                bias[j] = v ? 0.25f : 0.0f;
                base[j] = v ? -1.5f + (float)(k % 7) : 0.0f;
                p = ng_sigmoid(ng_gibbs_input(xs[j], bias[j], beta, base[j]));
                uu = o < no - 2 ? p + offs[o] : nextafterf(p, o == no - 2 ? 0.0f : 2.0f);
                u[j] = uu < 0.0f ? 0.0f : uu > 1.0f ? 1.0f : uu;
            }
        }
        /* one call per 16 x values' offsets would hide tails: run columns of 999 (tails of 7) */
        ng_avx512_draw_counts(&fast0, &exact0);
        for (k = 0; k < m; k += 999) {
            const int len = (int)(m - k < 999 ? m - k : 999);
            ng_avx512_gibbs_column(len, xs + k, bias + k, beta, base + k, u + k, NULL, out + k);
        }
        ng_avx512_draw_counts(&fast1, &exact1);
        bad = 0;
        for (k = 0; k < m; k++) {
            const float want = ng_bernoulli_draw(ng_sigmoid(ng_gibbs_input(xs[k], bias[k], beta, base[k])), u[k]);
            if (memcmp(&want, &out[k], sizeof want) != 0 && bad++ < 5)
                printf("  beta %g: draw at x = %a, u = %a is %g, scalar bodies %g\n", (double)beta, (double)xs[k], (double)u[k],
                       (double)out[k], (double)want);
        }
        NGT_CHECK(bad == 0, "beta %g: %zu of %zu draws at placed uniforms differ from the scalar bodies (first above)",
                  (double)beta, bad, m);
        /* nearly every vector holds a uniform within the margin: the exact path ran on them */
        NGT_CHECK(exact1 - exact0 >= (long)(m / 16) * 9 / 10, "beta %g: only %ld of %zu vectors took the exact path",
                  (double)beta, exact1 - exact0, (m + 15) / 16);
    }
    /* 3. random uniforms: the fast path decides almost every vector */
    for (i = 0; i < m; i++) {
        xs[i] = 8.0f * (ng_uniform_at(44, 0, i) - 0.5f);
        u[i] = ng_uniform_at(44, 1, i);
        bias[i] = base[i] = 0.0f;
    }
    ng_avx512_draw_counts(&fast0, &exact0);
    for (i = 0; i < m; i += 992) ng_avx512_gibbs_column((int)(m - i < 992 ? m - i : 992), xs + i, bias + i, 1.0f, base + i,
                                                        u + i, NULL, out + i);
    ng_avx512_draw_counts(&fast1, &exact1);
    for (i = 0, bad = 0; i < m; i++) bad += out[i] != ng_bernoulli_draw(ng_sigmoid(xs[i]), u[i]);
    NGT_CHECK(bad == 0, "%zu of %zu draws at random uniforms differ from the scalar bodies", bad, m);
    NGT_CHECK(exact1 - exact0 <= (fast1 - fast0) / 100, "random uniforms: %ld vectors exact, %ld fast (expected < 1%% exact)",
              exact1 - exact0, fast1 - fast0);
    printf("  draws only: placed uniforms reach the exact path, random ones: %ld of %ld vectors exact\n", exact1 - exact0,
           exact1 - exact0 + fast1 - fast0);
    free(xs);
    free(u);
    free(bias);
    free(base);
    free(out);
    return NGT_PASS;
}

/* gibbs_sample's fused column sums (sum): equal to ng_sum_cols_part over the op's output, bit for
 * bit, for prob and for draws, over two ops in a row (sum_first, then adding), on one thread (the
 * sums inside the tile loop) and on two (one pass after it); refused by name on a backend without
 * sum_cols_part. Shapes: short columns (several per tile), columns longer than a tile, an ld. */
static int test_gibbs_sum(ng_backend *be) {
    static const int shapes[][3] = {{500, 37, 500}, {784, 20, 790}, {3000, 5, 3001}, {7, 3000, 7}};
    const uint64_t key = ng_rng_key(45, 2);
    size_t a;
    int out, th;
    if (!ng_sum_cols_part_supported(be)) {
        float *d = NULL;
        double *acc = NULL;
        ng_op_args o = {.op = NG_OP_GIBBS_SAMPLE};
        ng_status st;
        NGT_CHECK(ng_alloc(be, 64 * sizeof(float), (void **)&d) == NG_OK && ng_alloc(be, 8 * sizeof(double), (void **)&acc) == NG_OK,
                  "out of memory");
        ng_fill(be, 64, 0.5f, d);
        o.gibbs_sample.rows = 8, o.gibbs_sample.cols = 8, o.gibbs_sample.pre = d, o.gibbs_sample.ldp = 8;
        o.gibbs_sample.beta = 1.0f, o.gibbs_sample.prob = d, o.gibbs_sample.ldq = 8, o.gibbs_sample.sum = acc;
        st = ng_run_op(be, &o);
        NGT_CHECK(st == NG_ERR_UNSUPPORTED && strstr(ng_last_error(), "sum_cols_part"),
                  "gibbs_sample with sum on the %s backend: status %s, '%s' (expected a refusal naming sum_cols_part)",
                  be->iface->name, ng_status_name(st), ng_last_error());
        ng_clear_error();
        ng_free(be, d);
        ng_free(be, acc);
        return NGT_PASS;
    }
    for (a = 0; a < sizeof shapes / sizeof shapes[0]; a++)
        for (out = 0; out < 2; out++)
            for (th = 1; th <= 2; th++) {
                const int rows = shapes[a][0], cols = shapes[a][1], ld = shapes[a][2], was = omp_get_max_threads();
                const size_t n = (size_t)ld * cols;
                float *x = (float *)malloc(n * sizeof(float)), *dx = NULL, *dout = NULL, *y0 = NULL, *y1 = NULL;
                double *acc = NULL, *want = NULL, *got = (double *)malloc((size_t)rows * sizeof(double));
                double *wh = (double *)malloc((size_t)rows * sizeof(double));
                size_t i;
                int b;
                NGT_CHECK(x && got && wh && ng_alloc(be, n * sizeof(float), (void **)&dx) == NG_OK &&
                              ng_alloc(be, n * sizeof(float), (void **)&dout) == NG_OK &&
                              ng_alloc(be, (size_t)rows * sizeof(double), (void **)&acc) == NG_OK &&
                              ng_alloc(be, (size_t)rows * sizeof(double), (void **)&want) == NG_OK &&
                              ng_alloc(be, (size_t)rows * sizeof(float), (void **)&y0) == NG_OK &&
                              ng_alloc(be, (size_t)rows * sizeof(float), (void **)&y1) == NG_OK,
                          "out of memory");
                for (i = 0; i < n; i++) x[i] = 6.0f * (ng_uniform_at(46, a, i) - 0.5f);
                ng_set(be, dx, x, n * sizeof(float));
                omp_set_num_threads(th);
                for (b = 0; b < 2; b++) { /* two ops (steps 3, 4): the second adds to the first's sums */
                    ng_op_args o = {.op = NG_OP_GIBBS_SAMPLE};
                    o.gibbs_sample.rows = rows, o.gibbs_sample.cols = cols, o.gibbs_sample.pre = dx, o.gibbs_sample.ldp = ld;
                    o.gibbs_sample.beta = 1.0f, o.gibbs_sample.key = key, o.gibbs_sample.step = 3 + (uint64_t)b;
                    if (out) o.gibbs_sample.sample = dout, o.gibbs_sample.lds = ld;
                    else o.gibbs_sample.prob = dout, o.gibbs_sample.ldq = ld;
                    o.gibbs_sample.sum = acc, o.gibbs_sample.sum_first = b == 0;
                    NGT_OK(ng_run_op(be, &o));
                    /* the reference: sum_cols_part over the output the op wrote */
                    NGT_OK(ng_sum_cols_part(be, rows, cols, dout, ld, want, b == 0, 1, 1.0f, 0.0f, y0));
                }
                omp_set_num_threads(was);
                ng_get(be, got, acc, (size_t)rows * sizeof(double));
                ng_get(be, wh, want, (size_t)rows * sizeof(double));
                for (i = 0; i < (size_t)rows; i++)
                    NGT_CHECK(memcmp(&got[i], &wh[i], sizeof got[i]) == 0,
                              "gibbs_sample sum %dx%d (ld %d), %s, %d threads: row %zu is %a, sum_cols_part %a", rows, cols, ld,
                              out ? "draws" : "prob", th, i, got[i], wh[i]);
                ng_free(be, dx);
                ng_free(be, dout);
                ng_free(be, acc);
                ng_free(be, want);
                ng_free(be, y0);
                ng_free(be, y1);
                free(x);
                free(got);
                free(wh);
            }
    return NGT_PASS;
}

/* The CPU bit tests on the hand-written AVX-512 loops (skipped on a CPU without them) and on the
 * compiler's clones. */
static int test_cpu_bits_path(ng_backend *be, int avx512, int (*test)(ng_backend *)) {
    int was = ng_cpu_use_avx512(avx512), r;
    if (avx512 && !ng_cpu_use_avx512(1)) {
        ng_cpu_use_avx512(was);
        return ngt_skip("this CPU has no AVX-512 (x86-64-v4), or the backend was built without the AVX-512 loops");
    }
    ng_cpu_use_avx512(avx512);
    r = test(be);
    ng_cpu_use_avx512(was);
    return r;
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
    record("cpu-vs-naive", "tf32_scopes", test_tf32_scopes(cpu));
    record("cpu-vs-naive", "cpu_elementwise_bits (avx512)", test_cpu_bits_path(cpu, 1, test_cpu_elementwise_bits));
    record("cpu-vs-naive", "cpu_elementwise_bits (clones)", test_cpu_bits_path(cpu, 0, test_cpu_elementwise_bits));
    record("cpu-vs-naive", "cpu_sigmoid_line (avx512)", test_cpu_bits_path(cpu, 1, test_cpu_sigmoid_line));
    record("cpu-vs-naive", "cpu_sigmoid_line (clones)", test_cpu_bits_path(cpu, 0, test_cpu_sigmoid_line));
    record("cpu-vs-naive", "cpu_draws_only (avx512)", test_cpu_bits_path(cpu, 1, test_cpu_draws_only));
    record("cpu-vs-naive", "cpu_draws_only (clones)", test_cpu_bits_path(cpu, 0, test_cpu_draws_only));
    record("cpu-vs-naive", "sum_cols_part", test_sum_cols_part(cpu));
    record("cpu-vs-naive", "gibbs_sum", test_gibbs_sum(cpu));
    s = ng_backend_cuda_init(-1, &cuda);
    if (s != NG_OK) {
        char why[400];
        snprintf(why, sizeof why, "no CUDA device here: %s", ng_last_error());
        record("cuda-vs-cpu", "all", ngt_skip(why));
        ng_clear_error();
    } else {
        run_suite("cuda-vs-cpu", cuda, cpu);
        record("cuda-vs-cpu", "tf32_scopes", test_tf32_scopes(cuda));
        record("cuda-vs-cpu", "gibbs_sum", test_gibbs_sum(cuda));
        ng_backend_free(cuda);
    }
    ng_backend_free(cpu);
    return ngt_finish();
}
