// Argument checks shared by the cpu ops.
#include "internal.h"

namespace vd {

int32_t check_act_dtype(const char *fn, int32_t act_dtype) {
  if (act_dtype == VD_F32) return VD_OK;
  return fail(VD_ERR_UNSUPPORTED, "%s: act_dtype %d, the cpu backend computes activations in f32 (0) only", fn,
              act_dtype);
}

int32_t check_weight_dtype(const char *fn, const char *arg, int32_t w_dtype) {
  if (w_dtype == VD_F32 || w_dtype == VD_F16 || w_dtype == VD_BF16) return VD_OK;
  return fail(VD_ERR_INVALID_ARGUMENT, "%s: %s %d, expected f32 (0), f16 (1) or bf16 (2)", fn, arg, w_dtype);
}

int32_t check_nonneg(const char *fn, const char *arg, int64_t v) {
  if (v >= 0) return VD_OK;
  return fail(VD_ERR_INVALID_ARGUMENT, "%s: %s is %lld, must be >= 0", fn, arg, (long long)v);
}

uint64_t bytes_of(int64_t a, int64_t b, int64_t c) {
  if (a < 0 || b < 0 || c < 0) return UINT64_MAX;
  unsigned __int128 p = (unsigned __int128)uint64_t(a) * uint64_t(b);
  if (p > UINT64_MAX) return UINT64_MAX;
  p *= uint64_t(c);
  return p > UINT64_MAX ? UINT64_MAX : uint64_t(p);
}

} // namespace vd
