/*
 * vllmd.h — the C ABI between the TypeScript engine and a compute backend.
 *
 * One header, several implementations: cpu/ (the reference, plain C++17), cuda/, hip/.
 * Every backend implements every function with the same semantics; cpu/ is the oracle.
 *
 * Rules (see DESIGN.md):
 * - Every function returns an int32 status: VD_OK (0) or a negative VD_ERR_*; vd_last_error()
 *   then describes the fault. The library never exits, aborts or prints.
 * - No structs cross the boundary. Batch metadata lives in device buffers that TypeScript fills
 *   with one copy per step; ops receive buffer handles.
 * - Handles (contexts, buffers, graphs, events) are opaque integers below 2^53, never 0. Handle 0
 *   means "none" where an argument is optional (a bias, a residual).
 * - Work is stream-ordered and asynchronous; vd_copy_to_host, vd_sync and vd_event_sync are the
 *   sync points.
 * - A context spans `tp` ranks; a buffer exists on every rank; ops launch on every rank with
 *   per-rank shapes.
 *
 * Shapes in comments are [rows, cols] row-major; T = tokens in the step, S = sequences in the
 * step, H = query heads, KVH = key/value heads, D = head dim, B = block size, V = vocab.
 */
#ifndef VLLMD_H
#define VLLMD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VD_ABI_VERSION 14

/* Status codes. */
#define VD_OK 0
#define VD_ERR_INVALID_ARGUMENT (-1) /* a bad handle, shape, dtype or size */
#define VD_ERR_OUT_OF_MEMORY (-2)
#define VD_ERR_DEVICE (-3)           /* the device or its runtime failed */
#define VD_ERR_IO (-4)               /* a file could not be opened or read */
#define VD_ERR_UNSUPPORTED (-5)      /* valid, but this backend does not do it */
#define VD_ERR_INTERNAL (-6)

/* Element types. */
#define VD_F32 0
#define VD_F16 1
#define VD_BF16 2
#define VD_I32 3
#define VD_FP8_E4M3 4 /* 1 byte, OCP float8 e4m3fn (largest finite 448, no infinities): quantized weights */

/* ---- library ---------------------------------------------------------------------------- */

int32_t vd_abi_version(void);
/* The message of the last failure on the calling thread ("" if none). Valid until the next call. */
const char *vd_last_error(void);
/* Backend name: "cpu", "cuda" or "hip". */
const char *vd_backend_name(void);

/* ---- contexts --------------------------------------------------------------------------- */

/* A context over devices [first_device, first_device + tp). *out_ctx receives the handle. */
int32_t vd_context_create(int32_t first_device, int32_t tp, uint64_t *out_ctx);
int32_t vd_context_destroy(uint64_t ctx);
/* Free and total bytes of device memory on rank 0: out[0] = free, out[1] = total. */
int32_t vd_mem_info(uint64_t ctx, uint64_t *out);
/*
 * What the backend can do and how it runs, as a bit set in *out_caps, so callers pick their path by
 * asking instead of by the backend's name. A backend may implement an op it does not report as
 * fast (the cpu implements every op, as the reference, and reports none of the FAST bits).
 */
#define VD_CAP_FAST_W8A8 1         /* vd_gemm_fp8 with VD_ACT_QUANT_FP8_ROW runs on FP8 tensor cores */
#define VD_CAP_GRAPHS 2            /* vd_graph_begin/end/launch capture and replay ops */
#define VD_CAP_ASYNC 4             /* ops are queued and run while the caller goes on (vd_sync waits) */
#define VD_CAP_DEVICE_MEMORY 8     /* buffers live in memory of their own, which vd_mem_info reports */
#define VD_CAP_HALF_ACTIVATIONS 16 /* f16/bf16 models run in their own dtype (else activations are f32) */
int32_t vd_capabilities(uint64_t ctx, uint64_t *out_caps);
/* Wait until all work queued on the context has finished. */
int32_t vd_sync(uint64_t ctx);

/* ---- graphs ----------------------------------------------------------------------------- */

/*
 * Captures the ops queued on the context between vd_graph_begin and vd_graph_end into a graph
 * that vd_graph_launch replays (CUDA graphs: one launch instead of hundreds). While capturing,
 * ops are recorded, not run: their handles and sizes are fixed into the graph, while the
 * contents of their buffers are read when the graph runs. Copies to or from the host, vd_sync,
 * allocation and weight loading fail while capturing. If an op fails during capture,
 * vd_graph_end fails too and the context leaves capture mode. Backends without graphs
 * (cpu) return VD_ERR_UNSUPPORTED from vd_graph_begin.
 */
int32_t vd_graph_begin(uint64_t ctx);
int32_t vd_graph_end(uint64_t ctx, uint64_t *out_graph);
int32_t vd_graph_launch(uint64_t ctx, uint64_t graph);
int32_t vd_graph_destroy(uint64_t ctx, uint64_t graph);

/* ---- buffers and copies ----------------------------------------------------------------- */

/* Allocates `bytes` on every rank (contents undefined). */
int32_t vd_buffer_alloc(uint64_t ctx, uint64_t bytes, uint64_t *out_buf);
/* A view of bytes [offset, offset + bytes) of `buf`; freeing the parent invalidates it. */
int32_t vd_buffer_view(uint64_t ctx, uint64_t buf, uint64_t offset, uint64_t bytes, uint64_t *out_buf);
/* Frees a buffer or a view. */
int32_t vd_buffer_free(uint64_t ctx, uint64_t buf);
/* Host → every rank: bytes [dst_offset, dst_offset + bytes) of dst from host memory `src`.
 * `src` may be reused as soon as the call returns. */
int32_t vd_copy_from_host(uint64_t ctx, uint64_t dst, uint64_t dst_offset, const void *src, uint64_t bytes);
/* Rank 0 → host; waits for queued work first. */
int32_t vd_copy_to_host(uint64_t ctx, uint64_t src, uint64_t src_offset, void *dst, uint64_t bytes);
/* Device → device on every rank. */
int32_t vd_copy(uint64_t ctx, uint64_t dst, uint64_t dst_offset, uint64_t src, uint64_t src_offset, uint64_t bytes);

/* ---- asynchronous read-back (ABI 3) ----------------------------------------------------- */

/*
 * These let the engine queue step N+1 before it reads step N's sampled tokens: the tokens are
 * copied into pinned host memory by vd_copy_to_host_async, an event is recorded after the copy,
 * and the host waits on that event (vd_event_sync) only when it needs the values.
 */

/* Host memory the device can copy into asynchronously (cuda: page-locked, cudaHostAlloc; cpu: a
 * 64-byte aligned malloc). *out_ptr receives its address (contents undefined). bytes = 0 is
 * VD_ERR_INVALID_ARGUMENT; not allowed while capturing a graph. vd_context_destroy frees what is
 * left. */
int32_t vd_host_alloc(uint64_t ctx, uint64_t bytes, void **out_ptr);
/* Frees memory from vd_host_alloc on this context; any other pointer (or a second free) is
 * VD_ERR_INVALID_ARGUMENT. Waits for queued work first (a pending copy may still write there);
 * not allowed while capturing. */
int32_t vd_host_free(uint64_t ctx, void *ptr);
/* Rank 0 → host, queued on the stream after the work before it; returns without waiting. `dst`
 * (best from vd_host_alloc: pageable memory makes the copy synchronous on cuda) must stay valid
 * and must not be read until an event recorded after this call has completed (vd_event_sync).
 * Same range checks as vd_copy_to_host; not allowed while capturing. The cpu backend copies at
 * once (it runs everything as it is called). */
int32_t vd_copy_to_host_async(uint64_t ctx, uint64_t src, uint64_t src_offset, void *dst, uint64_t bytes);

/*
 * Events mark a point in the context's stream (rank 0's with tp > 1). vd_event_record moves the
 * mark to after all work queued so far (it may be recorded again and again); vd_event_sync blocks
 * the host until the work before the last record has finished, and then, like vd_sync, reports a
 * fault that a kernel recorded (see cuda/README.md); on a never-recorded event it returns VD_OK at
 * once. Record and sync are not allowed while capturing a graph. A bad handle is
 * VD_ERR_INVALID_ARGUMENT naming the function. vd_context_destroy frees events left over.
 * The cpu backend finishes every op inside its call, so record and sync only check the handle.
 */
int32_t vd_event_create(uint64_t ctx, uint64_t *out_event);
int32_t vd_event_record(uint64_t ctx, uint64_t event);
int32_t vd_event_sync(uint64_t ctx, uint64_t event);
int32_t vd_event_destroy(uint64_t ctx, uint64_t event);

/* ---- weights ---------------------------------------------------------------------------- */

/*
 * Reads a [rows, cols] tensor of `file_dtype` stored at byte `file_offset` of `path` and writes it
 * to `dst` as `dst_dtype`. shard_dim 0 cuts the rows into n_shards equal pieces, shard_dim 1 the
 * columns, and rank r gets piece r * n_shards / tp: with n_shards = tp each rank its own piece;
 * with fewer (n_shards dividing tp) tp / n_shards consecutive ranks share one, as the KV heads of
 * a model with fewer of them than ranks. shard_dim -1 gives every rank the whole tensor (n_shards
 * unused). n_shards must divide tp and the dimension it cuts.
 * A 1-D tensor is rows = 1. Fails with VD_ERR_IO if the file is shorter than the tensor. Floats
 * (f32, f16, bf16) convert into one another; i32 and VD_FP8_E4M3 load only as themselves.
 */
int32_t vd_load_weight(uint64_t ctx, uint64_t dst, int32_t dst_dtype, const char *path, uint64_t file_offset,
                       int32_t file_dtype, int64_t rows, int64_t cols, int32_t shard_dim, int32_t n_shards);

/* ---- model ops (act_dtype: the dtype of activations and the KV cache) ------------------- */

/* out[T, hidden] = table[token_ids[t], :]. token_ids: i32 [T]; table: [vocab, hidden] of w_dtype. */
int32_t vd_embedding(uint64_t ctx, uint64_t out, uint64_t table, uint64_t token_ids, int64_t n_tokens,
                     int64_t hidden, int64_t vocab, int32_t act_dtype, int32_t w_dtype);

/*
 * RMSNorm with a fused residual add. If residual != 0: residual[T, hidden] += x, then
 * out = rmsnorm(residual) * weight; else out = rmsnorm(x) * weight. out may alias x.
 * weight: [hidden] of w_dtype. Computed in f32.
 */
int32_t vd_rmsnorm(uint64_t ctx, uint64_t out, uint64_t residual, uint64_t x, uint64_t weight, int64_t n_tokens,
                   int64_t hidden, float eps, int32_t act_dtype, int32_t w_dtype);

/*
 * Rotary embedding fused with the KV-cache write, reading the output of one fused q/k/v projection
 * (ABI 4). qkv: [T, (H + 2*KVH)*D] of act_dtype, row t = q (H*D) | k (KVH*D) | v (KVH*D); read
 * only. q_out [T, H*D] receives the rotated q part, the layout vd_attention reads; it must not
 * overlap qkv (VD_ERR_INVALID_ARGUMENT if it does). The rotated k part and the v part are written
 * into the paged cache at slot_mapping[t] (i32 [T]; slot = block * B + offset); a negative slot
 * skips the token's cache write, q_out is written all the same.
 * Rotation: rotate-half / NeoX layout (as HF Llama), computed in f32 with the products rounded
 * separately (no fused multiply-add), each result rounded to act_dtype once.
 * cos_sin: f32 [max_position, D]: row p holds cos(p * f_i) for i < D/2, then sin(p * f_i).
 * positions: i32 [T]. k_cache, v_cache: [num_blocks, KVH, B, D] of kv_dtype: act_dtype (k and v
 * as computed; k_scale and v_scale unused) or VD_FP8_E4M3 (e4m3 of k / k_scale and v / v_scale,
 * rounded to nearest even, saturating at +-448; both scales finite and > 0).
 * A position outside cos_sin or a slot past the cache: the cpu backend rejects it before writing
 * anything; cuda writes NaN for that token's q and k (bad position) or skips the cache write (bad
 * slot) and reports a fault at the next sync point (see cuda/README.md).
 */
int32_t vd_rope_write_kv(uint64_t ctx, uint64_t q_out, uint64_t qkv, uint64_t positions, uint64_t cos_sin,
                         uint64_t slot_mapping, uint64_t k_cache, uint64_t v_cache, int64_t n_tokens, int64_t n_heads,
                         int64_t n_kv_heads, int64_t head_dim, int64_t block_size, int32_t act_dtype, int32_t kv_dtype,
                         float k_scale, float v_scale);

/*
 * Paged attention for a mixed batch (prefill chunks and decodes together).
 * Sequence s owns query rows [query_start[s], query_start[s+1]) (query_start: i32 [S+1]) and has
 * seq_lens[s] tokens in the cache (i32 [S]), counting its new ones, which are its last ones: query
 * row j of s sits at position seq_lens[s] - q_len + j and attends causally to cache positions
 * 0..that position. Its cache positions map to blocks block_tables[s, :] (i32 [S, max_blocks]).
 * q: [T, H*D]; out: [T, H*D]; H is a multiple of KVH (grouped-query attention).
 * The caches are of kv_dtype as vd_rope_write_kv wrote them; an e4m3 key weighs k_scale times its
 * value, an e4m3 value v_scale times.
 */
int32_t vd_attention(uint64_t ctx, uint64_t out, uint64_t q, uint64_t k_cache, uint64_t v_cache,
                     uint64_t block_tables, uint64_t seq_lens, uint64_t query_start, int64_t n_seqs, int64_t n_tokens,
                     int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t block_size, int64_t max_blocks,
                     float scale, int32_t act_dtype, int32_t kv_dtype, float k_scale, float v_scale);

/* out[M, N] = x[M, K] · w[N, K]ᵀ (+ bias[N] if bias != 0). w and bias of w_dtype. */
int32_t vd_gemm(uint64_t ctx, uint64_t out, uint64_t x, uint64_t w, uint64_t bias, int64_t m, int64_t n, int64_t k,
                int32_t act_dtype, int32_t w_dtype);

/* ---- quantized weights ------------------------------------------------------------------ */

/*
 * Per-row FP8 quantization, as vLLM's --quantization fp8 does at load: for each row r of src
 * [rows, cols] (f32, f16 or bf16), scales[r] = max|src[r, :]| / 448 (1 for a row of zeros) and
 * q[r, c] = e4m3(src[r, c] / scales[r]), rounded to nearest even. q: [rows, cols] of VD_FP8_E4M3;
 * scales: f32 [rows].
 */
int32_t vd_quantize_fp8(uint64_t ctx, uint64_t q, uint64_t scales, uint64_t src, int64_t rows, int64_t cols,
                        int32_t src_dtype);

/* vd_gemm_fp8's act_quant: how x enters the product. */
#define VD_ACT_QUANT_NONE 0    /* as it is (weight-only FP8) */
#define VD_ACT_QUANT_FP8_ROW 1 /* quantized per row to e4m3 as vd_quantize_fp8 does (W8A8, dynamic per token) */

/*
 * FP8 weights: out[M, N] = (x[M, K] · w[N, K]ᵀ) * w_scale[N] (+ bias[N] if bias != 0), the dot
 * of x with the e4m3 values accumulated in f32 and scaled once. w: VD_FP8_E4M3; w_scale: f32 [N];
 * x, out and bias of act_dtype. With act_quant VD_ACT_QUANT_FP8_ROW, row m of x is first replaced
 * by its e4m3 codes (scale s[m] = max|x[m, :]| / 448, 1 for a row of zeros) and the dot is of the
 * codes' values, times s[m] * w_scale[N]. A backend without a fast FP8 product may refuse it
 * with VD_ERR_UNSUPPORTED (cuda before compute capability 8.9).
 */
int32_t vd_gemm_fp8(uint64_t ctx, uint64_t out, uint64_t x, uint64_t w, uint64_t w_scale, uint64_t bias, int64_t m,
                    int64_t n, int64_t k, int32_t act_dtype, int32_t act_quant);

/*
 * Integer weights (GPTQ, AWQ, compressed-tensors pack-quantized) as vllmd keeps them, `bits` 4 or
 * 8: row n of w holds its K codes q (unsigned), packed little-endian into 32-bit words (code j of
 * a word in bits [j*bits, (j+1)*bits)), K*bits/32 words per row (K a multiple of 32/bits). Codes
 * are in groups of group_size consecutive k, G = ceil(K / group_size); scales and zeros are f32
 * [N, G] and the weight is (q - zeros[n, g]) * scales[n, g].
 * out[M, N] = x[M, K] · wᵀ (+ bias[N] if bias != 0); x, out and bias of act_dtype; f32 sums.
 * Act-order (GPTQ's desc_act): when k_perm != 0 it is i32 [K], a permutation of 0..K-1, and code
 * position j of every row weighs input k_perm[j] (positions are grouped, inputs need not be).
 */
int32_t vd_gemm_int(uint64_t ctx, uint64_t out, uint64_t x, uint64_t w, uint64_t scales, uint64_t zeros,
                    uint64_t bias, int64_t m, int64_t n, int64_t k, int32_t bits, int64_t group_size,
                    int32_t act_dtype, uint64_t k_perm);

/* Checkpoint layouts of integer weights that vd_repack_int reads (per = 32 / bits codes a word). */
#define VD_PACK_GPTQ 0    /* AutoGPTQ's "gptq" format: zeros stored minus one */
#define VD_PACK_GPTQ_V2 1 /* GPTQModel's "gptq_v2": the same, zeros stored as they are */
#define VD_PACK_AWQ 2     /* AutoAWQ's GEMM layout, 4-bit only */
#define VD_PACK_ROWS 3    /* compressed-tensors pack-quantized: codes along k in each row */

/*
 * A checkpoint's integer weights to vd_gemm_int's layout, without act-order (the group of k is
 * k / group_size). Writes w [N, K*bits/32] i32, scales_out and zeros_out f32 [N, G]; scales is
 * [G, N] of scale_dtype (f32, f16, bf16) in every layout. N must be a multiple of per.
 * - GPTQ: qweight i32 [K/per, N], code (k, n) in word [k / per, n] at bits (k % per) * bits;
 *   qzeros i32 [G, N/per], zero (g, n) in word [g, n / per] at bits (n % per) * bits.
 * - AWQ: qweight i32 [K, N/per], code (k, n) in word [k, n / per]; qzeros i32 [G, N/per], zero
 *   (g, n) in word [g, n / per]; in both, n % 8 = j sits at nibble (j % 2) * 4 + j / 2 (AutoAWQ
 *   packs n in the order 0 2 4 6 1 3 5 7). K must be a multiple of group_size.
 * - ROWS: qweight i32 [N, K/per], code (k, n) in word [n, k / per] at bits (k % per) * bits (the
 *   layout vd_gemm_int keeps, so only act-order needs this); qzeros and scales as in GPTQ_V2.
 * With k_perm != 0 (i32 [K], a permutation), code position j of row n is the checkpoint's code of
 * input k_perm[j]: act-order weights come out with each group's codes together, for vd_gemm_int
 * with the same k_perm.
 */
int32_t vd_repack_int(uint64_t ctx, uint64_t w, uint64_t scales_out, uint64_t zeros_out, uint64_t qweight,
                      uint64_t qzeros, uint64_t scales, int64_t n, int64_t k, int32_t bits, int64_t group_size,
                      int32_t scale_dtype, int32_t layout, uint64_t k_perm);

/* out[T, I] = silu(gate_up[T, :I]) * gate_up[T, I:]. gate_up: [T, 2I]. */
int32_t vd_silu_mul(uint64_t ctx, uint64_t out, uint64_t gate_up, int64_t n_tokens, int64_t inter, int32_t act_dtype);

/* out[N, cols] = x[rows[i], :] for rows: i32 [N]. */
int32_t vd_gather_rows(uint64_t ctx, uint64_t out, uint64_t x, uint64_t rows, int64_t n_rows, int64_t cols,
                       int32_t act_dtype);

/*
 * token_ids[dst_rows[j]] = src[src_rows[j]] for j < n; all four buffers i32, dst_rows and src_rows
 * [n]. Why: with async scheduling a decode's input token is the one the previous step sampled,
 * which is still on the device when this step is queued; this moves it into place without a
 * round trip through the host. Stream-ordered like any op, and allowed while capturing (a graph
 * reads the row lists when it runs). A source token below 0 (a row vd_sample could not sample) is
 * written as 0, so that the step reading it still runs; its result belongs to a sequence the
 * caller drops. n = 0 does nothing; n < 0 is invalid. dst_rows should not
 * repeat a row (which write wins is then undefined), and src should not overlap token_ids.
 * Row values are trusted as block tables are: the cpu backend rejects one outside its buffer at
 * the call; cuda skips it and records a fault that the next vd_sync / vd_event_sync /
 * vd_copy_to_host reports.
 */
int32_t vd_scatter_tokens(uint64_t ctx, uint64_t token_ids, uint64_t dst_rows, uint64_t src, uint64_t src_rows,
                          int64_t n);

/* out[n] of out_dtype = x[n] of in_dtype (f32, f16, bf16; round to nearest even). E.g. logits made in
 * the activation dtype, cast to f32 for the sampler. */
int32_t vd_cast(uint64_t ctx, uint64_t out, uint64_t x, int64_t n, int32_t out_dtype, int32_t in_dtype);

/* Sums buf [n] of act_dtype over the ranks, in place (a no-op with tp = 1). */
int32_t vd_all_reduce(uint64_t ctx, uint64_t buf, int64_t n, int32_t act_dtype);

/* ---- sampling --------------------------------------------------------------------------- */

/* Columns of the per-sequence parameter rows passed to vd_sample. */
#define VD_SP_TEMPERATURE 0 /* fparams: <= 1e-5 means greedy */
#define VD_SP_TOP_P 1       /* fparams: 1 disables */
#define VD_SP_MIN_P 2       /* fparams: 0 disables */
#define VD_SP_REPETITION 3  /* fparams: 1 disables; divides positive logits, multiplies negative */
#define VD_SP_PRESENCE 4    /* fparams: 0 disables; subtracted once if the token was generated */
#define VD_SP_FREQUENCY 5   /* fparams: 0 disables; subtracted per generated occurrence */
#define VD_SP_NF 6
#define VD_SP_TOP_K 0       /* iparams: <= 0 disables */
#define VD_SP_SEED_LO 1     /* iparams: the request's 64-bit seed, low and high halves */
#define VD_SP_SEED_HI 2
#define VD_SP_STEP 3        /* iparams: index of the token being sampled within the request's output */
#define VD_SP_NI 4

/*
 * Samples one token per sequence from logits: f32 [S, V] (modified in place).
 * fparams: f32 [S, VD_SP_NF]; iparams: i32 [S, VD_SP_NI].
 * Token lists, as CSR over sequences (offsets: i32 [S+1] into the flat arrays):
 *   seen_offsets / seen_tokens / seen_counts (i32): every distinct token of the prompt or output
 *     with its count among generated tokens (0 for prompt-only) — for the three penalties;
 *   bias_offsets / bias_tokens (i32) / bias_values (f32): added to the logits first.
 * Order: raw logprobs (log-softmax of the logits as given, as vLLM reports them), then logit bias,
 * penalties, temperature, min-p, top-k, top-p, and a draw whose uniform comes from (seed, step)
 * alone, so a request samples the same tokens whatever batch it is in. Greedy (and top_k = 1) takes
 * the lowest index among equal maxima after bias and penalties.
 * Outputs: out_tokens i32 [S]; out_logprobs f32 [S] (of the chosen token);
 * out_top_ids i32 [S, n_top], out_top_logprobs f32 [S, n_top] (descending; ignored if n_top = 0).
 * A row that cannot be sampled (its logits hold NaN or +inf or no finite value, or a logit
 * overflows after bias and penalties) gets token -1, NaN logprobs and top ids -1, and the call
 * still succeeds: one sequence's values must not cost the others their tokens. A malformed
 * parameter row or list is the caller's error (an invalid-argument status on the cpu, a fault
 * reported at the next sync on cuda).
 */
int32_t vd_sample(uint64_t ctx, uint64_t logits, int64_t n_seqs, int64_t vocab, uint64_t fparams, uint64_t iparams,
                  uint64_t seen_offsets, uint64_t seen_tokens, uint64_t seen_counts, uint64_t bias_offsets,
                  uint64_t bias_tokens, uint64_t bias_values, int64_t n_top, uint64_t out_tokens,
                  uint64_t out_logprobs, uint64_t out_top_ids, uint64_t out_top_logprobs);

#ifdef __cplusplus
}
#endif

#endif /* VLLMD_H */
