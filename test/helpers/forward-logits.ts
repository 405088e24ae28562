// Runs the model once over a single prompt (one prefill, outside the scheduler) and returns the
// logits at its last position: what parity tests compare with transformers' golden logits.
import { allocKvCache, freeKvCache, LlamaModel } from "../../src/model/llama.ts";
import { loadModelDir } from "../../src/model/model-dir.ts";
import { freeWeights, loadWeights, type LoadOptions } from "../../src/model/weights.ts";
import { openBackend } from "../../src/native/backend.ts";
import { uploadStepBatch } from "../../src/model/step-batch.ts";

export function lastPositionLogits(
  dir: string, tokenIds: number[], blockSize = 16, backend: "cpu" | "cuda" = "cpu", opts: LoadOptions = {}, modelOpts: { w8a8?: boolean } = {},
  tp = 1,
): Float32Array {
  const md = loadModelDir(dir);
  const be = openBackend(backend, { tp });
  try {
    const T = tokenIds.length;
    const nBlocks = Math.ceil(T / blockSize);
    const w = loadWeights(be, md.config, md.tensors, undefined, opts);
    const cache = allocKvCache(be, md.config, nBlocks + 1, blockSize, be.activationDtype(w.dtype));
    const model = new LlamaModel(be, md.config, w, cache, T, 1, Math.max(T, 2), modelOpts);
    const blocks = Array.from({ length: nBlocks }, (_, i) => nBlocks - i); // reversed: not contiguous
    const { batch, free } = uploadStepBatch(be, {
      tokenIds, positions: tokenIds.map((_, p) => p),
      slotMapping: tokenIds.map((_, p) => blocks[Math.floor(p / blockSize)]! * blockSize + (p % blockSize)),
      queryStart: [0, T], seqLens: [T], blockTables: blocks, sampleRows: [T - 1], maxBlocks: nBlocks,
    });
    const logits = model.forward(batch);
    const out = new Float32Array(md.config.vocabSize);
    be.copyToHost(logits, 0, out);
    free();
    model.dispose();
    freeKvCache(be, cache);
    freeWeights(be, w);
    return out;
  } finally {
    be.destroy();
  }
}
