// The built-in model (models/default, trained by scripts/train_default_model.py), embedded in
// the compiled binary. The native loader reads weights by file path, so a compiled binary
// copies the files once into a cache folder and serves them from there.
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import chatTemplate from "../../models/default/chat_template.jinja" with { type: "file" };
import config from "../../models/default/config.json" with { type: "file" };
import generationConfig from "../../models/default/generation_config.json" with { type: "file" };
import weights from "../../models/default/model.safetensors" with { type: "file" };
import tokenizer from "../../models/default/tokenizer.json" with { type: "file" };
import tokenizerConfig from "../../models/default/tokenizer_config.json" with { type: "file" };

const FILES: Record<string, string> = {
  "chat_template.jinja": chatTemplate,
  "config.json": config as unknown as string,
  "generation_config.json": generationConfig as unknown as string,
  "model.safetensors": weights,
  "tokenizer.json": tokenizer as unknown as string,
  "tokenizer_config.json": tokenizerConfig as unknown as string,
};

/** The name the built-in model is served under (OpenAI's `model`). */
export const DEFAULT_MODEL_NAME = "vllmd-default";

const isEmbedded = (p: string) => p.startsWith("/$bunfs/") || p.startsWith("B:/~BUN/");

/** A directory holding the built-in model, ready for loadModelDir. */
export function defaultModelDir(): string {
  const weightsPath = FILES["model.safetensors"]!;
  if (!isEmbedded(weightsPath)) return dirname(weightsPath); // running from source: the repo copy
  const key = `${statSync(weightsPath).size.toString(36)}-${Bun.hash(readFileSync(FILES["config.json"]!)).toString(36)}`;
  const cacheRoot = process.env.VLLMD_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "vllmd");
  const dir = join(cacheRoot, `default-model-${key}`);
  if (existsSync(join(dir, ".complete"))) return dir;
  mkdirSync(dir, { recursive: true });
  for (const [name, src] of Object.entries(FILES)) {
    const tmp = join(dir, `.${name}.${process.pid}.tmp`);
    writeFileSync(tmp, readFileSync(src));
    renameSync(tmp, join(dir, name)); // atomic, so concurrent first runs never see half a file
  }
  writeFileSync(join(dir, ".complete"), "");
  return dir;
}
