// Integer weights on the cpu backend: vd_repack_int reads the GPTQ, AWQ and compressed-tensors
// layouts as AutoGPTQ, AutoAWQ and llm-compressor define them (int-weights-reference.ts packs them),
// and vd_gemm_int matches a float64 product of the dequantized weights.
import { afterAll, describe, expect, test } from "bun:test";
import { openBackend } from "./backend.ts";
import { actOrderPermutation } from "../model/act-order.ts";
import { dequantizeInt, groupsOf, packAwq, packCompressed, packGptq, type IntLayer } from "./int-weights-reference.ts";
import { backendError, downloadF32, poisoned, randomF32, relativeError, seededRandom, upload } from "./testing.ts";
import { DType, PackLayout, type IntWeights } from "./types.ts";

const be = openBackend("cpu");
afterAll(() => be.destroy());

/** A layer of random codes; with `actOrder`, its groups formed along a random order of the inputs. */
function randomLayer(bits: 4 | 8, groupSize: number, n: number, k: number, seed: number, actOrder = false): IntLayer {
  const rand = seededRandom(seed), unit = () => (rand() + 1) / 2, G = groupsOf(k, groupSize), top = 2 ** bits;
  const order = Int32Array.from({ length: k }, (_, c) => c).sort(() => unit() - 0.5);
  const gIdx = new Int32Array(k);
  order.forEach((c, i) => (gIdx[c] = Math.floor(i / groupSize)));
  return {
    bits, groupSize, n, k, gIdx: actOrder ? gIdx : undefined,
    codes: Uint8Array.from({ length: n * k }, () => Math.floor(unit() * top)),
    zeros: Uint8Array.from({ length: n * G }, () => 1 + Math.floor(unit() * (top - 1))), // 0 cannot be stored minus one
    scales: Float32Array.from({ length: n * G }, () => Math.fround(0.001 + unit() * 0.02)),
  };
}

/**
 * Repacks `l` on the backend from its checkpoint tensors in `layout` (scales as f16 when asked),
 * through act-order's permutation when `l` has one; the caller frees.
 */
function repacked(l: IntLayer, scaleDtype: DType = DType.f32, layout: PackLayout = PackLayout.gptq): IntWeights & { bufs: number[]; perm: Int32Array | null } {
  const p = layout === PackLayout.awq ? packAwq(l) : packGptq(l, layout === PackLayout.gptq), G = groupsOf(l.k, l.groupSize);
  const scales = scaleDtype === DType.f16 ? new Uint16Array(new Float16Array(p.scales).buffer) : p.scales;
  const qweight = layout === PackLayout.rows ? packCompressed(l).packed : p.qweight; // rows: zeros and scales as gptq_v2's
  const t = { qweight: upload(be, qweight), qzeros: upload(be, p.qzeros), scales: upload(be, scales), scaleDtype };
  const perm = l.gIdx ? actOrderPermutation(l.gIdx, l.groupSize, "test", "g_idx") : null;
  const w: IntWeights = {
    w: be.alloc((l.n * l.k * l.bits) / 8), scales: be.alloc(l.n * G * 4), zeros: be.alloc(l.n * G * 4), bits: l.bits, groupSize: l.groupSize,
    kPerm: perm ? upload(be, perm) : undefined,
  };
  be.repackInt(w, t, l.n, l.k, layout);
  return { ...w, perm, bufs: [t.qweight, t.qzeros, t.scales, w.w, w.scales, w.zeros, ...(w.kPerm ? [w.kPerm] : [])] };
}

function productRef(x: Float32Array, w: Float32Array, bias: Float32Array | null, m: number, n: number, k: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = bias ? bias[j]! : 0;
      for (let p = 0; p < k; p++) s += x[i * k + p]! * w[j * k + p]!;
      out[i * n + j] = s;
    }
  return out;
}

describe("vd_repack_int", () => {
  const CASES = [
    [4, 32, PackLayout.gptq, "gptq, zeros minus one"], [4, 128, PackLayout.gptqV2, "gptq_v2, zeros as they are"],
    [8, 16, PackLayout.gptq, "gptq, zeros minus one"], [4, 32, PackLayout.awq, "AWQ, interleaved channels"], [4, 96, PackLayout.awq, "AWQ, one group"],
    [4, 32, PackLayout.gptq, "gptq act-order"], [8, 40, PackLayout.gptqV2, "gptq_v2 act-order, a shorter last group"],
    [4, 32, PackLayout.rows, "rows (compressed-tensors) act-order"], [8, 16, PackLayout.rows, "rows (compressed-tensors)"],
  ] as const;
  for (const [bits, groupSize, layout, name] of CASES)
    test(`${bits}-bit, group ${groupSize}, ${name}: codes, scales and zeros land per row`, () => {
      const l = randomLayer(bits, groupSize, 24, 96, bits * 100 + groupSize + layout, name.includes("act-order"));
      const r = repacked(l, DType.f16, layout), G = groupsOf(l.k, l.groupSize);
      const zeros = downloadF32(be, r.zeros, l.n * G), scales = downloadF32(be, r.scales, l.n * G);
      expect(Array.from(zeros)).toEqual(Array.from(l.zeros));
      expect(Array.from(scales)).toEqual(Array.from(new Float32Array(new Float16Array(l.scales)))); // stored as f16
      const words = new Uint32Array((l.n * l.k * bits) / 32);
      be.copyToHost(r.w, 0, words);
      const per = 32 / bits;
      for (let row = 0; row < l.n; row++)
        for (let c = 0; c < l.k; c++) {
          const input = r.perm ? r.perm[c]! : c; // position c holds the code of this input
          expect((words[row * (l.k / per) + Math.floor(c / per)]! >>> ((c % per) * bits)) & (2 ** bits - 1)).toBe(l.codes[row * l.k + input]!);
        }
      for (const b of r.bufs) be.free(b);
    });

  test("layouts and the shapes each allows are checked by name", () => {
    const err = (bits: 4 | 8, groupSize: number, n: number, k: number, layout: number) => {
      const small = be.alloc(4096), w = { w: small, scales: small, zeros: small, bits, groupSize };
      try {
        return backendError(() => be.repackInt(w, { qweight: small, qzeros: small, scales: small, scaleDtype: DType.f32 }, n, k, layout as PackLayout)).message;
      } finally {
        be.free(small);
      }
    };
    expect(err(4, 32, 8, 64, 4)).toContain("layout 4");
    expect(err(8, 32, 8, 64, PackLayout.awq)).toContain("4-bit only");
    expect(err(4, 48, 8, 64, PackLayout.awq)).toContain("multiple of group_size");
    expect(err(4, 32, 12, 64, PackLayout.gptq)).toContain("n 12 is not a multiple of 8");
  });
});

describe("vd_gemm_int", () => {
  const CASES = [[4, 32, 1, 40, 128, false], [4, 128, 5, 64, 256, false], [4, 48, 3, 16, 72, false], [8, 64, 17, 24, 192, false], [4, 1000, 2, 8, 64, false],
    [4, 32, 3, 40, 128, true], [8, 48, 9, 16, 72, true]] as const;
  for (const [bits, groupSize, m, n, k, actOrder] of CASES)
    test(`${bits}-bit, group ${groupSize} (last group ${k % groupSize || groupSize})${actOrder ? ", act-order" : ""}, m=${m} n=${n} k=${k}: the dequantized product`, () => {
      const l = randomLayer(bits, groupSize, n, k, m * 31 + n + k + bits, actOrder);
      const r = repacked(l), rand = seededRandom(k);
      const x = randomF32(m * k, rand), bias = randomF32(n, rand);
      const [xb, bb] = [upload(be, x), upload(be, bias)];
      const out = poisoned(be, m * n);
      be.gemmInt(out, xb, r, bb, m, n, k, DType.f32);
      expect(relativeError(downloadF32(be, out, m * n), productRef(x, dequantizeInt(l), bias, m, n, k))).toBeLessThan(1e-5);
      for (const b of [...r.bufs, xb, bb, out]) be.free(b);
    });

  test("bits, group sizes and sizes are checked by name", () => {
    const small = be.alloc(16), w = { w: small, scales: small, zeros: small, groupSize: 32 };
    expect(backendError(() => be.gemmInt(small, small, { ...w, bits: 3 as 4 }, 0, 1, 8, 32, DType.f32)).message).toContain("bits 3");
    expect(backendError(() => be.gemmInt(small, small, { ...w, bits: 4, groupSize: 0 }, 0, 1, 8, 32, DType.f32)).message).toContain("group_size");
    expect(backendError(() => be.gemmInt(small, small, { ...w, bits: 4 }, 0, 1, 8, 30, DType.f32)).message).toContain("not a multiple of 8");
    expect(backendError(() => be.gemmInt(small, small, { ...w, bits: 4 }, 0, 1, 8, 32, DType.f32)).message).toContain("vd_gemm_int(out)");
    be.free(small);
    const l = randomLayer(4, 8, 8, 16, 3, true), r = repacked(l), x = upload(be, new Float32Array(16)), out = be.alloc(8 * 4);
    be.copyFromHost(r.kPerm!, 0, Int32Array.from({ length: 16 }, (_, c) => (c === 5 ? 4 : c)));
    expect(backendError(() => be.gemmInt(out, x, r, 0, 1, 8, 16, DType.f32)).message).toContain("k_perm[5] = 4 is not part of a permutation of 0..15");
    for (const b of [...r.bufs, x, out]) be.free(b);
  });
});
