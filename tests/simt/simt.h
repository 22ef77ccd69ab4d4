/* simt.h: the CUDA device language on the host C++ compiler, for tests only (nothing here ships).
 * kernels/<family>.cu compiled with `g++ -x c++ -std=c++17 -DNG_SIMT -Itests/simt -I<cuda>/include`
 * include it through kernels/ng_cuda.cuh and then run unmodified on the CPU:
 *   - blocks are spread over a few OS threads (NG_SIMT_THREADS, default the CPU count, at most 8);
 *     each block's threads run as cooperative fibers on one OS thread: a thread runs without
 *     interruption until it reaches __syncthreads or a warp operation (__shfl_*_sync,
 *     __ballot_sync, __syncwarp), where it yields; threads that never wait share one fiber;
 *   - threadIdx/blockIdx/blockDim/gridDim are per-OS-thread variables that the scheduler sets;
 *   - NG_LAUNCH(kernel, grid, block, shmem, stream)(args...) validates the configuration like a
 *     real launch (errors go to cudaGetLastError and the kernel does not run) and runs the grid;
 *   - device pointers from the cudart shim fault when the host dereferences them; a launch hands
 *     the kernel their device-side view. See tests/simt/README.md for what is and is not caught.
 * The types (dim3, uint3, float4, cudaStream_t) and host API prototypes are the real ones from
 * <cuda_runtime.h>; the shims in libsimt.a define the functions.
 *
 * Must not: be included by nvcc builds or by C files; keep per-block state anywhere but __shared__
 * variables and dynamic shared memory (blocks of one launch run concurrently). */
#ifndef NG_SIMT_H
#define NG_SIMT_H

#ifndef __cplusplus
#error "simt.h is C++: compile kernels with the host C++ compiler (-x c++ -std=c++17 -DNG_SIMT)"
#endif
#if defined(__CUDACC__)
#error "simt.h emulates the device language on the host compiler; nvcc builds must not include it"
#endif

#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

/* ---- keywords ------------------------------------------------------------------------------ */
/* The real host_defines.h maps these to nothing for a host compiler; __shared__ must instead give
 * one object per block. An OS thread runs one block at a time (all its threads), so a
 * function-local thread_local static is shared by exactly the threads of the running block. It is
 * not cleared between blocks (dynamic shared memory is). */
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __constant__
#define __global__
#define __device__
#define __host__
#define __constant__
#define __shared__ static thread_local __attribute__((used))
#ifndef __forceinline__
#define __forceinline__ inline __attribute__((always_inline))
#endif
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif

static constexpr int warpSize = 32;

/* ---- runtime interface (tests/simt/simt_runtime.cpp) ------------------------------------ */
extern __thread uint3 threadIdx, blockIdx, blockDim, gridDim;

namespace ng_simt {

typedef void (*body_fn)(void *ctx);

struct launch_req {
    const char *name; /* kernel name as written in NG_LAUNCH */
    const void *func; /* kernel address (for cudaFuncSetAttribute opt-in) */
    dim3 grid, block;
    size_t shmem; /* dynamic shared memory bytes */
    cudaStream_t stream;
    body_fn body; /* runs the kernel for the current thread */
    void *ctx;
    void *const *ptr_slots; /* the kernel's pointer parameters (addresses of void * values): the
                               launch checks them and rewrites device pointers to the device view */
    const int *ptr_index;   /* their parameter positions (for messages) */
    int n_ptr_args;
};

/* Validate and run a launch; a bad configuration sets the error cudaGetLastError returns. */
void launch(const launch_req &req);
/* Stream capture (simt_graph.cpp): true while `stream` captures; then a launch is recorded by
 * capture_launch (configuration checked now, `replay` run by cudaGraphLaunch) instead of run. */
bool stream_capturing(cudaStream_t stream);
void capture_launch(const char *name, const void *func, dim3 grid, dim3 block, size_t shmem,
                    cudaStream_t stream, std::function<void()> replay);
void syncthreads();

enum warp_kind {
    WARP_SHFL_IDX,
    WARP_SHFL_UP,
    WARP_SHFL_DOWN,
    WARP_SHFL_XOR,
    WARP_BALLOT,
    WARP_SYNC
};
/* Rendezvous of the warp's lanes named in mask; returns this lane's result: the value of the
 * source lane for shuffles (all-ones bits when that lane has exited or does not exist), the ballot
 * mask for ballots. */
uint64_t warp_op(warp_kind kind, unsigned mask, uint64_t value, int arg, int width);

extern __thread unsigned char *dyn_smem; /* dynamic shared memory of the running launch */

template <class T>
struct is_object_ptr
    : std::integral_constant<bool,
                             std::is_pointer<T>::value &&
                                 !std::is_function<typename std::remove_pointer<T>::type>::value> {
};

template <class... P> struct launcher {
    void (*kernel)(P...);
    const char *name;
    dim3 grid, block;
    size_t shmem;
    cudaStream_t stream;

    typedef std::tuple<typename std::decay<P>::type...> params_t;
    struct call_ctx {
        void (*kernel)(P...);
        params_t *params;
    };
    static void body(void *v) {
        call_ctx *c = static_cast<call_ctx *>(v);
        std::apply(c->kernel, *c->params); /* each thread gets its own copies of the parameters */
    }
    template <size_t... I>
    static int collect_ptrs(params_t &p, void **slots, int *idx, std::index_sequence<I...>) {
        int n = 0;
        (void)slots;
        (void)idx;
        (void)p;
        ((is_object_ptr<typename std::tuple_element<I, params_t>::type>::value
              ? (void)(slots[n] = (void *)&std::get<I>(p), idx[n] = (int)I, n++)
              : (void)0),
         ...);
        return n;
    }

    /* Arguments convert to the kernel's parameter types at this call, as in a real launch (so a
     * literal 0 or NULL is a null pointer); the kernel then gets copies of them. */
    void operator()(P... args) const {
        if (stream_capturing(stream)) {
            /* captured by value now, as a real launch captures its arguments; each replay runs on
             * a fresh copy (the launch rewrites pointer arguments in place) */
            const launcher self = *this;
            std::shared_ptr<const params_t> saved = std::make_shared<const params_t>(args...);
            capture_launch(name, (const void *)kernel, grid, block, shmem, stream,
                           [self, saved]() { self.run(*saved); });
            return;
        }
        run(params_t(args...));
    }
    void run(params_t params) const {
        void *slots[sizeof...(P) + 1];
        int idx[sizeof...(P) + 1];
        int n = collect_ptrs(params, slots, idx, std::index_sequence_for<P...>{});
        call_ctx c = {kernel, &params};
        launch_req r;
        r.name = name;
        r.func = (const void *)kernel;
        r.grid = grid;
        r.block = block;
        r.shmem = shmem;
        r.stream = stream;
        r.body = &launcher::body;
        r.ctx = &c;
        r.ptr_slots = slots;
        r.ptr_index = idx;
        r.n_ptr_args = n;
        launch(r);
    }
};

template <class... P>
launcher<P...> make_launcher(void (*kernel)(P...), const char *name, dim3 grid, dim3 block,
                             size_t shmem, cudaStream_t stream) {
    launcher<P...> l;
    l.kernel = kernel;
    l.name = name;
    l.grid = grid;
    l.block = block;
    l.shmem = shmem;
    l.stream = stream;
    return l;
}

template <class T> inline uint64_t to_bits(T v) {
    static_assert(std::is_arithmetic<T>::value && sizeof(T) <= 8,
                  "warp shuffles are emulated for arithmetic types of at most 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof(T));
    return b;
}
template <class T> inline T from_bits(uint64_t b) {
    T v;
    memcpy(&v, &b, sizeof(T));
    return v;
}

} /* namespace ng_simt */

#define NG_SIMT_LAUNCH(kernel, grid, block, shmem, stream)                                         \
    ::ng_simt::make_launcher((kernel), #kernel, dim3(grid), dim3(block), (size_t)(shmem),          \
                             (cudaStream_t)(stream))
/* kernels/ng_cuda.cuh redefines NG_LAUNCH to count the launch in natgrad's profile first. */
#define NG_LAUNCH(kernel, grid, block, shmem, stream) NG_SIMT_LAUNCH(kernel, grid, block, shmem, stream)

/* Dynamic shared memory; use inside the kernel body. Fresh (NaN bytes) for every block. */
#define NG_DYN_SHARED(type, name) type *const name = reinterpret_cast<type *>(::ng_simt::dyn_smem)

/* ---- synchronisation and warp operations ---------------------------------------------- */
/* The memory clobbers keep the compiler from caching shared data in registers across a switch. */
static inline void __syncthreads(void) {
    __asm__ __volatile__("" ::: "memory");
    ::ng_simt::syncthreads();
    __asm__ __volatile__("" ::: "memory");
}
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    __asm__ __volatile__("" ::: "memory");
    ::ng_simt::warp_op(::ng_simt::WARP_SYNC, mask, 0, 0, warpSize);
    __asm__ __volatile__("" ::: "memory");
}
static inline void __threadfence(void) { __asm__ __volatile__("" ::: "memory"); }
static inline void __threadfence_block(void) { __asm__ __volatile__("" ::: "memory"); }

template <class T> inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize) {
    return ::ng_simt::from_bits<T>(::ng_simt::warp_op(::ng_simt::WARP_SHFL_IDX, mask,
                                                      ::ng_simt::to_bits(var), srcLane, width));
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
    return ::ng_simt::from_bits<T>(::ng_simt::warp_op(::ng_simt::WARP_SHFL_UP, mask,
                                                      ::ng_simt::to_bits(var), (int)delta, width));
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
    return ::ng_simt::from_bits<T>(::ng_simt::warp_op(::ng_simt::WARP_SHFL_DOWN, mask,
                                                      ::ng_simt::to_bits(var), (int)delta, width));
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize) {
    return ::ng_simt::from_bits<T>(::ng_simt::warp_op(::ng_simt::WARP_SHFL_XOR, mask,
                                                      ::ng_simt::to_bits(var), laneMask, width));
}
static inline unsigned __ballot_sync(unsigned mask, int predicate) {
    return (unsigned)::ng_simt::warp_op(::ng_simt::WARP_BALLOT, mask, predicate != 0, 0, warpSize);
}
static inline int __any_sync(unsigned mask, int predicate) {
    return __ballot_sync(mask, predicate) != 0u;
}
static inline int __all_sync(unsigned mask, int predicate) {
    return __ballot_sync(mask, !predicate) == 0u;
}

/* ---- atomics ------------------------------------------------------------------------------ */
/* Blocks may run on several OS threads at once, so these are real atomic read-modify-writes
 * (compare-and-swap loops, relaxed order as in CUDA). Float sums therefore round in a varying
 * order here too, as on a GPU. */
namespace ng_simt {
template <class T, class F> inline T atomic_rmw(T *address, F op) {
    T old, want;
    __atomic_load(address, &old, __ATOMIC_RELAXED);
    do {
        want = op(old);
    } while (!__atomic_compare_exchange(address, &old, &want, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED));
    return old;
}
} /* namespace ng_simt */
#define NG_SIMT_ATOMIC_RMW(T, name, expr)                                                          \
    static inline T name(T *address, T val) {                                                      \
        return ::ng_simt::atomic_rmw(address, [val](T old) -> T { return (expr); });               \
    }
NG_SIMT_ATOMIC_RMW(int, atomicAdd, old + val)
NG_SIMT_ATOMIC_RMW(unsigned int, atomicAdd, old + val)
NG_SIMT_ATOMIC_RMW(unsigned long long, atomicAdd, old + val)
NG_SIMT_ATOMIC_RMW(float, atomicAdd, old + val)
NG_SIMT_ATOMIC_RMW(double, atomicAdd, old + val)
NG_SIMT_ATOMIC_RMW(int, atomicSub, old - val)
NG_SIMT_ATOMIC_RMW(unsigned int, atomicSub, old - val)
NG_SIMT_ATOMIC_RMW(int, atomicExch, ((void)old, val))
NG_SIMT_ATOMIC_RMW(unsigned int, atomicExch, ((void)old, val))
NG_SIMT_ATOMIC_RMW(unsigned long long, atomicExch, ((void)old, val))
NG_SIMT_ATOMIC_RMW(float, atomicExch, ((void)old, val))
NG_SIMT_ATOMIC_RMW(int, atomicMax, old > val ? old : val)
NG_SIMT_ATOMIC_RMW(unsigned int, atomicMax, old > val ? old : val)
NG_SIMT_ATOMIC_RMW(int, atomicMin, old < val ? old : val)
NG_SIMT_ATOMIC_RMW(unsigned int, atomicMin, old < val ? old : val)
NG_SIMT_ATOMIC_RMW(int, atomicAnd, (old & val))
NG_SIMT_ATOMIC_RMW(unsigned int, atomicAnd, (old & val))
NG_SIMT_ATOMIC_RMW(int, atomicOr, (old | val))
NG_SIMT_ATOMIC_RMW(unsigned int, atomicOr, (old | val))
NG_SIMT_ATOMIC_RMW(int, atomicXor, (old ^ val))
NG_SIMT_ATOMIC_RMW(unsigned int, atomicXor, (old ^ val))
#undef NG_SIMT_ATOMIC_RMW
#define NG_SIMT_ATOMIC_CAS(T)                                                                      \
    static inline T atomicCAS(T *address, T compare, T val) {                                      \
        __atomic_compare_exchange_n(address, &compare, val, false, __ATOMIC_RELAXED,               \
                                    __ATOMIC_RELAXED);                                             \
        return compare;                                                                            \
    }
NG_SIMT_ATOMIC_CAS(int)
NG_SIMT_ATOMIC_CAS(unsigned int)
NG_SIMT_ATOMIC_CAS(unsigned long long)
#undef NG_SIMT_ATOMIC_CAS

/* ---- intrinsics ---------------------------------------------------------------------------- */
/* Fast-math intrinsics are computed with the accurate host functions: results can differ from a
 * GPU in the last bits, which tests must allow for. */
/* glibc's <math.h> already declares these names (extern "C", not exported): define them inline. */
extern "C" {
inline float __expf(float x) noexcept { return expf(x); }
inline float __exp10f(float x) noexcept { return powf(10.0f, x); }
inline float __logf(float x) noexcept { return logf(x); }
inline float __log2f(float x) noexcept { return log2f(x); }
inline float __log10f(float x) noexcept { return log10f(x); }
inline float __powf(float x, float y) noexcept { return powf(x, y); }
inline float __sinf(float x) noexcept { return sinf(x); }
inline float __cosf(float x) noexcept { return cosf(x); }
inline float __tanf(float x) noexcept { return tanf(x); }
inline void __sincosf(float x, float *s, float *c) noexcept {
    *s = sinf(x);
    *c = cosf(x);
}
}
static inline float __fdividef(float a, float b) { return a / b; }
static inline float fdividef(float a, float b) { return a / b; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
static inline int __float_as_int(float x) {
    return ::ng_simt::from_bits<int>(::ng_simt::to_bits(x));
}
static inline unsigned int __float_as_uint(float x) {
    return ::ng_simt::from_bits<unsigned int>(::ng_simt::to_bits(x));
}
static inline float __int_as_float(int x) {
    return ::ng_simt::from_bits<float>(::ng_simt::to_bits(x));
}
static inline float __uint_as_float(unsigned int x) {
    return ::ng_simt::from_bits<float>(::ng_simt::to_bits(x));
}
static inline long long __double_as_longlong(double x) {
    return ::ng_simt::from_bits<long long>(::ng_simt::to_bits(x));
}
static inline double __longlong_as_double(long long x) {
    return ::ng_simt::from_bits<double>(::ng_simt::to_bits(x));
}
static inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
static inline int __float2int_rz(float x) { return (int)x; }
static inline int __float2int_rd(float x) { return (int)floorf(x); }
static inline int __float2int_ru(float x) { return (int)ceilf(x); }
static inline float __int2float_rn(int x) { return (float)x; }
static inline float __uint2float_rn(unsigned int x) { return (float)x; }
static inline int __popc(unsigned int x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned int)x); }
static inline int __clzll(long long x) {
    return x == 0 ? 64 : __builtin_clzll((unsigned long long)x);
}
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
static inline unsigned int __brev(unsigned int x) {
    unsigned int r = 0;
    for (int i = 0; i < 32; i++) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}
static inline unsigned int __umulhi(unsigned int a, unsigned int b) {
    return (unsigned int)(((unsigned long long)a * b) >> 32);
}
static inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
static inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
template <class T> static inline T __ldg(const T *p) { return *p; }

/* CUDA's min/max overloads for device code (same-type and same-width signed/unsigned mixes). */
#define NG_SIMT_MINMAX(T)                                                                          \
    static inline T min(T a, T b) { return a < b ? a : b; }                                        \
    static inline T max(T a, T b) { return a > b ? a : b; }
NG_SIMT_MINMAX(int)
NG_SIMT_MINMAX(unsigned int)
NG_SIMT_MINMAX(long)
NG_SIMT_MINMAX(unsigned long)
NG_SIMT_MINMAX(long long)
NG_SIMT_MINMAX(unsigned long long)
#undef NG_SIMT_MINMAX
static inline unsigned int min(int a, unsigned int b) { return min((unsigned int)a, b); }
static inline unsigned int min(unsigned int a, int b) { return min(a, (unsigned int)b); }
static inline unsigned int max(int a, unsigned int b) { return max((unsigned int)a, b); }
static inline unsigned int max(unsigned int a, int b) { return max(a, (unsigned int)b); }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }

/* ---- cuRAND device API subset -------------------------------------------------------------- */
#include "simt_curand.h"

#endif
