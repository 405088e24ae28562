// Integer checkpoints end to end on the cpu backend: GPTQ (with and without act-order), AWQ and
// compressed-tensors pack-quantized, each written here by its quantizer script as the real tool
// lays it out, must compute what a float model of its dequantized weights computes (logits equal
// to rounding, greedy tokens equal); and tensors that disagree with the config are refused by name.
import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { quantizeAwq, writeAwqCheckpoint } from "../scripts/quantize-awq.ts";
import { quantizeGptq, writeGptqCheckpoint, type GptqOptions } from "../scripts/quantize-gptq.ts";
import { quantizePacked, writePackedCheckpoint, type PackOptions } from "../scripts/quantize-w4a16.ts";
import { loadModelDir } from "../src/model/model-dir.ts";
import { readTensorBytes, writeSafetensorsFile, type RawTensor } from "../src/model/safetensors-write.ts";
import { ST_DTYPE_BYTES, type StDtype } from "../src/model/safetensors.ts";
import { dequantizeInt, type IntLayer } from "../src/native/int-weights-reference.ts";
import { makeEngine } from "./helpers/engine-run.ts";
import { expectDequantizedBehaviour, floatReference } from "./helpers/quantized-models.ts";

const work = mkdtempSync(join(tmpdir(), "vllmd-int-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The float model whose linear weights are what the quantizer's codes, zeros and scales mean. */
const intReference = (fixture: string, tag: string, quantize: IntQuantizer): string =>
  floatReference(fixture, join(work, `${fixture.split("/").at(-1)}-ref-${tag}`), (w, n, k, dtype, name) => dequantizeInt(quantize(w, n, k, dtype, name)));

type IntQuantizer = (w: Float32Array, n: number, k: number, dtype: StDtype, name: string) => IntLayer;

const INT_CASES: [string, PackOptions][] = [
  ["4-bit, group 32, symmetric", { bits: 4, groupSize: 32, sym: true }],
  ["4-bit, group 48 (a shorter last group), asymmetric, bf16 scales", { bits: 4, groupSize: 48, sym: false, scaleDtype: "BF16" }],
  ["8-bit, one group per row, asymmetric, f16 scales", { bits: 8, groupSize: -1, sym: false, scaleDtype: "F16" }],
];
for (const fixture of ["test/fixtures/llama", "test/fixtures/qwen2"])
  for (const [name, o] of INT_CASES) {
    const tag = `${fixture.split("/").at(-1)}-${o.bits}-${o.groupSize}-${o.sym}-${o.scaleDtype}`;
    test(`a GPTQ checkpoint of ${fixture}, ${name}: the logits and greedy tokens of its dequantized weights`, () => {
      const ckpt = join(work, `gptq-${tag}`);
      const gptq: GptqOptions = { bits: o.bits, groupSize: o.groupSize, sym: o.sym }; // scales always F16
      writeGptqCheckpoint(fixture, ckpt, gptq);
      expectDequantizedBehaviour(ckpt, intReference(fixture, `gptq-${tag}`, (w, n, k, _dtype, name) => quantizeGptq(name, w, n, k, gptq)), "gptq");
    });
    test(`a compressed-tensors pack-quantized checkpoint of ${fixture}, ${name}: likewise`, () => {
      const ckpt = join(work, `packed-${tag}`);
      writePackedCheckpoint(fixture, ckpt, o);
      expectDequantizedBehaviour(ckpt, intReference(fixture, `packed-${tag}`, (w, n, k, dtype, name) => quantizePacked(name, w, n, k, dtype, o)), "compressed-tensors");
    });
  }

const ACT_ORDER_CASES: [string, GptqOptions][] = [
  ["4-bit, group 16, symmetric", { bits: 4, groupSize: 16, sym: true, actOrder: true }],
  ["8-bit, group 48 (a shorter last group), asymmetric", { bits: 8, groupSize: 48, sym: false, actOrder: true }],
];
for (const fixture of ["test/fixtures/llama", "test/fixtures/qwen2"])
  for (const [name, o] of ACT_ORDER_CASES)
    test(`a GPTQ act-order (desc_act) checkpoint of ${fixture}, ${name}: the logits and greedy tokens of its dequantized weights`, () => {
      const tag = `gptq-act-${fixture.split("/").at(-1)}-${o.bits}-${o.groupSize}-${o.sym}`, ckpt = join(work, tag);
      writeGptqCheckpoint(fixture, ckpt, o);
      expectDequantizedBehaviour(ckpt, intReference(fixture, tag, (w, n, k, _dtype, name) => quantizeGptq(name, w, n, k, o)), "gptq");
    });
for (const fixture of ["test/fixtures/llama", "test/fixtures/qwen2"])
  for (const [name, o] of ACT_ORDER_CASES)
    test(`a compressed-tensors act-order ("group", weight_g_idx) checkpoint of ${fixture}, ${name}: likewise`, () => {
      const tag = `packed-act-${fixture.split("/").at(-1)}-${o.bits}-${o.groupSize}-${o.sym}`, ckpt = join(work, tag);
      writePackedCheckpoint(fixture, ckpt, o);
      expectDequantizedBehaviour(ckpt, intReference(fixture, tag, (w, n, k, dtype, name) => quantizePacked(name, w, n, k, dtype, o)), "compressed-tensors");
    });

test("a GPTQ act-order checkpoint whose q, k and v disagree on g_idx is refused, naming the tensor", () => {
  const ckpt = join(work, "gptq-act-disagree");
  writeGptqCheckpoint("test/fixtures/llama", ckpt, { bits: 4, groupSize: 16, sym: true, actOrder: true });
  const file = join(ckpt, "model.safetensors"), tensors: RawTensor[] = [];
  for (const [name, t] of loadModelDir(ckpt).tensors) {
    const bytes = readTensorBytes(t, ST_DTYPE_BYTES[t.dtype]);
    if (name === "model.layers.0.self_attn.k_proj.g_idx") new Int32Array(bytes.buffer).reverse(); // still groups of 16
    tensors.push({ name, dtype: t.dtype, shape: t.shape, bytes });
  }
  writeSafetensorsFile(file, tensors);
  expect(() => makeEngine({ model: ckpt })).toThrow("tensor 'model.layers.0.self_attn.k_proj.g_idx' differs from 'model.layers.0.self_attn.q_proj.g_idx': layers that read one input must share act-order");
});

for (const fixture of ["test/fixtures/llama", "test/fixtures/qwen2"])
  for (const groupSize of [16, -1])
    test(`an AWQ checkpoint of ${fixture}, group ${groupSize}: the logits and greedy tokens of its dequantized weights`, () => {
      const tag = `awq-${fixture.split("/").at(-1)}-${groupSize}`, ckpt = join(work, tag);
      writeAwqCheckpoint(fixture, ckpt, { groupSize });
      expectDequantizedBehaviour(ckpt, intReference(fixture, tag, (w, n, k) => quantizeAwq(w, n, k, { groupSize })), "awq");
    });

describe("an integer checkpoint whose tensors disagree with its quantization_config", () => {
  const ckpt = join(work, "packed-mismatch");
  writePackedCheckpoint("test/fixtures/llama", ckpt, { bits: 4, groupSize: 32, sym: true });
  const withWeights = (over: object) => {
    const config = JSON.parse(readFileSync(join(ckpt, "config.json"), "utf8"));
    Object.assign(config.quantization_config.config_groups.group_0.weights, over);
    const dir = join(work, `packed-mismatch-${Object.values(over).join("-")}`);
    cpSync(ckpt, dir, { recursive: true });
    writeFileSync(join(dir, "config.json"), JSON.stringify(config));
    return dir;
  };

  test.each([
    ["asymmetric, without zero points", { symmetric: false }, /missing tensor 'model\.layers\.0\.self_attn\.q_proj\.weight_zero_point' \(expected shape \[8, 2\]\)/],
    ["a group size the scales do not have", { group_size: 64 }, /tensor 'model\.layers\.0\.self_attn\.q_proj\.weight_scale' has shape \[64, 2\], expected \[64, 1\]/],
  ])("%s: the engine refuses to start, naming the tensor", (_name, over, pattern) => {
    expect(() => makeEngine({ model: withWeights(over) })).toThrow(pattern);
  });
});

