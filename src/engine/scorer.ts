// Scores a token sequence with the model: the log-probability of every token given the ones
// before it, by running the sequence as a chunked prefill whose every row is "sampled".
// Used by `vllmd eval-ppl`. It borrows the engine's KV cache, so the engine must be idle.
import type { KvCache, LlamaModel, StepBatch } from "../model/llama.ts";
import type { Backend, Buf } from "../native/types.ts";

export interface ScoreLimits {
  rowsPerForward: number; // how many rows one forward may return logits for
  blockSize: number;
}

/** logprobs[i] = log p(ids[i] | ids[0..i-1]) for i >= 1 (logprobs[0] = 0). */
export function scoreSequence(be: Backend, model: LlamaModel, cache: KvCache, ids: readonly number[], lim: ScoreLimits): Float64Array {
  const T = ids.length, B = lim.blockSize, V = model.cfg.vocabSize;
  const nBlocks = Math.ceil(T / B);
  if (nBlocks > cache.numBlocks) throw new Error(`a ${T}-token sequence needs ${nBlocks} KV blocks; the cache has ${cache.numBlocks}`);
  const chunk = Math.max(1, Math.min(lim.rowsPerForward, model.maxTokens, model.maxSeqs));
  const meta = new Int32Array(3 * chunk + 3 + chunk + nBlocks);
  const dev = be.alloc(meta.byteLength);
  const at = (off: number, n: number): Buf => be.view(dev, off * 4, Math.max(1, n) * 4);
  const views = {
    tokenIds: at(0, chunk), positions: at(chunk, chunk), slotMapping: at(2 * chunk, chunk),
    queryStart: at(3 * chunk, 2), seqLens: at(3 * chunk + 2, 1), sampleRows: at(3 * chunk + 3, chunk),
    blockTables: at(4 * chunk + 3, nBlocks),
  };
  const out = new Float64Array(T);
  const logits = new Float32Array(chunk * V);
  try {
    for (let s = 0; s < T; s += chunk) {
      const n = Math.min(chunk, T - s);
      packChunk(meta, ids, s, n, chunk, nBlocks);
      be.copyFromHost(dev, 0, meta);
      const batch: StepBatch = { nTokens: n, nSeqs: 1, nSample: n, maxBlocks: nBlocks, ...views };
      const buf = model.forward(batch);
      be.copyToHost(buf, 0, logits, n * V * 4);
      for (let j = 0; j < n && s + j + 1 < T; j++) out[s + j + 1] = logProb(logits, j * V, V, ids[s + j + 1]!);
    }
  } finally {
    be.free(dev);
  }
  return out;
}

/** One chunk [s, s+n) of the sequence as a prefill over blocks 0..nBlocks-1 in order. */
function packChunk(meta: Int32Array, ids: readonly number[], s: number, n: number, chunk: number, nBlocks: number) {
  for (let j = 0; j < n; j++) {
    meta[j] = ids[s + j]!;
    meta[chunk + j] = s + j;
    meta[2 * chunk + j] = s + j; // block b holds positions [b*B, (b+1)*B): slot = position
    meta[3 * chunk + 3 + j] = j;
  }
  meta[3 * chunk] = 0;
  meta[3 * chunk + 1] = n;
  meta[3 * chunk + 2] = s + n;
  for (let b = 0; b < nBlocks; b++) meta[4 * chunk + 3 + b] = b;
}

/** log softmax(row)[target], in float64. */
function logProb(logits: Float32Array, off: number, V: number, target: number): number {
  let max = -Infinity;
  for (let i = 0; i < V; i++) max = Math.max(max, logits[off + i]!);
  let sum = 0;
  for (let i = 0; i < V; i++) sum += Math.exp(logits[off + i]! - max);
  return logits[off + target]! - max - Math.log(sum);
}

export interface Perplexity {
  ppl: number;
  nll: number; // total negative log-likelihood (nats)
  tokens: number; // tokens predicted
  windows: number;
}

/**
 * Perplexity of `ids` as the default model's card defines it: consecutive chunks of window-1
 * tokens, each scored after a BOS, every chunk token predicted from the positions before it.
 */
export function perplexity(score: (ids: number[]) => Float64Array, ids: readonly number[], bos: number, window: number): Perplexity {
  let nll = 0, tokens = 0, windows = 0;
  for (let s = 0; s < ids.length; s += window - 1) {
    const chunk = ids.slice(s, s + window - 1);
    const lp = score([bos, ...chunk]);
    for (let i = 1; i < lp.length; i++) nll -= lp[i]!;
    tokens += chunk.length;
    windows++;
  }
  return { ppl: Math.exp(nll / tokens), nll, tokens, windows };
}
