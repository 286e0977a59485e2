/* Loading, overriding, checking and writing the run configuration. The keys
 * themselves (ranges, defaults, value syntax) live in config_keys.c; this
 * file deals with where values come from: INI files and text through
 * libinih, and `--set section.key=value` flags. */
#define _POSIX_C_SOURCE 200809L

#include "morphogen/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_keys.h"

#define PROBLEM_LEN 512
/* Longest canonical value: MG_MAX_TARGETS specs of MG_SPEC_LEN-1 bytes plus separators. */
#define VALUE_LEN (MG_MAX_TARGETS * (MG_SPEC_LEN + 2) + 64)

void mg_config_defaults(mg_config *cfg)
{
    /* Zeroed first so padding and unused array tails are equal between
     * configs, which keeps memcmp comparisons meaningful. */
    memset(cfg, 0, sizeof *cfg);
    char problem[PROBLEM_LEN];
    for (size_t i = 0; i < mg_key_def_count(); i++) {
        const mg_key_def *def = mg_key_def_at(i);
        /* A default that does not parse is a bug in the key table, which
         * test_config checks; there is no caller that could handle it. */
        if (mg_key_parse(def, cfg, def->pub.default_text, problem, sizeof problem) != 0)
            abort();
    }
}

/* Parses value into cfg and makes sure mg_config_to_ini can write it on one
 * line that libinih reads back (its line buffer is ini_max_line bytes). */
static int apply_value(const mg_key_def *def, mg_config *cfg, const char *value, char *problem,
                       size_t plen)
{
    if (mg_key_parse(def, cfg, value, problem, plen) != 0)
        return -1;
    size_t prefix = strlen(def->pub.name) + 3; /* "name = " */
    size_t line = prefix + mg_key_format(def, cfg, NULL, 0);
    size_t max_line = ini_max_line > 1 ? (size_t)ini_max_line - 1 : 0;
    if (line > max_line) {
        snprintf(problem, plen, "too long for one config line (at most %zu characters after '%s = ')",
                 max_line > prefix ? max_line - prefix : 0, def->pub.name);
        return -1;
    }
    return 0;
}

/* "model, target, seed, train, run": sections in table order, for messages. */
static void list_sections(char *buf, size_t len)
{
    size_t used = 0;
    const char *prev = NULL;
    buf[0] = '\0';
    for (size_t i = 0; i < mg_key_def_count(); i++) {
        const char *s = mg_key_def_at(i)->pub.section;
        if (prev && !strcmp(prev, s))
            continue;
        int n = snprintf(buf + used, len - used, "%s[%s]", prev ? ", " : "", s);
        if (n < 0 || (size_t)n >= len - used)
            return;
        used += (size_t)n;
        prev = s;
    }
}

static void list_keys(const char *section, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < mg_key_def_count(); i++) {
        const mg_key_def *def = mg_key_def_at(i);
        if (strcmp(def->pub.section, section))
            continue;
        int n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", def->pub.name);
        if (n < 0 || (size_t)n >= len - used)
            return;
        used += (size_t)n;
    }
}

/* ---- INI text through libinih ---- */

/* State of one parse. libinih reports the line of the first error it sees
 * but does not pass line numbers to handlers in the Debian build, so the
 * reader below feeds it one physical line per call and counts them. */
typedef struct {
    const char *p, *end;  /* unread text */
    int lineno;           /* physical line last handed to libinih */
    mg_config *cfg;       /* working copy; committed only if the whole text is good */
    const char *source;   /* file name or run-file label, for messages */
    mg_error *err;
    int err_line;         /* line of the first error we reported; 0 while none */
} ini_parse_state;

static char *read_line(char *str, int num, void *stream)
{
    ini_parse_state *st = stream;
    if (st->err_line || st->p >= st->end)
        return NULL;
    const char *start = st->p;
    const char *nl = memchr(start, '\n', (size_t)(st->end - start));
    const char *stop = nl ? nl : st->end;
    st->p = nl ? nl + 1 : st->end;
    st->lineno++;

    /* Leading blanks are dropped so that libinih never treats an indented
     * line as the continuation of the previous value (its multi-line mode
     * would silently apply the text to the previous key). */
    while (start < stop && isspace((unsigned char)*start))
        start++;
    while (stop > start && isspace((unsigned char)stop[-1]))
        stop--;
    size_t n = (size_t)(stop - start);
    if (memchr(start, '\0', n)) {
        st->err_line = st->lineno;
        mg_fail(st->err, "%s:%d: contains a NUL byte (config files are text)", st->source,
                st->lineno);
        return NULL;
    }
    /* libinih would split a longer line and read the pieces as lines. */
    if (num < 1 || n > (size_t)num - 1) {
        st->err_line = st->lineno;
        mg_fail(st->err, "%s:%d: line too long (at most %d characters)", st->source, st->lineno,
                num - 1);
        return NULL;
    }
    memcpy(str, start, n);
    str[n] = '\0';

    /* libinih only tells handlers about sections that hold keys, so an
     * unknown section header is caught here, on its own line. */
    const char *head = str;
    if (st->lineno == 1 && n >= 3 && !memcmp(head, "\xEF\xBB\xBF", 3))
        head += 3; /* UTF-8 byte order mark, which libinih skips too */
    if (head[0] == '[') {
        const char *close = strchr(head, ']');
        if (close) {
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)(close - head - 1), head + 1);
            if (!mg_key_section_known(name)) {
                char sections[256];
                list_sections(sections, sizeof sections);
                st->err_line = st->lineno;
                mg_fail(st->err, "%s:%d: unknown section [%s] (sections: %s)", st->source,
                        st->lineno, name, sections);
                return NULL;
            }
        }
    }
    return str;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    ini_parse_state *st = user;
    if (st->err_line)
        return 1; /* keep the first error only */
    char listing[512];
    if (section[0] == '\0') {
        list_sections(listing, sizeof listing);
        mg_fail(st->err, "%s:%d: key '%s' is outside any section (put it under one of %s)",
                st->source, st->lineno, name, listing);
        st->err_line = st->lineno;
        return 0;
    }
    if (!mg_key_section_known(section)) {
        /* Normally refused by read_line already; kept so no key of an
         * unknown section is ever reported as merely an unknown key. */
        list_sections(listing, sizeof listing);
        mg_fail(st->err, "%s:%d: unknown section [%s] (sections: %s)", st->source, st->lineno,
                section, listing);
        st->err_line = st->lineno;
        return 0;
    }
    const mg_key_def *def = mg_key_find(section, name);
    if (!def) {
        list_keys(section, listing, sizeof listing);
        mg_fail(st->err, "%s:%d: unknown key '%s' in [%s] (valid keys: %s)", st->source,
                st->lineno, name, section, listing);
        st->err_line = st->lineno;
        return 0;
    }
    char problem[PROBLEM_LEN];
    if (apply_value(def, st->cfg, value, problem, sizeof problem) != 0) {
        mg_fail(st->err, "%s:%d: [%s] %s: '%s' is %s", st->source, st->lineno, section, name,
                value, problem);
        st->err_line = st->lineno;
        return 0;
    }
    return 1;
}

static int parse_text(mg_config *cfg, const char *text, size_t len, const char *source,
                      mg_error *err)
{
    mg_config work;
    memcpy(&work, cfg, sizeof work);
    ini_parse_state st = { text, text + len, 0, &work, source, err, 0 };
    int ret = ini_parse_stream(read_line, &st, on_key, &st);
    /* ret is the first line libinih found wrong: a line it could not parse,
     * or one our handler refused (err_line, already described). */
    if (ret > 0 && (st.err_line == 0 || ret < st.err_line))
        return mg_fail(err, "%s:%d: syntax error (expected [section], key = value or a ; comment)",
                       source, ret);
    if (st.err_line)
        return -1;
    if (ret < 0)
        return mg_fail(err, "%s: out of memory while parsing", source);
    memcpy(cfg, &work, sizeof work);
    return 0;
}

static void describe_errno(int code, char *buf, size_t len)
{
    if (strerror_r(code, buf, len) != 0)
        snprintf(buf, len, "error %d", code);
}

int mg_config_load(mg_config *cfg, const char *path, mg_error *err)
{
    char why[128];
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT)
            return mg_fail(err, "%s: no such file", path);
        describe_errno(errno, why, sizeof why);
        return mg_fail(err, "%s: cannot read: %s", path, why);
    }
    size_t cap = 4096, len = 0;
    char *text = malloc(cap);
    int read_errno = 0;
    while (text) {
        size_t want = cap - len;
        errno = 0;
        size_t got = fread(text + len, 1, want, f);
        len += got;
        if (got < want) {
            /* End of file, or an error such as EISDIR for a directory. */
            if (ferror(f))
                read_errno = errno ? errno : EIO;
            break;
        }
        char *bigger = realloc(text, cap * 2);
        if (!bigger) {
            free(text);
            text = NULL;
            break;
        }
        text = bigger;
        cap *= 2;
    }
    fclose(f);
    if (!text)
        return mg_fail(err, "%s: cannot read: out of memory", path);
    if (read_errno) {
        free(text);
        describe_errno(read_errno, why, sizeof why);
        return mg_fail(err, "%s: cannot read: %s", path, why);
    }
    int rc = parse_text(cfg, text, len, path, err);
    free(text);
    return rc;
}

int mg_config_load_string(mg_config *cfg, const char *text, const char *source, mg_error *err)
{
    return parse_text(cfg, text, strlen(text), source, err);
}

/* ---- --set section.key=value ---- */

int mg_config_set(mg_config *cfg, const char *assignment, mg_error *err)
{
    const char *eq = strchr(assignment, '=');
    const char *dot = eq ? memchr(assignment, '.', (size_t)(eq - assignment)) : NULL;
    if (!eq || !dot || dot == assignment || dot + 1 == eq)
        return mg_fail(err, "--set %s: expected section.key=value", assignment);
    char section[64], name[64], listing[512];
    size_t slen = (size_t)(dot - assignment), nlen = (size_t)(eq - dot - 1);
    /* Longer names cannot be keys; they are reported as unknown below. */
    snprintf(section, sizeof section, "%.*s", (int)slen, assignment);
    snprintf(name, sizeof name, "%.*s", (int)nlen, dot + 1);
    if (slen >= sizeof section || !mg_key_section_known(section)) {
        list_sections(listing, sizeof listing);
        return mg_fail(err, "--set %s: unknown section [%.*s] (sections: %s)", assignment,
                       (int)slen, assignment, listing);
    }
    const mg_key_def *def = nlen < sizeof name ? mg_key_find(section, name) : NULL;
    if (!def) {
        list_keys(section, listing, sizeof listing);
        return mg_fail(err, "--set %s: unknown key '%.*s' in [%s] (valid keys: %s)", assignment,
                       (int)nlen, dot + 1, section, listing);
    }
    mg_config work;
    memcpy(&work, cfg, sizeof work);
    char problem[PROBLEM_LEN];
    if (apply_value(def, &work, eq + 1, problem, sizeof problem) != 0)
        return mg_fail(err, "--set %s: %s", assignment, problem);
    memcpy(cfg, &work, sizeof work);
    return 0;
}

/* ---- cross-key checks ---- */

int mg_config_validate(const mg_config *cfg, const char *source, mg_error *err)
{
    /* Each key's own range, by re-reading its canonical text: a config
     * built or edited in code gets exactly the checks a file gets. */
    char value[VALUE_LEN];
    mg_config scratch;
    memcpy(&scratch, cfg, sizeof scratch);
    for (size_t i = 0; i < mg_key_def_count(); i++) {
        const mg_key_def *def = mg_key_def_at(i);
        char problem[PROBLEM_LEN];
        mg_key_format(def, cfg, value, sizeof value);
        if (apply_value(def, &scratch, value, problem, sizeof problem) != 0)
            return mg_fail(err, "%s: %s.%s: '%s' is %s", source, def->pub.section,
                           def->pub.name, value, problem);
    }
    if (cfg->batch > cfg->pool_size)
        return mg_fail(err, "%s: train.batch (%d) must not exceed train.pool_size (%d)", source,
                       cfg->batch, cfg->pool_size);
    if (cfg->replace_worst + cfg->damage > cfg->batch)
        return mg_fail(err,
                       "%s: train.replace_worst (%d) + train.damage (%d) must not exceed "
                       "train.batch (%d)",
                       source, cfg->replace_worst, cfg->damage, cfg->batch);
    if (cfg->steps_min > cfg->steps_max)
        return mg_fail(err, "%s: train.steps_min (%d) must not exceed train.steps_max (%d)",
                       source, cfg->steps_min, cfg->steps_max);
    if (cfg->damage_radius_min > cfg->damage_radius_max)
        return mg_fail(err,
                       "%s: train.damage_radius_min (%g) must not exceed "
                       "train.damage_radius_max (%g)",
                       source, cfg->damage_radius_min, cfg->damage_radius_max);
    int grid = cfg->size + 2 * cfg->padding;
    const struct { const char *key; int v; } seeds[] = { { "seed.x", cfg->seed_x },
                                                         { "seed.y", cfg->seed_y } };
    for (size_t i = 0; i < 2; i++)
        if (seeds[i].v != -1 && seeds[i].v >= grid)
            return mg_fail(err,
                           "%s: %s (%d) must be -1 (the centre) or inside the grid 0..%d "
                           "(target.size + 2 * target.padding = %d)",
                           source, seeds[i].key, seeds[i].v, grid - 1, grid);
    if (cfg->matmul_tf32 && strcmp(cfg->backend, "cuda") != 0)
        return mg_fail(err,
                       "%s: run.matmul: 'tf32' needs run.backend = cuda (the %s backend "
                       "computes in fp32)",
                       source, cfg->backend);
    return 0;
}

/* ---- writing ---- */

char *mg_config_to_ini(const mg_config *cfg)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    if (!out)
        return NULL;
    const char *section = NULL;
    for (size_t i = 0; i < mg_key_def_count(); i++) {
        const mg_key_def *def = mg_key_def_at(i);
        if (!section || strcmp(section, def->pub.section)) {
            fprintf(out, "%s[%s]\n", section ? "\n" : "", def->pub.section);
            section = def->pub.section;
        }
        size_t n = mg_key_format(def, cfg, NULL, 0);
        char *value = malloc(n + 1);
        if (!value) {
            fclose(out);
            free(text);
            return NULL;
        }
        mg_key_format(def, cfg, value, n + 1);
        fprintf(out, "%s = %s\n", def->pub.name, value);
        free(value);
    }
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
