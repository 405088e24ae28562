// A request's greedy output must not depend on what else the engine is doing: alone, inside a
// batch of 32 mixed-length requests, split by chunked prefill, after a prefix-cache hit, and
// after preemption by a tiny KV pool. Also: once everything finishes, every block is free.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { EngineConfigInput } from "../src/config.ts";
import type { Engine } from "../src/engine/engine.ts";
import { makeEngine, runDetailed, runToCompletion, type RunRequest } from "./helpers/engine-run.ts";

const MODEL = join(import.meta.dir, "fixtures", "llama");

function lcg(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

function randomPrompt(rand: () => number, len: number, vocab = 300): number[] {
  return [1, ...Array.from({ length: len - 1 }, () => 4 + Math.floor(rand() * (vocab - 4)))];
}

const rand = lcg(7);
const target: RunRequest = { id: "target", prompt: randomPrompt(rand, 45), params: { maxTokens: 24, ignoreEos: true } };
const others: RunRequest[] = Array.from({ length: 31 }, (_, i) => ({
  id: `o${i}`,
  prompt: randomPrompt(rand, 3 + Math.floor(rand() * 110)),
  params: { maxTokens: 4 + Math.floor(rand() * 30), ignoreEos: true },
  atStep: Math.floor(rand() * 6),
}));

function expectAllBlocksFree(engine: Engine) {
  expect(engine.scheduler.kv.numFreeBlocks).toBe(engine.info.numBlocks);
  expect(engine.hasUnfinished).toBe(false);
}

function run(cfg: Omit<EngineConfigInput, "model">, reqs: RunRequest[], check?: (e: Engine) => void) {
  const engine = makeEngine({ ...cfg, model: MODEL });
  try {
    const out = runToCompletion(engine, reqs);
    check?.(engine);
    expectAllBlocksFree(engine);
    return out;
  } finally {
    engine.dispose();
  }
}

describe("batch invariance (greedy, bitwise)", () => {
  const alone = run({}, [target]).get("target")!;

  test("alone: a full continuation", () => {
    expect(alone.length).toBe(24);
  });

  test("inside a batch of 32 mixed-length requests", () => {
    expect(run({}, [target, ...others]).get("target")).toEqual(alone);
  });

  test("with decode steps padded into graph buckets (replayed; every request as when eager)", () => {
    const reqs = [target, ...others];
    const eager = run({ decodeGraphs: "off" }, reqs);
    let graphSteps = 0;
    const padded = run({ decodeGraphs: "replay" }, reqs, (e) => (graphSteps = e.numGraphSteps));
    expect(graphSteps).toBeGreaterThan(10);
    expect(padded.get("target")).toEqual(alone);
    for (const r of reqs) expect(padded.get(r.id)).toEqual(eager.get(r.id)!);
  });

  test("with chunked prefill (8-token budget)", () => {
    const out = run({ maxNumBatchedTokens: 8 }, [{ ...target, atStep: 1 }, ...others]);
    expect(out.get("target")).toEqual(alone);
  });

  test("with a prefix-cache hit", () => {
    const warm: RunRequest = { id: "warm", prompt: target.prompt.slice(0, 40), params: { maxTokens: 2 } };
    const engine = makeEngine({ model: MODEL });
    try {
      runToCompletion(engine, [warm]);
      const res = runDetailed(engine, [target]);
      expect(res.cached.get("target")).toBe(32); // the warm prompt's two full blocks
      expect(res.tokens.get("target")).toEqual(alone);
      expectAllBlocksFree(engine);
    } finally {
      engine.dispose();
    }
  });

  test("with preemption forced by a tiny KV pool", () => {
    let preemptions = 0;
    const out = run({ numBlocksOverride: 14, maxModelLen: 224, maxNumBatchedTokens: 64 }, [target, ...others.slice(0, 12)], (e) => {
      preemptions = e.stats().numPreemptionsTotal;
    });
    expect(preemptions).toBeGreaterThan(0);
    expect(out.get("target")).toEqual(alone);
  });

  test("seeded sampling is the same alone and in a batch, and differs by seed", () => {
    const sampled = (seed: bigint): RunRequest => ({
      ...target, id: `s${seed}`, params: { maxTokens: 24, ignoreEos: true, temperature: 0.9, topP: 0.95, topK: 50, seed },
    });
    const alone = run({}, [sampled(42n)]).get("s42")!;
    const batched = run({ maxNumBatchedTokens: 16 }, [...others, sampled(42n), sampled(43n)]);
    expect(batched.get("s42")).toEqual(alone);
    expect(batched.get("s43")).not.toEqual(alone);
  });
});
