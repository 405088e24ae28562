// ABI 3 on the backend under test (cuda) against the cpu backend: pinned host memory, async
// read-back behind events (really asynchronous: the copy lands only when the queued work before it
// is done), the decode-token scatter (eagerly, inside a graph, and with a bad row), and the same
// errors on both. Skipped unless VLLMD_GPU_TESTS=1 (see harness.ts).
import { expect, test } from "bun:test";
import { seededRandom } from "../../src/native/testing.ts";
import { type Backend, BackendError, type DeviceEvent, type HostBuf, Status } from "../../src/native/types.ts";
import { backends, DEVICE, expectSameBytes, expectStatusOnBoth, gpuSuite, run } from "./harness.ts";

const inv = Status.invalidArgument;

/** Random i32 values in [0, 2^31) (token-id-like, any bits will do). */
function randomInts(n: number, rand: () => number): Int32Array {
  return Int32Array.from({ length: n }, () => Math.floor(((rand() + 1) / 2) * 2 ** 31));
}

/** n distinct rows of [0, size) in random order, and n rows of [0, srcSize) that may repeat. */
function scatterRows(n: number, size: number, srcSize: number, rand: () => number): [Int32Array, Int32Array] {
  const all = Int32Array.from({ length: size }, (_, i) => i);
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(((rand() + 1) / 2) * (size - i));
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return [all.slice(0, n), Int32Array.from({ length: n }, () => Math.floor(((rand() + 1) / 2) * srcSize))];
}

/** Runs fn with a host buffer of `bytes` on `be`, freeing it afterwards. */
function withHost<T>(be: Backend, bytes: number, fn: (h: HostBuf) => T): T {
  const h = be.hostAlloc(bytes);
  try {
    return fn(h);
  } finally {
    be.hostFree(h);
  }
}

/** Runs fn with a fresh event on `be`, destroying it afterwards. */
function withEvent<T>(be: Backend, fn: (e: DeviceEvent) => T): T {
  const e = be.eventCreate();
  try {
    return fn(e);
  } finally {
    be.eventDestroy(e);
  }
}

/** Uploads, three async read-backs at offsets into one host buffer, one event; returns its bytes. */
function asyncReadBack(be: Backend): Uint8Array {
  const data = randomInts(4096, seededRandom(5));
  return run(be, (b) =>
    withHost(be, 20_000, (h) =>
      withEvent(be, (e) => {
        new Uint8Array(h.data).fill(0xcd);
        const dev = b.raw(data);
        be.copyFromHost(dev, 40, Int32Array.of(7, 8, 9));
        be.copyToHostAsync(dev, 0, h, 0, 4096 * 4);
        be.copyToHostAsync(dev, 36, h, 16_388, 20);
        be.copyToHostAsync(dev, 16_380, h, 19_996, 4); // the last element into the last 4 bytes
        be.eventRecord(e);
        be.eventSync(e);
        return new Uint8Array(h.data).slice();
      }),
    ),
  );
}

/** One scatter on `be` with the given arrays; returns token_ids afterwards. */
function scatterOn(be: Backend, ids: Int32Array, dstRows: Int32Array, src: Int32Array, srcRows: Int32Array): Uint8Array {
  return run(be, (b) => {
    const out = b.raw(ids);
    be.scatterTokens(out, b.raw(dstRows), b.raw(src), b.raw(srcRows), dstRows.length);
    return b.bytes(out, ids.byteLength);
  });
}

gpuSuite("async parity", () => {
  test("host memory: JS writes and reads it, free detaches it, zero bytes and double frees fail on both", () => {
    const { dev } = backends();
    withHost(dev, 4096, (h) => {
      const v = new Float64Array(h.data);
      v.fill(Math.PI);
      expect(new Float64Array(h.data)[511]).toBe(Math.PI);
    });
    expectStatusOnBoth(inv, "hostAlloc(0)", (be) => be.hostAlloc(0));
    const e = expectStatusOnBoth(inv, "double hostFree", (be) => {
      const h = be.hostAlloc(64);
      be.hostFree(h);
      be.hostFree(h);
    });
    expect(e.message).toContain("was freed");
  });

  test("async read-backs at offsets give the cpu's bytes", () => {
    const { cpu, dev } = backends();
    const want = asyncReadBack(cpu);
    expectSameBytes(asyncReadBack(dev), want, 4, "async read-back");
    expect(new Int32Array(want.buffer, 16_388, 5)[1]).toBe(7); // the cpu oracle itself is right
  });

  test("eventSync returns once the copy queued after long work has landed, not before", () => {
    const { dev } = backends();
    // cuda: 64 copies of 256 MiB are ~15 ms of device work, queued in well under a millisecond.
    const [bytes, rounds] = DEVICE === "cuda" ? [256 * 2 ** 20, 64] : [2 ** 20, 4];
    const marker = randomInts(4, seededRandom(11));
    const [notYet, after, ms] = run(dev, (b) =>
      withHost(dev, 16, (h) =>
        withEvent(dev, (e) => {
          const [a, c] = [dev.alloc(bytes), dev.alloc(bytes)];
          const host = new Int32Array(h.data).fill(-1);
          dev.copyFromHost(a, 0, marker);
          for (let i = 0; i < rounds; i++) dev.copy(i % 2 ? a : c, 0, i % 2 ? c : a, 0, bytes);
          dev.copyToHostAsync(a, 0, h, 0, 16); // rounds is even: the marker is back in a
          dev.eventRecord(e);
          const seen = host.slice();
          const t0 = performance.now();
          dev.eventSync(e);
          const res = [seen, host.slice(), performance.now() - t0] as const;
          dev.free(a);
          dev.free(c);
          return res;
        }),
      ),
    );
    console.log(`async parity: eventSync waited ${ms.toFixed(2)} ms for ${rounds} copies of ${bytes >> 20} MiB`);
    expect(Array.from(after)).toEqual(Array.from(marker));
    if (DEVICE === "cuda") expect(Array.from(notYet)).toEqual([-1, -1, -1, -1]);
  }, 60_000);

  test("a never-recorded event syncs at once; bad event handles fail on both, naming the function", () => {
    withEvent(backends().dev, (e) => backends().dev.eventSync(e));
    const bad = 987_654_321 as DeviceEvent;
    for (const [fn, call] of [
      ["vd_event_record", (be: Backend) => be.eventRecord(bad)],
      ["vd_event_sync", (be: Backend) => be.eventSync(bad)],
      ["vd_event_destroy", (be: Backend) => be.eventDestroy(bad)],
    ] as const)
      expect(expectStatusOnBoth(inv, fn, call).message).toEndWith(`${fn}: bad event handle 987654321`);
  });

  test("copyToHostAsync and scatterTokens size errors fail on both", () => {
    expectStatusOnBoth(inv, "async copy past the source", (be) =>
      run(be, (b) => withHost(be, 64, (h) => be.copyToHostAsync(b.raw(new Uint8Array(32)), 16, h, 0, 32))),
    );
    const scatter = (n: number, rowsLen: number) => (be: Backend) =>
      run(be, (b) => {
        const ids = b.raw(new Int32Array(16));
        const rows = b.raw(new Int32Array(rowsLen));
        be.scatterTokens(ids, rows, ids, rows, n);
      });
    expectStatusOnBoth(inv, "scatter with n < 0", scatter(-1, 4));
    const small = expectStatusOnBoth(inv, "scatter with row lists shorter than n", scatter(5, 4));
    expect(small.message).toContain("vd_scatter_tokens(dst_rows)");
  });

  for (const [n, size, srcSize] of [[0, 8, 8], [1, 8, 3], [37, 64, 40], [5000, 8192, 6000]] as const)
    test(`scatterTokens equals the cpu's, n = ${n} of ${size} rows`, () => {
      const rand = seededRandom(n + size);
      const ids = randomInts(size, rand);
      const src = randomInts(srcSize, rand);
      const [dstRows, srcRows] = scatterRows(n, size, srcSize, rand);
      const { cpu, dev } = backends();
      const want = scatterOn(cpu, ids, dstRows, src, srcRows);
      expectSameBytes(scatterOn(dev, ids, dstRows, src, srcRows), want, 4, `scatter n=${n}`);
      if (n > 0) expect(new Int32Array(want.buffer)[dstRows[0]!]).toBe(src[srcRows[0]!]!);
    });

  test("a row outside its buffer fails on both (cpu at the call, cuda at the next eventSync)", () => {
    const err = expectStatusOnBoth(inv, "scatter with a bad row", (be) =>
      run(be, (b) =>
        withEvent(be, (e) => {
          const [ids, src] = [b.raw(new Int32Array(8)), b.raw(Int32Array.of(5))];
          be.scatterTokens(ids, b.raw(Int32Array.of(1, 8)), src, b.raw(Int32Array.of(0, 0)), 2);
          be.eventRecord(e);
          be.eventSync(e);
        }),
      ),
    );
    expect(err.message).toContain("vd_scatter_tokens");
    backends().dev.sync(); // the fault was taken: the context is clean again
  });

  if (DEVICE === "cuda")
    test("while capturing: scatter is recorded and replays on new rows; host copies, events and host memory fail", () => {
      const { cpu, dev } = backends();
      const rand = seededRandom(99);
      const [ids, src] = [randomInts(256, rand), randomInts(100, rand)];
      const [dstA, srcA] = scatterRows(64, 256, 100, rand);
      const [dstB, srcB] = scatterRows(64, 256, 100, rand);
      const got = run(dev, (b) =>
        withHost(dev, 64, (h) =>
          withEvent(dev, (e) => {
            const [out, s, dr, sr] = [b.raw(ids), b.raw(src), b.raw(dstA), b.raw(srcA)];
            dev.graphBegin();
            const refused: BackendError[] = [];
            for (const call of [() => dev.eventRecord(e), () => dev.eventSync(e), () => dev.copyToHostAsync(s, 0, h, 0, 4), () => dev.hostAlloc(64)])
              try {
                call();
              } catch (x) {
                if (x instanceof BackendError) refused.push(x);
              }
            dev.scatterTokens(out, dr, s, sr, 64);
            const g = dev.graphEnd();
            expect(refused.map((x) => x.status)).toEqual([inv, inv, inv, inv]);
            for (const x of refused) expect(x.message).toContain("capturing");
            dev.copyFromHost(dr, 0, dstB); // the graph reads the rows when it runs
            dev.copyFromHost(sr, 0, srcB);
            dev.graphLaunch(g);
            const bytes = b.bytes(out, ids.byteLength);
            dev.graphDestroy(g);
            return bytes;
          }),
        ),
      );
      expectSameBytes(got, scatterOn(cpu, ids, dstB, src, srcB), 4, "captured scatter");
    });
});
