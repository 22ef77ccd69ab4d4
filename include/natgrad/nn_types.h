/* natgrad/nn_types.h: the activation, loss and outer-scale codes shared by the network engine (natgrad/net.h),
 * the op table (natgrad/backend.h) and the element bodies (kernels/ng_math.h). Plain C, no
 * dependencies, valid in CUDA C++. */
#ifndef NATGRAD_NN_TYPES_H
#define NATGRAD_NN_TYPES_H

/* Unit nonlinearities a = f(z). Softmax acts on a whole column (output layers only). */
enum {
    NG_ACT_LINEAR = 0,
    NG_ACT_LOGISTIC,
    NG_ACT_TANH,
    NG_ACT_RELU,
    NG_ACT_SOFTMAX,
    NG_ACT_COUNT
};

/* Matching losses (output nonlinearity + negative log-likelihood), per case, of the output
 * pre-activation z with y = f(z) and target t:
 *   SQUARED      linear y,   0.5 sum (y - t)^2             (Gaussian, unit variance)
 *   BERNOULLI    logistic y, sum softplus(z) - t z         (cross-entropy, t in [0, 1])
 *   CATEGORICAL  softmax y,  sum t (logsumexp(z) - z)      (cross-entropy, t a distribution)
 * For each, dL/dz = y - t and the Hessian of L in z is H = I, diag(y(1-y)), diag(y) - y y^T. */
enum {
    NG_LOSS_SQUARED = 0,
    NG_LOSS_BERNOULLI,
    NG_LOSS_CATEGORICAL,
    NG_LOSS_COUNT
};

/* Extra mode of the loss_hvp op: out = scale d (d^T v) per column (d in the y slot): the per-case
 * outer products of sampled / empirical Fisher products. */
#define NG_LOSS_OUTER NG_LOSS_COUNT

/* Modes of the outer_scale op (natgrad/backend.h): K-FAC's row / column scalings, eigenvalue
 * scalings w^(-1/2) and the Stein division 1 / (1 - u v) of its block-tridiagonal inverse. */
enum { NG_OSCALE_MUL = 0, NG_OSCALE_RSQRT = 1, NG_OSCALE_STEIN = 2, NG_OSCALE_SQUARE = 3, NG_OSCALE_POW = 4 };

#endif
