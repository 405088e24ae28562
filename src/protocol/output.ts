// Turns one generation's deltas into output frames. Streamed: a frame per engine step that gave
// the request tokens or text, the last one carrying finished and usage (the step that finishes a
// request gives its last tokens too, so they share a frame rather than sending an empty one).
// Not streamed: everything gathered into one frame at the end.
import type { TokenLogprobs } from "../engine/runner.ts";
import type { GenerationDelta, GenerationFinal } from "../serving/generation.ts";
import type { OutputFrame, RequestId, TokenLogprob } from "./messages.ts";

interface Pending {
  tokenIds: number[];
  text: string;
  logprobs: TokenLogprob[] | null;
}

const emptyPending = (): Pending => ({ tokenIds: [], text: "", logprobs: null });

export class OutputCollector {
  private pending: Pending | null = null;
  private flushScheduled = false;
  private done = false;

  constructor(
    readonly id: RequestId,
    private readonly stream: boolean,
    private readonly withText: boolean,
    private readonly send: (f: OutputFrame) => void,
  ) {}

  delta(d: GenerationDelta): void {
    if (this.done) return;
    const p = (this.pending ??= emptyPending());
    p.tokenIds.push(...d.tokenIds);
    p.text += d.text;
    if (d.logprobs) (p.logprobs ??= []).push(...d.logprobs.map(wireLogprob));
    // The service reports a step's delta and, if the step ended the request, its finish in the
    // same tick: wait for the end of the tick to see whether the two can share a frame.
    if (this.stream && !this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flushDelta());
    }
  }

  finish(f: GenerationFinal): void {
    if (this.done) return;
    this.done = true;
    const p = this.pending ?? emptyPending();
    this.pending = null;
    this.send({
      ...this.frameOf(p, true),
      finish_reason: f.finishReason,
      stop_reason: f.stopReason,
      usage: { prompt_tokens: f.promptTokens, completion_tokens: f.completionTokens, total_tokens: f.promptTokens + f.completionTokens },
    });
  }

  /** The request failed: its error frame is its last, so nothing held may follow it. */
  cancel(): void {
    this.done = true;
    this.pending = null;
  }

  private flushDelta(): void {
    this.flushScheduled = false;
    if (this.done || !this.pending) return;
    const p = this.pending;
    this.pending = null;
    this.send(this.frameOf(p, false));
  }

  private frameOf(p: Pending, finished: boolean): OutputFrame {
    const f: OutputFrame = { type: "output", id: this.id, token_ids: p.tokenIds, finished };
    if (this.withText) f.text = p.text;
    if (p.logprobs) f.logprobs = p.logprobs;
    return f;
  }
}

function wireLogprob(t: TokenLogprobs): TokenLogprob {
  return { logprob: t.logprob, top: t.top.map((x) => [x.id, x.logprob] as [number, number]) };
}
