/* The update MLP on a tile of n cells, forward and backward, on top of the
 * register-blocked products in gemm.h:
 *   z = p w1 + b1,  r = relu(z),  u = r w2. */
#ifndef MORPHOGEN_NCA_DENSE_H
#define MORPHOGEN_NCA_DENSE_H

#include "gemm.h"

/* p [n][K], w1 [K][H], b1 [H] -> z [n][H], the pre-activation. */
static inline void dense_hidden(int n, int K, int H, const real *restrict p, const real *restrict w1,
                                const real *restrict b1, real *restrict z)
{
    for (int i = 0; i < n; i++)
        memcpy(z + (size_t)i * H, b1, sizeof(real) * H);
    gemm_nn(n, K, H, p, w1, z, MG_DENSE_TERMS);
}

static inline void relu(int count, const real *restrict z, real *restrict r)
{
    for (int i = 0; i < count; i++)
        r[i] = z[i] > 0 ? z[i] : 0;
}

/* z [n][H], w2 [H][C] -> u [n][C] = relu(z) w2; r [n][H] is scratch. */
static inline void dense_output(int n, int H, int C, const real *restrict z, const real *restrict w2,
                                real *restrict r, real *restrict u)
{
    relu(n * H, z, r);
    memset(u, 0, sizeof(real) * (size_t)n * C);
    gemm_nn(n, H, C, r, w2, u, MG_SKIP_ZERO_TERMS);
}

/* Backward of dense_hidden + dense_output for n cells, given p, z and
 * gu = dL/du [n][C]. Adds into gw1t [H][K] (the w1 gradient, transposed:
 * a unit's row is contiguous), gb1 [H] and gw2 [H][C]; writes gp = dL/dp
 * [n][K]. w1t [H][K] and w2t [C][H] are the transposed weights; r and gz
 * [n][H] are scratch. */
static inline void dense_backward(int n, int K, int H, int C, const real *restrict p, const real *restrict z,
                                  const real *restrict gu, const real *restrict w1t, const real *restrict w2t,
                                  real *restrict r, real *restrict gz, real *restrict gp, real *restrict gw1t,
                                  real *restrict gb1, real *restrict gw2)
{
    relu(n * H, z, r);
    gemm_tn(n, H, C, r, gu, gw2);
    memset(gz, 0, sizeof(real) * (size_t)n * H);
    gemm_nn(n, C, H, gu, w2t, gz, MG_DENSE_TERMS);
    for (int i = 0; i < n; i++) {
        real *restrict g = gz + (size_t)i * H;
        const real *restrict zi = z + (size_t)i * H;
        for (int h = 0; h < H; h++) {
            g[h] = zi[h] > 0 ? g[h] : 0;
            gb1[h] += g[h];
        }
    }
    gemm_tn(n, H, K, gz, p, gw1t);
    memset(gp, 0, sizeof(real) * (size_t)n * K);
    gemm_nn(n, H, K, gz, w1t, gp, MG_SKIP_ZERO_TERMS);
}

#endif
