// The main thread's handle on the engine Worker: sends requests, routes each step's outputs
// to the request that asked, keeps the latest stats.
import type { EngineConfigInput } from "../config.ts";
import type { EngineInfo, EngineOutput, EngineStats } from "./engine.ts";
import type { FromWorker, ToWorker } from "./protocol.ts";
import type { SamplingParams } from "./request.ts";
import { ENGINE_WORKER_URL } from "../worker-url.ts";

export type OutputHandler = (out: EngineOutput) => void;

/** How long shutdown() waits for the Worker to free the engine before terminating it. */
const SHUTDOWN_WAIT_MS = 30_000;
/** "rejected": the engine refused this request; "dead": the engine failed and serves nothing more. */
export type ErrorHandler = (message: string, kind: "rejected" | "dead") => void;

interface Pending {
  onOutput: OutputHandler;
  onError: ErrorHandler;
}

export class EngineClient {
  private readonly pending = new Map<string, Pending>();
  stats: EngineStats = { numRunning: 0, numWaiting: 0, kvCacheUsage: 0, numPreemptionsTotal: 0 };
  private closed: (() => void) | null = null;
  private shuttingDown = false;
  private deathReason: string | null = null;
  private readonly deathListeners: ((reason: string) => void)[] = [];

  private constructor(
    private readonly worker: Worker,
    readonly info: EngineInfo,
  ) {
    worker.onmessage = (ev: MessageEvent<FromWorker>) => this.onMessage(ev.data);
    worker.onerror = (e) => this.die(`the engine worker failed: ${e.message}`);
    worker.addEventListener("close", (e) => this.die(`the engine worker exited (code ${(e as CloseEvent).code})`));
  }

  /** Why the engine failed (a step threw, or its Worker died), or null while it serves. */
  get deadReason(): string | null {
    return this.deathReason;
  }

  /** Calls fn once if the engine fails; every request in flight has had its onError by then. */
  onDead(fn: (reason: string) => void): void {
    this.deathListeners.push(fn);
  }

  /** Starts the Worker and loads the model; rejects with the loader's message on failure. */
  static start(config: EngineConfigInput, onProgress?: (done: number, total: number) => void): Promise<EngineClient> {
    const worker = new Worker(ENGINE_WORKER_URL);
    return new Promise((resolve, reject) => {
      worker.onerror = (e) => reject(new Error(`engine worker failed: ${e.message}`));
      worker.onmessage = (ev: MessageEvent<FromWorker>) => {
        const m = ev.data;
        if (m.type === "progress") onProgress?.(m.done, m.total);
        else if (m.type === "ready") resolve(new EngineClient(worker, m.info));
        else if (m.type === "fatal") {
          worker.terminate();
          reject(new Error(m.message));
        }
      };
      worker.postMessage({ type: "init", config } satisfies ToWorker);
    });
  }

  add(id: string, promptTokenIds: number[], params: SamplingParams, onOutput: OutputHandler, onError: ErrorHandler): void {
    if (this.pending.has(id)) throw new Error(`request id '${id}' is already running`);
    if (this.deathReason !== null) return onError(this.deathReason, "dead");
    this.pending.set(id, { onOutput, onError });
    this.send({ type: "add", id, promptTokenIds, params });
  }

  abort(id: string): void {
    if (this.pending.has(id)) this.send({ type: "abort", id });
  }

  get numPending(): number {
    return this.pending.size;
  }

  /** Frees the engine's memory and ends the Worker. */
  async shutdown(timeoutMs = SHUTDOWN_WAIT_MS): Promise<void> {
    this.shuttingDown = true;
    if (this.deathReason !== null) return;
    const done = new Promise<void>((r) => (this.closed = r));
    this.send({ type: "shutdown" });
    // A Worker that cannot free its device (or died meanwhile) must not hold the process forever.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([done, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    this.worker.terminate();
  }

  /** The engine cannot go on: every request in flight fails, later ones are refused, listeners hear why. */
  private die(reason: string): void {
    if (this.shuttingDown) return this.closed?.(); // it will not post "closed" any more
    if (this.deathReason !== null) return;
    this.deathReason = reason;
    const failed = [...this.pending.values()];
    this.pending.clear();
    for (const p of failed) p.onError(reason, "dead");
    this.worker.terminate();
    for (const fn of this.deathListeners) fn(reason);
  }

  private send(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  private onMessage(m: FromWorker): void {
    if (m.type === "outputs") {
      this.stats = m.stats;
      for (const o of m.outputs) {
        const p = this.pending.get(o.id);
        if (!p) continue;
        if (o.finished) this.pending.delete(o.id);
        try {
          p.onOutput(o);
        } catch (e) { // one request's handler must not cost the rest of the step their outputs
          console.error(`vllmd: the output handler of request ${o.id} failed:`, e);
        }
      }
    } else if (m.type === "rejected") {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      p?.onError(m.message, "rejected");
    } else if (m.type === "fatal") {
      this.die(m.message);
    } else if (m.type === "closed") {
      this.closed?.();
    }
  }
}
