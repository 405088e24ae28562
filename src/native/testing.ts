// Helpers for the native backend tests: seeded random data, weight encodings, relative error,
// and device upload/download shorthands. Test-only; nothing in the engine imports this.
import { thrownBy } from "../testing/thrown.ts";
import { type Backend, BackendError, type Buf, DType } from "./types.ts";

/** A seeded uniform generator on [-1, 1) (mulberry32), so a failing test reproduces. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

export function randomF32(n: number, rand: () => number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rand() * scale;
  return out;
}

/** ||out - ref|| / ||ref|| over all elements (NaN if out has a NaN). */
export function relativeError(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (out.length !== ref.length) throw new Error(`length ${out.length} vs reference ${ref.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = (out[i] as number) - (ref[i] as number);
    num += d * d;
    den += (ref[i] as number) ** 2;
  }
  return Math.sqrt(num / den);
}

const toBf16Bits = (f: Float32Array): Uint16Array<ArrayBuffer> => {
  const bits = new Uint32Array(f.buffer, f.byteOffset, f.length);
  const out = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) {
    const u = bits[i] as number;
    out[i] = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff; // round to nearest even (no NaNs here)
  }
  return out;
};

/**
 * Encodes f32 values as `dtype` and returns the raw bytes together with the values the encoding
 * really holds (as f32), so a reference can use exactly what the backend reads.
 */
export function encodeWeights(values: Float32Array, dtype: DType): { bytes: Uint8Array<ArrayBuffer>; exact: Float32Array } {
  if (dtype === DType.f32) return { bytes: new Uint8Array(Float32Array.from(values).buffer), exact: values.slice() };
  if (dtype === DType.f16) {
    const h = Float16Array.from(values);
    return { bytes: new Uint8Array(h.buffer), exact: Float32Array.from(h) };
  }
  if (dtype !== DType.bf16) throw new Error(`encodeWeights: dtype ${dtype} is not a float type`);
  const b = toBf16Bits(values);
  const exact = new Float32Array(new Uint32Array(Array.from(b, (x) => x << 16)).buffer);
  return { bytes: new Uint8Array(b.buffer), exact };
}

/** Allocates a device buffer holding a copy of `data`. */
export function upload(be: Backend, data: ArrayBufferView): Buf {
  const buf = be.alloc(Math.max(data.byteLength, 1));
  be.copyFromHost(buf, 0, data);
  return buf;
}

/** Allocates an f32 device buffer of n elements filled with NaN, so unwritten outputs show. */
export function poisoned(be: Backend, n: number): Buf {
  return upload(be, new Float32Array(n).fill(Number.NaN));
}

export function downloadF32(be: Backend, buf: Buf, n: number): Float32Array {
  const out = new Float32Array(n);
  be.copyToHost(buf, 0, out);
  return out;
}

/** True if the two arrays hold the same bits. */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return ua.every((x, i) => x === ub[i]);
}

/** A cos_sin table as vllmd.h lays it out: row p holds cos(p f_i) for i < dim/2, then sin(p f_i). */
export function cosSinTable(maxPos: number, dim: number, theta: number): Float32Array {
  const t = new Float32Array(maxPos * dim);
  for (let p = 0; p < maxPos; p++)
    for (let i = 0; i < dim / 2; i++) {
      const angle = p * theta ** ((-2 * i) / dim);
      t[p * dim + i] = Math.cos(angle);
      t[p * dim + dim / 2 + i] = Math.sin(angle);
    }
  return t;
}

/** Runs fn and returns the BackendError it throws (failing the test if it throws none). */
export const backendError = (fn: () => void): BackendError => thrownBy(BackendError, fn);
