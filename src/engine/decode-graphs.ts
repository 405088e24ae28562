// Decode steps as replayed graphs. A decode-only step of n sequences is padded to the smallest
// captured batch size (bucket) >= n and runs as one graph launch instead of ~10 launches per
// layer. Every step-dependent value lives in the metadata buffer the runner copies first; the
// shapes the graph fixes are the bucket's: T = S = bucket rows and a block-table stride of
// maxBlocksPerSeq. Padding rows belong to no sequence (attention leaves them alone, their KV
// slot is -1), so they cost a little compute and change no real row.
import type { LlamaModel, StepBatch } from "../model/llama.ts";
import { type Backend, BackendError, type Buf, type Graph, Status } from "../native/types.ts";

/** auto: device graphs where the backend has them, else none. off: never (vLLM's --enforce-eager).
 * replay: pad decode steps into buckets and rerun the forward pass, as a graph would, on any
 * backend (so the padding is tested where graphs do not exist). */
export type DecodeGraphMode = "auto" | "off" | "replay";

/** vLLM's capture sizes: 1, 2, 4, then every multiple of 8, up to the largest decode batch. */
export function graphBuckets(maxSeqs: number, maxTokens: number, cap = 512): number[] {
  const top = Math.min(maxSeqs, maxTokens, cap);
  const sizes = [1, 2, 4].filter((b) => b <= top);
  for (let b = 8; b <= top; b += 8) sizes.push(b);
  if (sizes.at(-1) !== top) sizes.push(top);
  return sizes;
}

export class DecodeGraphs {
  private readonly graphs = new Map<number, Graph>();

  private constructor(
    private readonly be: Backend,
    private readonly model: LlamaModel,
    private readonly batch: StepBatch,
    readonly buckets: readonly number[],
    readonly stride: number,
    private readonly device: boolean,
  ) {}

  /**
   * Captures one graph per bucket (after an eager warm-up run of that size, so that libraries
   * pick and load their kernels outside the capture). `writeIdle(bucket)` must fill the device
   * metadata with a batch of `bucket` rows that no sequence owns. Returns null when `mode` or
   * the backend rules graphs out. A capture that fails for another reason leaves the engine
   * eager, with a warning, rather than failing the start-up.
   */
  static create(
    be: Backend, model: LlamaModel, batch: StepBatch, buckets: number[], stride: number, mode: DecodeGraphMode,
    writeIdle: (bucket: number) => void, warn: (message: string) => void = console.warn,
  ): DecodeGraphs | null {
    if (mode === "off" || buckets.length === 0) return null;
    if (mode === "auto" && !be.hasGraphs) return null; // vd_capabilities: no VD_CAP_GRAPHS
    const g = new DecodeGraphs(be, model, batch, buckets, stride, mode === "auto");
    if (mode === "replay") return g;
    try {
      for (const b of [...buckets].reverse()) g.capture(b, writeIdle);
      be.sync();
      return g;
    } catch (e) {
      g.dispose();
      if (e instanceof BackendError && e.status === Status.unsupported) return null; // no graphs here (cpu)
      be.sync(); // a fault the eager warm-up met is the engine's to report, not the graphs'
      warn(`vllmd: decode graphs are off, every step runs eagerly: ${(e as Error).message} (--enforce-eager skips the capture)`);
      return null;
    }
  }

  /** The bucket a decode-only step of n sequences runs in, or 0 if none fits. */
  bucketFor(n: number): number {
    for (const b of this.buckets) if (b >= n) return b;
    return 0;
  }

  /** Runs the step of `bucket` rows whose metadata the runner has copied; returns the logits. */
  run(bucket: number): Buf {
    this.setShape(bucket);
    if (!this.device) return this.model.forward(this.batch);
    this.be.graphLaunch(this.graphs.get(bucket)!);
    return this.model.logits;
  }

  private capture(bucket: number, writeIdle: (bucket: number) => void): void {
    writeIdle(bucket);
    this.setShape(bucket);
    this.model.forward(this.batch); // warm-up, eager
    this.be.graphBegin();
    try {
      this.model.forward(this.batch);
    } catch (e) {
      try {
        this.be.graphEnd(); // leave capture mode; the op's error is the one to report
      } catch {}
      throw e;
    }
    this.graphs.set(bucket, this.be.graphEnd());
  }

  private setShape(bucket: number): void {
    Object.assign(this.batch, { nTokens: bucket, nSeqs: bucket, nSample: bucket, maxBlocks: this.stride });
  }

  dispose(): void {
    for (const g of this.graphs.values()) this.be.graphDestroy(g);
    this.graphs.clear();
  }
}
