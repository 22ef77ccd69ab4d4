/* dist.c: the trainer's data parallelism (natgrad/train.h, "data parallelism"): the gradient
 * all-reduce (whole, or in buckets started from the model's grad_ready reports during the backward
 * pass), the shard-weighted log columns, the agreed stop, and checkpoints of a multi-rank run
 * (the model once by rank 0, each rank's optimizer state beside it).
 * Must not: print, or know a concrete model or optimizer (it sees the arenas and the names). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "natgrad/comm.h"
#include "natgrad/log.h"
#include "natgrad/train.h"

static int world_of(const ng_trainer *tr) { return tr->comm ? tr->comm->world : 1; }
static int rank_of(const ng_trainer *tr) { return tr->comm ? tr->comm->rank : 0; }

int ng_trainer_lead(const ng_trainer *tr) { return rank_of(tr) == 0; }

/* Preconditioners whose state stays identical on every rank when only the gradient is reduced. */
static int precond_is_data_parallel(const ng_precond *pc) {
    return strcmp(pc->iface->name, "identity") == 0 || pc->iface->data_parallel;
}

ng_status ng_trainer_set_comm(ng_trainer *tr, ng_comm *c) {
    if (!tr || !c) return ng_error(NG_ERR_INVALID_ARG, "trainer: NULL trainer or communicator");
    if (tr->data->rank != c->rank || tr->data->world != c->world)
        return ng_error(NG_ERR_INVALID_ARG,
                        "trainer: the batches are sharded for rank %d of %d, the communicator is rank %d of %d",
                        tr->data->rank, tr->data->world, c->rank, c->world);
    if (c->world > 1 && !precond_is_data_parallel(tr->pc))
        return ng_error(NG_ERR_UNSUPPORTED,
                        "preconditioner %s does not run on %d ranks yet (its statistics are not reduced across ranks); "
                        "data-parallel runs support the preconditioners that reduce theirs (data_parallel in natgrad/precond.h: "
                        "identity, diag, kfac, full, the truncated-Newton methods, prong, centering, fang) on model %s",
                        tr->pc->iface->name, c->world, tr->model->iface->kind);
    tr->comm = c;
    if (c->world > 1) tr->pc->dist.comm = c;
    if (c->world > 1 && tr->model->iface->data_parallel) tr->model->dist.comm = c;
    /* every rank has checked its output files before any rank writes them */
    return ng_comm_barrier(c, "the start of training");
}

/* The fraction of the global batch this rank holds. */
static double shard_weight(const ng_trainer *tr) {
    return (double)(tr->data->hi - tr->data->lo) / (double)tr->data->batch;
}

ng_status ng_trainer_set_comm_overlap(ng_trainer *tr, int on, double bucket_mb) {
    double elems;
    if (!tr) return ng_error(NG_ERR_INVALID_ARG, "trainer: NULL trainer");
    if (on != 0 && on != 1) return ng_error(NG_ERR_INVALID_ARG, "--comm-overlap %d: must be 0 (one all-reduce after the backward pass) or 1 (buckets overlapped with it)", on);
    if (!(bucket_mb > 0.0) || bucket_mb > 1048576.0)
        return ng_error(NG_ERR_INVALID_ARG, "--comm-bucket-mb %g: must be > 0 and at most 1048576 (MiB of gradient per all-reduce bucket)", bucket_mb);
    elems = bucket_mb * 1048576.0 / (double)sizeof(float);
    tr->comm_overlap = on;
    tr->bucket_elems = elems < 1.0 ? 1 : (size_t)elems;
    return NG_OK;
}

/* The gradient all-reduce runs in buckets during the backward pass: several ranks, overlap on, and
 * a model that does not reduce its gradient itself. */
static int overlapping(const ng_trainer *tr) {
    return world_of(tr) > 1 && tr->comm_overlap && !tr->model->dist.comm;
}

/* Elements [a, b) of the gradient: weight by the shard's share (as the single all-reduce does) and
 * start their sum. */
static ng_status start_bucket(ng_trainer *tr, size_t a, size_t b) {
    ng_model *m = tr->model;
    float *g = (float *)m->grad_flat.data + a;
    NG_TRY(ng_scal(m->be, b - a, (float)shard_weight(tr), g));
    return ng_comm_allreduce_start(tr->comm, m->be, NG_F32, g, b - a, "the gradient");
}

/* ng_model.grad_ready during the trainer's gradient: [a, b) is final. The backward pass reports the
 * layers from the end of the arena down; a range that does not continue the final tail is left for
 * the remainder after the gradient. A bucket starts when the final, unstarted tail holds
 * bucket_elems elements (one slot of the communicator stays free for the remainder). */
static ng_status bucket_ready(void *user, size_t a, size_t b) {
    ng_trainer *tr = (ng_trainer *)user;
    if (b == tr->ready_lo && a < b) tr->ready_lo = a;
    if (tr->started_lo - tr->ready_lo >= tr->bucket_elems && tr->comm->n_pending < NG_COMM_MAX_PENDING - 1) {
        NG_TRY(start_bucket(tr, tr->ready_lo, tr->started_lo));
        tr->started_lo = tr->ready_lo;
    }
    return ng_comm_progress(tr->comm); /* let MPI move the buckets in flight */
}

ng_status ng_trainer_gradient(ng_trainer *tr, const ng_tensor *x) {
    ng_model *m = tr->model;
    ng_status s;
    if (!overlapping(tr)) return ng_model_gradient(m, x, NULL);
    tr->ready_lo = tr->started_lo = ng_model_size(m);
    m->grad_ready = bucket_ready;
    m->grad_user = tr;
    s = ng_model_gradient(m, x, NULL);
    m->grad_ready = NULL;
    m->grad_user = NULL;
    if (s == NG_OK && tr->started_lo > 0) s = start_bucket(tr, 0, tr->started_lo); /* the rest, in one */
    if (s != NG_OK && tr->comm->n_pending > 0) {
        /* no request may outlive the step: finish the buckets started (the other ranks start them too) */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", ng_last_error());
        (void)ng_comm_wait_all(tr->comm, m->be);
        return ng_error(s, "%s", msg);
    }
    return s;
}

ng_status ng_trainer_reduce_gradient(ng_trainer *tr) {
    ng_model *m = tr->model;
    ng_status s;
    if (world_of(tr) == 1 || m->dist.comm) return NG_OK; /* a data_parallel model reduced it itself */
    if (tr->comm->n_pending > 0) { /* ng_trainer_gradient started the buckets */
        NG_RANGE("gradient all-reduce", s, ng_comm_wait_all(tr->comm, m->be));
        return s;
    }
    /* each rank holds the mean over its shard: weight it by the shard's share, then sum */
    NG_TRY(ng_scal(m->be, ng_model_size(m), (float)shard_weight(tr), m->grad_flat.data));
    NG_RANGE("gradient all-reduce", s, ng_comm_allreduce(tr->comm, m->be, NG_F32, m->grad_flat.data, ng_model_size(m), "the gradient"));
    return s;
}

ng_status ng_trainer_graph_dist_check(const ng_trainer *tr) {
    const ng_comm *c = tr->comm;
    const int w = world_of(tr);
    if (w == 1) return NG_OK;
    if (c->kind != NG_COMM_NCCL)
        return ng_error(NG_ERR_UNSUPPORTED, "--cuda-graph 1 on %d ranks needs the NCCL communicator (this run reduces over "
                        "MPI through host copies, which a CUDA graph cannot hold): build with NCCL (the build line says "
                        "'nccl: yes') or run with --cuda-graph 0", w);
    /* the reductions a model does inside its gradient (an RBM's gW and means) are NCCL all-reduces on
     * the backend's stream, captured with it (batch norm's merge too, on the device with NCCL); a model
     * whose gradient reads the host on several ranks refuses in its graph_check, asked again here since
     * its communicator may come after ng_trainer_set_cuda_graph */
    if (tr->model->iface->graph_check) NG_TRY(tr->model->iface->graph_check(tr->model));
    /* captured on several ranks: the preconditioners whose per-update reductions are NCCL all-reduces on
     * the backend's stream with no host read in between (diag: the shard-weighted mean squares; prong
     * and full between their eager reparametrisations / refreshes: none; centering: none, its offsets
     * follow the RBM's all-reduced data means on the device; fang between its eager refits: the
     * particles' moments; kfac in the natural parameter space between its eager refreshes: its
     * factors' all-reduces after the statistics, whose targets' step is counted on the device), and in
     * graph segments tn (each curvature product's all-reduce inside its segment) and kfac (its factors'
     * all-reduces inside the statistics segment); their objective sums are reduced on the host after
     * their segment, as eagerly (natgrad/train.h, ng_trainer_agree_segments) */
    {
        static const char *const ok[] = {"identity", "diag", "prong", "full", "centering", "fang", "kfac"};
        const char *name = tr->pc->iface->name;
        size_t i;
        if (tr->graph.seg && strcmp(name, "tn") == 0) return NG_OK;
        for (i = 0; i < sizeof ok / sizeof ok[0]; i++)
            if (strcmp(name, ok[i]) == 0) return NG_OK;
        return ng_error(NG_ERR_UNSUPPORTED, "--cuda-graph 1 on %d ranks: the preconditioner %s is not captured on several "
                        "ranks (its reductions across the ranks are not captured; captured there: identity, diag, prong, "
                        "full, centering, fang, kfac (whole in the natural parameter space, else in segments), and tn in "
                        "segments); run it with --cuda-graph 0", w, name);
    }
}

/* FNV-1a over the key's bytes, folded to 20 bits (so its square sums exactly in a double) */
static double key_hash(const double *key, int n) {
    const unsigned char *b = (const unsigned char *)key;
    uint64_t h = 1469598103934665603ull;
    size_t i;
    for (i = 0; i < (size_t)n * sizeof key[0]; i++) h = (h ^ b[i]) * 1099511628211ull;
    return (double)((h ^ (h >> 20) ^ (h >> 40)) & 0xFFFFFu);
}

ng_status ng_trainer_agree_graph(ng_trainer *tr, int decision, const double *key, int n) {
    double v[4], h = key && n > 0 ? key_hash(key, n) : 0.0, w = (double)world_of(tr);
    if (world_of(tr) == 1) return NG_OK;
    v[0] = decision;
    v[1] = (double)decision * decision;
    v[2] = h;
    v[3] = h * h;
    NG_TRY(ng_comm_allreduce_host(tr->comm, v, 4, "the graph decision"));
    /* all equal iff the variance is 0: w * sum(x^2) == sum(x)^2 (exact: integers below 2^53) */
    if (w * v[1] != v[0] * v[0] || w * v[3] != v[2] * v[2])
        return ng_error(NG_ERR_INVALID_ARG,
                        "--cuda-graph: rank %d of %d: the ranks disagree on the CUDA graph of update %llu (this rank: %s, "
                        "key hash %05x): every rank must capture and replay the same updates in the same order, since "
                        "NCCL matches the all-reduces the graphs hold by their order; run with --cuda-graph 0",
                        rank_of(tr), world_of(tr), (unsigned long long)tr->t,
                        decision == 0 ? "eager" : decision > 0 ? "replay" : "capture", (unsigned)h);
    return NG_OK;
}

ng_status ng_trainer_agree_segments(ng_trainer *tr) {
    const uint64_t t = tr->graph.segs.trace;
    double k[2], v[2], h, w = (double)world_of(tr);
    if (world_of(tr) == 1) return NG_OK;
    k[0] = (double)(t >> 32);
    k[1] = (double)(t & 0xFFFFFFFFu);
    h = key_hash(k, 2);
    v[0] = h;
    v[1] = h * h;
    NG_TRY(ng_comm_allreduce_host(tr->comm, v, 2, "the graph segments' decisions"));
    if (w * v[1] != v[0] * v[0])
        return ng_error(NG_ERR_INVALID_ARG,
                        "--cuda-graph: rank %d of %d: the ranks' graph segments diverged by update %llu (this rank's "
                        "trace hash %05x): every rank must capture, replay and run eagerly the same segments in the same "
                        "order, since NCCL matches the all-reduces the segments hold by their order; run with "
                        "--cuda-graph 0", rank_of(tr), world_of(tr), (unsigned long long)tr->t, (unsigned)h);
    return NG_OK;
}

ng_status ng_trainer_reduce_columns(ng_trainer *tr, double *row) {
    double v[NG_TRAIN_MAX_COLUMNS], w;
    int i, n = tr->col_update - tr->col_model;
    if (world_of(tr) == 1 || n == 0) return NG_OK;
    /* the model's columns are means over this rank's shard (or, like the gradient norm, equal on
     * every rank): the shard-weighted sum is the global mean (and leaves equal values as they are) */
    w = shard_weight(tr);
    for (i = 0; i < n; i++) v[i] = w * row[tr->col_model + i];
    NG_TRY(ng_comm_allreduce_host(tr->comm, v, (size_t)n, "the log columns"));
    for (i = 0; i < n; i++) row[tr->col_model + i] = v[i];
    return NG_OK;
}

ng_status ng_trainer_agree_stop(ng_trainer *tr, int *by_time, int *interrupted) {
    double f[2];
    if (world_of(tr) == 1) return NG_OK;
    f[0] = *by_time ? 1.0 : 0.0;
    f[1] = *interrupted ? 1.0 : 0.0;
    NG_TRY(ng_comm_allreduce_host(tr->comm, f, 2, "the stop flags"));
    *by_time = f[0] > 0.0;
    *interrupted = f[1] > 0.0;
    return NG_OK;
}

/* ---- checkpoints of a multi-rank run --------------------------------------------------------- */

static ng_status rank_path(const char *path, int rank, const char *suffix, char *out, size_t cap) {
    if (snprintf(out, cap, "%s.rank%d%s", path, rank, suffix) >= (int)cap)
        return ng_error(NG_ERR_INVALID_ARG, "checkpoint path %s is too long", path);
    return NG_OK;
}

/* Every rank learns whether every rank succeeded; the first failing rank's status is returned. */
static ng_status agree(ng_trainer *tr, ng_status s, const char *what) {
    double fail[1];
    char msg[1024];
    ng_status r;
    snprintf(msg, sizeof msg, "%s", s == NG_OK ? "" : ng_last_error());
    fail[0] = s == NG_OK ? 0.0 : 1.0;
    r = ng_comm_allreduce_host(tr->comm, fail, 1, what);
    if (r != NG_OK) return r;
    if (s != NG_OK) return ng_error(s, "%s", msg);
    if (fail[0] > 0.0) return ng_error(NG_ERR_IO, "%s failed on %g other rank(s) (see their messages)", what, fail[0]);
    return NG_OK;
}

ng_status ng_trainer_save_ranks(ng_trainer *tr, const char *path) {
    char rp[4200], prev[4200];
    ng_status s = NG_OK;
    if (world_of(tr) == 1) return ng_trainer_save(tr, path, NG_SAVE_ALL);
    /* state the model shards over the ranks (an RBM's particles) becomes whole for rank 0's save */
    if (tr->model->iface->gather) NG_TRY(agree(tr, tr->model->iface->gather(tr->model), "gathering the model's state"));
    /* ranks > 0 first, keeping their previous file as .prev: a main file written after the
     * barrier always has its ranks' files, and the one before it stays usable until then */
    if (rank_of(tr) > 0) {
        s = rank_path(path, rank_of(tr), "", rp, sizeof rp);
        if (s == NG_OK) s = rank_path(path, rank_of(tr), ".prev", prev, sizeof prev);
        if (s == NG_OK && rename(rp, prev) != 0 && errno != ENOENT)
            s = ng_error(NG_ERR_IO, "checkpoint %s: cannot keep the previous state as %s: %s", rp, prev, strerror(errno));
        if (s == NG_OK) s = ng_trainer_save(tr, rp, NG_SAVE_OPTIM);
    }
    NG_TRY(agree(tr, s, "writing the per-rank optimizer state"));
    if (rank_of(tr) == 0) s = ng_trainer_save(tr, path, NG_SAVE_ALL);
    return agree(tr, s, "writing the model checkpoint (rank 0)");
}

/* Rank r's optimizer file of update t: path.rank<r>, else path.rank<r>.prev. */
static ng_status read_rank_file(const char *path, int rank, uint64_t t, ng_ckpt **out) {
    static const char *const suffixes[2] = {"", ".prev"};
    char rp[4200], found[4200] = "", err[1024] = "";
    uint64_t rt = 0, found_t = 0;
    int k;
    *out = NULL;
    for (k = 0; k < 2; k++) {
        ng_ckpt *c = NULL;
        NG_TRY(rank_path(path, rank, suffixes[k], rp, sizeof rp));
        if (ng_ckpt_read(rp, NG_CKPT_READ_ALL, &c) != NG_OK) {
            if (k == 0) snprintf(err, sizeof err, "%s", ng_last_error());
            continue;
        }
        if (ng_ckpt_get_u64(c, "run.t", &rt) == NG_OK && rt == t) {
            *out = c;
            return NG_OK;
        }
        if (!found[0]) snprintf(found, sizeof found, "%s", rp), found_t = rt;
        ng_ckpt_free(c);
    }
    if (found[0])
        return ng_error(NG_ERR_FORMAT,
                        "checkpoint %s holds update %llu but %s holds update %llu (and no .prev of update %llu): the files "
                        "are from different saves; resume on another number of ranks from the model file alone, or from an "
                        "earlier snapshot", path, (unsigned long long)t, found, (unsigned long long)found_t,
                        (unsigned long long)t);
    return ng_error(NG_ERR_IO, "checkpoint %s: rank %d's optimizer state: %s", path, rank, err);
}

ng_status ng_trainer_resume(ng_trainer *tr, const ng_ckpt *c) {
    int64_t ck_world = 1, epoch, pos, n, batch;
    uint64_t t;
    const char *path = ng_ckpt_path(c);
    int world = world_of(tr), rank = rank_of(tr);
    if (ng_ckpt_has(c, "dist.world")) NG_TRY(ng_ckpt_get_int(c, "dist.world", 1, 1 << 20, &ck_world));
    NG_TRY(ng_ckpt_get_u64(c, "run.t", &t));
    if (ck_world == world) {
        ng_ckpt *rc = NULL;
        ng_status s;
        if (rank == 0) return ng_trainer_load(tr, c, NG_SAVE_ALL);
        NG_TRY(read_rank_file(path, rank, t, &rc));
        s = ng_trainer_load(tr, c, NG_SAVE_MODEL);
        if (s == NG_OK) s = ng_trainer_load(tr, rc, NG_SAVE_OPTIM);
        ng_ckpt_free(rc);
        return s;
    }
    /* another number of ranks: the model and the global data cursor; the optimizer restarts */
    NG_TRY(ng_ckpt_get_int(c, "data.n", 1, 2147483647, &n));
    NG_TRY(ng_ckpt_get_int(c, "data.batch", 1, n, &batch));
    NG_TRY(ng_ckpt_get_int(c, "data.epoch", 0, 2147483647, &epoch));
    NG_TRY(ng_ckpt_get_int(c, "data.pos", 0, n, &pos));
    if (n != tr->data->n || batch != tr->data->capacity)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: trained on %lld examples in global batches of %lld; this run has %d in "
                        "batches of %d: use the same data and --batch", path, (long long)n, (long long)batch,
                        tr->data->n, tr->data->capacity);
    if (ng_ckpt_has(c, "data.schedule_m1"))
        return ng_error(NG_ERR_UNSUPPORTED, "checkpoint %s: a run with growing batches resumes on its own number of ranks (%lld)",
                        path, (long long)ck_world);
    NG_TRY(ng_trainer_load(tr, c, NG_SAVE_MODEL));
    NG_TRY(ng_batches_seek(tr->data, (int)epoch, (int)pos));
    if (rank == 0)
        ng_log(NG_LOG_WARN, "resume",
               "%s was written by %lld rank(s), this run has %d: the model and the data position are restored, the "
               "optimizer state (%s, %s) restarts, so the run is not bit-exact with an uninterrupted one",
               path, (long long)ck_world, world, tr->upd->iface->name, tr->pc->iface->name);
    return NG_OK;
}
