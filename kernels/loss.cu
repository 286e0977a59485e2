/* Per-sample loss and its gradient (mg_loss_f32's math): mean over cells and
 * the 4 colour channels of (s - target)^2, summed in double. One block per
 * sample; thread t sums cells t, t + blockDim, ... in order, then a fixed
 * shared-memory tree combines the threads: the same bits on every run. */
#include "block_sum.cuh"
#include "mg_cuda.h"

#define LOSS_THREADS 256

__global__ void __launch_bounds__(LOSS_THREADS)
k_loss(int cells, int C, const float *__restrict__ states, const float *__restrict__ targets,
       double *__restrict__ loss, float *__restrict__ g)
{
    __shared__ double part[LOSS_THREADS];
    const int b = blockIdx.x;
    const float *s = states + (size_t)b * cells * C;
    const float *t = targets + (size_t)b * cells * 4;
    const double norm = 1.0 / (4.0 * cells);
    double sum = 0.0;
    for (int cell = threadIdx.x; cell < cells; cell += blockDim.x) {
        float *gc = g ? g + ((size_t)b * cells + cell) * C : NULL;
        for (int c = 0; c < 4; c++) {
            const double diff = (double)s[(size_t)cell * C + c] - (double)t[(size_t)cell * 4 + c];
            sum += diff * diff;
            if (gc)
                gc[c] = (float)(2.0 * norm * diff); /* mg_loss_f32 with scale 1 */
        }
        if (gc)
            for (int c = 4; c < C; c++)
                gc[c] = 0.0f;
    }
    const double total = mg_block_sum(part, sum);
    if (threadIdx.x == 0)
        loss[b] = total * norm;
}

extern "C" cudaError_t mg_cuda_loss(int n, int cells, int channels, const float *d_s, const float *d_targets,
                                    double *d_loss, float *d_g, cudaStream_t stream)
{
    if (n <= 0)
        return cudaSuccess;
    k_loss<<<n, LOSS_THREADS, 0, stream>>>(cells, channels, d_s, d_targets, d_loss, d_g);
    return cudaGetLastError();
}
