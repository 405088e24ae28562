// One generation's state on the main thread: detokenizer, stop-string matcher, counts and timings.
// It turns the engine's outputs for one request into the events its front end gets.
import type { EngineOutput } from "../engine/engine.ts";
import { IncrementalDetokenizer } from "../tokenizer/detokenizer.ts";
import { StopStringMatcher } from "../tokenizer/stop-strings.ts";
import type { TextTokenizer } from "../tokenizer/tokenizer.ts";
import { ServiceError, type GenerateInput, type GenerationEvents, type GenerationFinal } from "./generation.ts";
import type { ServingMetrics } from "./metrics.ts";

const SAMPLING_FAILED = "the sampler could not draw a token for this request: its logits were NaN or infinite, or " +
  "overflowed float32 after logit_bias and penalties (a repetition_penalty near 0 does that); other requests were not affected";

/** The per-request state: detokenizer, stop-string matcher, counts and timings. */
export class Generation {
  private readonly detok: IncrementalDetokenizer | null;
  private readonly stops: StopStringMatcher | null;
  private completionTokens = 0;
  private finished = false;
  private readonly t0 = performance.now();
  private tLast = 0;

  constructor(
    readonly id: string,
    private readonly input: GenerateInput,
    tok: TextTokenizer | null,
    private readonly metrics: ServingMetrics,
    private readonly ev: GenerationEvents,
    private readonly abortEngine: () => void,
  ) {
    this.detok = input.detokenize && tok ? new IncrementalDetokenizer(tok, input.promptTokenIds, input.skipSpecialTokens) : null;
    this.stops = input.stop.length && this.detok ? new StopStringMatcher(input.stop, input.includeStopStrInOutput) : null;
  }

  abort(): void {
    if (!this.finished) this.abortEngine();
  }

  /** Ends the generation with an error (its last event); later outputs are ignored. */
  fail(e: ServiceError): void {
    if (this.finished) return;
    this.finished = true;
    this.ev.onError(e);
  }

  /** Handles one engine output; returns true when the engine is done with this request. */
  onOutput(o: EngineOutput): boolean {
    if (this.finished) return o.finished;
    if (o.finishReason === "error") {
      this.fail(new ServiceError(500, "internal_server_error", SAMPLING_FAILED));
      return true;
    }
    const ev = this.ev;
    this.observeTimings(o.newTokenIds.length);
    this.completionTokens += o.newTokenIds.length;
    // A stop token ends the output without its text, as in vLLM (unless the client wants it).
    const hideLast = o.finishReason === "stop" && !this.input.includeStopStrInOutput && o.newTokenIds.length > 0;
    const shown = hideLast ? o.newTokenIds.slice(0, -1) : o.newTokenIds;
    let text = this.detok ? this.detok.push(shown) : "";
    if (o.finished && this.detok) text += this.detok.flush();
    let stopString: string | null = null;
    if (this.stops) {
      const r = this.stops.push(text);
      text = r.emit + (o.finished && !r.stopped ? this.stops.flush() : "");
      if (r.stopped) stopString = r.stop ?? null;
    }
    if (o.newTokenIds.length || text) ev.onDelta({ tokenIds: o.newTokenIds, text, logprobs: o.logprobs });
    if (!o.finished && stopString === null) return false;
    if (!o.finished) this.abortEngine(); // a stop string ended it: free the engine's blocks now
    this.finish(o, stopString);
    return o.finished;
  }

  private finish(o: EngineOutput, stopString: string | null): void {
    this.finished = true;
    const last = o.newTokenIds.at(-1);
    const stopToken = o.finishReason === "stop" && last !== undefined && this.input.params.stopTokenIds.includes(last) ? last : null;
    const f: GenerationFinal = {
      finishReason: stopString !== null ? "stop" : o.finishReason === null || o.finishReason === "error" ? "abort" : o.finishReason,
      stopReason: stopString ?? stopToken,
      promptTokens: this.input.promptTokenIds.length,
      completionTokens: this.completionTokens,
      cachedTokens: o.numCachedTokens,
    };
    this.metrics.requestFinished((performance.now() - this.t0) / 1000, f.promptTokens, f.completionTokens, f.finishReason);
    this.ev.onFinish(f);
  }

  private observeTimings(newTokens: number): void {
    if (newTokens === 0) return;
    const now = performance.now();
    if (this.tLast === 0) this.metrics.firstToken((now - this.t0) / 1000);
    else this.metrics.interToken((now - this.tLast) / 1000);
    this.tLast = now;
  }
}
