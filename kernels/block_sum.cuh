/* A block's sum of one double per thread in a fixed shared-memory tree:
 * the same additions in the same order on every run and every GPU, so the
 * bits do not depend on scheduling (loss.cu, train_kernels.cu). */
#ifndef MORPHOGEN_KERNELS_BLOCK_SUM_CUH
#define MORPHOGEN_KERNELS_BLOCK_SUM_CUH

/* Every thread of the block calls it with its value; `part` is shared-memory
 * scratch of blockDim.x doubles, blockDim.x a power of two. The sum is
 * returned to thread 0 (other threads get a partial sum). */
__device__ __forceinline__ double mg_block_sum(double *part, double v)
{
    part[threadIdx.x] = v;
    __syncthreads();
    for (int half = (int)blockDim.x / 2; half > 0; half /= 2) {
        if ((int)threadIdx.x < half)
            part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    return part[0];
}

#endif
