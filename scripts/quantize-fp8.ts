// Writes a float model directory as a compressed-tensors FP8 checkpoint, laid out as
// llm-compressor writes its FP8 schemes: each decoder linear weight as F8_E4M3 codes with a
// `weight_scale` in the model's dtype ([rows, 1] per channel, or [1] per tensor), the scale
// computed as absmax / 448 and rounded to that dtype before the codes are (so codes and stored
// scale agree, as in the tool), and config.json's quantization_config naming the scheme.
// Embeddings, norms and lm_head stay as they are ("ignore": ["lm_head"]). --kv-cache adds
// llm-compressor's kv_cache_scheme (static per-tensor e4m3): each layer's self_attn.k_scale and
// v_scale calibrated on --calibration TEXT (scripts/kv-calibration.ts; default the fixture corpus).
// Usage: bun scripts/quantize-fp8.ts MODEL_DIR OUT_DIR [--strategy channel|tensor] [--activations dynamic|static|none]
//   [--kv-cache [--calibration TEXT]]
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { decodeFloats, encodeFloats, type RawTensor } from "../src/model/safetensors-write.ts";
import { ST_DTYPE_BYTES, type StDtype } from "../src/model/safetensors.ts";
import { fp8Encode } from "../src/native/fp8-reference.ts";
import { TextTokenizer } from "../src/tokenizer/tokenizer.ts";
import { calibrateKvScales } from "./kv-calibration.ts";
import { rewriteCheckpoint } from "./rewrite-checkpoint.ts";

export interface Fp8Options {
  strategy: "channel" | "tensor";
  activations: "dynamic" | "static" | "none";
  /** Token sequences to calibrate KV-cache scales on; absent: no kv_cache_scheme. */
  kvCalibration?: number[][];
}

type FloatDtype = "F32" | "F16" | "BF16";

/** A value rounded to the scale's stored dtype, and its bytes. */
function storeScale(v: number, dtype: StDtype): { value: number; bytes: Uint8Array } {
  const bytes = encodeFloats(new Float32Array([v]), dtype as FloatDtype);
  return { value: decodeFloats(bytes, dtype as FloatDtype)[0]!, bytes };
}

function absmax(xs: Float32Array): number {
  let m = 0;
  for (const x of xs) m = Math.max(m, Math.abs(x));
  return m;
}

/** One linear weight as codes and scales. */
function quantizeWeight(name: string, w: Float32Array, shape: number[], dtype: StDtype, o: Fp8Options): RawTensor[] {
  const [rows, cols] = shape as [number, number];
  const groups = o.strategy === "channel" ? rows : 1, per = (rows * cols) / groups;
  const codes = new Uint8Array(rows * cols), scaleBytes = new Uint8Array(groups * ST_DTYPE_BYTES[dtype]);
  for (let g = 0; g < groups; g++) {
    const slice = w.subarray(g * per, (g + 1) * per), m = absmax(slice);
    const { value: s, bytes } = storeScale(m > 0 ? m / 448 : 1, dtype);
    scaleBytes.set(bytes, g * bytes.length);
    for (let i = 0; i < per; i++) codes[g * per + i] = fp8Encode(Math.fround(slice[i]! / s));
  }
  return [
    { name, dtype: "F8_E4M3", shape: [rows, cols], bytes: codes },
    { name: `${name}_scale`, dtype, shape: o.strategy === "channel" ? [rows, 1] : [1], bytes: scaleBytes },
  ];
}

function quantizationConfig(o: Fp8Options) {
  const fp8 = (strategy: string, dynamic: boolean) => ({
    num_bits: 8, type: "float", symmetric: true, strategy, dynamic, group_size: null, block_structure: null, observer: dynamic ? null : "minmax",
  });
  return {
    quant_method: "compressed-tensors", format: "float-quantized", quantization_status: "compressed", ignore: ["lm_head"],
    kv_cache_scheme: o.kvCalibration ? { num_bits: 8, type: "float", symmetric: true, strategy: "tensor", dynamic: false, observer: "minmax" } : null,
    config_groups: {
      group_0: {
        targets: ["Linear"], output_activations: null, weights: fp8(o.strategy, false),
        input_activations: o.activations === "none" ? null : o.activations === "dynamic" ? fp8("token", true) : fp8("tensor", false),
      },
    },
  };
}

/** Each layer's self_attn.k_scale and v_scale (F32 [1]), calibrated on `sequences`. */
function kvScaleTensors(src: string, sequences: number[][]): RawTensor[] {
  const { k, v } = calibrateKvScales(src, sequences);
  const scalar = (name: string, x: number): RawTensor => ({ name, dtype: "F32", shape: [1], bytes: new Uint8Array(Float32Array.of(x).buffer) });
  return k.flatMap((ks, i) => [scalar(`model.layers.${i}.self_attn.k_scale`, ks), scalar(`model.layers.${i}.self_attn.v_scale`, v[i]!)]);
}

export function writeFp8Checkpoint(src: string, out: string, o: Fp8Options): void {
  const extra = o.kvCalibration ? kvScaleTensors(src, o.kvCalibration) : [];
  rewriteCheckpoint(src, out, (name, w, shape, dtype) => quantizeWeight(name, w, shape, dtype, o), quantizationConfig(o), extra);
}

/** Calibration windows: the text's tokens in up to 8 windows of 256, each after BOS. */
export function calibrationWindows(modelDir: string, text: string): number[][] {
  const tok = TextTokenizer.fromDir(modelDir), ids = tok.encode(text, false), bos = tok.bosTokenId;
  const windows: number[][] = [];
  for (let at = 0; at < ids.length && windows.length < 8; at += 255) windows.push([...(bos === null ? [] : [bos]), ...ids.slice(at, at + 255)]);
  return windows;
}

if (import.meta.main) {
  const { values: a, positionals: [src, out] } = parseArgs({
    args: Bun.argv.slice(2), allowPositionals: true,
    options: { strategy: { type: "string" }, activations: { type: "string" }, "kv-cache": { type: "boolean" }, calibration: { type: "string" } },
  });
  if (!src || !out) throw new Error("usage: bun scripts/quantize-fp8.ts MODEL_DIR OUT_DIR [--strategy channel|tensor] [--activations dynamic|static|none]");
  writeFp8Checkpoint(src, out, {
    strategy: (a.strategy ?? "channel") as Fp8Options["strategy"], activations: (a.activations ?? "dynamic") as Fp8Options["activations"],
    kvCalibration: a["kv-cache"] ? calibrationWindows(src, readFileSync(a.calibration ?? join(import.meta.dir, "fixture_corpus.txt"), "utf8")) : undefined,
  });
  console.log(`wrote ${out}`);
}
