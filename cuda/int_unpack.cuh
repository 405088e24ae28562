// The codes of a packed 32-bit word of integer weights as f16/bf16 pairs for mma.sync's A operand,
// and x's matching values as B-operand pairs: the unpacking of cuda/gemv_int.cuh's GEMV (its
// header says why the pairs are taken in this order and how the zero point and scale enter).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <type_traits>

#include "mma.cuh"

namespace vd {
namespace gemv_int {

__device__ __forceinline__ uint32_t and_or(uint32_t a, uint32_t mask, uint32_t bits) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(r) : "r"(a), "r"(mask), "r"(bits)); // (a & mask) | bits
  return r;
}

// Pair arithmetic on the activation type's 2-vector V (__half2, __nv_bfloat162), on the 32-bit
// registers mma takes; Pair<T> adds the type's magic number and its float-to-pair conversion.
template <typename V> struct PairOps {
  __device__ static uint32_t sub(uint32_t a, uint32_t b) { return bits(__hsub2(val(a), val(b))); }
  __device__ static uint32_t mul(uint32_t a, uint32_t b) { return bits(__hmul2(val(a), val(b))); }
  __device__ static uint32_t fma(uint32_t a, uint32_t b, uint32_t c) { return bits(__hfma2(val(a), val(b), val(c))); }
  __device__ static V val(uint32_t u) { return *reinterpret_cast<const V *>(&u); }
  __device__ static uint32_t bits(V v) { return *reinterpret_cast<const uint32_t *>(&v); }
};
template <typename T> struct Pair;
template <> struct Pair<__half> : PairOps<__half2> {
  static constexpr uint32_t kMagic = 0x64006400u; // f16 1024: 0x6400 | q is 1024 + q
  static constexpr float kMagicValue = 1024.0f;
  static constexpr bool kHighNibble = true; // 0x6400 | q << 4 is 1024 + 16q: the mantissa has room
  __device__ static uint32_t splat(float v) { return bits(__float2half2_rn(v)); }
};
template <> struct Pair<__nv_bfloat16> : PairOps<__nv_bfloat162> {
  static constexpr uint32_t kMagic = 0x43004300u; // bf16 128: 0x4300 | q is 128 + q for q < 128
  static constexpr float kMagicValue = 128.0f;
  static constexpr bool kHighNibble = false; // a 7-bit mantissa: q << 4 would reach the exponent
  __device__ static uint32_t splat(float v) { return bits(__float2bfloat162_rn(v)); }
};

// One row's group coefficients, ready for the unpacking below.
struct Coef {
  float zero, scale;
  // 4-bit, as pairs of the act type: magic + zero, -(magic / 16 + zero), scale
  uint32_t zero_pair, zero_high_pair, scale_pair;
};

// The codes of one 32-bit word as A-fragment pairs and x's matching values as B-fragment pairs.
// kPairs pairs, kPairs / 2 mma k-steps per word.
template <typename T, int Bits> struct Word;

// 4-bit: pair j holds codes (j, j + 4), x pairs likewise. A code in a half's low nibble becomes
// magic + q. In f16 one in its high nibble becomes magic + 16q, which an fma by 1/16 brings back
// (exactly: the result q - zero is a small integer), so one shift serves two pairs.
template <typename T> struct Word<T, 4> {
  static constexpr int kPairs = 4, kCodes = 8;
  template <bool kScaled> __device__ static void codes(uint32_t w, const Coef &c, uint32_t *out) {
    const uint32_t sixteenth = Pair<T>::splat(0.0625f);
#pragma unroll
    for (int j = 0; j < 4; j += 2) {
      const uint32_t v = w >> (4 * j);
      out[j] = Pair<T>::sub(and_or(v, 0x000f000fu, Pair<T>::kMagic), c.zero_pair);
      out[j + 1] = Pair<T>::kHighNibble ? Pair<T>::fma(and_or(v, 0x00f000f0u, Pair<T>::kMagic), sixteenth, c.zero_high_pair)
                                        : Pair<T>::sub(and_or(v >> 4, 0x000f000fu, Pair<T>::kMagic), c.zero_pair);
    }
    if (kScaled)
#pragma unroll
      for (int j = 0; j < 4; j++) out[j] = Pair<T>::mul(out[j], c.scale_pair);
  }
  __device__ static void xs(const uint4 &v, uint32_t *out) { // v: x at the word's 8 positions
    out[0] = __byte_perm(v.x, v.z, 0x5410);
    out[1] = __byte_perm(v.x, v.z, 0x7632);
    out[2] = __byte_perm(v.y, v.w, 0x5410);
    out[3] = __byte_perm(v.y, v.w, 0x7632);
  }
};

template <typename T> struct Word<T, 8> { // pair j: codes (2j, 2j + 1); x pairs as they lie
  static constexpr int kPairs = 2, kCodes = 4;
  template <bool kScaled> __device__ static void codes(uint32_t w, const Coef &c, uint32_t *out) {
    const float base = 8388608.0f + c.zero; // 2^23 + zero: exact for whole zeros
#pragma unroll
    for (int j = 0; j < 2; j++) {
      float lo = __int_as_float(__byte_perm(w, 0x4b000000u, 0x7650 + 2 * j)) - base;
      float hi = __int_as_float(__byte_perm(w, 0x4b000000u, 0x7651 + 2 * j)) - base;
      if (kScaled) lo *= c.scale, hi *= c.scale;
      out[j] = mma::Mma<T>::pack(lo, hi);
    }
  }
  __device__ static void xs(const uint2 &v, uint32_t *out) { out[0] = v.x, out[1] = v.y; }
};

template <int Bits> using XWord = typename std::conditional<Bits == 4, uint4, uint2>::type;

} // namespace gemv_int
} // namespace vd
