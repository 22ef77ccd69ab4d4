/* natgrad/toy.h: the badly parametrised 2-D Gaussian of Sohl-Dickstein's note (section 1.1,
 * Figure 1), in closed form, float64, host only.
 *
 * Model: q(x; theta) = N(x; A theta, I) with A = [[3, 1/3], [1/3, 0]], i.e. means
 * 3 theta1 + theta2 / 3 and theta1 / 3, unit variances (eq. 1). Data: either the exact distribution
 * p = N(A theta_true, I) (n_samples = 0) or n_samples draws from it. Objective (eq. 2):
 * J(theta) = -<log q(x; theta)>_p = log(2 pi) + (1/2) <|x - A theta|^2>_p, whose gradient is
 * A^T (A theta - xbar) (xbar: the data mean, A theta_true for the exact distribution).
 * The Fisher information (eq. 30) does not depend on theta: G = A^T A = [[9 + 1/9, 1], [1, 1/9]].
 * The natural gradient G^-1 grad J = theta - theta_star points straight at the optimum
 * theta_star = A^-1 xbar, so natural-gradient descent with step eta moves along the segment
 * theta_star + (1 - eta)^k (theta_init - theta_star); steepest descent follows
 * theta_star + (I - eta G)^k (theta_init - theta_star). In phi = G^(1/2) theta (eq. 18) the gradient is
 * G^(-1/2) grad J = phi - phi_star, and plain SGD in phi is natural-gradient descent in theta.
 *
 * Nothing here prints; bad arguments (NaN, non-positive step, no steps) return NG_ERR_INVALID_ARG
 * naming the argument. */
#ifndef NATGRAD_TOY_H
#define NATGRAD_TOY_H

#include <stdint.h>

#include "natgrad/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ng_toy {
    double A[2][2];         /* mean map: E_q[x] = A theta */
    double theta_true[2];   /* parameters that generated the data */
    double xbar[2];         /* data mean (A theta_true when n_samples = 0) */
    double scatter;         /* <|x - xbar|^2>_p (2 for the exact distribution) */
    int n_samples;          /* 0: exact expectation over p */
} ng_toy;

typedef enum ng_toy_method {
    NG_TOY_STEEPEST = 0,    /* theta -= eta grad J (eq. 3-4) */
    NG_TOY_NATURAL = 1,     /* theta -= eta G^-1 grad J (eq. 26-28) */
    NG_TOY_PHI_SGD = 2      /* phi -= eta grad_phi J, phi = G^(1/2) theta, mapped back (section 1.4) */
} ng_toy_method;

/* Data from theta_true: n_samples = 0 for the exact distribution, else that many draws of the
 * Philox stream (seed, NG_RNG_TOY). */
ng_status ng_toy_init(ng_toy *t, const double theta_true[2], int n_samples, uint64_t seed);
/* J(theta) (eq. 2) */
double ng_toy_objective(const ng_toy *t, const double theta[2]);
/* grad = dJ/dtheta (eq. 4 with the sign of a gradient) */
void ng_toy_gradient(const ng_toy *t, const double theta[2], double grad[2]);
/* KL(p || q_theta) between the true data distribution N(A theta_true, I) and the model */
double ng_toy_kl(const ng_toy *t, const double theta[2]);
/* G (row-major 2x2) = A^T A, the Fisher information at any theta */
void ng_toy_fisher(const ng_toy *t, double G[4]);
/* the minimiser of J: A^-1 xbar */
void ng_toy_optimum(const ng_toy *t, double theta_star[2]);

/* Symmetric square root and inverse square root of a symmetric positive definite 2x2 matrix
 * (row-major), from its eigendecomposition. NG_ERR_NUMERIC when S is not positive definite. */
ng_status ng_sym2_sqrt(const double S[4], double half[4], double inv_half[4]);

/* steps updates of `method` with step eta from theta0: path gets (steps + 1) rows of
 * (theta1, theta2), row 0 = theta0. */
ng_status ng_toy_descend(const ng_toy *t, ng_toy_method method, const double theta0[2], double eta,
                         int steps, double *path);

#ifdef __cplusplus
}
#endif
#endif
