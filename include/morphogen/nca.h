/* The NCA math on one sample, CPU reference. Every function exists in two
 * precisions compiled from the same source (the files in src/nca): `_f32` for
 * training and `_f64` for finite-difference checks of exactly that code.
 *
 * Layouts (see README "The model, exactly"):
 *   state   [height][width][channels], channel fastest
 *   params  flat vector: w1 [3C][H] | b1 [H] | w2 [H][C]  (mg_param_layout)
 *   masks   one byte per cell, row-major */
#ifndef MORPHOGEN_NCA_H
#define MORPHOGEN_NCA_H

#include <stddef.h>
#include <stdint.h>

#include "morphogen/runfile.h" /* mg_tensor_desc */

typedef struct mg_nca_dims {
    int height, width, channels, hidden;
} mg_nca_dims;

/* Per-cell freeze mask values (NULL mask = all free). */
enum {
    MG_CELL_FREE = 0,
    MG_CELL_FROZEN = 1,      /* whole state fixed: no update, never killed */
    MG_CELL_FROZEN_RGBA = 2  /* RGBA fixed, hidden channels update */
};

typedef struct mg_step_rules {
    uint32_t fire_threshold;   /* mg_fire_threshold(fire_rate) */
    double alive_threshold;
    int pin_cell;              /* cell forced alive every step, -1 for none */
    const unsigned char *freeze; /* [cells] or NULL */
} mg_step_rules;

/* Where a rollout's random numbers come from (see rng.h). */
typedef struct mg_rollout_key {
    uint64_t seed;
    uint32_t iteration;
    uint32_t sample;           /* global sample index */
} mg_rollout_key;

/* Cells per tile of the dense layers (see src/nca/scratch.h). */
#define MG_NCA_TILE 32

static inline int mg_cells(const mg_nca_dims *d) { return d->height * d->width; }
static inline int mg_perception_size(const mg_nca_dims *d) { return 3 * d->channels; }

/* Parameter tensors w1, b1, w2; fills out[0..2], returns the total count. */
int64_t mg_param_layout(const mg_nca_dims *d, mg_tensor_desc out[3]);

/* Number of bytes of scratch a step needs (per thread). */
size_t mg_nca_scratch_bytes(const mg_nca_dims *d);

#define MG_NCA_DECLARE(real, sfx)                                                        \
    /* One step forward. alive_out (nullable) receives the mask m of the step. */       \
    void mg_step_forward_##sfx(const mg_nca_dims *d, const mg_step_rules *r,             \
                               const real *params, const real *s_in,                    \
                               const unsigned char *fire, real *s_out,                  \
                               unsigned char *alive_out, void *scratch);                \
    /* One step backward: given s_in, the fire mask and the step's alive mask,         \
     * and g_out = dL/ds_out, write g_in = dL/ds_in and ADD dL/dparams to g_params. */ \
    void mg_step_backward_##sfx(const mg_nca_dims *d, const mg_step_rules *r,            \
                                const real *params, const real *s_in,                   \
                                const unsigned char *fire, const unsigned char *alive,  \
                                const real *g_out, real *g_in, real *g_params,          \
                                void *scratch);                                         \
    /* Perception of the whole grid, [cells][3C] (used by tests and tools). */          \
    void mg_perceive_grid_##sfx(const mg_nca_dims *d, const real *s, real *p);           \
    /* Loss of one sample against a premultiplied RGBA target [cells][4]; if g_s is     \
     * not NULL it is overwritten with scale * dLoss/ds. */                              \
    double mg_loss_##sfx(const mg_nca_dims *d, const real *s, const float *target,      \
                         real *g_s, double scale);

MG_NCA_DECLARE(float, f32)
MG_NCA_DECLARE(double, f64)

/* A rollout that can be differentiated: keeps what the backward pass cannot
 * cheaply recompute. States at every `checkpoint_steps`-th step (every step
 * when 0 or 1) are stored packed (only cells alive at that step take space),
 * plus one alive mask byte per cell and step; with checkpointing the states
 * in between are recomputed segment by segment during backward, giving
 * bit-identical results. */
typedef struct mg_tape mg_tape;

#define MG_ROLLOUT_DECLARE(real, sfx)                                                    \
    mg_tape *mg_tape_create_##sfx(const mg_nca_dims *d, int max_steps,                   \
                                  int checkpoint_steps);                                \
    void mg_tape_destroy_##sfx(mg_tape *t);                                              \
    /* Bytes of state storage the last rollout used (for memory reports). */            \
    size_t mg_tape_bytes_used_##sfx(const mg_tape *t);                                   \
    /* Roll s0 forward `steps` steps into s_final, recording on the tape. */            \
    int mg_rollout_forward_##sfx(mg_tape *t, const mg_step_rules *r,                     \
                                 const mg_rollout_key *key, const real *params,         \
                                 int steps, const real *s0, real *s_final);             \
    /* Backpropagate g_final = dL/ds_final through the recorded rollout: ADD            \
     * dL/dparams into g_params; write dL/ds0 into g_s0 unless it is NULL. */           \
    void mg_rollout_backward_##sfx(mg_tape *t, const mg_step_rules *r,                   \
                                   const mg_rollout_key *key, const real *params,       \
                                   const real *g_final, real *g_s0, real *g_params);

MG_ROLLOUT_DECLARE(float, f32)
MG_ROLLOUT_DECLARE(double, f64)

#endif
