/* harness.h: the tiny test harness every tests/test_*.c uses.
 * A test is `static int test_x(void)` returning NGT_PASS, NGT_FAIL or NGT_SKIP (after ngt_skip()
 * says why). main() calls NGT_RUN(test_x) for each and returns ngt_finish(). Each binary prints
 * one line per test and a final "RESULT passed=P failed=F skipped=S" that tests/run.sh sums.
 * A failing check prints the file, line, expression and the values involved. */
#ifndef NG_TEST_HARNESS_H
#define NG_TEST_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { NGT_PASS = 0, NGT_FAIL = 1, NGT_SKIP = 2 };

static int ngt_passed, ngt_failed, ngt_skipped;
static char ngt_skip_reason[512];

static inline int ngt_skip(const char *why) {
    snprintf(ngt_skip_reason, sizeof ngt_skip_reason, "%s", why);
    return NGT_SKIP;
}

#define NGT_RUN(fn)                                                                  \
    do {                                                                             \
        int r_;                                                                      \
        ngt_skip_reason[0] = 0;                                                      \
        fflush(stdout);                                                              \
        r_ = fn();                                                                   \
        if (r_ == NGT_PASS) {                                                        \
            ngt_passed++;                                                            \
            printf("PASS %s\n", #fn);                                                \
        } else if (r_ == NGT_SKIP) {                                                 \
            ngt_skipped++;                                                           \
            printf("SKIP %s: %s\n", #fn, ngt_skip_reason);                           \
        } else {                                                                     \
            ngt_failed++;                                                            \
            printf("FAIL %s\n", #fn);                                                \
        }                                                                            \
        fflush(stdout);                                                              \
    } while (0)

static inline int ngt_finish(void) {
    printf("RESULT passed=%d failed=%d skipped=%d\n", ngt_passed, ngt_failed, ngt_skipped);
    return ngt_failed ? 1 : 0;
}

/* Fail the current test when cond is false, printing a formatted explanation. */
#define NGT_CHECK(cond, ...)                                                         \
    do {                                                                             \
        if (!(cond)) {                                                               \
            printf("  %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);        \
            printf(__VA_ARGS__);                                                     \
            printf("\n");                                                            \
            return NGT_FAIL;                                                         \
        }                                                                            \
    } while (0)

/* Fail unless a status is NG_OK; prints the library's message. */
#define NGT_OK(expr)                                                                 \
    do {                                                                             \
        ng_status s_ = (expr);                                                       \
        if (s_ != NG_OK) {                                                           \
            printf("  %s:%d: %s returned %s: %s\n", __FILE__, __LINE__, #expr,       \
                   ng_status_name(s_), ng_last_error());                             \
            return NGT_FAIL;                                                         \
        }                                                                            \
    } while (0)

/* Fail unless |a - b| <= tol (NaN fails). */
#define NGT_CLOSE(a, b, tol, what)                                                   \
    do {                                                                             \
        double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol);               \
        if (!(fabs(a_ - b_) <= t_)) {                                                \
            printf("  %s:%d: %s: %.9g vs %.9g, |diff| %.3g > tol %.3g\n", __FILE__,  \
                   __LINE__, what, a_, b_, fabs(a_ - b_), t_);                       \
            return NGT_FAIL;                                                         \
        }                                                                            \
    } while (0)

/* Compare two arrays elementwise with |a-b| <= atol + rtol*|b|; print the first mismatches and the
 * largest difference. Returns 0 when they match. */
static inline int ngt_compare(const char *what, const float *a, const float *b, size_t n,
                              double atol, double rtol) {
    size_t bad = 0, i, worst = 0;
    double maxd = 0.0;
    for (i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= atol + rtol * fabs((double)b[i]))) {
            if (bad < 5)
                printf("  %s: [%zu] got %.9g want %.9g\n", what, i, (double)a[i], (double)b[i]);
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

#endif
