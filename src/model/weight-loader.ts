// Reads tensors of a model directory into backend buffers, one part at a time, cut across ranks
// as each part says, and reports the bytes read for the progress bar. weights.ts drives it; the
// quantized formats' loaders (quantized-linears.ts) use it too.
import { closeSync, openSync, readSync } from "node:fs";
import type { Backend, Buf } from "../native/types.ts";
import { DType, dtypeBytes } from "../native/types.ts";
import { ModelDirError } from "./errors.ts";
import type { StDtype, TensorInfo } from "./safetensors.ts";

export type LoadProgress = (doneBytes: number, totalBytes: number) => void;

export const stDtype: Record<StDtype, DType> = { F32: DType.f32, F16: DType.f16, BF16: DType.bf16, F8_E4M3: DType.fp8E4m3, I32: DType.i32 };

/**
 * One tensor's share of a buffer: cut along shardDim (-1: whole on every rank) into `shards`
 * pieces (default tp; fewer: consecutive ranks share a piece, as KV heads fewer than the ranks).
 */
export interface Part {
  name: string;
  rows: number;
  cols: number;
  shardDim: -1 | 0 | 1;
  shards?: number;
}

export class Loader {
  readonly buffers: Buf[] = [];
  private done = 0;

  constructor(
    private readonly be: Backend,
    private readonly tensors: Map<string, TensorInfo>,
    private readonly dt: DType,
    private readonly onProgress: LoadProgress | undefined,
    readonly total: number,
  ) {}

  alloc(bytes: number): Buf {
    const b = this.be.alloc(bytes);
    this.buffers.push(b);
    return b;
  }

  free(b: Buf): void {
    this.be.free(b);
    this.buffers.splice(this.buffers.indexOf(b), 1);
  }

  tensor(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new ModelDirError("the model directory", `tensor '${name}' is missing`);
    return t;
  }

  /** Rows of a part on this rank (a linear's output rows, when its rows are cut). */
  rowsOnRank(p: Part): number {
    return p.shardDim === 0 ? p.rows / (p.shards ?? this.be.tp) : p.rows;
  }

  /** Elements of a part on this rank. */
  perRank(p: Part): number {
    return p.shardDim === -1 ? p.rows * p.cols : (p.rows * p.cols) / (p.shards ?? this.be.tp);
  }

  /** The parts one after another in one buffer of `dtype` (each cut across ranks as it says). */
  load(parts: Part[], dtype: DType = this.dt): Buf {
    const eb = dtypeBytes(dtype);
    const buf = this.alloc(parts.reduce((s, p) => s + this.perRank(p) * eb, 0));
    let at = 0;
    for (const p of parts) {
      this.loadPart(parts.length === 1 ? buf : this.be.view(buf, at, this.perRank(p) * eb), p, dtype);
      at += this.perRank(p) * eb;
    }
    return buf;
  }

  loadPart(dst: Buf, p: Part, dtype: DType): void {
    const t = this.tensor(p.name);
    this.be.loadWeight(dst, dtype, t.file, t.dataOffset, stDtype[t.dtype], p.rows, p.cols, p.shardDim, p.shards ?? this.be.tp);
    this.counted(t);
  }

  /** A one-element tensor's value, read on the host (a per-tensor FP8 scale). */
  scalar(name: string): number {
    const t = this.tensor(name), bytes = this.readHost(t, t.dtype === "F32" ? 4 : 2);
    const v = new DataView(bytes.buffer);
    if (t.dtype === "F32") return v.getFloat32(0, true);
    if (t.dtype === "BF16") return new Float32Array(new Uint32Array([v.getUint16(0, true) << 16]).buffer)[0]!;
    if (t.dtype === "F16") return v.getFloat16(0, true);
    throw new ModelDirError(t.file, `tensor '${name}' has dtype ${t.dtype}; a scale is F32, F16 or BF16`);
  }

  /** A small I32 tensor read whole on the host (packed zero points). */
  readI32(name: string): Int32Array {
    const t = this.tensor(name);
    if (t.dtype !== "I32") throw new ModelDirError(t.file, `tensor '${name}' has dtype ${t.dtype}; expected I32`);
    const bytes = this.readHost(t, t.shape.reduce((a, b) => a * b, 1) * 4);
    return new Int32Array(bytes.buffer, 0, bytes.length / 4);
  }

  private readHost(t: TensorInfo, length: number): Uint8Array {
    const bytes = new Uint8Array(Math.max(length, 4));
    const fd = openSync(t.file, "r");
    try {
      readSync(fd, bytes, 0, length, t.dataOffset);
    } finally {
      closeSync(fd);
    }
    this.counted(t);
    return bytes.subarray(0, length);
  }

  private counted(t: TensorInfo): void {
    this.done += t.shape.reduce((a, b) => a * b, 1) * dtypeBytes(stDtype[t.dtype]);
    this.onProgress?.(this.done, this.total);
  }
}

