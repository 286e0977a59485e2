/* Differentiable rollouts of one sample: forward with a tape, then exact
 * backpropagation through time. See mg_tape in include/morphogen/nca.h. */
#include <stdlib.h>
#include <string.h>

#include "morphogen/nca.h"
#include "morphogen/rng.h"
#include "real.h"
#include "step_backward.h"

struct mg_tape {
    mg_nca_dims d;
    int max_steps;
    int every;              /* a state is saved every `every` steps */
    int steps;              /* length of the recorded rollout */
    real *s0;               /* [cells][C] initial state, dense */
    real *packed;           /* saved states t = j*every (j >= 1), alive cells only */
    size_t *offset;         /* [max_steps/every + 1] start of state j in packed */
    unsigned char *alive;   /* [max_steps][cells] mask m of each step */
    unsigned char *fire;    /* [cells] fire mask of the step at hand */
    real *segment;          /* [max(every,2)][cells][C] recomputed states */
    real *grad_a, *grad_b;  /* [cells][C] gradient ping-pong */
    void *scratch;
    size_t packed_used;
};

static size_t state_len(const mg_nca_dims *d) { return (size_t)mg_cells(d) * d->channels; }

mg_tape *MG_FN(mg_tape_create)(const mg_nca_dims *d, int max_steps, int checkpoint_steps)
{
    mg_tape *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->d = *d;
    t->max_steps = max_steps;
    t->every = checkpoint_steps > 1 ? checkpoint_steps : 1;
    const size_t n = state_len(d), cells = (size_t)mg_cells(d);
    const size_t saved = (size_t)max_steps / t->every + 1;
    const size_t segment_states = t->every > 2 ? (size_t)t->every : 2;
    t->s0 = malloc(sizeof(real) * n);
    /* Worst case (every cell alive) is reserved; pages are only touched, and
     * so only become resident, as far as the alive cells reach. */
    t->packed = malloc(sizeof(real) * n * saved);
    t->offset = malloc(sizeof(size_t) * (saved + 1));
    t->alive = malloc(cells * (size_t)max_steps);
    t->fire = malloc(cells);
    t->segment = malloc(sizeof(real) * n * segment_states);
    t->grad_a = malloc(sizeof(real) * n);
    t->grad_b = malloc(sizeof(real) * n);
    t->scratch = malloc(mg_nca_scratch_bytes(d));
    if (!t->s0 || !t->packed || !t->offset || !t->alive || !t->fire || !t->segment || !t->grad_a ||
        !t->grad_b || !t->scratch) {
        MG_FN(mg_tape_destroy)(t);
        return NULL;
    }
    return t;
}

void MG_FN(mg_tape_destroy)(mg_tape *t)
{
    if (!t)
        return;
    free(t->s0);
    free(t->packed);
    free(t->offset);
    free(t->alive);
    free(t->fire);
    free(t->segment);
    free(t->grad_a);
    free(t->grad_b);
    free(t->scratch);
    free(t);
}

size_t MG_FN(mg_tape_bytes_used)(const mg_tape *t)
{
    const size_t n = state_len(&t->d), cells = (size_t)mg_cells(&t->d);
    const size_t segment_states = t->every > 2 ? (size_t)t->every : 2;
    return sizeof(real) * (t->packed_used + n * (3 + segment_states)) + cells * ((size_t)t->steps + 1);
}

static void fire_mask(const mg_tape *t, const mg_step_rules *r, const mg_rollout_key *key, int step)
{
    mg_fire_mask(key->seed, key->iteration, key->sample, (uint32_t)step, r->fire_threshold,
                 mg_cells(&t->d), t->fire);
}

/* Save state `s` of step `step` (a multiple of every, > 0): only the cells
 * that the previous step's mask kept alive can be non-zero. */
static void save_state(mg_tape *t, int step, const real *s)
{
    const int C = t->d.channels, cells = mg_cells(&t->d);
    const size_t j = (size_t)(step / t->every);
    const unsigned char *alive = t->alive + (size_t)(step - 1) * cells;
    real *out = t->packed + t->offset[j];
    size_t used = 0;
    for (int cell = 0; cell < cells; cell++)
        if (alive[cell]) {
            memcpy(out + used, s + (size_t)cell * C, sizeof(real) * C);
            used += C;
        }
    t->offset[j + 1] = t->offset[j] + used;
    t->packed_used = t->offset[j + 1];
}

static void load_state(const mg_tape *t, int step, real *s)
{
    if (step == 0) {
        memcpy(s, t->s0, sizeof(real) * state_len(&t->d));
        return;
    }
    const int C = t->d.channels, cells = mg_cells(&t->d);
    const unsigned char *alive = t->alive + (size_t)(step - 1) * cells;
    const real *in = t->packed + t->offset[step / t->every];
    for (int cell = 0; cell < cells; cell++) {
        if (alive[cell]) {
            memcpy(s + (size_t)cell * C, in, sizeof(real) * C);
            in += C;
        } else {
            memset(s + (size_t)cell * C, 0, sizeof(real) * C);
        }
    }
}

int MG_FN(mg_rollout_forward)(mg_tape *t, const mg_step_rules *r, const mg_rollout_key *key,
                              const real *params, int steps, const real *s0, real *s_final)
{
    if (steps < 0 || steps > t->max_steps)
        return -1;
    const size_t n = state_len(&t->d), cells = (size_t)mg_cells(&t->d);
    t->steps = steps;
    memcpy(t->s0, s0, sizeof(real) * n);
    t->offset[0] = 0;
    t->offset[1] = 0;
    t->packed_used = 0;
    real *cur = t->segment, *next = t->segment + n;
    memcpy(cur, s0, sizeof(real) * n);
    for (int step = 0; step < steps; step++) {
        if (step > 0 && step % t->every == 0)
            save_state(t, step, cur);
        fire_mask(t, r, key, step);
        MG_FN(mg_step_forward)(&t->d, r, params, cur, t->fire, next, t->alive + (size_t)step * cells,
                               t->scratch);
        real *swap = cur;
        cur = next;
        next = swap;
    }
    memcpy(s_final, cur, sizeof(real) * n);
    return 0;
}

void MG_FN(mg_rollout_backward)(mg_tape *t, const mg_step_rules *r, const mg_rollout_key *key,
                                const real *params, const real *g_final, real *g_s0, real *g_params)
{
    const size_t n = state_len(&t->d), cells = (size_t)mg_cells(&t->d);
    real *g = t->grad_a, *g_prev = t->grad_b;
    memcpy(g, g_final, sizeof(real) * n);
    MG_FN(mg_step_backward_begin)(&t->d, params, g_params, t->scratch);
    if (t->steps > 0) {
        const int last_segment = (t->steps - 1) / t->every;
        for (int j = last_segment; j >= 0; j--) {
            const int first = j * t->every;
            const int end = first + t->every < t->steps ? first + t->every : t->steps;
            /* Recompute the segment's states from its saved start. */
            load_state(t, first, t->segment);
            for (int step = first; step + 1 < end; step++) {
                fire_mask(t, r, key, step);
                MG_FN(mg_step_forward)(&t->d, r, params, t->segment + (size_t)(step - first) * n, t->fire,
                                       t->segment + (size_t)(step + 1 - first) * n, NULL, t->scratch);
            }
            for (int step = end - 1; step >= first; step--) {
                fire_mask(t, r, key, step);
                MG_FN(mg_step_backward_run)(&t->d, r, params, t->segment + (size_t)(step - first) * n, t->fire,
                                            t->alive + (size_t)step * cells, g, g_prev, g_params, t->scratch);
                real *swap = g;
                g = g_prev;
                g_prev = swap;
            }
        }
    }
    MG_FN(mg_step_backward_end)(&t->d, g_params, t->scratch);
    if (g_s0)
        memcpy(g_s0, g, sizeof(real) * n);
}
