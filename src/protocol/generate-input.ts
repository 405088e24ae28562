// Turns a checked generate frame into the generation service's input: tokenizes a text prompt,
// fills the defaults (those of vLLM's SamplingParams), and checks what the schema cannot know
// alone: token ids against the vocabulary, and fields that only make sense together.
import type { GenerateInput } from "../serving/generation.ts";
import type { TextTokenizer } from "../tokenizer/tokenizer.ts";
import type { GenerateFrame } from "./messages.ts";

/** A generate frame the server cannot run; its message goes back to the client as is. */
export class InvalidGenerateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidGenerateError";
  }
}

export interface ModelFacts {
  tokenizer: TextTokenizer | null;
  vocabSize: number;
}

/** max_tokens when the client gives none (vLLM's SamplingParams and /v1/completions default). */
export const DEFAULT_MAX_TOKENS = 16;

export function toGenerateInput(f: GenerateFrame, m: ModelFacts): GenerateInput {
  const p = f.params ?? {};
  const detokenize = f.detokenize ?? true;
  const stop = p.stop == null ? [] : typeof p.stop === "string" ? [p.stop] : p.stop;
  const maxTokens = p.max_tokens ?? DEFAULT_MAX_TOKENS;
  if (stop.length && !detokenize) throw new InvalidGenerateError("params.stop: stop strings need detokenize: true (use stop_token_ids to stop on tokens)");
  if (p.min_tokens != null && p.min_tokens > maxTokens) {
    throw new InvalidGenerateError(`params.min_tokens (${p.min_tokens}) must not exceed max_tokens (${maxTokens})`);
  }
  const stopTokenIds = p.stop_token_ids ?? [];
  checkVocab("params.stop_token_ids", stopTokenIds, m.vocabSize);
  const logitBias = new Map(Object.entries(p.logit_bias ?? {}).map(([k, v]) => [Number(k), v] as [number, number]));
  checkVocab("params.logit_bias", [...logitBias.keys()], m.vocabSize);
  return {
    promptTokenIds: promptTokenIds(f, m),
    params: {
      maxTokens,
      temperature: p.temperature ?? 1,
      topP: p.top_p ?? 1,
      topK: p.top_k === -1 ? 0 : (p.top_k ?? 0),
      minP: p.min_p ?? 0,
      seed: p.seed == null ? randomSeed() : BigInt(p.seed),
      repetitionPenalty: p.repetition_penalty ?? 1,
      presencePenalty: p.presence_penalty ?? 0,
      frequencyPenalty: p.frequency_penalty ?? 0,
      logitBias,
      logprobs: p.logprobs ?? -1,
      ignoreEos: p.ignore_eos ?? false,
      stopTokenIds,
      minTokens: p.min_tokens ?? 0,
    },
    stop,
    includeStopStrInOutput: p.include_stop_str_in_output ?? false,
    detokenize,
    skipSpecialTokens: p.skip_special_tokens ?? true,
  };
}

/** A text prompt is encoded with special tokens (a BOS where the model wants one), as /v1/completions does. */
function promptTokenIds(f: GenerateFrame, m: ModelFacts): number[] {
  if (f.prompt_token_ids != null) {
    checkVocab("prompt_token_ids", f.prompt_token_ids, m.vocabSize);
    return f.prompt_token_ids;
  }
  if (!m.tokenizer) throw new InvalidGenerateError("prompt: this model has no tokenizer; send prompt_token_ids");
  return m.tokenizer.encode(f.prompt ?? "", true);
}

function checkVocab(field: string, ids: readonly number[], vocabSize: number): void {
  const bad = ids.findIndex((t) => t >= vocabSize);
  if (bad >= 0) throw new InvalidGenerateError(`${field}: token id ${ids[bad]} is outside the vocabulary (size ${vocabSize})`);
}

/** A seed for a client that gave none: 64 random bits, so unseeded requests differ from one another. */
function randomSeed(): bigint {
  return crypto.getRandomValues(new BigUint64Array(1))[0]!;
}
