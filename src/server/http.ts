// Serves the Hono app on Bun.serve, with the connection limits of src/serving/limits.ts.
import type { ServingContext } from "../serving/context.ts";
import { keepAliveSeconds } from "../serving/limits.ts";
import { createApp } from "./app.ts";
import { ApiError, errorResponse } from "./errors.ts";

const isEventStream = (res: Response): boolean => res.headers.get("content-type")?.startsWith("text/event-stream") ?? false;

export function startHttpServer(ctx: ServingContext, o: { hostname: string; port: number }): ReturnType<typeof Bun.serve> {
  const app = createApp(ctx);
  const max = ctx.limits.maxConnections;
  const bodyIdleS = ctx.limits.bodyTimeoutS > 0 ? Math.min(255, Math.ceil(ctx.limits.bodyTimeoutS) + 5) : 0;
  const keepAliveS = keepAliveSeconds(ctx.limits);
  return Bun.serve({
    hostname: o.hostname,
    port: o.port,
    async fetch(req, server) {
      // pendingRequests counts this one: refuse at once and close, so a flood holds no descriptors.
      // A request without a body is answered at once and holds nothing, so /health stays open.
      if (req.body !== null && server.pendingRequests > max) {
        const e = new ApiError(503, "service_unavailable_error", `too many requests in progress (--max-connections ${max}); retry later`);
        return errorResponse(e, { connection: "close", "retry-after": "1" });
      }
      // While a body arrives, Bun's idle timer must not cut it before readJsonBody's deadline answers 408.
      if (req.body !== null && bodyIdleS > 0) server.timeout(req, bodyIdleS);
      const res = await app.fetch(req, server);
      // A request's server.timeout() stays on its connection once the response is out (Bun,
      // oven-sh/bun#33611): hand the keep-alive window back, or the idle connection is never
      // closed. A stream being written does so when it ends (sse.ts).
      if (req.body !== null && !isEventStream(res)) server.timeout(req, keepAliveS);
      return res;
    },
    // Idle keep-alive connections close after this; generating routes lift it once their body is
    // in (route-utils.ts readBody), so long prefills and slow streams are not cut.
    idleTimeout: keepAliveS,
    // Every size is ours to answer (readJsonBody, a JSON 413): Bun's own limit would send a bare 413.
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
  });
}
