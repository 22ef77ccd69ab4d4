/* backends.h: the two backends of the tests that compare them: the CPU backend, and the CUDA backend
 * (a real device, or the SIMT emulator in tests/simt/ builds) where one answers. */
#ifndef NG_TEST_BACKENDS_H
#define NG_TEST_BACKENDS_H

#include <stdio.h>

#include "natgrad/backend.h"
#include "natgrad/status.h"

/* *cpu, and *cuda or NULL with the reason in reason[len] ("no CUDA backend here: ..."). Returns 1
 * (after printing why) when the CPU backend fails: main() should return 1. */
static inline int ngt_open_backends(ng_backend **cpu, ng_backend **cuda, char *reason, size_t len) {
    if (ng_backend_cpu_init(cpu) != NG_OK) {
        printf("cpu backend: %s\n", ng_last_error());
        return 1;
    }
    if (ng_backend_cuda_init(0, cuda) != NG_OK) {
        snprintf(reason, len, "no CUDA backend here: %s", ng_last_error());
        *cuda = NULL;
        ng_clear_error();
    }
    return 0;
}

#endif
