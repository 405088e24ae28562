// Builds tiny Hugging Face model directories for tests: config.json, safetensors (sharded with an
// index when asked) and deterministic random weights. The tensor list is written out here from the
// raw config fields, independently of src/model/tensors.ts, so the two check each other.
import { mkdirSync, writeFileSync } from "node:fs";
import { decodeFloats, encodeFloats, writeRawSafetensors, writeSafetensorsFile } from "../../src/model/safetensors-write.ts";
import { join } from "node:path";

export type WriterDtype = "F32" | "F16" | "BF16";

export interface TensorSpec {
  name: string;
  dtype: WriterDtype;
  shape: number[];
  data: Float32Array; // row-major, numel = product of shape
}

export interface TinyModelOptions {
  shards?: number; // > 1 writes model-0000k-of-0000n.safetensors + model.safetensors.index.json
  dropTensor?: string; // leave this tensor out
  wrongShape?: string; // write this tensor with its first dimension one larger
  dtype?: WriterDtype; // default: from the config's dtype/torch_dtype
  seed?: number;
  generationConfig?: Record<string, unknown>; // written as generation_config.json when given
}

export interface TinyModel {
  dir: string;
  config: Record<string, unknown>;
  tensors: Map<string, { shape: number[]; data: Float32Array }>; // data as stored (after f16/bf16 rounding)
  files: string[]; // safetensors file names
}

/** A small Llama; overrides replace fields, and an override of `undefined` removes the field. */
export const TINY_LLAMA_CONFIG: Readonly<Record<string, unknown>> = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_size: 16,
  intermediate_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 64,
  rms_norm_eps: 1e-5,
  max_position_embeddings: 128,
  rope_theta: 10000.0,
  hidden_act: "silu",
  tie_word_embeddings: false,
  torch_dtype: "float32",
  bos_token_id: 1,
  eos_token_id: 2,
};


const encode = encodeFloats;

/** What a reader gets back from the stored bytes, as float32. */
export const decode = decodeFloats;

export { writeRawSafetensors };

export function writeSafetensors(path: string, tensors: TensorSpec[]): void {
  writeSafetensorsFile(path, tensors.map((t) => {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel !== t.data.length) throw new Error(`${t.name}: shape [${t.shape}] needs ${numel} values, got ${t.data.length}`);
    return { name: t.name, dtype: t.dtype, shape: t.shape, bytes: encode(t.data, t.dtype) };
  }));
}

/** mulberry32: a tiny seeded generator, so weights are the same on every run. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function nameSeed(name: string, seed: number): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function tensorShapes(cfg: Record<string, unknown>): [string, number[]][] {
  const num = (key: string): number => {
    const v = cfg[key];
    return typeof v === "number" ? v : (TINY_LLAMA_CONFIG[key] as number);
  };
  const [h, inter, heads, vocab] = [num("hidden_size"), num("intermediate_size"), num("num_attention_heads"), num("vocab_size")];
  const kv = typeof cfg.num_key_value_heads === "number" ? cfg.num_key_value_heads : heads;
  const d = typeof cfg.head_dim === "number" ? cfg.head_dim : h / heads;
  const arch = Array.isArray(cfg.architectures) ? cfg.architectures[0] : undefined;
  const bias = arch === "Qwen2ForCausalLM" || cfg.attention_bias === true;
  const out: [string, number[]][] = [["model.embed_tokens.weight", [vocab, h]]];
  for (let i = 0; i < num("num_hidden_layers"); i++) {
    const p = `model.layers.${i}`;
    out.push([`${p}.input_layernorm.weight`, [h]], [`${p}.post_attention_layernorm.weight`, [h]]);
    for (const [proj, rows] of [["q", heads * d], ["k", kv * d], ["v", kv * d]] as const) {
      out.push([`${p}.self_attn.${proj}_proj.weight`, [rows, h]]);
      if (bias) out.push([`${p}.self_attn.${proj}_proj.bias`, [rows]]);
    }
    out.push([`${p}.self_attn.o_proj.weight`, [h, heads * d]]);
    out.push([`${p}.mlp.gate_proj.weight`, [inter, h]], [`${p}.mlp.up_proj.weight`, [inter, h]]);
    out.push([`${p}.mlp.down_proj.weight`, [h, inter]]);
  }
  out.push(["model.norm.weight", [h]]);
  if (cfg.tie_word_embeddings !== true) out.push(["lm_head.weight", [vocab, h]]);
  return out;
}

function randomTensor(name: string, shape: number[], seed: number): Float32Array {
  const next = random(nameSeed(name, seed));
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  const isNorm = name.endsWith("norm.weight");
  for (let i = 0; i < data.length; i++) data[i] = (isNorm ? 1 : 0) + 0.2 * (next() - 0.5);
  return data;
}

function configDtype(cfg: Record<string, unknown>): WriterDtype {
  const d = cfg.dtype ?? cfg.torch_dtype;
  return d === "bfloat16" ? "BF16" : d === "float16" ? "F16" : "F32";
}

function mergeConfig(overrides: Record<string, unknown>): Record<string, unknown> {
  const cfg: Record<string, unknown> = { ...TINY_LLAMA_CONFIG };
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) delete cfg[k];
    else cfg[k] = v;
  }
  return cfg;
}

function writeShards(dir: string, specs: TensorSpec[], shards: number): string[] {
  if (shards <= 1) {
    writeSafetensors(join(dir, "model.safetensors"), specs);
    return ["model.safetensors"];
  }
  const files: string[] = [];
  const weightMap: Record<string, string> = {};
  const per = Math.ceil(specs.length / shards);
  for (let s = 0; s < shards; s++) {
    const file = `model-${String(s + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`;
    const part = specs.slice(s * per, (s + 1) * per);
    writeSafetensors(join(dir, file), part);
    for (const t of part) weightMap[t.name] = file;
    files.push(file);
  }
  const index = { metadata: { total_size: 0 }, weight_map: weightMap };
  writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify(index, null, 2));
  return files;
}

export function writeTinyModelDir(dir: string, cfgOverrides: Record<string, unknown> = {}, opts: TinyModelOptions = {}): TinyModel {
  mkdirSync(dir, { recursive: true });
  const config = mergeConfig(cfgOverrides);
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
  if (opts.generationConfig) writeFileSync(join(dir, "generation_config.json"), JSON.stringify(opts.generationConfig));
  const dtype = opts.dtype ?? configDtype(config);
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  const specs: TensorSpec[] = [];
  for (const [name, goodShape] of tensorShapes(config)) {
    if (name === opts.dropTensor) continue;
    const shape = name === opts.wrongShape ? [goodShape[0]! + 1, ...goodShape.slice(1)] : goodShape;
    const data = randomTensor(name, shape, opts.seed ?? 1);
    specs.push({ name, dtype, shape, data });
    tensors.set(name, { shape, data: decode(encode(data, dtype), dtype) });
  }
  return { dir, config, tensors, files: writeShards(dir, specs, opts.shards ?? 1) };
}
