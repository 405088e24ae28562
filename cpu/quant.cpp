// FP8 weights on the cpu: per-row quantization (vLLM's --quantization fp8 at load) and the GEMM,
// which is vd_gemm's tiled kernel reading e4m3 codes through a table, then one scale per output
// column (and, for W8A8, per row: x quantized per row first). The reference the cuda kernels are
// checked against.
#include <algorithm>
#include <cmath>
#include <vector>

#include "internal.h"
#include "rank.h"

using namespace vd;

namespace {

// Fills kFp8E4m3Table when the library loads, before any call can read it.
struct Fp8TableInit {
  Fp8TableInit() {
    for (int b = 0; b < 256; b++) kFp8E4m3Table[b] = fp8_e4m3_to_f32(uint8_t(b));
  }
};

// q[r, :] = e4m3(src[r, :] / scale[r]), scale[r] = max|src[r, :]| / 448 (1 for a row of zeros):
// vd_quantize_fp8, and W8A8's activations in vd_gemm_fp8.
void quantize_rows(const void *src, int32_t dt, int64_t rows, int64_t cols, uint8_t *q, float *scale) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelElems)
  for (int64_t r = 0; r < rows; r++) {
    float absmax = 0.0f;
    for (int64_t c = 0; c < cols; c++) absmax = std::max(absmax, std::fabs(load_as_f32(src, r * cols + c, dt)));
    const float s = absmax > 0.0f ? absmax / kFp8E4m3Max : 1.0f;
    scale[r] = s;
    for (int64_t c = 0; c < cols; c++) q[r * cols + c] = f32_to_fp8_e4m3(load_as_f32(src, r * cols + c, dt) / s);
  }
}

} // namespace

float vd::kFp8E4m3Table[256];
static const Fp8TableInit fp8_table_init;

VD_API int32_t vd_quantize_fp8(uint64_t ctx, uint64_t q, uint64_t scales, uint64_t src, int64_t rows, int64_t cols,
                               int32_t src_dtype) {
  clear_error();
  VD_ON_EVERY_RANK(ctx, vd_quantize_fp8(ctx, q, scales, src, rows, cols, src_dtype));
  const char *fn = "vd_quantize_fp8";
  int32_t st = check_float_dtype(fn, "src_dtype", src_dtype);
  if (st == VD_OK) st = check_nonneg(fn, "rows", rows);
  if (st == VD_OK) st = check_nonneg(fn, "cols", cols);
  if (st != VD_OK) return st;
  Span sq, ss, sx;
  if (!lookup_sized(ctx, q, "vd_quantize_fp8(q)", bytes_of(rows, cols, 1), &sq) ||
      !lookup_sized(ctx, scales, "vd_quantize_fp8(scales)", bytes_of(1, rows, 4), &ss) ||
      !lookup_sized(ctx, src, "vd_quantize_fp8(src)", bytes_of(rows, cols, dtype_bytes(src_dtype)), &sx))
    return VD_ERR_INVALID_ARGUMENT;
  quantize_rows(sx.data, src_dtype, rows, cols, sq.data, reinterpret_cast<float *>(ss.data));
  return VD_OK;
}

VD_API int32_t vd_gemm_fp8(uint64_t ctx, uint64_t out, uint64_t x, uint64_t w, uint64_t w_scale, uint64_t bias,
                           int64_t m, int64_t n, int64_t k, int32_t act_dtype, int32_t act_quant) {
  clear_error();
  VD_ON_EVERY_RANK(ctx, vd_gemm_fp8(ctx, out, x, w, w_scale, bias, m, n, k, act_dtype, act_quant));
  const char *fn = "vd_gemm_fp8";
  int32_t st = check_act_dtype(fn, act_dtype);
  if (st == VD_OK) st = check_nonneg(fn, "m", m);
  if (st == VD_OK) st = check_nonneg(fn, "n", n);
  if (st == VD_OK) st = check_nonneg(fn, "k", k);
  if (st == VD_OK) st = check_act_quant(fn, act_quant);
  if (st != VD_OK) return st;
  Span so, sx, sw, ss, sb{nullptr, 0};
  if (!lookup_sized(ctx, out, "vd_gemm_fp8(out)", bytes_of(m, n, 4), &so) ||
      !lookup_sized(ctx, x, "vd_gemm_fp8(x)", bytes_of(m, k, 4), &sx) ||
      !lookup_sized(ctx, w, "vd_gemm_fp8(w)", bytes_of(n, k, 1), &sw) ||
      !lookup_sized(ctx, w_scale, "vd_gemm_fp8(w_scale)", bytes_of(1, n, 4), &ss) ||
      (bias != 0 && !lookup_sized(ctx, bias, "vd_gemm_fp8(bias)", bytes_of(1, n, 4), &sb)))
    return VD_ERR_INVALID_ARGUMENT;
  float *o = reinterpret_cast<float *>(so.data);
  const float *xf = reinterpret_cast<const float *>(sx.data);
  std::vector<uint8_t> codes; // W8A8: x's codes, their values and the row scales
  std::vector<float> xq, xs;
  if (act_quant == VD_ACT_QUANT_FP8_ROW) {
    codes.resize(size_t(m * k));
    xs.resize(size_t(m));
    quantize_rows(xf, VD_F32, m, k, codes.data(), xs.data());
    xq.resize(codes.size());
    for (size_t i = 0; i < codes.size(); i++) xq[i] = kFp8E4m3Table[codes[i]];
    xf = xq.data();
  }
  run_gemm(xf, sw.data, VD_FP8_E4M3, nullptr, o, m, n, k);
  const float *s = reinterpret_cast<const float *>(ss.data), *b = reinterpret_cast<const float *>(sb.data);
#pragma omp parallel for schedule(static) if (m * n >= kParallelElems)
  for (int64_t i = 0; i < m; i++) {
    const float row = xs.empty() ? 1.0f : xs[size_t(i)];
    for (int64_t j = 0; j < n; j++) o[i * n + j] = o[i * n + j] * (row * s[j]) + (b ? b[j] : 0.0f);
  }
  return VD_OK;
}
