/* test_kfac_fisher.c: exact checks of the float64 code behind bench/kfac_fisher_figures.c (the
 * K-FAC paper's Figures 2, 3, 5, 6; bench/kfac_fisher.h) on a tiny tanh network, and of the area
 * resampler that makes the paper's 16x16 MNIST (ng_dataset_resample_area).
 *   - per-case gradients a-bar (x) g against central differences of -log p_y;
 *   - the exact Fisher against (1/N) sum_x J^T diag(p) J with J the finite-difference Jacobian of
 *     log p (the closed form of E_y[score score^T], independent of back-propagation);
 *   - F-tilde = F exactly for one case (a-bar is then constant, so E[a a^T (x) g g^T] factorises):
 *     pins the Kronecker layout;
 *   - F-hat: its inverse Xi^T Lambda Xi is exactly block-tridiagonal, F-hat agrees with the damped
 *     F-tilde on the tridiagonal blocks, equals the directed chain's covariance Psi...Psi F (built
 *     without inversion), and Psi = Psi^A (x) Psi^G (the paper's Kronecker form);
 *   - F-breve^-1 blocks = (A + pi gamma I)^-1 (x) (G + gamma/pi I)^-1;
 *   - the cumulants of eq. 3-4 against the general moment formulas (15 and 5 terms) on the
 *     enumerated (x, y) distribution. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "natgrad/data.h"
#include "natgrad/rng.h"
#include "natgrad/status.h"

#pragma GCC diagnostic ignored "-Wunused-function"
#include "../bench/kfac_fisher.h"

/* ---- the resampler ------------------------------------------------------------------------ */

static int make_set(int h, int w, int n, ng_dataset *d) {
    int j, k;
    memset(d, 0, sizeof *d);
    d->x = (float *)malloc((size_t)h * w * n * sizeof(float));
    d->labels = (unsigned char *)malloc((size_t)n);
    if (!d->x || !d->labels) return -1;
    for (j = 0; j < n; j++) {
        d->labels[j] = (unsigned char)(j % 10);
        for (k = 0; k < h * w; k++) d->x[(size_t)j * h * w + k] = ng_rng_uniform(7, (uint64_t)j, (uint64_t)k);
    }
    d->dim = h * w;
    d->n = n;
    d->height = h;
    d->width = w;
    snprintf(d->name, sizeof d->name, "random");
    return 0;
}

static int test_resample_area(void) {
    ng_dataset src, out, half;
    int j, k;
    NGT_CHECK(make_set(28, 28, 3, &src) == 0, "allocation");
    /* mass is preserved up to the area ratio; values stay in [0, 1]; labels are copied */
    NGT_OK(ng_dataset_resample_area(&src, 16, 16, &out));
    NGT_CHECK(out.dim == 256 && out.height == 16 && out.width == 16 && out.n == 3, "shape %dx%d", out.height, out.width);
    for (j = 0; j < 3; j++) {
        double si = 0.0, so = 0.0;
        for (k = 0; k < 784; k++) si += src.x[(size_t)j * 784 + k];
        for (k = 0; k < 256; k++) {
            so += out.x[(size_t)j * 256 + k];
            NGT_CHECK(out.x[(size_t)j * 256 + k] >= 0.0f && out.x[(size_t)j * 256 + k] <= 1.0f, "value in [0, 1]");
        }
        NGT_CLOSE(so * (28.0 / 16.0) * (28.0 / 16.0), si, 1e-4 * si, "mass");
        NGT_CHECK(out.labels[j] == src.labels[j], "labels");
    }
    ng_dataset_free(&out);
    /* 28 -> 14 is ng_dataset_downsample2 */
    NGT_OK(ng_dataset_resample_area(&src, 14, 14, &out));
    NGT_OK(ng_dataset_downsample2(&src, &half));
    for (k = 0; k < 3 * 196; k++) NGT_CLOSE(out.x[k], half.x[k], 1e-6, "28 -> 14 against downsample2");
    ng_dataset_free(&out);
    ng_dataset_free(&half);
    /* equal sizes copy */
    NGT_OK(ng_dataset_resample_area(&src, 28, 28, &out));
    NGT_CHECK(!memcmp(out.x, src.x, 3 * 784 * sizeof(float)), "28 -> 28 is a copy");
    ng_dataset_free(&out);
    /* a constant image stays constant */
    for (k = 0; k < 784; k++) src.x[k] = 0.3f;
    NGT_OK(ng_dataset_resample_area(&src, 16, 16, &out));
    for (k = 0; k < 256; k++) NGT_CLOSE(out.x[k], 0.3, 1e-7, "constant image");
    ng_dataset_free(&out);
    ng_dataset_free(&src);
    /* hand-computed weights, 4 -> 3 columns (output c covers [4c/3, 4(c+1)/3)) on one row:
     * [1 0 0 0] -> [3/4 0 0], [0 1 0 0] -> [1/4 1/2 0], [0 0 0 1] -> [0 0 3/4] */
    {
        static const float rows[3][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 0, 1}};
        static const double want[3][3] = {{0.75, 0, 0}, {0.25, 0.5, 0}, {0, 0, 0.75}};
        int i;
        NGT_CHECK(make_set(1, 4, 3, &src) == 0, "allocation");
        memcpy(src.x, rows, sizeof rows);
        NGT_OK(ng_dataset_resample_area(&src, 1, 3, &out));
        for (i = 0; i < 3; i++)
            for (k = 0; k < 3; k++) NGT_CLOSE(out.x[i * 3 + k], want[i][k], 1e-7, "4 -> 3 weights");
        ng_dataset_free(&out);
        NGT_CHECK(ng_dataset_resample_area(&src, 0, 3, &out) == NG_ERR_INVALID_ARG, "height 0 refused");
        NGT_CHECK(ng_dataset_resample_area(NULL, 2, 3, &out) == NG_ERR_INVALID_ARG, "NULL refused");
        ng_dataset_free(&src);
    }
    return NGT_PASS;
}

/* ---- the tiny network --------------------------------------------------------------------- */

#define NL 5
static const int DIMS[NL + 1] = {6, 5, 4, 5, 3, 4}; /* window: layers 2..4 (3 blocks, one off-tridiagonal pair) */
#define LO 2
#define NB 3
#define NCASE 15

static int tiny_net(kff_net *n, double **x) {
    int l, k;
    if (kff_net_alloc(n, NL, DIMS)) return -1;
    for (l = 1; l <= NL; l++)
        for (k = 0; k < DIMS[l] * (DIMS[l - 1] + 1); k++)
            n->W[l][k] = 0.9 * (2.0 * ng_rng_uniform(11, (uint64_t)l, (uint64_t)k) - 1.0);
    *x = (double *)malloc((size_t)DIMS[0] * NCASE * sizeof(double));
    if (!*x) return -1;
    for (k = 0; k < DIMS[0] * NCASE; k++) (*x)[k] = ng_rng_uniform(12, 0, (uint64_t)k);
    return 0;
}

typedef struct work {
    double buf[(2 * NL + 3) * 8];
    double *abar[NL + 1], *g[NL + 1], *p, *e;
} work;

static void work_init(work *w, const kff_net *n) {
    int l, W = kff_net_max_width(n);
    for (l = 0; l <= NL; l++) w->abar[l] = w->buf + l * W, w->g[l] = w->buf + (NL + 1 + l) * W;
    w->p = w->abar[NL];
    w->e = w->buf + (2 * NL + 2) * W;
}

/* log p (K) of case x */
static void log_probs(const kff_net *n, const double *x, double *lp) {
    work w;
    int k;
    work_init(&w, n);
    kff_forward(n, x, w.abar, w.p);
    for (k = 0; k < n->d[n->L]; k++) lp[k] = log(w.p[k]);
}

/* the window's parameter q (0..P-1) as a pointer into the network */
static double *window_param(kff_net *n, const kff_stats *s, int q) {
    int b = 0;
    while (q >= s->off[b + 1]) b++;
    return n->W[s->lo + b] + (q - s->off[b]);
}

static int test_gradient_fd(void) {
    kff_net n;
    kff_stats s;
    double *x, lp[8], lm[8], Dq;
    work w;
    int j, y, b, c, r, q;
    NGT_CHECK(tiny_net(&n, &x) == 0, "allocation");
    NGT_CHECK(kff_stats_layout(&n, LO, NB, &s) == 0, "layout");
    work_init(&w, &n);
    for (j = 0; j < 3; j++)
        for (y = 0; y < DIMS[NL]; y++) {
            const double *xj = x + (size_t)j * DIMS[0];
            kff_forward(&n, xj, w.abar, w.p);
            for (r = 0; r < DIMS[NL]; r++) w.e[r] = w.p[r] - (r == y);
            kff_backward(&n, w.abar, w.e, w.g);
            for (b = 0; b < NB; b++)
                for (c = 0; c < s.da[b]; c++)
                    for (r = 0; r < s.dg[b]; r++) {
                        double *t, keep, h = 1e-5, fd;
                        q = s.off[b] + c * s.dg[b] + r;
                        Dq = w.abar[LO + b - 1][c] * w.g[LO + b][r]; /* vec(g a^T) = a (x) g */
                        t = window_param(&n, &s, q);
                        keep = *t;
                        *t = keep + h;
                        log_probs(&n, xj, lp);
                        *t = keep - h;
                        log_probs(&n, xj, lm);
                        *t = keep;
                        fd = -(lp[y] - lm[y]) / (2 * h);
                        NGT_CLOSE(Dq, fd, 1e-7 + 1e-6 * fabs(fd), "dL/dW-bar against central differences");
                    }
        }
    free(x);
    kff_net_free(&n);
    return NGT_PASS;
}

static int test_fisher_against_jacobian(void) {
    kff_net n;
    kff_stats s;
    double *x, *J, *F, lp[8], lm[8], p[8], scale = 0.0;
    int j, k, q, q2, P, K = DIMS[NL];
    NGT_CHECK(tiny_net(&n, &x) == 0, "allocation");
    NGT_CHECK(kff_stats_compute(&n, x, NCASE, LO, NB, 0, &s) == 0, "statistics");
    P = s.P;
    J = (double *)malloc((size_t)K * P * sizeof(double));
    F = (double *)calloc((size_t)P * P, sizeof(double));
    NGT_CHECK(J && F, "allocation");
    for (j = 0; j < NCASE; j++) {
        const double *xj = x + (size_t)j * DIMS[0];
        log_probs(&n, xj, lp);
        for (k = 0; k < K; k++) p[k] = exp(lp[k]);
        for (q = 0; q < P; q++) { /* J (K, P): d log p / d theta by central differences */
            double *t = window_param(&n, &s, q), keep = *t, h = 1e-5;
            *t = keep + h;
            log_probs(&n, xj, lp);
            *t = keep - h;
            log_probs(&n, xj, lm);
            *t = keep;
            for (k = 0; k < K; k++) J[k + (size_t)q * K] = (lp[k] - lm[k]) / (2 * h);
        }
        for (q2 = 0; q2 < P; q2++)
            for (q = 0; q < P; q++)
                for (k = 0; k < K; k++) F[q + (size_t)q2 * P] += p[k] * J[k + (size_t)q * K] * J[k + (size_t)q2 * K] / NCASE;
    }
    for (q = 0; q < P * P; q++)
        if (fabs(F[q]) > scale) scale = fabs(F[q]);
    for (q = 0; q < P * P; q++) NGT_CLOSE(s.F[q], F[q], 1e-7 * scale, "exact Fisher against J^T diag(p) J");
    /* and F is symmetric positive semi-definite with E[D] = 0 implied: its trace is positive */
    NGT_CHECK(kff_frob(&s, s.F, NULL, KFF_ALL, NULL) > 0.0, "F nonzero");
    free(J);
    free(F);
    free(x);
    kff_stats_free(&s);
    kff_net_free(&n);
    return NGT_PASS;
}

static int test_ftilde_single_case(void) {
    kff_net n;
    kff_stats s;
    double *x, *Ft, nf, mx;
    NGT_CHECK(tiny_net(&n, &x) == 0, "allocation");
    NGT_CHECK(kff_stats_compute(&n, x + 4 * DIMS[0], 1, LO, NB, 0, &s) == 0, "statistics");
    Ft = (double *)malloc((size_t)s.P * s.P * sizeof(double));
    NGT_CHECK(Ft && kff_ftilde(&s, 0, 0.0, Ft) == 0, "F-tilde");
    nf = kff_frob(&s, s.F, NULL, KFF_ALL, NULL);
    kff_frob(&s, Ft, s.F, KFF_ALL, &mx);
    NGT_CHECK(mx <= 1e-14 * nf, "one case: F-tilde = F, max |diff| %.3g, ||F|| %.3g", mx, nf);
    /* with several cases they differ (the approximation is not trivial) */
    kff_stats_free(&s);
    NGT_CHECK(kff_stats_compute(&n, x, NCASE, LO, NB, 0, &s) == 0, "statistics");
    NGT_CHECK(kff_ftilde(&s, 0, 0.0, Ft) == 0, "F-tilde");
    NGT_CHECK(kff_frob(&s, Ft, s.F, KFF_ALL, NULL) > 1e-6 * kff_frob(&s, s.F, NULL, KFF_ALL, NULL), "N cases: F-tilde != F");
    free(Ft);
    free(x);
    kff_stats_free(&s);
    kff_net_free(&n);
    return NGT_PASS;
}

static int test_fhat_fbreve(void) {
    kff_net n;
    kff_stats s;
    double *x, *Ft, *Fh_inv, *Fh, *Fh2, *Fb, *Fb_inv, *Psi[NB], mx, nrm, gamma = 0.05;
    int P, b, r, c;
    NGT_CHECK(tiny_net(&n, &x) == 0, "allocation");
    NGT_CHECK(kff_stats_compute(&n, x, NCASE, LO, NB, 0, &s) == 0, "statistics");
    P = s.P;
    Ft = (double *)malloc((size_t)P * P * sizeof(double));
    Fh_inv = (double *)malloc((size_t)P * P * sizeof(double));
    Fh = (double *)malloc((size_t)P * P * sizeof(double));
    Fh2 = (double *)malloc((size_t)P * P * sizeof(double));
    Fb = (double *)malloc((size_t)P * P * sizeof(double));
    Fb_inv = (double *)malloc((size_t)P * P * sizeof(double));
    for (b = 0; b + 1 < NB; b++) Psi[b] = (double *)malloc((size_t)P * P * sizeof(double));
    NGT_CHECK(Ft && Fh_inv && Fh && Fh2 && Fb && Fb_inv, "allocation");
    NGT_CHECK(kff_ftilde(&s, 1, gamma, Ft) == 0, "damped F-tilde");
    /* factored Tikhonov damping, from the definitions: the damped diagonal block at (c r, c' r') is
     * (A_cc' + pi gamma [c = c']) (G_rr' + gamma / pi [r = r']), pi = sqrt((tr A / da) / (tr G / dg)) */
    for (b = 0; b < NB; b++) {
        double ta = 0.0, tg = 0.0, pi, bmax = 0.0;
        int c2, r2, ng = s.dg[b];
        for (r = 0; r < s.da[b]; r++) ta += s.A[(s.aoff[b] + r) * (size_t)(s.PA + 1)];
        for (r = 0; r < ng; r++) tg += s.G[(s.goff[b] + r) * (size_t)(s.PG + 1)];
        pi = sqrt((ta / s.da[b]) / (tg / ng));
        NGT_CLOSE(kff_pi(&s, b), pi, 1e-14 * pi, "pi");
        for (c = s.off[b]; c < s.off[b + 1]; c++)
            for (r = s.off[b]; r < s.off[b + 1]; r++)
                if (fabs(Ft[r + (size_t)c * P]) > bmax) bmax = fabs(Ft[r + (size_t)c * P]);
        for (c = 0; c < s.da[b] * ng; c++)
            for (r = 0; r < s.da[b] * ng; r++) {
                int ca = r / ng, rg = r % ng;
                c2 = c / ng, r2 = c % ng;
                NGT_CLOSE(Ft[(s.off[b] + r) + (size_t)(s.off[b] + c) * P],
                          (s.A[(s.aoff[b] + ca) + (size_t)(s.aoff[b] + c2) * s.PA] + (ca == c2 ? pi * gamma : 0.0)) *
                              (s.G[(s.goff[b] + rg) + (size_t)(s.goff[b] + r2) * s.PG] + (rg == r2 ? gamma / pi : 0.0)),
                          1e-14 * bmax, "damped diagonal block");
            }
    }
    NGT_CHECK(kff_fhat_inverse(&s, Ft, Fh_inv, Psi) == 0, "F-hat^-1");
    /* F-hat^-1 is block-tridiagonal: exact zeros off the tridiagonal blocks */
    kff_frob(&s, Fh_inv, NULL, KFF_OFFTRI, &mx);
    NGT_CHECK(mx == 0.0, "F-hat^-1 off-tridiagonal max |entry| %.3g", mx);
    memcpy(Fh, Fh_inv, (size_t)P * P * sizeof(double));
    NGT_CHECK(kff_spd_inverse(Fh, P) == 0, "F-hat^-1 positive definite");
    nrm = kff_frob(&s, Ft, NULL, KFF_TRIDIAG, NULL);
    kff_frob(&s, Fh, Ft, KFF_TRIDIAG, &mx);
    NGT_CHECK(mx <= 1e-11 * nrm, "F-hat = F-tilde on the tridiagonal blocks: max |diff| %.3g, norm %.3g", mx, nrm);
    NGT_CHECK(kff_frob(&s, Fh, Ft, KFF_OFFTRI, NULL) > 1e-8 * nrm, "F-hat != F-tilde off the tridiagonal (generic case)");
    /* the directed chain's covariance, no inversion */
    NGT_CHECK(kff_fhat_direct(&s, Ft, Psi, Fh2) == 0, "F-hat direct");
    kff_frob(&s, Fh2, Fh, KFF_ALL, &mx);
    NGT_CHECK(mx <= 1e-10 * kff_frob(&s, Fh, NULL, KFF_ALL, NULL), "F-hat direct vs inverse: max |diff| %.3g", mx);
    /* Psi_{b,b+1} = Psi^A (x) Psi^G, Psi^A = A_{b,b+1} (A_{b+1,b+1} + pi gamma I)^-1,
     * Psi^G = G_{b,b+1} (G_{b+1,b+1} + gamma/pi I)^-1 (pi of block b+1) */
    for (b = 0; b + 1 < NB; b++) {
        int na0 = s.da[b], na1 = s.da[b + 1], ng0 = s.dg[b], ng1 = s.dg[b + 1], n0 = na0 * ng0;
        double Ad[64], Gd[64], PA[64], PG[64], pmax = 0.0;
        kff_damped_factors(&s, b + 1, gamma, Ad, Gd);
        NGT_CHECK(kff_spd_inverse(Ad, na1) == 0 && kff_spd_inverse(Gd, ng1) == 0, "damped factors SPD");
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, na0, na1, na1, 1.0, s.A + s.aoff[b] + (size_t)s.aoff[b + 1] * s.PA,
                    s.PA, Ad, na1, 0.0, PA, na0);
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, ng0, ng1, ng1, 1.0, s.G + s.goff[b] + (size_t)s.goff[b + 1] * s.PG,
                    s.PG, Gd, ng1, 0.0, PG, ng0);
        for (r = 0; r < n0 * na1 * ng1; r++)
            if (fabs(Psi[b][r]) > pmax) pmax = fabs(Psi[b][r]);
        for (c = 0; c < na1 * ng1; c++)
            for (r = 0; r < n0; r++) {
                double k = PA[(r / ng0) + (size_t)(c / ng1) * na0] * PG[(r % ng0) + (size_t)(c % ng1) * ng0];
                NGT_CLOSE(Psi[b][r + (size_t)c * n0], k, 1e-11 * pmax, "Psi = Psi^A (x) Psi^G");
            }
    }
    /* F-breve^-1 blocks = damped A^-1 (x) damped G^-1; F-breve F-breve^-1 = I */
    NGT_CHECK(kff_fbreve(&s, Ft, Fb, Fb_inv) == 0, "F-breve");
    kff_frob(&s, Fb, NULL, KFF_OFFDIAG, &mx);
    NGT_CHECK(mx == 0.0, "F-breve block-diagonal");
    kff_frob(&s, Fb, Ft, KFF_DIAG, &mx);
    NGT_CHECK(mx == 0.0, "F-breve = damped F-tilde on the diagonal blocks (bit for bit)");
    for (b = 0; b < NB; b++) {
        int na = s.da[b], ng = s.dg[b], nb = na * ng;
        double Ad[64], Gd[64], bmax = 0.0;
        kff_damped_factors(&s, b, gamma, Ad, Gd);
        NGT_CHECK(kff_spd_inverse(Ad, na) == 0 && kff_spd_inverse(Gd, ng) == 0, "damped factors SPD");
        for (c = 0; c < nb; c++)
            for (r = 0; r < nb; r++) {
                double v = fabs(Fb_inv[(s.off[b] + r) + (size_t)(s.off[b] + c) * P]);
                if (v > bmax) bmax = v;
            }
        for (c = 0; c < nb; c++)
            for (r = 0; r < nb; r++)
                NGT_CLOSE(Fb_inv[(s.off[b] + r) + (size_t)(s.off[b] + c) * P],
                          Ad[(r / ng) + (size_t)(c / ng) * na] * Gd[(r % ng) + (size_t)(c % ng) * ng], 1e-11 * bmax,
                          "F-breve^-1 block = A^-1 (x) G^-1");
    }
    free(Ft);
    free(Fh_inv);
    free(Fh);
    free(Fh2);
    free(Fb);
    free(Fb_inv);
    for (b = 0; b + 1 < NB; b++) free(Psi[b]);
    free(x);
    kff_stats_free(&s);
    kff_net_free(&n);
    return NGT_PASS;
}

/* weighted moments over the enumerated (x, y) samples */
typedef struct samples {
    int n;
    double *w, *v; /* v (nvar, n): the variables of sample i in column i */
    int nvar;
} samples;

static double mom(const samples *sm, const int *idx, int k) {
    double t = 0.0;
    int i, j;
    for (i = 0; i < sm->n; i++) {
        double pr = sm->w[i];
        for (j = 0; j < k; j++) pr *= sm->v[idx[j] + (size_t)i * sm->nvar];
        t += pr;
    }
    return t;
}

static double E1(const samples *s, int a) { return mom(s, &a, 1); }
static double E2(const samples *s, int a, int b) { int i[2] = {a, b}; return mom(s, i, 2); }
static double E3(const samples *s, int a, int b, int c) { int i[3] = {a, b, c}; return mom(s, i, 3); }
static double E4(const samples *s, int a, int b, int c, int d) { int i[4] = {a, b, c, d}; return mom(s, i, 4); }

/* joint cumulants from moments (all partitions) */
static double kappa3(const samples *s, int a, int b, int c) {
    return E3(s, a, b, c) - E2(s, a, b) * E1(s, c) - E2(s, a, c) * E1(s, b) - E2(s, b, c) * E1(s, a) +
           2 * E1(s, a) * E1(s, b) * E1(s, c);
}

static double kappa4(const samples *s, int a, int b, int c, int d) {
    double m1[4] = {E1(s, a), E1(s, b), E1(s, c), E1(s, d)};
    return E4(s, a, b, c, d) - E3(s, a, b, c) * m1[3] - E3(s, a, b, d) * m1[2] - E3(s, a, c, d) * m1[1] -
           E3(s, b, c, d) * m1[0] - E2(s, a, b) * E2(s, c, d) - E2(s, a, c) * E2(s, b, d) - E2(s, a, d) * E2(s, b, c) +
           2 * (E2(s, a, b) * m1[2] * m1[3] + E2(s, a, c) * m1[1] * m1[3] + E2(s, a, d) * m1[1] * m1[2] +
                E2(s, b, c) * m1[0] * m1[3] + E2(s, b, d) * m1[0] * m1[2] + E2(s, c, d) * m1[0] * m1[1]) -
           6 * m1[0] * m1[1] * m1[2] * m1[3];
}

static int test_cumulants(void) {
    kff_net n;
    kff_stats s;
    samples sm;
    work w;
    double *x, *Ft, se, sb, s4, tot4 = 0.0;
    int K = DIMS[NL], j, y, b, r, i, q, p, checked = 0;
    NGT_CHECK(tiny_net(&n, &x) == 0, "allocation");
    NGT_CHECK(kff_stats_compute(&n, x, NCASE, LO, NB, 1, &s) == 0, "statistics");
    Ft = (double *)malloc((size_t)s.P * s.P * sizeof(double));
    NGT_CHECK(Ft && kff_ftilde(&s, 0, 0.0, Ft) == 0, "F-tilde");
    /* samples: variables = the stacked a-bar (PA) then the stacked g (PG) */
    sm.n = NCASE * K;
    sm.nvar = s.PA + s.PG;
    sm.w = (double *)malloc((size_t)sm.n * sizeof(double));
    sm.v = (double *)malloc((size_t)sm.n * sm.nvar * sizeof(double));
    NGT_CHECK(sm.w && sm.v, "allocation");
    work_init(&w, &n);
    for (j = 0, i = 0; j < NCASE; j++) {
        kff_forward(&n, x + (size_t)j * DIMS[0], w.abar, w.p);
        for (y = 0; y < K; y++, i++) {
            for (r = 0; r < K; r++) w.e[r] = w.p[r] - (r == y);
            kff_backward(&n, w.abar, w.e, w.g);
            sm.w[i] = w.p[y] / NCASE;
            for (b = 0; b < NB; b++) {
                for (r = 0; r < s.da[b]; r++) sm.v[s.aoff[b] + r + (size_t)i * sm.nvar] = w.abar[LO + b - 1][r];
                for (r = 0; r < s.dg[b]; r++) sm.v[s.PA + s.goff[b] + r + (size_t)i * sm.nvar] = w.g[LO + b][r];
            }
        }
    }
    for (q = 0; q < s.P; q += 3)
        for (p = 0; p < s.P; p += 2) {
            double err, k4, k3a1, k3a2, ea1, ea2, r4, r3a1, r3a2;
            int bi = 0, bj = 0, a1, g1, a2, g2;
            while (p >= s.off[bi + 1]) bi++;
            while (q >= s.off[bj + 1]) bj++;
            a1 = s.aoff[bi] + (p - s.off[bi]) / s.dg[bi];
            g1 = s.PA + s.goff[bi] + (p - s.off[bi]) % s.dg[bi];
            a2 = s.aoff[bj] + (q - s.off[bj]) / s.dg[bj];
            g2 = s.PA + s.goff[bj] + (q - s.off[bj]) % s.dg[bj];
            kff_cumulant_entry(&s, Ft, p, q, &err, &k4, &k3a1, &k3a2, &ea1, &ea2);
            r4 = kappa4(&sm, a1, a2, g1, g2);
            r3a1 = kappa3(&sm, a1, g1, g2);
            r3a2 = kappa3(&sm, a2, g1, g2);
            NGT_CLOSE(k4, r4, 1e-12 + 1e-9 * fabs(r4), "kappa4 against the 15-term formula");
            NGT_CLOSE(k3a1, r3a1, 1e-12 + 1e-9 * fabs(r3a1), "kappa3(a1, g1, g2)");
            NGT_CLOSE(k3a2, r3a2, 1e-12 + 1e-9 * fabs(r3a2), "kappa3(a2, g1, g2)");
            NGT_CLOSE(ea1, E1(&sm, a1), 1e-13, "E a1");
            /* eq. 3 */
            NGT_CLOSE(err, r4 + ea1 * r3a2 + ea2 * r3a1, 1e-12 + 1e-9 * fabs(err), "eq. 3");
            tot4 += fabs(r4);
            checked++;
        }
    NGT_CHECK(checked > 100 && tot4 > 0.0, "cumulants checked (%d entries)", checked);
    kff_cumulant_sums(&s, Ft, &se, &sb, &s4);
    NGT_CHECK(se <= sb * (1 + 1e-12) && s4 <= sb && se > 0.0, "eq. 4 bounds eq. 3: %.6g <= %.6g", se, sb);
    free(sm.w);
    free(sm.v);
    free(Ft);
    free(x);
    kff_stats_free(&s);
    kff_net_free(&n);
    return NGT_PASS;
}

int main(void) {
    NGT_RUN(test_resample_area);
    NGT_RUN(test_gradient_fd);
    NGT_RUN(test_fisher_against_jacobian);
    NGT_RUN(test_ftilde_single_case);
    NGT_RUN(test_fhat_fbreve);
    NGT_RUN(test_cumulants);
    return ngt_finish();
}
