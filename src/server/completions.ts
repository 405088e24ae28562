// POST /v1/completions: one or several prompts (text or token ids), n choices each, indexed
// prompt by prompt; echo prepends the prompt; logprobs in the legacy completions format.
import type { Context } from "hono";
import type { ServingContext } from "../serving/context.ts";
import { checkTokenIds, choiceInputs, generationTemplate } from "../serving/sampling-params.ts";
import { ChoiceSet, type ChoiceEvent, type ChoiceResult } from "./choices.ts";
import { badRequest } from "./errors.ts";
import { completionLogprobs, textLength, tokenNamer, type TokenNamer } from "./logprobs.ts";
import { checkModel, parseBody, restoreKeepAlive, responseId, sumCompletionTokens, unixNow, usage } from "./route-utils.ts";
import { CompletionRequestSchema, type CompletionRequest } from "./schemas.ts";
import { streamChoices, type StreamPlan } from "./sse.ts";

interface Prompt {
  ids: number[];
  /** What echo prepends: the text as sent, or the token ids decoded. */
  echo: string;
}

/** Every shape of `prompt` as a list of token-id prompts (text tokenized off the event loop). */
function resolvePrompts(ctx: ServingContext, req: CompletionRequest): Promise<Prompt[]> {
  const p = req.prompt;
  const list: (string | number[])[] = typeof p === "string" ? [p] : typeof p[0] === "number" ? [p as number[]] : (p as (string | number[])[]);
  const enc = ctx.prompts;
  const skip = req.skip_special_tokens ?? true;
  // Every prompt is checked before any is tokenized, so that a bad last one costs no work.
  const jobs = list.map((item, i) => {
    const param = list.length > 1 ? `prompt[${i}]` : "prompt";
    if (typeof item === "string") {
      if (!enc) throw badRequest("this model has no tokenizer; send the prompt as token ids", param);
      if (item === "") throw badRequest("the prompt is empty", param);
      enc.checkPromptSize(item.length, param);
      return () => enc.encode(item, req.add_special_tokens ?? true, param).then((ids) => ({ ids, echo: item }));
    }
    checkTokenIds(item, ctx.client.info.vocabSize, param);
    return async () => ({ ids: item, echo: req.echo && enc ? await enc.decode(item, skip) : "" });
  });
  return Promise.all(jobs.map((job) => job()));
}

interface Plan {
  ctx: ServingContext;
  req: CompletionRequest;
  prompts: Prompt[];
  n: number;
  id: string;
  created: number;
  name: TokenNamer;
}

export async function createCompletion(c: Context, ctx: ServingContext): Promise<Response> {
  const req = await parseBody(c, ctx, CompletionRequestSchema);
  checkModel(ctx, req.model);
  if (req.echo && req.logprobs != null) throw badRequest("echo together with logprobs needs prompt logprobs, which this server does not compute", "echo");
  const n = req.n ?? 1;
  ctx.service.checkCapacity(promptCount(req) * n);
  const prompts = await resolvePrompts(ctx, req);
  // vLLM's default is 16 tokens; an explicit null means "as many as fit".
  const maxTokens = req.max_tokens === undefined ? 16 : req.max_tokens;
  const template = generationTemplate(req, {
    maxTokens, logprobs: req.logprobs ?? -1, detokenize: ctx.tokenizer !== null, vocabSize: ctx.client.info.vocabSize,
  });
  const set = ChoiceSet.start(ctx.service, prompts.flatMap((p) => choiceInputs(p.ids, template, n)));
  const plan: Plan = { ctx, req, prompts, n, id: responseId("cmpl"), created: unixNow(), name: tokenNamer(ctx.tokenizer) };
  if (req.stream) return streamChoices(c, set, streamPlan(plan), restoreKeepAlive(c, ctx));
  const results = await set.collect(c.req.raw.signal);
  return c.json(completionBody(plan, results));
}

const promptCount = (req: CompletionRequest): number =>
  typeof req.prompt === "string" || typeof req.prompt[0] === "number" ? 1 : req.prompt.length;

const promptOf = (plan: Plan, index: number): Prompt => plan.prompts[Math.floor(index / plan.n)]!;
const promptTokens = (plan: Plan): number => plan.prompts.reduce((s, p) => s + p.ids.length, 0);

function completionBody(plan: Plan, results: ChoiceResult[]) {
  const choices = results.map((r, index) => {
    const echo = plan.req.echo ? promptOf(plan, index).echo : "";
    return {
      index,
      text: echo + r.text,
      logprobs: plan.req.logprobs == null ? null : completionLogprobs(r.tokenIds, r.logprobs, plan.name, textLength(echo)),
      finish_reason: r.final.finishReason,
      stop_reason: r.final.stopReason,
      prompt_logprobs: null,
    };
  });
  return {
    id: plan.id, object: "text_completion", created: plan.created, model: plan.ctx.modelName,
    choices, usage: usage(promptTokens(plan), sumCompletionTokens(results)),
  };
}

function streamPlan(plan: Plan): StreamPlan {
  const total = plan.prompts.length * plan.n;
  const tokenChars = new Array<number>(total).fill(0);
  const echoed = new Array<boolean>(total).fill(!plan.req.echo);
  const completion = new Array<number>(total).fill(0);
  const opts = plan.req.stream_options;
  const chunk = (choices: object[], u: object | null) => ({
    id: plan.id, object: "text_completion", created: plan.created, model: plan.ctx.modelName, choices,
    ...(opts?.include_usage || opts?.continuous_usage_stats ? { usage: u } : {}),
  });
  const currentUsage = () => usage(promptTokens(plan), completion.reduce((a, b) => a + b, 0));
  const choiceOf = (ev: ChoiceEvent) => {
    const i = ev.index;
    const echo = echoed[i] ? "" : promptOf(plan, i).echo;
    echoed[i] = true;
    const ids = ev.delta?.tokenIds ?? [];
    // Offsets add up token texts as the non-streamed response does, so both give the same ones.
    const logprobs = plan.req.logprobs == null ? null
      : completionLogprobs(ids, ev.delta?.logprobs ?? [], plan.name, tokenChars[i]! + textLength(echo));
    tokenChars[i]! += textLength(echo) + (logprobs?.tokens.reduce((n, t) => n + textLength(t), 0) ?? 0);
    const text = echo + (ev.delta?.text ?? "");
    return { index: i, text, logprobs, finish_reason: ev.final?.finishReason ?? null, stop_reason: ev.final?.stopReason ?? null };
  };
  const count = (ev: ChoiceEvent) => {
    if (ev.final) completion[ev.index] = ev.final.completionTokens;
    else completion[ev.index]! += ev.delta?.tokenIds.length ?? 0;
  };
  // A token that completes no character yet has no text to send, unless its logprobs are wanted.
  const worthSending = (ev: ChoiceEvent) =>
    Boolean(ev.final || ev.delta?.text || !echoed[ev.index] || plan.req.logprobs != null);
  return {
    head: () => [],
    render: (batch) => {
      batch.forEach(count);
      return batch.filter(worthSending).map((ev) => chunk([choiceOf(ev)], opts?.continuous_usage_stats ? currentUsage() : null));
    },
    tail: () => (opts?.include_usage ? [chunk([], currentUsage())] : []),
  };
}
