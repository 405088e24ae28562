// Element conversions for the CUDA backend (bf16/f16 via the CUDA headers' intrinsics).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace vd {

__device__ __forceinline__ float load_f32(const void *p, int64_t i, int32_t dtype) {
  if (dtype == VD_F32) return static_cast<const float *>(p)[i];
  if (dtype == VD_BF16) return __bfloat162float(static_cast<const __nv_bfloat16 *>(p)[i]);
  return __half2float(static_cast<const __half *>(p)[i]);
}

__device__ __forceinline__ void store_f32(void *p, int64_t i, int32_t dtype, float v) {
  if (dtype == VD_F32) static_cast<float *>(p)[i] = v;
  else if (dtype == VD_BF16) static_cast<__nv_bfloat16 *>(p)[i] = __float2bfloat16_rn(v);
  else static_cast<__half *>(p)[i] = __float2half_rn(v);
}

} // namespace vd
