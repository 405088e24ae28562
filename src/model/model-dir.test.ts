import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decode, writeRawSafetensors, writeTinyModelDir, type WriterDtype } from "../../test/helpers/model-dir-writer.ts";
import { ModelDirError } from "./errors.ts";
import { loadModelDir } from "./model-dir.ts";
import { errorOf } from "./testing.ts";

const root = mkdtempSync(join(tmpdir(), "vllmd-modeldir-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;
const freshDir = (): string => join(root, `m${counter++}`);


describe("loadModelDir", () => {
  test.each(["F32", "F16", "BF16"] as WriterDtype[])("%s: every tensor's offset points at the weights written", (dtype) => {
    const m = writeTinyModelDir(freshDir(), {}, { dtype, shards: 2 });
    const loaded = loadModelDir(m.dir);
    expect(loaded.tensors.size).toBe(m.tensors.size);
    for (const [name, written] of m.tensors) {
      const info = loaded.tensors.get(name)!;
      expect(info.dtype).toBe(dtype);
      const bytes = new Uint8Array(readFileSync(info.file));
      const size = written.data.length * (dtype === "F32" ? 4 : 2);
      expect(decode(bytes.subarray(info.dataOffset, info.dataOffset + size), dtype)).toEqual(written.data);
    }
  });

  test("a tied Qwen2 with qkv bias loads; config and generation defaults", () => {
    const m = writeTinyModelDir(freshDir(), { architectures: ["Qwen2ForCausalLM"], tie_word_embeddings: true, eos_token_id: [2, 3] });
    const loaded = loadModelDir(m.dir);
    expect(loaded.dir).toBe(m.dir);
    expect(loaded.config).toMatchObject({ architecture: "Qwen2ForCausalLM", qkvBias: true, tieWordEmbeddings: true });
    expect(loaded.tensors.has("model.layers.0.self_attn.q_proj.bias")).toBe(true);
    expect(loaded.generation).toEqual({ eosTokenIds: [2, 3], bosTokenId: 1 });
  });

  test("generation_config.json: EOS ids are the union, sampling defaults come through", () => {
    const m = writeTinyModelDir(freshDir(), { eos_token_id: 2 }, {
      generationConfig: { bos_token_id: 5, eos_token_id: [7, 2], temperature: 0.6, top_p: 0.9, top_k: 20, do_sample: true },
    });
    expect(loadModelDir(m.dir).generation).toEqual({ eosTokenIds: [2, 7], bosTokenId: 5, temperature: 0.6, topP: 0.9, topK: 20 });
  });

  test("a bad generation_config.json is named", () => {
    const m = writeTinyModelDir(freshDir(), {}, { generationConfig: { top_p: 2 } });
    expect(errorOf(() => loadModelDir(m.dir)).message).toMatch(/generation_config\.json: field 'top_p' is invalid/);
  });
});

describe("loadModelDir: a bad directory gives a ModelDirError naming the file and the fault", () => {
  type Case = [string, (dir: string) => void, string, RegExp];
  const cases: Case[] = [
    ["no directory", () => {}, "", /model directory does not exist/],
    ["a file, not a directory", (d) => writeFileSync(d, "x"), "", /not a directory/],
    ["no config.json", (d) => {
      writeTinyModelDir(d);
      unlinkSync(join(d, "config.json"));
    }, "config.json", /config\.json: file not found/],
    ["malformed config.json", (d) => {
      writeTinyModelDir(d);
      writeFileSync(join(d, "config.json"), '{"hidden_size": 16,');
    }, "config.json", /config\.json: invalid JSON/],
    ["unknown architecture", (d) => writeTinyModelDir(d, { architectures: ["GPTNeoXForCausalLM"] }), "config.json", /'architectures'.*GPTNeoXForCausalLM/],
    ["missing field", (d) => writeTinyModelDir(d, { vocab_size: undefined }), "config.json", /missing required field 'vocab_size'/],
    ["unsupported rope type", (d) => writeTinyModelDir(d, { rope_scaling: { rope_type: "yarn", factor: 4 } }), "config.json", /rope type 'yarn' in config.json \(rope_scaling.rope_type\) is not supported yet/],
    ["a missing tensor", (d) => writeTinyModelDir(d, {}, { dropTensor: "model.norm.weight" }), "", /missing tensor 'model.norm.weight'/],
    ["a tensor of the wrong shape", (d) => writeTinyModelDir(d, {}, { wrongShape: "model.embed_tokens.weight" }), "model.safetensors", /tensor 'model.embed_tokens.weight' has shape \[65, 16\], expected \[64, 16\]/],
    ["a truncated safetensors file", (d) => {
      writeTinyModelDir(d);
      const f = join(d, "model.safetensors");
      truncateSync(f, statSync(f).size - 1);
    }, "model.safetensors", /truncated: tensor 'lm_head.weight' runs to byte/],
    ["a shard listed in the index but missing", (d) => {
      const m = writeTinyModelDir(d, {}, { shards: 3 });
      unlinkSync(join(d, m.files[2]!));
    }, "model.safetensors.index.json", /shard 'model-00003-of-00003.safetensors' listed in weight_map is missing/],
    ["an unsupported dtype", (d) => {
      writeTinyModelDir(d);
      writeRawSafetensors(join(d, "extra.safetensors"), { "model.scales": { dtype: "I8", shape: [2], data_offsets: [0, 2] } }, new Uint8Array(2));
    }, "extra.safetensors", /tensor 'model.scales' has dtype I8/],
    ["no weights at all", (d) => {
      writeTinyModelDir(d);
      unlinkSync(join(d, "model.safetensors"));
    }, "", /no \*\.safetensors files/],
  ];
  test.each(cases)("%s", (_name, make, file, pattern) => {
    const dir = freshDir();
    make(dir);
    const err = errorOf(() => loadModelDir(dir));
    const expectedFile = file === "" ? dir : join(dir, file);
    expect(err.file).toBe(expectedFile);
    expect(err.message).toStartWith(`${expectedFile}: `);
    expect(err.message).toMatch(pattern);
  });
});
