import { afterAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PromptEncoder } from "./prompt-encoder.ts";
import { ChatTemplateError, TextTokenizer } from "../tokenizer/tokenizer.ts";
import { InputPool } from "./input-pool.ts";

const DIR = "models/default";
const tok = TextTokenizer.fromDir(DIR);
const pool = InputPool.start(DIR, 2);
afterAll(() => pool.close());

const text = (n: number) => "And God said, Let there be light: and there was light. ".repeat(Math.ceil(n / 55)).slice(0, n);

describe("InputPool", () => {
  test("encodes, renders chats and decodes as the tokenizer does on this thread", async () => {
    const t = text(5000);
    expect(await pool.run({ op: "encode", text: t, addSpecialTokens: true })).toEqual(tok.encode(t, true));
    const messages = [{ role: "user", content: t }];
    const opts = { addGenerationPrompt: true };
    expect(await pool.run({ op: "chat", messages, opts, addSpecialTokens: false })).toEqual(tok.encodeChat(messages, opts, false));
    const ids = tok.encode(t, false);
    expect(await pool.run({ op: "decode", ids, skipSpecialTokens: true })).toBe(tok.decode(ids, true));
  });

  test("a chat template error crosses the thread with its reason", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "vllmd-pool-")), "model");
    cpSync("test/fixtures/llama", dir, { recursive: true });
    rmSync(join(dir, "chat_template.jinja"));
    const noTemplate = InputPool.start(dir, 1);
    try {
      const e = await noTemplate.run({ op: "chat", messages: [{ role: "user", content: "hi" }], opts: { addGenerationPrompt: true }, addSpecialTokens: false })
        .then(() => null, (err: unknown) => err);
      expect(e).toBeInstanceOf(ChatTemplateError);
      expect((e as ChatTemplateError).reason).toBe("missing");
    } finally {
      noTemplate.close();
      rmSync(join(dir, ".."), { recursive: true, force: true });
    }
  });

  test("a Worker that dies fails its jobs only; the pool replaces it and carries on", async () => {
    const slots = (pool as unknown as { slots: { worker: Worker }[] }).slots;
    const job = pool.run({ op: "encode", text: text(400_000), addSpecialTokens: true });
    for (const s of slots) s.worker.terminate();
    await expect(job).rejects.toThrow("an input worker exited");
    expect(await pool.run({ op: "encode", text: "hello", addSpecialTokens: false })).toEqual(tok.encode("hello", false));
    expect(pool.size).toBe(2);
  });

  test("the event loop keeps turning while a long text is tokenized", async () => {
    const t = text(1_500_000);
    let last = performance.now(), worstGap = 0, ticks = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      worstGap = Math.max(worstGap, now - last);
      last = now;
      ticks++;
    }, 5);
    const t0 = performance.now();
    const ids = await pool.run({ op: "encode", text: t, addSpecialTokens: false });
    const took = performance.now() - t0;
    clearInterval(timer);
    expect(ids.length).toBeGreaterThan(100_000);
    expect(took).toBeGreaterThan(150); // long enough that blocking would show
    expect(ticks).toBeGreaterThan(took / 5 / 4);
    expect(worstGap).toBeLessThan(100);
  }, 30_000);
});

describe("PromptEncoder", () => {
  const enc = new PromptEncoder(tok, pool, 512);

  test("the size bound is max_model_len tokens of the longest token, and never refuses a text that fits", () => {
    expect(enc.maxPromptChars).toBe(512 * tok.maxTokenChars);
    // Any text has at most maxTokenChars characters per token: texts decoded from random ids,
    // runs of the longest tokens among them, re-encoded.
    const longest = [...Array(tok.vocabSize).keys()].sort((a, b) => (tok.idToToken(b) ?? "").length - (tok.idToToken(a) ?? "").length).slice(0, 8);
    fc.assert(fc.property(fc.array(fc.oneof(fc.integer({ min: 0, max: tok.vocabSize - 1 }), fc.constantFrom(...longest)), { minLength: 1, maxLength: 64 }), (ids) => {
      const t = tok.decode(ids, false);
      return t.length <= Math.max(1, tok.encode(t, false).length) * tok.maxTokenChars;
    }), { numRuns: 300 });
  });

  test("a text over the bound is refused before any tokenizing, naming the field", async () => {
    const t0 = performance.now();
    let err: unknown;
    try {
      await enc.encode("x".repeat(enc.maxPromptChars + 1), true, "prompt[3]");
    } catch (e) {
      err = e;
    }
    expect(performance.now() - t0).toBeLessThan(50);
    expect(err).toMatchObject({ status: 400, param: "prompt[3]" });
    expect(() => enc.encodeChat([{ role: "user", content: "y".repeat(enc.maxPromptChars) }, { role: "user", content: "z" }], { addGenerationPrompt: true }, false))
      .toThrow("characters");
  });

  test("short and long prompts give the tokenizer's ids (inline and in the pool)", async () => {
    for (const n of [10, 1024, 1025, 20_000]) expect(await enc.encode(text(n), true)).toEqual(tok.encode(text(n), true));
  });
});
