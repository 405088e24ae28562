// cublas_api.h's loader: libcublas.so of the CUDA major version vllmd was compiled with (dynlib.h).
#include "cublas_api.h"
#include "dynlib.h"

const vd::Cublas *vd::cublas(const char **why) {
  return load_api<Cublas>(cuda_library_names("cublas"), "cuBLAS", [](Cublas &a, auto bind) {
    return bind("cublasCreate_v2", &a.create) && bind("cublasDestroy_v2", &a.destroy) &&
           bind("cublasSetStream_v2", &a.set_stream) && bind("cublasSetWorkspace_v2", &a.set_workspace) &&
           bind("cublasGemmEx", &a.gemm_ex);
  }, why);
}
