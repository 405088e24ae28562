// vd_sample on the cpu backend against the float64 reference of sample-reference.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { openBackend } from "./backend";
import {
  argmax,
  counterUniform,
  processedLogits,
  rawLogprobs,
  referenceSample,
  refRow,
  splitmix64,
  topIds,
  type RefRow,
} from "./sample-reference";
import { BackendError, SP, type Backend, type Buf, type SampleArgs } from "./types";

let be: Backend;
beforeAll(() => {
  be = openBackend("cpu");
});
afterAll(() => be.destroy());

/** Seeded test data (mulberry32), so that every run checks the same cases. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (n: number) => Math.floor(next() * n);
  const normal = () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  const logits = (v: number, scale = 1) => Float32Array.from({ length: v }, () => normal() * scale);
  const seed64 = () => (BigInt(int(2 ** 32)) << 32n) | BigInt(int(2 ** 32));
  return { next, int, normal, logits, seed64 };
}

/** The host arrays of one call, packed from reference rows; tests of bad input edit them. */
function pack(rows: RefRow[]) {
  const vocab = rows[0]!.logits.length;
  const S = rows.length;
  const h = {
    nSeqs: S,
    vocab,
    logits: new Float32Array(S * vocab),
    fparams: new Float32Array(S * SP.nf),
    iparams: new Int32Array(S * SP.ni),
    seenOffsets: new Int32Array(S + 1),
    seenTokens: Int32Array.from(rows.flatMap((r) => r.seen.map(([t]) => t))),
    seenCounts: Int32Array.from(rows.flatMap((r) => r.seen.map(([, c]) => c))),
    biasOffsets: new Int32Array(S + 1),
    biasTokens: Int32Array.from(rows.flatMap((r) => r.bias.map(([t]) => t))),
    biasValues: Float32Array.from(rows.flatMap((r) => r.bias.map(([, v]) => v))),
  };
  rows.forEach((r, s) => {
    h.logits.set(r.logits, s * vocab);
    h.fparams.set([r.temperature, r.topP, r.minP, r.repetition, r.presence, r.frequency], s * SP.nf);
    const seedLo = Number(r.seed & 0xffffffffn) | 0;
    const seedHi = Number((r.seed >> 32n) & 0xffffffffn) | 0;
    h.iparams.set([r.topK, seedLo, seedHi, r.step], s * SP.ni);
    h.seenOffsets[s + 1] = h.seenOffsets[s]! + r.seen.length;
    h.biasOffsets[s + 1] = h.biasOffsets[s]! + r.bias.length;
  });
  return h;
}
type Host = ReturnType<typeof pack>;

/** Uploads, samples, reads back and frees; `patch` may change the arguments (bad-input tests). */
function run(h: Host, nTop = 0, patch: (a: SampleArgs) => SampleArgs = (a) => a) {
  const bufs: Buf[] = [];
  const upload = (data: Int32Array | Float32Array): Buf => {
    const b = be.alloc(Math.max(4, data.byteLength));
    bufs.push(b);
    if (data.byteLength > 0) be.copyFromHost(b, 0, data);
    return b;
  };
  const S = h.nSeqs;
  const out = {
    tokens: new Int32Array(S),
    logprobs: new Float32Array(S),
    topIds: new Int32Array(S * nTop),
    topLogprobs: new Float32Array(S * nTop),
  };
  try {
    const args: SampleArgs = {
      logits: upload(h.logits), nSeqs: S, vocab: h.vocab, fparams: upload(h.fparams), iparams: upload(h.iparams),
      seenOffsets: upload(h.seenOffsets), seenTokens: upload(h.seenTokens), seenCounts: upload(h.seenCounts),
      biasOffsets: upload(h.biasOffsets), biasTokens: upload(h.biasTokens), biasValues: upload(h.biasValues),
      nTop, outTokens: upload(out.tokens), outLogprobs: upload(out.logprobs),
      outTopIds: nTop ? upload(out.topIds) : 0, outTopLogprobs: nTop ? upload(out.topLogprobs) : 0,
    };
    be.sample(patch(args));
    be.copyToHost(args.outTokens, 0, out.tokens);
    be.copyToHost(args.outLogprobs, 0, out.logprobs);
    if (nTop) be.copyToHost(args.outTopIds, 0, out.topIds);
    if (nTop) be.copyToHost(args.outTopLogprobs, 0, out.topLogprobs);
  } finally {
    for (const b of bufs) be.free(b);
  }
  return out;
}
const sample = (rows: RefRow[], nTop = 0) => run(pack(rows), nTop);

describe("greedy", () => {
  test("equals the argmax of fresh random logits (temperature 0 and top_k 1)", () => {
    const r = rng(1);
    const rows = Array.from({ length: 24 }, (_, s) =>
      refRow(r.logits(3000, 4), s % 2 ? { temperature: 0 } : { temperature: 0.9, topK: 1, seed: r.seed64() }),
    );
    const out = sample(rows);
    rows.forEach((row, s) => expect(out.tokens[s]).toBe(argmax(row.logits)));
  });

  test("takes the lowest index among equal maxima", () => {
    const x = new Float32Array(300).fill(-1);
    for (const i of [211, 17, 290]) x[i] = 5;
    const out = sample([refRow(x, { temperature: 0 }), refRow(x, { topK: 1, seed: 99n }), refRow(new Float32Array(9), { temperature: 0 })]);
    expect([...out.tokens]).toEqual([17, 17, 0]);
  });
});

describe("logprobs", () => {
  test("match a float64 log-softmax; top-n is descending with ties by lower id", () => {
    const r = rng(2);
    const rows = Array.from({ length: 6 }, () => {
      const x = r.logits(5000, 5);
      x[4000] = x[10] = x[2500] = 30; // a tie at the top
      x[3] = x[4999] = 29;
      return refRow(x, { temperature: 0.8, seed: r.seed64() });
    });
    const nTop = 7;
    const out = sample(rows, nTop);
    rows.forEach((row, s) => {
      const lp = rawLogprobs(row.logits);
      const ids = [...out.topIds.subarray(s * nTop, (s + 1) * nTop)];
      expect(ids).toEqual(topIds(lp, nTop));
      expect(ids.slice(0, 5)).toEqual([10, 2500, 4000, 3, 4999]);
      ids.forEach((id, j) => expect(out.topLogprobs[s * nTop + j]).toBeCloseTo(lp[id]!, 4));
      expect(out.logprobs[s]).toBeCloseTo(lp[out.tokens[s]!]!, 4);
    });
  });

  test("are the raw ones, before bias and penalties", () => {
    const x = Float32Array.from({ length: 50 }, (_, i) => Math.sin(i));
    const out = sample([refRow(x, { temperature: 0, bias: [[40, 30]], seen: [[40, 2]], frequency: 0.5 })]);
    expect(out.tokens[0]).toBe(40);
    expect(out.logprobs[0]).toBeCloseTo(rawLogprobs(x)[40]!, 4);
  });
});

describe("bias and penalties", () => {
  // Each case must change the greedy choice in some rows, or it would test nothing.
  const cases: Array<[string, (r: ReturnType<typeof rng>) => Partial<RefRow>]> = [
    ["logit bias", (r) => ({ bias: [[r.int(40), Math.fround(r.normal() * 2)], [r.int(40), 1.5]] })],
    ["repetition > 1", () => ({ repetition: 1.7 })],
    ["repetition < 1", () => ({ repetition: 0.6 })],
    ["repetition on negative logits", (r) => ({ repetition: 1.7, logits: r.logits(40, 1).map((v) => v - 3) })],
    ["frequency", () => ({ frequency: 0.4 })],
    ["negative frequency", () => ({ frequency: -0.3 })],
    ["presence", () => ({ presence: 0.9 })],
    ["all together", (r) => ({ repetition: 1.2, frequency: 0.2, presence: 0.3, bias: [[r.int(40), -1]] })],
  ];
  for (const [name, params] of cases) {
    test(`${name} matches the reference`, () => {
      const r = rng(name.length * 7919);
      const rows = Array.from({ length: 200 }, () => {
        const seen = [...new Set(Array.from({ length: 12 }, () => r.int(40)))].map((t): [number, number] => [t, r.int(4)]);
        return refRow(r.logits(40, 1), { temperature: 0, seen, ...params(r) });
      });
      const out = sample(rows);
      let changed = 0;
      rows.forEach((row, s) => {
        const x = processedLogits(row);
        const [a, b] = topIds(x, 2);
        if (x[a!]! - x[b!]! < 1e-3) return; // too close for float32 to be bound to agree
        expect(out.tokens[s]).toBe(a!);
        if (a !== argmax(row.logits)) changed++;
      });
      expect(changed).toBeGreaterThan(10);
    });
  }
});

describe("seeded sampling", () => {
  test("the RNG is SplitMix64 as common/rng.h documents, and uniform logits reveal it", () => {
    expect(splitmix64(0n)).toBe(0xe220a8397b1dcdafn); // SplitMix64's first output from state 0
    const r = rng(3);
    const rows = Array.from({ length: 300 }, (_, s) => refRow(new Float32Array(1024), { seed: s < 2 ? BigInt(s) : r.seed64(), step: r.int(5000) }));
    rows.push(refRow(new Float32Array(1024), { seed: (1n << 64n) - 1n, step: 2 ** 31 - 1 }));
    const out = sample(rows);
    rows.forEach((row, s) => expect(out.tokens[s]).toBe(Math.floor(counterUniform(row.seed, row.step) * 1024)));
  });

  test("matches the reference sampler with every filter and penalty", () => {
    const r = rng(4);
    const rows = Array.from({ length: 400 }, () => {
      const seen = Array.from({ length: 5 }, (_, i): [number, number] => [i * 7, r.int(3)]);
      return refRow(r.logits(200, 2), {
        temperature: 0.3 + r.next() * 1.2, topK: [0, 0, 5, 60][r.int(4)], topP: [1, 1, 0.8, 0.5][r.int(4)],
        minP: [0, 0, 0.05, 0.3][r.int(4)], repetition: 1.1, frequency: 0.1, presence: 0.2, seen,
        seed: r.seed64(), step: r.int(100),
      });
    });
    const out = sample(rows);
    let compared = 0;
    rows.forEach((row, s) => {
      const ref = referenceSample(row);
      if (Math.min(ref.filterMargin, ref.drawMargin) < 1e-4) return;
      compared++;
      expect(out.tokens[s]).toBe(ref.token);
    });
    expect(compared).toBeGreaterThan(380);
  });

  test("is deterministic for (seed, step) and independent of the batch", () => {
    const r = rng(5);
    const req = refRow(r.logits(2000, 2), { temperature: 1.1, topP: 0.95, seed: 1234567890123n, step: 17 });
    const alone = sample([req], 3);
    expect(sample([req], 3)).toEqual(alone);
    const others = Array.from({ length: 7 }, () => refRow(r.logits(2000, 3), { temperature: 0.7, topK: 40, seed: r.seed64(), step: r.int(9) }));
    const batch = sample([...others.slice(0, 5), req, ...others.slice(5)], 3);
    expect(batch.tokens[5]).toBe(alone.tokens[0]!);
    expect(batch.logprobs[5]).toBe(alone.logprobs[0]!);
    expect([...batch.topIds.subarray(15, 18)]).toEqual([...alone.topIds]);
    const steps = sample(Array.from({ length: 40 }, (_, step) => ({ ...req, step })));
    expect(new Set(steps.tokens).size).toBeGreaterThan(5); // the step does change the draw
  });

  test("temperature draws follow softmax(logits / T) (chi-square over 4000 seeds)", () => {
    const x = Float32Array.from([0, 0.5, 1, -1, 2, 0.2, -0.5, 1.5]);
    const T = 0.7;
    const n = 4000;
    const out = sample(Array.from({ length: n }, (_, s) => refRow(x, { temperature: T, seed: BigInt(s) * 0x10001n, step: 3 })));
    const w = Array.from(x, (v) => Math.exp(v / T));
    const z = w.reduce((a, b) => a + b);
    const counts = new Array<number>(8).fill(0);
    for (const t of out.tokens) counts[t]!++;
    const chi2 = counts.reduce((acc, c, i) => acc + (c - (n * w[i]!) / z) ** 2 / ((n * w[i]!) / z), 0);
    expect(chi2).toBeLessThan(24.3); // 7 degrees of freedom: p = 0.001
  });
});

describe("filters", () => {
  // Distinct, well separated logits, and thresholds halfway between two neighbours, so that
  // float32 rounding cannot move a token across a filter boundary.
  const x = Float32Array.from({ length: 64 }, (_, i) => ((i * 37) % 64) / 16);
  const T = 0.9;
  const cases: Array<[string, Partial<RefRow>]> = [
    ["top_k 5 (heap path)", { topK: 5 }],
    ["top_k 20 (selection path)", { topK: 20 }],
    ["top_p 0.5", { topP: 0.5 }],
    ["min_p 0.2", { minP: 0.2 }],
    ["top_k 12 + top_p 0.8 + min_p 0.1", { topK: 12, topP: 0.8, minP: 0.1 }],
  ];
  for (const [name, params] of cases) {
    test(`${name} never picks a filtered token over 1500 seeds`, () => {
      const rows = Array.from({ length: 1500 }, (_, s) => refRow(x, { temperature: T, seed: BigInt(s), step: s % 7, ...params }));
      const ref = referenceSample(rows[0]!);
      expect(ref.kept.length).toBeLessThan(40);
      const out = sample(rows);
      const kept = new Set(ref.kept);
      for (const t of out.tokens) expect(kept.has(t)).toBe(true);
      const seen = new Set(out.tokens);
      ref.kept.forEach((t, j) => ref.probs[j]! > 0.01 && expect(seen.has(t)).toBe(true));
    });
  }
  test("the thresholds of these cases sit far from any boundary", () => {
    for (const [, params] of cases) expect(referenceSample(refRow(x, { temperature: T, ...params })).filterMargin).toBeGreaterThan(1e-4);
  });
});

describe("arguments", () => {
  const r = rng(6);
  const good = () => pack([refRow(r.logits(16), { seen: [[3, 1]], bias: [[5, 1]] }), refRow(r.logits(16), { seen: [[4, 0]] })]);
  const cases: Array<[string, RegExp, (h: Host) => void, ((a: SampleArgs) => SampleArgs)?]> = [
    ["a logits buffer too small", /logits/, () => {}, (a) => ({ ...a, vocab: 17 })],
    ["vocab 0", /vocab/, () => {}, (a) => ({ ...a, vocab: 0 })],
    ["n_top above vocab", /n_top/, () => {}, (a) => ({ ...a, nTop: 17, outTopIds: a.outTokens, outTopLogprobs: a.outLogprobs })],
    ["a bad buffer handle", /fparams/, () => {}, (a) => ({ ...a, fparams: 987654 })],
    ["a misaligned logits view", /logits.*aligned/, () => {}, (a) => ({ ...a, logits: be.view(a.logits, 2, 2 * 16 * 4 - 4), vocab: 15 })],
    ["decreasing seen offsets", /seen_offsets/, (h) => h.seenOffsets.set([0, 2, 1])],
    ["offsets past the token array", /bias_tokens/, (h) => h.biasOffsets.set([0, 1, 9])],
    ["a seen token outside the vocab", /seen_tokens/, (h) => h.seenTokens.set([16], 1)],
    ["a negative bias token", /bias_tokens/, (h) => h.biasTokens.set([-1])],
    ["a negative seen count", /seen_counts/, (h) => h.seenCounts.set([-2])],
    ["a NaN bias value", /bias_values/, (h) => h.biasValues.set([NaN])],
    ["top_p 0", /top_p/, (h) => h.fparams.set([0], SP.nf + SP.topP)],
    ["a NaN temperature", /temperature/, (h) => h.fparams.set([NaN], SP.temperature)],
    ["a negative step", /step/, (h) => h.iparams.set([-1], SP.step)],
  ];
  for (const [name, message, edit, patch] of cases) {
    test(`${name} throws BackendError naming the argument`, () => {
      const h = good();
      edit(h);
      let err: unknown;
      try {
        run(h, 0, patch);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(BackendError);
      expect((err as BackendError).message).toMatch(message);
    });
  }
  test("absent lists (offsets handle 0) and empty lists without arrays sample as empty lists do", () => {
    const rows = [refRow(r.logits(16), { seed: 5n }), refRow(r.logits(16), { seed: 6n })];
    const expected = run(pack(rows));
    expect(run(pack(rows), 0, (a) => ({ ...a, seenOffsets: 0, biasOffsets: 0, seenTokens: 0, biasValues: 0 }))).toEqual(expected);
    expect(run(pack(rows), 0, (a) => ({ ...a, seenTokens: 0, seenCounts: 0, biasTokens: 0, biasValues: 0 }))).toEqual(expected);
  });
  test("the unedited input samples fine", () => {
    expect(() => run(good(), 2)).not.toThrow();
  });
});

describe("rows that cannot be sampled", () => {
  const r = rng(7);
  const rows = () => Array.from({ length: 4 }, (_, s) => refRow(r.logits(64, 3), { temperature: 0.8, seed: BigInt(s + 1), seen: [[2, 1]] }));
  const faults: Array<[string, (h: Host) => void]> = [
    ["a NaN logit", (h) => h.logits.set([NaN], 64 + 20)],
    ["a +inf logit", (h) => h.logits.set([Infinity], 64 + 3)],
    ["a row of -inf logits", (h) => h.logits.fill(-Infinity, 64, 128)],
    // A float32 penalty just above zero divides a positive seen logit past the largest float.
    ["a repetition penalty that overflows a logit", (h) => (h.logits.set([5], 64 + 2), h.fparams.set([1e-44], SP.nf + SP.repetition))],
  ];
  for (const [name, edit] of faults) {
    test(`${name} gives that row token -1 and NaN logprobs; the others sample as alone`, () => {
      const base = rows();
      const h = pack(base);
      edit(h);
      const out = run(h, 3);
      expect(out.tokens[1]).toBe(-1);
      expect(Number.isNaN(out.logprobs[1]!)).toBe(true);
      expect([...out.topIds.subarray(3, 6)]).toEqual([-1, -1, -1]);
      for (const s of [0, 2, 3]) expect(out.tokens[s]).toBe(sample([base[s]!]).tokens[0]!);
    });
  }
});
