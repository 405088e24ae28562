// Device building blocks of vd_sample (cuda/sample.cu), where one thread block samples one sequence:
// deterministic block reductions, the order key of a logit, the candidate filter, and find_cut,
// which finds where the running sum of the candidates taken best first (logit descending, lower id
// first) crosses a target without sorting: a radix search on the order key, 4 bits a pass, then
// the rank of the crossing among the tokens that share its logit, by index.
#pragma once

#include <cmath>
#include <cstdint>
#include <cuda_runtime.h>

namespace vd {
namespace sampling {

constexpr int kSampleThreads = 512;
constexpr int kSampleWarps = kSampleThreads / 32;
constexpr int kRadixBits = 4;
constexpr int kRadixBuckets = 1 << kRadixBits;
constexpr unsigned kFullMask = 0xffffffffu;

struct SampleShared {
  // One radix pass: each thread's own partial sums (a fixed summation order, no atomics);
  // row kRadixBuckets holds the weight above the searched range.
  float hist[kRadixBuckets + 1][kSampleThreads];
  double bucket[kRadixBuckets + 1];
  float red_f[kSampleWarps];
  double red_d[kSampleWarps];
  unsigned red_k[kSampleWarps];
  unsigned long long red_u[kSampleWarps];
  long long red_l[kSampleWarps];
  long long seg_count[kSampleWarps];
  long long found;
};

// A uint32 that orders like the float (NaN aside); -0 maps to +0 so the two tie as on the cpu.
__device__ __forceinline__ uint32_t order_key(float x) {
  const uint32_t b = x == 0.f ? 0u : __float_as_uint(x);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float key_value(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// (key, index) packed so that the larger packed value is the better token: higher key, lower index.
__device__ __forceinline__ unsigned long long pack_rank(uint32_t key, int64_t i) {
  return (static_cast<unsigned long long>(key) << 32) | (0xffffffffu - static_cast<uint32_t>(i));
}
__device__ __forceinline__ uint32_t rank_key(unsigned long long p) { return static_cast<uint32_t>(p >> 32); }
__device__ __forceinline__ int64_t rank_index(unsigned long long p) {
  return int64_t(0xffffffffu - static_cast<uint32_t>(p));
}

struct SumOp {
  template <class T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  template <class T> __device__ T operator()(T a, T b) const { return a > b ? a : b; }
};
struct MinOp {
  template <class T> __device__ T operator()(T a, T b) const { return a < b ? a : b; }
};

// op over the block in a fixed order (the same bits on every run); every thread gets the result.
// Starts and ends with all threads in step, so `slots` may be reused at once.
template <class T, class Op> __device__ T block_reduce(T v, Op op, T *slots) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(kFullMask, v, o));
  if (threadIdx.x % 32 == 0) slots[threadIdx.x / 32] = v;
  __syncthreads();
  T r = slots[0];
  for (int w = 1; w < kSampleWarps; ++w) r = op(r, slots[w]);
  __syncthreads();
  return r;
}

// The candidates of one row: tokens whose probability exp((x - best) / temperature) is > 0 and
// >= min_p, and that do not come after (last_key, last_index) in the best-first order (top-k and
// top-p each cut the order there).
struct Filter {
  const float *x;
  int64_t vocab;
  float best, temperature, min_p;
  uint32_t last_key;
  int64_t last_index;

  // As the cpu computes it, in f32 (expf of CUDA and of the C library may differ by an ulp).
  __device__ float prob(float v) const { return expf((v - best) / temperature); }
  __device__ bool admits(float v, uint32_t k, int64_t i, float *p) const {
    *p = prob(v);
    if (!(*p > 0.f && *p >= min_p)) return false;
    return k > last_key || (k == last_key && i <= last_index);
  }
};

// One pass of the search over [lo, lo + 2^(shift + kRadixBits)): sh.bucket[b] gets the weight of
// the candidates in the b-th of kRadixBuckets equal parts, sh.bucket[kRadixBuckets] the weight of
// those above. Weight: 1 (count) or the probability.
__device__ inline void radix_pass(const Filter &f, bool count, uint32_t lo, int shift, SampleShared &sh) {
  const int t = threadIdx.x;
  for (int b = 0; b <= kRadixBuckets; ++b) sh.hist[b][t] = 0.f;
  for (int64_t i = t; i < f.vocab; i += kSampleThreads) {
    const float v = f.x[i];
    const uint32_t k = order_key(v);
    float p;
    if (k < lo || !f.admits(v, k, i, &p)) continue;
    const uint64_t d = uint64_t(k - lo) >> shift;
    sh.hist[d < kRadixBuckets ? d : kRadixBuckets][t] += count ? 1.f : p;
  }
  __syncthreads();
  const int warp = t / 32, lane = t % 32;
  for (int b = warp; b <= kRadixBuckets; b += kSampleWarps) {
    double acc = 0;
    for (int j = lane; j < kSampleThreads; j += 32) acc += double(sh.hist[b][j]);
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(kFullMask, acc, o);
    if (lane == 0) sh.bucket[b] = acc;
  }
  __syncthreads();
}

__device__ inline bool is_tie(const Filter &f, uint32_t key, int64_t i, int64_t end) {
  if (i >= end) return false;
  const float v = f.x[i];
  const uint32_t k = order_key(v);
  float p;
  return k == key && f.admits(v, k, i, &p);
}

// The index of the r-th (from 1) candidate whose key is `key`, in index order, or -1: each warp
// counts the matches in its own contiguous segment, then the warp holding the r-th walks it again.
__device__ inline int64_t nth_tie(const Filter &f, uint32_t key, int64_t r, SampleShared &sh) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t seg = ((f.vocab + kSampleWarps - 1) / kSampleWarps + 31) / 32 * 32;
  const int64_t begin = warp * seg, end = begin + seg < f.vocab ? begin + seg : f.vocab;
  long long count = 0;
  for (int64_t base = begin; base < end; base += 32)
    count += __popc(__ballot_sync(kFullMask, is_tie(f, key, base + lane, end)));
  if (lane == 0) sh.seg_count[warp] = count;
  if (threadIdx.x == 0) sh.found = -1;
  __syncthreads();
  int64_t before = 0;
  int owner = -1;
  for (int w = 0; w < kSampleWarps && owner < 0; ++w) {
    if (before + sh.seg_count[w] >= r) owner = w;
    else before += sh.seg_count[w];
  }
  if (warp == owner) {
    int64_t need = r - before;
    for (int64_t base = begin; base < end; base += 32) {
      unsigned m = __ballot_sync(kFullMask, is_tie(f, key, base + lane, end));
      if (need <= __popc(m)) {
        for (int64_t j = 1; j < need; ++j) m &= m - 1; // drop the need - 1 lowest matches
        if (lane == 0) sh.found = base + __ffs(m) - 1;
        break;
      }
      need -= __popc(m);
    }
  }
  __syncthreads();
  const int64_t found = sh.found;
  __syncthreads();
  return found;
}

// Which of n_tie tokens of weight w each, taken in order after `need` weight, makes the running sum
// reach the target (exceed it if strict); the clamps absorb rounding differences between passes.
__device__ inline int64_t tie_rank(double need, double w, long long n_tie, bool strict) {
  const double q = need / w;
  if (!(q >= 0.0)) return 1;
  if (q >= double(n_tie)) return n_tie;
  const int64_t r = strict ? int64_t(floor(q)) + 1 : int64_t(ceil(q));
  return r < 1 ? 1 : (r > n_tie ? n_tie : r);
}

// The token of the candidates, best first, where the running sum of the weights first reaches
// `target` (exceeds it if strict); the last candidate if it never does. run: the sum up to it.
struct Cut {
  uint32_t key;
  int64_t index; // -1 only if there is no candidate
  double run;
};

__device__ inline Cut find_cut(const Filter &f, bool count, double target, bool strict, SampleShared &sh) {
  // The largest key whose weight at and above it reaches the target, 4 bits a pass.
  uint32_t lo = 0;
  for (int shift = 32 - kRadixBits; shift >= 0; shift -= kRadixBits) {
    radix_pass(f, count, lo, shift, sh);
    double above = sh.bucket[kRadixBuckets];
    for (int b = kRadixBuckets - 1; b >= 1; --b) {
      above += sh.bucket[b];
      if (strict ? above > target : above >= target) {
        lo += uint32_t(b) << shift;
        break;
      }
    }
    __syncthreads(); // everyone has read sh.bucket before the next pass rewrites it
  }
  // The crossing is at the smallest candidate key >= lo (lo itself unless passes rounded apart).
  uint32_t k_min = 0xffffffffu; // the key of a NaN: never a candidate
  double above = 0;
  long long n_tie = 0;
  for (int64_t i = threadIdx.x; i < f.vocab; i += kSampleThreads) {
    const float v = f.x[i];
    const uint32_t k = order_key(v);
    float p;
    if (k >= lo && k < k_min && f.admits(v, k, i, &p)) k_min = k;
  }
  k_min = block_reduce(k_min, MinOp{}, sh.red_k);
  if (k_min == 0xffffffffu) return Cut{0, -1, 0.0};
  for (int64_t i = threadIdx.x; i < f.vocab; i += kSampleThreads) {
    const float v = f.x[i];
    const uint32_t k = order_key(v);
    float p;
    if (k < k_min || !f.admits(v, k, i, &p)) continue;
    if (k > k_min) above += count ? 1.0 : double(p);
    else ++n_tie;
  }
  above = block_reduce(above, SumOp{}, sh.red_d);
  n_tie = block_reduce(n_tie, SumOp{}, sh.red_l);
  const double w = count ? 1.0 : double(f.prob(key_value(k_min))); // equal logits, equal weights
  const int64_t r = tie_rank(target - above, w, n_tie, strict);
  return Cut{k_min, nth_tie(f, k_min, r, sh), above + double(r) * w};
}

// Max and log of the sum of exp(x - max) of the raw row; false if it has NaN, +inf or no finite value.
__device__ inline bool raw_stats(const float *x, int64_t vocab, SampleShared &sh, float *max_out, float *log_sum_out) {
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < vocab; i += kSampleThreads) m = fmaxf(m, x[i] != x[i] ? INFINITY : x[i]);
  m = block_reduce(m, MaxOp{}, sh.red_f);
  if (!isfinite(m)) return false;
  double sum = 0;
  for (int64_t i = threadIdx.x; i < vocab; i += kSampleThreads) sum += double(expf(x[i] - m));
  sum = block_reduce(sum, SumOp{}, sh.red_d);
  *max_out = m;
  *log_sum_out = float(log(sum));
  return true;
}

// The cpu's argmax: the first of the largest, NaN never larger (and index 0 kept if it is NaN).
__device__ inline int64_t arg_best(const float *x, int64_t vocab, SampleShared &sh) {
  unsigned long long best = 0;
  for (int64_t i = threadIdx.x; i < vocab; i += kSampleThreads)
    if (x[i] == x[i]) best = MaxOp{}(best, pack_rank(order_key(x[i]), i));
  best = block_reduce(best, MaxOp{}, sh.red_u);
  return x[0] != x[0] ? 0 : rank_index(best);
}

// Sum of the candidates' probabilities and their count.
__device__ inline void candidate_mass(const Filter &f, SampleShared &sh, double *total, long long *n) {
  double sum = 0;
  long long count = 0;
  for (int64_t i = threadIdx.x; i < f.vocab; i += kSampleThreads) {
    const float v = f.x[i];
    float p;
    if (!f.admits(v, order_key(v), i, &p)) continue;
    sum += double(p);
    ++count;
  }
  *total = block_reduce(sum, SumOp{}, sh.red_d);
  *n = block_reduce(count, SumOp{}, sh.red_l);
}

} // namespace sampling
} // namespace vd
