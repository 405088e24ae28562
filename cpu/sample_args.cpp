// Argument checks of vd_sample: every bad input gets VD_ERR_INVALID_ARGUMENT and a message naming it.
#include <climits>
#include <cmath>

#include "internal.h"
#include "sample.h"

namespace {

// Looks up a buffer of at least `bytes` and checks it is 4-byte aligned (every array here is).
bool bind(uint64_t ctx, uint64_t buf, const char *what, uint64_t bytes, void **out) {
  vd::Span s;
  if (!vd::lookup_sized(ctx, buf, what, bytes, &s)) return false;
  if (reinterpret_cast<uintptr_t>(s.data) % 4 != 0) {
    vd::fail(VD_ERR_INVALID_ARGUMENT, "%s: buffer %llu is not 4-byte aligned", what, (unsigned long long)buf);
    return false;
  }
  *out = s.data;
  return true;
}

// Binds a CSR list (offsets [S+1] plus flat arrays of offsets[S] entries) and checks its offsets.
// A zero offsets handle means "no list". *count receives the number of entries.
bool bind_offsets(uint64_t ctx, uint64_t buf, const char *what, int64_t n_seqs, const int32_t **out,
                  int64_t *count) {
  *out = nullptr;
  *count = 0;
  if (buf == 0) return true;
  void *p;
  if (!bind(ctx, buf, what, uint64_t(n_seqs + 1) * 4, &p)) return false;
  const int32_t *off = static_cast<const int32_t *>(p);
  if (off[0] < 0) return vd::fail(VD_ERR_INVALID_ARGUMENT, "%s[0] = %d is negative", what, off[0]), false;
  for (int64_t s = 0; s < n_seqs; ++s)
    if (off[s + 1] < off[s])
      return vd::fail(VD_ERR_INVALID_ARGUMENT, "%s: offsets decrease at sequence %lld (%d > %d)", what,
                      (long long)s, off[s], off[s + 1]),
             false;
  *out = off;
  *count = off[n_seqs];
  return true;
}

bool check_token_ids(const int32_t *ids, int64_t count, int64_t vocab, const char *what) {
  for (int64_t i = 0; i < count; ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      return vd::fail(VD_ERR_INVALID_ARGUMENT, "%s[%lld] = %d is outside the vocab [0, %lld)", what, (long long)i,
                      ids[i], (long long)vocab),
             false;
  return true;
}

// Binds the seen lists (penalties) and the bias lists, checking ids, counts and values.
bool bind_lists(uint64_t ctx, uint64_t seen_offsets, uint64_t seen_tokens, uint64_t seen_counts,
                uint64_t bias_offsets, uint64_t bias_tokens, uint64_t bias_values, vd::SampleBatch *b) {
  int64_t n_seen, n_bias;
  void *tok, *cnt, *val;
  if (!bind_offsets(ctx, seen_offsets, "vd_sample(seen_offsets)", b->n_seqs, &b->seen_offsets, &n_seen)) return false;
  if (n_seen > 0) { // an empty list needs no arrays
    if (!bind(ctx, seen_tokens, "vd_sample(seen_tokens)", uint64_t(n_seen) * 4, &tok)) return false;
    if (!bind(ctx, seen_counts, "vd_sample(seen_counts)", uint64_t(n_seen) * 4, &cnt)) return false;
    b->seen_tokens = static_cast<const int32_t *>(tok);
    b->seen_counts = static_cast<const int32_t *>(cnt);
    if (!check_token_ids(b->seen_tokens, n_seen, b->vocab, "vd_sample(seen_tokens)")) return false;
    for (int64_t i = 0; i < n_seen; ++i)
      if (b->seen_counts[i] < 0)
        return vd::fail(VD_ERR_INVALID_ARGUMENT, "vd_sample(seen_counts)[%lld] = %d is negative", (long long)i,
                        b->seen_counts[i]),
               false;
  }
  if (!bind_offsets(ctx, bias_offsets, "vd_sample(bias_offsets)", b->n_seqs, &b->bias_offsets, &n_bias)) return false;
  if (n_bias > 0) {
    if (!bind(ctx, bias_tokens, "vd_sample(bias_tokens)", uint64_t(n_bias) * 4, &tok)) return false;
    if (!bind(ctx, bias_values, "vd_sample(bias_values)", uint64_t(n_bias) * 4, &val)) return false;
    b->bias_tokens = static_cast<const int32_t *>(tok);
    b->bias_values = static_cast<const float *>(val);
    if (!check_token_ids(b->bias_tokens, n_bias, b->vocab, "vd_sample(bias_tokens)")) return false;
    for (int64_t i = 0; i < n_bias; ++i)
      if (!std::isfinite(b->bias_values[i]))
        return vd::fail(VD_ERR_INVALID_ARGUMENT, "vd_sample(bias_values)[%lld] = %g is not finite", (long long)i,
                        double(b->bias_values[i])),
               false;
  }
  return true;
}

// Checks every sequence's parameter row; the message names the row and the column.
bool check_params(const vd::SampleBatch &b) {
  for (int64_t s = 0; s < b.n_seqs; ++s) {
    const float *f = b.fparams + s * VD_SP_NF;
    const char *bad = nullptr;
    if (!std::isfinite(f[VD_SP_TEMPERATURE])) bad = "temperature is not finite";
    else if (!(f[VD_SP_TOP_P] > 0.f && f[VD_SP_TOP_P] <= 1.f)) bad = "top_p is outside (0, 1]";
    else if (!(f[VD_SP_MIN_P] >= 0.f && f[VD_SP_MIN_P] <= 1.f)) bad = "min_p is outside [0, 1]";
    else if (!(std::isfinite(f[VD_SP_REPETITION]) && f[VD_SP_REPETITION] > 0.f)) bad = "repetition penalty is not > 0";
    else if (!std::isfinite(f[VD_SP_PRESENCE])) bad = "presence penalty is not finite";
    else if (!std::isfinite(f[VD_SP_FREQUENCY])) bad = "frequency penalty is not finite";
    else if (b.iparams[s * VD_SP_NI + VD_SP_STEP] < 0) bad = "step is negative";
    if (bad) return vd::fail(VD_ERR_INVALID_ARGUMENT, "vd_sample(fparams/iparams): sequence %lld: %s", (long long)s, bad), false;
  }
  return true;
}

// Binds the dense arrays, whose sizes follow from n_seqs, vocab and n_top.
int32_t bind_dense(uint64_t ctx, uint64_t logits, uint64_t fparams, uint64_t iparams, uint64_t out_tokens,
                          uint64_t out_logprobs, uint64_t out_top_ids, uint64_t out_top_logprobs, vd::SampleBatch *b) {
  uint64_t S = uint64_t(b->n_seqs);
  void *p[8];
  if (!bind(ctx, logits, "vd_sample(logits)", S * uint64_t(b->vocab) * 4, &p[0]) ||
      !bind(ctx, fparams, "vd_sample(fparams)", S * VD_SP_NF * 4, &p[1]) ||
      !bind(ctx, iparams, "vd_sample(iparams)", S * VD_SP_NI * 4, &p[2]) ||
      !bind(ctx, out_tokens, "vd_sample(out_tokens)", S * 4, &p[3]) ||
      !bind(ctx, out_logprobs, "vd_sample(out_logprobs)", S * 4, &p[4]))
    return VD_ERR_INVALID_ARGUMENT;
  p[5] = p[6] = nullptr;
  if (b->n_top > 0 && (!bind(ctx, out_top_ids, "vd_sample(out_top_ids)", S * uint64_t(b->n_top) * 4, &p[5]) ||
                       !bind(ctx, out_top_logprobs, "vd_sample(out_top_logprobs)", S * uint64_t(b->n_top) * 4, &p[6])))
    return VD_ERR_INVALID_ARGUMENT;
  b->logits = static_cast<float *>(p[0]);
  b->fparams = static_cast<const float *>(p[1]);
  b->iparams = static_cast<const int32_t *>(p[2]);
  b->out_tokens = static_cast<int32_t *>(p[3]);
  b->out_logprobs = static_cast<float *>(p[4]);
  b->out_top_ids = static_cast<int32_t *>(p[5]);
  b->out_top_logprobs = static_cast<float *>(p[6]);
  return VD_OK;
}

} // namespace

namespace vd {

int32_t bind_sample_batch(uint64_t ctx, uint64_t logits, int64_t n_seqs, int64_t vocab, uint64_t fparams,
                          uint64_t iparams, uint64_t seen_offsets, uint64_t seen_tokens, uint64_t seen_counts,
                          uint64_t bias_offsets, uint64_t bias_tokens, uint64_t bias_values, int64_t n_top,
                          uint64_t out_tokens, uint64_t out_logprobs, uint64_t out_top_ids, uint64_t out_top_logprobs,
                          SampleBatch *b) {
  if (vocab < 1 || vocab > INT32_MAX)
    return fail(VD_ERR_INVALID_ARGUMENT, "vd_sample: vocab %lld is outside [1, 2^31)", (long long)vocab);
  if (n_seqs < 0 || n_seqs > INT32_MAX - 1 || n_seqs > (INT64_MAX / 8) / vocab)
    return fail(VD_ERR_INVALID_ARGUMENT, "vd_sample: n_seqs %lld is negative or too large", (long long)n_seqs);
  if (n_top < 0 || n_top > vocab)
    return fail(VD_ERR_INVALID_ARGUMENT, "vd_sample: n_top %lld is outside [0, vocab = %lld]", (long long)n_top,
                (long long)vocab);
  *b = SampleBatch{};
  b->n_seqs = n_seqs;
  b->vocab = vocab;
  b->n_top = n_top;
  if (n_seqs == 0) return VD_OK;
  int32_t status = bind_dense(ctx, logits, fparams, iparams, out_tokens, out_logprobs, out_top_ids, out_top_logprobs, b);
  if (status != VD_OK) return status;
  if (!check_params(*b)) return VD_ERR_INVALID_ARGUMENT;
  if (!bind_lists(ctx, seen_offsets, seen_tokens, seen_counts, bias_offsets, bias_tokens, bias_values, b))
    return VD_ERR_INVALID_ARGUMENT;
  return VD_OK;
}

} // namespace vd
