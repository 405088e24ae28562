// Decode graphs on a backend without them (cpu: no VD_CAP_GRAPHS) and on one whose capture fails: the engine runs
// eagerly either way; only the second warns. The padding itself is tested through the engine in
// test/batch-invariance.test.ts ("replay" mode) and on the GPU in test/gpu/model-parity.test.ts.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { allocKvCache, LlamaModel, type StepBatch } from "../model/llama.ts";
import { loadModelDir } from "../model/model-dir.ts";
import { loadWeights } from "../model/weights.ts";
import { openBackend } from "../native/backend.ts";
import { type Backend, BackendError, Status } from "../native/types.ts";
import { DecodeGraphs, graphBuckets } from "./decode-graphs.ts";

const FIXTURE = join(import.meta.dir, "..", "..", "test", "fixtures", "llama");

function setup(be: Backend) {
  const dir = loadModelDir(FIXTURE);
  const w = loadWeights(be, dir.config, dir.tensors);
  const cache = allocKvCache(be, dir.config, 4, 16, be.activationDtype(w.dtype));
  const model = new LlamaModel(be, dir.config, w, cache, 8, 8, 64);
  const buf = be.alloc(4096);
  be.copyFromHost(buf, 0, new Int32Array(1024)); // every field 0: no sequence owns a row, slot 0
  const batch: StepBatch = {
    nTokens: 0, nSeqs: 0, nSample: 0, maxBlocks: 1, tokenIds: buf, positions: buf, slotMapping: buf,
    queryStart: buf, seqLens: buf, blockTables: buf, sampleRows: buf,
  };
  return { model, batch };
}

describe("DecodeGraphs", () => {
  test("bucket sizes: 1, 2, 4, then multiples of 8, capped by sequences and tokens", () => {
    expect(graphBuckets(20, 2048)).toEqual([1, 2, 4, 8, 16, 20]);
    expect(graphBuckets(256, 12)).toEqual([1, 2, 4, 8, 12]);
    expect(graphBuckets(3, 2048)).toEqual([1, 2, 3]);
  });

  test("no graphs on the cpu backend, silently and without a warm-up run", () => {
    const be = openBackend("cpu");
    const { model, batch } = setup(be);
    const warnings: string[] = [];
    let warmUps = 0;
    expect(DecodeGraphs.create(be, model, batch, [1, 2], 1, "auto", () => warmUps++, (m) => warnings.push(m))).toBeNull();
    expect([warnings, warmUps]).toEqual([[], 0]);
    be.destroy();
  });

  test("a capture that fails otherwise leaves the engine eager, with a warning", () => {
    const cpu = openBackend("cpu");
    const failing = new Proxy(cpu, {
      get(t, p, r) {
        if (p === "hasGraphs") return true; // a backend that says it has graphs, then fails to capture
        if (p === "graphBegin") return () => { throw new BackendError("vd_graph_begin", Status.device, "out of graph memory"); };
        const v = Reflect.get(t, p, r);
        return typeof v === "function" ? v.bind(t) : v;
      },
    });
    const { model, batch } = setup(failing);
    const warnings: string[] = [];
    expect(DecodeGraphs.create(failing, model, batch, [1, 2], 1, "auto", () => {}, (m) => warnings.push(m))).toBeNull();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("out of graph memory");
    cpu.destroy();
  });
});
