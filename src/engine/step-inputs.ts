// Packs one scheduled step into preallocated host arrays laid out exactly as the device buffer
// the runner copies them into: one contiguous copy for the batch metadata, a second only when
// some request uses penalties or a logit bias. Nothing here allocates per step.
import { SP } from "../native/types.ts";
import type { Request } from "./request.ts";
import { type ListOffsets, outputIndex, TokenLists } from "./sampling-lists.ts";
import { chunkStart, type ScheduledRequest, type SchedulerOutput } from "./scheduler.ts";

export interface StepShape {
  maxTokens: number;
  maxSeqs: number;
  maxBlocksPerSeq: number;
  blockSize: number;
}

/** Offsets (in 4-byte elements) of each section of the metadata region. */
export interface MetaLayout {
  tokenIds: number;
  positions: number;
  slotMapping: number;
  queryStart: number;
  seqLens: number;
  sampleRows: number;
  fparams: number;
  iparams: number;
  seenOffsets: number;
  biasOffsets: number;
  pendingRows: number; // token rows whose id the device fills in (vd_scatter_tokens)
  pendingSources: number; // for each, the row of the last step's sampler output holding it
  blockTables: number; // last: only its used prefix is copied
  total: number;
}

export function metaLayout(s: StepShape): MetaLayout {
  let at = 0;
  const take = (n: number) => ((at += n), at - n);
  return {
    tokenIds: take(s.maxTokens),
    positions: take(s.maxTokens),
    slotMapping: take(s.maxTokens),
    queryStart: take(s.maxSeqs + 1),
    seqLens: take(s.maxSeqs),
    sampleRows: take(s.maxSeqs),
    fparams: take(s.maxSeqs * SP.nf),
    iparams: take(s.maxSeqs * SP.ni),
    seenOffsets: take(s.maxSeqs + 1),
    biasOffsets: take(s.maxSeqs + 1),
    pendingRows: take(s.maxSeqs),
    pendingSources: take(s.maxSeqs),
    blockTables: take(s.maxSeqs * s.maxBlocksPerSeq),
    total: at,
  };
}

export class StepInputs {
  readonly layout: MetaLayout;
  readonly meta: Int32Array; // the metadata region, as i32
  readonly metaF32: Float32Array; // the same bytes, for the float sections
  readonly lists = new TokenLists();
  private readonly listOffsets: ListOffsets;
  /** Index into `scheduled` of each sampling row, and back (-1: does not sample). */
  readonly sampleOf: Int32Array;
  nTokens = 0;
  nSeqs = 0;
  nSample = 0;
  /** Token rows whose input is the token the last step sampled, still on the device. */
  nPending = 0;
  maxBlocks = 0; // row stride of this step's block tables
  paddedRows = 0; // rows (and sequences) the metadata is padded to for a graph; 0 if not padded
  nTop = -1; // most top-logprobs any sampling request wants (-1: none want logprobs)

  constructor(readonly shape: StepShape) {
    this.layout = metaLayout(shape);
    this.meta = new Int32Array(this.layout.total);
    this.metaF32 = new Float32Array(this.meta.buffer);
    this.sampleOf = new Int32Array(shape.maxSeqs);
    this.listOffsets = { meta: this.meta, seenOffsets: this.layout.seenOffsets, biasOffsets: this.layout.biasOffsets };
  }

  /** Bytes of the metadata region that this step uses (a prefix: block tables come last). */
  get usedMetaBytes(): number {
    return (this.layout.blockTables + Math.max(this.nSeqs, this.paddedRows) * this.maxBlocks) * 4;
  }

  /** Packs the step; block-table rows get `fixedStride` entries if given (a graph's), else the step's longest. */
  pack(out: SchedulerOutput, fixedStride = 0): void {
    const L = this.layout, m = this.meta;
    const sched = out.scheduled;
    if (sched.length > this.shape.maxSeqs) throw new Error(`step has ${sched.length} sequences > maxSeqs`);
    let stride = fixedStride;
    if (stride <= 0) {
      stride = 1;
      for (const s of sched) stride = Math.max(stride, s.req.blockIds.length);
    }
    this.maxBlocks = stride;
    this.paddedRows = 0;
    let t = 0, nSample = 0, nTop = -1;
    this.nPending = 0;
    for (let i = 0; i < sched.length; i++) {
      const s = sched[i]!, req = s.req, n = s.numNewTokens;
      if (t + n > this.shape.maxTokens) throw new Error(`step has more than ${this.shape.maxTokens} tokens`);
      m[L.queryStart + i] = t;
      m[L.seqLens + i] = s.end;
      this.packTokens(req, chunkStart(s), n, t);
      this.packBlockTable(req, L.blockTables + i * stride, stride);
      t += n;
      if (s.samples) {
        m[L.sampleRows + nSample] = t - 1;
        this.packSamplingRow(s, nSample);
        req.lastSampleRow = nSample; // where the next step finds this token while it is pending
        this.sampleOf[nSample++] = i;
        nTop = Math.max(nTop, req.params.logprobs);
      }
    }
    m[L.queryStart + sched.length] = t;
    [this.nTokens, this.nSeqs, this.nSample, this.nTop] = [t, sched.length, nSample, nTop];
    this.lists.pack(sched, this.sampleOf, nSample, this.listOffsets);
  }

  /**
   * Pads a packed decode-only step (one row per sequence) to `rows` rows and sequences: the extra
   * sequences own no query rows and no cache, the extra rows are token 0 at position 0 with no KV
   * slot, and the extra sampling rows point at row 0.
   */
  padTo(rows: number): void {
    const L = this.layout, m = this.meta, n = this.nSeqs;
    if (this.nTokens !== n || this.nSample !== n) throw new Error("padTo: only a decode-only step can be padded");
    if (rows < n || rows > this.shape.maxSeqs || rows > this.shape.maxTokens) throw new Error(`padTo: ${rows} rows`);
    m.fill(n, L.queryStart + n + 1, L.queryStart + rows + 1);
    m.fill(0, L.seqLens + n, L.seqLens + rows);
    this.idleRows(n, rows);
    m.fill(0, L.sampleRows + n, L.sampleRows + rows);
    m.fill(0, L.blockTables + n * this.maxBlocks, L.blockTables + rows * this.maxBlocks);
    this.paddedRows = rows;
  }

  /**
   * The largest step the buffers allow with no sequence in it: `nTokens` rows of token 0 at
   * position 0 with no KV slot, `nSample` sampling rows pointing at row 0 (a profiling run).
   */
  packProfile(nTokens: number, nSample: number): void {
    const L = this.layout, m = this.meta;
    this.pack(EMPTY_STEP, 1);
    this.idleRows(0, nTokens);
    m.fill(0, L.sampleRows, L.sampleRows + nSample);
    [this.nTokens, this.nSample] = [nTokens, nSample];
  }

  /** Rows [from, to) as token 0 at position 0 with no KV slot: rows no sequence owns. */
  private idleRows(from: number, to: number): void {
    const L = this.layout, m = this.meta;
    m.fill(0, L.tokenIds + from, L.tokenIds + to);
    m.fill(0, L.positions + from, L.positions + to);
    m.fill(-1, L.slotMapping + from, L.slotMapping + to);
  }

  /** A step of `rows` padding rows and nothing else (for warming up and capturing graphs). */
  packIdle(rows: number, stride: number): void {
    this.pack(EMPTY_STEP, stride);
    this.padTo(rows);
  }

  /**
   * Token ids, positions and KV slots of the rows [t0, t0 + n). A position past the known tokens
   * holds the token the last step sampled for the request: the device copies it in.
   */
  private packTokens(req: Request, start: number, n: number, t0: number): void {
    const L = this.layout, m = this.meta, B = this.shape.blockSize, blocks = req.blockIds;
    const p = req.numPromptTokens, known = req.numTokens;
    for (let j = 0; j < n; j++) {
      const pos = start + j;
      if (pos < known) {
        m[L.tokenIds + t0 + j] = pos < p ? req.promptTokenIds[pos]! : req.outputTokenIds[pos - p]!;
      } else {
        if (pos !== known || req.lastSampleRow < 0) throw new Error(`${req.id}: no token at position ${pos}`);
        m[L.tokenIds + t0 + j] = 0;
        m[L.pendingRows + this.nPending] = t0 + j;
        m[L.pendingSources + this.nPending++] = req.lastSampleRow;
      }
      m[L.positions + t0 + j] = pos;
      m[L.slotMapping + t0 + j] = blocks[(pos / B) | 0]! * B + (pos % B);
    }
  }

  private packBlockTable(req: Request, at: number, stride: number): void {
    const m = this.meta, blocks = req.blockIds;
    for (let j = 0; j < blocks.length; j++) m[at + j] = blocks[j]!;
    m.fill(0, at + blocks.length, at + stride);
  }

  private packSamplingRow(s: ScheduledRequest, row: number): void {
    const req = s.req, f = this.metaF32, m = this.meta, p = req.params;
    const fo = this.layout.fparams + row * SP.nf, io = this.layout.iparams + row * SP.ni;
    f[fo + SP.temperature] = p.temperature;
    f[fo + SP.topP] = p.topP;
    f[fo + SP.minP] = p.minP;
    f[fo + SP.repetition] = p.repetitionPenalty;
    f[fo + SP.presence] = p.presencePenalty;
    f[fo + SP.frequency] = p.frequencyPenalty;
    m[io + SP.topK] = p.topK;
    m[io + SP.seedLo] = req.seedLo;
    m[io + SP.seedHi] = req.seedHi;
    m[io + SP.step] = outputIndex(s); // pending tokens counted: the same draw as a synchronous step
  }
}

const EMPTY_STEP: SchedulerOutput = { scheduled: [], totalTokens: 0, preempted: [] };
