/* The CUDA emulator's <mma.h>: the warp matrix functions (nvcuda::wmma) that
 * the kernels use, for TF32 multiplicands (m16n16k8) and float accumulators
 * only; any other fragment is a compile error here, on purpose.
 *
 * CUDA leaves the mapping of a tile's elements onto the lanes of a fragment
 * unspecified, so correct code can only move whole tiles through
 * load/store/fill/mma, or apply the same operation to every element. The
 * emulator picks a mapping that makes a lane's work independent of the
 * other lanes (the lanes are fibers that meet only at barriers):
 *   - lane l of an accumulator holds elements l, l + 32, ... (row-major
 *     order of the 16x16 tile): row l/16 + 2e, column l%16 for e = 0..7;
 *   - its multiplicand fragments hold what those need: the 8 rows
 *     l/16 + 2e of A (64 elements) and column l%16 of B (8 elements);
 *   - mma_sync computes the lane's own 8 results.
 * So each lane stores only its own share of a result: a warp whose lanes do
 * not all take part (divergence) leaves elements unwritten, which the
 * emulator's NaN-filled memory turns into a failed comparison.
 *
 * Arithmetic, as the tensor cores' TF32 mode: a multiplicand's low 13
 * mantissa bits are ignored (truncated) unless the kernel rounded them with
 * __float_to_tf32 (round to nearest, ties away from zero: cvt.rna.tf32.f32);
 * a product of two TF32 values is exact in float; the products are added to
 * the accumulator in k order in float. The hardware's order and internal
 * precision of that sum are not specified; tests must allow for it.
 *
 * Checked, as the CUDA documentation requires: ldm a multiple of 4 floats
 * (16 bytes) and tile pointers 32-byte aligned. */
#ifndef CUEMU_MMA_H
#define CUEMU_MMA_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "cuemu.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
}
enum layout_t { mem_row_major, mem_col_major };

static inline uint32_t cuemu_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float cuemu_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* MG_CUEMU_TF32=exact: no rounding at all, so that a test can check the
 * tensor-core kernels' indexing, padding and masks against the fp32
 * reference at fp32's tolerance, apart from TF32's rounding. */
static const bool cuemu_tf32_exact_mode = [] {
    const char *env = getenv("MG_CUEMU_TF32");
    return env && !strcmp(env, "exact");
}();

/* v with its mantissa cut to TF32's 10 bits after adding `half` (0x1000:
 * round to nearest, ties away from zero; 0: truncate); NaN and infinity
 * pass unchanged. */
static inline float cuemu_tf32(float v, uint32_t half)
{
    const uint32_t u = cuemu_bits(v);
    if ((u & 0x7f800000u) == 0x7f800000u || cuemu_tf32_exact_mode)
        return v;
    return cuemu_float((u + half) & 0xffffe000u);
}

/* cvt.rna.tf32.f32. */
static inline float __float_to_tf32(float in) { return cuemu_tf32(in, 0x1000u); }

/* What the tensor core reads of a multiplicand: its TF32 bits. */
static inline float cuemu_tf32_operand(float v) { return cuemu_tf32(v, 0); }

static inline int cuemu_lane(void)
{
    const unsigned linear = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    return (int)(linear % 32u);
}

static inline void cuemu_check_tile(const char *what, const void *p, unsigned ldm)
{
    if (ldm % 4u != 0)
        cuemu_fatal("%s: ldm = %u is not a multiple of 4 floats (16 bytes)", what, ldm);
    if ((uintptr_t)p % 32u != 0)
        cuemu_fatal("%s: tile pointer %p is not 32-byte aligned", what, p);
}

template <typename Use, int M, int N, int K, typename T, typename Layout = void> class fragment;

/* Multiplicands, lane l: A's rows l/16 + 2e (e = 0..7) as x[8 e + k]; B's
 * column l%16 as x[k]. */
template <int N> struct cuemu_lane_part {
    static constexpr int num_elements = N;
    typedef float element_type;
    float x[N];
};
template <typename Layout>
class fragment<matrix_a, 16, 16, 8, precision::tf32, Layout> : public cuemu_lane_part<64> {};
template <typename Layout>
class fragment<matrix_b, 16, 16, 8, precision::tf32, Layout> : public cuemu_lane_part<8> {};

/* Accumulator: lane l holds elements l + 32 e of the 16x16 tile. */
template <> class fragment<accumulator, 16, 16, 8, float> {
public:
    static constexpr int num_elements = 8;
    typedef float element_type;
    float x[8];
    /* A GPU fragment holds whatever its registers held: NaN here, so that
     * an accumulator used before a load or fill poisons every result it
     * reaches. (Multiplicands are left alone: every use loads them first,
     * and filling 72 floats per k step would slow the sanitizer build.) */
    fragment()
    {
        for (int e = 0; e < 8; e++)
            x[e] = __builtin_nanf("");
    }
};
typedef fragment<accumulator, 16, 16, 8, float> cuemu_accumulator;

/* Element (r, c) of a tile at p in row- or column-major memory. */
static inline float cuemu_at(const float *p, unsigned ldm, bool row_major_memory, int r, int c)
{
    return row_major_memory ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r];
}

static inline void cuemu_load_a(cuemu_lane_part<64> &f, const float *p, unsigned ldm, bool row_major_memory)
{
    cuemu_check_tile("wmma::load_matrix_sync", p, ldm);
    const int l = cuemu_lane();
    for (int e = 0; e < 8; e++)
        for (int k = 0; k < 8; k++)
            f.x[8 * e + k] = cuemu_at(p, ldm, row_major_memory, l / 16 + 2 * e, k);
}

static inline void cuemu_load_b(cuemu_lane_part<8> &f, const float *p, unsigned ldm, bool row_major_memory)
{
    cuemu_check_tile("wmma::load_matrix_sync", p, ldm);
    const int l = cuemu_lane();
    for (int k = 0; k < 8; k++)
        f.x[k] = cuemu_at(p, ldm, row_major_memory, k, l % 16);
}

template <typename Layout>
static inline void load_matrix_sync(fragment<matrix_a, 16, 16, 8, precision::tf32, Layout> &f, const float *p,
                                    unsigned ldm)
{
    cuemu_load_a(f, p, ldm, std::is_same<Layout, row_major>::value);
}
template <typename Layout>
static inline void load_matrix_sync(fragment<matrix_b, 16, 16, 8, precision::tf32, Layout> &f, const float *p,
                                    unsigned ldm)
{
    cuemu_load_b(f, p, ldm, std::is_same<Layout, row_major>::value);
}

static inline size_t cuemu_acc_offset(int e, unsigned ldm, layout_t layout)
{
    const int i = cuemu_lane() + 32 * e, r = i / 16, c = i % 16;
    return layout == mem_row_major ? (size_t)r * ldm + c : (size_t)c * ldm + r;
}

static inline void load_matrix_sync(cuemu_accumulator &f, const float *p, unsigned ldm, layout_t layout)
{
    cuemu_check_tile("wmma::load_matrix_sync", p, ldm);
    for (int e = 0; e < 8; e++)
        f.x[e] = p[cuemu_acc_offset(e, ldm, layout)];
}

static inline void store_matrix_sync(float *p, const cuemu_accumulator &f, unsigned ldm, layout_t layout)
{
    cuemu_check_tile("wmma::store_matrix_sync", p, ldm);
    for (int e = 0; e < 8; e++)
        p[cuemu_acc_offset(e, ldm, layout)] = f.x[e];
}

static inline void fill_fragment(cuemu_accumulator &f, float v)
{
    for (int e = 0; e < 8; e++)
        f.x[e] = v;
}

template <typename LayoutA, typename LayoutB>
static inline void mma_sync(cuemu_accumulator &d, const fragment<matrix_a, 16, 16, 8, precision::tf32, LayoutA> &a,
                            const fragment<matrix_b, 16, 16, 8, precision::tf32, LayoutB> &b,
                            const cuemu_accumulator &c)
{
    float bk[8];
    for (int k = 0; k < 8; k++)
        bk[k] = cuemu_tf32_operand(b.x[k]);
    for (int e = 0; e < 8; e++) {
        float acc = c.x[e];
        for (int k = 0; k < 8; k++)
            acc += cuemu_tf32_operand(a.x[8 * e + k]) * bk[k];
        d.x[e] = acc;
    }
}

} // namespace wmma
} // namespace nvcuda

#endif
