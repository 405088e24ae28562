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
import { quantizeRtn, writeGptqCheckpoint, type GptqOptions } from "../scripts/quantize-gptq.ts";
import { fp8Decode, quantizeRow } from "../src/native/fp8-reference.ts";
import { dequantizeGptq } from "../src/native/gptq-reference.ts";
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

// ---- GPTQ checkpoints (scripts/quantize-gptq.ts writes them as AutoGPTQ lays them out)

/** The float model whose linear weights are what `o`'s codes, zeros and scales mean: the reference. */
function gptqReference(fixture: string, o: GptqOptions, tag: string): string {
  const dir = join(work, `${fixture.split("/").at(-1)}-gptq-ref-${tag}`);
  cpSync(fixture, dir, { recursive: true, filter: (src) => !src.endsWith(".safetensors") && !src.endsWith(".index.json") });
  const specs: TensorSpec[] = [];
  for (const [name, t] of loadModelDir(fixture).tensors) {
    let data = decode(readTensorBytes(t, t.dtype === "F32" ? 4 : 2), t.dtype as WriterDtype);
    if (LINEAR.test(name)) data = dequantizeGptq(quantizeRtn(data, t.shape[0]!, t.shape[1]!, o));
    specs.push({ name, dtype: "F32", shape: t.shape, data });
  }
  writeSafetensors(join(dir, "model.safetensors"), specs);
  return dir;
}

const GPTQ_CASES: [string, GptqOptions][] = [
  ["4-bit, group 32, symmetric", { bits: 4, groupSize: 32, sym: true }],
  ["4-bit, group 48 (a shorter last group), asymmetric", { bits: 4, groupSize: 48, sym: false }],
  ["8-bit, one group per row, asymmetric", { bits: 8, groupSize: -1, sym: false }],
];
for (const fixture of ["test/fixtures/llama", "test/fixtures/qwen2"])
  for (const [name, o] of GPTQ_CASES)
    test(`a GPTQ checkpoint of ${fixture}, ${name}: the logits and greedy tokens of its dequantized weights`, () => {
      const tag = `${o.bits}-${o.groupSize}-${o.sym}`;
      const ckpt = join(work, `${fixture.split("/").at(-1)}-gptq-${tag}`);
      writeGptqCheckpoint(fixture, ckpt, o);
      const reference = gptqReference(fixture, o, tag);
      const prompt = [1, 17, 42, 99, 250, 7, 64, 3, 120, 33, 5];
      expect(relativeError(lastPositionLogits(ckpt, prompt), lastPositionLogits(reference, prompt))).toBeLessThan(1e-5);
      const reqs = [{ id: "a", prompt, params: { maxTokens: 16, ignoreEos: true } }];
      expectSameGreedyTokens({ model: ckpt }, reference, "gptq", reqs);
    });
