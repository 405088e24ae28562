// The OpenAI-compatible HTTP API as a Hono app: routes, the API-key check on /v1/*, and JSON
// errors for everything (unknown routes and wrong methods included).
import { createHash, timingSafeEqual } from "node:crypto";
import { Hono, type Context } from "hono";
import type { ServingContext } from "../serving/context.ts";
import { createChatCompletion } from "./chat.ts";
import { createCompletion } from "./completions.ts";
import { ApiError, errorResponse, notFound, toApiError } from "./errors.ts";
import { addInfoRoutes } from "./info-routes.ts";
import { detokenize, tokenize } from "./tokenize.ts";

const digest = (s: string): Buffer => createHash("sha256").update(s).digest();

/** Compares digests, so the time taken says nothing about how much of the key matched. */
export function bearerMatches(header: string | undefined, key: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header?.trim() ?? "");
  return m !== null && timingSafeEqual(digest(m[1]!), digest(key));
}

type Handler = (c: Context, ctx: ServingContext) => Promise<Response>;

const POST_ROUTES: [string, Handler][] = [
  ["/v1/completions", createCompletion],
  ["/v1/chat/completions", createChatCompletion],
  ["/tokenize", tokenize],
  ["/detokenize", detokenize],
];
const GET_ROUTES = ["/v1/models", "/health", "/metrics", "/version"];

function methodNotAllowed(c: Context): Response | null {
  const path = c.req.path.replace(/\/+$/, "") || "/";
  const allow = POST_ROUTES.some(([p]) => p === path) ? "POST" : GET_ROUTES.includes(path) ? "GET, HEAD" : null;
  if (allow === null) return null;
  return errorResponse(new ApiError(405, "method_not_allowed", `${c.req.method} is not allowed on ${path}; use ${allow}`), { allow });
}

export function createApp(ctx: ServingContext): Hono {
  const app = new Hono();
  app.use("/v1/*", async (c, next) => {
    if (ctx.apiKey !== null && !bearerMatches(c.req.header("authorization"), ctx.apiKey)) {
      return errorResponse(new ApiError(401, "authentication_error", "missing or invalid API key: send it as 'Authorization: Bearer <key>'"), {
        "www-authenticate": "Bearer",
      });
    }
    await next();
  });
  for (const [path, handler] of POST_ROUTES) app.post(path, (c) => handler(c, ctx));
  addInfoRoutes(app, ctx);
  app.notFound((c) => methodNotAllowed(c) ?? errorResponse(notFound(`no route for ${c.req.method} ${c.req.path}`)));
  app.onError((err, c) => {
    const e = toApiError(err);
    if (e.status === 499) {
      ctx.metrics.clientGone();
      console.error(`vllmd http: client went away during ${c.req.method} ${c.req.path} (body unfinished)`);
    } else if (!(err instanceof ApiError) && e.status >= 500) {
      console.error("vllmd http: unhandled error:", err); // a bug: the stack says where
    } else if (e.status === 500) {
      console.error(`vllmd http: ${c.req.method} ${c.req.path} failed: ${e.message}`);
    }
    return errorResponse(e);
  });
  return app;
}
