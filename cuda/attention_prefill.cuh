// The prefill half of vd_attention on tensor cores (FlashAttention-2 style), for f16/bf16 and
// head_dim 64 or 128. cuda/attention.cu launches it beside the decode kernel of
// attention_decode.cuh: this one takes every sequence with at least kMinQueryRows query rows, the
// decode kernel the rest (decodes and short chunks), so a mixed batch costs two launches and no
// host-side look at the metadata.
//
// Work: a thread block owns kRows query rows of one sequence and one query head; its 4 warps own
// 16 rows each. Keys and values stream through shared memory in tiles of kKeys positions
// (cp.async, two stages, gathered through the block table a row at a time), S = Q·Kᵀ and O += P·V
// run as mma.sync m16n8k16 with f32 accumulation, and the softmax is online in f32, in base 2.
// Q stays in registers for the whole walk; P goes from the S accumulators to A fragments without
// touching shared memory (the accumulator layout of two n-tiles is the A layout of one k-step).
//
// Which tile a block serves is found on the device: warp 0 scans the per-sequence tile counts
// (ceil(q_len / kRows) for long-enough sequences) with a warp prefix sum. The grid is the upper
// bound ceil(T / kRows) + T / kMinQueryRows; blocks past the last tile exit at once.
//
// Invariance: a row's result depends only on its query, its keys and its values: key tiles start
// at multiples of kKeys from position 0 and every product is per row, so a sequence gives the
// same output alone or in any batch (the decode kernel's outputs differ in rounding, so the
// choice between the two depends only on the sequence's own q_len).
//
// Metadata checks (and their faults) are the decode kernel's (attn::check_sequences); this one
// only keeps its reads in bounds: a block id outside the cache reads zeros and faults.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "attention.cuh"
#include "common.cuh"
#include "kv_fp8.cuh"
#include "mma.cuh"

namespace vd {
namespace attn_tc {

using namespace mma; // Mma, ldmatrix, cp.async, chunk_at, load_a_fragments

constexpr int kRows = 64;          // query rows per thread block
constexpr int kKeys = 64;          // keys per tile
constexpr int kWarps = kRows / 16; // one m16 slice of rows per warp
constexpr int kThreads = 32 * kWarps;
constexpr int kMinQueryRows = 16;  // sequences with fewer query rows go to the decode kernel
constexpr float kLog2e = 1.4426950408889634f;

struct Params {
  attn::Params base; // shapes, buffers and the metadata checks, as the row and decode kernels take them
  float scale_log2;  // softmax scale (k_scale included) times log2(e): scores are kept in base 2
};

// Shared bytes per block: two stages of a K and a V tile; with an e4m3 cache, one K and V tile and
// two stages of their codes, the same bytes.
constexpr int smem_bytes(int head_dim) { return 2 * 2 * kKeys * head_dim * 2; }

struct Tile {
  int seq = -1;  // -1: no tile for this block
  int first = 0; // first query row (index into the batch's rows)
  int rows = 0;  // query rows of this tile (<= kRows)
  int64_t pos0 = 0; // cache position of the tile's first query row
};

// The tile this block serves: the blockIdx.x-th over the sequences taken, in sequence order.
__device__ Tile find_tile(const Params &a, int *shared) {
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x, want = blockIdx.x;
    int before = 0, found = -1;
    for (int s0 = 0; s0 < a.base.n_seqs && found < 0; s0 += 32) {
      const int s = s0 + lane;
      int tiles = 0;
      if (s < a.base.n_seqs) {
        const int ql = a.base.query_start[s + 1] - a.base.query_start[s];
        tiles = ql >= kMinQueryRows ? (ql + kRows - 1) / kRows : 0;
      }
      int incl = tiles; // inclusive prefix sum over the warp
      for (int o = 1; o < 32; o <<= 1) {
        const int v = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += v;
      }
      const bool mine = want >= before + incl - tiles && want < before + incl;
      const unsigned hit = __ballot_sync(0xffffffffu, mine);
      if (hit) {
        const int src = __ffs(hit) - 1;
        const int idx = __shfl_sync(0xffffffffu, want - (before + incl - tiles), src);
        found = s0 + src;
        if (lane == 0) shared[0] = found, shared[1] = idx;
      }
      before += __shfl_sync(0xffffffffu, incl, 31);
    }
    if (lane == 0 && found < 0) shared[0] = -1;
  }
  __syncthreads();
  Tile t;
  t.seq = shared[0];
  if (t.seq < 0) return t;
  const int lo = a.base.query_start[t.seq], hi = a.base.query_start[t.seq + 1];
  t.first = lo + shared[1] * kRows;
  t.rows = min(kRows, hi - t.first);
  t.pos0 = int64_t(a.base.seq_lens[t.seq]) - (hi - lo) + shared[1] * kRows;
  return t;
}

// Byte offset of 16-byte chunk c of the K/V row of cache position pos (of sequence seq, kv head
// g) in a cache of ELEM-byte elements, or -1 for a block id outside the cache (which faults).
template <int D, int ELEM>
__device__ __forceinline__ int64_t kv_offset(const int32_t *block_tables, int32_t max_blocks, int32_t block_size,
                                             int32_t n_kv_heads, int64_t n_blocks, int32_t *fault, int seq, int g,
                                             int64_t pos, int c) {
  const int32_t id = block_tables[int64_t(seq) * max_blocks + pos / block_size];
  if (id < 0 || id >= n_blocks) {
    if (fault != nullptr) record_fault(fault, kFaultOther);
    return -1;
  }
  return ((int64_t(id) * n_kv_heads + g) * block_size + pos % block_size) * D * ELEM + c * 16;
}

// Where 16-byte piece c of tile row j lands: the swizzled f16/bf16 tile, or an e4m3 staging area.
template <int D, bool FP8> __device__ __forceinline__ uint32_t piece_at(int j, int c) {
  return FP8 ? kv_fp8::code_at<D>(j, c) : chunk_at<D>(j, c);
}

// Queues the K and V rows of key tile `kt` into one stage (cp.async; the caller commits).
template <int D, bool FP8>
__device__ void load_kv_tile(const Params &a, const Tile &t, int g, int64_t n_keys, int kt, uint32_t k_smem,
                             uint32_t v_smem) {
  constexpr int kChunks = FP8 ? D / 16 : D / 8; // 16-byte pieces per row
  const char *kc = static_cast<const char *>(a.base.k_cache), *vc = static_cast<const char *>(a.base.v_cache);
  for (int e = threadIdx.x; e < kKeys * kChunks; e += kThreads) {
    const int j = e / kChunks, c = e % kChunks;
    const int64_t pos = int64_t(kt) * kKeys + j;
    int64_t off = pos < n_keys ? kv_offset<D, FP8 ? 1 : 2>(a.base.block_tables, a.base.max_blocks, a.base.block_size,
                                                           a.base.n_kv_heads, a.base.n_blocks, a.base.fault, t.seq, g, pos, c)
                               : -1;
    const int bytes = off >= 0 ? 16 : 0;
    off = off >= 0 ? off : 0;
    cp_async16(k_smem + piece_at<D, FP8>(j, c), kc + off, bytes);
    cp_async16(v_smem + piece_at<D, FP8>(j, c), vc + off, bytes);
  }
}

// This warp's 16 query rows as A fragments, one per k-step of 16 head dims (zeros past the tile).
template <typename T, int D>
__device__ void load_q(const Params &a, const Tile &t, int h, int warp, uint32_t (*qa)[4]) {
  const int lane = threadIdx.x & 31, r = warp * 16 + (lane >> 2), c = (lane & 3) * 2;
  const T *q = static_cast<const T *>(a.base.q) + int64_t(h) * D;
  const int64_t stride = int64_t(a.base.n_heads) * D;
  const uint32_t *row0 = reinterpret_cast<const uint32_t *>(q + (t.first + r) * stride + c);
  const uint32_t *row1 = reinterpret_cast<const uint32_t *>(q + (t.first + r + 8) * stride + c);
  load_a_fragments<D>(row0, row1, r < t.rows, r + 8 < t.rows, qa);
}

// s[n][*] = Q·Kᵀ for the warp's rows and keys n*8 .. n*8+7 of a tile of KEYS keys.
template <typename T, int D, int KEYS = kKeys>
__device__ __forceinline__ void scores(const uint32_t (*qa)[4], uint32_t k_smem, float (*s)[4]) {
  const int lane = threadIdx.x & 31, mi = lane >> 3, mr = lane & 7;
#pragma unroll
  for (int n = 0; n < KEYS / 8; n++) {
    s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int k2 = 0; k2 < D / 32; k2++) { // two k-steps per ldmatrix
      uint32_t b[4];
      ldmatrix_x4(b, k_smem + chunk_at<D>(n * 8 + mr, k2 * 4 + mi));
      Mma<T>::run(s[n], qa[2 * k2], b[0], b[1]);
      Mma<T>::run(s[n], qa[2 * k2 + 1], b[2], b[3]);
    }
  }
}

// Online softmax over one tile: masks, scales to base 2, updates m and l, rescales o, and leaves
// the probabilities in s. Row 0 is this thread's row r, row 1 is r + 8.
template <int D, int KEYS = kKeys>
__device__ __forceinline__ void softmax_tile(float scale_log2, float (*s)[4], float (*o)[4], float *m, float *l,
                                             int64_t key0, const int64_t *row_pos, int64_t n_keys) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    float mx = -INFINITY;
#pragma unroll
    for (int n = 0; n < KEYS / 8; n++)
#pragma unroll
      for (int i = 0; i < 2; i++) {
        const int64_t kp = key0 + n * 8 + (lane & 3) * 2 + i;
        float &v = s[n][2 * r + i];
        v = (kp > row_pos[r] || kp >= n_keys) ? -INFINITY : v * scale_log2;
        mx = fmaxf(mx, v);
      }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m[r], mx);
    const float corr = m_new == -INFINITY ? 1.0f : exp2f(m[r] - m_new);
    float sum = 0.0f;
#pragma unroll
    for (int n = 0; n < KEYS / 8; n++)
#pragma unroll
      for (int i = 0; i < 2; i++) {
        float &v = s[n][2 * r + i];
        v = m_new == -INFINITY ? 0.0f : exp2f(v - m_new);
        sum += v;
      }
    m[r] = m_new;
    l[r] = l[r] * corr + sum; // this thread's share; the quad's shares are summed at the end
#pragma unroll
    for (int n = 0; n < D / 8; n++) o[n][2 * r] *= corr, o[n][2 * r + 1] *= corr;
  }
}

// o += P·V with P (the probabilities in s) rounded to T.
template <typename T, int D, int KEYS = kKeys>
__device__ __forceinline__ void accumulate(const float (*s)[4], uint32_t v_smem, float (*o)[4]) {
  const int lane = threadIdx.x & 31, mi = lane >> 3, mr = lane & 7;
#pragma unroll
  for (int kk = 0; kk < KEYS / 16; kk++) {
    const uint32_t pa[4] = {Mma<T>::pack(s[2 * kk][0], s[2 * kk][1]), Mma<T>::pack(s[2 * kk][2], s[2 * kk][3]),
                            Mma<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                            Mma<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
    for (int n2 = 0; n2 < D / 16; n2++) { // two 8-wide head-dim tiles per ldmatrix
      uint32_t b[4];
      ldmatrix_x4_trans(b, v_smem + chunk_at<D>(kk * 16 + (mi & 1) * 8 + mr, 2 * n2 + (mi >> 1)));
      Mma<T>::run(o[2 * n2], pa, b[0], b[1]);
      Mma<T>::run(o[2 * n2 + 1], pa, b[2], b[3]);
    }
  }
}

// out rows of this warp = o / l (0 where a row saw no key).
template <typename T, int D>
__device__ void store_rows(const Params &a, const Tile &t, int h, int warp, float (*o)[4], float *l) {
  const int lane = threadIdx.x & 31, r = warp * 16 + (lane >> 2), c = (lane & 3) * 2;
  const int64_t stride = int64_t(a.base.n_heads) * D;
  T *out = static_cast<T *>(a.base.out) + int64_t(h) * D + c;
#pragma unroll
  for (int half = 0; half < 2; half++) {
    const float sum = quad_sum(l[half]);
    const int row = r + 8 * half;
    if (row >= t.rows) continue;
    const float inv = sum > 0.0f ? a.base.v_scale / sum : 0.0f;
    uint32_t *dst = reinterpret_cast<uint32_t *>(out + (t.first + row) * stride);
#pragma unroll
    for (int n = 0; n < D / 8; n++) dst[n * 4] = Mma<T>::pack(o[n][2 * half] * inv, o[n][2 * half + 1] * inv);
  }
}

template <typename T, int D, bool FP8>
__global__ void __launch_bounds__(kThreads) prefill_kernel(const Params a) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __shared__ int tile_info[2];
  const Tile t = find_tile(a, tile_info);
  if (t.seq < 0 || t.rows <= 0) return;
  const int h = blockIdx.y, g = h / a.base.group, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t cap = int64_t(a.base.max_blocks) * a.base.block_size;
  const int64_t n_keys = max(int64_t(0), min(cap, t.pos0 + t.rows)); // the last row sees keys 0..pos0+rows-1
  const int n_tiles = int((n_keys + kKeys - 1) / kKeys);
  // Stage st's K tile is loaded at load_at(st) and its V tile `loaded` bytes after it; the kernel
  // computes from k_at(st) and k_at(st) + kTile. With e4m3 the loads are codes, widened into the
  // one K/V tile pair at the start of shared memory.
  constexpr uint32_t kTile = kKeys * D * 2, loaded = FP8 ? kTile / 2 : kTile;
  const uint32_t base = uint32_t(__cvta_generic_to_shared(smem_raw));
  auto load_at = [&](int st) { return FP8 ? base + 2 * kTile + st * kTile : base + st * 2 * kTile; };
  auto k_at = [&](int st) { return FP8 ? base : base + st * 2 * kTile; };

  uint32_t qa[D / 16][4];
  load_q<T, D>(a, t, h, warp, qa);
  const int64_t row_pos[2] = {t.pos0 + warp * 16 + (lane >> 2), t.pos0 + warp * 16 + (lane >> 2) + 8};
  float o[D / 8][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  if (n_tiles > 0) load_kv_tile<D, FP8>(a, t, g, n_keys, 0, load_at(0), load_at(0) + loaded);
  cp_async_commit();
  for (int kt = 0; kt < n_tiles; kt++) {
    const int st = kt & 1;
    if (kt + 1 < n_tiles) load_kv_tile<D, FP8>(a, t, g, n_keys, kt + 1, load_at(st ^ 1), load_at(st ^ 1) + loaded);
    cp_async_commit();
    cp_async_wait<1>(); // tile kt has landed (the group just committed may still be in flight)
    __syncthreads();
    if constexpr (FP8) {
      kv_fp8::widen_tile<T, D, kKeys>(load_at(st), k_at(st), threadIdx.x, kThreads);
      kv_fp8::widen_tile<T, D, kKeys>(load_at(st) + loaded, k_at(st) + kTile, threadIdx.x, kThreads);
      __syncthreads();
    }
    float s[kKeys / 8][4];
    scores<T, D>(qa, k_at(st), s);
    softmax_tile<D>(a.scale_log2, s, o, m, l, int64_t(kt) * kKeys, row_pos, n_keys);
    accumulate<T, D>(s, k_at(st) + kTile, o);
    __syncthreads(); // everyone is done with this stage before the next iteration refills it
  }
  store_rows<T, D>(a, t, h, warp, o, l);
}

} // namespace attn_tc
} // namespace vd
