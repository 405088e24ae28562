// vd_rope_write_kv on the device: rotary embedding on the q and k parts of each fused q/k/v row;
// rotated q into q_out, rotated k and v into the paged KV cache [num_blocks, KVH, B, D]. One
// launch, one block per token. An e4m3 cache holds k / k_scale and v / v_scale, encoded as the cpu
// backend encodes them (common/fp8.h) from the f32 rotation, so both write the same bytes.
#include "../common/fp8.h"
#include "common.cuh"
#include "launch.cuh"

using namespace vd;

namespace {

struct RopeArgs {
  void *q_out;
  const void *qkv; // [T, (H + 2*KVH)*D], read only
  const int32_t *positions, *slots;
  const float *cos_sin;
  void *k_cache, *v_cache;
  int64_t n_tokens, n_heads, n_kv_heads, head_dim, block_size;
  int64_t max_pos, n_slots; // rows of cos_sin; slots in the smaller cache
  int32_t act;
  bool kv_fp8;
  float k_scale, v_scale; // e4m3 caches hold k / k_scale and v / v_scale
  int32_t *fault;
};

// Element i of a cache row: the act dtype, or the e4m3 code of v / scale (a rounded division, not a
// multiply by the inverse, as the cpu computes it).
__device__ __forceinline__ void store_kv(void *cache, int64_t i, const RopeArgs &a, float scale, float v) {
  if (a.kv_fp8) static_cast<uint8_t *>(cache)[i] = f32_to_fp8_e4m3(__fdiv_rn(v, scale));
  else store_f32(cache, i, a.act, v);
}

// Rotate-half pair (x1, x2) = (x[i], x[i + D/2]) by the angle of frequency i. The products are
// rounded separately (no fused multiply-add), as the cpu backend computes them.
__device__ __forceinline__ void rotate(float x1, float x2, float c, float s, float *r1, float *r2) {
  *r1 = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
  *r2 = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
}

// Thread j of a token handles pair i of head j / (D/2), over the H query heads and then, if the
// token is cached, the KVH key heads: the key heads start right after the query heads in the fused
// row, so head h's pair sits at h*D + i either way. A query pair goes to q_out; a key pair goes to
// k_cache, and the same thread copies the matching v pair, so one pass covers the whole row. A
// position outside the table makes the token's q and k NaN; a slot outside the cache skips the
// cache writes; both fault. A skipped token (negative slot) reads no k or v at all.
__global__ void rope_write_kv_kernel(RopeArgs a) {
  pdl_wait(); // launched with programmatic dependent launch (launch.cuh)
  pdl_launch_dependents();
  const int64_t half = a.head_dim / 2, q_row = a.n_heads * a.head_dim, kv_row = a.n_kv_heads * a.head_dim;
  const int64_t row = q_row + 2 * kv_row;
  for (int64_t t = blockIdx.x; t < a.n_tokens; t += gridDim.x) {
    const int32_t pos = a.positions[t], slot = a.slots[t];
    const bool pos_ok = pos >= 0 && pos < a.max_pos, slot_ok = slot >= 0 && slot < a.n_slots;
    if (threadIdx.x == 0 && !pos_ok) record_fault(a.fault, kFaultPosition);
    if (threadIdx.x == 0 && slot >= a.n_slots) record_fault(a.fault, kFaultSlot);
    const float *cs = a.cos_sin + (pos_ok ? int64_t(pos) * a.head_dim : 0);
    const int64_t block = slot_ok ? slot / a.block_size : 0, offset = slot_ok ? slot % a.block_size : 0;
    const int64_t pairs = (a.n_heads + (slot_ok ? a.n_kv_heads : 0)) * half;
    for (int64_t j = threadIdx.x; j < pairs; j += blockDim.x) {
      const int64_t head = j / half, i = j % half, in = t * row + head * a.head_dim;
      float r1 = nan_f32(), r2 = nan_f32();
      if (pos_ok) rotate(load_f32(a.qkv, in + i, a.act), load_f32(a.qkv, in + i + half, a.act), cs[i], cs[half + i], &r1, &r2);
      if (head < a.n_heads) {
        const int64_t out = t * q_row + head * a.head_dim;
        store_f32(a.q_out, out + i, a.act, r1);
        store_f32(a.q_out, out + i + half, a.act, r2);
        continue;
      }
      const int64_t c = ((block * a.n_kv_heads + (head - a.n_heads)) * a.block_size + offset) * a.head_dim;
      store_kv(a.k_cache, c + i, a, a.k_scale, r1);
      store_kv(a.k_cache, c + i + half, a, a.k_scale, r2);
      store_kv(a.v_cache, c + i, a, a.v_scale, load_f32(a.qkv, in + kv_row + i, a.act)); // v head = k head + KVH
      store_kv(a.v_cache, c + i + half, a, a.v_scale, load_f32(a.qkv, in + kv_row + i + half, a.act));
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

// Elements of the fused rows, T * (H + 2*KVH) * D, saturating as mul_sat.
int64_t qkv_elems(int64_t n_tokens, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim) {
  const int64_t kv2 = mul_sat(n_kv_heads, 2), heads = kv2 > INT64_MAX - n_heads ? INT64_MAX : kv2 + n_heads;
  return mul_sat(n_tokens, mul_sat(heads, head_dim));
}

// q_out is written while qkv is read (by other blocks too), so the two ranges must be disjoint.
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
  const char *fn = "vd_rope_write_kv";
  int32_t st = check_float_dtype(fn, "act_dtype", act_dtype);
  if (st == VD_OK) st = check_kv_format(fn, act_dtype, kv_dtype, k_scale, v_scale);
  if (st == VD_OK) st = check_rope_shape(fn, n_tokens, n_heads, n_kv_heads, head_dim, block_size);
  if (st != VD_OK) return st;
  Context *c = context(ctx, fn);
  const int64_t q_elems = mul_sat(n_tokens, mul_sat(n_heads, head_dim));
  const int64_t row_elems = qkv_elems(n_tokens, n_heads, n_kv_heads, head_dim);
  Span sq, sqkv, sp, scs, ssm, skc, svc;
  if (!c || !lookup_array(ctx, q_out, "vd_rope_write_kv(q_out)", q_elems, act_dtype, &sq) ||
      !lookup_array(ctx, qkv, "vd_rope_write_kv(qkv)", row_elems, act_dtype, &sqkv) ||
      !lookup_array(ctx, positions, "vd_rope_write_kv(positions)", n_tokens, VD_I32, &sp) ||
      !lookup_array(ctx, cos_sin, "vd_rope_write_kv(cos_sin)", 0, VD_F32, &scs) ||
      !lookup_array(ctx, slot_mapping, "vd_rope_write_kv(slot_mapping)", n_tokens, VD_I32, &ssm) ||
      !lookup_array(ctx, k_cache, "vd_rope_write_kv(k_cache)", 0, kv_dtype, &skc) ||
      !lookup_array(ctx, v_cache, "vd_rope_write_kv(v_cache)", 0, kv_dtype, &svc))
    return VD_ERR_INVALID_ARGUMENT;
  const int64_t esize = dtype_bytes(act_dtype);
  st = check_disjoint(sq, uint64_t(q_elems) * esize, sqkv, uint64_t(row_elems) * esize);
  if (st != VD_OK) return st;
  if (n_tokens == 0) return VD_OK;
  const uint64_t block_bytes = bytes_of(n_kv_heads, mul_sat(block_size, head_dim), dtype_bytes(kv_dtype));
  const uint64_t cache_bytes = skc.bytes < svc.bytes ? skc.bytes : svc.bytes;
  const int64_t n_blocks = block_bytes ? int64_t(cache_bytes / block_bytes) : 0;
  RopeArgs a{sq.data, sqkv.data, reinterpret_cast<const int32_t *>(sp.data),
             reinterpret_cast<const int32_t *>(ssm.data), reinterpret_cast<const float *>(scs.data), skc.data, svc.data,
             n_tokens, n_heads, n_kv_heads, head_dim, block_size, int64_t(scs.bytes / uint64_t(mul_sat(head_dim, 4))),
             mul_sat(n_blocks, block_size), act_dtype, kv_dtype == VD_FP8_E4M3, k_scale, v_scale, c->fault};
  st = check_cuda(launch_kernel(c->pdl, rope_write_kv_kernel, dim3(row_blocks(n_tokens)), dim3(row_threads(n_tokens)), 0,
                                c->stream, a),
                  fn, "launching the kernel");
  return st == VD_OK ? check_launch(fn) : st;
}
