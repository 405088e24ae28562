// Tensor parallelism on the cpu backend: a context of several ranks in one process. Each buffer
// has a block per rank; uploads reach every rank; ops run on every rank; vd_all_reduce sums the
// blocks; vd_load_weight gives each rank its shard. Ranks other than 0 are not readable from the
// host (copies read rank 0), so their contents are checked through vd_all_reduce's sum.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openBackend } from "./backend.ts";
import { downloadF32, upload } from "./testing.ts";
import { DType } from "./types.ts";

const work = mkdtempSync(join(tmpdir(), "vllmd-tp-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

for (const tp of [2, 4]) {
  describe(`tp ${tp}`, () => {
    const be = openBackend("cpu", { tp });
    afterAll(() => be.destroy());

    test("an upload reaches every rank, ops run on every rank, all-reduce sums the ranks", () => {
      expect(be.tp).toBe(tp);
      const x = Float32Array.from({ length: 37 }, (_, i) => i - 5.5);
      const buf = upload(be, x), out = be.alloc(37 * 4);
      be.cast(out, buf, 37, DType.f32, DType.f32); // on every rank: out = x everywhere
      be.allReduce(out, 37, DType.f32);
      expect(downloadF32(be, out, 37)).toEqual(x.map((v) => v * tp));
      be.allReduce(out, 37, DType.f32); // every rank got the sum: summing again multiplies by tp again
      expect(downloadF32(be, out, 37)).toEqual(x.map((v) => v * tp * tp));
      be.free(buf);
      be.free(out);
    });

    test("vd_load_weight gives rank r its rows (shard_dim 0), its columns (1), or everything (-1)", () => {
      const [rows, cols] = [8, 12];
      const t = Float32Array.from({ length: rows * cols }, (_, i) => (i * 7919) % 1000);
      const file = join(work, `w${tp}.bin`);
      writeFileSync(file, Buffer.concat([Buffer.alloc(16), Buffer.from(t.buffer)])); // the tensor at byte 16
      const at = (r: number, c: number) => t[r * cols + c]!;
      const sum = (n: number, value: (i: number, rank: number) => number) =>
        Float32Array.from({ length: n }, (_, i) => Array.from({ length: tp }, (_, rank) => value(i, rank)).reduce((a, b) => a + b, 0));
      const cases: [-1 | 0 | 1, number, Float32Array][] = [
        [0, (rows / tp) * cols, sum((rows / tp) * cols, (i, rank) => at(rank * (rows / tp) + Math.floor(i / cols), i % cols))],
        [1, rows * (cols / tp), sum(rows * (cols / tp), (i, rank) => at(Math.floor(i / (cols / tp)), rank * (cols / tp) + (i % (cols / tp))))],
        [-1, rows * cols, t.map((v) => v * tp)],
      ];
      for (const [shardDim, n, want] of cases) {
        const dst = be.alloc(n * 4);
        be.loadWeight(dst, DType.f32, file, 16, DType.f32, rows, cols, shardDim);
        be.allReduce(dst, n, DType.f32);
        expect(downloadF32(be, dst, n)).toEqual(want);
        be.free(dst);
      }
    });

    test("fewer shards than ranks: consecutive ranks share a piece (KV heads fewer than the ranks)", () => {
      const [rows, cols] = [4, 3];
      const t = Float32Array.from({ length: rows * cols }, (_, i) => i * i);
      const file = join(work, `kv${tp}.bin`);
      writeFileSync(file, Buffer.from(t.buffer));
      const shards = tp / 2, per = (rows / shards) * cols, dst = be.alloc(per * 4);
      be.loadWeight(dst, DType.f32, file, 0, DType.f32, rows, cols, 0, shards);
      be.allReduce(dst, per, DType.f32);
      // rank r holds piece r * shards / tp, so each piece is held by 2 ranks
      const want = Float32Array.from({ length: per }, (_, i) => 2 * Array.from({ length: shards }, (_, s) => t[s * per + i]!).reduce((a, b) => a + b, 0));
      expect(downloadF32(be, dst, per)).toEqual(want);
      be.free(dst);
    });

    test("a dimension the ranks do not divide is refused, naming it", () => {
      const file = join(work, `odd${tp}.bin`);
      writeFileSync(file, Buffer.alloc(4 * 6 * 5));
      const dst = be.alloc(4 * 6 * 5);
      expect(() => be.loadWeight(dst, DType.f32, file, 0, DType.f32, 6, 5, 1)).toThrow(/cols 5 of .* is not divisible into \d shards/);
      expect(() => be.loadWeight(dst, DType.f32, file, 0, DType.f32, 6, 5, 0, 3)).toThrow(`n_shards 3 must divide tp ${tp}`);
      be.free(dst);
    });
  });
}
