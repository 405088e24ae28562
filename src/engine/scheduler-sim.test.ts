// A randomized run of the scheduler against a fake model that keeps a fake KV cache, checking
// block accounting and KV content every step; and a timing printout for a large decode batch.
import { describe, expect, test } from "bun:test";
import { defaultSamplingParams, Request } from "./request.ts";
import { chunkStart, Scheduler, type SchedulerConfig } from "./scheduler.ts";

const EOS = 0;
const VOCAB = 50;

function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Plan {
  req: Request;
  arriveAt: number;
  abortAt: number; // -1: never
}

function makePlans(rand: () => number, n: number, maxModelLen: number): Plan[] {
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const prefixes = Array.from({ length: 4 }, () => Array.from({ length: int(4, 24) }, () => int(1, VOCAB - 1)));
  return Array.from({ length: n }, (_, i) => {
    const shared = rand() < 0.6 ? prefixes[int(0, 3)]! : [];
    const own = Array.from({ length: int(1, 50) }, () => int(1, VOCAB - 1));
    const prompt = [...shared, ...own].slice(0, maxModelLen - 1);
    const params = defaultSamplingParams({
      maxTokens: int(1, 40),
      minTokens: rand() < 0.2 ? int(1, 5) : 0,
      ignoreEos: rand() < 0.1,
      stopTokenIds: rand() < 0.2 ? [int(1, VOCAB - 1)] : [],
    });
    const arriveAt = int(0, 250);
    const abortAt = rand() < 0.15 ? arriveAt + int(0, 30) : -1;
    return { req: new Request(`r${i}`, prompt, params, arriveAt, [EOS]), arriveAt, abortAt };
  });
}

/** Ref counts must equal the number of unfinished requests holding each block. */
function checkBlockAccounting(sched: Scheduler, live: Request[]): void {
  const holders = new Int32Array(sched.kv.numBlocks);
  for (const r of live) for (const id of r.blockIds) holders[id]!++;
  let free = 0;
  for (let id = 0; id < holders.length; id++) {
    if (sched.kv.pool.refCount(id) !== holders[id]) throw new Error(`block ${id}: ref count mismatch`);
    if (holders[id] === 0) free++;
  }
  expect(sched.kv.numFreeBlocks).toBe(free);
}

function checkFinished(req: Request, maxModelLen: number): void {
  const p = req.params;
  const last = req.outputTokenIds.at(-1);
  expect(req.blockIds).toEqual([]);
  expect(req.numOutputTokens).toBeLessThanOrEqual(p.maxTokens);
  if (req.finishReason === "stop") {
    expect(req.numOutputTokens).toBeGreaterThanOrEqual(p.minTokens);
    expect((last === EOS && !p.ignoreEos) || p.stopTokenIds.includes(last!)).toBe(true);
  } else if (req.finishReason === "length") {
    expect(req.numOutputTokens === p.maxTokens || req.numTokens === maxModelLen).toBe(true);
  } else {
    expect(req.finishReason).toBe("abort");
  }
}

/**
 * Runs the plans through the scheduler. With `depth` 2 the next step is scheduled before the last
 * one's update (async scheduling): the fake device then takes a decode's input token from what it
 * sampled the step before, which the host does not know yet.
 */
function simulate(cfg: SchedulerConfig, seed: number, depth: 1 | 2 = 1) {
  const rand = mulberry32(seed);
  const plans = makePlans(rand, 200, cfg.maxModelLen);
  const sched = new Scheduler(cfg);
  const kvContent = new Int32Array(cfg.numBlocks * cfg.blockSize).fill(-1); // the fake KV cache
  const onDevice = new Map<Request, number>(); // the newest token each request sampled on the device
  const tokenAt = (req: Request, pos: number) => {
    if (pos < req.numTokens) return req.tokenAt(pos);
    if (pos !== req.numTokens || req.numPendingTokens === 0) throw new Error(`${req.id}: no token at ${pos}`);
    return onDevice.get(req)!;
  };
  const inFlight: { out: ReturnType<Scheduler["schedule"]>; sampled: Int32Array }[] = [];
  let step = 0;
  for (; step < 5000 && (step <= 250 || sched.hasUnfinished); step++) {
    for (const p of plans) if (p.arriveAt === step) sched.addRequest(p.req);
    for (const p of plans) if (p.abortAt === step) sched.abortRequest(p.req.id);
    const out = sched.schedule();
    expect(out.totalTokens).toBeLessThanOrEqual(cfg.maxNumBatchedTokens);
    expect(out.scheduled.length).toBeLessThanOrEqual(cfg.maxNumSeqs);
    expect(new Set(out.scheduled.map((s) => s.req)).size).toBe(out.scheduled.length);
    const sampled = new Int32Array(out.scheduled.length);
    out.scheduled.forEach((s, i) => {
      const { req } = s;
      expect(req.blockIds.length).toBe(Math.ceil(req.numComputedTokens / cfg.blockSize));
      for (let pos = chunkStart(s); pos < s.end; pos++) {
        kvContent[req.blockIds[Math.floor(pos / cfg.blockSize)]! * cfg.blockSize + (pos % cfg.blockSize)] = tokenAt(req, pos);
      }
      // What attention reads: the whole context through the block table, prefix hits included.
      for (let pos = 0; pos < s.end; pos++) {
        const slot = req.blockIds[Math.floor(pos / cfg.blockSize)]! * cfg.blockSize + (pos % cfg.blockSize);
        if (kvContent[slot] !== tokenAt(req, pos)) throw new Error(`${req.id}: wrong KV at ${pos}`);
      }
      sampled[i] = s.samples ? Math.floor(rand() * VOCAB) : -1;
      if (s.samples) onDevice.set(req, sampled[i]!);
    });
    if (out.scheduled.length > 0) inFlight.push({ out, sampled });
    if (inFlight.length === depth || (out.scheduled.length === 0 && inFlight.length > 0)) {
      const done = inFlight.shift()!;
      for (const o of sched.update(done.out, done.sampled)) expect(o.newTokenIds).toHaveLength(1);
    }
    expect(sched.numStepsInFlight).toBe(inFlight.length);
    checkBlockAccounting(sched, plans.map((p) => p.req).filter((r) => !r.isFinished));
  }
  for (const p of plans) checkFinished(p.req, cfg.maxModelLen);
  for (const p of plans) expect(p.req.numPendingTokens).toBe(0);
  return { sched, plans, steps: step };
}

describe("randomized simulation", () => {
  const base: SchedulerConfig = {
    maxNumSeqs: 16,
    maxNumBatchedTokens: 48,
    maxModelLen: 96,
    blockSize: 4,
    numBlocks: 40,
    enablePrefixCaching: true,
  };
  test.each([
    ["prefix caching, seed 1", base, 1, 1],
    ["prefix caching, seed 2, 2-token blocks", { ...base, blockSize: 2, numBlocks: 60 }, 2, 1],
    ["no prefix caching, seed 3", { ...base, enablePrefixCaching: false }, 3, 1],
    ["async scheduling, prefix caching, seed 4", base, 4, 2],
    ["async scheduling, 2-token blocks, seed 5", { ...base, blockSize: 2, numBlocks: 60 }, 5, 2],
    ["async scheduling, no prefix caching, seed 6", { ...base, enablePrefixCaching: false }, 6, 2],
  ] as [string, SchedulerConfig, number, 1 | 2][])("%s: every request finishes and every block comes back", (_name, cfg, seed, depth) => {
    const { sched, plans, steps } = simulate(cfg, seed, depth);
    const count = (r: string) => plans.filter((p) => p.req.finishReason === r).length;
    console.log(`${_name}: ${steps} steps, ${sched.numPreemptionsTotal} preemptions, stop/length/abort ${count("stop")}/${count("length")}/${count("abort")}, hit tokens ${sched.kv.prefixCacheHits}`);
    expect(sched.hasUnfinished).toBe(false);
    expect(sched.kv.numFreeBlocks).toBe(cfg.numBlocks);
    expect(sched.numPreemptionsTotal).toBeGreaterThan(0);
    expect(plans.some((p) => p.req.finishReason === "abort")).toBe(true);
    expect(plans.some((p) => p.req.finishReason === "stop")).toBe(true);
    if (cfg.enablePrefixCaching) expect(sched.kv.prefixCacheHits).toBeGreaterThan(0);
    else expect(sched.kv.prefixCacheHits).toBe(0);
  });
});

describe("timing", () => {
  test.each([true, false])("256 decoding requests of ~1k context, prefix caching %p", (enablePrefixCaching) => {
    const cfg: SchedulerConfig = {
      maxNumSeqs: 256,
      maxNumBatchedTokens: 8192,
      maxModelLen: 4096,
      blockSize: 16,
      numBlocks: 256 * 200,
      enablePrefixCaching,
    };
    const sched = new Scheduler(cfg);
    for (let i = 0; i < 256; i++) {
      const prompt = Array.from({ length: 1000 }, (_, k) => (i * 7919 + k * 31) % 32000);
      sched.addRequest(new Request(`r${i}`, prompt, defaultSamplingParams({ maxTokens: 3000, ignoreEos: true }), 0));
    }
    const sampled = new Int32Array(256).fill(5);
    const stepOnce = () => sched.update(sched.schedule(), sampled);
    while (sched.numRunning < 256 || sched.numWaiting > 0) stepOnce();
    for (let i = 0; i < 500; i++) stepOnce(); // JIT warm-up
    // The machine is shared: report the median and best of 40 rounds.
    const perStep: number[] = [];
    for (let round = 0; round < 40; round++) {
      const t0 = Bun.nanoseconds();
      for (let i = 0; i < 32; i++) stepOnce(); // 32 steps: every request fills 2 blocks
      perStep.push((Bun.nanoseconds() - t0) / 32 / 1000);
    }
    perStep.sort((a, b) => a - b);
    console.log(
      `schedule+update, 256 running, prefix caching ${enablePrefixCaching}: ` +
        `median ${perStep[20]!.toFixed(1)} us/step, best ${perStep[0]!.toFixed(1)} us/step`,
    );
    expect(sched.numRunning).toBe(256);
  });
});
