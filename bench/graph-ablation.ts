// Where a decode step's time goes inside a CUDA graph, by leaving ops out: bench/decode-setup.ts's
// step (forward pass + greedy sample, batch B, C-token contexts) captured once whole and once per
// op group with that group's calls left out (their outputs keep stale data, which changes no
// other op's cost), each graph replayed --steps times. An op group's cost is the whole step's time
// less the time without it: what fusing the group away could save at most, launch gaps included,
// which op-profile's isolated replays cannot see. Runs as bench/decode-table.ts's (decode-setup.ts).
// Usage: bun bench/graph-ablation.ts --runs bf16=M,int4=M-gptq4 [--device cuda] [--batch 1]
//   [--context 512] [--steps 200] [--groups whole,attention] (default: every group)
// Prints a table per run, then one JSON line.
import { parseArgs } from "node:util";
import { loadModelDir } from "../src/model/model-dir.ts";
import { freeWeights, loadWeights } from "../src/model/weights.ts";
import { openBackend } from "../src/native/backend.ts";
import { type Backend, BackendError, Status } from "../src/native/types.ts";
import { decodeStep, parseRuns } from "./decode-setup.ts";

const { values: a } = parseArgs({ args: Bun.argv.slice(2), options: {
  runs: { type: "string" }, device: { type: "string" }, batch: { type: "string" }, context: { type: "string" },
  steps: { type: "string" }, groups: { type: "string" } } });
const runs = parseRuns(a.runs);
const B = Number(a.batch ?? 1), C = Number(a.context ?? 512), steps = Number(a.steps ?? 200);

/** The op groups left out one at a time ("" = none: the whole step). */
const GROUPS: Record<string, string[]> = {
  whole: [],
  rmsnorm: ["rmsnorm"],
  attention: ["attention"],
  ropeWriteKv: ["ropeWriteKv"],
  siluMul: ["siluMul"],
  "lm head + sample": ["gatherRows", "cast", "sample"],
  "all but GEMMs": ["rmsnorm", "attention", "ropeWriteKv", "siluMul", "gatherRows", "cast", "sample", "embedding"],
};

/** `be` with the ops named in `skip` turned into no-ops. */
function without(be: Backend, skip: Set<string>): Backend {
  return new Proxy(be, {
    get(target, prop, recv) {
      const v = Reflect.get(target, prop, recv);
      if (typeof v !== "function") return v;
      return skip.has(String(prop)) ? () => undefined : v.bind(target);
    },
  });
}

let eager = false; // set where the backend has no graphs (cpu): the steps then run eagerly

/** Mean milliseconds of `run` on `be` over --steps calls after 10 untimed ones. */
function timeMs(be: Backend, run: () => void): number {
  for (let i = 0; i < 10; i++) run();
  be.sync();
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) run();
  be.sync();
  return (performance.now() - t0) / steps;
}

/** Milliseconds per replay of the step captured with `skip` left out. */
function graphMs(be: Backend, mk: (b: Backend) => { step(): void; dispose(): void }, skip: string[]): number {
  const d = mk(without(be, new Set(skip)));
  try {
    d.step(); // warm-up outside the graph: workspaces grow, kernels load
    be.sync();
    try {
      be.graphBegin();
    } catch (e) {
      if (e instanceof BackendError && e.status === Status.unsupported) {
        eager = true; // cpu
        return timeMs(be, () => d.step());
      }
      throw e;
    }
    d.step();
    const g = be.graphEnd();
    try {
      return timeMs(be, () => be.graphLaunch(g));
    } finally {
      be.graphDestroy(g);
    }
  } finally {
    d.dispose();
  }
}

const only = a.groups ? new Set(["whole", ...a.groups.split(",")]) : null;
for (const g of only ?? []) if (!(g in GROUPS)) throw new Error(`--groups: no group "${g}" (${Object.keys(GROUPS).join(", ")})`);
const groups = Object.entries(GROUPS).filter(([name]) => !only || only.has(name));
const be = openBackend((a.device ?? "cuda") as "cuda");
const results = runs.map((run) => {
  const dir = loadModelDir(run.dir);
  const w = loadWeights(be, dir.config, dir.tensors, undefined, { quantization: run.quantization });
  try {
    const ms = Object.fromEntries(groups.map(([name, skip]) =>
      [name, graphMs(be, (b) => decodeStep(b, dir.config, w, B, C, { w8a8: run.w8a8 }), skip)]));
    return { ...run, ms };
  } finally {
    freeWeights(be, w);
  }
});

for (const r of results) {
  const whole = r.ms.whole!;
  console.log(`${r.label}: batch ${B}, context ${C}, ${eager ? "eager steps" : "graph replay"} ${whole.toFixed(3)} ms a step (${steps} replays)`);
  for (const [name, ms] of Object.entries(r.ms)) {
    if (name !== "whole") console.log(`  without ${name.padEnd(18)} ${ms.toFixed(3)} ms  (the group costs ${(whole - ms).toFixed(3)} ms)`);
  }
}
console.log(JSON.stringify({ bench: "graph_ablation", graphs: !eager, batch: B, context: C, steps, runs: results }));
