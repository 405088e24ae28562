import { describe, expect, test } from "bun:test";
import { TextTokenizer } from "../tokenizer/tokenizer.ts";
import { chatLogprobs, completionLogprobs, textLength, tokenNamer } from "./logprobs.ts";

const tok = TextTokenizer.fromDir("test/fixtures/llama");
const name = tokenNamer(tok);
const ids = tok.encode("hello world", false);
const lps = ids.map((id, i) => ({ logprob: -0.5 * (i + 1), top: [{ id, logprob: -0.5 * (i + 1) }, { id: (id + 1) % 300, logprob: -3 }] }));

describe("completionLogprobs", () => {
  test("lists tokens whose texts rebuild the text, with offsets from the start given", () => {
    const out = completionLogprobs(ids, lps, name, 7);
    expect(out.tokens.join("")).toBe("hello world");
    expect(out.token_logprobs).toEqual(lps.map((l) => l.logprob));
    expect(out.text_offset[0]).toBe(7);
    for (let i = 1; i < ids.length; i++) expect(out.text_offset[i]).toBe(out.text_offset[i - 1]! + textLength(out.tokens[i - 1]!));
  });

  test("each top_logprobs map has the chosen token first, then the alternatives", () => {
    const out = completionLogprobs(ids, lps, name, 0);
    const first = out.top_logprobs[0]!;
    expect(Object.keys(first)[0]).toBe(out.tokens[0]!);
    expect(first[name((ids[0]! + 1) % 300)]).toBe(-3);
  });

  test("-inf becomes vLLM's floor so JSON can carry it", () => {
    const out = completionLogprobs([ids[0]!], [{ logprob: Number.NEGATIVE_INFINITY, top: [] }], name, 0);
    expect(out.token_logprobs).toEqual([-9999]);
  });
});

describe("chatLogprobs", () => {
  test("gives UTF-8 bytes and at most top_logprobs alternatives", () => {
    const out = chatLogprobs(ids, lps, name, 1);
    expect(out.map((c) => c.token).join("")).toBe("hello world");
    expect(out[0]!.bytes).toEqual(Array.from(new TextEncoder().encode(out[0]!.token)));
    expect(out.every((c) => c.top_logprobs.length === 1)).toBe(true);
    expect(chatLogprobs(ids, lps, name, 0)[0]!.top_logprobs).toEqual([]);
  });

  test("without a tokenizer tokens are named token_id:N", () => {
    expect(chatLogprobs([5], [{ logprob: -1, top: [] }], tokenNamer(null), 0)[0]!.token).toBe("token_id:5");
  });
});

test("textLength counts code points as Python does", () => {
  expect(textLength("a😀")).toBe(2);
});
