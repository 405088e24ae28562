// Loading weights: q, k and v land as one matrix (rows q | k | v), and a tensor-parallel size that
// does not divide the heads is refused by name.
import { expect, test } from "bun:test";
import { closeSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { openBackend } from "../native/backend.ts";
import { downloadF32 } from "../native/testing.ts";
import { loadModelDir } from "./model-dir.ts";
import type { TensorInfo } from "./safetensors.ts";
import { checkShardable, loadWeights } from "./weights.ts";

const FIXTURE = join(import.meta.dir, "..", "..", "test", "fixtures", "llama");

/** An f32 tensor's values, read straight from its file. */
function readTensorF32(t: TensorInfo): Float32Array {
  expect(t.dtype).toBe("F32");
  const n = t.shape.reduce((a, b) => a * b, 1);
  const bytes = new Uint8Array(n * 4);
  const fd = openSync(t.file, "r");
  try {
    readSync(fd, bytes, 0, bytes.length, t.dataOffset);
  } finally {
    closeSync(fd);
  }
  return new Float32Array(bytes.buffer);
}

test("q, k and v of a layer are one [(H + 2*KVH)*D, hidden] matrix, in that order", () => {
  const dir = loadModelDir(FIXTURE);
  const be = openBackend("cpu");
  try {
    const w = loadWeights(be, dir.config, dir.tensors);
    const { numHeads: nh, numKvHeads: nkv, headDim: d, hiddenSize: h } = dir.config;
    const qkv = w.layers[1]!.qkv;
    if (qkv.format !== "dense") throw new Error("a float checkpoint loads dense weights");
    const fused = downloadF32(be, qkv.w, (nh + 2 * nkv) * d * h);
    const parts = ["q_proj", "k_proj", "v_proj"].map((p) => readTensorF32(dir.tensors.get(`model.layers.1.self_attn.${p}.weight`)!));
    const want = new Float32Array(fused.length);
    let at = 0;
    for (const p of parts) (want.set(p, at), (at += p.length));
    expect(at).toBe(fused.length);
    expect(Array.from(fused)).toEqual(Array.from(want));
  } finally {
    be.destroy();
  }
});

test("a tensor-parallel size that does not divide the heads or the MLP is refused, naming the field", () => {
  const cfg = loadModelDir(FIXTURE).config; // 4 heads, 2 kv heads, intermediate 176
  expect(() => checkShardable(cfg, 3)).toThrow("does not divide num_attention_heads (4)");
  expect(() => checkShardable({ ...cfg, intermediateSize: 178 }, 4)).toThrow("does not divide intermediate_size (178)");
  expect(() => checkShardable(cfg, 2)).not.toThrow();
  expect(() => checkShardable(cfg, 4)).not.toThrow(); // fewer KV heads than ranks: each rank keeps one
});
