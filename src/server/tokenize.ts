// POST /tokenize and POST /detokenize, as vLLM serves them (outside /v1).
import type { Context } from "hono";
import type { ServingContext } from "../serving/context.ts";
import { encodeChat, requirePrompts } from "./chat.ts";
import { badRequest, fromZodError } from "./errors.ts";
import { checkModel, parseBody, readBody } from "./route-utils.ts";
import { DetokenizeRequestSchema, TokenizeChatSchema, TokenizePromptSchema } from "./schemas.ts";

/** {prompt} encodes text (special tokens by default); {messages} renders the chat template first. */
async function tokenIdsOf(c: Context, ctx: ServingContext): Promise<{ ids: number[]; strs: boolean }> {
  const body = await readBody(c, ctx);
  const enc = requirePrompts(ctx);
  if ("messages" in body) {
    const r = TokenizeChatSchema.safeParse(body);
    if (!r.success) throw fromZodError(r.error);
    checkModel(ctx, r.data.model);
    const ids = await encodeChat(enc, r.data.messages, {
      addGenerationPrompt: r.data.add_generation_prompt ?? true, addSpecialTokens: r.data.add_special_tokens ?? false,
    });
    return { ids, strs: r.data.return_token_strs ?? false };
  }
  const r = TokenizePromptSchema.safeParse(body);
  if (!r.success) throw fromZodError(r.error);
  checkModel(ctx, r.data.model);
  return { ids: await enc.encode(r.data.prompt, r.data.add_special_tokens ?? true), strs: r.data.return_token_strs ?? false };
}

export async function tokenize(c: Context, ctx: ServingContext): Promise<Response> {
  const { ids, strs } = await tokenIdsOf(c, ctx);
  const tok = requirePrompts(ctx).tokenizer;
  return c.json({
    count: ids.length, max_model_len: ctx.maxModelLen, tokens: ids,
    token_strs: strs ? ids.map((id) => tok.idToToken(id) ?? "") : null,
  });
}

export async function detokenize(c: Context, ctx: ServingContext): Promise<Response> {
  const req = await parseBody(c, ctx, DetokenizeRequestSchema);
  checkModel(ctx, req.model);
  const enc = requirePrompts(ctx);
  const unknown = req.tokens.find((id) => enc.tokenizer.idToToken(id) === undefined);
  if (unknown !== undefined) throw badRequest(`token id ${unknown} is not in the tokenizer's vocabulary`, "tokens");
  return c.json({ prompt: await enc.decode(req.tokens, false) });
}
