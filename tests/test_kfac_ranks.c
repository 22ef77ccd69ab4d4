/* test_kfac_ranks.c: K-FAC's inverse refreshes owned per layer on several ranks, synchronous and
 * asynchronous (ng_kfac_config.async_lag, --kfac-async), through the trainer with a communicator
 * (ng_trainer_set_comm): a 6-5-3:linear-5-6 autoencoder (tanh, Bernoulli loss), 96 cases in
 * batches of 32 sharded by rank, tau1 = tau2 = 0.75 (every rank holds statistics cases), T1 2, T2 8,
 * T3 4, 17 updates (synchronous refreshes at 1-3, then at 4, 8, 12, 16; with staleness 2 the
 * asynchronous ones are used at 6, 10, 14 and the last is in flight at the end), both
 * approximations. Under `mpirun -np N` (tests/test_dist.sh, 2 and 3 ranks) it checks:
 *  - each run's parameters bit for bit rank 0's on every rank;
 *  - owned refreshes (each rank computes its layers, broadcast from the owner: in the update for
 *    synchronous refreshes, by the main thread when it uses the results for asynchronous ones)
 *    bit for bit equal to every rank computing every layer (NG_KFAC_REDUNDANT=1), staleness -1
 *    (synchronous), 0 and 2;
 *  - staleness 0 bit for bit the synchronous result (the worker's backend and thread, then the
 *    broadcast, give what the update's own refresh gives), staleness 2 a different result.
 * Run alone (one rank) the last two checks. On the CPU backend (MPI) and, in the emulated build,
 * on a CUDA backend per rank (the worker on its own stream; NCCL through tests/simt's shim). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kfac_run.h"
#include "ranks.h"
#include "natgrad/backend.h"
#include "natgrad/comm.h"
#include "natgrad/data.h"
#include "natgrad/kfac.h"
#include "natgrad/log.h"
#include "natgrad/net.h"
#include "natgrad/train.h"
#include "natgrad/update.h"

enum { STEPS = 17, PMAX = 256 };
static ng_comm *C;

/* STEPS K-FAC updates (kfac_run.h) on this rank's shards, tau1 = tau2 = 0.75; theta gets the parameters */
static ng_status run_kfac(ng_backend *be, ng_comm *c, int approx, int lag, int redundant, float *theta, size_t *np) {
    kfac_run o;
    memset(&o, 0, sizeof o);
    o.approx = approx;
    o.steps = STEPS;
    o.async_lag = lag;
    o.inverse = -1;
    o.tau = 0.75;
    o.comm = c;
    setenv("NG_KFAC_REDUNDANT", redundant ? "1" : "0", 1);
    return kfac_run_steps(be, &o, theta, PMAX, np);
}

static int run_case(ng_backend *be, ng_comm *c, const char *bname) {
    static const int lags[3] = {-1, 0, 2};
    float own[3][PMAX], red[PMAX], r0[PMAX];
    size_t n = 0, n2 = 0;
    int approx, j;
    char what[160];
    for (approx = 0; approx < 2; approx++) {
        const char *an = ng_kfac_approx_name(approx);
        for (j = 0; j < 3; j++) {
            NGT_OK(run_kfac(be, c, approx, lags[j], 0, own[j], &n));
            memcpy(r0, own[j], n * sizeof(float));
            NGT_OK(ng_comm_bcast_host(c, r0, n * sizeof(float), 0, "rank 0's parameters"));
            snprintf(what, sizeof what, "%s, %s, staleness %d: parameters bit for bit rank 0's", bname, an, lags[j]);
            if (ngt_all_ok(c, memcmp(r0, own[j], n * sizeof(float)) == 0, what) != NGT_PASS) return NGT_FAIL;
            if (c->world == 1) continue;
            NGT_OK(run_kfac(be, c, approx, lags[j], 1, red, &n2));
            snprintf(what, sizeof what, "%s, %s, staleness %d: owned refreshes = every rank computing every layer, bit for bit", bname,
                     an, lags[j]);
            if (ngt_all_ok(c, n == n2 && memcmp(red, own[j], n * sizeof(float)) == 0, what) != NGT_PASS) return NGT_FAIL;
        }
        snprintf(what, sizeof what, "%s, %s: staleness 0 = the synchronous refreshes, bit for bit", bname, an);
        if (ngt_all_ok(c, memcmp(own[0], own[1], n * sizeof(float)) == 0, what) != NGT_PASS) return NGT_FAIL;
        snprintf(what, sizeof what, "%s, %s: staleness 2 differs from the synchronous refreshes (the lag is applied)", bname, an);
        if (ngt_all_ok(c, memcmp(own[0], own[2], n * sizeof(float)) != 0, what) != NGT_PASS) return NGT_FAIL;
        for (j = 0; j < (int)n; j++) NGT_CHECK(isfinite(own[2][j]), "%s, %s, staleness 2: parameter %d is %g", bname, an, j, (double)own[2][j]);
    }
    unsetenv("NG_KFAC_REDUNDANT");
    return NGT_PASS;
}

static int test_owned_cpu(void) {
    ng_backend *be = NULL;
    int r;
    NGT_OK(ng_backend_cpu_init(&be));
    r = run_case(be, C, "cpu");
    ng_backend_free(be);
    return r;
}

/* The same on one (emulated) GPU per rank, the device collectives over NCCL when compiled in. */
static int test_owned_cuda(void) {
    ng_backend *be = NULL;
    ng_comm *nc = NULL;
    int r;
    if ((r = ngt_ranks_cuda(C, &be, &nc)) != NGT_PASS) return r; /* every rank skips when one has no device */
    r = run_case(be, nc, "cuda");
    ng_comm_free(nc);
    ng_backend_free(be);
    return r;
}

int main(void) {
    if (ngt_ranks_open(&C)) return 1;
    NGT_RUN(test_owned_cpu);
    NGT_RUN(test_owned_cuda);
    ng_comm_free(C);
    return ngt_finish();
}
