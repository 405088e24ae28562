// vd_sample's semantics written plainly in float64, for tests of every backend's sampler.
// It also reports how close a row came to a decision boundary (a filter threshold or the draw),
// so that a test can skip the rare rows where float32 rounding may legitimately decide otherwise.

export interface RefRow {
  logits: Float32Array; // [V], as given to vd_sample
  temperature: number;
  topP: number;
  minP: number;
  topK: number;
  repetition: number;
  presence: number;
  frequency: number;
  seed: bigint; // 0 .. 2^64 - 1
  step: number;
  seen: Array<[token: number, count: number]>;
  bias: Array<[token: number, value: number]>;
}

export const refRow = (logits: Float32Array, over: Partial<RefRow> = {}): RefRow => ({
  logits,
  temperature: 1,
  topP: 1,
  minP: 0,
  topK: 0,
  repetition: 1,
  presence: 0,
  frequency: 0,
  seed: 0n,
  step: 0,
  seen: [],
  bias: [],
  ...over,
});

const M64 = (1n << 64n) - 1n;
const GOLDEN_GAMMA = 0x9e3779b97f4a7c15n;

/** The SplitMix64 finaliser (common/rng.h: mix64). */
export function mix64(z: bigint): bigint {
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
  return z ^ (z >> 31n);
}

export const splitmix64 = (z: bigint): bigint => mix64((z + GOLDEN_GAMMA) & M64);

/** u = (splitmix64(seed ^ splitmix64(step)) >> 11) * 2^-53, as common/rng.h documents. */
export function counterUniform(seed: bigint, step: number): number {
  const x = splitmix64((seed & M64) ^ splitmix64(BigInt(step)));
  return Number(x >> 11n) / 2 ** 53;
}

/** Lower id first among equal values, larger values first. */
const descending = (v: ArrayLike<number>) => (a: number, b: number) => v[b]! - v[a]! || a - b;

export function rawLogprobs(logits: Float32Array): Float64Array {
  let m = -Infinity;
  for (const x of logits) m = Math.max(m, x);
  let sum = 0;
  for (const x of logits) sum += Math.exp(x - m);
  const lse = m + Math.log(sum);
  return Float64Array.from(logits, (x) => x - lse);
}

/** The n best ids of v, best first, ties by lower id. */
export function topIds(v: ArrayLike<number>, n: number): number[] {
  return Array.from({ length: v.length }, (_, i) => i)
    .sort(descending(v))
    .slice(0, n);
}

/** Logits after the bias and the repetition, frequency and presence penalties. */
export function processedLogits(r: RefRow): Float64Array {
  const x = Float64Array.from(r.logits);
  for (const [t, v] of r.bias) x[t]! += v;
  for (const [t, count] of r.seen) {
    let v = x[t]!;
    if (r.repetition !== 1) v = v > 0 ? v / r.repetition : v * r.repetition;
    v -= r.frequency * count;
    if (count > 0) v -= r.presence;
    x[t] = v;
  }
  return x;
}

export function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}

export interface RefResult {
  token: number;
  /** Tokens the filters keep, best first (just the argmax when greedy). */
  kept: number[];
  /** Their probabilities after renormalisation. */
  probs: number[];
  /** Smallest relative distance of a min-p or top-p threshold from a token's value (Infinity if none). */
  filterMargin: number;
  /** Distance of the uniform from the nearest cumulative boundary of the draw (Infinity if greedy). */
  drawMargin: number;
}

export function referenceSample(r: RefRow): RefResult {
  const x = processedLogits(r);
  if (r.temperature <= 1e-5 || r.topK === 1) {
    const t = argmax(x);
    return { token: t, kept: [t], probs: [1], filterMargin: Infinity, drawMargin: Infinity };
  }
  let margin = Infinity;
  const order = topIds(x, x.length);
  const m = x[order[0]!]!;
  const e = Float64Array.from(x, (v) => Math.exp((v - m) / r.temperature));
  let kept = order.filter((i) => e[i]! > 0);
  if (r.minP > 0) {
    for (const i of kept) margin = Math.min(margin, Math.abs(e[i]! - r.minP));
    kept = kept.filter((i) => e[i]! >= r.minP);
  }
  if (r.topK > 0) kept = kept.slice(0, r.topK);
  if (r.topP < 1) {
    const total = kept.reduce((a, i) => a + e[i]!, 0);
    let cum = 0;
    let n = 0;
    for (const i of kept) {
      cum += e[i]!;
      n++;
      margin = Math.min(margin, Math.abs(cum / total - r.topP));
      if (cum >= r.topP * total) break;
    }
    kept = kept.slice(0, n);
  }
  const total = kept.reduce((a, i) => a + e[i]!, 0);
  const target = counterUniform(r.seed, r.step);
  let cum = 0;
  let drawMargin = Infinity;
  let token = kept[kept.length - 1]!;
  for (const i of kept) {
    cum += e[i]! / total;
    drawMargin = Math.min(drawMargin, Math.abs(cum - target));
    if (cum > target) {
      token = i;
      break;
    }
  }
  return { token, kept, probs: kept.map((i) => e[i]! / total), filterMargin: margin, drawMargin };
}
