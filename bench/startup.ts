// Issue 5's startup_8b_s: `vllmd serve DIR` from process start to the first GET /health 200 (the
// HTTP server starts only once the engine is ready: weights loaded, KV cache allocated, graphs
// captured). The weights are read through once first (`cat` to /dev/null) so they are in the
// page cache; then --runs launches, each stopped with SIGTERM; the figure is their median.
// Usage: bun bench/startup.ts --model DIR [--cmd "./vllmd"] [--device cuda] [--port P (default: a free one)] [--runs 2]
//   [--timeout 120] [--no-warm-cache] [-- extra serve flags]
// --cmd may hold several words ("node_modules/.bin/bun src/cli.ts"); "serve DIR --device D --port P" follows.
// Prints a summary line, then one JSON line (the raw figures).
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { median } from "./figures.ts";

const { values: a, positionals: extra } = parseArgs({
  args: Bun.argv.slice(2), strict: true, allowPositionals: true,
  options: {
    model: { type: "string" }, cmd: { type: "string" }, device: { type: "string" }, port: { type: "string" },
    runs: { type: "string" }, timeout: { type: "string" }, "no-warm-cache": { type: "boolean" },
  },
});
if (!a.model) throw new Error('usage: bun bench/startup.ts --model DIR [--cmd "./vllmd"] [--device cuda] [--runs 2] ...');
const model = a.model, runs = Number(a.runs ?? 2), timeoutS = Number(a.timeout ?? 120);
const cmd = (a.cmd ?? "./vllmd").split(/\s+/).filter(Boolean);

/** Reads every weight file once so the timed launches find them in the page cache. */
async function warmPageCache(): Promise<number> {
  const files = readdirSync(model).filter((f) => f.endsWith(".safetensors")).map((f) => join(model, f));
  if (files.length === 0) throw new Error(`${model}: no .safetensors files`);
  const t = performance.now();
  const p = Bun.spawn(["cat", ...files], { stdout: "ignore", stderr: "inherit" });
  if ((await p.exited) !== 0) throw new Error(`cat ${files.join(" ")} failed`);
  return (performance.now() - t) / 1000;
}

/** --port, or a port the kernel has just handed out as free. */
function pickPort(): number {
  if (a.port !== undefined) return Number(a.port);
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

async function healthy(url: string): Promise<boolean> {
  try {
    return (await fetch(url, { signal: AbortSignal.timeout(1000) })).status === 200;
  } catch {
    return false; // not listening yet
  }
}

/** One launch: seconds from spawn to /health 200, and the "ready in" the daemon printed itself. */
async function launch(port: number): Promise<{ ready_s: number; summary_ready_s: number | null; exit_code: number | null; signal: string | null }> {
  const args = [...cmd, "serve", model, "--device", a.device ?? "cuda", "--port", String(port), ...extra];
  const t0 = performance.now();
  const proc = Bun.spawn(args, { stdout: "pipe", stderr: "pipe" });
  const out = new Response(proc.stdout).text(), err = new Response(proc.stderr).text();
  const url = `http://127.0.0.1:${port}/health`;
  let readyS: number | null = null;
  while (performance.now() - t0 < timeoutS * 1000) {
    if (await healthy(url)) {
      readyS = (performance.now() - t0) / 1000;
      break;
    }
    if (proc.exitCode !== null) break;
    await Bun.sleep(20);
  }
  proc.kill("SIGTERM");
  const killer = setTimeout(() => proc.kill("SIGKILL"), 30_000); // cleared below, so it never holds the process
  await proc.exited;
  clearTimeout(killer);
  const stdout = await out, stderr = await err;
  if (readyS === null) {
    throw new Error(`${args.join(" ")}: no /health 200 within ${timeoutS} s (exit ${proc.exitCode})\n${stdout.slice(-2000)}\n${stderr.slice(-2000)}`);
  }
  const m = /ready in\s+([0-9.]+) s/.exec(stdout);
  return { ready_s: readyS, summary_ready_s: m ? Number(m[1]) : null, exit_code: proc.exitCode, signal: proc.signalCode === null ? null : String(proc.signalCode) };
}

const warmS = a["no-warm-cache"] ? null : await warmPageCache();
const results = [];
for (let i = 0; i < runs; i++) results.push(await launch(pickPort()));
const result = {
  bench: "startup", cmd: [...cmd, "serve", model, "--device", a.device ?? "cuda", ...extra].join(" "),
  page_cache_warm_s: warmS, runs: results, ready_s_median: median(results.map((r) => r.ready_s)),
};
console.log(`startup: ${results.map((r) => `${r.ready_s.toFixed(2)} s (daemon says ${r.summary_ready_s ?? "?"} s)`).join(", ")}; ` +
  `median ${result.ready_s_median.toFixed(2)} s`);
console.log(JSON.stringify(result));
