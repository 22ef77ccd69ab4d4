/* launch.cu: the launch shapes of the custom kernel families, one process-wide table (family ->
 * threads per block, and an optional cap on the number of blocks) that the launchers of gibbs.cu,
 * fill.cu (fill_uniform), fang.cu, factor.cu, conv.cu, optim.cu and reduce.cu read at every launch.
 * The defaults are the constants the launchers had before the table, so nothing changes unless
 * ng_cuda_set_block / ng_cuda_set_grid_cap are called (the kernel lab, bench/kernel_lab.c, and
 * tests/test_kernel_blocks.c sweep them). Every family's result is independent of its launch shape
 * (each element's value depends on its logical index only; factor_update sums over k in the same
 * order for every tile size), except reduce's softplus_sum, whose per-thread partial sums and tree
 * depend on the block size (double accumulation: agrees to the final float rounding).
 * A shape is also checked against the kernels' own limit on the device (registers: e.g. gibbs_sample
 * needs 72 registers on sm_80, so at most 896 threads there, cudaFuncGetAttributes).
 * Host code only; the table is plain ints, read when a launcher runs: set it between launches from
 * one thread (a captured CUDA graph keeps the shape it was captured with). Must not: allocate. */
#include <string.h>

#include "ng_cuda.cuh"

#include "ng_kernels.h"

enum { KIND_ELEM, KIND_POW2, KIND_SQUARE };

typedef struct family_info {
    const char *name;
    unsigned int def; /* threads per block before the table existed */
    int kind;         /* what the kernels need of the block size */
    int stride_loop;  /* 1: grid-stride kernels, so a grid cap is legal */
} family_info;

static const family_info families[NG_KFAM_COUNT] = { /* in ng_kfam order */
    {"uniform", 256u, KIND_ELEM, 1},
    {"gibbs", 256u, KIND_ELEM, 1},
    {"bernoulli", 256u, KIND_ELEM, 1},
    {"fang", 256u, KIND_ELEM, 1},
    {"factor", 256u, KIND_SQUARE, 0},
    {"conv", 256u, KIND_ELEM, 1},
    {"optim", 256u, KIND_ELEM, 1},
    {"reduce", 256u, KIND_POW2, 1},
};

static unsigned int block_of[NG_KFAM_COUNT]; /* 0 = the default */
static unsigned int cap_of[NG_KFAM_COUNT];   /* 0 = no cap */

static int family_find(const char *family, const char *who) {
    int f;
    if (family != NULL)
        for (f = 0; f < NG_KFAM_COUNT; f++)
            if (strcmp(family, families[f].name) == 0) return f;
    ng_error(NG_ERR_INVALID_ARG,
             "%s: unknown kernel family '%s' (one of uniform, gibbs, bernoulli, fang, factor, conv, optim, reduce)",
             who, family != NULL ? family : "(null)");
    return -1;
}

extern "C" ng_status ng_cuda_set_block(const char *family, int threads) {
    const int f = family_find(family, "ng_cuda_set_block");
    const char *name;
    if (f < 0) return NG_ERR_INVALID_ARG;
    name = families[f].name;
    if (threads == 0) {
        block_of[f] = 0u;
        return NG_OK;
    }
    if (threads < 32 || threads > NG_BLOCK_MAX)
        return ng_error(NG_ERR_INVALID_ARG,
                        "ng_cuda_set_block: family '%s': %d threads per block is out of range: use 32 to %d "
                        "(0 restores the default %u)",
                        name, threads, NG_BLOCK_MAX, families[f].def);
    switch (families[f].kind) {
    case KIND_POW2:
        if (threads & (threads - 1))
            return ng_error(NG_ERR_INVALID_ARG,
                            "ng_cuda_set_block: family '%s': %d threads per block: its shared-memory tree "
                            "reduction needs a power of two (32, 64, ..., 1024)",
                            name, threads);
        break;
    case KIND_SQUARE:
        if (threads != 64 && threads != 256 && threads != 1024)
            return ng_error(NG_ERR_INVALID_ARG,
                            "ng_cuda_set_block: family '%s': %d threads per block: its blocks are square "
                            "output tiles, so use 64 (8x8), 256 (16x16) or 1024 (32x32)",
                            name, threads);
        break;
    default:
        if (threads % 32)
            return ng_error(NG_ERR_INVALID_ARG,
                            "ng_cuda_set_block: family '%s': %d threads per block: use a multiple of 32 "
                            "(the warp size)",
                            name, threads);
    }
    {
        int (*const limit_of[NG_KFAM_COUNT])(ng_kfam, int) = {
            ng_cuda_max_threads_fill,  ng_cuda_max_threads_gibbs,  ng_cuda_max_threads_gibbs,
            ng_cuda_max_threads_fang,  ng_cuda_max_threads_factor, ng_cuda_max_threads_conv,
            ng_cuda_max_threads_optim, ng_cuda_max_threads_reduce};
        const int limit = limit_of[f]((ng_kfam)f, threads);
        if (threads > limit)
            return ng_error(NG_ERR_INVALID_ARG,
                            "ng_cuda_set_block: family '%s': %d threads per block exceeds what its kernels allow "
                            "on this device as compiled (%d: registers per thread, cudaFuncGetAttributes); use %d or less",
                            name, threads, limit, limit);
    }
    block_of[f] = (unsigned int)threads;
    return NG_OK;
}

extern "C" ng_status ng_cuda_set_grid_cap(const char *family, int blocks) {
    const int f = family_find(family, "ng_cuda_set_grid_cap");
    if (f < 0) return NG_ERR_INVALID_ARG;
    if (blocks < 0)
        return ng_error(NG_ERR_INVALID_ARG,
                        "ng_cuda_set_grid_cap: family '%s': %d blocks: use a positive count (0 removes the cap)",
                        families[f].name, blocks);
    if (blocks > 0 && !families[f].stride_loop)
        return ng_error(NG_ERR_INVALID_ARG,
                        "ng_cuda_set_grid_cap: family '%s' launches one block per output tile (no grid-stride "
                        "loop): its grid cannot be capped",
                        families[f].name);
    cap_of[f] = (unsigned int)blocks;
    return NG_OK;
}

extern "C" int ng_cuda_block(ng_kfam family) {
    if ((int)family < 0 || family >= NG_KFAM_COUNT) return 0;
    return (int)(block_of[family] ? block_of[family] : families[family].def);
}

extern "C" int ng_cuda_block_default(ng_kfam family) {
    if ((int)family < 0 || family >= NG_KFAM_COUNT) return 0;
    return (int)families[family].def;
}

extern "C" int ng_cuda_grid_cap(ng_kfam family) {
    if ((int)family < 0 || family >= NG_KFAM_COUNT) return 0;
    return (int)cap_of[family];
}

extern "C" const char *ng_cuda_family_name(ng_kfam family) {
    if ((int)family < 0 || family >= NG_KFAM_COUNT) return "?";
    return families[family].name;
}

extern "C" unsigned int ng_cuda_grid(ng_kfam family, size_t items) {
    unsigned int g = ng_grid_1d(items, (unsigned int)ng_cuda_block(family));
    if (cap_of[family] && g > cap_of[family]) g = cap_of[family];
    return g;
}
