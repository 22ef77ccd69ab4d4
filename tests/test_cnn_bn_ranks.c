/* test_cnn_bn_ranks.c: the conv engine's curvature products through synchronised batch norm on
 * several ranks (ng_cnn_set_dist, natgrad/cnn.h). Run alone it checks the one-rank case (the same
 * products as a model without ranks, bit for bit). Under `mpirun -np N` (tests/test_dist.sh, 2 and 3
 * ranks) each rank takes an uneven shard of a batch of 13 images (shares 3/10 and 1/4/8: a rank with
 * a single image) through c3-bn-relu-c3-bn-relu-mp2-d3 on 1x6x6 inputs whose mean and scale grow
 * along the batch (a shard's batch-norm statistics differ grossly from the batch's), computes a
 * gradient (the synchronised forward pass the products read), and checks against a model without
 * ranks on the whole batch, computed on every rank:
 *  - J v: this rank's columns against the same columns of the one-process J v;
 *  - G v (= the exact F v): the ranks' products weighted by their shares (m_r / m) and summed, as
 *    truncated Newton's reduction does, against the one-process G v;
 * both within 2e-5 relative to the largest entry (float32 sums over the batch split into per-rank
 * partial sums and merged in double: a few ulps; measured <= 5e-7, while the R-forward pass's sums
 * left per rank give J v 3e-2 - 1.2e-1); then H v and the empirical F v refused with batch norm on several
 * ranks, naming batch norm. CPU backend (MPI). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "natgrad/backend.h"
#include "natgrad/cnn.h"
#include "natgrad/comm.h"
#include "natgrad/log.h"
#include "natgrad/model.h"
#include "natgrad/net.h"

enum { M = 13, S0 = 36, CL = 3 };
static ng_comm *C;

static void shard(int *lo, int *hi) {
    int W = C->world, r = C->rank;
    *lo = M * r * r / (W * W);
    *hi = M * (r + 1) * (r + 1) / (W * W);
}

static ng_status make_cnn(ng_backend *be, ng_model **out) {
    ng_cnn_config cfg;
    ng_cnn_config_default(&cfg);
    cfg.c = 1, cfg.h = 6, cfg.w = 6;
    cfg.chunk = M;
    cfg.seed = 5;
    NG_TRY(ng_cnn_parse_spec("c3-bn-relu-c3-bn-relu-mp2-d3", &cfg));
    return ng_cnn_create(be, &cfg, out);
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
    double *sum = NULL, worst_j, worst_g, num = 0.0, den = 1e-30;
    void *mem = NULL;
    ng_tensor xall, xs, v, o, jo;
    int lo, hi, i, c;
    size_t np;
    ng_status s;
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
    for (c = 0; c < M; c++) {
        for (i = 0; i < S0; i++) x[i + rows * c] = (float)(0.2 * c + (0.3 + 0.1 * c) * sin(0.9 * c + 1.7 * i) + 0.2 * cos(0.37 * c * c + i));
        for (i = 0; i < CL; i++) x[S0 + i + rows * c] = i == c % CL ? 1.0f : 0.0f;
    }
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
    NGT_CHECK(worst_j <= 2e-5, "J v: this rank's columns %.3g relative to one process's (bound 2e-5)", worst_j);
    /* G v: share-weighted and summed */
    NGT_OK(ng_cnn_gvp(ref, &v, &o));
    NGT_OK(ng_tensor_get(be, &o, gr));
    NGT_OK(ng_cnn_gvp(net, &v, &o));
    NGT_OK(ng_tensor_get(be, &o, g));
    if (C->world == 1) NGT_CHECK(memcmp(g, gr, np * sizeof(float)) == 0, "one rank: G v not bit-identical");
    for (i = 0; i < (int)np; i++) sum[i] = (double)(hi - lo) / (double)M * (double)g[i];
    NGT_OK(ng_comm_allreduce_host(C, sum, np, "the weighted G v"));
    for (i = 0; i < (int)np; i++) g[i] = (float)sum[i];
    worst_g = rel_diff(g, gr, np);
    NGT_CHECK(worst_g <= 2e-5, "G v: %.3g relative to one process's (bound 2e-5)", worst_g);
    printf("  rank %d: cases [%d, %d) of %d; J v %.2g, G v %.2g relative to one process\n", C->rank, lo, hi, M, worst_j, worst_g);
    if (C->world > 1) {
        s = ng_cnn_hvp(net, &v, &o);
        NGT_CHECK(s == NG_ERR_UNSUPPORTED && strstr(ng_last_error(), "batch norm"), "H v on %d ranks with batch norm: status %d (%s), "
                  "want a refusal naming batch norm", C->world, (int)s, ng_last_error());
        s = ng_cnn_fvp(net, NG_FISHER_EMPIRICAL, 1, 0, 0, &v, &o);
        NGT_CHECK(s == NG_ERR_UNSUPPORTED && strstr(ng_last_error(), "batch norm"), "empirical F v on %d ranks with batch norm: "
                  "status %d (%s), want a refusal naming batch norm", C->world, (int)s, ng_last_error());
    }
    ng_free(be, mem);
    ng_cnn_free(ref);
    ng_cnn_free(net);
    ng_backend_free(be);
    free(x), free(g), free(gr), free(sum), free(j), free(jr);
    return NGT_PASS;
}

int main(void) {
    if (ng_comm_init(&C, 60.0) != NG_OK) {
        printf("FAIL comm_init: %s\nRESULT passed=0 failed=1 skipped=0\n", ng_last_error());
        return 1;
    }
    printf("rank %d of %d\n", C->rank, C->world);
    NGT_RUN(test_products);
    ng_comm_free(C);
    return ngt_finish();
}
