/* test_comm.c: the communicator (natgrad/comm.h). Run alone it checks the single-rank
 * communicator (collectives are the identity, argument checks); under `mpirun -np N` (tests/
 * test_dist.sh runs it on 2 and 3 ranks) every rank checks the MPI collectives against sums it
 * computes itself (small integers: exact in float32), the broadcast from the last rank, host
 * reductions, that a rank which does not join a collective makes the others fail with the timeout
 * message instead of hanging, and the gradient all-reduce of the trainer (N shards weighted and
 * summed = the one-rank gradient within float32 reassociation). Built against the emulator
 * (tests/simt), the CUDA part also runs: the device buffers of an emulated GPU per rank, through
 * NCCL (tests/simt/shim_nccl.cpp) when compiled in, compared bit for bit with the CPU results.
 * All-reduces in flight (ng_comm_allreduce_start .. wait_all): slices started from the end, as the trainer's
 * buckets are, equal the one all-reduce bit for bit on 3 and 4 ranks with data whose sums change with
 * their association; a rank that joins after the timeout; on the emulated GPU, device slices over
 * NCCL and staged over MPI with a blocking collective between them, and the NCCL timeout (the
 * emulator keeps NCCL collectives in flight on their stream, so a missing wait would read partial sums).
 * NCCL all-reduces recorded in a CUDA graph run at each launch, and a lonely launch times out by name.
 * NATGRAD_COMM=mpi makes even one rank open MPI and NCCL (bench/nccl_smoke.sh on a one-GPU machine). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "natgrad/backend.h"
#include "natgrad/comm.h"
#include "natgrad/log.h"

static ng_comm *C;
static ng_backend *CPU;

enum { N = 1000 };

/* x[i] = (rank + 1) (i + 1) - i mod 7: the sum over ranks is known in closed form */
static float val(int rank, int i) { return (float)((rank + 1) * (i + 1) - i % 7); }
static float sum_of(int world, int i) {
    double s = 0.0;
    int r;
    for (r = 0; r < world; r++) s += val(r, i);
    return (float)s;
}

static int test_comm_identity_or_sum_f32(void) {
    float *x;
    int i;
    NGT_OK(ng_alloc(CPU, N * sizeof(float), (void **)&x));
    for (i = 0; i < N; i++) x[i] = val(C->rank, i);
    NGT_OK(ng_comm_allreduce(C, CPU, NG_F32, x, N, "test data"));
    for (i = 0; i < N; i++) NGT_CHECK(x[i] == sum_of(C->world, i), "x[%d] = %g, want %g (world %d)", i, x[i], sum_of(C->world, i), C->world);
    ng_free(CPU, x);
    return NGT_PASS;
}

static int test_comm_sum_f64(void) {
    double *x;
    int i;
    NGT_OK(ng_alloc(CPU, N * sizeof(double), (void **)&x));
    for (i = 0; i < N; i++) x[i] = val(C->rank, i) + 0.25;
    NGT_OK(ng_comm_allreduce(C, CPU, NG_F64, x, N, "test data"));
    for (i = 0; i < N; i++) NGT_CHECK(x[i] == (double)sum_of(C->world, i) + 0.25 * C->world, "x[%d] = %g", i, x[i]);
    ng_free(CPU, x);
    return NGT_PASS;
}

static int test_comm_bcast(void) {
    float *x;
    int i, root = C->world - 1;
    char bytes[37];
    NGT_OK(ng_alloc(CPU, N * sizeof(float), (void **)&x));
    for (i = 0; i < N; i++) x[i] = (float)(C->rank * 1000 + i);
    NGT_OK(ng_comm_bcast(C, CPU, NG_F32, x, N, root, "test data"));
    for (i = 0; i < N; i++) NGT_CHECK(x[i] == (float)(root * 1000 + i), "x[%d] = %g from root %d", i, x[i], root);
    ng_free(CPU, x);
    memset(bytes, C->rank, sizeof bytes);
    NGT_OK(ng_comm_bcast_host(C, bytes, sizeof bytes, 0, "bytes"));
    for (i = 0; i < (int)sizeof bytes; i++) NGT_CHECK(bytes[i] == 0, "byte %d = %d", i, bytes[i]);
    return NGT_PASS;
}

static int test_comm_host_and_barrier(void) {
    double v[3] = {1.0, (double)C->rank, 0.5};
    NGT_OK(ng_comm_allreduce_host(C, v, 3, "scalars"));
    NGT_CHECK(v[0] == C->world && v[1] == C->world * (C->world - 1) / 2.0 && v[2] == 0.5 * C->world, "%g %g %g", v[0], v[1], v[2]);
    NGT_OK(ng_comm_barrier(C, "test"));
    NGT_CHECK(C->calls > 0 || C->world == 1, "collectives are counted");
    return NGT_PASS;
}

static int test_comm_bad_arguments(void) {
    float x[4] = {0};
    ng_comm *bad = NULL;
    NGT_CHECK(ng_comm_init(&bad, 0.0) == NG_ERR_INVALID_ARG && !bad, "timeout 0 refused");
    NGT_CHECK(strstr(ng_last_error(), "timeout") != NULL, "message names the timeout: %s", ng_last_error());
    NGT_CHECK(ng_comm_allreduce(C, CPU, NG_F16, x, 4, "halves") == NG_ERR_INVALID_ARG, "f16 refused");
    NGT_CHECK(strstr(ng_last_error(), "halves") && strstr(ng_last_error(), "f16"), "message: %s", ng_last_error());
    NGT_CHECK(ng_comm_allreduce(C, CPU, NG_F32, NULL, 4, "nothing") == NG_ERR_INVALID_ARG, "NULL buffer refused");
    NGT_CHECK(ng_comm_bcast(C, CPU, NG_F32, x, 4, C->world, "x") == NG_ERR_INVALID_ARG, "root out of range refused");
    NGT_CHECK(ng_comm_bcast(C, CPU, NG_F32, x, 4, -1, "x") == NG_ERR_INVALID_ARG, "root -1 refused");
    NGT_CHECK(ng_comm_bcast_host(C, x, 4, C->world, "x") == NG_ERR_INVALID_ARG, "host root out of range refused");
    NGT_CHECK(ng_comm_allreduce(NULL, CPU, NG_F32, x, 4, "x") == NG_ERR_INVALID_ARG, "NULL communicator refused");
    NGT_OK(ng_comm_allreduce(C, CPU, NG_F32, NULL, 0, "empty"));
    return NGT_PASS;
}

/* ng_comm_shard_offset: rank r holds r + 2 items, so it comes after sum_{q<r} (q + 2) of them and the
 * total is sum_{q<world} (q + 2): closed forms, exact. A negative count is refused. */
static int test_comm_shard_offset(void) {
    long long first = -1, total = -1, r = C->rank, w = C->world;
    NGT_OK(ng_comm_shard_offset(C, r + 2, &first, &total, "test counts"));
    NGT_CHECK(first == r * (r - 1) / 2 + 2 * r && total == w * (w - 1) / 2 + 2 * w,
              "rank %lld of %lld: first %lld total %lld", r, w, first, total);
    NGT_CHECK(ng_comm_shard_offset(C, -1, &first, &total, "bad") == NG_ERR_INVALID_ARG, "a negative count is refused");
    return NGT_PASS;
}

/* The trainer's rule: each rank weights its shard mean by its share and the sum is the global
 * mean. Shards of 10 examples split unevenly over the ranks; the global mean in float64 here. */
static int test_comm_weighted_shard_means(void) {
    enum { M = 10, D = 64 };
    float g[D];
    double want[D];
    int lo = C->rank * M / C->world, hi = (C->rank + 1) * M / C->world, i, j;
    float *buf;
    for (i = 0; i < D; i++) {
        double s = 0.0, t = 0.0;
        for (j = 0; j < M; j++) s += (double)(float)(0.1 * (i + 1) * (j + 1) + 0.01 * j * j);
        want[i] = s / M;
        for (j = lo; j < hi; j++) t += (double)(float)(0.1 * (i + 1) * (j + 1) + 0.01 * j * j);
        g[i] = (float)(t / (hi - lo)) * (float)((double)(hi - lo) / M);
    }
    NGT_OK(ng_alloc(CPU, sizeof g, (void **)&buf));
    memcpy(buf, g, sizeof g);
    NGT_OK(ng_comm_allreduce(C, CPU, NG_F32, buf, D, "shard means"));
    for (i = 0; i < D; i++) NGT_CLOSE(buf[i], want[i], 4e-7 * fabs(want[i]) * C->world, "global mean");
    ng_free(CPU, buf);
    return NGT_PASS;
}

static int test_comm_timeout_names_the_collective(void) {
    ng_comm *t = NULL;
    double t0;
    ng_status s = NG_OK;
    if (C->world == 1) return ngt_skip("needs mpirun -np 2 or more (tests/test_dist.sh)");
    NGT_OK(ng_comm_init(&t, 0.5));
    t0 = ng_time_s();
    if (C->rank == 0) {
        s = ng_comm_barrier(t, "the timeout test");
    } else {
        usleep(1500000); /* rank 0 gives up after 0.5 s */
        NGT_OK(ng_comm_barrier(t, "the late ranks"));
    }
    NGT_OK(ng_comm_barrier(C, "resynchronise"));
    if (C->rank == 0) {
        NGT_CHECK(s == NG_ERR_IO, "rank 0's lonely barrier returned %s", ng_status_name(s));
        NGT_CHECK(strstr(ng_last_error(), "did not complete within 0.5 s") && strstr(ng_last_error(), "the timeout test"),
                  "message: %s", ng_last_error());
    }
    NGT_CHECK(ng_time_s() - t0 < 30.0, "took %g s", ng_time_s() - t0);
    /* rank 0's abandoned request completed when the others joined; the communicator is released
     * without MPI_Finalize (C owns MPI) */
    ng_comm_free(t);
    return NGT_PASS;
}

/* ---- all-reduces in flight (ng_comm_allreduce_start / progress / wait_all) ------------------- */

/* Rank r's data: uniform floats in (-0.3, 0.3) hashed from (r, i), one rank in five 4096 times
 * larger per element, so the float32 sum of three ranks' values often depends on its association. */
static float rnd(int rank, size_t i) {
    uint64_t z = (uint64_t)(rank + 1) * 0x9E3779B97F4A7C15ull + (uint64_t)i * 0xBF58476D1CE4E5B9ull;
    z ^= z >> 31;
    z *= 0x94D049BB133111EBull;
    z ^= z >> 29;
    return ((float)(z >> 40) / (float)(1 << 24) * 2.0f - 1.0f) * 0.3f * ((i + (size_t)rank) % 5 == 0 ? 4096.0f : 1.0f);
}

/* Slices [cut[k+1], cut[k]) started from the end of the buffer, as the trainer's buckets are, with
 * progress calls in between, then one wait: the result must be bit for bit the one all-reduce of
 * the whole buffer. Cuts on both sides of Open MPI's 64 KiB size switch in libnbc (one element, a
 * few, 16383 floats, 300000 floats - 1.2 MB), in f32 and f64. */
static int async_slices_case(ng_dtype dt) {
    enum { NB = 400000 };
    static const size_t cuts[] = {NB, 399999, 399990, 383617, 300000, 1000, 7, 1, 0};
    size_t esz = ng_dtype_size(dt), i;
    int k, nk = (int)(sizeof cuts / sizeof cuts[0]);
    char *whole, *sliced;
    long reassoc = 0;
    NGT_OK(ng_alloc(CPU, NB * esz, (void **)&whole));
    NGT_OK(ng_alloc(CPU, NB * esz, (void **)&sliced));
    for (i = 0; i < NB; i++) {
        if (dt == NG_F64) ((double *)whole)[i] = (double)rnd(C->rank, i) * (1.0 + 1e-9 * (double)C->rank);
        else ((float *)whole)[i] = rnd(C->rank, i);
        if (dt == NG_F32 && C->world >= 3) { /* would another association of the first three ranks show? */
            float a = rnd(0, i), b = rnd(1, i), c = rnd(2, i);
            reassoc += (a + b) + c != a + (b + c);
        }
    }
    memcpy(sliced, whole, NB * esz);
    NGT_OK(ng_comm_allreduce(C, CPU, dt, whole, NB, "the whole buffer"));
    for (k = 0; k + 1 < nk; k++) {
        NGT_OK(ng_comm_allreduce_start(C, CPU, dt, sliced + cuts[k + 1] * esz, cuts[k] - cuts[k + 1], "a slice"));
        NGT_OK(ng_comm_progress(C));
        if (k == 2) { /* another collective while slices are in flight (same place on every rank) */
            double one = 1.0;
            NGT_OK(ng_comm_allreduce_host(C, &one, 1, "a scalar between slices"));
            NGT_CHECK(one == (double)C->world, "the scalar between slices sums to %g", one);
        }
    }
    NGT_CHECK(C->world == 1 || C->n_pending == nk - 1, "%d slices in flight, want %d", C->n_pending, nk - 1);
    NGT_OK(ng_comm_wait_all(C, CPU));
    NGT_CHECK(C->n_pending == 0, "%d slices still in flight after the wait", C->n_pending);
    for (i = 0; i < NB; i++)
        if (memcmp(whole + i * esz, sliced + i * esz, esz) != 0) {
            double w = dt == NG_F64 ? ((double *)whole)[i] : ((float *)whole)[i];
            double sl = dt == NG_F64 ? ((double *)sliced)[i] : ((float *)sliced)[i];
            NGT_CHECK(0, "%s element %zu: slices give %.17g, the whole %.17g (world %d)", ng_dtype_name(dt), i, sl, w, C->world);
        }
    if (dt == NG_F32 && C->world >= 3)
        NGT_CHECK(reassoc > 1000, "only %ld of %d elements change with the association: the test could not see a reordering",
                  reassoc, (int)NB);
    ng_free(CPU, whole);
    ng_free(CPU, sliced);
    return NGT_PASS;
}

static int test_comm_async_slices_equal_whole(void) {
    int r = async_slices_case(NG_F32);
    return r != NGT_PASS ? r : async_slices_case(NG_F64);
}

static int test_comm_async_bad_arguments(void) {
    float x[4] = {0};
    NGT_CHECK(ng_comm_allreduce_start(C, CPU, NG_F16, x, 4, "halves") == NG_ERR_INVALID_ARG, "f16 refused");
    NGT_CHECK(strstr(ng_last_error(), "halves") && strstr(ng_last_error(), "f16"), "message: %s", ng_last_error());
    NGT_CHECK(ng_comm_allreduce_start(C, CPU, NG_F32, NULL, 4, "nothing") == NG_ERR_INVALID_ARG, "NULL buffer refused");
    NGT_CHECK(ng_comm_allreduce_start(NULL, CPU, NG_F32, x, 4, "x") == NG_ERR_INVALID_ARG, "NULL communicator refused");
    NGT_CHECK(ng_comm_wait_all(C, NULL) == NG_ERR_INVALID_ARG, "NULL backend refused");
    NGT_OK(ng_comm_allreduce_start(C, CPU, NG_F32, x, 0, "empty"));
    NGT_CHECK(C->n_pending == 0, "an empty slice is not in flight");
    NGT_OK(ng_comm_wait_all(C, CPU)); /* nothing in flight: returns at once */
    return NGT_PASS;
}

/* On t (timeout 0.5 s): rank 0 starts the all-reduce of x (slice `slice`) and waits alone while the
 * other ranks join only after 1.5 s (as `late`): its wait fails with the timeout message naming the
 * slice (with pending_check, the slice stays in flight); once all have joined, a second wait
 * finishes it. The caller checks the sums. */
static int late_slice(ng_comm *t, ng_backend *be, float *x, const char *slice, const char *late, int pending_check) {
    ng_status s = NG_OK;
    if (C->rank == 0) {
        NGT_OK(ng_comm_allreduce_start(t, be, NG_F32, x, N, slice));
        s = ng_comm_wait_all(t, be);
        if (pending_check) NGT_CHECK(t->n_pending == 1, "the timed-out slice stays in flight (%d)", t->n_pending);
    } else {
        usleep(1500000); /* rank 0 gives up after 0.5 s */
        NGT_OK(ng_comm_allreduce(t, be, NG_F32, x, N, late));
    }
    NGT_OK(ng_comm_barrier(C, "resynchronise"));
    if (C->rank == 0) {
        NGT_CHECK(s == NG_ERR_IO, "rank 0's lonely wait on %s returned %s", slice, ng_status_name(s));
        NGT_CHECK(strstr(ng_last_error(), "did not complete within 0.5 s") && strstr(ng_last_error(), slice),
                  "message: %s", ng_last_error());
        NGT_OK(ng_comm_wait_all(t, be)); /* the others joined: the slice completes */
    }
    return NGT_PASS;
}

/* A rank that joins only after the timeout: rank 0's wait fails with the timeout message naming
 * the slice; once the others have joined, a second wait finishes the slice with the right sums. */
static int test_comm_async_timeout(void) {
    ng_comm *t = NULL;
    float *x;
    double t0;
    int i;
    if (C->world == 1) return ngt_skip("needs mpirun -np 2 or more (tests/test_dist.sh)");
    NGT_OK(ng_comm_init(&t, 0.5));
    NGT_OK(ng_alloc(CPU, N * sizeof(float), (void **)&x));
    for (i = 0; i < N; i++) x[i] = val(C->rank, i);
    t0 = ng_time_s();
    NGT_CHECK(late_slice(t, CPU, x, "the late slice", "the late ranks", 1) == NGT_PASS, "the late host slice");
    for (i = 0; i < N; i++) NGT_CHECK(x[i] == sum_of(C->world, i), "x[%d] = %g, want %g", i, x[i], sum_of(C->world, i));
    NGT_CHECK(ng_time_s() - t0 < 30.0, "took %g s", ng_time_s() - t0);
    ng_free(CPU, x);
    ng_comm_free(t);
    return NGT_PASS;
}

/* Device slices in flight on communicator cm (NCCL: on the communication stream after an event of
 * the backend's stream; MPI: staged through the host), a blocking all-reduce of another buffer
 * between them: the data are written by the backend's queue just before each start and read by it
 * right after the wait; integers, so every order of the sums is exact. */
static int device_slices(ng_comm *cm, ng_backend *be, float *d, float *h) {
    static const int cut[] = {N, 999, 640, 3, 0};
    float *e, ev = 1.0f;
    int i, k;
    for (i = 0; i < N; i++) h[i] = val(cm->rank, i);
    NGT_OK(ng_alloc(be, sizeof(float), (void **)&e));
    NGT_OK(ng_set(be, e, &ev, sizeof ev));
    for (k = 0; k < 4; k++) {
        NGT_OK(ng_set(be, d + cut[k + 1], h + cut[k + 1], (size_t)(cut[k] - cut[k + 1]) * sizeof(float)));
        NGT_OK(ng_comm_allreduce_start(cm, be, NG_F32, d + cut[k + 1], (size_t)(cut[k] - cut[k + 1]), "device slice"));
        if (k == 1) NGT_OK(ng_comm_allreduce(cm, be, NG_F32, e, 1, "a device scalar between slices"));
    }
    NGT_OK(ng_comm_wait_all(cm, be));
    NGT_OK(ng_scal(be, N, 2.0f, d)); /* queued after the sums */
    NGT_OK(ng_get(be, h, d, N * sizeof(float)));
    for (i = 0; i < N; i++)
        NGT_CHECK(h[i] == 2.0f * sum_of(cm->world, i), "device slices [%d] = %g, want %g", i, h[i], 2.0f * sum_of(cm->world, i));
    NGT_OK(ng_get(be, &ev, e, sizeof ev));
    NGT_CHECK(ev == (float)cm->world, "the device scalar between slices sums to %g", ev);
    ng_free(be, e);
    return NGT_PASS;
}

/* The same reductions on a CUDA backend (one emulated GPU per rank under tests/simt), over NCCL
 * when compiled in: bit for bit the CPU results. */
/* NCCL collectives in a CUDA graph (natgrad/comm.h): an all-reduce issued while the backend's stream
 * captures is recorded, not run (the buffer is unchanged after the capture, c->captured counts it);
 * each launch then runs it again: launch 1 gives 0.5 * sum over ranks, launch 2 the sum of that
 * again (0.25 * world * sum; small integers and powers of two: exact). Then a rank that launches its
 * graph alone gets ng_comm_wait_device's timeout naming the data, and completes once the others
 * launch theirs. */
static int nccl_graph(ng_backend *be, float *d, float *h) {
    void *exec = NULL;
    unsigned long long rec0 = C->captured;
    ng_comm *t = NULL;
    ng_status st = NG_OK;
    int i;
    for (i = 0; i < N; i++) h[i] = val(C->rank, i);
    NGT_OK(ng_set(be, d, h, N * sizeof(float)));
    NGT_OK(ng_graph_begin(be));
    NGT_OK(ng_scal(be, N, 0.5f, d));
    NGT_OK(ng_comm_allreduce(C, be, NG_F32, d, N, "graph data"));
    NGT_OK(ng_graph_end(be, &exec));
    NGT_CHECK(C->captured == rec0 + 1, "%llu all-reduces recorded (want 1)", C->captured - rec0);
    NGT_OK(ng_get(be, h, d, N * sizeof(float)));
    for (i = 0; i < N; i++) NGT_CHECK(h[i] == val(C->rank, i), "captured work ran: [%d] = %g", i, h[i]);
    NGT_OK(ng_graph_launch(be, exec));
    NGT_OK(ng_comm_wait_device(C, be, "graph data"));
    NGT_OK(ng_get(be, h, d, N * sizeof(float)));
    for (i = 0; i < N; i++) NGT_CHECK(h[i] == 0.5f * sum_of(C->world, i), "launch 1: [%d] = %g", i, h[i]);
    NGT_OK(ng_graph_launch(be, exec));
    NGT_OK(ng_comm_wait_device(C, be, "graph data"));
    NGT_OK(ng_get(be, h, d, N * sizeof(float)));
    for (i = 0; i < N; i++)
        NGT_CHECK(h[i] == 0.25f * (float)C->world * sum_of(C->world, i), "launch 2: [%d] = %g", i, h[i]);
    ng_graph_free(be, exec);
    exec = NULL;
    /* a rank alone past the timeout */
    NGT_OK(ng_comm_init(&t, 0.5));
    NGT_OK(ng_comm_attach(t, be));
    NGT_OK(ng_set(be, d, h, N * sizeof(float)));
    NGT_OK(ng_graph_begin(be));
    NGT_OK(ng_comm_allreduce(t, be, NG_F32, d, N, "the late graph's data"));
    NGT_OK(ng_graph_end(be, &exec));
    if (C->rank > 0) usleep(1500000); /* rank 0 gives up after 0.5 s */
    NGT_OK(ng_graph_launch(be, exec));
    if (C->rank == 0) st = ng_comm_wait_device(t, be, "the late graph's data");
    NGT_OK(ng_comm_barrier(C, "resynchronise"));
    if (C->rank == 0) {
        NGT_CHECK(st == NG_ERR_IO, "rank 0's lonely graph wait returned %s", ng_status_name(st));
        NGT_CHECK(strstr(ng_last_error(), "did not complete within 0.5 s") && strstr(ng_last_error(), "the late graph's data"),
                  "message: %s", ng_last_error());
        ng_clear_error();
    }
    NGT_OK(ng_comm_wait_device(t, be, "the late graph's data")); /* the others joined: it completes */
    ng_graph_free(be, exec);
    ng_comm_free(t);
    return NGT_PASS;
}

static int test_comm_nccl(void) {
    ng_backend *be = NULL;
    float *d, *h, *ref;
    int i;
    if (!ng_cuda_compiled()) return ngt_skip("CUDA not compiled in (the emulated build runs this)");
    if (ng_backend_cuda_init(C->local_rank, &be) != NG_OK) return ngt_skip("no CUDA device for this rank");
    NGT_OK(ng_comm_attach(C, be));
    if ((C->world > 1 || getenv("NATGRAD_COMM")) && ng_comm_nccl_compiled())
        NGT_CHECK(C->kind == NG_COMM_NCCL, "a CUDA backend on %d rank(s) of an MPI communicator uses NCCL (kind %d)",
                  C->world, (int)C->kind);
    h = (float *)malloc(N * sizeof(float));
    ref = (float *)malloc(N * sizeof(float));
    NGT_CHECK(h && ref, "host memory");
    NGT_OK(ng_alloc(be, N * sizeof(float), (void **)&d));
    for (i = 0; i < N; i++) h[i] = val(C->rank, i) * 0.37f;
    memcpy(ref, h, N * sizeof(float));
    NGT_OK(ng_set(be, d, h, N * sizeof(float)));
    NGT_OK(ng_comm_allreduce(C, be, NG_F32, d, N, "device data"));
    NGT_OK(ng_get(be, h, d, N * sizeof(float)));
    {
        float *cpu;
        NGT_OK(ng_alloc(CPU, N * sizeof(float), (void **)&cpu));
        memcpy(cpu, ref, N * sizeof(float));
        if (C->kind == NG_COMM_NCCL) {
            /* the CPU path needs its own (MPI) communicator: compare with an MPI reduction */
            ng_comm *m = NULL;
            NGT_OK(ng_comm_init(&m, 30.0));
            NGT_OK(ng_comm_allreduce(m, CPU, NG_F32, cpu, N, "cpu data"));
            ng_comm_free(m);
        } else {
            NGT_OK(ng_comm_allreduce(C, CPU, NG_F32, cpu, N, "cpu data"));
        }
        NGT_CHECK(memcmp(cpu, h, N * sizeof(float)) == 0, "device all-reduce differs from the CPU's");
        ng_free(CPU, cpu);
    }
    NGT_CHECK(device_slices(C, be, d, h) == NGT_PASS, "device slices over %s", C->kind == NG_COMM_NCCL ? "NCCL" : "MPI");
    if (C->kind == NG_COMM_NCCL && C->world > 1) { /* a rank late past the timeout, over NCCL */
        ng_comm *t = NULL;
        NGT_OK(ng_comm_init(&t, 0.5));
        NGT_OK(ng_comm_attach(t, be));
        for (i = 0; i < N; i++) h[i] = val(C->rank, i);
        NGT_OK(ng_set(be, d, h, N * sizeof(float)));
        NGT_CHECK(late_slice(t, be, d, "the late device slice", "the late ranks' slice", 0) == NGT_PASS,
                  "the late device slice");
        NGT_OK(ng_get(be, h, d, N * sizeof(float)));
        for (i = 0; i < N; i++) NGT_CHECK(h[i] == sum_of(C->world, i), "late device slice [%d] = %g", i, h[i]);
        ng_comm_free(t);
    }
    if (C->kind == NG_COMM_NCCL && C->world > 1) { /* the MPI path of CUDA buffers: staged through the host */
        ng_comm *m = NULL;
        NGT_OK(ng_comm_init(&m, 30.0));
        NGT_CHECK(m->kind == NG_COMM_MPI, "an unattached communicator is MPI");
        NGT_CHECK(device_slices(m, be, d, h) == NGT_PASS, "device slices staged over MPI");
        ng_comm_free(m);
    }
    if (C->kind == NG_COMM_NCCL && C->world > 1)
        NGT_CHECK(nccl_graph(be, d, h) == NGT_PASS, "NCCL all-reduces in a CUDA graph");
    for (i = 0; i < N; i++) h[i] = (float)(C->rank + 7 * i);
    NGT_OK(ng_set(be, d, h, N * sizeof(float)));
    NGT_OK(ng_comm_bcast(C, be, NG_F32, d, N, 0, "device data"));
    NGT_OK(ng_get(be, h, d, N * sizeof(float)));
    for (i = 0; i < N; i++) NGT_CHECK(h[i] == (float)(7 * i), "broadcast [%d] = %g", i, h[i]);
    NGT_CHECK(ng_comm_allreduce(C, be, NG_F32, d, 0, "nothing") == NG_OK, "count 0");
    ng_free(be, d);
    free(h);
    free(ref);
    ng_backend_free(be);
    return NGT_PASS;
}

int main(void) {
    if (ng_comm_init(&C, 60.0) != NG_OK) {
        printf("FAIL comm_init: %s\nRESULT passed=0 failed=1 skipped=0\n", ng_last_error());
        return 1;
    }
    if (ng_backend_cpu_init(&CPU) != NG_OK) {
        printf("FAIL cpu backend: %s\nRESULT passed=0 failed=1 skipped=0\n", ng_last_error());
        return 1;
    }
    printf("rank %d of %d (%s; mpi compiled in: %d, nccl: %d)\n", C->rank, C->world, C->kind == NG_COMM_MPI ? "MPI" : "single",
           ng_comm_mpi_compiled(), ng_comm_nccl_compiled());
    NGT_RUN(test_comm_identity_or_sum_f32);
    NGT_RUN(test_comm_sum_f64);
    NGT_RUN(test_comm_bcast);
    NGT_RUN(test_comm_host_and_barrier);
    NGT_RUN(test_comm_bad_arguments);
    NGT_RUN(test_comm_weighted_shard_means);
    NGT_RUN(test_comm_shard_offset);
    NGT_RUN(test_comm_timeout_names_the_collective);
    NGT_RUN(test_comm_async_slices_equal_whole);
    NGT_RUN(test_comm_async_bad_arguments);
    NGT_RUN(test_comm_async_timeout);
    NGT_RUN(test_comm_nccl);
    ng_backend_free(CPU);
    ng_comm_free(C);
    return ngt_finish();
}
