// Steps every generating route shares: read and validate the body, check the model name, name
// the response, count usage.
import type { z } from "zod";
import type { ServingContext } from "../serving/context.ts";
import type { ChoiceResult } from "./choices.ts";
import { ApiError, fromZodError } from "./errors.ts";
import { readJsonBody } from "./body.ts";

export async function parseBody<S extends z.ZodType>(ctx: ServingContext, req: Request, schema: S): Promise<z.output<S>> {
  const body = await readJsonBody(req, ctx.maxBodyBytes);
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
