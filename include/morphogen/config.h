/* Run configuration: every number of the model and the training recipe.
 * Defaults follow Distill's "Growing Neural Cellular Automata" (growing
 * recipe, lizard target). Loaded from INI files (libinih) and overridden with
 * `--set section.key=value`; each key is validated against its range. */
#ifndef MORPHOGEN_CONFIG_H
#define MORPHOGEN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "morphogen/error.h"

#define MG_MAX_TARGETS 8
#define MG_MAX_LR_STEPS 16
#define MG_SPEC_LEN 512

typedef struct mg_config {
    /* [model] */
    int channels;          /* C: state channels (RGBA + hidden), 4..128, default 16 */
    int hidden;            /* H: hidden units of the update MLP, 1..1024, default 128 */
    double fire_rate;      /* probability a cell applies its update, (0,1], default 0.5 */
    double alive_threshold;/* alive if max alpha in 3x3 > this, [0,1), default 0.1 */

    /* [target] */
    int n_targets;                          /* number of entries in spec, 1..MG_MAX_TARGETS */
    char spec[MG_MAX_TARGETS][MG_SPEC_LEN]; /* "emoji:🦎", "emoji:U+1F98E" or a PNG path;
                                              key `spec`, comma separated list; default emoji:🦎 */
    int size;              /* target resized to size x size (area averaging), 4..1024, default 40 */
    int padding;           /* empty margin around the target, 0..1024, default 16 */

    /* [seed] */
    int seed_x, seed_y;    /* seed cell; -1 = centre of the grid; default -1 */
    int pin_seed;          /* bool: seed cell forced alive every step, default false */

    /* [train] */
    uint64_t seed;         /* run seed keying every random decision, default 1 */
    int iterations;        /* total training iterations, 1..10^9, default 8000 */
    int pool_size;         /* P, 1..10^6, default 1024 */
    int batch;             /* B, 1..4096, <= pool_size, default 8 */
    int replace_worst;     /* highest-loss samples replaced by the seed, 0..batch, default 1 */
    int damage;            /* lowest-loss samples damaged by a disc, 0..batch, default 0 */
    double damage_radius_min; /* disc radius as a fraction of the grid size, default 0.1 */
    double damage_radius_max; /* default 0.4 */
    int steps_min, steps_max; /* rollout length uniform in [min,max], default 64, 96 */
    double lr;             /* Adam learning rate, default 2e-3 */
    int n_lr_steps;                       /* entries in lr_steps */
    int lr_steps[MG_MAX_LR_STEPS];        /* iterations at which lr is multiplied by
                                             lr_factor; key `lr_steps`, comma list, default 2000 */
    double lr_factor;      /* default 0.1 */
    double beta1, beta2;   /* Adam moments, default 0.9, 0.999 */
    double adam_eps;       /* default 1e-8 */
    double weight_decay;   /* decoupled (AdamW) weight decay, default 0 */
    int grad_normalize;    /* bool: per-tensor L2 gradient normalisation, default true */
    int checkpoint_steps;  /* BPTT checkpointing: store every k-th state, recompute the
                              rest; 0 = store every step (default) */

    /* [run] */
    char backend[32];      /* "cpu" (default) */
    int matmul_tf32;       /* run.matmul: 0 = "fp32" (default), 1 = "tf32" (tensor cores,
                              cuda backend only) */
    int threads;           /* OpenMP threads, 0 = OMP default, default 0 */
    int checkpoint_every;  /* iterations between run-file checkpoints, default 500 */
    int log_every;         /* iterations between plain progress lines (non-tty), default 50 */
    int verify_every;      /* iterations between replica checks across ranks, default 100 */
} mg_config;

void mg_config_defaults(mg_config *cfg);

/* Parse an INI file over the current values of cfg. Errors name the file,
 * the line, the key and the allowed range. */
int mg_config_load(mg_config *cfg, const char *path, mg_error *err);

/* Apply one "section.key=value" override (the `--set` flag). Errors say
 * "--set section.key: ..." with the allowed range. */
int mg_config_set(mg_config *cfg, const char *assignment, mg_error *err);

/* Cross-key checks after all sources are applied (batch <= pool_size,
 * steps_min <= steps_max, ...). `source` names where the config came from. */
int mg_config_validate(const mg_config *cfg, const char *source, mg_error *err);

/* Write the fully resolved config as INI text (every key, canonical form) so
 * that loading it reproduces cfg exactly. Returns malloc'd string. */
char *mg_config_to_ini(const mg_config *cfg);

/* Parse INI text (as stored in a run file); `source` names it in errors. */
int mg_config_load_string(mg_config *cfg, const char *text, const char *source, mg_error *err);

/* Key table, for the README, for run-file attributes and for `--help`. */
typedef enum { MG_KEY_INT, MG_KEY_U64, MG_KEY_DOUBLE, MG_KEY_BOOL, MG_KEY_STRING, MG_KEY_LIST } mg_key_type;

typedef struct mg_config_key {
    const char *section;
    const char *name;
    mg_key_type type;
    const char *default_text;
    const char *range_text;   /* e.g. "4..128" or "(0, 1]" */
    const char *doc;
} mg_config_key;

size_t mg_config_key_count(void);
const mg_config_key *mg_config_key_at(size_t i);
/* Value of key i in cfg, formatted as in the INI file, into buf. */
void mg_config_format_value(const mg_config *cfg, size_t i, char *buf, size_t len);

#endif
