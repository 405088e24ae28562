// Request bodies as vLLM's OpenAI server accepts them. Fields a client may send as null mean "use
// the default"; fields we do not know are dropped (OpenAI clients send extras). Cross-field rules
// live here too, so every 400 names the field at fault.
import { z } from "zod";
import { SAMPLING_LIMITS, samplingFieldShape } from "../serving/sampling-params.ts";

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);

/** The shared sampling fields plus what only the OpenAI API has (vLLM's extra parameters included). */
const samplingFields = {
  ...samplingFieldShape,
  model: z.string().nullish(),
  n: int(1, SAMPLING_LIMITS.n).nullish(),
  best_of: int(1).nullish(),
  add_special_tokens: z.boolean().nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({
    include_usage: z.boolean().nullish(),
    continuous_usage_stats: z.boolean().nullish(),
  }).nullish(),
  response_format: z.object({ type: z.string() }).loose().nullish(),
  prompt_logprobs: z.null().optional(),
  truncate_prompt_tokens: z.null().optional(),
  user: z.string().nullish(),
};

type Ctx = z.core.$RefinementCtx;
const fault = (ctx: Ctx, path: string, message: string) => ctx.addIssue({ code: "custom", path: [path], message });

function checkSampling(v: SamplingFields, ctx: Ctx): void {
  if (v.stream_options && !v.stream) fault(ctx, "stream_options", "stream_options can only be set when stream is true");
  if (v.best_of != null && v.best_of !== (v.n ?? 1)) fault(ctx, "best_of", "best_of other than n is not supported");
  if (v.response_format && v.response_format.type !== "text") {
    fault(ctx, "response_format", `response_format type '${v.response_format.type}' is not supported (only 'text')`);
  }
}

const tokenIds = z.array(int(0), { error: "must be a list of token ids (non-negative integers)" });
const prompt = z.union([
  z.string(),
  z.array(z.string()).min(1),
  tokenIds.min(1),
  z.array(tokenIds.min(1)).min(1),
], { error: "must be a string, a list of strings, a list of token ids, or a list of lists of token ids" });

export const CompletionRequestSchema = z.object({
  ...samplingFields,
  prompt,
  echo: z.boolean().nullish(),
  logprobs: int(0, 20).nullish(),
  suffix: z.string().nullish(),
}).superRefine((v, ctx) => {
  checkSampling(v, ctx);
  if (v.suffix) fault(ctx, "suffix", "suffix is not supported");
});
export type CompletionRequest = z.output<typeof CompletionRequestSchema>;

const textPart = z.object({ type: z.string(), text: z.string().optional() }).loose()
  .refine((p) => p.type === "text" && typeof p.text === "string", {
    error: "only content parts of type 'text' (with a string 'text') are supported",
  });

const message = z.object({
  role: z.string().min(1),
  content: z.union([z.string(), z.array(textPart)], { error: "must be a string or a list of content parts" }).nullish(),
}).loose();

export const ChatRequestSchema = z.object({
  ...samplingFields,
  messages: z.array(message).min(1),
  max_completion_tokens: int(1).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: int(0, 20).nullish(),
  add_generation_prompt: z.boolean().nullish(),
  tools: z.array(z.object({}).loose()).nullish(),
}).superRefine((v, ctx) => {
  checkSampling(v, ctx);
  if (v.top_logprobs != null && v.top_logprobs > 0 && !v.logprobs) fault(ctx, "top_logprobs", "top_logprobs requires logprobs to be true");
});
export type ChatRequest = z.output<typeof ChatRequestSchema>;
export type ChatMessageInput = ChatRequest["messages"][number];

/** The fields of either request that map onto sampling parameters. */
const SamplingFieldsSchema = z.object(samplingFields);
export type SamplingFields = z.output<typeof SamplingFieldsSchema>;

export const TokenizePromptSchema = z.object({
  model: z.string().nullish(),
  prompt: z.string(),
  add_special_tokens: z.boolean().nullish(),
  return_token_strs: z.boolean().nullish(),
});

export const TokenizeChatSchema = z.object({
  model: z.string().nullish(),
  messages: z.array(message).min(1),
  add_generation_prompt: z.boolean().nullish(),
  add_special_tokens: z.boolean().nullish(),
  return_token_strs: z.boolean().nullish(),
});

export const DetokenizeRequestSchema = z.object({ model: z.string().nullish(), tokens: tokenIds });
