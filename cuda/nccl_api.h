// NCCL, loaded at run time as cuBLAS is (dynlib.h): the few entry points and enum values vllmd
// uses, by value from NCCL 2's public API (stable across 2.x; the library's soname is libnccl.so.2
// whatever the CUDA version). Tensor parallelism's all-reduce goes through it; RCCL (the HIP
// build) has the same API under librccl.so.1.
#pragma once

#include <cstddef>
#include <cuda_runtime.h> // cudaStream_t

typedef struct ncclComm *ncclComm_t;
typedef struct {
  char internal[128];
} ncclUniqueId;
typedef enum { ncclSuccess = 0 } ncclResult_t;
typedef enum { ncclFloat16 = 6, ncclFloat32 = 7, ncclBfloat16 = 9 } ncclDataType_t;
typedef enum { ncclSum = 0 } ncclRedOp_t;

namespace vd {

struct Nccl {
  ncclResult_t (*version)(int *version);                                                // ncclGetVersion
  ncclResult_t (*comm_init_all)(ncclComm_t *comms, int n, const int *devices);           // ncclCommInitAll
  ncclResult_t (*comm_destroy)(ncclComm_t comm);                                         // ncclCommDestroy
  ncclResult_t (*all_reduce)(const void *send, void *recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                             ncclComm_t comm, cudaStream_t stream);                      // ncclAllReduce
  const char *(*error_string)(ncclResult_t result);                                      // ncclGetErrorString
};

// The loaded library's entry points (once, thread-safe), or null with *why.
const Nccl *nccl(const char **why);

} // namespace vd
