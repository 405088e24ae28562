// Connection limits and timeouts (finding 4 of issue 9): what a client holds without finishing a
// request is bounded in number and in time, on both front ends, and nobody else waits for it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect, type Socket } from "node:net";
import { createApp } from "../../src/server/app.ts";
import type { RunningServer } from "../../src/serving/start.ts";
import { RawConnection, waitFor } from "../protocol/raw-client.ts";
import { serveFixture } from "./helpers.ts";

let srv: RunningServer;
const LIMITS = { maxConnections: 3, bodyTimeoutS: 0.4, keepAliveTimeoutS: 1, msgpackIdleTimeoutS: 0.4 };

beforeAll(async () => {
  srv = await serveFixture({ msgpackPort: 0, limits: LIMITS });
});
afterAll(() => srv.close());

/** A raw HTTP connection that sends `head` and collects whatever comes back until it closes. */
function rawHttp(head: string): { socket: Socket; reply: () => string; closed: Promise<number> } {
  let reply = "";
  const t0 = performance.now();
  const socket = connect(Number(new URL(srv.url).port), "127.0.0.1", () => socket.write(head));
  socket.on("data", (d) => void (reply += d.toString()));
  socket.on("error", () => {});
  const closed = new Promise<number>((r) => socket.once("close", () => r(performance.now() - t0)));
  return { socket, reply: () => reply, closed };
}

const unfinishedBody = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"prompt\":";

describe("HTTP", () => {
  test("a body that does not arrive in time is a JSON 408, and the connection closes", async () => {
    const c = rawHttp(unfinishedBody);
    const ms = await c.closed;
    expect(c.reply()).toStartWith("HTTP/1.1 408");
    expect(c.reply()).toContain('"code":408');
    expect(ms).toBeGreaterThanOrEqual(350);
    expect(ms).toBeLessThan(3000);
  });

  test("a stalled body gets its 408 even when the keep-alive timeout is shorter than the body timeout", async () => {
    const other = await serveFixture({ limits: { keepAliveTimeoutS: 1, bodyTimeoutS: 5 } });
    try {
      let reply = "";
      const socket = connect(Number(new URL(other.url).port), "127.0.0.1", () => socket.write(unfinishedBody));
      socket.on("data", (d) => void (reply += d.toString()));
      const t0 = performance.now();
      await new Promise((r) => socket.once("close", r));
      expect(reply).toStartWith("HTTP/1.1 408"); // not a silent close by the idle timer at ~4 s
      expect(performance.now() - t0).toBeGreaterThanOrEqual(4900);
    } finally {
      await other.close();
    }
  }, 20_000);

  test("past --max-connections requests in progress, the next with a body is a 503 at once; /health still answers", async () => {
    const held = Array.from({ length: LIMITS.maxConnections }, () => rawHttp(unfinishedBody));
    await Bun.sleep(100); // all of them are being read
    const t0 = performance.now();
    const r = await fetch(`${srv.url}/v1/completions`, { method: "POST", body: JSON.stringify({ prompt: "hi", max_tokens: 1 }) });
    expect(performance.now() - t0).toBeLessThan(300);
    expect(r.status).toBe(503);
    expect(((await r.json()) as { error: { message: string } }).error.message).toContain("--max-connections 3");
    expect((await fetch(`${srv.url}/health`)).status).toBe(200); // no body: answered at once, holds nothing
    await Promise.all(held.map((h) => h.closed)); // the body timeout frees them
    const after = await fetch(`${srv.url}/v1/completions`, { method: "POST", body: JSON.stringify({ prompt: "hi", max_tokens: 1 }) });
    expect(after.status).toBe(200);
  });

  test("an idle keep-alive connection is closed after --keep-alive-timeout, also after a request that lifted it", async () => {
    const post = (path: string, body: string) =>
      `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    const conns = [
      rawHttp("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"),
      rawHttp(post("/tokenize", '{"prompt":"hi"}')), // its body lifted the idle limit (readBody)
      rawHttp(post("/v1/completions", '{"prompt":"hi","max_tokens":2,"stream":true}')), // a stream lifts it too
      rawHttp(post("/v1/nothing", "{}")), // a 404 whose body was never read
    ];
    const times = await Promise.all(conns.map((c) => c.closed));
    for (const [i, c] of conns.entries()) {
      expect(c.reply()).toStartWith(i === 3 ? "HTTP/1.1 404" : "HTTP/1.1 200");
      expect(times[i]).toBeGreaterThanOrEqual(900);
      expect(times[i]).toBeLessThan(9000); // Bun checks idle connections every 4 s
    }
  }, 15_000);

  test("once its body is in, a request is exempt from the keep-alive timeout (long prefills, slow streams)", async () => {
    const lifted: [Request, number][] = [];
    const server = { timeout: (req: Request, s: number) => void lifted.push([req, s]) };
    const app = createApp(srv.ctx);
    for (const [path, body] of [["/v1/completions", { prompt: "hi", max_tokens: 2 }], ["/v1/chat/completions", { messages: [{ role: "user", content: "hi" }], max_tokens: 2 }], ["/tokenize", { prompt: "hi" }]] as const) {
      const req = new Request(`http://x${path}`, { method: "POST", body: JSON.stringify(body) });
      expect((await app.fetch(req, server)).status).toBe(200);
      expect(lifted.at(-1)).toEqual([req, 0]);
    }
  });
});

describe("msgpack", () => {
  test("past --max-connections, a new connection gets a busy frame and is closed", async () => {
    const open = await Promise.all(Array.from({ length: LIMITS.maxConnections }, () => RawConnection.greeted(srv.msgpack.tcpPort!)));
    const extra = await RawConnection.open(srv.msgpack.tcpPort!);
    expect(await extra.next()).toMatchObject({ type: "error", code: "busy" });
    await extra.closed;
    open[0]!.destroy();
    await waitFor(() => srv.msgpack.numConnections < LIMITS.maxConnections, "a slot to free");
    const again = await RawConnection.greeted(srv.msgpack.tcpPort!);
    again.destroy();
    for (const c of open) c.destroy();
  });

  test("a connection with no request is closed after --msgpack-idle-timeout; one waiting on a generation is not", async () => {
    const idle = await RawConnection.greeted(srv.msgpack.tcpPort!);
    const busy = await RawConnection.greeted(srv.msgpack.tcpPort!);
    busy.send({ type: "generate", id: 1, prompt: "hi", params: { max_tokens: 200, ignore_eos: true }, stream: false });
    expect(await idle.next(3000)).toMatchObject({ type: "error", code: "idle_timeout" });
    await idle.closed;
    const frames = await busy.untilDone(1);
    expect(frames.at(-1)).toMatchObject({ finished: true });
    expect(busy.isClosed).toBe(false);
    expect(await busy.next(3000)).toMatchObject({ type: "error", code: "idle_timeout" }); // idle again afterwards
  });
});

test("msgpack: trickling bytes of a frame does not keep a connection from its idle timeout", async () => {
  const c = await RawConnection.greeted(srv.msgpack.tcpPort!);
  c.sendBytes(new Uint8Array([0, 0, 0x10, 0])); // announces a 4 KiB frame, then sends it a byte at a time
  const drip = setInterval(() => c.sendBytes(new Uint8Array([0xc0])), 100);
  try {
    expect(await c.next(3000)).toMatchObject({ type: "error", code: "idle_timeout" });
  } finally {
    clearInterval(drip);
  }
  await c.closed;
});
