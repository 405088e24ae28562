// Async scheduling in the Scheduler: the next step is built while the last one still awaits its
// update(), counting its sampled tokens as pending.
import { describe, expect, test } from "bun:test";
import type { SamplingParams } from "./request.ts";
import { chunkStart, Scheduler } from "./scheduler.ts";
import { rangeRequest, smallConfig } from "./scheduler-testing.ts";

const cfg = smallConfig;
const request = (id: string, promptLen: number, params: Partial<SamplingParams> = {}) =>
  rangeRequest(id, promptLen, { maxTokens: 8, ...params }, [2]);
const tokens = (n: number, t: number) => new Int32Array(n).fill(t);

describe("a step scheduled before the last one's update", () => {
  test("a decode gets the position after its pending token and samples", () => {
    const sched = new Scheduler(cfg);
    const r = request("r", 5);
    sched.addRequest(r);
    const prefill = sched.schedule();
    expect(r.numPendingTokens).toBe(1);
    const decode = sched.schedule();
    expect(decode.scheduled).toHaveLength(1);
    const s = decode.scheduled[0]!;
    expect([chunkStart(s), s.end, s.samples]).toEqual([5, 6, true]);
    expect(r.numPendingTokens).toBe(2);
    expect(r.blockIds).toHaveLength(2); // position 5 needs a second block of 4
    expect(sched.update(prefill, tokens(1, 7)).map((o) => o.newTokenIds)).toEqual([[7]]);
    expect([r.numPendingTokens, r.numTokens]).toEqual([1, 6]);
    expect(sched.update(decode, tokens(1, 8)).map((o) => o.newTokenIds)).toEqual([[8]]);
    expect(r.outputTokenIds).toEqual([7, 8]);
    expect(r.numPendingTokens).toBe(0);
  });

  test("a stop in the older step drops the newer step's token and frees the blocks", () => {
    const sched = new Scheduler(cfg);
    const r = request("r", 4);
    sched.addRequest(r);
    const a = sched.schedule();
    const b = sched.schedule();
    const outA = sched.update(a, tokens(1, 2)); // EOS
    expect(outA).toEqual([{ req: r, newTokenIds: [2], finished: true, finishReason: "stop" }]);
    expect(sched.kv.numFreeBlocks).toBe(cfg.numBlocks);
    expect(sched.update(b, tokens(1, 9))).toEqual([]);
    expect(r.outputTokenIds).toEqual([2]);
    expect(sched.hasUnfinished).toBe(false);
  });

  test("max_tokens reached by pending tokens schedules nothing more", () => {
    const sched = new Scheduler(cfg);
    const r = request("r", 4, { maxTokens: 2 });
    sched.addRequest(r);
    const a = sched.schedule();
    const b = sched.schedule();
    expect(b.scheduled).toHaveLength(1);
    sched.update(a, tokens(1, 5));
    expect(sched.schedule().scheduled).toHaveLength(0); // both allowed tokens are out or pending
    const last = sched.update(b, tokens(1, 6));
    expect(last[0]!.finishReason).toBe("length");
    expect(r.outputTokenIds).toEqual([5, 6]);
  });

  test("max_model_len reached by pending tokens schedules nothing more", () => {
    const sched = new Scheduler({ ...cfg, maxModelLen: 6 });
    const r = request("r", 5);
    sched.addRequest(r);
    const a = sched.schedule();
    expect(sched.schedule().scheduled).toHaveLength(0);
    expect(sched.update(a, tokens(1, 5))[0]!.finishReason).toBe("length");
  });

  test("a prefill chunk does not sample, so the next chunk needs no pending token", () => {
    const sched = new Scheduler({ ...cfg, maxNumBatchedTokens: 4 });
    const r = request("r", 10);
    sched.addRequest(r);
    const a = sched.schedule();
    expect([a.scheduled[0]!.samples, r.numPendingTokens]).toEqual([false, 0]);
    const b = sched.schedule();
    expect([chunkStart(b.scheduled[0]!), b.scheduled[0]!.end]).toEqual([4, 8]);
    expect(sched.update(a, tokens(1, -1))).toEqual([]);
  });

  test("penalties with a pending token ask for the tokens before the next schedule", () => {
    const sched = new Scheduler(cfg);
    sched.addRequest(request("plain", 4));
    expect(sched.needsTokensBeforeSchedule).toBe(false);
    sched.schedule();
    expect(sched.needsTokensBeforeSchedule).toBe(false);
    const s2 = new Scheduler(cfg);
    s2.addRequest(request("pen", 4, { repetitionPenalty: 1.2 }));
    const a = s2.schedule();
    expect(s2.needsTokensBeforeSchedule).toBe(true);
    s2.update(a, tokens(1, 5));
    expect(s2.needsTokensBeforeSchedule).toBe(false);
  });

  test("a request preempted with a pending token gets it, and may finish while waiting", () => {
    // 4 blocks of 4: two requests of 7 prompt tokens hold 2 blocks each; the next step needs a third.
    const sched = new Scheduler({ ...cfg, numBlocks: 4, maxModelLen: 16 });
    const [x, y] = [request("x", 7), request("y", 7)];
    sched.addRequest(x);
    sched.addRequest(y);
    const a = sched.schedule(); // both prefill and sample
    expect(a.scheduled).toHaveLength(2);
    const b = sched.schedule(); // x's position 7 fits its block; y's too: both at 8 tokens
    expect(b.scheduled.map((s) => s.req.id)).toEqual(["x", "y"]);
    sched.update(a, new Int32Array([5, 5]));
    const c = sched.schedule(); // position 8 needs a new block each: y is preempted for x
    expect(c.scheduled.map((s) => s.req.id)).toEqual(["x"]);
    expect([y.status, y.numPendingTokens]).toEqual(["preempted", 1]);
    const outB = sched.update(b, new Int32Array([6, 2])); // y's pending token is EOS
    expect(outB.map((o) => [o.req.id, o.finishReason])).toEqual([["x", null], ["y", "stop"]]);
    expect(y.isFinished).toBe(true);
    expect(sched.numWaiting).toBe(0);
    sched.update(c, tokens(1, 7));
    expect(x.outputTokenIds).toEqual([5, 6, 7]);
    expect(x.blockIds).toHaveLength(3);
  });

  test("a request preempted before the update of a step that filled its blocks finds them in the prefix cache", () => {
    const sched = new Scheduler({ ...cfg, numBlocks: 5, maxModelLen: 20, maxNumBatchedTokens: 8 });
    const [x, y] = [request("x", 3), request("y", 12)];
    sched.addRequest(x);
    sched.addRequest(y);
    const a = sched.schedule(); // x prefills (1 block), y's first chunk: positions 0-4 (2 blocks)
    const b = sched.schedule(); // x decodes, y's last chunk: positions 5-11 fill blocks 1 and 2
    expect(b.scheduled.map((s) => [s.req.id, chunkStart(s), s.end])).toEqual([["x", 3, 4], ["y", 5, 12]]);
    sched.update(a, new Int32Array([5, -1]));
    const c = sched.schedule(); // x takes the last free block; y needs one more: y is preempted
    expect(c.scheduled.map((s) => s.req.id)).toEqual(["x"]);
    expect(y.status).toBe("preempted");
    sched.update(b, new Int32Array([6, 7])); // y's pending token arrives while it waits
    expect(y.outputTokenIds).toEqual([7]);
    expect(sched.kv.getComputedBlocks(y).numTokens).toBe(12); // blocks 0-2, filled by steps a and b
  });
});
