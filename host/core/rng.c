/* rng.c: host side of the Philox streams (kernels/ng_math.h holds the generator itself). */
#include "natgrad/rng.h"

#include <math.h>

#include "ng_math.h"

uint64_t ng_rng_stream_key(uint64_t seed, ng_rng_purpose purpose) {
    return ng_rng_key(seed, (uint32_t)purpose);
}

uint64_t ng_rng_stream_key_rank(uint64_t seed, ng_rng_purpose purpose, uint32_t rank) {
    uint64_t k = ng_rng_key(seed, (uint32_t)purpose);
    return rank == 0 ? k : ng_mix64(k ^ ng_mix64(0x72616e6bull + (uint64_t)rank));
}

float ng_rng_uniform(uint64_t key, uint64_t step, uint64_t i) { return ng_uniform_at(key, step, i); }

double ng_rng_normal(uint64_t key, uint64_t step, uint64_t i) {
    /* words 2i and 2i+1: u1 in (0,1] (53-bit), u2 in [0,1) */
    uint64_t w1 = ng_philox_word(key, step, 2 * i), w2 = ng_philox_word(key, step, 2 * i + 1);
    double u1 = ((double)w1 + 1.0) / 4294967296.0;
    double u2 = (double)w2 / 4294967296.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void ng_rng_fill_normal(float *out, size_t n, float mean, float std, uint64_t key, uint64_t step) {
    size_t i;
    for (i = 0; i < n; i++) out[i] = mean + std * (float)ng_rng_normal(key, step, i);
}

void ng_rng_permutation(int *perm, int n, uint64_t key, uint64_t step) {
    int i;
    for (i = 0; i < n; i++) perm[i] = i;
    for (i = n - 1; i > 0; i--) {
        /* 64-bit draw scaled to [0, i]: bias below 2^-32, irrelevant for data shuffling */
        uint64_t w = ((uint64_t)ng_philox_word(key, step, 2 * (uint64_t)i) << 32) |
                     ng_philox_word(key, step, 2 * (uint64_t)i + 1);
        int j = (int)(w % (uint64_t)(i + 1));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}
