// Graceful shutdown (vLLM's --shutdown-timeout): no new work is taken, work in flight may finish
// within the timeout, and what is still running then ends with an error its client can read (an
// SSE error event and [DONE]; a msgpack error frame) rather than a cut connection.
import { expect, test } from "bun:test";
import { join } from "node:path";
import type { RunningServer } from "../../src/serving/start.ts";
import { RawConnection } from "../protocol/raw-client.ts";
import { serveFixture } from "./helpers.ts";

const post = (s: RunningServer, body: object) =>
  fetch(`${s.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

const LONG = { prompt: "And God said", max_tokens: 400, ignore_eos: true, temperature: 0 };

test("past the timeout, streams end with an error event and [DONE], msgpack requests with an error frame", async () => {
  const srv = await serveFixture({ model: "models/default", msgpackPort: 0 });
  const mp = await RawConnection.greeted(srv.msgpack.tcpPort!);
  const stream = await post(srv, { ...LONG, stream: true });
  const text = stream.text();
  mp.send({ type: "generate", id: "m", prompt: "And God said", params: { max_tokens: 400, ignore_eos: true } });
  await mp.next();
  const t0 = performance.now();
  await srv.shutdown(300);
  expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
  const body = await text;
  const events = body.trim().split("\n\n");
  expect(events.at(-1)).toBe("data: [DONE]");
  const err = JSON.parse(events.at(-2)!.slice("data: ".length)) as { error: { code: number; message: string } };
  expect(err.error.code).toBe(503);
  expect(err.error.message).toContain("the server shut down before this request finished");
  expect(events.length).toBeGreaterThan(3); // tokens streamed before the end
  const frames = await mp.untilDone("m");
  expect(frames.at(-1)).toMatchObject({ type: "error", code: "unavailable" });
  await mp.closed; // the server closed the connection once the frame was out
  expect(srv.ctx.client.deadReason).toBeNull();
}, 30_000);

test("within the timeout, running requests finish normally while new ones are refused", async () => {
  const srv = await serveFixture({ model: "models/default", msgpackPort: 0 });
  const mp = await RawConnection.greeted(srv.msgpack.tcpPort!);
  const running = post(srv, { ...LONG, max_tokens: 60 });
  mp.send({ type: "generate", id: "a", prompt: "And God said", params: { max_tokens: 30, ignore_eos: true } });
  await mp.next();
  const done = srv.shutdown(20_000);
  mp.send({ type: "generate", id: "late", prompt: "hi" });
  const r = await running;
  expect(r.status).toBe(200);
  expect(((await r.json()) as { choices: { finish_reason: string }[] }).choices[0]!.finish_reason).toBe("length");
  const frames: Record<string, unknown>[] = [];
  while (!frames.some((f) => f.id === "a" && f.finished)) frames.push(await mp.next());
  expect(frames.find((f) => f.id === "late")).toMatchObject({ type: "error", code: "unavailable" });
  await expect(fetch(`${srv.url}/health`)).rejects.toThrow(); // no longer listening
  await done;
});

test("`vllmd serve --shutdown-timeout` drains on SIGTERM and exits 0", async () => {
  const proc = Bun.spawn([process.execPath, join(import.meta.dir, "../../src/cli.ts"), "serve", "--port", "0", "--shutdown-timeout", "30"], { stdout: "pipe", stderr: "pipe" });
  const reader = proc.stdout.getReader();
  let out = "";
  while (!out.includes("ready in")) out += new TextDecoder().decode((await reader.read()).value);
  const url = /http\s+(http:\/\/\S+)\/v1/.exec(out)![1]!;
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...LONG, max_tokens: 200, stream: true }),
  });
  const body = res.body!.getReader();
  let text = new TextDecoder().decode((await body.read()).value); // running: a first chunk is out
  proc.kill("SIGTERM");
  for (let c = await body.read(); !c.done; c = await body.read()) text += new TextDecoder().decode(c.value);
  expect(text).toContain('"finish_reason":"length"');
  expect(text.trimEnd()).toEndWith("data: [DONE]");
  expect(await proc.exited).toBe(0);
  expect(await new Response(proc.stderr).text()).toContain("shutting down; requests in flight have 30 s to finish");
}, 30_000);
