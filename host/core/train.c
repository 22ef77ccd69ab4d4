/* train.c: the trainer (one update through model, preconditioner and update rule), its
 * checkpoints, and the run driver every train command uses (natgrad/train.h).
 * Must not: print (progress goes to the caller's callback, warnings to ng_log), know any concrete
 * model or optimizer, or save a checkpoint of a step that failed halfway. */
#include "natgrad/train.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "natgrad/comm.h"
#include "natgrad/file.h"
#include "natgrad/kfac.h"
#include "natgrad/log.h"

/* ---- the trainer --------------------------------------------------------------------------- */

static ng_status add_columns(ng_trainer *tr, const char *const *names, const char *group) {
    for (; names && *names; names++) {
        if (tr->n_columns >= NG_TRAIN_MAX_COLUMNS)
            return ng_error(NG_ERR_INVALID_ARG, "trainer: more than %d log columns (%s adds %s)",
                            NG_TRAIN_MAX_COLUMNS, group, *names);
        tr->columns[tr->n_columns++] = *names;
    }
    return NG_OK;
}

ng_status ng_trainer_init(ng_trainer *tr, ng_model *m, ng_precond *pc, ng_update *upd,
                          ng_batches *data, uint64_t seed, const char *const *monitor_columns) {
    static const char *const driver_columns[] = {"step", "epoch", "time_s", "lr", NULL};
    memset(tr, 0, sizeof *tr);
    if (!m || !pc || !upd || !data)
        return ng_error(NG_ERR_INVALID_ARG, "trainer: model, preconditioner, update rule and data are required");
    tr->model = m;
    tr->pc = pc;
    tr->upd = upd;
    tr->data = data;
    tr->seed = seed;
    tr->comm_overlap = 1;
    tr->bucket_elems = (size_t)(NG_TRAIN_BUCKET_MB * 1048576.0 / sizeof(float));
    NG_TRY(add_columns(tr, driver_columns, "the driver"));
    tr->col_model = tr->n_columns;
    NG_TRY(add_columns(tr, m->iface->columns, m->iface->kind));
    tr->col_update = tr->n_columns;
    NG_TRY(add_columns(tr, upd->iface->columns, upd->iface->name));
    tr->col_monitor = tr->n_columns;
    NG_TRY(add_columns(tr, monitor_columns, "the monitor"));
    tr->col_precond = tr->n_columns;
    return add_columns(tr, pc->iface->columns, pc->iface->name);
}

/* the preconditioner's observe and apply under an FP32 guard (natgrad/backend.h): with --tf32 only the
 * model's own forward and backward passes may use TF32; factor statistics, inversions,
 * eigendecompositions, curvature products, solves and line searches stay FP32 */
static ng_status precond_fp32(ng_trainer *tr) {
    ng_backend *be = tr->model->be;
    int saved;
    ng_status s, e;
    NG_TRY(ng_fp32_begin(be, &saved));
    NG_RANGE_CAT(NG_CAT_STATS, "precond observe", s, ng_precond_observe(tr->pc, tr->model, tr->t));
    if (s == NG_OK) NG_RANGE_CAT(NG_CAT_UPDATE, "precond apply", s, ng_precond_apply(tr->pc, tr->model, tr->t));
    e = ng_fp32_end(be, saved);
    return s != NG_OK ? s : e;
}

/* The gradient as a graph segment (natgrad/graph.h) under --cuda-graph with tn / kfac; the
 * model's host check after it. Eager otherwise. A count the gradient advances on the host (a cnn's
 * gradients) is not pass state (in a key no graph would replay): the model's graph_replayed repeats
 * it after a replay and graph_discarded undoes it after a failed capture, as for the whole-step
 * graph. The state callbacks tell the two apart: the failed capture ran the body, a replay did not.
 * On several ranks the segment holds the gradient's shard weighting and NCCL all-reduce (or its
 * --comm-overlap buckets), so a replay reduces it too; the launch is then waited for within
 * --comm-timeout, as an eager all-reduce is. */
typedef struct grad_ctx {
    ng_model *m; /* first: ng_model_seg_state_get */
    ng_trainer *tr;
    const ng_tensor *x;
    int ran; /* the body ran in this call (eager, or captured) */
} grad_ctx;
static ng_status grad_body(void *user) {
    grad_ctx *c = (grad_ctx *)user;
    c->ran = 1;
    NG_TRY(ng_trainer_gradient(c->tr, c->x));
    return c->tr->comm ? ng_trainer_reduce_gradient(c->tr) : NG_OK;
}
static void grad_state_set(void *user, const uint64_t *st, int n) {
    grad_ctx *c = (grad_ctx *)user;
    const struct ng_model_i *mi = c->m->iface;
    if (c->ran && mi->graph_discarded) mi->graph_discarded(c->m); /* a failed capture: before its eager run */
    ng_model_seg_state_set(user, st, n);
    if (!c->ran && mi->graph_replayed) mi->graph_replayed(c->m, c->x); /* a replay */
    c->ran = 0;
}
static ng_status gradient_seg(ng_trainer *tr, const ng_tensor *x) {
    static const ng_graph_seg seg = {"gradient", grad_body, ng_model_seg_state_get, grad_state_set};
    grad_ctx c;
    uint64_t key[6];
    ng_status s;
    const int dist = tr->comm && tr->comm->world > 1;
    if (!tr->graph.seg) return ng_trainer_gradient(tr, x);
    c.m = tr->model;
    c.tr = tr;
    c.x = x;
    c.ran = 0;
    key[0] = ng_graph_key_ptr(x->ptr);
    key[1] = (uint64_t)(uint32_t)x->rows << 32 | (uint32_t)x->cols;
    key[2] = (uint64_t)(uint32_t)x->ld;
    key[3] = (uint64_t)x->dtype;
    /* several ranks: the captured scal's weight (this rank's share of the global batch) and the buckets */
    key[4] = dist ? ng_graph_key_f64((double)(tr->data->hi - tr->data->lo) / (double)tr->data->batch) : 0;
    key[5] = dist ? (uint64_t)tr->bucket_elems << 1 | (uint64_t)(tr->comm_overlap != 0) : 0;
    tr->model->defer_check = 1;
    s = ng_graph_seg_run(&tr->graph.segs, &seg, &c, key, 6);
    tr->model->defer_check = 0;
    NG_TRY(s);
    if (dist) NG_TRY(ng_comm_wait_device(tr->comm, tr->model->be, "the gradient (in its graph segment)"));
    return tr->model->iface->check_gradient ? tr->model->iface->check_gradient(tr->model) : NG_OK;
}

/* This rank's shard of the update's global batch, for the models and preconditioners that reduce
 * their own statistics (eager and captured updates alike: a capture bakes them in, and the graph's
 * key holds the batch's columns and the shard weight, which determine them on this rank) */
static void set_shards(ng_trainer *tr) {
    if (tr->model->dist.comm) {
        tr->model->dist.lo = tr->data->lo;
        tr->model->dist.hi = tr->data->hi;
        tr->model->dist.batch = tr->data->batch;
    }
    if (tr->pc->dist.comm) {
        tr->pc->dist.lo = tr->data->lo;
        tr->pc->dist.hi = tr->data->hi;
        tr->pc->dist.batch = tr->data->batch;
    }
}

static ng_status step_body(ng_trainer *tr, double *row) {
    ng_tensor x;
    ng_status s;
    int i;
    ng_range_push_cat(NG_CAT_DATA, "batch");
    s = NG_OK;
    if (tr->sched_m1 > 0)
        s = ng_batches_resize(tr->data, ng_batch_schedule_exp(tr->t + 1, tr->sched_m1, tr->sched_full, tr->data->capacity));
    if (s == NG_OK) s = ng_batches_next(tr->data, &x);
    ng_range_pop();
    NG_TRY(s);
    set_shards(tr);
    NG_TRY_RANGE(NG_CAT_BACKWARD, "model gradient", gradient_seg(tr, &x));
    if (tr->comm && !tr->graph.seg) /* under segments the gradient's segment reduced it */
        NG_TRY_RANGE(NG_CAT_COMM, "all-reduce gradient", ng_trainer_reduce_gradient(tr));
    if (row && tr->model->iface->log_values)
        NG_TRY_RANGE(NG_CAT_EVAL, "model log values", tr->model->iface->log_values(tr->model, tr->t, row + tr->col_model));
    if (row && tr->comm) NG_TRY_RANGE(NG_CAT_COMM, "all-reduce log columns", ng_trainer_reduce_columns(tr, row));
    NG_TRY_RANGE(NG_CAT_UPDATE, "penalize", ng_update_penalize(tr->upd, tr->model, tr->t));
    NG_TRY(precond_fp32(tr));
    NG_TRY_RANGE(NG_CAT_UPDATE, "update step", ng_update_step(tr->upd, tr->model, tr->t));
    if (!row) return NG_OK;
    if (tr->upd->iface->log_values) NG_TRY(tr->upd->iface->log_values(tr->upd, tr->model, row + tr->col_update));
    if (tr->pc->iface->log_values) NG_TRY(tr->pc->iface->log_values(tr->pc, row + tr->col_precond));
    for (i = tr->col_model; i < tr->col_monitor; i++)
        if (!isfinite(row[i]))
            return ng_error(NG_ERR_NUMERIC, "update %llu: %s is %g (diverged?): lower --lr",
                            (unsigned long long)tr->t, tr->columns[i], row[i]);
    return NG_OK;
}

/* ---- CUDA graphs of the step (natgrad/train.h) ------------------------------------------------ */

/* tn and kfac: segments (natgrad/graph.h) need the model's pass state */
static ng_status graph_segments_check(ng_trainer *tr) {
    if (!tr->model->iface->graph_state_get || !tr->model->iface->graph_state_set)
        return ng_error(NG_ERR_UNSUPPORTED, "--cuda-graph 1: the model %s has no pass state for graph segments (%s is "
                        "captured in segments on net and cnn); run it with --cuda-graph 0", tr->model->iface->kind,
                        tr->pc->iface->name);
    return NG_OK;
}

/* K-FAC in the natural parameter space (--phi-every K) is captured whole (kfac.c's graph_key), not in
 * segments */
static int graph_segmented(ng_trainer *tr) {
    ng_kfac_config kc;
    if (strcmp(tr->pc->iface->name, "tn") == 0) return 1;
    if (strcmp(tr->pc->iface->name, "kfac") != 0) return 0;
    if (ng_kfac_get_config(tr->pc, &kc) != NG_OK) {
        ng_clear_error();
        return 1;
    }
    return kc.phi_every <= 0;
}

ng_status ng_trainer_set_cuda_graph(ng_trainer *tr, int on) {
    if (!on) {
        ng_trainer_release(tr);
        tr->graph.on = 0;
        return NG_OK;
    }
    if (!ng_graph_supported(tr->model->be))
        return ng_error(NG_ERR_UNSUPPORTED, "--cuda-graph 1: the %s backend has no CUDA graphs (use --device cuda)",
                        tr->model->be->iface->name);
    if (!tr->model->iface->graph_check)
        return ng_error(NG_ERR_UNSUPPORTED, "--cuda-graph 1: the model %s is not captured (its gradient reads the host "
                        "mid-step; captured: net, rbm, cnn); run it with --cuda-graph 0", tr->model->iface->kind);
    NG_TRY(tr->model->iface->graph_check(tr->model));
    if (graph_segmented(tr)) {
        ng_status s;
        NG_TRY(graph_segments_check(tr));
        ng_trainer_release(tr); /* turned on again: the old graphs go */
        ng_graph_segs_init(&tr->graph.segs, tr->model->be);
        tr->graph.seg = 1;
        s = ng_trainer_graph_dist_check(tr); /* several ranks: NCCL, and the model */
        if (s != NG_OK) {
            ng_trainer_release(tr);
            tr->graph.on = 0;
            return s;
        }
        tr->graph.on = 1;
        tr->pc->segs = &tr->graph.segs;
        return NG_OK;
    }
    if (!tr->upd->iface->graph_key)
        return ng_error(NG_ERR_UNSUPPORTED, "--cuda-graph 1: the update rule %s is not captured (captured: sgd, nag, "
                        "adam, rmsprop); run it with --cuda-graph 0", tr->upd->iface->name);
    if (!tr->pc->iface->graph_key)
        return ng_error(NG_ERR_UNSUPPORTED, "--cuda-graph 1: the preconditioner %s is not captured (captured: identity, "
                        "centering, fang, diag, prong, full, kfac --phi-every whole; kfac, tn in graph segments); run it with --cuda-graph 0",
                        tr->pc->iface->name);
    NG_TRY(ng_trainer_graph_dist_check(tr));
    tr->graph.on = 1;
    return NG_OK;
}

void ng_trainer_release(ng_trainer *tr) {
    int i;
    if (!tr || !tr->model) return;
    if (tr->graph.seg) {
        ng_graph_segs_free(&tr->graph.segs);
        tr->graph.seg = 0;
        tr->pc->segs = NULL;
    }
    for (i = 0; i < NG_TRAIN_GRAPHS; i++)
        if (tr->graph.slot[i].exec) {
            ng_graph_free(tr->model->be, tr->graph.slot[i].exec);
            tr->graph.slot[i].exec = NULL;
        }
}

/* The captured part of a step: what step_body does between the batch and the log columns. */
static ng_status step_core(ng_trainer *tr, const ng_tensor *x) {
    /* several ranks: the shard weighting and the NCCL all-reduce of the gradient, in the graph (with
     * --comm-overlap 1 its buckets fork onto the communication stream during the backward pass) */
    NG_TRY_RANGE(NG_CAT_BACKWARD, "model gradient", ng_trainer_gradient(tr, x));
    if (tr->comm) NG_TRY_RANGE(NG_CAT_COMM, "all-reduce gradient", ng_trainer_reduce_gradient(tr));
    NG_TRY_RANGE(NG_CAT_UPDATE, "penalize", ng_update_penalize(tr->upd, tr->model, tr->t));
    NG_TRY(precond_fp32(tr)); /* under the FP32 guard, as eagerly (--tf32) */
    NG_TRY_RANGE(NG_CAT_UPDATE, "update step", ng_update_step(tr->upd, tr->model, tr->t));
    return NG_OK;
}

/* Capture step_core into a new graph (the work is recorded, not run). */
static ng_status graph_capture(ng_trainer *tr, const ng_tensor *x, void **exec) {
    ng_backend *be = tr->model->be;
    ng_status s, e;
    char msg[1024];
    NG_TRY(ng_graph_begin(be));
    ng_profile_suspend(1);
    tr->model->defer_check = 1;
    s = step_core(tr, x);
    tr->model->defer_check = 0;
    ng_profile_suspend(0);
    if (s != NG_OK) snprintf(msg, sizeof msg, "%s", ng_last_error());
    e = ng_graph_end(be, exec); /* always leave capture mode */
    if (s != NG_OK || e != NG_OK) { /* nothing recorded ran: host mirrors of device counters go back */
        if (tr->model->iface->graph_discarded) tr->model->iface->graph_discarded(tr->model);
        if (tr->upd->iface->graph_discarded) tr->upd->iface->graph_discarded(tr->upd, tr->t);
        if (tr->pc->iface->graph_discarded) tr->pc->iface->graph_discarded(tr->pc, tr->t);
    }
    if (s != NG_OK) {
        if (*exec) ng_graph_free(be, *exec);
        *exec = NULL;
        return ng_error(s, "--cuda-graph: update %llu could not be captured (%s); run with --cuda-graph 0",
                        (unsigned long long)tr->t, msg);
    }
    if (e != NG_OK)
        return ng_error_wrap(e, "--cuda-graph: capturing update %llu: ", (unsigned long long)tr->t);
    return NG_OK;
}

static ng_status graph_step(ng_trainer *tr) {
    ng_train_graph *g = &tr->graph;
    ng_tensor x;
    ng_status s;
    double key[NG_TRAIN_GRAPH_KEY];
    int nk, np, i, hit = -1, victim, empty = -1, lru = -1, replay;
    const int epoch0 = tr->data->epoch, pos0 = tr->data->pos;
    double pkey[NG_TRAIN_GRAPH_KEY];
    const int dist = tr->comm && tr->comm->world > 1;
    NG_TRY(ng_trainer_graph_dist_check(tr)); /* a communicator attached after ng_trainer_set_cuda_graph */
    if (tr->sched_m1 > 0)
        NG_TRY(ng_batches_resize(tr->data, ng_batch_schedule_exp(tr->t + 1, tr->sched_m1, tr->sched_full, tr->data->capacity)));
    /* the preconditioner's part of the key, or an eager update (a refit reads the host); on several
     * ranks it sees the shards of this update's batch (K-FAC: its statistics' prefix of the global
     * batch), as the update will */
    set_shards(tr);
    np = tr->pc->iface->graph_key(tr->pc, tr->model, tr->t, tr->data->hi - tr->data->lo, pkey, NG_TRAIN_GRAPH_KEY);
    if (np < 0) {
        if (dist) NG_TRY(ng_trainer_agree_graph(tr, 0, NULL, 0)); /* every rank eager here too */
        g->eager++;
        return step_body(tr, NULL);
    }
    ng_range_push_cat(NG_CAT_DATA, "batch");
    s = ng_batches_next(tr->data, &x);
    ng_range_pop();
    NG_TRY(s);
    set_shards(tr);
    /* the key: the batch as the captured kernels see it, then the rule's and the preconditioner's
     * host scalars */
    key[0] = (double)(uintptr_t)x.data;
    key[1] = (double)x.rows;
    key[2] = (double)x.cols;
    key[3] = (double)x.ld;
    nk = tr->upd->iface->graph_key(tr->upd, tr->t, key + 4, NG_TRAIN_GRAPH_KEY - 4);
    if (nk < 0 || nk + 4 + np > NG_TRAIN_GRAPH_KEY)
        return ng_error(NG_ERR_UNSUPPORTED, "--cuda-graph: update rule %s and preconditioner %s cannot key update %llu",
                        tr->upd->iface->name, tr->pc->iface->name, (unsigned long long)tr->t);
    memcpy(key + 4 + nk, pkey, (size_t)np * sizeof key[0]);
    nk += 4 + np;
    if (dist) { /* the captured scal's weight: this rank's share of the global batch */
        if (nk + 1 > NG_TRAIN_GRAPH_KEY)
            return ng_error(NG_ERR_UNSUPPORTED, "--cuda-graph: update %llu: no room for the shard weight in the key",
                            (unsigned long long)tr->t);
        key[nk++] = (double)(tr->data->hi - tr->data->lo) / (double)tr->data->batch;
    }
    for (i = 0; i < NG_TRAIN_GRAPHS; i++) {
        if (!g->slot[i].exec) {
            if (empty < 0) empty = i;
            continue;
        }
        if (g->slot[i].n_key == nk && memcmp(g->slot[i].key, key, (size_t)nk * sizeof key[0]) == 0) hit = i;
        if (lru < 0 || g->slot[i].last_use < g->slot[lru].last_use) lru = i;
    }
    victim = empty >= 0 ? empty : lru;
    replay = hit >= 0;
    if (dist) { /* the graphs hold the all-reduce: every rank must launch the same one (rank-independent key part) */
        s = ng_trainer_agree_graph(tr, replay ? hit + 1 : -(victim + 1), key + 4, nk - 5);
        if (s != NG_OK) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", ng_last_error());
            ng_batches_seek(tr->data, epoch0, pos0);
            return ng_error(s, "%s", msg);
        }
    }
    if (hit < 0) {
        void *exec = NULL;
        NG_RANGE_CAT(NG_CAT_OTHER, "graph capture", s, graph_capture(tr, &x, &exec));
        if (s != NG_OK) { /* nothing ran: the batch goes back too (graph_capture put the counters back) */
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", ng_last_error());
            ng_batches_seek(tr->data, epoch0, pos0);
            return ng_error(s, "%s", msg);
        }
        if (g->slot[victim].exec) ng_graph_free(tr->model->be, g->slot[victim].exec);
        g->slot[victim].exec = exec;
        memcpy(g->slot[victim].key, key, (size_t)nk * sizeof key[0]);
        g->slot[victim].n_key = nk;
        hit = victim;
        g->captures++;
    } else
        g->replays++;
    g->slot[hit].last_use = tr->t + 1;
    NG_TRY_RANGE(NG_CAT_UPDATE, "graph launch", ng_graph_launch(tr->model->be, g->slot[hit].exec));
    if (dist) /* the launch's all-reduce, within --comm-timeout (a dead rank: an error, not a hang) */
        NG_TRY_RANGE(NG_CAT_COMM, "graph all-reduce wait",
                     ng_comm_wait_device(tr->comm, tr->model->be, "the gradient (in the step's CUDA graph)"));
    if (replay) { /* a capture ran the host side of the step itself; a replay did not */
        if (tr->model->iface->graph_replayed) tr->model->iface->graph_replayed(tr->model, &x);
        if (tr->upd->iface->graph_replayed) tr->upd->iface->graph_replayed(tr->upd, tr->t);
        if (tr->pc->iface->graph_replayed) tr->pc->iface->graph_replayed(tr->pc, tr->t);
    }
    if (tr->model->iface->check_gradient)
        NG_TRY_RANGE(NG_CAT_EVAL, "check gradient", tr->model->iface->check_gradient(tr->model));
    return NG_OK;
}

/* 1: update tr->t must run eagerly (the model's host work this update: a cnn's re-whitening; the
 * preconditioner's eager updates come from its graph_key, in graph_step) */
static int graph_eager(const ng_trainer *tr) {
    return tr->model->iface->graph_eager && tr->model->iface->graph_eager(tr->model);
}

ng_status ng_trainer_step(ng_trainer *tr, double *row) {
    int epoch0 = tr->data->epoch, pos0 = tr->data->pos;
    ng_status s;
    if (tr->graph.seg) NG_TRY(ng_trainer_graph_dist_check(tr)); /* a communicator attached after ng_trainer_set_cuda_graph */
    if (tr->graph.on && !tr->graph.seg && !row && tr->t > 0 && !graph_eager(tr)) {
        NG_RANGE_CAT(NG_CAT_STEP, "train step", s, graph_step(tr));
    } else {
        /* segments replay only in unlogged steady-state updates (update 0 allocates on first use) */
        tr->graph.segs.on = tr->graph.seg && !row && tr->t > 0;
        if (tr->graph.on && !tr->graph.segs.on) tr->graph.eager++;
        NG_RANGE_CAT(NG_CAT_STEP, "train step", s, step_body(tr, row));
        tr->graph.segs.on = 0;
        /* several ranks: every rank made the same segment decisions this update (one host all-reduce) */
        if (s == NG_OK && tr->graph.seg) s = ng_trainer_agree_segments(tr);
    }
    if (s == NG_ERR_INTERRUPTED) {
        /* the model rolled back its own counters; put the data cursor back too */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", ng_last_error());
        ng_batches_seek(tr->data, epoch0, pos0);
        ng_error(NG_ERR_INTERRUPTED, "%s", msg);
        return s;
    }
    if (s == NG_OK) tr->t++;
    return s;
}

/* ---- checkpoints --------------------------------------------------------------------------- */

ng_status ng_trainer_save(ng_trainer *tr, const char *path, int parts) {
    ng_ckpt *c = NULL;
    ng_status s;
    NG_TRY(ng_ckpt_new(&c));
    s = ng_ckpt_set_str(c, "natgrad.version", NG_VERSION_STRING);
    if (s == NG_OK) s = ng_ckpt_set_u64(c, "run.t", tr->t);
    if (s == NG_OK) s = ng_ckpt_set_u64(c, "run.seed", tr->seed);
    if (s == NG_OK && (parts & NG_SAVE_MODEL)) s = ng_model_save(tr->model, c);
    if (s == NG_OK && (parts & NG_SAVE_OPTIM)) {
        s = ng_ckpt_set_i64(c, "data.epoch", tr->data->epoch);
        if (s == NG_OK) s = ng_ckpt_set_i64(c, "data.pos", tr->data->pos);
        if (s == NG_OK) s = ng_ckpt_set_i64(c, "data.n", tr->data->n);
        if (s == NG_OK) s = ng_ckpt_set_i64(c, "data.batch", tr->data->capacity);
        if (s == NG_OK) s = ng_ckpt_set_i64(c, "data.rank", tr->data->rank);
        if (s == NG_OK) s = ng_ckpt_set_i64(c, "data.world", tr->data->world);
        if (s == NG_OK && tr->comm && tr->comm->world > 1) s = ng_ckpt_set_i64(c, "dist.world", tr->comm->world);
        if (s == NG_OK && tr->sched_m1 > 0) s = ng_ckpt_set_i64(c, "data.schedule_m1", tr->sched_m1);
        if (s == NG_OK && tr->sched_m1 > 0) s = ng_ckpt_set_i64(c, "data.schedule_full", tr->sched_full);
        if (s == NG_OK) s = ng_precond_save(tr->pc, c);
        if (s == NG_OK) s = ng_update_save(tr->upd, c);
    }
    if (s == NG_OK) s = ng_ckpt_write(c, path);
    ng_ckpt_free(c);
    return s;
}

ng_status ng_trainer_load(ng_trainer *tr, const ng_ckpt *c, int parts) {
    uint64_t t, seed;
    int64_t epoch = 0, pos = 0, n, batch, rank, world;
    const char *path = ng_ckpt_path(c);
    NG_TRY(ng_ckpt_get_u64(c, "run.t", &t));
    NG_TRY(ng_ckpt_get_u64(c, "run.seed", &seed));
    if (seed != tr->seed)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: field run.seed is %llu, this run uses %llu", path,
                        (unsigned long long)seed, (unsigned long long)tr->seed);
    if (t > (uint64_t)1 << 53)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: field run.t = %llu is out of range [0, 2^53]", path,
                        (unsigned long long)t);
    if (parts & NG_SAVE_OPTIM) {
        NG_TRY(ng_ckpt_get_int(c, "data.n", 1, 2147483647, &n));
        NG_TRY(ng_ckpt_get_int(c, "data.batch", 1, n, &batch));
        NG_TRY(ng_ckpt_get_int(c, "data.world", 1, batch, &world));
        NG_TRY(ng_ckpt_get_int(c, "data.rank", 0, world - 1, &rank));
        NG_TRY(ng_ckpt_get_int(c, "data.epoch", 0, 2147483647, &epoch));
        NG_TRY(ng_ckpt_get_int(c, "data.pos", 0, n, &pos));
        if (n != tr->data->n || batch != tr->data->capacity || world != tr->data->world || rank != tr->data->rank)
            return ng_error(NG_ERR_FORMAT,
                            "checkpoint %s: trained on %lld examples in batches of %lld (rank %lld of %lld); "
                            "this run has %d examples in batches of %d (rank %d of %d): use the same data",
                            path, (long long)n, (long long)batch, (long long)rank, (long long)world,
                            tr->data->n, tr->data->capacity, tr->data->rank, tr->data->world);
        {
            int64_t m1 = 0, full = 0;
            if (ng_ckpt_has(c, "data.schedule_m1")) {
                NG_TRY(ng_ckpt_get_int(c, "data.schedule_m1", 1, n, &m1));
                NG_TRY(ng_ckpt_get_int(c, "data.schedule_full", 1, 2147483647, &full));
            }
            if (m1 != tr->sched_m1 || (m1 && full != tr->sched_full))
                return ng_error(NG_ERR_FORMAT, "checkpoint %s: batch schedule m1 = %lld, full at update %lld; this run uses "
                                "m1 = %d, full at %d (0: fixed batches): resume with the same schedule", path, (long long)m1,
                                (long long)full, tr->sched_m1, tr->sched_full);
        }
        NG_TRY(ng_precond_load(tr->pc, c, 0));
        NG_TRY(ng_update_load(tr->upd, c, 0));
    }
    if (parts & NG_SAVE_MODEL) NG_TRY(ng_model_load(tr->model, c, 0));
    /* everything validated: apply */
    if (parts & NG_SAVE_MODEL) NG_TRY(ng_model_load(tr->model, c, 1));
    if (parts & NG_SAVE_OPTIM) {
        NG_TRY(ng_precond_load(tr->pc, c, 1));
        NG_TRY(ng_update_load(tr->upd, c, 1));
        NG_TRY(ng_batches_seek(tr->data, (int)epoch, (int)pos));
    }
    tr->t = t;
    return NG_OK;
}

/* ---- CSV logs ------------------------------------------------------------------------------ */

/* Read a whole small text file (NULL + NG_OK when it does not exist). */
static ng_status read_text(const char *path, char **out, size_t *len) {
    FILE *f;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    struct stat st;
    *out = NULL;
    *len = 0;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) return NG_OK;
        return ng_error(NG_ERR_IO, "log %s: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) return ng_error(NG_ERR_IO, "log %s: not a regular file", path);
    f = fopen(path, "rb");
    if (!f) return ng_error(NG_ERR_IO, "log %s: cannot open: %s", path, strerror(errno));
    for (;;) {
        size_t r;
        if (n + 4096 + 1 > cap) {
            char *b;
            cap = cap ? 2 * cap : 65536;
            b = (char *)realloc(buf, cap);
            if (!b) {
                free(buf);
                fclose(f);
                return ng_error(NG_ERR_OOM, "log %s: out of memory", path);
            }
            buf = b;
        }
        r = fread(buf + n, 1, 4096, f);
        n += r;
        if (r < 4096) break;
    }
    if (ferror(f)) {
        free(buf);
        fclose(f);
        return ng_error(NG_ERR_IO, "log %s: read failed", path);
    }
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return NG_OK;
}

ng_status ng_csv_truncate(const char *path, uint64_t t) {
    char *buf, *line, *next;
    size_t len;
    ng_wfile w;
    int first = 1;
    NG_TRY(read_text(path, &buf, &len));
    if (!buf) return NG_OK;
    NG_TRY(ng_wfile_open(&w, path));
    for (line = buf; *line; line = next) {
        char *nl = strchr(line, '\n');
        size_t l = nl ? (size_t)(nl - line) + 1 : strlen(line);
        next = line + l;
        if (!first) {
            char *end = NULL;
            unsigned long long step = strtoull(line, &end, 10);
            if (end == line || (*end != ',' && *end != '\n') || step > t) continue;
        }
        first = 0;
        ng_wfile_write(&w, line, l);
    }
    free(buf);
    return ng_wfile_commit(&w);
}

typedef struct logfile {
    FILE *f;
    const char *path;
} logfile;

/* errno of the failed call, or EIO when the stream failed earlier without one */
static ng_status log_write_failed(const logfile *lf) {
    return ng_error(NG_ERR_IO, "log %s: write failed: %s", lf->path, strerror(errno ? errno : EIO));
}

/* Formatted text into a log: vsnprintf + fwrite, so every byte goes through one checked call.
 * Returns < 0 on a failed write (errno says why). */
static int log_text(logfile *lf, const char *fmt, ...) {
    char buf[8192];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf) {
        errno = EOVERFLOW;
        return -1;
    }
    return fwrite(buf, 1, (size_t)n, lf->f) == (size_t)n ? n : -1;
}

/* The callers zero errno before their writes, so when a buffered write already failed (the
 * stream's error flag is set) errno still holds its reason. */
static ng_status log_flush(logfile *lf) {
    if (!ferror(lf->f)) errno = 0;
    if (fflush(lf->f) != 0 || ferror(lf->f)) return log_write_failed(lf);
    return NG_OK;
}

/* Open a log with the given header line: append (after dropping rows past t; the existing header
 * must be this one) or start afresh. */
/* The number in column `col` (0-based) of the last data row of a CSV text (0 when there is none):
 * the time columns continue from it on --resume. */
static double last_row_field(const char *buf, size_t len, int col) {
    size_t end = len, start;
    const char *p;
    int c;
    while (end > 0 && (buf[end - 1] == '\n' || buf[end - 1] == '\r')) end--;
    start = end;
    while (start > 0 && buf[start - 1] != '\n') start--;
    if (start == 0) return 0.0; /* only the header */
    p = buf + start;
    for (c = 0; c < col && p < buf + end; p++)
        if (*p == ',') c++;
    if (c < col || p >= buf + end) return 0.0;
    {
        double v = strtod(p, NULL);
        return isfinite(v) && v > 0.0 ? v : 0.0;
    }
}

static ng_status log_open_at(logfile *lf, const char *path, const char *header, int append, uint64_t t,
                             int time_col, double *last_time, int time_col2, double *last_time2) {
    char *buf = NULL;
    size_t len = 0;
    lf->path = path;
    lf->f = NULL;
    if (last_time) *last_time = 0.0;
    if (last_time2) *last_time2 = 0.0;
    if (append) {
        NG_TRY(ng_csv_truncate(path, t));
        NG_TRY(read_text(path, &buf, &len));
        if (buf && len > 0) {
            size_t hl = strlen(header);
            if (strncmp(buf, header, hl) != 0 || buf[hl] != '\n') {
                free(buf);
                return ng_error(NG_ERR_IO,
                                "log %s: its columns differ from this run's (%s); use another --out or --csv",
                                path, header);
            }
            if (last_time) *last_time = last_row_field(buf, len, time_col);
            if (last_time2) *last_time2 = last_row_field(buf, len, time_col2);
        }
    }
    lf->f = fopen(path, append ? "a" : "w");
    if (!lf->f) {
        free(buf);
        return ng_error(NG_ERR_IO, "log %s: cannot open for writing: %s", path, strerror(errno));
    }
    if (!buf || len == 0) {
        errno = 0;
        if (log_text(lf, "%s\n", header) < 0) {
            free(buf);
            return log_write_failed(lf);
        }
    }
    free(buf);
    return log_flush(lf);
}

static ng_status log_close(logfile *lf) {
    ng_status s = NG_OK;
    if (!lf->f) return NG_OK;
    errno = 0;
    if (fflush(lf->f) != 0 || ferror(lf->f)) s = log_write_failed(lf);
    if (fclose(lf->f) != 0 && s == NG_OK) s = log_write_failed(lf);
    lf->f = NULL;
    return s;
}

static ng_status csv_row(logfile *lf, const ng_trainer *tr, const double *row) {
    int i;
    errno = 0;
    for (i = 0; i < tr->n_columns; i++) {
        int r;
        if (i == 0) r = log_text(lf, "%llu", (unsigned long long)row[0]);
        else if (i == 1) r = log_text(lf, ",%d", (int)row[1]);
        else if (i == 2) r = log_text(lf, ",%.3f", row[2]);
        else r = log_text(lf, ",%.6g", row[i]);
        if (r < 0) return log_write_failed(lf);
    }
    if (fputc('\n', lf->f) == EOF) return log_write_failed(lf);
    return log_flush(lf);
}

/* ---- the run driver ------------------------------------------------------------------------ */

static ng_status save_ckpt(ng_trainer *tr, const char *path, ng_run_result *res) {
    ng_status s;
    NG_RANGE_CAT(NG_CAT_CHECKPOINT, "checkpoint", s, ng_trainer_save_ranks(tr, path));
    if (s == NG_OK && res) res->saved = 1;
    return s;
}

ng_status ng_run(ng_trainer *tr, const ng_run_config *rc, ng_run_result *res) {
    logfile csv = {0}, snaps = {0};
    char header[NG_TRAIN_MAX_COLUMNS * 40], snap_path[4300];
    double row[NG_TRAIN_MAX_COLUMNS], t0, train_s = 0.0, next_snap = rc->snapshot_s, toff = 0.0, snap_toff = 0.0,
                                      snap_train_off = 0.0;
    ng_status s = NG_OK, sc;
    size_t hl = 0;
    int i, error_after_consistent_state = 0;

    memset(res, 0, sizeof *res);
    res->start = res->end = tr->t;
    if (rc->log_every < 1 || rc->ckpt_every < 0 || !(rc->minutes >= 0.0) || !(rc->snapshot_s >= 0.0))
        return ng_error(NG_ERR_INVALID_ARG, "run: log_every must be >= 1, ckpt_every, minutes, snapshot_s >= 0");
    if (!rc->csv_path || !rc->ckpt_path)
        return ng_error(NG_ERR_INVALID_ARG, "run: a CSV log and a checkpoint path are required");
    for (i = 0; i < tr->n_columns; i++)
        hl += (size_t)snprintf(header + hl, sizeof header - hl, i ? ",%s" : "%s", tr->columns[i]);
    /* on --resume the time columns continue from the last row kept (time_s of the run before) */
    if (ng_trainer_lead(tr)) NG_TRY(log_open_at(&csv, rc->csv_path, header, rc->append, tr->t, 2, &toff, 0, NULL));
    if (rc->snapshot_s > 0.0 && ng_trainer_lead(tr)) {
        if (snprintf(snap_path, sizeof snap_path, "%s/snapshots.csv", rc->out_dir ? rc->out_dir : ".") >=
            (int)sizeof snap_path)
            s = ng_error(NG_ERR_INVALID_ARG, "run: output directory name too long");
        if (s == NG_OK)
            s = log_open_at(&snaps, snap_path, "step,time_s,train_s,checkpoint", rc->append, tr->t, 1, &snap_toff,
                            2, &snap_train_off);
        if (s != NG_OK) {
            log_close(&csv);
            return s;
        }
    }

    t0 = ng_time_s();
    while (tr->t < rc->steps) {
        /* the update that crosses the time budget is the last one, and it is logged */
        int last_by_time = rc->minutes > 0.0 && ng_time_s() - t0 > 60.0 * rc->minutes;
        int stop = ng_interrupted(), logging;
        double ts, el;
        if (tr->comm && (s = ng_trainer_agree_stop(tr, &last_by_time, &stop)) != NG_OK) break;
        logging = ((tr->t + 1) % (uint64_t)rc->log_every == 0) || tr->t + 1 == rc->steps || last_by_time;
        if (stop) {
            res->interrupted = 1;
            break;
        }
        for (i = 0; i < tr->n_columns; i++) row[i] = NAN;
        row[3] = ng_update_lr(tr->upd, tr->t);
        ts = ng_time_s();
        ng_profile_update(tr->t + 1, 1);
        s = ng_trainer_step(tr, logging ? row : NULL);
        ng_profile_update(s == NG_OK ? tr->t : tr->t + 1, 0);
        if (s == NG_OK && rc->snapshot_s > 0.0) s = ng_synchronize(tr->model->be);
        if (s == NG_ERR_INTERRUPTED) { /* rolled back to update t: consistent, save it */
            ng_clear_error();
            s = NG_OK;
            res->interrupted = 1;
            break;
        }
        if (s != NG_OK) break;
        train_s += ng_time_s() - ts;
        el = ng_time_s() - t0;
        if (logging) {
            row[0] = (double)tr->t;
            row[1] = (double)tr->data->epoch;
            row[2] = toff + el;
            if (rc->monitor) {
                NG_RANGE_CAT(NG_CAT_EVAL, "monitor", s, rc->monitor(rc->user, tr, row + tr->col_monitor));
                if (s != NG_OK) break;
            }
            if (csv.f) s = csv_row(&csv, tr, row);
            if (s != NG_OK) {
                error_after_consistent_state = 1;
                break;
            }
            if (rc->progress && ng_trainer_lead(tr)) {
                ng_run_progress p;
                uint64_t shown = rc->steps - res->start;
                /* with a time budget the run ends at whichever limit comes first: estimate the
                 * total from the current rate so the ETA counts down to it */
                if (rc->minutes > 0.0 && el > 0.0) {
                    double by_time = (double)(tr->t - res->start) / el * 60.0 * rc->minutes;
                    if (by_time < (double)shown) shown = (uint64_t)by_time + 1;
                }
                p.t = tr->t;
                p.start = res->start;
                p.total = res->start + shown;
                p.elapsed_s = el;
                p.rate = el > 0.0 ? (double)(tr->t - res->start) / el : 0.0;
                p.eta_s = p.rate > 0.0 && p.total >= tr->t ? (double)(p.total - tr->t) / p.rate : NAN;
                p.row = row;
                p.final = 0;
                rc->progress(rc->user, &p);
            }
        }
        if (rc->ckpt_every > 0 && tr->t % (uint64_t)rc->ckpt_every == 0) {
            s = save_ckpt(tr, rc->ckpt_path, res);
            if (s != NG_OK) break;
        }
        if (rc->snapshot_s > 0.0 && train_s >= next_snap) {
            char snap[4300];
            snprintf(snap, sizeof snap, "%s/snap-%08llu.ckpt", rc->out_dir ? rc->out_dir : ".",
                     (unsigned long long)tr->t);
            s = save_ckpt(tr, snap, NULL);
            if (s == NG_OK && snaps.f) {
                errno = 0;
                if (log_text(&snaps, "%llu,%.3f,%.3f,%s\n", (unsigned long long)tr->t, (toff > snap_toff ? toff : snap_toff) + el,
                             snap_train_off + train_s, snap) < 0)
                    s = log_write_failed(&snaps);
                if (s == NG_OK) s = log_flush(&snaps);
                if (s != NG_OK) error_after_consistent_state = 1;
            }
            if (s != NG_OK) break;
            while (next_snap <= train_s) next_snap += rc->snapshot_s;
        }
        if (last_by_time) {
            res->time_limit = 1;
            break;
        }
    }
    res->end = tr->t;
    res->seconds = ng_time_s() - t0;
    res->time_offset_s = toff;
    {
        /* the first error is the one reported: later failures (closing a log that already failed)
         * must not overwrite its message */
        char msg[1024] = "";
#define KEEP_FIRST(call)                                                          \
    do {                                                                          \
        sc = (call);                                                              \
        if (s == NG_OK && sc != NG_OK) s = sc;                                    \
        if (s != NG_OK && !msg[0]) snprintf(msg, sizeof msg, "%s", ng_last_error()); \
    } while (0)
        if (s != NG_OK) snprintf(msg, sizeof msg, "%s", ng_last_error());
        /* the trainer holds a completed update: keep it (even when a log write failed) */
        if (s == NG_OK || error_after_consistent_state) KEEP_FIRST(save_ckpt(tr, rc->ckpt_path, res));
        KEEP_FIRST(log_close(&csv));
        KEEP_FIRST(log_close(&snaps));
        /* the run's profile (natgrad/profile.h) ends with the run: what the command does next
         * (plots, reconstructions) is not part of it */
        KEEP_FIRST(ng_profile_finish());
#undef KEEP_FIRST
        if (s != NG_OK) ng_error(s, "%s", msg);
    }
    if (rc->progress && s == NG_OK && ng_trainer_lead(tr)) {
        ng_run_progress p;
        memset(&p, 0, sizeof p);
        p.t = tr->t;
        p.start = res->start;
        p.total = tr->t;
        p.elapsed_s = res->seconds;
        p.rate = res->seconds > 0.0 ? (double)(tr->t - res->start) / res->seconds : 0.0;
        p.eta_s = 0.0;
        p.final = 1;
        rc->progress(rc->user, &p);
    }
    return s;
}
