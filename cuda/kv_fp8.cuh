// e4m3 KV caches in the tensor-core attention kernels (attention_prefill.cuh, attention_decode.cuh).
//
// The codes of a key tile arrive by cp.async into a staging area in shared memory (D bytes a row,
// rows in order), two stages deep like the f16/bf16 tiles, and are widened into one f16/bf16 tile
// of the usual swizzled layout (mma.cuh's chunk_at) just before the tile is used, so ldmatrix and
// mma.sync run exactly as for a 16-bit cache. e4m3 values are exact in f16 and in bf16, so the
// widening loses nothing; the scales are not applied here: k_scale is folded into the softmax
// scale and v_scale into the output (attention.cu).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cstdint>

#include "common.cuh" // dtype.cuh's e4m3x2_to_float2
#include "mma.cuh"

namespace vd {
namespace kv_fp8 {

__device__ __forceinline__ uint4 ld_shared16(uint32_t addr) {
  uint4 v;
  asm volatile("ld.shared.v4.b32 {%0,%1,%2,%3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(addr));
  return v;
}
__device__ __forceinline__ void st_shared16(uint32_t addr, uint4 v) {
  asm volatile("st.shared.v4.b32 [%0], {%1,%2,%3,%4};\n" ::"r"(addr), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w));
}

// Two codes (the low byte first) as two T values in one word (the first in the low half).
template <typename T> __device__ __forceinline__ uint32_t widen2(uint32_t two) {
  const float2 f = e4m3x2_to_float2(uint16_t(two & 0xffffu));
  return mma::Mma<T>::pack(f.x, f.y); // exact: every e4m3 value is an f16 and a bf16 value
}

// Byte offset of staged row j, 16-byte piece c (16 codes).
template <int D> __device__ __forceinline__ uint32_t code_at(int j, int c) { return uint32_t((j * (D / 16) + c) * 16); }

// The KEYS x D codes at `codes` widened into the T tile at `tile` (chunk_at layout); the threads
// first, first + stride, ... share the work.
template <typename T, int D, int KEYS>
__device__ __forceinline__ void widen_tile(uint32_t codes, uint32_t tile, int first, int stride) {
  for (int e = first; e < KEYS * (D / 16); e += stride) {
    const int j = e / (D / 16), c = e % (D / 16);
    const uint4 v = ld_shared16(codes + code_at<D>(j, c));
    const uint4 lo{widen2<T>(v.x), widen2<T>(v.x >> 16), widen2<T>(v.y), widen2<T>(v.y >> 16)};
    const uint4 hi{widen2<T>(v.z), widen2<T>(v.z >> 16), widen2<T>(v.w), widen2<T>(v.w >> 16)};
    st_shared16(tile + mma::chunk_at<D>(j, 2 * c), lo);
    st_shared16(tile + mma::chunk_at<D>(j, 2 * c + 1), hi);
  }
}

} // namespace kv_fp8
} // namespace vd
