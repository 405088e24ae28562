// FP8 e4m3 weights on the device: per-row quantization at load, and the weight-only GEMM.
// - vd_quantize_fp8: one block per row, an absmax reduction, then common/fp8.h's encoder (the
//   cpu's bits exactly).
// - vd_gemm_fp8 with at most 8 rows of f16/bf16 x (decode): a weight-streaming kernel shaped as
//   gemv.cuh's, reading 16 e4m3 codes per 16-byte chunk (half the bytes of bf16), converting them
//   in registers, the scale and bias applied once per output.
// - otherwise: the codes dequantized (exactly: e4m3 fits f16/bf16/f32) into a workspace of the
//   activation dtype, the dense GEMM of gemm.cu, then scale and bias per column. Correct at any
//   size; not yet faster than bf16 for large batches (W8A8 on tensor cores is the next step).
#include <climits>
#include <cuda_fp8.h>

#include "../common/fp8.h"
#include "common.cuh"
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

// ---- the decode kernel: as gemv.cuh, 16 codes per chunk -------------------------------------

constexpr int kMaxRows = 8, kRowsPerBlock = 2, kWarps = 8, kUnroll = 4;

template <typename T> __device__ __forceinline__ float2 pair_to_float2(uint32_t bits);
template <> __device__ __forceinline__ float2 pair_to_float2<__nv_bfloat16>(uint32_t bits) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&bits));
}
template <> __device__ __forceinline__ float2 pair_to_float2<__half>(uint32_t bits) {
  return __half22float2(*reinterpret_cast<const __half2 *>(&bits));
}

// Sum of 16 products: 16 e4m3 codes (one 16-byte chunk) with 16 activations (two chunks).
template <typename T> __device__ __forceinline__ float dot16(const uint4 &codes, const uint4 &x0, const uint4 &x1) {
  const uint16_t *pc = reinterpret_cast<const uint16_t *>(&codes);
  const uint32_t *px0 = reinterpret_cast<const uint32_t *>(&x0), *px1 = reinterpret_cast<const uint32_t *>(&x1);
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < 8; i++) {
    const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(pc[i]), __NV_E4M3);
    const float2 w = __half22float2(*reinterpret_cast<const __half2 *>(&h));
    const float2 x = pair_to_float2<T>(i < 4 ? px0[i] : px1[i - 4]);
    s = fmaf(w.x, x.x, s);
    s = fmaf(w.y, x.y, s);
  }
  return s;
}

template <typename T, int M>
__global__ void __launch_bounds__(32 * kWarps) gemv_fp8_kernel(T *out, const T *x, const uint8_t *w, const float *scale,
                                                               const T *bias, int n, int k) {
  __shared__ float partial[kWarps][kRowsPerBlock][M];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, row0 = blockIdx.x * kRowsPerBlock;
  const int chunks = k / 16, stride = 32 * kWarps;
  const uint4 *wr[kRowsPerBlock];
#pragma unroll
  for (int r = 0; r < kRowsPerBlock; r++) wr[r] = reinterpret_cast<const uint4 *>(w + int64_t(min(row0 + r, n - 1)) * k);
  const uint4 *xr = reinterpret_cast<const uint4 *>(x); // two chunks of x per chunk of codes
  float acc[kRowsPerBlock][M] = {};
  pdl_wait();
  pdl_launch_dependents();
  for (int c0 = warp * 32 + lane; c0 < chunks; c0 += stride * kUnroll) {
    uint4 wv[kRowsPerBlock][kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; u++)
#pragma unroll
      for (int r = 0; r < kRowsPerBlock; r++)
        wv[r][u] = c0 + stride * u < chunks ? __ldcs(wr[r] + c0 + stride * u) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int u = 0; u < kUnroll; u++) {
      const int c = c0 + stride * u;
      if (c >= chunks) break;
#pragma unroll
      for (int mi = 0; mi < M; mi++) {
        const uint4 x0 = xr[(int64_t(mi) * chunks + c) * 2], x1 = xr[(int64_t(mi) * chunks + c) * 2 + 1];
#pragma unroll
        for (int r = 0; r < kRowsPerBlock; r++) acc[r][mi] += dot16<T>(wv[r][u], x0, x1);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerBlock; r++)
#pragma unroll
    for (int mi = 0; mi < M; mi++) {
      float v = acc[r][mi];
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == 0) partial[warp][r][mi] = v;
    }
  __syncthreads();
  if (threadIdx.x >= kRowsPerBlock * M) return;
  const int r = threadIdx.x / M, mi = threadIdx.x % M;
  if (row0 + r >= n) return;
  float dot = 0.0f;
  for (int wi = 0; wi < kWarps; wi++) dot += partial[wi][r][mi];
  out[int64_t(mi) * n + row0 + r] = T(dot * scale[row0 + r] + (bias ? float(bias[row0 + r]) : 0.0f));
}

template <typename T>
cudaError_t launch_gemv(T *out, const T *x, const uint8_t *w, const float *scale, const T *bias, int m, int n, int k,
                        cudaStream_t stream, bool pdl) {
  const dim3 grid{unsigned((n + kRowsPerBlock - 1) / kRowsPerBlock)}, block{32 * kWarps};
  const auto go = [&](auto kernel) { return launch_kernel(pdl, kernel, grid, block, 0, stream, out, x, w, scale, bias, n, k); };
  switch (m) {
  case 1: return go(gemv_fp8_kernel<T, 1>);
  case 2: return go(gemv_fp8_kernel<T, 2>);
  case 3: return go(gemv_fp8_kernel<T, 3>);
  case 4: return go(gemv_fp8_kernel<T, 4>);
  case 5: return go(gemv_fp8_kernel<T, 5>);
  case 6: return go(gemv_fp8_kernel<T, 6>);
  case 7: return go(gemv_fp8_kernel<T, 7>);
  default: return go(gemv_fp8_kernel<T, 8>);
  }
}

// ---- any size: dequantize, dense GEMM, scale --------------------------------------------------

__global__ void dequantize_kernel(void *dst, const uint8_t *codes, int64_t count, int32_t dt) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    store_f32(dst, i, dt, fp8_e4m3_to_f32(codes[i]));
}

__global__ void scale_columns_kernel(void *out, const float *scale, const void *bias, int64_t m, int64_t n, int32_t dt) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < m * n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = i % n;
    store_f32(out, i, dt, load_f32(out, i, dt) * scale[j] + (bias ? load_f32(bias, j, dt) : 0.0f));
  }
}

// The context's dequantization workspace, grown to at least `bytes` (outside graph capture only).
int32_t dequant_workspace(Context &c, uint64_t bytes, void **out) {
  if (c.dequant_workspace_bytes < bytes) {
    if (c.capturing)
      return fail(VD_ERR_INVALID_ARGUMENT, "%s: a graph capture needs a larger dequantization workspace than an eager "
                  "run of the same shape made; run the step once before capturing it", kGemmFn);
    if (c.dequant_workspace) cudaFree(c.dequant_workspace);
    c.dequant_workspace = nullptr;
    c.dequant_workspace_bytes = 0;
    int32_t st = check_cuda(cudaMalloc(&c.dequant_workspace, bytes), kGemmFn, "cudaMalloc(dequantization workspace)");
    if (st != VD_OK) return st;
    c.dequant_workspace_bytes = bytes;
  }
  *out = c.dequant_workspace;
  return VD_OK;
}

struct Fp8Args {
  Context *c;
  void *out;
  const void *x, *bias;
  const uint8_t *w;
  const float *scale;
  int64_t m, n, k;
  int32_t ad;
};

bool gemv_fits(const Fp8Args &g) {
  const uintptr_t bases = uintptr_t(g.x) | uintptr_t(g.w);
  return g.ad != VD_F32 && g.m <= kMaxRows && g.k % 16 == 0 && bases % 16 == 0;
}

int32_t gemm_via_dequant(const Fp8Args &g) {
  void *ws = nullptr;
  int32_t st = dequant_workspace(*g.c, uint64_t(g.n) * uint64_t(g.k) * uint64_t(dtype_bytes(g.ad)), &ws);
  if (st != VD_OK) return st;
  dequantize_kernel<<<flat_blocks(g.n * g.k), kThreads, 0, g.c->stream>>>(ws, g.w, g.n * g.k, g.ad);
  st = check_launch(kGemmFn);
  if (st == VD_OK) st = gemm_dense(g.c, g.out, g.x, ws, g.m, g.n, g.k, g.ad);
  if (st != VD_OK) return st;
  scale_columns_kernel<<<flat_blocks(g.m * g.n), kThreads, 0, g.c->stream>>>(g.out, g.scale, g.bias, g.m, g.n, g.ad);
  return check_launch(kGemmFn);
}

} // namespace

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
  quantize_rows_kernel<<<row_blocks(rows), kThreads, 0, c->stream>>>(sq.data, reinterpret_cast<float *>(ss.data), sx.data,
                                                                    rows, cols, src_dtype);
  return check_launch(kQuantFn);
}

VD_API int32_t vd_gemm_fp8(uint64_t ctx, uint64_t out, uint64_t x, uint64_t w, uint64_t w_scale, uint64_t bias,
                           int64_t m, int64_t n, int64_t k, int32_t act_dtype) {
  clear_error();
  int32_t st = check_float_dtype(kGemmFn, "act_dtype", act_dtype);
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
  const Fp8Args g{c, so.data, sx.data, sb.data, sw.data, reinterpret_cast<const float *>(ss.data), m, n, k, act_dtype};
  if (k == 0 || !gemv_fits(g)) return gemm_via_dequant(g);
  cudaError_t err = cudaSuccess;
  with_half_type(act_dtype, [&](auto t) {
    using T = decltype(t);
    err = launch_gemv<T>(static_cast<T *>(g.out), static_cast<const T *>(g.x), g.w, g.scale, static_cast<const T *>(g.bias),
                         int(m), int(n), int(k), c->stream, c->pdl);
  });
  return check_cuda(err, kGemmFn, "launching the FP8 GEMV kernel");
}
