/* Hand-built run-file snapshots and their comparisons, shared by the serial
 * (tests/test_runfile.c) and the multi-rank (tests/mpi/test_runfile_mpi.c)
 * run-file tests. Include after cmocka.h. */
#ifndef MORPHOGEN_TEST_RUNFILE_FIXTURE_H
#define MORPHOGEN_TEST_RUNFILE_FIXTURE_H

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "morphogen/config.h"
#include "morphogen/runfile.h"

#define FX_TARGETS 2
#define FX_HEIGHT 6
#define FX_WIDTH 5
#define FX_CHANNELS 16
#define FX_CELLS ((size_t)FX_HEIGHT * FX_WIDTH * FX_CHANNELS) /* floats per pool sample */

/* mkdir -p for a test's scratch folder; dir is modified and restored. */
static inline int fx_mkdir_p(char *dir)
{
    for (char *p = dir + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        const char saved = *p;
        *p = '\0';
        const int rc = mkdir(dir, 0777);
        *p = saved;
        if (rc < 0 && errno != EEXIST)
            return -1;
        if (saved == '\0')
            return 0;
    }
}

static inline int fx_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Everything derives from `stamp` (a snapshot read back can be checked for
 * belonging to one single write) and the pool values also from the sample
 * index (a slab read at the wrong offset cannot pass). Values that are easy
 * to lose on the way are included: -0.0, a subnormal, NaN, a seed above
 * INT64_MAX, a learning rate with no exact decimal form, UTF-8 text. */
static inline void fx_make_snapshot(mg_run_snapshot *s, int64_t pool_size, int64_t n_metrics, int64_t stamp)
{
    memset(s, 0, sizeof *s);
    mg_config_defaults(&s->cfg);
    s->cfg.channels = FX_CHANNELS;
    s->cfg.hidden = 7;
    s->cfg.lr = 1.0 / 3.0;
    s->cfg.seed = UINT64_C(18446744073709551557);
    s->cfg.pin_seed = 1;
    s->config_text = mg_config_to_ini(&s->cfg);
    s->config_source = strdup("[train]\nlr = 0.333 ; \xc3\xa9t\xc3\xa9 \xf0\x9f\xa6\x8e\n"
                              "; --set train.hidden=7\n");

    s->n_targets = FX_TARGETS;
    s->height = FX_HEIGHT;
    s->width = FX_WIDTH;
    const size_t nt = (size_t)FX_TARGETS * FX_HEIGHT * FX_WIDTH * 4;
    s->targets = malloc(nt * sizeof(float));
    for (size_t i = 0; i < nt; i++)
        s->targets[i] = (float)stamp + (float)i / 7.0f;

    /* w1 [3C][H], b1 [H], w2 [H][C] with a small H */
    const int64_t k = 3 * FX_CHANNELS, h = 7;
    s->n_tensors = 3;
    s->tensors[0] = (mg_tensor_desc){ "w1", 2, { k, h }, 0, k * h };
    s->tensors[1] = (mg_tensor_desc){ "b1", 1, { h, 0 }, k * h, h };
    s->tensors[2] = (mg_tensor_desc){ "w2", 2, { h, FX_CHANNELS }, k * h + h, h * FX_CHANNELS };
    s->n_params = k * h + h + h * FX_CHANNELS;
    s->params = malloc((size_t)s->n_params * sizeof(float));
    s->adam_m = malloc((size_t)s->n_params * sizeof(float));
    s->adam_v = malloc((size_t)s->n_params * sizeof(float));
    for (int64_t i = 0; i < s->n_params; i++) {
        s->params[i] = (float)stamp - (float)i * 0.001f;
        s->adam_m[i] = (float)stamp * 1e-3f + (float)i;
        s->adam_v[i] = (float)stamp * 1e-38f; /* subnormal floats must survive too */
    }
    s->params[0] = -0.0f;
    s->adam_step = stamp * 2;

    s->iteration = stamp;
    s->rng_seed = UINT64_C(0xfedcba9876543210) + (uint64_t)stamp;
    s->wall_time = (double)stamp + 0.125;

    s->pool_size = pool_size;
    s->channels = FX_CHANNELS;
    s->pool_states = malloc((size_t)pool_size * FX_CELLS * sizeof(float));
    s->pool_loss = malloc((size_t)pool_size * sizeof(float));
    s->pool_target = malloc((size_t)pool_size * sizeof(int32_t));
    for (int64_t p = 0; p < pool_size; p++) {
        for (size_t c = 0; c < FX_CELLS; c++)
            s->pool_states[(size_t)p * FX_CELLS + c] = (float)(p * 1000) + (float)c * 0.25f + (float)stamp;
        s->pool_loss[p] = p == 1 ? NAN : (float)stamp / (float)(p + 2);
        s->pool_target[p] = (int32_t)(p % FX_TARGETS);
    }

    s->n_metrics = n_metrics;
    s->metrics = calloc(n_metrics > 0 ? (size_t)n_metrics : 1, sizeof *s->metrics);
    for (int64_t r = 0; r < n_metrics; r++) {
        mg_metrics_row *m = &s->metrics[r];
        m->iteration = r + 1;
        m->loss = (double)stamp / (double)(r + 3);
        m->lr = 2e-3 * (double)(r + 1);
        for (int t = 0; t < s->n_tensors; t++)
            m->grad_norm[t] = (double)(r * 10 + t) + 0.1;
        m->wall_time = (double)r * 0.01;
        m->cell_steps_per_s = 1e9 + (double)r;
    }
}

/* Everything but the pool arrays, bit for bit. */
static inline void fx_assert_equal_but_pool(const mg_run_snapshot *a, const mg_run_snapshot *b)
{
    assert_string_equal(a->config_text, b->config_text);
    assert_string_equal(a->config_source, b->config_source);
    char *ini_a = mg_config_to_ini(&a->cfg), *ini_b = mg_config_to_ini(&b->cfg);
    assert_string_equal(ini_a, ini_b);
    free(ini_a);
    free(ini_b);
    assert_int_equal(a->cfg.hidden, b->cfg.hidden);
    assert_memory_equal(&a->cfg.lr, &b->cfg.lr, sizeof(double));

    assert_int_equal(a->n_targets, b->n_targets);
    assert_int_equal(a->height, b->height);
    assert_int_equal(a->width, b->width);
    assert_memory_equal(a->targets, b->targets, (size_t)a->n_targets * a->height * a->width * 4 * sizeof(float));

    assert_int_equal(a->n_tensors, b->n_tensors);
    for (int i = 0; i < a->n_tensors; i++) {
        assert_string_equal(a->tensors[i].name, b->tensors[i].name);
        assert_int_equal(a->tensors[i].rank, b->tensors[i].rank);
        for (int j = 0; j < a->tensors[i].rank; j++)
            assert_int_equal(a->tensors[i].dims[j], b->tensors[i].dims[j]);
        assert_int_equal(a->tensors[i].offset, b->tensors[i].offset);
        assert_int_equal(a->tensors[i].size, b->tensors[i].size);
    }
    assert_int_equal(a->n_params, b->n_params);
    const size_t np = (size_t)a->n_params * sizeof(float);
    assert_memory_equal(a->params, b->params, np);
    assert_memory_equal(a->adam_m, b->adam_m, np);
    assert_memory_equal(a->adam_v, b->adam_v, np);
    assert_int_equal(a->adam_step, b->adam_step);

    assert_int_equal(a->iteration, b->iteration);
    assert_true(a->rng_seed == b->rng_seed);
    assert_memory_equal(&a->wall_time, &b->wall_time, sizeof(double));
    assert_int_equal(a->pool_size, b->pool_size);
    assert_int_equal(a->channels, b->channels);

    assert_int_equal(a->n_metrics, b->n_metrics);
    for (int64_t r = 0; r < a->n_metrics; r++) {
        const mg_metrics_row *x = &a->metrics[r], *y = &b->metrics[r];
        assert_int_equal(x->iteration, y->iteration);
        assert_memory_equal(&x->loss, &y->loss, sizeof(double));
        assert_memory_equal(&x->lr, &y->lr, sizeof(double));
        assert_memory_equal(x->grad_norm, y->grad_norm, (size_t)a->n_tensors * sizeof(double));
        assert_memory_equal(&x->wall_time, &y->wall_time, sizeof(double));
        assert_memory_equal(&x->cell_steps_per_s, &y->cell_steps_per_s, sizeof(double));
    }
}

/* got's pool arrays hold samples [first, first + count) of full's pool. */
static inline void fx_assert_pool_slab(const mg_run_snapshot *full, int64_t first, int64_t count,
                                       const mg_run_snapshot *got)
{
    if (count == 0)
        return;
    assert_memory_equal(got->pool_states, full->pool_states + (size_t)first * FX_CELLS,
                        (size_t)count * FX_CELLS * sizeof(float));
    assert_memory_equal(got->pool_loss, full->pool_loss + first, (size_t)count * sizeof(float));
    assert_memory_equal(got->pool_target, full->pool_target + first, (size_t)count * sizeof(int32_t));
}

static inline void fx_assert_snapshots_equal(const mg_run_snapshot *a, const mg_run_snapshot *b)
{
    fx_assert_equal_but_pool(a, b);
    fx_assert_pool_slab(a, 0, a->pool_size, b);
}

#endif
