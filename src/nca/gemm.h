/* The small matrix products of the update MLP on a tile of cells, as
 * register-blocked kernels (GCC vector extensions: 64-byte vectors, lowered
 * to AVX-512, AVX2 or SSE by the compiler for the target machine):
 *
 *   gemm_nn:  C[m][N] += A[m][K] . B[K][N]     (activations x weights)
 *   gemm_tn:  C[K][N] += A[m][K]^T . B[m][N]   (weight gradients over cells)
 *
 * All matrices row-major with leading dimension = row length. Column counts
 * that are not a multiple of the vector width fall back to plain loops.
 * The summation order is fixed (it depends on the sizes only), so results
 * are reproducible bit for bit within a build. `c += a * b` becomes one
 * fused multiply-add: the build sets -ffp-contract=fast (ISO C mode would
 * otherwise keep the multiply and the add apart, halving throughput). */
#ifndef MORPHOGEN_NCA_GEMM_H
#define MORPHOGEN_NCA_GEMM_H

#include <string.h>

#include "real.h"

typedef real vreal __attribute__((vector_size(64)));
#define VLEN ((int)(64 / sizeof(real)))

static inline vreal vload(const real *p)
{
    vreal v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void vstore(real *p, vreal v) { memcpy(p, &v, sizeof v); }

/* A broadcast. x - 0 is an exact identity (unlike x + 0, which turns -0.0
 * into +0.0), so the compiler emits just the broadcast. */
static inline vreal vsplat(real x)
{
    const vreal zero = {0};
    return x - zero;
}

/* C[m][N] += A[m][K] B[K][N]: tiles of 4 rows x 2 vectors of columns. */
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
    int i = 0;
    for (; i + 4 <= m; i += 4) {
        int j = 0;
        for (; j + 2 * VLEN <= N; j += 2 * VLEN) {
            vreal c[4][2];
            for (int r = 0; r < 4; r++)
                for (int v = 0; v < 2; v++)
                    c[r][v] = vload(C + (size_t)(i + r) * N + j + v * VLEN);
            for (int k = 0; k < K; k++) {
                const vreal b0 = vload(B + (size_t)k * N + j), b1 = vload(B + (size_t)k * N + j + VLEN);
                for (int r = 0; r < 4; r++) {
                    const vreal a = vsplat(A[(size_t)(i + r) * K + k]);
                    c[r][0] += a * b0;
                    c[r][1] += a * b1;
                }
            }
            for (int r = 0; r < 4; r++)
                for (int v = 0; v < 2; v++)
                    vstore(C + (size_t)(i + r) * N + j + v * VLEN, c[r][v]);
        }
        for (; j < N; j += VLEN) {
            vreal c[4];
            for (int r = 0; r < 4; r++)
                c[r] = vload(C + (size_t)(i + r) * N + j);
            for (int k = 0; k < K; k++) {
                const vreal b = vload(B + (size_t)k * N + j);
                for (int r = 0; r < 4; r++)
                    c[r] += vsplat(A[(size_t)(i + r) * K + k]) * b;
            }
            for (int r = 0; r < 4; r++)
                vstore(C + (size_t)(i + r) * N + j, c[r]);
        }
    }
    for (; i < m; i++)
        for (int j = 0; j < N; j += VLEN) {
            vreal c = vload(C + (size_t)i * N + j);
            for (int k = 0; k < K; k++)
                c += vsplat(A[(size_t)i * K + k]) * vload(B + (size_t)k * N + j);
            vstore(C + (size_t)i * N + j, c);
        }
}

/* C[K][N] += sum over rows i of A[i][k] B[i][n]: tiles of 4 rows of C x 2
 * vectors, accumulated over all m rows of A and B. */
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
    int k = 0;
    for (; k + 4 <= K; k += 4) {
        int j = 0;
        for (; j + 2 * VLEN <= N; j += 2 * VLEN) {
            vreal c[4][2];
            for (int r = 0; r < 4; r++)
                for (int v = 0; v < 2; v++)
                    c[r][v] = vload(C + (size_t)(k + r) * N + j + v * VLEN);
            for (int i = 0; i < m; i++) {
                const vreal b0 = vload(B + (size_t)i * N + j), b1 = vload(B + (size_t)i * N + j + VLEN);
                for (int r = 0; r < 4; r++) {
                    const vreal a = vsplat(A[(size_t)i * K + k + r]);
                    c[r][0] += a * b0;
                    c[r][1] += a * b1;
                }
            }
            for (int r = 0; r < 4; r++)
                for (int v = 0; v < 2; v++)
                    vstore(C + (size_t)(k + r) * N + j + v * VLEN, c[r][v]);
        }
        for (; j < N; j += VLEN) {
            vreal c[4];
            for (int r = 0; r < 4; r++)
                c[r] = vload(C + (size_t)(k + r) * N + j);
            for (int i = 0; i < m; i++) {
                const vreal b = vload(B + (size_t)i * N + j);
                for (int r = 0; r < 4; r++)
                    c[r] += vsplat(A[(size_t)i * K + k + r]) * b;
            }
            for (int r = 0; r < 4; r++)
                vstore(C + (size_t)(k + r) * N + j, c[r]);
        }
    }
    for (; k < K; k++)
        for (int j = 0; j < N; j += VLEN) {
            vreal c = vload(C + (size_t)k * N + j);
            for (int i = 0; i < m; i++)
                c += vsplat(A[(size_t)i * K + k]) * vload(B + (size_t)i * N + j);
            vstore(C + (size_t)k * N + j, c);
        }
}

#endif
