import { describe, expect, test } from "bun:test";
import { fromZodError } from "./errors.ts";
import { ChatRequestSchema, CompletionRequestSchema, DetokenizeRequestSchema, TokenizeChatSchema } from "./schemas.ts";

/** The field a rejected completion request is blamed on. */
function badCompletionField(body: Record<string, unknown>): string | null {
  const r = CompletionRequestSchema.safeParse({ prompt: "hi", ...body });
  if (r.success) throw new Error(`expected ${JSON.stringify(body)} to be rejected`);
  return fromZodError(r.error).param;
}

describe("CompletionRequestSchema", () => {
  test("accepts every prompt shape", () => {
    for (const prompt of ["a", ["a", "b"], [1, 2], [[1], [2, 3]]]) {
      expect(CompletionRequestSchema.safeParse({ prompt }).success).toBe(true);
    }
  });

  test("rejects empty, mixed and negative prompts", () => {
    for (const prompt of [[], [[]], [1, "a"], [-1], [1.5], 3, null]) {
      expect(badCompletionField({ prompt })).toStartWith("prompt");
    }
  });

  test("ignores unknown fields and treats null as absent", () => {
    const r = CompletionRequestSchema.parse({ prompt: "a", frobnicate: 1, temperature: null, seed: null });
    expect("frobnicate" in r).toBe(false);
    expect(r.temperature).toBeNull();
  });

  test.each([
    [{ temperature: -0.1 }, "temperature"],
    [{ top_p: 0 }, "top_p"],
    [{ top_p: 1.5 }, "top_p"],
    [{ top_k: -2 }, "top_k"],
    [{ min_p: 2 }, "min_p"],
    [{ max_tokens: 0 }, "max_tokens"],
    [{ n: 0 }, "n"],
    [{ n: 1.5 }, "n"],
    [{ presence_penalty: 2.5 }, "presence_penalty"],
    [{ frequency_penalty: -3 }, "frequency_penalty"],
    [{ repetition_penalty: 0 }, "repetition_penalty"],
    [{ logit_bias: { "5": 101 } }, "logit_bias.5"],
    [{ logprobs: 21 }, "logprobs"],
    [{ stop: 5 }, "stop"],
    [{ stop: ["ok", ""] }, "stop[1]"],
    [{ stop_token_ids: [-1] }, "stop_token_ids[0]"],
    [{ seed: 1.5 }, "seed"],
    [{ seed: 2 ** 65 }, "seed"],
    [{ suffix: "x" }, "suffix"],
    [{ stream_options: { include_usage: true } }, "stream_options"],
    [{ best_of: 3 }, "best_of"],
    [{ response_format: { type: "json_object" } }, "response_format"],
    [{ prompt_logprobs: 1 }, "prompt_logprobs"],
    [{ stream: "yes" }, "stream"],
  ])("rejects %j naming %s", (body, field) => {
    expect(badCompletionField(body)).toBe(field);
  });

  test("accepts the edges of each range", () => {
    const r = CompletionRequestSchema.safeParse({
      prompt: "a", temperature: 0, top_p: 1, top_k: -1, min_p: 0, presence_penalty: -2, frequency_penalty: 2,
      logit_bias: { "3": -100 }, logprobs: 20, seed: 2 ** 63, n: 128, stream: true, stream_options: { include_usage: true },
    });
    expect(r.success).toBe(true);
  });
});

describe("ChatRequestSchema", () => {
  const messages = [{ role: "user", content: "hi" }];

  test("accepts text parts and keeps extra message keys", () => {
    const r = ChatRequestSchema.parse({ messages: [{ role: "user", content: [{ type: "text", text: "a" }], name: "bob" }] });
    expect(r.messages[0]!.name).toBe("bob");
  });

  test("rejects non-text parts, empty message lists and top_logprobs without logprobs", () => {
    const param = (body: object) => fromZodError(ChatRequestSchema.safeParse(body).error!).param;
    expect(param({ messages: [{ role: "user", content: [{ type: "image_url", image_url: {} }] }] })).toBe("messages[0].content[0]");
    expect(param({ messages: [] })).toBe("messages");
    expect(param({ messages, top_logprobs: 3 })).toBe("top_logprobs");
    expect(param({ messages, top_logprobs: 21, logprobs: true })).toBe("top_logprobs");
  });
});

describe("tokenize schemas", () => {
  test("need messages or token ids of the right type", () => {
    expect(TokenizeChatSchema.safeParse({ messages: "hi" }).success).toBe(false);
    expect(DetokenizeRequestSchema.safeParse({ tokens: [1, -2] }).success).toBe(false);
    expect(DetokenizeRequestSchema.safeParse({ tokens: [1, 2] }).success).toBe(true);
  });
});
