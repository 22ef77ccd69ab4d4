/* test_graph_ranks.c: CUDA graphs of a data-parallel step (--cuda-graph 1 under mpirun; natgrad/train.h
 * ng_trainer_set_cuda_graph, ng_trainer_agree_graph; natgrad/comm.h, NCCL collectives recorded in a
 * graph). Under `mpirun -np N` (tests/test_dist.sh, 2 and 3 ranks) the emulated-CUDA build
 * (tests/simt) gives each rank its own emulated GPU and an NCCL communicator through the shim (NCCL on
 * MPI, its all-reduce recorded as a graph node and started at each replay). Each rank trains a 6-5-4-6
 * autoencoder on its shard of global batches of 12 out of 31 cases (batches 12, 12, 7: shards 6/6 and
 * 4/3 on 2 ranks, 4/4/4 and 3/2/2 on 3, so the shard weight changes with the partial batch) twice on
 * one communicator, eagerly and with --cuda-graph 1, update by update in the same order on every rank,
 * and checks:
 *   - sgd, nag (across its momentum change at update 250) and adam: the graph trainer's parameters
 *     equal the eager one's bit for bit after every update checked (the same kernels, the same shard
 *     weight, the same NCCL sum), captures and replays > 0, one recorded all-reduce per capture (the
 *     gradient's all-reduce is inside the graph: nothing else would reduce it on a replay), and after
 *     the run the parameters are bit for bit rank 0's on every rank (shards differ, so only a real
 *     sum on every replay keeps them equal);
 *   - the same for nag and adam with --comm-overlap 1 in buckets of 26 floats: the 2 bucket all-reduces
 *     (forked onto the communication stream during the backward pass, joined back before the update)
 *     recorded in every capture, equal to the eager overlapped run bit for bit;
 *   - the same for the diagonal metric (sgd; adam with --comm-overlap: its mean squares' all-reduce
 *     recorded beside the gradient's) and PRONG (sgd, its reparametrisations every 4 updates eager,
 *     the step between them captured) and the full Fisher in the natural parameter space (sgd in phi, its
 *     refreshes every 4 updates eager with the Fisher's all-reduce, the steps between them captured);
 *   - the same for K-FAC in the natural parameter space (adam and sgd in phi, --phi-every 4: the square
 *     roots' refreshes at t = 0, 4, 8, ... eager, each layer's computed by its owner and broadcast; the
 *     steps between them captured with the factor statistics, whose sampled targets' Philox step is
 *     counted on the device, and the factors' 6 all-reduces beside the gradient's: 7 per capture), with
 *     the statistics on the first 2 of 12 cases (1 of 7: rank 0's alone; the other ranks only scale and
 *     advance their counts) and on all 12 (7: every rank's shard), and with --comm-overlap 1 (2 bucket
 *     all-reduces + 6);
 *   - the refusal naming the fix: the MPI communicator (a CUDA buffer staged through the host);
 *   - the invariant that every rank replays the same graph: when the last rank drops its graphs (so it
 *     would capture where the others replay) every rank's step fails with the same "disagree" error
 *     before any collective is issued (no NCCL deadlock), and after every rank drops them the run goes
 *     on and still equals the eager run bit for bit.
 * Run alone (one rank), or in the CPU-only build, every test skips with the reason. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "graph_run.h"
#include "ranks.h"
#include "natgrad/backend.h"
#include "natgrad/comm.h"
#include "natgrad/data.h"
#include "natgrad/kfac.h"
#include "natgrad/log.h"
#include "natgrad/net.h"
#include "natgrad/precond.h"
#include "natgrad/prong.h"
#include "natgrad/recipes.h"
#include "natgrad/train.h"
#include "natgrad/update.h"

#define DIM 6
#define NCASES 31
#define BATCH 12
static float g_x[DIM * NCASES];
static ng_comm *C;   /* the world (MPI) */
static ng_comm *NC;  /* the CUDA backend's communicator (NCCL) */
static ng_backend *g_be;
static char g_reason[512];

enum { R_SGD = AE_SGD, R_NAG = AE_NAG, R_ADAM = AE_ADAM };
static const char *const rule_name[] = {"sgd", "nag", "adam"};

/* overlap: --comm-overlap 1 with buckets of BUCKET_MB (26 floats). The backward pass reports the layers
 * from the end: 30 floats (layer 3: a bucket), 24 (layer 2: too few alone), 35 (layer 1: with layer 2, a
 * second bucket of 59), so 2 bucket all-reduces per update */
#define BUCKET_MB 0.0001
/* the preconditioner: identity; diag (the Fisher metric, sampled targets drawn by global column, the
 * shard's mean squares weighted and all-reduced inside the step); prong (whitened form, T = 4,
 * N_s = 8: the reparametrisations eager, the whitened network's step between them captured); the full
 * Fisher in the natural parameter space (the rule in phi, G all-reduced at its eager refreshes every 4
 * updates, the step between them captured); K-FAC in the natural parameter space (the rule in phi, the
 * roots refreshed every 4 updates eagerly, the statistics and their 6 factor all-reduces captured
 * between; tau1 1/8: 2 of 12 cases, rank 0's; PC_KFAC_PHI_ALL tau1 1: every rank's shard) */
enum { PC_IDENTITY, PC_DIAG, PC_PRONG, PC_KFAC_PHI, PC_FULL_PHI, PC_KFAC_PHI_ALL };
static const char *const pc_name[] = {"identity", "diag", "prong", "kfac phi every 4", "full phi every 4",
                                      "kfac phi every 4, tau1 1"};
static ng_status run_init(run *r, int rule, ng_comm *comm, int overlap, int pc) {
    ng_net_config cfg;
    ng_status s;
    memset(r, 0, sizeof *r);
    ae_config(&cfg);
    if (pc == PC_PRONG) cfg.whiten = 1;
    NG_TRY(ng_net_parse_spec("6-5-4-6", NG_ACT_LOGISTIC, NG_ACT_LOGISTIC, &cfg));
    NG_TRY(ng_net_create(g_be, &cfg, &r->net));
    s = ae_update(g_be, r->net, rule, 0.0f, &r->upd);
    if (s == NG_OK) {
        if (pc == PC_DIAG) {
            ng_diag_config dc;
            ng_diag_config_default(&dc);
            dc.metric = NG_DIAG_FISHER;
            dc.seed = 9;
            dc.max_batch = BATCH; /* as net train sets it: the scratch exists before the first capture */
            s = ng_precond_diag_init(g_be, r->net, &dc, &r->pc);
        } else if (pc == PC_PRONG) {
            ng_prong_config pg;
            ng_prong_config_default(&pg);
            pg.T = 4;
            pg.ns = 8;
            pg.seed = 3;
            s = ng_precond_prong_init(g_be, r->net, &pg, g_x, NCASES, r->upd, &r->pc);
        } else if (pc == PC_FULL_PHI) {
            ng_full_config fc;
            ng_update *phi = NULL;
            ng_full_config_default(&fc);
            fc.phi_every = 4;
            s = ng_precond_full_init(g_be, r->net, &fc, &r->pc);
            if (s == NG_OK) s = ng_update_phi_init(g_be, r->net, r->upd, r->pc, &phi);
            if (s == NG_OK) r->upd = phi;
        } else if (pc == PC_KFAC_PHI || pc == PC_KFAC_PHI_ALL) {
            ng_kfac_config kc;
            ng_update *phi = NULL;
            ng_kfac_config_default(&kc);
            kc.phi_every = 4;
            kc.eps_max = 0.75; /* the statistics' weights constant from update 3 on: keys repeat between refreshes */
            kc.seed = 9;
            if (pc == PC_KFAC_PHI_ALL) kc.tau1 = 1.0;
            s = ng_precond_kfac_init(g_be, r->net, &kc, &r->pc);
            if (s == NG_OK) s = ng_update_phi_init(g_be, r->net, r->upd, r->pc, &phi);
            if (s == NG_OK) r->upd = phi;
        } else
            s = ng_precond_identity_init(g_be, &r->pc);
    }
    if (s == NG_OK) s = ng_batches_init(&r->data, g_be, g_x, DIM, NCASES, BATCH, 5, comm->rank, comm->world);
    if (s == NG_OK) r->data_ready = 1;
    if (s == NG_OK) s = ng_trainer_init(&r->tr, r->net, r->pc, r->upd, &r->data, 5, NULL);
    if (s == NG_OK) s = ng_trainer_set_comm_overlap(&r->tr, overlap, overlap ? BUCKET_MB : 1.0);
    if (s == NG_OK) s = ng_trainer_set_comm(&r->tr, comm);
    return s;
}

/* the two trainers' parameters, bit for bit */
static int same_params(const char *what, run *a, run *b, uint64_t t) {
    char w[128];
    snprintf(w, sizeof w, "%s, rank %d", what, NC->rank);
    return same_params_on(g_be, w, a, b, t);
}

/* this rank's parameters equal rank 0's, bit for bit (every rank learns every rank's verdict) */
static int same_as_rank0(run *r, const char *what) {
    char w[128];
    snprintf(w, sizeof w, "%s: the parameters", what);
    return ngt_same_as_rank0_dev(C, g_be, r->net->param_flat.data, ng_model_size(r->net), w);
}

/* PRONG holds the update rule: freed before it */
static void run_free_pc(run *r) {
    ng_trainer_release(&r->tr);
    ng_precond_free(r->pc);
    r->pc = NULL;
    run_free(r);
}

static int graph_vs_eager_pc(int rule, int pc, uint64_t steps, int log_every, int overlap) {
    run a, b;
    uint64_t t;
    const int kfac_phi = pc == PC_KFAC_PHI || pc == PC_KFAC_PHI_ALL;
    unsigned long long rec0 = NC->captured, per, want = (overlap ? 2u : 1u) + (pc == PC_DIAG) + (kfac_phi ? 6u : 0u);
    double row[NG_TRAIN_MAX_COLUMNS];
    char what[96];
    snprintf(what, sizeof what, "%s + %s, --comm-overlap %d", rule_name[rule], pc_name[pc], overlap);
    NGT_OK(run_init(&a, rule, NC, overlap, pc));
    NGT_OK(run_init(&b, rule, NC, overlap, pc));
    NGT_OK(ng_trainer_set_cuda_graph(&b.tr, 1));
    for (t = 0; t < steps; t++) {
        double *rw = log_every && t % (uint64_t)log_every == 0 ? row : NULL;
        NGT_OK(ng_trainer_step(&a.tr, rw));
        NGT_OK(ng_trainer_step(&b.tr, rw));
        if (t < 12 || t % 25 == 0 || t + 1 == steps || kfac_phi) /* K-FAC in phi: after every update */
            if (same_params(what, &a, &b, t) != NGT_PASS) return NGT_FAIL;
    }
    NGT_CHECK(b.tr.graph.captures + b.tr.graph.replays + b.tr.graph.eager == steps, "%s: %llu + %llu + %llu != %llu",
              what, (unsigned long long)b.tr.graph.captures, (unsigned long long)b.tr.graph.replays,
              (unsigned long long)b.tr.graph.eager, (unsigned long long)steps);
    NGT_CHECK(b.tr.graph.captures >= 2 && b.tr.graph.replays > b.tr.graph.captures, "%s: %llu captures, %llu replays",
              what, (unsigned long long)b.tr.graph.captures, (unsigned long long)b.tr.graph.replays);
    if (pc == PC_PRONG || pc == PC_FULL_PHI || kfac_phi) /* every reparametrisation / refresh (t = 0, 4, 8, ...) eager */
        NGT_CHECK(b.tr.graph.eager >= (steps + 3) / 4, "%s: %llu eager updates, fewer than the %llu reparametrisations",
                  what, (unsigned long long)b.tr.graph.eager, (unsigned long long)((steps + 3) / 4));
    /* the all-reduces recorded: one per capture, or every capture's 2 buckets; diag's mean squares one
     * more, K-FAC's factors (A_0..A_2, G_1..G_3) 6 more (nothing else would reduce them on a replay) */
    per = (NC->captured - rec0) / b.tr.graph.captures;
    NGT_CHECK(NC->captured - rec0 == per * b.tr.graph.captures && per == want,
              "%s: %llu all-reduces recorded in %llu captures (want %llu each)", what, NC->captured - rec0,
              (unsigned long long)b.tr.graph.captures, want);
    if (same_as_rank0(&b, what) != NGT_PASS) return NGT_FAIL;
    printf("  %s, rank %d of %d: %llu updates: %llu captured (%llu all-reduces each), %llu replayed, %llu eager; equal "
           "to eager and to rank 0\n", what, NC->rank, NC->world, (unsigned long long)steps,
           (unsigned long long)b.tr.graph.captures, per, (unsigned long long)b.tr.graph.replays,
           (unsigned long long)b.tr.graph.eager);
    run_free_pc(&a);
    run_free_pc(&b);
    return NGT_PASS;
}
static int graph_vs_eager(int rule, uint64_t steps, int log_every, int overlap) {
    return graph_vs_eager_pc(rule, PC_IDENTITY, steps, log_every, overlap);
}

static int ready(void) {
    if (!g_be) return ngt_skip(g_reason);
    return NGT_PASS;
}

static int test_graph_ranks_sgd(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return graph_vs_eager(R_SGD, 40, 7, 0);
}
static int test_graph_ranks_nag(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return graph_vs_eager(R_NAG, 256, 100, 0); /* mu_t changes at update 250: new keys on every rank */
}
static int test_graph_ranks_adam(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return graph_vs_eager(R_ADAM, 40, 7, 0);
}
/* the bucketed all-reduce overlapped with the backward pass, in the graph (fork / join of the
 * communication stream through events) */
static int test_graph_ranks_overlap_nag(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return graph_vs_eager(R_NAG, 40, 7, 1);
}
static int test_graph_ranks_overlap_adam(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return graph_vs_eager(R_ADAM, 40, 7, 1);
}

/* the diagonal metric and PRONG as graphs on several ranks */
static int test_graph_ranks_diag(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return graph_vs_eager_pc(R_SGD, PC_DIAG, 30, 7, 0) == NGT_PASS ? graph_vs_eager_pc(R_ADAM, PC_DIAG, 30, 0, 1) : NGT_FAIL;
}
static int test_graph_ranks_prong(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return graph_vs_eager_pc(R_SGD, PC_PRONG, 30, 0, 0);
}
static int test_graph_ranks_full_phi(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return graph_vs_eager_pc(R_SGD, PC_FULL_PHI, 30, 0, 0);
}

/* K-FAC in the natural parameter space: 40 updates span 10 refreshes and 30 steps between them */
static int test_graph_ranks_kfac_phi(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    if (graph_vs_eager_pc(R_ADAM, PC_KFAC_PHI, 40, 0, 0) != NGT_PASS) return NGT_FAIL;
    if (graph_vs_eager_pc(R_SGD, PC_KFAC_PHI, 40, 7, 0) != NGT_PASS) return NGT_FAIL;
    if (graph_vs_eager_pc(R_ADAM, PC_KFAC_PHI_ALL, 40, 0, 0) != NGT_PASS) return NGT_FAIL;
    return graph_vs_eager_pc(R_ADAM, PC_KFAC_PHI, 40, 0, 1); /* net train's default --comm-overlap 1: 2 buckets + 6 */
}

/* a refusal by ng_trainer_set_cuda_graph whose message contains want (same on every rank) */
static int refused(ng_comm *comm, int overlap, int pc, const char *want) {
    run r;
    ng_status s;
    NGT_OK(run_init(&r, R_NAG, comm, overlap, pc));
    s = ng_trainer_set_cuda_graph(&r.tr, 1);
    NGT_CHECK(s == NG_ERR_UNSUPPORTED && strstr(ng_last_error(), want), "want NG_ERR_UNSUPPORTED naming '%s', got %d: %s",
              want, (int)s, ng_last_error());
    printf("  refused: %s\n", ng_last_error());
    ng_clear_error();
    run_free(&r);
    return NGT_PASS;
}

static int test_graph_ranks_refusals(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    /* the world communicator is not attached to the CUDA backend: MPI through host copies */
    return refused(C, 0, 0, "needs the NCCL communicator");
}

static int test_graph_ranks_disagree(void) {
    run a, b;
    uint64_t t;
    ng_status s;
    if (ready() != NGT_PASS) return NGT_SKIP;
    NGT_OK(run_init(&a, R_NAG, NC, 0, 0));
    NGT_OK(run_init(&b, R_NAG, NC, 0, 0));
    NGT_OK(ng_trainer_set_cuda_graph(&b.tr, 1));
    for (t = 0; t < 8; t++) {
        NGT_OK(ng_trainer_step(&a.tr, NULL));
        NGT_OK(ng_trainer_step(&b.tr, NULL));
    }
    NGT_CHECK(b.tr.graph.replays > 0, "no replay in 8 updates");
    /* the last rank forgets its graphs: it would capture where the others replay */
    if (NC->rank == NC->world - 1) ng_trainer_release(&b.tr);
    s = ng_trainer_step(&b.tr, NULL);
    NGT_CHECK(s == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "the ranks disagree on the CUDA graph of update 8"),
              "want the disagreement error, got %d: %s", (int)s, ng_last_error());
    printf("  rank %d: %s\n", NC->rank, ng_last_error());
    ng_clear_error();
    NGT_CHECK(b.tr.t == 8, "the failed update counted (t = %llu)", (unsigned long long)b.tr.t);
    /* every rank forgets them: the ranks agree again (all capture), nothing was issued, so the runs
     * still match update for update */
    ng_trainer_release(&b.tr);
    for (t = 8; t < 16; t++) {
        NGT_OK(ng_trainer_step(&a.tr, NULL));
        NGT_OK(ng_trainer_step(&b.tr, NULL));
        if (same_params("nag after the disagreement", &a, &b, t) != NGT_PASS) return NGT_FAIL;
    }
    if (same_as_rank0(&b, "nag after the disagreement") != NGT_PASS) return NGT_FAIL;
    run_free(&a);
    run_free(&b);
    return NGT_PASS;
}

int main(void) {
    uint64_t z = 0x9E3779B97F4A7C15ull;
    xorshift_fill(g_x, DIM * NCASES, &z);
    if (ngt_ranks_open_nccl(&C, &g_be, &NC, g_reason, sizeof g_reason)) return 1;
    NGT_RUN(test_graph_ranks_sgd);
    NGT_RUN(test_graph_ranks_nag);
    NGT_RUN(test_graph_ranks_adam);
    NGT_RUN(test_graph_ranks_overlap_nag);
    NGT_RUN(test_graph_ranks_overlap_adam);
    NGT_RUN(test_graph_ranks_diag);
    NGT_RUN(test_graph_ranks_prong);
    NGT_RUN(test_graph_ranks_full_phi);
    NGT_RUN(test_graph_ranks_kfac_phi);
    NGT_RUN(test_graph_ranks_refusals);
    NGT_RUN(test_graph_ranks_disagree);
    ng_comm_free(NC);
    ng_backend_free(g_be);
    ng_comm_free(C);
    return ngt_finish();
}
