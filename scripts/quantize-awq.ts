// Writes a float model directory as an AWQ checkpoint laid out as AutoAWQ writes one (WQLinear_GEMM:
// qweight I32 [k, n/8] and qzeros I32 [k/group, n/8] with output channels packed in the order
// 0 2 4 6 1 3 5 7, scales F16 [k/group, n], zero points as they are; config.json's
// quantization_config as AutoAWQ saves it). Codes are rounded to nearest over each group's
// [min, max] as AutoAWQ's quantizer picks them; AWQ's activation-aware scaling search, which
// changes the weights before they are quantized, is not run. 4-bit only, as AutoAWQ's GEMM layout.
// Usage: bun scripts/quantize-awq.ts MODEL_DIR OUT_DIR [--group-size 128|-1]
import type { RawTensor } from "../src/model/safetensors-write.ts";
import { groupsOf, packAwq, type IntLayer } from "../src/native/int-weights-reference.ts";
import { rewriteCheckpoint } from "./rewrite-checkpoint.ts";
import { parseRtnArgs, quantizeRtn } from "./rtn.ts";

export interface AwqOptions {
  groupSize: number; // -1: one group over the whole row; else it must divide every layer's k
}

export const quantizeAwq = (w: Float32Array, n: number, k: number, o: AwqOptions): IntLayer =>
  quantizeRtn(w, n, k, { bits: 4, groupSize: o.groupSize, sym: false, scaleDtype: "F16", rangeIncludesZero: false });

function awqTensors(name: string, layer: IntLayer): RawTensor[] {
  if (layer.k % layer.groupSize !== 0) throw new Error(`${name}: AWQ needs k ${layer.k} to be a multiple of the group size ${layer.groupSize}`);
  const pre = name.replace(/\.weight$/, ""), p = packAwq(layer), G = groupsOf(layer.k, layer.groupSize);
  const bytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  return [
    { name: `${pre}.qweight`, dtype: "I32", shape: [layer.k, layer.n / 8], bytes: bytes(p.qweight) },
    { name: `${pre}.qzeros`, dtype: "I32", shape: [G, layer.n / 8], bytes: bytes(p.qzeros) },
    { name: `${pre}.scales`, dtype: "F16", shape: [G, layer.n], bytes: bytes(new Float16Array(p.scales)) },
  ];
}

export function writeAwqCheckpoint(src: string, out: string, o: AwqOptions): void {
  const quantizationConfig = { quant_method: "awq", zero_point: true, group_size: o.groupSize, bits: 4, version: "gemm", modules_to_not_convert: null };
  rewriteCheckpoint(src, out, (name, w, shape) => awqTensors(name, quantizeAwq(w, shape[0]!, shape[1]!, o)), quantizationConfig);
}

if (import.meta.main) {
  const { src, out, options } = parseRtnArgs("quantize-awq");
  if (options.actOrder) throw new Error("AWQ has no act-order");
  if (options.bits !== 4) throw new Error("AWQ checkpoints are 4-bit (with zero points): only --group-size applies");
  writeAwqCheckpoint(src, out, { groupSize: options.groupSize });
  console.log(`wrote ${out}`);
}
