/* test_cnn_bn_ranks.c: the conv engine's curvature products through synchronised batch norm on
 * several ranks (ng_cnn_set_dist, natgrad/cnn.h). Run alone it checks the one-rank case (the same
 * products as a model without ranks, bit for bit). Under `mpirun -np N` (tests/test_dist.sh, 2 and 3
 * ranks) each rank takes an uneven shard of a batch of 13 images (shares 3/10 and 1/4/8: a rank with
 * a single image) through c3-bn-relu-c3-bn-relu-mp2-d3 on 1x6x6 inputs whose mean and scale grow
 * along the batch (a shard's batch-norm statistics differ grossly from the batch's), computes a
 * gradient (the synchronised forward pass the products read), and checks against a model without
 * ranks on the whole batch, computed on every rank:
 *  - J v: this rank's columns against the same columns of the one-process J v;
 *  - G v (= the exact F v), H v (R{backprop}), the empirical F v and the sampled F v (2 draws per
 *    case): the ranks' products weighted by their shares (m_r / m) and summed, as truncated
 *    Newton's reduction does, against the one-process product;
 * all within 5e-6 relative to the largest entry (float32 sums over the batch split into per-rank
 * partial sums and merged in double: a few ulps; measured <= 4.6e-7 on 2 and 3 ranks, ~10x below).
 * What the bound catches: the R-forward pass's batch-norm sums left per rank give J v 3e-2 - 1.2e-1;
 * any one of H v's R-backward reductions left per rank gives H v 2.2e-2 - 1.6e-1. Without batch
 * norm (c3-relu-c3-relu-mp2-d3, --chunk 3: each rank's shard in several chunks) the sampled F v
 * likewise against one process with one chunk: a case's targets are drawn by its index in the
 * global batch, on any rank and in any chunk (drawn by the rank's own column: 7.9e-2 - 1.05 off).
 * CPU backend (MPI). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ranks.h"
#include "natgrad/backend.h"
#include "natgrad/cnn.h"
#include "natgrad/comm.h"
#include "natgrad/log.h"
#include "natgrad/model.h"
#include "natgrad/net.h"

enum { M = 13, S0 = 36, CL = 3 };
static ng_comm *C;

static void shard(int *lo, int *hi) { ngt_shard(C, M, lo, hi); }

static double rel_diff(const float *a, const float *b, size_t n);
static ng_status make_spec(ng_backend *be, const char *spec, int chunk, ng_model **out) {
    ng_cnn_config cfg;
    ng_cnn_config_default(&cfg);
    cfg.c = 1, cfg.h = 6, cfg.w = 6;
    cfg.chunk = chunk;
    cfg.seed = 5;
    NG_TRY(ng_cnn_parse_spec(spec, &cfg));
    return ng_cnn_create(be, &cfg, out);
}
#define CNN_SPEC "c3-bn-relu-c3-bn-relu-mp2-d3" /* the batch-norm network of the products */

/* the inputs: mean and scale grow along the batch (a shard's statistics differ from the batch's) */
static void fill_batch(float *x, int rows) {
    int c, i;
    for (c = 0; c < M; c++) {
        for (i = 0; i < S0; i++) x[i + rows * c] = (float)(0.2 * c + (0.3 + 0.1 * c) * sin(0.9 * c + 1.7 * i) + 0.2 * cos(0.37 * c * c + i));
        for (i = 0; i < CL; i++) x[S0 + i + rows * c] = i == c % CL ? 1.0f : 0.0f;
    }
}

enum { P_GV, P_HV, P_FEMP, P_FSAMP, P_N };
static const char *const pname[P_N] = {"G v", "H v", "F v (empirical)", "F v (sampled)"};
static ng_status product(ng_model *m, int which, const ng_tensor *v, ng_tensor *o) {
    switch (which) {
    case P_GV: return ng_cnn_gvp(m, v, o);
    case P_HV: return ng_cnn_hvp(m, v, o);
    case P_FEMP: return ng_cnn_fvp(m, NG_FISHER_EMPIRICAL, 1, 0, 0, v, o);
    default: return ng_cnn_fvp(m, NG_FISHER_SAMPLED, 2, 77, 3, v, o);
    }
}

/* this rank's product out (np floats on the host, overwritten) weighted by its share (hi - lo) / M
 * and summed over the ranks in double; returns max |sum - ref| / max |ref| */
static double share_sum_rel(float *out, const float *ref, double *sum, size_t np, int lo, int hi) {
    size_t i;
    for (i = 0; i < np; i++) sum[i] = (double)(hi - lo) / (double)M * (double)out[i];
    if (ng_comm_allreduce_host(C, sum, np, "the weighted product") != NG_OK) return INFINITY;
    for (i = 0; i < np; i++) out[i] = (float)sum[i];
    return rel_diff(out, ref, np);
}

/* max |a - b| / max |b| */
static double rel_diff(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 1e-30;
    size_t i;
    for (i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (e > num) num = e;
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return num / den;
}

/* A case on the CPU backend: ref, the whole batch's model (one process), and net, this rank's model on
 * its shard [lo, hi) with the ranks set; both through a gradient on the batch of fill_batch (the
 * forward pass the products read), v (np floats: vamp sin(vfreq i + vphase)) on the device, o a
 * product's room, extra floats after it. */
typedef struct fixture {
    ng_backend *be;
    ng_model *ref, *net;
    float *x, *g, *gr;
    double *sum;
    void *mem;
    ng_tensor xall, xs, v, o;
    int lo, hi;
    size_t np;
} fixture;

static int fixture_open(fixture *f, const char *ref_spec, const char *net_spec, int net_chunk, size_t extra, double vfreq,
                        double vphase) {
    const int rows = S0 + CL;
    size_t i;
    memset(f, 0, sizeof *f);
    f->x = (float *)malloc(sizeof(float) * rows * M);
    NGT_CHECK(f->x != NULL, "host memory");
    NGT_OK(ng_backend_cpu_init(&f->be));
    NGT_OK(make_spec(f->be, ref_spec, M, &f->ref));
    NGT_OK(make_spec(f->be, net_spec, net_chunk, &f->net));
    f->np = ng_model_size(f->net);
    shard(&f->lo, &f->hi);
    NGT_OK(ng_cnn_set_dist(f->net, C, f->lo, M));
    f->g = (float *)malloc(f->np * sizeof(float));
    f->gr = (float *)malloc(f->np * sizeof(float));
    f->sum = (double *)malloc(f->np * sizeof(double));
    NGT_CHECK(f->g && f->gr && f->sum, "host memory");
    fill_batch(f->x, rows);
    NGT_OK(ng_alloc(f->be, sizeof(float) * ((size_t)rows * M + 2 * f->np + extra), &f->mem));
    f->xall = ng_tensor_matrix((float *)f->mem, rows, M, rows);
    f->xs = ng_tensor_cols(&f->xall, f->lo, f->hi - f->lo);
    f->v = ng_tensor_matrix((float *)f->mem + (size_t)rows * M, (int)f->np, 1, (int)f->np);
    f->o = ng_tensor_matrix(f->v.data + f->np, (int)f->np, 1, (int)f->np);
    NGT_OK(ng_tensor_set(f->be, &f->xall, f->x));
    for (i = 0; i < f->np; i++) f->g[i] = (float)(0.5 * sin(vfreq * (double)i + vphase));
    NGT_OK(ng_tensor_set(f->be, &f->v, f->g));
    NGT_OK(ng_model_gradient(f->ref, &f->xall, NULL));
    NGT_OK(ng_model_gradient(f->net, &f->xs, NULL));
    return NGT_PASS;
}

static void fixture_close(fixture *f) {
    if (f->mem) ng_free(f->be, f->mem);
    ng_cnn_free(f->ref);
    ng_cnn_free(f->net);
    ng_backend_free(f->be);
    free(f->x), free(f->g), free(f->gr), free(f->sum);
    memset(f, 0, sizeof *f);
}

static int test_products(void) {
    fixture f;
    float *j = NULL, *jr = NULL;
    double worst_j, worst[P_N], num = 0.0, den = 1e-30;
    ng_tensor jo;
    int i, p;
    if (fixture_open(&f, CNN_SPEC, CNN_SPEC, M, (size_t)CL * M, 1.3, 0.4) != NGT_PASS) return NGT_FAIL;
    j = (float *)malloc(sizeof(float) * CL * M);
    jr = (float *)malloc(sizeof(float) * CL * M);
    NGT_CHECK(j && jr, "host memory");
    /* J v: this rank's columns against the same columns of the whole batch's */
    jo = ng_tensor_matrix(f.o.data + f.np, CL, M, CL);
    NGT_OK(ng_cnn_jvp(f.ref, &f.v, &jo));
    NGT_OK(ng_tensor_get(f.be, &jo, jr));
    jo = ng_tensor_matrix(f.o.data + f.np, CL, f.hi - f.lo, CL);
    NGT_OK(ng_cnn_jvp(f.net, &f.v, &jo));
    NGT_OK(ng_tensor_get(f.be, &jo, j));
    for (i = 0; i < CL * M; i++) den = fabs((double)jr[i]) > den ? fabs((double)jr[i]) : den;
    for (i = 0; i < CL * (f.hi - f.lo); i++) {
        double e = fabs((double)j[i] - (double)jr[(size_t)CL * f.lo + i]);
        if (e > num) num = e;
    }
    worst_j = num / den;
    if (C->world == 1) NGT_CHECK(memcmp(j, jr, sizeof(float) * CL * M) == 0, "one rank: J v not bit-identical");
    NGT_CHECK(worst_j <= 5e-6, "J v: this rank's columns %.3g relative to one process's (bound 5e-6)", worst_j);
    /* the products: share-weighted and summed */
    for (p = 0; p < P_N; p++) {
        NGT_OK(product(f.ref, p, &f.v, &f.o));
        NGT_OK(ng_tensor_get(f.be, &f.o, f.gr));
        NGT_OK(product(f.net, p, &f.v, &f.o));
        NGT_OK(ng_tensor_get(f.be, &f.o, f.g));
        if (C->world == 1) NGT_CHECK(memcmp(f.g, f.gr, f.np * sizeof(float)) == 0, "one rank: %s not bit-identical", pname[p]);
        worst[p] = share_sum_rel(f.g, f.gr, f.sum, f.np, f.lo, f.hi);
        NGT_CHECK(worst[p] <= 5e-6, "%s: %.3g relative to one process's (bound 5e-6)", pname[p], worst[p]);
    }
    printf("  rank %d: cases [%d, %d) of %d; J v %.2g, G v %.2g, H v %.2g, F v empirical %.2g, sampled %.2g relative to one "
           "process\n", C->rank, f.lo, f.hi, M, worst_j, worst[P_GV], worst[P_HV], worst[P_FEMP], worst[P_FSAMP]);
    fixture_close(&f);
    free(j), free(jr);
    return NGT_PASS;
}

/* Without batch norm, --chunk 3 on the ranks (a shard of 8 cases in three chunks) against one
 * process in one chunk: the sampled F v (3 draws per case) share-weighted and summed. */
static int test_sampled_nobn(void) {
    fixture f;
    double worst;
    if (fixture_open(&f, "c3-relu-c3-relu-mp2-d3", "c3-relu-c3-relu-mp2-d3", 3, 0, 0.7, 0.1) != NGT_PASS) return NGT_FAIL;
    NGT_OK(ng_cnn_fvp(f.ref, NG_FISHER_SAMPLED, 3, 1234, 9, &f.v, &f.o));
    NGT_OK(ng_tensor_get(f.be, &f.o, f.gr));
    NGT_OK(ng_cnn_fvp(f.net, NG_FISHER_SAMPLED, 3, 1234, 9, &f.v, &f.o));
    NGT_OK(ng_tensor_get(f.be, &f.o, f.g));
    worst = share_sum_rel(f.g, f.gr, f.sum, f.np, f.lo, f.hi);
    NGT_CHECK(worst <= 5e-6, "sampled F v without batch norm, --chunk 3: %.3g relative to one process's (bound 5e-6)", worst);
    printf("  rank %d (no bn, --chunk 3): sampled F v %.2g relative to one process\n", C->rank, worst);
    fixture_close(&f);
    return NGT_PASS;
}

int main(void) {
    if (ngt_ranks_open(&C)) return 1;
    NGT_RUN(test_products);
    NGT_RUN(test_sampled_nobn);
    ng_comm_free(C);
    return ngt_finish();
}
