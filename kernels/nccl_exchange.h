/* The cuda backend's gradient all-gather between ranks through NCCL, on
 * device memory. NCCL is loaded at run time (dlopen), only by a job of
 * several ranks, so that morphogen neither needs NCCL to start nor pays
 * for loading its 200 MB library in every other run. */
#ifndef MORPHOGEN_KERNELS_NCCL_EXCHANGE_H
#define MORPHOGEN_KERNELS_NCCL_EXCHANGE_H

#include <stddef.h>

#include <cuda_runtime_api.h>

#include "morphogen/comm.h"
#include "morphogen/error.h"

typedef struct mg_nccl mg_nccl;

/* Collective over comm's ranks. An NCCL communicator when every rank can
 * have one: no two ranks name the same GPU (`gpu`: this rank's GPU, unique
 * in the job, such as host name and PCI bus id) and NCCL loads on every
 * rank (MORPHOGEN_NCCL names the library, by default libnccl.so.2 on the
 * loader's path; "none" loads nothing). Otherwise *out is NULL with the reason in why[why_len],
 * the same decision on every rank, and the caller exchanges through MPI.
 * A failure after that decision is an error (-1 with err filled). */
int mg_nccl_create(mg_comm *comm, const char *gpu, mg_nccl **out, char *why, size_t why_len, mg_error *err);

/* In place: this rank's `count` floats at d_buf + rank * count go to every
 * rank's d_buf (ncclAllGather), ordered by rank. */
int mg_nccl_allgather(mg_nccl *x, float *d_buf, size_t count, cudaStream_t stream, mg_error *err);

void mg_nccl_destroy(mg_nccl *x);

#endif
