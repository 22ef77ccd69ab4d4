/* ica.c: linear ICA with the plain gradient and the W^T W rule (natgrad/ica.h), float64 on the
 * host. Matrices are column-major n x n double arrays; data (n, T) one sample per column. Prints
 * nothing; allocates only in ng_ica_problem_init and per call of the small helpers below. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "natgrad/ica.h"
#include "natgrad/rng.h"

void ng_ica_problem_free(ng_ica_problem *p) {
    if (!p) return;
    free(p->A);
    free(p->S);
    free(p->X);
    memset(p, 0, sizeof *p);
}

/* a random orthogonal matrix: Gram-Schmidt (twice) on Gaussian columns of stream (key, step) */
static void random_orthogonal(int n, uint64_t key, uint64_t step, double *Q) {
    int i, j, k, pass;
    for (i = 0; i < n * n; i++) Q[i] = ng_rng_normal(key, step, (uint64_t)i);
    for (j = 0; j < n; j++) {
        double nr = 0.0;
        for (pass = 0; pass < 2; pass++)
            for (k = 0; k < j; k++) {
                double d = 0.0;
                for (i = 0; i < n; i++) d += Q[i + n * k] * Q[i + n * j];
                for (i = 0; i < n; i++) Q[i + n * j] -= d * Q[i + n * k];
            }
        for (i = 0; i < n; i++) nr += Q[i + n * j] * Q[i + n * j];
        nr = sqrt(nr);
        for (i = 0; i < n; i++) Q[i + n * j] /= nr;
    }
}

ng_status ng_ica_problem_init(ng_ica_problem *p, int n, int T, double cond, uint64_t seed) {
    uint64_t key = ng_rng_stream_key(seed, NG_RNG_ICA);
    double *U, *V;
    int i, j, k;
    if (!p) return ng_error(NG_ERR_INVALID_ARG, "ica: NULL problem");
    memset(p, 0, sizeof *p);
    if (n < 2 || n > 64) return ng_error(NG_ERR_INVALID_ARG, "ica: %d sources, want 2 .. 64", n);
    if (T < n || T > 10000000) return ng_error(NG_ERR_INVALID_ARG, "ica: %d samples, want %d .. 1e7", T, n);
    if (!(cond >= 1.0) || !isfinite(cond)) return ng_error(NG_ERR_INVALID_ARG, "ica: condition number %g, want >= 1", cond);
    p->n = n;
    p->T = T;
    p->A = (double *)malloc(sizeof(double) * n * n);
    p->S = (double *)malloc(sizeof(double) * (size_t)n * T);
    p->X = (double *)malloc(sizeof(double) * (size_t)n * T);
    U = (double *)malloc(sizeof(double) * n * n);
    V = (double *)malloc(sizeof(double) * n * n);
    if (!p->A || !p->S || !p->X || !U || !V) {
        free(U);
        free(V);
        ng_ica_problem_free(p);
        return ng_error(NG_ERR_OOM, "ica: out of host memory for %d x %d samples", n, T);
    }
    /* Laplace sources of unit variance: scale 1/sqrt(2), by inversion of a uniform draw */
    for (k = 0; k < T; k++)
        for (i = 0; i < n; i++) {
            double u = (double)ng_rng_uniform(key, 0, (uint64_t)k * n + i) - 0.5; /* in (-0.5, 0.5] */
            double a = fabs(u), e = a >= 0.5 ? 40.0 : -log(1.0 - 2.0 * a);
            p->S[(size_t)k * n + i] = (u < 0 ? -e : e) / sqrt(2.0);
        }
    random_orthogonal(n, key, 1, U);
    random_orthogonal(n, key, 2, V);
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) {
            double a = 0.0;
            for (k = 0; k < n; k++) a += U[i + n * k] * pow(cond, -(double)k / (n - 1)) * V[j + n * k];
            p->A[i + n * j] = a;
        }
    for (k = 0; k < T; k++)
        for (i = 0; i < n; i++) {
            double x = 0.0;
            for (j = 0; j < n; j++) x += p->A[i + n * j] * p->S[(size_t)k * n + j];
            p->X[(size_t)k * n + i] = x;
        }
    free(U);
    free(V);
    return NG_OK;
}

/* LU with partial pivoting of a copy of W: log|det W| and W^-T (inv_t, when non-NULL) */
static ng_status lu_logdet_inv_t(int n, const double *W, double *logdet, double *inv_t) {
    double *L = (double *)malloc(sizeof(double) * n * n), *I = NULL, ld = 0.0, mx = 0.0;
    int *piv = (int *)malloc(sizeof(int) * n), i, j, k;
    ng_status s = NG_OK;
    if (!L || !piv) {
        free(L);
        free(piv);
        return ng_error(NG_ERR_OOM, "ica: out of host memory");
    }
    memcpy(L, W, sizeof(double) * n * n);
    for (i = 0; i < n * n; i++) mx = fmax(mx, fabs(L[i]));
    for (k = 0; k < n && s == NG_OK; k++) {
        int p = k;
        for (i = k + 1; i < n; i++)
            if (fabs(L[i + n * k]) > fabs(L[p + n * k])) p = i;
        piv[k] = p;
        if (!(fabs(L[p + n * k]) > 1e-300 + 1e-14 * mx)) {
            s = ng_error(NG_ERR_NUMERIC, "ica: W is singular (pivot %d)", k);
            break;
        }
        if (p != k)
            for (j = 0; j < n; j++) {
                double t = L[k + n * j];
                L[k + n * j] = L[p + n * j];
                L[p + n * j] = t;
            }
        ld += log(fabs(L[k + n * k]));
        for (i = k + 1; i < n; i++) {
            double f = L[i + n * k] /= L[k + n * k];
            for (j = k + 1; j < n; j++) L[i + n * j] -= f * L[k + n * j];
        }
    }
    if (s == NG_OK && inv_t) {
        /* solve W Z = I column by column; W^-T = Z^T */
        I = (double *)malloc(sizeof(double) * n);
        if (!I) s = ng_error(NG_ERR_OOM, "ica: out of host memory");
        for (j = 0; s == NG_OK && j < n; j++) {
            for (i = 0; i < n; i++) I[i] = i == j;
            for (k = 0; k < n; k++)
                if (piv[k] != k) {
                    double t = I[k];
                    I[k] = I[piv[k]];
                    I[piv[k]] = t;
                }
            for (i = 0; i < n; i++)
                for (k = 0; k < i; k++) I[i] -= L[i + n * k] * I[k];
            for (i = n - 1; i >= 0; i--) {
                for (k = i + 1; k < n; k++) I[i] -= L[i + n * k] * I[k];
                I[i] /= L[i + n * i];
            }
            for (i = 0; i < n; i++) inv_t[j + n * i] = I[i]; /* Z[i, j] = W^-1[i, j] -> (W^-T)[j, i] */
        }
    }
    if (s == NG_OK) *logdet = ld;
    free(L);
    free(piv);
    free(I);
    return s;
}

static int finite_mat(int n, const double *W) {
    int i;
    for (i = 0; i < n * n; i++)
        if (!isfinite(W[i])) return 0;
    return 1;
}

ng_status ng_ica_objective(const ng_ica_problem *p, const double *W, double *J) {
    int n = p->n, i, j, k;
    double ld, sum = 0.0;
    if (!finite_mat(n, W)) return ng_error(NG_ERR_NUMERIC, "ica: W is not finite");
    NG_TRY(lu_logdet_inv_t(n, W, &ld, NULL));
    for (k = 0; k < p->T; k++)
        for (i = 0; i < n; i++) {
            double y = 0.0, a;
            for (j = 0; j < n; j++) y += W[i + n * j] * p->X[(size_t)k * n + j];
            /* log cosh y = |y| + log(1 + e^(-2|y|)) - log 2, stable for large |y| */
            a = fabs(y);
            sum += a + log1p(exp(-2.0 * a)) - log(2.0);
        }
    *J = -ld + sum / p->T + n * log(M_PI);
    return NG_OK;
}

/* C = <tanh(y) v^T> over the samples, v = x (with_y = 0) or y = W x (with_y = 1) */
static void score_moment(const ng_ica_problem *p, const double *W, int with_y, double *C) {
    int n = p->n, i, j, k;
    double *y = (double *)malloc(sizeof(double) * n);
    memset(C, 0, sizeof(double) * n * n);
    if (!y) return;
    for (k = 0; k < p->T; k++) {
        const double *x = p->X + (size_t)k * n;
        for (i = 0; i < n; i++) {
            double s = 0.0;
            for (j = 0; j < n; j++) s += W[i + n * j] * x[j];
            y[i] = s;
        }
        for (j = 0; j < n; j++) {
            double v = with_y ? y[j] : x[j];
            for (i = 0; i < n; i++) C[i + n * j] += tanh(y[i]) * v;
        }
    }
    for (i = 0; i < n * n; i++) C[i] /= p->T;
    free(y);
}

ng_status ng_ica_gradient(const ng_ica_problem *p, const double *W, double *grad) {
    int n = p->n, i;
    double ld, *Wit = (double *)malloc(sizeof(double) * n * n);
    ng_status s;
    if (!Wit) return ng_error(NG_ERR_OOM, "ica: out of host memory");
    if (!finite_mat(n, W)) {
        free(Wit);
        return ng_error(NG_ERR_NUMERIC, "ica: W is not finite");
    }
    s = lu_logdet_inv_t(n, W, &ld, Wit);
    if (s == NG_OK) {
        score_moment(p, W, 0, grad);
        for (i = 0; i < n * n; i++) grad[i] -= Wit[i];
    }
    free(Wit);
    return s;
}

ng_status ng_ica_direction(const ng_ica_problem *p, ng_ica_rule rule, const double *W, double *dir) {
    int n = p->n, i, j, k;
    double *C;
    if (rule == NG_ICA_PLAIN) return ng_ica_gradient(p, W, dir);
    if (rule != NG_ICA_NATURAL) return ng_error(NG_ERR_INVALID_ARG, "ica: unknown rule %d", (int)rule);
    if (!finite_mat(n, W)) return ng_error(NG_ERR_NUMERIC, "ica: W is not finite");
    C = (double *)malloc(sizeof(double) * n * n);
    if (!C) return ng_error(NG_ERR_OOM, "ica: out of host memory");
    /* eq. 43: dJ/dW W^T W = (-W^-T + <tanh(y) x^T>) W^T W = (<tanh(y) y^T> - I) W */
    score_moment(p, W, 1, C);
    for (i = 0; i < n; i++) C[i + n * i] -= 1.0;
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) {
            double s = 0.0;
            for (k = 0; k < n; k++) s += C[i + n * k] * W[k + n * j];
            dir[i + n * j] = s;
        }
    free(C);
    return NG_OK;
}

double ng_amari_index(int n, const double *P) {
    double r = 0.0;
    int i, j;
    for (i = 0; i < n; i++) {
        double s = 0.0, m = 0.0;
        for (j = 0; j < n; j++) {
            s += fabs(P[i + n * j]);
            m = fmax(m, fabs(P[i + n * j]));
        }
        r += m > 0 ? s / m - 1.0 : (double)(n - 1);
    }
    for (j = 0; j < n; j++) {
        double s = 0.0, m = 0.0;
        for (i = 0; i < n; i++) {
            s += fabs(P[i + n * j]);
            m = fmax(m, fabs(P[i + n * j]));
        }
        r += m > 0 ? s / m - 1.0 : (double)(n - 1);
    }
    return r / (2.0 * n * (n - 1));
}

void ng_ica_global(const ng_ica_problem *p, const double *W, double *P) {
    int n = p->n, i, j, k;
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) {
            double s = 0.0;
            for (k = 0; k < n; k++) s += W[i + n * k] * p->A[k + n * j];
            P[i + n * j] = s;
        }
}

ng_status ng_ica_train(const ng_ica_problem *p, ng_ica_rule rule, double eta, int steps, double *W, double *J, double *amari) {
    int n, k, i;
    double *D, *P;
    ng_status s = NG_OK;
    if (!p || !W) return ng_error(NG_ERR_INVALID_ARG, "ica train: NULL argument");
    if (!(eta > 0.0) || !isfinite(eta)) return ng_error(NG_ERR_INVALID_ARG, "ica train: step size %g must be positive", eta);
    if (steps < 0) return ng_error(NG_ERR_INVALID_ARG, "ica train: steps %d is negative", steps);
    if (rule != NG_ICA_PLAIN && rule != NG_ICA_NATURAL) return ng_error(NG_ERR_INVALID_ARG, "ica train: unknown rule %d", (int)rule);
    n = p->n;
    D = (double *)malloc(sizeof(double) * n * n);
    P = (double *)malloc(sizeof(double) * n * n);
    if (!D || !P) {
        free(D);
        free(P);
        return ng_error(NG_ERR_OOM, "ica train: out of host memory");
    }
    for (k = 0; k <= steps && s == NG_OK; k++) {
        if (J) s = ng_ica_objective(p, W, &J[k]);
        if (s == NG_OK && amari) {
            ng_ica_global(p, W, P);
            amari[k] = ng_amari_index(n, P);
        }
        if (s == NG_OK && k < steps) {
            s = ng_ica_direction(p, rule, W, D);
            if (s == NG_OK) {
                for (i = 0; i < n * n; i++) W[i] -= eta * D[i];
                if (!finite_mat(n, W)) s = ng_error(NG_ERR_NUMERIC, "ica train: W not finite");
            }
        }
        if (s != NG_OK) ng_error_wrap(s, "ica train, step %d (step size %g too large?): ", k, eta);
    }
    free(D);
    free(P);
    return s;
}
