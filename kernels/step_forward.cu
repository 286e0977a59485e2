/* One NCA step forward on a batch of samples (mg_step_forward_f32's math).
 *
 * 1. k_compact (step_select.cu): the list of the cells whose MLP runs, from
 *    the flags the previous step's k_finish wrote (k_select_forward first,
 *    for the first step of a rollout or recomputed segment).
 * 2. k_mlp_forward: MG_CUDA_GROUPS blocks per sample, each staging w1, b1 and
 *    w2 in shared memory once and then looping over tiles of MG_CUDA_TILE
 *    active cells (tile j goes to block j mod GROUPS): perception of the tile
 *    into shared memory, hidden layer (register-blocked 4 cells x 4 units per
 *    thread), ReLU + output layer, and the update s_mid = s_in + du, all
 *    fused, nothing but the state touching global memory.
 * 3. k_finish: post-update alive mask, m = pre AND post (or pinned, or
 *    frozen), s_out = m * s_mid, and m with the backward's MLP flag onto the
 *    tape (MG_TAPE_*); then the next step's selection from s_out, so that it
 *    needs no pass of its own; and both flags' counts per span of cells.
 *    s_mid is what the MLP wrote for flagged cells and s_in for the others
 *    (no copy-through pass either). */
#include "nca_device.cuh"
#include "step_internal.cuh"

/* For sm_100, sm_103 and sm_110, ptxas (CUDA 13.0) left to the thread
 * count alone holds k_mlp_forward to 48 registers and spills 12 bytes; 4
 * blocks per SM (64 registers) spill nothing. On sm_100 a fifth block is
 * lost only where the shared memory would have allowed it, for tile
 * layouts of up to 45 KB (H up to 68 at C = 16; the Distill config's is
 * 76 KB: 2 blocks per SM either way). Elsewhere (sm_90 included) ptxas's
 * own choice spills nothing and is kept (a minimum of 0 is no minimum). */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 1000 && __CUDA_ARCH__ < 1200
#define MLP_FORWARD_MIN_BLOCKS 4
#else
#define MLP_FORWARD_MIN_BLOCKS 0 /* no minimum: ptxas's own choice */
#endif

__global__ void __launch_bounds__(MG_CUDA_THREADS, MLP_FORWARD_MIN_BLOCKS)
k_mlp_forward(mg_cuda_step a, mg_cuda_work w, const float *__restrict__ s_in, float *__restrict__ s_mid)
{
    extern __shared__ float4 smem_f4[];
    float *sm = reinterpret_cast<float *>(smem_f4);
    const mg_mlp_layout L = mg_mlp_layout_for(a.channels, a.hidden);
    const int C = L.C, WS = L.WS, HP = L.HP, cells = a.height * a.width, b = blockIdx.y;
    const int tiles = mg_tile_count(w, b);
    if ((int)blockIdx.x >= tiles)
        return; /* the whole block leaves together: no barrier is skipped */
    mg_stage_weights(L, a.d_params, sm);
    const float *s = s_in + (size_t)b * cells * C;
    int *tile_cells = reinterpret_cast<int *>(sm + L.cells);
    for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const int nv = mg_begin_tile(w, b, cells, tile, tile_cells);
        mg_perceive_tile(L.C, L.K, s, a.height, a.width, tile_cells, nv, sm + L.p);
        __syncthreads();
        mg_hidden_tile(L, sm, sm + L.z);
        __syncthreads();
        /* du[t][c] = relu(z[t]) . w2[:, c], one FMA chain over h from 0; then
         * the update of the channels the cell's freeze state lets change. */
        for (int item = threadIdx.x; item < nv * C; item += blockDim.x) {
            const int t = item / C, c = item % C, cell = tile_cells[t];
            const float *zr = sm + L.z + (size_t)t * WS, *wr = sm + L.w2t + (size_t)c * WS;
            float u = 0.0f;
            for (int h = 0; h < HP; h += 4) {
                const float4 r = mg_relu4(*reinterpret_cast<const float4 *>(zr + h));
                const float4 v = *reinterpret_cast<const float4 *>(wr + h);
                u = fmaf(r.x, v.x, u);
                u = fmaf(r.y, v.y, u);
                u = fmaf(r.z, v.z, u);
                u = fmaf(r.w, v.w, u);
            }
            const bool rgba_frozen = mg_dev_frozen(a.d_freeze, cell) == MG_DEV_CELL_FROZEN_RGBA;
            const float old = s[(size_t)cell * C + c];
            s_mid[((size_t)b * cells + cell) * C + c] = rgba_frozen && c < 4 ? old : old + u;
        }
    }
}

/* A block per span of cells, so that it counts its span's flags. */
#define FINISH_THREADS MG_CUDA_SPAN_CELLS

/* ptxas (CUDA 13.0), left to the thread count alone, aims k_finish at 48
 * registers (5 blocks per SM) for sm_80, sm_100, sm_103 and sm_110 and
 * spills 8 to 12 bytes there; asked for those 5 blocks outright it
 * allocates 46 to 48 registers without spilling, so the occupancy is the
 * same. Elsewhere (sm_90 included) ptxas's own choice spills nothing and
 * is kept (a minimum of 0 is no minimum). */
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ == 800 || (__CUDA_ARCH__ >= 1000 && __CUDA_ARCH__ < 1200))
#define FINISH_MIN_BLOCKS 5
#else
#define FINISH_MIN_BLOCKS 0 /* no minimum: ptxas's own choice */
#endif

__global__ void __launch_bounds__(FINISH_THREADS, FINISH_MIN_BLOCKS)
k_finish(mg_cuda_step a, mg_cuda_work w, const float *__restrict__ s_in, const float *__restrict__ s_mid,
         float *__restrict__ s_out, unsigned char *__restrict__ alive_out, int *__restrict__ mlp_count_out)
{
    /* Per cell of the block: bit 0 its mask m, bit 1 its flag (s_mid holds
     * its new state, else s_in does); the state rows are copied after. */
    __shared__ unsigned char keep[FINISH_THREADS];
    const int H = a.height, W = a.width, cells = H * W, C = a.channels, b = blockIdx.y;
    const int first = blockIdx.x * FINISH_THREADS, cell = first + threadIdx.x;
    const size_t base = (size_t)b * cells;
    const unsigned char *pre = w.d_pre + mg_step_half(a, a.step) + base,
                        *flag = w.d_flag + mg_step_half(a, a.step) + base;
    const float *in = s_in + base * C, *mid = s_mid + base * C, thr = a.alive_threshold;
    bool mlp = false, next_flag = false; /* this step's MG_TAPE_MLP, the next step's flag */
    if (cell < cells) {
        /* Cell i after the MLP; its mask m (post AND pre, or pinned, or frozen). */
        const auto mid_alpha = [=](int i) { return (flag[i] ? mid : in)[(size_t)i * C + 3]; };
        const auto mask = [=](int i) {
            return (mg_alive_by(H, W, i / W, i % W, thr, mid_alpha) && pre[i]) || i == a.pin_cell ||
                   mg_dev_frozen(a.d_freeze, i) == MG_DEV_CELL_FROZEN;
        };
        const bool m = mask(cell);
        mlp = m && flag[cell];
        keep[threadIdx.x] = (unsigned char)((m ? 1u : 0u) | (flag[cell] ? 2u : 0u));
        if (alive_out)
            alive_out[base + cell] = (unsigned char)((m ? MG_TAPE_ALIVE : 0u) | (mlp ? MG_TAPE_MLP : 0u));
        /* The next step's selection (k_select_forward's) from s_out's alpha,
         * the neighbours' masks recomputed (each from its own 3x3 of s_mid,
         * in the CPU's order of comparisons, so NaN states too give the
         * CPU's mask; this cell's is m). */
        const bool pre_next = mg_alive_by(H, W, cell / W, cell % W, thr,
                                          [=](int i) { return (i == cell ? m : mask(i)) ? mid_alpha(i) : 0.0f; });
        const size_t next = mg_step_half(a, a.step + 1) + base + cell;
        next_flag = mg_select_cell(a, a.step + 1, b, cell, pre_next);
        w.d_pre[next] = pre_next;
        w.d_flag[next] = next_flag;
    }
    /* The span's counts of both kinds of flag (k_compact's), at the barrier
     * that also publishes keep[]; alive_out is the same for the whole block. */
    const int next_set = __syncthreads_count(next_flag);
    const int mlp_set = alive_out ? __syncthreads_count(mlp) : 0;
    if (threadIdx.x == 0) {
        const size_t span = (size_t)b * mg_cuda_spans(cells) + blockIdx.x;
        w.d_flag_count[mg_span_half(a, a.step + 1) + span] = next_set;
        if (alive_out)
            mlp_count_out[span] = mlp_set;
    }
    /* s_out = m * (s_mid or s_in) for the block's cells, whose rows are one
     * contiguous span: consecutive threads on consecutive elements (a
     * thread per cell copying its own row made each warp access touch 32
     * rows C floats apart), in float4 where rows keep 16-byte alignment. */
    const int n = cells - first < FINISH_THREADS ? cells - first : FINISH_THREADS;
    const size_t at = (size_t)first * C;
    if (C % 4 == 0) {
        const int C4 = C / 4;
        const float4 *in4 = reinterpret_cast<const float4 *>(in + at);
        const float4 *mid4 = reinterpret_cast<const float4 *>(mid + at);
        float4 *out4 = reinterpret_cast<float4 *>(s_out + base * C + at);
        for (int i = threadIdx.x; i < n * C4; i += FINISH_THREADS) {
            const unsigned k = keep[i / C4];
            out4[i] = k & 1u ? (k & 2u ? mid4[i] : in4[i]) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
    } else {
        for (int i = threadIdx.x; i < n * C; i += FINISH_THREADS) {
            const unsigned k = keep[i / C];
            s_out[base * C + at + i] = k & 1u ? (k & 2u ? mid[at + i] : in[at + i]) : 0.0f;
        }
    }
}

extern "C" size_t mg_cuda_mlp_smem_bytes(int channels, int hidden, int tf32)
{
    return tf32 ? mg_cuda_mlp_tf32_smem_bytes(channels, hidden) : mg_mlp_layout_for(channels, hidden).total * sizeof(float);
}

extern "C" cudaError_t mg_cuda_probe_kernels(void)
{
    cudaFuncAttributes attributes;
    return cudaFuncGetAttributes(&attributes, k_finish);
}

/* Defined in step_backward.cu. */
cudaError_t mg_cuda_mlp_backward_configure(size_t bytes);

extern "C" cudaError_t mg_cuda_mlp_configure(size_t bytes, int tf32)
{
    if (tf32)
        return mg_cuda_mlp_tf32_configure(bytes);
    cudaError_t e = cudaFuncSetAttribute(k_mlp_forward, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    return e != cudaSuccess ? e : mg_cuda_mlp_backward_configure(bytes);
}

extern "C" cudaError_t mg_cuda_step_forward(const mg_cuda_step *a, const mg_cuda_work *w, const float *d_s_in,
                                            float *d_s_mid, float *d_s_out, mg_cuda_tape_step tape, int first,
                                            cudaStream_t stream)
{
    if (first)
        mg_cuda_select_forward(a, w, d_s_in, stream);
    mg_cuda_compact_forward(a, w, stream);
    if (a->tf32) {
        mg_cuda_mlp_tf32_forward(a, w, d_s_in, d_s_mid, stream);
    } else {
        const size_t smem = mg_cuda_mlp_smem_bytes(a->channels, a->hidden, 0);
        k_mlp_forward<<<dim3(MG_CUDA_GROUPS, (unsigned)a->n), MG_CUDA_THREADS, smem, stream>>>(*a, *w, d_s_in, d_s_mid);
    }
    const dim3 grid((unsigned)mg_cuda_spans(a->height * a->width), (unsigned)a->n);
    k_finish<<<grid, FINISH_THREADS, 0, stream>>>(*a, *w, d_s_in, d_s_mid, d_s_out, tape.d_alive, tape.d_mlp_count);
    return cudaGetLastError();
}
