// FP8 weights on the cpu backend: vd_quantize_fp8 against the format's definition
// (fp8-reference.ts), and vd_gemm_fp8 against a float64 product of the dequantized weights.
import { afterAll, describe, expect, test } from "bun:test";
import { openBackend } from "./backend.ts";
import { fp8Decode, fp8Encode, quantizeRow } from "./fp8-reference.ts";
import { backendError, downloadF32, encodeWeights, poisoned, randomF32, relativeError, seededRandom, upload } from "./testing.ts";
import { ActQuant, DType } from "./types.ts";

const be = openBackend("cpu");
afterAll(() => be.destroy());

function download(buf: number, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  be.copyToHost(buf, 0, out);
  return out;
}

/** Quantizes [rows, cols] of `values` (stored as `dtype`) on the backend; returns codes and scales. */
function quantize(values: Float32Array, rows: number, cols: number, dtype: DType) {
  const src = encodeWeights(values, dtype);
  const s = upload(be, src.bytes), q = be.alloc(rows * cols), sc = be.alloc(rows * 4);
  be.quantizeFp8(q, sc, s, rows, cols, dtype);
  const out = { codes: download(q, rows * cols), scales: downloadF32(be, sc, rows), exact: src.exact };
  for (const b of [s, q, sc]) be.free(b);
  return out;
}

describe("the e4m3 reference itself", () => {
  test("decodes the format's landmarks and encodes to the nearest code", () => {
    expect([fp8Decode(0x7e), fp8Decode(0x08), fp8Decode(0x01), fp8Decode(0x80 | 0x38)]).toEqual([448, 2 ** -6, 2 ** -9, -1]);
    expect(Number.isNaN(fp8Decode(0x7f))).toBe(true);
    expect([fp8Encode(1000), fp8Encode(-1000), fp8Encode(1.0625), fp8Encode(1.1875)]).toEqual([0x7e, 0xfe, 0x38, 0x3a]); // ties to even
  });
});

describe("vd_quantize_fp8", () => {
  for (const dtype of [DType.f32, DType.bf16, DType.f16])
    test(`per-row scales and codes as defined, src dtype ${dtype} (rows of zeros, huge and tiny values too)`, () => {
      const rand = seededRandom(10 + dtype);
      const [rows, cols] = [37, 75];
      const values = randomF32(rows * cols, rand, 3);
      values.fill(0, 5 * cols, 6 * cols); // a row of zeros: scale 1
      values[7 * cols + 3] = 60000; // one outlier sets its row's scale
      for (let c = 0; c < cols; c++) values[9 * cols + c] = 1e-6 * (c - 30);
      const got = quantize(values, rows, cols, dtype);
      let mismatches = 0;
      for (let r = 0; r < rows; r++) {
        const want = quantizeRow(got.exact.subarray(r * cols, (r + 1) * cols));
        expect(got.scales[r]).toBe(want.scale);
        for (let c = 0; c < cols; c++) if (got.codes[r * cols + c] !== want.codes[c]) mismatches++;
      }
      expect(mismatches).toBe(0);
      expect(got.scales[5]).toBe(1);
    });

  test("bad arguments name themselves", () => {
    const small = be.alloc(16);
    expect(backendError(() => be.quantizeFp8(small, small, small, 4, 8, DType.f32)).message).toContain("vd_quantize_fp8(q)");
    expect(backendError(() => be.quantizeFp8(small, small, small, 1, 4, DType.i32)).message).toContain("src_dtype");
    be.free(small);
  });
});

describe("vd_gemm_fp8", () => {
  /** (x . decode(q)^T) * scale + bias in float64, from the backend's own codes and scales. */
  function reference(x: Float32Array, codes: Uint8Array, scales: Float32Array, bias: Float32Array | null, m: number, n: number, k: number) {
    const out = new Float64Array(m * n);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += x[i * k + p]! * fp8Decode(codes[j * k + p]!);
        out[i * n + j] = s * scales[j]! + (bias ? bias[j]! : 0);
      }
    return out;
  }

  for (const [m, n, k] of [[1, 33, 64], [3, 40, 71], [17, 96, 320], [64, 24, 9]] as const)
    test(`matches the dequantized product, m=${m} n=${n} k=${k}, with and without bias`, () => {
      const rand = seededRandom(m * 1000 + n + k);
      const w = randomF32(n * k, rand, 0.5), x = randomF32(m * k, rand), bias = randomF32(n, rand);
      const wq = quantize(w, n, k, DType.f32);
      const [qb, sb, xb, bb] = [upload(be, wq.codes), upload(be, wq.scales), upload(be, x), upload(be, bias)];
      for (const withBias of [false, true]) {
        const out = poisoned(be, m * n);
        be.gemmFp8(out, xb, qb, sb, withBias ? bb : 0, m, n, k, DType.f32);
        const got = downloadF32(be, out, m * n);
        be.free(out);
        expect(relativeError(got, reference(x, wq.codes, wq.scales, withBias ? bias : null, m, n, k))).toBeLessThan(1e-5);
      }
      // and close to the unquantized product: e4m3 keeps ~2 significant digits per weight
      const exact = new Float64Array(m * n);
      for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let p = 0; p < k; p++) exact[i * n + j]! += x[i * k + p]! * w[j * k + p]!;
      const out = poisoned(be, m * n);
      be.gemmFp8(out, xb, qb, sb, 0, m, n, k, DType.f32);
      expect(relativeError(downloadF32(be, out, m * n), exact)).toBeLessThan(0.05);
      for (const b of [qb, sb, xb, bb, out]) be.free(b);
    });

  // W8A8: each row of x becomes its e4m3 codes (the reference quantizes it with quantizeRow, from
  // the format's definition) and the row's scale multiplies the output with the weight's.
  for (const [m, n, k] of [[1, 33, 64], [17, 96, 320]] as const)
    test(`act_quant fp8Row: x quantized per row first, m=${m} n=${n} k=${k} (a row of zeros too)`, () => {
      const rand = seededRandom(m * 77 + n + k);
      const w = randomF32(n * k, rand, 0.5), x = randomF32(m * k, rand, 4), bias = randomF32(n, rand);
      if (m > 1) x.fill(0, k, 2 * k);
      const wq = quantize(w, n, k, DType.f32);
      const xq = new Float32Array(m * k), rowScale = new Float32Array(m);
      for (let i = 0; i < m; i++) {
        const r = quantizeRow(x.subarray(i * k, (i + 1) * k));
        rowScale[i] = r.scale;
        r.codes.forEach((c, p) => (xq[i * k + p] = fp8Decode(c)));
      }
      const want = reference(xq, wq.codes, wq.scales, null, m, n, k).map((v, i) => v * rowScale[Math.floor(i / n)]!);
      const withBias = Float64Array.from(want, (v, i) => v + bias[i % n]!);
      const [qb, sb, xb, bb] = [upload(be, wq.codes), upload(be, wq.scales), upload(be, x), upload(be, bias)];
      const run = (actQuant: ActQuant, b: number) => {
        const out = poisoned(be, m * n);
        be.gemmFp8(out, xb, qb, sb, b, m, n, k, DType.f32, actQuant);
        const got = downloadF32(be, out, m * n);
        be.free(out);
        return got;
      };
      expect(relativeError(run(ActQuant.fp8Row, 0), want)).toBeLessThan(1e-5);
      expect(relativeError(run(ActQuant.fp8Row, bb), withBias)).toBeLessThan(1e-5);
      // it is not the weight-only product: the activations' rounding shows
      const weightOnly = run(ActQuant.none, 0);
      expect(relativeError(weightOnly, want)).toBeGreaterThan(1e-4);
      expect(relativeError(weightOnly, want)).toBeLessThan(0.05);
      for (const b of [qb, sb, xb, bb]) be.free(b);
    });

  test("only f32 activations on the cpu, and sizes are checked", () => {
    const small = be.alloc(16);
    expect(backendError(() => be.gemmFp8(small, small, small, small, 0, 1, 4, 4, DType.bf16)).message).toContain("act_dtype");
    expect(backendError(() => be.gemmFp8(small, small, small, small, 0, 2, 4, 4, DType.f32)).message).toContain("vd_gemm_fp8(out)");
    expect(backendError(() => be.gemmFp8(small, small, small, small, 0, 1, 1, 1, DType.f32, 7 as ActQuant)).message).toContain("act_quant 7");
    be.free(small);
  });
});
