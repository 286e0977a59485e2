/* Compute backends (ggml-style: one small interface, several implementations
 * behind it). A backend runs the rollouts and gradients of a batch of
 * samples; the trainer owns the pool, the optimizer and the communicator.
 * "cpu" is the reference; "cuda" (kernels/) must match it. */
#ifndef MORPHOGEN_BACKEND_H
#define MORPHOGEN_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "morphogen/comm.h"
#include "morphogen/config.h"
#include "morphogen/error.h"
#include "morphogen/nca.h"
#include "morphogen/runfile.h"

/* Rollouts + loss + backward for n samples. Each sample b starts from
 * states[b], is rolled `steps` steps with randomness keyed by
 * (seed, iteration, sample_index[b]), and its loss against
 * targets[target_index[b]] is written to loss[b]. grads[b] receives the raw
 * gradient of THAT sample's loss w.r.t. the parameters (not averaged), so the
 * caller can reduce in a fixed order. */
typedef struct mg_batch_job {
    mg_nca_dims dims;
    mg_step_rules rules;
    uint64_t seed;
    uint32_t iteration;
    int steps;
    int n;                        /* samples in this job */
    const uint32_t *sample_index; /* [n] global sample index (RNG key) */
    const int32_t *target_index;  /* [n] */
    const float *targets;         /* [n_targets][cells][4] */
    const float *params;          /* [n_params] */
    int64_t n_params;
    float *states;                /* [n][cells][C]: in initial, out final */
    double *loss;                 /* [n] */
    float *grads;                 /* [n][n_params], or NULL for forward only */
    float *grad_states;           /* [n][cells][C] dL_b/ds0_b, or NULL */
} mg_batch_job;

/* A forward-only rollout of one sample that reports frames: frame_cb is
 * called with the state after each step in `frame_steps` (ascending, may
 * include 0 for the initial state). */
typedef int (*mg_frame_cb)(void *ctx, int step, const float *state, mg_error *err);

typedef struct mg_rollout_job {
    mg_nca_dims dims;
    mg_step_rules rules;
    uint64_t seed;
    uint32_t iteration, sample_index;
    int steps;
    const float *params;
    float *state;                 /* [cells][C]: in initial, out final */
    mg_frame_cb frame_cb;         /* may be NULL */
    void *frame_ctx;
} mg_rollout_job;

/* Training with its state resident in the backend. The trainer makes every
 * decision of the recipe (which samples, which to reseed or damage, the
 * learning rate) and owns host copies of the state for checkpoints; the
 * backend keeps the working copy where it computes (the GPU's memory for
 * cuda, the trainer's own arrays for cpu) from train_attach on, so that an
 * iteration moves only indices, masks and a few numbers between them. */
typedef struct mg_train_state {
    const mg_config *cfg;
    mg_nca_dims dims;
    int n_tensors;
    const mg_tensor_desc *tensors;
    int64_t n_params;
    float *params, *adam_m, *adam_v; /* [n_params] host copies, written by train_sync */
    int64_t pool_count;
    float *pool_states;              /* [pool_count][cells][C] this rank's shard, written by train_sync */
    int n_targets;
    const float *targets;            /* [n_targets][cells][4] */
    int batch, batch_first, batch_count; /* the global batch and this rank's positions in it */
    mg_comm *comm;
} mg_train_state;

/* What a position of this rank's share of the batch does before its rollout. */
enum { MG_TRAIN_KEEP = 0, MG_TRAIN_RESEED = 1, MG_TRAIN_DAMAGE = 2 };

/* One iteration of this rank's share (batch_count positions). */
typedef struct mg_train_batch {
    uint32_t iteration;
    int steps;
    mg_step_rules rules;
    const int32_t *local_index;      /* [batch_count] sample of the pool shard */
    const uint32_t *sample_index;    /* [batch_count] global pool index (RNG key) */
    const int32_t *target_index;     /* [batch_count] */
    const unsigned char *action;     /* [batch_count] MG_TRAIN_* (train_rollouts) */
    const unsigned char *damage;     /* [batch_count][cells] cells to zero where action is DAMAGE */
} mg_train_batch;

typedef struct mg_backend mg_backend;

/* The training operations, in the order of an iteration: gather, (the
 * trainer ranks the batch), rollouts, exchange, reduce, (the trainer checks
 * for non-finite values), apply. Each returns 0, or -1 with err filled. */
typedef struct mg_train_ops {
    /* Take the state (copied to the device by cuda); valid until destroy. */
    int (*attach)(mg_backend *be, const mg_train_state *s, mg_error *err);
    /* Copy each position's pool sample into the batch and write its loss
     * against its target to loss[batch_count]. */
    int (*gather)(mg_backend *be, const mg_train_batch *b, double *loss, mg_error *err);
    /* Apply the actions, roll out, and write the final losses to
     * loss[batch_count]; keeps each position's raw parameter gradient. */
    int (*rollouts)(mg_backend *be, const mg_train_batch *b, double *loss, mg_error *err);
    /* Every rank receives every position's gradient (all-gather). */
    int (*exchange)(mg_backend *be, mg_error *err);
    /* Sum the batch's gradients in mg_tree_sum's order, divide by the batch,
     * and write each tensor's L2 norm to norms[n_tensors]. */
    int (*reduce)(mg_backend *be, double *norms, mg_error *err);
    /* Normalise (train.grad_normalize) with those norms, take the Adam step
     * (1-based `adam_step`, learning rate lr), and put the batch's final
     * states back into the pool. */
    int (*apply)(mg_backend *be, const mg_train_batch *b, const double *norms, double lr, int64_t adam_step,
                 mg_error *err);
    /* Write the working copy back into the state's host arrays: parameters
     * and Adam moments, and the pool when `pool` is set. */
    int (*sync)(mg_backend *be, int pool, mg_error *err);
} mg_train_ops;

typedef struct mg_backend_ops {
    const char *name;
    int (*batch)(mg_backend *be, const mg_batch_job *job, mg_error *err);
    int (*rollout)(mg_backend *be, const mg_rollout_job *job, mg_error *err);
    /* Peak bytes of rollout storage (tape) used so far, for memory reports. */
    size_t (*peak_tape_bytes)(const mg_backend *be);
    void (*destroy)(mg_backend *be);
    const mg_train_ops *train;
    /* Peak bytes this backend has held in accelerator memory (0 for cpu). */
    size_t (*peak_device_bytes)(const mg_backend *be);
} mg_backend_ops;

struct mg_backend {
    const mg_backend_ops *ops;
    void *impl;
};

/* Create the backend named cfg->backend for the given grid; max_steps bounds
 * rollout length (tape size). `comm` (NULL outside a training job) places
 * the backend among the job's ranks: cuda takes the node's GPUs in turn. */
mg_backend *mg_backend_create(const mg_config *cfg, const mg_nca_dims *dims, int max_steps, const mg_comm *comm,
                              mg_error *err);
void mg_backend_destroy(mg_backend *be);

/* Implementations. */
mg_backend *mg_backend_cpu_create(const mg_config *cfg, const mg_nca_dims *dims, int max_steps, mg_error *err);
/* kernels/backend_cuda.c: fails with one line when no CUDA device is usable.
 * In a build without CUDA, src/absent/backend_cuda_absent.c: always fails,
 * saying so. */
mg_backend *mg_backend_cuda_create(const mg_config *cfg, const mg_nca_dims *dims, int max_steps, const mg_comm *comm,
                                   mg_error *err);

#endif
