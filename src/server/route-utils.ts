// Steps every generating route shares: read and validate the body, check the model name, name
// the response, count usage.
import type { Server } from "bun";
import type { Context } from "hono";
import type { z } from "zod";
import type { ServingContext } from "../serving/context.ts";
import type { ChoiceResult } from "./choices.ts";
import { ApiError, fromZodError } from "./errors.ts";
import { readJsonBody } from "./body.ts";
import { keepAliveSeconds } from "../serving/limits.ts";

/** The body within the size and time limits, and exempt from the keep-alive timeout from then on. */
export async function readBody(c: Context, ctx: ServingContext): Promise<Record<string, unknown>> {
  const body = await readJsonBody(c.req.raw, {
    maxBytes: ctx.maxBodyBytes, timeoutMs: ctx.limits.bodyTimeoutS * 1000, parse: (bytes) => ctx.inputs.parseJson(bytes),
  });
  // Bun.serve closes a connection that sends nothing for --keep-alive-timeout; a long prefill or a
  // slow stream must not be cut (a client that leaves is noticed through the request's signal).
  (c.env as Server<unknown> | undefined)?.timeout?.(c.req.raw, 0);
  return body;
}

/**
 * Gives a streamed response's connection the keep-alive window back when the stream ends (readBody
 * lifted it; Bun keeps a request's timeout on its connection: see http.ts).
 */
export function restoreKeepAlive(c: Context, ctx: ServingContext): () => void {
  return () => (c.env as Server<unknown> | undefined)?.timeout?.(c.req.raw, keepAliveSeconds(ctx.limits));
}

export async function parseBody<S extends z.ZodType>(c: Context, ctx: ServingContext, schema: S): Promise<z.output<S>> {
  const body = await readBody(c, ctx);
  const r = schema.safeParse(body);
  if (!r.success) throw fromZodError(r.error);
  return r.data;
}

/** An absent model means the served one, as in vLLM; any other name is unknown. */
export function checkModel(ctx: ServingContext, model: string | null | undefined): void {
  if (model == null || model === ctx.modelName) return;
  throw new ApiError(404, "not_found_error", `the model '${model}' does not exist; this server serves '${ctx.modelName}'`, "model");
}

export function responseId(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().replaceAll("-", "")}`;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usage(promptTokens: number, completionTokens: number): Usage {
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

export const sumCompletionTokens = (results: readonly ChoiceResult[]): number =>
  results.reduce((n, r) => n + r.final.completionTokens, 0);

export const unixNow = (): number => Math.floor(Date.now() / 1000);
