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
 * what was never written shows. Work runs synchronously at the call;
 * streams are only checked to exist. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <map>
#include <set>

#include "cuemu_internal.h"

namespace {

cudaError_t last_error = cudaSuccess;
std::map<const char *, size_t> allocations; /* start -> bytes */
std::set<cudaStream_t> streams;

/* The live allocation that holds [p, p + bytes), or null. */
const char *allocation_holding(const void *p, size_t bytes)
{
    const char *c = static_cast<const char *>(p);
    auto it = allocations.upper_bound(c);
    if (it == allocations.begin())
        return nullptr;
    --it;
    return c >= it->first && bytes <= it->second && (size_t)(c - it->first) <= it->second - bytes ? it->first
                                                                                                   : nullptr;
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

} // namespace

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

cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device)
{
    if (device < 0 || device >= device_count())
        return cuemu_set_error(cudaErrorInvalidDevice);
    if (attr != cudaDevAttrMaxSharedMemoryPerBlockOptin)
        return cuemu_set_error(cudaErrorInvalidValue);
    *value = CUEMU_SMEM_OPTIN;
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

const char *cudaGetErrorName(cudaError_t error)
{
    switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    }
    return "cudaErrorUnknown";
}

/* CUDA's texts, marked as the emulator's. */
const char *cudaGetErrorString(cudaError_t error)
{
    switch (error) {
    case cudaSuccess: return "no error (emulated CUDA)";
    case cudaErrorInvalidValue: return "invalid argument (emulated CUDA)";
    case cudaErrorMemoryAllocation: return "out of memory (emulated CUDA)";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument (emulated CUDA)";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version (emulated CUDA)";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected (emulated CUDA)";
    case cudaErrorInvalidDevice: return "invalid device ordinal (emulated CUDA)";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle (emulated CUDA)";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch (emulated CUDA)";
    }
    return "unknown error (emulated CUDA)";
}

cudaError_t cudaMalloc(void **ptr, size_t bytes)
{
    void *p = nullptr;
    /* 256-byte aligned as cudaMalloc's; the exact size, so that
     * AddressSanitizer (in the sanitizer build) catches the first byte past
     * the end. */
    if (!ptr || posix_memalign(&p, 256, bytes ? bytes : 1) != 0) {
        if (ptr)
            *ptr = nullptr;
        return cuemu_set_error(ptr ? cudaErrorMemoryAllocation : cudaErrorInvalidValue);
    }
    memset(p, 0xFF, bytes);
    allocations[static_cast<const char *>(p)] = bytes;
    *ptr = p;
    return cudaSuccess;
}

cudaError_t cudaFree(void *ptr)
{
    if (!ptr)
        return cudaSuccess;
    if (!allocations.erase(static_cast<const char *>(ptr)))
        cuemu_fatal("cudaFree(%p): not the start of a live device allocation (freed twice?)", ptr);
    free(ptr);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind)
{
    if ((unsigned)kind > (unsigned)cudaMemcpyDeviceToDevice)
        return cuemu_set_error(cudaErrorInvalidValue);
    if (bytes == 0)
        return cudaSuccess;
    const bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    check_range("cudaMemcpy", "destination", dst, bytes, dst_device);
    check_range("cudaMemcpy", "source", src, bytes, src_device);
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind, cudaStream_t stream)
{
    check_stream("cudaMemcpyAsync", stream);
    return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMemsetAsync(void *ptr, int value, size_t bytes, cudaStream_t stream)
{
    check_stream("cudaMemsetAsync", stream);
    if (bytes == 0)
        return cudaSuccess;
    check_range("cudaMemsetAsync", "destination", ptr, bytes, true);
    memset(ptr, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags)
{
    if (!stream || flags > cudaStreamNonBlocking)
        return cuemu_set_error(cudaErrorInvalidValue);
    *stream = static_cast<cudaStream_t>(malloc(1)); /* a distinct handle */
    if (!*stream)
        return cuemu_set_error(cudaErrorMemoryAllocation);
    streams.insert(*stream);
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    if (!stream || !streams.erase(stream))
        cuemu_fatal("cudaStreamDestroy of a stream that does not exist (destroyed twice?)");
    free(stream);
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    check_stream("cudaStreamSynchronize", stream);
    return cudaSuccess;
}

/* Launches and copies complete when they are called: nothing to wait for. */
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }

} /* extern "C" */
