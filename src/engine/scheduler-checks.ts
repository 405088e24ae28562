// The scheduler's argument checks: a config that could never serve a request, and sampling
// parameters the stop conditions cannot work with.
import type { Request } from "./request.ts";
import type { SchedulerConfig } from "./scheduler.ts";

export function checkConfig(cfg: SchedulerConfig): void {
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

export function checkParams(req: Request): void {
  const p = req.params;
  if (!Number.isInteger(p.maxTokens) || p.maxTokens < 1) {
    throw new Error(`request ${req.id}: maxTokens must be a positive integer, got ${p.maxTokens}`);
  }
  if (!Number.isInteger(p.minTokens) || p.minTokens < 0) {
    throw new Error(`request ${req.id}: minTokens must be a non-negative integer, got ${p.minTokens}`);
  }
}
