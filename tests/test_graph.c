/* test_graph.c: launch overhead on the CUDA backend (run under the SIMT emulator, tests/simt; on
 * the CPU-only build every test skips).
 *   (a) device-call counts of the profile (natgrad/profile.h): one NAG update of a 3-layer network
 *       makes exactly the kernel launches, cuBLAS calls and copies that net.c / nag.c / cuda.c make
 *       (derived in the test), per range and per update;
 *   (b) CUDA graphs through the backend: captured work is not run until launched, host-mode
 *       scalars are captured by value (a replay uses the capture's alpha, not a later one), and
 *       calls that need the host (ng_get, a host-result nrm2) during a capture fail with the
 *       capture error, end the capture cleanly, and leave the backend usable;
 *   (c) the trainer's --cuda-graph path equals the eager path bit for bit after every update, for
 *       sgd (constant and decaying lr), nag (across the momentum change at update 250) and adam
 *       (new bias corrections every update), and sgd on growing batches (new shapes); the number of captures and
 *       replays is what the keys say; refusals (CPU backend, a rule without graph_key, a step that
 *       waits for the host) are errors naming the cause;
 *   (c') the RBM trainer's PCD-1, PCD-2 (decaying lr: a capture per update), CD-1 and PCD-1 on
 *       binarised batches (the draw at the device count's step) as graphs equal the eager ones bit
 *       for bit (parameters, persistent particles, Philox step), also after a resume from a
 *       checkpoint; models without graph_check are refused by name;
 *   (c'') the conv-net trainer (cnn.c) as graphs equals the eager one bit for bit (parameters, batch
 *       norm's running averages, the whitening state, the batch's objective and misclassification,
 *       the gradient count) with augmentation (the crops' Philox step counted on the device), batch
 *       norm, a whitening layer (re-whitened eagerly every T updates), sgd and nag, several chunks
 *       per batch, and a run resumed from a checkpoint into a graph trainer; a non-finite objective
 *       stops both at the same update with the same message (the graph's check after the replay);
 *   (c''') PRONG on dense networks (whitened and canonical forms; PRONG+ with batch norm) as graphs
 *       equals the eager trainer bit for bit across several reparametrisations (run eagerly, in
 *       place: the graphs captured before a reparametrisation replay after it);
 *   (c'''') the preconditioners inside the graph: the RBM with centering, FANG (refitting every 5
 *       updates: the refits run eagerly between replays) and the diagonal metric (energy, fisher),
 *       the network with diag (Fisher with sampled targets, empirical Fisher, phi mode) equal the
 *       eager runs bit for bit, parameters and the preconditioner's whole state, with the exact number
 *       of eager updates and replays > 0, also resumed from a checkpoint; the device calls of an RBM
 *       update with each and of a network update with diag (eager: derived from the code; graph:
 *       one graph launch and the upload);
 *   (d) the profile of a graph step: one graph launch and no kernel launch per steady-state update;
 *   (e) graph segments (natgrad/graph.h) for the trainers that read the host mid-update: a segment
 *       replays with the values baked at its capture, a segment whose capture fails (a host read)
 *       runs eagerly with its host state put back; NGD and HF (CG) and block-diagonal K-FAC (inverse
 *       refreshes and lambda adaptations inside the window) with --cuda-graph 1 equal the eager runs
 *       bit for bit after every update, with replays of the gradient, of every product segment and of
 *       CG's steps (two graphs, by the row parity); K-FAC with --kfac-async 2 too, with another
 *       thread's unsafe calls inside every captured gradient (thread-local captures: none fails);
 *       a trainer whose gradient reads the host runs that segment eagerly and still equals eager;
 *       K-FAC's sampled targets with the Philox step on the device equal those with the step by value;
 *       device calls per NGD / HF / K-FAC update of the curves autoencoder, eager and in segments. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "graph_run.h"
#include "natgrad/backend.h"
#include "natgrad/cnn.h"
#include "natgrad/comm.h"
#include "natgrad/data.h"
#include "natgrad/graph.h"
#include "natgrad/kfac.h"
#include "natgrad/net.h"
#include "natgrad/precond.h"
#include "natgrad/profile.h"
#include "natgrad/prong.h"
#include "natgrad/rbm.h"
#include "natgrad/tnewton.h"
#include "natgrad/recipes.h"
#include "natgrad/train.h"
#include "natgrad/update.h"

/* defined by tests/simt/simt_graph.cpp (graph launches and replayed nodes); NULL with the real cudart */
extern void simt_graph_counts(unsigned long long *launches, unsigned long long *nodes) __attribute__((weak));

static ng_backend *g_cuda;
typedef struct rbm_run { /* an RBM trainer (section (c')) */
    ng_rbm rbm;
    ng_rbm_trainer rt;
    int ready, rt_ready;
} rbm_run;
static ng_status rbm_run_init(rbm_run *r, ng_backend *be, int estimator, int k, float lr_gamma, int binarize);
static ng_status rbm_run_init_opt(rbm_run *r, ng_backend *be, int estimator, int k, float lr_gamma, int binarize,
                                  int optimizer, int diag_metric);
static void rbm_run_free(rbm_run *r);
static char g_reason[512];
/* a test of the CUDA backend: skipped with g_reason where there is none */
#define CUDA_TEST(name, call)                      \
    static int name(void) {                        \
        if (!g_cuda) return ngt_skip(g_reason);    \
        return call;                               \
    }

#define DIM 6
#define NCASES 10
#define BATCH 4 /* batches of 4, 4, 2 per epoch: a partial last batch */
static float g_x[DIM * NCASES];
#define CNN_N 10   /* conv-net cases trained on (batches of 4, 4, 2) */
#define CNN_NX 16  /* conv-net cases generated (the launch counts take batches of 8) */
#define CNN_ROWS (36 + 3)
static float g_cnn_x[CNN_ROWS * CNN_NX];

static const ng_profile_row *find_row(const ng_profile_row *rows, int n, const char *name) {
    int i;
    for (i = 0; i < n; i++)
        if (strcmp(rows[i].name, name) == 0) return &rows[i];
    return NULL;
}

enum { R_SGD, R_SGD_DECAY, R_NAG, R_ADAM };
static const char *const rule_name[] = {"sgd", "sgd (lr_gamma 3)", "nag", "adam"};

static int g_chunk; /* > 0: the network's chunk (cases per pass); 0: the default */

/* A 3-layer autoencoder 6-5-4-6 (logistic hidden units, Bernoulli loss) on the fixed data. */
static ng_status run_init(run *r, ng_backend *be, int rule) {
    ng_net_config cfg;
    ng_status s;
    memset(r, 0, sizeof *r);
    ae_config(&cfg);
    NG_TRY(ng_net_parse_spec("6-5-4-6", NG_ACT_LOGISTIC, NG_ACT_LOGISTIC, &cfg));
    if (g_chunk > 0) cfg.chunk = g_chunk;
    NG_TRY(ng_net_create(be, &cfg, &r->net));
    s = ae_update(be, r->net, rule == R_NAG ? AE_NAG : rule == R_ADAM ? AE_ADAM : AE_SGD, rule == R_SGD_DECAY ? 3.0f : 0.0f,
                  &r->upd);
    if (s == NG_OK) s = ng_precond_identity_init(be, &r->pc);
    if (s == NG_OK) s = ng_batches_init(&r->data, be, g_x, DIM, NCASES, BATCH, 5, 0, 1);
    if (s == NG_OK) r->data_ready = 1;
    if (s == NG_OK) s = ng_trainer_init(&r->tr, r->net, r->pc, r->upd, &r->data, 5, NULL);
    return s;
}

/* ---- (a) device-call counts of a NAG update ------------------------------------------------- */

static int test_counts_nag_step(void) {
    run r;
    ng_profile_config pc;
    ng_profile_row rows[64];
    const ng_profile_row *st, *gr, *up;
    int n;
    if (!g_cuda) return ngt_skip(g_reason);
    NGT_OK(run_init(&r, g_cuda, R_NAG));
    NGT_OK(ng_trainer_step(&r.tr, NULL)); /* update 0: first-use workspaces */
    memset(&pc, 0, sizeof pc);
    pc.measure = 1;
    NGT_OK(ng_profile_start(g_cuda, &pc));
    ng_profile_update(2, 1);
    NGT_OK(ng_trainer_step(&r.tr, NULL));
    ng_profile_update(2, 0);
    NGT_OK(ng_profile_finish());
    n = ng_profile_rows(rows, 64);
    if (n > 64) n = 64;
    st = find_row(rows, n, "train step");
    gr = find_row(rows, n, "model gradient");
    up = find_row(rows, n, "update step");
    NGT_CHECK(st && gr && up && st->calls == 1, "rows missing");
    /* What the code makes for L = 3 layers, one chunk, a batch of 4 (net.c, nag.c, cuda.c):
     *   forward (forward_fp): the input into A[0] with its row of ones (one act_forward kernel),
     *     then per layer one cuBLAS gemm (the bias folded in as a column of W) and one
     *     act_forward kernel                                           -> 3 gemm + 4 kernels
     *   loss (loss_chunk): one loss kernel that also sums objective and error over the batch
     *     (NG_OP_LOSS with acc: one block, no gemv)                    -> 1 kernel
     *   backward (backward_fp), l = 3, 2, 1: the weight-and-bias gradient as one gemm; for
     *     l > 1 the delta of the layer below: one gemm (back_in) and one act_backward kernel
     *                                                                  -> 5 gemm + 2 kernels
     *   the objective check (net_check_gradient): one device-to-host copy
     *   nag step: one fused momentum kernel (v, then phi twice), no averaging, no weight decay
     *   batch (ng_batches_next): one host-to-device upload */
    NGT_CHECK(gr->device_calls[NG_DEV_BLAS] == 8.0 && gr->device_calls[NG_DEV_KERNEL] == 7.0 &&
                  gr->device_calls[NG_DEV_COPY] == 1.0 && gr->device_calls[NG_DEV_SOLVER] == 0.0,
              "model gradient: %g kernels, %g cuBLAS, %g copies, %g cuSOLVER (want 7, 8, 1, 0)",
              gr->device_calls[NG_DEV_KERNEL], gr->device_calls[NG_DEV_BLAS], gr->device_calls[NG_DEV_COPY],
              gr->device_calls[NG_DEV_SOLVER]);
    NGT_CHECK(up->device_calls[NG_DEV_KERNEL] == 1.0 && up->device_calls[NG_DEV_BLAS] == 0.0,
              "update step: %g kernels, %g cuBLAS (want 1, 0)", up->device_calls[NG_DEV_KERNEL],
              up->device_calls[NG_DEV_BLAS]);
    NGT_CHECK(st->device_calls[NG_DEV_KERNEL] == 8.0 && st->device_calls[NG_DEV_BLAS] == 8.0 &&
                  st->device_calls[NG_DEV_COPY] == 2.0 && st->device_calls[NG_DEV_GRAPH] == 0.0,
              "train step: %g kernels, %g cuBLAS, %g copies, %g graphs (want 8, 8, 2, 0)",
              st->device_calls[NG_DEV_KERNEL], st->device_calls[NG_DEV_BLAS], st->device_calls[NG_DEV_COPY],
              st->device_calls[NG_DEV_GRAPH]);
    {
        char *text = NULL;
        NGT_OK(ng_profile_table(&text));
        NGT_CHECK(strstr(text, "kernels") && strstr(text, "per update on the device: 8.0 kernel launches, 8.0 cuBLAS calls"),
                  "table:\n%s", text);
        free(text);
    }
    run_free(&r);
    return NGT_PASS;
}

/* The same derivation for any depth L (logistic/linear layers, no batch norm, one chunk, NAG
 * without averaging or weight decay): kernels 2L + 2 (forward L + 1, loss with its sums 1,
 * backward L - 1, nag 1), cuBLAS 3L - 1 (forward L, backward 2L - 1), copies 2 (before the
 * fusions: 2L + 4 kernels, 3L + 1 cuBLAS: three axpby for nag, two gemv for the loss sums). Checked on the
 * curves autoencoder (L = 12, Hinton & Salakhutdinov's 784-400-200-100-50-25-6 and back), eager
 * and as a graph; NG_LAUNCH_COUNTS_CSV=path writes the counts (bench/launch_counts.sh). */
static int test_counts_curves(void) {
    ng_net_config cfg;
    ng_model *net = NULL;
    ng_update *upd = NULL;
    ng_precond *pc = NULL;
    ng_batches data;
    ng_trainer tr;
    ng_nag_config nc;
    ng_profile_config prc;
    ng_profile_row rows[64];
    const ng_profile_row *st;
    float *x;
    double eager[NG_DEV_COUNT], graph[NG_DEV_COUNT];
    unsigned long long gl0 = 0, gn0 = 0;
    int i, n, L, mode, k;
    const int m = 8, ncases = 16;
    const char *csv = getenv("NG_LAUNCH_COUNTS_CSV");
    if (!g_cuda) return ngt_skip(g_reason);
    ng_net_config_default(&cfg);
    NGT_OK(ng_net_preset("curves-autoencoder", &cfg));
    cfg.init = NG_INIT_GAUSSIAN;
    cfg.init_scale = 0.05f;
    L = cfg.n_layers;
    x = (float *)malloc(sizeof(float) * 784 * ncases);
    NGT_CHECK(x != NULL, "out of memory");
    for (i = 0; i < 784 * ncases; i++) x[i] = g_x[i % (DIM * NCASES)];
    for (mode = 0; mode < 2; mode++) {
        memset(&tr, 0, sizeof tr);
        NGT_OK(ng_net_create(g_cuda, &cfg, &net));
        ng_nag_config_default(&nc);
        nc.lr = 0.01f;
        NGT_OK(ng_update_nag_init(g_cuda, net, &nc, &upd));
        NGT_OK(ng_precond_identity_init(g_cuda, &pc));
        NGT_OK(ng_batches_init(&data, g_cuda, x, 784, ncases, m, 3, 0, 1));
        NGT_OK(ng_trainer_init(&tr, net, pc, upd, &data, 3, NULL));
        if (mode) NGT_OK(ng_trainer_set_cuda_graph(&tr, 1));
        for (k = 0; k < 3; k++) NGT_OK(ng_trainer_step(&tr, NULL)); /* update 0 eager, then both buffers captured */
        memset(&prc, 0, sizeof prc);
        prc.measure = 1;
        NGT_OK(ng_profile_start(g_cuda, &prc));
        if (simt_graph_counts) simt_graph_counts(&gl0, &gn0);
        ng_profile_update(4, 1);
        NGT_OK(ng_trainer_step(&tr, NULL));
        ng_profile_update(4, 0);
        if (simt_graph_counts && mode) {
            unsigned long long gl1, gn1;
            simt_graph_counts(&gl1, &gn1);
            /* the graph holds the eager update's kernels and cuBLAS calls, nothing else */
            NGT_CHECK(gl1 - gl0 == 1 && gn1 - gn0 == (unsigned long long)(5 * L + 1),
                      "graph update: %llu launches replaying %llu nodes (want 1, %d)", gl1 - gl0, gn1 - gn0, 5 * L + 1);
        }
        NGT_OK(ng_profile_finish());
        n = ng_profile_rows(rows, 64);
        if (n > 64) n = 64;
        st = find_row(rows, n, "train step");
        NGT_CHECK(st && st->calls == 1, "train step row");
        for (k = 0; k < NG_DEV_COUNT; k++) (mode ? graph : eager)[k] = st->device_calls[k];
        ng_trainer_release(&tr);
        ng_batches_free(&data);
        ng_update_free(upd);
        ng_precond_free(pc);
        ng_net_free(net);
    }
    free(x);
    NGT_CHECK(L == 12, "curves autoencoder: %d layers", L);
    NGT_CHECK(eager[NG_DEV_KERNEL] == 2.0 * L + 2 && eager[NG_DEV_BLAS] == 3.0 * L - 1 && eager[NG_DEV_COPY] == 2.0 &&
                  eager[NG_DEV_GRAPH] == 0.0 && eager[NG_DEV_SOLVER] == 0.0,
              "curves NAG update, eager: %g kernels, %g cuBLAS, %g copies (want %d, %d, 2)", eager[NG_DEV_KERNEL],
              eager[NG_DEV_BLAS], eager[NG_DEV_COPY], 2 * L + 2, 3 * L - 1);
    NGT_CHECK(graph[NG_DEV_KERNEL] == 0.0 && graph[NG_DEV_BLAS] == 0.0 && graph[NG_DEV_COPY] == 2.0 &&
                  graph[NG_DEV_GRAPH] == 1.0,
              "curves NAG update, graph: %g kernels, %g cuBLAS, %g copies, %g graphs (want 0, 0, 2, 1)",
              graph[NG_DEV_KERNEL], graph[NG_DEV_BLAS], graph[NG_DEV_COPY], graph[NG_DEV_GRAPH]);
    if (csv) {
        FILE *f = fopen(csv, "w");
        NGT_CHECK(f != NULL, "cannot write %s", csv);
        fprintf(f, "workload,mode,kernels,cublas,cusolver,copies,graph_launches,host_api_calls\n");
        for (mode = 0; mode < 2; mode++) {
            const double *c = mode ? graph : eager;
            fprintf(f, "curves-autoencoder NAG batch %d,%s,%g,%g,%g,%g,%g,%g\n", m, mode ? "cuda-graph" : "eager",
                    c[NG_DEV_KERNEL], c[NG_DEV_BLAS], c[NG_DEV_SOLVER], c[NG_DEV_COPY], c[NG_DEV_GRAPH],
                    c[NG_DEV_KERNEL] + c[NG_DEV_BLAS] + c[NG_DEV_SOLVER] + c[NG_DEV_COPY] + c[NG_DEV_GRAPH]);
        }
        fclose(f);
    }
    return NGT_PASS;
}

/* Weight decay on the 6 parameter tensors of the 3-layer network (W_l and b_l, all marked for decay
 * by net.c; sgd, weight_decay 1e-3): one NG_OP_AXPBY_SEGMENTS launch in the penalize range (one
 * axpby per tensor, 6, before), and the sgd step one fused momentum kernel. */
static int test_counts_weight_decay(void) {
    run r;
    ng_profile_config pc;
    ng_profile_row rows[64];
    const ng_profile_row *pe, *up;
    int n;
    if (!g_cuda) return ngt_skip(g_reason);
    NGT_OK(run_init(&r, g_cuda, R_SGD));
    NGT_OK(ng_trainer_step(&r.tr, NULL));
    memset(&pc, 0, sizeof pc);
    pc.measure = 1;
    NGT_OK(ng_profile_start(g_cuda, &pc));
    ng_profile_update(2, 1);
    NGT_OK(ng_trainer_step(&r.tr, NULL));
    ng_profile_update(2, 0);
    NGT_OK(ng_profile_finish());
    n = ng_profile_rows(rows, 64);
    if (n > 64) n = 64;
    pe = find_row(rows, n, "penalize");
    up = find_row(rows, n, "update step");
    NGT_CHECK(pe && up, "rows missing");
    NGT_CHECK(pe->device_calls[NG_DEV_KERNEL] == 1.0 && pe->device_calls[NG_DEV_BLAS] == 0.0,
              "penalize (6 decayed tensors): %g kernels, %g cuBLAS (want 1, 0)", pe->device_calls[NG_DEV_KERNEL],
              pe->device_calls[NG_DEV_BLAS]);
    NGT_CHECK(up->device_calls[NG_DEV_KERNEL] == 1.0, "sgd step: %g kernels (want 1)", up->device_calls[NG_DEV_KERNEL]);
    run_free(&r);
    return NGT_PASS;
}

/* ---- (a') device-call counts of an RBM update ---------------------------------------------------
 * One PCD-k update of the RBM trainer (rbm.c, update.c, sgd.c, cuda.c), SGD with weight decay on W
 * through the identity preconditioner:
 *   positive phase: one gemm on the batch in place, one Gibbs kernel (hd = p(h | vd));
 *   negative phase: k x (gemm, Gibbs kernel, gemm, Gibbs kernel), the first gemm reading the
 *     particles in place, vm copied back into the particles, one gemm and one Gibbs kernel (hm);
 *   statistics: two gemm (gW), four gemv (the means, sum_cols), two copies and two axpby (ga, gb);
 *   penalize: one axpby (W); sgd: one fused momentum kernel; the batch upload.
 * Kernels 2k + 6, cuBLAS 2k + 8, copies 4 (the first Gibbs kernel also advances nothing; the last
 * advances the device Philox count, no extra launch). As a graph: one graph launch and the batch
 * upload. Checked for k = 1 and 3; with NG_LAUNCH_COUNTS_CSV set, k = 1 is appended to the CSV. */
static int rbm_counts(int k, int graph, double *calls) {
    rbm_run r;
    ng_profile_config pc;
    ng_profile_row rows[64];
    const ng_profile_row *st;
    int n, u;
    NGT_OK(rbm_run_init(&r, g_cuda, NG_RBM_PCD, k, 0.0f, 0));
    if (graph) NGT_OK(ng_trainer_set_cuda_graph(&r.rt.tr, 1));
    for (u = 0; u < 4; u++) NGT_OK(ng_trainer_step(&r.rt.tr, NULL)); /* update 0 eager; batches 4, 4, 2, 4 */
    memset(&pc, 0, sizeof pc);
    pc.measure = 1;
    NGT_OK(ng_profile_start(g_cuda, &pc));
    ng_profile_update(5, 1);
    NGT_OK(ng_trainer_step(&r.rt.tr, NULL)); /* update 4: a full batch (a replay with graphs) */
    ng_profile_update(5, 0);
    NGT_OK(ng_profile_finish());
    n = ng_profile_rows(rows, 64);
    if (n > 64) n = 64;
    st = find_row(rows, n, "train step");
    NGT_CHECK(st && st->calls == 1, "train step row");
    for (u = 0; u < NG_DEV_COUNT; u++) calls[u] = st->device_calls[u];
    NGT_CHECK(!graph || r.rt.tr.graph.replays >= 1, "rbm update 4 was not a replay");
    rbm_run_free(&r);
    return NGT_PASS;
}

static int test_counts_rbm(void) {
    double e1[NG_DEV_COUNT], e3[NG_DEV_COUNT], g1[NG_DEV_COUNT];
    const char *csv = getenv("NG_LAUNCH_COUNTS_CSV");
    if (!g_cuda) return ngt_skip(g_reason);
    if (rbm_counts(1, 0, e1) != NGT_PASS || rbm_counts(3, 0, e3) != NGT_PASS || rbm_counts(1, 1, g1) != NGT_PASS)
        return NGT_FAIL;
    NGT_CHECK(e1[NG_DEV_KERNEL] == 8.0 && e1[NG_DEV_BLAS] == 10.0 && e1[NG_DEV_COPY] == 4.0 && e1[NG_DEV_GRAPH] == 0.0,
              "rbm PCD-1 update, eager: %g kernels, %g cuBLAS, %g copies (want 8, 10, 4)", e1[NG_DEV_KERNEL],
              e1[NG_DEV_BLAS], e1[NG_DEV_COPY]);
    NGT_CHECK(e3[NG_DEV_KERNEL] == 12.0 && e3[NG_DEV_BLAS] == 14.0 && e3[NG_DEV_COPY] == 4.0,
              "rbm PCD-3 update, eager: %g kernels, %g cuBLAS, %g copies (want 12, 14, 4)", e3[NG_DEV_KERNEL],
              e3[NG_DEV_BLAS], e3[NG_DEV_COPY]);
    NGT_CHECK(g1[NG_DEV_KERNEL] == 0.0 && g1[NG_DEV_BLAS] == 0.0 && g1[NG_DEV_COPY] == 1.0 && g1[NG_DEV_GRAPH] == 1.0,
              "rbm PCD-1 update, graph: %g kernels, %g cuBLAS, %g copies, %g graphs (want 0, 0, 1, 1)",
              g1[NG_DEV_KERNEL], g1[NG_DEV_BLAS], g1[NG_DEV_COPY], g1[NG_DEV_GRAPH]);
    if (csv) {
        FILE *f = fopen(csv, "a");
        int mode;
        NGT_CHECK(f != NULL, "cannot append to %s", csv);
        for (mode = 0; mode < 2; mode++) {
            const double *c = mode ? g1 : e1;
            fprintf(f, "rbm 6x5 PCD-1 SGD batch %d,%s,%g,%g,%g,%g,%g,%g\n", BATCH, mode ? "cuda-graph" : "eager",
                    c[NG_DEV_KERNEL], c[NG_DEV_BLAS], c[NG_DEV_SOLVER], c[NG_DEV_COPY], c[NG_DEV_GRAPH],
                    c[NG_DEV_KERNEL] + c[NG_DEV_BLAS] + c[NG_DEV_SOLVER] + c[NG_DEV_COPY] + c[NG_DEV_GRAPH]);
        }
        fclose(f);
    }
    return NGT_PASS;
}

/* ---- (a'') device-call counts of a conv-net update ------------------------------------------------
 * One SGD update (momentum, weight decay) of the conv net c<F>k3-relu-mp2-d3 on 1 x 6 x 6 images with
 * crops and mirrors, a batch of m images in one chunk (cnn.c, update.c, sgd.c, cuda.c):
 *   forward: the input copy (kernel), the augmentation (conv_gather kernel + a device copy back),
 *     conv (im2col kernel, two strided batched gemm: weights, bias), relu (kernel), max pooling
 *     (kernel), dense (two gemm), softmax (kernel);
 *   loss with its device sums (objective, misclassification): one kernel;
 *   backward: dense (gemm dW, gemv db, gemm dx), pooling and relu (a kernel each), conv (im2col
 *     kernel, one gemm per image for dW, two gemv for db; no dx below the first layer);
 *   penalize one kernel, sgd one fused kernel; the batch upload and the sums' read.
 * Kernels 12 (forward 6, loss 1, backward 3, update 2), cuBLAS m + 9 (forward 4, backward dense 3, conv
 * m + 2), copies 3 (the augmentation's copy, the batch, the read). As a graph: one
 * graph launch, the batch upload and the sums' read (the check after the graph). m = 4 and 8 are
 * checked (the per-image dW gemm is the term that grows with the chunk); with NG_LAUNCH_COUNTS_CSV
 * set, m = 8 is appended to the CSV. */
static int cnn_counts(int m, int graph, double *calls) {
    ng_cnn_config cfg;
    ng_model *net = NULL;
    ng_update *upd = NULL;
    ng_precond *pc = NULL;
    ng_batches data;
    ng_trainer tr;
    ng_sgd_config sc;
    ng_profile_config prc;
    ng_profile_row rows[64];
    const ng_profile_row *st;
    int n, u;
    memset(&tr, 0, sizeof tr);
    ng_cnn_config_default(&cfg);
    cfg.c = 1, cfg.h = 6, cfg.w = 6;
    NGT_OK(ng_cnn_parse_spec("c3k3-relu-mp2-d3", &cfg));
    cfg.chunk = 8;
    cfg.seed = 23;
    cfg.augment_pad = 1;
    cfg.augment_flip = 1;
    NGT_OK(ng_cnn_create(g_cuda, &cfg, &net));
    memset(&sc, 0, sizeof sc);
    sc.lr = 0.1f;
    sc.momentum = 0.9f;
    sc.weight_decay = 1e-3f;
    NGT_OK(ng_update_sgd_init(g_cuda, net, &sc, &upd));
    NGT_OK(ng_precond_identity_init(g_cuda, &pc));
    NGT_OK(ng_batches_init(&data, g_cuda, g_cnn_x, CNN_ROWS, 2 * m, m, 3, 0, 1)); /* 2 full batches per epoch */
    NGT_OK(ng_trainer_init(&tr, net, pc, upd, &data, 3, NULL));
    if (graph) NGT_OK(ng_trainer_set_cuda_graph(&tr, 1));
    for (u = 0; u < 3; u++) NGT_OK(ng_trainer_step(&tr, NULL)); /* update 0 eager, then both buffers captured */
    memset(&prc, 0, sizeof prc);
    prc.measure = 1;
    NGT_OK(ng_profile_start(g_cuda, &prc));
    ng_profile_update(4, 1);
    NGT_OK(ng_trainer_step(&tr, NULL)); /* update 3: a replay with graphs */
    ng_profile_update(4, 0);
    NGT_OK(ng_profile_finish());
    n = ng_profile_rows(rows, 64);
    if (n > 64) n = 64;
    st = find_row(rows, n, "train step");
    NGT_CHECK(st && st->calls == 1, "train step row");
    for (u = 0; u < NG_DEV_COUNT; u++) calls[u] = st->device_calls[u];
    NGT_CHECK(!graph || tr.graph.replays >= 1, "cnn update 3 was not a replay");
    ng_trainer_release(&tr);
    ng_batches_free(&data);
    ng_update_free(upd);
    ng_precond_free(pc);
    ng_cnn_free(net);
    return NGT_PASS;
}

static int test_counts_cnn(void) {
    double e4[NG_DEV_COUNT], e8[NG_DEV_COUNT], g8[NG_DEV_COUNT];
    const char *csv = getenv("NG_LAUNCH_COUNTS_CSV");
    if (!g_cuda) return ngt_skip(g_reason);
    if (cnn_counts(4, 0, e4) != NGT_PASS || cnn_counts(8, 0, e8) != NGT_PASS || cnn_counts(8, 1, g8) != NGT_PASS)
        return NGT_FAIL;
    NGT_CHECK(e4[NG_DEV_KERNEL] == 12.0 && e4[NG_DEV_BLAS] == 4.0 + 9.0 && e4[NG_DEV_COPY] == 3.0 && e4[NG_DEV_GRAPH] == 0.0,
              "cnn update, m = 4, eager: %g kernels, %g cuBLAS, %g copies (want 12, 13, 3)", e4[NG_DEV_KERNEL],
              e4[NG_DEV_BLAS], e4[NG_DEV_COPY]);
    NGT_CHECK(e8[NG_DEV_KERNEL] == 12.0 && e8[NG_DEV_BLAS] == 8.0 + 9.0 && e8[NG_DEV_COPY] == 3.0 && e8[NG_DEV_GRAPH] == 0.0,
              "cnn update, m = 8, eager: %g kernels, %g cuBLAS, %g copies (want 12, 17, 3)", e8[NG_DEV_KERNEL],
              e8[NG_DEV_BLAS], e8[NG_DEV_COPY]);
    NGT_CHECK(g8[NG_DEV_KERNEL] == 0.0 && g8[NG_DEV_BLAS] == 0.0 && g8[NG_DEV_COPY] == 2.0 && g8[NG_DEV_GRAPH] == 1.0,
              "cnn update, m = 8, graph: %g kernels, %g cuBLAS, %g copies, %g graphs (want 0, 0, 2, 1)", g8[NG_DEV_KERNEL],
              g8[NG_DEV_BLAS], g8[NG_DEV_COPY], g8[NG_DEV_GRAPH]);
    if (csv) {
        FILE *f = fopen(csv, "a");
        int mode;
        NGT_CHECK(f != NULL, "cannot append to %s", csv);
        for (mode = 0; mode < 2; mode++) {
            const double *c = mode ? g8 : e8;
            fprintf(f, "cnn c3k3-relu-mp2-d3 augmented SGD batch 8,%s,%g,%g,%g,%g,%g,%g\n", mode ? "cuda-graph" : "eager",
                    c[NG_DEV_KERNEL], c[NG_DEV_BLAS], c[NG_DEV_SOLVER], c[NG_DEV_COPY], c[NG_DEV_GRAPH],
                    c[NG_DEV_KERNEL] + c[NG_DEV_BLAS] + c[NG_DEV_SOLVER] + c[NG_DEV_COPY] + c[NG_DEV_GRAPH]);
        }
        fclose(f);
    }
    return NGT_PASS;
}

/* Device calls of one RBM update (PCD-1, SGD) with each captured preconditioner, eager and as a
 * graph, at update u (after u eager-or-graph updates): FANG refits every 5, so update 4 is a
 * steady-state update and update 5 a refit, which runs eagerly even with graphs on (its Cholesky
 * check and diagnostics read the host). A graph update is one graph launch and the batch upload,
 * whatever the preconditioner. With NG_LAUNCH_COUNTS_CSV set the rows are appended to the CSV. */
static int rbm_pc_counts(int optimizer, int metric, int graph, int u, double *calls) {
    rbm_run r;
    ng_profile_config pc;
    ng_profile_row rows[64];
    const ng_profile_row *st;
    int n, k;
    NGT_OK(rbm_run_init_opt(&r, g_cuda, NG_RBM_PCD, 1, 0.0f, 0, optimizer, metric));
    if (graph) NGT_OK(ng_trainer_set_cuda_graph(&r.rt.tr, 1));
    for (k = 0; k < u; k++) NGT_OK(ng_trainer_step(&r.rt.tr, NULL));
    memset(&pc, 0, sizeof pc);
    pc.measure = 1;
    NGT_OK(ng_profile_start(g_cuda, &pc));
    ng_profile_update((uint64_t)u + 1, 1);
    NGT_OK(ng_trainer_step(&r.rt.tr, NULL));
    ng_profile_update((uint64_t)u + 1, 0);
    NGT_OK(ng_profile_finish());
    n = ng_profile_rows(rows, 64);
    if (n > 64) n = 64;
    st = find_row(rows, n, "train step");
    NGT_CHECK(st && st->calls == 1, "train step row");
    for (k = 0; k < NG_DEV_COUNT; k++) calls[k] = st->device_calls[k];
    rbm_run_free(&r);
    return NGT_PASS;
}

static int test_counts_rbm_precond(void) {
    static const struct {
        const char *name;
        int optimizer, metric, u;
        double kernels, cublas, copies; /* eager, derived from precond.c / fang.c / diag.c (see below) */
    } w[] = {
        /* PCD-1 SGD: 8 kernels, 10 cuBLAS, 4 copies (test_counts_rbm), plus: */
        /* centering: observe 2 axpby; apply 2 rank-1 gemm + 2 gemv */
        {"centering", NG_RBM_OPT_CENTERING, NG_DIAG_ENERGY, 4, 10, 14, 4},
        /* FANG between refits (sum_cols / sum_rows are cuBLAS gemv against ones): statistics 1 bernoulli
         * kernel, 2 sum_cols + 2 syrk + 1 gemm, 2 device copies; direction 1 fang_residual kernel, 1 gemv
         * + 1 sum_rows + 1 sum_cols, 4 copies */
        {"fang", NG_RBM_OPT_FANG, NG_DIAG_ENERGY, 4, 10, 18, 10},
        /* diag energy: 2 squares, 1 gemm + 2 sum_cols; avg and wsum axpby, fill, axpby_dev, fill, pow, mul */
        {"diag energy", NG_RBM_OPT_DIAG, NG_DIAG_ENERGY, 4, 17, 13, 4},
    };
    const char *csv = getenv("NG_LAUNCH_COUNTS_CSV");
    FILE *f = NULL;
    size_t i;
    if (!g_cuda) return ngt_skip(g_reason);
    if (csv) NGT_CHECK((f = fopen(csv, "a")) != NULL, "cannot append to %s", csv);
    for (i = 0; i < sizeof w / sizeof w[0] + 1; i++) {
        const int refit = i == sizeof w / sizeof w[0]; /* last: FANG's refit update 5 */
        const int opt = refit ? NG_RBM_OPT_FANG : w[i].optimizer, metric = refit ? NG_DIAG_ENERGY : w[i].metric;
        const int u = refit ? 5 : w[i].u;
        double e[NG_DEV_COUNT], g[NG_DEV_COUNT];
        int mode;
        if (rbm_pc_counts(opt, metric, 0, u, e) != NGT_PASS || rbm_pc_counts(opt, metric, 1, u, g) != NGT_PASS)
            return NGT_FAIL;
        if (refit) {
            /* the refit update runs eagerly with graphs on too: the same calls */
            NGT_CHECK(memcmp(e, g, sizeof e) == 0 && g[NG_DEV_GRAPH] == 0.0 && e[NG_DEV_SOLVER] > 0.0,
                      "fang refit update: graph mode %g kernels, %g cuBLAS, %g cuSOLVER, %g graphs; eager %g, %g, %g",
                      g[NG_DEV_KERNEL], g[NG_DEV_BLAS], g[NG_DEV_SOLVER], g[NG_DEV_GRAPH], e[NG_DEV_KERNEL],
                      e[NG_DEV_BLAS], e[NG_DEV_SOLVER]);
        } else {
            NGT_CHECK(e[NG_DEV_KERNEL] == w[i].kernels && e[NG_DEV_BLAS] == w[i].cublas && e[NG_DEV_COPY] == w[i].copies &&
                          e[NG_DEV_SOLVER] == 0.0 && e[NG_DEV_GRAPH] == 0.0,
                      "rbm PCD-1 + %s, eager: %g kernels, %g cuBLAS, %g copies (want %g, %g, %g)", w[i].name,
                      e[NG_DEV_KERNEL], e[NG_DEV_BLAS], e[NG_DEV_COPY], w[i].kernels, w[i].cublas, w[i].copies);
            NGT_CHECK(g[NG_DEV_KERNEL] == 0.0 && g[NG_DEV_BLAS] == 0.0 && g[NG_DEV_COPY] == 1.0 && g[NG_DEV_GRAPH] == 1.0,
                      "rbm PCD-1 + %s, graph: %g kernels, %g cuBLAS, %g copies, %g graphs (want 0, 0, 1, 1)", w[i].name,
                      g[NG_DEV_KERNEL], g[NG_DEV_BLAS], g[NG_DEV_COPY], g[NG_DEV_GRAPH]);
        }
        printf("  rbm PCD-1 + %s, update %d: eager %g kernels, %g cuBLAS, %g cuSOLVER, %g copies; graph mode %g graph "
               "launches, %g kernels, %g copies\n", refit ? "fang (refit)" : w[i].name, u, e[NG_DEV_KERNEL],
               e[NG_DEV_BLAS], e[NG_DEV_SOLVER], e[NG_DEV_COPY], g[NG_DEV_GRAPH], g[NG_DEV_KERNEL], g[NG_DEV_COPY]);
        for (mode = 0; f && mode < 2; mode++) {
            const double *c = mode ? g : e;
            fprintf(f, "rbm 6x5 PCD-1 SGD + %s batch %d update %d,%s,%g,%g,%g,%g,%g,%g\n",
                    refit ? "fang (refit)" : w[i].name, BATCH, u, mode ? "cuda-graph" : "eager", c[NG_DEV_KERNEL],
                    c[NG_DEV_BLAS], c[NG_DEV_SOLVER], c[NG_DEV_COPY], c[NG_DEV_GRAPH],
                    c[NG_DEV_KERNEL] + c[NG_DEV_BLAS] + c[NG_DEV_SOLVER] + c[NG_DEV_COPY] + c[NG_DEV_GRAPH]);
        }
    }
    if (f) fclose(f);
    return NGT_PASS;
}

/* ---- (b) graphs through the backend ----------------------------------------------------------- */

static int test_backend_graph(void) {
    float *x = NULL, *y = NULL, h[8], res = 0.0f;
    void *exec = NULL;
    ng_status s;
    int i;
    if (!g_cuda) return ngt_skip(g_reason);
    NGT_CHECK(ng_graph_supported(g_cuda), "the CUDA backend must have graph slots");
    NGT_OK(ng_alloc(g_cuda, 8 * sizeof(float), (void **)&x));
    NGT_OK(ng_alloc(g_cuda, 8 * sizeof(float), (void **)&y));
    NGT_OK(ng_fill(g_cuda, 8, 1.0f, x));
    NGT_OK(ng_fill(g_cuda, 8, 0.0f, y));
    /* capture y += 2 x; nothing runs before the launch */
    NGT_OK(ng_graph_begin(g_cuda));
    NGT_OK(ng_axpby(g_cuda, 8, 2.0f, x, 1.0f, y));
    NGT_OK(ng_graph_end(g_cuda, &exec));
    NGT_OK(ng_get(g_cuda, h, y, sizeof h));
    NGT_CHECK(h[0] == 0.0f, "captured work ran before the launch: y[0] = %g", (double)h[0]);
    /* replays use the captured alpha (2), whatever the host does in between */
    NGT_OK(ng_graph_launch(g_cuda, exec));
    NGT_OK(ng_graph_launch(g_cuda, exec));
    NGT_OK(ng_get(g_cuda, h, y, sizeof h));
    for (i = 0; i < 8; i++) NGT_CHECK(h[i] == 4.0f, "after two replays y[%d] = %g (want 4)", i, (double)h[i]);
    /* a changed input is read at replay (device memory), a changed scalar is not */
    NGT_OK(ng_fill(g_cuda, 8, 10.0f, x));
    NGT_OK(ng_graph_launch(g_cuda, exec));
    NGT_OK(ng_get(g_cuda, h, y, sizeof h));
    NGT_CHECK(h[3] == 24.0f, "replay with new x: y[3] = %g (want 4 + 2 * 10)", (double)h[3]);
    ng_graph_free(g_cuda, exec);
    exec = NULL;
    /* a host read during capture: the capture error, the capture ended, the backend usable */
    NGT_OK(ng_graph_begin(g_cuda));
    s = ng_get(g_cuda, h, y, sizeof h);
    {
        char msg[512];
        ng_status e;
        snprintf(msg, sizeof msg, "%s", ng_last_error());
        e = ng_graph_end(g_cuda, &exec); /* leave capture mode before any check can return */
        NGT_CHECK(s == NG_ERR_BACKEND && strstr(msg, "capturing"), "ng_get during capture: %s %s", ng_status_name(s), msg);
        s = e;
    }
    NGT_CHECK(s == NG_ERR_BACKEND && exec == NULL && strstr(ng_last_error(), "cudaErrorStreamCaptureInvalidated"),
              "ending an invalidated capture: %s %s", ng_status_name(s), ng_last_error());
    /* a reduction to the host during capture */
    NGT_OK(ng_graph_begin(g_cuda));
    s = ng_nrm2(g_cuda, 8, x, &res);
    NGT_CHECK(s != NG_OK, "nrm2 to the host during capture succeeded");
    s = ng_graph_end(g_cuda, &exec);
    NGT_CHECK(s != NG_OK && exec == NULL, "capture with a host reduction instantiated");
    /* launch-free use afterwards */
    NGT_OK(ng_fill(g_cuda, 8, 3.0f, y));
    NGT_OK(ng_get(g_cuda, h, y, sizeof h));
    NGT_CHECK(h[7] == 3.0f, "backend after failed captures: y[7] = %g", (double)h[7]);
    NGT_OK(ng_nrm2(g_cuda, 8, y, &res));
    NGT_CHECK(fabsf(res - 3.0f * sqrtf(8.0f)) < 1e-5f, "nrm2 after failed captures: %g", (double)res);
    ng_free(g_cuda, x);
    ng_free(g_cuda, y);
    return NGT_PASS;
}

/* ---- (c) trainer: graph == eager, bit for bit ----------------------------------------------- */

/* every update of the graph trainer b was a capture, a replay or an eager one */
static int counts_add_up(const char *what, const ng_trainer *b, uint64_t steps) {
    NGT_CHECK(b->graph.captures + b->graph.replays + b->graph.eager == steps, "%s: %llu + %llu + %llu != %llu", what,
              (unsigned long long)b->graph.captures, (unsigned long long)b->graph.replays,
              (unsigned long long)b->graph.eager, (unsigned long long)steps);
    return NGT_PASS;
}

/* a file of this process in $TMPDIR (or /tmp): natgrad_graph_<tag>_<pid>.ckpt */
static void tmp_ckpt(char *path, size_t n, const char *tag) {
    const char *tmp = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(path, n, "%s/natgrad_graph_%s_%d.ckpt", tmp, tag, (int)getpid());
}

/* the checkpoint at path (everything) into tr, then the file removed */
static int load_ckpt(ng_trainer *tr, const char *path) {
    ng_ckpt *ck = NULL;
    NGT_OK(ng_ckpt_read(path, NG_CKPT_READ_ALL, &ck));
    NGT_OK(ng_trainer_load(tr, ck, NG_SAVE_ALL));
    ng_ckpt_free(ck);
    remove(path);
    return NGT_PASS;
}

static int same_params(const char *what, run *a, run *b, uint64_t t) { return same_params_on(g_cuda, what, a, b, t); }
static int same_params_pr(const pair *pr, uint64_t t) { return same_params(pr->what, (run *)pr->a, (run *)pr->b, t); }
/* the first 12 updates, every 50th and the last */
static int same_params_some(const pair *pr, uint64_t t) {
    return t < 12 || t % 50 == 0 || t + 1 == pr->steps ? same_params_pr(pr, t) : NGT_PASS;
}

static int graph_vs_eager(int rule, uint64_t steps, int log_every, int growing) {
    run a, b;
    pair pr = {rule_name[rule], &a, &b, steps};
    ng_comm *comm = NULL;
    NGT_OK(run_init(&a, g_cuda, rule));
    NGT_OK(run_init(&b, g_cuda, rule));
    /* both with the single-rank communicator every command attaches (a no-op reduction) */
    NGT_OK(ng_comm_init(&comm, 60.0));
    NGT_CHECK(comm->world == 1, "test run under a launcher with %d ranks", comm->world);
    NGT_OK(ng_trainer_set_comm(&a.tr, comm));
    NGT_OK(ng_trainer_set_comm(&b.tr, comm));
    if (growing) { /* K-FAC's growing batches: 1, 2, 3 ... up to 4 by update 6 (new shapes) */
        a.tr.sched_m1 = b.tr.sched_m1 = 1;
        a.tr.sched_full = b.tr.sched_full = 6;
    }
    NGT_OK(ng_trainer_set_cuda_graph(&b.tr, 1));
    if (step_both(&a.tr, &b.tr, 0, steps, log_every, same_params_some, &pr) != NGT_PASS) return NGT_FAIL;
    if (counts_add_up(rule_name[rule], &b.tr, steps) != NGT_PASS) return NGT_FAIL;
    if (growing) {
        /* 4 batch sizes (1 .. 4) before the batch is full: each a new key, then the 2 buffers */
        NGT_CHECK(b.tr.graph.captures >= 4 && b.tr.graph.captures <= 8 && b.tr.graph.replays > 0,
                  "%s, growing batch: %llu captures, %llu replays", rule_name[rule],
                  (unsigned long long)b.tr.graph.captures, (unsigned long long)b.tr.graph.replays);
    } else if (rule == R_SGD_DECAY) {
        /* a new per-update scalar every update: every graph update is a capture */
        NGT_CHECK(b.tr.graph.replays == 0 && b.tr.graph.captures == steps - b.tr.graph.eager,
                  "%s: %llu captures, %llu replays", rule_name[rule], (unsigned long long)b.tr.graph.captures,
                  (unsigned long long)b.tr.graph.replays);
    } else {
        /* keys: 2 batch buffers x {4, 2} columns (partial batch) per scalar regime */
        NGT_CHECK(b.tr.graph.captures >= 2 && b.tr.graph.captures <= 8 && b.tr.graph.replays > b.tr.graph.captures,
                  "%s: %llu captures, %llu replays", rule_name[rule], (unsigned long long)b.tr.graph.captures,
                  (unsigned long long)b.tr.graph.replays);
    }
    printf("  %s: %llu updates: %llu captured, %llu replayed, %llu eager; parameters identical\n", rule_name[rule],
           (unsigned long long)steps, (unsigned long long)b.tr.graph.captures, (unsigned long long)b.tr.graph.replays,
           (unsigned long long)b.tr.graph.eager);
    run_free(&a);
    run_free(&b);
    ng_comm_free(comm);
    return NGT_PASS;
}

CUDA_TEST(test_graph_sgd, graph_vs_eager(R_SGD, 30, 7, 0))
CUDA_TEST(test_graph_sgd_decaying_lr, graph_vs_eager(R_SGD_DECAY, 12, 0, 0))
/* mu_t changes at update 250 */
CUDA_TEST(test_graph_nag_momentum_change, graph_vs_eager(R_NAG, 256, 100, 0))
CUDA_TEST(test_graph_sgd_growing_batch, graph_vs_eager(R_SGD, 20, 0, 1))
/* the step count on the device: one capture per batch shape */
CUDA_TEST(test_graph_adam, graph_vs_eager(R_ADAM, 60, 7, 0))

/* ---- (c') the RBM trainer: PCD / CD steps as graphs == eager, bit for bit ------------------------
 * A 6-visible, 5-hidden RBM on the fixed data (pixels in [0, 1)), SGD through the identity
 * preconditioner. The Gibbs kernels read their Philox step from the device count (rbm.c), so a
 * replay draws new samples; after every update the parameters, the persistent particles and the
 * host's Philox step must equal the eager run's. Logged updates run eagerly in between (the
 * monitor draws with its own host-indexed stream). */

/* with the preconditioner of `optimizer` (section (c'')): centering at rate 0.1, FANG refitting
 * every 5 updates (tau 10), the diagonal metric `diag_metric` */
static ng_status rbm_run_init_opt(rbm_run *r, ng_backend *be, int estimator, int k, float lr_gamma, int binarize,
                                  int optimizer, int diag_metric) {
    ng_rbm_config cfg;
    float mean[DIM];
    int i;
    memset(r, 0, sizeof *r);
    ng_rbm_config_default(&cfg);
    cfg.batch = BATCH;
    cfg.particles = 3;
    cfg.k = k;
    cfg.estimator = estimator;
    cfg.optimizer = (ng_rbm_optimizer)optimizer;
    cfg.center_rate = 0.1f;
    cfg.fang_refit_every = 5;
    cfg.fang_tau = 10.0f;
    cfg.diag_metric = diag_metric;
    cfg.lr = 0.1f;
    cfg.lr_gamma = lr_gamma;
    cfg.momentum = 0.5f;
    cfg.weight_decay = 1e-3f;
    cfg.binarize_train = binarize;
    cfg.seed = 23;
    for (i = 0; i < DIM; i++) mean[i] = 0.5f;
    NG_TRY(ng_rbm_init(be, DIM, 5, &r->rbm));
    r->ready = 1;
    NG_TRY(ng_rbm_init_params(&r->rbm, 3, 0.1f, mean));
    NG_TRY(ng_rbm_trainer_init(&r->rt, &r->rbm, &cfg, g_x, NCASES, NULL));
    r->rt_ready = 1;
    return NG_OK;
}

static ng_status rbm_run_init(rbm_run *r, ng_backend *be, int estimator, int k, float lr_gamma, int binarize) {
    return rbm_run_init_opt(r, be, estimator, k, lr_gamma, binarize, NG_RBM_OPT_SGD, NG_DIAG_ENERGY);
}

static void rbm_run_free(rbm_run *r) {
    if (r->rt_ready) ng_rbm_trainer_free(&r->rt);
    if (r->ready) ng_rbm_free(&r->rbm);
    memset(r, 0, sizeof *r);
}

static int same_rbm(const char *what, rbm_run *a, rbm_run *b, uint64_t t) {
    ng_model *ma = ng_rbm_model(&a->rbm), *mb = ng_rbm_model(&b->rbm);
    size_t n = ng_model_size(ma);
    ng_tensor pa, pb;
    float *ha = NULL, *hb = NULL;
    size_t np;
    int ok;
    NGT_OK(ng_model_statistic(ma, "particles", &pa));
    NGT_OK(ng_model_statistic(mb, "particles", &pb));
    np = ng_tensor_count(&pa);
    ha = (float *)malloc((n + np) * sizeof(float));
    hb = (float *)malloc((n + np) * sizeof(float));
    NGT_CHECK(ha && hb, "out of memory");
    NGT_OK(ng_tensor_get(g_cuda, &ma->param_flat, ha));
    NGT_OK(ng_tensor_get(g_cuda, &mb->param_flat, hb));
    NGT_OK(ng_tensor_get(g_cuda, &pa, ha + n));
    NGT_OK(ng_tensor_get(g_cuda, &pb, hb + n));
    ok = memcmp(ha, hb, (n + np) * sizeof(float)) == 0;
    if (!ok) {
        size_t i;
        for (i = 0; i < n + np && ha[i] == hb[i]; i++) {
        }
        printf("  %s: after update %llu %s %zu is %.9g eager, %.9g graph\n", what, (unsigned long long)t,
               i < n ? "parameter" : "particle entry", i < n ? i : i - n, (double)ha[i], (double)hb[i]);
    }
    free(ha);
    free(hb);
    NGT_CHECK(ok, "%s: update %llu differs", what, (unsigned long long)t);
    NGT_CHECK(ng_rbm_rng_step(&a->rbm) == ng_rbm_rng_step(&b->rbm), "%s: Philox step %llu eager, %llu graph after update %llu",
              what, (unsigned long long)ng_rbm_rng_step(&a->rbm), (unsigned long long)ng_rbm_rng_step(&b->rbm),
              (unsigned long long)t);
    return NGT_PASS;
}
static int same_rbm_pr(const pair *pr, uint64_t t) { return same_rbm(pr->what, (rbm_run *)pr->a, (rbm_run *)pr->b, t); }

static int rbm_graph_vs_eager(const char *what, int estimator, int k, float lr_gamma, uint64_t steps, int log_every,
                              int binarize) {
    rbm_run a, b;
    pair pr = {what, &a, &b, steps};
    NGT_OK(rbm_run_init(&a, g_cuda, estimator, k, lr_gamma, binarize));
    NGT_OK(rbm_run_init(&b, g_cuda, estimator, k, lr_gamma, binarize));
    NGT_OK(ng_trainer_set_cuda_graph(&b.rt.tr, 1));
    if (step_both(&a.rt.tr, &b.rt.tr, 0, steps, log_every, same_rbm_pr, &pr) != NGT_PASS) return NGT_FAIL;
    NGT_CHECK(ng_rbm_rng_step(&a.rbm) > 0, "%s: no Philox steps taken", what);
    if (lr_gamma > 0.0f)
        NGT_CHECK(b.rt.tr.graph.replays == 0 && b.rt.tr.graph.captures == steps - b.rt.tr.graph.eager,
                  "%s: %llu captures, %llu replays (a new lr every update)", what,
                  (unsigned long long)b.rt.tr.graph.captures, (unsigned long long)b.rt.tr.graph.replays);
    else
        NGT_CHECK(b.rt.tr.graph.captures >= 2 && b.rt.tr.graph.captures <= 6 && b.rt.tr.graph.replays > 2 * b.rt.tr.graph.captures,
                  "%s: %llu captures, %llu replays", what, (unsigned long long)b.rt.tr.graph.captures,
                  (unsigned long long)b.rt.tr.graph.replays);
    printf("  %s: %llu updates: %llu captured, %llu replayed, %llu eager; parameters, particles and Philox step identical\n",
           what, (unsigned long long)steps, (unsigned long long)b.rt.tr.graph.captures,
           (unsigned long long)b.rt.tr.graph.replays, (unsigned long long)b.rt.tr.graph.eager);
    rbm_run_free(&a);
    rbm_run_free(&b);
    return NGT_PASS;
}

CUDA_TEST(test_graph_rbm_pcd, rbm_graph_vs_eager("rbm pcd-1", NG_RBM_PCD, 1, 0.0f, 40, 9, 0))
CUDA_TEST(test_graph_rbm_pcd2_decaying_lr, rbm_graph_vs_eager("rbm pcd-2 (lr_gamma 5)", NG_RBM_PCD, 2, 5.0f, 10, 0, 0))
CUDA_TEST(test_graph_rbm_cd, rbm_graph_vs_eager("rbm cd-1", NG_RBM_CD, 1, 0.0f, 25, 0, 0))
/* binarised batches: their Bernoulli draw reads its step from the device count too */
CUDA_TEST(test_graph_rbm_binarize, rbm_graph_vs_eager("rbm pcd-1, --binarize-train", NG_RBM_PCD, 1, 0.0f, 30, 7, 1))

/* A resumed RBM run continues as a graph from the checkpoint's Philox step: train 7 updates
 * eagerly, save, load into a fresh trainer with graphs on, continue to 30 and compare with an
 * uninterrupted eager run. */
static int test_graph_rbm_resume(void) {
    rbm_run a, b, c;
    pair pr = {"rbm pcd-1 resumed", &a, &c, 30};
    char path[256];
    if (!g_cuda) return ngt_skip(g_reason);
    tmp_ckpt(path, sizeof path, "rbm");
    NGT_OK(rbm_run_init(&a, g_cuda, NG_RBM_PCD, 1, 0.0f, 0));
    NGT_OK(rbm_run_init(&b, g_cuda, NG_RBM_PCD, 1, 0.0f, 0));
    if (step_both(&a.rt.tr, &b.rt.tr, 0, 7, 0, NULL, NULL) != NGT_PASS) return NGT_FAIL;
    NGT_OK(ng_trainer_save(&b.rt.tr, path, NG_SAVE_ALL));
    rbm_run_free(&b);
    NGT_OK(rbm_run_init(&c, g_cuda, NG_RBM_PCD, 1, 0.0f, 0));
    if (load_ckpt(&c.rt.tr, path) != NGT_PASS) return NGT_FAIL;
    NGT_OK(ng_trainer_set_cuda_graph(&c.rt.tr, 1));
    if (step_both(&a.rt.tr, &c.rt.tr, 7, 30, 0, same_rbm_pr, &pr) != NGT_PASS) return NGT_FAIL;
    NGT_CHECK(c.rt.tr.graph.replays > 0, "resumed run: no replays");
    rbm_run_free(&a);
    rbm_run_free(&c);
    return NGT_PASS;
}

/* ---- (c'') the conv-net trainer: graph == eager, bit for bit ----------------------------------
 * 1 x 6 x 6 images of 3 classes (pixels from the fixed generator, a one-hot label per case), 10
 * cases in batches of 4, 4, 2, chunks of 3 images (so a batch is 2 chunks: the device sums of the
 * objective and misclassification accumulate over chunks, the last chunk's augmentation advances
 * the device step). After every update: parameters, the state arena (running batch-norm statistics,
 * whitening U^T and mu) through the model's statistics, the gradient count, and the batch's
 * objective and misclassification (read from the device sums the graph wrote) must equal the eager
 * run's. Logged updates run eagerly in between. */

enum { CNN_AUG, CNN_BN, CNN_WHITEN };
static const char *const cnn_spec[] = {"c3k3-relu-mp2-d3", "c3k3-bn-relu-mp2-d3", "c4k3-relu-w-c3k3p0-relu-d3"};

static ng_status cnn_run_init(cnn_run *r, int kind, int nag) {
    ng_cnn_config cfg;
    ng_status s;
    memset(r, 0, sizeof *r);
    ng_cnn_config_default(&cfg);
    cfg.c = 1, cfg.h = 6, cfg.w = 6;
    NG_TRY(ng_cnn_parse_spec(cnn_spec[kind], &cfg));
    cfg.chunk = 3;
    cfg.seed = 23;
    cfg.augment_pad = 1;
    cfg.augment_flip = 1;
    if (kind == CNN_WHITEN) {
        cfg.whiten_every = 5; /* updates 0, 5, 10, ... re-whiten (eagerly) */
        cfg.whiten_samples = 4;
    }
    NG_TRY(ng_cnn_create(g_cuda, &cfg, &r->m));
    if (nag) {
        ng_nag_config c;
        ng_nag_config_default(&c);
        c.lr = 0.05f;
        c.weight_decay = 1e-3f;
        s = ng_update_nag_init(g_cuda, r->m, &c, &r->upd);
    } else {
        ng_sgd_config c;
        memset(&c, 0, sizeof c);
        c.lr = 0.1f;
        c.momentum = 0.9f;
        c.weight_decay = 1e-3f;
        s = ng_update_sgd_init(g_cuda, r->m, &c, &r->upd);
    }
    if (s == NG_OK) s = ng_precond_identity_init(g_cuda, &r->pc);
    if (s == NG_OK) s = ng_batches_init(&r->data, g_cuda, g_cnn_x, CNN_ROWS, CNN_N, 4, 5, 0, 1);
    if (s == NG_OK) r->data_ready = 1;
    if (s == NG_OK) s = ng_trainer_init(&r->tr, r->m, r->pc, r->upd, &r->data, 5, NULL);
    return s;
}

/* parameters, then every state tensor the model names (running averages, whitening), bit for bit */
static int same_cnn(const char *what, cnn_run *a, cnn_run *b, uint64_t t) {
    static const char *const state[] = {"running_mean%d", "running_rstd%d", "whiten_UT%d", "whiten_mu%d"};
    const ng_cnn_config *cfg = ng_cnn_config_of(a->m);
    size_t n = ng_model_size(a->m);
    float *pa = (float *)malloc(n * sizeof(float)), *pb = (float *)malloc(n * sizeof(float));
    double oa, ma, ob, mb;
    int ok, l, k;
    NGT_CHECK(pa && pb, "out of memory");
    NGT_OK(ng_tensor_get(g_cuda, &a->m->param_flat, pa));
    NGT_OK(ng_tensor_get(g_cuda, &b->m->param_flat, pb));
    ok = memcmp(pa, pb, n * sizeof(float)) == 0;
    if (!ok) {
        size_t i;
        for (i = 0; i < n && pa[i] == pb[i]; i++) {
        }
        printf("  %s: after update %llu parameter %zu is %.9g eager, %.9g graph\n", what, (unsigned long long)t, i,
               (double)pa[i], (double)pb[i]);
    }
    free(pa);
    free(pb);
    NGT_CHECK(ok, "%s: parameters differ after update %llu", what, (unsigned long long)t);
    for (l = 1; l <= cfg->n_layers; l++)
        for (k = 0; k < 4; k++) {
            char name[32];
            ng_tensor ta, tb;
            size_t c;
            float *ha, *hb;
            snprintf(name, sizeof name, state[k], l);
            if (ng_model_statistic(a->m, name, &ta) != NG_OK) continue; /* layer l holds no such state */
            NGT_OK(ng_model_statistic(b->m, name, &tb));
            c = ng_tensor_count(&ta);
            ha = (float *)malloc(c * sizeof(float));
            hb = (float *)malloc(c * sizeof(float));
            NGT_CHECK(ha && hb, "out of memory");
            NGT_OK(ng_tensor_get(g_cuda, &ta, ha));
            NGT_OK(ng_tensor_get(g_cuda, &tb, hb));
            ok = memcmp(ha, hb, c * sizeof(float)) == 0;
            free(ha);
            free(hb);
            NGT_CHECK(ok, "%s: %s differs after update %llu", what, name, (unsigned long long)t);
        }
    NGT_CHECK(ng_cnn_gradients(a->m) == ng_cnn_gradients(b->m), "%s: %llu gradients eager, %llu graph", what,
              (unsigned long long)ng_cnn_gradients(a->m), (unsigned long long)ng_cnn_gradients(b->m));
    NGT_OK(ng_cnn_batch_loss(a->m, &oa, &ma));
    NGT_OK(ng_cnn_batch_loss(b->m, &ob, &mb));
    NGT_CHECK(oa == ob && ma == mb && isfinite(oa), "%s: update %llu: batch objective %.9g / misclassification %g eager, %.9g / %g graph",
              what, (unsigned long long)t, oa, ma, ob, mb);
    return NGT_PASS;
}
static int same_cnn_pr(const pair *pr, uint64_t t) { return same_cnn(pr->what, (cnn_run *)pr->a, (cnn_run *)pr->b, t); }

static int cnn_graph_vs_eager(const char *what, int kind, int nag, uint64_t steps, int log_every) {
    cnn_run a, b;
    pair pr = {what, &a, &b, steps};
    NGT_OK(cnn_run_init(&a, kind, nag));
    NGT_OK(cnn_run_init(&b, kind, nag));
    NGT_OK(ng_trainer_set_cuda_graph(&b.tr, 1));
    if (step_both(&a.tr, &b.tr, 0, steps, log_every, same_cnn_pr, &pr) != NGT_PASS) return NGT_FAIL;
    if (counts_add_up(what, &b.tr, steps) != NGT_PASS) return NGT_FAIL;
    /* keys: 2 batch buffers x {4, 2} columns (the partial batch) */
    NGT_CHECK(b.tr.graph.captures >= 2 && b.tr.graph.captures <= 4 && b.tr.graph.replays > 2 * b.tr.graph.captures,
              "%s: %llu captures, %llu replays", what, (unsigned long long)b.tr.graph.captures,
              (unsigned long long)b.tr.graph.replays);
    if (kind == CNN_WHITEN) /* every re-whitening update ran eagerly */
        NGT_CHECK(b.tr.graph.eager >= (steps + 4) / 5, "%s: %llu eager updates, %llu re-whiten", what,
                  (unsigned long long)b.tr.graph.eager, (unsigned long long)((steps + 4) / 5));
    printf("  %s: %llu updates: %llu captured, %llu replayed, %llu eager; parameters, state, gradient count and batch "
           "objective / misclassification identical\n",
           what, (unsigned long long)steps, (unsigned long long)b.tr.graph.captures, (unsigned long long)b.tr.graph.replays,
           (unsigned long long)b.tr.graph.eager);
    cnn_run_free(&a);
    cnn_run_free(&b);
    return NGT_PASS;
}

CUDA_TEST(test_graph_cnn_sgd_augment, cnn_graph_vs_eager("cnn sgd, crops + mirrors", CNN_AUG, 0, 30, 11))
CUDA_TEST(test_graph_cnn_nag_augment, cnn_graph_vs_eager("cnn nag, crops + mirrors", CNN_AUG, 1, 30, 0))
CUDA_TEST(test_graph_cnn_bn, cnn_graph_vs_eager("cnn sgd, batch norm, crops + mirrors", CNN_BN, 0, 25, 9))
CUDA_TEST(test_graph_cnn_whiten, cnn_graph_vs_eager("cnn nag, whitening layer (T = 5)", CNN_WHITEN, 1, 23, 0))

/* A resumed conv-net run continues as a graph from the checkpoint's gradient count (the device's
 * augmentation step is set at load): 7 updates eagerly, save, load into a fresh trainer with graphs
 * on, continue to 30 against an uninterrupted eager run. */
static int test_graph_cnn_resume(void) {
    cnn_run a, b, c;
    pair pr = {"cnn resumed", &a, &c, 30};
    char path[256];
    if (!g_cuda) return ngt_skip(g_reason);
    tmp_ckpt(path, sizeof path, "cnn");
    NGT_OK(cnn_run_init(&a, CNN_BN, 0));
    NGT_OK(cnn_run_init(&b, CNN_BN, 0));
    if (step_both(&a.tr, &b.tr, 0, 7, 0, NULL, NULL) != NGT_PASS) return NGT_FAIL;
    NGT_OK(ng_trainer_save(&b.tr, path, NG_SAVE_ALL));
    cnn_run_free(&b);
    NGT_OK(cnn_run_init(&c, CNN_BN, 0));
    if (load_ckpt(&c.tr, path) != NGT_PASS) return NGT_FAIL;
    NGT_OK(ng_trainer_set_cuda_graph(&c.tr, 1));
    if (step_both(&a.tr, &c.tr, 7, 30, 0, same_cnn_pr, &pr) != NGT_PASS) return NGT_FAIL;
    NGT_CHECK(c.tr.graph.replays > 0 && c.tr.graph.eager == 0, "resumed cnn run: %llu replays, %llu eager",
              (unsigned long long)c.tr.graph.replays, (unsigned long long)c.tr.graph.eager);
    printf("  cnn resumed at update 7: %llu captured, %llu replayed; identical to the uninterrupted eager run\n",
           (unsigned long long)c.tr.graph.captures, (unsigned long long)c.tr.graph.replays);
    cnn_run_free(&a);
    cnn_run_free(&c);
    return NGT_PASS;
}

/* A non-finite objective stops both runs at the same update with the same error: eagerly before the
 * update's step, as a graph (a replay) after it, from the one read of the device sums that follows
 * the graph. A NaN is written into the last parameter (an output bias) of both models after 6 updates. */
static int test_graph_cnn_nan_objective(void) {
    cnn_run a, b;
    uint64_t replays;
    const float nan = NAN;
    ng_status sa, sb;
    char ea[512];
    if (!g_cuda) return ngt_skip(g_reason);
    NGT_OK(cnn_run_init(&a, CNN_AUG, 0));
    NGT_OK(cnn_run_init(&b, CNN_AUG, 0));
    NGT_OK(ng_trainer_set_cuda_graph(&b.tr, 1));
    if (step_both(&a.tr, &b.tr, 0, 6, 0, NULL, NULL) != NGT_PASS) return NGT_FAIL;
    NGT_OK(ng_set(g_cuda, a.m->param_flat.data + ng_model_size(a.m) - 1, &nan, sizeof nan));
    NGT_OK(ng_set(g_cuda, b.m->param_flat.data + ng_model_size(b.m) - 1, &nan, sizeof nan));
    replays = b.tr.graph.replays;
    sa = ng_trainer_step(&a.tr, NULL);
    snprintf(ea, sizeof ea, "%s", ng_last_error());
    sb = ng_trainer_step(&b.tr, NULL);
    NGT_CHECK(sa == NG_ERR_NUMERIC && sb == NG_ERR_NUMERIC, "status %d eager, %d graph (want NG_ERR_NUMERIC)", (int)sa, (int)sb);
    NGT_CHECK(strcmp(ea, ng_last_error()) == 0 && strstr(ea, "cnn objective on this batch is") != NULL,
              "messages differ: '%s' eager, '%s' graph", ea, ng_last_error());
    NGT_CHECK(b.tr.graph.replays == replays + 1, "the failing graph update was not a replay");
    NGT_CHECK(a.tr.t == 6 && b.tr.t == 6, "updates counted: %llu eager, %llu graph (want 6)", (unsigned long long)a.tr.t,
              (unsigned long long)b.tr.t);
    cnn_run_free(&a);
    cnn_run_free(&b);
    return NGT_PASS;
}

/* ---- (c''') PRONG: graph == eager across reparametrisations --------------------------------------
 * The 6-5-4-6 autoencoder on the fixed data with whitened layers (form 1: V, d with the inputs
 * whitened in every pass; form 2: the canonical W = V U; PRONG+: batch norm on the hidden layers),
 * SGD with momentum and weight decay through PRONG (T = 4, N_s = 8 of the 10 cases). Updates 0, 4,
 * 8, ... reparametrise (eagerly); the others replay graphs captured before the latest
 * reparametrisation, which rewrote U, c (K) and V, d in place. After every update the model's
 * checkpoints (parameters, whitening state, batch norm's running averages) must be byte-identical
 * to the eager run's. */
typedef run prong_run;

static ng_status prong_run_init(prong_run *r, int form, int bn) {
    ng_net_config cfg;
    ng_sgd_config c;
    ng_prong_config pg;
    ng_status s;
    memset(r, 0, sizeof *r);
    ae_config(&cfg);
    cfg.whiten = form;
    NG_TRY(ng_net_parse_spec(bn ? "6-5+bn-4+bn-6" : "6-5-4-6", NG_ACT_LOGISTIC, NG_ACT_LOGISTIC, &cfg));
    NG_TRY(ng_net_create(g_cuda, &cfg, &r->net));
    memset(&c, 0, sizeof c);
    c.lr = 0.3f;
    c.momentum = 0.9f;
    c.weight_decay = 1e-3f;
    s = ng_update_sgd_init(g_cuda, r->net, &c, &r->upd);
    ng_prong_config_default(&pg);
    pg.T = 4;
    pg.ns = 8;
    pg.seed = 3;
    if (s == NG_OK) s = ng_precond_prong_init(g_cuda, r->net, &pg, g_x, NCASES, r->upd, &r->pc);
    if (s == NG_OK) s = ng_batches_init(&r->data, g_cuda, g_x, DIM, NCASES, BATCH, 5, 0, 1);
    if (s == NG_OK) r->data_ready = 1;
    if (s == NG_OK) s = ng_trainer_init(&r->tr, r->net, r->pc, r->upd, &r->data, 5, NULL);
    return s;
}

static void prong_run_free(prong_run *r) { /* PRONG before the update rule it holds */
    ng_trainer_release(&r->tr);
    ng_precond_free(r->pc);
    r->pc = NULL;
    run_free(r);
}

/* the whole contents of a file (NULL on failure), its size in *n */
static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    unsigned char *b = NULL;
    long len;
    *n = 0;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 && (b = (unsigned char *)malloc((size_t)len)) &&
        fread(b, 1, (size_t)len, f) == (size_t)len)
        *n = (size_t)len;
    fclose(f);
    if (!*n) {
        free(b);
        b = NULL;
    }
    return b;
}

/* the model checkpoints of both trainers byte for byte (parameters, whitening state, batch norm) */
static int same_prong(const char *what, prong_run *a, prong_run *b, uint64_t t) {
    char pa[256], pb[256];
    unsigned char *ba, *bb;
    size_t na, nb;
    int ok;
    tmp_ckpt(pa, sizeof pa, "prong_a");
    tmp_ckpt(pb, sizeof pb, "prong_b");
    NGT_OK(ng_trainer_save(&a->tr, pa, NG_SAVE_MODEL));
    NGT_OK(ng_trainer_save(&b->tr, pb, NG_SAVE_MODEL));
    ba = slurp(pa, &na);
    bb = slurp(pb, &nb);
    remove(pa);
    remove(pb);
    ok = ba && bb && na == nb && memcmp(ba, bb, na) == 0;
    free(ba);
    free(bb);
    NGT_CHECK(ok, "%s: the model checkpoints (%zu and %zu bytes) differ after update %llu", what, na, nb, (unsigned long long)t);
    return NGT_PASS;
}
static int same_prong_pr(const pair *pr, uint64_t t) { return same_prong(pr->what, (prong_run *)pr->a, (prong_run *)pr->b, t); }

static int prong_graph_vs_eager(const char *what, int form, int bn, uint64_t steps, int log_every) {
    prong_run a, b;
    uint64_t refreshes = (steps + 3) / 4;
    pair pr = {what, &a, &b, steps};
    NGT_OK(prong_run_init(&a, form, bn));
    NGT_OK(prong_run_init(&b, form, bn));
    NGT_OK(ng_trainer_set_cuda_graph(&b.tr, 1));
    if (step_both(&a.tr, &b.tr, 0, steps, log_every, same_prong_pr, &pr) != NGT_PASS) return NGT_FAIL;
    if (counts_add_up(what, &b.tr, steps) != NGT_PASS) return NGT_FAIL;
    /* every reparametrisation eager; the graphs outlive them: at most 2 buffers x 2 shapes captured */
    NGT_CHECK(b.tr.graph.eager >= refreshes && b.tr.graph.captures >= 2 && b.tr.graph.captures <= 4 &&
                  b.tr.graph.replays > 2 * b.tr.graph.captures,
              "%s: %llu captured, %llu replayed, %llu eager (%llu reparametrisations)", what,
              (unsigned long long)b.tr.graph.captures, (unsigned long long)b.tr.graph.replays,
              (unsigned long long)b.tr.graph.eager, (unsigned long long)refreshes);
    printf("  %s: %llu updates, %llu reparametrisations: %llu captured, %llu replayed, %llu eager; model checkpoints "
           "identical\n",
           what, (unsigned long long)steps, (unsigned long long)refreshes, (unsigned long long)b.tr.graph.captures,
           (unsigned long long)b.tr.graph.replays, (unsigned long long)b.tr.graph.eager);
    prong_run_free(&a);
    prong_run_free(&b);
    return NGT_PASS;
}

CUDA_TEST(test_graph_prong_whitened, prong_graph_vs_eager("prong, whitened form", 1, 0, 30, 0))
CUDA_TEST(test_graph_prong_canonical, prong_graph_vs_eager("prong, canonical form", 2, 0, 30, 7))
CUDA_TEST(test_graph_prong_plus, prong_graph_vs_eager("prong+ (batch norm), canonical form", 2, 1, 22, 0))

/* ---- (c'') preconditioners inside the graph: centering, FANG, diag ------------------------------
 * Each trainer runs eagerly (a) and with --cuda-graph (b) on the same data; after every update the
 * parameters (and the RBM's particles and Philox step) and the preconditioner's whole state arena
 * (centering's offsets; FANG's moments, Lambda_un, regressions and diagnostics; diag's average)
 * must be identical bytes. The number of eager updates is exactly the updates that must be eager
 * (update 0, logged ones, FANG's refits every 5), and replays must happen. */

static int same_state(const char *what, const ng_precond *pa, const ng_precond *pb, uint64_t t) {
    size_t n = pa->state.bytes, i;
    unsigned char *ha, *hb;
    int ok;
    NGT_CHECK(n == pb->state.bytes, "%s: state arenas of %zu and %zu bytes", what, n, pb->state.bytes);
    if (n == 0) return NGT_PASS;
    ha = (unsigned char *)malloc(n);
    hb = (unsigned char *)malloc(n);
    NGT_CHECK(ha && hb, "out of memory");
    NGT_OK(ng_get(g_cuda, ha, pa->state.base, n));
    NGT_OK(ng_get(g_cuda, hb, pb->state.base, n));
    if (strcmp(pa->iface->name, "fang") == 0) /* FANG's diagnostics hold the refits' wall-clock time (entry 3) */
        for (i = 0; i < (size_t)pa->state.count; i++)
            if (strcmp(pa->state.entries[i].name, "diag") == 0) {
                memset(ha + pa->state.entries[i].offset + 3 * sizeof(float), 0, sizeof(float));
                memset(hb + pa->state.entries[i].offset + 3 * sizeof(float), 0, sizeof(float));
            }
    ok = memcmp(ha, hb, n) == 0;
    if (!ok) {
        int e;
        for (i = 0; i < n && ha[i] == hb[i]; i++) {
        }
        for (e = pa->state.count - 1; e > 0 && pa->state.entries[e].offset > i; e--) {
        }
        printf("  %s: after update %llu the %s state differs at byte %zu (tensor %s)\n", what, (unsigned long long)t,
               pa->iface->name, i, pa->state.count ? pa->state.entries[e].name : "?");
    }
    free(ha);
    free(hb);
    NGT_CHECK(ok, "%s: preconditioner state after update %llu differs", what, (unsigned long long)t);
    return NGT_PASS;
}

/* the parameters (and the RBM's particles and Philox step), then the preconditioner's state */
static int same_rbm_state_pr(const pair *pr, uint64_t t) {
    if (same_rbm_pr(pr, t) != NGT_PASS) return NGT_FAIL;
    return same_state(pr->what, ((rbm_run *)pr->a)->rt.pc, ((rbm_run *)pr->b)->rt.pc, t);
}
static int same_params_state_pr(const pair *pr, uint64_t t) {
    if (same_params_pr(pr, t) != NGT_PASS) return NGT_FAIL;
    return same_state(pr->what, ((run *)pr->a)->pc, ((run *)pr->b)->pc, t);
}

/* updates a run must take eagerly: update 0, the logged ones, and (refit > 0) every refit-th */
static uint64_t want_eager(uint64_t from, uint64_t to, int log_every, int refit) {
    uint64_t t, n = 0;
    for (t = from; t < to; t++)
        n += t == 0 || (log_every && t % (uint64_t)log_every == 0) || (refit && t % (uint64_t)refit == 0);
    return n;
}

static int rbm_pc_graph_vs_eager(const char *what, int optimizer, int metric, uint64_t steps, int log_every) {
    rbm_run a, b;
    pair pr = {what, &a, &b, steps};
    const int refit = optimizer == NG_RBM_OPT_FANG ? 5 : 0;
    NGT_OK(rbm_run_init_opt(&a, g_cuda, NG_RBM_PCD, 1, 0.0f, 0, optimizer, metric));
    NGT_OK(rbm_run_init_opt(&b, g_cuda, NG_RBM_PCD, 1, 0.0f, 0, optimizer, metric));
    NGT_OK(ng_trainer_set_cuda_graph(&b.rt.tr, 1));
    if (step_both(&a.rt.tr, &b.rt.tr, 0, steps, log_every, same_rbm_state_pr, &pr) != NGT_PASS) return NGT_FAIL;
    NGT_CHECK(b.rt.tr.graph.eager == want_eager(0, steps, log_every, refit), "%s: %llu eager updates, want %llu", what,
              (unsigned long long)b.rt.tr.graph.eager, (unsigned long long)want_eager(0, steps, log_every, refit));
    NGT_CHECK(b.rt.tr.graph.captures + b.rt.tr.graph.replays + b.rt.tr.graph.eager == steps, "%s: counts do not add up", what);
    /* keys: the 2 batch buffers x {4, 2} columns */
    NGT_CHECK(b.rt.tr.graph.captures >= 2 && b.rt.tr.graph.captures <= 8 && b.rt.tr.graph.replays > b.rt.tr.graph.captures,
              "%s: %llu captures, %llu replays", what, (unsigned long long)b.rt.tr.graph.captures,
              (unsigned long long)b.rt.tr.graph.replays);
    printf("  %s: %llu updates: %llu captured, %llu replayed, %llu eager; parameters, particles, Philox step and %s state "
           "identical\n", what, (unsigned long long)steps, (unsigned long long)b.rt.tr.graph.captures,
           (unsigned long long)b.rt.tr.graph.replays, (unsigned long long)b.rt.tr.graph.eager, b.rt.pc->iface->name);
    rbm_run_free(&a);
    rbm_run_free(&b);
    return NGT_PASS;
}

CUDA_TEST(test_graph_rbm_centering, rbm_pc_graph_vs_eager("rbm centering", NG_RBM_OPT_CENTERING, NG_DIAG_ENERGY, 30, 9))
/* refits at 5, 10, ... eager; the updates between them replayed */
CUDA_TEST(test_graph_rbm_fang, rbm_pc_graph_vs_eager("rbm fang (refit every 5)", NG_RBM_OPT_FANG, NG_DIAG_ENERGY, 33, 9))
CUDA_TEST(test_graph_rbm_diag_energy, rbm_pc_graph_vs_eager("rbm diag energy", NG_RBM_OPT_DIAG, NG_DIAG_ENERGY, 30, 9))
CUDA_TEST(test_graph_rbm_diag_fisher, rbm_pc_graph_vs_eager("rbm diag fisher", NG_RBM_OPT_DIAG, NG_DIAG_FISHER, 30, 0))

/* A resumed run continues as a graph: 7 eager updates, a checkpoint, a fresh trainer loading it
 * with graphs on (FANG: its device Philox step from run.t; diag: the average's weight), continued
 * to 30 (FANG refits at 10, 15, ... inside the window) against an uninterrupted eager run. */
static int test_graph_rbm_pc_resume(void) {
    static const int opt[3] = {NG_RBM_OPT_CENTERING, NG_RBM_OPT_FANG, NG_RBM_OPT_DIAG};
    static const char *const name[3] = {"rbm centering resumed", "rbm fang resumed", "rbm diag energy resumed"};
    int i;
    if (!g_cuda) return ngt_skip(g_reason);
    for (i = 0; i < 3; i++) {
        rbm_run a, b, c;
        pair pr = {name[i], &a, &c, 30};
        char path[256];
        tmp_ckpt(path, sizeof path, "pc");
        NGT_OK(rbm_run_init_opt(&a, g_cuda, NG_RBM_PCD, 1, 0.0f, 0, opt[i], NG_DIAG_ENERGY));
        NGT_OK(rbm_run_init_opt(&b, g_cuda, NG_RBM_PCD, 1, 0.0f, 0, opt[i], NG_DIAG_ENERGY));
        if (step_both(&a.rt.tr, &b.rt.tr, 0, 7, 0, NULL, NULL) != NGT_PASS) return NGT_FAIL;
        NGT_OK(ng_trainer_save(&b.rt.tr, path, NG_SAVE_ALL));
        rbm_run_free(&b);
        NGT_OK(rbm_run_init_opt(&c, g_cuda, NG_RBM_PCD, 1, 0.0f, 0, opt[i], NG_DIAG_ENERGY));
        if (load_ckpt(&c.rt.tr, path) != NGT_PASS) return NGT_FAIL;
        NGT_OK(ng_trainer_set_cuda_graph(&c.rt.tr, 1));
        if (step_both(&a.rt.tr, &c.rt.tr, 7, 30, 0, same_rbm_state_pr, &pr) != NGT_PASS) return NGT_FAIL;
        NGT_CHECK(c.rt.tr.graph.replays > 0 && c.rt.tr.graph.eager == want_eager(7, 30, 0, opt[i] == NG_RBM_OPT_FANG ? 5 : 0),
                  "%s: %llu replays, %llu eager", name[i], (unsigned long long)c.rt.tr.graph.replays,
                  (unsigned long long)c.rt.tr.graph.eager);
        printf("  %s at update 7: %llu captured, %llu replayed, %llu eager to update 30; identical\n", name[i],
               (unsigned long long)c.rt.tr.graph.captures, (unsigned long long)c.rt.tr.graph.replays,
               (unsigned long long)c.rt.tr.graph.eager);
        rbm_run_free(&a);
        rbm_run_free(&c);
    }
    return NGT_PASS;
}

/* The network trainer with the diagonal preconditioner (--precond diag): the Fisher metric (targets
 * sampled at the Philox step counted on the device), the empirical Fisher, and phi mode (the rule in
 * phi = G^(1/2) theta, G refreshed every 4 updates: two captures per batch key); the natural
 * parameter space of K-FAC's factors (nag) and of the full Fisher (sgd), their refreshes eager. After
 * every update the parameters and the preconditioner's whole state arena (K-FAC: the factors and the
 * roots) must be identical bytes, and the eager updates exactly those that must be eager. */
enum { PC_DIAG_FISHER, PC_DIAG_EMPIRICAL, PC_DIAG_PHI, PC_KFAC_PHI, PC_FULL_PHI };
static const char *const pc_name[] = {"net sgd + diag fisher", "net adam + diag empirical", "net sgd + diag fisher, phi every 4",
                                      "net nag + kfac, phi every 4", "net sgd + full fisher, phi every 4"};
/* the updates of [from, to) that run eagerly: the first, the logged ones and, for K-FAC and the full
 * Fisher in phi, the refreshes (t = 0, 4, 8, ...) and, K-FAC, the first after a resume (its device
 * Philox step is written there) */
static uint64_t pc_want_eager(int kind, uint64_t from, uint64_t to, int log_every) {
    uint64_t n = want_eager(from, to, log_every, kind == PC_KFAC_PHI || kind == PC_FULL_PHI ? 4 : 0);
    if (kind == PC_KFAC_PHI && from > 0 && from % 4 != 0 && !(log_every && from % (uint64_t)log_every == 0)) n++;
    return n;
}

static ng_status run_init_diag(run *r, ng_backend *be, int kind) {
    ng_diag_config dc;
    ng_update *phi = NULL;
    NG_TRY(run_init(r, be, kind == PC_DIAG_EMPIRICAL ? R_ADAM : kind == PC_KFAC_PHI ? R_NAG : R_SGD));
    ng_precond_free(r->pc);
    r->pc = NULL;
    if (kind == PC_KFAC_PHI || kind == PC_FULL_PHI) {
        if (kind == PC_KFAC_PHI) {
            ng_kfac_config kc;
            ng_kfac_config_default(&kc);
            kc.phi_every = 4;
            kc.eps_max = 0.75; /* the statistics' weights constant from update 3 on: one key between refreshes */
            kc.seed = 9;
            NG_TRY(ng_precond_kfac_init(be, r->net, &kc, &r->pc));
        } else {
            ng_full_config fc;
            ng_full_config_default(&fc);
            fc.phi_every = 4;
            NG_TRY(ng_precond_full_init(be, r->net, &fc, &r->pc));
        }
        NG_TRY(ng_update_phi_init(be, r->net, r->upd, r->pc, &phi));
        r->upd = phi;
        return ng_trainer_init(&r->tr, r->net, r->pc, r->upd, &r->data, 5, NULL);
    }
    ng_diag_config_default(&dc);
    dc.metric = kind == PC_DIAG_EMPIRICAL ? NG_DIAG_EMPIRICAL : NG_DIAG_FISHER;
    dc.beta = 0.9;
    dc.lambda = 1e-2;
    dc.seed = 9;
    dc.phi_every = kind == PC_DIAG_PHI ? 4 : 0;
    dc.max_batch = BATCH; /* as net train sets it: the scratch exists before the first capture */
    NG_TRY(ng_precond_diag_init(be, r->net, &dc, &r->pc));
    if (kind == PC_DIAG_PHI) {
        NG_TRY(ng_update_phi_init(be, r->net, r->upd, r->pc, &phi));
        r->upd = phi;
    }
    return ng_trainer_init(&r->tr, r->net, r->pc, r->upd, &r->data, 5, NULL);
}

static int net_diag_graph_vs_eager(int kind, uint64_t steps, int log_every, int resume_at) {
    run a, b;
    uint64_t t0 = 0;
    pair pr = {pc_name[kind], &a, &b, steps};
    NGT_OK(run_init_diag(&a, g_cuda, kind));
    NGT_OK(run_init_diag(&b, g_cuda, kind));
    if (resume_at > 0) { /* b: eager to resume_at, saved, loaded into a fresh trainer with graphs */
        char path[256];
        tmp_ckpt(path, sizeof path, "diag");
        if (step_both(&a.tr, &b.tr, 0, (uint64_t)resume_at, 0, NULL, NULL) != NGT_PASS) return NGT_FAIL;
        NGT_OK(ng_trainer_save(&b.tr, path, NG_SAVE_ALL));
        run_free(&b);
        NGT_OK(run_init_diag(&b, g_cuda, kind));
        if (load_ckpt(&b.tr, path) != NGT_PASS) return NGT_FAIL;
        t0 = (uint64_t)resume_at;
    }
    NGT_OK(ng_trainer_set_cuda_graph(&b.tr, 1));
    if (step_both(&a.tr, &b.tr, t0, steps, log_every, same_params_state_pr, &pr) != NGT_PASS) return NGT_FAIL;
    NGT_CHECK(b.tr.graph.eager == pc_want_eager(kind, t0, steps, log_every), "%s: %llu eager updates, want %llu",
              pc_name[kind], (unsigned long long)b.tr.graph.eager,
              (unsigned long long)pc_want_eager(kind, t0, steps, log_every));
    NGT_CHECK(b.tr.graph.captures >= (kind == PC_FULL_PHI ? 1u : 2u) && b.tr.graph.captures <= (kind == PC_DIAG_PHI ? 16u : 8u) &&
                  b.tr.graph.replays > b.tr.graph.captures,
              "%s: %llu captures, %llu replays", pc_name[kind], (unsigned long long)b.tr.graph.captures,
              (unsigned long long)b.tr.graph.replays);
    printf("  %s%s: updates %llu..%llu: %llu captured, %llu replayed, %llu eager; parameters and preconditioner state identical\n",
           pc_name[kind], resume_at ? " (resumed)" : "", (unsigned long long)t0, (unsigned long long)steps,
           (unsigned long long)b.tr.graph.captures, (unsigned long long)b.tr.graph.replays,
           (unsigned long long)b.tr.graph.eager);
    run_free(&a);
    run_free(&b);
    return NGT_PASS;
}

CUDA_TEST(test_graph_net_diag_fisher, net_diag_graph_vs_eager(PC_DIAG_FISHER, 40, 9, 0))
CUDA_TEST(test_graph_net_diag_empirical, net_diag_graph_vs_eager(PC_DIAG_EMPIRICAL, 40, 9, 0))
CUDA_TEST(test_graph_net_diag_phi, net_diag_graph_vs_eager(PC_DIAG_PHI, 40, 0, 0))
/* --tf32: the forward and backward passes of the gradient may use TF32, the preconditioner's work never
 * (the trainer's FP32 guard, natgrad/backend.h), in the graph as eagerly: the Fisher's sampled backward
 * pass inside diag runs in FP32 in both (the emulator rounds TF32 gemm operands, so a difference shows) */
static int test_graph_net_diag_tf32(void) {
    int r;
    if (!g_cuda) return ngt_skip(g_reason);
    ng_backend_allow_tf32(g_cuda, 1);
    r = net_diag_graph_vs_eager(PC_DIAG_FISHER, 20, 0, 0);
    ng_backend_allow_tf32(g_cuda, 0);
    return r;
}
/* K-FAC and the full Fisher in the natural parameter space: the refreshes of S every 4 updates
 * eager, the updates in between (K-FAC: the factor statistics with the targets' step on the device,
 * S^-1 g, the rule in phi and the map back) replayed; 40 updates span 10 refreshes */
CUDA_TEST(test_graph_net_kfac_phi, net_diag_graph_vs_eager(PC_KFAC_PHI, 40, 0, 0))
CUDA_TEST(test_graph_net_full_phi, net_diag_graph_vs_eager(PC_FULL_PHI, 40, 9, 0))
static int test_graph_net_phi_resume(void) {
    if (!g_cuda) return ngt_skip(g_reason);
    return net_diag_graph_vs_eager(PC_KFAC_PHI, 30, 0, 7) == NGT_PASS ? net_diag_graph_vs_eager(PC_FULL_PHI, 30, 0, 7)
                                                                       : NGT_FAIL;
}
static int test_graph_net_diag_resume(void) {
    if (!g_cuda) return ngt_skip(g_reason);
    return net_diag_graph_vs_eager(PC_DIAG_FISHER, 40, 0, 7) == NGT_PASS ? net_diag_graph_vs_eager(PC_DIAG_PHI, 40, 0, 7)
                                                                            : NGT_FAIL;
}

/* Device calls of one update of the 6-5-4-6 network with --precond diag, eager and as a graph (update
 * 4, a full batch); appended to NG_LAUNCH_COUNTS_CSV when set. A graph update is one graph launch,
 * the batch upload and the objective read. */
static int test_counts_net_diag(void) {
    static const int kinds[2] = {PC_DIAG_FISHER, PC_DIAG_EMPIRICAL};
    const char *csv = getenv("NG_LAUNCH_COUNTS_CSV");
    int i, mode, u;
    if (!g_cuda) return ngt_skip(g_reason);
    for (i = 0; i < 2; i++) {
        double c[2][NG_DEV_COUNT];
        for (mode = 0; mode < 2; mode++) {
            run r;
            ng_profile_config prc;
            ng_profile_row rows[64];
            const ng_profile_row *st;
            int n;
            NGT_OK(run_init_diag(&r, g_cuda, kinds[i]));
            if (mode) NGT_OK(ng_trainer_set_cuda_graph(&r.tr, 1));
            for (u = 0; u < 4; u++) NGT_OK(ng_trainer_step(&r.tr, NULL));
            memset(&prc, 0, sizeof prc);
            prc.measure = 1;
            NGT_OK(ng_profile_start(g_cuda, &prc));
            ng_profile_update(5, 1);
            NGT_OK(ng_trainer_step(&r.tr, NULL));
            ng_profile_update(5, 0);
            NGT_OK(ng_profile_finish());
            n = ng_profile_rows(rows, 64);
            if (n > 64) n = 64;
            st = find_row(rows, n, "train step");
            NGT_CHECK(st && st->calls == 1, "train step row");
            for (u = 0; u < NG_DEV_COUNT; u++) c[mode][u] = st->device_calls[u];
            NGT_CHECK(!mode || r.tr.graph.replays >= 1, "%s: update 4 was not a replay", pc_name[kinds[i]]);
            run_free(&r);
        }
        /* eager, derived from net.c, tnewton.c and diag.c for L = 3: the rule's update without the
         * preconditioner (sgd with weight decay: 2L + 3 = 9 kernels, 3L - 1 = 8 cuBLAS; adam: 2L + 2 = 8
         * kernels, 8 cuBLAS), the diagonal (per layer 2 squares + 1 gemm, then hf_minv's 4 kernels,
         * whose tmp / minv diag.c overwrites: 2L + 4 = 10 kernels, L = 3 cuBLAS), diag's average,
         * weight, bias correction and power (7 kernels); the Fisher adds the sampled backward pass
         * (sample_targets, the residual, L - 1 activation derivatives: 4 kernels; L - 1 delta gemms
         * and the 1/m^2 sscal: 3 cuBLAS; the forward pass is the gradient's) */
        {
            const double want_k = i == 0 ? 9 + 4 + 10 + 7 : 8 + 10 + 7, want_b = i == 0 ? 8 + 3 + 3 : 8 + 3;
            NGT_CHECK(c[0][NG_DEV_KERNEL] == want_k && c[0][NG_DEV_BLAS] == want_b && c[0][NG_DEV_COPY] == 2.0 &&
                          c[0][NG_DEV_GRAPH] == 0.0,
                      "%s, eager: %g kernels, %g cuBLAS, %g copies (want %g, %g, 2)", pc_name[kinds[i]], c[0][NG_DEV_KERNEL],
                      c[0][NG_DEV_BLAS], c[0][NG_DEV_COPY], want_k, want_b);
        }
        NGT_CHECK(c[1][NG_DEV_KERNEL] == 0.0 && c[1][NG_DEV_BLAS] == 0.0 && c[1][NG_DEV_COPY] == 2.0 && c[1][NG_DEV_GRAPH] == 1.0,
                  "%s, graph: %g kernels, %g cuBLAS, %g copies, %g graphs (want 0, 0, 2, 1)", pc_name[kinds[i]],
                  c[1][NG_DEV_KERNEL], c[1][NG_DEV_BLAS], c[1][NG_DEV_COPY], c[1][NG_DEV_GRAPH]);
        printf("  %s, update 4: eager %g kernels, %g cuBLAS, %g copies; graph mode %g graph launch, %g copies\n",
               pc_name[kinds[i]], c[0][NG_DEV_KERNEL], c[0][NG_DEV_BLAS], c[0][NG_DEV_COPY], c[1][NG_DEV_GRAPH],
               c[1][NG_DEV_COPY]);
        if (csv) {
            FILE *f = fopen(csv, "a");
            NGT_CHECK(f != NULL, "cannot append to %s", csv);
            for (mode = 0; mode < 2; mode++)
                fprintf(f, "%s 6-5-4-6 batch %d update 4,%s,%g,%g,%g,%g,%g,%g\n", pc_name[kinds[i]], BATCH,
                        mode ? "cuda-graph" : "eager", c[mode][NG_DEV_KERNEL], c[mode][NG_DEV_BLAS], c[mode][NG_DEV_SOLVER],
                        c[mode][NG_DEV_COPY], c[mode][NG_DEV_GRAPH],
                        c[mode][NG_DEV_KERNEL] + c[mode][NG_DEV_BLAS] + c[mode][NG_DEV_SOLVER] + c[mode][NG_DEV_COPY] +
                            c[mode][NG_DEV_GRAPH]);
            fclose(f);
        }
    }
    return NGT_PASS;
}

/* ---- refusals and capture failures ------------------------------------------------------------ */

static const struct ng_update_i *g_real_iface;
/* the sgd step followed by a host read: not capturable */
static ng_status step_with_host_read(ng_update *u, ng_model *m, uint64_t t) {
    float r;
    NG_TRY(g_real_iface->step(u, m, t));
    return ng_nrm2(u->be, ng_model_size(m), m->param_flat.data, &r);
}

static int test_graph_refusals(void) {
    run r;
    ng_backend *cpu = NULL;
    struct ng_update_i fake;
    ng_status s;
    if (!g_cuda) return ngt_skip(g_reason);
    /* the CPU backend */
    NGT_OK(ng_backend_cpu_init(&cpu));
    NGT_OK(run_init(&r, cpu, R_SGD));
    s = ng_trainer_set_cuda_graph(&r.tr, 1);
    NGT_CHECK(s == NG_ERR_UNSUPPORTED && strstr(ng_last_error(), "cpu") && strstr(ng_last_error(), "--cuda-graph"),
              "CPU: %s %s", ng_status_name(s), ng_last_error());
    run_free(&r);
    ng_backend_free(cpu);
    /* a rule without graph_key */
    NGT_OK(run_init(&r, g_cuda, R_SGD));
    g_real_iface = r.upd->iface;
    fake = *r.upd->iface;
    fake.graph_key = NULL;
    fake.name = "uncapturable";
    r.upd->iface = &fake;
    s = ng_trainer_set_cuda_graph(&r.tr, 1);
    NGT_CHECK(s == NG_ERR_UNSUPPORTED && strstr(ng_last_error(), "uncapturable"), "rule without key: %s %s",
              ng_status_name(s), ng_last_error());
    /* a step that reads the host mid-step: the capture fails with a message, nothing is left
     * capturing, and the same trainer continues eagerly */
    fake.graph_key = g_real_iface->graph_key;
    fake.step = step_with_host_read;
    NGT_OK(ng_trainer_set_cuda_graph(&r.tr, 1));
    NGT_OK(ng_trainer_step(&r.tr, NULL)); /* update 0: eager */
    s = ng_trainer_step(&r.tr, NULL);
    NGT_CHECK(s != NG_OK && strstr(ng_last_error(), "could not be captured") && strstr(ng_last_error(), "--cuda-graph 0"),
              "host read in a captured step: %s %s", ng_status_name(s), ng_last_error());
    NGT_CHECK(r.tr.t == 1 && r.tr.graph.captures == 0, "t = %llu, %llu captures after a failed capture",
              (unsigned long long)r.tr.t, (unsigned long long)r.tr.graph.captures);
    NGT_OK(ng_trainer_set_cuda_graph(&r.tr, 0));
    NGT_OK(ng_trainer_step(&r.tr, NULL));
    r.upd->iface = g_real_iface;
    /* a model without graph_check (the cnn's gradient reads the host per chunk) */
    {
        struct ng_model_i mi = *r.net->iface;
        const struct ng_model_i *real = r.net->iface;
        mi.graph_check = NULL;
        mi.kind = "hostreader";
        r.net->iface = &mi;
        s = ng_trainer_set_cuda_graph(&r.tr, 1);
        r.net->iface = real;
        NGT_CHECK(s == NG_ERR_UNSUPPORTED && strstr(ng_last_error(), "model hostreader is not captured"),
                  "model without graph_check: %s %s", ng_status_name(s), ng_last_error());
    }
    run_free(&r);
    /* the RBM: a preconditioner without graph_key */
    {
        rbm_run rb;
        struct ng_precond_i pi;
        const struct ng_precond_i *real;
        NGT_OK(rbm_run_init_opt(&rb, g_cuda, NG_RBM_PCD, 1, 0.0f, 0, NG_RBM_OPT_FANG, NG_DIAG_ENERGY));
        real = rb.rt.pc->iface;
        pi = *real;
        pi.graph_key = NULL;
        pi.name = "hostpc";
        rb.rt.pc->iface = &pi;
        s = ng_trainer_set_cuda_graph(&rb.rt.tr, 1);
        rb.rt.pc->iface = real;
        NGT_CHECK(s == NG_ERR_UNSUPPORTED && strstr(ng_last_error(), "preconditioner hostpc is not captured") &&
                      strstr(ng_last_error(), "--cuda-graph 0"),
                  "preconditioner without graph_key: %s %s", ng_status_name(s), ng_last_error());
        rbm_run_free(&rb);
    }
    return NGT_PASS;
}

/* A capture that fails after the gradient and the rule's step ran on the host (the step then reads
 * the host) is discarded: the RBM's Philox step and Adam's device step count go back to where the
 * failed update started (graph_discarded), so the run continues exactly as an eager one that never
 * attempted that update; Adam even continues with graphs on (re-captured). */
static int unique_key(const ng_update *u, uint64_t t, double *key, int max) { /* forces a capture */
    (void)u;
    if (max < 1) return -1;
    key[0] = -1.0 - (double)t;
    return 1;
}

/* one update of tr with u's step replaced by one that reads the host under a new key: its capture fails */
static ng_status step_failing_capture(ng_trainer *tr, ng_update *u) {
    struct ng_update_i fake;
    ng_status s;
    g_real_iface = u->iface;
    fake = *g_real_iface;
    fake.step = step_with_host_read;
    fake.graph_key = unique_key;
    u->iface = &fake;
    s = ng_trainer_step(tr, NULL);
    u->iface = g_real_iface;
    return s;
}

static int test_graph_discarded_capture(void) {
    ng_status s;
    if (!g_cuda) return ngt_skip(g_reason);
    { /* the RBM */
        rbm_run a, b;
        pair pr = {"rbm after a discarded capture", &a, &b, 12};
        NGT_OK(rbm_run_init(&a, g_cuda, NG_RBM_PCD, 1, 0.0f, 0));
        NGT_OK(rbm_run_init(&b, g_cuda, NG_RBM_PCD, 1, 0.0f, 0));
        NGT_OK(ng_trainer_set_cuda_graph(&b.rt.tr, 1));
        if (step_both(&a.rt.tr, &b.rt.tr, 0, 5, 0, NULL, NULL) != NGT_PASS) return NGT_FAIL;
        s = step_failing_capture(&b.rt.tr, b.rt.upd);
        NGT_CHECK(s != NG_OK && strstr(ng_last_error(), "could not be captured"), "rbm: the failing capture: %s %s",
                  ng_status_name(s), ng_last_error());
        NGT_CHECK(ng_rbm_rng_step(&a.rbm) == ng_rbm_rng_step(&b.rbm), "rbm: Philox step %llu after the discarded capture, "
                  "want %llu", (unsigned long long)ng_rbm_rng_step(&b.rbm), (unsigned long long)ng_rbm_rng_step(&a.rbm));
        NGT_OK(ng_trainer_set_cuda_graph(&b.rt.tr, 0));
        if (step_both(&a.rt.tr, &b.rt.tr, 5, 12, 0, same_rbm_pr, &pr) != NGT_PASS) return NGT_FAIL;
        rbm_run_free(&a);
        rbm_run_free(&b);
    }
    { /* FANG: the mirror of its device Philox step goes back too; graphs on again after the failure */
        rbm_run a, b;
        pair pr = {"fang after a discarded capture", &a, &b, 14};
        NGT_OK(rbm_run_init_opt(&a, g_cuda, NG_RBM_PCD, 1, 0.0f, 0, NG_RBM_OPT_FANG, NG_DIAG_ENERGY));
        NGT_OK(rbm_run_init_opt(&b, g_cuda, NG_RBM_PCD, 1, 0.0f, 0, NG_RBM_OPT_FANG, NG_DIAG_ENERGY));
        NGT_OK(ng_trainer_set_cuda_graph(&b.rt.tr, 1));
        NGT_OK(ng_trainer_step(&a.rt.tr, NULL));
        NGT_OK(ng_trainer_step(&b.rt.tr, NULL));
        s = step_failing_capture(&b.rt.tr, b.rt.upd); /* update 1: between refits, so captured, and the capture fails */
        NGT_CHECK(s != NG_OK && strstr(ng_last_error(), "could not be captured"), "fang: the failing capture: %s %s",
                  ng_status_name(s), ng_last_error());
        /* update 1 again: no graph yet, so a capture, which must not need to reset the device step */
        if (step_both(&a.rt.tr, &b.rt.tr, 1, 14, 0, same_rbm_state_pr, &pr) != NGT_PASS) return NGT_FAIL;
        NGT_CHECK(b.rt.tr.graph.replays > 0, "fang: no replays after the discarded capture");
        rbm_run_free(&a);
        rbm_run_free(&b);
    }
    { /* Adam on the network, graphs on again after the failure */
        run a, b;
        pair pr = {"adam after a discarded capture", &a, &b, 20};
        NGT_OK(run_init(&a, g_cuda, R_ADAM));
        NGT_OK(run_init(&b, g_cuda, R_ADAM));
        NGT_OK(ng_trainer_set_cuda_graph(&b.tr, 1));
        if (step_both(&a.tr, &b.tr, 0, 5, 0, NULL, NULL) != NGT_PASS) return NGT_FAIL;
        s = step_failing_capture(&b.tr, b.upd);
        NGT_CHECK(s != NG_OK && strstr(ng_last_error(), "could not be captured"), "adam: the failing capture: %s %s",
                  ng_status_name(s), ng_last_error());
        if (step_both(&a.tr, &b.tr, 5, 20, 0, same_params_pr, &pr) != NGT_PASS) return NGT_FAIL;
        NGT_CHECK(b.tr.graph.replays > 0, "adam: no replays after the discarded capture");
        run_free(&a);
        run_free(&b);
    }
    { /* the conv net with augmentation: its gradient count (the augmentation's step) goes back */
        cnn_run a, b;
        pair pr = {"cnn after a discarded capture", &a, &b, 20};
        NGT_OK(cnn_run_init(&a, CNN_AUG, 0));
        NGT_OK(cnn_run_init(&b, CNN_AUG, 0));
        NGT_OK(ng_trainer_set_cuda_graph(&b.tr, 1));
        if (step_both(&a.tr, &b.tr, 0, 5, 0, NULL, NULL) != NGT_PASS) return NGT_FAIL;
        s = step_failing_capture(&b.tr, b.upd);
        NGT_CHECK(s != NG_OK && strstr(ng_last_error(), "could not be captured"), "cnn: the failing capture: %s %s",
                  ng_status_name(s), ng_last_error());
        NGT_CHECK(ng_cnn_gradients(b.m) == 5, "cnn: %llu gradients after the discarded capture, want 5",
                  (unsigned long long)ng_cnn_gradients(b.m));
        if (step_both(&a.tr, &b.tr, 5, 20, 0, same_cnn_pr, &pr) != NGT_PASS) return NGT_FAIL;
        NGT_CHECK(b.tr.graph.replays > 0, "cnn: no replays after the discarded capture");
        cnn_run_free(&a);
        cnn_run_free(&b);
    }
    return NGT_PASS;
}

/* ---- (d) the profile of graph steps ----------------------------------------------------------- */

static int test_graph_profile(void) {
    run r;
    ng_profile_config pc;
    ng_profile_row rows[64];
    const ng_profile_row *st;
    int n;
    uint64_t u;
    if (!g_cuda) return ngt_skip(g_reason);
    NGT_OK(run_init(&r, g_cuda, R_NAG));
    NGT_OK(ng_trainer_set_cuda_graph(&r.tr, 1));
    for (u = 0; u < 4; u++) NGT_OK(ng_trainer_step(&r.tr, NULL)); /* eager, then the keys captured */
    memset(&pc, 0, sizeof pc);
    pc.measure = 1;
    NGT_OK(ng_profile_start(g_cuda, &pc));
    for (u = 5; u <= 6; u++) { /* updates 4 and 5: full batches, both buffers captured before */
        ng_profile_update(u, 1);
        NGT_OK(ng_trainer_step(&r.tr, NULL));
        ng_profile_update(u, 0);
    }
    NGT_OK(ng_profile_finish());
    n = ng_profile_rows(rows, 64);
    if (n > 64) n = 64;
    st = find_row(rows, n, "train step");
    NGT_CHECK(st && st->calls == 2, "train step row");
    NGT_CHECK(st->device_calls[NG_DEV_GRAPH] == 2.0 && st->device_calls[NG_DEV_KERNEL] == 0.0 &&
                  st->device_calls[NG_DEV_BLAS] == 0.0 && st->device_calls[NG_DEV_COPY] == 4.0,
              "graph steps: %g graph launches, %g kernels, %g cuBLAS, %g copies in 2 updates (want 2, 0, 0, 4: "
              "the batch upload and the objective read each)",
              st->device_calls[NG_DEV_GRAPH], st->device_calls[NG_DEV_KERNEL], st->device_calls[NG_DEV_BLAS],
              st->device_calls[NG_DEV_COPY]);
    NGT_CHECK(find_row(rows, n, "graph launch") && !find_row(rows, n, "model gradient"),
              "a replayed step has a graph-launch range and no gradient range");
    run_free(&r);
    return NGT_PASS;
}

/* ---- (e) graph segments -------------------------------------------------------------------- */

typedef struct seg_ctx {
    ng_backend *be;
    float *x, *y;
    size_t n;
    float alpha;
    int host_read; /* 1: the body also reads a norm on the host (not capturable) */
    int calls;     /* host state the body advances (put back when a capture fails) */
} seg_ctx;
static ng_status seg_body(void *user) {
    seg_ctx *c = (seg_ctx *)user;
    c->calls++;
    NG_TRY(ng_axpby(c->be, c->n, c->alpha, c->x, 1.0f, c->y));
    if (c->host_read) {
        float r;
        NG_TRY(ng_nrm2(c->be, c->n, c->y, &r));
    }
    return ng_axpby(c->be, c->n, 1.0f, c->y, 0.5f, c->x);
}
static int seg_get(void *user, uint64_t *st, int cap) {
    (void)cap;
    st[0] = (uint64_t)((seg_ctx *)user)->calls;
    return 1;
}
static void seg_set(void *user, const uint64_t *st, int n) {
    if (n == 1) ((seg_ctx *)user)->calls = (int)st[0];
}

/* y += alpha x; x = y + x / 2, three times, eagerly on one pair of buffers and as a segment on
 * another: equal bit for bit; the host scalar alpha is in the key (a new alpha: a new capture, the
 * old graph replays the old alpha when its key comes back); a body that reads the host fails to
 * capture, its host state goes back, and it runs eagerly (then and on later calls of its key). */
static int test_segment_cache(void) {
    static const ng_graph_seg seg = {"test segment", seg_body, seg_get, seg_set};
    enum { N = 37 };
    float hx[N], hy[N], ex[N], ey[N], gx[N], gy[N];
    float *d[4];
    seg_ctx ce, cg;
    ng_graph_segs segs;
    uint64_t key[1], cap, rep, eag, fail;
    const float alphas[6] = {0.25f, 0.25f, -1.5f, 0.25f, -1.5f, -1.5f};
    int i, j;
    if (!g_cuda) return ngt_skip(g_reason);
    for (i = 0; i < N; i++) hx[i] = 0.01f * (float)(i % 7) - 0.02f, hy[i] = 0.5f - 0.003f * (float)i;
    for (j = 0; j < 4; j++) NGT_OK(ng_alloc(g_cuda, N * sizeof(float), (void **)&d[j]));
    NGT_OK(ng_set(g_cuda, d[0], hx, sizeof hx));
    NGT_OK(ng_set(g_cuda, d[1], hy, sizeof hy));
    NGT_OK(ng_set(g_cuda, d[2], hx, sizeof hx));
    NGT_OK(ng_set(g_cuda, d[3], hy, sizeof hy));
    memset(&ce, 0, sizeof ce);
    ce.be = g_cuda, ce.x = d[0], ce.y = d[1], ce.n = N;
    cg = ce;
    cg.x = d[2], cg.y = d[3];
    ng_graph_segs_init(&segs, g_cuda);
    segs.on = 1;
    for (i = 0; i < 6; i++) {
        ce.alpha = cg.alpha = alphas[i];
        key[0] = ng_graph_key_f64(alphas[i]);
        NGT_OK(seg_body(&ce));
        NGT_OK(ng_graph_seg_run(&segs, &seg, &cg, key, 1));
    }
    NGT_OK(ng_get(g_cuda, ex, d[0], sizeof ex));
    NGT_OK(ng_get(g_cuda, ey, d[1], sizeof ey));
    NGT_OK(ng_get(g_cuda, gx, d[2], sizeof gx));
    NGT_OK(ng_get(g_cuda, gy, d[3], sizeof gy));
    NGT_CHECK(memcmp(ex, gx, sizeof ex) == 0 && memcmp(ey, gy, sizeof ey) == 0, "segment != eager (x[0] %.9g vs %.9g)",
              (double)ex[0], (double)gx[0]);
    /* the key also holds the host state (calls), which every call advances: with a state
     * restored after each replay, keys differ only by alpha and calls; here every call has a new
     * calls value, so look at the cache as a whole instead: 6 runs, none eager, none failed */
    ng_graph_seg_counts(&segs, "test segment", &cap, &rep, &eag, &fail);
    NGT_CHECK(cap + rep == 6 && eag == 0 && fail == 0 && cg.calls == ce.calls - (int)rep,
              "%llu captures, %llu replays, %llu eager, %llu failures, calls %d / %d", (unsigned long long)cap,
              (unsigned long long)rep, (unsigned long long)eag, (unsigned long long)fail, cg.calls, ce.calls);
    ng_graph_segs_free(&segs);

    /* without host state in the key: 2 alphas, 2 captures, 4 replays, the values still equal */
    {
        static const ng_graph_seg seg2 = {"test segment, no state", seg_body, NULL, NULL};
        NGT_OK(ng_set(g_cuda, d[0], hx, sizeof hx));
        NGT_OK(ng_set(g_cuda, d[1], hy, sizeof hy));
        NGT_OK(ng_set(g_cuda, d[2], hx, sizeof hx));
        NGT_OK(ng_set(g_cuda, d[3], hy, sizeof hy));
        ng_graph_segs_init(&segs, g_cuda);
        segs.on = 1;
        for (i = 0; i < 6; i++) {
            ce.alpha = cg.alpha = alphas[i];
            key[0] = ng_graph_key_f64(alphas[i]);
            NGT_OK(seg_body(&ce));
            NGT_OK(ng_graph_seg_run(&segs, &seg2, &cg, key, 1));
        }
        NGT_OK(ng_get(g_cuda, ex, d[0], sizeof ex));
        NGT_OK(ng_get(g_cuda, gx, d[2], sizeof gx));
        NGT_CHECK(memcmp(ex, gx, sizeof ex) == 0, "segment (no state) != eager (x[0] %.9g vs %.9g)", (double)ex[0], (double)gx[0]);
        ng_graph_seg_counts(&segs, "test segment, no state", &cap, &rep, &eag, &fail);
        NGT_CHECK(cap == 2 && rep == 4 && eag == 0 && fail == 0, "no state: %llu captures, %llu replays, %llu eager, %llu failures",
                  (unsigned long long)cap, (unsigned long long)rep, (unsigned long long)eag, (unsigned long long)fail);
        ng_graph_segs_free(&segs);
    }

    /* a body that reads the host: the capture fails, its host state (calls) goes back, it runs
     * eagerly, and the same key stays eager; the results equal the eager ones */
    NGT_OK(ng_set(g_cuda, d[0], hx, sizeof hx));
    NGT_OK(ng_set(g_cuda, d[1], hy, sizeof hy));
    NGT_OK(ng_set(g_cuda, d[2], hx, sizeof hx));
    NGT_OK(ng_set(g_cuda, d[3], hy, sizeof hy));
    ce.calls = cg.calls = 0;
    ce.host_read = cg.host_read = 1;
    ng_graph_segs_init(&segs, g_cuda);
    segs.on = 1;
    for (i = 0; i < 3; i++) {
        ce.alpha = cg.alpha = 0.75f;
        key[0] = ng_graph_key_f64(0.75);
        NGT_OK(seg_body(&ce));
        NGT_OK(ng_graph_seg_run(&segs, &seg, &cg, key, 1));
        NGT_CHECK(cg.calls == ce.calls, "after call %d: the body's host state is %d, eager %d", i, cg.calls, ce.calls);
    }
    NGT_OK(ng_get(g_cuda, ex, d[0], sizeof ex));
    NGT_OK(ng_get(g_cuda, gx, d[2], sizeof gx));
    NGT_CHECK(memcmp(ex, gx, sizeof ex) == 0, "failed capture, then eager != eager (x[0] %.9g vs %.9g)", (double)ex[0],
              (double)gx[0]);
    ng_graph_seg_counts(&segs, "test segment", &cap, &rep, &eag, &fail);
    /* call 0: capture fails (host state 0 -> back to 0), eager; call 1 (state 1, a new key): the
     * same; call 2 likewise: 3 failures, 3 eager runs, no graph */
    NGT_CHECK(cap == 0 && rep == 0 && eag == 3 && fail == 3, "host read: %llu captures, %llu replays, %llu eager, %llu failures",
              (unsigned long long)cap, (unsigned long long)rep, (unsigned long long)eag, (unsigned long long)fail);
    /* the backend is not left capturing: an ordinary host read works */
    NGT_OK(ng_get(g_cuda, gy, d[3], sizeof gy));
    ng_graph_segs_free(&segs);
    for (j = 0; j < 4; j++) ng_free(g_cuda, d[j]);
    return NGT_PASS;
}

/* The sampled backward pass (K-FAC's statistics segment) and the sampled F v (truncated Newton's
 * curvature product) with the Philox step read on the device (sample_targets' step_dev, {step,
 * ticket 0}, advance 0) draw the same targets as with the step by value, also at a global column
 * col0 != 0 (dist-net's data-parallel draw): the per-case derivatives g_l and F v equal bit for bit,
 * and the device words are still {step, 0} after each (read only, so a replayed graph sees what the
 * host wrote), on the CPU backend and the emulated CUDA one. */
static int test_sampled_step_dev(void) {
    ng_backend *cpu = NULL, *bes[2];
    int b, c0;
    if (!g_cuda) return ngt_skip(g_reason);
    NGT_OK(ng_backend_cpu_init(&cpu));
    bes[0] = cpu;
    bes[1] = g_cuda;
    for (b = 0; b < 2; b++) {
        run r;
        ng_tensor x, g3, tv, tf1, tf2;
        const uint64_t step = (7ull << 16) + 3ull, key = 0x1234567ull;
        uint64_t words[2] = {step, 0}, back[2];
        uint64_t *dstep = NULL;
        float h1[6 * BATCH], h2[6 * BATCH], *hv, *f1, *f2, *dv = NULL;
        size_t n, i;
        NGT_OK(run_init(&r, bes[b], R_SGD));
        NGT_OK(ng_batches_next(&r.data, &x));
        NGT_OK(ng_alloc(bes[b], sizeof words, (void **)&dstep));
        n = ng_model_size(r.net);
        hv = (float *)malloc(3 * n * sizeof(float));
        NGT_CHECK(hv != NULL, "out of host memory");
        f1 = hv + n;
        f2 = f1 + n;
        for (i = 0; i < n; i++) hv[i] = (float)sin(0.37 * (double)i + 0.1);
        NGT_OK(ng_alloc(bes[b], 3 * n * sizeof(float), (void **)&dv));
        tv = ng_tensor_matrix(dv, (int)n, 1, (int)n);
        tf1 = ng_tensor_matrix(dv + n, (int)n, 1, (int)n);
        tf2 = ng_tensor_matrix(dv + 2 * n, (int)n, 1, (int)n);
        NGT_OK(ng_tensor_set(bes[b], &tv, hv));
        for (c0 = 0; c0 < 2; c0++) {
            const uint64_t col0 = c0 ? 37u : 0u;
            NGT_OK(ng_model_gradient(r.net, &x, NULL));
            NGT_OK(ng_net_backward_sampled_at(r.net, key, step, col0));
            NGT_OK(ng_model_statistic(r.net, "g3", &g3));
            NGT_CHECK(g3.rows == 6 && g3.cols == BATCH, "g3 is %d x %d", g3.rows, g3.cols);
            NGT_OK(ng_tensor_get(bes[b], &g3, h1));
            NGT_OK(ng_set(bes[b], dstep, words, sizeof words));
            NGT_OK(ng_net_backward_sampled_dev(r.net, key, dstep, 0, col0));
            NGT_OK(ng_model_statistic(r.net, "g3", &g3));
            NGT_OK(ng_tensor_get(bes[b], &g3, h2));
            NGT_CHECK(memcmp(h1, h2, sizeof h1) == 0, "%s col0 %llu: backward, step on the device != by value "
                      "(g3[0] %.9g vs %.9g)", bes[b]->iface->name, (unsigned long long)col0, (double)h1[0], (double)h2[0]);
            NGT_OK(ng_get(bes[b], back, dstep, sizeof back));
            NGT_CHECK(back[0] == step && back[1] == 0, "%s: backward moved the device step (%llu, %llu)",
                      bes[b]->iface->name, (unsigned long long)back[0], (unsigned long long)back[1]);
            /* F v: two samples, so two draws per product read the same device step */
            NGT_OK(ng_net_fvp_at(r.net, NG_FISHER_SAMPLED, 2, key, step, col0, &tv, &tf1));
            NGT_OK(ng_net_fvp_dev(r.net, NG_FISHER_SAMPLED, 2, key, dstep, col0, &tv, &tf2));
            NGT_OK(ng_tensor_get(bes[b], &tf1, f1));
            NGT_OK(ng_tensor_get(bes[b], &tf2, f2));
            NGT_CHECK(memcmp(f1, f2, n * sizeof(float)) == 0, "%s col0 %llu: F v, step on the device != by value "
                      "(%.9g vs %.9g)", bes[b]->iface->name, (unsigned long long)col0, (double)f1[0], (double)f2[0]);
            NGT_OK(ng_get(bes[b], back, dstep, sizeof back));
            NGT_CHECK(back[0] == step && back[1] == 0, "%s: F v moved the device step (%llu, %llu)",
                      bes[b]->iface->name, (unsigned long long)back[0], (unsigned long long)back[1]);
        }
        ng_free(bes[b], dv);
        ng_free(bes[b], dstep);
        free(hv);
        run_free(&r);
    }
    ng_backend_free(cpu);
    return NGT_PASS;
}

enum { S_NGD, S_HF, S_KFAC, S_NGD_SAMPLED, S_KFAC_ASYNC };
static const char *const seg_name[] = {"ngd", "hf", "kfac", "ngd (sampled Fisher)", "kfac --kfac-async 2"};

/* the 6-5-4-6 autoencoder of run_init with the plain step of size 1 (weight decay 1e-3) that K-FAC and
 * truncated Newton use (net_cmd.c), and no preconditioner yet */
static ng_status plain_step_run_init(run *r, ng_backend *be) {
    ng_sgd_config c;
    NG_TRY(run_init(r, be, R_SGD));
    ng_update_free(r->upd);
    ng_precond_free(r->pc);
    r->upd = NULL;
    r->pc = NULL;
    memset(&c, 0, sizeof c);
    c.lr = 1.0f;
    c.weight_decay = 1e-3f;
    return ng_update_sgd_init(be, r->net, &c, &r->upd);
}

/* the 6-5-4-6 autoencoder of run_init with a truncated-Newton or K-FAC preconditioner and the
 * plain step of size 1 these use (net_cmd.c) */
static ng_status seg_run_init(run *r, ng_backend *be, int kind) {
    ng_status s;
    NG_TRY(plain_step_run_init(r, be));
    if (kind == S_KFAC || kind == S_KFAC_ASYNC) {
        ng_kfac_config kc;
        ng_kfac_config_default(&kc);
        kc.approx = NG_KFAC_BLOCKDIAG;
        kc.timing = 0;
        kc.T1 = 3; /* lambda adapted at updates 3, 6, ... */
        kc.T2 = 10;
        kc.T3 = 5; /* inverses at updates 1, 2, 3, 5, 10, ... ; gamma candidates at 10, 20 */
        kc.lambda0 = 5.0;
        /* async: the inverses of the refresh points 5, 10, ... computed by the worker thread (on its
         * own stream) while the updates after them are captured and replayed, and swapped in 2
         * updates later (at 7, 12, ...: joined there, so eager and segments swap at the same update) */
        if (kind == S_KFAC_ASYNC) kc.async_lag = 2;
        s = ng_precond_kfac_init(be, r->net, &kc, &r->pc);
    } else {
        ng_tn_config tc;
        ng_tn_config_default(&tc);
        tc.method = kind == S_HF ? NG_TN_HF : NG_TN_NGD;
        tc.max_iter = kind == S_HF ? 8 : 5;
        tc.lr = 0.5;
        if (kind == S_NGD_SAMPLED) tc.fisher = NG_FISHER_SAMPLED, tc.fisher_samples = 2;
        s = ng_precond_tn_init(be, r->net, &tc, NULL, 0, &r->pc);
    }
    NG_TRY(s);
    return ng_trainer_init(&r->tr, r->net, r->pc, r->upd, &r->data, 5, NULL);
}

/* K-FAC: the parameters, then lambda, gamma, alpha, mu, rho and M(delta) - M(0) bit for bit (its
 * log_values' first 6 columns; the rest are timings): a rho off by a little need not move lambda
 * (the thresholds 1/4, 3/4), so the parameters alone would not see it */
static int same_params_kfac_pr(const pair *pr, uint64_t t) {
    ng_precond *pa = ((run *)pr->a)->pc, *pb = ((run *)pr->b)->pc;
    double va[NG_TRAIN_MAX_COLUMNS], vb[NG_TRAIN_MAX_COLUMNS];
    static const char *const col[6] = {"lambda", "gamma", "alpha", "mu", "rho", "qmodel"};
    int i;
    if (same_params_pr(pr, t) != NGT_PASS) return NGT_FAIL;
    NGT_OK(pa->iface->log_values(pa, va));
    NGT_OK(pb->iface->log_values(pb, vb));
    for (i = 0; i < 6; i++)
        NGT_CHECK(memcmp(&va[i], &vb[i], sizeof va[i]) == 0, "%s: after update %llu %s = %.17g eager, %.17g in segments",
                  pr->what, (unsigned long long)t, col[i], va[i], vb[i]);
    return NGT_PASS;
}

/* Another thread's unsafe calls while the main thread captures: an allocation, a blocking copy and a
 * synchronisation of its own stream on its own backend of the same device, as K-FAC's refresh worker
 * makes them (too briefly to meet a capture every run). Made deterministic: the network's grad_ready
 * hook, which runs on the main thread inside the gradient's body when it is captured or eager (a
 * replay runs no host code), hands one round of them to the other thread and waits for it. natgrad's captures are ThreadLocal, so every
 * call succeeds and no segment falls back to eager; with the Global mode the emulator invalidates the
 * gradient's captures and this test fails. */
typedef struct noise {
    ng_backend *be;
    float *d; /* (1) on be's device, the blocking copy's source */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long requests, done, errors;
    int stop;
} noise;
static void *noise_thread(void *arg) {
    noise *n = (noise *)arg;
    pthread_mutex_lock(&n->mu);
    for (;;) {
        void *p = NULL;
        float h;
        int bad = 0;
        while (!n->stop && n->done == n->requests) pthread_cond_wait(&n->cv, &n->mu);
        if (n->stop) break;
        pthread_mutex_unlock(&n->mu);
        if (ng_alloc(n->be, 256, &p) != NG_OK) bad++;
        ng_free(n->be, p);
        if (ng_get(n->be, &h, n->d, sizeof h) != NG_OK) bad++;
        if (ng_synchronize(n->be) != NG_OK) bad++;
        if (bad) printf("  another thread: %s\n", ng_last_error());
        ng_clear_error();
        pthread_mutex_lock(&n->mu);
        n->errors += bad;
        n->done++;
        pthread_cond_broadcast(&n->cv);
    }
    pthread_mutex_unlock(&n->mu);
    return NULL;
}
static ng_status ready_with_noise(void *user, size_t lo, size_t hi) {
    noise *n = (noise *)user;
    (void)lo;
    (void)hi;
    pthread_mutex_lock(&n->mu);
    n->requests++;
    pthread_cond_broadcast(&n->cv);
    while (n->done != n->requests) pthread_cond_wait(&n->cv, &n->mu);
    pthread_mutex_unlock(&n->mu);
    return NG_OK;
}
static noise *g_noise; /* seg_run_init hooks it into the segmented run's network when set */

static int seg_vs_eager(int kind, uint64_t steps, int log_every) {
    run a, b;
    uint64_t cap, rep, eag, fail;
    pair pr = {seg_name[kind], &a, &b, steps};
    int kf = kind == S_KFAC || kind == S_KFAC_ASYNC;
    const char *product = kf ? "kfac F^-1 product" : "tn curvature product";
    NGT_OK(seg_run_init(&a, g_cuda, kind));
    NGT_OK(seg_run_init(&b, g_cuda, kind));
    NGT_OK(ng_trainer_set_cuda_graph(&b.tr, 1));
    NGT_CHECK(b.tr.graph.seg == 1, "%s: not run in segments", seg_name[kind]);
    if (g_noise) {
        b.net->grad_ready = ready_with_noise;
        b.net->grad_user = g_noise;
    }
    if (step_both(&a.tr, &b.tr, 0, steps, log_every, kf ? same_params_kfac_pr : same_params_pr, &pr) != NGT_PASS)
        return NGT_FAIL;
    ng_graph_seg_counts(&b.tr.graph.segs, "gradient", &cap, &rep, &eag, &fail);
    printf("  %s: %llu updates: gradient %llu captured, %llu replayed, %llu eager", seg_name[kind], (unsigned long long)steps,
           (unsigned long long)cap, (unsigned long long)rep, (unsigned long long)eag);
    NGT_CHECK(rep > 0 && fail == 0 && cap + rep + eag == steps, "%s: gradient %llu captures, %llu replays, %llu eager, %llu failures",
              seg_name[kind], (unsigned long long)cap, (unsigned long long)rep, (unsigned long long)eag, (unsigned long long)fail);
    ng_graph_seg_counts(&b.tr.graph.segs, product, &cap, &rep, &eag, &fail);
    printf("; %s %llu captured, %llu replayed, %llu eager; parameters identical after every update\n", product,
           (unsigned long long)cap, (unsigned long long)rep, (unsigned long long)eag);
    NGT_CHECK(rep > cap && fail == 0, "%s: %s %llu captures, %llu replays, %llu failures", seg_name[kind], product,
              (unsigned long long)cap, (unsigned long long)rep, (unsigned long long)fail);
    /* a step by value would be a new graph every update: with it on the device, fewer captures than updates */
    /* no segment's capture failed (an unsafe call from any thread the capture mode does not allow) */
    NGT_CHECK(b.tr.graph.segs.failures == 0, "%s: %llu failed captures", seg_name[kind],
              (unsigned long long)b.tr.graph.segs.failures);
    if (kind == S_NGD_SAMPLED)
        NGT_CHECK(cap < steps - b.tr.graph.eager, "%s: %llu captures in %llu segmented updates", seg_name[kind],
                  (unsigned long long)cap, (unsigned long long)(steps - b.tr.graph.eager));
    if (!kf) { /* CG's vector work after each product: 2 row parities per buffer set */
        ng_graph_seg_counts(&b.tr.graph.segs, "cg step", &cap, &rep, &eag, &fail);
        printf("  %s: cg step %llu captured, %llu replayed, %llu eager\n", seg_name[kind], (unsigned long long)cap,
               (unsigned long long)rep, (unsigned long long)eag);
        NGT_CHECK(rep > cap && cap <= 4 && fail == 0 && eag == 0, "%s: cg step %llu captures, %llu replays, %llu eager, %llu failures",
                  seg_name[kind], (unsigned long long)cap, (unsigned long long)rep, (unsigned long long)eag,
                  (unsigned long long)fail);
    }
    if (kf) {
        ng_graph_seg_counts(&b.tr.graph.segs, "kfac quadratic model", &cap, &rep, &eag, &fail);
        printf("  kfac quadratic model: %llu captured, %llu replayed, %llu eager\n", (unsigned long long)cap,
               (unsigned long long)rep, (unsigned long long)eag);
        NGT_CHECK(rep > 0 && fail == 0 && cap + rep + eag == steps, "kfac quadratic model: %llu captures, %llu replays, %llu eager, %llu failures",
                  (unsigned long long)cap, (unsigned long long)rep, (unsigned long long)eag, (unsigned long long)fail);
        /* the statistics' weights eps_k = min(1 - 1/k, 0.95) settle at k = 20: replays from there */
        ng_graph_seg_counts(&b.tr.graph.segs, "kfac statistics", &cap, &rep, &eag, &fail);
        printf("  kfac statistics: %llu captured, %llu replayed, %llu eager\n", (unsigned long long)cap,
               (unsigned long long)rep, (unsigned long long)eag);
        /* (the eager updates take ng_kfac_accumulate, outside the cache) */
        NGT_CHECK(rep > 0 && fail == 0 && eag == 0 && cap + rep + b.tr.graph.eager == steps,
                  "kfac statistics: %llu captures, %llu replays, %llu eager, %llu failures", (unsigned long long)cap,
                  (unsigned long long)rep, (unsigned long long)eag, (unsigned long long)fail);
        /* rho's h(theta + delta) every T1 = 3 updates: one graph per batch buffer and pass state, so
         * replays among the evaluations (each exactly the eager ng_net_evaluate's doubles: rho is
         * compared bit for bit after every update) */
        ng_graph_seg_counts(&b.tr.graph.segs, "kfac objective", &cap, &rep, &eag, &fail);
        printf("  kfac objective: %llu captured, %llu replayed, %llu eager\n", (unsigned long long)cap,
               (unsigned long long)rep, (unsigned long long)eag);
        NGT_CHECK(rep > 0 && fail == 0 && cap + rep + eag == steps / 3,
                  "kfac objective: %llu captures, %llu replays, %llu eager, %llu failures in %llu evaluations",
                  (unsigned long long)cap, (unsigned long long)rep, (unsigned long long)eag, (unsigned long long)fail,
                  (unsigned long long)(steps / 3));
    }
    run_free(&a);
    run_free(&b);
    return NGT_PASS;
}

CUDA_TEST(test_segments_ngd, seg_vs_eager(S_NGD, 14, 5))
/* chunks of 3 cases: batches of 4 are 2 chunks, every product recomputes the forward passes,
 * and the pass state each segment leaves (which chunk is in the buffers) matters */
static int test_segments_ngd_chunked(void) {
    int r;
    if (!g_cuda) return ngt_skip(g_reason);
    g_chunk = 3;
    r = seg_vs_eager(S_NGD, 10, 0);
    g_chunk = 0;
    return r;
}
/* the sampled Fisher: its stream step read on the device while segments replay, so the products
 * replay across updates (by value, each update would be a new capture) */
CUDA_TEST(test_segments_ngd_sampled, seg_vs_eager(S_NGD_SAMPLED, 12, 0))
CUDA_TEST(test_segments_hf, seg_vs_eager(S_HF, 12, 0))
CUDA_TEST(test_segments_kfac, seg_vs_eager(S_KFAC, 30, 7))
/* --kfac-async 2 in segments equals it eager bit for bit after every update (the inverses swapped in
 * at the same update: the worker is joined there), with another thread's unsafe calls in every
 * gradient */
static int test_segments_kfac_async(void) {
    noise n;
    pthread_t th;
    int r;
    if (!g_cuda) return ngt_skip(g_reason);
    memset(&n, 0, sizeof n);
    pthread_mutex_init(&n.mu, NULL);
    pthread_cond_init(&n.cv, NULL);
    NGT_OK(ng_backend_init(g_cuda->kind, g_cuda->device_index, &n.be, NULL, 0));
    NGT_OK(ng_alloc(n.be, sizeof(float), (void **)&n.d));
    NGT_CHECK(pthread_create(&th, NULL, noise_thread, &n) == 0, "cannot start the other thread");
    g_noise = &n;
    r = seg_vs_eager(S_KFAC_ASYNC, 30, 7);
    g_noise = NULL;
    pthread_mutex_lock(&n.mu);
    n.stop = 1;
    pthread_cond_broadcast(&n.cv);
    pthread_mutex_unlock(&n.mu);
    pthread_join(th, NULL);
    ng_free(n.be, n.d);
    ng_backend_free(n.be);
    pthread_mutex_destroy(&n.mu);
    pthread_cond_destroy(&n.cv);
    printf("  another thread: %ld rounds of allocation, blocking copy and synchronisation inside the gradients, %ld errors\n",
           n.done, n.errors);
    NGT_CHECK(n.done > 0 && n.errors == 0, "another thread's calls during the captures: %ld rounds, %ld errors", n.done,
              n.errors);
    return r;
}

/* A gradient that reads the host (the model's grad_ready hook, which the network calls during its
 * backward pass, reads a norm): its segment's capture fails every time, the trainer goes on with the
 * gradient run eagerly (the network's pass state put back first) and the curvature products still
 * replay; the run equals the eager one bit for bit. */
static ng_status ready_with_host_read(void *user, size_t lo, size_t hi) {
    ng_model *m = (ng_model *)user;
    float r;
    (void)lo;
    (void)hi;
    return ng_nrm2(m->be, ng_model_size(m), m->grad_flat.data, &r);
}
static int test_segments_failed_capture(void) {
    run a, b;
    uint64_t cap, rep, eag, fail;
    pair pr = {"ngd, failing gradient capture", &a, &b, 8};
    if (!g_cuda) return ngt_skip(g_reason);
    NGT_OK(seg_run_init(&a, g_cuda, S_NGD));
    NGT_OK(seg_run_init(&b, g_cuda, S_NGD));
    a.net->grad_ready = b.net->grad_ready = ready_with_host_read;
    a.net->grad_user = a.net;
    b.net->grad_user = b.net;
    NGT_OK(ng_trainer_set_cuda_graph(&b.tr, 1));
    if (step_both(&a.tr, &b.tr, 0, 8, 0, same_params_pr, &pr) != NGT_PASS) return NGT_FAIL;
    ng_graph_seg_counts(&b.tr.graph.segs, "gradient", &cap, &rep, &eag, &fail);
    NGT_CHECK(cap == 0 && rep == 0 && fail > 0 && eag == 8, "gradient: %llu captures, %llu replays, %llu eager, %llu failures",
              (unsigned long long)cap, (unsigned long long)rep, (unsigned long long)eag, (unsigned long long)fail);
    printf("  ngd with a gradient that reads the host: %llu failed captures, 8 gradients eager", (unsigned long long)fail);
    ng_graph_seg_counts(&b.tr.graph.segs, "tn curvature product", &cap, &rep, &eag, &fail);
    printf("; curvature products %llu captured, %llu replayed; parameters identical\n", (unsigned long long)cap,
           (unsigned long long)rep);
    NGT_CHECK(rep > 0 && fail == 0, "curvature products: %llu replays, %llu failures", (unsigned long long)rep,
              (unsigned long long)fail);
    a.net->grad_ready = b.net->grad_ready = NULL;
    run_free(&a);
    run_free(&b);
    return NGT_PASS;
}

/* K-FAC in the natural parameter space is not a segment trainer: captured whole */
static int test_segments_kfac_phi(void) {
    run r;
    ng_kfac_config kc;
    ng_sgd_config c;
    if (!g_cuda) return ngt_skip(g_reason);
    NGT_OK(run_init(&r, g_cuda, R_SGD));
    ng_update_free(r.upd);
    ng_precond_free(r.pc);
    memset(&c, 0, sizeof c);
    c.lr = 1.0f;
    NGT_OK(ng_update_sgd_init(g_cuda, r.net, &c, &r.upd));
    ng_kfac_config_default(&kc);
    kc.T3 = 4;
    kc.T2 = 8;
    /* K-FAC in the natural parameter space (--precond kfac --phi-every): captured whole, not in
     * segments (test_graph_net_kfac_phi) */
    kc.phi_every = 2;
    NGT_OK(ng_precond_kfac_init(g_cuda, r.net, &kc, &r.pc));
    NGT_OK(ng_trainer_init(&r.tr, r.net, r.pc, r.upd, &r.data, 5, NULL));
    NGT_OK(ng_trainer_set_cuda_graph(&r.tr, 1));
    NGT_CHECK(r.tr.graph.on && !r.tr.graph.seg, "kfac phi: graph on %d, segments %d", r.tr.graph.on, r.tr.graph.seg);
    run_free(&r);
    return NGT_PASS;
}

/* The launch counts' cases: updates 0-2 of tr (0 eager, then both batch buffers), then update 3
 * profiled; its "train step" row's device calls into c (NG_DEV_COUNT) and net's parameters after it
 * into *theta (allocated here when NULL). */
static int counts_update3(ng_trainer *tr, ng_model *net, double *c, float **theta) {
    ng_profile_config prc;
    ng_profile_row rows[96];
    const ng_profile_row *st;
    int k, n;
    for (k = 0; k < 3; k++) NGT_OK(ng_trainer_step(tr, NULL));
    memset(&prc, 0, sizeof prc);
    prc.measure = 1;
    NGT_OK(ng_profile_start(g_cuda, &prc));
    ng_profile_update(4, 1);
    NGT_OK(ng_trainer_step(tr, NULL));
    ng_profile_update(4, 0);
    NGT_OK(ng_profile_finish());
    n = ng_profile_rows(rows, 96);
    if (n > 96) n = 96;
    st = find_row(rows, n, "train step");
    NGT_CHECK(st && st->calls == 1, "train step row");
    for (k = 0; k < NG_DEV_COUNT; k++) c[k] = st->device_calls[k];
    if (!*theta) *theta = (float *)malloc(ng_model_size(net) * sizeof(float));
    NGT_CHECK(*theta != NULL, "out of memory");
    NGT_OK(ng_tensor_get(g_cuda, &net->param_flat, *theta));
    return NGT_PASS;
}

/* the segments' run (c[1], theta1) against the eager one (c[0], theta0) after update 3: the same np
 * parameters bit for bit, graphs replacing launches (fewer kernels and cuBLAS calls); the case's line */
static int counts_compare(const char *what, double c[2][NG_DEV_COUNT], const float *theta0, const float *theta1, size_t np) {
    NGT_CHECK(memcmp(theta0, theta1, np * sizeof(float)) == 0, "%s: eager and segments differ after 4 updates", what);
    printf("  %s, update 3: eager %g kernels, %g cuBLAS, %g copies; segments %g kernels, %g cuBLAS, %g copies, %g graphs\n", what,
           c[0][NG_DEV_KERNEL], c[0][NG_DEV_BLAS], c[0][NG_DEV_COPY], c[1][NG_DEV_KERNEL], c[1][NG_DEV_BLAS], c[1][NG_DEV_COPY],
           c[1][NG_DEV_GRAPH]);
    NGT_CHECK(c[1][NG_DEV_GRAPH] > 0.0 && c[1][NG_DEV_KERNEL] < c[0][NG_DEV_KERNEL] && c[1][NG_DEV_BLAS] < c[0][NG_DEV_BLAS] &&
                  c[0][NG_DEV_GRAPH] == 0.0,
              "%s: segments do not replace launches", what);
    return NGT_PASS;
}

/* the case's two rows (eager, segments) appended to the NG_LAUNCH_COUNTS_CSV file csv */
static int counts_csv(const char *csv, const char *what, double c[2][NG_DEV_COUNT]) {
    FILE *f = fopen(csv, "a");
    int mode;
    NGT_CHECK(f != NULL, "cannot append to %s", csv);
    for (mode = 0; mode < 2; mode++) {
        const double *d = c[mode];
        fprintf(f, "%s,%s,%g,%g,%g,%g,%g,%g\n", what, mode ? "cuda-graph segments" : "eager", d[NG_DEV_KERNEL], d[NG_DEV_BLAS],
                d[NG_DEV_SOLVER], d[NG_DEV_COPY], d[NG_DEV_GRAPH],
                d[NG_DEV_KERNEL] + d[NG_DEV_BLAS] + d[NG_DEV_SOLVER] + d[NG_DEV_COPY] + d[NG_DEV_GRAPH]);
    }
    fclose(f);
    return NGT_PASS;
}

/* Device calls per update of the curves autoencoder (L = 12, m = 8) under NGD (CG, 10 iterations:
 * rtol 0), HF (CG, at most 10 iterations, its progress rule) and block-diagonal K-FAC, eager and
 * with --cuda-graph 1 (segments), at update 3 (K-FAC: k = 4, no refresh, no lambda adjustment).
 * The segment run ends with the same parameters bit for bit and makes fewer kernel launches and
 * cuBLAS calls; with NG_LAUNCH_COUNTS_CSV set, the counts are appended (bench/launch_counts.sh). */
static int test_counts_segments(void) {
    static const char *const what[3] = {"curves-autoencoder NGD (CG 10) batch 8", "curves-autoencoder HF (CG <= 10) batch 8",
                                        "curves-autoencoder K-FAC block-diagonal batch 8"};
    const int m = 8, ncases = 16;
    const char *csv = getenv("NG_LAUNCH_COUNTS_CSV");
    double c[3][2][NG_DEV_COUNT];
    float *x, *theta[2];
    int kind, mode, i;
    size_t np = 0;
    if (!g_cuda) return ngt_skip(g_reason);
    x = (float *)malloc(sizeof(float) * 784 * ncases);
    NGT_CHECK(x != NULL, "out of memory");
    for (i = 0; i < 784 * ncases; i++) x[i] = g_x[i % (DIM * NCASES)];
    theta[0] = theta[1] = NULL;
    for (kind = 0; kind < 3; kind++) {
        for (mode = 0; mode < 2; mode++) {
            ng_net_config cfg;
            ng_model *net = NULL;
            ng_update *upd = NULL;
            ng_precond *pc = NULL;
            ng_batches data;
            ng_trainer tr;
            ng_sgd_config sc;
            memset(&tr, 0, sizeof tr);
            ng_net_config_default(&cfg);
            NGT_OK(ng_net_preset("curves-autoencoder", &cfg));
            cfg.init = NG_INIT_GAUSSIAN;
            cfg.init_scale = 0.05f;
            NGT_OK(ng_net_create(g_cuda, &cfg, &net));
            memset(&sc, 0, sizeof sc);
            sc.lr = 1.0f;
            NGT_OK(ng_update_sgd_init(g_cuda, net, &sc, &upd));
            if (kind == 2) {
                ng_kfac_config kc;
                ng_kfac_config_default(&kc);
                kc.timing = 0;
                NGT_OK(ng_precond_kfac_init(g_cuda, net, &kc, &pc));
            } else {
                ng_tn_config tc;
                ng_tn_config_default(&tc);
                tc.method = kind == 1 ? NG_TN_HF : NG_TN_NGD;
                tc.max_iter = 10;
                tc.rtol = 0.0;
                tc.lr = 0.5;
                NGT_OK(ng_precond_tn_init(g_cuda, net, &tc, NULL, 0, &pc));
            }
            NGT_OK(ng_batches_init(&data, g_cuda, x, 784, ncases, m, 3, 0, 1));
            NGT_OK(ng_trainer_init(&tr, net, pc, upd, &data, 3, NULL));
            if (mode) NGT_OK(ng_trainer_set_cuda_graph(&tr, 1));
            if (counts_update3(&tr, net, c[kind][mode], &theta[mode]) != NGT_PASS) return NGT_FAIL;
            np = ng_model_size(net);
            ng_trainer_release(&tr);
            ng_batches_free(&data);
            ng_update_free(upd);
            ng_precond_free(pc);
            ng_net_free(net);
        }
        if (counts_compare(what[kind], c[kind], theta[0], theta[1], np) != NGT_PASS) return NGT_FAIL;
    }
    free(theta[0]);
    free(theta[1]);
    free(x);
    for (kind = 0; csv && kind < 3; kind++)
        if (counts_csv(csv, what[kind], c[kind]) != NGT_PASS) return NGT_FAIL;
    return NGT_PASS;
}

/* Device calls of update 3 of a batch-normalised conv net (c3k3-bn-relu-mp2-d3, 8 images in one
 * chunk) under NGD (CG with 10 iterations: rtol 0), eager and as graph segments: the segment run
 * ends with the same parameters bit for bit and makes fewer kernel launches and cuBLAS calls; with
 * NG_LAUNCH_COUNTS_CSV set the counts are appended (bench/launch_counts.sh). */
static int test_counts_cnn_segments(void) {
    const char *what = "cnn c3k3-bn-relu-mp2-d3 NGD (CG 10) batch 8";
    const char *csv = getenv("NG_LAUNCH_COUNTS_CSV");
    double c[2][NG_DEV_COUNT];
    float *theta[2] = {NULL, NULL};
    size_t np = 0;
    int mode, ok;
    if (!g_cuda) return ngt_skip(g_reason);
    for (mode = 0; mode < 2; mode++) {
        ng_cnn_config cfg;
        ng_model *net = NULL;
        ng_update *upd = NULL;
        ng_precond *pc = NULL;
        ng_batches data;
        ng_trainer tr;
        ng_sgd_config sc;
        ng_tn_config tc;
        memset(&tr, 0, sizeof tr);
        ng_cnn_config_default(&cfg);
        cfg.c = 1, cfg.h = 6, cfg.w = 6;
        NGT_OK(ng_cnn_parse_spec("c3k3-bn-relu-mp2-d3", &cfg));
        cfg.chunk = 8;
        cfg.seed = 23;
        NGT_OK(ng_cnn_create(g_cuda, &cfg, &net));
        memset(&sc, 0, sizeof sc);
        sc.lr = 1.0f;
        NGT_OK(ng_update_sgd_init(g_cuda, net, &sc, &upd));
        ng_tn_config_default(&tc);
        tc.method = NG_TN_NGD;
        tc.max_iter = 10;
        tc.rtol = 0.0;
        tc.lr = 0.5;
        NGT_OK(ng_precond_tn_init(g_cuda, net, &tc, NULL, 0, &pc));
        NGT_OK(ng_batches_init(&data, g_cuda, g_cnn_x, CNN_ROWS, 16, 8, 3, 0, 1)); /* 2 full batches per epoch */
        NGT_OK(ng_trainer_init(&tr, net, pc, upd, &data, 3, NULL));
        if (mode) NGT_OK(ng_trainer_set_cuda_graph(&tr, 1));
        if (counts_update3(&tr, net, c[mode], &theta[mode]) != NGT_PASS) return NGT_FAIL;
        np = ng_model_size(net);
        ng_trainer_release(&tr);
        ng_batches_free(&data);
        ng_update_free(upd);
        ng_precond_free(pc);
        ng_cnn_free(net);
    }
    ok = counts_compare(what, c, theta[0], theta[1], np);
    free(theta[0]);
    free(theta[1]);
    if (ok != NGT_PASS) return NGT_FAIL;
    return csv ? counts_csv(csv, what, c) : NGT_PASS;
}

/* ---- the objective evaluations of truncated Newton's searches, rho and HF's backtracking ---- */

/* ng_net_evaluate_dev + ng_net_evaluate_read give what ng_net_evaluate gives, bit for bit, on the CPU
 * backend and the emulated CUDA one: one chunk, chunks of 3 cases (4 chunks of 10 cases: a partial
 * last one) and chunks of 1 case with 40 cases (40 chunks: the read goes in pieces of 32); the
 * network's pass state ends the same (no forward pass of the batch held, no backward pass). */
static int test_evaluate_dev(void) {
    static const int chunks[3] = {0, 3, 1};
    ng_backend *cpu = NULL, *bes[2];
    float xs[DIM * 40];
    int b, c, i;
    if (!g_cuda) return ngt_skip(g_reason);
    for (i = 0; i < DIM * 40; i++) xs[i] = g_x[i % (DIM * NCASES)] * (1.0f - 0.01f * (float)(i / (DIM * NCASES)));
    NGT_OK(ng_backend_cpu_init(&cpu));
    bes[0] = cpu;
    bes[1] = g_cuda;
    for (b = 0; b < 2; b++)
        for (c = 0; c < 3; c++) {
            run r;
            ng_tensor x;
            float *dx = NULL, *sums = NULL;
            const int N = c == 2 ? 40 : NCASES;
            double o1, e1, o2, e2;
            int K;
            g_chunk = chunks[c];
            NGT_OK(run_init(&r, bes[b], R_SGD));
            g_chunk = 0;
            NGT_OK(ng_alloc(bes[b], sizeof(float) * DIM * (size_t)N, (void **)&dx));
            NGT_OK(ng_set(bes[b], dx, xs, sizeof(float) * DIM * (size_t)N));
            x = ng_tensor_matrix(dx, DIM, N, DIM);
            K = ng_net_evaluate_chunks(r.net, N);
            NGT_CHECK(K == (chunks[c] ? (N + chunks[c] - 1) / chunks[c] : 1), "%d cases, chunk %d: %d chunks", N, chunks[c], K);
            NGT_OK(ng_alloc(bes[b], sizeof(float) * 2 * (size_t)K, (void **)&sums));
            NGT_OK(ng_net_evaluate(r.net, &x, &o1, &e1));
            NGT_OK(ng_net_evaluate_dev(r.net, &x, sums));
            NGT_OK(ng_net_evaluate_read(r.net, N, sums, &o2, &e2));
            NGT_CHECK(memcmp(&o1, &o2, sizeof o1) == 0 && memcmp(&e1, &e2, sizeof e1) == 0,
                      "%s, %d chunks: evaluate %.17g / %.17g, the two halves %.17g / %.17g", bes[b]->iface->name, K, o1, e1, o2,
                      e2);
            NGT_CHECK(o1 > 0.0 && isfinite(o1), "%s: objective %g", bes[b]->iface->name, o1);
            NGT_CHECK(ng_net_evaluate_dev(r.net, &x, NULL) == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "NULL device sums"),
                      "NULL sums: %s", ng_last_error());
            ng_free(bes[b], sums);
            ng_free(bes[b], dx);
            run_free(&r);
        }
    ng_backend_free(cpu);
    return NGT_PASS;
}

/* the autoencoder of seg_run_init with a truncated-Newton method that searches (ngd-l, ncg-l,
 * ncg-f) or hf, its rho on (adapt_lambda, the default); ncg-f with eta = 1e-3 (the weight-decay term
 * of each objective, an eager host-read norm after the segment); ngd-l with rho's quadratic model,
 * whose curvature product follows the search's evaluations, so it recomputes the forward pass only
 * if the pass state a replayed evaluation leaves is put back (no batch forward pass held) */
static ng_status eval_seg_run_init(run *r, ng_backend *be, int method) {
    ng_tn_config tc;
    NG_TRY(plain_step_run_init(r, be));
    ng_tn_config_default(&tc);
    tc.method = method;
    tc.max_iter = method == NG_TN_HF ? 8 : 5;
    tc.lr = 0.5;
    if (method == NG_TN_NCG_F) tc.eta = 1e-3;
    if (method == NG_TN_NGD_L) tc.rho_model = NG_TN_RHO_QUADRATIC;
    NG_TRY(ng_precond_tn_init(be, r->net, &tc, NULL, 0, &r->pc));
    return ng_trainer_init(&r->tr, r->net, r->pc, r->upd, &r->data, 5, NULL);
}

/* eager and in segments, the parameters equal bit for bit after every update; the objective
 * evaluations (searches, rho, backtracking) replay: every evaluation of an unlogged update t >= 1
 * is a capture or a replay, none fails, and the captures are a handful (the batch buffers and
 * sizes x the pass state an evaluation starts from: after a curvature product or after another
 * evaluation), far fewer than the replays */
static int eval_seg_vs_eager(const char *what, int method, uint64_t steps, int log_every) {
    run a, b;
    uint64_t cap, rep, eag, fail, evals = 0, t;
    pair pr = {what, &a, &b, steps};
    NGT_OK(eval_seg_run_init(&a, g_cuda, method));
    NGT_OK(eval_seg_run_init(&b, g_cuda, method));
    NGT_OK(ng_trainer_set_cuda_graph(&b.tr, 1));
    NGT_CHECK(b.tr.graph.seg == 1, "%s: not run in segments", what);
    for (t = 0; t < steps; t++) {
        double v[16];
        if (step_both(&a.tr, &b.tr, t, t + 1, log_every, same_params_pr, &pr) != NGT_PASS) return NGT_FAIL;
        NGT_OK(b.pc->iface->log_values(b.pc, v)); /* host values: the update's evaluations in column 8 */
        evals += (uint64_t)v[8];
    }
    ng_graph_seg_counts(&b.tr.graph.segs, "tn objective", &cap, &rep, &eag, &fail);
    printf("  %s: %llu updates, %llu objective evaluations: %llu captured, %llu replayed, %llu eager; parameters identical "
           "after every update\n", what, (unsigned long long)steps, (unsigned long long)evals, (unsigned long long)cap,
           (unsigned long long)rep, (unsigned long long)eag);
    NGT_CHECK(cap + rep + eag == evals && fail == 0, "%s: tn objective %llu captures + %llu replays + %llu eager != %llu "
              "evaluations (%llu failures)", what, (unsigned long long)cap, (unsigned long long)rep, (unsigned long long)eag,
              (unsigned long long)evals, (unsigned long long)fail);
    NGT_CHECK(rep > 2 * cap && cap <= 12 && eag > 0, "%s: tn objective %llu captures, %llu replays, %llu eager", what,
              (unsigned long long)cap, (unsigned long long)rep, (unsigned long long)eag);
    run_free(&a);
    run_free(&b);
    return NGT_PASS;
}

CUDA_TEST(test_segments_ngd_l, eval_seg_vs_eager("ngd-l, quadratic rho", NG_TN_NGD_L, 12, 5))
CUDA_TEST(test_segments_ncg_l, eval_seg_vs_eager("ncg-l", NG_TN_NCG_L, 12, 0))
CUDA_TEST(test_segments_ncg_f, eval_seg_vs_eager("ncg-f, eta 1e-3", NG_TN_NCG_F, 12, 0))
CUDA_TEST(test_segments_hf_evals, eval_seg_vs_eager("hf (backtracking, rho)", NG_TN_HF, 12, 0))
/* chunks of 3 cases: each evaluation is 2 chunks, their sums in 2 device slots */
static int test_segments_ncg_l_chunked(void) {
    int r;
    if (!g_cuda) return ngt_skip(g_reason);
    g_chunk = 3;
    r = eval_seg_vs_eager("ncg-l, chunks of 3", NG_TN_NCG_L, 10, 0);
    g_chunk = 0;
    return r;
}

/* Conv nets under truncated Newton in segments: cnn_run's 6x6 images in batches of 4, in chunks of
 * 4 (ngd-l, hf: one chunk, whose forward pass the gradient leaves in the buffers for the products
 * until an evaluation replaces it) or 3 (ncg-l, sampled: two chunks, whose forward passes every
 * product recomputes), so the pass state a segment starts from and leaves matters; without
 * augmentation (refused by tn). ngd-l (G v)
 * with rho's quadratic model (its curvature product follows the line search's evaluations: it
 * recomputes the forward pass only if a replayed evaluation leaves "no forward pass held"), ngd with
 * the sampled Fisher (its stream step on the device), hf with the Hessian (H v; its backtracking and rho evaluate the objective) on the batch-norm net,
 * ncg-l (a line search of evaluations every update) and ncg-f on the empirical Fisher with eta > 0 (a
 * batch-norm net in chunks of 3). Eager and in segments the parameters, running averages, gradient count and batch
 * objective, and tn's lambda, rho and step sizes, are equal bit for bit after every update; the gradient, the curvature
 * products and the objective evaluations are captures or replays, none fails, and they replay. */
enum { CT_NGD, CT_HF_BN, CT_NCG, CT_SAMPLED, CT_WHITEN, CT_NCGF_EMP };
static const char *const cnn_tn_name[] = {"cnn ngd-l (G v), quadratic rho", "cnn hf (H v), batch norm", "cnn ncg-l",
                                          "cnn ngd (sampled Fisher)", "cnn ngd, whitening layer (T = 4)",
                                          "cnn ncg-f (empirical Fisher, eta 1e-3), batch norm"};

static ng_status cnn_tn_run_init(cnn_run *r, int kind) {
    ng_cnn_config cfg;
    ng_sgd_config c;
    ng_tn_config tc;
    ng_status s;
    memset(r, 0, sizeof *r);
    ng_cnn_config_default(&cfg);
    cfg.c = 1, cfg.h = 6, cfg.w = 6;
    NG_TRY(ng_cnn_parse_spec(cnn_spec[kind == CT_HF_BN || kind == CT_NCGF_EMP ? CNN_BN : kind == CT_WHITEN ? CNN_WHITEN : CNN_AUG],
                             &cfg));
    cfg.chunk = kind == CT_NGD || kind == CT_HF_BN ? 4 : 3;
    if (kind == CT_WHITEN) {
        cfg.whiten_every = 4; /* the gradients of updates 0, 4, 8 re-whiten (host algebra) */
        cfg.whiten_samples = 4;
    }
    cfg.seed = 23;
    NG_TRY(ng_cnn_create(g_cuda, &cfg, &r->m));
    memset(&c, 0, sizeof c); /* the plain step of size 1 of truncated Newton (cnn_cmd.c) */
    c.lr = 1.0f;
    c.weight_decay = 1e-3f;
    s = ng_update_sgd_init(g_cuda, r->m, &c, &r->upd);
    ng_tn_config_default(&tc);
    tc.method = kind == CT_HF_BN ? NG_TN_HF : kind == CT_NCG ? NG_TN_NCG_L : kind == CT_NGD ? NG_TN_NGD_L
              : kind == CT_NCGF_EMP ? NG_TN_NCG_F : NG_TN_NGD;
    tc.max_iter = kind == CT_HF_BN ? 6 : 4;
    tc.lr = 0.5;
    if (kind == CT_HF_BN) tc.curvature = NG_TN_CURV_HESSIAN;
    if (kind == CT_NGD) tc.rho_model = NG_TN_RHO_QUADRATIC; /* a product after the search's evaluations */
    if (kind == CT_SAMPLED) tc.fisher = NG_FISHER_SAMPLED, tc.fisher_samples = 2;
    if (kind == CT_NCGF_EMP) tc.fisher = NG_FISHER_EMPIRICAL, tc.eta = 1e-3;
    tc.hf_precond = 0; /* refused on a cnn */
    if (s == NG_OK) s = ng_precond_tn_init(g_cuda, r->m, &tc, NULL, 0, &r->pc);
    if (s == NG_OK) s = ng_batches_init(&r->data, g_cuda, g_cnn_x, CNN_ROWS, CNN_N, 4, 5, 0, 1);
    if (s == NG_OK) r->data_ready = 1;
    if (s == NG_OK) s = ng_trainer_init(&r->tr, r->m, r->pc, r->upd, &r->data, 5, NULL);
    return s;
}

/* same_cnn, then truncated Newton's lambda, rho, alpha, beta, solver iterations and stop, relative
 * residual, HF's iterate and the evaluations (its log_values' first 9 columns; the rest are timings)
 * bit for bit: a rho off by a little need not move lambda, so the parameters alone would not see it */
static int same_cnn_tn_pr(const pair *pr, uint64_t t) {
    ng_precond *pa = ((cnn_run *)pr->a)->pc, *pb = ((cnn_run *)pr->b)->pc;
    double va[NG_TRAIN_MAX_COLUMNS], vb[NG_TRAIN_MAX_COLUMNS];
    int i;
    if (same_cnn_pr(pr, t) != NGT_PASS) return NGT_FAIL;
    NGT_OK(pa->iface->log_values(pa, va));
    NGT_OK(pb->iface->log_values(pb, vb));
    for (i = 0; i < 9; i++)
        NGT_CHECK(memcmp(&va[i], &vb[i], sizeof va[i]) == 0, "%s: after update %llu column %d = %.17g eager, %.17g in segments",
                  pr->what, (unsigned long long)t, i, va[i], vb[i]);
    return NGT_PASS;
}

/* a segment's counts: no failure, calls (captures + replays + eager) = want (0: not checked),
 * eager calls = eag (those of the unlogged updates that run eagerly: update 0), more replays than
 * captures when replays */
static int cnn_seg_counts(const char *what, const ng_trainer *b, const char *name, uint64_t want, uint64_t eag_want,
                          int replays) {
    uint64_t cap, rep, eag, fail;
    ng_graph_seg_counts(&b->graph.segs, name, &cap, &rep, &eag, &fail);
    printf("; %s %llu captured, %llu replayed, %llu eager", name, (unsigned long long)cap, (unsigned long long)rep,
           (unsigned long long)eag);
    NGT_CHECK(fail == 0 && eag == eag_want && (want == 0 || cap + rep + eag == want) && (!replays || rep > cap),
              "%s: %s %llu captures, %llu replays, %llu eager (want %llu), %llu failures (%llu calls)", what, name,
              (unsigned long long)cap, (unsigned long long)rep, (unsigned long long)eag, (unsigned long long)eag_want,
              (unsigned long long)fail, (unsigned long long)want);
    return NGT_PASS;
}

/* log_every 0: only update 0 runs eagerly, so every later segment call must be a capture or a replay */
static int cnn_seg_vs_eager(int kind, uint64_t steps) {
    static const char *const names[3] = {"gradient", "tn curvature product", "tn objective"};
    const char *what = cnn_tn_name[kind];
    cnn_run a, b;
    uint64_t cap, rep, eag0[3], fail, evals = 0, t;
    pair pr = {what, &a, &b, steps};
    int i;
    NGT_OK(cnn_tn_run_init(&a, kind));
    NGT_OK(cnn_tn_run_init(&b, kind));
    NGT_OK(ng_trainer_set_cuda_graph(&b.tr, 1));
    NGT_CHECK(b.tr.graph.seg == 1, "%s: not run in segments", what);
    for (t = 0; t < steps; t++) {
        double v[16];
        if (step_both(&a.tr, &b.tr, t, t + 1, 0, same_cnn_tn_pr, &pr) != NGT_PASS) return NGT_FAIL;
        NGT_OK(b.pc->iface->log_values(b.pc, v)); /* host values: the update's evaluations in column 8 */
        evals += (uint64_t)v[8];
        for (i = 0; i < 3 && t == 0; i++) ng_graph_seg_counts(&b.tr.graph.segs, names[i], &cap, &rep, &eag0[i], &fail);
    }
    printf("  %s: %llu updates", what, (unsigned long long)steps);
    if (kind == CT_WHITEN) { /* a re-whitening update's segments run eagerly (no pass state while one is due) */
        ng_graph_seg_counts(&b.tr.graph.segs, names[0], &cap, &rep, &eag0[0], &fail);
        printf("; gradient %llu captured, %llu replayed, %llu eager; parameters, whitening state, gradient count and batch "
               "objective identical after every update\n", (unsigned long long)cap, (unsigned long long)rep,
               (unsigned long long)eag0[0]);
        NGT_CHECK(fail == 0 && rep > 0 && eag0[0] == (steps + 3) / 4 && cap + rep + eag0[0] == steps,
                  "%s: gradient %llu captures, %llu replays, %llu eager (want %llu), %llu failures", what,
                  (unsigned long long)cap, (unsigned long long)rep, (unsigned long long)eag0[0],
                  (unsigned long long)((steps + 3) / 4), (unsigned long long)fail);
        cnn_run_free(&a);
        cnn_run_free(&b);
        return NGT_PASS;
    }
    if (cnn_seg_counts(what, &b.tr, names[0], steps, eag0[0], 1) != NGT_PASS) return NGT_FAIL;
    if (cnn_seg_counts(what, &b.tr, names[1], 0, eag0[1], 1) != NGT_PASS) return NGT_FAIL;
    if (cnn_seg_counts(what, &b.tr, names[2], evals, eag0[2], evals > eag0[2] + 4) != NGT_PASS) return NGT_FAIL;
    printf(" (%llu evaluations); parameters, running averages, gradient count and batch objective identical after every "
           "update\n", (unsigned long long)evals);
    if (kind == CT_SAMPLED) { /* a step by value would be a new graph every update */
        ng_graph_seg_counts(&b.tr.graph.segs, names[1], &cap, &rep, &eag0[1], &fail);
        NGT_CHECK(cap < steps - 1, "%s: %llu captures of the product in %llu segmented updates", what, (unsigned long long)cap,
                  (unsigned long long)(steps - 1));
    }
    cnn_run_free(&a);
    cnn_run_free(&b);
    return NGT_PASS;
}

CUDA_TEST(test_segments_cnn_ngd, cnn_seg_vs_eager(CT_NGD, 9))
CUDA_TEST(test_segments_cnn_hf_bn, cnn_seg_vs_eager(CT_HF_BN, 9))
CUDA_TEST(test_segments_cnn_ncg, cnn_seg_vs_eager(CT_NCG, 9))
CUDA_TEST(test_segments_cnn_sampled, cnn_seg_vs_eager(CT_SAMPLED, 9))
CUDA_TEST(test_segments_cnn_whiten, cnn_seg_vs_eager(CT_WHITEN, 10))
CUDA_TEST(test_segments_cnn_ncg_f, cnn_seg_vs_eager(CT_NCGF_EMP, 9))

/* A conv net's gradient that reads the host (the grad_ready hook reads a norm): its capture fails
 * (the body returns the capture's error before it counts the gradient), the trainer puts back the
 * pass state (and through graph_discarded the count and aug_ok the failed call may have changed)
 * and runs it eagerly; the run (gradient count included) equals the eager one, and the curvature
 * products still replay. */
static int test_segments_cnn_failed_capture(void) {
    cnn_run a, b;
    uint64_t cap, rep, eag, fail;
    pair pr = {"cnn ngd, failing gradient capture", &a, &b, 6};
    if (!g_cuda) return ngt_skip(g_reason);
    NGT_OK(cnn_tn_run_init(&a, CT_SAMPLED));
    NGT_OK(cnn_tn_run_init(&b, CT_SAMPLED));
    a.m->grad_ready = b.m->grad_ready = ready_with_host_read;
    a.m->grad_user = a.m;
    b.m->grad_user = b.m;
    NGT_OK(ng_trainer_set_cuda_graph(&b.tr, 1));
    if (step_both(&a.tr, &b.tr, 0, 6, 0, same_cnn_tn_pr, &pr) != NGT_PASS) return NGT_FAIL;
    ng_graph_seg_counts(&b.tr.graph.segs, "gradient", &cap, &rep, &eag, &fail);
    printf("  cnn ngd with a gradient that reads the host: %llu failed captures, %llu gradients eager", (unsigned long long)fail,
           (unsigned long long)eag);
    NGT_CHECK(cap == 0 && rep == 0 && fail > 0 && eag == 6, "gradient: %llu captures, %llu replays, %llu eager, %llu failures",
              (unsigned long long)cap, (unsigned long long)rep, (unsigned long long)eag, (unsigned long long)fail);
    ng_graph_seg_counts(&b.tr.graph.segs, "tn curvature product", &cap, &rep, &eag, &fail);
    printf("; curvature products %llu captured, %llu replayed; identical\n", (unsigned long long)cap, (unsigned long long)rep);
    NGT_CHECK(rep > 0 && fail == 0, "curvature products: %llu replays, %llu failures", (unsigned long long)rep,
              (unsigned long long)fail);
    a.m->grad_ready = b.m->grad_ready = NULL;
    cnn_run_free(&a);
    cnn_run_free(&b);
    return NGT_PASS;
}

int main(void) {
    uint64_t z = 0x9E3779B97F4A7C15ull;
    xorshift_fill(g_x, DIM * NCASES, &z);
    fill_images(g_cnn_x, CNN_NX, CNN_ROWS, &z);
    if (ng_backend_cuda_init(0, &g_cuda) != NG_OK) {
        snprintf(g_reason, sizeof g_reason, "no CUDA device here (the emulated build runs these): %s", ng_last_error());
        g_cuda = NULL;
    }
    NGT_RUN(test_counts_nag_step);
    NGT_RUN(test_counts_curves);
    NGT_RUN(test_counts_rbm);
    NGT_RUN(test_counts_rbm_precond);
    NGT_RUN(test_counts_weight_decay);
    NGT_RUN(test_counts_cnn);
    NGT_RUN(test_backend_graph);
    NGT_RUN(test_graph_sgd);
    NGT_RUN(test_graph_sgd_decaying_lr);
    NGT_RUN(test_graph_nag_momentum_change);
    NGT_RUN(test_graph_sgd_growing_batch);
    NGT_RUN(test_graph_adam);
    NGT_RUN(test_graph_rbm_pcd);
    NGT_RUN(test_graph_rbm_pcd2_decaying_lr);
    NGT_RUN(test_graph_rbm_cd);
    NGT_RUN(test_graph_rbm_binarize);
    NGT_RUN(test_graph_rbm_resume);
    NGT_RUN(test_graph_rbm_centering);
    NGT_RUN(test_graph_rbm_fang);
    NGT_RUN(test_graph_rbm_diag_energy);
    NGT_RUN(test_graph_rbm_diag_fisher);
    NGT_RUN(test_graph_rbm_pc_resume);
    NGT_RUN(test_graph_net_diag_fisher);
    NGT_RUN(test_graph_net_diag_empirical);
    NGT_RUN(test_graph_net_diag_phi);
    NGT_RUN(test_graph_net_diag_tf32);
    NGT_RUN(test_graph_net_diag_resume);
    NGT_RUN(test_graph_net_kfac_phi);
    NGT_RUN(test_graph_net_full_phi);
    NGT_RUN(test_graph_net_phi_resume);
    NGT_RUN(test_counts_net_diag);
    NGT_RUN(test_graph_cnn_sgd_augment);
    NGT_RUN(test_graph_cnn_nag_augment);
    NGT_RUN(test_graph_cnn_bn);
    NGT_RUN(test_graph_cnn_whiten);
    NGT_RUN(test_graph_cnn_resume);
    NGT_RUN(test_graph_cnn_nan_objective);
    NGT_RUN(test_graph_prong_whitened);
    NGT_RUN(test_graph_prong_canonical);
    NGT_RUN(test_graph_prong_plus);
    NGT_RUN(test_graph_refusals);
    NGT_RUN(test_graph_discarded_capture);
    NGT_RUN(test_graph_profile);
    NGT_RUN(test_segment_cache);
    NGT_RUN(test_sampled_step_dev);
    NGT_RUN(test_segments_ngd);
    NGT_RUN(test_segments_ngd_chunked);
    NGT_RUN(test_segments_ngd_sampled);
    NGT_RUN(test_segments_hf);
    NGT_RUN(test_segments_kfac);
    NGT_RUN(test_segments_kfac_async);
    NGT_RUN(test_segments_failed_capture);
    NGT_RUN(test_segments_kfac_phi);
    NGT_RUN(test_counts_segments);
    NGT_RUN(test_counts_cnn_segments);
    NGT_RUN(test_evaluate_dev);
    NGT_RUN(test_segments_ngd_l);
    NGT_RUN(test_segments_ncg_l);
    NGT_RUN(test_segments_ncg_f);
    NGT_RUN(test_segments_hf_evals);
    NGT_RUN(test_segments_ncg_l_chunked);
    NGT_RUN(test_segments_cnn_ngd);
    NGT_RUN(test_segments_cnn_hf_bn);
    NGT_RUN(test_segments_cnn_ncg);
    NGT_RUN(test_segments_cnn_sampled);
    NGT_RUN(test_segments_cnn_whiten);
    NGT_RUN(test_segments_cnn_ncg_f);
    NGT_RUN(test_segments_cnn_failed_capture);
    ng_backend_free(g_cuda);
    return ngt_finish();
}
