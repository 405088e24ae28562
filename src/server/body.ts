// Reads a JSON request body with a size cap and a deadline. The cap is checked twice: against
// Content-Length before reading (cheap rejection) and against the bytes actually read (chunked
// bodies, or a Content-Length that lies), so an oversized body never sits whole in memory; the
// deadline frees the request of a client that sends its body too slowly or stops half way.
import { parseJsonBytes } from "../serving/input-jobs.ts";
import { ApiError, badRequest } from "./errors.ts";

const tooLarge = (limit: number): ApiError =>
  new ApiError(413, "invalid_request_error", `the request body is larger than the limit of ${limit} bytes`);

const tooSlow = (ms: number): ApiError =>
  new ApiError(408, "request_timeout", `the request body did not arrive within ${ms / 1000} s`);

/** The client closed the connection before its body was complete: nobody is left to answer. */
export const clientGone = (): ApiError => new ApiError(499, "client_closed_request", "the client went away before sending its whole body");

export interface BodyLimits {
  maxBytes: number;
  timeoutMs: number;
  /** UTF-8 and JSON.parse, possibly off this thread; parseJsonBytes when absent. */
  parse?: (bytes: Uint8Array) => Promise<unknown>;
}

async function readCapped(req: Request, o: BodyLimits): Promise<Uint8Array> {
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > o.maxBytes) throw tooLarge(o.maxBytes);
  if (req.body === null) return new Uint8Array(0);
  const reader = req.body.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    if (o.timeoutMs > 0) timer = setTimeout(() => reject(tooSlow(o.timeoutMs)), o.timeoutMs); // 0: no deadline
  });
  try {
    for (;;) {
      const { done, value } = await Promise.race([reader.read(), deadline]).catch((e) => {
        throw e instanceof ApiError ? e : clientGone();
      });
      if (done) break;
      total += value.byteLength;
      if (total > o.maxBytes) throw tooLarge(o.maxBytes);
      parts.push(value);
    }
  } catch (e) {
    await reader.cancel().catch(() => {});
    throw e;
  } finally {
    clearTimeout(timer);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** The body parsed as a JSON object: 413 over maxBytes, 408 past the deadline, 400 when it is not a JSON object. */
export async function readJsonBody(req: Request, o: BodyLimits): Promise<Record<string, unknown>> {
  const bytes = await readCapped(req, o);
  if (bytes.byteLength === 0) throw badRequest("the request body is empty; expected a JSON object");
  let parsed: unknown;
  try {
    parsed = o.parse ? await o.parse(bytes) : parseJsonBytes(bytes);
  } catch (e) {
    // Bad bytes (TypeError) or bad JSON (SyntaxError) are the client's; anything else (an input Worker that died) is ours.
    const name = (e as Error).name;
    if (name !== "SyntaxError" && name !== "TypeError") throw e;
    throw badRequest(`the request body is not valid JSON: ${(e as Error).message}`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw badRequest("the request body must be a JSON object");
  }
  return parsed as Record<string, unknown>;
}
