// The engine Worker with async scheduling (two steps in flight, as on GPUs) behind the HTTP server:
// concurrent requests get what a synchronous server gives them, a stream aborted mid-way frees
// its blocks, and the server keeps serving.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type OpenAI from "openai";
import type { RunningServer } from "../../src/serving/start.ts";
import { clientFor, engineIdle, extra, FIXTURE, serveFixture } from "./helpers.ts";

let pipelined: RunningServer;
let sync: RunningServer;

beforeAll(async () => {
  const engine = (asyncScheduling: "on" | "off") => ({ model: FIXTURE, device: "cpu" as const, maxNumSeqs: 8, asyncScheduling });
  [pipelined, sync] = await Promise.all([serveFixture({ engine: engine("on") }), serveFixture({ engine: engine("off") })]);
});
afterAll(async () => {
  await Promise.all([pipelined.close(), sync.close()]);
});

const prompts = ["Once upon a time", "The quick brown fox", "In the beginning", "A B C D E F G", "Tell me", "Hello"];

async function completeAll(srv: RunningServer): Promise<string[]> {
  const client = clientFor(srv);
  return Promise.all(prompts.map(async (prompt, i) => {
    const r = await client.completions.create(extra(
      { model: srv.ctx.modelName, prompt, max_tokens: 6 + 5 * i, temperature: i % 2 ? 0.8 : 0, seed: i, logprobs: i % 3 },
      { ignore_eos: i % 2 === 0 },
    ));
    const c = r.choices[0]!;
    return JSON.stringify([c.text, c.finish_reason, c.logprobs?.token_logprobs, r.usage?.completion_tokens]);
  }));
}

test("concurrent requests get the same answers as from a server stepping synchronously", async () => {
  expect(pipelined.info.asyncScheduling).toBe(true);
  expect(sync.info.asyncScheduling).toBe(false);
  const [a, b] = await Promise.all([completeAll(pipelined), completeAll(sync)]);
  expect(a).toEqual(b);
  expect(await engineIdle(pipelined)).toBe(true);
});

test("a stream aborted mid-way frees its blocks; the server keeps serving", async () => {
  const client = clientFor(pipelined);
  const ac = new AbortController();
  const body = extra({ model: pipelined.ctx.modelName, prompt: "Tell me a long story", max_tokens: 200, stream: true as const }, { ignore_eos: true });
  const stream = await client.completions.create(body, { signal: ac.signal });
  let chunks = 0;
  try {
    for await (const _ of stream) if (++chunks === 3) ac.abort();
  } catch (e) {
    expect((e as Error).name).toContain("Abort");
  }
  expect(chunks).toBe(3);
  expect(await engineIdle(pipelined)).toBe(true);
  const again = await client.completions.create({ model: pipelined.ctx.modelName, prompt: "Hello", max_tokens: 4 });
  expect(again.usage?.completion_tokens).toBeGreaterThan(0);
});
