/* Gradient reduction, normalisation and Adam. */
#include <math.h>
#include <string.h>

#include "morphogen/optimizer.h"
#include "morphogen/rng.h"

void mg_tree_sum(float *grads, int n, int64_t len)
{
    for (int stride = 1; stride < n; stride *= 2)
        for (int i = 0; i + stride < n; i += 2 * stride) {
            float *restrict a = grads + (size_t)i * len;
            const float *restrict b = grads + (size_t)(i + stride) * len;
            for (int64_t j = 0; j < len; j++)
                a[j] += b[j];
        }
}

void mg_grad_norms(const float *grad, const mg_tensor_desc *tensors, int n_tensors, double *norms)
{
    for (int k = 0; k < n_tensors; k++) {
        const float *g = grad + tensors[k].offset;
        double sum = 0;
        for (int64_t i = 0; i < tensors[k].size; i++)
            sum += (double)g[i] * g[i];
        norms[k] = sqrt(sum);
    }
}

float mg_grad_scale(double norm) { return (float)(1.0 / (norm + 1e-8)); }

void mg_grad_scale_tensors(float *grad, const mg_tensor_desc *tensors, int n_tensors, const double *norms)
{
    for (int k = 0; k < n_tensors; k++) {
        float *g = grad + tensors[k].offset;
        const float scale = mg_grad_scale(norms[k]);
        for (int64_t i = 0; i < tensors[k].size; i++)
            g[i] *= scale;
    }
}

double mg_lr_at(const mg_config *cfg, int64_t iteration)
{
    double lr = cfg->lr;
    for (int i = 0; i < cfg->n_lr_steps; i++)
        if (iteration > cfg->lr_steps[i])
            lr *= cfg->lr_factor;
    return lr;
}

mg_adam_coef mg_adam_coefficients(const mg_config *cfg, double lr, int64_t step)
{
    const double c1 = 1.0 - pow(cfg->beta1, (double)step), c2 = 1.0 - pow(cfg->beta2, (double)step);
    return (mg_adam_coef){
        .b1 = (float)cfg->beta1,
        .b2 = (float)cfg->beta2,
        .step_size = (float)(lr / c1),
        .inv_sqrt_c2 = (float)(1.0 / sqrt(c2)),
        .eps = (float)cfg->adam_eps,
        .decay = (float)(lr * cfg->weight_decay),
    };
}

void mg_adam_update(const mg_config *cfg, double lr, int64_t step, float *params, float *m, float *v,
                    const float *grad, int64_t n)
{
    const mg_adam_coef a = mg_adam_coefficients(cfg, lr, step);
    const float b1 = a.b1, b2 = a.b2, step_size = a.step_size, inv_sqrt_c2 = a.inv_sqrt_c2, eps = a.eps,
                decay = a.decay;
    for (int64_t i = 0; i < n; i++) {
        const float g = grad[i];
        m[i] = b1 * m[i] + (1 - b1) * g;
        v[i] = b2 * v[i] + (1 - b2) * g * g;
        float p = params[i] - decay * params[i];
        p -= step_size * m[i] / (sqrtf(v[i]) * inv_sqrt_c2 + eps);
        params[i] = p;
    }
}

void mg_params_init(uint64_t seed, const mg_tensor_desc *tensors, int n_tensors, float *params)
{
    for (int k = 0; k < n_tensors; k++) {
        float *p = params + tensors[k].offset;
        if (strcmp(tensors[k].name, "w1") != 0) {
            /* b1 starts at zero; w2 starts at zero so the first updates are
             * zero (do-nothing initial behaviour, as in Distill). */
            memset(p, 0, sizeof(float) * (size_t)tensors[k].size);
            continue;
        }
        const double limit = sqrt(6.0 / (double)(tensors[k].dims[0] + tensors[k].dims[1]));
        for (int64_t i = 0; i < tensors[k].size; i++)
            p[i] = (float)(limit * (2.0 * mg_rng_uniform(seed, MG_RNG_INIT, 0, (uint32_t)k, 0, (uint32_t)i) - 1.0));
    }
}
