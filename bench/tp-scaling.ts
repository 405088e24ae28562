// Tensor parallelism's figures (issues 11 and 12), prepared to run at whatever tp the machine
// allows: decode at batch 1 at each tp of --tps (one engine at a time, median of --runs), and
// vd_all_reduce's latency per message size at each tp (queued --reps times between two syncs,
// after a warm-up: the per-call time a decode step pays twice per layer).
// Usage: bun bench/tp-scaling.ts --model DIR [--device cuda] [--tps 1,2] [--prompt-len 128]
//   [--tokens 128] [--runs 3] [--sizes 8192,65536,1048576,67108864] [--reps 50]
// Prints a line per tp, then one JSON line.
import { parseArgs } from "node:util";
import { parseEngineConfig } from "../src/config.ts";
import { Engine } from "../src/engine/engine.ts";
import { openBackend } from "../src/native/backend.ts";
import { DType, dtypeBytes } from "../src/native/types.ts";
import { timeDecode } from "./decode-run.ts";
import { median } from "./figures.ts";

const { values: a } = parseArgs({ args: Bun.argv.slice(2), strict: true, options: {
  model: { type: "string" }, device: { type: "string" }, tps: { type: "string" }, "prompt-len": { type: "string" },
  tokens: { type: "string" }, runs: { type: "string" }, sizes: { type: "string" }, reps: { type: "string" } } });
if (!a.model) throw new Error("usage: bun bench/tp-scaling.ts --model DIR [--device cuda] [--tps 1,2] ...");
const device = (a.device ?? "cuda") as "cuda" | "cpu";
const tps = (a.tps ?? "1").split(",").map(Number), sizes = (a.sizes ?? "8192,65536,1048576,67108864").split(",").map(Number);
const prompt = Array.from({ length: Number(a["prompt-len"] ?? 128) }, (_, i) => 100 + i);
const tokens = Number(a.tokens ?? 128), runs = Number(a.runs ?? 3), reps = Number(a.reps ?? 50);

/** Median decode tok/s at batch 1 with the model cut over tp ranks. */
function decodeAt(tp: number) {
  const maxModelLen = Math.ceil((prompt.length + tokens + 1) / 16) * 16;
  const engine = Engine.create(parseEngineConfig({ model: a.model!, device, tensorParallelSize: tp, maxModelLen, maxNumSeqs: 8 }));
  try {
    timeDecode(engine, "warm", prompt, 8);
    const r = Array.from({ length: runs }, (_, i) => timeDecode(engine, `t${i}`, prompt, tokens));
    return { decode_tok_s: median(r.map((x) => x.decode_tok_s)), ttft_ms: median(r.map((x) => x.ttft_ms)) };
  } finally {
    engine.dispose();
  }
}

/** Microseconds per vd_all_reduce of each size over tp ranks, in a bf16 model's activation dtype there. */
function allReduceAt(tp: number) {
  const be = openBackend(device, { tp }), act = be.activationDtype(DType.bf16), eb = dtypeBytes(act);
  try {
    return sizes.map((bytes) => {
      const n = Math.floor(bytes / eb), buf = be.alloc(n * eb);
      try {
        be.allReduce(buf, n, act); // warm-up: the communicator is made here
        be.sync();
        const t = performance.now();
        for (let i = 0; i < reps; i++) be.allReduce(buf, n, act);
        be.sync();
        return { bytes: n * eb, us: ((performance.now() - t) * 1000) / reps };
      } finally {
        be.free(buf);
      }
    });
  } finally {
    be.destroy();
  }
}

const results = tps.map((tp) => {
  const r = { tp, ...decodeAt(tp), all_reduce: allReduceAt(tp) };
  console.log(`tp ${tp}: decode_b1 ${r.decode_tok_s.toFixed(1)} tok/s, ttft ${r.ttft_ms.toFixed(1)} ms; all-reduce ` +
    r.all_reduce.map((x) => `${x.bytes} B ${x.us.toFixed(1)} us`).join(", "));
  return r;
});
console.log(JSON.stringify({ bench: "tp_scaling", device, prompt_len: prompt.length, tokens, runs, reps, results }));
