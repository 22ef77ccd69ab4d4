/* natgrad/comm.h: the communicator of a data-parallel run (host/comm/).
 *
 * `mpirun -np N natgrad ...` starts N ranks; each opens one communicator with ng_comm_init. Three
 * implementations sit behind the same calls:
 *   single  one rank (no launcher, or a build without MPI): every collective is the identity;
 *   mpi     Open MPI collectives on host memory (the CPU backend's device buffers are host
 *           memory; a CUDA buffer is staged through a host copy when NCCL is not available);
 *   nccl    NCCL collectives on the backend's CUDA stream (CUDA builds linked with libnccl),
 *           bootstrapped by broadcasting an ncclUniqueId over MPI; MPI stays for host scalars.
 * NATGRAD_COMM=mpi in the environment opens MPI (and so NCCL on a CUDA backend) even for one rank:
 * the NCCL smoke test of a one-GPU machine (bench/nccl_smoke.sh).
 * The rank, world size and local rank come from the launcher (MPI_Comm_rank, and Open MPI's
 * OMPI_COMM_WORLD_LOCAL_RANK for the device index).
 *
 * Failure: every collective waits at most timeout_s (polling a non-blocking MPI request, or the
 * CUDA stream and ncclCommGetAsyncError); when it expires the call returns NG_ERR_IO naming the
 * collective, this rank and the timeout, so the command can print it and ng_comm_abort the job
 * instead of hanging forever on a rank that died or stopped. A rank that dies outright is also
 * noticed by mpirun, which ends the others.
 *
 * Reductions are sums. The order of the partial sums is fixed by the implementation and the world
 * size, so a run is bit-reproducible for a given N, but N ranks differ from one rank by the
 * reordering of that sum (README "Data parallelism"). */
#ifndef NATGRAD_COMM_H
#define NATGRAD_COMM_H

#include <stddef.h>

#include "natgrad/backend.h"
#include "natgrad/dtype.h"
#include "natgrad/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ng_comm_kind { NG_COMM_SINGLE = 0, NG_COMM_MPI = 1, NG_COMM_NCCL = 2 } ng_comm_kind;

typedef struct ng_comm {
    ng_comm_kind kind;
    int rank, world;         /* this rank, number of ranks */
    int local_rank;          /* rank among the ranks of this machine (the CUDA device index) */
    double timeout_s;        /* the longest a collective may wait (> 0) */
    double comm_s;           /* seconds spent in collectives so far (benchmarks) */
    unsigned long long calls;/* collectives so far */
    void *mpi;               /* the MPI communicator (a private duplicate of MPI_COMM_WORLD) */
    void *nccl;              /* the NCCL communicator, after ng_comm_attach on a CUDA backend */
    void *stage;             /* host staging buffer for CUDA buffers over MPI */
    size_t stage_bytes;
    int owns_mpi;            /* this communicator called MPI_Init (and finalises) */
    /* all-reduces in flight (ng_comm_allreduce_start .. ng_comm_wait_all) */
    int n_pending;
    void *pending;           /* NG_COMM_MAX_PENDING records (comm.c) */
    size_t stage_used;       /* bytes of stage held by staged slices in flight */
    void *comm_stream;       /* NCCL: the communication stream (created at attach) */
    void *ev_ready, *ev_done;/* NCCL: "the slice's data is final" on the backend's stream; "the last
                              * started slice is reduced" on the communication stream */
    unsigned long long captured; /* NCCL: collectives recorded into CUDA graphs so far (ng_comm_allreduce
                              * and ng_comm_bcast on a capturing stream) */
} ng_comm;

/* The most all-reduces in flight at once (ng_comm_allreduce_start refuses more). */
#define NG_COMM_MAX_PENDING 64

/* What this build can do. */
int ng_comm_mpi_compiled(void);
int ng_comm_nccl_compiled(void);
/* The world size the launcher announced in the environment (OMPI_COMM_WORLD_SIZE, PMI_SIZE,
 * PMIX_SIZE), or 1 when none did. */
int ng_comm_launched_world(void);

/* Open the communicator: MPI when started by a launcher with more than one rank (NG_ERR_UNSUPPORTED
 * naming the build when MPI is not compiled in), else single. timeout_s > 0. *out is freed with
 * ng_comm_free. */
ng_status ng_comm_init(ng_comm **out, double timeout_s);
/* Bind the communicator to the backend whose buffers it will reduce: on a CUDA backend with NCCL
 * compiled in and more than one rank this creates the NCCL communicator (ncclUniqueId from rank 0
 * over MPI); otherwise nothing. Every rank must call it. */
ng_status ng_comm_attach(ng_comm *c, ng_backend *be);
/* Finalise (MPI_Finalize when this communicator initialised MPI) and free. NULL is fine. */
void ng_comm_free(ng_comm *c);
/* End every rank of the job at once (MPI_Abort); returns only for a single-rank communicator. */
void ng_comm_abort(ng_comm *c, int code);

/* In-place sum over the ranks of count elements (NG_F32 or NG_F64) of a device buffer of be.
 * `what` names the data in error messages ("gradient"). The result is on the device when the
 * call returns (the backend's queued work is waited for first).
 * CUDA graphs: on NCCL, while the backend's stream is capturing (ng_graph_begin), ng_comm_allreduce
 * and ng_comm_bcast record the collective into the graph (NCCL >= 2.9) and return at once (c->captured
 * counts them); every launch of the graph runs it, so every rank must launch its graphs holding
 * collectives in the same order (NCCL matches collectives by issue order; the trainer checks it,
 * natgrad/train.h). ng_comm_wait_device then waits for the launch within timeout_s. Not while
 * started slices are in flight (NG_ERR_UNSUPPORTED). The MPI communicator cannot be captured (it
 * waits on the host): a CUDA buffer staged over MPI fails the capture. */
ng_status ng_comm_allreduce(ng_comm *c, ng_backend *be, ng_dtype dt, void *buf, size_t count,
                            const char *what);
/* NCCL: wait, within timeout_s, for the work queued on be's stream (a graph launch holding
 * collectives); an error names `what`, this rank and the timeout as a collective's does. Other
 * communicators: nothing to wait for (NG_OK). */
ng_status ng_comm_wait_device(ng_comm *c, ng_backend *be, const char *what);
/* The same sum, started and finished apart, so a caller can compute while it travels (the trainer's
 * gradient buckets, overlapped with the backward pass; README "Data parallelism"):
 *   start  the buffer's contents are final in the backend's queue order at the call: on MPI the
 *          backend is synchronised (CPU: nothing queued) or, for CUDA buffers without NCCL, the
 *          slice is copied to the host staging buffer now, then MPI_Iallreduce starts; on NCCL an
 *          event on the backend's stream orders ncclAllReduce on the communicator's own
 *          communication stream after the work already queued, and the call returns at once.
 *          Until the wait the caller must not read or write the buffer.
 *   progress  tests the requests in flight (Open MPI moves non-blocking collectives only inside MPI
 *          calls; call it now and then while computing); never waits.
 *   wait_all  waits for every started slice, each within timeout_s from the start of the wait
 *          (the message names the slice's `what`); on return the sums are in the buffers and the
 *          backend's later work is ordered after them (NCCL: its stream waits for the last event).
 * Every rank must start the same slices (counts) in the same order; other collectives of c may run
 * in between when every rank runs them in the same place (MPI matches them in that order; on NCCL
 * the backend's stream first waits for the slices in flight). The sum of each element is the one
 * ng_comm_allreduce computes: Open MPI's non-blocking all-reduce sums in place over a binomial tree
 * whatever the count (tests/test_comm.c checks slices against the whole); NCCL chooses ring or tree
 * per message, so on NCCL with more than 2 ranks slices may reassociate the sum of an element. */
/* CUDA graphs (NCCL): started while the backend's stream captures, the slices are recorded too: the
 * event on the backend's stream forks the communication stream into the capture, and wait_all, which
 * then waits for nothing, joins it back (the backend's stream waits for ev_done); every launch runs the
 * slices beside the captured work that follows them, and ng_comm_wait_device waits for the launch. */
ng_status ng_comm_allreduce_start(ng_comm *c, ng_backend *be, ng_dtype dt, void *buf, size_t count,
                                  const char *what);
ng_status ng_comm_progress(ng_comm *c);
ng_status ng_comm_wait_all(ng_comm *c, ng_backend *be);
/* Broadcast count elements of a device buffer of be from rank root to every rank. */
ng_status ng_comm_bcast(ng_comm *c, ng_backend *be, ng_dtype dt, void *buf, size_t count,
                        int root, const char *what);
/* In-place sum of host doubles (log columns, scalars). */
ng_status ng_comm_allreduce_host(ng_comm *c, double *x, size_t count, const char *what);
/* A shard's place in the whole: every rank passes its count, and learns the sum of the counts of
 * the ranks before it (*first) and of all ranks (*total). One host all-reduce of world doubles. */
ng_status ng_comm_shard_offset(ng_comm *c, long long count, long long *first, long long *total, const char *what);
/* Broadcast host bytes from root. */
ng_status ng_comm_bcast_host(ng_comm *c, void *x, size_t bytes, int root, const char *what);
/* Every rank reaches this point (within the timeout). */
ng_status ng_comm_barrier(ng_comm *c, const char *what);

#ifdef __cplusplus
}
#endif
#endif
