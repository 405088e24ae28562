// Async scheduling must not change what any request gets: the same tokens, finish reasons and
// logprobs as synchronous steps, over a workload with staggered arrivals, shared prefixes,
// preemption by a small KV pool, seeded sampling, stop tokens, min_tokens, logit bias and
// penalties (which make the engine wait for the tokens in flight before planning the next step).
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { Engine } from "../src/engine/engine.ts";
import { defaultSamplingParams, type SamplingParams } from "../src/engine/request.ts";
import { makeEngine } from "./helpers/engine-run.ts";

const MODEL = join(import.meta.dir, "fixtures", "llama");

function lcg(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

interface Plan {
  id: string;
  prompt: number[];
  params: Partial<SamplingParams>;
  atStep: number;
}

function makePlans(n: number): Plan[] {
  const rand = lcg(11);
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const shared = Array.from({ length: 40 }, () => int(4, 299));
  return Array.from({ length: n }, (_, i) => {
    const own = Array.from({ length: int(2, 60) }, () => int(4, 299));
    const params: Partial<SamplingParams> = { maxTokens: int(3, 28), ignoreEos: true, seed: BigInt(i) };
    if (i % 2 === 1) Object.assign(params, { temperature: 0.9, topP: 0.9, topK: 40 });
    else params.temperature = 0;
    if (i % 5 === 2) params.logprobs = 2;
    if (i % 7 === 3) params.logitBias = new Map([[int(4, 299), 5]]);
    if (i % 9 === 4) Object.assign(params, { repetitionPenalty: 1.3, frequencyPenalty: 0.5 });
    return { id: `r${i}`, prompt: [1, ...(i % 3 === 0 ? shared : []), ...own], params, atStep: int(0, 20) };
  });
}

interface Outcome {
  tokens: number[];
  reason: string | null;
  logprobs: number[];
}

function run(e: Engine, plans: Plan[], onStep?: (e: Engine) => void): Map<string, Outcome> {
  const out = new Map<string, Outcome>();
  const queue = [...plans].sort((a, b) => a.atStep - b.atStep);
  for (let step = 0; queue.length || e.hasUnfinished; step++) {
    while (queue.length && queue[0]!.atStep <= step) {
      const p = queue.shift()!;
      out.set(p.id, { tokens: [], reason: null, logprobs: [] });
      e.addRequest(p.id, p.prompt, defaultSamplingParams(p.params));
    }
    e.launchSteps();
    onStep?.(e);
    for (const o of e.finishStep()) {
      const r = out.get(o.id)!;
      r.tokens.push(...o.newTokenIds);
      for (const lp of o.logprobs ?? []) r.logprobs.push(lp.logprob, ...lp.top.flatMap((t) => [t.id, t.logprob]));
      if (o.finished) r.reason = o.finishReason;
    }
    if (step > 20_000) throw new Error("engine did not finish");
  }
  return out;
}

function runWith(asyncScheduling: "on" | "off", plans: Plan[], numBlocks: number, decodeGraphs: "auto" | "replay" = "auto") {
  const e = makeEngine({ model: MODEL, asyncScheduling, numBlocksOverride: numBlocks, maxNumBatchedTokens: 96, maxNumSeqs: 12, decodeGraphs });
  try {
    let maxInFlight = 0;
    const out = run(e, plans, (eng) => (maxInFlight = Math.max(maxInFlight, eng.stepsInFlight.length)));
    expect(e.scheduler.kv.numFreeBlocks).toBe(e.info.numBlocks);
    return { out, maxInFlight, preemptions: e.scheduler.numPreemptionsTotal, graphSteps: e.numGraphSteps };
  } finally {
    e.dispose();
  }
}

describe("async scheduling gives what synchronous steps give", () => {
  // First pass: pick stop tokens and min_tokens from what the requests generate, so that some stop early.
  const base = makePlans(28);
  const first = runWith("off", base, 4096).out;
  const plans = base.map((p, i) => {
    const toks = first.get(p.id)!.tokens;
    if (i % 4 !== 1 || toks.length < 6) return p;
    return { ...p, params: { ...p.params, stopTokenIds: [toks[3]!], minTokens: i % 8 === 1 ? 2 : 0 } };
  });

  test.each([
    ["a roomy KV cache", 4096, "auto"],
    ["a KV cache small enough to preempt", 40, "auto"],
    ["decode steps padded to graph buckets (replayed eagerly)", 4096, "replay"],
  ] as const)("%s", (_name, numBlocks, decodeGraphs) => {
    const sync = runWith("off", plans, numBlocks);
    const pipelined = runWith("on", plans, numBlocks, decodeGraphs);
    expect(pipelined.maxInFlight).toBe(2);
    expect(sync.maxInFlight).toBe(1);
    for (const p of plans) expect([p.id, pipelined.out.get(p.id)]).toEqual([p.id, sync.out.get(p.id)]);
    const reasons = [...sync.out.values()].map((o) => o.reason);
    expect(reasons.filter((r) => r === "stop").length).toBeGreaterThan(2);
    expect(reasons.filter((r) => r === "length").length).toBeGreaterThan(2);
    if (numBlocks < 100) expect(pipelined.preemptions).toBeGreaterThan(0);
    if (decodeGraphs === "replay") expect(pipelined.graphSteps).toBeGreaterThan(10);
  });
});
