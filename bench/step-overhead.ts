// CPU cost per engine step of scheduling and packing inputs, the device call stubbed out:
// 256 running requests with ~1k-token contexts, decoding. The TypeScript loop must never make
// the GPU wait, so this should stay well under a decode step's device time (aim: < 0.3 ms).
// Usage: bun bench/step-overhead.ts [--requests 256] [--context 1024] [--steps 2000]
import { parseArgs } from "node:util";
import { defaultSamplingParams, Request } from "../src/engine/request.ts";
import { Scheduler } from "../src/engine/scheduler.ts";
import { StepInputs } from "../src/engine/step-inputs.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: { requests: { type: "string" }, context: { type: "string" }, steps: { type: "string" } },
});
const nReq = Number(values.requests ?? 256);
const ctx = Number(values.context ?? 1024);
const steps = Number(values.steps ?? 2000);
const blockSize = 16;
const maxModelLen = ctx + steps + 256;
const blocksPerSeq = Math.ceil(maxModelLen / blockSize);

const sched = new Scheduler({
  maxNumSeqs: nReq, maxNumBatchedTokens: 8192, maxModelLen, blockSize,
  numBlocks: nReq * blocksPerSeq, enablePrefixCaching: true,
});
const inputs = new StepInputs({ maxTokens: 8192, maxSeqs: nReq, maxBlocksPerSeq: blocksPerSeq, blockSize });
let rng = 12345;
const rand = () => ((rng = (rng * 1103515245 + 12345) >>> 0) / 2 ** 32);
for (let i = 0; i < nReq; i++) {
  const prompt = Array.from({ length: ctx - 8 + Math.floor(rand() * 16) }, () => 1 + Math.floor(rand() * 30000));
  const params = defaultSamplingParams({ maxTokens: steps + 100, temperature: 0.8, ignoreEos: true, seed: BigInt(i) });
  sched.addRequest(new Request(`r${i}`, prompt, params, i));
}
const sampled = new Int32Array(nReq);
const fakeDevice = (n: number) => { for (let i = 0; i < n; i++) sampled[i] = 1 + Math.floor(rand() * 30000); };

// Prefill until everyone decodes, untimed.
while (sched.numWaiting > 0) {
  const out = sched.schedule();
  inputs.pack(out);
  fakeDevice(out.scheduled.length);
  sched.update(out, sampled);
}
for (let i = 0; i < 50; i++) { const o = sched.schedule(); inputs.pack(o); fakeDevice(o.scheduled.length); sched.update(o, sampled); }

const times: number[] = [];
for (let s = 0; s < steps; s++) {
  const t0 = performance.now();
  const out = sched.schedule();
  inputs.pack(out);
  fakeDevice(out.scheduled.length);
  sched.update(out, sampled);
  times.push(performance.now() - t0);
  if (out.scheduled.length !== nReq) throw new Error(`step ${s} ran ${out.scheduled.length} requests, expected ${nReq}`);
}
times.sort((a, b) => a - b);
const mean = times.reduce((a, b) => a + b, 0) / times.length;
const pct = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))]!;
console.log(`requests=${nReq} context~${ctx} steps=${steps} (schedule + pack + update, device stubbed)`);
console.log(`p50 ${pct(0.5).toFixed(4)} ms  p99 ${pct(0.99).toFixed(4)} ms`);
console.log(`step_overhead_ms_mean ${mean.toFixed(4)}`);
