// Row-wise ops of the cpu backend against float64 references: embedding, rmsnorm, silu_mul,
// gather_rows, all_reduce, rope_write_kv.
import { afterAll, describe, expect, test } from "bun:test";
import { openBackend } from "./backend.ts";
import { cosSinTable, downloadF32, encodeWeights, poisoned, randomF32, relativeError, sameBits, seededRandom, upload } from "./testing.ts";
import { BackendError, DType, Status } from "./types.ts";

const be = openBackend("cpu");
afterAll(() => be.destroy());
const f32 = DType.f32;

describe("embedding", () => {
  for (const wd of [DType.f32, DType.bf16, DType.f16])
    test(`table dtype ${wd}`, () => {
      const [vocab, hidden] = [50, 24];
      const table = encodeWeights(randomF32(vocab * hidden, seededRandom(wd)), wd);
      const ids = Int32Array.from([3, 0, 49, 3, 17]);
      const [tb, ib, out] = [upload(be, table.bytes), upload(be, ids), poisoned(be, ids.length * hidden)];
      be.embedding(out, tb, ib, ids.length, hidden, vocab, f32, wd);
      const ref = Array.from(ids).flatMap((id) => Array.from(table.exact.subarray(id * hidden, (id + 1) * hidden)));
      expect(downloadF32(be, out, ids.length * hidden)).toEqual(Float32Array.from(ref));
      be.copyFromHost(ib, 4, Int32Array.of(50));
      expect(() => be.embedding(out, tb, ib, ids.length, hidden, vocab, f32, wd)).toThrow(/token_ids\[1\] = 50/);
      for (const b of [tb, ib, out]) be.free(b);
    });
});

function rmsnormRef(x: Float32Array, w: Float32Array, rows: number, hidden: number, eps: number): Float64Array {
  const out = new Float64Array(rows * hidden);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < hidden; i++) ss += (x[r * hidden + i] as number) ** 2;
    const inv = 1 / Math.sqrt(ss / hidden + eps);
    for (let i = 0; i < hidden; i++) out[r * hidden + i] = (x[r * hidden + i] as number) * inv * (w[i] as number);
  }
  return out;
}

describe("rmsnorm", () => {
  const [rows, hidden, eps] = [6, 67, 1e-6];
  for (const wd of [DType.f32, DType.bf16, DType.f16])
    test(`weight dtype ${wd}, without and with a residual, out aliasing x`, () => {
      const rand = seededRandom(40 + wd);
      const w = encodeWeights(randomF32(hidden, rand), wd);
      const [x, res] = [randomF32(rows * hidden, rand, 3), randomF32(rows * hidden, rand)];
      const [wb, xb, rb, out] = [upload(be, w.bytes), upload(be, x), upload(be, res), poisoned(be, rows * hidden)];
      be.rmsnorm(out, 0, xb, wb, rows, hidden, eps, f32, wd);
      expect(relativeError(downloadF32(be, out, rows * hidden), rmsnormRef(x, w.exact, rows, hidden, eps))).toBeLessThan(1e-6);

      be.rmsnorm(xb, rb, xb, wb, rows, hidden, eps, f32, wd); // residual += x; x = norm(residual)
      const sum = Float32Array.from(x, (v, i) => v + (res[i] as number));
      expect(downloadF32(be, rb, rows * hidden)).toEqual(sum);
      expect(relativeError(downloadF32(be, xb, rows * hidden), rmsnormRef(sum, w.exact, rows, hidden, eps))).toBeLessThan(1e-6);
      for (const b of [wb, xb, rb, out]) be.free(b);
    });
});

describe("silu_mul, gather_rows, all_reduce", () => {
  test("silu_mul", () => {
    const [rows, inter] = [5, 37];
    const g = randomF32(rows * 2 * inter, seededRandom(3), 6);
    const [gb, out] = [upload(be, g), poisoned(be, rows * inter)];
    be.siluMul(out, gb, rows, inter, f32);
    const ref = new Float64Array(rows * inter);
    for (let r = 0; r < rows; r++)
      for (let i = 0; i < inter; i++) {
        const [a, b] = [g[r * 2 * inter + i] as number, g[r * 2 * inter + inter + i] as number];
        ref[r * inter + i] = (a / (1 + Math.exp(-a))) * b;
      }
    expect(relativeError(downloadF32(be, out, rows * inter), ref)).toBeLessThan(1e-6);
    be.free(gb);
    be.free(out);
  });

  test("gather_rows picks rows in order, repeats allowed, and rejects a row past the end", () => {
    const [rows, cols] = [6, 9];
    const x = randomF32(rows * cols, seededRandom(8));
    const idx = Int32Array.from([5, 0, 5, 2]);
    const [xb, ib, out] = [upload(be, x), upload(be, idx), poisoned(be, idx.length * cols)];
    be.gatherRows(out, xb, ib, idx.length, cols, f32);
    const ref = Array.from(idx).flatMap((r) => Array.from(x.subarray(r * cols, (r + 1) * cols)));
    expect(downloadF32(be, out, idx.length * cols)).toEqual(Float32Array.from(ref));
    be.copyFromHost(ib, 0, Int32Array.of(6));
    expect(() => be.gatherRows(out, xb, ib, idx.length, cols, f32)).toThrow(/rows\[0\] = 6/);
    for (const b of [xb, ib, out]) be.free(b);
  });

  test("all_reduce over one rank leaves the buffer as it is", () => {
    const x = randomF32(10, seededRandom(2));
    const xb = upload(be, x);
    be.allReduce(xb, 10, f32);
    expect(sameBits(downloadF32(be, xb, 10), x)).toBe(true);
    expect(() => be.allReduce(xb, 11, f32)).toThrow(BackendError);
    be.free(xb);
  });
});


/** HF rotate-half rotation of every head of x [T, heads*dim] in float64. */
function ropeRef(x: Float32Array, pos: Int32Array, heads: number, dim: number, table: Float32Array): Float64Array {
  const out = new Float64Array(x.length);
  const half = dim / 2;
  for (let t = 0; t < pos.length; t++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < half; i++) {
        const base = (t * heads + h) * dim;
        const [x1, x2] = [x[base + i] as number, x[base + half + i] as number];
        const row = (pos[t] as number) * dim;
        const [c, s] = [table[row + i] as number, table[row + half + i] as number];
        out[base + i] = x1 * c - x2 * s;
        out[base + half + i] = x2 * c + x1 * s;
      }
  return out;
}

describe("rope_write_kv", () => {
  test("rotates q and k, writes k and v to their slots, skips negative slots", () => {
    const [T, H, KVH, D, B, blocks, maxPos] = [4, 4, 2, 16, 4, 3, 40];
    const rand = seededRandom(11);
    const [q, k, v] = [randomF32(T * H * D, rand), randomF32(T * KVH * D, rand), randomF32(T * KVH * D, rand)];
    const pos = Int32Array.from([0, 7, 39, 12]);
    const slots = Int32Array.from([5, -1, 11, 0]); // token 1 is not cached
    const table = cosSinTable(maxPos, D, 10000);
    const cacheLen = blocks * KVH * B * D;
    const bufs = [q, k, v, pos, table, slots].map((a) => upload(be, a));
    const [qb, kb, vb, pb, tb, sb] = bufs as [number, number, number, number, number, number];
    const [kc, vc] = [poisoned(be, cacheLen), poisoned(be, cacheLen)];
    be.ropeWriteKv(qb, kb, vb, pb, tb, sb, kc, vc, T, H, KVH, D, B, f32);

    const [qRef, kRef] = [ropeRef(q, pos, H, D, table), ropeRef(k, pos, KVH, D, table)];
    expect(relativeError(downloadF32(be, qb, q.length), qRef)).toBeLessThan(1e-6);
    const kGot = downloadF32(be, kb, k.length);
    expect(relativeError(kGot, kRef)).toBeLessThan(1e-6);

    const [kcGot, vcGot] = [downloadF32(be, kc, cacheLen), downloadF32(be, vc, cacheLen)];
    const written = new Set<number>();
    for (let t = 0; t < T; t++) {
      const slot = slots[t] as number;
      if (slot < 0) continue;
      for (let h = 0; h < KVH; h++) {
        const at = ((Math.floor(slot / B) * KVH + h) * B + (slot % B)) * D;
        const from = (t * KVH + h) * D;
        expect(kcGot.subarray(at, at + D)).toEqual(kGot.subarray(from, from + D));
        expect(vcGot.subarray(at, at + D)).toEqual(v.subarray(from, from + D));
        for (let d = 0; d < D; d++) written.add(at + d);
      }
    }
    expect(kcGot.every((x, i) => written.has(i) !== Number.isNaN(x))).toBe(true); // nothing else written
    for (const b of [...bufs, kc, vc]) be.free(b);
  });

  test("a position past the table or a slot past the cache is rejected before any write", () => {
    const [D, B] = [8, 2];
    const q = randomF32(D, seededRandom(1));
    const qb = upload(be, q);
    const kv = upload(be, new Float32Array(D));
    const table = upload(be, cosSinTable(4, D, 10000));
    const cache = poisoned(be, 2 * B * D); // 2 blocks, 1 kv head
    const call = (p: number, slot: number) => {
      const [pb, sb] = [upload(be, Int32Array.of(p)), upload(be, Int32Array.of(slot))];
      try {
        be.ropeWriteKv(qb, kv, kv, pb, table, sb, cache, cache, 1, 1, 1, D, B, f32);
      } finally {
        be.free(pb);
        be.free(sb);
      }
    };
    expect(() => call(4, 0)).toThrow(/positions\[0\] = 4/);
    expect(() => call(0, 4)).toThrow(/slot_mapping\[0\] = 4/);
    expect(sameBits(downloadF32(be, qb, D), q)).toBe(true);
    call(3, 3); // the last row and the last slot are fine
    let err: unknown;
    try {
      be.ropeWriteKv(qb, kv, kv, qb, table, qb, cache, cache, 1, 1, 1, D, B, DType.bf16);
    } catch (e) {
      err = e;
    }
    expect(err instanceof BackendError && err.status === Status.unsupported).toBe(true);
    for (const b of [qb, kv, table, cache]) be.free(b);
  });
});
