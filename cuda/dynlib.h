// Opening a library at run time (cuBLAS, cuBLASLt, NCCL): the first of its names that dlopen
// finds, each entry point looked up by name, once per process, so that a missing library or entry
// point becomes an error message instead of a failed dlopen of vllmd itself.
#pragma once

#include <cuda_runtime.h> // CUDART_VERSION
#include <dlfcn.h>
#include <mutex>
#include <string>
#include <vector>

namespace vd {

// dlopen of the first of `names` that opens; null with *why listing what was tried.
inline void *open_library(const std::vector<std::string> &names, std::string *why) {
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

// lib<stem>.so.<CUDA major vllmd was compiled with>, then lib<stem>.so (cuBLAS, cuBLASLt).
inline std::vector<std::string> cuda_library_names(const std::string &stem) {
  return {"lib" + stem + ".so." + std::to_string(CUDART_VERSION / 1000), "lib" + stem + ".so"};
}

// *slot = the symbol `name` of lib; false with *why naming it when the library lacks it.
template <typename F> bool bind_symbol(void *lib, const char *what, const char *name, F *slot, std::string *why) {
  *slot = reinterpret_cast<F>(dlsym(lib, name));
  if (!*slot) *why = std::string(what) + " has no " + name;
  return *slot != nullptr;
}

template <typename Api> struct LoadedApi {
  Api api{};
  bool ok = false;
  std::string why;
};

// The entry-point table of the library `what` found under one of `names`, filled once per process
// (thread-safe) by bind_all(api, bind), where bind(name, &slot) looks one symbol up: the table, or
// null with *why saying what was tried. The library stays loaded, as handles made from it may.
template <typename Api, typename BindAll>
const Api *load_api(const std::vector<std::string> &names, const char *what, BindAll bind_all, const char **why) {
  static std::once_flag once;
  static LoadedApi<Api> loaded;
  std::call_once(once, [&] {
    void *lib = open_library(names, &loaded.why);
    if (!lib) return;
    auto bind = [&](const char *name, auto *slot) { return bind_symbol(lib, what, name, slot, &loaded.why); };
    loaded.ok = bind_all(loaded.api, bind);
  });
  if (why) *why = loaded.why.c_str();
  return loaded.ok ? &loaded.api : nullptr;
}

} // namespace vd
