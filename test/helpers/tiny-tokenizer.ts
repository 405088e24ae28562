// A small byte-level BPE tokenizer written as a Hugging Face directory, for tests that need real
// tokenizer files without downloading a model. The merges are learnt from a tiny multilingual
// corpus, so CJK characters and emoji end up split over tokens that each hold part of a character:
// exactly the case an incremental detokenizer must handle.

import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const TINY_BOS = "<s>";
export const TINY_EOS = "</s>";
export const TINY_IM_START = "<|im_start|>";
export const TINY_IM_END = "<|im_end|>";

/** A ChatML-style template, written in the subset of Jinja that chat templates use. */
export const TINY_CHATML_TEMPLATE =
  "{{ bos_token }}{% for m in messages %}" +
  "{% if m.role not in ['system', 'user', 'assistant'] %}{{ raise_exception('unknown role: ' + m.role) }}{% endif %}" +
  "{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const TRAINING_CORPUS = [
  "the quick brown fox jumps over the lazy dog. the dog sleeps, the fox runs.",
  "héllo wörld, café crème brûlée à la carte; naïve façade, señor año.",
  "日本語のテキストです。東京は日本の首都です。中文汉字测试，中国语言。",
  "😀😃😄 emoji 🎉🎉 party 👍🏽 thumbs 🚀 rocket 😀🎉",
  "numbers 12345 and 2024, tokens: <tag> {json: true} [list] (paren)",
];

export interface TinyTokenizerOptions {
  /** Number of BPE merges to learn (default 64). */
  merges?: number;
  /** Write tokenizer_config.json (default true). */
  writeConfig?: boolean;
  /** tokenizer_config.json's chat_template: a string or a list of named templates. */
  chatTemplate?: string | Array<{ name: string; template: string }>;
  /** Written to chat_template.jinja when given. */
  chatTemplateJinja?: string;
  /** Extra or replacement keys for tokenizer_config.json. */
  config?: Record<string, unknown>;
}

/** GPT-2's reversible byte -> printable character map, so every byte is a visible vocab entry. */
export function byteToUnicodeTable(): string[] {
  const table: string[] = new Array(256);
  const isPrintable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let next = 256;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(isPrintable(b) ? b : next++);
  return table;
}

/** Learns `count` merges over the corpus words, most frequent pair first, ties broken by order. */
function learnMerges(count: number, byteChars: string[]): Array<[string, string]> {
  const wordCounts = new Map<string, number>();
  const encoder = new TextEncoder();
  for (const line of TRAINING_CORPUS) {
    for (const word of line.match(/ ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+/gu) ?? []) {
      const key = Array.from(encoder.encode(word), (b) => byteChars[b]!).join("\u0000");
      wordCounts.set(key, (wordCounts.get(key) ?? 0) + 1);
    }
  }
  let words = [...wordCounts].map(([key, n]) => ({ parts: key.split("\u0000"), n }));
  const merges: Array<[string, string]> = [];
  while (merges.length < count) {
    const best = mostFrequentPair(words);
    if (best === null) break;
    merges.push(best);
    words = words.map(({ parts, n }) => ({ parts: mergePair(parts, best), n }));
  }
  return merges;
}

function mostFrequentPair(words: Array<{ parts: string[]; n: number }>): [string, string] | null {
  const counts = new Map<string, number>();
  for (const { parts, n } of words) {
    for (let i = 0; i + 1 < parts.length; i++) {
      const key = parts[i] + "\u0000" + parts[i + 1];
      counts.set(key, (counts.get(key) ?? 0) + n);
    }
  }
  let bestKey: string | null = null;
  let bestCount = 1; // a pair seen once teaches nothing
  for (const [key, n] of counts) {
    if (n > bestCount || (n === bestCount && bestKey !== null && key < bestKey)) {
      bestKey = key;
      bestCount = n;
    }
  }
  return bestKey === null ? null : (bestKey.split("\u0000") as [string, string]);
}

function mergePair(parts: string[], [a, b]: [string, string]): string[] {
  const out: string[] = [];
  for (let i = 0; i < parts.length; i++) {
    if (parts[i] === a && parts[i + 1] === b) {
      out.push(a + b);
      i++;
    } else {
      out.push(parts[i]!);
    }
  }
  return out;
}

/** The tokenizer.json object: 256 byte tokens, learnt merges, then the special tokens. */
export function buildTinyTokenizerJson(mergeCount = 64): Record<string, unknown> {
  const byteChars = byteToUnicodeTable();
  const vocab: Record<string, number> = {};
  byteChars.forEach((c, b) => (vocab[c] = b));
  const merges = learnMerges(mergeCount, byteChars);
  for (const [a, b] of merges) if (!(a + b in vocab)) vocab[a + b] = Object.keys(vocab).length;
  const specials = [TINY_BOS, TINY_EOS, TINY_IM_START, TINY_IM_END];
  const firstSpecial = Object.keys(vocab).length;
  const addedTokens = specials.map((content, i) => ({
    id: firstSpecial + i,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const bosId = firstSpecial;
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: TINY_BOS, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: TINY_BOS, type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: TINY_BOS, type_id: 1 } },
        { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: { [TINY_BOS]: { id: TINY_BOS, ids: [bosId], tokens: [TINY_BOS] } },
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

/** Writes tokenizer.json (and, per the options, tokenizer_config.json, chat_template.jinja) to dir. */
export function writeTinyTokenizer(dir: string, options: TinyTokenizerOptions = {}): void {
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(buildTinyTokenizerJson(options.merges)));
  if (options.writeConfig ?? true) {
    const config: Record<string, unknown> = {
      tokenizer_class: "PreTrainedTokenizerFast",
      bos_token: TINY_BOS,
      eos_token: TINY_EOS,
      clean_up_tokenization_spaces: false,
      ...(options.chatTemplate !== undefined ? { chat_template: options.chatTemplate } : {}),
      ...options.config,
    };
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(config, null, 2));
  }
  if (options.chatTemplateJinja !== undefined) {
    writeFileSync(join(dir, "chat_template.jinja"), options.chatTemplateJinja);
  }
}

/** Creates a fresh temp directory holding the tiny tokenizer; the caller removes it. */
export function makeTinyTokenizerDir(options: TinyTokenizerOptions = {}): string {
  const dir = mkdtempSync(join(tmpdir(), "vllmd-tiny-tok-"));
  writeTinyTokenizer(dir, options);
  return dir;
}
