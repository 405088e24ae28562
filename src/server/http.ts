// Serves the Hono app on Bun.serve.
import type { ServingContext } from "../serving/context.ts";
import { createApp } from "./app.ts";

export function startHttpServer(ctx: ServingContext, o: { hostname: string; port: number }): ReturnType<typeof Bun.serve> {
  const app = createApp(ctx);
  return Bun.serve({
    hostname: o.hostname,
    port: o.port,
    fetch: app.fetch,
    // Bun's default closes a connection after 10 s without bytes: long prefills and slow streams
    // must not be cut, and clients that leave are noticed through the request's signal anyway.
    idleTimeout: 0,
    // Bun answers oversized bodies itself with a bare 413; leave it room so ours (JSON) is sent.
    maxRequestBodySize: ctx.maxBodyBytes * 2 + 1024 * 1024,
  });
}
