// Writes a float model directory as a GPTQ checkpoint laid out as AutoGPTQ writes one (the
// "gptq" format: qweight/qzeros I32, scales F16, g_idx I32, zeros stored minus one), with
// round-to-nearest codes chosen as AutoGPTQ's quantizer chooses them for a group: symmetric,
// scale = 2 max|w| / (2^bits - 1) and zero 2^(bits-1); or asymmetric over [min(w, 0), max(w, 0)].
// (The GPTQ algorithm's error feedback changes which codes are picked, not how they are stored.)
// Usage: bun scripts/quantize-gptq.ts MODEL_DIR OUT_DIR [--bits 4|8] [--group-size 128|-1] [--asym]
import { parseArgs } from "node:util";
import type { RawTensor } from "../src/model/safetensors-write.ts";
import { groupsOf, packGptq, type GptqLayer } from "../src/native/gptq-reference.ts";
import { rewriteCheckpoint } from "./rewrite-checkpoint.ts";

export interface GptqOptions {
  bits: 4 | 8;
  groupSize: number; // -1: one group over the whole row
  sym: boolean;
}

/** AutoGPTQ's round-to-nearest quantization of one [n, k] weight; scales rounded to f16 as stored. */
export function quantizeRtn(w: Float32Array, n: number, k: number, o: GptqOptions): GptqLayer {
  const groupSize = o.groupSize === -1 ? k : o.groupSize, G = groupsOf(k, groupSize), maxq = 2 ** o.bits - 1;
  const layer: GptqLayer = { bits: o.bits, groupSize, n, k, codes: new Uint8Array(n * k), zeros: new Uint8Array(n * G), scales: new Float32Array(n * G) };
  for (let r = 0; r < n; r++)
    for (let g = 0; g < G; g++) {
      const row = w.subarray(r * k + g * groupSize, r * k + Math.min(k, (g + 1) * groupSize));
      let lo = 0, hi = 0;
      for (const v of row) (lo = Math.min(lo, v)), (hi = Math.max(hi, v));
      if (o.sym) (hi = Math.max(-lo, hi)), (lo = -hi);
      let scale = (hi - lo) / maxq;
      if (scale === 0) scale = 1;
      scale = new Float16Array([scale])[0]!; // what the checkpoint keeps
      const zero = o.sym ? (maxq + 1) / 2 : Math.min(maxq, Math.max(1, Math.round(-lo / scale))); // stored minus one: >= 1
      layer.scales[r * G + g] = scale;
      layer.zeros[r * G + g] = zero;
      row.forEach((v, i) => (layer.codes[r * k + g * groupSize + i] = Math.min(maxq, Math.max(0, Math.round(v / scale) + zero))));
    }
  return layer;
}

function gptqTensors(name: string, layer: GptqLayer): RawTensor[] {
  const pre = name.replace(/\.weight$/, ""), p = packGptq(layer), G = groupsOf(layer.k, layer.groupSize), per = 32 / layer.bits;
  const bytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  return [
    { name: `${pre}.qweight`, dtype: "I32", shape: [layer.k / per, layer.n], bytes: bytes(p.qweight) },
    { name: `${pre}.qzeros`, dtype: "I32", shape: [G, layer.n / per], bytes: bytes(p.qzeros) },
    { name: `${pre}.scales`, dtype: "F16", shape: [G, layer.n], bytes: bytes(new Float16Array(p.scales)) },
    { name: `${pre}.g_idx`, dtype: "I32", shape: [layer.k], bytes: bytes(p.gIdx) },
  ];
}

export function writeGptqCheckpoint(src: string, out: string, o: GptqOptions): void {
  const quantizationConfig = {
    quant_method: "gptq", bits: o.bits, group_size: o.groupSize, desc_act: false, sym: o.sym, checkpoint_format: "gptq",
    static_groups: false, true_sequential: true, damp_percent: 0.01, model_file_base_name: "model",
  };
  rewriteCheckpoint(src, out, (name, w, shape) => gptqTensors(name, quantizeRtn(w, shape[0]!, shape[1]!, o)), quantizationConfig);
}

if (import.meta.main) {
  const { values: a, positionals: [src, out] } = parseArgs({
    args: Bun.argv.slice(2), allowPositionals: true,
    options: { bits: { type: "string" }, "group-size": { type: "string" }, asym: { type: "boolean" } },
  });
  if (!src || !out) throw new Error("usage: bun scripts/quantize-gptq.ts MODEL_DIR OUT_DIR [--bits 4|8] [--group-size 128|-1] [--asym]");
  writeGptqCheckpoint(src, out, { bits: Number(a.bits ?? 4) as 4 | 8, groupSize: Number(a["group-size"] ?? 128), sym: !a.asym });
  console.log(`wrote ${out}`);
}
