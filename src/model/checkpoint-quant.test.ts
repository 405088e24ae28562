import { describe, expect, test } from "bun:test";
import { parseCheckpointQuantization } from "./checkpoint-quant.ts";
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

const group = (over: object) => ({ ...FP8_DYNAMIC, config_groups: { group_0: { ...FP8_DYNAMIC.config_groups.group_0, ...over } } });

describe("parseCheckpointQuantization", () => {
  test("no quantization_config: a float checkpoint", () => {
    expect(parseCheckpointQuantization(undefined, "config.json")).toBeNull();
  });

  test("GPTQ: bits, group size (-1: the whole row), and whether zeros are stored minus one", () => {
    const autoGptq = { quant_method: "gptq", bits: 4, group_size: 128, desc_act: false, sym: true, damp_percent: 0.01, static_groups: false, true_sequential: true };
    expect(parseCheckpointQuantization(autoGptq, "config.json")).toEqual({ method: "gptq", bits: 4, groupSize: 128, zerosMinusOne: true });
    expect(parseCheckpointQuantization({ ...autoGptq, bits: 8, group_size: -1, checkpoint_format: "gptq_v2" }, "config.json"))
      .toEqual({ method: "gptq", bits: 8, groupSize: null, zerosMinusOne: false });
  });

  test("compressed-tensors FP8, per channel or per tensor, dynamic or static activations", () => {
    expect(parseCheckpointQuantization(FP8_DYNAMIC, "config.json")).toEqual({ method: "compressed-tensors", strategies: ["channel"], activations: "dynamic" });
    const fp8Static = group({
      weights: { ...FP8_DYNAMIC.config_groups.group_0.weights, strategy: "tensor" },
      input_activations: { ...FP8_DYNAMIC.config_groups.group_0.input_activations, strategy: "tensor", dynamic: false },
    });
    expect(parseCheckpointQuantization(fp8Static, "config.json")).toEqual({ method: "compressed-tensors", strategies: ["tensor"], activations: "static" });
  });

  const refused: [string, unknown, RegExp][] = [
    ["GPTQ with act-order", { quant_method: "gptq", bits: 4, group_size: 128, desc_act: true }, /'quantization_config.desc_act' is true: act-order/],
    ["3-bit GPTQ", { quant_method: "gptq", bits: 3, group_size: 128 }, /'quantization_config.bits' is 3/],
    ["AWQ", { quant_method: "awq", bits: 4 }, /'quantization_config.quant_method' is "awq"/],
    ["W4A16 pack-quantized", { ...FP8_DYNAMIC, format: "pack-quantized" }, /'quantization_config.format' is "pack-quantized"/],
    ["int8 weights", group({ weights: { ...FP8_DYNAMIC.config_groups.group_0.weights, type: "int" } }), /'quantization_config.config_groups.group_0.weights' is .*only 8-bit float/],
    ["group-wise FP8", group({ weights: { ...FP8_DYNAMIC.config_groups.group_0.weights, strategy: "group", group_size: 128 } }), /weights.strategy' is "group"/],
    ["an FP8 KV cache", { ...FP8_DYNAMIC, kv_cache_scheme: { num_bits: 8, type: "float" } }, /'quantization_config.kv_cache_scheme'/],
  ];
  test.each(refused)("%s is refused naming the field and its value", (_name, raw, pattern) => {
    const e = errorOf(() => parseCheckpointQuantization(raw, "models/x/config.json"));
    expect(e).toBeInstanceOf(ModelDirError);
    expect(e.file).toBe("models/x/config.json");
    expect(e.message).toMatch(pattern);
  });
});
