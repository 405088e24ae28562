// Element-wise and row-wise model ops of the cpu backend: embedding, RMSNorm, SiLU-and-mul,
// gather, the decode-token scatter, all-reduce. Each output row depends only on its own input
// row (batch invariance).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "internal.h"
#include "rank.h"

using namespace vd;

namespace {

// Sum of squares with fixed 8-lane partial sums, so the order never depends on the caller.
float sum_of_squares(const float *v, int64_t n) {
  float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++) lanes[l] += v[i + l] * v[i + l];
  for (int l = 0; i < n; i++, l++) lanes[l] += v[i] * v[i];
  float a0 = lanes[0] + lanes[4], a1 = lanes[1] + lanes[5], a2 = lanes[2] + lanes[6], a3 = lanes[3] + lanes[7];
  return (a0 + a2) + (a1 + a3);
}

// One row of rmsnorm: out = src / rms(src) * weight, where src is x, or residual after += x.
void rmsnorm_row(float *out, float *residual, const float *x, const void *weight, int32_t w_dtype, int64_t hidden,
                 float eps) {
  const float *src = x;
  if (residual) {
    for (int64_t i = 0; i < hidden; i++) residual[i] += x[i];
    src = residual;
  }
  const float inv = 1.0f / std::sqrt(sum_of_squares(src, hidden) / float(hidden) + eps);
  for (int64_t i = 0; i < hidden; i++) out[i] = (src[i] * inv) * load_as_f32(weight, i, w_dtype);
}

// Checks that every index of an i32 array lies in [0, limit).
int32_t check_indices(const char *fn, const char *arg, const int32_t *idx, int64_t n, int64_t limit) {
  for (int64_t i = 0; i < n; i++)
    if (idx[i] < 0 || idx[i] >= limit)
      return fail(VD_ERR_INVALID_ARGUMENT, "%s: %s[%lld] = %d is outside [0, %lld)", fn, arg, (long long)i, idx[i],
                  (long long)limit);
  return VD_OK;
}

} // namespace

VD_API int32_t vd_embedding(uint64_t ctx, uint64_t out, uint64_t table, uint64_t token_ids, int64_t n_tokens,
                            int64_t hidden, int64_t vocab, int32_t act_dtype, int32_t w_dtype) {
  clear_error();
  VD_ON_EVERY_RANK(ctx, vd_embedding(ctx, out, table, token_ids, n_tokens, hidden, vocab, act_dtype, w_dtype));
  const char *fn = "vd_embedding";
  int32_t st = check_act_dtype(fn, act_dtype);
  if (st == VD_OK) st = check_weight_dtype(fn, "w_dtype", w_dtype);
  if (st == VD_OK) st = check_nonneg(fn, "n_tokens", n_tokens);
  if (st == VD_OK) st = check_nonneg(fn, "hidden", hidden);
  if (st == VD_OK) st = check_nonneg(fn, "vocab", vocab);
  if (st != VD_OK) return st;
  Span so, stab, sid;
  if (!lookup_sized(ctx, out, "vd_embedding(out)", bytes_of(n_tokens, hidden, 4), &so) ||
      !lookup_sized(ctx, table, "vd_embedding(table)", bytes_of(vocab, hidden, dtype_bytes(w_dtype)), &stab) ||
      !lookup_sized(ctx, token_ids, "vd_embedding(token_ids)", bytes_of(n_tokens, 1, 4), &sid))
    return VD_ERR_INVALID_ARGUMENT;
  const int32_t *ids = reinterpret_cast<const int32_t *>(sid.data);
  st = check_indices(fn, "token_ids", ids, n_tokens, vocab);
  if (st != VD_OK) return st;
  float *o = reinterpret_cast<float *>(so.data);
#pragma omp parallel for schedule(static) if (n_tokens * hidden >= kParallelElems)
  for (int64_t t = 0; t < n_tokens; t++)
    for (int64_t i = 0; i < hidden; i++) o[t * hidden + i] = load_as_f32(stab.data, ids[t] * hidden + i, w_dtype);
  return VD_OK;
}

VD_API int32_t vd_rmsnorm(uint64_t ctx, uint64_t out, uint64_t residual, uint64_t x, uint64_t weight, int64_t n_tokens,
                          int64_t hidden, float eps, int32_t act_dtype, int32_t w_dtype) {
  clear_error();
  VD_ON_EVERY_RANK(ctx, vd_rmsnorm(ctx, out, residual, x, weight, n_tokens, hidden, eps, act_dtype, w_dtype));
  const char *fn = "vd_rmsnorm";
  int32_t st = check_act_dtype(fn, act_dtype);
  if (st == VD_OK) st = check_weight_dtype(fn, "w_dtype", w_dtype);
  if (st == VD_OK) st = check_nonneg(fn, "n_tokens", n_tokens);
  if (st == VD_OK) st = check_nonneg(fn, "hidden", hidden);
  if (st != VD_OK) return st;
  if (!(eps >= 0.0f)) return fail(VD_ERR_INVALID_ARGUMENT, "%s: eps %g must be >= 0", fn, double(eps));
  const uint64_t act_bytes = bytes_of(n_tokens, hidden, 4);
  Span so, sr{nullptr, 0}, sx, sw;
  if (!lookup_sized(ctx, out, "vd_rmsnorm(out)", act_bytes, &so) ||
      (residual != 0 && !lookup_sized(ctx, residual, "vd_rmsnorm(residual)", act_bytes, &sr)) ||
      !lookup_sized(ctx, x, "vd_rmsnorm(x)", act_bytes, &sx) ||
      !lookup_sized(ctx, weight, "vd_rmsnorm(weight)", bytes_of(1, hidden, dtype_bytes(w_dtype)), &sw))
    return VD_ERR_INVALID_ARGUMENT;
  float *o = reinterpret_cast<float *>(so.data), *r = reinterpret_cast<float *>(sr.data);
  const float *xs = reinterpret_cast<const float *>(sx.data);
#pragma omp parallel for schedule(static) if (n_tokens * hidden >= kParallelElems)
  for (int64_t t = 0; t < n_tokens; t++)
    rmsnorm_row(o + t * hidden, r ? r + t * hidden : nullptr, xs + t * hidden, sw.data, w_dtype, hidden, eps);
  return VD_OK;
}

VD_API int32_t vd_silu_mul(uint64_t ctx, uint64_t out, uint64_t gate_up, int64_t n_tokens, int64_t inter,
                           int32_t act_dtype) {
  clear_error();
  VD_ON_EVERY_RANK(ctx, vd_silu_mul(ctx, out, gate_up, n_tokens, inter, act_dtype));
  const char *fn = "vd_silu_mul";
  int32_t st = check_act_dtype(fn, act_dtype);
  if (st == VD_OK) st = check_nonneg(fn, "n_tokens", n_tokens);
  if (st == VD_OK) st = check_nonneg(fn, "inter", inter);
  if (st != VD_OK) return st;
  Span so, sg;
  if (!lookup_sized(ctx, out, "vd_silu_mul(out)", bytes_of(n_tokens, inter, 4), &so) ||
      !lookup_sized(ctx, gate_up, "vd_silu_mul(gate_up)", bytes_of(n_tokens, 2 * inter, 4), &sg))
    return VD_ERR_INVALID_ARGUMENT;
  float *o = reinterpret_cast<float *>(so.data);
  const float *g = reinterpret_cast<const float *>(sg.data);
#pragma omp parallel for schedule(static) if (n_tokens * inter >= kParallelElems)
  for (int64_t t = 0; t < n_tokens; t++) {
    const float *gate = g + t * 2 * inter, *up = gate + inter;
    for (int64_t i = 0; i < inter; i++) o[t * inter + i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
  }
  return VD_OK;
}

VD_API int32_t vd_gather_rows(uint64_t ctx, uint64_t out, uint64_t x, uint64_t rows, int64_t n_rows, int64_t cols,
                              int32_t act_dtype) {
  clear_error();
  VD_ON_EVERY_RANK(ctx, vd_gather_rows(ctx, out, x, rows, n_rows, cols, act_dtype));
  const char *fn = "vd_gather_rows";
  int32_t st = check_act_dtype(fn, act_dtype);
  if (st == VD_OK) st = check_nonneg(fn, "n_rows", n_rows);
  if (st == VD_OK) st = check_nonneg(fn, "cols", cols);
  if (st != VD_OK) return st;
  Span so, sx, sr;
  if (!lookup_sized(ctx, out, "vd_gather_rows(out)", bytes_of(n_rows, cols, 4), &so) ||
      !lookup(ctx, x, "vd_gather_rows(x)", &sx) ||
      !lookup_sized(ctx, rows, "vd_gather_rows(rows)", bytes_of(n_rows, 1, 4), &sr))
    return VD_ERR_INVALID_ARGUMENT;
  const int32_t *idx = reinterpret_cast<const int32_t *>(sr.data);
  const int64_t x_rows = cols > 0 ? int64_t(sx.bytes / uint64_t(cols * 4)) : INT32_MAX;
  st = check_indices(fn, "rows", idx, n_rows, x_rows);
  if (st != VD_OK) return st;
  for (int64_t i = 0; i < n_rows; i++)
    std::memmove(so.data + i * cols * 4, sx.data + int64_t(idx[i]) * cols * 4, size_t(cols * 4));
  return VD_OK;
}

VD_API int32_t vd_scatter_tokens(uint64_t ctx, uint64_t token_ids, uint64_t dst_rows, uint64_t src, uint64_t src_rows,
                                 int64_t n) {
  clear_error();
  VD_ON_EVERY_RANK(ctx, vd_scatter_tokens(ctx, token_ids, dst_rows, src, src_rows, n));
  const char *fn = "vd_scatter_tokens";
  int32_t st = check_nonneg(fn, "n", n);
  if (st != VD_OK) return st;
  Span sd, sdr, ss, ssr;
  if (!lookup(ctx, token_ids, "vd_scatter_tokens(token_ids)", &sd) ||
      !lookup_sized(ctx, dst_rows, "vd_scatter_tokens(dst_rows)", bytes_of(n, 4, 1), &sdr) ||
      !lookup(ctx, src, "vd_scatter_tokens(src)", &ss) ||
      !lookup_sized(ctx, src_rows, "vd_scatter_tokens(src_rows)", bytes_of(n, 4, 1), &ssr))
    return VD_ERR_INVALID_ARGUMENT;
  const int32_t *to = reinterpret_cast<const int32_t *>(sdr.data), *from = reinterpret_cast<const int32_t *>(ssr.data);
  // The cpu can afford to check what the cuda kernel trusts (and reports as a fault).
  st = check_indices(fn, "dst_rows", to, n, int64_t(sd.bytes / 4));
  if (st == VD_OK) st = check_indices(fn, "src_rows", from, n, int64_t(ss.bytes / 4));
  if (st != VD_OK) return st;
  int32_t *ids = reinterpret_cast<int32_t *>(sd.data);
  const int32_t *values = reinterpret_cast<const int32_t *>(ss.data);
  for (int64_t j = 0; j < n; j++) ids[to[j]] = values[from[j]] < 0 ? 0 : values[from[j]];
  return VD_OK;
}

// One rank: the sum over ranks is the buffer itself. Still checks its arguments.
VD_API int32_t vd_all_reduce(uint64_t ctx, uint64_t buf, int64_t n, int32_t act_dtype) {
  clear_error();
  const char *fn = "vd_all_reduce";
  int32_t st = check_act_dtype(fn, act_dtype);
  if (st == VD_OK) st = check_nonneg(fn, "n", n);
  if (st != VD_OK) return st;
  // Each rank's block in turn (lookup answers for the current rank), summed in rank order into
  // rank 0's, then copied back to the others: every rank ends with the same sum.
  const int tp = std::max(context_tp(ctx), 1);
  std::vector<float *> blocks;
  for (int r = 0; r < tp; r++) {
    Span sb;
    const bool ok = with_rank(r, [&] { return lookup_sized(ctx, buf, "vd_all_reduce(buf)", bytes_of(n, 1, 4), &sb); });
    if (!ok) return VD_ERR_INVALID_ARGUMENT;
    blocks.push_back(reinterpret_cast<float *>(sb.data));
  }
  for (int r = 1; r < tp; r++)
    for (int64_t i = 0; i < n; i++) blocks[0][i] += blocks[size_t(r)][i];
  for (int r = 1; r < tp; r++) std::memcpy(blocks[size_t(r)], blocks[0], size_t(n) * 4);
  return VD_OK;
}

VD_API int32_t vd_cast(uint64_t ctx, uint64_t out, uint64_t x, int64_t n, int32_t out_dtype, int32_t in_dtype) {
  clear_error();
  VD_ON_EVERY_RANK(ctx, vd_cast(ctx, out, x, n, out_dtype, in_dtype));
  const char *fn = "vd_cast";
  int32_t st = check_weight_dtype(fn, "out_dtype", out_dtype);
  if (st == VD_OK) st = check_weight_dtype(fn, "in_dtype", in_dtype);
  if (st == VD_OK) st = check_nonneg(fn, "n", n);
  if (st != VD_OK) return st;
  Span so, sx;
  if (!lookup_sized(ctx, out, "vd_cast(out)", bytes_of(n, dtype_bytes(out_dtype), 1), &so) ||
      !lookup_sized(ctx, x, "vd_cast(x)", bytes_of(n, dtype_bytes(in_dtype), 1), &sx))
    return VD_ERR_INVALID_ARGUMENT;
#pragma omp parallel for schedule(static) if (n >= kParallelElems)
  for (int64_t i = 0; i < n; i++) store_from_f32(so.data, i, out_dtype, load_as_f32(sx.data, i, in_dtype));
  return VD_OK;
}
