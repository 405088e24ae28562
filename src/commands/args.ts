// Shared command-line plumbing: usage errors and number parsing.
import { KV_CACHE_DTYPES, type KvCacheDtype, QUANTIZATION_METHODS, type QuantizationMethod } from "../config.ts";
export class UsageError extends Error {}

export function numArg(v: string | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) throw new UsageError(`--${name} expects a number, got '${v}'`);
  return n;
}

export function optNumArg(v: string | undefined, name: string): number | undefined {
  return v === undefined ? undefined : numArg(v, name, 0);
}

/** Engine flags every command that loads a model shares. */
export const engineOptions = {
  model: { type: "string" },
  device: { type: "string" },
  "max-model-len": { type: "string" },
  "max-num-seqs": { type: "string" },
  "max-num-batched-tokens": { type: "string" },
  "block-size": { type: "string" },
  "num-blocks": { type: "string" },
  "gpu-memory-utilization": { type: "string" },
  "tensor-parallel-size": { type: "string" },
  "enforce-eager": { type: "boolean" },
  "async-scheduling": { type: "boolean" },
  "no-async-scheduling": { type: "boolean" },
  quantization: { type: "string" },
  "kv-cache-dtype": { type: "string" },
} as const;

export function engineConfigFrom(a: Record<string, unknown>, model: string) {
  const s = (k: string) => a[k] as string | undefined;
  const device = s("device") ?? "auto";
  if (!["auto", "cpu", "cuda", "hip"].includes(device)) throw new UsageError(`--device must be auto, cpu, cuda or hip, got '${device}'`);
  const quantization = s("quantization") ?? null;
  if (quantization !== null && !(QUANTIZATION_METHODS as readonly string[]).includes(quantization)) {
    throw new UsageError(`--quantization must be one of ${QUANTIZATION_METHODS.join(", ")}, got '${quantization}'`);
  }
  const kvCacheDtype = s("kv-cache-dtype") ?? "auto";
  if (!(KV_CACHE_DTYPES as readonly string[]).includes(kvCacheDtype)) {
    throw new UsageError(`--kv-cache-dtype must be one of ${KV_CACHE_DTYPES.join(", ")}, got '${kvCacheDtype}'`);
  }
  if (a["async-scheduling"] === true && a["no-async-scheduling"] === true) {
    throw new UsageError("--async-scheduling and --no-async-scheduling contradict each other");
  }
  return {
    model,
    device: device as "auto" | "cpu" | "cuda" | "hip",
    maxModelLen: optNumArg(s("max-model-len"), "max-model-len"),
    maxNumSeqs: optNumArg(s("max-num-seqs"), "max-num-seqs"),
    maxNumBatchedTokens: optNumArg(s("max-num-batched-tokens"), "max-num-batched-tokens"),
    blockSize: optNumArg(s("block-size"), "block-size"),
    numBlocksOverride: optNumArg(s("num-blocks"), "num-blocks"),
    gpuMemoryUtilization: optNumArg(s("gpu-memory-utilization"), "gpu-memory-utilization"),
    tensorParallelSize: optNumArg(s("tensor-parallel-size"), "tensor-parallel-size"),
    decodeGraphs: a["enforce-eager"] === true ? ("off" as const) : undefined,
    asyncScheduling: a["async-scheduling"] === true ? ("on" as const) : a["no-async-scheduling"] === true ? ("off" as const) : undefined,
    quantization: quantization as QuantizationMethod | null,
    kvCacheDtype: kvCacheDtype as KvCacheDtype,
  };
}
