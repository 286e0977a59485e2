/* Perception of one cell and its transpose, and the 3x3 alive pooling.
 * Inline so the step loops can fuse them with the dense layers. */
#ifndef MORPHOGEN_NCA_PERCEIVE_H
#define MORPHOGEN_NCA_PERCEIVE_H

#include "morphogen/nca.h"
#include "real.h"
#include "vec.h"

/* Sobel-x weights for rows dy = -1, 0, 1 and columns dx = -1, 0, 1, scaled by
 * 1/8; Sobel-y is the transpose. Exact in binary, so both precisions agree. */
static const double SOBEL_X[3][3] = {{-0.125, 0.0, 0.125}, {-0.25, 0.0, 0.25}, {-0.125, 0.0, 0.125}};

/* The neighbours of (y,x) inside the grid, centre excluded, in the fixed
 * order every perception sum uses (dy, then dx, increasing), with their
 * Sobel-x and Sobel-y weights. Returns how many. */
static inline int sobel_neighbours(const mg_nca_dims *d, int y, int x, int cell[8], real kx[8], real ky[8])
{
    int n = 0;
    for (int dy = -1; dy <= 1; dy++) {
        const int ny = y + dy;
        if (ny < 0 || ny >= d->height)
            continue;
        for (int dx = -1; dx <= 1; dx++) {
            const int nx = x + dx;
            if (nx < 0 || nx >= d->width || (dx == 0 && dy == 0))
                continue;
            cell[n] = ny * d->width + nx;
            kx[n] = (real)SOBEL_X[dy + 1][dx + 1];
            ky[n] = (real)SOBEL_X[dx + 1][dy + 1];
            n++;
        }
    }
    return n;
}

/* p[0:C] = s(y,x); p[C:2C] = Sx*s; p[2C:3C] = Sy*s, zero padding. Each sum
 * is one chain of multiply-adds from 0 over the neighbours in order; with
 * whole vectors of channels the chains stay in registers. */
static inline void perceive_cell(const mg_nca_dims *d, const real *s, int y, int x, real *restrict p)
{
    const int C = d->channels;
    real *restrict px = p + C, *restrict py = p + 2 * C;
    int nb[8];
    real kx[8], ky[8];
    const int n = sobel_neighbours(d, y, x, nb, kx, ky);
    memcpy(p, s + ((size_t)y * d->width + x) * C, sizeof(real) * C);
    int c0 = 0;
    for (; c0 + VLEN <= C; c0 += VLEN) {
        vreal ax = {0}, ay = {0};
        for (int i = 0; i < n; i++) {
            const vreal v = vload(s + (size_t)nb[i] * C + c0);
            ax = vfma(vsplat(kx[i]), v, ax);
            ay = vfma(vsplat(ky[i]), v, ay);
        }
        vstore(px + c0, ax);
        vstore(py + c0, ay);
    }
    for (int c = c0; c < C; c++) {
        real ax = 0, ay = 0;
        for (int i = 0; i < n; i++) {
            const real v = s[(size_t)nb[i] * C + c];
            ax += kx[i] * v;
            ay += ky[i] * v;
        }
        px[c] = ax;
        py[c] = ay;
    }
}

/* g_s += (dp/ds)^T gp for the cell (y,x): the transpose of perceive_cell. */
static inline void perceive_cell_transpose(const mg_nca_dims *d, const real *restrict gp, int y, int x,
                                           real *g_s)
{
    const int C = d->channels;
    const real *restrict gx = gp + C, *restrict gy = gp + 2 * C;
    real *restrict centre = g_s + ((size_t)y * d->width + x) * C;
    for (int c = 0; c < C; c++)
        centre[c] += gp[c];
    int nb[8];
    real kx[8], ky[8];
    const int n = sobel_neighbours(d, y, x, nb, kx, ky);
    for (int i = 0; i < n; i++) {
        real *restrict v = g_s + (size_t)nb[i] * C;
        for (int c = 0; c < C; c++)
            v[c] += kx[i] * gx[c] + ky[i] * gy[c];
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
