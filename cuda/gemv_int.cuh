// out[M, N] = x[M, K] · w[N, K]ᵀ (+ bias) for up to 32 rows of f16/bf16 x and 4- or 8-bit integer
// weights in vd_gemm_int's layout: the decode-time GEMM, which has to stream the packed weights once
// at full memory bandwidth and turn them into numbers without becoming compute-bound doing it.
//
// A block owns a tile of 16 weight rows; its warps split k in rounds of 4 chunks of 16 bytes (128
// 4-bit or 64 8-bit codes), each warp a consecutive range, two rounds a stage, the next stage's
// loads in flight while one is computed. In a round, lane (g, t) = (lane / 4, lane % 4) reads chunk t of rows g
// and g + 8, turns each pair of codes into a pair of f16/bf16 (q - zero) in registers and feeds
// them as the A operand of mma.sync m16n8k16, x's rows as the B operand (8 tokens per mma) and f32
// accumulators. Which k a fragment slot stands for does not matter to a dot product as long as the
// weights and x agree, so the pairs are taken in the order that is cheapest to unpack: for 4-bit,
// codes (j, j + 4) of a word from one lop3 with the f16/bf16 "magic number" exponent (1024 + q or
// 128 + q exactly), and x's values shuffled to match with prmt. 8-bit codes go through f32
// (2^23 + q exactly) and are rounded to pairs once.
// The group scale: when a round lies in one group (group_size a multiple of the round, or one
// group per row) the mma sums (q - zero) · x exactly and the f32 scale multiplies the round's sum;
// otherwise each weight is (q - zero) · scale rounded to the activation dtype, as a dequantized
// weight would be. Zeros must be whole numbers (vd_repack_int writes them so).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <type_traits>

#include "gemv.cuh"
#include "int_unpack.cuh"
#include "launch.cuh"
#include "mma.cuh"

namespace vd {
namespace gemv_int {

constexpr int kMaxRows = 32; // largest M sent here (4 mma column tiles of 8 tokens)
constexpr int kWarps = 8;    // per block, splitting k
constexpr int kUnroll = 2;   // rounds per warp and stage (two stages in flight)
constexpr int kTileRows = 16;

struct Args {
  const uint32_t *w;
  const float *scales, *zeros; // [n, groups]
  const void *bias;            // or null
  const int32_t *k_perm;       // or null: x is read as x[k_perm[position]]
  int m, n, k, groups, group_size;
  int group_shift; // log2(group_size), or 31 with one group a row: a position's group is pos >> group_shift (launch() sets it)
};

// x at code positions p .. p + kCodes - 1 of one token (zeros when the token or chunk is absent).
// kPerm false: the caller knows there is no k_perm (no gather code is compiled in).
template <typename T, int Bits, bool kPerm>
__device__ __forceinline__ XWord<Bits> load_x(const T *xrow, int p, bool ok, const int32_t *k_perm) {
  XWord<Bits> v{};
  if (!ok) return v;
  if (!kPerm || !k_perm) return *reinterpret_cast<const XWord<Bits> *>(xrow + p);
  T *e = reinterpret_cast<T *>(&v);
#pragma unroll
  for (int i = 0; i < Word<T, Bits>::kCodes; i++) e[i] = xrow[k_perm[p + i]];
  return v;
}

// The group of a lane's chunk: the round's when the scale comes after the round (the whole round
// lies in one group then), else the chunk's own.
template <int Bits, bool kScaleAfter> __device__ __forceinline__ int group_of(const Args &a, int round, int ci) {
  constexpr int kChunkCodes = 128 / Bits;
  const int chunks = a.k / kChunkCodes;
  return (kScaleAfter ? round * 4 * kChunkCodes : min(ci, chunks - 1) * kChunkCodes) >> a.group_shift; // no division a round
}

// One lane's part of a round: chunk ci (16 bytes) of rows g and g + 8, against NT tiles of 8 tokens.
// ca, cb: the rows' zero and scale, loaded with the weights (a load here would stall every round).
template <typename T, int Bits, int NT, bool kScaleAfter, bool kPerm>
__device__ __forceinline__ void round_step(float (*acc)[4], const uint4 &wa, const uint4 &wb, Coef ca, Coef cb,
                                           const T *x, const Args &a, int ci, int g) {
  using W = Word<T, Bits>;
  constexpr int kChunkCodes = 128 / Bits;
  const int chunks = a.k / kChunkCodes;
  const bool ok = ci < chunks;
  const int pos = min(ci, chunks - 1) * kChunkCodes;
  XWord<Bits> xv[NT][4]; // all of the round's x first: the loads overlap
#pragma unroll
  for (int nt = 0; nt < NT; nt++) {
    const int token = nt * 8 + g;
    const T *xrow = x + int64_t(min(token, a.m - 1)) * a.k;
#pragma unroll
    for (int i = 0; i < 4; i++) xv[nt][i] = load_x<T, Bits, kPerm>(xrow, pos + i * W::kCodes, ok && token < a.m, a.k_perm);
  }
  for (Coef *c : {&ca, &cb}) {
    c->zero_pair = Pair<T>::splat(Pair<T>::kMagicValue + c->zero);
    c->zero_high_pair = Pair<T>::splat(-(Pair<T>::kMagicValue / 16 + c->zero));
    c->scale_pair = Pair<T>::splat(c->scale);
  }
  float part[NT][4] = {};
  float (*dst)[4] = kScaleAfter ? part : acc;
  const uint32_t *wa_words = reinterpret_cast<const uint32_t *>(&wa), *wb_words = reinterpret_cast<const uint32_t *>(&wb);
#pragma unroll
  for (int i = 0; i < 4; i++) {
    uint32_t qa[W::kPairs], qb[W::kPairs];
    W::template codes<!kScaleAfter>(wa_words[i], ca, qa);
    W::template codes<!kScaleAfter>(wb_words[i], cb, qb);
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
      uint32_t xp[W::kPairs];
      W::xs(xv[nt][i], xp);
#pragma unroll
      for (int s = 0; s < W::kPairs / 2; s++) {
        const uint32_t frag[4] = {qa[2 * s], qb[2 * s], qa[2 * s + 1], qb[2 * s + 1]};
        mma::Mma<T>::run(dst[nt], frag, xp[2 * s], xp[2 * s + 1]);
      }
    }
  }
  if (kScaleAfter)
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
      acc[nt][0] = fmaf(ca.scale, part[nt][0], acc[nt][0]);
      acc[nt][1] = fmaf(ca.scale, part[nt][1], acc[nt][1]);
      acc[nt][2] = fmaf(cb.scale, part[nt][2], acc[nt][2]);
      acc[nt][3] = fmaf(cb.scale, part[nt][3], acc[nt][3]);
    }
}

// U rounds of one lane's weights and group coefficients, loaded together.
template <int U> struct Stage {
  uint4 va[U], vb[U];
  Coef ca[U], cb[U];
};

// The lane's view of its block's tile: rows g and g + 8 (clamped to the last row).
struct Lane {
  const uint4 *wa, *wb;
  const float *sa, *za, *sb, *zb;
  int t, chunks, end; // end: one past the warp's last round
};

template <int Bits, bool kScaleAfter, int U>
__device__ __forceinline__ void load_stage(Stage<U> &st, const Lane &l, const Args &a, int r0) {
#pragma unroll
  for (int u = 0; u < U; u++) {
    const int round = min(r0 + u, l.end - 1), ci = round * 4 + l.t, group = group_of<Bits, kScaleAfter>(a, round, ci);
    const bool ok = r0 + u < l.end && ci < l.chunks;
    st.va[u] = ok ? gemv::load_stream(l.wa + ci) : make_uint4(0, 0, 0, 0);
    st.vb[u] = ok ? gemv::load_stream(l.wb + ci) : make_uint4(0, 0, 0, 0);
    st.ca[u].zero = l.za[group], st.ca[u].scale = l.sa[group], st.cb[u].zero = l.zb[group], st.cb[u].scale = l.sb[group];
  }
}

template <typename T, int Bits, int NT, bool kScaleAfter, int U, bool kPerm>
__device__ __forceinline__ void run_stage(float (*acc)[4], const Stage<U> &st, const Lane &l, const T *x, const Args &a, int r0, int g) {
#pragma unroll
  for (int u = 0; u < U; u++) {
    const int round = r0 + u;
    if (round >= l.end) break;
    round_step<T, Bits, NT, kScaleAfter, kPerm>(acc, st.va[u], st.vb[u], st.ca[u], st.cb[u], x, a, round * 4 + l.t, g);
  }
}

// The block's result: each warp's accumulators (its range of k) into shared memory, then the warps'
// sums in order per output, plus the bias.
template <typename T, int NT, int WARPS>
__device__ __forceinline__ void write_tile(T *out, float (*partial)[kTileRows][NT * 8], const float (*acc)[4], const Args &a, int row0) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int nt = 0; nt < NT; nt++) {
    partial[warp][g][nt * 8 + 2 * t] = acc[nt][0];
    partial[warp][g][nt * 8 + 2 * t + 1] = acc[nt][1];
    partial[warp][g + 8][nt * 8 + 2 * t] = acc[nt][2];
    partial[warp][g + 8][nt * 8 + 2 * t + 1] = acc[nt][3];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kTileRows * NT * 8; i += blockDim.x) {
    const int r = i / (NT * 8), token = i % (NT * 8), row = row0 + r;
    if (token >= a.m || row >= a.n) continue;
    float v = 0.0f;
    for (int wi = 0; wi < WARPS; wi++) v += partial[wi][r][token];
    if (a.bias) v += float(static_cast<const T *>(a.bias)[row]);
    out[int64_t(token) * a.n + row] = T(v);
  }
}

// kMinBlocks 3 caps the registers at 80 (a few spill) so that 3 blocks share an SM: better when
// there are blocks enough to fill them; otherwise the spills only cost (measured on an H200).
// WARPS: warps per block splitting k; U: rounds per warp and stage; kPerm false: a.k_perm is null
// (bench/gemv-tune.cu measures whether leaving the gather out of the code pays).
template <typename T, int Bits, int NT, bool kScaleAfter, int kMinBlocks, int WARPS = kWarps, int U = kUnroll, bool kPerm = true>
__global__ void __launch_bounds__(32 * WARPS, kMinBlocks) gemv_int_kernel(T *out, const T *x, Args a) {
  __shared__ float partial[WARPS][kTileRows][NT * 8];
  constexpr int kChunkCodes = 128 / Bits;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int row0 = blockIdx.x * kTileRows, row_a = min(row0 + g, a.n - 1), row_b = min(row0 + g + 8, a.n - 1);
  const int chunks = a.k / kChunkCodes, rounds = (chunks + 3) / 4, per_warp = (rounds + WARPS - 1) / WARPS;
  const int begin = warp * per_warp; // a warp's rounds are consecutive: its quads read whole 128-byte lines
  const Lane l{reinterpret_cast<const uint4 *>(a.w) + int64_t(row_a) * chunks, reinterpret_cast<const uint4 *>(a.w) + int64_t(row_b) * chunks,
               a.scales + int64_t(row_a) * a.groups, a.zeros + int64_t(row_a) * a.groups,
               a.scales + int64_t(row_b) * a.groups, a.zeros + int64_t(row_b) * a.groups, t, chunks, min(rounds, begin + per_warp)};
  float acc[NT][4] = {};
  // The first weight chunks head for L2 before the wait for x (gemv.cuh does the same).
#pragma unroll
  for (int u = 0; u < U; u++) {
    const int ci = (begin + u) * 4 + t;
    if (begin + u < l.end && ci < chunks) gemv::prefetch_l2(l.wa + ci), gemv::prefetch_l2(l.wb + ci);
  }
  pdl_wait();
  pdl_launch_dependents();
  // Two stages in turn: the next one's loads are in flight while this one is computed (written
  // out twice so that no register copy waits for a load).
  Stage<U> s0, s1;
  if (begin < l.end) load_stage<Bits, kScaleAfter, U>(s0, l, a, begin);
  for (int r0 = begin; r0 < l.end; r0 += 2 * U) {
    if (r0 + U < l.end) load_stage<Bits, kScaleAfter, U>(s1, l, a, r0 + U);
    run_stage<T, Bits, NT, kScaleAfter, U, kPerm>(acc, s0, l, x, a, r0, g);
    if (r0 + 2 * U < l.end) load_stage<Bits, kScaleAfter, U>(s0, l, a, r0 + 2 * U);
    if (r0 + U < l.end) run_stage<T, Bits, NT, kScaleAfter, U, kPerm>(acc, s1, l, x, a, r0 + U, g);
  }
  write_tile<T, NT, WARPS>(out, partial, acc, a, row0);
}

// Whether the kernel takes this call: f16/bf16, m <= kMaxRows, whole 16-byte chunks per row, a
// chunk never across two groups, groups of a power of two (every checkpoint's 32/64/128), 16-byte
// aligned x and w.
inline bool fits(int32_t act_dtype, int64_t m, int64_t k, int32_t bits, int64_t group_size, int64_t groups,
                 const void *x, const void *w) {
  const int64_t chunk_codes = 128 / bits;
  const bool aligned = ((uintptr_t(x) | uintptr_t(w)) % 16) == 0;
  const bool pow2 = group_size > 0 && (group_size & (group_size - 1)) == 0;
  return act_dtype != VD_F32 && m <= kMaxRows && k % chunk_codes == 0 &&
         (groups == 1 || (group_size % chunk_codes == 0 && pow2)) && aligned && k > 0;
}

template <typename T, int Bits, int NT, int kMinBlocks, int U = kUnroll>
cudaError_t launch_tiles(T *out, const T *x, const Args &a, cudaStream_t stream, bool pdl) {
  const dim3 grid{unsigned((a.n + kTileRows - 1) / kTileRows)}, block{32 * kWarps};
  const int round_codes = 4 * 128 / Bits;
  if (a.groups == 1 || a.group_size % round_codes == 0)
    return launch_kernel(pdl, gemv_int_kernel<T, Bits, NT, true, kMinBlocks, kWarps, U>, grid, block, 0, stream, out, x, a);
  return launch_kernel(pdl, gemv_int_kernel<T, Bits, NT, false, kMinBlocks, kWarps, U>, grid, block, 0, stream, out, x, a);
}

// With tiles enough for 3 blocks an SM, one round a stage (fewer registers) is faster; with few,
// two (bench/gemv-tune.cu on an H200: gate_up 28.9 against 31.6 us, down 15.6 against 22.1).
// The stage depth never changes the sums.
template <typename T, int Bits>
cudaError_t launch_bits(T *out, const T *x, const Args &a, int sm_count, cudaStream_t stream, bool pdl) {
  const bool many_tiles = (a.n + kTileRows - 1) / kTileRows > 2 * sm_count;
  if (a.m <= 8) return many_tiles ? launch_tiles<T, Bits, 1, 3, 1>(out, x, a, stream, pdl) : launch_tiles<T, Bits, 1, 1>(out, x, a, stream, pdl);
  if (a.m <= 16) return launch_tiles<T, Bits, 2, 1>(out, x, a, stream, pdl);
  return launch_tiles<T, Bits, 4, 1>(out, x, a, stream, pdl);
}

// Launches for a call that fits() (pdl: see launch.cuh).
template <typename T>
cudaError_t launch(T *out, const T *x, Args a, int bits, int sm_count, cudaStream_t stream, bool pdl) {
  a.group_shift = 31; // one group a row: every position (k < 2^31) is in group 0
  if (a.groups > 1)
    for (a.group_shift = 0; (1 << a.group_shift) < a.group_size;) a.group_shift++;
  return bits == 4 ? launch_bits<T, 4>(out, x, a, sm_count, stream, pdl) : launch_bits<T, 8>(out, x, a, sm_count, stream, pdl);
}

} // namespace gemv_int
} // namespace vd
