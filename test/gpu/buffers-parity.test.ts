// Buffers, copies, views and vd_load_weight of the backend under test (cuda) against the cpu
// backend, and bad input: every bad call fails on both backends with the same status, and the
// context keeps working afterwards. Skipped unless VLLMD_GPU_TESTS=1 (see harness.ts).
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openBackend } from "../../src/native/backend.ts";
import { encodeWeights, randomF32, seededRandom } from "../../src/native/testing.ts";
import { type Backend, BackendError, DType, dtypeBytes, Status } from "../../src/native/types.ts";
import { backends, DEVICE, dtypeName, expectSameBytes, expectStatusOnBoth, gpuSuite, run } from "./harness.ts";

const { f32, f16, bf16 } = DType;
const FLOATS = [f32, f16, bf16];

/** Pseudo-random bytes (xorshift32), fast enough for tens of megabytes. */
function randomBytes(n: number, seed: number): Uint8Array {
  const words = new Uint32Array(Math.ceil(n / 4));
  let s = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    words[i] = s >>> 0;
  }
  return new Uint8Array(words.buffer, 0, n);
}

/** One sequence of allocs, host copies at offsets, views (of views), device copies; returns what it reads back. */
function copyRoundTrip(be: Backend): Uint8Array[] {
  return run(be, (b) => {
    const a = b.raw(randomBytes(10_000, 1));
    be.copyFromHost(a, 123, randomBytes(77, 2)); // a patch at an odd offset
    be.copyFromHost(a, 10_000, new Uint8Array(0)); // an empty copy at the very end
    const v = be.view(a, 1000, 4000);
    const vv = be.view(v, 8, 64);
    be.copyFromHost(vv, 0, new Uint8Array(64).fill(0xee)); // writes a[1008, 1072)
    const c = b.raw(new Uint8Array(5000));
    be.copy(c, 16, v, 100, 3000); // c[16, 3016) = a[1100, 4100)
    be.copy(c, 0, a, 0, 16);
    be.copy(c, 4999, vv, 63, 1);
    const part = new Uint8Array(40);
    be.copyToHost(v, 4, part);
    const res = [b.bytes(a, 10_000), b.bytes(c, 5000), part];
    be.free(vv);
    be.free(v);
    return res;
  });
}

/** A file of `junk` bytes, the tensor, then 5 more; returns its path and the tensor's offset. */
function tensorFile(dir: string, name: string, tensor: Uint8Array, junk: number): { path: string; offset: number } {
  const file = new Uint8Array(junk + tensor.length + 5).fill(0xab);
  file.set(tensor, junk);
  const path = join(dir, name);
  writeFileSync(path, file);
  return { path, offset: junk };
}

gpuSuite("buffers parity", () => {
  const dir = mkdtempSync(join(tmpdir(), "vllmd-gpu-weights-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("mem_info reports plausible device memory and sync returns", () => {
    const { dev } = backends();
    const m = dev.memInfo();
    expect(m.total).toBeGreaterThan(2 ** 30);
    expect(m.free).toBeGreaterThan(0);
    expect(m.free).toBeLessThanOrEqual(m.total);
    dev.sync();
  });

  test("copies, views of views and device copies read back as on cpu", () => {
    const { cpu, dev } = backends();
    const [want, got] = [copyRoundTrip(cpu), copyRoundTrip(dev)];
    got.forEach((g, i) => expectSameBytes(g, want[i]!, 1, `copy round trip, array ${i}`));
    expect(want[0]!.subarray(123, 200)).toEqual(randomBytes(77, 2)); // the cpu oracle itself is right
  });

  test("a 24 MiB + 3 byte upload and download (more than any staging buffer) round-trips", () => {
    const data = randomBytes(24 * 2 ** 20 + 3, 7);
    const got = run(backends().dev, (b) => b.bytes(b.raw(data), data.length));
    expectSameBytes(got, data, 1, "large round trip");
  }, 30_000);

  for (const fileDt of FLOATS)
    for (const dstDt of FLOATS)
      test(`load_weight: ${dtypeName(fileDt)} file at an offset into ${dtypeName(dstDt)} (bit-exact)`, () => {
        const [rows, cols] = [257, 1001];
        const values = randomF32(rows * cols, seededRandom(fileDt * 3 + dstDt), 2);
        values.set([1e-8, -3e-7, 2 ** -25, 65504, 65520, -0, 1 + 2 ** -11, 1e-40, 3e38], 17);
        const { path, offset } = tensorFile(dir, `w${fileDt}${dstDt}.bin`, encodeWeights(values, fileDt).bytes, 37);
        const n = rows * cols * dtypeBytes(dstDt);
        const load = (be: Backend, shard: -1 | 0 | 1) =>
          run(be, (b) => {
            const dst = b.raw(new Uint8Array(n));
            be.loadWeight(dst, dstDt, path, offset, fileDt, rows, cols, shard);
            return b.bytes(dst, n);
          });
        const { cpu, dev } = backends();
        const want = load(cpu, -1);
        for (const shard of [-1, 0, 1] as const) expectSameBytes(load(dev, shard), want, dtypeBytes(dstDt), `load_weight shard_dim ${shard}`);
      });

  test("load_weight: a 12 MB tensor (more than any staging buffer) into f32 and bf16", () => {
    const [rows, cols] = [1024, 3001];
    const values = randomF32(rows * cols, seededRandom(77));
    const { path, offset } = tensorFile(dir, "big.bin", encodeWeights(values, f32).bytes, 4096 + 12);
    const { cpu, dev } = backends();
    for (const dstDt of [f32, bf16]) {
      const n = rows * cols * dtypeBytes(dstDt);
      const load = (be: Backend) =>
        run(be, (b) => {
          const dst = b.raw(new Uint8Array(n));
          be.loadWeight(dst, dstDt, path, offset, f32, rows, cols, -1);
          return b.bytes(dst, n);
        });
      expectSameBytes(load(dev), load(cpu), dtypeBytes(dstDt), `load_weight big ${dtypeName(dstDt)}`);
    }
  }, 30_000);

  test("load_weight: a file shorter than the tensor, or missing, is an IO error naming the file", () => {
    const { path, offset } = tensorFile(dir, "short.bin", new Uint8Array(40), 10);
    for (const p of [path, join(dir, "missing.bin")]) {
      const err = expectStatusOnBoth(Status.io, `load_weight ${p}`, (be) =>
        run(be, (b) => be.loadWeight(b.raw(new Uint8Array(7 * 13 * 4)), f32, p, offset, f32, 7, 13, -1)),
      );
      expect(err.message).toContain(p);
    }
  });

  test("bad handles, ranges, shapes and dtypes fail with status -1 on both backends", () => {
    const bad = 987_654_321;
    const inv = Status.invalidArgument;
    expectStatusOnBoth(inv, "gemm into a bad handle", (be) => run(be, (b) => {
      const x = b.raw(new Float32Array(16));
      be.gemm(bad, x, x, 0, 2, 2, 2, f32, f32);
    }));
    expectStatusOnBoth(inv, "copy_to_host from a bad handle", (be) => be.copyToHost(bad, 0, new Uint8Array(4)));
    expectStatusOnBoth(inv, "a freed buffer", (be) => {
      const a = be.alloc(64);
      be.free(a);
      be.copyFromHost(a, 0, new Uint8Array(4));
    });
    expectStatusOnBoth(inv, "a view of a freed buffer", (be) => {
      const a = be.alloc(64);
      const v = be.view(a, 0, 32);
      be.free(a);
      be.copyToHost(v, 0, new Uint8Array(4));
    });
    expectStatusOnBoth(inv, "a view past the end", (be) => run(be, (b) => be.view(b.raw(new Uint8Array(64)), 60, 8)));
    expectStatusOnBoth(inv, "a host copy past the end", (be) => run(be, (b) => be.copyFromHost(b.raw(new Uint8Array(64)), 61, new Uint8Array(4))));
    expectStatusOnBoth(inv, "a device copy past the end", (be) => run(be, (b) => {
      const [x, y] = [b.raw(new Uint8Array(64)), b.raw(new Uint8Array(32))];
      be.copy(y, 0, x, 0, 64);
    }));
    expectStatusOnBoth(inv, "gemm with an output too small", (be) => run(be, (b) => {
      const x = b.raw(new Float32Array(16));
      be.gemm(b.raw(new Float32Array(3)), x, x, 0, 2, 2, 2, f32, f32);
    }));
    expectStatusOnBoth(inv, "cast to i32", (be) => run(be, (b) => {
      const x = b.raw(new Float32Array(4));
      be.cast(x, x, 4, DType.i32, f32);
    }));
    expectStatusOnBoth(inv, "embedding with table dtype 7", (be) => run(be, (b) => {
      const x = b.raw(new Float32Array(64));
      be.embedding(x, x, b.raw(new Int32Array(2)), 2, 4, 4, f32, 7 as DType);
    }));
    expectStatusOnBoth(inv, "attention with n_heads not a multiple of n_kv_heads", (be) => run(be, (b) => {
      const x = b.raw(new Float32Array(4096));
      const i = b.raw(Int32Array.from([0, 1, 1, 1]));
      be.attention(x, x, x, x, i, b.raw(Int32Array.of(1)), b.raw(Int32Array.of(0, 1)), 1, 1, 3, 2, 8, 4, 1, 1, f32);
    }));
    expectStatusOnBoth(inv, "rope with an odd head_dim", (be) => run(be, (b) => {
      const [q, x] = [b.raw(new Float32Array(4096)), b.raw(new Float32Array(4096))];
      const i = b.raw(Int32Array.of(0));
      be.ropeWriteKv(q, x, i, x, i, x, x, 1, 1, 1, 7, 4, f32);
    }));
    const overlap = expectStatusOnBoth(inv, "rope with q_out overlapping qkv", (be) => run(be, (b) => {
      const x = b.raw(new Float32Array(4096)); // views die with x
      const [i, table] = [b.raw(Int32Array.of(0)), b.raw(new Float32Array(64))];
      be.ropeWriteKv(be.view(x, 64 * 4, 64 * 4), be.view(x, 0, 3 * 64 * 4), i, table, i, x, x, 1, 1, 1, 64, 4, f32);
    }));
    expect(overlap.message).toContain("q_out overlaps qkv");
    expectStatusOnBoth(inv, "rope with a qkv too small for the fused row", (be) => run(be, (b) => {
      const [q, x] = [b.raw(new Float32Array(64)), b.raw(new Float32Array(4096))];
      const [i, table] = [b.raw(Int32Array.of(0)), b.raw(new Float32Array(64))];
      be.ropeWriteKv(q, be.view(x, 0, 2 * 64 * 4), i, table, i, x, x, 1, 1, 1, 64, 4, f32); // q | k, no v
    }));
  });

  test("a destroyed context rejects calls; the live one still computes", () => {
    const extra = openBackend(DEVICE);
    extra.destroy();
    let err: unknown;
    try {
      extra.alloc(64);
    } catch (e) {
      err = e;
    }
    expect(err instanceof BackendError && err.status === Status.invalidArgument).toBe(true);
    const { dev } = backends();
    const got = run(dev, (b) => {
      const x = b.raw(Float32Array.from([1, 2, 3, 4]));
      const out = b.poisoned(4, f32);
      dev.gemm(out, x, x, 0, 2, 2, 2, f32, f32); // [[1,2],[3,4]] . [[1,2],[3,4]]^T
      return b.get(out, 4, f32);
    });
    expect([...got]).toEqual([5, 11, 11, 25]);
  });
});
