// What every front end (HTTP, msgpack) is given: the generation service and the model's facts.
import type { EngineClient } from "../engine/client.ts";
import type { TextTokenizer } from "../tokenizer/tokenizer.ts";
import type { GenerationService } from "./generation.ts";
import type { InputPool } from "./input-pool.ts";
import type { ConnectionLimits } from "./limits.ts";
import type { PromptEncoder } from "./prompt-encoder.ts";
import type { ServingMetrics } from "./metrics.ts";

export interface ServingContext {
  service: GenerationService;
  tokenizer: TextTokenizer | null;
  /** Workers for large inputs: JSON bodies, prompts. */
  inputs: InputPool;
  /** Prompts to token ids off the event loop (null without a tokenizer). */
  prompts: PromptEncoder | null;
  metrics: ServingMetrics;
  client: EngineClient;
  /** The name clients must send as `model` (--served-model-name, else the directory). */
  modelName: string;
  maxModelLen: number;
  /** Bearer token required on /v1/* when set (--api-key). */
  apiKey: string | null;
  /** Largest request body accepted, in bytes (HTTP 413 beyond; msgpack frames likewise). */
  maxBodyBytes: number;
  limits: ConnectionLimits;
  /** Unix seconds when the server started (OpenAI's `created` of the model). */
  startedAt: number;
}
