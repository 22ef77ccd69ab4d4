/* test_whiten_ranks.c: the whitening statistics of several ranks (natgrad/whiten.h:
 * ng_whiten_allreduce, ng_whiten_compute_shared, ng_whiten_owners), PRONG's data parallelism.
 * Run alone it checks the single-rank calls (the merge is the identity) and the owner assignment;
 * under `mpirun -np N` (tests/test_dist.sh, 2 and 3 ranks) each rank adds an uneven share of 41
 * samples of three statistics (dimensions 5, 3, 7; means near 100, so a merge that averaged means or
 * formed E[x x^T] - c c^T in float32 would fail), also with the last rank holding none, and checks:
 * the merged count, mean and scatter against a float64 two-pass reference over all 41 samples, bit
 * for bit the same on every rank; after the shared eigendecompositions (each by its owner,
 * broadcast) U Sigma U^T = diag(lambda / (lambda + eps)) with Sigma the float64 reference, and U
 * bit for bit rank 0's on every rank. On the CPU backend (MPI) and, in the emulated build, on a CUDA
 * backend per rank (NCCL through tests/simt's shim, ng_backend_cuda_init). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ranks.h"
#include "natgrad/backend.h"
#include "natgrad/comm.h"
#include "natgrad/log.h"
#include "natgrad/whiten.h"

enum { NTOT = 41, K = 3, CHUNK = 8 };
static const int DIMS[K] = {5, 3, 7};
static ng_comm *C;

/* sample i of statistic s, coordinate j: a mean near 100 and a covariance of full rank */
static double sample(int s, int j, int i) {
    return 100.0 + 10.0 * s + (j + 1) * sin(0.7 * i + j) + 0.3 * cos(0.13 * i * i + 2.0 * j) + 0.05 * (double)((i * (j + 3)) % 11);
}

/* this rank's share [lo, hi) of the NTOT samples: uneven (the ranks' shares grow), or with
 * none_last the last rank holds none */
static void share(int none_last, int *lo, int *hi) {
    int W = C->world, r = C->rank;
    if (W > 1 && none_last) {
        *lo = r == W - 1 ? NTOT : r * NTOT / (W - 1);
        *hi = r == W - 1 ? NTOT : (r + 1) * NTOT / (W - 1);
    } else
        ngt_shard(C, NTOT, lo, hi); /* one rank: all of them */
}

/* every rank's n floats equal rank 0's, bit for bit */
static int same_as_rank0(ng_backend *be, const float *dev, size_t n, const char *what) {
    return ngt_same_as_rank0_dev(C, be, dev, n, what);
}

static int run_case(ng_backend *be, int none_last) {
    ng_whiten w[K], *all[K];
    int lo, hi, s, i, j, k;
    const float eps = 0.1f;
    memset(w, 0, sizeof w);
    share(none_last, &lo, &hi);
    for (s = 0; s < K; s++) {
        const int d = DIMS[s];
        double mean[8] = {0}, M[64] = {0}, maxm = 0.0, maxM = 0.0, errm = 0.0, errM = 0.0;
        float *h, *dev = NULL, *got;
        NGT_OK(ng_whiten_init(be, d, CHUNK, &w[s]));
        all[s] = &w[s];
        /* this rank's samples as columns of X (d, hi - lo), added in pieces of CHUNK */
        if (hi > lo) {
            h = (float *)malloc((size_t)d * (size_t)(hi - lo) * sizeof(float));
            NGT_CHECK(h != NULL, "host memory");
            for (i = lo; i < hi; i++)
                for (j = 0; j < d; j++) h[(size_t)(i - lo) * d + j] = (float)sample(s, j, i);
            NGT_OK(ng_alloc(be, (size_t)d * (size_t)(hi - lo) * sizeof(float), (void **)&dev));
            NGT_OK(ng_set(be, dev, h, (size_t)d * (size_t)(hi - lo) * sizeof(float)));
            NGT_OK(ng_whiten_add(&w[s], dev, d, hi - lo, 0));
            free(h);
        }
        NGT_OK(ng_whiten_allreduce(&w[s], C));
        if (dev) ng_free(be, dev);
        NGT_CHECK(w[s].n == (double)NTOT, "statistic %d: merged count %g, want %d", s, w[s].n, NTOT);
        /* float64 two-pass reference over every sample */
        for (i = 0; i < NTOT; i++)
            for (j = 0; j < d; j++) mean[j] += sample(s, j, i) / NTOT;
        for (i = 0; i < NTOT; i++)
            for (j = 0; j < d; j++)
                for (k = 0; k < d; k++) M[j + d * k] += (sample(s, j, i) - mean[j]) * (sample(s, k, i) - mean[k]);
        got = (float *)malloc((size_t)(d + d * d) * sizeof(float));
        NGT_CHECK(got != NULL, "host memory");
        NGT_OK(ng_get(be, got, w[s].mean.data, (size_t)d * sizeof(float)));
        NGT_OK(ng_get(be, got + d, w[s].M.data, (size_t)d * d * sizeof(float)));
        for (j = 0; j < d; j++) {
            maxm = fmax(maxm, fabs(mean[j]));
            errm = fmax(errm, fabs(got[j] - mean[j]));
            for (k = 0; k <= j; k++) { /* lower triangle */
                maxM = fmax(maxM, fabs(M[j + d * k]));
                errM = fmax(errM, fabs(got[d + j + d * k] - M[j + d * k]));
            }
        }
        /* float32: the mean to a few ulps of 100; the scatter (centred pieces merged, ~40 terms)
         * to 1e-5 of its largest entry, where E[x x^T] - c c^T would lose everything (100^2 vs ~1) */
        NGT_CHECK(errm <= 4e-7 * maxm, "statistic %d (%s): mean off by %.3g (of %.3g)", s, be->iface->name, errm, maxm);
        NGT_CHECK(errM <= 1e-5 * maxM, "statistic %d (%s): scatter off by %.3g (of %.3g)", s, be->iface->name, errM, maxM);
        if (same_as_rank0(be, w[s].mean.data, (size_t)d, "the merged mean") != NGT_PASS) return NGT_FAIL;
        if (same_as_rank0(be, w[s].M.data, (size_t)d * d, "the merged scatter") != NGT_PASS) return NGT_FAIL;
        free(got);
    }
    NGT_OK(ng_whiten_compute_shared(all, K, eps, C));
    for (s = 0; s < K; s++) {
        const int d = DIMS[s];
        double mean[8] = {0}, Sg[64] = {0}, worst = 0.0;
        float UT[64], lam[8];
        int a, b;
        if (same_as_rank0(be, w[s].UT.data, (size_t)d * d, "U^T") != NGT_PASS) return NGT_FAIL;
        if (same_as_rank0(be, w[s].uc.data, (size_t)d, "U c") != NGT_PASS) return NGT_FAIL;
        if (same_as_rank0(be, w[s].E.data, (size_t)d * d, "the eigenvectors") != NGT_PASS) return NGT_FAIL;
        NGT_OK(ng_get(be, UT, w[s].UT.data, (size_t)d * d * sizeof(float)));
        NGT_OK(ng_get(be, lam, w[s].lambda.data, (size_t)d * sizeof(float)));
        for (i = 0; i < NTOT; i++)
            for (j = 0; j < d; j++) mean[j] += sample(s, j, i) / NTOT;
        for (i = 0; i < NTOT; i++)
            for (j = 0; j < d; j++)
                for (k = 0; k < d; k++) Sg[j + d * k] += (sample(s, j, i) - mean[j]) * (sample(s, k, i) - mean[k]) / NTOT;
        /* (U Sigma U^T)[a, b] = sum_jk UT[j, a] Sigma[j, k] UT[k, b] = lambda_a / (lambda_a + eps) delta_ab,
         * to 1e-4 (float32 eigenvectors of a covariance of condition ~1e3) */
        for (a = 0; a < d; a++)
            for (b = 0; b < d; b++) {
                double v = 0.0, want = a == b ? (double)lam[a] / ((double)lam[a] + eps) : 0.0;
                for (j = 0; j < d; j++)
                    for (k = 0; k < d; k++) v += (double)UT[j + d * a] * Sg[j + d * k] * (double)UT[k + d * b];
                worst = fmax(worst, fabs(v - want));
            }
        NGT_CHECK(worst <= 1e-4, "statistic %d (%s): U Sigma U^T is %.3g off diag(lambda / (lambda + eps))", s, be->iface->name, worst);
        ng_whiten_free(&w[s]);
    }
    return NGT_PASS;
}

static ng_backend *open_cpu(void) {
    ng_backend *be = NULL;
    return ng_backend_cpu_init(&be) == NG_OK ? be : NULL;
}

static int test_merge_uneven_cpu(void) {
    ng_backend *be = open_cpu();
    int r;
    NGT_CHECK(be != NULL, "cpu backend: %s", ng_last_error());
    r = run_case(be, 0);
    ng_backend_free(be);
    return r;
}

static int test_merge_rank_without_samples_cpu(void) {
    ng_backend *be;
    int r;
    if (C->world == 1) return ngt_skip("needs mpirun -np 2 or more (tests/test_dist.sh)");
    be = open_cpu();
    NGT_CHECK(be != NULL, "cpu backend: %s", ng_last_error());
    r = run_case(be, 1);
    ng_backend_free(be);
    return r;
}

/* The same on one (emulated) GPU per rank, the device collectives over NCCL when compiled in. */
static int test_merge_cuda(void) {
    ng_backend *be = NULL;
    ng_comm *saved = C, *nc = NULL;
    int r;
    if ((r = ngt_ranks_cuda(C, &be, &nc)) != NGT_PASS) return r; /* every rank skips when one has no device */
    C = nc;
    r = run_case(be, 0);
    if (r == NGT_PASS && C->world > 1) r = run_case(be, 1);
    C = saved;
    ng_comm_free(nc);
    ng_backend_free(be);
    return r;
}

static int test_owners(void) {
    static const int d1[4] = {8, 4, 4, 4}, d2[3] = {3, 5, 7};
    int o[4];
    ng_whiten_owners(d1, 4, 2, o); /* 512 on rank 0; 64 + 64 + 64 on rank 1 */
    NGT_CHECK(o[0] == 0 && o[1] == 1 && o[2] == 1 && o[3] == 1, "owners {8,4,4,4} on 2 ranks: %d %d %d %d", o[0], o[1], o[2], o[3]);
    ng_whiten_owners(d2, 3, 2, o); /* 343 on rank 0; 125 then 27 on rank 1 */
    NGT_CHECK(o[0] == 1 && o[1] == 1 && o[2] == 0, "owners {3,5,7} on 2 ranks: %d %d %d", o[0], o[1], o[2]);
    ng_whiten_owners(d2, 3, 3, o);
    NGT_CHECK(o[0] == 2 && o[1] == 1 && o[2] == 0, "owners {3,5,7} on 3 ranks: %d %d %d", o[0], o[1], o[2]);
    ng_whiten_owners(d2, 3, 1, o);
    NGT_CHECK(o[0] == 0 && o[1] == 0 && o[2] == 0, "owners on 1 rank: %d %d %d", o[0], o[1], o[2]);
    return NGT_PASS;
}

int main(void) {
    if (ngt_ranks_open(&C)) return 1;
    NGT_RUN(test_owners);
    NGT_RUN(test_merge_uneven_cpu);
    NGT_RUN(test_merge_rank_without_samples_cpu);
    NGT_RUN(test_merge_cuda);
    ng_comm_free(C);
    return ngt_finish();
}
