// Drives an in-process Engine to completion: the step loop of the Worker without the Worker.
import { parseEngineConfig, type EngineConfigInput } from "../../src/config.ts";
import { Engine } from "../../src/engine/engine.ts";
import { defaultSamplingParams, type SamplingParams } from "../../src/engine/request.ts";

export interface RunRequest {
  id: string;
  prompt: number[];
  params?: Partial<SamplingParams>;
  /** Added once the engine has run this many steps (0: before the first). */
  atStep?: number;
}

export function makeEngine(cfg: EngineConfigInput): Engine {
  return Engine.create(parseEngineConfig({ device: "cpu", ...cfg }));
}

/** Runs every request to the end; returns each one's output token ids by id. */
export function runToCompletion(engine: Engine, reqs: RunRequest[], onStep?: (step: number) => void): Map<string, number[]> {
  return runDetailed(engine, reqs, onStep).tokens;
}

/** As runToCompletion, also giving each request's prefix-cache hit (tokens). */
export function runDetailed(engine: Engine, reqs: RunRequest[], onStep?: (step: number) => void) {
  const out = new Map<string, number[]>();
  const cached = new Map<string, number>();
  const pending = [...reqs].sort((a, b) => (a.atStep ?? 0) - (b.atStep ?? 0));
  let step = 0;
  while (pending.length || engine.hasUnfinished) {
    while (pending.length && (pending[0]!.atStep ?? 0) <= step) {
      const r = pending.shift()!;
      out.set(r.id, []);
      engine.addRequest(r.id, r.prompt, defaultSamplingParams({ temperature: 0, maxTokens: 24, ...r.params }));
    }
    for (const o of engine.step()) {
      out.get(o.id)!.push(...o.newTokenIds);
      cached.set(o.id, o.numCachedTokens);
    }
    onStep?.(step);
    step++;
    if (step > 100_000) throw new Error("engine did not finish");
  }
  return { tokens: out, cached };
}
