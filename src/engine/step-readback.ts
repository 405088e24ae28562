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

export class StepReadback {
  private readonly host: HostBuf;
  private readonly tokens: Int32Array;
  private readonly logprobs: Float32Array;
  private readonly topIds: Int32Array;
  private readonly topLogprobs: Float32Array;
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
    const S = maxSeqs, top = S * maxTop;
    this.host = be.hostAlloc((2 * S + 2 * top) * 4);
    const d = this.host.data;
    this.tokens = new Int32Array(d, 0, S);
    this.logprobs = new Float32Array(d, S * 4, S);
    this.topIds = new Int32Array(d, 2 * S * 4, top);
    this.topLogprobs = new Float32Array(d, (2 * S + top) * 4, top);
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
    const be = this.be, S = this.maxSeqs, top = S * this.maxTop;
    be.copyToHostAsync(src.tokens, 0, this.host, 0, nSample * 4);
    if (nTop >= 0) be.copyToHostAsync(src.logprobs, 0, this.host, S * 4, nSample * 4);
    if (nTop > 0) {
      be.copyToHostAsync(src.topIds, 0, this.host, 2 * S * 4, nSample * nTop * 4);
      be.copyToHostAsync(src.topLogprobs, 0, this.host, (2 * S + top) * 4, nSample * nTop * 4);
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
