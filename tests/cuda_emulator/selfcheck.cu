/* Self-check of the CUDA emulator (ctest cuda_emulator_selfcheck): tiny
 * kernels with a known answer or a known mistake. The emulator must compute
 * the answers in every thread order, show a missing barrier as a wrong
 * answer in at least one order, and stop with an error on a divergent
 * barrier, on threads that return while others wait at a barrier, and on a
 * copy whose kind does not match its pointers; it must refuse launches a GPU
 * refuses. Its tensor cores (mma.h) must give known products, round as
 * cvt.rna.tf32.f32 does, truncate unrounded operands, leave a result
 * partly unwritten when not every lane of the warp takes part, and refuse
 * misaligned tiles; dynamic shared memory must start only as aligned as
 * its declaration asks. Each error case runs in a child process (fork), whose death by
 * abort and message are checked. This file goes through generate.cmake like
 * the kernels, so the rewrites are checked too. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include <mma.h>

#define THREADS 256
#define BLOCKS 3

/* Block sums by a shared-memory tree; with_barrier = 0 drops the barrier
 * between the tree's levels (a race). Inputs are small integers, so every
 * correct order of additions gives the exact sum. */
__global__ void __launch_bounds__(THREADS) k_block_sum(const float *in, float *out, int with_barrier)
{
    __shared__ float part[THREADS];
    part[threadIdx.x] = in[blockIdx.x * THREADS + threadIdx.x];
    __syncthreads();
    for (int half = THREADS / 2; half > 0; half /= 2) {
        if ((int)threadIdx.x < half)
            part[threadIdx.x] += part[threadIdx.x + half];
        if (with_barrier)
            __syncthreads();
    }
    if (threadIdx.x == 0)
        out[blockIdx.x] = part[0];
}

/* Thread 0 reads what no thread wrote: dynamic shared memory starts as NaN. */
__global__ void k_read_unwritten(float *out)
{
    extern __shared__ float4 dyn[];
    if (threadIdx.x == 0)
        out[0] = dyn[1000].y;
}

/* Where dynamic shared memory starts, modulo twice what its declaration
 * asks for: CUDA promises that alignment and no more, and the emulator
 * gives exactly that (an access needing more must fail here). */
__global__ void k_dynamic_base(unsigned long long *out)
{
    extern __shared__ float4 dyn_type[];
    if (threadIdx.x == 0)
        out[0] = (unsigned long long)(uintptr_t)dyn_type % 32;
}

__global__ void k_dynamic_base_declared(unsigned long long *out)
{
    extern __shared__ __align__(64) float dyn_declared[];
    if (threadIdx.x == 0)
        out[0] = (unsigned long long)(uintptr_t)dyn_declared % 128;
}

/* Each block reads an element before writing it: every block's dynamic
 * shared memory must start unwritten (NaN), not hold the block before's. */
__global__ void k_dynamic_fresh(float *out)
{
    extern __shared__ float dyn_fresh[];
    if (threadIdx.x == 0) {
        out[blockIdx.x] = dyn_fresh[5];
        dyn_fresh[5] = 1.0f;
    }
}

__global__ void k_dynamic_mixed(unsigned long long *out)
{
    extern __shared__ float4 dyn_first[];
    extern __shared__ __align__(128) float dyn_second[];
    out[threadIdx.x] = (unsigned long long)(uintptr_t)dyn_first + (unsigned long long)(uintptr_t)dyn_second;
}

/* Two counting barriers in a row, with other predicates: every thread must
 * get each barrier's own count (the second must not see the first's). */
__global__ void __launch_bounds__(THREADS) k_sync_count(int *out)
{
    const int t = (int)threadIdx.x;
    const int thirds = __syncthreads_count(t % 3 == 0 ? 7 : 0);
    const int high = __syncthreads_count(t >= 200);
    out[t] = thirds * 1000 + high;
}

__global__ void k_divergent_barrier(int *out)
{
    if (threadIdx.x < 32)
        __syncthreads();
    else
        __syncthreads();
    out[threadIdx.x] = 1;
}

__global__ void k_early_return(int *out)
{
    if (threadIdx.x == 5)
        return;
    __syncthreads();
    out[threadIdx.x] = 1;
}

/* D [16][16] = A [16][8] B [8][16] + C on one warp, all row-major in global
 * memory; only lanes < `lanes` take part, and `round` applies
 * __float_to_tf32 to the multiplicands; `offset` shifts A's pointer (a
 * misaligned tile) and `lda` is A's leading dimension; without `load_c` the
 * accumulator is used as declared (neither loaded nor filled). */
__global__ void k_mma(const float *a, const float *b, const float *c, float *d, int lanes, int round, int offset,
                      int lda, int load_c)
{
    using namespace nvcuda;
    if ((int)threadIdx.x >= lanes)
        return;
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
    wmma::load_matrix_sync(fa, a + offset, (unsigned)lda);
    wmma::load_matrix_sync(fb, b, 16);
    if (load_c)
        wmma::load_matrix_sync(acc, c, 16, wmma::mem_row_major);
    if (round) {
        for (int i = 0; i < fa.num_elements; i++)
            fa.x[i] = wmma::__float_to_tf32(fa.x[i]);
        for (int i = 0; i < fb.num_elements; i++)
            fb.x[i] = wmma::__float_to_tf32(fb.x[i]);
    }
    wmma::mma_sync(acc, fa, fb, acc);
    wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

/* A struct parameter with a device pointer inside, declared to the launch
 * check as kernels/mg_cuda.h's structs are (cuemu_kernel_structs.h). */
struct sc_args {
    int n;
    float *out;
};
static inline void cuemu_pointer_fields(const sc_args &a, const cuemu_field_visitor &visit) { visit("out", a.out); }

__global__ void k_struct_param(sc_args a)
{
    if ((int)threadIdx.x < a.n)
        a.out[threadIdx.x] = 1.0f;
}

static int failures;

static void check(bool ok, const char *what)
{
    printf("cuda_emulator_selfcheck: %s: %s\n", ok ? "ok" : "FAILED", what);
    failures += !ok;
}

/* Runs `action` in a child, then waits for the work it queued (kernels run
 * when something waits for them); true if it died by abort() and its stderr
 * says `expected`. */
template <class F> static bool dies_saying(F action, const char *expected)
{
    int fd[2];
    fflush(stdout);
    if (pipe(fd) != 0)
        return false;
    const pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        action();
        cudaDeviceSynchronize();
        _exit(0);
    }
    close(fd[1]);
    std::string err;
    char buf[512];
    for (ssize_t n; (n = read(fd[0], buf, sizeof buf)) > 0;)
        err.append(buf, (size_t)n);
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    printf("  child said: %s", err.c_str());
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && err.find(expected) != std::string::npos;
}

int main(void)
{
    float host_in[BLOCKS * THREADS], expect[BLOCKS] = {0}, got[BLOCKS];
    for (int i = 0; i < BLOCKS * THREADS; i++) {
        host_in[i] = (float)(i % 7);
        expect[i / THREADS] += host_in[i];
    }
    float *in, *out;
    int *flags;
    cudaMalloc((void **)&in, sizeof host_in);
    cudaMalloc((void **)&out, sizeof got);
    cudaMalloc((void **)&flags, sizeof(int) * THREADS);
    cudaMemcpy(in, host_in, sizeof host_in, cudaMemcpyHostToDevice);

    bool race_seen = false;
    for (const char *order : {"forward", "reverse", "shuffled"}) {
        cuemu_set_order(order, 7);
        k_block_sum<<<BLOCKS, THREADS>>>(in, out, 1);
        cudaMemcpy(got, out, sizeof got, cudaMemcpyDeviceToHost);
        check(cudaGetLastError() == cudaSuccess && memcmp(got, expect, sizeof got) == 0,
              (std::string("block sums with barriers, order ") + order).c_str());
        k_block_sum<<<BLOCKS, THREADS>>>(in, out, 0);
        cudaMemcpy(got, out, sizeof got, cudaMemcpyDeviceToHost);
        race_seen |= memcmp(got, expect, sizeof got) != 0;
    }
    check(race_seen, "a missing barrier gives a wrong sum in at least one order");

    for (const char *order : {"forward", "reverse", "shuffled"}) {
        cuemu_set_order(order, 11);
        int counts[THREADS];
        k_sync_count<<<1, THREADS>>>(flags);
        cudaMemcpy(counts, flags, sizeof counts, cudaMemcpyDeviceToHost);
        bool all = cudaGetLastError() == cudaSuccess;
        for (int t = 0; t < THREADS; t++)
            all &= counts[t] == (THREADS + 2) / 3 * 1000 + (THREADS - 200);
        check(all, (std::string("__syncthreads_count gives each barrier's count to every thread, order ") + order)
                       .c_str());
    }

    k_block_sum<<<1, 2 * THREADS>>>(in, out, 1);
    check(cudaGetLastError() == cudaErrorLaunchOutOfResources, "more threads than __launch_bounds__ refused");
    k_block_sum<<<1, 2048>>>(in, out, 1);
    check(cudaGetLastError() == cudaErrorInvalidConfiguration, "2048 threads per block refused");

    const size_t big = 64 * 1024;
    k_read_unwritten<<<1, 32, big>>>(out);
    check(cudaGetLastError() == cudaErrorInvalidValue, "64 KiB of dynamic shared memory refused by default");
    check(cudaFuncSetAttribute(k_read_unwritten, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)big) ==
              cudaSuccess, "cudaFuncSetAttribute to 64 KiB");
    k_read_unwritten<<<1, 32, big>>>(out);
    cudaMemcpy(got, out, sizeof(float), cudaMemcpyDeviceToHost);
    check(cudaGetLastError() == cudaSuccess && isnan(got[0]), "then allowed; unwritten shared memory reads NaN");
    check(cudaFuncSetAttribute(k_read_unwritten, cudaFuncAttributeMaxDynamicSharedMemorySize, 300 * 1024) ==
              cudaErrorInvalidValue, "more than the device's 227 KiB refused");
    cudaGetLastError();

    unsigned long long *base, base_mod = 0;
    cudaMalloc((void **)&base, sizeof base_mod);
    k_dynamic_base<<<1, 32, 64>>>(base);
    cudaMemcpy(&base_mod, base, sizeof base_mod, cudaMemcpyDeviceToHost);
    check(cudaGetLastError() == cudaSuccess && base_mod == 16,
          "dynamic shared float4[] starts 16-byte aligned, not 32 (what CUDA promises, no more)");
    k_dynamic_base_declared<<<2, 32, 64>>>(base);
    cudaMemcpy(&base_mod, base, sizeof base_mod, cudaMemcpyDeviceToHost);
    check(cudaGetLastError() == cudaSuccess && base_mod == 64,
          "dynamic shared memory declared 64-byte aligned starts 64-byte aligned, not 128");
    k_dynamic_fresh<<<BLOCKS, 32, 64>>>(out);
    cudaMemcpy(got, out, sizeof got, cudaMemcpyDeviceToHost);
    check(cudaGetLastError() == cudaSuccess && isnan(got[0]) && isnan(got[1]) && isnan(got[2]),
          "every block's dynamic shared memory starts unwritten, not as the block before left it");
    check(dies_saying([&] { k_dynamic_mixed<<<1, 32, 64>>>(base); }, "declare them alike"),
          "two dynamic shared declarations of different alignments in one kernel stop the emulation");
    check(dies_saying(
              [&] {
                  cudaFuncSetAttribute(k_block_sum, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024);
                  k_block_sum<<<1, THREADS>>>(in, out, 1);
              },
              "cudaFuncSetAttribute refuses on a GPU"),
          "static shared memory with the whole opt-in limit allowed as dynamic stops the emulation");

    check(dies_saying([&] { k_divergent_barrier<<<1, 64>>>(flags); }, "different __syncthreads"),
          "divergent __syncthreads stops the emulation");
    check(dies_saying([&] { k_early_return<<<1, 64>>>(flags); }, "returned while thread"),
          "a thread returning while others wait at a barrier stops the emulation");
    check(dies_saying([&] { k_block_sum<<<BLOCKS, THREADS>>>(host_in, out, 1); }, "pointer parameter 0"),
          "a kernel given a host pointer stops the emulation");
    check(dies_saying([&] { k_block_sum<<<BLOCKS, THREADS>>>(in, out + BLOCKS + 1, 1); }, "pointer parameter 1"),
          "a kernel given a pointer past its allocation stops the emulation");
    k_struct_param<<<1, 32>>>(sc_args{BLOCKS, out});
    check(cudaGetLastError() == cudaSuccess, "a struct parameter holding device memory");
    check(dies_saying([&] { k_struct_param<<<1, 32>>>(sc_args{BLOCKS, got}); }, "field out of struct parameter 0"),
          "a struct parameter holding a host pointer stops the emulation");
    check(dies_saying([&] { cudaMemcpy(got, host_in, sizeof got, cudaMemcpyHostToDevice); }, "not inside one live"),
          "a host-to-device copy to host memory stops the emulation");
    check(dies_saying([&] { cudaMemcpy(got, out, sizeof got + 4, cudaMemcpyDeviceToHost); }, "not inside one live"),
          "a copy past the end of an allocation stops the emulation");

    /* Pinned host memory (the trainer's MPI staging) is host memory to the
     * copies' checks, and its own kind of allocation to the frees. */
    float *pinned = nullptr;
    check(cudaMallocHost((void **)&pinned, sizeof got) == cudaSuccess && pinned, "cudaMallocHost");
    cudaMemcpy(out, host_in, sizeof got, cudaMemcpyHostToDevice);
    cudaMemcpy(pinned, out, sizeof got, cudaMemcpyDeviceToHost);
    cudaMemcpy(out, pinned, sizeof got, cudaMemcpyHostToDevice);
    check(cudaGetLastError() == cudaSuccess && memcmp(pinned, host_in, sizeof got) == 0,
          "pinned host memory as either end of host-device copies");
    check(dies_saying([&] { cudaMemcpy(pinned, out, sizeof got, cudaMemcpyDeviceToDevice); }, "not inside one live"),
          "pinned host memory as a device-to-device copy's end stops the emulation");
    check(dies_saying([&] { cudaFree(pinned); }, "not the start of a live device allocation"),
          "cudaFree of pinned host memory stops the emulation");
    check(dies_saying([&] { cudaFreeHost(out); }, "not the start of a live cudaMallocHost"),
          "cudaFreeHost of device memory stops the emulation");
    check(cudaFreeHost(pinned) == cudaSuccess, "cudaFreeHost");
    check(dies_saying([&] { cudaFreeHost(pinned); }, "not the start of a live cudaMallocHost"),
          "cudaFreeHost twice stops the emulation");

    /* Work is asynchronous, as on a GPU: it runs when its stream is waited
     * for, not when it is queued. */
    {
        cudaStream_t s, s2;
        cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
        cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking);
        float *pin = nullptr, before[BLOCKS], seen = -1;
        cudaMallocHost((void **)&pin, sizeof got);
        memset(pin, 0, sizeof got);
        for (int i = 0; i < BLOCKS; i++)
            before[i] = -(float)i;
        cudaMemcpy(out, before, sizeof before, cudaMemcpyHostToDevice);
        cudaStreamSynchronize(0); /* staged, not yet written: s is not ordered after it */
        k_block_sum<<<BLOCKS, THREADS, 0, s>>>(in, out, 1);
        cudaMemcpyAsync(pin, out, sizeof got, cudaMemcpyDeviceToHost, s);
        cudaLaunchHostFunc(s, [](void *p) { *static_cast<float *>(p) = 1; }, &seen);
        check(isnan(pin[0]) && isnan(pin[BLOCKS - 1]) && seen == -1,
              "a copy into pinned memory (which reads NaN until then) and a host function wait for their stream");
        cudaMemcpy(got, out, sizeof got, cudaMemcpyDeviceToHost);
        check(memcmp(got, before, sizeof got) == 0,
              "a synchronous cudaMemcpy does not wait for a non-blocking stream's kernel");
        check(cudaStreamQuery(s) == cudaErrorNotReady && cudaGetLastError() == cudaSuccess,
              "a stream with queued work is not ready, and that is no error");
        check(cudaStreamQuery(s) == cudaSuccess && memcmp(pin, expect, sizeof got) == 0 && seen == 1,
              "then it is done: the kernel, the copy and the host function ran in order");

        cudaMemcpy(out, before, sizeof before, cudaMemcpyHostToDevice);
        cudaMemcpyAsync(got, out, sizeof got, cudaMemcpyDeviceToHost, s);
        check(memcmp(got, expect, sizeof got) == 0,
              "a non-blocking stream is not ordered after a cudaMemcpy from pageable memory (staged, not written)");
        cudaStreamSynchronize(0);
        k_block_sum<<<BLOCKS, THREADS, 0, s>>>(in, out, 1);
        cudaMemcpyAsync(got, out, sizeof got, cudaMemcpyDeviceToHost, s);
        check(memcmp(got, expect, sizeof got) == 0, "a copy into pageable memory returns complete");
        float staged[BLOCKS];
        memcpy(staged, before, sizeof staged);
        cudaMemcpyAsync(out, staged, sizeof staged, cudaMemcpyHostToDevice, s);
        staged[0] = 1e9f;
        cudaStreamSynchronize(s);
        cudaMemcpy(got, out, sizeof got, cudaMemcpyDeviceToHost);
        check(memcmp(got, before, sizeof got) == 0, "a copy from pageable memory takes its bytes at the call");
        cudaMemcpyAsync(got, staged, sizeof got, cudaMemcpyHostToHost, s);
        check(got[0] == 1e9f, "a host-to-host copy is immediate");

        /* pin holds `expect`: a copy out of it, then one into it. */
        cudaMemcpyAsync(out, pin, sizeof got, cudaMemcpyHostToDevice, s);
        cudaMemcpyAsync(pin, in, sizeof got, cudaMemcpyDeviceToHost, s);
        cudaStreamSynchronize(s);
        cudaMemcpy(got, out, sizeof got, cudaMemcpyDeviceToHost);
        check(memcmp(got, expect, sizeof got) == 0 && memcmp(pin, host_in, sizeof got) == 0,
              "a copy out of pinned memory queued before a copy into it reads what was there");

        /* Destroying a graph waits for nothing. */
        cudaMemcpyAsync(pin, out, sizeof got, cudaMemcpyDeviceToHost, s);
        cudaGraph_t graph;
        cudaStreamBeginCapture(s2, cudaStreamCaptureModeThreadLocal);
        cudaMemsetAsync(out, 0, sizeof got, s2);
        cudaStreamEndCapture(s2, &graph);
        cudaGraphDestroy(graph);
        check(isnan(pin[0]), "destroying a graph does not run other work");
        k_block_sum<<<BLOCKS, THREADS, 0, s>>>(in, out, 1);
        cudaDeviceSynchronize();
        cudaMemcpy(got, out, sizeof got, cudaMemcpyDeviceToHost);
        check(memcmp(got, expect, sizeof got) == 0 && memcmp(pin, expect, sizeof got) == 0,
              "cudaDeviceSynchronize waits for every stream");

        /* A replayed launch refused when it runs (its kernel's shared-memory
         * limit lowered since the capture): the synchronisation says so. */
        const size_t smem = 64 * 1024;
        cudaFuncSetAttribute(k_read_unwritten, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        cudaGraphExec_t exec;
        cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
        k_read_unwritten<<<1, 32, smem, s>>>(out);
        cudaStreamEndCapture(s, &graph);
        cudaGraphInstantiate(&exec, graph, 0);
        cudaFuncSetAttribute(k_read_unwritten, cudaFuncAttributeMaxDynamicSharedMemorySize, 0);
        check(cudaGraphLaunch(exec, s) == cudaSuccess && cudaStreamSynchronize(s) == cudaErrorInvalidValue &&
                  cudaGetLastError() == cudaErrorInvalidValue && cudaGetLastError() == cudaSuccess,
              "a launch refused at a graph's replay is the error of the synchronisation that waits for it");
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
        cudaFuncSetAttribute(k_read_unwritten, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);

        check(dies_saying([&] {
                  cudaLaunchHostFunc(s, [](void *) { cudaDeviceSynchronize(); }, nullptr);
                  cudaStreamSynchronize(s);
              }, "from work that runs in a stream"),
              "a host function that calls CUDA stops the emulation");
        cudaFreeHost(pin);
        cudaStreamDestroy(s);
        cudaStreamDestroy(s2);
    }

    /* While a stream is captured, what CUDA refuses from the capturing
     * thread (allocations, synchronous copies, synchronisation) stops the
     * emulation; the capture itself records and replays. */
    cudaStream_t stream;
    cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    const auto captured = [&](auto call) {
        return [&, call] {
            cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
            call();
        };
    };
    void *extra = nullptr;
    check(dies_saying(captured([&] { cudaMalloc(&extra, 4); }), "cudaMalloc while a stream is being captured"),
          "cudaMalloc during a capture stops the emulation");
    check(dies_saying(captured([&] { cudaFree(in); }), "cudaFree while a stream is being captured"),
          "cudaFree during a capture stops the emulation");
    check(dies_saying(captured([&] { cudaMallocHost(&extra, 4); }), "cudaMallocHost while a stream is being"),
          "cudaMallocHost during a capture stops the emulation");
    check(dies_saying(captured([&] { cudaMemcpy(got, out, 4, cudaMemcpyDeviceToHost); }), "cudaMemcpy while a stream"),
          "a synchronous copy during a capture stops the emulation");
    check(dies_saying(captured([&] { cudaStreamSynchronize(stream); }), "cudaStreamSynchronize while a stream"),
          "synchronising during a capture stops the emulation");
    cudaStreamDestroy(stream);

    /* Tensor cores. Small integers are exact in TF32: D = A B + C exactly. */
    {
        float ha[16 * 8 + 64], hb[8 * 16], hc[256], hd[256], want[256];
        for (int i = 0; i < 16 * 8 + 64; i++)
            ha[i] = (float)(i % 5) - 2.0f;
        for (int i = 0; i < 8 * 16; i++)
            hb[i] = (float)(i % 7) - 3.0f;
        for (int i = 0; i < 256; i++) {
            hc[i] = (float)(i % 3);
            want[i] = hc[i];
            for (int k = 0; k < 8; k++)
                want[i] += ha[(i / 16) * 8 + k] * hb[k * 16 + i % 16];
        }
        float *da, *db, *dc, *dd;
        cudaMalloc((void **)&da, sizeof ha);
        cudaMalloc((void **)&db, sizeof hb);
        cudaMalloc((void **)&dc, sizeof hc);
        cudaMalloc((void **)&dd, sizeof hd);
        cudaMemcpy(da, ha, sizeof ha, cudaMemcpyHostToDevice);
        cudaMemcpy(db, hb, sizeof hb, cudaMemcpyHostToDevice);
        cudaMemcpy(dc, hc, sizeof hc, cudaMemcpyHostToDevice);
        const auto run_mma = [&](int lanes, int round, int load_c = 1) {
            for (int i = 0; i < 256; i++)
                hd[i] = NAN;
            cudaMemcpy(dd, hd, sizeof hd, cudaMemcpyHostToDevice);
            k_mma<<<1, 32>>>(da, db, dc, dd, lanes, round, 0, 8, load_c);
            cudaMemcpy(hd, dd, sizeof hd, cudaMemcpyDeviceToHost);
        };
        run_mma(32, 1);
        check(memcmp(hd, want, sizeof hd) == 0, "wmma m16n16k8 tf32: D = A B + C of small integers, exactly");
        run_mma(16, 1);
        int unwritten = 0;
        for (int i = 0; i < 256; i++)
            unwritten += isnan(hd[i]);
        check(unwritten == 128, "wmma with half the warp's lanes leaves half of D unwritten (NaN)");
        run_mma(32, 1, 0);
        int poisoned = 0;
        for (int i = 0; i < 256; i++)
            poisoned += isnan(hd[i]);
        check(poisoned == 256, "an accumulator neither loaded nor filled poisons every result (NaN)");

        /* Rounding: 1 + 2^-11 is a tie between TF32's 1 and 1 + 2^-10: cvt.rna
         * goes away from zero; 1 + 2^-12 rounds down; 1 + 3 2^-12 up. */
        const float e11 = ldexpf(1.0f, -11), e12 = ldexpf(1.0f, -12), e10 = ldexpf(1.0f, -10);
        using nvcuda::wmma::__float_to_tf32;
        check(__float_to_tf32(1.0f + e11) == 1.0f + e10 && __float_to_tf32(-1.0f - e11) == -1.0f - e10 &&
                  __float_to_tf32(1.0f + e12) == 1.0f && __float_to_tf32(1.0f + 3 * e12) == 1.0f + e10 &&
                  isnan(__float_to_tf32(NAN)) && __float_to_tf32(INFINITY) == INFINITY,
              "__float_to_tf32 rounds to nearest, ties away from zero; NaN and infinity pass");
        /* A single term a = 1 + 2^-11 times b = 1: unrounded, the tensor core
         * ignores the low bits (1); rounded first, 1 + 2^-10. */
        for (int i = 0; i < 16 * 8; i++)
            ha[i] = i == 0 ? 1.0f + e11 : 0.0f;
        for (int i = 0; i < 8 * 16; i++)
            hb[i] = i == 0 ? 1.0f : 0.0f;
        for (int i = 0; i < 256; i++)
            hc[i] = 0.0f;
        cudaMemcpy(da, ha, sizeof ha, cudaMemcpyHostToDevice);
        cudaMemcpy(db, hb, sizeof hb, cudaMemcpyHostToDevice);
        cudaMemcpy(dc, hc, sizeof hc, cudaMemcpyHostToDevice);
        run_mma(32, 0);
        const float truncated = hd[0];
        run_mma(32, 1);
        check(truncated == 1.0f && hd[0] == 1.0f + e10, "an unrounded multiplicand is truncated to TF32, a rounded one kept");

        check(dies_saying([&] { k_mma<<<1, 32>>>(da, db, dc, dd, 32, 1, 1, 8, 1); }, "not 32-byte aligned"),
              "a misaligned wmma tile stops the emulation");
        check(dies_saying([&] { k_mma<<<1, 32>>>(da, db, dc, dd, 32, 1, 0, 6, 1); }, "not a multiple of 4"),
              "a wmma ldm that is no multiple of 4 floats stops the emulation");
        cudaFree(da);
        cudaFree(db);
        cudaFree(dc);
        cudaFree(dd);
    }

    cudaFree(in);
    cudaFree(base);
    cudaFree(out);
    cudaFree(flags);
    printf("cuda_emulator_selfcheck: %s\n", failures ? "FAILED" : "all checks passed");
    return failures ? 1 : 0;
}
