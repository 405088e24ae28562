// A pre-quantized checkpoint's `quantization_config` (config.json), read as vLLM reads it: the
// method picks the weight format. Supported so far: compressed-tensors "float-quantized" FP8
// (llm-compressor's FP8 and FP8-dynamic schemes), e4m3 weights with a scale per output channel or
// per tensor; compressed-tensors "pack-quantized" integers (W4A16, W8A16: 4 or 8 bits, per group
// or per channel, symmetric or with zero points, act-order "group" with weight_g_idx); and GPTQ (AutoGPTQ, GPTQModel), 4 or 8 bits, any
// group size, with or without act-order; and AWQ (AutoAWQ's GEMM layout, 4 bits, zero points). Anything
// else is refused naming the field and its value, never loaded as something it is not.
import { z } from "zod";
import { ModelDirError } from "./errors.ts";

export type CheckpointQuantization = CompressedTensorsFp8 | CompressedTensorsInt | Gptq | Awq;

export interface Awq {
  method: "awq";
  bits: 4;
  /** Input channels per group; null: one group over the whole row (group_size -1). */
  groupSize: number | null;
}

export interface Gptq {
  method: "gptq";
  bits: 4 | 8;
  /** Input channels per group; null: one group over the whole row (group_size -1). */
  groupSize: number | null;
  /** The "gptq" checkpoint format stores each zero minus one; "gptq_v2" stores it as is. */
  zerosMinusOne: boolean;
  /** desc_act: groups are formed along a permutation of the inputs, which g_idx records. */
  actOrder: boolean;
}

export interface CompressedTensorsFp8 {
  method: "compressed-tensors";
  format: "float-quantized";
  /** The weights' scale granularity over every quantized layer (a checkpoint may mix them). */
  strategies: ("channel" | "tensor")[];
  /**
   * The activations' quantization the checkpoint was made for. vllmd computes the linear layers
   * with unquantized activations (weight-only), which is at least as accurate.
   */
  activations: "none" | "dynamic" | "static";
}

/**
 * llm-compressor's integer weights: codes packed along k into int32 words (as vllmd keeps them),
 * stored with an offset of 2^(bits-1) so that a symmetric layer's zero is that offset; an
 * asymmetric one stores its zero points packed along n.
 */
export interface CompressedTensorsInt {
  method: "compressed-tensors";
  format: "pack-quantized";
  bits: 4 | 8;
  /** Input channels per group; null: one group over the whole row (the "channel" strategy). */
  groupSize: number | null;
  symmetric: boolean;
  /** actorder "group": groups are formed along a permutation of the inputs, which weight_g_idx records. */
  actOrder: boolean;
}

const gptqConfig = z.looseObject({
  bits: z.number(),
  group_size: z.number().int(),
  desc_act: z.boolean().nullish(),
  checkpoint_format: z.string().nullish(),
});

function parseGptq(raw: unknown, file: string): Gptq {
  const r = gptqConfig.safeParse(raw);
  if (!r.success) refuse(file, "bits", (raw as { bits?: unknown }).bits ?? null, "a GPTQ config needs bits and group_size");
  const g = r.data;
  if (g.bits !== 4 && g.bits !== 8) refuse(file, "bits", g.bits, "supported: 4, 8");
  if (g.group_size !== -1 && g.group_size < 1) refuse(file, "group_size", g.group_size, "expected -1 or a positive group size");
  const format = g.checkpoint_format ?? "gptq";
  if (format !== "gptq" && format !== "gptq_v2") refuse(file, "checkpoint_format", format, "supported: gptq, gptq_v2");
  return { method: "gptq", bits: g.bits, groupSize: g.group_size === -1 ? null : g.group_size, zerosMinusOne: format === "gptq", actOrder: g.desc_act === true };
}

// AutoAWQ writes bits and group_size; its older quant_config.json names them w_bit and q_group_size.
const awqConfig = z.looseObject({
  bits: z.number().nullish(),
  w_bit: z.number().nullish(),
  group_size: z.number().int().nullish(),
  q_group_size: z.number().int().nullish(),
  zero_point: z.boolean().nullish(),
  version: z.string().nullish(),
});

function parseAwq(raw: unknown, file: string): Awq {
  const r = awqConfig.safeParse(raw);
  if (!r.success) refuse(file, "group_size", (raw as { group_size?: unknown }).group_size ?? null, "an AWQ config needs bits and group_size");
  const a = r.data, bits = a.bits ?? a.w_bit, groupSize = a.group_size ?? a.q_group_size;
  if (bits !== 4) refuse(file, "bits", bits ?? null, "AWQ checkpoints are 4-bit");
  if (groupSize == null || (groupSize !== -1 && groupSize < 1)) refuse(file, "group_size", groupSize ?? null, "expected -1 or a positive group size");
  if (a.zero_point === false) refuse(file, "zero_point", false, "AWQ without zero points is not supported");
  const version = (a.version ?? "gemm").toLowerCase();
  if (version !== "gemm") refuse(file, "version", a.version, "supported: gemm (the GEMV, Marlin and IPEX layouts differ)");
  return { method: "awq", bits: 4, groupSize: groupSize === -1 ? null : groupSize };
}

const quantArgs = z.looseObject({
  num_bits: z.number().nullish(),
  type: z.string().nullish(),
  strategy: z.string().nullish(),
  symmetric: z.boolean().nullish(),
  dynamic: z.union([z.boolean(), z.string()]).nullish(),
  group_size: z.number().nullish(),
  block_structure: z.unknown().nullish(),
  actorder: z.union([z.boolean(), z.string()]).nullish(),
});

const compressedTensors = z.looseObject({
  format: z.string().nullish(),
  config_groups: z.record(z.string(), z.looseObject({ weights: quantArgs.nullish(), input_activations: quantArgs.nullish(), output_activations: quantArgs.nullish() })),
  kv_cache_scheme: z.unknown().nullish(),
});

type Args = z.infer<typeof quantArgs>;
type Group = z.infer<typeof compressedTensors>["config_groups"][string];

function refuse(file: string, field: string, value: unknown, why: string): never {
  throw new ModelDirError(file, `field 'quantization_config.${field}' is ${JSON.stringify(value)}: ${why}`);
}

function fp8Strategy(w: Args | null | undefined, file: string, at: string): "channel" | "tensor" {
  if (!w) refuse(file, `${at}.weights`, w ?? null, "a group without quantized weights is not supported");
  if (w.type !== "float" || w.num_bits !== 8) refuse(file, `${at}.weights`, { type: w.type, num_bits: w.num_bits }, "a float-quantized checkpoint's weights must be 8-bit float (FP8 e4m3)");
  if (w.strategy !== "channel" && w.strategy !== "tensor") refuse(file, `${at}.weights.strategy`, w.strategy, "supported: channel, tensor");
  if (w.dynamic === true || w.symmetric === false) refuse(file, `${at}.weights`, { dynamic: w.dynamic, symmetric: w.symmetric }, "FP8 weights must be static and symmetric");
  return w.strategy;
}

function fp8Activations(a: Args | null | undefined, file: string, at: string): CompressedTensorsFp8["activations"] {
  if (!a) return "none";
  if (a.type !== "float" || a.num_bits !== 8) refuse(file, `${at}.input_activations`, { type: a.type, num_bits: a.num_bits }, "only FP8 activations are supported");
  return a.dynamic === true ? "dynamic" : "static";
}

/** Act-order that keeps groups contiguous ("weight", "static") stores nothing extra; "group" stores weight_g_idx. */
const CONTIGUOUS_ACTORDER = new Set([null, undefined, false, "weight", "static"]);

function intScheme(g: Group, file: string, at: string): CompressedTensorsInt {
  const w = g.weights;
  if (!w) refuse(file, `${at}.weights`, w ?? null, "a group without quantized weights is not supported");
  if (w.type !== "int" || (w.num_bits !== 4 && w.num_bits !== 8)) refuse(file, `${at}.weights`, { type: w.type, num_bits: w.num_bits }, "a pack-quantized checkpoint's weights must be 4- or 8-bit integers");
  if (w.strategy !== "group" && w.strategy !== "channel") refuse(file, `${at}.weights.strategy`, w.strategy, "supported: group, channel");
  if (w.strategy === "group" && !(Number.isInteger(w.group_size) && w.group_size! >= 1)) refuse(file, `${at}.weights.group_size`, w.group_size ?? null, "the group strategy needs a positive group size");
  if (w.dynamic === true) refuse(file, `${at}.weights.dynamic`, true, "integer weights must be static");
  const actOrder = w.actorder === "group";
  if (!actOrder && !CONTIGUOUS_ACTORDER.has(w.actorder as string)) refuse(file, `${at}.weights.actorder`, w.actorder, "supported: group, weight, static (or none)");
  if (actOrder && w.strategy !== "group") refuse(file, `${at}.weights.actorder`, w.actorder, "act-order \"group\" needs the group strategy");
  if (g.input_activations) refuse(file, `${at}.input_activations`, g.input_activations, "integer weights with quantized activations (W8A8, W4A8) are not supported; W4A16 and W8A16 are");
  return { method: "compressed-tensors", format: "pack-quantized", bits: w.num_bits, groupSize: w.strategy === "group" ? w.group_size! : null, symmetric: w.symmetric !== false, actOrder };
}

function parsePackQuantized(groups: [string, Group][], file: string): CompressedTensorsInt {
  const schemes = groups.map(([name, g]) => intScheme(g, file, `config_groups.${name}`));
  const first = JSON.stringify(schemes[0]);
  const other = schemes.findIndex((s) => JSON.stringify(s) !== first);
  if (other >= 0) refuse(file, `config_groups.${groups[other]![0]}.weights`, groups[other]![1].weights, `differs from config_groups.${groups[0]![0]}; one integer scheme for every layer is supported`);
  return schemes[0]!;
}

function parseFloatQuantized(groups: [string, Group][], file: string): CompressedTensorsFp8 {
  const strategies = new Set<"channel" | "tensor">();
  const acts = new Set<CompressedTensorsFp8["activations"]>();
  for (const [name, g] of groups) {
    strategies.add(fp8Strategy(g.weights, file, `config_groups.${name}`));
    acts.add(fp8Activations(g.input_activations, file, `config_groups.${name}`));
  }
  return { method: "compressed-tensors", format: "float-quantized", strategies: [...strategies], activations: [...acts][0]! };
}

/**
 * Whether the checkpoint carries FP8 KV-cache scales (compressed-tensors' kv_cache_scheme: e4m3,
 * one static scale per tensor, as self_attn.k_scale and self_attn.v_scale of each layer). They are
 * used with --kv-cache-dtype fp8; any other scheme is refused naming its field.
 */
export function parseKvCacheScheme(raw: unknown, file: string): boolean {
  const scheme = (raw as { kv_cache_scheme?: unknown } | null | undefined)?.kv_cache_scheme;
  if (scheme == null) return false;
  const r = quantArgs.safeParse(scheme);
  if (!r.success) refuse(file, "kv_cache_scheme", scheme, "expected quantization arguments");
  const a = r.data;
  if (a.type !== "float" || a.num_bits !== 8) refuse(file, "kv_cache_scheme", { type: a.type, num_bits: a.num_bits }, "only an 8-bit float (e4m3) KV cache is supported");
  if (a.strategy != null && a.strategy !== "tensor") refuse(file, "kv_cache_scheme.strategy", a.strategy, "supported: tensor (one scale per layer for keys, one for values)");
  if (a.dynamic != null && a.dynamic !== false) refuse(file, "kv_cache_scheme.dynamic", a.dynamic, "only static KV-cache scales are supported");
  return true;
}

/** The checkpoint's quantization, or null for a plain float checkpoint. */
export function parseCheckpointQuantization(raw: unknown, file: string): CheckpointQuantization | null {
  if (raw == null) return null;
  const method = (raw as { quant_method?: unknown }).quant_method;
  if (method === "compressed-tensors" && (raw as { config_groups?: unknown }).config_groups == null && parseKvCacheScheme(raw, file)) return null; // KV scales only
  if (method === "gptq") return parseGptq(raw, file);
  if (method === "awq") return parseAwq(raw, file);
  if (method !== "compressed-tensors") {
    refuse(file, "quant_method", method ?? null, "supported pre-quantized checkpoints: compressed-tensors (FP8, W4A16, W8A16), gptq, awq (or load a float checkpoint with --quantization fp8)");
  }
  const r = compressedTensors.safeParse(raw);
  if (!r.success) refuse(file, "config_groups", (raw as { config_groups?: unknown }).config_groups ?? null, "expected a map of quantization groups");
  const q = r.data;
  if (q.format !== "float-quantized" && q.format !== "pack-quantized") refuse(file, "format", q.format ?? null, "supported: float-quantized, pack-quantized");
  const groups = Object.entries(q.config_groups);
  if (groups.length === 0) refuse(file, "config_groups", {}, "no quantization group");
  for (const [name, g] of groups)
    if (g.output_activations) refuse(file, `config_groups.${name}.output_activations`, g.output_activations, "output quantization is not supported");
  return q.format === "pack-quantized" ? parsePackQuantized(groups, file) : parseFloatQuantized(groups, file);
}
