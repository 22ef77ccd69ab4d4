/* deps_probe.c: `make deps-check`'s probe. Built with the flags of the natgrad build, it calls
 * OpenBLAS (cblas_sgemm), LAPACKE (LAPACKE_dgesv, which reaches LAPACK through liblapack.so.3) and
 * zlib (crc32) once each on known inputs, checks the answers, and prints which library file each
 * symbol was loaded from, so a machine whose build needs carried packages (bench/gpu_deps.sh,
 * NG_DEPS_PREFIX) shows that they, and not something else, were used. Exit 0 when all three work. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dladdr */
#endif
#include <cblas.h>
#include <dlfcn.h>
#include <lapacke.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

static const char *origin(void *sym) {
    Dl_info d;
    return dladdr(sym, &d) && d.dli_fname ? d.dli_fname : "(unknown)";
}

int main(void) {
    /* [1 2; 3 4] [5 6; 7 8] = [19 22; 43 50] (column-major) */
    const float a[4] = {1, 3, 2, 4}, b[4] = {5, 7, 6, 8};
    float c[4] = {0};
    /* [2 1; 1 3] x = [3; 5]: x = [0.8; 1.4] */
    double m[4] = {2, 1, 1, 3}, r[2] = {3, 5};
    lapack_int piv[2];
    const unsigned char text[] = "natgrad";
    unsigned long crc;
    int bad = 0, info;
    cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2);
    if (c[0] != 19 || c[1] != 43 || c[2] != 22 || c[3] != 50) {
        printf("deps-check: cblas_sgemm gave [%g %g; %g %g], want [19 22; 43 50]\n", c[0], c[2], c[1], c[3]);
        bad = 1;
    }
    info = LAPACKE_dgesv(LAPACK_COL_MAJOR, 2, 1, m, 2, piv, r, 2);
    if (info != 0 || r[0] < 0.8 - 1e-12 || r[0] > 0.8 + 1e-12 || r[1] < 1.4 - 1e-12 || r[1] > 1.4 + 1e-12) {
        printf("deps-check: LAPACKE_dgesv gave info %d, x = [%g %g], want 0, [0.8 1.4]\n", (int)info, r[0], r[1]);
        bad = 1;
    }
    crc = crc32(0L, text, (uInt)strlen((const char *)text));
    if (crc != 0x4ea2fe15UL) {
        printf("deps-check: zlib crc32(\"natgrad\") = %08lx, want 4ea2fe15 (Python's zlib.crc32)\n", crc);
        bad = 1;
    }
    printf("deps-check: cblas_sgemm (headers of%s): %s\n", OPENBLAS_VERSION, origin((void *)cblas_sgemm));
    printf("deps-check: LAPACKE_dgesv: %s\n", origin((void *)LAPACKE_dgesv));
    printf("deps-check: crc32 (zlib %s): %s\n", zlibVersion(), origin((void *)crc32));
    printf("deps-check: %s\n", bad ? "FAILED" : "OpenBLAS, LAPACKE and zlib work");
    return bad;
}
