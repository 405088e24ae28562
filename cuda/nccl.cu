// nccl_api.h's loader: libnccl.so.2 (NCCL's soname whatever the CUDA version), else libnccl.so.
#include "dynlib.h"
#include "nccl_api.h"

const vd::Nccl *vd::nccl(const char **why) {
  return load_api<Nccl>({"libnccl.so.2", "libnccl.so"}, "NCCL", [](Nccl &a, auto bind) {
    return bind("ncclGetVersion", &a.version) && bind("ncclCommInitAll", &a.comm_init_all) &&
           bind("ncclCommDestroy", &a.comm_destroy) && bind("ncclAllReduce", &a.all_reduce) &&
           bind("ncclGetErrorString", &a.error_string);
  }, why);
}
