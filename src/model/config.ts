// config.json -> ModelConfig. Accepts what transformers 4.x writes (rope_theta, rope_scaling with
// "type" or "rope_type", torch_dtype) and what 5.x writes (rope_parameters, dtype). Anything the
// forward pass cannot honour yet is refused here, naming the field, rather than silently ignored.
import { z } from "zod";
import { parseCheckpointQuantization, parseKvCacheScheme, type CheckpointQuantization } from "./checkpoint-quant.ts";
import { ModelDirError, zodToModelDirError } from "./errors.ts";

export const SUPPORTED_ARCHITECTURES = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"] as const;
export type Architecture = (typeof SUPPORTED_ARCHITECTURES)[number];

export type RopeScaling =
  | { type: "default" }
  | { type: "llama3"; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number }
  | { type: "linear"; factor: number };

export type ConfigDtype = "float32" | "float16" | "bfloat16";

export interface ModelConfig {
  architecture: Architecture;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  rope: RopeScaling;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  qkvBias: boolean;
  dtype: ConfigDtype;
  /** A pre-quantized checkpoint's scheme (its quantization_config), or null. */
  quantization: CheckpointQuantization | null;
  /** Whether each layer has FP8 KV-cache scales (self_attn.k_scale, self_attn.v_scale), for --kv-cache-dtype fp8. */
  kvCacheScales: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

// transformers' own default when a config has no rope_theta anywhere (Llama, Mistral and Qwen2 agree).
const DEFAULT_ROPE_THETA = 10000;
const MODEL_TYPE_ARCHITECTURE: Record<string, Architecture> = {
  llama: "LlamaForCausalLM",
  mistral: "MistralForCausalLM",
  qwen2: "Qwen2ForCausalLM",
};

const positiveInt = z.int().positive();
const tokenId = z.int().nonnegative();
export const tokenIdsSchema = z
  .union([tokenId, z.array(tokenId)], { error: "expected a token id or a list of token ids" })
  .nullish();

const rawConfigSchema = z.looseObject({
  hidden_size: positiveInt,
  intermediate_size: positiveInt,
  num_hidden_layers: positiveInt,
  num_attention_heads: positiveInt,
  num_key_value_heads: positiveInt.nullish(),
  head_dim: positiveInt.nullish(),
  vocab_size: positiveInt,
  rms_norm_eps: z.number().positive(),
  max_position_embeddings: positiveInt,
  rope_theta: z.number().positive().nullish(),
  rope_scaling: z.looseObject({}).nullish(),
  rope_parameters: z.looseObject({}).nullish(),
  partial_rotary_factor: z.number().nullish(),
  tie_word_embeddings: z.boolean().nullish(),
  attention_bias: z.boolean().nullish(),
  mlp_bias: z.boolean().nullish(),
  hidden_act: z.string().nullish(),
  sliding_window: z.int().nullish(),
  use_sliding_window: z.boolean().nullish(),
  torch_dtype: z.string().nullish(),
  dtype: z.string().nullish(),
  bos_token_id: tokenId.nullish(),
  eos_token_id: tokenIdsSchema,
  quantization_config: z.unknown().nullish(),
});
type RawConfig = z.infer<typeof rawConfigSchema>;

const ropeHeaderSchema = z.looseObject({
  rope_type: z.string().nullish(),
  type: z.string().nullish(),
  rope_theta: z.number().positive().nullish(),
  partial_rotary_factor: z.number().nullish(),
});
const linearSchema = z.looseObject({ factor: z.number().positive() });
const llama3Schema = z.looseObject({
  factor: z.number().positive(),
  low_freq_factor: z.number().positive(),
  high_freq_factor: z.number().positive(),
  original_max_position_embeddings: positiveInt,
});

function parseWith<T extends z.ZodType>(schema: T, json: unknown, file: string, prefix: string[] = []): z.infer<T> {
  const result = schema.safeParse(json);
  if (!result.success) throw zodToModelDirError(file, result.error, json, prefix);
  return result.data;
}

function readArchitecture(raw: Record<string, unknown>, file: string): Architecture {
  const supported = SUPPORTED_ARCHITECTURES.join(", ");
  const names = raw.architectures;
  if (names === undefined || names === null) {
    const fromType = typeof raw.model_type === "string" ? MODEL_TYPE_ARCHITECTURE[raw.model_type] : undefined;
    if (fromType) return fromType;
    throw new ModelDirError(file, `missing field 'architectures' (supported: ${supported})`);
  }
  if (!Array.isArray(names) || names.some((n) => typeof n !== "string")) {
    throw new ModelDirError(file, `field 'architectures' must be a list of strings, got ${JSON.stringify(names)}`);
  }
  const found = names.find((n): n is Architecture => (SUPPORTED_ARCHITECTURES as readonly string[]).includes(n));
  if (found) return found;
  throw new ModelDirError(
    file,
    `field 'architectures' is ${JSON.stringify(names)}, which is not supported; supported architectures: ${supported}`,
  );
}

/** rope_parameters (5.x) wins over rope_scaling (4.x); the theta may sit inside either or at top level. */
function parseRope(raw: RawConfig, file: string): { ropeTheta: number; rope: RopeScaling } {
  const source = raw.rope_parameters != null ? "rope_parameters" : raw.rope_scaling != null ? "rope_scaling" : null;
  if (source === null) return { ropeTheta: raw.rope_theta ?? DEFAULT_ROPE_THETA, rope: { type: "default" } };
  const params: unknown = raw[source];
  const header = parseWith(ropeHeaderSchema, params, file, [source]);
  const ropeTheta = header.rope_theta ?? raw.rope_theta ?? DEFAULT_ROPE_THETA;
  checkFullRotary(header.partial_rotary_factor, `${source}.partial_rotary_factor`, file);
  const typeField = header.rope_type != null ? `${source}.rope_type` : `${source}.type`;
  const ropeType = header.rope_type ?? header.type ?? "default";
  switch (ropeType) {
    case "default":
      return { ropeTheta, rope: { type: "default" } };
    case "linear":
      return { ropeTheta, rope: { type: "linear", factor: parseWith(linearSchema, params, file, [source]).factor } };
    case "llama3":
      return { ropeTheta, rope: parseLlama3(params, file, source) };
    default:
      throw new ModelDirError(file, `rope type '${ropeType}' in config.json (${typeField}) is not supported yet`);
  }
}

function parseLlama3(params: unknown, file: string, source: string): RopeScaling {
  const p = parseWith(llama3Schema, params, file, [source]);
  if (p.high_freq_factor <= p.low_freq_factor) {
    throw new ModelDirError(
      file,
      `field '${source}.high_freq_factor' (${p.high_freq_factor}) must be greater than '${source}.low_freq_factor' (${p.low_freq_factor})`,
    );
  }
  return {
    type: "llama3",
    factor: p.factor,
    lowFreqFactor: p.low_freq_factor,
    highFreqFactor: p.high_freq_factor,
    originalMaxPositionEmbeddings: p.original_max_position_embeddings,
  };
}

function checkFullRotary(factor: number | null | undefined, field: string, file: string): void {
  if (factor != null && factor !== 1) {
    throw new ModelDirError(file, `field '${field}' is ${factor}: partial rotary embeddings are not supported yet`);
  }
}

/** Features of these architectures that the forward pass does not implement (yet). */
function checkSupportedFeatures(raw: RawConfig, arch: Architecture, file: string): void {
  if (raw.hidden_act != null && raw.hidden_act !== "silu") {
    throw new ModelDirError(file, `field 'hidden_act' is '${raw.hidden_act}': only 'silu' is supported`);
  }
  if (raw.mlp_bias === true) {
    throw new ModelDirError(file, `field 'mlp_bias' is true: MLP biases are not supported`);
  }
  checkFullRotary(raw.partial_rotary_factor, "partial_rotary_factor", file);
  const window = raw.sliding_window;
  const windowLimits = window != null && window < raw.max_position_embeddings;
  if (arch === "MistralForCausalLM" && windowLimits) {
    throw new ModelDirError(
      file,
      `field 'sliding_window' is ${window}, below max_position_embeddings (${raw.max_position_embeddings}): sliding-window attention is not supported yet`,
    );
  }
  if (arch === "Qwen2ForCausalLM" && raw.use_sliding_window === true && windowLimits) {
    throw new ModelDirError(file, `field 'use_sliding_window' is true: sliding-window attention is not supported yet`);
  }
}

function parseDtype(raw: RawConfig, file: string): ConfigDtype {
  const field = raw.dtype != null ? "dtype" : "torch_dtype";
  // transformers loads a config without a dtype in float32.
  const value = raw.dtype ?? raw.torch_dtype ?? "float32";
  if (value === "float32" || value === "float16" || value === "bfloat16") return value;
  throw new ModelDirError(file, `field '${field}' is '${value}'; supported: float32, float16, bfloat16`);
}

/** Number, list or null as HF writes token ids -> a list without duplicates, order kept. */
export function tokenIdList(value: number | number[] | null | undefined): number[] {
  if (value == null) return [];
  return [...new Set(Array.isArray(value) ? value : [value])];
}

function attentionShape(raw: RawConfig, file: string): { numKvHeads: number; headDim: number } {
  const heads = raw.num_attention_heads;
  const numKvHeads = raw.num_key_value_heads ?? heads;
  if (heads % numKvHeads !== 0) {
    throw new ModelDirError(
      file,
      `field 'num_attention_heads' (${heads}) must be a multiple of 'num_key_value_heads' (${numKvHeads})`,
    );
  }
  if (raw.head_dim == null && raw.hidden_size % heads !== 0) {
    throw new ModelDirError(
      file,
      `field 'head_dim' is absent and 'hidden_size' (${raw.hidden_size}) is not a multiple of 'num_attention_heads' (${heads})`,
    );
  }
  const headDim = raw.head_dim ?? raw.hidden_size / heads;
  if (headDim % 2 !== 0) throw new ModelDirError(file, `head dimension ${headDim} must be even for rotary embeddings`);
  return { numKvHeads, headDim };
}

/** Validates a parsed config.json; `file` is how errors name it. */
export function parseConfig(json: unknown, file: string): ModelConfig {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new ModelDirError(file, `expected a JSON object at the top level, got ${JSON.stringify(json)}`);
  }
  const architecture = readArchitecture(json as Record<string, unknown>, file);
  const raw = parseWith(rawConfigSchema, json, file);
  checkSupportedFeatures(raw, architecture, file);
  const { ropeTheta, rope } = parseRope(raw, file);
  const { numKvHeads, headDim } = attentionShape(raw, file);
  return {
    architecture,
    hiddenSize: raw.hidden_size,
    intermediateSize: raw.intermediate_size,
    numLayers: raw.num_hidden_layers,
    numHeads: raw.num_attention_heads,
    numKvHeads,
    headDim,
    vocabSize: raw.vocab_size,
    rmsNormEps: raw.rms_norm_eps,
    ropeTheta,
    rope,
    maxPositionEmbeddings: raw.max_position_embeddings,
    tieWordEmbeddings: raw.tie_word_embeddings ?? false,
    // Qwen2 always has q/k/v biases; Mistral never does; Llama says so in attention_bias.
    qkvBias: architecture === "Qwen2ForCausalLM" || (architecture === "LlamaForCausalLM" && raw.attention_bias === true),
    dtype: parseDtype(raw, file),
    quantization: parseCheckpointQuantization(raw.quantization_config, file),
    kvCacheScales: parseKvCacheScheme(raw.quantization_config, file),
    bosTokenId: raw.bos_token_id ?? null,
    eosTokenIds: tokenIdList(raw.eos_token_id),
  };
}
