// --quantization fp8 end to end on the cpu backend: a model quantized at load must compute what
// the same model computes from its dequantized weights (each linear weight replaced, in a model
// directory written here, by its e4m3 codes times its row scale, per the format's definition in
// src/native/fp8-reference.ts): logits equal to rounding, greedy tokens equal. The linear layers'
// merging (q|k|v, gate|up), scales and biases are all on that path.
import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, cpSync, mkdtempSync, openSync, readSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModelDir } from "../src/model/model-dir.ts";
import { fp8Decode, quantizeRow } from "../src/native/fp8-reference.ts";
import { relativeError } from "../src/native/testing.ts";
import { lastPositionLogits } from "./helpers/forward-logits.ts";
import { makeEngine, runToCompletion } from "./helpers/engine-run.ts";
import { decode, writeSafetensors, type TensorSpec, type WriterDtype } from "./helpers/model-dir-writer.ts";

const LINEAR = /\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$/;
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
      const quant = makeEngine({ model: fixture, quantization: "fp8" });
      const deq = makeEngine({ model: reference });
      try {
        expect(quant.info.quantization).toBe("fp8");
        expect(runToCompletion(quant, reqs)).toEqual(runToCompletion(deq, reqs));
      } finally {
        quant.dispose();
        deq.dispose();
      }
    });
  });
}
