// The model's chat template: finds it (chat_template.jinja, else tokenizer_config.json's
// chat_template), picks the right one when the config names several, and renders it with
// @huggingface/jinja the way transformers' apply_chat_template does.

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";

/** One chat turn as templates read it; extra keys (tool_calls, name, ...) pass through untouched. */
export interface ChatMessage {
  role: string;
  content: string | null;
  [key: string]: unknown;
}

export interface ChatTemplateOptions {
  addGenerationPrompt: boolean;
  tools?: unknown[];
}

/**
 * Why a chat could not be rendered: the model has no template ("missing"), the template cannot be
 * used ("invalid": bad syntax, or several templates and none is the default), or rendering failed
 * ("render": including the template's own raise_exception, e.g. roles that must alternate).
 */
export class ChatTemplateError extends Error {
  constructor(
    readonly reason: "missing" | "invalid" | "render",
    message: string,
  ) {
    super(message);
    this.name = "ChatTemplateError";
  }
}

type JsonObject = Record<string, unknown>;

interface NamedSource {
  name: string;
  source: string;
}

const DEFAULT_NAME = "default";
const TOOL_USE_NAME = "tool_use";

/** Config values the templates read besides the messages (strings only, as transformers passes). */
function templateTokenStrings(config: JsonObject): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of ["bos_token", "eos_token", "unk_token", "pad_token"]) {
    const value = config[key];
    if (typeof value === "string") out[key] = value;
    else if (value !== null && typeof value === "object" && typeof (value as JsonObject).content === "string") {
      out[key] = (value as JsonObject).content as string;
    }
  }
  return out;
}

function parseConfigTemplates(value: unknown, configFile: string): NamedSource[] {
  const fault = `"chat_template" must be a string or a list of {name, template}`;
  if (typeof value === "string") return [{ name: DEFAULT_NAME, source: value }];
  if (!Array.isArray(value)) throw new ChatTemplateSourceError(configFile, fault);
  return value.map((entry) => {
    const e = entry as JsonObject | null;
    if (e === null || typeof e.name !== "string" || typeof e.template !== "string") {
      throw new ChatTemplateSourceError(configFile, fault);
    }
    return { name: e.name, source: e.template };
  });
}

/** A template file with the wrong shape; tokenizer.ts reports it as a TokenizerError. */
export class ChatTemplateSourceError extends Error {
  constructor(
    readonly file: string,
    readonly fault: string,
  ) {
    super(`${file}: ${fault}`);
    this.name = "ChatTemplateSourceError";
  }
}

export class ChatTemplate {
  private readonly parsed = new Map<string, Template>();

  constructor(
    private readonly sources: readonly NamedSource[],
    private readonly origin: string,
    private readonly tokenStrings: Readonly<Record<string, string>>,
  ) {}

  /** The directory's template, or null when it has none. chat_template.jinja wins, as in transformers. */
  static fromDir(dir: string, config: JsonObject, configFile: string): ChatTemplate | null {
    const jinjaFile = join(dir, "chat_template.jinja");
    const tokens = templateTokenStrings(config);
    if (existsSync(jinjaFile)) {
      return new ChatTemplate([{ name: DEFAULT_NAME, source: readFileSync(jinjaFile, "utf8") }], jinjaFile, tokens);
    }
    const value = config.chat_template;
    if (value === undefined || value === null) return null;
    const sources = parseConfigTemplates(value, configFile);
    return sources.length === 0 ? null : new ChatTemplate(sources, configFile, tokens);
  }

  render(messages: ChatMessage[], opts: ChatTemplateOptions): string {
    const template = this.select(opts.tools !== undefined && opts.tools.length > 0);
    const context: Record<string, unknown> = {
      ...this.tokenStrings,
      messages,
      add_generation_prompt: opts.addGenerationPrompt,
    };
    if (opts.tools !== undefined) context.tools = opts.tools;
    // The jinja library already defines raise_exception as a global (a plain Error carrying the
    // template's message) and refuses to redefine it, so its errors are wrapped here instead.
    try {
      return template.render(context);
    } catch (e) {
      throw new ChatTemplateError("render", `chat template (${this.origin}) failed: ${(e as Error).message}`);
    }
  }

  private select(wantTools: boolean): Template {
    const byName = (name: string) => this.sources.find((s) => s.name === name);
    const chosen =
      (wantTools ? byName(TOOL_USE_NAME) : undefined) ??
      byName(DEFAULT_NAME) ??
      (this.sources.length === 1 ? this.sources[0] : undefined);
    if (chosen === undefined) {
      const names = this.sources.map((s) => s.name).join(", ");
      throw new ChatTemplateError("invalid", `${this.origin} has several chat templates (${names}) and no "default"`);
    }
    return this.parse(chosen);
  }

  private parse(source: NamedSource): Template {
    let template = this.parsed.get(source.name);
    if (template === undefined) {
      try {
        template = new Template(source.source);
      } catch (e) {
        const what = `chat template "${source.name}" in ${this.origin}`;
        throw new ChatTemplateError("invalid", `${what} cannot be parsed: ${(e as Error).message}`);
      }
      this.parsed.set(source.name, template);
    }
    return template;
  }
}
