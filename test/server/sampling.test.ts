// Sampling fields over HTTP: seeds and n, stop strings and stop tokens, logit_bias, ignore_eos,
// min_tokens, and the truncating samplers, each checked against what it must do to the output.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type OpenAI from "openai";
import type { RunningServer } from "../../src/serving/start.ts";
import { clientFor, extra, serveFixture } from "./helpers.ts";

let srv: RunningServer;
let client: OpenAI;
let model: string;
let eos: number;
const PROMPT = "In the beginning";

beforeAll(async () => {
  srv = await serveFixture();
  client = clientFor(srv);
  model = srv.ctx.modelName;
  eos = srv.ctx.tokenizer!.eosTokenId!;
});
afterAll(() => srv.close());

type Choice = OpenAI.CompletionChoice & { stop_reason?: string | number | null };
const complete = async (more: Record<string, unknown>) => {
  const r = await client.completions.create(extra({ model, prompt: PROMPT, max_tokens: 24 }, more));
  return { choices: r.choices as Choice[], usage: r.usage! };
};
const text = async (more: Record<string, unknown>) => (await complete(more)).choices[0]!.text;

describe("seeds and n", () => {
  test("the same seed gives the same text at temperature 1; other seeds give others", async () => {
    const [a, b, c, d] = await Promise.all([1, 1, 2, 3].map((seed) => text({ temperature: 1, seed, ignore_eos: true })));
    expect(a).toBe(b!);
    expect(new Set([a, c, d]).size).toBeGreaterThan(1);
  });

  test("n=2 with a seed: two choices, choice i sampled with seed + i, the same on every call", async () => {
    const [first, again, single0, single1] = await Promise.all([
      complete({ temperature: 1, seed: 40, n: 2, ignore_eos: true }),
      complete({ temperature: 1, seed: 40, n: 2, ignore_eos: true }),
      text({ temperature: 1, seed: 40, ignore_eos: true }),
      text({ temperature: 1, seed: 41, ignore_eos: true }),
    ]);
    expect(first.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(first.choices.map((c) => c.text)).toEqual(again.choices.map((c) => c.text));
    expect(first.choices.map((c) => c.text)).toEqual([single0, single1]);
    expect(first.usage.completion_tokens).toBe(48);
  });

  test("top_k 1, a tiny top_p and min_p 1 all reduce temperature-1 sampling to greedy", async () => {
    const greedy = await text({ temperature: 0, ignore_eos: true });
    const reduced = await Promise.all([{ top_k: 1 }, { top_p: 1e-6 }, { min_p: 1 }].map((f) => text({ temperature: 1, seed: 5, ignore_eos: true, ...f })));
    expect(reduced).toEqual([greedy, greedy, greedy]);
  });

  test("strong penalties change the greedy text", async () => {
    const greedy = await text({ temperature: 0, ignore_eos: true, max_tokens: 60 });
    for (const f of [{ frequency_penalty: 2 }, { presence_penalty: 2 }, { repetition_penalty: 3 }]) {
      expect(await text({ temperature: 0, ignore_eos: true, max_tokens: 60, ...f })).not.toBe(greedy);
    }
  });
});

describe("stops", () => {
  test("a stop string ends the text right before it, with finish_reason stop and stop_reason the string", async () => {
    const full = await text({ temperature: 0, ignore_eos: true, max_tokens: 40 });
    let at = 8; // a stop string from the middle, of whole characters
    while (at + 2 < full.length && /[\ufffd\ud800-\udfff]/.test(full.slice(at, at + 2))) at++;
    const stop = full.slice(at, at + 2);
    const expected = full.slice(0, full.indexOf(stop));
    const r = await complete({ temperature: 0, ignore_eos: true, max_tokens: 40, stop: [stop, "never-seen-stop"] });
    expect(r.choices[0]!.text).toBe(expected);
    expect(r.choices[0]!.finish_reason).toBe("stop");
    expect(r.choices[0]!.stop_reason).toBe(stop);
    const kept = await text({ temperature: 0, ignore_eos: true, max_tokens: 40, stop, include_stop_str_in_output: true });
    expect(kept).toBe(expected + stop);
    const stream = await client.completions.create(extra({ model, prompt: PROMPT, max_tokens: 40, temperature: 0, stop, stream: true }, { ignore_eos: true }));
    let streamed = "";
    for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? "";
    expect(streamed).toBe(expected);
  });

  test("logit_bias +100 forces a token; stop_token_ids on it ends after one token", async () => {
    const forced = srv.ctx.tokenizer!.encode("e", false);
    expect(forced).toHaveLength(1);
    const id = forced[0]!;
    expect(await text({ temperature: 1, seed: 3, max_tokens: 5, logit_bias: { [id]: 100 } })).toBe("eeeee");
    const r = await complete({ temperature: 0, max_tokens: 5, logit_bias: { [id]: 100 }, stop_token_ids: [id] });
    expect(r.usage.completion_tokens).toBe(1);
    expect(r.choices[0]!.finish_reason).toBe("stop");
    expect(r.choices[0]!.stop_reason).toBe(id);
    expect(r.choices[0]!.text).toBe(""); // the stop token's text is left out, as in vLLM
    const kept = await complete({ temperature: 0, max_tokens: 5, logit_bias: { [id]: 100 }, stop_token_ids: [id], include_stop_str_in_output: true });
    expect(kept.choices[0]!.text).toBe("e");
  });

  test("EOS stops a generation unless ignore_eos; min_tokens holds the stop back", async () => {
    const bias = { [eos]: 100 };
    const stopped = await complete({ temperature: 0, logit_bias: bias });
    expect(stopped.usage.completion_tokens).toBe(1);
    expect(stopped.choices[0]!.finish_reason).toBe("stop");
    expect(stopped.choices[0]!.stop_reason).toBeNull();
    const ignored = await complete({ temperature: 0, logit_bias: bias, ignore_eos: true, max_tokens: 6 });
    expect(ignored.usage.completion_tokens).toBe(6);
    expect(ignored.choices[0]!.finish_reason).toBe("length");
    const held = await complete({ temperature: 0, logit_bias: bias, min_tokens: 4 });
    expect(held.usage.completion_tokens).toBe(5); // 4 held back, then the EOS
    expect(held.choices[0]!.finish_reason).toBe("stop");
  });

  test("skip_special_tokens false shows special tokens in the text", async () => {
    const bias = { [eos]: 100 };
    const shown = await text({ temperature: 0, logit_bias: bias, ignore_eos: true, max_tokens: 2, skip_special_tokens: false });
    const hidden = await text({ temperature: 0, logit_bias: bias, ignore_eos: true, max_tokens: 2 });
    const eosText = srv.ctx.tokenizer!.idToToken(eos)!;
    expect([shown, hidden]).toEqual([eosText + eosText, ""]);
  });
});
