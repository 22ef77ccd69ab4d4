/* test_net_bn_ranks.c: synchronised batch norm of dense networks on several ranks
 * (ng_net_set_comm, natgrad/net.h). Run alone it checks the one-rank case: a network with a
 * communicator of one rank computes the same gradient and running averages as one without, bit for
 * bit. Under `mpirun -np N` (tests/test_dist.sh, 2 and 3 ranks) each rank takes an uneven shard of a
 * batch of 13 cases (shares 3/10 and 1/4/8: a rank with a single case, whose own variance is 0)
 * through 6-5+bn-4:tanh+bn-6 (squared loss, the input as target; inputs with means near 3 and
 * per-case scales that grow along the batch, so a shard's statistics differ grossly from the
 * batch's), three gradients in a row (the running averages move each time), and checks after each:
 *  - the ranks' gradients weighted by their shares (m_r / m) and summed (as the trainer's
 *    all-reduce does) against the one-process gradient of the whole batch, computed on every rank by
 *    a network without the communicator: within 2e-5 relative to the largest entry (the float32 sums
 *    over the batch split into per-rank partial sums, the moments merged from float32 per-rank
 *    moments in double: a few ulps; measured <= 1e-6);
 *  - the inference-mode outputs of a fixed input (they read the running averages) against the
 *    one-process outputs within 2e-5 relative, and bit for bit rank 0's on every rank;
 * then, on the last batch, the curvature products whose batch sums are reduced: this rank's columns
 * of J v against the same columns of the one-process J v, and the share-weighted, summed G v against
 * the one-process G v, within 2e-5 relative (the R-forward pass's two sums and the backward pass's
 * reduced as above), and the share-weighted, summed empirical F v against the one-process one within
 * 2e-5 (per-case residuals, then the synchronised backward pass), and H v likewise within 2e-5
 * (R{backprop} with the second-order batch-norm terms' batch means over every rank's columns), and the
 * sampled F v with each rank's targets drawn by global column (ng_net_fvp_at) likewise within 2e-5;
 * the sampled backward pass refused with batch norm on several ranks, and a shard larger than the
 * network's chunk refused naming --chunk. Without batch norm (test_sampled_fvp_plain): the sampled
 * F v of chunked shards against one process with another chunk size, within 2e-5. CPU backend (MPI). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ranks.h"
#include "natgrad/backend.h"
#include "natgrad/comm.h"
#include "natgrad/log.h"
#include "natgrad/model.h"
#include "natgrad/net.h"

enum { M = 13, D = 6, STEPS = 3 };
static ng_comm *C;

static void shard(int *lo, int *hi) { ngt_shard(C, M, lo, hi); }

static ng_status make_net(ng_backend *be, int chunk, ng_model **out) {
    ng_net_config cfg;
    ng_net_config_default(&cfg);
    cfg.loss = NG_LOSS_SQUARED;
    cfg.target = NG_NET_TARGET_INPUT;
    cfg.chunk = chunk;
    cfg.init = NG_INIT_GAUSSIAN;
    cfg.init_scale = 0.7f;
    cfg.seed = 5;
    NG_TRY(ng_net_parse_spec("6-5+bn-4:tanh+bn-6", NG_ACT_LOGISTIC, NG_ACT_LINEAR, &cfg));
    return ng_net_create(be, &cfg, out);
}

/* every rank's n floats equal rank 0's, bit for bit */
static int same_as_rank0(const float *mine, size_t n, const char *what) { return ngt_same_as_rank0(C, mine, n, what); }

/* max |a - b| / max |b| */
static double rel_diff(const float *a, const double *b, size_t n) {
    double num = 0.0, den = 1e-30;
    size_t i;
    for (i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (e > num) num = e;
        if (fabs(b[i]) > den) den = fabs(b[i]);
    }
    return num / den;
}

/* The sampled F v (2 draws per case, stream (key 7, step 3)) of this rank's shard [lo, hi) with its
 * cases drawn at their global columns (ng_net_fvp_at, col0 = lo), weighted by the share and summed
 * over the ranks, against one process's over the whole batch (ref): the largest difference relative
 * to the largest entry. gr, g: np floats; sum: np doubles (scratch). */
static double sampled_fvp_ranks(ng_backend *be, ng_model *ref, ng_model *net, const ng_tensor *v, ng_tensor *out, int lo, int hi,
                                float *gr, float *g, double *sum, size_t np) {
    size_t i;
    if (ng_net_fvp(ref, NG_FISHER_SAMPLED, 2, 7, 3, v, out) != NG_OK || ng_tensor_get(be, out, gr) != NG_OK ||
        ng_net_fvp_at(net, NG_FISHER_SAMPLED, 2, 7, 3, (uint64_t)lo, v, out) != NG_OK || ng_tensor_get(be, out, g) != NG_OK) {
        printf("  sampled F v: %s\n", ng_last_error());
        return INFINITY;
    }
    for (i = 0; i < np; i++) sum[i] = (double)(hi - lo) / (double)M * (double)g[i];
    if (ng_comm_allreduce_host(C, sum, np, "the weighted sampled F v") != NG_OK) return INFINITY;
    for (i = 0; i < np; i++) g[i] = (float)sum[i], sum[i] = (double)gr[i];
    return rel_diff(g, sum, np);
}

static int test_synchronised_bn(void) {
    ng_backend *be = NULL;
    ng_model *ref = NULL, *net = NULL;
    float *x = (float *)malloc(sizeof(float) * D * M), *g = NULL, *gr = NULL, *y = NULL, *yr = NULL;
    double *sum = NULL, worst_g = 0.0, worst_y = 0.0;
    void *xd = NULL, *yd = NULL;
    int lo, hi, i, c, t;
    size_t np;
    NGT_CHECK(x != NULL, "host memory");
    NGT_OK(ng_backend_cpu_init(&be));
    NGT_OK(make_net(be, M, &ref));
    NGT_OK(make_net(be, M, &net));
    NGT_OK(ng_net_set_comm(net, C));
    np = ng_model_size(net);
    g = (float *)malloc(np * sizeof(float));
    gr = (float *)malloc(np * sizeof(float));
    sum = (double *)malloc(np * sizeof(double));
    y = (float *)malloc(sizeof(float) * D * M);
    yr = (float *)malloc(sizeof(float) * D * M);
    NGT_CHECK(g && gr && sum && y && yr, "host memory");
    for (c = 0; c < M; c++)
        for (i = 0; i < D; i++) x[i + D * c] = (float)(3.0 + (0.3 + 0.1 * c) * sin(0.9 * c + 1.7 * i) + 0.2 * cos(0.37 * c * c + i));
    NGT_OK(ng_alloc(be, sizeof(float) * D * M, &xd));
    NGT_OK(ng_alloc(be, sizeof(float) * D * M, &yd));
    NGT_OK(ng_set(be, xd, x, sizeof(float) * D * M));
    shard(&lo, &hi);
    for (t = 0; t < STEPS; t++) {
        ng_tensor xall = ng_tensor_matrix((float *)xd, D, M, D), xs = ng_tensor_cols(&xall, lo, hi - lo);
        ng_tensor yt = ng_tensor_matrix((float *)yd, D, M, D);
        double w = (double)(hi - lo) / (double)M;
        char what[64];
        NGT_OK(ng_model_gradient(ref, &xall, NULL));
        NGT_OK(ng_model_gradient(net, &xs, NULL));
        NGT_OK(ng_tensor_get(be, &ref->grad_flat, gr));
        NGT_OK(ng_tensor_get(be, &net->grad_flat, g));
        for (i = 0; i < (int)np; i++) sum[i] = w * (double)g[i];
        NGT_OK(ng_comm_allreduce_host(C, sum, np, "the weighted gradients"));
        for (i = 0; i < (int)np; i++) g[i] = (float)sum[i], sum[i] = (double)gr[i];
        if (C->world == 1) NGT_CHECK(memcmp(g, gr, np * sizeof(float)) == 0, "one rank: gradient %d not bit-identical", t);
        if (rel_diff(g, sum, np) > worst_g) worst_g = rel_diff(g, sum, np);
        NGT_CHECK(rel_diff(g, sum, np) <= 2e-5, "gradient %d: %.3g relative to the one-process gradient (bound 2e-5)", t,
                  rel_diff(g, sum, np));
        /* the running averages, through the inference-mode outputs */
        NGT_OK(ng_net_predict(ref, &xall, &yt));
        NGT_OK(ng_get(be, yr, yd, sizeof(float) * D * M));
        NGT_OK(ng_net_predict(net, &xall, &yt));
        NGT_OK(ng_get(be, y, yd, sizeof(float) * D * M));
        for (i = 0; i < D * M; i++) sum[i] = (double)yr[i];
        if (rel_diff(y, sum, (size_t)D * M) > worst_y) worst_y = rel_diff(y, sum, (size_t)D * M);
        NGT_CHECK(rel_diff(y, sum, (size_t)D * M) <= 2e-5, "inference outputs after gradient %d: %.3g relative (bound 2e-5)", t,
                  rel_diff(y, sum, (size_t)D * M));
        snprintf(what, sizeof what, "the inference outputs after gradient %d", t);
        if (same_as_rank0(y, (size_t)D * M, what) != NGT_PASS) return NGT_FAIL;
    }
    printf("  rank %d: cases [%d, %d) of %d; gradient %.2g, inference outputs %.2g relative to one process\n", C->rank, lo, hi,
           M, worst_g, worst_y);
    {
        /* the curvature products of the last batch (ref: all M cases; net: this rank's shard) */
        ng_tensor v, jr = ng_tensor_matrix((float *)yd, D, M, D), jn, gv;
        void *vd = NULL, *gd = NULL;
        float *jv = (float *)malloc(sizeof(float) * D * M), *jvr = (float *)malloc(sizeof(float) * D * M);
        double *jref = (double *)malloc(sizeof(double) * D * M), worst_j, worst_gv, worst_fv, worst_hv, worst_sv;
        NGT_CHECK(jv && jvr && jref, "host memory");
        for (i = 0; i < (int)np; i++) g[i] = (float)(0.5 * sin(1.3 * i + 0.4));
        NGT_OK(ng_alloc(be, np * sizeof(float), &vd));
        NGT_OK(ng_alloc(be, np * sizeof(float), &gd));
        NGT_OK(ng_set(be, vd, g, np * sizeof(float)));
        v = ng_tensor_matrix((float *)vd, (int)np, 1, (int)np);
        gv = ng_tensor_matrix((float *)gd, (int)np, 1, (int)np);
        NGT_OK(ng_net_jvp(ref, &v, &jr));
        NGT_OK(ng_get(be, jvr, yd, sizeof(float) * D * M));
        jn = ng_tensor_matrix((float *)yd, D, hi - lo, D);
        NGT_OK(ng_net_jvp(net, &v, &jn));
        NGT_OK(ng_get(be, jv, yd, sizeof(float) * D * (hi - lo)));
        for (i = 0; i < D * M; i++) jref[i] = (double)jvr[i];
        /* this rank's columns against the same columns, relative to the whole J v's largest entry */
        {
            double num = 0.0, den = 1e-30;
            for (i = 0; i < D * M; i++) den = fabs(jref[i]) > den ? fabs(jref[i]) : den;
            for (i = 0; i < D * (hi - lo); i++) num = fabs(jv[i] - jref[(size_t)D * lo + i]) > num ? fabs(jv[i] - jref[(size_t)D * lo + i]) : num;
            worst_j = num / den;
        }
        NGT_CHECK(worst_j <= 2e-5, "J v: this rank's columns %.3g relative to one process's (bound 2e-5)", worst_j);
        NGT_OK(ng_net_gvp(ref, &v, &gv));
        NGT_OK(ng_tensor_get(be, &gv, gr));
        NGT_OK(ng_net_gvp(net, &v, &gv));
        NGT_OK(ng_tensor_get(be, &gv, g));
        for (i = 0; i < (int)np; i++) sum[i] = (double)(hi - lo) / (double)M * (double)g[i];
        NGT_OK(ng_comm_allreduce_host(C, sum, np, "the weighted G v"));
        for (i = 0; i < (int)np; i++) g[i] = (float)sum[i], sum[i] = (double)gr[i];
        worst_gv = rel_diff(g, sum, np);
        NGT_CHECK(worst_gv <= 2e-5, "G v: %.3g relative to one process's (bound 2e-5)", worst_gv);
        /* the empirical F v: per-case residuals d = y - t (t the input), D = d (d^T J v) / m_r,
         * back through the synchronised backward pass; share-weighted and summed like G v */
        NGT_OK(ng_net_fvp(ref, NG_FISHER_EMPIRICAL, 1, 0, 0, &v, &gv));
        NGT_OK(ng_tensor_get(be, &gv, gr));
        NGT_OK(ng_net_fvp(net, NG_FISHER_EMPIRICAL, 1, 0, 0, &v, &gv));
        NGT_OK(ng_tensor_get(be, &gv, g));
        for (i = 0; i < (int)np; i++) sum[i] = (double)(hi - lo) / (double)M * (double)g[i];
        NGT_OK(ng_comm_allreduce_host(C, sum, np, "the weighted empirical F v"));
        for (i = 0; i < (int)np; i++) g[i] = (float)sum[i], sum[i] = (double)gr[i];
        worst_fv = rel_diff(g, sum, np);
        NGT_CHECK(worst_fv <= 2e-5, "empirical F v: %.3g relative to one process's (bound 2e-5)", worst_fv);
        /* H v: Pearlmutter's R{backprop} with every batch mean of the normalisation's second-order
         * terms over every rank's columns; share-weighted and summed like G v */
        NGT_OK(ng_net_hvp(ref, &v, &gv));
        NGT_OK(ng_tensor_get(be, &gv, gr));
        NGT_OK(ng_net_hvp(net, &v, &gv));
        NGT_OK(ng_tensor_get(be, &gv, g));
        for (i = 0; i < (int)np; i++) sum[i] = (double)(hi - lo) / (double)M * (double)g[i];
        NGT_OK(ng_comm_allreduce_host(C, sum, np, "the weighted H v"));
        for (i = 0; i < (int)np; i++) g[i] = (float)sum[i], sum[i] = (double)gr[i];
        worst_hv = rel_diff(g, sum, np);
        NGT_CHECK(worst_hv <= 2e-5, "H v: %.3g relative to one process's (bound 2e-5)", worst_hv);
        printf("  rank %d: J v %.2g, G v %.2g, empirical F v %.2g, H v %.2g relative to one process\n", C->rank, worst_j, worst_gv,
               worst_fv, worst_hv);
        /* the sampled F v: each rank draws its cases' targets by their global columns (col0 = lo),
         * so the share-weighted sum is one process's product with the same draws, through the
         * synchronised passes; 2 draws per case */
        worst_sv = sampled_fvp_ranks(be, ref, net, &v, &gv, lo, hi, gr, g, sum, np);
        NGT_CHECK(worst_sv <= 2e-5, "sampled F v: %.3g relative to one process's (bound 2e-5)", worst_sv);
        printf("  rank %d: sampled F v %.2g relative to one process\n", C->rank, worst_sv);
        if (C->world > 1) {
            /* the sampled backward pass's per-case statistics (K-FAC's, the diagonal metric's) are
             * not reduced through batch norm: refused by name */
            ng_status s = ng_net_backward_sampled_at(net, 7, 0, (uint64_t)lo);
            NGT_CHECK(s == NG_ERR_UNSUPPORTED && strstr(ng_last_error(), "sampled backward pass"),
                      "sampled backward pass on %d ranks with batch norm: status %d (%s), want a refusal naming it", C->world, (int)s,
                      ng_last_error());
        }
        ng_free(be, vd);
        ng_free(be, gd);
        free(jv), free(jvr), free(jref);
    }
    if (C->world > 1) {
        ng_model *small = NULL;
        ng_tensor xall = ng_tensor_matrix((float *)xd, D, M, D), xs = ng_tensor_cols(&xall, lo, hi - lo);
        ng_status s;
        /* a shard of more cases than the chunk: refused before any collective, naming --chunk */
        NGT_OK(make_net(be, 2, &small));
        NGT_OK(ng_net_set_comm(small, C));
        if (hi - lo > 2) {
            s = ng_model_gradient(small, &xs, NULL);
            NGT_CHECK(s == NG_ERR_INVALID_ARG && strstr(ng_last_error(), "--chunk 2"), "a shard of %d cases with chunk 2: "
                      "status %d (%s), want a refusal naming --chunk", hi - lo, (int)s, ng_last_error());
        }
        ng_net_free(small);
    }
    ng_free(be, xd);
    ng_free(be, yd);
    ng_net_free(ref);
    ng_net_free(net);
    ng_backend_free(be);
    free(x), free(g), free(gr), free(sum), free(y), free(yr);
    return NGT_PASS;
}

/* The sampled F v without batch norm: one process with --chunk 4 (4 passes over the 13 cases)
 * against the ranks' shards in passes of 3 cases; the draws follow the global column, so neither the
 * chunking nor the shards change them: within 2e-5 as above (reassociated sums only). */
static int test_sampled_fvp_plain(void) {
    ng_backend *be = NULL;
    ng_model *ref = NULL, *net = NULL;
    ng_net_config cfg;
    float *x = (float *)malloc(sizeof(float) * D * M), *g, *gr, *hv;
    double *sum, worst;
    void *xd = NULL, *vd = NULL, *od = NULL;
    int lo, hi, i, c, pass;
    size_t np;
    NGT_CHECK(x != NULL, "host memory");
    NGT_OK(ng_backend_cpu_init(&be));
    for (pass = 0; pass < 2; pass++) {
        ng_net_config_default(&cfg);
        cfg.loss = NG_LOSS_BERNOULLI;
        cfg.target = NG_NET_TARGET_INPUT;
        cfg.chunk = pass ? 3 : 4;
        cfg.init = NG_INIT_GAUSSIAN;
        cfg.init_scale = 0.7f;
        cfg.seed = 9;
        NGT_OK(ng_net_parse_spec("6-5-4:tanh-6", NG_ACT_LOGISTIC, NG_ACT_LOGISTIC, &cfg));
        NGT_OK(ng_net_create(be, &cfg, pass ? &net : &ref));
    }
    np = ng_model_size(net);
    g = (float *)malloc(np * sizeof(float));
    gr = (float *)malloc(np * sizeof(float));
    hv = (float *)malloc(np * sizeof(float));
    sum = (double *)malloc(np * sizeof(double));
    NGT_CHECK(g && gr && hv && sum, "host memory");
    for (c = 0; c < M; c++)
        for (i = 0; i < D; i++) x[i + D * c] = (float)(0.5 + 0.45 * sin(0.9 * c + 1.7 * i));
    for (i = 0; i < (int)np; i++) hv[i] = (float)(0.5 * sin(1.3 * i + 0.4));
    NGT_OK(ng_alloc(be, sizeof(float) * D * M, &xd));
    NGT_OK(ng_alloc(be, np * sizeof(float), &vd));
    NGT_OK(ng_alloc(be, np * sizeof(float), &od));
    NGT_OK(ng_set(be, xd, x, sizeof(float) * D * M));
    NGT_OK(ng_set(be, vd, hv, np * sizeof(float)));
    shard(&lo, &hi);
    {
        ng_tensor xall = ng_tensor_matrix((float *)xd, D, M, D), xs = ng_tensor_cols(&xall, lo, hi - lo);
        ng_tensor v = ng_tensor_matrix((float *)vd, (int)np, 1, (int)np), out = ng_tensor_matrix((float *)od, (int)np, 1, (int)np);
        NGT_OK(ng_net_set_batch(ref, &xall, NULL));
        NGT_OK(ng_net_set_batch(net, &xs, NULL));
        worst = sampled_fvp_ranks(be, ref, net, &v, &out, lo, hi, gr, g, sum, np);
    }
    printf("  rank %d: cases [%d, %d), chunks of 3 (one process: 4): sampled F v without batch norm %.2g relative\n", C->rank, lo,
           hi, worst);
    NGT_CHECK(worst <= 2e-5, "sampled F v without batch norm: %.3g relative to one process's (bound 2e-5)", worst);
    ng_free(be, xd), ng_free(be, vd), ng_free(be, od);
    ng_net_free(ref), ng_net_free(net);
    ng_backend_free(be);
    free(x), free(g), free(gr), free(hv), free(sum);
    return NGT_PASS;
}

int main(void) {
    if (ngt_ranks_open(&C)) return 1;
    NGT_RUN(test_synchronised_bn);
    NGT_RUN(test_sampled_fvp_plain);
    ng_comm_free(C);
    return ngt_finish();
}
