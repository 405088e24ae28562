// The sampler's per-request token lists, as CSR over a step's sampling rows (see vd_sample): the
// seen tokens with their output counts (penalties) and the logit biases (the request's own, and
// the stop tokens banned before min_tokens). Copied to the device only when a step has any.
import { needsPenalties, type Request } from "./request.ts";
import type { ScheduledRequest } from "./scheduler.ts";

/** Where a step's CSR offsets go: i32 views of the metadata region. */
export interface ListOffsets {
  meta: Int32Array;
  seenOffsets: number; // index of seen_offsets[0] in meta
  biasOffsets: number;
}

/**
 * The flat arrays, as four sections of one region so that a step uploads them in one copy (two
 * copies per step keep the device's upload staging from waiting on a step still queued); they
 * grow by doubling when a step needs more.
 */
export class TokenLists {
  /** The whole region, as bytes (what the runner copies a prefix of). */
  region = new Uint8Array(0);
  seenTokens = new Int32Array(0);
  seenCounts = new Int32Array(0);
  biasTokens = new Int32Array(0);
  biasValues = new Float32Array(0);
  nSeen = 0;
  nBias = 0;
  /** Bumped whenever the region is replaced, so the runner reallocates its device copy. */
  generation = 0;

  /** Byte offset of each section in the region. */
  get offsets(): { seenTokens: number; seenCounts: number; biasTokens: number; biasValues: number } {
    const s = this.seenTokens.length * 4, b = this.biasTokens.length * 4;
    return { seenTokens: 0, seenCounts: s, biasTokens: 2 * s, biasValues: 2 * s + b };
  }

  /** The prefix of the region this step's lists occupy (0: no lists). */
  get usedBytes(): number {
    const s = this.seenTokens.length * 4, b = this.biasTokens.length * 4;
    if (this.nBias > 0) return 2 * s + b + this.nBias * 4;
    return this.nSeen > 0 ? s + this.nSeen * 4 : 0;
  }

  reserve(seen: number, bias: number): void {
    if (seen <= this.seenTokens.length && bias <= this.biasTokens.length) return;
    const grow = (have: number, need: number) => Math.max(need, have * 2, 1024);
    const ns = grow(this.seenTokens.length, seen), nb = grow(this.biasTokens.length, bias);
    const region = new Uint8Array((2 * ns + 2 * nb) * 4), buf = region.buffer;
    const st = new Int32Array(buf, 0, ns), sc = new Int32Array(buf, ns * 4, ns);
    const bt = new Int32Array(buf, 2 * ns * 4, nb), bv = new Float32Array(buf, (2 * ns + nb) * 4, nb);
    st.set(this.seenTokens); sc.set(this.seenCounts); bt.set(this.biasTokens); bv.set(this.biasValues);
    [this.region, this.seenTokens, this.seenCounts, this.biasTokens, this.biasValues] = [region, st, sc, bt, bv];
    this.generation++;
  }

  /**
   * Fills the lists for the sampling rows (row r samples sched[sampleOf[r]]) and their offsets.
   * Penalties read the request's known outputs: the engine never schedules a request that uses
   * them while it has pending tokens from an earlier step.
   */
  pack(sched: readonly ScheduledRequest[], sampleOf: Int32Array, nSample: number, at: ListOffsets): void {
    let nSeen = 0, nBias = 0;
    for (let r = 0; r < nSample; r++) {
      const s = sched[sampleOf[r]!]!;
      if (needsPenalties(s.req.params)) nSeen += updateSeenCounts(s.req).size;
      nBias += s.req.params.logitBias.size + bannedStopTokens(s).length;
    }
    this.reserve(nSeen, nBias);
    nSeen = 0;
    nBias = 0;
    for (let r = 0; r < nSample; r++) {
      const s = sched[sampleOf[r]!]!, req = s.req;
      at.meta[at.seenOffsets + r] = nSeen;
      at.meta[at.biasOffsets + r] = nBias;
      if (req.seenCounts && needsPenalties(req.params)) {
        for (const [tok, c] of req.seenCounts) {
          this.seenTokens[nSeen] = tok;
          this.seenCounts[nSeen++] = c;
        }
      }
      for (const [tok, v] of req.params.logitBias) {
        this.biasTokens[nBias] = tok;
        this.biasValues[nBias++] = v;
      }
      for (const tok of bannedStopTokens(s)) {
        this.biasTokens[nBias] = tok;
        this.biasValues[nBias++] = BAN;
      }
    }
    at.meta[at.seenOffsets + nSample] = nSeen;
    at.meta[at.biasOffsets + nSample] = nBias;
    this.nSeen = nSeen;
    this.nBias = nBias;
  }
}

/** Index within the request's outputs of the token a sampling step draws. */
export const outputIndex = (s: ScheduledRequest): number => s.end - s.req.numPromptTokens;

/** Added to a logit to rule its token out (finite: the sampler rejects non-finite biases). */
const BAN = -1e30;
const NONE: readonly number[] = [];

/** Stop tokens (EOS unless ignored, stop ids) may not be sampled before min_tokens outputs, as in vLLM. */
function bannedStopTokens(s: ScheduledRequest): readonly number[] {
  const req = s.req, p = req.params;
  if (outputIndex(s) >= p.minTokens) return NONE;
  return p.ignoreEos ? p.stopTokenIds : [...req.eosTokenIds, ...p.stopTokenIds];
}

/** Brings req.seenCounts up to date with its outputs; returns it. */
function updateSeenCounts(req: Request): Map<number, number> {
  if (!req.seenCounts) {
    req.seenCounts = new Map();
    for (const t of req.promptTokenIds) if (!req.seenCounts.has(t)) req.seenCounts.set(t, 0);
  }
  const seen = req.seenCounts;
  for (; req.seenUpTo < req.numOutputTokens; req.seenUpTo++) {
    const t = req.outputTokenIds[req.seenUpTo]!;
    seen.set(t, (seen.get(t) ?? 0) + 1);
  }
  return seen;
}
