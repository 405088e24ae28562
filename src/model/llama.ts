// The decoder of Llama, Mistral and Qwen2 (they differ only in config: GQA ratios, qkv bias,
// tied embeddings, RoPE scaling). One function per block; every tensor's shape in a comment.
// T = tokens in the step, S = sequences to sample, h = hidden, H/KVH = heads, D = head dim,
// I = intermediate size, V = vocab; shapes are per rank under tensor parallelism.
import type { Backend, Buf, KvFormat } from "../native/types.ts";
import { DType, dtypeBytes } from "../native/types.ts";
import type { ModelConfig } from "./config.ts";
import { ropeCosSinTable } from "./rope.ts";
import { type LinearMode, runLinear } from "./linear.ts";
import { kvHeadsPerRank, type LayerWeights, type ModelWeights } from "./weights.ts";

/** The paged KV cache: per layer, K and V of [numBlocks, KVH, blockSize, D] in the activation dtype or e4m3. */
export interface KvCache {
  numBlocks: number;
  blockSize: number;
  dtype: DType;
  k: Buf[];
  v: Buf[];
}

/** Device views of one step's metadata, filled by the runner with one copy. */
export interface StepBatch {
  nTokens: number; // T
  nSeqs: number; // sequences with query rows this step
  nSample: number; // S: sequences that sample (their last row's logits are computed)
  maxBlocks: number; // row stride of blockTables
  tokenIds: Buf; // i32 [T]
  positions: Buf; // i32 [T]
  slotMapping: Buf; // i32 [T]
  queryStart: Buf; // i32 [nSeqs + 1]
  seqLens: Buf; // i32 [nSeqs]
  blockTables: Buf; // i32 [nSeqs, maxBlocks]
  sampleRows: Buf; // i32 [S]: the query row whose logits are wanted
}

/** Activation buffers sized once for the largest step, so a step allocates nothing. */
interface Scratch {
  residual: Buf; // [T, h]
  normed: Buf; // [T, h]
  delta: Buf; // [T, h]: a block's output before it joins the residual
  qkv: Buf; // [T, (H + 2*KVH)*D]: one GEMM's q | k | v per row
  q: Buf; // [T, H*D]: rotated
  attn: Buf; // [T, H*D]
  gateUp: Buf; // [T, 2I]
  act: Buf; // [T, I]
  last: Buf; // [S, h]
  logitsAct: Buf; // [S, V] in the activation dtype (the logits buffer itself when that is f32)
  logits: Buf; // [S, V] f32
  cosSin: Buf; // f32 [maxPositions, D]
}

/** Whether any linear of the model holds FP8 weights (only then is the backend asked about W8A8). */
const hasFp8Linears = (w: ModelWeights): boolean =>
  w.layers.some((l) => [l.qkv, l.o, l.gateUp, l.down].some((lin) => lin.format === "fp8"));

export class LlamaModel {
  private readonly s: Scratch;
  private readonly buffers: Buf[] = [];
  private readonly nh: number;
  private readonly nkv: number;
  private readonly inter: number;
  /** Activations: f32 on cpu, the weights' dtype on GPUs. */
  private readonly act: DType;
  /** The activations' dtype for the linears, and whether FP8 ones run W8A8 (where the backend can). */
  private readonly linear: LinearMode;
  /** Whether FP8 linears quantize their activations per token (from W8A8_MIN_ROWS rows on). */
  get w8a8(): boolean {
    return this.linear.w8a8;
  }
  /** Per layer, the KV cache's element type: the activations' dtype, or e4m3 with the layer's scales. */
  private readonly kvFormats: KvFormat[];

  constructor(
    private readonly be: Backend,
    readonly cfg: ModelConfig,
    private readonly w: ModelWeights,
    private kv: KvCache,
    readonly maxTokens: number,
    readonly maxSeqs: number,
    maxPositions: number,
    opts: { w8a8?: boolean } = {},
  ) {
    this.nh = cfg.numHeads / be.tp;
    this.nkv = kvHeadsPerRank(cfg.numKvHeads, be.tp);
    this.inter = cfg.intermediateSize / be.tp;
    this.act = be.activationDtype(w.dtype);
    this.linear = { act: this.act, w8a8: hasFp8Linears(w) && (opts.w8a8 ?? be.fastW8a8) };
    if (kv.dtype !== this.act && kv.dtype !== DType.fp8E4m3) throw new Error(`LlamaModel: a KV cache of dtype ${kv.dtype} for activations of ${this.act}`);
    const fp8 = kv.dtype === DType.fp8E4m3;
    this.kvFormats = w.layers.map((l) => ({ dtype: kv.dtype, kScale: fp8 ? l.kvScales.k : 1, vScale: fp8 ? l.kvScales.v : 1 }));
    this.s = this.allocScratch(maxPositions);
  }

  get cache(): KvCache {
    return this.kv;
  }

  /** Points the model at another KV cache (the engine sizes the real one after a profiling run). */
  bindCache(cache: KvCache): void {
    if (cache.dtype !== this.kv.dtype || cache.blockSize !== this.kv.blockSize) throw new Error("bindCache: another dtype or block size");
    this.kv = cache;
  }

  /** Where forward leaves the f32 logits [S, V] (the same buffer every step). */
  get logits(): Buf {
    return this.s.logits;
  }

  /** Runs the step; returns the f32 logits [S, V] of the sampled rows. */
  forward(b: StepBatch): Buf {
    const { be, s, cfg } = this;
    const T = b.nTokens;
    be.embedding(s.residual, this.w.embed, b.tokenIds, T, cfg.hiddenSize, cfg.vocabSize, this.act, this.w.dtype);
    for (let i = 0; i < this.w.layers.length; i++) this.decoderLayer(this.w.layers[i]!, i, b);
    this.norm(this.w.norm, T, true); // normed = norm(residual + delta)
    return this.lmHead(b);
  }

  /** residual += attention(norm(residual)); residual += mlp(norm(residual)). */
  private decoderLayer(lw: LayerWeights, i: number, b: StepBatch): void {
    this.norm(lw.inputNorm, b.nTokens, i > 0);
    this.attention(lw, i, b);
    this.norm(lw.postNorm, b.nTokens, true);
    this.mlp(lw, b.nTokens);
  }

  /** normed[T, h] = rmsnorm(residual (+= delta when `addDelta`)) * w. */
  private norm(w: Buf, T: number, addDelta: boolean): void {
    const { be, s, cfg } = this;
    if (addDelta) be.rmsnorm(s.normed, s.residual, s.delta, w, T, cfg.hiddenSize, cfg.rmsNormEps, this.act, this.w.dtype);
    else be.rmsnorm(s.normed, 0, s.residual, w, T, cfg.hiddenSize, cfg.rmsNormEps, this.act, this.w.dtype);
  }

  /** delta[T, h] = o_proj(paged_attention(rope(q), rope(k) → cache, v → cache)), q k v from one GEMM. */
  private attention(lw: LayerWeights, layer: number, b: StepBatch): void {
    const { be, s, cfg, nh, nkv } = this;
    const T = b.nTokens, h = cfg.hiddenSize, D = cfg.headDim;
    runLinear(be, lw.qkv, s.qkv, s.normed, T, this.linear); // qkv [T, (H+2KVH)*D]
    const kc = this.cache.k[layer]!, vc = this.cache.v[layer]!, B = this.cache.blockSize;
    be.ropeWriteKv(s.q, s.qkv, b.positions, s.cosSin, b.slotMapping, kc, vc, T, nh, nkv, D, B, this.act, this.kvFormats[layer]); // q [T, H*D]
    be.attention(
      s.attn, s.q, kc, vc, b.blockTables, b.seqLens, b.queryStart,
      b.nSeqs, T, nh, nkv, D, B, b.maxBlocks, 1 / Math.sqrt(D), this.act, this.kvFormats[layer],
    ); // attn [T, H*D]
    runLinear(be, lw.o, s.delta, s.attn, T, this.linear); // delta [T, h] (partial sum per rank)
    if (be.tp > 1) be.allReduce(s.delta, T * h, this.act);
  }

  /** delta[T, h] = down(silu(gate(normed)) * up(normed)). */
  private mlp(lw: LayerWeights, T: number): void {
    const { be, s, cfg, inter } = this;
    const h = cfg.hiddenSize;
    runLinear(be, lw.gateUp, s.gateUp, s.normed, T, this.linear); // gateUp [T, 2I]
    be.siluMul(s.act, s.gateUp, T, inter, this.act); // act [T, I]
    runLinear(be, lw.down, s.delta, s.act, T, this.linear); // delta [T, h]
    if (be.tp > 1) be.allReduce(s.delta, T * h, this.act);
  }

  /** logits[S, V] = lm_head(normed[sampleRows]). */
  private lmHead(b: StepBatch): Buf {
    const { be, s, cfg } = this;
    be.gatherRows(s.last, s.normed, b.sampleRows, b.nSample, cfg.hiddenSize, this.act); // last [S, h]
    runLinear(be, this.w.lmHead, s.logitsAct, s.last, b.nSample, this.linear); // logits [S, V]
    if (s.logitsAct !== s.logits) be.cast(s.logits, s.logitsAct, b.nSample * cfg.vocabSize, DType.f32, this.act);
    return s.logits;
  }

  private allocScratch(maxPositions: number): Scratch {
    const { cfg, maxTokens: T, maxSeqs: S, nh, nkv, inter } = this;
    const alloc = (elems: number, bytes: number): Buf => {
      const buf = this.be.alloc(Math.max(1, elems) * bytes);
      this.buffers.push(buf);
      return buf;
    };
    const f = (elems: number) => alloc(elems, dtypeBytes(this.act));
    const f32 = (elems: number) => alloc(elems, 4);
    const h = cfg.hiddenSize, D = cfg.headDim;
    const cosSin = f32(maxPositions * D);
    const logits = f32(S * cfg.vocabSize);
    const table = ropeCosSinTable(cfg, maxPositions);
    this.be.copyFromHost(cosSin, 0, table);
    return {
      residual: f(T * h), normed: f(T * h), delta: f(T * h),
      qkv: f(T * (nh + 2 * nkv) * D), q: f(T * nh * D), attn: f(T * nh * D),
      gateUp: f(T * 2 * inter), act: f(T * inter),
      last: f(S * h), logitsAct: this.act === DType.f32 ? logits : f(S * cfg.vocabSize), logits, cosSin,
    };
  }

  /** Frees the activation buffers (weights and cache belong to their owners). */
  dispose(): void {
    for (const b of this.buffers) this.be.free(b);
    this.buffers.length = 0;
  }
}

/** Bytes one KV block takes on one rank, over all layers. */
export function kvBlockBytes(cfg: ModelConfig, blockSize: number, tp: number, dtype: DType): number {
  return 2 * cfg.numLayers * kvHeadsPerRank(cfg.numKvHeads, tp) * blockSize * cfg.headDim * dtypeBytes(dtype);
}

export function allocKvCache(be: Backend, cfg: ModelConfig, numBlocks: number, blockSize: number, dtype: DType): KvCache {
  const perLayer = numBlocks * kvHeadsPerRank(cfg.numKvHeads, be.tp) * blockSize * cfg.headDim * dtypeBytes(dtype);
  const k: Buf[] = [], v: Buf[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    k.push(be.alloc(perLayer));
    v.push(be.alloc(perLayer));
  }
  return { numBlocks, blockSize, dtype, k, v };
}

export function freeKvCache(be: Backend, c: KvCache): void {
  for (const b of [...c.k, ...c.v]) be.free(b);
  c.k.length = 0;
  c.v.length = 0;
}
