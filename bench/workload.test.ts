import { describe, expect, test } from "bun:test";
import { makeWorkload, MIXED_WORKLOAD, mulberry32, readWorkloadFile, workloadFromFlags, workloadJson, type WorkloadParams } from "./workload.ts";

const small: WorkloadParams = { n: 300, seed: 7, promptMin: 1, promptMax: 3, outputMin: 5, outputMax: 6, tokenMin: 10, tokenMax: 13 };

describe("mulberry32", () => {
  test("matches an independent Python implementation of the same steps", () => {
    // Values from a from-scratch Python port (32-bit masks instead of Math.imul), so the documented
    // algorithm, not just this code, produced them.
    const a = mulberry32(0), b = mulberry32(12345);
    expect([a(), a(), a()]).toEqual([0.26642920868471265, 0.0003297457005828619, 0.2232720274478197]);
    expect([b(), b()]).toEqual([0.9797282677609473, 0.3067522644996643]);
  });

  test("stays in [0, 1)", () => {
    const r = mulberry32(99);
    for (let i = 0; i < 10000; i++) {
      const x = r();
      expect(x >= 0 && x < 1).toBe(true);
    }
  });
});

describe("makeWorkload", () => {
  test("the same params give the same requests; another seed gives others", () => {
    const p = { ...MIXED_WORKLOAD, n: 20 };
    expect(makeWorkload(p)).toEqual(makeWorkload(p));
    expect(makeWorkload({ ...p, seed: 1 })).not.toEqual(makeWorkload(p));
  });

  test("a shorter run is a prefix of a longer one (the baseline may take the first 128)", () => {
    const long = makeWorkload({ ...MIXED_WORKLOAD, n: 50 });
    expect(makeWorkload({ ...MIXED_WORKLOAD, n: 10 })).toEqual(long.slice(0, 10));
  });

  test("the issue's 500 requests respect every range and use the whole of it", () => {
    const reqs = makeWorkload(MIXED_WORKLOAD);
    expect(reqs.length).toBe(500);
    const lens = reqs.map((r) => r.promptTokenIds.length), outs = reqs.map((r) => r.maxTokens);
    const ids = reqs.flatMap((r) => r.promptTokenIds);
    expect(Math.min(...lens)).toBeGreaterThanOrEqual(64);
    expect(Math.max(...lens)).toBeLessThanOrEqual(1024);
    expect(Math.min(...outs)).toBeGreaterThanOrEqual(16);
    expect(Math.max(...outs)).toBeLessThanOrEqual(512);
    expect(ids.every((t) => Number.isInteger(t) && t >= 1000 && t < 100000)).toBe(true);
    // Uniform: the means sit near the midpoints (544 and 264; sd of the mean is ~12 and ~6.4).
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(Math.abs(mean(lens) - 544)).toBeLessThan(50);
    expect(Math.abs(mean(outs) - 264)).toBeLessThan(26);
  });

  test("both ends of each range occur (inclusive lengths, half-open token ids)", () => {
    const reqs = makeWorkload(small);
    expect(new Set(reqs.map((r) => r.promptTokenIds.length))).toEqual(new Set([1, 2, 3]));
    expect(new Set(reqs.map((r) => r.maxTokens))).toEqual(new Set([5, 6]));
    expect(new Set(reqs.flatMap((r) => r.promptTokenIds))).toEqual(new Set([10, 11, 12]));
  });

  test("bad params are refused with the field's name", () => {
    expect(() => makeWorkload({ ...small, n: 0 })).toThrow(/n must be at least 1/);
    expect(() => makeWorkload({ ...small, promptMax: 0 })).toThrow(/promptMin <= promptMax/);
    expect(() => makeWorkload({ ...small, outputMin: 0 })).toThrow(/outputMin/);
    expect(() => makeWorkload({ ...small, tokenMax: 10 })).toThrow(/tokenMin < tokenMax/);
    expect(() => makeWorkload({ ...small, seed: 1.5 })).toThrow(/seed must be an integer/);
  });
});

describe("the workload file", () => {
  test("round-trips through the JSON the python baseline reads", () => {
    const reqs = makeWorkload(small);
    const text = workloadJson(small, reqs);
    const raw = JSON.parse(text);
    expect(raw.requests[0]).toEqual({ prompt_token_ids: reqs[0]!.promptTokenIds, max_tokens: reqs[0]!.maxTokens });
    expect(readWorkloadFile(text)).toEqual({ params: small, requests: reqs });
  });

  test("a file without requests is refused", () => {
    expect(() => readWorkloadFile('{"workload": {}}')).toThrow(/expected \{workload, requests\}/);
  });
});

describe("workloadFromFlags", () => {
  test("defaults to the issue's workload and takes overrides", () => {
    expect(workloadFromFlags({})).toEqual(MIXED_WORKLOAD);
    expect(workloadFromFlags({ n: "8", "token-max": "384" })).toEqual({ ...MIXED_WORKLOAD, n: 8, tokenMax: 384 });
  });

  test("a flag that is not an integer is refused", () => {
    expect(() => workloadFromFlags({ n: "ten" })).toThrow(/--n expects an integer, got 'ten'/);
    expect(() => workloadFromFlags({ seed: "" })).toThrow(/--seed/);
  });
});
