// One error type for everything wrong with a model directory, so callers can tell a bad model
// apart from a bug and the user always learns which file (and which field or tensor) to fix.
import type { z } from "zod";

export class ModelDirError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = "ModelDirError";
  }
}

/** Dotted field path as it appears in the JSON file, e.g. "rope_scaling.factor" or "eos_token_id[1]". */
export function fieldPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out === "" ? String(key) : `.${String(key)}`;
  }
  return out;
}

function valueAt(json: unknown, path: readonly PropertyKey[]): unknown {
  let cur: unknown = json;
  for (const key of path) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[key];
  }
  return cur;
}

function describeIssue(issue: z.core.$ZodIssue, json: unknown, prefix: readonly PropertyKey[]): string {
  const path = [...prefix, ...issue.path];
  const name = fieldPath(path);
  const value = valueAt(json, issue.path);
  if (value === undefined && issue.code === "invalid_type") return `missing required field '${name}'`;
  return `field '${name}' is invalid: ${issue.message} (got ${JSON.stringify(value)})`;
}

/**
 * Turns zod issues into one ModelDirError naming the file and every offending field path.
 * `json` is the object that was validated; `prefix` is its own path inside the file, if nested.
 */
export function zodToModelDirError(
  file: string,
  error: z.ZodError,
  json: unknown,
  prefix: readonly PropertyKey[] = [],
): ModelDirError {
  const parts = error.issues.map((issue) => describeIssue(issue, json, prefix));
  return new ModelDirError(file, parts.join("; "));
}
