// cublas_api.h's loader: libcublas.so of the CUDA major version vllmd was compiled with (dynlib.h),
// each entry point looked up once.
#include <mutex>
#include <string>

#include "cublas_api.h"
#include "dynlib.h"

namespace {

struct Loaded {
  vd::Cublas api{};
  bool ok = false;
  std::string why;
};

Loaded load() {
  Loaded l;
  void *lib = vd::open_cuda_library("cublas", &l.why);
  if (!lib) return l;
  auto bind = [&](const char *name, auto *slot) { return vd::bind_symbol(lib, "cuBLAS", name, slot, &l.why); };
  l.ok = bind("cublasCreate_v2", &l.api.create) && bind("cublasDestroy_v2", &l.api.destroy) &&
         bind("cublasSetStream_v2", &l.api.set_stream) && bind("cublasSetWorkspace_v2", &l.api.set_workspace) &&
         bind("cublasGemmEx", &l.api.gemm_ex);
  return l; // the library stays loaded for the life of the process, as the handles made from it may
}

} // namespace

const vd::Cublas *vd::cublas(const char **why) {
  static std::once_flag once;
  static Loaded loaded;
  std::call_once(once, [] { loaded = load(); });
  if (why) *why = loaded.why.c_str();
  return loaded.ok ? &loaded.api : nullptr;
}
