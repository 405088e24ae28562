// Integer weights on the cpu (vllmd.h: vd_gemm_int, vd_repack_int): the reference the GPU kernels
// are checked against. The GEMM dequantizes the weights into f32 once per call, in a scratch
// buffer kept by the calling thread, then runs vd_gemm's tiled kernel.
#include <vector>

#include "../common/int_layouts.h"
#include "internal.h"
#include "rank.h"

using namespace vd;

namespace {

// w [n, k] as f32 in input order: (q - zero) * scale, per the layout vd_gemm_int documents; the
// code at position c lands on input k_perm[c] (on c without a k_perm).
void dequantize(const uint32_t *w, const float *scales, const float *zeros, int64_t n, int64_t k, int32_t bits,
                int64_t group_size, int64_t groups, const int32_t *k_perm, float *out) {
  const int64_t per_word = 32 / bits, words = k / per_word;
#pragma omp parallel for schedule(static) if (n * k >= kParallelElems)
  for (int64_t r = 0; r < n; r++)
    for (int64_t c = 0; c < k; c++) {
      const int64_t g = r * groups + c / group_size;
      const float q = float(code_at(w[r * words + c / per_word], c % per_word, bits));
      out[r * k + (k_perm ? k_perm[c] : c)] = (q - zeros[g]) * scales[g];
    }
}

} // namespace

VD_API int32_t vd_gemm_int(uint64_t ctx, uint64_t out, uint64_t x, uint64_t w, uint64_t scales, uint64_t zeros,
                           uint64_t bias, int64_t m, int64_t n, int64_t k, int32_t bits, int64_t group_size,
                           int32_t act_dtype, uint64_t k_perm) {
  clear_error();
  VD_ON_EVERY_RANK(ctx, vd_gemm_int(ctx, out, x, w, scales, zeros, bias, m, n, k, bits, group_size, act_dtype, k_perm));
  const char *fn = "vd_gemm_int";
  int64_t groups = 0;
  int32_t st = check_act_dtype(fn, act_dtype);
  if (st == VD_OK) st = check_nonneg(fn, "m", m);
  if (st == VD_OK) st = check_int_weights(fn, bits, group_size, n, k, &groups);
  if (st != VD_OK) return st;
  Span so, sx, sw, ss, sz, sb{nullptr, 0}, sp{nullptr, 0};
  if (!lookup_sized(ctx, out, "vd_gemm_int(out)", bytes_of(m, n, 4), &so) ||
      !lookup_sized(ctx, x, "vd_gemm_int(x)", bytes_of(m, k, 4), &sx) ||
      !lookup_sized(ctx, w, "vd_gemm_int(w)", bytes_of(n, k * bits / 32, 4), &sw) ||
      !lookup_sized(ctx, scales, "vd_gemm_int(scales)", bytes_of(n, groups, 4), &ss) ||
      !lookup_sized(ctx, zeros, "vd_gemm_int(zeros)", bytes_of(n, groups, 4), &sz) ||
      (bias != 0 && !lookup_sized(ctx, bias, "vd_gemm_int(bias)", bytes_of(1, n, 4), &sb)) ||
      (k_perm != 0 && !lookup_sized(ctx, k_perm, "vd_gemm_int(k_perm)", bytes_of(1, k, 4), &sp)))
    return VD_ERR_INVALID_ARGUMENT;
  const int32_t *perm = reinterpret_cast<const int32_t *>(sp.data);
  if (perm && (st = check_k_perm(fn, perm, k)) != VD_OK) return st;
  thread_local std::vector<float> deq;
  if (deq.size() < size_t(n * k)) deq.resize(size_t(n * k));
  dequantize(reinterpret_cast<const uint32_t *>(sw.data), reinterpret_cast<const float *>(ss.data),
             reinterpret_cast<const float *>(sz.data), n, k, bits, group_size, groups, perm, deq.data());
  run_gemm(reinterpret_cast<const float *>(sx.data), deq.data(), VD_F32, sb.data, reinterpret_cast<float *>(so.data), m,
           n, k);
  return VD_OK;
}

VD_API int32_t vd_repack_int(uint64_t ctx, uint64_t w, uint64_t scales_out, uint64_t zeros_out, uint64_t qweight,
                             uint64_t qzeros, uint64_t scales, int64_t n, int64_t k, int32_t bits, int64_t group_size,
                             int32_t scale_dtype, int32_t layout, uint64_t k_perm) {
  clear_error();
  VD_ON_EVERY_RANK(ctx, vd_repack_int(ctx, w, scales_out, zeros_out, qweight, qzeros, scales, n, k, bits, group_size, scale_dtype, layout, k_perm));
  const char *fn = "vd_repack_int";
  int64_t groups = 0;
  int32_t st = check_int_weights(fn, bits, group_size, n, k, &groups);
  if (st == VD_OK) st = check_float_dtype(fn, "scale_dtype", scale_dtype);
  if (st == VD_OK) st = check_repack_layout(fn, layout, bits, n, k, group_size);
  if (st != VD_OK) return st;
  const int64_t per_word = 32 / bits, words = k / per_word;
  Span sw, so, sz, sq, sqz, ss, sp{nullptr, 0};
  if (!lookup_sized(ctx, w, "vd_repack_int(w)", bytes_of(n, words, 4), &sw) ||
      !lookup_sized(ctx, scales_out, "vd_repack_int(scales_out)", bytes_of(n, groups, 4), &so) ||
      !lookup_sized(ctx, zeros_out, "vd_repack_int(zeros_out)", bytes_of(n, groups, 4), &sz) ||
      !lookup_sized(ctx, qweight, "vd_repack_int(qweight)", bytes_of(words, n, 4), &sq) ||
      !lookup_sized(ctx, qzeros, "vd_repack_int(qzeros)", bytes_of(groups, n / per_word, 4), &sqz) ||
      !lookup_sized(ctx, scales, "vd_repack_int(scales)", bytes_of(groups, n, dtype_bytes(scale_dtype)), &ss) ||
      (k_perm != 0 && !lookup_sized(ctx, k_perm, "vd_repack_int(k_perm)", bytes_of(1, k, 4), &sp)))
    return VD_ERR_INVALID_ARGUMENT;
  const int32_t *perm = reinterpret_cast<const int32_t *>(sp.data);
  if (perm && (st = check_k_perm(fn, perm, k)) != VD_OK) return st;
  const uint32_t *qw = reinterpret_cast<const uint32_t *>(sq.data), *qz = reinterpret_cast<const uint32_t *>(sqz.data);
  uint32_t *out = reinterpret_cast<uint32_t *>(sw.data);
  float *so_f = reinterpret_cast<float *>(so.data), *sz_f = reinterpret_cast<float *>(sz.data);
#pragma omp parallel for schedule(static) if (n * words >= (int64_t(1) << 14))
  for (int64_t r = 0; r < n; r++) {
    for (int64_t wd = 0; wd < words; wd++) out[r * words + wd] = repacked_word(qw, wd, r, n, k, bits, layout, perm);
    for (int64_t g = 0; g < groups; g++) {
      so_f[r * groups + g] = load_as_f32(ss.data, g * n + r, scale_dtype);
      sz_f[r * groups + g] = float(checkpoint_zero(qz, g, r, n, bits, layout));
    }
  }
  return VD_OK;
}
