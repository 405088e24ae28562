// The frames of the msgpack protocol (docs/protocol.md): zod schemas of what clients send, and
// the types of what the server answers. Sampling params keep the HTTP API's snake_case names so
// a client can move between the two without renaming anything.
import { z } from "zod";
import { SAMPLING_LIMITS, samplingFieldShape } from "../serving/sampling-params.ts";

export const PROTOCOL_VERSION = 1;

export type RequestId = string | number;
export type ErrorCode =
  | "malformed_frame" // not msgpack, not a map, or a map with non-string keys
  | "unknown_type"
  | "hello_required"
  | "unsupported_version"
  | "invalid_request" // a field missing or out of range, a prompt too long, ...
  | "duplicate_id"
  | "busy" // the server's queue is full (HTTP's 429), or it has too many connections
  | "unavailable" // the server is shutting down, or its engine failed (HTTP's 503)
  | "idle_timeout" // no request for --msgpack-idle-timeout seconds; sent just before the server closes the connection
  | "frame_too_large" // sent just before the server closes the connection
  | "internal";

export interface ErrorFrame {
  type: "error";
  id?: RequestId;
  code: ErrorCode;
  message: string;
}

export interface HelloReply {
  type: "hello";
  version: number;
  model: string;
  max_model_len: number;
  /** The largest frame the server accepts (payload bytes); a larger one closes the connection. */
  max_frame_bytes: number;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** Per generated token: its logprob and the top alternatives as [token id, logprob] pairs. */
export interface TokenLogprob {
  logprob: number;
  top: [number, number][];
}

export type FinishReason = "stop" | "length" | "abort";

export interface OutputFrame {
  type: "output";
  id: RequestId;
  token_ids: number[];
  text?: string;
  logprobs?: TokenLogprob[];
  finished: boolean;
  finish_reason?: FinishReason;
  stop_reason?: string | number | null;
  usage?: Usage;
}

export type ServerFrame = HelloReply | OutputFrame | ErrorFrame;

const MAX_ID_CHARS = 256;
const int = () => z.number().int();

export const requestIdSchema = z.union([z.string().min(1).max(MAX_ID_CHARS), int()], {
  error: `id must be a non-empty string (at most ${MAX_ID_CHARS} characters) or a safe integer`,
});

/** The HTTP API's sampling fields (same names, same bounds), plus logprobs as a count; one sample per frame. */
export const samplingParamsSchema = z.strictObject({
  ...samplingFieldShape,
  n: z.literal(1, { error: "n must be 1 over the msgpack protocol: send one generate frame per sample" }).nullish(),
  logprobs: int().min(0).max(SAMPLING_LIMITS.topLogprobs).nullish(),
});
export type SamplingParamsFrame = z.infer<typeof samplingParamsSchema>;

const helloSchema = z.strictObject({ type: z.literal("hello"), version: int() });

const generateSchema = z
  .strictObject({
    type: z.literal("generate"),
    id: requestIdSchema,
    prompt: z.string().nullish(),
    prompt_token_ids: z.array(int().min(0)).nullish(),
    params: samplingParamsSchema.nullish(),
    stream: z.boolean().nullish(),
    detokenize: z.boolean().nullish(),
  })
  .refine((f) => (f.prompt == null) !== (f.prompt_token_ids == null), { message: "give exactly one of prompt and prompt_token_ids", path: ["prompt"] });

const abortSchema = z.strictObject({ type: z.literal("abort"), id: requestIdSchema });

export type HelloFrame = z.infer<typeof helloSchema>;
export type GenerateFrame = z.infer<typeof generateSchema>;
export type AbortFrame = z.infer<typeof abortSchema>;
export type ClientFrame = HelloFrame | GenerateFrame | AbortFrame;

export type ParsedFrame = { ok: true; frame: ClientFrame } | { ok: false; error: ErrorFrame };

const SCHEMAS = { hello: helloSchema, generate: generateSchema, abort: abortSchema } as const;

/** Checks a decoded frame; errors carry the frame's id whenever it has a valid one, so the client can tell which request failed. */
export function parseClientFrame(value: unknown): ParsedFrame {
  if (value === null || typeof value !== "object" || Array.isArray(value) || value instanceof Uint8Array || value instanceof Date) {
    return fail("malformed_frame", `a frame must hold a msgpack map, got ${describe(value)}`);
  }
  const map = value as Record<string, unknown>;
  const idCheck = requestIdSchema.safeParse(map.id);
  const id = idCheck.success ? idCheck.data : undefined;
  if (typeof map.type !== "string") return fail("malformed_frame", "a frame needs a string field 'type'", id);
  if (!Object.hasOwn(SCHEMAS, map.type)) {
    return fail("unknown_type", `unknown frame type '${map.type.slice(0, 64)}' (expected hello, generate or abort)`, id);
  }
  const r = SCHEMAS[map.type as keyof typeof SCHEMAS].safeParse(map);
  if (!r.success) return fail("invalid_request", formatIssues(map.type, r.error.issues), id);
  return { ok: true, frame: r.data };
}

export function errorFrame(code: ErrorCode, message: string, id?: RequestId): ErrorFrame {
  return id === undefined ? { type: "error", code, message } : { type: "error", id, code, message };
}

function fail(code: ErrorCode, message: string, id?: RequestId): ParsedFrame {
  return { ok: false, error: errorFrame(code, message, id) };
}

function formatIssues(type: string, issues: z.core.$ZodIssue[]): string {
  const parts = issues.slice(0, 5).map((i) => {
    const where = i.path.length ? i.path.join(".") : type;
    return i.code === "unrecognized_keys" ? `${where}: unknown field(s) ${i.keys.map((k) => `'${k}'`).join(", ")}` : `${where}: ${i.message}`;
  });
  return `invalid ${type} frame: ${parts.join("; ")}`;
}

function describe(v: unknown): string {
  if (v === null) return "nil";
  if (Array.isArray(v)) return "an array";
  if (v instanceof Uint8Array) return "binary";
  if (v instanceof Date) return "a timestamp";
  return `a ${typeof v}`;
}
