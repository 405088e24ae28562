// Shared ground of the GPU parity tests: the VLLMD_GPU_TESTS switch, the cpu backend (the oracle)
// and the backend under test side by side, device I/O in any float dtype, and the comparisons.
// Test-only; nothing in the engine imports this.
import { afterAll, describe, test } from "bun:test";
import { openBackend } from "../../src/native/backend.ts";
import { type Backend, BackendError, type Buf, DType, dtypeBytes } from "../../src/native/types.ts";

export const GPU_TESTS = process.env.VLLMD_GPU_TESTS === "1";

/**
 * The backend checked against cpu: cuda, or cpu itself when VLLMD_GPU_BACKEND=cpu, which runs
 * the f32 cases of these tests on a machine without a GPU to check the tests themselves.
 */
export const DEVICE: "cuda" | "cpu" = process.env.VLLMD_GPU_BACKEND === "cpu" ? "cpu" : "cuda";

/** Activation dtypes under test: the cpu backend computes in f32 only. */
export const ACT_DTYPES: DType[] = DEVICE === "cpu" ? [DType.f32] : [DType.f32, DType.bf16, DType.f16];

export const dtypeName = (d: DType): string => ["f32", "f16", "bf16", "i32", "fp8e4m3"][d] ?? `dtype ${d}`;

/**
 * Relative error allowed against the cpu result computed from the same (rounded) inputs: f32
 * kernels differ from cpu/ only in summation order (~1e-7 per sum); with bf16/f16 activations
 * the output itself is rounded to 8 (bf16) or 11 (f16) bits, ~2e-3 relative, plus half-precision
 * intermediates inside the kernels, so 1e-2 is the issue's upper bound for bf16 operands.
 */
export const tolerance = (act: DType): number => (act === DType.f32 ? 1e-5 : 1e-2);

interface Pair {
  cpu: Backend;
  dev: Backend;
}
let pair: Pair | null = null;

/** The cpu backend and the backend under test, opened on first use; throws if either cannot open. */
export function backends(): Pair {
  if (pair) return pair;
  const cpu = openBackend("cpu");
  try {
    pair = { cpu, dev: openBackend(DEVICE) };
  } catch (e) {
    cpu.destroy();
    throw new Error(`VLLMD_GPU_TESTS=1 but the ${DEVICE} backend does not open: ${(e as Error).message}`);
  }
  return pair;
}

function closeBackends(): void {
  pair?.cpu.destroy();
  pair?.dev.destroy();
  pair = null;
}

/** Worst relative error per case, printed after each file so the margins are visible in the log. */
const worst = new Map<string, number>();
export function record(what: string, err: number): void {
  worst.set(what, Math.max(worst.get(what) ?? 0, err));
}

/**
 * Declares a file's GPU suite: skipped (with a test that says why) unless VLLMD_GPU_TESTS=1;
 * when enabled, its first test fails if the backend under test does not open.
 */
export function gpuSuite(name: string, body: () => void): void {
  if (!GPU_TESTS) {
    test.skip(`${name}: GPU parity tests, skipped (set VLLMD_GPU_TESTS=1 on a machine with libvllmd_cuda.so and a GPU)`, () => {});
    return;
  }
  describe(name, () => {
    afterAll(() => {
      closeBackends();
      if (worst.size) console.log(`${name}: worst relative errors\n${[...worst].map(([k, v]) => `  ${k}: ${v.toExponential(2)}`).join("\n")}`);
      worst.clear();
    });
    test(`libvllmd_${DEVICE}.so opens and names itself ${DEVICE}`, () => {
      const { dev } = backends();
      if (dev.name !== DEVICE) throw new Error(`backend name ${dev.name}, expected ${DEVICE}`);
    }, 60_000);
    body();
  });
}

/** bf16 bits of f32 values, rounded to nearest even (no NaNs in test data). */
function bf16Bits(values: Float32Array): Uint16Array<ArrayBuffer> {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < out.length; i++) {
    const u = bits[i]!;
    out[i] = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

/**
 * Values rounded to what `dt` holds (f32: a copy), so cpu and device read the same numbers.
 * The same rounding as testing.ts's encodeWeights, without its per-element JS arrays (these
 * tests round tens of millions of values).
 */
export function roundTo(values: Float32Array, dt: DType): Float32Array {
  if (dt === DType.f32) return values.slice();
  if (dt === DType.f16) return Float32Array.from(Float16Array.from(values));
  if (dt !== DType.bf16) throw new Error(`roundTo: ${dtypeName(dt)} is not a float type`);
  const b = bf16Bits(values);
  const out = new Uint32Array(b.length);
  for (let i = 0; i < b.length; i++) out[i] = b[i]! << 16;
  return new Float32Array(out.buffer);
}

/** Bytes of `values` stored as `dt`; throws if a value is not representable (see roundTo). */
function encodeExact(values: Float32Array, dt: DType): Uint8Array {
  if (dt === DType.f32) return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  if (dt === DType.bf16) {
    const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
    const out = new Uint16Array(values.length);
    for (let i = 0; i < out.length; i++) {
      const u = bits[i]!;
      if ((u & 0xffff) !== 0) throw new Error(`put: element ${i} (${values[i]}) is not a bf16 value; roundTo it first`);
      out[i] = u >>> 16;
    }
    return new Uint8Array(out.buffer);
  }
  if (dt !== DType.f16) throw new Error(`put: ${dtypeName(dt)} is not a float type`);
  const h = Float16Array.from(values);
  for (let i = 0; i < h.length; i++)
    if (!Object.is(h[i], values[i])) throw new Error(`put: element ${i} (${values[i]}) is not an f16 value; roundTo it first`);
  return new Uint8Array(h.buffer);
}

/** Raw little-endian bytes of `dt` elements, as f32. */
export function decode(bytes: Uint8Array, dt: DType): Float32Array {
  const n = bytes.byteLength / dtypeBytes(dt);
  if (dt === DType.f32) return new Float32Array(bytes.slice().buffer);
  const half = new Uint16Array(bytes.slice().buffer);
  if (dt === DType.f16) return Float32Array.from(new Float16Array(half.buffer, 0, n));
  if (dt !== DType.bf16) throw new Error(`decode: ${dtypeName(dt)} is not a float type`);
  return new Float32Array(Uint32Array.from(half, (b) => b << 16).buffer);
}

const NAN_BITS16 = { [DType.f16]: 0x7e00, [DType.bf16]: 0x7fc0 } as Record<number, number>;

/** Device buffers of one test on one backend; `run` frees them all afterwards. */
export class Bufs {
  private readonly held: Buf[] = [];
  constructor(readonly be: Backend) {}

  raw(bytes: ArrayBufferView): Buf {
    const b = this.be.alloc(Math.max(bytes.byteLength, 4));
    this.held.push(b);
    if (bytes.byteLength) this.be.copyFromHost(b, 0, bytes);
    return b;
  }

  /** `values` stored as `dt`; they must be representable (see roundTo). */
  put(values: Float32Array, dt: DType): Buf {
    return this.raw(encodeExact(values, dt));
  }

  i32(values: ArrayLike<number>): Buf {
    return this.raw(Int32Array.from(values));
  }

  /** n elements of `dt`, every one NaN, so whatever an op leaves unwritten shows. */
  poisoned(n: number, dt: DType): Buf {
    if (dt === DType.f32) return this.raw(new Float32Array(n).fill(Number.NaN));
    return this.raw(new Uint16Array(n).fill(NAN_BITS16[dt] ?? 0));
  }

  bytes(buf: Buf, n: number): Uint8Array {
    const out = new Uint8Array(n);
    this.be.copyToHost(buf, 0, out);
    return out;
  }

  get(buf: Buf, n: number, dt: DType): Float32Array {
    return decode(this.bytes(buf, n * dtypeBytes(dt)), dt);
  }

  freeAll(): void {
    for (const b of this.held.splice(0)) this.be.free(b);
  }
}

/** Runs `fn` with a fresh Bufs on `be` and frees what it allocated. */
export function run<T>(be: Backend, fn: (b: Bufs) => T): T {
  const b = new Bufs(be);
  try {
    return fn(b);
  } finally {
    b.freeAll();
  }
}

/**
 * Throws unless `got` matches the cpu's `ref`: NaN exactly where ref is NaN (poison an op must
 * leave alone), and ||got - ref|| / ||ref|| < tol over the rest. Returns the relative error.
 */
export function expectClose(got: Float32Array, ref: Float32Array, tol: number, what: string): number {
  if (got.length !== ref.length) throw new Error(`${what}: ${got.length} values, the cpu has ${ref.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    const [g, r] = [got[i]!, ref[i]!];
    if (Number.isNaN(g) !== Number.isNaN(r)) throw new Error(`${what}: element ${i} is ${g}, the cpu has ${r}`);
    if (Number.isNaN(r)) continue;
    if (!Number.isFinite(g) || !Number.isFinite(r)) throw new Error(`${what}: element ${i} is ${g}, the cpu has ${r}`);
    num += (g - r) ** 2;
    den += r * r;
  }
  if (den === 0) throw new Error(`${what}: the cpu result has no non-zero values to compare`);
  const err = Math.sqrt(num / den);
  record(what.replace(/ #\S+$/, ""), err); // "what #case" records under "what"
  if (!(err < tol)) throw new Error(`${what}: relative error ${err.toExponential(3)} vs cpu, allowed ${tol}`);
  return err;
}

/** Throws unless the two byte arrays are identical, naming the first differing element. */
export function expectSameBytes(got: Uint8Array, ref: Uint8Array, elemBytes: number, what: string): void {
  if (got.length !== ref.length) throw new Error(`${what}: ${got.length} bytes, the cpu has ${ref.length}`);
  for (let i = 0; i < ref.length; i++)
    if (got[i] !== ref[i]) {
      const e = Math.floor(i / elemBytes);
      const hex = (a: Uint8Array) => Array.from(a.subarray(e * elemBytes, (e + 1) * elemBytes), (x) => x.toString(16).padStart(2, "0")).join("");
      throw new Error(`${what}: element ${e} differs: ${hex(got)} vs cpu ${hex(ref)} (little-endian bytes)`);
    }
}

/** Runs `call` on both backends, checks each throws a BackendError with `status`; returns the device's. */
export function expectStatusOnBoth(status: number, what: string, call: (be: Backend) => void): BackendError {
  const { cpu, dev } = backends();
  let last: BackendError | null = null;
  for (const be of [cpu, dev]) {
    let err: unknown = null;
    try {
      call(be);
    } catch (e) {
      err = e;
    }
    if (!(err instanceof BackendError)) throw new Error(`${what} on ${be.name}: expected BackendError ${status}, got ${err}`);
    if (err.status !== status) throw new Error(`${what} on ${be.name}: status ${err.status} (${err.message}), expected ${status}`);
    last = err;
  }
  return last!;
}
