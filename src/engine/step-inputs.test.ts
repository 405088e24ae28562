// The metadata StepInputs writes for graphs and profiling: padded decode steps and the empty
// largest step, checked field by field against the layout.
import { describe, expect, test } from "bun:test";
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
});
