// One client connection of the msgpack protocol: reassembles frames, answers hello, starts and
// aborts generations, and writes their outputs with backpressure. Nothing a client sends may
// throw out of here: every bad frame becomes an error frame and the connection carries on,
// except a frame over the size limit, after which the stream cannot be trusted and is closed.
import type { Decoder } from "@msgpack/msgpack";
import type { ServingContext } from "../serving/context.ts";
import { ServiceError } from "../serving/generation.ts";
import { FrameDecoder, FrameEncoder, FrameTooLargeError, normalizeIntegers, strictDecoder } from "./frame.ts";
import { InvalidGenerateError, toGenerateInput } from "./generate-input.ts";
import { OutputCollector } from "./output.ts";
import {
  errorFrame, parseClientFrame, PROTOCOL_VERSION, type ErrorCode, type GenerateFrame, type HelloFrame,
  type ParsedFrame, type RequestId, type ServerFrame,
} from "./messages.ts";
import { WriteQueue, type ByteSink } from "./write-queue.ts";

export interface ConnectionSocket extends ByteSink {
  /** Closes after the bytes already handed to write(). */
  end(): void;
  /** Closes at once. */
  terminate(): void;
}

export interface ConnectionOptions {
  /** Output a client may leave unread before it is disconnected. */
  maxQueuedBytes: number;
  /** How long a closing connection may take to flush its last error frame. */
  closeGraceMs: number;
  /** A connection with no request in flight that sends nothing for this long is closed (0: never). */
  idleTimeoutMs: number;
}

/** Bytes of received frames that may wait for their turn (behind prompts being tokenized). */
const MAX_QUEUED_BYTES = 64 * 2 ** 20;
/** What a waiting frame costs beyond its payload (its closure, promise and parsed value), counted against that. */
const FRAME_OVERHEAD_BYTES = 256;

export const DEFAULT_CONNECTION_OPTIONS: ConnectionOptions = { maxQueuedBytes: 64 * 2 ** 20, closeGraceMs: 2000, idleTimeoutMs: 0 };

interface Running {
  abort(): void;
}

export class Connection {
  private readonly frames: FrameDecoder;
  private readonly msgpack: Decoder = strictDecoder();
  private readonly encoder = new FrameEncoder({ forceFloat32: true });
  private readonly out: WriteQueue;
  /** In-flight generations by the client's id (a JS Map keeps 1 and "1" apart, as the spec does). */
  private readonly running = new Map<RequestId, Running>();
  private greeted = false;
  private closing = false;
  /** Shutting down: nothing more is read, what was received is still answered (closeWhenFlushed). */
  private draining = false;
  /** The handling of frames received so far, in order (see enqueue). */
  private tail: Promise<void> = Promise.resolve();
  private queuedBytes = 0;
  private idleTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly ctx: ServingContext,
    private readonly socket: ConnectionSocket,
    private readonly opts: ConnectionOptions = DEFAULT_CONNECTION_OPTIONS,
  ) {
    this.frames = new FrameDecoder(ctx.maxBodyBytes);
    this.out = new WriteQueue(socket, {
      highWaterBytes: opts.maxQueuedBytes,
      onOverflow: () => this.fail("internal", `more than ${opts.maxQueuedBytes} bytes of output left unread; closing the connection`),
    });
    this.armIdleTimer();
  }

  get numRunning(): number {
    return this.running.size;
  }

  onData(chunk: Uint8Array): void {
    if (this.closing || this.draining) return;
    let payloads: Uint8Array[];
    try {
      payloads = this.frames.push(chunk);
    } catch (e) {
      if (!(e instanceof FrameTooLargeError)) throw e;
      return this.fail("frame_too_large", `${e.message} (the server's max_frame_bytes); closing the connection`);
    }
    // Only whole frames count as activity: a client trickling bytes is still idle.
    if (payloads.length) this.armIdleTimer();
    // Payloads are views that the next push() overwrites: decode each now, handle it in turn.
    for (const p of payloads) this.enqueue(this.decode(p), p.byteLength);
  }

  onDrain(): void {
    this.out.onDrain();
  }

  /** The socket is gone: nothing more can be sent, and its generations must free their KV blocks. */
  onClose(): void {
    this.closing = true;
    this.disarmIdleTimer();
    this.out.discard();
    this.abortAll();
  }

  /**
   * The server shuts down: stops reading, answers the frames already received (a generate is
   * refused as unavailable, since the service takes nothing new), then closes once that is written.
   */
  closeWhenFlushed(): void {
    if (this.closing || this.draining) return;
    this.draining = true;
    this.disarmIdleTimer();
    void this.tail.then(() => {
      if (this.closing) return;
      this.closing = true;
      this.abortAll();
      this.endAfterFlush();
    });
  }

  private decode(payload: Uint8Array): ParsedFrame {
    let value: unknown;
    try {
      value = normalizeIntegers(this.msgpack.decode(payload));
    } catch (e) {
      return { ok: false, error: errorFrame("malformed_frame", `the frame is not one valid msgpack value with string map keys: ${e instanceof Error ? e.message : String(e)}`) };
    }
    return parseClientFrame(value);
  }

  /**
   * Frames are handled one after another, in arrival order, though a generate waits for its
   * prompt to be tokenized. What waits is bounded: a client that sends more than
   * MAX_QUEUED_BYTES meanwhile is sent a busy frame and disconnected.
   */
  private enqueue(parsed: ParsedFrame, payloadBytes: number): void {
    const bytes = payloadBytes + FRAME_OVERHEAD_BYTES; // a tiny frame still holds a closure and a promise
    if (this.queuedBytes + bytes > MAX_QUEUED_BYTES) {
      return this.fail("busy", `more than ${MAX_QUEUED_BYTES} bytes of frames wait on this connection behind prompts being tokenized; closing the connection`);
    }
    this.queuedBytes += bytes;
    this.tail = this.tail.then(async () => {
      try {
        if (!this.closing) await this.onFrame(parsed);
      } catch (e) {
        this.send(errorFrame("internal", `internal error: ${e instanceof Error ? e.message : String(e)}`));
      } finally {
        this.queuedBytes -= bytes;
      }
    });
  }

  private async onFrame(parsed: ParsedFrame): Promise<void> {
    if (!parsed.ok) return this.send(parsed.error);
    const f = parsed.frame;
    if (f.type === "hello") return this.hello(f);
    if (!this.greeted) return this.send(errorFrame("hello_required", `send {type: "hello", version: ${PROTOCOL_VERSION}} first`, f.id));
    if (f.type === "generate") return this.generate(f);
    this.running.get(f.id)?.abort(); // an unknown id may have just finished: nothing to do
  }

  private hello(f: HelloFrame): void {
    if (f.version !== PROTOCOL_VERSION) {
      return this.send(errorFrame("unsupported_version", `protocol version ${f.version} is not supported; this server speaks version ${PROTOCOL_VERSION}`));
    }
    this.greeted = true;
    this.send({ type: "hello", version: PROTOCOL_VERSION, model: this.ctx.modelName, max_model_len: this.ctx.maxModelLen, max_frame_bytes: this.ctx.maxBodyBytes });
  }

  private async generate(f: GenerateFrame): Promise<void> {
    const id = f.id;
    if (this.running.has(id)) return this.send(errorFrame("duplicate_id", `id ${JSON.stringify(id)} is already in flight on this connection`, id));
    const stream = f.stream ?? true;
    const collector = new OutputCollector(id, stream, f.detokenize ?? true, (frame) => this.send(frame));
    // The entry is this request's own, so that its end never removes a later request reusing the id.
    const entry: Running = { abort: () => {} };
    const release = () => {
      if (this.running.get(id) === entry) this.running.delete(id);
      this.armIdleTimer();
    };
    this.running.set(id, entry);
    this.disarmIdleTimer();
    try {
      this.ctx.service.checkCapacity(1);
      const input = await toGenerateInput(f, { prompts: this.ctx.prompts, vocabSize: this.ctx.client.info.vocabSize });
      if (this.closing) return release(); // the client left while its prompt was tokenized
      const handle = this.ctx.service.start(input, {
        onDelta: (d) => collector.delta(d),
        onFinish: (fin) => (release(), collector.finish(fin)),
        onError: (e) => (release(), collector.cancel(), this.send(errorFrame(codeOf(e), e.message, id))),
      });
      entry.abort = () => handle.abort();
    } catch (e) {
      release();
      // Anything else (an input Worker that died) is the server's fault, still this request's end.
      const known = e instanceof InvalidGenerateError || e instanceof ServiceError;
      this.send(errorFrame(known ? codeOf(e) : "internal", known ? e.message : `internal error: ${e instanceof Error ? e.message : String(e)}`, id));
    }
  }

  private send(frame: ServerFrame): void {
    if (!this.closing) this.out.push(this.encoder.encode(frame));
  }

  /** Sends a last error frame, stops reading, frees every generation, and closes once the frame is out. */
  private fail(code: ErrorCode, message: string): void {
    if (this.closing) return;
    this.send(errorFrame(code, message));
    this.closing = true;
    this.abortAll();
    this.endAfterFlush();
  }

  private endAfterFlush(): void {
    this.disarmIdleTimer();
    const timer = setTimeout(() => this.socket.terminate(), this.opts.closeGraceMs);
    this.out.whenEmpty(() => {
      clearTimeout(timer);
      this.socket.end();
    });
  }

  /** (Re)starts the idle clock while no request is in flight: a client waiting on a generation is not idle. */
  private armIdleTimer(): void {
    this.disarmIdleTimer();
    const ms = this.opts.idleTimeoutMs;
    if (ms <= 0 || this.closing || this.running.size > 0) return;
    this.idleTimer = setTimeout(() => this.fail("idle_timeout", `no request for ${ms / 1000} s; closing the connection`), ms);
  }

  private disarmIdleTimer(): void {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }

  private abortAll(): void {
    const all = [...this.running.values()];
    this.running.clear();
    for (const r of all) r.abort();
  }
}

function codeOf(e: Error): ErrorCode {
  if (!(e instanceof ServiceError)) return "invalid_request";
  if (e.status === 429) return "busy";
  if (e.status === 503) return "unavailable";
  return e.status >= 500 ? "internal" : "invalid_request";
}
