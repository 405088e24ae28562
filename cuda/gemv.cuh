// out[M, N] = x[M, K] · w[N, K]ᵀ (+ bias) for a few rows of x (M <= kMaxRows), f16/bf16
// activations, the weights in f16/bf16 (DenseRows) or FP8 e4m3 with a scale per row (Fp8Rows):
// the decode-time GEMM, which only has to stream the weights once at full memory bandwidth.
// cuda/gemm.cu and cuda/quant.cu send such calls here instead of cuBLAS.
//
// A block owns kRowsPerBlock rows of w and its warps split k between them: lane l of warp w
// reads the 16-byte chunks w*32 + l, + 256, + 512, ... of each row (8 weights of f16/bf16, 16 of
// e4m3), kUnroll of them in flight, multiplies them with the matching activations of every x row
// (small: they stay in L1) and keeps f32 partial sums; a shuffle adds up each warp's, then warp
// 0 adds the warps' in order. So even a 1024-row matrix (the k and v projections of an 8B model)
// puts thousands of warps to work, and a row's result does not depend on M or on the other rows.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "common.cuh"
#include "launch.cuh"

namespace vd {
namespace gemv {

constexpr int kMaxRows = 8;      // largest M sent here
constexpr int kRowsPerBlock = 2; // the defaults of gemv_kernel; launch() picks per shape
constexpr int kWarps = 8;        // per block, splitting k
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
__device__ __forceinline__ void prefetch_l2(const void *p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

// The weight formats: how many weights a 16-byte chunk holds, their products with the matching
// activations (x points at the chunk's first one), and a row's result from its dot product.
template <typename T> struct DenseRows {
  static constexpr int kPerChunk = 8;
  const T *w;
  const T *bias; // or null
  __device__ __forceinline__ float dot(const uint4 &chunk, const uint4 *x) const { return dot8<T>(chunk, x[0]); }
  __device__ __forceinline__ float finish(float dot, int row) const { return dot + (bias ? float(bias[row]) : 0.0f); }
};

template <typename T> struct Fp8Rows {
  static constexpr int kPerChunk = 16;
  const uint8_t *w;
  const float *scale;
  const T *bias; // or null
  __device__ __forceinline__ float dot(const uint4 &codes, const uint4 *x) const {
    const uint16_t *pc = reinterpret_cast<const uint16_t *>(&codes);
    float s = 0.0f;
#pragma unroll
    for (int half = 0; half < 2; half++) {
      const uint4 xv = x[half];
      const uint32_t *px = reinterpret_cast<const uint32_t *>(&xv);
#pragma unroll
      for (int i = 0; i < 4; i++) {
        const float2 wf = e4m3x2_to_float2(pc[half * 4 + i]), xf = to_float2<T>(px[i]);
        s = fmaf(wf.x, xf.x, s);
        s = fmaf(wf.y, xf.y, s);
      }
    }
    return s;
  }
  __device__ __forceinline__ float finish(float dot, int row) const { return dot * scale[row] + (bias ? float(bias[row]) : 0.0f); }
};

// R: weight rows per block, U: chunks per lane and row in flight (R * U loads of 16 bytes).
template <typename T, typename W, int M, int R = kRowsPerBlock, int U = kUnroll>
__global__ void __launch_bounds__(32 * kWarps) gemv_kernel(T *out, const T *x, W fmt, int n, int k) {
  __shared__ float partial[kWarps][R][M];
  constexpr int kXChunks = W::kPerChunk / 8; // 16-byte chunks of x per chunk of weights
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, row0 = blockIdx.x * R;
  const int chunks = k / W::kPerChunk, stride = 32 * kWarps; // weight chunks per row; per round of the block
  const uint4 *wr[R];
#pragma unroll
  for (int r = 0; r < R; r++) // a missing row reads row n-1
    wr[r] = reinterpret_cast<const uint4 *>(fmt.w + int64_t(min(row0 + r, n - 1)) * k);
  const uint4 *xr = reinterpret_cast<const uint4 *>(x);
  float acc[R][M] = {};
  // The first weight chunks head for L2 before the wait for x (programmatic dependent launch,
  // launch.cuh); a prefetch cannot hand back stale data, should an earlier kernel write w.
#pragma unroll
  for (int u = 0; u < U; u++)
#pragma unroll
    for (int r = 0; r < R; r++)
      if (warp * 32 + lane + stride * u < chunks) prefetch_l2(wr[r] + warp * 32 + lane + stride * u);
  pdl_wait();
  pdl_launch_dependents();
  for (int c0 = warp * 32 + lane; c0 < chunks; c0 += stride * U) {
    uint4 wv[R][U];
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
      for (int r = 0; r < R; r++)
        wv[r][u] = c0 + stride * u < chunks ? load_stream(wr[r] + c0 + stride * u) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int c = c0 + stride * u;
      if (c >= chunks) break;
#pragma unroll
      for (int mi = 0; mi < M; mi++) {
        uint4 xv[kXChunks]; // plain loads: x was written by the kernel just before
#pragma unroll
        for (int h = 0; h < kXChunks; h++) xv[h] = xr[(int64_t(mi) * chunks + c) * kXChunks + h];
#pragma unroll
        for (int r = 0; r < R; r++) acc[r][mi] += fmt.dot(wv[r][u], xv);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int mi = 0; mi < M; mi++) {
      float v = acc[r][mi];
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == 0) partial[warp][r][mi] = v;
    }
  __syncthreads();
  if (threadIdx.x >= R * M) return;
  const int r = threadIdx.x / M, mi = threadIdx.x % M;
  if (row0 + r >= n) return;
  float dot = 0.0f;
  for (int wi = 0; wi < kWarps; wi++) dot += partial[wi][r][mi];
  out[int64_t(mi) * n + row0 + r] = T(fmt.finish(dot, row0 + r));
}

// The kernel for M = m (1..kMaxM) rows of x with R rows of w per block and U chunks in flight.
template <typename T, typename W, int R, int U, int kMaxM>
cudaError_t launch_shape(T *out, const T *x, W fmt, int m, int n, int k, cudaStream_t stream, bool pdl) {
  if (m < 1 || m > kMaxM) return cudaErrorInvalidValue; // a kernel for other rows would leave some unwritten
  const dim3 grid{unsigned((n + R - 1) / R)}, block{32 * kWarps};
  const auto go = [&](auto kernel) { return launch_kernel(pdl, kernel, grid, block, 0, stream, out, x, fmt, n, k); };
  if (m == 1) return go(gemv_kernel<T, W, 1, R, U>);
  if (m == 2) return go(gemv_kernel<T, W, 2, R, U>);
  if constexpr (kMaxM > 2) {
    switch (m) {
    case 3: return go(gemv_kernel<T, W, 3, R, U>);
    case 4: return go(gemv_kernel<T, W, 4, R, U>);
    case 5: return go(gemv_kernel<T, W, 5, R, U>);
    case 6: return go(gemv_kernel<T, W, 6, R, U>);
    case 7: return go(gemv_kernel<T, W, 7, R, U>);
    default: return go(gemv_kernel<T, W, 8, R, U>);
    }
  }
  return cudaErrorInvalidValue; // not reached
}

// Launches the kernel for M = m (1..kMaxRows) rows of x (pdl: see launch.cuh). k must be a
// multiple of W::kPerChunk, and x's and w's rows 16-byte aligned. The block shape is the fastest
// of bench/gemv-tune.cu's sweep on an H200 (bench/RESULTS.md): e4m3 rows want 4 rows a block
// (the chunks of a row run out after one or two rounds at 2), f16/bf16 ones 4 rows with 4 chunks
// in flight, or 8 rows with 1 for the lm_head's 128k rows. The shape never changes a row's sums.
// f16/bf16 weights come here for 1-2 rows only (cuBLAS is faster from 3: gemm.cu's kDenseGemvRows).
template <typename T, typename W>
cudaError_t launch(T *out, const T *x, W fmt, int m, int n, int k, cudaStream_t stream, bool pdl) {
  if constexpr (W::kPerChunk == 16) {
    return launch_shape<T, W, 4, 2, kMaxRows>(out, x, fmt, m, n, k, stream, pdl);
  } else {
    if (n >= 65536) return launch_shape<T, W, 8, 1, 2>(out, x, fmt, m, n, k, stream, pdl);
    return launch_shape<T, W, 4, 4, 2>(out, x, fmt, m, n, k, stream, pdl);
  }
}

} // namespace gemv
} // namespace vd
