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
 * Work is asynchronous, as on a GPU: kernels, copies, memsets, graph
 * launches and host functions join their stream's queue and run when
 * something waits for that stream, and not before. Each non-blocking
 * stream has a queue of its own, which nothing but its own synchronisation,
 * a device synchronisation or a free waits for. The legacy default stream
 * and the blocking streams share one: CUDA orders each blocking stream
 * against the legacy one only, so this orders more than CUDA does (a
 * missing order between two blocking streams goes unseen; morphogen uses
 * none). So a host that reads pinned memory before synchronising the copy
 * into it, a synchronous cudaMemcpy whose data a non-blocking stream
 * needs, or work split between two streams without ordering, sees stale
 * data here as it could on a GPU. The host waits where CUDA documents it
 * ("API synchronization behavior"): a copy to host memory or from pinned
 * memory with cudaMemcpy, and a copy to pageable memory with
 * cudaMemcpyAsync, return complete; a copy from pageable memory takes its
 * bytes at the call (staged) and reaches the device in its stream's order;
 * host-to-host copies are immediate. A synchronisation returns the first
 * error that the work it waited for set. Work may not call CUDA (a host
 * function may not): that stops the emulation. */
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
/* Pinned ranges that queued copies are still to read. */
std::multiset<std::pair<const char *, size_t>> pinned_reads;
/* True while queued work runs: the CUDA calls it may not make stop the
 * emulation. */
bool draining = false;

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

void refuse_while_draining(const char *call)
{
    if (draining)
        cuemu_fatal("%s from work that runs in a stream (a host function may not call CUDA)", call);
}

/* Runs a queue's work in order; returns the first error that work set
 * (a launch refused at a graph's replay), which stays the last error too. */
cudaError_t drain(std::deque<std::function<void()>> &q)
{
    refuse_while_draining("a synchronisation");
    draining = true;
    cudaError_t first = cudaSuccess;
    while (!q.empty()) {
        std::function<void()> op = std::move(q.front());
        q.pop_front();
        const cudaError_t before = last_error;
        last_error = cudaSuccess;
        op();
        if (first == cudaSuccess)
            first = last_error;
        if (last_error == cudaSuccess)
            last_error = before;
    }
    draining = false;
    return first;
}

cudaError_t wait_for(cudaStream_t stream) { return drain(queues[queue_key(stream)]); }

/* Every queue, one after another in an order of the emulator's own (by
 * handle, not by when the work came): any order is one a GPU may take. */
cudaError_t wait_for_all()
{
    cudaError_t first = cudaSuccess;
    for (auto it = queues.rbegin(); it != queues.rend(); ++it) {
        const cudaError_t e = drain(it->second);
        if (first == cudaSuccess)
            first = e;
    }
    return first;
}

bool overlaps(const char *a, size_t a_bytes, const char *b, size_t b_bytes)
{
    return a < b + b_bytes && b < a + a_bytes;
}

/* Whether a queued copy is still to read [p, p + bytes) of pinned memory. */
bool pinned_read_pending(const void *p, size_t bytes)
{
    for (const auto &r : pinned_reads)
        if (overlaps(r.first, r.second, static_cast<const char *>(p), bytes))
            return true;
    return false;
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
 * the same kind of list of recorded operations), by handle; a queued
 * replay holds its list too, so a graph destroyed before it runs is no
 * reason to wait. */
using recorded_ops = std::vector<std::function<void(cudaStream_t)>>;
std::map<cudaStream_t, std::shared_ptr<recorded_ops>> capturing;
std::map<const void *, std::shared_ptr<recorded_ops>> graphs;

void refuse_while_capturing(const char *call)
{
    if (!capturing.empty())
        cuemu_fatal("%s while a stream is being captured into a CUDA graph (CUDA refuses it and invalidates the "
                    "capture)", call);
}

} // namespace

bool cuemu_capturing(cudaStream_t stream) { return capturing.count(stream) != 0; }

void cuemu_submit(cudaStream_t stream, std::function<void(cudaStream_t)> op)
{
    refuse_while_draining("a launch, copy or memset");
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

/* The emulated GPUs are compute capability 9.0 (an H100/H200's), or
 * MG_CUEMU_CC_MAJOR.MG_CUEMU_CC_MINOR (1..99, 0..9) to play another GPU. */
static int compute_capability(const char *name, int fallback, int least, int most)
{
    const char *env = getenv(name);
    const int v = env ? atoi(env) : fallback;
    return v >= least && v <= most ? v : fallback;
}

cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device)
{
    if (device < 0 || device >= device_count())
        return cuemu_set_error(cudaErrorInvalidDevice);
    if (attr == cudaDevAttrMaxSharedMemoryPerBlockOptin)
        *value = CUEMU_SMEM_OPTIN;
    else if (attr == cudaDevAttrComputeCapabilityMajor)
        *value = compute_capability("MG_CUEMU_CC_MAJOR", 9, 1, 99);
    else if (attr == cudaDevAttrComputeCapabilityMinor)
        *value = compute_capability("MG_CUEMU_CC_MINOR", 0, 0, 9);
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
    {cudaErrorNoKernelImageForDevice, "cudaErrorNoKernelImageForDevice",
     "no kernel image is available for execution on the device (emulated CUDA)"},
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
    refuse_while_draining("cudaFree");
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
    refuse_while_draining("cudaFreeHost");
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

/* A copy from pageable memory to the device: its bytes taken now (CUDA
 * stages them), written in the stream's order. */
static void submit_staged(cudaStream_t stream, void *dst, const void *src, size_t bytes)
{
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char *>(src),
                                                      static_cast<const char *>(src) + bytes);
    cuemu_submit(stream, [dst, staged](cudaStream_t) { memcpy(dst, staged->data(), staged->size()); });
}

/* On the legacy default stream, which non-blocking streams are not ordered
 * after. As CUDA documents: from pageable memory to the device it returns
 * once the bytes are staged, device to device without waiting; from
 * pinned memory, and to host memory, once the copy is done. */
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind)
{
    refuse_while_capturing("cudaMemcpy");
    refuse_while_draining("cudaMemcpy");
    if (!valid_kind(kind))
        return cuemu_set_error(cudaErrorInvalidValue);
    if (bytes == 0)
        return cudaSuccess;
    const copy_ends e = checked_ends("cudaMemcpy", dst, src, bytes, kind);
    if (e.dst_device && !e.src_device && !is_pinned(src, bytes)) {
        submit_staged(nullptr, dst, src, bytes);
        return cudaSuccess;
    }
    if (e.dst_device && e.src_device) {
        cuemu_submit(nullptr, [dst, src, bytes, kind](cudaStream_t) { copy_now(dst, src, bytes, kind); });
        return cudaSuccess;
    }
    const cudaError_t earlier = e.src_device || e.dst_device ? wait_for(nullptr) : cudaSuccess;
    copy_now(dst, src, bytes, kind);
    return earlier;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind, cudaStream_t stream)
{
    check_stream("cudaMemcpyAsync", stream);
    refuse_while_draining("cudaMemcpyAsync");
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
    const bool src_pinned = !e.src_device && is_pinned(src, bytes);
    const bool dst_pinned = !e.dst_device && is_pinned(dst, bytes);
    if (!e.src_device && !e.dst_device) { /* host to host: immediate */
        copy_now(dst, src, bytes, kind);
        return cudaSuccess;
    }
    if ((e.src_device || src_pinned) && (e.dst_device || dst_pinned)) {
        /* Pinned memory, like device memory, is read or written when the
         * copy runs. Until then a pinned destination reads NaN (on a GPU
         * it holds old or new bytes, so reading it before synchronising is
         * a bug, which NaN makes loud), unless a copy queued earlier is
         * still to read it. */
        if (dst_pinned && !pinned_read_pending(dst, bytes))
            memset(dst, 0xFF, bytes);
        std::multiset<std::pair<const char *, size_t>>::iterator read;
        if (src_pinned)
            read = pinned_reads.insert({static_cast<const char *>(src), bytes});
        cuemu_submit(stream, [dst, src, bytes, kind, src_pinned, read](cudaStream_t) {
            copy_now(dst, src, bytes, kind);
            if (src_pinned)
                pinned_reads.erase(read);
        });
    } else if (e.dst_device) {
        submit_staged(stream, dst, src, bytes);
    } else { /* to pageable memory: returns complete */
        const cudaError_t earlier = wait_for(stream);
        copy_now(dst, src, bytes, kind);
        return earlier;
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
    if (bytes)
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

/* Its queued work still runs, as on a GPU, though here before the call
 * returns (CUDA returns at once and finishes it later). */
cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    refuse_while_draining("cudaStreamDestroy");
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
    return wait_for(stream);
}

/* Queued work: not ready (the work then runs, so that polling ends), or
 * the error it set; otherwise done. Not ready is no error: the last error
 * stays. */
cudaError_t cudaStreamQuery(cudaStream_t stream)
{
    check_stream("cudaStreamQuery", stream);
    refuse_while_capturing("cudaStreamQuery");
    if (queues[queue_key(stream)].empty())
        return cudaSuccess;
    const cudaError_t e = wait_for(stream);
    return e != cudaSuccess ? e : cudaErrorNotReady;
}

cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void *user_data)
{
    check_stream("cudaLaunchHostFunc", stream);
    refuse_while_draining("cudaLaunchHostFunc");
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
    capturing[stream] = std::make_shared<recorded_ops>();
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph)
{
    check_stream("cudaStreamEndCapture", stream);
    auto it = capturing.find(stream);
    if (it == capturing.end())
        return cuemu_set_error(cudaErrorIllegalState);
    graphs[it->second.get()] = it->second;
    *graph = reinterpret_cast<cudaGraph_t>(it->second.get());
    capturing.erase(it);
    return cudaSuccess;
}

static std::shared_ptr<recorded_ops> graph_ops(const void *handle, const char *call)
{
    auto it = graphs.find(handle);
    if (it == graphs.end())
        cuemu_fatal("%s of a graph that does not exist (destroyed?)", call);
    return it->second;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags)
{
    if (flags != 0)
        return cuemu_set_error(cudaErrorInvalidValue);
    auto copy = std::make_shared<recorded_ops>(*graph_ops(graph, "cudaGraphInstantiate"));
    graphs[copy.get()] = copy;
    *exec = reinterpret_cast<cudaGraphExec_t>(copy.get());
    return cudaSuccess;
}

/* The replay joins the stream's queue. Its launches were checked when they
 * were captured and are checked again when they run; a refusal then is
 * the error of the synchronisation that waited for it. */
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream)
{
    check_stream("cudaGraphLaunch", stream);
    refuse_while_capturing("cudaGraphLaunch");
    std::shared_ptr<recorded_ops> ops = graph_ops(exec, "cudaGraphLaunch");
    cuemu_submit(stream, [ops](cudaStream_t on) {
        for (auto &op : *ops)
            op(on);
    });
    return cudaSuccess;
}

static cudaError_t destroy_graph(const void *handle, const char *call)
{
    refuse_while_draining(call);
    graph_ops(handle, call);
    graphs.erase(handle);
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) { return destroy_graph(exec, "cudaGraphExecDestroy"); }
cudaError_t cudaGraphDestroy(cudaGraph_t graph) { return destroy_graph(graph, "cudaGraphDestroy"); }

cudaError_t cudaDeviceSynchronize(void)
{
    refuse_while_capturing("cudaDeviceSynchronize");
    return wait_for_all();
}

} /* extern "C" */
