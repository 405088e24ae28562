// What the quantization tests share: float reference models written beside a quantized one (each
// linear weight replaced by what its codes mean), and the checks that the quantized model computes
// what its reference computes.
import { expect } from "bun:test";
import { cpSync } from "node:fs";
import { join } from "node:path";
import { LINEAR_WEIGHT } from "../../scripts/rewrite-checkpoint.ts";
import type { EngineConfigInput } from "../../src/config.ts";
import { loadModelDir } from "../../src/model/model-dir.ts";
import { readTensorBytes } from "../../src/model/safetensors-write.ts";
import type { StDtype } from "../../src/model/safetensors.ts";
import type { Quantization } from "../../src/model/weights.ts";
import { relativeError } from "../../src/native/testing.ts";
import { makeEngine, runToCompletion, type RunRequest } from "./engine-run.ts";
import { lastPositionLogits } from "./forward-logits.ts";
import { decode, writeSafetensors, type TensorSpec, type WriterDtype } from "./model-dir-writer.ts";

/** A linear weight's values as its quantized form means them ([n, k] f32). */
export type Dequantize = (values: Float32Array, n: number, k: number, dtype: StDtype, name: string) => Float32Array;

/** A copy of the float model `fixture` at `dir` (f32), each decoder linear weight replaced by `dequantize` of it. */
export function floatReference(fixture: string, dir: string, dequantize: Dequantize): string {
  cpSync(fixture, dir, { recursive: true, filter: (src) => !src.endsWith(".safetensors") && !src.endsWith(".index.json") });
  const specs: TensorSpec[] = [];
  for (const [name, t] of loadModelDir(fixture).tensors) {
    let data = decode(readTensorBytes(t, t.dtype === "F32" ? 4 : 2), t.dtype as WriterDtype);
    if (LINEAR_WEIGHT.test(name)) data = dequantize(data, t.shape[0]!, t.shape[1]!, t.dtype, name);
    specs.push({ name, dtype: "F32", shape: t.shape, data });
  }
  writeSafetensors(join(dir, "model.safetensors"), specs);
  return dir;
}

/** Greedy tokens of `model` equal those of `reference`, and the engine reports `quantization`. */
export function expectSameGreedyTokens(model: EngineConfigInput, reference: string, quantization: Quantization, reqs: RunRequest[]): void {
  const [q, d] = [makeEngine(model), makeEngine({ model: reference })];
  try {
    expect(q.info.quantization).toBe(quantization);
    expect(runToCompletion(q, reqs)).toEqual(runToCompletion(d, reqs));
  } finally {
    q.dispose();
    d.dispose();
  }
}

export const PROMPT = [1, 17, 42, 99, 250, 7, 64, 3, 120, 33, 5];

/** The checkpoint computes what its dequantized weights compute: logits close, greedy tokens equal. */
export function expectDequantizedBehaviour(ckpt: string, reference: string, quantization: Quantization): void {
  expect(relativeError(lastPositionLogits(ckpt, PROMPT), lastPositionLogits(reference, PROMPT))).toBeLessThan(1e-5);
  expectSameGreedyTokens({ model: ckpt }, reference, quantization, [{ id: "a", prompt: PROMPT, params: { maxTokens: 16, ignoreEos: true } }]);
}
