/* Batch selection, seeds and damage for the sample pool. */
#include <string.h>

#include "morphogen/pool.h"
#include "morphogen/rng.h"

int mg_seed_cell(const mg_config *cfg, const mg_nca_dims *d)
{
    const int x = cfg->seed_x >= 0 ? cfg->seed_x : d->width / 2;
    const int y = cfg->seed_y >= 0 ? cfg->seed_y : d->height / 2;
    return y * d->width + x;
}

void mg_seed_state(const mg_config *cfg, const mg_nca_dims *d, float *state)
{
    const int C = d->channels;
    memset(state, 0, sizeof(float) * (size_t)mg_cells(d) * C);
    float *cell = state + (size_t)mg_seed_cell(cfg, d) * C;
    for (int c = 3; c < C; c++)
        cell[c] = 1.0f;
}

/* Uniform integer in [0, n) from 32 random bits (multiply-shift; the bias is
 * below 2^-32 * n, irrelevant for pool sizes). */
static uint32_t below(uint32_t bits, uint32_t n) { return (uint32_t)(((uint64_t)bits * n) >> 32); }

void mg_pool_slice(int pool_size, int batch, int j, int32_t *first, int32_t *count)
{
    const int64_t lo = (int64_t)j * pool_size / batch, hi = (int64_t)(j + 1) * pool_size / batch;
    *first = (int32_t)lo;
    *count = (int32_t)(hi - lo);
}

void mg_pool_select(uint64_t seed, int64_t iteration, int pool_size, int batch, int32_t *chosen)
{
    for (int j = 0; j < batch; j++) {
        int32_t first, count;
        mg_pool_slice(pool_size, batch, j, &first, &count);
        const uint32_t bits = mg_rng_u32(seed, MG_RNG_BATCH, (uint32_t)iteration, 0, 0, (uint32_t)j);
        chosen[j] = first + (int32_t)below(bits, (uint32_t)count);
    }
}

int mg_rollout_steps(const mg_config *cfg, int64_t iteration)
{
    const uint32_t span = (uint32_t)(cfg->steps_max - cfg->steps_min + 1);
    const uint32_t bits = mg_rng_u32(cfg->seed, MG_RNG_STEPS, (uint32_t)iteration, 0, 0, 0);
    return cfg->steps_min + (int)below(bits, span);
}

void mg_rank_by_loss(const double *loss, int n, int *order)
{
    /* Insertion sort: batches are small. NaN ranks as the worst. */
    for (int i = 0; i < n; i++) {
        int j = i;
        while (j > 0) {
            const double a = loss[order[j - 1]], b = loss[i];
            const int b_worse = (b != b && a == a) || (b > a);
            if (!b_worse)
                break;
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
}

/* The damage disc: centre (cx, cy) and radius r in normalised coordinates. */
typedef struct damage_disc {
    double cx, cy, r;
} damage_disc;

static damage_disc disc_of(const mg_config *cfg, int64_t iteration, int32_t pool_index)
{
    const uint32_t it = (uint32_t)iteration, s = (uint32_t)pool_index;
    damage_disc c;
    c.cx = mg_rng_uniform(cfg->seed, MG_RNG_DAMAGE, it, s, 0, 0) - 0.5;
    c.cy = mg_rng_uniform(cfg->seed, MG_RNG_DAMAGE, it, s, 0, 1) - 0.5;
    c.r = cfg->damage_radius_min +
          (cfg->damage_radius_max - cfg->damage_radius_min) * mg_rng_uniform(cfg->seed, MG_RNG_DAMAGE, it, s, 0, 2);
    return c;
}

static int disc_covers(const damage_disc *c, const mg_nca_dims *d, int y, int x)
{
    /* Normalised coordinates in [-1, 1], as numpy's linspace(-1, 1, n). */
    const double ny = d->height > 1 ? -1.0 + 2.0 * y / (d->height - 1) : 0.0;
    const double nx = d->width > 1 ? -1.0 + 2.0 * x / (d->width - 1) : 0.0;
    return (nx - c->cx) * (nx - c->cx) + (ny - c->cy) * (ny - c->cy) < c->r * c->r;
}

void mg_damage_mask(const mg_config *cfg, const mg_nca_dims *d, int64_t iteration, int32_t pool_index,
                    unsigned char *mask)
{
    const damage_disc c = disc_of(cfg, iteration, pool_index);
    for (int y = 0; y < d->height; y++)
        for (int x = 0; x < d->width; x++)
            mask[(size_t)y * d->width + x] = (unsigned char)disc_covers(&c, d, y, x);
}

void mg_zero_cells(const mg_nca_dims *d, const unsigned char *mask, float *state)
{
    const int C = d->channels;
    for (int64_t i = 0; i < mg_cells(d); i++)
        if (mask[i])
            memset(state + (size_t)i * C, 0, sizeof(float) * C);
}
