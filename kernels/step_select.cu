/* Which cells run the MLP in a step, and their compaction into a list.
 *
 * Exact sparsity, as on the CPU: forward, a cell runs the MLP iff it fires,
 * is not frozen, and is alive before the step or pinned (any other update
 * would be discarded by the fire or alive mask); backward, iff its mask m is
 * set, it fired and is not frozen, which the forward's k_finish wrote onto
 * the tape (MG_TAPE_MLP). The list of such cells is built per sample by
 * block-wide prefix sums in ascending cell order: the output is a pure
 * function of the flags, so it is the same on every run (no atomics). */
#include <cub/block/block_scan.cuh>

#include "nca_device.cuh"
#include "philox.cuh"

/* A block per span of cells, so that it counts its span's flags. */
#define SELECT_THREADS MG_CUDA_SPAN_CELLS
/* 512 threads of 16 cells: at 1024 threads (launch bounds' cap of 64
 * registers) the 64-bit scan below spilled to local memory. */
#define COMPACT_THREADS 512
#define COMPACT_ITEMS 16
#define COMPACT_CHUNK (COMPACT_THREADS * COMPACT_ITEMS)
static_assert(COMPACT_CHUNK % MG_CUDA_SPAN_CELLS == 0, "a chunk starts where a span does");

/* Forward, the first step of a rollout or recomputed segment (later steps
 * are selected by the previous step's k_finish): pre-update alive mask and
 * MLP flag (mg_select_cell), into the step's half of d_pre and d_flag, and
 * the span's count of flags into d_flag_count. */
__global__ void __launch_bounds__(SELECT_THREADS)
k_select_forward(mg_cuda_step a, mg_cuda_work w, const float *__restrict__ s_in)
{
    const int cells = a.height * a.width, C = a.channels, b = blockIdx.y;
    const int cell = blockIdx.x * SELECT_THREADS + threadIdx.x;
    bool flag = false;
    if (cell < cells) {
        const float *s = s_in + (size_t)b * cells * C;
        const bool pre = mg_alive_at(s, a.height, a.width, C, cell / a.width, cell % a.width, a.alive_threshold);
        const size_t at = mg_step_half(a, a.step) + (size_t)b * cells + cell;
        flag = mg_select_cell(a, a.step, b, cell, pre);
        w.d_pre[at] = pre;
        w.d_flag[at] = flag;
    }
    const int set = __syncthreads_count(flag);
    if (threadIdx.x == 0)
        w.d_flag_count[mg_span_half(a, a.step) + (size_t)b * mg_cuda_spans(cells) + blockIdx.x] = set;
}

/* Bit j set iff cell at + j (< cells) has `bit` in its flag byte, for the
 * COMPACT_ITEMS cells from at. In one 16-byte load where the flags are
 * aligned so (a sample's are when cells is a multiple of 16), else in
 * independent byte loads (unrolled, so they are all in flight at once: a
 * loop with a branch per cell waited for each in turn). */
__device__ __forceinline__ unsigned compact_bits(const unsigned char *__restrict__ flag, int at, int cells,
                                                 unsigned bit, bool aligned)
{
    static_assert(COMPACT_ITEMS == 16, "one uint4 of flag bytes per thread");
    unsigned bits = 0;
    if (aligned && at + COMPACT_ITEMS <= cells) {
        const uint4 v = *reinterpret_cast<const uint4 *>(flag + at);
        const unsigned word[4] = {v.x, v.y, v.z, v.w}; /* little-endian: byte j % 4 of word j / 4 */
#pragma unroll
        for (int j = 0; j < COMPACT_ITEMS; j++)
            bits |= (word[j / 4] >> (8 * (j % 4)) & bit ? 1u : 0u) << j;
    } else {
#pragma unroll
        for (int j = 0; j < COMPACT_ITEMS; j++)
            if (at + j < cells && (flag[at + j] & bit))
                bits |= 1u << j;
    }
    return bits;
}

/* active[b][0..count) = the cells of sample b whose flag byte ([n][cells])
 * has bit `bit` set, ascending. Grid (chunks, n): block x compacts the
 * chunk of cells [x * CHUNK, (x + 1) * CHUNK) of sample blockIdx.y, each
 * thread COMPACT_ITEMS consecutive cells, so one block scan covers a whole
 * 72x72 grid (8192 cells). Where to write comes from the number of flagged
 * cells in the earlier chunks, which the block adds up from the counts per
 * span of cells (span_counts [n][spans], written by the kernels that wrote
 * the flags) rather than waiting for the blocks before it: the chunks of a
 * sample run side by side, each reading CHUNK / SPAN counts per earlier
 * chunk (before the counts, each block read every earlier flag again,
 * O(chunks^2) flag bytes: 5.4 GB per sample at 3072x3072), and the list is
 * still a pure function of the flags. */
__global__ void __launch_bounds__(COMPACT_THREADS)
k_compact(int cells, const unsigned char *__restrict__ flags, unsigned bit, const int *__restrict__ span_counts,
          int *__restrict__ active, int *__restrict__ count_out)
{
    /* One scan of (before << 32 | count): the low half of the prefix is the
     * thread's place in the chunk, the high half of the aggregate the count
     * of flagged cells before the chunk. The low halves add up to at most
     * CHUNK, so they never carry into the high half. */
    typedef cub::BlockScan<unsigned long long, COMPACT_THREADS> Scan;
    __shared__ typename Scan::TempStorage scan_tmp;
    const int b = blockIdx.y, first = (int)blockIdx.x * COMPACT_CHUNK;
    const unsigned char *flag = flags + (size_t)b * cells;
    const int *counts = span_counts + (size_t)b * mg_cuda_spans(cells);
    const bool aligned = ((uintptr_t)flag & 15u) == 0; /* the same for the whole block */
    const int mine = first + (int)threadIdx.x * COMPACT_ITEMS;
    unsigned before = 0; /* this thread's share of the earlier chunks' spans, all full */
    for (int span = (int)threadIdx.x; span < first / MG_CUDA_SPAN_CELLS; span += COMPACT_THREADS)
        before += (unsigned)counts[span];
    const unsigned bits = compact_bits(flag, mine, cells, bit, aligned); /* bit j: cell mine + j */
    unsigned long long pos, total;
    Scan(scan_tmp).ExclusiveSum((unsigned long long)before << 32 | (unsigned)__popc(bits), pos, total);
    const int base = (int)(total >> 32);
    int at = base + (int)(unsigned)pos;
    for (int j = 0; bits >> j; j++)
        if (bits >> j & 1u)
            active[(size_t)b * cells + at++] = mine + j;
    if (blockIdx.x == gridDim.x - 1 && threadIdx.x == 0)
        count_out[b] = base + (int)(unsigned)total;
}

__global__ void k_fire_mask(uint64_t seed, uint32_t iteration, uint32_t sample, uint32_t step, uint32_t threshold,
                            int n_cells, unsigned char *fire)
{
    const int cell = blockIdx.x * blockDim.x + threadIdx.x;
    if (cell < n_cells)
        fire[cell] = mg_fires(seed, iteration, sample, step, threshold, (uint32_t)cell);
}

/* Internal to the step launchers (step_forward.cu, step_backward.cu). */
void mg_cuda_select_forward(const mg_cuda_step *a, const mg_cuda_work *w, const float *d_s_in, cudaStream_t stream)
{
    const dim3 grid((unsigned)mg_cuda_spans(a->height * a->width), (unsigned)a->n);
    k_select_forward<<<grid, SELECT_THREADS, 0, stream>>>(*a, *w, d_s_in);
}

extern "C" cudaError_t mg_cuda_compact(int n, int cells, const unsigned char *d_flags, unsigned bit,
                                       const int *d_span_counts, int *d_active, int *d_count, cudaStream_t stream)
{
    if (n <= 0 || cells <= 0)
        return cudaSuccess;
    const dim3 grid((unsigned)((cells + COMPACT_CHUNK - 1) / COMPACT_CHUNK), (unsigned)n);
    k_compact<<<grid, COMPACT_THREADS, 0, stream>>>(cells, d_flags, bit, d_span_counts, d_active, d_count);
    return cudaGetLastError();
}

void mg_cuda_compact_forward(const mg_cuda_step *a, const mg_cuda_work *w, cudaStream_t stream)
{
    mg_cuda_compact(a->n, a->height * a->width, w->d_flag + mg_step_half(*a, a->step), 1u,
                    w->d_flag_count + mg_span_half(*a, a->step), w->d_active, w->d_count, stream);
}

cudaError_t mg_cuda_select_backward(const mg_cuda_step *a, const mg_cuda_work *w, mg_cuda_tape_step tape,
                                    cudaStream_t stream)
{
    return mg_cuda_compact(a->n, a->height * a->width, tape.d_alive, MG_TAPE_MLP, tape.d_mlp_count, w->d_active,
                           w->d_count, stream);
}

extern "C" cudaError_t mg_cuda_fire_mask(uint64_t seed, uint32_t iteration, uint32_t sample, uint32_t step,
                                         uint32_t threshold, int n_cells, unsigned char *d_fire,
                                         cudaStream_t stream)
{
    if (n_cells <= 0)
        return cudaSuccess;
    k_fire_mask<<<(n_cells + 255) / 256, 256, 0, stream>>>(seed, iteration, sample, step, threshold, n_cells,
                                                           d_fire);
    return cudaGetLastError();
}
