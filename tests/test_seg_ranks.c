/* test_seg_ranks.c: CUDA-graph segments of truncated Newton and K-FAC on several ranks (--cuda-graph 1 under
 * mpirun; natgrad/graph.h, natgrad/train.h ng_trainer_agree_segments; natgrad/comm.h, NCCL collectives
 * recorded in a graph). Under `mpirun -np N` (tests/test_dist.sh, 2 and 3 ranks) the emulated-CUDA
 * build (tests/simt) gives each rank its own emulated GPU and an NCCL communicator through the shim
 * (NCCL on MPI, its all-reduce recorded as a graph node and started at each replay; the shim aborts
 * when the ranks' capture ids of a collective differ). Each rank trains the 6-5-4-6 autoencoder of
 * tests/graph_run.h with truncated Newton or K-FAC and the plain step of size 1 on its shard of global batches
 * of 12 out of 31 cases (batches 12, 12, 7: shards 6/6 and 4/3 on 2 ranks, 4/4/4 and 3/2/2 on 3), twice
 * on one communicator, eagerly and in graph segments, update by update in the same order on every
 * rank, and checks:
 *   - ngd (Gauss-Newton, CG), ngd with the sampled Fisher (its targets drawn by global column, the
 *     stream step on the device), hf (its diagonal preconditioner, reduced eagerly, and CG backtracking
 *     through the "tn objective" segment), ncg-l (its 2-D search, every trial point an objective
 *     segment), ngd with a separate metric batch of 8 (whole on every rank: its products hold no
 *     all-reduce), ngd on a 6-5+bn-4:tanh+bn-6 network with synchronised batch norm (its merges'
 *     all-reduces inside the segments too), and ngd with --comm-overlap 1 in buckets of 26 floats; and conv nets
 *     (cnn_init: 6x6 images in global batches of 8, shards 4/4 and 2/3/3): ngd on G v without batch norm in
 *     chunks of 3, hf on H v, ngd on the sampled Fisher and ncg-l on the empirical Fisher with synchronised batch norm (merged on the device
 *     inside the gradient's, products' and objective's segments), their running averages and tn's lambda,
 *     rho, step sizes and iterations equal too: the segment trainer's parameters
 *     equal the eager one's bit for bit after every update (the same kernels, the same shard weights,
 *     the same NCCL sums), the gradient and curvature-product segments replay (replays > 0, the
 *     products' replays > their captures) and CG's vector work too, the all-reduces recorded are exactly
 *     one per product capture plus the gradient's per gradient capture (1, or 2 buckets) — nothing else
 *     would reduce them on a replay — and after the run every rank's parameters equal rank 0's bit for
 *     bit (shards differ, so only a real sum in every replay keeps them equal);
 *   - block-diagonal and block-tridiagonal K-FAC (tau1 = 0.75: statistics on 6 + 3 cases on 2 ranks, 4 + 4 + 1 on 3, and in the
 *     partial batch 4 + 1 and 3 + 2 + 0: a rank without cases only scales; refreshes, gamma candidates
 *     and lambda adjustments within 30 updates): the parameters and lambda, gamma, alpha, mu, rho and
 *     M(delta) - M(0) equal the eager trainer's bit for bit after every update (also with --kfac-async 2: each rank's
 *     worker computes its layers' inverses while the main thread captures), the statistics segment
 *     (the factors' 2 L = 6, or 4 L - 2 = 10, all-reduces inside) replays once its weights settle, the F^-1 products and
 *     rho's objective replay, and every rank ends equal to rank 0;
 *   - device calls of one steady-state update of the curves autoencoder with NGD (CG 10) on global
 *     batches of 8, eager and in segments (exact emulator counts, printed): fewer kernel launches and
 *     cuBLAS calls in segments, graph launches > 0, the same parameters bit for bit;
 *   - refusals naming the fix: the MPI communicator (a CUDA buffer staged through the host), a conv net
 *     whose batch norm merges over MPI (host doubles) under a trainer on NCCL (K-FAC in the natural
 *     parameter space is captured whole on several ranks: tests/test_graph_ranks.c);
 *   - the once-per-update invariant: when the last rank drops its graphs of CG's vector work (which
 *     hold no collective, so NCCL does not notice) it captures where the others replay, and every rank's
 *     update fails with the same "diverged" error.
 * Run alone (one rank), or in the CPU-only build, every test skips with the reason. */
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
#include "natgrad/graph.h"
#include "natgrad/kfac.h"
#include "natgrad/log.h"
#include "natgrad/net.h"
#include "natgrad/precond.h"
#include "natgrad/profile.h"
#include "natgrad/tnewton.h"
#include "natgrad/train.h"
#include "natgrad/update.h"

#define DIM 6
#define NCASES 31
#define BATCH 12
#define BUCKET_MB 0.0001 /* 26 floats: 2 bucket all-reduces per gradient (tests/test_graph_ranks.c) */
#define CNN_ROWS (36 + 3) /* a 6x6 image, then a one-hot label of 3 classes */
#define CNN_N 24
#define CNN_BATCH 8
static float g_x[DIM * NCASES];
static float g_cnn_x[CNN_ROWS * CNN_N];
static ng_comm *C;  /* the world (MPI) */
static ng_comm *NC; /* the CUDA backend's communicator (NCCL) */
static ng_backend *g_be;
static char g_reason[512];

enum { K_NGD, K_NGD_SAMPLED, K_HF, K_NCG_L, K_NGD_SEPARATE, K_NGD_BN, K_CNN_NGD, K_CNN_HF_BN, K_CNN_SAMPLED_BN,
       K_CNN_NCG_BN, K_KFAC, K_KFAC_TRI, K_KFAC_ASYNC };
static const char *const kind_name[] = {"ngd", "ngd (sampled Fisher)", "hf", "ncg-l", "ngd (separate metric batch)",
                                        "ngd, 6-5+bn-4:tanh+bn-6", "cnn ngd (G v), c3k3-relu-mp2-d3, chunks of 3",
                                        "cnn hf (H v), c3k3-bn-relu-mp2-d3", "cnn ngd (sampled Fisher), c3k3-bn-relu-mp2-d3",
                                        "cnn ncg-l (empirical Fisher), c3k3-bn-relu-mp2-d3",
                                        "kfac", "kfac tridiagonal", "kfac --kfac-async 2"};
static int is_cnn(int kind) { return kind >= K_CNN_NGD && kind <= K_CNN_NCG_BN; }
static int has_bn(int kind) { return kind == K_NGD_BN || (is_cnn(kind) && kind != K_CNN_NGD); }

/* The conv nets (6x6 images, 3 classes, tests/test_graph_ranks2.c's data) under truncated Newton and
 * the plain step of size 1 (weight decay 1e-3), without augmentation (refused by tn), on global
 * batches of 8 out of 24 images: shards 4/4 on 2 ranks, 2/3/3 on 3. ngd on G v without batch norm in
 * chunks of 3 (two chunks on 2 ranks: every product recomputes the forward passes), hf on H v and ngd
 * on the sampled Fisher (2 draws at each image's global index) and ncg-l on the empirical Fisher (its
 * 2-D search of objective evaluations) with batch norm in chunks of 4 (one pass per rank, synchronised batch norm merged on the device by NCCL all-reduces inside the
 * segments); as cnn train does under mpirun, the model's shard and communicator (ng_cnn_set_dist). */
static ng_status cnn_init(run *r, int kind, ng_comm *comm) {
    ng_cnn_config cfg;
    ng_sgd_config sc;
    ng_tn_config tc;
    ng_cnn_config_default(&cfg);
    cfg.c = 1, cfg.h = 6, cfg.w = 6;
    NG_TRY(ng_cnn_parse_spec(kind == K_CNN_NGD ? "c3k3-relu-mp2-d3" : "c3k3-bn-relu-mp2-d3", &cfg));
    cfg.chunk = kind == K_CNN_NGD ? 3 : 4;
    cfg.seed = 23;
    NG_TRY(ng_cnn_create(g_be, &cfg, &r->net));
    memset(&sc, 0, sizeof sc);
    sc.lr = 1.0f;
    sc.weight_decay = 1e-3f;
    NG_TRY(ng_update_sgd_init(g_be, r->net, &sc, &r->upd));
    ng_tn_config_default(&tc);
    tc.method = kind == K_CNN_HF_BN ? NG_TN_HF : kind == K_CNN_NCG_BN ? NG_TN_NCG_L : NG_TN_NGD;
    tc.max_iter = kind == K_CNN_HF_BN ? 6 : 4;
    tc.lr = 0.5;
    tc.hf_precond = 0; /* refused on a cnn */
    if (kind == K_CNN_HF_BN) tc.curvature = NG_TN_CURV_HESSIAN;
    if (kind == K_CNN_SAMPLED_BN) tc.fisher = NG_FISHER_SAMPLED, tc.fisher_samples = 2;
    if (kind == K_CNN_NCG_BN) tc.fisher = NG_FISHER_EMPIRICAL;
    NG_TRY(ng_precond_tn_init(g_be, r->net, &tc, NULL, 0, &r->pc));
    NG_TRY(ng_batches_init(&r->data, g_be, g_cnn_x, CNN_ROWS, CNN_N, CNN_BATCH, 5, comm->rank, comm->world));
    r->data_ready = 1;
    NG_TRY(ng_trainer_init(&r->tr, r->net, r->pc, r->upd, &r->data, 5, NULL));
    NG_TRY(ng_trainer_set_comm(&r->tr, comm));
    return ng_cnn_set_dist(r->net, comm, r->data.lo, r->data.batch);
}

/* the autoencoder, the plain step of size 1 (weight decay 1e-3) and the preconditioner of kind */
static ng_status run_init(run *r, int kind, ng_comm *comm, int overlap) {
    ng_net_config cfg;
    ng_sgd_config sc;
    ng_status s;
    memset(r, 0, sizeof *r);
    if (is_cnn(kind)) return cnn_init(r, kind, comm);
    ae_config(&cfg);
    NG_TRY(ng_net_parse_spec(kind == K_NGD_BN ? "6-5+bn-4:tanh+bn-6" : "6-5-4-6", NG_ACT_LOGISTIC, NG_ACT_LOGISTIC, &cfg));
    NG_TRY(ng_net_create(g_be, &cfg, &r->net));
    memset(&sc, 0, sizeof sc);
    sc.lr = 1.0f;
    sc.weight_decay = 1e-3f;
    s = ng_update_sgd_init(g_be, r->net, &sc, &r->upd);
    if (s == NG_OK && kind >= K_KFAC) {
        ng_kfac_config kc;
        ng_kfac_config_default(&kc);
        kc.approx = kind == K_KFAC_TRI ? NG_KFAC_TRIDIAG : NG_KFAC_BLOCKDIAG;
        kc.timing = 0;
        kc.T1 = 3; /* lambda adapted at updates 3, 6, ... */
        kc.T2 = 10;
        kc.T3 = 5; /* inverses at updates 1, 2, 3, 5, 10, ... ; gamma candidates at 10, 20 */
        kc.lambda0 = 5.0;
        /* statistics on the first 9 of 12 cases (5 of 7): 6 + 3 on 2 ranks, 4 + 4 + 1 on 3 (3 + 2 + 0
         * in the partial batch: a rank without cases only scales) */
        kc.tau1 = 0.75;
        /* the refreshes at 5, 10, ... by each rank's worker thread on its layers, swapped in 2 updates later */
        if (kind == K_KFAC_ASYNC) kc.async_lag = 2;
        s = ng_precond_kfac_init(g_be, r->net, &kc, &r->pc);
    } else if (s == NG_OK) {
        ng_tn_config tc;
        ng_tn_config_default(&tc);
        tc.method = kind == K_HF ? NG_TN_HF : kind == K_NCG_L ? NG_TN_NCG_L : NG_TN_NGD;
        tc.max_iter = kind == K_HF ? 8 : 5;
        tc.lr = 0.5;
        if (kind == K_NGD_SAMPLED) tc.fisher = NG_FISHER_SAMPLED, tc.fisher_samples = 2;
        if (kind == K_NGD_SEPARATE) tc.metric = NG_TN_METRIC_SEPARATE, tc.metric_batch = 8;
        s = ng_precond_tn_init(g_be, r->net, &tc, kind == K_NGD_SEPARATE ? g_x : NULL, kind == K_NGD_SEPARATE ? NCASES : 0,
                               &r->pc);
    }
    if (s == NG_OK) s = ng_batches_init(&r->data, g_be, g_x, DIM, NCASES, BATCH, 5, comm->rank, comm->world);
    if (s == NG_OK) r->data_ready = 1;
    if (s == NG_OK) s = ng_trainer_init(&r->tr, r->net, r->pc, r->upd, &r->data, 5, NULL);
    if (s == NG_OK) s = ng_trainer_set_comm_overlap(&r->tr, overlap, overlap ? BUCKET_MB : 1.0);
    if (s == NG_OK) s = ng_trainer_set_comm(&r->tr, comm);
    if (s == NG_OK && kind == K_NGD_BN) s = ng_net_set_comm(r->net, comm); /* synchronised batch norm */
    return s;
}

static int same_params(const char *what, run *a, run *b, uint64_t t) {
    char w[128];
    snprintf(w, sizeof w, "%s, rank %d", what, NC->rank);
    return same_params_on(g_be, w, a, b, t);
}

static int same_as_rank0(run *r, const char *what) {
    char w[128];
    snprintf(w, sizeof w, "%s: the parameters", what);
    return ngt_same_as_rank0_dev(C, g_be, r->net->param_flat.data, ng_model_size(r->net), w);
}

/* K-FAC: the parameters, then lambda, gamma, alpha, mu, rho and M(delta) - M(0) bit for bit (its
 * log_values' first 6 columns; the rest are timings) */
static int same_kfac(const char *what, run *a, run *b, uint64_t t) {
    double va[NG_TRAIN_MAX_COLUMNS], vb[NG_TRAIN_MAX_COLUMNS];
    static const char *const col[6] = {"lambda", "gamma", "alpha", "mu", "rho", "qmodel"};
    int i;
    if (same_params(what, a, b, t) != NGT_PASS) return NGT_FAIL;
    NGT_OK(a->pc->iface->log_values(a->pc, va));
    NGT_OK(b->pc->iface->log_values(b->pc, vb));
    for (i = 0; i < 6; i++)
        NGT_CHECK(memcmp(&va[i], &vb[i], sizeof va[i]) == 0, "%s, rank %d: after update %llu %s = %.17g eager, %.17g in "
                  "segments", what, NC->rank, (unsigned long long)t, col[i], va[i], vb[i]);
    return NGT_PASS;
}

static int same_kfac_pr(const pair *pp, uint64_t t) { return same_kfac(pp->what, (run *)pp->a, (run *)pp->b, t); }

/* K-FAC in segments: the gradient's and the statistics' segments hold the all-reduces (the factors':
 * 2 L = 6 per statistics capture, block-tridiagonal 4 L - 2 = 10 with the coupling factors), the F^-1
 * products and rho's objective none */
static int kfac_seg_vs_eager(int kind, uint64_t steps, int log_every) {
    run a, b;
    uint64_t gc, gr, ge, gf, sc, sr, se, sf, fc, fr, fe, ff, oc, orp, oe, of;
    unsigned long long rec0 = NC->captured, rec, nf = kind == K_KFAC_TRI ? 10u : 6u;
    const char *what = kind_name[kind];
    pair pp = {what, &a, &b, steps};
    NGT_OK(run_init(&a, kind, NC, 0));
    NGT_OK(run_init(&b, kind, NC, 0));
    NGT_OK(ng_trainer_set_cuda_graph(&b.tr, 1));
    NGT_CHECK(b.tr.graph.seg == 1, "%s: not run in segments", what);
    if (step_both(&a.tr, &b.tr, 0, steps, log_every, same_kfac_pr, &pp) != NGT_PASS) return NGT_FAIL;
    rec = NC->captured - rec0;
    ng_graph_seg_counts(&b.tr.graph.segs, "gradient", &gc, &gr, &ge, &gf);
    ng_graph_seg_counts(&b.tr.graph.segs, "kfac statistics", &sc, &sr, &se, &sf);
    ng_graph_seg_counts(&b.tr.graph.segs, "kfac F^-1 product", &fc, &fr, &fe, &ff);
    ng_graph_seg_counts(&b.tr.graph.segs, "kfac objective", &oc, &orp, &oe, &of);
    NGT_CHECK(gr > 0 && gf == 0 && gc + gr + ge == steps, "%s: gradient %llu captures, %llu replays, %llu eager, %llu failures",
              what, (unsigned long long)gc, (unsigned long long)gr, (unsigned long long)ge, (unsigned long long)gf);
    /* the statistics' weights eps_k = min(1 - 1/k, 0.95) settle at k = 20: replays from there; the
     * eager updates (0 and the logged ones) take accumulate + the eager all-reduces, outside the cache */
    NGT_CHECK(sr > 0 && sf == 0 && se == 0 && sc + sr + b.tr.graph.eager == steps,
              "%s: statistics %llu captures, %llu replays, %llu eager, %llu failures (%llu eager updates)", what,
              (unsigned long long)sc, (unsigned long long)sr, (unsigned long long)se, (unsigned long long)sf,
              (unsigned long long)b.tr.graph.eager);
    NGT_CHECK(fr > fc && ff == 0, "%s: F^-1 products %llu captures, %llu replays, %llu failures", what,
              (unsigned long long)fc, (unsigned long long)fr, (unsigned long long)ff);
    NGT_CHECK(orp > 0 && of == 0, "%s: objective %llu captures, %llu replays, %llu failures", what, (unsigned long long)oc,
              (unsigned long long)orp, (unsigned long long)of);
    NGT_CHECK(rec == gc + nf * sc, "%s: %llu all-reduces recorded, want %llu gradient captures + %llu x %llu statistics "
              "captures", what, rec, (unsigned long long)gc, nf, (unsigned long long)sc);
    if (same_as_rank0(&b, what) != NGT_PASS) return NGT_FAIL;
    printf("  %s, rank %d of %d: %llu updates: gradient %llu captured, %llu replayed, %llu eager; statistics %llu "
           "captured, %llu replayed; F^-1 products %llu/%llu; objective %llu/%llu; %llu all-reduces recorded; equal to "
           "eager (parameters, lambda, gamma, alpha, mu, rho, qmodel) and to rank 0\n", what, NC->rank, NC->world,
           (unsigned long long)steps, (unsigned long long)gc, (unsigned long long)gr, (unsigned long long)ge,
           (unsigned long long)sc, (unsigned long long)sr, (unsigned long long)fc, (unsigned long long)fr,
           (unsigned long long)oc, (unsigned long long)orp, rec);
    run_free(&a);
    run_free(&b);
    return NGT_PASS;
}

/* a conv net's extra state, bit for bit: batch norm's running averages (the gradient's forward pass
 * updates them: a replay must do so once, with the merged statistics) and truncated Newton's lambda,
 * rho, alpha, beta, solver iterations and stop, relative residual, HF's iterate and the evaluations
 * (its log_values' first 9 columns, as tests/test_graph.c; the rest are timings) */
static int has_bn_layer(const ng_model *m) {
    const ng_cnn_config *cfg = ng_cnn_config_of(m);
    int l;
    for (l = 0; l < cfg->n_layers; l++)
        if (cfg->layer[l].kind == NG_CNN_BN) return 1;
    return 0;
}
static int same_cnn_state(const char *what, run *a, run *b, uint64_t t) {
    static const char *const st[] = {"running_mean%d", "running_rstd%d"};
    double va[NG_TRAIN_MAX_COLUMNS], vb[NG_TRAIN_MAX_COLUMNS];
    int l, k, i, found = 0;
    for (l = 1; l <= ng_cnn_config_of(a->net)->n_layers; l++)
        for (k = 0; k < 2; k++) {
            char name[32];
            ng_tensor ta, tb;
            float ha[64], hb[64];
            snprintf(name, sizeof name, st[k], l);
            if (ng_model_statistic(a->net, name, &ta) != NG_OK) { /* not a batch-norm layer */
                ng_clear_error();
                continue;
            }
            NGT_OK(ng_model_statistic(b->net, name, &tb));
            found++;
            NGT_CHECK(ng_tensor_count(&ta) <= 64 && ng_tensor_count(&ta) == ng_tensor_count(&tb), "%s: %s of %zu floats",
                      what, name, ng_tensor_count(&ta));
            NGT_OK(ng_tensor_get(g_be, &ta, ha));
            NGT_OK(ng_tensor_get(g_be, &tb, hb));
            for (i = 0; i < (int)ng_tensor_count(&ta); i++)
                NGT_CHECK(memcmp(&ha[i], &hb[i], sizeof ha[i]) == 0, "%s, rank %d: after update %llu %s[%d] = %.9g eager, %.9g "
                          "in segments", what, NC->rank, (unsigned long long)t, name, i, (double)ha[i], (double)hb[i]);
        }
    NGT_CHECK(found == (has_bn_layer(a->net) ? 2 : 0), "%s: %d running averages found", what, found);
    NGT_OK(a->pc->iface->log_values(a->pc, va));
    NGT_OK(b->pc->iface->log_values(b->pc, vb));
    for (i = 0; i < 9; i++)
        NGT_CHECK(memcmp(&va[i], &vb[i], sizeof va[i]) == 0, "%s, rank %d: after update %llu tn column %d = %.17g eager, %.17g "
                  "in segments", what, NC->rank, (unsigned long long)t, i, va[i], vb[i]);
    return NGT_PASS;
}

/* the parameters, and a conv net's running averages and tn's columns */
static int same_seg_pr(const pair *pp, uint64_t t) {
    run *a = (run *)pp->a, *b = (run *)pp->b;
    if (same_params(pp->what, a, b, t) != NGT_PASS) return NGT_FAIL;
    return strcmp(a->net->iface->kind, "cnn") == 0 ? same_cnn_state(pp->what, a, b, t) : NGT_PASS;
}

static int seg_vs_eager(int kind, uint64_t steps, int log_every, int overlap) {
    run a, b;
    uint64_t gc, gr, ge, gf, pc, pr, pe, pf, cc, cr, ce, cf;
    unsigned long long rec0 = NC->captured, rec, per_grad = overlap ? 2u : 1u, per_prod = kind == K_NGD_SEPARATE ? 0u : 1u;
    char what[96];
    pair pp = {what, &a, &b, steps};
    snprintf(what, sizeof what, "%s, --comm-overlap %d", kind_name[kind], overlap);
    NGT_OK(run_init(&a, kind, NC, overlap));
    NGT_OK(run_init(&b, kind, NC, overlap));
    NGT_OK(ng_trainer_set_cuda_graph(&b.tr, 1));
    NGT_CHECK(b.tr.graph.seg == 1, "%s: not run in segments", what);
    if (step_both(&a.tr, &b.tr, 0, steps, log_every, same_seg_pr, &pp) != NGT_PASS) return NGT_FAIL;
    rec = NC->captured - rec0;
    ng_graph_seg_counts(&b.tr.graph.segs, "gradient", &gc, &gr, &ge, &gf);
    ng_graph_seg_counts(&b.tr.graph.segs, "tn curvature product", &pc, &pr, &pe, &pf);
    ng_graph_seg_counts(&b.tr.graph.segs, "cg step", &cc, &cr, &ce, &cf);
    NGT_CHECK(gr > 0 && gf == 0 && gc + gr + ge == steps, "%s: gradient %llu captures, %llu replays, %llu eager, %llu failures",
              what, (unsigned long long)gc, (unsigned long long)gr, (unsigned long long)ge, (unsigned long long)gf);
    NGT_CHECK(pr > pc && pf == 0, "%s: curvature products %llu captures, %llu replays, %llu failures", what,
              (unsigned long long)pc, (unsigned long long)pr, (unsigned long long)pf);
    if (kind == K_CNN_HF_BN) /* H v: CG checks each iteration's curvature on the host, its vector work stays eager */
        NGT_CHECK(cc + cr + cf == 0, "%s: cg step %llu captures, %llu replays, %llu failures (CG on H v reads each "
                  "iteration's curvature)", what, (unsigned long long)cc, (unsigned long long)cr, (unsigned long long)cf);
    else
        NGT_CHECK(cr > cc && cf == 0 && ce == 0, "%s: cg step %llu captures, %llu replays, %llu eager, %llu failures", what,
                  (unsigned long long)cc, (unsigned long long)cr, (unsigned long long)ce, (unsigned long long)cf);
    /* the all-reduces recorded: the gradient's (1, or 2 buckets) per gradient capture, one per product
     * capture; no other segment holds one (the objective's sums are reduced on the host) */
    if (has_bn(kind)) /* batch norm's merges in the gradient's, the products' (and objective's) segments besides */
        NGT_CHECK(rec > per_grad * gc + per_prod * pc, "%s: %llu all-reduces recorded, want more than %llu x %llu gradient "
                  "captures + %llu x %llu product captures", what, rec, per_grad, (unsigned long long)gc, per_prod,
                  (unsigned long long)pc);
    else
        NGT_CHECK(rec == per_grad * gc + per_prod * pc, "%s: %llu all-reduces recorded, want %llu x %llu gradient captures + "
                  "%llu x %llu product captures", what, rec, per_grad, (unsigned long long)gc, per_prod, (unsigned long long)pc);
    if (kind == K_HF || kind == K_NCG_L || kind == K_CNN_HF_BN || kind == K_CNN_NCG_BN) {
        uint64_t oc, orp, oe, of;
        ng_graph_seg_counts(&b.tr.graph.segs, "tn objective", &oc, &orp, &oe, &of);
        NGT_CHECK(orp > 0 && of == 0, "%s: tn objective %llu captures, %llu replays, %llu failures", what,
                  (unsigned long long)oc, (unsigned long long)orp, (unsigned long long)of);
        printf("  %s, rank %d: tn objective %llu captured, %llu replayed, %llu eager\n", what, NC->rank,
               (unsigned long long)oc, (unsigned long long)orp, (unsigned long long)oe);
    }
    if (same_as_rank0(&b, what) != NGT_PASS) return NGT_FAIL;
    printf("  %s, rank %d of %d: %llu updates: gradient %llu captured, %llu replayed, %llu eager; curvature products "
           "%llu captured, %llu replayed, %llu eager; cg step %llu/%llu; %llu all-reduces recorded; equal to eager and to "
           "rank 0\n", what, NC->rank, NC->world, (unsigned long long)steps, (unsigned long long)gc, (unsigned long long)gr,
           (unsigned long long)ge, (unsigned long long)pc, (unsigned long long)pr, (unsigned long long)pe,
           (unsigned long long)cc, (unsigned long long)cr, rec);
    run_free(&a);
    run_free(&b);
    return NGT_PASS;
}

static int ready(void) {
    if (!g_be) return ngt_skip(g_reason);
    return NGT_PASS;
}

static int test_seg_ranks_ngd(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return seg_vs_eager(K_NGD, 14, 5, 0);
}
static int test_seg_ranks_ngd_sampled(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return seg_vs_eager(K_NGD_SAMPLED, 12, 0, 0);
}
static int test_seg_ranks_hf(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return seg_vs_eager(K_HF, 12, 0, 0);
}
static int test_seg_ranks_ncg(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return seg_vs_eager(K_NCG_L, 10, 0, 0);
}
static int test_seg_ranks_kfac(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return kfac_seg_vs_eager(K_KFAC, 30, 7);
}
static int test_seg_ranks_kfac_tridiag(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return kfac_seg_vs_eager(K_KFAC_TRI, 30, 0);
}
static int test_seg_ranks_kfac_async(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return kfac_seg_vs_eager(K_KFAC_ASYNC, 30, 7);
}
/* a separate metric batch is whole on every rank: its products are not reduced (none recorded) */
static int test_seg_ranks_ngd_separate(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return seg_vs_eager(K_NGD_SEPARATE, 12, 0, 0);
}
/* synchronised batch norm (merged on the device between NCCL all-reduces) inside the gradient's and the
 * Gauss-Newton products' segments */
static int test_seg_ranks_ngd_bn(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return seg_vs_eager(K_NGD_BN, 12, 0, 0);
}
/* conv nets (cnn.c's pass state on several ranks): G v without batch norm (exactly the gradient's and the
 * products' all-reduces recorded), H v with batch norm (its seven per-channel means and the objective's
 * merges in the segments), the sampled Fisher with batch norm (targets drawn at this rank's global images) */
static int test_seg_ranks_cnn_ngd(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return seg_vs_eager(K_CNN_NGD, 10, 4, 0);
}
static int test_seg_ranks_cnn_hf_bn(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return seg_vs_eager(K_CNN_HF_BN, 10, 0, 0);
}
static int test_seg_ranks_cnn_sampled_bn(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return seg_vs_eager(K_CNN_SAMPLED_BN, 10, 0, 0);
}
static int test_seg_ranks_cnn_ncg_bn(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return seg_vs_eager(K_CNN_NCG_BN, 10, 0, 0);
}
/* the gradient's buckets (forked onto the communication stream during the backward pass) in its segment */
static int test_seg_ranks_overlap(void) {
    if (ready() != NGT_PASS) return NGT_SKIP;
    return seg_vs_eager(K_NGD, 12, 0, 1);
}

/* Device calls of one steady-state update on several ranks, eager and in segments (exact counts of the
 * emulated backend, as bench/launch_counts.sh counts one process): the curves autoencoder (L = 12)
 * with NGD (CG, 10 iterations) on global batches of 8 out of 16 cases, update 3 after 0 (eager) and
 * both batch buffers; the segment run makes fewer kernel launches and cuBLAS calls, launches graphs,
 * and ends with the eager run's parameters bit for bit. */
static ng_status counts_init(run *r, float *x, int ncases) {
    ng_net_config cfg;
    ng_sgd_config sc;
    ng_tn_config tc;
    memset(r, 0, sizeof *r);
    ng_net_config_default(&cfg);
    NG_TRY(ng_net_preset("curves-autoencoder", &cfg));
    cfg.init = NG_INIT_GAUSSIAN;
    cfg.init_scale = 0.05f;
    NG_TRY(ng_net_create(g_be, &cfg, &r->net));
    memset(&sc, 0, sizeof sc);
    sc.lr = 1.0f;
    NG_TRY(ng_update_sgd_init(g_be, r->net, &sc, &r->upd));
    ng_tn_config_default(&tc);
    tc.max_iter = 10;
    tc.rtol = 0.0;
    tc.lr = 0.5;
    NG_TRY(ng_precond_tn_init(g_be, r->net, &tc, NULL, 0, &r->pc));
    NG_TRY(ng_batches_init(&r->data, g_be, x, 784, ncases, 8, 3, NC->rank, NC->world));
    r->data_ready = 1;
    NG_TRY(ng_trainer_init(&r->tr, r->net, r->pc, r->upd, &r->data, 3, NULL));
    return ng_trainer_set_comm(&r->tr, NC);
}
static int step_counted(run *r, double *c) {
    ng_profile_config prc;
    ng_profile_row rows[96];
    int n, i, k;
    memset(&prc, 0, sizeof prc);
    prc.measure = 1;
    NGT_OK(ng_profile_start(g_be, &prc));
    ng_profile_update(r->tr.t + 1, 1);
    NGT_OK(ng_trainer_step(&r->tr, NULL));
    ng_profile_update(r->tr.t, 0);
    NGT_OK(ng_profile_finish());
    n = ng_profile_rows(rows, 96);
    for (i = 0; i < n && i < 96; i++)
        if (strcmp(rows[i].name, "train step") == 0) {
            for (k = 0; k < NG_DEV_COUNT; k++) c[k] = rows[i].device_calls[k];
            return NGT_PASS;
        }
    NGT_CHECK(0, "no train step row in the profile");
}
static int test_seg_ranks_counts(void) {
    enum { NX = 16 };
    run a, b;
    float *x;
    double c[2][NG_DEV_COUNT];
    int i, k;
    if (ready() != NGT_PASS) return NGT_SKIP;
    x = (float *)malloc(sizeof(float) * 784 * NX);
    NGT_CHECK(x != NULL, "out of memory");
    for (i = 0; i < 784 * NX; i++) x[i] = g_x[i % (DIM * NCASES)];
    NGT_OK(counts_init(&a, x, NX));
    NGT_OK(counts_init(&b, x, NX));
    NGT_OK(ng_trainer_set_cuda_graph(&b.tr, 1));
    for (k = 0; k < 3; k++) {
        NGT_OK(ng_trainer_step(&a.tr, NULL));
        NGT_OK(ng_trainer_step(&b.tr, NULL));
    }
    if (step_counted(&a, c[0]) != NGT_PASS || step_counted(&b, c[1]) != NGT_PASS) return NGT_FAIL;
    if (same_params("curves NGD, counted update", &a, &b, 3) != NGT_PASS) return NGT_FAIL;
    printf("  curves-autoencoder NGD (CG 10), global batch 8, rank %d of %d, update 3: eager %g kernels, %g cuBLAS, %g "
           "copies; segments %g kernels, %g cuBLAS, %g copies, %g graph launches\n", NC->rank, NC->world, c[0][NG_DEV_KERNEL],
           c[0][NG_DEV_BLAS], c[0][NG_DEV_COPY], c[1][NG_DEV_KERNEL], c[1][NG_DEV_BLAS], c[1][NG_DEV_COPY], c[1][NG_DEV_GRAPH]);
    NGT_CHECK(c[1][NG_DEV_GRAPH] > 0.0 && c[0][NG_DEV_GRAPH] == 0.0 && c[1][NG_DEV_KERNEL] < c[0][NG_DEV_KERNEL] &&
                  c[1][NG_DEV_BLAS] < c[0][NG_DEV_BLAS],
              "segments do not replace launches: %g / %g kernels, %g / %g cuBLAS, %g graphs", c[0][NG_DEV_KERNEL],
              c[1][NG_DEV_KERNEL], c[0][NG_DEV_BLAS], c[1][NG_DEV_BLAS], c[1][NG_DEV_GRAPH]);
    run_free(&a);
    run_free(&b);
    free(x);
    return NGT_PASS;
}

/* a refusal by ng_trainer_set_cuda_graph whose message contains want (same on every rank) */
static int refusal(ng_trainer *tr, const char *want) {
    ng_status s = ng_trainer_set_cuda_graph(tr, 1);
    NGT_CHECK(s == NG_ERR_UNSUPPORTED && strstr(ng_last_error(), want), "want NG_ERR_UNSUPPORTED naming '%s', got %d: %s",
              want, (int)s, ng_last_error());
    printf("  refused: %s\n", ng_last_error());
    ng_clear_error();
    return NGT_PASS;
}

static int test_seg_ranks_refusals(void) {
    run r;
    int ok;
    if (ready() != NGT_PASS) return NGT_SKIP;
    NGT_OK(run_init(&r, K_NGD, C, 0));
    ok = refusal(&r.tr, "needs the NCCL communicator");
    run_free(&r);
    if (ok != NGT_PASS) return NGT_FAIL;
    /* a conv net whose batch norm merges over MPI (host doubles) under a trainer on NCCL: its merges read
     * the host, so neither a whole step nor its segments are captured */
    NGT_OK(run_init(&r, K_CNN_HF_BN, NC, 0));
    NGT_OK(ng_cnn_set_dist(r.net, C, r.data.lo, r.data.batch));
    ok = refusal(&r.tr, "batch norm merges its statistics across the ranks through the host over MPI");
    run_free(&r);
    return ok;
}

/* the last rank drops its graphs of CG's vector work: it captures them where the others replay */
static int test_seg_ranks_diverged(void) {
    run a;
    uint64_t t;
    ng_status s;
    int i, id = -1;
    if (ready() != NGT_PASS) return NGT_SKIP;
    NGT_OK(run_init(&a, K_NGD, NC, 0));
    NGT_OK(ng_trainer_set_cuda_graph(&a.tr, 1));
    for (t = 0; t < 4; t++) NGT_OK(ng_trainer_step(&a.tr, NULL));
    for (i = 0; i < NG_GRAPH_SEG_NAMES; i++)
        if (a.tr.graph.segs.count[i].name && strcmp(a.tr.graph.segs.count[i].name, "cg step") == 0) id = i;
    NGT_CHECK(id >= 0 && a.tr.graph.segs.count[id].replays > 0, "no cg step replayed in 4 updates");
    if (NC->rank == NC->world - 1)
        for (i = 0; i < NG_GRAPH_SEG_SLOTS; i++)
            if (a.tr.graph.segs.slot[i].used && a.tr.graph.segs.slot[i].key[0] == (uint64_t)id) {
                if (a.tr.graph.segs.slot[i].exec) ng_graph_free(g_be, a.tr.graph.segs.slot[i].exec);
                a.tr.graph.segs.slot[i].exec = NULL;
                a.tr.graph.segs.slot[i].used = 0;
            }
    s = ng_trainer_step(&a.tr, NULL);
    NGT_CHECK(s == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "the ranks' graph segments diverged by update 4"),
              "want the divergence error, got %d: %s", (int)s, ng_last_error());
    printf("  rank %d: %s\n", NC->rank, ng_last_error());
    ng_clear_error();
    run_free(&a);
    return NGT_PASS;
}

int main(void) {
    uint64_t z = 0x9E3779B97F4A7C15ull;
    xorshift_fill(g_x, DIM * NCASES, &z);
    fill_images(g_cnn_x, CNN_N, CNN_ROWS, &z);
    if (ngt_ranks_open_nccl(&C, &g_be, &NC, g_reason, sizeof g_reason)) return 1;
    NGT_RUN(test_seg_ranks_ngd);
    NGT_RUN(test_seg_ranks_ngd_sampled);
    NGT_RUN(test_seg_ranks_hf);
    NGT_RUN(test_seg_ranks_ncg);
    NGT_RUN(test_seg_ranks_ngd_separate);
    NGT_RUN(test_seg_ranks_ngd_bn);
    NGT_RUN(test_seg_ranks_cnn_ngd);
    NGT_RUN(test_seg_ranks_cnn_hf_bn);
    NGT_RUN(test_seg_ranks_cnn_sampled_bn);
    NGT_RUN(test_seg_ranks_cnn_ncg_bn);
    NGT_RUN(test_seg_ranks_kfac);
    NGT_RUN(test_seg_ranks_kfac_tridiag);
    NGT_RUN(test_seg_ranks_kfac_async);
    NGT_RUN(test_seg_ranks_overlap);
    NGT_RUN(test_seg_ranks_counts);
    NGT_RUN(test_seg_ranks_refusals);
    NGT_RUN(test_seg_ranks_diverged);
    ng_comm_free(NC);
    ng_backend_free(g_be);
    ng_comm_free(C);
    return ngt_finish();
}
