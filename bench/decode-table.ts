// The decode step at batch 1..256 for several weight formats side by side (issue 10's table: where
// each wins): bench/decode-setup.ts's step (forward pass + greedy sample, C-token contexts, no
// scheduler, no CUDA graphs) timed over --steps after a warm-up, per batch size, one model loaded
// at a time. A run is LABEL=DIR, LABEL=DIR:fp8 (quantized at load) or LABEL=DIR:fp8:wo (and its
// linears weight-only at every batch size: no W8A8).
// Usage: bun bench/decode-table.ts --runs bf16=M,fp8=M:fp8,int4=M-gptq4 [--device cuda]
//   [--batches 1,2,4,8,16,32,64,128,256] [--context 512] [--steps 10]
// Prints the table (ms per step and each run's step over the first run's), then one JSON line.
import { parseArgs } from "node:util";
import { loadModelDir } from "../src/model/model-dir.ts";
import { freeWeights, loadWeights } from "../src/model/weights.ts";
import { openBackend } from "../src/native/backend.ts";
import { decodeStep, parseRuns } from "./decode-setup.ts";

const { values: a } = parseArgs({ args: Bun.argv.slice(2), options: {
  runs: { type: "string" }, device: { type: "string" }, batches: { type: "string" }, context: { type: "string" },
  steps: { type: "string" } } });
const runs = parseRuns(a.runs);
const batches = (a.batches ?? "1,2,4,8,16,32,64,128,256").split(",").map(Number);
const C = Number(a.context ?? 512), steps = Number(a.steps ?? 10);
const be = openBackend((a.device ?? "cuda") as "cuda");

/** Milliseconds per step of one run at each batch size. */
function measure(run: (typeof runs)[number]): number[] {
  const dir = loadModelDir(run.dir);
  const w = loadWeights(be, dir.config, dir.tensors, undefined, { quantization: run.quantization });
  try {
    return batches.map((B) => {
      const d = decodeStep(be, dir.config, w, B, C, { w8a8: run.w8a8 });
      try {
        d.step(); // warm-up: workspaces grow, kernels load
        be.sync();
        const t0 = performance.now();
        for (let i = 0; i < steps; i++) d.step();
        be.sync();
        return (performance.now() - t0) / steps;
      } finally {
        d.dispose();
      }
    });
  } finally {
    freeWeights(be, w);
  }
}

const ms = runs.map(measure);

const head = `${"batch".padStart(5)} ${runs.map((r) => `${r.label} ms`.padStart(12)).join(" ")} ${runs.slice(1).map((r) => `${r.label}/${runs[0]!.label}`.padStart(12)).join(" ")}  fastest`;
console.log(`decode step, context ${C}, ${steps} steps each (no CUDA graphs); ratios below 1 are faster than ${runs[0]!.label}`);
console.log(head);
batches.forEach((B, i) => {
  const row = ms.map((m) => m[i]!), best = runs[row.indexOf(Math.min(...row))]!.label;
  console.log(`${String(B).padStart(5)} ${row.map((v) => v.toFixed(3).padStart(12)).join(" ")} ${row.slice(1).map((v) => (v / row[0]!).toFixed(2).padStart(12)).join(" ")}  ${best}`);
});
console.log(JSON.stringify({ bench: "decode_table", context: C, steps, batches, runs: runs.map((r, i) => ({ ...r, step_ms: ms[i] })) }));
