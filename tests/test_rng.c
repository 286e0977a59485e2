/* The counter-based generator: Philox4x32-10 against the Random123
 * known-answer vectors, and the properties the trainer relies on. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "morphogen/rng.h"

static void test_philox_known_answers(void **state)
{
    (void)state;
    /* kat_vectors from Random123: philox4x32 10 rounds. */
    mg_philox_out a = mg_philox4x32(0, 0, 0, 0, 0);
    const uint32_t ea[4] = {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u};
    assert_memory_equal(a.v, ea, sizeof ea);
    mg_philox_out b = mg_philox4x32(0xffffffffffffffffull, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu);
    const uint32_t eb[4] = {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu};
    assert_memory_equal(b.v, eb, sizeof eb);
    mg_philox_out c = mg_philox4x32(0x299f31d0a4093822ull, 0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u);
    const uint32_t ec[4] = {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u};
    assert_memory_equal(c.v, ec, sizeof ec);
}

static void test_fire_mask_rate_and_keys(void **state)
{
    (void)state;
    enum { N = 20000 };
    static unsigned char m1[N], m2[N], m3[N];
    mg_fire_mask(7, 3, 11, 5, mg_fire_threshold(0.5), N, m1);
    int fired = 0;
    for (int i = 0; i < N; i++)
        fired += m1[i];
    /* Binomial(20000, 0.5): sd ~ 71; 5 sd bounds. */
    assert_in_range(fired, 10000 - 355, 10000 + 355);
    /* Same key, same mask; a different step or sample gives a different one. */
    mg_fire_mask(7, 3, 11, 5, mg_fire_threshold(0.5), N, m2);
    assert_memory_equal(m1, m2, N);
    mg_fire_mask(7, 3, 11, 6, mg_fire_threshold(0.5), N, m3);
    assert_memory_not_equal(m1, m3, N);
    mg_fire_mask(7, 3, 12, 5, mg_fire_threshold(0.5), N, m3);
    assert_memory_not_equal(m1, m3, N);
    /* A cell's decision does not depend on how many cells are evaluated. */
    mg_fire_mask(7, 3, 11, 5, mg_fire_threshold(0.5), 100, m3);
    assert_memory_equal(m1, m3, 100);
    /* Rate 1 fires everything, rate ~0 nothing. */
    mg_fire_mask(7, 3, 11, 5, mg_fire_threshold(1.0), N, m3);
    for (int i = 0; i < N; i++)
        assert_int_equal(m3[i], 1);
    mg_fire_mask(7, 3, 11, 5, mg_fire_threshold(0.0), N, m3);
    for (int i = 0; i < N; i++)
        assert_int_equal(m3[i], 0);
}

static void test_uniform_range(void **state)
{
    (void)state;
    double lo = 1, hi = 0, sum = 0;
    for (uint32_t i = 0; i < 10000; i++) {
        const double u = mg_rng_uniform(1, MG_RNG_TEST, 0, 0, 0, i);
        assert_true(u >= 0 && u < 1);
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
        sum += u;
    }
    assert_true(lo < 0.001 && hi > 0.999);
    assert_true(sum / 10000 > 0.48 && sum / 10000 < 0.52);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answers),
        cmocka_unit_test(test_fire_mask_rate_and_keys),
        cmocka_unit_test(test_uniform_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
