// IEEE half <-> f32 conversions of the cpu backend (bf16 ones are inline in internal.h).
#include "internal.h"

namespace vd {

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13); // inf or NaN
  } else if (exp != 0) {
    u = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    u = sign;
  } else { // subnormal: value = man * 2^-24, exact in f32
    float f = float(man) * (1.0f / 16777216.0f);
    std::memcpy(&u, &f, 4);
    u |= sign;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float f) { // round to nearest even; overflow gives inf, NaN stays NaN
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u); // rounds to >= 65520: inf
  if (a < 0x38800000u) { // below the smallest normal half: a subnormal or zero
    float mag;
    std::memcpy(&mag, &a, 4);
    // Adding 0.5 makes the FPU round the bits below 2^-24 away, with ties to even.
    float shifted = mag + 0.5f;
    uint32_t s;
    std::memcpy(&s, &shifted, 4);
    return uint16_t(sign | (s - 0x3f000000u));
  }
  uint32_t rounded = a + 0xfffu + ((a >> 13) & 1u) - (112u << 23);
  return uint16_t(sign | (rounded >> 13));
}

} // namespace vd
