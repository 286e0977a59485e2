/* Launchers shared between the step kernel files (C++ linkage, internal). */
#ifndef MORPHOGEN_KERNELS_STEP_INTERNAL_CUH
#define MORPHOGEN_KERNELS_STEP_INTERNAL_CUH

#include "mg_cuda.h"

/* step_select.cu: the flags of the cells whose MLP runs in the first step
 * of a rollout or segment (forward), the compaction of a step's flags
 * (forward), of the tape's MG_TAPE_MLP bits (backward). */
void mg_cuda_select_forward(const mg_cuda_step *a, const mg_cuda_work *w, const float *d_s_in, cudaStream_t stream);
void mg_cuda_compact_forward(const mg_cuda_step *a, const mg_cuda_work *w, cudaStream_t stream);
cudaError_t mg_cuda_select_backward(const mg_cuda_step *a, const mg_cuda_work *w, mg_cuda_tape_step tape,
                                    cudaStream_t stream);

/* step_tf32.cu: the MLP kernels on tensor cores (run.matmul = tf32). */
size_t mg_cuda_mlp_tf32_smem_bytes(int channels, int hidden);
cudaError_t mg_cuda_mlp_tf32_configure(size_t bytes);
void mg_cuda_mlp_tf32_forward(const mg_cuda_step *a, const mg_cuda_work *w, const float *d_s_in, float *d_s_mid,
                              cudaStream_t stream);
void mg_cuda_mlp_tf32_backward(const mg_cuda_step *a, const mg_cuda_work *w, const float *d_s_in,
                               const float *d_g_out, cudaStream_t stream);

#endif
