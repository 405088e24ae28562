// Engine configuration: every default lives here, validated once with zod.
import { z } from "zod";

/**
 * vLLM's --quantization names: "fp8" quantizes a float checkpoint at load (or checks an FP8 one);
 * the others check that the checkpoint's quantization_config is of that method.
 */
export const QUANTIZATION_METHODS = ["fp8", "gptq", "awq", "compressed-tensors"] as const;
export type QuantizationMethod = (typeof QUANTIZATION_METHODS)[number];

/**
 * vLLM's --kv-cache-dtype names this engine takes: "auto" keeps keys and values in the activations'
 * dtype; "fp8" and "fp8_e4m3" store them as e4m3 (one byte a value: twice the blocks of bf16).
 */
export const KV_CACHE_DTYPES = ["auto", "fp8", "fp8_e4m3"] as const;
export type KvCacheDtype = (typeof KV_CACHE_DTYPES)[number];

export const EngineConfigSchema = z.object({
  model: z.string().min(1),
  device: z.enum(["auto", "cpu", "cuda", "hip"]).default("auto"),
  tensorParallelSize: z.number().int().min(1).default(1),
  blockSize: z.number().int().min(1).max(256).default(16),
  maxNumSeqs: z.number().int().min(1).default(256),
  maxNumBatchedTokens: z.number().int().min(1).default(2048),
  /** Defaults to the model's max_position_embeddings. */
  maxModelLen: z.number().int().min(2).optional(),
  gpuMemoryUtilization: z.number().gt(0).max(1).default(0.9),
  /** KV blocks, overriding the memory-based sizing (as vLLM's --num-gpu-blocks-override). */
  numBlocksOverride: z.number().int().min(1).optional(),
  /** Bytes the cpu backend gives the KV cache (as vLLM's VLLM_CPU_KVCACHE_SPACE). */
  cpuKvCacheBytes: z.number().int().min(1).default(4 * 2 ** 30),
  enablePrefixCaching: z.boolean().default(true),
  /** Decode steps as replayed graphs (see src/engine/decode-graphs.ts); "off" is vLLM's --enforce-eager. */
  decodeGraphs: z.enum(["auto", "off", "replay"]).default("auto"),
  /**
   * Queue step N+1 before step N's tokens are back (vLLM's --async-scheduling). auto: on GPU
   * backends; the cpu backend computes inside the launch, so there is nothing to overlap.
   */
  asyncScheduling: z.enum(["auto", "on", "off"]).default("auto"),
  /** --quantization: fp8 quantizes linear layers at load (e4m3, one scale per output row); null: as the checkpoint is. */
  quantization: z.enum(QUANTIZATION_METHODS).nullable().default(null),
  /** --kv-cache-dtype: "fp8"/"fp8_e4m3" keep the KV cache as e4m3 (scales 1.0, as vLLM without calibrated ones). */
  kvCacheDtype: z.enum(KV_CACHE_DTYPES).default("auto"),
  /**
   * FP8 linears quantize their activations per token (W8A8, as vLLM runs FP8 models): auto where
   * the backend does that fast (Backend.fastW8a8), on/off everywhere (on: the cpu computes what a
   * GPU computes, for parity checks). No flag: vLLM has none.
   */
  w8a8: z.enum(["auto", "on", "off"]).default("auto"),
});

export type EngineConfigInput = z.input<typeof EngineConfigSchema>;
export type EngineConfig = z.output<typeof EngineConfigSchema>;

export function parseEngineConfig(input: EngineConfigInput): EngineConfig {
  const r = EngineConfigSchema.safeParse(input);
  if (!r.success) {
    const msg = r.error.issues.map((i) => `${i.path.join(".") || "config"}: ${i.message}`).join("; ");
    throw new Error(`invalid engine config: ${msg}`);
  }
  return r.data;
}
