// One batch-1 decode through an in-process engine, timed: the request's TTFT, its decode rate
// (tokens after the first over the time after the first) and end-to-end rate. Shared by
// bench/decode.ts and bench/tp-scaling.ts.
import type { Engine } from "../src/engine/engine.ts";
import { defaultSamplingParams } from "../src/engine/request.ts";

export interface DecodeRun {
  ttft_ms: number;
  decode_tok_s: number;
  e2e_tok_s: number;
  tokens: number;
}

export function timeDecode(engine: Engine, id: string, prompt: number[], maxTokens: number): DecodeRun {
  engine.addRequest(id, prompt, defaultSamplingParams({ maxTokens, temperature: 0, ignoreEos: true }));
  let first = 0, got = 0;
  const s = performance.now();
  while (engine.hasUnfinished) for (const o of engine.step()) {
    got += o.newTokenIds.length;
    if (!first && got) first = performance.now();
  }
  const end = performance.now();
  return { ttft_ms: first - s, decode_tok_s: (got - 1) / ((end - first) / 1000), e2e_tok_s: got / ((end - s) / 1000), tokens: got };
}
