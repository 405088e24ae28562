import { describe, expect, test } from "bun:test";
import { ApiError } from "./errors.ts";
import { choiceInputs, generationTemplate } from "./params.ts";
import { CompletionRequestSchema } from "./schemas.ts";

const limits = { vocabSize: 100, hasTokenizer: true };
const fields = (body: object) => CompletionRequestSchema.parse({ prompt: "x", ...body });

function thrown(f: () => unknown): ApiError {
  try {
    f();
  } catch (e) {
    if (e instanceof ApiError) return e;
    throw e;
  }
  throw new Error("expected an ApiError");
}

describe("generationTemplate", () => {
  test("maps every field onto the engine's parameters", () => {
    const t = generationTemplate(fields({
      temperature: 0.5, top_p: 0.9, top_k: 7, min_p: 0.1, repetition_penalty: 1.2, presence_penalty: 0.3,
      frequency_penalty: -0.4, logit_bias: { "42": 5 }, ignore_eos: true, stop_token_ids: [9], min_tokens: 2,
      stop: "END", include_stop_str_in_output: true, skip_special_tokens: false, seed: 11,
    }), { maxTokens: 20, logprobs: 3 }, limits);
    expect(t.params).toMatchObject({
      maxTokens: 20, temperature: 0.5, topP: 0.9, topK: 7, minP: 0.1, repetitionPenalty: 1.2, presencePenalty: 0.3,
      frequencyPenalty: -0.4, logprobs: 3, ignoreEos: true, stopTokenIds: [9], minTokens: 2,
    });
    expect([...t.params.logitBias]).toEqual([[42, 5]]);
    expect(t.stop).toEqual(["END"]);
    expect([t.includeStopStrInOutput, t.skipSpecialTokens, t.detokenize, t.seed]).toEqual([true, false, true, 11n]);
  });

  test("uses vLLM's defaults for absent fields", () => {
    const t = generationTemplate(fields({}), { maxTokens: null, logprobs: -1 }, limits);
    expect(t.params).toMatchObject({ temperature: 1, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, minTokens: 0, ignoreEos: false });
    expect([t.stop, t.seed, t.skipSpecialTokens, t.includeStopStrInOutput]).toEqual([[], null, true, false]);
  });

  test("rejects token ids outside the vocabulary", () => {
    expect(thrown(() => generationTemplate(fields({ logit_bias: { "100": 1 } }), { maxTokens: 1, logprobs: -1 }, limits)).param).toBe("logit_bias");
    expect(thrown(() => generationTemplate(fields({ logit_bias: { abc: 1 } }), { maxTokens: 1, logprobs: -1 }, limits)).param).toBe("logit_bias");
    expect(thrown(() => generationTemplate(fields({ stop_token_ids: [5, 100] }), { maxTokens: 1, logprobs: -1 }, limits)).param).toBe("stop_token_ids");
  });

  test("stop strings need a tokenizer", () => {
    const e = thrown(() => generationTemplate(fields({ stop: ["a"] }), { maxTokens: 1, logprobs: -1 }, { vocabSize: 100, hasTokenizer: false }));
    expect(e.param).toBe("stop");
  });
});

describe("choiceInputs", () => {
  test("a given seed becomes seed + i per choice, wrapped to u64", () => {
    const t = generationTemplate(fields({ seed: -1 }), { maxTokens: 4, logprobs: -1 }, limits);
    const seeds = choiceInputs([1, 2], t, 3).map((i) => i.params.seed);
    expect(seeds).toEqual([2n ** 64n - 1n, 0n, 1n]);
  });

  test("without a seed every choice draws its own", () => {
    const t = generationTemplate(fields({}), { maxTokens: 4, logprobs: -1 }, limits);
    const inputs = choiceInputs([1, 2], t, 4);
    expect(new Set(inputs.map((i) => i.params.seed)).size).toBe(4);
    expect(inputs.every((i) => i.promptTokenIds.length === 2 && !("seed" in i))).toBe(true);
  });
});
