import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  computeFigures, decodeStepFloorMs, formatTable, kvBytesPerToken, layerMatmulParams, median, meetsTarget,
  prefillFlops, ratio, readParts, type ModelShape,
} from "./figures.ts";

const llama3_8b: ModelShape = {
  hiddenSize: 4096, intermediateSize: 14336, numLayers: 32, numHeads: 32, numKvHeads: 8, headDim: 128, vocabSize: 128256,
};

describe("model arithmetic", () => {
  test("the 8B's decoder matmuls plus embedding, lm_head and norms give its published 8,030,261,248 parameters", () => {
    const embedAndHead = 2 * llama3_8b.vocabSize * llama3_8b.hiddenSize;
    const norms = (2 * llama3_8b.numLayers + 1) * llama3_8b.hiddenSize;
    expect(layerMatmulParams(llama3_8b) + embedAndHead + norms).toBe(8_030_261_248);
  });

  test("the 8B keeps 128 KiB of bf16 K and V per token", () => {
    expect(kvBytesPerToken(llama3_8b)).toBe(128 * 1024);
    expect(kvBytesPerToken(llama3_8b, 4)).toBe(256 * 1024);
  });

  test("prefill FLOPs on a model small enough to count by hand", () => {
    // h=2, q=H*D=2, kv=KVH*D=1, I=3, one layer: q 4 + k,v 2*2 + o 4 + gate,up 2*6 + down 6 = 30 weights.
    const tiny: ModelShape = { hiddenSize: 2, intermediateSize: 3, numLayers: 1, numHeads: 2, numKvHeads: 1, headDim: 1, vocabSize: 5 };
    expect(layerMatmulParams(tiny)).toBe(30);
    const f = prefillFlops(tiny, [1, 2], 2);
    expect(f.tokens).toBe(3);
    expect(f.causalPairs).toBe(1 + 3);
    expect(f.matmul).toBe(2 * 30 * 3 + 2 * 2 * 5 * 2);
    expect(f.attention).toBe(4 * 1 * 2 * 1 * 4);
    expect(f.total).toBe(f.matmul + f.attention);
  });

  test("the issue's prefill (8 x 2048 on the 8B) is about 237.5 TFLOP, attention under 4% of it", () => {
    const f = prefillFlops(llama3_8b, Array(8).fill(2048), 8);
    expect(f.tokens).toBe(16384);
    expect(f.causalPairs).toBe((8 * 2048 * 2049) / 2);
    expect(f.matmul / 1e12).toBeCloseTo(228.7068, 3);
    expect(f.attention / 1e12).toBeCloseTo(8.8004, 3);
    expect(f.attention / f.total).toBeLessThan(0.04);
  });
});

describe("decode step floor", () => {
  test("GEMM time plus the KV read at copy bandwidth", () => {
    // 256 sequences x 512 tokens x 128 KiB = 16 GiB; at 2^34 B / 2^34 B/s that is exactly 1000 ms.
    expect(decodeStepFloorMs(7.4, 256 * 512, 128 * 1024, 2 ** 34)).toBeCloseTo(1007.4, 9);
    expect(decodeStepFloorMs(2, 0, 128 * 1024, 1e12)).toBe(2);
  });

  test("a bandwidth of zero is refused", () => {
    expect(() => decodeStepFloorMs(1, 1, 1, 0)).toThrow(/copy bandwidth must be positive/);
  });
});

describe("helpers", () => {
  test("median of odd and even counts, unsorted input", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(() => median([])).toThrow(/no values/);
  });

  test("ratio is null when a side is missing or the divisor is not positive", () => {
    expect(ratio(6, 3)).toBe(2);
    expect(ratio(null, 3)).toBeNull();
    expect(ratio(3, 0)).toBeNull();
    expect(ratio(3, undefined)).toBeNull();
  });

  test("targets point the right way", () => {
    expect(meetsTarget("decode_b1_tok_s", 150)).toBe(true);
    expect(meetsTarget("decode_b1_tok_s", 149.9)).toBe(false);
    expect(meetsTarget("decode_b256_step_vs_floor", 1.31)).toBe(false);
    expect(meetsTarget("startup_8b_s", 14)).toBe(true);
    expect(meetsTarget("startup_8b_s", null)).toBeNull();
  });
});

const floors = {
  copy: { bytes_per_s: 2 ** 34 }, gemm_peak: { flops_per_s: 800e12 }, kv_bytes_per_token: 128 * 1024,
  step_gemm: { "1": { total_ms_min: 6.1 }, "256": { total_ms_min: 7.4 } }, matmul_weight_bytes: 2 ** 27,
};

describe("computeFigures", () => {
  test("each figure from its parts", () => {
    const f = computeFigures({
      floors,
      hf: { b1: { tok_s_decode: 40, tok_s_e2e: 38 }, mixed: { output_tok_s: 300, requests: 128 } },
      decode: { decode_tok_s: 160, ttft_ms: 12 },
      "decode-fp8": { decode_tok_s: 280, ttft_ms: 20 },
      "decode-int4": { decode_tok_s: 440, ttft_ms: 15 },
      "torch-compiled": { decode_tok_s: 128 },
      mixed: { output_tok_s: 4500, complete: true, num_blocks: 1000 },
      "mixed-fp8": { output_tok_s: 6300, complete: true, num_blocks: 2000 },
      "decode-step": { step_ms_median: 1200, kv_tokens_mean: 256 * 512 },
      prefill: { flops_per_s: 500e12, tokens_per_s: 40000 },
      "prefill-fp8": { tokens_per_s: 64000, w8a8: true },
      "tp-scaling": { results: [
        { tp: 1, decode_tok_s: 200, all_reduce: [{ bytes: 8192, us: 1 }] },
        { tp: 2, decode_tok_s: 340, all_reduce: [{ bytes: 8192, us: 6.5 }, { bytes: 65536, us: 9 }] },
      ] },
      "tp-70b": { results: [{ tp: 2, decode_tok_s: 47.5 }] },
      startup: { ready_s_median: 9.5 },
    });
    expect(f.values.decode_b1_tok_s).toBe(160);
    expect(f.behind.decode_b1_vs_hf).toBe(4);
    expect(f.values.mixed_vs_hf_output_ratio).toBe(15);
    expect(f.behind.decode_b256_floor_ms).toBeCloseTo(1007.4, 9);
    expect(f.values.decode_b256_step_vs_floor).toBeCloseTo(1200 / 1007.4, 9);
    expect(f.values.prefill_fraction_of_gemm_peak).toBeCloseTo(0.625, 12);
    expect(f.values.startup_8b_s).toBe(9.5);
    expect(f.values.decode_b1_fp8_vs_bf16).toBe(1.75);
    expect(meetsTarget("decode_b1_fp8_vs_bf16", 1.75)).toBe(true);
    expect(f.values.decode_b1_int4_vs_bf16).toBe(2.75);
    expect(meetsTarget("decode_b1_int4_vs_bf16", 2.75)).toBe(false);
    expect(f.values.decode_b1_vs_compiled_torch).toBe(1.25);
    expect(f.values.mixed_fp8_vs_bf16).toBe(1.4);
    expect(f.values.prefill_fp8_vs_bf16).toBe(1.6);
    expect(f.values.decode_b1_tp2_vs_tp1).toBe(1.7);
    expect(f.values.all_reduce_8kib_us).toBe(6.5); // tp 2's, not tp 1's
    expect(f.values.decode_b1_70b_tp2_tok_s).toBe(47.5); // from tp-70b, not tp-scaling's tp 2
    expect(meetsTarget("decode_b1_70b_tp2_tok_s", 47.5)).toBe(true);
    expect(meetsTarget("mixed_fp8_vs_bf16", 1.4)).toBe(true);
    expect(f.behind.decode_b1_floor_tok_s).toBeCloseTo(floors.copy.bytes_per_s / floors.matmul_weight_bytes, 9);
    expect(f.values.decode_b1_fraction_of_floor).toBeCloseTo(160 / (floors.copy.bytes_per_s / floors.matmul_weight_bytes), 9);
    const table = formatTable(f);
    expect(table).toContain("mixed_vs_hf_output_ratio");
    expect(table).not.toContain("missing");
    expect(table).not.toContain("PARTIAL");
  });

  test("missing parts give null figures, a partial engine run is flagged", () => {
    const f = computeFigures({ floors, mixed: { output_tok_s: 4500, complete: false }, hf: { mixed: { output_tok_s: 300 } } });
    expect(f.values.decode_b1_tok_s).toBeNull();
    expect(f.values.decode_b256_step_vs_floor).toBeNull();
    expect(f.values.startup_8b_s).toBeNull();
    expect(f.values.mixed_vs_hf_output_ratio).toBe(15);
    const table = formatTable(f);
    expect(table).toContain("missing");
    expect(table).toContain("PARTIAL");
  });
});

describe("readParts", () => {
  test("reads the parts that are there and names the rest", () => {
    const dir = mkdtempSync(join(tmpdir(), "figures-"));
    writeFileSync(join(dir, "decode.json"), JSON.stringify({ decode_tok_s: 123 }));
    writeFileSync(join(dir, "prefill.json"), "{ truncated");
    const { parts, problems } = readParts(dir);
    expect(parts.decode).toEqual({ decode_tok_s: 123 });
    expect(parts.prefill).toBeUndefined();
    expect(problems.some((p) => p.startsWith("prefill:") && p.includes("not JSON"))).toBe(true);
    expect(problems.some((p) => p.startsWith("floors: no "))).toBe(true);
  });

  test("from several directories, the first that has a part gives it", () => {
    const [a, b] = [mkdtempSync(join(tmpdir(), "figures-a-")), mkdtempSync(join(tmpdir(), "figures-b-"))];
    writeFileSync(join(a, "decode.json"), JSON.stringify({ decode_tok_s: 1 }));
    writeFileSync(join(b, "decode.json"), JSON.stringify({ decode_tok_s: 2 }));
    writeFileSync(join(b, "prefill.json"), JSON.stringify({ tokens_per_s: 3 }));
    const { parts, problems } = readParts(a, b);
    expect([parts.decode?.decode_tok_s, parts.prefill?.tokens_per_s]).toEqual([1, 3]);
    expect(problems.some((p) => p.startsWith("prefill:"))).toBe(false);
  });
});
