// Request fields -> the generation service's input, with vLLM's defaults. One GenerateInput per
// choice: n > 1 means n generations, each with its own seed (seed + i when the client gave one).
import type { GenerateInput } from "../serving/generation.ts";
import { badRequest } from "./errors.ts";
import type { SamplingFields } from "./schemas.ts";

export interface ParamLimits {
  /** The model's vocabulary (embedding rows): every token id must be below it. */
  vocabSize: number;
  hasTokenizer: boolean;
}

/** What the endpoint decided beyond the shared fields. */
export interface EndpointChoices {
  /** null: as many as max_model_len leaves room for. */
  maxTokens: number | null;
  /** -1 none, 0 the chosen token only, k the top k as well. */
  logprobs: number;
}

/** Everything of a GenerateInput except the prompt and the seed. */
export type GenerationTemplate = Omit<GenerateInput, "promptTokenIds"> & { seed: bigint | null };

export function checkTokenIds(ids: readonly number[], vocabSize: number, param: string): void {
  const bad = ids.find((id) => id >= vocabSize);
  if (bad !== undefined) throw badRequest(`token id ${bad} is out of vocabulary (the model has ${vocabSize} tokens)`, param);
}

function logitBias(raw: Record<string, number> | null | undefined, vocabSize: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const [key, bias] of Object.entries(raw ?? {})) {
    const id = Number(key);
    if (!/^\d+$/.test(key) || id >= vocabSize) {
      throw badRequest(`logit_bias key '${key}' is not a token id of this model (0..${vocabSize - 1})`, "logit_bias");
    }
    out.set(id, bias);
  }
  return out;
}

export function generationTemplate(f: SamplingFields, e: EndpointChoices, limits: ParamLimits): GenerationTemplate {
  const stop = f.stop == null ? [] : typeof f.stop === "string" ? [f.stop] : f.stop;
  if (stop.length && !limits.hasTokenizer) throw badRequest("stop strings need a tokenizer and this model has none; use stop_token_ids", "stop");
  const stopTokenIds = f.stop_token_ids ?? [];
  checkTokenIds(stopTokenIds, limits.vocabSize, "stop_token_ids");
  return {
    params: {
      maxTokens: e.maxTokens,
      temperature: f.temperature ?? 1,
      topP: f.top_p ?? 1,
      topK: f.top_k ?? 0,
      minP: f.min_p ?? 0,
      seed: 0n,
      repetitionPenalty: f.repetition_penalty ?? 1,
      presencePenalty: f.presence_penalty ?? 0,
      frequencyPenalty: f.frequency_penalty ?? 0,
      logitBias: logitBias(f.logit_bias, limits.vocabSize),
      logprobs: e.logprobs,
      ignoreEos: f.ignore_eos ?? false,
      stopTokenIds,
      minTokens: f.min_tokens ?? 0,
    },
    stop,
    includeStopStrInOutput: f.include_stop_str_in_output ?? false,
    detokenize: limits.hasTokenizer,
    skipSpecialTokens: f.skip_special_tokens ?? true,
    seed: f.seed == null ? null : BigInt(f.seed),
  };
}

function randomSeed(): bigint {
  const words = crypto.getRandomValues(new Uint32Array(2));
  return (BigInt(words[0]!) << 32n) | BigInt(words[1]!);
}

/** The n generations of one prompt; seeds wrap to u64 as the engine reads them. */
export function choiceInputs(promptTokenIds: number[], t: GenerationTemplate, n: number): GenerateInput[] {
  const { seed, ...rest } = t;
  return Array.from({ length: n }, (_, i) => ({
    ...rest,
    promptTokenIds,
    params: { ...rest.params, seed: BigInt.asUintN(64, seed === null ? randomSeed() : seed + BigInt(i)) },
  }));
}
