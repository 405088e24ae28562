// Argument checks shared by the cpu ops.
#include "internal.h"

namespace vd {

int32_t check_act_dtype(const char *fn, int32_t act_dtype) {
  if (act_dtype == VD_F32) return VD_OK;
  return fail(VD_ERR_UNSUPPORTED, "%s: act_dtype %d, the cpu backend computes activations in f32 (0) only", fn,
              act_dtype);
}

} // namespace vd
