// Reads a JSON request body with a size cap. The cap is checked twice: against Content-Length
// before reading (cheap rejection) and against the bytes actually read (chunked bodies, or a
// Content-Length that lies), so an oversized body never sits whole in memory.
import { ApiError, badRequest } from "./errors.ts";

const tooLarge = (limit: number): ApiError =>
  new ApiError(413, "invalid_request_error", `the request body is larger than the limit of ${limit} bytes`);

async function readCapped(req: Request, limit: number): Promise<Uint8Array> {
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) throw tooLarge(limit);
  if (req.body === null) return new Uint8Array(0);
  const reader = req.body.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge(limit);
    }
    parts.push(value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** The body parsed as a JSON object; 413 over `limit` bytes, 400 when it is not a JSON object. */
export async function readJsonBody(req: Request, limit: number): Promise<Record<string, unknown>> {
  const bytes = await readCapped(req, limit);
  if (bytes.byteLength === 0) throw badRequest("the request body is empty; expected a JSON object");
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw badRequest(`the request body is not valid JSON: ${(e as Error).message}`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw badRequest("the request body must be a JSON object");
  }
  return parsed as Record<string, unknown>;
}
