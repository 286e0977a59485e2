/* The MLP of one NCA step on tensor cores (run.matmul = tf32): the same
 * fused tiles as k_mlp_forward / k_mlp_backward (step_forward.cu,
 * step_backward.cu: the same selection, block/tile assignment, perception,
 * masks and partial weight-gradient slices), but every matrix product of
 * the two dense layers is TF32 wmma (m16n16k8, fp32 accumulation):
 *
 *   forward   r  = relu(p w1 + b1)       [TILE x KP] [KP x HP]
 *             du = r w2                  [TILE x HP] [HP x CP]
 *   backward  g  = (r > 0) * (gu w2^T)   [TILE x CP] [CP x HP]
 *             gw1 += p^T g,  gw2 += r^T gu,  gb1 += sum of g's rows
 *             dL/dp = g w1^T             [TILE x HP] [HP x KP]
 *
 * Dimensions are padded with zeros to multiples of 16 (KP = 3C, HP = H,
 * CP = C rounded up), so padded terms add exact zeros. Multiplicands are
 * rounded to TF32 (10-bit mantissa, round to nearest) as fragments are
 * loaded; everything else (perception, bias, ReLU, the update, the masks)
 * is fp32 as in the FMA kernels. Each output tile has exactly one warp
 * computing it in a fixed k order, and weight-gradient tiles are added into
 * the block's own slice of d_partial in a fixed order, so the results are
 * bitwise reproducible (no atomics); they are not bitwise the FMA path's.
 *
 * r = relu(z) replaces z: the backward pass needs z only through
 * relu'(z) = (r > 0) and relu(z) itself. Tensor cores need compute
 * capability 8.0; for older architectures (MORPHOGEN_CUDA_ARCHITECTURES
 * may list them) the wmma code is left out and the kernels compile to a
 * trap, and the host refuses tf32 on such GPUs before launching anything. */
#include <type_traits>

#include <mma.h>

#include "nca_device.cuh"
#include "step_internal.cuh"

using namespace nvcuda;

#define MG_TC_WARPS (MG_CUDA_THREADS / 32)

/* TF32 wmma exists from sm_80 on; the host pass always sees it. */
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define MG_TC_HAVE_TF32 1
#else
#define MG_TC_HAVE_TF32 0
#endif

#if MG_TC_HAVE_TF32
typedef wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> mg_frag_a_row;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major> mg_frag_a_col;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> mg_frag_b_row;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> mg_frag_b_col;
typedef wmma::fragment<wmma::accumulator, 16, 16, 8, float> mg_frag_acc;
#endif

/* Shared memory of the tensor-core kernels, offsets in floats, each a
 * multiple of 8 (32 bytes, wmma's pointer alignment). Row strides are the
 * padded widths plus 4 floats (a multiple of 4, as wmma's ldm must be),
 * which staggers rows across banks. */
struct mg_tc_layout {
    int C, H, K, KP, HP, CP, KS, HS, CS;
    size_t w1, b1, w2, p, r, g, u, scratch, cells, total;
};

__host__ __device__ inline mg_tc_layout mg_tc_layout_for(int C, int H)
{
    mg_tc_layout L;
    L.C = C;
    L.H = H;
    L.K = 3 * C;
    L.KP = (L.K + 15) / 16 * 16;
    L.HP = (H + 15) / 16 * 16;
    L.CP = (C + 15) / 16 * 16;
    L.KS = L.KP + 4;
    L.HS = L.HP + 4;
    L.CS = L.CP + 4;
    size_t at = 0;
    const auto take = [&at](size_t floats) {
        const size_t here = at;
        at += (floats + 7) / 8 * 8;
        return here;
    };
    L.w1 = take((size_t)L.KP * L.HS);              /* w1 [KP][HS] */
    L.b1 = take((size_t)L.HP);                     /* b1 [HP] */
    L.w2 = take((size_t)L.HP * L.CS);              /* w2 [HP][CS] */
    L.p = take((size_t)MG_CUDA_TILE * L.KS);       /* p, then dL/dp [TILE][KS] */
    L.r = take((size_t)MG_CUDA_TILE * L.HS);       /* relu(z) [TILE][HS] */
    L.g = take((size_t)MG_CUDA_TILE * L.HS);       /* dL/dz [TILE][HS] (backward) */
    L.u = take((size_t)MG_CUDA_TILE * L.CS);       /* du or dL/du [TILE][CS] */
    L.scratch = take((size_t)MG_TC_WARPS * 256);   /* one 16x16 tile per warp */
    L.cells = take(MG_CUDA_TILE);                  /* the tile's cell indices (ints) */
    L.total = at;
    return L;
}

/* The weights into shared memory, zero-padded, and p's padding columns
 * (which the perception never writes) zeroed once per block. */
__device__ __forceinline__ void mg_tc_stage(const mg_tc_layout &L, const float *__restrict__ params, float *sm)
{
    const int K = L.K, H = L.H, C = L.C;
    const float *w1 = params, *b1 = params + (size_t)K * H, *w2 = b1 + H;
    for (int i = threadIdx.x; i < L.KP * L.HS; i += blockDim.x) {
        const int k = i / L.HS, h = i % L.HS;
        sm[L.w1 + i] = k < K && h < H ? w1[(size_t)k * H + h] : 0.0f;
    }
    for (int h = threadIdx.x; h < L.HP; h += blockDim.x)
        sm[L.b1 + h] = h < H ? b1[h] : 0.0f;
    for (int i = threadIdx.x; i < L.HP * L.CS; i += blockDim.x) {
        const int h = i / L.CS, c = i % L.CS;
        sm[L.w2 + i] = h < H && c < C ? w2[(size_t)h * C + c] : 0.0f;
    }
    for (int i = threadIdx.x; i < MG_CUDA_TILE * (L.KS - K); i += blockDim.x) {
        const int t = i / (L.KS - K), k = K + i % (L.KS - K);
        sm[L.p + (size_t)t * L.KS + k] = 0.0f;
    }
}

#if MG_TC_HAVE_TF32
template <typename Frag> __device__ __forceinline__ void mg_tc_round(Frag &f)
{
    for (int i = 0; i < f.num_elements; i++)
        f.x[i] = wmma::__float_to_tf32(f.x[i]);
}

/* One warp: acc += the 16x16 tile (i0, j0) of A [M][Kd] B [Kd][N], summed
 * in k order. A is row-major (a[i][k] at a + i lda + k) or, with ColA,
 * column-major (a[i][k] at a + k lda + i); likewise B (b[k][j] at
 * b + k ldb + j, or with ColB at b + j ldb + k). Kd a multiple of 8. */
template <bool ColA, bool ColB>
__device__ __forceinline__ void mg_tc_tile_acc(int i0, int j0, int Kd, const float *a, int lda, const float *b,
                                               int ldb, mg_frag_acc &acc)
{
    typedef typename std::conditional<ColA, mg_frag_a_col, mg_frag_a_row>::type frag_a;
    typedef typename std::conditional<ColB, mg_frag_b_col, mg_frag_b_row>::type frag_b;
    for (int k0 = 0; k0 < Kd; k0 += 8) {
        frag_a fa;
        frag_b fb;
        wmma::load_matrix_sync(fa, ColA ? a + (size_t)k0 * lda + i0 : a + (size_t)i0 * lda + k0, lda);
        wmma::load_matrix_sync(fb, ColB ? b + (size_t)j0 * ldb + k0 : b + (size_t)k0 * ldb + j0, ldb);
        mg_tc_round(fa);
        mg_tc_round(fb);
        wmma::mma_sync(acc, fa, fb, acc);
    }
}

/* One warp: that tile alone (from zero) into tile [16][ldt] (row-major). */
template <bool ColA, bool ColB>
__device__ __forceinline__ void mg_tc_tile(int i0, int j0, int Kd, const float *a, int lda, const float *b, int ldb,
                                           float *tile, int ldt)
{
    mg_frag_acc acc;
    wmma::fill_fragment(acc, 0.0f);
    mg_tc_tile_acc<ColA, ColB>(i0, j0, Kd, a, lda, b, ldb, acc);
    wmma::store_matrix_sync(tile, acc, ldt, wmma::mem_row_major);
}

/* out [M][ldo] = A B (as mg_tc_tile) over 16x16 output tiles shared out
 * among the block's warps. M, N multiples of 16, Kd of 8.
 *
 * A product with fewer output tiles than the block has warps (the output
 * layer: M = TILE = 32 rows and N = CP = 16 columns make 2 tiles for 8
 * warps) would leave most warps idle through its whole k loop, so its k
 * range is split into `parts` consecutive slices: warp w computes slice
 * w / tiles of tile w % tiles into its scratch tile, and after a barrier
 * the block adds the slices of each tile in slice order. The split depends
 * only on the shapes, so the sums are the same on every run. Without a
 * split each warp stores straight into out (tile t to warp t mod warps).
 * Either way the caller's barrier must follow before out is read. */
template <bool ColA, bool ColB>
__device__ __forceinline__ void mg_tc_gemm(int M, int N, int Kd, const float *a, int lda, const float *b, int ldb,
                                           float *out, int ldo, float *scratch)
{
    const int warp = (int)threadIdx.x / 32, mt = M / 16, tiles = mt * (N / 16), ksteps = Kd / 8;
    const int idle = tiles < MG_TC_WARPS ? MG_TC_WARPS / tiles : 1, want = idle < ksteps ? idle : ksteps;
    const int per = (ksteps + want - 1) / want * 8, parts = (Kd + per - 1) / per; /* k per slice; none empty */
    if (parts <= 1) {
        for (int t = warp; t < tiles; t += MG_TC_WARPS) {
            const int i0 = (t % mt) * 16, j0 = (t / mt) * 16;
            mg_tc_tile<ColA, ColB>(i0, j0, Kd, a, lda, b, ldb, out + (size_t)i0 * ldo + j0, ldo);
        }
        return;
    }
    if (warp < tiles * parts) {
        const int t = warp % tiles, k0 = warp / tiles * per, kn = Kd - k0 < per ? Kd - k0 : per;
        const float *a_k = ColA ? a + (size_t)k0 * lda : a + k0, *b_k = ColB ? b + k0 : b + (size_t)k0 * ldb;
        mg_tc_tile<ColA, ColB>((t % mt) * 16, (t / mt) * 16, kn, a_k, lda, b_k, ldb, scratch + (size_t)warp * 256,
                               16);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < tiles * 256; i += blockDim.x) {
        const int t = i / 256, e = i % 256;
        float sum = scratch[i];
        for (int part = 1; part < parts; part++)
            sum += scratch[(size_t)part * tiles * 256 + i];
        out[(size_t)((t % mt) * 16 + e / 16) * ldo + (t / mt) * 16 + e % 16] = sum;
    }
}

/* r = relu(r + b1) over the tile (padded units have zero weights and bias,
 * so they stay exactly zero). */
__device__ __forceinline__ void mg_tc_bias_relu(const mg_tc_layout &L, float *sm)
{
    float *r = sm + L.r;
    const float *b1 = sm + L.b1;
    for (int i = threadIdx.x; i < MG_CUDA_TILE * L.HP; i += blockDim.x) {
        const int t = i / L.HP, h = i % L.HP;
        const float z = r[(size_t)t * L.HS + h] + b1[h];
        r[(size_t)t * L.HS + h] = z > 0.0f ? z : 0.0f;
    }
}

__device__ __forceinline__ void mg_tc_hidden(const mg_tc_layout &L, float *sm)
{
    mg_tc_gemm<false, false>(MG_CUDA_TILE, L.HP, L.KP, sm + L.p, L.KS, sm + L.w1, L.HS, sm + L.r, L.HS,
                             sm + L.scratch);
    __syncthreads();
    mg_tc_bias_relu(L, sm);
}
#endif

/* The start of each tile of both kernels (mg_begin_tile), then its
 * perception into p; returns the tile's cell count. */
__device__ __forceinline__ int mg_tc_begin_tile(const mg_tc_layout &L, const mg_cuda_step &a, const mg_cuda_work &w,
                                                int b, int tile, const float *s, float *sm)
{
    int *tile_cells = reinterpret_cast<int *>(sm + L.cells);
    const int nv = mg_begin_tile(w, b, a.height * a.width, tile, tile_cells);
    mg_perceive_tile(L.C, L.KS, s, a.height, a.width, tile_cells, nv, sm + L.p);
    return nv;
}

__global__ void __launch_bounds__(MG_CUDA_THREADS)
k_mlp_forward_tf32(mg_cuda_step a, mg_cuda_work w, const float *__restrict__ s_in, float *__restrict__ s_mid)
{
#if !MG_TC_HAVE_TF32
    __trap();
#else
    /* wmma's tiles need 32-byte alignment; the type promises only 16. */
    extern __shared__ __align__(32) float4 smem_tf4[];
    float *sm = reinterpret_cast<float *>(smem_tf4);
    const mg_tc_layout L = mg_tc_layout_for(a.channels, a.hidden);
    const int C = L.C, cells = a.height * a.width, b = blockIdx.y, tiles = mg_tile_count(w, b);
    if ((int)blockIdx.x >= tiles)
        return; /* the whole block leaves together: no barrier is skipped */
    mg_tc_stage(L, a.d_params, sm);
    const float *s = s_in + (size_t)b * cells * C;
    const int *tile_cells = reinterpret_cast<const int *>(sm + L.cells);
    for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const int nv = mg_tc_begin_tile(L, a, w, b, tile, s, sm);
        __syncthreads();
        mg_tc_hidden(L, sm);
        __syncthreads();
        mg_tc_gemm<false, false>(MG_CUDA_TILE, L.CP, L.HP, sm + L.r, L.HS, sm + L.w2, L.CS, sm + L.u, L.CS,
                                 sm + L.scratch);
        __syncthreads();
        for (int item = threadIdx.x; item < nv * C; item += blockDim.x) {
            const int t = item / C, c = item % C, cell = tile_cells[t];
            const bool rgba_frozen = mg_dev_frozen(a.d_freeze, cell) == MG_DEV_CELL_FROZEN_RGBA;
            const float old = s[(size_t)cell * C + c];
            s_mid[((size_t)b * cells + cell) * C + c] = rgba_frozen && c < 4 ? old : old + sm[L.u + (size_t)t * L.CS + c];
        }
    }
#endif
}

/* The weight gradients are gw1 = p^T g (KP/16 x HP/16 tiles of 16x16) and
 * gw2 = r^T gu (HP/16 x CP/16 tiles), gw1's tiles numbered first. */
__host__ __device__ inline int mg_tc_grad_tiles(const mg_tc_layout &L)
{
    return (L.KP / 16) * (L.HP / 16) + (L.HP / 16) * (L.CP / 16);
}

/* Weight-gradient tiles each warp keeps in accumulator fragments across
 * all of its block's cell tiles (warp w owns tiles w, w + WARPS, ...), so
 * that the block's slice of d_partial is read and written once per step
 * rather than once per cell tile, with no barrier per tile between: 4
 * fragments (32 registers) hold the Distill config's 32 tiles (C = 16,
 * H = 128), 8 the large config's 64 (C = 32); beyond that (0) each cell
 * tile's gradients are added into the slice at once. */
__host__ __device__ inline int mg_tc_grad_frags(const mg_tc_layout &L)
{
    const int total = mg_tc_grad_tiles(L);
    return total <= 4 * MG_TC_WARPS ? 4 : total <= 8 * MG_TC_WARPS ? 8 : 0;
}

#if MG_TC_HAVE_TF32
/* Weight-gradient tile t: whether it is gw1's, its first row and column. */
struct mg_tc_grad_tile {
    bool gw1;
    int i0, j0;
};
__device__ __forceinline__ mg_tc_grad_tile mg_tc_grad_tile_at(const mg_tc_layout &L, int t)
{
    const int t1 = (L.KP / 16) * (L.HP / 16);
    const bool gw1 = t < t1;
    const int mt = gw1 ? L.KP / 16 : L.HP / 16, tt = gw1 ? t : t - t1;
    return {gw1, (tt % mt) * 16, (tt / mt) * 16};
}

/* One warp: acc += weight-gradient tile t of this cell tile. A is p^T or
 * r^T (column-major views of p [TILE][KS], r [TILE][HS]); B is g [TILE][HS]
 * or gu [TILE][CS], row-major; k runs over the tile's cells. */
__device__ __forceinline__ void mg_tc_grad_tile_acc(const mg_tc_layout &L, const float *sm, int t, mg_frag_acc &acc)
{
    const mg_tc_grad_tile gt = mg_tc_grad_tile_at(L, t);
    if (gt.gw1)
        mg_tc_tile_acc<true, false>(gt.i0, gt.j0, MG_CUDA_TILE, sm + L.p, L.KS, sm + L.g, L.HS, acc);
    else
        mg_tc_tile_acc<true, false>(gt.i0, gt.j0, MG_CUDA_TILE, sm + L.r, L.HS, sm + L.u, L.CS, acc);
}

/* One round of adding weight-gradient tiles into the block's slice `part`:
 * warp w's fragment f is tile round + w (if there is one); each warp stores
 * it into its scratch tile, then the block adds the round's tiles (every
 * element of `part` has this one writer, tiles in a fixed order). */
__device__ __forceinline__ void mg_tc_grads_add_round(const mg_tc_layout &L, float *sm, int round,
                                                      const mg_frag_acc &f, float *part)
{
    const int total = mg_tc_grad_tiles(L), warp = (int)threadIdx.x / 32;
    float *scratch = sm + L.scratch;
    if (round + warp < total)
        wmma::store_matrix_sync(scratch + (size_t)warp * 256, f, 16, wmma::mem_row_major);
    __syncthreads();
    for (int i = threadIdx.x; i < MG_TC_WARPS * 256 && round + i / 256 < total; i += blockDim.x) {
        const mg_tc_grad_tile gt = mg_tc_grad_tile_at(L, round + i / 256);
        const int row = gt.i0 + (i % 256) / 16, col = gt.j0 + i % 16;
        if (gt.gw1 && row < L.K && col < L.H)
            part[(size_t)row * L.H + col] += scratch[i];
        else if (!gt.gw1 && row < L.H && col < L.C)
            part[(size_t)L.K * L.H + L.H + (size_t)row * L.C + col] += scratch[i];
    }
    __syncthreads();
}

/* Without kept fragments: this cell tile's weight gradients added into
 * `part` now, one tile per warp per round. */
__device__ __forceinline__ void mg_tc_weight_grads(const mg_tc_layout &L, float *sm, float *part)
{
    const int total = mg_tc_grad_tiles(L), warp = (int)threadIdx.x / 32;
    for (int round = 0; round < total; round += MG_TC_WARPS) {
        mg_frag_acc acc;
        wmma::fill_fragment(acc, 0.0f);
        if (round + warp < total)
            mg_tc_grad_tile_acc(L, sm, round + warp, acc);
        mg_tc_grads_add_round(L, sm, round, acc, part);
    }
}

/* With FRAGS kept fragments: this cell tile's weight gradients into them
 * (no barrier; the caller's must follow before p, r, g or u change). */
template <int FRAGS>
__device__ __forceinline__ void mg_tc_weight_grads_keep(const mg_tc_layout &L, const float *sm,
                                                        mg_frag_acc (&acc)[FRAGS])
{
    const int total = mg_tc_grad_tiles(L), warp = (int)threadIdx.x / 32;
#pragma unroll
    for (int j = 0; j < FRAGS; j++)
        if (warp + j * MG_TC_WARPS < total)
            mg_tc_grad_tile_acc(L, sm, warp + j * MG_TC_WARPS, acc[j]);
}

/* The kept fragments added into `part` once, after the block's last cell
 * tile (the rounds' barriers: once per block and step, not per tile). */
template <int FRAGS>
__device__ __forceinline__ void mg_tc_weight_grads_flush(const mg_tc_layout &L, float *sm,
                                                         const mg_frag_acc (&acc)[FRAGS], float *part)
{
#pragma unroll
    for (int j = 0; j < FRAGS; j++)
        if (j * MG_TC_WARPS < mg_tc_grad_tiles(L)) /* the same for the whole block */
            mg_tc_grads_add_round(L, sm, j * MG_TC_WARPS, acc[j], part);
}

/* The backward kernels' body, FRAGS weight-gradient fragments kept per warp
 * (mg_tc_grad_frags); sm is the dynamic shared memory. */
template <int FRAGS>
__device__ __forceinline__ void mg_tc_backward(const mg_cuda_step &a, const mg_cuda_work &w,
                                               const float *__restrict__ s_in, const float *__restrict__ g_out,
                                               float *sm)
{
    const mg_tc_layout L = mg_tc_layout_for(a.channels, a.hidden);
    const int C = L.C, H = L.H, K = L.K, cells = a.height * a.width, b = blockIdx.y, tiles = mg_tile_count(w, b);
    if ((int)blockIdx.x >= tiles)
        return;
    mg_tc_stage(L, a.d_params, sm);
    const size_t n_params = mg_cuda_n_params(C, H);
    float *part = w.d_partial + ((size_t)b * MG_CUDA_GROUPS + blockIdx.x) * n_params;
    float *gb1 = part + (size_t)K * H;
    const float *s = s_in + (size_t)b * cells * C;
    const int *tile_cells = reinterpret_cast<const int *>(sm + L.cells);
    float *r = sm + L.r, *g = sm + L.g;
    mg_frag_acc acc[FRAGS > 0 ? FRAGS : 1];
    if constexpr (FRAGS > 0)
        for (int j = 0; j < FRAGS; j++)
            wmma::fill_fragment(acc[j], 0.0f);
    for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const int nv = mg_tc_begin_tile(L, a, w, b, tile, s, sm);
        mg_tile_update_grad(a, g_out + (size_t)b * cells * C, tile_cells, nv, L.CP, L.CS, sm + L.u);
        __syncthreads();
        mg_tc_hidden(L, sm);
        __syncthreads();
        /* g = (r > 0) * (gu w2^T); w2^T is the column-major view of w2 [HP][CS]. */
        mg_tc_gemm<false, true>(MG_CUDA_TILE, L.HP, L.CP, sm + L.u, L.CS, sm + L.w2, L.CS, g, L.HS, sm + L.scratch);
        __syncthreads();
        for (int i = threadIdx.x; i < MG_CUDA_TILE * L.HP; i += blockDim.x) {
            const size_t at = (size_t)(i / L.HP) * L.HS + i % L.HP;
            if (!(r[at] > 0.0f))
                g[at] = 0.0f;
        }
        __syncthreads();
        if constexpr (FRAGS > 0) {
            mg_tc_weight_grads_keep<FRAGS>(L, sm, acc);
            __syncthreads(); /* p is overwritten below */
        } else {
            mg_tc_weight_grads(L, sm, part);
        }
        /* gb1[h] += sum_i g[i][h] over the tile's cells, in cell order. */
        for (int h = threadIdx.x; h < H; h += blockDim.x) {
            float sum = 0.0f;
            for (int i = 0; i < nv; i++)
                sum += g[(size_t)i * L.HS + h];
            gb1[h] += sum;
        }
        /* dL/dp = g w1^T into p (its last reader, gw1, is done); w1^T is the
         * column-major view of w1 [KP][HS]. */
        mg_tc_gemm<false, true>(MG_CUDA_TILE, L.KP, L.HP, g, L.HS, sm + L.w1, L.HS, sm + L.p, L.KS, sm + L.scratch);
        __syncthreads();
        for (int item = threadIdx.x; item < nv * K; item += blockDim.x) {
            const int t = item / K, k = item % K;
            w.d_gp[((size_t)b * cells + tile_cells[t]) * K + k] = sm[L.p + (size_t)t * L.KS + k];
        }
    }
    /* scratch's last users, the gemm above, are behind its barrier. */
    if constexpr (FRAGS > 0)
        mg_tc_weight_grads_flush<FRAGS>(L, sm, acc, part);
}
#endif

/* One kernel per way of summing weight gradients (not a kernel template:
 * each has its own name in profiles and its own register count). Shared
 * memory aligned for wmma's tiles, as the forward's. */
#if MG_TC_HAVE_TF32
#define MG_TC_BACKWARD(frags)                                                                                       \
    extern __shared__ __align__(32) float4 smem_tb4[];                                                              \
    mg_tc_backward<frags>(a, w, s_in, g_out, reinterpret_cast<float *>(smem_tb4))
#else
#define MG_TC_BACKWARD(frags) __trap()
#endif

__global__ void __launch_bounds__(MG_CUDA_THREADS)
k_mlp_backward_tf32(mg_cuda_step a, mg_cuda_work w, const float *__restrict__ s_in, const float *__restrict__ g_out)
{
    MG_TC_BACKWARD(0);
}

__global__ void __launch_bounds__(MG_CUDA_THREADS)
k_mlp_backward_tf32_keep4(mg_cuda_step a, mg_cuda_work w, const float *__restrict__ s_in,
                          const float *__restrict__ g_out)
{
    MG_TC_BACKWARD(4);
}

/* Eight kept fragments are 64 accumulator registers per thread. Below
 * sm_90, ptxas (CUDA 13.0) left to the thread count alone holds this kernel
 * to 128 registers and spills 140 bytes (sm_80, sm_86, sm_89); asked for
 * one block per SM it takes 168 and spills nothing. That costs no
 * occupancy: every shape that needs eight fragments (33 to 64 gradient
 * tiles) stages at least 80 KiB of shared memory (C = 38, H = 33 the
 * least), so an sm_86 or sm_89 SM never holds two such blocks, and an sm_80
 * SM only for C = 38..42 with H = 33..48. sm_90 keeps ptxas's own choice
 * (213 registers, no spills). */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#define MG_TC_KEEP8_MIN_BLOCKS 1
#else
#define MG_TC_KEEP8_MIN_BLOCKS 0 /* no minimum: ptxas's own choice */
#endif

__global__ void __launch_bounds__(MG_CUDA_THREADS, MG_TC_KEEP8_MIN_BLOCKS)
k_mlp_backward_tf32_keep8(mg_cuda_step a, mg_cuda_work w, const float *__restrict__ s_in,
                          const float *__restrict__ g_out)
{
    MG_TC_BACKWARD(8);
}

size_t mg_cuda_mlp_tf32_smem_bytes(int channels, int hidden)
{
    return mg_tc_layout_for(channels, hidden).total * sizeof(float);
}

cudaError_t mg_cuda_mlp_tf32_configure(size_t bytes)
{
    const void *kernels[] = {(const void *)k_mlp_forward_tf32, (const void *)k_mlp_backward_tf32,
                             (const void *)k_mlp_backward_tf32_keep4, (const void *)k_mlp_backward_tf32_keep8};
    for (const void *k : kernels) {
        const cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
        if (e != cudaSuccess)
            return e;
    }
    return cudaSuccess;
}

void mg_cuda_mlp_tf32_forward(const mg_cuda_step *a, const mg_cuda_work *w, const float *d_s_in, float *d_s_mid,
                              cudaStream_t stream)
{
    const size_t smem = mg_cuda_mlp_tf32_smem_bytes(a->channels, a->hidden);
    k_mlp_forward_tf32<<<dim3(MG_CUDA_GROUPS, (unsigned)a->n), MG_CUDA_THREADS, smem, stream>>>(*a, *w, d_s_in, d_s_mid);
}

extern "C" int mg_cuda_tf32_grad_frags(int channels, int hidden)
{
    return mg_tc_grad_frags(mg_tc_layout_for(channels, hidden));
}

void mg_cuda_mlp_tf32_backward(const mg_cuda_step *a, const mg_cuda_work *w, const float *d_s_in,
                               const float *d_g_out, cudaStream_t stream)
{
    const size_t smem = mg_cuda_mlp_tf32_smem_bytes(a->channels, a->hidden);
    const dim3 grid(MG_CUDA_GROUPS, (unsigned)a->n);
    switch (mg_cuda_tf32_grad_frags(a->channels, a->hidden)) {
    case 4:
        k_mlp_backward_tf32_keep4<<<grid, MG_CUDA_THREADS, smem, stream>>>(*a, *w, d_s_in, d_g_out);
        break;
    case 8:
        k_mlp_backward_tf32_keep8<<<grid, MG_CUDA_THREADS, smem, stream>>>(*a, *w, d_s_in, d_g_out);
        break;
    default:
        k_mlp_backward_tf32<<<grid, MG_CUDA_THREADS, smem, stream>>>(*a, *w, d_s_in, d_g_out);
    }
}
