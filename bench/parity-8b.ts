// The engine's side of the parity check on a large model (issue 5: a random Llama-3-8B-shaped
// model, bf16, against transformers on the GPU): three prompts (7, 100 and 600 tokens: a short
// chunk for the decode kernel, longer ones for the prefill kernel) generate greedily together
// (then decode steps, as graphs), and each prompt + output is scored token by token (chunked
// prefill). bench/baselines/parity_8b.py compares both with transformers. Quantized weights (issue
// 10): a GPTQ checkpoint as --model, or --quantization fp8 (the scoring prefill then runs W8A8).
// Usage: bun bench/parity-8b.ts --model DIR [--device cuda] [--tokens 32] [--prompt-lens 7,100,600]
//   [--quantization fp8] --out FILE
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parseEngineConfig } from "../src/config.ts";
import { Engine } from "../src/engine/engine.ts";
import { defaultSamplingParams } from "../src/engine/request.ts";
import { W8A8_MIN_ROWS } from "../src/model/linear.ts";
import { mulberry32 } from "./workload.ts";

const { values: a } = parseArgs({ args: Bun.argv.slice(2), options: {
  model: { type: "string" }, device: { type: "string" }, tokens: { type: "string" }, out: { type: "string" },
  "prompt-lens": { type: "string" }, "max-model-len": { type: "string" }, quantization: { type: "string" } } });
if (!a.model || !a.out) throw new Error("usage: bun bench/parity-8b.ts --model DIR --out FILE");
const tokens = Number(a.tokens ?? 32);
const lens = (a["prompt-lens"] ?? "7,100,600").split(",").map(Number);
const engine = Engine.create(parseEngineConfig({ model: a.model, device: (a.device ?? "cuda") as "cuda", maxModelLen: Number(a["max-model-len"] ?? 2048), maxNumSeqs: 16,
  quantization: (a.quantization ?? null) as "fp8" | null }));
const rand = mulberry32(8);
const lo = Math.min(1000, Math.floor(engine.info.vocabSize / 4)), hi = Math.min(100_000, engine.info.vocabSize);
const prompts = lens.map((n) => Array.from({ length: n }, () => lo + Math.floor(rand() * (hi - lo))));
prompts.forEach((p, i) => engine.addRequest(`p${i}`, p, defaultSamplingParams({ maxTokens: tokens, temperature: 0, ignoreEos: true })));
const generated = new Map<string, number[]>(prompts.map((_, i) => [`p${i}`, []]));
while (engine.hasUnfinished) for (const o of engine.step()) generated.get(o.id)!.push(...o.newTokenIds);
const results = prompts.map((prompt, i) => {
  const gen = generated.get(`p${i}`)!;
  return { prompt, generated: gen, logprobs: Array.from(engine.score([...prompt, ...gen])) };
});
// score() runs chunks of maxNumSeqs rows; W8A8 applies to a chunk of W8A8_MIN_ROWS rows or more.
const summary = { bench: "parity_engine", device: engine.info.device, quantization: engine.info.quantization, w8a8: engine.info.w8a8,
  score_chunk: engine.info.maxNumSeqs, w8a8_min_rows: W8A8_MIN_ROWS, graphs: engine.info.numGraphs, graph_steps: engine.numGraphSteps, prompts: lens };
engine.dispose();
writeFileSync(a.out, JSON.stringify({ ...summary, results }));
console.log(`engine: ${lens.length} prompts (${lens.join(", ")} tokens), ${tokens} greedy tokens each, ${summary.graph_steps} steps as graphs`);
console.log(JSON.stringify(summary));
