/* natgrad/train.h: the trainer (one model, one preconditioner, one update rule, one batch stream)
 * and the run driver every `natgrad ... train` command uses.
 *
 * One update t (ng_trainer_step):
 *   x = next batch; model gradient on x; [model log columns]; update-rule penalty (weight decay);
 *   preconditioner observe (statistics hook) and apply (gradient -> direction, in place);
 *   update-rule step; [update-rule and preconditioner log columns]; t = t + 1.
 * An interrupted step (NG_ERR_INTERRUPTED from a long inner loop) is rolled back: the batch cursor
 * and the model's counters return to where they were, so a checkpoint written afterwards equals
 * the one written after update t and a resume from it is exact.
 *
 * Checkpoints (natgrad/checkpoint.h) hold: natgrad.version, run.t, run.seed, the data cursor
 * (data.epoch, data.pos, data.n, data.batch), the model (model.*: kind, configuration, state,
 * parameters), the preconditioner (precond.kind and its own entries and state) and the update rule
 * (update.kind, ...). The model part and the optimizer part (preconditioner, update rule, data
 * cursor, counters) can be written to separate files (per-rank optimizer state: see below).
 *
 * The run driver (ng_run) owns the loop: steps or a time budget, a CSV row every log_every updates
 * (driver, model, update-rule, monitor and preconditioner columns), a progress report with rate and
 * ETA through a callback (the library never prints), checkpoints every ckpt_every updates, at the
 * end and on interruption, numbered snapshots every snapshot_s seconds spent in updates, and
 * checked writes: a failed CSV write ends the run with an error after saving the checkpoint.
 * Profiling (natgrad/profile.h): every update is a "train step" range with its phases (batch,
 * model gradient, penalize, precond observe / apply, update step) inside; ng_profile_update
 * brackets update numbers t + 1 (the --profile-steps window), and ng_profile_finish ends the
 * measurement when the run ends. */
#ifndef NATGRAD_TRAIN_H
#define NATGRAD_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "natgrad/data.h"
#include "natgrad/graph.h"
#include "natgrad/model.h"
#include "natgrad/precond.h"
#include "natgrad/update.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NG_TRAIN_MAX_COLUMNS 32
#define NG_VERSION_STRING "0.2.0"

/* CUDA graphs of the steady-state step (--cuda-graph 1, ng_trainer_set_cuda_graph). On a CUDA
 * backend, an unlogged update t >= 1 runs the batch assembly as usual, then replays a captured
 * graph of gradient + penalize + preconditioner + update step (one cudaGraphLaunch instead of
 * every launch and cuBLAS call), then the model's host check (a network's finite objective, so it
 * comes after the update instead of before it). The graph is keyed by everything a replay cannot
 * change: the batch's device address and shape (a last partial batch, or a growing batch schedule,
 * is a new key) and the update rule's per-update host scalars (ng_update_i.graph_key: SGD's lr_t,
 * NAG's mu_t and mu_{t+1}; Adam keeps its step count on the device) and the preconditioner's
 * (ng_precond_i.graph_key: none for identity, centering, FANG, diag and PRONG, whose statistics and
 * Philox steps live on the device; an update it cannot capture, such as FANG's refit or PRONG's
 * reparametrisation, which read the host, runs eagerly and counts in `eager`). Only models with
 * ng_model_i.graph_check are captured (net; rbm, whose Philox step is counted on the device; cnn,
 * whose augmentation step is); updates for which the model's graph_eager says 1 (a cnn's
 * re-whitening) run eagerly too. After a replay the model's, the rule's and the preconditioner's
 * graph_replayed update their host mirrors of device counters.
 * A new key is captured (stream capture of one
 * eager step, instantiated; the NG_TRAIN_GRAPHS most recently used graphs are kept); update 0 and
 * logged updates run eagerly (first-use allocations, host reads of the log columns). The eager and
 * graph paths run the same ops on the same data, so their results are bit-identical.
 * Truncated Newton (tn) and K-FAC (kfac) read the host mid-update, so their updates are graph
 * SEGMENTS instead (natgrad/graph.h): on unlogged updates t >= 1 the update's host code runs as
 * usual, and the gradient and the preconditioner's pieces between its host reads (tn: each
 * curvature product; kfac: each F^-1 product and the quadratic model's dots) replay captured graphs keyed by their addresses,
 * shapes, host scalars and the model's pass state (ng_model_i.graph_state_get). */
#define NG_TRAIN_GRAPHS 4
#define NG_TRAIN_GRAPH_KEY 8
typedef struct ng_train_graph {
    int on;
    struct {
        void *exec; /* NULL: empty slot */
        double key[NG_TRAIN_GRAPH_KEY];
        int n_key;
        uint64_t last_use;
    } slot[NG_TRAIN_GRAPHS];
    uint64_t captures, replays, eager; /* updates captured (then launched), replayed, run eagerly */
    /* segments (natgrad/graph.h) for the preconditioners that read the host mid-update (tn,
     * kfac): the update runs its host code as usual, and the gradient ("gradient") and the
     * preconditioner's pieces between host reads are captured once per key and replayed */
    int seg;
    ng_graph_segs segs;
} ng_train_graph;

typedef struct ng_trainer {
    ng_model *model;
    ng_precond *pc;
    ng_update *upd;
    ng_batches *data;
    uint64_t seed;
    uint64_t t;                                 /* updates done */
    int n_columns;                              /* CSV columns of a logged step */
    const char *columns[NG_TRAIN_MAX_COLUMNS];  /* step, epoch, time_s, lr, model..., update...,
                                                 * monitor..., precond... */
    int col_model, col_update, col_monitor, col_precond; /* first index of each group */
    /* optional growing mini-batches (K-FAC section 13): update t uses the global batch
     * ng_batch_schedule_exp(t + 1, sched_m1, sched_full, the batches' capacity) (0: fixed size).
     * Checkpointed as data.schedule_m1 / data.schedule_full; a resume must use the same. */
    int sched_m1, sched_full;
    struct ng_comm *comm; /* data parallelism (ng_trainer_set_comm); NULL: one process */
    /* the gradient all-reduce overlapped with the backward pass (ng_trainer_set_comm_overlap):
     * buckets of at least bucket_elems elements, started from the end of the arena as the model
     * reports them final; ready_lo / started_lo: first element reported final / already started */
    int comm_overlap;
    size_t bucket_elems, ready_lo, started_lo;
    ng_train_graph graph; /* --cuda-graph */
} ng_trainer;

/* Turn the CUDA-graph step on (or off). Refused (NG_ERR_UNSUPPORTED, naming the part) without
 * graph support in the backend (the CPU), for an update rule or a preconditioner without graph_key
 * (tn and kfac: segments, see above; kfac's asynchronous refreshes refused), or a data-parallel run the graph cannot hold (ng_trainer_graph_dist_check). On several ranks
 * with NCCL the graph holds the gradient's shard weighting and all-reduce too (one graph launch per
 * update: gradient, all-reduce, update); the shard weight is part of the key, every rank's graph
 * decision is checked against the others' (ng_trainer_agree_graph), and after each launch the
 * all-reduce is waited for within the communicator's timeout (ng_comm_wait_device). */
ng_status ng_trainer_set_cuda_graph(ng_trainer *tr, int on);
/* Free the trainer's graphs (before the backend); safe on a zeroed trainer. */
void ng_trainer_release(ng_trainer *tr);

/* Borrow the four parts (they must outlive the trainer). monitor_columns: NULL-terminated names
 * of the columns ng_run's monitor hook fills (or NULL). */
ng_status ng_trainer_init(ng_trainer *tr, ng_model *m, ng_precond *pc, ng_update *upd,
                          ng_batches *data, uint64_t seed, const char *const *monitor_columns);
/* One update. When row is non-NULL (n_columns doubles) the model, update-rule and preconditioner
 * columns are filled (the driver and monitor columns are the caller's). */
ng_status ng_trainer_step(ng_trainer *tr, double *row);

enum { NG_SAVE_MODEL = 1, NG_SAVE_OPTIM = 2, NG_SAVE_ALL = 3 };
/* Write the parts named by `parts` atomically to path (natgrad/checkpoint.h). */
ng_status ng_trainer_save(ng_trainer *tr, const char *path, int parts);
/* Restore the parts named by `parts` from an open checkpoint (validated field by field: counts,
 * cursor, shapes, configuration that must match this trainer). Nothing changes on failure. */
ng_status ng_trainer_load(ng_trainer *tr, const ng_ckpt *c, int parts);

/* ---- data parallelism (host/core/dist.c, natgrad/comm.h) ---------------------------------------
 * With a communicator of N > 1 ranks, each rank's ng_batches holds its shard of every global batch
 * (rank and world as the communicator's). In each update the gradient (a mean over the shard) is
 * weighted by the shard's share of the global batch and summed over the ranks: the gradient arena
 * in buckets during the backward pass (ng_trainer_set_comm_overlap) or in one all-reduce, so every rank applies the same step to the same parameters; the model's
 * log columns are combined the same way; the run driver's stop decisions (time budget, interrupt)
 * are agreed by all ranks; only rank 0 writes the CSV log and reports progress.
 * Checkpoints: rank 0 writes PATH (model, its own optimizer state, dist.world = N), rank r > 0
 * writes PATH.rank<r> (its optimizer state: data shard cursor, update rule, preconditioner), the
 * ranks' files first. Resume on N ranks is bit-exact; on another number of ranks only the model
 * and the global data cursor are restored (the optimizer state restarts: not bit-exact).
 * Supported: the identity preconditioner (first-order rules sgd, nag, adam, rmsprop) and the
 * preconditioners with data_parallel = 1 (K-FAC, also in the natural parameter space, truncated
 * Newton, PRONG, the full Fisher, the diagonal metric; for RBMs also centering and FANG), which the trainer hands their shard (ng_precond.dist) before each observe and
 * which reduce their own batch statistics. A model with data_parallel = 1 (the RBM) gets its shard
 * in ng_model.dist before each gradient and reduces its own gradient (the trainer then does not);
 * its gather hook runs on every rank before a checkpoint (ng_trainer_save_ranks). */
struct ng_comm;
/* Attach the communicator (checks the batches' sharding and that the preconditioner supports it). */
ng_status ng_trainer_set_comm(ng_trainer *tr, struct ng_comm *c);
/* Restore a run from its main checkpoint c as described above (ng_trainer_load(ALL) on one rank). */
ng_status ng_trainer_resume(ng_trainer *tr, const ng_ckpt *c);
/* The checkpoint of every rank (ng_trainer_save(ALL) on one rank); all ranks call it. */
ng_status ng_trainer_save_ranks(ng_trainer *tr, const char *path);
/* 1 on the rank that writes logs (rank 0, or a single process). */
int ng_trainer_lead(const ng_trainer *tr);
/* The gradient all-reduce in buckets overlapped with the backward pass (on = 1, the default of
 * ng_trainer_init, with buckets of NG_TRAIN_BUCKET_MB) or one all-reduce after it (on = 0).
 * bucket_mb > 0: the least size of a bucket in MiB of float32 elements (the last one may be
 * smaller). The model reports its layers through ng_model.grad_ready (the network engine does, on
 * the last chunk; other models are reduced whole after their gradient, as with on = 0); each
 * bucket is scaled by the shard's share and started with ng_comm_allreduce_start, in the arena's
 * order from its end (the backward pass's order), and ng_trainer_reduce_gradient waits for them.
 * The sums are those of the single all-reduce (natgrad/comm.h: bit for bit on MPI). */
#define NG_TRAIN_BUCKET_MB 1.0
ng_status ng_trainer_set_comm_overlap(ng_trainer *tr, int on, double bucket_mb);
/* The step's hooks (no-ops on one rank): gradient all-reduce (the wait for the buckets when
 * overlapped), log columns, stop agreement. ng_trainer_gradient: the model's gradient of batch x
 * with the overlapped buckets started during its backward pass (see above). */
ng_status ng_trainer_gradient(ng_trainer *tr, const ng_tensor *x);
ng_status ng_trainer_reduce_gradient(ng_trainer *tr);
ng_status ng_trainer_reduce_columns(ng_trainer *tr, double *row);
ng_status ng_trainer_agree_stop(ng_trainer *tr, int *by_time, int *interrupted);
/* CUDA graphs on several ranks (ng_trainer_set_cuda_graph): the captured step holds the shard
 * weighting and the gradient's NCCL all-reduce (--comm-overlap 1: its buckets, forked onto the
 * communication stream and joined back, natgrad/comm.h), and the reductions a model does inside its
 * gradient (an RBM's gW and means, synchronised batch norm merged on the device: NCCL all-reduces on
 * the backend's stream). graph_dist_check refuses (NG_ERR_UNSUPPORTED, naming the option) the MPI
 * communicator, a model whose graph_check refuses on several ranks (batch norm merged through the
 * host) and a preconditioner not listed as captured there (all with a graph_key are: kfac in phi
 * space with its factors' all-reduces; tn and kfac otherwise in segments); NG_OK on one rank. agree_graph: before an update's graph step
 * every rank states its decision (0 eager, k > 0 replay of slot k - 1, -k capture into slot k - 1) and
 * a hash of the rank-independent part of its key (the rule's and preconditioner's scalars); one host
 * all-reduce tells every rank whether all agree, and on disagreement every rank returns the same
 * error (NG_ERR_INVALID_ARG) before any collective is issued: no NCCL deadlock. */
ng_status ng_trainer_graph_dist_check(const ng_trainer *tr);
ng_status ng_trainer_agree_graph(ng_trainer *tr, int decision, const double *key, int n);
/* Graph segments on several ranks (tn: ngd, ncg, hf; kfac): the "gradient" segment holds the gradient's
 * shard weighting and NCCL all-reduce (or its buckets), each "tn curvature product" its product's, "kfac
 * statistics" the factors'; the other segments (CG's vector work, K-FAC's F^-1 products, the
 * objective's sums) hold no collective and the objective's sums are reduced on the host after their
 * segment. NCCL needs every rank to capture and replay the
 * segments holding collectives alike; the cache's decisions are a deterministic function of the
 * sequence of keys, and the keys change at the same calls on every rank (the same code, buffers
 * allocated at the same points with sizes of the global batch's shape; the per-rank parts, addresses
 * and the shard weight, fixed for a run), so the ranks decide alike without a collective per segment.
 * agree_segments checks that invariant once per update: one host all-reduce of a hash of the cache's
 * trace of decisions (natgrad/graph.h); ranks that diverged all return the same error
 * (NG_ERR_INVALID_ARG) at the end of that update. NG_OK on one rank. */
ng_status ng_trainer_agree_segments(ng_trainer *tr);

/* ---- the run driver -------------------------------------------------------------------------- */

typedef struct ng_run_progress {
    uint64_t t, start, total; /* updates done, at start of this run, target */
    double elapsed_s, rate, eta_s;
    const double *row;        /* the logged row (trainer columns) */
    int final;
} ng_run_progress;

typedef struct ng_run_config {
    uint64_t steps;        /* total updates (the run stops when t reaches it) */
    double minutes;        /* > 0: also stop after this much wall clock */
    int log_every;         /* CSV row + progress every N updates (>= 1) */
    int ckpt_every;        /* checkpoint every N updates (0: only at the end) */
    double snapshot_s;     /* > 0: numbered checkpoints every S seconds spent in updates */
    const char *out_dir;   /* where snapshots go */
    const char *csv_path;
    const char *ckpt_path;
    int append;            /* 1: continue the CSV and snapshot list of this run (resume): rows
                            * after the current t are dropped first; 0: start them afresh */
    /* monitor columns (the trainer's monitor group), computed on logged steps */
    ng_status (*monitor)(void *user, ng_trainer *tr, double *values);
    /* progress report on logged steps and at the end */
    void (*progress)(void *user, const ng_run_progress *p);
    void *user;
} ng_run_config;

typedef struct ng_run_result {
    uint64_t start, end; /* t at start and at the end */
    double seconds;      /* wall clock of this call */
    double time_offset_s; /* on resume: time_s of the last CSV row kept, where this run's times continue */
    int interrupted;     /* stopped by ng_interrupt_request */
    int time_limit;      /* stopped by the time budget */
    int saved;           /* the checkpoint at ckpt_path holds update `end` */
} ng_run_result;

/* Run until t reaches steps, the time budget is spent or an interrupt arrives, then save. Returns
 * NG_OK on those three (see res), or the first error (after saving the last completed update
 * when the error left the trainer consistent: a failed log write, a numerical failure). */
ng_status ng_run(ng_trainer *tr, const ng_run_config *rc, ng_run_result *res);

/* Keep the header line and the rows whose first field (the step) is <= t of a CSV log (used when
 * a run resumes: rows written after its last checkpoint are dropped). Missing file: NG_OK. */
ng_status ng_csv_truncate(const char *path, uint64_t t);

#ifdef __cplusplus
}
#endif
#endif
