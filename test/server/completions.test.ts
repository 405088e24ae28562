// /v1/completions through the official openai client against a served fixture model.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type OpenAI from "openai";
import type { RunningServer } from "../../src/serving/start.ts";
import { clientFor, extra, json, serveFixture } from "./helpers.ts";

let srv: RunningServer;
let client: OpenAI;
let model: string;
const PROMPT = "The quick brown fox";
const OTHER = "Once upon a time";

beforeAll(async () => {
  srv = await serveFixture();
  client = clientFor(srv);
  model = srv.ctx.modelName;
});
afterAll(() => srv.close());

const tokenize = async (prompt: string): Promise<number[]> =>
  (await json(await fetch(`${srv.url}/tokenize`, { method: "POST", body: JSON.stringify({ prompt }) }))).tokens;

const greedy = (prompt: string | number[] | string[], more: Record<string, unknown> = {}) =>
  client.completions.create(extra({ model, prompt, max_tokens: 12, temperature: 0 }, { ignore_eos: true, ...more }));

describe("/v1/completions", () => {
  test("a text prompt gives text, finish_reason, stop_reason and usage", async () => {
    const r = await greedy(PROMPT);
    const promptTokens = (await tokenize(PROMPT)).length;
    expect(r.object).toBe("text_completion");
    expect(r.id).toStartWith("cmpl-");
    expect(r.model).toBe(model);
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0]!.finish_reason).toBe("length");
    expect((r.choices[0] as unknown as { stop_reason: unknown }).stop_reason).toBeNull();
    expect(r.choices[0]!.text.length).toBeGreaterThan(0);
    expect(r.usage).toEqual({ prompt_tokens: promptTokens, completion_tokens: 12, total_tokens: promptTokens + 12 });
  });

  test("token ids give the same greedy text as the text they encode", async () => {
    const [fromText, fromIds] = await Promise.all([greedy(PROMPT), greedy(await tokenize(PROMPT))]);
    expect(fromIds.choices[0]!.text).toBe(fromText.choices[0]!.text);
    expect(fromIds.usage).toEqual(fromText.usage);
  });

  test("a list of prompts gives n choices per prompt, indexed in order", async () => {
    const [both, a, b] = await Promise.all([greedy([PROMPT, OTHER], { n: 2 }), greedy(PROMPT), greedy(OTHER)]);
    expect(both.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    expect(both.choices.map((c) => c.text)).toEqual([a, a, b, b].map((r) => r.choices[0]!.text));
    expect(both.usage!.prompt_tokens).toBe(a.usage!.prompt_tokens + b.usage!.prompt_tokens);
    expect(both.usage!.completion_tokens).toBe(4 * 12);
  });

  test("a list of token-id prompts works like a list of texts", async () => {
    const ids = await Promise.all([tokenize(PROMPT), tokenize(OTHER)]);
    const [fromIds, fromText] = await Promise.all([
      client.completions.create(extra({ model, prompt: ids as unknown as number[], max_tokens: 5, temperature: 0 }, {})),
      greedy([PROMPT, OTHER], { max_tokens: 5, ignore_eos: false }),
    ]);
    expect(fromIds.choices.map((c) => c.text)).toEqual(fromText.choices.map((c) => c.text));
  });

  test("echo prepends the prompt, text or decoded token ids", async () => {
    const [plain, echoText, echoIds] = await Promise.all([
      greedy(PROMPT), greedy(PROMPT, { echo: true }), greedy(await tokenize(PROMPT), { echo: true }),
    ]);
    expect(echoText.choices[0]!.text).toBe(PROMPT + plain.choices[0]!.text);
    expect(echoIds.choices[0]!.text).toBe(PROMPT + plain.choices[0]!.text);
  });

  test("streamed chunks reassemble to the non-streamed greedy text, with a usage chunk last", async () => {
    const whole = await greedy([PROMPT, OTHER], { n: 2 });
    const stream = await client.completions.create(extra({
      model, prompt: [PROMPT, OTHER], n: 2, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true },
    }, { ignore_eos: true }));
    const texts = ["", "", "", ""];
    const finishes: (string | null)[] = [null, null, null, null];
    const chunks: OpenAI.Completion[] = [];
    for await (const chunk of stream) {
      chunks.push(chunk);
      for (const c of chunk.choices) {
        expect(finishes[c.index]).toBeNull(); // nothing after the finish
        texts[c.index] += c.text;
        finishes[c.index] = c.finish_reason ?? null;
      }
    }
    expect(texts).toEqual(whole.choices.map((c) => c.text));
    expect(finishes).toEqual(["length", "length", "length", "length"]);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual(whole.usage);
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
  });

  test("a stream without include_usage has no usage chunk", async () => {
    const stream = await client.completions.create({ model, prompt: PROMPT, max_tokens: 4, temperature: 0, stream: true });
    const chunks: OpenAI.Completion[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.every((c) => c.choices.length === 1 && c.usage === undefined)).toBe(true);
  });

  test("logprobs come in the completions format, streamed or not", async () => {
    const r = await greedy(PROMPT, { logprobs: 3 });
    const lp = r.choices[0]!.logprobs!;
    expect(lp.tokens).toHaveLength(12);
    expect(lp.token_logprobs).toHaveLength(12);
    expect(lp.text_offset![0]).toBe(0);
    lp.top_logprobs!.forEach((top, i) => {
      const values = Object.values(top);
      expect(values.length).toBeGreaterThanOrEqual(1);
      expect(values.length).toBeLessThanOrEqual(4);
      expect(top[lp.tokens![i]!]).toBe(lp.token_logprobs![i]!);
      expect(Math.max(...values)).toBe(lp.token_logprobs![i]!); // greedy picks the most likely
      expect(lp.token_logprobs![i]!).toBeLessThanOrEqual(0);
    });
    const stream = await client.completions.create(extra({ model, prompt: PROMPT, max_tokens: 12, temperature: 0, logprobs: 3, stream: true }, { ignore_eos: true }));
    const tokens: string[] = [];
    const offsets: number[] = [];
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        tokens.push(...(c.logprobs?.tokens ?? []));
        offsets.push(...(c.logprobs?.text_offset ?? []));
      }
    }
    expect(tokens).toEqual(lp.tokens!);
    expect(offsets).toEqual(lp.text_offset!);
  });

  test("max_tokens null fills up to max_model_len; absent means vLLM's 16", async () => {
    const [unbounded, unset] = await Promise.all([
      client.completions.create(extra({ model, prompt: PROMPT, temperature: 0, max_tokens: null }, { ignore_eos: true })),
      client.completions.create(extra({ model, prompt: PROMPT, temperature: 0 }, { ignore_eos: true })),
    ]);
    expect(unbounded.usage!.total_tokens).toBe(srv.ctx.maxModelLen);
    expect(unset.usage!.completion_tokens).toBe(16);
  });

  test("without logprobs the field is null", async () => {
    const r = await greedy(PROMPT, { max_tokens: 2 });
    expect(r.choices[0]!.logprobs).toBeNull();
  });
});
