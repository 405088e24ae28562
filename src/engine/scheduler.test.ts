import { describe, expect, test } from "bun:test";
import { defaultSamplingParams, Request, type SamplingParams } from "./request.ts";
import { Scheduler, type SchedulerConfig } from "./scheduler.ts";

const baseConfig: SchedulerConfig = {
  maxNumSeqs: 8,
  maxNumBatchedTokens: 32,
  maxModelLen: 64,
  blockSize: 4,
  numBlocks: 64,
  enablePrefixCaching: true,
};

interface Arrival {
  id: string;
  at: number; // step at which it is added
  prompt: number | number[]; // a length (distinct tokens per id) or the tokens
  params?: Partial<SamplingParams>;
  eos?: number[];
}

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
const promptOf = (a: Arrival) =>
  typeof a.prompt === "number" ? range(1000 * a.id.charCodeAt(0), a.prompt) : a.prompt;
const makeRequest = (a: Arrival) =>
  new Request(a.id, promptOf(a), defaultSamplingParams({ maxTokens: 1, ...a.params }), a.at, a.eos ?? []);

/**
 * Runs the scheduler with a fake model until all arrivals have finished. Returns one line per
 * step: "id:numNewTokens ..." in batch order, then "| preempt id ..." if any were preempted.
 */
function runTrace(
  cfg: Partial<SchedulerConfig>,
  arrivals: Arrival[],
  sample: (req: Request) => number = () => 1,
): { steps: string[]; sched: Scheduler; reqs: Map<string, Request> } {
  const sched = new Scheduler({ ...baseConfig, ...cfg });
  const reqs = new Map<string, Request>();
  const steps: string[] = [];
  for (let step = 0; step < 100; step++) {
    for (const a of arrivals.filter((x) => x.at === step)) {
      reqs.set(a.id, makeRequest(a));
      sched.addRequest(reqs.get(a.id)!);
    }
    if (!sched.hasUnfinished && reqs.size === arrivals.length) return { steps, sched, reqs };
    const out = sched.schedule();
    let line = out.scheduled.map((s) => `${s.req.id}:${s.numNewTokens}`).join(" ");
    if (out.preempted.length > 0) line += ` | preempt ${out.preempted.map((r) => r.id).join(" ")}`;
    steps.push(line);
    expect(out.totalTokens).toBe(out.scheduled.reduce((n, s) => n + s.numNewTokens, 0));
    sched.update(out, Int32Array.from(out.scheduled, (s) => sample(s.req)));
  }
  throw new Error("trace did not finish in 100 steps");
}

const mt = (maxTokens: number) => ({ maxTokens });

describe("which requests run at each step", () => {
  const rows: [string, Partial<SchedulerConfig>, Arrival[], string[]][] = [
    [
      "running requests decode before new ones are admitted",
      { maxNumBatchedTokens: 10 },
      [
        { id: "A", at: 0, prompt: 3, params: mt(3) },
        { id: "B", at: 1, prompt: 5, params: mt(3) },
      ],
      ["A:3", "A:1 B:5", "A:1 B:1", "B:1"],
    ],
    [
      "chunked prefill splits a long prompt across steps under the budget",
      { maxNumBatchedTokens: 4 },
      [
        { id: "A", at: 0, prompt: 10, params: mt(2) },
        { id: "B", at: 1, prompt: 3, params: mt(2) },
      ],
      ["A:4", "A:4", "A:2 B:2", "A:1 B:1", "B:1"],
    ],
    [
      "maxNumSeqs caps the running set",
      { maxNumSeqs: 2 },
      [
        { id: "A", at: 0, prompt: 2, params: mt(2) },
        { id: "B", at: 0, prompt: 2, params: mt(2) },
        { id: "C", at: 0, prompt: 2, params: mt(2) },
      ],
      ["A:2 B:2", "A:1 B:1", "C:2", "C:1"],
    ],
    [
      "admission stops at the first request whose blocks do not fit (FCFS)",
      { numBlocks: 6, maxModelLen: 24, maxNumBatchedTokens: 100 },
      [
        { id: "A", at: 0, prompt: 12 },
        { id: "B", at: 0, prompt: 16 },
        { id: "C", at: 0, prompt: 2 },
      ],
      ["A:12", "B:16 C:2"],
    ],
    [
      "the newest running request is preempted and resumed with a prefix-cache hit",
      { blockSize: 2, numBlocks: 4, maxModelLen: 8 },
      [
        { id: "A", at: 0, prompt: 3, params: mt(4) },
        { id: "B", at: 0, prompt: 3, params: mt(4) },
      ],
      ["A:3 B:3", "A:1 B:1", "A:1 | preempt B", "A:1", "B:3", "B:1"],
    ],
    [
      "without prefix caching the preempted request recomputes all its tokens",
      { blockSize: 2, numBlocks: 4, maxModelLen: 8, enablePrefixCaching: false },
      [
        { id: "A", at: 0, prompt: 3, params: mt(4) },
        { id: "B", at: 0, prompt: 3, params: mt(4) },
      ],
      ["A:3 B:3", "A:1 B:1", "A:1 | preempt B", "A:1", "B:5", "B:1"],
    ],
    [
      "the last running request preempts itself when it needs a block",
      { blockSize: 2, numBlocks: 4, maxModelLen: 8 },
      [
        { id: "X", at: 0, prompt: 3, params: mt(3) },
        { id: "Y", at: 0, prompt: 4, params: mt(3) },
      ],
      ["X:3 Y:4", "X:1 | preempt Y", "X:1", "Y:3", "Y:1"],
    ],
    [
      "a preempted request resumes ahead of later arrivals",
      { blockSize: 2, numBlocks: 4, maxModelLen: 8 },
      [
        { id: "A", at: 0, prompt: 3, params: mt(4) },
        { id: "B", at: 0, prompt: 3, params: mt(4) },
        { id: "C", at: 2, prompt: 2 },
      ],
      ["A:3 B:3", "A:1 B:1", "A:1 | preempt B", "A:1", "B:3 C:2", "B:1"],
    ],
    [
      "a request sharing a cached 2-block prefix computes only the rest",
      {},
      [
        { id: "A", at: 0, prompt: range(100, 10), params: mt(2) },
        { id: "B", at: 1, prompt: [...range(100, 8), 1, 2, 3], params: mt(2) },
      ],
      ["A:10", "A:1 B:3", "B:1"],
    ],
    [
      "blocks are cached only after the step that computes them",
      {},
      [
        { id: "A", at: 0, prompt: range(100, 10), params: mt(2) },
        { id: "B", at: 0, prompt: [...range(100, 8), 1, 2, 3], params: mt(2) },
      ],
      ["A:10 B:11", "A:1 B:1"],
    ],
    [
      "a full-prompt hit still computes the last block",
      {},
      [
        { id: "A", at: 0, prompt: range(100, 10), params: mt(2) },
        { id: "C", at: 1, prompt: range(100, 8), params: mt(2) },
      ],
      ["A:10", "A:1 C:4", "C:1"],
    ],
  ];
  test.each(rows)("%s", (_name, cfg, arrivals, expected) => {
    const { steps, sched } = runTrace(cfg, arrivals);
    expect(steps).toEqual(expected);
    expect(sched.kv.numFreeBlocks).toBe(sched.kv.numBlocks);
  });

  test("preemption bookkeeping", () => {
    const { sched, reqs } = runTrace({ blockSize: 2, numBlocks: 4, maxModelLen: 8 }, [
      { id: "A", at: 0, prompt: 3, params: mt(4) },
      { id: "B", at: 0, prompt: 3, params: mt(4) },
    ]);
    expect(sched.numPreemptionsTotal).toBe(1);
    expect([reqs.get("A")!.numPreemptions, reqs.get("B")!.numPreemptions]).toEqual([0, 1]);
    expect(reqs.get("B")!.outputTokenIds).toEqual([1, 1, 1, 1]);
    expect(reqs.get("B")!.finishReason).toBe("length");
  });

  test("a prefix hit is recorded and shares blocks with the running owner", () => {
    const sched = new Scheduler(baseConfig);
    const a = makeRequest({ id: "A", at: 0, prompt: range(100, 10), params: mt(5) });
    const b = makeRequest({ id: "B", at: 0, prompt: [...range(100, 8), 7], params: mt(5) });
    sched.addRequest(a);
    sched.update(sched.schedule(), new Int32Array([1]));
    sched.addRequest(b);
    sched.schedule();
    expect([a.numCachedTokens, b.numCachedTokens]).toEqual([0, 8]);
    expect(b.blockIds.slice(0, 2)).toEqual(a.blockIds.slice(0, 2));
    expect(sched.kv.pool.refCount(a.blockIds[0]!)).toBe(2);
  });
});
