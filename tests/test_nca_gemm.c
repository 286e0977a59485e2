/* The float GEMM kernels of the training build (src/nca/gemm.h): every
 * register-tile shape and remainder path against a plain triple loop with
 * the same per-element summation order and the same multiply-adds (so
 * equality is exact, bit for bit),
 * and the zero-term skipping against the dense kernel: it must give the
 * same bits, including when whole rows, isolated terms or NaNs are present
 * (a NaN term must never be skipped). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MG_PRECISION_F32
#include "../src/nca/gemm.h"

/* A deterministic fill: values in [-1, 1), with about `zero_percent`
 * exact zeros (negative zeros among them). */
static void fill(float *x, int n, uint32_t seed, int zero_percent)
{
    uint32_t s = seed * 2654435761u + 1;
    for (int i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        const int pick = (int)((s >> 8) % 100);
        const float v = (float)((s >> 9) & 0xffff) / 32768.0f - 1.0f;
        x[i] = pick < zero_percent ? (pick % 2 ? -0.0f : 0.0f) : v;
    }
}

/* One multiply-add as the kernels do it: fused where the target has FMA
 * (the build contracts `c += a * b` with -ffp-contract=fast), a rounded
 * multiply then a rounded add where it has not (the portable build). */
static float madd(float a, float b, float c)
{
#if defined(__FMA__)
    return fmaf(a, b, c);
#else
    volatile float product = a * b; /* keep the product rounded on its own */
    return c + product;
#endif
}

/* The reference: C[i][j] = multiply-add chain over k in increasing order. */
static void ref_nn(int m, int K, int N, const float *A, const float *B, float *C)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < N; j++) {
            float c = C[i * N + j];
            for (int k = 0; k < K; k++)
                c = madd(A[i * K + k], B[k * N + j], c);
            C[i * N + j] = c;
        }
}

static void ref_tn(int m, int K, int N, const float *A, const float *B, float *C)
{
    for (int k = 0; k < K; k++)
        for (int j = 0; j < N; j++) {
            float c = C[k * N + j];
            for (int i = 0; i < m; i++)
                c = madd(A[i * K + k], B[i * N + j], c);
            C[k * N + j] = c;
        }
}

/* Shapes: the model's products (K = 3C, H = 128, C = 16 / 32), row counts
 * that leave remainders for every tile height, and column counts that hit
 * each column-block width (1..8 vectors) and the non-vector fallback. */
static const int ROWS[] = {1, 3, 4, 7, 8, 13, 32};
static const int INNER[] = {1, 5, 16, 48, 96, 128};
static const int COLS[] = {16, 32, 48, 64, 96, 128, 80, 12};

static void test_nn_and_tn_match_reference_bitwise(void **state)
{
    (void)state;
    for (size_t a = 0; a < sizeof ROWS / sizeof *ROWS; a++)
        for (size_t b = 0; b < sizeof INNER / sizeof *INNER; b++)
            for (size_t c = 0; c < sizeof COLS / sizeof *COLS; c++) {
                const int m = ROWS[a], K = INNER[b], N = COLS[c];
                float *A = malloc(sizeof(float) * m * K), *B = malloc(sizeof(float) * K * N);
                float *Bt = malloc(sizeof(float) * m * N), *C0 = malloc(sizeof(float) * m * N);
                float *C1 = malloc(sizeof(float) * m * N), *G0 = malloc(sizeof(float) * K * N);
                float *G1 = malloc(sizeof(float) * K * N);
                fill(A, m * K, 1 + a, 30);
                fill(B, K * N, 2 + b, 0);
                fill(Bt, m * N, 3 + c, 0);
                fill(C0, m * N, 4, 0);
                memcpy(C1, C0, sizeof(float) * m * N);
                fill(G0, K * N, 5, 0);
                memcpy(G1, G0, sizeof(float) * K * N);
                ref_nn(m, K, N, A, B, C0);
                gemm_nn(m, K, N, A, B, C1, MG_DENSE_TERMS);
                assert_memory_equal(C0, C1, sizeof(float) * m * N);
                ref_tn(m, K, N, A, Bt, G0);
                gemm_tn(m, K, N, A, Bt, G1);
                assert_memory_equal(G0, G1, sizeof(float) * K * N);
                free(A), free(B), free(Bt), free(C0), free(C1), free(G0), free(G1);
            }
}

static void test_skipping_zero_terms_gives_the_dense_bits(void **state)
{
    (void)state;
    const int zero_percents[] = {0, 50, 90, 100};
    for (size_t z = 0; z < sizeof zero_percents / sizeof *zero_percents; z++)
        for (size_t a = 0; a < sizeof ROWS / sizeof *ROWS; a++)
            for (size_t c = 0; c < sizeof COLS / sizeof *COLS; c++) {
                const int m = ROWS[a], K = 128, N = COLS[c];
                float *A = malloc(sizeof(float) * m * K), *B = malloc(sizeof(float) * K * N);
                float *Cd = calloc((size_t)m * N, sizeof(float)), *Cs = calloc((size_t)m * N, sizeof(float));
                fill(A, m * K, 7 + a, zero_percents[z]);
                fill(B, K * N, 8 + c, 0);
                if (m > 2) /* a whole row of zeros, as for a cell with every unit off */
                    memset(A + 2 * K, 0, sizeof(float) * K);
                gemm_nn(m, K, N, A, B, Cd, MG_DENSE_TERMS);
                gemm_nn(m, K, N, A, B, Cs, MG_SKIP_ZERO_TERMS);
                assert_memory_equal(Cd, Cs, sizeof(float) * m * N);
                free(A), free(B), free(Cd), free(Cs);
            }
}

static void test_skipping_keeps_nan_terms(void **state)
{
    (void)state;
    enum { M = 8, K = 128, N = 32 };
    static float A[M * K], B[K * N], C[M * N];
    memset(A, 0, sizeof A); /* every term zero except one NaN per row */
    fill(B, K * N, 9, 0);
    for (int i = 0; i < M; i++)
        A[i * K + (17 * i + 5) % K] = NAN;
    memset(C, 0, sizeof C);
    gemm_nn(M, K, N, A, B, C, MG_SKIP_ZERO_TERMS);
    for (int i = 0; i < M * N; i++)
        assert_true(isnan(C[i]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nn_and_tn_match_reference_bitwise),
        cmocka_unit_test(test_skipping_zero_terms_gives_the_dense_bits),
        cmocka_unit_test(test_skipping_keeps_nan_terms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
