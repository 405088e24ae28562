// The ranges the device's sampler works in. Parameters travel to it as float32 and int32 rows, so
// a double that is finite here can still become infinity or zero there, and vd_sample rejects
// such a row. Every front end validates with these predicates, and the engine checks each request
// again on arrival, so that no request can reach the device with a row it would refuse.
import type { SamplingParams } from "./request.ts";

/** The largest finite float32. */
export const F32_MAX = 3.4028234663852886e38;
/** Top logprobs the sampler returns per token at most. */
export const MAX_TOP_LOGPROBS = 20;
const I32_MAX = 0x7fffffff;

/** Finite once rounded to float32 (Math.fround rounds values just above F32_MAX down to it). */
export const isFiniteF32 = (v: number): boolean => Number.isFinite(v) && Number.isFinite(Math.fround(v));

/** Finite and above zero once rounded to float32 (what may divide a logit). */
export const isPositiveF32 = (v: number): boolean => isFiniteF32(v) && Math.fround(v) > 0;

const isIntIn = (v: number, min: number, max: number): boolean => Number.isInteger(v) && v >= min && v <= max;

function tokenIdFault(ids: Iterable<number>, vocabSize: number, what: string): string | null {
  for (const id of ids) if (!isIntIn(id, 0, vocabSize - 1)) return `${what}: token id ${id} is outside [0, ${vocabSize})`;
  return null;
}

/** Why the sampler would refuse these parameters, or null when it takes them. */
export function samplingParamsFault(p: SamplingParams, vocabSize: number): string | null {
  if (!(isFiniteF32(p.temperature) && p.temperature >= 0)) return `temperature ${p.temperature} is not a finite float32 >= 0`;
  if (!(isPositiveF32(p.topP) && p.topP <= 1)) return `top_p ${p.topP} is not in (0, 1] as a float32`;
  if (!(p.minP >= 0 && p.minP <= 1)) return `min_p ${p.minP} is not in [0, 1]`;
  if (!isPositiveF32(p.repetitionPenalty)) return `repetition_penalty ${p.repetitionPenalty} is not a finite float32 > 0`;
  if (!isFiniteF32(p.presencePenalty)) return `presence_penalty ${p.presencePenalty} is not a finite float32`;
  if (!isFiniteF32(p.frequencyPenalty)) return `frequency_penalty ${p.frequencyPenalty} is not a finite float32`;
  if (!isIntIn(p.topK, -1, I32_MAX)) return `top_k ${p.topK} is not an integer in [-1, 2^31)`;
  if (!isIntIn(p.logprobs, -1, MAX_TOP_LOGPROBS)) return `logprobs ${p.logprobs} is not in [-1, ${MAX_TOP_LOGPROBS}]`;
  for (const v of p.logitBias.values()) if (!isFiniteF32(v)) return `logit_bias value ${v} is not a finite float32`;
  return tokenIdFault(p.logitBias.keys(), vocabSize, "logit_bias") ?? tokenIdFault(p.stopTokenIds, vocabSize, "stop_token_ids");
}
