/* Which cells run the MLP in a step, and their compaction into a list.
 *
 * Exact sparsity, as on the CPU: forward, a cell runs the MLP iff it fires,
 * is not frozen, and is alive before the step or pinned (any other update
 * would be discarded by the fire or alive mask); backward, iff its mask m is
 * set, it fired and is not frozen, which the forward's k_finish wrote onto
 * the tape (MG_TAPE_MLP). The list of such cells is built per sample by a
 * block-wide prefix sum in ascending cell order: the output is a pure
 * function of the flags, so it is the same on every run (no atomics). */
#include <cub/block/block_scan.cuh>

#include "nca_device.cuh"
#include "philox.cuh"

#define SELECT_THREADS 256
#define COMPACT_THREADS 1024
#define COMPACT_ITEMS 8

/* Forward, the first step of a rollout or recomputed segment (later steps
 * are selected by the previous step's k_finish): pre-update alive mask and
 * MLP flag (mg_select_cell), into the step's half of d_pre and d_flag. */
__global__ void __launch_bounds__(SELECT_THREADS)
k_select_forward(mg_cuda_step a, mg_cuda_work w, const float *__restrict__ s_in)
{
    const int cells = a.height * a.width, C = a.channels, b = blockIdx.y;
    const int cell = blockIdx.x * blockDim.x + threadIdx.x;
    if (cell >= cells)
        return;
    const float *s = s_in + (size_t)b * cells * C;
    const bool pre = mg_alive_at(s, a.height, a.width, C, cell / a.width, cell % a.width, a.alive_threshold);
    const size_t at = mg_step_half(a, a.step) + (size_t)b * cells + cell;
    w.d_pre[at] = pre;
    w.d_flag[at] = mg_select_cell(a, a.step, b, cell, pre);
}

/* One block per sample: active[b][0..count) = cells whose flag byte
 * [n][cells] has bit `bit` set, ascending.
 * Each thread takes COMPACT_ITEMS consecutive cells of a chunk, so one
 * block scan covers 8192 cells (a whole 72x72 grid): the block's barriers,
 * on the critical path of every step, come once per chunk. */
__global__ void __launch_bounds__(COMPACT_THREADS)
k_compact(int cells, mg_cuda_work w, const unsigned char *__restrict__ flags, unsigned bit)
{
    typedef cub::BlockScan<int, COMPACT_THREADS> Scan;
    __shared__ typename Scan::TempStorage scan_tmp;
    const int b = blockIdx.x;
    const unsigned char *flag = flags + (size_t)b * cells;
    int *active = w.d_active + (size_t)b * cells;
    int base = 0;
    for (int first = 0; first < cells; first += COMPACT_THREADS * COMPACT_ITEMS) {
        const int mine = first + (int)threadIdx.x * COMPACT_ITEMS;
        const int end = mine + COMPACT_ITEMS < cells ? mine + COMPACT_ITEMS : cells;
        unsigned bits = 0; /* the flags, read once: bit j is cell mine + j */
        int count = 0;
        for (int cell = mine; cell < end; cell++)
            if (flag[cell] & bit) {
                bits |= 1u << (cell - mine);
                count++;
            }
        int pos, total;
        Scan(scan_tmp).ExclusiveSum(count, pos, total);
        for (int j = 0, at = base + pos; bits >> j; j++)
            if (bits >> j & 1u)
                active[at++] = mine + j;
        base += total;
        __syncthreads(); /* scan_tmp is reused by the next chunk */
    }
    if (threadIdx.x == 0)
        w.d_count[b] = base;
}

__global__ void k_fire_mask(uint64_t seed, uint32_t iteration, uint32_t sample, uint32_t step, uint32_t threshold,
                            int n_cells, unsigned char *fire)
{
    const int cell = blockIdx.x * blockDim.x + threadIdx.x;
    if (cell < n_cells)
        fire[cell] = mg_fires(seed, iteration, sample, step, threshold, (uint32_t)cell);
}

static dim3 cell_grid(const mg_cuda_step *a)
{
    const int cells = a->height * a->width;
    return dim3((unsigned)((cells + SELECT_THREADS - 1) / SELECT_THREADS), (unsigned)a->n);
}

/* Internal to the step launchers (step_forward.cu, step_backward.cu). */
void mg_cuda_select_forward(const mg_cuda_step *a, const mg_cuda_work *w, const float *d_s_in, cudaStream_t stream)
{
    k_select_forward<<<cell_grid(a), SELECT_THREADS, 0, stream>>>(*a, *w, d_s_in);
}

void mg_cuda_compact_forward(const mg_cuda_step *a, const mg_cuda_work *w, cudaStream_t stream)
{
    k_compact<<<a->n, COMPACT_THREADS, 0, stream>>>(a->height * a->width, *w, w->d_flag + mg_step_half(*a, a->step),
                                                    1u);
}

cudaError_t mg_cuda_select_backward(const mg_cuda_step *a, const mg_cuda_work *w, const unsigned char *d_alive,
                                    cudaStream_t stream)
{
    k_compact<<<a->n, COMPACT_THREADS, 0, stream>>>(a->height * a->width, *w, d_alive, MG_TAPE_MLP);
    return cudaGetLastError();
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
