// cublas_api.h's loader: dlopen the cuBLAS of the CUDA major version vllmd was compiled with
// (libcublas.so.13 for CUDA 13), else the unversioned name, and look up each entry point once.
#include <dlfcn.h>
#include <mutex>
#include <string>

#include "cublas_api.h"

namespace {

struct Loaded {
  vd::Cublas api{};
  bool ok = false;
  std::string why;
};

template <typename F> bool bind(void *lib, const char *name, F *slot, std::string *why) {
  *slot = reinterpret_cast<F>(dlsym(lib, name));
  if (!*slot) *why = std::string("cuBLAS has no ") + name;
  return *slot != nullptr;
}

Loaded load() {
  Loaded l;
  const std::string versioned = "libcublas.so." + std::to_string(CUDART_VERSION / 1000);
  void *lib = nullptr;
  for (const std::string &name : {versioned, std::string("libcublas.so")}) {
    lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib) break;
    const char *e = dlerror();
    l.why += (l.why.empty() ? "" : "; ") + name + ": " + (e ? e : "not found");
  }
  if (!lib) return l;
  l.why.clear();
  l.ok = bind(lib, "cublasCreate_v2", &l.api.create, &l.why) && bind(lib, "cublasDestroy_v2", &l.api.destroy, &l.why) &&
         bind(lib, "cublasSetStream_v2", &l.api.set_stream, &l.why) &&
         bind(lib, "cublasSetWorkspace_v2", &l.api.set_workspace, &l.why) && bind(lib, "cublasGemmEx", &l.api.gemm_ex, &l.why);
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
