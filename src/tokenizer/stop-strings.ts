// Stop strings over streamed text. A stop string can arrive split over several deltas, so the
// tail of the text that could still become a stop string is held back until the next delta
// settles it; everything before that tail is safe to send at once.

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
  private readonly longestStop: number;
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
    this.longestStop = this.stops.reduce((n, s) => Math.max(n, s.length), 0);
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
    const held = this.partialStopLength(text);
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

  /** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
  private partialStopLength(text: string): number {
    for (let n = Math.min(text.length, this.longestStop - 1); n > 0; n--) {
      const tail = text.slice(text.length - n);
      if (this.stops.some((s) => s.length > n && s.startsWith(tail))) return n;
    }
    return 0;
  }
}
