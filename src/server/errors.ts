// Every failure an HTTP client sees, in the shape OpenAI clients parse:
// {"error": {"message", "type", "param", "code"}}, with code = the HTTP status (as vLLM sends it).
import { z } from "zod";
import { ServiceError } from "../serving/generation.ts";
import { ChatTemplateError } from "../tokenizer/tokenizer.ts";

/** The server's errors are the service's: one status/type/message/param shape for every front end. */
export { ServiceError as ApiError };

export const badRequest = (message: string, param: string | null = null): ServiceError =>
  new ServiceError(400, "invalid_request_error", message, param);

export const notFound = (message: string, param: string | null = null): ServiceError =>
  new ServiceError(404, "not_found_error", message, param);

export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: number };
}

export function errorBody(e: ServiceError): ErrorBody {
  return { error: { message: e.message, type: e.type, param: e.param, code: e.status } };
}

/** After a 408 or 413 the body is left unread on the connection, so it must close. */
const CLOSES_CONNECTION = new Set([408, 413]);

export function errorResponse(e: ServiceError, headers: Record<string, string> = {}): Response {
  const close = CLOSES_CONNECTION.has(e.status) ? { connection: "close" } : {};
  return Response.json(errorBody(e), { status: e.status, headers: { ...close, ...headers } });
}

/** A zod path as clients name fields: messages.0.content -> "messages[0].content". */
export function paramName(path: readonly PropertyKey[]): string | null {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out || null;
}

/** The first issue names the field; the others are listed too, so one reply shows every fault. */
export function fromZodError(err: z.ZodError): ServiceError {
  const first = err.issues[0];
  const param = first ? paramName(first.path) : null;
  const parts = err.issues.map((i) => {
    const name = paramName(i.path);
    return name ? `${name}: ${i.message}` : i.message;
  });
  return badRequest(parts.join("; ") || "invalid request", param);
}

/** Turns whatever a handler threw into the error the client gets. */
export function toApiError(e: unknown): ServiceError {
  if (e instanceof ServiceError) return e;
  if (e instanceof z.ZodError) return fromZodError(e);
  if (e instanceof ChatTemplateError) {
    const message = e.reason === "missing"
      ? "this model has no chat template (no chat_template.jinja and no chat_template in tokenizer_config.json), so /v1/chat/completions cannot format messages; use /v1/completions with a plain prompt"
      : `the chat template could not be applied: ${e.message}`;
    return badRequest(message, "messages");
  }
  const message = e instanceof Error ? e.message : String(e);
  return new ServiceError(500, "internal_server_error", `internal error: ${message}`);
}
