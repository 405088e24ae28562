// The one dlopen table of include/vllmd.h, grouped as the header is. Every backend library
// (libvllmd_cpu.so, libvllmd_cuda.so, libvllmd_hip.so) exports exactly these symbols.
//
// Conventions (DESIGN.md, "Known pitfalls"): handles and byte counts are u64 passed as JS numbers
// below 2^53; host pointers are `ptr` arguments given a typed array at call time; strings are
// NUL-terminated Buffers; out-parameters are BigUint64Arrays owned by the caller.
import { dlopen, FFIType } from "bun:ffi";

const { i32, i64, u64, f32, ptr, cstring } = FFIType;

export const vllmdSymbols = {
  // ---- library
  vd_abi_version: { args: [], returns: i32 },
  vd_last_error: { args: [], returns: cstring },
  vd_backend_name: { args: [], returns: cstring },

  // ---- contexts
  vd_context_create: { args: [i32, i32, ptr], returns: i32 }, // first_device, tp, out_ctx
  vd_context_destroy: { args: [u64], returns: i32 },
  vd_mem_info: { args: [u64, ptr], returns: i32 }, // ctx, out[2] = free, total
  vd_capabilities: { args: [u64, ptr], returns: i32 },
  vd_sync: { args: [u64], returns: i32 },

  // ---- graphs
  vd_graph_begin: { args: [u64], returns: i32 },
  vd_graph_end: { args: [u64, ptr], returns: i32 }, // ctx, out_graph
  vd_graph_launch: { args: [u64, u64], returns: i32 },
  vd_graph_destroy: { args: [u64, u64], returns: i32 },

  // ---- buffers and copies
  vd_buffer_alloc: { args: [u64, u64, ptr], returns: i32 }, // ctx, bytes, out_buf
  vd_buffer_view: { args: [u64, u64, u64, u64, ptr], returns: i32 }, // ctx, buf, offset, bytes, out_buf
  vd_buffer_free: { args: [u64, u64], returns: i32 },
  vd_copy_from_host: { args: [u64, u64, u64, ptr, u64], returns: i32 }, // ctx, dst, dst_offset, src, bytes
  vd_copy_to_host: { args: [u64, u64, u64, ptr, u64], returns: i32 }, // ctx, src, src_offset, dst, bytes
  vd_copy: { args: [u64, u64, u64, u64, u64, u64], returns: i32 }, // ctx, dst, dst_offset, src, src_offset, bytes

  // ---- asynchronous read-back (ABI 3)
  vd_host_alloc: { args: [u64, u64, ptr], returns: i32 }, // ctx, bytes, out_ptr
  vd_host_free: { args: [u64, ptr], returns: i32 }, // ctx, ptr
  vd_copy_to_host_async: { args: [u64, u64, u64, ptr, u64], returns: i32 }, // ctx, src, src_offset, dst, bytes
  vd_event_create: { args: [u64, ptr], returns: i32 }, // ctx, out_event
  vd_event_record: { args: [u64, u64], returns: i32 },
  vd_event_sync: { args: [u64, u64], returns: i32 },
  vd_event_destroy: { args: [u64, u64], returns: i32 },

  // ---- weights
  // ctx, dst, dst_dtype, path, file_offset, file_dtype, rows, cols, shard_dim
  vd_load_weight: { args: [u64, u64, i32, ptr, u64, i32, i64, i64, i32, i32], returns: i32 },

  // ---- model ops
  // ctx, out, table, token_ids, n_tokens, hidden, vocab, act_dtype, w_dtype
  vd_embedding: { args: [u64, u64, u64, u64, i64, i64, i64, i32, i32], returns: i32 },
  // ctx, out, residual, x, weight, n_tokens, hidden, eps, act_dtype, w_dtype
  vd_rmsnorm: { args: [u64, u64, u64, u64, u64, i64, i64, f32, i32, i32], returns: i32 },
  // ctx, q_out, qkv, positions, cos_sin, slot_mapping, k_cache, v_cache,
  // n_tokens, n_heads, n_kv_heads, head_dim, block_size, act_dtype, kv_dtype, k_scale, v_scale
  vd_rope_write_kv: {
    args: [u64, u64, u64, u64, u64, u64, u64, u64, i64, i64, i64, i64, i64, i32, i32, f32, f32],
    returns: i32,
  },
  // ctx, out, q, k_cache, v_cache, block_tables, seq_lens, query_start,
  // n_seqs, n_tokens, n_heads, n_kv_heads, head_dim, block_size, max_blocks, scale, act_dtype,
  // kv_dtype, k_scale, v_scale
  vd_attention: {
    args: [u64, u64, u64, u64, u64, u64, u64, u64, i64, i64, i64, i64, i64, i64, i64, f32, i32, i32, f32, f32],
    returns: i32,
  },
  // ctx, out, x, w, bias, m, n, k, act_dtype, w_dtype
  vd_gemm: { args: [u64, u64, u64, u64, u64, i64, i64, i64, i32, i32], returns: i32 },
  // ctx, q, scales, src, rows, cols, src_dtype
  vd_quantize_fp8: { args: [u64, u64, u64, u64, i64, i64, i32], returns: i32 },
  // ctx, out, x, w, w_scale, bias, m, n, k, act_dtype
  vd_gemm_fp8: { args: [u64, u64, u64, u64, u64, u64, i64, i64, i64, i32, i32], returns: i32 },
  // ctx, out, x, w, scales, zeros, bias, m, n, k, bits, group_size, act_dtype
  vd_gemm_int: { args: [u64, u64, u64, u64, u64, u64, u64, i64, i64, i64, i32, i64, i32, u64], returns: i32 },
  // ctx, w, scales_out, zeros_out, qweight, qzeros, scales, n, k, bits, group_size, scale_dtype, zeros_minus_one
  vd_repack_int: { args: [u64, u64, u64, u64, u64, u64, u64, i64, i64, i32, i64, i32, i32, u64], returns: i32 },
  // ctx, out, gate_up, n_tokens, inter, act_dtype
  vd_silu_mul: { args: [u64, u64, u64, i64, i64, i32], returns: i32 },
  // ctx, out, x, rows, n_rows, cols, act_dtype
  vd_gather_rows: { args: [u64, u64, u64, u64, i64, i64, i32], returns: i32 },
  // ctx, token_ids, dst_rows, src, src_rows, n
  vd_scatter_tokens: { args: [u64, u64, u64, u64, u64, i64], returns: i32 },
  // ctx, out, x, n, out_dtype, in_dtype
  vd_cast: { args: [u64, u64, u64, i64, i32, i32], returns: i32 },
  // ctx, buf, n, act_dtype
  vd_all_reduce: { args: [u64, u64, i64, i32], returns: i32 },

  // ---- sampling
  // ctx, logits, n_seqs, vocab, fparams, iparams, seen_offsets, seen_tokens, seen_counts,
  // bias_offsets, bias_tokens, bias_values, n_top, out_tokens, out_logprobs, out_top_ids, out_top_logprobs
  vd_sample: {
    args: [u64, u64, i64, i64, u64, u64, u64, u64, u64, u64, u64, u64, i64, u64, u64, u64, u64],
    returns: i32,
  },
} as const;

export type VllmdLibrary = ReturnType<typeof openVllmdLibrary>;

/** dlopens a backend library at `path` with the vllmd.h symbol table. */
export function openVllmdLibrary(path: string) {
  return dlopen(path, vllmdSymbols);
}
