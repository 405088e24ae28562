// Stop conditions, aborts and input validation of the Scheduler.
import { describe, expect, test } from "bun:test";
import { defaultSamplingParams, Request, type SamplingParams } from "./request.ts";
import { Scheduler, type SchedulerConfig } from "./scheduler.ts";
import { range, rangeRequest, smallConfig } from "./scheduler-testing.ts";

const cfg = smallConfig;
const request = rangeRequest;

/** One schedule+update with every scheduled request sampling `token`. */
function step(sched: Scheduler, token = 1) {
  const out = sched.schedule();
  return sched.update(out, new Int32Array(out.scheduled.length).fill(token));
}

describe("stop conditions", () => {
  // [name, prompt length, params, eos ids, tokens the model samples, expected output, reason, maxModelLen]
  const rows: [string, number, Partial<SamplingParams>, number[], number[], number[], string, number][] = [
    ["eos stops and is kept", 4, { maxTokens: 9 }, [2], [5, 6, 2, 7], [5, 6, 2], "stop", 32],
    ["any of several eos ids", 4, { maxTokens: 9 }, [2, 3], [5, 3, 2], [5, 3], "stop", 32],
    ["ignoreEos runs to maxTokens", 4, { maxTokens: 4, ignoreEos: true }, [2], [5, 2, 2, 7], [5, 2, 2, 7], "length", 32],
    ["a stop token id stops", 4, { maxTokens: 9, stopTokenIds: [6] }, [], [5, 6, 7], [5, 6], "stop", 32],
    ["stop ids apply despite ignoreEos", 4, { maxTokens: 9, ignoreEos: true, stopTokenIds: [6] }, [2], [2, 6], [2, 6], "stop", 32],
    ["minTokens suppresses early stops", 4, { maxTokens: 9, minTokens: 3 }, [2], [2, 2, 2, 7], [2, 2, 2], "stop", 32],
    ["minTokens suppresses stop ids too", 4, { maxTokens: 9, minTokens: 2, stopTokenIds: [6] }, [], [6, 6], [6, 6], "stop", 32],
    ["maxTokens", 4, { maxTokens: 2 }, [2], [5, 6, 7], [5, 6], "length", 32],
    ["eos on the last allowed token is a stop", 4, { maxTokens: 2 }, [2], [5, 2], [5, 2], "stop", 32],
    ["maxModelLen", 6, { maxTokens: 9 }, [2], [5, 6, 7], [5, 6], "length", 8],
    ["prompt one short of maxModelLen gets one token", 7, { maxTokens: 9 }, [2], [5, 6], [5], "length", 8],
  ];
  test.each(rows)("%s", (_name, promptLen, params, eos, sampled, expected, reason, maxModelLen) => {
    const sched = new Scheduler({ ...cfg, maxModelLen });
    const req = request("r", promptLen, params, eos);
    sched.addRequest(req);
    const finishedAt: number[] = [];
    for (let i = 0; i < sampled.length && sched.hasUnfinished; i++) {
      const outs = step(sched, sampled[i]);
      expect(outs.map((o) => o.newTokenIds)).toEqual([[sampled[i]!]]);
      if (outs[0]!.finished) finishedAt.push(i);
    }
    expect(req.outputTokenIds).toEqual(expected);
    expect(req.finishReason).toBe(reason as "stop" | "length");
    expect(finishedAt).toEqual([expected.length - 1]);
    expect(sched.kv.numFreeBlocks).toBe(cfg.numBlocks);
  });

  test("a chunk that does not reach the end of the prompt yields no output", () => {
    const sched = new Scheduler({ ...cfg, maxNumBatchedTokens: 4 });
    const req = request("r", 6, { maxTokens: 2 });
    sched.addRequest(req);
    expect(step(sched, 9)).toEqual([]);
    expect(req.outputTokenIds).toEqual([]);
    expect(step(sched, 9).map((o) => o.newTokenIds)).toEqual([[9]]);
  });
});

describe("abortRequest", () => {
  function preemptedPair(): { sched: Scheduler; a: Request; b: Request } {
    const sched = new Scheduler({ ...cfg, blockSize: 2, numBlocks: 4, maxModelLen: 8 });
    const a = request("a", 3, { maxTokens: 4 });
    const b = new Request("b", range(500, 3), defaultSamplingParams({ maxTokens: 4 }), 0);
    sched.addRequest(a);
    sched.addRequest(b);
    for (let i = 0; i < 3; i++) step(sched);
    expect(b.status).toBe("preempted");
    return { sched, a, b };
  }

  const rows: [string, () => { sched: Scheduler; target: Request; waiting: number; running: number }][] = [
    [
      "a waiting request",
      () => {
        const sched = new Scheduler(cfg);
        const target = request("w", 4);
        sched.addRequest(target);
        return { sched, target, waiting: 0, running: 0 };
      },
    ],
    [
      "a running request",
      () => {
        const sched = new Scheduler(cfg);
        const target = request("r", 6, { maxTokens: 5 });
        sched.addRequest(target);
        sched.addRequest(request("other", 3, { maxTokens: 5 }));
        step(sched);
        return { sched, target, waiting: 0, running: 1 };
      },
    ],
    [
      "a preempted request",
      () => {
        const { sched, b } = preemptedPair();
        return { sched, target: b, waiting: 0, running: 1 };
      },
    ],
  ];
  test.each(rows)("%s", (_name, setup) => {
    const { sched, target, waiting, running } = setup();
    expect(sched.abortRequest(target.id)).toBe(target);
    expect([target.status, target.finishReason]).toEqual(["finished", "abort"]);
    expect(target.blockIds).toEqual([]);
    expect([sched.numWaiting, sched.numRunning]).toEqual([waiting, running]);
    expect(sched.abortRequest(target.id)).toBeUndefined();
    while (sched.hasUnfinished) step(sched);
    expect(sched.kv.numFreeBlocks).toBe(sched.kv.numBlocks);
  });

  test("an unknown id is ignored", () => {
    expect(new Scheduler(cfg).abortRequest("nope")).toBeUndefined();
  });

  test("a request aborted between schedule() and update() gets no output", () => {
    const sched = new Scheduler(cfg);
    const a = request("a", 3);
    const b = new Request("b", range(300, 3), defaultSamplingParams(), 0);
    sched.addRequest(a);
    sched.addRequest(b);
    const out = sched.schedule();
    sched.abortRequest("a");
    const outs = sched.update(out, new Int32Array([7, 8]));
    expect(outs.map((o) => [o.req.id, o.newTokenIds[0]])).toEqual([["b", 8]]);
    expect(a.outputTokenIds).toEqual([]);
  });
});

describe("step protocol", () => {
  test("an empty step needs no update()", () => {
    const sched = new Scheduler(cfg);
    expect(sched.schedule().scheduled).toEqual([]);
    sched.addRequest(request("r", 3));
    expect(sched.schedule().totalTokens).toBe(3);
  });
});

describe("bad input", () => {
  const rows: [string, () => void, RegExp][] = [
    ["an empty prompt", () => new Scheduler(cfg).addRequest(request("r", 0)), /empty prompt/],
    ["a prompt as long as maxModelLen", () => new Scheduler(cfg).addRequest(request("r", 32)), /no room/],
    ["a negative token id", () => new Scheduler(cfg).addRequest(new Request("r", [1, -1], defaultSamplingParams(), 0)), /token 1/],
    ["maxTokens 0", () => new Scheduler(cfg).addRequest(request("r", 3, { maxTokens: 0 })), /maxTokens/],
    ["negative minTokens", () => new Scheduler(cfg).addRequest(request("r", 3, { minTokens: -1 })), /minTokens/],
    [
      "a duplicate id",
      () => {
        const s = new Scheduler(cfg);
        s.addRequest(request("r", 3));
        s.addRequest(request("r", 3));
      },
      /already scheduled/,
    ],
    [
      "a request that already ran",
      () => {
        const r = request("r", 3);
        r.outputTokenIds.push(1);
        new Scheduler(cfg).addRequest(r);
      },
      /not fresh/,
    ],
    ["a pool smaller than one max-length sequence", () => new Scheduler({ ...cfg, numBlocks: 7 }), /cannot hold/],
    ["a zero token budget", () => new Scheduler({ ...cfg, maxNumBatchedTokens: 0 }), /maxNumBatchedTokens/],
    [
      "a third schedule() while two steps await update()",
      () => {
        const s = new Scheduler(cfg);
        s.addRequest(request("r", 3));
        s.schedule();
        s.schedule();
        s.schedule();
      },
      /2 steps already await update/,
    ],
    ["update() without schedule()", () => new Scheduler(cfg).update(new Scheduler(cfg).schedule(), new Int32Array(0)), /oldest scheduled/],
    [
      "update() of the newer of two steps first",
      () => {
        const s = new Scheduler(cfg);
        s.addRequest(request("r", 3));
        s.schedule();
        s.update(s.schedule(), new Int32Array(1));
      },
      /oldest scheduled/,
    ],
    [
      "too few sampled tokens",
      () => {
        const s = new Scheduler(cfg);
        s.addRequest(request("r", 3));
        s.update(s.schedule(), new Int32Array(0));
      },
      /1 requests scheduled, 0 tokens/,
    ],
  ];
  test.each(rows)("%s throws", (_name, fn, message) => {
    expect(fn).toThrow(message);
  });
});

describe("a row the sampler could not sample (token -1)", () => {
  test("fails that request alone with reason error and frees its blocks", () => {
    const s = new Scheduler(cfg);
    s.addRequest(request("a", 5));
    s.addRequest(request("b", 6));
    const out = s.schedule();
    const outs = s.update(out, new Int32Array([7, -1]));
    expect(outs.map((o) => [o.req.id, o.newTokenIds, o.finished, o.finishReason])).toEqual([["a", [7], false, null], ["b", [], true, "error"]]);
    expect(s.numRunning).toBe(1);
    expect(cfg.numBlocks - s.kv.numFreeBlocks).toBe(2); // a's 6 tokens in 4-token blocks
    expect(step(s, 8).map((o) => o.req.id)).toEqual(["a"]);
  });

  test("with two steps in flight, the failed request's entry in the later step is dropped", () => {
    const s = new Scheduler(cfg);
    s.addRequest(request("a", 5));
    s.addRequest(request("b", 5));
    const first = s.schedule(), second = s.schedule();
    expect(second.scheduled.map((x) => x.req.id)).toEqual(["a", "b"]);
    expect(s.update(first, new Int32Array([1, -1])).map((o) => o.finishReason)).toEqual([null, "error"]);
    expect(s.update(second, new Int32Array([2, 0])).map((o) => [o.req.id, o.newTokenIds])).toEqual([["a", [2]]]);
    expect(cfg.numBlocks - s.kv.numFreeBlocks).toBe(2);
  });
});
