// The soak: a daemon (its own process) under careful and careless clients at once for a set
// time (bench/soak-clients.ts), then its invariants checked and printed: every request answered
// or refused with a clear error, running/waiting/KV back to 0, RSS flat after warm-up, /health
// answering quickly throughout, and a clean exit on SIGTERM. Exits 1 if any invariant fails.
// Usage: bun bench/soak.ts [--duration 60] [--concurrency 12] [--seed 1] [--max-health-ms 1000]
//   [--vllmd ./vllmd (default: bun src/cli.ts)] [--json FILE] [-- MODEL_DIR and other `vllmd serve` flags]
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  badHttp, chat, idleConnection, msgpackSession, oversizeOrStalled, rng, streamCompletion, Tally, type Rng, type Target,
} from "./soak-clients.ts";

const { values: a, positionals: serveArgs } = parseArgs({
  args: Bun.argv.slice(2), allowPositionals: true,
  options: {
    duration: { type: "string" }, concurrency: { type: "string" }, seed: { type: "string" },
    "max-health-ms": { type: "string" }, json: { type: "string" }, vllmd: { type: "string" },
  },
});
const DURATION_S = Number(a.duration ?? 60);
const CONCURRENCY = Number(a.concurrency ?? 12);
const MAX_HEALTH_MS = Number(a["max-health-ms"] ?? 1000);
const MAX_BODY = 32 * 2 ** 20;

/** Which client each loop runs next, by weight. */
const MIX: [number, (t: Target, r: Rng, tally: Tally) => Promise<void>][] = [
  [5, streamCompletion], [2, chat], [3, badHttp], [3, msgpackSession], [1, oversizeOrStalled],
];

async function startDaemon() {
  const cmd = a.vllmd ? [a.vllmd] : [process.execPath, join(import.meta.dir, "../src/cli.ts")];
  const proc = Bun.spawn([...cmd, "serve", "--port", "0", "--msgpack-port", "0",
    "--body-timeout", "3", "--keep-alive-timeout", "2", "--msgpack-idle-timeout", "4", "--max-queue", "512",
    // A KV cache small enough to be touched whole during warm-up (its pages count in RSS once
    // used), and to make the scheduler preempt under the load; later flags override these.
    "--num-blocks", "1024", ...serveArgs],
  { stdout: "pipe", stderr: "pipe" });
  const reader = proc.stdout.getReader();
  let out = "";
  while (!out.includes("ready in")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the daemon did not start:\n${out}${await new Response(proc.stderr).text()}`);
    out += new TextDecoder().decode(value);
  }
  const url = /http\s+(http:\/\/\S+)\/v1/.exec(out)![1]!;
  const msgpackPort = Number(/msgpack\s+tcp:\S+:(\d+)/.exec(out)![1]);
  let log = "";
  void (async () => { for await (const c of proc.stderr) log += new TextDecoder().decode(c); })();
  const summary = out.split("\n").filter((l) => /^(model|device|KV cache) /.test(l));
  return { proc, summary, target: { url, msgpackPort, maxBodyBytes: MAX_BODY } satisfies Target, log: () => log };
}

const rssMiB = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;

async function engineState(url: string): Promise<{ running: number; waiting: number; kv: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const get = (name: string) => Number(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, "m").exec(text)![1]);
  return { running: get("vllm:num_requests_running"), waiting: get("vllm:num_requests_waiting"), kv: get("vllm:kv_cache_usage_perc") };
}

const median = (xs: number[]) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)] ?? NaN;
const quantile = (xs: number[], q: number) => [...xs].sort((p, r) => p - r)[Math.min(xs.length - 1, Math.floor(q * xs.length))] ?? NaN;

async function main(): Promise<void> {
  const d = await startDaemon();
  const tally = new Tally();
  const stopAt = performance.now() + DURATION_S * 1000;
  const live = () => performance.now() < stopAt;
  const totalWeight = MIX.reduce((s, [w]) => s + w, 0);
  const loop = async (i: number, pick: (r: Rng) => (t: Target, r: Rng, tally: Tally) => Promise<void>) => {
    const r = rng(Number(a.seed ?? 1) * 1000 + i);
    while (live()) await pick(r)(d.target, r, tally);
  };
  const weighted = (r: Rng) => {
    let x = r.next() * totalWeight;
    for (const [w, f] of MIX) if ((x -= w) < 0) return f;
    return MIX[0]![1];
  };
  const health: number[] = [], rss: { t: number; mib: number }[] = [];
  const probes = (async () => {
    const t0 = performance.now();
    while (live()) {
      const s = performance.now();
      const ok = (await fetch(`${d.target.url}/health`).catch(() => null))?.status === 200;
      health.push(ok ? performance.now() - s : Infinity);
      if (rss.length === 0 || performance.now() - t0 >= rss.length * 1000) rss.push({ t: (performance.now() - t0) / 1000, mib: rssMiB(d.proc.pid) });
      await Bun.sleep(100);
    }
  })();
  await Promise.all([
    ...Array.from({ length: CONCURRENCY }, (_, i) => loop(i, weighted)),
    ...Array.from({ length: 6 }, (_, i) => loop(1000 + i, () => idleConnection)),
    probes,
  ]);
  await report(d, tally, health, rss);
}

async function report(d: Awaited<ReturnType<typeof startDaemon>>, tally: Tally, health: number[], rss: { t: number; mib: number }[]): Promise<void> {
  let state = await engineState(d.target.url);
  for (let i = 0; i < 150 && (state.running || state.waiting || state.kv); i++) state = await Bun.sleep(100).then(() => engineState(d.target.url));
  const warm = rss.filter((s) => s.t >= Math.max(10, DURATION_S * 0.25));
  const fifth = Math.max(1, Math.floor(warm.length / 5));
  const early = median(warm.slice(0, fifth).map((s) => s.mib)), late = median(warm.slice(-fifth).map((s) => s.mib));
  d.proc.kill("SIGTERM");
  const exit = await Promise.race([d.proc.exited, Bun.sleep(15_000).then(() => "timeout")]);
  const requests = tally.total("answered") + tally.total("refused") + tally.total("cut") + tally.total("unclear");
  const checks: [string, boolean, string][] = [
    ["every request answered or refused clearly", tally.total("unclear") === 0 && tally.total("answered") > 0,
      `${requests} requests: ${tally.total("answered")} answered, ${tally.total("refused")} refused, ${tally.total("cut")} cut by the client, ${tally.total("unclear")} unclear`],
    ["running, waiting and KV back to 0", !state.running && !state.waiting && !state.kv, `running ${state.running}, waiting ${state.waiting}, KV ${state.kv}`],
    ["RSS flat after warm-up", late - early < 0.1 * early + 24, `${early.toFixed(0)} -> ${late.toFixed(0)} MiB (max ${Math.max(...rss.map((s) => s.mib)).toFixed(0)})`],
    [`/health under ${MAX_HEALTH_MS} ms throughout`, Math.max(...health) < MAX_HEALTH_MS,
      `${health.length} probes: p50 ${median(health).toFixed(1)} ms, p99 ${quantile(health, 0.99).toFixed(1)} ms, max ${Math.max(...health).toFixed(1)} ms`],
    ["clean exit on SIGTERM", exit === 0, `exit ${exit}`],
  ];
  console.log(`soak: ${DURATION_S} s, ${CONCURRENCY} client loops + 6 idle connections, seed ${a.seed ?? 1}`);
  for (const line of d.summary) console.log(`  ${line}`);
  for (const [kind, c] of [...tally.counts].sort()) console.log(`  ${kind.padEnd(16)} ${JSON.stringify(c)}`);
  for (const line of tally.unclear) console.log(`  unclear: ${line}`);
  for (const [name, ok, detail] of checks) console.log(`${ok ? "PASS" : "FAIL"}  ${name.padEnd(42)} ${detail}`);
  if (a.json) writeFileSync(a.json, JSON.stringify({ duration_s: DURATION_S, counts: Object.fromEntries(tally.counts), checks, health_ms: { p50: median(health), p99: quantile(health, 0.99), max: Math.max(...health) }, rss }, null, 1));
  if (checks.some(([, ok]) => !ok)) {
    console.log(`daemon log (last 2000 chars):\n${d.log().slice(-2000)}`);
    process.exit(1);
  }
}

await main();
