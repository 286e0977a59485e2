/* Config: Distill defaults, INI loading, --set, validation, exact round trip
 * through mg_config_to_ini, and one-line errors naming file, line, key and
 * allowed range. */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "morphogen/config.h"

#define LIZARD "emoji:\xF0\x9F\xA6\x8E"

/* ---- helpers ---- */

static void mkdir_p(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0777);
            *p = '/';
        }
    }
    if (mkdir(buf, 0777) != 0)
        assert_int_equal(errno, EEXIST);
}

/* Puts $MG_WORK/name into path and, unless text is NULL, writes text there. */
static void work_file(const char *name, const char *text, char *path, size_t len)
{
    const char *work = getenv("MG_WORK");
    if (!work)
        work = "/tmp/morphogen-test_config";
    mkdir_p(work);
    snprintf(path, len, "%s/%s", work, name);
    if (!text)
        return;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, haystack);
}

static void assert_one_line(const char *msg)
{
    assert_true(msg[0] != '\0');
    assert_null(strchr(msg, '\n'));
}

/* Loads text from a file and expects failure at `line` with every needle in
 * the message; also checks the config was left untouched. */
static void expect_file_error(const char *text, int line, const char *needle1,
                              const char *needle2)
{
    char path[4096], where[4200];
    work_file("bad.ini", text, path, sizeof path);
    mg_config cfg, before;
    mg_config_defaults(&cfg);
    memcpy(&before, &cfg, sizeof cfg);
    mg_error err = { { 0 } };
    assert_int_equal(mg_config_load(&cfg, path, &err), -1);
    assert_one_line(err.msg);
    snprintf(where, sizeof where, "%s:%d: ", path, line);
    if (strncmp(err.msg, where, strlen(where)) != 0)
        fail_msg("expected message to start with \"%s\": \"%s\"", where, err.msg);
    if (needle1)
        assert_contains(err.msg, needle1);
    if (needle2)
        assert_contains(err.msg, needle2);
    assert_memory_equal(&cfg, &before, sizeof cfg);
}

static void expect_set_error(const char *assignment, const char *message)
{
    mg_config cfg, before;
    mg_config_defaults(&cfg);
    memcpy(&before, &cfg, sizeof cfg);
    mg_error err = { { 0 } };
    assert_int_equal(mg_config_set(&cfg, assignment, &err), -1);
    assert_one_line(err.msg);
    assert_string_equal(err.msg, message);
    assert_memory_equal(&cfg, &before, sizeof cfg);
}

static void set_ok(mg_config *cfg, const char *assignment)
{
    mg_error err = { { 0 } };
    if (mg_config_set(cfg, assignment, &err) != 0)
        fail_msg("--set %s failed: %s", assignment, err.msg);
}

/* ---- defaults and the key table ---- */

static void test_defaults_match_distill(void **state)
{
    (void)state;
    mg_config c;
    mg_config_defaults(&c);
    assert_int_equal(c.channels, 16);
    assert_int_equal(c.hidden, 128);
    assert_true(c.fire_rate == 0.5);
    assert_true(c.alive_threshold == 0.1);
    assert_int_equal(c.n_targets, 1);
    assert_string_equal(c.spec[0], LIZARD);
    assert_int_equal(c.size, 40);
    assert_int_equal(c.padding, 16);
    assert_int_equal(c.seed_x, -1);
    assert_int_equal(c.seed_y, -1);
    assert_int_equal(c.pin_seed, 0);
    assert_true(c.seed == 1);
    assert_int_equal(c.iterations, 8000);
    assert_int_equal(c.pool_size, 1024);
    assert_int_equal(c.batch, 8);
    assert_int_equal(c.replace_worst, 1);
    assert_int_equal(c.damage, 0);
    assert_true(c.damage_radius_min == 0.1);
    assert_true(c.damage_radius_max == 0.4);
    assert_int_equal(c.steps_min, 64);
    assert_int_equal(c.steps_max, 96);
    assert_true(c.lr == 2e-3);
    assert_int_equal(c.n_lr_steps, 1);
    assert_int_equal(c.lr_steps[0], 2000);
    assert_true(c.lr_factor == 0.1);
    assert_true(c.beta1 == 0.9);
    assert_true(c.beta2 == 0.999);
    assert_true(c.adam_eps == 1e-8);
    assert_true(c.weight_decay == 0.0);
    assert_int_equal(c.grad_normalize, 1);
    assert_int_equal(c.checkpoint_steps, 0);
    assert_string_equal(c.backend, "cpu");
    assert_int_equal(c.matmul_tf32, 0);
    assert_int_equal(c.threads, 0);
    assert_int_equal(c.checkpoint_every, 500);
    assert_int_equal(c.log_every, 50);
    assert_int_equal(c.verify_every, 100);

    mg_error err = { { 0 } };
    if (mg_config_validate(&c, "defaults", &err) != 0)
        fail_msg("defaults do not validate: %s", err.msg);
}

static void test_key_table(void **state)
{
    (void)state;
    static const char *const expected[] = {
        "model.channels", "model.hidden", "model.fire_rate", "model.alive_threshold",
        "target.spec", "target.size", "target.padding",
        "seed.x", "seed.y", "seed.pin",
        "train.seed", "train.iterations", "train.pool_size", "train.batch",
        "train.replace_worst", "train.damage", "train.damage_radius_min",
        "train.damage_radius_max", "train.steps_min", "train.steps_max", "train.lr",
        "train.lr_steps", "train.lr_factor", "train.beta1", "train.beta2", "train.adam_eps",
        "train.weight_decay", "train.grad_normalize", "train.checkpoint_steps",
        "run.backend", "run.matmul", "run.threads", "run.checkpoint_every", "run.log_every",
        "run.verify_every",
    };
    size_t n = sizeof expected / sizeof expected[0];
    assert_int_equal(mg_config_key_count(), n);
    assert_null(mg_config_key_at(n));

    mg_config defaults;
    mg_config_defaults(&defaults);
    for (size_t i = 0; i < n; i++) {
        const mg_config_key *k = mg_config_key_at(i);
        char full[128], assignment[4400], value[4096];
        snprintf(full, sizeof full, "%s.%s", k->section, k->name);
        assert_string_equal(full, expected[i]);
        assert_true(k->range_text[0] && k->doc[0] && k->default_text[0]);

        /* The documented default is what mg_config_defaults holds, and the
         * formatted value reads back unchanged. */
        mg_config c;
        mg_config_defaults(&c);
        snprintf(assignment, sizeof assignment, "%s=%s", full, k->default_text);
        set_ok(&c, assignment);
        assert_memory_equal(&c, &defaults, sizeof c);
        mg_config_format_value(&c, i, value, sizeof value);
        snprintf(assignment, sizeof assignment, "%s=%s", full, value);
        set_ok(&c, assignment);
        assert_memory_equal(&c, &defaults, sizeof c);
    }
}

/* Each key's range text is what its check enforces: both ends of every
 * integer range are accepted and the neighbours outside refused; a double
 * range's bracket says whether its end is included. */
static int try_set(const char *section, const char *name, const char *value)
{
    char assignment[256];
    snprintf(assignment, sizeof assignment, "%s.%s=%s", section, name, value);
    mg_config c;
    mg_config_defaults(&c);
    mg_error err = { { 0 } };
    return mg_config_set(&c, assignment, &err);
}

static void test_range_texts_are_enforced(void **state)
{
    (void)state;
    int checked = 0;
    for (size_t i = 0; i < mg_config_key_count(); i++) {
        const mg_config_key *k = mg_config_key_at(i);
        char v[64];
        if (k->type == MG_KEY_INT) {
            long long lo, hi;
            const char *r = k->range_text;
            if (!strncmp(r, "-1 or ", 6)) {
                assert_int_equal(try_set(k->section, k->name, "-1"), 0);
                assert_int_equal(try_set(k->section, k->name, "-2"), -1);
                r += 6;
            }
            assert_int_equal(sscanf(r, "%lld..%lld", &lo, &hi), 2);
            snprintf(v, sizeof v, "%lld", lo);
            assert_int_equal(try_set(k->section, k->name, v), 0);
            snprintf(v, sizeof v, "%lld", hi);
            assert_int_equal(try_set(k->section, k->name, v), 0);
            snprintf(v, sizeof v, "%lld", hi + 1);
            assert_int_equal(try_set(k->section, k->name, v), -1);
            if (strncmp(k->range_text, "-1 or ", 6) != 0) {
                snprintf(v, sizeof v, "%lld", lo - 1);
                assert_int_equal(try_set(k->section, k->name, v), -1);
            }
            checked++;
        } else if (k->type == MG_KEY_DOUBLE) {
            char open_br, close_br;
            double lo, hi;
            assert_int_equal(sscanf(k->range_text, "%c%lf, %lf%c", &open_br, &lo, &hi, &close_br), 4);
            snprintf(v, sizeof v, "%.17g", lo);
            assert_int_equal(try_set(k->section, k->name, v), open_br == '(' ? -1 : 0);
            snprintf(v, sizeof v, "%.17g", hi);
            assert_int_equal(try_set(k->section, k->name, v), close_br == ')' ? -1 : 0);
            snprintf(v, sizeof v, "%.17g", lo - 1e-9);
            assert_int_equal(try_set(k->section, k->name, v), -1);
            snprintf(v, sizeof v, "%.17g", hi + 1e-9);
            assert_int_equal(try_set(k->section, k->name, v), -1);
            checked++;
        }
    }
    assert_int_equal(checked, 18 + 10); /* integer keys + double keys */
    assert_int_equal(try_set("train", "seed", "0"), 0);
    assert_int_equal(try_set("train", "lr_steps", "1000000000"), 0);
    assert_int_equal(try_set("train", "lr_steps", "1000000001"), -1);
    assert_int_equal(try_set("target", "spec", "a,b,c,d,e,f,g,h"), 0);
}

static void test_format_value(void **state)
{
    (void)state;
    mg_config c;
    mg_config_defaults(&c);
    char buf[256];
    const char *want[] = { "16", "128", "0.5", "0.1", LIZARD, "40", "16", "-1", "-1", "false",
                           "1", "8000", "1024", "8", "1", "0", "0.1", "0.4", "64", "96",
                           "0.002", "2000", "0.1", "0.9", "0.999", "1e-08", "0", "true", "0",
                           "cpu", "fp32", "0", "500", "50", "100" };
    for (size_t i = 0; i < mg_config_key_count(); i++) {
        mg_config_format_value(&c, i, buf, sizeof buf);
        assert_string_equal(buf, want[i]);
    }
    /* Truncates like snprintf instead of overflowing. */
    mg_config_format_value(&c, 1, buf, 2);
    assert_string_equal(buf, "1");
    set_ok(&c, "target.spec=a.png, b.png ,c.png");
    mg_config_format_value(&c, 4, buf, sizeof buf);
    assert_string_equal(buf, "a.png, b.png, c.png");
    set_ok(&c, "train.lr_steps=");
    mg_config_format_value(&c, 21, buf, sizeof buf);
    assert_string_equal(buf, "");
}

/* ---- loading ---- */

static void test_load_good_file(void **state)
{
    (void)state;
    const char *text = "\xEF\xBB\xBF; a comment after a byte order mark\n"
                       "# another comment\n"
                       "\n"
                       "[model]\n"
                       "channels = 12\n"
                       "  hidden = 64 ; inline comment\n"
                       "fire_rate=0.25\n"
                       "[target]\n"
                       "spec = emoji:U+1F98E ,  a.png\n"
                       "size = 32\n"
                       "[seed]\n"
                       "x = 3\n"
                       "pin = YES\n"
                       "[train]\n"
                       "seed = 18446744073709551615\n"
                       "batch = 4\n"
                       "batch = 6\n" /* duplicate key: last wins */
                       "lr = 1e-3\n"
                       "lr_steps = 100, 200,300\n"
                       "grad_normalize = off\n"
                       "[run]\r\n"
                       "backend = cuda\r\n"
                       "threads: 3\n"
                       "[model]\n"
                       "alive_threshold = 0\n";
    char path[4096];
    work_file("good.ini", text, path, sizeof path);
    mg_config c;
    mg_config_defaults(&c);
    mg_error err = { { 0 } };
    if (mg_config_load(&c, path, &err) != 0)
        fail_msg("load failed: %s", err.msg);
    assert_int_equal(c.channels, 12);
    assert_int_equal(c.hidden, 64);
    assert_true(c.fire_rate == 0.25);
    assert_true(c.alive_threshold == 0.0);
    assert_int_equal(c.n_targets, 2);
    assert_string_equal(c.spec[0], "emoji:U+1F98E");
    assert_string_equal(c.spec[1], "a.png");
    assert_int_equal(c.size, 32);
    assert_int_equal(c.padding, 16); /* untouched */
    assert_int_equal(c.seed_x, 3);
    assert_int_equal(c.seed_y, -1);
    assert_int_equal(c.pin_seed, 1);
    assert_true(c.seed == UINT64_MAX);
    assert_int_equal(c.batch, 6);
    assert_true(c.lr == 1e-3);
    assert_int_equal(c.n_lr_steps, 3);
    assert_int_equal(c.lr_steps[0], 100);
    assert_int_equal(c.lr_steps[1], 200);
    assert_int_equal(c.lr_steps[2], 300);
    assert_int_equal(c.grad_normalize, 0);
    assert_string_equal(c.backend, "cuda");
    assert_int_equal(c.threads, 3);
    assert_int_equal(mg_config_validate(&c, path, &err), 0);
}

static void test_round_trip_exact(void **state)
{
    (void)state;
    mg_config a;
    mg_config_defaults(&a);
    set_ok(&a, "model.channels=128");
    set_ok(&a, "model.fire_rate=0.30000000000000004");
    set_ok(&a, "model.alive_threshold=0.99999999999999989");
    set_ok(&a, "target.spec=emoji:U+1F600, some dir/face.png, " LIZARD);
    set_ok(&a, "seed.pin=true");
    set_ok(&a, "seed.y=0");
    set_ok(&a, "train.seed=18446744073709551615");
    set_ok(&a, "train.lr=1.2345678901234567e-3");
    set_ok(&a, "train.lr_steps=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,1000000000");
    set_ok(&a, "train.adam_eps=4.9406564584124654e-324"); /* smallest subnormal */
    set_ok(&a, "train.weight_decay=-0.0");
    set_ok(&a, "train.beta2=0.1");
    set_ok(&a, "run.backend=cuda");
    set_ok(&a, "run.matmul=tf32");

    char *text = mg_config_to_ini(&a);
    assert_non_null(text);
    assert_int_equal(strncmp(text, "[model]\nchannels = 128\n", 23), 0);
    assert_contains(text, "\n[run]\nbackend = cuda\nmatmul = tf32\n");
    assert_contains(text, "weight_decay = -0\n");

    mg_config b;
    mg_config_defaults(&b);
    mg_error err = { { 0 } };
    if (mg_config_load_string(&b, text, "run.h5:/config", &err) != 0)
        fail_msg("reload failed: %s\n%s", err.msg, text);
    assert_memory_equal(&a, &b, sizeof a);

    /* Onto a config differing in every key: the text alone determines it. */
    mg_config c;
    mg_config_defaults(&c);
    set_ok(&c, "train.lr_steps=");
    set_ok(&c, "target.spec=x.png,y.png,z.png");
    char *empty_steps = mg_config_to_ini(&c);
    assert_contains(empty_steps, "\nlr_steps = \n");
    assert_int_equal(mg_config_load_string(&c, text, "run.h5:/config", &err), 0);
    assert_memory_equal(&a, &c, sizeof a);

    mg_config d;
    mg_config_defaults(&d);
    assert_int_equal(mg_config_load_string(&d, empty_steps, "s", &err), 0);
    assert_int_equal(d.n_lr_steps, 0);
    assert_int_equal(d.n_targets, 3);
    free(empty_steps);
    free(text);
}

static void test_set_every_type(void **state)
{
    (void)state;
    mg_config c;
    mg_config_defaults(&c);
    set_ok(&c, "model.hidden=7");              /* int */
    assert_int_equal(c.hidden, 7);
    set_ok(&c, "seed.x=-1");                   /* int, negative */
    assert_int_equal(c.seed_x, -1);
    set_ok(&c, "train.seed=12345678901234");   /* u64 */
    assert_true(c.seed == 12345678901234ull);
    set_ok(&c, "model.fire_rate=1");           /* double, closed upper bound */
    assert_true(c.fire_rate == 1.0);
    set_ok(&c, "train.lr=5e-4");
    assert_true(c.lr == 5e-4);
    set_ok(&c, "seed.pin=On");                 /* bool */
    assert_int_equal(c.pin_seed, 1);
    set_ok(&c, "seed.pin=0");
    assert_int_equal(c.pin_seed, 0);
    set_ok(&c, "train.grad_normalize=no");
    assert_int_equal(c.grad_normalize, 0);
    set_ok(&c, "run.backend=cuda");            /* string */
    assert_string_equal(c.backend, "cuda");
    set_ok(&c, "run.matmul=tf32");             /* string, stored as an index */
    assert_int_equal(c.matmul_tf32, 1);
    set_ok(&c, "run.matmul=fp32");
    assert_int_equal(c.matmul_tf32, 0);
    set_ok(&c, "target.spec=a.png");           /* list of strings */
    assert_int_equal(c.n_targets, 1);
    assert_string_equal(c.spec[0], "a.png");
    set_ok(&c, "train.lr_steps= 10 , 20 ");     /* list of ints */
    assert_int_equal(c.n_lr_steps, 2);
    assert_int_equal(c.lr_steps[1], 20);
    set_ok(&c, "train.lr_steps=");
    assert_int_equal(c.n_lr_steps, 0);
    set_ok(&c, "target.spec=a=b.png");         /* only the first '=' separates */
    assert_string_equal(c.spec[0], "a=b.png");
}

/* ---- errors ---- */

static void test_file_value_errors(void **state)
{
    (void)state;
    char path[4096], want[4300];
    work_file("bad.ini", NULL, path, sizeof path);

    /* The exact form, then the other classes by their parts. */
    expect_file_error("[model]\nchannels = abc\n", 2, NULL, NULL);
    mg_config c;
    mg_config_defaults(&c);
    mg_error err = { { 0 } };
    assert_int_equal(mg_config_load(&c, path, &err), -1);
    snprintf(want, sizeof want, "%s:2: [model] channels: 'abc' is not an integer (allowed 4..128)",
             path);
    assert_string_equal(err.msg, want);

    expect_file_error("[model]\n\n; x\nchannels = 999\n", 4,
                      "[model] channels: '999' is out of range (allowed 4..128)", NULL);
    expect_file_error("[model]\nchannels = 3\n", 2, "out of range (allowed 4..128)", NULL);
    const char *malformed[] = { "1e", "12abc", "", " ", "0x10", "+", "16.0", "1 6" };
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "[target]\nsize = %s\n", malformed[i]);
        expect_file_error(text, 2, "[target] size:", "is not an integer (allowed 4..1024)");
    }
    expect_file_error("[target]\nsize = 99999999999999999999\n", 2, "out of range", "4..1024");
    expect_file_error("[target]\nsize = 2147483648\n", 2, "out of range", "4..1024");
    expect_file_error("[target]\nsize = -2147483649\n", 2, "out of range", "4..1024");

    const char *bad_doubles[] = { "1e", "0.5x", "", "--1", "0,5" };
    for (size_t i = 0; i < sizeof bad_doubles / sizeof bad_doubles[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "[model]\nfire_rate = %s\n", bad_doubles[i]);
        expect_file_error(text, 2, "[model] fire_rate:", "is not a number (allowed (0, 1])");
    }
    const char *nonfinite[] = { "nan", "NaN", "inf", "-inf", "1e999" };
    for (size_t i = 0; i < sizeof nonfinite / sizeof nonfinite[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "[train]\nlr = %s\n", nonfinite[i]);
        expect_file_error(text, 2, "[train] lr:", "is not a finite number (allowed (0, 10])");
    }
    expect_file_error("[model]\nfire_rate = 0\n", 2, "out of range (allowed (0, 1])", NULL);
    expect_file_error("[model]\nalive_threshold = 1\n", 2, "out of range (allowed [0, 1))", NULL);
    expect_file_error("[train]\nweight_decay = -1e-300\n", 2, "out of range", "[0, 10]");

    expect_file_error("[train]\nseed = -1\n", 2, "[train] seed: '-1' is not an unsigned integer",
                      "0..18446744073709551615");
    expect_file_error("[train]\nseed = 18446744073709551616\n", 2, "out of range",
                      "0..18446744073709551615");

    expect_file_error("[seed]\npin = maybe\n", 2, "[seed] pin: 'maybe' is not a boolean",
                      "true/false");
    expect_file_error("[run]\nbackend = gpu\n", 2, "[run] backend: 'gpu'", "cpu or cuda");
    expect_file_error("[run]\nmatmul = fp16\n", 2,
                      "[run] matmul: 'fp16' is not a known precision (allowed fp32 or tf32)", NULL);

    expect_file_error("[target]\nspec = a,b,c,d,e,f,g,h,i\n", 2, "[target] spec:",
                      "a list of 9 entries (allowed 1..8 entries)");
    expect_file_error("[target]\nspec =\n", 2, "an empty list (allowed 1..8 entries)", NULL);
    expect_file_error("[target]\nspec = a.png,,b.png\n", 2, "entry 2 is empty", NULL);
    expect_file_error("[train]\nlr_steps = 100, 100\n", 2, "[train] lr_steps:",
                      "not strictly increasing at entry 2");
    expect_file_error("[train]\nlr_steps = 300, 200\n", 2, "not strictly increasing", NULL);
    expect_file_error("[train]\nlr_steps = 0\n", 2, "entry 1 is out of range",
                      "integers in 1..1000000000");
    expect_file_error("[train]\nlr_steps = 10, x\n", 2, "entry 2 is not an integer", NULL);
    expect_file_error("[train]\nlr_steps = 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17\n", 2,
                      "a list of 17 entries", "0..16");
}

static void test_file_structure_errors(void **state)
{
    (void)state;
    expect_file_error("[model]\nchannels = 16\n\n[foo]\n", 4, "unknown section [foo]",
                      "[model], [target], [seed], [train], [run]");
    expect_file_error("[foo]\nbar = 1\n", 1, "unknown section [foo]", NULL);
    expect_file_error("\xEF\xBB\xBF[foo]\nbar = 1\n", 1, "unknown section [foo]", NULL);
    expect_file_error("[model]\nbar = 1\n", 2, "unknown key 'bar' in [model]",
                      "channels, hidden, fire_rate, alive_threshold");
    expect_file_error("[seed]\nseed_x = 1\n", 2, "unknown key 'seed_x' in [seed]", "x, y, pin");
    expect_file_error("; header\nchannels = 16\n[model]\n", 2,
                      "key 'channels' is outside any section", "[model]");
    expect_file_error("[model]\nchannels 16\n", 2, "syntax error", NULL);
    expect_file_error("[model\nchannels = 16\n", 1, "syntax error", NULL);
    /* The first problem in file order is the one reported. */
    expect_file_error("[model]\nchannels = 16\nwhat\nbar = 1\n", 3, "syntax error", NULL);
    expect_file_error("[model]\nbar = 1\nwhat\n", 2, "unknown key 'bar'", NULL);

    /* A line longer than libinih's buffer is refused, never split. */
    char text[1024] = "[target]\nspec = ";
    size_t used = strlen(text);
    memset(text + used, 'a', 400);
    strcpy(text + used + 400, ".png\n");
    expect_file_error(text, 2, "line too long", NULL);
}

static void test_set_errors(void **state)
{
    (void)state;
    expect_set_error("model.channels=abc", "--set model.channels=abc: not an integer (allowed 4..128)");
    expect_set_error("model.channels=999", "--set model.channels=999: out of range (allowed 4..128)");
    expect_set_error("model.channels=", "--set model.channels=: not an integer (allowed 4..128)");
    expect_set_error("model.channels= 16", "--set model.channels= 16: not an integer (allowed 4..128)");
    expect_set_error("foo", "--set foo: expected section.key=value");
    expect_set_error("model=1", "--set model=1: expected section.key=value");
    expect_set_error(".channels=1", "--set .channels=1: expected section.key=value");
    expect_set_error("model.=1", "--set model.=1: expected section.key=value");
    expect_set_error("foo.bar=1",
                     "--set foo.bar=1: unknown section [foo] (sections: [model], [target], "
                     "[seed], [train], [run])");
    expect_set_error("model.bar=1",
                     "--set model.bar=1: unknown key 'bar' in [model] (valid keys: channels, "
                     "hidden, fire_rate, alive_threshold)");
    expect_set_error("train.lr=nan", "--set train.lr=nan: not a finite number (allowed (0, 10])");
    expect_set_error("seed.pin=2",
                     "--set seed.pin=2: not a boolean (allowed true/false, yes/no, on/off, 1/0)");
    expect_set_error("run.matmul=TF32",
                     "--set run.matmul=TF32: not a known precision (allowed fp32 or tf32)");
    expect_set_error("target.spec=a.png ;x.png",
                     "--set target.spec=a.png ;x.png: a list whose entry 1 contains ';' (it "
                     "starts an INI comment)");

    /* Values that the INI form could not carry are refused. */
    char big[700] = "target.spec=";
    memset(big + strlen(big), 'a', MG_SPEC_LEN);
    mg_config c;
    mg_config_defaults(&c);
    mg_error err = { { 0 } };
    assert_int_equal(mg_config_set(&c, big, &err), -1);
    assert_contains(err.msg, "entry 1 is too long (at most 511 bytes)");
    char wide[1200] = "target.spec=";
    for (int i = 0; i < 4; i++) {
        size_t at = strlen(wide);
        memset(wide + at, 'b', 100);
        strcpy(wide + at + 100, i < 3 ? "," : "");
    }
    assert_int_equal(mg_config_set(&c, wide, &err), -1);
    assert_contains(err.msg, "too long for one config line");
    assert_one_line(err.msg);
}

static void test_validate(void **state)
{
    (void)state;
    mg_config c;
    mg_error err = { { 0 } };

    mg_config_defaults(&c);
    set_ok(&c, "train.batch=16");
    set_ok(&c, "train.pool_size=8");
    assert_int_equal(mg_config_validate(&c, "cfg.ini", &err), -1);
    assert_string_equal(err.msg, "cfg.ini: train.batch (16) must not exceed train.pool_size (8)");

    mg_config_defaults(&c);
    set_ok(&c, "train.replace_worst=4");
    set_ok(&c, "train.damage=5");
    assert_int_equal(mg_config_validate(&c, "cfg.ini", &err), -1);
    assert_string_equal(err.msg, "cfg.ini: train.replace_worst (4) + train.damage (5) must not "
                                 "exceed train.batch (8)");
    set_ok(&c, "train.damage=4");
    assert_int_equal(mg_config_validate(&c, "cfg.ini", &err), 0);

    mg_config_defaults(&c);
    set_ok(&c, "train.steps_min=100");
    assert_int_equal(mg_config_validate(&c, "cfg.ini", &err), -1);
    assert_string_equal(err.msg, "cfg.ini: train.steps_min (100) must not exceed train.steps_max (96)");

    mg_config_defaults(&c);
    set_ok(&c, "train.damage_radius_min=0.5");
    assert_int_equal(mg_config_validate(&c, "cfg.ini", &err), -1);
    assert_contains(err.msg, "train.damage_radius_min (0.5) must not exceed train.damage_radius_max (0.4)");

    /* Grid is 40 + 2 * 16 = 72 cells: 71 is the last column. */
    mg_config_defaults(&c);
    set_ok(&c, "seed.x=71");
    set_ok(&c, "seed.y=0");
    assert_int_equal(mg_config_validate(&c, "cfg.ini", &err), 0);
    set_ok(&c, "seed.x=72");
    assert_int_equal(mg_config_validate(&c, "cfg.ini", &err), -1);
    assert_contains(err.msg, "cfg.ini: seed.x (72) must be -1");
    assert_contains(err.msg, "0..71");
    mg_config_defaults(&c);
    set_ok(&c, "target.padding=0");
    set_ok(&c, "seed.y=40");
    assert_int_equal(mg_config_validate(&c, "cfg.ini", &err), -1);
    assert_contains(err.msg, "seed.y (40)");

    /* Tensor cores exist only on the GPU. */
    mg_config_defaults(&c);
    set_ok(&c, "run.matmul=tf32");
    assert_int_equal(mg_config_validate(&c, "cfg.ini", &err), -1);
    assert_string_equal(err.msg, "cfg.ini: run.matmul: 'tf32' needs run.backend = cuda (the cpu "
                                 "backend computes in fp32)");
    set_ok(&c, "run.backend=cuda");
    assert_int_equal(mg_config_validate(&c, "cfg.ini", &err), 0);

    /* Configs edited in code get the per-key ranges too. */
    mg_config_defaults(&c);
    c.channels = 2;
    assert_int_equal(mg_config_validate(&c, "code", &err), -1);
    assert_string_equal(err.msg, "code: model.channels: '2' is out of range (allowed 4..128)");
    mg_config_defaults(&c);
    c.n_targets = 0;
    assert_int_equal(mg_config_validate(&c, "code", &err), -1);
    assert_contains(err.msg, "target.spec");
    mg_config_defaults(&c);
    c.lr = NAN;
    assert_int_equal(mg_config_validate(&c, "code", &err), -1);
    assert_contains(err.msg, "train.lr");
    assert_one_line(err.msg);
    mg_config_defaults(&c);
    c.matmul_tf32 = 2;
    assert_int_equal(mg_config_validate(&c, "code", &err), -1);
    assert_string_equal(err.msg, "code: run.matmul: '2' is not a known precision (allowed fp32 or tf32)");
}

static void test_unreadable_files(void **state)
{
    (void)state;
    char path[4096], want[4200];
    mg_config c, before;
    mg_config_defaults(&c);
    memcpy(&before, &c, sizeof c);
    mg_error err = { { 0 } };

    work_file("does-not-exist.ini", NULL, path, sizeof path);
    remove(path);
    assert_int_equal(mg_config_load(&c, path, &err), -1);
    snprintf(want, sizeof want, "%s: no such file", path);
    assert_string_equal(err.msg, want);

    work_file("a-directory.ini", NULL, path, sizeof path);
    mkdir_p(path);
    assert_int_equal(mg_config_load(&c, path, &err), -1);
    snprintf(want, sizeof want, "%s: cannot read: ", path);
    assert_int_equal(strncmp(err.msg, want, strlen(want)), 0);
    assert_one_line(err.msg);
    assert_memory_equal(&c, &before, sizeof c);

    /* An empty file is a valid config that changes nothing. */
    work_file("empty.ini", "", path, sizeof path);
    assert_int_equal(mg_config_load(&c, path, &err), 0);
    assert_memory_equal(&c, &before, sizeof c);
}

static void test_load_string_errors_name_source(void **state)
{
    (void)state;
    mg_config c;
    mg_config_defaults(&c);
    mg_error err = { { 0 } };
    assert_int_equal(mg_config_load_string(&c, "[train]\nbatch = 8\nbatch = 0\n", "run.h5:/config",
                                           &err), -1);
    assert_string_equal(err.msg,
                        "run.h5:/config:3: [train] batch: '0' is out of range (allowed 1..4096)");
}

/* The README's config table documents every key as the table in
 * src/config_keys.c defines it: section, key, default and allowed range
 * exactly, and the meaning starting with the key's own text (the README may
 * say more). A key added, renamed or given another default or range without
 * the README following fails here. */
static void test_readme_documents_every_key(void **state)
{
    (void)state;
    const char *src = getenv("MG_SOURCE_DIR");
    assert_non_null(src);
    char path[4096];
    snprintf(path, sizeof path, "%s/README.md", src);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    const long len = ftell(f);
    assert_true(len > 0);
    rewind(f);
    char *readme = malloc((size_t)len + 1);
    assert_non_null(readme);
    assert_int_equal(fread(readme, 1, (size_t)len, f), (size_t)len);
    readme[len] = '\0';
    fclose(f);
    int missing = 0;
    for (size_t i = 0; i < mg_config_key_count(); i++) {
        const mg_config_key *k = mg_config_key_at(i);
        char row[1024];
        snprintf(row, sizeof row, "\n| %s | `%s` | `%s` | %s | %s", k->section, k->name, k->default_text,
                 k->range_text, k->doc);
        if (!strstr(readme, row)) {
            fprintf(stderr, "README.md lacks the config row beginning '%s'\n", row + 1);
            missing++;
        }
    }
    free(readme);
    assert_int_equal(missing, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_match_distill),
        cmocka_unit_test(test_key_table),
        cmocka_unit_test(test_range_texts_are_enforced),
        cmocka_unit_test(test_format_value),
        cmocka_unit_test(test_load_good_file),
        cmocka_unit_test(test_round_trip_exact),
        cmocka_unit_test(test_set_every_type),
        cmocka_unit_test(test_file_value_errors),
        cmocka_unit_test(test_file_structure_errors),
        cmocka_unit_test(test_set_errors),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_unreadable_files),
        cmocka_unit_test(test_load_string_errors_name_source),
        cmocka_unit_test(test_readme_documents_every_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
