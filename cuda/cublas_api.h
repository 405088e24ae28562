// cuBLAS, loaded at run time: the declarations of the few entry points vllmd calls (copied by value
// from the public API; C linkage, stable across cuBLAS 12 and 13) and the table cublas() fills
// with dlopen/dlsym. So libvllmd_cuda.so builds on a machine with nvcc and only the CUDA runtime
// headers (CI), links no cuBLAS, and a GPU machine without cuBLAS gets an error that names the
// library it looked for instead of a failed dlopen of vllmd itself. NCCL will be loaded the same way.
#pragma once

#include <cuda_runtime.h>  // cudaStream_t
#include <library_types.h> // cudaDataType_t and its CUDA_R_* values come with the runtime headers

#include "vllmd.h" // VD_F32, VD_F16

struct cublasContext;
typedef struct cublasContext *cublasHandle_t;

typedef enum { CUBLAS_STATUS_SUCCESS = 0 } cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;

namespace vd {

// The cuBLAS element type of a vllmd float dtype (f32, f16, bf16).
inline cudaDataType_t cuda_data_type(int32_t dtype) {
  return dtype == VD_F32 ? CUDA_R_32F : dtype == VD_F16 ? CUDA_R_16F : CUDA_R_16BF;
}

struct Cublas {
  cublasStatus_t (*create)(cublasHandle_t *handle);                                  // cublasCreate_v2
  cublasStatus_t (*destroy)(cublasHandle_t handle);                                  // cublasDestroy_v2
  cublasStatus_t (*set_stream)(cublasHandle_t handle, cudaStream_t stream);          // cublasSetStream_v2
  cublasStatus_t (*set_workspace)(cublasHandle_t handle, void *ws, size_t bytes);    // cublasSetWorkspace_v2
  cublasStatus_t (*gemm_ex)(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void *alpha, const void *A, cudaDataType_t Atype, int lda, const void *B,
                            cudaDataType_t Btype, int ldb, const void *beta, void *C, cudaDataType_t Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo); // cublasGemmEx
};

// The loaded library's entry points (loaded once, on first use; thread-safe), or null with *why
// saying which libraries were tried and what dlopen/dlsym answered.
const Cublas *cublas(const char **why);

} // namespace vd
