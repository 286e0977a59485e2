/* cub::BlockScan for the CUDA emulator: the interface that kernels/ uses
 * (ExclusiveSum with and without the block aggregate) and its contract,
 * not cub's algorithm: thread 0 scans the inputs of the block in order in
 * the caller's TempStorage between two barriers. As with cub, the caller
 * must __syncthreads before it reuses the TempStorage. The block must have
 * exactly the size given to the template (cub's precondition, checked). */
#ifndef CUEMU_CUB_BLOCK_BLOCK_SCAN_CUH
#define CUEMU_CUB_BLOCK_BLOCK_SCAN_CUH

#include "cuemu.h"

namespace cub {

template <class T, int BLOCK_DIM_X, int ALGORITHM = 0, int BLOCK_DIM_Y = 1, int BLOCK_DIM_Z = 1, int PTX_ARCH = 0>
class BlockScan {
    static constexpr int THREADS = BLOCK_DIM_X * BLOCK_DIM_Y * BLOCK_DIM_Z;

  public:
    struct TempStorage {
        T input[THREADS], prefix[THREADS], total;
    };

    __device__ explicit BlockScan(TempStorage &storage) : s(storage) {}

    __device__ void ExclusiveSum(T input, T &output, T &block_aggregate)
    {
        if (blockDim.x != (unsigned)BLOCK_DIM_X || blockDim.y != (unsigned)BLOCK_DIM_Y ||
            blockDim.z != (unsigned)BLOCK_DIM_Z)
            cuemu_fatal("cub::BlockScan<%d, %d, %d> in a block of %u x %u x %u threads", BLOCK_DIM_X, BLOCK_DIM_Y,
                        BLOCK_DIM_Z, blockDim.x, blockDim.y, blockDim.z);
        const unsigned t = threadIdx.x + BLOCK_DIM_X * (threadIdx.y + BLOCK_DIM_Y * threadIdx.z);
        s.input[t] = input;
        __syncthreads();
        if (t == 0) {
            T sum = T();
            for (int i = 0; i < THREADS; i++) {
                s.prefix[i] = sum;
                sum = sum + s.input[i];
            }
            s.total = sum;
        }
        __syncthreads();
        output = s.prefix[t];
        block_aggregate = s.total;
    }

    __device__ void ExclusiveSum(T input, T &output)
    {
        T block_aggregate;
        ExclusiveSum(input, output, block_aggregate);
    }

  private:
    TempStorage &s;
};

} // namespace cub

#endif
