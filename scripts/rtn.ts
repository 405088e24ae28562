// Round-to-nearest integer quantization of one linear weight, group by group along k, as
// GPTQ-family tools, llm-compressor and AutoAWQ choose codes for a group when no calibration data
// moves them: symmetric, scale = 2 max|w| / (2^bits - 1) and zero 2^(bits-1); asymmetric over
// [min(w, 0), max(w, 0)] (AutoAWQ: [min(w), max(w)]), zero = round(-min / scale). The scale is rounded to the dtype the
// checkpoint stores it in before any code is picked, so the codes mean exactly what is stored.
// (GPTQ's error feedback changes which codes are picked, not how they are stored.)
import { parseArgs } from "node:util";
import { groupsOf, type IntLayer } from "../src/native/int-weights-reference.ts";
import { decodeFloats, encodeFloats } from "../src/model/safetensors-write.ts";

export interface RtnOptions {
  bits: 4 | 8;
  groupSize: number; // -1: one group over the whole row
  sym: boolean;
  /** The dtype the checkpoint keeps scales in (GPTQ: F16; llm-compressor: the model's dtype). */
  scaleDtype?: "F32" | "F16" | "BF16";
  /** The smallest zero the format can store (GPTQ's v1 format stores zero - 1, so 1). */
  minZero?: number;
  /** Whether an asymmetric group's range is stretched to hold 0 (GPTQ, llm-compressor: yes; AutoAWQ: no). */
  rangeIncludesZero?: boolean;
}

export function quantizeRtn(w: Float32Array, n: number, k: number, o: RtnOptions): IntLayer {
  const groupSize = o.groupSize === -1 ? k : o.groupSize, G = groupsOf(k, groupSize), maxq = 2 ** o.bits - 1;
  const asStored = (v: number) => decodeFloats(encodeFloats(new Float32Array([v]), o.scaleDtype ?? "F16"), o.scaleDtype ?? "F16")[0]!;
  const layer: IntLayer = { bits: o.bits, groupSize, n, k, codes: new Uint8Array(n * k), zeros: new Uint8Array(n * G), scales: new Float32Array(n * G) };
  for (let r = 0; r < n; r++)
    for (let g = 0; g < G; g++) {
      const row = w.subarray(r * k + g * groupSize, r * k + Math.min(k, (g + 1) * groupSize));
      let lo = o.rangeIncludesZero === false ? Infinity : 0, hi = o.rangeIncludesZero === false ? -Infinity : 0;
      for (const v of row) (lo = Math.min(lo, v)), (hi = Math.max(hi, v));
      if (o.sym) (hi = Math.max(-lo, hi)), (lo = -hi);
      const scale = asStored((hi - lo) / maxq || 1);
      const zero = o.sym ? (maxq + 1) / 2 : Math.min(maxq, Math.max(o.minZero ?? 0, Math.round(-lo / scale)));
      layer.scales[r * G + g] = scale;
      layer.zeros[r * G + g] = zero;
      row.forEach((v, i) => (layer.codes[r * k + g * groupSize + i] = Math.min(maxq, Math.max(0, Math.round(v / scale) + zero))));
    }
  return layer;
}

/** The integer quantizer scripts' command line: MODEL_DIR OUT_DIR [--bits 4|8] [--group-size 128|-1] [--asym]. */
export function parseRtnArgs(script: string): { src: string; out: string; options: { bits: 4 | 8; groupSize: number; sym: boolean } } {
  const { values: a, positionals: [src, out] } = parseArgs({
    args: Bun.argv.slice(2), allowPositionals: true,
    options: { bits: { type: "string" }, "group-size": { type: "string" }, asym: { type: "boolean" } },
  });
  if (!src || !out) throw new Error(`usage: bun scripts/${script}.ts MODEL_DIR OUT_DIR [--bits 4|8] [--group-size 128|-1] [--asym]`);
  const bits = Number(a.bits ?? 4), groupSize = Number(a["group-size"] ?? 128);
  if (bits !== 4 && bits !== 8) throw new Error(`--bits must be 4 or 8, got '${a.bits}'`);
  if (!(groupSize === -1 || (Number.isInteger(groupSize) && groupSize >= 1))) throw new Error(`--group-size must be -1 or a positive integer, got '${a["group-size"]}'`);
  return { src, out, options: { bits, groupSize, sym: !a.asym } };
}
