// The decode half of vd_attention on tensor cores, for f16/bf16, head_dim 64 or 128 and up to 16
// query heads per kv head: every query row of a sequence with fewer than kMinQueryRows rows
// (decodes, short chunks). cuda/attention.cu launches it beside attention_prefill.cuh's kernel.
//
// The GQA group is the M side of the MMA: the G query heads of one kv head are the rows of a
// 16-row tile (rows >= G are zeros), so each key and value is read once per query row and kv head,
// and Q·Kᵀ and P·V run as mma.sync like the prefill kernel's (whose helpers this file shares).
//
// Split-KV: a block serves one (query row, kv head, split); a row's keys are cut into n_splits
// equal ranges (rounded to 16, at least 64 keys), so a few long sequences still fill the chip. Inside a block the
// 4 warps take 16-key tiles in turn and merge their (max, sum, accumulator) through shared
// memory. With one split the block writes the output; with more it writes its partial to a
// workspace and merge_kernel combines the splits. n_splits is the host's choice from the batch
// shape (see attention.cu), so a row's rounding depends on the batch size, as in vLLM; a row
// gives the same result for the same n_splits.
#pragma once

#include "attention.cuh"
#include "attention_prefill.cuh"
#include "launch.cuh"

namespace vd {
namespace attn_dec {

using namespace mma;

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kKeys = 16; // keys per warp tile
constexpr int kMaxGroup = 16;
// One tile per warp: an 8B's batch-1 step on an H200 at 512 tokens of context spent 0.32 ms in
// attention with 64 keys a split, 0.36 with 128, 0.38 with 32 and 0.55 with 16 (graph-ablation,
// VLLMD_DECODE_SPLITS=4..33).
constexpr int64_t kMinSplitKeys = kWarps * kKeys;

struct Params {
  attn::Params base;     // shapes, buffers and the metadata checks of the row kernel
  float scale_log2;
  int32_t n_splits;
  float *ws_o;           // [n_tokens, n_heads, n_splits, D] unnormalised partial outputs (n_splits > 1)
  float *ws_ml;          // [n_tokens, n_heads, n_splits, 2] their running max (base 2) and sum
};

// Two stages of a K and a V tile per warp (the f32 merge of merge_warps fits in half of it); with
// an e4m3 cache, one K and V tile and two stages of their codes, the same bytes.
template <int D> constexpr int smem_bytes() { return kWarps * 2 * 2 * kKeys * D * 2; }

// Query row t's owner and key count; false if another kernel (or no one) serves the row.
__device__ bool decode_row(const attn::Params &a, int t, int *shared_seq, int64_t *n_keys) {
  if (threadIdx.x == 0) *shared_seq = attn::owner_of(a, t);
  __syncthreads();
  const int seq = *shared_seq;
  if (seq < 0) return false;
  const int64_t first = a.query_start[seq], q_len = int64_t(a.query_start[seq + 1]) - first;
  if (q_len >= attn_tc::kMinQueryRows) return false;
  const int64_t cap = int64_t(a.max_blocks) * a.block_size;
  *n_keys = max(int64_t(0), min(cap, int64_t(a.seq_lens[seq]) - q_len + (t - first) + 1));
  return true;
}

// This warp's A fragments of the G query heads of kv head g in row t (rows >= G are zeros).
template <typename T, int D>
__device__ void load_group_q(const attn::Params &a, int t, int g, uint32_t (*qa)[4]) {
  const int lane = threadIdx.x & 31, r = lane >> 2, c = (lane & 3) * 2;
  const T *q = static_cast<const T *>(a.q) + int64_t(t) * a.n_heads * D + int64_t(g) * a.group * D + c;
  const uint32_t *row0 = reinterpret_cast<const uint32_t *>(q + r * D);
  const uint32_t *row1 = reinterpret_cast<const uint32_t *>(q + (r + 8) * D);
  load_a_fragments<D>(row0, row1, r < a.group, r + 8 < a.group, qa);
}

// Keys [k0, k0 + kKeys) ∩ [.., k1) of the row's sequence into this warp's K and V tiles (one
// cp.async group, committed).
template <int D, bool FP8>
__device__ void load_warp_tile(const attn::Params &a, int seq, int g, int64_t k0, int64_t k1, uint32_t k_smem,
                               uint32_t v_smem) {
  constexpr int kChunks = FP8 ? D / 16 : D / 8; // 16-byte pieces per row
  const char *kc = static_cast<const char *>(a.k_cache), *vc = static_cast<const char *>(a.v_cache);
  for (int e = threadIdx.x & 31; e < kKeys * kChunks; e += 32) {
    const int j = e / kChunks, c = e % kChunks;
    const int64_t pos = k0 + j;
    int64_t off = pos < k1 ? attn_tc::kv_offset<D, FP8 ? 1 : 2>(a.block_tables, a.max_blocks, a.block_size, a.n_kv_heads,
                                                               a.n_blocks, a.fault, seq, g, pos, c)
                           : -1;
    const int bytes = off >= 0 ? 16 : 0;
    off = off >= 0 ? off : 0;
    attn_tc::cp_async16(k_smem + attn_tc::piece_at<D, FP8>(j, c), kc + off, bytes);
    attn_tc::cp_async16(v_smem + attn_tc::piece_at<D, FP8>(j, c), vc + off, bytes);
  }
  attn_tc::cp_async_commit();
}

// The 4 warps' partials merged per head; written as the output (one split) or to the workspace.
template <typename T, int D>
__device__ void merge_warps(const Params &p, int t, int g, float (*o)[4], float *m, float *l, float *sm_o,
                            float (*sm_ml)[kMaxGroup][2]) {
  const attn::Params &a = p.base;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, r = lane >> 2, c = (lane & 3) * 2;
#pragma unroll
  for (int half = 0; half < 2; half++) {
    const float sum = quad_sum(l[half]);
    const int row = r + 8 * half;
    if ((lane & 3) == 0) sm_ml[warp][row][0] = m[half], sm_ml[warp][row][1] = sum;
#pragma unroll
    for (int n = 0; n < D / 8; n++) {
      sm_o[(warp * kMaxGroup + row) * D + n * 8 + c] = o[n][2 * half];
      sm_o[(warp * kMaxGroup + row) * D + n * 8 + c + 1] = o[n][2 * half + 1];
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < a.group * D; e += kThreads) {
    const int row = e / D, d = e - row * D, h = g * a.group + row;
    float mx = -INFINITY;
    for (int w = 0; w < kWarps; w++) mx = fmaxf(mx, sm_ml[w][row][0]);
    float sum = 0.0f, acc = 0.0f;
    for (int w = 0; w < kWarps; w++) {
      const float f = mx == -INFINITY ? 0.0f : exp2f(sm_ml[w][row][0] - mx);
      sum += sm_ml[w][row][1] * f;
      acc += sm_o[(w * kMaxGroup + row) * D + d] * f;
    }
    if (p.n_splits == 1) {
      T *out = static_cast<T *>(a.out) + (int64_t(t) * a.n_heads + h) * D + d;
      attn::from_f32(out, sum > 0.0f ? acc / sum * a.v_scale : 0.0f);
    } else {
      const int64_t slot = (int64_t(t) * a.n_heads + h) * p.n_splits + blockIdx.z;
      p.ws_o[slot * D + d] = acc;
      if (d == 0) p.ws_ml[slot * 2] = mx, p.ws_ml[slot * 2 + 1] = sum;
    }
  }
}

template <typename T, int D, bool FP8>
__global__ void __launch_bounds__(kThreads) decode_kernel(const Params p) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __shared__ int seq_shared;
  __shared__ float sm_ml[kWarps][kMaxGroup][2];
  pdl_wait(); // launched with programmatic dependent launch (launch.cuh)
  pdl_launch_dependents();
  const attn::Params &a = p.base;
  if (blockIdx.z == 0) attn::check_sequences(a); // blockIdx.y == 0 blocks check; faults as the row kernel
  const int t = blockIdx.x, g = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  int64_t n_keys = 0;
  if (!decode_row(a, t, &seq_shared, &n_keys)) return;
  // This split's keys: equal ranges, rounded to whole tiles, at least kMinSplitKeys: the host picks
  // n_splits from the block table's capacity (a graph serves every length), and a short context cut
  // finer only adds partials to merge; splits past the keys are empty and the merge skips them.
  const int64_t per = max(kMinSplitKeys, ((n_keys + p.n_splits - 1) / p.n_splits + kKeys - 1) / kKeys * kKeys);
  const int64_t k0 = int64_t(blockIdx.z) * per, k1 = min(n_keys, k0 + per);
  // As in the prefill kernel: stage st loads at load_at(st) (V `loaded` bytes after K) and is
  // computed from k_at(st) (V kTile after K); e4m3 codes are widened into one tile pair.
  constexpr uint32_t kTile = kKeys * D * 2, loaded = FP8 ? kTile / 2 : kTile; // bytes of one K (or V) tile
  const uint32_t warp_smem = uint32_t(__cvta_generic_to_shared(smem_raw)) + warp * 4 * kTile;
  auto load_at = [&](int st) { return FP8 ? warp_smem + 2 * kTile + st * kTile : warp_smem + st * 2 * kTile; };
  auto k_at = [&](int st) { return FP8 ? warp_smem : warp_smem + st * 2 * kTile; };
  uint32_t qa[D / 16][4];
  load_group_q<T, D>(a, t, g, qa);
  float o[D / 8][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const int64_t last[2] = {k1 - 1, k1 - 1}; // every key below k1 is visible to the row
  // The warp's tiles start at k0 + warp * kKeys, every kWarps tiles; the next one loads while
  // this one is computed.
  constexpr int64_t kStep = kWarps * kKeys;
  int64_t kt = k0 + warp * kKeys;
  if (kt < k1) load_warp_tile<D, FP8>(a, seq_shared, g, kt, k1, load_at(0), load_at(0) + loaded);
  for (int i = 0; kt < k1; kt += kStep, i++) {
    const int st = i & 1;
    if (kt + kStep < k1) load_warp_tile<D, FP8>(a, seq_shared, g, kt + kStep, k1, load_at(st ^ 1), load_at(st ^ 1) + loaded);
    else attn_tc::cp_async_commit(); // an empty group keeps the wait below uniform
    attn_tc::cp_async_wait<1>();
    __syncwarp();
    if constexpr (FP8) {
      kv_fp8::widen_tile<T, D, kKeys>(load_at(st), k_at(st), lane, 32);
      kv_fp8::widen_tile<T, D, kKeys>(load_at(st) + loaded, k_at(st) + kTile, lane, 32);
      __syncwarp();
    }
    float s[kKeys / 8][4];
    attn_tc::scores<T, D, kKeys>(qa, k_at(st), s);
    attn_tc::softmax_tile<D, kKeys>(p.scale_log2, s, o, m, l, kt, last, k1);
    attn_tc::accumulate<T, D, kKeys>(s, k_at(st) + kTile, o);
    __syncwarp(); // the stage is consumed before the load after next overwrites it
  }
  attn_tc::cp_async_wait<0>();
  __syncthreads(); // every warp is done with its tiles: the merge reuses their shared memory
  merge_warps<T, D>(p, t, g, o, m, l, reinterpret_cast<float *>(smem_raw), sm_ml);
}

// out[t, h, :] from the n_splits partials of (t, h); one block of D threads per (row, head).
template <typename T>
__global__ void merge_kernel(const Params p) {
  __shared__ int seq_shared;
  pdl_wait();
  pdl_launch_dependents();
  const attn::Params &a = p.base;
  const int t = blockIdx.x, h = blockIdx.y, d = threadIdx.x, D = a.head_dim;
  int64_t n_keys = 0;
  if (!decode_row(a, t, &seq_shared, &n_keys)) return;
  const int64_t slot0 = (int64_t(t) * a.n_heads + h) * p.n_splits;
  float mx = -INFINITY;
  for (int s = 0; s < p.n_splits; s++)
    if (p.ws_ml[(slot0 + s) * 2 + 1] > 0.0f) mx = fmaxf(mx, p.ws_ml[(slot0 + s) * 2]);
  float sum = 0.0f, acc = 0.0f;
  for (int s = 0; s < p.n_splits; s++) {
    const float l = p.ws_ml[(slot0 + s) * 2 + 1];
    if (!(l > 0.0f)) continue; // an empty split (past the row's keys)
    const float f = exp2f(p.ws_ml[(slot0 + s) * 2] - mx);
    sum += l * f;
    acc += p.ws_o[(slot0 + s) * D + d] * f;
  }
  attn::from_f32(static_cast<T *>(a.out) + (int64_t(t) * a.n_heads + h) * D + d, sum > 0.0f ? acc / sum * a.v_scale : 0.0f);
}

} // namespace attn_dec
} // namespace vd
