/* toy.c: Sohl-Dickstein's 2-D Gaussian toy (natgrad/toy.h) in closed form, float64 on the host.
 * Vectors are (theta1, theta2); 2x2 matrices are row-major double[4]. Prints nothing. */
#include <math.h>
#include <string.h>

#include "natgrad/rng.h"
#include "natgrad/toy.h"

static int finite2(const double v[2]) { return isfinite(v[0]) && isfinite(v[1]); }

ng_status ng_toy_init(ng_toy *t, const double theta_true[2], int n_samples, uint64_t seed) {
    int i;
    if (!t || !theta_true) return ng_error(NG_ERR_INVALID_ARG, "toy: NULL argument");
    if (!finite2(theta_true))
        return ng_error(NG_ERR_INVALID_ARG, "toy: theta_true (%g, %g) is not finite", theta_true[0], theta_true[1]);
    if (n_samples < 0 || n_samples > 100000000)
        return ng_error(NG_ERR_INVALID_ARG, "toy: n_samples %d outside 0 .. 1e8", n_samples);
    memset(t, 0, sizeof *t);
    /* eq. 1: means 3 theta1 + theta2 / 3 and theta1 / 3 */
    t->A[0][0] = 3.0;
    t->A[0][1] = 1.0 / 3.0;
    t->A[1][0] = 1.0 / 3.0;
    t->A[1][1] = 0.0;
    t->theta_true[0] = theta_true[0];
    t->theta_true[1] = theta_true[1];
    t->n_samples = n_samples;
    {
        double mu0 = t->A[0][0] * theta_true[0] + t->A[0][1] * theta_true[1];
        double mu1 = t->A[1][0] * theta_true[0] + t->A[1][1] * theta_true[1];
        if (n_samples == 0) {
            t->xbar[0] = mu0;
            t->xbar[1] = mu1;
            t->scatter = 2.0;
            return NG_OK;
        }
        {
            /* two passes in float64: mean, then the scatter about it */
            uint64_t key = ng_rng_stream_key(seed, NG_RNG_TOY);
            double s0 = 0.0, s1 = 0.0, ss = 0.0;
            for (i = 0; i < n_samples; i++) {
                s0 += mu0 + ng_rng_normal(key, 0, 2 * (uint64_t)i);
                s1 += mu1 + ng_rng_normal(key, 0, 2 * (uint64_t)i + 1);
            }
            t->xbar[0] = s0 / n_samples;
            t->xbar[1] = s1 / n_samples;
            for (i = 0; i < n_samples; i++) {
                double d0 = mu0 + ng_rng_normal(key, 0, 2 * (uint64_t)i) - t->xbar[0];
                double d1 = mu1 + ng_rng_normal(key, 0, 2 * (uint64_t)i + 1) - t->xbar[1];
                ss += d0 * d0 + d1 * d1;
            }
            t->scatter = ss / n_samples;
        }
    }
    return NG_OK;
}

static void mean_of(const ng_toy *t, const double th[2], double mu[2]) {
    mu[0] = t->A[0][0] * th[0] + t->A[0][1] * th[1];
    mu[1] = t->A[1][0] * th[0] + t->A[1][1] * th[1];
}

double ng_toy_objective(const ng_toy *t, const double theta[2]) {
    double mu[2], d0, d1;
    mean_of(t, theta, mu);
    d0 = t->xbar[0] - mu[0];
    d1 = t->xbar[1] - mu[1];
    /* <|x - mu|^2> = |xbar - mu|^2 + <|x - xbar|^2> */
    return log(2.0 * M_PI) + 0.5 * (d0 * d0 + d1 * d1 + t->scatter);
}

void ng_toy_gradient(const ng_toy *t, const double theta[2], double grad[2]) {
    double mu[2], r0, r1;
    mean_of(t, theta, mu);
    r0 = mu[0] - t->xbar[0];
    r1 = mu[1] - t->xbar[1];
    grad[0] = t->A[0][0] * r0 + t->A[1][0] * r1;
    grad[1] = t->A[0][1] * r0 + t->A[1][1] * r1;
}

double ng_toy_kl(const ng_toy *t, const double theta[2]) {
    double mu[2], mt[2];
    mean_of(t, theta, mu);
    mean_of(t, t->theta_true, mt);
    /* KL between unit-variance Gaussians: half the squared distance of the means */
    return 0.5 * ((mu[0] - mt[0]) * (mu[0] - mt[0]) + (mu[1] - mt[1]) * (mu[1] - mt[1]));
}

void ng_toy_fisher(const ng_toy *t, double G[4]) {
    int i, j;
    for (i = 0; i < 2; i++)
        for (j = 0; j < 2; j++) G[2 * i + j] = t->A[0][i] * t->A[0][j] + t->A[1][i] * t->A[1][j];
}

void ng_toy_optimum(const ng_toy *t, double ts[2]) {
    double det = t->A[0][0] * t->A[1][1] - t->A[0][1] * t->A[1][0];
    ts[0] = (t->A[1][1] * t->xbar[0] - t->A[0][1] * t->xbar[1]) / det;
    ts[1] = (-t->A[1][0] * t->xbar[0] + t->A[0][0] * t->xbar[1]) / det;
}

ng_status ng_sym2_sqrt(const double S[4], double half[4], double inv_half[4]) {
    double a = S[0], b = S[1], c = S[3], l[2], v[2][2], r;
    int k;
    if (!(isfinite(a) && isfinite(b) && isfinite(c)) || fabs(S[1] - S[2]) > 1e-12 * (fabs(S[1]) + 1.0))
        return ng_error(NG_ERR_INVALID_ARG, "sym2_sqrt: matrix is not finite and symmetric");
    r = hypot(0.5 * (a - c), b);
    /* eigenvalues; the smaller from the determinant to keep its relative accuracy */
    l[0] = 0.5 * (a + c) + r;
    if (!(l[0] > 0.0)) return ng_error(NG_ERR_NUMERIC, "sym2_sqrt: matrix is not positive definite");
    l[1] = (a * c - b * b) / l[0];
    if (!(l[1] > 0.0))
        return ng_error(NG_ERR_NUMERIC, "sym2_sqrt: matrix is not positive definite (eigenvalue %g)", l[1]);
    /* eigenvector of l[0]: (b, l0 - a) or (l0 - c, b), whichever is longer (both vanish only
     * for a multiple of I, where any basis will do) */
    {
        double n1 = hypot(b, l[0] - a), n2 = hypot(l[0] - c, b);
        if (n1 >= n2 && n1 > 0.0) {
            v[0][0] = b / n1;
            v[0][1] = (l[0] - a) / n1;
        } else if (n2 > 0.0) {
            v[0][0] = (l[0] - c) / n2;
            v[0][1] = b / n2;
        } else {
            v[0][0] = 1.0;
            v[0][1] = 0.0;
        }
    }
    v[1][0] = -v[0][1];
    v[1][1] = v[0][0];
    for (k = 0; k < 4; k++) half[k] = inv_half[k] = 0.0;
    for (k = 0; k < 2; k++) {
        double s = sqrt(l[k]), is = 1.0 / s;
        half[0] += s * v[k][0] * v[k][0];
        half[1] += s * v[k][0] * v[k][1];
        half[3] += s * v[k][1] * v[k][1];
        inv_half[0] += is * v[k][0] * v[k][0];
        inv_half[1] += is * v[k][0] * v[k][1];
        inv_half[3] += is * v[k][1] * v[k][1];
    }
    half[2] = half[1];
    inv_half[2] = inv_half[1];
    return NG_OK;
}

static void mat2_vec(const double M[4], const double x[2], double y[2]) {
    double y0 = M[0] * x[0] + M[1] * x[1];
    y[1] = M[2] * x[0] + M[3] * x[1];
    y[0] = y0;
}

ng_status ng_toy_descend(const ng_toy *t, ng_toy_method method, const double theta0[2], double eta,
                         int steps, double *path) {
    double G[4], Gh[4], Gih[4], Ginv[4], th[2], g[2], d[2], det;
    int k;
    if (!t || !theta0 || !path) return ng_error(NG_ERR_INVALID_ARG, "toy descend: NULL argument");
    if (!finite2(theta0))
        return ng_error(NG_ERR_INVALID_ARG, "toy descend: theta_init (%g, %g) is not finite", theta0[0], theta0[1]);
    if (!(eta > 0.0) || !isfinite(eta))
        return ng_error(NG_ERR_INVALID_ARG, "toy descend: step size %g must be positive and finite", eta);
    if (steps < 1) return ng_error(NG_ERR_INVALID_ARG, "toy descend: steps %d must be at least 1", steps);
    if (method != NG_TOY_STEEPEST && method != NG_TOY_NATURAL && method != NG_TOY_PHI_SGD)
        return ng_error(NG_ERR_INVALID_ARG, "toy descend: unknown method %d", (int)method);
    ng_toy_fisher(t, G);
    NG_TRY(ng_sym2_sqrt(G, Gh, Gih));
    det = G[0] * G[3] - G[1] * G[2];
    Ginv[0] = G[3] / det;
    Ginv[1] = -G[1] / det;
    Ginv[2] = -G[2] / det;
    Ginv[3] = G[0] / det;
    th[0] = theta0[0];
    th[1] = theta0[1];
    path[0] = th[0];
    path[1] = th[1];
    for (k = 1; k <= steps; k++) {
        ng_toy_gradient(t, th, g);
        if (method == NG_TOY_STEEPEST) {
            th[0] -= eta * g[0];
            th[1] -= eta * g[1];
        } else if (method == NG_TOY_NATURAL) {
            mat2_vec(Ginv, g, d); /* eq. 26 */
            th[0] -= eta * d[0];
            th[1] -= eta * d[1];
        } else {
            /* section 1.4: phi_t = G^(1/2) theta_t; grad_phi = G^(-1/2) grad_theta (eq. 21);
             * theta_{t+1} = G^(-1/2) (phi_t - eta grad_phi) */
            double phi[2], gp[2];
            mat2_vec(Gh, th, phi);
            mat2_vec(Gih, g, gp);
            phi[0] -= eta * gp[0];
            phi[1] -= eta * gp[1];
            mat2_vec(Gih, phi, th);
        }
        if (!finite2(th))
            return ng_error(NG_ERR_NUMERIC, "toy descend: theta diverged at step %d (step size %g too large?)", k, eta);
        path[2 * k] = th[0];
        path[2 * k + 1] = th[1];
    }
    return NG_OK;
}
