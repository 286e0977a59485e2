/* `morphogen grad`: loss and every gradient for given weights and input
 * states, for cross-checks against other autograd implementations. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../h5_util.h"
#include "cli.h"
#include "morphogen/backend.h"
#include "morphogen/fileio.h"
#include "morphogen/optimizer.h"
#include "morphogen/pool.h"
#include "morphogen/rng.h"

static const char USAGE[] =
    "usage: morphogen grad RUN.h5 --states STATES.h5 --steps N --out GRAD.h5 [--set section.key=value ...]\n"
    "                      [--target K]\n"
    "\n"
    "Roll each state of STATES.h5 (/states float32 [B][height][width][channels]) N steps with the\n"
    "run's checkpointed weights and config, and write the loss against target K (default 0) and\n"
    "every gradient to GRAD.h5: /loss (float64, batch mean), /loss_per_sample float64 [B],\n"
    "/final_states, /grad/w1 /grad/b1 /grad/w2 (gradient of the batch-mean loss, before any\n"
    "normalisation) and /grad/states (w.r.t. the input states). Fire masks use the run seed,\n"
    "iteration 0 and sample = row index; --set model.fire_rate=1 makes the rollout deterministic.\n"
    "--set may change keys that keep the shapes (model.fire_rate, model.alive_threshold, seed.*) and\n"
    "run.* (run.backend, run.matmul = tf32 for the tensor cores, run.threads).\n";

static int write_outputs(const char *out_path, const mg_tensor_desc *tensors, int n_tensors, const float *grad,
                         const double *loss, int B, const int64_t *state_dims, const float *final_states,
                         const float *grad_states, mg_error *err)
{
    /* Written next to the destination and renamed over it when complete. */
    char path[4096];
    if (mg_tmp_path(out_path, path, sizeof path, err) != 0)
        return -1;
    mg_h5_quiet q;
    mg_h5_quiet_begin(&q);
    int ok = 0;
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f >= 0) {
        double mean = 0;
        for (int b = 0; b < B; b++)
            mean += loss[b];
        mean /= B;
        const int64_t nb = B;
        hid_t g = -1;
        ok = mg_h5_write_dataset(f, "loss", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, NULL, &mean) == 0 &&
             mg_h5_write_dataset(f, "loss_per_sample", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &nb, loss) == 0 &&
             mg_h5_write_dataset(f, "final_states", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, state_dims,
                                 final_states) == 0 &&
             (g = H5Gcreate2(f, "grad", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
             mg_h5_write_dataset(g, "states", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, state_dims, grad_states) == 0;
        for (int k = 0; ok && k < n_tensors; k++)
            ok = mg_h5_write_dataset(g, tensors[k].name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, tensors[k].rank,
                                     tensors[k].dims, grad + tensors[k].offset) == 0;
        if (!ok) {
            char cause[256];
            mg_h5_failure_cause(cause, sizeof cause);
            mg_fail(err, "%s: cannot write gradients: %s", out_path, cause);
        }
        if (g >= 0)
            H5Gclose(g);
        if (H5Fclose(f) < 0 && ok) {
            ok = 0;
            mg_fail(err, "%s: cannot write gradients (close failed)", out_path);
        }
    } else {
        char cause[256];
        mg_h5_failure_cause(cause, sizeof cause);
        mg_fail(err, "%s: cannot create: %s", out_path, cause);
    }
    mg_h5_quiet_end(&q);
    if (!ok) {
        unlink(path);
        return -1;
    }
    return mg_commit_tmp(path, out_path, err);
}

/* Keys that leave the run's shapes and weights as they are: the rollout's
 * rules, the seed cell, and how and where it is computed (run.*). */
static int shape_preserving(const char *assignment)
{
    return strncmp(assignment, "model.fire_rate=", 16) == 0 || strncmp(assignment, "model.alive_threshold=", 22) == 0 ||
           strncmp(assignment, "seed.", 5) == 0 || strncmp(assignment, "run.", 4) == 0;
}

int mg_cmd_grad(int argc, char **argv)
{
    const char *run_path = NULL, *states_path = NULL, *out_path = NULL;
    int steps = -1, target = 0, missing = 0, n_sets = 0;
    const char *sets[64];
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(USAGE, stdout);
            return MG_EXIT_OK;
        } else if ((v = mg_cli_value("grad", "--steps", argc, argv, &i, &missing))) {
            if (mg_cli_int("grad", "--steps", v, 0, 100000, &steps) != 0)
                return MG_EXIT_USAGE;
        } else if ((v = mg_cli_value("grad", "--target", argc, argv, &i, &missing))) {
            if (mg_cli_int("grad", "--target", v, 0, MG_MAX_TARGETS - 1, &target) != 0)
                return MG_EXIT_USAGE;
        } else if ((v = mg_cli_value("grad", "--states", argc, argv, &i, &missing))) {
            states_path = v;
        } else if ((v = mg_cli_value("grad", "--out", argc, argv, &i, &missing))) {
            out_path = v;
        } else if ((v = mg_cli_value("grad", "--set", argc, argv, &i, &missing))) {
            if (!shape_preserving(v) || n_sets == 64) {
                fprintf(stderr, "morphogen grad: --set %s: only model.fire_rate, model.alive_threshold, seed.* "
                                "and run.* can be changed here\n", v);
                return MG_EXIT_USAGE;
            }
            sets[n_sets++] = v;
        } else if (missing) {
            return MG_EXIT_USAGE;
        } else if (mg_cli_positional("grad", argv[i], &run_path) != 0) {
            return MG_EXIT_USAGE;
        }
    }
    if (!run_path || !states_path || !out_path || steps < 0) {
        fprintf(stderr, "morphogen grad: needs RUN.h5, --states, --steps and --out (see morphogen grad --help)\n");
        return MG_EXIT_USAGE;
    }

    mg_error err = {{0}};
    mg_run_snapshot snap;
    if (mg_runfile_read(run_path, &snap, &err) != 0) {
        fprintf(stderr, "morphogen: %s\n", err.msg);
        return MG_EXIT_ERROR;
    }
    int status = MG_EXIT_ERROR, rank = 0;
    int64_t sd[8];
    float *states = NULL, *grads = NULL, *grad_states = NULL;
    double *loss = NULL;
    uint32_t *sample = NULL;
    int32_t *target_index = NULL;
    mg_backend *be = NULL;
    mg_config cfg = snap.cfg;
    for (int i = 0; i < n_sets; i++)
        if (mg_config_set(&cfg, sets[i], &err) != 0) {
            status = MG_EXIT_USAGE;
            goto report;
        }
    if (mg_config_validate(&cfg, run_path, &err) != 0) {
        status = MG_EXIT_USAGE;
        goto report;
    }
    if (target >= snap.n_targets) {
        mg_fail(&err, "--target %d: %s has %d target(s)", target, run_path, snap.n_targets);
        status = MG_EXIT_USAGE;
        goto report;
    }
    const mg_nca_dims d = {snap.height, snap.width, cfg.channels, cfg.hidden};
    if (mg_h5_read_floats(states_path, "/states", &rank, sd, &states, &err) != 0)
        goto report;
    if (rank != 4 || sd[1] != d.height || sd[2] != d.width || sd[3] != d.channels || sd[0] < 1 || sd[0] > 4096) {
        mg_fail(&err, "%s: /states must be float32 [B][%d][%d][%d] with 1 <= B <= 4096", states_path, d.height,
                d.width, d.channels);
        goto report;
    }
    const int B = (int)sd[0];
    grads = malloc(sizeof(float) * (size_t)snap.n_params * B);
    grad_states = malloc(sizeof(float) * (size_t)mg_cells(&d) * d.channels * B);
    loss = malloc(sizeof(double) * B);
    sample = malloc(sizeof(uint32_t) * B);
    target_index = malloc(sizeof(int32_t) * B);
    if (!grads || !grad_states || !loss || !sample || !target_index) {
        mg_fail(&err, "out of memory for %d samples", B);
        goto report;
    }
    for (int b = 0; b < B; b++) {
        sample[b] = (uint32_t)b;
        target_index[b] = target;
    }
    be = mg_backend_create(&cfg, &d, steps, NULL, &err);
    if (!be)
        goto report;
    const mg_batch_job job = {
        .dims = d,
        .rules = {mg_fire_threshold(cfg.fire_rate), cfg.alive_threshold, cfg.pin_seed ? mg_seed_cell(&cfg, &d) : -1,
                  NULL},
        .seed = cfg.seed,
        .iteration = 0,
        .steps = steps,
        .n = B,
        .sample_index = sample,
        .target_index = target_index,
        .targets = snap.targets,
        .params = snap.params,
        .n_params = snap.n_params,
        .states = states,
        .loss = loss,
        .grads = grads,
        .grad_states = grad_states,
    };
    if (be->ops->batch(be, &job, &err) != 0)
        goto report;
    /* Per-sample gradients of each sample's loss -> gradient of the mean. */
    const size_t n_state = (size_t)mg_cells(&d) * d.channels;
    for (size_t i = 0; i < n_state * B; i++)
        grad_states[i] /= (float)B;
    mg_tree_sum(grads, B, snap.n_params);
    for (int64_t i = 0; i < snap.n_params; i++)
        grads[i] /= (float)B;
    if (write_outputs(out_path, snap.tensors, snap.n_tensors, grads, loss, B, sd, states, grad_states, &err) != 0)
        goto report;
    status = MG_EXIT_OK;
    goto done;
report:
    fprintf(stderr, "morphogen: %s\n", err.msg);
done:
    mg_backend_destroy(be);
    free(states);
    free(grads);
    free(grad_states);
    free(loss);
    free(sample);
    free(target_index);
    mg_run_snapshot_free(&snap);
    return status;
}
