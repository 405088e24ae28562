// Moves a model's tensors from its safetensors files into backend buffers, merging the
// projections that run as one GEMM (q+k+v, gate+up), sharding for tensor parallelism, and
// quantizing the linear layers when asked (--quantization fp8: per output row, as vLLM does).
// Tensors load one linear layer at a time, so a quantized model never holds its whole
// unquantized self on the device: only the layer being quantized.
import { closeSync, openSync, readSync } from "node:fs";
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

const stDtype: Record<StDtype, DType> = { F32: DType.f32, F16: DType.f16, BF16: DType.bf16, F8_E4M3: DType.fp8E4m3 };

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

  tensor(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new ModelDirError("the model directory", `tensor '${name}' is missing`);
    return t;
  }

  /** Elements of a part on this rank. */
  perRank(p: Part): number {
    return p.shardDim === -1 ? p.rows * p.cols : (p.rows * p.cols) / this.be.tp;
  }

  /** The parts one after another in one buffer of `dtype` (each cut across ranks as it says). */
  load(parts: Part[], dtype: DType = this.dt): Buf {
    const eb = dtypeBytes(dtype);
    const buf = this.alloc(parts.reduce((s, p) => s + this.perRank(p) * eb, 0));
    let at = 0;
    for (const p of parts) {
      this.loadPart(parts.length === 1 ? buf : this.be.view(buf, at, this.perRank(p) * eb), p, dtype);
      at += this.perRank(p) * eb;
    }
    return buf;
  }

  loadPart(dst: Buf, p: Part, dtype: DType): void {
    const t = this.tensor(p.name);
    this.be.loadWeight(dst, dtype, t.file, t.dataOffset, stDtype[t.dtype], p.rows, p.cols, p.shardDim);
    this.counted(t);
  }

  /** A one-element tensor's value, read on the host (a per-tensor FP8 scale). */
  scalar(name: string): number {
    const t = this.tensor(name), bytes = new Uint8Array(4);
    const fd = openSync(t.file, "r");
    try {
      readSync(fd, bytes, 0, t.dtype === "F32" ? 4 : 2, t.dataOffset);
    } finally {
      closeSync(fd);
    }
    this.counted(t);
    const v = new DataView(bytes.buffer);
    if (t.dtype === "F32") return v.getFloat32(0, true);
    if (t.dtype === "BF16") return new Float32Array(new Uint32Array([v.getUint16(0, true) << 16]).buffer)[0]!;
    if (t.dtype === "F16") return v.getFloat16(0, true);
    throw new ModelDirError(t.file, `tensor '${name}' has dtype ${t.dtype}; a scale is F32, F16 or BF16`);
  }

  private counted(t: TensorInfo): void {
    this.done += t.shape.reduce((a, b) => a * b, 1) * dtypeBytes(stDtype[t.dtype]);
    this.onProgress?.(this.done, this.total);
  }
}

/**
 * A compressed-tensors FP8 layer: the e4m3 parts as they are, and one f32 scale per output row,
 * from each part's weight_scale ([rows, 1] per channel, or one value per tensor, repeated).
 */
function fp8FromCheckpoint(be: Backend, ld: Loader, parts: Part[], n: number): { w: Buf; scale: Buf } {
  const w = ld.load(parts, DType.fp8E4m3);
  const scale = ld.alloc(n * 4);
  let row = 0;
  for (const p of parts) {
    const name = `${p.name}_scale`, t = ld.tensor(name);
    const rows = p.shardDim === 0 ? p.rows / be.tp : p.rows; // output rows of this part on this rank
    const dst = be.view(scale, row * 4, rows * 4);
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel === p.rows) ld.loadPart(dst, { name, rows: p.rows, cols: 1, shardDim: p.shardDim === 0 ? 0 : -1 }, DType.f32);
    else if (numel === 1) be.copyFromHost(dst, 0, new Float32Array(rows).fill(ld.scalar(name)));
    else throw new ModelDirError(t.file, `tensor '${name}' has ${numel} values; expected ${p.rows} (per channel) or 1 (per tensor)`);
    row += rows;
  }
  return { w, scale };
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
    const weightParts = parts.map(([name, r]): Part => ({ name, rows: r, cols, shardDim }));
    if (ld.tensor(weightParts[0]!.name).dtype === "F8_E4M3") { // quantized in the checkpoint (compressed-tensors)
      const { w, scale } = fp8FromCheckpoint(be, ld, weightParts, n);
      return { format: "fp8", w, scale, n, k, bias: biasParts.length ? ld.load(biasParts, act) : 0 };
    }
    const w = ld.load(weightParts);
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
    dtype: dt, quantization: quant ?? (cfg.quantization ? "fp8" : null), embed, layers, norm, buffers: ld.buffers,
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
