// KV-cache scales for an e4m3 cache, calibrated as llm-compressor's kv_cache_scheme does it: the
// absmax of each layer's keys (rotated, as the cache holds them) and values over calibration text,
// divided by 448, so that the largest lands on e4m3's largest code. The float model runs on the
// cpu backend, one sequence at a time, and its f32 cache is read back.
import { loadModelDir } from "../src/model/model-dir.ts";
import { allocKvCache, freeKvCache, LlamaModel } from "../src/model/llama.ts";
import { uploadStepBatch } from "../src/model/step-batch.ts";
import { freeWeights, loadWeights } from "../src/model/weights.ts";
import { openBackend } from "../src/native/backend.ts";
import { DType, type Backend, type Buf } from "../src/native/types.ts";

const BLOCK = 16;

/** Per layer, the scales of keys and values: absmax / 448 (1 where a layer's cache is all zeros). */
export function calibrateKvScales(modelDir: string, sequences: number[][]): { k: number[]; v: number[] } {
  const be = openBackend("cpu"), dir = loadModelDir(modelDir), cfg = dir.config;
  const w = loadWeights(be, cfg, dir.tensors);
  const maxLen = Math.max(...sequences.map((s) => s.length)), blocks = Math.ceil(maxLen / BLOCK);
  const cache = allocKvCache(be, cfg, blocks, BLOCK, DType.f32);
  const model = new LlamaModel(be, cfg, w, cache, maxLen, 1, maxLen);
  const kMax = new Float64Array(cfg.numLayers), vMax = new Float64Array(cfg.numLayers);
  try {
    for (const tokens of sequences) {
      const T = tokens.length, at = Array.from({ length: T }, (_, i) => i);
      const { batch, free } = uploadStepBatch(be, {
        tokenIds: tokens, positions: at, slotMapping: at, queryStart: [0, T], seqLens: [T],
        blockTables: Array.from({ length: blocks }, (_, i) => i), sampleRows: [T - 1], maxBlocks: blocks,
      });
      model.forward(batch);
      for (let l = 0; l < cfg.numLayers; l++) {
        kMax[l] = Math.max(kMax[l]!, filledAbsmax(be, cache.k[l]!, T, cfg.numKvHeads, cfg.headDim));
        vMax[l] = Math.max(vMax[l]!, filledAbsmax(be, cache.v[l]!, T, cfg.numKvHeads, cfg.headDim));
      }
      free();
    }
  } finally {
    model.dispose();
    freeKvCache(be, cache);
    freeWeights(be, w);
    be.destroy();
  }
  const scale = (m: number) => (m > 0 ? Math.fround(m / 448) : 1);
  return { k: Array.from(kMax, scale), v: Array.from(vMax, scale) };
}

/** The absmax over the cache slots of positions 0..T-1 (layout [blocks, KVH, BLOCK, D]). */
function filledAbsmax(be: Backend, buf: Buf, T: number, kvHeads: number, D: number): number {
  const blocks = Math.ceil(T / BLOCK), host = new Float32Array(blocks * kvHeads * BLOCK * D);
  be.copyToHost(buf, 0, host);
  let m = 0;
  for (let p = 0; p < T; p++)
    for (let h = 0; h < kvHeads; h++) {
      const base = ((Math.floor(p / BLOCK) * kvHeads + h) * BLOCK + (p % BLOCK)) * D;
      for (let d = 0; d < D; d++) m = Math.max(m, Math.abs(host[base + d]!));
    }
  return m;
}
