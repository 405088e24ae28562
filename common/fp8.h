// FP8 e4m3fn (OCP): 1 sign bit, 4 exponent bits (bias 7), 3 mantissa bits; largest finite 448,
// no infinities, S.1111.111 is NaN. Host and device code both use these, so the cpu and GPU
// backends encode and decode the same bits.
#pragma once

#include <cstdint>
#include <cstring>

#include "host_device.h"

namespace vd {

constexpr float kFp8E4m3Max = 448.0f;

VD_HOST_DEVICE float fp8_e4m3_to_f32(uint8_t b) {
  const uint32_t sign = uint32_t(b & 0x80u) << 24, e = (b >> 3) & 0xfu, m = b & 7u;
  if (e == 0xf && m == 7) {
    uint32_t nan = sign | 0x7fc00000u;
    float f;
    memcpy(&f, &nan, 4);
    return f;
  }
  float mag;
  if (e == 0) {
    mag = float(m) * (1.0f / 512.0f); // subnormal: m * 2^-9
  } else {
    const uint32_t u = ((e + 120u) << 23) | (m << 20); // exponent rebased from 7 to 127
    memcpy(&mag, &u, 4);
  }
  return sign ? -mag : mag;
}

// Round to nearest even, saturating to +-448 (as torch's cast after vLLM's clamp); NaN stays NaN.
VD_HOST_DEVICE uint8_t f32_to_fp8_e4m3(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  const uint8_t sign = uint8_t((u >> 24) & 0x80u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint8_t(sign | 0x7fu);
  if (a >= 0x43e00000u) return uint8_t(sign | 0x7eu); // >= 448 (infinity too): the largest finite
  if (a < 0x3c800000u) { // below 2^-6, the smallest normal: a multiple of 2^-9, ties to even
    float mag;
    memcpy(&mag, &a, 4);
    const float scaled = mag * 512.0f; // exact: a power-of-two scale
    uint32_t q = uint32_t(scaled);
    const float rest = scaled - float(q);
    if (rest > 0.5f || (rest == 0.5f && (q & 1u))) q++;
    return uint8_t(sign | q); // q == 8 is 2^-6, the smallest normal's encoding
  }
  const uint32_t rounded = a + 0x7ffffu + ((a >> 20) & 1u);
  uint32_t v = (rounded >> 20) - (120u << 3);
  if (v > 0x7eu) v = 0x7eu;
  return uint8_t(sign | v);
}

} // namespace vd
