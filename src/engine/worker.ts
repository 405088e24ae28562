// The engine Worker: owns the Engine and runs its step loop, so that a blocking device call
// never stalls the HTTP server on the main thread. Outputs go back once per step.
import { parseEngineConfig } from "../config.ts";
import { Engine } from "./engine.ts";
import type { FromWorker, ToWorker } from "./protocol.ts";

declare const self: Worker;
const post = (m: FromWorker) => self.postMessage(m);

let engine: Engine | null = null;
let looping = false;
let closing = false; // a shutdown came while the loop had a step in flight: the loop closes

/** Lets queued messages (new requests, aborts) in while a launched step runs on the device. */
const yieldToMessages = () => new Promise<void>((r) => setImmediate(r));

/**
 * Steps while there is work. The device runs the next step (with async scheduling, the next two)
 * while this thread applies and posts the last step's outputs and takes in new requests and
 * aborts, so the GPU does not wait for that host work.
 */
async function loop(e: Engine): Promise<void> {
  looping = true;
  try {
    e.launchSteps();
    while (e.hasUnfinished) { // nothing launched but unfinished requests: retry after the messages
      await yieldToMessages(); // adds and aborts arrive while the steps run
      if (closing) return;
      const outputs = e.finishStep();
      e.launchSteps(); // queue the next step before the host work below
      if (outputs.length) post({ type: "outputs", outputs, stats: e.stats() });
    }
    post({ type: "outputs", outputs: [], stats: e.stats() });
  } catch (err) {
    post({ type: "fatal", message: `engine step failed: ${(err as Error).message}` });
  } finally {
    looping = false;
    if (closing) close();
  }
}

/** Frees the engine (its context waits for the device first) and says so. */
function close(): void {
  try {
    engine?.dispose();
  } finally { // the main thread waits for this message, whatever dispose() met
    engine = null;
    closing = false;
    post({ type: "closed" });
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
    if (looping) closing = true;
    else close();
  }
}

self.onmessage = (ev: MessageEvent<ToWorker>) => handle(ev.data);
