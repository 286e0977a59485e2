/* Carving of the per-thread scratch buffer used by one NCA step. The size is
 * computed for double (mg_nca_scratch_bytes in src/params.c), so the float
 * build always fits. */
#ifndef MORPHOGEN_NCA_SCRATCH_H
#define MORPHOGEN_NCA_SCRATCH_H

#include "morphogen/nca.h"
#include "real.h"

/* Cells processed together by the dense layers: small enough that a tile's
 * perception and hidden activations stay in L1/L2, large enough to reuse
 * each weight row several times. */
#define MG_TILE MG_NCA_TILE

typedef struct step_scratch {
    unsigned char *pre;   /* [cells] pre-update alive */
    int *active;          /* [cells] cells whose MLP runs */
    real *rowmax;         /* [cells] horizontal 3-max of alpha */
    real *p;              /* [MG_TILE][3C] perception */
    real *z;              /* [MG_TILE][H]  pre-activation */
    real *u;              /* [MG_TILE][C]  update / its gradient */
    real *gz;             /* [MG_TILE][H]  gradient of z */
    real *gp;             /* [MG_TILE][3C] gradient of perception */
    real *r;              /* [MG_TILE][H]  activations relu(z) */
    real *w1t;            /* [H][3C] transposed w1 */
    real *w2t;            /* [C][H]  transposed w2 */
    real *gw1t;           /* [H][K]  the w1 gradient, transposed (step_backward.h) */
} step_scratch;

static inline step_scratch carve_scratch(const mg_nca_dims *d, void *base)
{
    const int cells = mg_cells(d), K = mg_perception_size(d), H = d->hidden, C = d->channels;
    /* Reals first (aligned to 64 bytes by rounding each block), then ints, then bytes. */
    char *at = (char *)base;
#define TAKE(ptr, type, count)                                                   \
    do {                                                                         \
        (ptr) = (type *)at;                                                      \
        at += (((size_t)(count) * sizeof(type) + 63) / 64) * 64;                 \
    } while (0)
    step_scratch s;
    TAKE(s.rowmax, real, cells);
    TAKE(s.p, real, MG_TILE * K);
    TAKE(s.z, real, MG_TILE * H);
    TAKE(s.u, real, MG_TILE * C);
    TAKE(s.gz, real, MG_TILE * H);
    TAKE(s.gp, real, MG_TILE * K);
    TAKE(s.r, real, MG_TILE * H);
    TAKE(s.w1t, real, H * K);
    TAKE(s.w2t, real, C * H);
    TAKE(s.gw1t, real, H * K);
    TAKE(s.active, int, cells);
    TAKE(s.pre, unsigned char, cells);
#undef TAKE
    return s;
}

#endif
