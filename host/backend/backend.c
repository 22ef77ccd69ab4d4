/* backend.c: backend selection and the checked wrappers algorithm code calls.
 * Each wrapper validates shapes, leading dimensions and pointers, names the op in any error, then
 * calls the backend slot (NG_ERR_UNSUPPORTED when the slot is NULL). No computation happens here. */
#include "natgrad/backend.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#if defined(NG_HAVE_CUDA) && defined(NG_NVTX)
#include <nvtx3/nvToolsExt.h>
#endif

ng_status ng_device_parse(const char *s, ng_device *out) {
    if (!s) return ng_error(NG_ERR_INVALID_ARG, "--device: missing value (use auto, cpu or cuda)");
    if (strcasecmp(s, "auto") == 0) *out = NG_DEVICE_AUTO;
    else if (strcasecmp(s, "cpu") == 0) *out = NG_DEVICE_CPU;
    else if (strcasecmp(s, "cuda") == 0 || strcasecmp(s, "gpu") == 0) *out = NG_DEVICE_CUDA;
    else return ng_error(NG_ERR_INVALID_ARG, "--device '%s': unknown device (use auto, cpu or cuda)", s);
    return NG_OK;
}

const char *ng_device_name(ng_device d) {
    return d == NG_DEVICE_CPU ? "cpu" : d == NG_DEVICE_CUDA ? "cuda" : "auto";
}

ng_status ng_backend_init(ng_device want, ng_backend **out, char *note, size_t note_len) {
    ng_status s;
    if (note && note_len) note[0] = '\0';
    *out = NULL;
    if (want == NG_DEVICE_CPU) return ng_backend_cpu_init(out);
    s = ng_backend_cuda_init(out);
    if (s == NG_OK) return NG_OK;
    if (want == NG_DEVICE_CUDA)
        return ng_error_wrap(s, "--device cuda: CUDA backend unavailable: ");
    if (note && note_len) snprintf(note, note_len, "CUDA unavailable (%s); using the CPU", ng_last_error());
    ng_clear_error();
    return ng_backend_cpu_init(out);
}

void ng_backend_free(ng_backend *be) {
    if (be && be->iface->destroy) be->iface->destroy(be);
}

/* ---- validation helpers ------------------------------------------------------------------- */

#define NEED_SLOT(be, slot, op)                                                              \
    do {                                                                                     \
        if (!(be)) return ng_error(NG_ERR_INVALID_ARG, "%s: backend is NULL", op);           \
        if (!(be)->iface->slot)                                                              \
            return ng_error(NG_ERR_UNSUPPORTED, "%s: not implemented by the %s backend", op, \
                            (be)->iface->name);                                              \
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

ng_status ng_alloc(ng_backend *be, size_t bytes, void **ptr) {
    NEED_SLOT(be, alloc, "alloc");
    NEED(ptr, "alloc", "output pointer is NULL");
    return be->iface->alloc(be, bytes, ptr);
}
void ng_free(ng_backend *be, void *ptr) {
    if (be && ptr) be->iface->free(be, ptr);
}
ng_status ng_set(ng_backend *be, void *dst, const void *src, size_t bytes) {
    NEED_SLOT(be, set, "set");
    if (!bytes) return NG_OK;
    NEED(dst && src, "set", "NULL pointer");
    return be->iface->set(be, dst, src, bytes);
}
ng_status ng_get(ng_backend *be, void *dst, const void *src, size_t bytes) {
    NEED_SLOT(be, get, "get");
    if (!bytes) return NG_OK;
    NEED(dst && src, "get", "NULL pointer");
    return be->iface->get(be, dst, src, bytes);
}
ng_status ng_memset0(ng_backend *be, void *dst, size_t bytes) {
    NEED_SLOT(be, memset0, "memset0");
    if (!bytes) return NG_OK;
    NEED(dst, "memset0", "NULL pointer");
    return be->iface->memset0(be, dst, bytes);
}
ng_status ng_copy(ng_backend *be, void *dst, const void *src, size_t bytes) {
    NEED_SLOT(be, copy, "copy");
    if (!bytes || dst == src) return NG_OK;
    NEED(dst && src, "copy", "NULL pointer");
    return be->iface->copy(be, dst, src, bytes);
}
ng_status ng_synchronize(ng_backend *be) {
    NEED_SLOT(be, synchronize, "synchronize");
    return be->iface->synchronize(be);
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
    return be->iface->gemm(be, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
ng_status ng_syrk(ng_backend *be, int trans, int n, int k, float alpha, const float *A, int lda,
                  float beta, float *C, int ldc) {
    NEED_SLOT(be, syrk, "syrk");
    NEED(n >= 0 && k >= 0, "syrk", "negative size n=%d k=%d", n, k);
    NEED(ld_ok(lda, trans ? k : n), "syrk", "lda=%d too small", lda);
    NEED(ld_ok(ldc, n), "syrk", "ldc=%d < n=%d", ldc, n);
    return be->iface->syrk(be, trans, n, k, alpha, A, lda, beta, C, ldc);
}
ng_status ng_gemv(ng_backend *be, int trans, int m, int n, float alpha, const float *A, int lda,
                  const float *x, float beta, float *y) {
    NEED_SLOT(be, gemv, "gemv");
    NEED(m >= 0 && n >= 0, "gemv", "negative size m=%d n=%d", m, n);
    NEED(ld_ok(lda, m), "gemv", "lda=%d < m=%d", lda, m);
    NEED(y, "gemv", "y is NULL");
    return be->iface->gemv(be, trans, m, n, alpha, A, lda, x, beta, y);
}
ng_status ng_axpby(ng_backend *be, size_t n, float alpha, const float *x, float beta, float *y) {
    NEED_SLOT(be, axpby, "axpby");
    if (!n) return NG_OK;
    NEED(x && y, "axpby", "NULL pointer");
    return be->iface->axpby(be, n, alpha, x, beta, y);
}
ng_status ng_scal(ng_backend *be, size_t n, float alpha, float *x) {
    NEED_SLOT(be, scal, "scal");
    if (!n) return NG_OK;
    NEED(x, "scal", "NULL pointer");
    return be->iface->scal(be, n, alpha, x);
}
ng_status ng_dot(ng_backend *be, size_t n, const float *x, const float *y, float *r) {
    NEED_SLOT(be, dot, "dot");
    NEED(r, "dot", "result pointer is NULL");
    if (!n) { *r = 0.0f; return NG_OK; }
    NEED(x && y, "dot", "NULL pointer");
    return be->iface->dot(be, n, x, y, r);
}
ng_status ng_nrm2(ng_backend *be, size_t n, const float *x, float *r) {
    NEED_SLOT(be, nrm2, "nrm2");
    NEED(r, "nrm2", "result pointer is NULL");
    if (!n) { *r = 0.0f; return NG_OK; }
    NEED(x, "nrm2", "NULL pointer");
    return be->iface->nrm2(be, n, x, r);
}
ng_status ng_sum_cols(ng_backend *be, int rows, int cols, float alpha, const float *A, int lda,
                      float beta, float *y) {
    NEED_SLOT(be, sum_cols, "sum_cols");
    NEED(rows >= 0 && cols >= 0, "sum_cols", "negative size");
    NEED(ld_ok(lda, rows), "sum_cols", "lda=%d < rows=%d", lda, rows);
    if (!rows) return NG_OK;
    NEED(y && (A || !cols), "sum_cols", "NULL pointer");
    return be->iface->sum_cols(be, rows, cols, alpha, A, lda, beta, y);
}
ng_status ng_sum_rows(ng_backend *be, int rows, int cols, float alpha, const float *A, int lda,
                      float beta, float *y) {
    NEED_SLOT(be, sum_rows, "sum_rows");
    NEED(rows >= 0 && cols >= 0, "sum_rows", "negative size");
    NEED(ld_ok(lda, rows), "sum_rows", "lda=%d < rows=%d", lda, rows);
    if (!cols) return NG_OK;
    NEED(y && (A || !rows), "sum_rows", "NULL pointer");
    return be->iface->sum_rows(be, rows, cols, alpha, A, lda, beta, y);
}
ng_status ng_gibbs_sample(ng_backend *be, int rows, int cols, const float *pre, int ldp,
                          const float *bias, float beta, const float *base, float *prob, int ldq,
                          float *sample, int lds, uint64_t key, uint64_t step) {
    NEED_SLOT(be, gibbs_sample, "gibbs_sample");
    NEED(rows >= 0 && cols >= 0, "gibbs_sample", "negative size");
    if (!rows || !cols) return NG_OK;
    NEED(pre, "gibbs_sample", "pre-activation is NULL");
    NEED(ld_ok(ldp, rows), "gibbs_sample", "ldp=%d < rows=%d", ldp, rows);
    NEED(!prob || ld_ok(ldq, rows), "gibbs_sample", "ldq=%d < rows=%d", ldq, rows);
    NEED(!sample || ld_ok(lds, rows), "gibbs_sample", "lds=%d < rows=%d", lds, rows);
    NEED(prob || sample, "gibbs_sample", "neither prob nor sample requested");
    return be->iface->gibbs_sample(be, rows, cols, pre, ldp, bias, beta, base, prob, ldq, sample,
                                   lds, key, step);
}
ng_status ng_bernoulli(ng_backend *be, size_t n, const float *p, float *out, uint64_t key,
                       uint64_t step) {
    NEED_SLOT(be, bernoulli, "bernoulli");
    if (!n) return NG_OK;
    NEED(p && out, "bernoulli", "NULL pointer");
    return be->iface->bernoulli(be, n, p, out, key, step);
}
ng_status ng_softplus_sum(ng_backend *be, int rows, int cols, const float *pre, int ldp,
                          const float *bias, float beta, float alpha, float gamma, float *y) {
    NEED_SLOT(be, softplus_sum, "softplus_sum");
    NEED(rows >= 0 && cols >= 0, "softplus_sum", "negative size");
    NEED(ld_ok(ldp, rows), "softplus_sum", "ldp=%d < rows=%d", ldp, rows);
    if (!cols) return NG_OK;
    NEED(y && (pre || !rows), "softplus_sum", "NULL pointer");
    return be->iface->softplus_sum(be, rows, cols, pre, ldp, bias, beta, alpha, gamma, y);
}
ng_status ng_binary_states(ng_backend *be, int nbits, uint64_t first, int count, float *out,
                           int ldo) {
    NEED_SLOT(be, binary_states, "binary_states");
    NEED(nbits >= 1 && nbits <= 62, "binary_states", "nbits=%d outside 1..62", nbits);
    NEED(count >= 0, "binary_states", "negative count");
    NEED(ld_ok(ldo, nbits), "binary_states", "ldo=%d < nbits=%d", ldo, nbits);
    if (!count) return NG_OK;
    NEED(out, "binary_states", "NULL pointer");
    return be->iface->binary_states(be, nbits, first, count, out, ldo);
}
ng_status ng_fill_uniform(ng_backend *be, size_t n, float *out, uint64_t key, uint64_t step) {
    NEED_SLOT(be, fill_uniform, "fill_uniform");
    if (!n) return NG_OK;
    NEED(out, "fill_uniform", "NULL pointer");
    return be->iface->fill_uniform(be, n, out, key, step);
}
ng_status ng_fill(ng_backend *be, size_t n, float value, float *out) {
    NEED_SLOT(be, fill, "fill");
    if (!n) return NG_OK;
    NEED(out, "fill", "NULL pointer");
    return be->iface->fill(be, n, value, out);
}

#define LAPACK_WRAP(fn, T, op)                                                               \
    ng_status ng_##fn(ng_backend *be, int n, T *A, int lda, int *info) {                     \
        NEED_SLOT(be, fn, op);                                                               \
        NEED(n >= 0 && ld_ok(lda, n), op, "n=%d lda=%d", n, lda);                            \
        NEED(info && (A || !n), op, "NULL pointer");                                         \
        return be->iface->fn(be, n, A, lda, info);                                           \
    }
LAPACK_WRAP(potrf, float, "potrf")
LAPACK_WRAP(potri, float, "potri")
LAPACK_WRAP(potrf_d, double, "potrf_d")
LAPACK_WRAP(potri_d, double, "potri_d")

ng_status ng_syevd(ng_backend *be, int n, float *A, int lda, float *w, int *info) {
    NEED_SLOT(be, syevd, "syevd");
    NEED(n >= 0 && ld_ok(lda, n), "syevd", "n=%d lda=%d", n, lda);
    NEED(info && ((A && w) || !n), "syevd", "NULL pointer");
    return be->iface->syevd(be, n, A, lda, w, info);
}
ng_status ng_syevd_d(ng_backend *be, int n, double *A, int lda, double *w, int *info) {
    NEED_SLOT(be, syevd_d, "syevd_d");
    NEED(n >= 0 && ld_ok(lda, n), "syevd_d", "n=%d lda=%d", n, lda);
    NEED(info && ((A && w) || !n), "syevd_d", "NULL pointer");
    return be->iface->syevd_d(be, n, A, lda, w, info);
}
ng_status ng_to_double(ng_backend *be, size_t n, const float *x, double *y) {
    NEED_SLOT(be, to_double, "to_double");
    if (!n) return NG_OK;
    NEED(x && y, "to_double", "NULL pointer");
    return be->iface->to_double(be, n, x, y);
}
ng_status ng_to_float(ng_backend *be, size_t n, const double *x, float *y) {
    NEED_SLOT(be, to_float, "to_float");
    if (!n) return NG_OK;
    NEED(x && y, "to_float", "NULL pointer");
    return be->iface->to_float(be, n, x, y);
}

ng_status ng_symmetrize_lower(ng_backend *be, int n, float *A, int lda, float shift) {
    NEED_SLOT(be, symmetrize_lower, "symmetrize_lower");
    NEED(n >= 0 && ld_ok(lda, n), "symmetrize_lower", "n=%d lda=%d", n, lda);
    NEED(shift - shift == 0.0f, "symmetrize_lower", "shift %g is not finite", (double)shift);
    if (!n) return NG_OK;
    NEED(A, "symmetrize_lower", "NULL pointer");
    return be->iface->symmetrize_lower(be, n, A, lda, shift);
}
ng_status ng_fang_regress(ng_backend *be, int nh, int nv, const float *Evh, const float *Ev2h,
                          const float *Evh2, const float *Ev2h2, int ldm, const float *mu_v,
                          const float *mu_h, const float *Ev2, const float *Eh2, float lambda,
                          float *beta_v, float *beta_h, float *sigma2, int ldo) {
    NEED_SLOT(be, fang_regress, "fang_regress");
    NEED(nh >= 0 && nv >= 0, "fang_regress", "negative size nh=%d nv=%d", nh, nv);
    NEED(ld_ok(ldm, nh), "fang_regress", "ldm=%d < nh=%d", ldm, nh);
    NEED(ld_ok(ldo, nh), "fang_regress", "ldo=%d < nh=%d", ldo, nh);
    NEED(lambda >= 0.0f && lambda - lambda == 0.0f, "fang_regress",
         "lambda %g must be finite and >= 0", (double)lambda);
    if (!nh || !nv) return NG_OK;
    NEED(Evh && Ev2h && Evh2 && Ev2h2 && mu_v && mu_h && Ev2 && Eh2, "fang_regress",
         "NULL moment pointer");
    NEED(beta_v && beta_h && sigma2, "fang_regress", "NULL output pointer");
    return be->iface->fang_regress(be, nh, nv, Evh, Ev2h, Evh2, Ev2h2, ldm, mu_v, mu_h, Ev2, Eh2,
                                   lambda, beta_v, beta_h, sigma2, ldo);
}
ng_status ng_fang_residual(ng_backend *be, int nh, int nv, float *G, int ldg, const float *ga,
                           const float *gb, const float *beta_v, const float *beta_h,
                           const float *sigma2, int ldb, float *pv, float *ph, int ldp) {
    NEED_SLOT(be, fang_residual, "fang_residual");
    NEED(nh >= 0 && nv >= 0, "fang_residual", "negative size nh=%d nv=%d", nh, nv);
    NEED(ld_ok(ldg, nh), "fang_residual", "ldg=%d < nh=%d", ldg, nh);
    NEED(ld_ok(ldb, nh), "fang_residual", "ldb=%d < nh=%d", ldb, nh);
    NEED(ld_ok(ldp, nh), "fang_residual", "ldp=%d < nh=%d", ldp, nh);
    if (!nh || !nv) return NG_OK;
    NEED(G && ga && gb && beta_v && beta_h && sigma2 && pv && ph, "fang_residual", "NULL pointer");
    return be->iface->fang_residual(be, nh, nv, G, ldg, ga, gb, beta_v, beta_h, sigma2, ldb, pv,
                                    ph, ldp);
}

void ng_range_push(const char *name) {
#if defined(NG_HAVE_CUDA) && defined(NG_NVTX)
    nvtxRangePushA(name);
#else
    (void)name;
#endif
}
void ng_range_pop(void) {
#if defined(NG_HAVE_CUDA) && defined(NG_NVTX)
    nvtxRangePop();
#endif
}
