/* simt_curand.h: the cuRAND device API subset the kernels may use, for the SIMT emulator
 * (included by simt.h; tests/simt/curand_kernel.h redirects `#include <curand_kernel.h>` here).
 * Generator: curandStatePhilox4_32_10_t only (curandState / XORWOW is deliberately absent, so using
 * it fails to compile). The block function is the project's ng_philox4x32 (kernels/ng_math.h) and
 * the state machine follows cuRAND's documented behaviour, so a stream here equals the GPU's:
 *   curand_init(seed, subsequence, offset): key = (lo, hi) of seed, counter = (0, 0, lo, hi) of
 *   subsequence, then skip `offset` 32-bit words; curand() returns the words of successive Philox
 *   outputs in order x, y, z, w.
 * Normals follow cuRAND's host-side Box-Muller (logf, sqrtf, sinf, cosf); a GPU uses __sincosf and
 * may differ in the last bits.
 *
 * Must not: allocate or keep global state; the state lives where the kernel puts it. */
#ifndef NG_SIMT_CURAND_H
#define NG_SIMT_CURAND_H

#include "ng_math.h"

/* Same layout as cuRAND's state so that sizeof() and device arrays of states agree. */
struct curandStatePhilox4_32_10 {
    uint4 ctr;
    uint4 output;
    uint2 key;
    unsigned int STATE;
    int boxmuller_flag;
    int boxmuller_flag_double;
    float boxmuller_extra;
    double boxmuller_extra_double;
};
typedef struct curandStatePhilox4_32_10 curandStatePhilox4_32_10_t;

namespace ng_simt {

static inline uint4 philox_block(uint4 ctr, uint2 key) {
    ng_u32x4 c, o;
    uint4 r;
    c.x = ctr.x;
    c.y = ctr.y;
    c.z = ctr.z;
    c.w = ctr.w;
    o = ng_philox4x32(c, key.x, key.y, 10);
    r.x = o.x;
    r.y = o.y;
    r.z = o.z;
    r.w = o.w;
    return r;
}

/* Advance the low 64 bits of the counter by n blocks, carrying into the high half the way cuRAND
 * does: the carry out of ctr.y is detected by comparing with the (possibly wrapped) high word of n,
 * so n >= 0xffffffff00000000 with a carry out of ctr.x loses that carry, as in cuRAND. */
static inline void philox_advance(curandStatePhilox4_32_10_t *s, unsigned long long n) {
    unsigned int lo = (unsigned int)n, hi = (unsigned int)(n >> 32);
    s->ctr.x += lo;
    if (s->ctr.x < lo) hi++;
    s->ctr.y += hi;
    if (s->ctr.y >= hi) return;
    s->ctr.z++;
    if (s->ctr.z != 0u) return;
    s->ctr.w++;
}

/* Advance the high 64 bits of the counter (the subsequence) by n. */
static inline void philox_advance_hi(curandStatePhilox4_32_10_t *s, unsigned long long n) {
    unsigned int lo = (unsigned int)n, hi = (unsigned int)(n >> 32);
    s->ctr.z += lo;
    if (s->ctr.z < lo) hi++;
    s->ctr.w += hi;
}

/* 128-bit increment of the counter by one block. */
static inline void philox_next(curandStatePhilox4_32_10_t *s) {
    if (++s->ctr.x != 0u) return;
    if (++s->ctr.y != 0u) return;
    if (++s->ctr.z != 0u) return;
    ++s->ctr.w;
}

static inline float2 box_muller(unsigned int a, unsigned int b) {
    const float two_pi_scale = 2.3283064e-10f * 6.2831855f;
    float2 r;
    float u = ng_u32_to_uniform(a);
    float v = (float)b * two_pi_scale + two_pi_scale / 2.0f;
    float s = sqrtf(-2.0f * logf(u));
    r.x = sinf(v) * s;
    r.y = cosf(v) * s;
    return r;
}

} /* namespace ng_simt */

/* Skip n 32-bit words of the stream. */
static inline void skipahead(unsigned long long n, curandStatePhilox4_32_10_t *state) {
    state->STATE += (unsigned int)(n & 3u);
    n >>= 2;
    if (state->STATE > 3u) {
        n += 1u;
        state->STATE -= 4u;
    }
    ::ng_simt::philox_advance(state, n);
    state->output = ::ng_simt::philox_block(state->ctr, state->key);
}

/* Skip n subsequences (2^66 words each). */
static inline void skipahead_sequence(unsigned long long n, curandStatePhilox4_32_10_t *state) {
    ::ng_simt::philox_advance_hi(state, n);
    state->output = ::ng_simt::philox_block(state->ctr, state->key);
}

static inline void curand_init(unsigned long long seed, unsigned long long subsequence,
                               unsigned long long offset, curandStatePhilox4_32_10_t *state) {
    state->ctr = make_uint4(0u, 0u, 0u, 0u);
    state->key.x = (unsigned int)seed;
    state->key.y = (unsigned int)(seed >> 32);
    state->STATE = 0u;
    state->boxmuller_flag = 0;
    state->boxmuller_flag_double = 0;
    state->boxmuller_extra = 0.0f;
    state->boxmuller_extra_double = 0.0;
    skipahead_sequence(subsequence, state);
    skipahead(offset, state);
}

/* Next 32-bit word; output[STATE] is always the next word to return. */
static inline unsigned int curand(curandStatePhilox4_32_10_t *state) {
    unsigned int r;
    switch (state->STATE) {
    case 1: r = state->output.y; break;
    case 2: r = state->output.z; break;
    case 3: r = state->output.w; break;
    default: r = state->output.x; break;
    }
    state->STATE++;
    if (state->STATE == 4u) {
        ::ng_simt::philox_next(state);
        state->output = ::ng_simt::philox_block(state->ctr, state->key);
        state->STATE = 0u;
    }
    return r;
}

/* Next four words (the position advances by four). */
static inline uint4 curand4(curandStatePhilox4_32_10_t *state) {
    uint4 prev = state->output, r;
    ::ng_simt::philox_next(state);
    state->output = ::ng_simt::philox_block(state->ctr, state->key);
    switch (state->STATE) {
    case 1: r = make_uint4(prev.y, prev.z, prev.w, state->output.x); break;
    case 2: r = make_uint4(prev.z, prev.w, state->output.x, state->output.y); break;
    case 3: r = make_uint4(prev.w, state->output.x, state->output.y, state->output.z); break;
    default: r = prev; break;
    }
    return r;
}

/* Uniform in (0, 1]. */
static inline float curand_uniform(curandStatePhilox4_32_10_t *state) {
    return ng_u32_to_uniform(curand(state));
}

static inline float4 curand_uniform4(curandStatePhilox4_32_10_t *state) {
    uint4 w = curand4(state);
    return make_float4(ng_u32_to_uniform(w.x), ng_u32_to_uniform(w.y), ng_u32_to_uniform(w.z),
                       ng_u32_to_uniform(w.w));
}

/* Standard normal; draws two words every other call and returns the cached second value between. */
static inline float curand_normal(curandStatePhilox4_32_10_t *state) {
    if (state->boxmuller_flag != 1) {
        unsigned int a = curand(state);
        unsigned int b = curand(state);
        float2 v = ::ng_simt::box_muller(a, b);
        state->boxmuller_extra = v.y;
        state->boxmuller_flag = 1;
        return v.x;
    }
    state->boxmuller_flag = 0;
    return state->boxmuller_extra;
}

static inline float2 curand_normal2(curandStatePhilox4_32_10_t *state) {
    unsigned int a = curand(state);
    unsigned int b = curand(state);
    return ::ng_simt::box_muller(a, b);
}

static inline float4 curand_normal4(curandStatePhilox4_32_10_t *state) {
    uint4 w = curand4(state);
    float2 p = ::ng_simt::box_muller(w.x, w.y), q = ::ng_simt::box_muller(w.z, w.w);
    return make_float4(p.x, p.y, q.x, q.y);
}

#endif
