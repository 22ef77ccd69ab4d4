/* cpu_blas.c: detect the CPU's vector features and the kernel OpenBLAS chose; see cpu_blas.h. */
#include "backend/cpu_blas.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <omp.h>

void ng_cpu_blas_describe(char *buf, size_t len) {
    const char *cfg = openblas_get_config();
    const char *core = openblas_get_corename();
    const char *forced = getenv("OPENBLAS_CORETYPE");
    char ver[32] = "?";
    const char *p = cfg ? strstr(cfg, "OpenBLAS ") : NULL;
    if (p) sscanf(p + 9, "%31s", ver);
    snprintf(buf, len, "OpenBLAS %s (%s), kernel %s%s, %d threads", ver,
             openblas_get_parallel() == 2 ? "openmp" : openblas_get_parallel() == 1 ? "pthreads"
                                                                                       : "serial",
             core ? core : "?", forced ? " (OPENBLAS_CORETYPE)" : "", openblas_get_num_threads());
}

static int core_is_weak(const char *core, int want_avx512) {
    static const char *weak_for_avx2[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem",
                                          "Sandybridge", "Atom", "Katmai", "Coppermine",
                                          "Northwood", "Banias", "Generic", NULL};
    int i;
    if (!core) return 0;
    for (i = 0; weak_for_avx2[i]; i++)
        if (strcasecmp(core, weak_for_avx2[i]) == 0) return 1;
    if (want_avx512 && strcasecmp(core, "Haswell") == 0) return 1;
    return 0;
}

const char *ng_cpu_blas_pick_coretype(const char *core, int avx512, int avx2_fma) {
    if (avx512 && core_is_weak(core, 1)) return "SkylakeX";
    if (avx2_fma && core_is_weak(core, 0)) return "Haswell";
    return NULL;
}

/* The coretype the running kernel should be replaced by, whatever set it (NULL: it fits). */
static const char *running_kernel_upgrade(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    int avx512, avx2;
    __builtin_cpu_init();
    avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return ng_cpu_blas_pick_coretype(openblas_get_corename(), avx512, avx2);
#else
    return NULL;
#endif
}

const char *ng_cpu_blas_better_coretype(void) {
    if (getenv("OPENBLAS_CORETYPE")) return NULL;
    return running_kernel_upgrade();
}

int ng_cpu_blas_kernel_fits(void) { return running_kernel_upgrade() == NULL; }

void ng_cpu_set_threads(int n) {
    if (n < 1) return;
    openblas_set_num_threads(n);
    omp_set_num_threads(n);
}

void ng_cpu_blas_reexec(int argc, char **argv) {
    const char *better;
    const char *off = getenv("NG_NO_BLAS_REEXEC");
    (void)argc;
    if ((off && strcmp(off, "0") != 0) || getenv("NG_BLAS_REEXECED")) return;
    better = ng_cpu_blas_better_coretype();
    if (!better) return;
    setenv("OPENBLAS_CORETYPE", better, 1);
    setenv("NG_BLAS_REEXECED", better, 1);
    fflush(NULL);
    execv("/proc/self/exe", argv);
    /* exec failed: keep running with the kernels we have */
    unsetenv("OPENBLAS_CORETYPE");
}
