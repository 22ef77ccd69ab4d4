/* factor.cu: NG_OP_FACTOR_UPDATE, K-FAC's Kronecker-factor accumulation (host/optim/kfac.c): for
 * up to NG_FACTOR_UPDATE_MAX factors at once, C_e = beta C_e + alpha_e X_e Y_e^T, in ONE launch.
 * The grid enumerates the 16 x 16 output tiles of every entry (lower tiles only for a symmetric
 * entry, Y == X); a block finds its entry from the tile prefix sums passed by value, accumulates
 * its tile over the k cases through shared-memory panels of X and Y, and writes beta C + alpha acc
 * once (the scale, the moving-average blend and, for symmetric entries, the mirror into the upper
 * triangle fused in that single write: one pass over each factor, no temporary). A symmetric entry
 * reads the old C on its lower triangle only, so no block reads what another writes. Sums run in a
 * fixed order over k (reproducible; not the CPU's BLAS order, so the backends agree to rounding).
 * Must not: allocate, synchronize, or use atomics. */
#include "ng_cuda.cuh"

#include "ng_kernels.h"

#define FU_TILE 16

typedef struct fu_params {
    int count, k;
    float beta;
    ng_factor_entry e[NG_FACTOR_UPDATE_MAX];
    int tile0[NG_FACTOR_UPDATE_MAX + 1]; /* first block of each entry; tile0[count] = grid size */
    int tiles_r[NG_FACTOR_UPDATE_MAX];   /* row tiles of each entry */
    int sym[NG_FACTOR_UPDATE_MAX];
} fu_params;

static __global__ void factor_update_kernel(fu_params P) {
    __shared__ float xs[FU_TILE][FU_TILE + 1];
    __shared__ float ys[FU_TILE][FU_TILE + 1];
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
        r = ti * FU_TILE + tx; /* threadIdx.x along the rows: coalesced column-major access */
        c = tj * FU_TILE + ty;
        for (k0 = 0; k0 < P.k; k0 += FU_TILE) {
            const int kx = k0 + ty, rx = ti * FU_TILE + tx, cy = tj * FU_TILE + tx;
            xs[tx][ty] = (rx < E.rows && kx < P.k) ? E.X[(size_t)rx + (size_t)kx * (size_t)E.ldx] : 0.0f;
            ys[tx][ty] = (cy < E.cols && kx < P.k) ? E.Y[(size_t)cy + (size_t)kx * (size_t)E.ldy] : 0.0f;
            __syncthreads();
            for (kk = 0; kk < FU_TILE; kk++) acc += xs[tx][kk] * ys[ty][kk];
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
    P.count = 0;
    P.k = k;
    P.beta = beta;
    for (i = 0; i < count; i++) {
        const ng_factor_entry *e = &entries[i];
        int tr, tc;
        if (!e->rows || !e->cols) continue;
        tr = (e->rows + FU_TILE - 1) / FU_TILE;
        tc = (e->cols + FU_TILE - 1) / FU_TILE;
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
    NG_LAUNCH(factor_update_kernel, dim3((unsigned)blocks), dim3(FU_TILE, FU_TILE), 0, (cudaStream_t)stream)(P);
    NG_LAUNCH_CHECK("factor_update");
    return NG_OK;
}
