// The client library under Node: Node 20 cannot import .ts, so the library is bundled for Node
// with Bun.build (as a package would ship it) and driven by a plain .mjs script under `node`.
import { afterAll, beforeAll, expect, test, setDefaultTimeout } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "../../src/protocol/client.ts";
import { startServer, type RunningServer } from "../../src/serving/start.ts";

setDefaultTimeout(30_000); // generous: the suite may share 2 cores with other work

const nodeBin = Bun.which("node");
let srv: RunningServer;
let dir: string;
let sock: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "vllmd-node-"));
  sock = join(dir, "vllmd.sock");
  srv = await startServer({
    engine: { model: "test/fixtures/llama", device: "cpu", cpuKvCacheBytes: 32 * 2 ** 20 },
    host: "127.0.0.1", port: 0, maxQueue: 64, socketPath: sock, msgpackPort: 0,
  });
});

afterAll(async () => {
  await srv.close();
  rmSync(dir, { recursive: true, force: true });
});

const SCRIPT = `
import { connect } from "./client.mjs";
const [sock, port] = process.argv.slice(2);
const params = { max_tokens: 6, temperature: 0, ignore_eos: true };
const out = {};
for (const [name, target] of [["unix", sock], ["tcp", Number(port)]]) {
  const c = await connect(target);
  const frames = [];
  for await (const f of c.generate({ prompt: "node says hi", params })) frames.push(f);
  const whole = await c.generate({ prompt: "node says hi", params, stream: false });
  const bad = await c.generate({ prompt: "x", params: { top_k: -5 }, stream: false }).catch((e) => e.code);
  out[name] = { model: c.server.model, streamed: frames.flatMap((f) => f.token_ids), whole: whole.token_ids, text: whole.text, bad };
  await c.close();
}
console.log(JSON.stringify(out));
`;

test.skipIf(!nodeBin)("the client library runs under Node over the unix socket and TCP", async () => {
  const built = await Bun.build({ entrypoints: ["src/protocol/client.ts"], target: "node", format: "esm", outdir: dir, naming: "client.mjs" });
  expect(built.success).toBe(true);
  writeFileSync(join(dir, "run.mjs"), SCRIPT);
  const p = Bun.spawn([nodeBin!, join(dir, "run.mjs"), sock, String(srv.msgpack.tcpPort)], { stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  expect(stderr).toBe("");
  expect(code).toBe(0);
  const fromNode = JSON.parse(stdout);

  const c = await connect(sock);
  const ref = await c.generate({ prompt: "node says hi", params: { max_tokens: 6, temperature: 0, ignore_eos: true }, stream: false });
  await c.close();
  for (const name of ["unix", "tcp"]) {
    expect(fromNode[name]).toEqual({ model: "llama", streamed: ref.token_ids, whole: ref.token_ids, text: ref.text, bad: "invalid_request" });
  }
});
