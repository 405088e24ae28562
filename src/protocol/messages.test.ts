import { describe, expect, test } from "bun:test";
import { parseClientFrame, type ParsedFrame } from "./messages.ts";

const errorOf = (r: ParsedFrame) => {
  if (r.ok) throw new Error(`expected an error, got ${JSON.stringify(r.frame)}`);
  return r.error;
};

describe("parseClientFrame", () => {
  test("accepts hello, generate and abort", () => {
    expect(parseClientFrame({ type: "hello", version: 1 })).toEqual({ ok: true, frame: { type: "hello", version: 1 } });
    const g = parseClientFrame({ type: "generate", id: "r1", prompt: "hi", params: { max_tokens: 4, stop: ["x"], logit_bias: { "5": -100 } }, stream: false });
    expect(g.ok).toBe(true);
    expect(parseClientFrame({ type: "abort", id: 3 })).toEqual({ ok: true, frame: { type: "abort", id: 3 } });
  });

  test("nil fields count as absent", () => {
    const r = parseClientFrame({ type: "generate", id: 1, prompt: null, prompt_token_ids: [1], params: { seed: null, stop: null }, stream: null });
    expect(r.ok).toBe(true);
  });

  test("a value that is not a map is malformed", () => {
    for (const v of [[1, 2], 5, "hello", null, new Uint8Array(2), true]) {
      const e = errorOf(parseClientFrame(v));
      expect(e.code).toBe("malformed_frame");
      expect(e.id).toBeUndefined();
    }
  });

  test("a missing or non-string type is malformed; an unknown one is named, with the frame's id", () => {
    expect(errorOf(parseClientFrame({ id: 1 })).code).toBe("malformed_frame");
    expect(errorOf(parseClientFrame({ type: 3 })).code).toBe("malformed_frame");
    const e = errorOf(parseClientFrame({ type: "complete", id: "q" }));
    expect(e).toMatchObject({ code: "unknown_type", id: "q" });
    expect(e.message).toContain("'complete'");
    expect(errorOf(parseClientFrame({ type: "toString" })).code).toBe("unknown_type");
  });

  test("ids are non-empty strings or safe integers", () => {
    for (const id of ["", 1.5, 2 ** 60, true, [1], undefined, "x".repeat(257)]) {
      const e = errorOf(parseClientFrame({ type: "abort", id }));
      expect(e.code).toBe("invalid_request");
      expect(e.message).toContain("id");
    }
    expect(parseClientFrame({ type: "abort", id: -4 }).ok).toBe(true);
  });

  test("exactly one of prompt and prompt_token_ids", () => {
    expect(errorOf(parseClientFrame({ type: "generate", id: 1 })).message).toContain("exactly one of prompt and prompt_token_ids");
    expect(errorOf(parseClientFrame({ type: "generate", id: 1, prompt: "a", prompt_token_ids: [1] })).id).toBe(1);
    expect(errorOf(parseClientFrame({ type: "generate", id: 1, prompt_token_ids: [1, -2] })).message).toContain("prompt_token_ids.1");
  });

  test("bad params name the field and keep the id", () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ temperature: -1 }, "params.temperature"],
      [{ top_p: 0 }, "params.top_p"],
      [{ top_k: -2 }, "params.top_k"],
      [{ max_tokens: 0 }, "params.max_tokens"],
      [{ max_tokens: 2.5 }, "params.max_tokens"],
      [{ logprobs: 21 }, "params.logprobs"],
      [{ stop: "" }, "params.stop"],
      [{ seed: "7" }, "params.seed: must be an integer"],
      [{ logit_bias: { "3": 200 } }, "params.logit_bias.3"],
      [{ maxTokens: 5 }, "unknown field(s) 'maxTokens'"],
      [{ n: 2 }, "n must be 1"],
    ];
    for (const [params, want] of cases) {
      const e = errorOf(parseClientFrame({ type: "generate", id: "x", prompt: "a", params }));
      expect(e).toMatchObject({ code: "invalid_request", id: "x" });
      expect(e.message).toContain(want);
    }
  });

  test("unknown top-level fields are refused", () => {
    expect(errorOf(parseClientFrame({ type: "hello", version: 1, extra: 1 })).message).toContain("'extra'");
  });
});
