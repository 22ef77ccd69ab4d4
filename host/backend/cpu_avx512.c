/* cpu_avx512.c: AVX-512 versions of the CPU backend's hottest elementwise loops: the Philox4x32-10
 * uniforms and the fused sigmoid + Bernoulli draw of gibbs_sample and bernoulli (see cpu.c). They
 * exist because GCC's vectorisation of the ng_math.h bodies is slow at both: it multiplies the
 * Philox words with vpmullq (a 64x64-bit product, 3 uops, where one vpmuludq gives the 32x32->64
 * product the round needs) and looks ng_expf's 32-entry table up one lane at a time. Here each
 * round is two vpmuludq, two shifts and two three-way xors per 8 blocks, and the table lookup two
 * vpermt2pd (16 entries each) and a blend per 8 lanes. Every operation is the one the scalar body
 * performs, in the same order and rounding (IEEE float/double adds, multiplies, fmas, divides and
 * conversions under the default rounding mode), so the results are the scalar bodies' bits;
 * tests/test_backend.c compares them bit for bit with scalar loops (and with the clones that
 * ng_cpu_use_avx512(0) selects), including NaN, infinities, zeros and the clamps of ng_expf.
 * Compiled for x86-64-v4 (AVX-512 F/BW/DQ/VL) with GCC only, and called only on a CPU that has it.
 * Must not be called from a CUDA kernel's body; ng_math.h stays the single statement of the math. */
#include "backend/cpu_avx512.h"
#include "natgrad/backend.h"

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define NG_AVX512_BUILT 1
#pragma GCC target("arch=x86-64-v4")
#include <immintrin.h>
#include <string.h>

#include "ng_math.h"

static int avx512_off; /* ng_cpu_use_avx512(0) */

static int cpu_has_v4(void) {
    static int has = -1;
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
              __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
              __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
    }
    return has;
}

int ng_cpu_avx512_active(void) { return !avx512_off && cpu_has_v4(); }

int ng_cpu_use_avx512(int on) {
    const int was = ng_cpu_avx512_active();
    avx512_off = !on;
    return was;
}

/* ---- Philox4x32-10 on 8 blocks per register -------------------------------------------------
 * Each 64-bit lane holds one block's word in its low 32 bits; the high halves carry garbage that
 * no step reads (vpmuludq reads the low halves, and the xors feed only low halves onward). */
static inline __attribute__((always_inline)) void philox_round8(__m512i *x, __m512i *y, __m512i *z, __m512i *w,
                                                                 __m512i k0, __m512i k1) {
    const __m512i m0 = _mm512_set1_epi64(0xD2511F53), m1 = _mm512_set1_epi64(0xCD9E8D57);
    const __m512i p0 = _mm512_mul_epu32(*x, m0), p1 = _mm512_mul_epu32(*z, m1);
    const __m512i nx = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p1, 32), *y, k0, 0x96); /* hi1 ^ y ^ k0 */
    const __m512i nz = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p0, 32), *w, k1, 0x96); /* hi0 ^ w ^ k1 */
    *y = p1; /* lo1 */
    *w = p0; /* lo0 */
    *x = nx;
    *z = nz;
}

/* The 32 uniforms of blocks g .. g+7 (g: 8 lanes of block numbers) in element order. */
static inline __attribute__((always_inline)) void philox8(__m512i g, uint64_t key, uint64_t step, float *u) {
    const __m512i idx0 = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), idx1 = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    const __m512 scale = _mm512_set1_ps(2.3283064e-10f), half = _mm512_set1_ps(2.3283064e-10f / 2.0f);
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    __m512i x = g, y = _mm512_srli_epi64(g, 32), z = _mm512_set1_epi64((long long)(uint32_t)step),
            w = _mm512_set1_epi64((long long)(step >> 32)), xy, zw;
    int r;
    for (r = 0; r < 10; r++) {
        philox_round8(&x, &y, &z, &w, _mm512_set1_epi64((long long)k0), _mm512_set1_epi64((long long)k1));
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    /* lane l: dwords (x_l, y_l) and (z_l, w_l); then blocks in order, four words each */
    xy = _mm512_mask_blend_epi32(0xAAAA, x, _mm512_slli_epi64(y, 32));
    zw = _mm512_mask_blend_epi32(0xAAAA, z, _mm512_slli_epi64(w, 32));
    /* ng_u32_to_uniform: (float)word * 2^-32 + 2^-33, a multiply then an add (no contraction) */
    _mm512_storeu_ps(u, _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepu32_ps(_mm512_permutex2var_epi64(xy, idx0, zw)), scale), half));
    _mm512_storeu_ps(u + 16, _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepu32_ps(_mm512_permutex2var_epi64(xy, idx1, zw)), scale), half));
}

void ng_avx512_uniform4_blocks(uint64_t key, uint64_t step, uint64_t g0, long groups, float *u) {
    const __m512i lane = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), eight = _mm512_set1_epi64(8);
    long i;
    for (i = 0; i < groups; i++) {
        const __m512i g = _mm512_add_epi64(_mm512_set1_epi64((long long)(g0 + 16u * (uint64_t)i)), lane);
        philox8(g, key, step, u + 64 * i);
        philox8(_mm512_add_epi64(g, eight), key, step, u + 64 * i + 32);
    }
}

/* ---- ng_expf and ng_sigmoid on 8 lanes ---------------------------------------------------------
 * ng_expf for the arguments ng_sigmoid gives it, x <= 0 (or NaN): the clamp at 89 never acts on
 * them, so only the one at -104 is applied; NaN lanes return a value that sigmoid16 replaces (as
 * ng_expf returns x + x, and sigmoid's division passes that NaN on, sigmoid16 returns x + x).
 * The table of 2^(i/32) in four registers, looked up by the low five bits of ki. */
static inline __attribute__((always_inline)) __m256 expf8_nonpos(__m256 x) {
    const __m512d inv_ln2_n = _mm512_set1_pd(0x1.71547652b82fep+5), shift = _mm512_set1_pd(0x1.8p+52);
    const __m512d c0 = _mm512_set1_pd(0x1.c6af84b912394p-20), c1 = _mm512_set1_pd(0x1.ebfce50fac4f3p-13),
                  c2 = _mm512_set1_pd(0x1.62e42ff0c52d6p-6), one = _mm512_set1_pd(1.0);
    const __m512i t0 = _mm512_loadu_si512(ng_exp2f_tab), t1 = _mm512_loadu_si512(ng_exp2f_tab + 8),
                  t2 = _mm512_loadu_si512(ng_exp2f_tab + 16), t3 = _mm512_loadu_si512(ng_exp2f_tab + 24);
    /* x0 > -104 ? x0 : -104: vmaxpd returns its second operand when the comparison fails, exactly
     * this select (x1 < 89 ? x1 : 89 is x1 here) */
    const __m512d xd = _mm512_max_pd(_mm512_cvtps_pd(x), _mm512_set1_pd(-104.0));
    const __m512d kds = _mm512_fmadd_pd(inv_ln2_n, xd, shift);
    const __m512d kd = _mm512_sub_pd(kds, shift);
    const __m512d r = _mm512_fmsub_pd(inv_ln2_n, xd, kd); /* fma(inv_ln2_n, xd, -kd) */
    const __m512i ki = _mm512_castpd_si512(kds);
    const __m512i lo = _mm512_permutex2var_epi64(t0, ki, t1), hi = _mm512_permutex2var_epi64(t2, ki, t3);
    const __m512i tab = _mm512_mask_blend_epi64(_mm512_test_epi64_mask(ki, _mm512_set1_epi64(16)), lo, hi);
    const __m512d s = _mm512_castsi512_pd(_mm512_add_epi64(tab, _mm512_slli_epi64(ki, 47)));
    const __m512d y = _mm512_mul_pd(_mm512_fmadd_pd(_mm512_fmadd_pd(c0, r, c1), _mm512_mul_pd(r, r), _mm512_fmadd_pd(r, c2, one)), s);
    return _mm512_cvtpd_ps(y);
}

/* ng_sigmoid on 16 lanes: pos = x >= 0; e = expf(pos ? -x : x); (pos ? 1 : e) / (1 + e). For a
 * NaN x, pos is false, expf gives e = x + x and the division e / (1 + e) returns e's NaN (the
 * first operand's, as x86 divides two NaNs): x + x, set here once for the 16 lanes. */
static inline __attribute__((always_inline)) __m512 sigmoid16(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);
    const __m512 a = _mm512_mask_xor_ps(x, pos, x, _mm512_set1_ps(-0.0f)); /* -x flips the sign bit */
    const __m512 e = _mm512_insertf32x8(_mm512_castps256_ps512(expf8_nonpos(_mm512_castps512_ps256(a))),
                                        expf8_nonpos(_mm512_extractf32x8_ps(a, 1)), 1);
    const __m512 p = _mm512_div_ps(_mm512_mask_blend_ps(pos, e, one), _mm512_add_ps(one, e));
    return _mm512_mask_add_ps(p, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x, x);
}

/* ---- draws without the exact probability ------------------------------------------------------
 * A draw needs only the side of u on which sigmoid(x) falls. With the numerator N (1 for x >= 0,
 * else e) and denominator D = 1 + e of the sigmoid, e = exp(-|x|), the draw is 1 iff u D - N <= 0
 * up to the rounding of the exact path. decide16 evaluates d = u D' - N' with a cheap float e'
 * (2^t by a degree-6 Taylor polynomial on |f| <= 1/2, scaled by 2^k: relative error below 3e-7,
 * no table, no division, no double) and decides a lane only when |d| > NG_DRAW_MARGIN; a vector
 * with any undecided lane (or a NaN input) is drawn by the exact sigmoid16 instead.
 * Why the margin is safe: e <= 1, so N' and D' are within 1e-6 of N and D (the polynomial's
 * 3e-7, t's rounding 6e-8 |t| weighted by e(t) <= 2^-|t|, float rounding); u <= 1, so d is within
 * 2.2e-6 of u D - N. |d| > 1e-5 then puts u at least (1e-5 - 2.2e-6) / 2 = 3.9e-6 from the true
 * sigmoid (D <= 2), while the exact path's float sigmoid is within 2e-7 of it: both give the same
 * draw, bit for bit. The exact path runs on a vector with probability about 16 x 2e-5 / 2 per
 * random input (tests/test_backend.c counts both paths and checks the draws on inputs placed at
 * the exact probability, one float step either side, and at the margin). */
#define NG_DRAW_MARGIN 1e-5f
static long avx512_exact_draws, avx512_fast_draws; /* vectors by path (for the tests; atomic: OpenMP tiles) */

void ng_avx512_draw_counts(long *fast, long *exact) {
    *fast = __atomic_load_n(&avx512_fast_draws, __ATOMIC_RELAXED);
    *exact = __atomic_load_n(&avx512_exact_draws, __ATOMIC_RELAXED);
}

/* 1 in the lanes drawn (u <= sigmoid(x)), in *undecided the lanes it cannot decide. */
static inline __attribute__((always_inline)) __mmask16 decide16(__m512 x, __m512 u, __mmask16 *undecided) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);
    /* a = -|x| clamped at -87 (exp(-87) > 0 in float; below it e' = 2^-125.5 stands for a smaller e,
     * 1e-38 off); a NaN x goes to the exact path (max returns -87 for it, so it is flagged) */
    const __m512 a = _mm512_max_ps(_mm512_or_ps(x, _mm512_set1_ps(-0.0f)), _mm512_set1_ps(-87.0f));
    const __m512 t = _mm512_mul_ps(a, _mm512_set1_ps(1.44269504088896341f)); /* log2(e) a */
    const __m512 k = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_mul_ps(_mm512_sub_ps(t, k), _mm512_set1_ps(0.693147180559945309f)); /* |f| <= ln2 / 2 */
    __m512 q = _mm512_set1_ps(1.0f / 720.0f);
    q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(1.0f / 120.0f));
    q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(1.0f / 24.0f));
    q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(1.0f / 6.0f));
    q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(0.5f));
    q = _mm512_fmadd_ps(q, f, one);
    q = _mm512_fmadd_ps(q, f, one);
    {
        const __m512 e = _mm512_scalef_ps(q, k);
        const __m512 num = _mm512_mask_blend_ps(pos, e, one), den = _mm512_add_ps(one, e);
        const __m512 d = _mm512_fmsub_ps(u, den, num);
        const __m512 margin = _mm512_set1_ps(NG_DRAW_MARGIN);
        *undecided = _mm512_cmp_ps_mask(_mm512_abs_ps(d), margin, _CMP_NGT_UQ) | _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
        return _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_LE_OQ);
    }
}

void ng_avx512_gibbs_column(int n, const float *pre, const float *bias, float beta, const float *base,
                            const float *u, float *prob, float *smp) {
    const __m512 vbeta = _mm512_set1_ps(beta), vomb = _mm512_set1_ps(1.0f - beta), one = _mm512_set1_ps(1.0f);
    int r;
    if (!prob && smp) { /* draws only: decided without the exact probability where that is safe */
        long fast = 0, exact = 0;
        for (r = 0; r < n; r += 16) {
            const __mmask16 k = n - r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - r)) - 1u);
            const __m512 t = _mm512_add_ps(_mm512_maskz_loadu_ps(k, pre + r), _mm512_maskz_loadu_ps(k, bias + r));
            const __m512 x = _mm512_fmadd_ps(vbeta, t, _mm512_mul_ps(vomb, _mm512_maskz_loadu_ps(k, base + r)));
            const __m512 uu = _mm512_maskz_loadu_ps(k, u + r);
            __mmask16 und, le = decide16(x, uu, &und);
            if (und & k) { /* ng_bernoulli_draw(ng_sigmoid(x), u) exactly */
                le = _mm512_cmp_ps_mask(uu, sigmoid16(x), _CMP_LE_OQ);
                exact++;
            } else {
                fast++;
            }
            _mm512_mask_storeu_ps(smp + r, k, _mm512_maskz_mov_ps(le, one));
        }
        __atomic_fetch_add(&avx512_fast_draws, fast, __ATOMIC_RELAXED);
        __atomic_fetch_add(&avx512_exact_draws, exact, __ATOMIC_RELAXED);
        return;
    }
    for (r = 0; r < n; r += 16) {
        const __mmask16 k = n - r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - r)) - 1u);
        const __m512 t = _mm512_add_ps(_mm512_maskz_loadu_ps(k, pre + r), _mm512_maskz_loadu_ps(k, bias + r));
        /* ng_gibbs_input: fmaf(beta, pre + bias, (1 - beta) * base) */
        const __m512 p = sigmoid16(_mm512_fmadd_ps(vbeta, t, _mm512_mul_ps(vomb, _mm512_maskz_loadu_ps(k, base + r))));
        if (prob) _mm512_mask_storeu_ps(prob + r, k, p);
        if (smp) /* ng_bernoulli_draw: u <= p ? 1 : 0 */
            _mm512_mask_storeu_ps(smp + r, k, _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(k, u + r), p, _CMP_LE_OQ), one));
    }
}

void ng_avx512_bernoulli(long n, const float *p, const float *u, float *out) {
    const __m512 one = _mm512_set1_ps(1.0f);
    long j;
    for (j = 0; j < n; j += 16) {
        const __mmask16 k = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1u);
        const __mmask16 le = _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(k, u + j), _mm512_maskz_loadu_ps(k, p + j), _CMP_LE_OQ);
        _mm512_mask_storeu_ps(out + j, k, _mm512_maskz_mov_ps(le, one));
    }
}

#else /* not GCC on x86-64: the clones in cpu.c always run */
int ng_cpu_avx512_active(void) { return 0; }
int ng_cpu_use_avx512(int on) {
    (void)on;
    return 0;
}
void ng_avx512_uniform4_blocks(uint64_t key, uint64_t step, uint64_t g0, long groups, float *u) {
    (void)key, (void)step, (void)g0, (void)groups, (void)u;
}
void ng_avx512_gibbs_column(int n, const float *pre, const float *bias, float beta, const float *base,
                            const float *u, float *prob, float *smp) {
    (void)n, (void)pre, (void)bias, (void)beta, (void)base, (void)u, (void)prob, (void)smp;
}
void ng_avx512_bernoulli(long n, const float *p, const float *u, float *out) { (void)n, (void)p, (void)u, (void)out; }
void ng_avx512_draw_counts(long *fast, long *exact) { *fast = *exact = 0; }
#endif
