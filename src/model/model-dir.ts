// Opens a Hugging Face model directory: config.json, the safetensors tensor index (checked
// against what the architecture needs) and the optional generation_config.json.
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { z } from "zod";
import { parseConfig, tokenIdList, tokenIdsSchema, type ModelConfig } from "./config.ts";
import { ModelDirError, zodToModelDirError } from "./errors.ts";
import { indexTensors, type TensorInfo } from "./safetensors.ts";
import { checkTensors } from "./tensors.ts";

export interface GenerationConfig {
  eosTokenIds: number[];
  bosTokenId: number | null;
  temperature?: number;
  topP?: number;
  topK?: number;
}

export interface ModelDir {
  dir: string; // absolute
  config: ModelConfig;
  tensors: Map<string, TensorInfo>;
  generation: GenerationConfig;
}

const generationSchema = z.looseObject({
  bos_token_id: z.int().nonnegative().nullish(),
  eos_token_id: tokenIdsSchema,
  temperature: z.number().nonnegative().nullish(),
  top_p: z.number().gt(0).lte(1).nullish(),
  top_k: z.int().nonnegative().nullish(),
});

function readJsonFile(path: string): unknown {
  if (!existsSync(path)) throw new ModelDirError(path, "file not found");
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ModelDirError(path, `cannot read: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ModelDirError(path, `invalid JSON: ${(e as Error).message}`);
  }
}

/** Merges generation_config.json (optional) over config.json: EOS ids are the union of both. */
function readGenerationConfig(dir: string, config: ModelConfig): GenerationConfig {
  const path = join(dir, "generation_config.json");
  if (!existsSync(path)) return { eosTokenIds: config.eosTokenIds, bosTokenId: config.bosTokenId };
  const json = readJsonFile(path);
  const parsed = generationSchema.safeParse(json);
  if (!parsed.success) throw zodToModelDirError(path, parsed.error, json);
  const g = parsed.data;
  const out: GenerationConfig = {
    eosTokenIds: [...new Set([...config.eosTokenIds, ...tokenIdList(g.eos_token_id)])],
    bosTokenId: g.bos_token_id ?? config.bosTokenId,
  };
  if (g.temperature != null) out.temperature = g.temperature;
  if (g.top_p != null) out.topP = g.top_p;
  if (g.top_k != null) out.topK = g.top_k;
  return out;
}

/** Loads and validates everything the engine needs from a model directory; throws ModelDirError. */
export function loadModelDir(dir: string): ModelDir {
  const absDir = resolve(dir);
  if (!existsSync(absDir)) throw new ModelDirError(absDir, "model directory does not exist");
  if (!statSync(absDir).isDirectory()) throw new ModelDirError(absDir, "not a directory");
  const configPath = join(absDir, "config.json");
  const config = parseConfig(readJsonFile(configPath), configPath);
  const tensors = indexTensors(absDir);
  checkTensors(config, tensors, absDir);
  return { dir: absDir, config, tensors, generation: readGenerationConfig(absDir, config) };
}
