/* The CUDA runtime API of the emulator (include/cuda_runtime_api.h), except
 * kernel attributes (launch.cc): one emulated device (an H100/H200 as far as
 * the code asks: 227 KiB of opt-in shared memory per block), device memory,
 * streams and errors.
 *
 * Device memory is host memory that the emulator tracks, so that copies can
 * be checked: each device range must lie inside one live allocation, each
 * host range outside all of them, as the copy's kind says. Misuse that a
 * GPU would answer with an error code (or a fault, or silently wrong data)
 * stops the emulation instead: in a test it is always a bug. New device
 * memory is filled with 0xFF bytes (NaN floats, -1 integers), so reading
 * what was never written shows. Pinned host memory (cudaMallocHost) is host
 * memory like any other for those checks.
 *
 * Work is asynchronous, as on a GPU: kernels, asynchronous copies, memsets,
 * graph launches and host functions join their stream's queue and run when
 * something waits for that stream, and not before. The legacy default
 * stream and the blocking streams share one queue (they wait for each
 * other); each non-blocking stream has its own, which nothing but its own
 * synchronisation, a device synchronisation, or a free waits for. So a
 * host that reads pinned memory before synchronising the copy into it, a
 * synchronous cudaMemcpy that expects a non-blocking stream's results, or
 * work split between two streams without ordering, sees stale data here as
 * it could on a GPU. What CUDA makes synchronous is synchronous here too: a
 * copy to pageable host memory returns with the data, and one from pageable
 * memory takes its bytes at the call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "cuemu_internal.h"

namespace {

cudaError_t last_error = cudaSuccess;
std::map<const char *, size_t> allocations; /* start -> bytes */
/* Pinned host memory (cudaMallocHost): host side for the copies' checks,
 * being outside every device allocation; tracked so that freeing it twice,
 * or with the wrong call, stops the test, and so that copies to and from it
 * are asynchronous. Start -> bytes. */
std::map<const char *, size_t> pinned;
/* Created streams: true for a non-blocking one. */
std::map<cudaStream_t, bool> streams;
/* Work waiting to run: one queue per non-blocking stream, and one (keyed
 * null) for the legacy default stream and every blocking stream. */
std::map<cudaStream_t, std::deque<std::function<void()>>> queues;

/* The allocation of `in` that holds [p, p + bytes), or null. */
const char *held_by(const std::map<const char *, size_t> &in, const void *p, size_t bytes)
{
    const char *c = static_cast<const char *>(p);
    auto it = in.upper_bound(c);
    if (it == in.begin())
        return nullptr;
    --it;
    return c >= it->first && bytes <= it->second && (size_t)(c - it->first) <= it->second - bytes ? it->first
                                                                                                   : nullptr;
}

const char *allocation_holding(const void *p, size_t bytes) { return held_by(allocations, p, bytes); }
bool is_pinned(const void *p, size_t bytes) { return held_by(pinned, p, bytes) != nullptr; }

cudaStream_t queue_key(cudaStream_t stream)
{
    auto it = streams.find(stream);
    return it != streams.end() && it->second ? stream : nullptr;
}

/* Runs the stream's queued work, in order. */
void wait_for(cudaStream_t stream)
{
    auto &q = queues[queue_key(stream)];
    while (!q.empty()) {
        std::function<void()> op = std::move(q.front());
        q.pop_front();
        op();
    }
}

/* Every queue, one after another in an order of the emulator's own (by
 * handle, not by when the work came): any order is one a GPU may take. */
void wait_for_all()
{
    for (auto it = queues.rbegin(); it != queues.rend(); ++it)
        while (!it->second.empty()) {
            std::function<void()> op = std::move(it->second.front());
            it->second.pop_front();
            op();
        }
}

bool overlaps_device(const void *p, size_t bytes)
{
    const char *c = static_cast<const char *>(p);
    auto it = allocations.lower_bound(c + bytes);
    if (it == allocations.begin())
        return false;
    --it;
    return it->first + it->second > c;
}

void check_range(const char *call, const char *what, const void *p, size_t bytes, bool device)
{
    if (device && !allocation_holding(p, bytes))
        cuemu_fatal("%s: %s [%p, +%zu) is not inside one live device allocation", call, what, p, bytes);
    if (!device && overlaps_device(p, bytes))
        cuemu_fatal("%s: %s [%p, +%zu) is device memory, but the copy's kind says host", call, what, p, bytes);
}

void check_stream(const char *call, cudaStream_t stream)
{
    if (!cuemu_stream_is_valid(stream))
        cuemu_fatal("%s on a stream that does not exist (destroyed?)", call);
}

/* Captures in progress, and graphs (a captured graph and its instances are
 * the same list of recorded operations). */
using recorded_ops = std::vector<std::function<void(cudaStream_t)>>;
std::map<cudaStream_t, recorded_ops *> capturing;
std::set<const recorded_ops *> graphs;

void refuse_while_capturing(const char *call)
{
    if (!capturing.empty())
        cuemu_fatal("%s while a stream is being captured into a CUDA graph (CUDA refuses it and invalidates the "
                    "capture)", call);
}

} // namespace

void cuemu_submit(cudaStream_t stream, std::function<void(cudaStream_t)> op)
{
    auto it = capturing.find(stream);
    if (it != capturing.end())
        it->second->push_back(std::move(op));
    else
        queues[queue_key(stream)].push_back([stream, op = std::move(op)] { op(stream); });
}

void cuemu_check_kernel_pointer(const char *kernel, int index, const void *p)
{
    if (p && !allocation_holding(p, 0))
        cuemu_fatal("kernel %s: pointer parameter %d (%p) is not device memory (a host pointer, or memory "
                    "freed since the launch was captured?)", kernel, index, p);
}

void cuemu_check_kernel_pointer_field(const char *kernel, int index, const char *field, const void *p)
{
    if (p && !allocation_holding(p, 0))
        cuemu_fatal("kernel %s: field %s of struct parameter %d (%p) is not device memory (a host pointer, or "
                    "memory freed since the launch was captured?)", kernel, field, index, p);
}

cudaError_t cuemu_set_error(cudaError_t error)
{
    last_error = error;
    return error;
}

bool cuemu_stream_is_valid(cudaStream_t stream) { return !stream || streams.count(stream); }

extern "C" {

/* One emulated GPU, or MG_CUEMU_DEVICES of them (1..64) so that a job of
 * several ranks can have one each. They are all the same host memory. */
static int device_count()
{
    const char *env = getenv("MG_CUEMU_DEVICES");
    const int n = env ? atoi(env) : 1;
    return n >= 1 && n <= 64 ? n : 1;
}

cudaError_t cudaGetDeviceCount(int *count)
{
    *count = device_count();
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device)
{
    return device >= 0 && device < device_count() ? cudaSuccess : cuemu_set_error(cudaErrorInvalidDevice);
}

/* The emulated GPUs are compute capability 9.x (an H100/H200's), or
 * MG_CUEMU_CC_MAJOR.x (1..99) to play an older GPU. */
static int compute_capability_major()
{
    const char *env = getenv("MG_CUEMU_CC_MAJOR");
    const int major = env ? atoi(env) : 9;
    return major >= 1 && major <= 99 ? major : 9;
}

cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device)
{
    if (device < 0 || device >= device_count())
        return cuemu_set_error(cudaErrorInvalidDevice);
    if (attr == cudaDevAttrMaxSharedMemoryPerBlockOptin)
        *value = CUEMU_SMEM_OPTIN;
    else if (attr == cudaDevAttrComputeCapabilityMajor)
        *value = compute_capability_major();
    else
        return cuemu_set_error(cudaErrorInvalidValue);
    return cudaSuccess;
}

/* Each emulated GPU its own bus id, as distinct boards have. */
cudaError_t cudaDeviceGetPCIBusId(char *bus_id, int len, int device)
{
    if (device < 0 || device >= device_count())
        return cuemu_set_error(cudaErrorInvalidDevice);
    if (!bus_id || len < 13)
        return cuemu_set_error(cudaErrorInvalidValue);
    snprintf(bus_id, (size_t)len, "0000:%02x:00.0", 0x10 + device);
    return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int *version)
{
    *version = 13000;
    return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int *version)
{
    *version = 13000;
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void)
{
    const cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return last_error; }

/* Each error's name and CUDA's text, marked as the emulator's. */
struct error_info {
    cudaError_t code;
    const char *name, *text;
};
static const error_info ERRORS[] = {
    {cudaSuccess, "cudaSuccess", "no error (emulated CUDA)"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument (emulated CUDA)"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory (emulated CUDA)"},
    {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration", "invalid configuration argument (emulated CUDA)"},
    {cudaErrorInsufficientDriver, "cudaErrorInsufficientDriver",
     "CUDA driver version is insufficient for CUDA runtime version (emulated CUDA)"},
    {cudaErrorNoDevice, "cudaErrorNoDevice", "no CUDA-capable device is detected (emulated CUDA)"},
    {cudaErrorInvalidDevice, "cudaErrorInvalidDevice", "invalid device ordinal (emulated CUDA)"},
    {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle", "invalid resource handle (emulated CUDA)"},
    {cudaErrorIllegalState, "cudaErrorIllegalState", "the resource is in an illegal state (emulated CUDA)"},
    {cudaErrorNotReady, "cudaErrorNotReady", "device not ready (emulated CUDA)"},
    {cudaErrorLaunchOutOfResources, "cudaErrorLaunchOutOfResources", "too many resources requested for launch (emulated CUDA)"},
    {cudaErrorStreamCaptureUnsupported, "cudaErrorStreamCaptureUnsupported",
     "operation not permitted when stream is capturing (emulated CUDA)"},
};
/* What an error outside the table reads as (its code is never looked at). */
static const error_info UNKNOWN_ERROR = {cudaErrorInvalidValue, "cudaErrorUnknown", "unknown error (emulated CUDA)"};

/* The table's entry for an error, or UNKNOWN_ERROR's texts. */
static const error_info &error_entry(cudaError_t error)
{
    for (const auto &e : ERRORS)
        if (e.code == error)
            return e;
    return UNKNOWN_ERROR;
}

const char *cudaGetErrorName(cudaError_t error) { return error_entry(error).name; }

const char *cudaGetErrorString(cudaError_t error) { return error_entry(error).text; }

/* The memory behind cudaMalloc and cudaMallocHost: 256-byte aligned as
 * theirs; the exact size, so that AddressSanitizer (in the sanitizer build)
 * catches the first byte past the end; filled with 0xFF, since neither
 * clears it: NaN shows a read of what was never written. */
static cudaError_t poisoned_alloc(void **ptr, size_t bytes)
{
    void *p = nullptr;
    if (!ptr || posix_memalign(&p, 256, bytes ? bytes : 1) != 0) {
        if (ptr)
            *ptr = nullptr;
        return cuemu_set_error(ptr ? cudaErrorMemoryAllocation : cudaErrorInvalidValue);
    }
    memset(p, 0xFF, bytes);
    *ptr = p;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **ptr, size_t bytes)
{
    refuse_while_capturing("cudaMalloc");
    const cudaError_t e = poisoned_alloc(ptr, bytes);
    if (e == cudaSuccess)
        allocations[static_cast<const char *>(*ptr)] = bytes;
    return e;
}

cudaError_t cudaFree(void *ptr)
{
    refuse_while_capturing("cudaFree");
    if (!ptr)
        return cudaSuccess;
    wait_for_all(); /* cudaFree waits for the device, so no queued work outlives the memory */
    if (!allocations.erase(static_cast<const char *>(ptr)))
        cuemu_fatal("cudaFree(%p): not the start of a live device allocation (freed twice?)", ptr);
    free(ptr);
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **ptr, size_t bytes)
{
    refuse_while_capturing("cudaMallocHost");
    const cudaError_t e = poisoned_alloc(ptr, bytes);
    if (e == cudaSuccess)
        pinned[static_cast<const char *>(*ptr)] = bytes;
    return e;
}

cudaError_t cudaFreeHost(void *ptr)
{
    refuse_while_capturing("cudaFreeHost");
    if (!ptr)
        return cudaSuccess;
    wait_for_all();
    if (!pinned.erase(static_cast<const char *>(ptr)))
        cuemu_fatal("cudaFreeHost(%p): not the start of a live cudaMallocHost allocation (freed twice, or "
                    "device or malloc memory?)", ptr);
    free(ptr);
    return cudaSuccess;
}

/* Which ends of a copy are device memory, by its kind; each end's range
 * checked against that (stops the emulation when it does not hold). */
struct copy_ends {
    bool dst_device, src_device;
};
static copy_ends checked_ends(const char *call, void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind)
{
    const copy_ends e = {kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice,
                         kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice};
    check_range(call, "destination", dst, bytes, e.dst_device);
    check_range(call, "source", src, bytes, e.src_device);
    return e;
}

static bool valid_kind(enum cudaMemcpyKind kind) { return (unsigned)kind <= (unsigned)cudaMemcpyDeviceToDevice; }

static cudaError_t copy_now(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind)
{
    if (!valid_kind(kind))
        return cuemu_set_error(cudaErrorInvalidValue);
    if (bytes == 0)
        return cudaSuccess;
    checked_ends("cudaMemcpy", dst, src, bytes, kind);
    memmove(dst, src, bytes);
    return cudaSuccess;
}

/* On the legacy default stream: after its queue (and the blocking
 * streams'), not after the non-blocking streams' work. */
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind)
{
    refuse_while_capturing("cudaMemcpy");
    wait_for(nullptr);
    return copy_now(dst, src, bytes, kind);
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind, cudaStream_t stream)
{
    check_stream("cudaMemcpyAsync", stream);
    if (capturing.count(stream)) {
        /* Host memory in a captured copy would be read or written at each
         * replay, long after the call: morphogen captures device copies only. */
        if (kind != cudaMemcpyDeviceToDevice)
            cuemu_fatal("cudaMemcpyAsync of kind %d captured into a CUDA graph (only device-to-device copies are "
                        "expected there)", (int)kind);
        cuemu_submit(stream, [dst, src, bytes, kind](cudaStream_t) { copy_now(dst, src, bytes, kind); });
        return cudaSuccess;
    }
    if (!valid_kind(kind))
        return cuemu_set_error(cudaErrorInvalidValue);
    if (bytes == 0)
        return cudaSuccess;
    const copy_ends e = checked_ends("cudaMemcpyAsync", dst, src, bytes, kind);
    /* Pinned host memory, like device memory, is read or written when the
     * copy runs; pageable memory as CUDA documents: its bytes are taken
     * (staged) at the call, and a copy into it returns complete. Pinned
     * memory that a queued copy will write reads as NaN until it has: on a
     * GPU it holds old or new bytes, so a read before the synchronisation
     * is a bug, which NaN makes loud. */
    if ((e.src_device || is_pinned(src, bytes)) && (e.dst_device || is_pinned(dst, bytes))) {
        if (!e.dst_device)
            memset(dst, 0xFF, bytes);
        cuemu_submit(stream, [dst, src, bytes, kind](cudaStream_t) { copy_now(dst, src, bytes, kind); });
    } else if (!e.src_device && e.dst_device) {
        auto staged = std::make_shared<std::vector<char>>(static_cast<const char *>(src),
                                                          static_cast<const char *>(src) + bytes);
        cuemu_submit(stream, [dst, staged](cudaStream_t) { memcpy(dst, staged->data(), staged->size()); });
    } else {
        wait_for(stream);
        copy_now(dst, src, bytes, kind);
    }
    return cudaSuccess;
}

static void set_now(void *ptr, int value, size_t bytes)
{
    if (bytes == 0)
        return;
    check_range("cudaMemsetAsync", "destination", ptr, bytes, true);
    memset(ptr, value, bytes);
}

cudaError_t cudaMemsetAsync(void *ptr, int value, size_t bytes, cudaStream_t stream)
{
    check_stream("cudaMemsetAsync", stream);
    check_range("cudaMemsetAsync", "destination", ptr, bytes, true);
    cuemu_submit(stream, [ptr, value, bytes](cudaStream_t) { set_now(ptr, value, bytes); });
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags)
{
    if (!stream || flags > cudaStreamNonBlocking)
        return cuemu_set_error(cudaErrorInvalidValue);
    *stream = static_cast<cudaStream_t>(malloc(1)); /* a distinct handle */
    if (!*stream)
        return cuemu_set_error(cudaErrorMemoryAllocation);
    streams[*stream] = flags == cudaStreamNonBlocking;
    return cudaSuccess;
}

/* Its queued work still runs, as on a GPU. */
cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    if (!stream || !streams.count(stream))
        cuemu_fatal("cudaStreamDestroy of a stream that does not exist (destroyed twice?)");
    wait_for(stream);
    queues.erase(stream);
    streams.erase(stream);
    free(stream);
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    check_stream("cudaStreamSynchronize", stream);
    refuse_while_capturing("cudaStreamSynchronize");
    wait_for(stream);
    return cudaSuccess;
}

/* Queued work: not ready (the work then runs, so that polling ends);
 * otherwise done. Not an error: the last error stays. */
cudaError_t cudaStreamQuery(cudaStream_t stream)
{
    check_stream("cudaStreamQuery", stream);
    refuse_while_capturing("cudaStreamQuery");
    if (queues[queue_key(stream)].empty())
        return cudaSuccess;
    wait_for(stream);
    return cudaErrorNotReady;
}

cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void *user_data)
{
    check_stream("cudaLaunchHostFunc", stream);
    if (!fn)
        return cuemu_set_error(cudaErrorInvalidValue);
    cuemu_submit(stream, [fn, user_data](cudaStream_t) { fn(user_data); });
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode)
{
    check_stream("cudaStreamBeginCapture", stream);
    if (!stream) /* the legacy default stream cannot be captured */
        return cuemu_set_error(cudaErrorStreamCaptureUnsupported);
    if ((unsigned)mode > (unsigned)cudaStreamCaptureModeRelaxed)
        return cuemu_set_error(cudaErrorInvalidValue);
    if (capturing.count(stream))
        return cuemu_set_error(cudaErrorIllegalState);
    capturing[stream] = new recorded_ops;
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph)
{
    check_stream("cudaStreamEndCapture", stream);
    auto it = capturing.find(stream);
    if (it == capturing.end())
        return cuemu_set_error(cudaErrorIllegalState);
    graphs.insert(it->second);
    *graph = reinterpret_cast<cudaGraph_t>(it->second);
    capturing.erase(it);
    return cudaSuccess;
}

static recorded_ops *graph_ops(const void *handle, const char *call)
{
    auto *ops = static_cast<recorded_ops *>(const_cast<void *>(handle));
    if (!graphs.count(ops))
        cuemu_fatal("%s of a graph that does not exist (destroyed?)", call);
    return ops;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags)
{
    if (flags != 0)
        return cuemu_set_error(cudaErrorInvalidValue);
    auto *copy = new recorded_ops(*graph_ops(graph, "cudaGraphInstantiate"));
    graphs.insert(copy);
    *exec = reinterpret_cast<cudaGraphExec_t>(copy);
    return cudaSuccess;
}

/* The replay joins the stream's queue. Its launches were checked when they
 * were captured; a refusal at the replay would set the last error then. */
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream)
{
    check_stream("cudaGraphLaunch", stream);
    refuse_while_capturing("cudaGraphLaunch");
    recorded_ops *ops = graph_ops(exec, "cudaGraphLaunch");
    queues[queue_key(stream)].push_back([ops, stream] {
        for (auto &op : *ops)
            op(stream);
    });
    return cudaSuccess;
}

static cudaError_t destroy_graph(const void *handle, const char *call)
{
    wait_for_all(); /* a queued replay of it still runs */
    auto *ops = graph_ops(handle, call);
    graphs.erase(ops);
    delete ops;
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) { return destroy_graph(exec, "cudaGraphExecDestroy"); }
cudaError_t cudaGraphDestroy(cudaGraph_t graph) { return destroy_graph(graph, "cudaGraphDestroy"); }

cudaError_t cudaDeviceSynchronize(void)
{
    refuse_while_capturing("cudaDeviceSynchronize");
    wait_for_all();
    return cudaSuccess;
}

} /* extern "C" */
