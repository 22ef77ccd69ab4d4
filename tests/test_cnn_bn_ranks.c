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
static ng_status make_cnn(ng_backend *be, ng_model **out) { return make_spec(be, "c3-bn-relu-c3-bn-relu-mp2-d3", M, out); }

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

static int test_products(void) {
    ng_backend *be = NULL;
    ng_model *ref = NULL, *net = NULL;
    const int rows = S0 + CL;
    float *x = (float *)malloc(sizeof(float) * rows * M), *g = NULL, *gr = NULL, *j = NULL, *jr = NULL;
    double *sum = NULL, worst_j, worst[P_N], num = 0.0, den = 1e-30;
    void *mem = NULL;
    ng_tensor xall, xs, v, o, jo;
    int lo, hi, i, p;
    size_t np;
    NGT_CHECK(x != NULL, "host memory");
    NGT_OK(ng_backend_cpu_init(&be));
    NGT_OK(make_cnn(be, &ref));
    NGT_OK(make_cnn(be, &net));
    np = ng_model_size(net);
    shard(&lo, &hi);
    NGT_OK(ng_cnn_set_dist(net, C, lo, M));
    g = (float *)malloc(np * sizeof(float));
    gr = (float *)malloc(np * sizeof(float));
    sum = (double *)malloc(np * sizeof(double));
    j = (float *)malloc(sizeof(float) * CL * M);
    jr = (float *)malloc(sizeof(float) * CL * M);
    NGT_CHECK(g && gr && sum && j && jr, "host memory");
    fill_batch(x, rows);
    NGT_OK(ng_alloc(be, sizeof(float) * ((size_t)rows * M + 2 * np + (size_t)CL * M), &mem));
    xall = ng_tensor_matrix((float *)mem, rows, M, rows);
    xs = ng_tensor_cols(&xall, lo, hi - lo);
    v = ng_tensor_matrix((float *)mem + (size_t)rows * M, (int)np, 1, (int)np);
    o = ng_tensor_matrix(v.data + np, (int)np, 1, (int)np);
    NGT_OK(ng_tensor_set(be, &xall, x));
    for (i = 0; i < (int)np; i++) g[i] = (float)(0.5 * sin(1.3 * i + 0.4));
    NGT_OK(ng_tensor_set(be, &v, g));
    NGT_OK(ng_model_gradient(ref, &xall, NULL));
    NGT_OK(ng_model_gradient(net, &xs, NULL));
    /* J v: this rank's columns against the same columns of the whole batch's */
    jo = ng_tensor_matrix(o.data + np, CL, M, CL);
    NGT_OK(ng_cnn_jvp(ref, &v, &jo));
    NGT_OK(ng_tensor_get(be, &jo, jr));
    jo = ng_tensor_matrix(o.data + np, CL, hi - lo, CL);
    NGT_OK(ng_cnn_jvp(net, &v, &jo));
    NGT_OK(ng_tensor_get(be, &jo, j));
    for (i = 0; i < CL * M; i++) den = fabs((double)jr[i]) > den ? fabs((double)jr[i]) : den;
    for (i = 0; i < CL * (hi - lo); i++) {
        double e = fabs((double)j[i] - (double)jr[(size_t)CL * lo + i]);
        if (e > num) num = e;
    }
    worst_j = num / den;
    if (C->world == 1) NGT_CHECK(memcmp(j, jr, sizeof(float) * CL * M) == 0, "one rank: J v not bit-identical");
    NGT_CHECK(worst_j <= 5e-6, "J v: this rank's columns %.3g relative to one process's (bound 5e-6)", worst_j);
    /* the products: share-weighted and summed */
    for (p = 0; p < P_N; p++) {
        NGT_OK(product(ref, p, &v, &o));
        NGT_OK(ng_tensor_get(be, &o, gr));
        NGT_OK(product(net, p, &v, &o));
        NGT_OK(ng_tensor_get(be, &o, g));
        if (C->world == 1) NGT_CHECK(memcmp(g, gr, np * sizeof(float)) == 0, "one rank: %s not bit-identical", pname[p]);
        worst[p] = share_sum_rel(g, gr, sum, np, lo, hi);
        NGT_CHECK(worst[p] <= 5e-6, "%s: %.3g relative to one process's (bound 5e-6)", pname[p], worst[p]);
    }
    printf("  rank %d: cases [%d, %d) of %d; J v %.2g, G v %.2g, H v %.2g, F v empirical %.2g, sampled %.2g relative to one "
           "process\n", C->rank, lo, hi, M, worst_j, worst[P_GV], worst[P_HV], worst[P_FEMP], worst[P_FSAMP]);
    ng_free(be, mem);
    ng_cnn_free(ref);
    ng_cnn_free(net);
    ng_backend_free(be);
    free(x), free(g), free(gr), free(sum), free(j), free(jr);
    return NGT_PASS;
}

/* Without batch norm, --chunk 3 on the ranks (a shard of 8 cases in three chunks) against one
 * process in one chunk: the sampled F v (3 draws per case) share-weighted and summed. */
static int test_sampled_nobn(void) {
    ng_backend *be = NULL;
    ng_model *ref = NULL, *net = NULL;
    const int rows = S0 + CL;
    float *x = (float *)malloc(sizeof(float) * rows * M), *g = NULL, *gr = NULL;
    double *sum = NULL, worst;
    void *mem = NULL;
    ng_tensor xall, xs, v, o;
    int lo, hi, i;
    size_t np;
    NGT_CHECK(x != NULL, "host memory");
    NGT_OK(ng_backend_cpu_init(&be));
    NGT_OK(make_spec(be, "c3-relu-c3-relu-mp2-d3", M, &ref));
    NGT_OK(make_spec(be, "c3-relu-c3-relu-mp2-d3", 3, &net));
    np = ng_model_size(net);
    shard(&lo, &hi);
    NGT_OK(ng_cnn_set_dist(net, C, lo, M));
    g = (float *)malloc(np * sizeof(float));
    gr = (float *)malloc(np * sizeof(float));
    sum = (double *)malloc(np * sizeof(double));
    NGT_CHECK(g && gr && sum, "host memory");
    fill_batch(x, rows);
    NGT_OK(ng_alloc(be, sizeof(float) * ((size_t)rows * M + 2 * np), &mem));
    xall = ng_tensor_matrix((float *)mem, rows, M, rows);
    xs = ng_tensor_cols(&xall, lo, hi - lo);
    v = ng_tensor_matrix((float *)mem + (size_t)rows * M, (int)np, 1, (int)np);
    o = ng_tensor_matrix(v.data + np, (int)np, 1, (int)np);
    NGT_OK(ng_tensor_set(be, &xall, x));
    for (i = 0; i < (int)np; i++) g[i] = (float)(0.5 * sin(0.7 * i + 0.1));
    NGT_OK(ng_tensor_set(be, &v, g));
    NGT_OK(ng_model_gradient(ref, &xall, NULL));
    NGT_OK(ng_model_gradient(net, &xs, NULL));
    NGT_OK(ng_cnn_fvp(ref, NG_FISHER_SAMPLED, 3, 1234, 9, &v, &o));
    NGT_OK(ng_tensor_get(be, &o, gr));
    NGT_OK(ng_cnn_fvp(net, NG_FISHER_SAMPLED, 3, 1234, 9, &v, &o));
    NGT_OK(ng_tensor_get(be, &o, g));
    worst = share_sum_rel(g, gr, sum, np, lo, hi);
    NGT_CHECK(worst <= 5e-6, "sampled F v without batch norm, --chunk 3: %.3g relative to one process's (bound 5e-6)", worst);
    printf("  rank %d (no bn, --chunk 3): sampled F v %.2g relative to one process\n", C->rank, worst);
    ng_free(be, mem);
    ng_cnn_free(ref);
    ng_cnn_free(net);
    ng_backend_free(be);
    free(x), free(g), free(gr), free(sum);
    return NGT_PASS;
}

int main(void) {
    if (ngt_ranks_open(&C)) return 1;
    NGT_RUN(test_products);
    NGT_RUN(test_sampled_nobn);
    ng_comm_free(C);
    return ngt_finish();
}
