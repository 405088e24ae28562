import { describe, expect, test } from "bun:test";
import { ApiError } from "./errors.ts";
import { readJsonBody as read } from "./body.ts";

const readJsonBody = (req: Request, maxBytes: number, timeoutMs = 5000) => read(req, { maxBytes, timeoutMs });

const post = (body: RequestInit["body"], headers: Record<string, string> = {}) =>
  new Request("http://x/", { method: "POST", body, headers });

async function failure(p: Promise<unknown>): Promise<ApiError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ApiError) return e;
    throw e;
  }
  throw new Error("expected an ApiError");
}

function chunked(parts: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const p of parts) c.enqueue(enc.encode(p));
      c.close();
    },
  });
}

describe("readJsonBody", () => {
  test("parses a JSON object", async () => {
    expect(await readJsonBody(post('{"a": [1, "é"]}'), 100)).toEqual({ a: [1, "é"] });
  });

  test("a declared length over the limit is 413 before reading", async () => {
    const e = await failure(readJsonBody(post("{}", { "content-length": "5000" }), 100));
    expect(e.status).toBe(413);
  });

  test("a streamed body that grows past the limit is 413", async () => {
    const e = await failure(readJsonBody(post(chunked(['{"a": "', "x".repeat(80), "x".repeat(80), '"}'])), 100));
    expect(e.status).toBe(413);
  });

  test("a streamed body within the limit is reassembled", async () => {
    expect(await readJsonBody(post(chunked(['{"a"', ': 1', "}"])), 100)).toEqual({ a: 1 });
  });

  test("malformed JSON, empty bodies, arrays and bad UTF-8 are 400", async () => {
    for (const body of ["{bad", "", "[1]", "null", new Uint8Array([0x7b, 0xff, 0x7d])]) {
      const e = await failure(readJsonBody(post(body), 100));
      expect(e.status).toBe(400);
    }
  });

  test("a body that stalls is 408 at the deadline", async () => {
    const stalled = new ReadableStream<Uint8Array>({ start: (c) => c.enqueue(new TextEncoder().encode('{"a": ')) });
    const t0 = performance.now();
    const e = await failure(readJsonBody(post(stalled), 100, 150));
    expect(e.status).toBe(408);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
  });

  test("a body whose stream breaks (the client went away) is 499, not an internal error", async () => {
    const broken = new ReadableStream<Uint8Array>({ pull: (c) => c.error(new DOMException("aborted", "AbortError")) });
    expect((await failure(readJsonBody(post(broken), 100))).status).toBe(499);
  });
});
