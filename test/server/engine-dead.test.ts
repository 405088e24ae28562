// When the engine fails in a way no request explains (a step throws, its Worker dies), the daemon
// says so everywhere: requests in flight get a 5xx, new ones a 503, /health turns 503, the log
// says why, and the caller is told so that `vllmd serve` exits non-zero for its supervisor.
import { afterEach, expect, spyOn, test } from "bun:test";
import type { EngineClient } from "../../src/engine/client.ts";
import type { RunningServer } from "../../src/serving/start.ts";
import { RawConnection } from "../protocol/raw-client.ts";
import { serveFixture } from "./helpers.ts";

let srv: RunningServer | null = null;
afterEach(async () => {
  await srv?.close();
  srv = null;
});

const post = (s: RunningServer, body: object) =>
  fetch(`${s.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

/** A long greedy generation on the built-in model (slow enough to be running when the engine dies). */
const LONG = { prompt: "And God said", max_tokens: 400, ignore_eos: true, temperature: 0 };

/** The two ways an engine dies: the Worker posts that a step threw, or the Worker thread itself is gone. */
const deaths: [string, (c: EngineClient) => void][] = [
  ["a step that throws", (c) => (c as unknown as { onMessage(m: object): void }).onMessage({ type: "fatal", message: "engine step failed: vd_sync: device error" })],
  ["the Worker exiting", (c) => (c as unknown as { worker: Worker }).worker.terminate()],
];

for (const [how, kill] of deaths) {
  test(`engine death by ${how}: 5xx in flight, 503 after, /health 503, logged, reported once`, async () => {
    const reasons: string[] = [];
    const logged: string[] = [];
    srv = await serveFixture({ model: "models/default", msgpackPort: 0, onEngineDead: (r) => reasons.push(r) });
    const s = srv;
    const mp = await RawConnection.greeted(s.msgpack.tcpPort!);
    const stream = await post(s, { ...LONG, stream: true });
    const streamText = stream.text();
    mp.send({ type: "generate", id: 1, prompt: "And God said", params: { max_tokens: 400, ignore_eos: true } });
    const plain = post(s, LONG);
    await mp.next(); // the msgpack request is running
    const spy = spyOn(console, "error").mockImplementation((...a: unknown[]) => void logged.push(a.map(String).join(" ")));
    try {
      kill(s.ctx.client);
      const body = await streamText;
      expect(body).toContain('"code":500');
      expect(body.trimEnd()).toEndWith("data: [DONE]");
      expect((await plain).status).toBe(500);
      const frames = await mp.untilDone(1);
      expect(frames.at(-1)).toMatchObject({ type: "error", code: "internal" });
      const after = await post(s, { prompt: "hi", max_tokens: 1 });
      expect(after.status).toBe(503);
      expect(((await after.json()) as { error: { message: string } }).error.message).toContain("the engine is not running");
      expect((await fetch(`${s.url}/health`)).status).toBe(503);
      mp.send({ type: "generate", id: 2, prompt: "hi" });
      expect(await mp.next()).toMatchObject({ id: 2, type: "error", code: "unavailable" });
    } finally {
      spy.mockRestore();
      mp.destroy();
    }
    expect(reasons).toHaveLength(1);
    expect(logged.some((l) => l.startsWith("vllmd: the engine failed and cannot serve any more:"))).toBe(true);
  }, 30_000);
}

test("a Worker that dies while shutting down does not hang the shutdown", async () => {
  srv = await serveFixture({});
  const client = srv.ctx.client;
  const t0 = performance.now();
  const closing = client.shutdown();
  (client as unknown as { worker: Worker }).worker.terminate(); // it will never post "closed"
  await closing;
  expect(performance.now() - t0).toBeLessThan(5000);
  srv = null;
});

test("input Workers that are gone fail the request with a 5xx (HTTP) or an error frame carrying its id (msgpack)", async () => {
  srv = await serveFixture({ msgpackPort: 0 });
  const s = srv;
  s.ctx.inputs.close();
  const prompt = "word ".repeat(400); // over 1024 characters: tokenized in an input Worker
  const r = await post(s, { prompt, max_tokens: 1 });
  expect(r.status).toBe(500);
  const big = await fetch(`${s.url}/tokenize`, { method: "POST", body: JSON.stringify({ prompt: "x".repeat(2 ** 21) }) }); // parsed in a Worker
  expect(big.status).toBe(500);
  const mp = await RawConnection.greeted(s.msgpack.tcpPort!);
  mp.send({ type: "generate", id: "gone", prompt });
  expect(await mp.next()).toMatchObject({ type: "error", id: "gone", code: "internal" });
  mp.destroy();
});
