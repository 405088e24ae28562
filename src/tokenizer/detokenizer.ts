// Streams the text of generated tokens as they arrive. Decoding one token at a time is wrong for
// byte-level and byte-fallback tokenizers (a token may carry half a UTF-8 character) and for
// SentencePiece ones (a token's leading space depends on what precedes it), so each step decodes
// a short window: a "prefix" of tokens already emitted, for context, plus the tokens not yet
// emitted. The new text is what the window's decode adds beyond the prefix's decode. Same idea as
// vLLM's prefix-offset/read-offset detokenize_incrementally; the window stays a few tokens long,
// so a step costs O(new tokens), not O(output).

import type { TextTokenizer } from "./tokenizer.ts";

// Tokens of the prompt's tail used as the first prefix: enough for a decoder's context rules.
const PROMPT_CONTEXT_TOKENS = 5;

/** Length of `s` without its trailing run of U+FFFD, i.e. the part later bytes cannot change. */
function stableLength(s: string): number {
  let end = s.length;
  while (end > 0 && s.charCodeAt(end - 1) === 0xfffd) end--;
  return end;
}

export class IncrementalDetokenizer {
  /** Prefix tokens (already emitted, kept for context) followed by tokens not fully emitted yet. */
  private window: number[];
  private prefixCount: number;
  private prefixText: string;
  /** Characters beyond prefixText already emitted while the window's end was still incomplete. */
  private emittedBeyondPrefix = 0;
  private output = "";

  constructor(
    private readonly tok: TextTokenizer,
    promptIds: readonly number[],
    private readonly skipSpecialTokens = true,
  ) {
    const context: number[] = [];
    for (let i = promptIds.length - 1; i >= 0 && context.length < PROMPT_CONTEXT_TOKENS; i--) {
      const id = promptIds[i]!;
      if (this.keeps(id)) context.unshift(id);
    }
    this.window = context;
    this.prefixCount = context.length;
    this.prefixText = tok.decode(context, skipSpecialTokens);
  }

  /** Appends generated ids; returns only the text they complete (possibly ""). */
  push(newIds: readonly number[]): string {
    let added = 0;
    for (const id of newIds) {
      if (this.keeps(id)) {
        this.window.push(id);
        added++;
      }
    }
    if (added === 0) return "";
    const decoded = this.tok.decode(this.window, this.skipSpecialTokens);
    const from = this.prefixText.length + this.emittedBeyondPrefix;
    const stableEnd = stableLength(decoded);
    const delta = stableEnd > from ? decoded.slice(from, stableEnd) : "";
    this.emittedBeyondPrefix += delta.length;
    // Only a window whose decode ends on a whole character may become the next prefix.
    if (stableEnd === decoded.length && decoded.length > this.prefixText.length) this.advance();
    this.output += delta;
    return delta;
  }

  /**
   * At the end of generation: whatever was held back (a U+FFFD for bytes that never completed).
   * Tokens pushed after a flush decode without context, as if they started a new text.
   */
  flush(): string {
    if (this.window.length === this.prefixCount) return "";
    const decoded = this.tok.decode(this.window, this.skipSpecialTokens);
    const rest = decoded.slice(this.prefixText.length + this.emittedBeyondPrefix);
    this.window = [];
    this.prefixCount = 0;
    this.prefixText = "";
    this.emittedBeyondPrefix = 0;
    this.output += rest;
    return rest;
  }

  /** All output text so far. */
  get text(): string {
    return this.output;
  }

  private keeps(id: number): boolean {
    return !(this.skipSpecialTokens && this.tok.specialTokenIds.has(id));
  }

  /** The tokens not yet in the prefix become the prefix; the old prefix is dropped. */
  private advance(): void {
    this.window = this.window.slice(this.prefixCount);
    this.prefixCount = this.window.length;
    this.prefixText = this.tok.decode(this.window, this.skipSpecialTokens);
    this.emittedBeyondPrefix = 0;
  }
}
