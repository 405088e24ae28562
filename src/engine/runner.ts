// Runs one scheduled step on the device in two halves: launch() packs the batch, copies it over
// in one go, runs the model, samples on the device and queues the readback; collect() waits for
// that step's tokens alone. Up to MAX_STEPS_IN_FLIGHT steps may be launched before their collect()
// (async scheduling): a decode's input token then comes from the last step's sampler output.
import type { LlamaModel, StepBatch } from "../model/llama.ts";
import type { Backend, Buf } from "../native/types.ts";
import { SP } from "../native/types.ts";
import { DecodeGraphs, type DecodeGraphMode, graphBuckets } from "./decode-graphs.ts";
import { MAX_TOP_LOGPROBS } from "./sampling-check.ts";
import { MAX_STEPS_IN_FLIGHT, type SchedulerOutput } from "./scheduler.ts";
import { StepInputs, type StepShape } from "./step-inputs.ts";
import { type SamplerOutputs, samplerOutputLayout, StepReadback, type StepResult } from "./step-readback.ts";

export type { StepResult, TokenLogprobs } from "./step-readback.ts";


/** A step on the device: its batch and where its tokens come back. */
export interface LaunchedStep {
  sched: SchedulerOutput;
  readback: StepReadback;
}

/** The device copy of the token lists (see TokenLists): one region, a view per section. */
interface ListBuffers {
  generation: number;
  region: Buf;
  seenTokens: Buf;
  seenCounts: Buf;
  biasTokens: Buf;
  biasValues: Buf;
}

export class ModelRunner {
  readonly inputs: StepInputs;
  private readonly meta: Buf;
  private readonly batch: StepBatch;
  private readonly views: Record<"fparams" | "iparams" | "seenOffsets" | "biasOffsets" | "pendingRows" | "pendingSources", Buf>;
  private readonly out: SamplerOutputs & { region: Buf };
  private lists!: ListBuffers;
  /** One per step that can be in flight, used in turn. */
  private readonly readbacks: StepReadback[] = [];
  private nextReadback = 0;
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
      pendingRows: v(L.pendingRows, S), pendingSources: v(L.pendingSources, S),
    };
    const at = samplerOutputLayout(S, MAX_TOP_LOGPROBS), top = S * MAX_TOP_LOGPROBS * 4;
    const region = be.alloc(at.bytes);
    this.out = {
      region, tokens: be.view(region, at.tokens, S * 4), logprobs: be.view(region, at.logprobs, S * 4),
      topIds: be.view(region, at.topIds, top), topLogprobs: be.view(region, at.topLogprobs, top),
    };
    for (let i = 0; i < MAX_STEPS_IN_FLIGHT; i++) this.readbacks.push(new StepReadback(be, S, MAX_TOP_LOGPROBS));
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
   * Queues the step on the device (packing, one metadata copy, the input tokens still on the
   * device, the forward pass or its graph, the sampler, the readback) without waiting for it: the
   * caller may do host work, or launch the next step, until collect().
   */
  launch(sched: SchedulerOutput): LaunchedStep {
    const inp = this.inputs;
    const bucket = this.graphBucket(sched);
    inp.pack(sched, bucket ? this.graphs!.stride : 0);
    if (bucket) inp.padTo(bucket);
    this.uploadMeta();
    if (inp.nPending > 0) {
      this.be.scatterTokens(this.batch.tokenIds, this.views.pendingRows, this.out.tokens, this.views.pendingSources, inp.nPending);
    }
    this.copyTokenLists();
    let logits: Buf;
    if (bucket) {
      logits = this.graphs!.run(bucket);
      this.graphSteps++;
    } else {
      logits = this.forwardAsPacked();
    }
    if (inp.nSample > 0) this.sample(logits, Math.max(0, this.nTop));
    const readback = this.readbacks[this.nextReadback]!;
    this.nextReadback = (this.nextReadback + 1) % this.readbacks.length;
    readback.queue(this.out, inp.sampleOf, inp.nSample, this.nTop);
    return { sched, readback };
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

  /**
   * Waits for a launched step (not for any step launched after it) and reads its tokens (and
   * logprobs) by scheduled index. Steps are collected in launch order; the result is valid until
   * the next collect().
   */
  collect(step: LaunchedStep): StepResult {
    return step.readback.read(this.result, step.sched.scheduled);
  }

  private get nTop(): number {
    return Math.min(this.inputs.nTop, MAX_TOP_LOGPROBS);
  }

  /** The graph bucket of a decode-only step (every sequence adds and samples one token), or 0. */
  private graphBucket(sched: SchedulerOutput): number {
    if (!this.graphs) return 0;
    for (const s of sched.scheduled) if (s.numNewTokens !== 1 || !s.samples) return 0;
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

  /** Copies the penalty and bias lists in one go, reallocating their device region when it grew. */
  private copyTokenLists(): void {
    const src = this.inputs.lists;
    if (src.usedBytes === 0) return;
    if (this.lists.generation !== src.generation) this.allocLists();
    this.be.copyFromHost(this.lists.region, 0, src.region, src.usedBytes);
  }

  private allocLists(): void {
    if (this.lists) {
      this.be.sync(); // a step in flight may still read the old lists
      this.be.free(this.lists.region);
    }
    const src = this.inputs.lists, at = src.offsets, be = this.be;
    const region = be.alloc(Math.max(4, src.region.byteLength));
    const view = (off: number, n: number) => be.view(region, off, Math.max(1, n) * 4);
    this.lists = {
      generation: src.generation, region,
      seenTokens: view(at.seenTokens, src.seenTokens.length), seenCounts: view(at.seenCounts, src.seenCounts.length),
      biasTokens: view(at.biasTokens, src.biasTokens.length), biasValues: view(at.biasValues, src.biasValues.length),
    };
  }

  dispose(): void {
    this.be.sync(); // launched steps may still write into the readback memory
    this.graphs?.dispose();
    this.graphs = null;
    this.be.free(this.lists.region);
    for (const r of this.readbacks) r.dispose();
    this.be.free(this.meta);
    this.be.free(this.out.region);
  }
}
