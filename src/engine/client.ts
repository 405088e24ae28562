// The main thread's handle on the engine Worker: sends requests, routes each step's outputs
// to the request that asked, keeps the latest stats.
import type { EngineConfigInput } from "../config.ts";
import type { EngineInfo, EngineOutput, EngineStats } from "./engine.ts";
import type { FromWorker, ToWorker } from "./protocol.ts";
import type { SamplingParams } from "./request.ts";
import { ENGINE_WORKER_URL } from "../worker-url.ts";

export type OutputHandler = (out: EngineOutput) => void;
export type ErrorHandler = (message: string) => void;

interface Pending {
  onOutput: OutputHandler;
  onError: ErrorHandler;
}

export class EngineClient {
  private readonly pending = new Map<string, Pending>();
  stats: EngineStats = { numRunning: 0, numWaiting: 0, kvCacheUsage: 0, numPreemptionsTotal: 0 };
  private closed: (() => void) | null = null;

  private constructor(
    private readonly worker: Worker,
    readonly info: EngineInfo,
  ) {
    worker.onmessage = (ev: MessageEvent<FromWorker>) => this.onMessage(ev.data);
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
  async shutdown(): Promise<void> {
    const done = new Promise<void>((r) => (this.closed = r));
    this.send({ type: "shutdown" });
    await done;
    this.worker.terminate();
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
        p.onOutput(o);
      }
    } else if (m.type === "rejected") {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      p?.onError(m.message);
    } else if (m.type === "fatal") {
      for (const p of this.pending.values()) p.onError(m.message);
      this.pending.clear();
    } else if (m.type === "closed") {
      this.closed?.();
    }
  }
}
