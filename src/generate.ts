// Offline generation: several prompts through the engine Worker at once, as `vllmd generate`
// runs them. The engine batches them continuously like any other requests.
import type { EngineClient } from "./engine/client.ts";
import type { FinishReason, SamplingParams } from "./engine/request.ts";
import type { TextTokenizer } from "./tokenizer/tokenizer.ts";

export type Prompt = { text: string } | { tokenIds: number[] };

export interface GenerateResult {
  prompt: string | null;
  prompt_token_ids: number[];
  token_ids: number[];
  text: string | null;
  finish_reason: FinishReason | null;
}

/** Turns a prompt into token ids; text needs the model's tokenizer. */
export function promptIds(p: Prompt, tok: TextTokenizer | null): number[] {
  if ("tokenIds" in p) return p.tokenIds;
  if (!tok) throw new Error("a text prompt needs tokenizer.json in the model directory; pass --prompt-token-ids instead");
  return tok.encode(p.text, true);
}

export function generate(
  client: EngineClient,
  tok: TextTokenizer | null,
  prompts: Prompt[],
  params: (i: number) => SamplingParams,
): Promise<GenerateResult[]> {
  return Promise.all(
    prompts.map(
      (p, i) =>
        new Promise<GenerateResult>((resolve, reject) => {
          const ids = promptIds(p, tok);
          const out: number[] = [];
          client.add(`gen-${i}`, ids, params(i), (o) => {
            out.push(...o.newTokenIds);
            if (!o.finished) return;
            resolve({
              prompt: "text" in p ? p.text : null,
              prompt_token_ids: ids,
              token_ids: out,
              text: tok ? tok.decode(out, true) : null,
              finish_reason: o.finishReason,
            });
          }, (msg) => reject(new Error(`prompt ${i}: ${msg}`)));
        }),
    ),
  );
}
