import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { samplingParamsFault } from "../engine/sampling-check.ts";
import { samplingParamsSchema } from "../protocol/messages.ts";
import { CompletionRequestSchema } from "../server/schemas.ts";
import { thrownBy } from "../testing/thrown.ts";
import { ServiceError } from "./generation.ts";
import { choiceInputs, generationTemplate, SAMPLING_LIMITS, type EndpointChoices } from "./sampling-params.ts";
import { asJson, samplingBody, SAMPLING_FIELDS as FIELDS } from "../../test/helpers/sampling-arbitrary.ts";

const VOCAB = 100;
const choices = (over: Partial<EndpointChoices> = {}): EndpointChoices => ({ maxTokens: 16, logprobs: -1, detokenize: true, vocabSize: VOCAB, ...over });
const fields = (body: object) => CompletionRequestSchema.parse({ prompt: "x", ...body });

const thrown = (f: () => unknown): ServiceError => thrownBy(ServiceError, f);

describe("generationTemplate", () => {
  test("maps every field onto the engine's parameters", () => {
    const t = generationTemplate(fields({
      temperature: 0.5, top_p: 0.9, top_k: 7, min_p: 0.1, repetition_penalty: 1.2, presence_penalty: 0.3,
      frequency_penalty: -0.4, logit_bias: { "42": 5 }, ignore_eos: true, stop_token_ids: [9], min_tokens: 2,
      stop: "END", include_stop_str_in_output: true, skip_special_tokens: false, seed: 11,
    }), choices({ maxTokens: 20, logprobs: 3 }));
    expect(t.params).toMatchObject({
      maxTokens: 20, temperature: 0.5, topP: 0.9, topK: 7, minP: 0.1, repetitionPenalty: 1.2, presencePenalty: 0.3,
      frequencyPenalty: -0.4, logprobs: 3, ignoreEos: true, stopTokenIds: [9], minTokens: 2,
    });
    expect([...t.params.logitBias]).toEqual([[42, 5]]);
    expect(t.stop).toEqual(["END"]);
    expect([t.includeStopStrInOutput, t.skipSpecialTokens, t.detokenize, t.seed]).toEqual([true, false, true, 11n]);
  });

  test("uses vLLM's defaults for absent fields; top_k -1 and 0 both mean off", () => {
    const t = generationTemplate(fields({}), choices({ maxTokens: null }));
    expect(t.params).toMatchObject({ temperature: 1, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, minTokens: 0, ignoreEos: false });
    expect([t.stop, t.seed, t.skipSpecialTokens, t.includeStopStrInOutput]).toEqual([[], null, true, false]);
    expect(generationTemplate(fields({ top_k: -1 }), choices()).params.topK).toBe(0);
  });

  test("rejects token ids outside the vocabulary, naming the field", () => {
    expect(thrown(() => generationTemplate(fields({ logit_bias: { "100": 1 } }), choices())).param).toBe("logit_bias");
    expect(thrown(() => generationTemplate(fields({ logit_bias: { abc: 1 } }), choices())).param).toBe("logit_bias");
    expect(thrown(() => generationTemplate(fields({ stop_token_ids: [5, 100] }), choices())).param).toBe("stop_token_ids");
  });

  test("stop strings need text; min_tokens must not exceed max_tokens", () => {
    expect(thrown(() => generationTemplate(fields({ stop: ["a"] }), choices({ detokenize: false }))).param).toBe("stop");
    const e = thrown(() => generationTemplate(fields({ min_tokens: 5 }), choices({ maxTokens: 4 })));
    expect([e.param, e.message]).toEqual(["min_tokens", "min_tokens (5) must not exceed max_tokens (4)"]);
  });
});

describe("the shared bounds", () => {
  const rejects = (body: object, field: string) => {
    const r = CompletionRequestSchema.safeParse({ prompt: "x", ...body });
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]!.path[0]).toBe(field);
  };

  test("floats that overflow or underflow float32 are refused (the device samples in float32)", () => {
    rejects({ temperature: 3.5e38 }, "temperature");
    rejects({ temperature: 1e39 }, "temperature");
    rejects({ top_p: 1e-46 }, "top_p");
    rejects({ repetition_penalty: 1e-46 }, "repetition_penalty");
    rejects({ repetition_penalty: 1e39 }, "repetition_penalty");
    rejects({ top_k: 2 ** 31 }, "top_k");
    expect(CompletionRequestSchema.safeParse({ prompt: "x", temperature: 3.4e38, top_p: 1.5e-45, repetition_penalty: 1e-44 }).success).toBe(true);
  });

  test("lists are bounded the same over HTTP and msgpack", () => {
    const L = SAMPLING_LIMITS;
    const over = {
      stop: Array.from({ length: L.stopStrings + 1 }, (_, i) => `s${i}`),
      stop_token_ids: new Array(L.stopTokenIds + 1).fill(1),
      logit_bias: Object.fromEntries(Array.from({ length: L.logitBias + 1 }, (_, i) => [String(i), 1])),
    };
    for (const [field, value] of Object.entries(over)) {
      rejects({ [field]: value }, field);
      expect(samplingParamsSchema.safeParse({ [field]: value }).success).toBe(false);
    }
    rejects({ stop: "x".repeat(L.stopStringChars + 1) }, "stop");
    rejects({ n: L.n + 1 }, "n");
  });
});

describe("choiceInputs", () => {
  test("a given seed becomes seed + i per choice, wrapped to u64", () => {
    const t = generationTemplate(fields({ seed: -1 }), choices({ maxTokens: 4 }));
    expect(choiceInputs([1, 2], t, 3).map((i) => i.params.seed)).toEqual([2n ** 64n - 1n, 0n, 1n]);
  });

  test("without a seed every choice draws its own", () => {
    const inputs = choiceInputs([1, 2], generationTemplate(fields({}), choices({ maxTokens: 4 })), 4);
    expect(new Set(inputs.map((i) => i.params.seed)).size).toBe(4);
    expect(inputs.every((i) => i.promptTokenIds.length === 2 && !("seed" in i))).toBe(true);
  });
});

// ---- properties: any value of any field is refused by name, or gives parameters the sampler takes

/** Parses and maps as a front end does: the engine's params, or the field a 400 names. */
function frontEnd(parse: (b: object) => { success: boolean; data?: any; error?: any }, b: object): { field: string } | { params: any } {
  const r = parse(b);
  if (!r.success) return { field: String(r.error.issues[0].path[0] ?? "") };
  try {
    const t = generationTemplate(r.data, choices({ maxTokens: r.data.max_tokens ?? 16, logprobs: r.data.logprobs ?? -1 }));
    return { params: choiceInputs([1], t, 1)[0]!.params };
  } catch (e) {
    if (!(e instanceof ServiceError) || !e.param) throw e;
    return { field: e.param };
  }
}

describe("properties", () => {
  test("HTTP: every body is refused naming a field, or maps to parameters the sampler takes", () => {
    fc.assert(fc.property(samplingBody, (b) => {
      const json = asJson(b);
      const r = frontEnd((x) => CompletionRequestSchema.safeParse({ prompt: "x", ...x }), json);
      if ("field" in r) return FIELDS.includes(r.field);
      return samplingParamsFault({ ...r.params, maxTokens: r.params.maxTokens ?? 1 }, VOCAB) === null;
    }), { numRuns: 3000 });
  });

  test("msgpack takes what HTTP takes and maps it to the same parameters (NaN and infinities refused too)", () => {
    fc.assert(fc.property(samplingBody, (b) => {
      const json = asJson(b);
      const viaHttp = frontEnd((x) => CompletionRequestSchema.safeParse({ prompt: "x", ...x }), json);
      const viaMsgpack = frontEnd((x) => samplingParamsSchema.safeParse(x), json);
      const raw = frontEnd((x) => samplingParamsSchema.safeParse(x), b); // msgpack carries NaN, infinities, bigints
      if ("params" in raw && samplingParamsFault(raw.params, VOCAB) !== null) return false;
      if ("field" in viaHttp || "field" in viaMsgpack) return "field" in viaHttp === "field" in viaMsgpack || json.n !== undefined;
      const strip = (p: any) => ({ ...p, seed: 0n });
      expect(strip(viaMsgpack.params)).toEqual(strip(viaHttp.params));
      return true;
    }), { numRuns: 3000 });
  });
});
