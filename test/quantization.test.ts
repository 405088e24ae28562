// Quantized weights end to end on the cpu backend: FP8 (quantized at load, or read from a
// compressed-tensors checkpoint) and GPTQ checkpoints.
// --quantization fp8: a model quantized at load must compute what
// the same model computes from its dequantized weights (each linear weight replaced, in a model
// directory written here, by its e4m3 codes times its row scale, per the format's definition in
// src/native/fp8-reference.ts): logits equal to rounding, greedy tokens equal. The linear layers'
// merging (q|k|v, gate|up), scales and biases are all on that path.
import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, cpSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModelDir } from "../src/model/model-dir.ts";
import { readTensorBytes } from "../src/model/safetensors-write.ts";
import { writeFp8Checkpoint } from "../scripts/quantize-fp8.ts";
import { LINEAR_WEIGHT as LINEAR } from "../scripts/rewrite-checkpoint.ts";
import { quantizeGptq, writeGptqCheckpoint, type GptqOptions } from "../scripts/quantize-gptq.ts";
import { fp8Decode, quantizeRow } from "../src/native/fp8-reference.ts";
import { dequantizeInt, type IntLayer } from "../src/native/int-weights-reference.ts";
import type { StDtype } from "../src/model/safetensors.ts";
import { quantizePacked, writePackedCheckpoint, type PackOptions } from "../scripts/quantize-w4a16.ts";
import { quantizeAwq, writeAwqCheckpoint } from "../scripts/quantize-awq.ts";
import { relativeError } from "../src/native/testing.ts";
import { lastPositionLogits } from "./helpers/forward-logits.ts";
import { makeEngine, runToCompletion, type RunRequest } from "./helpers/engine-run.ts";
import type { EngineConfigInput } from "../src/config.ts";
import type { Quantization } from "../src/model/weights.ts";
import { decode, writeSafetensors, type TensorSpec, type WriterDtype } from "./helpers/model-dir-writer.ts";

const work = mkdtempSync(join(tmpdir(), "vllmd-fp8-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A copy of `fixture` whose linear weights are their fp8 round trip (codes x row scale, as f32). */
function dequantizedCopy(fixture: string): string {
  const dir = join(work, fixture.split("/").at(-1)!);
  cpSync(fixture, dir, { recursive: true, filter: (src) => !src.endsWith(".safetensors") && !src.endsWith(".index.json") });
  const specs: TensorSpec[] = [];
  for (const [name, t] of loadModelDir(fixture).tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1), bytes = new Uint8Array(n * (t.dtype === "F32" ? 4 : 2));
    const fd = openSync(t.file, "r");
    readSync(fd, bytes, 0, bytes.length, t.dataOffset);
    closeSync(fd);
    const data = decode(bytes, t.dtype as WriterDtype);
    if (LINEAR.test(name)) {
      const [rows, cols] = t.shape as [number, number];
      for (let r = 0; r < rows; r++) {
        const { scale, codes } = quantizeRow(data.subarray(r * cols, (r + 1) * cols));
        for (let c = 0; c < cols; c++) data[r * cols + c] = fp8Decode(codes[c]!) * scale;
      }
    }
    specs.push({ name, dtype: "F32", shape: t.shape, data });
  }
  writeSafetensors(join(dir, "model.safetensors"), specs);
  return dir;
}

/** Greedy tokens of `model` equal those of `reference`, and the engine reports `quantization`. */
function expectSameGreedyTokens(model: EngineConfigInput, reference: string, quantization: Quantization, reqs: RunRequest[]): void {
  const [q, d] = [makeEngine(model), makeEngine({ model: reference })];
  try {
    expect(q.info.quantization).toBe(quantization);
    expect(runToCompletion(q, reqs)).toEqual(runToCompletion(d, reqs));
  } finally {
    q.dispose();
    d.dispose();
  }
}

for (const fixture of ["test/fixtures/llama", "test/fixtures/qwen2"]) {
  describe(`--quantization fp8 on ${fixture}`, () => {
    const reference = dequantizedCopy(fixture);
    const prompt = [1, 17, 42, 99, 250, 7, 64, 3, 120, 33, 5];

    test("logits equal those of the dequantized weights, and differ from the unquantized model's", () => {
      const fp8 = lastPositionLogits(fixture, prompt, 16, "cpu", { quantization: "fp8" });
      const deq = lastPositionLogits(reference, prompt);
      const orig = lastPositionLogits(fixture, prompt);
      expect(relativeError(fp8, deq)).toBeLessThan(1e-5);
      const drift = relativeError(fp8, orig);
      expect(drift).toBeGreaterThan(1e-5); // the weights really were quantized
      expect(drift).toBeLessThan(0.15); // and e4m3 per row keeps them close (random tiny models amplify it)
    });

    test("greedy generation gives the dequantized model's tokens", () => {
      const reqs = [{ id: "a", prompt, params: { maxTokens: 24, ignoreEos: true } }, { id: "b", prompt: prompt.slice(3), params: { maxTokens: 24, ignoreEos: true } }];
      expectSameGreedyTokens({ model: fixture, quantization: "fp8" }, reference, "fp8", reqs);
    });
  });
}

// ---- compressed-tensors FP8 checkpoints (scripts/quantize-fp8.ts writes them as llm-compressor does)

/** The checkpoint's linear weights dequantized (codes x their scale, per row or per tensor) as f32. */
function dequantizedCheckpoint(dir: string): string {
  const out = join(work, `${dir.split("/").at(-1)}-deq`);
  cpSync(dir, out, { recursive: true, filter: (src) => !src.endsWith(".safetensors") });
  const md = loadModelDir(dir), specs: TensorSpec[] = [];
  const read = (name: string) => {
    const t = md.tensors.get(name)!;
    const bytes = readTensorBytes(t, t.dtype === "F8_E4M3" ? 1 : t.dtype === "F32" ? 4 : 2);
    return { t, bytes };
  };
  for (const [name, t] of md.tensors) {
    if (name.endsWith("_scale")) continue;
    const { bytes } = read(name);
    if (t.dtype !== "F8_E4M3") {
      specs.push({ name, dtype: "F32", shape: t.shape, data: decode(bytes, t.dtype as WriterDtype) });
      continue;
    }
    const s = read(`${name}_scale`), scales = decode(s.bytes, s.t.dtype as WriterDtype);
    const [rows, cols] = t.shape as [number, number];
    const data = Float32Array.from(bytes, (code, i) => fp8Decode(code) * scales[scales.length === 1 ? 0 : Math.floor(i / cols)]!);
    expect(data.length).toBe(rows * cols);
    specs.push({ name, dtype: "F32", shape: t.shape, data });
  }
  writeSafetensors(join(out, "model.safetensors"), specs);
  const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  delete config.quantization_config;
  writeFileSync(join(out, "config.json"), JSON.stringify(config));
  return out;
}

for (const fixture of ["test/fixtures/llama", "test/fixtures/qwen2"]) {
  describe(`a compressed-tensors FP8 checkpoint of ${fixture}`, () => {
    const prompt = [1, 17, 42, 99, 250, 7, 64, 3, 120, 33, 5];
    const channel = join(work, `${fixture.split("/").at(-1)}-fp8-channel`), tensor = join(work, `${fixture.split("/").at(-1)}-fp8-tensor`);
    writeFp8Checkpoint(fixture, channel, { strategy: "channel", activations: "dynamic" });
    writeFp8Checkpoint(fixture, tensor, { strategy: "tensor", activations: "static" });

    test("per channel, it computes exactly what --quantization fp8 computes from the float checkpoint", () => {
      const onTheFly = lastPositionLogits(fixture, prompt, 16, "cpu", { quantization: "fp8" });
      expect(relativeError(lastPositionLogits(channel, prompt), onTheFly)).toBe(0);
    });

    for (const [name, dir] of [["per channel", channel], ["per tensor", tensor]] as const)
      test(`${name}, its logits and greedy tokens are those of its dequantized weights`, () => {
        const reference = dequantizedCheckpoint(dir);
        expect(relativeError(lastPositionLogits(dir, prompt), lastPositionLogits(reference, prompt))).toBeLessThan(1e-5);
        const reqs = [{ id: "a", prompt, params: { maxTokens: 16, ignoreEos: true } }];
        expectSameGreedyTokens({ model: dir }, reference, "fp8", reqs);
      });
  });
}

// ---- integer checkpoints: GPTQ (as AutoGPTQ lays it out) and compressed-tensors pack-quantized

type IntQuantizer = (w: Float32Array, n: number, k: number, dtype: StDtype) => IntLayer;

/** The float model whose linear weights are what the quantizer's codes, zeros and scales mean: the reference. */
function intReference(fixture: string, tag: string, quantize: IntQuantizer): string {
  const dir = join(work, `${fixture.split("/").at(-1)}-ref-${tag}`);
  cpSync(fixture, dir, { recursive: true, filter: (src) => !src.endsWith(".safetensors") && !src.endsWith(".index.json") });
  const specs: TensorSpec[] = [];
  for (const [name, t] of loadModelDir(fixture).tensors) {
    let data = decode(readTensorBytes(t, t.dtype === "F32" ? 4 : 2), t.dtype as WriterDtype);
    if (LINEAR.test(name)) data = dequantizeInt(quantize(data, t.shape[0]!, t.shape[1]!, t.dtype));
    specs.push({ name, dtype: "F32", shape: t.shape, data });
  }
  writeSafetensors(join(dir, "model.safetensors"), specs);
  return dir;
}

/** The checkpoint computes what its dequantized weights compute: logits close, greedy tokens equal. */
function expectDequantizedBehaviour(ckpt: string, reference: string, quantization: Quantization): void {
  const prompt = [1, 17, 42, 99, 250, 7, 64, 3, 120, 33, 5];
  expect(relativeError(lastPositionLogits(ckpt, prompt), lastPositionLogits(reference, prompt))).toBeLessThan(1e-5);
  expectSameGreedyTokens({ model: ckpt }, reference, quantization, [{ id: "a", prompt, params: { maxTokens: 16, ignoreEos: true } }]);
}

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
      expectDequantizedBehaviour(ckpt, intReference(fixture, `gptq-${tag}`, (w, n, k) => quantizeGptq(w, n, k, gptq)), "gptq");
    });
    test(`a compressed-tensors pack-quantized checkpoint of ${fixture}, ${name}: likewise`, () => {
      const ckpt = join(work, `packed-${tag}`);
      writePackedCheckpoint(fixture, ckpt, o);
      expectDequantizedBehaviour(ckpt, intReference(fixture, `packed-${tag}`, (w, n, k, dtype) => quantizePacked(w, n, k, dtype, o)), "compressed-tensors");
    });
  }

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

describe("--quantization against the checkpoint's quantization_config", () => {
  const gptq = join(work, "flag-gptq"), fp8 = join(work, "flag-fp8"), awq = join(work, "flag-awq");
  writeGptqCheckpoint("test/fixtures/llama", gptq, { bits: 4, groupSize: 32, sym: true });
  writeAwqCheckpoint("test/fixtures/llama", awq, { groupSize: 16 });
  writeFp8Checkpoint("test/fixtures/llama", fp8, { strategy: "channel", activations: "dynamic" });

  test.each([
    ["gptq", gptq, "gptq"],
    ["awq", awq, "awq"],
    ["compressed-tensors", fp8, "fp8"],
    ["fp8", fp8, "fp8"],
  ] as const)("--quantization %s on a checkpoint of that method loads it as it is", (flag, model, held) => {
    const e = makeEngine({ model, quantization: flag });
    try {
      expect(e.info.quantization).toBe(held);
    } finally {
      e.dispose();
    }
  });

  test.each([
    ["fp8", gptq, /--quantization fp8 does not fit this model: it has quantization_config.quant_method "gptq"/],
    ["gptq", fp8, /--quantization gptq does not fit this model: it has quantization_config.quant_method "compressed-tensors"/],
    ["awq", gptq, /--quantization awq does not fit this model: it has quantization_config.quant_method "gptq"/],
    ["gptq", "test/fixtures/llama", /--quantization gptq does not fit this model: it has a float checkpoint \(no quantization_config\)/],
  ] as const)("--quantization %s on another kind of checkpoint is refused", (flag, model, pattern) => {
    expect(() => makeEngine({ model, quantization: flag })).toThrow(pattern);
  });
});
