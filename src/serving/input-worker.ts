// An input Worker: parses large JSON bodies, and (when the model has a tokenizer, loaded once)
// encodes prompts, renders chats and decodes, so that a large input never stalls the HTTP
// server's event loop.
import { TextTokenizer } from "../tokenizer/tokenizer.ts";
import { runJob, toJobError, type FromInputWorker, type ToInputWorker } from "./input-jobs.ts";

declare const self: Worker;
const post = (m: FromInputWorker) => self.postMessage(m);
let tok: TextTokenizer | null = null;

self.onmessage = (ev: MessageEvent<ToInputWorker>) => {
  const m = ev.data;
  if (m.type === "init") {
    try {
      tok = m.dir === null ? null : TextTokenizer.fromDir(m.dir);
      post({ type: "ready" });
    } catch (e) {
      post({ type: "failed", message: (e as Error).message });
    }
    return;
  }
  try {
    post({ type: "done", id: m.id, result: runJob(tok, m.job) });
  } catch (e) {
    post({ type: "error", id: m.id, error: toJobError(e) });
  }
};
