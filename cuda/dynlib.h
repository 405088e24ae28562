// Opening a CUDA library at run time (cuBLAS, cuBLASLt, later NCCL): the soname of the CUDA major
// version vllmd was compiled with first, then the unversioned name, and each symbol looked up by
// name, so that a missing library or entry point becomes an error message instead of a failed
// dlopen of vllmd itself.
#pragma once

#include <cuda_runtime.h> // CUDART_VERSION
#include <dlfcn.h>
#include <initializer_list>
#include <mutex>
#include <string>

namespace vd {

// dlopen of the first of `names` that opens; null with *why listing what was tried.
inline void *open_library(std::initializer_list<std::string> names, std::string *why) {
  for (const std::string &name : names) {
    if (void *lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)) {
      why->clear();
      return lib;
    }
    const char *e = dlerror();
    *why += (why->empty() ? "" : "; ") + name + ": " + (e ? e : "not found");
  }
  return nullptr;
}

// lib<stem>.so.<CUDA major vllmd was compiled with>, else lib<stem>.so (cuBLAS, cuBLASLt).
inline void *open_cuda_library(const std::string &stem, std::string *why) {
  return open_library({"lib" + stem + ".so." + std::to_string(CUDART_VERSION / 1000), "lib" + stem + ".so"}, why);
}

// *slot = the symbol `name` of lib; false with *why naming it when the library lacks it.
template <typename F> bool bind_symbol(void *lib, const char *what, const char *name, F *slot, std::string *why) {
  *slot = reinterpret_cast<F>(dlsym(lib, name));
  if (!*slot) *why = std::string(what) + " has no " + name;
  return *slot != nullptr;
}

// A library's entry points as `load` fills them, once per process (thread-safe): the table, or
// null with *why saying what was tried. The library stays loaded, as handles made from it may.
template <typename Api> struct LoadedApi {
  Api api{};
  bool ok = false;
  std::string why;
};
template <typename Api, typename Load> const Api *load_once(Load load, const char **why) {
  static std::once_flag once;
  static LoadedApi<Api> loaded;
  std::call_once(once, [&] { loaded = load(); });
  if (why) *why = loaded.why.c_str();
  return loaded.ok ? &loaded.api : nullptr;
}

} // namespace vd
