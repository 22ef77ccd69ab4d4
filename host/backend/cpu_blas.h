/* cpu_blas.h: which BLAS kernels the CPU backend runs, and getting the fast ones.
 * Debian's OpenBLAS 0.3.21 misidentifies some AVX-512 CPUs (reports "Prescott") and then runs
 * generic SSE3 kernels several times slower. OpenBLAS reads OPENBLAS_CORETYPE only when it is
 * loaded, so the fix is to re-exec the program with the variable set, before any work. */
#ifndef NG_CPU_BLAS_H
#define NG_CPU_BLAS_H

#include <stddef.h>

/* "OpenBLAS 0.3.21 (openmp), kernel SkylakeX, 2 threads" */
void ng_cpu_blas_describe(char *buf, size_t len);

/* The OPENBLAS_CORETYPE this CPU should use when OpenBLAS picked a weaker kernel than the CPU's
 * features allow ("SkylakeX" for AVX-512, "Haswell" for AVX2+FMA), or NULL when OpenBLAS already
 * uses a fitting kernel or the user set OPENBLAS_CORETYPE. */
const char *ng_cpu_blas_better_coretype(void);
/* The decision itself, for a given OpenBLAS core name and CPU features (unit-tested). */
const char *ng_cpu_blas_pick_coretype(const char *openblas_core, int avx512, int avx2_fma);

/* When ng_cpu_blas_better_coretype() is non-NULL and this process was not re-executed already,
 * set OPENBLAS_CORETYPE and execv /proc/self/exe with the same argv. Returns only when nothing
 * was done (or exec failed; the process then continues with the slow kernels). Call it first thing
 * in main(). NG_NO_BLAS_REEXEC=1 disables it. */
void ng_cpu_blas_reexec(int argc, char **argv);

#endif
