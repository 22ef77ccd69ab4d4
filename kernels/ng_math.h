/* ng_math.h: math shared by host and device. Every elementwise kernel body lives here once, as an
 * NG_HD function, and both the CUDA kernels (kernels/\*.cu) and the CPU backend (host/backend/cpu.c)
 * call it, so the two backends compute the same thing. Written in the subset valid as C11 and CUDA
 * C++: explicit casts, float literals, no VLAs, no C99-only designators.
 *
 * Randomness: Philox4x32-10 (Salmon et al. 2011), as in cuRAND's curandStatePhilox4_32_10_t.
 * A stream is keyed by a 64-bit key derived from (seed, purpose) (ng_rng_key) and indexed by
 * (step, element i): the 32-bit word for element i is word (i & 3) of
 *     Philox(counter = (lo(i>>2), hi(i>>2), lo(step), hi(step)), key = (lo(key), hi(key))).
 * On the GPU exactly that word is what cuRAND returns after
 *     curand_init(key, step, i, &st); curand(&st);   (subsequence = step, offset = i)
 * so kernels draw through cuRAND's device API and the CPU calls ng_philox_word(); both give the
 * same bits. Uniform floats use cuRAND's map x * 2^-32 + 2^-33 (exact in float: the scale is a
 * power of two), so Bernoulli draws agree bit for bit across backends.
 * cuRAND device API subset the kernels may use (and tests/simt emulates): curand_init, curand,
 * curand_uniform, curand_uniform4, curand_normal, with curandStatePhilox4_32_10_t.
 *
 * Must not: allocate, touch global state, or depend on thread/block ids. */
#ifndef NG_MATH_H
#define NG_MATH_H

#include <stdint.h>

#include "natgrad/nn_types.h"

#if defined(__CUDACC__) || defined(NG_SIMT)
#define NG_HD static __host__ __device__ __forceinline__
#else
#define NG_HD static inline
#endif
/* NG_HD_HOT: the bodies of the CPU backend's hot elementwise loops (Philox, exp, sigmoid, Gibbs),
 * always inlined on the host so that they vectorise inside the loop that calls them (a call out
 * of a vectorised loop compiles the callee for the baseline ISA and one element at a time). */
#if defined(__CUDACC__) || defined(NG_SIMT) || !defined(__GNUC__)
#define NG_HD_HOT NG_HD
#else
#define NG_HD_HOT static inline __attribute__((always_inline))
#endif

#if !defined(__CUDACC__) || defined(NG_SIMT)
#include <math.h>
#endif

/* exp of a float. On the GPU (and in the SIMT emulator, which stands for it) the device's expf.
 * On the CPU natgrad's own ng_expf below: the algorithm of glibc's expf (>= 2.28, from Arm's
 * optimized-routines: exp(x) = 2^(k/32) 2^(r/32) with a 32-entry table and a cubic in double)
 * with its FMA contractions spelled out as fma() calls, as glibc's x86-64 FMA build (__expf_fma)
 * evaluates it. It therefore returns the bits that the libm expf of an x86-64 glibc machine with
 * FMA returns for every float (tests/test_philox.c compares all 2^32 inputs with a stride), the
 * bits the CPU backend computed before it had its own exp, and the same bits on any CPU and libm.
 * Unlike a call into libm it has no branches, so the CPU backend's loops vectorise around it
 * (a 16-lane double gather of the table on AVX-512). Error < 0.502 ULP (glibc's bound). */
#if defined(__CUDACC__) || defined(NG_SIMT)
#define NG_EXPF(x) expf(x)
#else
#include <string.h>
/* bits of 2^(i/32) rounded to double, minus i << 47 (the exponent bits that ng_expf adds back) */
static const uint64_t ng_exp2f_tab[32] = {
    0x3ff0000000000000ull, 0x3fefd9b0d3158574ull, 0x3fefb5586cf9890full, 0x3fef9301d0125b51ull,
    0x3fef72b83c7d517bull, 0x3fef54873168b9aaull, 0x3fef387a6e756238ull, 0x3fef1e9df51fdee1ull,
    0x3fef06fe0a31b715ull, 0x3feef1a7373aa9cbull, 0x3feedea64c123422ull, 0x3feece086061892dull,
    0x3feebfdad5362a27ull, 0x3feeb42b569d4f82ull, 0x3feeab07dd485429ull, 0x3feea47eb03a5585ull,
    0x3feea09e667f3bcdull, 0x3fee9f75e8ec5f74ull, 0x3feea11473eb0187ull, 0x3feea589994cce13ull,
    0x3feeace5422aa0dbull, 0x3feeb737b0cdc5e5ull, 0x3feec49182a3f090ull, 0x3feed503b23e255dull,
    0x3feee89f995ad3adull, 0x3feeff76f2fb5e47ull, 0x3fef199bdd85529cull, 0x3fef3720dcef9069ull,
    0x3fef5818dcfba487ull, 0x3fef7c97337b9b5full, 0x3fefa4afa2a490daull, 0x3fefd0765b6e4540ull,
};
NG_HD_HOT float ng_expf(float x) {
    const double inv_ln2_n = 0x1.71547652b82fep+5, shift = 0x1.8p+52; /* 32 / ln 2; 1.5 * 2^52 */
    const double c0 = 0x1.c6af84b912394p-20, c1 = 0x1.ebfce50fac4f3p-13, c2 = 0x1.62e42ff0c52d6p-6;
    /* glibc returns 0 below log(2^-150), the smallest subnormal down to log(2^-149), inf above
     * log(FLT_MAX) (and for +-inf): the main path below gives the same floats (its double result
     * rounds to them) once x is clamped to [-104, 89], where it stays in range. A clamp, not
     * branches, so that loops around it vectorise; NaN is returned as x + x. */
    const double x0 = (double)x, x1 = x0 > -104.0 ? x0 : -104.0, xd = x1 < 89.0 ? x1 : 89.0;
    /* x 32 / ln 2 = k + r, k the nearest integer (the shift rounds it into the low bits) */
    const double kds = fma(inv_ln2_n, xd, shift);
    const double kd = kds - shift;
    const double r = fma(inv_ln2_n, xd, -kd);
    uint64_t ki, t;
    double s, y;
    float e;
    memcpy(&ki, &kds, sizeof ki);
    t = ng_exp2f_tab[ki & 31u] + (ki << 47); /* 2^(k/32): the table entry with k >> 5 in its exponent */
    memcpy(&s, &t, sizeof s);
    y = fma(fma(c0, r, c1), r * r, fma(r, c2, 1.0)) * s; /* 2^(r/32) ~ 1 + c2 r + c1 r^2 + c0 r^3 */
    e = (float)y;
    return x != x ? x + x : e; /* NaN: quiet NaN, as glibc */
}
#define NG_EXPF(x) ng_expf(x)
#endif

/* ---- Philox4x32-10 ---------------------------------------------------------------------- */

typedef struct ng_u32x4 { uint32_t x, y, z, w; } ng_u32x4;

NG_HD void ng_mulhilo32(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

NG_HD ng_u32x4 ng_philox_round(ng_u32x4 c, uint32_t k0, uint32_t k1) {
    uint32_t hi0, lo0, hi1, lo1;
    ng_u32x4 r;
    ng_mulhilo32(0xD2511F53u, c.x, &hi0, &lo0);
    ng_mulhilo32(0xCD9E8D57u, c.z, &hi1, &lo1);
    r.x = hi1 ^ c.y ^ k0;
    r.y = lo1;
    r.z = hi0 ^ c.w ^ k1;
    r.w = lo0;
    return r;
}

/* Philox4x32 with `rounds` rounds (10 for Philox4x32-10). */
NG_HD ng_u32x4 ng_philox4x32(ng_u32x4 c, uint32_t k0, uint32_t k1, int rounds) {
    int r;
    for (r = 0; r < rounds; r++) {
        if (r > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        c = ng_philox_round(c, k0, k1);
    }
    return c;
}

/* The 32-bit random word of element i of stream (key, step); see the header comment. */
NG_HD uint32_t ng_philox_word(uint64_t key, uint64_t step, uint64_t i) {
    ng_u32x4 c, o;
    uint64_t blk = i >> 2;
    c.x = (uint32_t)blk;
    c.y = (uint32_t)(blk >> 32);
    c.z = (uint32_t)step;
    c.w = (uint32_t)(step >> 32);
    o = ng_philox4x32(c, (uint32_t)key, (uint32_t)(key >> 32), 10);
    switch ((int)(i & 3u)) {
    case 0: return o.x;
    case 1: return o.y;
    case 2: return o.z;
    default: return o.w;
    }
}

/* cuRAND's uniform map: (0, 1], x * 2^-32 + 2^-33 in float arithmetic. */
NG_HD_HOT float ng_u32_to_uniform(uint32_t x) {
    return (float)x * 2.3283064e-10f + (2.3283064e-10f / 2.0f);
}

NG_HD float ng_uniform_at(uint64_t key, uint64_t step, uint64_t i) {
    return ng_u32_to_uniform(ng_philox_word(key, step, i));
}

/* The four uniforms of Philox block g of stream (key, step): those of elements 4g .. 4g+3, from one
 * Philox evaluation (what curand_init(key, step, 4g) + curand_uniform4 gives on the GPU). The CPU
 * backend walks every Philox-driven op in such groups of four. */
NG_HD void ng_uniform4_at(uint64_t key, uint64_t step, uint64_t g, float u[4]) {
    ng_u32x4 c, o;
    c.x = (uint32_t)g;
    c.y = (uint32_t)(g >> 32);
    c.z = (uint32_t)step;
    c.w = (uint32_t)(step >> 32);
    o = ng_philox4x32(c, (uint32_t)key, (uint32_t)(key >> 32), 10);
    u[0] = ng_u32_to_uniform(o.x);
    u[1] = ng_u32_to_uniform(o.y);
    u[2] = ng_u32_to_uniform(o.z);
    u[3] = ng_u32_to_uniform(o.w);
}

/* The uniforms of NG_PHILOX_LANES consecutive Philox blocks g0 .. g0+15 into u[64]
 * (u[4 l + j] = element j of block g0 + l): exactly the numbers of sixteen ng_uniform4_at calls,
 * computed lane by lane in structure-of-arrays form so that the compiler vectorises the rounds
 * (32x32->64-bit multiplies and xors on 16 lanes: one AVX-512 or two AVX2 registers). The CPU
 * backend's Philox-driven ops walk their elements in these blocks of 64. */
#define NG_PHILOX_LANES 16
#if !defined(__CUDACC__) && !defined(NG_SIMT) && defined(_OPENMP)
#define NG_SIMD _Pragma("omp simd")
#else
#define NG_SIMD
#endif
NG_HD_HOT void ng_uniform4_block(uint64_t key, uint64_t step, uint64_t g0, float *u) {
    uint32_t x[NG_PHILOX_LANES], y[NG_PHILOX_LANES], z[NG_PHILOX_LANES], w[NG_PHILOX_LANES];
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    int l, r;
    NG_SIMD for (l = 0; l < NG_PHILOX_LANES; l++) {
        uint64_t g = g0 + (uint64_t)l;
        x[l] = (uint32_t)g;
        y[l] = (uint32_t)(g >> 32);
        z[l] = (uint32_t)step;
        w[l] = (uint32_t)(step >> 32);
    }
    for (r = 0; r < 10; r++) {
        /* one round of ng_philox_round on every lane */
        NG_SIMD for (l = 0; l < NG_PHILOX_LANES; l++) {
            uint64_t p0 = (uint64_t)0xD2511F53u * (uint64_t)x[l];
            uint64_t p1 = (uint64_t)0xCD9E8D57u * (uint64_t)z[l];
            uint32_t nx = (uint32_t)(p1 >> 32) ^ y[l] ^ k0;
            uint32_t nz = (uint32_t)(p0 >> 32) ^ w[l] ^ k1;
            y[l] = (uint32_t)p1;
            w[l] = (uint32_t)p0;
            x[l] = nx;
            z[l] = nz;
        }
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    NG_SIMD for (l = 0; l < NG_PHILOX_LANES; l++) {
        u[4 * l + 0] = ng_u32_to_uniform(x[l]);
        u[4 * l + 1] = ng_u32_to_uniform(y[l]);
        u[4 * l + 2] = ng_u32_to_uniform(z[l]);
        u[4 * l + 3] = ng_u32_to_uniform(w[l]);
    }
}

/* splitmix64 finaliser: mixes a 64-bit value; used to derive stream keys. */
NG_HD uint64_t ng_mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Key of the stream for (seed, purpose). Different purposes give unrelated streams. */
NG_HD uint64_t ng_rng_key(uint64_t seed, uint32_t purpose) {
    return ng_mix64(seed ^ ng_mix64(0x6E67ull + (uint64_t)purpose));
}

/* ---- scalar functions -------------------------------------------------------------------- */

/* 1 / (1 + exp(-x)) for x >= 0, exp(x) / (1 + exp(x)) below (exp never overflows), written with
 * selects instead of branches so that the CPU loops vectorise it. */
NG_HD_HOT float ng_sigmoid(float x) {
    const int pos = x >= 0.0f;
    const float e = NG_EXPF(pos ? -x : x);
    return (pos ? 1.0f : e) / (1.0f + e);
}

/* log(1 + exp(x)) without overflow. */
NG_HD float ng_softplus(float x) {
    if (x > 20.0f) return x + log1pf(NG_EXPF(-x));
    return log1pf(NG_EXPF(x));
}

NG_HD double ng_sigmoid_d(double x) {
    if (x >= 0.0) return 1.0 / (1.0 + exp(-x));
    return exp(x) / (1.0 + exp(x));
}

NG_HD double ng_softplus_d(double x) {
    if (x > 30.0) return x + log1p(exp(-x));
    return log1p(exp(x));
}

/* ---- elementwise bodies ------------------------------------------------------------------ */

/* Bernoulli draw of one unit given its probability and a uniform in (0, 1]. */
NG_HD_HOT float ng_bernoulli_draw(float p, float u) { return u <= p ? 1.0f : 0.0f; }

/* Pre-activation of a unit on the AIS/tempered path: beta * (pre + bias) + (1 - beta) * base,
 * where base is the base-rate model's bias (0 when there is none). beta = 1 gives the RBM. */
NG_HD_HOT float ng_gibbs_input(float pre, float bias, float beta, float base) {
    /* explicit fmaf: nvcc would contract a*b + c into an FMA on its own; spelling it out gives
     * the same rounding on the CPU and the GPU */
    return fmaf(beta, pre + bias, (1.0f - beta) * base);
}

/* Body of the fused Gibbs kernel: probability of the unit and its Bernoulli draw. */
NG_HD_HOT void ng_gibbs_unit(float pre, float bias, float beta, float base, float u, float *prob,
                         float *sample) {
    float p = ng_sigmoid(ng_gibbs_input(pre, bias, beta, base));
    *prob = p;
    *sample = ng_bernoulli_draw(p, u);
}

/* Bit b of state s as a float (enumeration of binary states). */
NG_HD float ng_state_bit(uint64_t s, int b) { return (float)((s >> b) & 1u); }

/* y = alpha * x + beta * y for one element, BLAS style: beta = 0 ignores y (even a NaN there).
 * Body of axpby. */
NG_HD float ng_axpby_elem(float alpha, float x, float beta, float y) {
    return beta == 0.0f ? alpha * x : alpha * x + beta * y;
}

/* y = beta * y, BLAS style: beta = 0 gives 0 even where y holds NaN. Body of the C = beta C
 * paths of gemm/syrk/gemv (alpha = 0 or an empty inner dimension). */
NG_HD float ng_scale_elem(float beta, float y) { return beta == 0.0f ? 0.0f : beta * y; }

/* y = ca ra x + cb rb y with device scalars ra, rb (ng_ratio): the body of axpby_dev, the scalar
 * steps of iterative solvers (x += alpha p with alpha = rz / pAp kept on the device). cb = 0
 * ignores y. A zero denominator makes its ratio 0. */
NG_HD float ng_ratio(const float *num, const float *den) {
    const float d = den ? den[0] : 1.0f;
    return d == 0.0f ? 0.0f : (num ? num[0] : 1.0f) / d; /* 0 / 0 of a converged solver stays 0 */
}
NG_HD float ng_axpby_dev_elem(float ca, float ra, float x, float cb, float rb, float y) {
    return cb == 0.0f ? (ca * ra) * x : (ca * ra) * x + (cb * rb) * y;
}

/* Final combine of a reduction accumulated in double: alpha * s + gamma * y, gamma = 0 ignoring y
 * (sum_cols, sum_rows, softplus_sum). */
NG_HD float ng_sum_combine(double s, float alpha, float gamma, float y) {
    return (float)((double)alpha * s) + (gamma == 0.0f ? 0.0f : gamma * y);
}

/* One term of a free-energy sum over hidden units: softplus(beta * (pre + bias)), the factor that
 * summing a binary hidden unit out of a (tempered, beta) RBM leaves in the free energy. */
NG_HD float ng_softplus_term(float pre, float bias, float beta) {
    return ng_softplus(beta * (pre + bias));
}

/* ---- update rules (host/optim/adam.c, kernels/optim.cu) ------------------------------------ */

/* One element of the fused momentum step (NG_OP_MOMENTUM; heavy-ball SGD and NAG, host/optim/sgd.c
 * and nag.c), with d the direction, v the velocity, p the parameter (NAG: the look-ahead point),
 * bar the iterate average (NULL: none). Exactly the chain of axpby ops it replaces, each rounded by
 * ng_axpby_elem in the same order, so the result is bit-identical to those separate launches:
 *   v = ng_axpby(a, d, mu, v)                       (a = -lr)
 *   p = ng_axpby(c, v, 1, p)                        (SGD: c = 1; NAG: c = mu_{t+1})
 *   p = ng_axpby(a, d, 1, p)     when nesterov
 *   bar = ng_axpby(w, p, xi, bar); bar = ng_axpby(wc, v, 1, bar) when wc != 0   (bar non-NULL) */
NG_HD void ng_momentum_elem(float d, float *v, float *p, float *bar, float a, float mu, float c,
                            int nesterov, float xi, float w, float wc) {
    const float vn = ng_axpby_elem(a, d, mu, *v);
    float pn = ng_axpby_elem(c, vn, 1.0f, *p);
    if (nesterov) pn = ng_axpby_elem(a, d, 1.0f, pn);
    *v = vn;
    *p = pn;
    if (bar) {
        float b = ng_axpby_elem(w, pn, xi, *bar);
        if (wc != 0.0f) b = ng_axpby_elem(wc, vn, 1.0f, b);
        *bar = b;
    }
}

/* 1 - beta^(t+1) in double: Adam's bias correction of update t (adam.c on the host, the CPU op,
 * and each block of the CUDA kernel from the device step count). */
NG_HD double ng_adam_bias_correction(float beta, double t) { return 1.0 - pow((double)beta, t + 1.0); }

/* One element of the fused Adam / RMSprop step (NG_OP_ADAM; see its struct in natgrad/backend.h),
 * with g the direction, p the parameter, m the first moment (NULL: none, RMSprop), v the second
 * moment (RMSprop's running mean square); returns the step s, already added to *p:
 *   m = b1 m + c1 g;  v = b2 v + c2 g^2;  s = -lr (m / bc1) / (sqrt(v / bc2) + eps);  p = p + s.
 * Rounded identically on the CPU and the GPU: b1 m and c1 g are products of two floats, exact in
 * double, so their sum rounds once however a compiler contracts it; c2 g^2 + b2 v is an explicit
 * fma of exact operands (g^2 and b2 v are exact in double); division and sqrt are correctly rounded
 * on both; the step is computed from the stored (float) m and v, so it is a function of the state
 * a checkpoint holds. */
NG_HD float ng_adam_elem(float g, float *p, float *m, float *v, float b1, float c1, float b2,
                         float c2, double bc1, double bc2, float lr, float eps) {
    const double gd = (double)g;
    double mh;
    float vf, s;
    if (m) {
        const float mf = (float)((double)b1 * (double)*m + (double)c1 * gd);
        *m = mf;
        mh = (double)mf / bc1;
    } else {
        mh = gd;
    }
    vf = (float)fma((double)c2, gd * gd, (double)b2 * (double)*v);
    *v = vf;
    s = (float)((-(double)lr * mh) / (sqrt((double)vf / bc2) + (double)eps));
    *p = *p + s;
    return s;
}

/* ---- FANG (host/optim/fang.c, kernels/fang.cu) ------------------------------------------- */

/* A 2x2 parent block whose determinant is below this fraction of its diagonal product (i.e. the
 * parents' correlation satisfies 1 - rho^2 < 1e-6) is treated as singular. */
#define NG_FANG_SINGULAR 1e-6

NG_HD int ng_finite_d(double x) { return x - x == 0.0; }


/* FANG eq. 11-12 for one pair (i, j), a = (i, j), m = v_i h_j. From the moments
 *   evh = E[v h], ev2h = E[v^2 h], evh2 = E[v h^2], ev2h2 = E[v^2 h^2], mv = E[v], mh = E[h],
 *   ev2 = E[v^2], eh2 = E[h^2]
 * form the 3x3 covariance of (v, h, m) plus lambda I (E[m] = evh):
 *   Cvv = ev2 - mv^2 + l, Chh = eh2 - mh^2 + l, Cvh = evh - mv mh,
 *   Cvm = ev2h - mv evh,  Chm = evh2 - mh evh,  Cmm = ev2h2 - evh^2 + l,
 * then regress m on its parents (v, h): beta = C_pp^-1 C_pm (closed-form 2x2 solve) and
 * sigma2 = Cmm - C_mp beta. A near-singular parent block (det < NG_FANG_SINGULAR Cvv Chh) is
 * regressed on the parent of larger variance alone (beta = 0 for the other; both 0 when neither
 * has positive variance). sigma2 is floored at lambda (the smallest value it can take when the
 * damped 3x3 block is positive semi-definite plus lambda I) and never NaN; non-finite betas
 * become 0. Computed in double: the covariances are differences of nearby moments. */
NG_HD void ng_fang_regress_pair(float evh, float ev2h, float evh2, float ev2h2, float mv,
                                float mh, float ev2, float eh2, float lambda, float *beta_v,
                                float *beta_h, float *sigma2) {
    const double l = (double)lambda, Mv = (double)mv, Mh = (double)mh, Evh = (double)evh;
    const double cvv = ((double)ev2 - Mv * Mv) + l;
    const double chh = ((double)eh2 - Mh * Mh) + l;
    const double cvh = Evh - Mv * Mh;
    const double cvm = (double)ev2h - Mv * Evh;
    const double chm = (double)evh2 - Mh * Evh;
    const double cmm = ((double)ev2h2 - Evh * Evh) + l;
    const double det = cvv * chh - cvh * cvh;
    const double floor_s2 = l > 0.0 ? l : 1e-30;
    double bv = 0.0, bh = 0.0, s2;
    if (cvv > 0.0 && chh > 0.0 && det > NG_FANG_SINGULAR * cvv * chh) {
        bv = (chh * cvm - cvh * chm) / det;
        bh = (cvv * chm - cvh * cvm) / det;
    } else if (cvv > 0.0 && !(chh > cvv)) {
        bv = cvm / cvv;
    } else if (chh > 0.0) {
        bh = chm / chh;
    }
    if (!ng_finite_d(bv) || !ng_finite_d(bh)) {
        bv = 0.0;
        bh = 0.0;
    }
    s2 = cmm - (bv * cvm + bh * chm);
    if (!(s2 >= floor_s2)) s2 = floor_s2; /* also replaces NaN */
    *beta_v = (float)bv;
    *beta_h = (float)bh;
    *sigma2 = (float)s2;
}

/* Pairwise part of the FANG direction (Algorithm 1) for one pair: with the gradient entries
 * g = [grad]_a, ga = [grad]_{v_i}, gb = [grad]_{h_j},
 *   q = (g - beta_v ga - beta_h gb) / sigma2,  pv = beta_v q,  ph = beta_h q.
 * In double so that the CPU and the GPU (which may contract to FMA) round alike: every product
 * of two floats is exact in double. */
NG_HD void ng_fang_residual_elem(float g, float ga, float gb, float beta_v, float beta_h,
                                 float sigma2, float *q, float *pv, float *ph) {
    double r = (double)g - (double)beta_v * (double)ga;
    r = (r - (double)beta_h * (double)gb) / (double)sigma2;
    *q = (float)r;
    *pv = (float)((double)beta_v * (double)(float)r);
    *ph = (float)((double)beta_h * (double)(float)r);
}

/* Element (r, c) of symmetrize_lower: the strict upper triangle takes the transpose of the strict
 * lower one, the diagonal gets + shift; src is A[c, r] for r < c and A[r, r] on the diagonal. */
NG_HD float ng_sym_lower_elem(int r, int c, float src, float shift) {
    return r == c ? src + shift : src;
}

/* ---- network layers (natgrad/net.h) ------------------------------------------------------ */

/* a = f(x) of an elementwise nonlinearity (not softmax). */
NG_HD float ng_act_elem(int act, float x) {
    switch (act) {
    case NG_ACT_LOGISTIC: return ng_sigmoid(x);
    case NG_ACT_TANH: return tanhf(x);
    case NG_ACT_RELU: return x > 0.0f ? x : 0.0f;
    default: return x;
    }
}

/* f'(z) and f''(z) written in terms of the output a = f(z). */
NG_HD float ng_act_d1(int act, float a) {
    switch (act) {
    case NG_ACT_LOGISTIC: return a * (1.0f - a);
    case NG_ACT_TANH: return 1.0f - a * a;
    case NG_ACT_RELU: return a > 0.0f ? 1.0f : 0.0f;
    default: return 1.0f;
    }
}
NG_HD float ng_act_d2(int act, float a) {
    switch (act) {
    case NG_ACT_LOGISTIC: return a * (1.0f - a) * (1.0f - 2.0f * a);
    case NG_ACT_TANH: return -2.0f * a * (1.0f - a * a);
    default: return 0.0f;
    }
}

/* act_backward element: g f'(a) + h r f''(a) (h = r = 0 when absent). */
NG_HD float ng_act_backward_elem(int act, float a, float g, float h, float r) {
    float out = g * ng_act_d1(act, a);
    if (h != 0.0f && r != 0.0f) out += h * r * ng_act_d2(act, a);
    return out;
}

/* Softmax of one column z[0..rows) (+ bias), in place into a (a may alias z): max-shifted, sums in
 * double in a fixed order. */
NG_HD void ng_softmax_col(int rows, const float *z, const float *bias, float *a) {
    float mx = -3.402823e38f;
    double s = 0.0;
    int r;
    for (r = 0; r < rows; r++) {
        float x = z[r] + (bias ? bias[r] : 0.0f);
        if (x > mx) mx = x;
    }
    for (r = 0; r < rows; r++) {
        float e = NG_EXPF(z[r] + (bias ? bias[r] : 0.0f) - mx);
        a[r] = e;
        s += (double)e;
    }
    for (r = 0; r < rows; r++) a[r] = (float)((double)a[r] / s);
}

/* One column of the output layer's matching loss (natgrad/nn_types.h): z the pre-activation, y =
 * f(z), t the target. d = scale (y - t) (when d is non-NULL, may alias y), *obj = the loss of the
 * case, *err = sum (y - t)^2 (the papers' reconstruction error), or with miss = 1 the case's
 * misclassification: 1 when the first maximum of y is not at the first maximum of t, else 0.
 * Sums in double, fixed order. */
NG_HD void ng_loss_col(int loss, int rows, const float *z, const float *y, const float *t,
                       float scale, float *d, float *obj, float *err, int miss) {
    double o = 0.0, e = 0.0, lse = 0.0;
    int r, ay = 0, at = 0;
    if (loss == NG_LOSS_CATEGORICAL) {
        double mx = -1e300, s = 0.0;
        for (r = 0; r < rows; r++)
            if ((double)z[r] > mx) mx = (double)z[r];
        for (r = 0; r < rows; r++) s += exp((double)z[r] - mx);
        lse = mx + log(s);
    }
    if (miss) /* before d is written (d may alias y) */
        for (r = 1; r < rows; r++) {
            if (y[r] > y[ay]) ay = r;
            if (t[r] > t[at]) at = r;
        }
    for (r = 0; r < rows; r++) {
        double diff = (double)y[r] - (double)t[r];
        e += diff * diff;
        if (loss == NG_LOSS_SQUARED)
            o += 0.5 * diff * diff;
        else if (loss == NG_LOSS_BERNOULLI)
            o += ng_softplus_d((double)z[r]) - (double)t[r] * (double)z[r];
        else
            o += (double)t[r] * (lse - (double)z[r]);
        if (d) d[r] = scale * (y[r] - t[r]);
    }
    if (miss) e = ay != at ? 1.0 : 0.0;
    if (obj) *obj = (float)o;
    if (err) *err = (float)e;
}

/* The batch sums of the loss op (NG_OP_LOSS with acc): acc[0] = sum_c obj[c], acc[1] = sum_c err[c]
 * over the cols columns, in double, in one fixed order whatever the backend or launch shape:
 * NG_LOSS_LANES interleaved partial sums (lane j sums the columns c = j, j + LANES, ... in
 * increasing c; ng_loss_lane), then the lanes added in increasing j (ng_loss_sums_finish), the
 * total rounded once to float. beta = 0 overwrites acc, otherwise acc += the sums (in double,
 * rounded once): the chunks of one batch accumulate. The CUDA loss kernel runs the lanes as 32
 * threads; the CPU runs the same loop nest. */
#define NG_LOSS_LANES 32
NG_HD void ng_loss_lane(int cols, const float *obj, const float *err, int lane, double *so, double *se) {
    double o = 0.0, e = 0.0;
    int c;
    for (c = lane; c < cols; c += NG_LOSS_LANES) {
        o += (double)obj[c];
        e += (double)err[c];
    }
    *so = o;
    *se = e;
}
NG_HD void ng_loss_sums_finish(const double *lane_o, const double *lane_e, float beta, float *acc) {
    double o = 0.0, e = 0.0;
    int j;
    for (j = 0; j < NG_LOSS_LANES; j++) {
        o += lane_o[j];
        e += lane_e[j];
    }
    acc[0] = (float)(beta == 0.0f ? o : (double)acc[0] + o);
    acc[1] = (float)(beta == 0.0f ? e : (double)acc[1] + e);
}

/* One column of out = scale H v with the loss Hessian H at y (natgrad/nn_types.h), or with
 * loss = NG_LOSS_OUTER out = scale y (y^T v). out may alias v. */
NG_HD void ng_loss_hvp_col(int loss, int rows, const float *y, const float *v, float scale,
                           float *out) {
    double s = 0.0;
    int r;
    if (loss == NG_LOSS_CATEGORICAL || loss == NG_LOSS_OUTER)
        for (r = 0; r < rows; r++) s += (double)y[r] * (double)v[r];
    for (r = 0; r < rows; r++) {
        float o;
        if (loss == NG_LOSS_SQUARED) o = v[r];
        else if (loss == NG_LOSS_BERNOULLI) o = y[r] * (1.0f - y[r]) * v[r];
        else if (loss == NG_LOSS_CATEGORICAL) o = (float)((double)y[r] * ((double)v[r] - s));
        else o = (float)((double)y[r] * s);
        out[r] = scale * o;
    }
}

/* A standard normal from two uniforms in (0, 1] (Box-Muller, cosine branch). */
NG_HD float ng_normal_from(float u1, float u2) {
    return (float)(sqrt(-2.0 * log((double)u1)) * cos(6.283185307179586 * (double)u2));
}

/* Target of element (r, c) sampled from the model's predictive distribution (elementwise losses):
 * Gaussian y + N(0, 1) from the uniforms u1, u2; Bernoulli [u1 <= y]. */
NG_HD float ng_sample_target_elem(int loss, float y, float u1, float u2) {
    if (loss == NG_LOSS_SQUARED) return y + ng_normal_from(u1, u2);
    return u1 <= y ? 1.0f : 0.0f;
}

/* A one-hot column drawn from the categorical distribution y by inverse CDF with the uniform u
 * (the last class takes any rounding remainder). */
NG_HD void ng_sample_categorical_col(int rows, const float *y, float u, float *t) {
    double c = 0.0;
    int r, k = rows - 1;
    for (r = 0; r < rows; r++) {
        c += (double)y[r];
        if ((double)u <= c) {
            k = r;
            break;
        }
    }
    for (r = 0; r < rows; r++) t[r] = r == k ? 1.0f : 0.0f;
}

/* Batch normalisation of row r over its cols values x[0], x[ld], ...: mean and 1/sqrt(var + eps)
 * (biased variance, two passes in double). */
NG_HD void ng_row_moments(int cols, const float *x, int ld, float eps, float *mean, float *rstd) {
    double s = 0.0, q = 0.0, mu;
    int c;
    for (c = 0; c < cols; c++) s += (double)x[(size_t)c * ld];
    mu = s / (double)cols;
    for (c = 0; c < cols; c++) {
        double d = (double)x[(size_t)c * ld] - mu;
        q += d * d;
    }
    *mean = (float)mu;
    *rstd = (float)(1.0 / sqrt(q / (double)cols + (double)eps));
}

/* Row r of one step of synchronised batch norm's merge across ranks (the bn_merge op, natgrad/
 * backend.h; mode NG_BN_MERGE_*): the merge of one process's batch statistics, in float64 as the
 * host would do it. Row 0 also writes the count / total of COUNTS and FINISH. */
NG_HD void ng_bn_merge_row(int mode, int r, int rows, int cols, double cnt, float eps, float alpha, int scaled,
                           float *mean, float *rstd, double *acc, double *acc2, double *tot, const float *x, int ldx,
                           float *out, int ldo) {
    int c;
    double w;
    if (mode == NG_BN_MERGE_COUNTS) {
        acc[r] = cnt > 0.0 ? cnt * (double)mean[r] : 0.0;
        if (r == 0) acc[rows] = cnt;
    } else if (mode == NG_BN_MERGE_SCATTER) {
        double mu = acc[r] / acc[rows], dm = cnt > 0.0 ? (double)mean[r] - mu : 0.0, rs = (double)rstd[r];
        acc[r] = mu;
        acc2[r] = cnt > 0.0 ? cnt * (1.0 / (rs * rs) - (double)eps + dm * dm) : 0.0;
    } else if (mode == NG_BN_MERGE_FINISH) {
        double var = acc2[r] / acc[rows];
        mean[r] = (float)acc[r];
        rstd[r] = (float)(1.0 / sqrt((var > 0.0 ? var : 0.0) + (double)eps));
        if (r == 0) *tot = acc[rows];
    } else {
        w = scaled ? cnt / *tot : 1.0;
        for (c = 0; c < cols; c++)
            if (mode == NG_BN_MERGE_WEIGHT) acc[(size_t)r + (size_t)rows * c] = w * (double)x[(size_t)r + (size_t)ldx * c];
            else out[(size_t)r + (size_t)ldo * c] = (float)((double)alpha * acc[(size_t)r + (size_t)rows * c] / *tot / w);
    }
}

/* The batch-norm projection of row r: out[c] = s (g[c] - mean(g) - xh[c] mean(g .* xh)) + beta
 * out[c] (beta = 0 ignores out): the Jacobian of xhat = (x - mean) rstd applied to g (s = rstd)
 * or its transpose (the same operator: it is symmetric). */
NG_HD void ng_bn_project_row(int cols, const float *g, int ldg, const float *xh, int ldx, float s,
                             float beta, float *out, int ldo) {
    double mg = 0.0, mgx = 0.0;
    int c;
    for (c = 0; c < cols; c++) {
        double gv = (double)g[(size_t)c * ldg];
        mg += gv;
        mgx += gv * (double)xh[(size_t)c * ldx];
    }
    mg /= (double)cols;
    mgx /= (double)cols;
    for (c = 0; c < cols; c++) {
        double v = (double)s * ((double)g[(size_t)c * ldg] - mg - (double)xh[(size_t)c * ldx] * mgx);
        float *o = &out[(size_t)c * ldo];
        *o = beta == 0.0f ? (float)v : (float)v + beta * *o;
    }
}


/* ---- outer_scale (K-FAC inverses) ---------------------------------------------------------- */
/* phi(u[r], v[c]) of NG_OP_OUTER_SCALE (natgrad/backend.h); u, v may be NULL where allowed. */
NG_HD float ng_outer_scale_phi(int mode, const float *u, const float *v, int r, int c, float floor_) {
    if (mode == NG_OSCALE_POW) return 1.0f; /* see ng_outer_scale_elem */
    if (mode == NG_OSCALE_RSQRT) {
        const float w = v[c] > floor_ ? v[c] : floor_;
        return 1.0f / sqrtf(w);
    }
    if (mode == NG_OSCALE_STEIN) {
        const float d = 1.0f - u[r] * v[c];
        return 1.0f / (d > floor_ ? d : floor_);
    }
    return (u ? u[r] : 1.0f) * (v ? v[c] : 1.0f);
}
/* One element of outer_scale: x phi, with SQUARE's phi = x u v and POW's phi = max(v, floor)^power. */
NG_HD float ng_outer_scale_elem(int mode, float x, const float *u, const float *v, int r, int c, float floor_,
                                float power) {
    if (mode == NG_OSCALE_SQUARE) return x * (x * ng_outer_scale_phi(NG_OSCALE_MUL, u, v, r, c, floor_));
    if (mode == NG_OSCALE_POW) {
        const float w = v[c] > floor_ ? v[c] : floor_;
        return x * powf(w, power);
    }
    return x * ng_outer_scale_phi(mode, u, v, r, c, floor_);
}

/* ---- MINRES-QLP (host/optim/minresqlp.c, kernels/solver.cu) --------------------------------- */
/* The scalar recurrence of MINRES-QLP (Choi, Paige & Saunders 2011, Table 3.5 and section 3; the
 * MINRES-to-QLP transfer of their section 6.1), one Lanczos step per call, for one system whose
 * state is a double array st[NG_MQLP_NSTATE] and whose float scalars sc[NG_MQLP_NSC] carry the
 * Lanczos inputs (alpha_k, beta_{k+1}, written by dot_dev / nrm2_dev) and the coefficients of the
 * vector updates the solver then runs through NG_OP_AXPBY_DEV. Every update of the solver's
 * vectors is one fixed linear map, whatever the step (MINRES, the transfer, QLP, frozen):
 *   XL2 = E0 X + E1 XL2 + E2 WL + E3 W + E4 V        (the finished part of x, QLP steps)
 *   W'  = B1 WL + B2 W + B3 V,  WL' = A1 WL + A2 W + A3 V
 *   X   = F0 X + F1 XL2 + F2 WL' + F3 W'
 *   V_next = VSCALE p,  next p = A V_next - LBETA V
 * so the host queues the same operations every iteration and never waits for a branch. Once a
 * stopping rule has fired the step freezes: the maps become the identity and VSCALE = LBETA = 0, so
 * x stays the iterate at which the rule fired however many further steps are queued.
 * Flags (st[NG_MQLP_FLAG]) follow minresqlp.m: -2 running, 0 b = 0, 1 ||r|| <= rtol ||b||, 2
 * ||A r|| <= rtol ||A|| ||r|| (incompatible system), 3 / 4 the same at double precision, 5 x is
 * an eigenvector (||A|| ||x|| eps >= ||b||), 6 ||x|| would exceed maxxnorm, 8 max_iter reached,
 * 9 the last diagonal of L is negligible (singular), 10 a non-finite alpha or beta (NaN or Inf
 * from the operator; not in minresqlp.m). relres here is ||r|| / ||b|| (minresqlp.m divides by
 * ||A|| ||x|| + ||b||), as natgrad/solver.h defines rtol. */
#define NG_MQLP_RUNNING -2
#define NG_MQLP_NONFINITE 10
enum {
    NG_MQLP_ITER = 0, NG_MQLP_FLAG, NG_MQLP_QLPITER, NG_MQLP_BETA1, NG_MQLP_BETAN,
    NG_MQLP_CS, NG_MQLP_SN, NG_MQLP_DLTAN, NG_MQLP_EPLNN, NG_MQLP_PHI, NG_MQLP_TAU, NG_MQLP_TAUL,
    NG_MQLP_GAMA, NG_MQLP_GAMAL, NG_MQLP_CR1, NG_MQLP_SR1, NG_MQLP_CR2, NG_MQLP_SR2,
    NG_MQLP_VEPLN, NG_MQLP_VEPLNL, NG_MQLP_ETA, NG_MQLP_ETAL, NG_MQLP_UL3, NG_MQLP_UL2, NG_MQLP_UL,
    NG_MQLP_U, NG_MQLP_XL2NORM, NG_MQLP_XNORM, NG_MQLP_ANORM, NG_MQLP_ACOND, NG_MQLP_GMIN,
    NG_MQLP_GMINL, NG_MQLP_RNORM, NG_MQLP_RELRES, NG_MQLP_RELARES, NG_MQLP_GAMAL_QLP,
    NG_MQLP_VEPLN_QLP, NG_MQLP_GAMA_QLP, NG_MQLP_UL_QLP, NG_MQLP_U_QLP,
    NG_MQLP_NSTATE = 40
};
enum {
    NG_MQLP_SC_ALPHA = 0, NG_MQLP_SC_BETAN, /* inputs */
    NG_MQLP_SC_LBETA, NG_MQLP_SC_VSCALE,
    NG_MQLP_SC_E0, NG_MQLP_SC_E1, NG_MQLP_SC_E2, NG_MQLP_SC_E3, NG_MQLP_SC_E4,
    NG_MQLP_SC_A1, NG_MQLP_SC_A2, NG_MQLP_SC_A3, NG_MQLP_SC_B1, NG_MQLP_SC_B2, NG_MQLP_SC_B3,
    NG_MQLP_SC_F0, NG_MQLP_SC_F1, NG_MQLP_SC_F2, NG_MQLP_SC_F3,
    NG_MQLP_NSC = 20
};

/* SymOrtho of Choi, Paige & Saunders (Table 2.1): the reflector [c s; s -c] with c a + s b = r >= 0,
 * s a - c b = 0, stable for every a, b (no overflow in the squares). */
NG_HD void ng_mqlp_symortho(double a, double b, double *c, double *s, double *r) {
    const double aa = fabs(a), ab = fabs(b);
    if (b == 0.0) {
        *c = a < 0.0 ? -1.0 : 1.0;
        *s = 0.0;
        *r = aa;
    } else if (a == 0.0) {
        *c = 0.0;
        *s = b < 0.0 ? -1.0 : 1.0;
        *r = ab;
    } else if (ab > aa) {
        const double t = a / b, sg = b < 0.0 ? -1.0 : 1.0;
        *s = sg / sqrt(1.0 + t * t);
        *c = *s * t;
        *r = b / *s;
    } else {
        const double t = b / a, sg = a < 0.0 ? -1.0 : 1.0;
        *c = sg / sqrt(1.0 + t * t);
        *s = *c * t;
        *r = a / *c;
    }
}

NG_HD double ng_mqlp_hypot3(double a, double b, double c) { return sqrt(a * a + b * b + c * c); }
/* a / b, 0 for b = 0 (as ng_ratio: a degenerate quantity that the flags have already caught) */
NG_HD double ng_mqlp_div(double a, double b) { return b == 0.0 ? 0.0 : a / b; }

/* The vector maps of a frozen (stopped) system: everything stays as it is. */
NG_HD void ng_mqlp_freeze(float *sc) {
    int i;
    for (i = NG_MQLP_SC_LBETA; i < NG_MQLP_NSC; i++) sc[i] = 0.0f;
    sc[NG_MQLP_SC_E1] = 1.0f;
    sc[NG_MQLP_SC_A1] = 1.0f;
    sc[NG_MQLP_SC_B2] = 1.0f;
    sc[NG_MQLP_SC_F0] = 1.0f;
}

/* Start a system: beta1 = ||b|| in sc[NG_MQLP_SC_BETAN]; v1 = VSCALE b. b = 0 stops at once (flag
 * 0, x = 0); a non-finite ||b|| stops with flag 10. */
NG_HD void ng_mqlp_init(double *st, float *sc) {
    const double beta1 = (double)sc[NG_MQLP_SC_BETAN];
    int i;
    for (i = 0; i < NG_MQLP_NSTATE; i++) st[i] = 0.0;
    st[NG_MQLP_CS] = -1.0;
    st[NG_MQLP_CR1] = -1.0;
    st[NG_MQLP_CR2] = -1.0;
    st[NG_MQLP_ACOND] = 1.0;
    st[NG_MQLP_BETA1] = beta1;
    st[NG_MQLP_BETAN] = beta1;
    st[NG_MQLP_PHI] = beta1;
    st[NG_MQLP_RNORM] = beta1;
    st[NG_MQLP_RELRES] = beta1 > 0.0 ? 1.0 : 0.0;
    st[NG_MQLP_FLAG] = !ng_finite_d(beta1) ? NG_MQLP_NONFINITE : beta1 > 0.0 ? NG_MQLP_RUNNING : 0;
    ng_mqlp_freeze(sc);
    if (st[NG_MQLP_FLAG] == NG_MQLP_RUNNING) sc[NG_MQLP_SC_VSCALE] = (float)(1.0 / beta1);
}

/* One iteration k of MINRES-QLP from alpha_k = v_k^T (A v_k - beta_k v_{k-1}) and beta_{k+1} =
 * ||A v_k - alpha_k v_k - beta_k v_{k-1}||; see the block comment above. The last diagonal of L
 * counts as zero (flag 9, the component dropped: the minimum-length solution) when |gamma_k| <=
 * max(singtol ||A||, DBL_MIN): minresqlp.m tests against realmin alone, which is right for
 * double-precision Lanczos vectors; float ones leave gamma_k at rounding level, not at 0. */
NG_HD void ng_mqlp_step(double *st, float *sc, int max_iter, double rtol, double maxxnorm,
                        double trancond, double singtol) {
    const double realmin = 2.2250738585072014e-308, eps = 2.220446049250313e-16;
    double alpha, betan, beta, pnorm, dbar, dlta, gbar, epln, eplnn, dltan, dlta_qlp, gamal2;
    double gamal, gama, gama_tmp, cs, sn, taul2, taul, tau, phi, cr1, sr1, cr2, sr2, vepln;
    double veplnl, veplnl2 = 0.0, eta, etal, etal2 = 0.0, ul4, ul3, ul2, ul, u, xl2norm, xnorm;
    double xnorm_tmp, anorm, acond, acondl, gmin, gminl, rnorm, rnorml, relres, relresl;
    double rootl, relares, beta1, gamal_tmp, abs_gama, c11 = 1.0, c12 = 0.0, c22 = 1.0;
    double a1, a2, a3, b1, b2, b3, e0 = 0.0, e1 = 1.0, e2 = 0.0, e3 = 0.0, e4 = 0.0;
    double f0, f1, f2, f3;
    int k, flag = NG_MQLP_RUNNING, qlpiter;
    if (st[NG_MQLP_FLAG] != NG_MQLP_RUNNING) {
        ng_mqlp_freeze(sc);
        return;
    }
    alpha = (double)sc[NG_MQLP_SC_ALPHA];
    betan = (double)sc[NG_MQLP_SC_BETAN];
    if (!ng_finite_d(alpha) || !ng_finite_d(betan)) {
        st[NG_MQLP_FLAG] = NG_MQLP_NONFINITE;
        ng_mqlp_freeze(sc);
        return;
    }
    k = (int)st[NG_MQLP_ITER] + 1;
    qlpiter = (int)st[NG_MQLP_QLPITER];
    beta1 = st[NG_MQLP_BETA1];
    beta = k > 1 ? st[NG_MQLP_BETAN] : 0.0; /* T(k, k-1); v_1 = b / beta1 has no predecessor */
    pnorm = ng_mqlp_hypot3(beta, alpha, betan); /* column k of T_{k+1,k} */

    /* previous left reflector Q_{k-1,k} on column k, then the new one Q_{k,k+1} (Table 3.5) */
    cs = st[NG_MQLP_CS];
    sn = st[NG_MQLP_SN];
    dbar = st[NG_MQLP_DLTAN];
    dlta = cs * dbar + sn * alpha;
    gbar = sn * dbar - cs * alpha;
    epln = st[NG_MQLP_EPLNN];
    eplnn = sn * betan;
    dltan = -cs * betan;
    dlta_qlp = dlta;
    gamal2 = st[NG_MQLP_GAMAL];
    gamal = st[NG_MQLP_GAMA];
    ng_mqlp_symortho(gbar, betan, &cs, &sn, &gama);
    gama_tmp = gama;
    taul2 = st[NG_MQLP_TAUL];
    taul = st[NG_MQLP_TAU];
    phi = st[NG_MQLP_PHI];
    tau = cs * phi;
    phi = sn * phi;

    /* previous right reflector P_{k-2,k}, then the current one P_{k-1,k} */
    cr2 = st[NG_MQLP_CR2];
    sr2 = st[NG_MQLP_SR2];
    vepln = st[NG_MQLP_VEPLN];
    veplnl = st[NG_MQLP_VEPLNL];
    eta = st[NG_MQLP_ETA];
    etal = st[NG_MQLP_ETAL];
    if (k > 2) {
        const double d = sr2 * vepln - cr2 * dlta;
        veplnl2 = veplnl;
        etal2 = etal;
        etal = eta;
        veplnl = cr2 * vepln + sr2 * dlta;
        dlta = d;
        eta = sr2 * gama;
        gama = -cr2 * gama;
    }
    cr1 = st[NG_MQLP_CR1];
    sr1 = st[NG_MQLP_SR1];
    if (k > 1) {
        ng_mqlp_symortho(gamal, dlta, &cr1, &sr1, &gamal);
        vepln = sr1 * gama;
        gama = -cr1 * gama;
    }

    /* the last three components of L_k u = tau (the solution in the basis W_k), and ||x|| */
    ul4 = st[NG_MQLP_UL3];
    ul3 = st[NG_MQLP_UL2];
    ul2 = st[NG_MQLP_UL2];
    ul = st[NG_MQLP_UL];
    if (k > 2) ul2 = ng_mqlp_div(taul2 - etal2 * ul4 - veplnl2 * ul3, gamal2);
    if (k > 1) ul = ng_mqlp_div(taul - etal * ul3 - veplnl * ul2, gamal);
    xl2norm = st[NG_MQLP_XL2NORM];
    xnorm_tmp = ng_mqlp_hypot3(xl2norm, ul2, ul);
    anorm = st[NG_MQLP_ANORM] > pnorm ? st[NG_MQLP_ANORM] : pnorm;
    if (fabs(gama) > realmin && fabs(gama) > singtol * anorm && xnorm_tmp < maxxnorm) {
        u = (tau - eta * ul2 - vepln * ul) / gama;
        if (ng_mqlp_hypot3(xnorm_tmp, u, 0.0) > maxxnorm) {
            u = 0.0;
            flag = 6;
        }
    } else {
        u = 0.0;
        flag = 9;
    }
    xl2norm = ng_mqlp_hypot3(xl2norm, ul2, 0.0);
    xnorm = ng_mqlp_hypot3(xl2norm, ul, u);

    /* the vector maps of this step (block comment above) */
    acond = st[NG_MQLP_ACOND];
    if (acond < trancond && flag == NG_MQLP_RUNNING && qlpiter == 0) {
        /* MINRES: w_k = (v_k - epln w_{k-2} - dlta w_{k-1}) / gamma_k, x += tau w_k */
        a1 = 0.0;
        a2 = 1.0;
        a3 = 0.0;
        b1 = -epln / gama_tmp;
        b2 = -dlta_qlp / gama_tmp;
        b3 = 1.0 / gama_tmp;
        f0 = 1.0;
        f1 = 0.0;
        f2 = 0.0;
        f3 = tau;
        if (!(xnorm < maxxnorm)) {
            f3 = 0.0;
            flag = 6;
        }
    } else {
        double ew = 0.0, ev = 0.0;
        qlpiter++;
        if (qlpiter == 1) {
            /* transfer (section 6.1): the MINRES directions D = V R^-1 become W = V P^T = D L
             * on their last two columns, and the finished part xl2 = x - ul w_{k-2} - u w_{k-1} */
            if (k > 1) {
                if (k > 2) {
                    c11 = st[NG_MQLP_GAMAL_QLP];
                    c12 = st[NG_MQLP_VEPLN_QLP];
                }
                c22 = st[NG_MQLP_GAMA_QLP];
                e0 = 1.0;
                e1 = 0.0;
                e2 = -st[NG_MQLP_UL_QLP] * c11;
                e3 = -st[NG_MQLP_UL_QLP] * c12 - st[NG_MQLP_U_QLP] * c22;
            } else {
                e1 = 0.0;
            }
        }
        /* W_k = V_k P_k^T: the right reflectors on (w_{k-2}, w_{k-1}, v_k) */
        if (k == 1) {
            a1 = 0.0, a2 = 0.0, a3 = sr1;
            b1 = 0.0, b2 = 0.0, b3 = -cr1;
        } else if (k == 2) {
            a1 = 0.0, a2 = cr1, a3 = sr1;
            b1 = 0.0, b2 = sr1, b3 = -cr1;
            ew = ul2;
        } else {
            a1 = sr1 * sr2, a2 = cr1, a3 = -sr1 * cr2;
            b1 = -cr1 * sr2, b2 = sr1, b3 = cr1 * cr2;
            ew = ul2 * cr2;
            ev = ul2 * sr2;
        }
        /* through the transfer map (WLc, Wc) = (c11 WL + c12 W, c22 W) */
        a2 = a1 * c12 + a2 * c22;
        a1 = a1 * c11;
        b2 = b1 * c12 + b2 * c22;
        b1 = b1 * c11;
        e2 += ew * c11;
        e3 += ew * c12;
        e4 += ev;
        f0 = 0.0;
        f1 = 1.0;
        f2 = ul;
        f3 = u;
    }

    /* next right reflector P_{k-1,k+1}, kept for the transfer */
    gamal_tmp = gamal;
    ng_mqlp_symortho(gamal, eplnn, &cr2, &sr2, &gamal);

    /* estimates of ||A||, cond(A), ||r||, ||A r|| */
    abs_gama = fabs(gama);
    if (gamal > anorm) anorm = gamal;
    if (abs_gama > anorm) anorm = abs_gama;
    gmin = st[NG_MQLP_GMIN];
    gminl = st[NG_MQLP_GMINL];
    if (k == 1) {
        gmin = abs_gama;
        gminl = gmin;
    } else {
        const double gminl2 = gminl;
        gminl = gmin;
        gmin = gminl2;
        if (gamal < gmin) gmin = gamal;
        if (abs_gama < gmin) gmin = abs_gama;
    }
    acondl = acond;
    acond = gmin > 0.0 ? anorm / gmin : anorm > 0.0 ? 1e300 : 1.0;
    rnorml = st[NG_MQLP_RNORM];
    relresl = st[NG_MQLP_RELRES];
    rnorm = flag != 9 ? phi : rnorml;
    relres = rnorm / beta1;
    rootl = ng_mqlp_hypot3(gbar, dltan, 0.0);
    relares = ng_mqlp_div(rootl, anorm); /* ||A r_{k-1}|| / (||A|| ||r_{k-1}||) */

    /* stopping rules, in minresqlp.m's order (a later one overrides) */
    if (flag == NG_MQLP_RUNNING || flag == 9) {
        if (k >= max_iter) flag = 8;
        if (xnorm >= maxxnorm) flag = 6;
        if (anorm * xnorm * eps >= beta1) flag = 5;
        if (1.0 + relares <= 1.0) flag = 4;
        if (1.0 + relres <= 1.0) flag = 3;
        if (relares <= rtol) flag = 2;
        if (relres <= rtol) flag = 1;
    }
    if (flag == NG_MQLP_RUNNING && betan == 0.0) flag = 9; /* Lanczos breakdown, not solved */
    if (flag == 2 || flag == 4 || flag == 6) { /* the estimates of x_{k-1} describe x better */
        acond = acondl;
        rnorm = rnorml;
        relres = relresl;
    }

    st[NG_MQLP_ITER] = (double)k;
    st[NG_MQLP_FLAG] = (double)flag;
    st[NG_MQLP_QLPITER] = (double)qlpiter;
    st[NG_MQLP_BETAN] = betan;
    st[NG_MQLP_CS] = cs;
    st[NG_MQLP_SN] = sn;
    st[NG_MQLP_DLTAN] = dltan;
    st[NG_MQLP_EPLNN] = eplnn;
    st[NG_MQLP_PHI] = phi;
    st[NG_MQLP_TAU] = tau;
    st[NG_MQLP_TAUL] = taul;
    st[NG_MQLP_GAMA] = gama;
    st[NG_MQLP_GAMAL] = gamal;
    st[NG_MQLP_CR1] = cr1;
    st[NG_MQLP_SR1] = sr1;
    st[NG_MQLP_CR2] = cr2;
    st[NG_MQLP_SR2] = sr2;
    st[NG_MQLP_VEPLN] = vepln;
    st[NG_MQLP_VEPLNL] = veplnl;
    st[NG_MQLP_ETA] = eta;
    st[NG_MQLP_ETAL] = etal;
    st[NG_MQLP_UL3] = ul3;
    st[NG_MQLP_UL2] = ul2;
    st[NG_MQLP_UL] = ul;
    st[NG_MQLP_U] = u;
    st[NG_MQLP_XL2NORM] = xl2norm;
    st[NG_MQLP_XNORM] = xnorm;
    st[NG_MQLP_ANORM] = anorm;
    st[NG_MQLP_ACOND] = acond;
    st[NG_MQLP_GMIN] = gmin;
    st[NG_MQLP_GMINL] = gminl;
    st[NG_MQLP_RNORM] = rnorm;
    st[NG_MQLP_RELRES] = relres;
    st[NG_MQLP_RELARES] = relares;
    st[NG_MQLP_GAMAL_QLP] = gamal_tmp;
    st[NG_MQLP_VEPLN_QLP] = vepln;
    st[NG_MQLP_GAMA_QLP] = gama;
    st[NG_MQLP_UL_QLP] = ul;
    st[NG_MQLP_U_QLP] = u;

    sc[NG_MQLP_SC_E0] = (float)e0;
    sc[NG_MQLP_SC_E1] = (float)e1;
    sc[NG_MQLP_SC_E2] = (float)e2;
    sc[NG_MQLP_SC_E3] = (float)e3;
    sc[NG_MQLP_SC_E4] = (float)e4;
    sc[NG_MQLP_SC_A1] = (float)a1;
    sc[NG_MQLP_SC_A2] = (float)a2;
    sc[NG_MQLP_SC_A3] = (float)a3;
    sc[NG_MQLP_SC_B1] = (float)b1;
    sc[NG_MQLP_SC_B2] = (float)b2;
    sc[NG_MQLP_SC_B3] = (float)b3;
    sc[NG_MQLP_SC_F0] = (float)f0;
    sc[NG_MQLP_SC_F1] = (float)f1;
    sc[NG_MQLP_SC_F2] = (float)f2;
    sc[NG_MQLP_SC_F3] = (float)f3;
    /* the next Lanczos step; a stopped system runs on v = 0 */
    sc[NG_MQLP_SC_LBETA] = flag == NG_MQLP_RUNNING ? (float)betan : 0.0f;
    sc[NG_MQLP_SC_VSCALE] = flag == NG_MQLP_RUNNING && betan > 0.0 ? (float)(1.0 / betan) : 0.0f;
}

/* One call of NG_OP_MINRESQLP_STEP on one system: init = 1 starts it, else one iteration. */
NG_HD void ng_mqlp_run(double *st, float *sc, int init, int max_iter, double rtol,
                       double maxxnorm, double trancond, double singtol) {
    if (init) ng_mqlp_init(st, sc);
    else ng_mqlp_step(st, sc, max_iter, rtol, maxxnorm, trancond, singtol);
}

/* ---- convolutional layers (conv_gather and whiten1x1; natgrad/nn_types.h) ------------------ */

NG_HD int ng_conv_out_dim(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

/* Number of output elements of a conv_gather mode. */
NG_HD size_t ng_conv_gather_count(int mode, const ng_conv_shape *s) {
    const size_t n = (size_t)s->n, c = (size_t)s->c;
    const size_t ho = (size_t)ng_conv_out_dim(s->h, s->kh, s->stride, s->pad);
    const size_t wo = (size_t)ng_conv_out_dim(s->w, s->kw, s->stride, s->pad);
    if (mode == NG_CONV_IM2COL) return n * ho * wo * c * (size_t)s->kh * (size_t)s->kw;
    if (mode == NG_CONV_POOL_MAX || mode == NG_CONV_POOL_AVG || mode == NG_CONV_POOL_MAX_R) return n * c * ho * wo;
    return n * c * (size_t)s->h * (size_t)s->w;
}

/* The maximum of window (oh, ow) of map m (h x w) and its position ih * w + iw (the first maximum
 * in row-major window order; padding skipped; a NaN wins and stays). */
NG_HD float ng_pool_max_window(const ng_conv_shape *s, const float *m, int oh, int ow, int *at) {
    float best = 0.0f;
    int i, j, found = 0;
    *at = -1;
    for (i = 0; i < s->kh; i++) {
        const int ih = oh * s->stride - s->pad + i;
        if (ih < 0 || ih >= s->h) continue;
        for (j = 0; j < s->kw; j++) {
            const int iw = ow * s->stride - s->pad + j;
            float v;
            if (iw < 0 || iw >= s->w) continue;
            v = m[(size_t)ih * s->w + iw];
            if (!found || v > best || (v != v && best == best)) {
                best = v;
                *at = ih * s->w + iw;
                found = 1;
            }
        }
    }
    return best;
}

/* The augmentation of image b (conv_gather AUGMENT; b counts from the call's b0, the image's index
 * in the stream): shifts dy, dx in [-pad, pad] and the mirror flag from the Philox uniforms 3b,
 * 3b + 1, 3b + 2 of (key, step). */
NG_HD void ng_augment_draw(uint64_t key, uint64_t step, uint64_t b, int pad, int flip, int *dy, int *dx, int *mirror) {
    const int span = 2 * pad + 1;
    int a = (int)(ng_uniform_at(key, step, 3 * (uint64_t)b) * (float)span);
    int c = (int)(ng_uniform_at(key, step, 3 * (uint64_t)b + 1) * (float)span);
    *dy = (a < span ? a : span - 1) - pad;
    *dx = (c < span ? c : span - 1) - pad;
    *mirror = flip && ng_uniform_at(key, step, 3 * (uint64_t)b + 2) < 0.5f;
}

/* Element e of the conv_gather output (modes in natgrad/nn_types.h). x: input maps (or col for
 * COL2IM is g), g: col or dy. Sums run in a fixed order (kernel row, then column) in float. */
NG_HD float ng_conv_gather_elem(int mode, const ng_conv_shape *s, const float *x, const float *g, size_t e,
                                int flip, uint64_t key, uint64_t step, uint64_t b0) {
    const int ho = ng_conv_out_dim(s->h, s->kh, s->stride, s->pad);
    const int wo = ng_conv_out_dim(s->w, s->kw, s->stride, s->pad);
    const size_t P = (size_t)ho * (size_t)wo, hw = (size_t)s->h * (size_t)s->w;
    const size_t K = (size_t)s->c * (size_t)s->kh * (size_t)s->kw;
    if (mode == NG_CONV_IM2COL) {
        const size_t p = e % P, k = (e / P) % K, b = e / (P * K);
        const int oh = (int)(p / (size_t)wo), ow = (int)(p % (size_t)wo);
        const int ci = (int)(k / (size_t)(s->kh * s->kw)), r = (int)(k % (size_t)(s->kh * s->kw));
        const int ih = oh * s->stride - s->pad + r / s->kw, iw = ow * s->stride - s->pad + r % s->kw;
        if (ih < 0 || ih >= s->h || iw < 0 || iw >= s->w) return 0.0f;
        return x[(b * (size_t)s->c + (size_t)ci) * hw + (size_t)ih * s->w + (size_t)iw];
    }
    if (mode == NG_CONV_POOL_MAX || mode == NG_CONV_POOL_AVG || mode == NG_CONV_POOL_MAX_R) {
        const size_t q = e % P, m = e / P; /* m = b c + ci */
        const int oh = (int)(q / (size_t)wo), ow = (int)(q % (size_t)wo);
        const float *map = x + m * hw;
        int i, j, at;
        float acc = 0.0f;
        if (mode == NG_CONV_POOL_MAX) return ng_pool_max_window(s, map, oh, ow, &at);
        if (mode == NG_CONV_POOL_MAX_R) { /* g at the window's argmax of x (R{max} = R{x_argmax}) */
            (void)ng_pool_max_window(s, map, oh, ow, &at);
            return at < 0 ? 0.0f : g[m * hw + (size_t)at];
        }
        for (i = 0; i < s->kh; i++) {
            const int ih = oh * s->stride - s->pad + i;
            if (ih < 0 || ih >= s->h) continue;
            for (j = 0; j < s->kw; j++) {
                const int iw = ow * s->stride - s->pad + j;
                if (iw >= 0 && iw < s->w) acc += map[(size_t)ih * s->w + iw];
            }
        }
        return acc / (float)(s->kh * s->kw);
    }
    if (mode == NG_CONV_AUGMENT) { /* e = pixel + hw m, m = b c + ci */
        const size_t pix = e % hw, m = e / hw, b = m / (size_t)s->c;
        const int oy = (int)(pix / (size_t)s->w), ox = (int)(pix % (size_t)s->w);
        int dy, dx, mirror, iy, ix;
        ng_augment_draw(key, step, b0 + (uint64_t)b, s->pad, flip, &dy, &dx, &mirror);
        iy = oy + dy;
        ix = (mirror ? s->w - 1 - ox : ox) + dx;
        if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) return 0.0f;
        return x[m * hw + (size_t)iy * s->w + (size_t)ix];
    }
    if (mode == NG_CONV_TO_NHWC) { /* e = ci + c (pixel + hw b) */
        const size_t ci = e % (size_t)s->c, rest = e / (size_t)s->c;
        const size_t pix = rest % hw, b = rest / hw;
        return x[(b * (size_t)s->c + ci) * hw + pix];
    }
    if (mode == NG_CONV_TO_NCHW) { /* e = pixel + hw (ci + c b) */
        const size_t pix = e % hw, ci = (e / hw) % (size_t)s->c, b = e / (hw * (size_t)s->c);
        return x[ci + (size_t)s->c * (pix + hw * b)];
    }
    {
        /* COL2IM, POOL_MAX_BACK, POOL_AVG_BACK: e = pixel (ih, iw) of map m = b c + ci; visit the
         * windows (oh, ow) that hold it, kernel row i then column j */
        const size_t pix = e % hw, m = e / hw;
        const int ih = (int)(pix / (size_t)s->w), iw = (int)(pix % (size_t)s->w);
        const size_t b = m / (size_t)s->c, ci = m % (size_t)s->c;
        float acc = 0.0f;
        int i, j;
        for (i = 0; i < s->kh; i++) {
            const int th = ih + s->pad - i;
            int oh;
            if (th < 0 || th % s->stride) continue;
            oh = th / s->stride;
            if (oh >= ho) continue;
            for (j = 0; j < s->kw; j++) {
                const int tw = iw + s->pad - j;
                int ow, at;
                if (tw < 0 || tw % s->stride) continue;
                ow = tw / s->stride;
                if (ow >= wo) continue;
                if (mode == NG_CONV_COL2IM) {
                    const size_t k = (ci * (size_t)s->kh + (size_t)i) * (size_t)s->kw + (size_t)j;
                    acc += g[(size_t)oh * wo + (size_t)ow + P * (k + K * b)];
                } else if (mode == NG_CONV_POOL_AVG_BACK) {
                    acc += g[m * P + (size_t)oh * wo + (size_t)ow];
                } else {
                    (void)ng_pool_max_window(s, x + m * hw, oh, ow, &at);
                    if (at == (int)pix) acc += g[m * P + (size_t)oh * wo + (size_t)ow];
                }
            }
        }
        return mode == NG_CONV_POOL_AVG_BACK ? acc / (float)(s->kh * s->kw) : acc;
    }
}

/* Row (b, k, oh) of the IM2COL output: the wo entries e = ow + wo oh + P (k + K b), ow < wo, into
 * out[0 .. wo): the values ng_conv_gather_elem copies (bit for bit), for loops over rows (the CPU
 * backend), which then pay the index arithmetic once per row instead of once per element. */
NG_HD void ng_im2col_row(const ng_conv_shape *s, const float *x, size_t b, int k, int oh, int wo, float *out) {
    const int taps = s->kh * s->kw, ci = k / taps, i = (k % taps) / s->kw, j = k % s->kw;
    const int ih = oh * s->stride - s->pad + i;
    const float *xr;
    int ow;
    if (ih < 0 || ih >= s->h) {
        for (ow = 0; ow < wo; ow++) out[ow] = 0.0f;
        return;
    }
    xr = x + ((b * (size_t)s->c + (size_t)ci) * (size_t)s->h + (size_t)ih) * (size_t)s->w;
    for (ow = 0; ow < wo; ow++) {
        const int iw = ow * s->stride - s->pad + j;
        out[ow] = iw >= 0 && iw < s->w ? xr[iw] : 0.0f;
    }
}

/* Element e = q + p (i + cout b) of the 1x1 whitening convolution (whiten1x1 op):
 * y = sum_j op(U)[i, j] (x[b, j, q] - mean[j]), in double, j ascending. */
NG_HD float ng_whiten1x1_elem(int c, int cout, int p, int trans, const float *x, const float *mean,
                              const float *U, int ldu, size_t e) {
    const size_t q = e % (size_t)p, i = (e / (size_t)p) % (size_t)cout, b = e / ((size_t)p * (size_t)cout);
    const float *xb = x + b * (size_t)c * (size_t)p + q;
    double acc = 0.0;
    int j;
    for (j = 0; j < c; j++) {
        const double u = (double)(trans ? U[(size_t)j + i * (size_t)ldu] : U[i + (size_t)j * (size_t)ldu]);
        acc += u * ((double)xb[(size_t)j * (size_t)p] - (mean ? (double)mean[j] : 0.0));
    }
    return (float)acc;
}

#endif
