// The engine's own gate (sampling-check.ts) and the device's sampler together: any sampling
// parameters, however extreme, are either refused when the request is added or run to an end
// (stop, length, or "error" for that request alone), batched with well-behaved neighbours whose
// tokens do not change; and the engine serves as before afterwards.
import { afterAll, expect, test } from "bun:test";
import fc from "fast-check";
import { join } from "node:path";
import { defaultSamplingParams, type SamplingParams } from "../src/engine/request.ts";
import { samplingParamsFault } from "../src/engine/sampling-check.ts";
import { makeEngine, runToCompletion } from "./helpers/engine-run.ts";

const engine = makeEngine({ model: join(import.meta.dir, "fixtures", "llama"), asyncScheduling: "on" });
afterAll(() => engine.dispose());
const VOCAB = 384;
const prompt = [0, 40, 41, 42, 43, 44, 45];
const neighbour = { id: "n", prompt: [0, 7, 8, 9], params: { maxTokens: 6, ignoreEos: true } };
const alone = runToCompletion(engine, [neighbour]).get("n")!;

const EDGE = [0, -0, 1, -1, 0.5, 2, 100, -100, 3.4e38, 3.5e38, 1e39, 1e-30, 1e-38, 1e-44, 1e-46, 5e-324, Number.MAX_VALUE, NaN, Infinity, -Infinity];
const edge = fc.oneof(fc.constantFrom(...EDGE), fc.double());
/** Mostly a sane value (so that a request often passes every other field's check), else anything. */
const field = (sane: fc.Arbitrary<number>) => fc.oneof({ arbitrary: sane, weight: 5 }, { arbitrary: edge, weight: 2 });
const params: fc.Arbitrary<SamplingParams> = fc.record({
  temperature: field(fc.double({ min: 0, max: 2, noNaN: true })),
  topP: field(fc.double({ min: 0.05, max: 1, noNaN: true })),
  topK: fc.oneof({ arbitrary: fc.integer({ min: -1, max: 50 }), weight: 5 }, fc.constantFrom(-2, 2 ** 31, 2 ** 40, 1.5)),
  minP: field(fc.constant(0)),
  repetitionPenalty: fc.oneof(field(fc.double({ min: 0.5, max: 2, noNaN: true })), fc.constantFrom(1e-44, 1e-40, 1e-30)),
  presencePenalty: field(fc.double({ min: -2, max: 2, noNaN: true })),
  frequencyPenalty: field(fc.double({ min: -2, max: 2, noNaN: true })),
  logprobs: fc.integer({ min: -2, max: 22 }),
  logitBias: fc.array(fc.tuple(fc.integer({ min: -1, max: VOCAB }), field(fc.double({ min: -100, max: 100, noNaN: true }))), { maxLength: 3 }).map((e) => new Map(e)),
  stopTokenIds: fc.array(fc.integer({ min: -1, max: VOCAB }), { maxLength: 2 }),
  seed: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
}).map((p) => defaultSamplingParams({ ...p, maxTokens: 3, ignoreEos: true }));

test("any parameters are refused on arrival or run to an end; the neighbour's tokens never change", () => {
  let refused = 0, errored = 0, ran = 0;
  fc.assert(fc.property(params, (p) => {
    const fault = samplingParamsFault(p, VOCAB);
    try {
      engine.addRequest("x", prompt, p);
    } catch (e) {
      expect(fault).not.toBeNull(); // refused only for a reason the check names
      expect(String(e)).toContain(fault!);
      refused++;
      return;
    }
    expect(fault).toBeNull();
    const out = new Map<string, { tokens: number[]; reason: string | null }>([["x", { tokens: [], reason: null }], ["n", { tokens: [], reason: null }]]);
    engine.addRequest("n", neighbour.prompt, defaultSamplingParams({ temperature: 0, ...neighbour.params }));
    while (engine.hasUnfinished) {
      for (const o of engine.step()) {
        const r = out.get(o.id)!;
        r.tokens.push(...o.newTokenIds);
        if (o.finished) r.reason = o.finishReason;
      }
    }
    expect(out.get("n")).toEqual({ tokens: alone, reason: "length" });
    const x = out.get("x")!;
    expect(["length", "stop", "error"]).toContain(x.reason!);
    if (x.reason === "error") errored++;
    else ran++;
    for (const t of x.tokens) expect(t >= 0 && t < VOCAB).toBe(true);
  }), { numRuns: 1000 });
  // The generator reaches all three outcomes, so none of the branches above is vacuous.
  expect([refused > 0, errored > 0, ran > 0]).toEqual([true, true, true]);
  expect(engine.stats()).toMatchObject({ numRunning: 0, numWaiting: 0, kvCacheUsage: 0 });
  expect(runToCompletion(engine, [neighbour]).get("n")).toEqual(alone);
}, 120_000);
