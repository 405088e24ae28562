// The work an input Worker does, and how its answer travels back: one function shared by the
// Worker and the main thread (which runs small jobs itself), so both give the same result.
import type { ChatMessage, ChatTemplateOptions, TextTokenizer } from "../tokenizer/tokenizer.ts";
import { ChatTemplateError } from "../tokenizer/tokenizer.ts";

export type InputJob =
  | { op: "json"; bytes: ArrayBuffer }
  | { op: "encode"; text: string; addSpecialTokens: boolean }
  | { op: "chat"; messages: ChatMessage[]; opts: ChatTemplateOptions; addSpecialTokens: boolean }
  | { op: "decode"; ids: number[]; skipSpecialTokens: boolean };

export type JobResult<J extends InputJob> = J extends { op: "json" } ? unknown : J extends { op: "decode" } ? string : number[];

/** Strict UTF-8 then JSON.parse: a bad byte or bad JSON throws (TypeError, SyntaxError). */
export const parseJsonBytes = (bytes: ArrayBuffer | Uint8Array): unknown =>
  JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));

export function runJob(tok: TextTokenizer | null, job: InputJob): unknown {
  if (job.op === "json") return parseJsonBytes(job.bytes);
  if (!tok) throw new Error("this model has no tokenizer");
  if (job.op === "encode") return tok.encode(job.text, job.addSpecialTokens);
  if (job.op === "chat") return tok.encodeChat(job.messages, job.opts, job.addSpecialTokens);
  return tok.decode(job.ids, job.skipSpecialTokens);
}

/** An error as it crosses the thread boundary; a chat template's keeps its reason. */
export interface JobError {
  name: string;
  message: string;
  reason?: ChatTemplateError["reason"];
}

export const toJobError = (e: unknown): JobError =>
  e instanceof ChatTemplateError ? { name: e.name, message: e.message, reason: e.reason }
    : { name: e instanceof Error ? e.name : "Error", message: e instanceof Error ? e.message : String(e) };

export const fromJobError = (e: JobError): Error =>
  e.reason !== undefined ? new ChatTemplateError(e.reason, e.message) : Object.assign(new Error(e.message), { name: e.name });

/** dir null: the model has no tokenizer (the Worker only parses JSON). */
export type ToInputWorker = { type: "init"; dir: string | null } | { type: "job"; id: number; job: InputJob };
export type FromInputWorker =
  | { type: "ready" }
  | { type: "failed"; message: string }
  | { type: "done"; id: number; result: unknown }
  | { type: "error"; id: number; error: JobError };
