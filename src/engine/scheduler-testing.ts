// For the scheduler's tests: a small configuration (4-token blocks) and requests whose prompts
// are runs of consecutive ids.
import { defaultSamplingParams, Request, type SamplingParams } from "./request.ts";
import type { SchedulerConfig } from "./scheduler.ts";

export const smallConfig: SchedulerConfig = {
  maxNumSeqs: 4,
  maxNumBatchedTokens: 16,
  maxModelLen: 32,
  blockSize: 4,
  numBlocks: 16,
  enablePrefixCaching: true,
};

export const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

/** A request whose prompt is ids 100, 101, ... (promptLen of them). */
export const rangeRequest = (id: string, promptLen: number, params: Partial<SamplingParams> = {}, eos: number[] = []) =>
  new Request(id, range(100, promptLen), defaultSamplingParams(params), 0, eos);
