/* backend.c: backend selection, the checked wrappers algorithm code calls, and the descriptor table
 * of the elementwise families (one entry per ng_op: its name and its argument checks).
 * Each wrapper validates shapes, leading dimensions and pointers, names the op in any error, makes
 * the backend's device current, then calls the slot (NG_ERR_UNSUPPORTED when it is NULL). No
 * computation happens here. */
#include "natgrad/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "ng_math.h" /* NG_MQLP_NSTATE, NG_MQLP_NSC */


ng_status ng_device_parse(const char *s, ng_device *out, int *index) {
    const char *colon;
    size_t len;
    int idx = -1;
    if (!s) return ng_error(NG_ERR_INVALID_ARG, "--device: missing value (use auto, cpu, cuda or cuda:N)");
    colon = strchr(s, ':');
    len = colon ? (size_t)(colon - s) : strlen(s);
    if (colon) {
        char *end = NULL;
        long v = strtol(colon + 1, &end, 10);
        if (!colon[1] || *end || v < 0 || v > 1023)
            return ng_error(NG_ERR_INVALID_ARG, "--device '%s': the device number after ':' must be 0..1023", s);
        idx = (int)v;
    }
    if (len == 4 && strncasecmp(s, "auto", 4) == 0 && !colon) *out = NG_DEVICE_AUTO;
    else if (len == 3 && strncasecmp(s, "cpu", 3) == 0 && !colon) *out = NG_DEVICE_CPU;
    else if (len == 4 && strncasecmp(s, "cuda", 4) == 0) /* one spelling: "gpu" was once taken silently */
        *out = NG_DEVICE_CUDA;
    else
        return ng_error(NG_ERR_INVALID_ARG, "--device '%s': unknown device (use auto, cpu, cuda or cuda:N)", s);
    if (index) *index = idx;
    return NG_OK;
}

const char *ng_device_name(ng_device d) {
    return d == NG_DEVICE_CPU ? "cpu" : d == NG_DEVICE_CUDA ? "cuda" : "auto";
}

ng_status ng_backend_init(ng_device want, int index, ng_backend **out, char *note, size_t note_len) {
    ng_status s;
    if (note && note_len) note[0] = '\0';
    *out = NULL;
    if (want == NG_DEVICE_CPU) return ng_backend_cpu_init(out);
    s = ng_backend_cuda_init(index, out);
    if (s == NG_OK) return NG_OK;
    if (want == NG_DEVICE_CUDA) return ng_error_wrap(s, "--device cuda: CUDA backend unavailable: ");
    if (note && note_len) snprintf(note, note_len, "CUDA unavailable (%s); using the CPU", ng_last_error());
    ng_clear_error();
    return ng_backend_cpu_init(out);
}

void ng_backend_free(ng_backend *be) {
    if (be && be->iface->destroy) be->iface->destroy(be);
}

/* ---- validation helpers ------------------------------------------------------------------- */

static ng_status enter(ng_backend *be) {
    return be->iface->activate ? be->iface->activate(be) : NG_OK;
}

#define NEED_SLOT(be, slot, op)                                                              \
    do {                                                                                     \
        if (!(be)) return ng_error(NG_ERR_INVALID_ARG, "%s: backend is NULL", op);           \
        if (!(be)->iface->slot)                                                              \
            return ng_error(NG_ERR_UNSUPPORTED, "%s: not implemented by the %s backend", op, \
                            (be)->iface->name);                                              \
        NG_TRY(enter(be));                                                                   \
    } while (0)

#define NEED(cond, op, ...)                                                                  \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            char m_[256];                                                                    \
            snprintf(m_, sizeof m_, __VA_ARGS__);                                            \
            return ng_error(NG_ERR_INVALID_ARG, "%s: %s", op, m_);                           \
        }                                                                                    \
    } while (0)

static int ld_ok(int ld, int rows) { return ld >= (rows > 1 ? rows : 1); }

/* ---- memory, transfers, events ------------------------------------------------------------ */

ng_status ng_alloc(ng_backend *be, size_t bytes, void **ptr) {
    NEED_SLOT(be, alloc, "alloc");
    NEED(ptr, "alloc", "output pointer is NULL");
    return be->iface->alloc(be, bytes, ptr);
}
void ng_free(ng_backend *be, void *ptr) {
    if (be && ptr && enter(be) == NG_OK) be->iface->free(be, ptr);
}
ng_status ng_set(ng_backend *be, void *dst, const void *src, size_t bytes) {
    NEED_SLOT(be, set, "set");
    if (!bytes) return NG_OK;
    NEED(dst && src, "set", "NULL pointer");
    ng_profile_count(0.0, 1);
    return be->iface->set(be, dst, src, bytes);
}
ng_status ng_get(ng_backend *be, void *dst, const void *src, size_t bytes) {
    NEED_SLOT(be, get, "get");
    if (!bytes) return NG_OK;
    NEED(dst && src, "get", "NULL pointer");
    ng_profile_count(0.0, 1);
    return be->iface->get(be, dst, src, bytes);
}
ng_status ng_memset0(ng_backend *be, void *dst, size_t bytes) {
    NEED_SLOT(be, memset0, "memset0");
    if (!bytes) return NG_OK;
    NEED(dst, "memset0", "NULL pointer");
    ng_profile_count(0.0, 1);
    return be->iface->memset0(be, dst, bytes);
}
ng_status ng_copy(ng_backend *be, void *dst, const void *src, size_t bytes) {
    NEED_SLOT(be, copy, "copy");
    if (!bytes || dst == src) return NG_OK;
    NEED(dst && src, "copy", "NULL pointer");
    ng_profile_count(0.0, 1);
    return be->iface->copy(be, dst, src, bytes);
}
ng_status ng_synchronize(ng_backend *be) {
    NEED_SLOT(be, synchronize, "synchronize");
    return be->iface->synchronize(be);
}
ng_status ng_alloc_host(ng_backend *be, size_t bytes, void **ptr) {
    NEED_SLOT(be, alloc_host, "alloc_host");
    NEED(ptr, "alloc_host", "output pointer is NULL");
    return be->iface->alloc_host(be, bytes, ptr);
}
void ng_free_host(ng_backend *be, void *ptr) {
    if (be && ptr && be->iface->free_host && enter(be) == NG_OK) be->iface->free_host(be, ptr);
}
ng_status ng_set_async(ng_backend *be, void *dst, const void *src, size_t bytes) {
    NEED_SLOT(be, set_async, "set_async");
    if (!bytes) return NG_OK;
    NEED(dst && src, "set_async", "NULL pointer");
    ng_profile_count(0.0, 1);
    return be->iface->set_async(be, dst, src, bytes);
}
ng_status ng_get_async(ng_backend *be, void *dst, const void *src, size_t bytes) {
    NEED_SLOT(be, get_async, "get_async");
    if (!bytes) return NG_OK;
    NEED(dst && src, "get_async", "NULL pointer");
    ng_profile_count(0.0, 1);
    return be->iface->get_async(be, dst, src, bytes);
}
ng_status ng_event_create(ng_backend *be, void **ev) {
    NEED_SLOT(be, event_create, "event_create");
    NEED(ev, "event_create", "output pointer is NULL");
    return be->iface->event_create(be, ev);
}
void ng_event_destroy(ng_backend *be, void *ev) {
    if (be && ev && be->iface->event_destroy && enter(be) == NG_OK) be->iface->event_destroy(be, ev);
}
ng_status ng_event_record(ng_backend *be, void *ev) {
    NEED_SLOT(be, event_record, "event_record");
    NEED(ev, "event_record", "NULL event");
    return be->iface->event_record(be, ev);
}
ng_status ng_event_wait(ng_backend *be, void *ev) {
    NEED_SLOT(be, event_wait, "event_wait");
    NEED(ev, "event_wait", "NULL event");
    return be->iface->event_wait(be, ev);
}
ng_status ng_event_synchronize(ng_backend *be, void *ev) {
    NEED_SLOT(be, event_synchronize, "event_synchronize");
    NEED(ev, "event_synchronize", "NULL event");
    return be->iface->event_synchronize(be, ev);
}
ng_status ng_event_elapsed(ng_backend *be, void *a, void *b, float *ms) {
    NEED_SLOT(be, event_elapsed, "event_elapsed");
    NEED(a && b && ms, "event_elapsed", "NULL argument");
    return be->iface->event_elapsed(be, a, b, ms);
}

/* ---- CUDA graphs -------------------------------------------------------------------------- */

int ng_graph_supported(const ng_backend *be) {
    return be && be->iface->graph_begin && be->iface->graph_end && be->iface->graph_launch && be->iface->graph_free;
}
ng_status ng_graph_begin(ng_backend *be) {
    NEED_SLOT(be, graph_begin, "graph_begin");
    return be->iface->graph_begin(be);
}
ng_status ng_graph_end(ng_backend *be, void **exec) {
    NEED_SLOT(be, graph_end, "graph_end");
    NEED(exec, "graph_end", "output pointer is NULL");
    *exec = NULL;
    return be->iface->graph_end(be, exec);
}
ng_status ng_graph_launch(ng_backend *be, void *exec) {
    NEED_SLOT(be, graph_launch, "graph_launch");
    NEED(exec, "graph_launch", "NULL graph");
    return be->iface->graph_launch(be, exec);
}
void ng_graph_free(ng_backend *be, void *exec) {
    if (be && exec && be->iface->graph_free && enter(be) == NG_OK) be->iface->graph_free(be, exec);
}

/* ---- BLAS --------------------------------------------------------------------------------- */

void ng_backend_allow_tf32(ng_backend *be, int allow) {
    if (be) be->tf32_allowed = allow != 0;
}

ng_status ng_tf32_begin(ng_backend *be, int *saved) {
    if (saved) *saved = be ? be->tf32_active : 0;
    if (!be || !be->tf32_allowed || !be->iface->set_tf32 || be->tf32_active || be->fp32_depth > 0) return NG_OK;
    ng_status st = be->iface->set_tf32(be, 1);
    if (st == NG_OK) be->tf32_active = 1;
    return st;
}

ng_status ng_tf32_end(ng_backend *be, int saved) {
    if (!be || !be->tf32_active || saved) return NG_OK;
    be->tf32_active = 0;
    return be->iface->set_tf32(be, 0);
}

ng_status ng_fp32_begin(ng_backend *be, int *saved) {
    if (saved) *saved = be ? be->tf32_active : 0;
    if (!be) return NG_OK;
    be->fp32_depth++;
    if (!be->tf32_active) return NG_OK;
    be->tf32_active = 0;
    return be->iface->set_tf32(be, 0);
}

ng_status ng_fp32_end(ng_backend *be, int saved) {
    ng_status st;
    if (!be) return NG_OK;
    if (be->fp32_depth > 0) be->fp32_depth--;
    if (!saved || be->tf32_active || !be->iface->set_tf32) return NG_OK;
    st = be->iface->set_tf32(be, 1);
    if (st == NG_OK) be->tf32_active = 1;
    return st;
}

ng_status ng_gemm(ng_backend *be, int ta, int tb, int m, int n, int k, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    NEED_SLOT(be, gemm, "gemm");
    NEED(m >= 0 && n >= 0 && k >= 0, "gemm", "negative size m=%d n=%d k=%d", m, n, k);
    NEED(ld_ok(lda, ta ? k : m), "gemm", "lda=%d < rows of A (%d)", lda, ta ? k : m);
    NEED(ld_ok(ldb, tb ? n : k), "gemm", "ldb=%d < rows of B (%d)", ldb, tb ? n : k);
    NEED(ld_ok(ldc, m), "gemm", "ldc=%d < m=%d", ldc, m);
    NEED(C || m == 0 || n == 0, "gemm", "C is NULL");
    NEED((A && B) || k == 0 || m == 0 || n == 0, "gemm", "A or B is NULL");
    ng_profile_count(2.0 * m * n * k, 1);
    return be->iface->gemm(be, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
ng_status ng_gemm_strided_batched(ng_backend *be, int ta, int tb, int m, int n, int k, float alpha,
                                  const float *A, int lda, long long sa, const float *B, int ldb,
                                  long long sb, float beta, float *C, int ldc, long long sc,
                                  int count) {
    NEED_SLOT(be, gemm_strided_batched, "gemm_strided_batched");
    NEED(m >= 0 && n >= 0 && k >= 0 && count >= 0, "gemm_strided_batched",
         "negative size m=%d n=%d k=%d count=%d", m, n, k, count);
    NEED(ld_ok(lda, ta ? k : m), "gemm_strided_batched", "lda=%d < rows of A (%d)", lda, ta ? k : m);
    NEED(ld_ok(ldb, tb ? n : k), "gemm_strided_batched", "ldb=%d < rows of B (%d)", ldb, tb ? n : k);
    NEED(ld_ok(ldc, m), "gemm_strided_batched", "ldc=%d < m=%d", ldc, m);
    NEED(sa >= 0 && sb >= 0 && sc >= 0, "gemm_strided_batched", "negative stride");
    /* outputs must be disjoint: one after the other (sc >= ldc n), or interleaved inside the
     * columns (sc >= m and the last batch's rows still inside ldc: per-row products) */
    NEED(count <= 1 || sc >= (long long)ldc * n || (sc >= m && (long long)(count - 1) * sc + m <= ldc),
         "gemm_strided_batched", "stride of C (%lld) with ldc %d, m %d, n %d and %d batches: the outputs overlap",
         sc, ldc, m, n, count);
    if (!m || !n || !count) return NG_OK;
    NEED(C && ((A && B) || k == 0), "gemm_strided_batched", "NULL pointer");
    ng_profile_count(2.0 * m * n * k * count, 1);
    return be->iface->gemm_strided_batched(be, ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta,
                                           C, ldc, sc, count);
}
ng_status ng_syrk(ng_backend *be, int trans, int n, int k, float alpha, const float *A, int lda,
                  float beta, float *C, int ldc) {
    NEED_SLOT(be, syrk, "syrk");
    NEED(n >= 0 && k >= 0, "syrk", "negative size n=%d k=%d", n, k);
    NEED(ld_ok(lda, trans ? k : n), "syrk", "lda=%d too small", lda);
    NEED(ld_ok(ldc, n), "syrk", "ldc=%d < n=%d", ldc, n);
    if (!n) return NG_OK;
    NEED(C && (A || !k), "syrk", "NULL pointer");
    ng_profile_count(1.0 * n * (n + 1) * k, 1);
    return be->iface->syrk(be, trans, n, k, alpha, A, lda, beta, C, ldc);
}
ng_status ng_gemv(ng_backend *be, int trans, int m, int n, float alpha, const float *A, int lda,
                  const float *x, float beta, float *y) {
    NEED_SLOT(be, gemv, "gemv");
    NEED(m >= 0 && n >= 0, "gemv", "negative size m=%d n=%d", m, n);
    NEED(ld_ok(lda, m), "gemv", "lda=%d < m=%d", lda, m);
    NEED(y, "gemv", "y is NULL");
    NEED((A && x) || !m || !n, "gemv", "NULL pointer");
    ng_profile_count(2.0 * m * n, 1);
    return be->iface->gemv(be, trans, m, n, alpha, A, lda, x, beta, y);
}
ng_status ng_trsm(ng_backend *be, int right, int lower, int trans, int unit, int m, int n,
                  float alpha, const float *A, int lda, float *B, int ldb) {
    int order = right ? n : m;
    NEED_SLOT(be, trsm, "trsm");
    NEED(m >= 0 && n >= 0, "trsm", "negative size m=%d n=%d", m, n);
    NEED(ld_ok(lda, order), "trsm", "lda=%d < order of A (%d)", lda, order);
    NEED(ld_ok(ldb, m), "trsm", "ldb=%d < m=%d", ldb, m);
    if (!m || !n) return NG_OK;
    NEED(A && B, "trsm", "NULL pointer");
    ng_profile_count((right ? 1.0 * n * n * m : 1.0 * m * m * n), 1);
    return be->iface->trsm(be, right != 0, lower != 0, trans != 0, unit != 0, m, n, alpha, A, lda, B, ldb);
}
ng_status ng_scal(ng_backend *be, size_t n, float alpha, float *x) {
    NEED_SLOT(be, scal, "scal");
    if (!n) return NG_OK;
    NEED(x, "scal", "NULL pointer");
    ng_profile_count(1.0 * n, 1);
    return be->iface->scal(be, n, alpha, x);
}
ng_status ng_dot(ng_backend *be, size_t n, const float *x, const float *y, float *r) {
    NEED_SLOT(be, dot, "dot");
    NEED(r, "dot", "result pointer is NULL");
    if (!n) { *r = 0.0f; return NG_OK; }
    NEED(x && y, "dot", "NULL pointer");
    ng_profile_count(2.0 * n, 1);
    return be->iface->dot(be, n, x, y, r);
}
ng_status ng_nrm2(ng_backend *be, size_t n, const float *x, float *r) {
    NEED_SLOT(be, nrm2, "nrm2");
    NEED(r, "nrm2", "result pointer is NULL");
    if (!n) { *r = 0.0f; return NG_OK; }
    NEED(x, "nrm2", "NULL pointer");
    ng_profile_count(2.0 * n, 1);
    return be->iface->nrm2(be, n, x, r);
}
ng_status ng_dot_dev(ng_backend *be, size_t n, const float *x, const float *y, float *r) {
    NEED_SLOT(be, dot_dev, "dot_dev");
    NEED(r, "dot_dev", "result pointer is NULL");
    NEED((x && y) || !n, "dot_dev", "NULL pointer");
    ng_profile_count(2.0 * n, 1);
    return be->iface->dot_dev(be, n, x, y, r);
}
ng_status ng_nrm2_dev(ng_backend *be, size_t n, const float *x, float *r) {
    NEED_SLOT(be, nrm2_dev, "nrm2_dev");
    NEED(r, "nrm2_dev", "result pointer is NULL");
    NEED(x || !n, "nrm2_dev", "NULL pointer");
    ng_profile_count(2.0 * n, 1);
    return be->iface->nrm2_dev(be, n, x, r);
}
ng_status ng_sum_cols(ng_backend *be, int rows, int cols, float alpha, const float *A, int lda,
                      float beta, float *y) {
    NEED_SLOT(be, sum_cols, "sum_cols");
    NEED(rows >= 0 && cols >= 0, "sum_cols", "negative size");
    NEED(ld_ok(lda, rows), "sum_cols", "lda=%d < rows=%d", lda, rows);
    if (!rows) return NG_OK;
    NEED(y && (A || !cols), "sum_cols", "NULL pointer");
    ng_profile_count(2.0 * rows * cols, 1);
    return be->iface->sum_cols(be, rows, cols, alpha, A, lda, beta, y);
}
ng_status ng_sum_cols_part(ng_backend *be, int rows, int cols, const float *A, int lda, double *acc, int first,
                           int last, float alpha, float beta, float *y) {
    NEED_SLOT(be, sum_cols_part, "sum_cols_part");
    NEED(rows >= 0 && cols >= 0, "sum_cols_part", "negative size");
    NEED(ld_ok(lda, rows), "sum_cols_part", "lda=%d < rows=%d", lda, rows);
    NEED(acc && (A || !cols) && (y || !last), "sum_cols_part", "NULL pointer");
    if (rows == 0) return NG_OK;
    return be->iface->sum_cols_part(be, rows, cols, A, lda, acc, first, last, alpha, beta, y);
}
int ng_sum_cols_part_supported(const ng_backend *be) { return be && be->iface->sum_cols_part != NULL; }
ng_status ng_sum_rows(ng_backend *be, int rows, int cols, float alpha, const float *A, int lda,
                      float beta, float *y) {
    NEED_SLOT(be, sum_rows, "sum_rows");
    NEED(rows >= 0 && cols >= 0, "sum_rows", "negative size");
    NEED(ld_ok(lda, rows), "sum_rows", "lda=%d < rows=%d", lda, rows);
    if (!cols) return NG_OK;
    NEED(y && (A || !rows), "sum_rows", "NULL pointer");
    ng_profile_count(2.0 * rows * cols, 1);
    return be->iface->sum_rows(be, rows, cols, alpha, A, lda, beta, y);
}

/* ---- LAPACK ------------------------------------------------------------------------------- */

static ng_status lapack_check(ng_backend *be, const char *op, ng_dtype dt, int n, const void *A,
                              int lda, const int *info) {
    NEED(dt == NG_F32 || dt == NG_F64, op, "dtype %s (use f32 or f64)", ng_dtype_name(dt));
    NEED(n >= 0 && ld_ok(lda, n), op, "n=%d lda=%d", n, lda);
    NEED(info && (A || !n), op, "NULL pointer");
    (void)be;
    return NG_OK;
}

static ng_status potrf_any(ng_backend *be, ng_dtype dt, int n, void *A, int lda, int *info) {
    const char *op = dt == NG_F64 ? "potrf_d" : "potrf";
    NEED_SLOT(be, potrf, op);
    NG_TRY(lapack_check(be, op, dt, n, A, lda, info));
    ng_profile_count(1.0 * n * n * n / 3.0, 1);
    return be->iface->potrf(be, dt, n, A, lda, info);
}
static ng_status potri_any(ng_backend *be, ng_dtype dt, int n, void *A, int lda, int *info) {
    const char *op = dt == NG_F64 ? "potri_d" : "potri";
    NEED_SLOT(be, potri, op);
    NG_TRY(lapack_check(be, op, dt, n, A, lda, info));
    ng_profile_count(2.0 * n * n * n / 3.0, 1);
    return be->iface->potri(be, dt, n, A, lda, info);
}
static ng_status potrs_any(ng_backend *be, ng_dtype dt, int n, int nrhs, const void *A, int lda,
                           void *B, int ldb, int *info) {
    const char *op = dt == NG_F64 ? "potrs_d" : "potrs";
    NEED_SLOT(be, potrs, op);
    NG_TRY(lapack_check(be, op, dt, n, A, lda, info));
    NEED(nrhs >= 0 && ld_ok(ldb, n), op, "nrhs=%d ldb=%d (n=%d)", nrhs, ldb, n);
    NEED(B || !n || !nrhs, op, "B is NULL");
    ng_profile_count(2.0 * n * n * nrhs, 1);
    return be->iface->potrs(be, dt, n, nrhs, A, lda, B, ldb, info);
}
static ng_status syevd_any(ng_backend *be, ng_dtype dt, int n, void *A, int lda, void *w, int *info) {
    const char *op = dt == NG_F64 ? "syevd_d" : "syevd";
    NEED_SLOT(be, syevd, op);
    NG_TRY(lapack_check(be, op, dt, n, A, lda, info));
    NEED(w || !n, op, "w is NULL");
    ng_profile_count(4.0 * n * n * n, 1);
    return be->iface->syevd(be, dt, n, A, lda, w, info);
}

ng_status ng_potrf(ng_backend *be, int n, float *A, int lda, int *info) {
    return potrf_any(be, NG_F32, n, A, lda, info);
}
ng_status ng_potri(ng_backend *be, int n, float *A, int lda, int *info) {
    return potri_any(be, NG_F32, n, A, lda, info);
}
ng_status ng_potrs(ng_backend *be, int n, int nrhs, const float *A, int lda, float *B, int ldb,
                   int *info) {
    return potrs_any(be, NG_F32, n, nrhs, A, lda, B, ldb, info);
}
ng_status ng_syevd(ng_backend *be, int n, float *A, int lda, float *w, int *info) {
    return syevd_any(be, NG_F32, n, A, lda, w, info);
}
ng_status ng_potrf_d(ng_backend *be, int n, double *A, int lda, int *info) {
    return potrf_any(be, NG_F64, n, A, lda, info);
}
ng_status ng_potri_d(ng_backend *be, int n, double *A, int lda, int *info) {
    return potri_any(be, NG_F64, n, A, lda, info);
}
ng_status ng_potrs_d(ng_backend *be, int n, int nrhs, const double *A, int lda, double *B, int ldb,
                     int *info) {
    return potrs_any(be, NG_F64, n, nrhs, A, lda, B, ldb, info);
}
ng_status ng_syevd_d(ng_backend *be, int n, double *A, int lda, double *w, int *info) {
    return syevd_any(be, NG_F64, n, A, lda, w, info);
}

/* Byte ranges [lo, hi) of problem i's A (k = 0) or w (k = 1). */
static void eig_range(const ng_eig_problem *p, size_t es, int k, uintptr_t *lo, uintptr_t *hi) {
    size_t bytes = k ? (size_t)p->n * es : ((size_t)(p->n - 1) * (size_t)p->lda + (size_t)p->n) * es;
    *lo = (uintptr_t)(k ? p->w : p->A);
    *hi = *lo + bytes;
}

int ng_syevd_batched_supported(const ng_backend *be) { return be && be->iface->syevd_batched != NULL; }

ng_status ng_syevd_batched(ng_backend *be, ng_dtype dt, int count, ng_eig_problem *p) {
    const char *op = dt == NG_F64 ? "syevd_batched (f64)" : "syevd_batched";
    size_t es = dt == NG_F64 ? sizeof(double) : sizeof(float);
    double flops = 0.0;
    int i, j, k, q;
    NEED_SLOT(be, syevd, op);
    NEED(dt == NG_F32 || dt == NG_F64, op, "dtype %s (use f32 or f64)", ng_dtype_name(dt));
    NEED(count >= 0 && count <= NG_EIG_BATCH_MAX, op, "count %d (0..%d: split longer lists)", count, NG_EIG_BATCH_MAX);
    NEED(p || !count, op, "the problem list is NULL");
    for (i = 0; i < count; i++) {
        NEED(p[i].n >= 0 && ld_ok(p[i].lda, p[i].n), op, "problem %d: n=%d lda=%d", i, p[i].n, p[i].lda);
        NEED((p[i].A && p[i].w) || !p[i].n, op, "problem %d: A or w is NULL", i);
        p[i].info = 0;
        flops += 4.0 * p[i].n * p[i].n * p[i].n;
    }
    /* the problems run concurrently: no two may share memory */
    for (i = 0; i < count; i++)
        for (j = i; j < count; j++)
            for (k = 0; k < 2 && p[i].n && p[j].n; k++)
                for (q = 0; q < 2; q++) {
                    uintptr_t a0, a1, b0, b1;
                    if (i == j && k >= q) continue;
                    eig_range(&p[i], es, k, &a0, &a1);
                    eig_range(&p[j], es, q, &b0, &b1);
                    NEED(a1 <= b0 || b1 <= a0, op, "problem %d's %s overlaps problem %d's %s", i, k ? "w" : "A", j,
                         q ? "w" : "A");
                }
    ng_profile_count(flops, 1);
    if (count > 1 && be->iface->syevd_batched) return be->iface->syevd_batched(be, dt, count, p);
    for (i = 0; i < count; i++)
        NG_TRY(be->iface->syevd(be, dt, p[i].n, p[i].A, p[i].lda, p[i].w, &p[i].info));
    return NG_OK;
}

/* ---- elementwise families: one descriptor per op -------------------------------------------- */

/* A descriptor's check returns NG_OK and sets *empty when there is no work; it names the op in
 * every error. */
typedef ng_status (*op_check_fn)(const ng_op_args *a, const char *op, int *empty);

#define CHECK(cond, ...) NEED(cond, op, __VA_ARGS__)

static int spans_overlap(const float *a, size_t na, const float *b, size_t nb);

static ng_status check_fill(const ng_op_args *a, const char *op, int *empty) {
    *empty = a->fill.n == 0;
    CHECK(*empty || a->fill.out, "NULL pointer");
    return NG_OK;
}
static ng_status check_fill_uniform(const ng_op_args *a, const char *op, int *empty) {
    *empty = a->fill_uniform.n == 0;
    CHECK(*empty || a->fill_uniform.out, "NULL pointer");
    return NG_OK;
}
static ng_status check_bernoulli(const ng_op_args *a, const char *op, int *empty) {
    CHECK(a->bernoulli.step_dev || !a->bernoulli.advance, "advance %llu without a device step (step_dev)",
          (unsigned long long)a->bernoulli.advance);
    *empty = a->bernoulli.n == 0 && !a->bernoulli.advance; /* an empty op still advances the count */
    CHECK(!a->bernoulli.n || (a->bernoulli.p && a->bernoulli.out), "NULL pointer");
    return NG_OK;
}
static ng_status check_axpby(const ng_op_args *a, const char *op, int *empty) {
    *empty = a->axpby.n == 0;
    CHECK(*empty || (a->axpby.x && a->axpby.y), "NULL pointer");
    return NG_OK;
}
static ng_status check_axpby_dev(const ng_op_args *a, const char *op, int *empty) {
    *empty = a->axpby_dev.n == 0;
    CHECK(*empty || (a->axpby_dev.x && a->axpby_dev.y), "NULL pointer");
    return NG_OK;
}
static ng_status check_convert(const ng_op_args *a, const char *op, int *empty) {
    ng_dtype f = a->convert.from, t = a->convert.to;
    CHECK((f == NG_F32 || f == NG_F64) && (t == NG_F32 || t == NG_F64), "conversion %s -> %s",
          ng_dtype_name(f), ng_dtype_name(t));
    *empty = a->convert.n == 0;
    CHECK(*empty || (a->convert.x && a->convert.y), "NULL pointer");
    CHECK(*empty || f == t || a->convert.x != a->convert.y, "in-place conversion between sizes");
    return NG_OK;
}
static ng_status check_gibbs_sample(const ng_op_args *a, const char *op, int *empty) {
    int rows = a->gibbs_sample.rows, cols = a->gibbs_sample.cols;
    CHECK(rows >= 0 && cols >= 0, "negative size %d x %d", rows, cols);
    CHECK(a->gibbs_sample.step_dev || !a->gibbs_sample.advance, "advance %llu without a device step (step_dev)",
          (unsigned long long)a->gibbs_sample.advance);
    *empty = (!rows || !cols) && !a->gibbs_sample.advance; /* an empty op still advances the count */
    if (!rows || !cols) return NG_OK;
    CHECK(a->gibbs_sample.pre, "pre-activation is NULL");
    CHECK(ld_ok(a->gibbs_sample.ldp, rows), "ldp=%d < rows=%d", a->gibbs_sample.ldp, rows);
    CHECK(!a->gibbs_sample.prob || ld_ok(a->gibbs_sample.ldq, rows), "ldq=%d < rows=%d",
          a->gibbs_sample.ldq, rows);
    CHECK(!a->gibbs_sample.sample || ld_ok(a->gibbs_sample.lds, rows), "lds=%d < rows=%d",
          a->gibbs_sample.lds, rows);
    CHECK(a->gibbs_sample.prob || a->gibbs_sample.sample, "neither prob nor sample requested");
    return NG_OK;
}
static ng_status check_softplus_sum(const ng_op_args *a, const char *op, int *empty) {
    int rows = a->softplus_sum.rows, cols = a->softplus_sum.cols;
    CHECK(rows >= 0 && cols >= 0, "negative size");
    CHECK(ld_ok(a->softplus_sum.ldp, rows), "ldp=%d < rows=%d", a->softplus_sum.ldp, rows);
    *empty = !cols;
    CHECK(*empty || (a->softplus_sum.y && (a->softplus_sum.pre || !rows)), "NULL pointer");
    return NG_OK;
}
static ng_status check_binary_states(const ng_op_args *a, const char *op, int *empty) {
    int nbits = a->binary_states.nbits;
    CHECK(nbits >= 1 && nbits <= 62, "nbits=%d outside 1..62", nbits);
    CHECK(a->binary_states.count >= 0, "negative count");
    CHECK(ld_ok(a->binary_states.ldo, nbits), "ldo=%d < nbits=%d", a->binary_states.ldo, nbits);
    *empty = a->binary_states.count == 0;
    CHECK(*empty || a->binary_states.out, "NULL pointer");
    return NG_OK;
}
static ng_status check_symmetrize_lower(const ng_op_args *a, const char *op, int *empty) {
    int n = a->symmetrize_lower.n;
    float shift = a->symmetrize_lower.shift;
    CHECK(n >= 0 && ld_ok(a->symmetrize_lower.lda, n), "n=%d lda=%d", n, a->symmetrize_lower.lda);
    CHECK(shift - shift == 0.0f, "shift %g is not finite", (double)shift);
    *empty = !n;
    CHECK(*empty || a->symmetrize_lower.A, "NULL pointer");
    return NG_OK;
}
static ng_status check_fang_regress(const ng_op_args *a, const char *op, int *empty) {
    int nh = a->fang_regress.nh, nv = a->fang_regress.nv;
    float lambda = a->fang_regress.lambda;
    CHECK(nh >= 0 && nv >= 0, "negative size nh=%d nv=%d", nh, nv);
    CHECK(ld_ok(a->fang_regress.ldm, nh), "ldm=%d < nh=%d", a->fang_regress.ldm, nh);
    CHECK(ld_ok(a->fang_regress.ldo, nh), "ldo=%d < nh=%d", a->fang_regress.ldo, nh);
    CHECK(lambda >= 0.0f && lambda - lambda == 0.0f, "lambda %g must be finite and >= 0", (double)lambda);
    *empty = !nh || !nv;
    if (*empty) return NG_OK;
    CHECK(a->fang_regress.Evh && a->fang_regress.Ev2h && a->fang_regress.Evh2 && a->fang_regress.Ev2h2 &&
              a->fang_regress.mu_v && a->fang_regress.mu_h && a->fang_regress.Ev2 && a->fang_regress.Eh2,
          "NULL moment pointer");
    CHECK(a->fang_regress.beta_v && a->fang_regress.beta_h && a->fang_regress.sigma2, "NULL output pointer");
    return NG_OK;
}
static ng_status check_fang_residual(const ng_op_args *a, const char *op, int *empty) {
    int nh = a->fang_residual.nh, nv = a->fang_residual.nv;
    CHECK(nh >= 0 && nv >= 0, "negative size nh=%d nv=%d", nh, nv);
    CHECK(ld_ok(a->fang_residual.ldg, nh), "ldg=%d < nh=%d", a->fang_residual.ldg, nh);
    CHECK(ld_ok(a->fang_residual.ldb, nh), "ldb=%d < nh=%d", a->fang_residual.ldb, nh);
    CHECK(ld_ok(a->fang_residual.ldp, nh), "ldp=%d < nh=%d", a->fang_residual.ldp, nh);
    *empty = !nh || !nv;
    if (*empty) return NG_OK;
    CHECK(a->fang_residual.G && a->fang_residual.ga && a->fang_residual.gb && a->fang_residual.beta_v &&
              a->fang_residual.beta_h && a->fang_residual.sigma2 && a->fang_residual.pv && a->fang_residual.ph,
          "NULL pointer");
    return NG_OK;
}

static ng_status check_act_forward(const ng_op_args *a, const char *op, int *empty) {
    int rows = a->act_forward.rows, cols = a->act_forward.cols, act = a->act_forward.act;
    CHECK(act >= 0 && act < NG_ACT_COUNT, "unknown activation %d", act);
    CHECK(rows >= 0 && cols >= 0, "negative size %d x %d", rows, cols);
    CHECK(ld_ok(a->act_forward.ldz, rows), "ldz=%d < rows=%d", a->act_forward.ldz, rows);
    CHECK(ld_ok(a->act_forward.lda, rows), "lda=%d < rows=%d", a->act_forward.lda, rows);
    *empty = !rows || !cols;
    CHECK(*empty || (a->act_forward.z && a->act_forward.a), "NULL pointer");
    CHECK(*empty || a->act_forward.z != a->act_forward.a || a->act_forward.ldz == a->act_forward.lda,
          "z aliases a with a different leading dimension");
    return NG_OK;
}
static ng_status check_act_backward(const ng_op_args *a, const char *op, int *empty) {
    int rows = a->act_backward.rows, cols = a->act_backward.cols, act = a->act_backward.act;
    CHECK(act >= 0 && act < NG_ACT_COUNT && act != NG_ACT_SOFTMAX,
          "activation %d has no elementwise derivative (softmax is handled by its loss)", act);
    CHECK(rows >= 0 && cols >= 0, "negative size %d x %d", rows, cols);
    CHECK(ld_ok(a->act_backward.lda, rows), "lda=%d < rows=%d", a->act_backward.lda, rows);
    CHECK(ld_ok(a->act_backward.ldg, rows), "ldg=%d < rows=%d", a->act_backward.ldg, rows);
    CHECK(ld_ok(a->act_backward.ldo, rows), "ldo=%d < rows=%d", a->act_backward.ldo, rows);
    CHECK(!a->act_backward.h == !a->act_backward.r, "h and r must both be given or both be NULL");
    CHECK(!a->act_backward.h || ld_ok(a->act_backward.ldh, rows), "ldh=%d < rows=%d",
          a->act_backward.ldh, rows);
    CHECK(!a->act_backward.r || ld_ok(a->act_backward.ldr, rows), "ldr=%d < rows=%d",
          a->act_backward.ldr, rows);
    *empty = !rows || !cols;
    CHECK(*empty || (a->act_backward.a && a->act_backward.g && a->act_backward.out), "NULL pointer");
    return NG_OK;
}
static ng_status check_loss(const ng_op_args *a, const char *op, int *empty) {
    int rows = a->loss.rows, cols = a->loss.cols, loss = a->loss.loss;
    CHECK(loss >= 0 && loss < NG_LOSS_COUNT, "unknown loss %d", loss);
    CHECK(rows >= 0 && cols >= 0, "negative size %d x %d", rows, cols);
    CHECK(ld_ok(a->loss.ldz, rows) && ld_ok(a->loss.ldy, rows) && ld_ok(a->loss.ldt, rows),
          "leading dimension < rows=%d (ldz=%d ldy=%d ldt=%d)", rows, a->loss.ldz, a->loss.ldy,
          a->loss.ldt);
    CHECK(!a->loss.d || ld_ok(a->loss.ldd, rows), "ldd=%d < rows=%d", a->loss.ldd, rows);
    CHECK(a->loss.scale - a->loss.scale == 0.0f, "scale %g is not finite", (double)a->loss.scale);
    CHECK(!a->loss.acc || (a->loss.obj && a->loss.err), "acc (the batch sums) needs obj and err");
    CHECK(a->loss.err_miss == 0 || a->loss.err_miss == 1, "err_miss %d must be 0 or 1", a->loss.err_miss);
    CHECK(a->loss.acc_beta - a->loss.acc_beta == 0.0f, "acc_beta %g is not finite", (double)a->loss.acc_beta);
    *empty = !cols && !a->loss.acc; /* an empty batch still writes its sums (0) */
    CHECK(*empty || !cols || (a->loss.z && a->loss.y && a->loss.t) || !rows, "NULL pointer");
    CHECK(*empty || a->loss.d || a->loss.obj || a->loss.err, "no output requested");
    CHECK(!a->loss.acc || (!spans_overlap(a->loss.acc, 2, a->loss.obj, (size_t)cols) &&
                           !spans_overlap(a->loss.acc, 2, a->loss.err, (size_t)cols)),
          "acc overlaps obj or err");
    return NG_OK;
}
static ng_status check_loss_hvp(const ng_op_args *a, const char *op, int *empty) {
    int rows = a->loss_hvp.rows, cols = a->loss_hvp.cols, loss = a->loss_hvp.loss;
    CHECK(loss >= 0 && loss <= NG_LOSS_OUTER, "unknown loss %d", loss);
    CHECK(rows >= 0 && cols >= 0, "negative size %d x %d", rows, cols);
    CHECK(ld_ok(a->loss_hvp.ldy, rows) && ld_ok(a->loss_hvp.ldv, rows) && ld_ok(a->loss_hvp.ldo, rows),
          "leading dimension < rows=%d (ldy=%d ldv=%d ldo=%d)", rows, a->loss_hvp.ldy,
          a->loss_hvp.ldv, a->loss_hvp.ldo);
    *empty = !rows || !cols;
    CHECK(*empty || (a->loss_hvp.y && a->loss_hvp.v && a->loss_hvp.out), "NULL pointer");
    return NG_OK;
}
static ng_status check_sample_targets(const ng_op_args *a, const char *op, int *empty) {
    int rows = a->sample_targets.rows, cols = a->sample_targets.cols, loss = a->sample_targets.loss;
    CHECK(loss >= 0 && loss < NG_LOSS_COUNT, "unknown loss %d", loss);
    CHECK(rows >= 0 && cols >= 0, "negative size %d x %d", rows, cols);
    CHECK(ld_ok(a->sample_targets.ldy, rows) && ld_ok(a->sample_targets.ldt, rows),
          "leading dimension < rows=%d (ldy=%d ldt=%d)", rows, a->sample_targets.ldy,
          a->sample_targets.ldt);
    CHECK(a->sample_targets.step_dev || !a->sample_targets.advance, "advance %llu without a device step (step_dev)",
          (unsigned long long)a->sample_targets.advance);
    *empty = (!rows || !cols) && !a->sample_targets.advance; /* an empty op still advances the count */
    CHECK(!rows || !cols || (a->sample_targets.y && a->sample_targets.t), "NULL pointer");
    return NG_OK;
}
static ng_status check_row_moments(const ng_op_args *a, const char *op, int *empty) {
    int rows = a->row_moments.rows, cols = a->row_moments.cols;
    float eps = a->row_moments.eps;
    CHECK(rows >= 0 && cols >= 0, "negative size %d x %d", rows, cols);
    CHECK(ld_ok(a->row_moments.ldx, rows), "ldx=%d < rows=%d", a->row_moments.ldx, rows);
    CHECK(eps > 0.0f && eps - eps == 0.0f, "eps %g must be finite and > 0", (double)eps);
    CHECK(cols > 0 || !rows, "moments of rows with no columns");
    *empty = !rows;
    CHECK(*empty || (a->row_moments.x && a->row_moments.mean && a->row_moments.rstd), "NULL pointer");
    return NG_OK;
}
static ng_status check_bn_merge(const ng_op_args *a, const char *op, int *empty) {
    const int mode = a->bn_merge.mode, rows = a->bn_merge.rows, cols = a->bn_merge.cols;
    const int cw = mode == NG_BN_MERGE_WEIGHT || mode == NG_BN_MERGE_MEANS;
    CHECK(mode >= 0 && mode < NG_BN_MERGE_MODES, "mode %d (0..%d)", mode, NG_BN_MERGE_MODES - 1);
    CHECK(rows >= 0 && (!cw || cols >= 0), "negative size %d x %d", rows, cols);
    CHECK(a->bn_merge.cnt >= 0.0 && a->bn_merge.cnt - a->bn_merge.cnt == 0.0, "count %g must be finite and >= 0",
          a->bn_merge.cnt);
    CHECK(cw || (a->bn_merge.eps > 0.0f && a->bn_merge.eps - a->bn_merge.eps == 0.0f), "eps %g must be finite and > 0",
          (double)a->bn_merge.eps);
    CHECK(mode != NG_BN_MERGE_WEIGHT || ld_ok(a->bn_merge.ldx, rows), "ldx=%d < rows=%d", a->bn_merge.ldx, rows);
    CHECK(mode != NG_BN_MERGE_MEANS || ld_ok(a->bn_merge.ldo, rows), "ldo=%d < rows=%d", a->bn_merge.ldo, rows);
    CHECK(mode != NG_BN_MERGE_MEANS || !a->bn_merge.scaled || a->bn_merge.cnt > 0.0, "scaled means with a count of 0");
    *empty = !rows || (cw && !cols);
    CHECK(*empty || a->bn_merge.acc, "NULL pointer");
    CHECK(*empty || cw || (a->bn_merge.mean && a->bn_merge.rstd), "NULL pointer");
    CHECK(*empty || mode != NG_BN_MERGE_SCATTER || a->bn_merge.acc2, "NULL pointer");
    CHECK(*empty || (mode != NG_BN_MERGE_FINISH && !cw) || a->bn_merge.tot, "NULL pointer");
    CHECK(*empty || mode != NG_BN_MERGE_FINISH || a->bn_merge.acc2, "NULL pointer");
    CHECK(*empty || mode != NG_BN_MERGE_WEIGHT || a->bn_merge.x, "NULL pointer");
    CHECK(*empty || mode != NG_BN_MERGE_MEANS || a->bn_merge.out, "NULL pointer");
    return NG_OK;
}
static ng_status check_bn_normalize(const ng_op_args *a, const char *op, int *empty) {
    int rows = a->bn_normalize.rows, cols = a->bn_normalize.cols;
    CHECK(rows >= 0 && cols >= 0, "negative size %d x %d", rows, cols);
    CHECK(ld_ok(a->bn_normalize.ldx, rows) && ld_ok(a->bn_normalize.ldh, rows),
          "leading dimension < rows=%d (ldx=%d ldh=%d)", rows, a->bn_normalize.ldx, a->bn_normalize.ldh);
    *empty = !rows || !cols;
    CHECK(*empty || (a->bn_normalize.x && a->bn_normalize.mean && a->bn_normalize.rstd &&
                     a->bn_normalize.xhat), "NULL pointer");
    return NG_OK;
}
static ng_status check_outer_scale(const ng_op_args *a, const char *op, int *empty) {
    int rows = a->outer_scale.rows, cols = a->outer_scale.cols, mode = a->outer_scale.mode;
    float fl = a->outer_scale.floor;
    CHECK(rows >= 0 && cols >= 0, "negative size %d x %d", rows, cols);
    CHECK(ld_ok(a->outer_scale.ldx, rows) && ld_ok(a->outer_scale.ldo, rows),
          "leading dimension < rows=%d (ldx=%d ldo=%d)", rows, a->outer_scale.ldx, a->outer_scale.ldo);
    CHECK(mode >= NG_OSCALE_MUL && mode <= NG_OSCALE_POW, "unknown mode %d", mode);
    CHECK(mode == NG_OSCALE_MUL || mode == NG_OSCALE_SQUARE || (fl > 0.0f && fl - fl == 0.0f), "floor %g must be finite and > 0",
          (double)fl);
    CHECK(mode != NG_OSCALE_POW || a->outer_scale.power - a->outer_scale.power == 0.0f, "power %g must be finite",
          (double)a->outer_scale.power);
    *empty = !rows || !cols;
    CHECK(*empty || (a->outer_scale.x && a->outer_scale.out), "NULL pointer");
    CHECK(*empty || mode == NG_OSCALE_MUL || mode == NG_OSCALE_SQUARE || a->outer_scale.v, "NULL v");
    CHECK(*empty || mode != NG_OSCALE_STEIN || a->outer_scale.u, "NULL u");
    CHECK((mode != NG_OSCALE_RSQRT && mode != NG_OSCALE_POW) || !a->outer_scale.u, "u must be NULL with mode rsqrt or pow");
    CHECK(a->outer_scale.out != a->outer_scale.x || a->outer_scale.ldo == a->outer_scale.ldx,
          "in place with ldx=%d != ldo=%d", a->outer_scale.ldx, a->outer_scale.ldo);
    return NG_OK;
}
static int spans_overlap(const float *a, size_t na, const float *b, size_t nb) {
    uintptr_t a0 = (uintptr_t)a, a1 = a0 + na * sizeof(float), b0 = (uintptr_t)b, b1 = b0 + nb * sizeof(float);
    return na && nb && a0 < b1 && b0 < a1;
}
static ng_status check_factor_update(const ng_op_args *a, const char *op, int *empty) {
    int i, j, count = a->factor_update.count, k = a->factor_update.k, work = 0;
    float beta = a->factor_update.beta;
    CHECK(count >= 1 && count <= NG_FACTOR_UPDATE_MAX, "count %d outside 1 .. %d", count, NG_FACTOR_UPDATE_MAX);
    CHECK(k >= 0, "negative k %d", k);
    CHECK(beta - beta == 0.0f, "beta %g is not finite", (double)beta);
    for (i = 0; i < count; i++) {
        const ng_factor_entry *e = &a->factor_update.e[i];
        size_t nc = (size_t)e->ldc * (size_t)e->cols;
        CHECK(e->rows >= 0 && e->cols >= 0, "entry %d: negative size %d x %d", i, e->rows, e->cols);
        CHECK(ld_ok(e->ldc, e->rows) && ld_ok(e->ldx, e->rows) && ld_ok(e->ldy, e->cols),
              "entry %d: leading dimension too small (ldc=%d ldx=%d for %d rows, ldy=%d for %d cols)", i, e->ldc, e->ldx,
              e->rows, e->ldy, e->cols);
        CHECK(e->alpha - e->alpha == 0.0f, "entry %d: alpha %g is not finite", i, (double)e->alpha);
        if (!e->rows || !e->cols) continue;
        work = 1;
        CHECK(e->C && (!k || (e->X && e->Y)), "entry %d: NULL pointer", i);
        CHECK(e->Y != e->X || (e->ldy == e->ldx && e->rows == e->cols),
              "entry %d: Y == X needs ldy == ldx and a square C (%d x %d)", i, e->rows, e->cols);
        for (j = 0; j < count; j++) {
            const ng_factor_entry *f = &a->factor_update.e[j];
            CHECK(!spans_overlap(e->C, nc, f->X, k ? (size_t)f->ldx * (size_t)k : 0) &&
                      !spans_overlap(e->C, nc, f->Y, k ? (size_t)f->ldy * (size_t)k : 0),
                  "entry %d's C overlaps entry %d's X or Y", i, j);
            CHECK(j == i || !spans_overlap(e->C, nc, f->C, (size_t)f->ldc * (size_t)f->cols),
                  "entries %d and %d share C memory", i, j);
        }
    }
    *empty = !work;
    return NG_OK;
}
static ng_status check_bn_project(const ng_op_args *a, const char *op, int *empty) {
    int rows = a->bn_project.rows, cols = a->bn_project.cols;
    CHECK(rows >= 0 && cols >= 0, "negative size %d x %d", rows, cols);
    CHECK(ld_ok(a->bn_project.ldg, rows) && ld_ok(a->bn_project.ldx, rows) && ld_ok(a->bn_project.ldo, rows),
          "leading dimension < rows=%d (ldg=%d ldx=%d ldo=%d)", rows, a->bn_project.ldg,
          a->bn_project.ldx, a->bn_project.ldo);
    *empty = !rows || !cols;
    CHECK(*empty || (a->bn_project.g && a->bn_project.xhat && a->bn_project.out), "NULL pointer");
    CHECK(*empty || a->bn_project.g != a->bn_project.out || a->bn_project.ldg == a->bn_project.ldo,
          "g aliases out with a different leading dimension");
    return NG_OK;
}
static ng_status check_adam(const ng_op_args *a, const char *op, int *empty) {
    const float sc[6] = {a->adam.b1, a->adam.c1, a->adam.b2, a->adam.c2, a->adam.lr, a->adam.eps};
    static const char *const names[6] = {"b1", "c1", "b2", "c2", "lr", "eps"};
    int i;
    for (i = 0; i < 6; i++) CHECK(sc[i] - sc[i] == 0.0f, "%s %g is not finite", names[i], (double)sc[i]);
    CHECK(a->adam.eps > 0.0f, "eps %g must be > 0", (double)a->adam.eps);
    /* with a device step count the bias corrections come from it (b1, b2 in [0, 1) make them > 0) */
    CHECK(a->adam.count || (a->adam.bc2 > 0.0 && a->adam.bc2 - a->adam.bc2 == 0.0),
          "bc2 %g must be finite and > 0", a->adam.bc2);
    CHECK(a->adam.count || !a->adam.m || (a->adam.bc1 > 0.0 && a->adam.bc1 - a->adam.bc1 == 0.0),
          "bc1 %g must be finite and > 0", a->adam.bc1);
    CHECK(!a->adam.count || ((!a->adam.m || (a->adam.b1 >= 0.0f && a->adam.b1 < 1.0f)) && a->adam.b2 >= 0.0f &&
                             a->adam.b2 < 1.0f),
          "a device step count needs b1, b2 in [0, 1) (got %g, %g)", (double)a->adam.b1, (double)a->adam.b2);
    *empty = a->adam.n == 0 && !a->adam.count; /* a device count advances even over no elements */
    CHECK(!a->adam.n || (a->adam.param && a->adam.grad && a->adam.v), "NULL pointer");
    return NG_OK;
}

static ng_status check_minresqlp_step(const ng_op_args *a, const char *op, int *empty) {
    const double rtol = a->minresqlp_step.rtol, mx = a->minresqlp_step.maxxnorm;
    const double tc = a->minresqlp_step.trancond, st = a->minresqlp_step.singtol;
    const int count = a->minresqlp_step.count;
    CHECK(count >= 0, "negative count %d", count);
    CHECK(a->minresqlp_step.init || a->minresqlp_step.max_iter >= 1, "max_iter %d must be >= 1",
          a->minresqlp_step.max_iter);
    CHECK(rtol >= 0.0 && rtol - rtol == 0.0, "rtol %g must be finite and >= 0", rtol);
    CHECK(mx > 0.0, "maxxnorm %g must be > 0", mx);
    CHECK(tc > 0.0, "trancond %g must be > 0", tc);
    CHECK(st >= 0.0 && st - st == 0.0, "singtol %g must be finite and >= 0", st);
    *empty = count == 0;
    CHECK(*empty || (a->minresqlp_step.state && a->minresqlp_step.sc), "NULL pointer");
    CHECK(*empty || !spans_overlap((const float *)a->minresqlp_step.state,
                                   (size_t)count * NG_MQLP_NSTATE * 2, /* in floats */
                                   a->minresqlp_step.sc, (size_t)count * NG_MQLP_NSC),
          "state overlaps sc");
    return NG_OK;
}

static ng_status check_conv_gather(const ng_op_args *a, const char *op, int *empty) {
    const ng_conv_shape *s = &a->conv_gather.s;
    const int mode = a->conv_gather.mode;
    size_t nout, nx = 0, ng = 0;
    CHECK(mode >= 0 && mode < NG_CONV_MODE_COUNT, "unknown mode %d", mode);
    CHECK(s->n >= 0 && s->c >= 0 && s->h >= 1 && s->w >= 1, "maps (n=%d, c=%d, h=%d, w=%d): need n, c >= 0 and h, w >= 1",
          s->n, s->c, s->h, s->w);
    CHECK(s->kh >= 1 && s->kw >= 1 && s->stride >= 1, "window %dx%d stride %d: need sizes and stride >= 1", s->kh, s->kw,
          s->stride);
    CHECK(s->pad >= 0 && s->pad < s->kh && s->pad < s->kw, "pad %d must be in [0, window %dx%d)", s->pad, s->kh, s->kw);
    CHECK(mode != NG_CONV_AUGMENT || (s->kh == 2 * s->pad + 1 && s->kw == s->kh), "augment: window %dx%d must be 2 pad + 1 = %d",
          s->kh, s->kw, 2 * s->pad + 1);
    CHECK(a->conv_gather.flip == 0 || a->conv_gather.flip == 1, "flip %d must be 0 or 1", a->conv_gather.flip);
    CHECK(s->h + 2 * s->pad >= s->kh && s->w + 2 * s->pad >= s->kw, "window %dx%d larger than the padded maps %dx%d", s->kh,
          s->kw, s->h + 2 * s->pad, s->w + 2 * s->pad);
    CHECK((double)s->n * s->c * s->h * s->w * s->kh * s->kw < 9.0e18, "maps too large");
    CHECK(!a->conv_gather.step_dev || mode == NG_CONV_AUGMENT, "step_dev is for mode augment only (mode %d)", mode);
    CHECK(a->conv_gather.step_dev || !a->conv_gather.advance, "advance %llu without a device step (step_dev)",
          (unsigned long long)a->conv_gather.advance);
    nout = ng_conv_gather_count(mode, s);
    *empty = nout == 0 && !a->conv_gather.advance; /* an empty op still advances the count */
    if (*empty) return NG_OK;
    CHECK(a->conv_gather.out, "NULL pointer (out)");
    if (mode == NG_CONV_COL2IM) ng = ng_conv_gather_count(NG_CONV_IM2COL, s);
    else if (mode == NG_CONV_POOL_MAX_BACK || mode == NG_CONV_POOL_AVG_BACK) ng = ng_conv_gather_count(NG_CONV_POOL_MAX, s);
    else if (mode == NG_CONV_POOL_MAX_R) ng = (size_t)s->n * s->c * s->h * s->w;
    if (mode != NG_CONV_COL2IM && mode != NG_CONV_POOL_AVG_BACK) nx = (size_t)s->n * s->c * s->h * s->w;
    CHECK(!nx || a->conv_gather.x, "NULL pointer (x)");
    CHECK(!ng || a->conv_gather.g, "NULL pointer (g)");
    CHECK(!nx || !spans_overlap(a->conv_gather.out, nout, a->conv_gather.x, nx), "out overlaps x");
    CHECK(!ng || !spans_overlap(a->conv_gather.out, nout, a->conv_gather.g, ng), "out overlaps g");
    return NG_OK;
}
static ng_status check_whiten1x1(const ng_op_args *a, const char *op, int *empty) {
    const int n = a->whiten1x1.n, c = a->whiten1x1.c, co = a->whiten1x1.cout, p = a->whiten1x1.p;
    const int tr = a->whiten1x1.trans;
    size_t nx, ny;
    CHECK(n >= 0 && c >= 1 && co >= 0 && p >= 0, "sizes n=%d c=%d cout=%d p=%d: need c >= 1, others >= 0", n, c, co, p);
    CHECK(tr == 0 || tr == 1, "trans %d must be 0 or 1", tr);
    CHECK(ld_ok(a->whiten1x1.ldu, tr ? c : co), "ldu=%d < rows of U (%d)", a->whiten1x1.ldu, tr ? c : co);
    nx = (size_t)n * c * p;
    ny = (size_t)n * co * p;
    *empty = ny == 0;
    if (*empty) return NG_OK;
    CHECK(a->whiten1x1.x && a->whiten1x1.U && a->whiten1x1.y, "NULL pointer");
    CHECK(!spans_overlap(a->whiten1x1.y, ny, a->whiten1x1.x, nx), "y overlaps x");
    CHECK(!spans_overlap(a->whiten1x1.y, ny, a->whiten1x1.U,
                         (size_t)a->whiten1x1.ldu * (size_t)((tr ? co : c) - 1) + (size_t)(tr ? c : co)),
          "y overlaps U");
    CHECK(!a->whiten1x1.mean || !spans_overlap(a->whiten1x1.y, ny, a->whiten1x1.mean, (size_t)c), "y overlaps mean");
    return NG_OK;
}

static ng_status check_momentum(const ng_op_args *a, const char *op, int *empty) {
    const float sc[6] = {a->momentum.a, a->momentum.mu, a->momentum.c, a->momentum.xi, a->momentum.w,
                         a->momentum.wc};
    static const char *const names[6] = {"a", "mu", "c", "xi", "w", "wc"};
    const size_t n = a->momentum.n;
    int i;
    for (i = 0; i < 6; i++) CHECK(sc[i] - sc[i] == 0.0f, "%s %g is not finite", names[i], (double)sc[i]);
    CHECK(a->momentum.nesterov == 0 || a->momentum.nesterov == 1, "nesterov %d must be 0 or 1", a->momentum.nesterov);
    CHECK(!a->momentum.bar || a->momentum.xi != 0.0f, "averaging (bar) needs xi != 0");
    *empty = n == 0;
    CHECK(*empty || (a->momentum.d && a->momentum.v && a->momentum.p), "NULL pointer");
    CHECK(*empty || (!spans_overlap(a->momentum.v, n, a->momentum.p, n) && !spans_overlap(a->momentum.v, n, a->momentum.d, n) &&
                     !spans_overlap(a->momentum.p, n, a->momentum.d, n)),
          "v, p and d overlap");
    CHECK(*empty || !a->momentum.bar ||
              (!spans_overlap(a->momentum.bar, n, a->momentum.v, n) && !spans_overlap(a->momentum.bar, n, a->momentum.p, n) &&
               !spans_overlap(a->momentum.bar, n, a->momentum.d, n)),
          "bar overlaps v, p or d");
    return NG_OK;
}

static ng_status check_axpby_segments(const ng_op_args *a, const char *op, int *empty) {
    const int count = a->axpby_segments.count;
    int i, j;
    size_t total = 0;
    CHECK(count >= 0 && count <= NG_SEGMENTS_MAX, "count %d must be in 0..%d", count, NG_SEGMENTS_MAX);
    CHECK(a->axpby_segments.alpha - a->axpby_segments.alpha == 0.0f && a->axpby_segments.beta - a->axpby_segments.beta == 0.0f,
          "alpha %g, beta %g must be finite", (double)a->axpby_segments.alpha, (double)a->axpby_segments.beta);
    for (i = 0; i < count; i++) {
        const size_t o = a->axpby_segments.off[i], l = a->axpby_segments.len[i];
        CHECK(o + l >= o, "segment %d overflows (off %zu, len %zu)", i, o, l);
        total += l;
        for (j = 0; j < i; j++) {
            const size_t o2 = a->axpby_segments.off[j], l2 = a->axpby_segments.len[j];
            CHECK(!l || !l2 || o + l <= o2 || o2 + l2 <= o, "segments %d and %d overlap", j, i);
        }
    }
    *empty = total == 0;
    CHECK(*empty || (a->axpby_segments.x && a->axpby_segments.y), "NULL pointer");
    return NG_OK;
}

static const struct op_desc {
    const char *name;
    op_check_fn check;
} op_table[NG_OP_COUNT] = {
    [NG_OP_FILL] = {"fill", check_fill},
    [NG_OP_FILL_UNIFORM] = {"fill_uniform", check_fill_uniform},
    [NG_OP_BERNOULLI] = {"bernoulli", check_bernoulli},
    [NG_OP_AXPBY] = {"axpby", check_axpby},
    [NG_OP_AXPBY_DEV] = {"axpby_dev", check_axpby_dev},
    [NG_OP_CONVERT] = {"convert", check_convert},
    [NG_OP_GIBBS_SAMPLE] = {"gibbs_sample", check_gibbs_sample},
    [NG_OP_SOFTPLUS_SUM] = {"softplus_sum", check_softplus_sum},
    [NG_OP_BINARY_STATES] = {"binary_states", check_binary_states},
    [NG_OP_SYMMETRIZE_LOWER] = {"symmetrize_lower", check_symmetrize_lower},
    [NG_OP_FANG_REGRESS] = {"fang_regress", check_fang_regress},
    [NG_OP_FANG_RESIDUAL] = {"fang_residual", check_fang_residual},
    [NG_OP_ACT_FORWARD] = {"act_forward", check_act_forward},
    [NG_OP_ACT_BACKWARD] = {"act_backward", check_act_backward},
    [NG_OP_LOSS] = {"loss", check_loss},
    [NG_OP_LOSS_HVP] = {"loss_hvp", check_loss_hvp},
    [NG_OP_SAMPLE_TARGETS] = {"sample_targets", check_sample_targets},
    [NG_OP_ROW_MOMENTS] = {"row_moments", check_row_moments},
    [NG_OP_BN_NORMALIZE] = {"bn_normalize", check_bn_normalize},
    [NG_OP_BN_MERGE] = {"bn_merge", check_bn_merge},
    [NG_OP_BN_PROJECT] = {"bn_project", check_bn_project},
    [NG_OP_ADAM] = {"adam", check_adam},
    [NG_OP_OUTER_SCALE] = {"outer_scale", check_outer_scale},
    [NG_OP_FACTOR_UPDATE] = {"factor_update", check_factor_update},
    [NG_OP_MINRESQLP_STEP] = {"minresqlp_step", check_minresqlp_step},
    [NG_OP_CONV_GATHER] = {"conv_gather", check_conv_gather},
    [NG_OP_WHITEN1X1] = {"whiten1x1", check_whiten1x1},
    [NG_OP_MOMENTUM] = {"momentum", check_momentum},
    [NG_OP_AXPBY_SEGMENTS] = {"axpby_segments", check_axpby_segments},
};

const char *ng_op_name(ng_op op) {
    return (unsigned)op < NG_OP_COUNT && op_table[op].name ? op_table[op].name : "?";
}

int ng_supports_op(ng_backend *be, ng_op op) {
    return be && (unsigned)op < NG_OP_COUNT && be->iface->run_op && be->iface->supports_op &&
           be->iface->supports_op(be, op);
}

ng_status ng_run_op(ng_backend *be, const ng_op_args *a) {
    int empty = 0;
    const char *op;
    if (!be || !a) return ng_error(NG_ERR_INVALID_ARG, "ng_run_op: NULL backend or arguments");
    if ((unsigned)a->op >= NG_OP_COUNT || !op_table[a->op].check)
        return ng_error(NG_ERR_INVALID_ARG, "ng_run_op: unknown op %d", (int)a->op);
    op = op_table[a->op].name;
    NG_TRY(op_table[a->op].check(a, op, &empty));
    if (a->op == NG_OP_GIBBS_SAMPLE && a->gibbs_sample.sum && !empty && !ng_sum_cols_part_supported(be))
        return ng_error(NG_ERR_UNSUPPORTED, "%s: the fused column sums (sum) need sum_cols_part, which the %s backend "
                        "lacks (sum the output with ng_sum_cols instead)", op, be->iface->name);
    if (empty) return NG_OK;
    if (!ng_supports_op(be, a->op))
        return ng_error(NG_ERR_UNSUPPORTED, "%s: not implemented by the %s backend", op, be->iface->name);
    NG_TRY(enter(be));
    ng_profile_count(0.0, 1);
    return be->iface->run_op(be, a);
}

/* ---- typed shorthands --------------------------------------------------------------------- */

ng_status ng_fill(ng_backend *be, size_t n, float value, float *out) {
    ng_op_args a = {.op = NG_OP_FILL, .fill = {n, value, out}};
    return ng_run_op(be, &a);
}
ng_status ng_fill_uniform(ng_backend *be, size_t n, float *out, uint64_t key, uint64_t step) {
    ng_op_args a = {.op = NG_OP_FILL_UNIFORM, .fill_uniform = {n, out, key, step}};
    return ng_run_op(be, &a);
}
ng_status ng_bernoulli(ng_backend *be, size_t n, const float *p, float *out, uint64_t key,
                       uint64_t step) {
    ng_op_args a = {.op = NG_OP_BERNOULLI, .bernoulli = {n, p, out, key, step}};
    return ng_run_op(be, &a);
}
ng_status ng_axpby(ng_backend *be, size_t n, float alpha, const float *x, float beta, float *y) {
    ng_op_args a = {.op = NG_OP_AXPBY, .axpby = {n, alpha, x, beta, y}};
    return ng_run_op(be, &a);
}
ng_status ng_to_double(ng_backend *be, size_t n, const float *x, double *y) {
    ng_op_args a = {.op = NG_OP_CONVERT, .convert = {n, NG_F32, NG_F64, x, y}};
    return ng_run_op(be, &a);
}
ng_status ng_to_float(ng_backend *be, size_t n, const double *x, float *y) {
    ng_op_args a = {.op = NG_OP_CONVERT, .convert = {n, NG_F64, NG_F32, x, y}};
    return ng_run_op(be, &a);
}
ng_status ng_gibbs_sample(ng_backend *be, int rows, int cols, const float *pre, int ldp,
                          const float *bias, float beta, const float *base, float *prob, int ldq,
                          float *sample, int lds, uint64_t key, uint64_t step) {
    ng_op_args a = {.op = NG_OP_GIBBS_SAMPLE,
                    .gibbs_sample = {rows, cols, pre, ldp, bias, beta, base, prob, ldq, sample, lds,
                                     key, step}};
    return ng_run_op(be, &a);
}
ng_status ng_bernoulli_at(ng_backend *be, size_t n, const float *p, float *out, uint64_t key,
                          uint64_t step, uint64_t first) {
    ng_op_args a = {.op = NG_OP_BERNOULLI, .bernoulli = {n, p, out, key, step, first}};
    return ng_run_op(be, &a);
}
ng_status ng_bernoulli_dev(ng_backend *be, size_t n, const float *p, float *out, uint64_t key, uint64_t *step_dev) {
    ng_op_args a = {.op = NG_OP_BERNOULLI, .bernoulli = {n, p, out, key, 0, 0, step_dev, 1}};
    return ng_run_op(be, &a);
}
ng_status ng_gibbs_sample_at(ng_backend *be, int rows, int cols, const float *pre, int ldp,
                             const float *bias, const float *base, float *prob, int ldq,
                             float *sample, int lds, uint64_t key, uint64_t step, uint64_t first) {
    ng_op_args a = {.op = NG_OP_GIBBS_SAMPLE,
                    .gibbs_sample = {rows, cols, pre, ldp, bias, 1.0f, base, prob, ldq, sample, lds,
                                     key, step, first}};
    return ng_run_op(be, &a);
}
ng_status ng_softplus_sum(ng_backend *be, int rows, int cols, const float *pre, int ldp,
                          const float *bias, float beta, float alpha, float gamma, float *y) {
    ng_op_args a = {.op = NG_OP_SOFTPLUS_SUM,
                    .softplus_sum = {rows, cols, pre, ldp, bias, beta, alpha, gamma, y}};
    return ng_run_op(be, &a);
}
ng_status ng_binary_states(ng_backend *be, int nbits, uint64_t first, int count, float *out,
                           int ldo) {
    ng_op_args a = {.op = NG_OP_BINARY_STATES, .binary_states = {nbits, first, count, out, ldo}};
    return ng_run_op(be, &a);
}
ng_status ng_symmetrize_lower(ng_backend *be, int n, float *A, int lda, float shift) {
    ng_op_args a = {.op = NG_OP_SYMMETRIZE_LOWER, .symmetrize_lower = {n, A, lda, shift}};
    return ng_run_op(be, &a);
}
