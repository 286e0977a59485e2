/* Per-sample loss and its gradient (mg_loss_f32's math): mean over cells and
 * the 4 colour channels of (s - target)^2, summed in double. The sum is one
 * block's per sample (block 0 of the sample's row of the grid): thread t
 * sums cells t, t + blockDim, ... in order, then a fixed shared-memory tree
 * combines the threads, so it has the same bits on every run. The gradient
 * [n][cells][C] is written by all the row's blocks, one element per thread
 * and consecutive threads on consecutive elements: written by one block per
 * sample, cell by cell, each warp store touched 32 cells' rows (C floats
 * apart), so a 256x256 sample of 32 channels (8.4 MB) queued about 2 M
 * sector writes on one SM. */
#include "block_sum.cuh"
#include "mg_cuda.h"

#define LOSS_THREADS 256
#define LOSS_GRAD_ITEMS 16 /* gradient elements per thread */

__global__ void __launch_bounds__(LOSS_THREADS)
k_loss(int cells, int C, const float *__restrict__ states, const float *__restrict__ targets,
       double *__restrict__ loss, float *__restrict__ g)
{
    const int b = blockIdx.y;
    const float *s = states + (size_t)b * cells * C;
    const float *t = targets + (size_t)b * cells * 4;
    const double norm = 1.0 / (4.0 * cells);
    if (blockIdx.x == 0) { /* the same for the whole block: its barriers are all taken or all skipped */
        __shared__ double part[LOSS_THREADS];
        double sum = 0.0;
        for (int cell = threadIdx.x; cell < cells; cell += blockDim.x)
            for (int c = 0; c < 4; c++) {
                const double diff = (double)s[(size_t)cell * C + c] - (double)t[(size_t)cell * 4 + c];
                sum += diff * diff;
            }
        const double total = mg_block_sum(part, sum);
        if (threadIdx.x == 0)
            loss[b] = total * norm;
    }
    if (!g)
        return;
    const size_t items = (size_t)cells * C, stride = (size_t)gridDim.x * blockDim.x;
    float *gb = g + (size_t)b * items;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < items; i += stride) {
        const int cell = (int)(i / C), c = (int)(i % C);
        const double diff = c < 4 ? (double)s[i] - (double)t[(size_t)cell * 4 + c] : 0.0;
        gb[i] = c < 4 ? (float)(2.0 * norm * diff) : 0.0f; /* mg_loss_f32 with scale 1 */
    }
}

extern "C" cudaError_t mg_cuda_loss(int n, int cells, int channels, const float *d_s, const float *d_targets,
                                    double *d_loss, float *d_g, cudaStream_t stream)
{
    if (n <= 0)
        return cudaSuccess;
    const size_t per_block = (size_t)LOSS_THREADS * LOSS_GRAD_ITEMS;
    const unsigned blocks = d_g ? (unsigned)(((size_t)cells * channels + per_block - 1) / per_block) : 1u;
    k_loss<<<dim3(blocks, (unsigned)n), LOSS_THREADS, 0, stream>>>(cells, channels, d_s, d_targets, d_loss, d_g);
    return cudaGetLastError();
}
