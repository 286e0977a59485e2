/* Backend selection by name. */
#include <string.h>

#include "morphogen/backend.h"

mg_backend *mg_backend_create(const mg_config *cfg, const mg_nca_dims *dims, int max_steps, mg_error *err)
{
    if (strcmp(cfg->backend, "cpu") == 0)
        return mg_backend_cpu_create(cfg, dims, max_steps, err);
#ifdef MG_HAVE_CUDA
    if (strcmp(cfg->backend, "cuda") == 0)
        return mg_backend_cuda_create(cfg, dims, max_steps, err);
    mg_fail(err, "run.backend: '%s' is not available in this build (available: cpu, cuda)", cfg->backend);
#else
    if (strcmp(cfg->backend, "cuda") == 0)
        mg_fail(err, "run.backend: 'cuda' is not available: morphogen was built without CUDA (reconfigure with "
                     "-DMORPHOGEN_CUDA=ON where nvcc is installed), use run.backend = cpu");
    else
        mg_fail(err, "run.backend: '%s' is not available in this build (available: cpu)", cfg->backend);
#endif
    return NULL;
}

void mg_backend_destroy(mg_backend *be)
{
    if (be)
        be->ops->destroy(be);
}
