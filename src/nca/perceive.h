/* Perception of one cell and its transpose, and the 3x3 alive pooling.
 * Inline so the step loops can fuse them with the dense layers. */
#ifndef MORPHOGEN_NCA_PERCEIVE_H
#define MORPHOGEN_NCA_PERCEIVE_H

#include "morphogen/nca.h"
#include "real.h"

/* Sobel-x weights for rows dy = -1, 0, 1 and columns dx = -1, 0, 1, scaled by
 * 1/8; Sobel-y is the transpose. Exact in binary, so both precisions agree. */
static const double SOBEL_X[3][3] = {{-0.125, 0.0, 0.125}, {-0.25, 0.0, 0.25}, {-0.125, 0.0, 0.125}};

/* p[0:C] = s(y,x); p[C:2C] = Sx*s; p[2C:3C] = Sy*s, zero padding. */
static inline void perceive_cell(const mg_nca_dims *d, const real *s, int y, int x, real *restrict p)
{
    const int C = d->channels, W = d->width, H = d->height;
    real *restrict px = p + C, *restrict py = p + 2 * C;
    const real *centre = s + ((size_t)y * W + x) * C;
    for (int c = 0; c < C; c++) {
        p[c] = centre[c];
        px[c] = 0;
        py[c] = 0;
    }
    for (int dy = -1; dy <= 1; dy++) {
        const int ny = y + dy;
        if (ny < 0 || ny >= H)
            continue;
        for (int dx = -1; dx <= 1; dx++) {
            const int nx = x + dx;
            if (nx < 0 || nx >= W || (dx == 0 && dy == 0))
                continue;
            const real kx = (real)SOBEL_X[dy + 1][dx + 1];
            const real ky = (real)SOBEL_X[dx + 1][dy + 1];
            const real *restrict v = s + ((size_t)ny * W + nx) * C;
            for (int c = 0; c < C; c++) {
                px[c] += kx * v[c];
                py[c] += ky * v[c];
            }
        }
    }
}

/* g_s += (dp/ds)^T gp for the cell (y,x): the transpose of perceive_cell. */
static inline void perceive_cell_transpose(const mg_nca_dims *d, const real *restrict gp, int y, int x,
                                           real *g_s)
{
    const int C = d->channels, W = d->width, H = d->height;
    const real *restrict gx = gp + C, *restrict gy = gp + 2 * C;
    real *restrict centre = g_s + ((size_t)y * W + x) * C;
    for (int c = 0; c < C; c++)
        centre[c] += gp[c];
    for (int dy = -1; dy <= 1; dy++) {
        const int ny = y + dy;
        if (ny < 0 || ny >= H)
            continue;
        for (int dx = -1; dx <= 1; dx++) {
            const int nx = x + dx;
            if (nx < 0 || nx >= W || (dx == 0 && dy == 0))
                continue;
            const real kx = (real)SOBEL_X[dy + 1][dx + 1];
            const real ky = (real)SOBEL_X[dx + 1][dy + 1];
            real *restrict v = g_s + ((size_t)ny * W + nx) * C;
            for (int c = 0; c < C; c++)
                v[c] += kx * gx[c] + ky * gy[c];
        }
    }
}

/* alive[cell] = (max alpha over the 3x3 neighbourhood inside the grid) > threshold.
 * rowmax is scratch of one real per cell. */
static inline void alive_pool(const mg_nca_dims *d, const real *s, double threshold, real *restrict rowmax,
                              unsigned char *restrict alive)
{
    const int C = d->channels, W = d->width, H = d->height;
    for (int y = 0; y < H; y++) {
        const real *row = s + (size_t)y * W * C + 3;
        for (int x = 0; x < W; x++) {
            real m = row[(size_t)x * C];
            if (x > 0 && row[(size_t)(x - 1) * C] > m)
                m = row[(size_t)(x - 1) * C];
            if (x + 1 < W && row[(size_t)(x + 1) * C] > m)
                m = row[(size_t)(x + 1) * C];
            rowmax[y * W + x] = m;
        }
    }
    const real thr = (real)threshold;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            real m = rowmax[y * W + x];
            if (y > 0 && rowmax[(y - 1) * W + x] > m)
                m = rowmax[(y - 1) * W + x];
            if (y + 1 < H && rowmax[(y + 1) * W + x] > m)
                m = rowmax[(y + 1) * W + x];
            alive[y * W + x] = m > thr;
        }
}

#endif
