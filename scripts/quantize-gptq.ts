// Writes a float model directory as a GPTQ checkpoint laid out as AutoGPTQ writes one (the
// "gptq" format: qweight/qzeros I32, scales F16, g_idx I32, zeros stored minus one), with
// round-to-nearest codes (scripts/rtn.ts) chosen as AutoGPTQ's quantizer chooses them for a group.
// --act-order (desc_act) forms groups along a stand-in order of the inputs and writes its g_idx.
// Usage: bun scripts/quantize-gptq.ts MODEL_DIR OUT_DIR [--bits 4|8] [--group-size 128|-1] [--asym] [--act-order]
import type { RawTensor } from "../src/model/safetensors-write.ts";
import { groupsOf, packGptq, type IntLayer } from "../src/native/int-weights-reference.ts";
import { rewriteCheckpoint } from "./rewrite-checkpoint.ts";
import { parseRtnArgs, quantizeRtn, standInOrder, type RtnOptions } from "./rtn.ts";

/** GPTQ's v1 format stores zero - 1 in an unsigned field, so no zero below 1 can be written. */
export type GptqOptions = Omit<RtnOptions, "scaleDtype" | "minZero" | "order"> & { actOrder?: boolean };
const GPTQ_STORAGE = { scaleDtype: "F16", minZero: 1 } as const;

/** One linear weight `name` of [n, k] as GPTQ codes. */
export const quantizeGptq = (name: string, w: Float32Array, n: number, k: number, o: GptqOptions): IntLayer =>
  quantizeRtn(w, n, k, { ...o, ...GPTQ_STORAGE, order: o.actOrder ? standInOrder(name, k) : undefined });

function gptqTensors(name: string, layer: IntLayer): RawTensor[] {
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
    quant_method: "gptq", bits: o.bits, group_size: o.groupSize, desc_act: o.actOrder === true, sym: o.sym, checkpoint_format: "gptq",
    static_groups: false, true_sequential: true, damp_percent: 0.01, model_file_base_name: "model",
  };
  rewriteCheckpoint(src, out, (name, w, shape) => gptqTensors(name, quantizeGptq(name, w, shape[0]!, shape[1]!, o)), quantizationConfig);
}

if (import.meta.main) {
  const { src, out, options } = parseRtnArgs("quantize-gptq");
  writeGptqCheckpoint(src, out, options);
  console.log(`wrote ${out}`);
}
