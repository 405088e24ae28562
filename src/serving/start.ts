// Brings a daemon up: the engine Worker, the tokenizer, the generation service, then the HTTP
// server and (if asked) the msgpack socket servers. `vllmd serve` and the tests both use this.
import { existsSync } from "node:fs";
import { basename, join } from "node:path";
import type { EngineConfigInput } from "../config.ts";
import { EngineClient } from "../engine/client.ts";
import type { EngineInfo } from "../engine/engine.ts";
import { startMsgpackServers, type MsgpackServers } from "../protocol/server.ts";
import { startHttpServer } from "../server/http.ts";
import { TextTokenizer } from "../tokenizer/tokenizer.ts";
import type { ServingContext } from "./context.ts";
import { GenerationService } from "./generation.ts";
import { defaultPoolSize, InputPool } from "./input-pool.ts";
import { DEFAULT_LIMITS, type ConnectionLimits } from "./limits.ts";
import { PromptEncoder } from "./prompt-encoder.ts";
import { ServingMetrics } from "./metrics.ts";

export interface ServeOptions {
  engine: EngineConfigInput;
  host: string;
  port: number; // 0: any free port
  servedModelName?: string;
  apiKey?: string | null;
  maxQueue: number;
  maxBodyBytes?: number;
  socketPath?: string | null;
  msgpackPort?: number | null;
  limits?: Partial<ConnectionLimits>;
  /** Workers that parse large bodies and tokenize prompts (default: a quarter of the cores, 1 to 4). */
  inputWorkers?: number;
  onProgress?: (done: number, total: number) => void;
  /** The engine failed (it has been logged; every request in flight has its error): the caller should shut down. */
  onEngineDead?: (reason: string) => void;
}

export interface RunningServer {
  ctx: ServingContext;
  info: EngineInfo;
  http: ReturnType<typeof Bun.serve>;
  url: string; // http://host:port
  msgpack: MsgpackServers;
  /**
   * vLLM's --shutdown-timeout: stops accepting, lets generations in flight finish for up to
   * timeoutMs, then ends the rest with an error (an SSE error event and [DONE]; a msgpack error
   * frame), closes every connection once its last bytes are out, and frees the engine. Called
   * again with 0 while draining, it ends the wait at once.
   */
  shutdown(timeoutMs: number): Promise<void>;
  /** shutdown(0). */
  close(): Promise<void>;
}

/** How long answers to the requests a shutdown ended may take to reach their clients. */
const FLUSH_MS = 2000;

export async function startServer(o: ServeOptions): Promise<RunningServer> {
  const modelDir = o.engine.model;
  const tokenizer = existsSync(join(modelDir, "tokenizer.json")) ? TextTokenizer.fromDir(modelDir) : null;
  const pool = InputPool.start(tokenizer ? modelDir : null, o.inputWorkers ?? defaultPoolSize());
  let client: EngineClient;
  try {
    client = await EngineClient.start(o.engine, o.onProgress);
  } catch (e) {
    pool.close();
    throw e;
  }
  const info = client.info;
  const modelName = o.servedModelName ?? basename(modelDir.replace(/\/+$/, "")) ?? modelDir;
  const metrics = new ServingMetrics(modelName, () => client.stats);
  const service = new GenerationService(client, tokenizer, metrics, {
    maxModelLen: info.maxModelLen, maxNumSeqs: info.maxNumSeqs, maxQueue: o.maxQueue,
  });
  const ctx: ServingContext = {
    service, tokenizer, metrics, client, modelName, maxModelLen: info.maxModelLen,
    inputs: pool, prompts: tokenizer ? new PromptEncoder(tokenizer, pool, info.maxModelLen) : null,
    apiKey: o.apiKey ?? null, maxBodyBytes: o.maxBodyBytes ?? 32 * 2 ** 20, limits: { ...DEFAULT_LIMITS, ...o.limits },
    startedAt: Math.floor(Date.now() / 1000),
  };
  client.onDead((reason) => {
    console.error(`vllmd: the engine failed and cannot serve any more: ${reason}`);
    o.onEngineDead?.(reason);
  });
  const http = startHttpServer(ctx, { hostname: o.host, port: o.port });
  const msgpack = await startMsgpackServers(ctx, { socketPath: o.socketPath ?? null, port: o.msgpackPort ?? null, hostname: o.host });
  let closing: Promise<void> | null = null;
  const shutdown = (timeoutMs: number) => {
    if (closing !== null && timeoutMs === 0) ctx.service.stopWaiting(); // asked again, without patience
    return (closing ??= drainAndClose(ctx, http, msgpack, timeoutMs).finally(() => pool.close()));
  };
  return {
    ctx, info, http, msgpack, url: `http://${o.host.includes(":") ? `[${o.host}]` : o.host}:${http.port}`,
    shutdown, close: () => shutdown(0),
  };
}

async function drainAndClose(ctx: ServingContext, http: ReturnType<typeof Bun.serve>, msgpack: MsgpackServers, timeoutMs: number): Promise<void> {
  ctx.service.refuseNew("the server is shutting down");
  const httpDone = http.stop(false); // no new connections; resolves once every response has ended
  msgpack.stopAccepting();
  await ctx.service.whenIdle(timeoutMs);
  ctx.service.failAll(`the server shut down before this request finished (--shutdown-timeout ${timeoutMs / 1000} s)`);
  await Promise.race([httpDone, Bun.sleep(FLUSH_MS)]);
  await msgpack.close();
  await http.stop(true);
  await ctx.client.shutdown();
}
