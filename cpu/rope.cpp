// vd_rope_write_kv: rotary embedding on the q and k parts of a fused q/k/v row; rotated q into
// q_out, rotated k and v into the paged KV cache.
#include <algorithm>
#include <vector>

#include "internal.h"
#include "rank.h"

using namespace vd;

namespace {

// Rotate-half (NeoX / HF Llama) of one head: pairs (x[i], x[i + D/2]) rotated by the angle of
// frequency i, from src into dst (which must not overlap).
void rotate_head(float *dst, const float *src, int64_t dim, const float *cos_sin) {
  const int64_t half = dim / 2;
  const float *c = cos_sin, *s = cos_sin + half;
  for (int64_t i = 0; i < half; i++) {
    const float x1 = src[i], x2 = src[i + half];
    dst[i] = x1 * c[i] - x2 * s[i];
    dst[i + half] = x2 * c[i] + x1 * s[i];
  }
}

struct RopeShape {
  int64_t n_tokens, n_heads, n_kv_heads, head_dim, block_size;
};

int32_t check_rope_shape(const RopeShape &s) {
  const char *fn = "vd_rope_write_kv";
  int32_t st = check_nonneg(fn, "n_tokens", s.n_tokens);
  if (st == VD_OK) st = check_nonneg(fn, "n_heads", s.n_heads);
  if (st == VD_OK) st = check_nonneg(fn, "n_kv_heads", s.n_kv_heads);
  if (st != VD_OK) return st;
  if (s.head_dim <= 0 || s.head_dim % 2 != 0)
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: head_dim %lld must be positive and even", fn, (long long)s.head_dim);
  if (s.block_size <= 0) return fail(VD_ERR_INVALID_ARGUMENT, "%s: block_size %lld must be > 0", fn, (long long)s.block_size);
  return VD_OK;
}

// Every position must have a cos_sin row and every slot a place in both caches; checked before
// anything is written so a bad call changes nothing.
int32_t check_positions_and_slots(const int32_t *pos, const int32_t *slots, int64_t n, int64_t max_pos,
                                  int64_t n_slots) {
  for (int64_t t = 0; t < n; t++) {
    if (pos[t] < 0 || pos[t] >= max_pos)
      return fail(VD_ERR_INVALID_ARGUMENT, "vd_rope_write_kv: positions[%lld] = %d outside the cos_sin table [0, %lld)",
                  (long long)t, pos[t], (long long)max_pos);
    if (slots[t] >= n_slots)
      return fail(VD_ERR_INVALID_ARGUMENT, "vd_rope_write_kv: slot_mapping[%lld] = %d outside the cache [0, %lld)",
                  (long long)t, slots[t], (long long)n_slots);
  }
  return VD_OK;
}

// The cache's element type: f32, or e4m3 of k / k_scale and v / v_scale.
struct KvFormat {
  bool fp8;
  float k_scale, v_scale;
};

// Token t's cache writes at slot (block, offset) of layout [blocks, KVH, B, D]: each k head
// rotated straight from the fused row (qkv is read only), each v head copied; e4m3 caches get the
// rotated k and the v divided by their scales and encoded.
void write_kv(void *k_cache, void *v_cache, const float *k, const float *v, const float *cs, int64_t slot,
              const RopeShape &s, const KvFormat &f) {
  const int64_t block = slot / s.block_size, offset = slot % s.block_size, d = s.head_dim;
  thread_local std::vector<float> rotated;
  if (f.fp8 && rotated.size() < size_t(d)) rotated.resize(size_t(d));
  for (int64_t h = 0; h < s.n_kv_heads; h++) {
    const int64_t at = ((block * s.n_kv_heads + h) * s.block_size + offset) * d;
    if (!f.fp8) {
      rotate_head(static_cast<float *>(k_cache) + at, k + h * d, d, cs);
      std::memcpy(static_cast<float *>(v_cache) + at, v + h * d, size_t(d) * 4);
      continue;
    }
    rotate_head(rotated.data(), k + h * d, d, cs);
    uint8_t *kc = static_cast<uint8_t *>(k_cache) + at, *vc = static_cast<uint8_t *>(v_cache) + at;
    for (int64_t i = 0; i < d; i++) {
      kc[i] = f32_to_fp8_e4m3(rotated[size_t(i)] / f.k_scale);
      vc[i] = f32_to_fp8_e4m3(v[h * d + i] / f.v_scale);
    }
  }
}

// Bytes of a*b*c floats, saturating so that a size check fails instead of wrapping.
uint64_t f32_bytes(int64_t a, int64_t b, int64_t c) {
  const uint64_t n = bytes_of(a, b, c);
  return n > UINT64_MAX / 4 ? UINT64_MAX : n * 4;
}

// Bytes of the fused rows, T * (H + 2*KVH) * D floats, saturating as f32_bytes.
uint64_t qkv_bytes_of(const RopeShape &s) {
  int64_t heads = 0;
  if (__builtin_mul_overflow(s.n_kv_heads, int64_t(2), &heads) || __builtin_add_overflow(heads, s.n_heads, &heads))
    return s.n_tokens == 0 ? 0 : UINT64_MAX;
  return f32_bytes(s.n_tokens, heads, s.head_dim);
}

// q_out is written while qkv is read, so the two byte ranges must be disjoint.
int32_t check_disjoint(const Span &q_out, uint64_t q_bytes, const Span &qkv, uint64_t qkv_bytes) {
  const uintptr_t a = uintptr_t(q_out.data), b = uintptr_t(qkv.data);
  if (q_bytes == 0 || qkv_bytes == 0 || a + q_bytes <= b || b + qkv_bytes <= a) return VD_OK;
  return fail(VD_ERR_INVALID_ARGUMENT, "vd_rope_write_kv: q_out overlaps qkv; it must be a separate buffer");
}

} // namespace

VD_API int32_t vd_rope_write_kv(uint64_t ctx, uint64_t q_out, uint64_t qkv, uint64_t positions, uint64_t cos_sin,
                                uint64_t slot_mapping, uint64_t k_cache, uint64_t v_cache, int64_t n_tokens,
                                int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t block_size,
                                int32_t act_dtype, int32_t kv_dtype, float k_scale, float v_scale) {
  clear_error();
  VD_ON_EVERY_RANK(ctx, vd_rope_write_kv(ctx, q_out, qkv, positions, cos_sin, slot_mapping, k_cache, v_cache, n_tokens, n_heads, n_kv_heads, head_dim, block_size, act_dtype, kv_dtype, k_scale, v_scale));
  const RopeShape s{n_tokens, n_heads, n_kv_heads, head_dim, block_size};
  const KvFormat f{kv_dtype == VD_FP8_E4M3, k_scale, v_scale};
  int32_t st = check_act_dtype("vd_rope_write_kv", act_dtype);
  if (st == VD_OK) st = check_kv_format("vd_rope_write_kv", act_dtype, kv_dtype, k_scale, v_scale);
  if (st == VD_OK) st = check_rope_shape(s);
  if (st != VD_OK) return st;
  const uint64_t q_bytes = f32_bytes(n_tokens, n_heads, head_dim), qkv_bytes = qkv_bytes_of(s);
  Span sq, sqkv, sp, scs, ssm, skc, svc;
  if (!lookup_sized(ctx, q_out, "vd_rope_write_kv(q_out)", q_bytes, &sq) ||
      !lookup_sized(ctx, qkv, "vd_rope_write_kv(qkv)", qkv_bytes, &sqkv) ||
      !lookup_sized(ctx, positions, "vd_rope_write_kv(positions)", bytes_of(n_tokens, 1, 4), &sp) ||
      !lookup(ctx, cos_sin, "vd_rope_write_kv(cos_sin)", &scs) ||
      !lookup_sized(ctx, slot_mapping, "vd_rope_write_kv(slot_mapping)", bytes_of(n_tokens, 1, 4), &ssm) ||
      !lookup(ctx, k_cache, "vd_rope_write_kv(k_cache)", &skc) || !lookup(ctx, v_cache, "vd_rope_write_kv(v_cache)", &svc))
    return VD_ERR_INVALID_ARGUMENT;
  st = check_disjoint(sq, q_bytes, sqkv, qkv_bytes);
  if (st != VD_OK) return st;
  if (n_tokens == 0) return VD_OK;
  const int32_t *pos = reinterpret_cast<const int32_t *>(sp.data), *slots = reinterpret_cast<const int32_t *>(ssm.data);
  const uint64_t block_bytes = f.fp8 ? bytes_of(n_kv_heads, block_size, head_dim) : f32_bytes(n_kv_heads, block_size, head_dim);
  const int64_t n_blocks = block_bytes ? int64_t(std::min(skc.bytes, svc.bytes) / block_bytes) : 0;
  st = check_positions_and_slots(pos, slots, n_tokens, int64_t(scs.bytes / 4 / uint64_t(head_dim)),
                                 n_blocks * block_size);
  if (st != VD_OK) return st;
  float *qf = reinterpret_cast<float *>(sq.data);
  const float *rows = reinterpret_cast<const float *>(sqkv.data), *table = reinterpret_cast<const float *>(scs.data);
  const int64_t q_row = n_heads * head_dim, kv_row = n_kv_heads * head_dim, row = q_row + 2 * kv_row;
#pragma omp parallel for schedule(static) if (n_tokens * (q_row + kv_row) >= (int64_t(1) << 16))
  for (int64_t t = 0; t < n_tokens; t++) {
    const float *cs = table + int64_t(pos[t]) * head_dim, *r = rows + t * row;
    for (int64_t h = 0; h < n_heads; h++) rotate_head(qf + t * q_row + h * head_dim, r + h * head_dim, head_dim, cs);
    if (slots[t] >= 0)
      write_kv(skc.data, svc.data, r + q_row, r + q_row + kv_row, cs, slots[t], s, f);
  }
  return VD_OK;
}
