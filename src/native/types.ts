// The typed face of include/vllmd.h. Models and the runner call ops only through `Backend`;
// src/native/backend.ts implements it over bun:ffi for any library that exports the ABI.

/** Element types, as VD_F32... in vllmd.h (fp8E4m3: quantized weights and KV caches). */
export const DType = { f32: 0, f16: 1, bf16: 2, i32: 3, fp8E4m3: 4 } as const;
export type DType = (typeof DType)[keyof typeof DType];

/** Checkpoint layouts of integer weights (VD_PACK_*), as vd_repack_int reads them. */
export const PackLayout = { gptq: 0, gptqV2: 1, awq: 2, rows: 3 } as const;
/** vd_gemm_fp8's act_quant: x as it is (weight-only), or quantized per row to e4m3 first (W8A8). */
export const ActQuant = { none: 0, fp8Row: 1 } as const;
export type ActQuant = (typeof ActQuant)[keyof typeof ActQuant];
/** vd_capabilities' bits: what a backend can do and how it runs. */
export const Cap = { fastW8a8: 1, graphs: 2, async: 4, deviceMemory: 8, halfActivations: 16 } as const;
export type PackLayout = (typeof PackLayout)[keyof typeof PackLayout];

/** The names vLLM's users know a dtype by. */
export const dtypeName = (d: DType): string => ["f32", "f16", "bf16", "i32", "fp8_e4m3"][d]!;

export const dtypeBytes = (d: DType): number => (d === DType.fp8E4m3 ? 1 : d === DType.f16 || d === DType.bf16 ? 2 : 4);

/** Status codes of vllmd.h. */
export const Status = {
  ok: 0,
  invalidArgument: -1,
  outOfMemory: -2,
  device: -3,
  io: -4,
  unsupported: -5,
  internal: -6,
} as const;

/** A failed native call: the status code and vd_last_error()'s message. */
export class BackendError extends Error {
  constructor(
    readonly fn: string,
    readonly status: number,
    message: string,
  ) {
    super(`${fn}: ${message || `status ${status}`}`);
    this.name = "BackendError";
  }
}

/** An opaque buffer handle (0 = none). */
export type Buf = number;

/** An opaque handle of a captured graph. */
export type Graph = number;

/** An opaque handle of a device event (vd_event_* in vllmd.h); only eventCreate makes one. */
export type DeviceEvent = number & { readonly __brand: "DeviceEvent" };

/**
 * Host memory from hostAlloc (page-locked on GPUs) that copyToHostAsync writes into. `data` views
 * the same bytes; it must not be read between a copy into it and the eventSync of an event
 * recorded after that copy. hostFree (or destroying the backend) detaches `data`.
 */
export interface HostBuf {
  readonly ptr: number;
  readonly data: ArrayBuffer;
  readonly bytes: number;
}

/** Column indexes of the sampling parameter rows (VD_SP_* in vllmd.h). */
export const SP = {
  temperature: 0,
  topP: 1,
  minP: 2,
  repetition: 3,
  presence: 4,
  frequency: 5,
  nf: 6,
  topK: 0,
  seedLo: 1,
  seedHi: 2,
  step: 3,
  ni: 4,
} as const;

/** Integer weights as vd_gemm_int takes them: w i32 [n, k*bits/32], scales and zeros f32 [n, ceil(k / groupSize)]. */
/**
 * A KV cache's element type: the activation dtype, or fp8E4m3, whose codes stand for code * kScale
 * (keys) and code * vScale (values).
 */
export interface KvFormat {
  dtype: DType;
  kScale: number;
  vScale: number;
}

export interface IntWeights {
  w: Buf;
  scales: Buf;
  zeros: Buf;
  bits: 4 | 8;
  groupSize: number;
  /** Act-order: i32 [k], the input each code position weighs; absent when positions are inputs. */
  kPerm?: Buf;
}

/** An integer checkpoint layer's tensors on the device, in its layout (vllmd.h: vd_repack_int); scales [G, n] of scaleDtype. */
export interface IntCheckpointTensors {
  qweight: Buf;
  qzeros: Buf;
  scales: Buf;
  scaleDtype: DType;
}

export interface SampleArgs {
  logits: Buf; // f32 [S, V], modified in place
  nSeqs: number;
  vocab: number;
  fparams: Buf; // f32 [S, SP.nf]
  iparams: Buf; // i32 [S, SP.ni]
  seenOffsets: Buf; // i32 [S+1]
  seenTokens: Buf; // i32 [*]
  seenCounts: Buf; // i32 [*]
  biasOffsets: Buf; // i32 [S+1]
  biasTokens: Buf; // i32 [*]
  biasValues: Buf; // f32 [*]
  nTop: number;
  outTokens: Buf; // i32 [S]
  outLogprobs: Buf; // f32 [S]
  outTopIds: Buf; // i32 [S, nTop] (0 if nTop = 0)
  outTopLogprobs: Buf; // f32 [S, nTop] (0 if nTop = 0)
}

/** One context of a backend library; every method throws BackendError on a failed status. */
export interface Backend {
  readonly name: string; // "cpu" | "cuda" | "hip"
  readonly tp: number;
  memInfo(): { free: number; total: number };
  sync(): void;
  destroy(): void;

  /**
   * Graphs (vd_graph_* in vllmd.h): ops called between graphBegin and graphEnd are recorded, not
   * run; graphLaunch replays them reading the buffers' contents of the moment. graphBegin throws
   * BackendError with Status.unsupported on a backend without graphs (cpu).
   */
  graphBegin(): void;
  graphEnd(): Graph;
  graphLaunch(g: Graph): void;
  graphDestroy(g: Graph): void;

  alloc(bytes: number): Buf;
  view(buf: Buf, offset: number, bytes: number): Buf;
  free(buf: Buf): void;
  copyFromHost(dst: Buf, dstOffset: number, src: ArrayBufferView, bytes?: number): void;
  copyToHost(src: Buf, srcOffset: number, dst: ArrayBufferView, bytes?: number): void;
  copy(dst: Buf, dstOffset: number, src: Buf, srcOffset: number, bytes: number): void;

  /**
   * Async read-back (vllmd.h ABI 3), so that step N+1 can be queued before step N's tokens are
   * read: copyToHostAsync queues a copy into pinned memory and returns; eventRecord marks the
   * stream after it; eventSync waits for that mark (and reports device-side faults as sync does).
   */
  hostAlloc(bytes: number): HostBuf;
  hostFree(h: HostBuf): void;
  copyToHostAsync(src: Buf, srcOffset: number, dst: HostBuf, dstOffset: number, bytes: number): void;
  eventCreate(): DeviceEvent;
  eventRecord(e: DeviceEvent): void;
  eventSync(e: DeviceEvent): void;
  eventDestroy(e: DeviceEvent): void;

  loadWeight(
    dst: Buf,
    dstDtype: DType,
    path: string,
    fileOffset: number,
    fileDtype: DType,
    rows: number,
    cols: number,
    shardDim: -1 | 0 | 1,
    /** Pieces the shard dimension is cut into (default tp); fewer than tp: consecutive ranks share one (vd_load_weight). */
    nShards?: number,
  ): void;

  embedding(out: Buf, table: Buf, tokenIds: Buf, nTokens: number, hidden: number, vocab: number, act: DType, w: DType): void;
  rmsnorm(out: Buf, residual: Buf, x: Buf, weight: Buf, nTokens: number, hidden: number, eps: number, act: DType, w: DType): void;
  /**
   * vd_rope_write_kv (ABI 4): reads the fused projection qkv [T, (H + 2*KVH)*D] (row t = q | k | v;
   * not modified), writes the rotated q to qOut [T, H*D] (must not overlap qkv), and the rotated k
   * and v to the paged caches at slotMapping[t] (a negative slot skips the cache write only).
   */
  ropeWriteKv(
    qOut: Buf, qkv: Buf, positions: Buf, cosSin: Buf, slotMapping: Buf, kCache: Buf, vCache: Buf,
    nTokens: number, nHeads: number, nKvHeads: number, headDim: number, blockSize: number, act: DType, kv?: KvFormat,
  ): void;
  attention(
    out: Buf, q: Buf, kCache: Buf, vCache: Buf, blockTables: Buf, seqLens: Buf, queryStart: Buf,
    nSeqs: number, nTokens: number, nHeads: number, nKvHeads: number, headDim: number, blockSize: number,
    maxBlocks: number, scale: number, act: DType, kv?: KvFormat,
  ): void;
  gemm(out: Buf, x: Buf, w: Buf, bias: Buf, m: number, n: number, k: number, act: DType, wDtype: DType): void;
  /** Per-row e4m3 quantization: q [rows, cols] fp8, scales f32 [rows] (vd_quantize_fp8). */
  quantizeFp8(q: Buf, scales: Buf, src: Buf, rows: number, cols: number, srcDtype: DType): void;
  /**
   * out = (x · wᵀ) * wScale (+ bias), w fp8 e4m3 [n, k], wScale f32 [n], bias of act (vd_gemm_fp8);
   * with actQuant fp8Row, each row of x is quantized to e4m3 first (W8A8). Default none.
   */
  gemmFp8(out: Buf, x: Buf, w: Buf, wScale: Buf, bias: Buf, m: number, n: number, k: number, act: DType, actQuant?: ActQuant): void;
  /** out = x · ((q - zeros) * scales)ᵀ (+ bias), 4- or 8-bit codes in vllmd's layout (vd_gemm_int). */
  gemmInt(out: Buf, x: Buf, w: IntWeights, bias: Buf, m: number, n: number, k: number, act: DType): void;
  /** A checkpoint's qweight/qzeros/scales in `layout` to vllmd's layout in `w` (vd_repack_int), codes in w.kPerm's order. */
  repackInt(w: IntWeights, t: IntCheckpointTensors, n: number, k: number, layout: PackLayout): void;
  siluMul(out: Buf, gateUp: Buf, nTokens: number, inter: number, act: DType): void;
  gatherRows(out: Buf, x: Buf, rows: Buf, nRows: number, cols: number, act: DType): void;
  /** tokenIds[dstRows[j]] = src[srcRows[j]] for j < n, all i32: a decode's input is the token the
   * previous step sampled, still on the device when this step is queued. */
  scatterTokens(tokenIds: Buf, dstRows: Buf, src: Buf, srcRows: Buf, n: number): void;
  cast(out: Buf, x: Buf, n: number, outDtype: DType, inDtype: DType): void;
  allReduce(buf: Buf, n: number, act: DType): void;
  /** The activation (and KV-cache) dtype this backend computes a model of weight dtype `w` in. */
  activationDtype(w: DType): DType;
  /** Whether gemmFp8 with ActQuant.fp8Row runs on FP8 tensor cores here (vd_capabilities). */
  readonly fastW8a8: boolean;
  /** Whether graphBegin/graphEnd/graphLaunch capture and replay ops here. */
  readonly hasGraphs: boolean;
  /** Whether ops are queued and run while the host goes on (so overlapping steps pays). */
  readonly runsAsync: boolean;
  /** Whether buffers live in device memory of their own (memInfo's; else host memory). */
  readonly deviceMemory: boolean;
  sample(a: SampleArgs): void;
}
