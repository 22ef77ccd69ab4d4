/* shim_nccl.cpp: the NCCL calls natgrad's communicator uses (host/comm/comm.c), implemented on MPI
 * for the SIMT emulator, so the NCCL code path runs under `mpirun -np N` on a machine without GPUs.
 * Test-only. Compiled against the real <nccl.h>; built into libsimt.a when MPI and nccl.h exist.
 *
 * Validation follows NCCL's documented behaviour: NULL handles and out-of-range ranks, roots,
 * data types and reduction ops are ncclInvalidArgument; buffers must be device memory of the
 * communicator's device large enough for count elements (the send buffer of a broadcast only on
 * the root) and the stream must belong to that device (ncclInvalidArgument otherwise); two ranks of
 * one communicator on the same device are refused at ncclCommInitRank ("Duplicate GPU detected",
 * ncclInvalidUsage), as NCCL does. Ranks must pass the same ncclUniqueId (checked over MPI).
 * Emulation limits (each reported with a "simt:" note): nranks must equal the MPI world size, MPI
 * must be initialised first; data types float, double, int32, int64, uint8; ops sum, prod, max,
 * min, avg (floating types). A collective starts a non-blocking MPI call and stays in flight on its
 * stream (stream_add_pending, simt_internal.h) until a query of the stream or of an event recorded
 * after it sees it complete, or a synchronize, a cudaStreamWaitEvent on such an event or later work
 * on the stream finishes it; so a dead peer shows as a stream that never completes (the
 * communicator's timeout), and a buffer read before the collective's event is waited for holds
 * whatever MPI has written so far. MPI moves the collective only inside MPI calls (those tests).
 * CUDA graphs: an all-reduce or broadcast issued on a capturing stream is checked at the call and
 * recorded as a graph node (simt_graph.cpp), as NCCL >= 2.9 records it; each cudaGraphLaunch starts it
 * then on the launch stream, where the graph's next node waits for it. NCCL's rule: whether a
 * collective is captured is uniform over the ranks, and a launch of a graph holding one is collective,
 * each rank launching the graph of the same capture. The shim checks it: each collective carries its
 * capture id on the communicator (0 when issued eagerly; the ranks' ids agree when they capture
 * together), reduced over the ranks (max of id and of -id) beside the data, and completing with ids
 * that differ aborts with a "simt:" report naming them (a GPU would deadlock or mix up data). */
#include <cuda_runtime.h>
#define OMPI_SKIP_MPICXX 1
#include <mpi.h>
#include <nccl.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <functional>

#include "simt_internal.h"

using namespace ng_simt;

struct ncclComm {
    MPI_Comm mpi;
    int rank, nranks, device;
    long long captured; /* collectives recorded into graphs so far: the id of the next is captured + 1 */
};

static bool mpi_ready(const char *fn) {
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (!inited || finalized) {
        note("simt: %s: the NCCL shim runs on MPI: call MPI_Init first", fn);
        return false;
    }
    return true;
}

extern "C" const char *ncclGetErrorString(ncclResult_t r) {
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError: return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
    }
}

extern "C" ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    if (!id) return ncclInvalidArgument;
    memset(id, 0, sizeof *id);
    /* distinct per call and process: pid, clock and a counter */
    static unsigned counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t w[4] = {(uint64_t)getpid(), (uint64_t)ts.tv_sec, (uint64_t)ts.tv_nsec, (uint64_t)++counter};
    memcpy(id->internal, w, sizeof w);
    return ncclSuccess;
}

extern "C" ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
    if (!comm) return ncclInvalidArgument;
    *comm = NULL;
    if (nranks < 1 || rank < 0 || rank >= nranks) {
        note("simt: ncclCommInitRank: rank %d of %d ranks is out of range", rank, nranks);
        return ncclInvalidArgument;
    }
    if (!mpi_ready("ncclCommInitRank")) return ncclInvalidUsage;
    int world = 0, wrank = 0, dev = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    MPI_Comm_rank(MPI_COMM_WORLD, &wrank);
    if (nranks != world) {
        note("simt: ncclCommInitRank: the shim needs nranks (%d) = the MPI world size (%d)", nranks, world);
        return ncclInvalidUsage;
    }
    cudaGetDevice(&dev);
    /* every rank's (rank, device, id) at once: the ranks must be distinct, the devices too, the ids equal */
    struct entry { int rank, device; char id[NCCL_UNIQUE_ID_BYTES]; };
    entry mine;
    mine.rank = rank;
    mine.device = dev;
    memcpy(mine.id, id.internal, NCCL_UNIQUE_ID_BYTES);
    entry *all = (entry *)malloc(sizeof(entry) * (size_t)world);
    if (!all) return ncclSystemError;
    if (MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, MPI_COMM_WORLD) != MPI_SUCCESS) {
        free(all);
        return ncclSystemError;
    }
    ncclResult_t r = ncclSuccess;
    for (int i = 0; i < world && r == ncclSuccess; i++) {
        if (memcmp(all[i].id, mine.id, NCCL_UNIQUE_ID_BYTES) != 0) {
            note("simt: ncclCommInitRank: MPI rank %d passed another ncclUniqueId than MPI rank %d", i, wrank);
            r = ncclInvalidUsage;
        }
        for (int j = 0; j < i && r == ncclSuccess; j++) {
            if (all[i].rank == all[j].rank) {
                note("simt: ncclCommInitRank: two processes claim rank %d", all[i].rank);
                r = ncclInvalidUsage;
            } else if (all[i].device == all[j].device) {
                note("simt: ncclCommInitRank: Duplicate GPU detected : rank %d and rank %d both on CUDA device %d",
                     all[j].rank, all[i].rank, all[i].device);
                r = ncclInvalidUsage;
            }
        }
    }
    free(all);
    if (r != ncclSuccess) return r;
    ncclComm *c = (ncclComm *)calloc(1, sizeof *c);
    if (!c) return ncclSystemError;
    /* the communicator's ranks ordered by their NCCL rank */
    if (MPI_Comm_split(MPI_COMM_WORLD, 0, rank, &c->mpi) != MPI_SUCCESS) {
        free(c);
        return ncclSystemError;
    }
    c->rank = rank;
    c->nranks = nranks;
    c->device = dev;
    *comm = c;
    return ncclSuccess;
}

static ncclResult_t release(ncclComm_t comm) {
    if (!comm) return ncclSuccess;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm->mpi);
    free(comm);
    return ncclSuccess;
}

extern "C" ncclResult_t ncclCommDestroy(ncclComm_t comm) { return release(comm); }
extern "C" ncclResult_t ncclCommAbort(ncclComm_t comm) { return release(comm); }

extern "C" ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *asyncError) {
    if (!comm || !asyncError) return ncclInvalidArgument;
    *asyncError = ncclSuccess;
    return ncclSuccess;
}

/* A collective in flight: its MPI requests (req[0]: the check of NCCL's capture rule, req[1]: the data)
 * and, for ncclAvg, the division that follows the sum. sig: the collective's capture id on this rank
 * (0: issued eagerly), then the maximum over the ranks of sig and of -sig. */
struct inflight {
    MPI_Request req[2];
    long long sig[2];
    const char *what;
    int rank;
    void *buf;
    size_t count;
    ncclDataType_t type;
    int nranks;
    bool avg;
};

static void finish(inflight *f) {
    /* NCCL: whether a collective is captured must be uniform over the ranks, and the ranks must launch
     * the graphs of the same collective capture; a GPU would deadlock or mix up data here */
    if (f->sig[0] != -f->sig[1])
        fatal("%s on rank %d: the ranks ran different collectives here: capture ids %lld to %lld (0: not captured). NCCL "
              "requires every rank to launch the graph of the same collective capture, in the same order, or none",
              f->what, f->rank, -f->sig[1], f->sig[0]);
    if (f->avg) {
        for (size_t i = 0; i < f->count; i++) {
            if (f->type == ncclFloat64) ((double *)f->buf)[i] /= f->nranks;
            else ((float *)f->buf)[i] /= (float)f->nranks;
        }
    }
    delete f;
}

static bool inflight_test(void *p) {
    inflight *f = (inflight *)p;
    int done = 0;
    if (MPI_Testall(2, f->req, &done, MPI_STATUSES_IGNORE) != MPI_SUCCESS) done = 1; /* a failed request ends too */
    if (done) finish(f);
    return done != 0;
}

static void inflight_wait(void *p) {
    inflight *f = (inflight *)p;
    MPI_Waitall(2, f->req, MPI_STATUSES_IGNORE);
    finish(f);
}

static void enqueue(inflight *f, cudaStream_t stream) {
    pending_op op;
    op.test = inflight_test;
    op.wait = inflight_wait;
    op.ctx = f;
    stream_add_pending(stream, op);
}

static MPI_Datatype mpi_type(ncclDataType_t t, size_t *size, bool *floating) {
    *floating = false;
    switch (t) {
    case ncclFloat32: *size = 4; *floating = true; return MPI_FLOAT;
    case ncclFloat64: *size = 8; *floating = true; return MPI_DOUBLE;
    case ncclInt32: *size = 4; return MPI_INT32_T;
    case ncclInt64: *size = 8; return MPI_INT64_T;
    case ncclUint8: *size = 1; return MPI_UINT8_T;
    default: *size = 0; return MPI_DATATYPE_NULL;
    }
}

/* Common checks: communicator, type, buffer on the communicator's device, stream of that device. */
static ncclResult_t check(const char *fn, ncclComm_t comm, ncclDataType_t t, const void *buf, const char *bname,
                          size_t count, cudaStream_t stream, MPI_Datatype *mt, size_t *size, bool *floating) {
    if (!comm) return ncclInvalidArgument;
    if ((int)t < 0 || (int)t >= (int)ncclNumTypes) {
        note("simt: %s: data type %d is not an ncclDataType_t", fn, (int)t);
        return ncclInvalidArgument;
    }
    *mt = mpi_type(t, size, floating);
    if (*mt == MPI_DATATYPE_NULL) {
        note("simt: %s: data type %d is not emulated (float, double, int32, int64, uint8)", fn, (int)t);
        return ncclInvalidArgument;
    }
    if (!stream_valid(stream) || stream_device(stream) != comm->device) {
        note("simt: %s: the stream is not a stream of the communicator's device %d", fn, comm->device);
        return ncclInvalidArgument;
    }
    if (buf && (!dev_range(buf, count * *size) || dev_device(buf) != comm->device)) {
        note("simt: %s: %s %p is not device memory of device %d holding %zu elements", fn, bname, buf, comm->device, count);
        return ncclInvalidArgument;
    }
    if (!buf && count > 0) {
        note("simt: %s: %s is NULL", fn, bname);
        return ncclInvalidArgument;
    }
    return ncclSuccess;
}

/* The check of NCCL's capture rule, started before the data's collective on every rank. */
static inflight *new_inflight(const char *what, ncclComm_t comm, long long sig, void *buf, size_t count,
                              ncclDataType_t type, bool avg) {
    inflight *f = new inflight();
    f->what = what;
    f->rank = comm->rank;
    f->buf = buf;
    f->count = count;
    f->type = type;
    f->nranks = comm->nranks;
    f->avg = avg;
    f->sig[0] = sig;
    f->sig[1] = -sig;
    if (MPI_Iallreduce(MPI_IN_PLACE, f->sig, 2, MPI_LONG_LONG, MPI_MAX, comm->mpi, &f->req[0]) != MPI_SUCCESS) {
        delete f;
        return NULL;
    }
    return f;
}

/* f's data request started with MPI status rc (in f->req[1]): queued on stream, or undone */
static ncclResult_t post_inflight(inflight *f, int rc, cudaStream_t stream) {
    if (rc != MPI_SUCCESS) {
        MPI_Wait(&f->req[0], MPI_STATUS_IGNORE);
        delete f;
        return ncclRemoteError;
    }
    enqueue(f, stream);
    return ncclSuccess;
}

static ncclResult_t start_allreduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype,
                                    MPI_Datatype mt, size_t size, MPI_Op mop, bool avg, ncclComm_t comm, cudaStream_t stream,
                                    long long sig) {
    void *rv = dev_view(recvbuff);
    const void *sv = dev_view(sendbuff);
    if (!rv || !sv) {
        note("simt: ncclAllReduce: a buffer was freed before the collective ran");
        return ncclInvalidArgument;
    }
    if (sv != rv) memmove(rv, sv, count * size);
    inflight *f = new_inflight("ncclAllReduce", comm, sig, rv, count, datatype, avg);
    if (!f) return ncclRemoteError;
    return post_inflight(f, MPI_Iallreduce(MPI_IN_PLACE, rv, (int)count, mt, mop, comm->mpi, &f->req[1]), stream);
}

static ncclResult_t start_bcast(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype,
                                MPI_Datatype mt, size_t size, int root, ncclComm_t comm, cudaStream_t stream, long long sig) {
    void *rv = dev_view(recvbuff);
    if (!rv || (comm->rank == root && !dev_view(sendbuff))) {
        note("simt: ncclBroadcast: a buffer was freed before the collective ran");
        return ncclInvalidArgument;
    }
    if (comm->rank == root && sendbuff != recvbuff) memmove(rv, dev_view(sendbuff), count * size);
    inflight *f = new_inflight("ncclBroadcast", comm, sig, rv, count, datatype, false);
    if (!f) return ncclRemoteError;
    return post_inflight(f, MPI_Ibcast(rv, (int)count, mt, root, comm->mpi, &f->req[1]), stream);
}

/* A collective issued on a capturing stream becomes a graph node (NCCL >= 2.9 does the same): the
 * arguments are checked now, the collective starts at each replay. Every rank of the communicator
 * must replay its graphs' collectives in the same order (MPI, like NCCL, matches them by order). */
static ncclResult_t record(const char *what, cudaStream_t stream, std::function<ncclResult_t()> start) {
    cudaError_t e = capture_node(stream, what, [start, what]() -> cudaError_t {
        ncclResult_t r = start();
        if (r == ncclSuccess) return cudaSuccess;
        note("simt: %s replayed from a graph failed: %s", what, ncclGetErrorString(r));
        return cudaErrorUnknown;
    });
    return e == cudaSuccess ? ncclSuccess : ncclInvalidUsage;
}

extern "C" ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype,
                                      ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
    MPI_Datatype mt;
    size_t size;
    bool floating;
    ncclResult_t r = check("ncclAllReduce", comm, datatype, sendbuff, "sendbuff", count, stream, &mt, &size, &floating);
    if (r == ncclSuccess) r = check("ncclAllReduce", comm, datatype, recvbuff, "recvbuff", count, stream, &mt, &size, &floating);
    if (r != ncclSuccess) return r;
    MPI_Op mop;
    switch (op) {
    case ncclSum: case ncclAvg: mop = MPI_SUM; break;
    case ncclProd: mop = MPI_PROD; break;
    case ncclMax: mop = MPI_MAX; break;
    case ncclMin: mop = MPI_MIN; break;
    default:
        note("simt: ncclAllReduce: reduction op %d is not a built-in ncclRedOp_t", (int)op);
        return ncclInvalidArgument;
    }
    if (op == ncclAvg && !floating) {
        note("simt: ncclAllReduce: ncclAvg is emulated for floating types only");
        return ncclInvalidArgument;
    }
    if (count == 0) return ncclSuccess;
    if (count > 2147483647u) return ncclInvalidArgument;
    if (capturing(stream)) { /* a graph node: the sum runs at each replay, on the launch stream */
        const long long id = comm->captured + 1;
        ncclResult_t r = record("ncclAllReduce", stream, [=]() -> ncclResult_t {
            return start_allreduce(sendbuff, recvbuff, count, datatype, mt, size, mop, op == ncclAvg, comm, replay_stream(), id);
        });
        if (r == ncclSuccess) comm->captured = id;
        return r;
    }
    return start_allreduce(sendbuff, recvbuff, count, datatype, mt, size, mop, op == ncclAvg, comm, stream, 0);
}

extern "C" ncclResult_t ncclBroadcast(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, int root,
                                      ncclComm_t comm, cudaStream_t stream) {
    MPI_Datatype mt;
    size_t size;
    bool floating;
    ncclResult_t r;
    if (!comm) return ncclInvalidArgument;
    if (root < 0 || root >= comm->nranks) {
        note("simt: ncclBroadcast: root %d of %d ranks", root, comm->nranks);
        return ncclInvalidArgument;
    }
    r = check("ncclBroadcast", comm, datatype, recvbuff, "recvbuff", count, stream, &mt, &size, &floating);
    if (r == ncclSuccess && comm->rank == root)
        r = check("ncclBroadcast", comm, datatype, sendbuff, "sendbuff", count, stream, &mt, &size, &floating);
    if (r != ncclSuccess) return r;
    if (count == 0) return ncclSuccess;
    if (count > 2147483647u) return ncclInvalidArgument;
    if (capturing(stream)) {
        const long long id = comm->captured + 1;
        ncclResult_t r = record("ncclBroadcast", stream, [=]() -> ncclResult_t {
            return start_bcast(sendbuff, recvbuff, count, datatype, mt, size, root, comm, replay_stream(), id);
        });
        if (r == ncclSuccess) comm->captured = id;
        return r;
    }
    return start_bcast(sendbuff, recvbuff, count, datatype, mt, size, root, comm, stream, 0);
}
