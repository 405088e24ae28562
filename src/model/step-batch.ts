// A StepBatch built from host arrays, for the callers that run the model outside the runner (parity
// tests, benchmarks, KV-cache calibration); the runner fills its own with one copy per step.
import type { Backend, Buf } from "../native/types.ts";
import type { StepBatch } from "./llama.ts";

/** A step's metadata on the host: the i32 arrays a StepBatch holds on the device. */
export interface HostStepBatch {
  tokenIds: number[]; // [T]
  positions: number[]; // [T]
  slotMapping: number[]; // [T]
  queryStart: number[]; // [nSeqs + 1]
  seqLens: number[]; // [nSeqs]
  blockTables: number[]; // [nSeqs, maxBlocks]
  sampleRows: number[]; // [S]
  maxBlocks: number;
}

/** `host` uploaded to `be`; free() releases the buffers. */
export function uploadStepBatch(be: Backend, host: HostStepBatch): { batch: StepBatch; free: () => void } {
  const owned: Buf[] = [];
  const i32 = (xs: number[]) => {
    const b = be.alloc(Math.max(1, xs.length) * 4);
    be.copyFromHost(b, 0, Int32Array.from(xs));
    owned.push(b);
    return b;
  };
  const batch: StepBatch = {
    nTokens: host.tokenIds.length, nSeqs: host.seqLens.length, nSample: host.sampleRows.length, maxBlocks: host.maxBlocks,
    tokenIds: i32(host.tokenIds), positions: i32(host.positions), slotMapping: i32(host.slotMapping), queryStart: i32(host.queryStart),
    seqLens: i32(host.seqLens), blockTables: i32(host.blockTables), sampleRows: i32(host.sampleRows),
  };
  return { batch, free: () => owned.forEach((b) => be.free(b)) };
}
