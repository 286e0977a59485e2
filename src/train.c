/* The training iteration (Distill's growing recipe) and the training loop
 * with checkpoints, progress and clean stops. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "morphogen/optimizer.h"
#include "morphogen/pool.h"
#include "morphogen/progress.h"
#include "morphogen/rng.h"
#include "morphogen/train.h"

int mg_trainer_step(mg_trainer *t, int64_t inject_nan_at, mg_metrics_row *row, mg_error *err)
{
    const mg_config *cfg = &t->cfg;
    const mg_train_ops *ops = t->backend->ops->train;
    const int B = cfg->batch, b0 = t->batch_first, n = t->batch_count;
    const int64_t it = t->iteration + 1;
    const size_t cells = (size_t)mg_cells(&t->dims);

    /* Batch: every rank draws the same global batch and takes the positions
     * it owns (their pool slices live on this rank). */
    mg_pool_select(cfg->seed, it, cfg->pool_size, B, t->batch_index);
    for (int i = 0; i < n; i++) {
        const int64_t p = t->batch_index[b0 + i];
        t->local_index[i] = (int32_t)(p - t->pool_first);
        t->sample_index[i] = (uint32_t)p;
        t->batch_target[i] = t->pool_target[t->local_index[i]];
        t->action[i] = MG_TRAIN_KEEP;
    }
    mg_train_batch batch = {
        .iteration = (uint32_t)it,
        .steps = mg_rollout_steps(cfg, it),
        .rules = {mg_fire_threshold(cfg->fire_rate), cfg->alive_threshold,
                  cfg->pin_seed ? mg_seed_cell(cfg, &t->dims) : -1, NULL},
        .local_index = t->local_index,
        .sample_index = t->sample_index,
        .target_index = t->batch_target,
        .action = t->action,
        .damage = t->damage,
    };
    if (ops->gather(t->backend, &batch, t->batch_loss + b0, err) != 0)
        return MG_EXIT_ERROR;

    /* Reseed the worst and damage the best of the GLOBAL batch. */
    if (mg_comm_allgather_doubles(t->comm, t->batch_loss, B, 1, err) != 0)
        return MG_EXIT_ERROR;
    mg_rank_by_loss(t->batch_loss, B, t->order);
    for (int r = 0; r < B; r++) {
        const int b = t->order[r];
        if (b < b0 || b >= b0 + n)
            continue;
        if (r < cfg->replace_worst)
            t->action[b - b0] = MG_TRAIN_RESEED;
        else if (r >= B - cfg->damage) {
            t->action[b - b0] = MG_TRAIN_DAMAGE;
            mg_damage_mask(cfg, &t->dims, it, t->batch_index[b], t->damage + cells * (b - b0));
        }
    }

    /* Rollouts and per-sample gradients of this rank's positions; then every
     * rank holds every position's gradient and loss and reduces them in the
     * same fixed tree order: identical bits on 1 or N ranks. */
    if (ops->rollouts(t->backend, &batch, t->batch_loss + b0, err) != 0 || ops->exchange(t->backend, err) != 0 ||
        mg_comm_allgather_doubles(t->comm, t->batch_loss, B, 1, err) != 0 ||
        ops->reduce(t->backend, row->grad_norm, err) != 0)
        return MG_EXIT_ERROR;
    double loss = 0;
    for (int b = 0; b < B; b++)
        loss += t->batch_loss[b];
    loss /= B;
    if (inject_nan_at == it)
        loss = NAN;

    row->iteration = it;
    row->loss = loss;
    row->lr = mg_lr_at(cfg, it);
    row->cell_steps_per_s = 0;
    /* A gradient element is non-finite exactly when its tensor's norm is
     * (squares of finite floats cannot overflow a double). */
    int finite = isfinite(loss);
    for (int k = 0; k < t->n_tensors; k++)
        finite = finite && isfinite(row->grad_norm[k]);
    if (!finite)
        return MG_EXIT_NONFINITE;

    t->adam_step++;
    if (ops->apply(t->backend, &batch, row->grad_norm, row->lr, t->adam_step, err) != 0)
        return MG_EXIT_ERROR;
    /* The final states went back into the pool; their losses go here. */
    for (int i = 0; i < n; i++)
        t->pool_loss[t->local_index[i]] = (float)t->batch_loss[b0 + i];
    t->iteration = it;
    return 0;
}

static int append_metrics(mg_trainer *t, const mg_metrics_row *row, mg_error *err)
{
    if (t->n_metrics == t->metrics_cap) {
        const int64_t cap = t->metrics_cap ? 2 * t->metrics_cap : 1024;
        mg_metrics_row *m = realloc(t->metrics, sizeof *m * (size_t)cap);
        if (!m)
            return mg_fail(err, "out of memory for metrics");
        t->metrics = m;
        t->metrics_cap = cap;
    }
    t->metrics[t->n_metrics++] = *row;
    return 0;
}

/* Writes the host copy of the state as the run file's checkpoint; the
 * caller has brought it from the backend (mg_trainer_sync with the pool).
 * Collective: every rank writes its pool shard into the same file. */
static int checkpoint(mg_trainer *t, const char *path, double wall_time, mg_error *err)
{
    mg_run_snapshot snap;
    mg_trainer_snapshot(t, wall_time, &snap);
    if (!t->comm->world) /* a plain process: no MPI, the serial writer */
        return mg_runfile_write(path, &snap, err);
    return mg_runfile_write_shared(path, &snap, t->pool_first, t->pool_count, t->comm->world, err);
}

/* One line from whichever rank has something to say: rank 0 speaks for
 * the job, any other rank names itself. */
static void say(const mg_trainer *t, FILE *log, const char *text)
{
    if (t->comm->rank == 0)
        fprintf(log, "morphogen: %s\n", text);
    else
        fprintf(log, "morphogen (rank %d of %d): %s\n", t->comm->rank, t->comm->size, text);
    fflush(log);
}

/* Test hook (MORPHOGEN_TEST_DIVERGE): flip the lowest mantissa bit of one
 * weight in this rank's host copy, the array the replica check hashes. It is
 * done there, after the download and just before the comparison, rather than
 * in the backend's working copy after the update: the cuda backend's weights
 * live on the device and every download overwrites the host copy, so this is
 * the one place where the same few lines reach what both backends compare,
 * without an upload operation that only a test would use. (On the cpu
 * backend the host array is the working copy, so the flip stays.) */
static void flip_one_weight(mg_trainer *t)
{
    uint32_t bits;
    memcpy(&bits, &t->params[0], sizeof bits);
    bits ^= 1u;
    memcpy(&t->params[0], &bits, sizeof bits);
}

int mg_trainer_run(mg_trainer *t, const mg_train_options *opt, mg_error *err)
{
    const mg_config *cfg = &t->cfg;
    mg_comm *comm = t->comm;
    const double start = mg_monotonic_seconds();
    const int64_t first = t->iteration;
    int diverge_pending = opt->diverge_at > 0 && opt->diverge_rank == comm->rank;
    mg_progress progress;
    mg_progress_init(&progress, opt->log, cfg->log_every);

    /* Write the starting point at once: a bad output path fails now, not
     * after hours, and a crash before the first checkpoint leaves a file. */
    if (mg_trainer_sync(t, 1, err) != 0 || checkpoint(t, opt->out_path, t->wall_time, err) != 0)
        return MG_EXIT_ERROR;

    while (t->iteration < cfg->iterations) {
        const double t0 = mg_monotonic_seconds();
        mg_metrics_row row;
        memset(&row, 0, sizeof row);
        if (opt->fail_at == t->iteration + 1 && opt->fail_rank == comm->rank) {
            /* Test hook: a failure only this rank sees, mid-run. */
            mg_fail(err, "simulated failure at iteration %lld (MORPHOGEN_TEST_FAIL)", (long long)opt->fail_at);
            say(t, opt->log, err->msg);
            mg_comm_abort(comm, MG_EXIT_ERROR);
        }
        const int rc = mg_trainer_step(t, opt->inject_nan_at, &row, err);
        if (rc == MG_EXIT_NONFINITE) {
            if (comm->rank == 0)
                mg_progress_finish(&progress);
            /* Checkpoints exist at the start of this session and at every
             * multiple of checkpoint_every since. */
            int64_t last_good = t->iteration - (t->iteration % cfg->checkpoint_every);
            if (last_good < first)
                last_good = first;
            mg_fail(err, "%s: loss is %s at iteration %lld; training stopped, the run file keeps the last good "
                         "checkpoint (iteration %lld)",
                    opt->out_path, isnan(row.loss) ? "NaN" : isfinite(row.loss) ? "finite but a gradient is not" : "Inf",
                    (long long)row.iteration, (long long)last_good);
            return MG_EXIT_NONFINITE;
        }
        if (rc != 0) {
            /* A failure in this rank's own work: end the whole job now
             * rather than leave the others waiting in a collective. */
            say(t, opt->log, err->msg);
            mg_comm_abort(comm, MG_EXIT_ERROR);
        }
        const double t1 = mg_monotonic_seconds();
        const int steps = mg_rollout_steps(cfg, t->iteration);
        /* Rank 0's clock for every rank, so the replicated metrics agree. */
        double timing[2] = {t->wall_time + (t1 - start), (double)cfg->batch * mg_cells(&t->dims) * steps / (t1 - t0)};
        mg_comm_bcast_doubles(comm, timing, 2);
        row.wall_time = timing[0];
        row.cell_steps_per_s = timing[1];
        if (append_metrics(t, &row, err) != 0) {
            say(t, opt->log, err->msg);
            mg_comm_abort(comm, MG_EXIT_ERROR);
        }
        if (comm->rank == 0) {
            const double rate = (double)(t->iteration - first) / (t1 - start);
            mg_progress_update(&progress, t->iteration, cfg->iterations, row.loss, rate, row.cell_steps_per_s, t1);
        }
        /* A signal on any rank stops every rank after the same iteration. */
        const int stopping = mg_comm_any(comm, opt->stop && *opt->stop);
        const int writing = stopping || t->iteration % cfg->checkpoint_every == 0 || t->iteration == cfg->iterations;
        /* The ranks' replicas of the weights must agree: every verify_every
         * iterations, and before every checkpoint, so that a run file never
         * holds weights the ranks disagreed on. One download from the
         * backend serves both (with the pool when a checkpoint follows). */
        const int checking = comm->size > 1 && (t->iteration % cfg->verify_every == 0 || writing);
        if ((checking || writing) && mg_trainer_sync(t, writing, err) != 0) {
            /* This rank's device failed: end the whole job rather than
             * leave the others waiting in the check or the write. */
            say(t, opt->log, err->msg);
            mg_comm_abort(comm, MG_EXIT_ERROR);
        }
        if (checking) {
            if (diverge_pending && t->iteration >= opt->diverge_at) {
                flip_one_weight(t);
                diverge_pending = 0;
            }
            if (!mg_comm_replicated(comm, t->params, t->n_params)) {
                if (comm->rank == 0)
                    mg_progress_finish(&progress);
                /* This iteration's checkpoint is not written (it comes after
                 * the check): the last one is the session's first or the
                 * last multiple of checkpoint_every before this iteration. */
                int64_t last = (t->iteration - 1) - (t->iteration - 1) % cfg->checkpoint_every;
                if (last < first)
                    last = first;
                /* Every rank returns the same error; cmd_train prints rank 0's. */
                mg_fail(err, "%s: the ranks' weights differ after iteration %lld (replicas diverged: a hardware or "
                             "MPI fault); stopped, the run file keeps the last checkpoint (iteration %lld)",
                        opt->out_path, (long long)t->iteration, (long long)last);
                return MG_EXIT_ERROR;
            }
        }

        if (writing) {
            if (checkpoint(t, opt->out_path, row.wall_time, err) != 0) {
                if (comm->rank == 0)
                    mg_progress_finish(&progress);
                return MG_EXIT_ERROR;
            }
        }
        if (stopping) {
            if (comm->rank == 0) {
                mg_progress_finish(&progress);
                fprintf(opt->log, "morphogen: stopped by signal after iteration %lld; checkpoint written to %s; "
                                  "continue with --resume %s\n",
                        (long long)t->iteration, opt->out_path, opt->out_path);
            }
            return MG_EXIT_INTERRUPTED;
        }
    }
    if (comm->rank == 0)
        mg_progress_finish(&progress);
    return MG_EXIT_OK;
}
