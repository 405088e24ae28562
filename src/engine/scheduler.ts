// Continuous batching with a token budget and no prefill/decode phases: every step, running
// requests go first (one decode token each, or the next chunk of their prefill), then waiting
// requests are admitted first come, first served, their prompts chunked to the remaining budget.
// When the pool runs dry the newest running request is preempted and later recomputed.

import { KVCacheManager } from "./kv-cache-manager.ts";
import { checkConfig, checkParams } from "./scheduler-checks.ts";
import { needsPenalties, type FinishReason, type Request } from "./request.ts";

export interface SchedulerConfig {
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  maxModelLen: number;
  blockSize: number;
  numBlocks: number;
  enablePrefixCaching: boolean;
}

/**
 * One request's share of a step: it computes the tokens at positions [end - numNewTokens, end).
 * schedule() has already advanced `req.numComputedTokens` to `end` (a later step may advance it
 * further before this one's update: async scheduling).
 */
export interface ScheduledRequest {
  req: Request;
  numNewTokens: number;
  end: number;
  /** The step reaches the end of the request's tokens (pending ones counted), so it samples. */
  samples: boolean;
}

/** Position of the first token this step computes for `s`. */
export const chunkStart = (s: ScheduledRequest): number => s.end - s.numNewTokens;

/** Steps scheduled and not yet updated, at most: one on the device while the next is planned. */
export const MAX_STEPS_IN_FLIGHT = 2;

/** A step's batch. The object and its arrays are reused: valid until its update() (or, when empty, the next schedule()). */
export interface SchedulerOutput {
  /** Batch order: running requests first (in their order), then newly admitted or resumed ones. */
  scheduled: ScheduledRequest[];
  /** Sum of numNewTokens. */
  totalTokens: number;
  /** Requests preempted while building this step (their blocks are freed). */
  preempted: Request[];
}

export interface RequestOutput {
  req: Request;
  newTokenIds: number[];
  finished: boolean;
  finishReason: FinishReason | null;
}

export class Scheduler {
  readonly kv: KVCacheManager;
  numPreemptionsTotal = 0;
  private readonly cfg: SchedulerConfig;
  private readonly waiting: Request[] = []; // FCFS; preempted requests go back to the front
  private running: Request[] = [];
  private readonly unfinished = new Map<string, Request>();
  /** Two batches, so that one can wait for its update() while the next is built. */
  private readonly outputs = [newOutput(), newOutput()];
  private readonly slotPools: ScheduledRequest[][] = [[], []];
  private readonly inFlight: SchedulerOutput[] = []; // scheduled, not yet updated; oldest first

  constructor(cfg: SchedulerConfig) {
    checkConfig(cfg);
    this.cfg = { ...cfg };
    this.kv = new KVCacheManager(cfg);
  }

  get numRunning(): number {
    return this.running.length;
  }
  get numWaiting(): number {
    return this.waiting.length;
  }
  get hasUnfinished(): boolean {
    return this.unfinished.size > 0;
  }
  /** Steps scheduled whose update() has not come yet. */
  get numStepsInFlight(): number {
    return this.inFlight.length;
  }

  /**
   * Whether the next step must wait for the tokens of the one in flight: a running request with
   * pending tokens uses penalties, and the sampler needs its whole history on the host.
   */
  get needsTokensBeforeSchedule(): boolean {
    for (const r of this.running) if (r.numPendingTokens > 0 && needsPenalties(r.params)) return true;
    return false;
  }

  /** Queues a new request; throws if it is malformed or its prompt leaves no room to generate. */
  addRequest(req: Request): void {
    const n = req.numPromptTokens;
    if (this.unfinished.has(req.id)) throw new Error(`request ${req.id} is already scheduled`);
    if (req.status !== "waiting" || req.numOutputTokens > 0 || req.numComputedTokens > 0) {
      throw new Error(`request ${req.id} is not fresh (status ${req.status})`);
    }
    if (n < 1) throw new Error(`request ${req.id} has an empty prompt`);
    if (n >= this.cfg.maxModelLen) {
      throw new Error(
        `request ${req.id}: prompt of ${n} tokens leaves no room to generate within ` +
          `max model length ${this.cfg.maxModelLen}`,
      );
    }
    for (let i = 0; i < n; i++) {
      const t = req.promptTokenIds[i]!;
      if (!Number.isInteger(t) || t < 0 || t > 0x7fffffff) {
        throw new Error(`request ${req.id}: prompt token ${i} is not a valid token id (${t})`);
      }
    }
    checkParams(req);
    this.unfinished.set(req.id, req);
    this.waiting.push(req);
  }

  /** Finishes a waiting, running or preempted request with reason "abort" and frees its blocks. */
  abortRequest(id: string): Request | undefined {
    const req = this.unfinished.get(id);
    if (req === undefined) return undefined;
    const queue = req.status === "running" ? this.running : this.waiting;
    const at = queue.indexOf(req);
    if (at >= 0) queue.splice(at, 1);
    this.finish(req, "abort");
    return req;
  }

  /**
   * Builds the next step's batch and claims its KV slots. Every non-empty batch gets its update()
   * after the model ran, in schedule order. One step may still await its update (async scheduling):
   * its sampled tokens count as pending, so each of its requests gets its next position now and
   * the device supplies the input token.
   */
  schedule(): SchedulerOutput {
    if (this.inFlight.length >= MAX_STEPS_IN_FLIGHT) {
      throw new Error(`schedule(): ${MAX_STEPS_IN_FLIGHT} steps already await update()`);
    }
    const k = this.outputs[0] === this.inFlight[0] ? 1 : 0;
    const out = this.outputs[k]!, pool = this.slotPools[k]!;
    out.scheduled.length = 0;
    out.preempted.length = 0;
    out.totalTokens = 0;
    this.scheduleRunning(out, pool);
    if (out.preempted.length === 0) this.admitWaiting(out, pool);
    if (out.scheduled.length > 0) this.inFlight.push(out);
    return out;
  }

  /**
   * Applies the oldest step's results: sampled[i] is the token sampled for out.scheduled[i] (read
   * only where it samples). Registers newly full blocks, appends tokens, checks stop conditions
   * and frees finished requests. Returns one output per request that got a token, or that failed
   * (sampled -1: the sampler could not sample its row; it finishes with reason "error"). A request
   * that finishes here may sit in the next step already: that step's token for it is dropped.
   */
  update(out: SchedulerOutput, sampled: Int32Array): RequestOutput[] {
    if (out !== this.inFlight[0]) {
      throw new Error("update() must get the oldest scheduled step's output, once");
    }
    const n = out.scheduled.length;
    if (sampled.length < n) throw new Error(`update(): ${n} requests scheduled, ${sampled.length} tokens`);
    this.inFlight.shift();
    const results: RequestOutput[] = [];
    let anyFinished = false;
    for (let i = 0; i < n; i++) {
      const s = out.scheduled[i]!;
      const req = s.req;
      if (req.isFinished) continue; // aborted, or stopped by the step before
      if (req.status === "running") this.kv.cacheComputedBlocks(req, chunkStart(s), s.end);
      if (!s.samples) continue;
      const token = sampled[i]!;
      if (token < 0) { // the sampler could not sample this row: the request alone fails
        this.finishEarly(req, "error");
        anyFinished = true;
        results.push({ req, newTokenIds: [], finished: true, finishReason: "error" });
        continue;
      }
      req.numPendingTokens--;
      req.outputTokenIds.push(token);
      const reason = this.stopReason(req, token);
      if (reason !== null) {
        this.finishEarly(req, reason);
        anyFinished = true;
      }
      results.push({ req, newTokenIds: [token], finished: reason !== null, finishReason: reason });
    }
    if (anyFinished) this.running = this.running.filter((r) => !r.isFinished);
    return results;
  }

  /** Whether the tokens already pending end the request (max_tokens or max_model_len): nothing to schedule. */
  private endsWithPending(req: Request): boolean {
    if (req.numPendingTokens === 0) return false;
    return req.numOutputTokens + req.numPendingTokens >= req.params.maxTokens ||
      req.numTokensWithPending >= this.cfg.maxModelLen;
  }

  private scheduleRunning(out: SchedulerOutput, pool: ScheduledRequest[]): void {
    let budget = this.cfg.maxNumBatchedTokens;
    for (let i = 0; i < this.running.length && budget > 0; i++) {
      const req = this.running[i]!;
      if (this.endsWithPending(req)) continue;
      const numNew = Math.min(req.numTokensWithPending - req.numComputedTokens, budget);
      if (numNew <= 0) throw new Error(`running request ${req.id} has nothing to compute`);
      let selfPreempted = false;
      while (!this.kv.allocateSlots(req, numNew)) {
        const victim = this.running.pop()!;
        this.preempt(victim, out);
        if (victim === req) {
          selfPreempted = true;
          break;
        }
      }
      if (selfPreempted) break;
      this.push(out, pool, req, numNew);
      budget -= numNew;
    }
  }

  private admitWaiting(out: SchedulerOutput, pool: ScheduledRequest[]): void {
    let budget = this.cfg.maxNumBatchedTokens - out.totalTokens;
    while (this.waiting.length > 0 && budget > 0 && this.running.length < this.cfg.maxNumSeqs) {
      const req = this.waiting[0]!;
      if (req.numPendingTokens > 0) break; // preempted with a token still on the device: after its update
      const hit = this.kv.getComputedBlocks(req).numTokens;
      const numNew = Math.min(req.numTokens - hit, budget);
      if (!this.kv.allocateSlots(req, numNew, hit)) break; // keep FCFS: nobody overtakes it
      this.waiting.shift();
      if (req.status === "waiting") req.numCachedTokens = hit;
      req.status = "running";
      req.numComputedTokens = hit;
      this.running.push(req);
      this.push(out, pool, req, numNew);
      budget -= numNew;
    }
  }

  private push(out: SchedulerOutput, pool: ScheduledRequest[], req: Request, numNewTokens: number): void {
    const k = out.scheduled.length;
    const s = pool[k] ?? { req, numNewTokens, end: 0, samples: false };
    if (k === pool.length) pool.push(s);
    req.numComputedTokens += numNewTokens;
    s.req = req;
    s.numNewTokens = numNewTokens;
    s.end = req.numComputedTokens;
    s.samples = s.end === req.numTokensWithPending;
    if (s.samples) req.numPendingTokens++; // known on the host at this step's update()
    out.scheduled.push(s);
    out.totalTokens += numNewTokens;
  }

  private preempt(req: Request, out: SchedulerOutput): void {
    // A step still in flight may have filled blocks its update() has not registered yet (async
    // scheduling): register them now, so the request finds them when it comes back. Their token
    // ids are known, and any step that could hit them runs after that step on the device.
    this.kv.cacheComputedBlocks(req, 0, req.numComputedTokens);
    this.kv.free(req);
    req.status = "preempted";
    req.numComputedTokens = 0;
    req.numPreemptions++;
    this.numPreemptionsTotal++;
    this.waiting.unshift(req);
    out.preempted.push(req);
  }

  private stopReason(req: Request, token: number): FinishReason | null {
    const p = req.params;
    if (req.numOutputTokens >= p.minTokens) {
      if (!p.ignoreEos && req.eosTokenIds.includes(token)) return "stop";
      if (p.stopTokenIds.includes(token)) return "stop";
    }
    if (req.numOutputTokens >= p.maxTokens) return "length";
    if (req.numTokens >= this.cfg.maxModelLen) return "length";
    return null;
  }

  /** Finishes a request met in update(): a preempted one waits in the queue, a running one is filtered out after. */
  private finishEarly(req: Request, reason: FinishReason): void {
    if (req.status === "preempted") this.waiting.splice(this.waiting.indexOf(req), 1);
    this.finish(req, reason);
  }

  private finish(req: Request, reason: FinishReason): void {
    this.kv.free(req);
    req.numPendingTokens = 0; // a later step's token for it is dropped
    req.status = "finished";
    req.finishReason = reason;
    this.unfinished.delete(req.id);
  }
}

function newOutput(): SchedulerOutput {
  return { scheduled: [], totalTokens: 0, preempted: [] };
}
