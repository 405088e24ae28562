// Where a decode step's time goes, op by op: the model's forward pass (and a greedy sample) at
// batch B with C-token contexts, every backend call bracketed by syncs and timed on the host.
// The syncs add a few microseconds per op, so read the table for proportions, not totals.
// Usage: bun bench/op-profile.ts --model DIR [--device cuda] [--batch 1] [--context 512] [--steps 5]
import { parseArgs } from "node:util";
import { loadModelDir } from "../src/model/model-dir.ts";
import { allocKvCache, LlamaModel, type StepBatch } from "../src/model/llama.ts";
import { loadWeights } from "../src/model/weights.ts";
import { openBackend } from "../src/native/backend.ts";
import { type Backend, SP } from "../src/native/types.ts";

const { values: a } = parseArgs({ args: Bun.argv.slice(2), options: {
  model: { type: "string" }, device: { type: "string" }, batch: { type: "string" }, context: { type: "string" },
  steps: { type: "string" } } });
const B = Number(a.batch ?? 1), C = Number(a.context ?? 512), steps = Number(a.steps ?? 5), BS = 16;

/** Wraps every op of `be` with syncs and adds its wall time to `times` under the op's name. */
function timed(be: Backend, times: Map<string, { ms: number; calls: number }>, on: { enabled: boolean }): Backend {
  return new Proxy(be, {
    get(target, prop, recv) {
      const v = Reflect.get(target, prop, recv);
      if (typeof v !== "function" || prop === "sync") return v;
      return (...args: unknown[]) => {
        if (!on.enabled) return v.apply(target, args);
        target.sync();
        const t0 = performance.now();
        const r = v.apply(target, args);
        target.sync();
        const name = prop === "gemm" ? `gemm n=${args[5]} k=${args[6]}` : String(prop);
        const e = times.get(name) ?? { ms: 0, calls: 0 };
        e.ms += performance.now() - t0;
        e.calls++;
        times.set(name, e);
        return r;
      };
    },
  });
}

const times = new Map<string, { ms: number; calls: number }>();
const on = { enabled: false };
const raw = openBackend((a.device ?? "cuda") as "cuda");
const be = timed(raw, times, on);
const dir = loadModelDir(a.model!);
const w = loadWeights(be, dir.config, dir.tensors);
const blocksPerSeq = Math.ceil((C + 1) / BS);
const cache = allocKvCache(be, dir.config, B * blocksPerSeq, BS, be.activationDtype(w.dtype));
const model = new LlamaModel(be, dir.config, w, cache, B, B, C + 1);

// One decode row per sequence at position C - 1; sequence s owns blocks [s * blocksPerSeq, ...).
const i32 = (xs: number[]) => {
  const buf = be.alloc(Math.max(1, xs.length) * 4);
  be.copyFromHost(buf, 0, Int32Array.from(xs));
  return buf;
};
const seqs = Array.from({ length: B }, (_, s) => s);
const batch: StepBatch = {
  nTokens: B, nSeqs: B, nSample: B, maxBlocks: blocksPerSeq,
  tokenIds: i32(seqs.map((s) => 100 + s)), positions: i32(seqs.map(() => C - 1)),
  slotMapping: i32(seqs.map((s) => s * blocksPerSeq * BS + C - 1)), queryStart: i32([...seqs, B]),
  seqLens: i32(seqs.map(() => C)), blockTables: i32(seqs.flatMap((s) => Array.from({ length: blocksPerSeq }, (_, j) => s * blocksPerSeq + j))),
  sampleRows: i32(seqs),
};
const fparams = be.alloc(B * SP.nf * 4);
be.copyFromHost(fparams, 0, Float32Array.from(seqs.flatMap(() => [0, 1, 0, 1, 0, 0])));
const iparams = i32(seqs.flatMap(() => [0, 0, 0, 0]));
const offsets = i32(Array(B + 1).fill(0)), empty = i32([0]), out = be.alloc(B * 4), lp = be.alloc(B * 4);
const step = () => {
  const logits = model.forward(batch);
  be.sample({ logits, nSeqs: B, vocab: dir.config.vocabSize, fparams, iparams, seenOffsets: offsets, seenTokens: empty,
    seenCounts: empty, biasOffsets: offsets, biasTokens: empty, biasValues: empty, nTop: 0, outTokens: out,
    outLogprobs: lp, outTopIds: 0, outTopLogprobs: 0 });
};
step(); // warm-up
raw.sync();
const t0 = performance.now();
for (let i = 0; i < steps; i++) step();
raw.sync();
const plainMs = (performance.now() - t0) / steps;
on.enabled = true;
for (let i = 0; i < steps; i++) step();
const rows = [...times.entries()].map(([op, t]) => ({ op, msPerStep: t.ms / steps, calls: t.calls / steps }));
rows.sort((x, y) => y.msPerStep - x.msPerStep);
const total = rows.reduce((s, r) => s + r.msPerStep, 0);
console.log(`batch ${B}, context ${C}: ${plainMs.toFixed(3)} ms per step without syncs; ${total.toFixed(3)} ms with a sync around each op`);
for (const r of rows) console.log(`${r.op.padEnd(28)} ${r.msPerStep.toFixed(3).padStart(8)} ms  ${(100 * r.msPerStep / total).toFixed(1).padStart(5)}%  ${r.calls} calls`);
console.log(JSON.stringify({ bench: "op_profile", batch: B, context: C, step_ms: plainMs, synced_ms: total, ops: rows }));
