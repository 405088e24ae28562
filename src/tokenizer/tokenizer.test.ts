import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TextTokenizer, TokenizerError } from "./tokenizer.ts";
import {
  TINY_BOS,
  TINY_EOS,
  TINY_IM_END,
  TINY_IM_START,
  makeTinyTokenizerDir,
  writeTinyTokenizer,
} from "../../test/helpers/tiny-tokenizer.ts";

const dirs: string[] = [];
const tinyDir = (options: Parameters<typeof makeTinyTokenizerDir>[0] = {}) => {
  const dir = makeTinyTokenizerDir(options);
  dirs.push(dir);
  return dir;
};
const emptyDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "vllmd-tok-test-"));
  dirs.push(dir);
  return dir;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const tok = TextTokenizer.fromDir(tinyDir());

const SAMPLES = {
  ascii: "The quick brown fox jumps over the lazy dog. 12345!",
  accents: "héllo wörld, café crème brûlée; señor año",
  cjk: "日本語のテキストです。中文汉字测试",
  emoji: "😀😃🎉👍🏽🚀 rocket 👨‍👩‍👧",
  mixed: "fox 日本 café 🎉 {json: true}\n\ttabs  and  spaces ",
};

describe("TextTokenizer encode/decode", () => {
  for (const [name, text] of Object.entries(SAMPLES)) {
    test(`round trip: ${name}`, () => {
      const ids = tok.encode(text, false);
      expect(ids.length).toBeGreaterThan(0);
      expect(tok.decode(ids)).toBe(text);
    });
  }

  test("the learnt merges compress text (fewer tokens than bytes)", () => {
    const text = SAMPLES.cjk;
    expect(tok.encode(text, false).length).toBeLessThan(new TextEncoder().encode(text).length);
  });

  test("addSpecialTokens adds BOS through the post-processor", () => {
    const bos = tok.bosTokenId!;
    expect(tok.encode("hi")[0]).toBe(bos);
    expect(tok.encode("hi", false)).not.toContain(bos);
    expect(tok.encode("hi").slice(1)).toEqual(tok.encode("hi", false));
  });

  test("special tokens written in the text encode to their ids", () => {
    const ids = tok.encode(`${TINY_IM_START}user${TINY_IM_END}`, false);
    expect(ids[0]).toBe(tok.tokenToId(TINY_IM_START)!);
    expect(ids[ids.length - 1]).toBe(tok.tokenToId(TINY_IM_END)!);
  });

  test("skipSpecialTokens drops special ids; off keeps their text", () => {
    const ids = [tok.bosTokenId!, ...tok.encode("fox", false), tok.eosTokenId!];
    expect(tok.decode(ids)).toBe("fox");
    expect(tok.decode(ids, true)).toBe("fox");
    expect(tok.decode(ids, false)).toBe(`${TINY_BOS}fox${TINY_EOS}`);
  });

  test("empty input and unknown ids decode to nothing", () => {
    expect(tok.decode([])).toBe("");
    expect(tok.decode([tok.vocabSize + 10, ...tok.encode("ok", false)])).toBe("ok");
  });

  test("vocabulary: ids, tokens, special ids", () => {
    expect(tok.vocabSize).toBe(tok.tokenToId(TINY_IM_END)! + 1);
    expect(tok.bosTokenId).toBe(tok.tokenToId(TINY_BOS)!);
    expect(tok.eosTokenId).toBe(tok.tokenToId(TINY_EOS)!);
    expect(tok.idToToken(tok.bosTokenId!)).toBe(TINY_BOS);
    expect(tok.idToToken(-1)).toBeUndefined();
    expect(tok.tokenToId("no such token")).toBeUndefined();
    expect([...tok.specialTokenIds].sort()).toEqual(
      [TINY_BOS, TINY_EOS, TINY_IM_START, TINY_IM_END].map((t) => tok.tokenToId(t)!).sort(),
    );
  });
});

describe("TextTokenizer config", () => {
  test("add_bos_token false removes the post-processor's BOS, but not one the text spells", () => {
    const t = TextTokenizer.fromDir(tinyDir({ config: { add_bos_token: false } }));
    expect(t.encode("hi")).toEqual(t.encode("hi", false));
    expect(t.encode(`${TINY_BOS}hi`)[0]).toBe(t.bosTokenId!);
  });

  test("add_bos_token true adds BOS even when the post-processor does not", () => {
    const dir = tinyDir({ config: { add_bos_token: true } });
    const json = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8"));
    json.post_processor = null;
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(json));
    const t = TextTokenizer.fromDir(dir);
    expect(t.encode("hi")).toEqual([t.bosTokenId!, ...t.encode("hi", false)]);
  });

  test("bos/eos given as AddedToken objects", () => {
    const t = TextTokenizer.fromDir(
      tinyDir({ config: { bos_token: { __type: "AddedToken", content: TINY_IM_START }, eos_token: null } }),
    );
    expect(t.bosTokenId).toBe(t.tokenToId(TINY_IM_START)!);
    expect(t.eosTokenId).toBeNull();
  });

  test("without tokenizer_config.json there are no bos/eos ids and no chat template", () => {
    const t = TextTokenizer.fromDir(tinyDir({ writeConfig: false }));
    expect(t.bosTokenId).toBeNull();
    expect(t.eosTokenId).toBeNull();
    expect(t.hasChatTemplate).toBe(false);
    expect(t.decode(t.encode("café"))).toBe("café");
  });
});

describe("TextTokenizer errors", () => {
  const expectTokenizerError = (dir: string, file: string, fault: RegExp) => {
    let caught: unknown;
    try {
      TextTokenizer.fromDir(dir);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(TokenizerError);
    expect((caught as TokenizerError).file).toBe(join(dir, file));
    expect((caught as TokenizerError).message).toContain(file);
    expect((caught as TokenizerError).message).toMatch(fault);
  };

  test("missing tokenizer.json names the file", () => {
    expectTokenizerError(emptyDir(), "tokenizer.json", /not found/);
  });

  test("tokenizer.json that is not JSON", () => {
    const dir = emptyDir();
    writeFileSync(join(dir, "tokenizer.json"), "{ not json");
    expectTokenizerError(dir, "tokenizer.json", /JSON/);
  });

  test("tokenizer.json without a model", () => {
    const dir = emptyDir();
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify({ added_tokens: [] }));
    expectTokenizerError(dir, "tokenizer.json", /model/);
  });

  test("tokenizer.json with an unknown model type", () => {
    const dir = emptyDir();
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify({ model: { type: "Nope" } }));
    expectTokenizerError(dir, "tokenizer.json", /unsupported or malformed/);
  });

  test("malformed tokenizer_config.json", () => {
    const dir = emptyDir();
    writeTinyTokenizer(dir, { writeConfig: false });
    writeFileSync(join(dir, "tokenizer_config.json"), "[1, 2]");
    expectTokenizerError(dir, "tokenizer_config.json", /object/);
  });

  test("bos_token that is not in the vocabulary", () => {
    expectTokenizerError(tinyDir({ config: { bos_token: "<bos>" } }), "tokenizer_config.json", /<bos>.*vocabulary/);
  });

  test("chat_template of the wrong type", () => {
    expectTokenizerError(tinyDir({ config: { chat_template: 42 } }), "tokenizer_config.json", /chat_template/);
  });
});
