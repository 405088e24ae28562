// Server-sent events for streamed responses: `data: {json}\n\n` per chunk, `data: [DONE]\n\n` at
// the end, as OpenAI and vLLM send them. A client that goes away aborts the generations: Hono
// reports it through onAbort (its writes swallow errors, so the loop also checks `aborted`).
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import type { ChoiceEvent, ChoiceSet } from "./choices.ts";
import { errorBody, toApiError } from "./errors.ts";

export interface StreamPlan {
  /** Chunks sent before any output (chat's role chunks). */
  head(): object[];
  /** Chunks for one batch of generation events. */
  render(batch: ChoiceEvent[]): object[];
  /** Chunks sent once every generation finished (the usage chunk). */
  tail(): object[];
}

const frame = (chunk: object | string): string => `data: ${typeof chunk === "string" ? chunk : JSON.stringify(chunk)}\n\n`;

/** `onEnd` runs once the last chunk is written (route-utils.ts restoreKeepAlive). */
export function streamChoices(c: Context, set: ChoiceSet, plan: StreamPlan, onEnd: () => void = () => {}): Response {
  return streamSSE(c, async (stream) => {
    stream.onAbort(() => set.abort());
    const send = async (chunks: (object | string)[]) => {
      if (chunks.length) await stream.write(chunks.map(frame).join(""));
    };
    try {
      await pump(set, plan, send, () => stream.aborted);
    } catch (e) {
      // Headers are gone already: the error travels as a chunk, as vLLM sends it.
      set.abort();
      await send([errorBody(toApiError(e)), "[DONE]"]);
    } finally {
      onEnd();
    }
  });
}

async function pump(set: ChoiceSet, plan: StreamPlan, send: (chunks: (object | string)[]) => Promise<void>, aborted: () => boolean): Promise<void> {
  await send(plan.head());
  while (!aborted()) {
    const batch = await set.next();
    if (batch.length === 0) break;
    const failed = batch.findIndex((ev) => ev.error !== null);
    if (failed >= 0) {
      await send(plan.render(batch.slice(0, failed)));
      throw batch[failed]!.error;
    }
    await send(plan.render(batch));
  }
  if (aborted()) set.abort();
  else await send([...plan.tail(), "[DONE]"]);
}
