// Parity with Hugging Face transformers: tiny random-weight models of each architecture, made
// on the GPU machine by scripts/make_fixtures.py, with transformers' logits and greedy tokens.
import { describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TextTokenizer } from "../src/tokenizer/tokenizer.ts";
import { makeEngine, runToCompletion } from "./helpers/engine-run.ts";
import { lastPositionLogits } from "./helpers/forward-logits.ts";

interface GoldenPrompt {
  name: string;
  text: string | null;
  token_ids: number[];
  last_logits: number[];
  greedy: number[];
}
const FIXTURES = join(import.meta.dir, "fixtures");
const models = existsSync(FIXTURES)
  ? readdirSync(FIXTURES).filter((d) => existsSync(join(FIXTURES, d, "golden.json")))
  : [];

test("fixtures exist for every architecture", () => {
  expect(models).toEqual(expect.arrayContaining(["llama", "llama3", "mistral", "qwen2"]));
});

function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

for (const name of models) {
  const dir = join(FIXTURES, name);
  const golden = JSON.parse(readFileSync(join(dir, "golden.json"), "utf8")) as { prompts: GoldenPrompt[] };
  describe(`parity: ${name}`, () => {
    test("last-position logits within 1e-4 relative of transformers", () => {
      for (const p of golden.prompts) {
        const logits = lastPositionLogits(dir, p.token_ids);
        expect(logits.length).toBeGreaterThanOrEqual(p.last_logits.length);
        const err = relError(logits.subarray(0, p.last_logits.length), p.last_logits);
        if (!(err < 1e-4)) throw new Error(`${name}/${p.name}: relative error ${err}`);
      }
    });
    test("greedy continuations identical to transformers", () => {
      const engine = makeEngine({ model: dir });
      try {
        const reqs = golden.prompts.map((p) => ({ id: p.name, prompt: p.token_ids, params: { maxTokens: 24 } }));
        const out = runToCompletion(engine, reqs);
        for (const p of golden.prompts) expect({ name: p.name, tokens: out.get(p.name) }).toEqual({ name: p.name, tokens: p.greedy });
      } finally {
        engine.dispose();
      }
    });
    test("text prompts tokenize as transformers does", () => {
      const tok = TextTokenizer.fromDir(dir);
      for (const p of golden.prompts) if (p.text !== null) expect(tok.encode(p.text, true)).toEqual(p.token_ids);
    });
  });
}

test("a transformers 4.x config (rope_theta, rope_scaling, torch_dtype) gives the same logits", () => {
  const src = join(FIXTURES, "llama3");
  const dir = mkdtempSync(join(tmpdir(), "vllmd-4x-"));
  cpSync(src, dir, { recursive: true });
  const cfg = JSON.parse(readFileSync(join(src, "config.json"), "utf8"));
  const { rope_theta, rope_type, ...scaling } = cfg.rope_parameters;
  delete cfg.rope_parameters;
  cfg.rope_theta = rope_theta;
  cfg.rope_scaling = { rope_type, ...scaling };
  cfg.torch_dtype = cfg.dtype;
  delete cfg.dtype;
  writeFileSync(join(dir, "config.json"), JSON.stringify(cfg));
  const golden = JSON.parse(readFileSync(join(src, "golden.json"), "utf8")) as { prompts: GoldenPrompt[] };
  const p = golden.prompts.at(-1)!;
  expect(lastPositionLogits(dir, p.token_ids)).toEqual(lastPositionLogits(src, p.token_ids));
});
