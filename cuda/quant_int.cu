// Integer weights on the device (vllmd.h: vd_gemm_int, vd_repack_int).
// - vd_repack_int: one thread per output word gathers its codes through common/int_layouts.h, the
//   index arithmetic the cpu reference uses; threads of a warp take neighbouring n, so they read
//   neighbouring checkpoint words. Runs once per layer at load: simplicity over speed.
//   Scales and zeros become f32 [N, G]. An act-order k_perm is checked on the host first.
// - vd_gemm_int with at most 32 rows of f16/bf16 x (decode): gemv_int.cuh's weight-streaming
//   tensor-core kernel, the codes unpacked in registers.
// - otherwise: the weights dequantized into a workspace of the activation dtype, then the dense
//   GEMM of gemm.cu and the bias. Correct at any size; for large batches a kernel that unpacks
//   tiles into the GEMM's shared memory would save the workspace's write and read.
#include <climits>
#include <type_traits>
#include <vector>

#include "../common/int_layouts.h"
#include "common.cuh"
#include "fp8_gemm.cuh" // launch_add_bias
#include "gemv_int.cuh"
#include "launch.cuh"

using namespace vd;

namespace {

const char *const kGemmFn = "vd_gemm_int";
const char *const kRepackFn = "vd_repack_int";

__global__ void repack_words_kernel(uint32_t *out, const uint32_t *qweight, int64_t n, int64_t words, int32_t bits,
                                    int32_t layout, const int32_t *k_perm) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n * words; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i % n, wd = i / n;
    out[r * words + wd] = repacked_word(qweight, wd, r, n, words * (32 / bits), bits, layout, k_perm);
  }
}

__global__ void repack_groups_kernel(float *scales_out, float *zeros_out, const void *scales, const uint32_t *qzeros,
                                     int64_t n, int64_t groups, int32_t bits, int32_t scale_dtype, int32_t layout) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n * groups; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i % n, g = i / n;
    scales_out[r * groups + g] = load_f32(scales, g * n + r, scale_dtype);
    zeros_out[r * groups + g] = float(checkpoint_zero(qzeros, g, r, n, bits, layout));
  }
}

// dst [n, k] in input order: the code at position c lands on input k_perm[c] (act-order).
__global__ void dequantize_kernel(void *dst, const uint32_t *w, const float *scales, const float *zeros, int64_t n,
                                  int64_t k, int32_t bits, int64_t group_size, int64_t groups, const int32_t *k_perm,
                                  int32_t dt) {
  const int64_t per_word = 32 / bits, words = k / per_word;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n * k; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / k, c = i % k, g = r * groups + c / group_size;
    const float q = float(code_at(w[r * words + c / per_word], c % per_word, bits));
    store_f32(dst, k_perm ? r * k + k_perm[c] : i, dt, (q - zeros[g]) * scales[g]);
  }
}

// One thread per word (8 or 4 codes, all in one group): one load, one 16- or 8-byte store. The
// large-batch path writes every weight each call, so this runs at copy speed; no act-order here.
template <typename T, int Bits>
__global__ void dequantize_words_kernel(T *dst, const uint32_t *w, const float *scales, const float *zeros, int64_t n_words,
                                        int64_t words_per_row, int64_t groups, int64_t group_size) {
  constexpr int kPer = 32 / Bits;
  using Out = typename std::conditional<Bits == 4, uint4, uint2>::type;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n_words; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / words_per_row, g = r * groups + (i % words_per_row) * kPer / group_size;
    const float s = scales[g], z = zeros[g];
    const uint32_t word = w[i];
    Out out;
    T *o = reinterpret_cast<T *>(&out);
#pragma unroll
    for (int j = 0; j < kPer; j++) o[j] = T((float(code_at(word, j, Bits)) - z) * s);
    reinterpret_cast<Out *>(dst)[i] = out;
  }
}

// A k_perm in device memory, checked on the host: vd_repack_int runs once per layer at load, so
// the copy back is cheap there, and a bad entry would otherwise be an out-of-bounds read.
int32_t check_device_k_perm(Context &c, const int32_t *k_perm, int64_t k) {
  std::vector<int32_t> host(static_cast<size_t>(k));
  int32_t st = check_cuda(cudaMemcpyAsync(host.data(), k_perm, size_t(k) * 4, cudaMemcpyDeviceToHost, c.stream), kRepackFn,
                          "cudaMemcpyAsync");
  if (st == VD_OK) st = check_cuda(cudaStreamSynchronize(c.stream), kRepackFn, "cudaStreamSynchronize");
  return st == VD_OK ? check_k_perm(kRepackFn, host.data(), k) : st;
}

} // namespace

VD_API int32_t vd_repack_int(uint64_t ctx, uint64_t w, uint64_t scales_out, uint64_t zeros_out, uint64_t qweight,
                             uint64_t qzeros, uint64_t scales, int64_t n, int64_t k, int32_t bits, int64_t group_size,
                             int32_t scale_dtype, int32_t layout, uint64_t k_perm) {
  clear_error();
  int64_t groups = 0;
  int32_t st = check_int_weights(kRepackFn, bits, group_size, n, k, &groups);
  if (st == VD_OK) st = check_float_dtype(kRepackFn, "scale_dtype", scale_dtype);
  if (st == VD_OK) st = check_repack_layout(kRepackFn, layout, bits, n, k, group_size);
  if (st != VD_OK) return st;
  Context *c = context(ctx, kRepackFn);
  const int64_t per_word = 32 / bits, words = k / per_word;
  Span sw, so, sz, sq, sqz, ss, sp{nullptr, 0};
  if (!c || !lookup_array(ctx, w, "vd_repack_int(w)", mul_sat(n, words), VD_I32, &sw) ||
      !lookup_array(ctx, scales_out, "vd_repack_int(scales_out)", mul_sat(n, groups), VD_F32, &so) ||
      !lookup_array(ctx, zeros_out, "vd_repack_int(zeros_out)", mul_sat(n, groups), VD_F32, &sz) ||
      !lookup_array(ctx, qweight, "vd_repack_int(qweight)", mul_sat(words, n), VD_I32, &sq) ||
      !lookup_array(ctx, qzeros, "vd_repack_int(qzeros)", mul_sat(groups, n / per_word), VD_I32, &sqz) ||
      !lookup_array(ctx, scales, "vd_repack_int(scales)", mul_sat(groups, n), scale_dtype, &ss) ||
      (k_perm != 0 && !lookup_array(ctx, k_perm, "vd_repack_int(k_perm)", k, VD_I32, &sp)))
    return VD_ERR_INVALID_ARGUMENT;
  if (sp.data && (st = check_device_k_perm(*c, reinterpret_cast<const int32_t *>(sp.data), k)) != VD_OK) return st;
  if (n == 0) return VD_OK;
  repack_words_kernel<<<flat_blocks(n * words), kThreads, 0, c->stream>>>(
      reinterpret_cast<uint32_t *>(sw.data), reinterpret_cast<const uint32_t *>(sq.data), n, words, bits, layout,
      reinterpret_cast<const int32_t *>(sp.data));
  st = check_launch(kRepackFn);
  if (st != VD_OK) return st;
  repack_groups_kernel<<<flat_blocks(n * groups), kThreads, 0, c->stream>>>(
      reinterpret_cast<float *>(so.data), reinterpret_cast<float *>(sz.data), ss.data,
      reinterpret_cast<const uint32_t *>(sqz.data), n, groups, bits, scale_dtype, layout);
  return check_launch(kRepackFn);
}

VD_API int32_t vd_gemm_int(uint64_t ctx, uint64_t out, uint64_t x, uint64_t w, uint64_t scales, uint64_t zeros,
                           uint64_t bias, int64_t m, int64_t n, int64_t k, int32_t bits, int64_t group_size,
                           int32_t act_dtype, uint64_t k_perm) {
  clear_error();
  int64_t groups = 0;
  int32_t st = check_float_dtype(kGemmFn, "act_dtype", act_dtype);
  if (st == VD_OK) st = check_nonneg(kGemmFn, "m", m);
  if (st == VD_OK) st = check_int_weights(kGemmFn, bits, group_size, n, k, &groups);
  if (st != VD_OK) return st;
  Context *c = context(ctx, kGemmFn);
  Span so, sx, sw, ss, sz, sb{nullptr, 0}, sp{nullptr, 0};
  if (!c || !lookup_array(ctx, out, "vd_gemm_int(out)", mul_sat(m, n), act_dtype, &so) ||
      !lookup_array(ctx, x, "vd_gemm_int(x)", mul_sat(m, k), act_dtype, &sx) ||
      !lookup_array(ctx, w, "vd_gemm_int(w)", mul_sat(n, k * bits / 32), VD_I32, &sw) ||
      !lookup_array(ctx, scales, "vd_gemm_int(scales)", mul_sat(n, groups), VD_F32, &ss) ||
      !lookup_array(ctx, zeros, "vd_gemm_int(zeros)", mul_sat(n, groups), VD_F32, &sz) ||
      (bias != 0 && !lookup_array(ctx, bias, "vd_gemm_int(bias)", n, act_dtype, &sb)) ||
      (k_perm != 0 && !lookup_array(ctx, k_perm, "vd_gemm_int(k_perm)", k, VD_I32, &sp)))
    return VD_ERR_INVALID_ARGUMENT;
  if (m > INT_MAX || n > INT_MAX || k > INT_MAX) return fail(VD_ERR_UNSUPPORTED, "%s: m, n and k must each be below 2^31", kGemmFn);
  if (m == 0 || n == 0) return VD_OK;
  if (gemv_int::fits(act_dtype, m, k, bits, group_size, groups, sx.data, sw.data)) {
    const gemv_int::Args a{reinterpret_cast<const uint32_t *>(sw.data), reinterpret_cast<const float *>(ss.data),
                           reinterpret_cast<const float *>(sz.data), sb.data, reinterpret_cast<const int32_t *>(sp.data),
                           int(m), int(n), int(k), int(groups), int(group_size < k ? group_size : k), 0};
    cudaError_t err = cudaSuccess;
    with_half_type(act_dtype, [&](auto t) {
      using T = decltype(t);
      err = gemv_int::launch<T>(reinterpret_cast<T *>(so.data), reinterpret_cast<const T *>(sx.data), a, bits, c->sm_count, c->stream, c->pdl);
    });
    return check_cuda(err, kGemmFn, "launching the integer GEMV kernel");
  }
  st = grow_workspace(*c, &c->dequant_workspace, &c->dequant_workspace_bytes,
                      uint64_t(n) * uint64_t(k) * uint64_t(dtype_bytes(act_dtype)), kGemmFn, "dequantization workspace");
  if (st != VD_OK) return st;
  const uint32_t *words = reinterpret_cast<const uint32_t *>(sw.data);
  const float *fs = reinterpret_cast<const float *>(ss.data), *fz = reinterpret_cast<const float *>(sz.data);
  const int64_t per_word = 32 / bits, n_words = n * (k / per_word);
  if (act_dtype != VD_F32 && !sp.data && group_size % per_word == 0) {
    with_half_type(act_dtype, [&](auto t) {
      using T = decltype(t);
      T *dst = static_cast<T *>(c->dequant_workspace);
      if (bits == 4)
        dequantize_words_kernel<T, 4><<<flat_blocks(n_words), kThreads, 0, c->stream>>>(dst, words, fs, fz, n_words, k / 8, groups, group_size);
      else
        dequantize_words_kernel<T, 8><<<flat_blocks(n_words), kThreads, 0, c->stream>>>(dst, words, fs, fz, n_words, k / 4, groups, group_size);
    });
  } else {
    dequantize_kernel<<<flat_blocks(n * k), kThreads, 0, c->stream>>>(c->dequant_workspace, words, fs, fz, n, k, bits, group_size,
                                                                     groups, reinterpret_cast<const int32_t *>(sp.data), act_dtype);
  }
  st = check_launch(kGemmFn);
  if (st == VD_OK) st = gemm_dense(c, so.data, sx.data, c->dequant_workspace, m, n, k, act_dtype);
  if (st != VD_OK || !sb.data) return st;
  return launch_add_bias(c, so.data, sb.data, m, n, act_dtype, kGemmFn);
}
