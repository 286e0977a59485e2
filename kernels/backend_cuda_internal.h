/* The cuda backend's state, shared by its host-side files: backend_cuda.c
 * (creation, rollouts of a batch) and train_cuda.c (the training state on
 * the device). Not part of any public interface. */
#ifndef MORPHOGEN_KERNELS_BACKEND_CUDA_INTERNAL_H
#define MORPHOGEN_KERNELS_BACKEND_CUDA_INTERNAL_H

#include <cuda_runtime_api.h>

#include "mg_cuda.h"
#include "mg_cuda_train.h"
#include "morphogen/backend.h"
#include "nccl_exchange.h"

/* A rollout of a given length captured into a CUDA graph, with what its
 * kernels' arguments baked in besides buffer addresses. */
typedef struct rollout_graph {
    cudaGraphExec_t exec;    /* NULL: not captured */
    mg_step_rules rules;
    float *d_final;
} rollout_graph;

/* The training state on the device (train_cuda.c), from attach on. */
typedef struct cuda_train {
    int attached;
    mg_train_state s;        /* its host arrays are where sync writes */
    mg_cuda_tensors tensors; /* s's parameter tensors, for the optimizer kernels */
    float *d_pool;           /* [pool_count][cells][C] */
    float *d_all_targets;    /* [n_targets][cells][4] */
    float *d_seed;           /* [cells][C] the seed state */
    float *d_adam_m, *d_adam_v;
    float *d_grads;          /* [batch][n_params]: this rank's positions, then all after exchange */
    int32_t *d_rows;         /* [2][batch_count]: each position's local pool index, then its target */
    unsigned char *d_action; /* [batch_count] MG_TRAIN_* */
    unsigned char *d_damage; /* [batch_count][cells] */
    double *d_norm_partial;  /* [n_tensors][MG_CUDA_NORM_BLOCKS] */
    double *d_norms;         /* [n_tensors] */
    const float *d_final;    /* the batch's final states, in a rollout buffer */
    float *h_stage;          /* [batch][n_params] pinned host staging of an exchange without NCCL */
    int exchange_chosen;     /* the way below has been decided (first exchange) */
    mg_nccl *nccl;           /* NULL: exchange through MPI on the host */
    int use_graphs;          /* replay rollouts from CUDA graphs (MORPHOGEN_CUDA_GRAPHS) */
    rollout_graph *graphs;   /* [max_steps + 1] by rollout length */
} cuda_train;

typedef struct cuda_backend {
    mg_nca_dims dims;
    int max_steps;
    int every;            /* a state is saved every `every` steps (train.checkpoint_steps) */
    int64_t n_params;
    int tf32;             /* the MLP's matrix products on tensor cores (run.matmul = tf32) */
    size_t smem;          /* dynamic shared memory of the MLP kernels (the most either launches with) */
    int keep_partials;    /* fp32 backward sums in shared memory (mg_cuda_fma_keeps_partials) */
    int device;           /* the GPU this backend uses */
    cudaStream_t stream;
    int n_cap;            /* samples the buffers below are sized for (0 = none yet) */
    float *d_params;
    uint32_t *d_iteration;    /* the job's iteration (mg_cuda_step.d_iteration) */
    uint32_t h_iteration;     /* its host copy, alive until the stream is synchronised */
    uint32_t *d_sample_index;
    unsigned char *d_freeze;
    float *d_targets;     /* [n][cells][4] each sample's target */
    float *d_saved;       /* [max_steps/every + 1][n][cells][C] states at multiples of every */
    float *d_segment;     /* [every - 1][n][cells][C] recomputed states of a segment */
    unsigned char *d_alive; /* [max_steps][n][cells] tape bytes of each step (MG_TAPE_*) */
    int *d_mlp_count;       /* [max_steps][n][spans] their MG_TAPE_MLP counts (mg_cuda_tape_step) */
    float *d_mid, *d_ping, *d_pong; /* [n][cells][C] step scratch */
    float *d_grad_a, *d_grad_b;     /* [n][cells][C] gradient ping-pong */
    double *d_loss;       /* [n] */
    float *d_grads;       /* [n_cap][n_params] the batch operation's only (NULL until its first use) */
    mg_cuda_work work;
    size_t peak_tape;
    /* Device memory held: fixed (create), rollout buffers, training state. */
    size_t fixed_bytes, rollout_bytes, train_bytes, peak_device_bytes;
    cuda_train train;
} cuda_backend;

/* Record the device memory now held after a change of one of the parts. */
static inline void mg_cuda_note_memory(cuda_backend *cb)
{
    const size_t now = cb->fixed_bytes + cb->rollout_bytes + cb->train_bytes;
    if (now > cb->peak_device_bytes)
        cb->peak_device_bytes = now;
}

/* The runtime also records a failed call as its "last error", which the
 * launchers' cudaGetLastError would report again at the next, unrelated
 * launch: clear it once it has been reported here. */
static inline void mg_cuda_clear_last_error(void) { (void)cudaGetLastError(); }

static inline int mg_cuda_fail(mg_error *err, cudaError_t e, const char *what)
{
    mg_cuda_clear_last_error();
    return mg_fail(err, "cuda backend: %s: %s", what, cudaGetErrorString(e));
}

#define CK(call, what)                                   \
    do {                                                 \
        const cudaError_t e_ = (call);                   \
        if (e_ != cudaSuccess)                           \
            return mg_cuda_fail(err, e_, what);          \
    } while (0)

static inline size_t mg_cuda_state_floats(const mg_nca_dims *d) { return (size_t)mg_cells(d) * d->channels; }

/* A set of device buffers to allocate together. */
typedef struct mg_cuda_alloc {
    void **ptr;
    size_t bytes;
} mg_cuda_alloc;

/* cudaMalloc each of want[0..n) (at least one byte each), adding the sizes
 * to *total; stops at the first failure and returns it (the runtime's last
 * error cleared), leaving the caller to free the set. */
cudaError_t mg_cuda_alloc_set(const mg_cuda_alloc *want, size_t n, size_t *total);

/* Size the per-sample rollout buffers for n samples (grown, never shrunk);
 * the batch operation's gradient buffer is not one of them. */
int mg_cuda_ensure_capacity(cuda_backend *cb, int n, mg_error *err);

/* Where the rollout of n samples starts: saved state 0 when gradients are
 * taken, else a ping-pong buffer. */
float *mg_cuda_rollout_start(const cuda_backend *cb, int n, int grads);

/* Roll out n samples from mg_cuda_rollout_start(cb, n, d_grads != NULL),
 * with d_params, d_iteration, d_sample_index, d_targets (and d_freeze when
 * the rules have one) in place: losses to d_loss, and unless d_grads is
 * NULL each sample's raw parameter gradient to d_grads [n][n_params].
 * *d_final is the buffer holding the final states, *d_g0 (if not NULL) the
 * one holding dL/ds0. Only kernels and device-to-device operations are
 * enqueued, nothing is synchronised: the whole sequence can be captured
 * into a CUDA graph. */
int mg_cuda_run_rollouts(cuda_backend *cb, int n, int steps, const mg_step_rules *r, uint64_t seed, float *d_grads,
                         float **d_final, float **d_g0, mg_error *err);

/* The step description common to every step of a job. */
mg_cuda_step mg_cuda_step_args(const cuda_backend *cb, int n, const mg_step_rules *r, uint64_t seed);

/* train_cuda.c */
extern const mg_train_ops MG_CUDA_TRAIN_OPS;
void mg_cuda_train_release(cuda_backend *cb);

#endif
