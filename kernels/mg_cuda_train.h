/* C-linkage interface of the training kernels (train_kernels.cu): the pool,
 * the gradient reduction and the optimizer on the device. Pointers named
 * d_* are device memory; launchers enqueue on `stream` and never
 * synchronise. The CPU reference of each is named beside it. */
#ifndef MORPHOGEN_KERNELS_MG_CUDA_TRAIN_H
#define MORPHOGEN_KERNELS_MG_CUDA_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Parameter tensors (the layout's w1, b1, w2) as the optimizer kernels see them. */
#define MG_CUDA_MAX_TENSORS 8
typedef struct mg_cuda_tensors {
    int n;
    int64_t offset[MG_CUDA_MAX_TENSORS], size[MG_CUDA_MAX_TENSORS];
} mg_cuda_tensors;

/* Blocks per tensor of the sum of squares: a constant, so that the
 * summation order (and every bit of the norms) is the same on every GPU. */
#define MG_CUDA_NORM_BLOCKS 64

/* Row i of d_dst = row d_rows[i] of d_src (gather), or row d_rows[i] of
 * d_dst = row i of d_src (scatter), for i < n; rows of `row` floats. A
 * scatter's d_rows must be distinct (the pool's batch positions are:
 * mg_pool_select draws each from its own slice). */
cudaError_t mg_cuda_gather_rows(int n, int64_t row, const int32_t *d_rows, const float *d_src, float *d_dst,
                                cudaStream_t stream);
cudaError_t mg_cuda_scatter_rows(int n, int64_t row, const int32_t *d_rows, const float *d_src, float *d_dst,
                                 cudaStream_t stream);

/* A batch position's action before its rollout: the values of MG_TRAIN_*
 * (morphogen/backend.h; train_cuda.c asserts they agree). */
enum { MG_CUDA_KEEP = 0, MG_CUDA_RESEED = 1, MG_CUDA_DAMAGE = 2 };

/* Each of the n states [n][cells][C]: where d_action[b] is MG_CUDA_RESEED,
 * set to d_seed [cells][C] (mg_seed_state); where MG_CUDA_DAMAGE, zero
 * every cell i with d_mask[b][i] set (mg_zero_cells); else left as is. */
cudaError_t mg_cuda_apply_actions(int n, int cells, int channels, const unsigned char *d_action,
                                  const unsigned char *d_mask, const float *d_seed, float *d_states,
                                  cudaStream_t stream);

/* d_grads [n][len]: row 0 = (the pairwise tree sum of the n rows, in
 * mg_tree_sum's order) * inv_n; the other rows are overwritten with partial
 * sums. Every element is summed by one thread, so the bits are the CPU's. */
cudaError_t mg_cuda_tree_sum_scale(int n, int64_t len, float inv_n, float *d_grads, cudaStream_t stream);

/* d_norms[k] = L2 norm of tensor k of d_grad, the squares summed in double:
 * MG_CUDA_NORM_BLOCKS fixed slices per tensor, each a fixed tree, the slices
 * in order. d_partial is scratch [t->n][MG_CUDA_NORM_BLOCKS]. */
cudaError_t mg_cuda_tensor_norms(const float *d_grad, const mg_cuda_tensors *t, double *d_partial, double *d_norms,
                                 cudaStream_t stream);

/* The per-step Adam constants (mg_adam_coef's fields, in order). */
typedef struct mg_cuda_adam {
    float b1, b2, step_size, inv_sqrt_c2, eps, decay;
} mg_cuda_adam;

/* Scale tensor k of d_grad by scale[k] (when `normalize`; mg_grad_scale_tensors)
 * and take one Adam step on d_params, d_m, d_v (mg_adam_update), in one pass. */
cudaError_t mg_cuda_adam_update(const mg_cuda_tensors *t, int normalize, const float *scale, const mg_cuda_adam *a,
                                const float *d_grad, float *d_params, float *d_m, float *d_v, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
