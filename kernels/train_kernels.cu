/* The training kernels besides the rollout (mg_cuda_train.h): moving
 * samples between the pool and the batch, reseeding and damage, the
 * fixed-order gradient reduction, the per-tensor norms and Adam. Each
 * mirrors a CPU function named in the header, in the same arithmetic
 * order where that order decides bits. */
#include "block_sum.cuh"
#include "mg_cuda_train.h"

#define TRAIN_THREADS 256

/* Block row y of the grid moves row y: one launch for the whole batch
 * instead of a copy call per sample. */
__global__ void __launch_bounds__(TRAIN_THREADS)
k_move_rows(int64_t row, const int32_t *__restrict__ rows, int scatter, const float *__restrict__ src,
            float *__restrict__ dst)
{
    const int i = blockIdx.y;
    const float *from = src + row * (scatter ? i : rows[i]);
    float *to = dst + row * (scatter ? rows[i] : i);
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < row; j += (int64_t)gridDim.x * blockDim.x)
        to[j] = from[j];
}

static cudaError_t move_rows(int n, int64_t row, const int32_t *d_rows, int scatter, const float *d_src, float *d_dst,
                             cudaStream_t stream)
{
    if (n <= 0 || row <= 0)
        return cudaSuccess;
    int64_t blocks = (row + TRAIN_THREADS - 1) / TRAIN_THREADS;
    if (blocks > 1024)
        blocks = 1024;
    k_move_rows<<<dim3((unsigned)blocks, (unsigned)n), TRAIN_THREADS, 0, stream>>>(row, d_rows, scatter, d_src, d_dst);
    return cudaGetLastError();
}

extern "C" cudaError_t mg_cuda_gather_rows(int n, int64_t row, const int32_t *d_rows, const float *d_src,
                                           float *d_dst, cudaStream_t stream)
{
    return move_rows(n, row, d_rows, 0, d_src, d_dst, stream);
}

extern "C" cudaError_t mg_cuda_scatter_rows(int n, int64_t row, const int32_t *d_rows, const float *d_src,
                                            float *d_dst, cudaStream_t stream)
{
    return move_rows(n, row, d_rows, 1, d_src, d_dst, stream);
}

/* Block row b of the grid prepares sample b; thread j of the row walks
 * elements j, j + stride, ... of the state. */
__global__ void __launch_bounds__(TRAIN_THREADS)
k_apply_actions(int cells, int C, const unsigned char *__restrict__ action, const unsigned char *__restrict__ mask,
                const float *__restrict__ seed, float *__restrict__ states)
{
    const int b = blockIdx.y, what = action[b];
    if (what != MG_CUDA_RESEED && what != MG_CUDA_DAMAGE)
        return;
    const int64_t len = (int64_t)cells * C;
    float *s = states + (size_t)b * len;
    const unsigned char *m = mask + (size_t)b * cells;
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < len; j += (int64_t)gridDim.x * blockDim.x)
        if (what == MG_CUDA_RESEED)
            s[j] = seed[j];
        else if (m[j / C])
            s[j] = 0.0f;
}

extern "C" cudaError_t mg_cuda_apply_actions(int n, int cells, int channels, const unsigned char *d_action,
                                             const unsigned char *d_mask, const float *d_seed, float *d_states,
                                             cudaStream_t stream)
{
    if (n <= 0 || cells <= 0)
        return cudaSuccess;
    int64_t blocks = ((int64_t)cells * channels + TRAIN_THREADS - 1) / TRAIN_THREADS;
    if (blocks > 1024)
        blocks = 1024;
    k_apply_actions<<<dim3((unsigned)blocks, n), TRAIN_THREADS, 0, stream>>>(cells, channels, d_action, d_mask,
                                                                              d_seed, d_states);
    return cudaGetLastError();
}

/* One thread per element j, walking mg_tree_sum's pairs over the rows. */
__global__ void __launch_bounds__(TRAIN_THREADS)
k_tree_sum_scale(int n, int64_t len, float inv_n, float *__restrict__ g)
{
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < len; j += (int64_t)gridDim.x * blockDim.x) {
        for (int stride = 1; stride < n; stride *= 2)
            for (int i = 0; i + stride < n; i += 2 * stride)
                g[(size_t)i * len + j] += g[(size_t)(i + stride) * len + j];
        g[j] *= inv_n;
    }
}

extern "C" cudaError_t mg_cuda_tree_sum_scale(int n, int64_t len, float inv_n, float *d_grads, cudaStream_t stream)
{
    if (n <= 0 || len <= 0)
        return cudaSuccess;
    int64_t blocks = (len + TRAIN_THREADS - 1) / TRAIN_THREADS;
    if (blocks > 4096)
        blocks = 4096;
    k_tree_sum_scale<<<(unsigned)blocks, TRAIN_THREADS, 0, stream>>>(n, len, inv_n, d_grads);
    return cudaGetLastError();
}

/* Block (s, k) sums the squares of tensor k's elements s*T + t + m*(S*T)
 * for its threads t, then a fixed shared-memory tree combines the threads. */
__global__ void __launch_bounds__(TRAIN_THREADS)
k_sum_squares(const float *__restrict__ g, mg_cuda_tensors t, double *__restrict__ partial)
{
    __shared__ double part[TRAIN_THREADS];
    const int k = blockIdx.y, s = blockIdx.x;
    const float *x = g + t.offset[k];
    double sum = 0.0;
    for (int64_t i = (int64_t)s * TRAIN_THREADS + threadIdx.x; i < t.size[k];
         i += (int64_t)MG_CUDA_NORM_BLOCKS * TRAIN_THREADS)
        sum += (double)x[i] * (double)x[i];
    const double total = mg_block_sum(part, sum);
    if (threadIdx.x == 0)
        partial[k * MG_CUDA_NORM_BLOCKS + s] = total;
}

__global__ void k_norms(int n, const double *__restrict__ partial, double *__restrict__ norms)
{
    const int k = threadIdx.x;
    if (k >= n)
        return;
    double sum = 0.0;
    for (int s = 0; s < MG_CUDA_NORM_BLOCKS; s++)
        sum += partial[k * MG_CUDA_NORM_BLOCKS + s];
    norms[k] = sqrt(sum);
}

extern "C" cudaError_t mg_cuda_tensor_norms(const float *d_grad, const mg_cuda_tensors *t, double *d_partial,
                                            double *d_norms, cudaStream_t stream)
{
    if (t->n <= 0 || t->n > MG_CUDA_MAX_TENSORS)
        return cudaErrorInvalidValue;
    k_sum_squares<<<dim3(MG_CUDA_NORM_BLOCKS, t->n), TRAIN_THREADS, 0, stream>>>(d_grad, *t, d_partial);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return e;
    k_norms<<<1, MG_CUDA_MAX_TENSORS, 0, stream>>>(t->n, d_partial, d_norms);
    return cudaGetLastError();
}

/* The scales by value, so that the kernel needs no device copy of them. */
typedef struct tensor_scales {
    float s[MG_CUDA_MAX_TENSORS];
} tensor_scales;

__global__ void __launch_bounds__(TRAIN_THREADS)
k_adam(mg_cuda_tensors t, int normalize, tensor_scales scale, mg_cuda_adam a, const float *__restrict__ grad,
       float *__restrict__ params, float *__restrict__ m, float *__restrict__ v)
{
    const int64_t n = t.offset[t.n - 1] + t.size[t.n - 1];
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float g = grad[i];
        if (normalize) {
            int k = 0;
            while (k + 1 < t.n && i >= t.offset[k + 1])
                k++;
            g *= scale.s[k];
        }
        /* mg_adam_update's expressions, term for term. */
        const float mi = a.b1 * m[i] + (1 - a.b1) * g;
        const float vi = a.b2 * v[i] + (1 - a.b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float p = params[i] - a.decay * params[i];
        p -= a.step_size * mi / (sqrtf(vi) * a.inv_sqrt_c2 + a.eps);
        params[i] = p;
    }
}

extern "C" cudaError_t mg_cuda_adam_update(const mg_cuda_tensors *t, int normalize, const float *scale,
                                           const mg_cuda_adam *a, const float *d_grad, float *d_params, float *d_m,
                                           float *d_v, cudaStream_t stream)
{
    if (t->n <= 0 || t->n > MG_CUDA_MAX_TENSORS)
        return cudaErrorInvalidValue;
    tensor_scales sc = {{0}};
    for (int k = 0; k < t->n; k++)
        sc.s[k] = normalize ? scale[k] : 1.0f;
    const int64_t n = t->offset[t->n - 1] + t->size[t->n - 1];
    int64_t blocks = (n + TRAIN_THREADS - 1) / TRAIN_THREADS;
    if (blocks > 4096)
        blocks = 4096;
    if (blocks < 1)
        return cudaSuccess;
    k_adam<<<(unsigned)blocks, TRAIN_THREADS, 0, stream>>>(*t, normalize, sc, *a, d_grad, d_params, d_m, d_v);
    return cudaGetLastError();
}
