import { describe, expect, test } from "bun:test";
import { decode, encode } from "@msgpack/msgpack";
import { FrameDecoder, FrameEncoder, FrameTooLargeError, frameBytes, normalizeIntegers, strictDecoder } from "./frame.ts";

const concat = (parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.length));
  return out;
};

const messages = [
  { type: "hello", version: 1 },
  { type: "generate", id: "a", prompt: "ünïcödé ✓", params: { max_tokens: 3 } },
  {},
  { type: "output", id: 7, token_ids: Array.from({ length: 300 }, (_, i) => i), finished: true },
];
const stream = concat(messages.map((m) => new FrameEncoder().encode(m)));

/** Feeds chunks and decodes each payload at once, as the server and client do. */
function feed(dec: FrameDecoder, chunks: Uint8Array[]): unknown[] {
  return chunks.flatMap((c) => dec.push(c).map((p) => decode(p)));
}

describe("frame codec", () => {
  test("a frame is a 4-byte big-endian length then the payload", () => {
    const f = frameBytes(new Uint8Array(0x1234).fill(7));
    expect([...f.subarray(0, 4)]).toEqual([0, 0, 0x12, 0x34]);
    expect(f.length).toBe(4 + 0x1234);
    expect(f[4]).toBe(7);
  });

  test("several frames in one chunk all come out, in order", () => {
    expect(feed(new FrameDecoder(1 << 20), [stream])).toEqual(messages);
  });

  test("a split at every byte boundary reassembles the same frames", () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const got = feed(new FrameDecoder(1 << 20), [stream.subarray(0, cut), stream.subarray(cut)]);
      expect(got).toEqual(messages);
    }
  });

  test("one byte at a time, and uneven chunks, reassemble the same frames", () => {
    const bytes = Array.from(stream, (b) => new Uint8Array([b]));
    expect(feed(new FrameDecoder(1 << 20), bytes)).toEqual(messages);
    const uneven: Uint8Array[] = [];
    for (let at = 0, n = 1; at < stream.length; at += n, n = (n * 7) % 13 + 1) uneven.push(stream.subarray(at, at + n));
    expect(feed(new FrameDecoder(1 << 20), uneven)).toEqual(messages);
  });

  test("bytes of an unfinished frame are held until the rest comes", () => {
    const dec = new FrameDecoder(1 << 20);
    const one = new FrameEncoder().encode({ a: 1 });
    expect(dec.push(one.subarray(0, 3))).toEqual([]);
    expect(dec.bufferedBytes).toBe(3);
    expect(dec.push(one.subarray(3)).map((p) => decode(p))).toEqual([{ a: 1 }]);
    expect(dec.bufferedBytes).toBe(0);
  });

  test("a zero-length frame is a frame with an empty payload", () => {
    const got = new FrameDecoder(10).push(new Uint8Array([0, 0, 0, 0]));
    expect(got.map((p) => p.length)).toEqual([0]);
  });

  test("a header over the limit throws at once, before its payload arrives, and the decoder stays failed", () => {
    const dec = new FrameDecoder(100);
    expect(dec.push(frameBytes(new Uint8Array(100))).length).toBe(1); // exactly the limit is fine
    const err = (() => {
      try {
        dec.push(new Uint8Array([0, 0, 0, 101]));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(FrameTooLargeError);
    expect((err as FrameTooLargeError).length).toBe(101);
    expect(() => dec.push(frameBytes(new Uint8Array(1)))).toThrow(FrameTooLargeError);
  });

  test("a length near 2^32 is read as unsigned", () => {
    expect(() => new FrameDecoder(1 << 20).push(new Uint8Array([0xff, 0xff, 0xff, 0xff]))).toThrow(/4294967295 bytes/);
  });

  test("a bad limit is refused", () => {
    expect(() => new FrameDecoder(-1)).toThrow(RangeError);
    expect(() => new FrameDecoder(1.5)).toThrow(RangeError);
  });
});

describe("strict decoding", () => {
  test("maps with non-string keys are an error", () => {
    const intKey = new Uint8Array([0x81, 0x01, 0xa1, 0x78]); // {1: "x"}
    expect(() => strictDecoder().decode(intKey)).toThrow(/map keys must be strings/);
    expect(strictDecoder().decode(encode({ a: { b: 1 } }))).toEqual({ a: { b: 1 } });
  });

  test("trailing bytes after the value are an error", () => {
    const two = new Uint8Array([...encode({ a: 1 }), ...encode(2)]);
    expect(() => strictDecoder().decode(two)).toThrow();
  });

  test("64-bit integers keep their value; safe ones become numbers", () => {
    const big = 2n ** 63n + 5n;
    const v = normalizeIntegers(strictDecoder().decode(encode({ s: big, n: 2n ** 40n, l: [1n, -3n] }, { useBigInt64: true })));
    expect(v).toEqual({ s: big, n: 2 ** 40, l: [1, -3] });
  });
});
