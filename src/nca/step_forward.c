/* One NCA step forward on one sample (see README "The model, exactly").
 * Exact sparsity: the MLP runs only for cells that fire and can survive the
 * step (alive before it, pinned, or not frozen); every other cell's update
 * would be discarded by the fire or alive mask anyway. */
#include <string.h>

#include "dense.h"
#include "perceive.h"
#include "scratch.h"

void MG_FN(mg_step_forward)(const mg_nca_dims *d, const mg_step_rules *r, const real *params,
                            const real *s_in, const unsigned char *fire, real *s_out,
                            unsigned char *alive_out, void *scratch)
{
    const int cells = mg_cells(d), C = d->channels, K = mg_perception_size(d), H = d->hidden;
    const real *w1 = params, *b1 = params + (size_t)K * H, *w2 = b1 + H;
    step_scratch ws = carve_scratch(d, scratch);
    const unsigned char *freeze = r->freeze;

    alive_pool(d, s_in, r->alive_threshold, ws.rowmax, ws.pre);
    memcpy(s_out, s_in, sizeof(real) * (size_t)cells * C);

    int n_active = 0;
    for (int cell = 0; cell < cells; cell++) {
        const int frozen = freeze && freeze[cell] == MG_CELL_FROZEN;
        if (fire[cell] && !frozen && (ws.pre[cell] || cell == r->pin_cell))
            ws.active[n_active++] = cell;
    }

    for (int first = 0; first < n_active; first += MG_TILE) {
        const int n = n_active - first < MG_TILE ? n_active - first : MG_TILE;
        for (int i = 0; i < n; i++) {
            const int cell = ws.active[first + i];
            perceive_cell(d, s_in, cell / d->width, cell % d->width, ws.p + (size_t)i * K);
        }
        dense_hidden(n, K, H, ws.p, w1, b1, ws.z);
        dense_output(n, H, C, ws.z, w2, ws.r, ws.u);
        for (int i = 0; i < n; i++) {
            const int cell = ws.active[first + i];
            const int c0 = freeze && freeze[cell] == MG_CELL_FROZEN_RGBA ? 4 : 0;
            real *restrict out = s_out + (size_t)cell * C;
            const real *restrict du = ws.u + (size_t)i * C;
            for (int c = c0; c < C; c++)
                out[c] += du[c];
        }
    }

    /* The post-update mask goes to alive_out, or when the caller does not
     * want it, into the (now unused) active list's memory. */
    unsigned char *m = alive_out ? alive_out : (unsigned char *)ws.active;
    alive_pool(d, s_out, r->alive_threshold, ws.rowmax, m);
    for (int cell = 0; cell < cells; cell++) {
        const int frozen = freeze && freeze[cell] == MG_CELL_FROZEN;
        m[cell] = (m[cell] && ws.pre[cell]) || cell == r->pin_cell || frozen;
        if (!m[cell])
            memset(s_out + (size_t)cell * C, 0, sizeof(real) * C);
    }
}
