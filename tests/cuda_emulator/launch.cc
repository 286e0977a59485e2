/* Kernel launches on the CPU: the launch checks a GPU makes, then the blocks
 * of the grid one after another, and in each block its threads as fibers
 * (fiber.h), each run until it reaches __syncthreads or returns. When none
 * can run any more, every thread must wait at the same barrier, or all
 * must have returned; anything else (a barrier in divergent code, threads
 * returning while others wait) would hang or misbehave on a GPU and stops
 * the emulation with an error. The order in which the threads of a block run
 * between barriers, and the order of the blocks, is forward, reverse or
 * shuffled (MG_CUEMU_ORDER): results that depend on it are races. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <map>
#include <vector>

#include "asan.h"
#include "cuemu_internal.h"
#include "fiber.h"

#ifdef CUEMU_ASAN
#include <sanitizer/asan_interface.h>
#endif

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace {

enum class order_kind { forward, reverse, shuffled };

struct schedule {
    order_kind order = order_kind::forward;
    unsigned long long seed = 0, rng = 0;

    /* splitmix64 */
    unsigned long long next()
    {
        unsigned long long z = (rng += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }

    /* The order for this round: `ids` holds 0..n-1 in some order. */
    void arrange(std::vector<unsigned> &ids)
    {
        const size_t n = ids.size();
        for (size_t i = 0; i < n; i++)
            ids[i] = order == order_kind::reverse ? (unsigned)(n - 1 - i) : (unsigned)i;
        if (order == order_kind::shuffled)
            for (size_t i = n; i > 1; i--)
                std::swap(ids[i - 1], ids[next() % i]);
    }
};

enum class thread_state { running, at_barrier, exited };

struct gpu_thread {
    cuemu_fiber fiber;
    thread_state state;
    const char *file; /* the barrier it waits at */
    int line;
    int predicate;    /* its __syncthreads_count predicate (0 at __syncthreads) */
    int count;        /* what the barrier it passed last returned: the block's count */
};

struct kernel_info {
    int max_threads = 1024;              /* __launch_bounds__ */
    int max_dynamic_smem = CUEMU_SMEM_DEFAULT; /* cudaFuncSetAttribute */
};

struct counters {
    unsigned long long launches, blocks, thread_runs, barriers;
};

constexpr size_t STACK_BYTES = 256 * 1024;

schedule sched;
counters stats;
std::vector<gpu_thread> threads; /* grown to the largest block; fibers reused */
std::vector<unsigned> run_order;
gpu_thread *current;             /* the thread that runs, else null */
const cuemu_launch_config *launching;
void (*body)(void *);
void *body_ctx;
/* The launch's dynamic shared memory: its size from the launch, its place
 * from the kernel's first extern __shared__ declaration (cuemu_dynamic_shared),
 * which says how far it is aligned. */
unsigned char *dynamic_smem, *dynamic_smem_block;
size_t dynamic_smem_bytes, dynamic_smem_align;
std::vector<const void *> block_static_shared; /* declared in this block */
size_t block_static_bytes;

std::map<const void *, kernel_info> &kernels()
{
    static std::map<const void *, kernel_info> table; /* also used from static initialisers */
    return table;
}

const char *order_name(order_kind k)
{
    return k == order_kind::forward ? "forward" : k == order_kind::reverse ? "reverse" : "shuffled";
}

void report_emulation_at_exit(void)
{
    printf("cuda_emulator: %llu kernel launches, %llu blocks, %llu thread runs between %llu barriers, all "
           "EMULATED on the CPU (order %s): nothing ran on a GPU\n",
           stats.launches, stats.blocks, stats.thread_runs, stats.barriers, order_name(sched.order));
    fflush(stdout);
}

/* Reads MG_CUEMU_ORDER and MG_CUEMU_SEED and says, first thing, what runs. */
struct startup {
    startup()
    {
        const char *order = getenv("MG_CUEMU_ORDER"), *seed = getenv("MG_CUEMU_SEED");
        cuemu_set_order(order && *order ? order : "forward", seed ? strtoull(seed, nullptr, 0) : 1);
        printf("cuda_emulator: this is an EMULATION of CUDA on the CPU, not a GPU run: the kernels of "
               "kernels/*.cu run as host C++, blocks one after another, each GPU thread a fiber between "
               "__syncthreads; thread and block order: %s (MG_CUEMU_ORDER), seed %llu (MG_CUEMU_SEED)\n",
               order_name(sched.order), sched.seed);
        fflush(stdout);
        atexit(report_emulation_at_exit);
    }
} startup_once;

void thread_main(void *arg)
{
    gpu_thread *t = static_cast<gpu_thread *>(arg);
    body(body_ctx);
    t->state = thread_state::exited;
    cuemu_fiber_exit(&t->fiber);
}

bool same_barrier(const gpu_thread &a, const gpu_thread &b)
{
    return a.line == b.line && strcmp(a.file, b.file) == 0;
}

/* Runs one block to its end. */
void run_block(unsigned nt)
{
    const dim3 b = launching->block;
    if (dynamic_smem) /* placed when a thread of an earlier block first declared it */
        memset(dynamic_smem, 0xFF, dynamic_smem_bytes);
    block_static_shared.clear();
    block_static_bytes = 0;
    for (unsigned t = 0; t < nt; t++) {
        threads[t].state = thread_state::running;
        cuemu_fiber_start(&threads[t].fiber, thread_main, &threads[t]);
    }
    run_order.resize(nt);
    for (;;) {
        sched.arrange(run_order);
        for (unsigned t : run_order) {
            current = &threads[t];
            threadIdx = uint3{t % b.x, t / b.x % b.y, t / (b.x * b.y)};
            stats.thread_runs++;
            cuemu_fiber_resume(&current->fiber);
        }
        current = nullptr;
        const gpu_thread *waiting = nullptr, *exited = nullptr;
        for (unsigned t = 0; t < nt; t++) {
            const gpu_thread &th = threads[t];
            if (th.state == thread_state::exited) {
                exited = exited ? exited : &th;
                continue;
            }
            if (waiting && !same_barrier(*waiting, th))
                cuemu_fatal("threads %u and %u of the block wait at different __syncthreads (%s:%d and %s:%d): "
                            "a barrier in divergent code",
                            (unsigned)(waiting - threads.data()), t, waiting->file, waiting->line, th.file, th.line);
            waiting = waiting ? waiting : &th;
        }
        if (!waiting)
            return;
        if (exited)
            cuemu_fatal("thread %u returned while thread %u waits at __syncthreads (%s:%d): a barrier not "
                        "reached by the whole block",
                        (unsigned)(exited - threads.data()), (unsigned)(waiting - threads.data()), waiting->file,
                        waiting->line);
        stats.barriers++;
        int count = 0;
        for (unsigned t = 0; t < nt; t++)
            count += threads[t].predicate != 0;
        for (unsigned t = 0; t < nt; t++) {
            threads[t].state = thread_state::running;
            threads[t].count = count;
        }
    }
}

/* MG_CUEMU_NO_KERNEL_IMAGE=1 plays a GPU this build has no code for: the
 * driver finds no image of any kernel (the emulator itself runs any). */
bool no_kernel_image()
{
    const char *env = getenv("MG_CUEMU_NO_KERNEL_IMAGE");
    return env && strcmp(env, "1") == 0;
}

/* What a GPU would refuse, or null. */
const char *refusal(const cuemu_launch_config &c, const kernel_info &k, cudaError_t *error)
{
    *error = cudaErrorNoKernelImageForDevice;
    if (no_kernel_image())
        return "no kernel image for this GPU (MG_CUEMU_NO_KERNEL_IMAGE=1)";
    const dim3 g = c.grid, b = c.block;
    const unsigned long long nt = (unsigned long long)b.x * b.y * b.z;
    *error = cudaErrorInvalidConfiguration;
    if (nt == 0 || nt > 1024 || b.x > 1024 || b.y > 1024 || b.z > 64)
        return "block size outside 1..1024 threads (x, y <= 1024, z <= 64)";
    if (g.x == 0 || g.y == 0 || g.z == 0 || g.x > 0x7FFFFFFFu || g.y > 65535 || g.z > 65535)
        return "grid size outside 1..2^31-1 x 65535 x 65535";
    *error = cudaErrorLaunchOutOfResources;
    if (nt > (unsigned long long)k.max_threads)
        return "more threads per block than the kernel's __launch_bounds__";
    *error = cudaErrorInvalidValue;
    if (c.dynamic_smem > (size_t)k.max_dynamic_smem)
        return "more dynamic shared memory than the kernel may use (cudaFuncSetAttribute, "
               "cudaFuncAttributeMaxDynamicSharedMemorySize)";
    return nullptr;
}

} // namespace

void cuemu_set_order(const char *order, unsigned long long seed)
{
    if (strcmp(order, "forward") == 0)
        sched.order = order_kind::forward;
    else if (strcmp(order, "reverse") == 0)
        sched.order = order_kind::reverse;
    else if (strcmp(order, "shuffled") == 0)
        sched.order = order_kind::shuffled;
    else
        cuemu_fatal("MG_CUEMU_ORDER=%s: say forward, reverse or shuffled", order);
    sched.seed = sched.rng = seed;
}

void cuemu_fatal(const char *format, ...)
{
    fflush(stdout);
    fprintf(stderr, "cuda_emulator: ERROR: ");
    va_list ap;
    va_start(ap, format);
    vfprintf(stderr, format, ap);
    va_end(ap);
    if (launching)
        fprintf(stderr, "\n  in kernel %s, block (%u, %u, %u)", launching->name, blockIdx.x, blockIdx.y, blockIdx.z);
    if (current)
        fprintf(stderr, ", thread (%u, %u, %u)", threadIdx.x, threadIdx.y, threadIdx.z);
    fprintf(stderr, "\n");
    abort();
}

int cuemu_register_launch_bounds(const void *kernel, int max_threads)
{
    kernels()[kernel].max_threads = max_threads;
    return max_threads;
}

extern "C" cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value)
{
    if (no_kernel_image())
        return cuemu_set_error(cudaErrorNoKernelImageForDevice);
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || value > CUEMU_SMEM_OPTIN)
        return cuemu_set_error(cudaErrorInvalidValue);
    kernels()[func].max_dynamic_smem = value;
    return cudaSuccess;
}

extern "C" cudaError_t cudaFuncGetAttributes(struct cudaFuncAttributes *attr, const void *func)
{
    if (!attr)
        return cuemu_set_error(cudaErrorInvalidValue);
    if (no_kernel_image())
        return cuemu_set_error(cudaErrorNoKernelImageForDevice);
    const kernel_info k = kernels()[func];
    memset(attr, 0, sizeof *attr);
    attr->maxThreadsPerBlock = k.max_threads;
    attr->maxDynamicSharedSizeBytes = k.max_dynamic_smem;
    /* Registers, local memory and the code's versions are not modelled: 0. */
    return cudaSuccess;
}

bool cuemu_launch_accepted(const cuemu_launch_config &c)
{
    if (launching)
        cuemu_fatal("kernel %s launched from inside a kernel (dynamic parallelism is not emulated)", c.name);
    if (!cuemu_stream_is_valid(c.stream))
        cuemu_fatal("kernel %s launched on a stream that does not exist (destroyed?)", c.name);
    const kernel_info k = kernels()[c.kernel];
    cudaError_t error;
    if (const char *why = refusal(c, k, &error)) {
        fprintf(stderr, "cuda_emulator: launch of %s refused (%s): grid %u x %u x %u, block %u x %u x %u, %zu bytes "
                        "of dynamic shared memory\n",
                c.name, why, c.grid.x, c.grid.y, c.grid.z, c.block.x, c.block.y, c.block.z, c.dynamic_smem);
        cuemu_set_error(error);
        return false;
    }
    return true;
}

void cuemu_launch(const cuemu_launch_config &c, void (*thread_body)(void *), void *ctx)
{
    if (c.replayed && !cuemu_launch_accepted(c))
        return;
    const unsigned nt = c.block.x * c.block.y * c.block.z;
    while (threads.size() < nt) {
        threads.emplace_back();
        cuemu_fiber_create(&threads.back().fiber, STACK_BYTES);
    }
    dynamic_smem_bytes = c.dynamic_smem; /* placed at the first declaration */
    dynamic_smem = dynamic_smem_block = nullptr;
    dynamic_smem_align = 0;
    launching = &c;
    body = thread_body;
    body_ctx = ctx;
    gridDim = c.grid;
    blockDim = c.block;
    std::vector<unsigned> block_order(c.grid.x * c.grid.y * c.grid.z);
    sched.arrange(block_order);
    for (unsigned i : block_order) {
        blockIdx = uint3{i % c.grid.x, i / c.grid.x % c.grid.y, i / (c.grid.x * c.grid.y)};
        run_block(nt);
        stats.blocks++;
    }
    launching = nullptr;
#ifdef CUEMU_ASAN
    if (dynamic_smem_block)
        ASAN_UNPOISON_MEMORY_REGION(dynamic_smem_block, dynamic_smem_align);
#endif
    free(dynamic_smem_block);
    dynamic_smem = dynamic_smem_block = nullptr;
    stats.launches++;
}

void *cuemu_dynamic_shared(size_t type_align, size_t declared_align)
{
    if (!current)
        cuemu_fatal("extern __shared__ memory used outside a kernel");
    const size_t align = std::max(type_align, declared_align);
    if (align == 0 || (align & (align - 1)) != 0 || align > 4096)
        cuemu_fatal("%s: extern __shared__ alignment %zu is not a power of two up to 4096", launching->name, align);
    if (dynamic_smem) {
        if (align != dynamic_smem_align)
            cuemu_fatal("%s: extern __shared__ declarations aligned to %zu and %zu bytes: the one base they share "
                        "is placed for the first; declare them alike", launching->name, dynamic_smem_align, align);
        return dynamic_smem;
    }
    /* CUDA promises the base only the alignment its declaration asks for
     * (the type's, or __align__(N)'s); a GPU often gives more, when no
     * static __shared__ comes first, which would hide a missing __align__
     * until one does. Placed at exactly that alignment and no more (an odd
     * multiple of it), a tile or vector access that needs more fails here.
     * The memory ends where its allocation does, and the gap before it is
     * poisoned, so that AddressSanitizer reports a read past either end
     * (and any use of zero bytes). */
    if (posix_memalign(reinterpret_cast<void **>(&dynamic_smem_block), std::max(2 * align, (size_t)16),
                       align + dynamic_smem_bytes) != 0)
        cuemu_fatal("out of memory for %zu bytes of dynamic shared memory", dynamic_smem_bytes);
#ifdef CUEMU_ASAN
    ASAN_POISON_MEMORY_REGION(dynamic_smem_block, align);
#endif
    dynamic_smem = dynamic_smem_block + align;
    dynamic_smem_align = align;
    memset(dynamic_smem, 0xFF, dynamic_smem_bytes);
    return dynamic_smem;
}

void cuemu_static_shared(void *object, size_t bytes)
{
    if (!current)
        cuemu_fatal("__shared__ memory declared outside a kernel");
    if (std::find(block_static_shared.begin(), block_static_shared.end(), object) != block_static_shared.end())
        return;
    block_static_shared.push_back(object);
    block_static_bytes += bytes;
    if (block_static_bytes > (size_t)CUEMU_SMEM_DEFAULT)
        cuemu_fatal("%s: %zu bytes of static shared memory: more than the 48 KiB a block can declare",
                    launching->name, block_static_bytes);
    /* On a GPU cudaFuncSetAttribute refuses a dynamic limit that, with the
     * kernel's static shared memory, exceeds the opt-in limit; the emulator
     * learns the static size only here. The launch's own dynamic memory is
     * within that limit (checked at the launch), so this also holds static
     * and dynamic together to what a block can have. */
    const int allowed = kernels()[launching->kernel].max_dynamic_smem;
    if (block_static_bytes + (size_t)allowed > (size_t)CUEMU_SMEM_OPTIN)
        cuemu_fatal("%s: %zu bytes of static shared memory with a dynamic limit of %d "
                    "(cudaFuncAttributeMaxDynamicSharedMemorySize): more than the %d a block can have, which "
                    "cudaFuncSetAttribute refuses on a GPU",
                    launching->name, block_static_bytes, allowed, CUEMU_SMEM_OPTIN);
    memset(object, 0xFF, bytes);
}

int cuemu_syncthreads_count(int predicate, const char *file, int line)
{
    if (!current)
        cuemu_fatal("__syncthreads outside a kernel");
    gpu_thread *me = current; /* `current` names another thread while this one waits */
    me->state = thread_state::at_barrier;
    me->file = file;
    me->line = line;
    me->predicate = predicate;
    cuemu_fiber_yield(&me->fiber);
    return me->count;
}

void cuemu_syncthreads(const char *file, int line) { (void)cuemu_syncthreads_count(0, file, line); }
