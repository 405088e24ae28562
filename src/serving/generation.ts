// One generation as a front end sees it: token ids in, text and token deltas out, with stop
// strings, usage and metrics. The HTTP routes and the msgpack socket both sit on this, so they
// behave the same; neither touches the engine Worker directly.
import type { EngineClient } from "../engine/client.ts";
import type { SamplingParams } from "../engine/request.ts";
import type { TokenLogprobs } from "../engine/runner.ts";
import type { TextTokenizer } from "../tokenizer/tokenizer.ts";
import { Generation } from "./generation-run.ts";
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
  private readonly running = new Map<string, Generation>();
  /** Why new generations are refused (the server is shutting down), or null. */
  private refusing: string | null = null;
  private idleWaiters: ((idle: boolean) => void)[] = [];

  constructor(
    private readonly client: EngineClient,
    readonly tokenizer: TextTokenizer | null,
    readonly metrics: ServingMetrics,
    readonly opts: ServiceOptions,
  ) {}

  get numInFlight(): number {
    return this.running.size;
  }

  /** Validates and queues a generation; throws ServiceError when it cannot be served. */
  start(input: GenerateInput, ev: GenerationEvents): GenerationHandle {
    this.checkAccepting();
    const maxTokens = this.resolveMaxTokens(input);
    this.checkCapacity(1);
    if (input.detokenize && !this.tokenizer) throw new ServiceError(400, "invalid_request_error", "this model has no tokenizer; set detokenize to false");
    const id = `gen-${++this.nextId}`;
    const run = new Generation(id, input, this.tokenizer, this.metrics, ev, () => this.client.abort(id));
    this.running.set(id, run);
    this.client.add(
      id, input.promptTokenIds, { ...input.params, maxTokens },
      (o) => run.onOutput(o) && this.settle(id),
      (msg, kind) => {
        run.fail(kind === "dead" ? new ServiceError(500, "internal_server_error", `the engine failed: ${msg}`)
          : new ServiceError(400, "invalid_request_error", msg));
        this.settle(id);
      },
    );
    return { id, abort: () => run.abort() };
  }

  /**
   * Throws what start() would for `count` more generations, before any work on them (a request's
   * prompts are tokenized only once it is known to fit): 503 when refusing, 429 when full.
   */
  checkCapacity(count: number): void {
    this.checkAccepting();
    const cap = this.opts.maxNumSeqs + this.opts.maxQueue;
    if (this.running.size + count > cap) {
      throw new ServiceError(429, "rate_limit_error",
        `the server is busy: ${this.running.size} requests in flight, ${count} more asked, room for ${cap} (--max-queue ${this.opts.maxQueue})`);
    }
  }

  /** Throws 503 while the server shuts down or once the engine has failed. */
  checkAccepting(): void {
    const dead = this.client.deadReason;
    if (dead !== null) throw new ServiceError(503, "service_unavailable_error", `the engine is not running (${dead}); the server is shutting down`);
    if (this.refusing !== null) throw new ServiceError(503, "service_unavailable_error", this.refusing);
  }

  /** From now on new generations get 503 with this message; running ones go on. */
  refuseNew(message: string): void {
    this.refusing ??= message;
  }

  /** Resolves true once no generation is in flight, or false after timeoutMs (or at stopWaiting). */
  whenIdle(timeoutMs: number): Promise<boolean> {
    if (this.running.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.wakeIdleWaiters(), timeoutMs);
      this.idleWaiters.push((idle) => (clearTimeout(timer), resolve(idle)));
    });
  }

  /** Ends every whenIdle wait now (a second shutdown signal). */
  stopWaiting(): void {
    this.wakeIdleWaiters();
  }

  /** Ends every generation in flight with a 503 carrying `message`, and frees their KV blocks. */
  failAll(message: string): void {
    for (const [id, run] of [...this.running]) {
      run.abort();
      run.fail(new ServiceError(503, "service_unavailable_error", message));
      this.settle(id);
    }
  }

  private settle(id: string): void {
    if (this.running.delete(id) && this.running.size === 0) this.wakeIdleWaiters();
  }

  private wakeIdleWaiters(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const fn of waiters) fn(this.running.size === 0);
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

