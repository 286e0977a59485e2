/* The config key table and the strict per-key value parser/formatter.
 * Keeping parse and format next to the table means a key's range text, its
 * check and its canonical form cannot drift apart. */
#define _POSIX_C_SOURCE 200809L

#include "config_keys.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define INT_KEY(sec, nm, field, def, lo_, hi_, range, doc)                                   \
    { { sec, nm, MG_KEY_INT, def, range, doc }, MG_STORE_INT, offsetof(mg_config, field),    \
      lo_, hi_, 0, 0, NULL, NULL }
#define DBL_KEY(sec, nm, field, def, lo_, lo_open_, hi_, hi_open_, range, doc)               \
    { { sec, nm, MG_KEY_DOUBLE, def, range, doc }, MG_STORE_DOUBLE,                          \
      offsetof(mg_config, field), lo_, hi_, lo_open_, hi_open_, NULL, NULL }
#define BOOL_KEY(sec, nm, field, def, doc)                                                   \
    { { sec, nm, MG_KEY_BOOL, def, "true or false", doc }, MG_STORE_BOOL,                    \
      offsetof(mg_config, field), 0, 1, 0, 0, NULL, NULL }
/* A string key whose value is one of names; stored by STORE. */
#define NAME_KEY(sec, nm, store, field, names_, what_, def, range, doc)                      \
    { { sec, nm, MG_KEY_STRING, def, range, doc }, store, offsetof(mg_config, field), 0, 0,  \
      0, 0, names_, what_ }

#define MG_STR_(x) #x
#define MG_STR(x) MG_STR_(x)

/* The lizard emoji, spelled as UTF-8 bytes so the source file's encoding
 * does not matter. */
#define MG_LIZARD "\xF0\x9F\xA6\x8E"

static const char *const backends[] = { "cpu", "cuda", NULL };
static const char *const matmuls[] = { "fp32", "tf32", NULL }; /* index = matmul_tf32 */

/* Every key, in the order mg_config_to_ini writes them. Defaults are the
 * Distill "Growing NCA" recipe; mg_config_defaults parses default_text, so
 * the table is the one source of the defaults. */
static const mg_key_def key_table[] = {
    INT_KEY("model", "channels", channels, "16", 4, 128, "4..128",
            "state channels per cell: RGBA plus hidden channels"),
    INT_KEY("model", "hidden", hidden, "128", 1, 1024, "1..1024",
            "hidden units of the per-cell update MLP"),
    DBL_KEY("model", "fire_rate", fire_rate, "0.5", 0, 1, 1, 0, "(0, 1]",
            "probability that a cell applies its update in a step"),
    DBL_KEY("model", "alive_threshold", alive_threshold, "0.1", 0, 0, 1, 1, "[0, 1)",
            "a cell is alive when the largest alpha in its 3x3 neighbourhood exceeds this"),

    { { "target", "spec", MG_KEY_LIST, "emoji:" MG_LIZARD, "1.." MG_STR(MG_MAX_TARGETS) " entries",
        "comma-separated targets: emoji:CHAR, emoji:U+XXXX or a PNG path" },
      MG_STORE_SPECS, 0, 1, MG_MAX_TARGETS, 0, 0, NULL, NULL },
    INT_KEY("target", "size", size, "40", 4, 1024, "4..1024",
            "the target is resized to size x size pixels (area averaging)"),
    INT_KEY("target", "padding", padding, "16", 0, 1024, "0..1024",
            "empty margin around the target; the grid side is size + 2 * padding"),

    INT_KEY("seed", "x", seed_x, "-1", -1, 4095, "-1 or 0..4095",
            "seed cell column, inside the grid; -1 = centre of the grid"),
    INT_KEY("seed", "y", seed_y, "-1", -1, 4095, "-1 or 0..4095",
            "seed cell row, inside the grid; -1 = centre of the grid"),
    BOOL_KEY("seed", "pin", pin_seed, "false", "force the seed cell alive at every step"),

    { { "train", "seed", MG_KEY_U64, "1", "0..18446744073709551615",
        "run seed; keys every random decision of the run" },
      MG_STORE_U64, offsetof(mg_config, seed), 0, 0, 0, 0, NULL, NULL },
    INT_KEY("train", "iterations", iterations, "8000", 1, 1000000000, "1..1000000000",
            "total training iterations"),
    INT_KEY("train", "pool_size", pool_size, "1024", 1, 1000000, "1..1000000",
            "samples in the training pool"),
    INT_KEY("train", "batch", batch, "8", 1, 4096, "1..4096",
            "pool samples per iteration; at most pool_size"),
    INT_KEY("train", "replace_worst", replace_worst, "1", 0, 4096, "0..4096",
            "highest-loss samples of a batch replaced by the seed; replace_worst + damage "
            "at most batch"),
    INT_KEY("train", "damage", damage, "0", 0, 4096, "0..4096",
            "lowest-loss samples of a batch damaged by a disc (regeneration training)"),
    DBL_KEY("train", "damage_radius_min", damage_radius_min, "0.1", 0, 1, 1, 0, "(0, 1]",
            "smallest damage disc radius, in units of half the grid side (Distill's normalised coordinates)"),
    DBL_KEY("train", "damage_radius_max", damage_radius_max, "0.4", 0, 1, 1, 0, "(0, 1]",
            "largest damage disc radius, in units of half the grid side; at least "
            "damage_radius_min"),
    INT_KEY("train", "steps_min", steps_min, "64", 1, 100000, "1..100000",
            "shortest rollout (CA steps per iteration, drawn uniformly)"),
    INT_KEY("train", "steps_max", steps_max, "96", 1, 100000, "1..100000",
            "longest rollout; at least steps_min"),
    DBL_KEY("train", "lr", lr, "0.002", 0, 1, 10, 0, "(0, 10]", "Adam learning rate"),
    { { "train", "lr_steps", MG_KEY_LIST, "2000",
        "0.." MG_STR(MG_MAX_LR_STEPS) " strictly increasing integers in 1..1000000000",
        "comma-separated iterations at which lr is multiplied by lr_factor; empty for none" },
      MG_STORE_LR_STEPS, 0, 1, 1000000000, 0, 0, NULL, NULL },
    DBL_KEY("train", "lr_factor", lr_factor, "0.1", 0, 1, 1, 0, "(0, 1]",
            "factor applied to lr at each of lr_steps"),
    DBL_KEY("train", "beta1", beta1, "0.9", 0, 0, 1, 1, "[0, 1)", "Adam first-moment decay"),
    DBL_KEY("train", "beta2", beta2, "0.999", 0, 0, 1, 1, "[0, 1)",
            "Adam second-moment decay"),
    DBL_KEY("train", "adam_eps", adam_eps, "1e-8", 0, 1, 1, 0, "(0, 1]",
            "Adam denominator epsilon"),
    DBL_KEY("train", "weight_decay", weight_decay, "0", 0, 0, 10, 0, "[0, 10]",
            "decoupled (AdamW) weight decay"),
    BOOL_KEY("train", "grad_normalize", grad_normalize, "true",
             "normalise each parameter tensor's gradient to unit L2 norm"),
    INT_KEY("train", "checkpoint_steps", checkpoint_steps, "0", 0, 100000, "0..100000",
            "backprop-through-time memory saving: keep every k-th state and recompute the "
            "rest; 0 = keep every state"),

    NAME_KEY("run", "backend", MG_STORE_BACKEND, backend, backends, "backend", "cpu",
             "cpu or cuda", "compute backend"),
    NAME_KEY("run", "matmul", MG_STORE_CHOICE, matmul_tf32, matmuls, "precision", "fp32",
             "fp32 or tf32",
             "precision of the MLP's matrix products on the GPU: fp32 (FMA, the CPU reference's "
             "arithmetic) or tf32 (tensor cores: inputs rounded to 10-bit mantissas, fp32 "
             "accumulation; cuda backend only, on compute capability 8.0 or newer)"),
    INT_KEY("run", "threads", threads, "0", 0, 1024, "0..1024",
            "OpenMP threads; 0 = OpenMP's default"),
    INT_KEY("run", "checkpoint_every", checkpoint_every, "500", 1, 1000000000,
            "1..1000000000", "iterations between checkpoints written to the run file"),
    INT_KEY("run", "log_every", log_every, "50", 1, 1000000000, "1..1000000000",
            "iterations between progress lines when stderr is not a terminal"),
    INT_KEY("run", "verify_every", verify_every, "100", 1, 1000000000, "1..1000000000",
            "iterations between checks that every rank holds bit-identical weights (multi-rank "
            "runs; every checkpoint is checked as well)"),
};

#define KEY_COUNT (sizeof key_table / sizeof key_table[0])

size_t mg_key_def_count(void) { return KEY_COUNT; }

const mg_key_def *mg_key_def_at(size_t i) { return i < KEY_COUNT ? &key_table[i] : NULL; }

const mg_key_def *mg_key_find(const char *section, const char *name)
{
    for (size_t i = 0; i < KEY_COUNT; i++)
        if (!strcmp(key_table[i].pub.section, section) && !strcmp(key_table[i].pub.name, name))
            return &key_table[i];
    return NULL;
}

int mg_key_section_known(const char *section)
{
    for (size_t i = 0; i < KEY_COUNT; i++)
        if (!strcmp(key_table[i].pub.section, section))
            return 1;
    return 0;
}

size_t mg_config_key_count(void) { return KEY_COUNT; }

const mg_config_key *mg_config_key_at(size_t i)
{
    return i < KEY_COUNT ? &key_table[i].pub : NULL;
}

void mg_config_format_value(const mg_config *cfg, size_t i, char *buf, size_t len)
{
    if (i < KEY_COUNT)
        mg_key_format(&key_table[i], cfg, buf, len);
    else if (len > 0)
        buf[0] = '\0';
}

/* ---- number parsing: the whole string must be the number ---- */

/* 0: ok; -1: not an integer; -2: does not fit in long long. */
static int parse_integer(const char *s, long long *out)
{
    /* strtoll would skip leading blanks; a value is never allowed to have them. */
    const char *digits = (*s == '+' || *s == '-') ? s + 1 : s;
    if (!isdigit((unsigned char)*digits))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0')
        return -1;
    if (errno == ERANGE)
        return -2;
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    /* Only digits: strtoull would accept "-1" and wrap it around. */
    if (!isdigit((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0')
        return -1;
    if (errno == ERANGE)
        return -2;
    *out = (uint64_t)v;
    return 0;
}

/* 0: ok; -1: not a number; -2: not finite. */
static int parse_double(const char *s, double *out)
{
    if (*s == '\0' || isspace((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end != '\0')
        return -1;
    if (!isfinite(v))
        return -2; /* "nan", "inf", or an overflow such as 1e999 */
    *out = v;
    return 0;
}

static int in_bounds(const mg_key_def *def, double v)
{
    if (def->lo_open ? !(v > def->lo) : !(v >= def->lo))
        return 0;
    if (def->hi_open ? !(v < def->hi) : !(v <= def->hi))
        return 0;
    return 1;
}

/* Shortest "%.*g" text that strtod turns back into exactly v. */
static size_t format_double(double v, char *buf, size_t len)
{
    char tmp[64];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        double back = strtod(tmp, NULL);
        if (memcmp(&back, &v, sizeof v) == 0 || prec == 17)
            break;
    }
    return (size_t)snprintf(buf, len, "%s", tmp);
}

static int parse_bool(const char *s, int *out)
{
    static const char *const yes[] = { "true", "yes", "on", "1" };
    static const char *const no[] = { "false", "no", "off", "0" };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (!strcasecmp(s, yes[i])) {
            *out = 1;
            return 0;
        }
        if (!strcasecmp(s, no[i])) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* The index of value in the key's names, or -1 with problem filled. */
static int parse_name(const mg_key_def *def, const char *value, char *problem, size_t plen)
{
    for (int i = 0; def->names[i]; i++)
        if (!strcmp(value, def->names[i]))
            return i;
    snprintf(problem, plen, "not a known %s (allowed %s)", def->what, def->pub.range_text);
    return -1;
}

/* ---- lists ---- */

/* Splits a comma list in place, trimming blanks around each entry.
 * Returns the entry count (an empty or all-blank text has none), or -1 when
 * there are more than max entries. */
static int split_list(char *text, char **entries, int max)
{
    char *p = text;
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '\0')
        return 0;
    int n = 0;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        while (isspace((unsigned char)*p))
            p++;
        char *end = p + strlen(p);
        while (end > p && isspace((unsigned char)end[-1]))
            *--end = '\0';
        if (n == max)
            return -1;
        entries[n++] = p;
        if (!comma)
            return n;
        p = comma + 1;
    }
}

static int count_entries(const char *text)
{
    int n = 1;
    for (; *text; text++)
        n += *text == ',';
    return n;
}

/* Text that INI files cannot carry back unchanged is refused up front, so
 * that every accepted value survives mg_config_to_ini and a reload. */
static const char *string_problem(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            return "a control character";
        if (c == ';')
            return "';' (it starts an INI comment)";
    }
    return NULL;
}

static int parse_specs(const mg_key_def *def, mg_config *cfg, const char *value, char *problem,
                       size_t plen)
{
    char *copy = strdup(value);
    char *entries[MG_MAX_TARGETS];
    if (!copy) {
        snprintf(problem, plen, "too large to copy (out of memory)");
        return -1;
    }
    int n = split_list(copy, entries, MG_MAX_TARGETS);
    int rc = -1;
    if (n < 0) {
        snprintf(problem, plen, "a list of %d entries (allowed %s)", count_entries(value),
                 def->pub.range_text);
        goto out;
    }
    if (n == 0) {
        snprintf(problem, plen, "an empty list (allowed %s)", def->pub.range_text);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        const char *bad = string_problem(entries[i]);
        if (entries[i][0] == '\0') {
            snprintf(problem, plen, "a list whose entry %d is empty", i + 1);
            goto out;
        }
        if (bad) {
            snprintf(problem, plen, "a list whose entry %d contains %s", i + 1, bad);
            goto out;
        }
        if (strlen(entries[i]) >= MG_SPEC_LEN) {
            snprintf(problem, plen, "a list whose entry %d is too long (at most %d bytes)", i + 1,
                     MG_SPEC_LEN - 1);
            goto out;
        }
    }
    /* Unused bytes are zeroed so that equal configs compare equal with memcmp. */
    memset(cfg->spec, 0, sizeof cfg->spec);
    for (int i = 0; i < n; i++)
        memcpy(cfg->spec[i], entries[i], strlen(entries[i]) + 1);
    cfg->n_targets = n;
    rc = 0;
out:
    free(copy);
    return rc;
}

static int parse_lr_steps(const mg_key_def *def, mg_config *cfg, const char *value, char *problem,
                          size_t plen)
{
    char *copy = strdup(value);
    char *entries[MG_MAX_LR_STEPS];
    int steps[MG_MAX_LR_STEPS];
    if (!copy) {
        snprintf(problem, plen, "too large to copy (out of memory)");
        return -1;
    }
    int n = split_list(copy, entries, MG_MAX_LR_STEPS);
    int rc = -1;
    if (n < 0) {
        snprintf(problem, plen, "a list of %d entries (allowed %s)", count_entries(value),
                 def->pub.range_text);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        long long v = 0;
        int prc = parse_integer(entries[i], &v);
        if (prc == -1) {
            snprintf(problem, plen, "a list whose entry %d is not an integer (allowed %s)", i + 1,
                     def->pub.range_text);
            goto out;
        }
        if (prc == -2 || !in_bounds(def, (double)v)) {
            snprintf(problem, plen, "a list whose entry %d is out of range (allowed %s)", i + 1,
                     def->pub.range_text);
            goto out;
        }
        if (i > 0 && v <= steps[i - 1]) {
            snprintf(problem, plen, "not strictly increasing at entry %d (allowed %s)", i + 1,
                     def->pub.range_text);
            goto out;
        }
        steps[i] = (int)v;
    }
    memset(cfg->lr_steps, 0, sizeof cfg->lr_steps);
    if (n > 0)
        memcpy(cfg->lr_steps, steps, (size_t)n * sizeof steps[0]);
    cfg->n_lr_steps = n;
    rc = 0;
out:
    free(copy);
    return rc;
}

int mg_key_parse(const mg_key_def *def, mg_config *cfg, const char *value, char *problem,
                 size_t plen)
{
    char *field = (char *)cfg + def->offset;
    const char *range = def->pub.range_text;
    switch (def->store) {
    case MG_STORE_INT: {
        long long v = 0;
        int prc = parse_integer(value, &v);
        if (prc == -1) {
            snprintf(problem, plen, "not an integer (allowed %s)", range);
            return -1;
        }
        if (prc == -2 || !in_bounds(def, (double)v)) {
            snprintf(problem, plen, "out of range (allowed %s)", range);
            return -1;
        }
        int iv = (int)v;
        memcpy(field, &iv, sizeof iv);
        return 0;
    }
    case MG_STORE_U64: {
        uint64_t v = 0;
        int prc = parse_u64(value, &v);
        if (prc == -1) {
            snprintf(problem, plen, "not an unsigned integer (allowed %s)", range);
            return -1;
        }
        if (prc == -2) {
            snprintf(problem, plen, "out of range (allowed %s)", range);
            return -1;
        }
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case MG_STORE_DOUBLE: {
        double v = 0;
        int prc = parse_double(value, &v);
        if (prc == -1) {
            snprintf(problem, plen, "not a number (allowed %s)", range);
            return -1;
        }
        if (prc == -2) {
            snprintf(problem, plen, "not a finite number (allowed %s)", range);
            return -1;
        }
        if (!in_bounds(def, v)) {
            snprintf(problem, plen, "out of range (allowed %s)", range);
            return -1;
        }
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case MG_STORE_BOOL: {
        int v = 0;
        if (parse_bool(value, &v) != 0) {
            snprintf(problem, plen, "not a boolean (allowed true/false, yes/no, on/off, 1/0)");
            return -1;
        }
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case MG_STORE_BACKEND: {
        int i = parse_name(def, value, problem, plen);
        if (i < 0)
            return -1;
        /* Names are far shorter than the field; zero the rest for memcmp. */
        memset(cfg->backend, 0, sizeof cfg->backend);
        memcpy(cfg->backend, def->names[i], strlen(def->names[i]) + 1);
        return 0;
    }
    case MG_STORE_CHOICE: {
        int i = parse_name(def, value, problem, plen);
        if (i < 0)
            return -1;
        memcpy(field, &i, sizeof i);
        return 0;
    }
    case MG_STORE_SPECS:
        return parse_specs(def, cfg, value, problem, plen);
    case MG_STORE_LR_STEPS:
        return parse_lr_steps(def, cfg, value, problem, plen);
    }
    snprintf(problem, plen, "of an unknown kind (internal error)");
    return -1;
}

/* snprintf-style appender that keeps counting past the end of buf. */
typedef struct {
    char *buf;
    size_t len, used;
} text_out;

static void out_str(text_out *o, const char *s)
{
    size_t n = strlen(s);
    if (o->used < o->len) {
        size_t room = o->len - o->used - 1;
        size_t copy = n < room ? n : room;
        memcpy(o->buf + o->used, s, copy);
        o->buf[o->used + copy] = '\0';
    }
    o->used += n;
}

size_t mg_key_format(const mg_key_def *def, const mg_config *cfg, char *buf, size_t len)
{
    const char *field = (const char *)cfg + def->offset;
    text_out o = { buf, len, 0 };
    char num[64];
    if (len > 0)
        buf[0] = '\0';
    switch (def->store) {
    case MG_STORE_INT: {
        int v;
        memcpy(&v, field, sizeof v);
        snprintf(num, sizeof num, "%d", v);
        out_str(&o, num);
        break;
    }
    case MG_STORE_U64: {
        uint64_t v;
        memcpy(&v, field, sizeof v);
        snprintf(num, sizeof num, "%" PRIu64, v);
        out_str(&o, num);
        break;
    }
    case MG_STORE_DOUBLE: {
        double v;
        memcpy(&v, field, sizeof v);
        format_double(v, num, sizeof num);
        out_str(&o, num);
        break;
    }
    case MG_STORE_BOOL: {
        int v;
        memcpy(&v, field, sizeof v);
        out_str(&o, v ? "true" : "false");
        break;
    }
    case MG_STORE_BACKEND: {
        /* Bounded copy: a caller-built config may lack the terminator. */
        char name[sizeof cfg->backend + 1];
        memcpy(name, cfg->backend, sizeof cfg->backend);
        name[sizeof cfg->backend] = '\0';
        out_str(&o, name);
        break;
    }
    case MG_STORE_CHOICE: {
        /* An index outside names (a config edited in code) is written as
         * the number, which validation then refuses by name. */
        int v, n = 0;
        memcpy(&v, field, sizeof v);
        while (def->names[n])
            n++;
        if (v >= 0 && v < n) {
            out_str(&o, def->names[v]);
        } else {
            snprintf(num, sizeof num, "%d", v);
            out_str(&o, num);
        }
        break;
    }
    case MG_STORE_SPECS: {
        int n = cfg->n_targets < 0 ? 0 : cfg->n_targets > MG_MAX_TARGETS ? MG_MAX_TARGETS
                                                                          : cfg->n_targets;
        for (int i = 0; i < n; i++) {
            char entry[MG_SPEC_LEN + 1];
            memcpy(entry, cfg->spec[i], MG_SPEC_LEN);
            entry[MG_SPEC_LEN] = '\0';
            if (i > 0)
                out_str(&o, ", ");
            out_str(&o, entry);
        }
        break;
    }
    case MG_STORE_LR_STEPS: {
        int n = cfg->n_lr_steps < 0 ? 0 : cfg->n_lr_steps > MG_MAX_LR_STEPS ? MG_MAX_LR_STEPS
                                                                              : cfg->n_lr_steps;
        for (int i = 0; i < n; i++) {
            snprintf(num, sizeof num, "%s%d", i > 0 ? ", " : "", cfg->lr_steps[i]);
            out_str(&o, num);
        }
        break;
    }
    }
    return o.used;
}
