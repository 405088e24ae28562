// vd_attention on the GPU: argument checks (as cpu/attention.cpp, minus the ones that would read
// device memory) and the launch of the kernels in cuda/attention*.cuh, for a cache of the act
// dtype or of e4m3 codes (cuda/kv_fp8.cuh).
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>

#include "attention.cuh"
#include "attention_decode.cuh"
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

bool lookup_all(uint64_t ctx, const uint64_t h[7], const AttnShape &s, int32_t dtype, int32_t kv_dtype, Buffers *b) {
  const int64_t act = count_of(s.n_tokens, s.n_heads, s.head_dim);
  return lookup_array(ctx, h[0], "vd_attention(out)", act, dtype, &b->out) &&
         lookup_array(ctx, h[1], "vd_attention(q)", act, dtype, &b->q) &&
         lookup_array(ctx, h[2], "vd_attention(k_cache)", 0, kv_dtype, &b->k_cache) &&
         lookup_array(ctx, h[3], "vd_attention(v_cache)", 0, kv_dtype, &b->v_cache) &&
         lookup_array(ctx, h[4], "vd_attention(block_tables)", count_of(s.n_seqs, s.max_blocks, 1), VD_I32,
                      &b->tables) &&
         lookup_array(ctx, h[5], "vd_attention(seq_lens)", s.n_seqs, VD_I32, &b->lens) &&
         lookup_array(ctx, h[6], "vd_attention(query_start)", s.n_seqs + 1, VD_I32, &b->qstart);
}

// The cache's format: its element size and, for e4m3, the scales its codes stand for.
struct KvFormat {
  int64_t elem;
  bool fp8;
  float k_scale, v_scale;
};

attn::Params make_params(const Context &c, const Buffers &b, const AttnShape &s, float scale, int64_t elem,
                         const KvFormat &kv) {
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
  const uint64_t block_bytes = bytes_of(s.n_kv_heads, s.block_size * s.head_dim, kv.elem);
  const uint64_t cache_bytes = b.k_cache.bytes < b.v_cache.bytes ? b.k_cache.bytes : b.v_cache.bytes;
  p.n_blocks = int64_t(cache_bytes / block_bytes);
  p.scale = kv.fp8 ? scale * kv.k_scale : scale;
  p.v_scale = kv.fp8 ? kv.v_scale : 1.0f;
  p.kv_fp8 = kv.fp8;
  // Rows start at multiples of head_dim elements, so aligned bases and whole vectors per row suffice.
  const uintptr_t bases = uintptr_t(p.q) | uintptr_t(p.k_cache) | uintptr_t(p.v_cache);
  p.vec16 = (bases % 16 == 0) && (s.head_dim * elem) % 16 == 0 && (s.head_dim * kv.elem) % 16 == 0;
  return p;
}

// Lets `kernel` use `smem` bytes of dynamic shared memory (above 48 KiB needs the device's opt-in).
int32_t allow_smem(const Context &c, const void *kernel, uint64_t smem, const char *what) {
  if (smem <= 48 * 1024) return VD_OK;
  int optin = 0;
  int32_t st = check_cuda(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, c.device), kFn,
                          "cudaDeviceGetAttribute");
  if (st != VD_OK) return st;
  // Always the most the kernel can have (the opt-in less its static shared memory), so the
  // attribute never shrinks under a launch captured earlier.
  cudaFuncAttributes attr{};
  st = check_cuda(cudaFuncGetAttributes(&attr, kernel), kFn, "cudaFuncGetAttributes");
  if (st != VD_OK) return st;
  if (smem + attr.sharedSizeBytes > uint64_t(optin))
    return fail(VD_ERR_UNSUPPORTED, "%s: %s needs %llu bytes of shared memory, the device allows %d", kFn, what,
                (unsigned long long)(smem + attr.sharedSizeBytes), optin);
  return check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         optin - int(attr.sharedSizeBytes)), kFn, "cudaFuncSetAttribute");
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

// The tensor-core kernel over the sequences with long query ranges; the grid is an upper bound
// on their tiles (see attention_prefill.cuh).
template <typename T, int D, bool FP8>
int32_t launch_prefill(const Context &c, const attn::Params &p) {
  const void *kernel = reinterpret_cast<const void *>(&attn_tc::prefill_kernel<T, D, FP8>);
  constexpr int smem = attn_tc::smem_bytes(D);
  const int32_t st = allow_smem(c, kernel, smem, "the prefill kernel");
  if (st != VD_OK) return st;
  const int64_t tiles = (int64_t(p.n_tokens) + attn_tc::kRows - 1) / attn_tc::kRows + p.n_tokens / attn_tc::kMinQueryRows;
  const dim3 grid(unsigned(tiles), unsigned(p.n_heads));
  attn_tc::prefill_kernel<T, D, FP8><<<grid, attn_tc::kThreads, smem, c.stream>>>(attn_tc::Params{p, p.scale * attn_tc::kLog2e});
  return check_launch(kFn);
}

// The context's split-KV workspace, grown to at least `bytes` (outside graph capture only).
int32_t attn_workspace(Context &c, uint64_t bytes, void **out) {
  const int32_t st = grow_workspace(c, &c.attn_workspace, &c.attn_workspace_bytes, bytes, kFn, "split-KV workspace");
  *out = c.attn_workspace;
  return st;
}

// Splits per row: enough blocks for two waves over the SMs, at most one per 64 keys the table can name.
// VLLMD_DECODE_SPLITS=N forces N (a benchmark knob: bench/graph-ablation.ts compares them).
int32_t decode_splits(const Context &c, const attn::Params &p) {
  static const int32_t forced = [] {
    const char *v = getenv("VLLMD_DECODE_SPLITS");
    return v ? std::max(1, std::min(64, atoi(v))) : 0;
  }();
  if (forced > 0) return forced;
  const int64_t blocks = int64_t(p.n_tokens) * p.n_kv_heads, want = 2 * int64_t(c.sm_count > 0 ? c.sm_count : 132);
  const int64_t by_keys = std::max<int64_t>(1, int64_t(p.max_blocks) * p.block_size / 64);
  return int32_t(std::min<int64_t>(std::max<int64_t>(1, (want + blocks - 1) / blocks), std::min<int64_t>(by_keys, 64)));
}

// The tensor-core decode kernel (and the merge of its splits) over the rows of short query ranges.
template <typename T, int D, bool FP8>
int32_t launch_decode(Context &c, const attn::Params &p) {
  attn_dec::Params dp{p, p.scale * attn_tc::kLog2e, decode_splits(c, p), nullptr, nullptr};
  if (dp.n_splits > 1) {
    const uint64_t slots = uint64_t(p.n_tokens) * p.n_heads * dp.n_splits;
    void *ws = nullptr;
    const int32_t st = attn_workspace(c, slots * (D + 2) * 4, &ws);
    if (st != VD_OK) return st;
    dp.ws_o = static_cast<float *>(ws);
    dp.ws_ml = dp.ws_o + slots * D;
  }
  constexpr int smem = attn_dec::smem_bytes<D>();
  int32_t st = allow_smem(c, reinterpret_cast<const void *>(&attn_dec::decode_kernel<T, D, FP8>), smem, "the decode kernel");
  if (st != VD_OK) return st;
  const dim3 grid(unsigned(p.n_tokens), unsigned(p.n_kv_heads), unsigned(dp.n_splits));
  st = check_cuda(launch_kernel(c.pdl, attn_dec::decode_kernel<T, D, FP8>, grid, dim3(attn_dec::kThreads), smem, c.stream, dp),
                  kFn, "launching the decode kernel");
  if (st == VD_OK) st = check_launch(kFn);
  if (st != VD_OK || dp.n_splits == 1) return st;
  st = check_cuda(launch_kernel(c.pdl, attn_dec::merge_kernel<T>, dim3(unsigned(p.n_tokens), unsigned(p.n_heads)), dim3(D), 0,
                                c.stream, dp),
                  kFn, "launching the merge kernel");
  return st == VD_OK ? check_launch(kFn) : st;
}

// The prefill kernel over long query ranges (if the batch may have any), then the decode kernel.
template <typename T, bool FP8>
int32_t launch_tc(Context &c, const attn::Params &p) {
  int32_t st = VD_OK;
  if (p.n_tokens >= attn_tc::kMinQueryRows)
    st = p.head_dim == 64 ? launch_prefill<T, 64, FP8>(c, p) : launch_prefill<T, 128, FP8>(c, p);
  if (st != VD_OK) return st;
  return p.head_dim == 64 ? launch_decode<T, 64, FP8>(c, p) : launch_decode<T, 128, FP8>(c, p);
}

// f16/bf16 with head_dim 64 or 128 and at most 16 query heads per kv head run on tensor cores:
// the prefill kernel takes long query ranges, the decode kernel the rest. Otherwise the row kernel.
template <typename T>
int32_t launch(Context &c, attn::Params p, int64_t n_tokens, uint64_t smem) {
  if constexpr (sizeof(T) == 2) {
    if (p.vec16 && (p.head_dim == 64 || p.head_dim == 128) && p.group <= attn_dec::kMaxGroup) {
      return p.kv_fp8 ? launch_tc<T, true>(c, p) : launch_tc<T, false>(c, p);
    }
  }
  return launch_rows<T>(c, p, n_tokens, smem);
}

} // namespace

VD_API int32_t vd_attention(uint64_t ctx, uint64_t out, uint64_t q, uint64_t k_cache, uint64_t v_cache,
                            uint64_t block_tables, uint64_t seq_lens, uint64_t query_start, int64_t n_seqs,
                            int64_t n_tokens, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                            int64_t block_size, int64_t max_blocks, float scale, int32_t act_dtype, int32_t kv_dtype,
                            float k_scale, float v_scale) {
  clear_error();
  const AttnShape s{n_seqs, n_tokens, n_heads, n_kv_heads, head_dim, block_size, max_blocks};
  int32_t st = check_float_dtype(kFn, "act_dtype", act_dtype);
  if (st == VD_OK) st = check_kv_format(kFn, act_dtype, kv_dtype, k_scale, v_scale);
  if (st == VD_OK) st = check_attention_shape(s);
  if (st == VD_OK) st = check_limits(s);
  if (st != VD_OK) return st;
  Context *c = context(ctx, kFn);
  if (c == nullptr) return VD_ERR_INVALID_ARGUMENT;
  const int64_t elem = dtype_bytes(act_dtype);
  const uint64_t handles[7] = {out, q, k_cache, v_cache, block_tables, seq_lens, query_start};
  Buffers b;
  if (!lookup_all(ctx, handles, s, act_dtype, kv_dtype, &b)) return VD_ERR_INVALID_ARGUMENT;
  if (n_tokens == 0 || n_seqs == 0) return VD_OK; // no row is owned by a sequence: nothing to write
  const KvFormat kv{dtype_bytes(kv_dtype), kv_dtype == VD_FP8_E4M3, k_scale, v_scale};
  const attn::Params p = make_params(*c, b, s, scale, elem, kv);
  const uint64_t smem = smem_bytes(p.group, head_dim);
  if (act_dtype == VD_F32) return launch<float>(*c, p, n_tokens, smem);
  if (act_dtype == VD_BF16) return launch<__nv_bfloat16>(*c, p, n_tokens, smem);
  return launch<__half>(*c, p, n_tokens, smem);
}
