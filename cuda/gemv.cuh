// out[M, N] = x[M, K] · w[N, K]ᵀ (+ bias) for a few rows of x (M <= kMaxRows), f16/bf16: the
// decode-time GEMM, which only has to stream the weights once at full memory bandwidth.
// cuda/gemm.cu sends such calls here instead of cuBLAS.
//
// A warp owns kRowsPerWarp rows of w; its lanes read them in 16-byte chunks (8 elements) along
// k, kUnroll chunks per lane per round so that enough bytes are in flight to cover the memory
// latency, multiply with the matching chunks of every x row (small: they stay in L1), and keep
// f32 partial sums that a warp shuffle adds up at the end. The sum over k is in a fixed order, so
// a row's result does not depend on M or on the other rows.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common.cuh"

namespace vd {
namespace gemv {

constexpr int kMaxRows = 8;      // largest M sent here
constexpr int kRowsPerWarp = 2;
constexpr int kWarps = 8;        // per block
constexpr int kUnroll = 4;       // 16-byte chunks per lane in flight per row

template <typename T> __device__ __forceinline__ float2 to_float2(uint32_t bits);
template <> __device__ __forceinline__ float2 to_float2<__nv_bfloat16>(uint32_t bits) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&bits));
}
template <> __device__ __forceinline__ float2 to_float2<__half>(uint32_t bits) {
  return __half22float2(*reinterpret_cast<const __half2 *>(&bits));
}

// Sum of the 8 products of two 16-byte chunks.
template <typename T> __device__ __forceinline__ float dot8(const uint4 &a, const uint4 &b) {
  const uint32_t *pa = reinterpret_cast<const uint32_t *>(&a), *pb = reinterpret_cast<const uint32_t *>(&b);
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const float2 fa = to_float2<T>(pa[i]), fb = to_float2<T>(pb[i]);
    s = fmaf(fa.x, fb.x, s);
    s = fmaf(fa.y, fb.y, s);
  }
  return s;
}

__device__ __forceinline__ uint4 load_stream(const uint4 *p) { return __ldcs(p); } // read once: do not keep in L2

template <typename T, int M>
__global__ void __launch_bounds__(32 * kWarps) gemv_kernel(T *out, const T *x, const T *w, const T *bias, int n,
                                                           int k) {
  const int lane = threadIdx.x & 31;
  const int row0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * kRowsPerWarp;
  if (row0 >= n) return;
  const int chunks = k / 8; // 16-byte chunks per row
  const uint4 *wr[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; r++)
    wr[r] = reinterpret_cast<const uint4 *>(w + int64_t(min(row0 + r, n - 1)) * k); // a missing row reads row n-1
  const uint4 *xr = reinterpret_cast<const uint4 *>(x);
  float acc[kRowsPerWarp][M] = {};
  for (int c0 = lane; c0 < chunks; c0 += 32 * kUnroll) {
    uint4 wv[kRowsPerWarp][kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; u++)
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; r++)
        wv[r][u] = c0 + 32 * u < chunks ? load_stream(wr[r] + c0 + 32 * u) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int u = 0; u < kUnroll; u++) {
      const int c = c0 + 32 * u;
      if (c >= chunks) break;
#pragma unroll
      for (int mi = 0; mi < M; mi++) {
        const uint4 xv = __ldg(xr + int64_t(mi) * chunks + c);
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; r++) acc[r][mi] += dot8<T>(wv[r][u], xv);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; r++)
#pragma unroll
    for (int mi = 0; mi < M; mi++) {
      float v = acc[r][mi];
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      acc[r][mi] = v;
    }
  if (lane != 0) return;
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; r++) {
    if (row0 + r >= n) break;
    const float b = bias ? float(bias[row0 + r]) : 0.0f;
#pragma unroll
    for (int mi = 0; mi < M; mi++) out[int64_t(mi) * n + row0 + r] = T(acc[r][mi] + b);
  }
}

// Launches the kernel for M = m (1..kMaxRows) rows of x.
template <typename T>
void launch(T *out, const T *x, const T *w, const T *bias, int m, int n, int k, cudaStream_t stream) {
  const int rows_per_block = kWarps * kRowsPerWarp, blocks = (n + rows_per_block - 1) / rows_per_block;
  const dim3 grid{unsigned(blocks)}, block{32 * kWarps};
  switch (m) {
  case 1: gemv_kernel<T, 1><<<grid, block, 0, stream>>>(out, x, w, bias, n, k); break;
  case 2: gemv_kernel<T, 2><<<grid, block, 0, stream>>>(out, x, w, bias, n, k); break;
  case 3: gemv_kernel<T, 3><<<grid, block, 0, stream>>>(out, x, w, bias, n, k); break;
  case 4: gemv_kernel<T, 4><<<grid, block, 0, stream>>>(out, x, w, bias, n, k); break;
  case 5: gemv_kernel<T, 5><<<grid, block, 0, stream>>>(out, x, w, bias, n, k); break;
  case 6: gemv_kernel<T, 6><<<grid, block, 0, stream>>>(out, x, w, bias, n, k); break;
  case 7: gemv_kernel<T, 7><<<grid, block, 0, stream>>>(out, x, w, bias, n, k); break;
  default: gemv_kernel<T, 8><<<grid, block, 0, stream>>>(out, x, w, bias, n, k); break;
  }
}

} // namespace gemv
} // namespace vd
