// vd_load_weight on the cpu backend: file ranges, dtype conversion, short files.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openBackend } from "./backend.ts";
import { backendError, downloadF32, encodeWeights, randomF32, seededRandom } from "./testing.ts";
import { DType, Status } from "./types.ts";

const be = openBackend("cpu");
const dir = mkdtempSync(join(tmpdir(), "vllmd-weights-"));
afterAll(() => {
  be.destroy();
  rmSync(dir, { recursive: true, force: true });
});

/** Writes `junk` bytes, then the tensor, then a few trailing bytes; returns path and offset. */
function writeTensorFile(name: string, tensor: Uint8Array, junk: number): { path: string; offset: number } {
  const file = new Uint8Array(junk + tensor.length + 5).fill(0xab);
  file.set(tensor, junk);
  const path = join(dir, name);
  writeFileSync(path, file);
  return { path, offset: junk };
}


describe("load_weight", () => {
  const [rows, cols] = [7, 13];
  for (const fileDtype of [DType.f32, DType.f16, DType.bf16])
    test(`file dtype ${fileDtype} at an offset into f32`, () => {
      const enc = encodeWeights(randomF32(rows * cols, seededRandom(fileDtype + 1)), fileDtype);
      const { path, offset } = writeTensorFile(`t${fileDtype}.bin`, enc.bytes, 37);
      const dst = be.alloc(rows * cols * 4);
      be.loadWeight(dst, DType.f32, path, offset, fileDtype, rows, cols, -1);
      expect(downloadF32(be, dst, rows * cols)).toEqual(enc.exact);
      be.free(dst);
    });

  test("f32 file into bf16 and f16 buffers rounds to nearest even", () => {
    // Random values plus f16 edge cases: subnormals, ties, the largest half, overflow, zeros, inf.
    const special = [1e-8, -3e-7, 2 ** -24, 2 ** -25, 3 * 2 ** -25, 2 ** -14 * 0.99999, 65504, 65519, 65520, -0, 1 + 2 ** -11, Infinity];
    const values = Float32Array.from([...randomF32(rows * cols - special.length, seededRandom(5)), ...special]);
    const { path, offset } = writeTensorFile("f32.bin", encodeWeights(values, DType.f32).bytes, 8);
    for (const dstDtype of [DType.bf16, DType.f16]) {
      const dst = be.alloc(rows * cols * 2);
      be.loadWeight(dst, dstDtype, path, offset, DType.f32, rows, cols, 0);
      const got = new Uint8Array(rows * cols * 2);
      be.copyToHost(dst, 0, got);
      expect(got).toEqual(encodeWeights(values, dstDtype).bytes);
      be.free(dst);
    }
  });

  test("a 1-D tensor of i32 loads unchanged", () => {
    const ids = Int32Array.from([5, -3, 1 << 30, 0]);
    const { path, offset } = writeTensorFile("ids.bin", new Uint8Array(ids.buffer), 3);
    const dst = be.alloc(16);
    be.loadWeight(dst, DType.i32, path, offset, DType.i32, 1, 4, -1);
    const got = new Int32Array(4);
    be.copyToHost(dst, 0, got);
    expect(got).toEqual(ids);
    be.free(dst);
  });

  test("a file shorter than the tensor is an IO error naming the file", () => {
    const { path, offset } = writeTensorFile("short.bin", new Uint8Array(40), 10); // 55 bytes in all
    const dst = be.alloc(rows * cols * 4);
    const e = backendError(() => be.loadWeight(dst, DType.f32, path, offset, DType.f32, rows, cols, -1));
    expect(e.status).toBe(Status.io);
    expect(e.message).toContain(path);
    expect(e.message).toContain("[10, 374)");
    be.free(dst);
  });

  test("a missing file is an IO error, a small buffer or bad shard_dim an invalid argument", () => {
    const dst = be.alloc(16);
    const missing = join(dir, "missing.bin");
    const e = backendError(() => be.loadWeight(dst, DType.f32, missing, 0, DType.f32, 1, 4, -1));
    expect(e.status).toBe(Status.io);
    expect(e.message).toContain(missing);
    const { path } = writeTensorFile("ok.bin", new Uint8Array(64), 0);
    expect(backendError(() => be.loadWeight(dst, DType.f32, path, 0, DType.f32, 2, 4, -1)).status).toBe(Status.invalidArgument);
    expect(backendError(() => be.loadWeight(dst, DType.f32, path, 0, DType.f32, 1, 4, 2 as 0)).status).toBe(Status.invalidArgument);
    be.free(dst);
  });
});
