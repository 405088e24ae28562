// Tensor-core building blocks shared by the attention kernels (attention_prefill.cuh,
// attention_decode.cuh): mma.sync m16n8k16 with f32 accumulation, ldmatrix, cp.async, the
// swizzled shared-memory layout of K/V tiles, and A fragments read straight from global memory.
// sm_80 and later (sm_90a builds use the same instructions).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

namespace vd {
namespace mma {

template <typename T> struct Mma;
template <> struct Mma<__nv_bfloat16> {
  __device__ static void run(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  __device__ static uint32_t pack(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t *>(&v);
  }
};
template <> struct Mma<__half> {
  __device__ static void run(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  __device__ static uint32_t pack(float lo, float hi) {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t *>(&v);
  }
};

__device__ __forceinline__ void ldmatrix_x4(uint32_t *r, uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t *r, uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
// 16 bytes global → shared; src_bytes 0 writes zeros (a masked key).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// Byte offset of 16-byte chunk c of tile row j: rows are D/8 chunks, XOR-swizzled by j % 8 so
// that the 8 rows an ldmatrix reads at one chunk column fall in 8 different bank groups.
template <int D> __device__ __forceinline__ uint32_t chunk_at(int j, int c) {
  return uint32_t((j * (D / 8) + (c ^ (j & 7))) * 16);
}

// The A fragments (m16 x k16 per k-step, D/16 k-steps) of 16 rows whose first 8 start at row0
// and last 8 at row1 (32-bit words, already offset by the lane's column); rows not ok read zeros.
template <int D>
__device__ __forceinline__ void load_a_fragments(const uint32_t *row0, const uint32_t *row1, bool ok0, bool ok1,
                                                 uint32_t (*qa)[4]) {
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) {
    qa[kk][0] = ok0 ? row0[kk * 8] : 0u;
    qa[kk][1] = ok1 ? row1[kk * 8] : 0u;
    qa[kk][2] = ok0 ? row0[kk * 8 + 4] : 0u;
    qa[kk][3] = ok1 ? row1[kk * 8 + 4] : 0u;
  }
}

// Sum over the 4 lanes of a quad (the lanes holding one accumulator row's columns).
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

} // namespace mma
} // namespace vd
