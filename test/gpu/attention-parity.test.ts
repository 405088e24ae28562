// vd_attention of the backend under test (cuda) against the cpu backend: mixed batches of
// decodes and prefill chunks over cached prefixes, GQA 8:2 and 4:4, head_dim 64 and 128, block
// size 16, scrambled block tables, partial last blocks, contexts long enough to need several
// thread blocks (split-KV) per sequence. Skipped unless VLLMD_GPU_TESTS=1 (see harness.ts).
import { test } from "bun:test";
import { randomF32, seededRandom } from "../../src/native/testing.ts";
import { fp8Encode } from "../../src/native/fp8-reference.ts";
import { type Backend, type Buf, DType, type KvFormat } from "../../src/native/types.ts";
import { ACT_DTYPES, type Bufs, backends, dtypeName, expectClose, gpuSuite, roundTo, run, tolerance } from "./harness.ts";

const B = 16;

interface Seq {
  qLen: number;
  seqLen: number;
  blocks: number[];
}
interface Geometry {
  H: number;
  KVH: number;
  D: number;
}

// [q_len, seq_len]: a first token; a decode one token into its second block; a decode ending on
// a block boundary; a 1000-token decode; a whole 37-token prompt; a 100-token chunk over a
// 300-token cached prefix; a decode one past a boundary at 513; small chunks over short prefixes;
// a 200-token prompt and a 130-token chunk over 970 cached (several 64-row tiles of the tensor-core
// prefill kernel, partial last tiles); 15 rows, one short of that kernel's threshold.
const MIXED: [number, number][] = [
  [1, 1], [1, 17], [1, 16], [1, 1000], [37, 37], [100, 400], [1, 513], [5, 70], [16, 32], [200, 200], [130, 1100], [15, 15],
];

/** 64 decodes of lengths 1..300: many sequences, none alike (the mixed batch has the long one). */
function manyDecodes(): [number, number][] {
  const rand = seededRandom(64);
  return Array.from({ length: 64 }, () => [1, 1 + (Math.floor(((rand() + 1) / 2) * 300) % 300)]);
}

interface Batch {
  seqs: Seq[];
  numBlocks: number;
  maxBlocks: number;
  nTokens: number;
  q: Float32Array;
  kc: Float32Array;
  vc: Float32Array;
}

/** Random q and caches; each sequence takes blocks from a shuffled free list (not contiguous). */
function makeBatch(g: Geometry, shape: [number, number][], seed: number): Batch {
  const rand = seededRandom(seed);
  const need = shape.reduce((a, [, len]) => a + Math.ceil(len / B), 0);
  const numBlocks = need + 7;
  const free = Array.from({ length: numBlocks }, (_, i) => i);
  for (let i = numBlocks - 1; i > 0; i--) {
    const j = Math.floor(((rand() + 1) / 2) * (i + 1)) % (i + 1);
    [free[i], free[j]] = [free[j]!, free[i]!];
  }
  const seqs = shape.map(([qLen, seqLen]) => ({ qLen, seqLen, blocks: free.splice(0, Math.ceil(seqLen / B)) }));
  const nTokens = seqs.reduce((a, s) => a + s.qLen, 0);
  const cacheLen = numBlocks * g.KVH * B * g.D;
  return {
    seqs, numBlocks, nTokens,
    maxBlocks: Math.max(...seqs.map((s) => s.blocks.length)) + 3,
    q: randomF32(nTokens * g.H * g.D, rand, 3),
    kc: randomF32(cacheLen, rand),
    vc: randomF32(cacheLen, rand),
  };
}

/** Runs vd_attention on `be` in dtype `act` (inputs already rounded to it); returns out as f32. */
function attend(be: Backend, g: Geometry, bt: Batch, act: DType, q: Float32Array, kc: Float32Array, vc: Float32Array): Float32Array {
  return attendOn(be, g, bt, act, q, (b) => [b.put(kc, act), b.put(vc, act)]);
}

/** vd_attention on caches that `caches` uploads, of the format `kv` (the act dtype when absent). */
function attendOn(be: Backend, g: Geometry, bt: Batch, act: DType, q: Float32Array, caches: (b: Bufs) => [Buf, Buf], kv?: KvFormat): Float32Array {
  const tables = new Int32Array(bt.seqs.length * bt.maxBlocks).fill(1 << 30); // unused entries must never be read
  bt.seqs.forEach((s, i) => tables.set(s.blocks, i * bt.maxBlocks));
  const qStart = [0];
  for (const s of bt.seqs) qStart.push(qStart.at(-1)! + s.qLen);
  const n = bt.nTokens * g.H * g.D;
  return run(be, (b) => {
    const out = b.poisoned(n, act);
    const [kb, vb] = caches(b);
    be.attention(
      out, b.put(q, act), kb, vb, b.i32(tables), b.i32(bt.seqs.map((s) => s.seqLen)), b.i32(qStart),
      bt.seqs.length, bt.nTokens, g.H, g.KVH, g.D, B, bt.maxBlocks, 1 / Math.sqrt(g.D), act, kv,
    );
    return b.get(out, n, act);
  });
}

const GEOMETRIES: Geometry[] = [
  { H: 8, KVH: 2, D: 64 },
  { H: 8, KVH: 2, D: 128 },
  { H: 4, KVH: 4, D: 64 },
  { H: 4, KVH: 4, D: 128 },
];

gpuSuite("attention parity", () => {
  for (const [batchName, shape] of [["mixed batch", MIXED], ["64 decodes", manyDecodes()]] as const)
    GEOMETRIES.forEach((g, gi) => {
      let batch: Batch | null = null; // made once per geometry, shared by the dtypes
      for (const act of ACT_DTYPES)
        test(`${batchName}: H=${g.H} KVH=${g.KVH} D=${g.D} B=${B}, act ${dtypeName(act)}`, () => {
          batch ??= makeBatch(g, shape, 100 + gi + shape.length);
          const [q, kc, vc] = [batch.q, batch.kc, batch.vc].map((a) => roundTo(a, act)) as [Float32Array, Float32Array, Float32Array];
          const { cpu, dev } = backends();
          const want = attend(cpu, g, batch, DType.f32, q, kc, vc);
          const got = attend(dev, g, batch, act, q, kc, vc);
          expectClose(got, want, tolerance(act), `attention ${batchName} D=${g.D} ${dtypeName(act)}`);
          if (shape === MIXED) checkRowsAlone(dev, g, batch, act, got, want);
        }, 60_000);
    });
});

// e4m3 caches: the codes of the random caches at scales that put them mid-range (and some small
// values among the subnormal codes). Every kernel path (the row kernel for f32, the tensor-core
// prefill and decode kernels, split-KV) reads the same codes the cpu reads; the scales are not 1,
// so a kernel that ignored one would be far off.
gpuSuite("attention parity, e4m3 KV cache", () => {
  const kv: KvFormat = { dtype: DType.fp8E4m3, kScale: Math.fround(0.0125), vScale: Math.fround(0.04) };
  const codes = (x: Float32Array, scale: number) => Uint8Array.from(x, (v) => fp8Encode(v / scale));
  for (const [batchName, shape] of [["mixed batch", MIXED], ["64 decodes", manyDecodes()]] as const)
    GEOMETRIES.forEach((g, gi) => {
      if (shape !== MIXED && gi % 2 === 0) return; // the decodes on the two D=128 geometries
      for (const act of ACT_DTYPES)
        test(`e4m3 KV cache, ${batchName}: H=${g.H} KVH=${g.KVH} D=${g.D}, act ${dtypeName(act)}`, () => {
          const bt = makeBatch(g, shape, 300 + gi + shape.length);
          const [kc, vc] = [codes(bt.kc, kv.kScale), codes(bt.vc, kv.vScale)];
          const q = roundTo(bt.q, act);
          const { cpu, dev } = backends();
          const caches = (b: Bufs): [Buf, Buf] => [b.raw(kc), b.raw(vc)];
          const want = attendOn(cpu, g, bt, DType.f32, q, caches, kv);
          const got = attendOn(dev, g, bt, act, q, caches, kv);
          expectClose(got, want, tolerance(act), `e4m3 attention ${batchName} D=${g.D} ${dtypeName(act)}`);
          const plain = attend(cpu, g, bt, DType.f32, q, roundTo(bt.kc, DType.f32), roundTo(bt.vc, DType.f32));
          expectClose(want, plain, 0.1, "the e4m3 cpu result is near the f32 cache's"); // the codes do stand for the cache
        }, 60_000);
    });
});

/**
 * The long decodes and prefill chunks, each run alone, give what the batch gave (to 1e-6) — except
 * decode rows in f16/bf16, whose split-KV count follows the batch size (attention_decode.cuh): alone
 * (a batch of one row, so many splits) they must still match the cpu.
 */
function checkRowsAlone(dev: Backend, g: Geometry, bt: Batch, act: DType, batchOut: Float32Array, cpuOut: Float32Array): void {
  const rowLen = g.H * g.D;
  let start = 0;
  bt.seqs.forEach((s) => {
    if (s.seqLen >= 400 || s.qLen >= 100) {
      const alone: Batch = { ...bt, seqs: [s], nTokens: s.qLen };
      const q = bt.q.subarray(start * rowLen, (start + s.qLen) * rowLen);
      const [qa, kc, vc] = [q, bt.kc, bt.vc].map((a) => roundTo(a, act)) as [Float32Array, Float32Array, Float32Array];
      const got = attend(dev, g, alone, act, qa, kc, vc);
      const rows = (a: Float32Array) => a.subarray(start * rowLen, (start + s.qLen) * rowLen);
      const label = `attention alone vs in batch D=${g.D} ${dtypeName(act)} q_len ${s.qLen}`;
      if (act === DType.f32 || s.qLen >= 16) expectClose(got, rows(batchOut), 1e-6, label);
      else expectClose(got, rows(cpuOut), tolerance(act), `${label} (split-KV, vs cpu)`);
    }
    start += s.qLen;
  });
}
