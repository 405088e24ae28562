// The metadata StepInputs writes for graphs and profiling: padded decode steps and the empty
// largest step, checked field by field against the layout.
import { describe, expect, test } from "bun:test";
import { SP } from "../native/types.ts";
import { defaultSamplingParams, Request } from "./request.ts";
import { Scheduler } from "./scheduler.ts";
import { StepInputs } from "./step-inputs.ts";

const shape = { maxTokens: 32, maxSeqs: 8, maxBlocksPerSeq: 4, blockSize: 16 };
const section = (inp: StepInputs, at: number, n: number) => Array.from(inp.meta.subarray(at, at + n));

describe("StepInputs", () => {
  test("packIdle: rows owned by no sequence, no KV slot, sampling row 0, a fixed stride", () => {
    const inp = new StepInputs(shape);
    inp.meta.fill(7); // stale values from an earlier step must not survive
    inp.packIdle(4, shape.maxBlocksPerSeq);
    const L = inp.layout;
    expect([inp.nTokens, inp.nSeqs, inp.nSample, inp.paddedRows, inp.maxBlocks]).toEqual([0, 0, 0, 4, 4]);
    expect(section(inp, L.queryStart, 5)).toEqual([0, 0, 0, 0, 0]);
    expect(section(inp, L.seqLens, 4)).toEqual([0, 0, 0, 0]);
    expect(section(inp, L.slotMapping, 4)).toEqual([-1, -1, -1, -1]);
    expect(section(inp, L.tokenIds, 4)).toEqual([0, 0, 0, 0]);
    expect(section(inp, L.sampleRows, 4)).toEqual([0, 0, 0, 0]);
    expect(section(inp, L.blockTables, 16)).toEqual(Array(16).fill(0));
    expect(inp.usedMetaBytes).toBe((L.blockTables + 16) * 4);
  });

  test("padTo rejects a step that is not decode-only, and sizes past the buffers", () => {
    const inp = new StepInputs(shape);
    inp.packIdle(2, 1);
    expect(() => inp.padTo(9)).toThrow("padTo: 9 rows");
    inp.nTokens = 3; // as if a prefill chunk were packed
    expect(() => inp.padTo(4)).toThrow("decode-only");
  });

  test("packProfile: every token row, no sequence, every sampling row at row 0", () => {
    const inp = new StepInputs(shape);
    inp.meta.fill(7);
    inp.packProfile(32, 8);
    const L = inp.layout;
    expect([inp.nTokens, inp.nSeqs, inp.nSample]).toEqual([32, 0, 8]);
    expect(section(inp, L.slotMapping, 32)).toEqual(Array(32).fill(-1));
    expect(section(inp, L.positions, 32)).toEqual(Array(32).fill(0));
    expect(section(inp, L.tokenIds, 32)).toEqual(Array(32).fill(0));
    expect(section(inp, L.sampleRows, 8)).toEqual(Array(8).fill(0));
    expect(inp.meta[L.queryStart]).toBe(0);
  });

  test("a step packed before the last one's tokens are back leaves their rows to the device", () => {
    const sched = new Scheduler({ maxNumSeqs: 8, maxNumBatchedTokens: 32, maxModelLen: 64, blockSize: 16, numBlocks: 16, enablePrefixCaching: false });
    const params = defaultSamplingParams({ maxTokens: 9, seed: 3n });
    const [a, b] = [new Request("a", [11, 12, 13], params, 0), new Request("b", [21, 22], params, 0)];
    sched.addRequest(a);
    sched.addRequest(b);
    const inp = new StepInputs(shape);
    inp.pack(sched.schedule()); // both prefill: sampling rows 0 (a) and 1 (b)
    expect([a.lastSampleRow, b.lastSampleRow, inp.nPending]).toEqual([0, 1, 0]);
    sched.addRequest(new Request("c", [31, 32], params, 0));
    inp.pack(sched.schedule()); // a and b decode their pending tokens, c prefills
    const L = inp.layout;
    expect(inp.nTokens).toBe(4);
    expect(section(inp, L.tokenIds, 4)).toEqual([0, 0, 31, 32]);
    expect(section(inp, L.positions, 4)).toEqual([3, 2, 0, 1]);
    expect(inp.nPending).toBe(2);
    expect(section(inp, L.pendingRows, 2)).toEqual([0, 1]);
    expect(section(inp, L.pendingSources, 2)).toEqual([0, 1]);
    // The draw index of a pending step is the output index, as a synchronous step would have it.
    expect([0, 1, 2].map((r) => inp.meta[L.iparams + r * SP.ni + SP.step])).toEqual([1, 1, 0]);
    expect([a.lastSampleRow, b.lastSampleRow]).toEqual([0, 1]);
  });
});
