/* kfac_fisher.h: the float64 dense computations behind bench/kfac_fisher_figures.c (Figures 2, 3, 5
 * and 6 of Martens & Grosse 2015, K-FAC), shared with tests/test_kfac_fisher.c. Host only, no
 * natgrad types: a tiny tanh network with a softmax output and cross-entropy, written again here in
 * float64 (forward pass and back-propagation of dL/ds), the exact Fisher of a window of its layers
 * (expectation over the data and, exactly, over the model's predictive distribution: the 10 classes
 * enumerated), the Kronecker factors A-bar and G, and the matrices the paper compares:
 *
 *   F        exact Fisher of the window's parameters (= the Gauss-Newton matrix E_x[J^T F_R J]):
 *            sum over cases x (weight 1/N) and classes y (weight p(y|x)) of D D^T, D = vec(DW-bar)
 *            (all window layers stacked); the other layers' parameters are held fixed.
 *   F-tilde  block (i, j) = A-bar_{i-1,j-1} (x) G_{i,j}, A-bar = E[a-bar a-bar^T] (homogeneous 1
 *            appended), G = E[g g^T], g = dL/ds with y from the model (exact expectation).
 *   damped   the diagonal blocks replaced by (A-bar_{i-1,i-1} + pi_i gamma I) (x) (G_{i,i} + gamma /
 *            pi_i I), pi_i = sqrt((tr A / (d_{i-1} + 1)) / (tr G / d_i)) (factored Tikhonov damping,
 *            the paper's sections 6.3 and 6.6); the off-diagonal blocks unchanged.
 *   F-breve  block-diagonal: the damped diagonal blocks (its inverse: the blocks' inverses).
 *   F-hat    agrees with the damped F-tilde on the tridiagonal blocks and has a block-tridiagonal
 *            inverse: F-hat^-1 = Xi^T Lambda Xi (section 4.3), Psi_{i,i+1} = F_{i,i+1} F_{i+1,i+1}^-1,
 *            Sigma_{i|i+1} = F_{i,i} - Psi F_{i+1,i+1} Psi^T, Sigma_L = F_{L,L} (F = damped F-tilde),
 *            built densely.
 *
 * Layout: W-bar_l = [W_l b_l] is (d_l, d_{l-1} + 1) column-major (natgrad's packed arena layout), so
 * vec(DW-bar_l) = a-bar_{l-1} (x) g_l: entry c d_l + r is a-bar[c] g[r] (input unit c, output unit r;
 * c = d_{l-1} is the bias). All matrices are column-major; symmetric ones hold both triangles.
 * Functions return 0 on success and a LAPACK info (or -1 for memory) on failure. */
#ifndef NATGRAD_BENCH_KFAC_FISHER_H
#define NATGRAD_BENCH_KFAC_FISHER_H

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KFF_MAX_L 16
#define KFF_MAX_BLOCKS 8

/* A network d_0 - d_1 - ... - d_L: tanh hidden layers, softmax output, cross-entropy. */
typedef struct kff_net {
    int L;
    int d[KFF_MAX_L + 1];
    double *W[KFF_MAX_L + 1]; /* W[l] (l = 1..L): W-bar_l (d_l, d_{l-1} + 1) column-major */
} kff_net;

static int kff_net_alloc(kff_net *n, int L, const int *d) {
    int l;
    memset(n, 0, sizeof *n);
    if (L < 1 || L > KFF_MAX_L) return -1;
    n->L = L;
    for (l = 0; l <= L; l++) n->d[l] = d[l];
    for (l = 1; l <= L; l++)
        if (!(n->W[l] = (double *)calloc((size_t)d[l] * (d[l - 1] + 1), sizeof(double)))) return -1;
    return 0;
}

static void kff_net_free(kff_net *n) {
    int l;
    for (l = 1; l <= n->L; l++) free(n->W[l]);
    memset(n, 0, sizeof *n);
}

static int kff_net_max_width(const kff_net *n) {
    int l, m = 0;
    for (l = 0; l <= n->L; l++)
        if (n->d[l] + 1 > m) m = n->d[l] + 1;
    return m;
}

/* Forward pass of one case x (d_0): abar[l] (d_l + 1, homogeneous 1 last) for l = 0..L-1, and the
 * output probabilities p (d_L). abar: L arrays of kff_net_max_width doubles. */
static void kff_forward(const kff_net *n, const double *x, double **abar, double *p) {
    int l, r, c, L = n->L;
    memcpy(abar[0], x, (size_t)n->d[0] * sizeof(double));
    abar[0][n->d[0]] = 1.0;
    for (l = 1; l <= L; l++) {
        int dl = n->d[l], dp = n->d[l - 1] + 1;
        const double *W = n->W[l];
        double *s = l < L ? abar[l] : p;
        for (r = 0; r < dl; r++) s[r] = 0.0;
        for (c = 0; c < dp; c++) {
            double a = abar[l - 1][c];
            for (r = 0; r < dl; r++) s[r] += W[r + (size_t)c * dl] * a;
        }
        if (l < L) {
            for (r = 0; r < dl; r++) s[r] = tanh(s[r]);
            s[dl] = 1.0;
        } else {
            double mx = s[0], z = 0.0;
            for (r = 1; r < dl; r++)
                if (s[r] > mx) mx = s[r];
            for (r = 0; r < dl; r++) z += (s[r] = exp(s[r] - mx));
            for (r = 0; r < dl; r++) s[r] /= z;
        }
    }
}

/* Back-propagation of e = dL/ds_L through the case of the last forward pass: g[l] (d_l) = dL/ds_l
 * for l = 1..L (g: L + 1 arrays of kff_net_max_width doubles, g[0] unused). */
static void kff_backward(const kff_net *n, double **abar, const double *e, double **g) {
    int l, r, c, L = n->L;
    memcpy(g[L], e, (size_t)n->d[L] * sizeof(double));
    for (l = L - 1; l >= 1; l--) {
        int dl = n->d[l], du = n->d[l + 1];
        const double *W = n->W[l + 1];
        for (c = 0; c < dl; c++) {
            double t = 0.0, a = abar[l][c];
            for (r = 0; r < du; r++) t += W[r + (size_t)c * du] * g[l + 1][r];
            g[l][c] = t * (1.0 - a * a);
        }
    }
}

/* Mean cross-entropy and classification error (fraction) of n cases x (d_0, n) with labels. */
static void kff_evaluate(const kff_net *n, const double *x, const unsigned char *labels, int ncase, double *loss,
                         double *err) {
    int w = kff_net_max_width(n), j, l, k;
    double *buf = (double *)malloc((size_t)w * (n->L + 1) * sizeof(double)), *abar[KFF_MAX_L + 1], *p, sl = 0.0;
    long wrong = 0;
    for (l = 0; l <= n->L; l++) abar[l] = buf + (size_t)l * w;
    p = abar[n->L];
    for (j = 0; j < ncase; j++) {
        int best = 0;
        kff_forward(n, x + (size_t)j * n->d[0], abar, p);
        for (k = 1; k < n->d[n->L]; k++)
            if (p[k] > p[best]) best = k;
        wrong += best != labels[j];
        sl -= log(p[labels[j]] > 1e-300 ? p[labels[j]] : 1e-300);
    }
    free(buf);
    *loss = sl / ncase;
    *err = (double)wrong / ncase;
}

/* ---- the window of layers and its statistics ---------------------------------------------- */

typedef struct kff_stats {
    int lo, nb;                    /* layers lo .. lo + nb - 1 (1-based, as in the paper) */
    int da[KFF_MAX_BLOCKS];        /* d_{l-1} + 1 */
    int dg[KFF_MAX_BLOCKS];        /* d_l */
    int off[KFF_MAX_BLOCKS + 1];   /* parameter offsets (block b: da[b] dg[b] entries) */
    int aoff[KFF_MAX_BLOCKS + 1];  /* offsets of a-bar_{l-1} in the stacked activations */
    int goff[KFF_MAX_BLOCKS + 1];  /* offsets of g_l in the stacked derivatives */
    int P, PA, PG;
    double *F;     /* (P, P) exact Fisher */
    double *A;     /* (PA, PA) E[a-bar a-bar^T] of the stacked a-bar_{lo-1} .. a-bar_{lo+nb-2} */
    double *G;     /* (PG, PG) E[g g^T] of the stacked g_lo .. g_{lo+nb-1} */
    double *amean; /* (PA) E[a-bar] */
    double *T;     /* (P, PG) E[D g^T]: third moments E[a-bar_k1 g_k2 g_k4] (cumulant bound) */
} kff_stats;

static void kff_stats_free(kff_stats *s) {
    free(s->F);
    free(s->A);
    free(s->G);
    free(s->amean);
    free(s->T);
    memset(s, 0, sizeof *s);
}

static int kff_stats_layout(const kff_net *n, int lo, int nb, kff_stats *s) {
    int b;
    memset(s, 0, sizeof *s);
    if (nb < 1 || nb > KFF_MAX_BLOCKS || lo < 1 || lo + nb - 1 > n->L) return -1;
    s->lo = lo;
    s->nb = nb;
    for (b = 0; b < nb; b++) {
        s->da[b] = n->d[lo + b - 1] + 1;
        s->dg[b] = n->d[lo + b];
        s->off[b + 1] = s->off[b] + s->da[b] * s->dg[b];
        s->aoff[b + 1] = s->aoff[b] + s->da[b];
        s->goff[b + 1] = s->goff[b] + s->dg[b];
    }
    s->P = s->off[nb];
    s->PA = s->aoff[nb];
    s->PG = s->goff[nb];
    return 0;
}

static void kff_symmetrize_upper(double *M, int n) { /* copy the upper triangle to the lower */
    int r, c;
    for (c = 0; c < n; c++)
        for (r = c + 1; r < n; r++) M[r + (size_t)c * n] = M[c + (size_t)r * n];
}

/* Per-case gradients of the window for case x and each class y as target, scaled by sqrt(weight):
 * column y of D (P, d_L) = sqrt(w p_y) vec(DW-bar), of Gm (PG, d_L) = sqrt(w p_y) g, and Am (PA)
 * = sqrt(w) a-bar. Work arrays abar, g, p as for kff_forward/kff_backward. */
static void kff_case_columns(const kff_net *n, const kff_stats *s, const double *x, double w, double **abar,
                             double **g, double *p, double *e, double *D, double *Gm, double *Am) {
    int K = n->d[n->L], y, b, c, r;
    kff_forward(n, x, abar, p);
    for (b = 0; b < s->nb; b++)
        for (c = 0; c < s->da[b]; c++) Am[s->aoff[b] + c] = sqrt(w) * abar[s->lo + b - 1][c];
    for (y = 0; y < K; y++) {
        double sw = sqrt(w * p[y]);
        for (r = 0; r < K; r++) e[r] = p[r] - (r == y);
        kff_backward(n, abar, e, g);
        for (b = 0; b < s->nb; b++) {
            const double *a = abar[s->lo + b - 1], *gl = g[s->lo + b];
            double *Dc = D + (size_t)y * s->P + s->off[b];
            for (c = 0; c < s->da[b]; c++)
                for (r = 0; r < s->dg[b]; r++) Dc[(size_t)c * s->dg[b] + r] = sw * a[c] * gl[r];
            for (r = 0; r < s->dg[b]; r++) Gm[(size_t)y * s->PG + s->goff[b] + r] = sw * gl[r];
        }
    }
}

/* The statistics of layers lo .. lo+nb-1 over the ncase cases x (d_0, ncase), each weighted 1/ncase,
 * targets enumerated with weights p(y|x). want_T: also the third moments T. */
static int kff_stats_compute(const kff_net *n, const double *x, int ncase, int lo, int nb, int want_T, kff_stats *s) {
    enum { CHUNK = 128 };
    int K = n->d[n->L], w = kff_net_max_width(n), j0, j, l, P, PA, PG, rc = 0;
    double *buf, *abar[KFF_MAX_L + 1], *g[KFF_MAX_L + 1], *p, *e, *D, *Gm, *Am;
    if (kff_stats_layout(n, lo, nb, s)) return -1;
    P = s->P, PA = s->PA, PG = s->PG;
    s->F = (double *)calloc((size_t)P * P, sizeof(double));
    s->A = (double *)calloc((size_t)PA * PA, sizeof(double));
    s->G = (double *)calloc((size_t)PG * PG, sizeof(double));
    s->amean = (double *)calloc((size_t)PA, sizeof(double));
    if (want_T) s->T = (double *)calloc((size_t)P * PG, sizeof(double));
    buf = (double *)malloc(((size_t)w * (2 * n->L + 3)) * sizeof(double));
    D = (double *)malloc((size_t)P * K * CHUNK * sizeof(double));
    Gm = (double *)malloc((size_t)PG * K * CHUNK * sizeof(double));
    Am = (double *)malloc((size_t)PA * CHUNK * sizeof(double));
    if (!s->F || !s->A || !s->G || !s->amean || (want_T && !s->T) || !buf || !D || !Gm || !Am) {
        rc = -1;
        goto out;
    }
    for (l = 0; l <= n->L; l++) abar[l] = buf + (size_t)l * w;
    for (l = 0; l <= n->L; l++) g[l] = buf + (size_t)(n->L + 1 + l) * w;
    p = abar[n->L];
    e = buf + (size_t)(2 * n->L + 2) * w;
    for (j0 = 0; j0 < ncase; j0 += CHUNK) {
        int m = ncase - j0 < CHUNK ? ncase - j0 : CHUNK;
        for (j = 0; j < m; j++)
            kff_case_columns(n, s, x + (size_t)(j0 + j) * n->d[0], 1.0 / ncase, abar, g, p, e,
                             D + (size_t)j * K * P, Gm + (size_t)j * K * PG, Am + (size_t)j * PA);
        cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, P, K * m, 1.0, D, P, 1.0, s->F, P);
        cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, PG, K * m, 1.0, Gm, PG, 1.0, s->G, PG);
        cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, PA, m, 1.0, Am, PA, 1.0, s->A, PA);
        if (want_T)
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, P, PG, K * m, 1.0, D, P, Gm, PG, 1.0, s->T, P);
        for (j = 0; j < m; j++) /* Am holds a-bar / sqrt(N) */
            for (l = 0; l < PA; l++) s->amean[l] += Am[(size_t)j * PA + l] / sqrt((double)ncase);
    }
    kff_symmetrize_upper(s->F, P);
    kff_symmetrize_upper(s->G, PG);
    kff_symmetrize_upper(s->A, PA);
out:
    free(buf);
    free(D);
    free(Gm);
    free(Am);
    return rc;
}

/* ---- F-tilde and its relatives ------------------------------------------------------------ */

/* pi_b of the factored Tikhonov damping */
static double kff_pi(const kff_stats *s, int b) {
    double ta = 0.0, tg = 0.0;
    int k;
    for (k = s->aoff[b]; k < s->aoff[b + 1]; k++) ta += s->A[k + (size_t)k * s->PA];
    for (k = s->goff[b]; k < s->goff[b + 1]; k++) tg += s->G[k + (size_t)k * s->PG];
    return sqrt((ta / s->da[b]) / (tg / s->dg[b]));
}

/* The damped factors of block b: Ad (da, da) = A-bar_{b,b} + pi gamma I, Gd (dg, dg) = G_{b,b} + gamma/pi I
 * (gamma = 0: undamped). */
static void kff_damped_factors(const kff_stats *s, int b, double gamma, double *Ad, double *Gd) {
    int r, c, na = s->da[b], ng = s->dg[b];
    double pi = kff_pi(s, b);
    for (c = 0; c < na; c++)
        for (r = 0; r < na; r++)
            Ad[r + (size_t)c * na] = s->A[(s->aoff[b] + r) + (size_t)(s->aoff[b] + c) * s->PA] + (r == c ? pi * gamma : 0.0);
    for (c = 0; c < ng; c++)
        for (r = 0; r < ng; r++)
            Gd[r + (size_t)c * ng] = s->G[(s->goff[b] + r) + (size_t)(s->goff[b] + c) * s->PG] + (r == c ? gamma / pi : 0.0);
}

/* Block (bi, bj) of out (ld) := Aij (x) Gij with Aij (na_i, na_j, lda) and Gij (ng_i, ng_j, ldg). */
static void kff_kron_block(const kff_stats *s, int bi, int bj, const double *Aij, int lda, const double *Gij, int ldg,
                           double *out, int ld) {
    int ci, cj, ri, rj, ngi = s->dg[bi], ngj = s->dg[bj];
    for (cj = 0; cj < s->da[bj]; cj++)
        for (rj = 0; rj < ngj; rj++) {
            double *col = out + (size_t)(s->off[bj] + cj * ngj + rj) * ld + s->off[bi];
            for (ci = 0; ci < s->da[bi]; ci++) {
                double a = Aij[ci + (size_t)cj * lda];
                for (ri = 0; ri < ngi; ri++) col[ci * ngi + ri] = a * Gij[ri + (size_t)rj * ldg];
            }
        }
}

/* F-tilde (P, P); damp: diagonal blocks from the damped factors with gamma. */
static int kff_ftilde(const kff_stats *s, int damp, double gamma, double *out) {
    int bi, bj, P = s->P, maxa = 0, maxg = 0;
    double *Ad, *Gd;
    for (bi = 0; bi < s->nb; bi++) {
        if (s->da[bi] > maxa) maxa = s->da[bi];
        if (s->dg[bi] > maxg) maxg = s->dg[bi];
    }
    Ad = (double *)malloc((size_t)maxa * maxa * sizeof(double));
    Gd = (double *)malloc((size_t)maxg * maxg * sizeof(double));
    if (!Ad || !Gd) {
        free(Ad);
        free(Gd);
        return -1;
    }
    for (bj = 0; bj < s->nb; bj++)
        for (bi = 0; bi < s->nb; bi++) {
            if (bi == bj && damp) {
                kff_damped_factors(s, bi, gamma, Ad, Gd);
                kff_kron_block(s, bi, bj, Ad, s->da[bi], Gd, s->dg[bi], out, P);
            } else {
                kff_kron_block(s, bi, bj, s->A + s->aoff[bi] + (size_t)s->aoff[bj] * s->PA, s->PA,
                               s->G + s->goff[bi] + (size_t)s->goff[bj] * s->PG, s->PG, out, P);
            }
        }
    free(Ad);
    free(Gd);
    return 0;
}

/* In-place inverse of the SPD (n, n) matrix M (Cholesky), both triangles. */
static int kff_spd_inverse(double *M, int n) {
    int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', n, M, n);
    if (info) return info;
    info = LAPACKE_dpotri(LAPACK_COL_MAJOR, 'U', n, M, n);
    if (info) return info;
    kff_symmetrize_upper(M, n);
    return 0;
}

/* Copy block (bi, bj) of M (P, P) into out (rows, cols) with leading dimension rows. */
static void kff_get_block(const kff_stats *s, const double *M, int bi, int bj, double *out) {
    int c, nr = s->off[bi + 1] - s->off[bi], nc = s->off[bj + 1] - s->off[bj];
    for (c = 0; c < nc; c++)
        memcpy(out + (size_t)c * nr, M + (size_t)(s->off[bj] + c) * s->P + s->off[bi], (size_t)nr * sizeof(double));
}

static void kff_set_block(const kff_stats *s, double *M, int bi, int bj, const double *in) {
    int c, nr = s->off[bi + 1] - s->off[bi], nc = s->off[bj + 1] - s->off[bj];
    for (c = 0; c < nc; c++)
        memcpy(M + (size_t)(s->off[bj] + c) * s->P + s->off[bi], in + (size_t)c * nr, (size_t)nr * sizeof(double));
}

/* F-breve and its inverse (P, P) from the damped F-tilde Ft (its diagonal blocks). */
static int kff_fbreve(const kff_stats *s, const double *Ft, double *Fb, double *Fb_inv) {
    int b, rc = 0, P = s->P, mx = 0;
    double *B;
    for (b = 0; b < s->nb; b++)
        if (s->off[b + 1] - s->off[b] > mx) mx = s->off[b + 1] - s->off[b];
    if (!(B = (double *)malloc((size_t)mx * mx * sizeof(double)))) return -1;
    memset(Fb, 0, (size_t)P * P * sizeof(double));
    memset(Fb_inv, 0, (size_t)P * P * sizeof(double));
    for (b = 0; b < s->nb && !rc; b++) {
        int nb = s->off[b + 1] - s->off[b];
        kff_get_block(s, Ft, b, b, B);
        kff_set_block(s, Fb, b, b, B);
        if (!(rc = kff_spd_inverse(B, nb))) kff_set_block(s, Fb_inv, b, b, B);
    }
    free(B);
    return rc;
}

/* F-hat^-1 = Xi^T Lambda Xi from the tridiagonal blocks of the damped F-tilde Ft (section 4.3),
 * densely; Psi (optional, nb - 1 blocks of the sizes (off[b+1]-off[b], off[b+2]-off[b+1])) receives
 * Psi_{b,b+1}. */
static int kff_fhat_inverse(const kff_stats *s, const double *Ft, double *Fh_inv, double **Psi) {
    int b, P = s->P, rc = 0, mx = 0;
    double *Xi = (double *)calloc((size_t)P * P, sizeof(double)), *Lam = (double *)calloc((size_t)P * P, sizeof(double));
    double *T1 = (double *)malloc((size_t)P * P * sizeof(double)), *B1, *B2, *B3, *Ps;
    for (b = 0; b < s->nb; b++)
        if (s->off[b + 1] - s->off[b] > mx) mx = s->off[b + 1] - s->off[b];
    B1 = (double *)malloc((size_t)mx * mx * sizeof(double));
    B2 = (double *)malloc((size_t)mx * mx * sizeof(double));
    B3 = (double *)malloc((size_t)mx * mx * sizeof(double));
    Ps = (double *)malloc((size_t)mx * mx * sizeof(double));
    if (!Xi || !Lam || !T1 || !B1 || !B2 || !B3 || !Ps) {
        rc = -1;
        goto out;
    }
    for (b = 0; b < P; b++) Xi[b + (size_t)b * P] = 1.0;
    for (b = 0; b < s->nb && !rc; b++) {
        int n0 = s->off[b + 1] - s->off[b];
        kff_get_block(s, Ft, b, b, B3); /* Sigma = F_bb (- Psi F_{b+1,b+1} Psi^T) */
        if (b + 1 < s->nb) {
            int n1 = s->off[b + 2] - s->off[b + 1], c, r;
            kff_get_block(s, Ft, b + 1, b + 1, B1);
            if ((rc = kff_spd_inverse(B1, n1))) break;
            kff_get_block(s, Ft, b, b + 1, B2); /* (n0, n1) */
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n0, n1, n1, 1.0, B2, n0, B1, n1, 0.0, Ps, n0);
            if (Psi) memcpy(Psi[b], Ps, (size_t)n0 * n1 * sizeof(double));
            /* Psi F_{b+1,b+1} Psi^T = Psi F_{b+1,b} = Psi B2^T */
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, n0, n0, n1, -1.0, Ps, n0, B2, n0, 1.0, B3, n0);
            for (c = 0; c < n0; c++) /* symmetrize the rounding */
                for (r = c + 1; r < n0; r++)
                    B3[r + (size_t)c * n0] = B3[c + (size_t)r * n0] = 0.5 * (B3[r + (size_t)c * n0] + B3[c + (size_t)r * n0]);
            for (c = 0; c < n1; c++)
                for (r = 0; r < n0; r++) Xi[(s->off[b] + r) + (size_t)(s->off[b + 1] + c) * P] = -Ps[r + (size_t)c * n0];
        }
        if ((rc = kff_spd_inverse(B3, n0))) break;
        kff_set_block(s, Lam, b, b, B3);
    }
    if (!rc) {
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, P, P, P, 1.0, Lam, P, Xi, P, 0.0, T1, P);
        cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, P, P, P, 1.0, Xi, P, T1, P, 0.0, Fh_inv, P);
        for (b = 0; b < P; b++) { /* exact symmetry (the product is symmetric up to rounding) */
            int r;
            for (r = b + 1; r < P; r++)
                Fh_inv[r + (size_t)b * P] = Fh_inv[b + (size_t)r * P] =
                    0.5 * (Fh_inv[r + (size_t)b * P] + Fh_inv[b + (size_t)r * P]);
        }
    }
out:
    free(Xi);
    free(Lam);
    free(T1);
    free(B1);
    free(B2);
    free(B3);
    free(Ps);
    return rc;
}

/* F-hat from the covariance of the directed chain (no inversion): F-hat_{b,b} = F_{b,b}, and for
 * b < c, F-hat_{b,c} = Psi_{b,b+1} ... Psi_{c-1,c} F_{c,c} (F-hat_{c,b} its transpose). An
 * independent construction to check inv(Xi^T Lambda Xi) against. */
static int kff_fhat_direct(const kff_stats *s, const double *Ft, double *const *Psi, double *Fh) {
    int b, c, P = s->P, mx = 0;
    double *X, *Y;
    for (b = 0; b < s->nb; b++)
        if (s->off[b + 1] - s->off[b] > mx) mx = s->off[b + 1] - s->off[b];
    X = (double *)malloc((size_t)mx * mx * sizeof(double));
    Y = (double *)malloc((size_t)mx * mx * sizeof(double));
    if (!X || !Y) {
        free(X);
        free(Y);
        return -1;
    }
    for (c = 0; c < s->nb; c++) {
        int nc = s->off[c + 1] - s->off[c];
        kff_get_block(s, Ft, c, c, X); /* X = F_{c,c}, then Psi_{b,b+1} X going up */
        kff_set_block(s, Fh, c, c, X);
        for (b = c - 1; b >= 0; b--) {
            int nbr = s->off[b + 1] - s->off[b], n1 = s->off[b + 2] - s->off[b + 1], k, r;
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, nbr, nc, n1, 1.0, Psi[b], nbr, X, n1, 0.0, Y, nbr);
            memcpy(X, Y, (size_t)nbr * nc * sizeof(double));
            kff_set_block(s, Fh, b, c, X);
            for (k = 0; k < nc; k++) /* transpose into block (c, b) */
                for (r = 0; r < nbr; r++) Fh[(s->off[c] + k) + (size_t)(s->off[b] + r) * P] = X[r + (size_t)k * nbr];
        }
    }
    free(X);
    free(Y);
    return 0;
}

/* ---- norms ------------------------------------------------------------------------------- */

enum { KFF_ALL = 0, KFF_DIAG, KFF_OFFDIAG, KFF_TRIDIAG, KFF_OFFTRI };

static int kff_in_part(int bi, int bj, int part) {
    int d = bi > bj ? bi - bj : bj - bi;
    switch (part) {
    case KFF_DIAG: return d == 0;
    case KFF_OFFDIAG: return d != 0;
    case KFF_TRIDIAG: return d <= 1;
    case KFF_OFFTRI: return d > 1;
    default: return 1;
    }
}

/* Frobenius norm of X - Y (Y NULL: of X) over the blocks of a part; maxabs (optional) their largest
 * |entry|. */
static double kff_frob(const kff_stats *s, const double *X, const double *Y, int part, double *maxabs) {
    int bi, bj, r, c;
    double t = 0.0, mx = 0.0;
    for (bj = 0; bj < s->nb; bj++)
        for (bi = 0; bi < s->nb; bi++) {
            if (!kff_in_part(bi, bj, part)) continue;
            for (c = s->off[bj]; c < s->off[bj + 1]; c++)
                for (r = s->off[bi]; r < s->off[bi + 1]; r++) {
                    size_t k = r + (size_t)c * s->P;
                    double v = Y ? X[k] - Y[k] : X[k];
                    t += v * v;
                    if (fabs(v) > mx) mx = fabs(v);
                }
        }
    if (maxabs) *maxabs = mx;
    return sqrt(t);
}

/* Mean |entry| of block (bi, bj). */
static double kff_block_mean_abs(const kff_stats *s, const double *M, int bi, int bj) {
    int r, c;
    double t = 0.0;
    for (c = s->off[bj]; c < s->off[bj + 1]; c++)
        for (r = s->off[bi]; r < s->off[bi + 1]; r++) t += fabs(M[r + (size_t)c * s->P]);
    return t / ((double)(s->off[bi + 1] - s->off[bi]) * (s->off[bj + 1] - s->off[bj]));
}

/* The approximation error of eq. 3 at entry (p, q) of F (an ordered pair of weights) and the
 * cumulants of its upper bound, eq. 4: under the model's distribution E[g | x] = 0 and a-bar depends
 * on x alone, so kappa3(a, g1, g2) = E[a g1 g2] - E[a] E[g1 g2] and kappa4(a1, a2, g1, g2) =
 * (F - F-tilde) - E[a1] kappa3(a2, g1, g2) - E[a2] kappa3(a1, g1, g2) (tests/test_kfac_fisher.c checks
 * both against the general moment formulas). Ft: the UNDAMPED F-tilde. Needs the third moments T. */
static void kff_cumulant_entry(const kff_stats *s, const double *Ft, int p, int q, double *err, double *k4,
                               double *k3a1, double *k3a2, double *ea1, double *ea2) {
    int bi = 0, bj = 0, gp, gq;
    double ggq;
    while (p >= s->off[bi + 1]) bi++;
    while (q >= s->off[bj + 1]) bj++;
    *ea1 = s->amean[s->aoff[bi] + (p - s->off[bi]) / s->dg[bi]];
    *ea2 = s->amean[s->aoff[bj] + (q - s->off[bj]) / s->dg[bj]];
    gp = s->goff[bi] + (p - s->off[bi]) % s->dg[bi];
    gq = s->goff[bj] + (q - s->off[bj]) % s->dg[bj];
    ggq = s->G[gp + (size_t)gq * s->PG];
    *k3a1 = s->T[p + (size_t)gq * s->P] - *ea1 * ggq;
    *k3a2 = s->T[q + (size_t)gp * s->P] - *ea2 * ggq;
    *err = s->F[p + (size_t)q * s->P] - Ft[p + (size_t)q * s->P];
    *k4 = *err - *ea1 * *k3a2 - *ea2 * *k3a1;
}

/* Summed over all entries: sum |F - F-tilde| (eq. 3), the bound sum |kappa4| + |E a1| |kappa3(a2, g1,
 * g2)| + |E a2| |kappa3(a1, g1, g2)| (eq. 4) and sum |kappa4|. */
static void kff_cumulant_sums(const kff_stats *s, const double *Ft, double *sum_err, double *sum_bound,
                              double *sum_k4) {
    int p, q;
    double se = 0.0, sb = 0.0, s4 = 0.0;
    for (q = 0; q < s->P; q++)
        for (p = 0; p < s->P; p++) {
            double err, k4, k3a1, k3a2, ea1, ea2;
            kff_cumulant_entry(s, Ft, p, q, &err, &k4, &k3a1, &k3a2, &ea1, &ea2);
            se += fabs(err);
            s4 += fabs(k4);
            sb += fabs(k4) + fabs(ea1) * fabs(k3a2) + fabs(ea2) * fabs(k3a1);
        }
    *sum_err = se;
    *sum_bound = sb;
    *sum_k4 = s4;
}

#endif
