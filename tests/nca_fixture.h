/* Shared helpers for the NCA tests: random but reproducible inputs (keyed by
 * the counter-based RNG, so every run sees the same numbers). States are
 * "alive-ish": alpha is either 0 or well above the alive threshold, so that
 * finite-difference perturbations never flip an alive mask. */
#ifndef MORPHOGEN_TEST_NCA_FIXTURE_H
#define MORPHOGEN_TEST_NCA_FIXTURE_H

#include <stdlib.h>

#include "morphogen/nca.h"
#include "morphogen/rng.h"

static inline double fixture_uniform(uint32_t stream, uint32_t i, double lo, double hi)
{
    return lo + (hi - lo) * mg_rng_uniform(12345, MG_RNG_TEST, 0, stream, 0, i);
}

/* Random live state: each cell alive (alpha in [0.3,1]) with probability
 * `density`, else all-zero; other channels uniform in [-1,1]. */
static inline void fixture_state(const mg_nca_dims *d, uint32_t stream, double density, double *s)
{
    const int C = d->channels;
    for (int cell = 0; cell < mg_cells(d); cell++) {
        const int alive = fixture_uniform(stream, (uint32_t)cell * 1000u + 999u, 0, 1) < density;
        for (int c = 0; c < C; c++) {
            double v = fixture_uniform(stream, (uint32_t)(cell * C + c), -1, 1);
            if (c == 3)
                v = 0.3 + 0.7 * fixture_uniform(stream, (uint32_t)(cell * C + c) + 7777777u, 0, 1);
            s[(size_t)cell * C + c] = alive ? v : 0;
        }
    }
}

/* Random parameters, scaled so that a few steps stay bounded, with ReLUs
 * both active and inactive. */
static inline void fixture_params(const mg_nca_dims *d, uint32_t stream, double *p)
{
    mg_tensor_desc t[3];
    mg_param_layout(d, t);
    const double scale[3] = {0.35, 0.2, 0.25};
    for (int k = 0; k < 3; k++)
        for (int64_t i = 0; i < t[k].size; i++)
            p[t[k].offset + i] = fixture_uniform(stream + 100u * (uint32_t)k, (uint32_t)i, -scale[k], scale[k]);
}

static inline void to_float(const double *in, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (float)in[i];
}

#endif
