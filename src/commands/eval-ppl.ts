// `vllmd eval-ppl`: perplexity of a text file under the model, computed by the engine
// (windows of max_model_len tokens, each after a BOS; see src/engine/scorer.ts).
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parseEngineConfig } from "../config.ts";
import { Engine } from "../engine/engine.ts";
import { perplexity } from "../engine/scorer.ts";
import { TextTokenizer } from "../tokenizer/tokenizer.ts";
import { engineConfigFrom, engineOptions, optNumArg, UsageError } from "./args.ts";

export const EVAL_PPL_USAGE = `  vllmd eval-ppl [--model DIR] --file TEXT [--window N (max_model_len)] [--json]`;

export async function cmdEvalPpl(argv: string[], defaultModel: () => string): Promise<void> {
  const { values: a } = parseArgs({
    args: argv,
    options: { ...engineOptions, file: { type: "string" }, window: { type: "string" }, json: { type: "boolean" } },
    strict: true,
  });
  if (!a.file) throw new UsageError("--file TEXT is required");
  const text = readFileSync(a.file, "utf8");
  const model = a.model ?? defaultModel();
  const tok = TextTokenizer.fromDir(model);
  const engine = Engine.create(parseEngineConfig(engineConfigFrom(a, model)));
  try {
    const window = optNumArg(a.window, "window") ?? engine.info.maxModelLen;
    if (!Number.isInteger(window) || window < 2 || window > engine.info.maxModelLen) {
      throw new UsageError(`--window must be an integer in [2, ${engine.info.maxModelLen}]`);
    }
    const bos = tok.bosTokenId;
    if (bos === null) throw new Error("the tokenizer has no BOS token, which eval-ppl puts before each window");
    const ids = tok.encode(text, false);
    if (!ids.length) throw new Error(`${a.file} has no tokens`);
    const t0 = performance.now();
    const r = perplexity((w) => engine.score(w), ids, bos, window);
    const seconds = (performance.now() - t0) / 1000;
    if (a.json) console.log(JSON.stringify({ file: a.file, perplexity: r.ppl, nll: r.nll, tokens: r.tokens, windows: r.windows, window, seconds }));
    else console.log(`perplexity ${r.ppl.toFixed(4)} over ${r.tokens} tokens (${r.windows} windows of ${window}) in ${seconds.toFixed(1)} s`);
  } finally {
    engine.dispose();
  }
}
