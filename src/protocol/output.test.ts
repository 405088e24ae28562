import { describe, expect, test } from "bun:test";
import type { GenerationFinal } from "../serving/generation.ts";
import type { OutputFrame } from "./messages.ts";
import { OutputCollector } from "./output.ts";

const tick = () => new Promise<void>((r) => setTimeout(r, 0));
const final = (over: Partial<GenerationFinal> = {}): GenerationFinal =>
  ({ finishReason: "length", stopReason: null, promptTokens: 4, completionTokens: 3, cachedTokens: 0, ...over });

describe("OutputCollector", () => {
  test("streamed: a frame per step; the last step's tokens share the finished frame", async () => {
    const sent: OutputFrame[] = [];
    const c = new OutputCollector("r", true, true, (f) => sent.push(f));
    c.delta({ tokenIds: [5], text: "a", logprobs: null });
    await tick();
    c.delta({ tokenIds: [6], text: "b", logprobs: null });
    await tick();
    c.delta({ tokenIds: [7], text: "c", logprobs: null });
    c.finish(final());
    await tick();
    expect(sent).toEqual([
      { type: "output", id: "r", token_ids: [5], text: "a", finished: false },
      { type: "output", id: "r", token_ids: [6], text: "b", finished: false },
      {
        type: "output", id: "r", token_ids: [7], text: "c", finished: true, finish_reason: "length", stop_reason: null,
        usage: { prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 },
      },
    ]);
  });

  test("not streamed: one frame with everything, logprobs as [id, logprob] pairs", async () => {
    const sent: OutputFrame[] = [];
    const c = new OutputCollector(9, false, true, (f) => sent.push(f));
    c.delta({ tokenIds: [5], text: "x", logprobs: [{ logprob: -1, top: [{ id: 5, logprob: -1 }, { id: 2, logprob: -2 }] }] });
    await tick();
    c.delta({ tokenIds: [6, 7], text: "yz", logprobs: [{ logprob: -3, top: [] }, { logprob: -4, top: [] }] });
    await tick();
    expect(sent).toEqual([]);
    c.finish(final({ finishReason: "stop", stopReason: 7 }));
    expect(sent).toEqual([{
      type: "output", id: 9, token_ids: [5, 6, 7], text: "xyz", finished: true, finish_reason: "stop", stop_reason: 7,
      logprobs: [{ logprob: -1, top: [[5, -1], [2, -2]] }, { logprob: -3, top: [] }, { logprob: -4, top: [] }],
      usage: { prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 },
    }]);
  });

  test("a cancelled request sends nothing more, not even a delta it held", async () => {
    const sent: OutputFrame[] = [];
    const c = new OutputCollector(2, true, true, (f) => sent.push(f));
    c.delta({ tokenIds: [1], text: "a", logprobs: null });
    c.cancel();
    c.finish(final());
    await tick();
    expect(sent).toEqual([]);
  });

  test("without detokenize there is no text field; an abort with nothing pending sends an empty finished frame", () => {
    const sent: OutputFrame[] = [];
    const c = new OutputCollector(1, true, false, (f) => sent.push(f));
    c.finish(final({ finishReason: "abort", completionTokens: 0 }));
    c.delta({ tokenIds: [1], text: "", logprobs: null }); // late: ignored
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ token_ids: [], finished: true, finish_reason: "abort" });
    expect("text" in sent[0]!).toBe(false);
  });
});
