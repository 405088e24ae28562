// The read-only routes: the served model, liveness, Prometheus metrics, the version.
import type { Hono } from "hono";
import type { ServingContext } from "../serving/context.ts";
import pkg from "../../package.json" with { type: "json" };
import { errorResponse, toApiError } from "./errors.ts";

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export function modelList(ctx: ServingContext) {
  return {
    object: "list",
    data: [{
      id: ctx.modelName, object: "model", created: ctx.startedAt, owned_by: "vllmd",
      root: ctx.client.info.model, parent: null, max_model_len: ctx.maxModelLen,
    }],
  };
}

export function addInfoRoutes(app: Hono, ctx: ServingContext): void {
  app.get("/v1/models", (c) => c.json(modelList(ctx)));
  // 503 once the engine failed or a shutdown began, so that a load balancer stops sending here.
  app.get("/health", () => {
    try {
      ctx.service.checkAccepting();
      return new Response(null, { status: 200 });
    } catch (e) {
      return errorResponse(toApiError(e));
    }
  });
  app.get("/metrics", () => new Response(ctx.metrics.render(), { headers: { "content-type": PROMETHEUS_CONTENT_TYPE } }));
  app.get("/version", (c) => c.json({ version: pkg.version }));
}
