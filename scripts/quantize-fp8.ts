// Writes a float model directory as a compressed-tensors FP8 checkpoint, laid out as
// llm-compressor writes its FP8 schemes: each decoder linear weight as F8_E4M3 codes with a
// `weight_scale` in the model's dtype ([rows, 1] per channel, or [1] per tensor), the scale
// computed as absmax / 448 and rounded to that dtype before the codes are (so codes and stored
// scale agree, as in the tool), and config.json's quantization_config naming the scheme.
// Embeddings, norms and lm_head stay as they are ("ignore": ["lm_head"]).
// Usage: bun scripts/quantize-fp8.ts MODEL_DIR OUT_DIR [--strategy channel|tensor] [--activations dynamic|static|none]
import { parseArgs } from "node:util";
import { decodeFloats, encodeFloats, type RawTensor } from "../src/model/safetensors-write.ts";
import { ST_DTYPE_BYTES, type StDtype } from "../src/model/safetensors.ts";
import { fp8Encode } from "../src/native/fp8-reference.ts";
import { rewriteCheckpoint } from "./rewrite-checkpoint.ts";

export interface Fp8Options {
  strategy: "channel" | "tensor";
  activations: "dynamic" | "static" | "none";
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
    quant_method: "compressed-tensors", format: "float-quantized", quantization_status: "compressed", ignore: ["lm_head"], kv_cache_scheme: null,
    config_groups: {
      group_0: {
        targets: ["Linear"], output_activations: null, weights: fp8(o.strategy, false),
        input_activations: o.activations === "none" ? null : o.activations === "dynamic" ? fp8("token", true) : fp8("tensor", false),
      },
    },
  };
}

export function writeFp8Checkpoint(src: string, out: string, o: Fp8Options): void {
  rewriteCheckpoint(src, out, (name, w, shape, dtype) => quantizeWeight(name, w, shape, dtype, o), quantizationConfig(o));
}

if (import.meta.main) {
  const { values: a, positionals: [src, out] } = parseArgs({
    args: Bun.argv.slice(2), allowPositionals: true, options: { strategy: { type: "string" }, activations: { type: "string" } },
  });
  if (!src || !out) throw new Error("usage: bun scripts/quantize-fp8.ts MODEL_DIR OUT_DIR [--strategy channel|tensor] [--activations dynamic|static|none]");
  writeFp8Checkpoint(src, out, {
    strategy: (a.strategy ?? "channel") as Fp8Options["strategy"], activations: (a.activations ?? "dynamic") as Fp8Options["activations"],
  });
  console.log(`wrote ${out}`);
}
