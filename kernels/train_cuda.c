/* The training state on the device (mg_train_ops of the cuda backend): the
 * pool shard, parameters and Adam moments live in GPU memory from attach
 * on; an iteration moves only indices, damage masks, losses and norms
 * across PCIe, and the gradients move between GPUs through NCCL (or MPI on
 * the host, staged, when NCCL cannot be used). The host reference of every
 * operation is src/train_host.c. */
#define _POSIX_C_SOURCE 200809L /* gethostname */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend_cuda_internal.h"
#include "mg_cuda_train.h"
#include "morphogen/optimizer.h"
#include "morphogen/pool.h"
#include "morphogen/progress.h"

_Static_assert(MG_MAX_TENSORS <= MG_CUDA_MAX_TENSORS, "mg_cuda_tensors must hold every parameter tensor");
_Static_assert((int)MG_TRAIN_KEEP == (int)MG_CUDA_KEEP && (int)MG_TRAIN_RESEED == (int)MG_CUDA_RESEED &&
                   (int)MG_TRAIN_DAMAGE == (int)MG_CUDA_DAMAGE,
               "the kernels read the trainer's action codes");

static size_t cells_of(const cuda_backend *cb) { return (size_t)mg_cells(&cb->dims); }

void mg_cuda_train_release(cuda_backend *cb)
{
    cuda_train *tr = &cb->train;
    void *all[] = {tr->d_pool,         tr->d_all_targets,  tr->d_seed,  tr->d_adam_m, tr->d_adam_v, tr->d_grads,
                   tr->d_rows,         tr->d_action,       tr->d_damage, tr->d_norms, tr->d_norm_partial};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i])
            cudaFree(all[i]);
    if (tr->h_stage) {
        /* An exchange that failed half-way may leave its upload from the
         * staging buffer in flight. */
        (void)cudaStreamSynchronize(cb->stream);
        cudaFreeHost(tr->h_stage);
        mg_cuda_clear_last_error();
    }
    mg_nccl_destroy(tr->nccl);
    if (tr->graphs)
        for (int i = 0; i <= cb->max_steps; i++)
            if (tr->graphs[i].exec)
                cudaGraphExecDestroy(tr->graphs[i].exec);
    free(tr->graphs);
    memset(tr, 0, sizeof *tr);
    cb->train_bytes = 0;
}

static mg_cuda_tensors tensors_of(const mg_train_state *s)
{
    mg_cuda_tensors t;
    memset(&t, 0, sizeof t);
    t.n = s->n_tensors;
    for (int k = 0; k < s->n_tensors; k++) {
        t.offset[k] = s->tensors[k].offset;
        t.size[k] = s->tensors[k].size;
    }
    return t;
}

/* How gradients travel between ranks: NCCL when every rank can use it.
 * Collective, so it runs at the first exchange, when every rank is known
 * to have set up (a rank that failed earlier would not be in step). */
static int choose_exchange(cuda_backend *cb, mg_error *err)
{
    cuda_train *tr = &cb->train;
    mg_comm *comm = tr->s.comm;
    tr->exchange_chosen = 1;
    /* A GPU is named by its host and PCI bus id: ranks that see their GPUs
     * through different CUDA_VISIBLE_DEVICES still name a shared one alike. */
    char gpu[128], host[64] = "", bus[32] = "";
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "?");
    host[sizeof host - 1] = '\0';
    if (cudaDeviceGetPCIBusId(bus, (int)sizeof bus, cb->device) != cudaSuccess) {
        mg_cuda_clear_last_error();
        snprintf(bus, sizeof bus, "rank %d", comm->rank); /* unknown: assume its own */
    }
    snprintf(gpu, sizeof gpu, "%s %s", host, bus);
    char why[320] = "";
    if (mg_nccl_create(comm, gpu, &tr->nccl, why, sizeof why, err) != 0)
        return -1;
    if (!tr->nccl) {
        /* Pinned: from pageable memory the driver copies through a bounce
         * buffer of its own, at a fraction of PCIe's rate, and every
         * iteration moves the whole batch's gradients up and this rank's
         * down. Host memory, so not in the device memory counted. */
        const size_t bytes = sizeof(float) * (size_t)tr->s.n_params * (size_t)tr->s.batch;
        const cudaError_t e = cudaMallocHost((void **)&tr->h_stage, bytes);
        if (e != cudaSuccess) {
            tr->h_stage = NULL;
            char what[128];
            snprintf(what, sizeof what, "allocating %.1f MiB of pinned host memory for the gradient exchange",
                     (double)bytes / 1048576.0);
            return mg_cuda_fail(err, e, what);
        }
        if (comm->rank == 0)
            fprintf(stderr, "morphogen: cuda backend: gradients are exchanged through MPI on the host, not NCCL: %s\n",
                    why);
    }
    return 0;
}

/* The state's host arrays, the targets and the seed state to the device
 * (its buffers allocated), in one synchronised batch of copies. */
static int upload_state(cuda_backend *cb, mg_error *err)
{
    cuda_train *tr = &cb->train;
    const mg_train_state *s = &tr->s;
    const size_t cells = cells_of(cb), state = mg_cuda_state_floats(&cb->dims), P = (size_t)s->n_params;
    float *seed = malloc(sizeof(float) * state);
    if (!seed)
        return mg_fail(err, "cuda backend: out of memory");
    mg_seed_state(s->cfg, &cb->dims, seed);
    const struct {
        void *dst;
        const void *src;
        size_t bytes;
        const char *what;
    } up[] = {
        {tr->d_seed, seed, sizeof(float) * state, "the seed state"},
        {cb->d_params, s->params, sizeof(float) * P, "parameters"},
        {tr->d_adam_m, s->adam_m, sizeof(float) * P, "Adam's moments"},
        {tr->d_adam_v, s->adam_v, sizeof(float) * P, "Adam's moments"},
        {tr->d_pool, s->pool_states, sizeof(float) * state * (size_t)s->pool_count, "the pool"},
        {tr->d_all_targets, s->targets, sizeof(float) * cells * 4 * (size_t)s->n_targets, "the targets"},
    };
    cudaError_t e = cudaSuccess;
    const char *what = "the training state";
    for (size_t i = 0; i < sizeof up / sizeof up[0] && e == cudaSuccess; i++)
        if ((e = cudaMemcpyAsync(up[i].dst, up[i].src, up[i].bytes, cudaMemcpyHostToDevice, cb->stream)) !=
            cudaSuccess)
            what = up[i].what;
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(cb->stream); /* before seed is freed */
    free(seed);
    if (e != cudaSuccess) {
        char text[64];
        snprintf(text, sizeof text, "uploading %s", what);
        return mg_cuda_fail(err, e, text);
    }
    return 0;
}

static int cuda_attach(mg_backend *be, const mg_train_state *s, mg_error *err)
{
    cuda_backend *cb = be->impl;
    mg_cuda_train_release(cb);
    cuda_train *tr = &cb->train;
    /* Checked first: a bad value costs no allocation or upload. */
    const char *graphs = getenv("MORPHOGEN_CUDA_GRAPHS");
    if (graphs && strcmp(graphs, "0") != 0 && strcmp(graphs, "1") != 0)
        return mg_fail(err, "MORPHOGEN_CUDA_GRAPHS=%s: must be 0 (launch a rollout's kernels one by one) or 1 (replay "
                            "CUDA graphs, the default)", graphs);
    tr->use_graphs = !(graphs && strcmp(graphs, "0") == 0);
    tr->s = *s;
    tr->tensors = tensors_of(s);
    if (memcmp(&s->dims, &cb->dims, sizeof cb->dims) != 0 || s->n_params != cb->n_params ||
        s->n_tensors > MG_CUDA_MAX_TENSORS)
        return mg_fail(err, "cuda backend: the training state's dimensions differ from the backend's");
    if (mg_cuda_ensure_capacity(cb, s->batch_count, err) != 0)
        return -1;
    const size_t cells = cells_of(cb), state = mg_cuda_state_floats(&cb->dims), P = (size_t)s->n_params;
    const mg_cuda_alloc want[] = {
        {(void **)&tr->d_pool, sizeof(float) * state * (size_t)s->pool_count},
        {(void **)&tr->d_all_targets, sizeof(float) * cells * 4 * (size_t)s->n_targets},
        {(void **)&tr->d_seed, sizeof(float) * state},
        {(void **)&tr->d_adam_m, sizeof(float) * P},
        {(void **)&tr->d_adam_v, sizeof(float) * P},
        {(void **)&tr->d_grads, sizeof(float) * P * (size_t)s->batch},
        {(void **)&tr->d_rows, sizeof(int32_t) * 2 * (size_t)s->batch_count},
        {(void **)&tr->d_action, (size_t)s->batch_count},
        {(void **)&tr->d_damage, cells * (size_t)s->batch_count},
        {(void **)&tr->d_norms, sizeof(double) * MG_CUDA_MAX_TENSORS},
        {(void **)&tr->d_norm_partial, sizeof(double) * MG_CUDA_MAX_TENSORS * MG_CUDA_NORM_BLOCKS},
    };
    size_t total = 0;
    const cudaError_t e = mg_cuda_alloc_set(want, sizeof want / sizeof want[0], &total);
    if (e != cudaSuccess) {
        mg_cuda_train_release(cb);
        return mg_fail(err, "cuda backend: out of device memory for the training state (a pool shard of %lld "
                            "samples of %dx%dx%d; %.1f MiB so far): %s",
                       (long long)s->pool_count, cb->dims.height, cb->dims.width, cb->dims.channels,
                       (double)total / 1048576.0, cudaGetErrorString(e));
    }
    cb->train_bytes = total;
    mg_cuda_note_memory(cb);
    if (upload_state(cb, err) != 0)
        return -1;
    tr->graphs = calloc((size_t)cb->max_steps + 1, sizeof *tr->graphs);
    if (!tr->graphs)
        return mg_fail(err, "cuda backend: out of memory");
    tr->attached = 1;
    return 0;
}

/* The backend of a training operation, or NULL (err filled) before attach. */
static cuda_backend *attached(mg_backend *be, mg_error *err)
{
    cuda_backend *cb = be->impl;
    if (!cb->train.attached) {
        mg_fail(err, "cuda backend: a training operation before attach");
        return NULL;
    }
    return cb;
}

static int cuda_gather(mg_backend *be, const mg_train_batch *b, double *loss, mg_error *err)
{
    cuda_backend *cb = attached(be, err);
    if (!cb)
        return -1;
    const cuda_train *tr = &cb->train;
    const int n = tr->s.batch_count;
    const size_t cells = cells_of(cb), state = mg_cuda_state_floats(&cb->dims);
    float *start = mg_cuda_rollout_start(cb, n, 1);
    int32_t rows[2 * n]; /* alive until the synchronisation below */
    memcpy(rows, b->local_index, sizeof(int32_t) * n);
    memcpy(rows + n, b->target_index, sizeof(int32_t) * n);
    CK(cudaMemcpyAsync(cb->d_sample_index, b->sample_index, sizeof(uint32_t) * n, cudaMemcpyHostToDevice,
                       cb->stream), "uploading sample indices");
    CK(cudaMemcpyAsync(tr->d_rows, rows, sizeof rows, cudaMemcpyHostToDevice, cb->stream),
       "uploading the batch's pool and target indices");
    CK(mg_cuda_gather_rows(n, (int64_t)state, tr->d_rows, tr->d_pool, start, cb->stream),
       "gathering the batch from the pool");
    CK(mg_cuda_gather_rows(n, (int64_t)cells * 4, tr->d_rows + n, tr->d_all_targets, cb->d_targets, cb->stream),
       "gathering the batch's targets");
    CK(mg_cuda_loss(n, (int)cells, cb->dims.channels, start, cb->d_targets, cb->d_loss, NULL, cb->stream),
       "the pool samples' losses");
    CK(cudaMemcpyAsync(loss, cb->d_loss, sizeof(double) * n, cudaMemcpyDeviceToHost, cb->stream),
       "downloading losses");
    CK(cudaStreamSynchronize(cb->stream), "gathering the batch");
    return 0;
}

/* Whether a graph captured with rules `a` serves rules `b`: the rules'
 * values are kernel arguments (the freeze mask's contents are uploaded to
 * the same buffer each time, but whether there is one is an argument). */
static int same_rules(const mg_step_rules *a, const mg_step_rules *b)
{
    return a->fire_threshold == b->fire_threshold && a->alive_threshold == b->alive_threshold &&
           a->pin_cell == b->pin_cell && (a->freeze != NULL) == (b->freeze != NULL);
}

/* Capture the rollout of b->steps steps (forward, loss, backward, weight
 * gradients: 3 launches per step forward, backward or recomputed, and a
 * selection per rollout and recomputed segment) into g. Every launch of it
 * has fixed buffers and sizes; what changes from one iteration to the next
 * (iteration, sample keys, states, parameters) is in device memory, so the
 * graph replays at every iteration with that length. */
static int capture_rollouts(cuda_backend *cb, rollout_graph *g, const mg_train_batch *b, float *d_grads,
                            mg_error *err)
{
    cuda_train *tr = &cb->train;
    CK(cudaStreamBeginCapture(cb->stream, cudaStreamCaptureModeThreadLocal), "capturing a rollout");
    float *final = NULL;
    const int rc = mg_cuda_run_rollouts(cb, tr->s.batch_count, b->steps, &b->rules, tr->s.cfg->seed, d_grads, &final,
                                        NULL, err);
    cudaGraph_t graph = NULL;
    const cudaError_t ended = cudaStreamEndCapture(cb->stream, &graph); /* always end the capture */
    if (rc != 0) {
        if (ended == cudaSuccess && graph)
            cudaGraphDestroy(graph);
        mg_cuda_clear_last_error(); /* the failure is reported: err */
        return -1;
    }
    CK(ended, "capturing a rollout");
    const cudaError_t made = cudaGraphInstantiate(&g->exec, graph, 0);
    cudaGraphDestroy(graph);
    if (made != cudaSuccess) {
        g->exec = NULL;
        return mg_cuda_fail(err, made, "instantiating a rollout's CUDA graph");
    }
    g->rules = b->rules;
    g->d_final = final;
    return 0;
}

static int cuda_rollouts(mg_backend *be, const mg_train_batch *b, double *loss, mg_error *err)
{
    cuda_backend *cb = attached(be, err);
    if (!cb)
        return -1;
    cuda_train *tr = &cb->train;
    const int n = tr->s.batch_count;
    if (b->steps < 0 || b->steps > cb->max_steps)
        return mg_fail(err, "cuda backend: rollout of %d steps exceeds the configured maximum", b->steps);
    const size_t cells = cells_of(cb);
    float *start = mg_cuda_rollout_start(cb, n, 1);
    /* The damage masks of the damaged positions, in one copy of the span
     * from the first to the last (rows between them are not read). */
    int first = n, last = -1;
    for (int i = 0; i < n; i++)
        if (b->action[i] == MG_TRAIN_DAMAGE) {
            if (last < 0)
                first = i;
            last = i;
        }
    if (last >= 0)
        CK(cudaMemcpyAsync(tr->d_damage + cells * first, b->damage + cells * first, cells * (size_t)(last - first + 1),
                           cudaMemcpyHostToDevice, cb->stream), "uploading damage masks");
    CK(cudaMemcpyAsync(tr->d_action, b->action, (size_t)n, cudaMemcpyHostToDevice, cb->stream),
       "uploading the batch's actions");
    CK(mg_cuda_apply_actions(n, (int)cells, cb->dims.channels, tr->d_action, tr->d_damage, tr->d_seed, start,
                             cb->stream), "reseeding and damaging");
    if (b->rules.freeze)
        CK(cudaMemcpyAsync(cb->d_freeze, b->rules.freeze, cells, cudaMemcpyHostToDevice, cb->stream),
           "uploading the freeze mask");
    cb->h_iteration = b->iteration;
    CK(cudaMemcpyAsync(cb->d_iteration, &cb->h_iteration, sizeof cb->h_iteration, cudaMemcpyHostToDevice, cb->stream),
       "uploading the iteration");
    float *d_grads = tr->d_grads + (size_t)tr->s.batch_first * cb->n_params, *final = NULL;
    if (!tr->use_graphs) {
        if (mg_cuda_run_rollouts(cb, n, b->steps, &b->rules, tr->s.cfg->seed, d_grads, &final, NULL, err) != 0)
            return -1;
    } else {
        rollout_graph *g = &tr->graphs[b->steps];
        if (g->exec && !same_rules(&g->rules, &b->rules)) {
            cudaGraphExecDestroy(g->exec);
            g->exec = NULL;
        }
        if (!g->exec && capture_rollouts(cb, g, b, d_grads, err) != 0)
            return -1;
        CK(cudaGraphLaunch(g->exec, cb->stream), "launching a rollout's CUDA graph");
        final = g->d_final;
    }
    tr->d_final = final;
    CK(cudaMemcpyAsync(loss, cb->d_loss, sizeof(double) * n, cudaMemcpyDeviceToHost, cb->stream),
       "downloading losses");
    CK(cudaStreamSynchronize(cb->stream), "running the batch");
    return 0;
}

static int cuda_exchange(mg_backend *be, mg_error *err)
{
    cuda_backend *cb = attached(be, err);
    if (!cb)
        return -1;
    cuda_train *tr = &cb->train;
    const mg_train_state *s = &tr->s;
    if (!s->comm || s->comm->size <= 1)
        return 0;
    if (!tr->exchange_chosen && choose_exchange(cb, err) != 0)
        return -1;
    const size_t P = (size_t)s->n_params, mine = P * (size_t)s->batch_count;
    if (tr->nccl) {
        /* Counted with MPI's collectives in the communicator's totals (the
         * "done" line's communication share). */
        const double t0 = mg_monotonic_seconds();
        if (mg_nccl_allgather(tr->nccl, tr->d_grads, mine, cb->stream, err) != 0)
            return -1;
        s->comm->seconds += mg_monotonic_seconds() - t0;
        s->comm->bytes += sizeof(float) * P * (size_t)(s->batch - s->batch_count);
        return 0;
    }
    float *own = tr->d_grads + P * (size_t)s->batch_first;
    CK(cudaMemcpyAsync(tr->h_stage + P * (size_t)s->batch_first, own, sizeof(float) * mine, cudaMemcpyDeviceToHost,
                       cb->stream), "downloading gradients for the exchange");
    CK(cudaStreamSynchronize(cb->stream), "downloading gradients for the exchange");
    if (mg_comm_allgather_floats(s->comm, tr->h_stage, s->batch, s->n_params, err) != 0)
        return -1;
    /* From pinned memory this copy is truly asynchronous: h_stage is next
     * written by the next exchange's download, after it on this stream,
     * and read by MPI only after that download's synchronisation. */
    CK(cudaMemcpyAsync(tr->d_grads, tr->h_stage, sizeof(float) * P * (size_t)s->batch, cudaMemcpyHostToDevice,
                       cb->stream), "uploading exchanged gradients");
    return 0;
}

static int cuda_reduce(mg_backend *be, double *norms, mg_error *err)
{
    cuda_backend *cb = attached(be, err);
    if (!cb)
        return -1;
    cuda_train *tr = &cb->train;
    const mg_train_state *s = &tr->s;
    CK(mg_cuda_tree_sum_scale(s->batch, s->n_params, 1.0f / (float)s->batch, tr->d_grads, cb->stream),
       "summing the batch's gradients");
    CK(mg_cuda_tensor_norms(tr->d_grads, &tr->tensors, tr->d_norm_partial, tr->d_norms, cb->stream), "gradient norms");
    CK(cudaMemcpyAsync(norms, tr->d_norms, sizeof(double) * (size_t)s->n_tensors, cudaMemcpyDeviceToHost, cb->stream),
       "downloading gradient norms");
    CK(cudaStreamSynchronize(cb->stream), "reducing gradients");
    return 0;
}

static int cuda_apply(mg_backend *be, const mg_train_batch *b, const double *norms, double lr, int64_t adam_step,
                      mg_error *err)
{
    cuda_backend *cb = attached(be, err);
    if (!cb)
        return -1;
    cuda_train *tr = &cb->train;
    const mg_train_state *s = &tr->s;
    /* One writer per pool sample: positions in distinct pool slices. */
    const int n = s->batch_count;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (b->local_index[i] == b->local_index[j])
                return mg_fail(err, "cuda backend: batch positions %d and %d name the same pool sample %d", j, i,
                               b->local_index[i]);
    float scale[MG_CUDA_MAX_TENSORS];
    for (int k = 0; k < s->n_tensors; k++)
        scale[k] = mg_grad_scale(norms[k]);
    const mg_adam_coef c = mg_adam_coefficients(s->cfg, lr, adam_step);
    const mg_cuda_adam a = {c.b1, c.b2, c.step_size, c.inv_sqrt_c2, c.eps, c.decay};
    CK(mg_cuda_adam_update(&tr->tensors, s->cfg->grad_normalize, scale, &a, tr->d_grads, cb->d_params, tr->d_adam_m,
                           tr->d_adam_v, cb->stream), "the Adam step");
    CK(cudaMemcpyAsync(tr->d_rows, b->local_index, sizeof(int32_t) * n, cudaMemcpyHostToDevice, cb->stream),
       "uploading the batch's pool indices");
    CK(mg_cuda_scatter_rows(n, (int64_t)mg_cuda_state_floats(&cb->dims), tr->d_rows, tr->d_final, tr->d_pool,
                            cb->stream), "returning the batch to the pool");
    CK(cudaStreamSynchronize(cb->stream), "the update");
    return 0;
}

static int cuda_sync(mg_backend *be, int pool, mg_error *err)
{
    cuda_backend *cb = attached(be, err);
    if (!cb)
        return -1;
    const mg_train_state *s = &cb->train.s;
    const size_t P = (size_t)s->n_params;
    CK(cudaMemcpyAsync(s->params, cb->d_params, sizeof(float) * P, cudaMemcpyDeviceToHost, cb->stream),
       "downloading parameters");
    CK(cudaMemcpyAsync(s->adam_m, cb->train.d_adam_m, sizeof(float) * P, cudaMemcpyDeviceToHost, cb->stream),
       "downloading Adam's moments");
    CK(cudaMemcpyAsync(s->adam_v, cb->train.d_adam_v, sizeof(float) * P, cudaMemcpyDeviceToHost, cb->stream),
       "downloading Adam's moments");
    if (pool)
        CK(cudaMemcpyAsync(s->pool_states, cb->train.d_pool,
                           sizeof(float) * mg_cuda_state_floats(&cb->dims) * (size_t)s->pool_count,
                           cudaMemcpyDeviceToHost, cb->stream), "downloading the pool");
    CK(cudaStreamSynchronize(cb->stream), "downloading the training state");
    return 0;
}

const mg_train_ops MG_CUDA_TRAIN_OPS = {cuda_attach, cuda_gather, cuda_rollouts, cuda_exchange,
                                        cuda_reduce, cuda_apply,  cuda_sync};
