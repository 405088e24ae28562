// vd_sample of the backend under test (cuda) against the cpu backend: greedy, raw and top-n
// logprobs, seeded draws through every filter, penalties and bias, and the RNG itself.
// Skipped unless VLLMD_GPU_TESTS=1 (see harness.ts).
import { expect, test } from "bun:test";
import { counterUniform, processedLogits, referenceSample, refRow, topIds, type RefRow } from "../../src/native/sample-reference.ts";
import { seededRandom } from "../../src/native/testing.ts";
import { type Backend, SP } from "../../src/native/types.ts";
import { backends, gpuSuite, record, run } from "./harness.ts";

interface Sampled {
  tokens: Int32Array;
  logprobs: Float32Array;
  topIds: Int32Array;
  topLogprobs: Float32Array;
}

/** Packs `rows` as vd_sample takes them, samples on `be` and reads every output back. */
function sampleOn(be: Backend, rows: RefRow[], nTop = 0): Sampled {
  const [S, V] = [rows.length, rows[0]!.logits.length];
  const logits = new Float32Array(S * V);
  const fparams = new Float32Array(S * SP.nf);
  const iparams = new Int32Array(S * SP.ni);
  const [seenOffsets, biasOffsets] = [new Int32Array(S + 1), new Int32Array(S + 1)];
  rows.forEach((r, s) => {
    logits.set(r.logits, s * V);
    fparams.set([r.temperature, r.topP, r.minP, r.repetition, r.presence, r.frequency], s * SP.nf);
    iparams.set([r.topK, Number(r.seed & 0xffffffffn) | 0, Number(r.seed >> 32n) | 0, r.step], s * SP.ni);
    seenOffsets[s + 1] = seenOffsets[s]! + r.seen.length;
    biasOffsets[s + 1] = biasOffsets[s]! + r.bias.length;
  });
  return run(be, (b) => {
    const outTokens = b.i32(new Int32Array(S).fill(-7));
    const outLogprobs = b.poisoned(S, 0);
    const [outTopIds, outTopLogprobs] = nTop ? [b.i32(new Int32Array(S * nTop).fill(-7)), b.poisoned(S * nTop, 0)] : [0, 0];
    be.sample({
      logits: b.raw(logits), nSeqs: S, vocab: V, fparams: b.raw(fparams), iparams: b.raw(iparams),
      seenOffsets: b.raw(seenOffsets), seenTokens: b.i32(rows.flatMap((r) => r.seen.map(([t]) => t))),
      seenCounts: b.i32(rows.flatMap((r) => r.seen.map(([, c]) => c))), biasOffsets: b.raw(biasOffsets),
      biasTokens: b.i32(rows.flatMap((r) => r.bias.map(([t]) => t))),
      biasValues: b.raw(Float32Array.from(rows.flatMap((r) => r.bias.map(([, v]) => v)))),
      nTop, outTokens, outLogprobs, outTopIds, outTopLogprobs,
    });
    const ints = (buf: number, n: number) => new Int32Array(b.bytes(buf, n * 4).buffer);
    return {
      tokens: ints(outTokens, S), logprobs: b.get(outLogprobs, S, 0),
      topIds: nTop ? ints(outTopIds, S * nTop) : new Int32Array(0), topLogprobs: nTop ? b.get(outTopLogprobs, S * nTop, 0) : new Float32Array(0),
    };
  });
}

function both(rows: RefRow[], nTop = 0): { cpu: Sampled; dev: Sampled } {
  const { cpu, dev } = backends();
  const out = { cpu: sampleOn(cpu, rows, nTop), dev: sampleOn(dev, rows, nTop) };
  expectWritten(out.dev, rows[0]!.logits.length);
  return out;
}

/** Every output written: ids inside the vocab, logprobs finite and at most 0 (no NaN poison left). */
function expectWritten(o: Sampled, V: number): void {
  const badId = [...o.tokens, ...o.topIds].findIndex((t) => !(t >= 0 && t < V));
  const badLp = [...o.logprobs, ...o.topLogprobs].findIndex((x) => !(Number.isFinite(x) && x <= 1e-6));
  if (badId >= 0 || badLp >= 0) throw new Error(`sample wrote a bad output: id #${badId}, logprob #${badLp} (-1: none)`);
}

/** Seeded normal logits and 64-bit seeds. */
function gen(seed: number) {
  const u = seededRandom(seed);
  const unit = () => (u() + 1) / 2;
  const int = (n: number) => Math.floor(unit() * n) % n;
  const normal = () => Math.sqrt(-2 * Math.log(1 - unit())) * Math.cos(2 * Math.PI * unit());
  const logits = (v: number, scale = 1) => Float32Array.from({ length: v }, () => normal() * scale);
  const seed64 = () => (BigInt(int(2 ** 32)) << 32n) | BigInt(int(2 ** 32));
  return { unit, int, normal, logits, seed64 };
}

const LOGPROB_TOL = 1e-4;

gpuSuite("sample parity", () => {
  test("greedy (temperature 0, and top_k 1) equals the cpu's exactly, ties to the lowest id", () => {
    const r = gen(1);
    const rows = Array.from({ length: 64 }, (_, s) => {
      const x = r.logits(32_000, 4);
      if (s % 8 === 0) for (const i of [31_000, 77, 20_000]) x[i] = 40; // an exact tie at the top
      return refRow(x, s % 2 ? { temperature: 0 } : { temperature: 0.8, topK: 1, seed: r.seed64() });
    });
    const out = both(rows);
    expect([...out.dev.tokens]).toEqual([...out.cpu.tokens]);
    rows.forEach((_, s) => s % 8 === 0 && expect(out.dev.tokens[s]).toBe(77));
  }, 30_000);

  test(`raw logprobs within ${LOGPROB_TOL}; top-20 ids equal wherever values are not near-ties`, () => {
    const r = gen(2);
    const nTop = 20;
    const rows = Array.from({ length: 16 }, () => {
      const x = r.logits(50_000, 5);
      x[40_000] = x[10] = x[25_000] = 30; // exact ties order by id on any backend
      x[3] = x[49_999] = 29;
      return refRow(x, { temperature: 0.9, seed: r.seed64() });
    });
    const { cpu, dev } = both(rows, nTop);
    let worst = 0;
    rows.forEach((_, s) => {
      if (dev.tokens[s] === cpu.tokens[s]) worst = Math.max(worst, Math.abs(dev.logprobs[s]! - cpu.logprobs[s]!));
      const lp = cpu.topLogprobs.subarray(s * nTop, (s + 1) * nTop);
      for (let j = 0; j < nTop; j++) {
        const at = s * nTop + j;
        worst = Math.max(worst, Math.abs(dev.topLogprobs[at]! - cpu.topLogprobs[at]!));
        const nearTie = (j > 0 && lp[j - 1]! - lp[j]! < LOGPROB_TOL && lp[j - 1] !== lp[j]) || (j + 1 < nTop && lp[j]! - lp[j + 1]! < LOGPROB_TOL && lp[j] !== lp[j + 1]);
        if (!nearTie) expect({ s, j, id: dev.topIds[at] }).toEqual({ s, j, id: cpu.topIds[at] });
      }
      expect([...dev.topIds.subarray(s * nTop, s * nTop + 5)]).toEqual([10, 25_000, 40_000, 3, 49_999]);
    });
    record("sample logprobs (absolute)", worst);
    expect(worst).toBeLessThan(LOGPROB_TOL);
  }, 30_000);

  test("the draw is the cpu's SplitMix64 uniform: uniform logits pick floor(u * V)", () => {
    const r = gen(3);
    const rows = Array.from({ length: 300 }, (_, s) => refRow(new Float32Array(1024), { seed: s < 2 ? BigInt(s) : r.seed64(), step: r.int(5000) }));
    rows.push(refRow(new Float32Array(1024), { seed: (1n << 64n) - 1n, step: 2 ** 31 - 1 }));
    const { cpu, dev } = both(rows);
    expect([...dev.tokens]).toEqual([...cpu.tokens]);
    rows.forEach((row, s) => expect(cpu.tokens[s]).toBe(Math.floor(counterUniform(row.seed, row.step) * 1024)));
  });

  // [vocab, rows, logit scale, top temperature]: at V = 32000 the scale keeps most draws away
  // from a boundary (a flat 32000-way draw would put nearly every row within 1e-4 of one).
  for (const [V, n, scale, tMax] of [[200, 400, 2, 1.5], [32_000, 120, 4, 1]] as const)
    test(`seeded draws with temperature, top-k, top-p, min-p and penalties equal the cpu's (V=${V})`, () => {
      const r = gen(V);
      const rows = Array.from({ length: n }, () => {
        const seen = Array.from({ length: 5 }, (_, i): [number, number] => [i * 7, r.int(3)]);
        return refRow(r.logits(V, scale), {
          temperature: 0.3 + r.unit() * (tMax - 0.3), topK: [0, 0, 5, 60][r.int(4)], topP: [1, 1, 0.8, 0.5][r.int(4)],
          minP: [0, 0, 0.05, 0.3][r.int(4)], repetition: 1.1, frequency: 0.1, presence: 0.2, seen,
          bias: [[r.int(V), 1.5]], seed: r.seed64(), step: r.int(100),
        });
      });
      const { cpu, dev } = both(rows);
      let compared = 0;
      rows.forEach((row, s) => {
        const ref = referenceSample(row);
        if (Math.min(ref.filterMargin, ref.drawMargin) < 1e-4) return; // float32 may decide either way
        compared++;
        expect({ s, token: dev.tokens[s] }).toEqual({ s, token: cpu.tokens[s] });
      });
      expect(compared).toBeGreaterThanOrEqual(Math.ceil(0.95 * n));
    }, 30_000);

  const penalties: [string, (r: ReturnType<typeof gen>) => Partial<RefRow>][] = [
    ["logit bias", (r) => ({ bias: [[r.int(40), 2], [r.int(40), 1.5]] })],
    ["repetition > 1", () => ({ repetition: 1.7 })],
    ["repetition < 1", () => ({ repetition: 0.6 })],
    ["frequency", () => ({ frequency: 0.4 })],
    ["presence", () => ({ presence: 0.9 })],
    ["all together", (r) => ({ repetition: 1.2, frequency: 0.2, presence: 0.3, bias: [[r.int(40), -1]] })],
  ];
  for (const [name, params] of penalties)
    test(`greedy with ${name} equals the cpu's where the top two are apart`, () => {
      const r = gen(name.length * 7919);
      const rows = Array.from({ length: 200 }, () => {
        const seen = [...new Set(Array.from({ length: 12 }, () => r.int(40)))].map((t): [number, number] => [t, r.int(4)]);
        return refRow(r.logits(40), { temperature: 0, seen, ...params(r) });
      });
      const { cpu, dev } = both(rows);
      let changed = 0;
      rows.forEach((row, s) => {
        const x = processedLogits(row);
        const [a, b] = topIds(x, 2);
        if (x[a!]! - x[b!]! < 1e-3) return;
        expect({ s, token: dev.tokens[s] }).toEqual({ s, token: cpu.tokens[s] });
        if (cpu.tokens[s] !== topIds(row.logits, 1)[0]) changed++;
      });
      expect(changed).toBeGreaterThan(10); // the penalty did change choices, so it was tested
    });

  test("rows that cannot be sampled give token -1 and NaN logprobs on both, fault nothing, and spare the others", () => {
    const r = gen(99);
    const nTop = 3;
    const rows = Array.from({ length: 8 }, () => refRow(r.logits(500, 3), { temperature: 0.7, seed: r.seed64(), seen: [[7, 1]] }));
    rows[1]!.logits[20] = NaN;
    rows[3]!.logits.fill(-Infinity);
    rows[5]!.logits[7] = 5;
    rows[5]!.repetition = 1e-44; // a float32 just above zero: 5 / 1e-44 overflows
    const { cpu, dev } = backends();
    const got = { cpu: sampleOn(cpu, rows, nTop), dev: sampleOn(dev, rows, nTop) };
    dev.sync(); // a row's values are not a device fault
    for (const o of [got.cpu, got.dev]) {
      for (const s of [1, 3, 5]) {
        expect(o.tokens[s]).toBe(-1);
        expect(Number.isNaN(o.logprobs[s]!)).toBe(true);
        expect([...o.topIds.subarray(s * nTop, (s + 1) * nTop)]).toEqual([-1, -1, -1]);
      }
    }
    for (const s of [0, 2, 4, 6, 7]) expect({ s, token: got.dev.tokens[s] }).toEqual({ s, token: got.cpu.tokens[s] });
  });

  test("a negative source token is scattered as 0 (the next step of a row that failed still runs)", () => {
    const { cpu, dev } = backends();
    const scatter = (be: Backend) => run(be, (b) => {
      const ids = b.i32(Int32Array.of(5, 5, 5, 5));
      be.scatterTokens(ids, b.i32(Int32Array.of(0, 2)), b.i32(Int32Array.of(-1, 9)), b.i32(Int32Array.of(0, 1)), 2);
      return [...new Int32Array(b.bytes(ids, 16).buffer)];
    });
    expect(scatter(dev)).toEqual([0, 5, 9, 5]);
    expect(scatter(cpu)).toEqual([0, 5, 9, 5]);
    dev.sync();
  });
});
