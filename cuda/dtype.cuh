// Element conversions for the CUDA backend (bf16/f16 via the CUDA headers' intrinsics).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

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

// Two e4m3 codes (the low byte first) as two floats, exactly: the hardware's pair conversion,
// shared by the FP8 GEMV, the dequantization kernels and the e4m3 KV tiles.
__device__ __forceinline__ float2 e4m3x2_to_float2(uint16_t two) {
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(two), __NV_E4M3);
  return __half22float2(*reinterpret_cast<const __half2 *>(&h));
}

} // namespace vd
