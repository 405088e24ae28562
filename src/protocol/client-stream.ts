// The client library's view of one generation: frames arrive from the connection's reader and
// wait here until the caller's `for await` takes them. Runs under Node and Bun alike.
import type { ErrorCode, FinishReason, OutputFrame, RequestId, TokenLogprob, Usage } from "./messages.ts";

/** An error frame from the server about a request, or the connection ending under it. */
export class ProtocolError extends Error {
  constructor(
    readonly code: ErrorCode | "connection_closed",
    message: string,
    readonly id?: RequestId,
  ) {
    super(message);
    this.name = "ProtocolError";
  }
}

/** A finished generation, all its frames joined. */
export interface GenerationResult {
  id: RequestId;
  token_ids: number[];
  /** Present when the request asked for detokenize (the default). */
  text?: string;
  logprobs?: TokenLogprob[];
  finish_reason: FinishReason;
  stop_reason: string | number | null;
  usage: Usage;
}

/** Joins output frames; the last one (finished) completes the result. */
export function joinFrames(frames: readonly OutputFrame[]): GenerationResult {
  const last = frames.at(-1);
  if (!last?.finished) throw new Error("joinFrames needs the frames of a finished generation");
  const r: GenerationResult = {
    id: last.id, token_ids: frames.flatMap((f) => f.token_ids), finish_reason: last.finish_reason ?? "abort",
    stop_reason: last.stop_reason ?? null, usage: last.usage ?? { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
  };
  if (last.text !== undefined) r.text = frames.map((f) => f.text ?? "").join("");
  if (frames.some((f) => f.logprobs)) r.logprobs = frames.flatMap((f) => f.logprobs ?? []);
  return r;
}

type Waiter = { resolve: (r: IteratorResult<OutputFrame>) => void; reject: (e: Error) => void };

/**
 * The output frames of one streamed generation, as an async iterable (iterate it once). Leaving
 * the loop early (break, return, a throw) aborts the request on the server.
 */
export class GenerationStream implements AsyncIterable<OutputFrame> {
  private readonly frames: OutputFrame[] = [];
  private waiter: Waiter | null = null;
  private ended = false;
  private error: Error | null = null;
  private iterated = false;

  constructor(
    readonly id: RequestId,
    private readonly sendAbort: () => void,
  ) {}

  /** Asks the server to stop; the stream then ends with a frame whose finish_reason is "abort". */
  abort(): void {
    if (!this.ended) this.sendAbort();
  }

  /** Reads the rest of the stream and joins it. */
  async result(): Promise<GenerationResult> {
    const frames: OutputFrame[] = [];
    for await (const f of this) frames.push(f);
    return joinFrames(frames);
  }

  /** @internal the connection's reader hands over a frame for this id */
  push(f: OutputFrame): void {
    if (this.ended) return;
    if (f.finished) this.ended = true;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve({ value: f, done: false });
    } else {
      this.frames.push(f);
    }
  }

  /** @internal the request failed (error frame or connection lost) */
  fail(e: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.error = e;
    this.waiter?.reject(e);
    this.waiter = null;
  }

  [Symbol.asyncIterator](): AsyncIterator<OutputFrame> {
    if (this.iterated) throw new Error(`generation ${JSON.stringify(this.id)}: its stream can be iterated only once`);
    this.iterated = true;
    let finishedSeen = false;
    return {
      next: () => {
        const f = this.frames.shift();
        if (f) {
          finishedSeen ||= f.finished;
          return Promise.resolve({ value: f, done: false });
        }
        if (finishedSeen) return Promise.resolve({ value: undefined, done: true });
        if (this.error) return Promise.reject(this.error);
        return new Promise<IteratorResult<OutputFrame>>((resolve, reject) => {
          this.waiter = {
            resolve: (r) => {
              if (!r.done) finishedSeen ||= r.value.finished;
              resolve(r);
            },
            reject,
          };
        });
      },
      return: () => {
        if (!finishedSeen) this.abort();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
