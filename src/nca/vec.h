/* 64-byte vectors of reals (GCC vector extensions), lowered to AVX-512,
 * AVX2 or SSE by the compiler for the target machine, and the few
 * operations the kernels need on them. */
#ifndef MORPHOGEN_NCA_VEC_H
#define MORPHOGEN_NCA_VEC_H

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

/* Pins a loaded vector in a register. Without it GCC folds the load into
 * every FMA that uses it (a memory operand), turning the tile's V loads per
 * term into R x V loads and making the kernel load-bound. Only where one
 * register holds the whole vector (AVX-512); elsewhere the vector is split
 * over several registers and the compiler is left to it. */
static inline vreal in_register(vreal v)
{
#if defined(__AVX512F__)
    __asm__("" : "+v"(v));
#endif
    return v;
}

#endif
