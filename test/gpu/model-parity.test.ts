// Whole models on the backend under test (cuda) against transformers' goldens: the f32 test
// fixtures exactly as on cpu (greedy tokens identical, last-position logits within 1e-4), and the
// bf16 default model with bf16 activations (greedy mostly equal, held-out perplexity within 2%).
// Skipped unless VLLMD_GPU_TESTS=1 (see harness.ts).
import { expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { makeEngine, runToCompletion } from "../helpers/engine-run.ts";
import { lastPositionLogits } from "../helpers/forward-logits.ts";
import { DEVICE, expectClose, gpuSuite } from "./harness.ts";

const ROOT = join(import.meta.dir, "..", "..");
const FIXTURES = join(ROOT, "test", "fixtures");
const DEFAULT_MODEL = join(ROOT, "models", "default");

interface GoldenPrompt {
  name: string;
  token_ids: number[];
  last_logits: number[];
  greedy: number[];
}
interface DefaultGolden {
  heldout_ppl: number;
  heldout_tokens: number;
  prompts: { text: string; token_ids: number[]; greedy: number[] }[];
}

const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, "utf8")) as T;
const fixtures = readdirSync(FIXTURES).filter((d) => existsSync(join(FIXTURES, d, "golden.json")));

/** Tokens equal before the first divergence. */
const commonPrefix = (a: readonly number[], b: readonly number[]): number => {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
};

/**
 * Greedy tokens of the default model that must equal transformers' (f32) on every prompt, and the
 * share of all tokens that must agree before each prompt's first divergence. bf16 rounding flips
 * near-ties after a while: the tensor-core attention rounds the softmax weights to bf16 before
 * P·V, as FlashAttention does (one prompt then diverges at its 7th token instead of its 10th).
 */
const DEFAULT_PREFIX = 4;
const DEFAULT_AGREE = 0.6;
/** Relative perplexity difference allowed with bf16 activations (vs transformers' f32 compute). */
const PPL_TOL = 0.02;

gpuSuite("model parity", () => {
  test("the four fixtures are there", () => {
    expect(fixtures).toEqual(expect.arrayContaining(["llama", "llama3", "mistral", "qwen2"]));
  });

  for (const name of fixtures) {
    const dir = join(FIXTURES, name);
    const golden = readJson<{ prompts: GoldenPrompt[] }>(join(dir, "golden.json"));
    test(`${name} (f32): last-position logits within 1e-4 of transformers`, () => {
      for (const p of golden.prompts) {
        const logits = lastPositionLogits(dir, p.token_ids, 16, DEVICE);
        expectClose(logits.subarray(0, p.last_logits.length), Float32Array.from(p.last_logits), 1e-4, `${name} logits #${p.name}`);
      }
    }, 60_000);

    test(`${name} (f32): greedy continuations identical to transformers' through the engine`, () => {
      const engine = makeEngine({ model: dir, device: DEVICE });
      try {
        expect(engine.info.device).toBe(DEVICE);
        const out = runToCompletion(engine, golden.prompts.map((p) => ({ id: p.name, prompt: p.token_ids, params: { maxTokens: 24 } })));
        for (const p of golden.prompts) expect({ name: p.name, tokens: out.get(p.name) }).toEqual({ name: p.name, tokens: p.greedy });
      } finally {
        engine.dispose();
      }
    }, 60_000);
  }

  const golden = readJson<DefaultGolden>(join(FIXTURES, "default-golden.json"));

  test(`default model (bf16 activations): the first ${DEFAULT_PREFIX} greedy tokens equal transformers' for every prompt, ${DEFAULT_AGREE * 100}% overall`, () => {
    const engine = makeEngine({ model: DEFAULT_MODEL, device: DEVICE });
    try {
      const reqs = golden.prompts.map((p, i) => ({ id: `p${i}`, prompt: p.token_ids, params: { maxTokens: p.greedy.length } }));
      const out = runToCompletion(engine, reqs);
      const prefixes = golden.prompts.map((p, i) => commonPrefix(out.get(`p${i}`)!, p.greedy));
      const total = golden.prompts.reduce((a, p) => a + p.greedy.length, 0);
      const agree = prefixes.reduce((a, b) => a + b, 0);
      console.log(`default model on ${DEVICE}: tokens equal before the first divergence: ${agree}/${total} (${((100 * agree) / total).toFixed(1)}%); per prompt ${prefixes.join(", ")}`);
      golden.prompts.forEach((p, i) => expect({ prompt: p.text, equal: prefixes[i]! >= Math.min(DEFAULT_PREFIX, p.greedy.length) }).toEqual({ prompt: p.text, equal: true }));
      expect(agree / total).toBeGreaterThanOrEqual(DEFAULT_AGREE);
    } finally {
      engine.dispose();
    }
  }, 120_000);

  test("decode graphs: launched graphs give exactly the tokens of the same padded steps run eagerly", () => {
    const reqs = golden.prompts.map((p, i) => ({ id: `p${i}`, prompt: p.token_ids, params: { maxTokens: 16, ignoreEos: true } }));
    const runWith = (decodeGraphs: "auto" | "replay") => {
      const engine = makeEngine({ model: DEFAULT_MODEL, device: DEVICE, decodeGraphs, maxNumSeqs: 64 });
      try {
        const out = runToCompletion(engine, reqs);
        return { out, graphs: engine.info.numGraphs, steps: engine.numGraphSteps };
      } finally {
        engine.dispose();
      }
    };
    const launched = runWith("auto"), replayed = runWith("replay");
    expect(launched.graphs).toBeGreaterThan(5); // 1, 2, 4, 8, ..., 64
    expect(launched.steps).toBeGreaterThan(10);
    expect(launched.steps).toBe(replayed.steps);
    for (const r of reqs) expect({ id: r.id, tokens: launched.out.get(r.id) }).toEqual({ id: r.id, tokens: replayed.out.get(r.id)! });
  }, 120_000);

  test("async scheduling: the same tokens as synchronous steps (same batches: every request runs to max_tokens)", () => {
    const reqs = golden.prompts.map((p, i) => ({ id: `p${i}`, prompt: p.token_ids, params: { maxTokens: 8 + 5 * i, ignoreEos: true } }));
    const runWith = (asyncScheduling: "on" | "off") => {
      const engine = makeEngine({ model: DEFAULT_MODEL, device: DEVICE, asyncScheduling, maxNumSeqs: 64 });
      try {
        return { out: runToCompletion(engine, reqs), async: engine.info.asyncScheduling };
      } finally {
        engine.dispose();
      }
    };
    const pipelined = runWith("on"), sync = runWith("off");
    expect([pipelined.async, sync.async]).toEqual([true, false]);
    for (const r of reqs) expect({ id: r.id, tokens: pipelined.out.get(r.id) }).toEqual({ id: r.id, tokens: sync.out.get(r.id)! });
  }, 120_000);

  test("programmatic dependent launch changes no token: on and off, with graphs and eagerly (VLLMD_CUDA_PDL)", () => {
    // The switch is read when a context is created, from the process environment: one process each.
    const prompts = golden.prompts.flatMap((p) => ["--prompt", p.text]);
    const generate = (pdl: string, eager: boolean) => {
      const args = ["src/cli.ts", "generate", "--device", DEVICE, ...prompts, "--max-tokens", "24", "--temperature", "0", "--ignore-eos", "--json"];
      const p = Bun.spawnSync([process.execPath, ...args, ...(eager ? ["--enforce-eager"] : [])], { cwd: ROOT, env: { ...process.env, VLLMD_CUDA_PDL: pdl } });
      if (p.exitCode !== 0) throw new Error(`generate exited ${p.exitCode}: ${p.stderr.toString()}`);
      return (JSON.parse(p.stdout.toString().trim().split("\n").at(-1)!) as { token_ids: number[] }[]).map((o) => o.token_ids);
    };
    for (const eager of [false, true]) {
      const on = generate("1", eager), off = generate("0", eager);
      expect(on.length).toBe(golden.prompts.length);
      expect(on.every((t) => t.length === 24)).toBe(true);
      expect({ eager, tokens: on }).toEqual({ eager, tokens: off });
    }
  }, 120_000);

  test(`default model (bf16 activations): eval-ppl within ${PPL_TOL * 100}% of transformers' held-out perplexity`, () => {
    const args = ["src/cli.ts", "eval-ppl", "--device", DEVICE, "--file", join(ROOT, "corpus/heldout.txt"), "--json"];
    const p = Bun.spawnSync([process.execPath, ...args], { cwd: ROOT });
    if (p.exitCode !== 0) throw new Error(`eval-ppl exited ${p.exitCode}: ${p.stderr.toString()}`);
    const r = JSON.parse(p.stdout.toString().trim().split("\n").at(-1)!) as { perplexity: number; tokens: number };
    const rel = Math.abs(r.perplexity / Number(golden.heldout_ppl) - 1);
    console.log(`default model on ${DEVICE}: perplexity ${r.perplexity.toFixed(3)} vs transformers ${Number(golden.heldout_ppl).toFixed(3)} (${(100 * rel).toFixed(2)}%)`);
    expect(r.tokens).toBe(Number(golden.heldout_tokens));
    expect(rel).toBeLessThan(PPL_TOL);
  }, 300_000);
});
