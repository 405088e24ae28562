// A launched step's sampled tokens (and logprobs) on their way back to the host: copied into
// pinned memory right after the sampler, with an event recorded behind the copies. Waiting on
// that event waits for this step alone, so the host can queue the next step first (async
// scheduling) and read this one while the device runs the next.
import type { Backend, Buf, DeviceEvent, HostBuf } from "../native/types.ts";
import type { ScheduledRequest } from "./scheduler.ts";

/** Where the sampler writes (vd_sample's outputs): tokens and logprobs [S], top ids and logprobs [S, nTop]. */
export interface SamplerOutputs {
  tokens: Buf;
  logprobs: Buf;
  topIds: Buf;
  topLogprobs: Buf;
}

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

/**
 * Byte offsets of the sampler's outputs in one region, the same on the device (the runner's) and
 * in each readback's pinned copy: tokens and logprobs [maxSeqs], top ids and logprobs [maxSeqs, maxTop].
 */
export function samplerOutputLayout(maxSeqs: number, maxTop: number) {
  const S = maxSeqs * 4, top = maxSeqs * maxTop * 4;
  return { tokens: 0, logprobs: S, topIds: 2 * S, topLogprobs: 2 * S + top, bytes: 2 * S + 2 * top };
}

export class StepReadback {
  private readonly host: HostBuf;
  private readonly tokens: Int32Array;
  private readonly logprobs: Float32Array;
  private readonly topIds: Int32Array;
  private readonly topLogprobs: Float32Array;
  private readonly at: ReturnType<typeof samplerOutputLayout>;
  private readonly event: DeviceEvent;
  /** Scheduled index of each sampling row of the queued step (the step's own copy). */
  private readonly sampleOf: Int32Array;
  private nSample = 0;
  private nTop = -1; // -1: no logprobs copied

  constructor(
    private readonly be: Backend,
    readonly maxSeqs: number,
    readonly maxTop: number,
  ) {
    const S = maxSeqs, top = S * maxTop, at = (this.at = samplerOutputLayout(maxSeqs, maxTop));
    this.host = be.hostAlloc(at.bytes);
    const d = this.host.data;
    this.tokens = new Int32Array(d, at.tokens, S);
    this.logprobs = new Float32Array(d, at.logprobs, S);
    this.topIds = new Int32Array(d, at.topIds, top);
    this.topLogprobs = new Float32Array(d, at.topLogprobs, top);
    this.event = be.eventCreate();
    this.sampleOf = new Int32Array(S);
  }

  /**
   * Queues, behind the sampler, the copies of the first `nSample` rows (logprobs too if nTop >= 0,
   * with nTop top entries per row) and the event that marks them done.
   */
  queue(src: SamplerOutputs, sampleOf: Int32Array, nSample: number, nTop: number): void {
    if (nSample > this.maxSeqs || nTop > this.maxTop) throw new Error(`readback: ${nSample} rows, ${nTop} top logprobs`);
    this.sampleOf.set(sampleOf.subarray(0, nSample));
    this.nSample = nSample;
    this.nTop = nTop;
    if (nSample === 0) return;
    const be = this.be, at = this.at;
    be.copyToHostAsync(src.tokens, 0, this.host, at.tokens, nSample * 4);
    if (nTop >= 0) be.copyToHostAsync(src.logprobs, 0, this.host, at.logprobs, nSample * 4);
    if (nTop > 0) {
      be.copyToHostAsync(src.topIds, 0, this.host, at.topIds, nSample * nTop * 4);
      be.copyToHostAsync(src.topLogprobs, 0, this.host, at.topLogprobs, nSample * nTop * 4);
    }
    be.eventRecord(this.event);
  }

  /**
   * Waits for the queued copies and writes the step's tokens by scheduled index into r, and the
   * logprobs of the requests that asked for them (as many top entries as each asked for).
   */
  read(r: StepResult, scheduled: readonly ScheduledRequest[]): StepResult {
    const nScheduled = scheduled.length;
    r.sampled.fill(-1, 0, nScheduled);
    r.logprobs.length = 0;
    for (let i = 0; i < nScheduled; i++) r.logprobs.push(null);
    const S = this.nSample, nTop = this.nTop;
    if (S > 0) this.be.eventSync(this.event);
    for (let k = 0; k < S; k++) r.sampled[this.sampleOf[k]!] = this.tokens[k]!;
    if (nTop >= 0) {
      for (let k = 0; k < S; k++) {
        const i = this.sampleOf[k]!, want = Math.min(scheduled[i]!.req.params.logprobs, nTop);
        if (want < 0) continue;
        const top = [];
        for (let j = 0; j < want; j++) top.push({ id: this.topIds[k * nTop + j]!, logprob: this.topLogprobs[k * nTop + j]! });
        r.logprobs[i] = { logprob: this.logprobs[k]!, top };
      }
    }
    return { sampled: r.sampled.subarray(0, nScheduled), logprobs: r.logprobs };
  }

  dispose(): void {
    this.be.eventDestroy(this.event);
    this.be.hostFree(this.host);
  }
}
