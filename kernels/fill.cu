/* fill.cu: flat elementwise kernels behind the backend slots fill, fill_uniform, binary_states,
 * to_double, to_float, axpby, axpby_segments (many segments in one launch) and axpby_dev, and the C = beta C path of gemm/syrk/gemv (scale_matrix). Vectors
 * are flat (n) arrays; binary_states and scale_matrix address column-major matrices through their
 * leading dimension. Every kernel is a grid-stride loop whose element index, and for fill_uniform
 * whose Philox word, depends only on the logical index, never on the launch shape. fill_uniform's
 * launch shape is the "uniform" entry of launch.cu's table; the others use FILL_BLOCK.
 * Must not: allocate, use atomics, or synchronize the host. */
#include "ng_cuda.cuh"
#include "ng_philox.cuh"

#include "ng_kernels.h"

#define FILL_BLOCK 256u

static __global__ void fill_kernel(uint64_t n, float value, float *out) {
    const uint64_t stride = (uint64_t)blockDim.x * (uint64_t)gridDim.x;
    uint64_t i;
    for (i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = value;
}

/* out[i] = uniform (0, 1] of (key, step, i); one Philox block serves indices 4g .. 4g+3. */
static __global__ void fill_uniform_kernel(uint64_t n, float *out, uint64_t key, uint64_t step) {
    ng_philox_groups(n, key, step, [&](uint64_t i0, float4 u, int count) {
        int k;
        for (k = 0; k < count; k++) out[i0 + k] = ng_u4(u, k);
    });
}

/* out[b + ldo * c] = bit b of (first + c), logical index i = b + nbits * c. */
static __global__ void binary_states_kernel(int nbits, uint64_t first, int count, float *out,
                                            int ldo) {
    const uint64_t n = (uint64_t)nbits * (uint64_t)count;
    const uint64_t stride = (uint64_t)blockDim.x * (uint64_t)gridDim.x;
    uint64_t i;
    for (i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const uint64_t c = i / (uint64_t)nbits;
        const int b = (int)(i - c * (uint64_t)nbits);
        out[(size_t)b + (size_t)ldo * (size_t)c] = ng_state_bit(first + c, b);
    }
}

static __global__ void to_double_kernel(uint64_t n, const float *x, double *y) {
    const uint64_t stride = (uint64_t)blockDim.x * (uint64_t)gridDim.x;
    uint64_t i;
    for (i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        y[i] = (double)x[i];
}

static __global__ void to_float_kernel(uint64_t n, const double *x, float *y) {
    const uint64_t stride = (uint64_t)blockDim.x * (uint64_t)gridDim.x;
    uint64_t i;
    for (i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        y[i] = (float)x[i];
}

/* y = alpha x + beta y; y is not read when beta = 0 (BLAS: a NaN there is ignored). x may alias
 * y. */
static __global__ void axpby_kernel(uint64_t n, float alpha, const float *x, float beta,
                                    float *y) {
    const uint64_t stride = (uint64_t)blockDim.x * (uint64_t)gridDim.x;
    uint64_t i;
    for (i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float yi = beta != 0.0f ? y[i] : 0.0f;
        y[i] = ng_axpby_elem(alpha, x[i], beta, yi);
    }
}

/* y = ca ra x + cb rb y with ra = a_num / a_den, rb = b_num / b_den read from device memory (NULL
 * = 1); cb = 0 ignores y. x may alias y. */
static __global__ void axpby_dev_kernel(uint64_t n, float ca, const float *a_num,
                                        const float *a_den, const float *x, float cb,
                                        const float *b_num, const float *b_den, float *y) {
    const uint64_t stride = (uint64_t)blockDim.x * (uint64_t)gridDim.x;
    const float ra = ng_ratio(a_num, a_den), rb = ng_ratio(b_num, b_den);
    uint64_t i;
    for (i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        y[i] = ng_axpby_dev_elem(ca, ra, x[i], cb, rb, cb != 0.0f ? y[i] : 0.0f);
}

/* C(m,n) = beta C over logical index i = r + m * c (beta = 0 writes 0 without reading C);
 * lower != 0 restricts it to the lower triangle r >= c. */
static __global__ void scale_matrix_kernel(int m, int n, float beta, float *C, int ldc,
                                           int lower) {
    const uint64_t total = (uint64_t)m * (uint64_t)n;
    const uint64_t stride = (uint64_t)blockDim.x * (uint64_t)gridDim.x;
    uint64_t i;
    for (i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const uint64_t c = i / (uint64_t)m;
        const uint64_t r = i - c * (uint64_t)m;
        const size_t at = (size_t)r + (size_t)ldc * (size_t)c;
        if (lower && r < c) continue;
        C[at] = ng_scale_elem(beta, beta != 0.0f ? C[at] : 0.0f);
    }
}

extern "C" ng_status ng_cuda_fill(size_t n, float value, float *out, void *stream) {
    NG_NVTX_PUSH("fill");
    NG_LAUNCH(fill_kernel, ng_grid_1d(n, FILL_BLOCK), FILL_BLOCK, 0, (cudaStream_t)stream)(
        (uint64_t)n, value, out);
    NG_LAUNCH_CHECK("fill");
    return NG_OK;
}

extern "C" ng_status ng_cuda_fill_uniform(size_t n, float *out, uint64_t key, uint64_t step,
                                          void *stream) {
    NG_NVTX_PUSH("fill_uniform");
    NG_LAUNCH(fill_uniform_kernel, ng_cuda_grid(NG_KFAM_UNIFORM, (n + 3u) / 4u),
              (unsigned int)ng_cuda_block(NG_KFAM_UNIFORM), 0,
              (cudaStream_t)stream)((uint64_t)n, out, key, step);
    NG_LAUNCH_CHECK("fill_uniform");
    return NG_OK;
}

extern "C" ng_status ng_cuda_binary_states(int nbits, uint64_t first, int count, float *out,
                                           int ldo, void *stream) {
    size_t n = (size_t)nbits * (size_t)count;
    NG_NVTX_PUSH("binary_states");
    NG_LAUNCH(binary_states_kernel, ng_grid_1d(n, FILL_BLOCK), FILL_BLOCK, 0,
              (cudaStream_t)stream)(nbits, first, count, out, ldo);
    NG_LAUNCH_CHECK("binary_states");
    return NG_OK;
}

extern "C" ng_status ng_cuda_to_double(size_t n, const float *x, double *y, void *stream) {
    NG_NVTX_PUSH("to_double");
    NG_LAUNCH(to_double_kernel, ng_grid_1d(n, FILL_BLOCK), FILL_BLOCK, 0, (cudaStream_t)stream)(
        (uint64_t)n, x, y);
    NG_LAUNCH_CHECK("to_double");
    return NG_OK;
}

extern "C" ng_status ng_cuda_to_float(size_t n, const double *x, float *y, void *stream) {
    NG_NVTX_PUSH("to_float");
    NG_LAUNCH(to_float_kernel, ng_grid_1d(n, FILL_BLOCK), FILL_BLOCK, 0, (cudaStream_t)stream)(
        (uint64_t)n, x, y);
    NG_LAUNCH_CHECK("to_float");
    return NG_OK;
}

extern "C" ng_status ng_cuda_axpby(size_t n, float alpha, const float *x, float beta, float *y,
                                   void *stream) {
    NG_NVTX_PUSH("axpby");
    NG_LAUNCH(axpby_kernel, ng_grid_1d(n, FILL_BLOCK), FILL_BLOCK, 0, (cudaStream_t)stream)(
        (uint64_t)n, alpha, x, beta, y);
    NG_LAUNCH_CHECK("axpby");
    return NG_OK;
}

/* The segments of NG_OP_AXPBY_SEGMENTS by value: start[s] = the first logical index of segment s
 * (the prefix sums of the lengths), start[count] = the total. */
typedef struct axs_params {
    int count;
    float alpha, beta;
    const float *x;
    float *y;
    uint64_t off[NG_SEGMENTS_MAX], start[NG_SEGMENTS_MAX + 1];
} axs_params;

/* Grid-stride over the logical index e of all segments; segment s holds e in [start[s], start[s+1]). */
static __global__ void axpby_segments_kernel(axs_params P) {
    const uint64_t stride = (uint64_t)blockDim.x * (uint64_t)gridDim.x, n = P.start[P.count];
    uint64_t e;
    for (e = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += stride) {
        int s = 0;
        uint64_t i;
        while (s + 1 < P.count && P.start[s + 1] <= e) s++;
        i = P.off[s] + (e - P.start[s]);
        {
            const float yi = P.beta != 0.0f ? P.y[i] : 0.0f;
            P.y[i] = ng_axpby_elem(P.alpha, P.x[i], P.beta, yi);
        }
    }
}

extern "C" ng_status ng_cuda_axpby_segments(int count, const size_t *off, const size_t *len, float alpha,
                                            const float *x, float beta, float *y, void *stream) {
    axs_params P;
    int s;
    P.count = count;
    P.alpha = alpha;
    P.beta = beta;
    P.x = x;
    P.y = y;
    P.start[0] = 0;
    for (s = 0; s < count; s++) {
        P.off[s] = (uint64_t)off[s];
        P.start[s + 1] = P.start[s] + (uint64_t)len[s];
    }
    NG_NVTX_PUSH("axpby_segments");
    NG_LAUNCH(axpby_segments_kernel, ng_grid_1d((size_t)P.start[count], FILL_BLOCK), FILL_BLOCK, 0,
              (cudaStream_t)stream)(P);
    NG_LAUNCH_CHECK("axpby_segments");
    return NG_OK;
}

extern "C" ng_status ng_cuda_axpby_dev(size_t n, float ca, const float *a_num,
                                       const float *a_den, const float *x, float cb,
                                       const float *b_num, const float *b_den, float *y,
                                       void *stream) {
    NG_NVTX_PUSH("axpby_dev");
    NG_LAUNCH(axpby_dev_kernel, ng_grid_1d(n, FILL_BLOCK), FILL_BLOCK, 0, (cudaStream_t)stream)(
        (uint64_t)n, ca, a_num, a_den, x, cb, b_num, b_den, y);
    NG_LAUNCH_CHECK("axpby_dev");
    return NG_OK;
}

extern "C" ng_status ng_cuda_scale_matrix(int m, int n, float beta, float *C, int ldc, int lower,
                                          void *stream) {
    size_t total = (size_t)m * (size_t)n;
    NG_NVTX_PUSH("scale_matrix");
    NG_LAUNCH(scale_matrix_kernel, ng_grid_1d(total, FILL_BLOCK), FILL_BLOCK, 0,
              (cudaStream_t)stream)(m, n, beta, C, ldc, lower);
    NG_LAUNCH_CHECK("scale_matrix");
    return NG_OK;
}

/* launch.cu's limit for the "uniform" family (ng_kernels_max_threads). */
extern "C" int ng_cuda_max_threads_fill(ng_kfam family, int threads) {
    const void *const k[] = {(const void *)fill_uniform_kernel};
    (void)family;
    (void)threads;
    return ng_kernels_max_threads(k, 1);
}
