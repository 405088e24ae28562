// A request as the engine sees it: token ids in, token ids out. Text lives on the main thread.

export interface SamplingParams {
  maxTokens: number;
  temperature: number; // <= 1e-5: greedy
  topP: number; // 1: off
  topK: number; // <= 0: off
  minP: number; // 0: off
  seed: bigint; // every request has one; the main thread draws it when the client gave none
  repetitionPenalty: number; // 1: off
  presencePenalty: number; // 0: off
  frequencyPenalty: number; // 0: off
  logitBias: Map<number, number>; // token id -> added to its logit
  logprobs: number; // top-N logprobs to return per token (0: chosen token's only; -1: none)
  ignoreEos: boolean;
  stopTokenIds: number[];
  minTokens: number;
}

export const defaultSamplingParams = (over: Partial<SamplingParams> = {}): SamplingParams => ({
  maxTokens: 16,
  temperature: 1,
  topP: 1,
  topK: 0,
  minP: 0,
  seed: 0n,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  logitBias: new Map(),
  logprobs: -1,
  ignoreEos: false,
  stopTokenIds: [],
  minTokens: 0,
  ...over,
});

export type RequestStatus = "waiting" | "running" | "preempted" | "finished";
/** "error": the sampler could not sample this request's token (its logits or penalties overflowed). */
export type FinishReason = "stop" | "length" | "abort" | "error";

/** True if the sampler must see this request's token history. */
export const needsPenalties = (p: SamplingParams): boolean =>
  p.repetitionPenalty !== 1 || p.presencePenalty !== 0 || p.frequencyPenalty !== 0;

export class Request {
  readonly outputTokenIds: number[] = [];
  status: RequestStatus = "waiting";
  finishReason: FinishReason | null = null;
  /** Tokens whose KV is in the cache (or will be after the step that scheduled them). */
  numComputedTokens = 0;
  /**
   * Tokens sampled by steps still running on the device (async scheduling): they follow
   * outputTokenIds, and the scheduler already counts them when it plans the next step.
   */
  numPendingTokens = 0;
  /** Sampler row that holds this request's newest pending token (valid while numPendingTokens > 0). */
  lastSampleRow = -1;
  /** Tokens of the prompt found in the prefix cache when first scheduled (for metrics). */
  numCachedTokens = 0;
  numPreemptions = 0;
  /** Block ids of the KV cache, in order; owned by the KVCacheManager, append-only while running. */
  blockIds: number[] = [];
  /** Chained 53-bit hashes of this request's full blocks, filled lazily by the KVCacheManager. */
  blockHashes: number[] = [];
  /** The seed's halves as the sampler takes them (i32 bit patterns). */
  readonly seedLo: number;
  readonly seedHi: number;
  /** For penalties: token id -> count among outputs (0 = prompt only); kept by the runner. */
  seenCounts: Map<number, number> | null = null;
  seenUpTo = 0; // outputs already counted in seenCounts

  constructor(
    readonly id: string,
    readonly promptTokenIds: readonly number[],
    readonly params: SamplingParams,
    readonly arrivalTime: number,
    readonly eosTokenIds: readonly number[] = [],
  ) {
    const seed = BigInt.asUintN(64, params.seed);
    this.seedLo = Number(seed & 0xffffffffn) | 0;
    this.seedHi = Number(seed >> 32n) | 0;
  }

  get numPromptTokens(): number {
    return this.promptTokenIds.length;
  }
  get numOutputTokens(): number {
    return this.outputTokenIds.length;
  }
  /** Prompt plus output: the tokens the sequence consists of. */
  get numTokens(): number {
    return this.promptTokenIds.length + this.outputTokenIds.length;
  }
  /** numTokens plus the pending tokens: the length the sequence will have once they are back. */
  get numTokensWithPending(): number {
    return this.numTokens + this.numPendingTokens;
  }
  /** Token at position i of the whole sequence (known tokens only). */
  tokenAt(i: number): number {
    const p = this.promptTokenIds.length;
    return i < p ? this.promptTokenIds[i]! : this.outputTokenIds[i - p]!;
  }
  get isFinished(): boolean {
    return this.status === "finished";
  }
}
