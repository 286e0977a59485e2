/* `morphogen grow`: roll a trained model out from its seed and keep frames. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../h5_util.h"
#include "cli.h"
#include "morphogen/backend.h"
#include "morphogen/fileio.h"
#include "morphogen/pool.h"
#include "morphogen/rng.h"
#include "morphogen/target.h"

static const char USAGE[] =
    "usage: morphogen grow RUN.h5 [--steps N] [--out GROW.h5] [--strip FILE.png] [--strip-steps A,B,...]\n"
    "                      [--seed S] [--scale K]\n"
    "\n"
    "Grow the run's last checkpointed model from its seed for N steps (default: train.steps_max).\n"
    "Writes every frame to GROW.h5 (/frames float32 [N+1][height][width][channels], /steps int32)\n"
    "and a strip of chosen frames composited on white to FILE.png (default: GROW_strip.png;\n"
    "default steps: 8 evenly spaced from 0 to N). Fire masks are keyed by --seed (default: the\n"
    "run seed) with iteration 0 and sample 0.\n";

typedef struct grow_frames {
    size_t state_len;
    float *frames; /* [steps+1][state_len] */
} grow_frames;

static int keep_frame(void *ctx, int step, const float *state, mg_error *err)
{
    (void)err;
    grow_frames *g = ctx;
    memcpy(g->frames + g->state_len * (size_t)step, state, sizeof(float) * g->state_len);
    return 0;
}

static int write_grow_file(const char *out_path, const char *run_path, int64_t iteration, const float *frames,
                           int steps, const mg_nca_dims *d, mg_error *err)
{
    /* Written next to the destination and renamed over it when complete, so
     * a failure never leaves a partial file or destroys an earlier one. */
    char path[4096];
    if (mg_tmp_path(out_path, path, sizeof path, err) != 0)
        return -1;
    const int64_t dims[4] = {steps + 1, d->height, d->width, d->channels}, n = steps + 1;
    int32_t *step_ids = malloc(sizeof(int32_t) * (size_t)n);
    if (!step_ids)
        return mg_fail(err, "%s: out of memory", out_path);
    for (int i = 0; i <= steps; i++)
        step_ids[i] = i;
    mg_h5_quiet q;
    mg_h5_quiet_begin(&q);
    int ok = 0;
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f >= 0)
        ok = mg_h5_write_dataset(f, "frames", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, dims, frames) == 0 &&
             mg_h5_write_dataset(f, "steps", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &n, step_ids) == 0 &&
             mg_h5_write_string_attr(f, "run", run_path) == 0 &&
             mg_h5_write_scalar_attr(f, "iteration", H5T_STD_I64LE, H5T_NATIVE_INT64, &iteration) == 0;
    char cause[256] = "";
    if (!ok)
        mg_h5_failure_cause(cause, sizeof cause);
    if (f >= 0 && H5Fclose(f) < 0 && ok) {
        ok = 0;
        mg_h5_failure_cause(cause, sizeof cause);
    }
    mg_h5_quiet_end(&q);
    free(step_ids);
    if (!ok) {
        unlink(path);
        return mg_fail(err, "%s: cannot write frames: %s", out_path, cause);
    }
    return mg_commit_tmp(path, out_path, err);
}

/* Frames side by side, premultiplied RGBA, 2-pixel transparent gaps,
 * nearest-neighbour upscaled by `scale`. */
static int write_strip(const char *path, const float *frames, const int *pick, int n_pick, const mg_nca_dims *d,
                       int scale, mg_error *err)
{
    const int gap = 2, fw = d->width * scale, fh = d->height * scale;
    mg_image img = {fh, n_pick * fw + (n_pick - 1) * gap, NULL};
    img.rgba = calloc((size_t)img.height * img.width * 4, sizeof(float));
    if (!img.rgba)
        return mg_fail(err, "%s: out of memory for the strip", path);
    const size_t state_len = (size_t)mg_cells(d) * d->channels;
    for (int i = 0; i < n_pick; i++) {
        const float *s = frames + state_len * (size_t)pick[i];
        for (int y = 0; y < fh; y++)
            for (int x = 0; x < fw; x++) {
                const float *cell = s + ((size_t)(y / scale) * d->width + x / scale) * d->channels;
                float *px = img.rgba + ((size_t)y * img.width + i * (fw + gap) + x) * 4;
                for (int c = 0; c < 4; c++)
                    px[c] = cell[c];
            }
    }
    const int rc = mg_png_write(path, &img, 1, err);
    mg_image_free(&img);
    return rc;
}

static int parse_steps_list(const char *text, int max_step, int *pick, int max_pick, int *n_pick)
{
    *n_pick = 0;
    const char *p = text;
    while (*p) {
        char *end;
        const long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > max_step || *n_pick >= max_pick)
            return -1;
        pick[(*n_pick)++] = (int)v;
        if (*end == ',')
            end++;
        else if (*end != '\0')
            return -1;
        p = end;
    }
    return *n_pick > 0 ? 0 : -1;
}

int mg_cmd_grow(int argc, char **argv)
{
    const char *run_path = NULL, *out_path = NULL, *strip_path = NULL, *strip_steps = NULL, *seed_text = NULL;
    int steps = -1, scale = 2, missing = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(USAGE, stdout);
            return MG_EXIT_OK;
        } else if ((v = mg_cli_value("grow", "--steps", argc, argv, &i, &missing))) {
            if (mg_cli_int("grow", "--steps", v, 0, 1000000, &steps) != 0)
                return MG_EXIT_USAGE;
        } else if ((v = mg_cli_value("grow", "--scale", argc, argv, &i, &missing))) {
            if (mg_cli_int("grow", "--scale", v, 1, 64, &scale) != 0)
                return MG_EXIT_USAGE;
        } else if ((v = mg_cli_value("grow", "--out", argc, argv, &i, &missing))) {
            out_path = v;
        } else if ((v = mg_cli_value("grow", "--strip", argc, argv, &i, &missing))) {
            strip_path = v;
        } else if ((v = mg_cli_value("grow", "--strip-steps", argc, argv, &i, &missing))) {
            strip_steps = v;
        } else if ((v = mg_cli_value("grow", "--seed", argc, argv, &i, &missing))) {
            seed_text = v;
        } else if (missing) {
            return MG_EXIT_USAGE;
        } else if (mg_cli_positional("grow", argv[i], &run_path) != 0) {
            return MG_EXIT_USAGE;
        }
    }
    if (!run_path) {
        fprintf(stderr, "morphogen grow: missing RUN.h5 (see morphogen grow --help)\n");
        return MG_EXIT_USAGE;
    }

    mg_error err = {{0}};
    mg_run_snapshot snap;
    if (mg_runfile_read(run_path, &snap, &err) != 0) {
        fprintf(stderr, "morphogen: %s\n", err.msg);
        return MG_EXIT_ERROR;
    }
    int status = MG_EXIT_ERROR;
    char *out_owned = NULL, *strip_owned = NULL;
    float *frames = NULL;
    mg_backend *be = NULL;
    const mg_config *cfg = &snap.cfg;
    if (steps < 0)
        steps = cfg->steps_max;
    uint64_t seed = cfg->seed;
    if (seed_text) {
        char *end;
        seed = strtoull(seed_text, &end, 10);
        if (*end != '\0' || end == seed_text) {
            fprintf(stderr, "morphogen grow: --seed: '%s' is not an unsigned integer\n", seed_text);
            status = MG_EXIT_USAGE;
            goto done;
        }
    }
    const mg_nca_dims d = {snap.height, snap.width, cfg->channels, cfg->hidden};
    int pick[64], n_pick = 0;
    if (strip_steps) {
        if (parse_steps_list(strip_steps, steps, pick, 64, &n_pick) != 0) {
            fprintf(stderr, "morphogen grow: --strip-steps: '%s' must be up to 64 comma-separated steps in 0..%d\n",
                    strip_steps, steps);
            status = MG_EXIT_USAGE;
            goto done;
        }
    } else {
        n_pick = steps < 7 ? steps + 1 : 8;
        for (int i = 0; i < n_pick; i++)
            pick[i] = n_pick > 1 ? (int)((long)steps * i / (n_pick - 1)) : 0;
    }
    if (!out_path) {
        const char *base = strrchr(run_path, '/');
        base = base ? base + 1 : run_path;
        const char *dot = strrchr(base, '.');
        const size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
        out_owned = malloc(n + 16);
        if (out_owned)
            snprintf(out_owned, n + 16, "%.*s_grow.h5", (int)n, base);
        out_path = out_owned;
    }
    if (!strip_path && out_path) {
        const char *dot = strrchr(out_path, '.');
        const size_t n = dot ? (size_t)(dot - out_path) : strlen(out_path);
        strip_owned = malloc(n + 16);
        if (strip_owned)
            snprintf(strip_owned, n + 16, "%.*s_strip.png", (int)n, out_path);
        strip_path = strip_owned;
    }
    const size_t state_len = (size_t)mg_cells(&d) * d.channels;
    frames = malloc(sizeof(float) * state_len * ((size_t)steps + 1));
    if (!out_path || !strip_path || !frames) {
        fprintf(stderr, "morphogen grow: out of memory for %d frames of %dx%dx%d\n", steps + 1, d.height, d.width,
                d.channels);
        goto done;
    }
    be = mg_backend_create(cfg, &d, steps, NULL, &err);
    if (!be)
        goto report;
    float *state = malloc(sizeof(float) * state_len);
    if (!state) {
        mg_fail(&err, "out of memory");
        goto report;
    }
    mg_seed_state(cfg, &d, state);
    grow_frames g = {state_len, frames};
    const mg_rollout_job job = {d,
                                {mg_fire_threshold(cfg->fire_rate), cfg->alive_threshold,
                                 cfg->pin_seed ? mg_seed_cell(cfg, &d) : -1, NULL},
                                seed, 0, 0, steps, snap.params, state, keep_frame, &g};
    const int rc = be->ops->rollout(be, &job, &err);
    free(state);
    if (rc != 0 || write_grow_file(out_path, run_path, snap.iteration, frames, steps, &d, &err) != 0 ||
        write_strip(strip_path, frames, pick, n_pick, &d, scale, &err) != 0)
        goto report;
    fprintf(stderr, "morphogen: grew %d steps from %s (iteration %lld): frames %s, strip %s\n", steps, run_path,
            (long long)snap.iteration, out_path, strip_path);
    status = MG_EXIT_OK;
    goto done;
report:
    fprintf(stderr, "morphogen: %s\n", err.msg);
done:
    mg_backend_destroy(be);
    free(frames);
    free(out_owned);
    free(strip_owned);
    mg_run_snapshot_free(&snap);
    return status;
}
