import { describe, expect, test } from "bun:test";
import { PromptEncoder } from "../serving/prompt-encoder.ts";
import { TextTokenizer } from "../tokenizer/tokenizer.ts";
import { DEFAULT_MAX_TOKENS, InvalidGenerateError, toGenerateInput } from "./generate-input.ts";
import type { GenerateFrame } from "./messages.ts";

const tokenizer = TextTokenizer.fromDir("test/fixtures/llama");
const facts = { prompts: new PromptEncoder(tokenizer, null, 256), vocabSize: 384 };
const frame = (over: Partial<GenerateFrame> = {}): GenerateFrame => ({ type: "generate", id: 1, prompt_token_ids: [3, 4], ...over });

describe("toGenerateInput", () => {
  test("fills vLLM's defaults", async () => {
    const a = await toGenerateInput(frame(), facts), b = await toGenerateInput(frame(), facts);
    expect(a.promptTokenIds).toEqual([3, 4]);
    expect(a.params).toMatchObject({
      maxTokens: DEFAULT_MAX_TOKENS, temperature: 1, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1,
      presencePenalty: 0, frequencyPenalty: 0, logprobs: -1, ignoreEos: false, stopTokenIds: [], minTokens: 0,
    });
    expect(a.params.logitBias.size).toBe(0);
    expect(a.params.seed).not.toBe(b.params.seed); // drawn per request
    expect(a).toMatchObject({ stop: [], includeStopStrInOutput: false, detokenize: true, skipSpecialTokens: true });
  });

  test("maps every param to the engine's names", async () => {
    const p = await toGenerateInput(frame({
      params: {
        max_tokens: 9, temperature: 0.5, top_p: 0.9, top_k: -1, min_p: 0.1, seed: 2n ** 63n, stop: "ab", stop_token_ids: [7],
        presence_penalty: 0.5, frequency_penalty: -0.5, repetition_penalty: 1.2, logprobs: 3, logit_bias: { "12": 5 },
        ignore_eos: true, min_tokens: 2, include_stop_str_in_output: true, skip_special_tokens: false,
      },
      detokenize: true,
    }), facts);
    expect(p.params).toMatchObject({
      maxTokens: 9, temperature: 0.5, topP: 0.9, topK: 0, minP: 0.1, seed: 2n ** 63n, stopTokenIds: [7], presencePenalty: 0.5,
      frequencyPenalty: -0.5, repetitionPenalty: 1.2, logprobs: 3, ignoreEos: true, minTokens: 2,
    });
    expect([...p.params.logitBias]).toEqual([[12, 5]]);
    expect(p).toMatchObject({ stop: ["ab"], includeStopStrInOutput: true, skipSpecialTokens: false });
    expect((await toGenerateInput(frame({ params: { seed: 42 } }), facts)).params.seed).toBe(42n);
  });

  test("a text prompt is encoded with special tokens", async () => {
    const p = await toGenerateInput(frame({ prompt: "hello there", prompt_token_ids: undefined }), facts);
    expect(p.promptTokenIds).toEqual(tokenizer.encode("hello there", true));
    expect(p.promptTokenIds).not.toEqual(tokenizer.encode("hello there", false));
  });

  test("inputs that cannot run get a clear error", async () => {
    const bad: [Partial<GenerateFrame>, string][] = [
      [{ prompt_token_ids: [1, 384] }, "token id 384 is outside the vocabulary (size 384)"],
      [{ params: { stop_token_ids: [999] } }, "params.stop_token_ids"],
      [{ params: { logit_bias: { "500": 1 } } }, "params.logit_bias"],
      [{ params: { logit_bias: { abc: 1 } } }, "params.logit_bias: logit_bias key 'abc' is not a token id"],
      [{ params: { stop: ["x"] }, detokenize: false }, "params.stop: stop strings need text output"],
      [{ params: { min_tokens: 5, max_tokens: 4 } }, "params.min_tokens: min_tokens (5) must not exceed max_tokens (4)"],
    ];
    for (const [over, msg] of bad) await expect(toGenerateInput(frame(over), facts)).rejects.toThrow(msg);
    await expect(toGenerateInput(frame({ prompt: "hi", prompt_token_ids: undefined }), { prompts: null, vocabSize: 384 }))
      .rejects.toThrow(InvalidGenerateError);
    await expect(toGenerateInput(frame({ prompt: "x".repeat(256 * 13 + 1), prompt_token_ids: undefined }), facts))
      .rejects.toThrow("prompt: the prompt has 3329 characters");
  });
});
