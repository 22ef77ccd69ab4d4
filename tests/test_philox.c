/* test_philox.c: the Philox4x32-10 generator and the stream definition of kernels/ng_math.h.
 * Known-answer vectors come from tests/data/philox_kat.txt (the philox4x32 lines of Random123's
 * published kat_vectors), read at run time: the file is the reference, so a missing or malformed
 * file fails the test rather than falling back to numbers copied into this file. Tests run from the
 * repository root; NG_TEST_DATA overrides the directory.
 * Also checked: a stream word is the matching word of the block evaluation, (seed, purpose) keys are
 * deterministic and separate streams, uniforms lie in (0,1] with the right mean, and the uniform map
 * is cuRAND's x * 2^-32 + 2^-33 in float. Host-only; no backend is involved.
 * Also natgrad's float exp (ng_expf, the CPU's exp in every sigmoid and Gibbs draw): its table is
 * 2^(i/32), its error against expl is within glibc's 0.502 ULP bound, and on an x86-64 glibc
 * machine with FMA it returns libm expf's bits, so the branch-free sigmoid built on it gives the
 * bits of the libm-based one the CPU backend used before. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "natgrad/rng.h"
#include "ng_math.h"

static const char *data_dir(void) {
    const char *s = getenv("NG_TEST_DATA");
    return (s && *s) ? s : "tests/data";
}

static int test_known_answers(void) {
    char path[1024], line[512];
    FILE *f;
    int lineno = 0, nvec = 0;
    snprintf(path, sizeof path, "%s/philox_kat.txt", data_dir());
    f = fopen(path, "r");
    NGT_CHECK(f != NULL,
              "cannot open the Philox known-answer file %s (tests run from the repository root; "
              "NG_TEST_DATA names another directory holding philox_kat.txt)",
              path);
    while (fgets(line, sizeof line, f)) {
        char name[64];
        int rounds;
        unsigned int w[10];
        ng_u32x4 ctr, got, want;
        const char *p = line;
        lineno++;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || *p == '\0') continue;
        if (sscanf(p, "%63s %d %x %x %x %x %x %x %x %x %x %x", name, &rounds, &w[0], &w[1], &w[2],
                   &w[3], &w[4], &w[5], &w[6], &w[7], &w[8], &w[9]) != 12) {
            printf("  %s:%d: malformed known-answer line: %s", path, lineno, line);
            fclose(f);
            return NGT_FAIL;
        }
        if (strcmp(name, "philox4x32") != 0) continue; /* other generators of the KAT file */
        ctr.x = w[0];
        ctr.y = w[1];
        ctr.z = w[2];
        ctr.w = w[3];
        want.x = w[6];
        want.y = w[7];
        want.z = w[8];
        want.w = w[9];
        got = ng_philox4x32(ctr, w[4], w[5], rounds);
        if (got.x != want.x || got.y != want.y || got.z != want.z || got.w != want.w) {
            printf("  %s:%d: philox4x32-%d ctr %08x %08x %08x %08x key %08x %08x\n", path, lineno,
                   rounds, w[0], w[1], w[2], w[3], w[4], w[5]);
            printf("    got  %08x %08x %08x %08x\n    want %08x %08x %08x %08x\n", got.x, got.y,
                   got.z, got.w, want.x, want.y, want.z, want.w);
            fclose(f);
            return NGT_FAIL;
        }
        nvec++;
    }
    fclose(f);
    NGT_CHECK(nvec > 0, "%s holds no philox4x32 vectors", path);
    printf("  %d philox4x32 known-answer vectors from %s match\n", nvec, path);
    return NGT_PASS;
}

/* ng_philox_word(key, step, i) is word i & 3 of Philox(ctr = (lo(i>>2), hi(i>>2), lo(step),
 * hi(step)), key = (lo(key), hi(key))), including indices and steps above 2^32. */
static int test_word_is_block_word(void) {
    static const uint64_t keys[] = {0, 1, 0xDEADBEEFCAFEF00Dull, 0xFFFFFFFFFFFFFFFFull};
    static const uint64_t steps[] = {0, 7, 0x100000003ull, 0xFFFFFFFF00000000ull};
    static const uint64_t bases[] = {0, 4000, 4ull * 0xFFFFFFFFull, 1ull << 34, (1ull << 62) + 8};
    size_t a, b, c;
    for (a = 0; a < sizeof keys / sizeof keys[0]; a++)
        for (b = 0; b < sizeof steps / sizeof steps[0]; b++)
            for (c = 0; c < sizeof bases / sizeof bases[0]; c++) {
                uint64_t i;
                for (i = bases[c]; i < bases[c] + 13; i++) {
                    uint64_t key = keys[a], step = steps[b], blk = i >> 2;
                    ng_u32x4 ctr, o;
                    uint32_t want, got;
                    ctr.x = (uint32_t)blk;
                    ctr.y = (uint32_t)(blk >> 32);
                    ctr.z = (uint32_t)step;
                    ctr.w = (uint32_t)(step >> 32);
                    o = ng_philox4x32(ctr, (uint32_t)key, (uint32_t)(key >> 32), 10);
                    want = (i & 3) == 0 ? o.x : (i & 3) == 1 ? o.y : (i & 3) == 2 ? o.z : o.w;
                    got = ng_philox_word(key, step, i);
                    NGT_CHECK(got == want,
                              "key %016llx step %016llx i %llu: word %08x, block word %08x",
                              (unsigned long long)key, (unsigned long long)step,
                              (unsigned long long)i, got, want);
                    NGT_CHECK(ng_uniform_at(key, step, i) == ng_u32_to_uniform(want),
                              "ng_uniform_at differs from ng_u32_to_uniform(word) at i %llu",
                              (unsigned long long)i);
                }
            }
    return NGT_PASS;
}

static int test_same_key_same_bits(void) {
    uint64_t k1 = ng_rng_key(12345, 3), k2 = ng_rng_key(12345, 3);
    uint64_t i;
    NGT_CHECK(k1 == k2, "ng_rng_key(12345, 3) gave %016llx then %016llx", (unsigned long long)k1,
              (unsigned long long)k2);
    NGT_CHECK(ng_rng_stream_key(12345, NG_RNG_GIBBS) == ng_rng_key(12345, (uint32_t)NG_RNG_GIBBS),
              "host front end ng_rng_stream_key differs from ng_rng_key");
    for (i = 0; i < 10000; i++) {
        NGT_CHECK(ng_philox_word(k1, 5, i) == ng_philox_word(k2, 5, i), "word %llu differs",
                  (unsigned long long)i);
        NGT_CHECK(ng_rng_uniform(k1, 5, i) == ng_uniform_at(k1, 5, i),
                  "ng_rng_uniform differs from ng_uniform_at at %llu", (unsigned long long)i);
    }
    return NGT_PASS;
}

/* Fraction of equal words at equal indices of two streams over n draws. Unrelated streams agree
 * with probability 2^-32 per word, so anything near 1% means the streams are correlated. */
static double equal_fraction(uint64_t ka, uint64_t sa, uint64_t kb, uint64_t sb, uint64_t n) {
    uint64_t i, same = 0;
    for (i = 0; i < n; i++) same += ng_philox_word(ka, sa, i) == ng_philox_word(kb, sb, i);
    return (double)same / (double)n;
}

static int test_streams_differ(void) {
    const uint64_t n = 100000;
    double f;
    uint64_t a = ng_rng_key(1, 3), b = ng_rng_key(2, 3), c = ng_rng_key(1, 4), d = ng_rng_key(0, 0);
    NGT_CHECK(a != b && a != c && b != c && d != a, "keys collide");
    f = equal_fraction(a, 0, b, 0, n);
    NGT_CHECK(f < 0.01, "seeds 1 and 2 (purpose 3): %.4f of words equal", f);
    f = equal_fraction(a, 0, c, 0, n);
    NGT_CHECK(f < 0.01, "purposes 3 and 4 (seed 1): %.4f of words equal", f);
    f = equal_fraction(a, 0, a, 1, n);
    NGT_CHECK(f < 0.01, "steps 0 and 1 of one stream: %.4f of words equal", f);
    /* a shifted copy of the same stream would also be a defect */
    {
        uint64_t i, same = 0;
        for (i = 0; i < n; i++) same += ng_philox_word(a, 0, i) == ng_philox_word(a, 0, i + 1);
        NGT_CHECK((double)same / (double)n < 0.01, "stream equals itself shifted by one: %llu",
                  (unsigned long long)same);
    }
    return NGT_PASS;
}

/* 10^6 uniforms: all in (0, 1]; mean 1/2 within 5 sigma (sigma = sqrt(1/12 / N) = 2.9e-4) and
 * variance 1/12 within 5 sigma (sd of a uniform's squared deviation is sqrt(1/80 - 1/144)). */
static int test_uniform_range_and_moments(void) {
    const uint64_t n = 1000000;
    uint64_t key = ng_rng_key(2015, 100), i;
    double s = 0.0, s2 = 0.0, mean, var, sig_m, sig_v;
    for (i = 0; i < n; i++) {
        float u = ng_uniform_at(key, 3, i);
        NGT_CHECK(u > 0.0f && u <= 1.0f, "uniform %llu = %.9g outside (0,1]",
                  (unsigned long long)i, (double)u);
        s += u;
        s2 += ((double)u - 0.5) * ((double)u - 0.5);
    }
    mean = s / (double)n;
    var = s2 / (double)n;
    sig_m = sqrt(1.0 / 12.0 / (double)n);
    sig_v = sqrt((1.0 / 80.0 - 1.0 / 144.0) / (double)n);
    NGT_CLOSE(mean, 0.5, 5.0 * sig_m, "mean of 1e6 uniforms (5 sigma)");
    NGT_CLOSE(var, 1.0 / 12.0, 5.0 * sig_v, "variance of 1e6 uniforms (5 sigma)");
    return NGT_PASS;
}

/* cuRAND: _curand_uniform(x) = x * CURAND_2POW32_INV + CURAND_2POW32_INV / 2.0f, in float. */
static int test_uniform_map_matches_curand(void) {
    static const uint32_t xs[] = {0u, 1u, 2u, 0x7FFFFFFFu, 0x80000000u, 0xFFFFFF7Fu, 0xFFFFFF80u,
                                  0xFFFFFFFFu};
    const float inv32 = ldexpf(1.0f, -32), half = ldexpf(1.0f, -33);
    size_t j;
    for (j = 0; j < sizeof xs / sizeof xs[0]; j++) {
        volatile float prod = (float)xs[j] * inv32; /* force float rounding of each operation */
        float want = prod + half, got = ng_u32_to_uniform(xs[j]);
        NGT_CHECK(got == want, "ng_u32_to_uniform(0x%08x) = %.9g, cuRAND's formula gives %.9g",
                  xs[j], (double)got, (double)want);
    }
    NGT_CHECK(ng_u32_to_uniform(0u) == half, "uniform(0) = %.9g, want 2^-33",
              (double)ng_u32_to_uniform(0u));
    NGT_CHECK(ng_u32_to_uniform(0xFFFFFFFFu) == 1.0f, "uniform(0xFFFFFFFF) = %.9g, want 1",
              (double)ng_u32_to_uniform(0xFFFFFFFFu));
    return NGT_PASS;
}

/* The vectorised block generator of the CPU backend gives, bit for bit, the uniforms of sixteen
 * scalar ng_uniform4_at calls: blocks at 0, inside, across the 2^32 boundary of the counter's low
 * word (the y lane) and near 2^64, with keys and steps that use both 32-bit halves. */
static int test_block_generator_equals_scalar(void) {
    static const uint64_t g0s[] = {0, 1, 977, 0xFFFFFFF8ull, 0x1FFFFFFF0ull, 0xFFFFFFFFFFFFFFF0ull};
    static const uint64_t keys[] = {0, 12345, 0xDEADBEEFCAFEF00Dull};
    static const uint64_t steps[] = {0, 7, 0x100000003ull};
    size_t a, b, c;
    int l, j;
    for (a = 0; a < sizeof g0s / sizeof g0s[0]; a++)
        for (b = 0; b < sizeof keys / sizeof keys[0]; b++)
            for (c = 0; c < sizeof steps / sizeof steps[0]; c++) {
                float blk[4 * NG_PHILOX_LANES];
                ng_uniform4_block(keys[b], steps[c], g0s[a], blk);
                for (l = 0; l < NG_PHILOX_LANES; l++) {
                    float u[4];
                    ng_uniform4_at(keys[b], steps[c], g0s[a] + (uint64_t)l, u);
                    for (j = 0; j < 4; j++)
                        NGT_CHECK(memcmp(&u[j], &blk[4 * l + j], sizeof(float)) == 0,
                                  "key %llx step %llx block %llx + %d word %d: block %.9g, scalar %.9g",
                                  (unsigned long long)keys[b], (unsigned long long)steps[c],
                                  (unsigned long long)g0s[a], l, j, (double)blk[4 * l + j], (double)u[j]);
                }
            }
    return NGT_PASS;
}

/* ---- ng_expf -------------------------------------------------------------------------------- */

/* The float with bit pattern b. */
static float f_of(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* Table entry i plus i << 47 is 2^(i/32) rounded to double: within half an ULP (2^-53 relative,
 * the entries lie in [1, 2)) of exp2l, whose own error is far below that. */
static int test_expf_table(void) {
    int i;
    for (i = 0; i < 32; i++) {
        uint64_t b = ng_exp2f_tab[i] + ((uint64_t)i << 47);
        double d;
        long double want = exp2l((long double)i / 32.0L);
        memcpy(&d, &b, sizeof d);
        NGT_CHECK(fabsl((long double)d - want) <= ldexpl(1.0L, -53) * 1.0000001L,
                  "table entry %d gives %.17g, 2^(%d/32) = %.20Lg", i, d, i, want);
    }
    return NGT_PASS;
}

/* Error against expl (x87 long double, 64-bit mantissa) over every 1021st float bit pattern and
 * every float in the two boundary ranges (underflow to 0 and to the smallest subnormal near
 * -103.97 / -103.28, overflow near 88.72): at most 0.502 ULP (glibc's bound for this algorithm;
 * 0.5 would mean correctly rounded), inf only where the exact value rounds past FLT_MAX, and
 * NaN, +-inf, +-0 as C's exp. */
static int check_expf_accuracy(float x, double *worst) {
    float e = ng_expf(x);
    long double want = expl((long double)x), ulp;
    if (x != x) {
        NGT_CHECK(e != e, "ng_expf(NaN) = %a", (double)e);
        return NGT_PASS;
    }
    if (isinf(e)) {
        NGT_CHECK(e > 0 && want >= ldexpl(2.0L, 127) - ldexpl(1.0L, 103),
                  "ng_expf(%a) = inf, exp is %.20Lg", (double)x, want);
        return NGT_PASS;
    }
    ulp = e >= 0x1p-126f ? ldexpl(1.0L, ilogbl((long double)e) - 23) : ldexpl(1.0L, -149);
    if (e == 0.0f) ulp = ldexpl(1.0L, -149);
    {
        double err = (double)(fabsl((long double)e - want) / ulp);
        if (err > *worst) *worst = err;
        NGT_CHECK(err <= 0.502, "ng_expf(%a) = %a, exp = %.20La: %.4f ULP", (double)x, (double)e, want, err);
    }
    return NGT_PASS;
}

static int test_expf_accuracy(void) {
    static const float special[] = {0.0f, -0.0f, 1.0f, -1.0f, 88.0f, -88.0f, 0x1.62e42ep6f, 0x1.62e430p6f,
                                    -0x1.9fe368p6f, -0x1.9fe36ap6f, -0x1.9d1d9ep6f, -0x1.9d1da0p6f, -104.0f, 89.0f};
    double worst = 0.0;
    uint64_t b;
    size_t i;
    float x;
    for (b = 0; b < (1ull << 32); b += 1021)
        if (check_expf_accuracy(f_of((uint32_t)b), &worst) != NGT_PASS) return NGT_FAIL;
    for (x = -105.0f; x < -103.0f; x = nextafterf(x, 0.0f))
        if (check_expf_accuracy(x, &worst) != NGT_PASS) return NGT_FAIL;
    for (x = 88.0f; x < 89.0f; x = nextafterf(x, 100.0f))
        if (check_expf_accuracy(x, &worst) != NGT_PASS) return NGT_FAIL;
    for (i = 0; i < sizeof special / sizeof special[0]; i++)
        if (check_expf_accuracy(special[i], &worst) != NGT_PASS) return NGT_FAIL;
    NGT_CHECK(ng_expf(-INFINITY) == 0.0f && ng_expf(INFINITY) == INFINITY && ng_expf(0.0f) == 1.0f &&
                  ng_expf(-0.0f) == 1.0f,
              "exp(-inf) %a, exp(inf) %a, exp(0) %a, exp(-0) %a", (double)ng_expf(-INFINITY),
              (double)ng_expf(INFINITY), (double)ng_expf(0.0f), (double)ng_expf(-0.0f));
    /* known answers: the two floats whose result depends on the reduction's fused multiply-adds
     * (rounding x 32 / ln 2 first gives 0x1.f93e36p+46 and 0x1.f45324p-92) */
    NGT_CHECK(ng_expf(0x1.04845ep+5f) == 0x1.f93e38p+46f && ng_expf(-0x1.f8cbb2p+5f) == 0x1.f45326p-92f,
              "ng_expf(0x1.04845ep+5) = %a (want 0x1.f93e38p+46), ng_expf(-0x1.f8cbb2p+5) = %a (want 0x1.f45326p-92)",
              (double)ng_expf(0x1.04845ep+5f), (double)ng_expf(-0x1.f8cbb2p+5f));
    printf("  ng_expf: largest error %.4f ULP\n", worst);
    return NGT_PASS;
}

/* The sigmoid the CPU backend computed before it had its own exp, with libm's expf. */
static float libm_sigmoid(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    {
        float e = expf(x);
        return e / (1.0f + e);
    }
}

/* Where libm's expf is glibc's (>= 2.28) FMA version (x86-64 with FMA and AVX2), ng_expf returns
 * its bits, and ng_sigmoid those of the branchy libm-based sigmoid: every 127th float bit pattern
 * (34 million inputs), every float in the boundary ranges, and the NaN payloads keep their bits.
 * The whole float range was compared once when ng_expf was written: no difference. Rounding
 * x 32 / ln 2 before the reduction (glibc's build without FMA) changes exactly two floats' results,
 * both known answers of test_expf_accuracy; the stride alone would miss them. Elsewhere the test is skipped,
 * saying why: ng_expf is then still natgrad's exp, the same on every machine. */
static int test_expf_matches_libm(void) {
#if defined(__x86_64__) && defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 28))
    uint64_t b;
    float x;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("fma") || !__builtin_cpu_supports("avx2"))
        return ngt_skip("this CPU lacks FMA or AVX2: glibc's expf is then its SSE2 build, which rounds its "
                        "intermediate steps differently from ng_expf (which follows the FMA build)");
    for (b = 0; b < (1ull << 32); b += 127) {
        float a, w, sa, sw;
        x = f_of((uint32_t)b);
        a = ng_expf(x);
        w = expf(x);
        NGT_CHECK(memcmp(&a, &w, sizeof a) == 0, "ng_expf(%a) = %a, libm expf = %a", (double)x, (double)a, (double)w);
        sa = ng_sigmoid(x);
        sw = libm_sigmoid(x);
        NGT_CHECK(memcmp(&sa, &sw, sizeof sa) == 0, "ng_sigmoid(%a) = %a, with libm expf %a", (double)x,
                  (double)sa, (double)sw);
    }
    for (x = -105.0f; x < -103.0f; x = nextafterf(x, 0.0f)) {
        float a = ng_expf(x), w = expf(x);
        NGT_CHECK(memcmp(&a, &w, sizeof a) == 0, "ng_expf(%a) = %a, libm expf = %a", (double)x, (double)a, (double)w);
    }
    for (x = 88.0f; x < 89.0f; x = nextafterf(x, 100.0f)) {
        float a = ng_expf(x), w = expf(x);
        NGT_CHECK(memcmp(&a, &w, sizeof a) == 0, "ng_expf(%a) = %a, libm expf = %a", (double)x, (double)a, (double)w);
    }
    return NGT_PASS;
#else
    return ngt_skip("libm here is not glibc >= 2.28 on x86-64: ng_expf follows glibc's x86-64 FMA expf");
#endif
}

int main(void) {
    NGT_RUN(test_known_answers);
    NGT_RUN(test_word_is_block_word);
    NGT_RUN(test_same_key_same_bits);
    NGT_RUN(test_streams_differ);
    NGT_RUN(test_uniform_range_and_moments);
    NGT_RUN(test_uniform_map_matches_curand);
    NGT_RUN(test_block_generator_equals_scalar);
    NGT_RUN(test_expf_table);
    NGT_RUN(test_expf_accuracy);
    NGT_RUN(test_expf_matches_libm);
    return ngt_finish();
}
