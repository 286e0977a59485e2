/* The communicator between ranks of one training job: MPI for the CPU
 * backend and the host side of every job (the cuda backend exchanges its
 * gradients with NCCL when it can: kernels/nccl_exchange.c). Training exchanges
 * per-sample results by global batch position, so every rank can reduce
 * them in the same fixed order: results do not depend on the rank count. */
#ifndef MORPHOGEN_COMM_H
#define MORPHOGEN_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "morphogen/error.h"

typedef struct mg_comm {
    int rank, size;             /* in the job */
    int local_rank, local_size; /* on this node (MPI shared-memory split) */
    void *world;                /* MPI_Comm* (duplicate of MPI_COMM_WORLD); NULL in a
                                   plain process, which never starts MPI */
    double seconds;             /* time spent in collectives so far */
    uint64_t bytes;             /* bytes this rank received from collectives so far */
} mg_comm;

/* Under mpirun/srun: MPI_Init_thread (funneled: OpenMP threads never call
 * MPI) and set-up. A process started any other way is a job of one rank and
 * does not start MPI. */
int mg_comm_init(int *argc, char ***argv, mg_comm *c, mg_error *err);
void mg_comm_finalize(mg_comm *c);

/* End the whole job now (MPI_Abort) after a failure only this rank saw;
 * the message was printed by the caller. */
void mg_comm_abort(mg_comm *c, int status) __attribute__((noreturn));

/* Blocks of a batch spread over ranks: rank r owns positions
 * [first(r), first(r+1)) with n/size each (n must divide evenly). */
int mg_comm_block_first(const mg_comm *c, int n, int rank);

/* In place: every rank fills its own block of `per_item` values per
 * position (positions as in mg_comm_block_first over n items) and receives
 * everyone else's. */
int mg_comm_allgather_floats(mg_comm *c, float *buf, int n, int64_t per_item, mg_error *err);
int mg_comm_allgather_doubles(mg_comm *c, double *buf, int n, int64_t per_item, mg_error *err);
int mg_comm_allgather_bytes(mg_comm *c, void *buf, int n, int64_t per_item, mg_error *err);

/* Logical OR / AND of an int over ranks (stop flags, error agreement). */
int mg_comm_any(mg_comm *c, int value);
int mg_comm_all(mg_comm *c, int value);

/* The lowest rank for which `flag` is set (size if none). */
int mg_comm_lowest_rank(mg_comm *c, int flag);

/* Rank 0's values, everywhere. */
void mg_comm_bcast_doubles(mg_comm *c, double *values, int n);
void mg_comm_bcast_bytes(mg_comm *c, void *bytes, int n);

/* 1 if `n` floats are bitwise identical on every rank (cheap: compares a
 * 64-bit hash with MIN and MAX reductions). */
int mg_comm_replicated(mg_comm *c, const float *values, int64_t n);

void mg_comm_barrier(mg_comm *c);

#endif
