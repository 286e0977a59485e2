/* Which GPUs a CUDA build runs on, from its architecture list: CUDA's
 * binary compatibility (machine code within a major version, upwards),
 * PTX compatibility (any newer GPU), architecture-specific "a" code (its
 * own version only), and lists that cannot be judged. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>

#include "morphogen/gpu_arch.h"

typedef struct arch_case {
    const char *archs;
    int major, minor, runs;
} arch_case;

static void check_cases(const arch_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const arch_case *c = &cases[i];
        const int got = mg_gpu_arch_runs(c->archs, c->major, c->minor);
        if (got != c->runs)
            fail_msg("\"%s\" on compute capability %d.%d: %d, expected %d", c->archs ? c->archs : "(null)", c->major,
                     c->minor, got, c->runs);
    }
}
#define CHECK_CASES(cases) check_cases(cases, sizeof cases / sizeof cases[0])

static void test_default_list(void **state)
{
    (void)state;
    /* sm_80 and sm_90 machine code, each with its PTX. */
    static const arch_case cases[] = {
        {"80;90", 8, 0, 1},  /* A100 */
        {"80;90", 8, 6, 1},  /* A10, RTX 30: sm_80 code */
        {"80;90", 8, 9, 1},  /* L40S, RTX 40 */
        {"80;90", 9, 0, 1},  /* H100, H200 */
        {"80;90", 10, 0, 1}, /* B200: compute_90's PTX */
        {"80;90", 12, 0, 1}, /* RTX 50 */
        {"80;90", 7, 5, 0},  /* T4 */
        {"80;90", 7, 0, 0},  /* V100 */
        {"80,90", 7, 5, 0},
        {" 80 ; 90 ", 8, 0, 1},
    };
    CHECK_CASES(cases);
}

static void test_machine_code_and_ptx(void **state)
{
    (void)state;
    static const arch_case cases[] = {
        /* Machine code only: its major version, minor at least its own. */
        {"90-real", 9, 0, 1},
        {"90-real", 10, 0, 0},
        {"86-real", 8, 9, 1},
        {"86-real", 8, 0, 0},
        {"75-real;80-real", 9, 0, 0},
        /* PTX only: any GPU at least its version. */
        {"80-virtual", 7, 5, 0},
        {"80-virtual", 8, 6, 1},
        {"80-virtual", 12, 1, 1},
        /* Both (a plain number): machine code below, PTX above. */
        {"86", 8, 0, 0},
        {"86", 9, 0, 1},
        {"100", 10, 3, 1},
        {"120", 10, 0, 0},
    };
    CHECK_CASES(cases);
}

static void test_architecture_specific(void **state)
{
    (void)state;
    static const arch_case cases[] = {
        {"90a", 9, 0, 1},
        {"90a", 10, 0, 0}, /* not forward compatible, its PTX neither */
        {"90a-real", 9, 0, 1},
        {"90a;80", 10, 0, 1}, /* compute_80's PTX */
    };
    CHECK_CASES(cases);
}

static void test_lists_that_cannot_be_judged(void **state)
{
    (void)state;
    static const arch_case cases[] = {
        {"native", 7, 5, -1},
        {"all-major", 7, 5, -1},
        {"100f", 10, 0, -1},
        {"80;sm_75", 7, 5, -1},
        {"80-reel", 8, 0, -1},
        {"8", 8, 0, -1},
        {"", 9, 0, -1},
        {";", 9, 0, -1},
        {NULL, 9, 0, -1},
        /* One entry that runs decides, whatever else the list holds. */
        {"native;90", 9, 0, 1},
        /* Empty entries say nothing. */
        {"75;;80;", 8, 6, 1},
        {"80;", 7, 5, 0},
    };
    CHECK_CASES(cases);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_list),
        cmocka_unit_test(test_machine_code_and_ptx),
        cmocka_unit_test(test_architecture_specific),
        cmocka_unit_test(test_lists_that_cannot_be_judged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
