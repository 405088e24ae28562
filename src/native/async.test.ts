// ABI 3 on the cpu backend: pinned host memory, asynchronous read-back, events and the
// decode-token scatter, plus their error reporting. Needs build/libvllmd_cpu.so (`make cpu`).
import { afterAll, describe, expect, test } from "bun:test";
import type { Pointer } from "bun:ffi";
import { openBackend } from "./backend.ts";
import { openVllmdLibrary } from "./ffi.ts";
import { findLibrary } from "./library.ts";
import { backendError, seededRandom, upload } from "./testing.ts";
import { type DeviceEvent, Status } from "./types.ts";

const be = openBackend("cpu");
afterAll(() => be.destroy());


/** Random i32 values in [-1000, 1000). */
function randomInts(n: number, rand: () => number): Int32Array {
  return Int32Array.from({ length: n }, () => Math.floor(rand() * 1000));
}

/** n distinct rows of [0, size), in random order (a partial Fisher-Yates shuffle). */
function distinctRows(n: number, size: number, rand: () => number): Int32Array {
  const all = Int32Array.from({ length: size }, (_, i) => i);
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(((rand() + 1) / 2) * (size - i));
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return all.slice(0, n);
}

describe("pinned host memory", () => {
  test("alloc gives 64-byte aligned memory that JS writes and reads; free detaches the view", () => {
    const h = be.hostAlloc(1000);
    expect(h.bytes).toBe(1000);
    expect(h.data.byteLength).toBe(1000);
    expect(h.ptr % 64).toBe(0);
    const v = new Int32Array(h.data);
    v.set(Int32Array.from({ length: 250 }, (_, i) => i * 7 - 3));
    expect(new Int32Array(h.data)[249]).toBe(249 * 7 - 3);
    be.hostFree(h);
    expect(h.data.byteLength).toBe(0);
    expect(v.length).toBe(0);
  });

  test("zero or negative bytes are invalid; a double free is refused with a clear error", () => {
    const zero = backendError(() => be.hostAlloc(0));
    expect(zero.status).toBe(Status.invalidArgument);
    expect(zero.message).toContain("vd_host_alloc: bytes is 0");
    expect(backendError(() => be.hostAlloc(-8)).message).toContain("non-negative");
    const h = be.hostAlloc(64);
    be.hostFree(h);
    const twice = backendError(() => be.hostFree(h));
    expect(twice.fn).toBe("vd_host_free");
    expect(twice.message).toContain("was freed");
  });

  test("the library itself rejects unknown pointers and second frees (raw ABI)", () => {
    const lib = openVllmdLibrary(findLibrary("cpu"));
    const out = new BigUint64Array(1);
    expect(lib.symbols.vd_context_create(0, 1, out)).toBe(0);
    const ctx = Number(out[0]);
    expect(lib.symbols.vd_host_alloc(ctx, 256, out)).toBe(0);
    const p = Number(out[0]) as Pointer;
    expect(lib.symbols.vd_host_free(ctx, p)).toBe(0);
    expect(lib.symbols.vd_host_free(ctx, p)).toBe(Status.invalidArgument);
    expect(lib.symbols.vd_last_error()).toContain("vd_host_free");
    expect(lib.symbols.vd_last_error()).toContain("not memory from vd_host_alloc");
    expect(lib.symbols.vd_host_alloc(ctx, 128, out)).toBe(0); // left for context destroy to free
    expect(lib.symbols.vd_event_create(ctx, out)).toBe(0); // likewise
    expect(lib.symbols.vd_context_destroy(ctx)).toBe(0);
    lib.close();
  });

  test("destroying the backend detaches the host buffers it still holds", () => {
    const other = openBackend("cpu");
    const h = other.hostAlloc(128);
    other.destroy();
    expect(h.data.byteLength).toBe(0);
  });
});

describe("async copies and events", () => {
  test("copyToHostAsync + eventRecord + eventSync read back what copyFromHost wrote, at offsets", () => {
    const data = randomInts(64, seededRandom(1));
    const dev = upload(be, data);
    be.copyFromHost(dev, 8 * 4, Int32Array.of(424242)); // element 8, written after the upload
    const h = be.hostAlloc(1024);
    const host = new Int32Array(h.data).fill(-1);
    const ev = be.eventCreate();
    be.copyToHostAsync(dev, 4 * 4, h, 100 * 4, 20 * 4); // elements 4..23 into host[100..120)
    be.eventRecord(ev);
    be.eventSync(ev);
    const want = data.slice(4, 24);
    want[4] = 424242;
    expect(host.subarray(100, 120)).toEqual(want);
    expect(host.subarray(0, 100).every((x) => x === -1)).toBe(true);
    expect(host.subarray(120).every((x) => x === -1)).toBe(true);
    be.eventDestroy(ev);
    be.hostFree(h);
    be.free(dev);
  });

  test("event handles are distinct, non-zero and below 2^53; a never-recorded event syncs at once", () => {
    const a = be.eventCreate();
    const b = be.eventCreate();
    for (const e of [a, b]) expect(Number.isSafeInteger(e) && e > 0).toBe(true);
    expect(a).not.toBe(b);
    be.eventSync(a);
    be.eventRecord(b);
    be.eventRecord(b); // re-recording moves the mark
    be.eventSync(b);
    be.eventDestroy(a);
    be.eventDestroy(b);
  });

  test("bad or destroyed event handles are invalid arguments naming the function", () => {
    const bad = 987_654_321 as DeviceEvent;
    const calls = [
      ["vd_event_record", () => be.eventRecord(bad)],
      ["vd_event_sync", () => be.eventSync(bad)],
      ["vd_event_destroy", () => be.eventDestroy(bad)],
    ] as const;
    for (const [fn, call] of calls) {
      const e = backendError(call);
      expect(e.status).toBe(Status.invalidArgument);
      expect(e.fn).toBe(fn);
      expect(e.message).toEndWith(`${fn}: bad event handle 987654321`);
    }
    const ev = be.eventCreate();
    be.eventDestroy(ev);
    expect(backendError(() => be.eventSync(ev)).message).toContain(`bad event handle ${ev}`);
  });

  test("size and range errors of copyToHostAsync", () => {
    const dev = be.alloc(64);
    const h = be.hostAlloc(32);
    const past = backendError(() => be.copyToHostAsync(dev, 0, h, 16, 20));
    expect(past.message).toContain("outside the 32-byte host buffer");
    expect(backendError(() => be.copyToHostAsync(dev, -4, h, 0, 4)).message).toContain("srcOffset -4");
    const src = backendError(() => be.copyToHostAsync(dev, 48, h, 0, 32));
    expect(src.status).toBe(Status.invalidArgument);
    expect(src.message).toContain("vd_copy_to_host_async(src): range [48, 80) outside buffer");
    expect(backendError(() => be.copyToHostAsync(123456789, 0, h, 0, 4)).message).toContain("bad buffer handle 123456789");
    be.copyToHostAsync(dev, 64, h, 32, 0); // an empty copy at the very ends is fine
    be.hostFree(h);
    expect(backendError(() => be.copyToHostAsync(dev, 0, h, 0, 4)).message).toContain("was freed");
    be.free(dev);
  });
});

describe("scatterTokens", () => {
  /** One random case on the backend and in a plain JS loop; returns both token arrays. */
  function scatterCase(n: number, seed: number): { got: Int32Array; want: Int32Array } {
    const rand = seededRandom(seed);
    const [nIds, nSrc] = [50, 30];
    const ids = randomInts(nIds, rand);
    const src = randomInts(nSrc, rand);
    const dstRows = distinctRows(n, nIds, rand);
    const srcRows = Int32Array.from({ length: n }, () => Math.floor(((rand() + 1) / 2) * nSrc)); // may repeat
    const bufs = [ids, dstRows, src, srcRows].map((a) => upload(be, a));
    be.scatterTokens(bufs[0]!, bufs[1]!, bufs[2]!, bufs[3]!, n);
    const got = new Int32Array(nIds);
    be.copyToHost(bufs[0]!, 0, got);
    for (const b of bufs) be.free(b);
    const want = ids.slice();
    // A negative source (a row the sampler could not sample) arrives as token 0; rand() is in
    // [-1, 1), so about half the sources here are negative.
    for (let j = 0; j < n; j++) want[dstRows[j]!] = Math.max(0, src[srcRows[j]!]!);
    return { got, want };
  }

  for (const n of [0, 1, 7, 30, 50])
    test(`matches a JS loop on random data, n = ${n}, leaving other rows untouched`, () => {
      for (const seed of [n * 10 + 1, n * 10 + 2]) {
        const { got, want } = scatterCase(n, seed);
        expect(got).toEqual(want);
      }
    });

  test("size, count and row errors", () => {
    const ids = upload(be, new Int32Array(8));
    const rows = upload(be, Int32Array.of(0, 1, 2, 3));
    const bad = upload(be, Int32Array.of(0, 1, 99, 3));
    const small = be.alloc(8);
    const err = (fn: () => void) => backendError(fn).message;
    expect(err(() => be.scatterTokens(ids, rows, ids, rows, -1))).toContain("vd_scatter_tokens: n is -1");
    expect(err(() => be.scatterTokens(ids, small, ids, rows, 4))).toContain("vd_scatter_tokens(dst_rows): buffer");
    expect(err(() => be.scatterTokens(ids, rows, ids, small, 4))).toContain("vd_scatter_tokens(src_rows): buffer");
    expect(err(() => be.scatterTokens(ids, bad, ids, rows, 4))).toContain("dst_rows[2] = 99 is outside [0, 8)");
    expect(err(() => be.scatterTokens(ids, rows, small, bad, 4))).toContain("src_rows[2] = 99 is outside [0, 2)");
    expect(err(() => be.scatterTokens(ids, rows, 123456789, rows, 0))).toContain("vd_scatter_tokens(src): bad buffer handle");
    for (const b of [ids, rows, bad, small]) be.free(b);
  });
});
