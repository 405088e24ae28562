// What both quantizer scripts do around their own arithmetic: copy a model directory, replace each
// decoder linear weight by the tensors its format stores, and name the format in config.json.
import { cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadModelDir } from "../src/model/model-dir.ts";
import { decodeFloats, readTensorBytes, writeSafetensorsFile, type RawTensor } from "../src/model/safetensors-write.ts";
import { ST_DTYPE_BYTES, type StDtype } from "../src/model/safetensors.ts";

export const LINEAR_WEIGHT = /\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$/;

/** One linear weight's replacement tensors, from its values ([n, k]) and its stored dtype. */
export type QuantizeLinear = (name: string, values: Float32Array, shape: number[], dtype: StDtype) => RawTensor[];

/** `extra`: tensors the format adds beside the layers' own (KV-cache scales). */
export function rewriteCheckpoint(src: string, out: string, quantize: QuantizeLinear, quantizationConfig: object, extra: RawTensor[] = []): void {
  mkdirSync(out, { recursive: true });
  cpSync(src, out, { recursive: true, filter: (p) => !p.endsWith(".safetensors") && !p.endsWith(".index.json") });
  const tensors: RawTensor[] = [];
  for (const [name, t] of loadModelDir(src).tensors) {
    const bytes = readTensorBytes(t, ST_DTYPE_BYTES[t.dtype]);
    if (!LINEAR_WEIGHT.test(name)) tensors.push({ name, dtype: t.dtype, shape: t.shape, bytes });
    else tensors.push(...quantize(name, decodeFloats(bytes, t.dtype as "F32" | "F16" | "BF16"), t.shape, t.dtype));
  }
  writeSafetensorsFile(join(out, "model.safetensors"), [...tensors, ...extra]);
  const config = JSON.parse(readFileSync(join(src, "config.json"), "utf8"));
  writeFileSync(join(out, "config.json"), JSON.stringify({ ...config, quantization_config: quantizationConfig }, null, 2));
}
