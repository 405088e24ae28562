// Serving benchmark, with `vllm bench serve`'s flags where they apply: request and token
// throughput, TTFT, TPOT and ITL (mean, median, p99), over HTTP (OpenAI completions, SSE) and
// over the msgpack socket. With --model it starts a daemon in-process and runs the protocols one
// after the other on the same requests, so both are measured side by side in one run.
// Usage: bun bench/serve.ts [--model DIR | --base-url URL] [--protocol http,msgpack]
//   [--dataset-name random] [--random-input-len 128] [--random-output-len 32] [--random-range-ratio 0]
//   [--num-prompts 64] [--request-rate inf] [--max-concurrency N] [--ignore-eos] [--seed 0] [--device cpu]
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { defaultModelDir } from "../src/model/default-model.ts";
import { startServer } from "../src/serving/start.ts";
import { formatSummaries, randomDataset, runLoad, summarize, type Summary, type Transport } from "./serve-lib.ts";
import { httpTransport, msgpackTransport } from "./transports.ts";

const { values: a } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    model: { type: "string" }, "base-url": { type: "string" }, protocol: { type: "string" }, device: { type: "string" },
    "dataset-name": { type: "string" }, "random-input-len": { type: "string" }, "random-output-len": { type: "string" },
    "random-range-ratio": { type: "string" }, "num-prompts": { type: "string" }, "request-rate": { type: "string" },
    "max-concurrency": { type: "string" }, "ignore-eos": { type: "boolean" }, seed: { type: "string" },
  },
});
if ((a["dataset-name"] ?? "random") !== "random") throw new Error("only --dataset-name random is supported");
const n = Number(a["num-prompts"] ?? 64);
const rate = a["request-rate"] === undefined || a["request-rate"] === "inf" ? Infinity : Number(a["request-rate"]);
const maxConc = Number(a["max-concurrency"] ?? Infinity);
const seed = Number(a.seed ?? 0);
const protocols = (a.protocol ?? (a["base-url"] ? "http" : "http,msgpack")).split(",");

let runs = 0;
async function runOne(name: string, send: Transport, vocab: number): Promise<Summary> {
  const dataset = (tokenSeed: number) => randomDataset(n, Number(a["random-input-len"] ?? 128),
    Number(a["random-output-len"] ?? 32), Number(a["random-range-ratio"] ?? 0), vocab, seed, tokenSeed);
  const reqs = dataset(seed + 1000 * ++runs);
  await runLoad(dataset(seed - 1000 * runs), send, Infinity, Infinity, true, seed); // warm-up: the same load, other prompts
  const { results, seconds } = await runLoad(reqs, send, rate, maxConc, a["ignore-eos"] ?? false, seed);
  const failures = results.filter((r) => !r.ok);
  if (failures.length) console.error(`${name}: ${failures.length} failed, e.g. ${failures[0]!.error}`);
  return summarize(results, seconds);
}

const rows: [string, Summary][] = [];
if (a["base-url"]) {
  for (const p of protocols) {
    if (p !== "http") throw new Error("with --base-url only --protocol http is supported");
    rows.push(["http", await runOne("http", httpTransport(a["base-url"], null), 4096)]);
  }
} else {
  const socketPath = join(tmpdir(), `vllmd-bench-${process.pid}.sock`);
  const srv = await startServer({
    engine: { model: a.model ?? defaultModelDir(), device: (a.device ?? "auto") as "auto" },
    host: "127.0.0.1", port: 0, maxQueue: 100_000, socketPath,
  });
  try {
    for (const p of protocols) {
      if (p === "http") rows.push(["http", await runOne("http", httpTransport(srv.url, null), srv.info.vocabSize)]);
      else if (p === "msgpack") {
        const t = await msgpackTransport(socketPath);
        rows.push(["msgpack", await runOne("msgpack", t.send, srv.info.vocabSize)]);
        await t.close();
      } else throw new Error(`unknown protocol '${p}'`);
    }
  } finally {
    await srv.close();
  }
}
console.log(`num_prompts=${n} request_rate=${rate} max_concurrency=${maxConc} input=${a["random-input-len"] ?? 128} output=${a["random-output-len"] ?? 32}`);
console.log(formatSummaries(rows));
