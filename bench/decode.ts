// Decode speed at batch 1 (issue 5's decode_b1_tok_s): a 128-token prompt, 256 greedy tokens,
// ignore_eos, through the in-process engine. decode tok/s counts the tokens after the first over
// the time after the first (the prefill is TTFT); the median of --runs timed runs is the figure.
// Usage: bun bench/decode.ts --model DIR [--device cuda] [--prompt-len 128] [--tokens 256] [--runs 3]
//   [--async-scheduling on|off] (default: the engine's, on for GPUs) [--quantization fp8]
// Prints a summary line, then one JSON line (the raw figures, for bench/figures.ts).
import { parseArgs } from "node:util";
import { parseEngineConfig } from "../src/config.ts";
import { Engine } from "../src/engine/engine.ts";
import { timeDecode } from "./decode-run.ts";
import { median } from "./figures.ts";

const { values: a } = parseArgs({ args: Bun.argv.slice(2), options: {
  model: { type: "string" }, device: { type: "string" }, "prompt-len": { type: "string" }, tokens: { type: "string" },
  "max-model-len": { type: "string" }, runs: { type: "string" }, "async-scheduling": { type: "string" }, quantization: { type: "string" } } });
const t0 = performance.now();
const engine = Engine.create(parseEngineConfig({
  model: a.model!, device: (a.device ?? "cuda") as "cuda", maxModelLen: Number(a["max-model-len"] ?? 2048), maxNumSeqs: 8,
  asyncScheduling: a["async-scheduling"] as "on" | "off" | undefined, quantization: (a.quantization ?? null) as "fp8" | null,
}));
const loadS = (performance.now() - t0) / 1000;
const n = Number(a.tokens ?? 256), prompt = Array.from({ length: Number(a["prompt-len"] ?? 128) }, (_, i) => 100 + i);
const run = (id: string, maxTokens: number) => timeDecode(engine, id, prompt, maxTokens);
run("warm", 8);
const runs = Array.from({ length: Number(a.runs ?? 3) }, (_, i) => run(`timed${i}`, n));
const device = engine.info.device, asyncScheduling = engine.info.asyncScheduling;
engine.dispose();
const result = {
  bench: "decode_b1", device, async_scheduling: asyncScheduling, quantization: engine.info.quantization, load_s: loadS, prompt_len: prompt.length, tokens: n, runs,
  decode_tok_s: median(runs.map((r) => r.decode_tok_s)), e2e_tok_s: median(runs.map((r) => r.e2e_tok_s)),
  ttft_ms: median(runs.map((r) => r.ttft_ms)),
};
console.log(`async scheduling ${asyncScheduling ? "on" : "off"}; load ${loadS.toFixed(2)} s; ttft ${result.ttft_ms.toFixed(1)} ms; decode_b1_tok_s ${result.decode_tok_s.toFixed(1)} ` +
  `(median of ${runs.length} runs of ${n} tokens: ${runs.map((r) => r.decode_tok_s.toFixed(1)).join(", ")})`);
console.log(JSON.stringify(result));
