/* The update MLP on a tile of n cells: z = p w1 + b1, u = relu(z) w2, and its
 * backward pass. Inner loops run over contiguous output columns so the
 * compiler vectorises them; zero activations and zero gradients are skipped,
 * which is exact (they would add +-0). */
#ifndef MORPHOGEN_NCA_DENSE_H
#define MORPHOGEN_NCA_DENSE_H

#include "real.h"

/* p [n][K], w1 [K][H], b1 [H] -> z [n][H], the pre-activation. */
static inline void dense_hidden(int n, int K, int H, const real *restrict p, const real *restrict w1,
                                const real *restrict b1, real *restrict z)
{
    for (int i = 0; i < n; i++) {
        real *restrict zi = z + (size_t)i * H;
        const real *restrict pi = p + (size_t)i * K;
        for (int h = 0; h < H; h++)
            zi[h] = b1[h];
        for (int k = 0; k < K; k++) {
            const real a = pi[k];
            if (a == 0)
                continue;
            const real *restrict wk = w1 + (size_t)k * H;
            for (int h = 0; h < H; h++)
                zi[h] += a * wk[h];
        }
    }
}

/* z [n][H], w2 [H][C] -> u [n][C] = relu(z) w2. */
static inline void dense_output(int n, int H, int C, const real *restrict z, const real *restrict w2,
                                real *restrict u)
{
    for (int i = 0; i < n; i++) {
        const real *restrict zi = z + (size_t)i * H;
        real *restrict ui = u + (size_t)i * C;
        for (int c = 0; c < C; c++)
            ui[c] = 0;
        for (int h = 0; h < H; h++) {
            const real r = zi[h];
            if (!(r > 0))
                continue;
            const real *restrict wh = w2 + (size_t)h * C;
            for (int c = 0; c < C; c++)
                ui[c] += r * wh[c];
        }
    }
}

/* Backward of dense_hidden + dense_output for n cells, given p, z and gu = dL/du [n][C].
 * Adds into gw2 [H][C], gb1 [H] and gw1t [H][K] (w1's gradient transposed,
 * so the accumulation runs over contiguous K); writes gp = dL/dp [n][K].
 * w1t is w1 transposed [H][K]. gz is scratch [n][H]. */
static inline void dense_backward(int n, int K, int H, int C, const real *restrict p, const real *restrict z,
                                  const real *restrict gu, const real *restrict w1t,
                                  const real *restrict w2, real *restrict gz, real *restrict gp,
                                  real *restrict gw1t, real *restrict gb1, real *restrict gw2)
{
    for (int i = 0; i < n; i++) {
        const real *restrict zi = z + (size_t)i * H;
        const real *restrict gui = gu + (size_t)i * C;
        const real *restrict pi = p + (size_t)i * K;
        real *restrict gzi = gz + (size_t)i * H;
        real *restrict gpi = gp + (size_t)i * K;
        for (int h = 0; h < H; h++) {
            const real r = zi[h];
            const real *restrict wh = w2 + (size_t)h * C;
            if (!(r > 0)) {
                gzi[h] = 0;
                continue;
            }
            real acc = 0;
            real *restrict gwh = gw2 + (size_t)h * C;
            for (int c = 0; c < C; c++) {
                acc += gui[c] * wh[c];
                gwh[c] += r * gui[c];
            }
            gzi[h] = acc;
        }
        for (int k = 0; k < K; k++)
            gpi[k] = 0;
        for (int h = 0; h < H; h++) {
            const real g = gzi[h];
            if (g == 0)
                continue;
            gb1[h] += g;
            const real *restrict wh = w1t + (size_t)h * K;
            real *restrict gwh = gw1t + (size_t)h * K;
            for (int k = 0; k < K; k++) {
                gpi[k] += g * wh[k];
                gwh[k] += g * pi[k];
            }
        }
    }
}

#endif
