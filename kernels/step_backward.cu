/* One NCA step backward on a batch of samples (mg_step_backward_f32's math).
 *
 * 1. k_compact (step_select.cu) of the cells the forward's k_finish marked
 *    on the tape (m = 1, fired, not frozen: MG_TAPE_MLP), the only ones
 *    whose MLP gets a gradient.
 * 2. k_mlp_backward: per tile of such cells (same block/tile assignment as
 *    forward), recompute perception and z, then dL/dz, the weight-gradient
 *    contributions and dL/dp, fused in shared memory. Weight gradients are
 *    summed over the tile in registers and added into the block's own slice
 *    of d_partial ([n][GROUPS][P]): every element has exactly one writer, so
 *    the order of additions is fixed and there are no atomics.
 * 3. k_grad_input: g_in = m * g_out plus the transposed perception of the
 *    neighbours' dL/dp, gathered (not scattered) per input cell, sources in
 *    ascending cell order as the CPU adds them.
 * mg_cuda_reduce_partials sums the per-block slices in block order once per
 * batch. */
#include "nca_device.cuh"
#include "step_internal.cuh"

/* The body of k_mlp_backward (KEEP = false) and k_mlp_backward_keep: the
 * block's running weight-gradient sums are its d_partial slice itself,
 * read-modified-written in global memory per cell tile, or (KEEP) a copy of
 * it in shared memory, read once here and written back once after the last
 * tile. Each element sees the same additions in the same order either way,
 * so the two give the same bits. A template, not a run-time choice: with
 * one pointer that may be shared or global, ptxas spilled (at 80
 * registers) or, allowed more, took 149. */
template <bool KEEP>
__device__ __forceinline__ void mg_mlp_backward(const mg_cuda_step &a, const mg_cuda_work &w,
                                                const float *__restrict__ s_in, const float *__restrict__ g_out,
                                                float *sm)
{
    const mg_mlp_layout L = mg_mlp_layout_for(a.channels, a.hidden);
    const int C = L.C, H = L.H, K = L.K, WS = L.WS, HP = L.HP, H4 = HP / 4;
    const int cells = a.height * a.width, b = blockIdx.y;
    const int tiles = mg_tile_count(w, b);
    if ((int)blockIdx.x >= tiles)
        return;
    mg_stage_weights(L, a.d_params, sm);
    const size_t n_params = mg_cuda_n_params(C, H);
    float *part = w.d_partial + ((size_t)b * MG_CUDA_GROUPS + blockIdx.x) * n_params;
    /* The copy is read by the threads that own its elements only after
     * mg_begin_tile's barriers. L.total is a multiple of 4 floats, so rows
     * of gw1 are 16-byte aligned when H is a multiple of 4. */
    float *sums = KEEP ? sm + L.total : part;
    if (KEEP)
        for (size_t i = threadIdx.x; i < n_params; i += blockDim.x)
            sums[i] = part[i];
    float *gw1 = sums, *gb1 = sums + (size_t)K * H, *gw2 = gb1 + H;
    const float *s = s_in + (size_t)b * cells * C;
    int *tile_cells = reinterpret_cast<int *>(sm + L.cells);
    const float *p = sm + L.p, *z = sm + L.z, *w1 = sm + L.w1, *w2t = sm + L.w2t;
    float *gz = sm + L.gz, *gu = sm + L.gu;
    for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const int nv = mg_begin_tile(w, b, cells, tile, tile_cells);
        mg_perceive_tile(L.C, L.K, s, a.height, a.width, tile_cells, nv, sm + L.p);
        mg_tile_update_grad(a, g_out + (size_t)b * cells * C, tile_cells, nv, C, C, gu);
        __syncthreads();
        mg_hidden_tile(L, sm, sm + L.z);
        __syncthreads();
        /* gz = relu'(z) * (gu . w2^T): 4 cells x 4 units per thread. */
        for (int item = threadIdx.x; item < (MG_CUDA_TILE / 4) * H4; item += blockDim.x) {
            const int h = (item % H4) * 4, i0 = (item / H4) * 4;
            float acc[4][4] = {};
            for (int c = 0; c < C; c++) {
                const float4 v = *reinterpret_cast<const float4 *>(w2t + (size_t)c * WS + h);
#pragma unroll
                for (int r = 0; r < 4; r++) {
                    const float g = gu[(i0 + r) * C + c];
                    acc[r][0] = fmaf(g, v.x, acc[r][0]);
                    acc[r][1] = fmaf(g, v.y, acc[r][1]);
                    acc[r][2] = fmaf(g, v.z, acc[r][2]);
                    acc[r][3] = fmaf(g, v.w, acc[r][3]);
                }
            }
#pragma unroll
            for (int r = 0; r < 4; r++) {
                const float4 zz = *reinterpret_cast<const float4 *>(z + (size_t)(i0 + r) * WS + h);
                *reinterpret_cast<float4 *>(gz + (size_t)(i0 + r) * WS + h) =
                    make_float4(zz.x > 0.0f ? acc[r][0] : 0.0f, zz.y > 0.0f ? acc[r][1] : 0.0f,
                                zz.z > 0.0f ? acc[r][2] : 0.0f, zz.w > 0.0f ? acc[r][3] : 0.0f);
            }
        }
        __syncthreads();
        /* Weight gradients of this tile (only reads of shared memory from
         * here to the next tile). gw2[h][c] += sum_i relu(z[i][h]) gu[i][c]. */
        for (int item = threadIdx.x; item < H4 * C; item += blockDim.x) {
            const int c = item % C, h = (item / C) * 4;
            float acc[4] = {};
            for (int i = 0; i < nv; i++) {
                const float4 r = mg_relu4(*reinterpret_cast<const float4 *>(z + (size_t)i * WS + h));
                const float g = gu[i * C + c];
                acc[0] = fmaf(r.x, g, acc[0]);
                acc[1] = fmaf(r.y, g, acc[1]);
                acc[2] = fmaf(r.z, g, acc[2]);
                acc[3] = fmaf(r.w, g, acc[3]);
            }
            for (int q = 0; q < 4 && h + q < H; q++)
                gw2[(size_t)(h + q) * C + c] += acc[q];
        }
        /* gb1[h] += sum_i gz[i][h]. */
        for (int h = threadIdx.x; h < H; h += blockDim.x) {
            float acc = 0.0f;
            for (int i = 0; i < nv; i++)
                acc += gz[(size_t)i * WS + h];
            gb1[h] += acc;
        }
        /* gw1[k][h] += sum_i p[i][k] gz[i][h]: 4 rows k x 4 units h per thread. */
        for (int item = threadIdx.x; item < (K + 3) / 4 * H4; item += blockDim.x) {
            const int h = (item % H4) * 4, k0 = (item / H4) * 4;
            float acc[4][4] = {};
            for (int i = 0; i < nv; i++) {
                const float4 g = *reinterpret_cast<const float4 *>(gz + (size_t)i * WS + h);
#pragma unroll
                for (int r = 0; r < 4; r++) {
                    const float pv = k0 + r < K ? p[(size_t)i * K + k0 + r] : 0.0f;
                    acc[r][0] = fmaf(pv, g.x, acc[r][0]);
                    acc[r][1] = fmaf(pv, g.y, acc[r][1]);
                    acc[r][2] = fmaf(pv, g.z, acc[r][2]);
                    acc[r][3] = fmaf(pv, g.w, acc[r][3]);
                }
            }
#pragma unroll
            for (int r = 0; r < 4; r++) { /* unrolled: acc indexed by constants stays in registers */
                if (k0 + r >= K)
                    break;
                float *row = gw1 + (size_t)(k0 + r) * H + h;
                if (KEEP && H % 4 == 0) { /* 16-byte aligned: one vector, no bank conflicts */
                    float4 v = *reinterpret_cast<float4 *>(row);
                    v.x += acc[r][0];
                    v.y += acc[r][1];
                    v.z += acc[r][2];
                    v.w += acc[r][3];
                    *reinterpret_cast<float4 *>(row) = v;
                } else {
#pragma unroll
                    for (int q = 0; q < 4; q++)
                        if (h + q < H)
                            row[q] += acc[r][q];
                }
            }
        }
        /* dL/dp[i][k] = sum_h gz[i][h] w1[k][h], one chain over h per value,
         * to global memory for k_grad_input. */
        for (int item = threadIdx.x; item < (MG_CUDA_TILE / 4) * K; item += blockDim.x) {
            const int k = item % K, i0 = (item / K) * 4;
            if (i0 >= nv)
                continue;
            float acc[4] = {};
            for (int h = 0; h < HP; h += 4) {
                const float4 v = *reinterpret_cast<const float4 *>(w1 + (size_t)k * WS + h);
#pragma unroll
                for (int r = 0; r < 4; r++) {
                    const float4 g = *reinterpret_cast<const float4 *>(gz + (size_t)(i0 + r) * WS + h);
                    acc[r] = fmaf(g.x, v.x, acc[r]);
                    acc[r] = fmaf(g.y, v.y, acc[r]);
                    acc[r] = fmaf(g.z, v.z, acc[r]);
                    acc[r] = fmaf(g.w, v.w, acc[r]);
                }
            }
            for (int r = 0; r < 4 && i0 + r < nv; r++)
                w.d_gp[((size_t)b * cells + tile_cells[i0 + r]) * K + k] = acc[r];
        }
    }
    if (KEEP) {
        __syncthreads();
        for (size_t i = threadIdx.x; i < n_params; i += blockDim.x)
            part[i] = sums[i];
    }
}

/* For sm_75, ptxas (CUDA 13.0) left to the thread count alone holds
 * k_mlp_backward to 64 registers (4 blocks per SM) and spills 4 bytes; 2
 * blocks per SM (102 registers) spill nothing. An sm_75 SM's 64 KB of
 * shared memory holds 2 blocks only for tile layouts of up to 32 KB
 * (H up to 40 at C = 16; the Distill config's, 76 KB, does not fit at
 * all), so only such small models lose blocks. Elsewhere (sm_90 included)
 * ptxas's own choice spills nothing and is kept (a minimum of 0 is no
 * minimum). */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 750
#define MLP_BACKWARD_MIN_BLOCKS 2
#else
#define MLP_BACKWARD_MIN_BLOCKS 0 /* no minimum: ptxas's own choice */
#endif

__global__ void __launch_bounds__(MG_CUDA_THREADS, MLP_BACKWARD_MIN_BLOCKS)
k_mlp_backward(mg_cuda_step a, mg_cuda_work w, const float *__restrict__ s_in, const float *__restrict__ g_out)
{
    extern __shared__ float4 smem_b4[];
    mg_mlp_backward<false>(a, w, s_in, g_out, reinterpret_cast<float *>(smem_b4));
}

/* At least 2 blocks per SM (its shared memory allows no more at the
 * Distill config): up to 128 registers; with the thread count alone ptxas
 * held it to 64 and spilled. */
__global__ void __launch_bounds__(MG_CUDA_THREADS, 2)
k_mlp_backward_keep(mg_cuda_step a, mg_cuda_work w, const float *__restrict__ s_in, const float *__restrict__ g_out)
{
    extern __shared__ float4 smem_bk4[];
    mg_mlp_backward<true>(a, w, s_in, g_out, reinterpret_cast<float *>(smem_bk4));
}

__global__ void __launch_bounds__(256)
k_grad_input(mg_cuda_step a, mg_cuda_work w, const unsigned char *__restrict__ alive,
             const float *__restrict__ g_out, float *__restrict__ g_in)
{
    const int cells = a.height * a.width, C = a.channels, K = 3 * C, b = blockIdx.y;
    const long long item = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (item >= (long long)cells * C)
        return;
    const int cell = (int)(item / C), c = (int)(item % C), y = cell / a.width, x = cell % a.width;
    const size_t at = (size_t)b * cells + cell;
    float g = alive[at] & MG_TAPE_ALIVE ? g_out[at * C + c] : 0.0f;
    /* Source cell q = (y+dy, x+dx) sees this cell at offset (-dy, -dx). */
    for (int dy = -1; dy <= 1; dy++) {
        const int qy = y + dy;
        if (qy < 0 || qy >= a.height)
            continue;
        for (int dx = -1; dx <= 1; dx++) {
            const int qx = x + dx;
            if (qx < 0 || qx >= a.width)
                continue;
            const size_t q = (size_t)b * cells + (size_t)qy * a.width + qx;
            if (!(alive[q] & MG_TAPE_MLP))
                continue;
            const float *gp = w.d_gp + q * K;
            if (dy == 0 && dx == 0)
                g += gp[c];
            else
                g += fmaf(mg_sobel_x(-dy, -dx), gp[C + c], mg_sobel_y(-dy, -dx) * gp[2 * C + c]);
        }
    }
    g_in[at * C + c] = g;
}

__global__ void __launch_bounds__(256) k_reduce_partials(int n_params, const float *__restrict__ partial,
                                                         float *__restrict__ grads)
{
    const int b = blockIdx.y, i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_params)
        return;
    const float *src = partial + (size_t)b * MG_CUDA_GROUPS * n_params + i;
    float sum = 0.0f;
    for (int g = 0; g < MG_CUDA_GROUPS; g++)
        sum += src[(size_t)g * n_params];
    grads[(size_t)b * n_params + i] = sum;
}

static size_t mg_cuda_partials_bytes(int channels, int hidden)
{
    return sizeof(float) * mg_cuda_n_params(channels, hidden);
}

extern "C" int mg_cuda_fma_keeps_partials(int channels, int hidden, int smem_optin)
{
    return mg_cuda_mlp_smem_bytes(channels, hidden, 0) + mg_cuda_partials_bytes(channels, hidden) <=
           (size_t)smem_optin;
}

cudaError_t mg_cuda_mlp_backward_configure(size_t bytes)
{
    const void *kernels[] = {(const void *)k_mlp_backward, (const void *)k_mlp_backward_keep};
    for (const void *k : kernels) {
        const cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
        if (e != cudaSuccess)
            return e;
    }
    return cudaSuccess;
}

extern "C" cudaError_t mg_cuda_step_backward(const mg_cuda_step *a, const mg_cuda_work *w, const float *d_s_in,
                                             mg_cuda_tape_step tape, const float *d_g_out, float *d_g_in,
                                             cudaStream_t stream)
{
    cudaError_t e = mg_cuda_select_backward(a, w, tape, stream);
    if (e != cudaSuccess)
        return e;
    if (a->tf32) {
        mg_cuda_mlp_tf32_backward(a, w, d_s_in, d_g_out, stream);
    } else {
        const dim3 grid(MG_CUDA_GROUPS, (unsigned)a->n);
        const size_t smem = mg_cuda_mlp_smem_bytes(a->channels, a->hidden, 0);
        const size_t keep_smem = smem + mg_cuda_partials_bytes(a->channels, a->hidden);
        if (a->keep_partials)
            k_mlp_backward_keep<<<grid, MG_CUDA_THREADS, keep_smem, stream>>>(*a, *w, d_s_in, d_g_out);
        else
            k_mlp_backward<<<grid, MG_CUDA_THREADS, smem, stream>>>(*a, *w, d_s_in, d_g_out);
    }
    const long long items = (long long)a->height * a->width * a->channels;
    k_grad_input<<<dim3((unsigned)((items + 255) / 256), (unsigned)a->n), 256, 0, stream>>>(*a, *w, tape.d_alive,
                                                                                         d_g_out, d_g_in);
    return cudaGetLastError();
}

extern "C" cudaError_t mg_cuda_reduce_partials(const mg_cuda_step *a, const mg_cuda_work *w, float *d_grads,
                                               cudaStream_t stream)
{
    const int P = (int)mg_cuda_n_params(a->channels, a->hidden);
    k_reduce_partials<<<dim3((unsigned)((P + 255) / 256), (unsigned)a->n), 256, 0, stream>>>(P, w->d_partial,
                                                                                          d_grads);
    return cudaGetLastError();
}
