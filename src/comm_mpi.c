/* MPI implementation of the communicator. */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "morphogen/comm.h"

static double now(void) { return MPI_Wtime(); }

/* Started by mpirun or srun? A plain process does not start MPI at all: it
 * needs no runtime (singleton MPI_Init starts PMIx services that fail in
 * restricted environments, e.g. under a file-size limit) and costs nothing. */
static int launched_by_mpi(void)
{
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]))
            return 1;
    return 0;
}

int mg_comm_init(int *argc, char ***argv, mg_comm *c, mg_error *err)
{
    memset(c, 0, sizeof *c);
    c->size = c->local_size = 1;
    if (!launched_by_mpi())
        return 0;
    int provided = 0, initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized && MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return mg_fail(err, "MPI: initialisation failed");
    MPI_Comm *world = malloc(sizeof *world);
    if (!world)
        return mg_fail(err, "out of memory");
    MPI_Comm_dup(MPI_COMM_WORLD, world);
    /* Errors come back as return codes so they can be reported by rank. */
    MPI_Comm_set_errhandler(*world, MPI_ERRORS_RETURN);
    c->world = world;
    MPI_Comm_rank(*world, &c->rank);
    MPI_Comm_size(*world, &c->size);
    /* Ranks sharing a node (and later its GPUs): the shared-memory split
     * works the same under mpirun and srun. */
    MPI_Comm node;
    MPI_Comm_split_type(*world, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &c->local_rank);
    MPI_Comm_size(node, &c->local_size);
    MPI_Comm_free(&node);
    return 0;
}

void mg_comm_finalize(mg_comm *c)
{
    if (!c->world)
        return; /* a plain process: MPI never started */
    MPI_Comm_free((MPI_Comm *)c->world);
    free(c->world);
    c->world = NULL;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized)
        MPI_Finalize();
}

void mg_comm_abort(mg_comm *c, int status)
{
    if (c->world)
        MPI_Abort(*(MPI_Comm *)c->world, status);
    exit(status);
}

int mg_comm_block_first(const mg_comm *c, int n, int rank) { return (int)((int64_t)n * rank / c->size); }

static int allgather(mg_comm *c, void *buf, int n, int64_t per_item, MPI_Datatype type, size_t elem,
                     mg_error *err)
{
    if (c->size == 1)
        return 0;
    int *counts = malloc(sizeof(int) * c->size), *displs = malloc(sizeof(int) * c->size);
    if (!counts || !displs) {
        free(counts);
        free(displs);
        return mg_fail(err, "out of memory");
    }
    for (int r = 0; r < c->size; r++) {
        const int first = mg_comm_block_first(c, n, r), last = mg_comm_block_first(c, n, r + 1);
        displs[r] = (int)(first * per_item);
        counts[r] = (int)((last - first) * per_item);
    }
    const double t0 = now();
    const int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, type,
                                  *(MPI_Comm *)c->world);
    c->seconds += now() - t0;
    c->bytes += (uint64_t)((int64_t)n * per_item - counts[c->rank]) * elem;
    free(counts);
    free(displs);
    if (rc != MPI_SUCCESS)
        return mg_fail(err, "MPI_Allgatherv failed (rank %d of %d)", c->rank, c->size);
    return 0;
}

int mg_comm_allgather_floats(mg_comm *c, float *buf, int n, int64_t per_item, mg_error *err)
{
    return allgather(c, buf, n, per_item, MPI_FLOAT, sizeof(float), err);
}

int mg_comm_allgather_doubles(mg_comm *c, double *buf, int n, int64_t per_item, mg_error *err)
{
    return allgather(c, buf, n, per_item, MPI_DOUBLE, sizeof(double), err);
}

int mg_comm_allgather_bytes(mg_comm *c, void *buf, int n, int64_t per_item, mg_error *err)
{
    return allgather(c, buf, n, per_item, MPI_BYTE, 1, err);
}

static int reduce_int(mg_comm *c, int value, MPI_Op op)
{
    if (c->size == 1)
        return value;
    int out = value;
    const double t0 = now();
    MPI_Allreduce(&value, &out, 1, MPI_INT, op, *(MPI_Comm *)c->world);
    c->seconds += now() - t0;
    return out;
}

int mg_comm_any(mg_comm *c, int value) { return reduce_int(c, value != 0, MPI_LOR); }
int mg_comm_all(mg_comm *c, int value) { return reduce_int(c, value != 0, MPI_LAND); }

int mg_comm_lowest_rank(mg_comm *c, int flag) { return reduce_int(c, flag ? c->rank : c->size, MPI_MIN); }

void mg_comm_bcast_doubles(mg_comm *c, double *values, int n)
{
    if (c->size > 1)
        MPI_Bcast(values, n, MPI_DOUBLE, 0, *(MPI_Comm *)c->world);
}

void mg_comm_bcast_bytes(mg_comm *c, void *bytes, int n)
{
    if (c->size > 1)
        MPI_Bcast(bytes, n, MPI_BYTE, 0, *(MPI_Comm *)c->world);
}

int mg_comm_replicated(mg_comm *c, const float *values, int64_t n)
{
    /* FNV-1a over the bytes: equal data gives equal hashes; MIN == MAX over
     * ranks means every rank holds the same hash. */
    uint64_t h = 1469598103934665603ull;
    const unsigned char *p = (const unsigned char *)values;
    for (int64_t i = 0; i < n * (int64_t)sizeof(float); i++)
        h = (h ^ p[i]) * 1099511628211ull;
    if (c->size == 1)
        return 1;
    uint64_t lo = h, hi = h;
    MPI_Allreduce(&h, &lo, 1, MPI_UINT64_T, MPI_MIN, *(MPI_Comm *)c->world);
    MPI_Allreduce(&h, &hi, 1, MPI_UINT64_T, MPI_MAX, *(MPI_Comm *)c->world);
    return lo == hi;
}

void mg_comm_barrier(mg_comm *c)
{
    if (c->size > 1)
        MPI_Barrier(*(MPI_Comm *)c->world);
}
