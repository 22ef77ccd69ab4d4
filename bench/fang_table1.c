/* fang_table1.c: FANG Table 1 (Grosse & Salakhutdinov 2015, sections 4.1 and 6.1). How well each
 * approximation G_q of the exact Fisher matrix G of a small MNIST RBM matches it, measured by
 *   KL(p || q) = 0.5 [tr(G_q^-1 G) - D + log det G_q - log det G],  p = N(0, G), q = N(0, G_q),
 * each G_q being the KL-optimal (maximum-likelihood) member of its family fitted to the exact G.
 * The RBM has 196 visible units (MNIST downsampled to 14x14) and H hidden units, trained by PCD with
 * centering. G (D x D, D = 196 + H + 196 H, statistic order of natgrad/fisher.h) is exact: the 2^H
 * hidden states are enumerated by ng_rbm_fisher_exact_backend (2^H D^2 flops on the backend).
 * H = 20 is the paper's size (D = 4136, 1.8e13 flops: a GPU job); the default H = 16 takes minutes
 * on a 2-core CPU.
 * After G everything is float64: O(D^2) host loops, and the backend's potrf_d / potri_d / syevd_d
 * for factorisations (host matrices are copied to the backend for them). DAG-structured G_q are
 * evaluated in precision form (log det G_q = log det of the unary block + sum log sigma2), with a
 * dense cross-check through ng_fang_gfac_dense. Writes one CSV row per approximation, prints a
 * markdown report on stdout (progress on stderr), and exits 1 when a sanity check fails. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_args.h"
#include "natgrad/data.h"
#include "natgrad/eval.h"
#include "natgrad/fisher.h"
#include "natgrad/log.h"
#include "natgrad/rbm.h"
#include "natgrad/rng.h"
#include "ng_math.h" /* ng_fang_regress_pair: FANG's regression body, cross-checked below */

#define now ng_time_s

static int g_failed; /* sanity checks that failed */

static void check(int ok, const char *fmt, double value, double limit) {
    fprintf(stderr, "%s check: ", ok ? "   ok" : "FAILED");
    fprintf(stderr, fmt, value, limit);
    fprintf(stderr, "\n");
    if (!ok) g_failed++;
}

static int die(const char *what) {
    fprintf(stderr, "fang_table1: %s: %s\n", what, ng_last_error());
    return 1;
}

/* ---- float64 linear algebra on the backend ------------------------------------------------- */

/* log det of the SPD (n, n) matrix A (column-major, leading dimension lda) by Cholesky on the
 * backend; inv (n, n) receives A^-1 with both triangles when non-NULL. NG_ERR_NUMERIC naming
 * `what` when A is not numerically positive definite. */
static ng_status spd_logdet(ng_backend *be, const double *A, int n, int lda, double *logdet,
                            double *inv, const char *what) {
    size_t bytes = (size_t)n * n * sizeof(double);
    double *h = inv ? inv : (double *)malloc(bytes), *d = NULL, ld = 0.0;
    int c, r, info = 0;
    ng_status s;
    if (!h) return ng_error(NG_ERR_OOM, "%s: out of host memory (n = %d)", what, n);
    for (c = 0; c < n; c++) memcpy(h + (size_t)c * n, A + (size_t)c * lda, (size_t)n * sizeof(double));
    s = ng_alloc(be, bytes, (void **)&d);
    if (s == NG_OK) s = ng_set(be, d, h, bytes);
    if (s == NG_OK) s = ng_potrf_d(be, n, d, n, &info);
    if (s == NG_OK && info != 0)
        s = ng_error(NG_ERR_NUMERIC, "%s: Cholesky failed at leading minor %d of %d", what, info, n);
    if (s == NG_OK) s = ng_get(be, h, d, bytes);
    for (c = 0; s == NG_OK && c < n; c++) ld += 2.0 * log(h[c + (size_t)c * n]);
    if (s == NG_OK && inv) {
        s = ng_potri_d(be, n, d, n, &info);
        if (s == NG_OK && info != 0)
            s = ng_error(NG_ERR_NUMERIC, "%s: inverse failed (info %d)", what, info);
        if (s == NG_OK) s = ng_get(be, h, d, bytes);
        for (c = 0; s == NG_OK && c < n; c++)
            for (r = c + 1; r < n; r++) h[c + (size_t)r * n] = h[r + (size_t)c * n];
    }
    ng_free(be, d);
    if (!inv) free(h);
    *logdet = ld;
    return s;
}

/* Eigenvalues (ascending) of the symmetric (n, n) matrix A by the backend's syevd_d. */
static ng_status sym_eigenvalues(ng_backend *be, const double *A, int n, double *w) {
    size_t bytes = (size_t)n * n * sizeof(double);
    double *d = NULL, *dw = NULL;
    int info = 0;
    ng_status s = ng_alloc(be, bytes, (void **)&d);
    if (s == NG_OK) s = ng_alloc(be, (size_t)n * sizeof(double), (void **)&dw);
    if (s == NG_OK) s = ng_set(be, d, A, bytes);
    if (s == NG_OK) s = ng_syevd_d(be, n, d, n, dw, &info);
    if (s == NG_OK && info != 0) s = ng_error(NG_ERR_NUMERIC, "eigenvalues of G: syevd failed (info %d)", info);
    if (s == NG_OK) s = ng_get(be, w, dw, (size_t)n * sizeof(double));
    ng_free(be, d);
    ng_free(be, dw);
    return s;
}

/* tr(Ainv B) for symmetric Ainv (n, n, both triangles) and B (n, n, leading dimension ldb) */
static double trace_prod(const double *Ainv, const double *B, int n, int ldb) {
    double t = 0.0;
    int c, r;
    for (c = 0; c < n; c++)
        for (r = 0; r < n; r++) t += Ainv[r + (size_t)c * n] * B[r + (size_t)c * ldb];
    return t;
}

/* sub = G[idx, idx] (m, m) */
static void gather(const double *G, int D, const int *idx, int m, double *sub) {
    int c, r;
    for (c = 0; c < m; c++)
        for (r = 0; r < m; r++) sub[r + (size_t)c * m] = G[idx[r] + (size_t)idx[c] * D];
}

/* ---- the approximations ------------------------------------------------------------------- */

/* rows of the table, in the paper's order after the control */
enum { R_EXACT, R_SPHERICAL, R_DIAGONAL, R_BLOCK, R_RANK50, R_RANK200, R_RANDOM, R_CENTERING, R_FANG, R_COUNT };
static const char *row_names[R_COUNT] = {"exact (q = G)", "spherical", "diagonal", "block diagonal", "rank 50",
                                         "rank 200", "random connectivity", "centering", "FANG"};
/* FANG Table 1 (196 x 20); the control is not in the paper */
static const double paper_kl[R_COUNT] = {NAN, 6469.8, 2290.4, 2006.9, 4954.3, 3623.5, 2243.3, 801.9, 548.1};
static const double paper_np[R_COUNT] = {NAN, 1, 4136, 409366, 206801, 827201, 35196, 4352, 35196};

typedef struct row {
    double kl;            /* KL(p || q) */
    double trace_minus_d; /* tr(G_q^-1 G) - D: 0 for a maximum-likelihood fit */
    double logdet_q;      /* log det G_q */
} row;

typedef struct table {
    row r[R_COUNT];
    double logdet_g, logdet_eig, ev_min, ev_max, trace_g;
    double kl_dense_fang, kl_dense_centering; /* the same G_q built densely (ng_fang_gfac_dense) */
    double kl_fang_body, sigma2_rel;          /* FANG fitted by ng_fang_regress_pair (float32) */
    double seconds;
} table;

static void row_set(row *r, double trace, double logdet_q, double logdet_g, int D) {
    r->trace_minus_d = trace - (double)D;
    r->logdet_q = logdet_q;
    r->kl = 0.5 * (r->trace_minus_d + logdet_q - logdet_g);
}

/* free parameters of each family for nv x nh, counted as in FANG Table 1 */
static void param_counts(int nv, int nh, double *np) {
    double n = nv + nh, P = (double)nv * nh, D = n + P;
    np[R_EXACT] = D * (D + 1) / 2;
    np[R_SPHERICAL] = 1;
    np[R_DIAGONAL] = D;
    np[R_BLOCK] = nh * (nv + 1.0) * (nv + 2.0) / 2.0 + nv * (nv + 1.0) / 2.0; /* {h_j, m_.j} x nh, {v} */
    np[R_RANK50] = 50 * D + 1;
    np[R_RANK200] = 200 * D + 1;
    np[R_RANDOM] = n * (n + 1) / 2 + 3 * P; /* unary clique + (2 weights, 1 variance) per pair */
    np[R_CENTERING] = D + n;                /* D variances + the n means used as weights */
    np[R_FANG] = n * (n + 1) / 2 + 3 * P;
}

/* A directed Gaussian graphical model over g: the unary statistics u = (v, h) are either one full
 * clique (covariance G_un, the ML fit) or independent (diagonal G_un); every pairwise statistic
 * m_a, a = nv + nh + k, is m_a = b1[k] g[p1[k]] + b2[k] g[p2[k]] + N(0, s2[k]).
 * Precision form: G_q^-1 = (I - B)^T S^-1 (I - B) on the pairwise rows, so
 *   log det G_q = log det G_q,un + sum_k log s2[k],
 *   tr(G_q^-1 G) = tr(G_q,un^-1 G_un) + sum_k E_p[(m_a - b^T g_pa)^2] / s2[k],
 * the expectation taken under p = N(0, G); no D x D inverse is formed. */
typedef struct dag {
    int full_unary;
    int *p1, *p2;         /* (nv nh) parents (indices into g) of the pairwise statistics */
    double *b1, *b2, *s2; /* (nv nh) weights and conditional variances */
} dag;

/* E_p[(g_a - b1 g_p1 - b2 g_p2)^2] under p = N(0, G) */
static double resid_var(const double *G, int D, int a, int p1, int p2, double b1, double b2) {
    return G[a + (size_t)a * D] - 2.0 * (b1 * G[p1 + (size_t)a * D] + b2 * G[p2 + (size_t)a * D]) +
           b1 * b1 * G[p1 + (size_t)p1 * D] + 2.0 * b1 * b2 * G[p1 + (size_t)p2 * D] +
           b2 * b2 * G[p2 + (size_t)p2 * D];
}

/* ML regression of g_a on (g_p1, g_p2) under G (FANG eq. 11-12) in float64; a (numerically)
 * singular parent block falls back to the better single parent, as ng_fang_regress_pair does. */
static void regress2(const double *G, int D, int a, int p1, int p2, double *b1, double *b2,
                     double *s2) {
    double c11 = G[p1 + (size_t)p1 * D], c22 = G[p2 + (size_t)p2 * D], c12 = G[p1 + (size_t)p2 * D];
    double c1a = G[p1 + (size_t)a * D], c2a = G[p2 + (size_t)a * D], det = c11 * c22 - c12 * c12;
    if (det > 1e-12 * c11 * c22) {
        *b1 = (c22 * c1a - c12 * c2a) / det;
        *b2 = (c11 * c2a - c12 * c1a) / det;
    } else if (c1a * c1a / c11 >= c2a * c2a / c22) {
        *b1 = c1a / c11;
        *b2 = 0.0;
    } else {
        *b1 = 0.0;
        *b2 = c2a / c22;
    }
    *s2 = G[a + (size_t)a * D] - (*b1 * c1a + *b2 * c2a);
}

static ng_status dag_eval(ng_backend *be, const double *G, int nv, int nh, const dag *q,
                          double logdet_g, row *out) {
    int n = nv + nh, D = ng_fisher_dim(nv, nh), k;
    double tr = 0.0, ld = 0.0;
    if (q->full_unary) {
        double *sub = (double *)malloc((size_t)n * n * sizeof(double));
        double *inv = (double *)malloc((size_t)n * n * sizeof(double));
        int *idx = (int *)malloc((size_t)n * sizeof(int));
        ng_status s = NG_ERR_OOM;
        if (sub && inv && idx) {
            for (k = 0; k < n; k++) idx[k] = k;
            gather(G, D, idx, n, sub);
            s = spd_logdet(be, sub, n, n, &ld, inv, "unary block G_un");
            if (s == NG_OK) tr = trace_prod(inv, sub, n, n);
        } else {
            ng_error(s, "unary block: out of host memory");
        }
        free(sub), free(inv), free(idx);
        if (s != NG_OK) return s;
    } else {
        for (k = 0; k < n; k++) ld += log(G[k + (size_t)k * D]);
        tr = (double)n;
    }
    for (k = 0; k < nv * nh; k++) {
        int a = n + k;
        if (!(q->s2[k] > 0.0))
            return ng_error(NG_ERR_NUMERIC, "pairwise statistic %d: conditional variance %g <= 0", a, q->s2[k]);
        ld += log(q->s2[k]);
        tr += resid_var(G, D, a, q->p1[k], q->p2[k], q->b1[k], q->b2[k]) / q->s2[k];
    }
    row_set(out, tr, ld, logdet_g, D);
    return NG_OK;
}

/* KL of a dense G_q against G: Cholesky of G_q for its log det, its inverse for the trace. */
static ng_status dense_kl(ng_backend *be, const double *G, const double *Gq, int D, double logdet_g,
                          double *kl, const char *what) {
    double *inv = (double *)malloc((size_t)D * D * sizeof(double)), ld = 0.0;
    ng_status s;
    if (!inv) return ng_error(NG_ERR_OOM, "%s: out of host memory", what);
    s = spd_logdet(be, Gq, D, D, &ld, inv, what);
    if (s == NG_OK) *kl = 0.5 * (trace_prod(inv, G, D, D) - (double)D + ld - logdet_g);
    free(inv);
    return s;
}

/* Every row of the table for the exact G (D x D) with means `mean` (D). seed fixes the random
 * connectivity's parents. */
static ng_status kl_table(ng_backend *be, const double *G, const double *mean, int nv, int nh,
                          uint64_t seed, table *t) {
    int n = nv + nh, P = nv * nh, D = ng_fisher_dim(nv, nh), i, j, k, b;
    size_t DD = (size_t)D * D;
    double *work = (double *)malloc(DD * sizeof(double)), *ev = (double *)malloc((size_t)D * sizeof(double));
    double *sub = (double *)malloc((size_t)(nv + 1) * (nv + 1) * sizeof(double));
    double *inv = (double *)malloc((size_t)(nv + 1) * (nv + 1) * sizeof(double));
    double *sun = (double *)malloc((size_t)n * n * sizeof(double));
    double *bv = (double *)malloc((size_t)P * sizeof(double)), *bh = (double *)malloc((size_t)P * sizeof(double));
    int *idx = (int *)malloc((size_t)(nv + 1) * sizeof(int));
    uint64_t key = ng_rng_stream_key(seed, NG_RNG_TEST); /* the random parents: a fixed fixture */
    double t0 = now(), lg, ld, tr;
    dag q;
    ng_status s = NG_OK;
    memset(t, 0, sizeof *t);
    q.p1 = (int *)malloc((size_t)P * sizeof(int));
    q.p2 = (int *)malloc((size_t)P * sizeof(int));
    q.b1 = (double *)malloc((size_t)P * sizeof(double));
    q.b2 = (double *)malloc((size_t)P * sizeof(double));
    q.s2 = (double *)malloc((size_t)P * sizeof(double));
    if (!work || !ev || !sub || !inv || !sun || !bv || !bh || !idx || !q.p1 || !q.p2 || !q.b1 || !q.b2 || !q.s2) {
        s = ng_error(NG_ERR_OOM, "KL table: out of host memory (D = %d)", D);
        goto done;
    }
#define TRY(x)                  \
    do {                        \
        if ((s = (x)) != NG_OK) \
            goto done;          \
    } while (0)
    /* control: q = G (the full-covariance family): tr(G^-1 G) through the computed inverse */
    TRY(spd_logdet(be, G, D, D, &t->logdet_g, work, "exact G"));
    lg = t->logdet_g;
    row_set(&t->r[R_EXACT], trace_prod(work, G, D, D), lg, lg, D);
    TRY(sym_eigenvalues(be, G, D, ev));
    for (k = 0; k < D; k++) t->logdet_eig += log(ev[k]), t->trace_g += G[k + (size_t)k * D];
    t->ev_min = ev[0];
    t->ev_max = ev[D - 1];
    /* spherical: c I with c = tr(G) / D */
    row_set(&t->r[R_SPHERICAL], t->trace_g / (t->trace_g / D), D * log(t->trace_g / D), lg, D);
    /* diagonal: diag(G) */
    for (ld = 0.0, tr = 0.0, k = 0; k < D; k++) ld += log(G[k + (size_t)k * D]), tr += G[k + (size_t)k * D] / G[k + (size_t)k * D];
    row_set(&t->r[R_DIAGONAL], tr, ld, lg, D);
    /* block diagonal: {h_j, m_1j .. m_nv,j} for each j, then {v_1 .. v_nv} */
    for (ld = 0.0, tr = 0.0, b = 0; b <= nh; b++) {
        int m = 0;
        double l;
        if (b < nh) {
            idx[m++] = nv + b;
            for (i = 0; i < nv; i++) idx[m++] = ng_fisher_index_w(nv, nh, i, b);
        } else {
            for (i = 0; i < nv; i++) idx[m++] = i;
        }
        gather(G, D, idx, m, sub);
        TRY(spd_logdet(be, sub, m, m, &l, inv, "diagonal block of G"));
        ld += l;
        tr += trace_prod(inv, sub, m, m);
    }
    row_set(&t->r[R_BLOCK], tr, ld, lg, D);
    /* rank k + s I: probabilistic PCA's ML fit, the top k eigenpairs and s = mean of the rest */
    for (b = 0; b < 2; b++) {
        int kk = b == 0 ? 50 : 200;
        double top = 0.0, s2;
        kk = kk < D ? kk : D - 1;
        for (ld = 0.0, k = D - kk; k < D; k++) top += ev[k], ld += log(ev[k]);
        s2 = (t->trace_g - top) / (D - kk);
        ld += (D - kk) * log(s2);
        for (tr = kk, k = 0; k < D - kk; k++) tr += ev[k] / s2;
        row_set(&t->r[b == 0 ? R_RANK50 : R_RANK200], tr, ld, lg, D);
    }
    /* random connectivity: FANG's model with two distinct unary parents per m_ij drawn uniformly */
    q.full_unary = 1;
    for (k = 0; k < P; k++) {
        int p1 = (int)(ng_rng_uniform(key, 0, 2 * (uint64_t)k) * (float)n);
        int p2 = (int)(ng_rng_uniform(key, 0, 2 * (uint64_t)k + 1) * (float)(n - 1));
        p1 = p1 < n ? p1 : n - 1;
        p2 = p2 < n - 1 ? p2 : n - 2;
        q.p1[k] = p1;
        q.p2[k] = p2 + (p2 >= p1);
        regress2(G, D, n + k, q.p1[k], q.p2[k], &q.b1[k], &q.b2[k], &q.s2[k]);
    }
    TRY(dag_eval(be, G, nv, nh, &q, lg, &t->r[R_RANDOM]));
    /* the parents (v_i, h_j) of m_ij, k = j + nh i (statistic nv + nh + k) */
    for (i = 0; i < nv; i++)
        for (j = 0; j < nh; j++) q.p1[j + nh * i] = i, q.p2[j + nh * i] = nv + j;
    /* centering (FANG 5.1): independent unary statistics; m_ij - mu_h,j v_i - mu_v,i h_j with the
     * ML (residual) variance under G; its dense G_q as a check of the precision form */
    q.full_unary = 0;
    for (i = 0; i < nv; i++)
        for (j = 0; j < nh; j++) {
            k = j + nh * i;
            q.b1[k] = mean[nv + j];
            q.b2[k] = mean[i];
            q.s2[k] = resid_var(G, D, n + k, i, nv + j, q.b1[k], q.b2[k]);
        }
    TRY(dag_eval(be, G, nv, nh, &q, lg, &t->r[R_CENTERING]));
    memset(sun, 0, (size_t)n * n * sizeof(double));
    for (k = 0; k < n; k++) sun[k + (size_t)k * n] = G[k + (size_t)k * D];
    ng_fang_gfac_dense(nv, nh, sun, q.b1, q.b2, q.s2, work);
    TRY(dense_kl(be, G, work, D, lg, &t->kl_dense_centering, "dense centering G_q"));
    /* FANG: full unary clique, m_ij regressed on (v_i, h_j), ML weights and variance (eq. 11-12) */
    q.full_unary = 1;
    for (k = 0; k < P; k++) regress2(G, D, n + k, q.p1[k], q.p2[k], &q.b1[k], &q.b2[k], &q.s2[k]);
    TRY(dag_eval(be, G, nv, nh, &q, lg, &t->r[R_FANG]));
    for (j = 0; j < n; j++)
        for (i = 0; i < n; i++) sun[i + (size_t)j * n] = G[i + (size_t)j * D];
    ng_fang_gfac_dense(nv, nh, sun, q.b1, q.b2, q.s2, work);
    TRY(dense_kl(be, G, work, D, lg, &t->kl_dense_fang, "dense G_fac"));
    /* FANG's training-path regression body (float32 moments, as Algorithm 1 feeds it) given the
     * exact moments of the binary statistics (v^2 = v, h^2 = h) and lambda = 0 */
    for (k = 0; k < P; k++) bv[k] = q.s2[k];
    for (i = 0; i < nv; i++)
        for (j = 0; j < nh; j++) {
            float mm, fbv, fbh, fs2;
            k = j + nh * i;
            mm = (float)mean[n + k];
            ng_fang_regress_pair(mm, mm, mm, mm, (float)mean[i], (float)mean[nv + j], (float)mean[i],
                                 (float)mean[nv + j], 0.0f, &fbv, &fbh, &fs2);
            t->sigma2_rel = fmax(t->sigma2_rel, fabs((double)fs2 - bv[k]) / bv[k]);
            q.b1[k] = fbv, q.b2[k] = fbh, q.s2[k] = fs2;
        }
    {
        row body;
        TRY(dag_eval(be, G, nv, nh, &q, lg, &body));
        t->kl_fang_body = body.kl;
    }
#undef TRY
    t->seconds = now() - t0;
done:
    free(work), free(ev), free(sub), free(inv), free(sun), free(bv), free(bh), free(idx);
    free(q.p1), free(q.p2), free(q.b1), free(q.b2), free(q.s2);
    return s;
}

/* The sanity checks of one table (D statistics); failures are counted in g_failed. */
static void table_checks(const table *t, int D) {
    const row *r = t->r;
    int k;
    check(fabs(r[R_EXACT].kl) <= 1e-6 * D, "KL(q = G) = %.2e, |.| <= %.1e (1e-6 D)", r[R_EXACT].kl, 1e-6 * D);
    for (k = R_SPHERICAL; k < R_COUNT; k++) {
        fprintf(stderr, "%-20s ", row_names[k]);
        check(r[k].kl >= 0.0, "KL = %.4f >= %g", r[k].kl, 0.0);
        fprintf(stderr, "%-20s ", row_names[k]);
        check(fabs(r[k].trace_minus_d) <= 1e-6 * D, "ML fit: |tr(G_q^-1 G) - D| = %.2e <= %.1e",
              fabs(r[k].trace_minus_d), 1e-6 * D);
    }
    check(r[R_FANG].kl < r[R_DIAGONAL].kl, "KL(FANG) = %.2f < KL(diagonal) = %.2f", r[R_FANG].kl, r[R_DIAGONAL].kl);
    check(fabs(t->kl_dense_fang - r[R_FANG].kl) <= 1e-6 * fmax(1.0, r[R_FANG].kl),
          "FANG: |KL dense G_fac - KL precision form| = %.2e <= %.1e", fabs(t->kl_dense_fang - r[R_FANG].kl),
          1e-6 * fmax(1.0, r[R_FANG].kl));
    check(fabs(t->kl_dense_centering - r[R_CENTERING].kl) <= 1e-6 * fmax(1.0, r[R_CENTERING].kl),
          "centering: |KL dense G_q - KL precision form| = %.2e <= %.1e",
          fabs(t->kl_dense_centering - r[R_CENTERING].kl), 1e-6 * fmax(1.0, r[R_CENTERING].kl));
    check(t->kl_fang_body >= r[R_FANG].kl * (1 - 1e-9) && t->kl_fang_body <= r[R_FANG].kl * (1 + 1e-3),
          "ng_fang_regress_pair's fit: KL %.4f, within 1e-3 above the float64 ML fit's %.4f", t->kl_fang_body,
          r[R_FANG].kl);
    check(fabs(t->logdet_eig - t->logdet_g) <= 1e-6 * fabs(t->logdet_g),
          "log det G: |eigenvalues - Cholesky| = %.2e <= %.1e", fabs(t->logdet_eig - t->logdet_g),
          1e-6 * fabs(t->logdet_g));
}

/* The (v_i, h_j, m_ij) blocks of G follow from the means alone for binary statistics
 * (Var x = E x (1 - E x), Cov(v_i, m_ij) = E m (1 - E v), ...); G and the means are summed
 * separately, so this checks the float32 part of G. Largest difference in correlation scale. */
static double binary_identity_error(const double *G, const double *mean, int nv, int nh) {
    int D = ng_fisher_dim(nv, nh), i, j, k;
    double worst = 0.0;
    for (i = 0; i < nv; i++)
        for (j = 0; j < nh; j++) {
            int a = ng_fisher_index_w(nv, nh, i, j), hj = nv + j;
            double mv = mean[i], mh = mean[hj], mm = mean[a];
            double want[6] = {mv * (1 - mv), mh * (1 - mh), mm * (1 - mm), mm - mv * mh, mm * (1 - mv), mm * (1 - mh)};
            int rr[6] = {i, hj, a, i, i, hj}, cc[6] = {i, hj, a, hj, a, a};
            for (k = 0; k < 6; k++) {
                double got = G[rr[k] + (size_t)cc[k] * D];
                double scale = sqrt(G[rr[k] + (size_t)rr[k] * D] * G[cc[k] + (size_t)cc[k] * D]);
                worst = fmax(worst, fabs(got - want[k]) / scale);
            }
        }
    return worst;
}

/* ---- the RBM ------------------------------------------------------------------------------- */

typedef struct settings {
    int nh, updates, batch, chunk, host_fisher, compare_host;
    float lr;
    uint64_t seed;
    const char *device, *csv, *data_dir;
} settings;

/* MNIST training digits at 14x14, PCD-1 with centering (fixed seed); the exact average
 * log-likelihood of the stochastically binarised digits. */
static int train_rbm(const settings *st, ng_backend *be, ng_rbm *rbm, double *train_ll,
                     double *train_s, int *n_train) {
    ng_dataset full, ds;
    ng_rbm_config cfg;
    ng_rbm_trainer tr;
    float *mean, *bin;
    double t0, log_z;
    int nv, i, k;
    uint64_t key;
    size_t e;
    if (ng_dataset_load_named("mnist", st->data_dir, "train", &full) != NG_OK)
        return die("MNIST (prepare it with: bash data/prepare.sh mnist)");
    if (ng_dataset_downsample2(&full, &ds) != NG_OK) return die("downsample");
    ng_dataset_free(&full);
    nv = ds.dim;
    *n_train = ds.n;
    mean = (float *)calloc((size_t)nv, sizeof(float));
    bin = (float *)malloc((size_t)nv * ds.n * sizeof(float));
    if (!mean || !bin) return fprintf(stderr, "fang_table1: out of memory\n"), 1;
    for (k = 0; k < ds.n; k++)
        for (i = 0; i < nv; i++) mean[i] += ds.x[i + (size_t)k * nv] / (float)ds.n;
    ng_rbm_config_default(&cfg);
    cfg.batch = st->batch;
    cfg.particles = st->batch;
    cfg.optimizer = NG_RBM_OPT_CENTERING;
    cfg.lr = st->lr;
    cfg.seed = st->seed;
    if (ng_rbm_init(be, nv, st->nh, rbm) || ng_rbm_init_params(rbm, cfg.seed, cfg.init_std, mean)) return die("rbm");
    if (ng_rbm_trainer_init(&tr, rbm, &cfg, ds.x, ds.n, NULL)) return die("trainer");
    t0 = now();
    for (k = 0; k < st->updates; k++)
        if (ng_rbm_trainer_step(&tr, NULL)) return die("PCD update");
    ng_synchronize(be);
    *train_s = now() - t0;
    ng_rbm_trainer_free(&tr);
    key = ng_rng_stream_key(st->seed, NG_RNG_EVAL_BINARIZE);
    for (e = 0; e < (size_t)nv * ds.n; e++) bin[e] = ng_rng_uniform(key, 0, e) <= ds.x[e] ? 1.0f : 0.0f;
    if (ng_rbm_log_z_exact(rbm, &log_z) || ng_rbm_mean_log_prob(rbm, bin, ds.n, log_z, train_ll))
        return die("log-likelihood");
    free(mean);
    free(bin);
    ng_dataset_free(&ds);
    return 0;
}

/* ng_rbm_fisher_exact_backend against the float64 host loop on small random RBMs (one chunk, and
 * several chunks): the largest entry difference relative to the largest entry (1e-6: float32
 * products of sums over at most a chunk of states). */
static int check_fisher_paths(ng_backend *be) {
    static const int shapes[2][3] = {{30, 8, 0}, {30, 10, 128}}; /* nv, nh, chunk */
    int t;
    for (t = 0; t < 2; t++) {
        int nv = shapes[t][0], nh = shapes[t][1], D = ng_fisher_dim(nv, nh), k;
        uint64_t key = ng_rng_stream_key((uint64_t)t + 1, NG_RNG_TEST);
        ng_rbm rbm;
        float *W = (float *)malloc((size_t)nv * nh * sizeof(float)), *a = (float *)malloc((size_t)nv * sizeof(float));
        float *b = (float *)malloc((size_t)nh * sizeof(float));
        double *G1 = (double *)malloc((size_t)D * D * sizeof(double)), *G2 = (double *)malloc((size_t)D * D * sizeof(double));
        double *m1 = (double *)malloc((size_t)D * sizeof(double)), *m2 = (double *)malloc((size_t)D * sizeof(double));
        double gmax = 0.0, dmax = 0.0, mdiff = 0.0;
        if (!W || !a || !b || !G1 || !G2 || !m1 || !m2) return fprintf(stderr, "fang_table1: out of memory\n"), 1;
        ng_rng_fill_normal(W, (size_t)nv * nh, 0.0f, 0.7f, key, 0);
        ng_rng_fill_normal(a, (size_t)nv, -1.0f, 2.0f, key, 1);
        ng_rng_fill_normal(b, (size_t)nh, 0.0f, 1.0f, key, 2);
        if (ng_rbm_init(be, nv, nh, &rbm) || ng_rbm_set_params(&rbm, W, a, b)) return die("check rbm");
        if (ng_rbm_fisher_exact(&rbm, m1, G1)) return die("exact Fisher (host)");
        if (ng_rbm_fisher_exact_backend(&rbm, shapes[t][2], m2, G2)) return die("exact Fisher (backend)");
        for (k = 0; k < D * D; k++) {
            gmax = fmax(gmax, fabs(G1[k]));
            dmax = fmax(dmax, fabs(G1[k] - G2[k]));
        }
        for (k = 0; k < D; k++) mdiff = fmax(mdiff, fabs(m1[k] - m2[k]));
        fprintf(stderr, "exact G, backend path vs float64 host loop, %d x %d, chunk %d:\n", nv, nh, shapes[t][2]);
        check(dmax <= 1e-6 * gmax, "max |dG| / max |G| = %.2e <= %.0e", dmax / gmax, 1e-6);
        check(mdiff <= 1e-12, "max |d mean| = %.2e <= %.0e", mdiff, 1e-12);
        ng_rbm_free(&rbm);
        free(W), free(a), free(b), free(G1), free(G2), free(m1), free(m2);
    }
    return 0;
}

static void print_order(const double *kl) {
    int ord[R_COUNT], a, b, m = 0;
    for (a = R_SPHERICAL; a < R_COUNT; a++) ord[m++] = a;
    for (a = 0; a < m; a++)
        for (b = a + 1; b < m; b++)
            if (kl[ord[b]] < kl[ord[a]]) {
                int x = ord[a];
                ord[a] = ord[b];
                ord[b] = x;
            }
    for (a = 0; a < m; a++) printf("%s%s", a ? " < " : "", row_names[ord[a]]);
}

int main(int argc, char **argv) {
    settings st = {16, 5000, 1000, 0, 0, 0, 0.1f, 1, "auto", "bench/results/fang_table1.csv", "data"};
    ng_device dev;
    int dev_index;
    ng_backend *be;
    ng_rbm rbm;
    char note[256];
    table tab, tab_host;
    int nv, nh, D, i, k, n_train = 0;
    double t_start = now(), t0, train_s = 0, fisher_s, host_s = 0, train_ll = 0, np[R_COUNT], np20[R_COUNT];
    double ours[R_COUNT], dG = 0, gmax = 0;
    double *G, *mean, *Gh = NULL;
    ng_status s;
    ng_cpu_blas_reexec(argc, argv);
    {
        const ba_opt opts[] = {
            BA_I("--hidden", &st.nh, 1, 20, "H", "hidden units (20 = the paper's size, a GPU job)"),
            BA_I("--updates", &st.updates, 0, INT_MAX, "N", "PCD updates (centering) before the Fisher matrix"),
            BA_I("--batch", &st.batch, 1, INT_MAX, "M", "mini-batch size"),
            BA_F_GT("--lr", &st.lr, 0, HUGE_VAL, "A", "learning rate"),
            BA_SEED("--seed", &st.seed, "S", "seed"),
            BA_I("--chunk", &st.chunk, 0, INT_MAX, "STATES", "hidden states per backend chunk of the exact Fisher (0: natgrad's default)"),
            BA_SWITCH("--host-fisher", &st.host_fisher, "the exact Fisher by the float64 host loop instead of the backend"),
            BA_SWITCH("--compare-host", &st.compare_host, "also the float64 host loop, compared with the backend's"),
            BA_DEV("--device", &st.device, "backend (cuda:N: that GPU)"),
            BA_S("--csv", &st.csv, "PATH", "CSV file written ('' = none)"),
            BA_S("--data", &st.data_dir, "DIR", "where MNIST is"),
            BA_END};
        const int rc = ba_parse("fang_table1", "FANG Table 1: how well each approximation of the exact Fisher matrix of a "
                                               "small MNIST RBM matches it, by KL divergence (make bench-fang-table1).",
                                opts, argc, argv);
        if (rc != BA_RUN) return rc;
    }
    if (ng_device_parse(st.device, &dev, &dev_index) != NG_OK) return die("--device");
    if (ng_backend_init(dev, dev_index, &be, note, sizeof note) != NG_OK) return die("backend");
    if (note[0]) fprintf(stderr, "note: %s\n", note);
    fprintf(stderr, "backend: %s\n", be->description);

    /* 0. the backend exact-G path against the float64 reference; the paper's counts from ours */
    if (check_fisher_paths(be)) return 1;
    param_counts(196, 20, np20);
    for (k = R_SPHERICAL, i = 0; k < R_COUNT; k++) i += np20[k] != paper_np[k];
    check(i == 0, "parameter counts at 196 x 20 reproduce Table 1's column: %.0f of %.0f differ", i, R_COUNT - 1);

    /* 1. the RBM */
    if (train_rbm(&st, be, &rbm, &train_ll, &train_s, &n_train)) return 1;
    nv = rbm.n_visible;
    nh = rbm.n_hidden;
    D = ng_fisher_dim(nv, nh);
    param_counts(nv, nh, np);
    fprintf(stderr, "trained %d x %d RBM: %d PCD updates in %.1f s, train log-likelihood %.2f nats\n", nv, nh,
            st.updates, train_s, train_ll);

    /* 2. exact G */
    G = (double *)malloc((size_t)D * D * sizeof(double));
    mean = (double *)malloc((size_t)D * sizeof(double));
    if (!G || !mean) return fprintf(stderr, "fang_table1: out of memory (D = %d)\n", D), 1;
    t0 = now();
    s = st.host_fisher ? ng_rbm_fisher_exact(&rbm, mean, G) : ng_rbm_fisher_exact_backend(&rbm, st.chunk, mean, G);
    if (s != NG_OK) return die("exact Fisher");
    fisher_s = now() - t0;
    fprintf(stderr, "exact G (%d x %d, 2^%d hidden states, %s): %.1f s\n", D, D, nh,
            st.host_fisher ? "float64 host loop" : "backend path", fisher_s);
    check(binary_identity_error(G, mean, nv, nh) <= 1e-5,
          "G's (v_i, h_j, m_ij) blocks vs the binary identities of the means: %.2e <= %.0e (correlation scale)",
          binary_identity_error(G, mean, nv, nh), 1e-5);

    /* 3. the approximations and the checks */
    if (kl_table(be, G, mean, nv, nh, st.seed, &tab) != NG_OK) return die("KL table");
    fprintf(stderr, "log det G: Cholesky %.6f, eigenvalues %.6f; eigenvalues %.3e .. %.3e\n", tab.logdet_g,
            tab.logdet_eig, tab.ev_min, tab.ev_max);
    fprintf(stderr, "dense-form KL: FANG %.6f (precision form %.6f), centering %.6f (%.6f)\n", tab.kl_dense_fang,
            tab.r[R_FANG].kl, tab.kl_dense_centering, tab.r[R_CENTERING].kl);
    fprintf(stderr, "FANG fitted by ng_fang_regress_pair: KL %.6f (max relative sigma2 difference %.2e)\n",
            tab.kl_fang_body, tab.sigma2_rel);
    table_checks(&tab, D);
    if (st.compare_host && !st.host_fisher) {
        /* the same table from the float64 host loop's G: what the float32 products cost */
        Gh = (double *)malloc((size_t)D * D * sizeof(double));
        if (!Gh) return fprintf(stderr, "fang_table1: out of memory (D = %d)\n", D), 1;
        t0 = now();
        if (ng_rbm_fisher_exact(&rbm, NULL, Gh) != NG_OK) return die("exact Fisher (host)");
        host_s = now() - t0;
        for (k = 0; k < D * D; k++) gmax = fmax(gmax, fabs(Gh[k])), dG = fmax(dG, fabs(Gh[k] - G[k]));
        if (kl_table(be, Gh, mean, nv, nh, st.seed, &tab_host) != NG_OK) return die("KL table (host G)");
        fprintf(stderr, "host-loop G: %.1f s, max |dG| / max |G| = %.2e\n", host_s, dG / gmax);
        table_checks(&tab_host, D);
    }
    for (k = 0; k < R_COUNT; k++) ours[k] = tab.r[k].kl;

    /* 4. report */
    printf("### %d visible x %d hidden (D = %d)\n\n", nv, nh, D);
    printf("- RBM: %d visible (the %d MNIST training digits of data/mnist, 2x2-averaged to 14x14) x %d hidden; "
           "PCD-1 with the centering trick (FANG 5.1), %d updates, mini-batch = particles = %d, "
           "lr %.3g * 1000 / (1000 + t), seed %llu. Exact average log-likelihood of the stochastically binarised "
           "training digits (exact log Z): %.2f nats.\n",
           nv, n_train, nh, st.updates, st.batch, st.lr, (unsigned long long)st.seed, train_ll);
    printf("- Exact G: all 2^%d hidden states enumerated, %s.\n", nh,
           st.host_fisher ? "float64 host loop (ng_rbm_fisher_exact)"
                          : "ng_rbm_fisher_exact_backend (float32 syrk per chunk of states on the backend, float64 "
                            "sums across chunks and for E_h[Cov(g | h)])");
    printf("- Backend: %s.\n\n", be->description);
    printf("| approximation | KL (ours) | KL / KL(FANG) | # parameters (ours) | KL (paper, 196x20) | KL / KL(FANG) (paper) "
           "| # parameters (paper) | tr(G_q^-1 G) - D |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (k = R_SPHERICAL; k < R_COUNT; k++)
        printf("| %s | %.1f | %.2f | %.0f | %.1f | %.2f | %.0f | %.1e |\n", row_names[k], ours[k], ours[k] / ours[R_FANG],
               np[k], paper_kl[k], paper_kl[k] / paper_kl[R_FANG], paper_np[k], tab.r[k].trace_minus_d);
    printf("| %s (control) | %.1e | | %.0f | | | | %.1e |\n\n", row_names[R_EXACT], ours[R_EXACT], np[R_EXACT],
           tab.r[R_EXACT].trace_minus_d);
    printf("Ordering, best first. Ours: ");
    print_order(ours);
    printf(". Paper: ");
    print_order(paper_kl);
    printf(".\n\n");
    printf("Checks (all computed in this run): KL(FANG) from the dense G_fac of ng_fang_gfac_dense %.4f vs the "
           "precision form %.4f; centering %.4f vs %.4f; FANG fitted by the training path's ng_fang_regress_pair "
           "(float32 inputs) %.4f; log det G %.4f (Cholesky) vs %.4f (eigenvalues, %.3e .. %.3e).\n\n",
           tab.kl_dense_fang, ours[R_FANG], tab.kl_dense_centering, ours[R_CENTERING], tab.kl_fang_body, tab.logdet_g,
           tab.logdet_eig, tab.ev_min, tab.ev_max);
    if (Gh) {
        printf("Same RBM, G from the float64 host loop (%.1f s; max |dG| / max |G| = %.2e against the backend path):\n\n",
               host_s, dG / gmax);
        printf("| approximation | KL, backend G | KL, float64 host G | difference |\n|---|---:|---:|---:|\n");
        for (k = R_SPHERICAL; k < R_COUNT; k++)
            printf("| %s | %.6f | %.6f | %.1e |\n", row_names[k], ours[k], tab_host.r[k].kl, ours[k] - tab_host.r[k].kl);
        printf("\n");
    }
    printf("| stage | seconds |\n|---|---:|\n| PCD training (%d updates) | %.1f |\n| exact G (2^%d states) | %.1f |\n"
           "| fits + KL (eigendecomposition, Cholesky factors, dense checks) | %.1f |\n",
           st.updates, train_s, nh, fisher_s, tab.seconds);
    if (Gh) printf("| comparison with the host loop's G | %.1f |\n", host_s + tab_host.seconds);
    printf("| whole run (including the self-checks) | %.1f |\n\n", now() - t_start);
    if (st.csv[0]) {
        FILE *f = fopen(st.csv, "w");
        if (!f) return fprintf(stderr, "fang_table1: cannot write %s\n", st.csv), 1;
        fprintf(f, "approximation,kl,kl_over_fang,params,paper_kl,paper_kl_over_fang,paper_params,trace_minus_d,"
                   "logdet_q,logdet_g,n_visible,n_hidden,D,updates,seed,train_loglik,fisher_s,total_s\n");
        for (k = 0; k < R_COUNT; k++)
            fprintf(f, "\"%s\",%.6f,%.6f,%.0f,%.1f,%.6f,%.0f,%.6e,%.6f,%.6f,%d,%d,%d,%d,%llu,%.4f,%.2f,%.2f\n",
                    row_names[k], ours[k], ours[k] / ours[R_FANG], np[k], paper_kl[k], paper_kl[k] / paper_kl[R_FANG],
                    paper_np[k], tab.r[k].trace_minus_d, tab.r[k].logdet_q, tab.logdet_g, nv, nh, D, st.updates,
                    (unsigned long long)st.seed, train_ll, fisher_s, now() - t_start);
        fclose(f);
    }
    free(G), free(Gh), free(mean);
    ng_rbm_free(&rbm);
    ng_backend_free(be);
    if (g_failed) {
        fprintf(stderr, "fang_table1: %d sanity check(s) FAILED\n", g_failed);
        printf("**%d sanity check(s) FAILED** (see the log).\n\n", g_failed);
        return 1;
    }
    fprintf(stderr, "fang_table1: all sanity checks passed\n");
    return 0;
}
