// Engine.launchSteps / finishStep, the split the engine Worker uses to post one step's outputs and
// take new messages while the next step runs, with and without async scheduling (the next step
// queued before the last one's tokens are back): the same tokens as the synchronous step(), and a
// request aborted while its steps are in flight ends once (as aborted), gains no token after the
// abort, and leaves no block behind.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { defaultSamplingParams } from "../src/engine/request.ts";
import { makeEngine, runToCompletion } from "./helpers/engine-run.ts";

const MODEL = join(import.meta.dir, "fixtures", "llama");
const prompts = [[1, 5, 9, 13, 17], [1, 7, 11], [1, 40, 41, 42, 43, 44, 45]];
const params = { maxTokens: 12, ignoreEos: true, temperature: 0 };

describe.each(["off", "on"] as const)("async scheduling %s", (asyncScheduling) => {
  test("launch + finish give step()'s tokens; an abort in between is skipped and frees its blocks", () => {
    const reference = makeEngine({ model: MODEL, asyncScheduling: "off" });
    const want = runToCompletion(reference, prompts.map((p, i) => ({ id: `r${i}`, prompt: p, params })));
    reference.dispose();

    const e = makeEngine({ model: MODEL, asyncScheduling });
    try {
      expect(e.info.asyncScheduling).toBe(asyncScheduling === "on");
      prompts.forEach((p, i) => e.addRequest(`r${i}`, p, defaultSamplingParams(params)));
      const got = new Map<string, number[]>(prompts.map((_, i) => [`r${i}`, []]));
      let steps = 0, abortedAt = -1, maxInFlight = 0;
      for (e.launchSteps(); e.hasUnfinished; e.launchSteps()) {
        const inFlight = e.stepsInFlight;
        maxInFlight = Math.max(maxInFlight, inFlight.length);
        if (++steps === 4) { // r1 is in a launched step: abort it before its tokens are applied
          expect(inFlight[0]!.scheduled.some((s) => s.req.id === "r1")).toBe(true);
          expect(e.abort("r1")?.finishReason).toBe("abort");
          abortedAt = got.get("r1")!.length;
        }
        for (const o of e.finishStep()) {
          expect(o.id === "r1" && abortedAt >= 0).toBe(false); // nothing for r1 after its abort
          got.get(o.id)!.push(...o.newTokenIds);
        }
      }
      expect(maxInFlight).toBe(asyncScheduling === "on" ? 2 : 1);
      expect(got.get("r0")).toEqual(want.get("r0")!);
      expect(got.get("r2")).toEqual(want.get("r2")!);
      expect(got.get("r1")).toEqual(want.get("r1")!.slice(0, abortedAt));
      expect(abortedAt).toBeGreaterThan(0);
      expect(e.scheduler.kv.numFreeBlocks).toBe(e.info.numBlocks);
      expect(e.finishStep()).toEqual([]);
    } finally {
      e.dispose();
    }
  });
});
