/* The float build that trains against the double build that the
 * finite-difference checks validate, and exactness properties of the float
 * rollout: checkpointed backprop gives the same bits as storing every state,
 * and the CPU backend's results do not depend on the number of threads. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "morphogen/backend.h"
#include "morphogen/config.h"
#include "nca_fixture.h"

/* C = 16, H = 32: multiples of the float and double vector widths, so both
 * builds run their register-blocked kernels. */
static const mg_nca_dims DIMS = {19, 13, 16, 32};
enum { STEPS = 12 };

typedef struct outputs {
    double loss;
    double *g_params, *g_s0, *s_final;
} outputs;

/* Gradient of the loss after STEPS steps, in float and in double. */
static void run_float(const mg_step_rules *r, const double *params_d, const double *s0_d, const float *target,
                      int checkpoint_steps, float *g_params, float *g_s0, float *s_final)
{
    mg_tensor_desc t[3];
    const int64_t np = mg_param_layout(&DIMS, t);
    const size_t n = (size_t)mg_cells(&DIMS) * DIMS.channels;
    float *params = malloc(sizeof(float) * np), *s0 = malloc(sizeof(float) * n), *g_final = malloc(sizeof(float) * n);
    to_float(params_d, params, (size_t)np);
    to_float(s0_d, s0, n);
    mg_tape *tape = mg_tape_create_f32(&DIMS, STEPS, checkpoint_steps);
    const mg_rollout_key key = {9, 4, 2};
    assert_int_equal(mg_rollout_forward_f32(tape, r, &key, params, STEPS, s0, s_final), 0);
    mg_loss_f32(&DIMS, s_final, target, g_final, 1.0);
    memset(g_params, 0, sizeof(float) * np);
    mg_rollout_backward_f32(tape, r, &key, params, g_final, g_s0, g_params);
    mg_tape_destroy_f32(tape);
    free(params), free(s0), free(g_final);
}

static void assert_close_to_double(const char *what, const float *f, const double *d, size_t n, double rtol)
{
    double scale = 0, worst = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(d[i]));
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)f[i] - d[i]));
    if (!(worst <= rtol * scale)) {
        fprintf(stderr, "%s: float vs double max error %.3e, scale %.3e\n", what, worst, scale);
        fail();
    }
}

static void test_float_matches_double(void **state)
{
    (void)state;
    mg_tensor_desc t[3];
    const int64_t np = mg_param_layout(&DIMS, t);
    const size_t n = (size_t)mg_cells(&DIMS) * DIMS.channels;
    double *params = malloc(sizeof(double) * np), *s0 = malloc(sizeof(double) * n);
    double *gd = calloc((size_t)np, sizeof(double)), *gsd = malloc(sizeof(double) * n);
    double *sfd = malloc(sizeof(double) * n), *gfd = malloc(sizeof(double) * n);
    float *gf = malloc(sizeof(float) * np), *gsf = malloc(sizeof(float) * n), *sff = malloc(sizeof(float) * n);
    float target[19 * 13 * 4];
    fixture_params(&DIMS, 30, params);
    fixture_state(&DIMS, 31, 0.1, s0);
    for (int i = 0; i < mg_cells(&DIMS) * 4; i++)
        target[i] = (float)fixture_uniform(32, (uint32_t)i, 0, 1);
    const mg_step_rules r = {mg_fire_threshold(0.5), 0.1, -1, NULL};

    mg_tape *tape = mg_tape_create_f64(&DIMS, STEPS, 0);
    const mg_rollout_key key = {9, 4, 2};
    assert_int_equal(mg_rollout_forward_f64(tape, &r, &key, params, STEPS, s0, sfd), 0);
    mg_loss_f64(&DIMS, sfd, target, gfd, 1.0);
    mg_rollout_backward_f64(tape, &r, &key, params, gfd, gsd, gd);
    mg_tape_destroy_f64(tape);
    run_float(&r, params, s0, target, 0, gf, gsf, sff);

    /* fp32 carries ~7 digits; through 12 steps of a contracting MLP the
     * accumulated rounding stays around 1e-6 relative, so 1e-4 of each
     * tensor's scale separates rounding from any real discrepancy (a wrong
     * term is O(1) relative). The masks must agree exactly, which the state
     * comparison also checks. */
    assert_close_to_double("final state", sff, sfd, n, 1e-4);
    for (int k = 0; k < 3; k++)
        assert_close_to_double(t[k].name, gf + t[k].offset, gd + t[k].offset, (size_t)t[k].size, 1e-4);
    assert_close_to_double("initial state gradient", gsf, gsd, n, 1e-4);
    free(params), free(s0), free(gd), free(gsd), free(sfd), free(gfd), free(gf), free(gsf), free(sff);
}

static void test_checkpointed_backprop_is_bitwise_identical(void **state)
{
    (void)state;
    mg_tensor_desc t[3];
    const int64_t np = mg_param_layout(&DIMS, t);
    const size_t n = (size_t)mg_cells(&DIMS) * DIMS.channels;
    double *params = malloc(sizeof(double) * np), *s0 = malloc(sizeof(double) * n);
    float target[19 * 13 * 4];
    fixture_params(&DIMS, 40, params);
    fixture_state(&DIMS, 41, 0.1, s0);
    for (int i = 0; i < mg_cells(&DIMS) * 4; i++)
        target[i] = (float)fixture_uniform(42, (uint32_t)i, 0, 1);
    const mg_step_rules r = {mg_fire_threshold(0.5), 0.1, -1, NULL};
    float *ga = malloc(sizeof(float) * np), *gb = malloc(sizeof(float) * np);
    float *sa = malloc(sizeof(float) * n), *sb = malloc(sizeof(float) * n);
    float *fa = malloc(sizeof(float) * n), *fb = malloc(sizeof(float) * n);
    run_float(&r, params, s0, target, 0, ga, sa, fa);
    const int every[] = {2, 5, 12, 40};
    for (int i = 0; i < 4; i++) {
        run_float(&r, params, s0, target, every[i], gb, sb, fb);
        assert_memory_equal(fa, fb, sizeof(float) * n);
        assert_memory_equal(ga, gb, sizeof(float) * np);
        assert_memory_equal(sa, sb, sizeof(float) * n);
    }
    free(params), free(s0), free(ga), free(gb), free(sa), free(sb), free(fa), free(fb);
}

/* The whole batch through the CPU backend with 1 and with 3 threads. */
static void run_backend(int threads, float *states, float *grads, double *loss)
{
    mg_config cfg;
    mg_config_defaults(&cfg);
    cfg.threads = threads;
    mg_error err;
    mg_tensor_desc t[3];
    const int64_t np = mg_param_layout(&DIMS, t);
    const size_t n = (size_t)mg_cells(&DIMS) * DIMS.channels;
    double *pd = malloc(sizeof(double) * np), *sd = malloc(sizeof(double) * n);
    float *params = malloc(sizeof(float) * np), target[19 * 13 * 4];
    fixture_params(&DIMS, 50, pd);
    to_float(pd, params, (size_t)np);
    for (int i = 0; i < mg_cells(&DIMS) * 4; i++)
        target[i] = (float)fixture_uniform(51, (uint32_t)i, 0, 1);
    enum { B = 5 };
    uint32_t sample[B];
    int32_t tgt[B] = {0};
    for (int b = 0; b < B; b++) {
        sample[b] = 100u + (uint32_t)b * 7u;
        fixture_state(&DIMS, 60u + (uint32_t)b, 0.1, sd);
        to_float(sd, states + n * b, n);
    }
    mg_backend *be = mg_backend_create(&cfg, &DIMS, STEPS, NULL, &err);
    assert_non_null(be);
    const mg_batch_job job = {.dims = DIMS,
                              .rules = {mg_fire_threshold(0.5), 0.1, -1, NULL},
                              .seed = 3,
                              .iteration = 17,
                              .steps = STEPS,
                              .n = B,
                              .sample_index = sample,
                              .target_index = tgt,
                              .targets = target,
                              .params = params,
                              .n_params = np,
                              .states = states,
                              .loss = loss,
                              .grads = grads,
                              .grad_states = NULL};
    assert_int_equal(be->ops->batch(be, &job, &err), 0);
    mg_backend_destroy(be);
    free(pd), free(sd), free(params);
}

static void test_backend_thread_count_invariance(void **state)
{
    (void)state;
    mg_tensor_desc t[3];
    const int64_t np = mg_param_layout(&DIMS, t);
    const size_t n = (size_t)mg_cells(&DIMS) * DIMS.channels;
    float *s1 = malloc(sizeof(float) * n * 5), *s3 = malloc(sizeof(float) * n * 5);
    float *g1 = malloc(sizeof(float) * np * 5), *g3 = malloc(sizeof(float) * np * 5);
    double l1[5], l3[5];
    run_backend(1, s1, g1, l1);
    run_backend(3, s3, g3, l3);
    assert_memory_equal(s1, s3, sizeof(float) * n * 5);
    assert_memory_equal(g1, g3, sizeof(float) * np * 5);
    assert_memory_equal(l1, l3, sizeof l1);
    free(s1), free(s3), free(g1), free(g3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_float_matches_double),
        cmocka_unit_test(test_checkpointed_backprop_is_bitwise_identical),
        cmocka_unit_test(test_backend_thread_count_invariance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
