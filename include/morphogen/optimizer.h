/* Gradient reduction, normalisation and the Adam update. */
#ifndef MORPHOGEN_OPTIMIZER_H
#define MORPHOGEN_OPTIMIZER_H

#include <stdint.h>

#include "morphogen/config.h"
#include "morphogen/runfile.h"

/* Sum n gradient vectors grads[0..n-1] (each of length len) into grads[0]
 * with a fixed pairwise tree over the index, so the result depends only on
 * the samples and their order, never on threads or ranks. */
void mg_tree_sum(float *grads, int n, int64_t len);

/* L2 norm of each tensor (squares summed in double, in index order) into norms[]. */
void mg_grad_norms(const float *grad, const mg_tensor_desc *tensors, int n_tensors, double *norms);

/* Distill's normalisation factor of a tensor with L2 norm `norm`: 1 / (norm + 1e-8). */
float mg_grad_scale(double norm);

/* Multiply each tensor by mg_grad_scale(norms[k]). */
void mg_grad_scale_tensors(float *grad, const mg_tensor_desc *tensors, int n_tensors, const double *norms);

/* Learning rate at a 1-based iteration: lr * lr_factor^(number of lr_steps <= iteration - 1). */
double mg_lr_at(const mg_config *cfg, int64_t iteration);

/* The per-step constants of an Adam update, rounded to float as the update
 * uses them (shared with the CUDA kernel so that both round alike). */
typedef struct mg_adam_coef {
    float b1, b2, step_size, inv_sqrt_c2, eps, decay;
} mg_adam_coef;
mg_adam_coef mg_adam_coefficients(const mg_config *cfg, double lr, int64_t step);

/* One Adam step (PyTorch form, bias-corrected) with decoupled weight decay
 * (AdamW): p -= lr * wd * p; p -= lr * m_hat / (sqrt(v_hat) + eps). `step` is
 * the 1-based count of updates including this one. */
void mg_adam_update(const mg_config *cfg, double lr, int64_t step, float *params, float *m, float *v,
                    const float *grad, int64_t n);

/* Glorot-uniform w1, zero b1 and w2, keyed by the run seed. */
void mg_params_init(uint64_t seed, const mg_tensor_desc *tensors, int n_tensors, float *params);

#endif
