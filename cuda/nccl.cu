// nccl_api.h's loader: libnccl.so.2 (NCCL's soname), else libnccl.so.
#include "dynlib.h"
#include "nccl_api.h"

const vd::Nccl *vd::nccl(const char **why) {
  return load_once<Nccl>([] {
    LoadedApi<Nccl> l;
    void *lib = open_library({"libnccl.so.2", "libnccl.so"}, &l.why);
    if (!lib) return l;
    auto bind = [&](const char *name, auto *slot) { return bind_symbol(lib, "NCCL", name, slot, &l.why); };
    l.ok = bind("ncclGetVersion", &l.api.version) && bind("ncclCommInitAll", &l.api.comm_init_all) &&
           bind("ncclCommDestroy", &l.api.comm_destroy) && bind("ncclAllReduce", &l.api.all_reduce) &&
           bind("ncclGetErrorString", &l.api.error_string);
    return l;
  }, why);
}
