// `vllmd generate` end to end (the CLI, the engine Worker, the cpu backend): transformers'
// greedy tokens from token ids and from the same prompt as text, and clear failures.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");
const FIXTURES = join(import.meta.dir, "fixtures");

function vllmd(...args: string[]) {
  const p = Bun.spawnSync([process.execPath, join(ROOT, "src/cli.ts"), ...args], { cwd: ROOT });
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

const lastJson = (stdout: string) => JSON.parse(stdout.trim().split("\n").at(-1)!);

describe("vllmd generate", () => {
  for (const name of ["llama", "llama3", "mistral", "qwen2"]) {
    test(`${name}: greedy from ids and from text equals transformers`, () => {
      const golden = JSON.parse(readFileSync(join(FIXTURES, name, "golden.json"), "utf8"));
      const byIds = golden.prompts.find((p: { text: string | null }) => p.text === null);
      const byText = golden.prompts.find((p: { text: string | null }) => p.text !== null);
      const r = vllmd("generate", "--model", join(FIXTURES, name), "--prompt-token-ids", byIds.token_ids.join(","),
        "--prompt", byText.text, "--temperature", "0", "--max-tokens", "24", "--json");
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const [textOut, idsOut] = lastJson(r.stdout); // text prompts come first
      expect(idsOut.token_ids).toEqual(byIds.greedy);
      expect(textOut.prompt_token_ids).toEqual(byText.token_ids);
      expect(textOut.token_ids).toEqual(byText.greedy);
      expect(typeof textOut.text).toBe("string");
    });
  }

  test("one prompt prints one object", () => {
    const r = vllmd("generate", "--model", join(FIXTURES, "qwen2"), "--prompt-token-ids", "0,9,10", "--max-tokens", "3", "--seed", "5", "--json");
    expect(r.code).toBe(0);
    const out = lastJson(r.stdout);
    expect(out.token_ids.length).toBe(3);
    expect(out.finish_reason).toBe("length");
  });

  test("a directory without config.json fails naming the file", () => {
    const dir = mkdtempSync(join(tmpdir(), "vllmd-cli-"));
    const r = vllmd("generate", "--model", dir, "--prompt-token-ids", "1,2", "--json");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("config.json");
  });

  test("bad arguments give usage and exit 2", () => {
    const r = vllmd("generate", "--model", join(FIXTURES, "llama"), "--prompt-token-ids", "1,x");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--prompt-token-ids");
    expect(vllmd("generate", "--model", join(FIXTURES, "llama")).code).toBe(2);
  });

  test("a prompt longer than max_model_len is rejected, not truncated", () => {
    const ids = Array.from({ length: 40 }, (_, i) => 4 + i).join(",");
    const r = vllmd("generate", "--model", join(FIXTURES, "llama"), "--max-model-len", "32", "--prompt-token-ids", ids, "--json");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/max.?model.?len|longer/i);
  });
});
