/* test_toy.c: Sohl-Dickstein's 2-D Gaussian toy (natgrad/toy.h) against references written here:
 * the Fisher information (eq. 30) and KL divergence as integrals over a fine grid (the trapezoid
 * rule on a Gaussian converges faster than any power of the spacing), with the score taken by
 * central differences of log q in theta; the objective's gradient by central differences; the
 * matrix square roots by multiplying them back; the descent paths against their closed forms. */
#include <math.h>
#include <stdlib.h>

#include "harness.h"
#include "natgrad/toy.h"

/* log q(x; theta) of eq. 1, written again from the paper */
static double log_q(const double x[2], const double th[2]) {
    double m0 = 3.0 * th[0] + th[1] / 3.0, m1 = th[0] / 3.0;
    return -log(2.0 * M_PI) - 0.5 * ((x[0] - m0) * (x[0] - m0) + (x[1] - m1) * (x[1] - m1));
}

/* grid over the mean +- 12 standard deviations, 481 points a side */
#define GRID_N 481
#define GRID_R 12.0

/* Fisher information (eq. 30) by integration over q(x; theta) */
static void fisher_grid(const double th[2], double G[4]) {
    double h = 2.0 * GRID_R / (GRID_N - 1), eps = 1e-4, m0 = 3.0 * th[0] + th[1] / 3.0, m1 = th[0] / 3.0;
    int i, j, k;
    for (k = 0; k < 4; k++) G[k] = 0.0;
    for (i = 0; i < GRID_N; i++)
        for (j = 0; j < GRID_N; j++) {
            double x[2] = {m0 - GRID_R + i * h, m1 - GRID_R + j * h}, s[2], w = exp(log_q(x, th)) * h * h;
            for (k = 0; k < 2; k++) {
                double tp[2] = {th[0], th[1]}, tm[2] = {th[0], th[1]};
                tp[k] += eps;
                tm[k] -= eps;
                s[k] = (log_q(x, tp) - log_q(x, tm)) / (2.0 * eps);
            }
            G[0] += w * s[0] * s[0];
            G[1] += w * s[0] * s[1];
            G[2] += w * s[1] * s[0];
            G[3] += w * s[1] * s[1];
        }
}

/* KL(p || q_theta) and -<log q>_p, p = q(.; theta_true), by integration */
static void kl_grid(const double tt[2], const double th[2], double *kl, double *nll) {
    double h = 2.0 * GRID_R / (GRID_N - 1), m0 = 3.0 * tt[0] + tt[1] / 3.0, m1 = tt[0] / 3.0;
    int i, j;
    *kl = *nll = 0.0;
    for (i = 0; i < GRID_N; i++)
        for (j = 0; j < GRID_N; j++) {
            double x[2] = {m0 - GRID_R + i * h, m1 - GRID_R + j * h}, lp = log_q(x, tt), w = exp(lp) * h * h;
            *kl += w * (lp - log_q(x, th));
            *nll -= w * log_q(x, th);
        }
}

static int test_fisher_matches_definition(void) {
    ng_toy t;
    double tt[2] = {0.0, 0.0}, G[4], R[4];
    double pts[3][2] = {{1.0, -1.0}, {0.0, 0.0}, {-2.5, 0.7}};
    int p, k;
    NGT_OK(ng_toy_init(&t, tt, 0, 1));
    ng_toy_fisher(&t, G);
    /* the note's section 1.2 value */
    NGT_CLOSE(G[0], 9.0 + 1.0 / 9.0, 1e-14, "G11 = 3^2 + 1/3^2");
    NGT_CLOSE(G[1], 1.0, 1e-15, "G12");
    NGT_CLOSE(G[2], 1.0, 1e-15, "G21");
    NGT_CLOSE(G[3], 1.0 / 9.0, 1e-15, "G22 = 1/3^2");
    for (p = 0; p < 3; p++) {
        fisher_grid(pts[p], R);
        /* tolerance: the score's central difference is exact for a quadratic up to rounding
         * (~1e-12 / eps); the grid sum of a Gaussian moment is accurate to ~1e-12 */
        for (k = 0; k < 4; k++) NGT_CLOSE(G[k], R[k], 1e-7 * (1.0 + fabs(R[k])), "G against eq. 30 by integration");
    }
    return NGT_PASS;
}

static int test_kl_and_objective(void) {
    ng_toy t;
    double tt[2] = {0.4, -0.3};
    double pts[3][2] = {{1.0, -1.0}, {0.4, -0.3}, {-1.0, 2.0}};
    int p;
    NGT_OK(ng_toy_init(&t, tt, 0, 1));
    for (p = 0; p < 3; p++) {
        double kl, nll;
        kl_grid(tt, pts[p], &kl, &nll);
        NGT_CLOSE(ng_toy_kl(&t, pts[p]), kl, 1e-9 * (1.0 + kl), "KL against integration");
        NGT_CLOSE(ng_toy_objective(&t, pts[p]), nll, 1e-9 * (1.0 + nll), "J (eq. 2) against integration");
    }
    NGT_CLOSE(ng_toy_kl(&t, tt), 0.0, 0.0, "KL at theta_true");
    return NGT_PASS;
}

static int test_gradient_finite_differences(void) {
    ng_toy t;
    double tt[2] = {0.0, 0.0}, th[2] = {1.0, -1.0}, g[2], h = 1e-5;
    int k;
    /* with samples the objective depends on the data mean and scatter */
    NGT_OK(ng_toy_init(&t, tt, 50, 7));
    ng_toy_gradient(&t, th, g);
    for (k = 0; k < 2; k++) {
        double tp[2] = {th[0], th[1]}, tm[2] = {th[0], th[1]}, fd;
        tp[k] += h;
        tm[k] -= h;
        fd = (ng_toy_objective(&t, tp) - ng_toy_objective(&t, tm)) / (2.0 * h);
        /* J is quadratic: the central difference is exact up to rounding of J / h ~ 1e-10 */
        NGT_CLOSE(g[k], fd, 1e-8, "gradient against central differences");
    }
    /* eq. 4 with exact data: -grad = (3 d1 + d2/3, d1/3)-weighted residuals */
    NGT_OK(ng_toy_init(&t, tt, 0, 1));
    ng_toy_gradient(&t, th, g);
    {
        double r0 = 0.0 - (3.0 * th[0] + th[1] / 3.0), r1 = 0.0 - th[0] / 3.0;
        NGT_CLOSE(-g[0], 3.0 * r0 + r1 / 3.0, 1e-14, "eq. 4, first row");
        NGT_CLOSE(-g[1], r0 / 3.0, 1e-14, "eq. 4, second row");
    }
    return NGT_PASS;
}

static void mul2(const double A[4], const double B[4], double C[4]) {
    C[0] = A[0] * B[0] + A[1] * B[2];
    C[1] = A[0] * B[1] + A[1] * B[3];
    C[2] = A[2] * B[0] + A[3] * B[2];
    C[3] = A[2] * B[1] + A[3] * B[3];
}

static int test_sqrt(void) {
    double mats[5][4] = {
        {9.0 + 1.0 / 9.0, 1.0, 1.0, 1.0 / 9.0}, {2.0, 0.0, 0.0, 5.0}, {3.0, 0.0, 0.0, 3.0},
        {1.0, 0.999, 0.999, 1.0}, {1e-6, 0.0, 0.0, 4.0}};
    double H[4], Hi[4], P[4], bad[4] = {1.0, 2.0, 2.0, 1.0};
    int m, k;
    for (m = 0; m < 5; m++) {
        double scale = fabs(mats[m][0]) + fabs(mats[m][3]);
        NGT_OK(ng_sym2_sqrt(mats[m], H, Hi));
        mul2(H, H, P);
        for (k = 0; k < 4; k++) NGT_CLOSE(P[k], mats[m][k], 1e-13 * scale, "S^(1/2) S^(1/2) = S");
        mul2(H, Hi, P);
        for (k = 0; k < 4; k++) NGT_CLOSE(P[k], k == 0 || k == 3 ? 1.0 : 0.0, 1e-9, "S^(1/2) S^(-1/2) = I");
        NGT_CLOSE(H[1], H[2], 0.0, "S^(1/2) symmetric");
        NGT_CHECK(H[0] > 0.0 && H[3] > 0.0 && H[0] * H[3] - H[1] * H[2] > 0.0, "S^(1/2) positive definite");
    }
    NGT_CHECK(ng_sym2_sqrt(bad, H, Hi) == NG_ERR_NUMERIC, "indefinite matrix refused");
    bad[1] = NAN;
    NGT_CHECK(ng_sym2_sqrt(bad, H, Hi) == NG_ERR_INVALID_ARG, "NaN refused");
    return NGT_PASS;
}

/* The natural-gradient path is the straight segment to the optimum with geometric steps. */
static int test_natural_path_straight_line(void) {
    int ns[2] = {0, 200}, c, k, steps = 60;
    double tt[2] = {0.0, 0.0}, t0[2] = {1.0, -1.0}, eta = 0.1, *path = malloc(sizeof(double) * 2 * (steps + 1));
    NGT_CHECK(path != NULL, "malloc");
    for (c = 0; c < 2; c++) {
        ng_toy t;
        double ts[2], kl0;
        NGT_OK(ng_toy_init(&t, tt, ns[c], 3));
        ng_toy_optimum(&t, ts);
        NGT_OK(ng_toy_descend(&t, NG_TOY_NATURAL, t0, eta, steps, path));
        kl0 = ng_toy_kl(&t, t0);
        for (k = 0; k <= steps; k++) {
            double f = pow(1.0 - eta, k), d0 = path[2 * k] - ts[0], d1 = path[2 * k + 1] - ts[1];
            double e0 = t0[0] - ts[0], e1 = t0[1] - ts[1];
            NGT_CLOSE(d0, f * e0, 1e-12, "theta_k - theta_star = (1 - eta)^k (theta_0 - theta_star), first");
            NGT_CLOSE(d1, f * e1, 1e-12, "theta_k - theta_star = (1 - eta)^k (theta_0 - theta_star), second");
            NGT_CLOSE(d0 * e1 - d1 * e0, 0.0, 1e-12, "on the line through theta_0 and theta_star");
            if (ns[c] == 0) {
                NGT_CLOSE(ng_toy_kl(&t, path + 2 * k), f * f * kl0, 1e-12 * kl0, "KL_k = (1 - eta)^(2k) KL_0");
            }
        }
    }
    free(path);
    return NGT_PASS;
}

/* Steepest descent against theta_star + (I - eta G)^k (theta_0 - theta_star), the power computed
 * through the eigendecomposition that ng_sym2_sqrt does not use: squaring. */
static int test_steepest_closed_form(void) {
    ng_toy t;
    int steps = 64, k;
    double tt[2] = {0.0, 0.0}, t0[2] = {1.0, -1.0}, eta = 0.1, G[4], M[4], P[4], tmp[4], *path;
    path = malloc(sizeof(double) * 2 * (steps + 1));
    NGT_CHECK(path != NULL, "malloc");
    NGT_OK(ng_toy_init(&t, tt, 0, 1));
    NGT_OK(ng_toy_descend(&t, NG_TOY_STEEPEST, t0, eta, steps, path));
    ng_toy_fisher(&t, G);
    M[0] = 1.0 - eta * G[0];
    M[1] = -eta * G[1];
    M[2] = -eta * G[2];
    M[3] = 1.0 - eta * G[3];
    for (k = 0; k < 6; k++) { /* M^64 by six squarings */
        mul2(M, M, tmp);
        memcpy(M, tmp, sizeof M);
    }
    P[0] = M[0] * t0[0] + M[1] * t0[1];
    P[1] = M[2] * t0[0] + M[3] * t0[1];
    NGT_CLOSE(path[2 * steps], P[0], 1e-12, "steepest descent, theta1 after 64 steps");
    NGT_CLOSE(path[2 * steps + 1], P[1], 1e-12, "steepest descent, theta2 after 64 steps");
    /* the paper's point: after as many steps steepest descent is still far from the optimum,
     * where the natural gradient's KL has shrunk by 0.9^128 */
    NGT_CHECK(ng_toy_kl(&t, path + 2 * steps) > 100.0 * pow(1.0 - eta, 2 * steps) * ng_toy_kl(&t, t0),
              "steepest descent slower than the natural gradient: KL %g after %d steps", ng_toy_kl(&t, path + 2 * steps), steps);
    NGT_CHECK(hypot(path[2 * steps], path[2 * steps + 1]) > 0.5, "steepest descent still far from theta_star: %g",
              hypot(path[2 * steps], path[2 * steps + 1]));
    free(path);
    return NGT_PASS;
}

/* Plain SGD on phi = G^(1/2) theta is natural-gradient descent in theta (section 1.4-1.5). */
static int test_phi_sgd_equals_natural(void) {
    ng_toy t;
    int steps = 40, k;
    double tt[2] = {0.2, 0.5}, t0[2] = {1.0, -1.0}, *a, *b, G[4], H[4], Hi[4];
    a = malloc(sizeof(double) * 2 * (steps + 1));
    b = malloc(sizeof(double) * 2 * (steps + 1));
    NGT_CHECK(a && b, "malloc");
    NGT_OK(ng_toy_init(&t, tt, 30, 5));
    NGT_OK(ng_toy_descend(&t, NG_TOY_NATURAL, t0, 0.25, steps, a));
    NGT_OK(ng_toy_descend(&t, NG_TOY_PHI_SGD, t0, 0.25, steps, b));
    for (k = 0; k < 2 * (steps + 1); k++) NGT_CLOSE(b[k], a[k], 1e-10, "phi-space SGD = natural gradient");
    /* the gradient in phi (chain rule, eq. 20-21) is phi - phi_star: panel (d)'s field */
    ng_toy_fisher(&t, G);
    NGT_OK(ng_sym2_sqrt(G, H, Hi));
    {
        double th[2] = {-0.7, 1.3}, g[2], gp[2], ts[2], phi[2], ps[2];
        ng_toy_gradient(&t, th, g);
        ng_toy_optimum(&t, ts);
        gp[0] = Hi[0] * g[0] + Hi[1] * g[1];
        gp[1] = Hi[2] * g[0] + Hi[3] * g[1];
        phi[0] = H[0] * th[0] + H[1] * th[1];
        phi[1] = H[2] * th[0] + H[3] * th[1];
        ps[0] = H[0] * ts[0] + H[1] * ts[1];
        ps[1] = H[2] * ts[0] + H[3] * ts[1];
        NGT_CLOSE(gp[0], phi[0] - ps[0], 1e-10, "grad_phi J = phi - phi_star, first");
        NGT_CLOSE(gp[1], phi[1] - ps[1], 1e-10, "grad_phi J = phi - phi_star, second");
    }
    free(a);
    free(b);
    return NGT_PASS;
}

static int test_samples(void) {
    ng_toy t, u;
    double tt[2] = {1.0, 2.0}, mu0 = 3.0 + 2.0 / 3.0, mu1 = 1.0 / 3.0;
    int n = 20000;
    NGT_OK(ng_toy_init(&t, tt, n, 11));
    NGT_OK(ng_toy_init(&u, tt, n, 11));
    /* 5 standard errors of a mean of n unit-variance draws */
    NGT_CLOSE(t.xbar[0], mu0, 5.0 / sqrt((double)n), "sample mean, first coordinate");
    NGT_CLOSE(t.xbar[1], mu1, 5.0 / sqrt((double)n), "sample mean, second coordinate");
    /* the scatter of 2n unit-variance values has standard error sqrt(2 * 2 / n) */
    NGT_CLOSE(t.scatter, 2.0, 5.0 * sqrt(4.0 / n), "scatter about the mean");
    NGT_CHECK(t.xbar[0] == u.xbar[0] && t.scatter == u.scatter, "same seed, same data");
    NGT_OK(ng_toy_init(&u, tt, n, 12));
    NGT_CHECK(t.xbar[0] != u.xbar[0], "another seed, other data");
    return NGT_PASS;
}

static int test_bad_input(void) {
    ng_toy t;
    double tt[2] = {0.0, 0.0}, bad[2] = {NAN, 0.0}, t0[2] = {1.0, -1.0}, path[8];
    NGT_CHECK(ng_toy_init(&t, bad, 0, 1) == NG_ERR_INVALID_ARG, "NaN theta_true refused");
    NGT_CHECK(strstr(ng_last_error(), "theta_true") != NULL, "message names theta_true: %s", ng_last_error());
    NGT_CHECK(ng_toy_init(&t, tt, -1, 1) == NG_ERR_INVALID_ARG, "negative sample count refused");
    NGT_OK(ng_toy_init(&t, tt, 0, 1));
    NGT_CHECK(ng_toy_descend(&t, NG_TOY_NATURAL, bad, 0.1, 3, path) == NG_ERR_INVALID_ARG, "NaN theta_init");
    NGT_CHECK(strstr(ng_last_error(), "theta_init") != NULL, "message names theta_init: %s", ng_last_error());
    NGT_CHECK(ng_toy_descend(&t, NG_TOY_NATURAL, t0, 0.0, 3, path) == NG_ERR_INVALID_ARG, "zero step");
    NGT_CHECK(ng_toy_descend(&t, NG_TOY_NATURAL, t0, NAN, 3, path) == NG_ERR_INVALID_ARG, "NaN step");
    NGT_CHECK(ng_toy_descend(&t, NG_TOY_NATURAL, t0, 0.1, 0, path) == NG_ERR_INVALID_ARG, "no steps");
    NGT_CHECK(ng_toy_descend(&t, (ng_toy_method)9, t0, 0.1, 3, path) == NG_ERR_INVALID_ARG, "bad method");
    {
        /* a step beyond 2 / lambda_max diverges: reported, not NaN in the path */
        double *p = malloc(sizeof(double) * 2 * 2001);
        ng_status s = ng_toy_descend(&t, NG_TOY_STEEPEST, t0, 5.0, 2000, p);
        free(p);
        NGT_CHECK(s == NG_ERR_NUMERIC, "divergence reported (got %s)", ng_status_name(s));
    }
    return NGT_PASS;
}

int main(void) {
    NGT_RUN(test_fisher_matches_definition);
    NGT_RUN(test_kl_and_objective);
    NGT_RUN(test_gradient_finite_differences);
    NGT_RUN(test_sqrt);
    NGT_RUN(test_natural_path_straight_line);
    NGT_RUN(test_steepest_closed_form);
    NGT_RUN(test_phi_sgd_equals_natural);
    NGT_RUN(test_samples);
    NGT_RUN(test_bad_input);
    return ngt_finish();
}
