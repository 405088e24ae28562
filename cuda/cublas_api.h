// The few cuBLAS declarations cuda/gemm.cu and cuda/context.cu use. Where the toolkit ships
// cublas_v2.h (the GPU machine) that header is used; where it does not (a CPU-only build machine
// with nvcc but no cuBLAS) these declarations, copied by value from the public API, let the files
// compile, and the link against the real libcublas resolves them (C linkage: the symbol names
// are the function names).
#pragma once

#if __has_include(<cublas_v2.h>)
#include <cublas_v2.h>
#else
#include <cuda_runtime.h> // cudaStream_t
#include <library_types.h> // cudaDataType_t and its CUDA_R_* values come with the runtime headers

extern "C" {

struct cublasContext;
typedef struct cublasContext *cublasHandle_t;

typedef enum { CUBLAS_STATUS_SUCCESS = 0 } cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;

cublasStatus_t cublasCreate_v2(cublasHandle_t *handle);
cublasStatus_t cublasDestroy_v2(cublasHandle_t handle);
cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream);
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void *workspace, size_t workspaceSizeInBytes);
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void *alpha, const void *A, cudaDataType_t Atype, int lda, const void *B,
                            cudaDataType_t Btype, int ldb, const void *beta, void *C, cudaDataType_t Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo);

} // extern "C"
#endif
