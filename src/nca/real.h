/* Precision selection for the files in src/nca/, which CMake compiles twice:
 * once with MG_PRECISION_F32 (training) and once with MG_PRECISION_F64
 * (finite-difference checks). MG_FN(name) appends the matching suffix. */
#ifndef MORPHOGEN_NCA_REAL_H
#define MORPHOGEN_NCA_REAL_H

#if defined(MG_PRECISION_F64)
typedef double real;
#define MG_FN(name) name##_f64
#elif defined(MG_PRECISION_F32)
typedef float real;
#define MG_FN(name) name##_f32
#else
#error "compile src/nca with MG_PRECISION_F32 or MG_PRECISION_F64"
#endif

#endif
