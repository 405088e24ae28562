// vd_gemm on the cpu backend against a float64 reference, and its batch invariance.
import { afterAll, describe, expect, test } from "bun:test";
import { openBackend } from "./backend.ts";
import { downloadF32, encodeWeights, poisoned, randomF32, relativeError, sameBits, seededRandom, upload } from "./testing.ts";
import { type Backend, DType } from "./types.ts";

const be = openBackend("cpu");
afterAll(() => be.destroy());

/** out[m, n] = x[m, k] . w[n, k]^T + bias in float64. */
function gemmRef(x: Float32Array, w: Float32Array, bias: Float32Array | null, m: number, n: number, k: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = bias ? (bias[j] as number) : 0;
      for (let p = 0; p < k; p++) s += (x[i * k + p] as number) * (w[j * k + p] as number);
      out[i * n + j] = s;
    }
  return out;
}

interface Weights {
  w: number;
  bias: number;
  exactW: Float32Array;
  exactBias: Float32Array | null;
}

function makeWeights(rand: () => number, n: number, k: number, dtype: DType, withBias: boolean): Weights {
  const w = encodeWeights(randomF32(n * k, rand), dtype);
  const b = withBias ? encodeWeights(randomF32(n, rand), dtype) : null;
  return { w: upload(be, w.bytes), bias: b ? upload(be, b.bytes) : 0, exactW: w.exact, exactBias: b?.exact ?? null };
}

function runGemm(b: Backend, x: Float32Array, wt: Weights, m: number, n: number, k: number, dtype: DType): Float32Array {
  const xb = upload(b, x);
  const out = poisoned(b, m * n);
  b.gemm(out, xb, wt.w, wt.bias, m, n, k, DType.f32, dtype);
  const got = downloadF32(b, out, m * n);
  b.free(xb);
  b.free(out);
  return got;
}

const freeWeights = (wt: Weights) => {
  be.free(wt.w);
  if (wt.bias) be.free(wt.bias);
};

describe("gemm matches a float64 reference", () => {
  const shapes: [number, number, number][] = [
    [1, 1, 1],
    [1, 67, 45], // k tail, odd n
    [5, 31, 64],
    [37, 53, 19],
    [70, 130, 96], // more than one row chunk and column chunk
    [3, 8, 0], // k = 0: bias only
  ];
  for (const dtype of [DType.f32, DType.bf16, DType.f16])
    for (const [m, n, k] of shapes)
      test(`dtype ${dtype} m=${m} n=${n} k=${k}`, () => {
        const rand = seededRandom(m * 1000 + n * 10 + k + dtype);
        const wt = makeWeights(rand, n, k, dtype, true);
        const x = randomF32(m * k, rand);
        const got = runGemm(be, x, wt, m, n, k, dtype);
        // The weights the backend reads are exactly `exactW`, so every dtype gets the f32 bound.
        expect(relativeError(got, gemmRef(x, wt.exactW, wt.exactBias, m, n, k))).toBeLessThan(1e-5);
        freeWeights(wt);
      });

  test("without a bias", () => {
    const rand = seededRandom(7);
    const wt = makeWeights(rand, 20, 33, DType.f32, false);
    const x = randomF32(3 * 33, rand);
    expect(relativeError(runGemm(be, x, wt, 3, 20, 33, DType.f32), gemmRef(x, wt.exactW, null, 3, 20, 33))).toBeLessThan(1e-5);
    freeWeights(wt);
  });
});

describe("gemm is batch invariant", () => {
  // Large enough that m = 37 runs on several threads and tiles while m = 1 does not.
  const [n, k] = [515, 301];
  for (const dtype of [DType.f32, DType.bf16, DType.f16])
    test(`dtype ${dtype}: each row alone equals the same row inside m = 37`, () => {
      const rand = seededRandom(99 + dtype);
      const wt = makeWeights(rand, n, k, dtype, true);
      const m = 37;
      const x = randomF32(m * k, rand);
      const batch = runGemm(be, x, wt, m, n, k, dtype);
      for (const row of [0, 1, 5, 17, 36]) {
        const alone = runGemm(be, x.subarray(row * k, (row + 1) * k), wt, 1, n, k, dtype);
        expect(sameBits(alone, batch.subarray(row * n, (row + 1) * n))).toBe(true);
      }
      const pair = runGemm(be, x.subarray(3 * k, 5 * k), wt, 2, n, k, dtype); // rows 3, 4 as a 2-row strip
      expect(sameBits(pair, batch.subarray(3 * n, 5 * n))).toBe(true);
      freeWeights(wt);
    });
});
