/* rbm.c: binary RBMs as natgrad models (natgrad/rbm.h): parameters, free energies, and the PCD/CD
 * gradient estimator with its state. Shapes: W (n_hidden, n_visible), a (n_visible), b (n_hidden),
 * batches are columns. The gradient (of the negative log-likelihood) is
 *   gW = hm vm^T / M - hd vd^T / m,  ga = <vm> - <vd>,  gb = <hm> - <hd>,
 * with hd = p(h | vd), hm = p(h | vm) (Rao-Blackwellised) and vm the fantasy particles after k
 * Gibbs sweeps. Preconditioners and update rules live in host/optim/ and see the RBM only through
 * the model interface. A gradient allocates nothing; an interrupted one restores the counters and
 * leaves the persistent particles as they were. */
#include "natgrad/rbm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "natgrad/comm.h"
#include "natgrad/log.h"
#include "natgrad/rng.h"

struct ng_rbm_est {
    ng_rbm_estimator_config cfg;
    int M;                  /* chains: particles (PCD) or the batch (CD); this rank's share of them */
    int M_all, p0;          /* chains of all ranks, and the global index of this rank's first (0: one process) */
    uint64_t rng_step;      /* next Philox step of the Gibbs / binarisation streams (checkpointed) */
    uint64_t dev_step;      /* what rng_dev[0] holds (set at init and load, then mirrored) */
    uint64_t last_advance;  /* steps one gradient takes (a replayed graph takes as many) */
    int advanced;           /* the last gradient call succeeded (a discarded capture undoes it) */
    int m;                  /* columns of the last batch */
    int col_block;          /* ng_rbm_set_col_block (0: automatic) */
    /* state (checkpointed as rbm.particles) */
    ng_arena state;
    ng_tensor particles;    /* (nv, M) persistent fantasy particles */
    /* workspace */
    ng_arena work;
    ng_tensor vd;           /* (nv, batch) the binarised batch (--binarize-train) */
    ng_tensor vdv;          /* (nv, m) the batch as trained on: vd's columns, or the caller's batch
                             * itself when it is not binarised (no copy; valid while the caller
                             * keeps that batch, which the batch stream does until the one after next) */
    ng_tensor hd;           /* (nh, batch) p(h | vd) */
    ng_tensor vm;           /* (nv, M) negative-phase visible states */
    ng_tensor vneg;         /* (nv, M) the chain's end: vm, or (PCD-1) the particles, sampled in place */
    ng_tensor hm;           /* (nh, M) p(h | vm) (after the chain) */
    ng_tensor hs;           /* (nh, max(batch, M)) hidden samples inside the chain */
    ng_tensor vr;           /* (nv, batch) reconstruction probabilities (log columns only) */
    ng_tensor means;        /* (2 nv + 2 nh) the four means below, one buffer (one all-reduce) */
    ng_tensor mv_d, mh_d;   /* (nv,1), (nh,1) data means of this batch (views of means) */
    ng_tensor mv_m, mh_m;   /* model (particle) means (views of means) */
    ng_tensor mean_acc;     /* (2 nv + 2 nh) float64: the four means' running column sums, summed
                             * block by block in the Gibbs phases (backends with sum_cols_part) */
    ng_tensor v_mean;       /* (nv, 1) mean of the training set */
    ng_tensor rng_dev;      /* (2) 64-bit words in a float64 tensor: [0] the Gibbs kernels' Philox
                             * step counted on the device (so a captured CUDA graph replays with
                             * new draws), [1] the kernel's block ticket */
    /* several ranks: the whole particle set, written by gather for rank 0's checkpoint */
    ng_arena whole;
    ng_tensor particles_all; /* (nv, M_all) */
    uint64_t whole_step;     /* rng_step when gather last filled it (UINT64_MAX: never) */
};

static ng_status sync_rng_dev(ng_rbm_est *e, ng_backend *be);

/* The shard [rank n / world, (rank + 1) n / world) of n columns, as ng_batches shards a batch. */
static void shard_of(int n, int rank, int world, int *lo, int *hi) {
    *lo = (int)((long long)rank * n / world);
    *hi = (int)((long long)(rank + 1) * n / world);
}

/* A (len, 1) view at element off of a vector. */
static ng_tensor vec_view(const ng_tensor *v, int off, int len) {
    ng_tensor t = *v;
    t.data = v->data + off;
    t.rows = t.dims[0] = len;
    t.cols = t.dims[1] = 1;
    t.ld = len;
    return t;
}

static int dist_on(const ng_rbm *r) { return r->base.dist.comm != NULL; }

static const struct ng_model_i rbm_iface;

ng_rbm *ng_rbm_from_model(ng_model *m) {
    return (m && m->iface == &rbm_iface) ? (ng_rbm *)(void *)m : NULL;
}

ng_status ng_rbm_init(ng_backend *be, int n_visible, int n_hidden, ng_rbm *out) {
    int dw[2], dv[2], dh[2];
    ng_status s;
    memset(out, 0, sizeof *out);
    if (n_visible < 1 || n_hidden < 1)
        return ng_error(NG_ERR_INVALID_ARG, "rbm: sizes must be >= 1 (got %d visible, %d hidden)",
                        n_visible, n_hidden);
    if ((double)n_visible * (double)n_hidden > 2e9)
        return ng_error(NG_ERR_INVALID_ARG, "rbm: %d x %d weights is too large", n_hidden, n_visible);
    out->be = be;
    out->n_visible = n_visible;
    out->n_hidden = n_hidden;
    ng_model_begin(&out->base, &rbm_iface, be);
    dw[0] = n_hidden, dw[1] = n_visible;
    dv[0] = n_visible, dv[1] = 1;
    dh[0] = n_hidden, dh[1] = 1;
    s = ng_model_add_param(&out->base, "W", 2, dw, 1, &out->W, &out->gW);
    if (s == NG_OK) s = ng_model_add_param(&out->base, "a", 2, dv, 0, &out->a, &out->ga);
    if (s == NG_OK) s = ng_model_add_param(&out->base, "b", 2, dh, 0, &out->b, &out->gb);
    if (s == NG_OK) s = ng_model_commit(&out->base);
    if (s != NG_OK) ng_rbm_free(out);
    return s;
}

void ng_rbm_free(ng_rbm *rbm) {
    if (rbm) ng_model_release(&rbm->base);
}

void ng_rbm_estimator_free(ng_rbm *rbm) {
    if (!rbm || !rbm->est) return;
    ng_arena_free(&rbm->est->state);
    ng_arena_free(&rbm->est->work);
    ng_arena_free(&rbm->est->whole);
    free(rbm->est);
    rbm->est = NULL;
}

static void rbm_destroy(ng_model *m) { ng_rbm_estimator_free((ng_rbm *)(void *)m); }

ng_status ng_rbm_init_params(ng_rbm *rbm, uint64_t seed, float init_std,
                             const float *visible_mean_host) {
    size_t nw = ng_tensor_count(&rbm->W);
    float *w = (float *)malloc(nw * sizeof(float));
    float *a = (float *)calloc((size_t)rbm->n_visible, sizeof(float));
    ng_status s;
    int i;
    if (!w || !a) {
        free(w);
        free(a);
        return ng_error(NG_ERR_OOM, "rbm init: out of host memory");
    }
    ng_rng_fill_normal(w, nw, 0.0f, init_std, ng_rng_stream_key(seed, NG_RNG_INIT_WEIGHTS), 0);
    if (visible_mean_host)
        for (i = 0; i < rbm->n_visible; i++) {
            float p = visible_mean_host[i];
            p = p < 1e-3f ? 1e-3f : p > 1.0f - 1e-3f ? 1.0f - 1e-3f : p;
            a[i] = logf(p / (1.0f - p));
        }
    s = ng_rbm_set_params(rbm, w, a, NULL);
    if (s == NG_OK) s = ng_memset0(rbm->be, rbm->b.data, (size_t)rbm->n_hidden * sizeof(float));
    free(w);
    free(a);
    return s;
}

ng_status ng_rbm_get_params(const ng_rbm *rbm, float *W, float *a, float *b) {
    if (W) NG_TRY(ng_tensor_get(rbm->be, &rbm->W, W));
    if (a) NG_TRY(ng_tensor_get(rbm->be, &rbm->a, a));
    if (b) NG_TRY(ng_tensor_get(rbm->be, &rbm->b, b));
    return NG_OK;
}

ng_status ng_rbm_set_params(ng_rbm *rbm, const float *W, const float *a, const float *b) {
    if (W) NG_TRY(ng_tensor_set(rbm->be, &rbm->W, W));
    if (a) NG_TRY(ng_tensor_set(rbm->be, &rbm->a, a));
    if (b) NG_TRY(ng_tensor_set(rbm->be, &rbm->b, b));
    return NG_OK;
}

ng_status ng_rbm_free_energy(ng_rbm *rbm, const float *v_host, int n, double *F_out) {
    enum { CHUNK = 1024 };
    ng_backend *be = rbm->be;
    int nv = rbm->n_visible, nh = rbm->n_hidden, c0;
    ng_arena ws;
    ng_tensor V, P, f1, f2;
    float *h1 = NULL, *h2 = NULL;
    ng_status s;
    if (n <= 0) return NG_OK;
    ng_arena_begin(&ws, be, "free-energy workspace");
    ng_arena_reserve(&ws, "V", nv, CHUNK, &V);
    ng_arena_reserve(&ws, "P", nh, CHUNK, &P);
    ng_arena_reserve(&ws, "lin", CHUNK, 1, &f1);
    ng_arena_reserve(&ws, "sp", CHUNK, 1, &f2);
    s = ng_arena_commit(&ws);
    if (s == NG_OK) {
        h1 = (float *)malloc(CHUNK * sizeof(float));
        h2 = (float *)malloc(CHUNK * sizeof(float));
        if (!h1 || !h2) s = ng_error(NG_ERR_OOM, "free energy: out of host memory");
    }
    for (c0 = 0; s == NG_OK && c0 < n; c0 += CHUNK) {
        int m = n - c0 < CHUNK ? n - c0 : CHUNK, j;
        s = ng_set(be, V.data, v_host + (size_t)c0 * nv, (size_t)m * nv * sizeof(float));
        if (s == NG_OK) s = ng_gemm(be, 0, 0, nh, m, nv, 1.0f, rbm->W.data, nh, V.data, nv, 0.0f, P.data, nh);
        if (s == NG_OK) s = ng_softplus_sum(be, nh, m, P.data, nh, rbm->b.data, 1.0f, 1.0f, 0.0f, f2.data);
        if (s == NG_OK) s = ng_gemv(be, 1, nv, m, 1.0f, V.data, nv, rbm->a.data, 0.0f, f1.data);
        if (s == NG_OK) s = ng_get(be, h1, f1.data, (size_t)m * sizeof(float));
        if (s == NG_OK) s = ng_get(be, h2, f2.data, (size_t)m * sizeof(float));
        for (j = 0; s == NG_OK && j < m; j++) F_out[c0 + j] = -(double)h1[j] - (double)h2[j];
    }
    free(h1);
    free(h2);
    ng_arena_free(&ws);
    return s;
}

/* ---- the estimator ------------------------------------------------------------------------- */

const char *ng_rbm_estimator_name(ng_rbm_estimator e) { return e == NG_RBM_CD ? "cd" : "pcd"; }

uint64_t ng_rbm_rng_step(const ng_rbm *rbm) { return rbm->est ? rbm->est->rng_step : 0; }

ng_status ng_rbm_set_col_block(ng_rbm *rbm, int cols) {
    if (!rbm->est) return ng_error(NG_ERR_INVALID_ARG, "rbm column block: the estimator is not set up (ng_rbm_estimator_init)");
    if (cols < 0) return ng_error(NG_ERR_INVALID_ARG, "rbm column block %d: must be >= 0 (0 = automatic)", cols);
    rbm->est->col_block = cols;
    return NG_OK;
}

/* Bytes of hidden and visible states per block of the Gibbs phases on the CPU backend. Smaller
 * blocks keep more of each gemm's output in cache for the Gibbs op that reads it, but each block's
 * gemm packs W again (at 784 x 500 on a 2 MiB-L2 Xeon: blocks of 400 columns cost a gemm 6% more
 * than 2000 at once). Measured there with bench_rbm's ratio (the update's gemm GFLOP/s over the
 * sgemm GFLOP/s, 1 thread, CPU time, 4 runs each, loaded machine): one block of 2000 chains
 * 0.80-0.81, blocks of 400 0.82-0.83, of 667 (this size) 0.82-0.84, of 1000 0.82-0.84. */
#define NG_RBM_CPU_BLOCK_BYTES (4u << 20)

/* Blocks for a phase of `cols` columns: as many as blocks of at most the configured (or
 * automatic) size need, of equal size within one column (block j: columns [j cols / nb,
 * (j + 1) cols / nb)), so that no block is a thin remainder. The automatic blocks stay large
 * gemms (>= 10^7 multiply-adds), where BLAS runs the same kernels as on the whole phase, so the
 * bits do not change: OpenBLAS takes small-matrix kernels, whose rounding differs, below 10^6. */
static int col_blocks(const ng_rbm *r, int cols) {
    int b = r->est->col_block;
    if (b == 0) {
        if (r->be->kind != NG_DEVICE_CPU) return 1;
        b = (int)(NG_RBM_CPU_BLOCK_BYTES / (4u * (unsigned)(r->n_visible + r->n_hidden))) / 16 * 16;
        if (b < 16 || (double)r->n_visible * r->n_hidden * (b / 2) < 1e7) return 1;
    }
    return (cols + b - 1) / b;
}
static int block_lo(int j, int nb, int cols) { return (int)((long long)j * cols / nb); }

ng_status ng_rbm_estimator_check(const ng_rbm_estimator_config *c, int n_train) {
    if (c->estimator != NG_RBM_PCD && c->estimator != NG_RBM_CD)
        return ng_error(NG_ERR_INVALID_ARG, "--estimator: unknown estimator %d (use pcd or cd)", (int)c->estimator);
    if (c->batch < 1) return ng_error(NG_ERR_INVALID_ARG, "--batch %d: must be >= 1", c->batch);
    if (c->batch > n_train)
        return ng_error(NG_ERR_INVALID_ARG, "--batch %d: larger than the training set (%d examples)",
                        c->batch, n_train);
    if (c->estimator == NG_RBM_PCD && c->particles < 1)
        return ng_error(NG_ERR_INVALID_ARG, "--particles %d: must be >= 1", c->particles);
    if (c->k < 1 || c->k > 100000) return ng_error(NG_ERR_INVALID_ARG, "--k %d: must be in 1 .. 100000", c->k);
    if (c->world > 1 && (c->rank < 0 || c->rank >= c->world))
        return ng_error(NG_ERR_INVALID_ARG, "rbm: rank %d of %d", c->rank, c->world);
    if (c->world > 1 && c->batch < c->world)
        return ng_error(NG_ERR_INVALID_ARG, "--batch %d: fewer cases than the %d ranks (each rank needs one)", c->batch, c->world);
    if (c->world > 1 && c->estimator == NG_RBM_PCD && c->particles < c->world)
        return ng_error(NG_ERR_INVALID_ARG, "--particles %d: fewer than the %d ranks (each rank needs one)", c->particles, c->world);
    return NG_OK;
}

ng_status ng_rbm_estimator_init(ng_rbm *rbm, const ng_rbm_estimator_config *cfg,
                                const float *train_host, int n_train) {
    ng_backend *be = rbm->be;
    int nv = rbm->n_visible, nh = rbm->n_hidden, m, M, i, world, lo, hi;
    size_t nx = (size_t)nv * (size_t)n_train, j;
    float *pm = NULL;
    ng_rbm_est *e;
    ng_status s;
    if (rbm->est) return ng_error(NG_ERR_INVALID_ARG, "rbm: the estimator is set up already");
    if (n_train < 1 || !train_host) return ng_error(NG_ERR_INVALID_ARG, "rbm trainer: empty training set");
    NG_TRY(ng_rbm_estimator_check(cfg, n_train));
    for (j = 0; j < nx; j++)
        if (!(train_host[j] >= 0.0f && train_host[j] <= 1.0f))
            return ng_error(NG_ERR_INVALID_ARG,
                            "training data: value %g at example %zu, pixel %zu is outside [0, 1] (NaN?)",
                            (double)train_host[j], j / (size_t)nv, j % (size_t)nv);
    e = (ng_rbm_est *)calloc(1, sizeof *e);
    if (!e) return ng_error(NG_ERR_OOM, "rbm: out of host memory");
    rbm->est = e;
    e->cfg = *cfg;
    e->whole_step = UINT64_MAX;
    world = cfg->world > 1 ? cfg->world : 1;
    e->M_all = cfg->estimator == NG_RBM_PCD ? cfg->particles : cfg->batch;
    e->cfg.particles = e->M_all;
    /* this rank's particles (CD: its columns of the batch, ng_batches' shard) */
    shard_of(e->M_all, world > 1 ? cfg->rank : 0, world, &lo, &hi);
    e->p0 = lo;
    M = e->M = hi - lo;
    shard_of(cfg->batch, world > 1 ? cfg->rank : 0, world, &lo, &hi);
    m = hi - lo; /* this rank's columns of every batch */
    ng_arena_begin(&e->state, be, "rbm estimator state");
    ng_arena_begin(&e->work, be, "rbm workspace");
    ng_arena_begin(&e->whole, be, "rbm particles (all ranks)");
    ng_arena_reserve(&e->state, "particles", nv, M, &e->particles);
    if (world > 1) ng_arena_reserve(&e->whole, "particles", nv, e->M_all, &e->particles_all);
    ng_arena_reserve(&e->work, "vd", nv, m, &e->vd);
    ng_arena_reserve(&e->work, "hd", nh, m, &e->hd);
    ng_arena_reserve(&e->work, "vm", nv, M, &e->vm);
    ng_arena_reserve(&e->work, "hm", nh, M, &e->hm);
    ng_arena_reserve(&e->work, "hs", nh, m > M ? m : M, &e->hs);
    ng_arena_reserve(&e->work, "vr", nv, m, &e->vr);
    ng_arena_reserve(&e->work, "means", 2 * nv + 2 * nh, 1, &e->means);
    ng_arena_reserve(&e->work, "v_mean", nv, 1, &e->v_mean);
    {
        int two[1] = {2};
        ng_arena_reserve_nd(&e->work, "rng_dev", NG_F64, 1, two, &e->rng_dev);
        two[0] = 2 * nv + 2 * nh;
        ng_arena_reserve_nd(&e->work, "mean_acc", NG_F64, 1, two, &e->mean_acc);
    }
    s = ng_arena_commit(&e->state);
    if (s == NG_OK) s = ng_arena_commit(&e->work);
    if (s == NG_OK && world > 1) s = ng_arena_commit(&e->whole);
    if (s == NG_OK) {
        e->vneg = e->vm;
        e->mv_d = vec_view(&e->means, 0, nv);
        e->mh_d = vec_view(&e->means, nv, nh);
        e->mv_m = vec_view(&e->means, nv + nh, nv);
        e->mh_m = vec_view(&e->means, 2 * nv + nh, nh);
    }
    if (s == NG_OK) s = sync_rng_dev(e, be);
    /* the training-set mean; the particles start as Bernoulli draws from it (the base-rate model) */
    if (s == NG_OK) {
        int c;
        pm = (float *)calloc((size_t)nv, sizeof(float));
        if (!pm) s = ng_error(NG_ERR_OOM, "rbm trainer: out of host memory");
        for (c = 0; s == NG_OK && c < n_train; c++)
            for (j = 0; j < (size_t)nv; j++) pm[j] += train_host[(size_t)c * nv + j];
        for (j = 0; s == NG_OK && j < (size_t)nv; j++) pm[j] /= (float)n_train;
    }
    if (s == NG_OK) s = ng_tensor_set(be, &e->v_mean, pm);
    for (i = 0; s == NG_OK && i < M; i++)
        s = ng_set(be, e->particles.data + (size_t)i * nv, pm, (size_t)nv * sizeof(float));
    if (s == NG_OK) /* the draws of this rank's columns of the whole set */
        s = ng_bernoulli_at(be, (size_t)nv * M, e->particles.data, e->particles.data,
                            ng_rng_stream_key(cfg->seed, NG_RNG_PARTICLES), 0, (uint64_t)e->p0 * (uint64_t)nv);
    free(pm);
    if (s != NG_OK) ng_rbm_estimator_free(rbm);
    return s;
}

/* The device step count = the host's rng_step (blocking: never inside a CUDA graph capture). */
static ng_status sync_rng_dev(ng_rbm_est *e, ng_backend *be) {
    const uint64_t c[2] = {e->rng_step, 0};
    ng_status s = ng_set(be, e->rng_dev.data, c, sizeof c);
    if (s != NG_OK)
        return ng_error_wrap(s, "rbm: setting the device Philox step to %llu (not possible inside a CUDA graph capture): ",
                             (unsigned long long)e->rng_step);
    e->dev_step = e->rng_step;
    return NG_OK;
}

/* The divisors of the means: the global counts of cases (im) and chains (iM); on several ranks
 * each holds its shard's share of the global means, and the all-reduce sums them. */
static float inv_cases(const ng_rbm *r) { return 1.0f / (float)(dist_on(r) ? r->base.dist.batch : r->est->m); }
static float inv_chains(const ng_rbm *r) { return 1.0f / (float)(dist_on(r) ? r->est->M_all : r->est->M); }

/* Mean i of `means` (0: v data, 1: h data, 2: v model, 3: h model) summed over block b of nb
 * while the block is in cache: the running sum in mean_acc, the mean written after the last block
 * (the bits of one sum_cols over all columns). */
static int mean_off(int i, int nv, int nh) { return i == 0 ? 0 : i == 1 ? nv : i == 2 ? nv + nh : 2 * nv + nh; }
static double *mean_sum(ng_rbm_est *e, int i, int nv, int nh) { return (double *)(void *)e->mean_acc.data + mean_off(i, nv, nh); }
static ng_status mean_part(ng_rbm *r, int i, const float *A, int rows, int cols, int b, int nb, float scale) {
    ng_rbm_est *e = r->est;
    const int nv = r->n_visible, nh = r->n_hidden, off = mean_off(i, nv, nh);
    return ng_sum_cols_part(r->be, rows, cols, A, rows, mean_sum(e, i, nv, nh), b == 0, b == nb - 1, scale, 0.0f,
                            e->means.data + off);
}

/* Mean i after a Gibbs op summed block b's columns into its running sum: written after the last. */
static ng_status mean_done(ng_rbm *r, int i, int rows, int b, int nb, float scale) {
    ng_rbm_est *e = r->est;
    const int nv = r->n_visible, nh = r->n_hidden, off = mean_off(i, nv, nh);
    if (b < nb - 1) return NG_OK;
    return ng_sum_cols_part(r->be, rows, 0, NULL, rows, mean_sum(e, i, nv, nh), 0, 1, scale, 0.0f, e->means.data + off);
}

/* One fused Gibbs op over columns of a phase (elements first.. of the chains: the block's offset
 * plus a data-parallel shard's; 0 on one process), drawing at Philox step step0 + rstep, which
 * the kernel reads from the device count (rng_dev[0] + rstep; rng_dev[0] is step0 at the start of
 * the gradient); advance > 0 (the gradient's last op) moves the count past every step it took.
 * sum non-NULL: the op also adds its output's columns to that running sum of a mean (zeroed first
 * on block 0: sum_first), while they are in cache (the CPU backend; mean_done writes the mean). */
static ng_status gibbs_op(ng_rbm *r, int rows, int cols, float *pre, int ld, const float *bias, float *prob,
                          float *sample, uint64_t key, uint64_t rstep, uint64_t first, uint64_t advance, double *sum,
                          int sum_first) {
    ng_rbm_est *e = r->est;
    ng_op_args a = {.op = NG_OP_GIBBS_SAMPLE};
    a.gibbs_sample.rows = rows;
    a.gibbs_sample.cols = cols;
    a.gibbs_sample.pre = pre;
    a.gibbs_sample.ldp = ld;
    a.gibbs_sample.bias = bias;
    a.gibbs_sample.beta = 1.0f;
    a.gibbs_sample.prob = prob;
    a.gibbs_sample.ldq = ld;
    a.gibbs_sample.sample = sample;
    a.gibbs_sample.lds = ld;
    a.gibbs_sample.key = key;
    a.gibbs_sample.first = first;
    a.gibbs_sample.step = rstep;
    a.gibbs_sample.step_dev = (uint64_t *)(void *)e->rng_dev.data;
    a.gibbs_sample.advance = advance;
    a.gibbs_sample.sum = sum;
    a.gibbs_sample.sum_first = sum_first;
    return ng_run_op(r->be, &a);
}

/* Positive phase: vd = the batch (or its Bernoulli sample), hd = p(h | vd), block by block. */
static ng_status positive_phase(ng_rbm *r, const ng_tensor *x, uint64_t key, uint64_t step0) {
    ng_rbm_est *e = r->est;
    ng_backend *be = r->be;
    int nv = r->n_visible, nh = r->n_hidden, m = e->m, nb, b, fused = ng_sum_cols_part_supported(be);
    uint64_t rstep;
    if (e->cfg.binarize_train) {
        /* the draws of this shard's columns of the global batch, at the gradient's first Philox step
         * read from the device count (rng_dev[0] = step0 there), so a CUDA graph replays new draws */
        ng_op_args a = {.op = NG_OP_BERNOULLI};
        a.bernoulli.n = (size_t)nv * m;
        a.bernoulli.p = x->data;
        a.bernoulli.out = e->vd.data;
        a.bernoulli.key = ng_rng_stream_key(e->cfg.seed, NG_RNG_BINARIZE);
        a.bernoulli.step = e->rng_step++ - step0;
        a.bernoulli.first = (uint64_t)r->base.dist.lo * (uint64_t)nv;
        a.bernoulli.step_dev = (uint64_t *)(void *)e->rng_dev.data;
        NG_TRY(ng_run_op(be, &a));
        e->vdv = ng_tensor_cols(&e->vd, 0, m);
    } else {
        e->vdv = *x; /* rbm_gradient checked x: (nv, m), ld nv */
    }
    rstep = e->rng_step++ - step0;
    nb = col_blocks(r, m);
    for (b = 0; b < nb; b++) {
        const int j = block_lo(b, nb, m), n = block_lo(b + 1, nb, m) - j;
        float *hd = e->hd.data + (size_t)j * nh;
        NG_TRY_RANGE(NG_CAT_GIBBS, "gemm W vd",
                     ng_gemm(be, 0, 0, nh, n, nv, 1.0f, r->W.data, nh, e->vdv.data + (size_t)j * nv, nv, 0.0f, hd, nh));
        NG_TRY_RANGE(NG_CAT_GIBBS, "p(h | vd)",
                     gibbs_op(r, nh, n, hd, nh, r->b.data, hd, NULL, key, rstep, (uint64_t)j * nh, 0,
                              fused ? mean_sum(e, 1, nv, nh) : NULL, b == 0));
        if (fused) {
            NG_TRY_RANGE(NG_CAT_STATS, "means of vd, hd", mean_part(r, 0, e->vdv.data + (size_t)j * nv, nv, n, b, nb, inv_cases(r)));
            NG_TRY_RANGE(NG_CAT_STATS, "means of vd, hd", mean_done(r, 1, nh, b, nb, inv_cases(r)));
        }
    }
    /* the data term of gW while hd and vd are still in cache (the model term adds to it later); a
     * statistic, so full FP32 inside the Gibbs phases' TF32 scope */
    {
        int saved;
        ng_status s, s2;
        NG_TRY(ng_fp32_begin(be, &saved));
        NG_RANGE_CAT(NG_CAT_STATS, "gemm hd vd^T", s,
                     ng_gemm(be, 0, 1, nh, nv, m, -inv_cases(r), e->hd.data, nh, e->vdv.data, nv, 0.0f, r->gW.data, nh));
        s2 = ng_fp32_end(be, saved);
        return s != NG_OK ? s : s2;
    }
}

/* Negative phase: k Gibbs sweeps from the particles (PCD) or the data (CD), then hm = p(h | vm).
 * Blocks of chains run their k sweeps and the final p(h | vm) one after another (a chain's steps
 * draw at the same Philox steps in every block: sweep s at 2s, 2s + 1 after the phase's first).
 * The particles are overwritten only after their chains have run, so an interrupted chain leaves
 * them as they were: PCD-1 on the CPU, where the phase has no interruption point, samples v
 * straight into each block's particles once the block's first gemm has read them (no copy);
 * otherwise vm is copied into them after every block. */
static ng_status negative_phase(ng_rbm *r, uint64_t key, uint64_t step0) {
    ng_rbm_est *e = r->est;
    ng_backend *be = r->be;
    const int nv = r->n_visible, nh = r->n_hidden, M = e->M, k = e->cfg.k, nb = col_blocks(r, M);
    /* the global index of this rank's first chain: the Philox offset of its draws */
    const uint64_t c0 = e->cfg.estimator == NG_RBM_PCD ? (uint64_t)e->p0 : (uint64_t)r->base.dist.lo;
    /* the chain starts from the particles (PCD) or the batch (CD), read in place: the first sweep
     * writes vm, so the start needs no copy */
    const float *v0 = e->cfg.estimator == NG_RBM_PCD ? e->particles.data : e->vdv.data;
    const uint64_t rs = e->rng_step - step0; /* sweep s: h at rs + 2s, v at rs + 2s + 1; hm at rs + 2k */
    /* in place only on the CPU backend, whose ops run synchronously and cannot fail half-way once
     * their arguments passed: a failing device op leaves the copied particles as they were */
    const int fused = ng_sum_cols_part_supported(be),
              in_place = e->cfg.estimator == NG_RBM_PCD && k == 1 && be->kind == NG_DEVICE_CPU;
    int step, b;
    e->rng_step += 2 * (uint64_t)k + 1;
    e->vneg = in_place ? e->particles : e->vm;
    for (b = 0; b < nb; b++) {
        const int j = block_lo(b, nb, M), n = block_lo(b + 1, nb, M) - j;
        float *hs = e->hs.data + (size_t)j * nh, *vm = e->vneg.data + (size_t)j * nv, *hm = e->hm.data + (size_t)j * nh;
        for (step = 0; step < k; step++) {
            /* several ranks stop together between updates (ng_run agrees the stop), never inside one */
            if (step > 0 && !dist_on(r)) NG_TRY(ng_check_interrupt("rbm Gibbs chain"));
            /* h ~ p(h | v), then v ~ p(v | h): gemm + one fused kernel each */
            NG_TRY_RANGE(NG_CAT_GIBBS, "gemm W v (chain)",
                         ng_gemm(be, 0, 0, nh, n, nv, 1.0f, r->W.data, nh, step == 0 ? v0 + (size_t)j * nv : vm, nv, 0.0f, hs, nh));
            NG_TRY_RANGE(NG_CAT_GIBBS, "h ~ p(h | v)",
                         gibbs_op(r, nh, n, hs, nh, r->b.data, NULL, hs, key, rs + 2 * (uint64_t)step, (c0 + (uint64_t)j) * nh, 0,
                                  NULL, 0));
            NG_TRY_RANGE(NG_CAT_GIBBS, "gemm W^T h", ng_gemm(be, 1, 0, nv, n, nh, 1.0f, r->W.data, nh, hs, nh, 0.0f, vm, nv));
            NG_TRY_RANGE(NG_CAT_GIBBS, "v ~ p(v | h)",
                         gibbs_op(r, nv, n, vm, nv, r->a.data, NULL, vm, key, rs + 2 * (uint64_t)step + 1, (c0 + (uint64_t)j) * nv, 0,
                                  fused && step == k - 1 ? mean_sum(e, 2, nv, nh) : NULL, b == 0));
        }
        NG_TRY_RANGE(NG_CAT_GIBBS, "gemm W vm", ng_gemm(be, 0, 0, nh, n, nv, 1.0f, r->W.data, nh, vm, nv, 0.0f, hm, nh));
        /* the last block's op advances the device count past the gradient's steps */
        NG_TRY_RANGE(NG_CAT_GIBBS, "p(h | vm)",
                     gibbs_op(r, nh, n, hm, nh, r->b.data, hm, NULL, key, rs + 2 * (uint64_t)k, (uint64_t)j * nh,
                              b == nb - 1 ? e->rng_step - step0 : 0, fused ? mean_sum(e, 3, nv, nh) : NULL, b == 0));
        if (fused) { /* the Gibbs ops summed vm (the last sweep's draws) and hm */
            NG_TRY_RANGE(NG_CAT_STATS, "means of vm, hm", mean_done(r, 2, nv, b, nb, inv_chains(r)));
            NG_TRY_RANGE(NG_CAT_STATS, "means of vm, hm", mean_done(r, 3, nh, b, nb, inv_chains(r)));
        }
    }
    if (e->cfg.estimator == NG_RBM_PCD && !in_place)
        NG_TRY_RANGE(NG_CAT_GIBBS, "particles = vm", ng_copy(be, e->particles.data, e->vm.data, (size_t)nv * M * sizeof(float)));
    return NG_OK;
}

/* The gradient of the negative log-likelihood from the two phases (model minus data), in the
 * order that makes each entry the exact negation of the data-minus-model estimate. */
static ng_status assemble_gradient(ng_rbm *r) {
    ng_rbm_est *e = r->est;
    ng_backend *be = r->be;
    int nv = r->n_visible, nh = r->n_hidden, m = e->m, M = e->M;
    const float im = inv_cases(r), iM = inv_chains(r);
    /* gW = -hd vd^T / m was computed at the end of the positive phase */
    NG_TRY_RANGE(NG_CAT_STATS, "gemm hm vm^T", ng_gemm(be, 0, 1, nh, nv, M, iM, e->hm.data, nh, e->vneg.data, nv, 1.0f, r->gW.data, nh));
    if (!ng_sum_cols_part_supported(be)) { /* else the Gibbs phases summed them block by block */
        NG_TRY(ng_sum_cols(be, nv, m, im, e->vdv.data, nv, 0.0f, e->mv_d.data));
        NG_TRY(ng_sum_cols(be, nh, m, im, e->hd.data, nh, 0.0f, e->mh_d.data));
        NG_TRY(ng_sum_cols(be, nv, M, iM, e->vneg.data, nv, 0.0f, e->mv_m.data));
        NG_TRY(ng_sum_cols(be, nh, M, iM, e->hm.data, nh, 0.0f, e->mh_m.data));
    }
    if (dist_on(r)) {
        ng_status s;
        NG_RANGE_CAT(NG_CAT_COMM, "rbm all-reduce", s,
                     ng_comm_allreduce(r->base.dist.comm, be, NG_F32, r->gW.data, (size_t)nh * nv, "the RBM's gW"));
        if (s == NG_OK) s = ng_comm_allreduce(r->base.dist.comm, be, NG_F32, e->means.data, (size_t)(2 * nv + 2 * nh),
                                              "the RBM's data and particle means");
        NG_TRY(s);
    }
    NG_TRY(ng_copy(be, r->ga.data, e->mv_m.data, (size_t)nv * sizeof(float)));
    NG_TRY(ng_axpby(be, (size_t)nv, -1.0f, e->mv_d.data, 1.0f, r->ga.data));
    NG_TRY(ng_copy(be, r->gb.data, e->mh_m.data, (size_t)nh * sizeof(float)));
    return ng_axpby(be, (size_t)nh, -1.0f, e->mh_d.data, 1.0f, r->gb.data);
}

static ng_status rbm_gradient(ng_model *mdl, const ng_tensor *x, const ng_tensor *y) {
    ng_rbm *r = (ng_rbm *)(void *)mdl;
    ng_rbm_est *e = r->est;
    uint64_t key, step0;
    ng_status s;
    (void)y;
    if (!e) return ng_error(NG_ERR_INVALID_ARG, "rbm gradient: the estimator is not set up (ng_rbm_estimator_init)");
    if (x->rows != r->n_visible || x->cols < 1 || x->cols > e->cfg.batch || x->ld != x->rows)
        return ng_error(NG_ERR_INVALID_ARG, "rbm gradient: batch is %d x %d (ld %d), expected %d x 1..%d",
                        x->rows, x->cols, x->ld, r->n_visible, e->cfg.batch);
    if (e->cfg.estimator == NG_RBM_CD && x->cols != e->M)
        return ng_error(NG_ERR_INVALID_ARG, "rbm gradient: CD needs batches of %d columns, got %d", e->M, x->cols);
    if (dist_on(r) && (mdl->dist.hi - mdl->dist.lo != x->cols || mdl->dist.batch != e->cfg.batch))
        return ng_error(NG_ERR_INVALID_ARG, "rbm gradient: the shard [%d, %d) of a batch of %d does not match the %d columns "
                        "of a batch of %d", mdl->dist.lo, mdl->dist.hi, mdl->dist.batch, x->cols, e->cfg.batch);
    if (dist_on(r) && e->cfg.estimator == NG_RBM_CD && mdl->dist.lo != e->p0)
        return ng_error(NG_ERR_INVALID_ARG, "rbm gradient: CD chains of columns %d.., the batch shard starts at %d", e->p0, mdl->dist.lo);
    e->m = x->cols;
    key = ng_rng_stream_key(e->cfg.seed, NG_RNG_GIBBS);
    step0 = e->rng_step;
    e->advanced = 0;
    if (e->dev_step != step0) NG_TRY(sync_rng_dev(e, r->be));
    /* the Gibbs phases' gemms may use TF32 (--tf32 on a GPU); the statistics stay FP32 */
    {
        int saved;
        ng_status e2;
        NG_TRY(ng_tf32_begin(r->be, &saved));
        NG_RANGE_CAT(NG_CAT_GIBBS, "positive phase", s, positive_phase(r, x, key, step0));
        if (s == NG_OK) NG_RANGE_CAT(NG_CAT_GIBBS, "negative phase", s, negative_phase(r, key, step0));
        if (s == NG_OK) { /* the last Gibbs op advanced the device count with the host's */
            e->dev_step = e->rng_step;
            e->last_advance = e->rng_step - step0;
        }
        e2 = ng_tf32_end(r->be, saved);
        if (s == NG_OK) s = e2;
    }
    if (s == NG_OK) NG_RANGE_CAT(NG_CAT_STATS, "rbm statistics", s, assemble_gradient(r));
    if (s != NG_OK) e->rng_step = step0; /* roll back (the particles are untouched until the chain ends) */
    else e->advanced = 1;
    return s;
}

static ng_status rbm_statistic(ng_model *mdl, const char *name, ng_tensor *out) {
    ng_rbm *r = (ng_rbm *)(void *)mdl;
    ng_rbm_est *e = r->est;
    if (!e) return ng_error(NG_ERR_INVALID_ARG, "rbm statistic %s: the estimator is not set up", name);
    if (strcmp(name, "v_data") == 0) *out = e->vdv;
    else if (strcmp(name, "h_data") == 0) *out = ng_tensor_cols(&e->hd, 0, e->m);
    else if (strcmp(name, "v_model") == 0) *out = e->vneg;
    else if (strcmp(name, "h_model") == 0) *out = e->hm;
    else if (strcmp(name, "v_data_mean") == 0) *out = e->mv_d;
    else if (strcmp(name, "h_data_mean") == 0) *out = e->mh_d;
    else if (strcmp(name, "v_model_mean") == 0) *out = e->mv_m;
    else if (strcmp(name, "h_model_mean") == 0) *out = e->mh_m;
    else if (strcmp(name, "v_train_mean") == 0) *out = e->v_mean;
    else if (strcmp(name, "particles") == 0) *out = e->particles;
    else if (strcmp(name, "h_chain") == 0) *out = e->hs;
    else
        return ng_error(NG_ERR_INVALID_ARG,
                        "rbm has no statistic %s (v_data, h_data, v_model, h_model, v_data_mean, "
                        "h_data_mean, v_model_mean, h_model_mean, v_train_mean, particles, h_chain)", name);
    return NG_OK;
}

static const char *const rbm_columns[] = {"recon_error", "grad_norm", NULL};

/* recon_error: mean over the batch of ||vd - p(v | h ~ p(h | vd))||^2 (several ranks: over this
 * rank's shard, drawn as one process would; the trainer weights the shards); grad_norm: ||gW||_F.
 * The monitor draws come from their own stream indexed by t, so logging more or less often does
 * not change the training trajectory (resume stays bit-exact). */
static ng_status rbm_log_values(ng_model *mdl, uint64_t t, double *values) {
    ng_rbm *r = (ng_rbm *)(void *)mdl;
    ng_rbm_est *e = r->est;
    ng_backend *be = r->be;
    int nv = r->n_visible, nh = r->n_hidden, m = e->m;
    uint64_t mkey = ng_rng_stream_key(e->cfg.seed, NG_RNG_MONITOR);
    float g = 0.0f, err = 0.0f;
    NG_TRY(ng_nrm2(be, (size_t)nv * nh, r->gW.data, &g));
    NG_TRY(ng_bernoulli_at(be, (size_t)nh * m, e->hd.data, e->hs.data, mkey, 2 * t,
                           (uint64_t)(dist_on(r) ? mdl->dist.lo : 0) * (uint64_t)nh));
    NG_TRY(ng_gemm(be, 1, 0, nv, m, nh, 1.0f, r->W.data, nh, e->hs.data, nh, 0.0f, e->vr.data, nv));
    NG_TRY(ng_gibbs_sample(be, nv, m, e->vr.data, nv, r->a.data, 1.0f, NULL, e->vr.data, nv, NULL, nv,
                           mkey, 2 * t + 1));
    NG_TRY(ng_axpby(be, (size_t)nv * m, 1.0f, e->vdv.data, -1.0f, e->vr.data));
    NG_TRY(ng_nrm2(be, (size_t)nv * m, e->vr.data, &err));
    values[0] = (double)err * (double)err / (double)m;
    values[1] = g;
    return NG_OK;
}

/* ---- checkpoint entries -------------------------------------------------------------------- */

static ng_status rbm_save(ng_model *mdl, ng_ckpt *c) {
    ng_rbm *r = (ng_rbm *)(void *)mdl;
    NG_TRY(ng_ckpt_set_i64(c, "rbm.n_visible", r->n_visible));
    NG_TRY(ng_ckpt_set_i64(c, "rbm.n_hidden", r->n_hidden));
    if (!r->est) return NG_OK;
    NG_TRY(ng_ckpt_set_str(c, "rbm.estimator", ng_rbm_estimator_name(r->est->cfg.estimator)));
    NG_TRY(ng_ckpt_set_i64(c, "rbm.k", r->est->cfg.k));
    NG_TRY(ng_ckpt_set_i64(c, "rbm.particles", r->est->M_all));
    NG_TRY(ng_ckpt_set_i64(c, "rbm.batch", r->est->cfg.batch));
    NG_TRY(ng_ckpt_set_i64(c, "rbm.binarize_train", r->est->cfg.binarize_train));
    NG_TRY(ng_ckpt_set_u64(c, "rbm.seed", r->est->cfg.seed));
    NG_TRY(ng_ckpt_set_u64(c, "rbm.rng_step", r->est->rng_step));
    /* several ranks: the whole set that gather assembled, as one process saves it */
    if (r->est->M == r->est->M_all) return ng_ckpt_add_arena(c, "rbm.", &r->est->state);
    if (r->est->whole_step != r->est->rng_step)
        return ng_error(NG_ERR_INVALID_ARG, "rbm checkpoint: this rank holds %d of the %d particles and they were not gathered "
                        "since the last update (every rank calls ng_trainer_save_ranks)", r->est->M, r->est->M_all);
    return ng_ckpt_add_arena(c, "rbm.", &r->est->whole);
}

/* Every rank's particles into the whole set (its columns, zeros elsewhere; the sum is exact). */
static ng_status rbm_gather(ng_model *mdl) {
    ng_rbm *r = (ng_rbm *)(void *)mdl;
    ng_rbm_est *e = r->est;
    int nv = r->n_visible;
    if (!e || e->M == e->M_all) return NG_OK;
    if (!dist_on(r)) return ng_error(NG_ERR_INVALID_ARG, "rbm: %d of %d particles but no communicator", e->M, e->M_all);
    NG_TRY(ng_memset0(r->be, e->particles_all.data, (size_t)nv * e->M_all * sizeof(float)));
    NG_TRY(ng_copy(r->be, e->particles_all.data + (size_t)e->p0 * nv, e->particles.data, (size_t)nv * e->M * sizeof(float)));
    NG_TRY(ng_comm_allreduce(mdl->dist.comm, r->be, NG_F32, e->particles_all.data, (size_t)nv * e->M_all,
                             "the RBM's particles (checkpoint)"));
    e->whole_step = e->rng_step;
    return NG_OK;
}

/* The shapes and the estimator of the checkpoint must be this RBM's. */
static ng_status rbm_load(ng_model *mdl, const ng_ckpt *c, int apply) {
    static const char *const est_names[] = {"pcd", "cd"};
    ng_rbm *r = (ng_rbm *)(void *)mdl;
    int64_t nv, nh, k, M, batch, bin;
    int est;
    uint64_t seed, rng_step;
    NG_TRY(ng_ckpt_get_int(c, "rbm.n_visible", 1, 1 << 30, &nv));
    NG_TRY(ng_ckpt_get_int(c, "rbm.n_hidden", 1, 1 << 30, &nh));
    if (nv != r->n_visible || nh != r->n_hidden)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: RBM of %lld visible x %lld hidden units, this one has %d x %d",
                        ng_ckpt_path(c), (long long)nv, (long long)nh, r->n_visible, r->n_hidden);
    if (!r->est) return NG_OK; /* parameters only */
    NG_TRY(ng_ckpt_get_enum(c, "rbm.estimator", est_names, 2, &est));
    NG_TRY(ng_ckpt_get_int(c, "rbm.k", 1, 100000, &k));
    NG_TRY(ng_ckpt_get_int(c, "rbm.particles", 1, 1 << 30, &M));
    NG_TRY(ng_ckpt_get_int(c, "rbm.batch", 1, 1 << 30, &batch));
    NG_TRY(ng_ckpt_get_int(c, "rbm.binarize_train", 0, 1, &bin));
    NG_TRY(ng_ckpt_get_u64(c, "rbm.seed", &seed));
    NG_TRY(ng_ckpt_get_u64(c, "rbm.rng_step", &rng_step));
#define RBM_SAME(key, field, mine)                                                                  \
    if ((int64_t)(field) != (int64_t)(mine))                                                        \
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: field %s is %lld, this run uses %lld",       \
                        ng_ckpt_path(c), key, (long long)(field), (long long)(mine));
    RBM_SAME("rbm.estimator", est, r->est->cfg.estimator)
    RBM_SAME("rbm.k", k, r->est->cfg.k)
    RBM_SAME("rbm.particles", M, r->est->M_all)
    RBM_SAME("rbm.batch", batch, r->est->cfg.batch)
    RBM_SAME("rbm.binarize_train", bin, r->est->cfg.binarize_train)
#undef RBM_SAME
    if (seed != r->est->cfg.seed)
        return ng_error(NG_ERR_FORMAT, "checkpoint %s: field rbm.seed is %llu, this run uses %llu",
                        ng_ckpt_path(c), (unsigned long long)seed, (unsigned long long)r->est->cfg.seed);
    if (r->est->M != r->est->M_all) {
        /* the whole set, written by any number of ranks: this rank takes its columns */
        ng_rbm_est *e = r->est;
        NG_TRY(ng_ckpt_check_arena(c, "rbm.", &e->whole));
        if (!apply) return NG_OK;
        NG_TRY(ng_ckpt_load_arena(c, "rbm.", &e->whole));
        NG_TRY(ng_copy(r->be, e->particles.data, e->particles_all.data + (size_t)e->p0 * r->n_visible,
                       (size_t)r->n_visible * e->M * sizeof(float)));
        e->whole_step = rng_step;
        e->rng_step = rng_step;
        return sync_rng_dev(e, r->be);
    }
    NG_TRY(ng_ckpt_check_arena(c, "rbm.", &r->est->state));
    if (!apply) return NG_OK;
    NG_TRY(ng_ckpt_load_arena(c, "rbm.", &r->est->state));
    r->est->rng_step = rng_step;
    return sync_rng_dev(r->est, r->be); /* before any capture of the resumed run */
}

/* CUDA graphs: the Gibbs kernels and the data binarisation read their Philox step from the device
 * count, so a replay draws new samples. */
static ng_status rbm_graph_check(const ng_model *mdl) {
    const ng_rbm *r = (const ng_rbm *)(const void *)mdl;
    if (!r->est)
        return ng_error(NG_ERR_UNSUPPORTED, "--cuda-graph 1: the rbm has no gradient estimator (ng_rbm_estimator_init)");
    return NG_OK;
}

/* A capture whose gradient succeeded was discarded: its launches never ran, so the device count is
 * still where that gradient started; so is the host's now. */
static void rbm_graph_discarded(ng_model *mdl) {
    ng_rbm_est *e = ((ng_rbm *)(void *)mdl)->est;
    if (!e || !e->advanced) return;
    e->rng_step -= e->last_advance;
    e->dev_step = e->rng_step;
    e->advanced = 0;
}

/* A replayed gradient took last_advance Philox steps on the device: the host count follows. */
static void rbm_graph_replayed(ng_model *mdl, const ng_tensor *x) {
    (void)x;
    ng_rbm_est *e = ((ng_rbm *)(void *)mdl)->est;
    e->rng_step += e->last_advance;
    e->dev_step = e->rng_step;
}

static const struct ng_model_i rbm_iface = {
    .kind = "rbm",
    .gradient = rbm_gradient,
    .statistic = rbm_statistic,
    .columns = rbm_columns,
    .log_values = rbm_log_values,
    .save = rbm_save,
    .load = rbm_load,
    .destroy = rbm_destroy,
    .graph_check = rbm_graph_check,
    .graph_replayed = rbm_graph_replayed,
    .graph_discarded = rbm_graph_discarded,
    .data_parallel = 1,
    .gather = rbm_gather,
};
