/* test_kernel_blocks.c: the launch-shape table of the custom kernel families (kernels/launch.cu,
 * ng_cuda_set_block / ng_cuda_set_grid_cap) on the CUDA backend: under `make test` the tests/simt
 * emulator runs the kernels; under `make test-gpu` a real GPU. The problems are the kernel lab's
 * (bench/kernel_lab_families.h), at 40009 elements: small for the emulator (a second in all), yet at
 * 32 threads a grid of hundreds of blocks that the emulator spreads over its OS threads, so the
 * counters kept on the device are advanced by blocks that really run concurrently.
 *   refusals   every bad value is refused with a message naming the family and the rule, and the
 *              table keeps its previous value; 0 restores the default
 *   shapes     every family under 3 or more launch shapes besides its default, one of them an
 *              "odd grid" (96 threads, not a power of two, with the grid capped at 3 blocks so the
 *              grid-stride loops go round several times and the last block is partial), gives the
 *              default shape's result bit for bit — the element values depend on logical indices
 *              only, and factor_update's sums over k follow the same order for every tile — except
 *              reduce, whose partial sums follow the block size: within KL_REDUCE_RTOL (2 ulp, see
 *              the header), and the counters kept on the device (the Gibbs step, adam's t) advance
 *              exactly once per launch whatever the number of blocks; the default shape also
 *              matches the CPU backend within the family's stated tolerance
 * Under the emulator each shape is also seen at the launch (simt_last_launch: the threads per block
 * and the number of blocks of the family's last kernel), so the table provably reaches the launchers.
 * Skipped, with the reason, without a CUDA backend (the NG_CUDA=0 build: the table is not linked). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends.h"
#include "harness.h"
#include "natgrad/backend.h"

#include "../bench/kernel_lab_families.h"

/* tests/simt/simt_runtime.cpp: the last launch's kernel, blocks and threads (NULL on a real GPU) */
extern void simt_last_launch(char *name, size_t len, unsigned *grid, unsigned *block) __attribute__((weak));

static ng_backend *g_cpu, *g_cuda;
static char g_reason[256];

#if defined(NG_HAVE_CUDA)
/* expect ng_cuda_set_block(family, threads) (or the grid cap) to fail with a message holding `needle` */
static int refused(int cap, const char *family, int value, const char *needle) {
    ng_status s;
    ng_clear_error();
    s = cap ? ng_cuda_set_grid_cap(family, value) : ng_cuda_set_block(family, value);
    NGT_CHECK(s == NG_ERR_INVALID_ARG, "%s(%s, %d) returned %s", cap ? "ng_cuda_set_grid_cap" : "ng_cuda_set_block",
              family ? family : "NULL", value, ng_status_name(s));
    NGT_CHECK(strstr(ng_last_error(), needle) != NULL, "message '%s' lacks '%s'", ng_last_error(), needle);
    printf("  refused %s=%d: %s\n", family ? family : "NULL", value, ng_last_error());
    ng_clear_error();
    return NGT_PASS;
}
#define REFUSED(...) NGT_CHECK(refused(__VA_ARGS__) == NGT_PASS, "refusal")

static int test_refusals(void) {
    NGT_OK(ng_cuda_set_block("gibbs", 128));
    REFUSED(0, "gibbs", 100, "multiple of 32");
    REFUSED(0, "gibbs", 16, "32 to 1024");
    REFUSED(0, "gibbs", 2048, "32 to 1024");
    REFUSED(0, "gibbs", -32, "32 to 1024");
    REFUSED(0, "reduce", 96, "power of two");
    REFUSED(0, "reduce", 1056, "32 to 1024");
    REFUSED(0, "factor", 128, "64 (8x8), 256 (16x16) or 1024 (32x32)");
    REFUSED(0, "factor", 96, "64 (8x8)");
    REFUSED(0, "gibs", 256, "unknown kernel family 'gibs'");
    REFUSED(0, NULL, 256, "unknown kernel family");
    REFUSED(1, "factor", 3, "cannot be capped");
    REFUSED(1, "optim", -1, "positive count");
    REFUSED(1, "nosuch", 3, "unknown kernel family 'nosuch'");
    NGT_CHECK(ng_cuda_block(NG_KFAM_GIBBS) == 128, "gibbs block %d after refusals (want the 128 set before)",
              ng_cuda_block(NG_KFAM_GIBBS));
    NGT_OK(ng_cuda_set_block("gibbs", 0));
    NGT_CHECK(ng_cuda_block(NG_KFAM_GIBBS) == 256 && ng_cuda_block_default(NG_KFAM_GIBBS) == 256,
              "0 must restore the default 256, got %d", ng_cuda_block(NG_KFAM_GIBBS));
    NGT_OK(ng_cuda_set_block("reduce", 1024));
    NGT_OK(ng_cuda_set_block("factor", 64));
    NGT_OK(ng_cuda_set_block("conv", 96));
    NGT_OK(ng_cuda_set_grid_cap("conv", 3));
    NGT_CHECK(ng_cuda_grid(NG_KFAM_CONV, 100000) == 3 && ng_cuda_grid(NG_KFAM_CONV, 10) == 1,
              "capped grid %u / %u", ng_cuda_grid(NG_KFAM_CONV, 100000), ng_cuda_grid(NG_KFAM_CONV, 10));
    {
        int f;
        for (f = 0; f < NG_KFAM_COUNT; f++) {
            NGT_OK(ng_cuda_set_block(ng_cuda_family_name((ng_kfam)f), 0));
            NGT_OK(ng_cuda_set_grid_cap(ng_cuda_family_name((ng_kfam)f), 0));
            NGT_CHECK(!strcmp(ng_cuda_family_name((ng_kfam)f), kl_families[f].name), "family %d named %s vs %s", f,
                      ng_cuda_family_name((ng_kfam)f), kl_families[f].name);
            NGT_CHECK(ng_cuda_block((ng_kfam)f) == 256 && ng_cuda_grid_cap((ng_kfam)f) == 0, "family %s not reset",
                      kl_families[f].name);
        }
    }
    return NGT_PASS;
}

/* Launch shapes besides the default: {threads, grid cap}; the second is the odd grid. */
typedef struct shape { int threads, cap; } shape;
static const shape elem_shapes[] = {{32, 0}, {96, 3}, {1024, 0}};
static const shape reduce_shapes[] = {{32, 0}, {64, 3}, {1024, 0}};
static const shape factor_shapes[] = {{64, 0}, {1024, 0}};

static int check_family(ng_kfam f, size_t n) {
    const kl_family *F = &kl_families[f];
    const char *name = F->name;
    const shape *sh = f == NG_KFAM_REDUCE ? reduce_shapes : f == NG_KFAM_FACTOR ? factor_shapes : elem_shapes;
    const int nsh = f == NG_KFAM_FACTOR ? 2 : 3;
    kl_case kc, kg;
    float *cpu_out, *ref, *got;
    double maxd;
    size_t flips, first, bad;
    int s, rc = NGT_PASS;
    NGT_OK(kl_case_init(&kc, g_cpu, f, n));
    NGT_OK(kl_case_init(&kg, g_cuda, f, n));
    cpu_out = malloc(kc.nout * sizeof(float));
    ref = malloc(kg.nout * sizeof(float));
    got = malloc(kg.nout * sizeof(float));
    NGT_CHECK(cpu_out && ref && got, "out of memory");
    NGT_OK(kl_once(&kc, cpu_out));
    NGT_OK(kl_once(&kg, ref)); /* default shape */
    bad = kl_compare(&kg, ref, cpu_out, F->atol > 0.0 || F->rtol > 0.0 ? F->atol : -1.0, F->rtol,
                     KL_DRAW_FLIPS(kg.draw1 - kg.draw0), &maxd, &flips, &first);
    printf("  %-9s n=%zu: default %d threads vs CPU backend: %s (max |d| %.2e, %zu draws differ; tol %g + %g |x|: %s)\n",
           name, n, ng_cuda_block(f), bad ? "DIFFERS" : "ok", maxd, flips, F->atol, F->rtol, F->why);
    if (bad) {
        printf("  first failure at output %zu: cuda %.9g cpu %.9g\n", first, ref[first], cpu_out[first]);
        rc = NGT_FAIL;
    }
    for (s = 0; s < nsh && rc == NGT_PASS; s++) {
        shape t = sh[s];
        if (ng_cuda_set_block(name, t.threads) != NG_OK) {
            /* a real GPU may not fit 1024 threads of a kernel's registers (gibbs_sample on sm_80):
             * refused with that reason, then the next power of two down */
            NGT_CHECK(t.threads == 1024 && strstr(ng_last_error(), "exceeds what its kernels allow"),
                      "ng_cuda_set_block(%s, %d): %s", name, t.threads, ng_last_error());
            printf("  %s: %s; trying 512\n", name, ng_last_error());
            ng_clear_error();
            t.threads = f == NG_KFAM_FACTOR ? 256 : 512;
            NGT_OK(ng_cuda_set_block(name, t.threads));
        }
        NGT_OK(ng_cuda_set_grid_cap(name, t.cap));
        NGT_OK(kl_once(&kg, got));
        if (simt_last_launch) {
            char kname[96];
            unsigned grid, block;
            simt_last_launch(kname, sizeof kname, &grid, &block);
            NGT_CHECK(block == (unsigned)t.threads && (!t.cap || grid <= (unsigned)t.cap),
                      "family %s set to %d threads, cap %d: the last launch (%s) had %u blocks of %u threads", name,
                      t.threads, t.cap, kname, grid, block);
            if (t.cap)
                NGT_CHECK(grid == (unsigned)t.cap, "%s: %u blocks, want the cap %d (the problem needs more)", kname,
                          grid, t.cap);
        }
        if (F->exact)
            bad = kl_compare(&kg, got, ref, -1.0, 0.0, 0, &maxd, &flips, &first);
        else
            bad = kl_compare(&kg, got, ref, 0.0, KL_REDUCE_RTOL, 0, &maxd, &flips, &first);
        printf("  %-9s %4d threads%s: %s the default shape (max |d| %.2e)\n", name, t.threads,
               t.cap ? ", grid capped at 3 blocks" : "", bad ? "DIFFERS from" : F->exact ? "bit-identical to" : "within 2 ulp of",
               maxd);
        if (bad) {
            printf("  %zu outputs differ, first %zu: %.9g vs %.9g\n", bad, first, got[first], ref[first]);
            rc = NGT_FAIL;
        }
    }
    ng_cuda_set_block(name, 0);
    ng_cuda_set_grid_cap(name, 0);
    free(cpu_out);
    free(ref);
    free(got);
    kl_case_free(&kc);
    kl_case_free(&kg);
    return rc;
}

#define FAMILY_TEST(fn, fam, n)                                                                     \
    static int fn(void) {                                                                           \
        if (!g_cuda) return ngt_skip(g_reason);                                                     \
        return check_family(fam, n);                                                                \
    }
FAMILY_TEST(test_uniform, NG_KFAM_UNIFORM, 40009)
FAMILY_TEST(test_gibbs, NG_KFAM_GIBBS, 40009)
FAMILY_TEST(test_bernoulli, NG_KFAM_BERNOULLI, 40009)
FAMILY_TEST(test_fang, NG_KFAM_FANG, 40009)
FAMILY_TEST(test_factor, NG_KFAM_FACTOR, 40009)
FAMILY_TEST(test_conv, NG_KFAM_CONV, 40009)
FAMILY_TEST(test_optim, NG_KFAM_OPTIM, 40009)
FAMILY_TEST(test_reduce, NG_KFAM_REDUCE, 40009)
#endif

int main(void) {
    if (ngt_open_backends(&g_cpu, &g_cuda, g_reason, sizeof g_reason)) return 1;
#if defined(NG_HAVE_CUDA)
    NGT_RUN(test_refusals);
    NGT_RUN(test_uniform);
    NGT_RUN(test_gibbs);
    NGT_RUN(test_bernoulli);
    NGT_RUN(test_fang);
    NGT_RUN(test_factor);
    NGT_RUN(test_conv);
    NGT_RUN(test_optim);
    NGT_RUN(test_reduce);
#else
    printf("SKIP test_kernel_blocks: %s\n", "CUDA support not compiled in (NG_CUDA=0): no launch-shape table");
    ngt_skipped++;
#endif
    ng_backend_free(g_cuda);
    ng_backend_free(g_cpu);
    return ngt_finish();
}
