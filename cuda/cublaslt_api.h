// cuBLASLt, loaded at run time as cublas_api.h loads cuBLAS: the entry points and the enum values
// vllmd uses (by value, from the public API, stable across cuBLAS 12.9+ and 13), and the table
// cublaslt() fills with dlopen/dlsym. vllmd uses it for one thing: e4m3 x e4m3 products on FP8
// tensor cores with a scale per row of each operand (OUTER_VEC_32F, cuBLAS 12.9+), the W8A8 path
// of vd_gemm_fp8.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>  // cudaStream_t
#include <library_types.h> // cudaDataType_t

#include "cublas_api.h" // cublasStatus_t, cublasOperation_t, cublasComputeType_t

struct cublasLtContext;
typedef struct cublasLtContext *cublasLtHandle_t;
struct cublasLtMatmulDescOpaque_t;
typedef struct cublasLtMatmulDescOpaque_t *cublasLtMatmulDesc_t;
struct cublasLtMatrixLayoutOpaque_t;
typedef struct cublasLtMatrixLayoutOpaque_t *cublasLtMatrixLayout_t;
struct cublasLtMatmulPreferenceOpaque_t;
typedef struct cublasLtMatmulPreferenceOpaque_t *cublasLtMatmulPreference_t;

typedef struct {
  uint64_t data[8];
} cublasLtMatmulAlgo_t;

typedef struct {
  cublasLtMatmulAlgo_t algo;
  size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
} cublasLtMatmulHeuristicResult_t;

// The attribute and mode values vllmd sets (cublasLtMatmulDescAttributes_t and friends).
enum : int {
  kLtDescTransA = 3,            // CUBLASLT_MATMUL_DESC_TRANSA (int32_t cublasOperation_t)
  kLtDescTransB = 4,            // CUBLASLT_MATMUL_DESC_TRANSB
  kLtDescAScalePointer = 17,    // CUBLASLT_MATMUL_DESC_A_SCALE_POINTER (const float *)
  kLtDescBScalePointer = 18,    // CUBLASLT_MATMUL_DESC_B_SCALE_POINTER
  kLtDescAScaleMode = 31,       // CUBLASLT_MATMUL_DESC_A_SCALE_MODE (int32_t)
  kLtDescBScaleMode = 32,       // CUBLASLT_MATMUL_DESC_B_SCALE_MODE
  kLtScaleOuterVec32F = 3,      // CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F
  kLtPrefMaxWorkspaceBytes = 1, // CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES (uint64_t)
};

namespace vd {

struct CublasLt {
  cublasStatus_t (*create)(cublasLtHandle_t *handle);
  cublasStatus_t (*destroy)(cublasLtHandle_t handle);
  cublasStatus_t (*desc_create)(cublasLtMatmulDesc_t *desc, cublasComputeType_t compute, cudaDataType_t scale_type);
  cublasStatus_t (*desc_destroy)(cublasLtMatmulDesc_t desc);
  cublasStatus_t (*desc_set)(cublasLtMatmulDesc_t desc, int attr, const void *buf, size_t bytes);
  cublasStatus_t (*layout_create)(cublasLtMatrixLayout_t *layout, cudaDataType_t type, uint64_t rows, uint64_t cols,
                                  int64_t ld);
  cublasStatus_t (*layout_destroy)(cublasLtMatrixLayout_t layout);
  cublasStatus_t (*pref_create)(cublasLtMatmulPreference_t *pref);
  cublasStatus_t (*pref_destroy)(cublasLtMatmulPreference_t pref);
  cublasStatus_t (*pref_set)(cublasLtMatmulPreference_t pref, int attr, const void *buf, size_t bytes);
  cublasStatus_t (*heuristic)(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                              cublasLtMatmulPreference_t pref, int requested, cublasLtMatmulHeuristicResult_t *results,
                              int *returned);
  cublasStatus_t (*matmul)(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void *alpha, const void *A,
                           cublasLtMatrixLayout_t a, const void *B, cublasLtMatrixLayout_t b, const void *beta,
                           const void *C, cublasLtMatrixLayout_t c, void *D, cublasLtMatrixLayout_t d,
                           const cublasLtMatmulAlgo_t *algo, void *workspace, size_t workspace_bytes, cudaStream_t stream);
};

// The loaded library's entry points (loaded once, on first use; thread-safe), or null with *why
// saying which libraries were tried and what dlopen/dlsym answered.
const CublasLt *cublaslt(const char **why);

} // namespace vd
