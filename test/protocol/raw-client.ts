// A bare connection for protocol tests: sends any bytes, hands back decoded server frames one by
// one, and reports the close. Unlike the client library it checks nothing, so tests can misbehave.
import { decode } from "@msgpack/msgpack";
import { connect, type Socket } from "node:net";
import { FrameDecoder, FrameEncoder } from "../../src/protocol/frame.ts";

export type Frame = Record<string, unknown>;

export class RawConnection {
  private readonly frames: Frame[] = [];
  private waiter: (() => void) | null = null;
  private readonly decoder = new FrameDecoder(1 << 30);
  private readonly encoder = new FrameEncoder();
  isClosed = false;
  bytesReceived = 0;
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on("data", (chunk: Uint8Array) => {
      this.bytesReceived += chunk.length;
      for (const p of this.decoder.push(chunk)) this.frames.push(decode(p) as Frame);
      this.wake();
    });
    socket.on("error", () => {});
    this.closed = new Promise((resolve) => socket.once("close", () => ((this.isClosed = true), this.wake(), resolve())));
  }

  static open(target: string | number): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const s = typeof target === "string" ? connect(target) : connect(target, "127.0.0.1");
      s.once("connect", () => resolve(new RawConnection(s)));
      s.once("error", reject);
    });
  }

  /** Opens a connection and completes the hello. */
  static async greeted(target: string | number): Promise<RawConnection> {
    const c = await RawConnection.open(target);
    c.send({ type: "hello", version: 1 });
    const h = await c.next();
    if (h.type !== "hello") throw new Error(`expected hello, got ${JSON.stringify(h)}`);
    return c;
  }

  send(value: unknown): void {
    this.socket.write(this.encoder.encode(value));
  }

  sendBytes(b: Uint8Array): void {
    this.socket.write(b);
  }

  /** The next frame; rejects if none comes within timeoutMs or the connection closes first. */
  async next(timeoutMs = 5000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    while (!this.frames.length) {
      if (this.isClosed) throw new Error("connection closed while waiting for a frame");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame within ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiter = () => (clearTimeout(t), r());
      });
    }
    return this.frames.shift()!;
  }

  /** Frames up to and including the finished output (or an error) of one request. */
  async untilDone(id: unknown, timeoutMs = 20000): Promise<Frame[]> {
    const got: Frame[] = [];
    for (;;) {
      const f = await this.next(timeoutMs);
      if (f.id !== id) throw new Error(`frame for another request: ${JSON.stringify(f)}`);
      got.push(f);
      if (f.type === "error" || f.finished) return got;
    }
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }
}

/** Polls until cond holds; throws with `what` after timeoutMs. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
