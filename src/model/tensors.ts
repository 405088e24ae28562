// The tensors a Llama-family checkpoint must hold (Hugging Face names and [out, in] shapes), and
// the check that a directory has them all with the right shapes before anything is loaded.
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { ModelConfig } from "./config.ts";
import { ModelDirError } from "./errors.ts";
import { linearTensors } from "./quantized-linears.ts";
import { INDEX_FILE, type TensorInfo } from "./safetensors.ts";

export interface ExpectedTensor {
  name: string;
  shape: number[];
  optional?: boolean;
}

function layerTensors(cfg: ModelConfig, i: number): ExpectedTensor[] {
  const p = `model.layers.${i}`;
  const h = cfg.hiddenSize;
  const qDim = cfg.numHeads * cfg.headDim;
  const kvDim = cfg.numKvHeads * cfg.headDim;
  const lin = (name: string, n: number, k: number) => linearTensors(cfg.quantization, name, n, k);
  const out: ExpectedTensor[] = [
    { name: `${p}.input_layernorm.weight`, shape: [h] },
    ...lin(`${p}.self_attn.q_proj.weight`, qDim, h),
    ...lin(`${p}.self_attn.k_proj.weight`, kvDim, h),
    ...lin(`${p}.self_attn.v_proj.weight`, kvDim, h),
  ];
  if (cfg.qkvBias) {
    out.push(
      { name: `${p}.self_attn.q_proj.bias`, shape: [qDim] },
      { name: `${p}.self_attn.k_proj.bias`, shape: [kvDim] },
      { name: `${p}.self_attn.v_proj.bias`, shape: [kvDim] },
    );
  }
  out.push(
    ...lin(`${p}.self_attn.o_proj.weight`, h, qDim),
    { name: `${p}.post_attention_layernorm.weight`, shape: [h] },
    ...lin(`${p}.mlp.gate_proj.weight`, cfg.intermediateSize, h),
    ...lin(`${p}.mlp.up_proj.weight`, cfg.intermediateSize, h),
    ...lin(`${p}.mlp.down_proj.weight`, h, cfg.intermediateSize),
  );
  return out;
}

/** Every tensor the forward pass reads, in checkpoint order (embedding, layers, final norm, head). */
export function expectedTensors(cfg: ModelConfig): ExpectedTensor[] {
  const out: ExpectedTensor[] = [{ name: "model.embed_tokens.weight", shape: [cfg.vocabSize, cfg.hiddenSize] }];
  for (let i = 0; i < cfg.numLayers; i++) out.push(...layerTensors(cfg, i));
  out.push({ name: "model.norm.weight", shape: [cfg.hiddenSize] });
  if (!cfg.tieWordEmbeddings) out.push({ name: "lm_head.weight", shape: [cfg.vocabSize, cfg.hiddenSize] });
  return out;
}

const shapeText = (shape: readonly number[]): string => `[${shape.join(", ")}]`;
const sameShape = (a: readonly number[], b: readonly number[]): boolean =>
  a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * Throws a ModelDirError for the first missing tensor (naming the index file, or the directory when
 * unsharded) or the first tensor of the wrong shape (naming its file). Extra tensors are ignored.
 */
export function checkTensors(cfg: ModelConfig, tensors: Map<string, TensorInfo>, dir: string): void {
  const expected = expectedTensors(cfg);
  const missing = expected.filter((t) => !t.optional && !tensors.has(t.name));
  const first = missing[0];
  if (first) {
    const indexPath = join(resolve(dir), INDEX_FILE);
    const where = existsSync(indexPath) ? indexPath : resolve(dir);
    const more = missing.length > 1 ? ` (and ${missing.length - 1} more)` : "";
    const tied = first.name === "lm_head.weight" ? "; config.json has tie_word_embeddings false" : "";
    throw new ModelDirError(
      where,
      `missing tensor '${first.name}' (expected shape ${shapeText(first.shape)})${more}${tied}`,
    );
  }
  for (const t of expected) {
    const info = tensors.get(t.name);
    if (info && !sameShape(info.shape, t.shape)) {
      throw new ModelDirError(
        info.file,
        `tensor '${t.name}' has shape ${shapeText(info.shape)}, expected ${shapeText(t.shape)}`,
      );
    }
  }
}
