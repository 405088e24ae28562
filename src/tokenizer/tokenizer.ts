// Text <-> token ids for a Hugging Face model directory. Wraps @huggingface/tokenizers (a pure-JS
// port of the Rust `tokenizers` crate) and adds what that library leaves to transformers: special
// token ids from tokenizer_config.json, add_bos_token, and the chat template.

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import {
  ChatTemplate,
  ChatTemplateError,
  ChatTemplateSourceError,
  type ChatMessage,
  type ChatTemplateOptions,
} from "./chat-template.ts";

export { ChatTemplateError, type ChatMessage, type ChatTemplateOptions } from "./chat-template.ts";

/** A tokenizer file that is missing or malformed; `file` is the path of the file at fault. */
export class TokenizerError extends Error {
  constructor(
    readonly file: string,
    fault: string,
  ) {
    super(`${file}: ${fault}`);
    this.name = "TokenizerError";
  }
}

type JsonObject = Record<string, unknown>;

// The library insists these keys exist; files written by old `tokenizers` versions may omit some.
const OPTIONAL_PIPELINE_KEYS = ["normalizer", "pre_tokenizer", "post_processor", "decoder"] as const;

function readJsonObject(file: string): JsonObject {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new TokenizerError(file, `cannot read as JSON (${(e as Error).message})`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new TokenizerError(file, "expected a JSON object at the top level");
  }
  return parsed as JsonObject;
}

function loadTokenizerJson(file: string): JsonObject {
  if (!existsSync(file)) throw new TokenizerError(file, "file not found (tokenizer.json is required)");
  const json = readJsonObject(file);
  const model = json.model;
  if (model === null || typeof model !== "object") throw new TokenizerError(file, 'no "model" object');
  for (const key of OPTIONAL_PIPELINE_KEYS) json[key] ??= null;
  json.added_tokens ??= [];
  if (!Array.isArray(json.added_tokens)) throw new TokenizerError(file, '"added_tokens" is not a list');
  return json;
}

/** A special token in tokenizer_config.json is a string, an AddedToken object, or null. */
function specialTokenContent(config: JsonObject, key: string, file: string): string | null {
  const value = config[key];
  if (value === undefined || value === null) return null;
  if (typeof value === "string") return value;
  if (typeof value === "object" && typeof (value as JsonObject).content === "string") {
    return (value as JsonObject).content as string;
  }
  throw new TokenizerError(file, `"${key}" must be a string or an object with "content"`);
}

function loadChatTemplate(dir: string, config: JsonObject, configFile: string): ChatTemplate | null {
  try {
    return ChatTemplate.fromDir(dir, config, configFile);
  } catch (e) {
    if (e instanceof ChatTemplateSourceError) throw new TokenizerError(e.file, e.fault);
    throw e;
  }
}

export class TextTokenizer {
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly specialTokenIds: ReadonlySet<number>;
  private readonly bosToken: string | null;
  /** tokenizer_config.json's add_bos_token when present: it overrides the post-processor. */
  private readonly addBosToken: boolean | undefined;
  private longestToken = 0;

  private constructor(
    private readonly inner: Tokenizer,
    config: JsonObject,
    configFile: string,
    private readonly chatTemplate: ChatTemplate | null,
  ) {
    let maxId = -1;
    for (const id of inner.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    this.bosToken = specialTokenContent(config, "bos_token", configFile);
    const eosToken = specialTokenContent(config, "eos_token", configFile);
    this.bosTokenId = this.requireId(this.bosToken, "bos_token", configFile);
    this.eosTokenId = this.requireId(eosToken, "eos_token", configFile);
    const addBos = config.add_bos_token;
    if (addBos !== undefined && addBos !== null && typeof addBos !== "boolean") {
      throw new TokenizerError(configFile, '"add_bos_token" must be true or false');
    }
    this.addBosToken = addBos ?? undefined;
    this.specialTokenIds = this.collectSpecialIds(config, configFile);
  }

  static fromDir(dir: string): TextTokenizer {
    const tokenizerFile = join(dir, "tokenizer.json");
    const configFile = join(dir, "tokenizer_config.json");
    const tokenizerJson = loadTokenizerJson(tokenizerFile);
    const config = existsSync(configFile) ? readJsonObject(configFile) : {};
    const chatTemplate = loadChatTemplate(dir, config, configFile);
    // Clean-up of tokenization spaces is off: it is not prefix-stable (" ." becomes "." only once
    // the "." arrives), so streamed text could never equal it; vLLM's streamed output skips it too.
    const libraryConfig: JsonObject = { ...config, chat_template: undefined, clean_up_tokenization_spaces: false };
    for (const key of ["bos_token", "eos_token", "unk_token", "pad_token"]) {
      if (key in config) libraryConfig[key] = specialTokenContent(config, key, configFile) ?? undefined;
    }
    let inner: Tokenizer;
    try {
      inner = new Tokenizer(tokenizerJson, libraryConfig);
    } catch (e) {
      throw new TokenizerError(tokenizerFile, `unsupported or malformed tokenizer (${(e as Error).message})`);
    }
    return new TextTokenizer(inner, config, configFile, chatTemplate);
  }

  encode(text: string, addSpecialTokens = true): number[] {
    const ids = this.inner.encode(text, { add_special_tokens: addSpecialTokens }).ids;
    if (!addSpecialTokens || this.addBosToken === undefined || this.bosTokenId === null) return ids;
    const startsWithBos = ids[0] === this.bosTokenId;
    if (this.addBosToken && !startsWithBos) return [this.bosTokenId, ...ids];
    // A BOS the text itself spells out stays; only the one the post-processor added goes.
    if (!this.addBosToken && startsWithBos && !text.startsWith(this.bosToken!)) return ids.slice(1);
    return ids;
  }

  /** Ids the tokenizer does not know decode to nothing, as in the Rust tokenizers crate. */
  decode(ids: readonly number[], skipSpecialTokens = true): string {
    const kept = ids.filter(
      (id) => this.inner.id_to_token(id) !== undefined && !(skipSpecialTokens && this.specialTokenIds.has(id)),
    );
    if (kept.length === 0) return "";
    return this.inner.decode(kept, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  idToToken(id: number): string | undefined {
    return this.inner.id_to_token(id);
  }

  tokenToId(tok: string): number | undefined {
    return this.inner.token_to_id(tok);
  }

  /**
   * The longest token, in UTF-16 units of its vocabulary string. A token covers at most that many
   * units of input text (byte-level and SentencePiece strings spell each input byte or character
   * with at least one unit), so a text longer than n * maxTokenChars has more than n tokens.
   */
  get maxTokenChars(): number {
    if (this.longestToken === 0) {
      for (const token of this.inner.get_vocab(true).keys()) this.longestToken = Math.max(this.longestToken, token.length);
    }
    return this.longestToken;
  }

  /** The chat rendered by the model's template, then encoded (special tokens only if asked: the template writes them). */
  encodeChat(messages: ChatMessage[], opts: ChatTemplateOptions, addSpecialTokens: boolean): number[] {
    return this.encode(this.applyChatTemplate(messages, opts), addSpecialTokens);
  }

  get hasChatTemplate(): boolean {
    return this.chatTemplate !== null;
  }

  applyChatTemplate(messages: ChatMessage[], opts: ChatTemplateOptions): string {
    if (this.chatTemplate === null) {
      throw new ChatTemplateError("missing", "this model has no chat template");
    }
    return this.chatTemplate.render(messages, opts);
  }

  private requireId(token: string | null, key: string, configFile: string): number | null {
    if (token === null) return null;
    const id = this.inner.token_to_id(token);
    if (id === undefined) throw new TokenizerError(configFile, `${key} "${token}" is not in the vocabulary`);
    return id;
  }

  private collectSpecialIds(config: JsonObject, configFile: string): Set<number> {
    const ids = new Set<number>();
    for (const [id, token] of this.inner.get_added_tokens_decoder()) if (token.special) ids.add(id);
    if (this.bosTokenId !== null) ids.add(this.bosTokenId);
    if (this.eosTokenId !== null) ids.add(this.eosTokenId);
    for (const key of ["unk_token", "pad_token"]) {
      const id = this.inner.token_to_id(specialTokenContent(config, key, configFile) ?? "");
      if (id !== undefined) ids.add(id);
    }
    const extra = config.additional_special_tokens;
    if (Array.isArray(extra)) {
      for (const entry of extra) {
        const content = typeof entry === "string" ? entry : (entry as JsonObject | null)?.content;
        const id = typeof content === "string" ? this.inner.token_to_id(content) : undefined;
        if (id !== undefined) ids.add(id);
      }
    }
    return ids;
  }
}
