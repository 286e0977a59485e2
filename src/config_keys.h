/* Private to config.c / config_keys.c: the full description of every config
 * key (the public mg_config_key plus where the value lives in mg_config and
 * how it is checked), and the per-key parse/format used by files, `--set`,
 * validation and mg_config_to_ini alike, so all of them agree. */
#ifndef MORPHOGEN_CONFIG_KEYS_H
#define MORPHOGEN_CONFIG_KEYS_H

#include <stddef.h>

#include "morphogen/config.h"

/* How a key's value is stored in mg_config (finer than mg_key_type: the two
 * list keys and the string keys each store differently). */
typedef enum {
    MG_STORE_INT,
    MG_STORE_U64,
    MG_STORE_DOUBLE,
    MG_STORE_BOOL,
    MG_STORE_BACKEND,  /* char[32], one of names[] */
    MG_STORE_CHOICE,   /* int, the index of the value in names[] */
    MG_STORE_SPECS,    /* n_targets + spec[][] */
    MG_STORE_LR_STEPS  /* n_lr_steps + lr_steps[] */
} mg_key_store;

typedef struct mg_key_def {
    mg_config_key pub;  /* first member: mg_config_key_at returns &def->pub */
    mg_key_store store;
    size_t offset;      /* of the value in mg_config (all but SPECS and LR_STEPS) */
    /* Bounds for INT, DOUBLE and the entries of LR_STEPS. Every integer
     * bound is far below 2^53, so a double holds it exactly. */
    double lo, hi;
    unsigned char lo_open, hi_open; /* 1: bound excluded, as in "(0, 1]" */
    /* BACKEND and CHOICE: the allowed values (NULL-terminated) and what one
     * is called in "'x' is not a known <what>". */
    const char *const *names;
    const char *what;
} mg_key_def;

size_t mg_key_def_count(void);
const mg_key_def *mg_key_def_at(size_t i);
/* NULL when section/name is not a key. */
const mg_key_def *mg_key_find(const char *section, const char *name);
/* 1 if some key lives in this section. */
int mg_key_section_known(const char *section);

/* Parse `value` and store it in cfg. On failure cfg is unchanged and
 * `problem` holds a phrase that reads after "'VALUE' is", e.g.
 * "not an integer (allowed 4..128)". */
int mg_key_parse(const mg_key_def *def, mg_config *cfg, const char *value,
                 char *problem, size_t problem_len);

/* Canonical text of the value (what mg_key_parse reads back bit for bit).
 * Returns the full length, like snprintf. */
size_t mg_key_format(const mg_key_def *def, const mg_config *cfg, char *buf, size_t len);

#endif
