/* natgrad/ica.h: linear ICA (Bell & Sejnowski; Amari 1998), the model on which the W^T W rule of
 * Sohl-Dickstein's note (section 2.9, eq. 43) is the natural gradient. Float64 on the host: the
 * demonstration is small (n <= 64 sources).
 *
 * Data: n independent unit-variance Laplace sources S (n, T), mixed as X = A S with A (n, n)
 * = U diag(s) V^T, U and V random orthogonal matrices and s geometric from 1 to 1 / cond, so the
 * condition number of A is `cond`. Model: y = W x with independent sources of density
 * p(y) = 1 / (pi cosh y) (super-Gaussian, score tanh). Objective (the negative log-likelihood per
 * sample): J(W) = -log|det W| + <sum_i log cosh(y_i)> + n log pi. Its gradient
 * dJ/dW = -W^-T + <tanh(y) x^T>; the natural gradient (Amari's relative gradient, eq. 43)
 * dJ/dW W^T W = (<tanh(y) y^T> - I) W, which needs no inverse.
 * Matrices are column-major double arrays, n x n: M[i + n j]. Prints nothing. */
#ifndef NATGRAD_ICA_H
#define NATGRAD_ICA_H

#include <stdint.h>

#include "natgrad/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ng_ica_problem {
    int n, T;
    double *A;  /* (n, n) mixing matrix */
    double *S;  /* (n, T) sources */
    double *X;  /* (n, T) mixtures A S */
} ng_ica_problem;

typedef enum ng_ica_rule {
    NG_ICA_PLAIN = 0,   /* W -= eta dJ/dW */
    NG_ICA_NATURAL = 1  /* W -= eta dJ/dW W^T W (eq. 43) */
} ng_ica_rule;

/* n in 2..64, T >= n, cond >= 1: sources and mixing matrix from the Philox stream (seed, NG_RNG_ICA). */
ng_status ng_ica_problem_init(ng_ica_problem *p, int n, int T, double cond, uint64_t seed);
void ng_ica_problem_free(ng_ica_problem *p);

/* J(W); NG_ERR_NUMERIC when W is singular. */
ng_status ng_ica_objective(const ng_ica_problem *p, const double *W, double *J);
/* grad = dJ/dW (n, n); NG_ERR_NUMERIC when W is singular. */
ng_status ng_ica_gradient(const ng_ica_problem *p, const double *W, double *grad);
/* dir = the update direction of `rule` at W (dJ/dW, or dJ/dW W^T W computed as (<tanh(y) y^T> - I) W). */
ng_status ng_ica_direction(const ng_ica_problem *p, ng_ica_rule rule, const double *W, double *dir);
/* Amari's performance index of P = W A (n, n): (1 / (2 n (n - 1))) [sum_i (sum_j |p_ij| / max_j |p_ij| - 1)
 * + sum_j (sum_i |p_ij| / max_i |p_ij| - 1)], 0 exactly when P is a scaled permutation. */
double ng_amari_index(int n, const double *P);
/* W A into P */
void ng_ica_global(const ng_ica_problem *p, const double *W, double *P);
/* steps updates of `rule` with step eta from W (in place). Per step k = 0..steps (k = 0: the start),
 * when non-NULL: J[k], amari[k]. NG_ERR_NUMERIC (naming the step) when W becomes singular or not
 * finite: the step size was too large. */
ng_status ng_ica_train(const ng_ica_problem *p, ng_ica_rule rule, double eta, int steps, double *W, double *J, double *amari);

#ifdef __cplusplus
}
#endif
#endif
