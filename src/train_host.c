/* The training operations on host memory (see train_host.h). */
#include <stdlib.h>
#include <string.h>

#include "morphogen/optimizer.h"
#include "morphogen/pool.h"
#include "train_host.h"

static size_t state_len(const mg_train_state *s) { return (size_t)mg_cells(&s->dims) * s->dims.channels; }

int mg_train_host_attach(mg_train_host *h, const mg_train_state *s, mg_error *err)
{
    mg_train_host_free(h);
    h->s = *s;
    h->batch_states = malloc(sizeof(float) * state_len(s) * (size_t)s->batch_count);
    h->grads = malloc(sizeof(float) * (size_t)s->n_params * (size_t)s->batch);
    if (!h->batch_states || !h->grads) {
        mg_train_host_free(h);
        return mg_fail(err, "out of memory for a batch of %d samples", s->batch);
    }
    return 0;
}

int mg_train_host_gather(mg_train_host *h, const mg_train_batch *b, double *loss, mg_error *err)
{
    (void)err;
    const mg_train_state *s = &h->s;
    const size_t n_state = state_len(s), target_len = (size_t)mg_cells(&s->dims) * 4;
    for (int i = 0; i < s->batch_count; i++) {
        float *state = h->batch_states + n_state * i;
        memcpy(state, s->pool_states + n_state * b->local_index[i], sizeof(float) * n_state);
        loss[i] = mg_loss_f32(&s->dims, state, s->targets + target_len * b->target_index[i], NULL, 1.0);
    }
    return 0;
}

int mg_train_host_rollouts(mg_train_host *h, mg_backend *be, const mg_train_batch *b, double *loss, mg_error *err)
{
    const mg_train_state *s = &h->s;
    const size_t n_state = state_len(s), cells = (size_t)mg_cells(&s->dims);
    for (int i = 0; i < s->batch_count; i++) {
        float *state = h->batch_states + n_state * i;
        if (b->action[i] == MG_TRAIN_RESEED)
            mg_seed_state(s->cfg, &s->dims, state);
        else if (b->action[i] == MG_TRAIN_DAMAGE)
            mg_zero_cells(&s->dims, b->damage + cells * i, state);
    }
    const mg_batch_job job = {
        .dims = s->dims,
        .rules = b->rules,
        .seed = s->cfg->seed,
        .iteration = b->iteration,
        .steps = b->steps,
        .n = s->batch_count,
        .sample_index = b->sample_index,
        .target_index = b->target_index,
        .targets = s->targets,
        .params = s->params,
        .n_params = s->n_params,
        .states = h->batch_states,
        .loss = loss,
        .grads = h->grads + (size_t)s->batch_first * s->n_params,
        .grad_states = NULL,
    };
    return be->ops->batch(be, &job, err);
}

int mg_train_host_exchange(mg_train_host *h, mg_error *err)
{
    return mg_comm_allgather_floats(h->s.comm, h->grads, h->s.batch, h->s.n_params, err);
}

int mg_train_host_reduce(mg_train_host *h, double *norms, mg_error *err)
{
    (void)err;
    const mg_train_state *s = &h->s;
    mg_tree_sum(h->grads, s->batch, s->n_params);
    const float inv_b = 1.0f / (float)s->batch;
    for (int64_t i = 0; i < s->n_params; i++)
        h->grads[i] *= inv_b;
    mg_grad_norms(h->grads, s->tensors, s->n_tensors, norms);
    return 0;
}

int mg_train_host_apply(mg_train_host *h, const mg_train_batch *b, const double *norms, double lr, int64_t adam_step,
                        mg_error *err)
{
    (void)err;
    const mg_train_state *s = &h->s;
    if (s->cfg->grad_normalize)
        mg_grad_scale_tensors(h->grads, s->tensors, s->n_tensors, norms);
    mg_adam_update(s->cfg, lr, adam_step, s->params, s->adam_m, s->adam_v, h->grads, s->n_params);
    const size_t n_state = state_len(s);
    for (int i = 0; i < s->batch_count; i++)
        memcpy(s->pool_states + n_state * b->local_index[i], h->batch_states + n_state * i, sizeof(float) * n_state);
    return 0;
}

void mg_train_host_free(mg_train_host *h)
{
    free(h->batch_states);
    free(h->grads);
    memset(h, 0, sizeof *h);
}
