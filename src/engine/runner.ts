// Runs one scheduled step on the device in two halves: launch() packs the batch, copies it over
// in one go, runs the model and samples on the device; collect() reads back one int32 per
// sampling sequence.
import type { LlamaModel, StepBatch } from "../model/llama.ts";
import type { Backend, Buf } from "../native/types.ts";
import { SP } from "../native/types.ts";
import { DecodeGraphs, type DecodeGraphMode, graphBuckets } from "./decode-graphs.ts";
import type { SchedulerOutput } from "./scheduler.ts";
import { StepInputs, type StepShape } from "./step-inputs.ts";

/** vLLM's default cap on top logprobs per token. */
export const MAX_TOP_LOGPROBS = 20;

export interface TokenLogprobs {
  logprob: number; // of the sampled token
  top: { id: number; logprob: number }[];
}

export interface StepResult {
  /** Per scheduled index: the sampled token, or -1 where that request did not sample. */
  sampled: Int32Array;
  /** Per scheduled index, for requests that asked for logprobs. */
  logprobs: (TokenLogprobs | null)[];
}

interface ListBuffers {
  generation: number;
  seenTokens: Buf;
  seenCounts: Buf;
  biasTokens: Buf;
  biasValues: Buf;
  all: Buf[];
}

export class ModelRunner {
  readonly inputs: StepInputs;
  private readonly meta: Buf;
  private readonly batch: StepBatch;
  private readonly views: Record<"fparams" | "iparams" | "seenOffsets" | "biasOffsets", Buf>;
  private readonly out: { region: Buf; tokens: Buf; logprobs: Buf; topIds: Buf; topLogprobs: Buf };
  private lists!: ListBuffers;
  private readonly hostTokens: Int32Array;
  private readonly hostLogprobs: Float32Array;
  private readonly hostTopIds: Int32Array;
  private readonly hostTopLogprobs: Float32Array;
  private readonly result: StepResult;
  private graphs: DecodeGraphs | null = null;
  /** Steps that ran as a graph bucket (replayed or launched). */
  graphSteps = 0;

  constructor(
    private readonly be: Backend,
    private readonly model: LlamaModel,
    private readonly shape: StepShape,
  ) {
    this.inputs = new StepInputs(shape);
    const L = this.inputs.layout, S = shape.maxSeqs;
    this.meta = be.alloc(L.total * 4);
    const v = (at: number, n: number) => be.view(this.meta, at * 4, Math.max(1, n) * 4);
    this.batch = {
      nTokens: 0, nSeqs: 0, nSample: 0, maxBlocks: 0,
      tokenIds: v(L.tokenIds, shape.maxTokens), positions: v(L.positions, shape.maxTokens),
      slotMapping: v(L.slotMapping, shape.maxTokens), queryStart: v(L.queryStart, S + 1),
      seqLens: v(L.seqLens, S), blockTables: v(L.blockTables, S * shape.maxBlocksPerSeq),
      sampleRows: v(L.sampleRows, S),
    };
    this.views = {
      fparams: v(L.fparams, S * SP.nf), iparams: v(L.iparams, S * SP.ni),
      seenOffsets: v(L.seenOffsets, S + 1), biasOffsets: v(L.biasOffsets, S + 1),
    };
    const top = S * MAX_TOP_LOGPROBS;
    const region = be.alloc((2 * S + 2 * top) * 4);
    this.out = {
      region, tokens: be.view(region, 0, S * 4), logprobs: be.view(region, S * 4, S * 4),
      topIds: be.view(region, 2 * S * 4, top * 4), topLogprobs: be.view(region, (2 * S + top) * 4, top * 4),
    };
    this.hostTokens = new Int32Array(S);
    this.hostLogprobs = new Float32Array(S);
    this.hostTopIds = new Int32Array(top);
    this.hostTopLogprobs = new Float32Array(top);
    this.result = { sampled: new Int32Array(S), logprobs: [] };
    this.inputs.lists.reserve(1024, 1024); // so the sampler always gets real buffers
    this.allocLists();
  }

  /**
   * Runs the largest forward pass the engine can schedule (every token row, every sampling row)
   * with no sequence in it, so that what the device allocates on first use (library workspaces)
   * is allocated before the KV cache is sized from the memory left.
   */
  profileRun(): void {
    const { maxTokens, maxSeqs } = this.shape, inp = this.inputs;
    inp.packProfile(maxTokens, Math.min(maxSeqs, maxTokens));
    this.uploadMeta();
    this.forwardAsPacked();
    this.be.sync();
  }

  /** Captures the decode graphs (see decode-graphs.ts); returns how many there are. */
  captureGraphs(mode: DecodeGraphMode): number {
    this.graphs?.dispose();
    const { maxSeqs, maxTokens, maxBlocksPerSeq } = this.shape;
    const writeIdle = (rows: number) => {
      this.inputs.packIdle(rows, maxBlocksPerSeq);
      this.uploadMeta();
    };
    this.graphs = DecodeGraphs.create(this.be, this.model, this.batch, graphBuckets(maxSeqs, maxTokens), maxBlocksPerSeq, mode, writeIdle);
    return this.graphs?.buckets.length ?? 0;
  }

  /**
   * Queues the step on the device (packing, one metadata copy, the forward pass or its graph, the
   * sampler) without waiting for it: the caller may do host work until collect().
   */
  launch(sched: SchedulerOutput): void {
    const inp = this.inputs;
    const bucket = this.graphBucket(sched);
    inp.pack(sched, bucket ? this.graphs!.stride : 0);
    if (bucket) inp.padTo(bucket);
    this.uploadMeta();
    this.copyTokenLists();
    let logits: Buf;
    if (bucket) {
      logits = this.graphs!.run(bucket);
      this.graphSteps++;
    } else {
      logits = this.forwardAsPacked();
    }
    if (inp.nSample > 0) this.sample(logits, Math.max(0, this.nTop));
  }

  /** The used prefix of the packed metadata, to the device in one copy. */
  private uploadMeta(): void {
    this.be.copyFromHost(this.meta, 0, this.inputs.meta, this.inputs.usedMetaBytes);
  }

  /** The forward pass, eagerly, in the shape the inputs were packed in; returns the logits. */
  private forwardAsPacked(): Buf {
    const inp = this.inputs;
    Object.assign(this.batch, { nTokens: inp.nTokens, nSeqs: inp.nSeqs, nSample: inp.nSample, maxBlocks: inp.maxBlocks });
    return this.model.forward(this.batch);
  }

  /** Waits for the step launch() queued and reads back its tokens (and logprobs) by scheduled index. */
  collect(sched: SchedulerOutput): StepResult {
    return this.readResults(sched.scheduled.length, this.nTop);
  }

  private get nTop(): number {
    return Math.min(this.inputs.nTop, MAX_TOP_LOGPROBS);
  }

  /** The graph bucket of a decode-only step (every sequence adds and samples one token), or 0. */
  private graphBucket(sched: SchedulerOutput): number {
    if (!this.graphs) return 0;
    for (const s of sched.scheduled) if (s.numNewTokens !== 1 || s.req.numComputedTokens !== s.req.numTokens) return 0;
    return this.graphs.bucketFor(sched.scheduled.length);
  }

  private sample(logits: Buf, nTop: number): void {
    const l = this.lists, o = this.out;
    this.be.sample({
      logits, nSeqs: this.inputs.nSample, vocab: this.model.cfg.vocabSize,
      fparams: this.views.fparams, iparams: this.views.iparams,
      seenOffsets: this.views.seenOffsets, seenTokens: l.seenTokens, seenCounts: l.seenCounts,
      biasOffsets: this.views.biasOffsets, biasTokens: l.biasTokens, biasValues: l.biasValues,
      nTop, outTokens: o.tokens, outLogprobs: o.logprobs,
      outTopIds: nTop > 0 ? o.topIds : 0, outTopLogprobs: nTop > 0 ? o.topLogprobs : 0,
    });
  }

  /** Reads back the sampled tokens (and logprobs, if any request wants them) by scheduled index. */
  private readResults(nScheduled: number, nTop: number): StepResult {
    const inp = this.inputs, S = inp.nSample, r = this.result;
    r.sampled.fill(-1, 0, nScheduled);
    r.logprobs.length = 0;
    for (let i = 0; i < nScheduled; i++) r.logprobs.push(null);
    if (S === 0) return { sampled: r.sampled.subarray(0, nScheduled), logprobs: r.logprobs };
    this.be.copyToHost(this.out.tokens, 0, this.hostTokens, S * 4);
    if (nTop >= 0) this.readLogprobs(S, nTop);
    for (let k = 0; k < S; k++) r.sampled[inp.sampleOf[k]!] = this.hostTokens[k]!;
    return { sampled: r.sampled.subarray(0, nScheduled), logprobs: r.logprobs };
  }

  private readLogprobs(S: number, nTop: number): void {
    const inp = this.inputs, r = this.result;
    this.be.copyToHost(this.out.logprobs, 0, this.hostLogprobs, S * 4);
    if (nTop > 0) {
      this.be.copyToHost(this.out.topIds, 0, this.hostTopIds, S * nTop * 4);
      this.be.copyToHost(this.out.topLogprobs, 0, this.hostTopLogprobs, S * nTop * 4);
    }
    for (let k = 0; k < S; k++) {
      const top = [];
      for (let j = 0; j < nTop; j++) top.push({ id: this.hostTopIds[k * nTop + j]!, logprob: this.hostTopLogprobs[k * nTop + j]! });
      r.logprobs[inp.sampleOf[k]!] = { logprob: this.hostLogprobs[k]!, top };
    }
  }

  /** Copies the penalty and bias lists, (re)allocating their device buffers when they grew. */
  private copyTokenLists(): void {
    const src = this.inputs.lists;
    if (src.nSeen === 0 && src.nBias === 0) return;
    if (this.lists.generation !== src.generation) this.allocLists();
    const l = this.lists;
    if (src.nSeen > 0) {
      this.be.copyFromHost(l.seenTokens, 0, src.seenTokens, src.nSeen * 4);
      this.be.copyFromHost(l.seenCounts, 0, src.seenCounts, src.nSeen * 4);
    }
    if (src.nBias > 0) {
      this.be.copyFromHost(l.biasTokens, 0, src.biasTokens, src.nBias * 4);
      this.be.copyFromHost(l.biasValues, 0, src.biasValues, src.nBias * 4);
    }
  }

  private allocLists(): void {
    for (const b of this.lists?.all ?? []) this.be.free(b);
    const src = this.inputs.lists;
    const a = (n: number) => this.be.alloc(Math.max(1, n) * 4);
    const all = [a(src.seenTokens.length), a(src.seenCounts.length), a(src.biasTokens.length), a(src.biasValues.length)];
    this.lists = { generation: src.generation, seenTokens: all[0]!, seenCounts: all[1]!, biasTokens: all[2]!, biasValues: all[3]!, all };
  }

  dispose(): void {
    this.graphs?.dispose();
    this.graphs = null;
    for (const b of this.lists.all) this.be.free(b);
    this.be.free(this.meta);
    this.be.free(this.out.region);
  }
}
