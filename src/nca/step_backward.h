/* The backward step in three parts, for callers that run many steps with the
 * same weights (mg_rollout_backward): _begin prepares the transposed weights
 * w1t, w2t and a transposed copy gw1t of g_params' w1 gradient in the
 * scratch; _run backpropagates one step, adding the w1 gradient into gw1t
 * and the b1, w2 gradients into g_params; _end copies gw1t back into
 * g_params. Each gradient element stays one chain of additions in the same
 * order as with a single mg_step_backward call per step (the copies are
 * exact), so both give the same bits. The scratch's other contents may be
 * reused between the calls (forward recomputation), these three blocks not. */
#ifndef MORPHOGEN_NCA_STEP_BACKWARD_H
#define MORPHOGEN_NCA_STEP_BACKWARD_H

#include "morphogen/nca.h"
#include "real.h"

void MG_FN(mg_step_backward_begin)(const mg_nca_dims *d, const real *params, const real *g_params, void *scratch);
void MG_FN(mg_step_backward_run)(const mg_nca_dims *d, const mg_step_rules *r, const real *params,
                                 const real *s_in, const unsigned char *fire, const unsigned char *alive,
                                 const real *g_out, real *g_in, real *g_params, void *scratch);
void MG_FN(mg_step_backward_end)(const mg_nca_dims *d, real *g_params, void *scratch);

#endif
