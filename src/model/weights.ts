// Moves a model's tensors from its safetensors files into backend buffers, merging the
// projections that run as one GEMM (q+k+v, gate+up), sharding for tensor parallelism, and
// quantizing the linear layers when asked (--quantization fp8: per output row, as vLLM does).
// Tensors load one linear layer at a time, so a quantized model never holds its whole
// unquantized self on the device: only the layer being quantized.
import type { Backend, Buf } from "../native/types.ts";
import { DType, dtypeBytes } from "../native/types.ts";
import type { CheckpointQuantization } from "./checkpoint-quant.ts";
import type { QuantizationMethod } from "../config.ts";
import type { ModelConfig } from "./config.ts";
import { ModelDirError } from "./errors.ts";
import type { Linear } from "./linear.ts";
import { loadQuantizedLinear } from "./quantized-linears.ts";
import type { TensorInfo } from "./safetensors.ts";
import { Loader, stDtype, type LoadProgress, type Part } from "./weight-loader.ts";

export type { LoadProgress } from "./weight-loader.ts";

export interface LayerWeights {
  inputNorm: Buf; // [hidden]
  qkv: Linear; // [(H/tp + 2*kvHeadsPerRank)*D, hidden]: q rows, then k rows, then v rows (bias likewise)
  o: Linear; // [hidden, H*D / tp]
  postNorm: Buf; // [hidden]
  gateUp: Linear; // [2 * I / tp, hidden]: gate rows, then up rows
  down: Linear; // [hidden, I / tp]
  /** What an e4m3 KV cache's codes are multiplied by: the checkpoint's scales, else 1. */
  kvScales: { k: number; v: number };
}

export interface ModelWeights {
  dtype: DType; // of the dense tensors: embeddings, norms, lm_head
  quantization: Quantization;
  embed: Buf; // [V, hidden]
  layers: LayerWeights[];
  norm: Buf; // [hidden]
  lmHead: Linear; // [V, hidden] (the embedding table when tied), never quantized
  buffers: Buf[]; // every allocation, for freeing
}

/**
 * How linear layers are kept, named as vLLM's --quantization names it: FP8 (quantized at load,
 * or a compressed-tensors FP8 checkpoint's), GPTQ's or compressed-tensors' integers, or floats.
 */
export type Quantization = QuantizationMethod | null;

/** The Quantization a checkpoint's quantization_config stands for. */
export function quantizationOf(q: CheckpointQuantization | null): Quantization {
  if (q === null) return null;
  if (q.method === "gptq" || q.method === "awq") return q.method;
  return q.format === "float-quantized" ? "fp8" : "compressed-tensors";
}

/** The dtype weights keep on the device: the checkpoint's, which every backend's GEMM reads. */
export function weightDtype(cfg: ModelConfig): DType {
  return cfg.dtype === "float32" ? DType.f32 : cfg.dtype === "float16" ? DType.f16 : DType.bf16;
}

export interface LoadOptions {
  /** --quantization: fp8 quantizes a float checkpoint at load; any name must fit the checkpoint. */
  quantization?: Quantization;
}

/**
 * What --quantization asks of this checkpoint: "fp8" on a float one quantizes at load (true); a
 * name that is not the checkpoint's method is refused, as vLLM refuses it, never ignored.
 */
export function quantizeAtLoad(flag: Quantization, q: CheckpointQuantization | null): boolean {
  if (flag === null) return false;
  if (flag === "fp8" && (q === null || q.method === "compressed-tensors" && q.format === "float-quantized")) return q === null;
  if (q !== null && flag === q.method) return false;
  const has = q === null ? "a float checkpoint (no quantization_config)" : `quantization_config.quant_method "${q.method}"`;
  throw new ModelDirError("config.json", `--quantization ${flag} does not fit this model: it has ${has}`);
}

export function loadWeights(
  be: Backend,
  cfg: ModelConfig,
  tensors: Map<string, TensorInfo>,
  onProgress?: LoadProgress,
  opts: LoadOptions = {},
): ModelWeights {
  const tp = be.tp, dt = weightDtype(cfg), act = be.activationDtype(dt), atLoad = quantizeAtLoad(opts.quantization ?? null, cfg.quantization);
  const { hiddenSize: h, numHeads: nh, numKvHeads: nkv, headDim: d, intermediateSize: inter } = cfg;
  checkShardable(cfg, tp);
  const kvShards = Math.min(nkv, tp); // fewer KV heads than ranks: each rank keeps a copy of its group's head
  let total = 0;
  for (const t of tensors.values()) total += t.shape.reduce((a, b) => a * b, 1) * dtypeBytes(stDtype[t.dtype]);
  const ld = new Loader(be, tensors, dt, onProgress, total);
  const vec = (name: string, n: number) => ld.load([{ name, rows: 1, cols: n, shardDim: -1 }]);
  /**
   * A linear layer: its weight parts stacked by rows (column-parallel, shardDim 0, each part cut
   * into `shards` pieces, tp by default) or one row-parallel part (shardDim 1).
   */
  const linear = (parts: [name: string, rows: number, shards?: number][], cols: number, shardDim: 0 | 1, biasOf?: (name: string) => string): Linear => {
    const biasParts = biasOf ? parts.map(([name, r, shards]): Part => ({ name: biasOf(name), rows: 1, cols: r, shardDim: 1, shards })) : [];
    const weightParts = parts.map(([name, r, shards]): Part => ({ name, rows: r, cols, shardDim, shards }));
    const n = weightParts.reduce((s, p) => s + ld.rowsOnRank(p), 0), k = shardDim === 0 ? cols : cols / tp;
    const quantized = loadQuantizedLinear(be, ld, cfg.quantization, weightParts, n, cols);
    if (quantized) return { ...quantized, n, k, bias: biasParts.length ? ld.load(biasParts, act) : 0 };
    const w = ld.load(weightParts);
    if (!atLoad) return { format: "dense", w, dtype: dt, n, k, bias: biasParts.length ? ld.load(biasParts) : 0 };
    const q = ld.alloc(n * k), scale = ld.alloc(n * 4);
    be.quantizeFp8(q, scale, w, n, k, dt);
    ld.free(w);
    return { format: "fp8", w: q, scale, n, k, bias: biasParts.length ? ld.load(biasParts, act) : 0 };
  };

  const embed = ld.load([{ name: "model.embed_tokens.weight", rows: cfg.vocabSize, cols: h, shardDim: -1 }]);
  const layers: LayerWeights[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    const p = `model.layers.${i}`;
    const attn = (m: string) => `${p}.self_attn.${m}.weight`;
    layers.push({
      inputNorm: vec(`${p}.input_layernorm.weight`, h),
      qkv: linear([[attn("q_proj"), nh * d], [attn("k_proj"), nkv * d, kvShards], [attn("v_proj"), nkv * d, kvShards]], h, 0,
        cfg.qkvBias ? (name) => name.replace(/weight$/, "bias") : undefined),
      o: linear([[attn("o_proj"), h]], nh * d, 1),
      postNorm: vec(`${p}.post_attention_layernorm.weight`, h),
      gateUp: linear([[`${p}.mlp.gate_proj.weight`, inter], [`${p}.mlp.up_proj.weight`, inter]], h, 0),
      down: linear([[`${p}.mlp.down_proj.weight`, h]], inter, 1),
      kvScales: cfg.kvCacheScales ? { k: kvScale(ld, `${p}.self_attn.k_scale`), v: kvScale(ld, `${p}.self_attn.v_scale`) } : { k: 1, v: 1 },
    });
  }
  const norm = vec("model.norm.weight", h);
  const lmHeadW = cfg.tieWordEmbeddings ? embed : ld.load([{ name: "lm_head.weight", rows: cfg.vocabSize, cols: h, shardDim: -1 }]);
  onProgress?.(total, total);
  return {
    dtype: dt, quantization: atLoad ? "fp8" : quantizationOf(cfg.quantization), embed, layers, norm, buffers: ld.buffers,
    lmHead: { format: "dense", w: lmHeadW, dtype: dt, n: cfg.vocabSize, k: h, bias: 0 },
  };
}

/** A layer's KV-cache scale: one positive, finite value. */
function kvScale(ld: Loader, name: string): number {
  const t = ld.tensor(name), numel = t.shape.reduce((a, b) => a * b, 1), v = numel === 1 ? ld.scalar(name) : NaN;
  if (!(Number.isFinite(v) && v > 0)) throw new ModelDirError(t.file, `tensor '${name}' must be one positive finite value (a per-tensor KV-cache scale), got shape [${t.shape.join(", ")}]${numel === 1 ? ` and ${v}` : ""}`);
  return v;
}

/**
 * Tensor parallelism cuts the query heads and the MLP's width evenly across ranks; the KV heads
 * too, or, when there are fewer of them than ranks, each rank keeps the one its query heads read
 * (so the ranks must be a multiple of the KV heads).
 */
export function checkShardable(cfg: ModelConfig, tp: number): void {
  const sizes = { num_attention_heads: cfg.numHeads, intermediate_size: cfg.intermediateSize };
  for (const [field, n] of Object.entries(sizes)) {
    if (n % tp !== 0) throw new Error(`--tensor-parallel-size ${tp} does not divide ${field} (${n}) in config.json`);
  }
  const kv = cfg.numKvHeads;
  if (kv % tp !== 0 && tp % kv !== 0)
    throw new Error(`--tensor-parallel-size ${tp} neither divides nor is a multiple of num_key_value_heads (${kv}) in config.json`);
}

/** KV heads on each rank: their share, or the one head a rank keeps when there are fewer than ranks. */
export function kvHeadsPerRank(numKvHeads: number, tp: number): number {
  return numKvHeads >= tp ? numKvHeads / tp : 1;
}

export function freeWeights(be: Backend, w: ModelWeights): void {
  for (const b of w.buffers) be.free(b);
  w.buffers.length = 0;
}
