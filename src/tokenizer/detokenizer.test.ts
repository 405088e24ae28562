import { afterAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { IncrementalDetokenizer } from "./detokenizer.ts";
import { TextTokenizer } from "./tokenizer.ts";
import { TINY_EOS, makeTinyTokenizerDir } from "../../test/helpers/tiny-tokenizer.ts";

const dir = makeTinyTokenizerDir();
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const tok = TextTokenizer.fromDir(dir);
const FFFD = "\uFFFD";

const TEXTS = [
  "plain ascii text, nothing special.",
  "héllo wörld café crème brûlée",
  "日本語のテキストです。中文汉字测试",
  "😀😃🎉👍🏽🚀 emoji 👨‍👩‍👧 family",
  "mixed: fox 日本 café 🎉 {json: true}\n\tend ",
];

/** Byte-level token ids spelling `text` one byte per token (ids 0..255 are the bytes here). */
const byteIds = (text: string) => Array.from(new TextEncoder().encode(text));

describe("IncrementalDetokenizer", () => {
  test("the tiny tokenizer really splits characters over tokens (so the tests below can fail)", () => {
    const ids = tok.encode(TEXTS[3]!, false);
    expect(ids.some((id) => tok.decode([id]).includes(FFFD))).toBe(true);
  });

  for (const text of TEXTS) {
    test(`token by token equals the full decode, never emits U+FFFD: ${JSON.stringify(text)}`, () => {
      const ids = tok.encode(text, false);
      const detok = new IncrementalDetokenizer(tok, tok.encode("prompt: "));
      let streamed = "";
      ids.forEach((id, i) => {
        const delta = detok.push([id]);
        expect(delta).not.toContain(FFFD);
        streamed += delta;
        const full = tok.decode(ids.slice(0, i + 1));
        // Where the decode so far is whole, the stream has caught up with it exactly.
        if (!full.endsWith(FFFD)) expect(streamed).toBe(full);
        else expect(full.startsWith(streamed)).toBe(true);
      });
      expect(detok.flush()).toBe("");
      expect(streamed).toBe(text);
      expect(detok.text).toBe(text);
    });
  }

  test("one byte per token: each multi-byte character appears only when complete", () => {
    const detok = new IncrementalDetokenizer(tok, []);
    const deltas = byteIds("a中😀").map((id) => detok.push([id]));
    expect(deltas).toEqual(["a", "", "", "中", "", "", "", "😀"]);
  });

  test("text before an incomplete character is not held back with it", () => {
    const detok = new IncrementalDetokenizer(tok, []);
    const [e4, b8, ad] = byteIds("中");
    expect(detok.push([...byteIds("ab"), e4!])).toBe("ab");
    expect(detok.push([b8!])).toBe("");
    expect(detok.push([ad!, ...byteIds("c")])).toBe("中c");
    expect(detok.text).toBe("ab中c");
  });

  test("several ids per push give the same text", () => {
    const text = TEXTS[4]!;
    const ids = tok.encode(text, false);
    const detok = new IncrementalDetokenizer(tok, []);
    let streamed = "";
    for (let i = 0; i < ids.length; i += 3) streamed += detok.push(ids.slice(i, i + 3));
    expect(streamed + detok.flush()).toBe(text);
  });

  test("flush releases bytes that never completed a character", () => {
    const detok = new IncrementalDetokenizer(tok, []);
    const emojiBytes = byteIds("😀");
    expect(detok.push([...byteIds("ok"), ...emojiBytes.slice(0, 2)])).toBe("ok");
    const rest = detok.flush();
    expect(rest).toBe(tok.decode(emojiBytes.slice(0, 2)));
    expect(rest).toContain(FFFD);
    expect(detok.text).toBe("ok" + rest);
    expect(detok.flush()).toBe("");
  });

  test("special tokens: skipped by default, spelled out when not skipped", () => {
    const ids = [...tok.encode("done", false), tok.eosTokenId!];
    const skipping = new IncrementalDetokenizer(tok, tok.encode("q"));
    const keeping = new IncrementalDetokenizer(tok, tok.encode("q"), false);
    const a = ids.map((id) => skipping.push([id])).join("");
    const b = ids.map((id) => keeping.push([id])).join("");
    expect(a).toBe("done");
    expect(b).toBe(`done${TINY_EOS}`);
    expect(skipping.push([tok.eosTokenId!])).toBe("");
  });

  test("the decoded window stays small however long the output", () => {
    const spy = TextTokenizer.fromDir(dir);
    const decode = spy.decode.bind(spy);
    let longest = 0;
    let calls = 0;
    spy.decode = (ids, skip) => {
      longest = Math.max(longest, ids.length);
      calls++;
      return decode(ids, skip);
    };
    const text = TEXTS.join(" ").repeat(20);
    const ids = tok.encode(text, false);
    expect(ids.length).toBeGreaterThan(1000);
    const detok = new IncrementalDetokenizer(spy, tok.encode("a long prompt ".repeat(50)));
    for (const id of ids) detok.push([id]);
    expect(detok.text + detok.flush()).toBe(text);
    expect(longest).toBeLessThanOrEqual(12);
    expect(calls).toBeLessThanOrEqual(2 * ids.length + 1);
  });
});
