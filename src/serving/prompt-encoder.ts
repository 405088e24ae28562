// Text to token ids (and back) for the front ends. A prompt longer than max_model_len tokens could
// ever span is refused before any tokenizing; a short one is tokenized here at once (a Worker's
// round trip would cost more), anything longer in the tokenizer pool, so the event loop that
// serves /health and every other client never waits for one long prompt.
import { runJob, type JobResult, type InputJob } from "./input-jobs.ts";
import type { InputPool } from "./input-pool.ts";
import type { ChatMessage, ChatTemplateOptions, TextTokenizer } from "../tokenizer/tokenizer.ts";
import { ServiceError } from "./generation.ts";

/** Jobs up to this many characters (or token ids) run on the calling thread: well under a millisecond. */
export const INLINE_MAX_CHARS = 1024;

/** Characters in every string of a JSON-like value (what a chat template can render), counted cheaply. */
function stringChars(v: unknown, depth = 0): number {
  if (typeof v === "string") return v.length;
  if (depth > 32 || v === null || typeof v !== "object") return 0;
  let n = 0;
  for (const x of Array.isArray(v) ? v : Object.values(v)) n += stringChars(x, depth + 1);
  return n;
}

export class PromptEncoder {
  /** No prompt longer than this can fit: max_model_len tokens of the tokenizer's longest token. */
  readonly maxPromptChars: number;

  constructor(
    readonly tokenizer: TextTokenizer,
    /** null: every job runs on the calling thread (for callers with no event loop to keep free). */
    private readonly pool: InputPool | null,
    private readonly maxModelLen: number,
  ) {
    this.maxPromptChars = maxModelLen * tokenizer.maxTokenChars;
  }

  encode(text: string, addSpecialTokens: boolean, param = "prompt"): Promise<number[]> {
    this.checkPromptSize(text.length, param);
    return this.run({ op: "encode", text, addSpecialTokens }, text.length);
  }

  /** Renders the chat template (with the tools it may list) and encodes the result. */
  encodeChat(messages: ChatMessage[], opts: ChatTemplateOptions, addSpecialTokens: boolean): Promise<number[]> {
    const chars = stringChars(messages) + stringChars(opts.tools ?? null);
    this.checkPromptSize(chars, "messages");
    return this.run({ op: "chat", messages, opts, addSpecialTokens }, chars);
  }

  decode(ids: number[], skipSpecialTokens: boolean): Promise<string> {
    return this.run({ op: "decode", ids, skipSpecialTokens }, ids.length);
  }

  private async run<J extends InputJob>(job: J, size: number): Promise<JobResult<J>> {
    if (size <= INLINE_MAX_CHARS || !this.pool) return runJob(this.tokenizer, job) as JobResult<J>;
    return this.pool.run(job);
  }

  /** Throws a 400 naming `param` when a text of this many characters cannot fit max_model_len. */
  checkPromptSize(chars: number, param: string): void {
    if (chars <= this.maxPromptChars) return;
    throw new ServiceError(400, "invalid_request_error",
      `the prompt has ${chars} characters, more than this model's maximum context length (${this.maxModelLen} tokens) ` +
        `can hold: no token of this tokenizer spans more than ${this.tokenizer.maxTokenChars} characters`, param);
  }
}
