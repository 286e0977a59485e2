/* What the parts of the CUDA emulator share (not for kernels). */
#ifndef CUEMU_INTERNAL_H
#define CUEMU_INTERNAL_H

#include "cuemu.h"

/* runtime_api.cc: the last error (cudaGetLastError), stream handles. */
cudaError_t cuemu_set_error(cudaError_t error);
bool cuemu_stream_is_valid(cudaStream_t stream);

/* Per-block shared memory of the emulated device (an H100/H200): 48 KiB by
 * default, up to the opt-in limit with cudaFuncSetAttribute. */
constexpr int CUEMU_SMEM_DEFAULT = 48 * 1024;
constexpr int CUEMU_SMEM_OPTIN = 232448;

#endif
