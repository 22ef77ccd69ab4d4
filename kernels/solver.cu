/* solver.cu: the device half of the matrix-free solvers (host/optim/minresqlp.c): NG_OP_MINRESQLP_STEP,
 * MINRES-QLP's scalar recurrence, one thread per system around ng_mqlp_run (the body the CPU
 * backend calls too), so the Lanczos scalars, the reflectors and the stopping flags never leave
 * the device. The vector work of the solvers runs through axpby_dev (fill.cu) and the reductions.
 * Must not: allocate, use atomics, or synchronize the host. */
#include "ng_cuda.cuh"

#include "ng_kernels.h"

#define SOLVER_BLOCK 32u

/* system j: state (NG_MQLP_NSTATE) and scalars (NG_MQLP_NSC) updated in place */
static __global__ void minresqlp_step_kernel(int count, double *state, float *sc, int init,
                                             int max_iter, double rtol, double maxxnorm,
                                             double trancond, double singtol) {
    const int stride = (int)(blockDim.x * gridDim.x);
    int j;
    for (j = (int)(blockIdx.x * blockDim.x + threadIdx.x); j < count; j += stride)
        ng_mqlp_run(state + (size_t)j * NG_MQLP_NSTATE, sc + (size_t)j * NG_MQLP_NSC, init,
                    max_iter, rtol, maxxnorm, trancond, singtol);
}

extern "C" ng_status ng_cuda_minresqlp_step(int count, double *state, float *sc, int init,
                                            int max_iter, double rtol, double maxxnorm,
                                            double trancond, double singtol, void *stream) {
    NG_NVTX_PUSH("minresqlp_step");
    NG_LAUNCH(minresqlp_step_kernel, ng_grid_1d((size_t)count, SOLVER_BLOCK), SOLVER_BLOCK, 0,
              (cudaStream_t)stream)(count, state, sc, init, max_iter, rtol, maxxnorm, trancond,
                                    singtol);
    NG_LAUNCH_CHECK("minresqlp_step");
    return NG_OK;
}
