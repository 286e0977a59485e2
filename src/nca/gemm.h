/* The small matrix products of the update MLP on a tile of cells, as
 * register-blocked kernels (GCC vector extensions: 64-byte vectors, lowered
 * to AVX-512, AVX2 or SSE by the compiler for the target machine):
 *
 *   gemm_nn:  C[m][N] += A[m][K] . B[K][N]     (activations x weights)
 *   gemm_tn:  C[K][N] += A[m][K]^T . B[m][N]   (weight gradients over cells)
 *
 * All matrices row-major with leading dimension = row length. Column counts
 * that are not a multiple of the vector width fall back to plain loops.
 *
 * Summation order: every output element is one chain of fused multiply-adds
 * over the inner index in increasing order, starting from its value in C.
 * How the outputs are grouped into register tiles does not change any
 * element's chain, so the results are the same bits for every tiling (and
 * every cell-tile size upstream); they depend on the sizes only. `c += a * b`
 * becomes one FMA because the build sets -ffp-contract=fast (ISO C mode would
 * otherwise keep the multiply and the add apart, halving throughput). */
#ifndef MORPHOGEN_NCA_GEMM_H
#define MORPHOGEN_NCA_GEMM_H

#include <stddef.h>

#include "vec.h"

/* One register tile of R output rows x V vectors of columns:
 *   C[r][v] += sum over t < T of A[r * ars + t * ats] * B[t * ldb][v]
 * (C rows ldc apart). Both products are this with different strides: for
 * gemm_nn an output row is a row of A (ars = K, ats = 1); for gemm_tn it is
 * a column of A (ars = 1, ats = K). R x V accumulators stay in registers;
 * per term the tile loads V vectors and broadcasts R scalars, so the
 * shapes below keep 16..24 FMAs in flight per 8..10 loads. */
#define MG_UNROLL _Pragma("GCC unroll 8")
#define MG_GEMM_TILE(R, V)                                                                            \
    static inline void gemm_tile_##R##x##V(int T, const real *restrict A, ptrdiff_t ars, ptrdiff_t ats, \
                                           const real *restrict B, int ldb, real *restrict C, int ldc)   \
    {                                                                                                 \
        vreal c[R][V];                                                                                \
        MG_UNROLL for (int r = 0; r < R; r++) MG_UNROLL for (int v = 0; v < V; v++) c[r][v] =         \
            vload(C + (size_t)r * ldc + v * VLEN);                                                    \
        for (int t = 0; t < T; t++) {                                                                 \
            vreal b[V];                                                                               \
            MG_UNROLL for (int v = 0; v < V; v++) b[v] = in_register(vload(B + (size_t)t * ldb + v * VLEN)); \
            MG_UNROLL for (int r = 0; r < R; r++)                                                     \
            {                                                                                         \
                const vreal a = vsplat(A[r * ars + t * ats]);                                         \
                MG_UNROLL for (int v = 0; v < V; v++) c[r][v] += a * b[v];                            \
            }                                                                                         \
        }                                                                                             \
        MG_UNROLL for (int r = 0; r < R; r++) MG_UNROLL for (int v = 0; v < V; v++)                   \
            vstore(C + (size_t)r * ldc + v * VLEN, c[r][v]);                                          \
    }

MG_GEMM_TILE(4, 6)
MG_GEMM_TILE(4, 4)
MG_GEMM_TILE(4, 3)
MG_GEMM_TILE(8, 2)
MG_GEMM_TILE(8, 1)
MG_GEMM_TILE(1, 6)
MG_GEMM_TILE(1, 4)
MG_GEMM_TILE(1, 3)
MG_GEMM_TILE(1, 2)
MG_GEMM_TILE(1, 1)

/* Output rows [0, rows) x columns [j, j + V vectors): full tiles of R rows,
 * then single rows. Row i's A terms start at A + i * arow. */
#define MG_GEMM_COLUMN_BLOCK(R, V)                                                                    \
    static inline void gemm_block_##V(int rows, int T, int N, const real *restrict A, ptrdiff_t arow,  \
                                      ptrdiff_t ats, const real *restrict B, real *restrict C, int j)  \
    {                                                                                                 \
        int i = 0;                                                                                    \
        for (; i + R <= rows; i += R)                                                                 \
            gemm_tile_##R##x##V(T, A + i * arow, arow, ats, B + j, N, C + (size_t)i * N + j, N);      \
        for (; i < rows; i++)                                                                         \
            gemm_tile_1x##V(T, A + i * arow, arow, ats, B + j, N, C + (size_t)i * N + j, N);          \
    }

MG_GEMM_COLUMN_BLOCK(4, 6)
MG_GEMM_COLUMN_BLOCK(4, 4)
MG_GEMM_COLUMN_BLOCK(4, 3)
MG_GEMM_COLUMN_BLOCK(8, 2)
MG_GEMM_COLUMN_BLOCK(8, 1)

/* C[rows][N] += sum over t < T of A(i, t) B[t][N], N a multiple of VLEN:
 * a row of exactly 6 vectors in one block (the 3C = 96 perception of 32
 * channels), otherwise blocks of 4 vectors and a narrower last block. */
static inline void gemm_rows(int rows, int T, int N, const real *restrict A, ptrdiff_t arow, ptrdiff_t ats,
                             const real *restrict B, real *restrict C)
{
    const int nv = N / VLEN;
    if (nv == 6) {
        gemm_block_6(rows, T, N, A, arow, ats, B, C, 0);
        return;
    }
    int v = 0;
    for (; v + 4 <= nv; v += 4)
        gemm_block_4(rows, T, N, A, arow, ats, B, C, v * VLEN);
    switch (nv - v) {
    case 3: gemm_block_3(rows, T, N, A, arow, ats, B, C, v * VLEN); break;
    case 2: gemm_block_2(rows, T, N, A, arow, ats, B, C, v * VLEN); break;
    case 1: gemm_block_1(rows, T, N, A, arow, ats, B, C, v * VLEN); break;
    default: break;
    }
}

/* C[m][N] += A[m][K] B[K][N]. */
static inline void gemm_nn(int m, int K, int N, const real *restrict A, const real *restrict B, real *restrict C)
{
    if (N % VLEN != 0) {
        for (int i = 0; i < m; i++)
            for (int k = 0; k < K; k++) {
                const real a = A[(size_t)i * K + k];
                for (int j = 0; j < N; j++)
                    C[(size_t)i * N + j] += a * B[(size_t)k * N + j];
            }
        return;
    }
    gemm_rows(m, K, N, A, K, 1, B, C);
}

/* C[K][N] += sum over rows i < m of A[i][k] B[i][n]. */
static inline void gemm_tn(int m, int K, int N, const real *restrict A, const real *restrict B, real *restrict C)
{
    if (N % VLEN != 0) {
        for (int i = 0; i < m; i++)
            for (int k = 0; k < K; k++) {
                const real a = A[(size_t)i * K + k];
                for (int j = 0; j < N; j++)
                    C[(size_t)k * N + j] += a * B[(size_t)i * N + j];
            }
        return;
    }
    gemm_rows(K, m, N, A, 1, K, B, C);
}

#endif
