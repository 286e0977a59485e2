/* C-linkage interface of the CUDA kernels (the .cu files in kernels/) to their host side
 * (kernels/backend_cuda.c) and to the tests. Every pointer named d_* is device
 * memory. Launchers enqueue work on `stream` and return the launch status
 * (cudaSuccess or the error); they never synchronise.
 *
 * Layouts are the CPU reference's (include/morphogen/nca.h), batched over
 * samples: states [n][cells][C], masks [n][cells] (one byte per cell),
 * parameters w1 [3C][H] | b1 [H] | w2 [H][C]. */
#ifndef MORPHOGEN_KERNELS_MG_CUDA_H
#define MORPHOGEN_KERNELS_MG_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Cells per tile of the fused MLP kernels, threads per block, and blocks per
 * sample of those kernels. The block count is a constant (not derived from
 * the device) so that the fixed-order weight-gradient reduction, and hence
 * every bit of the results, is the same on every GPU. */
#define MG_CUDA_TILE 32
#define MG_CUDA_THREADS 256
#define MG_CUDA_GROUPS 32

/* Parameters of the model (w1 [3C][H] | b1 [H] | w2 [H][C]): the length of
 * each sample's gradient and of a block's d_partial slice. */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline size_t mg_cuda_n_params(int channels, int hidden)
{
    return (size_t)3 * channels * hidden + (size_t)hidden + (size_t)hidden * channels;
}

/* What one batched step needs besides the states. */
typedef struct mg_cuda_step {
    int n;                          /* samples */
    int height, width, channels, hidden;
    uint64_t seed;
    /* The iteration (fire-mask key) in device memory, not by value, so that
     * a CUDA graph of a rollout replays unchanged at every iteration. */
    const uint32_t *d_iteration;
    const uint32_t *d_sample_index; /* [n] global sample index (fire-mask key) */
    int step;                       /* CA step number (fire-mask key) */
    uint32_t fire_threshold;        /* mg_fire_threshold(fire_rate) */
    float alive_threshold;          /* (float)alive_threshold, as the f32 CPU build compares */
    int pin_cell;                   /* -1 for none */
    const unsigned char *d_freeze;  /* [cells] MG_CELL_* or NULL */
    const float *d_params;
    int tf32;                       /* 1: the MLP's matrix products on tensor cores (step_tf32.cu) */
    int keep_partials;              /* fp32: k_mlp_backward sums in shared memory (mg_cuda_fma_keeps_partials) */
} mg_cuda_step;

/* Cells per flag count. The kernels that write a step's flags (the
 * forward's MLP flags, the tape's MG_TAPE_MLP bits) also write how many are
 * set in each span of MG_CUDA_SPAN_CELLS cells of a sample, so that the
 * compaction finds where each of its chunks starts in the list from a few
 * counts, not by reading every flag before the chunk again. */
#define MG_CUDA_SPAN_CELLS 256

#ifdef __CUDACC__
__host__ __device__
#endif
static inline int mg_cuda_spans(int cells) { return (cells + MG_CUDA_SPAN_CELLS - 1) / MG_CUDA_SPAN_CELLS; }

/* Scratch shared by the step kernels, sized for n samples. */
typedef struct mg_cuda_work {
    unsigned char *d_pre;   /* [2][n][cells] pre-update alive mask, by step parity */
    unsigned char *d_flag;  /* [2][n][cells] cell runs the MLP (forward), by step parity */
    int *d_flag_count;      /* [2][n][mg_cuda_spans(cells)] d_flag's set cells per span, by step parity */
    int *d_active;          /* [n][cells] compacted cell indices, ascending */
    int *d_count;           /* [n] number of active cells */
    float *d_gp;            /* [n][cells][3C] dL/d(perception) of active cells */
    float *d_partial;       /* [n][MG_CUDA_GROUPS][n_params] per-block weight-gradient sums */
} mg_cuda_work;

/* Dynamic shared memory of the MLP kernels for C channels and H hidden units,
 * of the FMA kernels (tf32 = 0) or the tensor-core ones (tf32 = 1). */
size_t mg_cuda_mlp_smem_bytes(int channels, int hidden, int tf32);

/* 1 if the FMA backward kernel can keep its block's weight-gradient sums in
 * shared memory across its cell tiles (set mg_cuda_step.keep_partials and
 * configure mg_cuda_mlp_smem_bytes + the n_params floats of those sums), on a
 * GPU allowing smem_optin bytes per block; else it adds them to d_partial
 * per tile. Both give the same bits. */
int mg_cuda_fma_keeps_partials(int channels, int hidden, int smem_optin);

/* Allow the MLP kernels of that kind `bytes` of dynamic shared memory (above
 * the 48 KiB default; must not exceed the device's opt-in limit). The
 * setting is the kernels' on the current device, for every caller in the
 * process. */
cudaError_t mg_cuda_mlp_configure(size_t bytes, int tf32);

/* Whether the driver finds code in this build for the current GPU: the
 * attributes of one kernel, which loads it (cudaErrorNoKernelImageForDevice
 * or another error when it cannot). The backend asks before anything else
 * touches a kernel. */
cudaError_t mg_cuda_probe_kernels(void);

/* Weight-gradient tiles each warp of the tensor-core backward kernel keeps
 * in registers across its block's cell tiles for C channels and H hidden
 * units: 4 or 8, or 0 when they would not fit (step_tf32.cu). */
int mg_cuda_tf32_grad_frags(int channels, int hidden);

/* The tape's byte per cell and step (d_alive_out below): bit 0 the step's
 * mask m; bit 1 whether the cell carries a gradient into the MLP backward
 * (m, fired, not frozen: the forward's MLP flag and m, since m implies alive
 * before the step or pinned), so that the backward step needs no selection
 * pass of its own. */
#define MG_TAPE_ALIVE 1u
#define MG_TAPE_MLP 2u

/* One step of the tape: the tape bytes of n samples [n][cells] and how many
 * of them have MG_TAPE_MLP in each span of MG_CUDA_SPAN_CELLS cells
 * [n][mg_cuda_spans(cells)]. */
typedef struct mg_cuda_tape_step {
    unsigned char *d_alive;
    int *d_mlp_count;
} mg_cuda_tape_step;

/* One step forward for n samples: d_s_out = m * (d_s_in + f * du) exactly as
 * mg_step_forward_f32. d_s_mid is scratch [n][cells][C] (d_s_in + f * du before
 * masking, written for the cells whose MLP runs); `tape` receives the step's
 * tape bytes and counts unless its d_alive is NULL. Each step selects the
 * cells of the next (step a->step + 1) from its output; `first` (the first
 * step of a rollout, or of a recomputed segment) selects this step's too. */
cudaError_t mg_cuda_step_forward(const mg_cuda_step *a, const mg_cuda_work *w, const float *d_s_in,
                                 float *d_s_mid, float *d_s_out, mg_cuda_tape_step tape, int first,
                                 cudaStream_t stream);

/* One step backward for n samples, as mg_step_backward_f32: from d_s_in (the
 * step's input state), its tape (as the forward wrote it) and d_g_out =
 * dL/ds_out, write d_g_in = dL/ds_in and ADD this step's weight gradient
 * into w->d_partial. */
cudaError_t mg_cuda_step_backward(const mg_cuda_step *a, const mg_cuda_work *w, const float *d_s_in,
                                  mg_cuda_tape_step tape, const float *d_g_out, float *d_g_in,
                                  cudaStream_t stream);

/* d_grads[b][p] = sum over g in 0..MG_CUDA_GROUPS-1, in that order, of
 * w->d_partial[b][g][p]. */
cudaError_t mg_cuda_reduce_partials(const mg_cuda_step *a, const mg_cuda_work *w, float *d_grads,
                                    cudaStream_t stream);

/* Per-sample loss (mean squared RGBA error, summed in double in a fixed
 * order) into d_loss [n], and unless d_g is NULL d_g = dLoss_b/ds [n][cells][C]
 * as mg_loss_f32 with scale 1. */
cudaError_t mg_cuda_loss(int n, int cells, int channels, const float *d_s, const float *d_targets,
                         double *d_loss, float *d_g, cudaStream_t stream);

/* d_active[b][0..d_count[b]) = the cells c of sample b (ascending) whose
 * d_flags[b][c] has bit `bit` set, for b < n: the list the MLP kernels
 * work through. d_span_counts [n][mg_cuda_spans(cells)] must hold, for
 * each sample b and span r, the number of such cells among the span's
 * cells r * MG_CUDA_SPAN_CELLS .. (r + 1) * MG_CUDA_SPAN_CELLS - 1 (fewer
 * in the last span); other counts give another list. For the tests; the
 * step launchers call it. */
cudaError_t mg_cuda_compact(int n, int cells, const unsigned char *d_flags, unsigned bit, const int *d_span_counts,
                            int *d_active, int *d_count, cudaStream_t stream);

/* Fire mask of one sample at one step into d_fire [n_cells], bit-identical
 * to mg_fire_mask (for the tests). */
cudaError_t mg_cuda_fire_mask(uint64_t seed, uint32_t iteration, uint32_t sample, uint32_t step,
                              uint32_t threshold, int n_cells, unsigned char *d_fire, cudaStream_t stream);

/* Host side (backend_cuda.c): 1 if the CUDA runtime finds a device; else 0
 * with the runtime's reason in why[why_len]. */
int mg_cuda_device_available(char *why, size_t why_len);

#ifdef __cplusplus
}
#endif

#endif
