/* test_ica.c: linear ICA and the W^T W rule (natgrad/ica.h, Sohl-Dickstein section 2.9) against
 * references written here: the gradient against central differences of the objective, the
 * natural direction against dJ/dW W^T W formed from the gradient, the mixing matrix's condition
 * number, Amari's index on scaled permutations, and recovery of the mixing matrix up to
 * permutation and scale on a seeded problem (W A close to a scaled permutation). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "natgrad/ica.h"

static void matmul(int n, const double *A, const double *B, double *C) {
    int i, j, k;
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) {
            double s = 0.0;
            for (k = 0; k < n; k++) s += A[i + n * k] * B[k + n * j];
            C[i + n * j] = s;
        }
}

static int test_gradient_finite_differences(void) {
    ng_ica_problem p;
    double W[9] = {1.0, 0.2, -0.1, 0.3, 0.9, 0.2, -0.2, 0.1, 1.1}, G[9], h = 1e-6;
    int i;
    NGT_OK(ng_ica_problem_init(&p, 3, 400, 5.0, 1));
    NGT_OK(ng_ica_gradient(&p, W, G));
    for (i = 0; i < 9; i++) {
        double Wp[9], Wm[9], jp, jm;
        memcpy(Wp, W, sizeof W);
        memcpy(Wm, W, sizeof W);
        Wp[i] += h;
        Wm[i] -= h;
        NGT_OK(ng_ica_objective(&p, Wp, &jp));
        NGT_OK(ng_ica_objective(&p, Wm, &jm));
        /* central differences of a smooth function: O(h^2) plus rounding of J / h ~ 1e-10 */
        NGT_CLOSE(G[i], (jp - jm) / (2.0 * h), 1e-6, "dJ/dW against central differences");
    }
    ng_ica_problem_free(&p);
    return NGT_PASS;
}

static int test_natural_direction_is_wtw_rule(void) {
    ng_ica_problem p;
    double W[16], G[16], D[16], WtW[16], Wt[16], R[16];
    int i, j;
    NGT_OK(ng_ica_problem_init(&p, 4, 300, 3.0, 2));
    for (i = 0; i < 16; i++) W[i] = (i % 5 == 0 ? 1.0 : 0.0) + 0.1 * sin(1.7 * i);
    NGT_OK(ng_ica_gradient(&p, W, G));
    NGT_OK(ng_ica_direction(&p, NG_ICA_NATURAL, W, D));
    for (i = 0; i < 4; i++)
        for (j = 0; j < 4; j++) Wt[i + 4 * j] = W[j + 4 * i];
    matmul(4, Wt, W, WtW);
    matmul(4, G, WtW, R); /* eq. 43 as written: dJ/dW W^T W */
    for (i = 0; i < 16; i++) NGT_CLOSE(D[i], R[i], 1e-10 * (1.0 + fabs(R[i])), "natural direction = dJ/dW W^T W");
    NGT_OK(ng_ica_direction(&p, NG_ICA_PLAIN, W, D));
    for (i = 0; i < 16; i++) NGT_CLOSE(D[i], G[i], 0.0, "plain direction = gradient");
    ng_ica_problem_free(&p);
    return NGT_PASS;
}

static int test_problem(void) {
    ng_ica_problem p, q;
    double AtA[16], At[16], l1, ln, tr, var[4] = {0, 0, 0, 0};
    int i, j, k, T = 20000;
    NGT_OK(ng_ica_problem_init(&p, 2, T, 10.0, 3));
    /* 2 x 2: the condition number from the eigenvalues of A^T A */
    for (i = 0; i < 2; i++)
        for (j = 0; j < 2; j++) At[i + 2 * j] = p.A[j + 2 * i];
    matmul(2, At, p.A, AtA);
    tr = AtA[0] + AtA[3];
    l1 = 0.5 * tr + sqrt(0.25 * tr * tr - (AtA[0] * AtA[3] - AtA[1] * AtA[2]));
    ln = (AtA[0] * AtA[3] - AtA[1] * AtA[2]) / l1;
    NGT_CLOSE(sqrt(l1 / ln), 10.0, 1e-8, "condition number of A");
    /* unit-variance sources (5 standard errors of a variance estimate of Laplace draws: sqrt(5 / T)) */
    for (k = 0; k < T; k++)
        for (i = 0; i < 2; i++) var[i] += p.S[(size_t)k * 2 + i] * p.S[(size_t)k * 2 + i] / T;
    NGT_CLOSE(var[0], 1.0, 5.0 * sqrt(5.0 / T), "source variance");
    NGT_CLOSE(var[1], 1.0, 5.0 * sqrt(5.0 / T), "source variance");
    NGT_OK(ng_ica_problem_init(&q, 2, T, 10.0, 3));
    NGT_CHECK(memcmp(p.X, q.X, sizeof(double) * 2 * T) == 0, "same seed, same data");
    ng_ica_problem_free(&q);
    ng_ica_problem_free(&p);
    NGT_CHECK(ng_ica_problem_init(&p, 1, 10, 1.0, 1) == NG_ERR_INVALID_ARG, "one source refused");
    NGT_CHECK(ng_ica_problem_init(&p, 3, 10, 0.5, 1) == NG_ERR_INVALID_ARG, "cond < 1 refused");
    NGT_CHECK(ng_ica_problem_init(&p, 3, 2, 2.0, 1) == NG_ERR_INVALID_ARG, "fewer samples than sources refused");
    return NGT_PASS;
}

static int test_amari_index(void) {
    double P[9] = {0, 0, -2.5, 0.7, 0, 0, 0, 3.0, 0}, Q[9];
    int i;
    NGT_CLOSE(ng_amari_index(3, P), 0.0, 0.0, "scaled permutation");
    for (i = 0; i < 9; i++) Q[i] = 1.0;
    NGT_CLOSE(ng_amari_index(3, Q), 1.0, 1e-15, "all-equal matrix: the largest index");
    P[1] = 0.5;
    NGT_CHECK(ng_amari_index(3, P) > 0.0, "one off-permutation entry");
    return NGT_PASS;
}

/* Recovery up to permutation and scale with the W^T W rule; the plain gradient with the same
 * step count and its own largest stable step is far behind on an ill-conditioned mixture. */
static int test_recovery(void) {
    ng_ica_problem p;
    int n = 4, steps = 300, i, j;
    double W[16], P[16], *am = (double *)malloc(sizeof(double) * (steps + 1)), *J = (double *)malloc(sizeof(double) * (steps + 1));
    NGT_CHECK(am && J, "malloc");
    NGT_OK(ng_ica_problem_init(&p, n, 5000, 20.0, 7));
    for (i = 0; i < 16; i++) W[i] = i % 5 == 0;
    NGT_OK(ng_ica_train(&p, NG_ICA_NATURAL, 0.1, steps, W, J, am));
    ng_ica_global(&p, W, P);
    NGT_CHECK(am[steps] < 0.02, "Amari index after %d natural steps: %g (start %g)", steps, am[steps], am[0]);
    NGT_CHECK(J[steps] < J[0], "objective decreased: %g -> %g", J[0], J[steps]);
    /* each row and column of W A has one dominant entry: a scaled permutation */
    for (i = 0; i < n; i++) {
        double mx = 0.0, rest = 0.0;
        for (j = 0; j < n; j++) mx = fmax(mx, fabs(P[i + n * j]));
        for (j = 0; j < n; j++) rest += fabs(P[i + n * j]) == mx ? 0.0 : fabs(P[i + n * j]);
        NGT_CHECK(rest < 0.1 * mx, "row %d of W A: off entries %g against %g", i, rest, mx);
    }
    printf("  natural: Amari index %.4f -> %.2e after %d steps\n", am[0], am[steps], steps);
    {
        double best = 1.0, etas[4] = {0.3, 0.1, 0.03, 0.01};
        int e;
        for (e = 0; e < 4; e++) {
            ng_status s;
            for (i = 0; i < 16; i++) W[i] = i % 5 == 0;
            s = ng_ica_train(&p, NG_ICA_PLAIN, etas[e], steps, W, NULL, am);
            if (s == NG_OK && am[steps] < best) best = am[steps];
            printf("  plain, step %g: %s, Amari index %.3g\n", etas[e], s == NG_OK ? "ok" : "diverged", s == NG_OK ? am[steps] : NAN);
            ng_clear_error();
        }
        NGT_CHECK(best > 0.02, "the plain gradient should not have converged as far: best index %g", best);
    }
    free(am);
    free(J);
    ng_ica_problem_free(&p);
    return NGT_PASS;
}

static int test_bad_input(void) {
    ng_ica_problem p;
    double W[4] = {1, 2, 2, 4}, G[4], J;
    NGT_OK(ng_ica_problem_init(&p, 2, 50, 2.0, 1));
    NGT_CHECK(ng_ica_objective(&p, W, &J) == NG_ERR_NUMERIC && strstr(ng_last_error(), "singular"), "singular W: %s", ng_last_error());
    NGT_CHECK(ng_ica_gradient(&p, W, G) == NG_ERR_NUMERIC, "singular W, gradient");
    W[1] = NAN;
    NGT_CHECK(ng_ica_objective(&p, W, &J) == NG_ERR_NUMERIC, "NaN W");
    W[1] = 0.0;
    W[2] = 0.0;
    NGT_CHECK(ng_ica_train(&p, NG_ICA_NATURAL, 0.0, 3, W, NULL, NULL) == NG_ERR_INVALID_ARG, "zero step");
    NGT_CHECK(ng_ica_train(&p, (ng_ica_rule)5, 0.1, 3, W, NULL, NULL) == NG_ERR_INVALID_ARG, "bad rule");
    W[0] = W[3] = 1.0;
    NGT_CHECK(ng_ica_train(&p, NG_ICA_NATURAL, 1e200, 50, W, NULL, NULL) == NG_ERR_NUMERIC && strstr(ng_last_error(), "step"),
              "a huge step is reported: %s", ng_last_error());
    ng_ica_problem_free(&p);
    return NGT_PASS;
}

int main(void) {
    NGT_RUN(test_gradient_finite_differences);
    NGT_RUN(test_natural_direction_is_wtw_rule);
    NGT_RUN(test_problem);
    NGT_RUN(test_amari_index);
    NGT_RUN(test_recovery);
    NGT_RUN(test_bad_input);
    return ngt_finish();
}
