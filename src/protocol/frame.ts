// Framing of the msgpack protocol: a 4-byte big-endian unsigned length, then that many bytes of
// one msgpack value. Streams (TCP, unix sockets) split and merge frames anywhere, so the decoder
// reassembles them from chunks of any size. Shared by the server and the client library, so it
// must run under Node as well as Bun (no Bun APIs here).
import { Decoder, Encoder } from "@msgpack/msgpack";

export const FRAME_HEADER_BYTES = 4;
const SHRINK_ABOVE_BYTES = 1 << 20;
/** The most a 4-byte length can announce. */
export const MAX_FRAME_LENGTH = 0xffffffff;

export class FrameTooLargeError extends Error {
  constructor(
    readonly length: number,
    readonly limit: number,
  ) {
    super(`frame of ${length} bytes exceeds the limit of ${limit} bytes`);
    this.name = "FrameTooLargeError";
  }
}

/** Prefixes a payload with its length. */
export function frameBytes(payload: Uint8Array): Uint8Array {
  if (payload.length > MAX_FRAME_LENGTH) throw new FrameTooLargeError(payload.length, MAX_FRAME_LENGTH);
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length, false);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/** Encodes values as frames. forceFloat32 halves logprob bytes; the engine computes them in f32 anyway. */
export class FrameEncoder {
  private readonly encoder: Encoder;

  constructor(opts: { forceFloat32?: boolean } = {}) {
    this.encoder = new Encoder({ ignoreUndefined: true, useBigInt64: true, forceFloat32: opts.forceFloat32 ?? false });
  }

  encode(value: unknown): Uint8Array {
    return frameBytes(this.encoder.encodeSharedRef(value));
  }
}

/**
 * A msgpack decoder for untrusted input: maps must have string keys (a key of any other type is a
 * decode error, so every decoded map is a plain object of strings), and 64-bit integers decode as
 * bigint so that a 64-bit seed keeps its value; `normalizeIntegers` turns the safe ones back into numbers.
 */
export function strictDecoder(): Decoder {
  return new Decoder({
    useBigInt64: true,
    mapKeyConverter: (key: unknown) => {
      if (typeof key !== "string") throw new TypeError(`map keys must be strings, got ${typeof key}`);
      return key;
    },
  });
}

/** Replaces bigints that fit a JS number exactly by numbers, recursively; leaves larger ones as bigint. */
export function normalizeIntegers(v: unknown): unknown {
  if (typeof v === "bigint") return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  if (Array.isArray(v)) return v.map(normalizeIntegers);
  if (v !== null && typeof v === "object" && !(v instanceof Uint8Array) && !(v instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = normalizeIntegers(x);
    return out;
  }
  return v;
}

/**
 * Reassembles frames from stream chunks. push() returns the payloads completed by a chunk, as
 * views into an internal buffer: decode each before the next push() (both ends do so at once).
 * A header announcing more than maxFrameBytes throws FrameTooLargeError before any of that frame
 * is buffered, so a hostile length cannot make us allocate; the decoder is unusable afterwards.
 */
export class FrameDecoder {
  private buf = new Uint8Array(0);
  private start = 0;
  private end = 0;
  private failed: FrameTooLargeError | null = null;

  constructor(readonly maxFrameBytes: number) {
    if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < 0 || maxFrameBytes > MAX_FRAME_LENGTH) {
      throw new RangeError(`maxFrameBytes must be an integer in [0, ${MAX_FRAME_LENGTH}], got ${maxFrameBytes}`);
    }
  }

  /** Bytes received that do not yet make a whole frame. */
  get bufferedBytes(): number {
    return this.end - this.start;
  }

  push(chunk: Uint8Array): Uint8Array[] {
    if (this.failed) throw this.failed;
    this.append(chunk);
    const frames: Uint8Array[] = [];
    while (this.end - this.start >= FRAME_HEADER_BYTES) {
      const b = this.buf, s = this.start;
      const len = ((b[s]! << 24) >>> 0) + (b[s + 1]! << 16) + (b[s + 2]! << 8) + b[s + 3]!;
      if (len > this.maxFrameBytes) throw (this.failed = new FrameTooLargeError(len, this.maxFrameBytes));
      if (this.end - s - FRAME_HEADER_BYTES < len) break;
      frames.push(b.subarray(s + FRAME_HEADER_BYTES, s + FRAME_HEADER_BYTES + len));
      this.start = s + FRAME_HEADER_BYTES + len;
    }
    return frames;
  }

  /** Appends a chunk, first moving the unread tail to the front (the views handed out last time are spent). */
  private append(chunk: Uint8Array): void {
    const pending = this.end - this.start;
    if (pending === 0 && this.buf.length > SHRINK_ABOVE_BYTES) this.buf = new Uint8Array(0); // one big frame should not pin its buffer
    if (pending + chunk.length > this.buf.length) {
      const grown = new Uint8Array(Math.max(pending + chunk.length, this.buf.length * 2, 4096));
      grown.set(this.buf.subarray(this.start, this.end));
      this.buf = grown;
    } else if (this.start > 0) {
      this.buf.copyWithin(0, this.start, this.end);
    }
    this.start = 0;
    this.end = pending;
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }
}
