// The engine: a model on a backend, a scheduler over its paged KV cache, and the step loop's
// one function, step(). It runs inside the engine Worker (worker.ts) or in-process for tests.
import type { EngineConfig } from "../config.ts";
import { allocKvCache, freeKvCache, kvBlockBytes, LlamaModel, type KvCache } from "../model/llama.ts";
import { loadModelDir, type ModelDir } from "../model/model-dir.ts";
import { freeWeights, loadWeights, quantizeAtLoad, weightDtype, type LoadProgress, type ModelWeights, type Quantization } from "../model/weights.ts";
import { openBackend } from "../native/backend.ts";
import { type Backend, DType, dtypeName } from "../native/types.ts";
import { Request, type FinishReason, type SamplingParams } from "./request.ts";
import { type LaunchedStep, ModelRunner, type TokenLogprobs } from "./runner.ts";
import { samplingParamsFault } from "./sampling-check.ts";
import { MAX_STEPS_IN_FLIGHT, Scheduler, type SchedulerOutput } from "./scheduler.ts";
import { scoreSequence } from "./scorer.ts";

export interface EngineOutput {
  id: string;
  newTokenIds: number[];
  logprobs: TokenLogprobs[] | null;
  finished: boolean;
  finishReason: FinishReason | null;
  numPromptTokens: number;
  numCachedTokens: number;
}

export interface EngineInfo {
  model: string;
  architecture: string;
  dtype: string;
  device: string;
  numBlocks: number;
  blockSize: number;
  maxModelLen: number;
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  vocabSize: number;
  eosTokenIds: number[];
  /** Decode batch sizes captured as graphs (0: every step runs eagerly). */
  numGraphs: number;
  /** Whether the next step is queued before the last one's tokens are back (see launchSteps). */
  asyncScheduling: boolean;
  /** How the linear layers' weights are kept ("fp8": e4m3, "gptq": 4/8-bit integers), or null: as floats. */
  quantization: Quantization;
  /** The KV cache's element type: "fp8_e4m3", or the activations' dtype ("bf16", "f16", "f32"). */
  kvCacheDtype: string;
  /** FP8 linears quantize their activations per token (W8A8) where the backend does that fast. */
  w8a8: boolean;
}

export interface EngineStats {
  numRunning: number;
  numWaiting: number;
  kvCacheUsage: number;
  numPreemptionsTotal: number;
}

export class Engine {
  /** Launched steps whose tokens are not applied yet, oldest first. */
  private readonly launched: LaunchedStep[] = [];
  private readonly maxStepsInFlight: number;

  private constructor(
    readonly info: EngineInfo,
    private readonly be: Backend,
    private readonly weights: ModelWeights,
    private readonly cache: KvCache,
    private readonly model: LlamaModel,
    private readonly runner: ModelRunner,
    readonly scheduler: Scheduler,
  ) {
    this.maxStepsInFlight = info.asyncScheduling ? MAX_STEPS_IN_FLIGHT : 1;
  }

  static create(cfg: EngineConfig, onProgress?: LoadProgress): Engine {
    const dir = loadModelDir(cfg.model);
    const maxModelLen = resolveMaxModelLen(cfg, dir);
    quantizeAtLoad(cfg.quantization, dir.config.quantization); // a flag that does not fit fails before any device is opened
    const be = openDevice(cfg.device, cfg.tensorParallelSize);
    const act = be.activationDtype(weightDtype(dir.config)), kvDtype = cfg.kvCacheDtype === "auto" ? act : DType.fp8E4m3;
    checkKvCacheDtype(be, kvDtype, act, cfg.kvCacheDtype); // before the weights load
    const weights = loadWeights(be, dir.config, dir.tensors, onProgress, { quantization: cfg.quantization });
    const blocksPerSeq = Math.ceil(maxModelLen / cfg.blockSize);
    const maxTokens = Math.max(cfg.maxNumBatchedTokens, 1);
    const maxSeqs = cfg.maxNumSeqs;
    // Activations and step buffers first, then (on GPUs) a profiling run, so that the KV cache
    // gets what is left of total * --gpu-memory-utilization after everything else.
    const probeCache = allocKvCache(be, dir.config, 1, cfg.blockSize, kvDtype);
    const model = new LlamaModel(be, dir.config, weights, probeCache, maxTokens, maxSeqs, maxModelLen,
      { w8a8: cfg.w8a8 === "auto" ? undefined : cfg.w8a8 === "on" });
    const runner = new ModelRunner(be, model, { maxTokens, maxSeqs, maxBlocksPerSeq: blocksPerSeq, blockSize: cfg.blockSize });
    if (be.deviceMemory) runner.profileRun(); // in host memory the budget is --cpu-kv-cache bytes, not what is left
    freeKvCache(be, probeCache);
    const numBlocks = sizeKvCache(be, cfg, dir, blocksPerSeq, kvDtype);
    const cache = allocKvCache(be, dir.config, numBlocks, cfg.blockSize, kvDtype);
    model.bindCache(cache);
    const numGraphs = runner.captureGraphs(cfg.decodeGraphs);
    const scheduler = new Scheduler({
      maxNumSeqs: maxSeqs, maxNumBatchedTokens: cfg.maxNumBatchedTokens, maxModelLen,
      blockSize: cfg.blockSize, numBlocks, enablePrefixCaching: cfg.enablePrefixCaching,
    });
    const info: EngineInfo = {
      model: dir.dir, architecture: dir.config.architecture, dtype: dir.config.dtype, device: be.name,
      numBlocks, blockSize: cfg.blockSize, maxModelLen, maxNumSeqs: maxSeqs,
      maxNumBatchedTokens: cfg.maxNumBatchedTokens, vocabSize: dir.config.vocabSize,
      eosTokenIds: dir.generation.eosTokenIds, numGraphs,
      asyncScheduling: cfg.asyncScheduling === "on" || (cfg.asyncScheduling === "auto" && be.runsAsync),
      quantization: weights.quantization, kvCacheDtype: dtypeName(kvDtype), w8a8: model.w8a8,
    };
    return new Engine(info, be, weights, cache, model, runner, scheduler);
  }

  /**
   * Queues a request; throws on a prompt the engine cannot serve (empty, too long, bad ids) or
   * parameters the sampler would refuse, so that no request can fail a step for the others.
   */
  addRequest(id: string, promptTokenIds: readonly number[], params: SamplingParams, arrival = performance.now()): void {
    const V = this.info.vocabSize;
    for (const t of promptTokenIds) {
      if (!Number.isInteger(t) || t < 0 || t >= V) throw new Error(`token id ${t} is out of range [0, ${V})`);
    }
    const fault = samplingParamsFault(params, V);
    if (fault !== null) throw new Error(`request ${id}: ${fault}`);
    this.scheduler.addRequest(new Request(id, promptTokenIds, params, arrival, this.info.eosTokenIds));
  }

  abort(id: string): EngineOutput | null {
    const req = this.scheduler.abortRequest(id);
    if (!req) return null;
    return { id, newTokenIds: [], logprobs: null, finished: true, finishReason: "abort",
      numPromptTokens: req.numPromptTokens, numCachedTokens: req.numCachedTokens };
  }

  /** Requests not finished, or launched steps whose tokens are not applied yet. */
  get hasUnfinished(): boolean {
    return this.scheduler.hasUnfinished || this.launched.length > 0;
  }

  /** One iteration: launches what the pipeline has room for, then applies the oldest step's tokens. */
  step(): EngineOutput[] {
    this.launchSteps();
    return this.finishStep();
  }

  /**
   * Schedules and queues steps on the device, without waiting for them, while there is work and
   * room: one step in flight, or with async scheduling two, the second planned with the first
   * one's tokens pending (not when a request's penalties need them on the host first). Until
   * finishStep, the caller may do host work (post the last outputs, take new requests and aborts:
   * a request aborted meanwhile is skipped by the update).
   */
  launchSteps(): void {
    while (this.canLaunchStep) {
      const sched = this.scheduler.schedule();
      if (sched.scheduled.length === 0) return;
      this.launched.push(this.runner.launch(sched));
    }
  }

  private get canLaunchStep(): boolean {
    const n = this.launched.length;
    if (!this.scheduler.hasUnfinished || n >= this.maxStepsInFlight) return false;
    return n === 0 || !this.scheduler.needsTokensBeforeSchedule;
  }

  /** The batches launched and not finished, oldest first. */
  get stepsInFlight(): readonly SchedulerOutput[] {
    return this.launched.map((l) => l.sched);
  }

  /** Waits for the oldest launched step (not for later ones) and applies its tokens ([] if none is launched). */
  finishStep(): EngineOutput[] {
    const step = this.launched.shift();
    if (!step) return [];
    const res = this.runner.collect(step);
    const sched = step.sched;
    const lpByReq = new Map<Request, TokenLogprobs>();
    sched.scheduled.forEach((s, i) => {
      const lp = res.logprobs[i];
      if (lp) lpByReq.set(s.req, lp);
    });
    return this.scheduler.update(sched, res.sampled).map((o) => {
      const lp = lpByReq.get(o.req);
      return {
        id: o.req.id, newTokenIds: o.newTokenIds, logprobs: lp && o.newTokenIds.length ? [lp] : null,
        finished: o.finished, finishReason: o.finishReason,
        numPromptTokens: o.req.numPromptTokens, numCachedTokens: o.req.numCachedTokens,
      };
    });
  }

  /**
   * log p(ids[i] | ids[<i]) for every i >= 1, from one chunked prefill. Borrows the KV cache, so
   * only while no request is in flight; the prefix cache is emptied afterwards.
   */
  score(ids: readonly number[]): Float64Array {
    if (this.hasUnfinished) throw new Error("score() needs an idle engine");
    if (ids.length > this.info.maxModelLen) throw new Error(`${ids.length} tokens exceed max_model_len ${this.info.maxModelLen}`);
    try {
      return scoreSequence(this.be, this.model, this.cache, ids, { rowsPerForward: this.info.maxNumSeqs, blockSize: this.info.blockSize });
    } finally {
      this.scheduler.kv.resetPrefixCache();
    }
  }

  /** Steps that ran as decode graphs (see decode-graphs.ts). */
  get numGraphSteps(): number {
    return this.runner.graphSteps;
  }

  stats(): EngineStats {
    const s = this.scheduler;
    return { numRunning: s.numRunning, numWaiting: s.numWaiting, kvCacheUsage: s.kv.usage, numPreemptionsTotal: s.numPreemptionsTotal };
  }

  dispose(): void {
    this.runner.dispose();
    this.model.dispose();
    freeKvCache(this.be, this.cache);
    freeWeights(this.be, this.weights);
    this.be.destroy();
  }
}

/** The named backend, or for `auto` the first of cuda, hip, cpu whose library and device are there. */
function openDevice(d: EngineConfig["device"], tp: number): Backend {
  if (d !== "auto") return openBackend(d, { tp });
  for (const name of ["cuda", "hip"] as const) {
    try {
      return openBackend(name, { tp });
    } catch {
      // no library next to the binary, or no device: fall through to the next backend
    }
  }
  return openBackend("cpu", { tp });
}

function resolveMaxModelLen(cfg: EngineConfig, dir: ModelDir): number {
  const modelMax = dir.config.maxPositionEmbeddings;
  const want = cfg.maxModelLen ?? modelMax;
  if (want > modelMax) {
    throw new Error(`--max-model-len ${want} is larger than the model's max_position_embeddings (${modelMax}) in config.json`);
  }
  return want;
}

/**
 * Asks the backend whether it keeps a KV cache of `kv` (a cache write of no tokens, which checks
 * the format and nothing else), so that an unsupported --kv-cache-dtype fails before the weights load.
 */
export function checkKvCacheDtype(be: Backend, kv: DType, act: DType, flag: string): void {
  if (kv === act) return;
  const bufs = Array.from({ length: 7 }, () => be.alloc(64));
  const [qOut, qkv, positions, cosSin, slots, k, v] = bufs as [number, number, number, number, number, number, number];
  try {
    be.ropeWriteKv(qOut, qkv, positions, cosSin, slots, k, v, 0, 1, 1, 2, 1, act, { dtype: kv, kScale: 1, vScale: 1 });
  } catch (e) {
    throw new Error(`--kv-cache-dtype ${flag}: the ${be.name} backend cannot keep such a cache: ${(e as Error).message}`);
  } finally {
    for (const b of bufs) be.free(b);
  }
}

/** KV blocks: the override, or what the memory budget holds, capped at what the scheduler can use. */
function sizeKvCache(be: Backend, cfg: EngineConfig, dir: ModelDir, blocksPerSeq: number, kvDtype: DType): number {
  const blockBytes = kvBlockBytes(dir.config, cfg.blockSize, be.tp, kvDtype);
  let n = cfg.numBlocksOverride;
  if (n === undefined) {
    const mem = be.memInfo();
    // Ranks in host memory share it (and one --cpu-kv-cache budget); a GPU's memory is its own.
    const budget = !be.deviceMemory ? Math.min(cfg.cpuKvCacheBytes, mem.free * 0.5) / be.tp
      : mem.total * cfg.gpuMemoryUtilization - (mem.total - mem.free);
    n = Math.min(Math.floor(budget / blockBytes), cfg.maxNumSeqs * blocksPerSeq);
  }
  if (n < blocksPerSeq && cfg.numBlocksOverride === undefined) {
    throw new Error(
      `the KV cache holds ${n} blocks of ${cfg.blockSize} tokens, fewer than one ${blocksPerSeq * cfg.blockSize}-token request needs: lower --max-model-len or raise the memory budget`,
    );
  }
  return Math.max(1, n);
}
