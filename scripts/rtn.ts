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
  /**
   * Act-order (GPTQ's desc_act): the inputs in the order they are quantized, groups formed along
   * it; GPTQ orders by the Hessian's diagonal, which needs calibration data this script has not.
   */
  order?: Int32Array;
}

/**
 * A stand-in for GPTQ's act-order without calibration data: a fixed shuffle of the k inputs, the
 * same for every projection that reads the same input (q, k, v; gate, up), as the Hessian's order
 * is, so that those layers still run as one GEMM.
 */
export function standInOrder(weightName: string, k: number): Int32Array {
  const input = weightName.replace(/\.(q|k|v)_proj\./, ".qkv.").replace(/\.(gate|up)_proj\./, ".gate_up.");
  let state = Number(Bun.hash.crc32(input)) || 1;
  const next = () => ((state ^= state << 13), (state ^= state >>> 17), (state ^= state << 5), (state >>> 0) / 2 ** 32);
  const order = Int32Array.from({ length: k }, (_, c) => c);
  for (let i = k - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

export function quantizeRtn(w: Float32Array, n: number, k: number, o: RtnOptions): IntLayer {
  const groupSize = o.groupSize === -1 ? k : o.groupSize, G = groupsOf(k, groupSize), maxq = 2 ** o.bits - 1;
  const order = o.order ?? Int32Array.from({ length: k }, (_, c) => c);
  const asStored = (v: number) => decodeFloats(encodeFloats(new Float32Array([v]), o.scaleDtype ?? "F16"), o.scaleDtype ?? "F16")[0]!;
  const layer: IntLayer = { bits: o.bits, groupSize, n, k, codes: new Uint8Array(n * k), zeros: new Uint8Array(n * G), scales: new Float32Array(n * G) };
  if (o.order) {
    layer.gIdx = new Int32Array(k);
    order.forEach((c, i) => (layer.gIdx![c] = Math.floor(i / groupSize)));
  }
  for (let r = 0; r < n; r++)
    for (let g = 0; g < G; g++) {
      const cols = order.subarray(g * groupSize, Math.min(k, (g + 1) * groupSize));
      let lo = o.rangeIncludesZero === false ? Infinity : 0, hi = o.rangeIncludesZero === false ? -Infinity : 0;
      for (const c of cols) (lo = Math.min(lo, w[r * k + c]!)), (hi = Math.max(hi, w[r * k + c]!));
      if (o.sym) (hi = Math.max(-lo, hi)), (lo = -hi);
      const scale = asStored((hi - lo) / maxq || 1);
      const zero = o.sym ? (maxq + 1) / 2 : Math.min(maxq, Math.max(o.minZero ?? 0, Math.round(-lo / scale)));
      layer.scales[r * G + g] = scale;
      layer.zeros[r * G + g] = zero;
      for (const c of cols) layer.codes[r * k + c] = Math.min(maxq, Math.max(0, Math.round(w[r * k + c]! / scale) + zero));
    }
  return layer;
}

/** The integer quantizer scripts' command line: MODEL_DIR OUT_DIR [--bits 4|8] [--group-size 128|-1] [--asym] [--act-order]. */
export function parseRtnArgs(script: string): { src: string; out: string; options: { bits: 4 | 8; groupSize: number; sym: boolean; actOrder: boolean } } {
  const { values: a, positionals: [src, out] } = parseArgs({
    args: Bun.argv.slice(2), allowPositionals: true,
    options: { bits: { type: "string" }, "group-size": { type: "string" }, asym: { type: "boolean" }, "act-order": { type: "boolean" } },
  });
  if (!src || !out) throw new Error(`usage: bun scripts/${script}.ts MODEL_DIR OUT_DIR [--bits 4|8] [--group-size 128|-1] [--asym] [--act-order]`);
  const bits = Number(a.bits ?? 4), groupSize = Number(a["group-size"] ?? 128);
  if (bits !== 4 && bits !== 8) throw new Error(`--bits must be 4 or 8, got '${a.bits}'`);
  if (!(groupSize === -1 || (Number.isInteger(groupSize) && groupSize >= 1))) throw new Error(`--group-size must be -1 or a positive integer, got '${a["group-size"]}'`);
  return { src, out, options: { bits, groupSize, sym: !a.asym, actOrder: a["act-order"] === true } };
}
