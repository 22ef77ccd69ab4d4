/* curand_kernel.h (SIMT emulator): stands in for cuRAND's device header when kernels are compiled
 * with the host compiler (-Itests/simt comes before the CUDA include directory), so a kernel that
 * includes <curand_kernel.h> gets the emulated subset in simt_curand.h. Test-only. */
#ifndef NG_SIMT_CURAND_KERNEL_H
#define NG_SIMT_CURAND_KERNEL_H
#include "simt.h"
#endif
