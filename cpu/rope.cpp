// vd_rope_write_kv: rotary embedding on q and k, then k and v into the paged KV cache.
#include <algorithm>

#include "internal.h"

using namespace vd;

namespace {

// Rotate-half (NeoX / HF Llama): pairs are (x[i], x[i + D/2]) rotated by the angle of frequency i.
void rotate_heads(float *x, int64_t heads, int64_t dim, const float *cos_sin) {
  const int64_t half = dim / 2;
  const float *c = cos_sin, *s = cos_sin + half;
  for (int64_t h = 0; h < heads; h++) {
    float *v = x + h * dim;
    for (int64_t i = 0; i < half; i++) {
      const float x1 = v[i], x2 = v[i + half];
      v[i] = x1 * c[i] - x2 * s[i];
      v[i + half] = x2 * c[i] + x1 * s[i];
    }
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

// Copies token t's k and v heads into the cache slot (block, offset) of layout [blocks, KVH, B, D].
void write_kv(float *k_cache, float *v_cache, const float *k, const float *v, int64_t slot, const RopeShape &s) {
  const int64_t block = slot / s.block_size, offset = slot % s.block_size, d = s.head_dim;
  for (int64_t h = 0; h < s.n_kv_heads; h++) {
    const int64_t at = ((block * s.n_kv_heads + h) * s.block_size + offset) * d;
    std::memcpy(k_cache + at, k + h * d, size_t(d) * 4);
    std::memcpy(v_cache + at, v + h * d, size_t(d) * 4);
  }
}

} // namespace

VD_API int32_t vd_rope_write_kv(uint64_t ctx, uint64_t q, uint64_t k, uint64_t v, uint64_t positions,
                                uint64_t cos_sin, uint64_t slot_mapping, uint64_t k_cache, uint64_t v_cache,
                                int64_t n_tokens, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                                int64_t block_size, int32_t act_dtype) {
  clear_error();
  const RopeShape s{n_tokens, n_heads, n_kv_heads, head_dim, block_size};
  int32_t st = check_act_dtype("vd_rope_write_kv", act_dtype);
  if (st == VD_OK) st = check_rope_shape(s);
  if (st != VD_OK) return st;
  Span sq, sk, sv, sp, scs, ssm, skc, svc;
  if (!lookup_sized(ctx, q, "vd_rope_write_kv(q)", bytes_of(n_tokens, n_heads * head_dim, 4), &sq) ||
      !lookup_sized(ctx, k, "vd_rope_write_kv(k)", bytes_of(n_tokens, n_kv_heads * head_dim, 4), &sk) ||
      !lookup_sized(ctx, v, "vd_rope_write_kv(v)", bytes_of(n_tokens, n_kv_heads * head_dim, 4), &sv) ||
      !lookup_sized(ctx, positions, "vd_rope_write_kv(positions)", bytes_of(n_tokens, 1, 4), &sp) ||
      !lookup(ctx, cos_sin, "vd_rope_write_kv(cos_sin)", &scs) ||
      !lookup_sized(ctx, slot_mapping, "vd_rope_write_kv(slot_mapping)", bytes_of(n_tokens, 1, 4), &ssm) ||
      !lookup(ctx, k_cache, "vd_rope_write_kv(k_cache)", &skc) || !lookup(ctx, v_cache, "vd_rope_write_kv(v_cache)", &svc))
    return VD_ERR_INVALID_ARGUMENT;
  const int32_t *pos = reinterpret_cast<const int32_t *>(sp.data), *slots = reinterpret_cast<const int32_t *>(ssm.data);
  const uint64_t block_bytes = bytes_of(n_kv_heads, block_size * head_dim, 4);
  const int64_t n_blocks = block_bytes ? int64_t(std::min(skc.bytes, svc.bytes) / block_bytes) : 0;
  st = check_positions_and_slots(pos, slots, n_tokens, int64_t(scs.bytes / uint64_t(head_dim * 4)),
                                 n_blocks * block_size);
  if (st != VD_OK) return st;
  float *qf = reinterpret_cast<float *>(sq.data), *kf = reinterpret_cast<float *>(sk.data);
  const float *vf = reinterpret_cast<const float *>(sv.data), *table = reinterpret_cast<const float *>(scs.data);
  const int64_t q_row = n_heads * head_dim, kv_row = n_kv_heads * head_dim;
#pragma omp parallel for schedule(static) if (n_tokens * (q_row + kv_row) >= (int64_t(1) << 16))
  for (int64_t t = 0; t < n_tokens; t++) {
    const float *cs = table + int64_t(pos[t]) * head_dim;
    rotate_heads(qf + t * q_row, n_heads, head_dim, cs);
    rotate_heads(kf + t * kv_row, n_kv_heads, head_dim, cs);
    if (slots[t] >= 0)
      write_kv(reinterpret_cast<float *>(skc.data), reinterpret_cast<float *>(svc.data), kf + t * kv_row,
               vf + t * kv_row, slots[t], s);
  }
  return VD_OK;
}
