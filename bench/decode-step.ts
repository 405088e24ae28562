// Issue 5's decode_b256_step: the wall time of one decode-only engine step with 256 sequences of
// ~512-token context (engine.step() reads the sampled tokens back, so it ends when the GPU has).
// All prompts are prefilled first (chunked, so early requests are a few tokens ahead); timing
// starts only once every sequence has its first token, i.e. every step is decode-only, after
// --warmup such steps. kv_tokens_mean is the mean over timed steps of the summed context lengths,
// the KV that each step reads (bench/figures.ts turns it into bytes for the floor).
// Usage: bun bench/decode-step.ts --model DIR [--device cuda] [--seqs 256] [--context 512] [--steps 20]
//   [--warmup 5] [--max-num-batched-tokens 8192] [--async-scheduling on|off] (default: the engine's)
// Prints a summary line, then one JSON line (the raw figures).
import { parseArgs } from "node:util";
import { parseEngineConfig } from "../src/config.ts";
import { Engine } from "../src/engine/engine.ts";
import { defaultSamplingParams } from "../src/engine/request.ts";
import { median } from "./figures.ts";
import { mulberry32 } from "./workload.ts";

const { values: a } = parseArgs({
  args: Bun.argv.slice(2), strict: true,
  options: {
    model: { type: "string" }, device: { type: "string" }, seqs: { type: "string" }, context: { type: "string" },
    steps: { type: "string" }, warmup: { type: "string" }, "max-num-batched-tokens": { type: "string" }, "async-scheduling": { type: "string" },
  },
});
if (!a.model) throw new Error("usage: bun bench/decode-step.ts --model DIR [--device cuda] [--seqs 256] [--context 512] ...");
const seqs = Number(a.seqs ?? 256), context = Number(a.context ?? 512), steps = Number(a.steps ?? 20), warmup = Number(a.warmup ?? 5);
for (const [k, v] of Object.entries({ seqs, context, steps })) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${k} must be a positive integer, got ${v}`);
}
if (!Number.isInteger(warmup) || warmup < 0) throw new Error(`--warmup must be a non-negative integer, got ${warmup}`);
const budget = Number(a["max-num-batched-tokens"] ?? 8192);
// Room for the prompt, the decodes that run while later prompts prefill, warm-up and timed steps.
const maxTokens = Math.ceil((seqs * context) / budget) + warmup + steps + 8;
const maxModelLen = Math.ceil((context + maxTokens + 16) / 16) * 16;

const engine = Engine.create(parseEngineConfig({
  model: a.model, device: (a.device ?? "cuda") as "cuda", maxNumSeqs: seqs, maxNumBatchedTokens: budget, maxModelLen,
  asyncScheduling: a["async-scheduling"] as "on" | "off" | undefined,
}));
const rand = mulberry32(512), vocab = engine.info.vocabSize;
const len = new Map<string, number>(); // tokens in each sequence so far (prompt + output)
for (let i = 0; i < seqs; i++) {
  // context - 1 prompt tokens: the first decode step then attends over `context` tokens.
  const ids = Array.from({ length: context - 1 }, () => Math.floor(rand() * vocab));
  engine.addRequest(`s${i}`, ids, defaultSamplingParams({ maxTokens, temperature: 0, ignoreEos: true }));
  len.set(`s${i}`, ids.length);
}

const started = new Set<string>(); // sequences that have their first token, i.e. decode from now on

/** One engine step: wall ms, how many sequences it advanced and finished. */
function step(): { ms: number; advanced: number; finished: number } {
  const t = performance.now();
  const outs = engine.step();
  const ms = performance.now() - t;
  let advanced = 0, finished = 0;
  for (const o of outs) {
    if (o.newTokenIds.length) {
      advanced++;
      started.add(o.id);
      len.set(o.id, len.get(o.id)! + o.newTokenIds.length);
    }
    if (o.finished) finished++;
  }
  return { ms, advanced, finished };
}

const tPrefill = performance.now();
let prefillSteps = 0;
const prefillStepsMax = 4 * Math.ceil((seqs * context) / budget) + 64; // far more than chunked prefill needs
while (started.size < seqs) {
  step();
  prefillSteps++;
  if (!engine.hasUnfinished) throw new Error("requests finished before all of them were decoding");
  if (prefillSteps > prefillStepsMax) throw new Error(`only ${started.size} of ${seqs} sequences decoding after ${prefillSteps} steps`);
}
const prefillS = (performance.now() - tPrefill) / 1000;
for (let i = 0; i < warmup; i++) step();

const times: number[] = [], kvTokens: number[] = [];
for (let i = 0; i < steps; i++) {
  // A sequence of n tokens (the last one sampled, not yet in the cache) decodes that token at
  // position n - 1, attending over all n: seqLen = n, the KV tokens the step reads.
  const kv = [...len.values()].reduce((s, n) => s + n, 0);
  const r = step();
  if (r.advanced !== seqs || r.finished) throw new Error(`timed step ${i} advanced ${r.advanced} of ${seqs} sequences (${r.finished} finished): not a full decode step`);
  times.push(r.ms);
  kvTokens.push(kv);
}
const stats = engine.stats();
engine.dispose();
if (stats.numPreemptionsTotal) console.log(`warning: ${stats.numPreemptionsTotal} preemptions (KV cache too small?)`);

const result = {
  bench: "decode_step", device: engine.info.device, async_scheduling: engine.info.asyncScheduling, seqs, context, warmup_steps: warmup, timed_steps: steps,
  step_ms: times, step_ms_median: median(times), step_ms_min: Math.min(...times),
  kv_tokens_mean: kvTokens.reduce((s, n) => s + n, 0) / kvTokens.length, context_mean: kvTokens.reduce((s, n) => s + n, 0) / kvTokens.length / seqs,
  prefill_s: prefillS, prefill_steps: prefillSteps, max_num_batched_tokens: budget, preemptions: stats.numPreemptionsTotal,
};
console.log(`decode step: ${seqs} sequences, mean context ${result.context_mean.toFixed(1)}: median ${result.step_ms_median.toFixed(3)} ms, ` +
  `min ${result.step_ms_min.toFixed(3)} ms over ${steps} steps (prefill took ${prefillS.toFixed(2)} s in ${prefillSteps} steps)`);
console.log(JSON.stringify(result));
