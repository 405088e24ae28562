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
  onProgress?: (done: number, total: number) => void;
}

export interface RunningServer {
  ctx: ServingContext;
  info: EngineInfo;
  http: ReturnType<typeof Bun.serve>;
  url: string; // http://host:port
  msgpack: MsgpackServers;
  close(): Promise<void>;
}

export async function startServer(o: ServeOptions): Promise<RunningServer> {
  const modelDir = o.engine.model;
  const tokenizer = existsSync(join(modelDir, "tokenizer.json")) ? TextTokenizer.fromDir(modelDir) : null;
  const client = await EngineClient.start(o.engine, o.onProgress);
  const info = client.info;
  const modelName = o.servedModelName ?? basename(modelDir.replace(/\/+$/, "")) ?? modelDir;
  const metrics = new ServingMetrics(modelName, () => client.stats);
  const service = new GenerationService(client, tokenizer, metrics, {
    maxModelLen: info.maxModelLen, maxNumSeqs: info.maxNumSeqs, maxQueue: o.maxQueue,
  });
  const ctx: ServingContext = {
    service, tokenizer, metrics, client, modelName, maxModelLen: info.maxModelLen,
    apiKey: o.apiKey ?? null, maxBodyBytes: o.maxBodyBytes ?? 32 * 2 ** 20, startedAt: Math.floor(Date.now() / 1000),
  };
  const http = startHttpServer(ctx, { hostname: o.host, port: o.port });
  const msgpack = await startMsgpackServers(ctx, { socketPath: o.socketPath ?? null, port: o.msgpackPort ?? null, hostname: o.host });
  return {
    ctx, info, http, msgpack, url: `http://${o.host.includes(":") ? `[${o.host}]` : o.host}:${http.port}`,
    async close() {
      http.stop(true);
      msgpack.close();
      await client.shutdown();
    },
  };
}
