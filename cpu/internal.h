// Shared internals of the cpu backend: error reporting, handle lookup, element conversion.
// Defined in cpu/context.cpp (errors, handles), cpu/convert.cpp (f16) and cpu/checks.cpp (checks).
#pragma once

#include <cstdint>
#include <cstring>

#include "vllmd.h"
#include "../common/fp8.h"
#include "../common/status.h"

#define VD_API extern "C" __attribute__((visibility("default")))

namespace vd {






// True if ctx is a live context handle (records an error otherwise).
bool valid_context(uint64_t ctx);

// Bytes [src_offset, src_offset + bytes) of src into host memory dst, checked, errors naming fn
// (and `what` for src): vd_copy_to_host, and vd_copy_to_host_async (the cpu finishes every copy
// inside the call).
int32_t copy_to_host(const char *fn, const char *what, uint64_t ctx, uint64_t src, uint64_t src_offset, void *dst,
                     uint64_t bytes);

inline int64_t dtype_bytes(int32_t dtype) {
  switch (dtype) {
  case VD_F32: return 4;
  case VD_F16: return 2;
  case VD_BF16: return 2;
  case VD_I32: return 4;
  case VD_FP8_E4M3: return 1;
  default: return 0;
  }
}

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t f32_to_bf16(float f) { // round to nearest even, NaN stays NaN
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Argument checks shared by the ops (cpu/checks.cpp). Each returns VD_OK or records a message
// naming `fn` and the argument, and returns the status.
int32_t check_act_dtype(const char *fn, int32_t act_dtype); // f32 only on cpu: else VD_ERR_UNSUPPORTED
inline int32_t check_weight_dtype(const char *fn, const char *arg, int32_t w_dtype) { return check_float_dtype(fn, arg, w_dtype); }

// a * b * c as a byte count, saturating at UINT64_MAX (so a size check fails instead of wrapping).

// out[m, n] = x[m, k] . w[n, k]^T (+ bias of w_dtype, none for fp8), f32 x and out (cpu/gemm.cpp).
void run_gemm(const float *x, const void *w, int32_t w_dtype, const void *bias, float *out, int64_t m, int64_t n,
              int64_t k);

// Below this many elements a second OpenMP thread costs more than it saves.
constexpr int64_t kParallelElems = int64_t(1) << 16;

// e4m3 code -> f32, all 256 of them, for weight and KV-cache loads (filled at load by cpu/quant.cpp).
extern float kFp8E4m3Table[256];

// Reads element i of a weight array of `dtype` (f32, f16, bf16 or fp8 e4m3) as f32.
inline float load_as_f32(const void *p, int64_t i, int32_t dtype) {
  switch (dtype) {
  case VD_F32: return static_cast<const float *>(p)[i];
  case VD_BF16: return bf16_to_f32(static_cast<const uint16_t *>(p)[i]);
  case VD_FP8_E4M3: return kFp8E4m3Table[static_cast<const uint8_t *>(p)[i]];
  default: return f16_to_f32(static_cast<const uint16_t *>(p)[i]);
  }
}

// Writes v to element i of an array of `dtype` (f32, f16 or bf16), rounding to nearest even.
inline void store_from_f32(void *p, int64_t i, int32_t dtype, float v) {
  switch (dtype) {
  case VD_F32: static_cast<float *>(p)[i] = v; break;
  case VD_BF16: static_cast<uint16_t *>(p)[i] = f32_to_bf16(v); break;
  default: static_cast<uint16_t *>(p)[i] = f32_to_f16(v); break;
  }
}

} // namespace vd
