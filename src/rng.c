#include "morphogen/rng.h"

/* Philox4x32 round constants (Random123). */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t *hi)
{
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

mg_philox_out mg_philox4x32(uint64_t seed, uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3)
{
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    uint32_t x0 = c0, x1 = c1, x2 = c2, x3 = c3;
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = mulhilo(PHILOX_M0, x0, &hi0);
        uint32_t lo1 = mulhilo(PHILOX_M1, x2, &hi1);
        uint32_t y0 = hi1 ^ x1 ^ k0;
        uint32_t y1 = lo1;
        uint32_t y2 = hi0 ^ x3 ^ k1;
        uint32_t y3 = lo0;
        x0 = y0; x1 = y1; x2 = y2; x3 = y3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    mg_philox_out out = {{x0, x1, x2, x3}};
    return out;
}

uint32_t mg_rng_u32(uint64_t seed, mg_rng_purpose purpose, uint32_t iteration,
                    uint32_t sample, uint32_t step, uint32_t cell)
{
    return mg_philox4x32(seed, cell, (step & 0xFFFFFFu) | ((uint32_t)purpose << 24),
                         sample, iteration).v[0];
}

double mg_rng_uniform(uint64_t seed, mg_rng_purpose purpose, uint32_t iteration,
                      uint32_t sample, uint32_t step, uint32_t cell)
{
    return (double)(mg_rng_u32(seed, purpose, iteration, sample, step, cell) >> 8) * 0x1p-24;
}

uint32_t mg_fire_threshold(double fire_rate)
{
    if (fire_rate >= 1.0)
        return 1u << 24;
    if (fire_rate <= 0.0)
        return 0;
    return (uint32_t)(fire_rate * 16777216.0 + 0.5);
}

void mg_fire_mask(uint64_t seed, uint32_t iteration, uint32_t sample, uint32_t step,
                  uint32_t threshold, int n_cells, unsigned char *fire)
{
    uint32_t c1 = (step & 0xFFFFFFu) | ((uint32_t)MG_RNG_FIRE << 24);
    for (int cell = 0; cell < n_cells; cell++)
        fire[cell] = (mg_philox4x32(seed, (uint32_t)cell, c1, sample, iteration).v[0] >> 8) < threshold;
}
