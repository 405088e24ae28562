// One decode step of a model at batch B with C-token contexts, outside the engine (no scheduler,
// no CUDA graphs): the forward pass and a greedy sample, every sequence at position C - 1 in its
// own blocks. Shared by bench/op-profile.ts, bench/decode-table.ts and bench/graph-ablation.ts,
// with the --runs list the last two read.
import type { ModelConfig } from "../src/model/config.ts";
import { allocKvCache, freeKvCache, LlamaModel } from "../src/model/llama.ts";
import { uploadStepBatch } from "../src/model/step-batch.ts";
import type { ModelWeights } from "../src/model/weights.ts";
import { type Backend, type Buf, SP } from "../src/native/types.ts";

const BLOCK = 16;

/** One model of a --runs list: LABEL=DIR, LABEL=DIR:fp8 (quantized at load) or LABEL=DIR:fp8:wo (no W8A8). */
export interface ModelRun {
  label: string;
  dir: string;
  quantization: "fp8" | null;
  w8a8: false | undefined; // false: FP8 linears weight-only at every batch size; undefined: the backend's choice
}

export function parseRuns(list: string | undefined): ModelRun[] {
  const runs = (list ?? "").split(",").filter(Boolean).map((r) => {
    const [label, spec] = r.split("="), [dir, quantization, mode] = (spec ?? "").split(":");
    if (!label || !dir || (mode !== undefined && mode !== "wo")) throw new Error(`--runs: "${r}" is not LABEL=DIR, LABEL=DIR:fp8 or LABEL=DIR:fp8:wo`);
    return { label, dir, quantization: quantization === "fp8" ? ("fp8" as const) : null, w8a8: mode === "wo" ? (false as const) : undefined };
  });
  if (runs.length === 0) throw new Error("--runs: give at least one LABEL=DIR");
  return runs;
}

export interface DecodeStep {
  step(): void;
  dispose(): void;
}

/** opts.w8a8: whether FP8 linears quantize their inputs (LlamaModel's option; default: the backend's). */
export function decodeStep(be: Backend, cfg: ModelConfig, w: ModelWeights, B: number, C: number, opts: { w8a8?: boolean } = {}): DecodeStep {
  const blocksPerSeq = Math.ceil((C + 1) / BLOCK), owned: Buf[] = [];
  const cache = allocKvCache(be, cfg, B * blocksPerSeq, BLOCK, be.activationDtype(w.dtype));
  const model = new LlamaModel(be, cfg, w, cache, B, B, C + 1, opts);
  const upload = (xs: ArrayLike<number>, f32 = false) => {
    const buf = be.alloc(Math.max(1, xs.length) * 4);
    be.copyFromHost(buf, 0, f32 ? Float32Array.from(xs) : Int32Array.from(xs));
    owned.push(buf);
    return buf;
  };
  const seqs = Array.from({ length: B }, (_, s) => s);
  const { batch, free: freeBatch } = uploadStepBatch(be, {
    tokenIds: seqs.map((s) => 100 + s), positions: seqs.map(() => C - 1), slotMapping: seqs.map((s) => s * blocksPerSeq * BLOCK + C - 1),
    queryStart: [...seqs, B], seqLens: seqs.map(() => C),
    blockTables: seqs.flatMap((s) => Array.from({ length: blocksPerSeq }, (_, j) => s * blocksPerSeq + j)), sampleRows: seqs,
    maxBlocks: blocksPerSeq,
  });
  const fparams = upload(seqs.flatMap(() => [0, 1, 0, 1, 0, 0]), true);
  if (SP.nf !== 6) throw new Error(`decodeStep: SP.nf is ${SP.nf}, this file writes 6 float parameters`);
  const iparams = upload(seqs.flatMap(() => [0, 0, 0, 0]));
  const offsets = upload(Array(B + 1).fill(0)), empty = upload([0]), out = upload(Array(B).fill(0)), lp = upload(Array(B).fill(0));
  return {
    step: () => {
      const logits = model.forward(batch);
      be.sample({ logits, nSeqs: B, vocab: cfg.vocabSize, fparams, iparams, seenOffsets: offsets, seenTokens: empty,
        seenCounts: empty, biasOffsets: offsets, biasTokens: empty, biasValues: empty, nTop: 0, outTokens: out,
        outLogprobs: lp, outTopIds: 0, outTopLogprobs: 0 });
    },
    dispose: () => {
      model.dispose();
      freeKvCache(be, cache);
      for (const b of owned) be.free(b);
      freeBatch();
    },
  };
}
