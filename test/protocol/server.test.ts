// The msgpack protocol against a served fixture model: handshake, generation over the unix
// socket and TCP, and every kind of bad frame (each answered, the connection carrying on).
import { afterAll, beforeAll, describe, expect, test, setDefaultTimeout } from "bun:test";
import { encode } from "@msgpack/msgpack";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { frameBytes } from "../../src/protocol/frame.ts";
import { startServer, type RunningServer } from "../../src/serving/start.ts";
import { makeEngine, runToCompletion } from "../helpers/engine-run.ts";
import { RawConnection, type Frame } from "./raw-client.ts";

setDefaultTimeout(30_000); // generous: the suite may share 2 cores with other work

const MODEL = "test/fixtures/llama";
const ENGINE = { model: MODEL, device: "cpu" as const, cpuKvCacheBytes: 32 * 2 ** 20 };
const MAX_FRAME = 64 * 1024;
let srv: RunningServer;
let dir: string;
let sock: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "vllmd-proto-"));
  sock = join(dir, "vllmd.sock");
  srv = await startServer({ engine: ENGINE, host: "127.0.0.1", port: 0, maxQueue: 64, maxBodyBytes: MAX_FRAME, socketPath: sock, msgpackPort: 0 });
});

afterAll(async () => {
  await srv.close();
  rmSync(dir, { recursive: true, force: true });
});

const prompt = [0, 17, 42, 99, 150, 7];
const greedy = { max_tokens: 12, temperature: 0, ignore_eos: true };

describe("handshake", () => {
  test("hello over the unix socket and over TCP", async () => {
    expect(srv.msgpack.socketPath).toBe(sock);
    expect(srv.msgpack.tcpPort).toBeGreaterThan(0);
    for (const target of [sock, srv.msgpack.tcpPort!]) {
      const c = await RawConnection.open(target);
      c.send({ type: "hello", version: 1 });
      expect(await c.next()).toEqual({ type: "hello", version: 1, model: "llama", max_model_len: 256, max_frame_bytes: MAX_FRAME });
      c.destroy();
    }
  });

  test("generate before hello is refused; a wrong version is refused; the connection goes on", async () => {
    const c = await RawConnection.open(sock);
    c.send({ type: "generate", id: "early", prompt_token_ids: prompt });
    expect(await c.next()).toMatchObject({ type: "error", id: "early", code: "hello_required" });
    c.send({ type: "hello", version: 2 });
    const e = await c.next();
    expect(e).toMatchObject({ type: "error", code: "unsupported_version" });
    expect(e.message).toContain("version 1");
    c.send({ type: "hello", version: 1 });
    expect((await c.next()).type).toBe("hello");
    c.send({ type: "generate", id: "late", prompt_token_ids: prompt, params: { max_tokens: 2 } });
    expect((await c.untilDone("late")).at(-1)).toMatchObject({ finished: true, finish_reason: "length" });
    c.destroy();
  });
});

describe("generation", () => {
  test("streamed greedy output equals the unstreamed one and the engine's own, on both transports", async () => {
    const engine = makeEngine(ENGINE);
    const expected = runToCompletion(engine, [{ id: "x", prompt, params: { temperature: 0, maxTokens: 12, ignoreEos: true } }]).get("x")!;
    engine.dispose();
    for (const target of [sock, srv.msgpack.tcpPort!]) {
      const c = await RawConnection.greeted(target);
      c.send({ type: "generate", id: 1, prompt_token_ids: prompt, params: greedy, stream: true });
      const streamed = await c.untilDone(1);
      c.send({ type: "generate", id: 2, prompt_token_ids: prompt, params: greedy, stream: false });
      const [whole] = await c.untilDone(2);
      expect(streamed.length).toBeGreaterThan(1);
      expect(streamed.slice(0, -1).every((f) => f.finished === false && !("usage" in f))).toBe(true);
      expect(streamed.flatMap((f) => f.token_ids as number[])).toEqual(expected);
      expect(whole!.token_ids).toEqual(expected);
      expect(streamed.map((f) => f.text).join("")).toBe(whole!.text as string);
      expect(whole!.text).toBe(srv.ctx.tokenizer!.decode(expected, true));
      for (const last of [streamed.at(-1)!, whole!]) {
        expect(last).toMatchObject({ finished: true, finish_reason: "length", stop_reason: null, usage: { prompt_tokens: 6, completion_tokens: 12, total_tokens: 18 } });
      }
      c.destroy();
    }
  });

  test("a text prompt is tokenized with special tokens; detokenize false leaves text out", async () => {
    const c = await RawConnection.greeted(sock);
    const ids = srv.ctx.tokenizer!.encode("hello world", true);
    c.send({ type: "generate", id: "t", prompt: "hello world", params: { ...greedy, max_tokens: 4 }, stream: false });
    c.send({ type: "generate", id: "i", prompt_token_ids: ids, params: { ...greedy, max_tokens: 4 }, stream: false, detokenize: false });
    const byId = new Map<unknown, Frame>();
    for (let k = 0; k < 2; k++) {
      const f = await c.next();
      byId.set(f.id, f);
    }
    expect(byId.get("t")!.token_ids).toEqual(byId.get("i")!.token_ids);
    expect((byId.get("t")!.usage as Frame).prompt_tokens).toBe(ids.length);
    expect("text" in byId.get("i")!).toBe(false);
    c.destroy();
  });

  test("logprobs come per token with the top k as [id, logprob] pairs; stop_token_ids ends with stop", async () => {
    const c = await RawConnection.greeted(sock);
    c.send({ type: "generate", id: 1, prompt_token_ids: prompt, params: { ...greedy, max_tokens: 5, logprobs: 3 }, stream: false });
    const [f] = await c.untilDone(1);
    const lps = f!.logprobs as { logprob: number; top: [number, number][] }[];
    expect(lps).toHaveLength(5);
    lps.forEach((lp, i) => {
      expect(lp.top).toHaveLength(3);
      expect(lp.top[0]![0]).toBe((f!.token_ids as number[])[i]!); // greedy picks the top token
      expect(lp.logprob).toBeCloseTo(lp.top[0]![1], 5);
    });
    const third = (f!.token_ids as number[])[2]!;
    c.send({ type: "generate", id: 2, prompt_token_ids: prompt, params: { ...greedy, max_tokens: 5, stop_token_ids: [third] }, stream: false });
    const [g] = await c.untilDone(2);
    expect(g).toMatchObject({ finish_reason: "stop", stop_reason: third });
    expect((g!.token_ids as number[]).at(-1)).toBe(third);
    c.destroy();
  });
});

describe("bad frames get an error frame and the connection carries on", () => {
  const lcgBytes = (seed: number, n: number) => {
    let s = seed;
    return Uint8Array.from({ length: n }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 24));
  };

  async function expectStillServes(c: RawConnection): Promise<void> {
    c.send({ type: "generate", id: "ok", prompt_token_ids: prompt, params: { max_tokens: 2 } });
    expect((await c.untilDone("ok")).at(-1)).toMatchObject({ finished: true, usage: { completion_tokens: 2 } });
  }

  test("random bytes, an array, a map with integer keys, an empty frame", async () => {
    const c = await RawConnection.greeted(sock);
    const payloads = [
      ...[1, 2, 3, 4, 5].map((seed) => lcgBytes(seed, 3 + seed * 5)),
      new Uint8Array([0xc1, 1, 2]), // 0xc1 is never valid msgpack
      encode([1, 2, 3]),
      new Uint8Array([0x81, 0x01, 0xa1, 0x78]), // {1: "x"}
      new Uint8Array(0),
      new Uint8Array([...encode({ type: "hello", version: 1 }), 0x00]), // trailing byte
    ];
    for (const p of payloads) {
      c.sendBytes(frameBytes(p));
      const e = await c.next();
      expect(e).toMatchObject({ type: "error", code: "malformed_frame" });
      expect(e.id).toBeUndefined();
    }
    await expectStillServes(c);
    c.destroy();
  });

  test("an unknown type, bad params, a missing id, a prompt too long, a bad token id", async () => {
    const c = await RawConnection.greeted(sock);
    const cases: [Frame, Frame, string][] = [
      [{ type: "complete", id: 5 }, { code: "unknown_type", id: 5 }, "complete"],
      [{ type: "generate", id: "b", prompt_token_ids: prompt, params: { temperature: -1 } }, { code: "invalid_request", id: "b" }, "params.temperature"],
      [{ type: "generate", id: "n", prompt_token_ids: prompt, params: { n: 2 } }, { code: "invalid_request", id: "n" }, "n must be 1"],
      [{ type: "generate", prompt_token_ids: prompt }, { code: "invalid_request" }, "id"],
      [{ type: "generate", id: "long", prompt_token_ids: Array(300).fill(5) }, { code: "invalid_request", id: "long" }, "maximum context length is 256"],
      [{ type: "generate", id: "fit", prompt_token_ids: Array(250).fill(5), params: { max_tokens: 10 } }, { code: "invalid_request", id: "fit" }, "max_tokens"],
      [{ type: "generate", id: "v", prompt_token_ids: [1, 9999] }, { code: "invalid_request", id: "v" }, "outside the vocabulary"],
      [{ type: "generate", id: "e", prompt_token_ids: [] }, { code: "invalid_request", id: "e" }, "empty"],
    ];
    for (const [frame, want, msg] of cases) {
      c.send(frame);
      const e = await c.next();
      expect(e).toMatchObject({ type: "error", ...want });
      expect(e.message as string).toContain(msg);
    }
    await expectStillServes(c);
    c.destroy();
  });

  test("a duplicate id is refused while the first request runs on", async () => {
    const c = await RawConnection.greeted(sock);
    c.send({ type: "generate", id: "d", prompt_token_ids: prompt, params: { max_tokens: 30, ignore_eos: true }, stream: false });
    c.send({ type: "generate", id: "d", prompt_token_ids: prompt, params: { max_tokens: 1 } });
    expect(await c.next()).toMatchObject({ type: "error", id: "d", code: "duplicate_id" });
    expect(await c.next()).toMatchObject({ type: "output", id: "d", finished: true, usage: { completion_tokens: 30 } });
    c.send({ type: "abort", id: "nobody" }); // unknown ids are ignored: the next frame answers the hello
    c.send({ type: "hello", version: 1 });
    expect((await c.next()).type).toBe("hello");
    c.destroy();
  });

  test("a frame over the limit gets an error and the connection is closed; others are unaffected", async () => {
    const bystander = await RawConnection.greeted(sock);
    const c = await RawConnection.greeted(srv.msgpack.tcpPort!);
    const header = new Uint8Array(4);
    new DataView(header.buffer).setUint32(0, MAX_FRAME + 1);
    c.sendBytes(header);
    const e = await c.next();
    expect(e).toMatchObject({ type: "error", code: "frame_too_large" });
    expect(e.message).toContain(`${MAX_FRAME}`);
    await c.closed;
    await expectStillServes(bystander);
    bystander.destroy();
  });
});
