/* An EMULATED NCCL for the CUDA emulator: the functions of NCCL's C API that
 * kernels/nccl_exchange.c loads (kernels/nccl_abi.h), implemented with MPI on
 * host memory (emulated device memory is host memory). Built as a shared
 * library that a test names in MORPHOGEN_NCCL, so that morphogen's NCCL path
 * (dlopen, the unique id's broadcast, communicator creation, the in-place
 * all-gather in rank order) runs without GPUs. The all-gather runs in its
 * stream's order, as a host function of the emulator's runtime, which the
 * executable exports to this library. A process that never started MPI (a
 * plain test) is a job of one rank. It says on stderr, once per process,
 * that it is an emulation. Real NCCL needs one GPU per rank, which no
 * machine here has. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nccl_abi.h"

struct ncclComm {
    MPI_Comm comm; /* MPI_COMM_NULL: one rank without MPI */
    int rank, size;
    int gathers;                  /* all-gathers so far */
    mg_nccl_result_t async_error; /* of a collective that ran on its stream */
};

/* Each function below has the type nccl_abi.h gives it. */
#define SAME_TYPE(name, field, type)                                                                                  \
    _Static_assert(__builtin_types_compatible_p(__typeof__(name), type), #name " differs from " #type);

static const char MAGIC[] = "morphogen emulated NCCL";

mg_nccl_result_t ncclGetUniqueId(mg_nccl_unique_id *id)
{
    memset(id, 0, sizeof *id);
    memcpy(id->internal, MAGIC, sizeof MAGIC);
    return MG_NCCL_SUCCESS;
}

mg_nccl_result_t ncclCommInitRank(mg_nccl_comm_t *comm, int nranks, mg_nccl_unique_id id, int rank)
{
    int mpi = 0, world_rank = 0, world_size = 1;
    MPI_Initialized(&mpi);
    if (mpi) {
        MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
        MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    }
    /* The id must have come from ncclGetUniqueId through the caller's broadcast. */
    if (memcmp(id.internal, MAGIC, sizeof MAGIC) != 0 || nranks != world_size || rank != world_rank)
        return MG_NCCL_INVALID_ARGUMENT;
    struct ncclComm *c = calloc(1, sizeof *c);
    if (!c)
        return MG_NCCL_INVALID_ARGUMENT;
    c->comm = MPI_COMM_NULL;
    if (mpi)
        MPI_Comm_dup(MPI_COMM_WORLD, &c->comm);
    c->rank = rank;
    c->size = nranks;
    *comm = c;
    if (rank == 0)
        fprintf(stderr, "cuda_emulator: NCCL EMULATED over MPI (%d ranks): not a GPU all-gather\n", nranks);
    return MG_NCCL_SUCCESS;
}

struct all_gather {
    mg_nccl_comm_t comm;
    float *recv;
    int count;
    int lost_peer; /* fail as if a peer were gone (MG_CUEMU_NCCL_FAIL) */
};

/* In the stream's order, as NCCL's kernel runs: the gradients the stream
 * computed before it are there, and what the stream does after it sees the
 * gathered result. A failure shows in ncclCommGetAsyncError. */
static void all_gather_on_stream(void *arg)
{
    struct all_gather *g = arg;
    if (g->lost_peer)
        g->comm->async_error = MG_NCCL_REMOTE_ERROR;
    else if (MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, g->recv, g->count, MPI_FLOAT, g->comm->comm) !=
             MPI_SUCCESS)
        g->comm->async_error = MG_NCCL_INVALID_ARGUMENT;
    free(g);
}

/* MG_CUEMU_NCCL_FAIL=R:N: rank R's N-th all-gather fails as one does on GPUs
 * when a peer or the network is lost: it never completes,
 * ncclCommGetAsyncError says ncclRemoteError, and the other ranks wait in
 * theirs. So a test can check how morphogen gets out of that. */
static int lost_peer(const struct ncclComm *c)
{
    const char *env = getenv("MG_CUEMU_NCCL_FAIL");
    int rank, n;
    return env && sscanf(env, "%d:%d", &rank, &n) == 2 && rank == c->rank && n == c->gathers;
}

mg_nccl_result_t ncclAllGather(const void *sendbuff, void *recvbuff, size_t sendcount, mg_nccl_data_type_t datatype,
                               mg_nccl_comm_t comm, cudaStream_t stream)
{
    if (datatype != MG_NCCL_FLOAT || sendcount > (size_t)0x7fffffff)
        return MG_NCCL_INVALID_ARGUMENT;
    float *recv = recvbuff;
    /* morphogen gathers in place: its block already sits at rank * count. */
    if ((const float *)sendbuff != recv + (size_t)comm->rank * sendcount)
        return MG_NCCL_INVALID_ARGUMENT;
    if (comm->comm == MPI_COMM_NULL) /* one rank: its block is the whole result */
        return MG_NCCL_SUCCESS;
    comm->gathers++;
    struct all_gather *g = malloc(sizeof *g);
    if (!g)
        return MG_NCCL_INVALID_ARGUMENT;
    *g = (struct all_gather){comm, recv, (int)sendcount, lost_peer(comm)};
    if (cudaLaunchHostFunc(stream, all_gather_on_stream, g) != cudaSuccess) {
        free(g);
        return MG_NCCL_INVALID_ARGUMENT;
    }
    return MG_NCCL_SUCCESS;
}

mg_nccl_result_t ncclCommDestroy(mg_nccl_comm_t comm)
{
    if (comm) {
        if (comm->comm != MPI_COMM_NULL)
            MPI_Comm_free(&comm->comm);
        free(comm);
    }
    return MG_NCCL_SUCCESS;
}

mg_nccl_result_t ncclCommGetAsyncError(mg_nccl_comm_t comm, mg_nccl_result_t *async_error)
{
    *async_error = comm->async_error;
    return MG_NCCL_SUCCESS;
}
/* Without waiting for the peers (the MPI communicator is left to the
 * job's end, as freeing it could wait for them). */
mg_nccl_result_t ncclCommAbort(mg_nccl_comm_t comm)
{
    free(comm);
    return MG_NCCL_SUCCESS;
}

const char *ncclGetErrorString(mg_nccl_result_t result)
{
    switch (result) {
    case MG_NCCL_SUCCESS:
        return "no error (emulated NCCL)";
    case MG_NCCL_REMOTE_ERROR:
        return "remote process exited or there was a network error (emulated NCCL: MG_CUEMU_NCCL_FAIL)";
    default:
        return "invalid argument (emulated NCCL)";
    }
}

MG_NCCL_FUNCTIONS(SAME_TYPE)
