// The counter-based random number of vd_sample: one uniform in [0, 1) from (seed, step) alone.
//
// Part of the sampling contract: every backend must produce the same bits, so that a request
// draws the same tokens whatever batch, thread or device it runs on, and a preempted request
// that is recomputed draws what it would have drawn. The formula, on uint64 with wrap-around:
//
//   mix64(z)      = z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB;
//                   z ^ (z >> 31)
//   splitmix64(z) = mix64(z + 0x9E3779B97F4A7C15)          (the SplitMix64 output function)
//   x             = splitmix64(seed ^ splitmix64(step))
//   u             = (x >> 11) * 2^-53                       (53 random bits, exact in a double)
//
// seed = uint32(seed_lo) | uint32(seed_hi) << 32 (the VD_SP_SEED_* columns), step = VD_SP_STEP.
// Plain inline functions so that the CUDA backend can include this header unchanged.
#pragma once

#include <stdint.h>

#include "host_device.h"

namespace vd {

constexpr uint64_t kGoldenGamma = 0x9E3779B97F4A7C15ull;

VD_HOST_DEVICE uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

VD_HOST_DEVICE uint64_t splitmix64(uint64_t z) { return mix64(z + kGoldenGamma); }

// The 64 random bits of draw `step` of the stream named by `seed`.
VD_HOST_DEVICE uint64_t counter_bits(uint64_t seed, uint64_t step) { return splitmix64(seed ^ splitmix64(step)); }

// The uniform in [0, 1) of draw `step`; never 1, may be 0.
VD_HOST_DEVICE double counter_uniform(uint64_t seed, uint64_t step) {
  return double(counter_bits(seed, step) >> 11) * (1.0 / 9007199254740992.0); // 2^-53
}

// The 64-bit seed from its two i32 halves as vd_sample receives them.
VD_HOST_DEVICE uint64_t seed_from_halves(int32_t lo, int32_t hi) {
  return uint64_t(uint32_t(lo)) | (uint64_t(uint32_t(hi)) << 32);
}

} // namespace vd
