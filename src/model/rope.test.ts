import { describe, expect, test } from "bun:test";
import type { ModelConfig, RopeScaling } from "./config.ts";
import { ropeCosSinTable, ropeInvFreq } from "./rope.ts";

function config(headDim: number, ropeTheta: number, rope: RopeScaling): ModelConfig {
  return {
    architecture: "LlamaForCausalLM",
    hiddenSize: headDim * 4,
    intermediateSize: headDim * 8,
    numLayers: 1,
    numHeads: 4,
    numKvHeads: 4,
    headDim,
    vocabSize: 32,
    rmsNormEps: 1e-5,
    ropeTheta,
    rope,
    maxPositionEmbeddings: 131072,
    tieWordEmbeddings: false,
    qkvBias: false,
    dtype: "float32",
    quantization: null,
    kvCacheScales: false,
    bosTokenId: null,
    eosTokenIds: [],
  };
}

const LLAMA3 = { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } as const;

// Reference in float64, written from the formulas (not from rope.ts):
//   f_i = theta^(-2i/D), i < D/2
//   llama3: wavelength w = 2π / f; with L = original max positions, l = low, h = high factor:
//     w < L/h -> f;  w > L/l -> f / factor;  else mu = (L/w - l) / (h - l), (1 - mu) f / factor + mu f
function defaultReference(theta: number, d: number): number[] {
  return Array.from({ length: d / 2 }, (_, i) => theta ** (-(2 * i) / d));
}
type Region = "high" | "low" | "blend";
function llama3Reference(theta: number, d: number): { f: number; region: Region }[] {
  const { factor, lowFreqFactor: l, highFreqFactor: h, originalMaxPositionEmbeddings: L } = LLAMA3;
  return defaultReference(theta, d).map((f) => {
    const w = (2 * Math.PI) / f;
    if (w < L / h) return { f, region: "high" };
    if (w > L / l) return { f: f / factor, region: "low" };
    const mu = (L / w - l) / (h - l);
    return { f: ((1 - mu) * f) / factor + mu * f, region: "blend" };
  });
}

function expectRelClose(actual: ArrayLike<number>, expected: number[], rel: number): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!;
    expect(Math.abs(actual[i]! - e)).toBeLessThanOrEqual(rel * Math.abs(e));
  }
}

describe("ropeInvFreq", () => {
  test("default: theta^(-2i/D), float32 precision", () => {
    const inv = ropeInvFreq(config(64, 10000, { type: "default" }));
    expectRelClose(inv, defaultReference(10000, 64), 1e-6);
    for (const v of inv) expect(Math.fround(v)).toBe(v);
  });

  test("llama3 (Llama 3.1 8B): matches the float64 formula in all three bands", () => {
    const reference = llama3Reference(500000, 128);
    // The check only means something if every branch of the formula is exercised.
    for (const region of ["high", "low", "blend"] as const) {
      expect(reference.filter((r) => r.region === region).length).toBeGreaterThan(0);
    }
    expectRelClose(ropeInvFreq(config(128, 500000, LLAMA3)), reference.map((r) => r.f), 1e-6);
  });

  test("linear: default divided by the factor", () => {
    const inv = ropeInvFreq(config(32, 10000, { type: "linear", factor: 4 }));
    expectRelClose(inv, defaultReference(10000, 32).map((f) => f / 4), 1e-6);
  });
});

describe("ropeCosSinTable", () => {
  test("row p is cos(p f) for the first half, sin(p f) for the second", () => {
    const cfg = config(16, 10000, { type: "default" });
    const positions = 40;
    const table = ropeCosSinTable(cfg, positions);
    expect(table.length).toBe(positions * 16);
    const f = defaultReference(10000, 16);
    for (let p = 0; p < positions; p++) {
      for (let i = 0; i < 8; i++) {
        // float32 frequencies and angles put up to ~p ulp of error in the angle
        const tol = 1e-6 + p * 2 ** -22;
        expect(Math.abs(table[p * 16 + i]! - Math.cos(p * f[i]!))).toBeLessThanOrEqual(tol);
        expect(Math.abs(table[p * 16 + 8 + i]! - Math.sin(p * f[i]!))).toBeLessThanOrEqual(tol);
      }
    }
  });

  test("angles are rounded to float32 as transformers does, which shows at long positions", () => {
    const cfg = config(128, 500000, LLAMA3);
    const positions = 20_000;
    const table = ropeCosSinTable(cfg, positions);
    const f = ropeInvFreq(cfg);
    const p = positions - 1;
    let maxVsFloat64 = 0;
    for (let i = 0; i < 64; i++) {
      const angle32 = Math.fround(p * f[i]!);
      expect(Math.abs(table[p * 128 + i]! - Math.cos(angle32))).toBeLessThanOrEqual(1e-6);
      expect(Math.abs(table[p * 128 + 64 + i]! - Math.sin(angle32))).toBeLessThanOrEqual(1e-6);
      maxVsFloat64 = Math.max(maxVsFloat64, Math.abs(table[p * 128 + i]! - Math.cos(p * f[i]!)));
    }
    expect(maxVsFloat64).toBeGreaterThan(1e-4);
  });

  test("rejects a bad position count", () => {
    expect(() => ropeCosSinTable(config(8, 10000, { type: "default" }), -1)).toThrow(RangeError);
  });
});
