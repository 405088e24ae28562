import { describe, expect, test } from "bun:test";
import { WriteQueue } from "./write-queue.ts";

/** A socket that takes at most `room` bytes until drained, as Bun's does when the kernel buffer fills. */
class TightSink {
  written: number[] = [];
  calls = 0;
  room: number;
  closed = false;
  constructor(room: number) {
    this.room = room;
  }
  write(data: Uint8Array): number {
    this.calls++;
    if (this.closed) return -1;
    const n = Math.min(this.room, data.length);
    this.written.push(...data.subarray(0, n));
    this.room -= n;
    return n;
  }
}

const tick = () => new Promise<void>((r) => queueMicrotask(r));
const bytes = (from: number, n: number) => Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff);

describe("WriteQueue", () => {
  test("frames queued in one tick go out in one write", async () => {
    const sink = new TightSink(1 << 20);
    const q = new WriteQueue(sink, { highWaterBytes: 1 << 20, onOverflow: () => {} });
    for (let i = 0; i < 10; i++) q.push(bytes(i * 10, 10));
    expect(sink.calls).toBe(0);
    await tick();
    expect(sink.calls).toBe(1);
    expect(sink.written).toEqual([...bytes(0, 100)]);
  });

  test("what the socket did not take is kept, in order, and sent on drain", async () => {
    const sink = new TightSink(7);
    const q = new WriteQueue(sink, { highWaterBytes: 1 << 20, onOverflow: () => {} });
    q.push(bytes(0, 5));
    q.push(bytes(5, 5));
    await tick();
    expect(sink.written).toEqual([...bytes(0, 7)]);
    expect(q.pendingBytes).toBe(3);
    q.push(bytes(10, 4)); // queued behind the remainder; no write until drain
    await tick();
    expect(sink.written.length).toBe(7);
    for (let round = 0; q.pendingBytes > 0 && round < 10; round++) {
      sink.room = 2;
      q.onDrain();
    }
    expect(sink.written).toEqual([...bytes(0, 14)]);
    expect(q.pendingBytes).toBe(0);
  });

  test("a backlog larger than one write goes out whole across drains", async () => {
    const sink = new TightSink(100_000);
    const q = new WriteQueue(sink, { highWaterBytes: 1 << 24, onOverflow: () => {} });
    const total = 1_000_000;
    for (let at = 0; at < total; at += 1000) q.push(bytes(at, 1000));
    await tick();
    while (q.pendingBytes > 0) {
      sink.room = 100_000;
      q.onDrain();
    }
    expect(sink.written.length).toBe(total);
    expect(sink.written.every((b, i) => b === (i & 0xff))).toBe(true);
  });

  test("whenEmpty fires once everything queued is written", async () => {
    const sink = new TightSink(3);
    const q = new WriteQueue(sink, { highWaterBytes: 100, onOverflow: () => {} });
    let fired = 0;
    q.whenEmpty(() => fired++);
    expect(fired).toBe(1); // nothing queued
    q.push(bytes(0, 6));
    q.whenEmpty(() => fired++);
    await tick();
    expect(fired).toBe(1);
    sink.room = 3;
    q.onDrain();
    expect(fired).toBe(2);
  });

  test("a peer that stops reading trips onOverflow once", async () => {
    const sink = new TightSink(0);
    let overflows = 0;
    const q = new WriteQueue(sink, { highWaterBytes: 25, onOverflow: () => overflows++ });
    for (let i = 0; i < 10; i++) q.push(bytes(0, 10));
    await tick();
    expect(overflows).toBe(1);
  });

  test("a closed socket drops the queue and later pushes", async () => {
    const sink = new TightSink(4);
    const q = new WriteQueue(sink, { highWaterBytes: 100, onOverflow: () => {} });
    q.push(bytes(0, 10));
    await tick();
    sink.closed = true;
    q.onDrain();
    expect(q.pendingBytes).toBe(0);
    q.push(bytes(0, 10));
    await tick();
    expect(sink.written.length).toBe(4);
  });
});
