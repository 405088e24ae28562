import { describe, expect, test } from "bun:test";
import { parseCheckpointQuantization, parseKvCacheScheme } from "./checkpoint-quant.ts";
import { ModelDirError } from "./errors.ts";
import { errorOf } from "./testing.ts";

// quantization_config of an llm-compressor FP8-dynamic checkpoint (e.g. neuralmagic's Llama 3 FP8s).
const FP8_DYNAMIC = {
  quant_method: "compressed-tensors", format: "float-quantized", quantization_status: "compressed", ignore: ["lm_head"],
  kv_cache_scheme: null, global_compression_ratio: 1.24,
  config_groups: {
    group_0: {
      targets: ["Linear"], output_activations: null,
      weights: { num_bits: 8, type: "float", symmetric: true, strategy: "channel", dynamic: false, group_size: null, block_structure: null, observer: "minmax", observer_kwargs: {} },
      input_activations: { num_bits: 8, type: "float", symmetric: true, strategy: "token", dynamic: true, group_size: null, block_structure: null, observer: null, observer_kwargs: {} },
    },
  },
};

// quantization_config of an llm-compressor W4A16 checkpoint (the GPTQ or RTN modifier's W4A16 scheme).
const W4A16 = {
  quant_method: "compressed-tensors", format: "pack-quantized", quantization_status: "compressed", ignore: ["lm_head"],
  kv_cache_scheme: null, global_compression_ratio: 3.1,
  config_groups: {
    group_0: {
      targets: ["Linear"], input_activations: null, output_activations: null,
      weights: { num_bits: 4, type: "int", symmetric: true, strategy: "group", group_size: 128, dynamic: false, actorder: null, block_structure: null, observer: "minmax", observer_kwargs: {} },
    },
  },
};
const intWeights = (over: object) => ({ ...W4A16, config_groups: { group_0: { ...W4A16.config_groups.group_0, weights: { ...W4A16.config_groups.group_0.weights, ...over } } } });

const group = (over: object) => ({ ...FP8_DYNAMIC, config_groups: { group_0: { ...FP8_DYNAMIC.config_groups.group_0, ...over } } });

describe("parseCheckpointQuantization", () => {
  test("no quantization_config: a float checkpoint", () => {
    expect(parseCheckpointQuantization(undefined, "config.json")).toBeNull();
  });

  test("GPTQ: bits, group size (-1: the whole row), and whether zeros are stored minus one", () => {
    const autoGptq = { quant_method: "gptq", bits: 4, group_size: 128, desc_act: false, sym: true, damp_percent: 0.01, static_groups: false, true_sequential: true };
    expect(parseCheckpointQuantization(autoGptq, "config.json")).toEqual({ method: "gptq", bits: 4, groupSize: 128, zerosMinusOne: true, actOrder: false });
    expect(parseCheckpointQuantization({ ...autoGptq, bits: 8, group_size: -1, checkpoint_format: "gptq_v2", desc_act: true }, "config.json"))
      .toEqual({ method: "gptq", bits: 8, groupSize: null, zerosMinusOne: false, actOrder: true });
  });

  test("compressed-tensors FP8, per channel or per tensor, dynamic or static activations", () => {
    expect(parseCheckpointQuantization(FP8_DYNAMIC, "config.json")).toEqual({ method: "compressed-tensors", format: "float-quantized", strategies: ["channel"], activations: "dynamic" });
    const fp8Static = group({
      weights: { ...FP8_DYNAMIC.config_groups.group_0.weights, strategy: "tensor" },
      input_activations: { ...FP8_DYNAMIC.config_groups.group_0.input_activations, strategy: "tensor", dynamic: false },
    });
    expect(parseCheckpointQuantization(fp8Static, "config.json")).toEqual({ method: "compressed-tensors", format: "float-quantized", strategies: ["tensor"], activations: "static" });
  });

  test("AWQ: AutoAWQ's GEMM layout, group size (-1: the whole row), as config.json or quant_config.json names them", () => {
    const autoAwq = { quant_method: "awq", zero_point: true, group_size: 128, bits: 4, version: "gemm", modules_to_not_convert: null };
    expect(parseCheckpointQuantization(autoAwq, "config.json")).toEqual({ method: "awq", bits: 4, groupSize: 128 });
    expect(parseCheckpointQuantization({ quant_method: "awq", zero_point: true, q_group_size: -1, w_bit: 4, version: "GEMM" }, "config.json"))
      .toEqual({ method: "awq", bits: 4, groupSize: null });
  });

  test("compressed-tensors pack-quantized: bits, group size (null: per channel), symmetry", () => {
    expect(parseCheckpointQuantization(W4A16, "config.json")).toEqual({ method: "compressed-tensors", format: "pack-quantized", bits: 4, groupSize: 128, symmetric: true, actOrder: false });
    expect(parseCheckpointQuantization(intWeights({ num_bits: 8, strategy: "channel", group_size: null, symmetric: false, actorder: "weight" }), "config.json"))
      .toEqual({ method: "compressed-tensors", format: "pack-quantized", bits: 8, groupSize: null, symmetric: false, actOrder: false });
    expect(parseCheckpointQuantization(intWeights({ actorder: "group" }), "config.json")).toMatchObject({ groupSize: 128, actOrder: true });
    const twoGroups = { ...W4A16, config_groups: { group_0: W4A16.config_groups.group_0, group_1: { ...W4A16.config_groups.group_0, targets: ["re:.*down_proj"] } } };
    expect(parseCheckpointQuantization(twoGroups, "config.json")).toMatchObject({ format: "pack-quantized", bits: 4 });
  });

  const refused: [string, unknown, RegExp][] = [
    ["3-bit GPTQ", { quant_method: "gptq", bits: 3, group_size: 128 }, /'quantization_config.bits' is 3/],
    ["AWQ's GEMV layout", { quant_method: "awq", bits: 4, group_size: 128, zero_point: true, version: "gemv" }, /'quantization_config.version' is "gemv": supported: gemm/],
    ["8-bit AWQ", { quant_method: "awq", bits: 8, group_size: 128, version: "gemm" }, /'quantization_config.bits' is 8: AWQ checkpoints are 4-bit/],
    ["AWQ without zero points", { quant_method: "awq", bits: 4, group_size: 128, zero_point: false }, /'quantization_config.zero_point' is false/],
    ["AWQ without a group size", { quant_method: "awq", bits: 4 }, /'quantization_config.group_size' is null/],
    ["bitsandbytes", { quant_method: "bitsandbytes", load_in_4bit: true }, /'quantization_config.quant_method' is "bitsandbytes"/],
    ["a sparse format", { ...W4A16, format: "sparse-24-bitmask" }, /'quantization_config.format' is "sparse-24-bitmask"/],
    ["int8 weights in a float-quantized checkpoint", group({ weights: { ...FP8_DYNAMIC.config_groups.group_0.weights, type: "int" } }), /'quantization_config.config_groups.group_0.weights' is .*must be 8-bit float/],
    ["FP8 weights in a pack-quantized checkpoint", { ...FP8_DYNAMIC, format: "pack-quantized" }, /'quantization_config.config_groups.group_0.weights' is .*must be 4- or 8-bit integers/],
    ["2-bit integers", intWeights({ num_bits: 2 }), /group_0.weights' is \{"type":"int","num_bits":2\}/],
    ["a group strategy without a size", intWeights({ group_size: null }), /group_0.weights.group_size' is null/],
    ["per-tensor integers", intWeights({ strategy: "tensor" }), /group_0.weights.strategy' is "tensor"/],
    ["an unknown act-order", intWeights({ actorder: "dynamic" }), /group_0.weights.actorder' is "dynamic": supported: group, weight, static/],
    ["group act-order per channel", intWeights({ actorder: "group", strategy: "channel", group_size: null }), /group_0.weights.actorder' is "group": act-order "group" needs the group strategy/],
    ["W8A8 integers", { ...W4A16, config_groups: { group_0: { ...W4A16.config_groups.group_0, input_activations: { num_bits: 8, type: "int", dynamic: true } } } }, /group_0.input_activations' is .*W8A8/],
    ["two integer schemes", { ...W4A16, config_groups: { a: W4A16.config_groups.group_0, b: intWeights({ group_size: 64 }).config_groups.group_0 } }, /config_groups.b.weights' is .*differs from config_groups.a/],
    ["group-wise FP8", group({ weights: { ...FP8_DYNAMIC.config_groups.group_0.weights, strategy: "group", group_size: 128 } }), /weights.strategy' is "group"/],
  ];
  test("an e4m3 KV-cache scheme: its scales are read, alone or beside quantized weights", () => {
    const kv = { num_bits: 8, type: "float", strategy: "tensor", dynamic: false, symmetric: true };
    expect(parseKvCacheScheme({ ...FP8_DYNAMIC, kv_cache_scheme: kv }, "config.json")).toBe(true);
    expect(parseCheckpointQuantization({ ...FP8_DYNAMIC, kv_cache_scheme: kv }, "config.json")).toMatchObject({ format: "float-quantized" });
    const kvOnly = { quant_method: "compressed-tensors", format: "float-quantized", kv_cache_scheme: kv };
    expect(parseCheckpointQuantization(kvOnly, "config.json")).toBeNull();
    expect(parseKvCacheScheme(kvOnly, "config.json")).toBe(true);
    expect(parseKvCacheScheme(FP8_DYNAMIC, "config.json")).toBe(false);
    expect(parseKvCacheScheme(null, "config.json")).toBe(false);
    const kvErr = (scheme: unknown) => errorOf(() => parseKvCacheScheme({ ...FP8_DYNAMIC, kv_cache_scheme: scheme }, "m/config.json")).message;
    expect(kvErr({ ...kv, type: "int" })).toMatch(/'quantization_config.kv_cache_scheme' is \{"type":"int","num_bits":8\}: only an 8-bit float/);
    expect(kvErr({ ...kv, strategy: "channel" })).toMatch(/kv_cache_scheme.strategy' is "channel"/);
    expect(kvErr({ ...kv, dynamic: true })).toMatch(/kv_cache_scheme.dynamic' is true: only static/);
  });

  test.each(refused)("%s is refused naming the field and its value", (_name, raw, pattern) => {
    const e = errorOf(() => parseCheckpointQuantization(raw, "models/x/config.json"));
    expect(e).toBeInstanceOf(ModelDirError);
    expect(e.file).toBe("models/x/config.json");
    expect(e.message).toMatch(pattern);
  });
});
