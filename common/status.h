// Host-side status plumbing shared by every backend: the thread's last error message and the
// argument checks whose messages must read the same whichever library reports them.
#pragma once

#include <cstdint>

#include "vllmd.h"

namespace vd {

// Records the message of a failure for vd_last_error() (printf-style) and returns `status`.
int32_t fail(int32_t status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Marks the calling thread's last error as empty; every entry point calls it first.
void clear_error();
// The calling thread's last message ("" if none); valid until its next call into the library.
const char *last_error_text();

int32_t check_float_dtype(const char *fn, const char *arg, int32_t dtype); // f32, f16 or bf16
// A KV cache's dtype (act_dtype or VD_FP8_E4M3) and, for e4m3, its scales (finite, > 0).
int32_t check_kv_format(const char *fn, int32_t act_dtype, int32_t kv_dtype, float k_scale, float v_scale);
int32_t check_nonneg(const char *fn, const char *arg, int64_t v);
int32_t check_act_quant(const char *fn, int32_t act_quant); // VD_ACT_QUANT_NONE or VD_ACT_QUANT_FP8_ROW
uint64_t bytes_of(int64_t a, int64_t b, int64_t c); // a*b*c, saturating on overflow

// The bytes behind a buffer handle (host memory on cpu, device memory on GPUs).
struct Span {
  uint8_t *data;
  uint64_t bytes;
};
// Defined by each backend: looks `buf` up in context `ctx`; on a bad handle records an error
// naming `what` and returns false.
bool lookup(uint64_t ctx, uint64_t buf, const char *what, Span *out);
// Like lookup, and also checks the buffer holds at least `need_bytes`.
bool lookup_sized(uint64_t ctx, uint64_t buf, const char *what, uint64_t need_bytes, Span *out);
// Like lookup, and also checks [offset, offset + bytes) lies inside the buffer (copies).
bool lookup_range(uint64_t ctx, uint64_t buf, uint64_t offset, uint64_t bytes, const char *what, Span *out);

// vd_attention's checks that need only its scalar arguments.
struct AttentionShape {
  int64_t n_seqs, n_tokens, n_heads, n_kv_heads, head_dim, block_size, max_blocks;
};
int32_t check_attention_shape(const AttentionShape &s);

// vd_load_weight's checks that need only its scalar arguments.
int32_t check_load_weight_args(int32_t dst_dtype, int32_t file_dtype, int64_t rows, int64_t cols, int32_t shard_dim,
                               int32_t n_shards, int32_t tp, const char *path);

// The shape rules of integer weights (vd_gemm_int, vd_repack_int): bits 4 or 8, group_size >= 1,
// k a whole number of 32-bit words. Sets *groups to ceil(k / group_size).
int32_t check_int_weights(const char *fn, int32_t bits, int64_t group_size, int64_t n, int64_t k, int64_t *groups);

// vd_repack_int's checks beyond check_int_weights: a known VD_PACK_* layout that can hold these
// bits and this shape, n a whole number of packed zeros' words.
int32_t check_repack_layout(const char *fn, int32_t layout, int32_t bits, int64_t n, int64_t k, int64_t group_size);

// A k_perm of vd_gemm_int / vd_repack_int read on the host: every entry in [0, k) and none twice.
int32_t check_k_perm(const char *fn, const int32_t *k_perm, int64_t k);

// vd_host_alloc's checks (the pointer to fill, a size some machine could hold).
int32_t check_host_alloc_args(void **out_ptr, uint64_t bytes);

} // namespace vd
