// Moves a model's tensors from its safetensors files into backend buffers, merging the
// projections that run as one GEMM (q+k+v, gate+up) and sharding for tensor parallelism.
import type { Backend, Buf } from "../native/types.ts";
import { DType, dtypeBytes } from "../native/types.ts";
import type { ModelConfig } from "./config.ts";
import { ModelDirError } from "./errors.ts";
import type { StDtype, TensorInfo } from "./safetensors.ts";

export interface LayerWeights {
  inputNorm: Buf; // [hidden]
  qkv: Buf; // [(H + 2*KVH)*D / tp, hidden]: q rows, then k rows, then v rows
  qkvBias: Buf; // [(H + 2*KVH)*D / tp] in the same order, or 0
  o: Buf; // [hidden, H*D / tp]
  postNorm: Buf; // [hidden]
  gateUp: Buf; // [2 * I / tp, hidden]: gate rows, then up rows
  down: Buf; // [hidden, I / tp]
}

export interface ModelWeights {
  dtype: DType; // of every weight buffer
  embed: Buf; // [V, hidden]
  layers: LayerWeights[];
  norm: Buf; // [hidden]
  lmHead: Buf; // [V, hidden] (the embedding table when tied)
  buffers: Buf[]; // every allocation, for freeing
}

const stDtype: Record<StDtype, DType> = { F32: DType.f32, F16: DType.f16, BF16: DType.bf16 };

/** Where one tensor goes: the buffer, its row range there, and how it is cut across ranks. */
interface Placement {
  name: string;
  dst: Buf;
  rows: number; // global rows of the tensor (1 for vectors)
  cols: number;
  shardDim: -1 | 0 | 1;
}

export type LoadProgress = (doneBytes: number, totalBytes: number) => void;

/** The dtype weights keep on the device: the checkpoint's, which every backend's GEMM reads. */
export function weightDtype(cfg: ModelConfig): DType {
  return cfg.dtype === "float32" ? DType.f32 : cfg.dtype === "float16" ? DType.f16 : DType.bf16;
}

export function loadWeights(
  be: Backend,
  cfg: ModelConfig,
  tensors: Map<string, TensorInfo>,
  onProgress?: LoadProgress,
): ModelWeights {
  const tp = be.tp;
  const dt = weightDtype(cfg);
  const eb = dtypeBytes(dt);
  const { hiddenSize: h, numHeads: nh, numKvHeads: nkv, headDim: d, intermediateSize: inter } = cfg;
  checkShardable(cfg, tp);
  const buffers: Buf[] = [];
  const placements: Placement[] = [];
  const alloc = (elems: number): Buf => {
    const b = be.alloc(elems * eb);
    buffers.push(b);
    return b;
  };
  const place = (name: string, rows: number, cols: number, shardDim: -1 | 0 | 1, dst?: Buf): Buf => {
    const perRank = shardDim === -1 ? rows * cols : (rows * cols) / tp;
    const buf = dst ?? alloc(perRank);
    placements.push({ name, dst: buf, rows, cols, shardDim });
    return buf;
  };
  const vec = (name: string, n: number) => place(name, 1, n, -1);
  /**
   * One buffer holding the tensors' rows one after another, each cut across ranks along its rows,
   * so that their projections run as one GEMM. cols = 1 takes vectors (biases), cut along their length.
   */
  const rowsOf = (parts: [name: string, rows: number][], cols: number): Buf => {
    const total = parts.reduce((n, [, rows]) => n + rows, 0);
    const buf = alloc((total * cols) / tp);
    let at = 0;
    for (const [name, rows] of parts) {
      const bytes = (rows * cols * eb) / tp, dst = be.view(buf, at, bytes);
      if (cols === 1) place(name, 1, rows, 1, dst);
      else place(name, rows, cols, 0, dst);
      at += bytes;
    }
    return buf;
  };

  const embed = place("model.embed_tokens.weight", cfg.vocabSize, h, -1);
  const layers: LayerWeights[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    const p = `model.layers.${i}`;
    const qkvParts = (kind: string): [string, number][] =>
      [[`${p}.self_attn.q_proj.${kind}`, nh * d], [`${p}.self_attn.k_proj.${kind}`, nkv * d], [`${p}.self_attn.v_proj.${kind}`, nkv * d]];
    layers.push({
      inputNorm: vec(`${p}.input_layernorm.weight`, h),
      qkv: rowsOf(qkvParts("weight"), h),
      qkvBias: cfg.qkvBias ? rowsOf(qkvParts("bias"), 1) : 0,
      o: place(`${p}.self_attn.o_proj.weight`, h, nh * d, 1),
      postNorm: vec(`${p}.post_attention_layernorm.weight`, h),
      gateUp: rowsOf([[`${p}.mlp.gate_proj.weight`, inter], [`${p}.mlp.up_proj.weight`, inter]], h),
      down: place(`${p}.mlp.down_proj.weight`, h, inter, 1),
    });
  }
  const norm = vec("model.norm.weight", h);
  const lmHead = cfg.tieWordEmbeddings ? embed : place("lm_head.weight", cfg.vocabSize, h, -1);

  transfer(be, dt, tensors, placements, onProgress);
  return { dtype: dt, embed, layers, norm, lmHead, buffers };
}

/** Tensor parallelism cuts heads and the MLP's width evenly across ranks, or not at all. */
export function checkShardable(cfg: ModelConfig, tp: number): void {
  const sizes = { num_attention_heads: cfg.numHeads, num_key_value_heads: cfg.numKvHeads, intermediate_size: cfg.intermediateSize };
  for (const [field, n] of Object.entries(sizes)) {
    if (n % tp !== 0) throw new Error(`--tensor-parallel-size ${tp} does not divide ${field} (${n}) in config.json`);
  }
}

function transfer(be: Backend, dt: DType, tensors: Map<string, TensorInfo>, todo: Placement[], onProgress?: LoadProgress) {
  const dir = todo.length ? "the model directory" : "";
  const infoOf = (name: string): TensorInfo => {
    const t = tensors.get(name);
    if (!t) throw new ModelDirError(dir, `tensor '${name}' is missing`);
    return t;
  };
  const total = todo.reduce((s, p) => s + p.rows * p.cols * dtypeBytes(stDtype[infoOf(p.name).dtype]), 0);
  let done = 0;
  for (const p of todo) {
    const t = infoOf(p.name);
    const fileDtype = stDtype[t.dtype];
    be.loadWeight(p.dst, dt, t.file, t.dataOffset, fileDtype, p.rows, p.cols, p.shardDim);
    done += p.rows * p.cols * dtypeBytes(fileDtype);
    onProgress?.(done, total);
  }
}

export function freeWeights(be: Backend, w: ModelWeights): void {
  for (const b of w.buffers) be.free(b);
  w.buffers.length = 0;
}
