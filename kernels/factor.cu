/* factor.cu: NG_OP_FACTOR_UPDATE, K-FAC's Kronecker-factor accumulation (host/optim/kfac.c): for
 * up to NG_FACTOR_UPDATE_MAX factors at once, C_e = beta C_e + alpha_e X_e Y_e^T, in ONE launch.
 * The grid enumerates the T x T output tiles of every entry (lower tiles only for a symmetric
 * entry, Y == X); a block finds its entry from the tile prefix sums passed by value, accumulates
 * its tile over the k cases through shared-memory panels of X and Y, and writes beta C + alpha acc
 * once (the scale, the moving-average blend and, for symmetric entries, the mirror into the upper
 * triangle fused in that single write: one pass over each factor, no temporary). A symmetric entry
 * reads the old C on its lower triangle only, so no block reads what another writes. Sums run in a
 * fixed order over k (reproducible; not the CPU's BLAS order, so the backends agree to rounding).
 * The tile side T is sqrt of the "factor" entry of launch.cu's table: 8, 16 (the default) or 32, one
 * instantiation each. The result does not depend on T: every thread sums k = 0, 1, ... in order and
 * the padding past k adds exact zeros, so each output is the same fma chain for every tile size.
 * Must not: allocate, synchronize, or use atomics. */
#include "ng_cuda.cuh"

#include "ng_kernels.h"

typedef struct fu_params {
    int count, k;
    float beta;
    ng_factor_entry e[NG_FACTOR_UPDATE_MAX];
    int tile0[NG_FACTOR_UPDATE_MAX + 1]; /* first block of each entry; tile0[count] = grid size */
    int tiles_r[NG_FACTOR_UPDATE_MAX];   /* row tiles of each entry */
    int sym[NG_FACTOR_UPDATE_MAX];
} fu_params;

template <int TILE> static __global__ void factor_update_kernel(fu_params P) {
    __shared__ float xs[TILE][TILE + 1];
    __shared__ float ys[TILE][TILE + 1];
    const int b = (int)blockIdx.x, tx = (int)threadIdx.x, ty = (int)threadIdx.y;
    int e = 0, t, ti, tj, r, c, k0, kk;
    float acc = 0.0f;
    while (e + 1 < P.count && P.tile0[e + 1] <= b) e++;
    {
        const ng_factor_entry E = P.e[e];
        t = b - P.tile0[e];
        if (P.sym[e]) { /* lower tiles (ti >= tj) in row-major order of the lower triangle */
            ti = 0;
            while ((ti + 1) * (ti + 2) / 2 <= t) ti++;
            tj = t - ti * (ti + 1) / 2;
        } else {
            ti = t % P.tiles_r[e];
            tj = t / P.tiles_r[e];
        }
        r = ti * TILE + tx; /* threadIdx.x along the rows: coalesced column-major access */
        c = tj * TILE + ty;
        for (k0 = 0; k0 < P.k; k0 += TILE) {
            const int kx = k0 + ty, rx = ti * TILE + tx, cy = tj * TILE + tx;
            xs[tx][ty] = (rx < E.rows && kx < P.k) ? E.X[(size_t)rx + (size_t)kx * (size_t)E.ldx] : 0.0f;
            ys[tx][ty] = (cy < E.cols && kx < P.k) ? E.Y[(size_t)cy + (size_t)kx * (size_t)E.ldy] : 0.0f;
            __syncthreads();
            for (kk = 0; kk < TILE; kk++) acc += xs[tx][kk] * ys[ty][kk];
            __syncthreads();
        }
        if (r < E.rows && c < E.cols && (!P.sym[e] || r >= c)) {
            float v = E.alpha * acc;
            if (P.beta != 0.0f) v += P.beta * E.C[(size_t)r + (size_t)c * (size_t)E.ldc];
            E.C[(size_t)r + (size_t)c * (size_t)E.ldc] = v;
            if (P.sym[e] && r != c) E.C[(size_t)c + (size_t)r * (size_t)E.ldc] = v;
        }
    }
}

extern "C" ng_status ng_cuda_factor_update(int count, int k, float beta, const ng_factor_entry *entries,
                                           void *stream) {
    fu_params P;
    int i, blocks = 0;
    const int threads = ng_cuda_block(NG_KFAM_FACTOR);
    const int tile = threads == 1024 ? 32 : threads == 64 ? 8 : 16;
    P.count = 0;
    P.k = k;
    P.beta = beta;
    for (i = 0; i < count; i++) {
        const ng_factor_entry *e = &entries[i];
        int tr, tc;
        if (!e->rows || !e->cols) continue;
        tr = (e->rows + tile - 1) / tile;
        tc = (e->cols + tile - 1) / tile;
        P.e[P.count] = *e;
        P.sym[P.count] = e->Y == e->X && e->ldy == e->ldx && e->rows == e->cols;
        P.tiles_r[P.count] = tr;
        P.tile0[P.count] = blocks;
        blocks += P.sym[P.count] ? tr * (tr + 1) / 2 : tr * tc;
        P.count++;
    }
    if (!P.count) return NG_OK;
    P.tile0[P.count] = blocks;
    NG_NVTX_PUSH("factor_update");
    if (tile == 8)
        NG_LAUNCH(factor_update_kernel<8>, dim3((unsigned)blocks), dim3(8, 8), 0, (cudaStream_t)stream)(P);
    else if (tile == 32)
        NG_LAUNCH(factor_update_kernel<32>, dim3((unsigned)blocks), dim3(32, 32), 0, (cudaStream_t)stream)(P);
    else
        NG_LAUNCH(factor_update_kernel<16>, dim3((unsigned)blocks), dim3(16, 16), 0, (cudaStream_t)stream)(P);
    NG_LAUNCH_CHECK("factor_update");
    return NG_OK;
}

/* launch.cu's limit for the "factor" family at `threads` (the instantiation of that tile). */
extern "C" int ng_cuda_max_threads_factor(ng_kfam family, int threads) {
    const void *const k[] = {threads == 64 ? (const void *)factor_update_kernel<8>
                              : threads == 1024 ? (const void *)factor_update_kernel<32>
                                                : (const void *)factor_update_kernel<16>};
    (void)family;
    return ng_kernels_max_threads(k, 1);
}
