/* An EMULATED NCCL for the CUDA emulator: the seven functions of NCCL's C API
 * that kernels/nccl_exchange.c loads, implemented with MPI on host memory
 * (emulated device memory is host memory). Built as a shared library that
 * a test names in MORPHOGEN_NCCL, so that morphogen's NCCL path (dlopen,
 * the unique id's broadcast, communicator creation, the in-place all-gather
 * in rank order) runs without GPUs. It says on stderr, once per process,
 * that it is an emulation. Real NCCL needs one GPU per rank, which no
 * machine here has. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct emulated_comm {
    MPI_Comm comm;
    int rank, size;
} emulated_comm;
typedef emulated_comm *ncclComm_t;
typedef struct {
    char internal[128];
} ncclUniqueId;
typedef int ncclResult_t;
typedef int ncclDataType_t;
typedef void *cudaStream_t;

enum { SUCCESS = 0, INVALID_ARGUMENT = 4, FLOAT = 7 };
static const char MAGIC[] = "morphogen emulated NCCL";

ncclResult_t ncclGetUniqueId(ncclUniqueId *id)
{
    memset(id, 0, sizeof *id);
    memcpy(id->internal, MAGIC, sizeof MAGIC);
    return SUCCESS;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank)
{
    int world_rank, world_size;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    /* The id must have come from ncclGetUniqueId through the caller's broadcast. */
    if (memcmp(id.internal, MAGIC, sizeof MAGIC) != 0 || nranks != world_size || rank != world_rank)
        return INVALID_ARGUMENT;
    emulated_comm *c = calloc(1, sizeof *c);
    if (!c)
        return INVALID_ARGUMENT;
    MPI_Comm_dup(MPI_COMM_WORLD, &c->comm);
    c->rank = rank;
    c->size = nranks;
    *comm = c;
    if (rank == 0)
        fprintf(stderr, "cuda_emulator: NCCL EMULATED over MPI (%d ranks): not a GPU all-gather\n", nranks);
    return SUCCESS;
}

ncclResult_t ncclAllGather(const void *sendbuff, void *recvbuff, size_t sendcount, ncclDataType_t type,
                           ncclComm_t comm, cudaStream_t stream)
{
    (void)stream; /* the emulator runs everything when it is called */
    if (type != FLOAT || sendcount > (size_t)0x7fffffff)
        return INVALID_ARGUMENT;
    float *recv = recvbuff;
    /* morphogen gathers in place: its block already sits at rank * count. */
    if ((const float *)sendbuff != recv + (size_t)comm->rank * sendcount)
        return INVALID_ARGUMENT;
    return MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, recv, (int)sendcount, MPI_FLOAT, comm->comm) ==
                   MPI_SUCCESS
               ? SUCCESS
               : INVALID_ARGUMENT;
}

static ncclResult_t release(ncclComm_t comm)
{
    if (comm) {
        MPI_Comm_free(&comm->comm);
        free(comm);
    }
    return SUCCESS;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) { return release(comm); }

/* Nothing runs asynchronously here, so nothing fails later. */
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *async_error)
{
    (void)comm;
    *async_error = SUCCESS;
    return SUCCESS;
}
ncclResult_t ncclCommAbort(ncclComm_t comm) { return release(comm); }

const char *ncclGetErrorString(ncclResult_t result)
{
    return result == SUCCESS ? "no error (emulated NCCL)" : "invalid argument (emulated NCCL)";
}
