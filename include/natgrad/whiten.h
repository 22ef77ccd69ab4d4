/* natgrad/whiten.h: PCA whitening of samples on the device (host/optim/whiten.c), the statistics
 * step of PRONG (Desjardins et al. 2015, Algorithm 1 lines 8-9 and eq. 7).
 *
 * Samples are the columns of X (d, n) (trans = 0), or the rows of X (n, d) (trans = 1: one NCHW
 * image is the (H*W, C) column-major matrix whose rows are the pixels, so the whitening across
 * feature maps of section 4.3 feeds images straight in). Batches are added one after another;
 * the mean c and the scatter sum_i (x_i - c)(x_i - c)^T are merged exactly (Chan, Golub & LeVeque's
 * pairwise update: each batch is centred on its own mean before its syrk), so no precision is lost
 * to large means as with E[x x^T] - c c^T in float32.
 *
 * ng_whiten_compute then forms Sigma = scatter / n, its eigendecomposition
 * Sigma = E diag(lambda) E^T (backend syevd, float32; float64 when float32 fails; several whiteners
 * at once by ng_whiten_compute_batch, one batched eigendecomposition call), and
 *   U = diag(lambda + eps)^(-1/2) E^T          (eq. 7; negative rounding-error eigenvalues count as 0)
 * so that U (x - c) has covariance diag(lambda / (lambda + eps)), the identity up to eps. The sign
 * of each eigenvector is fixed (its dot product with a fixed positive vector `probe` is >= 0), so
 * covariances equal up to rounding give the same U on every backend and number of ranks (up to
 * rotations within repeated eigenvalues, which no convention can pin down).
 * U is kept transposed, UT = U^T = E diag(lambda + eps)^(-1/2) (d, d): column j of UT is row j of U,
 * so y = U (x - c) is one gemm with op(A) = T. U^-1 = E diag(lambda + eps)^(1/2) is what PRONG's
 * reparametrisation needs to keep a layer's function (V <- W U^-1).
 *
 * All buffers are allocated once by ng_whiten_init; add / compute / apply allocate nothing. The
 * scalars s = (lambda + eps)^(-1/2) are computed on the host (d floats there and back per compute).
 * Must not: print, allocate after init. */
#ifndef NATGRAD_WHITEN_H
#define NATGRAD_WHITEN_H

#include "natgrad/backend.h"
#include "natgrad/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ng_comm;

typedef struct ng_whiten {
    ng_backend *be;
    int d;           /* sample dimension */
    int chunk;       /* the most samples one internal pass handles (longer batches are split) */
    double n;        /* samples added since the last reset */
    float eps;       /* of the last compute */
    int retries;     /* float32 eigendecompositions that failed and were redone in float64 */
    ng_arena arena;
    ng_tensor mean;   /* (d)     c: the mean of the samples added */
    ng_tensor M;      /* (d, d)  lower triangle: sum of (x - c)(x - c)^T over the samples added */
    ng_tensor E;      /* (d, d)  eigenvectors of Sigma (columns), after compute */
    ng_tensor lambda; /* (d)     eigenvalues of Sigma, ascending, after compute */
    ng_tensor s;      /* (d, 2)  column 0: (max(lambda, 0) + eps)^(-1/2); column 1: its inverse */
    ng_tensor UT;     /* (d, d)  U^T after compute */
    ng_tensor uc;     /* (d)     U c after compute */
    ng_tensor xc;     /* (d * chunk) scratch: one centred piece */
    ng_tensor ones;   /* (chunk) ones */
    ng_tensor mk, delta; /* (d) scratch */
    ng_tensor probe;  /* (d)     fixed vector: each eigenvector's sign makes its dot product with it >= 0 */
    ng_tensor Ed, wd; /* float64 (d, d) and (d): the fallback eigendecomposition */
    float *host;      /* (2 d) host scratch for lambda and s */
} ng_whiten;

/* Buffers for samples of dimension d (>= 1), passes of at most chunk (>= 1) samples. */
ng_status ng_whiten_init(ng_backend *be, int d, int chunk, ng_whiten *w);
void ng_whiten_free(ng_whiten *w); /* zeroed or NULL: nothing */
/* Forget the samples added (n = 0). */
void ng_whiten_reset(ng_whiten *w);
/* Add n samples: the columns of X (d, n), ld ldx >= d (trans = 0), or the rows of X (n, d),
 * ldx >= n (trans = 1). mean and M are updated (=, merged with what was there). */
ng_status ng_whiten_add(ng_whiten *w, const float *X, int ldx, int n, int trans);
/* From the samples added (n >= 1): E, lambda, s, UT and uc for the regulariser eps > 0. */
ng_status ng_whiten_compute(ng_whiten *w, float eps);
/* ng_whiten_compute for count (1..NG_EIG_BATCH_MAX) whiteners of one backend, their
 * eigendecompositions in one ng_syevd_batched call (concurrent on the CPU's threads); each
 * whitener ends as ng_whiten_compute would leave it (on the CPU bit-identical). */
ng_status ng_whiten_compute_batch(ng_whiten *const *ws, int count, float eps);
/* out (d, d), ld ldo = U^-1 = E diag(lambda + eps)^(1/2)  (=), after compute. */
ng_status ng_whiten_uinv(ng_whiten *w, float *out, int ldo);
/* Y (d, n) = U (X - c) for the columns of X (d, n) (=; n <= chunk, Y must not overlap X), after
 * compute. */
ng_status ng_whiten_apply(ng_whiten *w, const float *X, int ldx, int n, float *Y, int ldy);

/* ---- several ranks (natgrad/comm.h; comm NULL or one rank: the single-process calls) ----------
 * Each rank adds its own samples (any number, 0 included); ng_whiten_allreduce then merges the
 * ranks' (n_r, c_r, M_r) exactly as the batches of one process are merged: the global mean
 * c = sum_r (n_r / n) c_r is all-reduced first, then each rank adds n_r (c_r - c)(c_r - c)^T to
 * its scatter and the scatters are all-reduced (Chan et al.), so no rank averages means of
 * uneven shards. Afterwards n, mean and M are identical on every rank (every rank must call it;
 * NG_ERR_INVALID_ARG when no rank has a sample). */
ng_status ng_whiten_allreduce(ng_whiten *w, struct ng_comm *comm);
/* ng_whiten_compute(eps) of k statistics (merged, identical on every rank): each rank computes
 * the eigendecompositions it owns (ng_whiten_owners) and broadcasts E, lambda, s, UT and uc, so
 * every rank ends with identical results; a failure on any rank fails every rank (the failing
 * rank's message, the others name the failure). */
ng_status ng_whiten_compute_shared(ng_whiten *const *w, int k, float eps, struct ng_comm *comm);
/* owner[i] of k eigendecompositions of dimensions d[i] on `world` ranks, balanced by the cost
 * d^3: the largest first, each to the rank with the least work so far (ties: the lowest rank). */
void ng_whiten_owners(const int *d, int k, int world, int *owner);

#ifdef __cplusplus
}
#endif
#endif
