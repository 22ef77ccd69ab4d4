/* cpu_blas.h: internals of the CPU backend's BLAS check (host/backend/cpu_blas.c); the public part
 * (describe, threads, re-exec, kernel_fits) is declared in natgrad/backend.h.
 * Debian's OpenBLAS 0.3.21 misidentifies some AVX-512 CPUs (reports "Prescott") and then runs
 * generic SSE3 kernels several times slower. OpenBLAS reads OPENBLAS_CORETYPE only when it is
 * loaded, so the fix is to re-exec the program with the variable set, before any work. */
#ifndef NG_CPU_BLAS_H
#define NG_CPU_BLAS_H

#include <stddef.h>

#include "natgrad/backend.h"

/* The OPENBLAS_CORETYPE this CPU should use when OpenBLAS picked a weaker kernel than the CPU's
 * features allow ("SkylakeX" for AVX-512, "Haswell" for AVX2+FMA), or NULL when OpenBLAS already
 * uses a fitting kernel or the user set OPENBLAS_CORETYPE. */
const char *ng_cpu_blas_better_coretype(void);
/* The decision itself, for a given OpenBLAS core name and CPU features (unit-tested). */
const char *ng_cpu_blas_pick_coretype(const char *openblas_core, int avx512, int avx2_fma);

#endif
