/* The pieces of a training iteration: batch selection, loss ranking, seed
 * and damage, learning-rate schedule, gradient tree sum, normalisation and
 * Adam, checked against values computed by hand. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "morphogen/optimizer.h"
#include "morphogen/pool.h"

static void test_pool_select_stratified_and_keyed(void **state)
{
    (void)state;
    int32_t a[8], b[8], hits[50] = {0};
    for (int64_t it = 1; it <= 400; it++) {
        mg_pool_select(5, it, 50, 8, a);
        for (int j = 0; j < 8; j++) {
            int32_t first, count;
            mg_pool_slice(50, 8, j, &first, &count);
            assert_in_range(a[j], first, first + count - 1);
            hits[a[j]]++;
        }
        mg_pool_select(5, it, 50, 8, b);
        assert_memory_equal(a, b, sizeof a);
    }
    /* Slices tile the pool (sizes 6 and 7 here) and every sample is drawn. */
    int32_t total = 0;
    for (int j = 0; j < 8; j++) {
        int32_t first, count;
        mg_pool_slice(50, 8, j, &first, &count);
        assert_int_equal(first, total);
        assert_in_range(count, 6, 7);
        total += count;
    }
    assert_int_equal(total, 50);
    for (int i = 0; i < 50; i++)
        assert_true(hits[i] > 20); /* ~400/6.25 = 64 expected */
    mg_pool_select(5, 1, 50, 8, a);
    mg_pool_select(5, 2, 50, 8, b);
    assert_memory_not_equal(a, b, sizeof a);
}

static void test_rank_by_loss(void **state)
{
    (void)state;
    const double loss[6] = {0.5, NAN, 0.1, 0.5, 0.9, 0.0};
    int order[6];
    mg_rank_by_loss(loss, 6, order);
    const int expect[6] = {1, 4, 0, 3, 2, 5}; /* NaN worst, ties by position */
    assert_memory_equal(order, expect, sizeof expect);
}

static void test_seed_and_damage(void **state)
{
    (void)state;
    mg_config cfg;
    mg_config_defaults(&cfg);
    cfg.channels = 6;
    const mg_nca_dims d = {21, 21, 6, 8};
    float s[21 * 21 * 6];
    mg_seed_state(&cfg, &d, s);
    int nonzero = 0;
    for (int i = 0; i < 21 * 21 * 6; i++)
        nonzero += s[i] != 0;
    assert_int_equal(nonzero, 3); /* alpha + 2 hidden of one cell */
    const int centre = (10 * 21 + 10) * 6;
    assert_true(s[centre + 3] == 1 && s[centre + 5] == 1 && s[centre + 0] == 0);

    for (int i = 0; i < 21 * 21 * 6; i++)
        s[i] = 1;
    unsigned char mask[21 * 21];
    mg_damage_mask(&cfg, &d, 9, 4, mask);
    mg_zero_cells(&d, mask, s);
    int zeroed = 0;
    for (int cell = 0; cell < 21 * 21; cell++)
        zeroed += s[cell * 6] == 0;
    /* radius 0.1..0.4 of the half side (10 cells): 1..4 cells, area ~3..50 */
    assert_in_range(zeroed, 1, 60);
    float again[21 * 21 * 6];
    for (int i = 0; i < 21 * 21 * 6; i++)
        again[i] = 1;
    unsigned char mask_again[21 * 21];
    mg_damage_mask(&cfg, &d, 9, 4, mask_again);
    mg_zero_cells(&d, mask_again, again);
    assert_memory_equal(s, again, sizeof s);
}

static void test_lr_schedule(void **state)
{
    (void)state;
    mg_config cfg;
    mg_config_defaults(&cfg);
    cfg.lr = 1e-3;
    cfg.n_lr_steps = 2;
    cfg.lr_steps[0] = 10;
    cfg.lr_steps[1] = 20;
    cfg.lr_factor = 0.5;
    assert_true(mg_lr_at(&cfg, 1) == 1e-3);
    assert_true(mg_lr_at(&cfg, 10) == 1e-3);
    assert_true(mg_lr_at(&cfg, 11) == 0.5e-3);
    assert_true(mg_lr_at(&cfg, 21) == 0.25e-3);
}

static void test_tree_sum_order(void **state)
{
    (void)state;
    /* 5 vectors of length 2: ((g0+g1)+(g2+g3))+g4 */
    float g[10] = {1e8f, 1, 1, 2, -1e8f, 3, 1, 4, 0.5f, 5};
    mg_tree_sum(g, 5, 2);
    const float e0 = ((1e8f + 1.0f) + (-1e8f + 1.0f)) + 0.5f;
    assert_true(g[0] == e0);
    assert_true(g[1] == 15.0f);
}

static void test_normalize_and_adam(void **state)
{
    (void)state;
    const mg_tensor_desc t[2] = {{"a", 1, {2, 0}, 0, 2}, {"b", 1, {1, 0}, 2, 1}};
    float g[3] = {3, 4, -2};
    double norms[2];
    mg_grad_norms(g, t, 2, norms);
    mg_grad_scale_tensors(g, t, 2, norms);
    assert_true(norms[0] == 5.0 && norms[1] == 2.0);
    assert_true(fabsf(g[0] - 0.6f) < 1e-7f && fabsf(g[1] - 0.8f) < 1e-7f && fabsf(g[2] + 1.0f) < 1e-7f);

    mg_config cfg;
    mg_config_defaults(&cfg);
    float p[1] = {1}, m[1] = {0}, v[1] = {0};
    const float grad[1] = {0.5f};
    mg_adam_update(&cfg, 0.01, 1, p, m, v, grad, 1);
    /* First Adam step moves by lr * g/|g| (bias-corrected): 1 - 0.01. */
    assert_true(fabsf(p[0] - 0.99f) < 1e-6f);
    mg_adam_update(&cfg, 0.01, 2, p, m, v, grad, 1);
    assert_true(fabsf(p[0] - 0.98f) < 1e-6f);
    cfg.weight_decay = 0.5;
    float q[1] = {2}, mq[1] = {0}, vq[1] = {0};
    const float zero[1] = {0};
    mg_adam_update(&cfg, 0.1, 1, q, mq, vq, zero, 1);
    assert_true(fabsf(q[0] - (2.0f - 0.1f * 0.5f * 2.0f)) < 1e-6f);
}

static void test_params_init(void **state)
{
    (void)state;
    const mg_nca_dims d = {8, 8, 16, 128};
    mg_tensor_desc t[3];
    const int64_t np = mg_param_layout(&d, t);
    assert_int_equal(np, 48 * 128 + 128 + 128 * 16);
    static float p[48 * 128 + 128 + 128 * 16], q[48 * 128 + 128 + 128 * 16];
    mg_params_init(1, t, 3, p);
    mg_params_init(1, t, 3, q);
    assert_memory_equal(p, q, sizeof p);
    const double limit = sqrt(6.0 / (48 + 128));
    double sum2 = 0;
    for (int64_t i = 0; i < t[0].size; i++) {
        assert_true(fabs(p[i]) <= limit);
        sum2 += (double)p[i] * p[i];
    }
    /* Uniform(-l, l) has variance l^2/3. */
    assert_true(fabs(sum2 / t[0].size - limit * limit / 3) < 0.1 * limit * limit / 3);
    for (int64_t i = t[0].size; i < np; i++)
        assert_true(p[i] == 0.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_select_stratified_and_keyed),
        cmocka_unit_test(test_rank_by_loss),
        cmocka_unit_test(test_seed_and_damage),
        cmocka_unit_test(test_lr_schedule),
        cmocka_unit_test(test_tree_sum_order),
        cmocka_unit_test(test_normalize_and_adam),
        cmocka_unit_test(test_params_init),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
