// The routes around generation: models, health, metrics, version, tokenize, detokenize.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { RunningServer } from "../../src/serving/start.ts";
import { clientFor, json, serveFixture } from "./helpers.ts";

let srv: RunningServer;
const post = (path: string, body: unknown) => fetch(`${srv.url}${path}`, { method: "POST", body: JSON.stringify(body) });

beforeAll(async () => {
  srv = await serveFixture({ servedModelName: "tiny-llama" });
});
afterAll(() => srv.close());

describe("info routes", () => {
  test("/v1/models lists the served model with max_model_len", async () => {
    const models = await clientFor(srv).models.list();
    expect(models.data).toHaveLength(1);
    const m = models.data[0]! as typeof models.data[0] & { max_model_len: number };
    expect([m.id, m.object, m.max_model_len]).toEqual(["tiny-llama", "model", srv.ctx.maxModelLen]);
  });

  test("/health answers 200 with an empty body", async () => {
    const r = await fetch(`${srv.url}/health`);
    expect([r.status, await r.text()]).toEqual([200, ""]);
  });

  test("/metrics is Prometheus text with vLLM's names", async () => {
    const r = await fetch(`${srv.url}/metrics`);
    expect(r.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
    const text = await r.text();
    for (const name of ["vllm:num_requests_running", "vllm:kv_cache_usage_perc", "vllm:generation_tokens_total"]) expect(text).toContain(name);
  });

  test("/version gives the package version", async () => {
    const { version } = await json(await fetch(`${srv.url}/version`));
    expect(version).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe("/tokenize and /detokenize", () => {
  test("a prompt gets special tokens by default, and detokenizes back", async () => {
    const tok = srv.ctx.tokenizer!;
    const r = await json(await post("/tokenize", { prompt: "hello world" }));
    expect(r).toEqual({ tokens: tok.encode("hello world", true), count: r.tokens.length, max_model_len: srv.ctx.maxModelLen, token_strs: null });
    expect(r.tokens[0]).toBe(tok.bosTokenId);
    const plain = await json(await post("/tokenize", { prompt: "hello world", add_special_tokens: false, return_token_strs: true }));
    expect(plain.tokens).toEqual(r.tokens.slice(1));
    expect(plain.token_strs).toEqual(plain.tokens.map((id: number) => tok.idToToken(id)));
    expect(await json(await post("/detokenize", { tokens: plain.tokens }))).toEqual({ prompt: "hello world" });
  });

  test("messages go through the chat template, generation prompt included by default", async () => {
    const messages = [{ role: "user", content: "hi" }];
    const tok = srv.ctx.tokenizer!;
    const withPrompt = await json(await post("/tokenize", { messages }));
    const without = await json(await post("/tokenize", { messages, add_generation_prompt: false }));
    expect(withPrompt.tokens).toEqual(tok.encode(tok.applyChatTemplate(messages, { addGenerationPrompt: true }), false));
    expect(without.count).toBeLessThan(withPrompt.count);
  });

  test("bad input gets a 400 naming the field", async () => {
    for (const [path, body, param] of [
      ["/tokenize", { prompt: 5 }, "prompt"],
      ["/tokenize", { messages: [] }, "messages"],
      ["/detokenize", { tokens: [1, 99999] }, "tokens"],
      ["/detokenize", { tokens: "abc" }, "tokens"],
    ] as const) {
      const r = await post(path, body);
      expect(r.status).toBe(400);
      expect((await json(r)).error.param).toBe(param);
    }
  });

  test("a model name other than the served one is 404", async () => {
    const r = await post("/tokenize", { model: "llama", prompt: "x" });
    expect(r.status).toBe(404);
  });
});
