// The built-in model (models/default): greedy generation equals transformers', eval-ppl
// reproduces the model card's held-out perplexity, and the compiled binary carries the model.
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TextTokenizer } from "../src/tokenizer/tokenizer.ts";
import { makeEngine, runToCompletion } from "./helpers/engine-run.ts";

const ROOT = join(import.meta.dir, "..");
const MODEL = join(ROOT, "models", "default");
const golden = JSON.parse(readFileSync(join(import.meta.dir, "fixtures", "default-golden.json"), "utf8")) as {
  heldout_ppl: number;
  heldout_tokens: number;
  prompts: { text: string; token_ids: number[]; greedy: number[]; greedy_text: string }[];
};

describe("default model", () => {
  test("tokenizes the golden prompts as transformers does", () => {
    const tok = TextTokenizer.fromDir(MODEL);
    for (const p of golden.prompts) expect(tok.encode(p.text, true)).toEqual(p.token_ids);
  });

  test("greedy generation equals transformers'", () => {
    const engine = makeEngine({ model: MODEL });
    try {
      const out = runToCompletion(engine, golden.prompts.map((p, i) => ({ id: `p${i}`, prompt: p.token_ids, params: { maxTokens: 48 } })));
      golden.prompts.forEach((p, i) => expect(out.get(`p${i}`)).toEqual(p.greedy));
    } finally {
      engine.dispose();
    }
  }, 60_000);

  test("eval-ppl reproduces the model card's held-out perplexity (within 0.5%)", () => {
    const p = Bun.spawnSync([process.execPath, join(ROOT, "src/cli.ts"), "eval-ppl", "--file", join(ROOT, "corpus/heldout.txt"), "--json"]);
    expect(p.stderr.toString()).toBe("");
    const r = JSON.parse(p.stdout.toString().trim().split("\n").at(-1)!);
    expect(r.tokens).toBe(golden.heldout_tokens);
    expect(Math.abs(r.perplexity / golden.heldout_ppl - 1)).toBeLessThan(0.005);
    const card = readFileSync(join(MODEL, "README.md"), "utf8");
    expect(card).toContain(golden.heldout_ppl.toFixed(2));
  }, 120_000);

  test("the compiled ./vllmd generates with no --model, from anywhere", () => {
    const bin = join(ROOT, "vllmd");
    expect(existsSync(bin)).toBe(true); // `make test` builds it first
    const cwd = mkdtempSync(join(tmpdir(), "vllmd-bin-"));
    const env = { ...process.env, VLLMD_CACHE_DIR: join(cwd, "cache") };
    const p = Bun.spawnSync([bin, "generate", "--prompt", "And God said", "--max-tokens", "48", "--temperature", "0", "--json"], { cwd, env });
    expect(p.stderr.toString()).toBe("");
    const out = JSON.parse(p.stdout.toString().trim().split("\n").at(-1)!);
    const g = golden.prompts.find((x) => x.text === "And God said")!;
    expect(out.token_ids).toEqual(g.greedy);
    expect(out.text).toBe(g.greedy_text);
    expect(existsSync(join(cwd, "cache"))).toBe(true); // the embedded model was unpacked there
  }, 60_000);
});
