// 16-byte-vector versions of the row ops of cuda/ops.cu for the model's path: f16/bf16 activations
// and weights of one dtype, rows a multiple of 8 elements, 16-byte aligned buffers. Each thread
// moves 8 elements per load instead of one, which is what a decode step's many small launches
// need to run at memory speed. They compute what the scalar kernels compute (f32 math, one
// rounding per stored value), in the same order within a thread but with a different split of a
// row across threads, so the sums of squares may differ in the last bit.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "launch.cuh"

namespace vd {
namespace vec {

// 8 elements of T as f32, and back (round to nearest even).
template <typename T> __device__ __forceinline__ void unpack8(const uint4 &v, float *f) {
  const T *e = reinterpret_cast<const T *>(&v);
#pragma unroll
  for (int i = 0; i < 8; i++) f[i] = float(e[i]);
}
template <typename T> __device__ __forceinline__ uint4 pack8(const float *f) {
  uint4 v;
  T *e = reinterpret_cast<T *>(&v);
#pragma unroll
  for (int i = 0; i < 8; i++) e[i] = T(f[i]);
  return v;
}

// rmsnorm with the optional fused residual add, as ops.cu's rmsnorm_kernel (one block per row).
template <typename T>
__global__ void rmsnorm_kernel(T *out, T *residual, const T *x, const T *weight, int64_t n_tokens, int64_t hidden,
                               float eps) {
  __shared__ float scratch[33];
  pdl_wait(); // launched with programmatic dependent launch (launch.cuh)
  pdl_launch_dependents();
  const int64_t chunks = hidden / 8;
  for (int64_t t = blockIdx.x; t < n_tokens; t += gridDim.x) {
    const uint4 *xr = reinterpret_cast<const uint4 *>(x + t * hidden);
    uint4 *rr = residual ? reinterpret_cast<uint4 *>(residual + t * hidden) : nullptr;
    float ss = 0.0f;
    for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
      float v[8];
      unpack8<T>(xr[c], v);
      if (rr) {
        float r[8];
        unpack8<T>(rr[c], r);
#pragma unroll
        for (int i = 0; i < 8; i++) r[i] += v[i];
        const uint4 stored = pack8<T>(r);
        rr[c] = stored;
        unpack8<T>(stored, v); // the rounded sum, as the next layer will read it
      }
#pragma unroll
      for (int i = 0; i < 8; i++) ss += v[i] * v[i];
    }
    const float inv = 1.0f / sqrtf(block_sum(ss, scratch) / float(hidden) + eps);
    const uint4 *src = rr ? rr : xr, *wr = reinterpret_cast<const uint4 *>(weight);
    uint4 *orow = reinterpret_cast<uint4 *>(out + t * hidden);
    for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
      float v[8], w[8];
      unpack8<T>(src[c], v);
      unpack8<T>(wr[c], w);
#pragma unroll
      for (int i = 0; i < 8; i++) v[i] = (v[i] * inv) * w[i];
      orow[c] = pack8<T>(v);
    }
  }
}

// out[T, I] = silu(gate) * up, 8 outputs per thread, flat over the whole batch.
template <typename T>
__global__ void silu_mul_kernel(T *out, const T *gate_up, int64_t n_tokens, int64_t inter) {
  pdl_wait(); // launched with programmatic dependent launch (launch.cuh)
  pdl_launch_dependents();
  const int64_t per_row = inter / 8, total = n_tokens * per_row;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = e / per_row, c = e - t * per_row;
    const uint4 *row = reinterpret_cast<const uint4 *>(gate_up + t * 2 * inter);
    float g[8], u[8];
    unpack8<T>(row[c], g);
    unpack8<T>(row[per_row + c], u);
#pragma unroll
    for (int i = 0; i < 8; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    reinterpret_cast<uint4 *>(out)[e] = pack8<T>(g);
  }
}

// Whether the vector kernels apply: one f16/bf16 dtype, whole 16-byte rows, aligned bases.
inline bool fits(int32_t act, int32_t w, int64_t row, const void *a, const void *b, const void *c, const void *d) {
  const uintptr_t bases = uintptr_t(a) | uintptr_t(b) | uintptr_t(c) | uintptr_t(d);
  return act == w && act != VD_F32 && row % 8 == 0 && bases % 16 == 0;
}

} // namespace vec
} // namespace vd
