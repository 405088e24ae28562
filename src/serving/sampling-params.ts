// The sampling fields both front ends accept (an HTTP body and a msgpack `params` map use the
// same snake_case names), their bounds, and the one mapping onto the engine's parameters. Floats
// are checked in the range the device samples in (float32), and every list is bounded, so that no
// field value can fail a step or make per-token work (stop strings, biases) grow without limit.
import { z } from "zod";
import { isFiniteF32, isPositiveF32 } from "../engine/sampling-check.ts";
import { ServiceError, type GenerateInput } from "./generation.ts";

export const SAMPLING_LIMITS = {
  stopStrings: 64,
  stopStringChars: 1024,
  stopTokenIds: 1024,
  logitBias: 1024,
  /** Choices per prompt (HTTP's n). */
  n: 128,
  topLogprobs: 20,
} as const;

const L = SAMPLING_LIMITS;
const I32_MAX = 0x7fffffff;
const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);
const between = (min: number, max: number) => z.number().min(min).max(max);

// JSON numbers lose precision past 2^53, but clients send such seeds; msgpack can send them exactly (bigint).
const SEED_RANGE = "must be an integer between -2^63 and 2^64-1";
const seed = z.union([z.number(), z.bigint()], { error: SEED_RANGE }).refine(
  (v) => (typeof v === "bigint" || Number.isInteger(v)) && v >= -(2 ** 63) && v < 2 ** 64,
  { error: SEED_RANGE },
);

const stopString = z.string({ error: "must be a string or a list of strings" })
  .min(1, { error: "stop strings must not be empty" })
  .max(L.stopStringChars, { error: `a stop string may have at most ${L.stopStringChars} characters` });
const stop = z.union([stopString, z.array(stopString).max(L.stopStrings, { error: `at most ${L.stopStrings} stop strings` })], {
  error: `must be a non-empty string (at most ${L.stopStringChars} characters) or a list of at most ${L.stopStrings} of them`,
});

const logitBias = z.record(z.string(), between(-100, 100)).refine((m) => Object.keys(m).length <= L.logitBias, {
  error: `at most ${L.logitBias} entries`,
});

/** The shared fields, each optional (null means the default), as zod shapes to spread into a schema. */
export const samplingFieldShape = {
  max_tokens: int(1).nullish(),
  temperature: z.number().min(0).refine(isFiniteF32, { error: "must be finite as a 32-bit float (at most 3.4e38)" }).nullish(),
  top_p: z.number().max(1).refine(isPositiveF32, { error: "must be > 0 as a 32-bit float (at least 1.4e-45) and <= 1" }).nullish(),
  top_k: int(-1, I32_MAX).nullish(),
  min_p: between(0, 1).nullish(),
  seed: seed.nullish(),
  stop: stop.nullish(),
  stop_token_ids: z.array(int(0)).max(L.stopTokenIds, { error: `at most ${L.stopTokenIds} token ids` }).nullish(),
  presence_penalty: between(-2, 2).nullish(),
  frequency_penalty: between(-2, 2).nullish(),
  repetition_penalty: z.number().refine(isPositiveF32, {
    error: "must be > 0 and finite as a 32-bit float (between 1.4e-45 and 3.4e38)",
  }).nullish(),
  logit_bias: logitBias.nullish(),
  ignore_eos: z.boolean().nullish(),
  min_tokens: int(0).nullish(),
  include_stop_str_in_output: z.boolean().nullish(),
  skip_special_tokens: z.boolean().nullish(),
};

const SamplingFieldsSchema = z.object(samplingFieldShape);
export type SamplingFields = z.output<typeof SamplingFieldsSchema>;

/** What the front end decided beyond the shared fields. */
export interface EndpointChoices {
  /** null: as many as max_model_len leaves room for. */
  maxTokens: number | null;
  /** -1 none, 0 the chosen token only, k the top k as well. */
  logprobs: number;
  /** Whether text comes back (the model has a tokenizer and the client wants text). */
  detokenize: boolean;
  /** The model's vocabulary (embedding rows): every token id must be below it. */
  vocabSize: number;
}

/** Everything of a GenerateInput except the prompt and the seed (null: draw one per choice). */
export type GenerationTemplate = Omit<GenerateInput, "promptTokenIds"> & { seed: bigint | null };

const invalid = (message: string, param: string): ServiceError => new ServiceError(400, "invalid_request_error", message, param);

/** Throws a 400 naming `param` when an id is not below vocabSize (ids are known non-negative integers). */
export function checkTokenIds(ids: readonly number[], vocabSize: number, param: string): void {
  const bad = ids.find((id) => id >= vocabSize);
  if (bad !== undefined) throw invalid(`token id ${bad} is out of vocabulary (the model has ${vocabSize} tokens)`, param);
}

function logitBiasMap(raw: Record<string, number> | null | undefined, vocabSize: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const [key, bias] of Object.entries(raw ?? {})) {
    const id = Number(key);
    if (!/^\d+$/.test(key) || id >= vocabSize) {
      throw invalid(`logit_bias key '${key.slice(0, 32)}' is not a token id of this model (0..${vocabSize - 1})`, "logit_bias");
    }
    out.set(id, bias);
  }
  return out;
}

/** The checked fields as the engine's parameters, with vLLM's defaults; throws a 400 naming the field. */
export function generationTemplate(f: SamplingFields, e: EndpointChoices): GenerationTemplate {
  const stop = f.stop == null ? [] : typeof f.stop === "string" ? [f.stop] : f.stop;
  if (stop.length && !e.detokenize) {
    throw invalid("stop strings need text output (a model with a tokenizer, and detokenize not false); use stop_token_ids", "stop");
  }
  if (f.min_tokens != null && e.maxTokens !== null && f.min_tokens > e.maxTokens) {
    throw invalid(`min_tokens (${f.min_tokens}) must not exceed max_tokens (${e.maxTokens})`, "min_tokens");
  }
  const stopTokenIds = f.stop_token_ids ?? [];
  checkTokenIds(stopTokenIds, e.vocabSize, "stop_token_ids");
  return {
    params: {
      maxTokens: e.maxTokens,
      temperature: f.temperature ?? 1,
      topP: f.top_p ?? 1,
      topK: Math.max(0, f.top_k ?? 0), // -1 and 0 both mean off
      minP: f.min_p ?? 0,
      seed: 0n,
      repetitionPenalty: f.repetition_penalty ?? 1,
      presencePenalty: f.presence_penalty ?? 0,
      frequencyPenalty: f.frequency_penalty ?? 0,
      logitBias: logitBiasMap(f.logit_bias, e.vocabSize),
      logprobs: e.logprobs,
      ignoreEos: f.ignore_eos ?? false,
      stopTokenIds,
      minTokens: f.min_tokens ?? 0,
    },
    stop,
    includeStopStrInOutput: f.include_stop_str_in_output ?? false,
    detokenize: e.detokenize,
    skipSpecialTokens: f.skip_special_tokens ?? true,
    seed: f.seed == null ? null : BigInt(f.seed),
  };
}

function randomSeed(): bigint {
  return crypto.getRandomValues(new BigUint64Array(1))[0]!;
}

/** The n generations of one prompt; a given seed becomes seed + i per choice, wrapped to u64 as the engine reads it. */
export function choiceInputs(promptTokenIds: number[], t: GenerationTemplate, n: number): GenerateInput[] {
  const { seed, ...rest } = t;
  return Array.from({ length: n }, (_, i) => ({
    ...rest,
    promptTokenIds,
    params: { ...rest.params, seed: BigInt.asUintN(64, seed === null ? randomSeed() : seed + BigInt(i)) },
  }));
}
