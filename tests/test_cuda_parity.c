/* The cuda backend against the CPU reference backend (float32), and its
 * determinism. Built only with CUDA (MORPHOGEN_CUDA); on a machine without a
 * usable CUDA device every test prints why and is skipped.
 *
 * Inputs: random weights scaled so activations stay O(1), random live
 * states (each cell alive with probability 0.6, alpha in [0.3, 1], other
 * channels in [-1, 1]; never all zeros), random targets; grids that are not
 * multiples of the kernels' tile of 32 cells (5x7, 9x11, 33x31, 40x24, 72x72, 6x6, 8x9,
 * 96x91, 48x46 with H = 416; and states holding NaN alphas, test_nan_states),
 * channel and hidden counts that are not multiples of 4 (C = 5, H = 1, 5, 7,
 * 30), fire rate 0.5 and 1, alive masking (only the left half of each grid
 * starts alive), a pinned cell in the dead half, both freeze kinds (frozen
 * cells with sub-threshold alpha in the dead half), BPTT checkpointing
 * (checkpoint_steps 0, 2, 3, 4, and 100 > steps), 0 steps, rollouts shorter
 * than the backend's maximum, and a smaller batch after a larger one;
 * and a model needing more than 48 KiB of shared memory per block after a
 * second, smaller one is made (test_two_models_at_once). The
 * tensor-core cases ("tf32") repeat five of these shapes (C = 20 instead of
 * 16 in the 33x31 one, so that 3C = 60 is no multiple of the 16-wide tiles;
 * C = 4, 5, 8 and H = 1, 7, 16, 30, 128 pad every dimension); C = 24 splits
 * a product's k range unevenly, and C = 32 and 36 at H = 128 take the two
 * other ways of summing weight gradients (mg_cuda_tf32_grad_frags).
 *
 * Tolerance (fp32): the GPU sums the same terms as the CPU in a different
 * order (per-block partial weight-gradient sums, another register blocking).
 * Each implementation is within ~1e-6 of the double-precision reference
 * relative to a tensor's largest magnitude (tests/test_nca_precision.c holds
 * the CPU float build to 1e-4 of double for 12 steps); so the two float
 * implementations must agree to 1e-4 of each tensor's largest magnitude
 * (final states, every parameter gradient tensor, dL/ds0 per sample), a 50x
 * margin over accumulated rounding, while any real error (a missing term, a
 * wrong index or mask) is off by O(1). Losses are sums in double of
 * per-element squares of those states: relative 1e-5. An alive mask flipped by
 * rounding would show as an O(1) difference; with alpha away from the threshold
 * at the start and few steps this is improbable, and the test would say so.
 * The forward's multiply-adds are explicit fmaf in the kernels and fused
 * vector FMAs in the CPU's, so on an FMA host (the release build) the
 * emulated states equal the CPU's bit for bit; against a CPU without FMA
 * (the portable build: the device bundle's, and CI's sanitizer build,
 * where the emulated kernels' fmaf still rounds once, through libm) they differ by
 * rounding, about 1e-7 of the scale, as a GPU's will against the bundle.
 *
 * Tolerance (tf32, run.matmul = tf32, the cases named "tf32"): the tensor
 * cores round every multiplicand of the two dense layers to 11 significant
 * bits (unit roundoff u = 2^-11 = 4.9e-4), then multiply exactly and
 * accumulate in fp32, so each product of a dense layer is off by up to about
 * 2u of its terms' magnitude, against ~1e-7 in fp32. The CUDA emulator
 * rounds the operands exactly as the hardware does (its order of
 * accumulation may differ, an fp32-sized effect), and measured, over these
 * cases, the largest differences from the fp32 CPU reference relative to a
 * tensor's largest magnitude: final states and frames 3.2e-4, losses 1.8e-5
 * (relative), gradients 2.5e-2 (w1 of the 5x7 case: a sum over cells and
 * steps that cancels to a small result, so the terms' rounding weighs more
 * against it). The tolerances allow 16x, 55x and 4x that: states 5e-3,
 * losses 1e-3, gradients 1e-1; a wrong index or a missing tile is off by
 * O(1). Because these tolerances are wide, the same cases also run on the
 * emulator with exact arithmetic in its tensor cores (MG_CUEMU_TF32=exact,
 * ctest cuda_emulated_parity_tf32_exact) and must then meet fp32's 1e-4:
 * that checks the tensor-core kernels' indexing, padding and masks alone.
 *
 * Outputs are poisoned with NaN before every run, so an element the GPU never
 * writes fails the comparison. The GPU runs twice and must give bitwise
 * identical results; its fire masks must be bit-identical to mg_fire_mask,
 * and its lists of the cells whose MLP runs equal a host scan (test_compact). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "mg_cuda.h"
#include "morphogen/backend.h"
#include "morphogen/config.h"
#include "morphogen/rng.h"
#include "cuda_fixture.h"

#define RTOL 1e-4
#define LOSS_RTOL 1e-5
#define STATE_RTOL_TF32 5e-3
#define GRAD_RTOL_TF32 1e-1
#define LOSS_RTOL_TF32 1e-3

typedef struct parity_case {
    const char *name;
    mg_nca_dims dims;
    int steps, checkpoint_steps, n;
    double fire_rate;
    int pin, freeze;
    int tf32; /* run.matmul = tf32: tensor cores, compared with the *_TF32 tolerances */
} parity_case;

/* MG_CUEMU_TF32=exact: the CUDA emulator's tensor cores do not round (see
 * tests/cuda_emulator/include/mma.h), so the tf32 cases are held to fp32's
 * tolerance, which checks the tensor-core kernels' indexing, padding and
 * masks apart from TF32's rounding. Meaningless on a GPU. */
static int tf32_exact_emulation(void)
{
    const char *env = getenv("MG_CUEMU_TF32");
    return env && !strcmp(env, "exact");
}

typedef struct frame_log {
    int calls, last_step;
    float *last;
    size_t n;
} frame_log;

static int record_frame(void *ctx, int step, const float *state, mg_error *err)
{
    (void)err;
    frame_log *log = ctx;
    log->calls++;
    log->last_step = step;
    memcpy(log->last, state, sizeof(float) * log->n);
    return 0;
}

typedef struct run_out {
    float *states, *grads, *grad_states;
    double *loss;
} run_out;

/* A batch job of the comparisons here, under their fixed run seed and
 * iteration (the fire masks' keys with the sample indices). */
static mg_batch_job parity_job(const mg_nca_dims *d, mg_step_rules rules, int steps, int n,
                               const uint32_t *sample_index, const int32_t *target_index, const float *targets,
                               const float *params, int64_t n_params)
{
    return (mg_batch_job){.dims = *d,
                          .rules = rules,
                          .seed = 0x1234567890ABCDEFull,
                          .iteration = 5,
                          .steps = steps,
                          .n = n,
                          .sample_index = sample_index,
                          .target_index = target_index,
                          .targets = targets,
                          .params = params,
                          .n_params = n_params};
}

static void run_batch(mg_backend *be, mg_batch_job job, const float *s0, run_out *out, size_t n_state_all,
                      size_t n_grads)
{
    memcpy(out->states, s0, sizeof(float) * n_state_all);
    poison(out->grads, n_grads);
    poison(out->grad_states, n_state_all);
    for (int b = 0; b < job.n; b++)
        out->loss[b] = NAN;
    job.states = out->states;
    job.grads = out->grads;
    job.grad_states = out->grad_states;
    job.loss = out->loss;
    mg_error err = {{0}};
    if (be->ops->batch(be, &job, &err) != 0) {
        fprintf(stderr, "%s backend: %s\n", be->ops->name, err.msg);
        fail();
    }
}

static void run_case(const parity_case *pc)
{
    require_device("test_cuda_parity");
    const mg_nca_dims *d = &pc->dims;
    const int n = pc->n, cells = mg_cells(d), C = d->channels;
    const size_t n_state = (size_t)cells * C, n_all = n_state * n;
    mg_tensor_desc t[3];
    const int64_t P = mg_param_layout(d, t);

    mg_config cfg;
    mg_config_defaults(&cfg);
    cfg.checkpoint_steps = pc->checkpoint_steps;
    cfg.matmul_tf32 = pc->tf32;
    const int rounded = pc->tf32 && !tf32_exact_emulation();
    const double state_rtol = rounded ? STATE_RTOL_TF32 : RTOL, grad_rtol = rounded ? GRAD_RTOL_TF32 : RTOL;
    const double loss_rtol = rounded ? LOSS_RTOL_TF32 : LOSS_RTOL;
    mg_error err = {{0}};
    /* A maximum above the rollout length: the tape is sized for max_steps,
     * the rollouts use fewer. */
    const int max_steps = pc->steps + 3;
    mg_backend *cpu = mg_backend_cpu_create(&cfg, d, max_steps, &err);
    assert_non_null(cpu);
    mg_backend *gpu = mg_backend_cuda_create(&cfg, d, max_steps, NULL, &err);
    if (!gpu) {
        fprintf(stderr, "%s: %s\n", pc->name, err.msg);
        fail();
    }

    float *params = alloc_floats((size_t)P), *s0 = alloc_floats(n_all), *targets = alloc_floats((size_t)cells * 4 * 2);
    double *s0d = malloc(sizeof(double) * n_state);
    assert_non_null(s0d);
    random_params(d, params);
    unsigned char *freeze = malloc((size_t)cells);
    assert_non_null(freeze);
    for (int cell = 0; cell < cells; cell++)
        freeze[cell] = cell % 7 == 3 ? MG_CELL_FROZEN : cell % 11 == 5 ? MG_CELL_FROZEN_RGBA : MG_CELL_FREE;
    /* The pinned cell sits on the right edge, in the dead half (below). */
    const int pin_cell = pc->pin ? (d->height / 2) * d->width + d->width - 1 : -1;
    for (int b = 0; b < n; b++) {
        fixture_state(d, 40u + (uint32_t)b, 0.6, s0d);
        float *sb = s0 + (size_t)b * n_state;
        to_float(s0d, sb, n_state);
        /* Only the left half lives: with live cells everywhere (density 0.6)
         * nearly every 3x3 pool is alive and the masks would never matter.
         * Here cells die and are born along the border, the pinned cell lives
         * only because it is pinned, and fully frozen cells in the dead half
         * hold a state with alpha below the threshold that only the "frozen
         * is never killed" rule keeps. */
        for (int cell = 0; cell < cells; cell++) {
            if (2 * (cell % d->width) < d->width)
                continue;
            float *sc = sb + (size_t)cell * C;
            const int kept = pc->freeze && freeze[cell] == MG_CELL_FROZEN;
            for (int c = 0; c < C; c++)
                sc[c] = kept ? (c == 3 ? 0.05f : (float)fixture_uniform(70u + (uint32_t)b, (uint32_t)(cell * C + c), -1, 1))
                             : 0.0f;
        }
    }
    for (int i = 0; i < cells * 4 * 2; i++)
        targets[i] = (float)fixture_uniform(60, (uint32_t)i, 0, 1);
    uint32_t sample_index[8];
    int32_t target_index[8];
    assert_true(n <= 8);
    for (int b = 0; b < n; b++) {
        sample_index[b] = 3u + 1000u * (uint32_t)b;
        target_index[b] = b % 2;
    }
    const mg_step_rules rules = {mg_fire_threshold(pc->fire_rate), 0.1, pin_cell, pc->freeze ? freeze : NULL};
    const mg_batch_job job = parity_job(d, rules, pc->steps, n, sample_index, target_index, targets, params, P);

    run_out ref, run[2];
    run_out *all[3] = {&ref, &run[0], &run[1]};
    for (int i = 0; i < 3; i++) {
        all[i]->states = alloc_floats(n_all);
        all[i]->grads = alloc_floats((size_t)P * n);
        all[i]->grad_states = alloc_floats(n_all);
        all[i]->loss = malloc(sizeof(double) * n);
        assert_non_null(all[i]->loss);
    }
    run_batch(cpu, job, s0, &ref, n_all, (size_t)P * n);
    run_batch(gpu, job, s0, &run[0], n_all, (size_t)P * n);
    run_batch(gpu, job, s0, &run[1], n_all, (size_t)P * n);

    for (int b = 0; b < n; b++) {
        const size_t so = (size_t)b * n_state, go = (size_t)b * P;
        expect_close(pc->name, "final state", b, run[0].states + so, ref.states + so, n_state, state_rtol);
        for (int k = 0; k < 3; k++)
            expect_close(pc->name, t[k].name, b, run[0].grads + go + t[k].offset, ref.grads + go + t[k].offset,
                         (size_t)t[k].size, grad_rtol);
        expect_close(pc->name, "dL/ds0", b, run[0].grad_states + so, ref.grad_states + so, n_state, grad_rtol);
        expect_close_scalar(pc->name, "loss", run[0].loss[b], ref.loss[b], loss_rtol);
    }
    /* Deterministic: the second run gives the same bits. */
    assert_memory_equal(run[0].states, run[1].states, sizeof(float) * n_all);
    assert_memory_equal(run[0].grads, run[1].grads, sizeof(float) * (size_t)P * n);
    assert_memory_equal(run[0].grad_states, run[1].grad_states, sizeof(float) * n_all);
    assert_memory_equal(run[0].loss, run[1].loss, sizeof(double) * n);

    /* Forward only (no tape): the same final states and losses, bit for bit. */
    mg_batch_job fwd = job;
    fwd.states = run[1].states;
    fwd.loss = run[1].loss;
    memcpy(run[1].states, s0, sizeof(float) * n_all);
    for (int b = 0; b < n; b++)
        run[1].loss[b] = NAN;
    assert_int_equal(gpu->ops->batch(gpu, &fwd, &err), 0);
    assert_memory_equal(run[0].states, run[1].states, sizeof(float) * n_all);
    assert_memory_equal(run[0].loss, run[1].loss, sizeof(double) * n);

    /* A smaller batch on buffers sized for the larger one: samples are
     * independent, so the first n - 1 give the same bits as before. */
    if (n > 1) {
        mg_batch_job small = job;
        small.n = n - 1;
        run_batch(gpu, small, s0, &run[1], n_state * (n - 1), (size_t)P * (n - 1));
        assert_memory_equal(run[0].states, run[1].states, sizeof(float) * n_state * (n - 1));
        assert_memory_equal(run[0].grads, run[1].grads, sizeof(float) * (size_t)P * (n - 1));
        assert_memory_equal(run[0].grad_states, run[1].grad_states, sizeof(float) * n_state * (n - 1));
        assert_memory_equal(run[0].loss, run[1].loss, sizeof(double) * (n - 1));
    }

    /* The frame-reporting rollout of sample 0 against the CPU's. */
    float *rs[2] = {alloc_floats(n_state), alloc_floats(n_state)};
    float *last[2] = {alloc_floats(n_state), alloc_floats(n_state)};
    mg_backend *bes[2] = {cpu, gpu};
    frame_log logs[2];
    for (int i = 0; i < 2; i++) {
        memcpy(rs[i], s0, sizeof(float) * n_state);
        poison(last[i], n_state);
        logs[i] = (frame_log){0, -1, last[i], n_state};
        const mg_rollout_job rj = {*d, job.rules, job.seed, job.iteration, sample_index[0], pc->steps, params,
                                   rs[i], record_frame, &logs[i]};
        assert_int_equal(bes[i]->ops->rollout(bes[i], &rj, &err), 0);
    }
    assert_int_equal(logs[1].calls, pc->steps + 1);
    assert_int_equal(logs[1].last_step, pc->steps);
    expect_close(pc->name, "rollout final frame", 0, last[1], last[0], n_state, state_rtol);
    expect_close(pc->name, "rollout final state", 0, rs[1], rs[0], n_state, state_rtol);
    assert_memory_equal(rs[1], run[0].states, sizeof(float) * n_state); /* same kernels as the batch */
    assert_true(gpu->ops->peak_tape_bytes(gpu) > 0);

    for (int i = 0; i < 2; i++) {
        free(rs[i]);
        free(last[i]);
    }
    for (int i = 0; i < 3; i++) {
        free(all[i]->states);
        free(all[i]->grads);
        free(all[i]->grad_states);
        free(all[i]->loss);
    }
    free(params), free(s0), free(s0d), free(targets), free(freeze);
    mg_backend_destroy(cpu);
    mg_backend_destroy(gpu);
}

static const parity_case CASES[] = {
    {"5x7 C=8 H=16, pin, freeze", {5, 7, 8, 16}, 6, 0, 3, 0.5, 1, 1, 0},
    {"9x11 C=5 H=7, freeze, checkpoint 3", {9, 11, 5, 7}, 7, 3, 2, 0.5, 0, 1, 0},
    {"33x31 C=16 H=30, pin, freeze, checkpoint 3", {33, 31, 16, 30}, 8, 3, 2, 0.5, 1, 1, 0},
    {"40x24 C=12 H=64, fire 1", {40, 24, 12, 64}, 5, 0, 2, 1.0, 0, 0, 0},
    {"72x72 C=16 H=128 (Distill), pin, checkpoint 4", {72, 72, 16, 128}, 10, 4, 2, 0.5, 1, 0, 0},
    {"6x6 C=4 H=1, pin, freeze, checkpoint 100 > steps", {6, 6, 4, 1}, 5, 100, 2, 0.5, 1, 1, 0},
    {"8x9 C=4 H=5, 0 steps", {8, 9, 4, 5}, 0, 2, 2, 0.5, 0, 1, 0},
    {"tf32 5x7 C=8 H=16, pin, freeze", {5, 7, 8, 16}, 6, 0, 3, 0.5, 1, 1, 1},
    {"tf32 9x11 C=5 H=7, freeze, checkpoint 3", {9, 11, 5, 7}, 7, 3, 2, 0.5, 0, 1, 1},
    {"tf32 33x31 C=20 H=30, pin, freeze, checkpoint 3", {33, 31, 20, 30}, 8, 3, 2, 0.5, 1, 1, 1},
    {"tf32 72x72 C=16 H=128 (Distill), pin, checkpoint 4", {72, 72, 16, 128}, 6, 4, 2, 0.5, 1, 0, 1},
    {"tf32 6x6 C=4 H=1, pin, freeze", {6, 6, 4, 1}, 5, 0, 2, 0.5, 1, 1, 1},
    /* 3C = 72 pads to 80: the hidden layer's k range splits into slices of
     * 24, 24, 24 and 8 among the warps (step_tf32.cu, mg_tc_gemm). */
    {"tf32 10x9 C=24 H=16, uneven k slices, freeze, checkpoint 2", {10, 9, 24, 16}, 5, 2, 2, 0.5, 0, 1, 1},
    /* 8736 cells: the compaction's second chunk (k_compact scans 8192 per pass). */
    {"96x91 C=4 H=8, two compaction chunks, pin, freeze, checkpoint 2", {96, 91, 4, 8}, 3, 2, 2, 0.5, 1, 1, 0},
    /* The large config's model: 64 weight-gradient tiles, 8 kept per warp
     * (mg_cuda_tf32_grad_frags); every cell fires, so more than 32 cell
     * tiles per sample: blocks carry their fragments across cell tiles. */
    {"tf32 48x46 C=32 H=128, 8 kept gradient fragments, fire 1", {48, 46, 32, 128}, 1, 0, 2, 1.0, 0, 0, 1},
    /* 80 weight-gradient tiles: too many to keep, added per cell tile. */
    {"tf32 7x9 C=36 H=128, gradients added per cell tile, freeze", {7, 9, 36, 128}, 3, 0, 2, 0.5, 0, 1, 1},
    /* fp32 with its tiles taking 225 KB of the 227 KB a block may have: no
     * room to keep the block's gradient sums in shared memory
     * (mg_cuda_fma_keeps_partials), so they are added to d_partial per cell
     * tile; every cell fires, so blocks take two cell tiles. */
    {"48x46 C=16 H=416, gradients added per cell tile, fire 1", {48, 46, 16, 416}, 1, 0, 2, 1.0, 0, 0, 0},
};
enum { N_CASES = sizeof CASES / sizeof CASES[0] };

/* States holding NaN alphas: the alive masks repeat the CPU's comparisons
 * in the CPU's order (max pooling in which a NaN is kept or skipped by its
 * position), and a step's k_finish derives the next step's pre-update mask
 * from the cells' masks, not from their alphas alone, so even then the two
 * backends agree on which cells live: NaN in the same elements, the rest
 * within fp32's tolerance. NaNs spread one cell per step through the
 * perception, so the rollout is short, forward only. */
static void test_nan_states(void **state)
{
    (void)state;
    require_device("test_cuda_parity");
    const mg_nca_dims d = {11, 12, 8, 16};
    const int n = 2, steps = 3, cells = mg_cells(&d), C = d.channels;
    const size_t n_state = (size_t)cells * C, n_all = n_state * n;
    mg_tensor_desc t[3];
    const int64_t P = mg_param_layout(&d, t);
    mg_config cfg;
    mg_config_defaults(&cfg);
    mg_error err = {{0}};
    mg_backend *be[2] = {mg_backend_cpu_create(&cfg, &d, steps, &err), mg_backend_cuda_create(&cfg, &d, steps, NULL, &err)};
    if (!be[0] || !be[1]) {
        fprintf(stderr, "test_nan_states: %s\n", err.msg);
        fail();
    }
    float *params = alloc_floats((size_t)P), *s0 = alloc_floats(n_all), *targets = alloc_floats((size_t)cells * 4);
    float *out[3] = {alloc_floats(n_all), alloc_floats(n_all), alloc_floats(n_all)};
    double *s0d = malloc(sizeof(double) * n_state), loss[2];
    assert_non_null(s0d);
    random_params(&d, params);
    for (int i = 0; i < cells * 4; i++)
        targets[i] = 0.5f;
    /* Live cells on the left, dead on the right; NaN alphas inside each, on
     * their border and on the grid's edges. */
    const int nan_cells[] = {5 * 12 + 2, 5 * 12 + 6, 2 * 12 + 9, 0, 10 * 12 + 11, 7 * 12 + 5};
    for (int b = 0; b < n; b++) {
        fixture_state(&d, 90u + (uint32_t)b, 0.6, s0d);
        float *sb = s0 + (size_t)b * n_state;
        to_float(s0d, sb, n_state);
        for (int cell = 0; cell < cells; cell++)
            if (2 * (cell % d.width) >= d.width)
                for (int c = 0; c < C; c++)
                    sb[(size_t)cell * C + c] = 0.0f;
        for (size_t k = 0; k < sizeof nan_cells / sizeof nan_cells[0]; k++)
            sb[(size_t)nan_cells[k] * C + 3] = NAN;
    }
    const uint32_t sample_index[2] = {7, 1007};
    const int32_t target_index[2] = {0, 0};
    /* CPU, GPU, and the CPU from the same states with 0 for each NaN. */
    float *zeroed = alloc_floats(n_all);
    for (size_t i = 0; i < n_all; i++)
        zeroed[i] = isnan(s0[i]) ? 0.0f : s0[i];
    for (int j = 0; j < 3; j++) {
        memcpy(out[j], j < 2 ? s0 : zeroed, sizeof(float) * n_all);
        const mg_step_rules rules = {mg_fire_threshold(0.5), 0.1, -1, NULL};
        mg_batch_job job = parity_job(&d, rules, steps, n, sample_index, target_index, targets, params, P);
        job.states = out[j];
        job.loss = loss;
        mg_backend *on = be[j == 1];
        if (on->ops->batch(on, &job, &err) != 0) {
            fprintf(stderr, "test_nan_states, %s: %s\n", on->ops->name, err.msg);
            fail();
        }
    }
    double scale = 0, worst = 0;
    for (size_t i = 0; i < n_all; i++) {
        if (isnan(out[0][i]) != isnan(out[1][i])) {
            fprintf(stderr, "test_nan_states: element %zu (cell %zu): cpu %.9e, gpu %.9e\n", i, i / C,
                    (double)out[0][i], (double)out[1][i]);
            fail();
        }
        if (!isnan(out[0][i])) {
            scale = fmax(scale, fabs((double)out[0][i]));
            worst = fmax(worst, fabs((double)out[1][i] - (double)out[0][i]));
        }
    }
    if (!(worst <= RTOL * scale)) {
        fprintf(stderr, "test_nan_states: max |gpu - cpu| = %.3e, scale %.3e\n", worst, scale);
        fail();
    }
    /* The NaNs decided something (here: their neighbours die, where with
     * zeros they would live). */
    assert_true(memcmp(out[0], out[2], sizeof(float) * n_all) != 0);
    free(zeroed), free(out[2]);
    for (int j = 0; j < 2; j++) {
        free(out[j]);
        mg_backend_destroy(be[j]);
    }
    free(params), free(s0), free(targets), free(s0d);
}

/* The cases take each way the backward kernels have of summing weight
 * gradients: tf32, 4 or 8 fragments kept per warp, or none
 * (mg_cuda_tf32_grad_frags); fp32, kept in shared memory or not
 * (mg_cuda_fma_keeps_partials, on an H100/H200's, and the emulator's, 227
 * KiB per block). Host-side, so it runs without a GPU too. */
static void test_backward_ways_covered(void **state)
{
    (void)state;
    int tf32_seen[3] = {0, 0, 0}, fp32_seen[2] = {0, 0};
    for (int i = 0; i < N_CASES; i++) {
        const int C = CASES[i].dims.channels, H = CASES[i].dims.hidden;
        if (CASES[i].tf32) {
            const int frags = mg_cuda_tf32_grad_frags(C, H);
            assert_true(frags == 0 || frags == 4 || frags == 8);
            tf32_seen[frags / 4] = 1;
        } else {
            fp32_seen[mg_cuda_fma_keeps_partials(C, H, 227 * 1024) != 0] = 1;
        }
    }
    assert_true(tf32_seen[0] && tf32_seen[1] && tf32_seen[2]);
    assert_true(fp32_seen[0] && fp32_seen[1]);
}

/* One cmocka test per case, the case its state. */
static void test_case(void **state) { run_case(*state); }

/* Device fire masks equal mg_fire_mask bit for bit, over several keys, rates
 * and a cell count that is no multiple of the launch's block. */
static void test_fire_masks(void **state)
{
    (void)state;
    require_device("test_cuda_parity");
    const int n_cells = 72 * 72 + 13;
    unsigned char *host = malloc((size_t)n_cells), *dev_copy = malloc((size_t)n_cells), *d_fire = NULL;
    assert_non_null(host);
    assert_non_null(dev_copy);
    assert_int_equal(cudaMalloc((void **)&d_fire, (size_t)n_cells), cudaSuccess);
    const uint64_t seeds[] = {0, 1, 0xFFFFFFFFull, 0x1234567890ABCDEFull};
    const double rates[] = {0.0, 0.5, 0.123, 1.0};
    for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++)
        for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++)
            for (uint32_t step = 0; step < 200; step += 67) {
                const uint32_t thr = mg_fire_threshold(rates[r]), it = 7u + (uint32_t)s, sample = 1000u * (uint32_t)r;
                mg_fire_mask(seeds[s], it, sample, step, thr, n_cells, host);
                memset(dev_copy, 0xAA, (size_t)n_cells); /* poison */
                assert_int_equal(mg_cuda_fire_mask(seeds[s], it, sample, step, thr, n_cells, d_fire, 0), cudaSuccess);
                assert_int_equal(cudaMemcpy(dev_copy, d_fire, (size_t)n_cells, cudaMemcpyDeviceToHost), cudaSuccess);
                assert_memory_equal(host, dev_copy, (size_t)n_cells);
            }
    cudaFree(d_fire);
    free(host);
    free(dev_copy);
}

/* The list of flagged cells (mg_cuda_compact) equals a host scan, for cell
 * counts around the kernel's chunk of 8192 cells and several chunks with a
 * partial last one; per sample the flags are random, none, all and sparse,
 * other bits of the byte set at random (only `bit` may count). Each span's
 * count of flags is counted here, as the step kernels count theirs. The
 * outputs are poisoned (-1) before each call, so a count or an entry not
 * written, or an entry written at another place, fails. */
static void test_compact(void **state)
{
    (void)state;
    require_device("test_cuda_parity");
    enum { N = 4 };
    const int sizes[] = {1, 37, 8191, 8192, 8193, 3 * 8192 + 77};
    const int most = 3 * 8192 + 77;
    unsigned char *flags = malloc((size_t)N * most), *d_flags = NULL;
    int *active = malloc(sizeof(int) * N * most), *want = malloc(sizeof(int) * most), count[N];
    const int most_spans = mg_cuda_spans(most);
    int *spans = malloc(sizeof(int) * N * most_spans), *d_spans = NULL, *d_active = NULL, *d_count = NULL;
    assert_non_null(flags);
    assert_non_null(active);
    assert_non_null(want);
    assert_non_null(spans);
    assert_int_equal(cudaMalloc((void **)&d_flags, (size_t)N * most), cudaSuccess);
    assert_int_equal(cudaMalloc((void **)&d_spans, sizeof(int) * N * most_spans), cudaSuccess);
    assert_int_equal(cudaMalloc((void **)&d_active, sizeof(int) * N * most), cudaSuccess);
    assert_int_equal(cudaMalloc((void **)&d_count, sizeof(int) * N), cudaSuccess);
    for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
        const int cells = sizes[z];
        for (int b = 0; b < N; b++)
            for (int c = 0; c < cells; c++) {
                const uint32_t key = (uint32_t)(b * most + c);
                const unsigned other = (unsigned)(fixture_uniform(71u + (uint32_t)z, key, 0, 1) * 256.0) & ~3u;
                const double u = fixture_uniform(72u + (uint32_t)z, key, 0, 1);
                const int set1 = b == 0 ? u < 0.5 : b == 2 ? 1 : b == 3 ? u < 0.01 : 0;
                const int set2 = b == 0 ? fixture_uniform(73u + (uint32_t)z, key, 0, 1) < 0.3 : b == 2;
                flags[(size_t)b * cells + c] = (unsigned char)(other | (set1 ? 1u : 0u) | (set2 ? 2u : 0u));
            }
        assert_int_equal(cudaMemcpy(d_flags, flags, (size_t)N * cells, cudaMemcpyHostToDevice), cudaSuccess);
        for (unsigned bit = 1; bit <= 2; bit++) {
            const int n_spans = mg_cuda_spans(cells);
            memset(spans, 0, sizeof(int) * N * n_spans);
            for (int b = 0; b < N; b++)
                for (int c = 0; c < cells; c++)
                    spans[b * n_spans + c / MG_CUDA_SPAN_CELLS] += (flags[(size_t)b * cells + c] & bit) != 0;
            assert_int_equal(cudaMemcpy(d_spans, spans, sizeof(int) * N * n_spans, cudaMemcpyHostToDevice),
                             cudaSuccess);
            memset(active, 0xFF, sizeof(int) * N * most);
            memset(count, 0xFF, sizeof count);
            assert_int_equal(cudaMemcpy(d_active, active, sizeof(int) * N * most, cudaMemcpyHostToDevice), cudaSuccess);
            assert_int_equal(cudaMemcpy(d_count, count, sizeof count, cudaMemcpyHostToDevice), cudaSuccess);
            assert_int_equal(mg_cuda_compact(N, cells, d_flags, bit, d_spans, d_active, d_count, 0), cudaSuccess);
            assert_int_equal(cudaDeviceSynchronize(), cudaSuccess);
            assert_int_equal(cudaMemcpy(count, d_count, sizeof count, cudaMemcpyDeviceToHost), cudaSuccess);
            assert_int_equal(cudaMemcpy(active, d_active, sizeof(int) * N * cells, cudaMemcpyDeviceToHost),
                             cudaSuccess);
            for (int b = 0; b < N; b++) {
                int n = 0;
                for (int c = 0; c < cells; c++)
                    if (flags[(size_t)b * cells + c] & bit)
                        want[n++] = c;
                assert_int_equal(count[b], n);
                assert_memory_equal(active + (size_t)b * cells, want, sizeof(int) * (size_t)n);
            }
        }
    }
    cudaFree(d_flags), cudaFree(d_spans), cudaFree(d_active), cudaFree(d_count);
    free(flags), free(spans), free(active), free(want);
}

/* A model whose shared-memory tiles exceed the GPU is refused with one line. */
static void test_too_large_model_refused(void **state)
{
    (void)state;
    require_device("test_cuda_parity");
    mg_config cfg;
    mg_config_defaults(&cfg);
    const mg_nca_dims d = {8, 8, 128, 1024};
    mg_error err = {{0}};
    mg_backend *be = mg_backend_cuda_create(&cfg, &d, 4, NULL, &err);
    assert_null(be);
    assert_non_null(strstr(err.msg, "shared memory"));
    assert_null(strchr(err.msg, '\n'));
    /* On tensor cores the tiles are padded wider: C = 16, H = 416 fits in
     * fp32 only, and the message says so. */
    cfg.matmul_tf32 = 1;
    const mg_nca_dims padded = {8, 8, 16, 416};
    assert_null(mg_backend_cuda_create(&cfg, &padded, 4, NULL, &err));
    assert_non_null(strstr(err.msg, "with run.matmul = tf32"));
    assert_non_null(strstr(err.msg, "use run.matmul = fp32"));
    assert_null(strchr(err.msg, '\n'));
    cfg.matmul_tf32 = 0;
    mg_backend *fits = mg_backend_cuda_create(&cfg, &padded, 4, NULL, &err);
    assert_non_null(fits);
    mg_backend_destroy(fits);
}

/* Two backends alive at once, the second for a smaller model (the limit on
 * the MLP kernels' shared memory is theirs, on a device, for the whole
 * process): the
 * first, whose blocks need more than the 48 KiB default, still runs, to the
 * same bits as before the second was made. */
static void test_two_models_at_once(void **state)
{
    (void)state;
    require_device("test_cuda_parity");
    mg_config cfg;
    mg_config_defaults(&cfg);
    const mg_nca_dims big = {6, 7, 32, 128}, small = {5, 5, 8, 16};
    assert_true(mg_cuda_mlp_smem_bytes(big.channels, big.hidden, 0) > 48 * 1024);
    mg_tensor_desc t[3];
    const int64_t P = mg_param_layout(&big, t);
    const int steps = 2, cells = mg_cells(&big);
    const size_t n_state = (size_t)cells * big.channels;
    float *params = alloc_floats((size_t)P), *s0 = alloc_floats(n_state), *targets = alloc_floats((size_t)cells * 4);
    double *s0d = malloc(sizeof(double) * n_state);
    assert_non_null(s0d);
    random_params(&big, params);
    fixture_state(&big, 70u, 0.6, s0d);
    to_float(s0d, s0, n_state);
    for (int i = 0; i < cells * 4; i++)
        targets[i] = 0.5f;
    const uint32_t sample_index[1] = {3};
    const int32_t target_index[1] = {0};
    const mg_step_rules rules = {mg_fire_threshold(0.5), 0.1, -1, NULL};
    const mg_batch_job job = parity_job(&big, rules, steps, 1, sample_index, target_index, targets, params, P);
    run_out out[2];
    for (int j = 0; j < 2; j++) {
        out[j] = (run_out){alloc_floats(n_state), alloc_floats((size_t)P), alloc_floats(n_state),
                           malloc(sizeof(double))};
        assert_non_null(out[j].loss);
    }
    mg_error err = {{0}};
    mg_backend *first = mg_backend_cuda_create(&cfg, &big, steps, NULL, &err);
    if (!first) {
        fprintf(stderr, "test_two_models_at_once: %s\n", err.msg);
        fail();
    }
    run_batch(first, job, s0, &out[0], n_state, (size_t)P);
    mg_backend *second = mg_backend_cuda_create(&cfg, &small, steps, NULL, &err);
    if (!second) {
        fprintf(stderr, "test_two_models_at_once: %s\n", err.msg);
        fail();
    }
    run_batch(first, job, s0, &out[1], n_state, (size_t)P);
    assert_memory_equal(out[0].states, out[1].states, sizeof(float) * n_state);
    assert_memory_equal(out[0].grads, out[1].grads, sizeof(float) * (size_t)P);
    assert_memory_equal(out[0].grad_states, out[1].grad_states, sizeof(float) * n_state);
    mg_backend_destroy(second);
    mg_backend_destroy(first);
    for (int j = 0; j < 2; j++)
        free(out[j].states), free(out[j].grads), free(out[j].grad_states), free(out[j].loss);
    free(params), free(s0), free(targets), free(s0d);
}

/* MG_PARITY_CASES="0,2,5" runs only those cases (indices into CASES) after
 * the fire-mask test: the device check runs small cases under
 * compute-sanitizer, whose race and memory checkers slow kernels by orders of
 * magnitude. "fp32" or "tf32" selects every case of that kind (the
 * sanitizer build's emulated runs split the cases so). Anything else in the
 * variable is refused, so a typo cannot quietly select nothing. With
 * MG_PARITY_LIST set, the selected tests' names are printed, none run. */
static int select_cases(struct CMUnitTest *tests, int capacity, const struct CMUnitTest *all_cases, int n_cases)
{
    const char *sel = getenv("MG_PARITY_CASES");
    if (!sel)
        return -1;
    int n = 0;
    if (!strcmp(sel, "fp32") || !strcmp(sel, "tf32")) {
        for (int i = 0; i < n_cases; i++)
            if (((const parity_case *)all_cases[i].initial_state)->tf32 == (sel[0] == 't'))
                tests[n++] = all_cases[i];
        return n;
    }
    for (const char *c = sel; *c;) {
        char *end = NULL;
        const long i = strtol(c, &end, 10);
        if (end == c || i < 0 || i >= n_cases || (*end != ',' && *end != '\0') || (*end == ',' && end[1] == '\0') ||
            n == capacity) {
            fprintf(stderr,
                    "test_cuda_parity: MG_PARITY_CASES='%s': want fp32, tf32, or at most %d comma-separated case "
                    "indices in 0..%d\n",
                    sel, capacity, n_cases - 1);
            exit(2);
        }
        tests[n++] = all_cases[i];
        c = *end ? end + 1 : end;
    }
    return n;
}

int main(void)
{
    /* The tests are named test_case_N after their index in CASES, the
     * index MG_PARITY_CASES selects by. */
    static char names[N_CASES][24];
    struct CMUnitTest tests[N_CASES + 6];
    tests[0] = (struct CMUnitTest)cmocka_unit_test(test_fire_masks);
    struct CMUnitTest *cases = tests + 1;
    for (int i = 0; i < N_CASES; i++) {
        snprintf(names[i], sizeof names[i], "test_case_%d", i);
        cases[i] = (struct CMUnitTest){names[i], test_case, NULL, NULL, (void *)&CASES[i]};
    }
    struct CMUnitTest selected[1 + N_CASES];
    selected[0] = tests[0];
    const int n_selected = select_cases(selected + 1, N_CASES, cases, N_CASES);
    tests[N_CASES + 1] = (struct CMUnitTest)cmocka_unit_test(test_too_large_model_refused);
    tests[N_CASES + 2] = (struct CMUnitTest)cmocka_unit_test(test_backward_ways_covered);
    tests[N_CASES + 3] = (struct CMUnitTest)cmocka_unit_test(test_nan_states);
    tests[N_CASES + 4] = (struct CMUnitTest)cmocka_unit_test(test_compact);
    tests[N_CASES + 5] = (struct CMUnitTest)cmocka_unit_test(test_two_models_at_once);
    const struct CMUnitTest *run = n_selected >= 0 ? selected : tests;
    const size_t n_run = n_selected >= 0 ? (size_t)n_selected + 1 : (size_t)N_CASES + 6;
    if (getenv("MG_PARITY_LIST")) { /* the names, nothing run */
        for (size_t i = 0; i < n_run; i++)
            printf("%s\n", run[i].name);
        return 0;
    }
    return _cmocka_run_group_tests("test_cuda_parity", run, n_run, NULL, NULL);
}
