// Scoring (what eval-ppl runs on): token logprobs from one chunked prefill must agree with
// transformers' logits, whatever the chunk size, and leave the engine fit to serve.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { perplexity } from "../src/engine/scorer.ts";
import { makeEngine, runToCompletion } from "./helpers/engine-run.ts";

const DIR = join(import.meta.dir, "fixtures", "llama");
const golden = JSON.parse(readFileSync(join(DIR, "golden.json"), "utf8"));
const prompt = golden.prompts.find((p: { name: string }) => p.name === "ids_40");

function logSoftmax(xs: number[], i: number): number {
  const m = Math.max(...xs);
  return xs[i]! - m - Math.log(xs.reduce((s, x) => s + Math.exp(x - m), 0));
}

test("score() gives transformers' next-token logprobs, for any chunk size", () => {
  const next = [...prompt.token_ids, 5, 17, 300];
  for (const maxNumSeqs of [256, 7]) {
    const engine = makeEngine({ model: DIR, maxNumSeqs });
    try {
      const lp = engine.score(next);
      expect(lp.length).toBe(next.length);
      expect(lp[prompt.token_ids.length]).toBeCloseTo(logSoftmax(prompt.last_logits, 5), 4);
      for (let i = 1; i < next.length; i++) expect(lp[i]!).toBeLessThan(0);
    } finally {
      engine.dispose();
    }
  }
});

test("chunk size does not change the scores", () => {
  const ids = golden.prompts.map((p: { token_ids: number[] }) => p.token_ids).flat().slice(0, 60);
  const a = makeEngine({ model: DIR, maxNumSeqs: 256 });
  const b = makeEngine({ model: DIR, maxNumSeqs: 5 });
  try {
    expect(Array.from(b.score(ids))).toEqual(Array.from(a.score(ids)));
  } finally {
    a.dispose();
    b.dispose();
  }
});

test("after scoring, the engine still generates transformers' greedy tokens", () => {
  const engine = makeEngine({ model: DIR });
  try {
    engine.score(prompt.token_ids.slice().reverse());
    const out = runToCompletion(engine, [{ id: "p", prompt: prompt.token_ids }]);
    expect(out.get("p")).toEqual(prompt.greedy);
  } finally {
    engine.dispose();
  }
});

test("perplexity windows: chunks of window-1 tokens after a BOS", () => {
  const calls: number[][] = [];
  const score = (ids: number[]) => {
    calls.push(ids);
    return Float64Array.from(ids, (_, i) => (i === 0 ? 0 : Math.log(0.5)));
  };
  const r = perplexity(score, [9, 8, 7, 6, 5], 0, 3);
  expect(calls).toEqual([[0, 9, 8], [0, 7, 6], [0, 5]]);
  expect(r.tokens).toBe(5);
  expect(r.windows).toBe(3);
  expect(r.ppl).toBeCloseTo(2, 10);
});
