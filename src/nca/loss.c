/* Per-sample loss: mean squared error of premultiplied RGBA against the
 * target, over all cells and the 4 colour channels. The sum runs in double in
 * both precisions so the reported loss does not depend on the build. */
#include "perceive.h"

double MG_FN(mg_loss)(const mg_nca_dims *d, const real *s, const float *target, real *g_s, double scale)
{
    const int cells = mg_cells(d), C = d->channels;
    const double norm = 1.0 / (4.0 * cells);
    double sum = 0;
    for (int cell = 0; cell < cells; cell++) {
        const real *sc = s + (size_t)cell * C;
        const float *tc = target + (size_t)cell * 4;
        for (int c = 0; c < 4; c++) {
            const double diff = (double)sc[c] - (double)tc[c];
            sum += diff * diff;
        }
        if (g_s) {
            real *gc = g_s + (size_t)cell * C;
            for (int c = 0; c < 4; c++)
                gc[c] = (real)(2.0 * norm * scale * ((double)sc[c] - (double)tc[c]));
            for (int c = 4; c < C; c++)
                gc[c] = 0;
        }
    }
    return sum * norm;
}

void MG_FN(mg_perceive_grid)(const mg_nca_dims *d, const real *s, real *p)
{
    const int K = mg_perception_size(d);
    for (int y = 0; y < d->height; y++)
        for (int x = 0; x < d->width; x++)
            perceive_cell(d, s, y, x, p + ((size_t)y * d->width + x) * K);
}
