// FP8 e4m3 weights on the device: per-row quantization at load, and the weight-only GEMM.
// - vd_quantize_fp8: one block per row, an absmax reduction, then common/fp8.h's encoder (the
//   cpu's bits exactly).
// - vd_gemm_fp8 with at most 8 rows of f16/bf16 x (decode): gemv.cuh's weight-streaming kernel
//   with Fp8Rows, 16 e4m3 codes per 16-byte chunk (half the bytes of bf16) converted in registers,
//   the scale and bias applied once per output.
// - otherwise: the weights dequantized (code * row scale) into a workspace of the activation
//   dtype, the dense GEMM of gemm.cu, then the bias. Correct at any
//   size; slower than bf16 for large batches, where W8A8 (w8a8.cu) is the fast path.
#include <climits>
#include <cuda_fp8.h>
#include <type_traits>

#include "../common/fp8.h"
#include "common.cuh"
#include "fp8_gemm.cuh"
#include "gemv.cuh"
#include "launch.cuh"

using namespace vd;

namespace {

const char *const kQuantFn = "vd_quantize_fp8";
const char *const kGemmFn = "vd_gemm_fp8";

__global__ void quantize_rows_kernel(uint8_t *q, float *scales, const void *src, int64_t rows, int64_t cols, int32_t dt) {
  __shared__ float warp_max[kThreads / 32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    float m = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, fabsf(load_f32(src, r * cols + c, dt)));
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x >> 5] = m;
    __syncthreads();
    float absmax = 0.0f;
    for (int w = 0; w < int(blockDim.x / 32); w++) absmax = fmaxf(absmax, warp_max[w]);
    const float s = absmax > 0.0f ? absmax / kFp8E4m3Max : 1.0f;
    if (threadIdx.x == 0) scales[r] = s;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) q[r * cols + c] = f32_to_fp8_e4m3(load_f32(src, r * cols + c, dt) / s);
    __syncthreads(); // warp_max is reused by the next row
  }
}

// ---- any size: dequantize, dense GEMM --------------------------------------------------------
// The weights are dequantized with their row scale (w = code * scale[n], one rounding to the act
// dtype), not as raw codes scaled after the GEMM: codes run to 448, and the unscaled sums of an
// f16 GEMM overflow for activations of ordinary size.

__global__ void dequantize_kernel(void *dst, const uint8_t *codes, const float *scale, int64_t n, int64_t k, int32_t dt) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n * k; i += int64_t(gridDim.x) * blockDim.x)
    store_f32(dst, i, dt, fp8_e4m3_to_f32(codes[i]) * scale[i / k]);
}

// 8 codes a thread (k a multiple of 8, so they share a row), one 8-byte load and one 16-byte
// store: the large-batch path writes every weight each call, so this runs at copy speed.
template <typename T> __global__ void dequantize8_kernel(T *dst, const uint2 *codes, const float *scale, int64_t k, int64_t octets) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < octets; i += int64_t(gridDim.x) * blockDim.x) {
    const uint2 c = codes[i];
    const uint16_t *pc = reinterpret_cast<const uint16_t *>(&c);
    const float s = scale[i * 8 / k];
    uint4 out;
    uint32_t *po = reinterpret_cast<uint32_t *>(&out);
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const float2 f = e4m3x2_to_float2(pc[j]);
      if constexpr (std::is_same<T, __half>::value) {
        const __half2 v = __floats2half2_rn(f.x * s, f.y * s);
        po[j] = *reinterpret_cast<const uint32_t *>(&v);
      } else {
        const __nv_bfloat162 v = __floats2bfloat162_rn(f.x * s, f.y * s);
        po[j] = *reinterpret_cast<const uint32_t *>(&v);
      }
    }
    reinterpret_cast<uint4 *>(dst)[i] = out;
  }
}

__global__ void add_bias_kernel(void *out, const void *bias, int64_t m, int64_t n, int32_t dt) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < m * n; i += int64_t(gridDim.x) * blockDim.x)
    store_f32(out, i, dt, load_f32(out, i, dt) + load_f32(bias, i % n, dt));
}

bool gemv_fits(const Fp8Gemm &g) {
  const uintptr_t bases = uintptr_t(g.x) | uintptr_t(g.w);
  return g.act != VD_F32 && g.m <= gemv::kMaxRows && g.k % gemv::Fp8Rows<__half>::kPerChunk == 0 && bases % 16 == 0;
}

int32_t gemm_via_dequant(Context *cp, const Fp8Gemm &g) {
  Context &c = *cp;
  int32_t st = grow_workspace(c, &c.dequant_workspace, &c.dequant_workspace_bytes,
                              uint64_t(g.n) * uint64_t(g.k) * uint64_t(dtype_bytes(g.act)), kGemmFn, "dequantization workspace");
  if (st != VD_OK) return st;
  void *ws = c.dequant_workspace;
  const int64_t count = g.n * g.k;
  if (count == 0) {
    // no weights to dequantize (k == 0): gemm_dense writes the zeros
  } else if (g.act != VD_F32 && g.k % 8 == 0 && uintptr_t(g.w) % 8 == 0) {
    with_half_type(g.act, [&](auto t) {
      using T = decltype(t);
      dequantize8_kernel<T><<<flat_blocks(count / 8), kThreads, 0, c.stream>>>(
          static_cast<T *>(ws), reinterpret_cast<const uint2 *>(g.w), g.scale, g.k, count / 8);
    });
  } else {
    dequantize_kernel<<<flat_blocks(count), kThreads, 0, c.stream>>>(ws, g.w, g.scale, g.n, g.k, g.act);
  }
  st = check_launch(kGemmFn);
  if (st == VD_OK) st = gemm_dense(cp, g.out, g.x, ws, g.m, g.n, g.k, g.act);
  return st == VD_OK && g.bias ? launch_add_bias(cp, g.out, g.bias, g.m, g.n, g.act, kGemmFn) : st;
}

} // namespace

int32_t vd::launch_quantize_rows(Context *c, uint8_t *q, float *scales, const void *src, int64_t rows, int64_t cols,
                                 int32_t dt, const char *fn) {
  quantize_rows_kernel<<<row_blocks(rows), kThreads, 0, c->stream>>>(q, scales, src, rows, cols, dt);
  return check_launch(fn);
}

int32_t vd::launch_add_bias(Context *c, void *out, const void *bias, int64_t m, int64_t n, int32_t dt, const char *fn) {
  add_bias_kernel<<<flat_blocks(m * n), kThreads, 0, c->stream>>>(out, bias, m, n, dt);
  return check_launch(fn);
}

int32_t vd::gemm_fp8_weight_only(Context *c, const Fp8Gemm &g) {
  if (g.k == 0 || !gemv_fits(g)) return gemm_via_dequant(c, g);
  cudaError_t err = cudaSuccess;
  with_half_type(g.act, [&](auto t) {
    using T = decltype(t);
    const gemv::Fp8Rows<T> fmt{g.w, g.scale, static_cast<const T *>(g.bias)};
    err = gemv::launch<T>(static_cast<T *>(g.out), static_cast<const T *>(g.x), fmt, int(g.m), int(g.n), int(g.k), c->stream, c->pdl);
  });
  return check_cuda(err, kGemmFn, "launching the FP8 GEMV kernel");
}

VD_API int32_t vd_quantize_fp8(uint64_t ctx, uint64_t q, uint64_t scales, uint64_t src, int64_t rows, int64_t cols,
                               int32_t src_dtype) {
  clear_error();
  int32_t st = check_float_dtype(kQuantFn, "src_dtype", src_dtype);
  if (st == VD_OK) st = check_nonneg(kQuantFn, "rows", rows);
  if (st == VD_OK) st = check_nonneg(kQuantFn, "cols", cols);
  if (st != VD_OK) return st;
  Context *c = context(ctx, kQuantFn);
  Span sq, ss, sx;
  if (!c || !lookup_array(ctx, q, "vd_quantize_fp8(q)", mul_sat(rows, cols), VD_FP8_E4M3, &sq) ||
      !lookup_array(ctx, scales, "vd_quantize_fp8(scales)", rows, VD_F32, &ss) ||
      !lookup_array(ctx, src, "vd_quantize_fp8(src)", mul_sat(rows, cols), src_dtype, &sx))
    return VD_ERR_INVALID_ARGUMENT;
  if (rows == 0) return VD_OK;
  return launch_quantize_rows(c, sq.data, reinterpret_cast<float *>(ss.data), sx.data, rows, cols, src_dtype, kQuantFn);
}

VD_API int32_t vd_gemm_fp8(uint64_t ctx, uint64_t out, uint64_t x, uint64_t w, uint64_t w_scale, uint64_t bias,
                           int64_t m, int64_t n, int64_t k, int32_t act_dtype, int32_t act_quant) {
  clear_error();
  int32_t st = check_float_dtype(kGemmFn, "act_dtype", act_dtype);
  if (st == VD_OK) st = check_act_quant(kGemmFn, act_quant);
  if (st == VD_OK) st = check_nonneg(kGemmFn, "m", m);
  if (st == VD_OK) st = check_nonneg(kGemmFn, "n", n);
  if (st == VD_OK) st = check_nonneg(kGemmFn, "k", k);
  if (st != VD_OK) return st;
  Context *c = context(ctx, kGemmFn);
  Span so, sx, sw, ss, sb{nullptr, 0};
  if (!c || !lookup_array(ctx, out, "vd_gemm_fp8(out)", mul_sat(m, n), act_dtype, &so) ||
      !lookup_array(ctx, x, "vd_gemm_fp8(x)", mul_sat(m, k), act_dtype, &sx) ||
      !lookup_array(ctx, w, "vd_gemm_fp8(w)", mul_sat(n, k), VD_FP8_E4M3, &sw) ||
      !lookup_array(ctx, w_scale, "vd_gemm_fp8(w_scale)", n, VD_F32, &ss) ||
      (bias != 0 && !lookup_array(ctx, bias, "vd_gemm_fp8(bias)", n, act_dtype, &sb)))
    return VD_ERR_INVALID_ARGUMENT;
  if (m > INT_MAX || n > INT_MAX || k > INT_MAX)
    return fail(VD_ERR_UNSUPPORTED, "%s: m, n and k must each be below 2^31", kGemmFn);
  if (m == 0 || n == 0) return VD_OK;
  const Fp8Gemm g{so.data, sx.data, sb.data, sw.data, reinterpret_cast<const float *>(ss.data), m, n, k, act_dtype};
  return act_quant == VD_ACT_QUANT_FP8_ROW ? gemm_fp8_w8a8(c, g) : gemm_fp8_weight_only(c, g);
}
