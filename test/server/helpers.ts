// Shared pieces of the HTTP server tests: a served fixture model and checks on OpenAI errors.
import { expect } from "bun:test";
import OpenAI from "openai";
import { startServer, type RunningServer, type ServeOptions } from "../../src/serving/start.ts";

export const FIXTURE = "test/fixtures/llama";

export function serveFixture(over: Partial<ServeOptions> & { maxNumSeqs?: number; model?: string } = {}): Promise<RunningServer> {
  const { maxNumSeqs, model, ...rest } = over;
  return startServer({
    engine: { model: model ?? FIXTURE, device: "cpu", ...(maxNumSeqs ? { maxNumSeqs } : {}) },
    host: "127.0.0.1", port: 0, maxQueue: 64, ...rest,
  });
}

/** A real OpenAI client against the server; retries off so 429s reach the test. */
export const clientFor = (srv: RunningServer, apiKey = "unused") =>
  new OpenAI({ baseURL: `${srv.url}/v1`, apiKey, maxRetries: 0 });

/** vLLM's extra parameters ride along in the body; the client passes unknown keys through. */
export const extra = <T extends object>(body: T, more: Record<string, unknown>): T => ({ ...body, ...more });

/** Awaits a call that must fail with this status (and param, when given); returns the error. */
export async function expectApiError(p: Promise<unknown>, status: number, param?: string): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await p;
  } catch (e) {
    if (!(e instanceof OpenAI.APIError)) throw e;
    expect(e.status).toBe(status);
    expect((e.error as { code?: unknown }).code).toBe(status);
    if (param !== undefined) expect(e.param).toBe(param);
    return e;
  }
  throw new Error(`expected an error with status ${status}`);
}

/** A response body as JSON, typed loosely: the tests check its shape themselves. */
export const json = (r: Response): Promise<any> => r.json();

/** A counter from /metrics (the engine's view of what happened). */
export async function metric(srv: RunningServer, name: string): Promise<number> {
  const text = await (await fetch(`${srv.url}/metrics`)).text();
  const m = new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, "m").exec(text);
  if (!m) throw new Error(`metric ${name} not found`);
  return Number(m[1]);
}

/** Polls until the engine reports nothing running and no KV blocks held. */
export async function engineIdle(srv: RunningServer, timeoutMs = 3000): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const s = srv.ctx.client.stats;
    if (s.numRunning === 0 && s.numWaiting === 0 && s.kvCacheUsage === 0 && srv.ctx.service.numInFlight === 0) return true;
    await Bun.sleep(10);
  }
  return false;
}
