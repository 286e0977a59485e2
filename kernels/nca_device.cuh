/* Device helpers shared by the step kernels: the grid geometry, the alive
 * pooling and the Sobel weights, each written to evaluate exactly what the
 * CPU reference (src/nca/perceive.h) evaluates. */
#ifndef MORPHOGEN_KERNELS_NCA_DEVICE_CUH
#define MORPHOGEN_KERNELS_NCA_DEVICE_CUH

#include "mg_cuda.h"
#include "philox.cuh"

/* MG_CELL_FROZEN and MG_CELL_FROZEN_RGBA of include/morphogen/nca.h (that
 * header is C; the values are repeated here and checked in backend_cuda.c). */
#define MG_DEV_CELL_FROZEN 1
#define MG_DEV_CELL_FROZEN_RGBA 2

/* Sobel-x weight of the neighbour at offset (dy, dx), scaled by 1/8; Sobel-y
 * is the transpose. Exact in binary, as on the CPU. */
__device__ __forceinline__ float mg_sobel_x(int dy, int dx)
{
    const float w = dy == 0 ? 0.25f : 0.125f;
    return dx == 0 ? 0.0f : (dx < 0 ? -w : w);
}
__device__ __forceinline__ float mg_sobel_y(int dy, int dx) { return mg_sobel_x(dx, dy); }

/* (max alpha over the 3x3 neighbourhood inside the grid) > thr, with the CPU's
 * comparisons in the CPU's order (row maxima, then the column), so that even
 * NaN states give the same mask. alpha(i) is cell i's alpha. */
template <typename Alpha>
__device__ __forceinline__ bool mg_alive_by(int H, int W, int y, int x, float thr, const Alpha &alpha)
{
    float rowmax[3] = {0.0f, 0.0f, 0.0f}; /* rows outside the grid are never read */
    for (int j = 0; j < 3; j++) {
        const int yy = y + j - 1;
        if (yy < 0 || yy >= H)
            continue;
        const int row = yy * W;
        float m = alpha(row + x);
        if (x > 0 && alpha(row + x - 1) > m)
            m = alpha(row + x - 1);
        if (x + 1 < W && alpha(row + x + 1) > m)
            m = alpha(row + x + 1);
        rowmax[j] = m;
    }
    float m = rowmax[1];
    if (y > 0 && rowmax[0] > m)
        m = rowmax[0];
    if (y + 1 < H && rowmax[2] > m)
        m = rowmax[2];
    return m > thr;
}

/* The same of a state `s` [cells][C] (one sample's). */
__device__ __forceinline__ bool mg_alive_at(const float *s, int H, int W, int C, int y, int x, float thr)
{
    return mg_alive_by(H, W, y, x, thr, [=](int i) { return s[(size_t)i * C + 3]; });
}

__device__ __forceinline__ int mg_dev_frozen(const unsigned char *freeze, int cell)
{
    return freeze ? freeze[cell] : 0;
}

/* Offset of step `step`'s half of d_pre and d_flag ([2][n][cells]): a step
 * reads its own half while its k_finish writes the next step's. */
__device__ __host__ inline size_t mg_step_half(const mg_cuda_step &a, int step)
{
    return (size_t)(step & 1) * (size_t)a.n * (size_t)a.height * (size_t)a.width;
}

/* The same for d_flag_count ([2][n][spans]). */
__device__ __host__ inline size_t mg_span_half(const mg_cuda_step &a, int step)
{
    return (size_t)(step & 1) * (size_t)a.n * (size_t)mg_cuda_spans(a.height * a.width);
}

/* Whether cell `cell` of sample b runs the MLP in step `step`, given its
 * pre-update alive mask: it fires, is not frozen, and is alive before the
 * step or pinned (any other update would be discarded by the fire or alive
 * mask). */
__device__ __forceinline__ bool mg_select_cell(const mg_cuda_step &a, int step, int b, int cell, bool pre)
{
    const bool fires = mg_fires(a.seed, *a.d_iteration, a.d_sample_index[b], (uint32_t)step, a.fire_threshold,
                                (uint32_t)cell);
    return fires && mg_dev_frozen(a.d_freeze, cell) != MG_DEV_CELL_FROZEN && (pre || cell == a.pin_cell);
}

/* Shared-memory layout of the fused MLP kernels (see step_forward.cu). Row
 * strides are padded by 4 floats so that rows of different cells or weights
 * start in different banks while float4 accesses stay 16-byte aligned;
 * hidden units are padded to HP = H rounded up to 4 with zero weights, so the
 * padded units compute exact zeros and contribute nothing. */
struct mg_mlp_layout {
    int C, H, K, HP, WS;
    size_t w1, b1, w2t, p, z, gz, gu, cells, total; /* offsets in floats */
};

__host__ __device__ inline mg_mlp_layout mg_mlp_layout_for(int C, int H)
{
    mg_mlp_layout L;
    L.C = C;
    L.H = H;
    L.K = 3 * C;
    L.HP = (H + 3) / 4 * 4;
    L.WS = L.HP + 4;
    size_t at = 0;
    L.w1 = at;  at += (size_t)L.K * L.WS;            /* w1  [K][WS]  */
    L.b1 = at;  at += (size_t)L.HP;                  /* b1  [HP]     */
    L.w2t = at; at += (size_t)C * L.WS;              /* w2^T [C][WS] */
    L.p = at;   at += (size_t)MG_CUDA_TILE * L.K;    /* p   [TILE][K] */
    L.z = at;   at += (size_t)MG_CUDA_TILE * L.WS;   /* z   [TILE][WS] */
    L.gz = at;  at += (size_t)MG_CUDA_TILE * L.WS;   /* gz  [TILE][WS] (backward) */
    L.gu = at;  at += (size_t)MG_CUDA_TILE * C;      /* u or dL/du [TILE][C] */
    L.cells = at; at += MG_CUDA_TILE;                /* tile's cell indices (ints) */
    L.total = at;
    return L;
}

/* Stage the weights of `params` into shared memory in the layout above
 * (padding zero-filled). Called once per block; the block then loops over
 * many tiles. */
__device__ __forceinline__ void mg_stage_weights(const mg_mlp_layout &L, const float *__restrict__ params,
                                                 float *sm)
{
    const int K = L.K, H = L.H, C = L.C, HP = L.HP, WS = L.WS;
    const float *w1 = params, *b1 = params + (size_t)K * H, *w2 = b1 + H;
    for (int i = threadIdx.x; i < K * WS; i += blockDim.x) {
        const int k = i / WS, h = i % WS;
        sm[L.w1 + i] = h < H ? w1[(size_t)k * H + h] : 0.0f;
    }
    for (int h = threadIdx.x; h < HP; h += blockDim.x)
        sm[L.b1 + h] = h < H ? b1[h] : 0.0f;
    for (int i = threadIdx.x; i < C * WS; i += blockDim.x) {
        const int c = i / WS, h = i % WS;
        sm[L.w2t + i] = h < H ? w2[(size_t)h * C + c] : 0.0f;
    }
}

/* The MLP kernels' tiles: sample b's list of active cells (w.d_active, its
 * length w.d_count[b]) in tiles of MG_CUDA_TILE cells. */
__device__ __forceinline__ int mg_tile_count(const mg_cuda_work &w, int b)
{
    return (w.d_count[b] + MG_CUDA_TILE - 1) / MG_CUDA_TILE;
}

/* The start of one tile, by the whole block: waits until the previous tile
 * is finished with shared memory, puts the tile's cell indices into
 * tile_cells (0 past its end) and waits again. Returns the tile's number of
 * cells. */
__device__ __forceinline__ int mg_begin_tile(const mg_cuda_work &w, int b, int cells, int tile, int *tile_cells)
{
    const int count = w.d_count[b], first = tile * MG_CUDA_TILE;
    const int nv = count - first < MG_CUDA_TILE ? count - first : MG_CUDA_TILE;
    __syncthreads();
    if (threadIdx.x < MG_CUDA_TILE)
        tile_cells[threadIdx.x] = (int)threadIdx.x < nv ? w.d_active[(size_t)b * cells + first + threadIdx.x] : 0;
    __syncthreads();
    return nv;
}

/* Perception of the tile's cells into p [TILE][ldp] (columns 0..3C-1; rows
 * >= nv zeroed), each sum one FMA chain from 0 over the in-grid neighbours in
 * (dy, dx) order, as perceive_cell on the CPU. */
__device__ __forceinline__ void mg_perceive_tile(int C, int ldp, const float *__restrict__ s, int Hg, int Wg,
                                                 const int *cells, int nv, float *p)
{
    const int K = ldp;
    for (int i = threadIdx.x; i < MG_CUDA_TILE * C; i += blockDim.x) {
        const int t = i / C, c = i % C;
        float *pt = p + (size_t)t * K;
        if (t >= nv) {
            pt[c] = pt[C + c] = pt[2 * C + c] = 0.0f;
            continue;
        }
        const int cell = cells[t], y = cell / Wg, x = cell % Wg;
        float ax = 0.0f, ay = 0.0f;
        for (int dy = -1; dy <= 1; dy++) {
            const int ny = y + dy;
            if (ny < 0 || ny >= Hg)
                continue;
            for (int dx = -1; dx <= 1; dx++) {
                const int nx = x + dx;
                if (nx < 0 || nx >= Wg || (dx == 0 && dy == 0))
                    continue;
                const float v = s[((size_t)ny * Wg + nx) * C + c];
                ax = fmaf(mg_sobel_x(dy, dx), v, ax);
                ay = fmaf(mg_sobel_y(dy, dx), v, ay);
            }
        }
        pt[c] = s[(size_t)cell * C + c];
        pt[C + c] = ax;
        pt[2 * C + c] = ay;
    }
}

/* dL/du of the tile's cells into columns 0..width-1 of gu [TILE][ldu]:
 * g_out (m = 1 for these cells) on the channels the update reaches, zero in
 * columns C..width-1 and in rows past the tile's end. `g` is one sample's
 * dL/ds_out. */
__device__ __forceinline__ void mg_tile_update_grad(const mg_cuda_step &a, const float *__restrict__ g,
                                                    const int *cells, int nv, int width, int ldu, float *gu)
{
    const int C = a.channels;
    for (int i = threadIdx.x; i < MG_CUDA_TILE * width; i += blockDim.x) {
        const int t = i / width, c = i % width;
        float v = 0.0f;
        if (t < nv && c < C) {
            const int cell = cells[t];
            const bool rgba_frozen = mg_dev_frozen(a.d_freeze, cell) == MG_DEV_CELL_FROZEN_RGBA;
            if (!(rgba_frozen && c < 4))
                v = g[(size_t)cell * C + c];
        }
        gu[(size_t)t * ldu + c] = v;
    }
}

/* z = p w1 + b1 for all TILE rows: each thread owns 4 cells x 4 hidden units
 * (16 accumulators); per k it reads 4 broadcast perception values and one
 * float4 of w1. Each z is one FMA chain from b1 over k in order. */
__device__ __forceinline__ void mg_hidden_tile(const mg_mlp_layout &L, const float *sm, float *z)
{
    const int K = L.K, WS = L.WS, H4 = L.HP / 4;
    const float *p = sm + L.p, *w1 = sm + L.w1, *b1 = sm + L.b1;
    for (int item = threadIdx.x; item < (MG_CUDA_TILE / 4) * H4; item += blockDim.x) {
        const int h = (item % H4) * 4, i0 = (item / H4) * 4;
        const float4 b = *reinterpret_cast<const float4 *>(b1 + h);
        float acc[4][4];
#pragma unroll
        for (int r = 0; r < 4; r++) {
            acc[r][0] = b.x;
            acc[r][1] = b.y;
            acc[r][2] = b.z;
            acc[r][3] = b.w;
        }
        for (int k = 0; k < K; k++) {
            const float4 w = *reinterpret_cast<const float4 *>(w1 + (size_t)k * WS + h);
#pragma unroll
            for (int r = 0; r < 4; r++) {
                const float pv = p[(size_t)(i0 + r) * K + k];
                acc[r][0] = fmaf(pv, w.x, acc[r][0]);
                acc[r][1] = fmaf(pv, w.y, acc[r][1]);
                acc[r][2] = fmaf(pv, w.z, acc[r][2]);
                acc[r][3] = fmaf(pv, w.w, acc[r][3]);
            }
        }
#pragma unroll
        for (int r = 0; r < 4; r++)
            *reinterpret_cast<float4 *>(z + (size_t)(i0 + r) * WS + h) =
                make_float4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
    }
}

__device__ __forceinline__ float4 mg_relu4(float4 v)
{
    return make_float4(v.x > 0.0f ? v.x : 0.0f, v.y > 0.0f ? v.y : 0.0f, v.z > 0.0f ? v.z : 0.0f,
                       v.w > 0.0f ? v.w : 0.0f);
}

#endif
