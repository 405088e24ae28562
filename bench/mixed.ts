// Issue 5's mixed workload through the in-process engine: every request of bench/workload.ts
// (500, seed 0, prompts 64..1024, outputs 16..512, ignore_eos, greedy) added at once, then steps
// until all finish. Output tok/s = output tokens / seconds from the first add to the last token.
// After --max-seconds it stops and reports what it has with "complete": false (that rate is not
// the figure: the tail of a run, with few requests left, is slower).
// Usage: bun bench/mixed.ts --model DIR [--device cuda] [--workload FILE | workload flags, see bench/workload.ts]
//   [--max-num-seqs 256] [--max-model-len 2048] [--max-num-batched-tokens N] [--max-seconds 240]
//   [--async-scheduling on|off] (default: the engine's, on for GPUs) [--quantization fp8] [--kv-cache-dtype fp8]
// Prints a summary line, then one JSON line (the raw figures).
import { parseArgs } from "node:util";
import { parseEngineConfig } from "../src/config.ts";
import { Engine } from "../src/engine/engine.ts";
import { defaultSamplingParams } from "../src/engine/request.ts";
import { median } from "./figures.ts";
import { makeWorkload, mulberry32, readWorkloadFile, workloadFromFlags, workloadOptions, type WorkloadRequest } from "./workload.ts";

const { values: a } = parseArgs({
  args: Bun.argv.slice(2), strict: true,
  options: {
    ...workloadOptions, model: { type: "string" }, device: { type: "string" }, workload: { type: "string" },
    "max-num-seqs": { type: "string" }, "max-model-len": { type: "string" }, "max-num-batched-tokens": { type: "string" },
    "max-seconds": { type: "string" }, "async-scheduling": { type: "string" }, quantization: { type: "string" },
    "kv-cache-dtype": { type: "string" },
  },
});
if (!a.model) throw new Error("usage: bun bench/mixed.ts --model DIR [--device cuda] [--workload FILE] ...");
const optNum = (s: string | undefined) => (s === undefined ? undefined : Number(s));

const requests: WorkloadRequest[] = a.workload ? readWorkloadFile(await Bun.file(a.workload).text()).requests : makeWorkload(workloadFromFlags(a));
const maxModelLen = Number(a["max-model-len"] ?? 2048);
for (const [i, r] of requests.entries()) {
  if (r.promptTokenIds.length + r.maxTokens > maxModelLen) {
    throw new Error(`request ${i}: ${r.promptTokenIds.length} prompt + ${r.maxTokens} output tokens exceed --max-model-len ${maxModelLen}`);
  }
}

const t0 = performance.now();
const engine = Engine.create(parseEngineConfig({
  model: a.model, device: (a.device ?? "cuda") as "cuda", maxModelLen,
  maxNumSeqs: Number(a["max-num-seqs"] ?? 256), maxNumBatchedTokens: optNum(a["max-num-batched-tokens"]),
  asyncScheduling: a["async-scheduling"] as "on" | "off" | undefined, quantization: (a.quantization ?? null) as "fp8" | null,
  kvCacheDtype: (a["kv-cache-dtype"] ?? "auto") as "auto" | "fp8",
}));
const loadS = (performance.now() - t0) / 1000;

/** Runs every added request to the end (or the deadline); per-request first-token times and counts. */
function drain(deadlineMs: number, start: number) {
  const got = new Map<string, number>(), ttft = new Map<string, number>();
  let steps = 0;
  while (engine.hasUnfinished && performance.now() < deadlineMs) {
    for (const o of engine.step()) {
      if (o.newTokenIds.length === 0) continue;
      if (!ttft.has(o.id)) ttft.set(o.id, performance.now() - start);
      got.set(o.id, (got.get(o.id) ?? 0) + o.newTokenIds.length);
    }
    steps++;
  }
  return { got, ttft, steps, complete: !engine.hasUnfinished };
}

// Warm-up (untimed): a few short requests with their own random ids, so nothing of them is
// in the prefix cache the timed run could hit.
const warmRand = mulberry32(0x5eed), vocab = engine.info.vocabSize;
for (let i = 0; i < 8; i++) {
  const ids = Array.from({ length: 32 }, () => Math.floor(warmRand() * vocab));
  engine.addRequest(`warm${i}`, ids, defaultSamplingParams({ maxTokens: 8, temperature: 0, ignoreEos: true }));
}
drain(Infinity, performance.now());

const maxSeconds = Number(a["max-seconds"] ?? 240);
const start = performance.now();
requests.forEach((r, i) => engine.addRequest(`r${i}`, r.promptTokenIds, defaultSamplingParams({ maxTokens: r.maxTokens, temperature: 0, ignoreEos: true })));
const run = drain(start + maxSeconds * 1000, start);
const seconds = (performance.now() - start) / 1000;
const stats = engine.stats();
engine.dispose();

const outputTokens = [...run.got.values()].reduce((s, n) => s + n, 0);
const promptTokens = requests.reduce((s, r) => s + r.promptTokenIds.length, 0);
const wrongCounts = run.complete ? requests.filter((r, i) => run.got.get(`r${i}`) !== r.maxTokens).length : null;
const ttfts = [...run.ttft.values()];
const result = {
  bench: "mixed", device: engine.info.device, async_scheduling: engine.info.asyncScheduling, quantization: engine.info.quantization,
  kv_cache_dtype: engine.info.kvCacheDtype, requests: requests.length, complete: run.complete,
  requests_with_wrong_token_count: wrongCounts, seconds, output_tokens: outputTokens, prompt_tokens: promptTokens,
  requested_output_tokens: requests.reduce((s, r) => s + r.maxTokens, 0),
  output_tok_s: outputTokens / seconds, total_tok_s: (outputTokens + promptTokens) / seconds,
  ttft_ms_median: ttfts.length ? median(ttfts) : null, ttft_ms_max: ttfts.length ? Math.max(...ttfts) : null,
  steps: run.steps, preemptions: stats.numPreemptionsTotal, load_s: loadS,
  max_num_seqs: engine.info.maxNumSeqs, max_num_batched_tokens: engine.info.maxNumBatchedTokens,
  max_model_len: engine.info.maxModelLen, num_blocks: engine.info.numBlocks,
};
console.log(`mixed (async scheduling ${engine.info.asyncScheduling ? "on" : "off"}): ${requests.length} requests, ${outputTokens} output tokens in ${seconds.toFixed(2)} s = ` +
  `${result.output_tok_s.toFixed(1)} output tok/s${run.complete ? "" : " (PARTIAL: --max-seconds reached)"}; ${run.steps} steps, ${stats.numPreemptionsTotal} preemptions`);
if (wrongCounts) console.log(`warning: ${wrongCounts} requests did not get exactly their max_tokens`);
console.log(JSON.stringify(result));
