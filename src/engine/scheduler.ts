// Continuous batching with a token budget and no prefill/decode phases: every step, running
// requests go first (one decode token each, or the next chunk of their prefill), then waiting
// requests are admitted first come, first served, their prompts chunked to the remaining budget.
// When the pool runs dry the newest running request is preempted and later recomputed.

import { KVCacheManager } from "./kv-cache-manager.ts";
import type { FinishReason, Request } from "./request.ts";

export interface SchedulerConfig {
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  maxModelLen: number;
  blockSize: number;
  numBlocks: number;
  enablePrefixCaching: boolean;
}

/**
 * One request's share of a step. schedule() has already advanced `req.numComputedTokens` by
 * `numNewTokens`, so the step computes tokens [chunkStart(s), req.numComputedTokens).
 */
export interface ScheduledRequest {
  req: Request;
  numNewTokens: number;
}

/** Position of the first token this step computes for `s` (see ScheduledRequest). */
export const chunkStart = (s: ScheduledRequest): number => s.req.numComputedTokens - s.numNewTokens;

/** Whether the step reaches the end of the request's known tokens, so its logits are sampled. */
export const samplesThisStep = (s: ScheduledRequest): boolean =>
  s.req.numComputedTokens === s.req.numTokens;

/** A step's batch. The object and its arrays are reused: valid until the next schedule(). */
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
  private readonly out: SchedulerOutput = { scheduled: [], totalTokens: 0, preempted: [] };
  private readonly slotPool: ScheduledRequest[] = [];
  private awaitingUpdate = false;

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
   * Builds the next step's batch and claims its KV slots. Call update() with the result after
   * the model ran, before scheduling again (skipping update() is allowed only for an empty batch).
   */
  schedule(): SchedulerOutput {
    if (this.awaitingUpdate && this.out.scheduled.length > 0) {
      throw new Error("schedule() called again before update()");
    }
    const out = this.out;
    out.scheduled.length = 0;
    out.preempted.length = 0;
    out.totalTokens = 0;
    this.scheduleRunning(out);
    if (out.preempted.length === 0) this.admitWaiting(out);
    this.awaitingUpdate = true;
    return out;
  }

  /**
   * Applies a step's results: sampled[i] is the token sampled for out.scheduled[i] (read only
   * when samplesThisStep). Registers newly full blocks, appends tokens, checks stop conditions
   * and frees finished requests. Returns one output per request that got a token.
   */
  update(out: SchedulerOutput, sampled: Int32Array): RequestOutput[] {
    if (out !== this.out || !this.awaitingUpdate) {
      throw new Error("update() must get the output of the last schedule(), once");
    }
    const n = out.scheduled.length;
    if (sampled.length < n) throw new Error(`update(): ${n} requests scheduled, ${sampled.length} tokens`);
    this.awaitingUpdate = false;
    const results: RequestOutput[] = [];
    let anyFinished = false;
    for (let i = 0; i < n; i++) {
      const s = out.scheduled[i]!;
      const req = s.req;
      if (req.isFinished) continue; // aborted between schedule() and update()
      this.kv.cacheComputedBlocks(req, s.numNewTokens);
      if (!samplesThisStep(s)) continue;
      const token = sampled[i]!;
      if (token < 0) throw new Error(`update(): no token sampled for ${req.id}, which samples this step`);
      req.outputTokenIds.push(token);
      const reason = this.stopReason(req, token);
      if (reason !== null) {
        this.finish(req, reason);
        anyFinished = true;
      }
      results.push({ req, newTokenIds: [token], finished: reason !== null, finishReason: reason });
    }
    if (anyFinished) this.running = this.running.filter((r) => !r.isFinished);
    return results;
  }

  private scheduleRunning(out: SchedulerOutput): void {
    let budget = this.cfg.maxNumBatchedTokens;
    for (let i = 0; i < this.running.length && budget > 0; i++) {
      const req = this.running[i]!;
      const numNew = Math.min(req.numTokens - req.numComputedTokens, budget);
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
      this.push(out, req, numNew);
      budget -= numNew;
    }
  }

  private admitWaiting(out: SchedulerOutput): void {
    let budget = this.cfg.maxNumBatchedTokens - out.totalTokens;
    while (this.waiting.length > 0 && budget > 0 && this.running.length < this.cfg.maxNumSeqs) {
      const req = this.waiting[0]!;
      const hit = this.kv.getComputedBlocks(req).numTokens;
      const numNew = Math.min(req.numTokens - hit, budget);
      if (!this.kv.allocateSlots(req, numNew, hit)) break; // keep FCFS: nobody overtakes it
      this.waiting.shift();
      if (req.status === "waiting") req.numCachedTokens = hit;
      req.status = "running";
      req.numComputedTokens = hit;
      this.running.push(req);
      this.push(out, req, numNew);
      budget -= numNew;
    }
  }

  private push(out: SchedulerOutput, req: Request, numNewTokens: number): void {
    const k = out.scheduled.length;
    let s = this.slotPool[k];
    if (s === undefined) {
      s = { req, numNewTokens };
      this.slotPool.push(s);
    } else {
      s.req = req;
      s.numNewTokens = numNewTokens;
    }
    req.numComputedTokens += numNewTokens;
    out.scheduled.push(s);
    out.totalTokens += numNewTokens;
  }

  private preempt(req: Request, out: SchedulerOutput): void {
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

  private finish(req: Request, reason: FinishReason): void {
    this.kv.free(req);
    req.status = "finished";
    req.finishReason = reason;
    this.unfinished.delete(req.id);
  }
}

function checkConfig(cfg: SchedulerConfig): void {
  const positive = ["maxNumSeqs", "maxNumBatchedTokens", "maxModelLen", "blockSize", "numBlocks"] as const;
  for (const key of positive) {
    const v = cfg[key];
    if (!Number.isInteger(v) || v < 1) throw new Error(`scheduler: ${key} must be a positive integer, got ${v}`);
  }
  if (cfg.maxModelLen < 2) throw new Error(`scheduler: maxModelLen must be at least 2, got ${cfg.maxModelLen}`);
  // A lone request must always fit, or it would preempt itself forever.
  if (cfg.numBlocks * cfg.blockSize < cfg.maxModelLen) {
    throw new Error(
      `scheduler: ${cfg.numBlocks} blocks of ${cfg.blockSize} tokens cannot hold one sequence ` +
        `of max model length ${cfg.maxModelLen}`,
    );
  }
}

function checkParams(req: Request): void {
  const p = req.params;
  if (!Number.isInteger(p.maxTokens) || p.maxTokens < 1) {
    throw new Error(`request ${req.id}: maxTokens must be a positive integer, got ${p.maxTokens}`);
  }
  if (!Number.isInteger(p.minTokens) || p.minTokens < 0) {
    throw new Error(`request ${req.id}: minTokens must be a non-negative integer, got ${p.minTokens}`);
  }
}
