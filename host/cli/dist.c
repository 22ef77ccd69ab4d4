/* dist.c (cli): the communicator of the natgrad process (natgrad/comm.h). ng_cli_backend opens it
 * (MPI when started by mpirun with several ranks, else a single rank), picks the rank's GPU, and
 * attaches it to the backend; main ends it with ng_cli_finish, which aborts every rank when this
 * one failed, so no rank waits for a partner that has given up. */
#include <stdio.h>

#include "cli/cli.h"
#include "natgrad/comm.h"

static ng_comm *g_comm;
static int g_allow;

void ng_cli_dist_allow(void) { g_allow = 1; }

ng_comm *ng_cli_comm(void) { return g_comm; }
int ng_cli_rank(void) { return g_comm ? g_comm->rank : 0; }
int ng_cli_world(void) { return g_comm ? g_comm->world : 1; }

int ng_cli_comm_open(const ng_common_opts *c) {
    if (g_comm) return 0;
    if (!g_allow && ng_comm_launched_world() > 1) {
        fprintf(stderr, "natgrad: this command runs as one process, but a launcher started %d ranks: under mpirun only "
                        "`natgrad net train` (sgd, nag, adam, rmsprop, kfac, ngd, ngd-l, ncg-l, ncg-f, hf, prong), `natgrad cnn train` "
                        "and `natgrad rbm train` (sgd, centering, fang, diag; pcd or cd) run data-parallel\n", ng_comm_launched_world());
        return NG_EXIT_USAGE;
    }
    if (!(c->comm_timeout > 0.0f)) {
        fprintf(stderr, "natgrad: --comm-timeout %g: must be > 0 seconds\n", (double)c->comm_timeout);
        return NG_EXIT_USAGE;
    }
    if (ng_comm_init(&g_comm, c->comm_timeout) != NG_OK) {
        fprintf(stderr, "natgrad: %s\n", ng_last_error());
        return NG_EXIT_FAIL;
    }
    if (g_comm->world > 1)
        fprintf(stderr, "natgrad: rank %d of %d (local rank %d), collectives over MPI, timeout %g s\n", g_comm->rank,
                g_comm->world, g_comm->local_rank, g_comm->timeout_s);
    return 0;
}

int ng_cli_comm_attach(ng_backend *be) {
    if (!g_comm || g_comm->world == 1) return 0;
    if (ng_comm_attach(g_comm, be) != NG_OK) {
        fprintf(stderr, "natgrad: %s\n", ng_last_error());
        return NG_EXIT_FAIL;
    }
    if (g_comm->kind == NG_COMM_NCCL) fprintf(stderr, "natgrad: rank %d: gradient collectives over NCCL\n", g_comm->rank);
    return 0;
}

int ng_cli_finish(int rc) {
    if (g_comm && g_comm->world > 1 && rc == NG_EXIT_OK)
        fprintf(stderr, "natgrad: rank %d: %llu collectives, %.3f s in collectives (waiting for the other ranks included)\n",
                g_comm->rank, g_comm->calls, g_comm->comm_s);
    if (g_comm && g_comm->world > 1 && rc != NG_EXIT_OK) {
        fprintf(stderr, "natgrad: rank %d of %d failed (exit %d): ending every rank\n", g_comm->rank, g_comm->world, rc);
        fflush(stderr);
        ng_comm_abort(g_comm, rc);
    }
    ng_comm_free(g_comm);
    g_comm = NULL;
    return rc;
}
