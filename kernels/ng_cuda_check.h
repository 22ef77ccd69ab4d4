/* ng_cuda_check.h: the one NG_CUDA_CHECK, shared by the CUDA backend (host/backend/cuda.c, C) and
 * the kernel launchers (kernels/<family>.cu, CUDA C++). A failing cudart call becomes an ng_status
 * naming the statement, file and line; the runtime's last-error slot is cleared, so a non-sticky
 * failure is not reported again by the next launcher's cudaGetLastError. Include after the CUDA
 * runtime header. */
#ifndef NG_CUDA_CHECK_H
#define NG_CUDA_CHECK_H

#include "natgrad/status.h"

#define NG_CUDA_CHECK(call)                                                                     \
    do {                                                                                        \
        cudaError_t ng_e_ = (call);                                                             \
        if (ng_e_ != cudaSuccess) {                                                             \
            (void)cudaGetLastError();                                                           \
            return ng_error(NG_ERR_BACKEND, "%s failed: %s (%s:%d)", #call,                    \
                            cudaGetErrorString(ng_e_), __FILE__, __LINE__);                     \
        }                                                                                       \
    } while (0)

#endif
