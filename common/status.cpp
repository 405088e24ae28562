// See status.h. Compiled into libvllmd_cpu.so and libvllmd_cuda.so alike.
#include "status.h"

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <string>
#include <vector>

namespace vd {

namespace {
thread_local std::string last_error;
}

int32_t fail(int32_t status, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  last_error = buf;
  return status;
}

void clear_error() { last_error.clear(); }

const char *last_error_text() { return last_error.c_str(); }

int32_t check_float_dtype(const char *fn, const char *arg, int32_t dtype) {
  if (dtype == VD_F32 || dtype == VD_F16 || dtype == VD_BF16) return VD_OK;
  return fail(VD_ERR_INVALID_ARGUMENT, "%s: %s %d, expected f32 (0), f16 (1) or bf16 (2)", fn, arg, dtype);
}

int32_t check_kv_format(const char *fn, int32_t act_dtype, int32_t kv_dtype, float k_scale, float v_scale) {
  if (kv_dtype == act_dtype) return VD_OK;
  if (kv_dtype != VD_FP8_E4M3)
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: kv_dtype %d, expected act_dtype (%d) or VD_FP8_E4M3 (%d)", fn, kv_dtype, act_dtype,
                VD_FP8_E4M3);
  if (!(std::isfinite(k_scale) && k_scale > 0.0f && std::isfinite(v_scale) && v_scale > 0.0f))
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: an e4m3 KV cache needs finite scales > 0, got k_scale %g, v_scale %g", fn,
                double(k_scale), double(v_scale));
  return VD_OK;
}

int32_t check_nonneg(const char *fn, const char *arg, int64_t v) {
  if (v >= 0) return VD_OK;
  return fail(VD_ERR_INVALID_ARGUMENT, "%s: %s is %lld, must be >= 0", fn, arg, (long long)v);
}

int32_t check_act_quant(const char *fn, int32_t act_quant) {
  if (act_quant == VD_ACT_QUANT_NONE || act_quant == VD_ACT_QUANT_FP8_ROW) return VD_OK;
  return fail(VD_ERR_INVALID_ARGUMENT, "%s: act_quant %d, expected VD_ACT_QUANT_NONE (0) or VD_ACT_QUANT_FP8_ROW (1)", fn, act_quant);
}

uint64_t bytes_of(int64_t a, int64_t b, int64_t c) {
  if (a < 0 || b < 0 || c < 0) return UINT64_MAX;
  unsigned __int128 p = (unsigned __int128)uint64_t(a) * uint64_t(b);
  if (p > UINT64_MAX) return UINT64_MAX;
  p *= uint64_t(c);
  return p > UINT64_MAX ? UINT64_MAX : uint64_t(p);
}

bool lookup_sized(uint64_t ctx, uint64_t buf, const char *what, uint64_t need_bytes, Span *out) {
  if (!lookup(ctx, buf, what, out)) return false;
  if (out->bytes < need_bytes) {
    fail(VD_ERR_INVALID_ARGUMENT, "%s: buffer %llu holds %llu bytes, the shape needs %llu", what,
         (unsigned long long)buf, (unsigned long long)out->bytes, (unsigned long long)need_bytes);
    return false;
  }
  return true;
}

bool lookup_range(uint64_t ctx, uint64_t buf, uint64_t offset, uint64_t bytes, const char *what, Span *out) {
  if (!lookup(ctx, buf, what, out)) return false;
  if (offset > out->bytes || bytes > out->bytes - offset) {
    fail(VD_ERR_INVALID_ARGUMENT, "%s: range [%llu, %llu) outside buffer %llu of %llu bytes", what,
         (unsigned long long)offset, (unsigned long long)(offset + bytes), (unsigned long long)buf,
         (unsigned long long)out->bytes);
    return false;
  }
  return true;
}

int32_t check_attention_shape(const AttentionShape &s) {
  const char *fn = "vd_attention";
  int32_t st = check_nonneg(fn, "n_seqs", s.n_seqs);
  if (st == VD_OK) st = check_nonneg(fn, "n_tokens", s.n_tokens);
  if (st == VD_OK) st = check_nonneg(fn, "max_blocks", s.max_blocks);
  if (st != VD_OK) return st;
  if (s.n_kv_heads <= 0 || s.n_heads <= 0 || s.n_heads % s.n_kv_heads != 0)
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: n_heads %lld must be a positive multiple of n_kv_heads %lld", fn,
                (long long)s.n_heads, (long long)s.n_kv_heads);
  if (s.head_dim <= 0 || s.block_size <= 0)
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: head_dim %lld and block_size %lld must be > 0", fn,
                (long long)s.head_dim, (long long)s.block_size);
  return VD_OK;
}

namespace {
bool is_float_dtype(int32_t d) { return d == VD_F32 || d == VD_F16 || d == VD_BF16; }
} // namespace

int32_t check_load_weight_args(int32_t dst_dtype, int32_t file_dtype, int64_t rows, int64_t cols, int32_t shard_dim,
                               int32_t n_shards, int32_t tp, const char *path) {
  const char *fn = "vd_load_weight";
  if (!path) return fail(VD_ERR_INVALID_ARGUMENT, "%s: path is null", fn);
  if (rows < 0 || cols < 0)
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: negative shape [%lld, %lld]", fn, (long long)rows, (long long)cols);
  if (shard_dim < -1 || shard_dim > 1)
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: shard_dim %d, expected -1, 0 or 1", fn, shard_dim);
  if (shard_dim >= 0) {
    const int64_t dim = shard_dim == 0 ? rows : cols;
    if (n_shards < 1 || tp % n_shards != 0)
      return fail(VD_ERR_INVALID_ARGUMENT, "%s: n_shards %d must divide tp %d", fn, n_shards, tp);
    if (dim % n_shards != 0)
      return fail(VD_ERR_INVALID_ARGUMENT, "%s: %s %lld of %s is not divisible into %d shards", fn, shard_dim == 0 ? "rows" : "cols",
                  (long long)dim, path, n_shards);
  }
  // i32 and e4m3 codes are copied as they are; the float types convert into one another.
  bool as_is = dst_dtype == file_dtype && (dst_dtype == VD_I32 || dst_dtype == VD_FP8_E4M3);
  if (!as_is && !(is_float_dtype(dst_dtype) && is_float_dtype(file_dtype)))
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: cannot convert file_dtype %d to dst_dtype %d", fn, file_dtype, dst_dtype);
  if (rows > 0 && cols > (int64_t(1) << 46) / rows)
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: shape [%lld, %lld] is too large", fn, (long long)rows, (long long)cols);
  return VD_OK;
}

int32_t check_int_weights(const char *fn, int32_t bits, int64_t group_size, int64_t n, int64_t k, int64_t *groups) {
  if (bits != 4 && bits != 8) return fail(VD_ERR_UNSUPPORTED, "%s: bits %d, supported: 4 and 8", fn, bits);
  if (group_size < 1) return fail(VD_ERR_INVALID_ARGUMENT, "%s: group_size %lld must be >= 1", fn, (long long)group_size);
  if (n < 0 || k < 0) return fail(VD_ERR_INVALID_ARGUMENT, "%s: negative shape n=%lld k=%lld", fn, (long long)n, (long long)k);
  if (k % (32 / bits) != 0)
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: k %lld is not a multiple of %d (%d-bit codes in 32-bit words)", fn,
                (long long)k, 32 / bits, bits);
  *groups = (k + group_size - 1) / group_size;
  return VD_OK;
}

int32_t check_repack_layout(const char *fn, int32_t layout, int32_t bits, int64_t n, int64_t k, int64_t group_size) {
  if (layout != VD_PACK_GPTQ && layout != VD_PACK_GPTQ_V2 && layout != VD_PACK_AWQ && layout != VD_PACK_ROWS)
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: layout %d, expected VD_PACK_GPTQ, VD_PACK_GPTQ_V2, VD_PACK_AWQ or VD_PACK_ROWS", fn,
                layout);
  if (layout == VD_PACK_AWQ && bits != 4) return fail(VD_ERR_UNSUPPORTED, "%s: AWQ's layout is 4-bit only, got bits %d", fn, bits);
  if (layout == VD_PACK_AWQ && k % group_size != 0)
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: AWQ needs k %lld to be a multiple of group_size %lld", fn, (long long)k,
                (long long)group_size);
  if (n % (32 / bits) != 0)
    return fail(VD_ERR_INVALID_ARGUMENT, "%s: n %lld is not a multiple of %d (qzeros packs %d-bit zeros)", fn, (long long)n,
                32 / bits, bits);
  return VD_OK;
}

int32_t check_k_perm(const char *fn, const int32_t *k_perm, int64_t k) {
  std::vector<bool> seen(size_t(k), false);
  for (int64_t j = 0; j < k; j++) {
    const int32_t v = k_perm[j];
    if (v < 0 || v >= k || seen[size_t(v)])
      return fail(VD_ERR_INVALID_ARGUMENT, "%s: k_perm[%lld] = %d is not part of a permutation of 0..%lld", fn,
                  (long long)j, v, (long long)(k - 1));
    seen[size_t(v)] = true;
  }
  return VD_OK;
}

int32_t check_host_alloc_args(void **out_ptr, uint64_t bytes) {
  const char *fn = "vd_host_alloc";
  if (!out_ptr) return fail(VD_ERR_INVALID_ARGUMENT, "%s: out_ptr is null", fn);
  if (bytes == 0) return fail(VD_ERR_INVALID_ARGUMENT, "%s: bytes is 0", fn);
  if (bytes > (uint64_t(1) << 52))
    return fail(VD_ERR_OUT_OF_MEMORY, "%s: %llu bytes is more than any machine holds", fn, (unsigned long long)bytes);
  return VD_OK;
}

} // namespace vd
