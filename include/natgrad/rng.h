/* natgrad/rng.h: host front end of the Philox4x32-10 streams defined in kernels/ng_math.h.
 * A stream is keyed by (seed, purpose, rank) and indexed by (step, element). Purposes are fixed
 * numbers so checkpoints written by one version replay the same streams in the next. Rank 0's key
 * is the (seed, purpose) key of single-process runs; other ranks of a multi-process run get
 * unrelated streams for what each draws on its own (its PCD particles, its shard's binarisation),
 * while streams every rank must share (the data permutation) use rank 0's key. */
#ifndef NATGRAD_RNG_H
#define NATGRAD_RNG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ng_rng_purpose {
    NG_RNG_INIT_WEIGHTS = 1, /* normal weight initialisation (host) */
    NG_RNG_BINARIZE = 2,     /* stochastic binarisation of training batches */
    NG_RNG_GIBBS = 3,        /* Gibbs sampling of PCD / CD chains */
    NG_RNG_AIS = 4,          /* annealed importance sampling chains */
    NG_RNG_SHUFFLE = 5,      /* per-epoch permutation of the training set (host) */
    NG_RNG_PARTICLES = 6,    /* initial fantasy particles */
    NG_RNG_EVAL_BINARIZE = 7,/* binarisation of evaluation data (fixed per seed) */
    NG_RNG_RAISE = 8,        /* reverse AIS chains */
    NG_RNG_MONITOR = 9,      /* training monitors (reconstruction), indexed by update count */
    NG_RNG_FANG = 10,        /* FANG's hidden samples of the particles, indexed by update count */
    NG_RNG_CURVES = 11,      /* curves-like data generator (host), indexed by image number */
    NG_RNG_FISHER_TARGETS = 12, /* targets sampled from a network's predictive distribution */
    NG_RNG_KFAC_TARGETS = 13, /* K-FAC's sampled targets of its G statistics, indexed by update */
    NG_RNG_TOY = 20,         /* samples of Sohl-Dickstein's 2-D Gaussian toy (host) */
    NG_RNG_ICA = 21,         /* sources and mixing matrix of the linear ICA demonstration (host) */
    NG_RNG_DIAG_TARGETS = 22,/* targets sampled by the diagonal Fisher preconditioner, indexed by update */
    NG_RNG_AUGMENT = 23,     /* cnn data augmentation (crops, mirrors), indexed by gradient and chunk */
    NG_RNG_TN_TARGETS = 24,  /* truncated Newton's sampled-Fisher targets, indexed by update (ng_tn_fisher_step) */
    NG_RNG_TEST = 100        /* tests */
} ng_rng_purpose;

uint64_t ng_rng_stream_key(uint64_t seed, ng_rng_purpose purpose);
/* The key of (seed, purpose) on rank `rank` (rank 0: ng_rng_stream_key). */
uint64_t ng_rng_stream_key_rank(uint64_t seed, ng_rng_purpose purpose, uint32_t rank);
/* Uniform in (0, 1] of element i of stream (key, step): identical to the device kernels' draws. */
float ng_rng_uniform(uint64_t key, uint64_t step, uint64_t i);
/* Standard normal of element i (Box-Muller on two words, double precision, host only). */
double ng_rng_normal(uint64_t key, uint64_t step, uint64_t i);
/* Fill host buffer with N(mean, std^2) draws, element i of the stream for out[i]. */
void ng_rng_fill_normal(float *out, size_t n, float mean, float std, uint64_t key, uint64_t step);
/* A uniformly random permutation of 0..n-1 (Fisher-Yates driven by the stream). */
void ng_rng_permutation(int *perm, int n, uint64_t key, uint64_t step);

#ifdef __cplusplus
}
#endif
#endif
