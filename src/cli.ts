#!/usr/bin/env bun
// vllmd's command line: serve (HTTP + msgpack), generate (offline), eval-ppl.
import { UsageError } from "./commands/args.ts";
import { cmdEvalPpl, EVAL_PPL_USAGE } from "./commands/eval-ppl.ts";
import { cmdGenerate, GENERATE_USAGE } from "./commands/generate.ts";
import { cmdServe, SERVE_USAGE } from "./commands/serve.ts";
import { defaultModelDir } from "./model/default-model.ts";

const USAGE = `usage:
${SERVE_USAGE}
${GENERATE_USAGE}
${EVAL_PPL_USAGE}
  engine options: --model DIR (a Hugging Face directory; the built-in model if absent)
    --device auto|cpu|cuda|hip  --max-model-len N  --max-num-seqs N
    --max-num-batched-tokens N  --block-size N  --num-blocks N
    --gpu-memory-utilization F  --tensor-parallel-size N
    --enforce-eager  --async-scheduling | --no-async-scheduling
    --quantization fp8|gptq|awq|compressed-tensors  --kv-cache-dtype auto|fp8|fp8_e4m3`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (cmd === "generate") await cmdGenerate(rest, defaultModelDir);
    else if (cmd === "eval-ppl") await cmdEvalPpl(rest, defaultModelDir);
    else if (cmd === "serve") await cmdServe(rest, defaultModelDir);
    else {
      console.log(USAGE);
      return cmd === undefined || cmd === "help" || cmd === "--help" ? 0 : 2;
    }
    return 0;
  } catch (err) {
    const usage = err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS");
    console.error(`vllmd: ${(err as Error).message}`);
    if (usage) console.error(USAGE);
    return usage ? 2 : 1;
  }
}

process.exit(await main(Bun.argv.slice(2)));
