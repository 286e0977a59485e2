/* One NCA step backward on one sample. The fire and alive masks are
 * recomputed/recorded constants; only cells with m = 1 that fired and are not
 * frozen carry a gradient into the MLP, so only those are recomputed (their
 * perception and pre-activations) and backpropagated. */
#include <string.h>

#include "dense.h"
#include "perceive.h"
#include "scratch.h"
#include "step_backward.h"

void MG_FN(mg_step_backward_begin)(const mg_nca_dims *d, const real *params, const real *g_params, void *scratch)
{
    const int C = d->channels, K = mg_perception_size(d), H = d->hidden;
    const real *w1 = params, *w2 = params + (size_t)K * H + H;
    step_scratch ws = carve_scratch(d, scratch);
    for (int h = 0; h < H; h++) {
        for (int k = 0; k < K; k++) {
            ws.w1t[(size_t)h * K + k] = w1[(size_t)k * H + h];
            ws.gw1t[(size_t)h * K + k] = g_params[(size_t)k * H + h];
        }
        for (int c = 0; c < C; c++)
            ws.w2t[(size_t)c * H + h] = w2[(size_t)h * C + c];
    }
}

void MG_FN(mg_step_backward_end)(const mg_nca_dims *d, real *g_params, void *scratch)
{
    const int K = mg_perception_size(d), H = d->hidden;
    step_scratch ws = carve_scratch(d, scratch);
    for (int k = 0; k < K; k++)
        for (int h = 0; h < H; h++)
            g_params[(size_t)k * H + h] = ws.gw1t[(size_t)h * K + k];
}

void MG_FN(mg_step_backward_run)(const mg_nca_dims *d, const mg_step_rules *r, const real *params,
                                 const real *s_in, const unsigned char *fire, const unsigned char *alive,
                                 const real *g_out, real *g_in, real *g_params, void *scratch)
{
    const int cells = mg_cells(d), C = d->channels, K = mg_perception_size(d), H = d->hidden;
    const real *w1 = params, *b1 = params + (size_t)K * H;
    real *gb1 = g_params + (size_t)K * H, *gw2 = gb1 + H;
    step_scratch ws = carve_scratch(d, scratch);
    const unsigned char *freeze = r->freeze;

    /* s_out = m * (s_in + f * du): the identity path carries m * g_out. */
    int n_active = 0;
    for (int cell = 0; cell < cells; cell++) {
        real *gi = g_in + (size_t)cell * C;
        if (alive[cell]) {
            memcpy(gi, g_out + (size_t)cell * C, sizeof(real) * C);
            const int frozen = freeze && freeze[cell] == MG_CELL_FROZEN;
            if (fire[cell] && !frozen)
                ws.active[n_active++] = cell;
        } else {
            memset(gi, 0, sizeof(real) * C);
        }
    }

    for (int first = 0; first < n_active; first += MG_TILE) {
        const int n = n_active - first < MG_TILE ? n_active - first : MG_TILE;
        for (int i = 0; i < n; i++) {
            const int cell = ws.active[first + i];
            perceive_cell(d, s_in, cell / d->width, cell % d->width, ws.p + (size_t)i * K);
            /* dL/du = m * g_out for the channels the update reaches. */
            const int c0 = freeze && freeze[cell] == MG_CELL_FROZEN_RGBA ? 4 : 0;
            real *gu = ws.u + (size_t)i * C;
            const real *go = g_out + (size_t)cell * C;
            for (int c = 0; c < C; c++)
                gu[c] = c < c0 ? 0 : go[c];
        }
        dense_hidden(n, K, H, ws.p, w1, b1, ws.z);
        dense_backward(n, K, H, C, ws.p, ws.z, ws.u, ws.w1t, ws.w2t, ws.r, ws.gz, ws.gp, ws.gw1t, gb1, gw2);
        for (int i = 0; i < n; i++) {
            const int cell = ws.active[first + i];
            perceive_cell_transpose(d, ws.gp + (size_t)i * K, cell / d->width, cell % d->width, g_in);
        }
    }
}

void MG_FN(mg_step_backward)(const mg_nca_dims *d, const mg_step_rules *r, const real *params,
                             const real *s_in, const unsigned char *fire, const unsigned char *alive,
                             const real *g_out, real *g_in, real *g_params, void *scratch)
{
    MG_FN(mg_step_backward_begin)(d, params, g_params, scratch);
    MG_FN(mg_step_backward_run)(d, r, params, s_in, fire, alive, g_out, g_in, g_params, scratch);
    MG_FN(mg_step_backward_end)(d, g_params, scratch);
}
