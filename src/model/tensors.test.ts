import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TINY_LLAMA_CONFIG, writeTinyModelDir } from "../../test/helpers/model-dir-writer.ts";
import { parseConfig, type ModelConfig } from "./config.ts";
import { ModelDirError } from "./errors.ts";
import { indexTensors } from "./safetensors.ts";
import { checkTensors, expectedTensors } from "./tensors.ts";
import { errorOf } from "./testing.ts";

const root = mkdtempSync(join(tmpdir(), "vllmd-tensors-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

// Every dimension different, and head_dim not hidden/heads, so a swapped dimension shows.
const QWEN_LIKE: ModelConfig = parseConfig(
  {
    architectures: ["Qwen2ForCausalLM"],
    hidden_size: 8,
    intermediate_size: 12,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    head_dim: 6,
    vocab_size: 10,
    rms_norm_eps: 1e-6,
    max_position_embeddings: 32,
    tie_word_embeddings: true,
  },
  "config.json",
);


describe("expectedTensors", () => {
  test("names and [out, in] shapes of a layer, with qkv bias and tied embeddings", () => {
    const all = expectedTensors(QWEN_LIKE);
    const byName = new Map(all.map((t) => [t.name, t.shape]));
    expect(byName.get("model.embed_tokens.weight")).toEqual([10, 8]);
    const layer1 = all.filter((t) => t.name.startsWith("model.layers.1."));
    expect(Object.fromEntries(layer1.map((t) => [t.name.slice("model.layers.1.".length), t.shape]))).toEqual({
      "input_layernorm.weight": [8],
      "self_attn.q_proj.weight": [12, 8],
      "self_attn.k_proj.weight": [6, 8],
      "self_attn.v_proj.weight": [6, 8],
      "self_attn.q_proj.bias": [12],
      "self_attn.k_proj.bias": [6],
      "self_attn.v_proj.bias": [6],
      "self_attn.o_proj.weight": [8, 12],
      "post_attention_layernorm.weight": [8],
      "mlp.gate_proj.weight": [12, 8],
      "mlp.up_proj.weight": [12, 8],
      "mlp.down_proj.weight": [8, 12],
    });
    expect(byName.get("model.norm.weight")).toEqual([8]);
    expect(byName.has("lm_head.weight")).toBe(false);
    expect(all.length).toBe(1 + 2 * 12 + 1);
  });

  test("untied Llama without bias has lm_head and no biases", () => {
    const names = expectedTensors({ ...QWEN_LIKE, architecture: "LlamaForCausalLM", qkvBias: false, tieWordEmbeddings: false }).map((t) => t.name);
    expect(names.at(-1)).toBe("lm_head.weight");
    expect(names.some((n) => n.endsWith(".bias"))).toBe(false);
  });
});

describe("checkTensors", () => {
  const llamaCfg = parseConfig(TINY_LLAMA_CONFIG, "config.json");

  test("a complete directory passes, extra tensors are ignored", () => {
    const m = writeTinyModelDir(join(root, "ok"), { architectures: ["Qwen2ForCausalLM"], tie_word_embeddings: true });
    const tensors = indexTensors(m.dir);
    const extra = { ...tensors.get("model.norm.weight")!, name: "model.layers.0.self_attn.rotary_emb.inv_freq" };
    tensors.set(extra.name, extra);
    expect(() => checkTensors(parseConfig(m.config, "config.json"), tensors, m.dir)).not.toThrow();
  });

  test("a missing tensor is named, with the directory", () => {
    const dir = join(root, "missing");
    writeTinyModelDir(dir, {}, { dropTensor: "model.layers.1.mlp.up_proj.weight" });
    const err = errorOf(() => checkTensors(llamaCfg, indexTensors(dir), dir));
    expect(err.file).toBe(dir);
    expect(err.message).toContain("missing tensor 'model.layers.1.mlp.up_proj.weight' (expected shape [32, 16])");
  });

  test("a missing tensor of a sharded checkpoint names the index", () => {
    const dir = join(root, "missing-sharded");
    writeTinyModelDir(dir, {}, { shards: 2, dropTensor: "lm_head.weight" });
    const err = errorOf(() => checkTensors(llamaCfg, indexTensors(dir), dir));
    expect(err.file).toBe(join(dir, "model.safetensors.index.json"));
    expect(err.message).toMatch(/missing tensor 'lm_head.weight'.*tie_word_embeddings false/);
  });

  test("a tensor of the wrong shape names its file, the expected and the actual shape", () => {
    const dir = join(root, "shape");
    const m = writeTinyModelDir(dir, {}, { shards: 2, wrongShape: "model.layers.0.self_attn.k_proj.weight" });
    const tensors = indexTensors(dir);
    const err = errorOf(() => checkTensors(llamaCfg, tensors, dir));
    expect(err.file).toBe(tensors.get("model.layers.0.self_attn.k_proj.weight")!.file);
    expect(m.files.some((f) => err.file.endsWith(f))).toBe(true);
    expect(err.message).toContain("tensor 'model.layers.0.self_attn.k_proj.weight' has shape [9, 16], expected [8, 16]");
  });
});
