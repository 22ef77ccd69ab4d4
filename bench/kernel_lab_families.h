/* kernel_lab_families.h: one descriptor per custom kernel family (kernels/launch.cu's table), shared
 * by the kernel lab (bench/kernel_lab.c) and its test (tests/test_kernel_blocks.c), so both run
 * exactly the same problems. A case owns one device arena on a backend: the outputs first
 * (arena[0, nout)), then the inputs; its host copy `init` is uploaded by kl_reset, kl_run issues
 * the family's ops (through ng_run_op, so the backend's checked path runs), kl_result downloads
 * the outputs. The inputs are deterministic (Philox uniforms of fixed keys), so two backends, or
 * two launch shapes, given the same (family, n) compute the same problem.
 *   uniform    fill_uniform of n
 *   gibbs      gibbs_sample of 97 x n/97 units (bias, base, beta 0.8, the Philox step counted on the
 *              device: step_dev, advanced by the last block), then the shard path (first != 0)
 *   bernoulli  bernoulli of n, from element 0 and from element 7 of a larger array
 *   fang       fang_regress of 37 x n/37 pairs, fang_residual on its output, symmetrize_lower of
 *              an s x s matrix, s ~ sqrt(n)
 *   factor     factor_update of a symmetric entry (d x d, X X^T) and a rectangular one
 *              ((d + 3) x (d / 2 + 1)), k = 50 cases, beta 0.9, d ~ sqrt(n)
 *   conv       conv_gather: im2col (3x3, pad 1) and 2x2 max pooling of 2 x 3 maps of about n / 54
 *              pixels each, and whiten1x1 (5 -> 4 channels, centred)
 *   optim      adam (step count on the device), momentum (NAG with averaging), outer_scale (Stein)
 *              of n elements
 *   reduce     softplus_sum over n / 500 columns of 500 rows (an RBM's hidden units; gamma 0.5)
 * Every family's result must not depend on the launch shape (bit for bit), except reduce (the
 * partial sums follow the block size: KL_REDUCE_RTOL). Against the CPU backend each family has a
 * stated tolerance (kl_families[].atol, rtol) and draws may differ where the uniform lies within
 * the math libraries' rounding of the probability (at most KL_DRAW_FLIPS of them).
 * Needs: natgrad/backend.h, ng_math.h and ng_kernels.h (for ng_kfam) on the include path. */
#ifndef NG_KERNEL_LAB_FAMILIES_H
#define NG_KERNEL_LAB_FAMILIES_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "natgrad/backend.h"
#include "natgrad/nn_types.h"
#include "ng_kernels.h"
#include "ng_math.h"

/* reduce under two block sizes: the double partial sums differ by ~rows 2^-53 of the sum, so the
 * float result can differ only in ng_sum_combine's two float roundings: 2 ulp. */
#define KL_REDUCE_RTOL 2.4e-7
/* draws (0/1 outputs) that may differ from the CPU backend's in a family check: the expected number
 * of uniforms within ~1e-7 of their probability is n 1e-7; this allows 1e-5 n + 2. */
#define KL_DRAW_FLIPS(n) ((size_t)(1e-5 * (double)(n)) + 2u)

typedef struct kl_family {
    const char *name; /* launch.cu's name (ng_cuda_set_block) */
    const char *ops;  /* what a run launches */
    int exact;        /* 1: bit-identical under every launch shape */
    double atol, rtol; /* against the CPU backend: |got - cpu| <= atol + rtol |cpu| */
    const char *why;  /* the tolerance's reason */
} kl_family;

static const kl_family kl_families[NG_KFAM_COUNT] = {
    {"uniform", "fill_uniform", 1, 0.0, 0.0, "Philox words only: bit-identical"},
    {"gibbs", "gibbs_sample (step on the device), gibbs_sample at first != 0", 1, 1e-6, 1e-6,
     "sigmoid's expf differs by a few ulp between math libraries"},
    {"bernoulli", "bernoulli from 0 and from 7", 1, 0.0, 0.0, "a comparison of p with a Philox uniform: bit-identical"},
    {"fang", "fang_regress, fang_residual, symmetrize_lower", 1, 5e-5, 1e-6,
     "the regressions run in double; q = (G - bv ga - bh gb) / sigma2 has numerator terms <= 2.4 and sigma2 >= 0.023 "
     "here, so a few ulp of fma contraction in the numerator move q by <= 3 2.4 2^-24 / 0.023 = 2e-5"},
    {"factor", "factor_update (symmetric + rectangular entry, k = 50)", 1, 3e-4, 0.0,
     "sums of k = 50 products of |x|, |y| <= 1 in another order (the CPU's BLAS): k^2 2^-24 < 1.5e-4, twice"},
    {"conv", "conv_gather (im2col, max pool), whiten1x1", 1, 1e-6, 1e-6,
     "gathers are exact; whiten1x1 accumulates in double on both backends"},
    {"optim", "adam (device step count), momentum (NAG + average), outer_scale (Stein)", 1, 1e-6, 1e-6,
     "sqrtf and divisions may be contracted into fma differently by the compilers"},
    {"reduce", "softplus_sum (500 rows, n / 500 columns)", 0, 0.0, 1e-6,
     "logf/expf of softplus differ by a few ulp between math libraries; sums in double"},
};

#define KL_MAXBUF 24
typedef struct kl_case {
    ng_backend *be;
    ng_kfam fam;
    size_t n;           /* requested size */
    size_t elems;       /* elements a run processes (for rates) */
    size_t total, nout; /* arena floats; the outputs are arena[0, nout) */
    size_t draw0, draw1; /* arena[draw0, draw1) are 0/1 draws */
    float *init;        /* host: the whole arena before a run */
    float *arena;       /* device memory of be */
    size_t off[KL_MAXBUF];
    int nbuf;
    int a, b, c, d; /* shapes of the family (see kl_case_init) */
    ng_conv_shape cs;
} kl_case;

static inline size_t kl_buf(kl_case *k, size_t len) {
    size_t o = k->total;
    k->off[k->nbuf++] = o;
    k->total += (len + 1u) & ~(size_t)1u; /* even offsets: doubles and uint64 words stay aligned */
    return o;
}
#define KL_P(k, i) ((k)->arena + (k)->off[i])

/* init[o .. o + len) = lo + (hi - lo) u(key, i) */
static inline void kl_fill(kl_case *k, int buf, size_t len, uint64_t key, float lo, float hi) {
    size_t i;
    for (i = 0; i < len; i++) k->init[k->off[buf] + i] = lo + (hi - lo) * ng_uniform_at(key, 3, (uint64_t)i);
}

/* Shapes and buffers of family fam at size n (n >= 64), the inputs filled; allocates on be. */
static inline ng_status kl_case_init(kl_case *k, ng_backend *be, ng_kfam fam, size_t n) {
    size_t i;
    memset(k, 0, sizeof *k);
    k->be = be;
    k->fam = fam;
    k->n = n;
    switch (fam) {
    case NG_KFAM_UNIFORM:
        kl_buf(k, n);
        k->nout = k->total;
        k->elems = n;
        break;
    case NG_KFAM_GIBBS:
        k->a = 97;
        k->b = (int)((n + 96) / 97);
        k->elems = 2 * (size_t)k->a * (size_t)k->b;
        kl_buf(k, 4); /* 0: step_dev {step, ticket} */
        kl_buf(k, (size_t)k->a * k->b); /* 1: prob */
        k->draw0 = k->total;
        kl_buf(k, (size_t)k->a * k->b); /* 2: sample */
        kl_buf(k, (size_t)k->a * k->b); /* 3: sample of the shard path */
        k->draw1 = k->nout = k->total;
        kl_buf(k, (size_t)k->a * k->b); /* 4: pre */
        kl_buf(k, (size_t)k->a);        /* 5: bias */
        kl_buf(k, (size_t)k->a);        /* 6: base */
        break;
    case NG_KFAM_BERNOULLI:
        k->elems = 2 * n;
        k->draw0 = 0;
        kl_buf(k, n);
        kl_buf(k, n);
        k->draw1 = k->nout = k->total;
        kl_buf(k, n); /* 2: p */
        break;
    case NG_KFAM_FANG:
        k->a = 37;                              /* nh */
        k->b = (int)((n + 36) / 37);            /* nv */
        k->c = (int)sqrt((double)n) | 1;        /* s: odd */
        k->elems = 2 * (size_t)k->a * k->b + (size_t)k->c * k->c;
        for (i = 0; i < 6; i++) kl_buf(k, (size_t)k->a * k->b); /* 0-2: beta_v beta_h sigma2, 3: G, 4-5: pv ph */
        kl_buf(k, (size_t)k->c * k->c);                          /* 6: A */
        k->nout = k->total;
        for (i = 0; i < 4; i++) kl_buf(k, (size_t)k->a * k->b); /* 7-10: Evh Ev2h Evh2 Ev2h2 */
        kl_buf(k, (size_t)k->b); /* 11: mu_v (= Ev2: binary units) */
        kl_buf(k, (size_t)k->a); /* 12: mu_h (= Eh2) */
        kl_buf(k, (size_t)k->b); /* 13: ga */
        kl_buf(k, (size_t)k->a); /* 14: gb */
        break;
    case NG_KFAM_FACTOR:
        k->a = (int)sqrt((double)n) | 1; /* d */
        k->b = k->a + 3;
        k->c = k->a / 2 + 1;
        k->d = 50; /* k */
        k->elems = (size_t)k->a * k->a + (size_t)k->b * k->c;
        kl_buf(k, (size_t)k->a * k->a); /* 0: C1 (d x d) */
        kl_buf(k, (size_t)k->b * k->c); /* 1: C2 */
        k->nout = k->total;
        kl_buf(k, (size_t)k->a * k->d); /* 2: X1 */
        kl_buf(k, (size_t)k->b * k->d); /* 3: X2 */
        kl_buf(k, (size_t)k->c * k->d); /* 4: Y2 */
        break;
    case NG_KFAM_CONV: {
        const int side = (int)sqrt((double)n / 54.0) + 2;
        k->cs.n = 2; k->cs.c = 3; k->cs.h = side; k->cs.w = side + 1;
        k->cs.kh = 3; k->cs.kw = 3; k->cs.stride = 1; k->cs.pad = 1;
        k->a = k->cs.h * k->cs.w; /* pixels */
        kl_buf(k, ng_conv_gather_count(NG_CONV_IM2COL, &k->cs)); /* 0: col */
        {
            ng_conv_shape p = k->cs;
            p.kh = p.kw = 2; p.stride = 2; p.pad = 0;
            kl_buf(k, ng_conv_gather_count(NG_CONV_POOL_MAX, &p)); /* 1: pooled */
        }
        kl_buf(k, (size_t)2 * 4 * k->a); /* 2: y (2, 4, pixels) */
        k->nout = k->total;
        k->elems = k->nout;
        kl_buf(k, (size_t)2 * 3 * k->a); /* 3: x of the conv (2, 3, h, w) */
        kl_buf(k, (size_t)2 * 5 * k->a); /* 4: x of the whitening (2, 5, pixels) */
        kl_buf(k, 5);                    /* 5: mean */
        kl_buf(k, 4 * 5);                /* 6: U (4 x 5) */
        break;
    }
    case NG_KFAM_OPTIM:
        k->a = 61;                       /* outer_scale rows */
        k->b = (int)((n + 60) / 61);     /* cols */
        k->elems = 3 * n;
        kl_buf(k, 4); /* 0: adam's count {t, ticket} */
        for (i = 0; i < 4; i++) kl_buf(k, n); /* 1-4: param m v step */
        for (i = 0; i < 3; i++) kl_buf(k, n); /* 5-7: momentum v p bar */
        kl_buf(k, (size_t)k->a * k->b);       /* 8: outer_scale out */
        k->nout = k->total;
        kl_buf(k, n); /* 9: grad */
        kl_buf(k, n); /* 10: momentum d */
        kl_buf(k, (size_t)k->a * k->b); /* 11: x */
        kl_buf(k, (size_t)k->a);        /* 12: u */
        kl_buf(k, (size_t)k->b);        /* 13: v */
        break;
    case NG_KFAM_REDUCE:
        k->a = 500;                     /* rows */
        k->b = (int)((n + 499) / 500);  /* cols */
        k->elems = (size_t)k->a * k->b;
        kl_buf(k, (size_t)k->b); /* 0: y */
        k->nout = k->total;
        kl_buf(k, (size_t)k->a * k->b); /* 1: pre */
        kl_buf(k, (size_t)k->a);        /* 2: bias */
        break;
    default:
        return ng_error(NG_ERR_INVALID_ARG, "kernel lab: no family %d", (int)fam);
    }
    k->init = (float *)calloc(k->total, sizeof(float));
    if (!k->init) return ng_error(NG_ERR_OOM, "kernel lab: %zu floats", k->total);
    /* inputs (and the outputs' old content where an op reads it) */
    switch (fam) {
    case NG_KFAM_UNIFORM:
        break;
    case NG_KFAM_GIBBS: {
        uint64_t sd[2] = {5u, 0u}; /* Philox step 5 + 2, ticket 0 */
        memcpy(k->init, sd, sizeof sd);
        kl_fill(k, 4, (size_t)k->a * k->b, 101, -4.0f, 4.0f);
        kl_fill(k, 5, (size_t)k->a, 102, -0.5f, 0.5f);
        kl_fill(k, 6, (size_t)k->a, 103, -1.0f, 1.0f);
        break;
    }
    case NG_KFAM_BERNOULLI:
        kl_fill(k, 2, n, 104, 0.0f, 1.0f);
        break;
    case NG_KFAM_FANG: {
        /* moments of binary units with E[v] = p_i, E[h] = q_j in [0.2, 0.6] and E[vh] = p q (1 + 0.2 w_ij),
         * |w| <= 1 (v^2 = v): every cell of each pair's joint distribution has probability >= 0.03, so
         * the regressions are well conditioned (residual variances well above lambda) */
        const int nh = k->a, nv = k->b;
        int ii, j;
        kl_fill(k, 11, (size_t)nv, 105, 0.2f, 0.6f);
        kl_fill(k, 12, (size_t)nh, 106, 0.2f, 0.6f);
        for (ii = 0; ii < nv; ii++)
            for (j = 0; j < nh; j++) {
                const float p = k->init[k->off[11] + ii], q = k->init[k->off[12] + j];
                const float w = 2.0f * ng_uniform_at(107, 3, (uint64_t)j + (uint64_t)nh * ii) - 1.0f;
                const float m = p * q * (1.0f + 0.2f * w);
                for (i = 0; i < 4; i++) k->init[k->off[7 + i] + j + (size_t)nh * ii] = m;
            }
        kl_fill(k, 3, (size_t)nh * nv, 108, -1.0f, 1.0f); /* G */
        kl_fill(k, 13, (size_t)nv, 109, -1.0f, 1.0f);
        kl_fill(k, 14, (size_t)nh, 110, -1.0f, 1.0f);
        kl_fill(k, 6, (size_t)k->c * k->c, 111, -1.0f, 1.0f); /* A */
        break;
    }
    case NG_KFAM_FACTOR:
        kl_fill(k, 0, (size_t)k->a * k->a, 112, -1.0f, 1.0f);
        kl_fill(k, 1, (size_t)k->b * k->c, 113, -1.0f, 1.0f);
        kl_fill(k, 2, (size_t)k->a * k->d, 114, -1.0f, 1.0f);
        kl_fill(k, 3, (size_t)k->b * k->d, 115, -1.0f, 1.0f);
        kl_fill(k, 4, (size_t)k->c * k->d, 116, -1.0f, 1.0f);
        break;
    case NG_KFAM_CONV:
        kl_fill(k, 3, (size_t)2 * 3 * k->a, 117, -1.0f, 1.0f);
        kl_fill(k, 4, (size_t)2 * 5 * k->a, 118, -1.0f, 1.0f);
        kl_fill(k, 5, 5, 119, -0.2f, 0.2f);
        kl_fill(k, 6, 20, 120, -1.0f, 1.0f);
        break;
    case NG_KFAM_OPTIM: {
        double cnt[2] = {3.0, 0.0}; /* adam's update t = 3, ticket 0 */
        memcpy(k->init, cnt, sizeof cnt);
        kl_fill(k, 1, n, 121, -1.0f, 1.0f);  /* param */
        kl_fill(k, 2, n, 122, -0.1f, 0.1f);  /* m */
        kl_fill(k, 3, n, 123, 0.0f, 0.01f);  /* v >= 0 */
        kl_fill(k, 5, n, 124, -0.1f, 0.1f);  /* momentum v */
        kl_fill(k, 6, n, 125, -1.0f, 1.0f);  /* p */
        kl_fill(k, 7, n, 126, -1.0f, 1.0f);  /* bar */
        kl_fill(k, 9, n, 127, -1.0f, 1.0f);  /* grad */
        kl_fill(k, 10, n, 128, -1.0f, 1.0f); /* d */
        kl_fill(k, 11, (size_t)k->a * k->b, 129, -1.0f, 1.0f);
        kl_fill(k, 12, (size_t)k->a, 130, 0.0f, 0.9f); /* Stein: 1 - u v >= 0.19 */
        kl_fill(k, 13, (size_t)k->b, 131, 0.0f, 0.9f);
        break;
    }
    case NG_KFAM_REDUCE:
        kl_fill(k, 0, (size_t)k->b, 132, 0.0f, 2.0f); /* y, blended with gamma */
        kl_fill(k, 1, (size_t)k->a * k->b, 133, -4.0f, 4.0f);
        kl_fill(k, 2, (size_t)k->a, 134, -0.5f, 0.5f);
        break;
    default:
        break;
    }
    return ng_alloc(be, k->total * sizeof(float), (void **)&k->arena);
}

static inline void kl_case_free(kl_case *k) {
    if (k->arena) ng_free(k->be, k->arena);
    free(k->init);
    memset(k, 0, sizeof *k);
}

/* The arena back to its initial content (queued on the backend's stream). */
static inline ng_status kl_reset(kl_case *k) { return ng_set(k->be, k->arena, k->init, k->total * sizeof(float)); }

/* The family's ops, once (asynchronous on a device backend). In-place outputs (G, the optimizer
 * state, C, y) evolve when run again without kl_reset: fine for timing. */
static inline ng_status kl_run(kl_case *k) {
    ng_op_args o;
    const uint64_t KEY = 0x5EED5EEDull;
    memset(&o, 0, sizeof o);
    switch (k->fam) {
    case NG_KFAM_UNIFORM:
        o.op = NG_OP_FILL_UNIFORM;
        o.fill_uniform.n = k->n;
        o.fill_uniform.out = KL_P(k, 0);
        o.fill_uniform.key = KEY;
        o.fill_uniform.step = 11;
        return ng_run_op(k->be, &o);
    case NG_KFAM_GIBBS:
        o.op = NG_OP_GIBBS_SAMPLE;
        o.gibbs_sample.rows = k->a;
        o.gibbs_sample.cols = k->b;
        o.gibbs_sample.pre = KL_P(k, 4);
        o.gibbs_sample.ldp = k->a;
        o.gibbs_sample.bias = KL_P(k, 5);
        o.gibbs_sample.beta = 0.8f;
        o.gibbs_sample.base = KL_P(k, 6);
        o.gibbs_sample.prob = KL_P(k, 1);
        o.gibbs_sample.ldq = k->a;
        o.gibbs_sample.sample = KL_P(k, 2);
        o.gibbs_sample.lds = k->a;
        o.gibbs_sample.key = KEY;
        o.gibbs_sample.step = 2;
        o.gibbs_sample.step_dev = (uint64_t *)(void *)KL_P(k, 0);
        o.gibbs_sample.advance = 3;
        NG_TRY(ng_run_op(k->be, &o));
        o.gibbs_sample.prob = NULL;
        o.gibbs_sample.sample = KL_P(k, 3);
        o.gibbs_sample.step_dev = NULL;
        o.gibbs_sample.advance = 0;
        o.gibbs_sample.first = (uint64_t)k->a * 3u + 5u;
        return ng_run_op(k->be, &o);
    case NG_KFAM_BERNOULLI:
        o.op = NG_OP_BERNOULLI;
        o.bernoulli.n = k->n;
        o.bernoulli.p = KL_P(k, 2);
        o.bernoulli.out = KL_P(k, 0);
        o.bernoulli.key = KEY;
        o.bernoulli.step = 12;
        NG_TRY(ng_run_op(k->be, &o));
        o.bernoulli.out = KL_P(k, 1);
        o.bernoulli.first = 7;
        return ng_run_op(k->be, &o);
    case NG_KFAM_FANG:
        o.op = NG_OP_FANG_REGRESS;
        o.fang_regress.nh = k->a;
        o.fang_regress.nv = k->b;
        o.fang_regress.Evh = KL_P(k, 7);
        o.fang_regress.Ev2h = KL_P(k, 8);
        o.fang_regress.Evh2 = KL_P(k, 9);
        o.fang_regress.Ev2h2 = KL_P(k, 10);
        o.fang_regress.ldm = k->a;
        o.fang_regress.mu_v = o.fang_regress.Ev2 = KL_P(k, 11);
        o.fang_regress.mu_h = o.fang_regress.Eh2 = KL_P(k, 12);
        o.fang_regress.lambda = 1e-3f;
        o.fang_regress.beta_v = KL_P(k, 0);
        o.fang_regress.beta_h = KL_P(k, 1);
        o.fang_regress.sigma2 = KL_P(k, 2);
        o.fang_regress.ldo = k->a;
        NG_TRY(ng_run_op(k->be, &o));
        memset(&o, 0, sizeof o);
        o.op = NG_OP_FANG_RESIDUAL;
        o.fang_residual.nh = k->a;
        o.fang_residual.nv = k->b;
        o.fang_residual.G = KL_P(k, 3);
        o.fang_residual.ldg = k->a;
        o.fang_residual.ga = KL_P(k, 13);
        o.fang_residual.gb = KL_P(k, 14);
        o.fang_residual.beta_v = KL_P(k, 0);
        o.fang_residual.beta_h = KL_P(k, 1);
        o.fang_residual.sigma2 = KL_P(k, 2);
        o.fang_residual.ldb = k->a;
        o.fang_residual.pv = KL_P(k, 4);
        o.fang_residual.ph = KL_P(k, 5);
        o.fang_residual.ldp = k->a;
        NG_TRY(ng_run_op(k->be, &o));
        memset(&o, 0, sizeof o);
        o.op = NG_OP_SYMMETRIZE_LOWER;
        o.symmetrize_lower.n = k->c;
        o.symmetrize_lower.A = KL_P(k, 6);
        o.symmetrize_lower.lda = k->c;
        o.symmetrize_lower.shift = 0.25f;
        return ng_run_op(k->be, &o);
    case NG_KFAM_FACTOR: {
        ng_factor_entry *e = o.factor_update.e;
        o.op = NG_OP_FACTOR_UPDATE;
        o.factor_update.count = 2;
        o.factor_update.k = k->d;
        o.factor_update.beta = 0.9f;
        e[0].rows = e[0].cols = k->a;
        e[0].X = e[0].Y = KL_P(k, 2);
        e[0].ldx = e[0].ldy = k->a;
        e[0].alpha = 0.02f;
        e[0].C = KL_P(k, 0);
        e[0].ldc = k->a;
        e[1].rows = k->b;
        e[1].cols = k->c;
        e[1].X = KL_P(k, 3);
        e[1].ldx = k->b;
        e[1].Y = KL_P(k, 4);
        e[1].ldy = k->c;
        e[1].alpha = 0.1f;
        e[1].C = KL_P(k, 1);
        e[1].ldc = k->b;
        return ng_run_op(k->be, &o);
    }
    case NG_KFAM_CONV:
        o.op = NG_OP_CONV_GATHER;
        o.conv_gather.mode = NG_CONV_IM2COL;
        o.conv_gather.s = k->cs;
        o.conv_gather.x = KL_P(k, 3);
        o.conv_gather.out = KL_P(k, 0);
        NG_TRY(ng_run_op(k->be, &o));
        o.conv_gather.mode = NG_CONV_POOL_MAX;
        o.conv_gather.s.kh = o.conv_gather.s.kw = 2;
        o.conv_gather.s.stride = 2;
        o.conv_gather.s.pad = 0;
        o.conv_gather.out = KL_P(k, 1);
        NG_TRY(ng_run_op(k->be, &o));
        memset(&o, 0, sizeof o);
        o.op = NG_OP_WHITEN1X1;
        o.whiten1x1.n = 2;
        o.whiten1x1.c = 5;
        o.whiten1x1.cout = 4;
        o.whiten1x1.p = k->a;
        o.whiten1x1.x = KL_P(k, 4);
        o.whiten1x1.mean = KL_P(k, 5);
        o.whiten1x1.U = KL_P(k, 6);
        o.whiten1x1.ldu = 4;
        o.whiten1x1.y = KL_P(k, 2);
        return ng_run_op(k->be, &o);
    case NG_KFAM_OPTIM:
        o.op = NG_OP_ADAM;
        o.adam.n = k->n;
        o.adam.param = KL_P(k, 1);
        o.adam.grad = KL_P(k, 9);
        o.adam.m = KL_P(k, 2);
        o.adam.v = KL_P(k, 3);
        o.adam.step = KL_P(k, 4);
        o.adam.b1 = 0.9f;
        o.adam.c1 = 0.1f;
        o.adam.b2 = 0.999f;
        o.adam.c2 = 0.001f;
        o.adam.bc1 = o.adam.bc2 = 1.0;
        o.adam.lr = 1e-3f;
        o.adam.eps = 1e-8f;
        o.adam.count = (double *)(void *)KL_P(k, 0);
        NG_TRY(ng_run_op(k->be, &o));
        memset(&o, 0, sizeof o);
        o.op = NG_OP_MOMENTUM;
        o.momentum.n = k->n;
        o.momentum.d = KL_P(k, 10);
        o.momentum.v = KL_P(k, 5);
        o.momentum.p = KL_P(k, 6);
        o.momentum.bar = KL_P(k, 7);
        o.momentum.a = -0.01f;
        o.momentum.mu = 0.75f;
        o.momentum.c = 0.75f;
        o.momentum.nesterov = 1;
        o.momentum.xi = 0.99f;
        o.momentum.w = 0.01f;
        o.momentum.wc = -0.0075f;
        NG_TRY(ng_run_op(k->be, &o));
        memset(&o, 0, sizeof o);
        o.op = NG_OP_OUTER_SCALE;
        o.outer_scale.rows = k->a;
        o.outer_scale.cols = k->b;
        o.outer_scale.mode = NG_OSCALE_STEIN;
        o.outer_scale.x = KL_P(k, 11);
        o.outer_scale.ldx = k->a;
        o.outer_scale.u = KL_P(k, 12);
        o.outer_scale.v = KL_P(k, 13);
        o.outer_scale.floor = 1e-3f;
        o.outer_scale.power = 1.0f;
        o.outer_scale.out = KL_P(k, 8);
        o.outer_scale.ldo = k->a;
        return ng_run_op(k->be, &o);
    case NG_KFAM_REDUCE:
        o.op = NG_OP_SOFTPLUS_SUM;
        o.softplus_sum.rows = k->a;
        o.softplus_sum.cols = k->b;
        o.softplus_sum.pre = KL_P(k, 1);
        o.softplus_sum.ldp = k->a;
        o.softplus_sum.bias = KL_P(k, 2);
        o.softplus_sum.beta = 0.9f;
        o.softplus_sum.alpha = -1.0f;
        o.softplus_sum.gamma = 0.5f;
        o.softplus_sum.y = KL_P(k, 0);
        return ng_run_op(k->be, &o);
    default:
        return ng_error(NG_ERR_INVALID_ARG, "kernel lab: no family %d", (int)k->fam);
    }
}

/* out (nout floats) = the outputs (synchronises). */
static inline ng_status kl_result(kl_case *k, float *out) { return ng_get(k->be, out, k->arena, k->nout * sizeof(float)); }

/* kl_reset, kl_run, kl_result. */
static inline ng_status kl_once(kl_case *k, float *out) {
    NG_TRY(kl_reset(k));
    NG_TRY(kl_run(k));
    return kl_result(k, out);
}

/* got against want (nout floats of the same family and size): bit-identical (tol < 0), or every
 * non-draw element within atol + rtol |want| and at most max_flips draws different. Returns the
 * number of failures; *maxd = the largest |difference| of the non-draw elements, *flips = draws
 * that differ, *first = index of the first failure (when any). */
static inline size_t kl_compare(const kl_case *k, const float *got, const float *want, double atol, double rtol,
                         size_t max_flips, double *maxd, size_t *flips, size_t *first) {
    size_t i, bad = 0, fl = 0;
    double md = 0.0;
    *first = 0;
    if (atol < 0.0) {
        for (i = 0; i < k->nout; i++)
            if (memcmp(&got[i], &want[i], sizeof(float)) != 0) {
                if (!bad) *first = i;
                bad++;
            }
        *maxd = 0.0;
        *flips = 0;
        for (i = 0; i < k->nout; i++) {
            const double d = fabs((double)got[i] - (double)want[i]);
            if (d > *maxd || d != d) *maxd = d;
        }
        return bad;
    }
    for (i = 0; i < k->nout; i++) {
        const double d = fabs((double)got[i] - (double)want[i]);
        if (i >= k->draw0 && i < k->draw1) {
            if (got[i] != want[i]) fl++;
            continue;
        }
        if (k->fam == NG_KFAM_GIBBS && i < 4) continue; /* the step word: compared bitwise below */
        if (k->fam == NG_KFAM_OPTIM && i < 4) continue;
        if (d > md || d != d) md = d;
        if (!(d <= atol + rtol * fabs((double)want[i]))) {
            if (!bad) *first = i;
            bad++;
        }
    }
    /* the device-resident counters (gibbs' step, adam's t) and their tickets must agree exactly */
    if ((k->fam == NG_KFAM_GIBBS || k->fam == NG_KFAM_OPTIM) && memcmp(got, want, 4 * sizeof(float)) != 0) {
        if (!bad) *first = 0;
        bad++;
    }
    if (fl > max_flips) {
        if (!bad) *first = k->draw0;
        bad++;
    }
    *maxd = md;
    *flips = fl;
    return bad;
}

#endif
