// The pieces of bench/serve.ts: the random dataset, Poisson arrivals under a concurrency cap,
// per-request timings and their summary, as `vllm bench serve` reports them.

export interface BenchRequest {
  promptTokenIds: number[];
  maxTokens: number;
}

export interface RequestTiming {
  ok: boolean;
  error?: string;
  ttft: number; // seconds to the first token
  itl: number[]; // seconds between successive token chunks
  e2e: number; // seconds from send to last byte
  outputTokens: number;
  promptTokens: number;
}

/** Sends one request and times it; implementations: HTTP (SSE) and msgpack. */
export type Transport = (r: BenchRequest, ignoreEos: boolean) => Promise<RequestTiming>;

export function lcg(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

/**
 * vLLM's "random" dataset: lengths uniform in [len*(1-r), len*(1+r)] drawn from `seed`, random
 * token ids drawn from `tokenSeed` — so protocols compared in one run get the same lengths but
 * different prompts, and the second never rides on the first one's prefix cache.
 */
export function randomDataset(n: number, inLen: number, outLen: number, rangeRatio: number, vocab: number, seed: number, tokenSeed = seed): BenchRequest[] {
  const rand = lcg(seed), randTok = lcg(tokenSeed ^ 0x9e3779b9);
  const pick = (len: number) => Math.max(1, Math.round(len * (1 - rangeRatio) + rand() * 2 * rangeRatio * len));
  return Array.from({ length: n }, () => ({
    promptTokenIds: Array.from({ length: pick(inLen) }, () => 4 + Math.floor(randTok() * (vocab - 4))),
    maxTokens: pick(outLen),
  }));
}

/** Runs every request with Poisson arrivals (rate per second, Infinity = all at once), at most `maxConcurrency` in flight. */
export async function runLoad(reqs: BenchRequest[], send: Transport, rate: number, maxConcurrency: number, ignoreEos: boolean, seed: number) {
  const rand = lcg(seed ^ 0x5bd1e995);
  const results: RequestTiming[] = [];
  let inFlight = 0;
  const slotFreed: (() => void)[] = [];
  const t0 = performance.now();
  const tasks: Promise<void>[] = [];
  for (const r of reqs) {
    if (Number.isFinite(rate)) await Bun.sleep((-Math.log(1 - rand()) / rate) * 1000);
    while (inFlight >= maxConcurrency) await new Promise<void>((res) => slotFreed.push(res));
    inFlight++;
    tasks.push(send(r, ignoreEos).then((t) => {
      results.push(t);
      inFlight--;
      slotFreed.shift()?.();
    }));
  }
  await Promise.all(tasks);
  return { results, seconds: (performance.now() - t0) / 1000 };
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
function pct(xs: number[], p: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
}

export interface Summary {
  completed: number;
  failed: number;
  seconds: number;
  requestThroughput: number;
  outputThroughput: number;
  totalTokenThroughput: number;
  ttftMs: { mean: number; median: number; p99: number };
  tpotMs: { mean: number; median: number; p99: number };
  itlMs: { mean: number; median: number; p99: number };
}

export function summarize(results: RequestTiming[], seconds: number): Summary {
  const ok = results.filter((r) => r.ok);
  const out = ok.reduce((s, r) => s + r.outputTokens, 0), inp = ok.reduce((s, r) => s + r.promptTokens, 0);
  const ms = (xs: number[]) => ({ mean: mean(xs) * 1000, median: pct(xs, 0.5) * 1000, p99: pct(xs, 0.99) * 1000 });
  const tpot = ok.filter((r) => r.outputTokens > 1).map((r) => (r.e2e - r.ttft) / (r.outputTokens - 1));
  return {
    completed: ok.length, failed: results.length - ok.length, seconds,
    requestThroughput: ok.length / seconds, outputThroughput: out / seconds, totalTokenThroughput: (out + inp) / seconds,
    ttftMs: ms(ok.map((r) => r.ttft)), tpotMs: ms(tpot), itlMs: ms(ok.flatMap((r) => r.itl)),
  };
}

export function formatSummaries(rows: [string, Summary][]): string {
  const f = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : "-");
  const lines: [string, (s: Summary) => string][] = [
    ["Successful requests", (s) => `${s.completed}`], ["Failed requests", (s) => `${s.failed}`],
    ["Benchmark duration (s)", (s) => f(s.seconds)], ["Request throughput (req/s)", (s) => f(s.requestThroughput)],
    ["Output token throughput (tok/s)", (s) => f(s.outputThroughput)], ["Total token throughput (tok/s)", (s) => f(s.totalTokenThroughput)],
    ["Mean TTFT (ms)", (s) => f(s.ttftMs.mean)], ["Median TTFT (ms)", (s) => f(s.ttftMs.median)], ["P99 TTFT (ms)", (s) => f(s.ttftMs.p99)],
    ["Mean TPOT (ms)", (s) => f(s.tpotMs.mean)], ["Median TPOT (ms)", (s) => f(s.tpotMs.median)], ["P99 TPOT (ms)", (s) => f(s.tpotMs.p99)],
    ["Mean ITL (ms)", (s) => f(s.itlMs.mean)], ["Median ITL (ms)", (s) => f(s.itlMs.median)], ["P99 ITL (ms)", (s) => f(s.itlMs.p99)],
  ];
  const head = ["", ...rows.map(([n]) => n)];
  const body = lines.map(([label, get]) => [label, ...rows.map(([, s]) => get(s))]);
  const widths = head.map((_, i) => Math.max(...[head, ...body].map((r) => r[i]!.length)));
  return [head, ...body].map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ")).join("\n");
}
