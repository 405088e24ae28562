// The GPU tests' helpers, checked where no GPU is: rounding and decoding agree with the weight
// encoder, and the comparisons catch what they must (NaN poison, a large error, a wrong byte).
import { describe, expect, test } from "bun:test";
import { openBackend } from "../../src/native/backend.ts";
import { encodeWeights, randomF32, seededRandom } from "../../src/native/testing.ts";
import { DType } from "../../src/native/types.ts";
import { decode, expectClose, expectSameBytes, roundTo, run } from "./harness.ts";

const values = (): Float32Array => {
  const x = randomF32(5000, seededRandom(1), 3);
  x.set([0, -0, 1e-8, 2 ** -25, 65504, 65520, 1 + 2 ** -11, 1 + 3 * 2 ** -8, Infinity, -Infinity, 1e-40, 3e38], 100);
  return x;
};

describe("gpu test harness", () => {
  for (const dt of [DType.f32, DType.f16, DType.bf16])
    test(`roundTo and decode agree with encodeWeights (dtype ${dt})`, () => {
      const enc = encodeWeights(values(), dt);
      expect(roundTo(values(), dt)).toEqual(enc.exact);
      expect(decode(enc.bytes, dt)).toEqual(enc.exact);
    });

  test("put stores exactly the rounded values and refuses unrounded ones", () => {
    const be = openBackend("cpu");
    try {
      for (const dt of [DType.f16, DType.bf16]) {
        const x = roundTo(values(), dt);
        expect(run(be, (b) => b.get(b.put(x, dt), x.length, dt))).toEqual(x);
        expect(() => run(be, (b) => b.put(Float32Array.of(1 + 2 ** -20), dt))).toThrow(/not an? (f16|bf16) value/);
      }
      expect(run(be, (b) => b.get(b.poisoned(3, DType.bf16), 3, DType.bf16)).every(Number.isNaN)).toBe(true);
    } finally {
      be.destroy();
    }
  });

  test("expectClose passes within tolerance and fails on error, NaN and lost poison", () => {
    const ref = Float32Array.from([1, 2, NaN, 4]);
    expect(expectClose(Float32Array.from([1, 2, NaN, 4.0001]), ref, 1e-4, "ok")).toBeLessThan(1e-4);
    expect(() => expectClose(Float32Array.from([1, 2, NaN, 4.1]), ref, 1e-4, "error")).toThrow(/relative error/);
    expect(() => expectClose(Float32Array.from([NaN, 2, NaN, 4]), ref, 1e-4, "nan")).toThrow(/element 0/);
    expect(() => expectClose(Float32Array.from([1, 2, 3, 4]), ref, 1e-4, "poison")).toThrow(/element 2/);
    expect(() => expectClose(new Float32Array(2), new Float32Array(2), 1, "zeros")).toThrow(/no non-zero/);
  });

  test("expectSameBytes names the first differing element", () => {
    expect(() => expectSameBytes(Uint8Array.of(1, 2, 3, 4), Uint8Array.of(1, 2, 3, 5), 2, "b")).toThrow(/element 1 differs: 0304 vs cpu 0305/);
    expect(() => expectSameBytes(Uint8Array.of(7), Uint8Array.of(7), 1, "same")).not.toThrow();
  });
});
