// The cpu backend through bun:ffi: contexts, buffers, views, copies and error reporting.
// Needs build/libvllmd_cpu.so (`make cpu`; `make test` builds it).
import { afterAll, describe, expect, test } from "bun:test";
import { openBackend } from "./backend.ts";
import { backendError, downloadF32, upload } from "./testing.ts";
import { DType, Status } from "./types.ts";

const be = openBackend("cpu");
afterAll(() => be.destroy());


describe("library and context", () => {
  test("name, tp and memory info", () => {
    expect(be.name).toBe("cpu");
    expect(be.tp).toBe(1);
    const mem = be.memInfo();
    expect(mem.total).toBeGreaterThan(0);
    expect(mem.free).toBeGreaterThan(0);
    expect(mem.free).toBeLessThanOrEqual(mem.total);
    be.sync();
  });

  test("vd_capabilities: the cpu reports no graphs, synchronous ops in host memory, f32 activations", () => {
    expect([be.fastW8a8, be.hasGraphs, be.runsAsync, be.deviceMemory]).toEqual([false, false, false, false]);
    expect([DType.f32, DType.f16, DType.bf16].map((d) => be.activationDtype(d))).toEqual([DType.f32, DType.f32, DType.f32]);
  });

  test("graphs are unsupported on cpu, and say so", () => {
    expect(backendError(() => be.graphBegin()).status).toBe(Status.unsupported);
    const end = backendError(() => be.graphEnd());
    expect(end.message).toContain("not capturing");
    expect(backendError(() => be.graphLaunch(12345)).message).toContain("bad graph handle 12345");
    expect(backendError(() => be.graphDestroy(12345)).status).toBe(Status.invalidArgument);
  });

  test("tp outside 1..64 is refused by name (tensor-parallel.test.ts covers tp > 1)", () => {
    for (const tp of [0, 65]) {
      const e = backendError(() => openBackend("cpu", { tp }));
      expect(e.status).toBe(Status.invalidArgument);
      expect(e.message).toContain(`tp ${tp}`);
    }
  });

  test("a destroyed context rejects further calls", () => {
    const other = openBackend("cpu");
    const buf = other.alloc(16);
    other.destroy();
    expect(backendError(() => other.free(buf)).status).toBe(Status.invalidArgument);
  });

  test("a missing library directory gives a clear error", () => {
    expect(() => openBackend("cpu", { libDir: "/nonexistent/vllmd" })).toThrow(/libvllmd_cpu\.so not found.*\n.*\/nonexistent\/vllmd/);
  });
});

describe("buffers and copies", () => {
  test("host round trip, device copy and views", () => {
    const data = Float32Array.from({ length: 64 }, (_, i) => i * 0.5);
    const a = upload(be, data);
    expect(downloadF32(be, a, 64)).toEqual(data);

    const b = be.alloc(64 * 4);
    be.copy(b, 0, a, 32 * 4, 32 * 4); // second half of a to the start of b
    be.copy(b, 32 * 4, a, 0, 32 * 4);
    const got = downloadF32(be, b, 64);
    expect(got.subarray(0, 32)).toEqual(data.subarray(32));
    expect(got.subarray(32)).toEqual(data.subarray(0, 32));

    const v = be.view(a, 8 * 4, 4 * 4); // elements 8..11
    expect(downloadF32(be, v, 4)).toEqual(data.subarray(8, 12));
    be.copyFromHost(v, 4, new Float32Array([-1])); // writes element 9 of a
    expect(downloadF32(be, a, 64)[9]).toBe(-1);
    be.free(v);
    be.free(a);
    be.free(b);
  });

  test("partial copies use the byte count and offsets", () => {
    const a = upload(be, new Int32Array([1, 2, 3, 4]));
    be.copyFromHost(a, 8, new Int32Array([7, 8, 9]), 4); // only the first element, into slot 2
    const out = new Int32Array(4).fill(-9);
    be.copyToHost(a, 4, out, 8); // slots 1 and 2 into out[0..1]
    expect(Array.from(out)).toEqual([2, 7, -9, -9]);
    be.free(a);
  });

  test("freeing a buffer invalidates its views", () => {
    const a = be.alloc(32);
    const v = be.view(a, 0, 16);
    const vv = be.view(v, 8, 8);
    be.free(a);
    expect(backendError(() => be.copyToHost(v, 0, new Uint8Array(4))).status).toBe(Status.invalidArgument);
    expect(backendError(() => be.free(vv)).status).toBe(Status.invalidArgument);
  });

  test("an allocation larger than the machine's memory is out of memory", () => {
    const e = backendError(() => be.alloc(2 ** 52));
    expect(e.status).toBe(Status.outOfMemory);
    expect(e.message).toContain("vd_buffer_alloc");
  });

  test("out-of-range copies and views are rejected", () => {
    const a = be.alloc(16);
    const e = backendError(() => be.copyFromHost(a, 8, new Uint8Array(16)));
    expect(e.status).toBe(Status.invalidArgument);
    expect(e.message).toContain("vd_copy_from_host");
    expect(backendError(() => be.view(a, 8, 9)).status).toBe(Status.invalidArgument);
    expect(backendError(() => be.copy(a, 0, a, 12, 8)).status).toBe(Status.invalidArgument);
    expect(backendError(() => be.copyToHost(a, 0, new Uint8Array(4), 8)).status).toBe(Status.invalidArgument);
    be.free(a);
  });

  test("a bad handle is an invalid argument naming the function and argument", () => {
    const e = backendError(() => be.free(123456789));
    expect(e.status).toBe(Status.invalidArgument);
    expect(e.fn).toBe("vd_buffer_free");
    expect(e.message).toContain("123456789");
    const out = be.alloc(16);
    const g = backendError(() => be.gemm(out, 987654321, out, 0, 1, 1, 1, DType.f32, DType.f32));
    expect(g.status).toBe(Status.invalidArgument);
    expect(g.message).toContain("vd_gemm(x)");
    be.free(out);
  });

  test("non-f32 activations are unsupported, bad shapes and dtypes invalid", () => {
    const buf = be.alloc(1024);
    const e = backendError(() => be.gemm(buf, buf, buf, 0, 2, 2, 2, DType.bf16, DType.f32));
    expect(e.status).toBe(Status.unsupported);
    expect(e.message).toContain("act_dtype");
    expect(backendError(() => be.siluMul(buf, buf, 1, 4, DType.f16)).status).toBe(Status.unsupported);
    expect(backendError(() => be.gemm(buf, buf, buf, 0, -1, 2, 2, DType.f32, DType.f32)).message).toContain("m is -1");
    expect(backendError(() => be.gemm(buf, buf, buf, 0, 2, 2, 2, DType.f32, DType.i32)).message).toContain("w_dtype");
    const big = backendError(() => be.gemm(buf, buf, buf, 0, 64, 64, 64, DType.f32, DType.f32));
    expect(big.message).toContain("holds 1024 bytes");
    be.free(buf);
  });
});
