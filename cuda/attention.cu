// vd_attention on the GPU: argument checks (as cpu/attention.cpp, minus the ones that would read
// device memory) and the launch of the kernel in cuda/attention.cuh.
#include <climits>
#include <cstdint>

#include "attention.cuh"
#include "attention_prefill.cuh"
#include "common.cuh"

using namespace vd;

namespace {

const char *const kFn = "vd_attention";

using AttnShape = AttentionShape;

// Limits of this kernel: the batch metadata is i32, so larger counts cannot be addressed anyway.
int32_t check_limits(const AttnShape &s) {
  if (s.head_dim > attn::kMaxHeadDim)
    return fail(VD_ERR_UNSUPPORTED, "%s: head_dim %lld, the cuda backend supports at most %d", kFn,
                (long long)s.head_dim, attn::kMaxHeadDim);
  if (s.n_kv_heads > 65535)
    return fail(VD_ERR_UNSUPPORTED, "%s: n_kv_heads %lld, the cuda backend supports at most 65535", kFn,
                (long long)s.n_kv_heads);
  const int64_t counts[] = {s.n_seqs, s.n_tokens, s.n_heads, s.block_size, s.max_blocks};
  const char *names[] = {"n_seqs", "n_tokens", "n_heads", "block_size", "max_blocks"};
  for (int i = 0; i < 5; i++)
    if (counts[i] >= INT32_MAX)
      return fail(VD_ERR_INVALID_ARGUMENT, "%s: %s %lld does not fit the i32 batch metadata", kFn, names[i],
                  (long long)counts[i]);
  return VD_OK;
}

// Dynamic shared memory of one block: the layout of attn::carve.
uint64_t smem_bytes(int64_t group, int64_t d) {
  const uint64_t g = uint64_t(group), t = attn::kTile;
  const uint64_t floats = 2 * g * d + t * (d + 1) + t * d + g * t + 3 * g;
  return 8 * t + 16 + 4 * floats;
}

struct Buffers {
  Span out, q, k_cache, v_cache, tables, lens, qstart;
};

// Element counts as lookup_array takes them (saturated counts fail its size check).
int64_t count_of(int64_t a, int64_t b, int64_t c) {
  const uint64_t n = bytes_of(a, b, c);
  return n > uint64_t(INT64_MAX) ? INT64_MAX : int64_t(n);
}

bool lookup_all(uint64_t ctx, const uint64_t h[7], const AttnShape &s, int32_t dtype, Buffers *b) {
  const int64_t act = count_of(s.n_tokens, s.n_heads, s.head_dim);
  return lookup_array(ctx, h[0], "vd_attention(out)", act, dtype, &b->out) &&
         lookup_array(ctx, h[1], "vd_attention(q)", act, dtype, &b->q) &&
         lookup_array(ctx, h[2], "vd_attention(k_cache)", 0, dtype, &b->k_cache) &&
         lookup_array(ctx, h[3], "vd_attention(v_cache)", 0, dtype, &b->v_cache) &&
         lookup_array(ctx, h[4], "vd_attention(block_tables)", count_of(s.n_seqs, s.max_blocks, 1), VD_I32,
                      &b->tables) &&
         lookup_array(ctx, h[5], "vd_attention(seq_lens)", s.n_seqs, VD_I32, &b->lens) &&
         lookup_array(ctx, h[6], "vd_attention(query_start)", s.n_seqs + 1, VD_I32, &b->qstart);
}

attn::Params make_params(const Context &c, const Buffers &b, const AttnShape &s, float scale, int64_t elem) {
  attn::Params p;
  p.out = b.out.data;
  p.fault = c.fault;
  p.q = b.q.data;
  p.k_cache = b.k_cache.data;
  p.v_cache = b.v_cache.data;
  p.block_tables = reinterpret_cast<const int32_t *>(b.tables.data);
  p.seq_lens = reinterpret_cast<const int32_t *>(b.lens.data);
  p.query_start = reinterpret_cast<const int32_t *>(b.qstart.data);
  p.n_seqs = int32_t(s.n_seqs);
  p.n_tokens = int32_t(s.n_tokens);
  p.n_heads = int32_t(s.n_heads);
  p.n_kv_heads = int32_t(s.n_kv_heads);
  p.head_dim = int32_t(s.head_dim);
  p.group = int32_t(s.n_heads / s.n_kv_heads);
  p.block_size = int32_t(s.block_size);
  p.max_blocks = int32_t(s.max_blocks);
  const uint64_t block_bytes = bytes_of(s.n_kv_heads, s.block_size * s.head_dim, elem);
  const uint64_t cache_bytes = b.k_cache.bytes < b.v_cache.bytes ? b.k_cache.bytes : b.v_cache.bytes;
  p.n_blocks = int64_t(cache_bytes / block_bytes);
  p.scale = scale;
  p.skip_q_len = INT32_MAX;
  // Rows start at multiples of head_dim elements, so aligned bases and whole vectors per row suffice.
  const uintptr_t bases = uintptr_t(p.q) | uintptr_t(p.k_cache) | uintptr_t(p.v_cache);
  p.vec16 = (bases % 16 == 0) && (s.head_dim * elem) % 16 == 0;
  return p;
}

// Lets `kernel` use `smem` bytes of dynamic shared memory (above 48 KiB needs the device's opt-in).
int32_t allow_smem(const Context &c, const void *kernel, uint64_t smem, const char *what) {
  if (smem <= 48 * 1024) return VD_OK;
  int optin = 0;
  int32_t st = check_cuda(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, c.device), kFn,
                          "cudaDeviceGetAttribute");
  if (st != VD_OK) return st;
  if (smem > uint64_t(optin))
    return fail(VD_ERR_UNSUPPORTED, "%s: %s needs %llu bytes of shared memory, the device allows %d", kFn, what,
                (unsigned long long)smem, optin);
  // Always the device maximum, so the attribute never shrinks under a launch captured earlier.
  return check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, optin), kFn,
                    "cudaFuncSetAttribute");
}

template <typename T>
int32_t launch_rows(const Context &c, const attn::Params &p, int64_t n_tokens, uint64_t smem) {
  const void *kernel = reinterpret_cast<const void *>(&attn::attention_kernel<T>);
  const int32_t st = allow_smem(c, kernel, smem, "the query heads of one kv head");
  if (st != VD_OK) return st;
  const dim3 grid(unsigned(n_tokens), unsigned(p.n_kv_heads));
  attn::attention_kernel<T><<<grid, attn::kThreads, size_t(smem), c.stream>>>(p);
  return check_launch(kFn);
}

attn_tc::Params prefill_params(const attn::Params &p) {
  return attn_tc::Params{p.out, p.fault, p.q, p.k_cache, p.v_cache, p.block_tables, p.seq_lens, p.query_start,
                         p.n_seqs, p.n_tokens, p.n_heads, p.n_kv_heads, p.group, p.block_size, p.max_blocks,
                         p.n_blocks, p.scale * attn_tc::kLog2e};
}

// The tensor-core kernel over the sequences with long query ranges; the grid is an upper bound
// on their tiles (see attention_prefill.cuh).
template <typename T, int D>
int32_t launch_prefill(const Context &c, const attn::Params &p) {
  const void *kernel = reinterpret_cast<const void *>(&attn_tc::prefill_kernel<T, D>);
  constexpr int smem = attn_tc::smem_bytes(D);
  const int32_t st = allow_smem(c, kernel, smem, "the prefill kernel");
  if (st != VD_OK) return st;
  const int64_t tiles = (int64_t(p.n_tokens) + attn_tc::kRows - 1) / attn_tc::kRows + p.n_tokens / attn_tc::kMinQueryRows;
  const dim3 grid(unsigned(tiles), unsigned(p.n_heads));
  attn_tc::prefill_kernel<T, D><<<grid, attn_tc::kThreads, smem, c.stream>>>(prefill_params(p));
  return check_launch(kFn);
}

// Prefill rows on tensor cores where the dtype, head_dim and alignment allow, then the rest by row.
template <typename T>
int32_t launch(const Context &c, attn::Params p, int64_t n_tokens, uint64_t smem) {
  if constexpr (sizeof(T) == 2) {
    if (p.vec16 && p.n_tokens >= attn_tc::kMinQueryRows && (p.head_dim == 64 || p.head_dim == 128)) {
      const int32_t st = p.head_dim == 64 ? launch_prefill<T, 64>(c, p) : launch_prefill<T, 128>(c, p);
      if (st != VD_OK) return st;
      p.skip_q_len = attn_tc::kMinQueryRows;
    }
  }
  return launch_rows<T>(c, p, n_tokens, smem);
}

} // namespace

VD_API int32_t vd_attention(uint64_t ctx, uint64_t out, uint64_t q, uint64_t k_cache, uint64_t v_cache,
                            uint64_t block_tables, uint64_t seq_lens, uint64_t query_start, int64_t n_seqs,
                            int64_t n_tokens, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                            int64_t block_size, int64_t max_blocks, float scale, int32_t act_dtype) {
  clear_error();
  const AttnShape s{n_seqs, n_tokens, n_heads, n_kv_heads, head_dim, block_size, max_blocks};
  int32_t st = check_float_dtype(kFn, "act_dtype", act_dtype);
  if (st == VD_OK) st = check_attention_shape(s);
  if (st == VD_OK) st = check_limits(s);
  if (st != VD_OK) return st;
  Context *c = context(ctx, kFn);
  if (c == nullptr) return VD_ERR_INVALID_ARGUMENT;
  const int64_t elem = dtype_bytes(act_dtype);
  const uint64_t handles[7] = {out, q, k_cache, v_cache, block_tables, seq_lens, query_start};
  Buffers b;
  if (!lookup_all(ctx, handles, s, act_dtype, &b)) return VD_ERR_INVALID_ARGUMENT;
  if (n_tokens == 0 || n_seqs == 0) return VD_OK; // no row is owned by a sequence: nothing to write
  const attn::Params p = make_params(*c, b, s, scale, elem);
  const uint64_t smem = smem_bytes(p.group, head_dim);
  if (act_dtype == VD_F32) return launch<float>(*c, p, n_tokens, smem);
  if (act_dtype == VD_BF16) return launch<__nv_bfloat16>(*c, p, n_tokens, smem);
  return launch<__half>(*c, p, n_tokens, smem);
}
