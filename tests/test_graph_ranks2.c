/* test_graph_ranks2.c: CUDA graphs of a data-parallel step for the models that reduce inside their
 * gradient (--cuda-graph 1 under mpirun; natgrad/train.h ng_trainer_set_cuda_graph,
 * ng_trainer_graph_dist_check; natgrad/comm.h, NCCL collectives recorded in a graph). Under
 * `mpirun -np N` (tests/test_dist.sh, 2 and 3 ranks) the emulated-CUDA build (tests/simt) gives each
 * rank its own emulated GPU and an NCCL communicator through the shim. Each case trains twice on one
 * communicator, eagerly and with --cuda-graph 1, update by update in the same order on every rank
 * (some updates logged, so eager ones fall between the replays), and checks that the graph trainer
 * equals the eager one bit for bit after every update checked, that captures and replays are > 0,
 * how many all-reduces each capture recorded (the reductions a replay would otherwise miss), and that
 * after the run every rank's parameters equal rank 0's bit for bit (the shards differ, so only a real
 * sum on every replay keeps them equal):
 *   - rbm train, PCD-1 + SGD (6 x 5 RBM, global batches of 6, 5 particles: shards 3/3 and 2/2/2,
 *     particles 2/3 and 1/2/2): the RBM all-reduces gW and its data and particle means itself inside
 *     the gradient (rbm.c assemble_gradient): 2 all-reduces per capture; the parameters, this rank's
 *     particles and the Philox step equal the eager run's;
 *   - the same with CD-2 (chains started at this rank's columns, drawn at their global index) and with
 *     centering (its offsets follow the all-reduced data means on the device);
 *   - cnn train without batch norm (c3k3-relu-mp2-d3 with crops and mirrors drawn at this rank's global
 *     image index, SGD; and with a whitening layer, re-whitened every 5 updates eagerly): the trainer's
 *     gradient all-reduce, 1 per capture;
 *   - the diagonal energy metric (its second moments all-reduced: 3 per capture) and FANG (refits every
 *     5 updates eager; its means and second moments all-reduced, 4 per capture);
 *   - cnn train with batch norm (4 per capture; also with --comm-overlap buckets of 26 floats) and a
 *     6-5+bn-4:tanh+bn-6 network (sgd; adam with --comm-overlap 1; 7 per capture): synchronised batch
 *     norm merged on the device (natgrad/backend.h bn_merge between NCCL all-reduces); the eager runs
 *     also within 1e-5 of one process over the whole global batch;
 *   - RBM PCD-1 on binarised batches (each rank's draw at the device count's step);
 *   - refusals by message: batch norm
 *     merged over MPI.
 * Run alone (one rank), or in the CPU-only build, every test skips with the reason. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "graph_run.h"
#include "ranks.h"
#include "natgrad/backend.h"
#include "natgrad/cnn.h"
#include "natgrad/comm.h"
#include "natgrad/data.h"
#include "natgrad/log.h"
#include "natgrad/net.h"
#include "natgrad/precond.h"
#include "natgrad/rbm.h"
#include "natgrad/train.h"
#include "natgrad/update.h"

#define NV 6
#define NH 5
#define NCASES 30
#define BATCH 6
#define PARTICLES 5
#define CNN_ROWS (36 + 3)
#define CNN_N 24
static float g_x[NV * NCASES];
static float g_cnn_x[CNN_ROWS * CNN_N];
static ng_comm *C;  /* the world (MPI) */
static ng_comm *NC; /* the CUDA backend's communicator (NCCL) */
static ng_backend *g_be;
static char g_reason[512];

static int ready(void) {
    if (!g_be) return ngt_skip(g_reason);
    return NGT_PASS;
}

/* ---- RBMs --------------------------------------------------------------------------------- */

typedef struct rbm_run {
    ng_rbm rbm;
    ng_rbm_trainer rt;
    int ready, rt_ready;
} rbm_run;

static ng_status rbm_run_init(rbm_run *r, int estimator, int k, int optimizer, int binarize) {
    ng_rbm_config cfg;
    float mean[NV];
    int i;
    memset(r, 0, sizeof *r);
    ng_rbm_config_default(&cfg);
    cfg.batch = BATCH;
    cfg.particles = PARTICLES;
    cfg.k = k;
    cfg.estimator = estimator;
    cfg.optimizer = (ng_rbm_optimizer)optimizer;
    cfg.center_rate = 0.1f;
    cfg.fang_refit_every = 5; /* updates 0, 5, 10, ... refit (eagerly) */
    cfg.fang_tau = 10.0f;
    cfg.binarize_train = binarize;
    cfg.lr = 0.1f;
    cfg.lr_gamma = 0.0f; /* a constant rate: one key (the default decays it, a new capture per update) */
    cfg.momentum = 0.5f;
    cfg.weight_decay = 1e-3f;
    cfg.seed = 23;
    cfg.rank = NC->rank;
    cfg.world = NC->world;
    for (i = 0; i < NV; i++) mean[i] = 0.5f;
    NG_TRY(ng_rbm_init(g_be, NV, NH, &r->rbm));
    r->ready = 1;
    NG_TRY(ng_rbm_init_params(&r->rbm, 3, 0.1f, mean));
    NG_TRY(ng_rbm_trainer_init(&r->rt, &r->rbm, &cfg, g_x, NCASES, NULL));
    r->rt_ready = 1;
    return ng_trainer_set_comm(&r->rt.tr, NC);
}

static void rbm_run_free(rbm_run *r) {
    if (r->rt_ready) {
        ng_trainer_release(&r->rt.tr);
        ng_rbm_trainer_free(&r->rt);
    }
    if (r->ready) ng_rbm_free(&r->rbm);
    memset(r, 0, sizeof *r);
}

/* n floats of two device tensors, bit for bit (the first difference printed) */
static int same_floats(const char *what, const char *part, const ng_tensor *a, const ng_tensor *b, uint64_t t) {
    size_t n = ng_tensor_count(a), i;
    float *ha = (float *)malloc(n * sizeof(float)), *hb = (float *)malloc(n * sizeof(float));
    int ok;
    NGT_CHECK(ha && hb, "out of memory");
    NGT_OK(ng_tensor_get(g_be, a, ha));
    NGT_OK(ng_tensor_get(g_be, b, hb));
    ok = memcmp(ha, hb, n * sizeof(float)) == 0;
    if (!ok) {
        for (i = 0; i < n && ha[i] == hb[i]; i++) {
        }
        printf("  %s, rank %d: after update %llu %s %zu is %.9g eager, %.9g graph\n", what, NC->rank, (unsigned long long)t,
               part, i, (double)ha[i], (double)hb[i]);
    }
    free(ha);
    free(hb);
    NGT_CHECK(ok, "%s, rank %d: the %s differ after update %llu", what, NC->rank, part, (unsigned long long)t);
    return NGT_PASS;
}

static int same_rbm(const char *what, rbm_run *a, rbm_run *b, uint64_t t) {
    ng_model *ma = ng_rbm_model(&a->rbm), *mb = ng_rbm_model(&b->rbm);
    ng_tensor pa, pb;
    if (same_floats(what, "parameters", &ma->param_flat, &mb->param_flat, t) != NGT_PASS) return NGT_FAIL;
    NGT_OK(ng_model_statistic(ma, "particles", &pa));
    NGT_OK(ng_model_statistic(mb, "particles", &pb));
    if (same_floats(what, "particles", &pa, &pb, t) != NGT_PASS) return NGT_FAIL;
    NGT_CHECK(ng_rbm_rng_step(&a->rbm) == ng_rbm_rng_step(&b->rbm), "%s: Philox step %llu eager, %llu graph after update %llu",
              what, (unsigned long long)ng_rbm_rng_step(&a->rbm), (unsigned long long)ng_rbm_rng_step(&b->rbm),
              (unsigned long long)t);
    return NGT_PASS;
}

/* the graph trainer's counts: every update accounted for, captures >= 1, replays > captures, and
 * `want` all-reduces recorded by each capture */
static int graph_counts(const char *what, const ng_trainer *tr, uint64_t steps, unsigned long long recorded,
                        unsigned long long want) {
    const ng_train_graph *g = &tr->graph;
    NGT_CHECK(g->captures + g->replays + g->eager == steps, "%s: %llu + %llu + %llu != %llu", what,
              (unsigned long long)g->captures, (unsigned long long)g->replays, (unsigned long long)g->eager,
              (unsigned long long)steps);
    NGT_CHECK(g->captures >= 1 && g->replays > g->captures, "%s: %llu captures, %llu replays", what,
              (unsigned long long)g->captures, (unsigned long long)g->replays);
    NGT_CHECK(recorded == want * g->captures, "%s: %llu all-reduces recorded in %llu captures (want %llu each)", what,
              recorded, (unsigned long long)g->captures, want);
    return NGT_PASS;
}

static int same_rbm_pr(const pair *pp, uint64_t t) { return same_rbm(pp->what, (rbm_run *)pp->a, (rbm_run *)pp->b, t); }

static const char *const opt_name[] = {"sgd", "centering", "fang", "diag"};

static int rbm_graph_vs_eager(int estimator, int k, int optimizer, uint64_t steps, int log_every,
                              unsigned long long want, int binarize) {
    rbm_run a, b;
    unsigned long long rec0 = NC->captured;
    char what[96];
    pair pp = {what, &a, &b, steps};
    snprintf(what, sizeof what, "rbm %s-%d + %s%s", estimator == NG_RBM_PCD ? "PCD" : "CD", k, opt_name[optimizer],
             binarize ? ", --binarize-train" : "");
    NGT_OK(rbm_run_init(&a, estimator, k, optimizer, binarize));
    NGT_OK(rbm_run_init(&b, estimator, k, optimizer, binarize));
    NGT_OK(ng_trainer_set_cuda_graph(&b.rt.tr, 1));
    if (step_both(&a.rt.tr, &b.rt.tr, 0, steps, log_every, same_rbm_pr, &pp) != NGT_PASS) return NGT_FAIL;
    if (graph_counts(what, &b.rt.tr, steps, NC->captured - rec0, want) != NGT_PASS) return NGT_FAIL;
    if (optimizer == NG_RBM_OPT_FANG) /* every refit (t = 0, 5, 10, ...) eager */
        NGT_CHECK(b.rt.tr.graph.eager >= (steps + 4) / 5, "%s: %llu eager updates, fewer than the %llu refits", what,
                  (unsigned long long)b.rt.tr.graph.eager, (unsigned long long)((steps + 4) / 5));
    if (ngt_same_as_rank0_dev(C, g_be, ng_rbm_model(&b.rbm)->param_flat.data, ng_model_size(ng_rbm_model(&b.rbm)), what) !=
        NGT_PASS)
        return NGT_FAIL;
    printf("  %s, rank %d of %d: %llu updates: %llu captured (%llu all-reduces each), %llu replayed, %llu eager; equal to "
           "eager and to rank 0\n", what, NC->rank, NC->world, (unsigned long long)steps,
           (unsigned long long)b.rt.tr.graph.captures, want, (unsigned long long)b.rt.tr.graph.replays,
           (unsigned long long)b.rt.tr.graph.eager);
    rbm_run_free(&a);
    rbm_run_free(&b);
    return NGT_PASS;
}

/* the RBM's gW and its four means: two all-reduces recorded in each capture; FANG's means and
 * second moments two more */
static int test_graph_ranks_rbm_pcd_sgd(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return rbm_graph_vs_eager(NG_RBM_PCD, 1, NG_RBM_OPT_SGD, 24, 7, 2, 0);
}
static int test_graph_ranks_rbm_cd2_sgd(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return rbm_graph_vs_eager(NG_RBM_CD, 2, NG_RBM_OPT_SGD, 16, 5, 2, 0);
}
static int test_graph_ranks_rbm_centering(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return rbm_graph_vs_eager(NG_RBM_PCD, 1, NG_RBM_OPT_CENTERING, 24, 7, 2, 0);
}
static int test_graph_ranks_rbm_diag(void) { /* the energy metric's second moments: one more */
    if (ready() != NGT_PASS) return NGT_SKIP;
    return rbm_graph_vs_eager(NG_RBM_PCD, 1, NG_RBM_OPT_DIAG, 24, 7, 3, 0);
}
static int test_graph_ranks_rbm_fang(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return rbm_graph_vs_eager(NG_RBM_PCD, 1, NG_RBM_OPT_FANG, 23, 7, 4, 0);
}
/* binarised batches: each rank draws its shard's columns at the device count's step */
static int test_graph_ranks_rbm_binarize(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return rbm_graph_vs_eager(NG_RBM_PCD, 1, NG_RBM_OPT_SGD, 24, 7, 2, 1);
}

/* ---- conv nets ---------------------------------------------------------------------------- */

/* comm NULL: one process over the whole global batch (chunk: cases per pass); bucket_mb: the
 * gradient's --comm-overlap buckets */
static ng_status cnn_run_init(cnn_run *r, const char *spec, ng_comm *comm, int chunk, double bucket_mb) {
    ng_cnn_config cfg;
    ng_sgd_config c;
    ng_status s;
    memset(r, 0, sizeof *r);
    ng_cnn_config_default(&cfg);
    cfg.c = 1, cfg.h = 6, cfg.w = 6;
    NG_TRY(ng_cnn_parse_spec(spec, &cfg));
    cfg.chunk = chunk;
    cfg.seed = 23;
    cfg.augment_pad = 1;
    cfg.augment_flip = 1;
    if (strstr(spec, "-w-")) { /* a whitening layer: re-whitened at updates 0, 5, 10, ... (eagerly) */
        cfg.whiten_every = 5;
        cfg.whiten_samples = 4;
    }
    NG_TRY(ng_cnn_create(g_be, &cfg, &r->m));
    memset(&c, 0, sizeof c);
    c.lr = 0.1f;
    c.momentum = 0.9f;
    c.weight_decay = 1e-3f;
    s = ng_update_sgd_init(g_be, r->m, &c, &r->upd);
    if (s == NG_OK) s = ng_precond_identity_init(g_be, &r->pc);
    if (s == NG_OK)
        s = ng_batches_init(&r->data, g_be, g_cnn_x, CNN_ROWS, CNN_N, BATCH, 5, comm ? comm->rank : 0, comm ? comm->world : 1);
    if (s == NG_OK) r->data_ready = 1;
    if (s == NG_OK) s = ng_trainer_init(&r->tr, r->m, r->pc, r->upd, &r->data, 5, NULL);
    if (s == NG_OK && comm) s = ng_trainer_set_comm_overlap(&r->tr, 1, bucket_mb);
    if (s == NG_OK && comm) s = ng_trainer_set_comm(&r->tr, comm);
    /* as cnn train does under mpirun: the model's shard (augmentation draws, synchronised batch norm) */
    if (s == NG_OK && comm) s = ng_cnn_set_dist(r->m, comm, r->data.lo, r->data.batch);
    return s;
}

/* max |x - y| over two runs' n parameters x and y (on g_be), and max |y| */
static int param_diff(const ng_tensor *x, const ng_tensor *y, size_t n, double *d, double *ymax) {
    size_t i;
    float *px = (float *)malloc(n * sizeof(float)), *py = (float *)malloc(n * sizeof(float));
    NGT_CHECK(px && py, "out of memory");
    NGT_OK(ng_tensor_get(g_be, x, px));
    NGT_OK(ng_tensor_get(g_be, y, py));
    *d = *ymax = 0.0;
    for (i = 0; i < n; i++) {
        const double e = fabs((double)px[i] - (double)py[i]);
        if (e > *d) *d = e;
        if (fabs((double)py[i]) > *ymax) *ymax = fabs((double)py[i]);
    }
    free(px);
    free(py);
    return NGT_PASS;
}

/* graph = eager bit for bit on the ranks (parameters, and the running averages of batch norm), want
 * all-reduces recorded per capture; with batch norm also the eager ranks against one process over the
 * whole global batch in one pass (augmentation drawn by global image index on both): after 12
 * updates max |difference| <= 1e-5 (1 + max |parameter|) (the merge in float64, the gradient's sum
 * re-associated, as for the dense network below) */
static int cnn_graph_vs_eager(const char *spec, int bn, double bucket_mb, unsigned long long want) {
    cnn_run a, b, one;
    uint64_t t, steps = 24;
    unsigned long long rec0;
    double row[NG_TRAIN_MAX_COLUMNS], d = 0.0, pmax = 0.0;
    char what[96];
    int l;
    snprintf(what, sizeof what, "cnn %s, crops + mirrors, sgd, buckets of %g MiB", spec, bucket_mb);
    NGT_OK(cnn_run_init(&a, spec, NC, 4, bucket_mb));
    NGT_OK(cnn_run_init(&b, spec, NC, 4, bucket_mb));
    NGT_OK(cnn_run_init(&one, spec, NULL, 8, bucket_mb));
    NGT_OK(ng_trainer_set_cuda_graph(&b.tr, 1));
    rec0 = NC->captured;
    for (t = 0; t < steps; t++) {
        double *rw = t % 9 == 0 ? row : NULL;
        NGT_OK(ng_trainer_step(&a.tr, rw));
        NGT_OK(ng_trainer_step(&b.tr, rw));
        if (same_floats(what, "parameters", &a.m->param_flat, &b.m->param_flat, t) != NGT_PASS) return NGT_FAIL;
        for (l = 1; bn && l <= ng_cnn_config_of(a.m)->n_layers; l++) {
            static const char *const st[] = {"running_mean%d", "running_rstd%d"};
            int k;
            for (k = 0; k < 2; k++) {
                char name[32];
                ng_tensor ta, tb;
                snprintf(name, sizeof name, st[k], l);
                if (ng_model_statistic(a.m, name, &ta) != NG_OK) {
                    ng_clear_error();
                    continue;
                }
                NGT_OK(ng_model_statistic(b.m, name, &tb));
                if (same_floats(what, name, &ta, &tb, t) != NGT_PASS) return NGT_FAIL;
            }
        }
        if (bn && t < 12) NGT_OK(ng_trainer_step(&one.tr, NULL));
        if (bn && t == 11) {
            if (param_diff(&a.m->param_flat, &one.m->param_flat, ng_model_size(a.m), &d, &pmax) != NGT_PASS) return NGT_FAIL;
            NGT_CHECK(d <= 1e-5 * (1.0 + pmax), "%s, rank %d: after 12 updates the ranks differ from one process by %g "
                      "(max |parameter| %g)", what, NC->rank, d, pmax);
        }
    }
    NGT_CHECK(ng_cnn_gradients(a.m) == ng_cnn_gradients(b.m), "%s: %llu gradients eager, %llu graph", what,
              (unsigned long long)ng_cnn_gradients(a.m), (unsigned long long)ng_cnn_gradients(b.m));
    if (graph_counts(what, &b.tr, steps, NC->captured - rec0, want) != NGT_PASS) return NGT_FAIL;
    if (strstr(spec, "-w-")) /* every re-whitening (t = 0, 5, 10, ...) eager */
        NGT_CHECK(b.tr.graph.eager >= (steps + 4) / 5, "%s: %llu eager updates, fewer than the %llu re-whitenings", what,
                  (unsigned long long)b.tr.graph.eager, (unsigned long long)((steps + 4) / 5));
    if (ngt_same_as_rank0_dev(C, g_be, b.m->param_flat.data, ng_model_size(b.m), what) != NGT_PASS) return NGT_FAIL;
    printf("  %s, rank %d of %d: %llu updates: %llu captured (%llu all-reduces each), %llu replayed, %llu eager; equal to "
           "eager and to rank 0", what, NC->rank, NC->world, (unsigned long long)steps, (unsigned long long)b.tr.graph.captures,
           want, (unsigned long long)b.tr.graph.replays, (unsigned long long)b.tr.graph.eager);
    if (bn) printf("; after 12 updates %.2g from one process", d);
    printf("\n");
    cnn_run_free(&a);
    cnn_run_free(&b);
    cnn_run_free(&one);
    return NGT_PASS;
}

/* without batch norm: the gradient's all-reduce (1 per capture, buckets of 1 MiB: one); with it,
 * per batch-normalised layer the forward's counts and scatters and the backward's sums (1 + 3), also
 * with buckets of 26 floats (the network then reduces the gradient whole after the backward pass: a
 * bucket started before the batch norm's backward all-reduce could not be captured) */
static int test_graph_ranks_cnn(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return cnn_graph_vs_eager("c3k3-relu-mp2-d3", 0, 1.0, 1);
}
static int test_graph_ranks_cnn_whiten(void) { /* PRONG's whitening layer: its refreshes eager */
    if (ready() != NGT_PASS) return NGT_SKIP;
    return cnn_graph_vs_eager("c4k3-relu-w-c3k3p0-relu-d3", 0, 1.0, 1);
}
static int test_graph_ranks_cnn_bn(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    if (cnn_graph_vs_eager("c3k3-bn-relu-mp2-d3", 1, 1.0, 4) != NGT_PASS) return NGT_FAIL;
    return cnn_graph_vs_eager("c3k3-bn-relu-mp2-d3", 1, 0.0001, 4);
}

/* ---- dense networks with batch norm ------------------------------------------------------ */

#define BN_SPEC "6-5+bn-4:tanh+bn-6"
/* the fixture's autoencoder with two batch-normalised layers; comm NULL: one process over the whole
 * global batch (the reference), else this rank's shard with the gradient all-reduced, the batch norm
 * synchronised over comm when sync is 1 (as net train does under mpirun), over the shard alone if 0 */
static ng_status bn_run_init(run *r, int rule, ng_comm *comm, int overlap, int sync) {
    ng_net_config cfg;
    ng_status s;
    memset(r, 0, sizeof *r);
    ae_config(&cfg);
    NG_TRY(ng_net_parse_spec(BN_SPEC, NG_ACT_LOGISTIC, NG_ACT_LOGISTIC, &cfg));
    NG_TRY(ng_net_create(g_be, &cfg, &r->net));
    s = ae_update(g_be, r->net, rule, 0.0f, &r->upd);
    if (s == NG_OK) s = ng_precond_identity_init(g_be, &r->pc);
    if (s == NG_OK) s = ng_batches_init(&r->data, g_be, g_x, NV, NCASES, BATCH, 5, comm ? comm->rank : 0, comm ? comm->world : 1);
    if (s == NG_OK) r->data_ready = 1;
    if (s == NG_OK) s = ng_trainer_init(&r->tr, r->net, r->pc, r->upd, &r->data, 5, NULL);
    if (s == NG_OK && comm) s = ng_trainer_set_comm_overlap(&r->tr, overlap, overlap ? 0.0001 : 1.0);
    if (s == NG_OK && comm) s = ng_trainer_set_comm(&r->tr, comm);
    if (s == NG_OK && comm && sync) s = ng_net_set_comm(r->net, comm);
    return s;
}

/* graph = eager bit for bit on the ranks (sgd; adam with the gradient in buckets: on the device the
 * network then reduces it whole after the backward pass, see net.c); and the eager run against one
 * process over the whole global batch: the merge (Chan et al. in float64 on the device) gives the
 * batch's mean and variance up to float64 rounding, then float32 like one process's; the gradient's
 * all-reduce re-associates the float32 sum over the batch (a few ulps per update, as in
 * tests/test_dist.sh): after 12 updates max |difference| <= 1e-5 (1 + max |parameter|), while the
 * same ranks normalising over their own shards (no merge) differ from one process by more than 100
 * times that (so the check sees the merge) */
static int bn_graph_vs_eager(int rule, int overlap) {
    run a, b, one, solo;
    uint64_t t, steps = 24;
    unsigned long long rec0;
    double row[NG_TRAIN_MAX_COLUMNS], d = 0.0, dsolo = 0.0, pmax = 0.0;
    char what[96];
    snprintf(what, sizeof what, "net %s, %s, --comm-overlap %d", BN_SPEC, rule == AE_SGD ? "sgd" : "adam", overlap);
    NGT_OK(bn_run_init(&a, rule, NC, overlap, 1));
    NGT_OK(bn_run_init(&b, rule, NC, overlap, 1));
    NGT_OK(bn_run_init(&one, rule, NULL, 0, 0));
    NGT_OK(bn_run_init(&solo, rule, NC, overlap, 0));
    NGT_OK(ng_trainer_set_cuda_graph(&b.tr, 1));
    rec0 = NC->captured;
    for (t = 0; t < steps; t++) {
        double *rw = t % 7 == 0 ? row : NULL;
        NGT_OK(ng_trainer_step(&a.tr, rw));
        NGT_OK(ng_trainer_step(&b.tr, rw));
        if (same_floats(what, "parameters", &a.net->param_flat, &b.net->param_flat, t) != NGT_PASS) return NGT_FAIL;
        if (t < 12) {
            NGT_OK(ng_trainer_step(&one.tr, NULL));
            NGT_OK(ng_trainer_step(&solo.tr, NULL));
        }
        if (t == 11) {
            const size_t n = ng_model_size(a.net);
            if (param_diff(&a.net->param_flat, &one.net->param_flat, n, &d, &pmax) != NGT_PASS ||
                param_diff(&solo.net->param_flat, &one.net->param_flat, n, &dsolo, &pmax) != NGT_PASS)
                return NGT_FAIL;
            NGT_CHECK(d <= 1e-5 * (1.0 + pmax), "%s, rank %d: after 12 updates the ranks differ from one process by %g "
                      "(max |parameter| %g)", what, NC->rank, d, pmax);
            NGT_CHECK(dsolo > 1e-3 * (1.0 + pmax), "%s, rank %d: without the merge the ranks differ from one process by "
                      "only %g: the check cannot see the merge", what, NC->rank, dsolo);
        }
    }
    /* the gradient's all-reduce, then per batch-normalised layer the forward's counts and scatters and
     * the backward's sums: 1 + 2 x 3 recorded in each capture */
    if (graph_counts(what, &b.tr, steps, NC->captured - rec0, 7) != NGT_PASS) return NGT_FAIL;
    if (ngt_same_as_rank0_dev(C, g_be, b.net->param_flat.data, ng_model_size(b.net), what) != NGT_PASS) return NGT_FAIL;
    printf("  %s, rank %d of %d: %llu updates: %llu captured (7 all-reduces each), %llu replayed, %llu eager; equal to "
           "eager and to rank 0; after 12 updates %.2g from one process (%.2g without the merge)\n", what, NC->rank,
           NC->world, (unsigned long long)steps, (unsigned long long)b.tr.graph.captures,
           (unsigned long long)b.tr.graph.replays, (unsigned long long)b.tr.graph.eager, d, dsolo);
    run_free(&a);
    run_free(&b);
    run_free(&one);
    run_free(&solo);
    return NGT_PASS;
}

static int test_graph_ranks_net_bn(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return bn_graph_vs_eager(AE_SGD, 0) == NGT_PASS ? bn_graph_vs_eager(AE_ADAM, 1) : NGT_FAIL;
}

/* ---- refusals ------------------------------------------------------------------------------ */

static int refusal(ng_trainer *tr, const char *what, const char *want) {
    ng_status s = ng_trainer_set_cuda_graph(tr, 1);
    NGT_CHECK(s == NG_ERR_UNSUPPORTED && strstr(ng_last_error(), want), "%s: want NG_ERR_UNSUPPORTED naming '%s', got %d: %s",
              what, want, (int)s, ng_last_error());
    printf("  refused (%s): %s\n", what, ng_last_error());
    ng_clear_error();
    return NGT_PASS;
}

static int test_graph_ranks_refusals(void) {
    int ok;
    if (ready() != NGT_PASS) return NGT_SKIP;
    { /* a network whose batch norm merges over MPI (the world communicator) while the trainer's gradient
       * goes over NCCL: the merge reads the host */
        run r;
        NGT_OK(bn_run_init(&r, AE_SGD, NC, 0, 0));
        NGT_OK(ng_net_set_comm(r.net, C));
        ok = refusal(&r.tr, "net +bn over MPI", "the network's batch norm merges its statistics across the ranks through the "
                                                "host over MPI");
        run_free(&r);
        if (ok != NGT_PASS) return NGT_FAIL;
    }
    return NGT_PASS;
}

int main(void) {
    uint64_t z = 0x9E3779B97F4A7C15ull;
    xorshift_fill(g_x, NV * NCASES, &z);
    fill_images(g_cnn_x, CNN_N, CNN_ROWS, &z);
    if (ngt_ranks_open_nccl(&C, &g_be, &NC, g_reason, sizeof g_reason)) return 1;
    NGT_RUN(test_graph_ranks_rbm_pcd_sgd);
    NGT_RUN(test_graph_ranks_rbm_cd2_sgd);
    NGT_RUN(test_graph_ranks_rbm_centering);
    NGT_RUN(test_graph_ranks_rbm_diag);
    NGT_RUN(test_graph_ranks_rbm_fang);
    NGT_RUN(test_graph_ranks_rbm_binarize);
    NGT_RUN(test_graph_ranks_cnn);
    NGT_RUN(test_graph_ranks_cnn_whiten);
    NGT_RUN(test_graph_ranks_cnn_bn);
    NGT_RUN(test_graph_ranks_net_bn);
    NGT_RUN(test_graph_ranks_refusals);
    ng_comm_free(NC);
    ng_backend_free(g_be);
    ng_comm_free(C);
    return ngt_finish();
}
