// A pool of input Workers (input-worker.ts): large JSON bodies are parsed and prompts tokenized
// there, off the event loop. Each job goes to the Worker with the fewest jobs waiting; a Worker
// that dies fails its jobs and is replaced, so one bad input costs one request, not the pool.
import { availableParallelism } from "node:os";
import { INPUT_WORKER_URL } from "../worker-url.ts";
import { ServiceError } from "./generation.ts";
import { fromJobError, parseJsonBytes, type FromInputWorker, type JobResult, type InputJob, type ToInputWorker } from "./input-jobs.ts";

interface Pending {
  resolve(result: unknown): void;
  reject(e: Error): void;
}

interface Slot {
  worker: Worker;
  pending: Map<number, Pending>;
}

/** Bodies up to this size parse on the calling thread: about 5 ms at most. */
/** A job the pool cannot run: the server's fault, not the request's, said in one line. */
const unavailable = (why: string): ServiceError => new ServiceError(500, "internal_server_error", `the input workers cannot take the request: ${why}`);

export const INLINE_JSON_BYTES = 2 ** 20;

/** A quarter of the cores, 1 to 4: input work is bursty, and the engine and HTTP need cores too. */
export const defaultPoolSize = (): number => Math.max(1, Math.min(4, Math.floor(availableParallelism() / 4)));

export class InputPool {
  private readonly slots: Slot[] = [];
  private nextJob = 0;
  private closed = false;
  /** Set when a Worker could not load the tokenizer: respawning would fail the same way. */
  private broken: string | null = null;

  private constructor(private readonly dir: string | null, size: number) {
    for (let i = 0; i < size; i++) this.slots.push(this.spawn());
  }

  /** Starts `size` Workers that each load the tokenizer of `dir` (null: none); jobs sent before they are ready wait. */
  static start(dir: string | null, size: number): InputPool {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`the input pool needs at least 1 worker, got ${size}`);
    return new InputPool(dir, size);
  }

  get size(): number {
    return this.slots.length;
  }

  /** Runs a job in a Worker; `transfer` moves buffers there instead of copying them. */
  run<J extends InputJob>(job: J, transfer: ArrayBuffer[] = []): Promise<JobResult<J>> {
    if (this.closed || this.broken) return Promise.reject(unavailable(this.broken ?? "the input pool is closed"));
    const slot = this.slots.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    const id = ++this.nextJob;
    return new Promise((resolve, reject) => {
      slot.pending.set(id, { resolve: resolve as Pending["resolve"], reject });
      slot.worker.postMessage({ type: "job", id, job } satisfies ToInputWorker, transfer);
    });
  }

  /** A body as JSON: small ones here (a Worker's round trip would cost more), large ones in a Worker. */
  parseJson(bytes: Uint8Array): Promise<unknown> {
    if (bytes.byteLength <= INLINE_JSON_BYTES) return Promise.resolve().then(() => parseJsonBytes(bytes));
    const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
    return this.run({ op: "json", bytes: own.buffer as ArrayBuffer }, [own.buffer as ArrayBuffer]);
  }

  close(): void {
    this.closed = true;
    for (const s of this.slots.splice(0)) this.retire(s, "the input pool closed");
  }

  private spawn(): Slot {
    const slot: Slot = { worker: new Worker(INPUT_WORKER_URL), pending: new Map() };
    slot.worker.onmessage = (ev: MessageEvent<FromInputWorker>) => this.onMessage(slot, ev.data);
    slot.worker.onerror = (e) => this.replace(slot, `an input worker failed: ${e.message}`);
    slot.worker.addEventListener("close", () => this.replace(slot, "an input worker exited"));
    slot.worker.postMessage({ type: "init", dir: this.dir } satisfies ToInputWorker);
    return slot;
  }

  private onMessage(slot: Slot, m: FromInputWorker): void {
    if (m.type === "ready") return;
    if (m.type === "failed") {
      this.broken = `an input worker could not load the tokenizer: ${m.message}`;
      return this.close();
    }
    const p = slot.pending.get(m.id);
    if (!p) return;
    slot.pending.delete(m.id);
    if (m.type === "done") p.resolve(m.result);
    else p.reject(fromJobError(m.error));
  }

  /** Fails the slot's jobs and puts a fresh Worker in its place. */
  private replace(slot: Slot, why: string): void {
    const at = this.slots.indexOf(slot);
    if (at < 0) return; // already replaced, or the pool closed
    this.slots[at] = this.spawn();
    this.retire(slot, why);
  }

  /** Ends a slot's Worker and fails its jobs; the slot is out of this.slots already. */
  private retire(slot: Slot, why: string): void {
    const jobs = [...slot.pending.values()];
    slot.pending.clear();
    slot.worker.onmessage = null;
    slot.worker.onerror = null;
    slot.worker.terminate();
    for (const p of jobs) p.reject(unavailable(why));
  }
}
