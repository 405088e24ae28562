// Turns a checked generate frame into the generation service's input: tokenizes a text prompt and
// maps the params as the HTTP API does (one mapping, src/serving/sampling-params.ts), with the
// defaults of vLLM's SamplingParams.
import { ServiceError, type GenerateInput } from "../serving/generation.ts";
import { choiceInputs, generationTemplate, type GenerationTemplate } from "../serving/sampling-params.ts";
import type { PromptEncoder } from "../serving/prompt-encoder.ts";
import type { GenerateFrame } from "./messages.ts";

/** A generate frame the server cannot run; its message goes back to the client as is. */
export class InvalidGenerateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidGenerateError";
  }
}

export interface ModelFacts {
  prompts: PromptEncoder | null;
  vocabSize: number;
}

/** max_tokens when the client gives none (vLLM's SamplingParams and /v1/completions default). */
export const DEFAULT_MAX_TOKENS = 16;

export async function toGenerateInput(f: GenerateFrame, m: ModelFacts): Promise<GenerateInput> {
  const p = f.params ?? {};
  let template: GenerationTemplate;
  try {
    template = generationTemplate(p, {
      maxTokens: p.max_tokens ?? DEFAULT_MAX_TOKENS, logprobs: p.logprobs ?? -1, detokenize: f.detokenize ?? true, vocabSize: m.vocabSize,
    });
  } catch (e) {
    if (e instanceof ServiceError) throw new InvalidGenerateError(`params.${e.param}: ${e.message}`);
    throw e;
  }
  return choiceInputs(await promptTokenIds(f, m), template, 1)[0]!;
}

/** A text prompt is encoded with special tokens (a BOS where the model wants one), as /v1/completions does. */
async function promptTokenIds(f: GenerateFrame, m: ModelFacts): Promise<number[]> {
  if (f.prompt_token_ids != null) {
    checkVocab("prompt_token_ids", f.prompt_token_ids, m.vocabSize);
    return f.prompt_token_ids;
  }
  if (!m.prompts) throw new InvalidGenerateError("prompt: this model has no tokenizer; send prompt_token_ids");
  try {
    return await m.prompts.encode(f.prompt ?? "", true);
  } catch (e) {
    if (e instanceof ServiceError && e.status < 500) throw new InvalidGenerateError(`prompt: ${e.message}`); // the prompt's fault, not the server's
    throw e;
  }
}

function checkVocab(field: string, ids: readonly number[], vocabSize: number): void {
  const bad = ids.findIndex((t) => t >= vocabSize);
  if (bad >= 0) throw new InvalidGenerateError(`${field}: token id ${ids[bad]} is outside the vocabulary (size ${vocabSize})`);
}
