// POST /v1/chat/completions: the messages go through the model's chat template, the rendered
// text is encoded without extra special tokens (the template writes them), then n choices.
import type { Context } from "hono";
import type { ServingContext } from "../serving/context.ts";
import { choiceInputs, generationTemplate } from "../serving/sampling-params.ts";
import type { PromptEncoder } from "../serving/prompt-encoder.ts";
import type { ChatMessage } from "../tokenizer/tokenizer.ts";
import { ChoiceSet, type ChoiceEvent, type ChoiceResult } from "./choices.ts";
import { badRequest } from "./errors.ts";
import { chatLogprobs, tokenNamer, type TokenNamer } from "./logprobs.ts";
import { checkModel, parseBody, restoreKeepAlive, responseId, sumCompletionTokens, unixNow, usage } from "./route-utils.ts";
import { ChatRequestSchema, type ChatMessageInput, type ChatRequest } from "./schemas.ts";
import { streamChoices, type StreamPlan } from "./sse.ts";

/** Content given as text parts becomes one string, parts joined by newlines as vLLM does. */
export function toTemplateMessages(messages: readonly ChatMessageInput[]): ChatMessage[] {
  return messages.map((m) => ({
    ...m,
    content: Array.isArray(m.content) ? m.content.map((p) => p.text as string).join("\n") : (m.content ?? null),
  }));
}

export function requirePrompts(ctx: ServingContext): PromptEncoder {
  if (!ctx.prompts) throw badRequest("this model has no tokenizer, so chat messages cannot be encoded; use /v1/completions with token ids", "messages");
  return ctx.prompts;
}

/** The prompt token ids of a chat: template, then encode (special tokens only if asked), off the event loop. */
export function encodeChat(enc: PromptEncoder, messages: readonly ChatMessageInput[], o: {
  addGenerationPrompt: boolean; addSpecialTokens: boolean; tools?: object[] | null;
}): Promise<number[]> {
  return enc.encodeChat(toTemplateMessages(messages), {
    addGenerationPrompt: o.addGenerationPrompt, ...(o.tools ? { tools: o.tools } : {}),
  }, o.addSpecialTokens);
}

interface Plan {
  ctx: ServingContext;
  req: ChatRequest;
  promptTokens: number;
  n: number;
  id: string;
  created: number;
  name: TokenNamer;
}

export async function createChatCompletion(c: Context, ctx: ServingContext): Promise<Response> {
  const req = await parseBody(c, ctx, ChatRequestSchema);
  checkModel(ctx, req.model);
  const enc = requirePrompts(ctx);
  const template = generationTemplate(req, {
    maxTokens: req.max_completion_tokens ?? req.max_tokens ?? null,
    logprobs: req.logprobs ? (req.top_logprobs ?? 0) : -1,
    detokenize: true, vocabSize: ctx.client.info.vocabSize,
  });
  const n = req.n ?? 1;
  ctx.service.checkCapacity(n);
  const ids = await encodeChat(enc, req.messages, {
    addGenerationPrompt: req.add_generation_prompt ?? true, addSpecialTokens: req.add_special_tokens ?? false, tools: req.tools,
  });
  const set = ChoiceSet.start(ctx.service, choiceInputs(ids, template, n));
  const plan: Plan = { ctx, req, promptTokens: ids.length, n, id: responseId("chatcmpl"), created: unixNow(), name: tokenNamer(enc.tokenizer) };
  if (req.stream) return streamChoices(c, set, streamPlan(plan), restoreKeepAlive(c, ctx));
  const results = await set.collect(c.req.raw.signal);
  return c.json(chatBody(plan, results));
}

const logprobsOf = (plan: Plan, ids: readonly number[], lps: ChoiceResult["logprobs"]) =>
  plan.req.logprobs ? { content: chatLogprobs(ids, lps, plan.name, plan.req.top_logprobs ?? 0) } : null;

function chatBody(plan: Plan, results: ChoiceResult[]) {
  const choices = results.map((r, index) => ({
    index,
    message: { role: "assistant", content: r.text },
    logprobs: logprobsOf(plan, r.tokenIds, r.logprobs),
    finish_reason: r.final.finishReason,
    stop_reason: r.final.stopReason,
  }));
  return {
    id: plan.id, object: "chat.completion", created: plan.created, model: plan.ctx.modelName,
    choices, usage: usage(plan.promptTokens, sumCompletionTokens(results)), prompt_logprobs: null,
  };
}

function streamPlan(plan: Plan): StreamPlan {
  const completion = new Array<number>(plan.n).fill(0);
  const opts = plan.req.stream_options;
  const currentUsage = () => usage(plan.promptTokens, completion.reduce((a, b) => a + b, 0));
  const chunk = (choices: object[], u: object | null) => ({
    id: plan.id, object: "chat.completion.chunk", created: plan.created, model: plan.ctx.modelName, choices,
    ...(opts?.include_usage || opts?.continuous_usage_stats ? { usage: u } : {}),
  });
  const perUsage = () => (opts?.continuous_usage_stats ? currentUsage() : null);
  const choiceOf = (ev: ChoiceEvent) => {
    const ids = ev.delta?.tokenIds ?? [];
    const text = ev.delta?.text ?? "";
    return {
      index: ev.index,
      delta: text || !ev.final ? { content: text } : {},
      logprobs: logprobsOf(plan, ids, ev.delta?.logprobs ?? []),
      finish_reason: ev.final?.finishReason ?? null,
      stop_reason: ev.final?.stopReason ?? null,
    };
  };
  // A token that completes no character yet gives an empty delta: nothing to send unless
  // the client wants its logprobs or it carries the finish.
  const count = (ev: ChoiceEvent) => {
    if (ev.final) completion[ev.index] = ev.final.completionTokens;
    else completion[ev.index]! += ev.delta?.tokenIds.length ?? 0;
  };
  const worthSending = (ev: ChoiceEvent) => Boolean(ev.final || ev.delta?.text || plan.req.logprobs);
  return {
    head: () => Array.from({ length: plan.n }, (_, index) =>
      chunk([{ index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }], perUsage())),
    render: (batch) => {
      batch.forEach(count);
      return batch.filter(worthSending).map((ev) => chunk([choiceOf(ev)], perUsage()));
    },
    tail: () => (opts?.include_usage ? [chunk([], currentUsage())] : []),
  };
}
