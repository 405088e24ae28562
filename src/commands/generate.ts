// `vllmd generate`: offline generation of several prompts, batched by the engine Worker.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { EngineClient } from "../engine/client.ts";
import { defaultSamplingParams } from "../engine/request.ts";
import { generate, type Prompt } from "../generate.ts";
import { TextTokenizer } from "../tokenizer/tokenizer.ts";
import { engineConfigFrom, engineOptions, numArg, UsageError } from "./args.ts";

export const GENERATE_USAGE = `  vllmd generate [--model DIR] (--prompt TEXT | --prompt-token-ids 1,2,3)... [options]
    --max-tokens N (16)  --temperature T (1.0; 0 = greedy)  --top-p P  --top-k K  --min-p P
    --seed S  --repetition-penalty R  --presence-penalty P  --frequency-penalty F
    --ignore-eos  --json (last line: one JSON object per prompt, an array for several)`;

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

export async function cmdGenerate(argv: string[], defaultModel: () => string): Promise<void> {
  const { values: a } = parseArgs({
    args: argv,
    options: {
      ...engineOptions, prompt: { type: "string", multiple: true }, "prompt-token-ids": { type: "string", multiple: true },
      "max-tokens": { type: "string" }, temperature: { type: "string" }, "top-p": { type: "string" },
      "top-k": { type: "string" }, "min-p": { type: "string" }, seed: { type: "string" },
      "repetition-penalty": { type: "string" }, "presence-penalty": { type: "string" },
      "frequency-penalty": { type: "string" }, "ignore-eos": { type: "boolean" }, json: { type: "boolean" },
    },
    strict: true,
  });
  const prompts = parsePrompts(a.prompt ?? [], a["prompt-token-ids"] ?? []);
  if (a.seed !== undefined && !/^\d+$/.test(a.seed)) throw new UsageError(`--seed expects a non-negative integer, got '${a.seed}'`);
  const model = a.model ?? defaultModel();
  const tok = existsSync(join(model, "tokenizer.json")) ? TextTokenizer.fromDir(model) : null;
  const params = () => defaultSamplingParams({
    maxTokens: numArg(a["max-tokens"], "max-tokens", 16), temperature: numArg(a.temperature, "temperature", 1),
    topP: numArg(a["top-p"], "top-p", 1), topK: numArg(a["top-k"], "top-k", 0), minP: numArg(a["min-p"], "min-p", 0),
    repetitionPenalty: numArg(a["repetition-penalty"], "repetition-penalty", 1),
    presencePenalty: numArg(a["presence-penalty"], "presence-penalty", 0),
    frequencyPenalty: numArg(a["frequency-penalty"], "frequency-penalty", 0),
    ignoreEos: a["ignore-eos"] ?? false,
    seed: a.seed !== undefined ? BigInt(a.seed) : BigInt(Math.floor(Math.random() * 2 ** 53)),
  });
  const client = await EngineClient.start(engineConfigFrom(a, model));
  try {
    const results = await generate(client, tok, prompts, params);
    if (a.json) console.log(JSON.stringify(results.length === 1 ? results[0] : results));
    else for (const r of results) console.log(`${r.prompt ?? JSON.stringify(r.prompt_token_ids)}${r.text ?? JSON.stringify(r.token_ids)}`);
  } finally {
    await client.shutdown();
  }
}
