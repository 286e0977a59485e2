/* Counter-based randomness (Philox4x32-10, Salmon et al. SC'11). Every random
 * decision is a pure function of the run seed and of WHAT is being decided:
 * (purpose, iteration, global sample index, step, cell). Nothing depends on
 * thread order, rank count or backend, so any implementation that evaluates
 * the same counters gets the same bits.
 *
 * Counter layout (4 x 32 bits):
 *   c0 = cell (or element index)      c1 = step | purpose << 24
 *   c2 = global sample index          c3 = iteration
 * Key: the 64-bit run seed, low word first. */
#ifndef MORPHOGEN_RNG_H
#define MORPHOGEN_RNG_H

#include <stdint.h>

typedef enum mg_rng_purpose {
    MG_RNG_FIRE = 1,        /* per cell, per step: does the cell update */
    MG_RNG_BATCH = 2,       /* per iteration: which pool samples form the batch */
    MG_RNG_STEPS = 3,       /* per iteration: rollout length */
    MG_RNG_DAMAGE = 4,      /* per iteration and sample: damage disc */
    MG_RNG_INIT = 5,        /* weight initialisation, c0 = element, c2 = tensor */
    MG_RNG_TEST = 6         /* random inputs in tests and `grad` */
} mg_rng_purpose;

typedef struct mg_philox_out {
    uint32_t v[4];
} mg_philox_out;

mg_philox_out mg_philox4x32(uint64_t seed, uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3);

/* Convenience: first output word for (purpose, iteration, sample, step, cell). */
uint32_t mg_rng_u32(uint64_t seed, mg_rng_purpose purpose, uint32_t iteration,
                    uint32_t sample, uint32_t step, uint32_t cell);

/* Uniform in [0,1) with 24 random bits: (u32 >> 8) * 2^-24 (exact in float). */
double mg_rng_uniform(uint64_t seed, mg_rng_purpose purpose, uint32_t iteration,
                      uint32_t sample, uint32_t step, uint32_t cell);

/* Fire decision threshold: a cell fires iff (u32 >> 8) < mg_fire_threshold(rate).
 * Integer comparison, so CPU and GPU agree bit for bit. */
uint32_t mg_fire_threshold(double fire_rate);

/* Fire mask of one sample at one step: fire[cell] = 0/1 for cells 0..n_cells-1. */
void mg_fire_mask(uint64_t seed, uint32_t iteration, uint32_t sample, uint32_t step,
                  uint32_t threshold, int n_cells, unsigned char *fire);

#endif
