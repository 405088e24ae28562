// Where a decode step's time goes, op by op: the model's forward pass (and a greedy sample) at
// batch B with C-token contexts. Two readings per op: its calls bracketed by syncs and timed on
// the host (adds a sync's cost to every call), and its first call's arguments replayed 50 times
// back to back with one sync (the device time per call, or the launch cost if that is larger).
// Usage: bun bench/op-profile.ts --model DIR [--device cuda] [--batch 1] [--context 512] [--steps 5]
import { parseArgs } from "node:util";
import { loadModelDir } from "../src/model/model-dir.ts";
import { loadWeights } from "../src/model/weights.ts";
import { openBackend } from "../src/native/backend.ts";
import { type Backend, DType, dtypeBytes, type IntWeights } from "../src/native/types.ts";
import { decodeStep } from "./decode-setup.ts";

const { values: a } = parseArgs({ args: Bun.argv.slice(2), options: {
  model: { type: "string" }, device: { type: "string" }, batch: { type: "string" }, context: { type: "string" },
  steps: { type: "string" } } });
const B = Number(a.batch ?? 1), C = Number(a.context ?? 512), steps = Number(a.steps ?? 5);

/** GEMMs by shape and weight format; other ops by name. */
function opName(op: string, args: unknown[]): string {
  const at = op === "gemmFp8" ? 6 : 5; // gemmFp8 has its scales before the bias
  return op.startsWith("gemm") ? `${op} n=${args[at]} k=${args[at + 1]}` : op;
}

/** The weight bytes one call of a GEMM op reads (scales and zeros included), or null. */
function weightBytes(name: string): number | null {
  const args = firstArgs.get(name)!, [op] = name.split(" ");
  if (op === "gemm") return Number(args[5]) * Number(args[6]) * dtypeBytes(args[8] as DType);
  if (op === "gemmFp8") return Number(args[6]) * Number(args[7]) + Number(args[6]) * 4;
  if (op !== "gemmInt") return null;
  const w = args[2] as IntWeights, n = Number(args[5]), k = Number(args[6]);
  return (n * k * w.bits) / 8 + n * Math.ceil(k / w.groupSize) * 8;
}

/** Wraps every op of `be` with syncs and adds its wall time to `times` under the op's name. */
const firstArgs = new Map<string, unknown[]>();

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
        const name = opName(String(prop), args);
        if (!firstArgs.has(name)) firstArgs.set(name, args);
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
const { step } = decodeStep(be, dir.config, w, B, C);
step(); // warm-up
raw.sync();
const t0 = performance.now();
for (let i = 0; i < steps; i++) step();
raw.sync();
const plainMs = (performance.now() - t0) / steps;
on.enabled = true;
for (let i = 0; i < steps; i++) step();
on.enabled = false;
/** Mean microseconds per call of op `name` replayed back to back with its first call's arguments. */
function isolatedUs(name: string): number {
  const args = firstArgs.get(name)!, fn = name.split(" ")[0]!;
  const call = () => (be as unknown as Record<string, (...x: unknown[]) => unknown>)[fn]!(...args);
  call();
  raw.sync();
  const t = performance.now();
  for (let i = 0; i < 50; i++) call();
  raw.sync();
  return ((performance.now() - t) / 50) * 1000;
}
const rows = [...times.entries()].map(([op, t]) => {
  const calls = t.calls / steps, us = isolatedUs(op);
  const bytes = weightBytes(op), tbPerS = bytes === null ? null : bytes / (us * 1e-6) / 1e12;
  return { op, msPerStep: t.ms / steps, calls, isolatedUs: us, isolatedMsPerStep: (us * calls) / 1000, weightTbPerS: tbPerS };
});
rows.sort((x, y) => y.msPerStep - x.msPerStep);
const total = rows.reduce((s, r) => s + r.msPerStep, 0);
const isolated = rows.reduce((s, r) => s + r.isolatedMsPerStep, 0);
console.log(`batch ${B}, context ${C}: ${plainMs.toFixed(3)} ms per step without syncs; ${total.toFixed(3)} ms with a sync around each op; ${isolated.toFixed(3)} ms from the isolated replays`);
console.log(`${"op".padEnd(30)} ${"synced".padStart(8)}     ${"share".padStart(5)}   ${"isolated".padStart(9)}  per call (weights read at)`);
for (const r of rows) {
  console.log(`${r.op.padEnd(30)} ${r.msPerStep.toFixed(3).padStart(8)} ms  ${(100 * r.msPerStep / total).toFixed(1).padStart(5)}%  ` +
    `${r.isolatedMsPerStep.toFixed(3).padStart(7)} ms  ${r.isolatedUs.toFixed(1).padStart(7)} us x ${r.calls}` +
    (r.weightTbPerS === null ? "" : ` (${r.weightTbPerS.toFixed(2)} TB/s)`));
}
console.log(JSON.stringify({ bench: "op_profile", batch: B, context: C, step_ms: plainMs, synced_ms: total, ops: rows }));
