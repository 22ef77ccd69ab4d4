/* cpu_avx512.h: the CPU backend's AVX-512 loops (host/backend/cpu_avx512.c), hand-written with
 * intrinsics for the Philox uniforms and the Gibbs/Bernoulli bodies. Each returns exactly the bits
 * of the scalar ng_math.h body it replaces (ng_uniform4_block, ng_sigmoid(ng_gibbs_input(...)),
 * ng_bernoulli_draw); cpu.c calls them only when ng_cpu_avx512_active() (the CPU has x86-64-v4 and
 * ng_cpu_use_avx512 did not turn them off), otherwise its compiler-vectorised clones. Column-major
 * spans, no leading dimension: the callers pass one column (or one contiguous run) at a time. */
#ifndef NG_CPU_AVX512_H
#define NG_CPU_AVX512_H

#include <stdint.h>

/* 1 when the loops below may run (compiled in, x86-64-v4 CPU, not turned off). */
int ng_cpu_avx512_active(void);

/* The uniforms of Philox blocks g0 .. g0 + 16 groups - 1 (64 per group) into u, exactly as
 * `groups` calls of ng_uniform4_block(key, step, g0 + 16 i, u + 64 i). */
void ng_avx512_uniform4_blocks(uint64_t key, uint64_t step, uint64_t g0, long groups, float *u);

/* n units of one column of gibbs_sample, the contract of cpu.c's gibbs_column: prob[r] =
 * ng_sigmoid(ng_gibbs_input(pre[r], bias[r], beta, base[r])), smp[r] = ng_bernoulli_draw(prob, u[r]);
 * prob or smp may be NULL (then u may be NULL when smp is); pre may alias prob or smp. */
void ng_avx512_gibbs_column(int n, const float *pre, const float *bias, float beta, const float *base,
                            const float *u, float *prob, float *smp);

/* Vectors of 16 draws that ng_avx512_gibbs_column decided without the exact probability (fast)
 * and by the exact sigmoid (exact), since the start of the process (not thread-safe: for tests). */
void ng_avx512_draw_counts(long *fast, long *exact);

/* out[j] = ng_bernoulli_draw(p[j], u[j]) for j < n. */
void ng_avx512_bernoulli(long n, const float *p, const float *u, float *out);

#endif
