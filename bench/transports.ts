// How bench/serve.ts talks to a daemon: OpenAI completions over HTTP with SSE, or msgpack frames.
import type { BenchRequest, RequestTiming, Transport } from "./serve-lib.ts";

const failed = (error: string, promptTokens: number): RequestTiming =>
  ({ ok: false, error, ttft: 0, itl: [], e2e: 0, outputTokens: 0, promptTokens });

/** POST /v1/completions with stream: true, timing each SSE chunk that carries text. */
export function httpTransport(baseUrl: string, model: string | null): Transport {
  return async (r: BenchRequest, ignoreEos: boolean) => {
    const t0 = performance.now();
    const body = {
      ...(model ? { model } : {}), prompt: r.promptTokenIds, max_tokens: r.maxTokens, temperature: 0,
      ignore_eos: ignoreEos, stream: true, stream_options: { include_usage: true },
    };
    const res = await fetch(`${baseUrl}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    if (!res.ok || !res.body) return failed(`HTTP ${res.status}: ${await res.text()}`, r.promptTokenIds.length);
    const timing: RequestTiming = { ok: true, ttft: 0, itl: [], e2e: 0, outputTokens: 0, promptTokens: r.promptTokenIds.length };
    let last = 0, buf = "";
    const decoder = new TextDecoder();
    for await (const chunk of res.body) {
      buf += decoder.decode(chunk, { stream: true });
      let i: number;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, i).replace(/^data: /, "");
        buf = buf.slice(i + 2);
        if (event === "[DONE]") continue;
        const j = JSON.parse(event);
        if (j.usage) timing.outputTokens = j.usage.completion_tokens;
        if (!j.choices?.length) continue;
        const now = performance.now();
        if (last === 0) timing.ttft = (now - t0) / 1000;
        else timing.itl.push((now - last) / 1000);
        last = now;
      }
    }
    timing.e2e = (performance.now() - t0) / 1000;
    return timing;
  };
}

/** One msgpack connection shared by all requests (the protocol multiplexes by id). */
export async function msgpackTransport(target: string | number): Promise<{ send: Transport; close: () => Promise<void> }> {
  const { connect } = await import("../src/protocol/client.ts");
  const client = await connect(target);
  const send: Transport = async (r, ignoreEos) => {
    const t0 = performance.now();
    const timing: RequestTiming = { ok: true, ttft: 0, itl: [], e2e: 0, outputTokens: 0, promptTokens: r.promptTokenIds.length };
    let last = 0;
    try {
      const stream = client.generate({
        prompt_token_ids: r.promptTokenIds, detokenize: true,
        params: { max_tokens: r.maxTokens, temperature: 0, ignore_eos: ignoreEos },
      });
      for await (const f of stream) {
        if (!f.token_ids.length) continue;
        const now = performance.now();
        if (last === 0) timing.ttft = (now - t0) / 1000;
        else timing.itl.push((now - last) / 1000);
        last = now;
        timing.outputTokens += f.token_ids.length;
      }
    } catch (e) {
      return failed((e as Error).message, r.promptTokenIds.length);
    }
    timing.e2e = (performance.now() - t0) / 1000;
    return timing;
  };
  return { send, close: () => client.close() };
}
