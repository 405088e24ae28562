// Where a checkpoint keeps each code and zero of its integer weights (vllmd.h: vd_repack_int), for
// every VD_PACK_* layout. Host and device code both use these, so the cpu reference and the GPU
// repack read a checkpoint through the same index arithmetic.
#pragma once

#include <cstdint>

#include "vllmd.h"
#include "host_device.h"

namespace vd {

// Code j of a 32-bit word of `bits`-bit codes.
VD_HOST_DEVICE uint32_t code_at(uint32_t word, int64_t j, int32_t bits) {
  return (word >> (j * bits)) & ((1u << bits) - 1u);
}

// AutoAWQ packs output channels 0 2 4 6 1 3 5 7 into nibbles 0..7: channel j is at nibble
// (j % 2) * 4 + j / 2.
VD_HOST_DEVICE int64_t awq_slot(int64_t j) { return (j & 1) * 4 + (j >> 1); }

// The code of (k, n) in qweight, for a layer of n_total output channels and k_total inputs.
VD_HOST_DEVICE uint32_t checkpoint_code(const uint32_t *qweight, int64_t k, int64_t n, int64_t n_total, int64_t k_total,
                                        int32_t bits, int32_t layout) {
  const int64_t per = 32 / bits;
  if (layout == VD_PACK_AWQ) return code_at(qweight[k * (n_total / per) + n / per], awq_slot(n % per), bits);
  if (layout == VD_PACK_ROWS) return code_at(qweight[n * (k_total / per) + k / per], k % per, bits);
  return code_at(qweight[(k / per) * n_total + n], k % per, bits);
}

// The zero of (g, n) as vd_gemm_int uses it.
VD_HOST_DEVICE uint32_t checkpoint_zero(const uint32_t *qzeros, int64_t g, int64_t n, int64_t n_total, int32_t bits,
                                        int32_t layout) {
  const int64_t per = 32 / bits;
  const uint32_t word = qzeros[g * (n_total / per) + n / per];
  if (layout == VD_PACK_AWQ) return code_at(word, awq_slot(n % per), bits);
  return code_at(word, n % per, bits) + (layout == VD_PACK_GPTQ ? 1u : 0u);
}

// Word `wd` of row n in vd_gemm_int's layout: code positions wd*per .. wd*per + per - 1, each the
// checkpoint's code of input k_perm[position] (of input `position` when k_perm is null).
VD_HOST_DEVICE uint32_t repacked_word(const uint32_t *qweight, int64_t wd, int64_t n, int64_t n_total, int64_t k_total,
                                      int32_t bits, int32_t layout, const int32_t *k_perm) {
  const int64_t per = 32 / bits;
  uint32_t out = 0;
  for (int64_t j = 0; j < per; j++) {
    const int64_t pos = wd * per + j, k = k_perm ? int64_t(k_perm[pos]) : pos;
    out |= checkpoint_code(qweight, k, n, n_total, k_total, bits, layout) << (j * bits);
  }
  return out;
}

} // namespace vd
