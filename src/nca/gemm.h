/* The small matrix products of the update MLP on a tile of cells, as
 * register-blocked kernels (GCC vector extensions as wide as the target's
 * registers, vec.h):
 *
 *   gemm_nn:  C[m][N] += A[m][K] . B[K][N]     (activations x weights)
 *   gemm_tn:  C[K][N] += A[m][K]^T . B[m][N]   (weight gradients over cells)
 *
 * All matrices row-major with leading dimension = row length. Column counts
 * that are not a multiple of the vector width fall back to plain loops.
 *
 * Summation order: every output element is one chain of multiply-adds
 * (fused where the target has FMA) over the inner index in increasing
 * order, starting from its value in C.
 * How the outputs are grouped into register tiles does not change any
 * element's chain, so the results are the same bits for every tiling (and
 * every cell-tile size upstream); they depend on the sizes only. The tiles
 * fuse with vfma (vec.h); in the scalar fallback `c += a * b` becomes one
 * FMA because the build sets -ffp-contract=fast. */
#ifndef MORPHOGEN_NCA_GEMM_H
#define MORPHOGEN_NCA_GEMM_H

#include <stddef.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "vec.h"

/* One register tile of R output rows x V vectors of columns:
 *   C[r][v] += sum over t in terms of A[r * ars + t * ats] * B[t * ldb][v]
 * (C rows ldc apart; terms increasing). Both products are this with
 * different strides: for gemm_nn an output row is a row of A (ars = K,
 * ats = 1); for gemm_tn it is a column of A (ars = 1, ats = K). R x V
 * accumulators stay in registers; per term the tile loads V vectors and
 * broadcasts R scalars, so the shapes below keep 16..24 FMAs in flight per
 * 8..10 loads. */
#define MG_UNROLL _Pragma("GCC unroll 8")
#define MG_GEMM_TILE(R, V)                                                                            \
    static inline void gemm_tile_##R##x##V(const int *restrict terms, int n_terms, const real *restrict A, \
                                           ptrdiff_t ars, ptrdiff_t ats, const real *restrict B, int ldb,  \
                                           real *restrict C, int ldc)                                     \
    {                                                                                                 \
        vreal c[R][V];                                                                                \
        MG_UNROLL for (int r = 0; r < R; r++) MG_UNROLL for (int v = 0; v < V; v++) c[r][v] =         \
            vload(C + (size_t)r * ldc + v * VLEN);                                                    \
        for (int q = 0; q < n_terms; q++) {                                                           \
            const int t = terms[q];                                                                   \
            vreal b[V];                                                                               \
            MG_UNROLL for (int v = 0; v < V; v++) b[v] = in_register(vload(B + (size_t)t * ldb + v * VLEN)); \
            MG_UNROLL for (int r = 0; r < R; r++)                                                     \
            {                                                                                         \
                const vreal a = vsplat(A[r * ars + t * ats]);                                         \
                MG_UNROLL for (int v = 0; v < V; v++) c[r][v] = vfma(a, b[v], c[r][v]);               \
            }                                                                                         \
        }                                                                                             \
        MG_UNROLL for (int r = 0; r < R; r++) MG_UNROLL for (int v = 0; v < V; v++)                   \
            vstore(C + (size_t)r * ldc + v * VLEN, c[r][v]);                                          \
    }

/* Tile shapes per register file: R x V accumulators, V loads and a
 * broadcast must fit the 32 vector registers of AVX-512, or the 16 of
 * AVX2 (more would spill every accumulator to the stack on every term). */
#if MG_VEC_BYTES == 64
MG_GEMM_TILE(4, 6)
MG_GEMM_TILE(4, 4)
MG_GEMM_TILE(4, 3)
MG_GEMM_TILE(8, 2)
MG_GEMM_TILE(8, 1)
MG_GEMM_TILE(1, 6)
MG_GEMM_TILE(1, 4)
#else
MG_GEMM_TILE(4, 3)
MG_GEMM_TILE(6, 2)
MG_GEMM_TILE(8, 1)
#endif
MG_GEMM_TILE(1, 3)
MG_GEMM_TILE(1, 2)
MG_GEMM_TILE(1, 1)

/* Which terms t < T a tile of R output rows takes: all of them
 * (MG_DENSE_TERMS), or only those where some row's A(r, t) is nonzero
 * (MG_SKIP_ZERO_TERMS).
 *
 * Skipping is exact, not an approximation: a skipped term would add
 * (+-0) * b to its accumulator, which leaves any accumulator other than -0
 * unchanged, and no accumulator here is ever -0: each starts at +0 or at a
 * previous sum, and a sum of finite terms under round-to-nearest is -0 only
 * if every term was -0 (products of +0 activations are never added alone).
 * So the skipping and the dense kernels give the same bits for finite B.
 * This pays where A is a ReLU output or a gradient masked by one: in a
 * trained NCA most hidden units are off for most cells, and neighbouring
 * cells (adjacent rows of a tile) tend to share them. */
enum { MG_DENSE_TERMS = 0, MG_SKIP_ZERO_TERMS = 1 };

/* The terms t < T at which some of the R rows A + r * lda (r < R) is
 * nonzero (NaN counts as nonzero, so it still propagates), in increasing
 * order; returns how many. With AVX-512 floats, 16 terms per compare and
 * one compress-store; otherwise a branch-free scalar append. */
static inline int gemm_live_terms(int R, int T, const real *restrict A, ptrdiff_t lda, int *restrict terms)
{
    int n = 0, t = 0;
#if defined(__AVX512F__) && defined(MG_PRECISION_F32)
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (; t + 16 <= T; t += 16) {
        __mmask16 live = 0;
        for (int r = 0; r < R; r++)
            live |= _mm512_cmp_ps_mask(_mm512_loadu_ps(A + r * lda + t), _mm512_setzero_ps(), _CMP_NEQ_UQ);
        _mm512_mask_compressstoreu_epi32(terms + n, live, _mm512_add_epi32(_mm512_set1_epi32(t), iota));
        n += __builtin_popcount(live);
    }
#endif
    for (; t < T; t++) {
        int live = 0;
        for (int r = 0; r < R; r++)
            live |= A[r * lda + t] != 0;
        terms[n] = t;
        n += live;
    }
    return n;
}

/* Output rows [0, rows) x columns [j, j + V vectors): full tiles of R rows,
 * then single rows. Row i's A terms start at A + i * arow. Dense: every
 * tile takes all_terms (0..T-1). Skipping (only where A's terms are
 * contiguous, ats = 1): each tile takes its own live terms. */
#define MG_GEMM_COLUMN_BLOCK(R, V)                                                                    \
    static inline void gemm_block_##V(int rows, int T, int N, const real *restrict A, ptrdiff_t arow,  \
                                      ptrdiff_t ats, const real *restrict B, real *restrict C, int j,  \
                                      const int *restrict all_terms, int *restrict live)               \
    {                                                                                                 \
        int i = 0;                                                                                    \
        for (; i + R <= rows; i += R) {                                                               \
            const int n = live ? gemm_live_terms(R, T, A + i * arow, arow, live) : T;                 \
            gemm_tile_##R##x##V(live ? live : all_terms, n, A + i * arow, arow, ats, B + j, N,         \
                                C + (size_t)i * N + j, N);                                            \
        }                                                                                             \
        for (; i < rows; i++) {                                                                       \
            const int n = live ? gemm_live_terms(1, T, A + i * arow, arow, live) : T;                 \
            gemm_tile_1x##V(live ? live : all_terms, n, A + i * arow, arow, ats, B + j, N,            \
                            C + (size_t)i * N + j, N);                                                \
        }                                                                                             \
    }

#if MG_VEC_BYTES == 64
MG_GEMM_COLUMN_BLOCK(4, 6)
MG_GEMM_COLUMN_BLOCK(4, 4)
MG_GEMM_COLUMN_BLOCK(4, 3)
MG_GEMM_COLUMN_BLOCK(8, 2)
MG_GEMM_COLUMN_BLOCK(8, 1)
#else
MG_GEMM_COLUMN_BLOCK(4, 3)
MG_GEMM_COLUMN_BLOCK(6, 2)
MG_GEMM_COLUMN_BLOCK(8, 1)
#endif

/* C[rows][N] += sum over t < T of A(i, t) B[t][N], N a multiple of VLEN:
 * with AVX-512 a row of exactly 6 vectors in one block (the 3C = 96
 * perception of 32 channels), otherwise blocks of 4 vectors (3 below
 * AVX-512) and a narrower last block. */
static inline void gemm_rows(int rows, int T, int N, const real *restrict A, ptrdiff_t arow, ptrdiff_t ats,
                             const real *restrict B, real *restrict C, int skip)
{
    int all_terms[T > 0 ? T : 1], live_terms[T > 0 ? T : 1];
    for (int t = 0; t < T; t++)
        all_terms[t] = t;
    int *live = skip ? live_terms : NULL;
    const int nv = N / VLEN;
#if MG_VEC_BYTES == 64
    if (nv == 6) {
        gemm_block_6(rows, T, N, A, arow, ats, B, C, 0, all_terms, live);
        return;
    }
    int v = 0;
    for (; v + 4 <= nv; v += 4)
        gemm_block_4(rows, T, N, A, arow, ats, B, C, v * VLEN, all_terms, live);
#else
    int v = 0;
    for (; v + 3 <= nv; v += 3)
        gemm_block_3(rows, T, N, A, arow, ats, B, C, v * VLEN, all_terms, live);
#endif
    switch (nv - v) {
    case 3: gemm_block_3(rows, T, N, A, arow, ats, B, C, v * VLEN, all_terms, live); break;
    case 2: gemm_block_2(rows, T, N, A, arow, ats, B, C, v * VLEN, all_terms, live); break;
    case 1: gemm_block_1(rows, T, N, A, arow, ats, B, C, v * VLEN, all_terms, live); break;
    default: break;
    }
}

/* C[m][N] += A[m][K] B[K][N]; skip: MG_DENSE_TERMS or MG_SKIP_ZERO_TERMS. */
static inline void gemm_nn(int m, int K, int N, const real *restrict A, const real *restrict B, real *restrict C,
                           int skip)
{
    if (N % VLEN != 0) {
        for (int i = 0; i < m; i++)
            for (int k = 0; k < K; k++) {
                const real a = A[(size_t)i * K + k];
                if (skip && a == 0)
                    continue;
                for (int j = 0; j < N; j++)
                    C[(size_t)i * N + j] += a * B[(size_t)k * N + j];
            }
        return;
    }
    gemm_rows(m, K, N, A, K, 1, B, C, skip);
}

/* C[K][N] += sum over rows i < m of A[i][k] B[i][n] (all terms: a tile's
 * terms are cells, whose zeros do not line up). */
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
    gemm_rows(K, m, N, A, 1, K, B, C, MG_DENSE_TERMS);
}

#endif
