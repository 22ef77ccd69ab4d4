/* ranks.h: what the multi-rank tests (tests/test_*_ranks.c, run under mpirun by tests/test_dist.sh's
 * ctest_ranks) share: the world communicator with the "rank r of W" line, the uneven shards, the
 * verdicts every rank learns, the bit-for-bit check against rank 0, and a CUDA backend per rank with
 * a communicator of its own (NCCL through tests/simt's shim in the emulated build) that every rank
 * skips when one has no device. Include after harness.h. */
#ifndef NG_TESTS_RANKS_H
#define NG_TESTS_RANKS_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "natgrad/backend.h"
#include "natgrad/comm.h"
#include "natgrad/log.h"

/* The world communicator into *c and the line "rank r of W"; 0, or 1 after the FAIL and RESULT lines
 * (main returns it). */
static inline int ngt_ranks_open(ng_comm **c) {
    if (ng_comm_init(c, 60.0) != NG_OK) {
        printf("FAIL comm_init: %s\nRESULT passed=0 failed=1 skipped=0\n", ng_last_error());
        return 1;
    }
    printf("rank %d of %d\n", (*c)->rank, (*c)->world);
    return 0;
}

/* this rank's cases [lo, hi) of m: shares that grow with the rank, m r^2 / W^2 to m (r + 1)^2 / W^2 */
static inline void ngt_shard(const ng_comm *c, int m, int *lo, int *hi) {
    int W = c->world, r = c->rank;
    *lo = m * r * r / (W * W);
    *hi = m * (r + 1) * (r + 1) / (W * W);
}

/* every rank agrees: `ok` on all of them (otherwise the number of ranks where it failed) */
static inline int ngt_all_ok(ng_comm *c, int ok, const char *what) {
    double bad = ok ? 0.0 : 1.0;
    NGT_OK(ng_comm_allreduce_host(c, &bad, 1, "the verdicts"));
    NGT_CHECK(bad == 0.0, "%s: fails on %g rank(s) (this rank: %s)", what, bad, ok ? "holds" : "fails");
    return NGT_PASS;
}

/* this rank's n host floats equal rank 0's, bit for bit (every rank learns every rank's verdict) */
static inline int ngt_same_as_rank0(ng_comm *c, const float *mine, size_t n, const char *what) {
    float *r0 = (float *)malloc(n * sizeof(float));
    double bad;
    int ok;
    NGT_CHECK(r0 != NULL, "host memory");
    memcpy(r0, mine, n * sizeof(float));
    NGT_OK(ng_comm_bcast_host(c, r0, n * sizeof(float), 0, "rank 0's copy"));
    ok = memcmp(mine, r0, n * sizeof(float)) == 0;
    free(r0);
    bad = ok ? 0.0 : 1.0;
    NGT_OK(ng_comm_allreduce_host(c, &bad, 1, "the verdicts"));
    NGT_CHECK(bad == 0.0, "%s differs from rank 0's on %g rank(s) (this rank: %s)", what, bad, ok ? "same" : "different");
    return NGT_PASS;
}

/* the same for n floats on be (device or host memory) */
static inline int ngt_same_as_rank0_dev(ng_comm *c, ng_backend *be, const float *dev, size_t n, const char *what) {
    float *mine = (float *)malloc(n * sizeof(float));
    int r;
    NGT_CHECK(mine != NULL, "host memory");
    if (ng_get(be, mine, dev, n * sizeof(float)) != NG_OK) {
        free(mine);
        NGT_CHECK(0, "%s: %s", what, ng_last_error());
    }
    r = ngt_same_as_rank0(c, mine, n, what);
    free(mine);
    return r;
}

/* A CUDA backend on this rank's local device into *be and a communicator of its own attached to it
 * (NCCL binds to it; on more than one rank it is NCCL when NCCL is compiled in) into *nc. NGT_SKIP
 * on every rank when CUDA is not compiled in or some rank has no device (the others would wait for
 * it in the collectives), the reason in ngt_skip_reason (this rank's own error where it has none). */
static inline int ngt_ranks_cuda(ng_comm *world, ng_backend **be, ng_comm **nc) {
    char why[512] = "no CUDA device for some rank (one device per local rank)";
    double missing;
    *be = NULL;
    *nc = NULL;
    if (!ng_cuda_compiled()) return ngt_skip("CUDA not compiled in (the emulated build runs this)");
    if (ng_backend_cuda_init(world->local_rank, be) != NG_OK) {
        snprintf(why, sizeof why, "no CUDA device %d here (the emulated build runs these; NG_SIMT_DEVICES >= ranks): %s",
                 world->local_rank, ng_last_error());
        ng_clear_error();
        *be = NULL;
    }
    missing = *be ? 0.0 : 1.0;
    NGT_OK(ng_comm_allreduce_host(world, &missing, 1, "the device check"));
    if (missing > 0.0) {
        ng_backend_free(*be);
        *be = NULL;
        return ngt_skip(why);
    }
    NGT_OK(ng_comm_init(nc, 60.0));
    NGT_OK(ng_comm_attach(*nc, *be));
    if ((*nc)->world > 1 && ng_comm_nccl_compiled())
        NGT_CHECK((*nc)->kind == NG_COMM_NCCL, "a CUDA backend on %d ranks uses NCCL (kind %d)", (*nc)->world, (int)(*nc)->kind);
    return NGT_PASS;
}

/* The set-up of the multi-rank CUDA-graph tests (test_graph_ranks*.c, test_seg_ranks.c): the world
 * into *c (ngt_ranks_open), then on two ranks or more, with CUDA and NCCL compiled in, a CUDA backend
 * per rank and its NCCL communicator into *be and *nc (ngt_ranks_cuda). Where there is none, *be is
 * NULL and why (n bytes) says why the tests skip. 0, or 1 after the FAIL and RESULT lines (main
 * returns it). */
static inline int ngt_ranks_open_nccl(ng_comm **c, ng_backend **be, ng_comm **nc, char *why, size_t n) {
    *be = NULL;
    *nc = NULL;
    if (ngt_ranks_open(c)) return 1;
    if ((*c)->world < 2)
        snprintf(why, n, "one rank: run under mpirun -np 2 or 3 (tests/test_dist.sh)");
    else if (!ng_cuda_compiled() || !ng_comm_nccl_compiled())
        snprintf(why, n, "CUDA or NCCL not compiled in (the emulated build runs these)");
    else { /* every rank skips when one has no device (the others would wait for it); nc is NCCL */
        int r = ngt_ranks_cuda(*c, be, nc);
        if (r == NGT_FAIL) {
            printf("FAIL nccl: the CUDA backend's communicator\nRESULT passed=0 failed=1 skipped=0\n");
            return 1;
        }
        if (r == NGT_SKIP) snprintf(why, n, "%s", ngt_skip_reason);
    }
    return 0;
}
#endif
