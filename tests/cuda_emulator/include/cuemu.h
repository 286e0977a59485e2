/* Device side of the CUDA emulator: what a kernel file of kernels/ needs,
 * besides the runtime API, to compile as host C++ and run on the CPU.
 *
 * generate.cmake writes a copy of every kernels/ source (.cu, .cuh) into the
 * build tree with `#include "cuemu.h"` on top, and rewrites the constructs
 * that no header can express: launches k<<<grid, block, smem, stream>>>(...)
 * become cuemu_kernel(k, "k", grid, block, smem, stream)(...), and
 * __shared__ declarations become calls into the emulator (see there). The
 * rest of CUDA C++ that the kernels use is defined here; anything else is a
 * compile error in the emulated build, on purpose. */
#ifndef CUEMU_H
#define CUEMU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#include <cuda_runtime_api.h>

/* ---- built-in types and variables (layouts as CUDA's vector_types.h) ---- */
struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
};
struct alignas(16) float4 {
    float x, y, z, w;
};
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
struct alignas(16) uint4 {
    unsigned int x, y, z, w;
};

/* Set by the emulator for the thread that runs (launch.cc). */
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

/* ---- qualifiers: host code runs everything ---- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
/* Erased here; generate.cmake registers the bound, and a launch with more
 * threads fails as on a GPU. */
#define __launch_bounds__(...)

/* ---- intrinsics ---- */
static inline int __popc(unsigned int x) { return __builtin_popcount(x); }
static inline unsigned int __umulhi(unsigned int a, unsigned int b)
{
    return (unsigned int)(((unsigned long long)a * b) >> 32);
}

/* ---- barriers and shared memory (launch.cc) ---- */

/* Prints "cuda_emulator: ERROR: ..." with the kernel, block and thread that
 * runs, and aborts: for mistakes that would hang, race or fault on a GPU. */
[[noreturn]] void cuemu_fatal(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* Suspends the calling thread until every thread of its block has reached
 * a barrier; all of them must reach this same one (file and line), else
 * the emulator stops with an error. */
void cuemu_syncthreads(const char *file, int line);
#define __syncthreads() cuemu_syncthreads(__FILE__, __LINE__)
/* The same barrier, returning the number of the block's threads whose
 * predicate is non-zero (to every thread). */
int cuemu_syncthreads_count(int predicate, const char *file, int line);
#define __syncthreads_count(predicate) cuemu_syncthreads_count((predicate), __FILE__, __LINE__)

/* `extern __shared__ [__align__(N)] T name[];` becomes
 * `T *name = (T *)cuemu_dynamic_shared(alignof(T), N or 0);`: the launch's
 * dynamic shared memory, aligned to exactly the larger of the two and no
 * more (all CUDA promises), fresh for each block and filled with 0xFF
 * bytes (NaN floats) so that reading what no thread wrote shows. */
void *cuemu_dynamic_shared(size_t type_align, size_t declared_align);

/* `__shared__ T name[N];` becomes `static T name[N]; cuemu_static_shared(&name, sizeof name);`:
 * one object for all blocks (they run one after another), refilled with
 * 0xFF bytes when the first thread of each block declares it. */
void cuemu_static_shared(void *object, size_t bytes);

/* Generated for every kernel declared with __launch_bounds__(n). */
int cuemu_register_launch_bounds(const void *kernel, int max_threads);

/* ---- launches ---- */
struct cuemu_launch_config {
    const void *kernel;
    const char *name;
    dim3 grid, block;
    size_t dynamic_smem;
    cudaStream_t stream;
    bool replayed; /* from a graph: checked again when it runs */
};

/* runtime_api.cc: puts `op` on `stream`, as a GPU's work is: when the
 * stream is capturing, into its graph (run at each cudaGraphLaunch, given
 * the launch's stream); otherwise at the end of the stream's queue, run
 * when something waits for the stream (a synchronisation, a query, a copy
 * to pageable host memory), not at the call. */
void cuemu_submit(cudaStream_t stream, std::function<void(cudaStream_t)> op);
bool cuemu_capturing(cudaStream_t stream);

/* Checks the configuration at the launch, as a GPU does: a refused launch
 * says why on stderr, sets the last error and returns false. */
bool cuemu_launch_accepted(const cuemu_launch_config &config);

/* Checks a replayed graph's launch again (with the kernel's attributes as
 * they are then), then runs thread_body(ctx) once per thread of the grid. */
void cuemu_launch(const cuemu_launch_config &config, void (*thread_body)(void *ctx), void *ctx);

/* runtime_api.cc: stops the emulation unless p is null or points into (or
 * just past) a live device allocation. A kernel given a host pointer works
 * on the CPU but faults on a GPU. */
void cuemu_check_kernel_pointer(const char *kernel, int index, const void *p);

/* Struct parameters that carry device pointers: where an overload
 *   void cuemu_pointer_fields(const T &value, const cuemu_field_visitor &visit)
 * calls visit(field name, pointer) for each pointer field of T, each is
 * checked as a pointer parameter is (cuemu_kernel_structs.h has those of
 * kernels/mg_cuda.h; generate.cmake includes it in the kernels' copies). */
typedef std::function<void(const char *field, const void *p)> cuemu_field_visitor;
void cuemu_check_kernel_pointer_field(const char *kernel, int index, const char *field, const void *p);
template <class T, class = void> struct cuemu_has_pointer_fields : std::false_type {};
template <class T>
struct cuemu_has_pointer_fields<T, std::void_t<decltype(cuemu_pointer_fields(std::declval<const T &>(),
                                                                             std::declval<const cuemu_field_visitor &>()))>>
    : std::true_type {};

template <class... P> struct cuemu_launch_expr {
    void (*kernel)(P...);
    cuemu_launch_config config;

    template <class T> static void check_param(const char *name, int index, const T &value)
    {
        if constexpr (std::is_pointer_v<T>)
            cuemu_check_kernel_pointer(name, index, static_cast<const void *>(value));
        else if constexpr (cuemu_has_pointer_fields<T>::value)
            cuemu_pointer_fields(value, [&](const char *field, const void *p) {
                cuemu_check_kernel_pointer_field(name, index, field, p);
            });
    }

    static void run(void (*k)(P...), const cuemu_launch_config &c, std::tuple<P...> &params)
    {
        /* Every pointer parameter, and every pointer field of a struct
         * parameter that has cuemu_pointer_fields, at every launch and every
         * replay of a captured one (an allocation freed since the capture
         * shows here). */
        int index = 0;
        std::apply([&](const auto &...value) { (check_param(c.name, index++, value), ...); }, params);
        struct bound {
            void (*kernel)(P...);
            std::tuple<P...> *params;
        } b{k, &params};
        cuemu_launch(
            c, [](void *ctx) {
                bound *self = static_cast<bound *>(ctx);
                std::apply(self->kernel, *self->params);
            },
            &b);
    }

    template <class... A> void operator()(A &&...args) const
    {
        /* The arguments are converted to the parameter types once, at the
         * launch, as CUDA does; std::apply then passes each thread its own
         * copies, as every GPU thread has its own parameters. The kernel
         * runs later, in its stream's order, with those values; a launch
         * into a capturing stream keeps them for every replay, as a graph's
         * kernel node does. */
        auto params = std::make_shared<std::tuple<P...>>(std::forward<A>(args)...);
        void (*k)(P...) = kernel;
        const cuemu_launch_config c = config;
        if (!cuemu_launch_accepted(c))
            return;
        const bool recorded = cuemu_capturing(c.stream);
        cuemu_submit(c.stream, [k, c, params, recorded](cudaStream_t on) {
            cuemu_launch_config at = c;
            at.stream = on;
            at.replayed = recorded;
            run(k, at, *params);
        });
    }
};

template <class... P>
cuemu_launch_expr<P...> cuemu_kernel(void (*kernel)(P...), const char *name, dim3 grid, dim3 block,
                                     size_t dynamic_smem = 0, cudaStream_t stream = 0)
{
    return {kernel, {reinterpret_cast<const void *>(kernel), name, grid, block, dynamic_smem, stream, false}};
}

/* ---- for the emulator's own self-check (selfcheck.cu) ---- */

/* Order in which the threads of a block run between barriers, and the
 * blocks of a grid: "forward", "reverse" or "shuffled" (a new pseudo-random
 * permutation each time, from `seed`). MG_CUEMU_ORDER and MG_CUEMU_SEED set
 * it at start. */
void cuemu_set_order(const char *order, unsigned long long seed);

#endif
