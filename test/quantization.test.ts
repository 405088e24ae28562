// FP8 weights end to end on the cpu backend. --quantization fp8: a model quantized at load must
// compute what the same model computes from its dequantized weights (each linear weight replaced,
// in a model directory written here, by its e4m3 codes times its row scale, per the format's
// definition in src/native/fp8-reference.ts): logits equal to rounding, greedy tokens equal. The
// linear layers' merging (q|k|v, gate|up), scales and biases are all on that path. Compressed-
// tensors FP8 checkpoints likewise; and --quantization against each kind of checkpoint.
import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeAwqCheckpoint } from "../scripts/quantize-awq.ts";
import { writeFp8Checkpoint } from "../scripts/quantize-fp8.ts";
import { writeGptqCheckpoint } from "../scripts/quantize-gptq.ts";
import { loadModelDir } from "../src/model/model-dir.ts";
import { readTensorBytes } from "../src/model/safetensors-write.ts";
import { fp8Decode, quantizeRow } from "../src/native/fp8-reference.ts";
import { relativeError } from "../src/native/testing.ts";
import { makeEngine } from "./helpers/engine-run.ts";
import { lastPositionLogits } from "./helpers/forward-logits.ts";
import { decode, writeSafetensors, type TensorSpec, type WriterDtype } from "./helpers/model-dir-writer.ts";
import { expectDequantizedBehaviour, expectSameGreedyTokens, floatReference, PROMPT } from "./helpers/quantized-models.ts";

const work = mkdtempSync(join(tmpdir(), "vllmd-fp8-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A copy of `fixture` whose linear weights are their fp8 round trip (codes x row scale, as f32). */
const dequantizedCopy = (fixture: string): string =>
  floatReference(fixture, join(work, fixture.split("/").at(-1)!), (data, rows, cols) => {
    const out = new Float32Array(data.length);
    for (let r = 0; r < rows; r++) {
      const { scale, codes } = quantizeRow(data.subarray(r * cols, (r + 1) * cols));
      for (let c = 0; c < cols; c++) out[r * cols + c] = fp8Decode(codes[c]!) * scale;
    }
    return out;
  });

for (const fixture of ["test/fixtures/llama", "test/fixtures/qwen2"]) {
  describe(`--quantization fp8 on ${fixture}`, () => {
    const reference = dequantizedCopy(fixture);
    const prompt = PROMPT;

    test("logits equal those of the dequantized weights, and differ from the unquantized model's", () => {
      const fp8 = lastPositionLogits(fixture, prompt, 16, "cpu", { quantization: "fp8" });
      const deq = lastPositionLogits(reference, prompt);
      const orig = lastPositionLogits(fixture, prompt);
      expect(relativeError(fp8, deq)).toBeLessThan(1e-5);
      const drift = relativeError(fp8, orig);
      expect(drift).toBeGreaterThan(1e-5); // the weights really were quantized
      expect(drift).toBeLessThan(0.15); // and e4m3 per row keeps them close (random tiny models amplify it)
    });

    test("W8A8 (w8a8 on): activations quantized per token move the logits a little; auto keeps the cpu weight-only", () => {
      const weightOnly = lastPositionLogits(fixture, prompt, 16, "cpu", { quantization: "fp8" });
      const w8a8 = lastPositionLogits(fixture, prompt, 16, "cpu", { quantization: "fp8" }, { w8a8: true });
      const moved = relativeError(w8a8, weightOnly);
      expect(moved).toBeGreaterThan(1e-5); // the activations were quantized
      expect(moved).toBeLessThan(0.1);
      const on = makeEngine({ model: fixture, quantization: "fp8", w8a8: "on" }), auto = makeEngine({ model: fixture, quantization: "fp8" });
      const plain = makeEngine({ model: fixture, w8a8: "on" }); // no FP8 linears: nothing to quantize
      try {
        expect([on.info.w8a8, auto.info.w8a8, plain.info.w8a8]).toEqual([true, false, false]);
      } finally {
        for (const e of [on, auto, plain]) e.dispose();
      }
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
    const prompt = PROMPT;
    const channel = join(work, `${fixture.split("/").at(-1)}-fp8-channel`), tensor = join(work, `${fixture.split("/").at(-1)}-fp8-tensor`);
    writeFp8Checkpoint(fixture, channel, { strategy: "channel", activations: "dynamic" });
    writeFp8Checkpoint(fixture, tensor, { strategy: "tensor", activations: "static" });

    test("per channel, it computes exactly what --quantization fp8 computes from the float checkpoint", () => {
      const onTheFly = lastPositionLogits(fixture, prompt, 16, "cpu", { quantization: "fp8" });
      expect(relativeError(lastPositionLogits(channel, prompt), onTheFly)).toBe(0);
    });

    for (const [name, dir] of [["per channel", channel], ["per tensor", tensor]] as const)
      test(`${name}, its logits and greedy tokens are those of its dequantized weights`, () => {
        expectDequantizedBehaviour(dir, dequantizedCheckpoint(dir), "fp8");
      });
  });
}

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
