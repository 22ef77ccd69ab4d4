/* fang.c: FANG, the factorized natural gradient for binary RBMs (Grosse & Salakhutdinov 2015,
 * Algorithm 1), as a preconditioner (natgrad/fang.h), vectorised over all pairs and run entirely
 * through the backend wrappers. It reads the RBM through the model interface only: the gradient
 * views of W, a, b and the statistics "v_model" (vm) and "h_model" (hm = p(h | vm)).
 * Shapes: u = [v; h] (n = nv + nh), pairwise matrices (nh, nv) like W; see fang.h for the model
 * and the direction. Per mini-batch, with K particles (vm, hidden samples hs ~ p(h | vm)):
 *   mom    <- (1-c) mom    + c/K [vm; vm; hs; hs] 1  = EMA of [E v2; E v; E h; E h2]  (sum_cols)
 *   S_un   <- (1-c) S_un   + c/K u u^T summed over particles, u = [v; h], as three products:
 *             the (v, v) and (h, h) blocks by syrk, the (h, v) block E[h v^T] by one gemm,
 * with c = 1/tau (c = 1 at the first update), and every T updates the refit (Lambda_un through
 * potrf/potri, the pairwise regressions through fang_regress). Covariances are moments - mu mu^T,
 * plus lambda I. Hidden statistics are Bernoulli samples, not p(h | v), so every statistic is
 * binary: v.^2 = v and h.^2 = h exactly, hence E[v2] = E[v], E[h2] = E[h], and the four pairwise
 * moment matrices the 3x3 covariances need (E[h v^T], E[h v2^T], E[h2 v^T], E[h2 v2^T]) are all
 * E[h v^T], the (h, v) block of S_un. Computing each once makes the statistics cost
 * (nv^2 + nh^2 + 2 nv nh) K flops instead of section 4.3's 9 K Nv Nh (the general, non-binary count).
 * Must not: allocate after init, call BLAS or kernels directly, or read device memory except
 * the small diagnostics fetched at refit time. */
#include "optim/fang.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "natgrad/comm.h"
#include "natgrad/log.h"
#include "natgrad/rng.h"

enum { FANG_MAX_RAISES = 6 }; /* damping may grow to lambda * 10^6 */

static const struct ng_precond_i fang_iface;

struct ng_fang *ng_fang_of(ng_precond *p) {
    return (p && p->iface == &fang_iface) ? (struct ng_fang *)p->impl : NULL;
}

ng_status ng_fang_config_check(const ng_fang_config *c) {
    if (c->refit_every < 1 || c->refit_every > 1000000000)
        return ng_error(NG_ERR_INVALID_ARG, "--fang-refit-every %d: must be >= 1", c->refit_every);
    if (!(c->tau >= 1.0f) || !isfinite(c->tau))
        return ng_error(NG_ERR_INVALID_ARG, "--fang-tau %g: must be >= 1", (double)c->tau);
    if (!(c->lambda > 0.0f) || !isfinite(c->lambda))
        return ng_error(NG_ERR_INVALID_ARG, "--fang-lambda %g: must be > 0", (double)c->lambda);
    if (c->inverse != NG_FANG_INV_TIKHONOV && c->inverse != NG_FANG_INV_REGULARIZED)
        return ng_error(NG_ERR_INVALID_ARG, "--fang-inverse %d: tikhonov or regularized", c->inverse);
    return NG_OK;
}

static void fang_destroy(ng_precond *p) {
    struct ng_fang *f = (struct ng_fang *)p->impl;
    if (!f) return;
    ng_arena_free(&f->work);
    free(f->host_sigma2);
    free(f->host_dvec);
    free(f);
    p->impl = NULL;
}

ng_status ng_precond_fang_init(ng_backend *be, ng_model *m, const ng_fang_config *cfg,
                               ng_precond **out) {
    ng_precond *p;
    struct ng_fang *f;
    ng_tensor vm;
    int nv, nh, n, K, ns, dd[2];
    ng_status s;
    *out = NULL;
    NG_TRY(ng_fang_config_check(cfg));
    p = (ng_precond *)calloc(1, sizeof *p);
    f = (struct ng_fang *)calloc(1, sizeof *f);
    if (!p || !f) {
        free(p);
        free(f);
        return ng_error(NG_ERR_OOM, "fang: out of host memory");
    }
    p->iface = &fang_iface;
    p->be = be;
    p->impl = f;
    ng_arena_begin(&p->state, be, "FANG state");
    ng_arena_begin(&f->work, be, "FANG workspace");
    f->cfg = *cfg;
    s = ng_model_param(m, "W", &f->W, &f->gW);
    if (s == NG_OK) s = ng_model_param(m, "a", NULL, &f->ga);
    if (s == NG_OK) s = ng_model_param(m, "b", NULL, &f->gb);
    if (s == NG_OK) s = ng_model_statistic(m, "v_model", &vm);
    if (s != NG_OK) {
        ng_precond_free(p);
        return ng_error_wrap(s, "fang needs an RBM with its estimator set up: ");
    }
    nh = f->W.rows;
    nv = f->W.cols;
    n = nv + nh;
    K = vm.cols;
    ns = 2 * nv + 2 * nh;
    if ((double)n * (double)n * 2.0 > 2e9 || (double)ns * (double)K > 2e9) {
        ng_precond_free(p);
        return ng_error(NG_ERR_INVALID_ARG, "fang: %d visible + %d hidden units with %d particles is too large",
                        nv, nh, K);
    }
    f->nv = nv;
    f->nh = nh;
    f->n = n;
    f->K = K;
    ng_arena_reserve(&p->state, "mom", ns, 1, &f->mom);
    ng_arena_reserve(&p->state, "S_un", n, n, &f->S_un);
    ng_arena_reserve(&p->state, "Lambda", n, n, &f->Lambda);
    ng_arena_reserve(&p->state, "beta_v", nh, nv, &f->beta_v);
    ng_arena_reserve(&p->state, "beta_h", nh, nv, &f->beta_h);
    ng_arena_reserve(&p->state, "sigma2", nh, nv, &f->sigma2);
    ng_arena_reserve(&p->state, "diag", NG_FANG_DIAG_N, 1, &f->diag);
    ng_arena_reserve(&f->work, "hs", nh, K, &f->hs);
    ng_arena_reserve(&f->work, "A", n, n, &f->A);
    dd[0] = n;
    dd[1] = n;
    ng_arena_reserve_nd(&f->work, "Ad", NG_F64, 2, dd, &f->Ad);
    ng_arena_reserve(&f->work, "g_un", n, 1, &f->g_un);
    ng_arena_reserve(&f->work, "r_un", n, 1, &f->r_un);
    ng_arena_reserve(&f->work, "pv", nh, nv, &f->pv);
    ng_arena_reserve(&f->work, "ph", nh, nv, &f->ph);
    ng_arena_reserve(&f->work, "dvec", n, 1, &f->dvec);
    ng_arena_reserve(&f->work, "mb", ns, 1, &f->mb);
    dd[0] = 2;
    ng_arena_reserve_nd(&f->work, "step_dev", NG_F64, 1, dd, &f->step_dev);
    f->t_dev = UINT64_MAX;
    if (cfg->inverse == NG_FANG_INV_REGULARIZED) {
        ng_arena_reserve(&f->work, "B", n, n, &f->B);
        dd[0] = n;
        ng_arena_reserve_nd(&f->work, "wd", NG_F64, 1, dd, &f->wd);
    }
    s = ng_arena_commit(&p->state);
    if (s == NG_OK) s = ng_arena_commit(&f->work);
    if (s == NG_OK) {
        f->host_sigma2 = (float *)malloc((size_t)nh * nv * sizeof(float));
        f->host_dvec = (float *)malloc((size_t)n * sizeof(float));
        if (!f->host_sigma2 || !f->host_dvec) s = ng_error(NG_ERR_OOM, "fang: out of host memory");
    }
    /* Until the first refit the model is the identity (Lambda_un = I, beta = 0, sigma2 = 1), so
     * a direction taken before any statistics exist is the plain gradient. */
    if (s == NG_OK) s = ng_fill(be, (size_t)nh * nv, 1.0f, f->sigma2.data);
    if (s == NG_OK) s = ng_symmetrize_lower(be, n, f->Lambda.data, n, 1.0f);
    if (s != NG_OK) {
        ng_precond_free(p);
        return s;
    }
    *out = p;
    return NG_OK;
}

static ng_status need_fang(ng_precond *p, const char *op, struct ng_fang **f) {
    *f = ng_fang_of(p);
    if (!*f) return ng_error(NG_ERR_INVALID_ARG, "%s: the preconditioner is not FANG", op);
    return NG_OK;
}

static ng_status sync_step_dev(ng_backend *be, struct ng_fang *f, uint64_t t);

/* Several ranks (p->dist.comm): this mini-batch's moments over every rank's particles, with the
 * hidden samples each rank draws for its particles k0.. as one process would: the sums over this
 * rank's particles divided by K_all, all-reduced, then folded into the moving averages (the
 * moments of the EMA update below, computed in two steps). The particle counts are summed over the
 * ranks on the host once, at the first update (eager: a refit); after it the update reads nothing on
 * the host, its Philox step counted on the device as on one process, so a CUDA graph holds it with
 * its two all-reduces. */
static ng_status update_stats_dist(ng_precond *p, struct ng_fang *f, const ng_tensor *vm, const ng_tensor *hm,
                                   uint64_t t) {
    ng_backend *be = p->be;
    int nv = f->nv, nh = f->nh, n = f->n, K = f->K;
    float c = t == 0 ? 1.0f : 1.0f / f->cfg.tau, a;
    ng_status s;
    ng_op_args b = {.op = NG_OP_BERNOULLI};
    if (f->S_un.ld != n) return ng_error(NG_ERR_INVALID_ARG, "fang: S_un has leading dimension %d, not %d", f->S_un.ld, n);
    if (f->K_all == 0)
        NG_TRY(ng_comm_shard_offset(p->dist.comm, K, &f->k0, &f->K_all, "FANG's particle counts"));
    a = 1.0f / (float)f->K_all;
    /* the hidden samples of particles k0.. at Philox step t, read from the device count (advanced to t + 1) */
    if (f->t_dev != t) NG_TRY(sync_step_dev(be, f, t));
    b.bernoulli.n = (size_t)nh * K;
    b.bernoulli.p = hm->data;
    b.bernoulli.out = f->hs.data;
    b.bernoulli.key = ng_rng_stream_key(f->cfg.seed, NG_RNG_FANG);
    b.bernoulli.first = (uint64_t)f->k0 * (uint64_t)nh;
    b.bernoulli.step_dev = (uint64_t *)(void *)f->step_dev.data;
    b.bernoulli.advance = 1;
    NG_TRY(ng_run_op(be, &b));
    f->t_dev = t + 1;
    /* the batch moments: mb = [., E v, E h, .], A = E[u u^T] (lower triangle; the rest zero) */
    NG_TRY(ng_memset0(be, f->mb.data, (size_t)(2 * nv + 2 * nh) * sizeof(float)));
    NG_TRY(ng_memset0(be, f->A.data, (size_t)n * n * sizeof(float)));
    NG_TRY(ng_sum_cols(be, nv, K, a, vm->data, vm->ld, 0.0f, f->mb.data + nv));
    NG_TRY(ng_sum_cols(be, nh, K, a, f->hs.data, f->hs.ld, 0.0f, f->mb.data + 2 * nv));
    NG_TRY(ng_syrk(be, 0, nv, K, a, vm->data, vm->ld, 0.0f, f->A.data, n));
    NG_TRY(ng_syrk(be, 0, nh, K, a, f->hs.data, f->hs.ld, 0.0f, f->A.data + nv + (size_t)nv * n, n));
    NG_TRY(ng_gemm(be, 0, 1, nh, nv, K, a, f->hs.data, f->hs.ld, vm->data, vm->ld, 0.0f, f->A.data + nv, n));
    NG_RANGE_CAT(NG_CAT_COMM, "fang all-reduce", s,
                 ng_comm_allreduce(p->dist.comm, be, NG_F32, f->mb.data, (size_t)(2 * nv + 2 * nh), "FANG's means"));
    if (s == NG_OK) s = ng_comm_allreduce(p->dist.comm, be, NG_F32, f->A.data, (size_t)n * n, "FANG's second moments");
    NG_TRY(s);
    /* the moving averages (c = 1 at the first update overwrites them, as one process does) */
    NG_TRY(ng_axpby(be, (size_t)(nv + nh), c, f->mb.data + nv, 1.0f - c, f->mom.data + nv));
    NG_TRY(ng_copy(be, f->mom.data, f->mom.data + nv, (size_t)nv * sizeof(float)));
    NG_TRY(ng_copy(be, f->mom.data + 2 * nv + nh, f->mom.data + 2 * nv, (size_t)nh * sizeof(float)));
    return ng_axpby(be, (size_t)n * n, c, f->A.data, 1.0f - c, f->S_un.data);
}

/* The device step count = t (its ticket 0): a blocking write, so never inside a CUDA graph capture
 * (the trainer captures only updates whose count the mirror already holds). */
static ng_status sync_step_dev(ng_backend *be, struct ng_fang *f, uint64_t t) {
    const uint64_t c[2] = {t, 0};
    ng_status s = ng_set(be, f->step_dev.data, c, sizeof c);
    if (s != NG_OK)
        return ng_error_wrap(s, "fang: setting the device Philox step to %llu (not possible inside a CUDA graph capture): ",
                             (unsigned long long)t);
    f->t_dev = t;
    return NG_OK;
}

ng_status ng_fang_update_stats(ng_precond *p, ng_model *m, uint64_t t) {
    struct ng_fang *f;
    ng_backend *be = p->be;
    ng_tensor vm, hm;
    int nv, nh, K;
    float c, a, b;
    NG_TRY(need_fang(p, "fang statistics", &f));
    NG_TRY(ng_model_statistic(m, "v_model", &vm));
    NG_TRY(ng_model_statistic(m, "h_model", &hm));
    nv = f->nv;
    nh = f->nh;
    K = f->K;
    if (p->dist.comm) return update_stats_dist(p, f, &vm, &hm, t);
    /* Algorithm 1, "update mean and covariance statistics"; the hidden samples at Philox step t,
     * read from the device count (which the draw advances to t + 1) */
    if (f->t_dev != t) NG_TRY(sync_step_dev(be, f, t));
    NG_TRY(ng_bernoulli_dev(be, (size_t)nh * K, hm.data, f->hs.data, ng_rng_stream_key(f->cfg.seed, NG_RNG_FANG),
                            (uint64_t *)(void *)f->step_dev.data));
    f->t_dev = t + 1;
    c = t == 0 ? 1.0f : 1.0f / f->cfg.tau;
    a = c / (float)K;
    b = 1.0f - c;
    /* [E v2; E v; E h; E h2]: the squares equal the values for binary statistics, so the
     * E v2 and E h2 slots are copies of the E v and E h averages (identical EMA updates) */
    NG_TRY(ng_sum_cols(be, nv, K, a, vm.data, vm.ld, b, f->mom.data + nv));
    NG_TRY(ng_sum_cols(be, nh, K, a, f->hs.data, f->hs.ld, b, f->mom.data + 2 * nv));
    NG_TRY(ng_copy(be, f->mom.data, f->mom.data + nv, (size_t)nv * sizeof(float)));
    NG_TRY(ng_copy(be, f->mom.data + 2 * nv + nh, f->mom.data + 2 * nv, (size_t)nh * sizeof(float)));
    /* E[u u^T], lower triangle: (v, v) and (h, h) blocks by syrk, (h, v) block by gemm */
    NG_TRY(ng_syrk(be, 0, nv, K, a, vm.data, vm.ld, b, f->S_un.data, f->S_un.ld));
    NG_TRY(ng_syrk(be, 0, nh, K, a, f->hs.data, f->hs.ld, b,
                   f->S_un.data + nv + (size_t)nv * f->S_un.ld, f->S_un.ld));
    NG_TRY(ng_gemm(be, 0, 1, nh, nv, K, a, f->hs.data, f->hs.ld, vm.data, vm.ld, b,
                   f->S_un.data + nv, f->S_un.ld));
    return NG_OK;
}

/* A = Sigma_un + damp I = S_un - mu_u mu_u^T + damp I, both triangles. */
static ng_status build_sigma(ng_backend *be, struct ng_fang *f, float damp) {
    int n = f->n;
    NG_TRY(ng_copy(be, f->A.data, f->S_un.data, (size_t)n * n * sizeof(float)));
    NG_TRY(ng_syrk(be, 0, n, 1, -1.0f, f->mom.data + f->nv, n, 1.0f, f->A.data, n));
    return ng_symmetrize_lower(be, n, f->A.data, n, damp);
}

/* Diagonal of the Cholesky factor held in A (float) -> host; 0 unless every entry is finite and
 * positive (cuSOLVER, unlike LAPACK, may let a NaN through with info = 0). cond receives the
 * squared ratio of the largest to the smallest entry. */
static ng_status factor_diag_ok(ng_backend *be, struct ng_fang *f, int *ok, double *cond) {
    int n = f->n, k;
    double lo = INFINITY, hi = 0.0;
    /* the diagonal, read as row 0 of a (1, n) matrix with leading dimension n + 1 */
    NG_TRY(ng_sum_rows(be, 1, n, 1.0f, f->A.data, n + 1, 0.0f, f->dvec.data));
    NG_TRY(ng_get(be, f->host_dvec, f->dvec.data, (size_t)n * sizeof(float)));
    *ok = 1;
    for (k = 0; k < n; k++) {
        double d = (double)f->host_dvec[k];
        if (!(d > 0.0) || !isfinite(d)) {
            *ok = 0;
            return NG_OK;
        }
        if (d < lo) lo = d;
        if (d > hi) hi = d;
    }
    *cond = (hi / lo) * (hi / lo);
    return NG_OK;
}

/* One attempt at A = (Sigma_un + damp I)^-1 in float32, then in float64. *precision = 32 or 64
 * on success, 0 when both failed. */
static ng_status invert_sigma(ng_backend *be, struct ng_fang *f, float damp, int *precision,
                              double *cond) {
    int n = f->n, info = 0, ok = 0;
    size_t nn = (size_t)n * n;
    double *Ad = f->Ad.data_d;
    *precision = 0;
    NG_TRY(build_sigma(be, f, damp));
    NG_TRY(ng_potrf(be, n, f->A.data, n, &info));
    if (info == 0) NG_TRY(factor_diag_ok(be, f, &ok, cond));
    if (ok) NG_TRY(ng_potri(be, n, f->A.data, n, &info));
    if (ok && info == 0) {
        *precision = 32;
        return ng_symmetrize_lower(be, n, f->A.data, n, 0.0f);
    }
    /* float64 */
    NG_TRY(build_sigma(be, f, damp));
    NG_TRY(ng_to_double(be, nn, f->A.data, Ad));
    NG_TRY(ng_potrf_d(be, n, Ad, n, &info));
    if (info != 0) return NG_OK;
    NG_TRY(ng_to_float(be, nn, Ad, f->A.data));
    NG_TRY(factor_diag_ok(be, f, &ok, cond));
    if (!ok) return NG_OK;
    NG_TRY(ng_potri_d(be, n, Ad, n, &info));
    if (info != 0) return NG_OK;
    NG_TRY(ng_to_float(be, nn, Ad, f->A.data));
    *precision = 64;
    return ng_symmetrize_lower(be, n, f->A.data, n, 0.0f);
}

/* Lambda_un = (S^T S + lambda^2 I)^-1 S^T for S = Sigma_un (undamped, symmetric) into A, from
 * the float64 eigendecomposition S = E diag(l) E^T: A = E diag(l / (l^2 + lambda^2)) E^T.
 * *ok = 0 when the eigensolver failed. *cond = max |l| / min |l| (Sigma_un's, capped). Uses Ad,
 * wd, B, dvec (l), g_un and r_un as scratch (the direction's vectors, free during a refit). */
static ng_status regularized_inverse(ng_backend *be, struct ng_fang *f, int *ok, double *cond) {
    int n = f->n, info = 0, k;
    size_t nn = (size_t)n * n;
    float lam2 = f->cfg.lambda * f->cfg.lambda;
    double lo = INFINITY, hi = 0.0;
    ng_op_args o;
    *ok = 0;
    NG_TRY(build_sigma(be, f, 0.0f));
    NG_TRY(ng_to_double(be, nn, f->A.data, f->Ad.data_d));
    NG_TRY(ng_syevd_d(be, n, f->Ad.data_d, n, f->wd.data_d, &info));
    if (info != 0) return NG_OK;
    NG_TRY(ng_to_float(be, nn, f->Ad.data_d, f->A.data));
    NG_TRY(ng_to_float(be, (size_t)n, f->wd.data_d, f->dvec.data));
    NG_TRY(ng_get(be, f->host_dvec, f->dvec.data, (size_t)n * sizeof(float)));
    for (k = 0; k < n; k++) {
        double a = fabs((double)f->host_dvec[k]);
        if (!isfinite(a)) return NG_OK;
        if (a < lo) lo = a;
        if (a > hi) hi = a;
    }
    *cond = lo > 0.0 ? hi / lo : INFINITY;
    /* r_un = l^2 + lambda^2; g_un = l / r_un */
    memset(&o, 0, sizeof o);
    o.op = NG_OP_OUTER_SCALE;
    o.outer_scale.mode = NG_OSCALE_SQUARE;
    o.outer_scale.rows = n;
    o.outer_scale.cols = 1;
    o.outer_scale.x = f->dvec.data;
    o.outer_scale.ldx = n;
    o.outer_scale.out = f->r_un.data;
    o.outer_scale.ldo = n;
    NG_TRY(ng_run_op(be, &o));
    NG_TRY(ng_fill(be, (size_t)n, lam2, f->g_un.data));
    NG_TRY(ng_axpby(be, (size_t)n, 1.0f, f->g_un.data, 1.0f, f->r_un.data));
    memset(&o, 0, sizeof o);
    o.op = NG_OP_OUTER_SCALE;
    o.outer_scale.mode = NG_OSCALE_POW;
    o.outer_scale.rows = 1;
    o.outer_scale.cols = n;
    o.outer_scale.x = f->dvec.data;
    o.outer_scale.ldx = 1;
    o.outer_scale.v = f->r_un.data;
    o.outer_scale.floor = lam2 > 1e-30f ? lam2 : 1e-30f;
    o.outer_scale.power = -1.0f;
    o.outer_scale.out = f->g_un.data;
    o.outer_scale.ldo = 1;
    NG_TRY(ng_run_op(be, &o));
    /* A = (E diag(g_un)) E^T */
    memset(&o, 0, sizeof o);
    o.op = NG_OP_OUTER_SCALE;
    o.outer_scale.mode = NG_OSCALE_MUL;
    o.outer_scale.rows = n;
    o.outer_scale.cols = n;
    o.outer_scale.x = f->A.data;
    o.outer_scale.ldx = n;
    o.outer_scale.v = f->g_un.data;
    o.outer_scale.out = f->B.data;
    o.outer_scale.ldo = n;
    NG_TRY(ng_run_op(be, &o));
    NG_TRY(ng_gemm(be, 0, 1, n, n, n, 1.0f, f->B.data, n, f->A.data, n, 0.0f, f->Ad.data, n));
    NG_TRY(ng_copy(be, f->A.data, f->Ad.data, nn * sizeof(float)));
    *ok = 1;
    return ng_symmetrize_lower(be, n, f->A.data, n, 0.0f);
}

static ng_status read_diag(ng_backend *be, const struct ng_fang *f, ng_fang_diag *d) {
    float v[NG_FANG_DIAG_N];
    NG_TRY(ng_get(be, v, f->diag.data, sizeof v));
    d->cond = v[0];
    d->min_sigma2 = v[1];
    d->damping = v[2];
    d->refit_s = v[3];
    d->refits = v[4];
    d->float64_refits = v[5];
    d->damping_raises = v[6];
    d->floored = v[7];
    return NG_OK;
}

static ng_status write_diag(ng_backend *be, struct ng_fang *f, const ng_fang_diag *d) {
    float v[NG_FANG_DIAG_N];
    v[0] = d->cond < 3e38 ? (float)d->cond : 3e38f;
    v[1] = (float)d->min_sigma2;
    v[2] = (float)d->damping;
    v[3] = (float)d->refit_s;
    v[4] = (float)d->refits;
    v[5] = (float)d->float64_refits;
    v[6] = (float)d->damping_raises;
    v[7] = (float)d->floored;
    return ng_set(be, f->diag.data, v, sizeof v);
}

static ng_status refit(ng_backend *be, struct ng_fang *f, uint64_t t) {
    ng_fang_diag d;
    int nv = f->nv, nh = f->nh, n = f->n, ldp = f->S_un.ld, raises, precision = 0, k;
    float lambda = f->cfg.lambda, damp;
    double t0 = ng_time_s(), cond = 0.0, smin = INFINITY;
    long floored = 0;
    const float *Pm = f->S_un.data + nv; /* (h, v) block of S_un: E[h v^T], (nh, nv) */
    ng_op_args regress;
    NG_TRY(read_diag(be, f, &d));

    /* Pairwise CPDs, eq. 11-12. The four pairwise moments E[h v^T], E[h v2^T], E[h2 v^T],
     * E[h2 v2^T] are all the (h, v) block of S_un (binary statistics, see the top of this file);
     * mom is [E v2; E v; E h; E h2]. */
    memset(&regress, 0, sizeof regress);
    regress.op = NG_OP_FANG_REGRESS;
    regress.fang_regress.nh = nh;
    regress.fang_regress.nv = nv;
    regress.fang_regress.Evh = regress.fang_regress.Ev2h = Pm;
    regress.fang_regress.Evh2 = regress.fang_regress.Ev2h2 = Pm;
    regress.fang_regress.ldm = ldp;
    regress.fang_regress.mu_v = f->mom.data + nv;
    regress.fang_regress.mu_h = f->mom.data + 2 * nv;
    regress.fang_regress.Ev2 = f->mom.data;
    regress.fang_regress.Eh2 = f->mom.data + 2 * nv + nh;
    regress.fang_regress.lambda = lambda;
    regress.fang_regress.beta_v = f->beta_v.data;
    regress.fang_regress.beta_h = f->beta_h.data;
    regress.fang_regress.sigma2 = f->sigma2.data;
    regress.fang_regress.ldo = f->sigma2.ld;
    NG_TRY(ng_run_op(be, &regress));

    /* Lambda_un = (Sigma_un + lambda I)^-1, raising the damping when Cholesky fails; or the
     * regularised inverse */
    damp = lambda;
    if (f->cfg.inverse == NG_FANG_INV_REGULARIZED) {
        int ok = 0;
        NG_TRY(regularized_inverse(be, f, &ok, &cond));
        if (ok) {
            NG_TRY(ng_copy(be, f->Lambda.data, f->A.data, (size_t)n * n * sizeof(float)));
            d.cond = cond;
            d.damping = lambda;
        } else if (d.refits > 0) {
            ng_log(NG_LOG_WARN, "fang", "update %llu: the eigendecomposition of Sigma_un failed (non-finite statistics?); keeping the previous Lambda_un",
                   (unsigned long long)t);
        } else {
            return ng_error(NG_ERR_NUMERIC, "fang: update %llu: the eigendecomposition of the unary covariance Sigma_un failed "
                            "(non-finite particle statistics?)", (unsigned long long)t);
        }
        precision = -1; /* skips the Tikhonov loop */
    }
    for (raises = precision < 0 ? FANG_MAX_RAISES + 1 : 0; raises <= FANG_MAX_RAISES; raises++, damp *= 10.0f) {
        NG_TRY(invert_sigma(be, f, damp, &precision, &cond));
        if (precision) break;
    }
    if (precision < 0) {
        /* the regularised inverse above */
    } else if (precision) {
        NG_TRY(ng_copy(be, f->Lambda.data, f->A.data, (size_t)n * n * sizeof(float)));
        if (precision == 64 || raises > 0)
            ng_log(NG_LOG_WARN, "fang",
                   "update %llu: Cholesky of Sigma_un + %g I failed in float32; inverted %s with damping %g",
                   (unsigned long long)t, (double)lambda, precision == 64 ? "in float64" : "in float32",
                   (double)damp);
        d.cond = cond;
        d.damping = damp;
        d.float64_refits += precision == 64;
        d.damping_raises += raises;
    } else if (d.refits > 0) {
        ng_log(NG_LOG_WARN, "fang",
               "update %llu: Sigma_un + lambda I is not positive definite even with damping %g "
               "(float64); keeping the previous Lambda_un",
               (unsigned long long)t, (double)(damp / 10.0f));
        d.damping_raises += FANG_MAX_RAISES;
    } else {
        return ng_error(NG_ERR_NUMERIC,
                        "fang: update %llu: the unary covariance Sigma_un + lambda I is not positive "
                        "definite even in float64 with damping up to %g (non-finite or inconsistent "
                        "particle statistics?)",
                        (unsigned long long)t, (double)(damp / 10.0f));
    }

    /* smallest conditional variance (the regressions floor it at lambda) */
    NG_TRY(ng_get(be, f->host_sigma2, f->sigma2.data, (size_t)nh * nv * sizeof(float)));
    for (k = 0; k < nh * nv; k++) {
        double s2 = (double)f->host_sigma2[k];
        if (s2 < smin) smin = s2;
        if (s2 <= (double)lambda) floored++;
    }
    d.min_sigma2 = isfinite(smin) ? smin : 0.0;
    d.floored = (double)floored;
    d.refits += 1.0;
    d.refit_s += ng_time_s() - t0;
    return write_diag(be, f, &d);
}

ng_status ng_fang_refit(ng_precond *p, ng_model *m, uint64_t t) {
    struct ng_fang *f;
    ng_status s;
    (void)m;
    NG_TRY(need_fang(p, "fang refit", &f));
    NG_RANGE_CAT(NG_CAT_INVERSE, "fang refit", s, refit(p->be, f, t));
    return s;
}

ng_status ng_fang_apply(ng_precond *p, ng_model *m) {
    struct ng_fang *f;
    ng_backend *be = p->be;
    int nv, nh, n;
    ng_op_args res;
    (void)m;
    NG_TRY(need_fang(p, "fang direction", &f));
    nv = f->nv;
    nh = f->nh;
    n = f->n;
    /* r_un = Lambda_un [ga; gb] */
    NG_TRY(ng_copy(be, f->g_un.data, f->ga.data, (size_t)nv * sizeof(float)));
    NG_TRY(ng_copy(be, f->g_un.data + nv, f->gb.data, (size_t)nh * sizeof(float)));
    NG_TRY(ng_gemv(be, 0, n, n, 1.0f, f->Lambda.data, n, f->g_un.data, 0.0f, f->r_un.data));
    /* pairwise terms of Algorithm 1: gW = q, pv = beta_v .* q, ph = beta_h .* q */
    memset(&res, 0, sizeof res);
    res.op = NG_OP_FANG_RESIDUAL;
    res.fang_residual.nh = nh;
    res.fang_residual.nv = nv;
    res.fang_residual.G = f->gW.data;
    res.fang_residual.ldg = f->gW.ld;
    res.fang_residual.ga = f->ga.data;
    res.fang_residual.gb = f->gb.data;
    res.fang_residual.beta_v = f->beta_v.data;
    res.fang_residual.beta_h = f->beta_h.data;
    res.fang_residual.sigma2 = f->sigma2.data;
    res.fang_residual.ldb = f->sigma2.ld;
    res.fang_residual.pv = f->pv.data;
    res.fang_residual.ph = f->ph.data;
    res.fang_residual.ldp = f->pv.ld;
    NG_TRY(ng_run_op(be, &res));
    /* r_a = [r_un]_v - sum_j beta_v q,  r_b = [r_un]_h - sum_i beta_h q */
    NG_TRY(ng_copy(be, f->ga.data, f->r_un.data, (size_t)nv * sizeof(float)));
    NG_TRY(ng_sum_rows(be, nh, nv, -1.0f, f->pv.data, f->pv.ld, 1.0f, f->ga.data));
    NG_TRY(ng_copy(be, f->gb.data, f->r_un.data + nv, (size_t)nh * sizeof(float)));
    return ng_sum_cols(be, nh, nv, -1.0f, f->ph.data, f->ph.ld, 1.0f, f->gb.data);
}

/* Algorithm 1 for one mini-batch: statistics, then a refit when t % T == 0 (so at the first
 * update, and on a schedule that depends only on t). */
static ng_status fang_observe(ng_precond *p, ng_model *m, uint64_t t) {
    struct ng_fang *f = (struct ng_fang *)p->impl;
    ng_status s;
    NG_RANGE_CAT(NG_CAT_STATS, "fang statistics", s, ng_fang_update_stats(p, m, t));
    if (s == NG_OK && t % (uint64_t)f->cfg.refit_every == 0) s = ng_fang_refit(p, m, t);
    return s;
}

/* CUDA graphs: the updates between refits (statistics and the direction of the current fit) are
 * captured; their only per-update host value, the Philox step, is counted on the device, and the
 * EMA weight 1/tau is fixed for t >= 1. A refit update reads the host (the Cholesky factor's
 * diagonal, the conditional variances, the diagnostics) and runs eagerly. Several ranks: the same
 * (update_stats_dist: the counts summed at update 0, a refit; the moments' NCCL all-reduces captured). */
static int fang_graph_key(const ng_precond *p, const ng_model *m, uint64_t t, int cols, double *key, int max) {
    const struct ng_fang *f = (const struct ng_fang *)p->impl;
    (void)m;
    (void)cols;
    (void)key;
    (void)max;
    if (t % (uint64_t)f->cfg.refit_every == 0) return -1;
    return 0;
}

/* A replay of update t drew at step t and advanced the device count to t + 1. */
static void fang_graph_replayed(ng_precond *p, uint64_t t) { ((struct ng_fang *)p->impl)->t_dev = t + 1; }

/* A discarded capture of update t never ran: the device count still holds t. */
static void fang_graph_discarded(ng_precond *p, uint64_t t) { ((struct ng_fang *)p->impl)->t_dev = t; }

static ng_status fang_apply(ng_precond *p, ng_model *m, uint64_t t) {
    ng_status s;
    (void)t;
    NG_RANGE_CAT(NG_CAT_UPDATE, "fang direction", s, ng_fang_apply(p, m));
    return s;
}

ng_status ng_fang_diagnostics(ng_precond *p, ng_fang_diag *out) {
    struct ng_fang *f;
    memset(out, 0, sizeof *out);
    NG_TRY(need_fang(p, "fang diagnostics", &f));
    return read_diag(p->be, f, out);
}

static const char *const fang_columns[] = {"fang_cond", "fang_min_sigma2", "fang_refit_s", NULL};

static ng_status fang_log_values(ng_precond *p, double *values) {
    ng_fang_diag d;
    NG_TRY(ng_fang_diagnostics(p, &d));
    values[0] = d.cond;
    values[1] = d.min_sigma2;
    values[2] = d.refit_s;
    return NG_OK;
}

static ng_status fang_save(ng_precond *p, ng_ckpt *c) {
    const struct ng_fang *f = (const struct ng_fang *)p->impl;
    NG_TRY(ng_ckpt_set_i64(c, "fang.refit_every", f->cfg.refit_every));
    NG_TRY(ng_ckpt_set_f32(c, "fang.tau", f->cfg.tau));
    NG_TRY(ng_ckpt_set_f32(c, "fang.lambda", f->cfg.lambda));
    if (f->cfg.inverse != NG_FANG_INV_TIKHONOV) NG_TRY(ng_ckpt_set_i64(c, "fang.inverse", f->cfg.inverse));
    return ng_ckpt_set_u64(c, "fang.seed", f->cfg.seed);
}

/* The settings of the checkpoint must be this preconditioner's: its state was accumulated with
 * them. */
static ng_status fang_load(ng_precond *p, const ng_ckpt *c, int apply) {
    const struct ng_fang *f = (const struct ng_fang *)p->impl;
    int64_t T;
    float tau, lambda;
    uint64_t seed;
    NG_TRY(ng_ckpt_get_int(c, "fang.refit_every", 1, 1000000000, &T));
    NG_TRY(ng_ckpt_get_float(c, "fang.tau", 1.0, 1e30, &tau));
    NG_TRY(ng_ckpt_get_float(c, "fang.lambda", 1e-30, 1e30, &lambda));
    NG_TRY(ng_ckpt_get_u64(c, "fang.seed", &seed));
    {
        int64_t inv = NG_FANG_INV_TIKHONOV;
        if (ng_ckpt_has(c, "fang.inverse")) NG_TRY(ng_ckpt_get_int(c, "fang.inverse", 0, 1, &inv));
        if (inv != f->cfg.inverse)
            return ng_error(NG_ERR_FORMAT, "checkpoint %s: fang.inverse is %s, this run uses %s", ng_ckpt_path(c),
                            inv ? "regularized" : "tikhonov", f->cfg.inverse ? "regularized" : "tikhonov");
    }
    if (T != f->cfg.refit_every || tau != f->cfg.tau || lambda != f->cfg.lambda || seed != f->cfg.seed)
        return ng_error(NG_ERR_FORMAT,
                        "checkpoint %s: FANG settings (refit every %lld, tau %g, lambda %g, seed %llu) "
                        "differ from this run's (%d, %g, %g, %llu)",
                        ng_ckpt_path(c), (long long)T, (double)tau, (double)lambda,
                        (unsigned long long)seed, f->cfg.refit_every, (double)f->cfg.tau,
                        (double)f->cfg.lambda, (unsigned long long)f->cfg.seed);
    if (apply) {
        /* the device step count of the resumed update (run.t), before any capture of the resumed run */
        uint64_t t = 0;
        ((struct ng_fang *)p->impl)->t_dev = UINT64_MAX;
        if (!ng_ckpt_has(c, "run.t")) return NG_OK;
        NG_TRY(ng_ckpt_get_u64(c, "run.t", &t));
        return sync_step_dev(p->be, (struct ng_fang *)p->impl, t);
    }
    return NG_OK;
}

static const struct ng_precond_i fang_iface = {
    .name = "fang",
    .observe = fang_observe,
    .apply = fang_apply,
    .columns = fang_columns,
    .log_values = fang_log_values,
    .save = fang_save,
    .load = fang_load,
    .destroy = fang_destroy,
    .data_parallel = 1, /* its statistics are all-reduced (update_stats_dist) */
    .graph_key = fang_graph_key,
    .graph_replayed = fang_graph_replayed,
    .graph_discarded = fang_graph_discarded,
};
