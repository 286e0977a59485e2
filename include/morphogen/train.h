/* The trainer: everything an exact resume needs lives in one struct
 * (mg_trainer), written whole to the run file at each checkpoint. */
#ifndef MORPHOGEN_TRAIN_H
#define MORPHOGEN_TRAIN_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "morphogen/backend.h"
#include "morphogen/comm.h"
#include "morphogen/config.h"
#include "morphogen/error.h"
#include "morphogen/runfile.h"

typedef struct mg_trainer {
    mg_config cfg;
    char *config_text, *config_source;
    mg_nca_dims dims;
    int n_targets;
    float *targets;          /* [n_targets][cells][4] */

    int n_tensors;
    mg_tensor_desc tensors[MG_MAX_TENSORS];
    int64_t n_params;
    float *params, *adam_m, *adam_v;
    int64_t adam_step;

    int64_t iteration;       /* iterations completed */
    double wall_time;        /* seconds of training before this session */

    /* This rank's share: batch positions [batch_first, +batch_count) and the
     * pool slices they draw from, samples [pool_first, +pool_count). */
    mg_comm *comm;
    int batch_first, batch_count;
    int64_t pool_first, pool_count;
    float *pool_states;      /* [pool_count][cells][C] */
    float *pool_loss;        /* [pool_count] */
    int32_t *pool_target;    /* [pool_count] */

    int64_t n_metrics, metrics_cap;
    mg_metrics_row *metrics;

    /* per-iteration work buffers */
    int32_t *batch_index;    /* [batch] global pool index of each position */
    int32_t *local_index;    /* [batch_count] index into this rank's pool shard */
    uint32_t *sample_index;  /* [batch_count] */
    int32_t *batch_target;   /* [batch_count] */
    unsigned char *action;   /* [batch_count] MG_TRAIN_* */
    unsigned char *damage;   /* [batch_count][cells] damage discs */
    double *batch_loss;      /* [batch] */
    int *order;              /* [batch] */

    /* Computes the iterations; holds the working copy of params, adam_m,
     * adam_v and pool_states between checkpoints (mg_train_ops). */
    mg_backend *backend;
} mg_trainer;

typedef struct mg_train_options {
    const char *out_path;                /* run file to write */
    const volatile sig_atomic_t *stop;   /* set by a signal handler: checkpoint and stop */
    FILE *log;                           /* progress and messages (stderr) */
    int64_t inject_nan_at;               /* testing hook: loss becomes NaN at this iteration (0 = off) */
    int fail_rank;                       /* testing hook: this rank fails at fail_at (fail_at 0 = off) */
    int64_t fail_at;
    int diverge_rank;                    /* testing hook: this rank flips one bit of one weight at the first */
    int64_t diverge_at;                  /* replica check at or after diverge_at (diverge_at 0 = off) */
} mg_train_options;

/* Check that the job's rank count can share the batch (and so the pool). */
int mg_trainer_check_ranks(const mg_config *cfg, const mg_comm *comm, const char *source, mg_error *err);

/* New run: load the targets named by cfg, initialise weights, Adam and this
 * rank's pool shard. */
int mg_trainer_init(mg_trainer *t, const mg_config *cfg, const char *config_source, mg_comm *comm, mg_error *err);

/* Resume from a run file; `overrides` (--set assignments, may be empty) may
 * only change keys that do not alter the computation so far: train.iterations,
 * train.checkpoint_steps and the [run] section. Returns MG_EXIT_OK, or with
 * err filled MG_EXIT_USAGE (a refused override, a rank count that does not
 * divide the batch) or MG_EXIT_ERROR (an unreadable or inconsistent file). */
int mg_trainer_resume(mg_trainer *t, const char *path, int n_overrides, char **overrides, mg_comm *comm,
                      mg_error *err);

/* Train until cfg.iterations. Returns MG_EXIT_OK, MG_EXIT_NONFINITE,
 * MG_EXIT_INTERRUPTED, or MG_EXIT_ERROR with err filled. */
int mg_trainer_run(mg_trainer *t, const mg_train_options *opt, mg_error *err);

/* One training iteration (the next one). Returns 0, or MG_EXIT_NONFINITE
 * when the loss or a gradient is not finite (nothing is updated then). */
int mg_trainer_step(mg_trainer *t, int64_t inject_nan_at, mg_metrics_row *row, mg_error *err);

/* View of the trainer as a run-file snapshot (no copies; the pool arrays are
 * this rank's shard). Call mg_trainer_sync first: the host arrays are
 * current only after it. */
void mg_trainer_snapshot(const mg_trainer *t, double wall_time, mg_run_snapshot *snap);

/* Bring the host arrays up to date with the backend's working copy
 * (parameters and Adam moments, and the pool when `pool` is set). */
int mg_trainer_sync(mg_trainer *t, int pool, mg_error *err);

void mg_trainer_free(mg_trainer *t);

#endif
