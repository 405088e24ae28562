// The Backend interface (types.ts) over bun:ffi, for any library that exports include/vllmd.h.
import { type Pointer, toArrayBuffer } from "bun:ffi";
import { openVllmdLibrary, type VllmdLibrary } from "./ffi.ts";
import { type BackendName, findLibrary } from "./library.ts";
import {
  ActQuant, type Backend, BackendError, Cap, type Buf, type DeviceEvent, DType, type Graph, type HostBuf, type SampleArgs, Status, type IntCheckpointTensors, type IntWeights, type KvFormat, type PackLayout,
} from "./types.ts";

/** The VD_ABI_VERSION of the include/vllmd.h this code was written against. */
export const EXPECTED_ABI_VERSION = 14;

export interface OpenBackendOptions {
  firstDevice?: number;
  tp?: number;
  /** Directory holding libvllmd_<name>.so; by default it is searched for (library.ts). */
  libDir?: string;
}

/** Opens libvllmd_<name>.so, checks its ABI version and creates a context on it. */
export function openBackend(name: BackendName, opts: OpenBackendOptions = {}): Backend {
  const path = findLibrary(name, opts.libDir === undefined ? undefined : [opts.libDir]);
  const lib = openVllmdLibrary(path);
  const version = lib.symbols.vd_abi_version();
  if (version !== EXPECTED_ABI_VERSION) {
    lib.close();
    throw new Error(`${path}: ABI version ${version}, this vllmd expects ${EXPECTED_ABI_VERSION}; rebuild it`);
  }
  return new NativeBackend(lib, opts.firstDevice ?? 0, opts.tp ?? 1);
}

/** Bytes of a host view, as the `ptr` argument bun:ffi reads at call time. */
const bytesOf = (v: ArrayBufferView): Uint8Array => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);

class NativeBackend implements Backend {
  readonly name: string;
  private readonly ctx: number;
  // Out-parameters live as long as the backend so no pointer into them can go stale.
  private readonly handleOut = new BigUint64Array(1);
  private readonly memOut = new BigUint64Array(2);
  private readonly capsOut = new BigUint64Array(1);
  private capsCache: number | null = null;
  // Host blocks not yet freed: freeing or copying into one twice would hit memory the library
  // may since have handed out again, so those calls are refused before they reach it.
  private readonly liveHost = new Set<HostBuf>();

  constructor(
    private readonly lib: VllmdLibrary,
    firstDevice: number,
    readonly tp: number,
  ) {
    this.name = lib.symbols.vd_backend_name() ?? "";
    this.check("vd_context_create", lib.symbols.vd_context_create(firstDevice, tp, this.handleOut));
    this.ctx = Number(this.handleOut[0]);
  }

  private check(fn: string, status: number): void {
    if (status !== 0) throw new BackendError(fn, status, this.lib.symbols.vd_last_error() ?? "");
  }

  private hostRange(fn: string, offset: number, host: ArrayBufferView, bytes: number | undefined): number {
    const n = bytes ?? host.byteLength;
    if (!Number.isSafeInteger(offset) || offset < 0)
      throw new BackendError(fn, -1, `offset ${offset} must be a non-negative integer`);
    if (!Number.isSafeInteger(n) || n < 0 || n > host.byteLength)
      throw new BackendError(fn, -1, `bytes ${n} must be an integer in [0, ${host.byteLength}] (the host array)`);
    return n;
  }

  memInfo(): { free: number; total: number } {
    this.check("vd_mem_info", this.lib.symbols.vd_mem_info(this.ctx, this.memOut));
    return { free: Number(this.memOut[0]), total: Number(this.memOut[1]) };
  }

  sync(): void {
    this.check("vd_sync", this.lib.symbols.vd_sync(this.ctx));
  }

  // The library stays loaded: other contexts may use it, and unloading it under OpenMP's
  // worker threads is not worth the risk. Later calls fail with a bad-context error.
  // Destroying the context frees its host blocks, so their `data` views are detached first.
  destroy(): void {
    this.check("vd_context_destroy", this.lib.symbols.vd_context_destroy(this.ctx));
    for (const h of this.liveHost) h.data.transfer(0);
    this.liveHost.clear();
  }

  graphBegin(): void {
    this.check("vd_graph_begin", this.lib.symbols.vd_graph_begin(this.ctx));
  }

  graphEnd(): Graph {
    this.check("vd_graph_end", this.lib.symbols.vd_graph_end(this.ctx, this.handleOut));
    return Number(this.handleOut[0]);
  }

  graphLaunch(g: Graph): void {
    this.check("vd_graph_launch", this.lib.symbols.vd_graph_launch(this.ctx, g));
  }

  graphDestroy(g: Graph): void {
    this.check("vd_graph_destroy", this.lib.symbols.vd_graph_destroy(this.ctx, g));
  }

  alloc(bytes: number): Buf {
    this.check("vd_buffer_alloc", this.lib.symbols.vd_buffer_alloc(this.ctx, bytes, this.handleOut));
    return Number(this.handleOut[0]);
  }

  view(buf: Buf, offset: number, bytes: number): Buf {
    this.check("vd_buffer_view", this.lib.symbols.vd_buffer_view(this.ctx, buf, offset, bytes, this.handleOut));
    return Number(this.handleOut[0]);
  }

  free(buf: Buf): void {
    this.check("vd_buffer_free", this.lib.symbols.vd_buffer_free(this.ctx, buf));
  }

  copyFromHost(dst: Buf, dstOffset: number, src: ArrayBufferView, bytes?: number): void {
    const n = this.hostRange("vd_copy_from_host", dstOffset, src, bytes);
    this.check("vd_copy_from_host", this.lib.symbols.vd_copy_from_host(this.ctx, dst, dstOffset, bytesOf(src), n));
  }

  copyToHost(src: Buf, srcOffset: number, dst: ArrayBufferView, bytes?: number): void {
    const n = this.hostRange("vd_copy_to_host", srcOffset, dst, bytes);
    this.check("vd_copy_to_host", this.lib.symbols.vd_copy_to_host(this.ctx, src, srcOffset, bytesOf(dst), n));
  }

  copy(dst: Buf, dstOffset: number, src: Buf, srcOffset: number, bytes: number): void {
    this.check("vd_copy", this.lib.symbols.vd_copy(this.ctx, dst, dstOffset, src, srcOffset, bytes));
  }

  hostAlloc(bytes: number): HostBuf {
    if (!Number.isSafeInteger(bytes) || bytes < 0)
      throw new BackendError("vd_host_alloc", Status.invalidArgument, `bytes ${bytes} must be a non-negative integer`);
    this.check("vd_host_alloc", this.lib.symbols.vd_host_alloc(this.ctx, bytes, this.handleOut));
    const ptr = Number(this.handleOut[0]);
    const h: HostBuf = { ptr, data: toArrayBuffer(ptr as Pointer, 0, bytes), bytes };
    this.liveHost.add(h);
    return h;
  }

  // `data` is detached, so a view that outlives the block reads nothing instead of freed memory.
  hostFree(h: HostBuf): void {
    this.checkLive("vd_host_free", h);
    this.check("vd_host_free", this.lib.symbols.vd_host_free(this.ctx, h.ptr as Pointer));
    this.liveHost.delete(h);
    h.data.transfer(0);
  }

  private checkLive(fn: string, h: HostBuf): void {
    if (!this.liveHost.has(h))
      throw new BackendError(fn, Status.invalidArgument, `host buffer at ${h.ptr} is not from this backend's hostAlloc, or was freed`);
  }

  copyToHostAsync(src: Buf, srcOffset: number, dst: HostBuf, dstOffset: number, bytes: number): void {
    const fn = "vd_copy_to_host_async";
    this.checkLive(fn, dst);
    for (const [name, v] of [["srcOffset", srcOffset], ["dstOffset", dstOffset], ["bytes", bytes]] as const)
      if (!Number.isSafeInteger(v) || v < 0) throw new BackendError(fn, Status.invalidArgument, `${name} ${v} must be a non-negative integer`);
    if (dstOffset + bytes > dst.bytes)
      throw new BackendError(fn, Status.invalidArgument, `range [${dstOffset}, ${dstOffset + bytes}) outside the ${dst.bytes}-byte host buffer`);
    const status = this.lib.symbols.vd_copy_to_host_async(this.ctx, src, srcOffset, (dst.ptr + dstOffset) as Pointer, bytes);
    this.check(fn, status);
  }

  eventCreate(): DeviceEvent {
    this.check("vd_event_create", this.lib.symbols.vd_event_create(this.ctx, this.handleOut));
    return Number(this.handleOut[0]) as DeviceEvent;
  }

  eventRecord(e: DeviceEvent): void {
    this.check("vd_event_record", this.lib.symbols.vd_event_record(this.ctx, e));
  }

  eventSync(e: DeviceEvent): void {
    this.check("vd_event_sync", this.lib.symbols.vd_event_sync(this.ctx, e));
  }

  eventDestroy(e: DeviceEvent): void {
    this.check("vd_event_destroy", this.lib.symbols.vd_event_destroy(this.ctx, e));
  }

  loadWeight(
    dst: Buf, dstDtype: DType, path: string, fileOffset: number, fileDtype: DType, rows: number, cols: number,
    shardDim: -1 | 0 | 1, nShards = this.tp,
  ): void {
    const cPath = Buffer.from(`${path}\0`);
    const status = this.lib.symbols.vd_load_weight(this.ctx, dst, dstDtype, cPath, fileOffset, fileDtype, rows, cols, shardDim, nShards);
    this.check("vd_load_weight", status);
  }

  embedding(out: Buf, table: Buf, tokenIds: Buf, nTokens: number, hidden: number, vocab: number, act: DType, w: DType): void {
    const status = this.lib.symbols.vd_embedding(this.ctx, out, table, tokenIds, nTokens, hidden, vocab, act, w);
    this.check("vd_embedding", status);
  }

  rmsnorm(out: Buf, residual: Buf, x: Buf, weight: Buf, nTokens: number, hidden: number, eps: number, act: DType, w: DType): void {
    const status = this.lib.symbols.vd_rmsnorm(this.ctx, out, residual, x, weight, nTokens, hidden, eps, act, w);
    this.check("vd_rmsnorm", status);
  }

  ropeWriteKv(
    qOut: Buf, qkv: Buf, positions: Buf, cosSin: Buf, slotMapping: Buf, kCache: Buf, vCache: Buf,
    nTokens: number, nHeads: number, nKvHeads: number, headDim: number, blockSize: number, act: DType,
    kv: KvFormat = { dtype: act, kScale: 1, vScale: 1 },
  ): void {
    const status = this.lib.symbols.vd_rope_write_kv(
      this.ctx, qOut, qkv, positions, cosSin, slotMapping, kCache, vCache, nTokens, nHeads, nKvHeads, headDim, blockSize, act,
      kv.dtype, kv.kScale, kv.vScale,
    );
    this.check("vd_rope_write_kv", status);
  }

  attention(
    out: Buf, q: Buf, kCache: Buf, vCache: Buf, blockTables: Buf, seqLens: Buf, queryStart: Buf,
    nSeqs: number, nTokens: number, nHeads: number, nKvHeads: number, headDim: number, blockSize: number,
    maxBlocks: number, scale: number, act: DType, kv: KvFormat = { dtype: act, kScale: 1, vScale: 1 },
  ): void {
    const status = this.lib.symbols.vd_attention(
      this.ctx, out, q, kCache, vCache, blockTables, seqLens, queryStart,
      nSeqs, nTokens, nHeads, nKvHeads, headDim, blockSize, maxBlocks, scale, act, kv.dtype, kv.kScale, kv.vScale,
    );
    this.check("vd_attention", status);
  }

  gemm(out: Buf, x: Buf, w: Buf, bias: Buf, m: number, n: number, k: number, act: DType, wDtype: DType): void {
    this.check("vd_gemm", this.lib.symbols.vd_gemm(this.ctx, out, x, w, bias, m, n, k, act, wDtype));
  }

  quantizeFp8(q: Buf, scales: Buf, src: Buf, rows: number, cols: number, srcDtype: DType): void {
    this.check("vd_quantize_fp8", this.lib.symbols.vd_quantize_fp8(this.ctx, q, scales, src, rows, cols, srcDtype));
  }

  gemmFp8(out: Buf, x: Buf, w: Buf, wScale: Buf, bias: Buf, m: number, n: number, k: number, act: DType, actQuant: ActQuant = ActQuant.none): void {
    this.check("vd_gemm_fp8", this.lib.symbols.vd_gemm_fp8(this.ctx, out, x, w, wScale, bias, m, n, k, act, actQuant));
  }

  gemmInt(out: Buf, x: Buf, w: IntWeights, bias: Buf, m: number, n: number, k: number, act: DType): void {
    this.check("vd_gemm_int", this.lib.symbols.vd_gemm_int(this.ctx, out, x, w.w, w.scales, w.zeros, bias, m, n, k, w.bits, w.groupSize, act, w.kPerm ?? 0));
  }

  repackInt(w: IntWeights, t: IntCheckpointTensors, n: number, k: number, layout: PackLayout): void {
    this.check("vd_repack_int", this.lib.symbols.vd_repack_int(
      this.ctx, w.w, w.scales, w.zeros, t.qweight, t.qzeros, t.scales, n, k, w.bits, w.groupSize, t.scaleDtype, layout, w.kPerm ?? 0,
    ));
  }

  siluMul(out: Buf, gateUp: Buf, nTokens: number, inter: number, act: DType): void {
    this.check("vd_silu_mul", this.lib.symbols.vd_silu_mul(this.ctx, out, gateUp, nTokens, inter, act));
  }

  gatherRows(out: Buf, x: Buf, rows: Buf, nRows: number, cols: number, act: DType): void {
    this.check("vd_gather_rows", this.lib.symbols.vd_gather_rows(this.ctx, out, x, rows, nRows, cols, act));
  }

  scatterTokens(tokenIds: Buf, dstRows: Buf, src: Buf, srcRows: Buf, n: number): void {
    this.check("vd_scatter_tokens", this.lib.symbols.vd_scatter_tokens(this.ctx, tokenIds, dstRows, src, srcRows, n));
  }

  /** vd_capabilities' bits (they do not change over a context's life). */
  private get caps(): number {
    if (this.capsCache === null) {
      this.check("vd_capabilities", this.lib.symbols.vd_capabilities(this.ctx, this.capsOut));
      this.capsCache = Number(this.capsOut[0]);
    }
    return this.capsCache;
  }

  get fastW8a8(): boolean {
    return (this.caps & Cap.fastW8a8) !== 0;
  }

  get hasGraphs(): boolean {
    return (this.caps & Cap.graphs) !== 0;
  }

  get runsAsync(): boolean {
    return (this.caps & Cap.async) !== 0;
  }

  get deviceMemory(): boolean {
    return (this.caps & Cap.deviceMemory) !== 0;
  }

  activationDtype(w: DType): DType {
    return (this.caps & Cap.halfActivations) !== 0 ? w : DType.f32;
  }

  cast(out: Buf, x: Buf, n: number, outDtype: DType, inDtype: DType): void {
    this.check("vd_cast", this.lib.symbols.vd_cast(this.ctx, out, x, n, outDtype, inDtype));
  }

  allReduce(buf: Buf, n: number, act: DType): void {
    this.check("vd_all_reduce", this.lib.symbols.vd_all_reduce(this.ctx, buf, n, act));
  }

  sample(a: SampleArgs): void {
    const status = this.lib.symbols.vd_sample(
      this.ctx, a.logits, a.nSeqs, a.vocab, a.fparams, a.iparams, a.seenOffsets, a.seenTokens, a.seenCounts,
      a.biasOffsets, a.biasTokens, a.biasValues, a.nTop, a.outTokens, a.outLogprobs, a.outTopIds, a.outTopLogprobs,
    );
    this.check("vd_sample", status);
  }
}
