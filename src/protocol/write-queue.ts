// Outgoing bytes of one connection. Bun's socket.write() takes what the kernel accepts right now
// and returns that count, buffering nothing: the rest must be kept and written again from the
// `drain` callback, or frames arrive truncated. Frames queued in one tick go out in one write
// (an engine step yields a frame per running request; one syscall each would dominate).

export interface ByteSink {
  /** Bytes taken (possibly fewer than given; negative when the socket is closed). */
  write(data: Uint8Array): number;
}

export interface WriteQueueOptions {
  /** Queued bytes beyond which the peer counts as not reading: onOverflow fires (once). */
  highWaterBytes: number;
  onOverflow(): void;
}

/** The most bytes joined into one write, so that a backlog is not copied whole on every retry. */
const MAX_WRITE_BYTES = 1 << 18;

export class WriteQueue {
  private chunks: Uint8Array[] = [];
  private head = 0; // chunks before this index are written
  private queued = 0;
  private scheduled = false;
  private awaitingDrain = false;
  private dead = false;
  private overflowed = false;
  private emptyWaiters: (() => void)[] = [];

  constructor(
    private readonly sink: ByteSink,
    private readonly opts: WriteQueueOptions,
  ) {}

  get pendingBytes(): number {
    return this.queued;
  }

  push(bytes: Uint8Array): void {
    if (this.dead) return;
    this.chunks.push(bytes);
    this.queued += bytes.length;
    if (this.queued > this.opts.highWaterBytes && !this.overflowed) {
      this.overflowed = true;
      this.opts.onOverflow();
    }
    if (!this.scheduled && !this.awaitingDrain) {
      this.scheduled = true;
      queueMicrotask(() => {
        this.scheduled = false;
        this.flush();
      });
    }
  }

  /** The socket can take more: called from its `drain` handler. */
  onDrain(): void {
    this.awaitingDrain = false;
    this.flush();
  }

  /** Calls fn once everything queued so far is written (at once when nothing is queued). */
  whenEmpty(fn: () => void): void {
    if (this.queued === 0) fn();
    else this.emptyWaiters.push(fn);
  }

  /** Drops everything: the socket is gone. */
  discard(): void {
    this.dead = true;
    this.chunks = [];
    this.head = 0;
    this.queued = 0;
    this.emptyWaiters = [];
  }

  private flush(): void {
    while (!this.dead && !this.awaitingDrain && this.queued > 0) {
      const batch = this.takeBatch();
      const n = this.sink.write(batch);
      if (n < 0) return this.discard();
      this.queued -= n;
      if (n < batch.length) {
        // Put back what was not taken, ahead of the rest, and wait for `drain`.
        this.chunks[--this.head] = batch.subarray(n);
        this.awaitingDrain = true;
      }
    }
    if (this.head > 0) {
      this.chunks.splice(0, this.head); // let written chunks be collected
      this.head = 0;
    }
    if (this.queued === 0 && this.emptyWaiters.length) {
      const waiters = this.emptyWaiters;
      this.emptyWaiters = [];
      for (const fn of waiters) fn();
    }
  }

  /** Removes the next chunks (up to MAX_WRITE_BYTES joined, or one larger chunk) from the queue. */
  private takeBatch(): Uint8Array {
    const first = this.chunks[this.head]!;
    let end = this.head + 1, size = first.length;
    while (end < this.chunks.length && size + this.chunks[end]!.length <= MAX_WRITE_BYTES) size += this.chunks[end++]!.length;
    if (end === this.head + 1) {
      this.head = end;
      return first;
    }
    const out = new Uint8Array(size);
    let at = 0;
    for (let i = this.head; i < end; i++) {
      out.set(this.chunks[i]!, at);
      at += this.chunks[i]!.length;
    }
    this.head = end;
    return out;
  }
}
