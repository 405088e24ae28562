// vd_sample on the cpu: raw logprobs, logit bias, penalties, temperature, min-p, top-k, top-p and a
// counter-based draw, one sequence per OpenMP iteration. A row is always processed by one thread in
// one fixed order, so the result of a sequence does not depend on the batch around it.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <new>
#include <utility>
#include <vector>

#include "internal.h"
#include "rank.h"
#include "../common/rng.h"
#include "sample.h"

namespace {

using Batch = vd::SampleBatch;

constexpr float kGreedyTemperature = 1e-5f;

// Per-thread buffers, grown to the largest vocab seen and reused across calls.
struct Scratch {
  std::vector<float> prob;                       // unnormalised probabilities [V]
  std::vector<int32_t> cand;                     // candidate token ids
  std::vector<std::pair<int32_t, float>> saved;  // raw logits of tokens that bias/penalties change
};

// Ranks tokens by logit, descending, the lower id first among equal logits.
struct Better {
  const float *x;
  bool operator()(int32_t a, int32_t b) const { return x[a] > x[b] || (x[a] == x[b] && a < b); }
};

// Max and log of the sum of exp(x - max) of a raw row. False if the row has NaN, +inf or no finite value.
bool log_softmax_stats(const float *x, int64_t vocab, float *max_out, float *log_sum_out) {
  float m = x[0];
  for (int64_t i = 1; i < vocab; ++i) m = x[i] > m ? x[i] : m;
  if (!std::isfinite(m)) return false;
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += double(std::exp(x[i] - m));
  if (std::isnan(sum)) return false;
  *max_out = m;
  *log_sum_out = float(std::log(sum));
  return true;
}

// The n best tokens of x, best first, through a heap whose front is the worst kept so far.
void top_n(const float *x, int64_t vocab, int64_t n, int32_t *ids) {
  Better better{x};
  int64_t kept = 0;
  for (int32_t i = 0; i < vocab; ++i) {
    if (kept < n) {
      ids[kept++] = i;
      std::push_heap(ids, ids + kept, better);
    } else if (better(i, ids[0])) {
      std::pop_heap(ids, ids + n, better);
      ids[n - 1] = i;
      std::push_heap(ids, ids + n, better);
    }
  }
  std::sort_heap(ids, ids + kept, better);
}

// Adds the bias, then the repetition, frequency and presence penalties, saving each raw logit it changes.
void apply_bias_and_penalties(const Batch &b, int64_t s, float *x, Scratch &w) {
  w.saved.clear();
  if (b.bias_offsets)
    for (int32_t j = b.bias_offsets[s]; j < b.bias_offsets[s + 1]; ++j) {
      int32_t t = b.bias_tokens[j];
      w.saved.emplace_back(t, x[t]);
      x[t] += b.bias_values[j];
    }
  const float *f = b.fparams + s * VD_SP_NF;
  float rep = f[VD_SP_REPETITION], pres = f[VD_SP_PRESENCE], freq = f[VD_SP_FREQUENCY];
  if (!b.seen_offsets || (rep == 1.f && pres == 0.f && freq == 0.f)) return;
  for (int32_t j = b.seen_offsets[s]; j < b.seen_offsets[s + 1]; ++j) {
    int32_t t = b.seen_tokens[j], count = b.seen_counts[j];
    w.saved.emplace_back(t, x[t]);
    float v = x[t];
    if (rep != 1.f) v = v > 0.f ? v / rep : v * rep;
    v -= freq * float(count);
    if (count > 0) v -= pres;
    x[t] = v;
  }
}

// The first index of the largest logit.
int32_t argmax(const float *x, int64_t vocab) {
  int32_t best = 0;
  for (int32_t i = 1; i < vocab; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

// Visits cand[0, n) best first, sorting it in place in doubling chunks so that a short prefix costs
// O(n) rather than a full sort. Returns the first position where the running sum of prob reaches
// `threshold` (exceeds it if `strict`), or n - 1; *cum gets the running sum there. *sorted counts the
// leading entries already in order, so that a second walk does not sort them again.
int64_t walk_descending(int32_t *cand, int64_t n, int64_t *sorted, const float *x, const float *prob, double threshold,
                        bool strict, double *cum) {
  Better better{x};
  int64_t chunk = 64;
  double run = 0;
  for (int64_t pos = 0; pos < n; ++pos) {
    if (pos == *sorted) {
      int64_t end = std::min(n, pos + chunk);
      if (end < n) std::nth_element(cand + pos, cand + end, cand + n, better);
      std::sort(cand + pos, cand + end, better);
      *sorted = end;
      chunk *= 2;
    }
    run += double(prob[cand[pos]]);
    if (strict ? run > threshold : run >= threshold) {
      *cum = run;
      return pos;
    }
  }
  *cum = run;
  return n - 1;
}

// Tokens that survive temperature, min-p and top-k, with their unnormalised probabilities in prob
// (the best token gets exactly 1, so min-p compares against min_p itself). A small top_k takes the
// k best through a heap, touching each logit once, and leaves them sorted (*sorted = their count).
int64_t filter_candidates(const float *x, int64_t vocab, float best_logit, float temp, float min_p, int32_t k,
                          Scratch &w, int64_t *sorted) {
  float *prob = w.prob.data();
  int32_t *cand = w.cand.data();
  int64_t n = 0;
  if (k > 0 && int64_t(k) * 8 <= vocab) {
    top_n(x, vocab, k, cand);
    // min-p keeps a prefix of the logit order, so it commutes with top-k
    for (; n < k; ++n) {
      prob[cand[n]] = std::exp((x[cand[n]] - best_logit) / temp);
      if (!(prob[cand[n]] > 0.f && prob[cand[n]] >= min_p)) break;
    }
    *sorted = n;
    return n;
  }
  for (int32_t i = 0; i < vocab; ++i) {
    prob[i] = std::exp((x[i] - best_logit) / temp);
    if (prob[i] > 0.f && prob[i] >= min_p) cand[n++] = i;
  }
  if (k > 0 && k < n) {
    std::nth_element(cand, cand + k, cand + n, Better{x});
    n = k;
  }
  *sorted = 0;
  return n;
}

// Temperature, min-p, top-k, top-p and the draw. False if the scaled logits overflow.
bool draw_filtered(const Batch &b, int64_t s, const float *x, int32_t best, Scratch &w, int32_t *token) {
  const float *f = b.fparams + s * VD_SP_NF;
  const int32_t *ip = b.iparams + s * VD_SP_NI;
  if (!std::isfinite(x[best])) return false;
  int64_t sorted;
  int64_t n = filter_candidates(x, b.vocab, x[best], f[VD_SP_TEMPERATURE], f[VD_SP_MIN_P], ip[VD_SP_TOP_K], w, &sorted);
  const float *prob = w.prob.data();
  int32_t *cand = w.cand.data();
  double total = 0;
  for (int64_t j = 0; j < n; ++j) total += double(prob[cand[j]]);
  if (f[VD_SP_TOP_P] < 1.f)
    n = walk_descending(cand, n, &sorted, x, prob, double(f[VD_SP_TOP_P]) * total, false, &total) + 1;
  double u = vd::counter_uniform(vd::seed_from_halves(ip[VD_SP_SEED_LO], ip[VD_SP_SEED_HI]), uint64_t(ip[VD_SP_STEP]));
  double cum;
  *token = cand[walk_descending(cand, n, &sorted, x, prob, u * total, true, &cum)];
  return true;
}

// Why a row could not be sampled.
enum RowFault : int64_t { kRowOk = 0, kRowBadLogits = 1, kRowOverflow = 2, kRowNoMemory = 3 };

RowFault sample_row(const Batch &b, int64_t s, Scratch &w) {
  float *x = b.logits + s * b.vocab;
  float raw_max, log_sum;
  if (!log_softmax_stats(x, b.vocab, &raw_max, &log_sum)) return kRowBadLogits;
  if (b.n_top > 0) {
    int32_t *ids = b.out_top_ids + s * b.n_top;
    top_n(x, b.vocab, b.n_top, ids);
    for (int64_t j = 0; j < b.n_top; ++j) b.out_top_logprobs[s * b.n_top + j] = (x[ids[j]] - raw_max) - log_sum;
  }
  apply_bias_and_penalties(b, s, x, w);
  const float *f = b.fparams + s * VD_SP_NF;
  int32_t token = argmax(x, b.vocab);
  bool greedy = f[VD_SP_TEMPERATURE] <= kGreedyTemperature || b.iparams[s * VD_SP_NI + VD_SP_TOP_K] == 1;
  if (!greedy && !draw_filtered(b, s, x, token, w, &token)) return kRowOverflow;
  float raw = x[token];
  for (auto it = w.saved.begin(); it != w.saved.end(); ++it)
    if (it->first == token) {
      raw = it->second; // the first save of a token holds its logit before any change
      break;
    }
  b.out_tokens[s] = token;
  b.out_logprobs[s] = (raw - raw_max) - log_sum;
  return kRowOk;
}

// A row that cannot be sampled: token -1 and NaN logprobs, so that the caller fails that sequence
// alone while the rest of the batch keeps its tokens.
void write_row_fault(const Batch &b, int64_t s) {
  b.out_tokens[s] = -1;
  b.out_logprobs[s] = std::nanf("");
  for (int64_t j = 0; j < b.n_top; ++j) {
    b.out_top_ids[s * b.n_top + j] = -1;
    b.out_top_logprobs[s * b.n_top + j] = std::nanf("");
  }
}

// Samples every row; returns the first row that ran out of memory, or -1. Rows whose logits or
// penalties fail get write_row_fault instead: their values, not the call, are at fault.
int64_t sample_rows(const Batch &b) {
  std::atomic<int64_t> first_oom{INT64_MAX};
  bool parallel = b.n_seqs > 1 && b.n_seqs * b.vocab >= 32768;
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (int64_t s = 0; s < b.n_seqs; ++s) {
    thread_local Scratch w;
    RowFault fault;
    try { // no exception may leave an OpenMP region; the saved list can grow too
      if (int64_t(w.prob.size()) < b.vocab) {
        w.prob.resize(b.vocab);
        w.cand.resize(b.vocab);
      }
      fault = sample_row(b, s, w);
    } catch (const std::bad_alloc &) {
      fault = kRowNoMemory;
    }
    if (fault == kRowOk) continue;
    write_row_fault(b, s);
    if (fault != kRowNoMemory) continue;
    int64_t seen = first_oom.load();
    while (s < seen && !first_oom.compare_exchange_weak(seen, s)) {
    }
  }
  int64_t row = first_oom.load();
  return row == INT64_MAX ? -1 : row;
}

} // namespace

VD_API int32_t vd_sample(uint64_t ctx, uint64_t logits, int64_t n_seqs, int64_t vocab, uint64_t fparams,
                         uint64_t iparams, uint64_t seen_offsets, uint64_t seen_tokens, uint64_t seen_counts,
                         uint64_t bias_offsets, uint64_t bias_tokens, uint64_t bias_values, int64_t n_top,
                         uint64_t out_tokens, uint64_t out_logprobs, uint64_t out_top_ids, uint64_t out_top_logprobs) {
  vd::clear_error();
  VD_ON_EVERY_RANK(ctx, vd_sample(ctx, logits, n_seqs, vocab, fparams, iparams, seen_offsets, seen_tokens, seen_counts, bias_offsets, bias_tokens, bias_values, n_top, out_tokens, out_logprobs, out_top_ids, out_top_logprobs));
  if (!vd::valid_context(ctx)) return VD_ERR_INVALID_ARGUMENT;
  Batch b;
  int32_t status = vd::bind_sample_batch(ctx, logits, n_seqs, vocab, fparams, iparams, seen_offsets, seen_tokens,
                                         seen_counts, bias_offsets, bias_tokens, bias_values, n_top, out_tokens,
                                         out_logprobs, out_top_ids, out_top_logprobs, &b);
  if (status != VD_OK || n_seqs == 0) return status;
  int64_t oom_row = sample_rows(b);
  if (oom_row < 0) return VD_OK;
  return vd::fail(VD_ERR_OUT_OF_MEMORY, "vd_sample: no memory for the scratch of row %lld", (long long)oom_row);
}
