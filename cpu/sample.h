// The validated arguments of vd_sample on the cpu (cpu/sample_args.cpp binds them, cpu/sample.cpp
// samples). Kept apart so that the sampling math reads without the argument checks around it.
#pragma once

#include <cstdint>

namespace vd {

// The arrays of one vd_sample call, bound to host memory and validated.
struct SampleBatch {
  float *logits;
  int64_t n_seqs, vocab, n_top;
  const float *fparams;
  const int32_t *iparams;
  const int32_t *seen_offsets, *seen_tokens, *seen_counts; // offsets null: no seen lists
  const int32_t *bias_offsets, *bias_tokens;               // offsets null: no bias
  const float *bias_values;
  int32_t *out_tokens, *out_top_ids;
  float *out_logprobs, *out_top_logprobs;
};

// Checks the shapes, binds every buffer, and checks the parameter rows and the CSR lists (offsets
// monotone and within their arrays, token ids in [0, vocab), counts >= 0, finite bias values).
// Returns VD_OK or VD_ERR_INVALID_ARGUMENT with a message naming the argument. A zero offsets
// handle means "no list"; out_top_* may be 0 when n_top = 0.
int32_t bind_sample_batch(uint64_t ctx, uint64_t logits, int64_t n_seqs, int64_t vocab, uint64_t fparams,
                          uint64_t iparams, uint64_t seen_offsets, uint64_t seen_tokens, uint64_t seen_counts,
                          uint64_t bias_offsets, uint64_t bias_tokens, uint64_t bias_values, int64_t n_top,
                          uint64_t out_tokens, uint64_t out_logprobs, uint64_t out_top_ids, uint64_t out_top_logprobs,
                          SampleBatch *out);

} // namespace vd
