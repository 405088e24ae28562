// The row-wise ops of the backend under test (cuda) against the cpu backend on fresh random data
// with poisoned outputs: embedding, rmsnorm, rope_write_kv, silu_mul, gather_rows, all_reduce,
// cast. Skipped unless VLLMD_GPU_TESTS=1 (see harness.ts). Copies, weights and bad input:
// buffers-parity.test.ts; attention, gemm and sampling have their own files.
import { expect, test } from "bun:test";
import { cosSinTable, randomF32, seededRandom } from "../../src/native/testing.ts";
import { type Backend, DType, dtypeBytes } from "../../src/native/types.ts";
import { ACT_DTYPES, type Bufs, backends, DEVICE, dtypeName, expectClose, expectSameBytes, gpuSuite, roundTo, run, tolerance } from "./harness.ts";

const { f32, f16, bf16 } = DType;
const WEIGHT_DTYPES = [f32, bf16, f16];

/** Runs `op` on cpu (f32, the rounded values) and on the device (act), returning both outputs. */
function onBoth(act: DType, op: (b: Bufs, act: DType) => Float32Array[]): { cpu: Float32Array[]; dev: Float32Array[] } {
  const { cpu, dev } = backends();
  return { cpu: run(cpu, (b) => op(b, f32)), dev: run(dev, (b) => op(b, act)) };
}

/** Distinct ints in [0, n) in random order, count of them. */
function distinct(n: number, count: number, rand: () => number): number[] {
  const all = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(((rand() + 1) / 2) * (i + 1)) % (i + 1);
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return all.slice(0, count);
}

const ints = (n: number, limit: number, rand: () => number): number[] =>
  Array.from({ length: n }, () => Math.floor(((rand() + 1) / 2) * limit) % limit);

gpuSuite("ops parity", () => {
  for (const act of ACT_DTYPES)
    for (const wd of WEIGHT_DTYPES)
      test(`embedding: act ${dtypeName(act)}, table ${dtypeName(wd)} (bit-exact)`, () => {
        const [vocab, hidden, T] = [1000, 4100, 70];
        const rand = seededRandom(10 + act * 3 + wd);
        const table = roundTo(randomF32(vocab * hidden, rand), wd);
        const ids = [0, vocab - 1, ...ints(T - 2, vocab, rand)];
        const r = onBoth(act, (b, a) => {
          const out = b.poisoned(T * hidden, a);
          b.be.embedding(out, b.put(table, wd), b.i32(ids), T, hidden, vocab, a, wd);
          return [b.get(out, T * hidden, a)];
        });
        const ref = roundTo(r.cpu[0]!, act);
        expectSameBytes(new Uint8Array(r.dev[0]!.buffer), new Uint8Array(ref.buffer), 4, "embedding");
      });

  const normCases: [DType, DType][] = [[f32, f32], [f32, bf16], [f32, f16], [bf16, bf16], [f16, f16], [bf16, f32]];
  const normShapes: [number, number][] = [[7, 64], [300, 320], [5, 5003], [2, 8192]];
  for (const [act, wd] of normCases.filter(([a]) => ACT_DTYPES.includes(a)))
    for (const [T, hidden] of normShapes)
      test(`rmsnorm: act ${dtypeName(act)}, weight ${dtypeName(wd)}, ${T}x${hidden}, without and with residual`, () => {
        const rand = seededRandom(T * hidden + act * 7 + wd);
        const w = roundTo(randomF32(hidden, rand), wd);
        const x = roundTo(randomF32(T * hidden, rand, 3), act);
        const res = roundTo(randomF32(T * hidden, rand), act);
        const n = T * hidden;
        const r = onBoth(act, (b, a) => {
          const [wb, xb, rb, out] = [b.put(w, wd), b.put(x, a), b.put(res, a), b.poisoned(n, a)];
          b.be.rmsnorm(out, 0, xb, wb, T, hidden, 1e-5, a, wd);
          const plain = b.get(out, n, a);
          b.be.rmsnorm(xb, rb, xb, wb, T, hidden, 1e-5, a, wd); // residual += x; x = norm(residual)
          return [plain, b.get(rb, n, a), b.get(xb, n, a)];
        });
        const tol = tolerance(act);
        expectClose(r.dev[0]!, r.cpu[0]!, tol, `rmsnorm ${dtypeName(act)}/${dtypeName(wd)}`);
        expectClose(r.dev[1]!, r.cpu[1]!, tol, `rmsnorm residual sum ${dtypeName(act)}`);
        expectClose(r.dev[2]!, r.cpu[2]!, tol, `rmsnorm fused ${dtypeName(act)}/${dtypeName(wd)}`);
      });

  const ropeGeometries = [
    { T: 37, H: 8, KVH: 2, D: 64 },
    { T: 37, H: 8, KVH: 2, D: 128 },
    { T: 20, H: 4, KVH: 4, D: 128 },
    { T: 300, H: 32, KVH: 8, D: 128 },
  ];
  for (const act of ACT_DTYPES)
    for (const g of ropeGeometries)
      test(`rope_write_kv: act ${dtypeName(act)}, fused qkv, T=${g.T} H=${g.H} KVH=${g.KVH} D=${g.D}, a skipped slot`, () => {
        const [B, maxPos] = [16, 2048];
        const rand = seededRandom(g.T + g.H * 5 + g.D + act);
        const numBlocks = Math.ceil(g.T / B) + 5;
        const cacheLen = numBlocks * g.KVH * B * g.D;
        const qLen = g.T * g.H * g.D;
        const qkv = roundTo(randomF32(g.T * (g.H + 2 * g.KVH) * g.D, rand), act); // rows q | k | v
        const pos = [0, maxPos - 1, ...ints(g.T - 2, maxPos, rand)];
        const slots = distinct(numBlocks * B, g.T, rand);
        slots[3] = -1; // token 3 is not cached, its q_out is written all the same
        const table = cosSinTable(maxPos, g.D, 10000);
        const r = onBoth(act, (b, a) => {
          const [qOut, xb] = [b.poisoned(qLen, a), b.put(qkv, a)];
          const [kc, vc] = [b.poisoned(cacheLen, a), b.poisoned(cacheLen, a)];
          b.be.ropeWriteKv(qOut, xb, b.i32(pos), b.put(table, f32), b.i32(slots), kc, vc, g.T, g.H, g.KVH, g.D, B, a);
          return [b.get(qOut, qLen, a), b.get(kc, cacheLen, a), b.get(vc, cacheLen, a), b.get(xb, qkv.length, a)];
        });
        const tol = tolerance(act);
        ["q_out", "k_cache", "v_cache"].forEach((name, i) =>
          expectClose(r.dev[i]!, r.cpu[i]!, tol, `rope_write_kv ${name} ${dtypeName(act)}`),
        );
        const bits = (x: Float32Array) => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
        expectSameBytes(bits(r.dev[3]!), bits(qkv), 4, `rope_write_kv qkv untouched ${dtypeName(act)}`);
      });

  // An e4m3 cache: both backends rotate in f32 from the same (rounded) inputs and encode k / k_scale
  // and v / v_scale with the same rounding, so the cache bytes must agree exactly; bytes of slots
  // no token writes keep their poison (0x7f, e4m3's NaN) on both.
  for (const act of ACT_DTYPES)
    for (const g of [ropeGeometries[1]!, ropeGeometries[3]!])
      test(`rope_write_kv into an e4m3 cache: act ${dtypeName(act)}, T=${g.T} H=${g.H} KVH=${g.KVH} D=${g.D}, codes bit-exact`, () => {
        const [B, maxPos] = [16, 2048];
        const rand = seededRandom(7 * g.T + g.D + act);
        const numBlocks = Math.ceil(g.T / B) + 5, cacheLen = numBlocks * g.KVH * B * g.D;
        const qkv = roundTo(randomF32(g.T * (g.H + 2 * g.KVH) * g.D, rand, 3), act);
        const pos = [0, maxPos - 1, ...ints(g.T - 2, maxPos, rand)];
        const slots = distinct(numBlocks * B, g.T, rand);
        slots[3] = -1;
        const table = cosSinTable(maxPos, g.D, 10000);
        const kv = { dtype: DType.fp8E4m3, kScale: Math.fround(0.0173), vScale: Math.fround(2.5) };
        const caches = (be: Backend, a: DType): Uint8Array[] => run(be, (b) => {
          const [kc, vc] = [b.raw(new Uint8Array(cacheLen).fill(0x7f)), b.raw(new Uint8Array(cacheLen).fill(0x7f))];
          b.be.ropeWriteKv(b.poisoned(g.T * g.H * g.D, a), b.put(qkv, a), b.i32(pos), b.put(table, f32), b.i32(slots), kc, vc,
            g.T, g.H, g.KVH, g.D, B, a, kv);
          return [b.bytes(kc, cacheLen), b.bytes(vc, cacheLen)];
        });
        const { cpu, dev } = backends();
        const [want, got] = [caches(cpu, f32), caches(dev, act)];
        expect(want[0]!.some((c) => c !== 0x7f && c !== 0 && c !== 0x7e && c !== 0xfe)).toBe(true); // codes in range, not saturated
        expectSameBytes(got[0]!, want[0]!, 1, `e4m3 k_cache ${dtypeName(act)}`);
        expectSameBytes(got[1]!, want[1]!, 1, `e4m3 v_cache ${dtypeName(act)}`);
      });

  for (const act of ACT_DTYPES)
    for (const [T, inter] of [[1, 176], [33, 864], [300, 5003]] as const)
      test(`silu_mul: act ${dtypeName(act)}, ${T}x${inter}`, () => {
        const rand = seededRandom(T + inter + act);
        const g = roundTo(Float32Array.from({ length: T * 2 * inter }, (_, i) => rand() * ((i / inter) % 2 < 1 ? 6 : 2)), act);
        const r = onBoth(act, (b, a) => {
          const out = b.poisoned(T * inter, a);
          b.be.siluMul(out, b.put(g, a), T, inter, a);
          return [b.get(out, T * inter, a)];
        });
        expectClose(r.dev[0]!, r.cpu[0]!, tolerance(act), `silu_mul ${dtypeName(act)}`);
      });

  for (const act of ACT_DTYPES)
    test(`gather_rows: act ${dtypeName(act)}, repeats, first and last row (bit-exact)`, () => {
      const [rows, cols, n] = [500, 4100, 70];
      const rand = seededRandom(55 + act);
      const x = roundTo(randomF32(rows * cols, rand), act);
      const idx = [rows - 1, 0, ...ints(n - 3, rows, rand), 0];
      const r = onBoth(act, (b, a) => {
        const out = b.poisoned(n * cols, a);
        b.be.gatherRows(out, b.put(x, a), b.i32(idx), n, cols, a);
        return [b.get(out, n * cols, a)];
      });
      expectSameBytes(new Uint8Array(r.dev[0]!.buffer), new Uint8Array(r.cpu[0]!.buffer), 4, "gather_rows");
    });

  for (const act of ACT_DTYPES)
    test(`all_reduce over one rank leaves ${dtypeName(act)} data as it is`, () => {
      const x = roundTo(randomF32(4099, seededRandom(3)), act);
      const got = run(backends().dev, (b) => {
        const xb = b.put(x, act);
        b.be.allReduce(xb, x.length, act);
        return b.get(xb, x.length, act);
      });
      expectSameBytes(new Uint8Array(got.buffer), new Uint8Array(x.buffer), 4, "all_reduce");
    });

  // cuda sends it through a communicator of one rank (NCCL), the path tensor parallelism takes:
  // inside a captured graph too, replayed twice (on the cpu backend graphs are unsupported).
  test("all_reduce over one rank inside a captured graph (bf16)", () => {
    if (DEVICE !== "cuda") return;
    const x = roundTo(randomF32(8192, seededRandom(4)), bf16);
    const got = run(backends().dev, (b) => {
      const xb = b.put(x, bf16);
      b.be.allReduce(xb, x.length, bf16); // the first one makes the communicator, outside capture
      b.be.graphBegin();
      b.be.allReduce(xb, x.length, bf16);
      const g = b.be.graphEnd();
      b.be.graphLaunch(g);
      b.be.graphLaunch(g);
      b.be.sync();
      b.be.graphDestroy(g);
      return b.get(xb, x.length, bf16);
    });
    expectSameBytes(new Uint8Array(got.buffer), new Uint8Array(x.buffer), 4, "all_reduce in a graph");
  });

  for (const inDt of WEIGHT_DTYPES)
    for (const outDt of WEIGHT_DTYPES)
      test(`cast ${dtypeName(inDt)} -> ${dtypeName(outDt)} (bit-exact, round to nearest even)`, () => {
        const x = roundTo(castInput(100_003, inDt + 3 * outDt), inDt);
        const n = x.length;
        const castOn = (be: Backend) =>
          run(be, (b) => {
            const out = b.poisoned(n, outDt);
            b.be.cast(out, b.put(x, inDt), n, outDt, inDt);
            return b.bytes(out, n * dtypeBytes(outDt));
          });
        const { cpu, dev } = backends();
        expectSameBytes(castOn(dev), castOn(cpu), dtypeBytes(outDt), `cast ${dtypeName(inDt)} -> ${dtypeName(outDt)}`);
      });
});

/** Random values plus the edge cases of half types: subnormals, ties, overflow, zeros, infinities. */
function castInput(n: number, seed: number): Float32Array {
  const special = [
    1e-8, -3e-7, 2 ** -24, 2 ** -25, 3 * 2 ** -25, 2 ** -14 * 0.99999, 65504, 65519, 65520, -0, 0, 1 + 2 ** -11,
    1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8, Infinity, -Infinity, 1e-40, -1e-39, 3e38, -1e5, 7e4,
  ];
  const x = randomF32(n, seededRandom(seed), 3);
  x.set(special, 1000);
  for (let i = 0; i < 200; i++) x[5000 + i] = x[5000 + i]! * 2 ** ((i % 60) - 30); // wide exponents
  return x;
}

