#!/usr/bin/env bun
// vllmd's command line: `vllmd generate ...` (offline generation); `vllmd serve` comes next.
import { parseArgs } from "node:util";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { EngineClient } from "./engine/client.ts";
import { defaultSamplingParams } from "./engine/request.ts";
import { generate, type Prompt } from "./generate.ts";
import { TextTokenizer } from "./tokenizer/tokenizer.ts";

const USAGE = `usage:
  vllmd generate --model DIR (--prompt TEXT | --prompt-token-ids 1,2,3)... [options]
options:
  --max-tokens N          tokens to generate per prompt (16)
  --temperature T         0 for greedy (1.0)
  --top-p P  --top-k K  --min-p P  --seed S
  --repetition-penalty R  --presence-penalty P  --frequency-penalty F
  --ignore-eos            keep going past end-of-sequence tokens
  --json                  print one JSON object per prompt (an array for several) as the last line
  --device auto|cpu|cuda|hip   --max-model-len N   --max-num-seqs N
  --max-num-batched-tokens N   --block-size N      --num-blocks N`;

const num = (v: string | undefined, name: string, dflt: number): number => {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`--${name} expects a number, got '${v}'`);
  return n;
};

class UsageError extends Error {}

function parsePrompts(texts: string[], idLists: string[]): Prompt[] {
  const prompts: Prompt[] = texts.map((text) => ({ text }));
  for (const s of idLists) {
    const ids = s.split(",").map((x) => x.trim()).filter((x) => x !== "").map(Number);
    if (!ids.length || ids.some((x) => !Number.isInteger(x) || x < 0)) {
      throw new UsageError(`--prompt-token-ids expects comma-separated non-negative integers, got '${s}'`);
    }
    prompts.push({ tokenIds: ids });
  }
  if (!prompts.length) throw new UsageError("give at least one --prompt or --prompt-token-ids");
  return prompts;
}

async function cmdGenerate(argv: string[]): Promise<void> {
  const { values: a } = parseArgs({
    args: argv,
    options: {
      model: { type: "string" }, prompt: { type: "string", multiple: true },
      "prompt-token-ids": { type: "string", multiple: true }, "max-tokens": { type: "string" },
      temperature: { type: "string" }, "top-p": { type: "string" }, "top-k": { type: "string" },
      "min-p": { type: "string" }, seed: { type: "string" }, "repetition-penalty": { type: "string" },
      "presence-penalty": { type: "string" }, "frequency-penalty": { type: "string" },
      "ignore-eos": { type: "boolean" }, json: { type: "boolean" }, device: { type: "string" },
      "max-model-len": { type: "string" }, "max-num-seqs": { type: "string" },
      "max-num-batched-tokens": { type: "string" }, "block-size": { type: "string" }, "num-blocks": { type: "string" },
    },
    strict: true,
  });
  if (!a.model) throw new UsageError("--model DIR is required");
  const prompts = parsePrompts(a.prompt ?? [], a["prompt-token-ids"] ?? []);
  const tok = existsSync(join(a.model, "tokenizer.json")) ? TextTokenizer.fromDir(a.model) : null;
  const opt = (k: string) => (a[k as keyof typeof a] === undefined ? undefined : num(a[k as keyof typeof a] as string, k, 0));
  const client = await EngineClient.start({
    model: a.model, device: (a.device ?? "auto") as "auto",
    maxModelLen: opt("max-model-len"), maxNumSeqs: opt("max-num-seqs"),
    maxNumBatchedTokens: opt("max-num-batched-tokens"), blockSize: opt("block-size"), numBlocksOverride: opt("num-blocks"),
  });
  const seed = a.seed === undefined ? null : BigInt(a.seed);
  const params = () => defaultSamplingParams({
    maxTokens: num(a["max-tokens"], "max-tokens", 16), temperature: num(a.temperature, "temperature", 1),
    topP: num(a["top-p"], "top-p", 1), topK: num(a["top-k"], "top-k", 0), minP: num(a["min-p"], "min-p", 0),
    repetitionPenalty: num(a["repetition-penalty"], "repetition-penalty", 1),
    presencePenalty: num(a["presence-penalty"], "presence-penalty", 0),
    frequencyPenalty: num(a["frequency-penalty"], "frequency-penalty", 0),
    ignoreEos: a["ignore-eos"] ?? false,
    seed: seed ?? BigInt.asUintN(64, BigInt(Math.floor(Math.random() * 2 ** 53))),
  });
  try {
    const results = await generate(client, tok, prompts, params);
    for (const r of results) if (!a.json) console.log(`${r.prompt ?? JSON.stringify(r.prompt_token_ids)} -> ${r.text ?? JSON.stringify(r.token_ids)}`);
    if (a.json) console.log(JSON.stringify(results.length === 1 ? results[0] : results));
  } finally {
    await client.shutdown();
  }
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (cmd === "generate") await cmdGenerate(rest);
    else if (cmd === "serve") throw new UsageError("`vllmd serve` is not built yet; use `vllmd generate`");
    else {
      console.log(USAGE);
      return cmd === undefined || cmd === "help" || cmd === "--help" ? 0 : 2;
    }
    return 0;
  } catch (err) {
    console.error(`vllmd: ${(err as Error).message}`);
    if (err instanceof UsageError) console.error(USAGE);
    return err instanceof UsageError ? 2 : 1;
  }
}

process.exit(await main(Bun.argv.slice(2)));
