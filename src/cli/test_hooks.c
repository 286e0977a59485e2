/* The test suite's fault injections for `morphogen train`, read from the
 * environment: MORPHOGEN_TEST_NAN_AT=N (the loss of iteration N is NaN),
 * MORPHOGEN_TEST_FAIL=R:N (rank R fails at iteration N) and
 * MORPHOGEN_TEST_DIVERGE=R:N (rank R's weights differ by one bit at the
 * first replica check at or after iteration N). Unset or empty is off.
 * Values are parsed strictly (plain decimal, R in 0..ranks-1, N >= 1,
 * nothing else): a typo must not quietly switch a hook off and let a test
 * pass without the fault it meant to inject. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>

#include "cli.h"

/* A plain decimal number in min..max at *text, ending at *end. */
static int decimal(const char *text, long long min, long long max, const char **end, long long *out)
{
    if (!isdigit((unsigned char)text[0]))
        return -1;
    char *e;
    errno = 0;
    const long long v = strtoll(text, &e, 10);
    if (errno != 0 || v < min || v > max)
        return -1;
    *end = e;
    *out = v;
    return 0;
}

static int iteration_hook(const char *name, int64_t *at, mg_error *err)
{
    const char *text = getenv(name), *end;
    long long n;
    if (!text || !*text)
        return 0;
    if (decimal(text, 1, INT64_MAX, &end, &n) == 0 && *end == '\0') {
        *at = n;
        return 0;
    }
    return mg_fail(err, "%s=%s: must be an ITERATION >= 1", name, text);
}

static int rank_iteration_hook(const char *name, int n_ranks, int *rank, int64_t *at, mg_error *err)
{
    const char *text = getenv(name), *end;
    long long r, n;
    if (!text || !*text)
        return 0;
    if (decimal(text, 0, n_ranks - 1, &end, &r) == 0 && *end == ':' && decimal(end + 1, 1, INT64_MAX, &end, &n) == 0 &&
        *end == '\0') {
        *rank = (int)r;
        *at = n;
        return 0;
    }
    return mg_fail(err, "%s=%s: must be RANK:ITERATION with RANK 0..%d and ITERATION >= 1", name, text, n_ranks - 1);
}

int mg_cli_test_hooks(mg_train_options *opt, int n_ranks, mg_error *err)
{
    if (iteration_hook("MORPHOGEN_TEST_NAN_AT", &opt->inject_nan_at, err) != 0 ||
        rank_iteration_hook("MORPHOGEN_TEST_FAIL", n_ranks, &opt->fail_rank, &opt->fail_at, err) != 0 ||
        rank_iteration_hook("MORPHOGEN_TEST_DIVERGE", n_ranks, &opt->diverge_rank, &opt->diverge_at, err) != 0)
        return -1;
    return 0;
}
