// Launch shapes and block-level helpers shared by the element-wise, row-wise and GEMM kernels of
// the CUDA backend (cuda/ops.cu, rope.cu, gemm.cu, weights.cu).
#pragma once

#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "vllmd.h" // VD_BF16

namespace vd {

constexpr int kThreads = 256; // every row / flat kernel here; block_sum relies on a multiple of 32

// Row kernels loop over rows with a grid stride, so any row count fits a capped grid.
inline int row_blocks(int64_t rows) { return int(rows < 65535 ? rows : 65535); }

// Threads per block of a row kernel: a whole row per block leaves most of the chip idle when
// there are few rows (decode), so each row then gets more threads to finish sooner.
inline int row_threads(int64_t rows) { return rows < 128 ? 1024 : kThreads; }

// Flat kernels: one element per thread up to 65535 full blocks, then a grid stride.
inline int flat_blocks(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return int(blocks < 65535 ? blocks : 65535);
}

// a * b for sizes already checked non-negative, saturating so that a size check fails instead of
// wrapping.
inline int64_t mul_sat(int64_t a, int64_t b) {
  if (a != 0 && b > INT64_MAX / a) return INT64_MAX;
  return a * b;
}

// Calls f with a value of the element type of a 16-bit float dtype (VD_BF16 or VD_F16), so one
// templated launch serves both: with_half_type(dt, [&](auto t) { using T = decltype(t); ... }).
template <typename F> void with_half_type(int32_t dtype, F &&f) {
  if (dtype == VD_BF16) f(__nv_bfloat16{});
  else f(__half{});
}

// Programmatic dependent launch (sm_90+): a kernel launched with `pdl` may be scheduled while the
// kernel before it in the stream is still finishing, which hides the launch gap between the ~300
// small kernels of a decode step. Such a kernel calls pdl_wait() before it touches memory that
// earlier work reads or writes (every thread, before any early return, so that its grid cannot
// end before the one it depends on), and pdl_launch_dependents() to let the next one be
// scheduled. Off on older GPUs and with VLLMD_CUDA_PDL=0 (Context::pdl); both calls are no-ops
// in a kernel launched without it.
template <typename... Params, typename... Args>
cudaError_t launch_kernel(bool pdl, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                          Args... args) {
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = &attr;
  cfg.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, Params(args)...);
}

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ float nan_f32() { return __int_as_float(0x7fc00000); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int d = 16; d > 0; d >>= 1) v += __shfl_xor_sync(0xffffffffu, v, d);
  return v;
}

// Sum of v over the block, in a fixed order for a given blockDim (scratch: 33 floats of shared
// memory). Every thread gets the total; ends with a barrier, so scratch may be reused at once.
__device__ __forceinline__ float block_sum(float v, float *scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < n_warps ? scratch[lane] : 0.0f;
    s = warp_sum(s);
    if (lane == 0) scratch[32] = s;
  }
  __syncthreads();
  const float total = scratch[32];
  __syncthreads();
  return total;
}

} // namespace vd
