import { describe, expect, test } from "bun:test";
import { parseConfig, type ModelConfig } from "./config.ts";
import { ModelDirError } from "./errors.ts";
import { errorOf } from "./testing.ts";

// config.json of meta-llama/Llama-3.1-8B as transformers 4.43 wrote it.
const LLAMA31_V4 = {
  architectures: ["LlamaForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: 128001,
  hidden_act: "silu",
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 14336,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: "llama",
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192, rope_type: "llama3" },
  rope_theta: 500000.0,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  transformers_version: "4.43.0.dev0",
  use_cache: true,
  vocab_size: 128256,
};

// The same model as transformers 5.x writes it: rope_parameters holds the theta, dtype replaces torch_dtype.
const LLAMA31_V5 = {
  architectures: ["LlamaForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  dtype: "bfloat16",
  eos_token_id: 128001,
  head_dim: 128,
  hidden_act: "silu",
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 14336,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: "llama",
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_parameters: {
    factor: 8.0,
    high_freq_factor: 4.0,
    low_freq_factor: 1.0,
    original_max_position_embeddings: 8192,
    rope_theta: 500000.0,
    rope_type: "llama3",
  },
  tie_word_embeddings: false,
  transformers_version: "5.0.0",
  use_cache: true,
  vocab_size: 128256,
};

// mistralai/Mistral-7B-Instruct-v0.3 (4.x), and its 5.x form.
const MISTRAL_V4 = {
  architectures: ["MistralForCausalLM"],
  attention_dropout: 0.0,
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: "silu",
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 14336,
  max_position_embeddings: 32768,
  model_type: "mistral",
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-5,
  rope_theta: 1000000.0,
  sliding_window: null,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  transformers_version: "4.42.0.dev0",
  use_cache: true,
  vocab_size: 32768,
};
const MISTRAL_V5 = {
  architectures: ["MistralForCausalLM"],
  bos_token_id: 1,
  dtype: "bfloat16",
  eos_token_id: 2,
  head_dim: null,
  hidden_act: "silu",
  hidden_size: 4096,
  intermediate_size: 14336,
  max_position_embeddings: 32768,
  model_type: "mistral",
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-5,
  rope_parameters: { rope_theta: 1000000.0, rope_type: "default" },
  sliding_window: null,
  tie_word_embeddings: false,
  transformers_version: "5.0.0",
  vocab_size: 32768,
};

// Qwen/Qwen2-0.5B (4.x), and its 5.x form.
const QWEN2_V4 = {
  architectures: ["Qwen2ForCausalLM"],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151643,
  hidden_act: "silu",
  hidden_size: 896,
  initializer_range: 0.02,
  intermediate_size: 4864,
  max_position_embeddings: 131072,
  max_window_layers: 24,
  model_type: "qwen2",
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 131072,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  transformers_version: "4.40.1",
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};
const QWEN2_V5 = {
  architectures: ["Qwen2ForCausalLM"],
  bos_token_id: 151643,
  dtype: "bfloat16",
  eos_token_id: 151643,
  hidden_act: "silu",
  hidden_size: 896,
  intermediate_size: 4864,
  layer_types: Array(24).fill("full_attention"),
  max_position_embeddings: 131072,
  max_window_layers: 24,
  model_type: "qwen2",
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_parameters: { rope_theta: 1000000.0, rope_type: "default" },
  sliding_window: null,
  tie_word_embeddings: true,
  transformers_version: "5.0.0",
  use_sliding_window: false,
  vocab_size: 151936,
};

const LLAMA31_EXPECTED: ModelConfig = {
  architecture: "LlamaForCausalLM",
  hiddenSize: 4096,
  intermediateSize: 14336,
  numLayers: 32,
  numHeads: 32,
  numKvHeads: 8,
  headDim: 128,
  vocabSize: 128256,
  rmsNormEps: 1e-5,
  ropeTheta: 500000,
  rope: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
  maxPositionEmbeddings: 131072,
  tieWordEmbeddings: false,
  qkvBias: false,
  dtype: "bfloat16",
  quantization: null,
  kvCacheScales: false,
  bosTokenId: 128000,
  eosTokenIds: [128001],
};


describe("parseConfig: real configs", () => {
  test("Llama-3.1-8B (4.x) gives llama3 rope scaling", () => {
    expect(parseConfig(LLAMA31_V4, "config.json")).toEqual(LLAMA31_EXPECTED);
  });

  test("Mistral-7B-v0.3 (4.x): head_dim from hidden/heads, no bias, default rope", () => {
    const cfg = parseConfig(MISTRAL_V4, "config.json");
    expect(cfg).toMatchObject({ architecture: "MistralForCausalLM", headDim: 128, numKvHeads: 8, ropeTheta: 1e6 });
    expect(cfg.rope).toEqual({ type: "default" });
    expect(cfg.qkvBias).toBe(false);
    expect(cfg.eosTokenIds).toEqual([2]);
  });

  test("Qwen2-0.5B (4.x): qkv bias, tied embeddings, sliding window unused", () => {
    const cfg = parseConfig(QWEN2_V4, "config.json");
    expect(cfg).toMatchObject({ architecture: "Qwen2ForCausalLM", headDim: 64, numKvHeads: 2, rmsNormEps: 1e-6 });
    expect(cfg.qkvBias).toBe(true);
    expect(cfg.tieWordEmbeddings).toBe(true);
  });

  test.each([
    ["Llama-3.1-8B", LLAMA31_V4, LLAMA31_V5],
    ["Mistral-7B-v0.3", MISTRAL_V4, MISTRAL_V5],
    ["Qwen2-0.5B", QWEN2_V4, QWEN2_V5],
  ])("%s: the 5.x config equals the 4.x one", (_name, v4, v5) => {
    expect(parseConfig(v5, "config.json")).toEqual(parseConfig(v4, "config.json"));
  });

  test("rope_scaling with the old 'type' key and linear scaling", () => {
    const cfg = parseConfig({ ...MISTRAL_V4, architectures: ["LlamaForCausalLM"], rope_scaling: { type: "linear", factor: 2.0 } }, "c.json");
    expect(cfg.rope).toEqual({ type: "linear", factor: 2 });
  });

  test("defaults: kv heads = heads, rope_theta 10000, float32, no tokens", () => {
    const { num_key_value_heads, rope_theta, torch_dtype, bos_token_id, eos_token_id, ...rest } = MISTRAL_V4;
    const cfg = parseConfig(rest, "config.json");
    expect(cfg).toMatchObject({ numKvHeads: 32, ropeTheta: 10000, dtype: "float32", bosTokenId: null, eosTokenIds: [] });
  });

  test("eos_token_id list is kept without duplicates; attention_bias turns on Llama qkv bias", () => {
    const cfg = parseConfig({ ...LLAMA31_V4, eos_token_id: [128001, 128008, 128009, 128008], attention_bias: true }, "c.json");
    expect(cfg.eosTokenIds).toEqual([128001, 128008, 128009]);
    expect(cfg.qkvBias).toBe(true);
  });
});

describe("parseConfig: errors name the file and the field", () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["unknown architecture", { ...LLAMA31_V4, architectures: ["GPT2LMHeadModel"] }, /'architectures'.*GPT2LMHeadModel.*LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM/],
    ["missing field", { ...LLAMA31_V4, hidden_size: undefined }, /missing required field 'hidden_size'/],
    ["wrong type", { ...LLAMA31_V4, num_hidden_layers: "32" }, /'num_hidden_layers'.*"32"/],
    ["yarn (4.x)", { ...LLAMA31_V4, rope_scaling: { rope_type: "yarn", factor: 4 } }, /rope type 'yarn' in config.json \(rope_scaling.rope_type\) is not supported yet/],
    ["dynamic (old key)", { ...LLAMA31_V4, rope_scaling: { type: "dynamic", factor: 2 } }, /rope type 'dynamic'.*\(rope_scaling.type\)/],
    ["longrope (5.x)", { ...LLAMA31_V5, rope_parameters: { rope_type: "longrope", rope_theta: 1e4 } }, /'longrope'.*\(rope_parameters.rope_type\)/],
    ["llama3 without factor", { ...LLAMA31_V4, rope_scaling: { ...LLAMA31_V4.rope_scaling, factor: undefined } }, /missing required field 'rope_scaling.factor'/],
    ["Mistral sliding window", { ...MISTRAL_V4, sliding_window: 4096 }, /'sliding_window' is 4096.*not supported/],
    ["Qwen2 use_sliding_window", { ...QWEN2_V4, use_sliding_window: true, sliding_window: 4096 }, /'use_sliding_window'/],
    ["mlp_bias", { ...LLAMA31_V4, mlp_bias: true }, /'mlp_bias'/],
    ["hidden_act", { ...LLAMA31_V4, hidden_act: "gelu" }, /'hidden_act' is 'gelu'/],
    ["kv heads", { ...LLAMA31_V4, num_key_value_heads: 5 }, /'num_attention_heads' \(32\).*'num_key_value_heads' \(5\)/],
    ["dtype", { ...LLAMA31_V4, torch_dtype: "int8" }, /'torch_dtype' is 'int8'/],
    ["partial rotary", { ...LLAMA31_V4, partial_rotary_factor: 0.5 }, /'partial_rotary_factor'/],
    ["a bitsandbytes checkpoint", { ...LLAMA31_V4, quantization_config: { quant_method: "bitsandbytes", load_in_4bit: true } }, /'quantization_config.quant_method' is "bitsandbytes": supported pre-quantized checkpoints: compressed-tensors \(FP8, W4A16, W8A16\), gptq, awq/],
  ];
  test.each(cases)("%s", (_name, json, pattern) => {
    const err = errorOf(() => parseConfig(JSON.parse(JSON.stringify(json)), "models/x/config.json"));
    expect(err.file).toBe("models/x/config.json");
    expect(err.message).toStartWith("models/x/config.json: ");
    expect(err.message).toMatch(pattern);
  });

  test("a top level that is not an object", () => {
    expect(errorOf(() => parseConfig([1, 2], "config.json")).message).toMatch(/config.json: expected a JSON object/);
  });
});
