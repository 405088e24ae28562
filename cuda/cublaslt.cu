// cublaslt_api.h's loader: libcublasLt.so of the CUDA major version vllmd was compiled with (dynlib.h).
#include "cublaslt_api.h"
#include "dynlib.h"

const vd::CublasLt *vd::cublaslt(const char **why) {
  return load_api<CublasLt>(cuda_library_names("cublasLt"), "cuBLASLt", [](CublasLt &a, auto bind) {
    return bind("cublasLtCreate", &a.create) && bind("cublasLtDestroy", &a.destroy) &&
           bind("cublasLtMatmulDescCreate", &a.desc_create) && bind("cublasLtMatmulDescDestroy", &a.desc_destroy) &&
           bind("cublasLtMatmulDescSetAttribute", &a.desc_set) && bind("cublasLtMatrixLayoutCreate", &a.layout_create) &&
           bind("cublasLtMatrixLayoutDestroy", &a.layout_destroy) && bind("cublasLtMatmulPreferenceCreate", &a.pref_create) &&
           bind("cublasLtMatmulPreferenceDestroy", &a.pref_destroy) &&
           bind("cublasLtMatmulPreferenceSetAttribute", &a.pref_set) &&
           bind("cublasLtMatmulAlgoGetHeuristic", &a.heuristic) && bind("cublasLtMatmul", &a.matmul);
  }, why);
}
