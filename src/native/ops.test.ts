// Row-wise ops of the cpu backend against float64 references: embedding, rmsnorm, silu_mul,
// gather_rows, all_reduce, rope_write_kv.
import { afterAll, describe, expect, test } from "bun:test";
import { openBackend } from "./backend.ts";
import { backendError, cosSinTable, downloadF32, encodeWeights, poisoned, randomF32, relativeError, sameBits, seededRandom, upload } from "./testing.ts";
import { fp8Encode } from "./fp8-reference.ts";
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

/**
 * HF rotate-half rotation of one head of `src` at `at`, in f32 as vllmd.h specifies it: each
 * product rounded to f32, then the difference or sum rounded (a double holds an f32 product
 * exactly, and rounding a double sum of two f32 values to f32 is the correctly rounded f32 sum).
 */
function rotateF32(src: Float32Array, at: number, dim: number, table: Float32Array, pos: number): Float32Array {
  const [half, f, out] = [dim / 2, Math.fround, new Float32Array(dim)];
  for (let i = 0; i < half; i++) {
    const [x1, x2] = [src[at + i]!, src[at + half + i]!];
    const [c, s] = [table[pos * dim + i]!, table[pos * dim + half + i]!];
    out[i] = f(f(x1 * c) - f(x2 * s));
    out[half + i] = f(f(x2 * c) + f(x1 * s));
  }
  return out;
}

interface RopeGeometry {
  T: number;
  H: number;
  KVH: number;
  D: number;
  B: number;
  blocks: number;
  maxPos: number;
}

/** The expected q_out and caches of a call on fused rows qkv [T, (H + 2*KVH)*D] over NaN caches. */
function ropeExpected(g: RopeGeometry, qkv: Float32Array, pos: Int32Array, slots: Int32Array, table: Float32Array) {
  const row = (g.H + 2 * g.KVH) * g.D;
  const qOut = new Float32Array(g.T * g.H * g.D);
  const cacheLen = g.blocks * g.KVH * g.B * g.D;
  const [kCache, vCache] = [new Float32Array(cacheLen).fill(Number.NaN), new Float32Array(cacheLen).fill(Number.NaN)];
  for (let t = 0; t < g.T; t++) {
    const p = pos[t]!;
    for (let h = 0; h < g.H; h++) qOut.set(rotateF32(qkv, t * row + h * g.D, g.D, table, p), (t * g.H + h) * g.D);
    const slot = slots[t]!;
    if (slot < 0) continue;
    for (let h = 0; h < g.KVH; h++) {
      const at = ((Math.floor(slot / g.B) * g.KVH + h) * g.B + (slot % g.B)) * g.D;
      const k = t * row + (g.H + h) * g.D;
      kCache.set(rotateF32(qkv, k, g.D, table, p), at);
      vCache.set(qkv.subarray(k + g.KVH * g.D, k + g.KVH * g.D + g.D), at);
    }
  }
  return { qOut, kCache, vCache };
}

describe("rope_write_kv (fused q/k/v rows)", () => {
  const geometries: RopeGeometry[] = [
    { T: 5, H: 3, KVH: 1, D: 10, B: 3, blocks: 4, maxPos: 50 }, // odd head count, odd D/2
    { T: 7, H: 4, KVH: 2, D: 16, B: 4, blocks: 3, maxPos: 40 },
    { T: 1, H: 2, KVH: 2, D: 2, B: 1, blocks: 2, maxPos: 3 },
  ];
  for (const g of geometries)
    test(`T=${g.T} H=${g.H} KVH=${g.KVH} D=${g.D} B=${g.B}: q_out, caches bit-exact; a skipped slot; qkv untouched`, () => {
      const rand = seededRandom(g.T * 31 + g.D);
      const qkv = randomF32(g.T * (g.H + 2 * g.KVH) * g.D, rand, 2);
      const pos = Int32Array.from({ length: g.T }, (_, t) => (t === 0 ? g.maxPos - 1 : (t * 17) % g.maxPos));
      const nSlots = g.blocks * g.B;
      // the last slot, then others spread over the cache; one token (the last if T > 1) not cached
      const slots = Int32Array.from({ length: g.T }, (_, t) => (t === 0 ? nSlots - 1 : (t * 5) % (nSlots - 1)));
      if (g.T > 1) slots[g.T - 1] = -1;
      const table = cosSinTable(g.maxPos, g.D, 10000);
      const cacheLen = g.blocks * g.KVH * g.B * g.D;
      const [xb, pb, tb, sb] = [upload(be, qkv), upload(be, pos), upload(be, table), upload(be, slots)];
      const [qOut, kc, vc] = [poisoned(be, g.T * g.H * g.D), poisoned(be, cacheLen), poisoned(be, cacheLen)];
      be.ropeWriteKv(qOut, xb, pb, tb, sb, kc, vc, g.T, g.H, g.KVH, g.D, g.B, f32);

      const want = ropeExpected(g, qkv, pos, slots, table);
      expect(sameBits(downloadF32(be, qOut, want.qOut.length), want.qOut)).toBe(true);
      expect(sameBits(downloadF32(be, kc, cacheLen), want.kCache)).toBe(true);
      expect(sameBits(downloadF32(be, vc, cacheLen), want.vCache)).toBe(true);
      expect(want.kCache.some((x) => !Number.isNaN(x))).toBe(true); // the test did write somewhere
      expect(sameBits(downloadF32(be, xb, qkv.length), qkv)).toBe(true);
      for (const b of [xb, pb, tb, sb, qOut, kc, vc]) be.free(b);
    });

  test("an e4m3 cache holds the codes of k / k_scale and v / v_scale; bad scales and kv dtypes are refused", () => {
    const g = geometries[1]!, rand = seededRandom(77), kScale = Math.fround(0.37), vScale = Math.fround(1.9);
    const qkv = randomF32(g.T * (g.H + 2 * g.KVH) * g.D, rand, 2);
    const pos = Int32Array.from({ length: g.T }, (_, t) => (t * 7) % g.maxPos), slots = Int32Array.from({ length: g.T }, (_, t) => t);
    const table = cosSinTable(g.maxPos, g.D, 10000), cacheLen = g.blocks * g.KVH * g.B * g.D;
    const [xb, pb, tb, sb] = [upload(be, qkv), upload(be, pos), upload(be, table), upload(be, slots)];
    const [qOut, kc, vc] = [poisoned(be, g.T * g.H * g.D), be.alloc(cacheLen), be.alloc(cacheLen)];
    const fp8 = { dtype: DType.fp8E4m3, kScale, vScale };
    be.ropeWriteKv(qOut, xb, pb, tb, sb, kc, vc, g.T, g.H, g.KVH, g.D, g.B, f32, fp8);
    const want = ropeExpected(g, qkv, pos, slots, table), [kGot, vGot] = [new Uint8Array(cacheLen), new Uint8Array(cacheLen)];
    be.copyToHost(kc, 0, kGot);
    be.copyToHost(vc, 0, vGot);
    for (let t = 0; t < g.T; t++)
      for (let i = 0; i < g.KVH * g.D; i++) {
        const at = ((Math.floor(t / g.B) * g.KVH + Math.floor(i / g.D)) * g.B + (t % g.B)) * g.D + (i % g.D);
        expect(kGot[at]).toBe(fp8Encode(Math.fround(want.kCache[at]! / kScale)));
        expect(vGot[at]).toBe(fp8Encode(Math.fround(want.vCache[at]! / vScale)));
      }
    const call = (kv: { dtype: DType; kScale: number; vScale: number }) => () => be.ropeWriteKv(qOut, xb, pb, tb, sb, kc, vc, g.T, g.H, g.KVH, g.D, g.B, f32, kv);
    expect(call({ ...fp8, kScale: 0 })).toThrow(/finite scales > 0, got k_scale 0/);
    expect(call({ ...fp8, vScale: NaN })).toThrow(/finite scales > 0/);
    expect(call({ dtype: DType.bf16, kScale: 1, vScale: 1 })).toThrow(/kv_dtype 2, expected act_dtype \(0\) or VD_FP8_E4M3 \(4\)/);
    for (const b of [xb, pb, tb, sb, qOut, kc, vc]) be.free(b);
  });

  /** One token, one head of each kind, D = 8, B = 2: buffers and a call with chosen pos and slot. */
  function oneToken() {
    const [D, B] = [8, 2];
    const [qkv, table] = [randomF32(3 * D, seededRandom(1)), cosSinTable(4, D, 10000)];
    const bufs = {
      qkv: upload(be, qkv), qOut: poisoned(be, D), table: upload(be, table),
      kc: poisoned(be, 2 * B * D), vc: poisoned(be, 2 * B * D), // 2 blocks, 1 kv head
    };
    const call = (p: number, slot: number, qOut = bufs.qOut, qkvBuf = bufs.qkv, act: DType = f32) => {
      const [pb, sb] = [upload(be, Int32Array.of(p)), upload(be, Int32Array.of(slot))];
      try {
        be.ropeWriteKv(qOut, qkvBuf, pb, bufs.table, sb, bufs.kc, bufs.vc, 1, 1, 1, D, B, act);
      } finally {
        be.free(pb);
        be.free(sb);
      }
    };
    const untouched = () =>
      [bufs.qOut, bufs.kc, bufs.vc].every((b) => downloadF32(be, b, D).every(Number.isNaN)) &&
      sameBits(downloadF32(be, bufs.qkv, 3 * D), qkv);
    const free = () => Object.values(bufs).forEach((b) => be.free(b));
    return { D, qkv, table, bufs, call, untouched, free };
  }

  test("a position past the table or a slot past the cache is rejected before any write", () => {
    const c = oneToken();
    expect(backendError(() => c.call(4, 0)).message).toMatch(/positions\[0\] = 4/);
    expect(backendError(() => c.call(0, 4)).message).toMatch(/slot_mapping\[0\] = 4/);
    expect(c.untouched()).toBe(true);
    c.call(3, 3); // the last row and the last slot are fine
    expect(downloadF32(be, c.bufs.qOut, c.D).some(Number.isNaN)).toBe(false);
    c.free();
  });

  test("q_out overlapping qkv is rejected; q_out right after qkv in the same allocation is fine", () => {
    const c = oneToken();
    const [D, fb] = [c.D, 4];
    const whole = be.alloc(4 * D * fb); // the fused row in [0, 3D), room for one q row after it
    be.copy(whole, 0, c.bufs.qkv, 0, 3 * D * fb);
    const views = [0, fb, 2 * D * fb + fb, 3 * D * fb].map((at) => be.view(whole, at, (at === 0 ? 3 * D : D) * fb));
    const [fused, early, late, after] = views as [number, number, number, number];
    expect(backendError(() => c.call(1, 0, c.bufs.qkv, c.bufs.qkv)).message).toMatch(/q_out overlaps qkv/);
    for (const q of [early, late]) expect(backendError(() => c.call(1, 0, q, fused)).message).toMatch(/q_out overlaps qkv/);
    expect(c.untouched()).toBe(true);
    expect(sameBits(downloadF32(be, fused, 3 * D), c.qkv)).toBe(true);
    c.call(1, 0, after, fused); // adjacent, not overlapping
    expect(sameBits(downloadF32(be, after, D), rotateF32(c.qkv, 0, D, c.table, 1))).toBe(true);
    expect(sameBits(downloadF32(be, fused, 3 * D), c.qkv)).toBe(true);
    for (const v of views) be.free(v);
    be.free(whole);
    c.free();
  });

  test("a qkv without room for v, and a non-f32 dtype on cpu, are rejected", () => {
    const c = oneToken();
    const short = be.view(c.bufs.qkv, 0, 2 * c.D * 4); // q | k only: the unfused layout
    const e = backendError(() => c.call(1, 0, c.bufs.qOut, short));
    expect(e.status).toBe(Status.invalidArgument);
    expect(e.message).toMatch(/vd_rope_write_kv\(qkv\).*needs 96/);
    be.free(short);
    expect(backendError(() => c.call(1, 0, c.bufs.qOut, c.bufs.qkv, DType.bf16)).status).toBe(Status.unsupported);
    expect(c.untouched()).toBe(true);
    c.free();
  });
});
