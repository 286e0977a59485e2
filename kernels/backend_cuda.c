/* The cuda backend's host side (C11): device memory, the rollout tape, and
 * the order of kernel launches for mg_backend_ops. The math is in the
 * kernels (mg_cuda.h); this file only moves data and sequences steps.
 *
 * Everything of a batch stays on the device from upload to download: the
 * parameters, the states of every sample, the tape (saved states and alive
 * masks), the gradients. Only the inputs go up and the results (final
 * states, losses, per-sample gradients, optionally dL/ds0) come down. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "backend_cuda_internal.h"
#include "mg_cuda_build.h"
#include "morphogen/gpu_arch.h"

_Static_assert(MG_CELL_FROZEN == 1 && MG_CELL_FROZEN_RGBA == 2,
               "kernels/nca_device.cuh repeats the MG_CELL_* values");

static size_t saved_slots(const cuda_backend *cb) { return (size_t)cb->max_steps / cb->every + 1; }

static void free_buffers(cuda_backend *cb)
{
    void *all[] = {cb->d_targets, cb->d_saved, cb->d_segment, cb->d_alive, cb->d_mlp_count, cb->d_mid,
                   cb->d_ping, cb->d_pong, cb->d_grad_a, cb->d_grad_b, cb->d_loss, cb->d_grads,
                   cb->d_sample_index, cb->work.d_pre, cb->work.d_flag, cb->work.d_flag_count,
                   cb->work.d_active, cb->work.d_count, cb->work.d_gp, cb->work.d_partial};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i])
            cudaFree(all[i]);
    cb->d_targets = cb->d_saved = cb->d_segment = cb->d_mid = cb->d_ping = cb->d_pong = NULL;
    cb->d_grad_a = cb->d_grad_b = cb->d_grads = NULL;
    cb->d_alive = NULL;
    cb->d_mlp_count = NULL;
    cb->d_loss = NULL;
    cb->d_sample_index = NULL;
    memset(&cb->work, 0, sizeof cb->work);
    cb->n_cap = 0;
    cb->rollout_bytes = 0;
}

cudaError_t mg_cuda_alloc_set(const mg_cuda_alloc *want, size_t n, size_t *total)
{
    for (size_t i = 0; i < n; i++) {
        *total += want[i].bytes;
        const cudaError_t e = cudaMalloc(want[i].ptr, want[i].bytes ? want[i].bytes : 1);
        if (e != cudaSuccess) {
            mg_cuda_clear_last_error();
            return e;
        }
    }
    return cudaSuccess;
}

/* Size the per-sample buffers for n samples (grown, never shrunk). */
int mg_cuda_ensure_capacity(cuda_backend *cb, int n, mg_error *err)
{
    if (n <= cb->n_cap)
        return 0;
    free_buffers(cb);
    const size_t cells = (size_t)mg_cells(&cb->dims), state = mg_cuda_state_floats(&cb->dims) * n;
    const size_t K = (size_t)mg_perception_size(&cb->dims);
    const size_t segment = cb->every > 1 ? (size_t)(cb->every - 1) : 0;
    const size_t spans = (size_t)mg_cuda_spans((int)cells);
    const size_t tape_steps = (size_t)(cb->max_steps > 0 ? cb->max_steps : 1);
    const mg_cuda_alloc want[] = {
        {(void **)&cb->d_targets, sizeof(float) * cells * 4 * n},
        {(void **)&cb->d_saved, sizeof(float) * state * saved_slots(cb)},
        {(void **)&cb->d_segment, sizeof(float) * state * (segment ? segment : 1)},
        {(void **)&cb->d_alive, cells * n * tape_steps},
        {(void **)&cb->d_mlp_count, sizeof(int) * spans * n * tape_steps},
        {(void **)&cb->d_mid, sizeof(float) * state},
        {(void **)&cb->d_ping, sizeof(float) * state},
        {(void **)&cb->d_pong, sizeof(float) * state},
        {(void **)&cb->d_grad_a, sizeof(float) * state},
        {(void **)&cb->d_grad_b, sizeof(float) * state},
        {(void **)&cb->d_loss, sizeof(double) * n},
        {(void **)&cb->d_sample_index, sizeof(uint32_t) * n},
        {(void **)&cb->work.d_pre, cells * n * 2},
        {(void **)&cb->work.d_flag, cells * n * 2},
        {(void **)&cb->work.d_flag_count, sizeof(int) * spans * n * 2},
        {(void **)&cb->work.d_active, sizeof(int) * cells * n},
        {(void **)&cb->work.d_count, sizeof(int) * n},
        {(void **)&cb->work.d_gp, sizeof(float) * cells * K * n},
        {(void **)&cb->work.d_partial, sizeof(float) * (size_t)cb->n_params * MG_CUDA_GROUPS * n},
    };
    size_t total = 0;
    const cudaError_t e = mg_cuda_alloc_set(want, sizeof want / sizeof want[0], &total);
    if (e != cudaSuccess) {
        free_buffers(cb);
        return mg_fail(err, "cuda backend: out of device memory for %d samples of %dx%d cells (%.1f MiB so far): %s",
                       n, cb->dims.height, cb->dims.width, (double)total / 1048576.0, cudaGetErrorString(e));
    }
    cb->n_cap = n;
    cb->rollout_bytes = total;
    mg_cuda_note_memory(cb);
    return 0;
}

/* The batch operation's [n_cap][n_params] gradient buffer, allocated at its
 * first job that asks for gradients, not with the others: training writes
 * its gradients into the rows of its own [batch][n_params] buffer
 * (cuda_train.d_grads) and would hold this one unused. Freed and
 * reallocated with the others when the capacity grows. */
static int ensure_batch_grads(cuda_backend *cb, mg_error *err)
{
    if (cb->d_grads)
        return 0;
    const mg_cuda_alloc want[] = {{(void **)&cb->d_grads, sizeof(float) * (size_t)cb->n_params * cb->n_cap}};
    size_t total = 0;
    const cudaError_t e = mg_cuda_alloc_set(want, 1, &total);
    if (e != cudaSuccess) {
        cb->d_grads = NULL;
        return mg_fail(err, "cuda backend: out of device memory for the gradients of %d samples (%.1f MiB): %s",
                       cb->n_cap, (double)total / 1048576.0, cudaGetErrorString(e));
    }
    cb->rollout_bytes += total;
    mg_cuda_note_memory(cb);
    return 0;
}

static void cuda_destroy(mg_backend *be)
{
    cuda_backend *cb = be->impl;
    if (cb) {
        mg_cuda_train_release(cb);
        free_buffers(cb);
        if (cb->d_params)
            cudaFree(cb->d_params);
        if (cb->d_freeze)
            cudaFree(cb->d_freeze);
        if (cb->d_iteration)
            cudaFree(cb->d_iteration);
        if (cb->stream)
            cudaStreamDestroy(cb->stream);
        free(cb);
    }
    free(be);
}

mg_cuda_step mg_cuda_step_args(const cuda_backend *cb, int n, const mg_step_rules *r, uint64_t seed)
{
    mg_cuda_step a;
    memset(&a, 0, sizeof a);
    a.n = n;
    a.height = cb->dims.height;
    a.width = cb->dims.width;
    a.channels = cb->dims.channels;
    a.hidden = cb->dims.hidden;
    a.seed = seed;
    a.d_iteration = cb->d_iteration;
    a.d_sample_index = cb->d_sample_index;
    a.fire_threshold = r->fire_threshold;
    a.alive_threshold = (float)r->alive_threshold; /* the f32 CPU build compares in float */
    a.pin_cell = r->pin_cell;
    a.d_freeze = r->freeze ? cb->d_freeze : NULL;
    a.d_params = cb->d_params;
    a.tf32 = cb->tf32;
    a.keep_partials = cb->keep_partials;
    return a;
}

/* Upload what every job needs: parameters, the iteration and sample keys,
 * the freeze mask. */
static int upload_common(cuda_backend *cb, const float *params, uint32_t iteration, const uint32_t *sample_index,
                         int n, const mg_step_rules *r, mg_error *err)
{
    const size_t cells = (size_t)mg_cells(&cb->dims);
    cb->h_iteration = iteration;
    CK(cudaMemcpyAsync(cb->d_iteration, &cb->h_iteration, sizeof iteration, cudaMemcpyHostToDevice, cb->stream),
       "uploading the iteration");
    CK(cudaMemcpyAsync(cb->d_params, params, sizeof(float) * (size_t)cb->n_params, cudaMemcpyHostToDevice,
                       cb->stream), "uploading parameters");
    CK(cudaMemcpyAsync(cb->d_sample_index, sample_index, sizeof(uint32_t) * n, cudaMemcpyHostToDevice,
                       cb->stream), "uploading sample indices");
    if (r->freeze)
        CK(cudaMemcpyAsync(cb->d_freeze, r->freeze, cells, cudaMemcpyHostToDevice, cb->stream),
           "uploading the freeze mask");
    return 0;
}

/* Saved state j, and state i of the segment starting at saved state j. */
static float *saved(const cuda_backend *cb, int n, int j)
{
    return cb->d_saved + (size_t)j * n * mg_cuda_state_floats(&cb->dims);
}
static float *segment_state(const cuda_backend *cb, int n, int j, int i)
{
    return i == 0 ? saved(cb, n, j) : cb->d_segment + (size_t)(i - 1) * n * mg_cuda_state_floats(&cb->dims);
}

/* Step `step`'s part of the tape of n samples. */
static mg_cuda_tape_step tape_step(const cuda_backend *cb, int n, int step)
{
    const size_t cells = (size_t)mg_cells(&cb->dims), spans = (size_t)mg_cuda_spans((int)cells);
    return (mg_cuda_tape_step){cb->d_alive + (size_t)step * n * cells, cb->d_mlp_count + (size_t)step * n * spans};
}

static const mg_cuda_tape_step NO_TAPE = {NULL, NULL};

float *mg_cuda_rollout_start(const cuda_backend *cb, int n, int grads)
{
    return grads ? saved(cb, n, 0) : cb->d_ping;
}

int mg_cuda_run_rollouts(cuda_backend *cb, int n, int steps, const mg_step_rules *r, uint64_t seed, float *d_grads,
                         float **d_final, float **d_g0, mg_error *err)
{
    const mg_nca_dims *d = &cb->dims;
    const int every = cb->every, grads = d_grads != NULL;
    const size_t cells = (size_t)mg_cells(d), state = mg_cuda_state_floats(d);
    float *cur = mg_cuda_rollout_start(cb, n, grads);
    mg_cuda_step a = mg_cuda_step_args(cb, n, r, seed);
    for (int step = 0; step < steps; step++) {
        float *out;
        if (grads && (step + 1) % every == 0)
            out = saved(cb, n, (step + 1) / every);
        else
            out = cur == cb->d_ping ? cb->d_pong : cb->d_ping;
        a.step = step;
        CK(mg_cuda_step_forward(&a, &cb->work, cur, cb->d_mid, out, grads ? tape_step(cb, n, step) : NO_TAPE,
                                step == 0, cb->stream),
           "forward step");
        cur = out;
    }
    *d_final = cur;
    CK(mg_cuda_loss(n, (int)cells, d->channels, cur, cb->d_targets, cb->d_loss, grads ? cb->d_grad_a : NULL,
                    cb->stream), "loss");
    if (!grads)
        return 0;
    /* The backward pass must not overwrite the final states: they stay in
     * their buffer for the caller (a saved slot, or the ping-pong buffer
     * that segment recomputation below does not use). */
    float *g = cb->d_grad_a, *g_prev = cb->d_grad_b;
    CK(cudaMemsetAsync(cb->work.d_partial, 0, sizeof(float) * (size_t)cb->n_params * MG_CUDA_GROUPS * n, cb->stream),
       "clearing gradient sums");
    for (int j = steps > 0 ? (steps - 1) / every : -1; j >= 0; j--) {
        const int first = j * every, end = first + every < steps ? first + every : steps;
        /* Recompute the segment's states from its saved start (the same
         * kernels on the same inputs: the same bits as the forward). */
        for (int step = first; step + 1 < end; step++) {
            a.step = step;
            CK(mg_cuda_step_forward(&a, &cb->work, segment_state(cb, n, j, step - first), cb->d_mid,
                                    segment_state(cb, n, j, step + 1 - first), NO_TAPE, step == first, cb->stream),
               "recomputing a checkpoint segment");
        }
        for (int step = end - 1; step >= first; step--) {
            a.step = step;
            CK(mg_cuda_step_backward(&a, &cb->work, segment_state(cb, n, j, step - first), tape_step(cb, n, step), g,
                                     g_prev, cb->stream),
               "backward step");
            float *swap = g;
            g = g_prev;
            g_prev = swap;
        }
    }
    CK(mg_cuda_reduce_partials(&a, &cb->work, d_grads, cb->stream), "reducing gradients");
    if (d_g0)
        *d_g0 = g;
    const size_t segment = every > 1 ? (size_t)(every - 1) : 0;
    const size_t tape_bytes_per_step = cells + sizeof(int) * (size_t)mg_cuda_spans((int)cells);
    const size_t tape =
        sizeof(float) * state * n * ((size_t)steps / every + 1 + segment) + tape_bytes_per_step * n * (size_t)steps;
    if (tape > cb->peak_tape)
        cb->peak_tape = tape;
    return 0;
}

static int cuda_batch(mg_backend *be, const mg_batch_job *job, mg_error *err)
{
    cuda_backend *cb = be->impl;
    const mg_nca_dims *d = &cb->dims;
    const int n = job->n, steps = job->steps;
    if (n <= 0)
        return 0;
    if (steps < 0 || steps > cb->max_steps)
        return mg_fail(err, "cuda backend: rollout of %d steps exceeds the configured maximum", steps);
    if (memcmp(&job->dims, d, sizeof *d) != 0 || job->n_params != cb->n_params)
        return mg_fail(err, "cuda backend: job dimensions differ from the backend's");
    if (cb->train.attached)
        return mg_fail(err, "cuda backend: a batch job on a backend that holds a training state (its parameters "
                            "would be overwritten)");
    const int grads = job->grads != NULL;
    if (mg_cuda_ensure_capacity(cb, n, err) != 0 || (grads && ensure_batch_grads(cb, err) != 0))
        return -1;
    const size_t cells = (size_t)mg_cells(d), state = mg_cuda_state_floats(d);
    if (upload_common(cb, job->params, job->iteration, job->sample_index, n, &job->rules, err) != 0)
        return -1;
    for (int b = 0; b < n; b++)
        CK(cudaMemcpyAsync(cb->d_targets + (size_t)b * cells * 4, job->targets + (size_t)job->target_index[b] * cells * 4,
                           sizeof(float) * cells * 4, cudaMemcpyHostToDevice, cb->stream),
           "uploading targets");
    CK(cudaMemcpyAsync(mg_cuda_rollout_start(cb, n, grads), job->states, sizeof(float) * state * n,
                       cudaMemcpyHostToDevice, cb->stream), "uploading states");
    float *final = NULL, *g0 = NULL;
    if (mg_cuda_run_rollouts(cb, n, steps, &job->rules, job->seed, grads ? cb->d_grads : NULL, &final, &g0, err) != 0)
        return -1;
    CK(cudaMemcpyAsync(job->states, final, sizeof(float) * state * n, cudaMemcpyDeviceToHost, cb->stream),
       "downloading final states");
    CK(cudaMemcpyAsync(job->loss, cb->d_loss, sizeof(double) * n, cudaMemcpyDeviceToHost, cb->stream),
       "downloading losses");
    if (grads) {
        CK(cudaMemcpyAsync(job->grads, cb->d_grads, sizeof(float) * (size_t)cb->n_params * n,
                           cudaMemcpyDeviceToHost, cb->stream), "downloading gradients");
        if (job->grad_states)
            CK(cudaMemcpyAsync(job->grad_states, g0, sizeof(float) * state * n, cudaMemcpyDeviceToHost, cb->stream),
               "downloading state gradients");
    }
    CK(cudaStreamSynchronize(cb->stream), "running the batch");
    return 0;
}

static int cuda_rollout(mg_backend *be, const mg_rollout_job *job, mg_error *err)
{
    cuda_backend *cb = be->impl;
    const mg_nca_dims *d = &cb->dims;
    if (memcmp(&job->dims, d, sizeof *d) != 0)
        return mg_fail(err, "cuda backend: rollout dimensions differ from the backend's");
    if (cb->train.attached)
        return mg_fail(err, "cuda backend: a rollout on a backend that holds a training state (its parameters "
                            "would be overwritten)");
    if (mg_cuda_ensure_capacity(cb, 1, err) != 0 ||
        upload_common(cb, job->params, job->iteration, &job->sample_index, 1, &job->rules, err) != 0)
        return -1;
    const size_t state = mg_cuda_state_floats(d);
    CK(cudaMemcpyAsync(cb->d_ping, job->state, sizeof(float) * state, cudaMemcpyHostToDevice, cb->stream),
       "uploading the state");
    if (job->frame_cb) {
        CK(cudaStreamSynchronize(cb->stream), "uploading the state");
        if (job->frame_cb(job->frame_ctx, 0, job->state, err) != 0)
            return -1;
    }
    mg_cuda_step a = mg_cuda_step_args(cb, 1, &job->rules, job->seed);
    float *cur = cb->d_ping, *next = cb->d_pong;
    for (int step = 0; step < job->steps; step++) {
        a.step = step;
        CK(mg_cuda_step_forward(&a, &cb->work, cur, cb->d_mid, next, NO_TAPE, step == 0, cb->stream), "forward step");
        float *swap = cur;
        cur = next;
        next = swap;
        if (job->frame_cb) {
            CK(cudaMemcpyAsync(job->state, cur, sizeof(float) * state, cudaMemcpyDeviceToHost, cb->stream),
               "downloading a frame");
            CK(cudaStreamSynchronize(cb->stream), "running a step");
            if (job->frame_cb(job->frame_ctx, step + 1, job->state, err) != 0)
                return -1;
        }
    }
    if (!job->frame_cb)
        CK(cudaMemcpyAsync(job->state, cur, sizeof(float) * state, cudaMemcpyDeviceToHost, cb->stream),
           "downloading the final state");
    CK(cudaStreamSynchronize(cb->stream), "running the rollout");
    return 0;
}

static size_t cuda_peak_tape(const mg_backend *be)
{
    const cuda_backend *cb = be->impl;
    return cb->peak_tape;
}

static size_t cuda_device_bytes(const mg_backend *be)
{
    const cuda_backend *cb = be->impl;
    return cb->peak_device_bytes;
}

static const mg_backend_ops CUDA_OPS = {"cuda",       cuda_batch,         cuda_rollout,     cuda_peak_tape,
                                        cuda_destroy, &MG_CUDA_TRAIN_OPS, cuda_device_bytes};

int mg_cuda_device_available(char *why, size_t why_len)
{
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count <= 0) {
        if (why && why_len > 0) {
            /* cudaErrorInsufficientDriver is also what a machine without
             * any NVIDIA driver reports: say so in plain words, with the
             * versions when there is a driver (a runtime newer than the
             * driver is the usual cause on a GPU machine: the statically
             * linked runtime is the build machine's toolkit's). */
            int driver = 0, runtime = 0;
            if (e == cudaErrorInsufficientDriver && cudaDriverGetVersion(&driver) == cudaSuccess && driver > 0 &&
                cudaRuntimeGetVersion(&runtime) == cudaSuccess)
                snprintf(why, why_len,
                         "the NVIDIA driver supports CUDA up to %d.%d, this build's CUDA runtime is %d.%d: update "
                         "the driver or build with an older CUDA toolkit: %s",
                         driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10, cudaGetErrorName(e));
            else {
                const char *reason = e == cudaErrorInsufficientDriver ? "no NVIDIA driver, or one older than this CUDA runtime"
                                     : e != cudaSuccess               ? cudaGetErrorString(e)
                                                                      : "no CUDA device found";
                snprintf(why, why_len, "%s%s%s", reason, e != cudaSuccess ? ": " : "",
                         e != cudaSuccess ? cudaGetErrorName(e) : "");
            }
        }
        mg_cuda_clear_last_error();
        return 0;
    }
    return 1;
}

/* Whether the driver finds code in this build for GPU `device`, of compute
 * capability major.minor, asked before anything else touches a kernel: 0,
 * or -1 with err saying why and what to do. The driver decides (code may
 * come from more than MORPHOGEN_CUDA_ARCHITECTURES, e.g. CMAKE_CUDA_FLAGS);
 * the list only words the message. */
static int check_code_for_gpu(int device, int major, int minor, mg_error *err)
{
    const cudaError_t e = mg_cuda_probe_kernels();
    if (e == cudaSuccess)
        return 0;
    mg_cuda_clear_last_error();
    /* Only a missing image is the list's business; any other failure to
     * load (memory, a PTX too new for the driver) is the driver's. */
    const int no_image = e == cudaErrorNoKernelImageForDevice || e == cudaErrorInvalidDeviceFunction;
    if (!no_image || mg_gpu_arch_runs(MG_CUDA_ARCHITECTURES, major, minor) != 0)
        return mg_cuda_fail(err, e, "loading the kernels (was morphogen built for this GPU's architecture? see "
                                    "MORPHOGEN_CUDA_ARCHITECTURES)");
    /* Another list helps only where this toolkit compiles for the GPU:
     * CUDA 13 for compute capability 7.5 and newer, 12 for 5.0 and newer. */
    const int cc = major * 10 + minor;
    int runtime = 0;
    char how[192];
    if (cc < 50)
        snprintf(how, sizeof how, "no CUDA toolkit that morphogen builds with (12 or newer) compiles for it: use "
                                  "run.backend = cpu");
    else if (cc < 75 && cudaRuntimeGetVersion(&runtime) == cudaSuccess && runtime >= 13000)
        snprintf(how, sizeof how, "CUDA %d.%d, which built it, compiles for compute capability 7.5 and newer only: "
                                  "build morphogen with CUDA 12 for this GPU, or use run.backend = cpu",
                 runtime / 1000, runtime % 1000 / 10);
    else
        snprintf(how, sizeof how, "rebuild with -DMORPHOGEN_CUDA_ARCHITECTURES=\"%d;%s\", or use run.backend = cpu",
                 cc, MG_CUDA_ARCHITECTURES);
    return mg_fail(err, "cuda backend: GPU %d is compute capability %d.%d, and this morphogen was built for CUDA "
                        "architectures %s only, which it cannot run; %s",
                   device, major, minor, MG_CUDA_ARCHITECTURES, how);
}

mg_backend *mg_backend_cuda_create(const mg_config *cfg, const mg_nca_dims *dims, int max_steps, const mg_comm *comm,
                                   mg_error *err)
{
    char why[256];
    if (!mg_cuda_device_available(why, sizeof why)) {
        mg_fail(err, "run.backend: 'cuda' needs an NVIDIA GPU, and the CUDA runtime finds none (%s); "
                     "use run.backend = cpu on this machine", why);
        return NULL;
    }
    mg_backend *be = calloc(1, sizeof *be);
    cuda_backend *cb = calloc(1, sizeof *cb);
    if (!be || !cb) {
        free(be);
        free(cb);
        mg_fail(err, "cuda backend: out of memory");
        return NULL;
    }
    be->ops = &CUDA_OPS;
    be->impl = cb;
    cb->dims = *dims;
    cb->max_steps = max_steps > 0 ? max_steps : 0;
    cb->every = cfg->checkpoint_steps > 1 ? cfg->checkpoint_steps : 1;
    mg_tensor_desc t[3];
    cb->n_params = mg_param_layout(dims, t);
    cb->tf32 = cfg->matmul_tf32 != 0;
    cb->smem = mg_cuda_mlp_smem_bytes(dims->channels, dims->hidden, cb->tf32);

    /* One GPU per rank: a node's ranks take its GPUs in turn (ranks share
     * GPUs only when a node has more ranks than GPUs). A scheduler that
     * gives each rank one visible GPU (CUDA_VISIBLE_DEVICES) makes it 0. */
    int count = 0, smem_optin = 0, cc_major = 0, cc_minor = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    cb->device = comm && count > 0 ? comm->local_rank % count : 0;
    if (e == cudaSuccess)
        e = cudaSetDevice(cb->device);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, cb->device);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, cb->device);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&cc_minor, cudaDevAttrComputeCapabilityMinor, cb->device);
    if (e != cudaSuccess) {
        char what[64];
        snprintf(what, sizeof what, "selecting GPU %d", cb->device);
        mg_cuda_fail(err, e, what);
        cuda_destroy(be);
        return NULL;
    }
    if (cb->tf32 && cc_major < 8) {
        mg_fail(err, "run.matmul: 'tf32' needs tensor cores with TF32 (compute capability 8.0 or newer), and GPU %d "
                     "is %d.x; use run.matmul = fp32",
                cb->device, cc_major);
        cuda_destroy(be);
        return NULL;
    }
    if (check_code_for_gpu(cb->device, cc_major, cc_minor, err) != 0) {
        cuda_destroy(be);
        return NULL;
    }
    if (cb->smem > (size_t)smem_optin) {
        /* The tensor-core tiles are padded wider: fp32 may still fit. */
        const int fp32_fits = cb->tf32 && mg_cuda_mlp_smem_bytes(dims->channels, dims->hidden, 0) <= (size_t)smem_optin;
        mg_fail(err, "cuda backend: model.channels = %d with model.hidden = %d needs %zu bytes of shared memory per "
                     "block%s, more than this GPU's %d; use %s for a model this large",
                dims->channels, dims->hidden, cb->smem, cb->tf32 ? " with run.matmul = tf32" : "", smem_optin,
                fp32_fits ? "run.matmul = fp32" : "run.backend = cpu");
        cuda_destroy(be);
        return NULL;
    }
    /* Where it fits, the fp32 backward keeps its sums in shared memory too
     * (the same bits; a GPU with less shared memory adds them per tile). */
    cb->keep_partials = !cb->tf32 && mg_cuda_fma_keeps_partials(dims->channels, dims->hidden, smem_optin);
    if (cb->keep_partials)
        cb->smem += sizeof(float) * (size_t)cb->n_params;
    const size_t cells = (size_t)mg_cells(dims);
    const char *what = NULL;
    /* The device's whole opt-in limit, not this model's need: the limit is
     * the kernels' on this device for the whole process, and a second
     * backend with a smaller model must not take it from a first one still
     * running. (The MLP kernels declare no static shared memory, which
     * would count against the same limit; the emulator stops on any.) */
    if ((e = mg_cuda_mlp_configure((size_t)smem_optin, cb->tf32)) != cudaSuccess)
        what = "configuring the MLP kernels";
    else if ((e = cudaStreamCreateWithFlags(&cb->stream, cudaStreamNonBlocking)) != cudaSuccess)
        what = "creating a stream";
    else if ((e = cudaMalloc((void **)&cb->d_params, sizeof(float) * (size_t)cb->n_params)) != cudaSuccess)
        what = "allocating parameters";
    else if ((e = cudaMalloc((void **)&cb->d_freeze, cells)) != cudaSuccess)
        what = "allocating the freeze mask";
    else if ((e = cudaMalloc((void **)&cb->d_iteration, sizeof(uint32_t))) != cudaSuccess)
        what = "allocating the iteration";
    if (what) {
        mg_cuda_fail(err, e, what);
        cuda_destroy(be);
        return NULL;
    }
    cb->fixed_bytes = sizeof(float) * (size_t)cb->n_params + cells + sizeof(uint32_t);
    mg_cuda_note_memory(cb);
    return be;
}
