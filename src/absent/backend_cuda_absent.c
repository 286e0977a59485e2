/* mg_backend_cuda_create in a build without the CUDA backend (no nvcc, or
 * -DMORPHOGEN_CUDA=OFF): the top-level CMakeLists links this file instead of
 * kernels/, so the dispatch in src/backend.c needs no build switch. */
#include "morphogen/backend.h"

mg_backend *mg_backend_cuda_create(const mg_config *cfg, const mg_nca_dims *dims, int max_steps, const mg_comm *comm,
                                   mg_error *err)
{
    (void)cfg, (void)dims, (void)max_steps, (void)comm;
    mg_fail(err, "run.backend: 'cuda' is not available: morphogen was built without CUDA (reconfigure with "
                 "-DMORPHOGEN_CUDA=ON where nvcc is installed), use run.backend = cpu");
    return NULL;
}
