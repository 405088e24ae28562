// A client library for vllmd's msgpack protocol (docs/protocol.md), for Bun and Node: it uses
// node:net only. One connection carries many concurrent generations, told apart by their ids.
//
//   const c = await connect("/tmp/vllmd.sock");          // or a TCP port, or { host, port }
//   for await (const f of c.generate({ prompt: "Hi", params: { max_tokens: 8 } })) process.stdout.write(f.text ?? "");
//   const r = await c.generate({ prompt_token_ids: [1, 2], stream: false });
//   await c.close();
import { connect as netConnect, type Socket } from "node:net";
import { Decoder } from "@msgpack/msgpack";
import { GenerationStream, joinFrames, ProtocolError, type GenerationResult } from "./client-stream.ts";
import { FrameDecoder, FrameEncoder } from "./frame.ts";
import { PROTOCOL_VERSION, type ErrorFrame, type HelloReply, type OutputFrame, type RequestId, type SamplingParamsFrame, type ServerFrame } from "./messages.ts";

export { GenerationStream, joinFrames, ProtocolError, type GenerationResult };
export type { ErrorFrame, HelloReply, OutputFrame, RequestId, SamplingParamsFrame };

/** A unix socket path, a TCP port on 127.0.0.1, or either spelled out. */
export type ConnectTarget = string | number | { path: string } | { host?: string; port: number };

export interface ConnectOptions {
  /** Largest frame accepted from the server (default 256 MiB). */
  maxFrameBytes?: number;
  /** Time allowed to connect and complete the hello (default 10 s). */
  timeoutMs?: number;
}

export interface GenerateRequest {
  /** Unique among this connection's requests in flight; chosen by the library when left out. */
  id?: RequestId;
  prompt?: string;
  prompt_token_ids?: number[];
  params?: SamplingParamsFrame;
  /** Text in the output frames (default true). */
  detokenize?: boolean;
}

export async function connect(target: ConnectTarget, opts: ConnectOptions = {}): Promise<MsgpackClient> {
  const socket = openSocket(target);
  const client = new MsgpackClient(socket, opts.maxFrameBytes ?? 256 * 2 ** 20);
  const timeoutMs = opts.timeoutMs ?? 10_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no hello from ${describeTarget(target)} within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([client.handshake(), timeout]);
    return client;
  } catch (e) {
    socket.destroy();
    throw e instanceof ProtocolError && e.code === "connection_closed" ? new Error(`cannot connect to ${describeTarget(target)}: ${e.message}`) : e;
  } finally {
    clearTimeout(timer);
  }
}

export class MsgpackClient {
  /** The server's hello: model, max_model_len, max_frame_bytes. */
  server!: HelloReply;
  /** Error frames that name no request (a malformed frame, the connection being closed). */
  onError: (e: ProtocolError) => void = () => {};
  private readonly frames: FrameDecoder;
  private readonly msgpack = new Decoder();
  private readonly encoder = new FrameEncoder();
  private readonly streams = new Map<RequestId, GenerationStream>();
  private hello: { resolve: (h: HelloReply) => void; reject: (e: Error) => void } | null = null;
  private nextId = 1;
  private closedError: ProtocolError | null = null;
  private readonly closed: Promise<void>;

  /** Use connect(). */
  constructor(
    private readonly socket: Socket,
    maxFrameBytes: number,
  ) {
    this.frames = new FrameDecoder(maxFrameBytes);
    socket.on("data", (chunk: Uint8Array) => this.onData(chunk));
    socket.on("error", (e) => this.lost(e.message));
    this.closed = new Promise((resolve) => socket.once("close", () => (this.lost("the connection closed"), resolve())));
  }

  /** Requests in flight on this connection. */
  get inFlight(): number {
    return this.streams.size;
  }

  /** @internal */
  handshake(): Promise<HelloReply> {
    return new Promise<HelloReply>((resolve, reject) => {
      this.hello = { resolve: (h) => ((this.server = h), resolve(h)), reject };
      this.write({ type: "hello", version: PROTOCOL_VERSION });
    });
  }

  /** Streams output frames (the default), or with stream: false resolves to the whole result. */
  generate(req: GenerateRequest & { stream: false }): Promise<GenerationResult>;
  generate(req: GenerateRequest & { stream?: true }): GenerationStream;
  generate(req: GenerateRequest & { stream?: boolean }): GenerationStream | Promise<GenerationResult> {
    const id = req.id ?? this.freshId();
    checkId(id);
    if (this.streams.has(id)) throw new Error(`id ${JSON.stringify(id)} is already in flight on this connection`);
    if (this.closedError) throw this.closedError;
    const { id: _, stream, ...rest } = req;
    const frame = this.encoder.encode({ type: "generate", id, ...rest, stream: stream ?? true });
    // The server would close the connection (failing every request on it) rather than read this.
    if (frame.length - 4 > this.server.max_frame_bytes) {
      throw new Error(`the generate frame is ${frame.length - 4} bytes, over the server's max_frame_bytes (${this.server.max_frame_bytes})`);
    }
    const s = new GenerationStream(id, () => this.abort(id));
    this.streams.set(id, s);
    this.socket.write(frame);
    return stream === false ? s.result() : s;
  }

  /** Stops a request; its stream ends with finish_reason "abort". Unknown ids are ignored. */
  abort(id: RequestId): void {
    if (this.streams.has(id) && !this.closedError) this.write({ type: "abort", id });
  }

  /** Closes the connection; requests still in flight fail with code "connection_closed" (the server aborts them). */
  async close(): Promise<void> {
    this.socket.end();
    await this.closed;
  }

  private freshId(): number {
    while (this.streams.has(this.nextId)) this.nextId++;
    return this.nextId++;
  }

  private write(frame: Record<string, unknown>): void {
    this.socket.write(this.encoder.encode(frame));
  }

  private onData(chunk: Uint8Array): void {
    let frames: ServerFrame[];
    try {
      frames = this.frames.push(chunk).map((p) => this.msgpack.decode(p) as ServerFrame);
    } catch (e) {
      // Not this protocol (or a frame over our limit): nothing after it can be trusted.
      this.socket.destroy();
      return this.lost(`bad data from the server: ${e instanceof Error ? e.message : String(e)}`);
    }
    for (const f of frames) this.onFrame(f);
  }

  private onFrame(f: ServerFrame): void {
    if (f.type === "hello") return this.hello?.resolve(f);
    if (f.type === "output") return this.onOutput(f);
    if (f.type !== "error") return;
    const err = new ProtocolError(f.code, f.message, f.id);
    const s = f.id === undefined ? undefined : this.streams.get(f.id);
    if (s && f.code !== "duplicate_id") {
      this.streams.delete(f.id!);
      s.fail(err);
    } else if (this.hello && !this.server) {
      this.hello.reject(err);
    } else {
      this.onError(err);
    }
  }

  private onOutput(f: OutputFrame): void {
    const s = this.streams.get(f.id);
    if (!s) return;
    if (f.finished) this.streams.delete(f.id);
    s.push(f);
  }

  private lost(reason: string): void {
    if (this.closedError) return;
    this.closedError = new ProtocolError("connection_closed", reason);
    this.hello?.reject(this.closedError);
    for (const s of this.streams.values()) s.fail(this.closedError);
    this.streams.clear();
  }
}

/** The server answers a frame with an unreadable id by an error naming no request, which no stream would see. */
function checkId(id: RequestId): void {
  const ok = typeof id === "string" ? id.length > 0 && id.length <= 256 : Number.isSafeInteger(id);
  if (!ok) throw new Error(`id must be a non-empty string of at most 256 characters or a safe integer, got ${JSON.stringify(id)}`);
}

function openSocket(t: ConnectTarget): Socket {
  if (typeof t === "string") return netConnect(t);
  if (typeof t === "number") return netConnect(t, "127.0.0.1").setNoDelay(true);
  if ("path" in t) return netConnect(t.path);
  return netConnect(t.port, t.host ?? "127.0.0.1").setNoDelay(true);
}

function describeTarget(t: ConnectTarget): string {
  if (typeof t === "string") return `unix:${t}`;
  if (typeof t === "number") return `127.0.0.1:${t}`;
  return "path" in t ? `unix:${t.path}` : `${t.host ?? "127.0.0.1"}:${t.port}`;
}
