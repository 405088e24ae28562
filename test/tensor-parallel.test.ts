// --tensor-parallel-size on the cpu backend (its ranks in one process, src/native/tensor-parallel.test.ts):
// the Megatron sharding of the model (q/k/v and gate/up by output rows, o and down by input columns
// with an all-reduce after each) computes what one rank computes. Greedy tokens equal, logits
// within 1e-4 (the partial sums are added in another order), on the fixtures whose heads and MLP
// width the ranks divide; the others are refused at start-up by name.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeFp8Checkpoint } from "../scripts/quantize-fp8.ts";
import { writeAwqCheckpoint } from "../scripts/quantize-awq.ts";
import { writeGptqCheckpoint } from "../scripts/quantize-gptq.ts";
import { writePackedCheckpoint } from "../scripts/quantize-w4a16.ts";
import type { ModelConfig } from "../src/model/config.ts";
import { checkShardable } from "../src/model/weights.ts";
import { relativeError } from "../src/native/testing.ts";
import { makeEngine, runToCompletion } from "./helpers/engine-run.ts";
import { lastPositionLogits } from "./helpers/forward-logits.ts";
import { PROMPT } from "./helpers/quantized-models.ts";

const work = mkdtempSync(join(tmpdir(), "vllmd-tp-model-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const reqs = [
  { id: "a", prompt: PROMPT, params: { maxTokens: 20, ignoreEos: true } },
  { id: "b", prompt: PROMPT.slice(4), params: { maxTokens: 20, ignoreEos: true } },
  { id: "c", prompt: [1, 2, 3], params: { maxTokens: 20, ignoreEos: true, temperature: 0.8, seed: 7n } },
];

function tokens(model: string, tp: number, extra: Record<string, unknown> = {}): Map<string, number[]> {
  const e = makeEngine({ model, tensorParallelSize: tp, ...extra });
  try {
    expect(e.info.numBlocks).toBeGreaterThan(0);
    return runToCompletion(e, reqs);
  } finally {
    e.dispose();
  }
}

describe("--tensor-parallel-size on the cpu backend", () => {
  // llama and qwen2 (qkv bias): 4 query heads over 2 KV heads, mistral: 4 over 1. At tp 4 (and
  // mistral's tp 2) there are fewer KV heads than ranks: each rank keeps its group's head.
  const CASES: [string, number[]][] = [["test/fixtures/llama", [2, 4]], ["test/fixtures/qwen2", [2, 4]], ["test/fixtures/mistral", [2, 4]]];
  for (const [model, tps] of CASES)
    for (const tp of tps)
      test(`${model}, tp ${tp}: the tokens of tp 1 (greedy and seeded sampling), logits within 1e-4`, () => {
        expect(tokens(model, tp)).toEqual(tokens(model, 1));
        const one = lastPositionLogits(model, PROMPT), many = lastPositionLogits(model, PROMPT, 16, "cpu", {}, {}, tp);
        expect(relativeError(many, one)).toBeLessThan(1e-4);
      });

  test("an FP8 checkpoint shards as it is (codes by rows or columns, each row's scale with its row): tp 1's tokens", () => {
    const dir = join(work, "llama-fp8");
    writeFp8Checkpoint("test/fixtures/llama", dir, { strategy: "channel", activations: "dynamic" });
    expect(tokens(dir, 2)).toEqual(tokens(dir, 1));
  });

  test("--quantization fp8 quantizes each rank's shard (its own row scales, as vLLM does): close to tp 1, not equal", () => {
    const model = "test/fixtures/llama", q = { quantization: "fp8" } as const;
    const err = relativeError(lastPositionLogits(model, PROMPT, 16, "cpu", q, {}, 2), lastPositionLogits(model, PROMPT, 16, "cpu", q));
    expect(err).toBeGreaterThan(0);
    expect(err).toBeLessThan(0.05);
  });

  test("the cpu's ranks share its KV budget: per-rank blocks of half the heads, the same count as tp 1", () => {
    const blocks = (tp: number) => {
      const e = makeEngine({ model: "test/fixtures/llama", tensorParallelSize: tp, cpuKvCacheBytes: 2 ** 20, maxModelLen: 64 });
      try {
        return e.info.numBlocks;
      } finally {
        e.dispose();
      }
    };
    const one = blocks(1);
    expect(one).toBeLessThan(256 * 4); // set by the budget, not by the scheduler's cap
    expect(blocks(2)).toBe(one); // 2 KV heads: one per rank, half the bytes per block, half the budget each
    expect(blocks(4)).toBe(one / 2); // one KV head per rank kept by two ranks each: a quarter of the budget each
  });

  // Integer checkpoints shard as they are stored: q/k/v and gate/up by output columns of qweight
  // (and of qzeros' packed words, and scales), o and down by input rows of qweight and by groups.
  // llama's down_proj reads 176 inputs: 88 a rank at tp 2, which groups of 8 divide and 32 do not.
  const INT_CASES: [string, (dir: string) => void, number[]][] = [
    ["GPTQ 4-bit group 8", (d) => writeGptqCheckpoint("test/fixtures/llama", d, { bits: 4, groupSize: 8, sym: true }), [2]],
    ["GPTQ 8-bit, one group a row", (d) => writeGptqCheckpoint("test/fixtures/llama", d, { bits: 8, groupSize: -1, sym: false }), [2, 4]],
    ["AWQ group 8 (zero points, interleaved packing)", (d) => writeAwqCheckpoint("test/fixtures/llama", d, { groupSize: 8 }), [2]],
    ["compressed-tensors W4A16 group 8", (d) => writePackedCheckpoint("test/fixtures/llama", d, { bits: 4, groupSize: 8, sym: true }), [2]],
    ["compressed-tensors W8A16, one group a row", (d) => writePackedCheckpoint("test/fixtures/llama", d, { bits: 8, groupSize: -1, sym: true }), [2, 4]],
  ];
  INT_CASES.forEach(([what, write, tps], i) =>
    test(`a ${what} checkpoint shards as it is stored: tp ${tps.join(" and ")} give tp 1's tokens, logits within 1e-4`, () => {
      const dir = join(work, `llama-int-${i}`);
      write(dir);
      const one = tokens(dir, 1), logits = lastPositionLogits(dir, PROMPT);
      for (const tp of tps) {
        expect(tokens(dir, tp)).toEqual(one);
        expect(relativeError(lastPositionLogits(dir, PROMPT, 16, "cpu", {}, {}, tp), logits)).toBeLessThan(1e-4);
      }
    }));

  test("integer shards that cannot hold whole groups or words, act-order split along k, and host-unpacked zero points are refused by name", () => {
    const refused = (name: string, write: (dir: string) => void, tp: number, msg: string) => {
      const dir = join(work, `llama-refused-${name}`);
      write(dir);
      expect(() => makeEngine({ model: dir, tensorParallelSize: tp })).toThrow(msg);
    };
    refused("g32", (d) => writeGptqCheckpoint("test/fixtures/llama", d, { bits: 4, groupSize: 32, sym: true }), 2, "do not split into whole groups of 32 (group_size)");
    refused("words", (d) => writeGptqCheckpoint("test/fixtures/llama", d, { bits: 4, groupSize: -1, sym: true }), 4, "do not split into whole 8-code words per rank");
    refused("act-order", (d) => writeGptqCheckpoint("test/fixtures/llama", d, { bits: 4, groupSize: 8, sym: true, actOrder: true }), 2, "act-order");
    refused("asym", (d) => writePackedCheckpoint("test/fixtures/llama", d, { bits: 4, groupSize: 8, sym: false }), 2, "zero points (symmetric: false)");
  });

  test("heads, MLP width or KV heads the ranks do not fit are refused at start-up, naming the field", () => {
    expect(() => makeEngine({ model: "test/fixtures/llama", tensorParallelSize: 3 })).toThrow(
      "--tensor-parallel-size 3 does not divide num_attention_heads (4) in config.json");
    const cfg = { numHeads: 6, numKvHeads: 4, intermediateSize: 12 } as ModelConfig;
    expect(() => checkShardable(cfg, 3)).toThrow("--tensor-parallel-size 3 neither divides nor is a multiple of num_key_value_heads (4)");
    expect(() => checkShardable({ ...cfg, numKvHeads: 1 }, 3)).not.toThrow();
  });
});
