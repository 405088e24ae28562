// vd_gemm of the backend under test (cuda: cuBLAS or its own kernels) against the cpu backend,
// for m from 1 (decode) to 300, n and k that are and are not multiples of 8, with and without a
// bias, in f32, bf16 and f16. Skipped unless VLLMD_GPU_TESTS=1 (see harness.ts).
import { test } from "bun:test";
import { randomF32, seededRandom } from "../../src/native/testing.ts";
import { type Backend, DType } from "../../src/native/types.ts";
import { ACT_DTYPES, backends, dtypeName, expectClose, gpuSuite, roundTo, run, tolerance } from "./harness.ts";

const { f32, f16, bf16 } = DType;

/**
 * [act, weights, tolerance]. f32 with f32 weights: only the summation order differs (cuBLAS may
 * split k), ~1e-7. f32 activations with half weights: both sides read the same half values and
 * should compute in f32; 1e-4 leaves room for order but not for rounding x to bf16 (~2e-3) or
 * TF32 (~5e-4). Half activations: the output is rounded to half, so tolerance(act).
 */
const CASES: [DType, DType, number][] = [
  [f32, f32, tolerance(f32)],
  [f32, bf16, 1e-4],
  [bf16, bf16, tolerance(bf16)],
  [f16, f16, tolerance(f16)],
];
const MS = [1, 7, 64, 300];
// [67, 4104] and [1027, 1536]: k a multiple of 8, so m <= 8 in f16/bf16 takes the gemv kernel (odd n: a
// warp with a missing row; 4104: a partial last round of chunks).
const NKS: [number, number][] = [[256, 512], [67, 45], [1000, 333], [1536, 1027], [67, 4104], [1027, 1536]];

interface Operands {
  x: Float32Array;
  w: Float32Array;
  bias: Float32Array | null;
}

function operands(m: number, n: number, k: number, act: DType, wd: DType, withBias: boolean, seed: number): Operands {
  const rand = seededRandom(seed);
  return {
    x: roundTo(randomF32(m * k, rand), act),
    w: roundTo(randomF32(n * k, rand, 1 / Math.sqrt(Math.max(k, 1))), wd),
    bias: withBias ? roundTo(randomF32(n, rand), wd) : null,
  };
}

/** out = x . w^T (+ bias) on `be` with activations in `act`; returns out as f32. */
function gemmOn(be: Backend, o: Operands, m: number, n: number, k: number, act: DType, wd: DType): Float32Array {
  return run(be, (b) => {
    const out = b.poisoned(m * n, act);
    be.gemm(out, b.put(o.x, act), b.put(o.w, wd), o.bias ? b.put(o.bias, wd) : 0, m, n, k, act, wd);
    return b.get(out, m * n, act);
  });
}

function compare(o: Operands, m: number, n: number, k: number, act: DType, wd: DType, tol: number): void {
  const { cpu, dev } = backends();
  const want = gemmOn(cpu, o, m, n, k, f32, wd); // cpu: f32 activations, the same weight bytes
  const got = gemmOn(dev, o, m, n, k, act, wd);
  expectClose(got, want, tol, `gemm ${dtypeName(act)}/${dtypeName(wd)}${m === 1 ? " m=1" : ""}`);
}

gpuSuite("gemm parity", () => {
  for (const [act, wd, tol] of CASES.filter(([a]) => ACT_DTYPES.includes(a)))
    MS.forEach((m, mi) =>
      NKS.forEach(([n, k], ni) => {
        const withBias = (mi + ni) % 2 === 0; // every shape row and column gets both
        test(`act ${dtypeName(act)}, weights ${dtypeName(wd)}: m=${m} n=${n} k=${k}${withBias ? " + bias" : ""}`, () => {
          compare(operands(m, n, k, act, wd, withBias, m * 7919 + n * 31 + k + act * 3 + wd), m, n, k, act, wd, tol);
        }, 30_000);
      }),
    );

  // The GEMV's block shapes (gemv.cuh launch()): 1 and 2 rows of x against 4 rows of w a block,
  // and 8 rows a block from 65536 rows of w on (an lm_head's), whose last block is partial here.
  for (const [act, wd, tol] of CASES.filter(([a, w]) => ACT_DTYPES.includes(a) && a === w && a !== f32))
    for (const [m, n, k] of [[2, 1027, 1536], [1, 65543, 264], [2, 65543, 264]] as const)
      test(`act ${dtypeName(act)}, weights ${dtypeName(wd)}: GEMV block shape, m=${m} n=${n} k=${k}`, () => {
        compare(operands(m, n, k, act, wd, m === 2, m * 13 + n + k), m, n, k, act, wd, tol);
      }, 30_000);

  for (const [act, wd, tol] of CASES.filter(([a]) => ACT_DTYPES.includes(a)))
    test(`act ${dtypeName(act)}, weights ${dtypeName(wd)}: k = 0 gives the bias, and zeros without one`, () => {
      const { cpu, dev } = backends();
      const o = operands(5, 37, 0, act, wd, true, 3);
      expectClose(gemmOn(dev, o, 5, 37, 0, act, wd), gemmOn(cpu, o, 5, 37, 0, f32, wd), tol, `gemm k=0 ${dtypeName(act)}`);
      const zeros = gemmOn(dev, { ...o, bias: null }, 5, 37, 0, act, wd);
      if (!zeros.every((v) => v === 0)) throw new Error("gemm with k = 0 and no bias must write zeros");
    });
});
