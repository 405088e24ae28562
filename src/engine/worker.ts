// The engine Worker: owns the Engine and runs its step loop, so that a blocking device call
// never stalls the HTTP server on the main thread. Outputs go back once per step.
import { parseEngineConfig } from "../config.ts";
import { Engine } from "./engine.ts";
import type { FromWorker, ToWorker } from "./protocol.ts";

declare const self: Worker;
const post = (m: FromWorker) => self.postMessage(m);

let engine: Engine | null = null;
let looping = false;

/** Lets queued messages (new requests, aborts) in between two steps. */
const yieldToMessages = () => new Promise<void>((r) => setImmediate(r));

async function loop(e: Engine): Promise<void> {
  looping = true;
  try {
    while (e.hasUnfinished) {
      const outputs = e.step();
      if (outputs.length) post({ type: "outputs", outputs, stats: e.stats() });
      await yieldToMessages();
    }
    post({ type: "outputs", outputs: [], stats: e.stats() });
  } catch (err) {
    post({ type: "fatal", message: `engine step failed: ${(err as Error).message}` });
  } finally {
    looping = false;
  }
}

function handle(m: ToWorker): void {
  if (m.type === "init") {
    try {
      const cfg = parseEngineConfig(m.config);
      let last = 0;
      engine = Engine.create(cfg, (done, total) => {
        const now = performance.now();
        if (now - last > 100 || done === total) post({ type: "progress", done, total });
        last = now;
      });
      post({ type: "ready", info: engine.info });
    } catch (err) {
      post({ type: "fatal", message: (err as Error).message });
    }
    return;
  }
  if (!engine) return post({ type: "fatal", message: `engine not initialised (got '${m.type}')` });
  if (m.type === "add") {
    try {
      engine.addRequest(m.id, m.promptTokenIds, m.params);
    } catch (err) {
      return post({ type: "rejected", id: m.id, message: (err as Error).message });
    }
    if (!looping) void loop(engine);
  } else if (m.type === "abort") {
    const out = engine.abort(m.id);
    if (out) post({ type: "outputs", outputs: [out], stats: engine.stats() });
  } else if (m.type === "shutdown") {
    engine.dispose();
    engine = null;
    post({ type: "closed" });
  }
}

self.onmessage = (ev: MessageEvent<ToWorker>) => handle(ev.data);
