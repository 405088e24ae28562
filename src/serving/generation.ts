// One generation as a front end sees it: token ids in, text and token deltas out, with stop
// strings, usage and metrics. The HTTP routes and the msgpack socket both sit on this, so they
// behave the same; neither touches the engine Worker directly.
import type { EngineClient } from "../engine/client.ts";
import type { EngineOutput } from "../engine/engine.ts";
import type { SamplingParams } from "../engine/request.ts";
import type { TokenLogprobs } from "../engine/runner.ts";
import { IncrementalDetokenizer } from "../tokenizer/detokenizer.ts";
import { StopStringMatcher } from "../tokenizer/stop-strings.ts";
import type { TextTokenizer } from "../tokenizer/tokenizer.ts";
import type { ServingMetrics } from "./metrics.ts";

/** A failure to report to the client: HTTP status, OpenAI error type, message, offending field. */
export class ServiceError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
    this.name = "ServiceError";
  }
}

export interface GenerateInput {
  promptTokenIds: number[];
  /** maxTokens null: as many as max_model_len leaves room for (vLLM's default). */
  params: Omit<SamplingParams, "maxTokens"> & { maxTokens: number | null };
  stop: string[];
  includeStopStrInOutput: boolean;
  detokenize: boolean;
  skipSpecialTokens: boolean;
}

export interface GenerationDelta {
  tokenIds: number[];
  text: string;
  logprobs: TokenLogprobs[] | null;
}

export interface GenerationFinal {
  finishReason: "stop" | "length" | "abort";
  /** The stop string or stop token id that ended it, if any. */
  stopReason: string | number | null;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
}

export interface GenerationEvents {
  onDelta(d: GenerationDelta): void;
  onFinish(f: GenerationFinal): void;
  onError(e: ServiceError): void;
}

export interface GenerationHandle {
  readonly id: string;
  /** Stops the request and frees its KV blocks; onFinish follows with reason "abort". */
  abort(): void;
}

export interface ServiceOptions {
  maxModelLen: number;
  maxNumSeqs: number;
  /** Requests allowed to wait beyond the running ones before new ones get 429. */
  maxQueue: number;
}

export class GenerationService {
  private nextId = 0;
  private inFlight = 0;

  constructor(
    private readonly client: EngineClient,
    readonly tokenizer: TextTokenizer | null,
    readonly metrics: ServingMetrics,
    readonly opts: ServiceOptions,
  ) {}

  get numInFlight(): number {
    return this.inFlight;
  }

  /** Validates and queues a generation; throws ServiceError when it cannot be served. */
  start(input: GenerateInput, ev: GenerationEvents): GenerationHandle {
    const maxTokens = this.resolveMaxTokens(input);
    if (this.inFlight >= this.opts.maxNumSeqs + this.opts.maxQueue) {
      throw new ServiceError(429, "rate_limit_error", `the server is busy: ${this.inFlight} requests in flight (--max-queue ${this.opts.maxQueue})`);
    }
    if (input.detokenize && !this.tokenizer) throw new ServiceError(400, "invalid_request_error", "this model has no tokenizer; set detokenize to false");
    const id = `gen-${++this.nextId}`;
    const run = new Generation(id, input, this.tokenizer, this.metrics, () => this.client.abort(id));
    this.inFlight++;
    const done = () => void this.inFlight--;
    this.client.add(
      id, input.promptTokenIds, { ...input.params, maxTokens },
      (o) => run.onOutput(o, ev) && done(),
      (msg) => (done(), ev.onError(new ServiceError(400, "invalid_request_error", msg))),
    );
    return { id, abort: () => run.abort() };
  }

  private resolveMaxTokens(input: GenerateInput): number {
    const n = input.promptTokenIds.length, max = this.opts.maxModelLen;
    if (n === 0) throw new ServiceError(400, "invalid_request_error", "the prompt is empty", "prompt");
    if (n >= max) {
      throw new ServiceError(400, "invalid_request_error",
        `this model's maximum context length is ${max} tokens, but the prompt has ${n} tokens (max_model_len leaves no room to generate)`, "prompt");
    }
    const want = input.params.maxTokens;
    if (want === null) return max - n;
    if (n + want > max) {
      throw new ServiceError(400, "invalid_request_error",
        `this model's maximum context length is ${max} tokens; the prompt (${n} tokens) plus max_tokens (${want}) exceeds it`, "max_tokens");
    }
    return want;
  }
}

/** The per-request state: detokenizer, stop-string matcher, counts and timings. */
class Generation {
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
    private readonly abortEngine: () => void,
  ) {
    this.detok = input.detokenize && tok ? new IncrementalDetokenizer(tok, input.promptTokenIds, input.skipSpecialTokens) : null;
    this.stops = input.stop.length && this.detok ? new StopStringMatcher(input.stop, input.includeStopStrInOutput) : null;
  }

  abort(): void {
    if (!this.finished) this.abortEngine();
  }

  /** Handles one engine output; returns true when this generation is over. */
  onOutput(o: EngineOutput, ev: GenerationEvents): boolean {
    if (this.finished) return o.finished;
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
    this.finish(o, stopString, ev);
    return o.finished;
  }

  private finish(o: EngineOutput, stopString: string | null, ev: GenerationEvents): void {
    this.finished = true;
    const last = o.newTokenIds.at(-1);
    const stopToken = o.finishReason === "stop" && last !== undefined && this.input.params.stopTokenIds.includes(last) ? last : null;
    const f: GenerationFinal = {
      finishReason: stopString !== null ? "stop" : (o.finishReason ?? "abort"),
      stopReason: stopString ?? stopToken,
      promptTokens: this.input.promptTokenIds.length,
      completionTokens: this.completionTokens,
      cachedTokens: o.numCachedTokens,
    };
    this.metrics.requestFinished((performance.now() - this.t0) / 1000, f.promptTokens, f.completionTokens, f.finishReason);
    ev.onFinish(f);
  }

  private observeTimings(newTokens: number): void {
    if (newTokens === 0) return;
    const now = performance.now();
    if (this.tLast === 0) this.metrics.firstToken((now - this.t0) / 1000);
    else this.metrics.interToken((now - this.tLast) / 1000);
    this.tLast = now;
  }
}
