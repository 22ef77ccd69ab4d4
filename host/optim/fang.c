/* fang.c: FANG, the factorized natural gradient for binary RBMs (Grosse & Salakhutdinov 2015,
 * Algorithm 1), vectorised over all pairs and run entirely through the backend wrappers.
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
 * Must not: allocate after ng_fang_init, call BLAS or kernels directly, or read device memory
 * except the small diagnostics fetched at refit time. */
#include "optim/fang.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "natgrad/rng.h"

enum { FANG_MAX_RAISES = 6 }; /* damping may grow to lambda * 10^6 */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

ng_status ng_fang_init(ng_rbm_trainer *tr) {
    ng_backend *be = tr->be;
    struct ng_fang *f;
    int nv = tr->rbm->n_visible, nh = tr->rbm->n_hidden, n = nv + nh, K = tr->cfg.particles;
    int ns = 2 * nv + 2 * nh;
    ng_status s = NG_OK;
    if ((double)n * (double)n * 2.0 > 2e9 || (double)ns * (double)K > 2e9)
        return ng_error(NG_ERR_INVALID_ARG, "fang: %d visible + %d hidden units with %d particles is too large",
                        nv, nh, K);
    f = (struct ng_fang *)calloc(1, sizeof *f);
    if (!f) return ng_error(NG_ERR_OOM, "fang: out of host memory");
    tr->fang = f;
    f->nv = nv;
    f->nh = nh;
    f->n = n;
    f->K = K;
    ng_arena_begin(&f->state, be, "FANG state");
    ng_arena_begin(&f->work, be, "FANG workspace");
    if (s == NG_OK) s = ng_arena_reserve(&f->state, "fang_mom", ns, 1, &f->mom);
    if (s == NG_OK) s = ng_arena_reserve(&f->state, "fang_S_un", n, n, &f->S_un);
    if (s == NG_OK) s = ng_arena_reserve(&f->state, "fang_Lambda", n, n, &f->Lambda);
    if (s == NG_OK) s = ng_arena_reserve(&f->state, "fang_beta_v", nh, nv, &f->beta_v);
    if (s == NG_OK) s = ng_arena_reserve(&f->state, "fang_beta_h", nh, nv, &f->beta_h);
    if (s == NG_OK) s = ng_arena_reserve(&f->state, "fang_sigma2", nh, nv, &f->sigma2);
    if (s == NG_OK) s = ng_arena_reserve(&f->state, "fang_diag", NG_FANG_DIAG_N, 1, &f->diag);
    if (s == NG_OK) s = ng_arena_reserve(&f->work, "fang_hs", nh, K, &f->hs);
    if (s == NG_OK) s = ng_arena_reserve(&f->work, "fang_A", n, n, &f->A);
    if (s == NG_OK) s = ng_arena_reserve(&f->work, "fang_Ad", n, 2 * n, &f->Ad);
    if (s == NG_OK) s = ng_arena_reserve(&f->work, "fang_g_un", n, 1, &f->g_un);
    if (s == NG_OK) s = ng_arena_reserve(&f->work, "fang_r_un", n, 1, &f->r_un);
    if (s == NG_OK) s = ng_arena_reserve(&f->work, "fang_pv", nh, nv, &f->pv);
    if (s == NG_OK) s = ng_arena_reserve(&f->work, "fang_ph", nh, nv, &f->ph);
    if (s == NG_OK) s = ng_arena_reserve(&f->work, "fang_dvec", n, 1, &f->dvec);
    if (s == NG_OK) s = ng_arena_commit(&f->state);
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
    if (s != NG_OK) ng_fang_free(tr);
    return s;
}

void ng_fang_free(ng_rbm_trainer *tr) {
    struct ng_fang *f = tr ? tr->fang : NULL;
    if (!f) return;
    ng_arena_free(&f->state);
    ng_arena_free(&f->work);
    free(f->host_sigma2);
    free(f->host_dvec);
    free(f);
    tr->fang = NULL;
}

int ng_fang_state_tensors(ng_rbm_trainer *tr, ng_tensor **out, int max) {
    struct ng_fang *f = tr->fang;
    ng_tensor *all[8];
    int n = 0, i;
    if (!f) return 0;
    all[n++] = &f->mom;
    all[n++] = &f->S_un;
    all[n++] = &f->Lambda;
    all[n++] = &f->beta_v;
    all[n++] = &f->beta_h;
    all[n++] = &f->sigma2;
    all[n++] = &f->diag;
    for (i = 0; i < n && i < max; i++) out[i] = all[i];
    return i;
}

static ng_status need_fang(const ng_rbm_trainer *tr, const char *op) {
    if (!tr || !tr->fang)
        return ng_error(NG_ERR_INVALID_ARG, "%s: the trainer has no FANG state (optimizer is not fang)", op);
    return NG_OK;
}

ng_status ng_fang_update_stats(ng_rbm_trainer *tr) {
    struct ng_fang *f;
    ng_backend *be;
    int nv, nh, K;
    float c, a, b;
    NG_TRY(need_fang(tr, "fang statistics"));
    f = tr->fang;
    be = tr->be;
    nv = f->nv;
    nh = f->nh;
    K = f->K;
    /* Algorithm 1, "update mean and covariance statistics" */
    NG_TRY(ng_bernoulli(be, (size_t)nh * K, tr->hm.data, f->hs.data,
                        ng_rng_stream_key(tr->cfg.seed, NG_RNG_FANG), tr->t));
    c = tr->t == 0 ? 1.0f : 1.0f / tr->cfg.fang_tau;
    a = c / (float)K;
    b = 1.0f - c;
    /* [E v2; E v; E h; E h2]: the squares equal the values for binary statistics, so the
     * E v2 and E h2 slots are copies of the E v and E h averages (identical EMA updates) */
    NG_TRY(ng_sum_cols(be, nv, K, a, tr->vm.data, tr->vm.ld, b, f->mom.data + nv));
    NG_TRY(ng_sum_cols(be, nh, K, a, f->hs.data, f->hs.ld, b, f->mom.data + 2 * nv));
    NG_TRY(ng_copy(be, f->mom.data, f->mom.data + nv, (size_t)nv * sizeof(float)));
    NG_TRY(ng_copy(be, f->mom.data + 2 * nv + nh, f->mom.data + 2 * nv, (size_t)nh * sizeof(float)));
    /* E[u u^T], lower triangle: (v, v) and (h, h) blocks by syrk, (h, v) block by gemm */
    NG_TRY(ng_syrk(be, 0, nv, K, a, tr->vm.data, tr->vm.ld, b, f->S_un.data, f->S_un.ld));
    NG_TRY(ng_syrk(be, 0, nh, K, a, f->hs.data, f->hs.ld, b,
                   f->S_un.data + nv + (size_t)nv * f->S_un.ld, f->S_un.ld));
    NG_TRY(ng_gemm(be, 0, 1, nh, nv, K, a, f->hs.data, f->hs.ld, tr->vm.data, tr->vm.ld, b,
                   f->S_un.data + nv, f->S_un.ld));
    return NG_OK;
}

/* A = Sigma_un + damp I = S_un - mu_u mu_u^T + damp I, both triangles. */
static ng_status build_sigma(ng_rbm_trainer *tr, float damp) {
    struct ng_fang *f = tr->fang;
    ng_backend *be = tr->be;
    int n = f->n;
    NG_TRY(ng_copy(be, f->A.data, f->S_un.data, (size_t)n * n * sizeof(float)));
    NG_TRY(ng_syrk(be, 0, n, 1, -1.0f, f->mom.data + f->nv, n, 1.0f, f->A.data, n));
    return ng_symmetrize_lower(be, n, f->A.data, n, damp);
}

/* Diagonal of the Cholesky factor held in A (float) -> host; 0 unless every entry is finite and
 * positive (cuSOLVER, unlike LAPACK, may let a NaN through with info = 0). cond receives the
 * squared ratio of the largest to the smallest entry. */
static ng_status factor_diag_ok(ng_rbm_trainer *tr, int *ok, double *cond) {
    struct ng_fang *f = tr->fang;
    int n = f->n, k;
    double lo = INFINITY, hi = 0.0;
    /* the diagonal, read as row 0 of a (1, n) matrix with leading dimension n + 1 */
    NG_TRY(ng_sum_rows(tr->be, 1, n, 1.0f, f->A.data, n + 1, 0.0f, f->dvec.data));
    NG_TRY(ng_get(tr->be, f->host_dvec, f->dvec.data, (size_t)n * sizeof(float)));
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
static ng_status invert_sigma(ng_rbm_trainer *tr, float damp, int *precision, double *cond) {
    struct ng_fang *f = tr->fang;
    ng_backend *be = tr->be;
    int n = f->n, info = 0, ok = 0;
    size_t nn = (size_t)n * n;
    double *Ad = (double *)(void *)f->Ad.data;
    *precision = 0;
    NG_TRY(build_sigma(tr, damp));
    NG_TRY(ng_potrf(be, n, f->A.data, n, &info));
    if (info == 0) NG_TRY(factor_diag_ok(tr, &ok, cond));
    if (ok) NG_TRY(ng_potri(be, n, f->A.data, n, &info));
    if (ok && info == 0) {
        *precision = 32;
        return ng_symmetrize_lower(be, n, f->A.data, n, 0.0f);
    }
    /* float64 */
    NG_TRY(build_sigma(tr, damp));
    NG_TRY(ng_to_double(be, nn, f->A.data, Ad));
    NG_TRY(ng_potrf_d(be, n, Ad, n, &info));
    if (info != 0) return NG_OK;
    NG_TRY(ng_to_float(be, nn, Ad, f->A.data));
    NG_TRY(factor_diag_ok(tr, &ok, cond));
    if (!ok) return NG_OK;
    NG_TRY(ng_potri_d(be, n, Ad, n, &info));
    if (info != 0) return NG_OK;
    NG_TRY(ng_to_float(be, nn, Ad, f->A.data));
    *precision = 64;
    return ng_symmetrize_lower(be, n, f->A.data, n, 0.0f);
}

static ng_status read_diag(const ng_rbm_trainer *tr, ng_fang_diag *d) {
    float v[NG_FANG_DIAG_N];
    NG_TRY(ng_get(tr->be, v, tr->fang->diag.data, sizeof v));
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

static ng_status write_diag(ng_rbm_trainer *tr, const ng_fang_diag *d) {
    float v[NG_FANG_DIAG_N];
    v[0] = d->cond < 3e38 ? (float)d->cond : 3e38f;
    v[1] = (float)d->min_sigma2;
    v[2] = (float)d->damping;
    v[3] = (float)d->refit_s;
    v[4] = (float)d->refits;
    v[5] = (float)d->float64_refits;
    v[6] = (float)d->damping_raises;
    v[7] = (float)d->floored;
    return ng_set(tr->be, tr->fang->diag.data, v, sizeof v);
}

static ng_status refit(ng_rbm_trainer *tr) {
    struct ng_fang *f = tr->fang;
    ng_backend *be = tr->be;
    ng_fang_diag d;
    int nv = f->nv, nh = f->nh, n = f->n, ldp = f->S_un.ld, raises, precision = 0, k;
    float lambda = tr->cfg.fang_lambda, damp;
    double t0 = now_s(), cond = 0.0, smin = INFINITY;
    long floored = 0;
    const float *Pm = f->S_un.data + nv; /* (h, v) block of S_un: E[h v^T], (nh, nv) */
    NG_TRY(read_diag(tr, &d));

    /* Pairwise CPDs, eq. 11-12. The four pairwise moments E[h v^T], E[h v2^T], E[h2 v^T],
     * E[h2 v2^T] are all the (h, v) block of S_un (binary statistics, see the top of this file);
     * mom is [E v2; E v; E h; E h2]. */
    NG_TRY(ng_fang_regress(be, nh, nv, Pm, Pm, Pm, Pm, ldp, f->mom.data + nv, f->mom.data + 2 * nv,
                           f->mom.data, f->mom.data + 2 * nv + nh, lambda, f->beta_v.data,
                           f->beta_h.data, f->sigma2.data, f->sigma2.ld));

    /* Lambda_un = (Sigma_un + lambda I)^-1, raising the damping when Cholesky fails. */
    damp = lambda;
    for (raises = 0; raises <= FANG_MAX_RAISES; raises++, damp *= 10.0f) {
        NG_TRY(invert_sigma(tr, damp, &precision, &cond));
        if (precision) break;
    }
    if (precision) {
        NG_TRY(ng_copy(be, f->Lambda.data, f->A.data, (size_t)n * n * sizeof(float)));
        if (precision == 64 || raises > 0)
            fprintf(stderr,
                    "natgrad: fang: update %llu: Cholesky of Sigma_un + %g I failed in float32; "
                    "inverted %s with damping %g\n",
                    (unsigned long long)tr->t, (double)lambda,
                    precision == 64 ? "in float64" : "in float32", (double)damp);
        d.cond = cond;
        d.damping = damp;
        d.float64_refits += precision == 64;
        d.damping_raises += raises;
    } else if (d.refits > 0) {
        fprintf(stderr,
                "natgrad: fang: update %llu: Sigma_un + lambda I is not positive definite even with "
                "damping %g (float64); keeping the previous Lambda_un\n",
                (unsigned long long)tr->t, (double)(damp / 10.0f));
        d.damping_raises += FANG_MAX_RAISES;
    } else {
        return ng_error(NG_ERR_NUMERIC,
                        "fang: update %llu: the unary covariance Sigma_un + lambda I is not positive "
                        "definite even in float64 with damping up to %g (non-finite or inconsistent "
                        "particle statistics?)",
                        (unsigned long long)tr->t, (double)(damp / 10.0f));
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
    d.refit_s += now_s() - t0;
    return write_diag(tr, &d);
}

ng_status ng_fang_refit(ng_rbm_trainer *tr) {
    ng_status s;
    NG_TRY(need_fang(tr, "fang refit"));
    ng_range_push("fang refit");
    s = refit(tr);
    ng_range_pop();
    return s;
}

ng_status ng_fang_apply(ng_rbm_trainer *tr) {
    struct ng_fang *f;
    ng_backend *be;
    int nv, nh, n;
    NG_TRY(need_fang(tr, "fang direction"));
    f = tr->fang;
    be = tr->be;
    nv = f->nv;
    nh = f->nh;
    n = f->n;
    /* r_un = Lambda_un [da; db] */
    NG_TRY(ng_copy(be, f->g_un.data, tr->da.data, (size_t)nv * sizeof(float)));
    NG_TRY(ng_copy(be, f->g_un.data + nv, tr->db.data, (size_t)nh * sizeof(float)));
    NG_TRY(ng_gemv(be, 0, n, n, 1.0f, f->Lambda.data, n, f->g_un.data, 0.0f, f->r_un.data));
    /* pairwise terms of Algorithm 1: dW = q, pv = beta_v .* q, ph = beta_h .* q */
    NG_TRY(ng_fang_residual(be, nh, nv, tr->dW.data, tr->dW.ld, tr->da.data, tr->db.data,
                            f->beta_v.data, f->beta_h.data, f->sigma2.data, f->sigma2.ld,
                            f->pv.data, f->ph.data, f->pv.ld));
    /* r_a = [r_un]_v - sum_j beta_v q,  r_b = [r_un]_h - sum_i beta_h q */
    NG_TRY(ng_copy(be, tr->da.data, f->r_un.data, (size_t)nv * sizeof(float)));
    NG_TRY(ng_sum_rows(be, nh, nv, -1.0f, f->pv.data, f->pv.ld, 1.0f, tr->da.data));
    NG_TRY(ng_copy(be, tr->db.data, f->r_un.data + nv, (size_t)nh * sizeof(float)));
    NG_TRY(ng_sum_cols(be, nh, nv, -1.0f, f->ph.data, f->ph.ld, 1.0f, tr->db.data));
    return NG_OK;
}

ng_status ng_fang_direction(ng_rbm_trainer *tr) {
    ng_status s;
    NG_TRY(need_fang(tr, "fang direction"));
    ng_range_push("fang");
    s = ng_fang_update_stats(tr);
    if (s == NG_OK && tr->t % (uint64_t)tr->cfg.fang_refit_every == 0) s = ng_fang_refit(tr);
    if (s == NG_OK) s = ng_fang_apply(tr);
    ng_range_pop();
    return s;
}

ng_status ng_fang_diagnostics(const ng_rbm_trainer *tr, ng_fang_diag *out) {
    memset(out, 0, sizeof *out);
    if (!tr || !tr->fang) return NG_OK;
    return read_diag(tr, out);
}
