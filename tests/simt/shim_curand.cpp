/* shim_curand.cpp: the cuRAND host API subset of the SIMT emulator (test-only), defined against the
 * real <curand.h> prototypes: a Philox4x32-10 generator (CURAND_RNG_PSEUDO_PHILOX4_32_10 only)
 * filling device memory with uniforms. Element i of a call is word (offset + i) of subsequence 0 of
 * the seed's stream, mapped to (0, 1] like curand_uniform, and the offset then advances by n; that
 * order is this emulator's, not promised to match the real library's host generator.
 * A generator belongs to the device current at its creation: generating while another device is
 * current, or into another device's memory, gives CURAND_STATUS_LAUNCH_FAILURE and a "simt:" line
 * naming both devices.
 * Must not: write device memory except through its device view (dv). */
#include "simt_internal.h"

#include <curand.h>

#include "ng_math.h"

#include <mutex>
#include <set>

struct curandGenerator_st {
    int device; /* current device at curandCreateGenerator */
    unsigned long long seed;
    unsigned long long offset;
    cudaStream_t stream;
};

namespace ng_simt {
namespace {
std::mutex mu;
std::set<curandGenerator_t> gens;

bool gen_ok(curandGenerator_t g) {
    std::lock_guard<std::mutex> lock(mu);
    return g != NULL && gens.count(g) != 0;
}
} /* namespace */
} /* namespace ng_simt */

using namespace ng_simt;

extern "C" {

curandStatus_t curandCreateGenerator(curandGenerator_t *generator, curandRngType_t rng_type) {
    if (generator == NULL) return CURAND_STATUS_NOT_INITIALIZED;
    if (rng_type != CURAND_RNG_PSEUDO_PHILOX4_32_10) return CURAND_STATUS_TYPE_ERROR;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1) {
        cudaGetLastError();
        return CURAND_STATUS_INITIALIZATION_FAILED;
    }
    curandGenerator_t g = new curandGenerator_st();
    g->device = current_device();
    g->seed = 0;
    g->offset = 0;
    g->stream = NULL;
    std::lock_guard<std::mutex> lock(ng_simt::mu);
    gens.insert(g);
    *generator = g;
    return CURAND_STATUS_SUCCESS;
}

curandStatus_t curandDestroyGenerator(curandGenerator_t generator) {
    std::lock_guard<std::mutex> lock(ng_simt::mu);
    if (generator == NULL || gens.erase(generator) == 0) return CURAND_STATUS_NOT_INITIALIZED;
    delete generator;
    return CURAND_STATUS_SUCCESS;
}

curandStatus_t curandSetStream(curandGenerator_t generator, cudaStream_t stream) {
    if (!gen_ok(generator)) return CURAND_STATUS_NOT_INITIALIZED;
    if (!stream_valid(stream)) return CURAND_STATUS_LAUNCH_FAILURE;
    if (stream != NULL && stream != cudaStreamLegacy && stream != cudaStreamPerThread &&
        stream_device(stream) != generator->device) {
        note("curandSetStream: stream %p belongs to device %d but the generator %p to device %d",
             (void *)stream, stream_device(stream), (void *)generator, generator->device);
        return CURAND_STATUS_LAUNCH_FAILURE;
    }
    generator->stream = stream;
    return CURAND_STATUS_SUCCESS;
}

curandStatus_t curandSetPseudoRandomGeneratorSeed(curandGenerator_t generator,
                                                  unsigned long long seed) {
    if (!gen_ok(generator)) return CURAND_STATUS_NOT_INITIALIZED;
    generator->seed = seed;
    generator->offset = 0;
    return CURAND_STATUS_SUCCESS;
}

curandStatus_t curandSetGeneratorOffset(curandGenerator_t generator, unsigned long long offset) {
    if (!gen_ok(generator)) return CURAND_STATUS_NOT_INITIALIZED;
    generator->offset = offset;
    return CURAND_STATUS_SUCCESS;
}

curandStatus_t curandGenerateUniform(curandGenerator_t generator, float *outputPtr, size_t num) {
    const char *fn = "curandGenerateUniform";
    if (!gen_ok(generator)) return CURAND_STATUS_NOT_INITIALIZED;
    if (!handle_on_current(fn, "generator", generator, generator->device))
        return CURAND_STATUS_LAUNCH_FAILURE;
    if (capturing(generator->stream)) { /* not captured by the emulator (simt_graph.cpp) */
        note("%s: cuRAND calls are not captured by the emulator; the stream capture is invalidated", fn);
        capture_invalidate(generator->stream, fn);
        return CURAND_STATUS_LAUNCH_FAILURE;
    }
    if (num == 0) return CURAND_STATUS_SUCCESS;
    if (!dev_range(outputPtr, num * sizeof(float))) {
        note("%s: output (%p, %zu floats) is not a device range", fn, (void *)outputPtr, num);
        return CURAND_STATUS_LAUNCH_FAILURE;
    }
    if (!dev_on(fn, "output", outputPtr, generator->device, "generator"))
        return CURAND_STATUS_LAUNCH_FAILURE;
    float *out = dv(outputPtr);
    for (size_t i = 0; i < num; i++)
        out[i] = ng_u32_to_uniform(ng_philox_word(generator->seed, 0, generator->offset + i));
    generator->offset += num;
    return CURAND_STATUS_SUCCESS;
}

} /* extern "C" */
