/* NCCL through dlopen (see nccl_exchange.h), with the declarations of
 * nccl_abi.h rather than nccl.h, which keeps this file compilable where only
 * the CUDA emulator exists. */
#define _GNU_SOURCE /* RTLD_NODELETE */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nccl_abi.h"
#include "nccl_exchange.h"

#define MG_NCCL_FIELD(name, field, type) type *field;
struct mg_nccl {
    void *lib;
    mg_nccl_comm_t comm;
    int rank;
    MG_NCCL_FUNCTIONS(MG_NCCL_FIELD)
};
#undef MG_NCCL_FIELD

/* dlsym into a function pointer without a cast between object and function
 * pointers (the POSIX idiom). */
static int resolve(void *lib, const char *name, void *fn_ptr)
{
    void *sym = dlsym(lib, name);
    memcpy(fn_ptr, &sym, sizeof sym);
    return sym != NULL;
}

static mg_nccl *load(char *why, size_t why_len)
{
    const char *path = getenv("MORPHOGEN_NCCL");
    if (!path || !*path)
        path = "libnccl.so.2";
    if (strcmp(path, "none") == 0) {
        snprintf(why, why_len, "MORPHOGEN_NCCL=none");
        return NULL;
    }
    /* Never unmapped: NCCL 2.24+ keeps process-wide threads (RAS) that
     * only its atexit handler stops. */
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!lib) {
        const char *e = dlerror();
        snprintf(why, why_len, "NCCL did not load (%s; set MORPHOGEN_NCCL to the library's path)",
                 e ? e : path);
        return NULL;
    }
    mg_nccl *x = calloc(1, sizeof *x);
    if (!x) {
        dlclose(lib);
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    x->lib = lib;
    const char *missing = NULL;
#define MG_NCCL_RESOLVE(name, field, type)                                                                            \
    if (!missing && !resolve(lib, #name, &x->field))                                                                  \
        missing = #name;
    MG_NCCL_FUNCTIONS(MG_NCCL_RESOLVE)
#undef MG_NCCL_RESOLVE
    if (missing) {
        snprintf(why, why_len, "%s is not an NCCL 2 library (it lacks %s)", path, missing);
        dlclose(lib);
        free(x);
        return NULL;
    }
    return x;
}

void mg_nccl_destroy(mg_nccl *x)
{
    if (!x)
        return;
    if (x->comm)
        x->comm_destroy(x->comm);
    dlclose(x->lib);
    free(x);
}

/* Whether two ranks name the same GPU; the first pair into why. */
#define GPU_NAME_LEN 128
static int gpus_shared(mg_comm *comm, const char *gpu, char *why, size_t why_len, mg_error *err)
{
    char *all = calloc((size_t)comm->size, GPU_NAME_LEN);
    if (!all)
        return mg_fail(err, "out of memory");
    snprintf(all + (size_t)comm->rank * GPU_NAME_LEN, GPU_NAME_LEN, "%s", gpu);
    if (mg_comm_allgather_bytes(comm, all, comm->size, GPU_NAME_LEN, err) != 0) {
        free(all);
        return -1;
    }
    int shared = 0;
    for (int a = 0; a < comm->size && !shared; a++)
        for (int b = a + 1; b < comm->size && !shared; b++)
            if (strncmp(all + (size_t)a * GPU_NAME_LEN, all + (size_t)b * GPU_NAME_LEN, GPU_NAME_LEN) == 0) {
                shared = 1;
                snprintf(why, why_len, "ranks %d and %d share a GPU (%.*s); NCCL needs one GPU per rank", a, b,
                         GPU_NAME_LEN, all + (size_t)a * GPU_NAME_LEN);
            }
    free(all);
    return shared;
}

int mg_nccl_create(mg_comm *comm, const char *gpu, mg_nccl **out, char *why, size_t why_len, mg_error *err)
{
    *out = NULL;
    const int shared = gpus_shared(comm, gpu, why, why_len, err);
    if (shared != 0) /* the same on every rank: everyone gathered the same names */
        return shared < 0 ? -1 : 0;
    char mine[256] = "";
    mg_nccl *x = load(mine, sizeof mine);
    /* Every rank must take the same road, or some would wait in NCCL and
     * the others in MPI. */
    if (!mg_comm_all(comm, x != NULL)) {
        snprintf(why, why_len, "%s", x ? "NCCL is not usable on every rank" : mine);
        mg_nccl_destroy(x);
        return 0;
    }
    struct {
        int ok;
        mg_nccl_unique_id id;
    } root;
    memset(&root, 0, sizeof root);
    if (comm->rank == 0)
        root.ok = x->get_unique_id(&root.id) == MG_NCCL_SUCCESS;
    mg_comm_bcast_bytes(comm, &root, (int)sizeof root);
    if (!root.ok) {
        snprintf(why, why_len, "ncclGetUniqueId failed on rank 0");
        mg_nccl_destroy(x);
        return 0;
    }
    x->rank = comm->rank;
    /* Collective and blocking: a rank that fails here cannot agree with the
     * others (they wait inside NCCL), so it reports and the caller ends
     * the job (mg_comm_abort). */
    const mg_nccl_result_t r = x->comm_init_rank(&x->comm, comm->size, root.id, comm->rank);
    if (r != MG_NCCL_SUCCESS) {
        mg_fail(err,
                "cuda backend: creating the NCCL communicator (rank %d of %d): %s; MORPHOGEN_NCCL=none exchanges "
                "the gradients through MPI instead",
                comm->rank, comm->size, x->error_string(r));
        x->comm = NULL;
        mg_nccl_destroy(x);
        return -1;
    }
    *out = x;
    return 0;
}

int mg_nccl_allgather(mg_nccl *x, float *d_buf, size_t count, cudaStream_t stream, mg_error *err)
{
    mg_nccl_result_t r = x->all_gather(d_buf + (size_t)x->rank * count, d_buf, count, MG_NCCL_FLOAT, x->comm, stream);
    if (r != MG_NCCL_SUCCESS)
        return mg_fail(err, "cuda backend: NCCL all-gather of the gradients: %s", x->error_string(r));
    /* Wait for it while watching NCCL's asynchronous errors: a peer or
     * network failure leaves the collective spinning on the GPU, where a
     * plain stream synchronisation would wait forever. */
    const struct timespec pause = {0, 20000};
    cudaError_t e;
    while ((e = cudaStreamQuery(stream)) == cudaErrorNotReady) {
        if (x->comm_get_async_error(x->comm, &r) == MG_NCCL_SUCCESS && r != MG_NCCL_SUCCESS) {
            char text[160];
            snprintf(text, sizeof text, "%s", x->error_string(r));
            x->comm_abort(x->comm);
            x->comm = NULL;
            return mg_fail(err, "cuda backend: NCCL all-gather of the gradients failed: %s", text);
        }
        nanosleep(&pause, NULL);
    }
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return mg_fail(err, "cuda backend: NCCL all-gather of the gradients: %s", cudaGetErrorString(e));
    }
    return 0;
}
