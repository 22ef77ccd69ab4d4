/* test_profile.c: the ranges and the phase profile of natgrad/profile.h.
 * CPU backend: nesting, calls, inclusive times against the test's own clock, flops of a gemm
 * counted exactly (2 m n k) in every enclosing range, the update window, the table and CSV, the
 * Chrome trace parsed back by a JSON parser written here (syntax, event count, nesting of ranges,
 * escaped names), memory per arena, refused windows. Emulated CUDA (tests/simt): timings from CUDA
 * events, kernel-launcher ranges, and cudaProfilerStart/Stop issued exactly once each around the
 * window (counted by the emulator's shim). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "natgrad/backend.h"
#include "natgrad/profile.h"
#include "natgrad/tensor.h"

/* defined by tests/simt/shim_cudart.cpp; NULL when linked to the real cudart */
extern void simt_profiler_counts(int *starts, int *stops, int *active) __attribute__((weak));

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static void busy(double s) {
    double t0 = wall();
    while (wall() - t0 < s) {
    }
}

static const ng_profile_row *find_row(const ng_profile_row *rows, int n, const char *name) {
    int i;
    for (i = 0; i < n; i++)
        if (strcmp(rows[i].name, name) == 0) return &rows[i];
    return NULL;
}

static int test_parse_steps(void) {
    static const char *bad[] = {"", "3", "3:", ":4", "0:3", "5:2", "a:b", "-1:4", "2:-3", "1:2x", NULL};
    uint64_t a = 0, b = 0;
    int i;
    NGT_OK(ng_profile_parse_steps("3:7", &a, &b));
    NGT_CHECK(a == 3 && b == 7, "3:7 parsed as %llu:%llu", (unsigned long long)a, (unsigned long long)b);
    NGT_OK(ng_profile_parse_steps("5:5", &a, &b));
    for (i = 0; bad[i]; i++) {
        NGT_CHECK(ng_profile_parse_steps(bad[i], &a, &b) == NG_ERR_INVALID_ARG, "'%s' accepted", bad[i]);
        NGT_CHECK(strstr(ng_last_error(), "--profile-steps") != NULL, "message '%s' does not name the option", ng_last_error());
    }
    return NGT_PASS;
}

/* nested ranges on the CPU: calls, depth, times, flops and backend calls */
static int test_cpu_ranges(void) {
    ng_backend *be = NULL;
    ng_profile_config cfg;
    float *A = NULL, *B = NULL, *C = NULL;
    const int m = 64, n = 32, k = 16;
    double t0, t_inner, t_outer;
    ng_profile_row rows[16];
    const ng_profile_row *ro, *ri, *rk;
    int nr, rep;
    NGT_OK(ng_backend_cpu_init(&be));
    NGT_OK(ng_alloc(be, sizeof(float) * (size_t)m * k, (void **)&A));
    NGT_OK(ng_alloc(be, sizeof(float) * (size_t)k * n, (void **)&B));
    NGT_OK(ng_alloc(be, sizeof(float) * (size_t)m * n, (void **)&C));
    NGT_OK(ng_memset0(be, A, sizeof(float) * (size_t)m * k));
    NGT_OK(ng_memset0(be, B, sizeof(float) * (size_t)k * n));
    memset(&cfg, 0, sizeof cfg);
    cfg.measure = 1;
    /* a range opened before the start must not disturb the stack */
    ng_range_push_cat(NG_CAT_EVAL, "before start");
    NGT_OK(ng_profile_start(be, &cfg));
    ng_range_pop();
    t_inner = t_outer = 0.0;
    for (rep = 0; rep < 2; rep++) {
        double to = wall(), ti;
        ng_range_push_cat(NG_CAT_STEP, "outer");
        busy(0.002);
        ti = wall();
        ng_range_push_cat(NG_CAT_GIBBS, "inner");
        NGT_OK(ng_gemm(be, 0, 0, m, n, k, 1.0f, A, m, B, k, 0.0f, C, m));
        busy(0.010);
        ng_range_pop();
        t_inner += wall() - ti;
        ng_range_push_cat(NG_CAT_OTHER, "sibling");
        NGT_OK(ng_fill(be, (size_t)m * n, 1.0f, C));
        ng_range_pop();
        ng_range_pop();
        t_outer += wall() - to;
    }
    t0 = wall();
    (void)t0;
    NGT_OK(ng_profile_finish());
    nr = ng_profile_rows(rows, 16);
    NGT_CHECK(nr == 3, "%d rows (want outer, inner, sibling; 'before start' must not be measured)", nr);
    ro = find_row(rows, nr, "outer");
    ri = find_row(rows, nr, "inner");
    rk = find_row(rows, nr, "sibling");
    NGT_CHECK(ro && ri && rk, "rows missing");
    NGT_CHECK(ro == &rows[0] && ri == &rows[1] && rk == &rows[2], "rows not in order of first appearance");
    NGT_CHECK(ro->depth == 0 && ri->depth == 1 && rk->depth == 1, "depths %d %d %d", ro->depth, ri->depth, rk->depth);
    NGT_CHECK(ro->calls == 2 && ri->calls == 2 && rk->calls == 2, "calls %llu %llu %llu",
              (unsigned long long)ro->calls, (unsigned long long)ri->calls, (unsigned long long)rk->calls);
    NGT_CHECK(ro->cat == NG_CAT_STEP && ri->cat == NG_CAT_GIBBS, "categories %d %d", ro->cat, ri->cat);
    /* the profile's clock brackets less than the test's (it starts later and stops earlier) and
     * at least the busy waits */
    NGT_CHECK(ri->total_s >= 0.020 && ri->total_s <= t_inner, "inner %.6f s (busy 0.020, test clock %.6f)", ri->total_s, t_inner);
    NGT_CHECK(ro->total_s >= ri->total_s + rk->total_s + 0.004 && ro->total_s <= t_outer,
              "outer %.6f s, inner %.6f, sibling %.6f, test clock %.6f", ro->total_s, ri->total_s, rk->total_s, t_outer);
    /* flops: exactly 2 m n k per gemm, inclusive; the fill is a backend call without flops */
    NGT_CHECK(ri->flops == 2.0 * 2.0 * m * n * k && ro->flops == ri->flops && rk->flops == 0.0,
              "flops outer %g inner %g sibling %g (want %g)", ro->flops, ri->flops, rk->flops, 4.0 * m * n * k);
    NGT_CHECK(ri->backend_calls == 2.0 && rk->backend_calls == 2.0 && ro->backend_calls == 4.0,
              "backend calls outer %g inner %g sibling %g", ro->backend_calls, ri->backend_calls, rk->backend_calls);
    NGT_CHECK(!ng_profile_device_timed(), "the CPU backend must use the host clock");
    ng_free(be, A);
    ng_free(be, B);
    ng_free(be, C);
    ng_backend_free(be);
    return NGT_PASS;
}

/* the window: only updates first..last are measured, the table names the step share */
static int test_window_and_table(void) {
    ng_backend *be = NULL;
    ng_profile_config cfg;
    ng_profile_row rows[8];
    const ng_profile_row *r;
    char *text = NULL;
    int nr, starts = -1, stops = -1;
    uint64_t u;
    NGT_OK(ng_backend_cpu_init(&be));
    memset(&cfg, 0, sizeof cfg);
    cfg.measure = 1;
    cfg.capture = 1; /* ignored on the CPU */
    cfg.first = 3;
    cfg.last = 5;
    NGT_OK(ng_profile_start(be, &cfg));
    for (u = 1; u <= 7; u++) {
        ng_profile_update(u, 1);
        ng_range_push_cat(NG_CAT_STEP, "train step");
        ng_range_push_cat(NG_CAT_UPDATE, "update step");
        busy(0.001);
        ng_range_pop();
        ng_range_pop();
        ng_profile_update(u, 0);
        ng_range_push_cat(NG_CAT_CHECKPOINT, "between updates");
        ng_range_pop();
    }
    NGT_OK(ng_profile_finish());
    NGT_CHECK(ng_profile_updates() == 3, "%llu updates measured (window 3:5)", (unsigned long long)ng_profile_updates());
    nr = ng_profile_rows(rows, 8);
    r = find_row(rows, nr, "train step");
    NGT_CHECK(r && r->calls == 3, "train step measured %llu times", r ? (unsigned long long)r->calls : 0ULL);
    r = find_row(rows, nr, "between updates");
    /* after updates 3 and 4 (inside the window); after 5 the window has closed */
    NGT_CHECK(r && r->calls == 2, "between-updates range measured %llu times (want 2)", r ? (unsigned long long)r->calls : 0ULL);
    ng_profile_capture_counts(&starts, &stops);
    NGT_CHECK(starts == 0 && stops == 0, "CPU backend issued %d profiler starts, %d stops", starts, stops);
    NGT_OK(ng_profile_table(&text));
    NGT_CHECK(strstr(text, "3 updates measured") && strstr(text, "train step") && strstr(text, "% step") &&
                  strstr(text, "  update step") && strstr(text, "100.0") && strstr(text, "per update: ") &&
                  strstr(text, "0.0 backend calls"),
              "table:\n%s", text);
    free(text);
    ng_backend_free(be);
    return NGT_PASS;
}

/* ---- a JSON parser (syntax only) ----------------------------------------------------------- */

typedef struct jp { const char *s; int err; } jp;
static void ws(jp *p) { while (*p->s == ' ' || *p->s == '\n' || *p->s == '\r' || *p->s == '\t') p->s++; }
static void value(jp *p, int depth);
static void string(jp *p) {
    if (*p->s != '"') { p->err = 1; return; }
    p->s++;
    while (*p->s && *p->s != '"') {
        if ((unsigned char)*p->s < 0x20) { p->err = 1; return; }
        if (*p->s == '\\') {
            p->s++;
            if (*p->s == 'u') {
                int i;
                for (i = 1; i <= 4; i++)
                    if (!strchr("0123456789abcdefABCDEF", p->s[i]) || !p->s[i]) { p->err = 1; return; }
                p->s += 4;
            } else if (!*p->s || !strchr("\"\\/bfnrt", *p->s)) { p->err = 1; return; }
        }
        p->s++;
    }
    if (*p->s != '"') { p->err = 1; return; }
    p->s++;
}
static void number(jp *p) {
    const char *s0 = p->s;
    if (*p->s == '-') p->s++;
    if (*p->s < '0' || *p->s > '9') { p->err = 1; return; }
    while (*p->s >= '0' && *p->s <= '9') p->s++;
    if (*p->s == '.') { p->s++; if (*p->s < '0' || *p->s > '9') { p->err = 1; return; } while (*p->s >= '0' && *p->s <= '9') p->s++; }
    if (*p->s == 'e' || *p->s == 'E') {
        p->s++;
        if (*p->s == '+' || *p->s == '-') p->s++;
        if (*p->s < '0' || *p->s > '9') { p->err = 1; return; }
        while (*p->s >= '0' && *p->s <= '9') p->s++;
    }
    if (p->s == s0) p->err = 1;
}
static void value(jp *p, int depth) {
    ws(p);
    if (depth > 64) { p->err = 1; return; }
    if (*p->s == '{') {
        p->s++; ws(p);
        if (*p->s == '}') { p->s++; return; }
        for (;;) {
            ws(p); string(p); if (p->err) return;
            ws(p); if (*p->s != ':') { p->err = 1; return; }
            p->s++; value(p, depth + 1); if (p->err) return;
            ws(p);
            if (*p->s == ',') { p->s++; continue; }
            if (*p->s == '}') { p->s++; return; }
            p->err = 1; return;
        }
    } else if (*p->s == '[') {
        p->s++; ws(p);
        if (*p->s == ']') { p->s++; return; }
        for (;;) {
            value(p, depth + 1); if (p->err) return;
            ws(p);
            if (*p->s == ',') { p->s++; continue; }
            if (*p->s == ']') { p->s++; return; }
            p->err = 1; return;
        }
    } else if (*p->s == '"') string(p);
    else if (!strncmp(p->s, "true", 4)) p->s += 4;
    else if (!strncmp(p->s, "false", 5)) p->s += 5;
    else if (!strncmp(p->s, "null", 4)) p->s += 4;
    else number(p);
}
static int json_valid(const char *s) {
    jp p = {s, 0};
    value(&p, 0);
    ws(&p);
    return !p.err && *p.s == 0;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    long n;
    char *b;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b = (char *)malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    if (b) b[n] = 0;
    fclose(f);
    return b;
}

static int count(const char *s, const char *what) {
    int c = 0;
    for (; (s = strstr(s, what)) != NULL; s++) c++;
    return c;
}

/* ts/dur of the i-th complete event (order of the file) */
static int event_times(const char *s, int i, double *ts, double *dur) {
    const char *p = s;
    int k = -1;
    while ((p = strstr(p, "\"ph\":\"X\"")) != NULL) {
        if (++k == i) {
            const char *t = strstr(p, "\"ts\":"), *d = strstr(p, "\"dur\":");
            if (!t || !d) return 0;
            *ts = atof(t + 5);
            *dur = atof(d + 6);
            return 1;
        }
        p++;
    }
    return 0;
}

static int test_trace_json(void) {
    ng_backend *be = NULL;
    ng_profile_config cfg;
    char path[] = "/tmp/natgrad_test_trace_XXXXXX";
    char *txt;
    int fd, i;
    double ts_o, dur_o, ts_i, dur_i;
    NGT_OK(ng_backend_cpu_init(&be));
    memset(&cfg, 0, sizeof cfg);
    cfg.measure = 1;
    NGT_OK(ng_profile_start(be, &cfg));
    for (i = 0; i < 3; i++) {
        ng_range_push_cat(NG_CAT_STEP, "train step");
        ng_range_push_cat(NG_CAT_SOLVER, "quote \" back\\slash\ttab");
        busy(0.0005);
        ng_range_pop();
        ng_range_pop();
    }
    NGT_OK(ng_profile_finish());
    fd = mkstemp(path);
    NGT_CHECK(fd >= 0, "mkstemp failed");
    close(fd);
    NGT_OK(ng_profile_write_trace(path));
    txt = slurp(path);
    remove(path);
    NGT_CHECK(txt != NULL, "cannot read the trace back");
    NGT_CHECK(json_valid(txt), "the trace is not valid JSON:\n%.400s", txt);
    NGT_CHECK(strstr(txt, "\"traceEvents\":[") != NULL, "no traceEvents array");
    NGT_CHECK(count(txt, "\"ph\":\"X\"") == 6, "%d complete events (want 6)", count(txt, "\"ph\":\"X\""));
    NGT_CHECK(strstr(txt, "quote \\\" back\\\\slash\\u0009tab") != NULL, "name not escaped:\n%.600s", txt);
    /* events are written as they close: inner (0) then outer (1); the inner lies inside the outer */
    NGT_CHECK(event_times(txt, 0, &ts_i, &dur_i) && event_times(txt, 1, &ts_o, &dur_o), "no ts/dur");
    NGT_CHECK(ts_i >= ts_o && ts_i + dur_i <= ts_o + dur_o + 1e-3 && dur_i >= 500.0,
              "inner [%.3f, +%.3f] not inside outer [%.3f, +%.3f] or shorter than the 500 us wait", ts_i, dur_i, ts_o, dur_o);
    free(txt);
    /* an unwritable path is an error naming it */
    NGT_CHECK(ng_profile_write_trace("/nonexistent-dir/x.json") == NG_ERR_IO && strstr(ng_last_error(), "/nonexistent-dir/x.json"),
              "unwritable trace path: %s", ng_last_error());
    NGT_CHECK(ng_profile_write_csv("/nonexistent-dir/x.csv") == NG_ERR_IO, "unwritable CSV path accepted");
    ng_backend_free(be);
    return NGT_PASS;
}

static int test_memory(void) {
    ng_backend *be = NULL;
    ng_arena a;
    ng_tensor t1, t2;
    ng_profile_mem_row rows[256];
    int n, i, found = -1;
    long long peak0;
    NGT_OK(ng_backend_cpu_init(&be));
    peak0 = ng_profile_memory_peak("cpu");
    ng_arena_begin_packed(&a, be, "test profile arena");
    NGT_OK(ng_arena_reserve(&a, "x", 100, 3, &t1));
    NGT_OK(ng_arena_reserve(&a, "y", 7, 5, &t2));
    NGT_OK(ng_arena_commit(&a));
    n = ng_profile_memory_rows(rows, 256);
    for (i = 0; i < n && i < 256; i++)
        if (strcmp(rows[i].role, "test profile arena") == 0) found = i;
    NGT_CHECK(found >= 0, "arena not accounted");
    NGT_CHECK(rows[found].current == 4 * 335 && rows[found].allocations == 1 && strcmp(rows[found].dev, "cpu") == 0,
              "accounted %lld bytes, %d allocations on %s (want 1340, 1, cpu)", rows[found].current, rows[found].allocations, rows[found].dev);
    NGT_CHECK(ng_profile_memory_peak("cpu") >= 1340, "device peak %lld", ng_profile_memory_peak("cpu"));
    ng_arena_free(&a);
    n = ng_profile_memory_rows(rows, 256);
    NGT_CHECK(rows[found].current == 0 && rows[found].peak == 1340 && rows[found].allocations == 0,
              "after free: %lld live, peak %lld, %d allocations", rows[found].current, rows[found].peak, rows[found].allocations);
    NGT_CHECK(ng_profile_memory_peak("cpu") >= peak0, "device peak went down");
    ng_backend_free(be);
    return NGT_PASS;
}

/* emulated CUDA: event timings, kernel ranges, and the capture window */
static int test_cuda_capture(void) {
    ng_backend *be = NULL;
    ng_profile_config cfg;
    ng_profile_row rows[16];
    const ng_profile_row *r;
    float *x = NULL;
    int nr, starts = -1, stops = -1, active = -1, s0 = 0, t0 = 0;
    uint64_t u;
    if (ng_backend_cuda_init(0, &be) != NG_OK) return ngt_skip("no CUDA device here (the emulated run covers this)");
    NGT_OK(ng_alloc(be, sizeof(float) * 4096, (void **)&x));
    if (simt_profiler_counts) simt_profiler_counts(&s0, &t0, NULL);
    memset(&cfg, 0, sizeof cfg);
    cfg.measure = 1;
    cfg.capture = 1;
    cfg.first = 2;
    cfg.last = 3;
    NGT_OK(ng_profile_start(be, &cfg));
    for (u = 1; u <= 4; u++) {
        ng_profile_update(u, 1);
        if (simt_profiler_counts) {
            simt_profiler_counts(&starts, &stops, &active);
            NGT_CHECK(active == (u >= 2 && u <= 3), "update %llu: capture active %d", (unsigned long long)u, active);
        }
        ng_range_push_cat(NG_CAT_STEP, "train step");
        NGT_OK(ng_fill(be, 4096, (float)u, x));
        ng_range_pop();
        ng_profile_update(u, 0);
    }
    NGT_OK(ng_profile_finish());
    ng_profile_capture_counts(&starts, &stops);
    NGT_CHECK(starts == 1 && stops == 1, "natgrad issued %d starts, %d stops (want 1, 1)", starts, stops);
    if (simt_profiler_counts) {
        simt_profiler_counts(&starts, &stops, &active);
        NGT_CHECK(starts - s0 == 1 && stops - t0 == 1 && active == 0, "cudaProfilerStart x%d, Stop x%d, active %d",
                  starts - s0, stops - t0, active);
    }
    NGT_CHECK(ng_profile_device_timed(), "a CUDA backend must be timed by events");
    nr = ng_profile_rows(rows, 16);
    r = find_row(rows, nr, "train step");
    NGT_CHECK(r && r->calls == 2 && r->total_s > 0.0, "train step: %llu calls, %g s",
              r ? (unsigned long long)r->calls : 0ULL, r ? r->total_s : 0.0);
    NGT_CHECK(r->backend_calls == 2.0, "train step: %g backend calls (want one fill per step)", r->backend_calls);
    r = find_row(rows, nr, "fill");
    NGT_CHECK(r && r->cat == NG_CAT_KERNEL && r->calls == 2 && r->depth == 1,
              "the fill launcher's range: %s", r ? "wrong category, calls or depth" : "missing");
    ng_free(be, x);
    ng_backend_free(be);
    return NGT_PASS;
}

int main(void) {
    NGT_RUN(test_parse_steps);
    NGT_RUN(test_cpu_ranges);
    NGT_RUN(test_window_and_table);
    NGT_RUN(test_trace_json);
    NGT_RUN(test_memory);
    NGT_RUN(test_cuda_capture);
    NGT_RUN(test_cuda_capture); /* again on a new backend: the events of the first were released */
    return ngt_finish();
}
