// Issue 5's prefill_fraction_of_gemm_peak, the engine's half: 8 prompts of 2048 tokens prefilled
// in one step (max_num_batched_tokens 16384), each sampling one token. Wall time of that step
// (engine.step() returns after the sampled tokens are back), best of --reps with fresh random
// prompts each (no prefix cache hit: checked), after one untimed warm-up. FLOPs as
// bench/figures.ts's prefillFlops counts them; the GEMM peak comes from bench/baselines/floors.py.
// Usage: bun bench/prefill.ts --model DIR [--device cuda] [--prompts 8] [--prompt-len 2048] [--reps 3] [--quantization fp8]
// Prints a summary line, then one JSON line (the raw figures).
import { parseArgs } from "node:util";
import { parseEngineConfig } from "../src/config.ts";
import { Engine } from "../src/engine/engine.ts";
import { defaultSamplingParams } from "../src/engine/request.ts";
import { loadModelDir } from "../src/model/model-dir.ts";
import { median, prefillFlops } from "./figures.ts";
import { mulberry32 } from "./workload.ts";

const { values: a } = parseArgs({
  args: Bun.argv.slice(2), strict: true,
  options: {
    model: { type: "string" }, device: { type: "string" }, prompts: { type: "string" }, "prompt-len": { type: "string" }, reps: { type: "string" },
    quantization: { type: "string" },
  },
});
if (!a.model) throw new Error("usage: bun bench/prefill.ts --model DIR [--device cuda] [--prompts 8] [--prompt-len 2048] [--reps 3]");
const prompts = Number(a.prompts ?? 8), promptLen = Number(a["prompt-len"] ?? 2048), reps = Number(a.reps ?? 3);
for (const [k, v] of Object.entries({ prompts, "prompt-len": promptLen, reps })) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${k} must be a positive integer, got ${v}`);
}
const tokens = prompts * promptLen;
const engine = Engine.create(parseEngineConfig({
  model: a.model, device: (a.device ?? "cuda") as "cuda", maxNumSeqs: prompts, maxNumBatchedTokens: tokens,
  maxModelLen: Math.ceil((promptLen + 1) / 16) * 16, quantization: (a.quantization ?? null) as "fp8" | null,
}));
const cfg = loadModelDir(a.model).config;
const rand = mulberry32(2048), vocab = engine.info.vocabSize;

/** Adds `prompts` fresh prompts, steps until each has its one token; wall seconds and step count. */
function prefillOnce(tag: string): { s: number; steps: number } {
  for (let i = 0; i < prompts; i++) {
    const ids = Array.from({ length: promptLen }, () => Math.floor(rand() * vocab));
    engine.addRequest(`${tag}-${i}`, ids, defaultSamplingParams({ maxTokens: 1, temperature: 0, ignoreEos: true }));
  }
  const t = performance.now();
  let steps = 0, sampled = 0;
  while (engine.hasUnfinished) {
    for (const o of engine.step()) {
      if (o.numCachedTokens > 0) throw new Error(`${o.id}: ${o.numCachedTokens} prompt tokens came from the prefix cache`);
      sampled += o.newTokenIds.length;
    }
    steps++;
  }
  if (sampled !== prompts) throw new Error(`${tag}: ${sampled} tokens sampled, expected ${prompts}`);
  return { s: (performance.now() - t) / 1000, steps };
}

prefillOnce("warm");
const runs = Array.from({ length: reps }, (_, i) => prefillOnce(`rep${i}`));
engine.dispose();

const best = Math.min(...runs.map((r) => r.s));
const flops = prefillFlops(cfg, Array(prompts).fill(promptLen), prompts);
const result = {
  bench: "prefill", device: engine.info.device, quantization: engine.info.quantization, w8a8: engine.info.w8a8, prompts, prompt_len: promptLen, tokens,
  one_step: runs.every((r) => r.steps === 1), steps: runs.map((r) => r.steps),
  step_s: runs.map((r) => r.s), best_s: best, median_s: median(runs.map((r) => r.s)),
  flops, flops_per_s: flops.total / best, tokens_per_s: tokens / best,
};
console.log(`prefill: ${prompts} x ${promptLen} tokens in ${runs[0]!.steps} step(s): best ${(best * 1e3).toFixed(1)} ms = ` +
  `${(result.flops_per_s / 1e12).toFixed(1)} TFLOP/s (${(flops.total / 1e12).toFixed(2)} TFLOP), ${result.tokens_per_s.toFixed(0)} tok/s`);
if (!result.one_step) console.log(`warning: the prefill took ${result.steps.join(", ")} steps, not one`);
console.log(JSON.stringify(result));
