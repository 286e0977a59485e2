/* Backend selection by name (the config accepts only the names below). */
#include <string.h>

#include "morphogen/backend.h"

mg_backend *mg_backend_create(const mg_config *cfg, const mg_nca_dims *dims, int max_steps, const mg_comm *comm,
                              mg_error *err)
{
    if (strcmp(cfg->backend, "cpu") == 0)
        return mg_backend_cpu_create(cfg, dims, max_steps, err);
    if (strcmp(cfg->backend, "cuda") == 0)
        return mg_backend_cuda_create(cfg, dims, max_steps, comm, err);
    mg_fail(err, "run.backend: '%s' is not a backend (cpu or cuda)", cfg->backend);
    return NULL;
}

void mg_backend_destroy(mg_backend *be)
{
    if (be)
        be->ops->destroy(be);
}
