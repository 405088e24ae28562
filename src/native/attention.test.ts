// vd_attention on the cpu backend: a mixed batch against a float64 reference, GQA, scattered
// block tables, partial last blocks, and bitwise batch invariance.
import { afterAll, describe, expect, test } from "bun:test";
import { openBackend } from "./backend.ts";
import { downloadF32, poisoned, randomF32, relativeError, sameBits, seededRandom, upload } from "./testing.ts";
import { fp8Decode, fp8Encode } from "./fp8-reference.ts";
import { DType, type KvFormat } from "./types.ts";

const be = openBackend("cpu");
afterAll(() => be.destroy());

interface Seq {
  qLen: number;
  seqLen: number;
  blocks: number[];
}
interface Geometry {
  H: number;
  KVH: number;
  D: number;
  B: number;
  numBlocks: number;
  maxBlocks: number;
  scale: number;
}

/** Attention for every query row of `seqs` in float64, straight from the definition. */
function attentionRef(g: Geometry, seqs: Seq[], q: Float32Array, kc: Float32Array, vc: Float32Array): Float64Array {
  const rowLen = g.H * g.D;
  const out = new Float64Array((q.length / rowLen) * rowLen);
  let row = 0;
  for (const s of seqs)
    for (let j = 0; j < s.qLen; j++, row++)
      for (let h = 0; h < g.H; h++) {
        const kvh = Math.floor(h / (g.H / g.KVH));
        const nKeys = s.seqLen - s.qLen + j + 1;
        const at = (p: number) => ((s.blocks[Math.floor(p / g.B)]! * g.KVH + kvh) * g.B + (p % g.B)) * g.D;
        const scores = Array.from({ length: nKeys }, (_, p) => {
          let dot = 0;
          for (let d = 0; d < g.D; d++) dot += q[row * rowLen + h * g.D + d]! * kc[at(p) + d]!;
          return dot * g.scale;
        });
        const max = Math.max(...scores);
        const weights = scores.map((x) => Math.exp(x - max));
        const total = weights.reduce((a, b) => a + b, 0);
        for (let d = 0; d < g.D; d++) {
          let acc = 0;
          for (let p = 0; p < nKeys; p++) acc += weights[p]! * vc[at(p) + d]!;
          out[row * rowLen + h * g.D + d] = acc / total;
        }
      }
  return out;
}

/** Runs vd_attention on the given cache for `seqs` and the query rows q (their rows, in order). */
function runAttention(g: Geometry, seqs: Seq[], q: Float32Array, kcBuf: number, vcBuf: number, kv?: KvFormat): Float32Array {
  const tables = new Int32Array(seqs.length * g.maxBlocks).fill(1 << 30); // unused entries are never read
  seqs.forEach((s, i) => tables.set(s.blocks, i * g.maxBlocks));
  const qStart = Int32Array.from([0, ...seqs.map((s) => s.qLen)]);
  for (let i = 1; i < qStart.length; i++) qStart[i] = qStart[i]! + qStart[i - 1]!;
  const nTokens = qStart[seqs.length]!;
  const meta = [tables, Int32Array.from(seqs, (s) => s.seqLen), qStart, q].map((a) => upload(be, a));
  const [tb, lb, sb, qb] = meta as [number, number, number, number];
  const out = poisoned(be, nTokens * g.H * g.D);
  be.attention(out, qb, kcBuf, vcBuf, tb, lb, sb, seqs.length, nTokens, g.H, g.KVH, g.D, g.B, g.maxBlocks, g.scale, DType.f32, kv);
  const got = downloadF32(be, out, nTokens * g.H * g.D);
  for (const b of [...meta, out]) be.free(b);
  return got;
}

// Blocks handed out in a scrambled order so block tables are not contiguous.
const scrambled = (n: number, rand: () => number): number[] =>
  Array.from({ length: n }, (_, i) => i).sort(() => rand());

// [q_len, seq_len]: a decode with one token in its last block, a prefill chunk whose first 6
// tokens are cached, a whole prompt, a decode ending on a block boundary, a first token.
const mixedBatch: [number, number][] = [[1, 9], [5, 11], [6, 6], [1, 8], [1, 1]];

function setup(g: Geometry, seed: number, shape = mixedBatch) {
  const rand = seededRandom(seed);
  const cacheLen = g.numBlocks * g.KVH * g.B * g.D;
  const [kc, vc] = [randomF32(cacheLen, rand), randomF32(cacheLen, rand)];
  const free = scrambled(g.numBlocks, rand);
  const take = (seqLen: number) => free.splice(0, Math.ceil(seqLen / g.B));
  const seqs: Seq[] = shape.map(([qLen, seqLen]) => ({ qLen, seqLen, blocks: take(seqLen) }));
  const nTokens = seqs.reduce((a, s) => a + s.qLen, 0);
  const q = randomF32(nTokens * g.H * g.D, rand, 2);
  return { kc, vc, seqs, q, kcBuf: upload(be, kc), vcBuf: upload(be, vc) };
}

const geometries: Geometry[] = [
  { H: 4, KVH: 2, D: 16, B: 4, numBlocks: 20, maxBlocks: 4, scale: 0.25 },
  { H: 3, KVH: 3, D: 12, B: 3, numBlocks: 24, maxBlocks: 5, scale: 0.3 }, // no GQA, D not a multiple of 8
  { H: 8, KVH: 1, D: 8, B: 16, numBlocks: 6, maxBlocks: 1, scale: 1 }, // multi-query, one block each
];

describe("attention", () => {
  geometries.forEach((g, gi) =>
    test(`mixed batch matches the reference (H=${g.H} KVH=${g.KVH} D=${g.D} B=${g.B})`, () => {
      const { kc, vc, seqs, q, kcBuf, vcBuf } = setup(g, 100 + gi);
      const got = runAttention(g, seqs, q, kcBuf, vcBuf);
      expect(relativeError(got, attentionRef(g, seqs, q, kc, vc))).toBeLessThan(1e-5);
      be.free(kcBuf);
      be.free(vcBuf);
    }),
  );

  test("a sequence alone gives the same bits as inside the batch", () => {
    // A long prefill last makes the batch large enough for several threads; alone, the decodes are not.
    const g = { ...geometries[0]!, numBlocks: 40, maxBlocks: 16 };
    const { seqs, q, kcBuf, vcBuf } = setup(g, 7, [...mixedBatch, [48, 60]]);
    const batch = runAttention(g, seqs, q, kcBuf, vcBuf);
    const rowLen = g.H * g.D;
    let start = 0;
    for (const s of seqs) {
      const rows = q.subarray(start * rowLen, (start + s.qLen) * rowLen);
      const alone = runAttention(g, [s], rows, kcBuf, vcBuf);
      expect(sameBits(alone, batch.subarray(start * rowLen, (start + s.qLen) * rowLen))).toBe(true);
      start += s.qLen;
    }
    // A prefill chunk split in two steps (chunked prefill) gives the same bits as one step.
    const chunk = seqs[1]!;
    const first = { ...chunk, qLen: 2, seqLen: chunk.seqLen - 3 };
    const second = { ...chunk, qLen: 3 };
    const rowsOf = (from: number, n: number) => q.subarray((1 + from) * rowLen, (1 + from + n) * rowLen);
    const split = [...runAttention(g, [first], rowsOf(0, 2), kcBuf, vcBuf), ...runAttention(g, [second], rowsOf(2, 3), kcBuf, vcBuf)];
    expect(sameBits(Float32Array.from(split), batch.subarray(rowLen, 6 * rowLen))).toBe(true);
    be.free(kcBuf);
    be.free(vcBuf);
  });

  test("bad batch metadata is rejected", () => {
    const g = geometries[0]!;
    const { seqs, q, kcBuf, vcBuf } = setup(g, 9);
    const one = seqs[1]!;
    const rows = q.subarray(0, one.qLen * g.H * g.D);
    expect(() => runAttention(g, [{ ...one, seqLen: 3 }], rows, kcBuf, vcBuf)).toThrow(/seq_lens\[0\] = 3/);
    expect(() => runAttention(g, [{ ...one, blocks: [0, g.numBlocks, 1] }], rows, kcBuf, vcBuf)).toThrow(/block_tables\[0, 1\]/);
    expect(() => runAttention({ ...g, H: 3 }, [one], rows, kcBuf, vcBuf)).toThrow(/multiple of n_kv_heads/);
    be.free(kcBuf);
    be.free(vcBuf);
  });
});

describe("attention over an e4m3 KV cache", () => {
  geometries.forEach((g, gi) =>
    test(`equals attention over the values the codes stand for, bit for bit (H=${g.H} KVH=${g.KVH} D=${g.D} B=${g.B})`, () => {
      const { kc, vc, seqs, q, kcBuf, vcBuf } = setup(g, 300 + gi);
      const kScale = Math.fround(0.05), vScale = Math.fround(1.7);
      const kCodes = Uint8Array.from(kc, (x) => fp8Encode(x / kScale)), vCodes = Uint8Array.from(vc, (x) => fp8Encode(x / vScale));
      const decoded = (codes: Uint8Array, scale: number) => Float32Array.from(codes, (c) => Math.fround(fp8Decode(c) * scale));
      const [kDec, vDec] = [decoded(kCodes, kScale), decoded(vCodes, vScale)];
      const [kq, vq, kd, vd] = [upload(be, kCodes), upload(be, vCodes), upload(be, kDec), upload(be, vDec)];
      const got = runAttention(g, seqs, q, kq, vq, { dtype: DType.fp8E4m3, kScale, vScale });
      expect(sameBits(got, runAttention(g, seqs, q, kd, vd))).toBe(true);
      expect(relativeError(got, attentionRef(g, seqs, q, kDec, vDec))).toBeLessThan(1e-5);
      expect(new Set(kCodes).size).toBeGreaterThan(40); // the codes span much of the format, not a few values
      for (const b of [kcBuf, vcBuf, kq, vq, kd, vd]) be.free(b);
    }),
  );
});
