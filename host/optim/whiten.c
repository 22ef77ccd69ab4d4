/* whiten.c: PCA whitening statistics and matrices on the device (natgrad/whiten.h): the mean and
 * centred scatter of samples merged batch by batch, the eigendecomposition of the covariance, the
 * whitening matrix U = diag(lambda + eps)^(-1/2) E^T of PRONG's eq. 7 (kept as U^T) and U^-1.
 * Shapes column-major; every matrix op goes through the backend wrappers (syrk for the scatter,
 * syevd for the eigendecomposition, outer_scale for the column scalings). Several ranks: the
 * statistics merged exactly by all-reduces, each eigendecomposition computed by its owner and
 * broadcast (natgrad/comm.h). Must not: print, allocate device memory after init. */
#include "natgrad/whiten.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natgrad/comm.h"
#include "natgrad/nn_types.h"

ng_status ng_whiten_init(ng_backend *be, int d, int chunk, ng_whiten *w) {
    ng_status s;
    int dd[2];
    memset(w, 0, sizeof *w);
    if (!be) return ng_error(NG_ERR_INVALID_ARG, "whiten: no backend");
    if (d < 1 || d > 100000) return ng_error(NG_ERR_INVALID_ARG, "whiten: dimension %d (1..100000)", d);
    if (chunk < 1 || chunk > (1 << 24)) return ng_error(NG_ERR_INVALID_ARG, "whiten: chunk %d (1..16777216)", chunk);
    w->be = be;
    w->d = d;
    w->chunk = chunk;
    ng_arena_begin(&w->arena, be, "whitening statistics");
    ng_arena_reserve(&w->arena, "mean", d, 1, &w->mean);
    ng_arena_reserve(&w->arena, "M", d, d, &w->M);
    ng_arena_reserve(&w->arena, "E", d, d, &w->E);
    ng_arena_reserve(&w->arena, "lambda", d, 1, &w->lambda);
    ng_arena_reserve(&w->arena, "s", d, 2, &w->s);
    ng_arena_reserve(&w->arena, "UT", d, d, &w->UT);
    ng_arena_reserve(&w->arena, "uc", d, 1, &w->uc);
    ng_arena_reserve(&w->arena, "xc", d, chunk, &w->xc);
    ng_arena_reserve(&w->arena, "ones", chunk, 1, &w->ones);
    ng_arena_reserve(&w->arena, "mk", d, 1, &w->mk);
    ng_arena_reserve(&w->arena, "delta", d, 1, &w->delta);
    ng_arena_reserve(&w->arena, "probe", d, 1, &w->probe);
    dd[0] = d;
    dd[1] = d;
    ng_arena_reserve_nd(&w->arena, "Ed", NG_F64, 2, dd, &w->Ed);
    ng_arena_reserve_nd(&w->arena, "wd", NG_F64, 1, dd, &w->wd);
    s = ng_arena_commit(&w->arena);
    if (s == NG_OK) s = ng_fill(be, (size_t)chunk, 1.0f, w->ones.data);
    if (s == NG_OK) {
        w->host = (float *)malloc(2 * (size_t)d * sizeof(float));
        if (!w->host) s = ng_error(NG_ERR_OOM, "whiten: no host memory for %d eigenvalues", d);
    }
    if (s == NG_OK) {
        /* the probe of the eigenvectors' sign convention: fixed entries in [0.5, 1.5), all positive
         * and unequal, so no eigenvector is orthogonal to it but by accident */
        int i;
        for (i = 0; i < d; i++) w->host[i] = 0.5f + (float)((i * 0.6180339887498949) - floor(i * 0.6180339887498949));
        s = ng_set(be, w->probe.data, w->host, (size_t)d * sizeof(float));
    }
    if (s != NG_OK) ng_whiten_free(w);
    return s;
}

void ng_whiten_free(ng_whiten *w) {
    if (!w) return;
    ng_arena_free(&w->arena);
    free(w->host);
    memset(w, 0, sizeof *w);
}

void ng_whiten_reset(ng_whiten *w) { w->n = 0.0; }

static ng_status copy_matrix(ng_backend *be, int rows, int cols, const float *x, int ldx, float *y, int ldy) {
    ng_op_args o = {.op = NG_OP_ACT_FORWARD};
    o.act_forward.rows = rows;
    o.act_forward.cols = cols;
    o.act_forward.act = NG_ACT_LINEAR;
    o.act_forward.z = x;
    o.act_forward.ldz = ldx;
    o.act_forward.a = y;
    o.act_forward.lda = ldy;
    return ng_run_op(be, &o);
}

/* One piece of nb <= chunk samples: centre it on its own mean mk, add its scatter, merge means. */
static ng_status add_piece(ng_whiten *w, const float *X, int ldx, int nb, int trans) {
    ng_backend *be = w->be;
    int d = w->d;
    double na = w->n, nt = na + nb;
    float beta = na > 0.0 ? 1.0f : 0.0f;
    if (!trans) {
        NG_TRY(ng_sum_cols(be, d, nb, 1.0f / (float)nb, X, ldx, 0.0f, w->mk.data));
        NG_TRY(copy_matrix(be, d, nb, X, ldx, w->xc.data, d));
        NG_TRY(ng_gemm(be, 0, 0, d, nb, 1, -1.0f, w->mk.data, d, w->ones.data, 1, 1.0f, w->xc.data, d));
        NG_TRY(ng_syrk(be, 0, d, nb, 1.0f, w->xc.data, d, beta, w->M.data, d));
    } else {
        NG_TRY(ng_sum_rows(be, nb, d, 1.0f / (float)nb, X, ldx, 0.0f, w->mk.data));
        NG_TRY(copy_matrix(be, nb, d, X, ldx, w->xc.data, nb));
        NG_TRY(ng_gemm(be, 0, 0, nb, d, 1, -1.0f, w->ones.data, nb, w->mk.data, 1, 1.0f, w->xc.data, nb));
        NG_TRY(ng_syrk(be, 1, d, nb, 1.0f, w->xc.data, nb, beta, w->M.data, d));
    }
    if (na == 0.0) {
        NG_TRY(ng_copy(be, w->mean.data, w->mk.data, (size_t)d * sizeof(float)));
    } else {
        /* Chan et al.: M += na nb / (na + nb) delta delta^T, mean += nb / (na + nb) delta */
        NG_TRY(ng_copy(be, w->delta.data, w->mk.data, (size_t)d * sizeof(float)));
        NG_TRY(ng_axpby(be, (size_t)d, -1.0f, w->mean.data, 1.0f, w->delta.data));
        NG_TRY(ng_syrk(be, 0, d, 1, (float)(na * nb / nt), w->delta.data, d, 1.0f, w->M.data, d));
        NG_TRY(ng_axpby(be, (size_t)d, (float)(nb / nt), w->delta.data, 1.0f, w->mean.data));
    }
    w->n = nt;
    return NG_OK;
}

ng_status ng_whiten_add(ng_whiten *w, const float *X, int ldx, int n, int trans) {
    int i0;
    if (!w || !w->be) return ng_error(NG_ERR_INVALID_ARG, "whiten add: not initialised");
    if (!X || n < 1) return ng_error(NG_ERR_INVALID_ARG, "whiten add: no samples (%d)", n);
    if (trans != 0 && trans != 1) return ng_error(NG_ERR_INVALID_ARG, "whiten add: trans %d (0: X is (d, n), 1: X is (n, d))", trans);
    if (!trans && ldx < w->d) return ng_error(NG_ERR_INVALID_ARG, "whiten add: ld %d < dimension %d", ldx, w->d);
    if (trans && ldx < n) return ng_error(NG_ERR_INVALID_ARG, "whiten add: samples in rows: ld %d < %d samples", ldx, n);
    for (i0 = 0; i0 < n; i0 += w->chunk) {
        int nb = n - i0 < w->chunk ? n - i0 : w->chunk;
        const float *Xp = trans ? X + i0 : X + (size_t)i0 * (size_t)ldx;
        NG_TRY(add_piece(w, Xp, ldx, nb, trans));
    }
    return NG_OK;
}

static ng_status col_scale(ng_backend *be, int d, const float *x, const float *v, float *out, int ldo) {
    ng_op_args o = {.op = NG_OP_OUTER_SCALE};
    o.outer_scale.rows = d;
    o.outer_scale.cols = d;
    o.outer_scale.mode = NG_OSCALE_MUL;
    o.outer_scale.x = x;
    o.outer_scale.ldx = d;
    o.outer_scale.v = v;
    o.outer_scale.floor = 1.0f;
    o.outer_scale.power = 1.0f;
    o.outer_scale.out = out;
    o.outer_scale.ldo = ldo;
    return ng_run_op(be, &o);
}

/* E = Sigma = M / n (lower triangle) */
static ng_status load_sigma(ng_whiten *w) {
    size_t dd = (size_t)w->d * (size_t)w->d;
    NG_TRY(ng_copy(w->be, w->E.data, w->M.data, dd * sizeof(float)));
    return ng_scal(w->be, dd, (float)(1.0 / w->n), w->E.data);
}

/* The checks, eps, and Sigma into E: everything before the eigendecomposition. */
static ng_status compute_begin(ng_whiten *w, float eps) {
    float nm, nc;
    if (!w || !w->be) return ng_error(NG_ERR_INVALID_ARG, "whiten compute: not initialised");
    if (!(eps > 0.0f) || !isfinite(eps)) return ng_error(NG_ERR_INVALID_ARG, "whiten compute: eps %g must be positive and finite", (double)eps);
    if (w->n < 1.0) return ng_error(NG_ERR_INVALID_ARG, "whiten compute: no samples added");
    w->eps = eps;
    /* LAPACK refuses NaN input as an invalid argument: name the real culprit first */
    NG_TRY(ng_nrm2(w->be, (size_t)w->d, w->mean.data, &nc));
    NG_TRY(ng_nrm2(w->be, (size_t)w->d * (size_t)w->d, w->M.data, &nm));
    if (!isfinite(nc) || !isfinite(nm))
        return ng_error(NG_ERR_NUMERIC, "whiten: the mean or covariance of the %.0f samples is not finite (NaN or Inf in the samples)", w->n);
    return load_sigma(w);
}

/* After the float32 eigendecomposition of E that reported info: the float64 retry when it failed,
 * then s, U^T and U c. */
static ng_status compute_end(ng_whiten *w, int info) {
    ng_backend *be = w->be;
    int d = w->d, i;
    if (info) {
        size_t dd = (size_t)d * (size_t)d;
        w->retries++;
        NG_TRY(load_sigma(w));
        NG_TRY(ng_to_double(be, dd, w->E.data, w->Ed.data_d));
        NG_TRY(ng_syevd_d(be, d, w->Ed.data_d, d, w->wd.data_d, &info));
        if (info)
            return ng_error(NG_ERR_NUMERIC, "whiten: the eigendecomposition of the %d x %d covariance failed in float32 and float64 (info %d; NaN in the samples?)", d, d, info);
        NG_TRY(ng_to_float(be, dd, w->Ed.data_d, w->E.data));
        NG_TRY(ng_to_float(be, (size_t)d, w->wd.data_d, w->lambda.data));
    }
    {
        /* the sign of each eigenvector is arbitrary (LAPACK's depends on rounding): make its dot
         * product with the fixed probe positive, so that statistics equal up to rounding (another
         * backend, another number of ranks) give the same U, not U with some rows negated */
        NG_TRY(ng_gemv(be, 1, d, d, 1.0f, w->E.data, d, w->probe.data, 0.0f, w->delta.data));
        NG_TRY(ng_get(be, w->host, w->delta.data, (size_t)d * sizeof(float)));
        for (i = 0; i < d; i++) w->host[i] = w->host[i] < 0.0f ? -1.0f : 1.0f;
        NG_TRY(ng_set(be, w->mk.data, w->host, (size_t)d * sizeof(float)));
        NG_TRY(col_scale(be, d, w->E.data, w->mk.data, w->UT.data, d));
        NG_TRY(ng_copy(be, w->E.data, w->UT.data, (size_t)d * (size_t)d * sizeof(float)));
    }
    NG_TRY(ng_get(be, w->host, w->lambda.data, (size_t)d * sizeof(float)));
    for (i = 0; i < d; i++) {
        double l = w->host[i];
        if (!isfinite(l)) return ng_error(NG_ERR_NUMERIC, "whiten: eigenvalue %d of the covariance is %g (NaN or Inf in the samples)", i, l);
        l = (l > 0.0 ? l : 0.0) + (double)w->eps;
        w->host[i] = (float)(1.0 / sqrt(l));
        w->host[d + i] = (float)sqrt(l);
    }
    NG_TRY(ng_set(be, w->s.data, w->host, (size_t)d * sizeof(float)));
    NG_TRY(ng_set(be, w->s.data + w->s.ld, w->host + d, (size_t)d * sizeof(float)));
    /* U^T = E diag(s): column j of U^T is row j of U (eq. 7) */
    NG_TRY(col_scale(be, d, w->E.data, w->s.data, w->UT.data, d));
    return ng_gemv(be, 1, d, d, 1.0f, w->UT.data, d, w->mean.data, 0.0f, w->uc.data);
}

ng_status ng_whiten_compute(ng_whiten *w, float eps) { return ng_whiten_compute_batch(&w, 1, eps); }

ng_status ng_whiten_compute_batch(ng_whiten *const *ws, int count, float eps) {
    ng_eig_problem p[NG_EIG_BATCH_MAX];
    int i, j;
    if (!ws || count < 1 || count > NG_EIG_BATCH_MAX)
        return ng_error(NG_ERR_INVALID_ARG, "whiten compute: %d whiteners (1..%d)", count, NG_EIG_BATCH_MAX);
    for (i = 0; i < count; i++) {
        if (!ws[i] || !ws[i]->be) return ng_error(NG_ERR_INVALID_ARG, "whiten compute: whitener %d is not initialised", i);
        if (ws[i]->be != ws[0]->be)
            return ng_error(NG_ERR_INVALID_ARG, "whiten compute: whiteners 0 and %d live on different backends (one batch per backend)", i);
        for (j = 0; j < i; j++)
            if (ws[j] == ws[i]) return ng_error(NG_ERR_INVALID_ARG, "whiten compute: whitener %d is listed twice (%d and %d)", i, j, i);
    }
    for (i = 0; i < count; i++) {
        NG_TRY(compute_begin(ws[i], eps));
        p[i].n = ws[i]->d;
        p[i].lda = ws[i]->d;
        p[i].A = ws[i]->E.data;
        p[i].w = ws[i]->lambda.data;
        p[i].info = 0;
    }
    /* Algorithm 1 line 9 for every whitener at once: one batched call */
    NG_TRY(ng_syevd_batched(ws[0]->be, NG_F32, count, p));
    for (i = 0; i < count; i++) NG_TRY(compute_end(ws[i], p[i].info));
    return NG_OK;
}

ng_status ng_whiten_uinv(ng_whiten *w, float *out, int ldo) {
    if (!w || !w->be || !out || ldo < w->d) return ng_error(NG_ERR_INVALID_ARG, "whiten U^-1: bad output");
    return col_scale(w->be, w->d, w->E.data, w->s.data + w->s.ld, out, ldo);
}

ng_status ng_whiten_apply(ng_whiten *w, const float *X, int ldx, int n, float *Y, int ldy) {
    int d;
    if (!w || !w->be) return ng_error(NG_ERR_INVALID_ARG, "whiten apply: not initialised");
    d = w->d;
    if (n < 1 || n > w->chunk) return ng_error(NG_ERR_INVALID_ARG, "whiten apply: %d samples (1..chunk %d)", n, w->chunk);
    if (!X || !Y || ldx < d || ldy < d) return ng_error(NG_ERR_INVALID_ARG, "whiten apply: bad X or Y (ld must be >= %d)", d);
    NG_TRY(ng_gemm(w->be, 1, 0, d, n, d, 1.0f, w->UT.data, d, X, ldx, 0.0f, Y, ldy));
    return ng_gemm(w->be, 0, 0, d, n, 1, -1.0f, w->uc.data, d, w->ones.data, 1, 1.0f, Y, ldy);
}

/* ---- several ranks -------------------------------------------------------------------------- */

ng_status ng_whiten_allreduce(ng_whiten *w, ng_comm *comm) {
    ng_backend *be;
    double n, nt;
    size_t d, dd;
    if (!w || !w->be) return ng_error(NG_ERR_INVALID_ARG, "whiten all-reduce: not initialised");
    if (!comm || comm->world == 1) return NG_OK;
    be = w->be;
    d = (size_t)w->d;
    dd = d * d;
    n = w->n;
    nt = n;
    NG_TRY(ng_comm_allreduce_host(comm, &nt, 1, "the whitening sample counts"));
    if (nt < 1.0) return ng_error(NG_ERR_INVALID_ARG, "whiten all-reduce: no rank added a sample");
    /* c = sum_r (n_r / n) c_r  (into mk) */
    if (n > 0.0) {
        NG_TRY(ng_copy(be, w->mk.data, w->mean.data, d * sizeof(float)));
        NG_TRY(ng_scal(be, d, (float)(n / nt), w->mk.data));
    } else {
        NG_TRY(ng_fill(be, d, 0.0f, w->mk.data));
    }
    NG_TRY(ng_comm_allreduce(comm, be, NG_F32, w->mk.data, d, "the whitening means"));
    /* M_r += n_r (c_r - c)(c_r - c)^T, then M = sum_r M_r */
    if (n > 0.0) {
        NG_TRY(ng_copy(be, w->delta.data, w->mean.data, d * sizeof(float)));
        NG_TRY(ng_axpby(be, d, -1.0f, w->mk.data, 1.0f, w->delta.data));
        NG_TRY(ng_syrk(be, 0, w->d, 1, (float)n, w->delta.data, w->d, 1.0f, w->M.data, w->d));
    } else {
        NG_TRY(ng_fill(be, dd, 0.0f, w->M.data));
    }
    NG_TRY(ng_comm_allreduce(comm, be, NG_F32, w->M.data, dd, "the whitening scatter matrices"));
    NG_TRY(ng_copy(be, w->mean.data, w->mk.data, d * sizeof(float)));
    w->n = nt;
    return NG_OK;
}

void ng_whiten_owners(const int *d, int k, int world, int *owner) {
    double load[256] = {0};
    int i, j, r;
    char done[256] = {0};
    if (world > 256) world = 256;
    for (i = 0; i < k; i++) owner[i] = 0;
    for (i = 0; i < k && i < 256; i++) {
        int best = -1;
        double bc = -1.0;
        for (j = 0; j < k && j < 256; j++) {
            double c = (double)d[j] * (double)d[j] * (double)d[j];
            if (!done[j] && c > bc) bc = c, best = j;
        }
        done[best] = 1;
        for (r = 1, owner[best] = 0; r < world; r++)
            if (load[r] < load[owner[best]]) owner[best] = r;
        load[owner[best]] += bc;
    }
}

ng_status ng_whiten_compute_shared(ng_whiten *const *w, int k, float eps, ng_comm *comm) {
    int dims[256] = {0}, owner[256] = {0}, i;
    double fail;
    ng_status s = NG_OK;
    if (k < 0 || k > 256) return ng_error(NG_ERR_INVALID_ARG, "whiten compute: %d statistics (0..256)", k);
    if (k == 0) return NG_OK;
    if (!comm || comm->world == 1) return ng_whiten_compute_batch(w, k, eps); /* one batched call */
    for (i = 0; i < k; i++) dims[i] = w[i]->d;
    ng_whiten_owners(dims, k, comm->world, owner);
    {
        /* this rank's layers in one batched call */
        ng_whiten *mine[256];
        int nm = 0;
        for (i = 0; i < k; i++) {
            w[i]->eps = eps;
            if (owner[i] == comm->rank) mine[nm++] = w[i];
        }
        if (nm) s = ng_whiten_compute_batch(mine, nm, eps);
    }
    {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", s == NG_OK ? "" : ng_last_error());
        fail = s == NG_OK ? 0.0 : 1.0;
        NG_TRY(ng_comm_allreduce_host(comm, &fail, 1, "the whitening status"));
        if (s != NG_OK) return ng_error(s, "%s", msg);
        if (fail > 0.0) return ng_error(NG_ERR_NUMERIC, "whiten: an eigendecomposition failed on %g other rank(s) (see their messages)", fail);
    }
    for (i = 0; i < k; i++) {
        ng_whiten *x = w[i];
        size_t d = (size_t)x->d;
        NG_TRY(ng_comm_bcast(comm, x->be, NG_F32, x->E.data, d * d, owner[i], "the whitening eigenvectors"));
        NG_TRY(ng_comm_bcast(comm, x->be, NG_F32, x->lambda.data, d, owner[i], "the whitening eigenvalues"));
        NG_TRY(ng_comm_bcast(comm, x->be, NG_F32, x->s.data, d, owner[i], "the whitening scales"));
        NG_TRY(ng_comm_bcast(comm, x->be, NG_F32, x->s.data + x->s.ld, d, owner[i], "the whitening scales"));
        NG_TRY(ng_comm_bcast(comm, x->be, NG_F32, x->UT.data, d * d, owner[i], "the whitening matrices"));
        NG_TRY(ng_comm_bcast(comm, x->be, NG_F32, x->uc.data, d, owner[i], "the whitening matrices"));
    }
    return NG_OK;
}
