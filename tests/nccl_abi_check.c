/* kernels/nccl_abi.h against NCCL's own nccl.h, at build time: every
 * function morphogen loads must have nccl.h's type, and every constant and
 * layout it declares nccl.h's value, or this file does not compile and the
 * build stops. Built wherever CMake finds nccl.h (the CUDA toolkit's, in CI);
 * nothing runs. */
#include <nccl.h>

/* nccl.h's types in place of nccl_abi.h's own, so that the function types
 * below are built from them; the own types are checked against them here. */
#define MG_NCCL_ABI_TYPES_GIVEN
typedef ncclComm_t mg_nccl_comm_t;
typedef ncclUniqueId mg_nccl_unique_id;
typedef ncclResult_t mg_nccl_result_t;
typedef ncclDataType_t mg_nccl_data_type_t;
#include "nccl_abi.h"

#define MG_NCCL_SAME_TYPE(name, field, type)                                                                          \
    _Static_assert(__builtin_types_compatible_p(__typeof__(name), type),                                              \
                   #name " in nccl.h differs from " #type " in kernels/nccl_abi.h");
MG_NCCL_FUNCTIONS(MG_NCCL_SAME_TYPE)

/* nccl_abi.h's own types: the communicator names nccl.h's struct tag, the
 * unique id is 128 bytes of char, the result and data type are int. */
_Static_assert(__builtin_types_compatible_p(ncclComm_t, struct ncclComm *), "ncclComm_t is not struct ncclComm *");
_Static_assert(sizeof(ncclUniqueId) == MG_NCCL_UNIQUE_ID_BYTES && NCCL_UNIQUE_ID_BYTES == MG_NCCL_UNIQUE_ID_BYTES,
               "ncclUniqueId's size differs from MG_NCCL_UNIQUE_ID_BYTES");
_Static_assert(_Alignof(ncclUniqueId) == 1, "ncclUniqueId is not an array of char");
_Static_assert(sizeof(ncclResult_t) == sizeof(int) && _Alignof(ncclResult_t) == _Alignof(int),
               "ncclResult_t is not passed as an int");
_Static_assert(sizeof(ncclDataType_t) == sizeof(int) && _Alignof(ncclDataType_t) == _Alignof(int),
               "ncclDataType_t is not passed as an int");

/* As int: the two are values of different enums. */
_Static_assert((int)MG_NCCL_SUCCESS == (int)ncclSuccess, "ncclSuccess differs");
_Static_assert((int)MG_NCCL_INVALID_ARGUMENT == (int)ncclInvalidArgument, "ncclInvalidArgument differs");
_Static_assert((int)MG_NCCL_REMOTE_ERROR == (int)ncclRemoteError, "ncclRemoteError differs");
_Static_assert((int)MG_NCCL_FLOAT == (int)ncclFloat && (int)MG_NCCL_FLOAT == (int)ncclFloat32, "ncclFloat differs");
_Static_assert(NCCL_MAJOR == 2, "nccl_abi.h declares NCCL 2's ABI");
