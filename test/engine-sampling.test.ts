// Sampling parameters end to end through the engine (scheduler, runner, device sampler).
import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import { makeEngine, runToCompletion } from "./helpers/engine-run.ts";

const engine = makeEngine({ model: join(import.meta.dir, "fixtures", "llama") });
afterAll(() => engine.dispose());
const EOS = 1;
const prompt = [0, 40, 41, 42, 43];

test("min_tokens: EOS cannot be sampled before min_tokens outputs, then stops", () => {
  const forceEos = new Map([[EOS, 100]]);
  const out = runToCompletion(engine, [
    { id: "min5", prompt, params: { maxTokens: 20, minTokens: 5, logitBias: forceEos } },
    { id: "min0", prompt, params: { maxTokens: 20, logitBias: forceEos } },
  ]);
  expect(out.get("min0")).toEqual([EOS]);
  const min5 = out.get("min5")!;
  expect(min5.length).toBe(6);
  expect(min5.slice(0, 5)).not.toContain(EOS);
  expect(min5[5]).toBe(EOS);
});

test("min_tokens also holds back stop_token_ids", () => {
  const out = runToCompletion(engine, [
    { id: "s", prompt, params: { maxTokens: 20, minTokens: 3, stopTokenIds: [77], logitBias: new Map([[77, 100]]) } },
  ]);
  const s = out.get("s")!;
  expect(s.length).toBe(4);
  expect(s.slice(0, 3)).not.toContain(77);
  expect(s[3]).toBe(77);
});

test("logprobs come back for requests that ask, with the chosen token's raw logprob", () => {
  engine.addRequest("lp", prompt, { ...baseParams(), logprobs: 3, maxTokens: 4 });
  const got: { logprob: number; top: { id: number; logprob: number }[] }[] = [];
  while (engine.hasUnfinished) for (const o of engine.step()) if (o.logprobs) got.push(...o.logprobs);
  expect(got.length).toBe(4);
  for (const g of got) {
    expect(g.top.length).toBe(3);
    expect(g.top[0]!.logprob).toBeGreaterThanOrEqual(g.top[1]!.logprob);
    expect(g.logprob).toBeCloseTo(g.top[0]!.logprob, 6); // greedy picks the top token
  }
});

test("in one batch, each request gets the logprobs it asked for: none, the chosen token's, or its own top-n", () => {
  const counts = new Map<string, number[]>([["none", []], ["chosen", []], ["top1", []], ["top4", []]]);
  const asks: [string, number][] = [["none", -1], ["chosen", 0], ["top1", 1], ["top4", 4]];
  for (const [id, logprobs] of asks) engine.addRequest(id, prompt, { ...baseParams(), logprobs, maxTokens: 3 });
  while (engine.hasUnfinished) {
    for (const o of engine.step()) counts.get(o.id)!.push(o.logprobs ? o.logprobs[0]!.top.length : -1);
  }
  expect(Object.fromEntries(counts)).toEqual({ none: [-1, -1, -1], chosen: [0, 0, 0], top1: [1, 1, 1], top4: [4, 4, 4] });
});

test("penalty and bias lists past their first capacity (1024 entries) grow and stay each request's own", () => {
  // 6 requests x (200 seen tokens + 384 biases): both lists outgrow 1024 entries in one step.
  const reqs = Array.from({ length: 6 }, (_, i) => {
    const prompt = Array.from({ length: 200 }, (_, k) => (k * 7 + i * 13) % 384);
    const logitBias = new Map(Array.from({ length: 384 }, (_, t) => [t, ((t * 31 + i * 17) % 11) / 4] as [number, number]));
    return { id: `g${i}`, prompt, params: { maxTokens: 6, repetitionPenalty: 1.5, presencePenalty: 0.4, logitBias } };
  });
  const together = runToCompletion(engine, reqs);
  for (const r of reqs) expect({ id: r.id, tokens: runToCompletion(engine, [r]).get(r.id) }).toEqual({ id: r.id, tokens: together.get(r.id)! });
});

function baseParams() {
  return {
    maxTokens: 4, temperature: 0, topP: 1, topK: 0, minP: 0, seed: 1n, repetitionPenalty: 1, presencePenalty: 0,
    frequencyPenalty: 0, logitBias: new Map<number, number>(), logprobs: -1, ignoreEos: true, stopTokenIds: [], minTokens: 0,
  };
}
