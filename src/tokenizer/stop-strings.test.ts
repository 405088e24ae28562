import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { StopStringMatcher } from "./stop-strings.ts";

/** Feeds the deltas until stopped; returns everything emitted (plus flush if never stopped). */
function run(m: StopStringMatcher, deltas: string[]): { text: string; stopped: boolean; stop?: string } {
  let text = "";
  for (const d of deltas) {
    const r = m.push(d);
    text += r.emit;
    if (r.stopped) return { text, stopped: true, stop: r.stop };
  }
  return { text: text + m.flush(), stopped: false };
}

describe("StopStringMatcher", () => {
  test("match inside one delta: emit stops right before the stop string", () => {
    const m = new StopStringMatcher(["STOP"]);
    expect(m.push("hello STOP world")).toEqual({ emit: "hello ", stopped: true, stop: "STOP" });
    expect(m.stopped).toBe(true);
    expect(m.push("more")).toEqual({ emit: "", stopped: true, stop: "STOP" });
  });

  test("include flag keeps the stop string in the output", () => {
    const m = new StopStringMatcher(["STOP"], true);
    expect(m.push("hello STOP world")).toEqual({ emit: "hello STOP", stopped: true, stop: "STOP" });
  });

  test("match across deltas; the possible start is held back meanwhile", () => {
    const m = new StopStringMatcher(["</answer>"]);
    expect(m.push("42 </")).toEqual({ emit: "42 ", stopped: false });
    expect(m.push("ans")).toEqual({ emit: "", stopped: false });
    expect(m.push("wer> trailing")).toEqual({ emit: "", stopped: true, stop: "</answer>" });
  });

  test("match across deltas with the include flag emits the held part and the rest of the stop", () => {
    const m = new StopStringMatcher(["</answer>"], true);
    expect(run(m, ["42 </", "ans", "wer> trailing"])).toEqual({ text: "42 </answer>", stopped: true, stop: "</answer>" });
  });

  test("a held-back prefix is released once it turns out not to match", () => {
    const m = new StopStringMatcher(["STOP"]);
    expect(m.push("go ST")).toEqual({ emit: "go ", stopped: false });
    expect(m.push("ART now")).toEqual({ emit: "START now", stopped: false });
    expect(m.push("S")).toEqual({ emit: "", stopped: false });
    expect(m.flush()).toBe("S");
    expect(m.flush()).toBe("");
  });

  test("overlapping partial matches keep the longest candidate", () => {
    const m = new StopStringMatcher(["aab"]);
    expect(m.push("xaa")).toEqual({ emit: "x", stopped: false });
    expect(m.push("a")).toEqual({ emit: "a", stopped: false }); // "aaa": only the last "aa" can still start "aab"
    expect(m.push("b")).toEqual({ emit: "", stopped: true, stop: "aab" });
  });

  test("several stop strings: the earliest occurrence wins, then the longest", () => {
    expect(run(new StopStringMatcher(["world", "lo"]), ["hello world"])).toEqual({
      text: "hel",
      stopped: true,
      stop: "lo",
    });
    expect(run(new StopStringMatcher(["ab", "abc"]), ["xabcd"])).toEqual({ text: "x", stopped: true, stop: "abc" });
    expect(run(new StopStringMatcher(["\n\n", "END"]), ["line one\n", "line two E", "ND"])).toEqual({
      text: "line one\nline two ",
      stopped: true,
      stop: "END",
    });
  });

  test("one character at a time gives the same result as one big delta", () => {
    const text = "Q: what? A: 日本 🎉 fine<|end|>ignored";
    const whole = run(new StopStringMatcher(["<|end|>", "🎉 nope"]), [text]);
    const chars = run(new StopStringMatcher(["<|end|>", "🎉 nope"]), Array.from(text));
    expect(whole).toEqual({ text: "Q: what? A: 日本 🎉 fine", stopped: true, stop: "<|end|>" });
    expect(chars).toEqual(whole);
  });

  test("no stop strings: everything passes straight through", () => {
    const m = new StopStringMatcher([]);
    expect(m.push("anything")).toEqual({ emit: "anything", stopped: false });
    expect(m.flush()).toBe("");
  });

  test("no match: all text comes out by the end", () => {
    const text = "the end is not </near> at all <";
    expect(run(new StopStringMatcher(["</nearby>", "<<"]), Array.from(text))).toEqual({ text, stopped: false });
  });

  test("an empty stop string is rejected", () => {
    expect(() => new StopStringMatcher(["ok", ""])).toThrow(/non-empty/);
  });
});

/** The matcher as first written: an earliest-start search, then a naive search for the held-back tail. */
function naive(stops: string[], deltas: string[]): { text: string; stopped: boolean; stop?: string } {
  let pending = "", out = "";
  for (const d of deltas) {
    const text = pending + d;
    let best: { index: number; stop: string } | null = null;
    for (const st of stops) {
      const i = text.indexOf(st);
      if (i >= 0 && (!best || i < best.index || (i === best.index && st.length > best.stop.length))) best = { index: i, stop: st };
    }
    if (best) return { text: out + text.slice(0, best.index), stopped: true, stop: best.stop };
    let held = 0;
    for (let n = text.length; n > 0 && !held; n--) if (stops.some((st) => st.length > n && st.startsWith(text.slice(text.length - n)))) held = n;
    out += text.slice(0, text.length - held);
    pending = text.slice(text.length - held);
  }
  return { text: out + pending, stopped: false };
}

describe("StopStringMatcher against the naive search", () => {
  test("same text and stop for random stops and random splits of random text (a small alphabet, so partial matches overlap)", () => {
    const word = (max: number) => fc.string({ unit: fc.constantFrom("a", "b", "c"), minLength: 1, maxLength: max });
    fc.assert(fc.property(fc.uniqueArray(word(6), { minLength: 1, maxLength: 4 }), fc.array(fc.string({ unit: fc.constantFrom("a", "b", "c"), maxLength: 5 }), { maxLength: 12 }), (stops, deltas) => {
      expect(run(new StopStringMatcher(stops), deltas)).toEqual(naive(stops, deltas));
    }), { numRuns: 2000 });
  });

  test("64 long stop strings broken late at every push cost time linear in the text, not quadratic in the stops", () => {
    const stops = Array.from({ length: 64 }, (_, i) => "a".repeat(1000 + i) + "x");
    const m = new StopStringMatcher(stops);
    const t0 = performance.now();
    let emitted = 0;
    for (let i = 0; i < 200; i++) emitted += m.push("a".repeat(1100)).emit.length + m.push("b").emit.length;
    // ~65 ms here; the naive tail search compares every suffix against every stop (~550 ms)
    expect(performance.now() - t0).toBeLessThan(400);
    expect(emitted).toBe(200 * 1101);
  });
});
