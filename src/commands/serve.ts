// `vllmd serve [MODEL_DIR]`: the OpenAI-compatible HTTP server, and the msgpack socket protocol
// when --socket or --msgpack-port is given. Shows a progress bar while weights load, then a summary.
import { parseArgs } from "node:util";
import type { EngineInfo } from "../engine/engine.ts";
import { DEFAULT_MODEL_NAME } from "../model/default-model.ts";
import { startServer, type RunningServer } from "../serving/start.ts";
import { maxConnectionsFor, openFileLimit, type ConnectionLimits } from "../serving/limits.ts";
import { engineConfigFrom, engineOptions, numArg, optNumArg, UsageError } from "./args.ts";

export const SERVE_USAGE = `  vllmd serve [MODEL_DIR] [--host 127.0.0.1] [--port 8000] [--served-model-name NAME] [--api-key KEY]
    [--max-queue N (256)] [--socket PATH] [--msgpack-port N] [--shutdown-timeout S (0)]
    [--max-connections N (2048, less if the open-file limit is low)] [--keep-alive-timeout S (5)] [--body-timeout S (30)] [--msgpack-idle-timeout S (300)]
    [--input-workers N (a quarter of the cores, 1 to 4)]`;

const LIMIT_FLAGS = {
  "max-connections": "maxConnections", "keep-alive-timeout": "keepAliveTimeoutS",
  "body-timeout": "bodyTimeoutS", "msgpack-idle-timeout": "msgpackIdleTimeoutS",
} as const;

function positiveInt(v: string | undefined, flag: string): number | undefined {
  const n = optNumArg(v, flag);
  if (n !== undefined && (!Number.isInteger(n) || n < 1)) throw new UsageError(`--${flag} must be a positive integer, got ${n}`);
  return n;
}

/** The longest a timer can wait (setTimeout's 2^31 - 1 ms), and Bun's idle limit for HTTP (255 s, the body's 408 needs 5 of them). */
const MAX_SECONDS: Record<string, number> = {
  "keep-alive-timeout": 255, "body-timeout": 250, "msgpack-idle-timeout": 2_000_000, "shutdown-timeout": 2_000_000,
};

function seconds(v: string | undefined, flag: string): number | undefined {
  const n = optNumArg(v, flag);
  if (n !== undefined && (n < 0 || n > MAX_SECONDS[flag]!)) throw new UsageError(`--${flag} must be between 0 and ${MAX_SECONDS[flag]} seconds, got ${n}`);
  return n;
}

function limitsFrom(a: Record<string, string | boolean | undefined>): Partial<ConnectionLimits> {
  const out: Partial<ConnectionLimits> = {};
  const fds = openFileLimit();
  for (const [flag, key] of Object.entries(LIMIT_FLAGS)) {
    const raw = a[flag] as string | undefined;
    if (raw === undefined) continue;
    if (key !== "maxConnections") {
      out[key] = seconds(raw, flag);
      continue;
    }
    out[key] = positiveInt(raw, flag)!;
    if (out[key]! > maxConnectionsFor(fds)) {
      console.error(`vllmd: warning: --max-connections ${out[key]} for HTTP and msgpack each may exhaust the open-file limit (${fds}); raise \`ulimit -n\` or lower it to ${maxConnectionsFor(fds)}`);
    }
  }
  return out;
}

function progressBar(): (done: number, total: number) => void {
  const tty = process.stderr.isTTY;
  let lastPct = -1;
  return (done, total) => {
    const pct = total ? Math.floor((100 * done) / total) : 100;
    if (pct === lastPct || (!tty && pct !== 100)) return;
    lastPct = pct;
    const width = 30, filled = Math.round((width * pct) / 100);
    const bar = `loading weights [${"#".repeat(filled)}${".".repeat(width - filled)}] ${pct}% ${(done / 2 ** 20).toFixed(1)}/${(total / 2 ** 20).toFixed(1)} MiB`;
    process.stderr.write(tty ? `\r${bar}${pct === 100 ? "\n" : ""}` : `${bar}\n`);
  };
}

function summary(srv: RunningServer, info: EngineInfo, seconds: number, endpoints: string[]): string {
  const tokens = info.numBlocks * info.blockSize;
  return [
    `model       ${info.model} (${info.architecture}, ${info.dtype}${info.quantization ? `, linear layers in ${info.quantization}${info.w8a8 ? " (W8A8: activations quantized per token)" : ""}` : ""}) served as '${srv.ctx.modelName}'`,
    `device      ${info.device}`,
    `KV cache    ${info.numBlocks} blocks of ${info.blockSize} tokens = ${tokens} tokens in ${info.kvCacheDtype}; ` +
      `${(tokens / info.maxModelLen).toFixed(1)} full-length (${info.maxModelLen}-token) requests fit`,
    `batching    max ${info.maxNumSeqs} sequences, ${info.maxNumBatchedTokens} tokens per step; ` +
      (info.numGraphs > 0 ? `${info.numGraphs} decode batch sizes as graphs` : "no graphs (eager)") +
      (info.asyncScheduling ? "; async scheduling" : ""),
    ...endpoints,
    `ready in    ${seconds.toFixed(2)} s`,
  ].join("\n");
}

export async function cmdServe(argv: string[], defaultModel: () => string): Promise<void> {
  const t0 = performance.now();
  const { values: a, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...engineOptions, host: { type: "string" }, port: { type: "string" }, "served-model-name": { type: "string" },
      "api-key": { type: "string" }, "max-queue": { type: "string" }, socket: { type: "string" }, "msgpack-port": { type: "string" },
      "shutdown-timeout": { type: "string" }, "input-workers": { type: "string" }, ...Object.fromEntries(Object.keys(LIMIT_FLAGS).map((k) => [k, { type: "string" as const }])),
    },
    strict: true,
  });
  if (positionals.length > 1) throw new UsageError(`serve takes one MODEL_DIR, got ${positionals.length}`);
  const given = positionals[0] ?? a.model;
  const model = given ?? defaultModel();
  const port = numArg(a.port, "port", 8000);
  const shutdownTimeout = seconds(a["shutdown-timeout"], "shutdown-timeout") ?? 0;
  let exitCode = 0;
  let stop = (_code: number) => {};
  const srv = await startServer({
    engine: engineConfigFrom(a, model), host: a.host ?? "127.0.0.1", port,
    servedModelName: a["served-model-name"] ?? (given ? undefined : DEFAULT_MODEL_NAME), apiKey: a["api-key"] ?? process.env.VLLM_API_KEY ?? null,
    maxQueue: numArg(a["max-queue"], "max-queue", 256), socketPath: a.socket ?? null,
    msgpackPort: optNumArg(a["msgpack-port"], "msgpack-port") ?? null, onProgress: progressBar(), limits: limitsFrom(a),
    inputWorkers: positiveInt(a["input-workers"], "input-workers"),
    onEngineDead: () => stop(1), // as vLLM's engine-dead path: exit non-zero so a supervisor restarts us
  });
  const endpoints = [`http        ${srv.url}/v1 (OpenAI API), ${srv.url}/metrics`];
  if (srv.msgpack.socketPath) endpoints.push(`msgpack     unix:${srv.msgpack.socketPath}`);
  if (srv.msgpack.tcpPort !== null) endpoints.push(`msgpack     tcp:${a.host ?? "127.0.0.1"}:${srv.msgpack.tcpPort}`);
  console.log(summary(srv, srv.info, (performance.now() - t0) / 1000, endpoints));
  await new Promise<void>((resolve) => {
    let stopping = false;
    stop = (code) => {
      exitCode = Math.max(exitCode, code);
      if (stopping) return;
      stopping = true;
      const grace = code === 0 ? shutdownTimeout : 0;
      if (grace > 0) console.error(`vllmd: shutting down; requests in flight have ${grace} s to finish`);
      srv.shutdown(grace * 1000).then(resolve, (e) => {
        console.error(`vllmd: shutdown failed: ${(e as Error).message}`);
        exitCode = 1;
        resolve();
      });
    };
    const onSignal = () => (stopping ? void srv.shutdown(0) : stop(0)); // a second signal ends the wait
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    if (srv.ctx.client.deadReason !== null) stop(1); // it died while the listeners were starting
  });
  process.exit(exitCode);
}
