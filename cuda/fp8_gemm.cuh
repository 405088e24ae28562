// What quant.cu (vd_gemm_fp8's entry, the weight-only paths, the row quantizer) and w8a8.cu (its
// W8A8 path on cuBLASLt) share.
#pragma once

#include <cstdint>

#include "common.cuh"

namespace vd {

// One vd_gemm_fp8 call's operands, looked up and checked: out[m, n] = x[m, k] · (w[n, k] * scale[n])ᵀ + bias.
struct Fp8Gemm {
  void *out;
  const void *x, *bias; // bias may be null
  const uint8_t *w;
  const float *scale;
  int64_t m, n, k;
  int32_t act;
};

// x as it is: the FP8 GEMV for a few rows of f16/bf16, else the codes dequantized into a dense GEMM.
int32_t gemm_fp8_weight_only(Context *c, const Fp8Gemm &g);

// x quantized per row first (W8A8): cuBLASLt's FP8 product where it takes the problem, else the
// same arithmetic through gemm_fp8_weight_only (w8a8.cu).
int32_t gemm_fp8_w8a8(Context *c, const Fp8Gemm &g);

// vd_quantize_fp8's kernel: q[r, :] = e4m3(src[r, :] / scales[r]), scales[r] = max|src[r, :]| / 448.
int32_t launch_quantize_rows(Context *c, uint8_t *q, float *scales, const void *src, int64_t rows, int64_t cols,
                             int32_t dt, const char *fn);

// out[i, j] += bias[j] for out [m, n] of dt.
int32_t launch_add_bias(Context *c, void *out, const void *bias, int64_t m, int64_t n, int32_t dt, const char *fn);

// Whether W8A8 runs on FP8 tensor cores here (compute capability 8.9+, cuBLASLt loadable).
bool fast_w8a8(Context *c);

// Frees the context's cuBLASLt handle, plans and workspaces (context.cu, at destroy).
void destroy_w8a8(Context &c);

} // namespace vd
