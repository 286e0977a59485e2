/* The sample pool and the per-iteration batch recipe (Distill's growing
 * recipe): batch selection, seed replacement of the worst samples, damage of
 * the best. Every decision is keyed by (run seed, iteration, pool index), so
 * the recipe is the same however the pool is later split across ranks. */
#ifndef MORPHOGEN_POOL_H
#define MORPHOGEN_POOL_H

#include <stdint.h>

#include "morphogen/config.h"
#include "morphogen/nca.h"

/* The seed state for a grid: all zero except one cell (seed_x, seed_y, or
 * the centre when -1) whose alpha and hidden channels are 1. */
int mg_seed_cell(const mg_config *cfg, const mg_nca_dims *d);
void mg_seed_state(const mg_config *cfg, const mg_nca_dims *d, float *state);

/* The pool is cut into `batch` fixed logical slices, slice j being
 * [j*P/B, (j+1)*P/B); batch position j draws one sample uniformly from slice
 * j, keyed by (seed, iteration, j). Stratified instead of Distill's draw from
 * the whole pool (the same distribution of samples per batch up to the
 * stratification), so that a rank owning batch positions also owns the pool
 * samples they can touch, whatever the number of ranks. */
void mg_pool_slice(int pool_size, int batch, int j, int32_t *first, int32_t *count);
void mg_pool_select(uint64_t seed, int64_t iteration, int pool_size, int batch, int32_t *chosen);

/* Rollout length for an iteration, uniform in [steps_min, steps_max]. */
int mg_rollout_steps(const mg_config *cfg, int64_t iteration);

/* Rank batch positions by loss: order[0] is the worst (highest loss); ties
 * and NaNs are broken by position so the order is fully determined. */
void mg_rank_by_loss(const double *loss, int n, int *order);

/* Damage (regeneration training) zeroes a random disc of a state: centre
 * uniform in the middle half of the grid, radius uniform in
 * [damage_radius_min, damage_radius_max] in units of half the grid side
 * (Distill's normalised coordinates), keyed by (seed, iteration, pool
 * index). The disc as a mask [cells] (1 = zero this cell), drawn on the
 * host for every backend; and zeroing a state's masked cells. */
void mg_damage_mask(const mg_config *cfg, const mg_nca_dims *d, int64_t iteration, int32_t pool_index,
                    unsigned char *mask);
void mg_zero_cells(const mg_nca_dims *d, const unsigned char *mask, float *state);

#endif
