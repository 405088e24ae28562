// Decode speed at batch 1 (issue 5's decode_b1_tok_s): a 128-token prompt, 256 greedy tokens,
// ignore_eos, through the in-process engine. Prints load time and tokens/s.
// Usage: bun bench/decode.ts --model DIR [--device cuda] [--prompt-len 128] [--tokens 256]
import { parseArgs } from "node:util";
import { parseEngineConfig } from "../src/config.ts";
import { Engine } from "../src/engine/engine.ts";
import { defaultSamplingParams } from "../src/engine/request.ts";

const { values: a } = parseArgs({ args: Bun.argv.slice(2), options: {
  model: { type: "string" }, device: { type: "string" }, "prompt-len": { type: "string" }, tokens: { type: "string" },
  "max-model-len": { type: "string" } } });
const t0 = performance.now();
const engine = Engine.create(parseEngineConfig({
  model: a.model!, device: (a.device ?? "cuda") as "cuda", maxModelLen: Number(a["max-model-len"] ?? 2048), maxNumSeqs: 8,
}));
const loadS = (performance.now() - t0) / 1000;
const n = Number(a.tokens ?? 256), prompt = Array.from({ length: Number(a["prompt-len"] ?? 128) }, (_, i) => 100 + i);
const run = (id: string, maxTokens: number) => {
  engine.addRequest(id, prompt, defaultSamplingParams({ maxTokens, temperature: 0, ignoreEos: true }));
  let first = 0, got = 0;
  const s = performance.now();
  while (engine.hasUnfinished) for (const o of engine.step()) {
    got += o.newTokenIds.length;
    if (!first && got) first = performance.now();
  }
  return { ttftMs: first - s, decodeS: (performance.now() - first) / 1000, got };
};
run("warm", 8);
const r = run("timed", n);
console.log(`load ${loadS.toFixed(2)} s; ttft ${r.ttftMs.toFixed(1)} ms; decode_b1_tok_s ${((r.got - 1) / r.decodeS).toFixed(1)} (${r.got} tokens)`);
engine.dispose();
