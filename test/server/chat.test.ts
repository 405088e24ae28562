// /v1/chat/completions through the official openai client, with the fixture's chat template.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type OpenAI from "openai";
import type { RunningServer } from "../../src/serving/start.ts";
import { clientFor, extra, json, serveFixture } from "./helpers.ts";

let srv: RunningServer;
let client: OpenAI;
let model: string;
type Messages = OpenAI.ChatCompletionMessageParam[];
const MESSAGES: Messages = [{ role: "system", content: "Be brief." }, { role: "user", content: "Name a colour." }];

beforeAll(async () => {
  srv = await serveFixture();
  client = clientFor(srv);
  model = srv.ctx.modelName;
});
afterAll(() => srv.close());

const chat = (messages: Messages, more: Record<string, unknown> = {}) =>
  client.chat.completions.create(extra({ model, messages, max_completion_tokens: 10, temperature: 0 }, { ignore_eos: true, ...more }));

async function templateTokens(messages: Messages): Promise<number[]> {
  const r = await fetch(`${srv.url}/tokenize`, { method: "POST", body: JSON.stringify({ messages, add_generation_prompt: true }) });
  return (await json(r)).tokens;
}

describe("/v1/chat/completions", () => {
  test("renders the chat template and answers as the assistant, with usage", async () => {
    const r = await chat(MESSAGES);
    expect(r.object).toBe("chat.completion");
    expect(r.id).toStartWith("chatcmpl-");
    expect(r.choices[0]!.message.role).toBe("assistant");
    expect(typeof r.choices[0]!.message.content).toBe("string");
    expect(r.choices[0]!.finish_reason).toBe("length");
    const promptTokens = (await templateTokens(MESSAGES)).length;
    expect(r.usage).toEqual({ prompt_tokens: promptTokens, completion_tokens: 10, total_tokens: promptTokens + 10 });
  });

  test("the prompt is the template's text encoded without extra special tokens", async () => {
    const ids = await templateTokens(MESSAGES);
    const text = srv.ctx.tokenizer!.applyChatTemplate(MESSAGES as never, { addGenerationPrompt: true });
    expect(ids).toEqual(srv.ctx.tokenizer!.encode(text, false));
    const viaCompletions = await client.completions.create(extra({ model, prompt: ids, max_tokens: 10, temperature: 0 }, { ignore_eos: true }));
    expect((await chat(MESSAGES)).choices[0]!.message.content).toBe(viaCompletions.choices[0]!.text);
  });

  test("max_tokens works when max_completion_tokens is absent", async () => {
    const r = await client.chat.completions.create(extra({ model, messages: MESSAGES, max_tokens: 3, temperature: 0 }, { ignore_eos: true }));
    expect(r.usage!.completion_tokens).toBe(3);
  });

  test("without a limit it generates up to max_model_len", async () => {
    const r = await client.chat.completions.create(extra({ model, messages: MESSAGES, temperature: 0 }, { ignore_eos: true }));
    expect(r.usage!.total_tokens).toBe(srv.ctx.maxModelLen);
    expect(r.choices[0]!.finish_reason).toBe("length");
  });

  test("text content parts are joined with newlines", async () => {
    const parts: Messages = [{ role: "user", content: [{ type: "text", text: "Name" }, { type: "text", text: "a colour." }] }];
    const joined: Messages = [{ role: "user", content: "Name\na colour." }];
    const [a, b] = await Promise.all([chat(parts), chat(joined)]);
    expect(a.choices[0]!.message.content).toBe(b.choices[0]!.message.content!);
    expect(a.usage).toEqual(b.usage);
  });

  test("streamed deltas: role first, then content that reassembles, then finish and usage", async () => {
    const whole = await chat(MESSAGES, { n: 2 });
    const stream = await client.chat.completions.create(extra({
      model, messages: MESSAGES, n: 2, max_completion_tokens: 10, temperature: 0, stream: true, stream_options: { include_usage: true },
    }, { ignore_eos: true }));
    const texts = ["", ""];
    const roles: (string | undefined)[] = [undefined, undefined];
    const finishes: (string | null)[] = [null, null];
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) {
      chunks.push(chunk);
      expect(chunk.object).toBe("chat.completion.chunk");
      for (const c of chunk.choices) {
        if (roles[c.index] === undefined) roles[c.index] = c.delta.role; // the first delta of each choice
        else expect(c.delta.role).toBeUndefined();
        expect(finishes[c.index]).toBeNull();
        texts[c.index] += c.delta.content ?? "";
        finishes[c.index] = c.finish_reason ?? null;
      }
    }
    expect(roles).toEqual(["assistant", "assistant"]);
    expect(texts).toEqual(whole.choices.map((c) => c.message.content!));
    expect(finishes).toEqual(["length", "length"]);
    expect(chunks.at(-1)!.choices).toEqual([]);
    expect(chunks.at(-1)!.usage).toEqual(whole.usage);
  });

  test("logprobs with top_logprobs come in the chat format, streamed or not", async () => {
    const r = await chat(MESSAGES, { logprobs: true, top_logprobs: 2 });
    const content = r.choices[0]!.logprobs!.content!;
    expect(content).toHaveLength(10);
    for (const t of content) {
      expect(t.bytes).toEqual(Array.from(new TextEncoder().encode(t.token)));
      expect(t.top_logprobs).toHaveLength(2);
      expect(t.top_logprobs[0]!.logprob).toBe(t.logprob); // greedy: the chosen one is the most likely
      expect(t.top_logprobs[1]!.logprob).toBeLessThanOrEqual(t.logprob);
    }
    const stream = await client.chat.completions.create(extra({
      model, messages: MESSAGES, max_completion_tokens: 10, temperature: 0, logprobs: true, top_logprobs: 2, stream: true,
    }, { ignore_eos: true }));
    const streamed: OpenAI.ChatCompletionTokenLogprob[] = [];
    for await (const chunk of stream) for (const c of chunk.choices) streamed.push(...(c.logprobs?.content ?? []));
    expect(streamed).toEqual(content);
    expect((await chat(MESSAGES, { logprobs: true })).choices[0]!.logprobs!.content![0]!.top_logprobs).toEqual([]);
    expect((await chat(MESSAGES)).choices[0]!.logprobs).toBeNull();
  });
});
