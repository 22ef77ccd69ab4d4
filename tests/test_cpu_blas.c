/* test_cpu_blas.c: the CPU backend's choice of OpenBLAS kernel (host/backend/cpu_blas.c).
 * Debian's OpenBLAS 0.3.21 reports some AVX-512 CPUs as "Prescott"; natgrad must then ask for
 * SkylakeX (AVX-512) or Haswell (AVX2+FMA), and leave a fitting kernel alone. The start-up line
 * must name the kernel OpenBLAS really runs. */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu_blas.h"
#include "harness.h"
#include "natgrad/backend.h"

static int same(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

static int test_pick_coretype(void) {
    static const struct { const char *core; int avx512, avx2; const char *want; } cases[] = {
        {"Prescott", 1, 1, "SkylakeX"}, {"Prescott", 0, 1, "Haswell"}, {"Prescott", 0, 0, NULL},
        {"Sandybridge", 0, 1, "Haswell"}, {"Haswell", 1, 1, "SkylakeX"}, {"Haswell", 0, 1, NULL},
        {"SkylakeX", 1, 1, NULL}, {"Cooperlake", 1, 1, NULL}, {"Zen", 0, 1, NULL}, {NULL, 1, 1, NULL},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = ng_cpu_blas_pick_coretype(cases[i].core, cases[i].avx512, cases[i].avx2);
        NGT_CHECK(same(got, cases[i].want), "core %s avx512 %d avx2 %d: got %s, want %s",
                  cases[i].core ? cases[i].core : "(null)", cases[i].avx512, cases[i].avx2,
                  got ? got : "(none)", cases[i].want ? cases[i].want : "(none)");
    }
    return NGT_PASS;
}

/* The description names the running kernel, and the kernel OpenBLAS actually runs fits the CPU's
 * vector features (this binary calls ng_cpu_blas_reexec first, like natgrad): checked against the
 * CPU, whatever set OPENBLAS_CORETYPE, so a re-exec that picked the wrong kernel fails here. Only
 * a user's own OPENBLAS_CORETYPE (not natgrad's re-exec) is respected: then the kernel must be the
 * one the user asked for, and the fit is reported as a skip. */
static int test_description_and_choice(void) {
    ng_backend *be;
    const char *user = getenv("NG_BLAS_REEXECED") ? NULL : getenv("OPENBLAS_CORETYPE");
    int fits;
    NGT_OK(ng_backend_cpu_init(&be));
    printf("  %s\n", be->description);
    NGT_CHECK(strstr(be->description, "OpenBLAS") && strstr(be->description, "kernel "),
              "description lacks BLAS/kernel: %s", be->description);
    fits = ng_cpu_blas_kernel_fits();
    if (user) {
        char want[96];
        snprintf(want, sizeof want, "kernel %s", user);
        NGT_CHECK(strcasestr(be->description, want) != NULL, "OPENBLAS_CORETYPE=%s not respected: %s", user,
                  be->description);
        ng_backend_free(be);
        if (!fits) {
            snprintf(want, sizeof want, "OPENBLAS_CORETYPE=%s set by the environment: kernel fit not checked", user);
            return ngt_skip(want);
        }
        return NGT_PASS;
    }
    NGT_CHECK(fits, "OpenBLAS runs a kernel weaker than this CPU supports: %s", be->description);
    ng_backend_free(be);
    return NGT_PASS;
}

int main(int argc, char **argv) {
    ng_cpu_blas_reexec(argc, argv);
    NGT_RUN(test_pick_coretype);
    NGT_RUN(test_description_and_choice);
    return ngt_finish();
}
