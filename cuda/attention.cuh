// The paged-attention kernel behind vd_attention (cuda/attention.cu launches it).
//
// One thread block per (query row t, kv head g): it serves the whole GQA group of query heads
// h in [g*G, (g+1)*G), so each key and value of that kv head is read from device memory once per
// query row instead of once per query head. Keys are streamed in tiles of kTile positions
// through shared memory (converted to f32 on load) and folded in with an online softmax per
// head, in f32, in position order; no split of the key range, so one block walks all of them.
//
// Batch invariance: a block's result depends only on its row's query, keys and values (the tile
// boundaries are fixed multiples of kTile from position 0), never on the rest of the batch.
//
// Batch metadata is not checked on the host (that would read device memory). The kernel checks
// what the cpu backend checks and, as common.cuh's fault protocol asks, records kFaultOther in
// Context::fault (vd_sync / vd_copy_to_host then return VD_ERR_INVALID_ARGUMENT) and carries on
// without reading out of bounds: a query_start range outside [0, n_tokens] or decreasing, or a
// seq_len below its query rows or above max_blocks * block_size, faults (checked once per
// sequence by the blocks of kv head 0); a key whose block id lies outside [0, n_blocks) faults
// and is masked out (weight 0, value 0). A row whose causal range is empty gets zeros; rows no
// sequence owns are left untouched, as on the cpu. Unlike the cpu, block ids past a sequence's
// last query row's position (never read) are not checked.
//
// This kernel serves f32 and the shapes the tensor-core kernels do not take: f16/bf16 with
// head_dim 64 or 128 and at most 16 query heads per kv head go to attention_prefill.cuh (long
// query ranges) and attention_decode.cuh (the rest) instead.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../common/fp8.h"
#include "common.cuh"

namespace vd {
namespace attn {

constexpr int kTile = 32;      // keys per tile: one per lane in the score phase
constexpr int kThreads = 128;  // 4 warps
constexpr int kWarps = kThreads / 32;
constexpr int kMaxHeadDim = 256;

struct Params {
  void *out;
  int32_t *fault; // Context::fault (may be null: then faults are only skipped, not reported)
  const void *q, *k_cache, *v_cache;
  const int32_t *block_tables, *seq_lens, *query_start;
  int32_t n_seqs, n_tokens, n_heads, n_kv_heads, head_dim, group, block_size, max_blocks;
  int64_t n_blocks; // blocks the caches hold: block ids must lie in [0, n_blocks)
  float scale;   // the softmax scale times k_scale: an e4m3 cache's keys are read as their codes' values
  float v_scale; // the output's factor: v_scale for an e4m3 cache, else 1
  bool kv_fp8;   // the caches hold e4m3 codes (one byte an element) instead of act-dtype values
  bool vec16; // every row of q, k_cache and v_cache is 16-byte aligned and head_dim fills whole vectors
};

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ void from_f32(float *p, float v) { *p = v; }
__device__ __forceinline__ void from_f32(__half *p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void from_f32(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// dst[0..n) (f32, shared, any stride) = src[0..n) (global). With vec16, 16-byte loads.
template <typename T>
__device__ __forceinline__ void load_span(float *dst, const T *src, int n, bool vec16, int first, int stride) {
  constexpr int kVec = 16 / sizeof(T);
  if (vec16) {
    for (int c = first * kVec; c < n; c += stride * kVec) {
      const uint4 raw = *reinterpret_cast<const uint4 *>(src + c);
      const T *e = reinterpret_cast<const T *>(&raw);
#pragma unroll
      for (int i = 0; i < kVec; i++) dst[c + i] = to_f32(e[i]);
    }
  } else {
    for (int c = first; c < n; c += stride) dst[c] = to_f32(src[c]);
  }
}

// Shared-memory layout of one block (see smem_bytes on the host side).
struct Smem {
  int64_t *row_off; // [kTile] element offset of each tile key's row in the caches, -1 if masked
  int *seq;         // the sequence owning the block's query row (-1: none)
  float *q;         // [G, D]
  float *acc;       // [G, D] unnormalised output
  float *k;         // [kTile, D + 1] (padded: lanes read different rows at the same column)
  float *v;         // [kTile, D]
  float *p;         // [G, kTile] softmax weights of the current tile
  float *m, *l, *corr; // [G] running max, running sum, this tile's rescale factor
};

__device__ __forceinline__ Smem carve(void *base, int G, int D) {
  Smem s;
  s.row_off = static_cast<int64_t *>(base);
  s.seq = reinterpret_cast<int *>(s.row_off + kTile);
  s.q = reinterpret_cast<float *>(s.row_off + kTile + 2); // keeps the floats 16-byte aligned
  s.acc = s.q + G * D;
  s.k = s.acc + G * D;
  s.v = s.k + kTile * (D + 1);
  s.p = s.v + kTile * D;
  s.m = s.p + G * kTile;
  s.l = s.m + G;
  s.corr = s.l + G;
  return s;
}

__device__ __forceinline__ void fault(const Params &a) {
  if (a.fault != nullptr) record_fault(a.fault, kFaultOther);
}

// The cpu backend's checks of one sequence's metadata, spread over the blocks of kv head 0.
__device__ void check_sequences(const Params &a) {
  if (blockIdx.y != 0) return;
  const int64_t cap = int64_t(a.max_blocks) * a.block_size;
  for (int64_t s = int64_t(blockIdx.x) * kThreads + threadIdx.x; s < a.n_seqs; s += int64_t(gridDim.x) * kThreads) {
    const int64_t lo = a.query_start[s], hi = a.query_start[s + 1], len = a.seq_lens[s];
    if (lo < 0 || hi < lo || hi > a.n_tokens || len < hi - lo || len > cap) fault(a);
  }
}

// The sequence owning query row t (query_start is non-decreasing when valid), or -1.
__device__ int owner_of(const Params &a, int t) {
  int lo = 0, hi = a.n_seqs; // upper bound: first s with query_start[s] > t
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (a.query_start[mid] <= t) lo = mid + 1;
    else hi = mid;
  }
  const int s = lo - 1; // query_start[s] <= t by construction when s >= 0
  return (s >= 0 && t < a.query_start[s + 1]) ? s : -1;
}

// Element offset of the K/V row of cache position pos of sequence seq and kv head g; -1 if masked.
__device__ int64_t key_row(const Params &a, int seq, int g, int64_t pos) {
  const int64_t blk = pos / a.block_size;
  if (blk >= a.max_blocks) return -1; // only with a seq_len check_sequences faults on
  const int32_t id = a.block_tables[int64_t(seq) * a.max_blocks + blk];
  if (id < 0 || id >= a.n_blocks) {
    fault(a);
    return -1;
  }
  return ((int64_t(id) * a.n_kv_heads + g) * a.block_size + pos % a.block_size) * a.head_dim;
}

// e4m3 k/v rows [0, kTile) of the tile into shared memory as their codes' values (the scales are
// applied by the caller); masked rows become zeros.
__device__ void load_fp8_tile(const Params &a, const Smem &s) {
  const int D = a.head_dim;
  const uint8_t *kc = static_cast<const uint8_t *>(a.k_cache), *vc = static_cast<const uint8_t *>(a.v_cache);
  for (int e = threadIdx.x; e < kTile * D; e += kThreads) {
    const int j = e / D, i = e - j * D;
    const int64_t off = s.row_off[j];
    s.k[j * (D + 1) + i] = off >= 0 ? fp8_e4m3_to_f32(kc[off + i]) : 0.0f;
    s.v[j * D + i] = off >= 0 ? fp8_e4m3_to_f32(vc[off + i]) : 0.0f;
  }
}

// k/v rows [0, kTile) of the tile into shared memory; masked rows become zeros.
template <typename T>
__device__ void load_tile(const Params &a, const Smem &s) {
  if (a.kv_fp8) return load_fp8_tile(a, s);
  const int D = a.head_dim, per_row = a.vec16 ? D / (16 / int(sizeof(T))) : D;
  const T *kc = static_cast<const T *>(a.k_cache), *vc = static_cast<const T *>(a.v_cache);
  for (int e = threadIdx.x; e < kTile * per_row; e += kThreads) {
    const int j = e / per_row, chunk = e - j * per_row;
    const int64_t off = s.row_off[j];
    if (off >= 0) {
      load_span(s.k + j * (D + 1), kc + off, D, a.vec16, chunk, per_row);
      load_span(s.v + j * D, vc + off, D, a.vec16, chunk, per_row);
    } else {
      const int width = D / per_row; // elements per chunk
      for (int i = 0; i < width; i++) s.k[j * (D + 1) + chunk * width + i] = s.v[j * D + chunk * width + i] = 0.0f;
    }
  }
}

__device__ __forceinline__ float dot(const float *a, const float *b, int n) {
  float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 = fmaf(a[i], b[i], s0);
    s1 = fmaf(a[i + 1], b[i + 1], s1);
    s2 = fmaf(a[i + 2], b[i + 2], s2);
    s3 = fmaf(a[i + 3], b[i + 3], s3);
  }
  for (; i < n; i++) s0 = fmaf(a[i], b[i], s0);
  return (s0 + s2) + (s1 + s3);
}

// Scores of the tile for every head of the group, and the online-softmax update of m, l, p, corr.
// Warp w takes heads w, w + kWarps, ...; lane j takes tile key j.
__device__ void score_tile(const Params &a, const Smem &s, int G) {
  const int lane = threadIdx.x & 31, D = a.head_dim;
  const bool live = s.row_off[lane] >= 0;
  for (int h = threadIdx.x >> 5; h < G; h += kWarps) {
    const float score = live ? dot(s.q + h * D, s.k + lane * (D + 1), D) * a.scale : -INFINITY;
    const float m_old = s.m[h], m_new = fmaxf(m_old, warp_max(score));
    float p = 0.0f, corr = 1.0f;
    if (m_new != -INFINITY) { // else nothing seen yet: keep everything at zero
      p = expf(score - m_new);
      corr = expf(m_old - m_new);
    }
    const float p_sum = warp_sum(p);
    s.p[h * kTile + lane] = p;
    if (lane == 0) {
      s.m[h] = m_new;
      s.l[h] = s.l[h] * corr + p_sum;
      s.corr[h] = corr;
    }
  }
}

// acc[h, :] = acc[h, :] * corr[h] + sum_j p[h, j] * v[j, :] over the tile's first n keys.
__device__ void accumulate_tile(const Params &a, const Smem &s, int G, int n) {
  const int D = a.head_dim;
  for (int e = threadIdx.x; e < G * D; e += kThreads) {
    const int h = e / D, d = e - h * D;
    const float *p = s.p + h * kTile;
    float acc = s.acc[e] * s.corr[h];
#pragma unroll 4
    for (int j = 0; j < n; j++) acc = fmaf(p[j], s.v[j * D + d], acc);
    s.acc[e] = acc;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) attention_kernel(const Params a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int t = blockIdx.x, g = blockIdx.y, G = a.group, D = a.head_dim;
  const Smem s = carve(smem_raw, G, D);
  check_sequences(a);
  if (threadIdx.x == 0) *s.seq = owner_of(a, t);
  __syncthreads();
  const int seq = *s.seq;
  if (seq < 0) return; // a row no sequence owns: untouched, as on the cpu

  // Query row t sits at position seq_len - q_len + (t - first row) and sees keys 0..position.
  const int64_t first = a.query_start[seq], q_len = int64_t(a.query_start[seq + 1]) - first;
  const int64_t cap = int64_t(a.max_blocks) * a.block_size; // positions the block table can name
  const int64_t n_keys = min(cap, int64_t(a.seq_lens[seq]) - q_len + (t - first) + 1);
  const int64_t row = int64_t(t) * a.n_heads * D + int64_t(g) * G * D; // the group's heads are contiguous
  load_span(s.q, static_cast<const T *>(a.q) + row, G * D, a.vec16, threadIdx.x, kThreads);
  for (int e = threadIdx.x; e < G * D; e += kThreads) s.acc[e] = 0.0f;
  for (int h = threadIdx.x; h < G; h += kThreads) {
    s.m[h] = -INFINITY;
    s.l[h] = 0.0f;
  }
  for (int64_t start = 0; start < n_keys; start += kTile) {
    const int n = int(min(int64_t(kTile), n_keys - start));
    if (threadIdx.x < kTile) s.row_off[threadIdx.x] = threadIdx.x < n ? key_row(a, seq, g, start + threadIdx.x) : -1;
    __syncthreads(); // row_off ready; the previous tile's accumulate is done with k, v, p
    load_tile<T>(a, s);
    __syncthreads();
    score_tile(a, s, G);
    __syncthreads();
    accumulate_tile(a, s, G, n);
  }
  __syncthreads(); // l comes from score_tile; acc elements are each thread's own
  T *out = static_cast<T *>(a.out) + row;
  for (int e = threadIdx.x; e < G * D; e += kThreads) {
    const float l = s.l[e / D];
    from_f32(out + e, l > 0.0f ? s.acc[e] / l * a.v_scale : 0.0f);
  }
}

} // namespace attn
} // namespace vd
