/* Compute backends (ggml-style: one small interface, several implementations
 * behind it). A backend runs the rollouts and gradients of a batch of
 * samples; the trainer owns the pool, the optimizer and the communicator.
 * "cpu" is the reference; "cuda" (kernels/) must match it. */
#ifndef MORPHOGEN_BACKEND_H
#define MORPHOGEN_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "morphogen/config.h"
#include "morphogen/error.h"
#include "morphogen/nca.h"

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

typedef struct mg_backend mg_backend;

typedef struct mg_backend_ops {
    const char *name;
    int (*batch)(mg_backend *be, const mg_batch_job *job, mg_error *err);
    int (*rollout)(mg_backend *be, const mg_rollout_job *job, mg_error *err);
    /* Peak bytes of rollout storage (tape) used so far, for memory reports. */
    size_t (*peak_tape_bytes)(const mg_backend *be);
    void (*destroy)(mg_backend *be);
} mg_backend_ops;

struct mg_backend {
    const mg_backend_ops *ops;
    void *impl;
};

/* Create the backend named cfg->backend for the given grid; max_steps bounds
 * rollout length (tape size). */
mg_backend *mg_backend_create(const mg_config *cfg, const mg_nca_dims *dims, int max_steps, mg_error *err);
void mg_backend_destroy(mg_backend *be);

/* Implementations. */
mg_backend *mg_backend_cpu_create(const mg_config *cfg, const mg_nca_dims *dims, int max_steps, mg_error *err);
/* kernels/backend_cuda.c: fails with one line when no CUDA device is usable.
 * In a build without CUDA, src/absent/backend_cuda_absent.c: always fails,
 * saying so. */
mg_backend *mg_backend_cuda_create(const mg_config *cfg, const mg_nca_dims *dims, int max_steps, mg_error *err);

#endif
