// Every error a client can get, in OpenAI's shape, and the daemon serving on after all of them.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type OpenAI from "openai";
import type { RunningServer } from "../../src/serving/start.ts";
import { FIXTURE, clientFor, engineIdle, expectApiError, extra, json, serveFixture } from "./helpers.ts";

const KEY = "test-key";
const BODY_LIMIT = 64 * 1024;
let srv: RunningServer;
let client: OpenAI;
let model: string;

// One running sequence and no queue: a second concurrent request is refused with 429.
beforeAll(async () => {
  srv = await serveFixture({ apiKey: KEY, maxNumSeqs: 1, maxQueue: 0, maxBodyBytes: BODY_LIMIT });
  client = clientFor(srv, KEY);
  model = srv.ctx.modelName;
});
afterAll(() => srv.close());

const raw = (path: string, init: RequestInit = {}) =>
  fetch(`${srv.url}${path}`, { method: "POST", ...init, headers: { authorization: `Bearer ${KEY}`, ...init.headers } });

async function expectRawError(r: Response, status: number, param?: string | null): Promise<string> {
  expect(r.status).toBe(status);
  expect(r.headers.get("content-type")).toStartWith("application/json");
  const { error } = await json(r);
  expect(error.code).toBe(status);
  expect(typeof error.type).toBe("string");
  if (param !== undefined) expect(error.param).toBe(param);
  return error.message;
}

describe("authentication", () => {
  test("/v1 routes need the API key as a Bearer token", async () => {
    await expectApiError(clientFor(srv).models.list(), 401);
    await expectApiError(clientFor(srv, "wrong").completions.create({ model, prompt: "x", max_tokens: 1 }), 401);
    await expectRawError(await fetch(`${srv.url}/v1/chat/completions`, { method: "POST", body: "{}" }), 401);
    expect((await client.models.list()).data[0]!.id).toBe(model);
  });

  test("/health and /metrics stay open", async () => {
    expect((await fetch(`${srv.url}/health`)).status).toBe(200);
    expect((await fetch(`${srv.url}/metrics`)).status).toBe(200);
  });
});

describe("bad requests", () => {
  test("an unknown model is 404", async () => {
    await expectApiError(client.completions.create({ model: "gpt-4", prompt: "x", max_tokens: 1 }), 404, "model");
    await expectApiError(client.chat.completions.create({ model: "gpt-4", messages: [{ role: "user", content: "x" }] }), 404, "model");
  });

  test("invalid fields are 400 naming the field, streamed or not", async () => {
    await expectApiError(client.completions.create({ model, prompt: "x", temperature: -1 }), 400, "temperature");
    await expectApiError(client.completions.create({ model, prompt: "x", temperature: -1, stream: true }), 400, "temperature");
    await expectApiError(client.chat.completions.create({ model, messages: [{ role: "user", content: "x" }], top_p: 2 }), 400, "top_p");
    await expectApiError(client.completions.create({ model, prompt: "x", n: 0 }), 400, "n");
    await expectApiError(client.completions.create(extra({ model, prompt: "x" }, { top_k: -5 })), 400, "top_k");
    await expectApiError(client.completions.create({ model, prompt: "x", logit_bias: { "999999": 5 } }), 400, "logit_bias");
    await expectApiError(client.completions.create({ model, prompt: [5, 999999] }), 400, "prompt");
    await expectApiError(client.completions.create({ model, prompt: "x", suffix: "y" }), 400, "suffix");
    await expectApiError(client.completions.create({ model, prompt: "x", echo: true, logprobs: 1 }), 400, "echo");
    await expectApiError(client.chat.completions.create({
      model, messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "http://x/y.png" } }] }],
    }), 400, "messages[0].content[0]");
  });

  test("malformed JSON and non-object bodies are 400", async () => {
    for (const body of ["{not json", "[1,2]", ""]) {
      await expectRawError(await raw("/v1/completions", { body, headers: { "content-type": "application/json" } }), 400, null);
    }
  });

  test("a prompt longer than max_model_len is rejected, not truncated", async () => {
    const long = Array.from({ length: srv.ctx.maxModelLen + 10 }, (_, i) => 3 + (i % 50));
    const e = await expectApiError(client.completions.create({ model, prompt: long, max_tokens: 1 }), 400, "prompt");
    expect(e.message).toContain(String(srv.ctx.maxModelLen));
    await expectApiError(client.completions.create({ model, prompt: "hello", max_tokens: srv.ctx.maxModelLen }), 400, "max_tokens");
  });

  test("a body over the limit is 413, declared or streamed", async () => {
    const big = JSON.stringify({ model, prompt: "x".repeat(BODY_LIMIT) });
    await expectRawError(await raw("/v1/completions", { body: big }), 413);
    const enc = new TextEncoder().encode(big);
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let at = 0; at < enc.length; at += 8192) c.enqueue(enc.slice(at, at + 8192));
        c.close();
      },
    });
    await expectRawError(await raw("/v1/completions", { body: stream }), 413);
  });

  test("unknown routes are 404 and wrong methods 405, both JSON", async () => {
    await expectRawError(await raw("/v1/nothing"), 404);
    await expectRawError(await fetch(`${srv.url}/nothing`), 404);
    const r = await raw("/v1/completions", { method: "GET" });
    expect(r.headers.get("allow")).toBe("POST");
    await expectRawError(r, 405);
    await expectRawError(await raw("/health", { method: "POST" }), 405);
  });
});

test("a full queue is 429 and the running request completes", async () => {
  const long = () => client.completions.create(extra({ model, prompt: "x", max_tokens: 150 }, { ignore_eos: true }));
  const results = await Promise.allSettled([long(), long(), long(), long()]);
  const ok = results.filter((r) => r.status === "fulfilled");
  const refused = results.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason as InstanceType<typeof OpenAI.APIError>);
  expect(ok.length).toBeGreaterThanOrEqual(1);
  expect(refused.length).toBeGreaterThanOrEqual(1);
  for (const e of refused) {
    expect(e.status).toBe(429);
    expect(e.type).toBe("rate_limit_error");
  }
  expect(await engineIdle(srv)).toBe(true);
});

test("after every error the daemon still serves", async () => {
  const r = await client.chat.completions.create(extra({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 4 }, { ignore_eos: true }));
  expect(r.usage!.completion_tokens).toBe(4);
});

describe("a model without a chat template", () => {
  let dir: string;
  let plain: RunningServer;

  beforeAll(async () => {
    dir = join(mkdtempSync(join(tmpdir(), "vllmd-notemplate-")), "model");
    cpSync(FIXTURE, dir, { recursive: true });
    rmSync(join(dir, "chat_template.jinja"), { force: true });
    const configFile = join(dir, "tokenizer_config.json");
    if (existsSync(configFile)) {
      const config = JSON.parse(readFileSync(configFile, "utf8"));
      delete config.chat_template;
      writeFileSync(configFile, JSON.stringify(config));
    }
    plain = await serveFixture({ model: dir });
  });
  afterAll(async () => {
    await plain.close();
    rmSync(join(dir, ".."), { recursive: true, force: true });
  });

  test("chat is a 400 that says so, while completions work", async () => {
    const c = clientFor(plain);
    const e = await expectApiError(c.chat.completions.create({ model: plain.ctx.modelName, messages: [{ role: "user", content: "hi" }] }), 400);
    expect(e.message).toContain("chat template");
    const r = await c.completions.create(extra({ model: plain.ctx.modelName, prompt: "hi", max_tokens: 2 }, { ignore_eos: true }));
    expect(r.usage!.completion_tokens).toBe(2);
  });
});
