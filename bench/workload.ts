// The seeded request set of issue 5's mixed benchmark: n requests with prompt lengths uniform in
// [promptMin, promptMax], output lengths uniform in [outputMin, outputMax] (both inclusive) and
// prompt token ids uniform in [tokenMin, tokenMax). The engine bench (bench/mixed.ts) and the
// transformers baseline (bench/baselines/hf_generate.py, through `--write FILE`) must see the very
// same requests, so the generator is a small PRNG with a written-down order of draws:
//   mulberry32(seed); for each request in order: prompt length, output length, then its prompt
//   token ids one by one. uniformInt(lo, hi) = lo + floor(next() * (hi - lo + 1)).
// Usage: bun bench/workload.ts --write FILE [--n 500] [--seed 0] [--prompt-min 64] [--prompt-max 1024]
//          [--output-min 16] [--output-max 512] [--token-min 1000] [--token-max 100000]
import { parseArgs } from "node:util";

export interface WorkloadParams {
  n: number;
  seed: number;
  promptMin: number;
  promptMax: number;
  outputMin: number;
  outputMax: number;
  /** Prompt token ids are drawn from [tokenMin, tokenMax): valid for Llama-3's 128256-token vocab by default. */
  tokenMin: number;
  tokenMax: number;
}

export interface WorkloadRequest {
  promptTokenIds: number[];
  maxTokens: number;
}

export const MIXED_WORKLOAD: WorkloadParams = {
  n: 500, seed: 0, promptMin: 64, promptMax: 1024, outputMin: 16, outputMax: 512, tokenMin: 1000, tokenMax: 100000,
};

/**
 * mulberry32: a 32-bit state PRNG (public domain, Tommy Ettinger); plenty for drawing benchmark
 * lengths, and trivially reproducible in any language. Returns floats in [0, 1).
 */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

function checkParams(p: WorkloadParams): void {
  const ints: (keyof WorkloadParams)[] = ["n", "seed", "promptMin", "promptMax", "outputMin", "outputMax", "tokenMin", "tokenMax"];
  for (const k of ints) {
    if (!Number.isSafeInteger(p[k])) throw new Error(`workload: ${k} must be an integer, got ${p[k]}`);
  }
  if (p.n < 1) throw new Error(`workload: n must be at least 1, got ${p.n}`);
  if (p.promptMin < 1 || p.promptMax < p.promptMin) throw new Error(`workload: need 1 <= promptMin <= promptMax, got ${p.promptMin}..${p.promptMax}`);
  if (p.outputMin < 1 || p.outputMax < p.outputMin) throw new Error(`workload: need 1 <= outputMin <= outputMax, got ${p.outputMin}..${p.outputMax}`);
  if (p.tokenMin < 0 || p.tokenMax <= p.tokenMin) throw new Error(`workload: need 0 <= tokenMin < tokenMax, got [${p.tokenMin}, ${p.tokenMax})`);
}

/** The n requests of `p`, in arrival order; the same params always give the same requests. */
export function makeWorkload(p: WorkloadParams): WorkloadRequest[] {
  checkParams(p);
  const next = mulberry32(p.seed);
  const uniformInt = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  const reqs: WorkloadRequest[] = [];
  for (let i = 0; i < p.n; i++) {
    const promptLen = uniformInt(p.promptMin, p.promptMax);
    const maxTokens = uniformInt(p.outputMin, p.outputMax);
    const promptTokenIds = Array.from({ length: promptLen }, () => uniformInt(p.tokenMin, p.tokenMax - 1));
    reqs.push({ promptTokenIds, maxTokens });
  }
  return reqs;
}

/** The file the python baseline reads: the params and the requests in snake_case. */
export function workloadJson(p: WorkloadParams, reqs: WorkloadRequest[]): string {
  return JSON.stringify({
    workload: p,
    requests: reqs.map((r) => ({ prompt_token_ids: r.promptTokenIds, max_tokens: r.maxTokens })),
  });
}

/** Reads a file written by `--write` back (so a bench can run exactly what the baseline ran). */
export function readWorkloadFile(text: string): { params: WorkloadParams; requests: WorkloadRequest[] } {
  const j = JSON.parse(text) as { workload?: WorkloadParams; requests?: { prompt_token_ids: number[]; max_tokens: number }[] };
  if (!j.workload || !Array.isArray(j.requests)) throw new Error("workload file: expected {workload, requests}");
  return { params: j.workload, requests: j.requests.map((r) => ({ promptTokenIds: r.prompt_token_ids, maxTokens: r.max_tokens })) };
}

const intOption = { type: "string" } as const;
export const workloadOptions = {
  n: intOption, seed: intOption, "prompt-min": intOption, "prompt-max": intOption,
  "output-min": intOption, "output-max": intOption, "token-min": intOption, "token-max": intOption,
} as const;

/** Workload params from parsed CLI flags (see workloadOptions), the mixed benchmark's by default. */
export function workloadFromFlags(v: Partial<Record<keyof typeof workloadOptions, string>>): WorkloadParams {
  const num = (s: string | undefined, dflt: number, name: string) => {
    if (s === undefined) return dflt;
    const x = Number(s);
    if (s.trim() === "" || !Number.isInteger(x)) throw new Error(`--${name} expects an integer, got '${s}'`);
    return x;
  };
  const d = MIXED_WORKLOAD;
  return {
    n: num(v.n, d.n, "n"), seed: num(v.seed, d.seed, "seed"),
    promptMin: num(v["prompt-min"], d.promptMin, "prompt-min"), promptMax: num(v["prompt-max"], d.promptMax, "prompt-max"),
    outputMin: num(v["output-min"], d.outputMin, "output-min"), outputMax: num(v["output-max"], d.outputMax, "output-max"),
    tokenMin: num(v["token-min"], d.tokenMin, "token-min"), tokenMax: num(v["token-max"], d.tokenMax, "token-max"),
  };
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Bun.argv.slice(2), options: { ...workloadOptions, write: { type: "string" } }, strict: true });
  if (!values.write) throw new Error("usage: bun bench/workload.ts --write FILE [--n 500] [--seed 0] ...");
  const p = workloadFromFlags(values);
  const reqs = makeWorkload(p);
  await Bun.write(values.write, workloadJson(p, reqs));
  const promptTokens = reqs.reduce((s, r) => s + r.promptTokenIds.length, 0);
  const outputTokens = reqs.reduce((s, r) => s + r.maxTokens, 0);
  console.log(`wrote ${values.write}: ${reqs.length} requests, ${promptTokens} prompt tokens, ${outputTokens} output tokens`);
}
