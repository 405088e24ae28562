// Moves a model's tensors from its safetensors files into backend buffers, merging the
// projections that run as one GEMM (q+k+v, gate+up), sharding for tensor parallelism, and
// quantizing the linear layers when asked (--quantization fp8: per output row, as vLLM does).
// Tensors load one linear layer at a time, so a quantized model never holds its whole
// unquantized self on the device: only the layer being quantized.
import type { Backend, Buf } from "../native/types.ts";
import { DType, dtypeBytes } from "../native/types.ts";
import type { ModelConfig } from "./config.ts";
import { ModelDirError } from "./errors.ts";
import type { Linear } from "./linear.ts";
import type { StDtype, TensorInfo } from "./safetensors.ts";

export interface LayerWeights {
  inputNorm: Buf; // [hidden]
  qkv: Linear; // [(H + 2*KVH)*D / tp, hidden]: q rows, then k rows, then v rows (bias likewise)
  o: Linear; // [hidden, H*D / tp]
  postNorm: Buf; // [hidden]
  gateUp: Linear; // [2 * I / tp, hidden]: gate rows, then up rows
  down: Linear; // [hidden, I / tp]
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

/** How linear layers are kept: as in the checkpoint, or quantized to FP8 at load. */
export type Quantization = "fp8" | null;

export type LoadProgress = (doneBytes: number, totalBytes: number) => void;

const stDtype: Record<StDtype, DType> = { F32: DType.f32, F16: DType.f16, BF16: DType.bf16 };

/** The dtype weights keep on the device: the checkpoint's, which every backend's GEMM reads. */
export function weightDtype(cfg: ModelConfig): DType {
  return cfg.dtype === "float32" ? DType.f32 : cfg.dtype === "float16" ? DType.f16 : DType.bf16;
}

/** One tensor's share of a buffer: rows cut across ranks along shardDim (-1: whole on every rank). */
interface Part {
  name: string;
  rows: number;
  cols: number;
  shardDim: -1 | 0 | 1;
}

class Loader {
  readonly buffers: Buf[] = [];
  private done = 0;

  constructor(
    private readonly be: Backend,
    private readonly tensors: Map<string, TensorInfo>,
    private readonly dt: DType,
    private readonly onProgress: LoadProgress | undefined,
    readonly total: number,
  ) {}

  alloc(bytes: number): Buf {
    const b = this.be.alloc(bytes);
    this.buffers.push(b);
    return b;
  }

  free(b: Buf): void {
    this.be.free(b);
    this.buffers.splice(this.buffers.indexOf(b), 1);
  }

  /** The parts one after another in one buffer of `dtype` (each cut across ranks as it says). */
  load(parts: Part[], dtype: DType = this.dt): Buf {
    const tp = this.be.tp, eb = dtypeBytes(dtype);
    const perRank = (p: Part) => (p.shardDim === -1 ? p.rows * p.cols : (p.rows * p.cols) / tp) * eb;
    const buf = this.alloc(parts.reduce((s, p) => s + perRank(p), 0));
    let at = 0;
    for (const p of parts) {
      const t = this.tensors.get(p.name);
      if (!t) throw new ModelDirError("the model directory", `tensor '${p.name}' is missing`);
      const dst = parts.length === 1 ? buf : this.be.view(buf, at, perRank(p));
      this.be.loadWeight(dst, dtype, t.file, t.dataOffset, stDtype[t.dtype], p.rows, p.cols, p.shardDim);
      at += perRank(p);
      this.done += p.rows * p.cols * dtypeBytes(stDtype[t.dtype]);
      this.onProgress?.(this.done, this.total);
    }
    return buf;
  }
}

export interface LoadOptions {
  quantization?: Quantization;
}

export function loadWeights(
  be: Backend,
  cfg: ModelConfig,
  tensors: Map<string, TensorInfo>,
  onProgress?: LoadProgress,
  opts: LoadOptions = {},
): ModelWeights {
  const tp = be.tp, dt = weightDtype(cfg), act = be.activationDtype(dt), quant = opts.quantization ?? null;
  const { hiddenSize: h, numHeads: nh, numKvHeads: nkv, headDim: d, intermediateSize: inter } = cfg;
  checkShardable(cfg, tp);
  let total = 0;
  for (const t of tensors.values()) total += t.shape.reduce((a, b) => a * b, 1) * dtypeBytes(stDtype[t.dtype]);
  const ld = new Loader(be, tensors, dt, onProgress, total);
  const vec = (name: string, n: number) => ld.load([{ name, rows: 1, cols: n, shardDim: -1 }]);
  /** A linear layer: its weight parts stacked by rows (column-parallel, shardDim 0) or one row-parallel part (shardDim 1). */
  const linear = (parts: [name: string, rows: number][], cols: number, shardDim: 0 | 1, biasOf?: (name: string) => string): Linear => {
    const rows = parts.reduce((s, [, r]) => s + r, 0);
    const [n, k] = shardDim === 0 ? [rows / tp, cols] : [rows, cols / tp];
    const biasParts = biasOf ? parts.map(([name, r]): Part => ({ name: biasOf(name), rows: 1, cols: r, shardDim: 1 })) : [];
    const w = ld.load(parts.map(([name, r]) => ({ name, rows: r, cols, shardDim })));
    if (quant !== "fp8") return { format: "dense", w, dtype: dt, n, k, bias: biasParts.length ? ld.load(biasParts) : 0 };
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
      qkv: linear([[attn("q_proj"), nh * d], [attn("k_proj"), nkv * d], [attn("v_proj"), nkv * d]], h, 0,
        cfg.qkvBias ? (name) => name.replace(/weight$/, "bias") : undefined),
      o: linear([[attn("o_proj"), h]], nh * d, 1),
      postNorm: vec(`${p}.post_attention_layernorm.weight`, h),
      gateUp: linear([[`${p}.mlp.gate_proj.weight`, inter], [`${p}.mlp.up_proj.weight`, inter]], h, 0),
      down: linear([[`${p}.mlp.down_proj.weight`, h]], inter, 1),
    });
  }
  const norm = vec("model.norm.weight", h);
  const lmHeadW = cfg.tieWordEmbeddings ? embed : ld.load([{ name: "lm_head.weight", rows: cfg.vocabSize, cols: h, shardDim: -1 }]);
  onProgress?.(total, total);
  return {
    dtype: dt, quantization: quant, embed, layers, norm, buffers: ld.buffers,
    lmHead: { format: "dense", w: lmHeadW, dtype: dt, n: cfg.vocabSize, k: h, bias: 0 },
  };
}

/** Tensor parallelism cuts heads and the MLP's width evenly across ranks, or not at all. */
export function checkShardable(cfg: ModelConfig, tp: number): void {
  const sizes = { num_attention_heads: cfg.numHeads, num_key_value_heads: cfg.numKvHeads, intermediate_size: cfg.intermediateSize };
  for (const [field, n] of Object.entries(sizes)) {
    if (n % tp !== 0) throw new Error(`--tensor-parallel-size ${tp} does not divide ${field} (${n}) in config.json`);
  }
}

export function freeWeights(be: Backend, w: ModelWeights): void {
  for (const b of w.buffers) be.free(b);
  w.buffers.length = 0;
}
