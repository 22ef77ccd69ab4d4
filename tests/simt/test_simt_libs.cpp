/* test_simt_libs.cpp: the SIMT emulator's cuBLAS, cuSOLVER and cuRAND host shims.
 * cuBLAS results are compared with naive double-precision loops (tolerance: float rounding of
 * k-term sums, 1e-5 relative); argument validation must answer as cuBLAS documents (bad leading
 * dimensions, negative sizes, NULL or destroyed handles) and must leave the output untouched.
 * cuSOLVER factorizations are checked by reconstruction (L L^T = A, A A^{-1} = I, A V = V diag(w),
 * V^T V = I) with tolerances scaled by the matrix size and precision. Matrices are column-major and
 * carry padding rows (ld > rows) so leading dimensions are exercised. trsm (S and D) is compared
 * with a naive substitution in double for every side/uplo/trans/diag combination, with NaN in the
 * triangle and diagonal it must not read; the D level-1/2 calls with naive double loops.
 * cusolverDnXsyevBatched against cusolverDnSsyevd per matrix, and its argument checks. */
#include "ng_cuda.cuh"

#include <cublas_v2.h>
#include <curand.h>
#include <cusolverDn.h>
#include <math.h>
#include <string.h>

#include <vector>

#include "harness.h"

#define CHECK_CUDA(call)                                                                           \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        NGT_CHECK(e_ == cudaSuccess, "%s -> %s", #call, cudaGetErrorName(e_));                     \
    } while (0)
#define CHECK_BLAS(call, want)                                                                     \
    do {                                                                                           \
        cublasStatus_t s_ = (call);                                                                \
        NGT_CHECK(s_ == (want), "%s -> %s, want %s", #call, cublasGetStatusName(s_),               \
                  cublasGetStatusName(want));                                                      \
    } while (0)
#define CHECK_SOLVER(call, want)                                                                   \
    do {                                                                                           \
        cusolverStatus_t s_ = (call);                                                              \
        NGT_CHECK(s_ == (want), "%s -> status %d, want %d", #call, (int)s_, (int)(want));          \
    } while (0)

template <class T> static T *dev_from(const std::vector<T> &h) {
    void *p = NULL;
    if (cudaMalloc(&p, h.size() * sizeof(T)) != cudaSuccess) return NULL;
    if (cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice) != cudaSuccess)
        return NULL;
    return (T *)p;
}

template <class T> static std::vector<T> host_from(const T *d, size_t n) {
    std::vector<T> h(n);
    if (cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess) h.clear();
    return h;
}

template <class T> static std::vector<T> rnd(size_t n, unsigned seed) {
    std::vector<T> v(n);
    for (size_t i = 0; i < n; i++) v[i] = (T)(2.0f * ng_uniform_at(seed, 5, i) - 1.0f);
    return v;
}

/* C = alpha op(A) op(B) + beta C, naive, in double. */
template <class T>
static std::vector<T> gemm_ref(int ta, int tb, int m, int n, int k, double alpha,
                               const std::vector<T> &A, int lda, const std::vector<T> &B, int ldb,
                               double beta, std::vector<T> C, int ldc) {
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double s = 0.0;
            for (int l = 0; l < k; l++) {
                double a = ta ? A[(size_t)l + (size_t)lda * i] : A[(size_t)i + (size_t)lda * l];
                double b = tb ? B[(size_t)j + (size_t)ldb * l] : B[(size_t)l + (size_t)ldb * j];
                s += a * b;
            }
            double c = beta == 0.0 ? 0.0 : beta * (double)C[(size_t)i + (size_t)ldc * j];
            C[(size_t)i + (size_t)ldc * j] = (T)(alpha * s + c);
        }
    return C;
}

static int test_sgemm_all_transposes(void) {
    cublasHandle_t h;
    const int m = 37, n = 23, k = 19;
    const cublasOperation_t ops[3] = {CUBLAS_OP_N, CUBLAS_OP_T, CUBLAS_OP_C};
    CHECK_BLAS(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            int ta = a != 0, tb = b != 0;
            int lda = (ta ? k : m) + 3, ldb = (tb ? n : k) + 2, ldc = m + 5;
            std::vector<float> A = rnd<float>((size_t)lda * (ta ? m : k), 10 + a);
            std::vector<float> B = rnd<float>((size_t)ldb * (tb ? k : n), 20 + b);
            std::vector<float> C = rnd<float>((size_t)ldc * n, 30);
            float *dA = dev_from(A), *dB = dev_from(B), *dC = dev_from(C);
            NGT_CHECK(dA && dB && dC, "device copies");
            float alpha = 1.5f, beta = -0.5f;
            CHECK_BLAS(
                cublasSgemm(h, ops[a], ops[b], m, n, k, &alpha, dA, lda, dB, ldb, &beta, dC, ldc),
                CUBLAS_STATUS_SUCCESS);
            std::vector<float> got = host_from(dC, C.size());
            std::vector<float> want = gemm_ref(ta, tb, m, n, k, 1.5, A, lda, B, ldb, -0.5, C, ldc);
            NGT_CHECK(!got.empty(), "copy out");
            NGT_CHECK(ngt_compare("sgemm", got.data(), want.data(), got.size(), 1e-5, 1e-5) == 0,
                      "sgemm op(A)=%d op(B)=%d", a, b);
            /* beta = 0: C is not read, so NaN there (fresh memory) must not leak */
            float *dC2 = NULL, zero = 0.0f;
            CHECK_CUDA(cudaMalloc((void **)&dC2, C.size() * sizeof(float)));
            CHECK_BLAS(
                cublasSgemm(h, ops[a], ops[b], m, n, k, &alpha, dA, lda, dB, ldb, &zero, dC2, ldc),
                CUBLAS_STATUS_SUCCESS);
            got = host_from(dC2, C.size());
            want = gemm_ref(ta, tb, m, n, k, 1.5, A, lda, B, ldb, 0.0, C, ldc);
            for (int j = 0; j < n; j++)
                for (int i = 0; i < m; i++) {
                    size_t idx = (size_t)i + (size_t)ldc * j;
                    NGT_CLOSE(got[idx], want[idx], 1e-5 + 1e-5 * fabs(want[idx]), "sgemm beta=0");
                }
            cudaFree(dA);
            cudaFree(dB);
            cudaFree(dC);
            cudaFree(dC2);
        }
    CHECK_BLAS(cublasDestroy(h), CUBLAS_STATUS_SUCCESS);
    return NGT_PASS;
}

/* TF32 math mode: cublasSgemm multiplies operands rounded to TF32 (10-bit mantissa, nearest-even)
 * and must equal a float64 product of those rounded operands to float accumulation accuracy; the
 * result must differ measurably from the full-float product, and cublasDgemm must be unaffected. */
static float tf32_ref_round(float x) {
    /* independent of the shim: nearest multiple of 2^(e-10) by rint in double, ties to even */
    if (!isfinite(x) || x == 0.0f) return x;
    int e;
    frexp((double)x, &e); /* x = f 2^e, 0.5 <= |f| < 1: the ulp of a 10-bit mantissa is 2^(e-11) */
    double ulp = ldexp(1.0, e - 11);
    return (float)(rint((double)x / ulp) * ulp);
}

static int test_sgemm_tf32_math_mode(void) {
    cublasHandle_t h;
    const int m = 23, n = 19, k = 64, lda = 70, ldb = 66, ldc = 25;
    CHECK_BLAS(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
    /* the rounding itself, on values with known answers: 1 + 2^-11 is a tie (to even: 1),
     * 1 + 3 2^-11 a tie to even upward (1 + 2^-9), 1 + 2^-11 + 2^-20 rounds up to 1 + 2^-10 */
    NGT_CHECK(tf32_ref_round(1.0f + ldexpf(1.0f, -11)) == 1.0f, "tie to even (down)");
    NGT_CHECK(tf32_ref_round(1.0f + 3.0f * ldexpf(1.0f, -11)) == 1.0f + ldexpf(1.0f, -9),
              "tie to even (up)");
    for (int ta = 0; ta < 2; ta++) {
        int tb = !ta;
        std::vector<float> A = rnd<float>((size_t)lda * (ta ? m : k), 140 + ta);
        std::vector<float> B = rnd<float>((size_t)ldb * (tb ? k : n), 150 + ta);
        std::vector<float> C = rnd<float>((size_t)ldc * n, 160);
        std::vector<float> Ar(A), Br(B);
        for (float &v : Ar) v = tf32_ref_round(v);
        for (float &v : Br) v = tf32_ref_round(v);
        float *dA = dev_from(A), *dB = dev_from(B), *dC = dev_from(C), alpha = 1.25f, beta = -0.5f;
        NGT_CHECK(dA && dB && dC, "device copies");
        CHECK_BLAS(cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH), CUBLAS_STATUS_SUCCESS);
        CHECK_BLAS(cublasSgemm(h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                               m, n, k, &alpha, dA, lda, dB, ldb, &beta, dC, ldc),
                   CUBLAS_STATUS_SUCCESS);
        std::vector<float> got = host_from(dC, C.size());
        std::vector<float> want = gemm_ref(ta, tb, m, n, k, 1.25, Ar, lda, Br, ldb, -0.5, C, ldc);
        std::vector<float> full = gemm_ref(ta, tb, m, n, k, 1.25, A, lda, B, ldb, -0.5, C, ldc);
        double maxdiff = 0.0;
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                size_t idx = (size_t)i + (size_t)ldc * j;
                NGT_CLOSE(got[idx], want[idx], 2e-5 + 2e-5 * fabs(want[idx]), "tf32 sgemm");
                maxdiff = fmax(maxdiff, fabs((double)got[idx] - full[idx]));
            }
        /* each product carries ~2^-11 relative error per operand: over k = 64 terms of size <= 1
         * the deviation from the float product is far above float rounding yet below k 2^-10 */
        NGT_CHECK(maxdiff > 1e-4 && maxdiff < 64.0 * 1.25 * ldexp(1.0, -10),
                  "tf32 deviation from the float product %g out of (1e-4, %g)", maxdiff,
                  64.0 * 1.25 * ldexp(1.0, -10));
        /* default math again: the float product */
        CHECK_BLAS(cudaMemcpy(dC, C.data(), C.size() * sizeof(float), cudaMemcpyHostToDevice) ==
                           cudaSuccess
                       ? CUBLAS_STATUS_SUCCESS
                       : CUBLAS_STATUS_EXECUTION_FAILED,
                   CUBLAS_STATUS_SUCCESS);
        CHECK_BLAS(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), CUBLAS_STATUS_SUCCESS);
        CHECK_BLAS(cublasSgemm(h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                               m, n, k, &alpha, dA, lda, dB, ldb, &beta, dC, ldc),
                   CUBLAS_STATUS_SUCCESS);
        got = host_from(dC, C.size());
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                size_t idx = (size_t)i + (size_t)ldc * j;
                NGT_CLOSE(got[idx], full[idx], 2e-5 + 2e-5 * fabs(full[idx]), "default sgemm");
            }
        cudaFree(dA);
        cudaFree(dB);
        cudaFree(dC);
    }
    /* double gemm in TF32 mode: bit-identical to default mode */
    {
        const int dm = 9, dn = 7, dk = 13;
        std::vector<double> A = rnd<double>(dm * dk, 170), B = rnd<double>(dk * dn, 171),
                            C(dm * dn, 0.0);
        double *dA = dev_from(A), *dB = dev_from(B), *d1 = dev_from(C), *d2 = dev_from(C);
        double alpha = 1.0, beta = 0.0;
        NGT_CHECK(dA && dB && d1 && d2, "device copies");
        CHECK_BLAS(cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH), CUBLAS_STATUS_SUCCESS);
        CHECK_BLAS(cublasDgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, dm, dn, dk, &alpha, dA, dm, dB, dk,
                               &beta, d1, dm),
                   CUBLAS_STATUS_SUCCESS);
        CHECK_BLAS(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), CUBLAS_STATUS_SUCCESS);
        CHECK_BLAS(cublasDgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, dm, dn, dk, &alpha, dA, dm, dB, dk,
                               &beta, d2, dm),
                   CUBLAS_STATUS_SUCCESS);
        std::vector<double> g1 = host_from(d1, C.size()), g2 = host_from(d2, C.size());
        NGT_CHECK(memcmp(g1.data(), g2.data(), g1.size() * sizeof(double)) == 0,
                  "TF32 mode changed a double gemm");
        cudaFree(dA);
        cudaFree(dB);
        cudaFree(d1);
        cudaFree(d2);
    }
    CHECK_BLAS(cublasDestroy(h), CUBLAS_STATUS_SUCCESS);
    return NGT_PASS;
}

static int test_gemm_rejects_bad_arguments(void) {
    cublasHandle_t h, dead;
    const int m = 8, n = 6, k = 5;
    float alpha = 1.0f, beta = 0.0f, host_A[64] = {0};
    std::vector<float> A = rnd<float>(64, 1), B = rnd<float>(64, 2), C(64, 7.0f);
    float *dA = dev_from(A), *dB = dev_from(B), *dC = dev_from(C);
    NGT_CHECK(dA && dB && dC, "device copies");
    CHECK_BLAS(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
    CHECK_BLAS(
        cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, dA, m - 1, dB, k, &beta, dC, m),
        CUBLAS_STATUS_INVALID_VALUE);
    CHECK_BLAS(
        cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, dA, k - 1, dB, k, &beta, dC, m),
        CUBLAS_STATUS_INVALID_VALUE);
    CHECK_BLAS(
        cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, dA, m, dB, k - 1, &beta, dC, m),
        CUBLAS_STATUS_INVALID_VALUE);
    CHECK_BLAS(
        cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, m, n, k, &alpha, dA, m, dB, n - 1, &beta, dC, m),
        CUBLAS_STATUS_INVALID_VALUE);
    CHECK_BLAS(
        cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, dA, m, dB, k, &beta, dC, m - 1),
        CUBLAS_STATUS_INVALID_VALUE);
    CHECK_BLAS(
        cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 0, n, k, &alpha, dA, 0, dB, k, &beta, dC, 1),
        CUBLAS_STATUS_INVALID_VALUE); /* lda must be >= max(1, rows) even when m = 0 */
    CHECK_BLAS(
        cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, -1, n, k, &alpha, dA, m, dB, k, &beta, dC, m),
        CUBLAS_STATUS_INVALID_VALUE);
    CHECK_BLAS(
        cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, -2, &alpha, dA, m, dB, k, &beta, dC, m),
        CUBLAS_STATUS_INVALID_VALUE);
    CHECK_BLAS(
        cublasSgemm(h, CUBLAS_OP_CONJG, CUBLAS_OP_N, m, n, k, &alpha, dA, m, dB, k, &beta, dC, m),
        CUBLAS_STATUS_INVALID_VALUE);
    CHECK_BLAS(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, NULL, dA, m, dB, k, &beta, dC, m),
               CUBLAS_STATUS_INVALID_VALUE);
    /* emulator-specific: a host matrix, or a scalar in the wrong memory for the pointer mode */
    CHECK_BLAS(
        cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, host_A, m, dB, k, &beta, dC, m),
        CUBLAS_STATUS_INVALID_VALUE);
    CHECK_BLAS(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, dA, dA, m, dB, k, &beta, dC, m),
               CUBLAS_STATUS_INVALID_VALUE);
    CHECK_BLAS(
        cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n + 3, k, &alpha, dA, m, dB, k, &beta, dC, m),
        CUBLAS_STATUS_INVALID_VALUE); /* C would run past its 64 floats */
    CHECK_BLAS(
        cublasSgemm(NULL, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, dA, m, dB, k, &beta, dC, m),
        CUBLAS_STATUS_NOT_INITIALIZED);
    CHECK_BLAS(cublasCreate(&dead), CUBLAS_STATUS_SUCCESS);
    CHECK_BLAS(cublasDestroy(dead), CUBLAS_STATUS_SUCCESS);
    CHECK_BLAS(
        cublasSgemm(dead, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, dA, m, dB, k, &beta, dC, m),
        CUBLAS_STATUS_NOT_INITIALIZED);
    std::vector<float> after = host_from(dC, 64);
    NGT_CHECK(ngt_compare("C after rejected calls", after.data(), C.data(), 64, 0.0, 0.0) == 0,
              "a rejected call wrote C");
    CHECK_BLAS(cublasSetPointerMode(h, (cublasPointerMode_t)5), CUBLAS_STATUS_INVALID_VALUE);
    CHECK_BLAS(cublasSetStream(h, (cudaStream_t)0x999), CUBLAS_STATUS_INVALID_VALUE);
    CHECK_BLAS(cublasDestroy(h), CUBLAS_STATUS_SUCCESS);
    cudaFree(dA);
    cudaFree(dB);
    cudaFree(dC);
    return NGT_PASS;
}

static int test_blas_other_ops(void) {
    cublasHandle_t h;
    cudaStream_t s;
    const int m = 29, n = 17, k = 11, lda = 31, ldc = 20;
    CHECK_CUDA(cudaStreamCreate(&s));
    CHECK_BLAS(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
    CHECK_BLAS(cublasSetStream(h, s), CUBLAS_STATUS_SUCCESS);
    CHECK_BLAS(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), CUBLAS_STATUS_SUCCESS);
    int ver = 0;
    CHECK_BLAS(cublasGetVersion(h, &ver), CUBLAS_STATUS_SUCCESS);
    NGT_CHECK(ver > 0, "version %d", ver);

    /* syrk, lower, both transposes; the strict upper triangle must stay as it was (7) */
    for (int t = 0; t < 2; t++) {
        std::vector<float> A = rnd<float>((size_t)lda * (t ? n : k), 40 + t), C(ldc * n, 7.0f);
        float *dA = dev_from(A), *dC = dev_from(C), alpha = 0.75f, beta = 2.0f;
        NGT_CHECK(dA && dC, "device copies");
        CHECK_BLAS(cublasSsyrk(h, CUBLAS_FILL_MODE_LOWER, t ? CUBLAS_OP_T : CUBLAS_OP_N, n, k,
                               &alpha, dA, lda, &beta, dC, ldc),
                   CUBLAS_STATUS_SUCCESS);
        std::vector<float> got = host_from(dC, C.size());
        std::vector<float> want = gemm_ref(t, !t, n, n, k, 0.75, A, lda, A, lda, 2.0, C, ldc);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < n; i++) {
                size_t idx = (size_t)i + (size_t)ldc * j;
                if (i >= j)
                    NGT_CLOSE(got[idx], want[idx], 1e-5 + 1e-5 * fabs(want[idx]), "syrk lower");
                else
                    NGT_CHECK(got[idx] == 7.0f, "syrk wrote the upper triangle at (%d,%d)", i, j);
            }
        CHECK_BLAS(cublasSsyrk(h, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, n, k, &alpha, dA, n - 1,
                               &beta, dC, ldc),
                   CUBLAS_STATUS_INVALID_VALUE);
        cudaFree(dA);
        cudaFree(dC);
    }

    /* gemv, both transposes, y with a stride */
    for (int t = 0; t < 2; t++) {
        int lx = t ? m : n, ly = t ? n : m;
        std::vector<float> A = rnd<float>((size_t)lda * n, 50), x = rnd<float>(lx, 51),
                           y = rnd<float>(2 * ly, 52);
        float *dA = dev_from(A), *dx = dev_from(x), *dy = dev_from(y), alpha = -1.25f, beta = 0.5f;
        NGT_CHECK(dA && dx && dy, "device copies");
        CHECK_BLAS(cublasSgemv(h, t ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, &alpha, dA, lda, dx, 1,
                               &beta, dy, 2),
                   CUBLAS_STATUS_SUCCESS);
        std::vector<float> got = host_from(dy, y.size());
        for (int i = 0; i < ly; i++) {
            double sum = 0.0;
            for (int l = 0; l < lx; l++)
                sum += (t ? A[(size_t)l + (size_t)lda * i] : A[(size_t)i + (size_t)lda * l]) *
                       (double)x[l];
            double want = -1.25 * sum + 0.5 * y[2 * (size_t)i];
            NGT_CLOSE(got[2 * (size_t)i], want, 1e-5 + 1e-5 * fabs(want), "gemv");
            NGT_CHECK(got[2 * (size_t)i + 1] == y[2 * (size_t)i + 1],
                      "gemv touched a skipped element");
        }
        CHECK_BLAS(cublasSgemv(h, CUBLAS_OP_N, m, n, &alpha, dA, m - 1, dx, 1, &beta, dy, 1),
                   CUBLAS_STATUS_INVALID_VALUE);
        CHECK_BLAS(cublasSgemv(h, CUBLAS_OP_N, m, n, &alpha, dA, lda, dx, 0, &beta, dy, 1),
                   CUBLAS_STATUS_INVALID_VALUE);
        cudaFree(dA);
        cudaFree(dx);
        cudaFree(dy);
    }

    /* level 1, host and device pointer modes */
    const int len = 1001;
    std::vector<float> x = rnd<float>(len, 60), y = rnd<float>(len, 61);
    float *dx = dev_from(x), *dy = dev_from(y), *dz = NULL, *dres = NULL;
    NGT_CHECK(dx && dy, "device copies");
    CHECK_CUDA(cudaMalloc((void **)&dz, len * sizeof(float)));
    CHECK_CUDA(cudaMalloc((void **)&dres, 2 * sizeof(float)));
    double dot = 0.0, nrm = 0.0;
    for (int i = 0; i < len; i++) {
        dot += (double)x[i] * y[i];
        nrm += (double)x[i] * x[i];
    }
    nrm = sqrt(nrm);
    float r = 0.0f, a = 3.0f;
    CHECK_BLAS(cublasSdot(h, len, dx, 1, dy, 1, &r), CUBLAS_STATUS_SUCCESS);
    NGT_CLOSE(r, dot, 1e-4, "sdot of 1001 terms in [-1,1] (float rounding)");
    CHECK_BLAS(cublasSnrm2(h, len, dx, 1, &r), CUBLAS_STATUS_SUCCESS);
    NGT_CLOSE(r, nrm, 1e-4, "snrm2");
    CHECK_BLAS(cublasSdot(h, len, dx, 1, dy, 1, dres), CUBLAS_STATUS_INVALID_VALUE); /* host mode */
    CHECK_BLAS(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_DEVICE), CUBLAS_STATUS_SUCCESS);
    CHECK_BLAS(cublasSdot(h, len, dx, 1, dy, 1, dres), CUBLAS_STATUS_SUCCESS);
    CHECK_BLAS(cublasSnrm2(h, len, dx, 1, dres + 1), CUBLAS_STATUS_SUCCESS);
    CHECK_BLAS(cublasSdot(h, len, dx, 1, dy, 1, &r), CUBLAS_STATUS_INVALID_VALUE); /* device mode */
    std::vector<float> res = host_from(dres, 2);
    NGT_CLOSE(res[0], dot, 1e-4, "sdot, device pointer mode");
    NGT_CLOSE(res[1], nrm, 1e-4, "snrm2, device pointer mode");
    CHECK_BLAS(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST), CUBLAS_STATUS_SUCCESS);
    CHECK_BLAS(cublasScopy(h, len, dx, 1, dz, 1), CUBLAS_STATUS_SUCCESS);
    CHECK_BLAS(cublasSaxpy(h, len, &a, dy, 1, dz, 1), CUBLAS_STATUS_SUCCESS);
    a = -0.5f;
    CHECK_BLAS(cublasSscal(h, len, &a, dz, 1), CUBLAS_STATUS_SUCCESS);
    std::vector<float> z = host_from(dz, len);
    for (int i = 0; i < len; i++)
        NGT_CLOSE(z[i], -0.5 * (x[i] + 3.0 * y[i]), 1e-6, "copy + axpy + scal");
    CHECK_BLAS(cublasSaxpy(h, len + 1, &a, dy, 1, dz, 1), CUBLAS_STATUS_INVALID_VALUE);

    /* strided batched gemm: 3 products of (m,k) x (k,n) */
    {
        const int bm = 7, bn = 5, bk = 4, batch = 3;
        const long long sA = bm * bk + 3, sB = bk * bn + 1, sC = bm * bn;
        std::vector<float> A = rnd<float>((size_t)sA * batch, 70),
                           B = rnd<float>((size_t)sB * batch, 71),
                           C = rnd<float>((size_t)sC * batch, 72);
        float *dA = dev_from(A), *dB = dev_from(B), *dC = dev_from(C), al = 1.0f, be = 1.0f;
        NGT_CHECK(dA && dB && dC, "device copies");
        CHECK_BLAS(cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, bm, bn, bk, &al, dA, bm,
                                             sA, dB, bk, sB, &be, dC, bm, sC, batch),
                   CUBLAS_STATUS_SUCCESS);
        std::vector<float> got = host_from(dC, C.size());
        for (int b = 0; b < batch; b++) {
            std::vector<float> Ab(A.begin() + b * sA, A.begin() + b * sA + bm * bk);
            std::vector<float> Bb(B.begin() + b * sB, B.begin() + b * sB + bk * bn);
            std::vector<float> Cb(C.begin() + b * sC, C.begin() + (b + 1) * sC);
            std::vector<float> want = gemm_ref(0, 0, bm, bn, bk, 1.0, Ab, bm, Bb, bk, 1.0, Cb, bm);
            NGT_CHECK(ngt_compare("batched", got.data() + b * sC, want.data(), (size_t)sC, 1e-5,
                                  1e-5) == 0,
                      "batch %d", b);
        }
        cudaFree(dA);
        cudaFree(dB);
        cudaFree(dC);
    }

    /* dgemm */
    {
        const int dm = 9, dn = 8, dk = 7;
        std::vector<double> A = rnd<double>(dm * dk, 80), B = rnd<double>(dk * dn, 81),
                            C = rnd<double>(dm * dn, 82);
        double *dA = dev_from(A), *dB = dev_from(B), *dC = dev_from(C), al = 2.0, be = -1.0;
        NGT_CHECK(dA && dB && dC, "device copies");
        CHECK_BLAS(
            cublasDgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, dm, dn, dk, &al, dA, dk, dB, dk, &be, dC, dm),
            CUBLAS_STATUS_SUCCESS);
        std::vector<double> got = host_from(dC, C.size());
        std::vector<double> want = gemm_ref(1, 0, dm, dn, dk, 2.0, A, dk, B, dk, -1.0, C, dm);
        for (size_t i = 0; i < got.size(); i++) NGT_CLOSE(got[i], want[i], 1e-12, "dgemm");
        cudaFree(dA);
        cudaFree(dB);
        cudaFree(dC);
    }
    cudaFree(dx);
    cudaFree(dy);
    cudaFree(dz);
    cudaFree(dres);
    CHECK_BLAS(cublasDestroy(h), CUBLAS_STATUS_SUCCESS);
    CHECK_CUDA(cudaStreamDestroy(s));
    return NGT_PASS;
}

/* ---- trsm --------------------------------------------------------------------------------- */

/* Solve the dense triangular system T x = c in place (T (k, k) row i, column j at T[i + k j],
 * lower or upper), by substitution in double. */
static void tri_solve(const std::vector<double> &T, int k, bool lower, double *c, int stride) {
    if (lower) {
        for (int i = 0; i < k; i++) {
            double s = c[(size_t)i * stride];
            for (int j = 0; j < i; j++) s -= T[(size_t)i + (size_t)k * j] * c[(size_t)j * stride];
            c[(size_t)i * stride] = s / T[(size_t)i + (size_t)k * i];
        }
    } else {
        for (int i = k - 1; i >= 0; i--) {
            double s = c[(size_t)i * stride];
            for (int j = i + 1; j < k; j++)
                s -= T[(size_t)i + (size_t)k * j] * c[(size_t)j * stride];
            c[(size_t)i * stride] = s / T[(size_t)i + (size_t)k * i];
        }
    }
}

/* X with op(A) X = alpha B (left) or X op(A) = alpha B (right), naive, in double; A (lda, k) holds
 * its triangle `up`, unit diagonal when `unit` (the rest is not read). Returns X in B's layout. */
template <class T>
static std::vector<double> trsm_ref(bool left, bool up, bool trans, bool unit, int m, int n,
                                    double alpha, const std::vector<T> &A, int lda,
                                    const std::vector<T> &B, int ldb) {
    const int k = left ? m : n;
    std::vector<double> Op((size_t)k * k, 0.0), X((size_t)ldb * n, 0.0);
    for (int j = 0; j < k; j++)
        for (int i = 0; i < k; i++) {
            bool in = up ? i <= j : i >= j;
            double v = i == j ? (unit ? 1.0 : (double)A[(size_t)i + (size_t)lda * j])
                              : (in ? (double)A[(size_t)i + (size_t)lda * j] : 0.0);
            if (trans)
                Op[(size_t)j + (size_t)k * i] = v;
            else
                Op[(size_t)i + (size_t)k * j] = v;
        }
    const bool op_lower = up == trans; /* op(A) is lower for (lower, N) and (upper, T) */
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++)
            X[(size_t)i + (size_t)ldb * j] = alpha * (double)B[(size_t)i + (size_t)ldb * j];
    if (left) {
        for (int j = 0; j < n; j++) tri_solve(Op, k, op_lower, &X[(size_t)ldb * j], 1);
    } else {
        /* X op(A) = C  <=>  op(A)^T X^T = C^T: solve each row of X with the transpose */
        std::vector<double> OpT((size_t)k * k);
        for (int j = 0; j < k; j++)
            for (int i = 0; i < k; i++)
                OpT[(size_t)i + (size_t)k * j] = Op[(size_t)j + (size_t)k * i];
        for (int i = 0; i < m; i++) tri_solve(OpT, k, !op_lower, &X[(size_t)i], ldb);
    }
    return X;
}

/* All 24 side/uplo/trans/diag combinations of trsm in precision T, then argument errors.
 * tol: relative error allowed (substitution of at most 13 terms, well-conditioned factors). */
template <class T>
static int trsm_checks(cublasHandle_t h, double tol, const char *fn,
                       cublasStatus_t (*trsm)(cublasHandle_t, cublasSideMode_t, cublasFillMode_t,
                                              cublasOperation_t, cublasDiagType_t, int, int,
                                              const T *, const T *, int, T *, int)) {
    const int m = 13, n = 7, ldb = m + 4;
    const cublasOperation_t ops[3] = {CUBLAS_OP_N, CUBLAS_OP_T, CUBLAS_OP_C};
    std::vector<T> B = rnd<T>((size_t)ldb * n, 101);
    for (int sd = 0; sd < 2; sd++)
        for (int up = 0; up < 2; up++)
            for (int op = 0; op < 3; op++)
                for (int unit = 0; unit < 2; unit++) {
                    const bool left = sd == 0;
                    const int k = left ? m : n, lda = k + 3;
                    /* the triangle in use: diagonal 2..3, off-diagonal in [-0.3, 0.3]; the
                     * other triangle, the padding and (unit) the diagonal hold NaN */
                    std::vector<T> A = rnd<T>((size_t)lda * k, 102 + 8 * sd + 4 * up + unit);
                    for (int j = 0; j < k; j++)
                        for (int i = 0; i < lda; i++) {
                            T &a = A[(size_t)i + (size_t)lda * j];
                            bool in = i < k && (up ? i < j : i > j);
                            if (i == j)
                                a = unit ? (T)NAN : (T)(2.5 + 0.5 * (double)a);
                            else
                                a = in ? (T)(0.3 * (double)a) : (T)NAN;
                        }
                    T *dA = dev_from(A), *dB = dev_from(B), alpha = (T)1.5;
                    NGT_CHECK(dA && dB, "device copies");
                    CHECK_BLAS(trsm(h, left ? CUBLAS_SIDE_LEFT : CUBLAS_SIDE_RIGHT,
                                    up ? CUBLAS_FILL_MODE_UPPER : CUBLAS_FILL_MODE_LOWER, ops[op],
                                    unit ? CUBLAS_DIAG_UNIT : CUBLAS_DIAG_NON_UNIT, m, n, &alpha,
                                    dA, lda, dB, ldb),
                               CUBLAS_STATUS_SUCCESS);
                    std::vector<T> got = host_from(dB, B.size());
                    std::vector<double> want =
                        trsm_ref(left, up != 0, op != 0, unit != 0, m, n, 1.5, A, lda, B, ldb);
                    NGT_CHECK(!got.empty(), "copy out");
                    for (int j = 0; j < n; j++)
                        for (int i = 0; i < ldb; i++) {
                            size_t idx = (size_t)i + (size_t)ldb * j;
                            if (i >= m) {
                                NGT_CHECK(got[idx] == B[idx],
                                          "%s wrote padding row %d (side %d uplo %d op %d unit %d)",
                                          fn, i, sd, up, op, unit);
                                continue;
                            }
                            if (!(fabs((double)got[idx] - want[idx]) <=
                                  tol * (1.0 + fabs(want[idx])))) {
                                printf("  %s side %s uplo %s op %d diag %s: X(%d,%d) = %.9g, "
                                       "want %.9g\n",
                                       fn, left ? "L" : "R", up ? "U" : "L", op,
                                       unit ? "U" : "N", i, j, (double)got[idx], want[idx]);
                                return NGT_FAIL;
                            }
                        }
                    cudaFree(dA);
                    cudaFree(dB);
                }

    /* alpha in device memory; alpha = 0 clears B (NaN there) without reading A */
    {
        std::vector<T> A((size_t)m * m, (T)NAN), al = {(T)0};
        for (int i = 0; i < m; i++) A[(size_t)i + (size_t)m * i] = (T)2;
        T *dA = dev_from(A), *dal = dev_from(al), *dB = NULL;
        NGT_CHECK(dA && dal, "device copies");
        CHECK_CUDA(cudaMalloc((void **)&dB, (size_t)ldb * n * sizeof(T)));
        CHECK_BLAS(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_DEVICE), CUBLAS_STATUS_SUCCESS);
        CHECK_BLAS(trsm(h, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N,
                        CUBLAS_DIAG_NON_UNIT, m, n, dal, dA, m, dB, ldb),
                   CUBLAS_STATUS_SUCCESS);
        T one = (T)1;
        CHECK_BLAS(trsm(h, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N,
                        CUBLAS_DIAG_NON_UNIT, m, n, &one, dA, m, dB, ldb),
                   CUBLAS_STATUS_INVALID_VALUE); /* host alpha in device pointer mode */
        CHECK_BLAS(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST), CUBLAS_STATUS_SUCCESS);
        std::vector<T> got = host_from(dB, (size_t)ldb * n);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++)
                NGT_CHECK(got[(size_t)i + (size_t)ldb * j] == (T)0, "%s alpha = 0: X(%d,%d) = %g",
                          fn, i, j, (double)got[(size_t)i + (size_t)ldb * j]);
        /* B = diag(2) \ (4 ones) = 2 with alpha from device memory */
        al[0] = (T)4;
        CHECK_CUDA(cudaMemcpy(dal, al.data(), sizeof(T), cudaMemcpyHostToDevice));
        std::vector<T> ones((size_t)ldb * n, (T)1);
        CHECK_CUDA(cudaMemcpy(dB, ones.data(), ones.size() * sizeof(T), cudaMemcpyHostToDevice));
        std::vector<T> D((size_t)m * m, (T)0);
        for (int i = 0; i < m; i++) D[(size_t)i + (size_t)m * i] = (T)2;
        CHECK_CUDA(cudaMemcpy(dA, D.data(), D.size() * sizeof(T), cudaMemcpyHostToDevice));
        CHECK_BLAS(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_DEVICE), CUBLAS_STATUS_SUCCESS);
        CHECK_BLAS(trsm(h, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_T,
                        CUBLAS_DIAG_NON_UNIT, m, n, dal, dA, m, dB, ldb),
                   CUBLAS_STATUS_SUCCESS);
        CHECK_BLAS(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST), CUBLAS_STATUS_SUCCESS);
        got = host_from(dB, (size_t)ldb * n);
        NGT_CHECK(got[0] == (T)2 && got[(size_t)m - 1 + (size_t)ldb * (n - 1)] == (T)2,
                  "%s with device alpha: %g", fn, (double)got[0]);
        cudaFree(dA);
        cudaFree(dal);
        cudaFree(dB);
    }

    /* argument errors, as cuBLAS documents them; B must stay as it was */
    {
        const int k = m, lda = m;
        std::vector<T> A = rnd<T>((size_t)lda * m, 110);
        T host_B[64], alpha = (T)1;
        T *dA = dev_from(A), *dB = dev_from(B);
        NGT_CHECK(dA && dB, "device copies");
        const cublasSideMode_t L = CUBLAS_SIDE_LEFT, R = CUBLAS_SIDE_RIGHT;
        const cublasFillMode_t lo = CUBLAS_FILL_MODE_LOWER;
        const cublasOperation_t N = CUBLAS_OP_N;
        const cublasDiagType_t nu = CUBLAS_DIAG_NON_UNIT;
        const cublasStatus_t INV = CUBLAS_STATUS_INVALID_VALUE, OK = CUBLAS_STATUS_SUCCESS;
        CHECK_BLAS(trsm(h, (cublasSideMode_t)2, lo, N, nu, m, n, &alpha, dA, lda, dB, ldb), INV);
        CHECK_BLAS(trsm(h, L, CUBLAS_FILL_MODE_FULL, N, nu, m, n, &alpha, dA, lda, dB, ldb), INV);
        CHECK_BLAS(trsm(h, L, lo, (cublasOperation_t)9, nu, m, n, &alpha, dA, lda, dB, ldb), INV);
        CHECK_BLAS(trsm(h, L, lo, N, (cublasDiagType_t)2, m, n, &alpha, dA, lda, dB, ldb), INV);
        CHECK_BLAS(trsm(h, L, lo, N, nu, -1, n, &alpha, dA, lda, dB, ldb), INV);
        CHECK_BLAS(trsm(h, L, lo, N, nu, m, -1, &alpha, dA, lda, dB, ldb), INV);
        CHECK_BLAS(trsm(h, L, lo, N, nu, m, n, &alpha, dA, k - 1, dB, ldb), INV); /* lda < m */
        CHECK_BLAS(trsm(h, R, lo, N, nu, m, n, &alpha, dA, n - 1, dB, ldb), INV); /* lda < n */
        CHECK_BLAS(trsm(h, L, lo, N, nu, m, n, &alpha, dA, lda, dB, m - 1), INV); /* ldb < m */
        CHECK_BLAS(trsm(h, L, lo, N, nu, 0, n, &alpha, dA, 0, dB, ldb), INV); /* lda >= 1 */
        CHECK_BLAS(trsm(h, L, lo, N, nu, m, n, NULL, dA, lda, dB, ldb), INV);
        CHECK_BLAS(trsm(h, L, lo, N, nu, 4, 4, &alpha, dA, lda, host_B, 8), INV); /* host B */
        CHECK_BLAS(trsm(h, L, lo, N, nu, m, n + 30, &alpha, dA, lda, dB, ldb), INV); /* overrun */
        CHECK_BLAS(trsm(NULL, L, lo, N, nu, m, n, &alpha, dA, lda, dB, ldb),
                   CUBLAS_STATUS_NOT_INITIALIZED);
        std::vector<T> after = host_from(dB, B.size());
        for (size_t i = 0; i < B.size(); i++)
            NGT_CHECK(after[i] == B[i], "%s: a rejected call wrote B[%zu]", fn, i);
        /* quick returns: m = 0 or n = 0 with valid leading dimensions; right side needs lda >= n
         * only (here n < m) */
        CHECK_BLAS(trsm(h, L, lo, N, nu, 0, n, &alpha, dA, 1, dB, 1), OK);
        CHECK_BLAS(trsm(h, R, lo, N, nu, m, 0, &alpha, dA, 1, dB, ldb), OK);
        CHECK_BLAS(trsm(h, R, lo, N, nu, m, n, &alpha, dA, n, dB, ldb), OK);
        cudaFree(dA);
        cudaFree(dB);
    }
    return NGT_PASS;
}

static int test_trsm_all_combinations(void) {
    cublasHandle_t h;
    int r;
    CHECK_BLAS(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
    r = trsm_checks<float>(h, 2e-5, "cublasStrsm", cublasStrsm);
    if (r == NGT_PASS) r = trsm_checks<double>(h, 1e-12, "cublasDtrsm", cublasDtrsm);
    CHECK_BLAS(cublasDestroy(h), CUBLAS_STATUS_SUCCESS);
    return r;
}

/* cublasD{gemv,dot,nrm2,axpy,scal,copy} against naive double loops (tolerance 1e-12). */
static int test_blas_double_level1_level2(void) {
    cublasHandle_t h;
    const int m = 29, n = 17, lda = 31;
    CHECK_BLAS(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
    for (int t = 0; t < 2; t++) {
        int lx = t ? m : n, ly = t ? n : m;
        std::vector<double> A = rnd<double>((size_t)lda * n, 120), x = rnd<double>(lx, 121),
                            y = rnd<double>(3 * ly, 122);
        double *dA = dev_from(A), *dx = dev_from(x), *dy = dev_from(y), alpha = 0.75, beta = -2.0;
        NGT_CHECK(dA && dx && dy, "device copies");
        CHECK_BLAS(cublasDgemv(h, t ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, &alpha, dA, lda, dx, 1,
                               &beta, dy, 3),
                   CUBLAS_STATUS_SUCCESS);
        std::vector<double> got = host_from(dy, y.size());
        for (int i = 0; i < ly; i++) {
            double sum = 0.0;
            for (int l = 0; l < lx; l++)
                sum += (t ? A[(size_t)l + (size_t)lda * i] : A[(size_t)i + (size_t)lda * l]) * x[l];
            NGT_CLOSE(got[3 * (size_t)i], 0.75 * sum - 2.0 * y[3 * (size_t)i], 1e-12, "dgemv");
            NGT_CHECK(got[3 * (size_t)i + 1] == y[3 * (size_t)i + 1], "dgemv skipped element");
        }
        CHECK_BLAS(cublasDgemv(h, CUBLAS_OP_N, m, n, &alpha, dA, m - 1, dx, 1, &beta, dy, 1),
                   CUBLAS_STATUS_INVALID_VALUE);
        cudaFree(dA);
        cudaFree(dx);
        cudaFree(dy);
    }
    const int len = 777;
    std::vector<double> x = rnd<double>(len, 130), y = rnd<double>(len, 131);
    double *dx = dev_from(x), *dy = dev_from(y), *dz = NULL, *dres = NULL;
    NGT_CHECK(dx && dy, "device copies");
    CHECK_CUDA(cudaMalloc((void **)&dz, len * sizeof(double)));
    CHECK_CUDA(cudaMalloc((void **)&dres, 2 * sizeof(double)));
    double dot = 0.0, nrm = 0.0, r = 0.0, a = 3.0;
    for (int i = 0; i < len; i++) {
        dot += x[i] * y[i];
        nrm += x[i] * x[i];
    }
    nrm = sqrt(nrm);
    CHECK_BLAS(cublasDdot(h, len, dx, 1, dy, 1, &r), CUBLAS_STATUS_SUCCESS);
    NGT_CLOSE(r, dot, 1e-12, "ddot");
    CHECK_BLAS(cublasDnrm2(h, len, dx, 1, &r), CUBLAS_STATUS_SUCCESS);
    NGT_CLOSE(r, nrm, 1e-12, "dnrm2");
    CHECK_BLAS(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_DEVICE), CUBLAS_STATUS_SUCCESS);
    CHECK_BLAS(cublasDdot(h, len, dx, 1, dy, 1, dres), CUBLAS_STATUS_SUCCESS);
    CHECK_BLAS(cublasDnrm2(h, len, dx, 1, dres + 1), CUBLAS_STATUS_SUCCESS);
    CHECK_BLAS(cublasDdot(h, len, dx, 1, dy, 1, &r), CUBLAS_STATUS_INVALID_VALUE);
    CHECK_BLAS(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST), CUBLAS_STATUS_SUCCESS);
    std::vector<double> res = host_from(dres, 2);
    NGT_CLOSE(res[0], dot, 1e-12, "ddot, device pointer mode");
    NGT_CLOSE(res[1], nrm, 1e-12, "dnrm2, device pointer mode");
    CHECK_BLAS(cublasDcopy(h, len, dx, 1, dz, 1), CUBLAS_STATUS_SUCCESS);
    CHECK_BLAS(cublasDaxpy(h, len, &a, dy, 1, dz, 1), CUBLAS_STATUS_SUCCESS);
    a = -0.5;
    CHECK_BLAS(cublasDscal(h, len, &a, dz, 1), CUBLAS_STATUS_SUCCESS);
    std::vector<double> z = host_from(dz, len);
    for (int i = 0; i < len; i++)
        NGT_CLOSE(z[i], -0.5 * (x[i] + 3.0 * y[i]), 1e-14, "dcopy + daxpy + dscal");
    CHECK_BLAS(cublasDaxpy(h, len + 1, &a, dy, 1, dz, 1), CUBLAS_STATUS_INVALID_VALUE);
    CHECK_BLAS(cublasDcopy(h, len, dx, 1, (double *)x.data(), 1), CUBLAS_STATUS_INVALID_VALUE);
    CHECK_BLAS(cublasDscal(NULL, len, &a, dz, 1), CUBLAS_STATUS_NOT_INITIALIZED);
    cudaFree(dx);
    cudaFree(dy);
    cudaFree(dz);
    cudaFree(dres);
    CHECK_BLAS(cublasDestroy(h), CUBLAS_STATUS_SUCCESS);
    return NGT_PASS;
}

/* SPD test matrix B B^T + n I, (n, n) in an (lda, n) buffer whose padding rows hold 99. */
template <class T> static std::vector<T> spd(int n, int lda, unsigned seed) {
    std::vector<T> B = rnd<T>((size_t)n * n, seed), A((size_t)lda * n, (T)99);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < n; i++) {
            double s = i == j ? n : 0.0;
            for (int l = 0; l < n; l++) s += (double)B[i + (size_t)n * l] * B[j + (size_t)n * l];
            A[(size_t)i + (size_t)lda * j] = (T)s;
        }
    return A;
}

/* potrf / potri / potrs / syevd in precision T, checked by reconstruction; tol ~ n eps ||A||. */
template <class T>
static int solver_checks(
    cusolverDnHandle_t h, double tol, const char *prec,
    cusolverStatus_t (*potrf_bs)(cusolverDnHandle_t, cublasFillMode_t, int, T *, int, int *),
    cusolverStatus_t (*potrf)(cusolverDnHandle_t, cublasFillMode_t, int, T *, int, T *, int, int *),
    cusolverStatus_t (*potri_bs)(cusolverDnHandle_t, cublasFillMode_t, int, T *, int, int *),
    cusolverStatus_t (*potri)(cusolverDnHandle_t, cublasFillMode_t, int, T *, int, T *, int, int *),
    cusolverStatus_t (*potrs)(cusolverDnHandle_t, cublasFillMode_t, int, int, const T *, int, T *,
                              int, int *),
    cusolverStatus_t (*syevd_bs)(cusolverDnHandle_t, cusolverEigMode_t, cublasFillMode_t, int,
                                 const T *, int, const T *, int *),
    cusolverStatus_t (*syevd)(cusolverDnHandle_t, cusolverEigMode_t, cublasFillMode_t, int, T *,
                              int, T *, T *, int, int *)) {
    const int n = 40, lda = 43;
    std::vector<T> A = spd<T>(n, lda, 90);
    double amax = 0.0;
    for (T v : A) amax = fmax(amax, fabs((double)v));
    int *dinfo = NULL, lwork = 0, info = -99;
    T *dA = dev_from(A), *work = NULL;
    NGT_CHECK(dA != NULL, "device copy");
    CHECK_CUDA(cudaMalloc((void **)&dinfo, sizeof(int)));
    for (int up = 0; up < 2; up++) {
        cublasFillMode_t uplo = up ? CUBLAS_FILL_MODE_UPPER : CUBLAS_FILL_MODE_LOWER;
        CHECK_CUDA(cudaMemcpy(dA, A.data(), A.size() * sizeof(T), cudaMemcpyHostToDevice));
        CHECK_SOLVER(potrf_bs(h, uplo, n, dA, lda, &lwork), CUSOLVER_STATUS_SUCCESS);
        CHECK_CUDA(cudaMalloc((void **)&work, (size_t)lwork * sizeof(T)));
        CHECK_SOLVER(potrf(h, uplo, n, dA, lda, work, lwork, dinfo), CUSOLVER_STATUS_SUCCESS);
        CHECK_CUDA(cudaMemcpy(&info, dinfo, sizeof(int), cudaMemcpyDeviceToHost));
        NGT_CHECK(info == 0, "%s potrf info %d", prec, info);
        std::vector<T> F = host_from(dA, A.size());
        /* factor L (lower) or U^T (upper): reconstruct A = L L^T in the factored triangle */
        for (int j = 0; j < n; j++)
            for (int i = j; i < n; i++) {
                double s = 0.0;
                for (int l = 0; l <= j; l++) {
                    double li =
                        up ? F[(size_t)l + (size_t)lda * i] : F[(size_t)i + (size_t)lda * l];
                    double lj =
                        up ? F[(size_t)l + (size_t)lda * j] : F[(size_t)j + (size_t)lda * l];
                    s += li * lj;
                }
                NGT_CLOSE(s, A[(size_t)i + (size_t)lda * j], tol * amax, "potrf reconstruction");
            }
        for (int j = 0; j < n; j++)
            NGT_CHECK(F[(size_t)n + (size_t)lda * j] == (T)99, "padding row written");
        cudaFree(work);
        /* inverse from the factor */
        CHECK_SOLVER(potri_bs(h, uplo, n, dA, lda, &lwork), CUSOLVER_STATUS_SUCCESS);
        CHECK_CUDA(cudaMalloc((void **)&work, (size_t)lwork * sizeof(T)));
        CHECK_SOLVER(potri(h, uplo, n, dA, lda, work, lwork, dinfo), CUSOLVER_STATUS_SUCCESS);
        CHECK_CUDA(cudaMemcpy(&info, dinfo, sizeof(int), cudaMemcpyDeviceToHost));
        NGT_CHECK(info == 0, "%s potri info %d", prec, info);
        std::vector<T> Inv = host_from(dA, A.size());
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                double s = 0.0;
                for (int l = 0; l < n; l++) {
                    int r = up ? (l < j ? l : j) : (l > j ? l : j),
                        c = up ? (l < j ? j : l) : (l > j ? j : l);
                    s += (double)A[(size_t)i + (size_t)lda * l] * Inv[(size_t)r + (size_t)lda * c];
                }
                NGT_CLOSE(s, i == j ? 1.0 : 0.0, tol * n, "A * potri(A)");
            }
        cudaFree(work);
    }
    /* potrs: solve A X = B for 3 right-hand sides with the lower factor */
    {
        const int nrhs = 3, ldb = n + 1;
        std::vector<T> Bm = rnd<T>((size_t)ldb * nrhs, 91);
        T *dB = dev_from(Bm);
        NGT_CHECK(dB != NULL, "device copy");
        CHECK_CUDA(cudaMemcpy(dA, A.data(), A.size() * sizeof(T), cudaMemcpyHostToDevice));
        CHECK_SOLVER(potrf_bs(h, CUBLAS_FILL_MODE_LOWER, n, dA, lda, &lwork),
                     CUSOLVER_STATUS_SUCCESS);
        CHECK_CUDA(cudaMalloc((void **)&work, (size_t)lwork * sizeof(T)));
        CHECK_SOLVER(potrf(h, CUBLAS_FILL_MODE_LOWER, n, dA, lda, work, lwork, dinfo),
                     CUSOLVER_STATUS_SUCCESS);
        CHECK_SOLVER(potrs(h, CUBLAS_FILL_MODE_LOWER, n, nrhs, dA, lda, dB, ldb, dinfo),
                     CUSOLVER_STATUS_SUCCESS);
        std::vector<T> X = host_from(dB, Bm.size());
        for (int c = 0; c < nrhs; c++)
            for (int i = 0; i < n; i++) {
                double s = 0.0;
                for (int l = 0; l < n; l++)
                    s += (double)A[(size_t)i + (size_t)lda * l] * X[(size_t)l + (size_t)ldb * c];
                NGT_CLOSE(s, Bm[(size_t)i + (size_t)ldb * c], tol * amax, "A * potrs(B)");
            }
        cudaFree(dB);
        cudaFree(work);
    }
    /* syevd: A V = V diag(w), V^T V = I, w ascending */
    {
        T *dW = NULL;
        CHECK_CUDA(cudaMemcpy(dA, A.data(), A.size() * sizeof(T), cudaMemcpyHostToDevice));
        CHECK_CUDA(cudaMalloc((void **)&dW, n * sizeof(T)));
        CHECK_SOLVER(
            syevd_bs(h, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, dA, lda, dW, &lwork),
            CUSOLVER_STATUS_SUCCESS);
        CHECK_CUDA(cudaMalloc((void **)&work, (size_t)lwork * sizeof(T)));
        CHECK_SOLVER(syevd(h, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, dA, lda, dW,
                           work, lwork, dinfo),
                     CUSOLVER_STATUS_SUCCESS);
        CHECK_CUDA(cudaMemcpy(&info, dinfo, sizeof(int), cudaMemcpyDeviceToHost));
        NGT_CHECK(info == 0, "%s syevd info %d", prec, info);
        std::vector<T> V = host_from(dA, A.size()), w = host_from(dW, n);
        for (int i = 1; i < n; i++)
            NGT_CHECK(w[i - 1] <= w[i], "eigenvalues not ascending at %d", i);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < n; i++) {
                double av = 0.0, vtv = 0.0;
                for (int l = 0; l < n; l++) {
                    av += (double)A[(size_t)i + (size_t)lda * l] * V[(size_t)l + (size_t)lda * j];
                    vtv += (double)V[(size_t)l + (size_t)lda * i] * V[(size_t)l + (size_t)lda * j];
                }
                NGT_CLOSE(av, (double)w[j] * V[(size_t)i + (size_t)lda * j], tol * amax,
                          "A V = V diag(w)");
                NGT_CLOSE(vtv, i == j ? 1.0 : 0.0, tol * n, "V^T V = I");
            }
        /* argument errors: bad lda, too small a workspace (devInfo = -8), host info pointer */
        CHECK_SOLVER(syevd(h, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, dA, n - 1, dW,
                           work, lwork, dinfo),
                     CUSOLVER_STATUS_INVALID_VALUE);
        CHECK_SOLVER(syevd(h, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, dA, lda, dW,
                           work, lwork - 1, dinfo),
                     CUSOLVER_STATUS_INVALID_VALUE);
        CHECK_CUDA(cudaMemcpy(&info, dinfo, sizeof(int), cudaMemcpyDeviceToHost));
        NGT_CHECK(info == -8, "devInfo after a short workspace: %d", info);
        CHECK_SOLVER(syevd(h, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, dA, lda, dW,
                           work, lwork, &info),
                     CUSOLVER_STATUS_INVALID_VALUE);
        CHECK_SOLVER(syevd(h, (cusolverEigMode_t)7, CUBLAS_FILL_MODE_LOWER, n, dA, lda, dW, work,
                           lwork, dinfo),
                     CUSOLVER_STATUS_INVALID_VALUE);
        cudaFree(dW);
        cudaFree(work);
    }
    /* not positive definite: leading minor 3 fails -> info 3 */
    {
        std::vector<T> N = A;
        N[2 + (size_t)lda * 2] = (T)-1000;
        CHECK_CUDA(cudaMemcpy(dA, N.data(), N.size() * sizeof(T), cudaMemcpyHostToDevice));
        CHECK_SOLVER(potrf_bs(h, CUBLAS_FILL_MODE_LOWER, n, dA, lda, &lwork),
                     CUSOLVER_STATUS_SUCCESS);
        CHECK_CUDA(cudaMalloc((void **)&work, (size_t)lwork * sizeof(T)));
        CHECK_SOLVER(potrf(h, CUBLAS_FILL_MODE_LOWER, n, dA, lda, work, lwork, dinfo),
                     CUSOLVER_STATUS_SUCCESS);
        CHECK_CUDA(cudaMemcpy(&info, dinfo, sizeof(int), cudaMemcpyDeviceToHost));
        NGT_CHECK(info == 3, "%s potrf of an indefinite matrix: info %d, want 3", prec, info);
        CHECK_SOLVER(potrf(h, CUBLAS_FILL_MODE_LOWER, n, dA, n - 1, work, lwork, dinfo),
                     CUSOLVER_STATUS_INVALID_VALUE);
        CHECK_SOLVER(potrf(h, CUBLAS_FILL_MODE_LOWER, -1, dA, lda, work, lwork, dinfo),
                     CUSOLVER_STATUS_INVALID_VALUE);
        CHECK_SOLVER(potrf(h, CUBLAS_FILL_MODE_FULL, n, dA, lda, work, lwork, dinfo),
                     CUSOLVER_STATUS_INVALID_VALUE);
        CHECK_SOLVER(potrf(h, CUBLAS_FILL_MODE_LOWER, n, dA, lda, work, lwork - 1, dinfo),
                     CUSOLVER_STATUS_INVALID_VALUE);
        CHECK_SOLVER(potrf(NULL, CUBLAS_FILL_MODE_LOWER, n, dA, lda, work, lwork, dinfo),
                     CUSOLVER_STATUS_NOT_INITIALIZED);
        cudaFree(work);
    }
    cudaFree(dA);
    cudaFree(dinfo);
    return NGT_PASS;
}

static int test_cusolver_float(void) {
    cusolverDnHandle_t h;
    CHECK_SOLVER(cusolverDnCreate(&h), CUSOLVER_STATUS_SUCCESS);
    CHECK_SOLVER(cusolverDnSetStream(h, 0), CUSOLVER_STATUS_SUCCESS);
    /* float: 40 x 40 with entries up to ~55, sums of 40 products: a few hundred eps */
    int r = solver_checks<float>(h, 2e-5, "float", cusolverDnSpotrf_bufferSize, cusolverDnSpotrf,
                                 cusolverDnSpotri_bufferSize, cusolverDnSpotri, cusolverDnSpotrs,
                                 cusolverDnSsyevd_bufferSize, cusolverDnSsyevd);
    CHECK_SOLVER(cusolverDnDestroy(h), CUSOLVER_STATUS_SUCCESS);
    return r;
}

static int test_cusolver_double(void) {
    cusolverDnHandle_t h;
    CHECK_SOLVER(cusolverDnCreate(&h), CUSOLVER_STATUS_SUCCESS);
    int r = solver_checks<double>(h, 1e-12, "double", cusolverDnDpotrf_bufferSize, cusolverDnDpotrf,
                                  cusolverDnDpotri_bufferSize, cusolverDnDpotri, cusolverDnDpotrs,
                                  cusolverDnDsyevd_bufferSize, cusolverDnDsyevd);
    CHECK_SOLVER(cusolverDnDestroy(h), CUSOLVER_STATUS_SUCCESS);
    CHECK_SOLVER(cusolverDnDestroy(h), CUSOLVER_STATUS_NOT_INITIALIZED);
    return r;
}

/* cusolverDnXsyevBatched (64-bit API, float): three 5 x 5 matrices packed with lda 6, each against
 * its own cusolverDnSsyevd (the same LAPACK underneath: bit for bit), info per matrix, the padding
 * row untouched; the argument checks: params, n, lda, batchSize, jobz, data types, workspaces,
 * destroyed params. */
static int test_cusolver_syev_batched(void) {
    const int n = 5, lda = 6, batch = 3;
    cusolverDnHandle_t h;
    cusolverDnParams_t params;
    size_t dbytes = 0, hbytes = 0;
    int lwork = 0;
    std::vector<float> A((size_t)lda * n * batch), W((size_t)n * batch, NAN);
    for (int k = 0; k < batch; k++)
        for (int j = 0; j < n; j++)
            for (int i = 0; i < lda; i++) {
                float v = i >= n ? -7.0f : (float)(((i + 1) * (j + 1) * (k + 3)) % 11) + (i == j ? 4.0f * k : 0.0f);
                A[(size_t)k * lda * n + i + (size_t)lda * j] = i < n && i < j ? A[(size_t)k * lda * n + j + (size_t)lda * i] : v;
            }
    CHECK_SOLVER(cusolverDnCreate(&h), CUSOLVER_STATUS_SUCCESS);
    CHECK_SOLVER(cusolverDnCreateParams(&params), CUSOLVER_STATUS_SUCCESS);
    float *dA = dev_from(A), *dW = dev_from(W);
    int *dinfo = NULL;
    void *dwork = NULL;
    CHECK_CUDA(cudaMalloc((void **)&dinfo, batch * sizeof(int)));
    CHECK_SOLVER(cusolverDnXsyevBatched_bufferSize(h, params, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_32F, dA,
                                                   lda, CUDA_R_32F, dW, CUDA_R_32F, &dbytes, &hbytes, batch),
                 CUSOLVER_STATUS_SUCCESS);
    CHECK_CUDA(cudaMalloc(&dwork, dbytes));
    std::vector<char> hwork(hbytes + 1);
    CHECK_SOLVER(cusolverDnXsyevBatched(h, params, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_32F, dA, lda,
                                        CUDA_R_32F, dW, CUDA_R_32F, dwork, dbytes, hwork.data(), hbytes, dinfo, batch),
                 CUSOLVER_STATUS_SUCCESS);
    std::vector<float> V = host_from(dA, A.size()), w = host_from(dW, W.size());
    std::vector<int> info = host_from(dinfo, batch);
    for (int k = 0; k < batch; k++) {
        /* matrix k alone through syevd */
        std::vector<float> Ak(A.begin() + (size_t)k * lda * n, A.begin() + (size_t)(k + 1) * lda * n);
        float *dAk = dev_from(Ak), *dWk = NULL, *wk = NULL;
        int *dik = NULL, ik = -1;
        CHECK_CUDA(cudaMalloc((void **)&dWk, n * sizeof(float)));
        CHECK_CUDA(cudaMalloc((void **)&dik, sizeof(int)));
        CHECK_SOLVER(cusolverDnSsyevd_bufferSize(h, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, dAk, lda, dWk, &lwork),
                     CUSOLVER_STATUS_SUCCESS);
        CHECK_CUDA(cudaMalloc((void **)&wk, (size_t)lwork * sizeof(float)));
        CHECK_SOLVER(cusolverDnSsyevd(h, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, dAk, lda, dWk, wk, lwork, dik),
                     CUSOLVER_STATUS_SUCCESS);
        std::vector<float> Vk = host_from(dAk, Ak.size()), wkh = host_from(dWk, n);
        CHECK_CUDA(cudaMemcpy(&ik, dik, sizeof(int), cudaMemcpyDeviceToHost));
        NGT_CHECK(info[k] == 0 && ik == 0, "matrix %d: info %d (alone %d)", k, info[k], ik);
        NGT_CHECK(memcmp(Vk.data(), V.data() + (size_t)k * lda * n, Vk.size() * sizeof(float)) == 0, "matrix %d: eigenvectors differ from syevd", k);
        NGT_CHECK(memcmp(wkh.data(), w.data() + (size_t)k * n, n * sizeof(float)) == 0, "matrix %d: eigenvalues differ from syevd", k);
        for (int j = 0; j < n; j++) NGT_CHECK(V[(size_t)k * lda * n + n + (size_t)lda * j] == -7.0f, "matrix %d: padding row changed", k);
        cudaFree(dAk), cudaFree(dWk), cudaFree(dik), cudaFree(wk);
    }
    /* argument checks */
    CHECK_SOLVER(cusolverDnXsyevBatched(h, NULL, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_32F, dA, lda,
                                        CUDA_R_32F, dW, CUDA_R_32F, dwork, dbytes, hwork.data(), hbytes, dinfo, batch),
                 CUSOLVER_STATUS_INVALID_VALUE);
    CHECK_SOLVER(cusolverDnXsyevBatched(h, params, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_32F, dA, n - 1,
                                        CUDA_R_32F, dW, CUDA_R_32F, dwork, dbytes, hwork.data(), hbytes, dinfo, batch),
                 CUSOLVER_STATUS_INVALID_VALUE);
    CHECK_SOLVER(cusolverDnXsyevBatched(h, params, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, -1, CUDA_R_32F, dA, lda,
                                        CUDA_R_32F, dW, CUDA_R_32F, dwork, dbytes, hwork.data(), hbytes, dinfo, batch),
                 CUSOLVER_STATUS_INVALID_VALUE);
    CHECK_SOLVER(cusolverDnXsyevBatched(h, params, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_32F, dA, lda,
                                        CUDA_R_32F, dW, CUDA_R_32F, dwork, dbytes, hwork.data(), hbytes, dinfo, -1),
                 CUSOLVER_STATUS_INVALID_VALUE);
    CHECK_SOLVER(cusolverDnXsyevBatched(h, params, (cusolverEigMode_t)7, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_32F, dA, lda,
                                        CUDA_R_32F, dW, CUDA_R_32F, dwork, dbytes, hwork.data(), hbytes, dinfo, batch),
                 CUSOLVER_STATUS_INVALID_VALUE);
    CHECK_SOLVER(cusolverDnXsyevBatched(h, params, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_32F, dA, lda,
                                        CUDA_R_64F, dW, CUDA_R_32F, dwork, dbytes, hwork.data(), hbytes, dinfo, batch),
                 CUSOLVER_STATUS_NOT_SUPPORTED);
    CHECK_SOLVER(cusolverDnXsyevBatched(h, params, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_32F, dA, lda,
                                        CUDA_R_32F, dW, CUDA_R_32F, dwork, dbytes - 1, hwork.data(), hbytes, dinfo, batch),
                 CUSOLVER_STATUS_INVALID_VALUE);
    CHECK_SOLVER(cusolverDnXsyevBatched(h, params, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_32F, dA, lda,
                                        CUDA_R_32F, dW, CUDA_R_32F, dwork, dbytes, NULL, hbytes, dinfo, batch),
                 CUSOLVER_STATUS_INVALID_VALUE);
    /* a batch one larger than the buffers (info, workspace and A too short): refused */
    CHECK_SOLVER(cusolverDnXsyevBatched(h, params, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_32F, dA, lda,
                                        CUDA_R_32F, dW, CUDA_R_32F, dwork, dbytes, hwork.data(), hbytes, dinfo, batch + 1),
                 CUSOLVER_STATUS_INVALID_VALUE);
    CHECK_SOLVER(cusolverDnDestroyParams(params), CUSOLVER_STATUS_SUCCESS);
    CHECK_SOLVER(cusolverDnXsyevBatched(h, params, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_32F, dA, lda,
                                        CUDA_R_32F, dW, CUDA_R_32F, dwork, dbytes, hwork.data(), hbytes, dinfo, batch),
                 CUSOLVER_STATUS_INVALID_VALUE);
    CHECK_SOLVER(cusolverDnDestroyParams(params), CUSOLVER_STATUS_INVALID_VALUE);
    cudaFree(dA), cudaFree(dW), cudaFree(dinfo), cudaFree(dwork);
    CHECK_SOLVER(cusolverDnDestroy(h), CUSOLVER_STATUS_SUCCESS);
    return NGT_PASS;
}

static int test_curand_host_generator(void) {
    curandGenerator_t g;
    const size_t n = 1003;
    float *d = NULL;
    NGT_CHECK(curandCreateGenerator(&g, CURAND_RNG_PSEUDO_DEFAULT) == CURAND_STATUS_TYPE_ERROR,
              "only Philox is emulated");
    NGT_CHECK(curandCreateGenerator(&g, CURAND_RNG_PSEUDO_PHILOX4_32_10) == CURAND_STATUS_SUCCESS,
              "create");
    NGT_CHECK(curandSetPseudoRandomGeneratorSeed(g, 1234) == CURAND_STATUS_SUCCESS, "seed");
    NGT_CHECK(curandSetStream(g, 0) == CURAND_STATUS_SUCCESS, "stream");
    CHECK_CUDA(cudaMalloc((void **)&d, 2 * n * sizeof(float)));
    NGT_CHECK(curandGenerateUniform(g, d, n) == CURAND_STATUS_SUCCESS, "generate");
    NGT_CHECK(curandGenerateUniform(g, d + n, n) == CURAND_STATUS_SUCCESS, "generate again");
    NGT_CHECK(curandGenerateUniform(g, d + n, n + 1) == CURAND_STATUS_LAUNCH_FAILURE,
              "overrun accepted");
    std::vector<float> u = host_from(d, 2 * n);
    for (size_t i = 0; i < 2 * n; i++)
        NGT_CHECK(u[i] == ng_uniform_at(1234, 0, i), "uniform %zu: %.9g vs %.9g", i, u[i],
                  ng_uniform_at(1234, 0, i));
    NGT_CHECK(curandDestroyGenerator(g) == CURAND_STATUS_SUCCESS, "destroy");
    cudaFree(d);
    return NGT_PASS;
}

int main(void) {
    NGT_RUN(test_sgemm_all_transposes);
    NGT_RUN(test_sgemm_tf32_math_mode);
    NGT_RUN(test_gemm_rejects_bad_arguments);
    NGT_RUN(test_blas_other_ops);
    NGT_RUN(test_trsm_all_combinations);
    NGT_RUN(test_blas_double_level1_level2);
    NGT_RUN(test_cusolver_float);
    NGT_RUN(test_cusolver_double);
    NGT_RUN(test_cusolver_syev_batched);
    NGT_RUN(test_curand_host_generator);
    return ngt_finish();
}
