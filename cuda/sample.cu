// vd_sample on CUDA: one block of 512 threads per sequence, the semantics of cpu/sample.cpp.
//
// Passes over the row, each a block-wide reduction in a fixed order: max and sum of exp (raw
// logprobs), n_top arg-best passes (each excluding the tokens already taken), logit bias and
// penalties in place, an arg-best (greedy), then for a draw the candidate mass, and find_cut
// (cuda/sample.cuh) for top-k (counting), top-p and the draw (summing probabilities).
//
// Where it may differ from the cpu:
// - Sums run in another order: the cpu adds in double one token after another; here each thread
//   adds its tokens in f32 (radix passes) or f64 (the other sums), then f64 across threads. A
//   filter or draw decides differently only when the target lies within that rounding (~1e-6
//   relative) of a boundary. expf may differ from the C library's by an ulp.
// - A bad parameter row (the cpu rejects the call) gives token -1 and NaN logprobs here, and
//   records kFaultOther, which the next vd_sync or vd_copy_to_host reports. Rows the cpu also
//   answers with token -1 (NaN or +inf or no finite logit, overflow after bias and penalties)
//   record nothing: they are values, not errors. Malformed lists (the cpu
//   rejects the call) record it too, and the row is still sampled: entries with a token outside [0, vocab), a negative count or a
//   non-finite bias are skipped, and offsets are clamped into the arrays' capacity. The seen
//   list is read (and checked) only when a penalty is on.
// - Duplicate bias tokens are added with atomics, in no fixed order. The seen list must hold
//   distinct tokens, as vllmd.h says; a duplicate there races.
// - The logprob of a token that bias or penalties changed comes from undoing them on its final
//   logit (in f64), not from a saved copy, so it is within an ulp or so of the cpu's.
#include <climits>
#include <cmath>

#include "common.cuh"
#include "../common/rng.h"
#include "sample.cuh"

namespace {

using namespace vd::sampling;

constexpr float kGreedyTemperature = 1e-5f;

struct SampleArgs {
  float *logits;
  int64_t vocab, n_top;
  const float *fparams;
  const int32_t *iparams;
  const int32_t *seen_offsets, *seen_tokens, *seen_counts; // offsets null: no list
  const int32_t *bias_offsets, *bias_tokens;
  const float *bias_values;
  int64_t seen_capacity, bias_capacity; // entries the flat arrays hold
  int32_t *out_tokens, *out_top_ids;
  float *out_logprobs, *out_top_logprobs;
  int32_t *fault;
};

struct RowParams {
  float temperature, top_p, min_p, repetition, presence, frequency;
  int32_t top_k, step;
  uint64_t seed;
};

// The parameter row of sequence s; false where the cpu's check_params would reject it.
__device__ bool read_params(const SampleArgs &a, int64_t s, RowParams *p) {
  const float *f = a.fparams + s * VD_SP_NF;
  const int32_t *ip = a.iparams + s * VD_SP_NI;
  *p = RowParams{f[VD_SP_TEMPERATURE], f[VD_SP_TOP_P], f[VD_SP_MIN_P], f[VD_SP_REPETITION], f[VD_SP_PRESENCE],
                 f[VD_SP_FREQUENCY], ip[VD_SP_TOP_K], ip[VD_SP_STEP],
                 vd::seed_from_halves(ip[VD_SP_SEED_LO], ip[VD_SP_SEED_HI])};
  return isfinite(p->temperature) && p->top_p > 0.f && p->top_p <= 1.f && p->min_p >= 0.f && p->min_p <= 1.f &&
         isfinite(p->repetition) && p->repetition > 0.f && isfinite(p->presence) && isfinite(p->frequency) &&
         p->step >= 0;
}

__device__ void note_fault(const SampleArgs &a) {
  if (a.fault) vd::record_fault(a.fault, vd::kFaultOther);
}

__device__ __forceinline__ float nan_value() { return __int_as_float(0x7fc00000); }

// A row that cannot be sampled: token -1, NaN logprobs and top ids -1 (as the cpu writes them).
// Only a malformed parameter row is the caller's error and recorded as a fault; bad logits or an
// overflow after penalties are the row's values, which the caller reads from the token.
__device__ void write_row_fault(const SampleArgs &a, int64_t s, bool bad_params) {
  for (int64_t j = threadIdx.x; j < a.n_top; j += kSampleThreads) {
    a.out_top_ids[s * a.n_top + j] = -1;
    a.out_top_logprobs[s * a.n_top + j] = nan_value();
  }
  if (threadIdx.x != 0) return;
  a.out_tokens[s] = -1;
  a.out_logprobs[s] = nan_value();
  if (bad_params) note_fault(a);
}

// The n_top best raw logits, best first: each pass takes the best token ranked after the last one.
__device__ void write_top(const SampleArgs &a, int64_t s, const float *x, float m, float log_sum, SampleShared &sh) {
  uint32_t last_key = 0xffffffffu; // above every non-NaN key, and the row has no NaN
  int64_t last = -1;
  for (int64_t j = 0; j < a.n_top; ++j) {
    unsigned long long best = 0;
    for (int64_t i = threadIdx.x; i < a.vocab; i += kSampleThreads) {
      const uint32_t k = order_key(x[i]);
      if (k < last_key || (k == last_key && i > last)) best = MaxOp{}(best, pack_rank(k, i));
    }
    best = block_reduce(best, MaxOp{}, sh.red_u);
    last_key = rank_key(best);
    last = rank_index(best);
    if (threadIdx.x == 0) {
      a.out_top_ids[s * a.n_top + j] = int32_t(last);
      a.out_top_logprobs[s * a.n_top + j] = (key_value(last_key) - m) - log_sum;
    }
  }
}

struct ListRange {
  int64_t begin, end;
};

// Entries [offsets[s], offsets[s + 1]) clamped into [0, capacity); empty if they are out of order.
__device__ ListRange list_range(const int32_t *offsets, int64_t s, int64_t capacity, const SampleArgs &a) {
  if (!offsets) return ListRange{0, 0};
  const int64_t lo = offsets[s], hi = offsets[s + 1];
  if (threadIdx.x == 0 && (lo < 0 || hi < lo || hi > capacity)) note_fault(a);
  const int64_t b = lo < 0 ? 0 : lo, e = hi > capacity ? capacity : hi;
  return ListRange{b, e > b ? e : b};
}

__device__ bool penalties_on(const SampleArgs &a, const RowParams &p) {
  return a.seen_offsets && (p.repetition != 1.f || p.presence != 0.f || p.frequency != 0.f);
}

__device__ void apply_bias(const SampleArgs &a, int64_t s, float *x) {
  const ListRange r = list_range(a.bias_offsets, s, a.bias_capacity, a);
  for (int64_t j = r.begin + threadIdx.x; j < r.end; j += kSampleThreads) {
    const int32_t t = a.bias_tokens[j];
    const float v = a.bias_values[j];
    if (t >= 0 && t < a.vocab && isfinite(v)) atomicAdd(x + t, v);
    else note_fault(a);
  }
}

// The cpu's arithmetic, rounded step by step (no fused multiply-add).
__device__ void apply_penalties(const SampleArgs &a, int64_t s, const RowParams &p, float *x) {
  const ListRange r = list_range(a.seen_offsets, s, a.seen_capacity, a);
  for (int64_t j = r.begin + threadIdx.x; j < r.end; j += kSampleThreads) {
    const int32_t t = a.seen_tokens[j], count = a.seen_counts[j];
    if (t < 0 || t >= a.vocab || count < 0) {
      note_fault(a);
      continue;
    }
    float v = x[t];
    if (p.repetition != 1.f) v = v > 0.f ? __fdiv_rn(v, p.repetition) : __fmul_rn(v, p.repetition);
    v = __fsub_rn(v, __fmul_rn(p.frequency, float(count)));
    if (count > 0) v = __fsub_rn(v, p.presence);
    x[t] = v;
  }
}

// Temperature, min-p, top-k, top-p and the draw; the token, or -1 if no candidate is left.
__device__ int64_t draw(const RowParams &p, const float *x, int64_t vocab, int64_t best, SampleShared &sh) {
  Filter f{x, vocab, x[best], p.temperature, p.min_p, 0u, INT64_MAX};
  double total;
  long long n;
  candidate_mass(f, sh, &total, &n);
  if (p.top_k > 0 && p.top_k < n) {
    const Cut c = find_cut(f, true, double(p.top_k), false, sh);
    if (c.index < 0) return -1;
    f.last_key = c.key;
    f.last_index = c.index;
    candidate_mass(f, sh, &total, &n);
  }
  if (p.top_p < 1.f) {
    const Cut c = find_cut(f, false, double(p.top_p) * total, false, sh);
    if (c.index < 0) return -1;
    f.last_key = c.key;
    f.last_index = c.index;
    total = c.run;
  }
  const double u = vd::counter_uniform(p.seed, uint64_t(p.step));
  return find_cut(f, false, u * total, true, sh).index;
}

// The logit of `token` before bias and penalties, by undoing them on its final value in f64
// (exact when neither touched it).
__device__ float raw_logit(const SampleArgs &a, int64_t s, const RowParams &p, const float *x, int64_t token,
                           SampleShared &sh) {
  const ListRange b = list_range(a.bias_offsets, s, a.bias_capacity, a);
  double bias = 0;
  for (int64_t j = b.begin + threadIdx.x; j < b.end; j += kSampleThreads)
    if (a.bias_tokens[j] == token && isfinite(a.bias_values[j])) bias += double(a.bias_values[j]);
  long long count = -1;
  if (penalties_on(a, p)) {
    const ListRange r = list_range(a.seen_offsets, s, a.seen_capacity, a);
    for (int64_t j = r.begin + threadIdx.x; j < r.end; j += kSampleThreads)
      if (a.seen_tokens[j] == token && a.seen_counts[j] >= 0) count = MaxOp{}(count, (long long)a.seen_counts[j]);
  }
  bias = block_reduce(bias, SumOp{}, sh.red_d);
  count = block_reduce(count, MaxOp{}, sh.red_l);
  double v = x[token];
  if (count >= 0) {
    if (count > 0) v += double(p.presence);
    v += double(__fmul_rn(p.frequency, float(count)));
    if (p.repetition != 1.f) v = v > 0.0 ? v * double(p.repetition) : v / double(p.repetition);
  }
  return float(v - bias);
}

// One block per sequence. Every branch below depends only on values all threads share (parameters,
// block reductions), so the early returns leave no thread waiting at a barrier.
__global__ void __launch_bounds__(kSampleThreads) sample_rows(SampleArgs a) {
  __shared__ SampleShared sh;
  const int64_t s = blockIdx.x;
  float *x = a.logits + s * a.vocab;
  RowParams p;
  float m, log_sum;
  if (!read_params(a, s, &p)) return write_row_fault(a, s, true);
  if (!raw_stats(x, a.vocab, sh, &m, &log_sum)) return write_row_fault(a, s, false);
  if (a.n_top > 0) write_top(a, s, x, m, log_sum, sh);
  apply_bias(a, s, x);
  __syncthreads(); // the penalties act on the biased logits
  if (penalties_on(a, p)) apply_penalties(a, s, p, x);
  __syncthreads();
  int64_t token = arg_best(x, a.vocab, sh);
  const bool greedy = p.temperature <= kGreedyTemperature || p.top_k == 1;
  if (!greedy) token = isfinite(x[token]) ? draw(p, x, a.vocab, token, sh) : -1;
  if (token < 0) {
    __syncthreads(); // write_top's stores to the top-n arrays come before they are cleared
    return write_row_fault(a, s, false);
  }
  const float raw = raw_logit(a, s, p, x, token, sh);
  if (threadIdx.x != 0) return;
  a.out_tokens[s] = int32_t(token);
  a.out_logprobs[s] = (raw - m) - log_sum;
}

// Looks up a buffer of at least `bytes` and checks it is 4-byte aligned (every array here is);
// *have gets the bytes it holds.
bool bind(uint64_t ctx, uint64_t buf, const char *what, uint64_t bytes, void **out, uint64_t *have = nullptr) {
  vd::Span sp;
  if (!vd::lookup_sized(ctx, buf, what, bytes, &sp)) return false;
  if (reinterpret_cast<uintptr_t>(sp.data) % 4 != 0) {
    vd::fail(VD_ERR_INVALID_ARGUMENT, "%s: buffer %llu is not 4-byte aligned", what, (unsigned long long)buf);
    return false;
  }
  *out = sp.data;
  if (have) *have = sp.bytes;
  return true;
}

// A flat list array whose entry count lives on the device: its capacity bounds what the kernel
// reads. Handle 0 holds no entries.
bool bind_entries(uint64_t ctx, uint64_t buf, const char *what, void **out, int64_t *capacity) {
  *out = nullptr;
  *capacity = 0;
  if (buf == 0) return true;
  uint64_t bytes = 0;
  if (!bind(ctx, buf, what, 0, out, &bytes)) return false;
  *capacity = int64_t(bytes / 4);
  return true;
}

bool bind_dense(uint64_t ctx, int64_t S, const uint64_t bufs[7], SampleArgs *a) {
  static const char *const names[7] = {"vd_sample(logits)",       "vd_sample(fparams)",      "vd_sample(iparams)",
                                       "vd_sample(out_tokens)",   "vd_sample(out_logprobs)", "vd_sample(out_top_ids)",
                                       "vd_sample(out_top_logprobs)"};
  const uint64_t n = uint64_t(S), bytes[7] = {n * uint64_t(a->vocab) * 4, n * VD_SP_NF * 4, n * VD_SP_NI * 4, n * 4,
                                              n * 4, n * uint64_t(a->n_top) * 4, n * uint64_t(a->n_top) * 4};
  void *p[7] = {};
  for (int k = 0; k < 7; ++k)
    if ((k < 5 || a->n_top > 0) && !bind(ctx, bufs[k], names[k], bytes[k], &p[k])) return false;
  a->logits = static_cast<float *>(p[0]);
  a->fparams = static_cast<const float *>(p[1]);
  a->iparams = static_cast<const int32_t *>(p[2]);
  a->out_tokens = static_cast<int32_t *>(p[3]);
  a->out_logprobs = static_cast<float *>(p[4]);
  a->out_top_ids = static_cast<int32_t *>(p[5]);
  a->out_top_logprobs = static_cast<float *>(p[6]);
  return true;
}

// The CSR lists: offsets [S + 1] when given; the flat arrays' capacities bound the entries read.
bool bind_lists(uint64_t ctx, int64_t S, const uint64_t bufs[6], SampleArgs *a) {
  void *p[6] = {};
  int64_t cap[6] = {};
  const char *const names[6] = {"vd_sample(seen_offsets)", "vd_sample(seen_tokens)", "vd_sample(seen_counts)",
                                "vd_sample(bias_offsets)", "vd_sample(bias_tokens)", "vd_sample(bias_values)"};
  for (int list = 0; list < 6; list += 3) {
    if (bufs[list] == 0) continue;
    if (!bind(ctx, bufs[list], names[list], uint64_t(S + 1) * 4, &p[list]) ||
        !bind_entries(ctx, bufs[list + 1], names[list + 1], &p[list + 1], &cap[list + 1]) ||
        !bind_entries(ctx, bufs[list + 2], names[list + 2], &p[list + 2], &cap[list + 2]))
      return false;
  }
  a->seen_offsets = static_cast<const int32_t *>(p[0]);
  a->seen_tokens = static_cast<const int32_t *>(p[1]);
  a->seen_counts = static_cast<const int32_t *>(p[2]);
  a->seen_capacity = cap[1] < cap[2] ? cap[1] : cap[2];
  a->bias_offsets = static_cast<const int32_t *>(p[3]);
  a->bias_tokens = static_cast<const int32_t *>(p[4]);
  a->bias_values = static_cast<const float *>(p[5]);
  a->bias_capacity = cap[4] < cap[5] ? cap[4] : cap[5];
  return true;
}

} // namespace

VD_API int32_t vd_sample(uint64_t ctx, uint64_t logits, int64_t n_seqs, int64_t vocab, uint64_t fparams,
                         uint64_t iparams, uint64_t seen_offsets, uint64_t seen_tokens, uint64_t seen_counts,
                         uint64_t bias_offsets, uint64_t bias_tokens, uint64_t bias_values, int64_t n_top,
                         uint64_t out_tokens, uint64_t out_logprobs, uint64_t out_top_ids, uint64_t out_top_logprobs) {
  vd::clear_error();
  vd::Context *c = vd::context(ctx, "vd_sample");
  if (!c) return VD_ERR_INVALID_ARGUMENT;
  if (vocab < 1 || vocab > INT32_MAX)
    return vd::fail(VD_ERR_INVALID_ARGUMENT, "vd_sample: vocab %lld is outside [1, 2^31)", (long long)vocab);
  if (n_seqs < 0 || n_seqs > INT32_MAX - 1 || n_seqs > (INT64_MAX / 8) / vocab)
    return vd::fail(VD_ERR_INVALID_ARGUMENT, "vd_sample: n_seqs %lld is negative or too large", (long long)n_seqs);
  if (n_top < 0 || n_top > vocab)
    return vd::fail(VD_ERR_INVALID_ARGUMENT, "vd_sample: n_top %lld is outside [0, vocab = %lld]", (long long)n_top,
                    (long long)vocab);
  if (n_seqs == 0) return VD_OK;
  SampleArgs a{};
  a.vocab = vocab;
  a.n_top = n_top;
  a.fault = c->fault;
  const uint64_t dense[7] = {logits, fparams, iparams, out_tokens, out_logprobs, out_top_ids, out_top_logprobs};
  const uint64_t lists[6] = {seen_offsets, seen_tokens, seen_counts, bias_offsets, bias_tokens, bias_values};
  if (!bind_dense(ctx, n_seqs, dense, &a) || !bind_lists(ctx, n_seqs, lists, &a)) return VD_ERR_INVALID_ARGUMENT;
  sample_rows<<<unsigned(n_seqs), kSampleThreads, 0, c->stream>>>(a);
  return vd::check_launch("vd_sample");
}
