// The generations behind one HTTP request (prompts × n), indexed in order. The service reports
// through callbacks; this turns them into a queue the route reads at its own pace, either whole
// (collect) or batch by batch for SSE (next). A delta and the finish that follows it in the same
// engine step come out as one event, so a stream's last chunk carries both, as vLLM's does.
import type { TokenLogprobs } from "../engine/runner.ts";
import {
  ServiceError,
  type GenerateInput,
  type GenerationDelta,
  type GenerationFinal,
  type GenerationHandle,
  type GenerationService,
} from "../serving/generation.ts";

export interface ChoiceEvent {
  index: number;
  delta: GenerationDelta | null;
  final: GenerationFinal | null;
  error: ServiceError | null;
}

export interface ChoiceResult {
  text: string;
  tokenIds: number[];
  logprobs: TokenLogprobs[];
  final: GenerationFinal;
}

export class ChoiceSet {
  private readonly handles: GenerationHandle[] = [];
  private queue: ChoiceEvent[] = [];
  private wake: (() => void) | null = null;
  private open: number;

  private constructor(count: number) {
    this.open = count;
  }

  /** Starts every generation; if one is refused, the ones already started are aborted. */
  static start(service: GenerationService, inputs: GenerateInput[]): ChoiceSet {
    const set = new ChoiceSet(inputs.length);
    try {
      inputs.forEach((input, index) => set.handles.push(service.start(input, set.eventsFor(index))));
    } catch (e) {
      set.abort();
      throw e;
    }
    return set;
  }

  get finished(): boolean {
    return this.open === 0 && this.queue.length === 0;
  }

  /** Stops every generation still running (their KV blocks are freed). */
  abort(): void {
    for (const h of this.handles) h.abort();
  }

  /** Waits for at least one event; [] once every generation has finished and all was read. */
  async next(): Promise<ChoiceEvent[]> {
    while (this.queue.length === 0 && this.open > 0) await new Promise<void>((r) => (this.wake = r));
    const batch = this.queue;
    this.queue = [];
    return batch;
  }

  /** Reads everything; an abort of `signal` (the client left) aborts the generations. */
  async collect(signal?: AbortSignal): Promise<ChoiceResult[]> {
    const onAbort = () => this.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    if (signal?.aborted) this.abort();
    const acc = this.handles.map(() => ({ text: "", tokenIds: [] as number[], logprobs: [] as TokenLogprobs[], final: null as GenerationFinal | null }));
    try {
      for (let batch = await this.next(); batch.length; batch = await this.next()) {
        for (const ev of batch) {
          if (ev.error) throw ev.error;
          const a = acc[ev.index]!;
          if (ev.delta) {
            a.text += ev.delta.text;
            a.tokenIds.push(...ev.delta.tokenIds);
            if (ev.delta.logprobs) a.logprobs.push(...ev.delta.logprobs);
          }
          if (ev.final) a.final = ev.final;
        }
      }
    } catch (e) {
      this.abort();
      throw e;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
    return acc.map((a) => ({ ...a, final: a.final! }));
  }

  private push(ev: ChoiceEvent): void {
    const last = this.queue.at(-1);
    if (ev.final && !ev.delta && last && last.index === ev.index && last.delta && !last.final) last.final = ev.final;
    else this.queue.push(ev);
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  private eventsFor(index: number) {
    return {
      onDelta: (delta: GenerationDelta) => this.push({ index, delta, final: null, error: null }),
      onFinish: (final: GenerationFinal) => {
        this.open--;
        this.push({ index, delta: null, final, error: null });
      },
      onError: (error: ServiceError) => {
        this.open--;
        this.push({ index, delta: null, final: null, error });
      },
    };
  }
}
