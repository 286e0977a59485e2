/* The CPU backend: the reference implementation. Samples run in parallel
 * (OpenMP, one tape per thread); each sample's computation is sequential and
 * its gradient goes to its own buffer, so results do not depend on the
 * number of threads or on scheduling. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "morphogen/backend.h"
#include "morphogen/rng.h"
#include "train_host.h"

typedef struct cpu_backend {
    mg_nca_dims dims;
    int n_threads;
    mg_tape **tapes;  /* [n_threads] */
    float **grad_final; /* [n_threads][cells][C] */
    size_t peak_tape;
    mg_train_host train; /* the training state: the trainer's arrays */
} cpu_backend;

static void cpu_destroy(mg_backend *be)
{
    cpu_backend *cb = be->impl;
    for (int i = 0; i < cb->n_threads; i++) {
        if (cb->tapes)
            mg_tape_destroy_f32(cb->tapes[i]);
        if (cb->grad_final)
            free(cb->grad_final[i]);
    }
    free(cb->tapes);
    free(cb->grad_final);
    mg_train_host_free(&cb->train);
    free(cb);
    free(be);
}

static int cpu_batch(mg_backend *be, const mg_batch_job *job, mg_error *err)
{
    cpu_backend *cb = be->impl;
    const size_t n_state = (size_t)mg_cells(&job->dims) * job->dims.channels;
    const size_t target_len = (size_t)mg_cells(&job->dims) * 4;
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(cb->n_threads)
    for (int b = 0; b < job->n; b++) {
        const int tid = omp_get_thread_num();
        mg_tape *tape = cb->tapes[tid];
        float *state = job->states + (size_t)b * n_state;
        const float *target = job->targets + (size_t)job->target_index[b] * target_len;
        const mg_rollout_key key = {job->seed, job->iteration, job->sample_index[b]};
        if (mg_rollout_forward_f32(tape, &job->rules, &key, job->params, job->steps, state, state) != 0) {
#pragma omp atomic write
            failed = 1;
            continue;
        }
        if (!job->grads) {
            job->loss[b] = mg_loss_f32(&job->dims, state, target, NULL, 1.0);
            continue;
        }
        float *g_final = cb->grad_final[tid];
        job->loss[b] = mg_loss_f32(&job->dims, state, target, g_final, 1.0);
        float *g_params = job->grads + (size_t)b * job->n_params;
        memset(g_params, 0, sizeof(float) * job->n_params);
        mg_rollout_backward_f32(tape, &job->rules, &key, job->params, g_final,
                                job->grad_states ? job->grad_states + (size_t)b * n_state : NULL, g_params);
        const size_t used = mg_tape_bytes_used_f32(tape);
#pragma omp critical(mg_cpu_peak)
        if (used > cb->peak_tape)
            cb->peak_tape = used;
    }
    if (failed)
        return mg_fail(err, "cpu backend: rollout of %d steps exceeds the configured maximum", job->steps);
    return 0;
}

static int cpu_rollout(mg_backend *be, const mg_rollout_job *job, mg_error *err)
{
    (void)be;
    const size_t n_state = (size_t)mg_cells(&job->dims) * job->dims.channels;
    float *next = malloc(sizeof(float) * n_state);
    unsigned char *fire = malloc((size_t)mg_cells(&job->dims));
    void *scratch = malloc(mg_nca_scratch_bytes(&job->dims));
    int rc = 0;
    if (!next || !fire || !scratch) {
        rc = mg_fail(err, "cpu backend: out of memory for a rollout");
        goto done;
    }
    if (job->frame_cb && (rc = job->frame_cb(job->frame_ctx, 0, job->state, err)) != 0)
        goto done;
    for (int step = 0; step < job->steps; step++) {
        mg_fire_mask(job->seed, job->iteration, job->sample_index, (uint32_t)step, job->rules.fire_threshold,
                     mg_cells(&job->dims), fire);
        mg_step_forward_f32(&job->dims, &job->rules, job->params, job->state, fire, next, NULL, scratch);
        memcpy(job->state, next, sizeof(float) * n_state);
        if (job->frame_cb && (rc = job->frame_cb(job->frame_ctx, step + 1, job->state, err)) != 0)
            goto done;
    }
done:
    free(next);
    free(fire);
    free(scratch);
    return rc;
}

static size_t cpu_peak_tape(const mg_backend *be)
{
    const cpu_backend *cb = be->impl;
    return cb->peak_tape;
}

/* Training: the host operations on the trainer's own arrays. */
static mg_train_host *host_of(mg_backend *be) { return &((cpu_backend *)be->impl)->train; }
static int cpu_attach(mg_backend *be, const mg_train_state *s, mg_error *err)
{
    return mg_train_host_attach(host_of(be), s, err);
}
static int cpu_gather(mg_backend *be, const mg_train_batch *b, double *loss, mg_error *err)
{
    return mg_train_host_gather(host_of(be), b, loss, err);
}
static int cpu_rollouts(mg_backend *be, const mg_train_batch *b, double *loss, mg_error *err)
{
    return mg_train_host_rollouts(host_of(be), be, b, loss, err);
}
static int cpu_exchange(mg_backend *be, mg_error *err) { return mg_train_host_exchange(host_of(be), err); }
static int cpu_reduce(mg_backend *be, double *norms, mg_error *err)
{
    return mg_train_host_reduce(host_of(be), norms, err);
}
static int cpu_apply(mg_backend *be, const mg_train_batch *b, const double *norms, double lr, int64_t adam_step,
                     mg_error *err)
{
    return mg_train_host_apply(host_of(be), b, norms, lr, adam_step, err);
}
static int cpu_sync(mg_backend *be, int pool, mg_error *err)
{
    (void)be, (void)pool, (void)err; /* the state is the trainer's arrays already */
    return 0;
}

static const mg_train_ops CPU_TRAIN = {cpu_attach, cpu_gather, cpu_rollouts, cpu_exchange,
                                       cpu_reduce, cpu_apply,  cpu_sync};
static size_t cpu_device_bytes(const mg_backend *be)
{
    (void)be;
    return 0;
}

static const mg_backend_ops CPU_OPS = {"cpu",       cpu_batch,  cpu_rollout,     cpu_peak_tape,
                                       cpu_destroy, &CPU_TRAIN, cpu_device_bytes};

mg_backend *mg_backend_cpu_create(const mg_config *cfg, const mg_nca_dims *dims, int max_steps, mg_error *err)
{
    mg_backend *be = calloc(1, sizeof *be);
    cpu_backend *cb = calloc(1, sizeof *cb);
    if (!be || !cb) {
        free(be);
        free(cb);
        mg_fail(err, "cpu backend: out of memory");
        return NULL;
    }
    be->ops = &CPU_OPS;
    be->impl = cb;
    cb->dims = *dims;
    cb->n_threads = cfg->threads > 0 ? cfg->threads : omp_get_max_threads();
    cb->tapes = calloc((size_t)cb->n_threads, sizeof *cb->tapes);
    cb->grad_final = calloc((size_t)cb->n_threads, sizeof *cb->grad_final);
    int ok = cb->tapes && cb->grad_final;
    for (int i = 0; ok && i < cb->n_threads; i++) {
        cb->tapes[i] = mg_tape_create_f32(dims, max_steps, cfg->checkpoint_steps);
        cb->grad_final[i] = malloc(sizeof(float) * (size_t)mg_cells(dims) * dims->channels);
        ok = cb->tapes[i] && cb->grad_final[i];
    }
    if (!ok) {
        mg_fail(err, "cpu backend: out of memory for %d rollout tapes of %d steps", cb->n_threads, max_steps);
        cpu_destroy(be);
        return NULL;
    }
    return be;
}
