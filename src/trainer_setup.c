/* Creating a trainer: from a config (new run) or from a run file (resume). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "morphogen/optimizer.h"
#include "morphogen/pool.h"
#include "morphogen/target.h"
#include "morphogen/train.h"

static size_t state_len(const mg_trainer *t) { return (size_t)mg_cells(&t->dims) * t->dims.channels; }

int mg_trainer_check_ranks(const mg_config *cfg, const mg_comm *comm, const char *source, mg_error *err)
{
    if (cfg->batch % comm->size != 0)
        return mg_fail(err, "%s: train.batch (%d) must be a multiple of the number of ranks (%d): each rank "
                            "computes an equal share of every batch",
                       source, cfg->batch, comm->size);
    return 0;
}

/* The pool samples [*pool_first, + *pool_count) that this rank's batch
 * positions draw from. */
static void pool_shard(const mg_config *cfg, const mg_comm *comm, int64_t *pool_first, int64_t *pool_count)
{
    const int b0 = mg_comm_block_first(comm, cfg->batch, comm->rank);
    const int b1 = mg_comm_block_first(comm, cfg->batch, comm->rank + 1);
    int32_t first, count, last_first;
    mg_pool_slice(cfg->pool_size, cfg->batch, b0, &first, &count);
    mg_pool_slice(cfg->pool_size, cfg->batch, b1 - 1, &last_first, &count);
    *pool_first = first;
    *pool_count = (int64_t)last_first + count - first;
}

/* This rank's batch positions and the pool slices they draw from. */
static void assign_shard(mg_trainer *t, mg_comm *comm)
{
    t->comm = comm;
    t->batch_first = mg_comm_block_first(comm, t->cfg.batch, comm->rank);
    t->batch_count = mg_comm_block_first(comm, t->cfg.batch, comm->rank + 1) - t->batch_first;
    pool_shard(&t->cfg, comm, &t->pool_first, &t->pool_count);
}

/* Buffers and backend that depend only on the config, and the backend's
 * copy of the state (called last, once the state is complete). */
static int allocate_work(mg_trainer *t, mg_error *err)
{
    const mg_config *cfg = &t->cfg;
    const int B = cfg->batch, n = t->batch_count;
    t->batch_index = malloc(sizeof(int32_t) * B);
    t->local_index = malloc(sizeof(int32_t) * n);
    t->sample_index = malloc(sizeof(uint32_t) * n);
    t->batch_target = malloc(sizeof(int32_t) * n);
    t->action = malloc((size_t)n);
    t->damage = malloc((size_t)mg_cells(&t->dims) * n);
    t->batch_loss = malloc(sizeof(double) * B);
    t->order = malloc(sizeof(int) * B);
    if (!t->batch_index || !t->local_index || !t->sample_index || !t->batch_target || !t->action || !t->damage ||
        !t->batch_loss || !t->order)
        return mg_fail(err, "out of memory for a batch of %d samples", B);
    t->backend = mg_backend_create(cfg, &t->dims, cfg->steps_max, t->comm, err);
    if (!t->backend)
        return -1;
    const mg_train_state s = {
        .cfg = &t->cfg,
        .dims = t->dims,
        .n_tensors = t->n_tensors,
        .tensors = t->tensors,
        .n_params = t->n_params,
        .params = t->params,
        .adam_m = t->adam_m,
        .adam_v = t->adam_v,
        .pool_count = t->pool_count,
        .pool_states = t->pool_states,
        .n_targets = t->n_targets,
        .targets = t->targets,
        .batch = B,
        .batch_first = t->batch_first,
        .batch_count = n,
        .comm = t->comm,
    };
    return t->backend->ops->train->attach(t->backend, &s, err);
}

int mg_trainer_sync(mg_trainer *t, int pool, mg_error *err)
{
    return t->backend->ops->train->sync(t->backend, pool, err);
}

static int allocate_state(mg_trainer *t, mg_error *err)
{
    const size_t P = (size_t)t->pool_count;
    t->n_tensors = 3;
    t->n_params = mg_param_layout(&t->dims, t->tensors);
    t->params = calloc((size_t)t->n_params, sizeof(float));
    t->adam_m = calloc((size_t)t->n_params, sizeof(float));
    t->adam_v = calloc((size_t)t->n_params, sizeof(float));
    t->pool_states = malloc(sizeof(float) * state_len(t) * P);
    t->pool_loss = malloc(sizeof(float) * P);
    t->pool_target = malloc(sizeof(int32_t) * P);
    if (!t->params || !t->adam_m || !t->adam_v || !t->pool_states || !t->pool_loss || !t->pool_target)
        return mg_fail(err, "out of memory for a pool of %zu samples of %dx%dx%d", P, t->dims.height,
                       t->dims.width, t->dims.channels);
    return 0;
}

int mg_trainer_init(mg_trainer *t, const mg_config *cfg, const char *config_source, mg_comm *comm, mg_error *err)
{
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    assign_shard(t, comm);
    t->config_text = mg_config_to_ini(cfg);
    t->config_source = strdup(config_source ? config_source : "");
    if (!t->config_text || !t->config_source)
        return mg_fail(err, "out of memory");
    const int side = cfg->size + 2 * cfg->padding;
    t->dims = (mg_nca_dims){side, side, cfg->channels, cfg->hidden};
    t->n_targets = cfg->n_targets;
    t->targets = malloc(sizeof(float) * (size_t)mg_cells(&t->dims) * 4 * t->n_targets);
    if (!t->targets)
        return mg_fail(err, "out of memory for %d targets", t->n_targets);
    for (int i = 0; i < t->n_targets; i++) {
        mg_image img = {0};
        if (mg_target_load(cfg->spec[i], cfg->size, cfg->padding, &img, err) != 0)
            return -1;
        if (img.height != side || img.width != side) {
            mg_image_free(&img);
            return mg_fail(err, "%s: target is %dx%d, expected %dx%d", cfg->spec[i], img.height, img.width, side,
                           side);
        }
        memcpy(t->targets + (size_t)i * mg_cells(&t->dims) * 4, img.rgba, sizeof(float) * mg_cells(&t->dims) * 4);
        mg_image_free(&img);
    }
    if (allocate_state(t, err) != 0)
        return -1;
    mg_params_init(cfg->seed, t->tensors, t->n_tensors, t->params);
    for (int64_t i = 0; i < t->pool_count; i++) {
        mg_seed_state(cfg, &t->dims, t->pool_states + state_len(t) * i);
        t->pool_loss[i] = NAN;
        t->pool_target[i] = (int32_t)((t->pool_first + i) % t->n_targets);
    }
    return allocate_work(t, err);
}

/* The config source of a resumed run: the original text plus one
 * "; --set k=v (on resume at iteration N)" line per override. */
static char *append_resume_overrides(const char *source, int64_t iteration, int n, char **overrides)
{
    size_t len = strlen(source) + 2;
    for (int i = 0; i < n; i++)
        len += strlen(overrides[i]) + 64;
    char *text = malloc(len);
    if (!text)
        return NULL;
    size_t at = (size_t)snprintf(text, len, "%s", source);
    if (n > 0 && at > 0 && text[at - 1] != '\n')
        at += (size_t)snprintf(text + at, len - at, "\n");
    for (int i = 0; i < n; i++)
        at += (size_t)snprintf(text + at, len - at, "; --set %s (on resume at iteration %lld)\n", overrides[i],
                               (long long)iteration);
    return text;
}

/* Keys a resume may change: they do not alter the computation so far
 * (checkpoint_steps only trades memory for time, bit-identically). */
static int override_allowed(const char *assignment)
{
    return strncmp(assignment, "train.iterations=", 17) == 0 ||
           strncmp(assignment, "train.checkpoint_steps=", 23) == 0 || strncmp(assignment, "run.", 4) == 0;
}

/* A key a resume may not change may still be given the value the run
 * already has (a requeued Slurm job repeats the command line that started
 * the run): only a change is refused. Returns 1 when the assignment leaves
 * the config as it is, 0 when it changes it, -1 with err filled when the
 * assignment itself is bad. */
static int override_keeps_config(const mg_config *cfg, const char *assignment, mg_error *err)
{
    mg_config trial = *cfg;
    if (mg_config_set(&trial, assignment, err) != 0)
        return -1;
    char *before = mg_config_to_ini(cfg), *after = mg_config_to_ini(&trial);
    const int same = before && after ? strcmp(before, after) == 0 : -1;
    free(before);
    free(after);
    if (same < 0)
        mg_fail(err, "out of memory");
    return same;
}

int mg_trainer_resume(mg_trainer *t, const char *path, int n_overrides, char **overrides, mg_comm *comm,
                      mg_error *err)
{
    memset(t, 0, sizeof *t);
    mg_run_snapshot snap;
    if (!comm->world) {
        if (mg_runfile_read(path, &snap, err) != 0)
            return MG_EXIT_ERROR;
    } else {
        /* The shard depends on the config inside the file: read the config
         * alone first, then everything with this rank's slab. */
        mg_config file_cfg;
        if (mg_runfile_read_config_shared(path, &file_cfg, comm->world, err) != 0)
            return MG_EXIT_ERROR;
        if (mg_trainer_check_ranks(&file_cfg, comm, path, err) != 0)
            return MG_EXIT_USAGE;
        int64_t first, count;
        pool_shard(&file_cfg, comm, &first, &count);
        if (mg_runfile_read_shared(path, &snap, first, count, comm->world, err) != 0)
            return MG_EXIT_ERROR;
    }
    /* Bad overrides or a rank count that does not fit are usage errors. */
    int rc = MG_EXIT_USAGE;
    t->cfg = snap.cfg;
    for (int i = 0; i < n_overrides; i++) {
        if (!override_allowed(overrides[i])) {
            const int keeps = override_keeps_config(&t->cfg, overrides[i], err);
            if (keeps < 0)
                goto done;
            if (!keeps) {
                mg_fail(err, "--set %s: cannot change this key when resuming %s (only train.iterations, "
                             "train.checkpoint_steps and run.* may change; other keys only to the value "
                             "the run has)", overrides[i], path);
                goto done;
            }
        }
        if (mg_config_set(&t->cfg, overrides[i], err) != 0)
            goto done;
    }
    if (mg_config_validate(&t->cfg, path, err) != 0 || mg_trainer_check_ranks(&t->cfg, comm, path, err) != 0)
        goto done;
    assign_shard(t, comm);
    rc = MG_EXIT_ERROR;
    const int side = t->cfg.size + 2 * t->cfg.padding;
    t->dims = (mg_nca_dims){side, side, t->cfg.channels, t->cfg.hidden};
    if (snap.height != side || snap.width != side || snap.channels != t->cfg.channels ||
        snap.pool_size != t->cfg.pool_size || snap.n_targets != t->cfg.n_targets) {
        mg_fail(err, "%s: checkpoint shapes do not match its config", path);
        goto done;
    }
    if (allocate_state(t, err) != 0)
        goto done;
    if (snap.n_params != t->n_params || snap.n_tensors != t->n_tensors) {
        mg_fail(err, "%s: checkpoint has %lld parameters, the config implies %lld", path,
                (long long)snap.n_params, (long long)t->n_params);
        goto done;
    }
    t->config_text = mg_config_to_ini(&t->cfg);
    t->config_source = append_resume_overrides(snap.config_source ? snap.config_source : "", snap.iteration,
                                               n_overrides, overrides);
    t->n_targets = snap.n_targets;
    t->targets = snap.targets;
    snap.targets = NULL;
    memcpy(t->params, snap.params, sizeof(float) * t->n_params);
    memcpy(t->adam_m, snap.adam_m, sizeof(float) * t->n_params);
    memcpy(t->adam_v, snap.adam_v, sizeof(float) * t->n_params);
    t->adam_step = snap.adam_step;
    t->iteration = snap.iteration;
    t->wall_time = snap.wall_time;
    /* The serial reader returns the whole pool, the shared one this rank's;
     * when the snapshot holds exactly this rank's samples, take its arrays
     * instead of copying (the pool is the bulk of the memory). */
    const int64_t offset = comm->world ? 0 : t->pool_first;
    if (offset == 0) {
        free(t->pool_states);
        free(t->pool_loss);
        free(t->pool_target);
        t->pool_states = snap.pool_states;
        t->pool_loss = snap.pool_loss;
        t->pool_target = snap.pool_target;
        snap.pool_states = NULL;
        snap.pool_loss = NULL;
        snap.pool_target = NULL;
    } else {
        memcpy(t->pool_states, snap.pool_states + state_len(t) * offset,
               sizeof(float) * state_len(t) * t->pool_count);
        memcpy(t->pool_loss, snap.pool_loss + offset, sizeof(float) * t->pool_count);
        memcpy(t->pool_target, snap.pool_target + offset, sizeof(int32_t) * t->pool_count);
    }
    /* Metrics up to the checkpoint; anything after it is recomputed. */
    t->n_metrics = 0;
    for (int64_t i = 0; i < snap.n_metrics; i++)
        if (snap.metrics[i].iteration <= snap.iteration)
            t->n_metrics = i + 1;
    t->metrics_cap = t->n_metrics > 0 ? t->n_metrics : 1;
    t->metrics = malloc(sizeof(mg_metrics_row) * (size_t)t->metrics_cap);
    if (!t->config_text || !t->config_source || !t->metrics) {
        mg_fail(err, "out of memory");
        goto done;
    }
    memcpy(t->metrics, snap.metrics, sizeof(mg_metrics_row) * (size_t)t->n_metrics);
    rc = allocate_work(t, err) != 0 ? MG_EXIT_ERROR : MG_EXIT_OK;
done:
    mg_run_snapshot_free(&snap);
    return rc;
}

void mg_trainer_snapshot(const mg_trainer *t, double wall_time, mg_run_snapshot *snap)
{
    memset(snap, 0, sizeof *snap);
    snap->config_text = t->config_text;
    snap->config_source = t->config_source;
    snap->cfg = t->cfg;
    snap->n_targets = t->n_targets;
    snap->height = t->dims.height;
    snap->width = t->dims.width;
    snap->targets = t->targets;
    snap->n_tensors = t->n_tensors;
    memcpy(snap->tensors, t->tensors, sizeof t->tensors);
    snap->n_params = t->n_params;
    snap->params = t->params;
    snap->adam_m = t->adam_m;
    snap->adam_v = t->adam_v;
    snap->adam_step = t->adam_step;
    snap->iteration = t->iteration;
    snap->rng_seed = t->cfg.seed;
    snap->wall_time = wall_time;
    snap->pool_size = t->cfg.pool_size;
    snap->channels = t->dims.channels;
    snap->pool_states = t->pool_states; /* this rank's samples [pool_first, +pool_count) */
    snap->pool_loss = t->pool_loss;
    snap->pool_target = t->pool_target;
    snap->n_metrics = t->n_metrics;
    snap->metrics = t->metrics;
}

void mg_trainer_free(mg_trainer *t)
{
    mg_backend_destroy(t->backend);
    free(t->config_text);
    free(t->config_source);
    free(t->targets);
    free(t->params);
    free(t->adam_m);
    free(t->adam_v);
    free(t->pool_states);
    free(t->pool_loss);
    free(t->pool_target);
    free(t->metrics);
    free(t->batch_index);
    free(t->local_index);
    free(t->sample_index);
    free(t->batch_target);
    free(t->action);
    free(t->damage);
    free(t->batch_loss);
    free(t->order);
    memset(t, 0, sizeof *t);
}
