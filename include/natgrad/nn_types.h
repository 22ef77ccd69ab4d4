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

/* Modes of the bn_merge op (natgrad/backend.h): the steps of synchronised batch norm's merge across
 * ranks, in float64, between which the caller all-reduces acc (host/models/net.c, cnn.c). */
enum { NG_BN_MERGE_COUNTS = 0, NG_BN_MERGE_SCATTER, NG_BN_MERGE_FINISH, NG_BN_MERGE_WEIGHT, NG_BN_MERGE_MEANS,
       NG_BN_MERGE_MODES };

/* Convolutional layers (natgrad/cnn.h, the conv_gather op): maps are N,C,H,W tensors (w fastest,
 * then h, channel, image), float32. A window of kh x kw input pixels with the given stride and
 * zero padding gives ho = (h + 2 pad - kh) / stride + 1 rows of outputs (wo likewise). */
typedef struct ng_conv_shape {
    int n, c, h, w;     /* input maps */
    int kh, kw;         /* window */
    int stride, pad;    /* stride >= 1, 0 <= pad < kh, kw */
} ng_conv_shape;

/* Modes of the conv_gather op: each output element is a fixed-order gather of input elements.
 *   IM2COL         col (P, K) per image, P = ho wo output pixels, K = c kh kw (channel, kernel row,
 *                  kernel column; column-major, image b at b P K): the window pixels, 0 in padding
 *   COL2IM         x (n,c,h,w) = the sum of the col entries that IM2COL copies from each pixel
 *                  (the transpose of IM2COL: the input gradient of a convolution)
 *   POOL_MAX/AVG   y (n,c,ho,wo): the window's maximum (padding excluded; the first maximum in
 *                  row-major window order wins; NaN propagates) / its sum over kh kw (padding
 *                  counts as 0)
 *   POOL_MAX_BACK  dx (n,c,h,w) from dy (n,c,ho,wo) and x: dy routed to each window's maximum
 *   POOL_AVG_BACK  dx (n,c,h,w): the sum of dy / (kh kw) over the windows holding the pixel
 *   TO_NHWC        out (c, n h w) column-major (channel fastest) from x (n,c,h,w)
 *   TO_NCHW        the inverse: out (n,c,h,w) from x (c, n h w)
 *   AUGMENT        out (n,c,h,w): image b of x shifted by (dy, dx) in [-pad, pad]^2 (zeros
 *                  entering; a random crop of the image padded by pad) and, when flip is set,
 *                  mirrored left-right with probability 1/2; dy, dx and the mirror of image b
 *                  come from the Philox uniforms 3b, 3b + 1, 3b + 2 of (key, step)
 *                  (ng_augment_draw), the same on every backend
 *   POOL_MAX_R     y (n,c,ho,wo) from g (n,c,h,w) and x: each window takes g at the position of
 *                  x's maximum (the same first maximum as POOL_MAX): the R-operator of max
 *                  pooling, R{y} = R{x} at the argmax (the tangent of POOL_MAX_BACK's transpose) */
enum {
    NG_CONV_IM2COL = 0,
    NG_CONV_COL2IM,
    NG_CONV_POOL_MAX,
    NG_CONV_POOL_AVG,
    NG_CONV_POOL_MAX_BACK,
    NG_CONV_POOL_AVG_BACK,
    NG_CONV_TO_NHWC,
    NG_CONV_TO_NCHW,
    NG_CONV_AUGMENT,
    NG_CONV_POOL_MAX_R,
    NG_CONV_MODE_COUNT
};

#endif
