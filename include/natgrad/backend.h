/* natgrad/backend.h: the backend table (struct ng_backend_i) and the checked wrappers that
 * algorithm code calls. Column-major everywhere; all pointers passed to ops are device pointers
 * of the backend (host code never dereferences them), except where a parameter is named *_host.
 * No CUDA types here: a stream is a void *.
 *
 * Accumulate/overwrite conventions are stated per op: "=" overwrites, "+=" accumulates, and
 * BLAS-style (alpha, beta) ops compute out = alpha * f(in) + beta * out (beta = 0 ignores out,
 * even when it holds NaN, as BLAS does).
 *
 * A backend may leave a slot NULL; the wrapper then returns NG_ERR_UNSUPPORTED naming the op. */
#ifndef NATGRAD_BACKEND_H
#define NATGRAD_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "natgrad/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ng_device {
    NG_DEVICE_AUTO = 0, /* CUDA when compiled in and a device answers, else CPU */
    NG_DEVICE_CPU,
    NG_DEVICE_CUDA
} ng_device;

typedef struct ng_backend ng_backend;

struct ng_backend_i {
    const char *name;
    void (*destroy)(ng_backend *be);

    /* memory */
    ng_status (*alloc)(ng_backend *be, size_t bytes, void **ptr);
    void (*free)(ng_backend *be, void *ptr);
    ng_status (*set)(ng_backend *be, void *dst, const void *src_host, size_t bytes);
    ng_status (*get)(ng_backend *be, void *dst_host, const void *src, size_t bytes);
    ng_status (*memset0)(ng_backend *be, void *dst, size_t bytes);
    ng_status (*copy)(ng_backend *be, void *dst, const void *src, size_t bytes);
    ng_status (*synchronize)(ng_backend *be);

    /* BLAS-like, float32. trans flags: 0 = N, 1 = T. */
    /* C(m,n) = alpha op(A) op(B) + beta C */
    ng_status (*gemm)(ng_backend *be, int ta, int tb, int m, int n, int k, float alpha,
                      const float *A, int lda, const float *B, int ldb, float beta, float *C,
                      int ldc);
    /* Lower triangle of C(n,n) = alpha op(A) op(A)^T + beta C; trans = 0: A is (n,k),
     * trans = 1: A is (k,n). The strict upper triangle is not touched. */
    ng_status (*syrk)(ng_backend *be, int trans, int n, int k, float alpha, const float *A,
                      int lda, float beta, float *C, int ldc);
    /* y = alpha op(A) x + beta y, A is (m,n) */
    ng_status (*gemv)(ng_backend *be, int trans, int m, int n, float alpha, const float *A,
                      int lda, const float *x, float beta, float *y);
    /* y(n) = alpha x + beta y */
    ng_status (*axpby)(ng_backend *be, size_t n, float alpha, const float *x, float beta,
                       float *y);
    /* x(n) = alpha x */
    ng_status (*scal)(ng_backend *be, size_t n, float alpha, float *x);
    ng_status (*dot)(ng_backend *be, size_t n, const float *x, const float *y,
                     float *result_host);
    ng_status (*nrm2)(ng_backend *be, size_t n, const float *x, float *result_host);
    /* y(rows) = alpha * (sum over columns of A(rows,cols)) + beta y */
    ng_status (*sum_cols)(ng_backend *be, int rows, int cols, float alpha, const float *A,
                          int lda, float beta, float *y);
    /* y(cols) = alpha * (sum over rows of A(rows,cols)) + beta y */
    ng_status (*sum_rows)(ng_backend *be, int rows, int cols, float alpha, const float *A,
                          int lda, float beta, float *y);

    /* Elementwise families (bodies in kernels/ng_math.h). */
    /* Fused Gibbs step for a layer (rows units, cols particles):
     *   x = beta * (pre[r,c] + bias[r]) + (1 - beta) * base[r]   (base may be NULL = 0)
     *   prob[r,c] = sigmoid(x)                     (= ; prob may be NULL)
     *   sample[r,c] = u(key, step, r + rows*c) <= prob   (= ; sample may be NULL)
     * pre and the outputs may alias (same pointer and ld). */
    ng_status (*gibbs_sample)(ng_backend *be, int rows, int cols, const float *pre, int ldp,
                              const float *bias, float beta, const float *base, float *prob,
                              int ldq, float *sample, int lds, uint64_t key, uint64_t step);
    /* out[i] = u(key, step, i) <= p[i]  (=), for i < n; p and out may alias. */
    ng_status (*bernoulli)(ng_backend *be, size_t n, const float *p, float *out, uint64_t key,
                           uint64_t step);
    /* y[c] = alpha * sum_r softplus(beta * (pre[r,c] + bias[r])) + gamma * y[c]
     * (bias may be NULL = 0). Summation order is fixed (reproducible). */
    ng_status (*softplus_sum)(ng_backend *be, int rows, int cols, const float *pre, int ldp,
                              const float *bias, float beta, float alpha, float gamma, float *y);
    /* out[b, c] = bit b of (first + c), for b < nbits, c < count  (=) */
    ng_status (*binary_states)(ng_backend *be, int nbits, uint64_t first, int count, float *out,
                               int ldo);
    /* out[i] = uniform in (0,1] of (key, step, i)  (=) */
    ng_status (*fill_uniform)(ng_backend *be, size_t n, float *out, uint64_t key, uint64_t step);
    /* out[i] = value  (=) */
    ng_status (*fill)(ng_backend *be, size_t n, float value, float *out);

    /* LAPACK-like on the lower triangle, column-major (n,n). info_host receives LAPACK's info
     * (0 = success, k > 0 = leading minor k not positive definite / no convergence). */
    ng_status (*potrf)(ng_backend *be, int n, float *A, int lda, int *info_host);
    /* A = inverse of the SPD matrix whose lower Cholesky factor is in A (lower triangle). */
    ng_status (*potri)(ng_backend *be, int n, float *A, int lda, int *info_host);
    /* Eigen-decomposition of a symmetric matrix (lower triangle used): eigenvalues ascending in
     * w(n), eigenvectors in the columns of A. */
    ng_status (*syevd)(ng_backend *be, int n, float *A, int lda, float *w, int *info_host);
    ng_status (*potrf_d)(ng_backend *be, int n, double *A, int lda, int *info_host);
    ng_status (*potri_d)(ng_backend *be, int n, double *A, int lda, int *info_host);
    ng_status (*syevd_d)(ng_backend *be, int n, double *A, int lda, double *w, int *info_host);
    /* float <-> double conversion of n elements on the device */
    ng_status (*to_double)(ng_backend *be, size_t n, const float *x, double *y);
    ng_status (*to_float)(ng_backend *be, size_t n, const double *x, float *y);

    /* A(n,n): the strict upper triangle becomes the transpose of the strict lower one and
     * shift is added to the diagonal (=, in place): turns potrf/potri/syrk output (lower
     * triangle only) into a full symmetric matrix, optionally damped. */
    ng_status (*symmetrize_lower)(ng_backend *be, int n, float *A, int lda, float shift);

    /* FANG (host/optim/fang.c; bodies ng_fang_* in kernels/ng_math.h). */
    /* For every pair (j, i), j < nh, i < nv, the regression of m_ij = v_i h_j on (v_i, h_j)
     * (FANG eq. 11-12, ng_fang_regress_pair) from the moment matrices Evh = E[h v^T],
     * Ev2h = E[h (v.^2)^T], Evh2 = E[h.^2 v^T], Ev2h2 = E[h.^2 (v.^2)^T] (all (nh,nv), ld ldm)
     * and the vectors mu_v = E[v], Ev2 = E[v.^2] (nv), mu_h = E[h], Eh2 = E[h.^2] (nh), with
     * lambda I added to the 3x3 covariance: beta_v, beta_h, sigma2 (nh,nv), ld ldo  (=). */
    ng_status (*fang_regress)(ng_backend *be, int nh, int nv, const float *Evh, const float *Ev2h,
                              const float *Evh2, const float *Ev2h2, int ldm, const float *mu_v,
                              const float *mu_h, const float *Ev2, const float *Eh2, float lambda,
                              float *beta_v, float *beta_h, float *sigma2, int ldo);
    /* Pairwise part of the FANG direction (ng_fang_residual_elem) on (nh,nv) matrices:
     *   G[j,i] = q = (G[j,i] - beta_v[j,i] ga[i] - beta_h[j,i] gb[j]) / sigma2[j,i]  (=, in place)
     *   pv = beta_v .* q,  ph = beta_h .* q  (=), ga (nv), gb (nh).
     * beta_v, beta_h, sigma2 share ldb; pv, ph share ldp. */
    ng_status (*fang_residual)(ng_backend *be, int nh, int nv, float *G, int ldg,
                               const float *ga, const float *gb, const float *beta_v,
                               const float *beta_h, const float *sigma2, int ldb, float *pv,
                               float *ph, int ldp);
};

struct ng_backend {
    const struct ng_backend_i *iface;
    ng_device kind;
    void *stream;      /* CUDA stream (NULL on the CPU) */
    void *ctx;         /* backend-private state */
    char description[256]; /* one line for the start-up banner: device, BLAS, kernel */
};

/* Create a backend. NG_DEVICE_AUTO falls back to the CPU (and says why in *fallback_note when
 * non-NULL, else "") when CUDA is not compiled in or no device answers. */
ng_status ng_backend_init(ng_device want, ng_backend **out, char *fallback_note, size_t note_len);
void ng_backend_free(ng_backend *be);
ng_status ng_device_parse(const char *s, ng_device *out);
const char *ng_device_name(ng_device d);

/* Constructors of the concrete backends (used by ng_backend_init and by tests). */
ng_status ng_backend_cpu_init(ng_backend **out);
ng_status ng_backend_cuda_init(ng_backend **out); /* NG_ERR_NO_DEVICE when not compiled in */
int ng_cuda_compiled(void);

/* Checked wrappers: validate shapes/pointers, then call the slot. */
ng_status ng_alloc(ng_backend *be, size_t bytes, void **ptr);
void ng_free(ng_backend *be, void *ptr);
ng_status ng_set(ng_backend *be, void *dst, const void *src_host, size_t bytes);
ng_status ng_get(ng_backend *be, void *dst_host, const void *src, size_t bytes);
ng_status ng_memset0(ng_backend *be, void *dst, size_t bytes);
ng_status ng_copy(ng_backend *be, void *dst, const void *src, size_t bytes);
ng_status ng_synchronize(ng_backend *be);
ng_status ng_gemm(ng_backend *be, int ta, int tb, int m, int n, int k, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
ng_status ng_syrk(ng_backend *be, int trans, int n, int k, float alpha, const float *A, int lda,
                  float beta, float *C, int ldc);
ng_status ng_gemv(ng_backend *be, int trans, int m, int n, float alpha, const float *A, int lda,
                  const float *x, float beta, float *y);
ng_status ng_axpby(ng_backend *be, size_t n, float alpha, const float *x, float beta, float *y);
ng_status ng_scal(ng_backend *be, size_t n, float alpha, float *x);
ng_status ng_dot(ng_backend *be, size_t n, const float *x, const float *y, float *result_host);
ng_status ng_nrm2(ng_backend *be, size_t n, const float *x, float *result_host);
ng_status ng_sum_cols(ng_backend *be, int rows, int cols, float alpha, const float *A, int lda,
                      float beta, float *y);
ng_status ng_sum_rows(ng_backend *be, int rows, int cols, float alpha, const float *A, int lda,
                      float beta, float *y);
ng_status ng_gibbs_sample(ng_backend *be, int rows, int cols, const float *pre, int ldp,
                          const float *bias, float beta, const float *base, float *prob, int ldq,
                          float *sample, int lds, uint64_t key, uint64_t step);
ng_status ng_bernoulli(ng_backend *be, size_t n, const float *p, float *out, uint64_t key,
                       uint64_t step);
ng_status ng_softplus_sum(ng_backend *be, int rows, int cols, const float *pre, int ldp,
                          const float *bias, float beta, float alpha, float gamma, float *y);
ng_status ng_binary_states(ng_backend *be, int nbits, uint64_t first, int count, float *out,
                           int ldo);
ng_status ng_fill_uniform(ng_backend *be, size_t n, float *out, uint64_t key, uint64_t step);
ng_status ng_fill(ng_backend *be, size_t n, float value, float *out);
ng_status ng_potrf(ng_backend *be, int n, float *A, int lda, int *info_host);
ng_status ng_potri(ng_backend *be, int n, float *A, int lda, int *info_host);
ng_status ng_syevd(ng_backend *be, int n, float *A, int lda, float *w, int *info_host);
ng_status ng_potrf_d(ng_backend *be, int n, double *A, int lda, int *info_host);
ng_status ng_potri_d(ng_backend *be, int n, double *A, int lda, int *info_host);
ng_status ng_syevd_d(ng_backend *be, int n, double *A, int lda, double *w, int *info_host);
ng_status ng_to_double(ng_backend *be, size_t n, const float *x, double *y);
ng_status ng_to_float(ng_backend *be, size_t n, const double *x, float *y);
ng_status ng_symmetrize_lower(ng_backend *be, int n, float *A, int lda, float shift);
ng_status ng_fang_regress(ng_backend *be, int nh, int nv, const float *Evh, const float *Ev2h,
                          const float *Evh2, const float *Ev2h2, int ldm, const float *mu_v,
                          const float *mu_h, const float *Ev2, const float *Eh2, float lambda,
                          float *beta_v, float *beta_h, float *sigma2, int ldo);
ng_status ng_fang_residual(ng_backend *be, int nh, int nv, float *G, int ldg, const float *ga,
                           const float *gb, const float *beta_v, const float *beta_h,
                           const float *sigma2, int ldb, float *pv, float *ph, int ldp);

/* Start/end a named profiling range (NVTX on CUDA builds, no-op otherwise). */
void ng_range_push(const char *name);
void ng_range_pop(void);

#ifdef __cplusplus
}
#endif
#endif
