import { afterAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { ChatTemplateError, TextTokenizer } from "./tokenizer.ts";
import type { ChatMessage } from "./chat-template.ts";
import { TINY_CHATML_TEMPLATE, makeTinyTokenizerDir } from "../../test/helpers/tiny-tokenizer.ts";

const dirs: string[] = [];
const load = (options: Parameters<typeof makeTinyTokenizerDir>[0]) => {
  const dir = makeTinyTokenizerDir(options);
  dirs.push(dir);
  return { tok: TextTokenizer.fromDir(dir), dir };
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const chat: ChatMessage[] = [
  { role: "system", content: "Be brief." },
  { role: "user", content: "Hi 🎉" },
];
const expectedChatML =
  "<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi 🎉<|im_end|>\n<|im_start|>assistant\n";

const renderError = (fn: () => unknown): ChatTemplateError => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ChatTemplateError);
    return e as ChatTemplateError;
  }
  throw new Error("expected a ChatTemplateError");
};

describe("chat template", () => {
  test("from tokenizer_config.json, with bos_token and the generation prompt", () => {
    const { tok } = load({ chatTemplate: TINY_CHATML_TEMPLATE });
    expect(tok.hasChatTemplate).toBe(true);
    expect(tok.applyChatTemplate(chat, { addGenerationPrompt: true })).toBe(expectedChatML);
    const noPrompt = tok.applyChatTemplate(chat, { addGenerationPrompt: false });
    expect(noPrompt).toBe(expectedChatML.slice(0, -"<|im_start|>assistant\n".length));
  });

  test("the rendered prompt encodes with the chat special tokens as single ids", () => {
    const { tok } = load({ chatTemplate: TINY_CHATML_TEMPLATE });
    const ids = tok.encode(tok.applyChatTemplate(chat, { addGenerationPrompt: true }), false);
    expect(ids[0]).toBe(tok.bosTokenId!);
    expect(ids.filter((id) => id === tok.tokenToId("<|im_start|>")).length).toBe(3);
    expect(tok.decode(ids, false)).toBe(expectedChatML);
  });

  test("chat_template.jinja wins over tokenizer_config.json", () => {
    const jinja = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{{ eos_token }}";
    const { tok } = load({ chatTemplate: TINY_CHATML_TEMPLATE, chatTemplateJinja: jinja });
    expect(tok.applyChatTemplate(chat, { addGenerationPrompt: true })).toBe("[system]Be brief.[user]Hi 🎉</s>");
  });

  test("chat_template.jinja alone is enough", () => {
    const { tok } = load({ chatTemplateJinja: "{{ messages[0].content }}" });
    expect(tok.hasChatTemplate).toBe(true);
    expect(tok.applyChatTemplate(chat, { addGenerationPrompt: false })).toBe("Be brief.");
  });

  test("a list of named templates: default, or tool_use when tools are given", () => {
    const { tok } = load({
      chatTemplate: [
        { name: "default", template: "plain:{{ messages | length }}" },
        { name: "tool_use", template: "tools:{{ tools | length }}:{{ tools[0].name }}" },
      ],
    });
    expect(tok.applyChatTemplate(chat, { addGenerationPrompt: true })).toBe("plain:2");
    const tools = [{ name: "get_weather" }, { name: "get_time" }];
    expect(tok.applyChatTemplate(chat, { addGenerationPrompt: true, tools })).toBe("tools:2:get_weather");
  });

  test("several named templates without a default is an error naming the file", () => {
    const { tok, dir } = load({ chatTemplate: [{ name: "a", template: "x" }, { name: "b", template: "y" }] });
    const e = renderError(() => tok.applyChatTemplate(chat, { addGenerationPrompt: true }));
    expect(e.reason).toBe("invalid");
    expect(e.message).toContain(join(dir, "tokenizer_config.json"));
  });

  test("no chat template: a clear error", () => {
    const { tok } = load({});
    expect(tok.hasChatTemplate).toBe(false);
    const e = renderError(() => tok.applyChatTemplate(chat, { addGenerationPrompt: true }));
    expect(e.reason).toBe("missing");
    expect(e.message).toBe("this model has no chat template");
  });

  test("raise_exception in the template surfaces its message", () => {
    const { tok } = load({ chatTemplate: TINY_CHATML_TEMPLATE });
    const e = renderError(() =>
      tok.applyChatTemplate([{ role: "tool", content: "x" }], { addGenerationPrompt: true }),
    );
    expect(e.reason).toBe("render");
    expect(e.message).toContain("unknown role: tool");
  });

  test("a template that does not parse fails when used, not when loading", () => {
    const { tok, dir } = load({ chatTemplateJinja: "{% for m in messages %}unterminated" });
    expect(tok.hasChatTemplate).toBe(true);
    const e = renderError(() => tok.applyChatTemplate(chat, { addGenerationPrompt: true }));
    expect(e.reason).toBe("invalid");
    expect(e.message).toContain(join(dir, "chat_template.jinja"));
  });

  test("extra message keys reach the template", () => {
    const { tok } = load({
      chatTemplateJinja: "{% for m in messages %}{{ m.role }}:{{ m.name }};{% endfor %}",
    });
    const msgs: ChatMessage[] = [{ role: "user", content: "hi", name: "ann" }];
    expect(tok.applyChatTemplate(msgs, { addGenerationPrompt: false })).toBe("user:ann;");
  });
});
