// vd_rope_write_kv on the device: rotary embedding on q and k in place, then k and v into the
// paged KV cache [num_blocks, KVH, B, D], one block per token.
#include "common.cuh"
#include "launch.cuh"

using namespace vd;

namespace {

struct RopeArgs {
  void *q, *k;
  const void *v;
  const int32_t *positions, *slots;
  const float *cos_sin;
  void *k_cache, *v_cache;
  int64_t n_tokens, n_heads, n_kv_heads, head_dim, block_size;
  int64_t max_pos, n_slots; // rows of cos_sin; slots in the smaller cache
  int32_t act;
  int32_t *fault;
};

// Rotate-half pair (x1, x2) = (x[i], x[i + D/2]) by the angle of frequency i. The products are
// rounded separately (no fused multiply-add), as the cpu backend computes them.
__device__ __forceinline__ void rotate(float x1, float x2, float c, float s, float *r1, float *r2) {
  *r1 = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
  *r2 = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
}

// Thread j of a token handles pair i of head j / (D/2), over the H query heads then the KVH key
// heads; a key head's thread also writes its rotated pair to the cache. A position outside the
// table makes the token's q and k NaN; a slot outside the cache skips the cache write; both fault.
__global__ void rope_write_kv_kernel(RopeArgs a) {
  const int64_t half = a.head_dim / 2, q_row = a.n_heads * a.head_dim, kv_row = a.n_kv_heads * a.head_dim;
  const int64_t pairs = (a.n_heads + a.n_kv_heads) * half;
  for (int64_t t = blockIdx.x; t < a.n_tokens; t += gridDim.x) {
    const int32_t pos = a.positions[t], slot = a.slots[t];
    const bool pos_ok = pos >= 0 && pos < a.max_pos, slot_ok = slot >= 0 && slot < a.n_slots;
    if (threadIdx.x == 0 && !pos_ok) record_fault(a.fault, kFaultPosition);
    if (threadIdx.x == 0 && slot >= a.n_slots) record_fault(a.fault, kFaultSlot);
    const float *cs = a.cos_sin + (pos_ok ? int64_t(pos) * a.head_dim : 0);
    const int64_t block = slot_ok ? slot / a.block_size : 0, offset = slot_ok ? slot % a.block_size : 0;
    for (int64_t j = threadIdx.x; j < pairs; j += blockDim.x) {
      const int64_t head = j / half, i = j % half;
      const bool is_q = head < a.n_heads;
      void *row = is_q ? a.q : a.k;
      const int64_t at = is_q ? t * q_row + head * a.head_dim : t * kv_row + (head - a.n_heads) * a.head_dim;
      float r1 = nan_f32(), r2 = nan_f32();
      if (pos_ok) rotate(load_f32(row, at + i, a.act), load_f32(row, at + i + half, a.act), cs[i], cs[half + i], &r1, &r2);
      store_f32(row, at + i, a.act, r1);
      store_f32(row, at + i + half, a.act, r2);
      if (!is_q && slot_ok) {
        const int64_t c = ((block * a.n_kv_heads + (head - a.n_heads)) * a.block_size + offset) * a.head_dim;
        store_f32(a.k_cache, c + i, a.act, r1);
        store_f32(a.k_cache, c + i + half, a.act, r2);
      }
    }
    if (!slot_ok) continue;
    for (int64_t e = threadIdx.x; e < kv_row; e += blockDim.x) {
      const int64_t h = e / a.head_dim, d = e % a.head_dim;
      const int64_t c = ((block * a.n_kv_heads + h) * a.block_size + offset) * a.head_dim + d;
      store_f32(a.v_cache, c, a.act, load_f32(a.v, t * kv_row + e, a.act));
    }
  }
}

int32_t check_rope_shape(const char *fn, int64_t n_tokens, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                         int64_t block_size) {
  int32_t st = check_nonneg(fn, "n_tokens", n_tokens);
  if (st == VD_OK) st = check_nonneg(fn, "n_heads", n_heads);
  if (st == VD_OK) st = check_nonneg(fn, "n_kv_heads", n_kv_heads);
  if (st != VD_OK) return st;
  if (head_dim <= 0 || head_dim % 2 != 0)
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: head_dim %lld must be positive and even", fn, (long long)head_dim);
  if (block_size <= 0) return fail(VD_ERR_INVALID_ARGUMENT, "%s: block_size %lld must be > 0", fn, (long long)block_size);
  return VD_OK;
}

} // namespace

VD_API int32_t vd_rope_write_kv(uint64_t ctx, uint64_t q, uint64_t k, uint64_t v, uint64_t positions,
                                uint64_t cos_sin, uint64_t slot_mapping, uint64_t k_cache, uint64_t v_cache,
                                int64_t n_tokens, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                                int64_t block_size, int32_t act_dtype) {
  clear_error();
  const char *fn = "vd_rope_write_kv";
  int32_t st = check_float_dtype(fn, "act_dtype", act_dtype);
  if (st == VD_OK) st = check_rope_shape(fn, n_tokens, n_heads, n_kv_heads, head_dim, block_size);
  if (st != VD_OK) return st;
  Context *c = context(ctx, fn);
  const int64_t q_elems = mul_sat(n_tokens, mul_sat(n_heads, head_dim));
  const int64_t kv_elems = mul_sat(n_tokens, mul_sat(n_kv_heads, head_dim));
  Span sq, sk, sv, sp, scs, ssm, skc, svc;
  if (!c || !lookup_array(ctx, q, "vd_rope_write_kv(q)", q_elems, act_dtype, &sq) ||
      !lookup_array(ctx, k, "vd_rope_write_kv(k)", kv_elems, act_dtype, &sk) ||
      !lookup_array(ctx, v, "vd_rope_write_kv(v)", kv_elems, act_dtype, &sv) ||
      !lookup_array(ctx, positions, "vd_rope_write_kv(positions)", n_tokens, VD_I32, &sp) ||
      !lookup_array(ctx, cos_sin, "vd_rope_write_kv(cos_sin)", 0, VD_F32, &scs) ||
      !lookup_array(ctx, slot_mapping, "vd_rope_write_kv(slot_mapping)", n_tokens, VD_I32, &ssm) ||
      !lookup_array(ctx, k_cache, "vd_rope_write_kv(k_cache)", 0, act_dtype, &skc) ||
      !lookup_array(ctx, v_cache, "vd_rope_write_kv(v_cache)", 0, act_dtype, &svc))
    return VD_ERR_INVALID_ARGUMENT;
  if (n_tokens == 0) return VD_OK;
  const uint64_t block_bytes = bytes_of(n_kv_heads, mul_sat(block_size, head_dim), dtype_bytes(act_dtype));
  const uint64_t cache_bytes = skc.bytes < svc.bytes ? skc.bytes : svc.bytes;
  const int64_t n_blocks = block_bytes ? int64_t(cache_bytes / block_bytes) : 0;
  RopeArgs a{sq.data, sk.data, sv.data, reinterpret_cast<const int32_t *>(sp.data),
             reinterpret_cast<const int32_t *>(ssm.data), reinterpret_cast<const float *>(scs.data), skc.data, svc.data,
             n_tokens, n_heads, n_kv_heads, head_dim, block_size, int64_t(scs.bytes / uint64_t(mul_sat(head_dim, 4))),
             mul_sat(n_blocks, block_size), act_dtype, c->fault};
  rope_write_kv_kernel<<<row_blocks(n_tokens), row_threads(n_tokens), 0, c->stream>>>(a);
  return check_launch(fn);
}
