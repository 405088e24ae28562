// Stop strings over streamed text. A stop string can arrive split over several deltas, so the
// tail of the text that could still become a stop string is held back until the next delta
// settles it; everything before that tail is safe to send at once. How long that tail is comes
// from one Knuth-Morris-Pratt automaton per stop string, advanced by each new character, so a
// push costs O(delta x stops) whatever the stop strings are (a naive suffix search is quadratic
// in their length, which a client could use to stall the server).

export interface StopPushResult {
  /** Text that can be sent now. */
  emit: string;
  /** True once a stop string matched; `emit` then ends right before it (or after, if included). */
  stopped: boolean;
  /** The stop string that matched, when stopped. */
  stop?: string;
}

export class StopStringMatcher {
  private readonly stops: readonly string[];
  /** Per stop string: its KMP failure function, and the automaton's state (longest suffix of the text that is a prefix of it). */
  private readonly failure: Int32Array[];
  private readonly state: Int32Array;
  /** Text received but not emitted: a possible beginning of a stop string. */
  private pending = "";
  private matched: string | null = null;

  constructor(
    stops: string[],
    private readonly includeStopStrInOutput = false,
  ) {
    for (const s of stops) {
      if (typeof s !== "string" || s.length === 0) throw new RangeError("stop strings must be non-empty strings");
    }
    this.stops = [...new Set(stops)];
    this.failure = this.stops.map(failureFunction);
    this.state = new Int32Array(this.stops.length);
  }

  get stopped(): boolean {
    return this.matched !== null;
  }

  push(delta: string): StopPushResult {
    if (this.matched !== null) return { emit: "", stopped: true, stop: this.matched };
    const text = this.pending + delta;
    const match = this.earliestMatch(text);
    if (match !== null) {
      this.matched = match.stop;
      this.pending = "";
      const end = this.includeStopStrInOutput ? match.index + match.stop.length : match.index;
      return { emit: text.slice(0, end), stopped: true, stop: match.stop };
    }
    const held = this.advance(delta);
    this.pending = text.slice(text.length - held);
    return { emit: text.slice(0, text.length - held), stopped: false };
  }

  /** At the end of generation (no stop matched): the held-back remainder. */
  flush(): string {
    const rest = this.pending;
    this.pending = "";
    return rest;
  }

  /** The first stop string occurrence; at equal positions the longer stop string wins. */
  private earliestMatch(text: string): { index: number; stop: string } | null {
    let best: { index: number; stop: string } | null = null;
    for (const stop of this.stops) {
      const index = text.indexOf(stop);
      if (index < 0) continue;
      if (best === null || index < best.index || (index === best.index && stop.length > best.stop.length)) {
        best = { index, stop };
      }
    }
    return best;
  }

  /** Feeds the delta to every automaton; returns the longest suffix of the text that is a proper prefix of some stop string. */
  private advance(delta: string): number {
    let held = 0;
    for (let k = 0; k < this.stops.length; k++) {
      const s = this.stops[k]!, f = this.failure[k]!;
      let q = this.state[k]!;
      for (let i = 0; i < delta.length; i++) {
        const c = delta.charCodeAt(i);
        while (q > 0 && (q === s.length || s.charCodeAt(q) !== c)) q = f[q - 1]!;
        if (s.charCodeAt(q) === c) q++;
      }
      this.state[k] = q;
      held = Math.max(held, q < s.length ? q : f[q - 1]!); // a full match was found by earliestMatch
    }
    return held;
  }
}

/** f[i]: the length of the longest proper prefix of s[0..i] that is also its suffix. */
function failureFunction(s: string): Int32Array {
  const f = new Int32Array(s.length);
  for (let i = 1, q = 0; i < s.length; i++) {
    while (q > 0 && s.charCodeAt(i) !== s.charCodeAt(q)) q = f[q - 1]!;
    if (s.charCodeAt(i) === s.charCodeAt(q)) q++;
    f[i] = q;
  }
  return f;
}
