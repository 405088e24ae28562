// Token logprobs in the two OpenAI formats: the legacy completions one (parallel lists plus a
// {token text: logprob} map per position) and the chat one (a list of token objects with bytes).
import type { TokenLogprobs } from "../engine/runner.ts";
import type { TextTokenizer } from "../tokenizer/tokenizer.ts";

// Python's json cannot carry -inf; vLLM clamps to this, and clients expect a finite number.
const FLOOR = -9999;
const clamp = (lp: number): number => (Number.isFinite(lp) ? lp : lp > 0 ? lp : FLOOR);

export type TokenNamer = (id: number) => string;

/** A token's own text (special tokens shown); without a tokenizer, vLLM's "token_id:N" form. */
export function tokenNamer(tok: TextTokenizer | null): TokenNamer {
  return tok ? (id) => tok.decode([id], false) : (id) => `token_id:${id}`;
}

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[];
  text_offset: number[];
}

/** Offsets count code points, as Python's len() does in vLLM. */
export const textLength = (s: string): number => [...s].length;

/** `startOffset`: characters of the choice's text before these tokens (echo, earlier chunks). */
export function completionLogprobs(ids: readonly number[], lps: readonly TokenLogprobs[], name: TokenNamer, startOffset: number): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  let offset = startOffset;
  ids.forEach((id, i) => {
    const lp = lps[i];
    const token = name(id);
    out.tokens.push(token);
    out.token_logprobs.push(clamp(lp?.logprob ?? Number.NEGATIVE_INFINITY));
    // The chosen token first, then the top ones (a dict: the chosen one may repeat among them).
    const top: Record<string, number> = { [token]: clamp(lp?.logprob ?? Number.NEGATIVE_INFINITY) };
    for (const t of lp?.top ?? []) top[name(t.id)] ??= clamp(t.logprob);
    out.top_logprobs.push(top);
    out.text_offset.push(offset);
    offset += textLength(token);
  });
  return out;
}

export interface ChatTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
}

export interface ChatLogprobContent extends ChatTokenLogprob {
  top_logprobs: ChatTokenLogprob[];
}

const encoder = new TextEncoder();
function chatToken(id: number, logprob: number, name: TokenNamer): ChatTokenLogprob {
  const token = name(id);
  return { token, logprob: clamp(logprob), bytes: Array.from(encoder.encode(token)) };
}

/** `topN`: how many alternatives per token the client asked for (top_logprobs). */
export function chatLogprobs(ids: readonly number[], lps: readonly TokenLogprobs[], name: TokenNamer, topN: number): ChatLogprobContent[] {
  return ids.map((id, i) => {
    const lp = lps[i];
    return {
      ...chatToken(id, lp?.logprob ?? Number.NEGATIVE_INFINITY, name),
      top_logprobs: (lp?.top ?? []).slice(0, topN).map((t) => chatToken(t.id, t.logprob, name)),
    };
  });
}
