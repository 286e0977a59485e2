/* The part of NCCL's C ABI that morphogen uses, declared here rather than
 * taken from nccl.h: the cuda backend loads NCCL at run time
 * (nccl_exchange.c), so it builds where nccl.h is absent (the CUDA emulator),
 * and the emulated NCCL (tests/cuda_emulator/nccl_emulated.c) implements the
 * same functions. These declarations are stable across NCCL 2.x; where the
 * build finds nccl.h, tests/nccl_abi_check.c compares each one with it and
 * a difference stops the build. */
#ifndef MORPHOGEN_KERNELS_NCCL_ABI_H
#define MORPHOGEN_KERNELS_NCCL_ABI_H

#include <stddef.h>

#include <cuda_runtime_api.h>

#define MG_NCCL_UNIQUE_ID_BYTES 128

/* nccl_abi_check.c puts nccl.h's own types in their place (NCCL's result and
 * data type are enums: it checks their size against int's separately). */
#ifndef MG_NCCL_ABI_TYPES_GIVEN
typedef struct ncclComm *mg_nccl_comm_t; /* nccl.h's own tag: the same type */
typedef struct {
    char internal[MG_NCCL_UNIQUE_ID_BYTES];
} mg_nccl_unique_id;
typedef int mg_nccl_result_t;
typedef int mg_nccl_data_type_t;
/* What nccl_abi_check.c checks nccl.h's types against: the communicator
 * is struct ncclComm *, the id 128 bytes of char, the result and the data
 * type are passed as int. */
_Static_assert(__builtin_types_compatible_p(mg_nccl_comm_t, struct ncclComm *),
               "mg_nccl_comm_t is not struct ncclComm *");
_Static_assert(sizeof(mg_nccl_unique_id) == MG_NCCL_UNIQUE_ID_BYTES && _Alignof(mg_nccl_unique_id) == 1,
               "mg_nccl_unique_id is not 128 bytes of char");
_Static_assert(__builtin_types_compatible_p(mg_nccl_result_t, int), "mg_nccl_result_t is not int");
_Static_assert(__builtin_types_compatible_p(mg_nccl_data_type_t, int), "mg_nccl_data_type_t is not int");
#endif

enum { MG_NCCL_SUCCESS = 0, MG_NCCL_INVALID_ARGUMENT = 4, MG_NCCL_REMOTE_ERROR = 6, MG_NCCL_FLOAT = 7 };

typedef mg_nccl_result_t mg_nccl_get_unique_id_fn(mg_nccl_unique_id *id);
typedef mg_nccl_result_t mg_nccl_comm_init_rank_fn(mg_nccl_comm_t *comm, int nranks, mg_nccl_unique_id id, int rank);
typedef mg_nccl_result_t mg_nccl_all_gather_fn(const void *sendbuff, void *recvbuff, size_t sendcount,
                                               mg_nccl_data_type_t datatype, mg_nccl_comm_t comm,
                                               cudaStream_t stream);
typedef mg_nccl_result_t mg_nccl_comm_destroy_fn(mg_nccl_comm_t comm);
typedef mg_nccl_result_t mg_nccl_comm_abort_fn(mg_nccl_comm_t comm);
typedef mg_nccl_result_t mg_nccl_comm_get_async_error_fn(mg_nccl_comm_t comm, mg_nccl_result_t *async_error);
typedef const char *mg_nccl_get_error_string_fn(mg_nccl_result_t result);

/* X(NCCL's name, a short name, its type above), for each function loaded:
 * the loader resolves exactly these, and the checks compare exactly these. */
#define MG_NCCL_FUNCTIONS(X)                                                                                          \
    X(ncclGetUniqueId, get_unique_id, mg_nccl_get_unique_id_fn)                                                       \
    X(ncclCommInitRank, comm_init_rank, mg_nccl_comm_init_rank_fn)                                                    \
    X(ncclAllGather, all_gather, mg_nccl_all_gather_fn)                                                               \
    X(ncclCommDestroy, comm_destroy, mg_nccl_comm_destroy_fn)                                                         \
    X(ncclCommAbort, comm_abort, mg_nccl_comm_abort_fn)                                                               \
    X(ncclCommGetAsyncError, comm_get_async_error, mg_nccl_comm_get_async_error_fn)                                   \
    X(ncclGetErrorString, error_string, mg_nccl_get_error_string_fn)

#endif
