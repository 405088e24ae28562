// Requests coming and going over the msgpack protocol: aborts and disconnects free their KV
// blocks, one connection carries hundreds of requests, and the daemon keeps serving after it all.
import { afterAll, beforeAll, describe, expect, test, setDefaultTimeout } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, ProtocolError, type OutputFrame } from "../../src/protocol/client.ts";
import { startMsgpackServers } from "../../src/protocol/server.ts";
import { GenerationService } from "../../src/serving/generation.ts";
import { startServer, type RunningServer } from "../../src/serving/start.ts";
import { RawConnection, waitFor } from "./raw-client.ts";

setDefaultTimeout(30_000); // generous: the suite may share 2 cores with other work

// The built-in model, not a tiny fixture: its steps are slow enough and its context (512) long
// enough that an abort or a disconnect reliably lands while generation is still under way.
const ENGINE = { model: "models/default", device: "cpu" as const, cpuKvCacheBytes: 64 * 2 ** 20 };
let srv: RunningServer;
let dir: string;
let sock: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "vllmd-proto-"));
  sock = join(dir, "vllmd.sock");
  srv = await startServer({ engine: ENGINE, host: "127.0.0.1", port: 0, maxQueue: 256, socketPath: sock, msgpackPort: 0 });
});

afterAll(async () => {
  await srv.close();
  rmSync(dir, { recursive: true, force: true });
});

const prompt = [0, 11, 22, 33, 44, 55, 66, 77, 88, 99, 111, 122, 133, 144, 155, 166, 177, 188];
const long = { max_tokens: 400, ignore_eos: true, temperature: 0 };

/** vllm:generation_tokens_total, which counts every finished request's tokens, aborted ones too. */
const generatedTokens = () => Number(/^vllm:generation_tokens_total\{[^}]*\} (\S+)$/m.exec(srv.ctx.metrics.render())![1]);

/** The engine holds no request and no KV block (cached free blocks count as free). */
const engineIdle = (timeoutMs = 10_000) => waitFor(() => {
  const s = srv.ctx.client.stats;
  return s.numRunning === 0 && s.numWaiting === 0 && s.kvCacheUsage === 0 && srv.ctx.service.numInFlight === 0;
}, "the engine to free every request", timeoutMs);

describe("aborts and disconnects", () => {
  test("abort mid-stream ends the stream with finish_reason abort and frees the request", async () => {
    const c = await connect(sock);
    const s = c.generate({ id: "a", prompt_token_ids: prompt, params: long });
    const frames: OutputFrame[] = [];
    for await (const f of s) {
      frames.push(f);
      if (frames.length === 2) s.abort();
    }
    const last = frames.at(-1)!;
    expect(last).toMatchObject({ finished: true, finish_reason: "abort" });
    expect(last.usage!.completion_tokens).toBeLessThan(400);
    expect(last.usage!.completion_tokens).toBe(frames.reduce((n, f) => n + f.token_ids.length, 0));
    await engineIdle();
    await c.close();
  });

  test("leaving a for-await loop early aborts the request", async () => {
    const c = await connect(srv.msgpack.tcpPort!);
    const s = c.generate({ prompt_token_ids: prompt, params: long });
    for await (const f of s) if (f.token_ids.length) break;
    await waitFor(() => c.inFlight === 0, "the abort to come back");
    await engineIdle();
    await c.close();
  });

  test("closing a connection with requests in flight frees their blocks", async () => {
    // The server shares this thread with the test, so by the time the test sees the first frame
    // a starved test may find every request run to the end. Each try checks that every request
    // ended exactly once and every block came back; some try must catch requests mid-way.
    const m = srv.ctx.metrics;
    const n = 16, params = long;
    let cutShort = 0;
    for (let attempt = 0; attempt < 5 && cutShort === 0; attempt++) {
      const [aborted, ran] = [m.finished("abort"), m.finished("length")];
      const c = await RawConnection.greeted(sock);
      for (let i = 0; i < n; i++) c.send({ type: "generate", id: i, prompt_token_ids: [...prompt, i], params });
      await c.next(); // generation is under way
      c.destroy();
      await engineIdle();
      cutShort = m.finished("abort") - aborted;
      expect(cutShort + m.finished("length") - ran).toBe(n);
    }
    expect(cutShort).toBeGreaterThan(0);
  });

  test("the client library fails requests in flight when the connection goes", async () => {
    const c = await connect(sock);
    const whole = c.generate({ prompt_token_ids: prompt, params: long, stream: false });
    const stream = c.generate({ prompt_token_ids: prompt, params: long });
    await c.close();
    await expect(whole).rejects.toMatchObject({ code: "connection_closed" });
    await expect(stream.result()).rejects.toBeInstanceOf(ProtocolError);
    expect(() => c.generate({ prompt_token_ids: prompt })).toThrow(ProtocolError);
    await engineIdle();
  });
});

describe("one connection, many requests", () => {
  test("200 concurrent requests all finish, each under its own id", async () => {
    const c = await connect(sock);
    const prompts = [0, 1, 2, 3].map((k) => prompt.map((t) => (t + 13 * k) % 384));
    const runs = Array.from({ length: 200 }, (_, i) => {
      const id = i % 2 ? `req-${i}` : i; // strings and integers on one connection
      const req = { id, prompt_token_ids: prompts[i % 4]!, params: { max_tokens: 1 + (i % 4), temperature: 0, ignore_eos: true } };
      return i % 3 ? c.generate({ ...req, stream: false }) : c.generate(req).result();
    });
    const results = await Promise.all(runs);
    results.forEach((r, i) => {
      expect(r.id).toBe(i % 2 ? `req-${i}` : i);
      expect(r.token_ids).toHaveLength(1 + (i % 4));
      expect(r.usage).toEqual({ prompt_tokens: prompt.length, completion_tokens: 1 + (i % 4), total_tokens: prompt.length + 1 + (i % 4) });
    });
    // Greedy and batch-invariant: the same prompt gives the same tokens wherever it sat in the batch.
    for (let i = 4; i < 200; i++) {
      const a = results[i]!.token_ids, b = results[i % 4]!.token_ids;
      expect(a.slice(0, b.length)).toEqual(b.slice(0, a.length));
    }
    expect(c.inFlight).toBe(0);
    await c.close();
    await engineIdle();
  });

  test("the client library rejects a bad request with the server's error, and reuses no live id", async () => {
    const c = await connect(sock);
    await expect(c.generate({ prompt_token_ids: prompt, params: { top_p: 2 }, stream: false })).rejects.toMatchObject({
      code: "invalid_request", message: expect.stringContaining("params.top_p"),
    });
    const s = c.generate({ id: 7, prompt_token_ids: prompt, params: { max_tokens: 3 } });
    expect(() => c.generate({ id: 7, prompt_token_ids: prompt })).toThrow("already in flight");
    expect((await s.result()).token_ids).toHaveLength(3);
    expect(() => c.generate({ id: 1.5, prompt_token_ids: prompt })).toThrow("id must be");
    expect(() => c.generate({ prompt: "x".repeat(c.server.max_frame_bytes) })).toThrow("over the server's max_frame_bytes");
    expect((await c.generate({ prompt_token_ids: prompt, params: { max_tokens: 1 }, stream: false })).token_ids).toHaveLength(1);
    await c.close();
  });
});

describe("backpressure", () => {
  test("output a paused client leaves unread is kept whole and arrives intact when it reads again", async () => {
    const c = await RawConnection.greeted(sock);
    c.socket.pause();
    const n = 24, maxTokens = 220;
    for (let i = 0; i < n; i++) {
      c.send({ type: "generate", id: i, prompt_token_ids: [...prompt, i], params: { max_tokens: maxTokens, ignore_eos: true, logprobs: 20 } });
    }
    await waitFor(() => srv.ctx.service.numInFlight > 0, "the requests to start");
    await engineIdle(20_000); // everything generated while the client read nothing
    c.socket.resume();
    const tokens = new Map<unknown, number>();
    for (let done = 0; done < n; ) {
      const f = await c.next();
      expect(f.type).toBe("output");
      tokens.set(f.id, (tokens.get(f.id) ?? 0) + (f.token_ids as number[]).length);
      if (f.finished) done++;
    }
    expect([...tokens.values()]).toEqual(Array(n).fill(maxTokens));
    expect(c.bytesReceived).toBeGreaterThan(2 ** 20); // far beyond what the kernel buffers for a unix socket
    c.destroy();
  });
});

describe("limits", () => {
  test("beyond --max-queue a request gets busy, and the connection goes on", async () => {
    const { client, tokenizer, metrics, maxModelLen } = srv.ctx;
    const service = new GenerationService(client, tokenizer, metrics, { maxModelLen, maxNumSeqs: 1, maxQueue: 1 });
    const m = await startMsgpackServers({ ...srv.ctx, service }, { socketPath: null, port: 0, hostname: "127.0.0.1" });
    const c = await RawConnection.greeted(m.tcpPort!);
    for (let i = 0; i < 4; i++) c.send({ type: "generate", id: i, prompt_token_ids: prompt, params: long, stream: false });
    const busy = [await c.next(), await c.next()];
    expect(busy.map((f) => [f.code, f.id])).toEqual([["busy", 2], ["busy", 3]]);
    expect(busy[0]!.message).toContain("--max-queue 1");
    c.send({ type: "abort", id: 0 });
    c.send({ type: "abort", id: 1 });
    const ends = [await c.next(), await c.next()];
    // Aborted, or (on a starved machine) already run to the end before the aborts arrived:
    // either way each accepted request ends exactly once; aborts are tested on their own above.
    expect(ends.map((f) => f.id).sort()).toEqual([0, 1]);
    for (const f of ends) expect(["abort", "length"]).toContain(String(f.finish_reason));
    c.destroy();
    m.close();
    await engineIdle();
  });

  test("a client that leaves too much output unread is disconnected and its requests aborted", async () => {
    // A unix socket: the kernel buffers little of it, where loopback TCP may absorb megabytes.
    const path = join(dir, "overflow.sock");
    const m = await startMsgpackServers(srv.ctx, { socketPath: path, port: null, hostname: "127.0.0.1" }, { maxQueuedBytes: 64 * 1024, closeGraceMs: 200 });
    const before = generatedTokens();
    const aborted = srv.ctx.metrics.finished("abort");
    const c = await RawConnection.greeted(path);
    c.socket.pause();
    for (let i = 0; i < 24; i++) c.send({ type: "generate", id: i, prompt_token_ids: [...prompt, i], params: { ...long, max_tokens: 220, logprobs: 20 } });
    await waitFor(() => generatedTokens() > before, "some requests to be cut short");
    await engineIdle(20_000);
    expect(srv.ctx.metrics.finished("abort") - aborted).toBeGreaterThan(0); // cut short by the disconnect
    c.socket.resume();
    await c.closed;
    m.close();
  });
});

describe("after all of it", () => {
  test("a new connection is served and nothing is left running", async () => {
    await engineIdle();
    for (const target of [sock, srv.msgpack.tcpPort!]) {
      const c = await connect(target);
      expect(c.server.model).toBe("default");
      const r = await c.generate({ prompt: "the end", params: { max_tokens: 3, temperature: 0 }, stream: false });
      expect(r.usage.completion_tokens).toBeGreaterThan(0);
      expect(typeof r.text).toBe("string");
      await c.close();
    }
  });
});
