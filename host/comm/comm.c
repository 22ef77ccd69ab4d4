/* comm.c: the communicator (natgrad/comm.h): single rank, MPI (NG_HAVE_MPI), NCCL (NG_HAVE_NCCL,
 * CUDA builds). Every collective is started non-blocking and polled against the timeout, so a dead
 * or stopped rank ends in an error message instead of a hang.
 * Must not: print, or implement a transport of its own (MPI and NCCL move every byte). */
#include "natgrad/comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "natgrad/log.h"

#ifdef NG_HAVE_MPI
#include <mpi.h>
#endif
#ifdef NG_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#endif

int ng_comm_mpi_compiled(void) {
#ifdef NG_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

int ng_comm_nccl_compiled(void) {
#ifdef NG_HAVE_NCCL
    return 1;
#else
    return 0;
#endif
}

static int env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    char *end;
    long x;
    if (!v || !*v) return dflt;
    x = strtol(v, &end, 10);
    return *end || x < 0 || x > 1 << 20 ? dflt : (int)x;
}

int ng_comm_launched_world(void) {
    int w = env_int("OMPI_COMM_WORLD_SIZE", 0);
    if (w < 1) w = env_int("PMIX_SIZE", 0);
    if (w < 1) w = env_int("PMI_SIZE", 0);
    return w < 1 ? 1 : w;
}

#if defined(NG_HAVE_MPI) || defined(NG_HAVE_NCCL)
static const char *kind_name(const ng_comm *c) {
    return c->kind == NG_COMM_NCCL ? "NCCL" : c->kind == NG_COMM_MPI ? "MPI" : "single";
}

/* Wait with a short back-off: the first polls spin, later ones sleep up to 1 ms. */
static void backoff(int *polls) {
    struct timespec ts = {0, 0};
    if (++*polls < 64) return;
    ts.tv_nsec = *polls < 1024 ? 20000 : 1000000;
    nanosleep(&ts, NULL);
}

static ng_status timed_out(const ng_comm *c, const char *op, const char *what, double waited) {
    return ng_error(NG_ERR_IO,
                    "rank %d of %d: %s of %s did not complete within %g s (waited %.3g s, %s): another rank died, "
                    "hangs or left the run (raise --comm-timeout if steps are this slow)",
                    c->rank, c->world, op, what ? what : "data", c->timeout_s, waited, kind_name(c));
}
#endif

#ifdef NG_HAVE_MPI
static ng_status mpi_wait(ng_comm *c, MPI_Request *req, const char *op, const char *what) {
    double t0 = ng_time_s();
    int done = 0, polls = 0, rc;
    for (;;) {
        rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) {
            char msg[MPI_MAX_ERROR_STRING];
            int len = 0;
            MPI_Error_string(rc, msg, &len);
            return ng_error(NG_ERR_IO, "rank %d of %d: %s of %s failed: %s", c->rank, c->world, op,
                            what ? what : "data", msg);
        }
        if (done) return NG_OK;
        if (ng_time_s() - t0 > c->timeout_s) return timed_out(c, op, what, ng_time_s() - t0);
        backoff(&polls);
    }
}

static MPI_Datatype mpi_type(ng_dtype dt) { return dt == NG_F64 ? MPI_DOUBLE : MPI_FLOAT; }
#endif

/* One all-reduce in flight (ng_comm_allreduce_start). */
typedef struct pending_slice {
#ifdef NG_HAVE_MPI
    MPI_Request req;
#endif
    void *dev;        /* staged (CUDA buffer over MPI): the device slice the sum is copied back to */
    void *host;       /* what MPI reduces: the buffer itself, or its copy in c->stage */
    size_t bytes;
    const char *what;
    int done;         /* the request completed (MPI_Test said so) */
} pending_slice;

ng_status ng_comm_init(ng_comm **out, double timeout_s) {
    ng_comm *c;
    int launched = ng_comm_launched_world();
    const char *force = getenv("NATGRAD_COMM");
    int force_mpi = force && strcmp(force, "mpi") == 0;
    *out = NULL;
    if (!(timeout_s > 0.0) || timeout_s > 1e6)
        return ng_error(NG_ERR_INVALID_ARG, "communicator: timeout %g s must be in (0, 1e6]", timeout_s);
#ifndef NG_HAVE_MPI
    if (launched > 1)
        return ng_error(NG_ERR_UNSUPPORTED,
                        "a launcher started %d ranks, but this natgrad was built without MPI (install libopenmpi-dev "
                        "and rebuild: the build line says 'mpi: yes')", launched);
#endif
    c = (ng_comm *)calloc(1, sizeof *c);
    if (!c) return ng_error(NG_ERR_OOM, "communicator: out of memory");
    c->kind = NG_COMM_SINGLE;
    c->world = 1;
    c->timeout_s = timeout_s;
    c->pending = calloc(NG_COMM_MAX_PENDING, sizeof(pending_slice));
    if (!c->pending) {
        free(c);
        return ng_error(NG_ERR_OOM, "communicator: out of memory");
    }
#ifdef NG_HAVE_MPI
    if (launched > 1 || force_mpi) {
        int inited = 0, provided = 0;
        MPI_Comm *dup = (MPI_Comm *)malloc(sizeof *dup);
        if (!dup) {
            free(c->pending);
            free(c);
            return ng_error(NG_ERR_OOM, "communicator: out of memory");
        }
        MPI_Initialized(&inited);
        if (!inited) {
            /* Pin Open MPI's non-blocking all-reduce (libnbc) to its binomial tree, the one it picks for
             * in-place sums anyway: each element is then summed in the same order whatever the count,
             * so the gradient buckets of --comm-overlap 1 give the single all-reduce's sums bit for bit
             * (ring and Rabenseifner split the message by its length; tests/test_comm.c catches them). */
            const char *alg = getenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm");
            if (!alg) setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "2", 0);
            else if (strcmp(alg, "0") != 0 && strcmp(alg, "2") != 0)
                ng_log(NG_LOG_WARN, "comm",
                       "OMPI_MCA_coll_libnbc_iallreduce_algorithm=%s: all-reduces of different lengths may sum an element "
                       "in different orders, so --comm-overlap 1 may differ from 0 in the last bits (unset it, or use 2)", alg);
            if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
                free(dup);
                free(c->pending);
                free(c);
                return ng_error(NG_ERR_IO, "MPI_Init failed (started by mpirun with %d ranks)", launched);
            }
            c->owns_mpi = 1;
        }
        MPI_Comm_dup(MPI_COMM_WORLD, dup);
        MPI_Comm_set_errhandler(*dup, MPI_ERRORS_RETURN);
        MPI_Comm_rank(*dup, &c->rank);
        MPI_Comm_size(*dup, &c->world);
        c->mpi = dup;
        c->kind = NG_COMM_MPI;
        c->local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", env_int("MPI_LOCALRANKID", c->rank));
    }
#else
    if (force_mpi) {
        free(c->pending);
        free(c);
        return ng_error(NG_ERR_UNSUPPORTED, "NATGRAD_COMM=mpi, but this natgrad was built without MPI");
    }
#endif
    *out = c;
    return NG_OK;
}

ng_status ng_comm_attach(ng_comm *c, ng_backend *be) {
    if (!c || !be) return ng_error(NG_ERR_INVALID_ARG, "communicator attach: NULL argument");
#ifdef NG_HAVE_NCCL
    if (c->kind == NG_COMM_MPI && be->kind == NG_DEVICE_CUDA && !c->nccl) {
        ncclUniqueId id;
        ncclComm_t comm = NULL;
        ncclResult_t r;
        memset(&id, 0, sizeof id);
        if (c->rank == 0 && (r = ncclGetUniqueId(&id)) != ncclSuccess)
            return ng_error(NG_ERR_BACKEND, "rank 0: ncclGetUniqueId: %s", ncclGetErrorString(r));
        NG_TRY(ng_comm_bcast_host(c, &id, sizeof id, 0, "the NCCL unique id"));
        if (cudaSetDevice(be->device_index) != cudaSuccess)
            return ng_error(NG_ERR_BACKEND, "rank %d: cudaSetDevice(%d) failed", c->rank, be->device_index);
        r = ncclCommInitRank(&comm, c->world, id, c->rank);
        if (r != ncclSuccess)
            return ng_error(NG_ERR_BACKEND, "rank %d of %d: ncclCommInitRank on cuda:%d: %s (NCCL needs one GPU per rank)",
                            c->rank, c->world, be->device_index, ncclGetErrorString(r));
        c->nccl = comm;
        c->kind = NG_COMM_NCCL;
    }
#endif
    return NG_OK;
}

void ng_comm_free(ng_comm *c) {
    if (!c) return;
#ifdef NG_HAVE_NCCL
    if (c->nccl) ncclCommDestroy((ncclComm_t)c->nccl);
#endif
#ifdef NG_HAVE_MPI
    if (c->mpi) {
        MPI_Comm_free((MPI_Comm *)c->mpi);
        free(c->mpi);
    }
    if (c->owns_mpi) MPI_Finalize();
#endif
#ifdef NG_HAVE_NCCL
    if (c->ev_ready) cudaEventDestroy((cudaEvent_t)c->ev_ready);
    if (c->ev_done) cudaEventDestroy((cudaEvent_t)c->ev_done);
    if (c->comm_stream) cudaStreamDestroy((cudaStream_t)c->comm_stream);
#endif
    free(c->pending);
    free(c->stage);
    free(c);
}

void ng_comm_abort(ng_comm *c, int code) {
#ifdef NG_HAVE_NCCL
    if (c && c->nccl) ncclCommAbort((ncclComm_t)c->nccl), c->nccl = NULL;
#endif
#ifdef NG_HAVE_MPI
    if (c && c->mpi) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    (void)c;
    (void)code;
}

#ifdef NG_HAVE_MPI
static ng_status stage(ng_comm *c, size_t bytes) {
    void *p;
    if (bytes <= c->stage_bytes) return NG_OK;
    p = realloc(c->stage, bytes);
    if (!p) return ng_error(NG_ERR_OOM, "communicator: staging buffer of %zu bytes", bytes);
    c->stage = p;
    c->stage_bytes = bytes;
    return NG_OK;
}
#endif

#ifdef NG_HAVE_NCCL
/* 1 while the backend's stream is capturing a CUDA graph (ng_graph_begin) */
static int capturing(const ng_backend *be) {
    enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    return be->kind == NG_DEVICE_CUDA && cudaStreamIsCapturing((cudaStream_t)be->stream, &cs) == cudaSuccess &&
           cs != cudaStreamCaptureStatusNone;
}

static ng_status nccl_wait(ng_comm *c, ng_backend *be, const char *op, const char *what) {
    double t0 = ng_time_s();
    int polls = 0;
    for (;;) {
        cudaError_t e = cudaStreamQuery((cudaStream_t)be->stream);
        ncclResult_t async = ncclSuccess;
        if (e == cudaSuccess) return NG_OK;
        if (e != cudaErrorNotReady)
            return ng_error(NG_ERR_BACKEND, "rank %d: %s of %s: %s", c->rank, op, what, cudaGetErrorString(e));
        ncclCommGetAsyncError((ncclComm_t)c->nccl, &async);
        if (async != ncclSuccess && async != ncclInProgress)
            return ng_error(NG_ERR_BACKEND, "rank %d: %s of %s: NCCL: %s", c->rank, op, what, ncclGetErrorString(async));
        if (ng_time_s() - t0 > c->timeout_s) return timed_out(c, op, what, ng_time_s() - t0);
        backoff(&polls);
    }
}
#endif

static ng_status check_args(const ng_comm *c, ng_backend *be, ng_dtype dt, const void *buf, size_t count,
                            const char *op, const char *what) {
    if (!c || !be) return ng_error(NG_ERR_INVALID_ARG, "%s of %s: NULL communicator or backend", op, what);
    if (dt != NG_F32 && dt != NG_F64)
        return ng_error(NG_ERR_INVALID_ARG, "%s of %s: dtype %s (f32 or f64 only)", op, what, ng_dtype_name(dt));
    if (count > 0 && !buf) return ng_error(NG_ERR_INVALID_ARG, "%s of %s: NULL buffer", op, what);
    if (count > (size_t)1 << 40) return ng_error(NG_ERR_INVALID_ARG, "%s of %s: %zu elements", op, what, count);
    return NG_OK;
}

/* The device collectives: root < 0 is a sum all-reduce, else a broadcast from root. */
static ng_status device_collective(ng_comm *c, ng_backend *be, ng_dtype dt, void *buf, size_t count, int root,
                                   const char *what) {
    const char *op = root < 0 ? "all-reduce" : "broadcast";
    double t0;
    ng_status s = NG_OK;
    NG_TRY(check_args(c, be, dt, buf, count, op, what));
    if (root >= c->world) return ng_error(NG_ERR_INVALID_ARG, "%s of %s: root %d of %d ranks", op, what, root, c->world);
    if ((c->world == 1 && !c->nccl) || count == 0) return NG_OK; /* one NCCL rank still runs (the smoke test) */
    t0 = ng_time_s();
#ifdef NG_HAVE_NCCL
    if (c->nccl) {
        ncclResult_t r;
        enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
        if (be->kind != NG_DEVICE_CUDA)
            return ng_error(NG_ERR_INVALID_ARG, "%s of %s: an NCCL communicator needs CUDA buffers", op, what);
        if (cudaStreamIsCapturing((cudaStream_t)be->stream, &cs) != cudaSuccess)
            return ng_error(NG_ERR_BACKEND, "rank %d: %s of %s: cudaStreamIsCapturing failed", c->rank, op, what);
        if (cs != cudaStreamCaptureStatusNone && c->n_pending > 0)
            return ng_error(NG_ERR_UNSUPPORTED, "rank %d: %s of %s: not captured while started all-reduces are in flight "
                            "(ng_comm_wait_all first)", c->rank, op, what);
        /* after the slices in flight on the communication stream: one communicator, one order */
        if (c->n_pending > 0 && cudaStreamWaitEvent((cudaStream_t)be->stream, (cudaEvent_t)c->ev_done, 0) != cudaSuccess)
            return ng_error(NG_ERR_BACKEND, "rank %d: %s of %s: ordering after the all-reduces in flight failed", c->rank, op, what);
        r = root < 0 ? ncclAllReduce(buf, buf, count, dt == NG_F64 ? ncclDouble : ncclFloat, ncclSum, (ncclComm_t)c->nccl,
                                     (cudaStream_t)be->stream)
                     : ncclBroadcast(buf, buf, count, dt == NG_F64 ? ncclDouble : ncclFloat, root, (ncclComm_t)c->nccl,
                                     (cudaStream_t)be->stream);
        if (r != ncclSuccess)
            return ng_error(NG_ERR_BACKEND, "rank %d: NCCL %s of %s: %s", c->rank, op, what, ncclGetErrorString(r));
        if (cs != cudaStreamCaptureStatusNone) { /* recorded in the graph: it runs (and is waited for) at each launch */
            c->captured++;
            return NG_OK;
        }
        s = nccl_wait(c, be, op, what);
        c->comm_s += ng_time_s() - t0;
        c->calls++;
        return s;
    }
#endif
#ifdef NG_HAVE_MPI
    {
        size_t bytes = count * ng_dtype_size(dt);
        void *host = buf;
        MPI_Request req;
        int rc;
        if (count > 2147483647u) return ng_error(NG_ERR_INVALID_ARG, "%s of %s: %zu elements exceed MPI's int count", op, what, count);
        if (be->kind == NG_DEVICE_CUDA) { /* staged through host memory */
            if (c->n_pending > 0) NG_TRY(ng_comm_wait_all(c, be)); /* the stage may move: finish the slices first */
            NG_TRY(stage(c, bytes));
            host = c->stage;
            NG_TRY(ng_get(be, host, buf, bytes));
        } else {
            NG_TRY(ng_synchronize(be));
        }
        rc = root < 0 ? MPI_Iallreduce(MPI_IN_PLACE, host, (int)count, mpi_type(dt), MPI_SUM, *(MPI_Comm *)c->mpi, &req)
                      : MPI_Ibcast(host, (int)count, mpi_type(dt), root, *(MPI_Comm *)c->mpi, &req);
        if (rc != MPI_SUCCESS) return ng_error(NG_ERR_IO, "rank %d: MPI %s of %s could not start", c->rank, op, what);
        s = mpi_wait(c, &req, op, what);
        if (s == NG_OK && be->kind == NG_DEVICE_CUDA) s = ng_set(be, buf, host, bytes);
    }
#endif
    c->comm_s += ng_time_s() - t0;
    c->calls++;
    return s;
}

ng_status ng_comm_allreduce(ng_comm *c, ng_backend *be, ng_dtype dt, void *buf, size_t count, const char *what) {
    return device_collective(c, be, dt, buf, count, -1, what);
}

ng_status ng_comm_bcast(ng_comm *c, ng_backend *be, ng_dtype dt, void *buf, size_t count, int root, const char *what) {
    if (root < 0) return ng_error(NG_ERR_INVALID_ARG, "broadcast of %s: root %d", what, root);
    return device_collective(c, be, dt, buf, count, root, what);
}

ng_status ng_comm_wait_device(ng_comm *c, ng_backend *be, const char *what) {
    if (!c || !be) return ng_error(NG_ERR_INVALID_ARG, "waiting for %s: NULL communicator or backend", what);
#ifdef NG_HAVE_NCCL
    if (c->nccl) {
        double t0 = ng_time_s();
        ng_status s = nccl_wait(c, be, "all-reduce", what);
        c->comm_s += ng_time_s() - t0;
        return s;
    }
#endif
    return NG_OK;
}

ng_status ng_comm_allreduce_host(ng_comm *c, double *x, size_t count, const char *what) {
    if (!c || (count && !x)) return ng_error(NG_ERR_INVALID_ARG, "all-reduce of %s: NULL argument", what);
    if (c->world == 1 || count == 0) return NG_OK;
#ifdef NG_HAVE_MPI
    {
        MPI_Request req;
        double t0 = ng_time_s();
        ng_status s;
        if (MPI_Iallreduce(MPI_IN_PLACE, x, (int)count, MPI_DOUBLE, MPI_SUM, *(MPI_Comm *)c->mpi, &req) != MPI_SUCCESS)
            return ng_error(NG_ERR_IO, "rank %d: MPI all-reduce of %s could not start", c->rank, what);
        s = mpi_wait(c, &req, "all-reduce", what);
        c->comm_s += ng_time_s() - t0;
        c->calls++;
        return s;
    }
#else
    return NG_OK;
#endif
}

ng_status ng_comm_shard_offset(ng_comm *c, long long count, long long *first, long long *total, const char *what) {
    double *v;
    long long f = 0, t = 0;
    int r;
    ng_status s;
    if (!c || !first || !total || count < 0) return ng_error(NG_ERR_INVALID_ARG, "shard offset of %s: bad argument", what);
    v = (double *)calloc((size_t)c->world, sizeof(double));
    if (!v) return ng_error(NG_ERR_OOM, "shard offset of %s: out of host memory", what);
    v[c->rank] = (double)count; /* exact: counts below 2^53 */
    s = ng_comm_allreduce_host(c, v, (size_t)c->world, what);
    for (r = 0; s == NG_OK && r < c->world; r++) {
        if (r < c->rank) f += (long long)v[r];
        t += (long long)v[r];
    }
    free(v);
    if (s != NG_OK) return s;
    *first = f;
    *total = t;
    return NG_OK;
}

ng_status ng_comm_bcast_host(ng_comm *c, void *x, size_t bytes, int root, const char *what) {
    if (!c || (bytes && !x)) return ng_error(NG_ERR_INVALID_ARG, "broadcast of %s: NULL argument", what);
    if (root < 0 || root >= c->world) return ng_error(NG_ERR_INVALID_ARG, "broadcast of %s: root %d of %d ranks", what, root, c->world);
    if (c->world == 1 || bytes == 0) return NG_OK;
#ifdef NG_HAVE_MPI
    {
        MPI_Request req;
        if (bytes > 2147483647u) return ng_error(NG_ERR_INVALID_ARG, "broadcast of %s: %zu bytes", what, bytes);
        if (MPI_Ibcast(x, (int)bytes, MPI_BYTE, root, *(MPI_Comm *)c->mpi, &req) != MPI_SUCCESS)
            return ng_error(NG_ERR_IO, "rank %d: MPI broadcast of %s could not start", c->rank, what);
        return mpi_wait(c, &req, "broadcast", what);
    }
#else
    return NG_OK;
#endif
}

ng_status ng_comm_barrier(ng_comm *c, const char *what) {
    if (!c) return ng_error(NG_ERR_INVALID_ARG, "barrier: NULL communicator");
    if (c->world == 1) return NG_OK;
#ifdef NG_HAVE_MPI
    {
        MPI_Request req;
        if (MPI_Ibarrier(*(MPI_Comm *)c->mpi, &req) != MPI_SUCCESS)
            return ng_error(NG_ERR_IO, "rank %d: MPI barrier (%s) could not start", c->rank, what);
        return mpi_wait(c, &req, "barrier", what);
    }
#else
    return NG_OK;
#endif
}

/* ---- all-reduces in flight (natgrad/comm.h: start, progress, wait_all) ------------------------- */

#ifdef NG_HAVE_NCCL
/* The communication stream and its two events, made once on the backend's device. */
static ng_status nccl_stream(ng_comm *c, ng_backend *be) {
    cudaStream_t st;
    cudaEvent_t e1, e2;
    if (c->comm_stream) return NG_OK;
    if (cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking) != cudaSuccess)
        return ng_error(NG_ERR_BACKEND, "rank %d: cannot create the communication stream on cuda:%d", c->rank, be->device_index);
    if (cudaEventCreateWithFlags(&e1, cudaEventDisableTiming) != cudaSuccess) {
        cudaStreamDestroy(st);
        return ng_error(NG_ERR_BACKEND, "rank %d: cannot create the communication events", c->rank);
    }
    if (cudaEventCreateWithFlags(&e2, cudaEventDisableTiming) != cudaSuccess) {
        cudaEventDestroy(e1);
        cudaStreamDestroy(st);
        return ng_error(NG_ERR_BACKEND, "rank %d: cannot create the communication events", c->rank);
    }
    c->comm_stream = st;
    c->ev_ready = e1;
    c->ev_done = e2;
    return NG_OK;
}
#endif

ng_status ng_comm_allreduce_start(ng_comm *c, ng_backend *be, ng_dtype dt, void *buf, size_t count, const char *what) {
    pending_slice *p;
    double t0;
    NG_TRY(check_args(c, be, dt, buf, count, "all-reduce", what));
    if ((c->world == 1 && !c->nccl) || count == 0) return NG_OK;
    if (c->n_pending >= NG_COMM_MAX_PENDING)
        return ng_error(NG_ERR_INVALID_ARG, "all-reduce of %s: %d all-reduces are already in flight (the most at once): "
                        "wait for them first", what, c->n_pending);
    t0 = ng_time_s();
    p = (pending_slice *)c->pending + c->n_pending;
    memset(p, 0, sizeof *p);
    p->what = what;
    p->bytes = count * ng_dtype_size(dt);
#ifdef NG_HAVE_NCCL
    if (c->nccl) {
        ncclResult_t r;
        if (be->kind != NG_DEVICE_CUDA)
            return ng_error(NG_ERR_INVALID_ARG, "all-reduce of %s: an NCCL communicator needs CUDA buffers", what);
        if (cudaSetDevice(be->device_index) != cudaSuccess)
            return ng_error(NG_ERR_BACKEND, "rank %d: cudaSetDevice(%d) failed", c->rank, be->device_index);
        NG_TRY(nccl_stream(c, be));
        /* the communication stream waits for the work queued so far (the slice's last writes) */
        if (cudaEventRecord((cudaEvent_t)c->ev_ready, (cudaStream_t)be->stream) != cudaSuccess ||
            cudaStreamWaitEvent((cudaStream_t)c->comm_stream, (cudaEvent_t)c->ev_ready, 0) != cudaSuccess)
            return ng_error(NG_ERR_BACKEND, "rank %d: all-reduce of %s: ordering the communication stream failed", c->rank, what);
        r = ncclAllReduce(buf, buf, count, dt == NG_F64 ? ncclDouble : ncclFloat, ncclSum, (ncclComm_t)c->nccl,
                          (cudaStream_t)c->comm_stream);
        if (r != ncclSuccess)
            return ng_error(NG_ERR_BACKEND, "rank %d: NCCL all-reduce of %s: %s", c->rank, what, ncclGetErrorString(r));
        if (cudaEventRecord((cudaEvent_t)c->ev_done, (cudaStream_t)c->comm_stream) != cudaSuccess)
            return ng_error(NG_ERR_BACKEND, "rank %d: all-reduce of %s: recording its event failed", c->rank, what);
        if (capturing(be)) c->captured++; /* the communication stream joined the capture (fork through ev_ready) */
        c->n_pending++;
        c->comm_s += ng_time_s() - t0;
        c->calls++;
        return NG_OK;
    }
#endif
#ifdef NG_HAVE_MPI
    {
        int rc;
        if (count > 2147483647u) return ng_error(NG_ERR_INVALID_ARG, "all-reduce of %s: %zu elements exceed MPI's int count", what, count);
        p->host = buf;
        if (be->kind == NG_DEVICE_CUDA) { /* staged: the slice's copy lives in c->stage until the wait */
            if (c->stage_used + p->bytes > c->stage_bytes) {
                size_t want = c->stage_used + p->bytes;
                if (c->n_pending > 0) { /* the stage cannot move under requests in flight: finish them first */
                    NG_TRY(ng_comm_wait_all(c, be));
                    p = (pending_slice *)c->pending;
                    memset(p, 0, sizeof *p);
                    p->what = what;
                    p->bytes = count * ng_dtype_size(dt);
                    want = p->bytes;
                }
                NG_TRY(stage(c, want > 2 * c->stage_bytes ? want : 2 * c->stage_bytes));
            }
            p->dev = buf;
            p->host = (char *)c->stage + c->stage_used;
            NG_TRY(ng_get(be, p->host, buf, p->bytes));
            c->stage_used += p->bytes;
        } else {
            NG_TRY(ng_synchronize(be));
        }
        rc = MPI_Iallreduce(MPI_IN_PLACE, p->host, (int)count, mpi_type(dt), MPI_SUM, *(MPI_Comm *)c->mpi, &p->req);
        if (rc != MPI_SUCCESS) return ng_error(NG_ERR_IO, "rank %d: MPI all-reduce of %s could not start", c->rank, what);
        c->n_pending++;
    }
#endif
    c->comm_s += ng_time_s() - t0;
    c->calls++;
    return NG_OK;
}

ng_status ng_comm_progress(ng_comm *c) {
    if (!c) return ng_error(NG_ERR_INVALID_ARG, "communicator progress: NULL communicator");
#ifdef NG_HAVE_MPI
    if (!c->nccl) {
        int i;
        for (i = 0; i < c->n_pending; i++) {
            pending_slice *p = (pending_slice *)c->pending + i;
            int rc;
            if (p->done) continue;
            rc = MPI_Test(&p->req, &p->done, MPI_STATUS_IGNORE);
            if (rc != MPI_SUCCESS)
                return ng_error(NG_ERR_IO, "rank %d of %d: all-reduce of %s failed", c->rank, c->world, p->what);
            if (!p->done) break; /* later ones are behind it */
        }
    }
#endif
    return NG_OK;
}

ng_status ng_comm_wait_all(ng_comm *c, ng_backend *be) {
    double t0;
    ng_status s = NG_OK;
    if (!c || !be) return ng_error(NG_ERR_INVALID_ARG, "all-reduce wait: NULL communicator or backend");
    if (c->n_pending == 0) return NG_OK;
    t0 = ng_time_s();
#ifdef NG_HAVE_NCCL
    if (c->nccl) {
        const pending_slice *last = (const pending_slice *)c->pending + c->n_pending - 1;
        int polls = 0;
        /* in a capture nothing runs yet: the backend's stream only joins the communication stream back
         * (ng_comm_wait_device waits for the launch) */
        for (; !capturing(be);) {
            cudaError_t e = cudaEventQuery((cudaEvent_t)c->ev_done);
            ncclResult_t async = ncclSuccess;
            if (e == cudaSuccess) break;
            if (e != cudaErrorNotReady) {
                s = ng_error(NG_ERR_BACKEND, "rank %d: all-reduce of %s: %s", c->rank, last->what, cudaGetErrorString(e));
                break;
            }
            ncclCommGetAsyncError((ncclComm_t)c->nccl, &async);
            if (async != ncclSuccess && async != ncclInProgress) {
                s = ng_error(NG_ERR_BACKEND, "rank %d: all-reduce of %s: NCCL: %s", c->rank, last->what, ncclGetErrorString(async));
                break;
            }
            if (ng_time_s() - t0 > c->timeout_s) {
                s = timed_out(c, "all-reduce", last->what, ng_time_s() - t0);
                break;
            }
            backoff(&polls);
        }
        /* the backend's later work reads the sums */
        if (s == NG_OK && cudaStreamWaitEvent((cudaStream_t)be->stream, (cudaEvent_t)c->ev_done, 0) != cudaSuccess)
            s = ng_error(NG_ERR_BACKEND, "rank %d: ordering the backend's stream after the all-reduces failed", c->rank);
        if (s == NG_OK) c->n_pending = 0;
        c->comm_s += ng_time_s() - t0;
        return s;
    }
#endif
#ifdef NG_HAVE_MPI
    {
        int i;
        for (i = 0; i < c->n_pending && s == NG_OK; i++) {
            pending_slice *p = (pending_slice *)c->pending + i;
            if (!p->done) {
                s = mpi_wait(c, &p->req, "all-reduce", p->what);
                if (s != NG_OK) break; /* the records stay: a later wait can still finish them */
                p->done = 1;
            }
            if (p->dev) {
                s = ng_set(be, p->dev, p->host, p->bytes);
                if (s == NG_OK) p->dev = NULL;
            }
        }
        if (s == NG_OK) {
            c->n_pending = 0;
            c->stage_used = 0;
        }
    }
#endif
    c->comm_s += ng_time_s() - t0;
    return s;
}
