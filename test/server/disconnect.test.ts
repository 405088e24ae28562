// A client that leaves mid-stream or mid-request aborts its generations: the engine frees their
// KV blocks, fewer tokens are generated than asked for, and the daemon keeps serving.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type OpenAI from "openai";
import type { RunningServer } from "../../src/serving/start.ts";
import { clientFor, engineIdle, extra, metric, serveFixture } from "./helpers.ts";

let srv: RunningServer;
let client: OpenAI;
const N = 4;
const MAX = 200;

// One sequence at a time: the n choices run one after another, so the abort surely lands mid-way.
beforeAll(async () => {
  srv = await serveFixture({ maxNumSeqs: 1 });
  client = clientFor(srv);
  await client.models.list(); // the client's first call is slow; keep that out of the timed part
});
afterAll(() => srv.close());

const body = (stream: boolean) => extra({ model: srv.ctx.modelName, prompt: "Tell me a long story", n: N, max_tokens: MAX, stream }, { ignore_eos: true });

test("a client that aborts a stream mid-way frees its blocks", async () => {
  const before = await metric(srv, "vllm:generation_tokens_total");
  const ac = new AbortController();
  const stream = await client.completions.create(body(true) as OpenAI.CompletionCreateParamsStreaming, { signal: ac.signal });
  let chunks = 0;
  try {
    for await (const _ of stream) if (++chunks === 2) ac.abort();
  } catch (e) {
    expect((e as Error).name).toContain("Abort"); // the client may end the loop or throw
  }
  expect(chunks).toBe(2);
  expect(await engineIdle(srv)).toBe(true);
  const generated = (await metric(srv, "vllm:generation_tokens_total")) - before;
  expect(generated).toBeGreaterThan(0);
  expect(generated).toBeLessThan(N * MAX);
});

test("a client that leaves before a non-streamed answer frees its blocks", async () => {
  const before = await metric(srv, "vllm:generation_tokens_total");
  const ac = new AbortController();
  const pending = fetch(`${srv.url}/v1/completions`, { method: "POST", body: JSON.stringify(body(false)), signal: ac.signal });
  while (srv.ctx.client.stats.numRunning === 0) await Bun.sleep(1); // it is generating
  ac.abort();
  await expect(pending).rejects.toThrow();
  expect(await engineIdle(srv)).toBe(true);
  const generated = (await metric(srv, "vllm:generation_tokens_total")) - before;
  expect(generated).toBeLessThan(N * MAX);
});

test("afterwards the daemon still serves", async () => {
  const r = await client.completions.create(extra({ model: srv.ctx.modelName, prompt: "Hi", max_tokens: 3 }, { ignore_eos: true }));
  expect(r.usage!.completion_tokens).toBe(3);
  expect(await engineIdle(srv)).toBe(true);
});
