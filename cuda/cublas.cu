// cublas_api.h's loader: libcublas.so of the CUDA major version vllmd was compiled with (dynlib.h).
#include "cublas_api.h"
#include "dynlib.h"

const vd::Cublas *vd::cublas(const char **why) {
  return load_once<Cublas>([] {
    LoadedApi<Cublas> l;
    void *lib = open_cuda_library("cublas", &l.why);
    if (!lib) return l;
    auto bind = [&](const char *name, auto *slot) { return bind_symbol(lib, "cuBLAS", name, slot, &l.why); };
    l.ok = bind("cublasCreate_v2", &l.api.create) && bind("cublasDestroy_v2", &l.api.destroy) &&
           bind("cublasSetStream_v2", &l.api.set_stream) && bind("cublasSetWorkspace_v2", &l.api.set_workspace) &&
           bind("cublasGemmEx", &l.api.gemm_ex);
    return l;
  }, why);
}
