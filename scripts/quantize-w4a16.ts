// Writes a float model directory as a compressed-tensors "pack-quantized" checkpoint, laid out as
// llm-compressor writes its W4A16 and W8A16 schemes: each decoder linear weight as weight_packed
// (I32 [n, k*bits/32]), weight_scale in the model's dtype ([n, G]), weight_shape, and for an
// asymmetric scheme weight_zero_point (I32, packed along n); round-to-nearest codes (scripts/rtn.ts)
// as llm-compressor's observer picks them without calibration data. lm_head stays as it is.
// --act-order: actorder "group", groups formed along a stand-in order of the inputs
// (scripts/rtn.ts), which weight_g_idx (I32 [k]) records, as llm-compressor's GPTQ writes it.
// Usage: bun scripts/quantize-w4a16.ts MODEL_DIR OUT_DIR [--bits 4|8] [--group-size 128|-1] [--asym] [--act-order]
import { encodeFloats, type RawTensor } from "../src/model/safetensors-write.ts";
import type { StDtype } from "../src/model/safetensors.ts";
import { groupsOf, packCompressed, type IntLayer } from "../src/native/int-weights-reference.ts";
import { rewriteCheckpoint } from "./rewrite-checkpoint.ts";
import { parseRtnArgs, quantizeRtn, standInOrder, type RtnOptions } from "./rtn.ts";

type FloatDtype = "F32" | "F16" | "BF16";
/** scaleDtype: the scales' stored dtype when not the model's (as llm-compressor keeps them). */
export type PackOptions = Omit<RtnOptions, "minZero" | "order"> & { actOrder?: boolean };

const scaleDtypeOf = (modelDtype: StDtype, o: PackOptions): FloatDtype => o.scaleDtype ?? (modelDtype as FloatDtype);

/** One linear weight `name`'s codes, their scales rounded to the dtype they are stored in. */
export const quantizePacked = (name: string, w: Float32Array, n: number, k: number, modelDtype: StDtype, o: PackOptions): IntLayer =>
  quantizeRtn(w, n, k, { ...o, scaleDtype: scaleDtypeOf(modelDtype, o), order: o.actOrder ? standInOrder(name, k) : undefined });

function packedTensors(name: string, layer: IntLayer, dtype: FloatDtype, sym: boolean): RawTensor[] {
  const pre = name.replace(/\.weight$/, ""), { packed, zeroPoint } = packCompressed(layer);
  const per = 32 / layer.bits, G = groupsOf(layer.k, layer.groupSize);
  const bytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  return [
    { name: `${pre}.weight_packed`, dtype: "I32", shape: [layer.n, layer.k / per], bytes: bytes(packed) },
    { name: `${pre}.weight_scale`, dtype, shape: [layer.n, G], bytes: encodeFloats(layer.scales, dtype) },
    { name: `${pre}.weight_shape`, dtype: "I32", shape: [2], bytes: bytes(new Int32Array([layer.n, layer.k])) },
    ...(sym ? [] : [{ name: `${pre}.weight_zero_point`, dtype: "I32" as const, shape: [Math.ceil(layer.n / per), G], bytes: bytes(zeroPoint) }]),
    ...(layer.gIdx ? [{ name: `${pre}.weight_g_idx`, dtype: "I32" as const, shape: [layer.k], bytes: bytes(layer.gIdx) }] : []),
  ];
}

function quantizationConfig(o: PackOptions) {
  const weights = {
    num_bits: o.bits, type: "int", symmetric: o.sym, strategy: o.groupSize === -1 ? "channel" : "group",
    group_size: o.groupSize === -1 ? null : o.groupSize, dynamic: false, actorder: o.actOrder ? "group" : null, block_structure: null, observer: "minmax", observer_kwargs: {},
  };
  return {
    quant_method: "compressed-tensors", format: "pack-quantized", quantization_status: "compressed", ignore: ["lm_head"], kv_cache_scheme: null,
    config_groups: { group_0: { targets: ["Linear"], input_activations: null, output_activations: null, weights } },
  };
}

export function writePackedCheckpoint(src: string, out: string, o: PackOptions): void {
  rewriteCheckpoint(src, out, (name, w, shape, dtype) =>
    packedTensors(name, quantizePacked(name, w, shape[0]!, shape[1]!, dtype, o), scaleDtypeOf(dtype, o), o.sym), quantizationConfig(o));
}

if (import.meta.main) {
  const { src, out, options } = parseRtnArgs("quantize-w4a16");
  writePackedCheckpoint(src, out, options);
  console.log(`wrote ${out}`);
}
