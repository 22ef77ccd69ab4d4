/* natgrad/profile.h: named ranges around the phases of a run (NVTX for nsys, and natgrad's own
 * phase profile), the profiler-capture window, and device-memory accounting per arena.
 *
 * Ranges. ng_range_push_cat(cat, name) / ng_range_pop() bracket a phase. Each name is registered
 * once (an NVTX registered string in the `natgrad` domain, with the category's id and colour) and
 * gets a slot in natgrad's table. Names must have static storage (string literals). Without CUDA
 * (no NVTX) and with the profile off, a push/pop pair is two calls that test one flag.
 *
 * The profile (--profile). Between ng_profile_start and ng_profile_finish, ranges opened by the
 * thread that called ng_profile_start are timed: by CUDA events on the backend's stream when the
 * backend is a GPU (so the time is the device's, not the host's), by CLOCK_MONOTONIC on the CPU.
 * With a step window [first, last] (1-based update numbers, as --profile-steps A:B) only the
 * updates inside it (and the ranges they contain) are measured. Each range also accumulates the
 * flops of the gemm / syrk / gemv calls made inside it (inclusive of nested ranges) and the number
 * of backend calls (BLAS calls and op-table launches) - on a GPU the kernel launches per range.
 *
 * Capture (--profile-steps with a CUDA backend): cudaProfilerStart before update `first`,
 * cudaProfilerStop after update `last`, so `nsys profile --capture-range=cudaProfilerApi` records
 * only that window.
 *
 * Memory: every arena commit and free is accounted per role and device (always, whether the
 * profile is on or not): current bytes, the role's peak, and the device's peak total.
 *
 * Must not: print (the table comes back as text, files are written where the caller says). */
#ifndef NATGRAD_PROFILE_H
#define NATGRAD_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "natgrad/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Phase families: an NVTX category and colour each. */
typedef enum ng_range_cat {
    NG_CAT_OTHER = 0,
    NG_CAT_STEP,       /* one training update */
    NG_CAT_DATA,       /* batch assembly, transfers */
    NG_CAT_FORWARD,    /* forward passes, R-forward (J v) */
    NG_CAT_BACKWARD,   /* back-propagation */
    NG_CAT_GIBBS,      /* Gibbs sweeps of an RBM */
    NG_CAT_STATS,      /* sufficient statistics, Kronecker factors, moving averages */
    NG_CAT_INVERSE,    /* factorisations, inverses, eigendecompositions */
    NG_CAT_SOLVER,     /* CG / MINRES-QLP iterations, searches */
    NG_CAT_UPDATE,     /* preconditioned direction and parameter step */
    NG_CAT_CHECKPOINT, /* checkpoint writes */
    NG_CAT_EVAL,       /* monitors, AIS, evaluation */
    NG_CAT_COMM,       /* collectives (later) */
    NG_CAT_KERNEL,     /* one kernel launcher (kernels/<family>.cu) */
    NG_CAT_COUNT
} ng_range_cat;

const char *ng_range_cat_name(ng_range_cat c);
uint32_t ng_range_cat_color(ng_range_cat c); /* 0xAARRGGBB */

void ng_range_push_cat(ng_range_cat cat, const char *name);
void ng_range_push(const char *name); /* NG_CAT_OTHER */
void ng_range_pop(void);
/* s = (call) inside a range that is closed whatever the call returns. */
#define NG_RANGE_CAT(cat, name, s, call) \
    do {                                 \
        ng_range_push_cat(cat, name);    \
        (s) = (call);                    \
        ng_range_pop();                  \
    } while (0)
#define NG_RANGE(name, s, call) NG_RANGE_CAT(NG_CAT_OTHER, name, s, call)
/* NG_TRY(call) inside a range. */
#define NG_TRY_RANGE(cat, name, call)               \
    do {                                            \
        ng_status ng_rs_;                           \
        NG_RANGE_CAT(cat, name, ng_rs_, call);      \
        if (ng_rs_ != NG_OK) return ng_rs_;         \
    } while (0)

/* ---- the measured profile ------------------------------------------------------------------- */

struct ng_backend;

typedef struct ng_profile_config {
    int measure;          /* 1: time the ranges (--profile) */
    int capture;          /* 1: cudaProfilerStart/Stop around the window (CUDA backends only) */
    uint64_t first, last; /* update window, 1-based inclusive; 0, 0: every update */
    size_t max_trace;     /* ranges kept for the Chrome trace (0: 200000) */
} ng_profile_config;

/* Parse "A:B" (1 <= A <= B) into a window. */
ng_status ng_profile_parse_steps(const char *s, uint64_t *first, uint64_t *last);

/* Start profiling on be (the backend whose stream the timed work runs on). */
ng_status ng_profile_start(struct ng_backend *be, const ng_profile_config *cfg);
/* The run driver: before (begin = 1) and after (begin = 0) update number u (1-based). */
void ng_profile_update(uint64_t u, int begin);
/* Resolve pending device timings, close the capture window if still open and release the events
 * (call it before freeing the backend; ng_run calls it when the run ends). The results stay readable. */
ng_status ng_profile_finish(void);
/* Forget every measurement (the memory accounting stays). */
void ng_profile_reset(void);

/* Flop and backend-call counters of the open ranges (called by the backend wrappers). */
extern volatile int ng_profile_active_;
void ng_profile_count_(double flops, int calls);
static inline void ng_profile_count(double flops, int calls) {
    if (ng_profile_active_) ng_profile_count_(flops, calls);
}

/* Device-level calls, counted by the CUDA backend where it makes them (kernels/ng_cuda.cuh for
 * every NG_LAUNCH, host/backend/cuda.c for library calls, copies and graph launches): what the GPU
 * is asked to do per range, which is what launch overhead scales with. The CPU backend counts none. */
typedef enum ng_dev_call {
    NG_DEV_KERNEL = 0, /* a kernel launch (one NG_LAUNCH) */
    NG_DEV_BLAS,       /* a computing cuBLAS call (gemm, gemv, axpy, dot, ...) */
    NG_DEV_SOLVER,     /* a computing cuSOLVER call (potrf, syevd, ...) */
    NG_DEV_COPY,       /* a cudaMemcpy(Async) or cudaMemset(Async) */
    NG_DEV_GRAPH,      /* a cudaGraphLaunch (the graph's own nodes are not counted again) */
    NG_DEV_COUNT
} ng_dev_call;
const char *ng_dev_call_name(ng_dev_call k);
void ng_profile_device_call_(ng_dev_call kind);
static inline void ng_profile_device_call(ng_dev_call kind) {
    if (ng_profile_active_) ng_profile_device_call_(kind);
}
/* While suspended (a nesting counter), ranges opened and closed by the measuring thread are neither
 * timed nor counted: the CUDA-graph capture of a step (natgrad/train.h) records the step's work
 * without running it, so its ranges would measure nothing real. Pushes and pops inside a suspended
 * stretch must balance. */
void ng_profile_suspend(int on);

typedef struct ng_profile_row {
    const char *name;
    ng_range_cat cat;
    int depth;            /* nesting depth when first seen (0: outermost) */
    uint64_t calls;
    double total_s;       /* inclusive */
    double flops;         /* inclusive */
    double backend_calls; /* inclusive: BLAS calls + op launches */
    double device_calls[NG_DEV_COUNT]; /* inclusive: kernel launches, cuBLAS, cuSOLVER, copies, graph launches */
} ng_profile_row;

/* Rows of every range measured at least once, in the order they were first seen. Returns the
 * number of rows (may exceed max; only max are written). */
int ng_profile_rows(ng_profile_row *rows, int max);
/* Updates measured, and whether the timings come from device events. */
uint64_t ng_profile_updates(void);
int ng_profile_device_timed(void);
/* Capture window state: starts and stops issued so far. */
void ng_profile_capture_counts(int *starts, int *stops);

/* The table (range, category, calls, total, mean, share of the step, GFLOP/s, backend calls per
 * call, and on a CUDA backend kernel launches / cuBLAS / cuSOLVER / copies / graph launches per
 * call, with a per-update summary line) and the memory section, as text (malloc'ed; the caller
 * frees). */
ng_status ng_profile_table(char **text);
/* The same rows as CSV (every column, device calls per call included, on every backend). */
ng_status ng_profile_write_csv(const char *path);
/* Chrome trace-event JSON (ph "X" complete events, microseconds) that Perfetto / chrome://tracing open. */
ng_status ng_profile_write_trace(const char *path);

/* ---- device memory per arena ---------------------------------------------------------------- */

/* bytes > 0: an allocation of `role` on device `dev` ("cpu", "cuda:0"); bytes < 0: its release. */
void ng_profile_memory(const char *role, const char *dev, long long bytes);
typedef struct ng_profile_mem_row {
    const char *role, *dev;
    long long current, peak; /* bytes */
    int allocations;         /* live allocations */
} ng_profile_mem_row;
int ng_profile_memory_rows(ng_profile_mem_row *rows, int max);
/* Peak of the sum of live arenas on dev. */
long long ng_profile_memory_peak(const char *dev);

#ifdef __cplusplus
}
#endif
#endif
