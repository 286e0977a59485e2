/* Vectors of reals (GCC vector extensions) as wide as the target's vector
 * registers: 64 bytes with AVX-512, else 32 (one AVX2 register, two SSE
 * ones); and the few operations the kernels need on them. The width
 * changes no result: every output element is one multiply-add chain in a
 * fixed order whatever the grouping (gemm.h). */
#ifndef MORPHOGEN_NCA_VEC_H
#define MORPHOGEN_NCA_VEC_H

#include <string.h>
#if defined(__FMA__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "real.h"

#if defined(__AVX512F__)
#define MG_VEC_BYTES 64
#else
#define MG_VEC_BYTES 32
#endif
typedef real vreal __attribute__((vector_size(MG_VEC_BYTES)));
#define VLEN ((int)(MG_VEC_BYTES / sizeof(real)))

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

/* c + a * b as one fused multiply-add where the target has FMA, written
 * out rather than left to -ffp-contract: GCC does not contract every
 * vector multiply-add it meets (seen with 32-byte vectors at -O2 and -O3),
 * and a product rounded on its own would change the bits with the tiling.
 * Without FMA (the portable build), a rounded multiply and a rounded add. */
static inline vreal vfma(vreal a, vreal b, vreal c)
{
#if defined(__AVX512F__) && defined(MG_PRECISION_F32)
    return _mm512_fmadd_ps(a, b, c);
#elif defined(__AVX512F__)
    return _mm512_fmadd_pd(a, b, c);
#elif defined(__FMA__) && defined(MG_PRECISION_F32)
    return _mm256_fmadd_ps(a, b, c);
#elif defined(__FMA__)
    return _mm256_fmadd_pd(a, b, c);
#else
    return c + a * b;
#endif
}

/* Pins a loaded vector in a register. Without it GCC folds the load into
 * every FMA that uses it (a memory operand), turning the tile's V loads per
 * term into R x V loads and making the kernel load-bound. Only where one
 * register holds the whole vector (AVX-512, AVX2); with SSE the vector is
 * split over two registers and the compiler is left to it. */
static inline vreal in_register(vreal v)
{
#if defined(__AVX512F__) || defined(__AVX2__)
    __asm__("" : "+v"(v));
#endif
    return v;
}

#endif
