/* Philox4x32-10 on the device: the same function as mg_philox4x32
 * (src/rng.c), so a fire mask computed here is bit-identical to the CPU's.
 * Only integer operations: no rounding, nothing to differ. */
#ifndef MORPHOGEN_KERNELS_PHILOX_CUH
#define MORPHOGEN_KERNELS_PHILOX_CUH

#include <stdint.h>

#define MG_PHILOX_M0 0xD2511F53u
#define MG_PHILOX_M1 0xCD9E8D57u
#define MG_PHILOX_W0 0x9E3779B9u
#define MG_PHILOX_W1 0xBB67AE85u
#define MG_RNG_FIRE_PURPOSE 1u /* MG_RNG_FIRE in include/morphogen/rng.h */

/* First output word of Philox4x32-10 for counter (c0, c1, c2, c3) and the
 * 64-bit key `seed` (low word first). */
__device__ __forceinline__ uint32_t mg_philox_word0(uint64_t seed, uint32_t c0, uint32_t c1, uint32_t c2,
                                                    uint32_t c3)
{
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    uint32_t x0 = c0, x1 = c1, x2 = c2, x3 = c3;
#pragma unroll
    for (int round = 0; round < 10; round++) {
        const uint32_t hi0 = __umulhi(MG_PHILOX_M0, x0), lo0 = MG_PHILOX_M0 * x0;
        const uint32_t hi1 = __umulhi(MG_PHILOX_M1, x2), lo1 = MG_PHILOX_M1 * x2;
        x0 = hi1 ^ x1 ^ k0;
        x1 = lo1;
        x2 = hi0 ^ x3 ^ k1;
        x3 = lo0;
        k0 += MG_PHILOX_W0;
        k1 += MG_PHILOX_W1;
    }
    return x0;
}

/* mg_fire_mask's decision for one cell: counter (cell, step | FIRE << 24,
 * sample, iteration); fires iff the top 24 bits are below the threshold. */
__device__ __forceinline__ bool mg_fires(uint64_t seed, uint32_t iteration, uint32_t sample, uint32_t step,
                                         uint32_t threshold, uint32_t cell)
{
    const uint32_t c1 = (step & 0xFFFFFFu) | (MG_RNG_FIRE_PURPOSE << 24);
    return (mg_philox_word0(seed, cell, c1, sample, iteration) >> 8) < threshold;
}

#endif
