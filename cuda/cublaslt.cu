// cublaslt_api.h's loader: libcublasLt.so of the CUDA major version vllmd was compiled with
// (dynlib.h), each entry point looked up once.
#include <mutex>
#include <string>

#include "cublaslt_api.h"
#include "dynlib.h"

namespace {

struct Loaded {
  vd::CublasLt api{};
  bool ok = false;
  std::string why;
};

Loaded load() {
  Loaded l;
  void *lib = vd::open_cuda_library("cublasLt", &l.why);
  if (!lib) return l;
  auto bind = [&](const char *name, auto *slot) { return vd::bind_symbol(lib, "cuBLASLt", name, slot, &l.why); };
  vd::CublasLt &a = l.api;
  l.ok = bind("cublasLtCreate", &a.create) && bind("cublasLtDestroy", &a.destroy) &&
         bind("cublasLtMatmulDescCreate", &a.desc_create) && bind("cublasLtMatmulDescDestroy", &a.desc_destroy) &&
         bind("cublasLtMatmulDescSetAttribute", &a.desc_set) && bind("cublasLtMatrixLayoutCreate", &a.layout_create) &&
         bind("cublasLtMatrixLayoutDestroy", &a.layout_destroy) &&
         bind("cublasLtMatmulPreferenceCreate", &a.pref_create) &&
         bind("cublasLtMatmulPreferenceDestroy", &a.pref_destroy) &&
         bind("cublasLtMatmulPreferenceSetAttribute", &a.pref_set) &&
         bind("cublasLtMatmulAlgoGetHeuristic", &a.heuristic) && bind("cublasLtMatmul", &a.matmul);
  return l; // stays loaded for the life of the process, as handles made from it may
}

} // namespace

const vd::CublasLt *vd::cublaslt(const char **why) {
  static std::once_flag once;
  static Loaded loaded;
  std::call_once(once, [] { loaded = load(); });
  if (why) *why = loaded.why.c_str();
  return loaded.ok ? &loaded.api : nullptr;
}
