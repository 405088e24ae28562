// vd_attention: paged attention over a mixed batch of prefill chunks and decodes.
//
// Batch invariance: each (query row, head) is computed alone, walking its keys in position order
// one cache block at a time with the same online softmax, so its bits depend only on its query,
// its keys and values, never on the other rows, sequences or the thread split.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "internal.h"
#include "rank.h"

using namespace vd;

namespace {

struct AttnShape {
  int64_t n_seqs, n_tokens, n_heads, n_kv_heads, head_dim, block_size, max_blocks;
  float scale;
};

// Dot product with fixed 8-lane partial sums (a fixed order whatever the caller).
float dot(const float *a, const float *b, int64_t n) {
  float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++) lanes[l] += a[i + l] * b[i + l];
  for (int l = 0; i < n; i++, l++) lanes[l] += a[i] * b[i];
  float a0 = lanes[0] + lanes[4], a1 = lanes[1] + lanes[5], a2 = lanes[2] + lanes[6], a3 = lanes[3] + lanes[7];
  return (a0 + a2) + (a1 + a3);
}

// The caches: f32, or e4m3 codes that stand for code * scale.
struct KvCaches {
  const void *k, *v;
  bool fp8;
  float k_scale, v_scale;
};

// Row `at` (an element offset) of a cache as f32: in place, or an e4m3 row decoded into `row`.
const float *cache_row(const void *cache, bool fp8, float scale, int64_t at, int64_t d, float *row) {
  if (!fp8) return static_cast<const float *>(cache) + at;
  const uint8_t *codes = static_cast<const uint8_t *>(cache) + at;
  for (int64_t i = 0; i < d; i++) row[i] = kFp8E4m3Table[codes[i]] * scale;
  return row;
}

// out[D] = softmax(q . K^T * scale) . V over keys 0..n_keys-1 of one sequence and one kv head.
// scores, acc and row are scratch of B, D and D floats.
void attend_one(float *out, const float *q, const KvCaches &kv, const int32_t *blocks, int64_t n_keys, int64_t kv_head,
                const AttnShape &s, float *scores, float *acc, float *row) {
  const int64_t d = s.head_dim, bsz = s.block_size;
  float running_max = -std::numeric_limits<float>::infinity(), denom = 0.0f;
  std::fill(acc, acc + d, 0.0f);
  for (int64_t b = 0; b * bsz < n_keys; b++) {
    const int64_t base = ((int64_t(blocks[b]) * s.n_kv_heads + kv_head) * bsz) * d;
    const int64_t n_in = std::min(bsz, n_keys - b * bsz);
    float block_max = -std::numeric_limits<float>::infinity();
    for (int64_t t = 0; t < n_in; t++) {
      scores[t] = dot(q, cache_row(kv.k, kv.fp8, kv.k_scale, base + t * d, d, row), d) * s.scale;
      block_max = std::max(block_max, scores[t]);
    }
    const float new_max = std::max(running_max, block_max);
    if (new_max == -std::numeric_limits<float>::infinity()) continue; // nothing to weigh yet
    const float correction = std::exp(running_max - new_max);
    denom *= correction;
    for (int64_t i = 0; i < d; i++) acc[i] *= correction;
    for (int64_t t = 0; t < n_in; t++) {
      const float p = std::exp(scores[t] - new_max);
      denom += p;
      const float *v = cache_row(kv.v, kv.fp8, kv.v_scale, base + t * d, d, row);
      for (int64_t i = 0; i < d; i++) acc[i] += p * v[i];
    }
    running_max = new_max;
  }
  for (int64_t i = 0; i < d; i++) out[i] = acc[i] / denom;
}

// Checks the batch metadata against the shapes and fills row_seq[t] with the sequence owning
// query row t (-1 for rows no sequence owns, which are left untouched).
int32_t check_batch(const AttnShape &s, const int32_t *qstart, const int32_t *lens, const int32_t *tables,
                    int64_t n_blocks, std::vector<int32_t> &row_seq) {
  const char *fn = "vd_attention";
  row_seq.assign(size_t(s.n_tokens), -1);
  for (int64_t q = 0; q < s.n_seqs; q++) {
    const int64_t a = qstart[q], b = qstart[q + 1], len = lens[q];
    if (a < 0 || b < a || b > s.n_tokens)
      return fail(VD_ERR_INVALID_ARGUMENT, "%s: query_start[%lld..%lld] = %lld, %lld is not a range inside [0, %lld]",
                  fn, (long long)q, (long long)q + 1, (long long)a, (long long)b, (long long)s.n_tokens);
    if (len < b - a || len > s.max_blocks * s.block_size)
      return fail(VD_ERR_INVALID_ARGUMENT, "%s: seq_lens[%lld] = %lld, needs >= its %lld query rows and <= %lld", fn,
                  (long long)q, (long long)len, (long long)(b - a), (long long)(s.max_blocks * s.block_size));
    for (int64_t blk = 0; blk * s.block_size < len; blk++) {
      const int32_t id = tables[q * s.max_blocks + blk];
      if (id < 0 || id >= n_blocks)
        return fail(VD_ERR_INVALID_ARGUMENT, "%s: block_tables[%lld, %lld] = %d outside the cache [0, %lld)", fn,
                    (long long)q, (long long)blk, id, (long long)n_blocks);
    }
    for (int64_t t = a; t < b; t++) {
      if (row_seq[size_t(t)] >= 0)
        return fail(VD_ERR_INVALID_ARGUMENT, "%s: query row %lld belongs to two sequences", fn, (long long)t);
      row_seq[size_t(t)] = int32_t(q);
    }
  }
  return VD_OK;
}

struct AttnData {
  float *out;
  const float *q;
  KvCaches kv;
  const int32_t *tables, *lens, *qstart;
};

void run_attention(const AttnData &a, const AttnShape &s, const std::vector<int32_t> &row_seq) {
  const int64_t group = s.n_heads / s.n_kv_heads, stride = s.n_heads * s.head_dim;
  int64_t work = 0;
  for (int64_t q = 0; q < s.n_seqs; q++) work += int64_t(a.qstart[q + 1] - a.qstart[q]) * a.lens[q];
  const bool parallel = work * stride >= (int64_t(1) << 17);
#pragma omp parallel if (parallel)
  {
    std::vector<float> scores(size_t(s.block_size)), acc(size_t(s.head_dim)), row(size_t(s.head_dim));
#pragma omp for collapse(2) schedule(dynamic, 4)
    for (int64_t t = 0; t < s.n_tokens; t++)
      for (int64_t h = 0; h < s.n_heads; h++) {
        const int32_t q = row_seq[size_t(t)];
        if (q < 0) continue;
        const int64_t q_len = a.qstart[q + 1] - a.qstart[q];
        const int64_t position = a.lens[q] - q_len + (t - a.qstart[q]);
        attend_one(a.out + t * stride + h * s.head_dim, a.q + t * stride + h * s.head_dim, a.kv, a.tables + q * s.max_blocks,
                   position + 1, h / group, s, scores.data(), acc.data(), row.data());
      }
  }
}

} // namespace

VD_API int32_t vd_attention(uint64_t ctx, uint64_t out, uint64_t q, uint64_t k_cache, uint64_t v_cache,
                            uint64_t block_tables, uint64_t seq_lens, uint64_t query_start, int64_t n_seqs,
                            int64_t n_tokens, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                            int64_t block_size, int64_t max_blocks, float scale, int32_t act_dtype, int32_t kv_dtype,
                            float k_scale, float v_scale) {
  clear_error();
  VD_ON_EVERY_RANK(ctx, vd_attention(ctx, out, q, k_cache, v_cache, block_tables, seq_lens, query_start, n_seqs, n_tokens, n_heads, n_kv_heads, head_dim, block_size, max_blocks, scale, act_dtype, kv_dtype, k_scale, v_scale));
  const AttnShape s{n_seqs, n_tokens, n_heads, n_kv_heads, head_dim, block_size, max_blocks, scale};
  int32_t st = check_act_dtype("vd_attention", act_dtype);
  if (st == VD_OK) st = check_kv_format("vd_attention", act_dtype, kv_dtype, k_scale, v_scale);
  if (st == VD_OK) st = check_attention_shape({n_seqs, n_tokens, n_heads, n_kv_heads, head_dim, block_size, max_blocks});
  if (st != VD_OK) return st;
  const uint64_t act_bytes = bytes_of(n_tokens, n_heads * head_dim, 4);
  Span so, sq, skc, svc, sbt, ssl, sqs;
  if (!lookup_sized(ctx, out, "vd_attention(out)", act_bytes, &so) ||
      !lookup_sized(ctx, q, "vd_attention(q)", act_bytes, &sq) || !lookup(ctx, k_cache, "vd_attention(k_cache)", &skc) ||
      !lookup(ctx, v_cache, "vd_attention(v_cache)", &svc) ||
      !lookup_sized(ctx, block_tables, "vd_attention(block_tables)", bytes_of(n_seqs, max_blocks, 4), &sbt) ||
      !lookup_sized(ctx, seq_lens, "vd_attention(seq_lens)", bytes_of(n_seqs, 1, 4), &ssl) ||
      !lookup_sized(ctx, query_start, "vd_attention(query_start)", bytes_of(n_seqs + 1, 1, 4), &sqs))
    return VD_ERR_INVALID_ARGUMENT;
  const bool fp8 = kv_dtype == VD_FP8_E4M3;
  const AttnData a{reinterpret_cast<float *>(so.data), reinterpret_cast<const float *>(sq.data),
                   KvCaches{skc.data, svc.data, fp8, k_scale, v_scale},
                   reinterpret_cast<const int32_t *>(sbt.data), reinterpret_cast<const int32_t *>(ssl.data),
                   reinterpret_cast<const int32_t *>(sqs.data)};
  const uint64_t block_bytes = bytes_of(n_kv_heads, block_size * head_dim, fp8 ? 1 : 4);
  const int64_t n_blocks = int64_t(std::min(skc.bytes, svc.bytes) / block_bytes);
  std::vector<int32_t> row_seq;
  st = check_batch(s, a.qstart, a.lens, a.tables, n_blocks, row_seq);
  if (st != VD_OK) return st;
  run_attention(a, s, row_seq);
  return VD_OK;
}
