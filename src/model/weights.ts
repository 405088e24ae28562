// Moves a model's tensors from its safetensors files into backend buffers, merging the
// projections that run as one GEMM (gate+up) and sharding for tensor parallelism.
import type { Backend, Buf } from "../native/types.ts";
import { DType, dtypeBytes } from "../native/types.ts";
import type { ModelConfig } from "./config.ts";
import { ModelDirError } from "./errors.ts";
import type { StDtype, TensorInfo } from "./safetensors.ts";

export interface LayerWeights {
  inputNorm: Buf; // [hidden]
  q: Buf; // [H*D / tp, hidden]
  k: Buf; // [KVH*D / tp, hidden]
  v: Buf; // [KVH*D / tp, hidden]
  qBias: Buf; // [H*D / tp] or 0
  kBias: Buf; // [KVH*D / tp] or 0
  vBias: Buf; // [KVH*D / tp] or 0
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
  const vec = (name: string, n: number, shard: -1 | 0 = -1) => place(name, 1, n, shard === 0 ? 1 : -1);

  const embed = place("model.embed_tokens.weight", cfg.vocabSize, h, -1);
  const layers: LayerWeights[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    const p = `model.layers.${i}`;
    const gateUp = alloc((2 * inter * h) / tp);
    place(`${p}.mlp.gate_proj.weight`, inter, h, 0, be.view(gateUp, 0, (inter * h * eb) / tp));
    place(`${p}.mlp.up_proj.weight`, inter, h, 0, be.view(gateUp, (inter * h * eb) / tp, (inter * h * eb) / tp));
    layers.push({
      inputNorm: vec(`${p}.input_layernorm.weight`, h),
      q: place(`${p}.self_attn.q_proj.weight`, nh * d, h, 0),
      k: place(`${p}.self_attn.k_proj.weight`, nkv * d, h, 0),
      v: place(`${p}.self_attn.v_proj.weight`, nkv * d, h, 0),
      qBias: cfg.qkvBias ? vec(`${p}.self_attn.q_proj.bias`, nh * d, 0) : 0,
      kBias: cfg.qkvBias ? vec(`${p}.self_attn.k_proj.bias`, nkv * d, 0) : 0,
      vBias: cfg.qkvBias ? vec(`${p}.self_attn.v_proj.bias`, nkv * d, 0) : 0,
      o: place(`${p}.self_attn.o_proj.weight`, h, nh * d, 1),
      postNorm: vec(`${p}.post_attention_layernorm.weight`, h),
      gateUp,
      down: place(`${p}.mlp.down_proj.weight`, h, inter, 1),
    });
  }
  const norm = vec("model.norm.weight", h);
  const lmHead = cfg.tieWordEmbeddings ? embed : place("lm_head.weight", cfg.vocabSize, h, -1);

  transfer(be, dt, tensors, placements, onProgress);
  return { dtype: dt, embed, layers, norm, lmHead, buffers };
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
